/* workloads.c: mpx-bench's executor workloads, the same on every backend:
 *   empty    N empty tasks submitted, then every result taken (twice: first round and steady state)
 *   map      N empty items through mpx_map with Python's default chunks
 *   latency  N sequential submit -> result round trips
 *   fib      K calls of fib(n): serial, then on the backend; the speedup
 *   metg     the smallest task duration at which W workers still reach 50% efficiency (Task
 *            Bench's METG), from busy tasks of decreasing length */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* ---- tasks ------------------------------------------------------------------------------- */

static int bench_noop(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  return 0;
}
MPX_TASK(bench_noop)

static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static int fib_task(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  int n;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "fib wants an int");
  memcpy(&n, arg, sizeof n);
  long r = fib(n);
  return mpx_buf_set(out, &r, sizeof r);
}
MPX_TASK(fib_task)

/* Busy work of `iters` loop iterations (calibrated to time by the caller). */
static long spin(long iters) {
  volatile long acc = 0;
  for (long i = 0; i < iters; i++) acc += i;
  return acc;
}

static int bench_spin(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  long iters;
  if (len != sizeof iters) return mpx_task_fail(ctx, MPX_EINVAL, "spin wants a long");
  memcpy(&iters, arg, sizeof iters);
  spin(iters);
  return 0;
}
MPX_TASK(bench_spin)

/* ---- helpers ------------------------------------------------------------------------------- */

static int open_executor(const bench_args *a, mpx_executor **ex) {
  int rc = mpx_executor_create(ex, &(mpx_options){.backend = a->backend, .workers = a->workers,
                                                     .binding = a->binding});
  if (rc) fprintf(stderr, "mpx-bench: cannot create the executor: %s %s\n", mpx_strerror(rc),
                  mpx_errmsg());
  return rc;
}

static const char *backend_of(mpx_executor *ex) {
  return mpx_backend_name((mpx_backend)mpx_executor_backend(ex));
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "mpx-bench: %s: %s\n", what, mpx_strerror(rc));
  return 1;
}

/* Submit n tasks of `task` with argument arg, then take every result; seconds or < 0. */
static double submit_all(mpx_executor *ex, const mpx_task *task, const void *arg, size_t len,
                         long n) {
  mpx_future **fs = malloc((size_t)n * sizeof *fs);
  if (!fs) return -1;
  memset(fs, 0, (size_t)n * sizeof *fs); /* the harness's own page faults stay out of the time */
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    int rc = mpx_submit_task(ex, task, arg, len, NULL, &fs[i]);
    if (rc) {
      fail("submit", rc);
      return -1;
    }
  }
  for (long i = 0; i < n; i++) {
    int rc = mpx_future_result(fs[i], MPX_FOREVER, NULL, NULL);
    if (rc) {
      fail("result", rc);
      return -1;
    }
    mpx_future_release(fs[i]);
  }
  double s = bench_now() - t0;
  free(fs);
  return s;
}

/* ---- workloads ----------------------------------------------------------------------------- */

int bench_empty(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  const mpx_task *t;
  mpx_task_find("bench_noop", &t);
  /* The first round also pays for the futures' memory (N x 128 bytes touched for the first time,
   * which mpx then keeps for reuse); the second is the steady state of a program that keeps
   * submitting. Both are reported: tasks_per_s is the second. */
  double cold = submit_all(ex, t, NULL, 0, a->tasks);
  if (cold < 0) return 1;
  double s = submit_all(ex, t, NULL, 0, a->tasks);
  if (s < 0) return 1;
  char extra[64];
  snprintf(extra, sizeof extra, "\"first_round_tasks_per_s\": %.1f", (double)a->tasks / cold);
  bench_emit(a, backend_of(ex), "empty", mpx_executor_workers(ex), a->tasks, s, extra);
  mpx_executor_destroy(ex);
  return 0;
}

int bench_map(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  long *items = malloc((size_t)a->tasks * sizeof *items);
  if (!items) return fail("map", MPX_ENOMEM);
  for (long i = 0; i < a->tasks; i++) items[i] = i;
  int rc = mpx_map(ex, "bench_noop", items, sizeof *items, (size_t)(a->tasks / 10 + 1), NULL, 0,
                   NULL);
  double t0 = bench_now();
  if (!rc) rc = mpx_map(ex, "bench_noop", items, sizeof *items, (size_t)a->tasks, NULL, 0, NULL);
  double s = bench_now() - t0;
  free(items);
  if (rc) return fail("map", rc);
  bench_emit(a, backend_of(ex), "map", mpx_executor_workers(ex), a->tasks, s,
             "\"chunksize\": \"default\"");
  mpx_executor_destroy(ex);
  return 0;
}

