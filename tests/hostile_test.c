/* hostile_test: what a user does that the happy path does not: a long task in front of many short
 * ones (also once the scheduler expects short tasks and sends large shares), done-callbacks that destroy or shut down the executor that runs them, fire-and-forget
 * futures whose callbacks read the result after the submitter released its handle, cancel and
 * shutdown(cancel_futures) of tasks queued on a worker behind a long one. One backend per run
 * (argv[1]: threads, processes, mpi, or mpi-hybrid / mpi-root, below; default threads); argv[2],
 * optional, runs only the cases named there (comma-separated).
 *
 * The cases are a table of named functions; `skip` lists the backends a case does not apply to
 * (a bit per mpx_backend), with the reason. No case asserts a speed: every bound compares two
 * events of the same run ("the last short task finished before the long one did") or is a
 * generous give-up time that only a hang reaches, so the suite passes on a host with CPU hogs. */
#include <math.h>
#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

static mpx_backend backend = MPX_BACKEND_THREADS;
/* argv[1] mpi-hybrid: one worker rank with 2 task threads (mpirun -np 2); mpi-root: one worker
 * rank and the root's own thread (-np 2). Either way make() ignores its `workers`: 2 slots. */
static int rank_threads, root_threads;

/* Seconds after which a wait for something that must happen is a hang, not slowness. */
#define HANG_S 60.0
/* The long task of the skew cases: 200 short ones must end before it, on a loaded machine too */
#define LONG_S 4.0

/* ---- tasks --------------------------------------------------------------------------------- */

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&ts, &ts)) {
  }
}

/* Sleep for the double of seconds given; no result. */
static int hostile_nap(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  double s;
  if (len != sizeof s) return mpx_task_fail(ctx, MPX_EINVAL, "nap wants a double");
  memcpy(&s, arg, sizeof s);
  sleep_s(s);
  return 0;
}
MPX_TASK(hostile_nap)

/* Sleep 20 ms, then return the square of the long given. */
static int slow_square(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  long x, y;
  if (len != sizeof x) return mpx_task_fail(ctx, MPX_EINVAL, "want one long");
  memcpy(&x, arg, sizeof x);
  sleep_s(0.02);
  y = x * x;
  return mpx_buf_set(out, &y, sizeof y);
}
MPX_TASK(slow_square)

/* Write this process's pid to the file named by the argument, then wait until that file is gone
 * (at most HANG_S): the test freezes this whole process meanwhile (freeze(): a hung rank that,
 * unlike a SIGSTOPped one, its launcher does not see change state) and thaws it at the end. */
static int hang_self(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  char path[256];
  if (!len || len >= sizeof path) return mpx_task_fail(ctx, MPX_EINVAL, "want a path");
  memcpy(path, arg, len);
  path[len] = '\0';
  char tmp[sizeof path + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *fp = fopen(tmp, "w");
  if (!fp) return mpx_task_fail(ctx, MPX_ESYS, "cannot write %s", tmp);
  fprintf(fp, "%d\n", (int)getpid());
  fclose(fp);
  rename(tmp, path);
  for (int i = 0; i < (int)(HANG_S * 1000) && access(path, F_OK) == 0; i++) sleep_s(0.001);
  return 0;
}
MPX_TASK(hang_self)

/* ---- helpers ------------------------------------------------------------------------------- */

/* Freeze (or thaw) every thread of process `pid` with the cgroup v1 freezer, in a cgroup of its
 * own named after this test's pid; thawing moves it back to the root cgroup and removes ours.
 * Returns false when the freezer is not there or not writable (not root): the caller skips. */
#define FREEZER "/sys/fs/cgroup/freezer"
static bool put(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  if (!fp) return false;
  bool ok = fputs(text, fp) >= 0;
  return fclose(fp) == 0 && ok;
}
static bool freeze(int pid, bool on) {
  char dir[128], file[192], num[32];
  snprintf(dir, sizeof dir, FREEZER "/mpx_hostile.%d", (int)getpid());
  snprintf(num, sizeof num, "%d", pid);
  if (on) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return false;
    snprintf(file, sizeof file, "%s/cgroup.procs", dir);
    if (!put(file, num)) return false;
    snprintf(file, sizeof file, "%s/freezer.state", dir);
    if (!put(file, "FROZEN")) return false;
    for (char state[32] = ""; strncmp(state, "FROZEN", 6);) { /* FREEZING until every thread is */
      FILE *fp = fopen(file, "r");
      if (!fp || !fgets(state, sizeof state, fp)) state[0] = '\0';
      if (fp) fclose(fp);
      sleep_s(0.001);
    }
    return true;
  }
  snprintf(file, sizeof file, "%s/freezer.state", dir);
  bool ok = put(file, "THAWED") && put(FREEZER "/cgroup.procs", num);
  return rmdir(dir) == 0 && ok;
}

