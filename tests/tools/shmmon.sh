#!/bin/sh
# fq-shmmon: a shmem sender that holds a message shows up as the owner of a segment of
# session "default" holding a block; a receiver shows up as a user of its sender's segment;
# a tcp:// endpoint shows up with its port and the process holding it, and is gone with it;
# --session and --pid filter; the JSON is JSON; --cleanup removes a socket file nobody
# listens on at the --ipc paths and keeps a live one; usage errors.
# Run as: sh shmmon.sh FQ_CAT FQ_INFO FQ_SHMMON
. "$(dirname "$0")/lib.sh"

FQ_SHMMON=${3:?usage: $0 FQ_CAT FQ_INFO FQ_SHMMON}
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || fail "$PYTHON is needed"

# stop NAME: end background process NAME with SIGTERM and wait for it. The signal goes to
# the process under timeout(1), not through it: timeout follows the SIGTERM it passes on with
# a SIGCONT, and under LeakSanitizer (FQ_SANITIZE) a SIGCONT that arrives while the leak
# check at exit attaches to the process discards the attach's SIGSTOP, so that fq-cat spins
# in the leak check until timeout's own limit sends another signal.
stop() {
	eval "_pid=\$PID_$1"
	# shellcheck disable=SC2154 # _pid is set by the eval
	_child=$(pgrep -P "$_pid" 2>/dev/null | head -n 1)
	kill "${_child:-$_pid}" 2>/dev/null
	wait "$_pid" 2>/dev/null
	_rest=""
	for _p in $PIDS; do
		[ "$_p" = "$_pid" ] || _rest="$_rest $_p"
	done
	PIDS=$_rest
}

# check FILE SCRIPT ARGS...: run the python SCRIPT on the fq-shmmon JSON in FILE with ARGS
# (sys.argv[2:]); the script exits non-zero when the document does not show what it wants.
# Helpers available to SCRIPT: doc (the document), parent(pid), segments() (session, owner,
# segment) triples; modules json, os and sys.
check() {
	_file=$1
	_script=$2
	shift 2
	"$PYTHON" - "$_file" "$@" <<EOF
import json, sys
import os
doc = json.load(open(sys.argv[1]))
def parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0
def segments():
    for s in doc["sessions"]:
        for o in s["owners"]:
            for g in o["segments"]:
                yield s, o, g
$_script
EOF
}

# await NAME SCRIPT ARGS...: run fq-shmmon --json until `check` passes (bounded).
await() {
	_name=$1
	shift
	_waited=0
	while :; do
		run "$_name" "$FQ_SHMMON" --json
		[ "$RC" = 0 ] || fail "fq-shmmon --json exited with $RC"
		check "$SCRATCH/$_name.out" "$@" >"$SCRATCH/$_name.check" 2>"$SCRATCH/$_name.check.err" &&
			return 0
		_waited=$((_waited + 1))
		[ "$_waited" -le $((LIMIT * 20)) ] || fail "$_name: fq-shmmon never showed it"
		sleep 0.05
	done
}

# ---- Usage ----

run help "$FQ_SHMMON" --help
expect_rc help 0
expect_grep help out '^Usage: fq-shmmon'

run version "$FQ_SHMMON" --version
expect_rc version 0
expect_grep version out '^fq-shmmon \(fabriq\) [0-9]+\.[0-9]+\.[0-9]+$'

for bad in "--bogus" "--pid" "--pid 0" "--pid x" "--watch 0" "--watch -1" "--ipc /x" \
	"--cleanup --pid 1" "--cleanup --watch 1" "extra"; do
	# shellcheck disable=SC2086 # split on purpose
	run bad "$FQ_SHMMON" $bad
	expect_rc "fq-shmmon $bad" 2
done

# ---- A sender that holds a message ----

# A bound PUSH without peers has allocated its message in shared memory and holds it while
# it waits for a puller (inline_max=0: a message this small would live in private memory).
start hold "$FQ_CAT" --push --transport shmem --transport-options inline_max=0 \
	--bind "$(url hold)" --data held
