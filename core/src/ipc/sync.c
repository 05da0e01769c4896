/* sync.c: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier in shared
 * memory (see ipc_sync.h).
 *
 * Lock and RLock are robust process-shared pthread mutexes (error-checking and recursive). The
 * others are futex words with waiter counts:
 *  - Semaphore: `value` is the futex word. acquire = CAS value -> value-1 when > 0, else raise
 *    `waiters` and sleep while value == 0. release = increment, then wake if waiters. The
 *    increment and the waiter load are seq_cst, as are the waiter's increment and the kernel's
 *    compare of `value` (a Dekker pair: one side always sees the other). Release wakes every
 *    sleeper: a sleeper woken by a single wake could die before taking the permit and strand it.
 *  - Event: `flag` is the futex word, same pattern.
 *  - Condition: a sequence counter; wait reads it, releases the lock, sleeps while it is
 *    unchanged; notify bumps it (under the lock) and wakes n. A waiter that read the counter just
 *    before a notify is woken by the compare; so a notify may wake more than n (spurious
 *    wake-ups, allowed).
 *  - Barrier: counters under a robust mutex, and `seq` (bumped on every trip, abort and reset)
 *    for sleeping. The outcome of the last 64 rounds (tripped or reset) is kept in a bit mask so
 *    that a slow waker learns how its round ended.
 * Internal mutexes guard only single-field updates, so after EOWNERDEAD they are consistent as
 * they stand. */
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#include "mpx/ipc_sync.h"
#include "shm.h"

/* ---- Lock / RLock --------------------------------------------------------------------------- */

struct mpx_lock {
  mpx__shm_hdr h;
  pthread_mutex_t m;
};

struct mpx_rlock {
  mpx__shm_hdr h;
  pthread_mutex_t m;
};

static int mutex_obj_create(void **out, size_t size, uint32_t magic, bool recursive) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  void *o = mpx__shm_alloc(size, magic);
  if (!o) return MPX_ENOMEM;
  int rc = mpx__mutex_init((pthread_mutex_t *)((char *)o + sizeof(mpx__shm_hdr)), recursive);
  if (rc) {
    mpx__shm_free(o);
    return rc;
  }
  *out = o;
  return MPX_OK;
}

static int acquire_mutex(pthread_mutex_t *m, bool block, double timeout) {
  struct timespec ts, *dl = mpx__deadline(block ? timeout : 0, &ts);
  return mpx__mutex_lock(m, dl);
}

int mpx_lock_create(mpx_lock **l) {
  return mutex_obj_create((void **)l, sizeof(mpx_lock), MPX__MAGIC_LOCK, false);
}
int mpx_lock_acquire(mpx_lock *l, bool block, double timeout) {
  if (!mpx__shm_check(l, MPX__MAGIC_LOCK)) return MPX_EINVAL;
  return acquire_mutex(&l->m, block, timeout);
}
int mpx_lock_release(mpx_lock *l) {
  if (!mpx__shm_check(l, MPX__MAGIC_LOCK)) return MPX_EINVAL;
  return mpx__mutex_unlock_owned(&l->m);
}
int mpx_lock_destroy(mpx_lock *l) {
  if (!mpx__shm_check(l, MPX__MAGIC_LOCK)) return MPX_EINVAL;
  mpx__shm_free(l);
  return MPX_OK;
}

int mpx_rlock_create(mpx_rlock **l) {
  return mutex_obj_create((void **)l, sizeof(mpx_rlock), MPX__MAGIC_RLOCK, true);
}
int mpx_rlock_acquire(mpx_rlock *l, bool block, double timeout) {
  if (!mpx__shm_check(l, MPX__MAGIC_RLOCK)) return MPX_EINVAL;
  return acquire_mutex(&l->m, block, timeout);
}
int mpx_rlock_release(mpx_rlock *l) {
  if (!mpx__shm_check(l, MPX__MAGIC_RLOCK)) return MPX_EINVAL;
  return mpx__mutex_unlock_owned(&l->m);
}
int mpx_rlock_destroy(mpx_rlock *l) {
  if (!mpx__shm_check(l, MPX__MAGIC_RLOCK)) return MPX_EINVAL;
  mpx__shm_free(l);
  return MPX_OK;
}

/* ---- Semaphore ------------------------------------------------------------------------------ */

struct mpx_semaphore {
  mpx__shm_hdr h;
  _Atomic uint32_t value;
  _Atomic uint32_t waiters;
  uint32_t max; /* 0: unbounded */
};

int mpx_semaphore_create(mpx_semaphore **out, unsigned value, bool bounded) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (value > INT32_MAX) return MPX_EINVAL;
  mpx_semaphore *s = mpx__shm_alloc(sizeof *s, MPX__MAGIC_SEM);
  if (!s) return MPX_ENOMEM;
  atomic_init(&s->value, value); /* before anyone else can see it */
  s->max = bounded ? value : 0;
  *out = s;
  return MPX_OK;
}

