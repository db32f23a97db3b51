#!/usr/bin/env bash
# SIGTERM in every state: the device walks down to EXITING, exits 0 within the time limit,
# and leaves no process, socket file or shared-memory object behind. Runs on one transport
# (argument 2) with a bind channel and a connect channel between two devices of the test.
set -euo pipefail
dev=$1
transport=$2
run=$(mktemp -d /tmp/fq-sigterm-XXXXXX)
shm_before=$(ls /dev/shm | sort)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	rm -rf "$run"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	[ -f "$run/err" ] && sed 's/^/  | /' "$run/err" >&2
	exit 1
}

# case: target state, transitions to request, state to hold in, extra args
cases=(
	"IDLE||"
	"INITIALIZING DEVICE|INIT DEVICE|INITIALIZING DEVICE"
	"INITIALIZED|INIT DEVICE,COMPLETE INIT|"
	"BINDING|INIT DEVICE,COMPLETE INIT,BIND|BINDING"
	"BOUND|INIT DEVICE,COMPLETE INIT,BIND|"
	"CONNECTING|INIT DEVICE,COMPLETE INIT,BIND,CONNECT|CONNECTING"
	"DEVICE READY|INIT DEVICE,COMPLETE INIT,BIND,CONNECT|"
	"INITIALIZING TASK|INIT DEVICE,COMPLETE INIT,BIND,CONNECT,INIT TASK|INITIALIZING TASK"
	"READY|INIT DEVICE,COMPLETE INIT,BIND,CONNECT,INIT TASK|"
	"RUNNING|INIT DEVICE,COMPLETE INIT,BIND,CONNECT,INIT TASK,RUN|RUNNING"
	"RESETTING TASK|INIT DEVICE,COMPLETE INIT,BIND,CONNECT,INIT TASK,RESET TASK|RESETTING TASK"
	"RESETTING DEVICE|INIT DEVICE,COMPLETE INIT,BIND,RESET DEVICE|RESETTING DEVICE"
	"CONNECTING (no address yet)|INIT DEVICE,COMPLETE INIT,BIND,CONNECT|"
)
n=0
for c in "${cases[@]}"; do
	IFS='|' read -r target start hold <<<"$c"
	n=$((n + 1))
	chans=(--channel-config "name=out,type=push,method=bind,address=ipc://$run/out$n"
	       --channel-config "name=in,type=pull,method=connect,address=ipc://$run/out$n")
	want=$target
	if [ "$target" = "CONNECTING (no address yet)" ]; then
		chans+=(--channel-config "name=later,type=pull,method=connect")
		want=CONNECTING
	fi
	: >"$run/err"
	: >"$run/out"
	FQ_LOG_LEVEL=info "$dev" --id "sig$n" --control none --transport "$transport" \
		--severity info "${chans[@]}" --start "$start" --hold "$hold" \
		>"$run/out" 2>"$run/err" &
	pid=$!
	pids+=("$pid")
	# Wait (bounded) until the device says it is in the target state and is settled there.
	for i in $(seq 1 200); do
		if [ "$want" = IDLE ] || grep -q "state $want\$" "$run/err"; then
			break
		fi
		sleep 0.05
	done
	grep -q "state $want\$" "$run/err" || [ "$want" = IDLE ] || fail "$target: never reached"
	# The device catches SIGTERM once fq_device_run has started (its handler is installed).
	for i in $(seq 1 200); do
		m=$(awk '/^SigCgt:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
		[ -n "$m" ] && (((16#$m >> 14) & 1)) && break
		sleep 0.05
	done
	sleep 0.2 # a state that is left at once would show the next one here
	if [ "$want" != IDLE ] && [ "$(grep -o 'state .*$' "$run/err" | tail -n 1)" != "state $want" ]; then
		fail "$target: did not stay there"
	fi
	kill -TERM "$pid"
	rc=0
	for i in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null; then
		fail "$target: still running 10 s after SIGTERM"
	fi
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || fail "$target: exit status $rc"
	grep -q "state EXITING" "$run/err" || fail "$target: did not pass through EXITING"
	grep -q "^exit ok" "$run/out" || fail "$target: no orderly exit"
	left=$(find "$run" -type s)
	[ -z "$left" ] || fail "$target: socket files left: $left"
	echo "ok: SIGTERM in $target on $transport"
done
# Nothing in /dev/shm from these devices: a new entry that names fabriq or one of their pids
# (libfabric's shm provider names its files by pid). Other tests running at the same time
# (Criterion's bxfi_*, iceoryx) come and go there too, so a bare before/after comparison
# would blame them on us.
shm_after=$(ls /dev/shm | sort)
for f in $(comm -13 <(echo "$shm_before") <(echo "$shm_after")); do
	case $f in *fabriq* | fq-*) fail "/dev/shm: $f left behind" ;; esac
	for p in "${pids[@]}"; do
		case $f in "$p":* | *"-$p-"* | *"_$p") fail "/dev/shm: $f left behind by pid $p" ;; esac
	done
done
# The second signal ends a device at once, even one whose init hook ignores requests.
# The log files are emptied here, not by the redirections of the background job: those run
# in the child, and the loops below could read the previous device's log before they do.
: >"$run/err"
FQ_LOG_LEVEL=info "$dev" --id sig2x --control none --transport "$transport" \
	--start "INIT DEVICE" --hang >"$run/out" 2>"$run/err" &
pid=$!
pids+=("$pid")
for i in $(seq 1 200); do grep -q "state INITIALIZING DEVICE" "$run/err" && break; sleep 0.05; done
kill -TERM "$pid"
sleep 0.1
kill -TERM "$pid" # within half a second: the same request, delivered twice
sleep 0.7
kill -0 "$pid" 2>/dev/null || fail "a device with a hanging init ended after one signal"
kill -TERM "$pid"
rc=0
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "the second signal did not end the device"
wait "$pid" || rc=$?
[ "$rc" -eq 130 ] || fail "second signal: exit status $rc, expected 130"
echo "ok: a second signal exits at once (130)"
# Interactive control from a pipe: FairMQ's keys walk the device up, 'q' shuts it down.
mkfifo "$run/keys"
: >"$run/err"
: >"$run/out"
FQ_LOG_LEVEL=info "$dev" --id inter --control interactive --transport "$transport" \
	--channel-config "name=out,type=push,method=bind,address=ipc://$run/inter" \
	<"$run/keys" >"$run/out" 2>"$run/err" &
pid=$!
pids+=("$pid")
exec 3>"$run/keys"
wait_state() {
	for i in $(seq 1 200); do grep -q "state $1\$" "$run/err" && return 0; sleep 0.05; done
	fail "interactive: never reached $1"
}
printf 'i' >&3
wait_state INITIALIZED
printf 'bxj' >&3
wait_state READY
printf 'c' >&3
for i in $(seq 1 100); do grep -q "^state: READY" "$run/out" && break; sleep 0.05; done
grep -q "^state: READY" "$run/out" || fail "interactive: 'c' did not print the state"
printf 'r' >&3
wait_state RUNNING
printf 'q' >&3
for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "interactive: 'q' did not end the device"
rc=0
wait "$pid" || rc=$?
exec 3>&-
[ "$rc" -eq 0 ] || fail "interactive: exit status $rc"
grep -q "state EXITING" "$run/err" || fail "interactive: did not pass through EXITING"
echo "ok: interactive keys i b x j c r q"
echo "all $n states, the second signal and interactive control: ok"
