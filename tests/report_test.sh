#!/usr/bin/env bash
# report_test.sh MPX_BENCH: `mpx-bench report` (apps/bench/report.py, label bench-smoke). Bad
# arguments are refused with exit 2 before anything is written; an mpx-bench that fails makes the
# report say so and exit 1; an mpx-bench that cannot find its script says which; then
# `report --quick` writes report.md with a row for each workload mpx ran, results.jsonl, and PNG
# plots when gnuplot is installed. No figure is compared with anything: speeds are never asserted.
set -u
bench=$(realpath "${1:?usage: report_test.sh MPX_BENCH}")
fails=0
check() { # check WHAT COND...: count a failed condition
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
command -v python3 >/dev/null || { echo "skipped: no python3 (mpx-bench report needs it)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- failure paths first ---------------------------------------------------------------------
for bad in "--repeats 0" "--repeats x" "--workers 0" "--only nope" "--timeout -1" "--bogus"; do
  # shellcheck disable=SC2086
  "$bench" report $bad --out "$tmp/bad" >"$tmp/out" 2>"$tmp/err"
  check "report $bad: exit 2" [ $? -eq 2 ]
  check "report $bad: says why on stderr" [ -s "$tmp/err" ]
  check "report $bad: wrote nothing" [ ! -e "$tmp/bad" ]
done
: >"$tmp/a-file"
"$bench" report --quick --out "$tmp/a-file" >"$tmp/out" 2>"$tmp/err"
check "report --out an existing file: exit 2" [ $? -eq 2 ]
check "report --out an existing file: names it" grep -q "a-file" "$tmp/err"
"$bench" report --help >"$tmp/out" 2>"$tmp/err"
check "report --help: exit 0" [ $? -eq 0 ]
check "report --help: usage on stdout" grep -q -- "--quick" "$tmp/out"

# an mpx-bench that lists its workloads but fails every run: exit 1, and report.md names it
cat >"$tmp/fake-bench" <<'FAKE'
#!/bin/sh
[ "$1" = --help ] && { printf 'usage\nworkloads:\n  empty     fake\n'; exit 0; }
echo "fake mpx-bench refuses" >&2
exit 3
FAKE
chmod +x "$tmp/fake-bench"
MPX_BENCH=$tmp/fake-bench "$bench" report --quick --only empty --out "$tmp/fake" >"$tmp/out" 2>&1
check "a failing mpx-bench: exit 1" [ $? -eq 1 ]
check "a failing mpx-bench: report.md names the command and its message" \
  grep -q "failed: mpx empty threads: exit 3: fake mpx-bench refuses" "$tmp/fake/report.md"

# mpx-bench alone, without its script beside it: exit 1 naming the missing file
mkdir "$tmp/alone" && cp "$bench" "$tmp/alone/mpx-bench"
if "$tmp/alone/mpx-bench" --help >/dev/null 2>&1; then # runs at all when copied (rpath)
  "$tmp/alone/mpx-bench" report --quick >"$tmp/out" 2>"$tmp/err"
  check "no script beside mpx-bench: exit 1" [ $? -eq 1 ]
  check "no script beside mpx-bench: names it" grep -q "mpx-bench-report" "$tmp/err"
fi

# --- the quick report ------------------------------------------------------------------------
"$bench" report --quick --out "$tmp/r" >"$tmp/log" 2>&1
rc=$?
check "report --quick: exit 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$tmp/log"
md=$tmp/r/report.md
check "report.md written" [ -s "$md" ]
check "report.md records the machine and its steal time" grep -q "CPU steal time" "$md"
check "report.md holds mpx-topo's summary" grep -q "default workers" "$md"
workloads="empty map latency metg skew payload strmap farm"
"$bench" --help | grep -q "^  pingpong " && workloads="$workloads pingpong"
for w in $workloads; do
  check "report.md has an mpx row for $w" grep -q "^| $w | \*\*mpx-" "$md"
done
check "results.jsonl holds parsed rows" [ "$(grep -c '"workload"' "$tmp/r/results.jsonl")" -gt 20 ]
if command -v gnuplot >/dev/null; then
  n=0
  for png in "$tmp"/r/*.png; do
    [ -f "$png" ] && [ "$(head -c 4 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e47 ] && n=$((n + 1))
  done
  check "at least one PNG plot ($n)" [ "$n" -ge 1 ]
  check "report.md shows the plots" grep -q '!\[throughput\](throughput.png)' "$md"
else
  echo "note: gnuplot is not installed: no PNG expected"
  check "report.md says why there is no plot" grep -q "gnuplot is not installed" "$md"
fi
[ "$fails" -eq 0 ] && echo "report_test: all checks passed" || echo "report_test: $fails failed"
exit $((fails > 0))
