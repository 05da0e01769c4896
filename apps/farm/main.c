/* main.c: mpx-farm's command line: run a task file or a command template; status, joblog, cat.
 *
 * Every bad input (an unknown flag, a bad number, a missing task file, a malformed directive,
 * a journal of another run without --resume) gets one line on stderr and exit status 2 before
 * any task runs; --help prints to stdout and exits 0 (also for status, joblog and cat). More
 * slots than 64 per usable CPU (-j) run with a warning (tasks may wait on I/O, not CPUs). stdout
 * is line-buffered, so grouped task output reaches a log as each task ends. Under mpirun/srun,
 * mpx_init makes rank 0 the coordinator and the other ranks workers, which return from main when
 * the run is over. Single-threaded until farm_run starts the executor. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm.h"

static const char usage_text[] =
    "usage: mpx-farm [OPTIONS] TASKFILE|-              one shell command a line\n"
    "       mpx-farm [OPTIONS] COMMAND... ::: ARG...    COMMAND with {} for each ARG\n"
    "       mpx-farm [OPTIONS] -a ARGFILE|- COMMAND...  COMMAND with {} for each line\n"
    "       mpx-farm status JOURNAL | joblog JOURNAL | cat PACKDIR SEQ\n"
    "\n"
    "Runs each task with /bin/sh -c on local worker threads, forked workers (--backend\n"
    "processes) or every rank of mpirun/srun (rank 0 coordinates), and records every attempt\n"
    "in a crash-safe journal. Task files take directives (#MPX or #DISBATCH): PREFIX text,\n"
    "SUFFIX text, REPEAT n [start s] [step k] [cmd], BARRIER [CHECK], CORES n.\n"
    "Templates: {} {#} {.} {/} {//} {/.} as GNU parallel.\n"
    "\n"
    "  -j, --jobs N             slots per worker process or MPI rank (default: usable cores)\n"
    "      --backend B          auto, threads, processes or mpi (auto: mpi under mpirun)\n"
    "      --rank0-slots N      MPI: tasks rank 0 runs besides coordinating (default: -j - 1)\n"
    "  -a, --arg-file FILE      template arguments, one a line (- for stdin)\n"
    "      --core-counts        task file lines are N,command (pylauncher): N cores each\n"
    "      --journal FILE       the journal (default TASKFILE.journal; none for stdin or a\n"
    "                           template unless given)\n"
    "      --no-journal         keep no journal\n"
    "      --joblog FILE        write GNU parallel's joblog from the journal at the end\n"
    "      --status-file FILE   disBatch-style status file (default JOURNAL.status)\n"
    "      --resume             skip tasks the journal shows finished (ok or failed)\n"
    "      --resume-failed      skip only tasks that succeeded; run failures again\n"
    "      --retries N          run a failed task again up to N more times (default 0)\n"
    "      --retry-on LIST      any, timeout, lost, exit=C:C... (default any)\n"
    "      --poison K           a task that lost its worker K times is not retried (2)\n"
    "      --timeout T|P%       kill a task after T seconds, or P% of the median runtime\n"
    "      --grace S            seconds between TERM and KILL (default 5)\n"
    "      --halt WHEN,fail=N   WHEN now|soon; N a count or a percentage (N%); or never\n"
    "      --max-fails N        stop starting tasks after N failures\n"
    "      --deadline T         end of the allocation: epoch seconds or +SECONDS (default\n"
    "                           SLURM_JOB_END_TIME)\n"
    "      --deadline-margin S  stop starting and signal tasks S seconds before it (60)\n"
    "      --expected-runtime S what a task takes, for the deadline (default: the median)\n"
    "      --results DIR        stdout and stderr of task SEQ in DIR/SEQ.out, DIR/SEQ.err\n"
    "      --pack DIR           all output in a few files per node with an index (mpx-farm cat)\n"
    "  -u, --ungroup            let tasks write to the farm's stdout directly (may interleave)\n"
    "      --tag                prefix each output line with the argument (or the command)\n"
    "      --progress MODE      auto, bar, lines or off (auto: bar on a terminal, else lines)\n"
    "      --progress-interval S  seconds between progress lines (default 30)\n"
    "      --bind               bind each slot to a core (hwloc); MPX_FARM_CPUSET\n"
    "      --gpus LIST|none     split these GPU ids between slots (CUDA/ROCR_VISIBLE_DEVICES;\n"
    "                           default: the NVIDIA and AMD GPUs hwloc sees)\n"
    "      --dry-run            print the commands, run nothing\n"
    "  -v, --verbose            say more on stderr\n"
    "  -h, --help               this text\n"
    "\n"
    "Each task sees MPX_FARM_SEQ, _INDEX, _LINE, _REPEAT, _ATTEMPT, _SLOT, _NODE, _RANK, _CORES.\n"
    "Exit status: 0 if every task succeeded, else the number of failed tasks (at most 101),\n"
    "the exit value of the task that triggered --halt, 128+N after signal N, 2 for bad input.\n";

void farm_die_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mpx-farm: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (try 'mpx-farm --help')\n");
  va_end(ap);
  mpx_finalize();
  exit(FARM_EXIT_USAGE);
}

static double num(const char *opt, const char *s, double lo, double hi) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi))
    farm_die_usage("%s wants a number from %g to %g, not '%s'", opt, lo, hi, s);
  return v;
}

static long inum(const char *opt, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    farm_die_usage("%s wants a whole number from %ld to %ld, not '%s'", opt, lo, hi, s);
  return v;
}

static void parse_halt(farm_opts *o, const char *s) {
  if (strcmp(s, "never") == 0) {
    o->halt_fail = 0;
    return;
  }
  const char *comma = strchr(s, ',');
  size_t wl = comma ? (size_t)(comma - s) : 0;
  if (!comma || (strncmp(s, "now", wl) != 0 && strncmp(s, "soon", wl) != 0) || wl < 3 ||
      strncmp(comma + 1, "fail=", 5) != 0)
    farm_die_usage("--halt wants now,fail=N or soon,fail=N (N a count or N%%), not '%s'", s);
  o->halt_now = s[1] == 'o' && s[2] == 'w';
  char v[64];
  snprintf(v, sizeof v, "%s", comma + 6);
  size_t n = strlen(v);
  if (n && v[n - 1] == '%') {
    v[n - 1] = '\0';
    o->halt_pct = 1;
    o->halt_fail = num("--halt fail=N%", v, 0.001, 100);
  } else
    o->halt_fail = (double)inum("--halt fail=N", v, 1, LONG_MAX);
}

static void parse_retry_on(farm_opts *o, const char *s) {
  o->retry_any = o->retry_lost = o->retry_timeout = 0, o->nretry_codes = 0;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *save, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
    if (strcmp(w, "any") == 0)
      o->retry_any = 1;
    else if (strcmp(w, "lost") == 0)
      o->retry_lost = 1;
    else if (strcmp(w, "timeout") == 0)
      o->retry_timeout = 1;
    else if (strncmp(w, "exit=", 5) == 0) {
      for (char *s2, *c = strtok_r(w + 5, ":", &s2); c; c = strtok_r(NULL, ":", &s2)) {
        if (o->nretry_codes == 32) farm_die_usage("--retry-on: at most 32 exit codes");
        o->retry_codes[o->nretry_codes++] = (int)inum("--retry-on exit=", c, 1, 255);
      }
    } else
      farm_die_usage("--retry-on wants any, timeout, lost or exit=C:C..., not '%s'", w);
  }
}

static int ensure_dir(const char *d) {
  char p[4096];
  snprintf(p, sizeof p, "%s", d);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      if (mkdir(p, 0755) < 0 && errno != EEXIST) return -1;
      *s = '/';
    }
  return mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static char *join_words(char **w, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++) len += strlen(w[i]) + 1;
  char *s = malloc(len);
  if (!s) return NULL;
  s[0] = '\0';
  for (int i = 0; i < n; i++) strcat(strcat(s, i ? " " : ""), w[i]);
  return s;
}

enum {
  O_BACKEND = 256,
  O_JOURNAL,
  O_NOJOURNAL,
  O_JOBLOG,
  O_STATUSF,
  O_RESUME,
  O_RESUMEF,
  O_RETRIES,
  O_RETRYON,
  O_POISON,
  O_TIMEOUT,
  O_GRACE,
  O_HALT,
  O_MAXFAILS,
  O_DEADLINE,
  O_MARGIN,
  O_EXPECTED,
  O_RESULTS,
  O_PACK,
  O_TAG,
  O_PROGRESS,
  O_PINTERVAL,
  O_BIND,
  O_GPUS,
  O_DRYRUN,
  O_CORECOUNTS,
  O_RANK0
};

static int run_main(int argc, char **argv) {
  static const struct option longs[] = {{"jobs", 1, 0, 'j'},
                                        {"backend", 1, 0, O_BACKEND},
                                        {"arg-file", 1, 0, 'a'},
                                        {"journal", 1, 0, O_JOURNAL},
                                        {"no-journal", 0, 0, O_NOJOURNAL},
                                        {"joblog", 1, 0, O_JOBLOG},
                                        {"status-file", 1, 0, O_STATUSF},
                                        {"resume", 0, 0, O_RESUME},
                                        {"resume-failed", 0, 0, O_RESUMEF},
                                        {"retries", 1, 0, O_RETRIES},
                                        {"retry-on", 1, 0, O_RETRYON},
                                        {"poison", 1, 0, O_POISON},
                                        {"timeout", 1, 0, O_TIMEOUT},
                                        {"grace", 1, 0, O_GRACE},
                                        {"halt", 1, 0, O_HALT},
                                        {"max-fails", 1, 0, O_MAXFAILS},
                                        {"deadline", 1, 0, O_DEADLINE},
                                        {"deadline-margin", 1, 0, O_MARGIN},
                                        {"expected-runtime", 1, 0, O_EXPECTED},
                                        {"results", 1, 0, O_RESULTS},
                                        {"pack", 1, 0, O_PACK},
                                        {"ungroup", 0, 0, 'u'},
                                        {"tag", 0, 0, O_TAG},
                                        {"progress", 1, 0, O_PROGRESS},
                                        {"progress-interval", 1, 0, O_PINTERVAL},
                                        {"bind", 0, 0, O_BIND},
                                        {"gpus", 1, 0, O_GPUS},
                                        {"dry-run", 0, 0, O_DRYRUN},
                                        {"rank0-slots", 1, 0, O_RANK0},
                                        {"core-counts", 0, 0, O_CORECOUNTS},
                                        {"verbose", 0, 0, 'v'},
                                        {"help", 0, 0, 'h'},
                                        {0, 0, 0, 0}};
  farm_opts o = {.backend = MPX_BACKEND_AUTO,
                 .rank0_slots = -1,
                 .retry_any = 1,
                 .poison = 2,
                 .grace = 5,
                 .deadline_margin = 60,
                 .progress = -1,
                 .progress_interval = 30};
  int no_journal = 0, c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+j:a:uvh", longs, NULL)) != -1) {
    switch (c) {
    case 'j': o.jobs = (int)inum("--jobs", optarg, 1, 65536); break;
    case O_BACKEND:
      if (strcmp(optarg, "auto") == 0)
        o.backend = MPX_BACKEND_AUTO;
      else if (strcmp(optarg, "threads") == 0)
        o.backend = MPX_BACKEND_THREADS;
      else if (strcmp(optarg, "processes") == 0)
        o.backend = MPX_BACKEND_PROCESSES;
      else if (strcmp(optarg, "mpi") == 0)
        o.backend = MPX_BACKEND_MPI;
      else
        farm_die_usage("--backend wants auto, threads, processes or mpi, not '%s'", optarg);
      break;
    case 'a': o.in.argfile = optarg; break;
    case O_JOURNAL: o.journal = optarg; break;
    case O_NOJOURNAL: no_journal = 1; break;
    case O_JOBLOG: o.joblog = optarg; break;
    case O_STATUSF: o.status_file = optarg; break;
    case O_RESUME: o.resume = o.resume ? o.resume : 1; break;
    case O_RESUMEF: o.resume = 2; break;
    case O_RETRIES: o.retries = (int)inum("--retries", optarg, 0, 1000000); break;
    case O_RETRYON: parse_retry_on(&o, optarg); break;
    case O_POISON: o.poison = (int)inum("--poison", optarg, 1, 1000000); break;
    case O_TIMEOUT: {
      size_t n = strlen(optarg);
      if (n && optarg[n - 1] == '%') {
        char v[64];
        snprintf(v, sizeof v, "%.*s", (int)(n - 1), optarg);
        o.timeout = num("--timeout P%", v, 1, 1e6), o.timeout_pct = 1;
      } else
        o.timeout = num("--timeout", optarg, 0.001, 1e9);
      break;
    }
    case O_GRACE: o.grace = num("--grace", optarg, 0, 86400); break;
    case O_HALT: parse_halt(&o, optarg); break;
    case O_MAXFAILS: o.max_fails = inum("--max-fails", optarg, 1, LONG_MAX); break;
    case O_DEADLINE:
      o.deadline = optarg[0] == '+' ? farm_now() + num("--deadline +S", optarg + 1, 0, 1e9)
                                    : num("--deadline", optarg, 1, 1e11);
      break;
    case O_MARGIN: o.deadline_margin = num("--deadline-margin", optarg, 0, 1e7); break;
    case O_EXPECTED: o.expected = num("--expected-runtime", optarg, 0, 1e9); break;
    case O_RESULTS: o.out_mode = FARM_OUT_RESULTS, o.out_dir = optarg; break;
    case O_PACK: o.out_mode = FARM_OUT_PACK, o.out_dir = optarg; break;
    case 'u': o.out_mode = FARM_OUT_UNGROUP; break;
    case O_TAG: o.tag = 1; break;
    case O_PROGRESS:
      if (strcmp(optarg, "auto") == 0)
        o.progress = -1;
      else if (strcmp(optarg, "bar") == 0)
        o.progress = 1;
      else if (strcmp(optarg, "lines") == 0)
        o.progress = 2;
      else if (strcmp(optarg, "off") == 0)
        o.progress = 0;
      else
        farm_die_usage("--progress wants auto, bar, lines or off, not '%s'", optarg);
      break;
    case O_PINTERVAL: o.progress_interval = num("--progress-interval", optarg, 0.1, 1e6); break;
    case O_BIND: o.bind = 1; break;
    case O_GPUS: o.gpus = optarg; break;
    case O_DRYRUN: o.dry_run = 1; break;
    case O_CORECOUNTS: o.in.core_counts = 1; break;
    case O_RANK0: o.rank0_slots = (int)inum("--rank0-slots", optarg, 0, 65536); break;
    case 'v': o.verbose = 1; break;
    case 'h': fputs(usage_text, stdout); return 0;
    default:
      if (optopt > 0 && optopt < 128)
        farm_die_usage("option -%c is unknown or lacks its value", optopt);
      farm_die_usage("option '%s' is unknown or lacks its value", argv[optind - 1]);
    }
  }
  if (o.jobs > 0) {
    const mpx_topology *t;
    mpx_topo_info ti;
    if (mpx_topology_get(&t) == 0 && mpx_topology_info(t, &ti) == 0 && o.jobs > 64L * ti.pus)
      fprintf(stderr, "mpx-farm: warning: -j %d is more than 64 slots per usable CPU (%d here)\n",
              o.jobs, ti.pus);
  }
  if (o.tag && o.out_mode != FARM_OUT_GROUP) farm_die_usage("--tag works with grouped output only");
  if (o.deadline == 0) {
    const char *e = getenv("SLURM_JOB_END_TIME");
    if (e && *e) o.deadline = num("SLURM_JOB_END_TIME", e, 1, 1e11);
  }
  /* what to run */
  char **pos = argv + optind;
  int npos = argc - optind, sep = -1;
  for (int i = 0; i < npos; i++)
    if (strcmp(pos[i], ":::") == 0) {
      sep = i;
      break;
    }
  char *tmpl = NULL;
  struct stat st;
  if (npos == 0) farm_die_usage("no task file or command given");
  if (sep >= 0 || o.in.argfile || npos > 1 ||
      (strcmp(pos[0], "-") != 0 && stat(pos[0], &st) < 0 && strchr(pos[0], '{'))) {
    int nw = sep >= 0 ? sep : npos;
    if (nw == 0) farm_die_usage("no command before :::");
    tmpl = join_words(pos, nw);
    if (!tmpl) return 1;
    o.in.tmpl = tmpl;
    if (sep >= 0) o.in.args = pos + sep + 1, o.in.nargs = npos - sep - 1;
  } else {
    if (strcmp(pos[0], "-") != 0 && stat(pos[0], &st) < 0)
      farm_die_usage("cannot read the task file '%s': %s (a command over argument lines needs "
                     "{}, ::: or -a)",
                     pos[0], strerror(errno));
    if (strcmp(pos[0], "-") != 0 && S_ISDIR(st.st_mode))
      farm_die_usage("the task file '%s' is a directory", pos[0]);
    o.in.taskfile = pos[0];
  }
  farm_list l;
  if (farm_list_load(&o.in, &l) < 0) return free(tmpl), FARM_EXIT_USAGE;
  if (o.dry_run) {
    for (long i = 0; i < l.n; i++) printf("%s\n", l.tasks[i].cmd);
    farm_list_free(&l), free(tmpl);
    return 0;
  }
  char jbuf[4096], sbuf[4200];
  if (!no_journal && !o.journal && o.in.taskfile && strcmp(o.in.taskfile, "-") != 0) {
    snprintf(jbuf, sizeof jbuf, "%s.journal", o.in.taskfile);
    o.journal = jbuf;
  }
  if (!no_journal && !o.journal && o.joblog) {
    snprintf(jbuf, sizeof jbuf, "%s.journal", o.joblog);
    o.journal = jbuf;
  }
  if (no_journal) o.journal = NULL;
  if (o.resume && !o.journal) farm_die_usage("--resume needs a journal (--journal FILE)");
  if (o.journal && !o.status_file) {
    snprintf(sbuf, sizeof sbuf, "%s.status", o.journal);
    o.status_file = sbuf;
  }
  if (o.out_dir && ensure_dir(o.out_dir) < 0)
    farm_die_usage("cannot create the output directory '%s': %s", o.out_dir, strerror(errno));
  char gbuf[1024];
  if (!o.gpus && farm_gpus_detect(gbuf, sizeof gbuf) > 0) o.gpus = gbuf;
  if (o.gpus && strcmp(o.gpus, "none") == 0) o.gpus = NULL;
  int rc = farm_run(&o, &l);
  farm_list_free(&l);
  free(tmpl);
  return rc;
}

