#!/bin/bash
# fabriq's nanomsg transport against independent SP peers, as real separate processes: fq-cat
# on one side, nanomsg's nanocat or NNG's nngcat on the other.
#   nanomsg.sh FQ_CAT NANOCAT NNGCAT PEER SCHEME CASE
# PEER is nanocat or nngcat, SCHEME tcp or ipc; "fq2peer" cases send from fabriq, "peer2fq"
# cases from the peer. CASE is one of
#   pushpull_fq2peer pushpull_peer2fq  one message, 256 bytes 00..ff (a NUL first, not a vector)
#   pubsub_fq2peer pubsub_peer2fq      PUB/SUB with the prefix "news"; "other" never arrives
#   subvec_peer2fq                     the prefix applies to a vector's first part
#   reqrep_fq2peer reqrep_peer2fq      one request, one reply
#   pair_fq2peer pair_peer2fq          pair v0 (nngcat --pair0)
#   parts_fq2peer                      fq-cat --parts sends one SP message: the documented
#                                      header (built here, independently) and the parts
#   parts_peer2fq                      a body built here with that header arrives as the parts
#   magic_fq2peer magic_peer2fq        a single message that starts with the magic travels as
#                                      a vector of one part; a body with only 5 of its 6 bytes is
#                                      a plain message
#   empty_fq2peer empty_peer2fq        a 0-byte message
#   large_fq2peer large_peer2fq        4 MiB (to nanocat 1 MiB: the most nanocat accepts, as it
#                                      keeps libnanomsg's default NN_RCVMAXSIZE)
#   malformed_peer2fq                  bodies that start with the magic but do not add up are
#                                      dropped with a logged warning; the next message arrives
# The side that binds varies, so that fabriq binds and connects both as sender and receiver:
# fabriq binds its PULL, SUB, REQ and sending PAIR, and the PUSH of parts_fq2peer; it
# connects the other ones.
#
# Timing: the SP tools connect asynchronously, PUB drops what it publishes before the
# subscription is connected, and libnanomsg drops what a closing socket still holds. So a
# sender that is not answered repeats its message (bounded count and interval) until the
# receiver has what it waits for (a count, or bounded polling of its output), and is then
# stopped. Peers that receive print --msgpack (a length before each message), which this
# script cuts back into messages. Binders get a fresh tcp port that nothing uses (retried on
# another if taken meanwhile) or an ipc path in the scratch directory. Every wait is bounded.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../multiproc/harness.sh
. "$here/../multiproc/harness.sh"

fq_cat=$1 nanocat=$2 nngcat=$3 peer=$4 scheme=$5 case=$6
fqh_init "nanomsg-$peer-$scheme-$case" 45
D=$FQH_DIR

case $peer in
nanocat) peer_bin=$nanocat pkg=nanomsg-utils ;;
nngcat) peer_bin=$nngcat pkg=nng-utils ;;
*) fqh_fail "unknown peer $peer"; fqh_finish ;;
esac
if [[ ! -x $peer_bin ]]; then
	fqh_fail "$peer not found ('$peer_bin'): install $pkg (scripts/deps.sh)"
	fqh_finish
fi
case $scheme in
tcp) command -v ss >/dev/null || { fqh_fail "ss not found: install iproute2"; fqh_finish; } ;;
ipc) ;;
*) fqh_fail "unknown scheme $scheme"; fqh_finish ;;
esac

FQ=("$fq_cat" --transport nanomsg)

# ---- Data, and the vector header built independently of fabriq ----------------------------

# put_be WIDTH VALUE: VALUE as WIDTH bytes, big-endian (bash arithmetic is 64-bit).
put_be() {
	local i
	for ((i = $1 - 1; i >= 0; i--)); do
		# shellcheck disable=SC2059 # an octal escape built here
		printf "\\$(printf %03o $((($2 >> (8 * i)) & 255)))"
	done
}

# vec_body OUT FILE...: the SP body of a vector of these parts, as the man page documents it:
# magic 00 'F' 'Q' 'V' 'E' 'C', version 1, flags 0, u32 part count, a u64 size per part (all
# big-endian), then the parts' bytes.
vec_body() {
	local out=$1 f
	shift
	{
		printf '\000FQVEC\001\000'
		put_be 4 $#
		for f; do put_be 8 "$(stat -c %s "$f")"; done
		cat "$@"
	} >"$out"
}

