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

# SMC: what the kernel says (fq_smc_probe), and what the test hook makes it say.
expect_grep info out '^smc: (offered|not offered) by this kernel'
run smc_refused env FQ_SMC_INJECT_ERRNO=97 "$FQ_INFO" # EAFNOSUPPORT
expect_rc smc_refused 0
expect_grep smc_refused out '^smc: not offered by this kernel \(no AF_SMC, no IPPROTO_SMC\)'
run smc_error env FQ_SMC_INJECT_ERRNO=24 "$FQ_INFO" --json # EMFILE: reported, not "absent"
expect_rc smc_error 0
expect_grep smc_error out '"smc": \{"offered": false, "status": "Too many open files", "error": "FQ_ESYS"\}'

# libfabric providers: listed with their limits when fq-info is built with libfabric.
expect_grep info out '^libfabric providers'
if grep -q '^libfabric providers: not built in' "$SCRATCH/info.out"; then
	expect_grep json out '"libfabric": null,'
else
	# Debian's libfabric always has the tcp provider (under RxM for reliable datagrams).
	expect_grep info out '^    tcp;ofi_rxm: ep=rdm mr_mode=[a-z_|]+ inject=[0-9]+ iov=[0-9]+ rma_iov=[0-9]+ mr_iov=[0-9]+ max_msg=[0-9]+$'
	expect_grep json out '"name": "tcp;ofi_rxm", "ep_type": "rdm", "mr_mode": "[a-z_|]+", "inject_size": [0-9]+, "iov_limit": [0-9]+, "rma_iov_limit": [0-9]+, "mr_iov_limit": [0-9]+, "max_msg_size": [0-9]+'
fi
expect_grep json out '"providers": \['

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