# shellcheck disable=SC2154 # PID_hold is set by start
await hold_json '
tpid = int(sys.argv[2])
for s, o, g in segments():
    if parent(o["pid"]) != tpid:
        continue
    held = [h for h in g["holders"] if h["pid"] == o["pid"]]
    if (s["session"] == "default" and o["alive"] and o["comm"] == "fq-cat" and
            g["kind"] == "pool" and g["blocks_out"] >= 1 and g["used_bytes"] > 0 and
            any(u["pid"] == o["pid"] and u["fd"] for u in g["users"]) and
            held and held[0]["blocks"] >= 1 and held[0]["bytes"] >= 4):
        print(o["pid"])
        sys.exit(0)
sys.exit(1)
' "$PID_hold"
holder=$(cat "$SCRATCH/hold_json.check")

# Text: the same, grouped by session and owner.
run hold_text "$FQ_SHMMON" --pid "$holder"
expect_rc hold_text 0
expect_grep hold_text out '^session "default"$'
expect_grep hold_text out "^  owner $holder fq-cat, id [0-9a-f]{16}\$"
expect_grep hold_text out '^    segment [0-9]+: pool, [0-9]+ bytes, [0-9]+ used, [0-9]+ blocks? out'
expect_grep hold_text out "^      holder $holder fq-cat: [0-9]+ blocks?, [0-9]+ bytes"

# Filters: --pid shows only segments the pid is involved in, --session only that session.
run pid_json "$FQ_SHMMON" --json --pid "$holder"
expect_rc pid_json 0
check "$SCRATCH/pid_json.out" '
me = int(sys.argv[2])
found = list(segments())
ok = found and all(o["pid"] == me or any(u["pid"] == me for u in g["users"]) or
                   any(h["pid"] == me for h in g["holders"]) for s, o, g in found)
sys.exit(0 if ok else 1)
' "$holder" || fail "--pid $holder shows segments it has nothing to do with"

run nosession "$FQ_SHMMON" --session fq-shmmon-none
expect_rc nosession 0
expect_out nosession 'no shmem segments\n'

run nosession_json "$FQ_SHMMON" --json --session fq-shmmon-none
expect_rc nosession_json 0
check "$SCRATCH/nosession_json.out" '
sys.exit(0 if doc["sessions"] == [] and doc["endpoints"] == [] else 1)
' || fail "--session fq-shmmon-none --json is not empty lists of sessions and endpoints"

# ---- A tcp:// endpoint ----