# fq_hex FILE...: what fq-cat --hex (--parts) prints for messages (parts) with these bytes.
fq_hex() {
	local f
	for f; do
		od -An -v -tx1 "$f" | tr -d ' \n'
		echo
	done
}

printf ab >"$D/ab"
: >"$D/empty"
# The builder against the example in fabriq-nanomsg(7): the parts "ab" and "".
vec_body "$D/example" "$D/ab" "$D/empty"
example=" 00 46 51 56 45 43 01 00 00 00 00 02 00 00 00 00 00 00 00 02"
example+=" 00 00 00 00 00 00 00 00 61 62 "
if [[ $(od -An -v -tx1 "$D/example" | tr -s ' \n' ' ') != "$example" ]]; then
	fqh_fail "vec_body does not build the man page's example: $(od -An -v -tx1 "$D/example")"
	fqh_finish
fi
printf alpha >"$D/alpha"
printf 'omega\n' >"$D/omega"
for ((i = 0; i < 256; i++)); do
	# shellcheck disable=SC2059
	printf "\\$(printf %03o "$i")"
done >"$D/bin256"

# ---- Endpoints and processes -----------------------------------------------------------------

EP='' EP_SEQ=0
# new_endpoint WHO: a fresh address in EP. tcp: a port below the ephemeral range that no socket
# uses now. ipc: a path in the scratch dir, named after who binds it (fq or peer).
new_endpoint() {
	local used port
	EP_SEQ=$((EP_SEQ + 1))
	if [[ $scheme == ipc ]]; then
		EP="ipc://$D/$1-$EP_SEQ.sock"
		return
	fi
	used=" $(ss -Htan | awk '{n = split($4, a, ":"); print a[n]}' | tr '\n' ' ') "
	while :; do
		port=$((20000 + RANDOM % 12000))
		[[ $used == *" $port "* ]] || break
	done
	EP="tcp://127.0.0.1:$port"
}

