#!/usr/bin/env bash
# farm_test.sh: mpx-farm end to end (issue 12).   farm_test.sh MPX_FARM [MPIEXEC]
# (with MPIEXEC it runs only the comparison of processes and MPI -np 3)
#
# Bad input first (exit 2, one clear line, nothing runs), then: journal, joblog and exit code of a
# task file with failures, a timeout and a barrier, exactly; SIGKILL of the farm mid-run and
# --resume (every task ends run exactly once to success, the journal proves it, including the
# tasks that were running when it died); an edited line is run again; --resume-failed; a poison
# task stops after N worker losses; --halt soon,fail=1 stops starting tasks; --retry-on exit=C,
# --timeout P%, BARRIER CHECK, --max-fails; --bind, --gpus and hwloc GPU discovery; 1 MiB of output per
# task intact and never interleaved (grouped, --pack + cat, --results); the walltime (a fake
# SLURM_JOB_END_TIME) and SIGTERM leave a journal that resumes. With MPIEXEC: the same file on
# processes and on MPI -np 3 gives the same journal modulo host and time.
# No check depends on speed: waits poll the journal with generous limits, so the suite passes on
# a loaded machine. Each check prints "ok - what" or "FAIL - what" and the script exits 1 on the
# first failure.
set -u
farm=$1
mpiexec=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

