/* executor_test: the behaviours CPython's test_concurrent_futures checks, in C, on one backend
 * (argv[1]: threads, processes or mpi; default threads). Futures: result, timeouts, cancel of
 * pending/running/finished futures, callbacks (order, exactly once, at once when done, failing
 * ones), wait in every mode, as_completed with duplicates and timeouts; executor: map with
 * chunks and failures, shutdown with and without cancel_futures, submit after shutdown, the
 * initializer, max_tasks_per_worker, max_pending, bad input everywhere. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>
#include <mpx/proto.h> /* mpx_submit_msg, mpx_msg_unpack */

#include "check.h"
#include "mpx.pb-c.h" /* a message type to pass around: mpx.Error */

static mpx_backend backend = MPX_BACKEND_THREADS;

/* ---- tasks --------------------------------------------------------------------------------- */

static int square(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len != sizeof(long)) return mpx_task_fail(ctx, MPX_EINVAL, "want one long, got %zu bytes", len);
  long x, y;
  memcpy(&x, arg, sizeof x);
  y = x * x;
  return mpx_buf_set(out, &y, sizeof y);
}
MPX_TASK(square)

static int echo(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  return mpx_buf_set(out, arg, len);
}
MPX_TASK(echo)

static int fails(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_EINVAL, "bad input %d", 42);
}
MPX_TASK(fails)

static int nap(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)out;
  double s = 0;
  if (len == sizeof s) memcpy(&s, arg, sizeof s);
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  nanosleep(&ts, NULL);
  return 0;
}
MPX_TASK(nap)

/* map item: fail on item 13 */
static int picky(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  int x;
  memcpy(&x, arg, sizeof x);
  if (x == 13) return mpx_task_fail(ctx, MPX_ETASK, "unlucky %d", x);
  int y = x + 1;
  (void)len;
  return mpx_buf_set(out, &y, sizeof y);
}
MPX_TASK(picky)

/* per-worker state: the initializer counts its runs in this worker (thread or process) */
static _Thread_local long init_runs, generation;
static _Atomic long init_total;
static int setup(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)out;
  if (len != sizeof(long)) return mpx_task_fail(ctx, MPX_EINVAL, "initargs size %zu", len);
  long magic;
  memcpy(&magic, arg, sizeof magic);
  if (magic != 1234) return mpx_task_fail(ctx, MPX_EINVAL, "no good: %ld", magic);
  init_runs++;
  generation = atomic_fetch_add(&init_total, 1) + 1; /* thread-local addresses get reused */
  return 0;
}
MPX_TASK(setup)

/* which worker incarnation ran this: (pid, initializer generation, init runs) */
typedef struct whoami_t {
  long pid;
  long gen;
  long inits;
} whoami_t;
static int whoami(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  whoami_t w = {getpid(), generation, init_runs};
  return mpx_buf_set(out, &w, sizeof w);
}
MPX_TASK(whoami)

/* a task on a protobuf-c message: doubles the code and tags the message */
static int twice(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  ProtobufCMessage *m;
  int rc = mpx_msg_unpack(&mpx__error__descriptor, arg, len, 1 << 20, &m);
  if (rc) return mpx_task_fail(ctx, rc, "not an mpx.Error");
  Mpx__Error *in = (Mpx__Error *)m, res = MPX__ERROR__INIT;
  size_t n = strlen(in->message) + 8;
  char *msg = malloc(n);
  snprintf(msg, n, "twice(%s)", in->message);
  res.code = in->code * 2;
  res.message = msg;
  res.pid = in->pid;
  rc = mpx_buf_set_msg(out, &res.base);
  free(msg);
  mpx_msg_free(m);
  return rc;
}
MPX_TASK(twice)

/* ---- helpers ------------------------------------------------------------------------------- */

static mpx_executor *make(int workers) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = workers}));
  return ex;
}

static mpx_future *submit_long(mpx_executor *ex, long x) {
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "square", &x, sizeof x, &f));
  return f;
}

