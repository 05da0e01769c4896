/* ipc_sync_test: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier between
 * threads and between forked processes: mutual exclusion under contention, recursion, release
 * by a non-owner (EPERM), double acquire (ESTATE), bounded release (ESTATE), timeouts of 0, small
 * and negative, event and condition wake-ups, barrier rounds, abort, reset and timeout
 * (EBROKEN), and bad input. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/mpx.h>

#include "check.h"

static bool forks = true;

static void nap(double s) {
  struct timespec t = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  nanosleep(&t, NULL);
}

/* Everything the workers share, passed by value (the pointers are shared mappings). */
typedef struct objs {
  mpx_lock *lock;
  mpx_rlock *rlock;
  mpx_semaphore *sem;
  mpx_event *ev;
  mpx_condition *cond;
  mpx_barrier *bar;
  mpx_value *counter; /* long, no lock: protected by the primitive under test */
  mpx_value *inside;  /* long, no lock: how many are in the critical section */
  int iters;
  int which;
} objs;

static long *ptr(mpx_value *v) {
  void *p;
  mpx_value_ptr(v, &p);
  return p;
}

/* Critical section: inside must be 0 on entry (mutual exclusion), then bump the counter. */
static void critical(objs *o, int limit) {
  long *in = ptr(o->inside);
  long n = __atomic_add_fetch(in, 1, __ATOMIC_RELAXED);
  CHECK(n <= limit);
  long *c = ptr(o->counter);
  long v = *c;
  if ((v & 15) == 0) sched_yield();
  *c = v + 1;
  __atomic_sub_fetch(in, 1, __ATOMIC_RELAXED);
}

static void work(objs *o) {
  for (int i = 0; i < o->iters; i++) {
    switch (o->which) {
    case 0:
      CHECK_OK(mpx_lock_acquire(o->lock, true, -1));
      critical(o, 1);
      CHECK_OK(mpx_lock_release(o->lock));
      break;
    case 1:
      CHECK_OK(mpx_rlock_acquire(o->rlock, true, -1));
      CHECK_OK(mpx_rlock_acquire(o->rlock, true, 0)); /* recursion */
      critical(o, 1);
      CHECK_OK(mpx_rlock_release(o->rlock));
      CHECK_OK(mpx_rlock_release(o->rlock));
      break;
    case 2: /* a semaphore of 1 as a mutex */
      CHECK_OK(mpx_semaphore_acquire(o->sem, true, -1));
      critical(o, 1);
      CHECK_OK(mpx_semaphore_release(o->sem));
      break;
    case 3: /* a condition's own lock */
      CHECK_OK(mpx_condition_acquire(o->cond, true, -1));
      critical(o, 1);
      CHECK_OK(mpx_condition_release(o->cond));
      break;
    }
  }
}

static int sync_worker(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  objs o;
  memcpy(&o, arg, sizeof o);
  work(&o);
  return 0;
}
MPX_TASK(sync_worker);

static void *thread_worker(void *p) {
  work(p);
  return NULL;
}

static void run_contention(objs *o, int which) {
  enum { N = 4 };
  *ptr(o->counter) = 0;
  o->which = which;
  o->iters = 3000;
  pthread_t t[N];
  objs copies[N];
  for (int i = 0; i < N; i++) {
    copies[i] = *o;
    CHECK(pthread_create(&t[i], NULL, thread_worker, &copies[i]) == 0);
  }
  for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
  CHECK(*ptr(o->counter) == N * o->iters);
  if (!forks) return;
  *ptr(o->counter) = 0;
  mpx_process *p[N];
  for (int i = 0; i < N; i++) {
    CHECK_OK(mpx_process_create(&p[i], "sync_worker", o, sizeof *o, NULL));
    CHECK_OK(mpx_process_start(p[i]));
  }
  for (int i = 0; i < N; i++) {
    int code;
    CHECK_OK(mpx_process_join(p[i], 60));
    CHECK_OK(mpx_process_exitcode(p[i], &code));
    CHECK(code == 0);
    mpx_process_destroy(p[i]);
  }
  CHECK(*ptr(o->counter) == N * o->iters);
}

static void *try_release(void *p) { return (void *)(long)mpx_lock_release(p); }
static void *try_acquire0(void *p) { return (void *)(long)mpx_lock_acquire(p, false, 0); }

