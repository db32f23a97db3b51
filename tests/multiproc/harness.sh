# shellcheck shell=bash
# fabriq multi-process test harness: source this file from a test script.
#
#   fqh_init NAME [BUDGET_S]     unique session + scratch dir, overall deadline, cleanup trap
#   fqh_start NAME CMD...        start a process (output to $FQH_DIR/NAME.log), bounded by the
#                                deadline; NAME is used by the functions below
#   fqh_start_out NAME CMD...    the same, with stdout apart in $FQH_DIR/NAME.out
#   fqh_wait NAME                wait for it (until the deadline, then kill it); sets FQH_RC
#   fqh_stop NAME                end a process that runs until told: SIGTERM, then fqh_wait
#                                (does nothing when NAME was already waited for)
#   fqh_wait_until NAME WHAT CMD...  poll (bounded) until CMD succeeds; gives up early when
#                                process NAME has ended without CMD succeeding
#   fqh_expect_exit NAME CODE    wait and check the exit code (prints the log on mismatch)
#   fqh_wait_file PATH           wait for a file to appear (bounded polling)
#   fqh_check_leftovers          no socket files in the scratch dir, no new fabriq objects in
#                                /dev/shm
#   fqh_fail MSG / fqh_finish    record a failure / exit 0 or 1 (runs the cleanup)
#
# Every wait is bounded by the deadline; nothing sleeps to synchronise (bounded polling only).
# Cleanup kills only the processes this harness started, by pid.

FQH_FAILED=0
declare -A FQH_PID
FQH_NAMES=()

fqh_log() {
	printf '[%s] %s\n' "${FQH_NAME:-harness}" "$*" >&2
}

fqh_fail() {
	fqh_log "FAIL: $*"
	FQH_FAILED=1
}