static mpx_future *submit_nap(mpx_executor *ex, double s) {
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "nap", &s, sizeof s, &f));
  return f;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_result(void) {
  mpx_executor *ex = make(2);
  CHECK(mpx_executor_backend(ex) == (int)backend);
  CHECK(mpx_executor_workers(ex) == 2);
  mpx_future *f = submit_long(ex, 7);
  long y = 0;
  CHECK_OK(mpx_future_result_copy(f, &y, sizeof y, MPX_FOREVER));
  CHECK(y == 49);
  int small;
  CHECK_RC(mpx_future_result_copy(f, &small, sizeof small, 0), MPX_ESIZE);
  CHECK(mpx_future_done(f) == 1 && mpx_future_running(f) == 0 && mpx_future_cancelled(f) == 0);
  CHECK(mpx_future_state_get(f) == MPX_FINISHED);
  int code = 1;
  const char *msg = NULL;
  CHECK_OK(mpx_future_exception(f, 0, &code, &msg));
  CHECK(code == 0 && msg && !*msg);
  CHECK_OK(mpx_future_release(f));

  /* empty and large results, and a large argument passed by pointer */
  CHECK_OK(mpx_submit(ex, "echo", NULL, 0, &f));
  const void *p;
  size_t n = 99;
  CHECK_OK(mpx_future_result(f, MPX_FOREVER, &p, &n));
  CHECK(n == 0);
  mpx_future_release(f);
  size_t big = 3 << 20;
  unsigned char *buf = malloc(big);
  for (size_t i = 0; i < big; i++) buf[i] = (unsigned char)(i * 7);
  CHECK_OK(mpx_submit(ex, "echo", buf, big, &f));
  CHECK_OK(mpx_future_result(f, MPX_FOREVER, &p, &n));
  CHECK(n == big && memcmp(p, buf, big) == 0);
  mpx_future_release(f);
  free(buf);

  /* a task handle skips the name lookup */
  const mpx_task *t;
  CHECK_OK(mpx_task_find("square", &t));
  long x = 9;
  CHECK_OK(mpx_submit_task(ex, t, &x, sizeof x, NULL, &f));
  CHECK_OK(mpx_future_result_copy(f, &y, sizeof y, MPX_FOREVER));
  CHECK(y == 81);
  mpx_future_release(f);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_errors(void) {
  mpx_executor *ex = make(2);
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "fails", NULL, 0, &f));
  CHECK_RC(mpx_future_result(f, MPX_FOREVER, NULL, NULL), MPX_EINVAL);
  int code;
  const char *msg;
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, &msg));
  CHECK(code == MPX_EINVAL && strstr(msg, "bad input 42"));
  CHECK(mpx_future_state_get(f) == MPX_FAILED && mpx_future_done(f) == 1);
  mpx_future_release(f);

  /* wrong argument size fails inside the task, with its message */
  int small = 3;
  CHECK_OK(mpx_submit(ex, "square", &small, sizeof small, &f));
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, &msg));
  CHECK(code == MPX_EINVAL && strstr(msg, "got 4 bytes"));
  mpx_future_release(f);

  /* bad input gets codes, never a crash */
  long x = 1;
  CHECK_RC(mpx_submit(ex, "no_such_task", &x, sizeof x, &f), MPX_ENOTASK);
  CHECK(f == NULL);
  CHECK_RC(mpx_submit(ex, NULL, &x, sizeof x, &f), MPX_EINVAL);
  CHECK_RC(mpx_submit(ex, "", &x, sizeof x, &f), MPX_ENOTASK);
  CHECK_RC(mpx_submit(NULL, "square", &x, sizeof x, &f), MPX_EINVAL);
  CHECK_RC(mpx_submit(ex, "square", NULL, 8, &f), MPX_EINVAL);
  CHECK_OK(mpx_submit(ex, "square", &x, sizeof x, NULL)); /* fire and forget (issue 10) */
  CHECK_RC(mpx_future_result(NULL, 0, NULL, NULL), MPX_EINVAL);
  CHECK_RC(mpx_future_done(NULL), MPX_EINVAL);
  CHECK_RC(mpx_future_cancel(NULL), MPX_EINVAL);
  CHECK_RC(mpx_future_add_done_callback(NULL, NULL, NULL), MPX_EINVAL);
  CHECK_RC(mpx_wait(NULL, 1, MPX_ALL_COMPLETED, 0), MPX_EINVAL);
  CHECK_RC(mpx_executor_create(NULL, NULL), MPX_EINVAL);
  mpx_executor *bad;
  CHECK_RC(mpx_executor_create(&bad, &(mpx_options){.workers = -1}), MPX_EINVAL);
  CHECK_RC(mpx_executor_create(&bad, &(mpx_options){.backend = 42}), MPX_EINVAL);
  CHECK_RC(mpx_executor_create(&bad, &(mpx_options){.initializer = "nope"}), MPX_ENOTASK);
  CHECK(bad == NULL);

  /* waiting on a released future */
  f = submit_long(ex, 2);
  CHECK_OK(mpx_future_result(f, MPX_FOREVER, NULL, NULL));
  CHECK_OK(mpx_future_release(f));
  CHECK_RC(mpx_future_result(f, 0, NULL, NULL), MPX_ERELEASED);
  CHECK_RC(mpx_future_release(f), MPX_ERELEASED);

  /* submit after shutdown */
  CHECK_OK(mpx_executor_shutdown(ex, true, false));
  CHECK_RC(mpx_submit(ex, "square", &x, sizeof x, &f), MPX_ESHUTDOWN);
  CHECK_OK(mpx_executor_shutdown(ex, true, false)); /* again is fine */
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK_RC(mpx_executor_destroy(NULL), MPX_EINVAL);
}

