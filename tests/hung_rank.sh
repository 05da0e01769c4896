#!/usr/bin/env bash
# A worker rank hangs whole (frozen) and never comes back (hostile_test hung_rank_at_finalize):
# the executor abandons it after stall_timeout, mpx_finalize answers MPX_EWORKER_LOST naming it
# instead of waiting in MPI_Finalize forever, and the launcher then ends the job, with a non-zero
# status, well before the 60 s that only a hang reaches.   hung_rank.sh MPIEXEC HOSTILE_TEST
set -u
mpiexec=$1 prog=$2
out=$(mktemp)
thaw() { # a failed run may leave a frozen rank behind: thaw it, move it out, remove the cgroup
  for d in /sys/fs/cgroup/freezer/mpx_hostile.*; do
    [ -d "$d" ] || continue
    echo THAWED >"$d/freezer.state" 2>/dev/null
    while read -r p; do echo "$p" >/sys/fs/cgroup/freezer/cgroup.procs 2>/dev/null; done <"$d/cgroup.procs"
    rmdir "$d" 2>/dev/null
  done
  rm -f "$out"
}
trap thaw EXIT
timeout -s KILL 60 "$mpiexec" --oversubscribe -np 3 "$prog" mpi hung_rank_at_finalize >"$out" 2>&1
rc=$?
cat "$out"
echo "hung_rank.sh: exit status $rc"
if grep -q "skipped: no cgroup freezer" "$out"; then echo "hung_rank.sh: skipped (no freezer)"; exit 0; fi
[ "$rc" -ne 137 ] || { echo "FAIL: the job hung (killed after 60 s)"; exit 1; }
grep -q "mpx_finalize: .*rank 1 .*abandoned" "$out" || { echo "FAIL: mpx_finalize did not name rank 1"; exit 1; }
grep -q "hostile_test (mpi): all passed" "$out" || { echo "FAIL: rank 0's checks failed"; exit 1; }
[ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0 although MPI was not finalised"; exit 1; }
echo "hung_rank.sh: passed"