# Its data path is an abstract socket "@fabriq-shmem-<uid>-tcp-<port>": listed with the
# port and the process that holds it, and gone with that process.
start tcp "$FQ_CAT" --push --transport shmem --bind tcp://127.0.0.1:0 --data tcp -v
wait_for tcp '^fq-cat: endpoint tcp://127\.0\.0\.1:[1-9][0-9]*$'
port=$(sed -n 's|^fq-cat: endpoint tcp://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$SCRATCH/tcp.err")
# shellcheck disable=SC2154 # PID_tcp is set by start
await tcp_json '
port, tpid = int(sys.argv[2]), int(sys.argv[3])
for e in doc["endpoints"]:
    if e["port"] == port and e["name"] == "@fabriq-shmem-%d-tcp-%d" % (os.geteuid(), port):
        for p in e["processes"]:
            if parent(p["pid"]) == tpid and p["comm"] == "fq-cat" and p["alive"]:
                print(p["pid"])
                sys.exit(0)
sys.exit(1)
' "$port" "$PID_tcp"
tcpholder=$(cat "$SCRATCH/tcp_json.check")

run tcp_text "$FQ_SHMMON" --pid "$tcpholder"
expect_rc tcp_text 0
expect_grep tcp_text out "^endpoint tcp port $port: $tcpholder fq-cat\$"

# --pid of another process: not its endpoint.
run tcp_other "$FQ_SHMMON" --json --pid "$$"
expect_rc tcp_other 0
check "$SCRATCH/tcp_other.out" 'sys.exit(0 if doc["endpoints"] == [] else 1)' ||
	fail "--pid $$ shows endpoints it does not hold"

stop tcp
await tcp_gone '
sys.exit(1 if any(e["port"] == int(sys.argv[2]) for e in doc["endpoints"]) else 0)
' "$port"

# ---- A receiver maps its sender's segment ----

session="fq-shmmon-$$"
# inline_max=0: the ticks go by block (inline, they would leave no segment to map).
start stream "$FQ_CAT" --push --transport shmem --transport-options "session=$session,inline_max=0" \
	--bind "$(url stream)" --data tick --count 0 --interval 0.01
start reader "$FQ_CAT" --pull --transport shmem --transport-options "session=$session" \
	--connect "$(url stream)" --ascii
# shellcheck disable=SC2154 # PID_stream and PID_reader are set by start
await stream_json '
session, tsend, trecv = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for s, o, g in segments():
    if s["session"] == session and parent(o["pid"]) == tsend:
        if any(parent(u["pid"]) == trecv and u["registered"] and u["mapped"]
               for u in g["users"]):
            sys.exit(0)
sys.exit(1)
' "$session" "$PID_stream" "$PID_reader"

run session_json "$FQ_SHMMON" --json --session "$session"
expect_rc session_json 0
check "$SCRATCH/session_json.out" '
ok = doc["sessions"] and all(s["session"] == sys.argv[2] for s in doc["sessions"])
sys.exit(0 if ok else 1)
' "$session" || fail "--session $session shows other sessions"

run default_json "$FQ_SHMMON" --json --session default
expect_rc default_json 0
check "$SCRATCH/default_json.out" '
sys.exit(1 if any(s["session"] != "default" for s in doc["sessions"]) else 0)
' || fail "--session default shows other sessions"

# --watch repeats: one JSON document per round, until stopped.
start watch "$FQ_SHMMON" --watch 0.05 --json --session "$session"
_waited=0
until [ "$(grep -c '^  "sessions": ' "$SCRATCH/watch.out")" -ge 2 ]; do
	_waited=$((_waited + 1))
	[ "$_waited" -le $((LIMIT * 20)) ] || fail "--watch did not repeat"
	sleep 0.05
done
stop watch

stop reader
stop stream

# ---- Clean-up of socket files nobody listens on ----

# A stale socket: bound by a process that is gone.
"$PYTHON" -c '
import socket, sys
socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).bind(sys.argv[1])
' "$SCRATCH/stale" || fail "python could not bind $SCRATCH/stale"
[ -S "$SCRATCH/stale" ] || fail "no stale socket to clean up"

# Without --ipc there is nothing to look at: the transport leaves nothing else behind.
run cleanup_nothing "$FQ_SHMMON" --cleanup
expect_rc cleanup_nothing 0
expect_out cleanup_nothing 'nothing to clean up\n'
[ -S "$SCRATCH/stale" ] || fail "--cleanup without --ipc removed $SCRATCH/stale"

run cleanup "$FQ_SHMMON" --cleanup --ipc "ipc://$SCRATCH/stale" --ipc "$SCRATCH/hold"
expect_rc cleanup 0
expect_grep cleanup out "^removed $SCRATCH/stale\$"
expect_grep cleanup out "^in use $SCRATCH/hold\$"
[ ! -e "$SCRATCH/stale" ] || fail "--cleanup left $SCRATCH/stale"
[ -S "$SCRATCH/hold" ] || fail "--cleanup removed $SCRATCH/hold, which is in use"

run cleanup_json "$FQ_SHMMON" --cleanup --json --ipc "$SCRATCH/hold"
expect_rc cleanup_json 0
check "$SCRATCH/cleanup_json.out" '
mine = [p for p in doc["paths"] if p["path"] == sys.argv[2]]
sys.exit(0 if mine and mine[0]["result"] == "in_use" and mine[0]["error"] is None else 1)
' "$SCRATCH/hold" || fail "--cleanup --json does not show $SCRATCH/hold in use"

# Anything but a socket is left alone, and that is an error.
: >"$SCRATCH/plain"
run cleanup_plain "$FQ_SHMMON" --cleanup --ipc "$SCRATCH/plain"
expect_rc cleanup_plain 1
expect_grep cleanup_plain err "$SCRATCH/plain: not a socket"
[ -f "$SCRATCH/plain" ] || fail "--cleanup removed a regular file"

# Nothing there: nothing to do (as rm -f).
run cleanup_none "$FQ_SHMMON" --cleanup --ipc "$SCRATCH/none"
expect_rc cleanup_none 0

stop hold
pass