static void test_timeout_and_cancel(void) {
  mpx_executor *ex = make(1);
  mpx_future *slow = submit_nap(ex, 0.4);
  mpx_future *queued = submit_long(ex, 3);
  CHECK_RC(mpx_future_result(slow, 0.02, NULL, NULL), MPX_ETIMEDOUT);
  CHECK_RC(mpx_future_result(slow, 0, NULL, NULL), MPX_ETIMEDOUT);
  /* the one worker is busy with `slow`: `queued` is still pending and can be cancelled */
  for (int i = 0; i < 200 && !mpx_future_running(slow); i++) usleep(1000);
  CHECK(mpx_future_running(slow) == 1);
  CHECK_RC(mpx_future_cancel(slow), MPX_ESTATE); /* a running future is not interrupted */
  CHECK_OK(mpx_future_cancel(queued));
  CHECK_OK(mpx_future_cancel(queued)); /* twice is fine */
  CHECK(mpx_future_cancelled(queued) == 1 && mpx_future_done(queued) == 1);
  CHECK_RC(mpx_future_result(queued, MPX_FOREVER, NULL, NULL), MPX_ECANCELLED);
  CHECK_RC(mpx_future_exception(queued, MPX_FOREVER, NULL, NULL), MPX_ECANCELLED);
  CHECK_OK(mpx_future_result(slow, MPX_FOREVER, NULL, NULL));
  CHECK_RC(mpx_future_cancel(slow), MPX_ESTATE); /* nor a finished one */
  mpx_future_release(slow);
  mpx_future_release(queued);
  mpx_executor_destroy(ex);
}

typedef struct cb_log {
  _Atomic int calls;
  int order[8];
  _Atomic int n;
} cb_log;

static cb_log cblog;
static int cb_a(mpx_future *f, void *arg) {
  (void)f;
  cblog.order[atomic_fetch_add(&cblog.n, 1)] = (int)(intptr_t)arg;
  atomic_fetch_add(&cblog.calls, 1);
  return 0;
}
static int cb_fail(mpx_future *f, void *arg) {
  cb_a(f, arg);
  return MPX_ETASK;
}
static int cb_reenter(mpx_future *f, void *arg) {
  /* callbacks run outside any mpx lock: calling back into mpx is fine */
  CHECK(mpx_future_done(f) == 1);
  return cb_a(f, arg);
}

