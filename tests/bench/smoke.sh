#!/bin/sh
# Smoke test of fq-bench: tiny runs of each pattern, on tcp and ipc, with the raw libzmq,
# libnanomsg, ring, futex, iceoryx and libfabric (ofi, on tcp;ofi_rxm and shm) baselines and
# --memset; --json output must be one well-formed object per line with every documented key; usage errors exit 2; nothing is left behind in TMPDIR, nor,
# from iceoryx, in /tmp and /dev/shm. Speed is not checked. Where fq-bench was built without
# iceoryx, or iox-roudi is missing, the iceoryx case checks that the baseline is skipped, not
# failed.
# Usage: smoke.sh /path/to/fq-bench
set -u

BENCH=$1
FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fq-bench-smoke.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
# The ipc addresses fq-bench makes go here, so leftovers can be seen.
export TMPDIR="$WORK/tmp"
mkdir "$TMPDIR"

KEYS="impl transport pattern url_scheme size parts count seconds msgs_per_s bytes_per_s
lat_p50_us lat_p99_us cpu_s_sender cpu_s_receiver"

fail() {
	echo "FAIL: $*" >&2
	FAILED=1
}

# check_json FILE LINES: FILE holds LINES JSON objects (at least, with "+N"), each with every
# key.
check_json() {
	file=$1
	want=$2
	got=$(grep -c . "$file")
	case $want in
	+*) [ "$got" -ge "${want#+}" ] || fail "$file: $got result lines, expected $want" ;;
	*) [ "$got" -eq "$want" ] || fail "$file: $got result lines, expected $want" ;;
	esac
	while IFS= read -r line; do
		case $line in
		"{"*"}") ;;
		*) fail "not a JSON object: $line" ;;
		esac
		for key in $KEYS; do
			echo "$line" | grep -q "\"$key\":" || fail "key $key missing: $line"
		done
		# No NaN or infinity: they are not JSON (as values: "nanomsg" is a name).
		echo "$line" | grep -qiE ':-?(nan|inf|infinity)[,}]' && fail "non-JSON number: $line"
	done <"$file"
	# A strict parse where Debian's Python is there; the checks above stand alone.
	if [ -x /usr/bin/python3 ]; then
		/usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)
' "$file" || fail "$file does not parse as JSON lines"
	fi
}

# run NAME EXPECTED_LINES ARGS...: run fq-bench with --json, expect exit 0.
run() {
	name=$1
	lines=$2
	shift 2
	echo "== fq-bench $*"
	"$BENCH" --json --timeout 20 "$@" >"$WORK/$name.out"
	rc=$?
	cat "$WORK/$name.out"
	[ $rc -eq 0 ] || fail "$name: exit status $rc"
	check_json "$WORK/$name.out" "$lines"
}

run thr_tcp 1 --transport zeromq --pattern thr --scheme tcp --size 64 --count 2000
grep -q '"pattern":"thr"' "$WORK/thr_tcp.out" || fail "thr row missing"
grep -q '"count":2000,' "$WORK/thr_tcp.out" || fail "thr count is not 2000"
grep -q '"url_scheme":"tcp"' "$WORK/thr_tcp.out" || fail "thr scheme is not tcp"

run lat_ipc 1 --transport zeromq --pattern lat --scheme ipc --size 1K --count 200
grep -q '"lat_p50_us":[0-9]' "$WORK/lat_ipc.out" || fail "lat p50 missing"

run parts 1 --transport zeromq --pattern thr --scheme ipc --size 4K --parts 3 --count 500
grep -q '"parts":3,' "$WORK/parts.out" || fail "parts is not 3"

run baseline 4 --transport zeromq --pattern thr,lat --scheme tcp --size 8K --count 300 \
	--baseline zmq
[ "$(grep -c '"impl":"zmq"' "$WORK/baseline.out")" -eq 2 ] || fail "baseline rows missing"
[ "$(grep -c '"ratio_vs_raw":' "$WORK/baseline.out")" -eq 2 ] || fail "ratio missing"

# The raw shared-memory ring: one row per pattern, whatever the scheme, and its ratio.
run ring 4 --transport zeromq --pattern thr,lat --scheme ipc --size 1K --count 300 \
	--baseline ring
[ "$(grep -c '"impl":"ring"' "$WORK/ring.out")" -eq 2 ] || fail "ring rows missing"
[ "$(grep -c '"url_scheme":"memfd"' "$WORK/ring.out")" -eq 2 ] || fail "ring scheme"
[ "$(grep -c '"ratio_vs_ring":' "$WORK/ring.out")" -eq 2 ] || fail "ring ratio missing"
grep -q '"ratio_vs_raw":' "$WORK/ring.out" && fail "a zmq ratio without --baseline zmq"

