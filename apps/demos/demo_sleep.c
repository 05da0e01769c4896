/* demo_sleep: Pool(6).map of sleeping tasks. Six tasks that each sleep one second take six
 * seconds one after the other and about one second on a pool of six workers, whatever the
 * number of cores: a sleeping task (waiting for a disk, a network, a device) holds no CPU, so a
 * pool sized by the waits, not by the cores, overlaps them all.
 *
 * Rows: serial (a plain loop), then mpx_map over a pool of --workers (default: one per task) on
 * threads and on forked processes, or on the MPI ranks under mpirun. Each task answers its own
 * index and the pid that ran it; the check is that every answer came back, in order.
 *   demo_sleep [--tasks N] [--seconds S] [--workers W] [--quick]
 *   mpirun -np 3 demo_sleep                         the MPI row (workers: the ranks' threads) */
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_sleep [--tasks N] [--seconds S] [--workers W] [--quick]\n"
    "  N tasks (default 6) sleep S seconds each (default 1; --quick: 0.2), first one after the\n"
    "  other, then through mpx_map on a pool of W workers (default N) of threads and of\n"
    "  processes (of the MPI ranks under mpirun). Exit 0 when every answer is right.\n";

/* One task's answer: which item it was, and which process ran it. */
typedef struct answer {
  long index;
  long pid;
} answer;

static double nap_seconds = 1.0; /* set before mpx_init: forked workers inherit it */

static void nap(double s) {
  struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&t, &t) == -1 && errno == EINTR) {
  }
}

/* The task: sleep (standing for I/O), then say who you were. */
static int sleepy(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len != sizeof(long))
    return mpx_task_fail(ctx, MPX_EINVAL, "want one long, got %zu bytes", len);
  answer a = {0, (long)getpid()};
  memcpy(&a.index, arg, sizeof a.index);
  nap(nap_seconds);
  return mpx_buf_set(out, &a, sizeof a);
}
MPX_TASK(sleepy)

/* Every answer right and in order? Also counts the distinct pids that ran them. */
static bool check(const answer *as, long n, int *pids) {
  bool ok = true;
  *pids = 0;
  for (long i = 0; i < n; i++) {
    ok &= as[i].index == i;
    bool seen = false;
    for (long j = 0; j < i; j++) seen |= as[j].pid == as[i].pid;
    *pids += !seen;
  }
  return ok;
}

int main(int argc, char **argv) {
  demo_line_buffered();
  nap_seconds = demo_quick(argc, argv) ? 0.2 : 1.0;
  long tasks = 6, workers = 0;
  const demo_opt opts[] = {
      {"--tasks", .l = &tasks, .lo = 1, .hi = 256},
      {"--workers", .l = &workers, .lo = 1, .hi = 256},
      {"--seconds", .d = &nap_seconds, .lo = 0, .hi = 60},
  };
  int parsed = demo_parse("demo_sleep", usage, argc, argv, opts, sizeof opts / sizeof *opts);
  if (parsed >= 0) return parsed;
  if (!workers) workers = tasks;
  bool mpi_job = demo_mpi_job();
  int init = demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;

  printf("%ld tasks sleeping %.2f s each; a pool of %ld workers (this machine: %d cores)\n", tasks,
         nap_seconds, workers, (int)sysconf(_SC_NPROCESSORS_ONLN));
  printf("%-10s %8s %9s %8s  %s\n", "row", "workers", "seconds", "speedup", "check");
  answer *as = calloc((size_t)tasks, sizeof *as);
  long *xs = malloc((size_t)tasks * sizeof *xs);
  if (!as || !xs) return 1;
  for (long i = 0; i < tasks; i++) xs[i] = i;

  /* serial: the loop a program starts with */
  double t0 = demo_now();
  for (long i = 0; i < tasks; i++) {
    nap(nap_seconds);
    as[i] = (answer){i, (long)getpid()};
  }
  double serial = demo_now() - t0;
  int pids;
  bool all_ok = check(as, tasks, &pids);
  printf("%-10s %8d %9.3f %7.2fx  %s\n", "serial", 1, serial, 1.0, all_ok ? "ok" : "WRONG");

  mpx_backend rows[2];
  int nrows = demo_backends(mpi_job, rows);
  for (int r = 0; r < nrows; r++) {
    /* Under MPI the workers are the ranks: each gets enough threads to sleep W tasks at once. */
    mpx_executor *ex = demo_executor(rows[r], (int)workers, demo_threads_per_rank(workers));
    if (!ex) {
      all_ok = false;
      continue;
    }
    memset(as, 0, (size_t)tasks * sizeof *as);
    mpx_map_status st = {0};
    t0 = demo_now();
    /* chunksize 1: one task per message, as Pool.map(fn, xs, chunksize=1); the default chunks
     * (n / 4 workers) would put several sleeps in one message, in a row */
    int rc = mpx_map(ex, "sleepy", xs, sizeof *xs, (size_t)tasks, as, sizeof *as,
                     &(mpx_map_opts){.chunksize = 1, .status = &st});
    double s = demo_now() - t0;
    bool ok = rc == 0 && check(as, tasks, &pids);
    all_ok &= ok;
    printf("%-10s %8d %9.3f %7.2fx  %s (%d distinct pids)\n", mpx_backend_name(rows[r]),
           mpx_executor_workers(ex), s, serial / s, ok ? "ok" : "WRONG", pids);
    if (rc) fprintf(stderr, "map: %s: %s\n", mpx_strerror(rc), st.message);
    mpx_executor_destroy(ex);
  }
  printf("a pool overlaps waits: %ld sleeps of %.2f s end in about %.2f s on %ld workers, on 2 "
         "cores or 64 (serial: %.2f s)\n",
         tasks, nap_seconds, nap_seconds * (double)((tasks + workers - 1) / workers), workers,
         nap_seconds * (double)tasks);
  free(as);
  free(xs);
  int rc = mpx_finalize();
  return all_ok && rc == 0 ? 0 : 1;
}