static void test_callbacks(void) {
  mpx_executor *ex = make(1);
  memset(&cblog, 0, sizeof cblog);
  mpx_future *slow = submit_nap(ex, 0.1);
  long fails_before = mpx_future_callback_failures();
  CHECK_OK(mpx_future_add_done_callback(slow, cb_a, (void *)1));
  CHECK_OK(mpx_future_add_done_callback(slow, cb_fail, (void *)2));
  CHECK_OK(mpx_future_add_done_callback(slow, cb_reenter, (void *)3));
  CHECK_RC(mpx_future_add_done_callback(slow, NULL, NULL), MPX_EINVAL);
  CHECK_OK(mpx_future_result(slow, MPX_FOREVER, NULL, NULL));
  for (int i = 0; i < 1000 && atomic_load(&cblog.calls) < 3; i++) usleep(1000);
  CHECK(atomic_load(&cblog.calls) == 3);
  CHECK(cblog.order[0] == 1 && cblog.order[1] == 2 && cblog.order[2] == 3);
  CHECK(mpx_future_callback_failures() == fails_before + 1);
  /* added after done: runs at once, on this thread */
  CHECK_OK(mpx_future_add_done_callback(slow, cb_a, (void *)4));
  CHECK(atomic_load(&cblog.calls) == 4 && cblog.order[3] == 4);
  CHECK_RC(mpx_future_add_done_callback(slow, cb_fail, (void *)5), MPX_ECALLBACK);
  usleep(20000);
  CHECK(atomic_load(&cblog.calls) == 5); /* exactly once each */
  /* a cancelled future runs its callbacks too */
  mpx_future *a = submit_nap(ex, 0.1), *b = submit_long(ex, 1);
  CHECK_OK(mpx_future_add_done_callback(b, cb_a, (void *)6));
  for (int i = 0; i < 200 && !mpx_future_running(a); i++) usleep(1000);
  CHECK_OK(mpx_future_cancel(b));
  CHECK(atomic_load(&cblog.calls) == 6 && cblog.order[5] == 6);
  mpx_future_result(a, MPX_FOREVER, NULL, NULL);
  mpx_future_release(a);
  mpx_future_release(b);
  mpx_future_release(slow);
  mpx_executor_destroy(ex);
}

static void test_wait(void) {
  mpx_executor *ex = make(2);
  mpx_future *quick = submit_long(ex, 1), *slow = submit_nap(ex, 0.5);
  mpx_future_result(quick, MPX_FOREVER, NULL, NULL);
  mpx_future *both[] = {quick, slow};
  CHECK_OK(mpx_wait(both, 2, MPX_FIRST_COMPLETED, 0));
  CHECK_RC(mpx_wait(both, 2, MPX_ALL_COMPLETED, 0.05), MPX_ETIMEDOUT);
  CHECK_RC(mpx_wait(both, 2, MPX_FIRST_EXCEPTION, 0.01), MPX_ETIMEDOUT);
  mpx_future *bad;
  CHECK_OK(mpx_submit(ex, "fails", NULL, 0, &bad));
  mpx_future *with_bad[] = {slow, bad, slow};
  CHECK_OK(mpx_wait(with_bad, 3, MPX_FIRST_EXCEPTION, 5)); /* returns on the failure */
  CHECK(mpx_future_done(slow) == 0);
  CHECK_RC(mpx_wait(with_bad, 3, 7, 0), MPX_EINVAL);
  CHECK_OK(mpx_wait(both, 2, MPX_ALL_COMPLETED, MPX_FOREVER));
  CHECK_OK(mpx_wait(NULL, 0, MPX_ALL_COMPLETED, 0)); /* nothing to wait for */
  mpx_future_release(quick);
  mpx_future_release(slow);
  mpx_future_release(bad);
  mpx_executor_destroy(ex);
}

static void test_as_completed(void) {
  mpx_executor *ex = make(2);
  mpx_future *slow = submit_nap(ex, 0.3), *quick = submit_long(ex, 4);
  mpx_future_result(quick, MPX_FOREVER, NULL, NULL);
  mpx_future *fs[] = {slow, quick, slow, quick}; /* duplicates are yielded once */
  mpx_as_completed *it;
  CHECK_OK(mpx_as_completed_create(fs, 4, MPX_FOREVER, &it));
  mpx_future *f;
  CHECK_OK(mpx_as_completed_next(it, &f));
  CHECK(f == quick); /* already done: first */
  CHECK_OK(mpx_as_completed_next(it, &f));
  CHECK(f == slow && mpx_future_done(slow) == 1);
  CHECK_RC(mpx_as_completed_next(it, &f), MPX_EEMPTY);
  CHECK_OK(mpx_as_completed_destroy(it));

  /* the timeout bounds the whole iteration */
  mpx_future *slower = submit_nap(ex, 1.0);
  mpx_future *gs[] = {quick, slower};
  CHECK_OK(mpx_as_completed_create(gs, 2, 0.1, &it));
  CHECK_OK(mpx_as_completed_next(it, &f));
  CHECK(f == quick);
  double t0 = (double)clock_gettime(CLOCK_MONOTONIC, &(struct timespec){0});
  (void)t0;
  CHECK_RC(mpx_as_completed_next(it, &f), MPX_ETIMEDOUT);
  CHECK_OK(mpx_as_completed_destroy(it)); /* before `slower` is done: must not leak or crash */
  CHECK_RC(mpx_as_completed_create(NULL, 1, 0, &it), MPX_EINVAL);
  CHECK_RC(mpx_as_completed_next(NULL, &f), MPX_EINVAL);
  mpx_future_result(slower, MPX_FOREVER, NULL, NULL);
  mpx_future_release(slower);
  mpx_future_release(slow);
  mpx_future_release(quick);
  mpx_executor_destroy(ex);
}

