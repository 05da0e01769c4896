#!/usr/bin/env bash
# A worker rank is SIGKILLed mid-run (mpi_test kill): the job must end, with a non-zero status,
# within 20 s, and mpirun must name the lost rank.   mpi_kill.sh MPIEXEC MPI_TEST
set -u
mpiexec=$1 prog=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
t0=$(date +%s.%N)
timeout 60 "$mpiexec" --oversubscribe -np 3 "$prog" kill >"$out" 2>&1
rc=$?
t1=$(date +%s.%N)
elapsed=$(echo "$t1 - $t0" | bc)
cat "$out"
echo "mpi_kill.sh: exit status $rc after $elapsed s"
[ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0 although rank 1 died"; exit 1; }
[ "$rc" -ne 124 ] || { echo "FAIL: the job hung (killed by timeout)"; exit 1; }
[ "$rc" -ne 3 ] || { echo "FAIL: rank 0 went on without rank 1"; exit 1; }
awk -v e="$elapsed" 'BEGIN { exit !(e < 20) }' || { echo "FAIL: took $elapsed s (>= 20)"; exit 1; }
grep -Eq "rank 1|process rank 1" "$out" || { echo "FAIL: no message names rank 1"; exit 1; }
echo "mpi_kill.sh: passed"
