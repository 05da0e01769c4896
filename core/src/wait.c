/* wait.c: mpx_wait and mpx_as_completed (future.h): one waiter registered on many futures.
 *
 * A waiter holds a reference on each (deduplicated) future and puts one callback node on each
 * (future.c's callback lists, mpx__future_add_cb); a completing future notes its index in the
 * waiter's ready list under the waiter's mutex and signals its condition variable. Futures
 * already done when registered are noted at once. The waiter is freed by the last of its owner
 * and its registered nodes (a reference count), so a future completing while the owner returns
 * never touches freed memory.
 *
 * Thread-safety: a waiter belongs to the thread that created it (as_completed's iterator too);
 * callbacks reach it from completing threads under its mutex. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "future_impl.h"
#include "os/clock.h"

/* ---- wait() and as_completed: a waiter registered on many futures ------------------------ */

typedef struct waiter waiter;
typedef struct waiter_slot {
  struct mpx__cb cb;
  waiter *w;
  size_t index;
} waiter_slot;

struct waiter {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  _Atomic int refs;       /* the owner + one per registered slot */
  size_t n;               /* unique futures */
  mpx_future **fs;        /* unique, each retained */
  waiter_slot *slots;
  size_t *ready;          /* indices in completion order */
  size_t nready, nfailed, taken;
  double deadline;        /* 0: none */
};

static void waiter_unref(waiter *w) {
  if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1) return;
  for (size_t i = 0; i < w->n; i++) mpx__future_drop(w->fs[i]);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
  free(w->fs);
  free(w->slots);
  free(w->ready);
  free(w);
}

static void waiter_note(waiter *w, size_t i) {
  pthread_mutex_lock(&w->lock);
  w->ready[w->nready++] = i;
  if (mpx__future_state(w->fs[i]) == MPX_FAILED) w->nfailed++;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static int waiter_cb(mpx_future *f, void *arg) {
  (void)f;
  waiter_slot *s = arg;
  waiter *w = s->w;
  waiter_note(w, s->index);
  waiter_unref(w);
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static int waiter_create(mpx_future *const *fs, size_t n, double timeout, waiter **out) {
  if (!fs && n) return MPX_EINVAL;
  int trc = mpx__wait_timeout(&timeout);
  if (trc) return trc;
  for (size_t i = 0; i < n; i++) {
    int rc = mpx__future_check(fs[i]);
    if (rc) return rc;
  }
  waiter *w = calloc(1, sizeof *w);
  if (!w) return MPX_ENOMEM;
  w->fs = malloc((n ? n : 1) * sizeof *w->fs);
  w->slots = calloc(n ? n : 1, sizeof *w->slots);
  w->ready = malloc((n ? n : 1) * sizeof *w->ready);
  if (!w->fs || !w->slots || !w->ready) {
    free(w->fs);
    free(w->slots);
    free(w->ready);
    free(w);
    return MPX_ENOMEM;
  }
  if (n) memcpy(w->fs, fs, n * sizeof *fs);
  qsort(w->fs, n, sizeof *w->fs, cmp_ptr);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (u == 0 || w->fs[u - 1] != w->fs[i]) w->fs[u++] = w->fs[i];
  w->n = u;
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  atomic_init(&w->refs, 1);
  w->deadline = timeout >= 0 ? mpx__now() + timeout : 0;
  /* those already done come first, in the order given */
  for (size_t i = 0; i < u; i++) {
    mpx__future_hold(w->fs[i]);
    w->slots[i] = (waiter_slot){.cb = {.fn = waiter_cb, .arg = &w->slots[i]}, .w = w, .index = i};
    atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
    if (!mpx__future_add_cb(w->fs[i], &w->slots[i].cb)) {
      waiter_note(w, i);
      atomic_fetch_sub_explicit(&w->refs, 1, memory_order_relaxed);
    }
  }
  *out = w;
  return MPX_OK;
}

static void waiter_destroy(waiter *w) {
  for (size_t i = 0; i < w->n; i++)
    if (mpx__future_remove_cb(w->fs[i], &w->slots[i].cb)) waiter_unref(w);
  waiter_unref(w);
}

/* Wait on the condition `satisfied` under w->lock until it holds or the deadline passes. */
static int waiter_wait(waiter *w, bool (*satisfied)(const waiter *, int), int mode) {
  int rc = MPX_OK;
  pthread_mutex_lock(&w->lock);
  while (!satisfied(w, mode)) {
    if (w->deadline == 0) {
      pthread_cond_wait(&w->cond, &w->lock);
      continue;
    }
    double left = w->deadline - mpx__now();
    if (left <= 0) {
      rc = MPX_ETIMEDOUT;
      break;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct timespec d = mpx__timespec_of(left);
    ts.tv_sec += d.tv_sec;
    ts.tv_nsec += d.tv_nsec;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->cond, &w->lock, &ts);
  }
  pthread_mutex_unlock(&w->lock);
  return rc;
}

static bool wait_satisfied(const waiter *w, int mode) {
  if (w->nready == w->n) return true;
  if (mode == MPX_FIRST_COMPLETED) return w->nready > 0;
  if (mode == MPX_FIRST_EXCEPTION) return w->nfailed > 0;
  return false;
}

static bool any_untaken(const waiter *w, int mode) {
  (void)mode;
  return w->taken < w->nready;
}

int mpx_wait(mpx_future *const *fs, size_t n, mpx_wait_mode mode, double timeout) {
  if (mode < MPX_FIRST_COMPLETED || mode > MPX_ALL_COMPLETED) return MPX_EINVAL;
  waiter *w;
  int rc = waiter_create(fs, n, timeout, &w);
  if (rc) return rc;
  rc = waiter_wait(w, wait_satisfied, mode);
  waiter_destroy(w);
  return rc;
}

struct mpx_as_completed {
  waiter *w;
};

int mpx_as_completed_create(mpx_future *const *fs, size_t n, double timeout,
                            mpx_as_completed **it) {
  if (!it) return MPX_EINVAL;
  *it = NULL;
  mpx_as_completed *a = malloc(sizeof *a);
  if (!a) return MPX_ENOMEM;
  int rc = waiter_create(fs, n, timeout, &a->w);
  if (rc) {
    free(a);
    return rc;
  }
  *it = a;
  return MPX_OK;
}

int mpx_as_completed_next(mpx_as_completed *it, mpx_future **f) {
  if (!it || !f) return MPX_EINVAL;
  *f = NULL;
  waiter *w = it->w;
  pthread_mutex_lock(&w->lock);
  bool all = w->taken == w->n;
  pthread_mutex_unlock(&w->lock);
  if (all) return MPX_EEMPTY;
  int rc = waiter_wait(w, any_untaken, 0);
  if (rc) return rc;
  pthread_mutex_lock(&w->lock);
  *f = w->fs[w->ready[w->taken++]];
  pthread_mutex_unlock(&w->lock);
  return MPX_OK;
}

int mpx_as_completed_destroy(mpx_as_completed *it) {
  if (!it) return MPX_EINVAL;
  waiter_destroy(it->w);
  free(it);
  return MPX_OK;
}