static mpx_executor *make(int workers) {
  mpx_executor *ex;
  if (rank_threads || root_threads) workers = 0;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend,
                                                   .workers = workers,
                                                   .threads_per_rank = rank_threads,
                                                   .root_threads = root_threads}));
  return ex;
}

static mpx_future *nap(mpx_executor *ex, double s) {
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "hostile_nap", &s, sizeof s, &f));
  return f;
}

/* Wait until *flag is set; fails the test if that takes longer than HANG_S. */
static void await_flag(_Atomic int *flag) {
  double give_up = check_now() + HANG_S;
  while (!atomic_load(flag)) {
    CHECK(check_now() < give_up);
    sleep_s(0.001);
  }
}

/* ---- cases --------------------------------------------------------------------------------- */

/* One long task, then 200 short ones, on 2 workers: while one worker runs the long task the
 * other runs every short one, so each short task is done before the long one ends; then ex is
 * destroyed. (Before the steal-back, a thread worker kept the short tasks it had taken with the
 * long one behind it; a process or an MPI rank kept those sent to it before their take-back.) */
static void long_then_short(mpx_executor *ex) {
  enum { N = 200 };
  mpx_future *lng = nap(ex, LONG_S), *fs[N];
  for (int i = 0; i < N; i++) fs[i] = nap(ex, 0.001);
  CHECK_OK(mpx_wait(fs, N, MPX_ALL_COMPLETED, HANG_S));
  CHECK(mpx_future_done(lng) == 0); /* the long task still runs: nothing waited behind it */
  for (int i = 0; i < N; i++) {
    CHECK_OK(mpx_future_result(fs[i], 0, NULL, NULL));
    mpx_future_release(fs[i]);
  }
  CHECK_OK(mpx_future_result(lng, HANG_S, NULL, NULL));
  mpx_future_release(lng);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void skew_tail(void) {
  mpx_executor *ex = make(2);
  sleep_s(0.05); /* let the workers go idle, so that one wakes to a full queue */
  long_then_short(ex);
}

/* The same after 2000 instant tasks: the scheduler now expects tasks to be short and sends each
 * worker a large share at once, the long task and about half the short ones to one worker. Those
 * must be won back for the other worker when it runs dry (claim words on processes, TAKEBACK on
 * MPI, stealing on threads): each short task is still done before the long one ends. */
static void skew_after_short(void) {
  enum { WARM = 2000 };
  mpx_executor *ex = make(2);
  static mpx_future *warm[WARM];
  for (int i = 0; i < WARM; i++) warm[i] = nap(ex, 0);
  CHECK_OK(mpx_wait(warm, WARM, MPX_ALL_COMPLETED, HANG_S));
  for (int i = 0; i < WARM; i++) mpx_future_release(warm[i]);
  long_then_short(ex);
}

typedef struct cb_state {
  mpx_executor *ex;
  _Atomic int go;     /* the main thread is done submitting: the callback may shut down */
  _Atomic int ran;
  int rc;
  long value;
  bool others_done;   /* shutdown case: every other future was done when shutdown returned */
  mpx_future **others;
  int nothers;
} cb_state;

/* Wait until the main thread is done submitting (submitting to an executor while it is being
 * destroyed is the caller's bug, not what these cases test). */
static void await_go(cb_state *st) {
  while (!atomic_load(&st->go)) sleep_s(0.001);
}

static int destroy_cb(mpx_future *f, void *arg) {
  (void)f;
  cb_state *st = arg;
  await_go(st);
  st->rc = mpx_executor_destroy(st->ex);
  atomic_store(&st->ran, 1);
  return 0;
}

/* A done-callback destroys the executor that runs it (on a worker or the dispatcher thread) while
 * tasks are still queued: it returns, the queued tasks still run (destroy is shutdown(wait)
 * first), and nothing is used after it is freed (run this under ASan). */
static void destroy_in_callback(void) {
  enum { N = 8 };
  for (int workers = 1; workers <= 2; workers++) {
    cb_state st = {.ex = make(workers)};
    mpx_future *first = nap(st.ex, 0.05), *fs[N];
    CHECK_OK(mpx_future_add_done_callback(first, destroy_cb, &st));
    for (int i = 0; i < N; i++) fs[i] = nap(st.ex, 0.005);
    atomic_store(&st.go, 1);
    await_flag(&st.ran);
    CHECK_OK(st.rc);
    CHECK_OK(mpx_future_result(first, 0, NULL, NULL));
    for (int i = 0; i < N; i++) {
      CHECK_OK(mpx_future_result(fs[i], HANG_S, NULL, NULL));
      mpx_future_release(fs[i]);
    }
    mpx_future_release(first);
  }
}

static int destroy_now_cb(mpx_future *f, void *arg) {
  (void)f;
  cb_state *st = arg;
  st->rc = mpx_executor_destroy(st->ex);
  atomic_store(&st->ran, 1);
  return 0;
}

/* shutdown(cancel_futures) cancels a queued future on the caller's thread, and its callback
 * destroys the executor while that shutdown call is still using it: the destroy must wait until
 * the shutdown returned (run this under ASan). */
static void destroy_in_cancel_callback(void) {
  cb_state st = {.ex = make(1)};
  mpx_future *running = nap(st.ex, 0.2), *queued = nap(st.ex, 0.001);
  CHECK_OK(mpx_future_add_done_callback(queued, destroy_now_cb, &st));
  for (double give_up = check_now() + HANG_S; mpx_future_running(running) != 1;) {
    CHECK(check_now() < give_up);
    sleep_s(0.001);
  }
  CHECK_OK(mpx_executor_shutdown(st.ex, false, true));
  await_flag(&st.ran);
  CHECK_OK(st.rc);
  CHECK_OK(mpx_future_result(running, HANG_S, NULL, NULL)); /* it had started: it still runs */
  CHECK(mpx_future_cancelled(queued) == 1);
  mpx_future_release(running);
  mpx_future_release(queued);
}

static int read_cb(mpx_future *f, void *arg) {
  cb_state *st = arg;
  st->rc = mpx_future_result_copy(f, &st->value, sizeof st->value, 0);
  atomic_store(&st->ran, 1);
  return 0;
}

/* Fire and forget: submit, add a callback, release the handle at once. The callback still reads
 * its future's result (the library holds the future for its callbacks). */
static void callback_after_release(void) {
  mpx_executor *ex = make(2);
  enum { N = 16 };
  cb_state st[N];
  for (int i = 0; i < N; i++) {
    st[i] = (cb_state){.value = -1};
    long x = i + 3;
    mpx_future *f;
    CHECK_OK(mpx_submit(ex, "slow_square", &x, sizeof x, &f));
    CHECK_OK(mpx_future_add_done_callback(f, read_cb, &st[i]));
    CHECK_OK(mpx_future_release(f));
  }
  for (int i = 0; i < N; i++) {
    await_flag(&st[i].ran);
    CHECK_OK(st[i].rc);
    CHECK(st[i].value == (long)(i + 3) * (i + 3));
  }
  CHECK_OK(mpx_executor_destroy(ex));
}

static int shutdown_cb(mpx_future *f, void *arg) {
  (void)f;
  cb_state *st = arg;
  await_go(st);
  st->rc = mpx_executor_shutdown(st->ex, true, false);
  st->others_done = true;
  for (int i = 0; i < st->nothers; i++) st->others_done &= mpx_future_done(st->others[i]) == 1;
  atomic_store(&st->ran, 1);
  return 0;
}

/* shutdown(wait) from a done-callback on the executor's own thread cannot wait for the tasks
 * queued behind (that thread would have to run or deliver them): it must neither hang nor claim
 * to have waited. It shuts down and answers MPX_ESTATE; the queued tasks still run. */
static void shutdown_wait_in_callback(void) {
  enum { N = 4 };
  mpx_future *fs[N];
  cb_state st = {.ex = make(1), .others = fs, .nothers = N};
  mpx_future *first = nap(st.ex, 0.05);
  CHECK_OK(mpx_future_add_done_callback(first, shutdown_cb, &st));
  for (int i = 0; i < N; i++) fs[i] = nap(st.ex, 0.005);
  atomic_store(&st.go, 1);
  await_flag(&st.ran);
  CHECK(st.rc == MPX_OK || st.rc == MPX_ESTATE);
  CHECK(st.rc == MPX_ESTATE || st.others_done); /* OK means it waited */
  mpx_future *late;
  double s = 0;
  CHECK_RC(mpx_submit(st.ex, "hostile_nap", &s, sizeof s, &late), MPX_ESHUTDOWN);
  for (int i = 0; i < N; i++) {
    CHECK_OK(mpx_future_result(fs[i], HANG_S, NULL, NULL));
    mpx_future_release(fs[i]);
  }
  mpx_future_release(first);
  CHECK_OK(mpx_executor_destroy(st.ex));
}

/* Wait until f reads running: only once a worker says it started it (MPI: the rank's notice). */
static void await_running(mpx_future *f) {
  for (double give_up = check_now() + HANG_S; mpx_future_running(f) != 1;) {
    CHECK(check_now() < give_up);
    CHECK(mpx_future_done(f) == 0);
    sleep_s(0.001);
  }
}

/* A warm executor (the scheduler expects short tasks: large windows) on 2 workers, one running a
 * long task; then a burst: the second long task and N tasks of 0.5 s, which the other worker
 * takes (idle, it is served first) with the long one at their head, and the busy one maybe some
 * too: they are queued on the workers behind the long tasks. Returns once both long tasks run. */
enum { QN = 60 };
static mpx_executor *burst(mpx_future *lng[2], mpx_future *q[QN]) {
  enum { WARM = 2000 };
  mpx_executor *ex = make(2);
  static mpx_future *warm[WARM];
  for (int i = 0; i < WARM; i++) warm[i] = nap(ex, 0);
  CHECK_OK(mpx_wait(warm, WARM, MPX_ALL_COMPLETED, HANG_S));
  for (int i = 0; i < WARM; i++) mpx_future_release(warm[i]);
  lng[0] = nap(ex, 3.0);
  await_running(lng[0]);
  lng[1] = nap(ex, 3.0);
  for (int i = 0; i < QN; i++) q[i] = nap(ex, 0.5);
  await_running(lng[1]);
  CHECK(mpx_future_running(lng[0]) == 1);
  return ex;
}

/* Each worker runs a long task; the tasks queued behind them (sent to the worker: a process's
 * window, a rank's) have not started: they read PENDING, not RUNNING, and cancel succeeds (the
 * worker skips them; on MPI the rank gives them back). The long ones finish. Before, a task sent
 * to an MPI rank read RUNNING and refused cancel. */
static void cancel_sent(void) {
  mpx_future *lng[2], *q[QN];
  mpx_executor *ex = burst(lng, q);
  int cancelled = 0;
  for (int i = 0; i < QN; i++) {
    if (mpx_future_done(q[i]) == 1) continue; /* ran before a long task came (both on one) */
    CHECK(mpx_future_running(q[i]) == 0);
    CHECK_OK(mpx_future_cancel(q[i]));
    CHECK(mpx_future_cancelled(q[i]) == 1);
    CHECK_RC(mpx_future_result(q[i], 0, NULL, NULL), MPX_ECANCELLED);
    cancelled++;
  }
  CHECK(cancelled > 0);
  for (int k = 0; k < 2; k++) { /* a running task cannot be cancelled, and still finishes */
    CHECK_RC(mpx_future_cancel(lng[k]), MPX_ESTATE);
    CHECK_OK(mpx_future_result(lng[k], HANG_S, NULL, NULL));
    mpx_future_release(lng[k]);
  }
  for (int i = 0; i < QN; i++) mpx_future_release(q[i]);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* The same with shutdown(cancel_futures): it leaves only the running tasks. Every queued task is
 * cancelled (none runs after the long ones), the long ones finish. */
static void shutdown_cancels_sent(void) {
  mpx_future *lng[2], *q[QN];
  mpx_executor *ex = burst(lng, q);
  bool done_before[QN];
  for (int i = 0; i < QN; i++) done_before[i] = mpx_future_done(q[i]) == 1;
  CHECK_OK(mpx_executor_shutdown(ex, false, true));
  CHECK_OK(mpx_wait(q, QN, MPX_ALL_COMPLETED, HANG_S));
  int cancelled = 0;
  for (int i = 0; i < QN; i++) {
    if (done_before[i]) continue;
    CHECK(mpx_future_cancelled(q[i]) == 1);
    cancelled++;
  }
  CHECK(cancelled > 0);
  for (int k = 0; k < 2; k++) {
    CHECK(mpx_future_cancelled(lng[k]) == 0);
    CHECK_OK(mpx_future_result(lng[k], HANG_S, NULL, NULL));
    mpx_future_release(lng[k]);
  }
  for (int i = 0; i < QN; i++) mpx_future_release(q[i]);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* Two one-thread worker ranks watched with a stall_timeout of 1 s, and the path (no file yet)
 * that hang_self will write its pid to. */
static mpx_executor *watched(char *path, size_t cap) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2,
                                                   .threads_per_rank = 1, .stall_timeout = 1.0}));
  snprintf(path, cap, "/tmp/mpx_hostile_hang.%d", (int)getpid());
  unlink(path);
  return ex;
}

