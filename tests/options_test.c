/* options_test: hostile options on one backend (argv[1]: threads, processes or mpi; default
 * threads; argv[2]: run only the test of that name). What is checked:
 *  - NaN and infinite timeouts: refused with MPX_EINVAL naming the option (task_timeout,
 *    per-submit timeout, map timeout, the wait timeouts of futures); +inf on a wait or a map
 *    means no limit;
 *  - options the backend cannot honour (task_timeout, per-submit timeout, retries,
 *    max_tasks_per_worker, the scheduler's periods silent_after, sweep_interval,
 *    limit_interval) are refused with MPX_EPERM naming the option and the backend; those
 *    periods NaN, infinite or negative are MPX_EINVAL;
 *  - map's arithmetic: n * item_size or n * result_size overflowing size_t is refused,
 *    chunksize = (size_t)-1 (or anything above n) runs everything as one chunk;
 *  - map's timeout is overall: map returns MPX_ETIMEDOUT at the deadline while a chunk still
 *    runs, and the caller's results are never written after map returned (the caller may free
 *    items and results at once: run under ASan to see it); results of chunks done before the
 *    deadline are written; without a timeout nothing changes.
 * Failure paths come first. Times are loose bounds (the suite passes with CPU hogs running). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

static mpx_backend backend = MPX_BACKEND_THREADS;

/* ---- tasks --------------------------------------------------------------------------------- */

/* sleep the seconds given (a double), answer 7 (a long) */
static int opt_nap(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  double s = 0;
  if (len != sizeof s) return mpx_task_fail(ctx, MPX_EINVAL, "want one double, got %zu bytes", len);
  memcpy(&s, arg, sizeof s);
  if (s > 0) {
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts)) continue;
  }
  long seven = 7;
  return mpx_buf_set(out, &seven, sizeof seven);
}
MPX_TASK(opt_nap)

/* x -> x + 1 (longs); fails on 13 */
static int opt_inc(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  long x;
  if (len != sizeof x) return mpx_task_fail(ctx, MPX_EINVAL, "want one long, got %zu bytes", len);
  memcpy(&x, arg, sizeof x);
  if (x == 13) return mpx_task_fail(ctx, MPX_ETASK, "unlucky %ld", x);
  x++;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(opt_inc)

/* ---- helpers ------------------------------------------------------------------------------- */

static mpx_executor *make(int workers) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = workers}));
  return ex;
}

static bool has(const char *s, const char *part) { return strstr(s, part) != NULL; }

#define SENTINEL ((long)0x5eb7195eb7195eb7)

/* ---- NaN and infinite options -------------------------------------------------------------- */

static void test_nonfinite(void) {
  mpx_executor *ex;
  double bad[] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 1,
                                                     .task_timeout = bad[i]}), MPX_EINVAL);
    CHECK(ex == NULL && has(mpx_errmsg(), "task_timeout"));
  }
  /* the scheduler's periods: NaN, infinite or negative */
  double worse[] = {NAN, INFINITY, -INFINITY, -0.01};
  for (int i = 0; i < 4; i++) {
    mpx_options o[3] = {{.silent_after = worse[i]}, {.sweep_interval = worse[i]},
                        {.limit_interval = worse[i]}};
    const char *name[3] = {"silent_after", "sweep_interval", "limit_interval"};
    for (int k = 0; k < 3; k++) {
      o[k].backend = backend;
      o[k].workers = 1;
      CHECK_RC(mpx_executor_create(&ex, &o[k]), MPX_EINVAL);
      CHECK(ex == NULL && has(mpx_errmsg(), name[k]));
    }
  }
  ex = make(2);
  const mpx_task *nap;
  CHECK_OK(mpx_task_find("opt_nap", &nap));
  double s = 0.01;
  mpx_future *f = NULL;
  for (int i = 0; i < 3; i++) {
    CHECK_RC(mpx_submit_task(ex, nap, &s, sizeof s, &(mpx_submit_opts){.retries = -1,
                                                                       .timeout = bad[i]}, &f),
             MPX_EINVAL);
    CHECK(f == NULL && has(mpx_errmsg(), "timeout"));
  }
  long in[4] = {1, 2, 3, 4}, out[4];
  CHECK_RC(mpx_map(ex, "opt_inc", in, sizeof *in, 4, out, sizeof *out,
                   &(mpx_map_opts){.timeout = NAN}), MPX_EINVAL);
  CHECK(has(mpx_errmsg(), "timeout"));
  /* the wait timeouts of a future */
  CHECK_OK(mpx_submit(ex, "opt_nap", &s, sizeof s, &f));
  CHECK_RC(mpx_future_result(f, NAN, NULL, NULL), MPX_EINVAL);
  CHECK(has(mpx_errmsg(), "timeout"));
  CHECK_RC(mpx_future_exception(f, NAN, NULL, NULL), MPX_EINVAL);
  CHECK_RC(mpx_wait(&f, 1, MPX_ALL_COMPLETED, NAN), MPX_EINVAL);
  mpx_as_completed *it = NULL;
  CHECK_RC(mpx_as_completed_create(&f, 1, NAN, &it), MPX_EINVAL);
  CHECK(it == NULL);
  /* +inf waits without limit, as MPX_FOREVER */
  CHECK_OK(mpx_wait(&f, 1, MPX_ALL_COMPLETED, INFINITY));
  CHECK(mpx_future_done(f) == 1);
  long y = 0;
  CHECK_OK(mpx_future_result_copy(f, &y, sizeof y, INFINITY));
  CHECK(y == 7);
  mpx_future_release(f);
  /* an infinite map timeout is no limit */
  CHECK_OK(mpx_map(ex, "opt_inc", in, sizeof *in, 4, out, sizeof *out,
                   &(mpx_map_opts){.timeout = INFINITY}));
  CHECK(out[0] == 2 && out[3] == 5);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* ---- options the backend cannot honour ----------------------------------------------------- */