ok() { echo "ok - $*"; }
fail() {
  echo "FAIL - $*"
  exit 1
}
check() { # check "what" command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
# F records of a journal as "seq attempt final outcome exit signal"
frecs() { awk -F'\t' '$1 == "F" { print $2, $3, $4, $5, $6, $7 }' "$1"; }
srecs() { awk -F'\t' '$1 == "S" { print $2, $3 }' "$1"; }
wait_for() { # wait_for SECONDS command...: poll until the command succeeds
  local limit=$1 i=0
  shift
  while ! "$@"; do
    sleep 0.1
    i=$((i + 1))
    [ "$i" -lt $((limit * 10)) ] || return 1
  done
}

# ---- processes and MPI give the same journal (modulo host, pid and time) ---------------------
same_on_mpi() {
  norm() { awk -F'\t' '$1 == "F" { print $2, $3, $4, $5, $6, $7, $14, $15, $19 }' "$1" | sort -n; }
  cat >t_same <<'EOF'
echo one
exit 2
#MPX BARRIER
#MPX REPEAT 4 echo rep $MPX_FARM_REPEAT
sh -c 'kill -TERM $$'
EOF
  "$farm" --backend processes -j2 --journal same_p.journal t_same >/dev/null 2>&1
  rc_p=$?
  timeout 300 "$mpiexec" --oversubscribe -np 3 "$farm" -j1 --journal same_m.journal t_same \
    >/dev/null 2>&1
  rc_m=$?
  norm same_p.journal >p.norm
  norm same_m.journal >m.norm
  check "MPI -np 3: an F record for each of the 7 tasks" [ "$(wc -l <m.norm)" -eq 7 ]
  check "processes and MPI -np 3: same F records (modulo host/time)" cmp -s p.norm m.norm
  check "processes: exit 2 (two failed tasks)" [ "$rc_p" -eq 2 ]
  check "MPI: the job fails too (mpirun passes rank 0's status on)" [ "$rc_m" -ne 0 ]
  timeout 300 "$mpiexec" --oversubscribe -np 3 "$farm" -j1 --no-journal \
    'test -z "$OMPI_COMM_WORLD_RANK$PMIX_RANK" && echo clean $MPX_FARM_RANK #{}' ::: 1 2 3 4 >env_m.out 2>/dev/null
  check "MPI: tasks run on the worker ranks, without the launcher's rank variables" \
    bash -c "[ \$(grep -c '^clean [12]\$' env_m.out) -eq 4 ]"
  # --halt now reaches a task on another rank (a stop request on its future, seen by the task's
  # wait loop): the 30 s sleep is signalled and journalled as stopped, not waited for
  printf 'sleep 30\nsleep 1; exit 5\nsleep 30\n' >t_halt_m
  timeout 120 "$mpiexec" --oversubscribe -np 3 "$farm" -j1 --halt now,fail=1 --grace 1 \
    --journal halt_m.journal t_halt_m >/dev/null 2>&1
  echo "# MPI halt journal: $(awk -F'\t' '$1=="F" { printf "[%s %s %s] ", $2, $4, $5 }' halt_m.journal)"
  check "MPI halt now: the task running on another rank was stopped" bash -c \
    "awk -F'\t' '\$1==\"F\" && \$2==1 && \$5==\"stopped\"' halt_m.journal | grep -q ."
}
if [ -n "$mpiexec" ]; then # farm_test.sh FARM MPIEXEC: only the MPI comparison
  same_on_mpi
  echo "farm_test.sh: all passed"
  exit 0
fi

# ---- 1. bad input: exit 2, one line on stderr, nothing runs ------------------------------------
printf 'touch ran\n' >good
bad_input() { # bad_input "what" args...
  local what=$1
  shift
  rm -f ran err.txt
  "$farm" "$@" >out.txt 2>err.txt
  local rc=$?
  [ "$rc" -eq 2 ] || fail "$what: exit $rc, want 2 ($(cat err.txt))"
  [ ! -e ran ] || fail "$what: a task ran"
  [ "$(wc -l <err.txt)" -eq 1 ] || fail "$what: want one line on stderr, got: $(cat err.txt)"
  grep -q '^mpx-farm: ' err.txt || fail "$what: the message does not start with mpx-farm:"
  ok "bad input: $what -> exit 2: $(cat err.txt)"
}
bad_input "missing task file" no-such-file
bad_input "no task file" -j2
bad_input "--jobs 0" --jobs 0 good
bad_input "--jobs x" -j x good
bad_input "--timeout -1" --timeout -1 good
bad_input "--timeout abc%" --timeout abc% good
bad_input "--retries many" --retries many good
bad_input "--halt sometimes" --halt sometimes good
bad_input "--halt now,fail=0" --halt now,fail=0 good
bad_input "--retry-on never" --retry-on never good
bad_input "--backend gpu" --backend gpu good
bad_input "--progress loud" --progress loud good
bad_input "unknown flag" --frobnicate good
bad_input "flag without value" --timeout
bad_input "--resume without a journal" --resume --no-journal good
printf 'touch ran\n#MPX REPEAT 3\n' >t_rep
bad_input "unterminated REPEAT" t_rep
printf 'touch ran\necho a \\\n' >t_cont
bad_input "unterminated continuation" t_cont
printf 'touch ran\n#MPX FROB x\n' >t_unk
bad_input "unknown directive" t_unk
printf '#DISBATCH CORES 0\ntouch ran\n' >t_cores
bad_input "CORES 0" t_cores
printf '#MPX REPEAT x\ntouch ran\n' >t_repx
bad_input "REPEAT without a count" t_repx
printf '#MPX BARRIER NOW\ntouch ran\n' >t_bar
bad_input "BARRIER with junk" t_bar
mkdir -p adir
bad_input "a directory as task file" adir
"$farm" --no-journal good >/dev/null 2>&1 || fail "a good file runs"
rm -f ran
"$farm" --journal used.journal good >/dev/null 2>&1 || fail "a good file runs with a journal"
rm -f ran
bad_input "a used journal without --resume" --journal used.journal good
"$farm" --help >help.txt 2>help.err
check "--help prints usage to stdout and exits 0" \
  bash -c '[ $? -eq 0 ] && grep -q "^usage: mpx-farm" help.txt && [ ! -s help.err ]'
check "mpx-farm cat/status/joblog on missing files exit 2" bash -c \
  "'$farm' status nope >/dev/null 2>&1; a=\$?; '$farm' cat nope 1 >/dev/null 2>&1; b=\$?;
   '$farm' joblog nope >/dev/null 2>&1; c=\$?; [ \$a -eq 2 ] && [ \$b -eq 2 ] && [ \$c -eq 2 ]"

# ---- 2. failures, a timeout and a barrier: journal, joblog and exit code exact -----------------
cat >t_main <<'EOF'
# a comment, then a blank line

echo one
exit 3
sleep 30
#MPX BARRIER
echo after $MPX_FARM_SEQ
#DISBATCH REPEAT 2 start 0 exit $MPX_FARM_REPEAT
EOF
"$farm" -j2 --timeout 2 --grace 1 --joblog main.joblog t_main >main.out 2>main.err
rc=$?
check "exit code = number of failed tasks (exit 3, timeout, exit 1): 3" [ "$rc" -eq 3 ]
cat >want.joblog <<'EOF'
1 0 0 echo one
2 3 0 exit 3
3 -1 15 sleep 30
4 0 0 echo after $MPX_FARM_SEQ
5 0 0 exit $MPX_FARM_REPEAT
6 1 0 exit $MPX_FARM_REPEAT
EOF
head -1 main.joblog >hdr
printf 'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n' >want.hdr
check "joblog header is GNU parallel's" cmp -s hdr want.hdr
tail -n +2 main.joblog | awk -F'\t' '{ print $1, $7, $8, $9 }' | sort -n >got.joblog
check "joblog rows: seq, exit value, signal, command" cmp -s got.joblog want.joblog
frecs t_main.journal | sort -n >got.f
printf '1 1 1 ok 0 0\n2 1 1 fail 3 0\n3 1 1 timeout -1 15\n4 1 1 ok 0 0\n5 1 1 ok 0 0\n6 1 1 fail 1 0\n' >want.f
check "journal F records: one final attempt each, outcomes exact" cmp -s got.f want.f
check "journal S records: one per task" bash -c "[ \"\$(awk -F'\t' '\$1==\"S\"' t_main.journal | wc -l)\" -eq 6 ]"
check "the barrier held: task 4 started after task 3 ended" awk -F'\t' '
  $1 == "F" && $2 == 3 { end3 = $8 + $9 } $1 == "F" && $2 == 4 { s4 = $8 }
  END { exit !(s4 + 0.002 >= end3) }' t_main.journal
check "grouped output" bash -c 'grep -qx one main.out && grep -qx "after 4" main.out'
check "status file lists every task" bash -c "[ \$(grep -vc '^#' t_main.journal.status) -eq 6 ]"
"$farm" status t_main.journal >status.out
check "mpx-farm status counts" grep -q "6: 3 ok, 3 failed, 0 running" status.out

# ---- 3. SIGKILL mid-run, then --resume: each task ends run exactly once to success ------------
for i in $(seq 1 40); do echo "sleep 0.3; echo \$MPX_FARM_SEQ >>marks"; done >t_kill
rm -f marks
"$farm" -j2 t_kill >/dev/null 2>&1 &
pid=$!
wait_for 120 bash -c "[ \$(awk -F'\t' '\$1==\"F\"' t_kill.journal 2>/dev/null | wc -l) -ge 6 ]" ||
  fail "the farm made no progress"
kill -9 $pid
wait $pid 2>/dev/null
srecs t_kill.journal | sort >s.txt
frecs t_kill.journal | awk '{ print $1, $2 }' | sort >f.txt
comm -23 s.txt f.txt >running_at_death.txt
check "some tasks were running when the farm was killed" [ -s running_at_death.txt ]
sleep 1 # an orphan (there should be none: PR_SET_PDEATHSIG) would write its mark now
# A task that ended in the instant between its exit and its F record may have run (and written
# its mark) although the journal says it was running: it runs again. Only those may repeat.
before=$(wc -l <marks)
nok=$(frecs t_kill.journal | awk '$4 == "ok"' | wc -l)
check "the killed run's marks: its ok records, at most plus the tasks running at death" \
  [ "$before" -ge "$nok" ] && [ "$before" -le $((nok + $(wc -l <running_at_death.txt))) ]
"$farm" -j2 --resume t_kill >/dev/null 2>resume.err
check "resume exits 0" [ $? -eq 0 ]
check "every task wrote its mark, only one that was running at death twice" bash -c \
  '[ "$(sort -n marks | uniq | wc -l)" -eq 40 ] &&
   [ -z "$(sort -n marks | uniq -d | grep -vxF -f <(cut -d" " -f1 running_at_death.txt))" ]'
check "journal: exactly one ok F record per task" bash -c \
  "[ \"\$(awk -F'\t' '\$1==\"F\" && \$5==\"ok\" { print \$2 }' t_kill.journal | sort -n | uniq -c | awk '\$1==1' | wc -l)\" -eq 40 ]"
while read -r seq att; do
  awk -F'\t' -v s="$seq" -v a="$att" '$1 == "F" && $2 == s && $3 > a && $5 == "ok" { f = 1 }
    END { exit !f }' t_kill.journal || fail "task $seq (running at death) has no later ok attempt"
done <running_at_death.txt
ok "tasks running at death were run again under a later attempt number"

# ---- 4. an edited line runs again; --resume-failed ---------------------------------------------
printf 'echo A\necho B\necho C\nexit 1\n' >t_edit
"$farm" -j2 t_edit >/dev/null 2>&1
printf 'echo A\necho B2\necho C\nexit 1\n' >t_edit
"$farm" -j2 --resume t_edit >edit.out 2>edit.err
check "--resume runs only the edited line" bash -c '[ "$(cat edit.out)" = B2 ]'
check "and says so" grep -q "task 2 (line 2) changed since the journal" edit.err
check "--resume counts the earlier failure in the exit code" bash -c \
  "'$farm' -j2 --resume t_edit >/dev/null 2>&1; [ \$? -eq 1 ]"
"$farm" -j2 --resume-failed t_edit >/dev/null 2>&1
check "--resume-failed runs the failed task again" bash -c \
  "[ \$(awk -F'\t' '\$1==\"S\" && \$2==4' t_edit.journal | wc -l) -eq 2 ]"

# ---- 5. a poison task stops after N worker crashes ---------------------------------------------
printf 'echo a\nkill -9 $PPID\necho b\n' >t_poison
"$farm" --backend processes -j2 --retries 10 --poison 3 t_poison >poison.out 2>poison.err
rc=$?
check "poison: exit 1 (one failed task)" [ "$rc" -eq 1 ]
check "poison: exactly 3 attempts, all lost, the last final" bash -c \
  "[ \"\$(awk -F'\t' '\$1==\"F\" && \$2==2 { print \$3, \$4, \$5 }' t_poison.journal | tr '\n' ' ')\" = '1 0 lost 2 0 lost 3 1 lost ' ]"
check "poison: said so" grep -q "task 2 (line 2) is a poison task" poison.err
check "poison: the other tasks ran" bash -c 'grep -qx a poison.out && grep -qx b poison.out'

# ---- 6. --halt soon,fail=1 stops starting new tasks ---------------------------------------------
(
  echo "exit 7"
  for i in $(seq 1 30); do echo "sleep 0.2"; done
) >t_halt
"$farm" -j2 --halt soon,fail=1 t_halt >/dev/null 2>halt.err
rc=$?
check "halt: exit value of the failed task (7)" [ "$rc" -eq 7 ]
check "halt: not every task was started" bash -c \
  "[ \$(awk -F'\t' '\$1==\"S\"' t_halt.journal | wc -l) -lt 31 ]"
check "halt: every started task has its F record" bash -c \
  "[ \$(awk -F'\t' '\$1==\"S\"' t_halt.journal | wc -l) -eq \$(awk -F'\t' '\$1==\"F\"' t_halt.journal | wc -l) ]"
printf 'sleep 30\nsleep 1; exit 5\nsleep 30\n' >t_halt2
"$farm" -j2 --halt now,fail=1 --grace 1 --journal halt2.journal t_halt2 >/dev/null 2>&1
check "halt now: exit value of the failed task (5)" [ $? -eq 5 ]
check "halt now: the running task was stopped" bash -c \
  "awk -F'\t' '\$1==\"F\" && \$5==\"stopped\"' halt2.journal | grep -q ."

# ---- 6b. retry policies, --timeout P%, BARRIER CHECK, --max-fails ------------------------------
printf 'exit 4\nexit 5\n' >t_retry
"$farm" -j2 --retries 2 --retry-on exit=4:9 t_retry >/dev/null 2>&1
rc=$?
check "--retry-on exit=4: exit 4 runs 3 times, exit 5 once; exit 2" bash -c \
  "[ $rc -eq 2 ] && [ \"\$(awk -F'\t' '\$1==\"F\" { print \$2 \":\" \$3 \":\" \$4 }' t_retry.journal | sort | tr '\n' ' ')\" = '1:1:0 1:2:0 1:3:1 2:1:1 ' ]"
printf 'sleep 0.2\nsleep 0.2\nsleep 0.2\nsleep 30\n' >t_pct
"$farm" -j1 --timeout 300% --grace 1 t_pct >/dev/null 2>&1
rc=$?
check "--timeout 300%: the long task is stopped once three succeeded" bash -c \
  "[ $rc -eq 1 ] && awk -F'\t' '\$1==\"F\" && \$2==4 && \$5==\"timeout\"' t_pct.journal | grep -q ."
printf 'exit 1\necho b\n#MPX BARRIER CHECK\necho c\n' >t_check
"$farm" -j2 t_check >check.out 2>check.err
rc=$?
check "BARRIER CHECK: the run stops there (exit 2: one failed, one not run; nothing after it ran)" bash -c \
  "[ $rc -eq 2 ] && [ \"\$(cat check.out)\" = b ] && grep -q 'BARRIER CHECK on line 3' check.err"
printf 'exit 1\nexit 1\nsleep 0.3\nsleep 0.3\nsleep 0.3\nsleep 0.3\nsleep 0.3\nsleep 0.3\n' >t_maxf
"$farm" -j1 --max-fails 2 t_maxf >/dev/null 2>&1
check "--max-fails 2: nothing starts after the second failure" bash -c \
  "[ \$(awk -F'\t' '\$1==\"S\"' t_maxf.journal | wc -l) -eq 2 ]"

# ---- 7. 1 MiB of output per task, intact, never interleaved -------------------------------------
for c in a b c d; do echo "head -c 1048576 /dev/zero | tr '\\0' $c; echo done-$c >&2"; done >t_big
"$farm" -j4 --no-journal t_big >big.out 2>big.err
check "grouped: 4 MiB in all" [ "$(wc -c <big.out)" -eq 4194304 ]
check "grouped: each task's bytes in one run" bash -c \
  '[ "$(tr -s abcd <big.out | fold -w1 | sort | tr -d "\n")" = abcd ]'
check "grouped: stderr kept apart" [ "$(grep -c '^done-' big.err)" -eq 4 ]
"$farm" -j4 --no-journal --pack pack t_big >/dev/null 2>&1
for s in 1 2 3 4; do
  c=$(echo abcd | cut -c$s)
  "$farm" cat pack $s 2>cat.err | tr -d "$c" | wc -c | grep -qx 0 || fail "cat $s is not all $c"
  [ "$("$farm" cat pack $s 2>/dev/null | wc -c)" -eq 1048576 ] || fail "cat $s: wrong size"
  grep -qx "done-$c" cat.err || fail "cat $s: stderr"
done
ok "--pack: mpx-farm cat gives each task's 1 MiB and its stderr back"
check "--pack: a few files, not one per task" [ "$(ls pack | wc -l)" -le 3 ]
"$farm" -j2 --no-journal --results res t_big >/dev/null 2>&1
check "--results: DIR/SEQ.out and .err" bash -c \
  '[ "$(wc -c <res/3.out)" -eq 1048576 ] && [ "$(cat res/3.err)" = done-c ]'
"$farm" -j2 --no-journal --tag 'echo {}; echo x' ::: p q >tag.out
check "--tag prefixes each line" bash -c \
  "[ \"\$(sort tag.out | tr '\t\n' ':;')\" = 'p:p;p:x;q:q;q:x;' ]"

# ---- 8. task environment --------------------------------------------------------------------------
printf '#MPX CORES 1\n#MPX REPEAT 2 start 4 step 3 echo $MPX_FARM_SEQ $MPX_FARM_LINE $MPX_FARM_REPEAT $MPX_FARM_ATTEMPT $MPX_FARM_CORES $PARALLEL_SEQ\n' >t_env
"$farm" -j1 --no-journal t_env >env.out
check "environment: seq, line, repeat, attempt, cores" bash -c \
  "[ \"\$(sort env.out | tr '\n' ';')\" = '1 2 4 1 1 1;2 2 7 1 1 2;' ]"

printf '2,sleep 0.5; echo $MPX_FARM_CORES\n1,echo $MPX_FARM_CORES\n1,echo $MPX_FARM_CORES\n' >t_cores2
"$farm" -j2 --core-counts t_cores2 >cores.out 2>&1
check "--core-counts (pylauncher N,cmd): cores in the environment" \
  bash -c "[ \"\$(sort cores.out | tr '\n' ' ')\" = '1 1 2 ' ]"
check "a 2-core task holds both slots: the 1-core tasks start after it ends" awk -F'\t' '
  $1 == "F" && $2 == 1 { end1 = $8 + $9 } $1 == "F" && $2 > 1 { if (!s || $8 < s) s = $8 }
  END { exit !(s + 0.002 >= end1) }' t_cores2.journal

# ---- 8b. per-slot binding and GPUs (each task naps 0.5 s, so that both slots are used even when a
# loaded machine would let one slot run every instant task) -----------------------------------------
"$farm" -j2 --no-journal --bind --gpus 0,1,2 \
  'sleep 0.5; test -n "$MPX_FARM_CPUSET" && echo $MPX_FARM_SLOT $CUDA_VISIBLE_DEVICES $ROCR_VISIBLE_DEVICES #{}' \
  ::: 1 2 3 4 >slots.out
check "--bind: every task saw its slot's cpuset" [ $? -eq 0 ]
check "--gpus: the list is split between the slots" \
  bash -c "[ \"\$(sort -u slots.out | tr '\n' ';')\" = '0 0,2 0,2;1 1 1;' ]"
if command -v lstopo-no-graphics >/dev/null && lstopo-no-graphics --of xml --whole-io >topo.xml 2>/dev/null &&
  grep -q 'type="PCIDev"' topo.xml; then
  # two of this machine's PCI devices become NVIDIA 3D controllers; hwloc reads the file instead
  awk 'BEGIN { n = 0 } /type="PCIDev"/ && n < 2 && !/pci_type="06/ {
         sub(/pci_type="[^"]*"/, "pci_type=\"0302 [10de:20b0] [10de:1450] a1\""); n++ } { print }' \
    topo.xml >gpu.xml
  HWLOC_XMLFILE=$PWD/gpu.xml "$farm" -j2 --no-journal 'sleep 0.5; echo $MPX_FARM_SLOT $CUDA_VISIBLE_DEVICES #{}' \
    ::: 1 2 3 4 | sort -u >gpu.out
  check "GPUs hwloc sees are split between slots" bash -c "[ \"\$(tr '\n' ';' <gpu.out)\" = '0 0;1 1;' ]"
