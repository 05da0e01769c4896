#!/usr/bin/env bash
# farm.sh: the tools a batch script uses instead of mpx-farm, on N `true` commands with W slots:
#   farm.sh xargs N W      `xargs -P W -n1 true`: fork+exec and nothing else (peer xargs-P)
#   farm.sh parallel N W   GNU parallel -j W with a --joblog, as scripts that want a record of what
#                          ran use it (peer gnu-parallel-joblog); its joblog must hold N lines
# One JSON line as mpx-bench --json (backend processes, workload farm). GNU parallel missing: one
# line {"peer": ..., "skipped": "why"} and exit 0 (a missing peer is a note, not an error). Bad
# arguments: exit 2; a tool that fails: exit 1.
set -u
usage() { echo "usage: farm.sh xargs|parallel N W (N, W positive)" >&2; exit 2; }
[ $# -eq 3 ] || usage
tool=$1 n=$2 w=$3
[[ $n =~ ^[1-9][0-9]*$ && $w =~ ^[1-9][0-9]*$ ]] || usage
emit() { # emit PEER T0 T1
  awk -v p="$1" -v n="$n" -v w="$w" -v a="$2" -v b="$3" 'BEGIN {
    s = b - a; printf "{\"peer\": \"%s\", \"backend\": \"processes\", \"workload\": \"farm\", " \
      "\"workers\": %d, \"tasks\": %d, \"seconds\": %.6f, \"tasks_per_s\": %.1f}\n", p, w, n, s,
      (s > 0 ? n / s : 0) }'
}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
seq "$n" >"$tmp/ids"
case $tool in
  xargs)
    t0=$(date +%s.%N)
    xargs -P "$w" -n1 true <"$tmp/ids" || { echo "farm.sh: xargs failed" >&2; exit 1; }
    emit xargs-P "$t0" "$(date +%s.%N)" ;;
  parallel)
    if ! command -v parallel >/dev/null || ! parallel --version 2>/dev/null | grep -q GNU; then
      echo '{"peer": "gnu-parallel-joblog", "workload": "farm", "skipped": "GNU parallel is not installed (Debian package parallel)"}'
      exit 0
    fi
    t0=$(date +%s.%N)
    parallel --will-cite -j "$w" --joblog "$tmp/joblog" true <"$tmp/ids" ||
      { echo "farm.sh: parallel failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    [ "$(($(wc -l <"$tmp/joblog") - 1))" -eq "$n" ] || { echo "farm.sh: joblog is short" >&2; exit 1; }
    emit gnu-parallel-joblog "$t0" "$t1" ;;
  *) usage ;;
esac