static void test_map(void) {
  mpx_executor *ex = make(2);
  enum { N = 1000 };
  long in[N], out[N];
  for (long i = 0; i < N; i++) in[i] = i - 500;
  size_t chunks[] = {0, 1, 7, 1000, 5000};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    memset(out, 0, sizeof out);
    CHECK_OK(mpx_map(ex, "square", in, sizeof(long), N, out, sizeof(long),
                     &(mpx_map_opts){.chunksize = chunks[c]}));
    for (long i = 0; i < N; i++) CHECK(out[i] == (i - 500) * (i - 500));
  }
  CHECK_OK(mpx_map(ex, "square", in, sizeof(long), 0, out, sizeof(long), NULL));
  /* the first failure in item order, with its index and message */
  int xs[40], ys[40];
  for (int i = 0; i < 40; i++) xs[i] = i;
  mpx_map_status st;
  CHECK_RC(mpx_map(ex, "picky", xs, sizeof(int), 40, ys, sizeof(int),
                   &(mpx_map_opts){.chunksize = 5, .status = &st}), MPX_ETASK);
  CHECK(st.failed_index == 13 && st.code == MPX_ETASK && strstr(st.message, "unlucky 13"));
  CHECK(ys[12] == 13 && ys[39] == 40); /* the other results are written */
  /* results of the wrong size */
  CHECK_RC(mpx_map(ex, "square", in, sizeof(long), 10, out, sizeof(int), NULL), MPX_ESIZE);
  CHECK_RC(mpx_map(ex, "nope", in, sizeof(long), 10, out, sizeof(long), NULL), MPX_ENOTASK);
  CHECK_RC(mpx_map(ex, "square", NULL, sizeof(long), 10, out, sizeof(long), NULL), MPX_EINVAL);
  CHECK_RC(mpx_map(NULL, "square", in, sizeof(long), 10, out, sizeof(long), NULL), MPX_EINVAL);
  /* a timeout: the rest is cancelled, map returns at once (options_test checks more) */
  double naps[8] = {0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2};
  CHECK_RC(mpx_map(ex, "nap", naps, sizeof(double), 8, NULL, 0,
                   &(mpx_map_opts){.chunksize = 1, .timeout = 0.1}), MPX_ETIMEDOUT);
  mpx_executor_destroy(ex);
}

