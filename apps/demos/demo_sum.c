/* demo_sum: the sum of 8M ones in 8 chunks, the first parallel program of the tutorials, and its
 * lesson: what a worker must be sent costs. Threads share the program's memory, so a chunk can
 * be passed as a pointer; processes have memory of their own, so a chunk passed as an argument is
 * copied to them (at submit, then into the worker), while a chunk that already lives in shared
 * memory (an mpx Array, created before the workers are forked) costs only its bounds.
 *
 * Rows (each the best and worst of --repeat runs, after the executor started; the two rows of
 * a backend alternate run by run):
 *   serial loop             one loop over the N numbers
 *   serial, chunked         the same in 8 chunk loops (chunking alone costs nothing)
 *   threads, copied         8 tasks, each chunk copied at submit (mpx's default)
 *   threads, borrowed       8 tasks reading the chunks in place (mpx_submit_opts.borrow)
 *   processes, copied       8 tasks, each chunk sent to a worker process (4 MB each: the data
 *                           plane carries it as a sealed shared-memory segment, still a copy)
 *   processes, shared Array 8 tasks sent only (start, count); the numbers are in an mpx_array
 *   mpi, copied             under mpirun: each chunk sent to a rank (ranks share no memory)
 * The check: every row's total is N.
 *   demo_sum [--n N] [--chunks C] [--workers W] [--repeat R] [--quick] */
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_sum [--n N] [--chunks C] [--workers W] [--repeat R] [--quick]\n"
    "  Sums N ones (default 8M; --quick: 1M) in C chunks (default 8): serially, on threads\n"
    "  (copied, borrowed), on processes (copied, in a shared mpx Array), on MPI ranks under\n"
    "  mpirun; W workers (default: the cores); each row best-worst of R runs (default 3).\n";

/* The numbers in shared memory: an mpx Array created before mpx_init, so that the process
 * workers (forked by mpx's fork server, started in mpx_init) see the same bytes. */
static const int *shared_ones;

/* A chunk's bounds, for the shared-memory task. */
typedef struct span {
  long start, count;
} span;

static long sum_ints(const int *xs, long n) {
  long s = 0;
  for (long i = 0; i < n; i++) s += xs[i];
  return s;
}

/* The task when the chunk is the argument: its bytes arrive with the task. */
static int sum_chunk(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len % sizeof(int)) return mpx_task_fail(ctx, MPX_EINVAL, "%zu bytes is not whole ints", len);
  long s = 0;
  for (size_t i = 0; i < len; i += sizeof(int)) { /* the bytes need not be aligned for an int */
    int x;
    memcpy(&x, (const char *)arg + i, sizeof x);
    s += x;
  }
  return mpx_buf_set(out, &s, sizeof s);
}
MPX_TASK(sum_chunk)

/* The task when the chunk is in shared memory: only its bounds arrive. */
static int sum_span(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  span sp;
  if (len != sizeof sp || !shared_ones)
    return mpx_task_fail(ctx, MPX_EINVAL, "want a span and the shared Array");
  memcpy(&sp, arg, sizeof sp);
  long s = sum_ints(shared_ones + sp.start, sp.count);
  return mpx_buf_set(out, &s, sizeof s);
}
MPX_TASK(sum_span)

typedef enum how { COPIED, BORROWED, SHARED } how;

/* One parallel run: `chunks` tasks over the N numbers at `ones`; the total, or -1 on a failure. */
static long run_tasks(mpx_executor *ex, const int *ones, long n, long chunks, how h) {
  mpx_future *fs[64];
  const mpx_task *task;
  mpx_task_find(h == SHARED ? "sum_span" : "sum_chunk", &task);
  long total = 0;
  int submitted = 0;
  for (long c = 0; c < chunks; c++) {
    span sp = {n * c / chunks, n * (c + 1) / chunks - n * c / chunks};
    int rc =
        h == SHARED
            ? mpx_submit_task(ex, task, &sp, sizeof sp, NULL, &fs[c])
            : mpx_submit_task(ex, task, ones + sp.start, (size_t)sp.count * sizeof(int),
                              &(mpx_submit_opts){.retries = -1, .borrow = h == BORROWED}, &fs[c]);
    if (rc) {
      fprintf(stderr, "submit: %s: %s\n", mpx_strerror(rc), mpx_errmsg());
      total = -1;
      break;
    }
    submitted++;
  }
  for (int c = 0; c < submitted; c++) {
    long s;
    if (mpx_future_result_copy(fs[c], &s, sizeof s, MPX_FOREVER)) {
      fprintf(stderr, "chunk %d: %s\n", c, demo_future_error(fs[c]));
      total = -1;
    } else if (total >= 0)
      total += s;
    mpx_future_release(fs[c]);
  }
  return total;
}

/* Print one row: best and worst of the runs, the speedup of the best over the serial loop's. */
static void row(const char *name, double best, double worst, double serial, bool ok) {
  printf("%-24s %9.2f %9.2f %8.2fx  %s\n", name, best * 1e3, worst * 1e3, serial / best,
         ok ? "ok" : "WRONG");
}