/* Take a permit if there is one. acquire on success: what the releaser did before is visible. */
static bool sem_try(mpx_semaphore *s) {
  uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed); /* the CAS checks it */
  while (v > 0)
    if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1, memory_order_acquire,
                                              memory_order_relaxed))
      return true;
  return false;
}

int mpx_semaphore_acquire(mpx_semaphore *s, bool block, double timeout) {
  if (!mpx__shm_check(s, MPX__MAGIC_SEM)) return MPX_EINVAL;
  struct timespec ts, *dl = mpx__deadline(block ? timeout : 0, &ts);
  for (;;) {
    if (sem_try(s)) return MPX_OK;
    if (dl && mpx__deadline_passed(dl)) return MPX_ETIMEDOUT;
    atomic_fetch_add_explicit(&s->waiters, 1, memory_order_seq_cst); /* Dekker with release */
    int rc = mpx__futex_wait(&s->value, 0, dl);
    atomic_fetch_sub_explicit(&s->waiters, 1, memory_order_relaxed); /* a hint for release */
    if (rc == MPX_ETIMEDOUT) return sem_try(s) ? MPX_OK : MPX_ETIMEDOUT;
  }
}

int mpx_semaphore_release(mpx_semaphore *s) {
  if (!mpx__shm_check(s, MPX__MAGIC_SEM)) return MPX_EINVAL;
  uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed); /* the CAS checks it */
  for (;;) {
    if ((s->max && v >= s->max) || v >= INT32_MAX) return MPX_ESTATE;
    /* seq_cst: release for the acquirer, and ordered before the waiters load (Dekker) */
    if (atomic_compare_exchange_weak_explicit(&s->value, &v, v + 1, memory_order_seq_cst,
                                              memory_order_relaxed))
      break;
  }
  if (atomic_load_explicit(&s->waiters, memory_order_seq_cst)) mpx__futex_wake(&s->value, INT_MAX);
  return MPX_OK;
}

int mpx_semaphore_value(const mpx_semaphore *s, unsigned *value) {
  if (!mpx__shm_check(s, MPX__MAGIC_SEM) || !value) return MPX_EINVAL;
  *value = atomic_load_explicit(&s->value, memory_order_relaxed); /* a snapshot */
  return MPX_OK;
}

int mpx_semaphore_destroy(mpx_semaphore *s) {
  if (!mpx__shm_check(s, MPX__MAGIC_SEM)) return MPX_EINVAL;
  mpx__shm_free(s);
  return MPX_OK;
}

/* ---- Event ---------------------------------------------------------------------------------- */

struct mpx_event {
  mpx__shm_hdr h;
  _Atomic uint32_t flag;
  _Atomic uint32_t waiters;
};

int mpx_event_create(mpx_event **out) {
  if (!out) return MPX_EINVAL;
  *out = mpx__shm_alloc(sizeof(mpx_event), MPX__MAGIC_EVENT);
  return *out ? MPX_OK : MPX_ENOMEM;
}

int mpx_event_set(mpx_event *e) {
  if (!mpx__shm_check(e, MPX__MAGIC_EVENT)) return MPX_EINVAL;
  /* seq_cst: release for the waiters, and ordered before the waiters load (Dekker) */
  atomic_store_explicit(&e->flag, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&e->waiters, memory_order_seq_cst)) mpx__futex_wake(&e->flag, INT_MAX);
  return MPX_OK;
}

int mpx_event_clear(mpx_event *e) {
  if (!mpx__shm_check(e, MPX__MAGIC_EVENT)) return MPX_EINVAL;
  atomic_store_explicit(&e->flag, 0, memory_order_release); /* ordered after earlier writes */
  return MPX_OK;
}

int mpx_event_is_set(const mpx_event *e) {
  if (!mpx__shm_check(e, MPX__MAGIC_EVENT)) return MPX_EINVAL;
  return (int)atomic_load_explicit(&e->flag, memory_order_acquire); /* pairs with set */
}

int mpx_event_wait(mpx_event *e, double timeout) {
  if (!mpx__shm_check(e, MPX__MAGIC_EVENT)) return MPX_EINVAL;
  struct timespec ts, *dl = mpx__deadline(timeout, &ts);
  for (;;) {
    if (atomic_load_explicit(&e->flag, memory_order_acquire)) return MPX_OK; /* pairs with set */
    if (dl && mpx__deadline_passed(dl)) return MPX_ETIMEDOUT;
    atomic_fetch_add_explicit(&e->waiters, 1, memory_order_seq_cst); /* Dekker with set */
    int rc = mpx__futex_wait(&e->flag, 0, dl);
    atomic_fetch_sub_explicit(&e->waiters, 1, memory_order_relaxed); /* a hint for set */
    if (rc == MPX_ETIMEDOUT)                                         /* acquire: pairs with set */
      return atomic_load_explicit(&e->flag, memory_order_acquire) ? MPX_OK : MPX_ETIMEDOUT;
  }
}

