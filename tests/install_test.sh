#!/usr/bin/env bash
# install_test BUILD_DIR SOURCE_DIR [SANITIZERS]: install the built mpx into a scratch prefix,
# then build and run a program against it with find_package(mpx) (shared and static) and with
# pkg-config, on threads and on processes. SANITIZERS (as MPX_SANITIZE) instruments the program
# as mpx was, since an instrumented static libmpx needs the sanitizer runtime.
set -euo pipefail
build=$1 src=$2 san=${3:-}
flags=""
[ -n "$san" ] && flags="-fsanitize=$san"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
cmake -S "$src/tests/install" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" > /dev/null
cmake --build "$tmp/consumer" > /dev/null
export LD_LIBRARY_PATH="$tmp/prefix/lib:${LD_LIBRARY_PATH:-}"
"$tmp/consumer/consumer"
MPX_BACKEND=processes "$tmp/consumer/consumer_static"
pcdir=$(dirname "$(find "$tmp/prefix" -name mpx.pc)")
export PKG_CONFIG_PATH="$pcdir"
cc $flags "$src/tests/install/consumer.c" $(pkg-config --cflags --libs mpx) -o "$tmp/consumer_pc"
"$tmp/consumer_pc"
