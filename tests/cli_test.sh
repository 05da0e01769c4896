#!/usr/bin/env bash
# cli_test MPX_BENCH MPX_TOPO MPX_FARM: every program's command line. Each bad input (an unknown
# option or value, a missing value, an absurd number: fib's n over 50, more workers than 64 per
# CPU) ends with exit status 2 and a message on stderr naming what was wrong, before anything
# runs (each is given 20 s: the old mpx-bench ran `fib --n 100` for ever); --help prints to stdout
# and exits 0; mpx-bench's text output starts with a header line, its metg row is a METG or
# "no METG", never a row of 0 tasks, and its stdout is line-buffered. Nothing here times anything.
set -uo pipefail
bench=$1 topo=$2 farm=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
not_ok() { echo "not ok - $*"; failed=1; }

# bad PROGRAM WANT ARGS...: exit 2, nothing on stdout, WANT (the bad value) named on stderr
bad() {
  local prog=$1 want=$2
  shift 2
  timeout 20 "$prog" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  if [ $rc -ne 2 ]; then not_ok "$(basename "$prog") $*: exit $rc, not 2 ($(head -c 200 "$tmp/err"))"
  elif [ -s "$tmp/out" ]; then not_ok "$(basename "$prog") $*: printed on stdout: $(head -c 200 "$tmp/out")"
  elif ! grep -qF -- "$want" "$tmp/err"; then not_ok "$(basename "$prog") $*: stderr does not name '$want': $(cat "$tmp/err")"
  else echo "ok - $(basename "$prog") $*: exit 2, $(head -1 "$tmp/err")"
  fi
}

# help PROGRAM ARGS...: exit 0, the usage on stdout, nothing on stderr
help() {
  local prog=$1
  shift
  timeout 20 "$prog" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  if [ $rc -ne 0 ]; then not_ok "$(basename "$prog") $*: exit $rc, not 0"
  elif ! grep -qi "usage" "$tmp/out"; then not_ok "$(basename "$prog") $*: no usage on stdout"
  elif [ -s "$tmp/err" ]; then not_ok "$(basename "$prog") $*: wrote on stderr: $(head -c 200 "$tmp/err")"
  else echo "ok - $(basename "$prog") $*: exit 0, usage on stdout"
  fi
}

# --- mpx-bench --------------------------------------------------------------------------------
bad "$bench" "100" fib --n 100
bad "$bench" "abc" fib --n abc
bad "$bench" "10000" empty --workers 10000
bad "$bench" "-3" empty --workers -3
bad "$bench" "nonsense" nonsense
bad "$bench" "--bogus" empty --bogus
bad "$bench" "--tasks" empty --tasks
bad "$bench" "0" empty --tasks 0
bad "$bench" "99999999999999999999" empty --tasks 99999999999999999999
bad "$bench" "foo" empty --backend foo
bad "$bench" "diagonal" empty --binding diagonal
bad "$bench" "inf" skew --long inf
bad "$bench" "nan" skew --short nan
bad "$bench" "-1" empty --timeout -1
bad "$bench" "foo" payload --size foo
bad "$bench" "2G" payload --size 2G
bad "$bench" "1M..4K" payload --size 1M..4K
bad "$bench" "0" metg --repeat 0
bad "$bench" "extra" empty extra
bad "$bench" "no workload" --json
help "$bench" --help
help "$bench" -h

# the text output: a header line first; metg's row is a METG or "no METG", never 0 tasks in 0 s
if "$bench" metg --backend threads --workers 2 --tasks 400 --repeat 1 >"$tmp/out" 2>"$tmp/err"; then
  grep -q "^backend *workload" <<< "$(head -1 "$tmp/out")" && echo "ok - mpx-bench's text output starts with a header" ||
    not_ok "mpx-bench metg: no header line: $(head -1 "$tmp/out")"
  row=$(grep -E "^[a-z]+ +metg +" "$tmp/out")
  if [ -z "$row" ]; then not_ok "mpx-bench metg: no metg row: $(cat "$tmp/out")"
  elif grep -q " 0 tasks" <<<"$row"; then not_ok "mpx-bench metg prints a row of 0 tasks: $row"
  elif ! grep -qE "METG [0-9.]+ us|no METG" <<<"$row"; then not_ok "mpx-bench metg: neither a METG nor none: $row"
  else echo "ok - mpx-bench metg: $row"
  fi
else
  not_ok "mpx-bench metg failed: $(cat "$tmp/err")"
fi

# stdout is line-buffered: the first row reaches a pipe while the run goes on (fully buffered,
# the rows came all at once at exit); metg with 5 searches runs well past its first row
mkfifo "$tmp/fifo"
"$bench" metg --backend threads --workers 2 --tasks 400 --repeat 5 >"$tmp/fifo" 2>/dev/null &
pid=$!
if IFS= read -r -t 60 first <"$tmp/fifo" && kill -0 $pid 2>/dev/null; then
  echo "ok - mpx-bench's first line arrives while it runs: $first"
else
  not_ok "mpx-bench's stdout is not line-buffered: its first line came at exit, or never"
fi
kill $pid 2>/dev/null
wait $pid 2>/dev/null

# --- mpx-topo ---------------------------------------------------------------------------------
bad "$topo" "--bogus" --bogus
bad "$topo" "abc" --workers abc
bad "$topo" "--workers" --workers
bad "$topo" "diagonal" --binding diagonal
bad "$topo" "extra" extra
bad "$topo" "/nonexistent/topo.xml" --xml /nonexistent/topo.xml
bad "$topo" "bogus" --synthetic bogus
help "$topo" --help
# many workers on a small machine: placed, with a warning
if "$topo" --synthetic "core:2 pu:1" --workers 200 >"$tmp/out" 2>"$tmp/err" &&
  grep -q "warning" "$tmp/err" && [ "$(grep -c '^worker ' "$tmp/out")" -eq 200 ]; then
  echo "ok - mpx-topo --workers 200 on 2 PUs: placed, with a warning"
else
  not_ok "mpx-topo --workers 200 on 2 PUs: $(cat "$tmp/err")"
fi

# --- mpx-farm ---------------------------------------------------------------------------------
bad "$farm" "--bogus" --bogus true
bad "$farm" "abc" -j abc true
bad "$farm" "100000" -j 100000 true
bad "$farm" "foo" --backend foo true
bad "$farm" "sometimes" --progress sometimes true
bad "$farm" "/nonexistent/tasks" /nonexistent/tasks
bad "$farm" "usage" joblog
help "$farm" --help
help "$farm" status --help
help "$farm" joblog --help
help "$farm" cat --help

exit $failed
