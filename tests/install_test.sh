#!/usr/bin/env bash
# install_test BUILD_DIR SOURCE_DIR: install the built mpx into a scratch prefix, then build and
# run a program against it twice, with find_package(mpx) (shared and static) and with pkg-config,
# on threads and on processes.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
cmake -S "$src/tests/install" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" > /dev/null
cmake --build "$tmp/consumer" > /dev/null
export LD_LIBRARY_PATH="$tmp/prefix/lib:${LD_LIBRARY_PATH:-}"
"$tmp/consumer/consumer"
MPX_BACKEND=processes "$tmp/consumer/consumer_static"
pcdir=$(dirname "$(find "$tmp/prefix" -name mpx.pc)")
export PKG_CONFIG_PATH="$pcdir"
cc "$src/tests/install/consumer.c" $(pkg-config --cflags --libs mpx) -o "$tmp/consumer_pc"
"$tmp/consumer_pc"
