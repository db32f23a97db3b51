#!/usr/bin/env bash
# Install fabriq into a scratch prefix, then build examples/hello against the installed
# package twice (CMake find_package and pkg-config) and run both binaries.
set -euo pipefail
build_dir=$1
source_dir=$2
# A sanitized library needs sanitized programs (the runtime must come first).
sanitize=${3:-}
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
cc $cflags "$source_dir/examples/hello/hello.c" $(pkg-config --cflags --libs fabriq) -o "$scratch/hello-pc"
out=$(cd "$scratch" && LD_LIBRARY_PATH="$libdir" timeout 30 "$scratch/hello-pc")
[ "$out" = "hello" ] || { echo "pkg-config-built example printed '$out'"; exit 1; }
# Only the public API is exported.
if nm -D --defined-only "$libdir/libfabriq.so" | awk '{print $3}' | grep -v '^fq_' | grep -q .; then
	echo "symbols other than fq_* are exported:"
	nm -D --defined-only "$libdir/libfabriq.so" | awk '{print $3}' | grep -v '^fq_' | head
	exit 1
fi
echo "install, find_package, pkg-config and symbol visibility: ok"
