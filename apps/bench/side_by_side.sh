#!/usr/bin/env bash
# side_by_side.sh: every workload, mpx beside its peers, in one run: now `mpx-bench report`
# (apps/bench/report.py with the peers of apps/bench/peers/), which repeats each command as
# alternating pairs, logs the CPU steal time of each, and writes report.md and PNG plots. This
# script only runs it from a build tree, for the instructions that name it.
#   apps/bench/side_by_side.sh [BUILD_DIR] [mpx-bench report's options: --out DIR --repeats N ...]
# BUILD_DIR defaults to build/default.
set -u
build=${1:-build/default}
[ $# -gt 0 ] && shift
[ -x "$build/apps/mpx-bench" ] || { echo "no $build/apps/mpx-bench: build first" >&2; exit 2; }
exec "$build/apps/mpx-bench" report "$@"