/* create with `o` and expect `want`; on MPX_EPERM the message names `option` and the backend */
static void expect_create(mpx_options o, int want, const char *option) {
  mpx_executor *ex;
  o.backend = backend;
  o.workers = 1;
  CHECK_RC(mpx_executor_create(&ex, &o), want);
  if (want == MPX_EPERM) {
    fprintf(stderr, "   %s\n", mpx_errmsg());
    CHECK(ex == NULL && has(mpx_errmsg(), option) &&
          has(mpx_errmsg(), mpx_backend_name(backend)));
  } else {
    CHECK_OK(mpx_executor_destroy(ex));
  }
}

static void test_eperm(void) {
  bool threads = backend == MPX_BACKEND_THREADS, mpi = backend == MPX_BACKEND_MPI;
  int kill_one = threads || mpi ? MPX_EPERM : MPX_OK; /* time limits end one worker */
  int retry = threads || mpi ? MPX_EPERM : MPX_OK;    /* re-run a task lost with its worker */
  int recycle = mpi ? MPX_EPERM : MPX_OK;             /* replace a worker after k tasks */
  expect_create((mpx_options){.task_timeout = 1}, kill_one, "task_timeout");
  expect_create((mpx_options){.retries = 1}, retry, "retries");
  expect_create((mpx_options){.max_tasks_per_worker = 5}, recycle, "max_tasks_per_worker");
  /* the scheduler's periods: only where its scheduler has them */
  expect_create((mpx_options){.silent_after = 0.002}, threads ? MPX_EPERM : MPX_OK,
                "silent_after");
  expect_create((mpx_options){.sweep_interval = 0.05}, kill_one, "sweep_interval");
  expect_create((mpx_options){.limit_interval = 0.005}, kill_one, "limit_interval");
  /* zero is always fine: it asks for nothing */
  expect_create((mpx_options){.task_timeout = 0, .retries = 0}, MPX_OK, NULL);

  mpx_executor *ex = make(1);
  const mpx_task *nap;
  CHECK_OK(mpx_task_find("opt_nap", &nap));
  double s = 0.01;
  mpx_future *f = NULL;
  int rc = mpx_submit_task(ex, nap, &s, sizeof s, &(mpx_submit_opts){.retries = -1, .timeout = 5},
                           &f);
  CHECK_RC(rc, kill_one);
  if (rc) CHECK(f == NULL && has(mpx_errmsg(), "timeout") &&
                has(mpx_errmsg(), mpx_backend_name(backend)));
  else mpx_future_release(f);
  rc = mpx_submit_task(ex, nap, &s, sizeof s, &(mpx_submit_opts){.retries = 2}, &f);
  CHECK_RC(rc, retry);
  if (rc) CHECK(f == NULL && has(mpx_errmsg(), "retries") &&
                has(mpx_errmsg(), mpx_backend_name(backend)));
  else mpx_future_release(f);
  /* none (timeout < 0, retries 0) and the executor's (0, -1) are always fine */
  CHECK_OK(mpx_submit_task(ex, nap, &s, sizeof s, &(mpx_submit_opts){.retries = 0, .timeout = -1},
                           &f));
  CHECK_OK(mpx_future_result(f, MPX_FOREVER, NULL, NULL));
  mpx_future_release(f);
  CHECK_OK(mpx_submit_task(ex, nap, &s, sizeof s, &(mpx_submit_opts){.retries = -1}, &f));
  CHECK_OK(mpx_future_result(f, MPX_FOREVER, NULL, NULL));
  mpx_future_release(f);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* ---- map arithmetic ------------------------------------------------------------------------ */

static void test_map_overflow(void) {
  mpx_executor *ex = make(2);
  long in[4] = {1, 2, 3, 4}, out[4];
  size_t huge = SIZE_MAX / 4 + 2; /* huge * 8 wraps around */
  /* nothing is read or written: the sizes are refused first */
  CHECK_RC(mpx_map(ex, "opt_inc", in, sizeof *in, huge, out, sizeof *out, NULL), MPX_EINVAL);
  CHECK(has(mpx_errmsg(), "item_size"));
  CHECK_RC(mpx_map(ex, "opt_inc", in, sizeof *in, huge, out, sizeof *out,
                   &(mpx_map_opts){.chunksize = 3}), MPX_EINVAL);
  CHECK_RC(mpx_map(ex, "opt_inc", in, 1, huge, out, sizeof *out, NULL), MPX_EINVAL);
  CHECK(has(mpx_errmsg(), "result_size"));
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_map_chunksize(void) {
  mpx_executor *ex = make(2);
  enum { N = 100 };
  long in[N], out[N];
  for (long i = 0; i < N; i++) in[i] = 100 + i;
  size_t sizes[] = {(size_t)-1, (size_t)-1 / 2, N + 1, N, N - 1};
  for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
    for (int i = 0; i < N; i++) out[i] = SENTINEL;
    CHECK_OK(mpx_map(ex, "opt_inc", in, sizeof *in, N, out, sizeof *out,
                     &(mpx_map_opts){.chunksize = sizes[c]}));
    for (long i = 0; i < N; i++) CHECK(out[i] == 101 + i);
    /* the same with a timeout (private buffers) */
    for (int i = 0; i < N; i++) out[i] = SENTINEL;
    CHECK_OK(mpx_map(ex, "opt_inc", in, sizeof *in, N, out, sizeof *out,
                     &(mpx_map_opts){.chunksize = sizes[c], .timeout = 60}));
    for (long i = 0; i < N; i++) CHECK(out[i] == 101 + i);
  }
  CHECK_OK(mpx_executor_destroy(ex));
}

/* ---- map's timeout is overall -------------------------------------------------------------- */

/* With and without a (generous) timeout, the answers are the same: results in order, the first
 * failure with its index, the results before it written. */
static void test_map_same_answers(void) {
  mpx_executor *ex = make(2);
  enum { N = 1000 };
  long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
  CHECK(in && out);
  for (long i = 0; i < N; i++) in[i] = 20 + i;
  double timeouts[] = {0, 60};
  for (int t = 0; t < 2; t++) {
    for (int i = 0; i < N; i++) out[i] = SENTINEL;
    CHECK_OK(mpx_map(ex, "opt_inc", in, sizeof *in, N, out, sizeof *out,
                     &(mpx_map_opts){.chunksize = 7, .timeout = timeouts[t]}));
    for (long i = 0; i < N; i++) CHECK(out[i] == 21 + i);
    long xs[40], ys[40];
    for (int i = 0; i < 40; i++) xs[i] = i, ys[i] = SENTINEL;
    mpx_map_status st;
    CHECK_RC(mpx_map(ex, "opt_inc", xs, sizeof *xs, 40, ys, sizeof *ys,
                     &(mpx_map_opts){.chunksize = 5, .timeout = timeouts[t], .status = &st}),
             MPX_ETASK);
    CHECK(st.failed_index == 13 && st.code == MPX_ETASK && has(st.message, "unlucky 13"));
    CHECK(ys[12] == 13 && ys[15] == 16 && ys[39] == 40);
    CHECK(ys[13] == SENTINEL && ys[14] == SENTINEL); /* its chunk stopped at the failure */
  }
  free(in);
  free(out);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* Chunk c of `res` (CHUNK results) is whole: all written (7) or all untouched. */
static bool chunk_is(const long *res, int c, int chunk, long v) {
  for (int i = c * chunk; i < (c + 1) * chunk; i++)
    if (res[i] != v) return false;
  return true;
}

static void test_map_timeout(void) {
  mpx_executor *ex = make(2);
  enum { N = 8, CHUNK = 2 };
  const double NAP = 4.0, BOUND = 3.0; /* loose: the point is returning before the nap ends */
  /* warm up: workers started */
  double *naps = malloc(N * sizeof *naps);
  long *res = malloc(N * sizeof *res);
  CHECK(naps && res);
  for (int i = 0; i < N; i++) naps[i] = 0;
  CHECK_OK(mpx_map(ex, "opt_nap", naps, sizeof *naps, N, res, sizeof *res, NULL));
  /* the first chunk naps: map returns at the deadline, not when the nap ends */
  naps[0] = NAP;
  for (int i = 0; i < N; i++) res[i] = SENTINEL;
  mpx_map_status st;
  double t0 = check_now();
  int rc = mpx_map(ex, "opt_nap", naps, sizeof *naps, N, res, sizeof *res,
                   &(mpx_map_opts){.chunksize = CHUNK, .timeout = 0.5, .status = &st});
  double took = check_now() - t0;
  fprintf(stderr, "   map with a 0.5 s timeout returned %s after %.3f s (the first item naps %g s)\n",
          mpx_err_name(rc), took, NAP);
  if (rc == MPX_OK && took >= NAP) { /* a stalled host, as below: nothing to tell apart */
    free(naps);
    free(res);
    mpx_executor_destroy(ex);
    return;
  }
  CHECK_RC(rc, MPX_ETIMEDOUT);
  CHECK(took < BOUND);
  CHECK(st.code == MPX_ETIMEDOUT && st.failed_index == 0);
  /* the caller may reuse or free its items at once: the running chunk has its own copy */
  for (int i = 0; i < N; i++) naps[i] = -1;
  free(naps);
  /* the chunk still running never writes the caller's results, not even after it ends */
  CHECK(chunk_is(res, 0, CHUNK, SENTINEL));
  usleep((useconds_t)((NAP + 0.5 - took) * 1e6));
  CHECK(chunk_is(res, 0, CHUNK, SENTINEL));
  for (int c = 1; c < N / CHUNK; c++)
    CHECK(chunk_is(res, c, CHUNK, SENTINEL) || chunk_is(res, c, CHUNK, 7));
  free(res);

  /* map collects in order: the chunks before the first one not done by the deadline were seen
   * done and are written; the last chunk, running at the deadline, is not, even after it ends */
  naps = malloc(N * sizeof *naps);
  res = malloc(N * sizeof *res);
  CHECK(naps && res);
  for (int i = 0; i < N; i++) naps[i] = 0, res[i] = SENTINEL;
  naps[N - 1] = NAP;
  t0 = check_now();
  rc = mpx_map(ex, "opt_nap", naps, sizeof *naps, N, res, sizeof *res,
               &(mpx_map_opts){.chunksize = CHUNK, .timeout = 1.5, .status = &st});
  took = check_now() - t0;
  free(naps);
  if (rc == MPX_OK && took >= NAP) {
    /* the machine stalled this process past the late chunk's whole nap before map looked at it
     * (seen at load averages over 20): the deadline cannot be told apart from the nap here */
    fprintf(stderr, "   map took %.3f s, longer than the %g s nap: stalled host, check skipped\n",
            took, NAP);
    free(res);
    mpx_executor_destroy(ex);
    return;
  }
  CHECK_RC(rc, MPX_ETIMEDOUT);
  CHECK(st.code == MPX_ETIMEDOUT && st.failed_index % CHUNK == 0 && st.failed_index < N);
  int first_late = (int)st.failed_index / CHUNK;
  fprintf(stderr, "   then %d of %d chunks were done by the 1.5 s deadline\n", first_late,
          N / CHUNK);
  for (int c = 0; c < first_late; c++) CHECK(chunk_is(res, c, CHUNK, 7));
  usleep((useconds_t)((NAP + 0.5 - (took < NAP ? took : NAP)) * 1e6));
  CHECK(chunk_is(res, N / CHUNK - 1, CHUNK, SENTINEL));
  for (int c = first_late; c < N / CHUNK - 1; c++)
    CHECK(chunk_is(res, c, CHUNK, SENTINEL) || chunk_is(res, c, CHUNK, 7));
  free(res);
  /* the executor is fine afterwards */
  long in[3] = {1, 2, 3}, out[3];
  CHECK_OK(mpx_map(ex, "opt_inc", in, sizeof *in, 3, out, sizeof *out,
                   &(mpx_map_opts){.timeout = 30}));
  CHECK(out[0] == 2 && out[2] == 4);
  CHECK_OK(mpx_executor_destroy(ex));
}

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  CHECK(role == MPX_MAIN);
  if (argc > 1) {
    if (!strcmp(argv[1], "processes")) backend = MPX_BACKEND_PROCESSES;
    else if (!strcmp(argv[1], "mpi")) backend = MPX_BACKEND_MPI;
  }
  /* argv[2], if given, names the one test to run */
  const char *only = argc > 2 ? argv[2] : NULL;
#define RUN_ONLY(test)                                                                             \
  if (!only || !strcmp(only, #test)) RUN(test)
  RUN_ONLY(test_nonfinite);
  RUN_ONLY(test_eperm);
  RUN_ONLY(test_map_overflow);
  RUN_ONLY(test_map_chunksize);
  RUN_ONLY(test_map_same_answers);
  RUN_ONLY(test_map_timeout);
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "options_test (%s): all passed\n", mpx_backend_name(backend));
  return 0;
}
