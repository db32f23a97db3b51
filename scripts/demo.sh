#!/usr/bin/env bash
# The README demo: build an optimised fabriq, then run examples/demo/topology.json with
# fq-launch: fq-sampler -> fq-processor -> fq-sink over shared memory for about 10 seconds,
# each device logging its channel rates every second and a summary line at the end.
# Extra arguments go to fq-launch (e.g. --duration 30); see docs/man/fq-launch.1.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
exec build/release/tools/fq-launch --bin-dir build/release/devices "$@" \
	examples/demo/topology.json