# Both baselines; the ring row is measured once for the two schemes.
run both 5 --transport zeromq --pattern thr --scheme tcp,ipc --size 64 --count 1000 \
	--baseline zmq,ring
[ "$(grep -c '"impl":"zmq"' "$WORK/both.out")" -eq 2 ] || fail "zmq rows missing"
[ "$(grep -c '"impl":"ring"' "$WORK/both.out")" -eq 1 ] || fail "ring row missing"
[ "$(grep '"impl":"fabriq"' "$WORK/both.out" | grep '"ratio_vs_raw":' |
	grep -c '"ratio_vs_ring":')" -eq 2 ] || fail "ratios missing"

# The futex ping-pong: lat only, one row of size 0 per run, and its ratio; thr says so.
run futex 3 --transport zeromq --pattern lat --scheme ipc --sizes 64,1K --count 200 \
	--baseline futex
[ "$(grep -c '"impl":"futex"' "$WORK/futex.out")" -eq 1 ] || fail "futex row missing"
grep '"impl":"futex"' "$WORK/futex.out" | grep -q '"size":0,' || fail "futex size is not 0"
[ "$(grep -c '"ratio_vs_futex":' "$WORK/futex.out")" -eq 2 ] || fail "futex ratio missing"
"$BENCH" --json --transport zeromq --pattern thr --scheme ipc --size 64 --count 200 \
	--baseline futex >"$WORK/futex_thr.out" 2>"$WORK/futex_thr.err" || fail "futex thr run"
grep -q 'lat only' "$WORK/futex_thr.err" || fail "no word on the futex and thr"
grep -q '"impl":"futex"' "$WORK/futex_thr.out" && fail "a futex row for thr"

# The raw libfabric baselines: per provider, an ofi row per case and an ofi-read row per thr
# case, each with a figure above 0 and no memory registration in the steady state, and the
# fabriq rows' ratios to them. Skipped, with a word and exit 0, where fq-bench was built
# without libfabric.
# positive FILE KEY: every line of FILE has KEY with a number above 0.
positive() {
	while IFS= read -r line; do
		v=$(echo "$line" | sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p")
		awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }' || fail "$2 is not above 0: $line"
	done <"$1"
}
for prov in "tcp;ofi_rxm" shm; do
	tag=$(echo "$prov" | tr -c 'a-z\n' _)
	echo "== fq-bench --baseline ofi --ofi-provider $prov"
	"$BENCH" --json --timeout 30 --transport zeromq --pattern thr,lat --scheme ipc \
		--sizes 64,64K --count 300 --baseline ofi --ofi-provider "$prov" \
		>"$WORK/ofi_$tag.out" 2>"$WORK/ofi_$tag.err"
	rc=$?
	cat "$WORK/ofi_$tag.out" "$WORK/ofi_$tag.err"
	[ $rc -eq 0 ] || fail "ofi $prov: exit status $rc"
	if grep -q 'baseline ofi skipped' "$WORK/ofi_$tag.err"; then
		echo "(libfabric not available: the baseline was skipped)"
		check_json "$WORK/ofi_$tag.out" 4
		continue
	fi
	check_json "$WORK/ofi_$tag.out" 10
	grep '"impl":"ofi' "$WORK/ofi_$tag.out" >"$WORK/ofi_$tag.rows"
	[ "$(grep -c '"impl":"ofi"' "$WORK/ofi_$tag.rows")" -eq 4 ] || fail "ofi $prov rows"
	[ "$(grep '"impl":"ofi-read"' "$WORK/ofi_$tag.rows" | grep -c '"pattern":"thr"')" -eq 2 ] ||
		fail "ofi-read $prov rows"
	[ "$(grep -cF "\"transport\":\"$prov\"" "$WORK/ofi_$tag.rows")" -eq 6 ] ||
		fail "ofi $prov: provider not in the transport column"
	positive "$WORK/ofi_$tag.rows" msgs_per_s
	grep '"pattern":"thr"' "$WORK/ofi_$tag.rows" >"$WORK/ofi_$tag.thr"
	grep '"pattern":"lat"' "$WORK/ofi_$tag.rows" >"$WORK/ofi_$tag.lat"
	positive "$WORK/ofi_$tag.thr" bytes_per_s
	positive "$WORK/ofi_$tag.lat" lat_p50_us
	[ "$(grep -c '"mr_regs_steady":0[,}]' "$WORK/ofi_$tag.rows")" -eq 6 ] ||
		fail "ofi $prov: registrations in the steady state"
	grep '"impl":"ofi-read"' "$WORK/ofi_$tag.rows" | grep -q '"mr_regs":0[,}]' &&
		fail "ofi-read $prov: its buffer was not registered"
	[ "$(grep '"impl":"fabriq"' "$WORK/ofi_$tag.out" | grep -c '"ratio_vs_ofi":')" -eq 4 ] ||
		fail "ofi $prov: fq/ofi ratio missing"
	[ "$(grep '"impl":"fabriq"' "$WORK/ofi_$tag.out" | grep -c '"ratio_vs_ofi_read":')" -eq 2 ] ||
		fail "ofi $prov: fq/read ratio missing"
