#!/usr/bin/env bash
# Build and run the whole test suite twice: the default build (warnings are errors) and the
# asan preset (AddressSanitizer + UBSan). Also checks formatting. Exit code 0 = all green.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

echo "== clang-format check"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src include tools bench tests -name '*.[ch]')
clang-format --dry-run -Werror $files

jobs=$(nproc)
for preset in default asan; do
	echo "== build: $preset"
	cmake --preset "$preset" >/dev/null
	cmake --build --preset "$preset" -j "$jobs"
	echo "== test: $preset"
	ctest --preset "$preset" -j "$jobs"
done
