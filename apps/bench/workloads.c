/* workloads.c: mpx-bench's executor workloads, the same on every backend:
 *   empty    N empty tasks submitted, then every result taken (twice: first round and steady state)
 *   map      N empty items through mpx_map with Python's default chunks
 *   latency  N sequential submit -> result round trips
 *   fib      K calls of fib(n): serial, then on the backend; the speedup
 *   metg     the smallest task duration at which W workers still reach 50% efficiency (Task
 *            Bench's METG), from busy tasks of decreasing length
 *   skew     tail latency behind a long task: one --long task, then N --short ones; reports when
 *            the last short one was seen done against the ideal, which is the short work spread
 *            over the other W - 1 workers (N*short/(W-1)), or, when that exceeds the long task,
 *            everything spread over all W ((long + N*short)/W); host_ratio uses, for N*short,
 *            N short sleeps timed in a row on this host first (a loaded host oversleeps, which is
 *            no scheduler's fault). Then N sleeps of heavy-tailed
 *            length (Pareto, alpha 1.2, smallest --short, capped at --long; a fixed seed, in drawn
 *            order): the makespan against max(longest, sum/W). Tasks sleep rather than spin, so
 *            that the figures measure scheduling, not the CPU share this host gives the workers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Sleep for the double of seconds given. */
static int bench_nap(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  double s;
  if (len != sizeof s) return mpx_task_fail(ctx, MPX_EINVAL, "nap wants a double");
  memcpy(&s, arg, sizeof s);
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&ts, &ts)) {
  }
  return 0;
}
MPX_TASK(bench_nap)

/* ---- helpers ------------------------------------------------------------------------------- */

static int open_executor(const bench_args *a, mpx_executor **ex) {
  int rc = mpx_executor_create(ex, &(mpx_options){.backend = a->backend,
                                                  .workers = a->workers,
                                                  .binding = a->binding,
                                                  .task_timeout = a->timeout});
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
  bench_link_report(a, "empty", 2 * a->tasks); /* both rounds */
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
  bench_link_report(a, "map", a->tasks + a->tasks / 10 + 1); /* items, warm-up round too */
  return 0;
}