/* The pid that hang_self wrote to `path`. */
static int await_pid(const char *path) {
  int pid = 0;
  for (double give_up = check_now() + HANG_S; !pid;) {
    CHECK(check_now() < give_up);
    sleep_s(0.001);
    FILE *fp = fopen(path, "r");
    if (!fp || fscanf(fp, "%d", &pid) != 1) pid = 0;
    if (fp) fclose(fp);
  }
  return pid;
}

/* On MPI a rank that hangs whole (frozen: no thread of it runs; as a deadlocked process or a
 * node that stopped answering) while it runs a task with others queued behind it is abandoned
 * once it leaves a TAKEBACK unanswered for stall_timeout (given here as 1 s; 5 s by default): the
 * queued tasks run on the other rank uncharged, cancels of those that were on it return within
 * the bound (cancelled, or run elsewhere), the one it ran fails with MPX_EWORKER_LOST naming the
 * rank, destroy returns without it, and the next executor runs without that rank. The rank is
 * thawed at the end, so that the job can finish (it ends its executor on the session's stop). */
static void hung_rank_abandoned(void) {
  char path[128];
  mpx_executor *ex = watched(path, sizeof path);
  enum { WARM = 2000, N = 40 };
  static mpx_future *warm[WARM]; /* the scheduler then expects short tasks: big shares, so some of
                                    q go to the hung rank with it */
  for (int i = 0; i < WARM; i++) warm[i] = nap(ex, 0);
  CHECK_OK(mpx_wait(warm, WARM, MPX_ALL_COMPLETED, HANG_S));
  for (int i = 0; i < WARM; i++) mpx_future_release(warm[i]);
  mpx_future *hung, *q[N];
  CHECK_OK(mpx_submit(ex, "hang_self", path, strlen(path), &hung));
  for (int i = 0; i < N; i++) q[i] = nap(ex, 0.01);
  int pid = await_pid(path);
  if (!freeze(pid, true)) { /* no freezer here: the rank just runs on; nothing to check */
    fprintf(stderr, "   skipped: no cgroup freezer at " FREEZER " (%s)\n", strerror(errno));
    unlink(path);
    mpx_wait(q, N, MPX_ALL_COMPLETED, HANG_S);
    for (int i = 0; i < N; i++) mpx_future_release(q[i]);
    mpx_future_release(hung);
    CHECK_OK(mpx_executor_destroy(ex));
    return;
  }
  double t0 = check_now();
  int cancelled = 0, waited = 0;
  for (int i = 0; i < N; i += 2) { /* every other one: those sent to the hung rank wait for it */
    double t1 = check_now();
    int rc = mpx_future_cancel(q[i]);
    CHECK(rc == MPX_OK || rc == MPX_ESTATE); /* ESTATE: it ran (or runs) on the other rank */
    cancelled += rc == MPX_OK;
    waited += check_now() - t1 > 0.5;
  }
  CHECK(check_now() - t0 < HANG_S / 2); /* the rank's abandonment settles them, not a hang */
  CHECK_OK(mpx_wait(q, N, MPX_ALL_COMPLETED, HANG_S)); /* the queued ones ran on the other rank */
  for (int i = 0; i < N; i++) {
    if (!mpx_future_cancelled(q[i])) CHECK_OK(mpx_future_result(q[i], 0, NULL, NULL));
    mpx_future_release(q[i]);
  }
  int code = 0;
  const char *msg = NULL;
  CHECK_OK(mpx_future_exception(hung, HANG_S, &code, &msg));
  fprintf(stderr, "   %d of %d cancels done (%d waited for the rank); %s\n", cancelled, N / 2,
          waited, msg);
  CHECK(code == MPX_EWORKER_LOST && strstr(msg, "rank") && strstr(msg, "stalled"));
  mpx_future_release(hung);
  t0 = check_now();
  CHECK_OK(mpx_executor_destroy(ex)); /* does not wait for the hung rank */
  CHECK(check_now() - t0 < HANG_S / 2);
  ex = make(0); /* the next executor: without that rank (else it would wait for its READY) */
  mpx_future *f = nap(ex, 0.001);
  CHECK_OK(mpx_future_result(f, HANG_S, NULL, NULL));
  mpx_future_release(f);
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK(freeze(pid, false));
  unlink(path);
}

