#!/bin/bash
# Multi-process pipelines of the ready-made devices (devices/), on every usable transport.
#   devices.sh CASE BIN_DIR FQ_INFO FQ_LAUNCH PLUGIN_DIR SOURCE_DIR
# CASE: pipeline multipart split merge proxy multiplier mixed fairmq-json plugin launch
#
# The transports are the ones fq-info reports usable, so a transport added to the library
# joins every case by itself. Devices run with --control static and --max-iterations: they
# exit by themselves when done; every count, byte total and --check sequence is verified
# from the summary lines, and nothing may be left behind (socket files, /dev/shm).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../multiproc/harness.sh
. "$here/../multiproc/harness.sh"

case_name=${1:?usage: devices.sh CASE BIN_DIR FQ_INFO FQ_LAUNCH PLUGIN_DIR SOURCE_DIR}
bin=$2 fq_info=$3 fq_launch=$4 plugin_dir=$5 source_dir=$6
N=${FQ_DEVICE_TEST_N:-2000} # messages per sampler
SIZE=4096

fqh_init "device-$case_name" 100

mapfile -t transports < <("$fq_info" | sed -n 's/^    \([a-z0-9_]*\): usable$/\1/p')
# FQ_DEVICE_TEST_TRANSPORTS="a b" narrows the run to those (when debugging one transport).
if [[ -n ${FQ_DEVICE_TEST_TRANSPORTS:-} ]]; then
	read -r -a transports <<<"$FQ_DEVICE_TEST_TRANSPORTS"