static double round_trips(mpx_executor *ex, const mpx_task *t, long n) {
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    mpx_future *f;
    int rc = mpx_submit_task(ex, t, NULL, 0, NULL, &f);
    if (!rc) rc = mpx_future_result(f, MPX_FOREVER, NULL, NULL);
    if (rc) {
      fail("latency", rc);
      return -1;
    }
    mpx_future_release(f);
  }
  return bench_now() - t0;
}

int bench_latency(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  const mpx_task *t;
  mpx_task_find("bench_noop", &t);
  if (round_trips(ex, t, a->tasks / 10 + 1) < 0) return 1;
  double s = round_trips(ex, t, a->tasks);
  if (s < 0) return 1;
  char extra[64];
  snprintf(extra, sizeof extra, "\"us_per_round_trip\": %.3f", s / (double)a->tasks * 1e6);
  bench_emit(a, backend_of(ex), "latency", mpx_executor_workers(ex), a->tasks, s, extra);
  mpx_executor_destroy(ex);
  return 0;
}

int bench_fib(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  int n = a->fib_n;
  long k = a->tasks, expect = fib(n);
  double t0 = bench_now();
  for (long i = 0; i < k; i++)
    if (fib(n) != expect) return fail("fib", MPX_ETASK);
  double serial = bench_now() - t0;
  mpx_future **fs = malloc((size_t)k * sizeof *fs);
  if (!fs) return fail("fib", MPX_ENOMEM);
  t0 = bench_now();
  for (long i = 0; i < k; i++) {
    int rc = mpx_submit(ex, "fib_task", &n, sizeof n, &fs[i]);
    if (rc) return fail("fib submit", rc);
  }
  for (long i = 0; i < k; i++) {
    long r;
    int rc = mpx_future_result_copy(fs[i], &r, sizeof r, MPX_FOREVER);
    if (rc || r != expect) return fail("fib result", rc ? rc : MPX_ETASK);
    mpx_future_release(fs[i]);
  }
  double par = bench_now() - t0;
  free(fs);
  char extra[128];
  snprintf(extra, sizeof extra, "\"n\": %d, \"serial_seconds\": %.6f, \"speedup\": %.3f", n,
           serial, serial / par);
  bench_emit(a, backend_of(ex), "fib", mpx_executor_workers(ex), k, par, extra);
  mpx_executor_destroy(ex);
  return 0;
}

/* Loop iterations per microsecond of spin(), measured on this thread. */
static double calibrate(void) {
  long iters = 1000;
  for (;;) {
    double t0 = bench_now();
    spin(iters);
    double s = bench_now() - t0;
    if (s > 0.05) return (double)iters / (s * 1e6);
    iters *= 2;
  }
}

int bench_metg(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  const mpx_task *t;
  mpx_task_find("bench_spin", &t);
  int w = mpx_executor_workers(ex);
  double per_us = calibrate();
  double grains[] = {1000, 500, 200, 100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05};
  double metg = -1, budget = 0.2; /* seconds of work per grain */
  for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
    long iters = (long)(grains[g] * per_us);
    if (iters < 1) break;
    double grain_us = (double)iters / per_us; /* what the task really does */
    long n = (long)(budget * 1e6 * w / grain_us);
    if (n > a->tasks) n = a->tasks;
    if (n < 10 * w) n = 10 * w;
    double s = submit_all(ex, t, &iters, sizeof iters, n);
    if (s < 0) return 1;
    double eff = (double)n * grain_us * 1e-6 / ((double)w * s);
    if (eff < 0.5) { /* one more try before giving up: a noisy host can halve one run */
      double again = submit_all(ex, t, &iters, sizeof iters, n);
      if (again < 0) return 1;
      if (again < s) eff = (double)n * grain_us * 1e-6 / ((double)w * (s = again));
    }
    char extra[128];
    snprintf(extra, sizeof extra, "\"grain_us\": %.3f, \"efficiency\": %.3f", grain_us, eff);
    if (!a->json) bench_emit(a, backend_of(ex), "metg-step", w, n, s, extra);
    if (eff < 0.5) break;
    metg = grain_us;
  }
  char extra[64]; /* -1: not even the coarsest grain reached 50% */
  snprintf(extra, sizeof extra, "\"metg_us\": %.3f", metg);
  bench_emit(a, backend_of(ex), "metg", w, 0, 0, extra);
  mpx_executor_destroy(ex);
  return 0;
}
