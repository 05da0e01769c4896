#!/usr/bin/env bash
# A node leader is SIGKILLed mid-run (leader_test kill R, on virtual nodes with leaders on): the
# job must end, with a non-zero status, within 20 s, and mpirun must name the lost rank.
#   leader_kill.sh MPIEXEC LEADER_TEST NP NODES RANK
set -u
mpiexec=$1 prog=$2 np=$3 nodes=$4 victim=$5
out=$(mktemp)
trap 'rm -f "$out"' EXIT
t0=$(date +%s.%N)
MPX_TEST_VNODES=$nodes MPX_MPI_LEADERS=1 timeout 60 "$mpiexec" --oversubscribe -np "$np" \
  "$prog" kill "$victim" >"$out" 2>&1
rc=$?
t1=$(date +%s.%N)
elapsed=$(echo "$t1 - $t0" | bc)
cat "$out"
echo "leader_kill.sh: exit status $rc after $elapsed s"
[ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0 although rank $victim died"; exit 1; }
[ "$rc" -ne 124 ] || { echo "FAIL: the job hung (killed by timeout)"; exit 1; }
[ "$rc" -ne 3 ] || { echo "FAIL: rank 0 went on without rank $victim"; exit 1; }
awk -v e="$elapsed" 'BEGIN { exit !(e < 20) }' || { echo "FAIL: took $elapsed s (>= 20)"; exit 1; }
grep -Eq "rank $victim( |$)" "$out" || { echo "FAIL: no message names rank $victim"; exit 1; }
echo "leader_kill.sh: passed"