fi
((${#transports[@]} > 0)) || { fqh_fail "fq-info lists no usable transport"; fqh_finish; }
fqh_log "transports: ${transports[*]}"

# dev NAME PROGRAM ARGS...: a device with id NAME, static control, quiet logs.
dev() {
	local name=$1 prog=$2
	shift 2
	fqh_start "$name" "$bin/$prog" --id "$name" --control static --severity warn "$@"
}

addr() {
	echo "ipc://$FQH_DIR/$1"
}

# chan NAME TYPE METHOD ADDRESS... [key=value...]: one --channel-config token.
chan() {
	local token="name=$1,type=$2,method=$3" a
	shift 3
	for a in "$@"; do
		case $a in
		*=*) token+=",$a" ;;
		*) token+=",address=$(addr "$a")" ;;
		esac
	done
	echo "$token"
}

# expect_summary NAME MESSAGES BYTES: the device's one summary line says so.
expect_summary() {
	local name=$1 msgs=$2 bytes=$3 line
	line=$(grep "^$name: [0-9]* messages, [0-9]* bytes in " "$FQH_DIR/$name.log")
	if [[ $(grep -c "^$name: " <<<"$line") != 1 ]]; then
		fqh_fail "$name: expected one summary line, got: '$line'"
		fqh_show_log "$name"
		return 0
	fi
	if [[ $line != "$name: $msgs messages, $bytes bytes in "* ]]; then
		fqh_fail "$name: expected $msgs messages and $bytes bytes: $line"
		fqh_show_log "$name"
	fi
}

expect_all() {
	local name
	for name in "$@"; do
		fqh_expect_exit "$name" 0
	done
}

# sampler -> processor (xor) -> processor (xor) -> sink --check: the bytes arrive as sent.
case_pipeline() {
	local t=$1 mp=("${@:2}") parts=1 p
	[[ ${#mp[@]} -gt 0 ]] && parts=3
	p=$t-pl$parts
	dev "$p-sampler" fq-sampler --transport "$t" --channel-config "$(chan data push bind "$p-a")" \
		--msg-size $SIZE --max-iterations "$N" --check --memset "${mp[@]}" ${mp:+--num-parts 3}
	dev "$p-proc1" fq-processor --transport "$t" --transform xor --max-iterations "$N" "${mp[@]}" \
		--channel-config "$(chan data-in pull connect "$p-a")" \
		--channel-config "$(chan data-out push bind "$p-b")"
	dev "$p-proc2" fq-processor --transport "$t" --transform xor --max-iterations "$N" "${mp[@]}" \
		--channel-config "$(chan data-in pull connect "$p-b")" \
		--channel-config "$(chan data-out push bind "$p-c")"
	dev "$p-sink" fq-sink --transport "$t" --channel-config "$(chan data pull connect "$p-c")" \
		--max-iterations "$N" --check --out-filename "$FQH_DIR/$p.out" "${mp[@]}"
	expect_all "$p-sampler" "$p-proc1" "$p-proc2" "$p-sink"
	local bytes=$((N * SIZE * parts))
	for d in sampler proc1 proc2 sink; do
		expect_summary "$p-$d" "$N" "$bytes"
	done
	local got
	got=$(stat -c %s "$FQH_DIR/$p.out" 2>/dev/null || echo missing)
	[[ $got == "$bytes" ]] || fqh_fail "$p: --out-filename holds $got bytes, expected $bytes"
	# The last message as written: its sequence number, then the --memset byte.
	local last
	last=$(tail -c $SIZE "$FQH_DIR/$p.out" | od -An -tu8 -N8 | tr -d ' ')
	[[ $last == $((N - 1)) ]] || fqh_fail "$p: the last message carries number $last, not $((N - 1))"
	rm -f "$FQH_DIR/$p.out"
}

case_multipart() {
	case_pipeline "$1" --multipart
}

# sampler -> splitter -> 2 sinks: round robin, so each gets exactly half.
case_split() {
	local t=$1 p=$1-split
	dev "$p-sampler" fq-sampler --transport "$t" --channel-config "$(chan data push bind "$p-a")" \
		--msg-size $SIZE --max-iterations "$N"
	dev "$p-splitter" fq-splitter --transport "$t" --max-iterations "$N" \
		--channel-config "$(chan data-in pull connect "$p-a")" \
		--channel-config "$(chan data-out push bind "$p-b0" "$p-b1")"
	for i in 0 1; do
		dev "$p-sink$i" fq-sink --transport "$t" --max-iterations $((N / 2)) \
			--channel-config "$(chan data pull connect "$p-b$i")"
	done
	expect_all "$p-sampler" "$p-splitter" "$p-sink0" "$p-sink1"
	expect_summary "$p-splitter" "$N" $((N * SIZE))
	expect_summary "$p-sink0" $((N / 2)) $((N / 2 * SIZE))
	expect_summary "$p-sink1" $((N / 2)) $((N / 2 * SIZE))
}

# 2 samplers -> merger (one sub-channel each) -> sink: the counts add up.
case_merge() {
	local t=$1 p=$1-merge
	for i in 0 1; do
		dev "$p-sampler$i" fq-sampler --transport "$t" --msg-size $SIZE --max-iterations "$N" \
			--channel-config "$(chan data push connect "$p-a$i")"
	done
	dev "$p-merger" fq-merger --transport "$t" --max-iterations $((2 * N)) \
		--channel-config "$(chan data-in pull bind "$p-a0" "$p-a1")" \
		--channel-config "$(chan data-out push bind "$p-b")"
	dev "$p-sink" fq-sink --transport "$t" --max-iterations $((2 * N)) \
		--channel-config "$(chan data pull connect "$p-b")"
	expect_all "$p-sampler0" "$p-sampler1" "$p-merger" "$p-sink"
	expect_summary "$p-merger" $((2 * N)) $((2 * N * SIZE))
	expect_summary "$p-sink" $((2 * N)) $((2 * N * SIZE))
}

# sampler -PUSH/PULL-> proxy -PAIR/PAIR-> sink --check; the proxy ends on SIGTERM.
case_proxy() {
	local t=$1 p=$1-proxy
	dev "$p-sampler" fq-sampler --transport "$t" --msg-size $SIZE --max-iterations "$N" --check \
		--channel-config "$(chan data push bind "$p-a")"
	dev "$p-proxy" fq-proxy --transport "$t" \
		--channel-config "$(chan data-in pull connect "$p-a")" \
		--channel-config "$(chan data-out pair bind "$p-b")"
	dev "$p-sink" fq-sink --transport "$t" --max-iterations "$N" --check \
		--channel-config "$(chan data pair connect "$p-b")"
	expect_all "$p-sampler" "$p-sink"
	# Nothing more comes: an orderly shutdown on SIGTERM, with the summary.
	kill -TERM "${FQH_PID[$p-proxy]}"
	expect_all "$p-proxy"
	expect_summary "$p-proxy" "$N" $((N * SIZE))
	expect_summary "$p-sink" "$N" $((N * SIZE))
}

# sampler -> multiplier -> 2 sinks: every sink gets every message, in order.
case_multiplier() {
	local t=$1 p=$1-mult
	dev "$p-sampler" fq-sampler --transport "$t" --msg-size $SIZE --max-iterations "$N" --check \
		--channel-config "$(chan data push bind "$p-a")"
	dev "$p-mult" fq-multiplier --transport "$t" --max-iterations "$N" --out-channel out0 \
		--out-channel out1 --channel-config "$(chan data-in pull connect "$p-a")" \
		--channel-config "$(chan out0 push bind "$p-b0")" \
		--channel-config "$(chan out1 push bind "$p-b1")"
	for i in 0 1; do
		dev "$p-sink$i" fq-sink --transport "$t" --max-iterations "$N" --check \
			--channel-config "$(chan data pull connect "$p-b$i")"
	done
	expect_all "$p-sampler" "$p-mult" "$p-sink0" "$p-sink1"
	expect_summary "$p-sink0" "$N" $((N * SIZE))
	expect_summary "$p-sink1" "$N" $((N * SIZE))
}

# sampler -(t1)-> processor -(t2)-> sink: one device, two transports per channel.
case_mixed() {
	local t1=$1 t2 p
	for t2 in "${transports[@]}"; do
		[[ $t2 == "$t1" ]] && continue
		p=$t1-$t2-mixed
		dev "$p-sampler" fq-sampler --msg-size $SIZE --max-iterations "$N" --check \
			--channel-config "$(chan data push bind "$p-a" "transport=$t1")"
		dev "$p-proc" fq-processor --max-iterations "$N" --transform touch \
			--channel-config "$(chan data-in pull connect "$p-a" "transport=$t1")" \
			--channel-config "$(chan data-out push bind "$p-b" "transport=$t2")"
		dev "$p-sink" fq-sink --max-iterations "$N" --check \
			--channel-config "$(chan data pull connect "$p-b" "transport=$t2")"
		expect_all "$p-sampler" "$p-proc" "$p-sink"
		expect_summary "$p-sink" "$N" $((N * SIZE))
	done
}

# A FairMQ JSON file (fairMQOptions, FairMQ's spelling: numbers as strings, a shared "key"
# entry) drives sampler -> processor -> sink, with FairMQ's command lines.
case_fairmq_json() {
	local t=$1 p=$1-fmq cfg
	cfg=$FQH_DIR/$p.json
	sed "s|@DIR@|$FQH_DIR/$p|g" "$here/fairmq-pipeline.json" >"$cfg"
	fqh_start "$p-sampler" "$bin/fq-sampler" --id sampler1 --mq-config "$cfg" --transport "$t" \
		--control static --severity warn --msg-size $SIZE --max-iterations "$N" --check
	fqh_start "$p-proc" "$bin/fq-processor" --id processor1 --config-key processor \
		--mq-config "$cfg" --transport "$t" --control static --severity warn \
		--max-iterations "$N"
	fqh_start "$p-sink" "$bin/fq-sink" --id sink1 --mq-config "$cfg" --transport "$t" \
		--control static --severity warn --max-iterations "$N" --check --json
	expect_all "$p-sampler" "$p-proc" "$p-sink"
	# The summary of --json: one object with the counts.
	grep -q "^{\"id\":\"sink1\",\"messages\":$N,\"bytes\":$((N * SIZE))," "$FQH_DIR/$p-sink.log" ||
		{ fqh_fail "$p-sink: no JSON summary with $N messages"; fqh_show_log "$p-sink"; }
	grep -q "^sampler1: $N messages" "$FQH_DIR/$p-sampler.log" ||
		{ fqh_fail "$p-sampler: no summary"; fqh_show_log "$p-sampler"; }
}

# The example plugin (examples/plugin) sees every state and adds its option.
case_plugin() {
	local t=$1 p=$1-plugin
	dev "$p-sampler" fq-sampler --transport "$t" --msg-size 64 --max-iterations 10 \
		--channel-config "$(chan data push bind "$p-a")"
	fqh_start "$p-sink" "$bin/fq-sink" --id "$p-sink" --control static --transport "$t" \
		--channel-config "$(chan data pull connect "$p-a")" --max-iterations 10 \
		-S "$plugin_dir" -P hello --hello-greeting howdy --severity info
	expect_all "$p-sampler" "$p-sink"
	for state in "INITIALIZING DEVICE" "DEVICE READY" RUNNING READY EXITING; do
		grep -q "howdy: $state\$" "$FQH_DIR/$p-sink.log" ||
			{ fqh_fail "$p-sink: the hello plugin did not log $state"; fqh_show_log "$p-sink"; }
	done
	expect_summary "$p-sink" 10 640
}

# fq-launch runs the README demo and the mixed-transport example (shortened), and reports a
# failing process.
case_launch() {
	local ex
	[[ " ${transports[*]} " == *" shmem "* && " ${transports[*]} " == *" zeromq "* ]] ||
		{ fqh_log "the examples need shmem and zeromq: skipped"; return 0; }
	for ex in demo demo-mixed; do
		fqh_start "launch-$ex" "$fq_launch" --bin-dir "$bin" --duration 3 --grace 10 \
			--run-dir "$FQH_DIR" "$source_dir/examples/$ex/topology.json"
		fqh_expect_exit "launch-$ex" 0
		for id in sampler1 processor1 sink1; do
			grep -q "^$id *| $id: [0-9]* messages, " "$FQH_DIR/launch-$ex.log" ||
				{ fqh_fail "launch-$ex: no summary of $id"; fqh_show_log "launch-$ex"; }
		done
		grep -q "all 3 processes succeeded" "$FQH_DIR/launch-$ex.log" ||
			fqh_fail "launch-$ex: no success report"
	done
	# A failing process is named, and fq-launch exits with 1.
	cat >"$FQH_DIR/failing.json" <<-EOF
		{"processes": [
		  {"id": "bad", "command": ["fq-sink", "--id", "bad", "--control", "static",
		                            "--channel-config", "name=data,type=nosuchtype,method=bind"]},
		  {"id": "good", "command": ["true"]}]}
	EOF
	fqh_start launch-failing "$fq_launch" --bin-dir "$bin" --keep-going --run-dir "$FQH_DIR" \
		"$FQH_DIR/failing.json"
	fqh_expect_exit launch-failing 1
	grep -q "1 of 2 processes failed: bad$" "$FQH_DIR/launch-failing.log" ||
		{ fqh_fail "launch-failing: the failure is not reported"; fqh_show_log launch-failing; }
	rm -f "$FQH_DIR/failing.json"
	# Run folders are removed.
	[[ -z $(find "$FQH_DIR" -maxdepth 1 -name 'fq-launch-*') ]] || fqh_fail "run folder left behind"
}

case $case_name in
launch)
	case_launch
	;;
pipeline | multipart | split | merge | proxy | multiplier | mixed | fairmq-json | plugin)
	fn=case_${case_name//-/_}
	for t in "${transports[@]}"; do
		fqh_log "== $case_name on $t"
		"$fn" "$t"
	done
	;;
*)
	fqh_fail "unknown case $case_name"
	;;
esac
fqh_check_leftovers
fqh_finish
