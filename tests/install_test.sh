#!/usr/bin/env bash
# install_test BUILD_DIR SOURCE_DIR [SANITIZERS]: install the built mpx into a scratch prefix,
# then build and run a program against it with find_package(mpx) (shared and static) and with
# pkg-config, on threads and on processes. SANITIZERS (as MPX_SANITIZE) instruments the program
# as mpx was, since an instrumented static libmpx needs the sanitizer runtime.
# First it checks that the installed headers and package files match the parts built in (no
# mpx/mpi.h and no MPI requirement without MPI, no mpx/ipc_*.h without IPC, no protobuf-c in mpx.h).
set -euo pipefail
build=$1 src=$2 san=${3:-}
flags=""
[ -n "$san" ] && flags="-fsanitize=$san"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
# the headers and package files installed match the parts built in (mpx/features.h)
inc="$tmp/prefix/include/mpx"
fail() { echo "install_test: $*" >&2; exit 1; }
have() { grep -q "^#define MPX_HAVE_$1 1" "$inc/features.h"; }
if have MPI; then [ -f "$inc/mpi.h" ] || fail "mpx/mpi.h is not installed"
else
  [ ! -e "$inc/mpi.h" ] || fail "mpx/mpi.h is installed without MPI"
  ! grep -q "ompi-c\\|find_dependency(MPI" "$(find "$tmp/prefix" -name mpx.pc)" \
    "$(find "$tmp/prefix" -name mpxConfig.cmake)" || fail "the package files require MPI"
fi
if have IPC; then [ -f "$inc/ipc_queue.h" ] || fail "mpx/ipc_*.h are not installed"
else [ -z "$(ls "$inc"/ipc_*.h 2>/dev/null)" ] || fail "mpx/ipc_*.h are installed without IPC"
fi
! grep -q "#include.*protobuf" "$inc/mpx.h" || fail "mpx/mpx.h includes protobuf-c"
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