int main(int argc, char **argv) {
  demo_line_buffered();
  long n = demo_quick(argc, argv) ? 1L << 20 : 8L << 20, chunks = 8, workers = 0, repeat = 3;
  const demo_opt opts[] = {
      {"--n", .l = &n, .lo = 1, .hi = 1L << 28},
      {"--chunks", .l = &chunks, .lo = 1, .hi = 64},
      {"--workers", .l = &workers, .lo = 1, .hi = 256},
      {"--repeat", .l = &repeat, .lo = 1, .hi = 100},
  };
  int parsed = demo_parse("demo_sum", usage, argc, argv, opts, sizeof opts / sizeof *opts);
  if (parsed >= 0) return parsed;
  bool mpi_job = demo_mpi_job();
  /* The numbers: in a shared Array on a plain run (made before mpx_init, so the workers inherit
   * it; one made later would reach them on first use), in plain memory of rank 0 under mpirun
   * (ranks share no memory: every chunk is sent). */
  mpx_array *arr = NULL;
  int *ones = NULL;
  if (!mpi_job) {
    int rc = mpx_array_create(&arr, sizeof(int), (size_t)n, NULL, false);
    if (rc) {
      fprintf(stderr, "mpx_array_create: %s: %s\n", mpx_strerror(rc), mpx_errmsg());
      return 1;
    }
    mpx_array_ptr(arr, (void **)&ones);
    shared_ones = ones;
  }
  int init = demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;
  if (!ones && !(ones = malloc((size_t)n * sizeof *ones))) return 1;
  for (long i = 0; i < n; i++) ones[i] = 1; /* the Array's bytes are shared: workers see them */

  printf("the sum of %ld ones in %ld chunks of %.1f MB; ms, best and worst of %ld runs\n", n,
         chunks, (double)n / (double)chunks * sizeof(int) / 1e6, repeat);
  printf("%-24s %9s %9s %9s  %s\n", "row", "best ms", "worst ms", "speedup", "check");
  bool all_ok = true;
  double best[2] = {1e30, 1e30}, worst[2] = {0, 0};
  bool ok[2] = {true, true};
  for (long r = 0; r < repeat; r++) { /* serial rows alternate, so that both see the same noise */
    for (int k = 0; k < 2; k++) {
      double t0 = demo_now();
      long s = 0;
      if (k == 0)
        s = sum_ints(ones, n);
      else
        for (long c = 0; c < chunks; c++)
          s += sum_ints(ones + n * c / chunks, n * (c + 1) / chunks - n * c / chunks);
      double t = demo_now() - t0;
      best[k] = t < best[k] ? t : best[k];
      worst[k] = t > worst[k] ? t : worst[k];
      ok[k] &= s == n;
    }
  }
  double serial = best[0];
  row("serial loop", best[0], worst[0], serial, ok[0]);
  row("serial, chunked", best[1], worst[1], serial, ok[1]);
  all_ok &= ok[0] && ok[1];

  /* Per backend one executor, and the two ways of passing chunks alternate run by run (the
   * pairs see the same noise). */
  static const struct {
    mpx_backend b;
    int ways;
    how h[2];
    const char *name[2];
  } plan[] = {
      {MPX_BACKEND_THREADS, 2, {COPIED, BORROWED}, {"threads, copied", "threads, borrowed"}},
      {MPX_BACKEND_PROCESSES,
       2,
       {COPIED, SHARED},
       {"processes, copied", "processes, shared Array"}},
      {MPX_BACKEND_MPI, 1, {COPIED}, {"mpi, copied"}},
  };
  double proc_best[2] = {0, 0}; /* processes: copied, shared */
  for (size_t p = 0; p < sizeof plan / sizeof plan[0]; p++) {
    if (mpi_job != (plan[p].b == MPX_BACKEND_MPI)) continue;
    mpx_executor *ex = demo_executor(plan[p].b, (int)workers, 0);
    if (!ex) {
      all_ok = false;
      continue;
    }
    double b[2] = {1e30, 1e30}, w[2] = {0, 0};
    bool good[2] = {true, true};
    for (long r = 0; r < repeat; r++)
      for (int k = 0; k < plan[p].ways; k++) {
        double t0 = demo_now();
        good[k] &= run_tasks(ex, ones, n, chunks, plan[p].h[k]) == n;
        double t = demo_now() - t0;
        b[k] = t < b[k] ? t : b[k];
        w[k] = t > w[k] ? t : w[k];
      }
    for (int k = 0; k < plan[p].ways; k++) {
      row(plan[p].name[k], b[k], w[k], serial, good[k]);
      all_ok &= good[k];
      if (plan[p].b == MPX_BACKEND_PROCESSES) proc_best[k] = b[k];
    }
    mpx_executor_destroy(ex);
  }
  if (proc_best[0] > 0 && proc_best[1] > 0)
    printf("lesson: copying %.0f MB to processes took %.1f ms, the same sums in shared memory "
           "%.1f ms (%.1fx): %s\n",
           (double)n * sizeof(int) / 1e6, proc_best[0] * 1e3, proc_best[1] * 1e3,
           proc_best[0] / proc_best[1],
           proc_best[0] > proc_best[1] ? "copying costs, shared memory does not"
                                       : "this run's noise hid the copies' cost: run it again");
  else if (mpi_job)
    printf("lesson: ranks share no memory, so every chunk is copied to them; on one node, a "
           "shared Array (a plain run) costs only the chunks' bounds\n");
  int rc = mpx_finalize();
  if (arr)
    mpx_array_destroy(arr);
  else
    free(ones);
  return all_ok && rc == 0 ? 0 : 1;
}