static void test_locks(objs *o) {
  /* Lock */
  CHECK_OK(mpx_lock_acquire(o->lock, true, -1));
  CHECK_RC(mpx_lock_acquire(o->lock, true, 0.01), MPX_ESTATE); /* would self-deadlock */
  pthread_t t;
  void *r;
  pthread_create(&t, NULL, try_release, o->lock);
  pthread_join(t, &r);
  CHECK((long)r == MPX_EPERM); /* not the owner */
  pthread_create(&t, NULL, try_acquire0, o->lock);
  pthread_join(t, &r);
  CHECK((long)r == MPX_ETIMEDOUT); /* busy */
  CHECK_OK(mpx_lock_release(o->lock));
  CHECK_RC(mpx_lock_release(o->lock), MPX_EPERM);
  CHECK_OK(mpx_lock_acquire(o->lock, false, 0));
  CHECK_OK(mpx_lock_release(o->lock));
  /* RLock */
  for (int i = 0; i < 5; i++) CHECK_OK(mpx_rlock_acquire(o->rlock, true, -1));
  for (int i = 0; i < 5; i++) CHECK_OK(mpx_rlock_release(o->rlock));
  CHECK_RC(mpx_rlock_release(o->rlock), MPX_EPERM);
  for (int w = 0; w < 4; w++) run_contention(o, w);
}

static void test_semaphores(void) {
  mpx_semaphore *s;
  unsigned v;
  CHECK_OK(mpx_semaphore_create(&s, 2, false));
  CHECK_OK(mpx_semaphore_acquire(s, true, -1));
  CHECK_OK(mpx_semaphore_acquire(s, false, 0));
  CHECK_RC(mpx_semaphore_acquire(s, false, 0), MPX_ETIMEDOUT);
  CHECK_RC(mpx_semaphore_acquire(s, true, 0), MPX_ETIMEDOUT);
  double t0 = check_now();
  CHECK_RC(mpx_semaphore_acquire(s, true, 0.05), MPX_ETIMEDOUT);
  CHECK(check_now() - t0 >= 0.045);
  for (int i = 0; i < 5; i++) CHECK_OK(mpx_semaphore_release(s)); /* unbounded */
  CHECK_OK(mpx_semaphore_value(s, &v));
  CHECK(v == 5);
  mpx_semaphore_destroy(s);
  CHECK_OK(mpx_semaphore_create(&s, 1, true));
  CHECK_RC(mpx_semaphore_release(s), MPX_ESTATE); /* beyond the initial value */
  CHECK_OK(mpx_semaphore_acquire(s, true, -1));
  CHECK_OK(mpx_semaphore_release(s));
  CHECK_RC(mpx_semaphore_release(s), MPX_ESTATE);
  mpx_semaphore_destroy(s);
}

/* ---- event / condition / barrier ---- */
typedef struct waitarg {
  objs o;
  double delay;
} waitarg;

static void *set_later(void *p) {
  waitarg *w = p;
  nap(w->delay);
  mpx_event_set(w->o.ev);
  return NULL;
}

static int ev_setter(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  waitarg w;
  memcpy(&w, arg, sizeof w);
  set_later(&w);
  return 0;
}
MPX_TASK(ev_setter);

static void test_event(objs *o) {
  CHECK(mpx_event_is_set(o->ev) == 0);
  CHECK_RC(mpx_event_wait(o->ev, 0), MPX_ETIMEDOUT);
  CHECK_RC(mpx_event_wait(o->ev, 0.02), MPX_ETIMEDOUT);
  waitarg w = {*o, 0.05};
  pthread_t t;
  pthread_create(&t, NULL, set_later, &w);
  CHECK_OK(mpx_event_wait(o->ev, -1));
  pthread_join(t, NULL);
  CHECK(mpx_event_is_set(o->ev) == 1);
  CHECK_OK(mpx_event_wait(o->ev, 0));
  CHECK_OK(mpx_event_clear(o->ev));
  CHECK(mpx_event_is_set(o->ev) == 0);
  if (forks) {
    mpx_process *p;
    CHECK_OK(mpx_process_create(&p, "ev_setter", &w, sizeof w, NULL));
    CHECK_OK(mpx_process_start(p));
    CHECK_OK(mpx_event_wait(o->ev, 10));
    mpx_process_join(p, 10);
    mpx_process_destroy(p);
    mpx_event_clear(o->ev);
  }
}

/* A child increments the shared counter under the condition's lock and notifies. */
static void notify_after(objs *o, double delay) {
  nap(delay);
  CHECK_OK(mpx_condition_acquire(o->cond, true, -1));
  (*ptr(o->counter))++;
  CHECK_OK(mpx_condition_notify_all(o->cond));
  CHECK_OK(mpx_condition_release(o->cond));
}

static int cond_notifier(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  objs o;
  memcpy(&o, arg, sizeof o);
  notify_after(&o, 0.05);
  return 0;
}
MPX_TASK(cond_notifier);

static void *thread_notifier(void *p) {
  notify_after(p, 0.05);
  return NULL;
}