else
  echo "ok - # SKIP hwloc GPU discovery (no lstopo-no-graphics or no PCI devices)"
fi

# ---- 8c. progress in a batch log ------------------------------------------------------------------
"$farm" -j1 --no-journal --progress lines --progress-interval 0.2 'sleep 0.3 #{}' ::: 1 2 3 \
  2>progress.err
check "--progress lines: dated lines with done, failed, running, tasks/s and ETA" \
  grep -Eq '^mpx-farm: [0-9-]+ [0-9:]+ [0-9]+/3 done, 0 failed, [0-9]+ running, [0-9.]+ tasks/s, ETA' \
  progress.err

# ---- 9. walltime: a fake SLURM_JOB_END_TIME 20 s away (room for a loaded machine to start the
# first task before the end less the margin); then resume -----------------------------------------
printf 'sleep ${NAP:-30}\nsleep ${NAP:-30}\nsleep ${NAP:-30}\n' >t_wall
SLURM_JOB_END_TIME=$(($(date +%s) + 20)) "$farm" -j1 --deadline-margin 2 --grace 1 t_wall \
  >/dev/null 2>wall.err
rc=$?
echo "# walltime journal: $(awk -F'\t' '$1=="F" { printf "[%s %s %s] ", $2, $4, $5 }' t_wall.journal)"
check "walltime: exit status counts the unfinished tasks" [ "$rc" -eq 3 ]
check "walltime: the running task was signalled, journalled as not final" bash -c \
  "[ \"\$(frecs_() { awk -F'\t' '\$1==\"F\" { print \$2, \$4, \$5 }' t_wall.journal; }; frecs_)\" = '1 0 deadline' ]"
