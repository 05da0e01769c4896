/* demo_fib: the fib table. K calls of the naive recursive fib(n), pure CPU and nothing to send
 * but n, first one after the other, then spread over the cores: on a pool of threads, on a pool
 * of forked processes, on K raw Processes (one mpx_process each, as multiprocessing.Process, the
 * answer written into a shared mpx Array), and on the MPI ranks under mpirun. In C there is no
 * lock around the interpreter: threads speed CPU work up as well as processes do, and the gain is
 * bounded by the cores (a busy machine gives less).
 *
 * The check: every call's answer equals fib(n) computed by a loop.
 *   demo_fib [--n N] [--calls K] [--workers W] [--quick]
 *   mpirun -np 3 demo_fib                             serial and MPI rows */
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_fib [--n N] [--calls K] [--workers W] [--quick]\n"
    "  K calls (default 16) of the recursive fib(N) (default N = 35; --quick: fib(27) x 8):\n"
    "  serially, on W workers (default: the cores) of threads and of processes, on K raw\n"
    "  Processes, and on the MPI ranks under mpirun. N is at most 45 (fib(45) takes seconds).\n";

static long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static long fib_loop(long n) {
  long a = 0, b = 1;
  for (long i = 0; i < n; i++) {
    long t = a + b;
    a = b;
    b = t;
  }
  return a;
}

/* The task: fib of the long it is given. */
static int fib_task(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  long n;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "want one long, got %zu bytes", len);
  memcpy(&n, arg, sizeof n);
  if (n < 0 || n > 45) return mpx_task_fail(ctx, MPX_EINVAL, "fib(%ld): n must be 0..45", n);
  long r = fib(n);
  return mpx_buf_set(out, &r, sizeof r);
}
MPX_TASK(fib_task)

/* A raw Process's job: which slot of the shared Array to fill, and fib of what. */
typedef struct proc_job {
  mpx_array *answers;
  long slot, n;
} proc_job;

/* The task a raw Process runs (its result bytes are dropped, as a Process target's return
 * value is): the answer goes into the shared Array, made before the process was started. */
static int fib_into_array(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  proc_job j;
  if (len != sizeof j) return mpx_task_fail(ctx, MPX_EINVAL, "want a job");
  memcpy(&j, arg, sizeof j);
  long r = fib(j.n);
  return mpx_array_set(j.answers, (size_t)j.slot, &r, sizeof r);
}
MPX_TASK(fib_into_array)

/* K raw Processes, all started, then all joined; the answers read from the Array. */
static bool raw_processes(long n, long calls, long *answers) {
  mpx_array *arr;
  if (mpx_array_create(&arr, sizeof(long), (size_t)calls, NULL, true)) return false;
  mpx_process **ps = calloc((size_t)calls, sizeof *ps);
  bool ok = ps != NULL;
  for (long i = 0; ok && i < calls; i++) {
    proc_job j = {arr, i, n};
    ok = mpx_process_create(&ps[i], "fib_into_array", &j, sizeof j, NULL) == 0 &&
         mpx_process_start(ps[i]) == 0;
  }
  for (long i = 0; ps && i < calls && ps[i]; i++) {
    int code = -1;
    ok &= mpx_process_join(ps[i], MPX_FOREVER) == 0 && mpx_process_exitcode(ps[i], &code) == 0 &&
          code == 0;
    mpx_process_destroy(ps[i]);
  }
  ok = ok && mpx_array_read(arr, 0, (size_t)calls, answers) == 0;
  free(ps);
  mpx_array_destroy(arr);
  return ok;
}

static bool all_equal(const long *xs, long n, long want) {
  for (long i = 0; i < n; i++)
    if (xs[i] != want) return false;
  return true;
}

static void row(const char *name, int workers, double s, double serial, bool ok) {
  printf("%-12s %8d %9.3f %8.2fx  %s\n", name, workers, s, serial / s, ok ? "ok" : "WRONG");
}

int main(int argc, char **argv) {
  demo_line_buffered();
  bool quick = demo_quick(argc, argv);
  long n = quick ? 27 : 35, calls = quick ? 8 : 16, workers = 0;
  const demo_opt opts[] = {
      {"--n", .l = &n, .lo = 1, .hi = 45},
      {"--calls", .l = &calls, .lo = 1, .hi = 1000},
      {"--workers", .l = &workers, .lo = 1, .hi = 256},
  };
  int parsed = demo_parse("demo_fib", usage, argc, argv, opts, sizeof opts / sizeof *opts);
  if (parsed >= 0) return parsed;
  bool mpi_job = demo_mpi_job();
  int init = demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;

  long want = fib_loop(n), *got = calloc((size_t)calls, sizeof *got),
       *ns = malloc((size_t)calls * sizeof *ns);
  if (!got || !ns) return 1;
  for (long i = 0; i < calls; i++) ns[i] = n;
  printf("%ld calls of fib(%ld) = %ld; this machine: %d cores\n", calls, n, want,
         (int)sysconf(_SC_NPROCESSORS_ONLN));
  printf("%-12s %8s %9s %9s  %s\n", "row", "workers", "seconds", "speedup", "check");

  double t0 = demo_now();
  for (long i = 0; i < calls; i++) got[i] = fib(ns[i]);
  double serial = demo_now() - t0;
  bool all_ok = all_equal(got, calls, want);
  row("serial", 1, serial, serial, all_ok);

  mpx_backend rows[2];
  int nrows = demo_backends(mpi_job, rows);
  for (int r = 0; r < nrows; r++) {
    mpx_executor *ex = demo_executor(rows[r], (int)workers, 0);
    if (!ex) {
      all_ok = false;
      continue;
    }
    memset(got, 0, (size_t)calls * sizeof *got);
    mpx_map_status st = {0};
    t0 = demo_now();
    /* one call per message: each is long enough that sending it alone costs nothing */
    int rc = mpx_map(ex, "fib_task", ns, sizeof *ns, (size_t)calls, got, sizeof *got,
                     &(mpx_map_opts){.chunksize = 1, .status = &st});
    double s = demo_now() - t0;
    bool ok = rc == 0 && all_equal(got, calls, want);
    if (rc) fprintf(stderr, "map: %s: %s\n", mpx_strerror(rc), st.message);
    row(mpx_backend_name(rows[r]), mpx_executor_workers(ex), s, serial, ok);
    all_ok &= ok;
    mpx_executor_destroy(ex);
  }
  if (!mpi_job) { /* a raw Process per call: a fork each, and the answers through shared memory */
    memset(got, 0, (size_t)calls * sizeof *got);
    t0 = demo_now();
    bool ok = raw_processes(n, calls, got) && all_equal(got, calls, want);
    double s = demo_now() - t0;
    row("Process x K", (int)calls, s, serial, ok);
    all_ok &= ok;
  }
  printf("CPU work gains up to the cores (when they are free) on every backend alike%s\n",
         mpi_job ? "" : "; K raw Processes pay a fork each and share the same cores");
  free(got);
  free(ns);
  int rc = mpx_finalize();
  return all_ok && rc == 0 ? 0 : 1;
}