done

# The raw libnanomsg baseline next to the nanomsg transport: a row per case on tcp and ipc,
# single messages and vectors, each with a figure above 0, and the fabriq rows' ratio to it.
# Skipped, with a word, where the nanomsg transport is not built in (then neither is the
# baseline). A shorter --timeout: it also bounds how long a side waits for a peer that left.
echo "== fq-bench --transport nanomsg --baseline nanomsg"
"$BENCH" --json --timeout 10 --transport nanomsg --pattern thr,lat --scheme tcp,ipc --size 64 \
	--duration 0.05 --baseline nanomsg >"$WORK/nanomsg.out" 2>"$WORK/nanomsg.err"
rc=$?
cat "$WORK/nanomsg.out" "$WORK/nanomsg.err"
if [ $rc -eq 2 ] && grep -q 'transport nanomsg:' "$WORK/nanomsg.err"; then
	echo "(the nanomsg transport is not built in: the nanomsg baseline was not run)"
else
	[ $rc -eq 0 ] || fail "nanomsg: exit status $rc"
	check_json "$WORK/nanomsg.out" 8
	grep '"impl":"nanomsg"' "$WORK/nanomsg.out" >"$WORK/nanomsg.rows"
	[ "$(grep -c '"transport":"libnanomsg"' "$WORK/nanomsg.rows")" -eq 4 ] ||
		fail "nanomsg rows missing"
	for scheme in tcp ipc; do
		for pat in thr lat; do
			[ "$(grep "\"url_scheme\":\"$scheme\"" "$WORK/nanomsg.rows" |
				grep -c "\"pattern\":\"$pat\"")" -eq 1 ] ||
				fail "nanomsg $pat row on $scheme missing"
		done
	done
	positive "$WORK/nanomsg.rows" msgs_per_s
	[ "$(grep '"impl":"fabriq"' "$WORK/nanomsg.out" | grep '"transport":"nanomsg"' |
		grep -c '"ratio_vs_nanomsg":')" -eq 4 ] || fail "fq/nn ratio missing"
	grep -q '"ratio_vs_raw":' "$WORK/nanomsg.out" && fail "a zmq ratio without --baseline zmq"

	# Vectors: one SP message of three parts with the transport's header; gathered, so
	# not zero-copy.
	echo "== fq-bench --transport nanomsg --baseline nanomsg --parts 3"
	"$BENCH" --json --timeout 10 --transport nanomsg --pattern thr --scheme ipc --size 64K \
		--parts 3 --count 300 --baseline nanomsg >"$WORK/nanomsg_parts.out" ||
		fail "nanomsg vectors: exit status $?"
	cat "$WORK/nanomsg_parts.out"
	check_json "$WORK/nanomsg_parts.out" 2
	grep '"impl":"nanomsg"' "$WORK/nanomsg_parts.out" | grep '"parts":3,' |
		grep '"count":300,' | grep -q '"zero_copy":false' || fail "nanomsg vector row"

	"$BENCH" --timeout 10 --transport nanomsg --pattern thr --scheme tcp --size 64K \
		--count 300 --baseline nanomsg >"$WORK/table_nn.out" ||
		fail "table run with nanomsg failed"
	cat "$WORK/table_nn.out"
	grep -q ' fq/nn$' "$WORK/table_nn.out" || fail "fq/nn column missing"
	# impl transport scheme pat size parts msgs/s throughput (2) p50 p99 cpu (2) fq/nn
	[ "$(awk '$1 == "fabriq" && NF == 14' "$WORK/table_nn.out" | grep -c .)" -eq 1 ] ||
		fail "table fabriq row without its fq/nn ratio"
	grep -q '^nanomsg  *libnanomsg  *tcp ' "$WORK/table_nn.out" || fail "table nanomsg row"
fi

# --memset: every sender writes every byte; a memset row per thr size; each thr row's share of
# its bandwidth.
run memset 5 --transport zeromq --pattern thr,lat --scheme ipc --size 4K --count 300 \
	--memset --baseline ring
[ "$(grep -c '"impl":"memset"' "$WORK/memset.out")" -eq 1 ] || fail "memset row missing"
grep '"impl":"memset"' "$WORK/memset.out" | grep -q '"pattern":"thr"' || fail "memset pattern"
[ "$(grep -c '"ratio_vs_memset":' "$WORK/memset.out")" -eq 2 ] || fail "memset ratios missing"
[ "$(grep -c '"memset":true' "$WORK/memset.out")" -eq 5 ] || fail "rows not marked memset"