int mpx_event_destroy(mpx_event *e) {
  if (!mpx__shm_check(e, MPX__MAGIC_EVENT)) return MPX_EINVAL;
  mpx__shm_free(e);
  return MPX_OK;
}

/* ---- Condition ------------------------------------------------------------------------------ */

struct mpx_condition {
  mpx__shm_hdr h;
  mpx_lock *lock; /* the user's, or &own; an address in shared memory, the same after fork */
  _Atomic uint32_t seq;
  mpx_lock own;
};

int mpx_condition_create(mpx_condition **out, mpx_lock *lock) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (lock && !mpx__shm_check(lock, MPX__MAGIC_LOCK)) return MPX_EINVAL;
  mpx_condition *c = mpx__shm_alloc(sizeof *c, MPX__MAGIC_COND);
  if (!c) return MPX_ENOMEM;
  if (!lock) {
    c->own.h.magic = MPX__MAGIC_LOCK;
    c->own.h.size = 0; /* part of the condition's mapping: never unmapped on its own */
    int rc = mpx__mutex_init(&c->own.m, false);
    if (rc) {
      mpx__shm_free(c);
      return rc;
    }
    lock = &c->own;
  }
  c->lock = lock;
  *out = c;
  return MPX_OK;
}

/* The condition and, when it is over a user's Lock, that Lock too (in a pool worker each is
 * fetched from the parent on first use: share.h). Its own lock is inside its mapping. */
static bool cond_ok(const mpx_condition *c) {
  return mpx__shm_check(c, MPX__MAGIC_COND) &&
         (c->lock == &c->own || mpx__shm_check(c->lock, MPX__MAGIC_LOCK));
}

int mpx_condition_acquire(mpx_condition *c, bool block, double timeout) {
  return cond_ok(c) ? acquire_mutex(&c->lock->m, block, timeout) : MPX_EINVAL;
}

int mpx_condition_release(mpx_condition *c) {
  return cond_ok(c) ? mpx__mutex_unlock_owned(&c->lock->m) : MPX_EINVAL;
}

static bool held_by_me(pthread_mutex_t *m) { return mpx__mutex_held(m); }

int mpx_condition_wait(mpx_condition *c, double timeout) {
  if (!cond_ok(c)) return MPX_EINVAL;
  struct timespec ts, *dl = mpx__deadline(timeout, &ts);
  /* Read the counter while holding the lock: a notify after our unlock changes it. */
  uint32_t s = atomic_load_explicit(&c->seq, memory_order_acquire);
  int rc = mpx__mutex_unlock_owned(&c->lock->m);
  if (rc) return rc; /* MPX_EPERM: not held by the caller */
  int w = mpx__futex_wait(&c->seq, s, dl);
  rc = mpx__mutex_lock(&c->lock->m, NULL);
  if (rc) return rc; /* MPX_EOWNERDEAD: held again */
  return w;
}

int mpx_condition_wait_for(mpx_condition *c, bool (*pred)(void *arg), void *arg, double timeout) {
  if (!cond_ok(c) || !pred) return MPX_EINVAL;
  struct timespec ts, *dl = mpx__deadline(timeout, &ts);
  if (!held_by_me(&c->lock->m)) return MPX_EPERM;
  while (!pred(arg)) {
    double left = -1;
    if (dl) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      left = (double)(dl->tv_sec - now.tv_sec) + (dl->tv_nsec - now.tv_nsec) * 1e-9;
      if (left <= 0) return pred(arg) ? MPX_OK : MPX_ETIMEDOUT;
    }
    int rc = mpx_condition_wait(c, left);
    if (rc && rc != MPX_ETIMEDOUT && rc != MPX_EOWNERDEAD) return rc;
  }
  return MPX_OK;
}

int mpx_condition_notify(mpx_condition *c, int n) {
  if (!cond_ok(c) || n < 0) return MPX_EINVAL;
  if (!held_by_me(&c->lock->m)) return MPX_EPERM;
  /* release: a woken waiter re-takes the lock anyway; the bump itself needs no more */
  atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
  if (n > 0) mpx__futex_wake(&c->seq, n);
  return MPX_OK;
}

int mpx_condition_notify_all(mpx_condition *c) { return mpx_condition_notify(c, INT_MAX); }

int mpx_condition_destroy(mpx_condition *c) {
  if (!cond_ok(c)) return MPX_EINVAL;
  mpx__shm_free(c);
  return MPX_OK;
}

/* ---- Barrier -------------------------------------------------------------------------------- */

