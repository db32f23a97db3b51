# Shared by the tools tests (sourced, POSIX sh). A test script is run as
#   sh SCRIPT FQ_CAT FQ_INFO
# and starts with
#   . "$(dirname "$0")/lib.sh"
# Gives a private scratch directory for ipc paths, bounded processes, straggler clean-up on
# any exit, and assertions that print the processes' output when they fail.
set -u

# shellcheck disable=SC2034 # used by the scripts that source this file
FQ_CAT=${1:?usage: $0 FQ_CAT FQ_INFO}
# shellcheck disable=SC2034
FQ_INFO=${2:?usage: $0 FQ_CAT FQ_INFO}
# Upper bound for every process a test starts; CTest's own timeout is above it.
LIMIT=${FQ_TOOLS_TEST_LIMIT:-20}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/fq-tools.XXXXXX") || exit 1
PIDS=""

cleanup() {
	# Only processes this script started, by pid. timeout(1) passes SIGTERM on to fq-cat,
	# which then closes its socket and exits.
	for pid in $PIDS; do
		kill "$pid" 2>/dev/null
	done
	for pid in $PIDS; do
		wait "$pid" 2>/dev/null
	done
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
	for f in "$SCRATCH"/*.out "$SCRATCH"/*.err; do
		[ -s "$f" ] || continue
		echo "--- ${f##*/}"
		head -c 4000 "$f"
		echo
	done >&2
}

fail() {
	echo "FAIL: $*" >&2
	show_logs
	exit 1
}

# url NAME: a unique ipc address inside the scratch directory.
url() {
	echo "ipc://$SCRATCH/$1"
}

# start NAME CMD...: run CMD in the background, bounded; stdout to NAME.out, stderr NAME.err.
start() {
	_name=$1
	shift
	timeout --foreground -k 10 "$LIMIT" "$@" >"$SCRATCH/$_name.out" 2>"$SCRATCH/$_name.err" &
	eval "PID_$_name=$!"
	PIDS="$PIDS $!"
}

# run NAME CMD...: run CMD in the foreground, bounded; its exit status is in RC.
run() {
	_name=$1
	shift
	timeout --foreground -k 10 "$LIMIT" "$@" >"$SCRATCH/$_name.out" 2>"$SCRATCH/$_name.err"
	RC=$?
}

# finish NAME WANT: wait for background process NAME, which must exit with status WANT.
finish() {
	eval "_pid=\$PID_$1"
	# shellcheck disable=SC2154 # _pid is set by the eval
	wait "$_pid"
	_rc=$?
	_rest=""
	for _p in $PIDS; do
		[ "$_p" = "$_pid" ] || _rest="$_rest $_p"
	done
	PIDS=$_rest
	[ "$_rc" = "$2" ] || fail "$1 exited with $_rc, expected $2"
}

# expect_rc NAME WANT: the last `run` must have exited with WANT.
expect_rc() {
	[ "$RC" = "$2" ] || fail "$1 exited with $RC, expected $2"
}

# expect_out NAME TEXT: NAME.out must be exactly TEXT (printf format, no arguments).
expect_out() {
	# shellcheck disable=SC2059 # TEXT is meant as a printf format
	printf -- "$2" >"$SCRATCH/$1.expected"
	if ! cmp -s "$SCRATCH/$1.expected" "$SCRATCH/$1.out"; then
		echo "--- expected $1.out" >&2
		od -c "$SCRATCH/$1.expected" | head -20 >&2
		echo "--- got" >&2
		od -c "$SCRATCH/$1.out" | head -20 >&2
		fail "$1: output differs"
	fi
}

# expect_grep NAME FILE-SUFFIX PATTERN: NAME.FILE-SUFFIX must contain PATTERN (grep -E).
expect_grep() {
	grep -Eq -- "$3" "$SCRATCH/$1.$2" || fail "$1.$2 lacks /$3/"
}

# wait_for NAME PATTERN: wait (bounded) until NAME.err shows PATTERN, e.g. an endpoint.
wait_for() {
	_waited=0
	until grep -Eq -- "$2" "$SCRATCH/$1.err" 2>/dev/null; do
		_waited=$((_waited + 1))
		[ "$_waited" -le $((LIMIT * 20)) ] || fail "$1 never printed /$2/"
		sleep 0.05
	done
}

# no_sockets_left: every process is gone; none may leave a socket file behind.
no_sockets_left() {
	_left=$(find "$SCRATCH" -type s | tr "\n" " ")
	[ -z "$_left" ] || fail "socket files left behind: $_left"
}

pass() {
	no_sockets_left
	echo "PASS: ${0##*/}"
	exit 0
}
