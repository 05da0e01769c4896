/* demo_common.h: the few helpers the demos (the seeds' demo_sum, demo_pipeline, demo_sleep,
 * demo_lock_file, demo_process, demo_amdahl, demo_fib; the ipc demos' command line) share, on the
 * public API only: a clock, strict option parsing (a bad value is a message and exit code 2, never
 * a silent default), line-buffered stdout, whether this run is an MPI job, and an executor made for
 * one table row.
 *
 * Conventions of the demos: `--help` prints the usage to stdout and exits 0; an unknown option or
 * value prints what was wrong and the usage to stderr and exits 2; each demo checks its own
 * answers and exits 0 only when every row was right (1 otherwise). Timings are printed, never
 * judged: the machine may be loaded. Everything here is static (header-only, one copy per demo). */
#ifndef MPX_DEMO_COMMON_H
#define MPX_DEMO_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/mpx.h>

/* Exit code for a bad command line. */
enum { DEMO_USAGE = 2 };

static inline double demo_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Output appears line by line even into a file or a pipe (a log shows progress as it happens). */
static inline void demo_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

/* A bad command line: what was wrong, then the usage, on stderr; returns DEMO_USAGE. */
static inline int demo_bad_usage(const char *prog, const char *usage, const char *what,
                                 const char *arg) {
  fprintf(stderr, "%s: %s '%s'\n%s", prog, what, arg, usage);
  return DEMO_USAGE;
}

/* argv[*i] is an option that takes a value: the next argument, or NULL (message printed). */
static inline const char *demo_value(const char *prog, int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "%s: a value is missing after '%s'\n", prog, argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

/* The value of option argv[*i] as an integer in [lo, hi]: 0, or DEMO_USAGE after saying why. */
static inline int demo_long_opt(const char *prog, int argc, char **argv, int *i, long lo, long hi,
                                long *out) {
  const char *opt = argv[*i], *s = demo_value(prog, argc, argv, i);
  if (!s) return DEMO_USAGE;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    fprintf(stderr, "%s: %s wants an integer in %ld..%ld, not '%s'\n", prog, opt, lo, hi, s);
    return DEMO_USAGE;
  }
  *out = v;
  return 0;
}

/* The same for a number (seconds, fractions) in [lo, hi]; NaN and infinities are refused. */
static inline int demo_double_opt(const char *prog, int argc, char **argv, int *i, double lo,
                                  double hi, double *out) {
  const char *opt = argv[*i], *s = demo_value(prog, argc, argv, i);
  if (!s) return DEMO_USAGE;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
    fprintf(stderr, "%s: %s wants a number in %g..%g, not '%s'\n", prog, opt, lo, hi, s);
    return DEMO_USAGE;
  }
  *out = v;
  return 0;
}

/* One option of a demo's table: its name and where its value goes, as an integer (l) or a number
 * (d) in [lo, hi], or as the bare string (s). */
typedef struct demo_opt {
  const char *name;
  long *l;
  double *d;
  const char **s;
  double lo, hi;
} demo_opt;

/* Read argv against the table: -1 to go on; 0 after --help (the usage on stdout); DEMO_USAGE
 * after saying what was wrong. --quick is accepted here and read by demo_quick. */
static inline int demo_parse(const char *prog, const char *usage, int argc, char **argv,
                             const demo_opt *opts, size_t n) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    }
    if (!strcmp(a, "--quick")) continue;
    const demo_opt *o = NULL;
    for (size_t k = 0; k < n && !o; k++)
      if (!strcmp(a, opts[k].name)) o = &opts[k];
    if (!o) return demo_bad_usage(prog, usage, "unknown option", a);
    int bad = o->l   ? demo_long_opt(prog, argc, argv, &i, (long)o->lo, (long)o->hi, o->l)
              : o->d ? demo_double_opt(prog, argc, argv, &i, o->lo, o->hi, o->d)
              : (*o->s = demo_value(prog, argc, argv, &i)) ? 0
                                                           : DEMO_USAGE;
    if (bad) return bad;
  }
  return -1;
}

/* For a demo that takes no option but --quick (accepted, it is quick already): line-buffered
 * stdout, then -1 to go on, or the exit code (0 after --help, DEMO_USAGE for anything else). */
static inline int demo_no_options(int argc, char **argv, const char *prog, const char *what) {
  demo_line_buffered();
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: %s [--quick]\n  %s\n", prog, what);
      return 0;
    }
    if (strcmp(argv[i], "--quick")) {
      fprintf(stderr, "%s: unknown option '%s'\nusage: %s [--quick]\n", prog, argv[i], prog);
      return DEMO_USAGE;
    }
  }
  return -1;
}

/* Was --quick given? Read before the other options, so that it sets the defaults they change. */
static inline bool demo_quick(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--quick")) return true;
  return false;
}

/* Is this process one of several ranks mpirun or srun started (so mpx_init starts MPI)? Reads
 * only the environment: safe before mpx_init. */
static inline bool demo_mpi_job(void) {
  mpx_job j;
  return mpx_job_get(&j) == 0 && j.launched;
}

/* Under mpirun: the threads each worker rank needs so that the ranks run `workers` tasks at once
 * (0 when the launcher does not say how many ranks there are: their cores decide). */
static inline int demo_threads_per_rank(long workers) {
  mpx_job j;
  if (mpx_job_get(&j) || j.tasks < 2) return 0;
  return (int)((workers + j.tasks - 2) / (j.tasks - 1));
}

/* mpx_init for a demo: 1 when the caller should return 0 at once (an MPI worker rank that has
 * served the job), -1 after printing why it failed, 0 on the main process. */
static inline int demo_init(int *argc, char ***argv) {
  int role = mpx_init(argc, argv);
  if (role == MPX_WORKER) return 1;
  if (role < 0) {
    fprintf(stderr, "mpx_init: %s: %s\n", mpx_strerror(role), mpx_errmsg());
    return -1;
  }
  return 0;
}

/* An executor for one row of a table (workers 0: one per usable core; on MPI the ranks are the
 * workers and threads_per_rank, 0: their cores, the threads of each), or NULL after printing
 * why it could not start. */
static inline mpx_executor *demo_executor(mpx_backend backend, int workers, int threads_per_rank) {
  mpx_executor *ex;
  mpx_options o = {.backend = backend};
  if (backend == MPX_BACKEND_MPI)
    o.threads_per_rank = threads_per_rank;
  else
    o.workers = workers;
  int rc = mpx_executor_create(&ex, &o);
  if (rc) {
    fprintf(stderr, "%s executor: %s: %s\n", mpx_backend_name(backend), mpx_strerror(rc),
            mpx_errmsg());
    return NULL;
  }
  return ex;
}

/* The message of a failed future (the task's own words and where it ran). */
static inline const char *demo_future_error(mpx_future *f) {
  const char *msg = "";
  int code = 0;
  mpx_future_exception(f, 0, &code, &msg);
  return msg && *msg ? msg : mpx_strerror(code);
}

/* The rows a demo's table runs after its serial row: threads and processes on a plain run, the
 * MPI ranks under mpirun (where rank 0 drives and the other ranks serve). */
static inline int demo_backends(bool mpi_job, mpx_backend out[2]) {
  if (mpi_job) {
    out[0] = MPX_BACKEND_MPI;
    return 1;
  }
  out[0] = MPX_BACKEND_THREADS;
  out[1] = MPX_BACKEND_PROCESSES;
  return 2;
}

#endif