struct mpx_barrier {
  mpx__shm_hdr h;
  pthread_mutex_t m;
  unsigned parties;
  unsigned count; /* arrived in this round */
  uint32_t gen;   /* round number */
  uint32_t broken;
  uint64_t reset_mask; /* bit (round % 64): that round ended by reset */
  _Atomic uint32_t seq;
};

int mpx_barrier_create(mpx_barrier **out, unsigned parties) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (parties == 0) return MPX_EINVAL;
  mpx_barrier *b = mpx__shm_alloc(sizeof *b, MPX__MAGIC_BARRIER);
  if (!b) return MPX_ENOMEM;
  int rc = mpx__mutex_init(&b->m, false);
  if (rc) {
    mpx__shm_free(b);
    return rc;
  }
  b->parties = parties;
  *out = b;
  return MPX_OK;
}

static bool bar_ok(const mpx_barrier *b) { return mpx__shm_check(b, MPX__MAGIC_BARRIER); }

static void bar_lock(mpx_barrier *b) { (void)mpx__mutex_lock(&b->m, NULL); /* EOWNERDEAD: fine */ }
static void bar_unlock(mpx_barrier *b) { (void)mpx__mutex_unlock(&b->m); }

/* With the lock held: wake everyone (they re-check under the lock). */
static void bar_bump(mpx_barrier *b) {
  atomic_fetch_add_explicit(&b->seq, 1, memory_order_release); /* waiters re-check under lock */
  mpx__futex_wake(&b->seq, INT_MAX);
}

int mpx_barrier_wait(mpx_barrier *b, double timeout, unsigned *index) {
  if (!bar_ok(b)) return MPX_EINVAL;
  struct timespec ts, *dl = mpx__deadline(timeout, &ts);
  bar_lock(b);
  if (b->broken) {
    bar_unlock(b);
    return MPX_EBROKEN;
  }
  unsigned idx = b->count++;
  uint32_t mygen = b->gen;
  if (index) *index = idx;
  if (b->count == b->parties) { /* the last one in trips the round */
    b->count = 0;
    b->reset_mask &= ~(1ull << (mygen % 64));
    b->gen++;
    bar_bump(b);
    bar_unlock(b);
    return MPX_OK;
  }
  for (;;) {
    uint32_t s =
        atomic_load_explicit(&b->seq, memory_order_acquire); /* under the lock: bumps too */
    if (b->gen != mygen) {
      int rc = (b->reset_mask >> (mygen % 64)) & 1 ? MPX_EBROKEN : MPX_OK;
      bar_unlock(b);
      return rc;
    }
    if (b->broken) {
      bar_unlock(b);
      return MPX_EBROKEN;
    }
    bar_unlock(b);
    int w = mpx__futex_wait(&b->seq, s, dl);
    bar_lock(b);
    if (w == MPX_ETIMEDOUT && b->gen == mygen && !b->broken) {
      b->broken = 1; /* as Python: a party's timeout breaks the barrier for all */
      bar_bump(b);
      bar_unlock(b);
      return MPX_ETIMEDOUT;
    }
  }
}

int mpx_barrier_abort(mpx_barrier *b) {
  if (!bar_ok(b)) return MPX_EINVAL;
  bar_lock(b);
  b->broken = 1;
  bar_bump(b);
  bar_unlock(b);
  return MPX_OK;
}

int mpx_barrier_reset(mpx_barrier *b) {
  if (!bar_ok(b)) return MPX_EINVAL;
  bar_lock(b);
  if (b->count > 0 || b->broken) {
    b->reset_mask |= 1ull << (b->gen % 64);
    b->gen++;
  }
  b->count = 0;
  b->broken = 0;
  bar_bump(b);
  bar_unlock(b);
  return MPX_OK;
}

int mpx_barrier_parties(const mpx_barrier *b, unsigned *parties) {
  if (!bar_ok(b) || !parties) return MPX_EINVAL;
  *parties = b->parties;
  return MPX_OK;
}

int mpx_barrier_n_waiting(const mpx_barrier *b, unsigned *n) {
  if (!bar_ok(b) || !n) return MPX_EINVAL;
  mpx_barrier *m = (mpx_barrier *)b; /* the lock is not logical state */
  bar_lock(m);
  *n = b->broken ? 0 : b->count;
  bar_unlock(m);
  return MPX_OK;
}

int mpx_barrier_broken(const mpx_barrier *b) {
  if (!bar_ok(b)) return MPX_EINVAL;
  mpx_barrier *m = (mpx_barrier *)b;
  bar_lock(m);
  int r = b->broken != 0;
  bar_unlock(m);
  return r;
}

int mpx_barrier_destroy(mpx_barrier *b) {
  if (!bar_ok(b)) return MPX_EINVAL;
  mpx__shm_free(b);
  return MPX_OK;
}
