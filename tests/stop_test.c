/* stop_test: stopping work (issue 10, part 4) on one backend (argv[1]: threads, processes, or
 * mpi under mpirun -np 3): mpx_task_should_stop turns true in a running task once its future is
 * cancelled or its executor shuts down with cancel_futures; mpx_executor_terminate cancels the
 * queued tasks, stops the running ones (their futures fail with MPX_ETERMINATED) and, on
 * processes, leaves no worker process behind.
 *
 * No speed is asserted: a task that polls should_stop loops for up to 30 s, and the checks only
 * require that it ended far sooner (under 20 s after the request), which holds on any machine
 * that is not stopped outright. Failure paths first. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

#define LONG_S 30.0 /* a task that is never told to stop runs this long */
#define FAR_S 20.0  /* "far sooner": a stop seen after this long counts as not seen */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct spin_arg {
  mpx_queue *started; /* if set: the worker's pid is put here when the task starts */
  int honour;         /* 1: return once should_stop; 0: ignore it (processes: killed) */
  double max_s;       /* 0: LONG_S */
} spin_arg;

typedef struct spin_res {
  double ran;  /* seconds */
  int stopped; /* it saw should_stop */
} spin_res;

/* Loops until mpx_task_should_stop (when honouring it) or its time is up. */
static int spin(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  spin_arg a;
  if (len != sizeof a) return mpx_task_fail(ctx, MPX_EINVAL, "want spin_arg");
  memcpy(&a, arg, sizeof a);
  if (a.started) {
    long pid = (long)getpid();
    int rc = mpx_queue_put(a.started, &pid, sizeof pid, true, 10);
    if (rc) return mpx_task_fail(ctx, rc, "queue: %s", mpx_errmsg());
  }
  double t0 = now(), max = a.max_s > 0 ? a.max_s : LONG_S;
  spin_res r = {0, 0};
  while ((r.ran = now() - t0) < max) {
    if (a.honour && mpx_task_should_stop(ctx)) {
      r.stopped = 1;
      break;
    }
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  return mpx_buf_set(out, &r, sizeof r);
}
MPX_TASK(spin)

static void wait_running(mpx_future *f) {
  double until = now() + LONG_S;
  while (mpx_future_running(f) != 1) {
    CHECK(now() < until);
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
}

/* A task that is running is asked to stop by cancel: cancel still answers MPX_ESTATE. */
static void test_cancel_running(mpx_executor *ex) {
  spin_arg a = {.honour = 1};
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "spin", &a, sizeof a, &f));
  wait_running(f);
  nanosleep(&(struct timespec){0, 20000000}, NULL); /* well inside the loop */
  double t0 = now();
  CHECK_RC(mpx_future_cancel(f), MPX_ESTATE);
  spin_res r;
  CHECK_OK(mpx_future_result_copy(f, &r, sizeof r, MPX_FOREVER));
  CHECK(r.stopped);              /* it saw should_stop */
  CHECK(now() - t0 < FAR_S);     /* long before its 30 s */
  CHECK(mpx_future_cancelled(f) == 0);
  CHECK_OK(mpx_future_release(f));
  /* the request named that task only: the next ones (one lands on the same worker) are not
   * asked */
  spin_arg quick = {.honour = 1, .max_s = 0.2};
  for (int i = 0; i < 2; i++) {
    CHECK_OK(mpx_submit(ex, "spin", &quick, sizeof quick, &f));
    CHECK_OK(mpx_future_result_copy(f, &r, sizeof r, MPX_FOREVER));
    CHECK(!r.stopped && r.ran >= 0.2);
    CHECK_OK(mpx_future_release(f));
  }
}