static bool counter_positive(void *arg) { return *ptr(((objs *)arg)->counter) > 0; }

static void test_condition(objs *o) {
  CHECK_RC(mpx_condition_notify(o->cond, 1), MPX_EPERM); /* not held */
  CHECK_RC(mpx_condition_wait(o->cond, 0), MPX_EPERM);
  CHECK_OK(mpx_condition_acquire(o->cond, true, -1));
  CHECK_RC(mpx_condition_wait(o->cond, 0.02), MPX_ETIMEDOUT);
  CHECK_RC(mpx_condition_wait(o->cond, 0), MPX_ETIMEDOUT);
  CHECK_OK(mpx_condition_notify(o->cond, 1)); /* nobody waits: fine */
  CHECK_OK(mpx_condition_release(o->cond));
  for (int proc = 0; proc < (forks ? 2 : 1); proc++) {
    *ptr(o->counter) = 0;
    pthread_t t;
    mpx_process *p = NULL;
    CHECK_OK(mpx_condition_acquire(o->cond, true, -1));
    if (proc) {
      CHECK_OK(mpx_process_create(&p, "cond_notifier", o, sizeof *o, NULL));
      CHECK_OK(mpx_process_start(p));
    } else {
      pthread_create(&t, NULL, thread_notifier, o);
    }
    CHECK_OK(mpx_condition_wait_for(o->cond, counter_positive, o, 10));
    CHECK_OK(mpx_condition_release(o->cond));
    if (proc) {
      mpx_process_join(p, 10);
      mpx_process_destroy(p);
    } else {
      pthread_join(t, NULL);
    }
  }
  /* wait_for with a predicate that never holds: times out with the lock held */
  *ptr(o->counter) = 0;
  CHECK_OK(mpx_condition_acquire(o->cond, true, -1));
  CHECK_RC(mpx_condition_wait_for(o->cond, counter_positive, o, 0.03), MPX_ETIMEDOUT);
  CHECK_OK(mpx_condition_release(o->cond));
  /* over a user lock */
  mpx_condition *c2;
  CHECK_OK(mpx_condition_create(&c2, o->lock));
  CHECK_OK(mpx_condition_acquire(c2, true, -1));
  CHECK_RC(mpx_lock_acquire(o->lock, true, 0), MPX_ESTATE); /* the same lock */
  CHECK_OK(mpx_condition_release(c2));
  mpx_condition_destroy(c2);
}

typedef struct bararg {
  mpx_barrier *b;
  mpx_value *seen; /* long bitmask of indexes seen, per round */
  int rounds;
} bararg;

static void bar_rounds(bararg *a) {
  for (int r = 0; r < a->rounds; r++) {
    unsigned idx;
    CHECK_OK(mpx_barrier_wait(a->b, 10, &idx));
    __atomic_fetch_or(ptr(a->seen), 1L << idx, __ATOMIC_RELAXED);
  }
}

static int bar_worker(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  bararg a;
  memcpy(&a, arg, sizeof a);
  bar_rounds(&a);
  return 0;
}
MPX_TASK(bar_worker);

static void *bar_thread(void *p) {
  bar_rounds(p);
  return NULL;
}

static void *bar_waiter(void *p) { return (void *)(long)mpx_barrier_wait(p, -1, NULL); }

/* Wait (up to 10 s) until `n` parties wait at the barrier. */
static void until_waiting(mpx_barrier *b, unsigned n) {
  unsigned w = 0;
  for (int i = 0; i < 1000; i++) {
    CHECK_OK(mpx_barrier_n_waiting(b, &w));
    if (w == n) return;
    nap(0.01);
  }
  CHECK(w == n);
}

