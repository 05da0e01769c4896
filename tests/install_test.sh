#!/usr/bin/env bash
# install_test BUILD_DIR SOURCE_DIR [SANITIZERS]: install the built mpx into a scratch prefix and
# use it as README's Install section says, each program run with a clean environment (no
# LD_LIBRARY_PATH):
#  - the installed headers and package files match the parts built in (no mpx/mpi.h and no MPI
#    requirement without MPI, no mpx/ipc_*.h without IPC, no protobuf-c in mpx.h);
#  - every installed program has a RUNPATH relative to itself ($ORIGIN/...) that holds
#    libmpx.so.0, loads without LD_LIBRARY_PATH (mpx-topo runs, mpx-bench and mpx-farm answer
#    --help), and still does once the whole prefix is moved elsewhere;
#  - a program built with find_package(mpx) (shared and static) runs, on threads and processes;
#  - with pkg-config: shared with README's -Wl,-rpath, and static (`pkg-config --static --libs`,
#    libmpx.a linked in, the system's libraries shared);
#  - README's complete program and README's CMakeLists.txt, extracted from README.md, build
#    both ways and print what README says they print.
# SANITIZERS (as MPX_SANITIZE) instruments the programs as mpx was, since an instrumented static
# libmpx needs the sanitizer runtime.
set -euo pipefail
build=$1 src=$2 san=${3:-}
flags=""
[ -n "$san" ] && flags="-fsanitize=$san"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install_test: $*" >&2; exit 1; }
# a clean environment: what a user's fresh shell has (the sanitizers' options kept for ASan runs)
clean() { env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$tmp" ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} \
  ${TSAN_OPTIONS:+TSAN_OPTIONS=$TSAN_OPTIONS} ${UBSAN_OPTIONS:+UBSAN_OPTIONS=$UBSAN_OPTIONS} "$@"; }
unset LD_LIBRARY_PATH
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
# the headers and package files installed match the parts built in (mpx/features.h)
inc="$tmp/prefix/include/mpx"
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

# --- installed programs: a RUNPATH relative to themselves that holds libmpx, and they load ----
# every executable file the install put anywhere (bin/, examples), not the libraries
progs=$(find "$tmp/prefix" -type f -perm -u=x ! -name '*.so*' ! -name '*.a' -exec sh -c \
  'head -c4 "$1" | grep -q ELF' sh {} \; -print)
for p in $progs; do
  rp=$(readelf -d "$p" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]/\2/p')
  [ -n "$rp" ] || fail "${p#"$tmp"/} has no RUNPATH: it cannot find libmpx.so.0 when installed"
  found=""
  IFS=: read -ra dirs <<< "$rp"
  for d in "${dirs[@]}"; do
    case $d in "\$ORIGIN"*) [ -e "${d/\$ORIGIN/$(dirname "$p")}/libmpx.so.0" ] && found=$d ;; esac
  done
  [ -n "$found" ] || fail "${p#"$tmp"/}: no \$ORIGIN-relative RUNPATH holding libmpx.so.0 (RUNPATH $rp)"
  ! clean ldd "$p" | grep "not found" || fail "${p#"$tmp"/}: a library is not found (above)"
done
[ -n "$progs" ] || ! grep -q "MPX_BUILD_APPS:BOOL=ON" "$build/CMakeCache.txt" ||
  fail "no program was installed"
run_programs() { # the installed programs of prefix $1 run with a clean environment
  local bin=$1/bin
  [ -x "$bin/mpx-topo" ] || return 0
  local out # (not piped into grep -q: the program would die of SIGPIPE under pipefail)
  out=$(clean "$bin/mpx-topo" --workers 2) && grep -q "^default workers:" <<< "$out" ||
    fail "$bin/mpx-topo does not run: $out"
  for p in mpx-bench mpx-farm; do
    [ -x "$bin/$p" ] || continue
    out=$(clean "$bin/$p" --help) && grep -q "usage" <<< "$out" || fail "$bin/$p --help does not run: $out"
  done
}
run_programs "$tmp/prefix"
mv "$tmp/prefix" "$tmp/moved" # the prefix is relocatable: RUNPATH and mpx.pc are relative
run_programs "$tmp/moved"
mv "$tmp/moved" "$tmp/prefix"

# --- CMake: find_package(mpx), shared and static -----------------------------------------------
cmake -S "$src/tests/install" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" > /dev/null
cmake --build "$tmp/consumer" > /dev/null
clean "$tmp/consumer/consumer"
clean MPX_BACKEND=processes "$tmp/consumer/consumer_static"

# --- pkg-config: shared with README's rpath flag, and static -----------------------------------
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$(find "$tmp/prefix" -name mpx.pc)")
libdir=$(pkg-config --variable=libdir mpx)
cc $flags "$src/tests/install/consumer.c" $(pkg-config --cflags --libs mpx) -Wl,-rpath,"$libdir" \
   -o "$tmp/consumer_pc"
clean "$tmp/consumer_pc"
static_libs=$(pkg-config --static --libs mpx) || fail "pkg-config --static --libs mpx fails"
cc $flags "$src/tests/install/consumer.c" $(pkg-config --cflags mpx) -Wl,--as-needed -l:libmpx.a \
   $static_libs -o "$tmp/consumer_pc_static" || fail "cannot link with: $static_libs"
! grep -q "NEEDED.*libmpx" <<< "$(readelf -d "$tmp/consumer_pc_static")" ||
  fail "the static pkg-config program needs libmpx.so"
clean MPX_BACKEND=processes "$tmp/consumer_pc_static"

# --- README's complete program and CMakeLists.txt, as a newcomer copies them -------------------
readme="$src/README.md"
mkdir "$tmp/readme"
awk '/^## A complete program/ {on = 1} on && /^```c$/ {code = 1; next} code && /^```$/ {exit}
     code {print}' "$readme" > "$tmp/readme/square.c"
awk '/^## Install/ {on = 1} on && /^```cmake$/ {code = 1; next} code && /^```$/ {exit}
     code {print}' "$readme" > "$tmp/readme/CMakeLists.txt"
grep -q "MPX_TASK" "$tmp/readme/square.c" || fail "README.md: no complete program found"
grep -q "find_package(mpx" "$tmp/readme/CMakeLists.txt" || fail "README.md: no CMakeLists.txt found"
check_square() { # README says: 7^2 = 49, the squares' sum, the shouted words and the failed item
  local out
  out=$(clean "$@") || fail "README's program failed: $out"
  for want in "7^2 = 49" "sum 332833500" "item 0: FUTURES" "item 2 failed: MPX_EINVAL" "item 3: C"; do
    grep -qF "$want" <<< "$out" || fail "README's program does not print '$want': $out"
  done
}
cmake -S "$tmp/readme" -B "$tmp/readme/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_C_FLAGS="$flags -Wall -Wextra -Werror" -DCMAKE_EXE_LINKER_FLAGS="$flags" > /dev/null
cmake --build "$tmp/readme/build" > /dev/null
check_square "$tmp/readme/build/square"
cc $flags -Wall -Wextra -Werror "$tmp/readme/square.c" $(pkg-config --cflags --libs mpx) \
   -Wl,-rpath,"$libdir" -o "$tmp/readme/square_pc"
check_square MPX_BACKEND=processes "$tmp/readme/square_pc"
echo "install_test: ok (programs: $(echo $progs | wc -w))"
