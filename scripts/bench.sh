#!/usr/bin/env bash
# Build an optimised fabriq and measure every transport compiled in: throughput of
# PUSH/PULL at a few message sizes, fabriq against the raw library in the same run.
# Extra arguments go to fq-bench (see docs/man/fq-bench.1.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
build/release/bench/fq-bench --transport all --sizes 64,64K,1M --duration 1 --baseline zmq,ring,nanomsg "$@"
