/* mpx-bench: the same workloads on every backend, figures as a table (a header line, then one
 * row per result) or --json lines with the keys of apps/bench/bench.h (peer, backend, workload,
 * workers, tasks, seconds, tasks_per_s).
 *   mpx-bench WORKLOAD [--backend auto|threads|processes|mpi] [--workers W] [--tasks N]
 *             [--n FIB_N] [--long SECONDS] [--short MS] [--size 4M|64K..256M]
 *             [--binding none|core|pu|numa] [--timeout S] [--repeat R] [--json]
 * Every bad argument (an unknown option or workload, a value that is not a number or out of its
 * range, fib's n over 50, more workers than 64 per usable CPU) is named on stderr with exit status
 * 2 before anything runs; --help prints to stdout and exits 0. stdout is line-buffered (a row
 * reaches a file or pipe when it is printed); a run over 2 s shows its progress on stderr (a
 * status line on a terminal, else a line now and then: ticker.c).
 * Under mpirun, run it on every rank: ranks other than 0 serve and exit. On MPI, empty and map
 * add a line of rank 0's messages per 1000 tasks; MPX_TEST_VNODES=K puts the ranks on K virtual
 * nodes and MPX_MPI_LEADERS=0/1 turns node leaders off/on (flat against hierarchical). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const struct {
  const char *name;
  int (*run)(const bench_args *);
  long default_tasks;
  const char *what;
} workloads[] = {
    {"empty", bench_empty, 1000000, "N empty tasks submitted, then every result taken"},
    {"map", bench_map, 10000000, "N empty items through map with default chunks"},
    {"latency", bench_latency, 100000, "N sequential submit->result round trips"},
    {"fib", bench_fib, 16, "K calls of fib(n) serial, then on the backend (speedup)"},
    {"metg", bench_metg, 2000000, "smallest task duration with 50% efficiency (Task Bench)"},
#if MPX_HAVE_IPC /* pingpong uses mpx queues */
    {"pingpong", bench_pingpong, 200000, "N token round trips over two queues (threads, processes)"},
#endif
    {"skew", bench_skew, 200, "one --long task then N --short ones; then N heavy-tailed ones"},
    {"strmap", bench_strmap, 1000000, "N strings of 10-200 bytes -> MD5 (map_var, imap_var)"},
    {"stream", bench_stream, 100000000, "N empty items through imap_unordered (peak RSS)"},
    {"payload", bench_payload, 0, "N big arguments, then results, of --size bytes (GB/s)"},
};
enum { NWORKLOADS = sizeof workloads / sizeof workloads[0] };

static void usage(FILE *to) {
  fprintf(to,
          "usage: mpx-bench WORKLOAD [--backend auto|threads|processes|mpi] [--workers W]\n"
          "                 [--tasks N] [--n FIB_N] [--long SECONDS] [--short MS] [--size 4M]\n"
          "                 [--reserve 4M (payload: each worker's argument memory made at start)]\n"
          "                 [--binding none|core|pu|numa] [--timeout S (every task's time limit)]\n"
          "                 [--repeat R (metg: searches, default 3)] [--json]\n"
          "       mpx-bench report [--out DIR] [--repeats N] [--quick] ... (every workload beside\n"
          "                 its peers: report.md and plots; mpx-bench report --help)\n"
          "A text run prints a header line, then one row per result; --json one object a line.\n"
          "Limits: --n 1..50 (fib), --workers 0 (default) up to 64 per usable CPU, --tasks\n"
          "1..1e10, --long and --short > 0 and at most a day, --size 1..1G per payload.\n"
          "workloads:\n");
  for (int i = 0; i < NWORKLOADS; i++)
    fprintf(to, "  %-9s %s (default N %ld)\n", workloads[i].name, workloads[i].what,
            workloads[i].default_tasks);
}

static int bad(const char *msg, const char *arg) {
  fprintf(stderr, "mpx-bench: %s%s%s%s\n", msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "Try 'mpx-bench --help'.\n");
  return 2;
}

/* A positive, finite number up to `max`. */
static bool parse_double(const char *s, double max, double *out) {
  if (!s) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !(v > 0) || !isfinite(v) || v > max) return false;
  *out = v;
  return true;
}

/* "4M", "64K", "1G", "123" (bytes, 1 .. 1 GiB); NULL when malformed, else the rest of s. */
static const char *parse_size(const char *s, unsigned long long *out) {
  char *e;
  if (*s < '0' || *s > '9') return NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &e, 10);
  int shift = *e == 'K' || *e == 'k'   ? 10
              : *e == 'M' || *e == 'm' ? 20
              : *e == 'G' || *e == 'g' ? 30
                                       : 0;
  if (shift) e++;
  if (errno || v == 0 || v > (1ull << 30) >> shift) return NULL;
  *out = v << shift;
  return e;
}

/* payload's --size: one size or LO..HI, each 1 byte .. 1 GiB (the default max_payload). */
static bool size_ok(const char *s) {
  unsigned long long lo, hi;
  const char *e = parse_size(s, &lo);
  if (e && !strncmp(e, "..", 2)) {
    e = parse_size(e + 2, &hi);
    if (e && hi < lo) return false;
  }
  return e && !*e;
}

static int parse_backend(const char *s, mpx_backend *out) {
  static const char *names[] = {"auto", "threads", "processes", "mpi"};
  for (int b = 0; b < 4; b++)
    if (!strcmp(s, names[b])) {
      *out = (mpx_backend)b;
      return 0;
    }
  return -1;
}