static void test_barrier(void) {
  mpx_barrier *b;
  mpx_value *seen;
  CHECK_RC(mpx_barrier_create(&b, 0), MPX_EINVAL);
  CHECK_OK(mpx_barrier_create(&b, 3));
  CHECK_OK(mpx_value_create(&seen, sizeof(long), NULL, false));
  unsigned parties, n;
  CHECK_OK(mpx_barrier_parties(b, &parties));
  CHECK(parties == 3);
  bararg a = {b, seen, 50};
  /* three threads, 50 rounds */
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, bar_thread, &a);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  CHECK(*ptr(seen) == 7); /* indexes 0, 1, 2 */
  if (forks) {            /* two processes and this one */
    *ptr(seen) = 0;
    mpx_process *p[2];
    for (int i = 0; i < 2; i++) {
      CHECK_OK(mpx_process_create(&p[i], "bar_worker", &a, sizeof a, NULL));
      CHECK_OK(mpx_process_start(p[i]));
    }
    bar_rounds(&a);
    for (int i = 0; i < 2; i++) {
      int code;
      CHECK_OK(mpx_process_join(p[i], 20));
      CHECK_OK(mpx_process_exitcode(p[i], &code));
      CHECK(code == 0);
      mpx_process_destroy(p[i]);
    }
    CHECK(*ptr(seen) == 7);
  }
  /* a timeout breaks it for the others */
  pthread_create(&t[0], NULL, bar_waiter, b);
  until_waiting(b, 1);
  CHECK_OK(mpx_barrier_n_waiting(b, &n));
  CHECK(n == 1);
  CHECK_RC(mpx_barrier_wait(b, 0.05, NULL), MPX_ETIMEDOUT);
  void *r;
  pthread_join(t[0], &r);
  CHECK((long)r == MPX_EBROKEN);
  CHECK(mpx_barrier_broken(b) == 1);
  CHECK_RC(mpx_barrier_wait(b, -1, NULL), MPX_EBROKEN);
  CHECK_OK(mpx_barrier_reset(b));
  CHECK(mpx_barrier_broken(b) == 0);
  /* reset while one waits: it gets EBROKEN, the barrier works again */
  pthread_create(&t[0], NULL, bar_waiter, b);
  until_waiting(b, 1);
  CHECK_OK(mpx_barrier_reset(b));
  pthread_join(t[0], &r);
  CHECK((long)r == MPX_EBROKEN);
  CHECK(mpx_barrier_broken(b) == 0);
  /* abort */
  pthread_create(&t[0], NULL, bar_waiter, b);
  until_waiting(b, 1);
  CHECK_OK(mpx_barrier_abort(b));
  pthread_join(t[0], &r);
  CHECK((long)r == MPX_EBROKEN);
  CHECK_OK(mpx_barrier_reset(b));
  CHECK_RC(mpx_barrier_wait(b, 0, NULL), MPX_ETIMEDOUT); /* zero timeout: can't wait */
  mpx_barrier_destroy(b);
  mpx_value_destroy(seen);
}

static void test_bad_input(void) {
  CHECK_RC(mpx_lock_create(NULL), MPX_EINVAL);
  CHECK_RC(mpx_lock_acquire(NULL, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_lock_release(NULL), MPX_EINVAL);
  CHECK_RC(mpx_rlock_acquire(NULL, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_semaphore_acquire(NULL, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_semaphore_release(NULL), MPX_EINVAL);
  CHECK_RC(mpx_event_wait(NULL, 0), MPX_EINVAL);
  CHECK(mpx_event_is_set(NULL) == MPX_EINVAL);
  CHECK_RC(mpx_condition_wait(NULL, 0), MPX_EINVAL);
  CHECK_RC(mpx_condition_notify(NULL, 1), MPX_EINVAL);
  CHECK_RC(mpx_barrier_wait(NULL, 0, NULL), MPX_EINVAL);
  mpx_lock *l;
  mpx_event *e;
  CHECK_OK(mpx_lock_create(&l));
  CHECK_OK(mpx_event_create(&e));
  /* a handle of the wrong kind */
  CHECK_RC(mpx_rlock_acquire((mpx_rlock *)l, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_event_set((mpx_event *)l), MPX_EINVAL);
  CHECK_RC(mpx_lock_acquire((mpx_lock *)e, true, -1), MPX_EINVAL);
  mpx_condition *c;
  CHECK_RC(mpx_condition_create(&c, (mpx_lock *)e), MPX_EINVAL);
  mpx_lock_destroy(l);
  mpx_event_destroy(e);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  forks = !NO_FORK;
  objs o = {0};
  CHECK_OK(mpx_lock_create(&o.lock));
  CHECK_OK(mpx_rlock_create(&o.rlock));
  CHECK_OK(mpx_semaphore_create(&o.sem, 1, true));
  CHECK_OK(mpx_event_create(&o.ev));
  CHECK_OK(mpx_condition_create(&o.cond, NULL));
  CHECK_OK(mpx_value_create(&o.counter, sizeof(long), NULL, false));
  CHECK_OK(mpx_value_create(&o.inside, sizeof(long), NULL, false));
  test_bad_input();
  test_locks(&o);
  test_semaphores();
  test_event(&o);
  test_condition(&o);
  test_barrier();
  mpx_lock_destroy(o.lock);
  mpx_rlock_destroy(o.rlock);
  mpx_semaphore_destroy(o.sem);
  mpx_event_destroy(o.ev);
  mpx_condition_destroy(o.cond);
  mpx_value_destroy(o.counter);
  mpx_value_destroy(o.inside);
  printf("ipc_sync_test: ok\n");
  return mpx_finalize();
}
