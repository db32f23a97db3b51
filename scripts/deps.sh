#!/usr/bin/env bash
# The one list of fabriq's build and test dependencies (Debian 12 packages), installed when
# missing. Needs root (or sudo) the first time; a no-op once everything is there.
set -euo pipefail

packages=(
	build-essential cmake pkg-config clang-format
	libzmq3-dev          # zeromq transport
	libcriterion-dev     # test framework
	libjansson-dev       # JSON configuration (device framework), fq-info --json
	libfabric-dev        # ofi transport (RDMA through libfabric: tcp;ofi_rxm, shm, verbs)
	libfabric-bin        # fi_info, fi_pingpong: compare with fq-info's provider list, raw baselines
	libnanomsg-dev       # nanomsg transport (SP wire protocol)
	nanomsg-utils nng-utils # nanocat and nngcat: independent SP peers for interoperability tests
	python3-zmq          # an independent ZeroMQ peer for interoperability checks
	procps iproute2      # process and socket checks in multi-process tests
	iceoryx libiceoryx-binding-c-dev # fq-bench --baseline iceoryx: iox-roudi and the C API
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "fabriq: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