static int parse_binding(const char *s, mpx_binding *out) {
  static const char *names[] = {"none", "core", "pu", "numa"};
  for (int b = 0; b < 4; b++)
    if (!strcmp(s, names[b])) {
      *out = (mpx_binding)b;
      return 0;
    }
  return -1;
}

static bool parse_long(const char *s, long min, long max, long *out) {
  if (!s) return false;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < min || v > max) return false;
  *out = v;
  return true;
}

/* Usable CPUs of this process (hwloc), 1 if unknown. */
static long usable_cpus(void) {
  const mpx_topology *t;
  mpx_topo_info in;
  if (mpx_topology_get(&t) || mpx_topology_info(t, &in) || in.pus < 1) return 1;
  return in.pus;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "report")) return bench_report(argc, argv); /* report.c */
  setvbuf(stdout, NULL, _IOLBF, 0); /* a row reaches a file or a pipe as it is printed */
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  if (role < 0) {
    fprintf(stderr, "mpx-bench: mpx_init: %s %s\n", mpx_strerror(role), mpx_errmsg());
    return 1;
  }
  bench_watch_link(); /* rank 0's messages per task on MPI (after each run's figures) */
  bench_args a = {.fib_n = 32, .long_s = 1.0, .short_ms = 1.0, .repeats = 3};
  int w = -1, rc = 0;
  for (int i = 1; i < argc && !rc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    long v = 0;
    static const char *const valued[] = {"--backend", "--timeout", "--binding", "--size",
                                         "--reserve", "--long",    "--short",   "--workers",
                                         "--tasks",   "--n",       "--repeat"};
    bool takes = false;
    for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) takes |= !strcmp(arg, valued[k]);
    if (takes && !val) {
      rc = bad("missing value for", arg);
    } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      mpx_finalize();
      return 0;
    } else if (!strcmp(arg, "--json")) {
      a.json = true;
    } else if (!strcmp(arg, "--backend")) {
      if (parse_backend(val, &a.backend))
        rc = bad("--backend wants auto, threads, processes or mpi, not", val);
    } else if (!strcmp(arg, "--timeout")) {
      char *end;
      errno = 0;
      a.timeout = strtod(val, &end);
      if (errno || *end || end == val || !(a.timeout >= 0) || !isfinite(a.timeout))
        rc = bad("--timeout wants seconds (0: none), not", val);
    } else if (!strcmp(arg, "--binding")) {
      if (parse_binding(val, &a.binding))
        rc = bad("--binding wants none, core, pu or numa, not", val);
    } else if (!strcmp(arg, "--size")) {
      if (!size_ok(val))
        rc = bad("--size wants a size of 1 to 1G (4M) or a range LO..HI (64K..256M), not", val);
      a.size = val;
    } else if (!strcmp(arg, "--reserve")) {
      const char *e = parse_size(val, &a.reserve);
      if (!e || *e) rc = bad("--reserve wants a size of 1 to 1G (4M), not", val);
    } else if (!strcmp(arg, "--long")) {
      if (!parse_double(val, 86400, &a.long_s))
        rc = bad("--long wants seconds, more than 0 and at most 86400, not", val);
    } else if (!strcmp(arg, "--short")) {
      if (!parse_double(val, 86400e3, &a.short_ms))
        rc = bad("--short wants milliseconds, more than 0 and at most a day, not", val);
    } else if (!strcmp(arg, "--workers")) {
      long max = usable_cpus() * 64;
      if (!parse_long(val, 0, 1 << 20, &v))
        rc = bad("--workers wants a whole number (0: one per usable core), not", val);
      else if (v > max) {
        fprintf(stderr,
                "mpx-bench: --workers %ld is more than 64 per usable CPU (%ld CPUs here: at most "
                "%ld)\n",
                v, max / 64, max);
        rc = 2;
      }
      a.workers = (int)v;
    } else if (!strcmp(arg, "--tasks")) {
      if (!parse_long(val, 1, 10000000000L, &a.tasks))
        rc = bad("--tasks wants a whole number from 1 to 1e10, not", val);
      a.tasks_given = true;
    } else if (!strcmp(arg, "--n")) {
      /* fib(50) is some 4e10 calls, a minute each; every step up is 1.6x (fib(93) overflows) */
      if (!parse_long(val, 1, 50, &v))
        rc = bad("--n (fib's n) wants a whole number from 1 to 50, not", val);
      a.fib_n = (int)v;
    } else if (!strcmp(arg, "--repeat")) {
      if (!parse_long(val, 1, 100, &v))
        rc = bad("--repeat wants a whole number from 1 to 100, not", val);
      a.repeats = (int)v;
    } else if (arg[0] != '-' && !a.workload) {
      for (int k = 0; k < NWORKLOADS; k++)
        if (!strcmp(arg, workloads[k].name)) w = k;
      if (w < 0) rc = bad("unknown workload (see --help)", arg);
      a.workload = arg;
    } else {
      rc = bad(arg[0] == '-' ? "unknown option" : "unexpected argument", arg);
    }
    if (takes) i++;
  }
  if (!rc && w < 0) rc = bad("no workload given (see --help)", NULL);
  if (!rc) {
    if (!a.tasks) a.tasks = workloads[w].default_tasks;
    bench_ticker_start(workloads[w].name);
    rc = workloads[w].run(&a);
    bench_ticker_stop();
  }
  mpx_finalize();
  return rc;
}