fqh_now_ms() {
	local s ns
	read -r s ns <<<"$(date '+%s %N')"
	echo $((s * 1000 + 10#$ns / 1000000))
}

# Names of fabriq-looking objects in /dev/shm (one per line, sorted).
fqh_shm_list() {
	find /dev/shm -maxdepth 1 -mindepth 1 \( -name 'fq[-_]*' -o -name 'fabriq*' \
		-o -name "*${FQH_SESSION}*" \) -printf '%f\n' 2>/dev/null | sort
}

fqh_cleanup() {
	local name pid
	for name in "${FQH_NAMES[@]}"; do
		pid=${FQH_PID[$name]}
		if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
			fqh_log "killing straggler $name (pid $pid)"
			kill -TERM "$pid" 2>/dev/null
		fi
	done
	for name in "${FQH_NAMES[@]}"; do
		pid=${FQH_PID[$name]}
		[[ -n $pid ]] && wait "$pid" 2>/dev/null
	done
	if [[ -n ${FQH_DIR:-} && -d $FQH_DIR ]]; then
		if [[ $FQH_FAILED != 0 && -n ${FQH_KEEP:-} ]]; then
			fqh_log "keeping $FQH_DIR"
		else
			rm -rf -- "$FQH_DIR"
		fi
	fi
}

fqh_init() {
	FQH_NAME=$1
	local budget=${2:-120}
	FQH_SESSION="fqh$$x$RANDOM"
	export FQ_SESSION=$FQH_SESSION
	FQH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fqh-${FQH_NAME}-XXXXXX") || exit 1
	FQH_DEADLINE=$(($(fqh_now_ms) + budget * 1000))
	FQH_SHM_BEFORE=$(fqh_shm_list)
	trap fqh_cleanup EXIT
	trap 'fqh_fail "interrupted"; exit 1' INT TERM
	fqh_log "session $FQH_SESSION, scratch $FQH_DIR, budget ${budget}s"
}

# Seconds left until the deadline (at least 1).
fqh_left_s() {
	local left=$(((FQH_DEADLINE - $(fqh_now_ms)) / 1000))
	((left < 1)) && left=1
	echo "$left"
}

fqh_start() {
	local name=$1
	shift
	# timeout(1) is a second line of defence should the harness itself be killed.
	timeout -k 2 "$(fqh_left_s)" "$@" >"$FQH_DIR/$name.log" 2>&1 &
	FQH_PID[$name]=$!
	FQH_NAMES+=("$name")
	fqh_log "started $name (pid $!): $*"
}

fqh_start_out() {
	local name=$1
	shift
	timeout -k 2 "$(fqh_left_s)" "$@" >"$FQH_DIR/$name.out" 2>"$FQH_DIR/$name.log" &
	FQH_PID[$name]=$!
	FQH_NAMES+=("$name")
	fqh_log "started $name (pid $!): $*"
}

fqh_wait() {
	local name=$1 pid=${FQH_PID[$1]}
	while kill -0 "$pid" 2>/dev/null; do
		if (($(fqh_now_ms) >= FQH_DEADLINE)); then
			fqh_fail "$name still running at the deadline: killed"
			fqh_term "$pid"
			break
		fi
		sleep 0.02
	done
	wait "$pid" 2>/dev/null
	FQH_RC=$?
	FQH_PID[$name]=
	return 0
}

# fqh_term PID: SIGTERM to the command that timeout(1) PID runs, not to timeout itself.
# timeout forwards a SIGTERM and then sends SIGCONT to the command and its group; a SIGCONT
# discards the SIGSTOP of a PTRACE_ATTACH in progress, so an ASan build that is already
# exiting hangs in LeakSanitizer's stop-the-world (its tracer waits for that stop for good)
# until timeout's SIGKILL. Falls back to timeout when the command is not found.
fqh_term() {
	local child
	child=$(ps -o pid= --ppid "$1" 2>/dev/null | head -n 1 | tr -d ' ')
	kill -TERM "${child:-$1}" 2>/dev/null
}

fqh_stop() {
	local pid=${FQH_PID[$1]:-}
	[[ -n $pid ]] || return 0 # already waited for
	fqh_term "$pid"
	fqh_wait "$1"
}

fqh_show_log() {
	sed "s/^/    $1| /" "$FQH_DIR/$1.log" >&2
}

fqh_expect_exit() {
	local name=$1 want=$2
	fqh_wait "$name"
	if [[ $FQH_RC != "$want" ]]; then
		fqh_fail "$name exited with $FQH_RC, expected $want"
		fqh_show_log "$name"
	else
		fqh_log "$name exited with $FQH_RC"
		[[ -n ${FQH_VERBOSE:-} ]] && fqh_show_log "$name"
	fi
	return 0
}

fqh_wait_file() {
	local path=$1
	while [[ ! -s $path ]]; do
		if (($(fqh_now_ms) >= FQH_DEADLINE)); then
			fqh_fail "$path did not appear before the deadline"
			return 1
		fi
		sleep 0.02
	done
	return 0
}

fqh_wait_until() {
	local name=$1 what=$2 pid=${FQH_PID[$1]:-}
	shift 2
	until "$@"; do
		if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
			"$@" && return 0
			fqh_fail "$name ended before $what"
			return 1
		fi
		if (($(fqh_now_ms) >= FQH_DEADLINE)); then
			fqh_fail "$what did not happen before the deadline"
			return 1
		fi
		sleep 0.02
	done
	return 0
}

fqh_check_leftovers() {
	local sockets new
	sockets=$(find "$FQH_DIR" -type s 2>/dev/null)
	if [[ -n $sockets ]]; then
		fqh_fail "socket files left behind: $sockets"
	fi
	new=$(comm -13 <(echo "$FQH_SHM_BEFORE") <(fqh_shm_list))
	if [[ -n $new ]]; then
		fqh_fail "left behind in /dev/shm: $new"
	fi
	return 0
}

fqh_finish() {
	if [[ $FQH_FAILED != 0 ]]; then
		fqh_log "FAILED"
		exit 1
	fi
	fqh_log "passed"
	exit 0
}
