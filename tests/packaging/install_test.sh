#!/usr/bin/env bash
# Install fabriq into a scratch prefix, then build against the installed package only:
# examples/hello twice (CMake find_package and pkg-config), examples/plugin (CMake,
# fabriq::fabriq-device) and examples/device (pkg-config fabriq-device, and CMake), and run
# them. Both shared libraries must export nothing but the public API (fq_*).
set -euo pipefail
build_dir=$1
source_dir=$2
# A sanitized library needs sanitized programs (the runtime must come first).
sanitize=${3:-}
# 1 when libfabriq-device is built (FQ_DEVICE), and so must be installed.
device=${4:-1}
cflags=""
if [ -n "$sanitize" ]; then
	cflags="-fsanitize=$sanitize"
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cmake --install "$build_dir" --prefix "$scratch/prefix" >/dev/null
cmake -S "$source_dir/examples/hello" -B "$scratch/cmake-build" \
	-DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_C_FLAGS="$cflags" >/dev/null
cmake --build "$scratch/cmake-build" >/dev/null
libdir=$(dirname "$(find "$scratch/prefix" -name 'libfabriq.so' | head -n 1)")
[ -e "$libdir/libfabriq.so.0" ] || { echo "SONAME link libfabriq.so.0 missing"; exit 1; }
[ -e "$libdir/libfabriq.a" ] || { echo "static library missing"; exit 1; }
out=$(cd "$scratch" && LD_LIBRARY_PATH="$libdir" timeout 30 "$scratch/cmake-build/hello")
[ "$out" = "hello" ] || { echo "cmake-built example printed '$out'"; exit 1; }

export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046,SC2086 # flags are words
cc $cflags "$source_dir/examples/hello/hello.c" $(pkg-config --cflags --libs fabriq) -o "$scratch/hello-pc"
out=$(cd "$scratch" && LD_LIBRARY_PATH="$libdir" timeout 30 "$scratch/hello-pc")
[ "$out" = "hello" ] || { echo "pkg-config-built example printed '$out'"; exit 1; }

# libfabric is loaded when the ofi transport is used, not with libfabriq (its providers install
# signal handlers in every program that loads it).
if ldd "$libdir/libfabriq.so" | grep -q libfabric; then
	echo "libfabriq.so links libfabric at load time"
	exit 1
fi
# Only the public API is exported.
check_exports() {
	local others
	others=$(nm -D --defined-only "$libdir/$1" | awk '{print $3}' | grep -v '^fq_' || true)
	if [ -n "$others" ]; then
		echo "$1 exports symbols other than fq_*:"
		head <<<"$others"
		exit 1
	fi
}
check_exports libfabriq.so
if [ "$device" != 1 ]; then
	echo "install, find_package, pkg-config and symbol visibility: ok (no device library)"
	exit 0
fi

# The device library: the example plugin (CMake) and the minimal device (pkg-config, CMake).
[ -e "$libdir/libfabriq-device.so.0" ] || { echo "SONAME link libfabriq-device.so.0 missing"; exit 1; }
cmake -S "$source_dir/examples/plugin" -B "$scratch/plugin-build" \
	-DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_C_FLAGS="$cflags" >/dev/null
cmake --build "$scratch/plugin-build" >/dev/null
[ -e "$scratch/plugin-build/libfabriq-plugin-hello.so" ] || { echo "example plugin not built"; exit 1; }
# shellcheck disable=SC2046,SC2086 # flags are words
cc -std=c11 -Wall -Wextra -Wpedantic -Wno-unused-parameter -Werror $cflags \
	"$source_dir/examples/device/minimal_device.c" $(pkg-config --cflags --libs fabriq-device) \
	-o "$scratch/minimal-device-pc"
cmake -S "$source_dir/examples/device" -B "$scratch/device-build" \
	-DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_C_FLAGS="$cflags" >/dev/null
cmake --build "$scratch/device-build" >/dev/null
for dev in "$scratch/minimal-device-pc" "$scratch/device-build/minimal_device"; do
	status=0
	out=$(cd "$scratch" && LD_LIBRARY_PATH="$libdir" timeout 30 "$dev" --help) || status=$?
	[ "$status" = 0 ] || { echo "$dev --help exited with $status"; exit 1; }
	grep -q "^Usage: " <<<"$out" || { echo "$dev --help printed no usage:"; echo "$out"; exit 1; }
	grep -q -- "--in-channel" <<<"$out" || { echo "$dev --help lacks --in-channel"; exit 1; }
	# No channels: nothing to receive, RUNNING ends at once and the device exits cleanly.
	status=0
	out=$(cd "$scratch" && LD_LIBRARY_PATH="$libdir" timeout 30 "$dev" \
		--id x --control static --severity warn) || status=$?
	[ "$status" = 0 ] || { echo "$dev --id x --control static exited with $status"; exit 1; }
	[ "$out" = "x: 0 messages, 0 bytes" ] || { echo "$dev printed '$out'"; exit 1; }
done
# The example plugin loads into the device (-S: its folder) and sees every state.
out=$(cd "$scratch" && LD_LIBRARY_PATH="$libdir" timeout 30 \
	"$scratch/minimal-device-pc" --id x --control static -S "$scratch/plugin-build" -P hello \
	--hello-greeting howdy 2>&1) || { echo "the device with the example plugin failed:"; echo "$out"; exit 1; }
grep -q "howdy: RUNNING" <<<"$out" || { echo "the example plugin did not log RUNNING:"; echo "$out"; exit 1; }
check_exports libfabriq-device.so
echo "install, find_package, pkg-config, plugin and device examples, symbol visibility: ok"