# iceoryx: fq-bench starts RouDi when none runs and leaves nothing behind; 8M chunks need a
# configuration of its own. Skipped, with a word and exit 0, where iceoryx is not there.
iox_files() {
	ls -d /dev/shm/iceoryx_mgmt /tmp/roudi /tmp/roudi.lock /tmp/iox-unique-roudi.lock \
		/tmp/fq-bench-sender-* /tmp/fq-bench-receiver-* /tmp/fq-bench-pinger-* \
		/tmp/fq-bench-ponger-* 2>/dev/null
}
iox_before=$(iox_files)
echo "== fq-bench --baseline iceoryx"
"$BENCH" --json --timeout 30 --transport zeromq --pattern thr,lat --scheme ipc --sizes 1K,8M \
	--count 100 --memset --baseline iceoryx >"$WORK/iox.out" 2>"$WORK/iox.err"
rc=$?
cat "$WORK/iox.out" "$WORK/iox.err"
[ $rc -eq 0 ] || fail "iceoryx: exit status $rc"
if grep -q 'baseline iceoryx skipped' "$WORK/iox.err"; then
	echo "(iceoryx not available: the baseline was skipped)"
	check_json "$WORK/iox.out" 6
	grep -q '"impl":"iceoryx"' "$WORK/iox.out" && fail "iceoryx rows without iceoryx"
else
	check_json "$WORK/iox.out" 10
	[ "$(grep -c '"impl":"iceoryx"' "$WORK/iox.out")" -eq 4 ] || fail "iceoryx rows missing"
	[ "$(grep -c '"url_scheme":"iox"' "$WORK/iox.out")" -eq 4 ] || fail "iceoryx scheme"
	[ "$(grep -c '"ratio_vs_iceoryx":' "$WORK/iox.out")" -eq 4 ] || fail "iceoryx ratio"
	grep '"impl":"iceoryx"' "$WORK/iox.out" | grep '"pattern":"thr"' |
		grep -q '"count":100,' || fail "iceoryx thr count is not 100"
	[ "$(iox_files)" = "$iox_before" ] || fail "iceoryx left files: $(iox_files)"
fi

# No --transport: every usable transport compiled in, zeromq among them.
run all +2 --sizes 64,4K --pattern thr --duration 0.2
[ "$(grep -c '"transport":"zeromq"' "$WORK/all.out")" -eq 2 ] || fail "zeromq rows missing"

echo "== table output"
"$BENCH" --transport zeromq --pattern thr --size 1M --count 50 >"$WORK/table.out" ||
	fail "table run failed"
cat "$WORK/table.out"
grep -q '^impl ' "$WORK/table.out" || fail "table header missing"
grep -q '^fabriq ' "$WORK/table.out" || fail "table row missing"
"$BENCH" --transport zeromq --pattern lat --size 64 --count 200 --baseline zmq,ring \
	>"$WORK/table2.out" || fail "table run with both baselines failed"
cat "$WORK/table2.out"
grep -q ' fq/raw fq/ring$' "$WORK/table2.out" || fail "ratio columns missing"
grep -q '^ring ' "$WORK/table2.out" || fail "table ring row missing"
"$BENCH" --transport zeromq --pattern thr,lat --size 64 --count 200 --baseline ring,futex \
	--memset >"$WORK/table3.out" 2>/dev/null || fail "table run with futex and memset failed"
cat "$WORK/table3.out"
grep -q ' fq/ring fq/futex /memset$' "$WORK/table3.out" || fail "futex and memset columns"
grep -q '^futex ' "$WORK/table3.out" || fail "table futex row missing"
grep -q '^memset ' "$WORK/table3.out" || fail "table memset row missing"

echo "== usage errors"
for args in "--bogus" "--size 12Q" "--count 0" "--count 5 --duration 1" "--pattern x" \
	"--role sender" "--baseline ring,x" "--baseline iceoryx,futexx" "--impl x" \
	"--baseline ofi,ofx" "--ofi-provider" "--baseline nanomsg,nn"; do
	# shellcheck disable=SC2086 # split on purpose
	"$BENCH" $args >/dev/null 2>&1
	rc=$?
	[ $rc -eq 2 ] || fail "'fq-bench $args' exited $rc, expected 2"
done
"$BENCH" --help | grep -q '^Usage: fq-bench' || fail "--help"

echo "== leftovers"
if [ -n "$(ls -A "$TMPDIR")" ]; then
	ls -la "$TMPDIR" >&2
	fail "files left in TMPDIR"
fi

[ $FAILED -eq 0 ] && echo "fq-bench smoke test passed"
exit $FAILED
