/* demo_amdahl: Amdahl's law, measured. A job of fixed size has a serial part (a fraction s of
 * its work, done by the main thread alone) and a parallel part spread over W workers; Amdahl's
 * law says the best speedup is 1 / (s + (1 - s) / W), so with s = 0.2 no number of workers gets
 * past 5x. The demo runs the job with 1, 2, 4... workers and prints the measured speedup beside
 * the formula's, and the formula with W capped at the cores this machine has (more workers than
 * cores add no speed to CPU work).
 *
 * The work is summing a mixing function (splitmix64) over a range of integers, sized at start so
 * that the job takes about --seconds on one core; the parallel part is cut into 4 spans per
 * worker and sent through mpx_map. The pool is started before the clock runs (its start is not
 * part of the job). The check: every run's sum equals the serial run's.
 *   demo_amdahl [--serial-fraction S] [--seconds T] [--max-workers W]
 *               [--backend threads|processes] [--quick]
 *   mpirun -np 3 demo_amdahl                        the ranks' row */
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_amdahl [--serial-fraction S] [--seconds T] [--max-workers W]\n"
    "                   [--backend threads|processes] [--quick]\n"
    "  A job of about T seconds on one core (default 1; --quick: 0.2), a fraction S of it\n"
    "  serial (default 0.2), run on 1, 2, 4... up to W workers (default: 4, or the cores if\n"
    "  more) of threads (default) or processes, or on the MPI ranks under mpirun; measured\n"
    "  speedups beside Amdahl's 1 / (S + (1 - S) / W).\n";

typedef struct span {
  unsigned long lo, hi;
} span;

static unsigned long mix(unsigned long x) { /* splitmix64's finaliser */
  x += 0x9e3779b97f4a7c15UL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9UL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebUL;
  return x ^ (x >> 31);
}

static unsigned long work(span sp) {
  unsigned long s = 0;
  for (unsigned long i = sp.lo; i < sp.hi; i++) s += mix(i);
  return s;
}

/* The task: the work of one span. */
static int work_task(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  span sp;
  if (len != sizeof sp) return mpx_task_fail(ctx, MPX_EINVAL, "want a span, got %zu bytes", len);
  memcpy(&sp, arg, sizeof sp);
  unsigned long s = work(sp);
  return mpx_buf_set(out, &s, sizeof s);
}
MPX_TASK(work_task)

/* The job on `ex`: the serial part here, the parallel part in 4 spans per worker. The sum, and
 * *ok false on a failure. */
static unsigned long job(mpx_executor *ex, unsigned long total, unsigned long serial_end,
                         int workers, bool *ok) {
  unsigned long sum = work((span){0, serial_end});
  size_t k = 4 * (size_t)workers;
  span *spans = malloc(k * sizeof *spans);
  unsigned long *sums = malloc(k * sizeof *sums);
  if (!spans || !sums) *ok = false;
  for (size_t i = 0; *ok && i < k; i++)
    spans[i] = (span){serial_end + (total - serial_end) * i / k,
                      serial_end + (total - serial_end) * (i + 1) / k};
  mpx_map_status st = {0};
  int rc = *ok ? mpx_map(ex, "work_task", spans, sizeof *spans, k, sums, sizeof *sums,
                         &(mpx_map_opts){.chunksize = 1, .status = &st})
               : MPX_ENOMEM;
  if (rc) {
    fprintf(stderr, "map: %s: %s\n", mpx_strerror(rc), st.message);
    *ok = false;
  }
  for (size_t i = 0; *ok && i < k; i++) sum += sums[i];
  free(spans);
  free(sums);
  return sum;
}

int main(int argc, char **argv) {
  demo_line_buffered();
  double s = 0.2, seconds = demo_quick(argc, argv) ? 0.2 : 1.0;
  long max_workers = 0;
  mpx_backend backend = MPX_BACKEND_THREADS;
  const char *bname = NULL;
  const demo_opt opts[] = {
      {"--serial-fraction", .d = &s, .lo = 0, .hi = 1},
      {"--seconds", .d = &seconds, .lo = 0.01, .hi = 60},
      {"--max-workers", .l = &max_workers, .lo = 1, .hi = 256},
      {"--backend", .s = &bname},
  };
  int parsed = demo_parse("demo_amdahl", usage, argc, argv, opts, sizeof opts / sizeof *opts);
  if (parsed >= 0) return parsed;
  if (bname && !strcmp(bname, "processes"))
    backend = MPX_BACKEND_PROCESSES;
  else if (bname && strcmp(bname, "threads"))
    return demo_bad_usage("demo_amdahl", usage, "--backend wants threads or processes, not", bname);
  int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (!max_workers) max_workers = cores > 4 ? cores : 4;
  bool mpi_job = demo_mpi_job();
  int init = demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;

  /* Size the job: time a small piece, scale it to `seconds` on one core. */
  double t0 = demo_now();
  volatile unsigned long sink = work((span){0, 1UL << 22});
  (void)sink;
  double per = (demo_now() - t0) / (double)(1UL << 22);
  unsigned long total = (unsigned long)(seconds / (per > 0 ? per : 1e-9));
  unsigned long serial_end = (unsigned long)((double)total * s);

  t0 = demo_now();
  unsigned long want = work((span){0, total});
  double t1 = demo_now() - t0;
  printf("Amdahl: a job of %.2f s on one core, serial fraction s = %.2f (at most %.1fx with any "
         "number of workers); %s, %d cores\n",
         t1, s, s > 0 ? 1 / s : INFINITY, mpi_job ? "mpi" : mpx_backend_name(backend), cores);
  printf("%-8s %9s %9s %9s %14s  %s\n", "workers", "seconds", "measured", "Amdahl", "Amdahl(cores)",
         "check");
  printf("%-8s %9.3f %8.2fx %8.2fx %13.2fx  %s\n", "serial", t1, 1.0, 1.0, 1.0, "ok");
  bool all_ok = true;
  for (long w = 1; w <= max_workers;
       w = w < max_workers && 2 * w > max_workers ? max_workers : 2 * w) {
    mpx_executor *ex = demo_executor(mpi_job ? MPX_BACKEND_MPI : backend, (int)w, 0);
    if (!ex) {
      all_ok = false;
      break;
    }
    int ew = mpx_executor_workers(ex); /* under MPI: what the ranks have */
    bool ok = true;
    t0 = demo_now();
    unsigned long got = job(ex, total, serial_end, ew, &ok);
    double t = demo_now() - t0;
    mpx_executor_destroy(ex);
    ok &= got == want;
    all_ok &= ok;
    int capped = ew < cores ? ew : cores;
    printf("%-8d %9.3f %8.2fx %8.2fx %13.2fx  %s\n", ew, t, t1 / t, 1 / (s + (1 - s) / ew),
           1 / (s + (1 - s) / capped), ok ? "ok" : "WRONG");
    if (mpi_job) break; /* one row: the ranks' */
  }
  printf("measured below the formula: the pool's own costs and a shared machine; above the cores "
         "only the capped column can be reached\n");
  int rc = mpx_finalize();
  return all_ok && rc == 0 ? 0 : 1;
}