/* shutdown(cancel_futures) asks the running tasks to stop, and cancels the queued ones. */
static void test_shutdown_cancel(mpx_backend b) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = b, .workers = 2}));
  spin_arg a = {.honour = 1};
  mpx_future *run[2], *queued[4];
  for (int i = 0; i < 2; i++) CHECK_OK(mpx_submit(ex, "spin", &a, sizeof a, &run[i]));
  for (int i = 0; i < 2; i++) wait_running(run[i]);
  for (int i = 0; i < 4; i++) CHECK_OK(mpx_submit(ex, "spin", &a, sizeof a, &queued[i]));
  double t0 = now();
  CHECK_OK(mpx_executor_shutdown(ex, true, true));
  CHECK(now() - t0 < FAR_S);
  for (int i = 0; i < 2; i++) {
    spin_res r;
    CHECK_OK(mpx_future_result_copy(run[i], &r, sizeof r, 0));
    CHECK(r.stopped);
    CHECK_OK(mpx_future_release(run[i]));
  }
  for (int i = 0; i < 4; i++) {
    CHECK(mpx_future_done(queued[i]) == 1);
    CHECK_OK(mpx_future_release(queued[i]));
  }
  CHECK_OK(mpx_executor_destroy(ex));
}

/* terminate with two tasks running and four queued. */
static void test_terminate(mpx_backend b) {
  bool procs = b == MPX_BACKEND_PROCESSES;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = b, .workers = 2}));
  mpx_queue *started;
  CHECK_OK(mpx_queue_create(&started, 0, 0));
  /* processes ignore should_stop: they are killed; threads and ranks are asked */
  spin_arg a = {.started = b == MPX_BACKEND_MPI ? NULL : started, .honour = !procs};
  mpx_future *run[2], *queued[4];
  for (int i = 0; i < 2; i++) CHECK_OK(mpx_submit(ex, "spin", &a, sizeof a, &run[i]));
  long pids[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    if (b == MPX_BACKEND_MPI) {
      wait_running(run[i]);
      continue;
    }
    size_t len;
    CHECK_OK(mpx_queue_get(started, &pids[i], sizeof pids[i], &len, true, LONG_S));
  }
  spin_arg q = {.honour = 1};
  for (int i = 0; i < 4; i++) CHECK_OK(mpx_submit(ex, "spin", &q, sizeof q, &queued[i]));
  double t0 = now();
  CHECK_OK(mpx_executor_terminate(ex));
  CHECK(now() - t0 < FAR_S);
  for (int i = 0; i < 2; i++) {
    int code;
    const char *m;
    CHECK_OK(mpx_future_exception(run[i], 0, &code, &m));
    CHECK_RC(code, MPX_ETERMINATED);
    CHECK(m && strstr(m, "terminated") && strstr(m, "spin"));
    CHECK_OK(mpx_future_release(run[i]));
  }
  for (int i = 0; i < 4; i++) {
    CHECK(mpx_future_cancelled(queued[i]) == 1 || b == MPX_BACKEND_MPI);
    CHECK(mpx_future_done(queued[i]) == 1);
    CHECK_OK(mpx_future_release(queued[i]));
  }
  if (procs) /* no child left behind: both workers are gone (and reaped) */
    for (int i = 0; i < 2; i++) CHECK(pids[i] > 0 && kill((pid_t)pids[i], 0) == -1 && errno == ESRCH);
  mpx_future *f;
  CHECK_RC(mpx_submit(ex, "spin", &q, sizeof q, &f), MPX_ESHUTDOWN);
  CHECK_OK(mpx_executor_terminate(ex)); /* again: fine */
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK_OK(mpx_queue_destroy(started));
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_backend backend = check_backend(argc, argv);
  if (NO_FORK && backend == MPX_BACKEND_PROCESSES) return 0;
  CHECK_RC(mpx_executor_terminate(NULL), MPX_EINVAL);
  CHECK(mpx_task_should_stop(NULL) == 0);
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2}));
  test_cancel_running(ex);
  test_cancel_running(ex); /* a second time on a worker that saw a stop before */
  CHECK_OK(mpx_executor_destroy(ex));
  test_shutdown_cancel(backend);
  test_terminate(backend);
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "stop_test %s: all passed\n", mpx_backend_name(backend));
  return 0;
}