static void test_messages(void) {
  mpx_executor *ex = make(2);
  Mpx__Error e = MPX__ERROR__INIT;
  char text[64];
  snprintf(text, sizeof text, "hello");
  e.code = -21;
  e.message = text;
  e.pid = 4242;
  mpx_future *f;
  CHECK_OK(mpx_submit_msg(ex, "twice", &e.base, NULL, &f));
  snprintf(text, sizeof text, "changed"); /* the future holds its own packed copy */
  ProtobufCMessage *m;
  CHECK_OK(mpx_future_result_msg(f, MPX_FOREVER, &mpx__error__descriptor, 1 << 20, &m));
  Mpx__Error *r = (Mpx__Error *)m;
  CHECK(r->code == -42 && r->pid == 4242 && !strcmp(r->message, "twice(hello)"));
  CHECK_RC(mpx_future_result_msg(f, 0, &mpx__error__descriptor, 4, &m), MPX_ETOOBIG);
  CHECK(m == NULL);
  mpx_msg_free((ProtobufCMessage *)r);
  mpx_future_release(f);
  /* a long message is adopted, not copied twice, and still arrives whole */
  char big[4000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  e.message = big;
  CHECK_OK(mpx_submit_msg(ex, "twice", &e.base, NULL, &f));
  CHECK_OK(mpx_future_result_msg(f, MPX_FOREVER, &mpx__error__descriptor, 0, &m));
  CHECK(strlen(((Mpx__Error *)m)->message) == sizeof big - 1 + 7);
  mpx_msg_free(m);
  mpx_future_release(f);
  /* bad input */
  CHECK_RC(mpx_submit_msg(ex, "twice", NULL, NULL, &f), MPX_EINVAL);
  CHECK_RC(mpx_submit_msg(ex, "nope", &e.base, NULL, &f), MPX_ENOTASK);
  CHECK_OK(mpx_submit_msg(ex, "twice", &e.base, NULL, NULL)); /* fire and forget (issue 10) */
  /* a result that is not the message asked for */
  CHECK_OK(mpx_submit(ex, "echo", "\xff\xff\xff", 3, &f));
  CHECK_RC(mpx_future_result_msg(f, MPX_FOREVER, &mpx__error__descriptor, 0, &m), MPX_EPROTO);
  mpx_future_release(f);
  mpx_executor_destroy(ex);
}

static void test_shutdown(void) {
  /* cancel_futures: what has not started is cancelled, the running one finishes */
  mpx_executor *ex = make(1);
  mpx_future *slow = submit_nap(ex, 0.2), *fs[10];
  for (int i = 0; i < 10; i++) fs[i] = submit_long(ex, i);
  for (int i = 0; i < 200 && !mpx_future_running(slow); i++) usleep(1000);
  CHECK_OK(mpx_executor_shutdown(ex, true, true));
  CHECK(mpx_future_state_get(slow) == MPX_FINISHED);
  int cancelled = 0;
  for (int i = 0; i < 10; i++) {
    long y;
    int rc = mpx_future_result_copy(fs[i], &y, sizeof y, 0);
    CHECK(rc == MPX_ECANCELLED || (rc == 0 && y == (long)i * i)); /* never lost */
    cancelled += rc == MPX_ECANCELLED;
    mpx_future_release(fs[i]);
  }
  CHECK(cancelled >= 8); /* at most the window of a message transport was already sent */
  mpx_future_release(slow);
  mpx_executor_destroy(ex);

  /* wait = true: everything queued is run before shutdown returns */
  ex = make(2);
  enum { N = 2000 };
  static mpx_future *many[N];
  for (long i = 0; i < N; i++) many[i] = submit_long(ex, i);
  CHECK_OK(mpx_executor_shutdown(ex, true, false));
  for (long i = 0; i < N; i++) {
    CHECK(mpx_future_state_get(many[i]) == MPX_FINISHED);
    long y;
    CHECK_OK(mpx_future_result_copy(many[i], &y, sizeof y, 0));
    CHECK(y == i * i);
    mpx_future_release(many[i]);
  }
  mpx_executor_destroy(ex);

  /* wait = false returns at once; the work still completes; destroy joins */
  ex = make(2);
  mpx_future *s2 = submit_nap(ex, 0.1);
  CHECK_OK(mpx_executor_shutdown(ex, false, false));
  CHECK_OK(mpx_future_result(s2, MPX_FOREVER, NULL, NULL));
  mpx_future_release(s2);
  mpx_executor_destroy(ex);

  /* futures outlive their executor */
  ex = make(1);
  mpx_future *keep = submit_long(ex, 5);
  mpx_executor_destroy(ex);
  long y;
  CHECK_OK(mpx_future_result_copy(keep, &y, sizeof y, 0));
  CHECK(y == 25);
  mpx_future_release(keep);
}

static void test_initializer(void) {
  long magic = 1234;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2,
                                                   .initializer = "setup", .initargs = &magic,
                                                   .initargs_len = sizeof magic}));
  for (int i = 0; i < 20; i++) {
    mpx_future *f;
    CHECK_OK(mpx_submit(ex, "whoami", NULL, 0, &f));
    whoami_t w;
    CHECK_OK(mpx_future_result_copy(f, &w, sizeof w, MPX_FOREVER));
    CHECK(w.inits == 1); /* once in each worker, before its tasks */
    mpx_future_release(f);
  }
  mpx_executor_destroy(ex);

  long wrong = 5;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2,
                                                   .initializer = "setup", .initargs = &wrong,
                                                   .initargs_len = sizeof wrong}), MPX_EINIT);
  CHECK(ex == NULL && strstr(mpx_errmsg(), "no good: 5"));
}

