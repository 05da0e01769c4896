#!/usr/bin/env bash
# side_by_side.sh: every workload, the peers first and then mpx, in one run (2 workers), each
# command followed by the host's CPU steal time while it ran (from /proc/stat), so that a figure
# taken while the VM was starved can be told apart. Ends with five alternating OpenMP / mpx-threads
# pairs on `empty`.
#   apps/bench/side_by_side.sh [BUILD_DIR] [PEERS_DIR]
# BUILD_DIR defaults to build/default, PEERS_DIR to ../shared/peers (its `run` builds the peers).
set -u
build=${1:-build/default}
peers=${2:-../shared/peers}
B=$build/apps/mpx-bench
P=$peers/run
[ -x "$B" ] || { echo "no $B: build first (cmake --build --preset default)" >&2; exit 2; }
[ -x "$P" ] || { echo "no $P: pass the peers' folder" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cpu() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
r() {
  local t0 s0 t1 s1
  read -r t0 s0 < <(cpu)
  echo "\$ $*"
  "$@" 2>&1 | grep -v metg-step
  read -r t1 s1 < <(cpu)
  echo "# steal $((100 * (s1 - s0) / (t1 - t0 + 1)))%"
}
r "$P" empty 20000 2
r "$B" empty --backend threads --workers 2 --tasks 2000000 --json
r "$B" empty --backend processes --workers 2 --tasks 1000000 --json
r "$P" map 2000000 2
r "$B" map --backend threads --workers 2 --tasks 20000000 --json
r "$B" map --backend processes --workers 2 --tasks 20000000 --json
r "$B" latency --backend threads --workers 2 --tasks 100000 --json
r "$B" latency --backend processes --workers 2 --tasks 100000 --json
r "$P" fib 30 8 2 35
r "$B" fib --backend threads --workers 2 --n 35 --json
r "$B" fib --backend processes --workers 2 --n 35 --json
r "$B" metg --backend threads --workers 2 --json
r "$B" metg --backend processes --workers 2 --json
r "$P" skew 200 2
r "$B" skew --backend threads --workers 2 --json
r "$B" skew --backend processes --workers 2 --json
r "$P" pingpong 50000
r "$B" pingpong --tasks 1000000 --json
r "$P" mpi 20000 2
r mpirun --oversubscribe -np 3 "$B" empty --backend mpi --tasks 1000000 --json
r mpirun --oversubscribe -np 3 "$B" map --backend mpi --tasks 20000000 --json
r mpirun --oversubscribe -np 3 "$B" fib --backend mpi --n 35 --json
r mpirun --oversubscribe -np 3 "$B" latency --backend mpi --tasks 50000 --json
r mpirun --oversubscribe -np 3 "$B" skew --backend mpi --json
echo "# pairs: OpenMP tasks, then mpx-threads, on empty (2M tasks)"
peers_build=${PEERS_BUILD:-/tmp/mpx-peers}
for _ in 1 2 3 4 5; do
  r "$peers_build/cxx_peers" empty 2000000 2
  r "$B" empty --backend threads --workers 2 --tasks 2000000 --json
done