/* n round trips; each one's seconds into each[i] when each is not NULL. */
static double round_trips(mpx_executor *ex, const mpx_task *t, long n, double *each) {
  double t0 = bench_now(), prev = t0;
  for (long i = 0; i < n; i++) {
    mpx_future *f;
    int rc = mpx_submit_task(ex, t, NULL, 0, NULL, &f);
    if (!rc) rc = mpx_future_result(f, MPX_FOREVER, NULL, NULL);
    if (rc) {
      fail("latency", rc);
      return -1;
    }
    mpx_future_release(f);
    if (each) {
      double now = bench_now();
      each[i] = now - prev;
      prev = now;
    }
  }
  return bench_now() - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Reports the mean and, from each round trip timed alone, p50, p99 and the worst. */
int bench_latency(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  const mpx_task *t;
  mpx_task_find("bench_noop", &t);
  double *each = malloc((size_t)a->tasks * sizeof *each);
  if (!each) return fail("latency", MPX_ENOMEM);
  if (round_trips(ex, t, a->tasks / 10 + 1, NULL) < 0) return 1;
  double s = round_trips(ex, t, a->tasks, each);
  if (s < 0) return 1;
  qsort(each, (size_t)a->tasks, sizeof *each, cmp_double);
  long n = a->tasks;
  char extra[160];
  snprintf(extra, sizeof extra,
           "\"us_per_round_trip\": %.3f, \"p50_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f",
           s / (double)n * 1e6, each[(n - 1) / 2] * 1e6, each[(n - 1) * 99 / 100] * 1e6,
           each[n - 1] * 1e6);
  free(each);
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

/* One METG search: grains from 1 ms down, until one falls under 50% efficiency; the smallest
 * grain that reached it (us), -1 if none did, or -2 on an error. */
static double metg_search(const bench_args *a, mpx_executor *ex, const mpx_task *t, double per_us) {
  int w = mpx_executor_workers(ex);
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
    if (s < 0) return -2;
    double eff = (double)n * grain_us * 1e-6 / ((double)w * s);
    if (eff < 0.5) { /* one more try before giving up: a noisy host can halve one run */
      double again = submit_all(ex, t, &iters, sizeof iters, n);
      if (again < 0) return -2;
      if (again < s) eff = (double)n * grain_us * 1e-6 / ((double)w * (s = again));
    }
    char extra[128];
    snprintf(extra, sizeof extra, "\"grain_us\": %.3f, \"efficiency\": %.3f", grain_us, eff);
    if (!a->json) bench_emit(a, backend_of(ex), "metg-step", w, n, s, extra);
    if (eff < 0.5) break;
    metg = grain_us;
  }
  return metg;
}

/* METG from --repeat independent searches: the median of those that found one. A search that
 * found none, or a spread over 2x between the searches, is warned about on stderr: the machine
 * was too noisy for one figure. The text row says the METG or that none was found (never a row
 * of 0 tasks in 0 s); the --json line keeps the keys (tasks 0, metg_us -1: none found). */
int bench_metg(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  const mpx_task *t;
  mpx_task_find("bench_spin", &t);
  int w = mpx_executor_workers(ex), r = a->repeats > 0 ? a->repeats : 1, found = 0;
  double per_us = calibrate(), *m = malloc((size_t)r * sizeof *m);
  if (!m) return fail("metg", MPX_ENOMEM);
  for (int i = 0; i < r; i++) {
    double x = metg_search(a, ex, t, per_us);
    if (x == -2) return free(m), 1;
    if (x > 0) m[found++] = x;
  }
  qsort(m, (size_t)found, sizeof *m, cmp_double);
  /* the median of r searches, one that found none counting as worse than any that found one */
  double metg = r / 2 < found ? m[r / 2] : -1, lo = found ? m[0] : -1,
         hi = found ? m[found - 1] : -1;
  free(m);
  if (found && (found < r || hi > 2 * lo))
    fprintf(stderr,
            "mpx-bench: warning: METG is unstable: %d of %d searches found one, from %.3f to "
            "%.3f us (a noisy machine: the median is reported; run again, or with more "
            "--repeat)\n",
            found, r, lo, hi);
  const char *backend = backend_of(ex);
  char extra[160];
  snprintf(extra, sizeof extra,
           "\"metg_us\": %.3f, \"metg_min_us\": %.3f, \"metg_max_us\": %.3f, \"repeats\": %d, "
           "\"found\": %d",
           metg, lo, hi, r, found);
  if (a->json) {
    bench_emit(a, backend, "metg", w, 0, 0, extra);
  } else {
    bench_ticker_row();
    printf("%-10s %-9s %3d workers  ", backend, "metg", w);
    if (metg > 0)
      printf("METG %.3f us (%s %d search%s; 50%% efficiency)\n", metg,
             r > 1 ? "the median of" : "from", r, r > 1 ? "es" : "");
    else if (found)
      printf("no METG: only %d of %d searches found one (%.3f to %.3f us)\n", found, r, lo, hi);
    else
      printf("no METG: even 1000 us tasks stayed under 50%% efficiency (%d searches)\n", r);
  }
  mpx_executor_destroy(ex);
  return 0;
}

/* Submit a nap of `s` seconds into *f. */
static int nap(mpx_executor *ex, const mpx_task *t, double s, mpx_future **f) {
  int rc = mpx_submit_task(ex, t, &s, sizeof s, NULL, f);
  if (rc) fail("skew submit", rc);
  return rc;
}

/* Wait for every future; the first failure's code. */
static int wait_all(mpx_future **fs, long n) {
  int rc = mpx_wait(fs, (size_t)n, MPX_ALL_COMPLETED, MPX_FOREVER);
  for (long i = 0; !rc && i < n; i++) {
    int code = 0;
    rc = mpx_future_exception(fs[i], 0, &code, NULL);
    if (!rc) rc = code;
  }
  if (rc) fail("skew result", rc);
  return rc;
}

/* When the last of the short tasks (`work` seconds in all) can be done, a long task of `lng`
 * seconds running on one of w workers: the short ones spread over the other w - 1, or over all w
 * once the long one is done. */
static double ideal_tail(int w, double lng, double work) {
  if (w < 2) return lng + work;
  return work / (w - 1) <= lng ? work / (w - 1) : (lng + work) / w;
}

int bench_skew(const bench_args *a) {
  mpx_executor *ex;
  if (open_executor(a, &ex)) return 1;
  const mpx_task *t;
  mpx_task_find("bench_nap", &t);
  int w = mpx_executor_workers(ex);
  long n = a->tasks;
  double lng = a->long_s, sh = a->short_ms * 1e-3;
  mpx_future **fs = calloc((size_t)n + 1, sizeof *fs);
  if (!fs) return fail("skew", MPX_ENOMEM);
  { /* warm up: every worker runs a few naps, so that start-up is not counted */
    for (long i = 0; i < 4L * w && i < n; i++)
      if (nap(ex, t, sh, &fs[i])) return 1;
    if (wait_all(fs, n < 4L * w ? n : 4L * w)) return 1;
    for (long i = 0; i < 4L * w && i < n; i++) mpx_future_release(fs[i]);
  }
  /* this host's own floor: n short sleeps in a row here (a loaded host oversleeps) */
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    struct timespec ts = {(time_t)sh, (long)((sh - floor(sh)) * 1e9)};
    while (nanosleep(&ts, &ts)) {
    }
  }
  double serial = bench_now() - t0;
  /* one long task, then n short ones */
  t0 = bench_now();
  if (nap(ex, t, lng, &fs[n])) return 1;
  for (long i = 0; i < n; i++)
    if (nap(ex, t, sh, &fs[i])) return 1;
  if (wait_all(fs, n)) return 1;
  double last_short = bench_now() - t0;
  if (wait_all(&fs[n], 1)) return 1;
  double all = bench_now() - t0;
  for (long i = 0; i <= n; i++) mpx_future_release(fs[i]);
  double ideal = ideal_tail(w, lng, (double)n * sh), host = ideal_tail(w, lng, serial);
  char extra[384];
  snprintf(extra, sizeof extra,
           "\"mode\": \"long+short\", \"long_s\": %.3f, \"short_ms\": %.3f, \"last_short_s\": "
           "%.6f, \"ideal_s\": %.6f, \"ratio\": %.3f, \"long_done_s\": %.6f, "
           "\"host_ideal_s\": %.6f, \"host_ratio\": %.3f",
           lng, a->short_ms, last_short, ideal, last_short / ideal, all, host, last_short / host);
  bench_emit(a, backend_of(ex), "skew", w, n + 1, last_short, extra);

  /* heavy tail: Pareto(alpha 1.2) from `sh`, capped at the long task, fixed seed */
  double *d = malloc((size_t)n * sizeof *d), sum = 0, longest = 0;
  if (!d) return fail("skew", MPX_ENOMEM);
  unsigned long long x = 0x9e3779b97f4a7c15ull;
  for (long i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
    double u = ((double)(x >> 11) + 1) / 9007199254740993.0; /* (0, 1] */
    d[i] = sh / pow(u, 1 / 1.2);
    if (d[i] > lng) d[i] = lng;
    sum += d[i];
    if (d[i] > longest) longest = d[i];
  }
  t0 = bench_now();
  for (long i = 0; i < n; i++)
    if (nap(ex, t, d[i], &fs[i])) return 1;
  if (wait_all(fs, n)) return 1;
  double makespan = bench_now() - t0;
  for (long i = 0; i < n; i++) mpx_future_release(fs[i]);
  ideal = sum / w > longest ? sum / w : longest;
  snprintf(extra, sizeof extra,
           "\"mode\": \"pareto\", \"alpha\": 1.2, \"min_ms\": %.3f, \"sum_s\": %.6f, "
           "\"longest_s\": %.6f, \"makespan_s\": %.6f, \"ideal_s\": %.6f, \"ratio\": %.3f",
           a->short_ms, sum, longest, makespan, ideal, makespan / ideal);
  bench_emit(a, backend_of(ex), "skew-pareto", w, n, makespan, extra);
  free(d);
  free(fs);
  mpx_executor_destroy(ex);
  return 0;
}