static void test_max_tasks_per_worker(void) {
  long magic = 1234;
  mpx_executor *ex;
  if (backend == MPX_BACKEND_MPI) {
    /* a worker rank cannot be replaced without ending the job: refused, clearly */
    CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 1,
                                                     .max_tasks_per_worker = 10}), MPX_EPERM);
    CHECK(ex == NULL && strstr(mpx_errmsg(), "max_tasks_per_worker"));
    fprintf(stderr, "   skipped on mpi: max_tasks_per_worker is refused (ranks are not replaced)\n");
    return;
  }
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 1,
                                                   .max_tasks_per_worker = 10,
                                                   .initializer = "setup", .initargs = &magic,
                                                   .initargs_len = sizeof magic}));
  enum { N = 35 };
  mpx_future *fs[N];
  for (int i = 0; i < N; i++) CHECK_OK(mpx_submit(ex, "whoami", NULL, 0, &fs[i]));
  whoami_t w[N];
  int incarnations = 1;
  for (int i = 0; i < N; i++) {
    CHECK_OK(mpx_future_result_copy(fs[i], &w[i], sizeof w[i], MPX_FOREVER));
    CHECK(w[i].inits == 1); /* each incarnation ran the initializer itself */
    if (i && (w[i].pid != w[i - 1].pid || w[i].gen != w[i - 1].gen)) incarnations++;
    mpx_future_release(fs[i]);
  }
  CHECK(incarnations == 4); /* 10 + 10 + 10 + 5: none lost, none repeated */
  mpx_executor_destroy(ex);
}

static void test_max_pending(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 1,
                                                   .max_pending = 2, .on_full = MPX_FULL_FAIL}));
  mpx_future *slow = submit_nap(ex, 0.3);
  for (int i = 0; i < 200 && !mpx_future_running(slow); i++) usleep(1000);
  mpx_future *a = submit_long(ex, 1), *b = submit_long(ex, 2), *c;
  long x = 3;
  CHECK_RC(mpx_submit(ex, "square", &x, sizeof x, &c), MPX_EFULL);
  CHECK_OK(mpx_wait((mpx_future *[]){slow, a, b}, 3, MPX_ALL_COMPLETED, MPX_FOREVER));
  c = submit_long(ex, 3); /* room again */
  CHECK_OK(mpx_future_result(c, MPX_FOREVER, NULL, NULL));
  mpx_future *all[] = {slow, a, b, c};
  for (int i = 0; i < 4; i++) mpx_future_release(all[i]);
  mpx_executor_destroy(ex);

  /* the blocking policy: submit waits for room, everything completes */
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2,
                                                   .max_pending = 4}));
  enum { N = 200 };
  mpx_future *fs[N];
  for (long i = 0; i < N; i++) fs[i] = submit_long(ex, i);
  for (long i = 0; i < N; i++) {
    long y;
    CHECK_OK(mpx_future_result_copy(fs[i], &y, sizeof y, MPX_FOREVER));
    CHECK(y == i * i);
    mpx_future_release(fs[i]);
  }
  mpx_executor_destroy(ex);
}

/* In an mpx built without MPI (MPX_WITH_MPI=OFF) the MPI backend answers MPX_ENOTBUILT, and says
 * why; with MPI built in, mpi_test covers the MPI backend outside an MPI job. */
static void test_backend_not_built(void) {
#if !MPX_HAVE_MPI
  mpx_executor *ex = (mpx_executor *)&ex;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}), MPX_ENOTBUILT);
  CHECK(ex == NULL && strstr(mpx_errmsg(), "not built"));
  fprintf(stderr, "   MPX_BACKEND_MPI: %s\n", mpx_errmsg());
#else
  fprintf(stderr, "   skipped: the MPI backend is built in\n");
#endif
}

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  CHECK(role == MPX_MAIN);
  if (argc > 1) {
    if (!strcmp(argv[1], "processes")) backend = MPX_BACKEND_PROCESSES;
    else if (!strcmp(argv[1], "mpi")) backend = MPX_BACKEND_MPI;
  }
  RUN(test_result);
  RUN(test_errors);
  RUN(test_timeout_and_cancel);
  RUN(test_callbacks);
  RUN(test_wait);
  RUN(test_as_completed);
  RUN(test_map);
  RUN(test_messages);
  RUN(test_shutdown);
  RUN(test_initializer);
  RUN(test_max_tasks_per_worker);
  RUN(test_max_pending);
  RUN(test_backend_not_built);
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "executor_test (%s): all passed\n", mpx_backend_name(backend));
  return 0;
}
