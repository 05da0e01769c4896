/* mpx-bench: the same workloads on every backend, figures as a table or --json lines with the
 * keys of ../shared/peers (peer, backend, workload, workers, tasks, seconds, tasks_per_s).
 *   mpx-bench WORKLOAD [--backend auto|threads|processes|mpi] [--workers W] [--tasks N]
 *             [--n FIB_N] [--long SECONDS] [--short MS] [--size 4M|64K..256M]
 *             [--binding none|core|pu|numa] [--timeout S] [--json]
 * Under mpirun, run it on every rank: ranks other than 0 serve and exit. On MPI, empty and map
 * add a line of rank 0's messages per 1000 tasks; MPX_TEST_VNODES=K puts the ranks on K virtual
 * nodes and MPX_MPI_LEADERS=0/1 turns node leaders off/on (flat against hierarchical). */
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
          "                 [--binding none|core|pu|numa] [--timeout S (every task's time limit)]\n"
          "                 [--json]\n"
          "workloads:\n");
  for (int i = 0; i < NWORKLOADS; i++)
    fprintf(to, "  %-9s %s (default N %ld)\n", workloads[i].name, workloads[i].what,
            workloads[i].default_tasks);
}

static int bad(const char *msg, const char *arg) {
  fprintf(stderr, "mpx-bench: %s: %s\n", msg, arg ? arg : "(missing)");
  usage(stderr);
  return 2;
}

static bool parse_double(const char *s, double *out) {
  if (!s) return false;
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || !(v > 0)) return false;
  *out = v;
  return true;
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

static bool parse_long(const char *s, long min, long *out) {
  if (!s) return false;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || end == s || v < min) return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  if (role < 0) {
    fprintf(stderr, "mpx-bench: mpx_init: %s %s\n", mpx_strerror(role), mpx_errmsg());
    return 1;
  }
  bench_watch_link(); /* rank 0's messages per task on MPI (after each run's figures) */
  bench_args a = {.fib_n = 32, .long_s = 1.0, .short_ms = 1.0};
  int w = -1;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    long v;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(arg, "--json")) {
      a.json = true;
    } else if (!strcmp(arg, "--backend")) {
      if (!val || parse_backend(val, &a.backend)) return bad("unknown backend", val);
      i++;
    } else if (!strcmp(arg, "--timeout")) {
      char *end = NULL;
      a.timeout = val ? strtod(val, &end) : -1;
      if (!val || !end || *end || a.timeout < 0) return bad("bad timeout", val);
      i++;
    } else if (!strcmp(arg, "--binding")) {
      if (!val || parse_binding(val, &a.binding)) return bad("unknown binding", val);
      i++;
    } else if (!strcmp(arg, "--size")) {
      if (!val) return bad("bad size", val);
      a.size = val;
      i++;
    } else if (!strcmp(arg, "--long") || !strcmp(arg, "--short")) {
      if (!parse_double(val, !strcmp(arg, "--long") ? &a.long_s : &a.short_ms))
        return bad("bad duration", val);
      i++;
    } else if (!strcmp(arg, "--workers") || !strcmp(arg, "--tasks") || !strcmp(arg, "--n")) {
      if (!parse_long(val, !strcmp(arg, "--workers") ? 0 : 1, &v)) return bad("bad number", val);
      if (!strcmp(arg, "--workers")) a.workers = (int)v;
      else if (!strcmp(arg, "--tasks")) a.tasks = v, a.tasks_given = true;
      else a.fib_n = (int)v;
      i++;
    } else if (arg[0] != '-' && !a.workload) {
      for (int k = 0; k < NWORKLOADS; k++)
        if (!strcmp(arg, workloads[k].name)) w = k;
      if (w < 0) return bad("unknown workload", arg);
      a.workload = arg;
    } else {
      return bad("unknown argument", arg);
    }
  }
  if (w < 0) return bad("no workload given", NULL);
  if (!a.tasks) a.tasks = workloads[w].default_tasks;
  int rc = workloads[w].run(&a);
  mpx_finalize();
  return rc;
}