# listening PID: EP is bound, by PID or a child of it (PID is timeout(1) running the binder)
# when ss can tell which process listens (it can for our own ones).
listening() {
	local out lp
	if [[ $EP == ipc://* ]]; then
		[[ -S ${EP#ipc://} ]]
		return
	fi
	out=$(ss -Hltnp "sport = :${EP##*:}")
	[[ -n $out ]] || return 1
	[[ $out == *pid=* ]] || return 0
	while read -r lp; do
		[[ $lp == "$1" || $(ps -o ppid= -p "$lp" | tr -d ' ') == "$1" ]] && return 0
	done < <(grep -o 'pid=[0-9]*' <<<"$out" | cut -d= -f2)
	return 1 # another process's: ours will fail to bind
}

# start_binder NAME WHO CMD...: start CMD, every "@EP@" in it replaced by a fresh endpoint
# (in EP), and wait until it listens there. A binder that ends first (the port was taken
# meanwhile) is tried again on another endpoint.
start_binder() {
	local name=$1 who=$2 try a argv pid
	shift 2
	for try in 1 2 3 4 5; do
		new_endpoint "$who"
		argv=()
		for a; do argv+=("${a//@EP@/$EP}"); done
		fqh_start_out "$name" "${argv[@]}"
		pid=${FQH_PID[$name]}
		while kill -0 "$pid" 2>/dev/null && ! listening "$pid"; do
			if (($(fqh_now_ms) >= FQH_DEADLINE)); then
				fqh_fail "$name does not listen on $EP before the deadline"
				return 1
			fi
			sleep 0.02
		done
		kill -0 "$pid" 2>/dev/null && return 0
		fqh_wait "$name"
		fqh_log "$name ended ($FQH_RC) before listening on $EP (try $try):"
		fqh_show_log "$name"
	done
	fqh_fail "$name could not bind"
	return 1
}

# peer_sock ROLE bind|connect EP: the peer's command line for a ROLE socket, in PEER_CMD.
peer_sock() {
	local role=$1
	if [[ $peer == nanocat ]]; then
		PEER_CMD=("$nanocat" "--$role" "--$2" "$3")
		return
	fi
	[[ $role == pair ]] && role=pair0 # pair v0, the one nanomsg and fabriq speak
	if [[ $2 == bind ]]; then
		PEER_CMD=("$nngcat" "--$role" --listen "$3")
	else
		PEER_CMD=("$nngcat" "--$role" --dial "$3" --async) # retry until the listener is up
	fi
}

# Options of a peer that sends until stopped (bounded), and of one that receives N messages:
# nngcat takes whole seconds and stops after --count; nanocat runs until stopped.
peer_repeat() {
	if [[ $peer == nanocat ]]; then
		REPEAT=(--interval 0.1)
	else
		REPEAT=(--interval 1 --count 40)
	fi
}
peer_rx() {
	RX=(--msgpack)
	[[ $peer == nngcat ]] && RX+=(--count "$1")
}

# msgs_in NAME: cut NAME.out (msgpack from a peer) into $D/NAME.msg.1, .2, ...; N_MSGS is the
# number of complete messages (a message cut short by stopping the peer does not count).
# BAD_AT is the offset of a byte that is not a msgpack string header, else empty.
msgs_in() {
	local out=$D/$1.out size at=0 tag len hdr b
	N_MSGS=0 BAD_AT=
	[[ -f $out ]] || return 0 # not created yet
	size=$(stat -c %s "$out")
	while ((at < size)); do
		read -r tag <<<"$(od -An -tu1 -j "$at" -N1 "$out")"
		case $tag in
		196) hdr=1 ;; # c4 (str 8): 1 length byte
		197) hdr=2 ;; # c5: 2
		198) hdr=4 ;; # c6: 4
		*)
			BAD_AT=$at
			return 0
			;;
		esac
		((at + 1 + hdr <= size)) || break
		len=0
		for b in $(od -An -tu1 -j $((at + 1)) -N "$hdr" "$out"); do
			len=$((len * 256 + b))
		done
		((at + 1 + hdr + len <= size)) || break
		N_MSGS=$((N_MSGS + 1))
		tail -c +$((at + 1 + hdr + 1)) "$out" | head -c "$len" >"$D/$1.msg.$N_MSGS"
		at=$((at + 1 + hdr + len))
	done
	return 0
}

# has_msgs NAME N: NAME printed N messages (or something that is not msgpack: stop waiting).
has_msgs() {
	msgs_in "$1"
	[[ -n $BAD_AT ]] || ((N_MSGS >= $2))
}

# peer_got NAME N: wait until peer NAME has printed N messages, then stop it.
peer_got() {
	fqh_wait_until "$1" "$1 receiving $2 message(s)" has_msgs "$1" "$2"
	stop_peer "$1"
	msgs_in "$1"
	if [[ -n $BAD_AT ]]; then
		fqh_fail "$1.out: not msgpack at offset $BAD_AT"
		show_bytes "$1.out" "$D/$1.out"
	fi
}

show_bytes() {
	echo "    --- $1 ($(stat -c %s "$2") bytes)" >&2
	od -A d -c "$2" | head -n 12 | sed 's/^/    /' >&2
}

# expect_same WHAT WANT GOT: files WANT and GOT hold the same bytes.
expect_same() {
	if [[ ! -f $3 ]] || ! cmp -s "$2" "$3"; then
		fqh_fail "$1: bytes differ"
		show_bytes expected "$2"
		[[ -f $3 ]] && show_bytes got "$3"
		return 1
	fi
	fqh_log "$1: $(stat -c %s "$2") bytes as expected"
}

# expect_msgs NAME FILE...: peer NAME received at least these messages, in this order.
expect_msgs() {
	local name=$1 i=0 f
	shift
	if ((N_MSGS < $#)); then
		fqh_fail "$name received $N_MSGS message(s), expected $#"
		return 1
	fi
	for f; do
		i=$((i + 1))
		expect_same "$name message $i" "$f" "$D/$name.msg.$i"
	done
}

# expect_out NAME FILE: fq-cat NAME printed exactly the bytes of FILE.
expect_out() {
	expect_same "$1 output" "$2" "$D/$1.out" || fqh_show_log "$1"
}

# fq_rx NAME: wait for fq-cat NAME, which must stop by itself, successfully.
fq_rx() {
	fqh_expect_exit "$1" 0
}

# Stopping a process that runs until told: a stopped fq-cat sender says "interrupted" (1), a
# stopped receiver ends normally (0); a stopped peer dies of SIGTERM (143) unless it ended
# by itself (0). Anything else (a crash) is a failure.
stop_fq() {
	fqh_stop "$1"
	[[ -z ${FQH_RC:-} || $FQH_RC == 0 || $FQH_RC == 1 ]] && return 0
	fqh_fail "$1 ended with $FQH_RC when stopped"
	fqh_show_log "$1"
}
stop_peer() {
	fqh_stop "$1"
	[[ -z ${FQH_RC:-} || $FQH_RC == 0 || $FQH_RC == 143 ]] && return 0
	fqh_fail "$1 ended with $FQH_RC when stopped"
	fqh_show_log "$1"
}

# ---- Building blocks --------------------------------------------------------------------------

# fq_to_peer FILE FQ-OPTIONS...: fq-cat PUSH (connecting, repeating) -> peer PULL (binding);
# the peer's first message must be FILE's bytes.
fq_to_peer() {
	local want=$1
	shift
	peer_rx 1
	peer_sock pull bind @EP@
	start_binder rx peer "${PEER_CMD[@]}" "${RX[@]}" || return
	fqh_start_out tx "${FQ[@]}" --push --connect "$EP" --count 200 --interval 0.2 "$@"
	peer_got rx 1
	stop_fq tx
	expect_msgs rx "$want"
}

# peer_to_fq NAME WANT PEER-OPTIONS... -- FQ-OPTIONS...: peer PUSH (connecting, repeating) ->
# fq-cat PULL (binding, --count 1); fq-cat must print exactly WANT's bytes.
peer_to_fq() {
	local name=$1 want=$2 popts=()
	shift 2
	while (($#)) && [[ $1 != -- ]]; do
		popts+=("$1")
		shift
	done
	shift
	start_binder "$name" fq "${FQ[@]}" --pull --bind @EP@ --count 1 "$@" || return
	peer_repeat
	peer_sock push connect "$EP"
	fqh_start_out "$name-tx" "${PEER_CMD[@]}" "${popts[@]}" "${REPEAT[@]}"
	fq_rx "$name"
	stop_peer "$name-tx"
	expect_out "$name" "$want"
}

# ---- Cases ------------------------------------------------------------------------------------

case_pushpull_fq2peer() {
	fq_to_peer "$D/bin256" --file "$D/bin256"
}

case_pushpull_peer2fq() {
	peer_to_fq rx "$D/bin256" --file "$D/bin256" -- --raw
}

case_pubsub_fq2peer() {
	local i
	printf 'news 1' >"$D/news"
	# The publisher alternates "other 1" and "news 1": two "news 1" received means an
	# "other 1" was published in between while the subscriber was connected.
	peer_rx 2
	peer_sock sub bind @EP@
	start_binder rx peer "${PEER_CMD[@]}" --subscribe news "${RX[@]}" || return
	fqh_start_out tx "${FQ[@]}" --pub --connect "$EP" --data "other 1" --data "news 1" \
		--count 300 --interval 0.05
	peer_got rx 2
	stop_fq tx
	expect_msgs rx "$D/news" "$D/news"
	for ((i = 3; i <= N_MSGS; i++)); do
		expect_same "rx message $i" "$D/news" "$D/rx.msg.$i"
	done
}

case_pubsub_peer2fq() {
	printf '"news 1"\n"news 1"\n"news 1"\n' >"$D/want"
	start_binder rx fq "${FQ[@]}" --sub --bind @EP@ --subscribe news --count 3 --quoted ||
		return
	peer_repeat
	peer_sock pub connect "$EP"
	fqh_start_out news "${PEER_CMD[@]}" --data "news 1" "${REPEAT[@]}"
	fqh_start_out other "${PEER_CMD[@]}" --data "other 1" "${REPEAT[@]}"
	fq_rx rx
	stop_peer news
	stop_peer other
	expect_out rx "$D/want"
}

case_subvec_peer2fq() {
	# Vectors start with the magic, not with the prefix: fabriq matches their first part.
	printf news-v >"$D/news-v"
	printf other-v >"$D/other-v"
	printf tail >"$D/tail"
	vec_body "$D/news.vec" "$D/news-v" "$D/empty" "$D/tail"
	vec_body "$D/other.vec" "$D/other-v" "$D/tail"
	printf '"news-v"\n""\n"tail"\n--\n"news-v"\n""\n"tail"\n' >"$D/want"
	start_binder rx fq "${FQ[@]}" --sub --bind @EP@ --subscribe news --parts --count 2 \
		--quoted || return
	peer_repeat
	peer_sock pub connect "$EP"
	fqh_start_out news "${PEER_CMD[@]}" --file "$D/news.vec" "${REPEAT[@]}"
	fqh_start_out other "${PEER_CMD[@]}" --file "$D/other.vec" "${REPEAT[@]}"
	fq_rx rx
	stop_peer news
	stop_peer other
	expect_out rx "$D/want"
}

case_reqrep_fq2peer() {
	printf ping >"$D/ping"
	printf pong >"$D/pong"
	# fabriq's REQ binds and sends once; the peer's REP answers every request with "pong".
	start_binder req fq "${FQ[@]}" --req --bind @EP@ --data ping --raw || return
	peer_rx 1
	peer_sock rep connect "$EP"
	fqh_start_out rep "${PEER_CMD[@]}" --data pong --msgpack
	fq_rx req
	peer_got rep 1
	expect_out req "$D/pong"
	expect_msgs rep "$D/ping"
}

case_reqrep_peer2fq() {
	printf ping >"$D/ping"
	printf pong >"$D/pong"
	# The peer's REQ binds, sends once and prints the reply; fabriq's REP serves until stopped
	# (so that closing cannot drop its reply).
	peer_rx 1
	peer_sock req bind @EP@
	start_binder req peer "${PEER_CMD[@]}" --data ping --msgpack || return
	fqh_start_out rep "${FQ[@]}" --rep --connect "$EP" --data pong --raw
	peer_got req 1
	stop_fq rep
	[[ $FQH_RC == 0 ]] || fqh_fail "rep ended with $FQH_RC"
	expect_msgs req "$D/pong"
	expect_out rep "$D/ping"
}

case_pair_fq2peer() {
	printf 'pair hello' >"$D/want"
	start_binder tx fq "${FQ[@]}" --pair --bind @EP@ --data 'pair hello' --count 200 \
		--interval 0.1 || return
	peer_rx 1
	peer_sock pair connect "$EP"
	fqh_start_out rx "${PEER_CMD[@]}" "${RX[@]}"
	peer_got rx 1
	stop_fq tx
	expect_msgs rx "$D/want"
}

case_pair_peer2fq() {
	printf 'pair hello' >"$D/want"
	peer_repeat
	peer_sock pair bind @EP@
	start_binder tx peer "${PEER_CMD[@]}" --data 'pair hello' "${REPEAT[@]}" || return
	fqh_start_out rx "${FQ[@]}" --pair --connect "$EP" --count 1 --raw
	fq_rx rx
	stop_peer tx
	expect_out rx "$D/want"
}

case_parts_fq2peer() {
	# Sender binds here, receiver connects (the opposite of fq_to_peer).
	vec_body "$D/want" "$D/alpha" "$D/empty" "$D/bin256" "$D/omega"
	start_binder tx fq "${FQ[@]}" --push --bind @EP@ --parts --data alpha --data '' \
		--file "$D/bin256" --file "$D/omega" --count 200 --interval 0.2 || return
	peer_rx 1
	peer_sock pull connect "$EP"
	fqh_start_out rx "${PEER_CMD[@]}" "${RX[@]}"
	peer_got rx 1
	stop_fq tx
	expect_msgs rx "$D/want"
}

case_parts_peer2fq() {
	vec_body "$D/body" "$D/alpha" "$D/empty" "$D/bin256" "$D/omega"
	fq_hex "$D/alpha" "$D/empty" "$D/bin256" "$D/omega" >"$D/want"
	peer_repeat
	peer_sock push bind @EP@
	start_binder tx peer "${PEER_CMD[@]}" --file "$D/body" "${REPEAT[@]}" || return
	fqh_start_out rx "${FQ[@]}" --pull --connect "$EP" --parts --count 1 --hex
	fq_rx rx
	stop_peer tx
	expect_out rx "$D/want"
}

case_magic_fq2peer() {
	printf '\000FQVEC\001\000 not a header' >"$D/magic"
	vec_body "$D/want" "$D/magic"
	fq_to_peer "$D/want" --file "$D/magic"
}

case_magic_peer2fq() {
	printf '\000FQVEC\001\000 not a header' >"$D/magic"
	vec_body "$D/body" "$D/magic"
	printf '\000FQVE' >"$D/five"
	peer_to_fq rx1 "$D/magic" --file "$D/body" -- --raw
	peer_to_fq rx2 "$D/five" --file "$D/five" -- --raw
}

case_empty_fq2peer() {
	fq_to_peer "$D/empty" --data ''
}

case_empty_peer2fq() {
	echo >"$D/want" # --hex: an empty line
	peer_to_fq rx "$D/want" --data '' -- --hex
}

case_large_fq2peer() {
	local size=$((4 << 20))
	[[ $peer == nanocat ]] && size=$((1 << 20)) # nanocat's NN_RCVMAXSIZE: 1 MiB
	head -c "$size" /dev/urandom >"$D/big"
	fq_to_peer "$D/big" --file "$D/big"
}

case_large_peer2fq() {
	head -c $((4 << 20)) /dev/urandom >"$D/big"
	peer_to_fq rx "$D/big" --file "$D/big" -- --raw
}

# malformed_one NAME FILE: the peer sends FILE until fabriq has logged one more malformed
# vector of FILE's size (the warnings come at most once a second, naming the last), then stops.
malformed_one() {
	local name=$1 file=$2 size before
	size=$(stat -c %s "$file")
	before=$(grep -c "malformed vector(s), the last of $size bytes" "$D/rx.log")
	peer_repeat
	peer_sock push connect "$EP"
	fqh_start_out "$name" "${PEER_CMD[@]}" --file "$file" "${REPEAT[@]}"
	fqh_wait_until rx "the warning for $name ($size bytes)" \
		more_warnings "$size" "$before" || return
	stop_peer "$name"
	fqh_log "$name: $(grep "the last of $size bytes" "$D/rx.log" | head -n 1)"
}

more_warnings() {
	(($(grep -c "malformed vector(s), the last of $1 bytes" "$D/rx.log") > $2))
}

case_malformed_peer2fq() {
	local m=$D/bad
	# Each body starts with the magic, and each has a size of its own (the warning names it).
	{ printf '\000FQVEC\001\000'; put_be 4 2; put_be 8 5; put_be 8 100; printf helloabc; } \
		>"$m.short"    # the sizes add up to more than the body
	{ printf '\000FQVEC\001\000'; put_be 4 1; put_be 8 3; printf abcdefghijk; } \
		>"$m.long"     # bytes after the last part
	{ printf '\000FQVEC\002\000'; put_be 4 1; put_be 8 1; printf x; } >"$m.version"
	{ printf '\000FQVEC\001\001'; put_be 4 1; put_be 8 2; printf xy; } >"$m.flags"
	{ printf '\000FQVEC\001\000'; put_be 4 0; } >"$m.zero"  # no parts
	printf '\000FQVEC\001' >"$m.cut"                        # header cut short
	{ printf '\000FQVEC\001\000'; put_be 4 -1; printf 0123456789abcd; } \
		>"$m.count"    # 2^32 - 1 parts
	{ printf '\000FQVEC\001\000'; put_be 4 2; put_be 8 -1; put_be 8 2; printf p; } \
		>"$m.wrap"     # 2^64 - 1 and 2: they add up to the 1 byte there, modulo 2^64
	printf good >"$D/good"
	if [[ -n $(stat -c %s "$m".* | sort | uniq -d) ]]; then
		fqh_fail "two malformed bodies have the same size: the warnings would not tell them apart"
		return
	fi

	start_binder rx fq "${FQ[@]}" --pull --bind @EP@ --count 1 --raw || return
	for bad in short long version flags zero cut count wrap; do
		malformed_one "bad-$bad" "$m.$bad" || break
	done
	peer_repeat
	peer_sock push connect "$EP"
	fqh_start_out good "${PEER_CMD[@]}" --data good "${REPEAT[@]}"
	fq_rx rx
	stop_peer good
	expect_out rx "$D/good"
}

# ---- Run --------------------------------------------------------------------------------------

if ! declare -F "case_$case" >/dev/null; then
	fqh_fail "unknown case $case"
	fqh_finish
fi
export FQ_LOG_LEVEL=warn # the malformed-vector warnings are looked for in the logs
"case_$case"
# Stop whatever is still running (only after a failure); a peer killed by a signal cannot remove
# its ipc file, so those are removed here: only fabriq's must be gone by themselves.
for name in "${FQH_NAMES[@]}"; do
	[[ -n ${FQH_PID[$name]:-} ]] && fqh_stop "$name"
done
rm -f -- "$D"/peer-*.sock
fqh_check_leftovers
fqh_finish
