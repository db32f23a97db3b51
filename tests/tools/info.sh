#!/bin/sh
# fq-info: transports with their usability, the option catalogue, error numbers, JSON, usage.
. "$(dirname "$0")/lib.sh"

run info "$FQ_INFO"
expect_rc info 0
expect_grep info out '^fabriq [0-9]+\.[0-9]+\.[0-9]+$'
expect_grep info out '^    zeromq: usable$'

run json "$FQ_INFO" --json
expect_rc json 0
expect_grep json out '"name": "zeromq", "usable": true, "status": "usable"'
if command -v python3 >/dev/null 2>&1; then
	python3 -m json.tool "$SCRATCH/json.out" >/dev/null || fail "fq-info --json is not JSON"
fi

run options "$FQ_INFO" --options
expect_rc options 0
expect_grep options out '^socket:$'
expect_grep options out '^    snd_hwm: int, default "[0-9]+"$'
expect_grep options out '^        environment: FQ_SOCKET_SND_HWM$'
expect_grep options out '^    max_msg_size: size '

run options_json "$FQ_INFO" --options --json
expect_rc options_json 0
expect_grep options_json out '"name": "snd_hwm", "type": "int", "default": "[0-9]+", "env": "FQ_SOCKET_SND_HWM"'
if command -v python3 >/dev/null 2>&1; then
	python3 -m json.tool "$SCRATCH/options_json.out" >/dev/null ||
		fail "fq-info --options --json is not JSON"
fi

run strerror "$FQ_INFO" --strerror -3
expect_rc strerror 0
expect_out strerror '-3 FQ_EAGAIN: resource temporarily unavailable (back-pressure or nothing to receive)\n'

run strerror_json "$FQ_INFO" --strerror -16 --json
expect_rc strerror_json 0
expect_out strerror_json '{"code": -16, "name": "FQ_EPARTS", "message": "message has several parts: receive it with fq_recvv"}\n'

run version "$FQ_INFO" --version
expect_rc version 0
expect_grep version out '^fq-info \(fabriq\) [0-9]+\.[0-9]+\.[0-9]+$'

run help "$FQ_INFO" --help
expect_rc help 0
expect_grep help out '^Usage: fq-info'

for bad in "--bogus" "--strerror" "--strerror abc" "--options --strerror -1" "extra"; do
	# shellcheck disable=SC2086 # split on purpose
	run bad "$FQ_INFO" $bad
	expect_rc "fq-info $bad" 2
done

pass
