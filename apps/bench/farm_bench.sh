#!/usr/bin/env bash
# farm_bench.sh: mpx-farm against xargs -P2 and GNU parallel --joblog on N `true` tasks, in one run
# on one machine (issue 12). Figures are measured and printed, never asserted.
#
#   apps/bench/farm_bench.sh [MPX_FARM] [N]        (defaults: build/default/apps/mpx-farm, 20000)
#
# Environment: PARALLEL_N (tasks for GNU parallel, default min(N, 2000): at ~44 jobs/s with
# --joblog, 20,000 would take minutes; its rate is compared, not its total), MPIEXEC (default
# mpirun if found; MPIEXEC= skips the MPI row).
# Rows: mpx-farm -j2 with its journal (threads backend, one spawning thread per slot); the same
# under `mpirun -np 3` (rank 0 coordinates, 2 worker ranks of one slot each); xargs -P2 -n1 true
# (the fork+exec limit, no bookkeeping; true found on PATH); xargs running the farm's own command
# (/bin/sh -c true: the baseline for mpx-farm's per-task overhead); GNU parallel -j2 --joblog. Then a resume of the N-task
# journal where one line changed: the time until that one task has run and the farm exited.
# Needs: bash, GNU time is not needed (date +%s.%N), bc. GNU parallel and Open MPI are optional
# (packages parallel, openmpi-bin: benchmark-only peers, listed in .ci/deps).
set -u
farm=${1:-build/default/apps/mpx-farm}
n=${2:-20000}
pn=${PARALLEL_N:-$((n < 2000 ? n : 2000))}
mpiexec=${MPIEXEC-$(command -v mpirun || true)}
farm=$(realpath "$farm")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

seq 1 "$n" | sed 's/.*/true/' >tasks
now() { date +%s.%N; }
rate() { echo "scale=1; $1 / $2" | bc; }
steal() { awk '/^cpu / { print $9 }' /proc/stat; }
declare -A secs rates
row() { # row NAME TASKS SECONDS
  secs[$1]=$3
  rates[$1]=$(rate "$2" "$3")
  printf '%-34s %7d tasks %8.2f s %9s tasks/s %8.3f ms/task/slot\n' "$1" "$2" "$3" "${rates[$1]}" \
    "$(echo "scale=6; $3 * 2 * 1000 / $2" | bc)"
}
echo "farm_bench: N=$n true tasks, 2 slots, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

t0=$(now)
"$farm" -j2 --progress off --journal farm.journal tasks >/dev/null || echo "mpx-farm failed"
row "mpx-farm -j2 (journal)" "$n" "$(echo "$(now) - $t0" | bc)"
[ "$(grep -c '^F' farm.journal)" -eq "$n" ] || echo "  (journal does not hold $n F records!)"

if [ -n "$mpiexec" ]; then
  t0=$(now)
  "$mpiexec" --oversubscribe -np 3 "$farm" -j1 --progress off --journal mpi.journal tasks \
    >/dev/null 2>&1 || echo "mpx-farm under mpirun failed"
  row "mpirun -np 3 mpx-farm -j1 (journal)" "$n" "$(echo "$(now) - $t0" | bc)"
else
  echo "(no mpirun: MPI row skipped)"
fi

t0=$(now)
seq 1 "$n" | xargs -P2 -n1 true
row "xargs -P2 -n1 true" "$n" "$(echo "$(now) - $t0" | bc)"

t0=$(now)
seq 1 "$n" | xargs -P2 -n1 /bin/sh -c true
row "xargs -P2 -n1 /bin/sh -c true" "$n" "$(echo "$(now) - $t0" | bc)"

if command -v parallel >/dev/null; then
  t0=$(now)
  seq 1 "$pn" | parallel -j2 --joblog par.joblog true
  row "parallel -j2 --joblog" "$pn" "$(echo "$(now) - $t0" | bc)"
else
  echo "(GNU parallel not installed: its row is skipped; apt-get install parallel)"
fi

# resume: the N-task journal, one line edited: read, match, run one task, exit
sed -i '$ s/.*/true # edited/' tasks
t0=$(now)
"$farm" -j2 --progress off --journal farm.journal --resume tasks >/dev/null 2>&1
echo "resume of the $n-task journal with one edited line: $(echo "$(now) - $t0" | bc) s" \
  "(read, match, run that one task, exit)"

f=${rates["mpx-farm -j2 (journal)"]}
echo "ratios: mpx-farm / xargs = $(echo "scale=2; $f / ${rates["xargs -P2 -n1 true"]}" | bc)"
[ -n "${rates["parallel -j2 --joblog"]:-}" ] &&
  echo "        mpx-farm / parallel --joblog = $(echo "scale=2; $f / ${rates["parallel -j2 --joblog"]}" | bc)"
[ -n "${rates["mpirun -np 3 mpx-farm -j1 (journal)"]:-}" ] &&
  echo "        mpx-farm MPI / mpx-farm local = $(echo "scale=2; ${rates["mpirun -np 3 mpx-farm -j1 (journal)"]} / $f" | bc)" \
    "(the MPI row includes mpirun's start-up)"
echo "per-task overhead of mpx-farm over xargs running the same /bin/sh -c true:" \
  "$(echo "scale=3; (${secs["mpx-farm -j2 (journal)"]} - ${secs["xargs -P2 -n1 /bin/sh -c true"]}) * 2000 / $n" | bc)" \
  "ms per task per slot (negative: faster)"
echo "steal (cpu ticks since boot): $(steal)"