check "walltime: nothing else started" [ "$(srecs t_wall.journal | wc -l)" -eq 1 ]
NAP=0 "$farm" -j2 --resume t_wall >/dev/null 2>&1
rc=$?
check "walltime: the next job resumes and finishes" bash -c \
  "[ $rc -eq 0 ] && [ \$(awk -F'\t' '\$1==\"F\" && \$5==\"ok\"' t_wall.journal | wc -l) -eq 3 ]"

# ---- 10. SIGTERM stops cleanly ------------------------------------------------------------------
printf 'sleep 30\nsleep 30\nsleep 30\nsleep 30\n' >t_term
"$farm" -j2 --grace 1 t_term >/dev/null 2>term.err &
pid=$!
wait_for 60 bash -c "[ \$(srecs_() { awk -F'\t' '\$1==\"S\"' t_term.journal 2>/dev/null; }; srecs_ | wc -l) -ge 2 ]" ||
  fail "SIGTERM: the tasks did not start"
kill -TERM $pid
wait $pid
rc=$?
check "SIGTERM: exit 143" [ "$rc" -eq 143 ]
check "SIGTERM: running tasks journalled as stopped (not final)" bash -c \
  "[ \$(awk -F'\t' '\$1==\"F\" && \$4==0 && \$5==\"stopped\"' t_term.journal | wc -l) -eq 2 ]"
check "SIGTERM: a summary was printed" grep -q "not done" term.err
check "SIGTERM: the status file was written" [ -s t_term.journal.status ]

# ---- 11. a torn last line is ignored --------------------------------------------------------------
printf 'echo 1\necho 2\necho 3\n' >t_torn
"$farm" -j1 t_torn >/dev/null 2>&1
head -c -20 t_torn.journal >x && mv x t_torn.journal # tear the last F record
"$farm" -j1 --resume t_torn >torn.out 2>&1
check "torn tail: only the task whose F record was torn runs again" bash -c \
  "[ \$(wc -l <torn.out) -eq 1 ]"
check "torn tail: status skips the torn line" bash -c \
  "'$farm' status t_torn.journal | grep -q 'ignored .* 1 torn'"

echo "farm_test.sh: all passed"