/* The same hung rank never comes back: the session's end cannot finish MPI (MPI_Finalize waits
 * for every rank), so mpx_finalize waits for it at most the stall_timeout it was abandoned after,
 * then answers MPX_EWORKER_LOST naming it, without finalising MPI; the process then exits and
 * the launcher ends the job (hung_rank.sh checks that it does, and does not hang). Run alone. */
static void hung_rank_at_finalize(void) {
  char path[128];
  mpx_executor *ex = watched(path, sizeof path);
  mpx_future *hung, *f;
  CHECK_OK(mpx_submit(ex, "hang_self", path, strlen(path), &hung));
  int pid = await_pid(path);
  if (!freeze(pid, true)) {
    fprintf(stderr, "   skipped: no cgroup freezer at " FREEZER " (%s)\n", strerror(errno));
    unlink(path);
    mpx_future_release(hung);
    CHECK_OK(mpx_executor_destroy(ex));
    CHECK_OK(mpx_finalize());
    return;
  }
  f = nap(ex, 0.001); /* runs on the other rank */
  CHECK_OK(mpx_future_result(f, HANG_S, NULL, NULL));
  mpx_future_release(f);
  CHECK(mpx_future_exception(hung, HANG_S, NULL, NULL) == MPX_OK);
  mpx_future_release(hung);
  CHECK_OK(mpx_executor_destroy(ex));
  double t0 = check_now();
  int rc = mpx_finalize();
  fprintf(stderr, "   mpx_finalize: %s: %s (%.2f s)\n", mpx_strerror(rc), mpx_errmsg(),
          check_now() - t0);
  CHECK(rc == MPX_EWORKER_LOST && strstr(mpx_errmsg(), "rank") && strstr(mpx_errmsg(), "abandoned"));
  CHECK(freeze(pid, false)); /* (it then ends with the job) */
  unlink(path);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define ON(b) (1u << (b))
#define ALONE (1u << 31) /* runs only when named (it ends MPI) */

static const struct {
  const char *name;
  void (*run)(void);
  unsigned skip; /* backends it does not apply to: ON(MPX_BACKEND_...) bits */
  const char *why;
} cases[] = {
    {"skew_tail", skew_tail, 0, NULL},
    {"skew_after_short", skew_after_short, 0, NULL},
    {"destroy_in_callback", destroy_in_callback, 0, NULL},
    {"destroy_in_cancel_callback", destroy_in_cancel_callback, 0, NULL},
    {"callback_after_release", callback_after_release, 0, NULL},
    {"shutdown_wait_in_callback", shutdown_wait_in_callback, 0, NULL},
    {"cancel_sent", cancel_sent, 0, NULL},
    {"shutdown_cancels_sent", shutdown_cancels_sent, 0, NULL},
    /* last: the rank it abandons serves no later executor of the job */
    {"hung_rank_abandoned", hung_rank_abandoned,
     ON(MPX_BACKEND_THREADS) | ON(MPX_BACKEND_PROCESSES), "MPI only (processes: stall_test)"},
    {"hung_rank_at_finalize", hung_rank_at_finalize,
     ON(MPX_BACKEND_THREADS) | ON(MPX_BACKEND_PROCESSES) | ALONE, "MPI only, alone (hung_rank.sh)"},
};

/* `name` is one of the comma-separated names in `list`. */
static bool listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
    if (!strncmp(p, name, n) && (p[n] == ',' || !p[n])) return true;
  return false;
}

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  CHECK(role == MPX_MAIN);
  if (argc > 1) {
    if (!strcmp(argv[1], "processes")) backend = MPX_BACKEND_PROCESSES;
    else if (!strcmp(argv[1], "mpi")) backend = MPX_BACKEND_MPI;
    else if (!strcmp(argv[1], "mpi-hybrid")) backend = MPX_BACKEND_MPI, rank_threads = 2;
    else if (!strcmp(argv[1], "mpi-root")) backend = MPX_BACKEND_MPI, root_threads = 1;
    else CHECK(!strcmp(argv[1], "threads"));
  }
  const char *only = argc > 2 ? argv[2] : NULL;
  int matched = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only ? !listed(only, cases[i].name) : (cases[i].skip & ALONE) != 0) continue;
    matched++;
    if (cases[i].skip & ON(backend)) {
      fprintf(stderr, "-- %s: skipped on %s (%s)\n", cases[i].name, mpx_backend_name(backend),
              cases[i].why);
      continue;
    }
    fprintf(stderr, "-- %s\n", cases[i].name);
    cases[i].run();
  }
  CHECK(!only || matched > 0);
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "hostile_test (%s): all passed\n", mpx_backend_name(backend));
  return 0;
}