static int joblog_main(int argc, char **argv) {
  if (argc != 2 || strcmp(argv[1], "--help") == 0) {
    FILE *f = argc == 2 ? stdout : stderr;
    fprintf(f, "usage: mpx-farm joblog JOURNAL\n"
               "Print GNU parallel's joblog of a run from its journal.\n");
    return f == stdout ? 0 : FARM_EXIT_USAGE;
  }
  if (farm_journal_joblog(argv[1], stdout) < 0) {
    fprintf(stderr, "mpx-farm joblog: cannot read %s: %s\n", argv[1], strerror(errno));
    return FARM_EXIT_USAGE;
  }
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strcmp(argv[1], "status") == 0) return farm_status_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "joblog") == 0) return joblog_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "cat") == 0) return farm_cat_main(argc - 1, argv + 1);
  if (farm_run_setup() < 0) {
    fprintf(stderr, "mpx-farm: cannot set up: %s\n", strerror(errno));
    return 1;
  }
  /* Under MPI a worker rank that waits for work sleeps up to MPX_MPI_POLL_US between polls
   * (mpx/mpi.h; default 1000 us): a farm starts a process per task, so that wait would be a large
   * part of a short task. 100 us unless the user chose: about 10,000 short wake-ups a second per
   * idle rank, small beside the tasks. Set before mpx_init, on every rank. */
  setenv("MPX_MPI_POLL_US", "100", 0);
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  if (role < 0) {
    fprintf(stderr, "mpx-farm: mpx_init failed: %s (%s)\n", mpx_strerror(role), mpx_errmsg());
    return 1;
  }
  int rc = run_main(argc, argv);
  mpx_finalize();
  return rc;
}
