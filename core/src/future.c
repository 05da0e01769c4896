/* future.c: the future state machine, waiting on one future, done-callbacks, references (wait()
 * and as_completed are in wait.c).
 *
 * The state word holds the state and two flags. Completion is one CAS on it (acq_rel: the result
 * fields written before it are visible to whoever sees the new state); then sleepers are woken
 * with a private futex if the WAITERS flag was set, and the callback list runs if the CALLBACKS
 * flag was set. Callback lists are guarded by one of 64 striped mutexes (cold path only), and
 * callbacks always run after that mutex is released. Each user callback holds a user reference
 * from mpx_future_add_done_callback until it has returned, so that a callback can read its
 * future after the submitter released it (fire and forget): the handle dies with that reference.
 * The hot path (submit, run, result, release) takes no lock and, thanks to a per-thread cache of
 * freed futures, usually no malloc. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "future_impl.h"
#include "os/seg.h"
#include "os/clock.h"
#include "os/cpu.h"
#include "os/futex.h"
#include "os/log.h"
#include "progress.h"
#include "task_impl.h"
#include "vchunk.h"

_Static_assert(sizeof(struct mpx_future) <= 128, "a future must stay within 128 bytes");

_Thread_local const void *mpx__tl_transport;
_Thread_local int mpx__tl_callbacks;

static pthread_mutex_t stripes[64] = {[0 ... 63] = PTHREAD_MUTEX_INITIALIZER};
static _Atomic long callback_failures;

static pthread_mutex_t *stripe_of(const mpx_future *f) {
  return &stripes[((uintptr_t)f >> 7) & 63];
}

/* ---- allocation: slabs, per-thread magazines and a shared depot ---------------------------
 * Futures are carved from 32 KiB slabs and recycled, never returned to malloc (Bonwick's
 * magazines): each thread keeps two arrays of free futures and trades whole full or empty arrays
 * with a mutex-protected depot, so the hot path touches only its own arrays, and an array (unlike
 * a linked list) lets the next future be prefetched before it is needed. The memory kept is the
 * peak number of futures alive at once times 128 bytes. */

enum { SLAB_FIRST = 256, SLAB_MAX = 16384, MAG = 1024 };
#define HUGE_PAGE ((size_t)2 << 20)

typedef struct magazine {
  struct magazine *next;
  size_t n;
  mpx_future *f[MAG];
} magazine;

typedef struct fcache {
  magazine *loaded, *spare;
  bool keyed;
} fcache;

/* initial-exec: a direct %fs access instead of a __tls_get_addr call on every submit */
static _Thread_local fcache cache __attribute__((tls_model("initial-exec")));
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static struct {
  pthread_mutex_t lock;
  magazine *full, *empty;
  size_t slab; /* futures in the next slab: doubles up to SLAB_MAX (2 MiB, one huge page) */
} depot = {.lock = PTHREAD_MUTEX_INITIALIZER, .slab = SLAB_FIRST};

static void depot_push(magazine **list, magazine *m) {
  pthread_mutex_lock(&depot.lock);
  m->next = *list;
  *list = m;
  pthread_mutex_unlock(&depot.lock);
}

static magazine *depot_pop(magazine **list) {
  pthread_mutex_lock(&depot.lock);
  magazine *m = *list;
  if (m) *list = m->next;
  pthread_mutex_unlock(&depot.lock);
  return m;
}

/* At thread exit the thread's magazines go to the depot, for other threads. */
static void cache_retire(void *p) {
  fcache *c = p;
  magazine *ms[2] = {c->loaded, c->spare};
  for (int i = 0; i < 2; i++)
    if (ms[i]) depot_push(ms[i]->n ? &depot.full : &depot.empty, ms[i]);
  c->loaded = c->spare = NULL;
}
static void cache_key_make(void) { (void)pthread_key_create(&cache_key, cache_retire); }

/* Give this thread its two magazines (registered to be handed back at thread exit). */
static bool cache_setup(void) {
  if (cache.loaded) return true;
  if (!cache.keyed) {
    pthread_once(&cache_once, cache_key_make);
    pthread_setspecific(cache_key, &cache);
    cache.keyed = true;
  }
  for (magazine **m = &cache.loaded; m <= &cache.spare; m++) {
    if (*m) continue;
    if (!(*m = depot_pop(&depot.empty)) && !(*m = malloc(sizeof **m))) return false;
    (*m)->n = 0;
  }
  return true;
}

/* Fill the empty magazine `m` from a new slab; what does not fit goes to the depot as full
 * magazines. Slabs grow so that a program with many futures in flight takes few page faults:
 * a 2 MiB slab is one transparent huge page. */
static bool new_slab(magazine *m) {
  pthread_mutex_lock(&depot.lock);
  size_t n = depot.slab;
  if (depot.slab < SLAB_MAX) depot.slab *= 2;
  pthread_mutex_unlock(&depot.lock);
  size_t bytes = n * sizeof(mpx_future);
  mpx_future *slab = aligned_alloc(bytes >= HUGE_PAGE ? HUGE_PAGE : 64, bytes);
  if (!slab) return false;
  if (bytes >= HUGE_PAGE) (void)madvise(slab, bytes, MADV_HUGEPAGE); /* a hint; fine if refused */
  size_t i = n;
  while (i) { /* popped in address order */
    magazine *into = m->n < MAG ? m : NULL;
    if (!into) {
      if (!(into = depot_pop(&depot.empty)) && !(into = malloc(sizeof *into))) break;
      into->n = 0;
    }
    while (i && into->n < MAG) {
      atomic_init(&slab[i - 1].magic, MPX__FUT_DEAD);
      into->f[into->n++] = &slab[--i];
    }
    if (into != m) depot_push(&depot.full, into);
  }
  return m->n > 0; /* futures left without a magazine (no memory for one) stay unused */
}

/* The loaded magazine is empty: swap in the spare, a full one from the depot, or a new slab. */
static bool refill(void) {
  if (!cache_setup()) return false;
  magazine *m = cache.loaded;
  if (cache.spare->n) {
    cache.loaded = cache.spare;
    cache.spare = m;
    return true;
  }
  magazine *full = depot_pop(&depot.full);
  if (full) {
    depot_push(&depot.empty, m);
    cache.loaded = full;
    return true;
  }
  return new_slab(m);
}

static mpx_future *future_alloc(void) {
  if ((!cache.loaded || !cache.loaded->n) && !refill()) return NULL;
  magazine *m = cache.loaded;
  mpx_future *f = m->f[--m->n];
  if (m->n) { /* the next future is likely cold: start owning its lines now */
    __builtin_prefetch(m->f[m->n - 1], 1);
    __builtin_prefetch((char *)m->f[m->n - 1] + 64, 1);
  }
  return f;
}

static void future_recycle(mpx_future *f) {
  if (!cache.loaded || cache.loaded->n == MAG) {
    if (!cache_setup()) return; /* no memory for a magazine: keep f out of circulation */
    if (cache.loaded->n == MAG) {
      if (cache.spare->n == MAG) { /* both full: the spare goes to the depot */
        magazine *e = depot_pop(&depot.empty);
        if (!e && !(e = malloc(sizeof *e))) return;
        e->n = 0;
        depot_push(&depot.full, cache.spare);
        cache.spare = e;
      }
      magazine *m = cache.loaded;
      cache.loaded = cache.spare;
      cache.spare = m;
    }
  }
  cache.loaded->f[cache.loaded->n++] = f;
}

static void future_free(mpx_future *f) {
  uint32_t flags = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (flags & MPX__F_RES_MAPPED) mpx__seg_unmap(f->res, f->res_len);
  else if (f->res != f->res_small) mpx__seg_pool_free(f->res, f->res_len); /* or the heap */
  free(f->errmsg);
  if (flags & MPX__F_ARG_OWNED) mpx__seg_pool_free((void *)f->arg, f->arg_len); /* pool or heap */
  /* a chunk of a map with a timeout: let go of the map's private block (the last one frees it) */
  if (flags & MPX__F_MAP_PRIV)
    mpx__map_private_unref(((mpx__map_chunk *)f->owner)->priv);
  atomic_store_explicit(&f->magic, MPX__FUT_DEAD, memory_order_relaxed);
  future_recycle(f);
}

mpx_future *mpx__future_new(const mpx_task *t, const void *arg, size_t len, int arg_mode) {
  void *copy = NULL;
  if (len > MPX_INLINE_ARG && arg_mode == MPX__ARG_COPY) {
    /* malloc: glibc serves it from this thread's cache and arena, and takes it back there; a
     * big one comes warm from the result pool (os/seg.h), not fresh from an mmap */
    if (!(copy = mpx__seg_pool_alloc(len))) return NULL;
    memcpy(copy, arg, len);
  }
  mpx_future *f = future_alloc();
  if (!f) {
    mpx__seg_pool_free(copy, len);
    return NULL;
  }
  uint32_t flags = 0;
  f->arg = arg;
  if (len <= MPX_INLINE_ARG) {
    if (len) memcpy(f->arg_small, arg, len);
    f->arg = f->arg_small;
    if (arg_mode == MPX__ARG_ADOPT) free((void *)arg);
  } else if (arg_mode == MPX__ARG_ADOPT) {
    flags |= MPX__F_ARG_OWNED;
  } else if (copy) {
    f->arg = copy;
    flags |= MPX__F_ARG_OWNED;
  }
  atomic_init(&f->state, MPX_PENDING | flags);
  atomic_init(&f->refs, MPX__REF_USER + MPX__REF_INTERNAL);
  atomic_init(&f->magic, MPX__FUT_MAGIC);
  f->error = 0;
  f->task = t;
  f->arg_len = len;
  f->res = f->res_small;
  f->res_len = 0;
  f->errmsg = NULL;
  f->cbs = NULL;
  f->next = NULL;
  f->owner = NULL;
  if (!len) atomic_init(&f->chunk_claim, 0); /* a map chunk's future is made with no argument */
  f->retries = -1;
  f->worker = -1;
  f->timeout = 0;
  return f;
}

int mpx__future_check(const mpx_future *f) {
  if (!f) return MPX_EINVAL;
  uint32_t m = atomic_load_explicit(&((mpx_future *)f)->magic, memory_order_relaxed);
  if (m == MPX__FUT_MAGIC) return MPX_OK;
  return m == MPX__FUT_DEAD ? MPX_ERELEASED : MPX_EINVAL;
}

/* ---- completion ------------------------------------------------------------------------ */

static void unref(mpx_future *f, uint32_t unit);

static void run_callbacks(mpx_future *f) {
  pthread_mutex_t *m = stripe_of(f);
  pthread_mutex_lock(m);
  struct mpx__cb *cb = f->cbs;
  f->cbs = NULL;
  pthread_mutex_unlock(m);
  while (cb) { /* in the order added, outside the lock */
    struct mpx__cb *next = cb->next;
    bool heap = cb->heap;
    mpx__tl_callbacks++;
    int rc = cb->fn(f, cb->arg);
    mpx__tl_callbacks--;
    if (rc < 0) {
      atomic_fetch_add_explicit(&callback_failures, 1, memory_order_relaxed);
      if (heap) mpx__log(MPX_LOG_WARN, "a done-callback failed");
    }
    if (heap) {
      free(cb);
      /* the user reference mpx_future_add_done_callback took for this callback; never the last
       * reference (whoever completes f holds one until we return) */
      unref(f, MPX__REF_USER);
    }
    cb = next;
  }
}

#define BIT(st) (1u << (st))

/* Move from one of the states in the bit set `from` to `to`; false if the state was another. */
static bool transition_any(mpx_future *f, uint32_t from, uint32_t to) {
  uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
  do {
    if (!(BIT(s & MPX__ST_MASK) & from)) return false;
    /* acq_rel: publishes the result written before, and orders the flag reads below */
  } while (!atomic_compare_exchange_weak_explicit(&f->state, &s, (s & ~MPX__ST_MASK) | to,
                                                  memory_order_acq_rel, memory_order_relaxed));
  if (mpx__state_done(to)) {
    if (s & MPX__F_WAITERS) mpx__futex_wake_private(&f->state, INT_MAX);
    if (s & MPX__F_CALLBACKS) run_callbacks(f);
  }
  return true;
}

static bool transition(mpx_future *f, uint32_t from, uint32_t to) {
  return transition_any(f, BIT(from), to);
}

bool mpx__future_start(mpx_future *f) { return transition(f, MPX_PENDING, MPX_RUNNING); }
bool mpx__future_cancel(mpx_future *f) {
  return transition_any(f, BIT(MPX_PENDING) | BIT(MPX__SENT), MPX_CANCELLED);
}
bool mpx__future_requeue(mpx_future *f) {
  return transition_any(f, BIT(MPX_RUNNING) | BIT(MPX__SENT), MPX_PENDING);
}
bool mpx__future_started(mpx_future *f) { return transition(f, MPX__SENT, MPX_RUNNING); }

bool mpx__future_send(mpx_future *f, _Atomic uint64_t *word) {
  /* relaxed: the CAS to SENT below (acq_rel) publishes it to whoever sees SENT */
  atomic_store_explicit(mpx__future_claim(f), (uintptr_t)word, memory_order_relaxed);
  return transition(f, MPX_PENDING, MPX__SENT);
}

/* The claim word of a SENT future (acquire: pairs with the CAS that published SENT). */
static _Atomic uint64_t *claim_word(mpx_future *f) {
  return (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_acquire);
}

/* Started or finished, failed (from running, or sent and never claimed, or still pending). */
#define LIVE (BIT(MPX_RUNNING) | BIT(MPX__SENT) | BIT(MPX_PENDING))

void mpx__future_fail(mpx_future *f, int code, char *message) {
  f->error = code < 0 ? code : MPX_ETASK;
  free(f->errmsg);
  f->errmsg = message;
  transition_any(f, LIVE, MPX_FAILED);
}

static int set_result(mpx_future *f, const void *data, size_t len) {
  if (len <= MPX__RES_SMALL) {
    if (len) memcpy(f->res_small, data, len);
    f->res = f->res_small;
  } else {
    void *p = malloc(len);
    if (!p) return MPX_ENOMEM;
    memcpy(p, data, len);
    f->res = p;
  }
  f->res_len = len;
  return MPX_OK;
}

void mpx__future_finish_mapped(mpx_future *f, const void *data, size_t len) {
  f->res = (void *)data;
  f->res_len = len;
  atomic_fetch_or_explicit(&f->state, MPX__F_RES_MAPPED, memory_order_relaxed);
  /* SENT: a worker with a progress page claimed it, and the dispatcher has not looked yet */
  transition_any(f, BIT(MPX_RUNNING) | BIT(MPX__SENT), MPX_FINISHED);
}

void mpx__future_finish_adopt(mpx_future *f, void *data, size_t len) {
  f->res = data;
  f->res_len = len;
  transition_any(f, BIT(MPX_RUNNING) | BIT(MPX__SENT), MPX_FINISHED); /* SENT: as above */
}

void mpx__future_finish_copy(mpx_future *f, const void *data, size_t len) {
  if (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK) {
    mpx__map_chunk *c = f->owner;
    if (c->var) { /* per-item records from a worker: checked, then kept */
      if (mpx__vres_parse(data, len, c->count, NULL, &c->vres)) {
        mpx__future_fail(f, MPX_EPROTO, mpx__strdupf("map chunk of %zu items came back with "
                                                     "%zu bytes of malformed results",
                                                     c->count, len));
        return;
      }
      c->vres->worker = f->worker;
    } else if (len != c->count * c->result_size) {
      mpx__future_fail(f, MPX_EPROTO, mpx__strdupf("map chunk came back with %zu bytes, not %zu",
                                                   len, c->count * c->result_size));
      return;
    } else if (len) {
      memcpy(c->results, data, len);
    }
  } else {
    int rc = set_result(f, data, len);
    if (rc) {
      mpx__future_fail(f, rc, mpx__strdupf("no memory for a %zu-byte result", len));
      return;
    }
  }
  transition_any(f, BIT(MPX_RUNNING) | BIT(MPX__SENT), MPX_FINISHED);
}

/* A runner ran f on this thread and set its result (future_run.c): RUNNING -> FINISHED. */
void mpx__future_ran(mpx_future *f) { transition(f, MPX_RUNNING, MPX_FINISHED); }

/* Drop `unit` (a user or an internal reference); free the future with the last one. */
static void unref(mpx_future *f, uint32_t unit) {
  /* Ours is the only reference left: nobody else can take one (that needs a reference), so no
   * read-modify-write is needed. acquire: the other holders' work happens-before the free. */
  if (atomic_load_explicit(&f->refs, memory_order_acquire) == unit) {
    if (unit == MPX__REF_USER) atomic_store_explicit(&f->magic, MPX__FUT_DEAD, memory_order_relaxed);
    atomic_store_explicit(&f->refs, 0, memory_order_relaxed);
    future_free(f);
    return;
  }
  /* acq_rel: our reads and writes happen-before the free by whoever drops the last reference
   * (an acquire fence would do, but ThreadSanitizer does not model fences) */
  uint32_t old = atomic_fetch_sub_explicit(&f->refs, unit, memory_order_acq_rel);
  if (unit == MPX__REF_USER && old >> 16 == 1) /* the user's last: the handle is dead now */
    atomic_store_explicit(&f->magic, MPX__FUT_DEAD, memory_order_relaxed);
  if (old == unit) future_free(f);
}

void mpx__future_hold(mpx_future *f) {
  atomic_fetch_add_explicit(&f->refs, MPX__REF_INTERNAL, memory_order_relaxed);
}

void mpx__future_drop(mpx_future *f) { unref(f, MPX__REF_INTERNAL); }

/* ---- waiting ------------------------------------------------------------------------------ */

struct timespec mpx__timespec_of(double s) {
  if (s < 0) s = 0;
  struct timespec ts = {.tv_sec = (time_t)s};
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  return ts;
}

/* Seconds a waiter yields its core before it sleeps (see wait_done). */
#define YIELD_S 50e-6

/* Wait until done or `timeout` passes: 0 or MPX_ETIMEDOUT. */
static int wait_done(mpx_future *f, double timeout) {
  uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
  /* Spinning first saves the sleep and wake-up when the result is microseconds away; but where
   * the transport's own threads poll (MPI), a spinning waiter takes the core they need. */
  int spins = s & MPX__F_BRIEF_SPIN ? 100 : 2000;
  for (int spin = 0; spin < spins && !mpx__state_done(s); spin++) {
    mpx__cpu_relax();
    s = atomic_load_explicit(&f->state, memory_order_acquire);
  }
  if (mpx__state_done(s)) return MPX_OK;
  if (timeout == 0) return MPX_ETIMEDOUT;
  double deadline = timeout > 0 ? mpx__now() + timeout : 0;
  if (!(s & MPX__F_BRIEF_SPIN)) {
    /* Then yield for a while: when workers outnumber free cores, the one that will complete f
     * may be waiting for this very core, and a yield hands it over without the futex sleep and
     * wake-up (a few microseconds each in a VM). With nothing else runnable it is a short spin. */
    double until = mpx__now() + YIELD_S;
    if (deadline && deadline < until) until = deadline;
    for (int i = 1; !mpx__state_done(s); i++) {
      sched_yield();
      s = atomic_load_explicit(&f->state, memory_order_acquire);
      if ((i & 7) == 0 && mpx__now() >= until) break;
    }
    if (mpx__state_done(s)) return MPX_OK;
  }
  for (;;) {
    s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (mpx__state_done(s)) return MPX_OK;
    if (!(s & MPX__F_WAITERS)) {
      /* relaxed is enough: the futex syscall re-reads the word and completion's CAS is acq_rel */
      if (!atomic_compare_exchange_weak_explicit(&f->state, &s, s | MPX__F_WAITERS,
                                                 memory_order_relaxed, memory_order_relaxed))
        continue;
      s |= MPX__F_WAITERS;
    }
    struct timespec ts, *tsp = NULL;
    if (timeout > 0) {
      double left = deadline - mpx__now();
      if (left <= 0) return MPX_ETIMEDOUT;
      ts = mpx__timespec_of(left);
      tsp = &ts;
    }
    mpx__futex_wait_private(&f->state, s, tsp);
  }
}

/* A wait's timeout: NaN is refused (MPX_EINVAL); +infinity waits without limit, as MPX_FOREVER. */
int mpx__wait_timeout(double *timeout) {
  if (isnan(*timeout)) {
    mpx__set_errmsg("timeout is NaN (MPX_FOREVER or any negative number waits without limit)");
    return MPX_EINVAL;
  }
  if (isinf(*timeout)) *timeout = MPX_FOREVER;
  return MPX_OK;
}

static int outcome(const mpx_future *f) {
  uint32_t s = mpx__future_state(f);
  if (s == MPX_CANCELLED) return MPX_ECANCELLED;
  if (s == MPX_FAILED) return f->error;
  return MPX_OK;
}

int mpx_future_result(mpx_future *f, double timeout, const void **data, size_t *len) {
  int rc = mpx__future_check(f);
  if (rc) return rc;
  if ((rc = mpx__wait_timeout(&timeout)) || (rc = wait_done(f, timeout))) return rc;
  if ((rc = outcome(f))) return rc;
  if (data) *data = f->res_len ? f->res : NULL;
  if (len) *len = f->res_len;
  return MPX_OK;
}

int mpx_future_result_copy(mpx_future *f, void *dst, size_t size, double timeout) {
  if (!dst && size) return MPX_EINVAL;
  const void *p;
  size_t n;
  int rc = mpx_future_result(f, timeout, &p, &n);
  if (rc) return rc;
  if (n != size) return MPX_ESIZE;
  if (n) memcpy(dst, p, n);
  return MPX_OK;
}

int mpx_future_exception(mpx_future *f, double timeout, int *code, const char **message) {
  int rc = mpx__future_check(f);
  if (rc) return rc;
  if ((rc = mpx__wait_timeout(&timeout)) || (rc = wait_done(f, timeout))) return rc;
  if (mpx__future_state(f) == MPX_CANCELLED) return MPX_ECANCELLED;
  int c = outcome(f);
  if (code) *code = c;
  if (message) *message = c == 0 ? "" : (f->errmsg ? f->errmsg : mpx_strerror(c));
  return MPX_OK;
}

/* The state the user sees: SENT reads PENDING until the worker claims the task. */
static int user_state(const mpx_future *f) {
  uint32_t s = mpx__future_state(f);
  if (s != MPX__SENT) return (int)s;
  _Atomic uint64_t *w = claim_word((mpx_future *)f);
  /* relaxed: a hint, as Python's running() is; the worker's claim happened or not */
  return w && atomic_load_explicit(w, memory_order_relaxed) == MPX__CLAIM_STARTED ? MPX_RUNNING
                                                                                  : MPX_PENDING;
}

int mpx_future_state_get(const mpx_future *f) {
  int rc = mpx__future_check(f);
  return rc ? rc : user_state(f);
}

int mpx_future_done(const mpx_future *f) {
  int s = mpx_future_state_get(f);
  return s < 0 ? s : s >= MPX_FINISHED;
}

int mpx_future_running(const mpx_future *f) {
  int s = mpx_future_state_get(f);
  return s < 0 ? s : s == MPX_RUNNING;
}

int mpx_future_cancelled(const mpx_future *f) {
  int s = mpx_future_state_get(f);
  return s < 0 ? s : s == MPX_CANCELLED;
}

/* Cancel: a PENDING future by its state word; a SENT one by winning its claim word first, so
 * that the worker skips it (see future_impl.h). While the dispatcher moves a future (it won the
 * word, TAKEN, and is about to make it PENDING) or is still packing its batch (the word gets the
 * future's id once the arguments are copied out) the word reads TAKEN: look again. A word that
 * reads anything else while the future is still SENT there belongs to the worker (STARTED, or
 * a value its own task wrote): the task counts as running. */
_Atomic uint64_t mpx__stop_asked;

/* Too late to cancel (as Python), but the task is asked to stop (mpx_task_should_stop).
 * relaxed: a flag the task polls; nothing is published with it */
static int ask_stop(mpx_future *f) {
  atomic_fetch_or_explicit(&f->state, MPX__F_STOP, memory_order_relaxed);
  atomic_fetch_add_explicit(&mpx__stop_asked, 1, memory_order_relaxed);
  mpx__stop_watch_ring(); /* MPI dispatchers forward it now (stop.c) */
  return MPX_ESTATE;
}

int mpx_future_cancel(mpx_future *f) {
  int rc = mpx__future_check(f);
  if (rc) return rc;
  const uint64_t id = (uint64_t)(uintptr_t)f;
  double give_up = 0;
  for (;;) {
    uint32_t s = mpx__future_state(f);
    if (s == MPX_CANCELLED) return MPX_OK;
    if (s == MPX_RUNNING) return ask_stop(f);
    if (s == MPX_PENDING) {
      if (transition(f, MPX_PENDING, MPX_CANCELLED)) return MPX_OK; /* never SENT: see above */
      continue;
    }
    if (s != MPX__SENT) return MPX_ESTATE;
    if (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_REMOTE) {
      if ((rc = mpx__disp_cancel_remote(f)) > 0) continue; /* its rank decides */
      _Atomic uint64_t *w = claim_word(f); /* started there: asked to stop, as RUNNING */
      if (rc == MPX_ESTATE && mpx__future_state(f) == MPX__SENT && w &&
          atomic_load_explicit(w, memory_order_acquire) == MPX__CLAIM_STARTED)
        return ask_stop(f);
      return rc;
    }
    _Atomic uint64_t *w = claim_word(f);
    uint64_t v = id;
    /* acq_rel: the worker's later CAS fails and skips the task; our state change comes after */
    if (w && atomic_compare_exchange_strong_explicit(w, &v, MPX__CLAIM_TAKEN, memory_order_acq_rel,
                                                     memory_order_acquire)) {
      /* ours: nobody else moves a SENT future whose word they did not win */
      transition_any(f, BIT(MPX__SENT) | BIT(MPX_PENDING), MPX_CANCELLED);
      return MPX_OK;
    }
    if (mpx__future_state(f) != MPX__SENT || claim_word(f) != w) continue; /* it moved */
    if (v == MPX__CLAIM_STARTED) {
      /* running in a worker process: ask it to stop through its page (progress.h), found from
       * the claim word's address. The worker clears `stop` before it claims each task, and we saw
       * this task's claim, so the request can only reach this task. relaxed: a polled flag */
      atomic_store_explicit(&mpx__progress_of(w)->stop, id, memory_order_relaxed);
      return MPX_ESTATE;
    }
    if (v != MPX__CLAIM_TAKEN) return MPX_ESTATE;
    if (!give_up) give_up = mpx__now() + 0.05;
    if (mpx__now() > give_up) return MPX_ESTATE; /* a worker wrote TAKEN there itself */
    sched_yield();
  }
}

/* Add `cb` to the list, or return false if the future is already done (caller runs it). */
bool mpx__future_add_cb(mpx_future *f, struct mpx__cb *cb) {
  pthread_mutex_t *m = stripe_of(f);
  pthread_mutex_lock(m);
  uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
  bool added = false;
  while (!mpx__state_done(s)) {
    /* acq_rel: a completer that sees the flag will take this lock and find the node */
    if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | MPX__F_CALLBACKS,
                                              memory_order_acq_rel, memory_order_acquire)) {
      struct mpx__cb **tail = &f->cbs;
      while (*tail) tail = &(*tail)->next;
      cb->next = NULL;
      *tail = cb;
      added = true;
      break;
    }
  }
  pthread_mutex_unlock(m);
  return added;
}

/* Take `cb` off the list if it is still there (not yet detached by completion). */
bool mpx__future_remove_cb(mpx_future *f, struct mpx__cb *cb) {
  pthread_mutex_t *m = stripe_of(f);
  pthread_mutex_lock(m);
  bool found = false;
  for (struct mpx__cb **p = &f->cbs; *p; p = &(*p)->next) {
    if (*p == cb) {
      *p = cb->next;
      found = true;
      break;
    }
  }
  pthread_mutex_unlock(m);
  return found;
}

int mpx_future_add_done_callback(mpx_future *f, mpx_done_fn fn, void *arg) {
  int rc = mpx__future_check(f);
  if (rc) return rc;
  if (!fn) return MPX_EINVAL;
  struct mpx__cb *cb = malloc(sizeof *cb);
  if (!cb) return MPX_ENOMEM;
  if (atomic_load_explicit(&f->refs, memory_order_relaxed) >> 16 == 0xffff) {
    free(cb);
    return MPX_ENOMEM;
  }
  /* A user reference for the callback, dropped after it ran: the handle stays valid inside the
   * callback even if every user reference was released before f completed (fire and forget).
   * relaxed: the caller already holds a reference. */
  atomic_fetch_add_explicit(&f->refs, MPX__REF_USER, memory_order_relaxed);
  *cb = (struct mpx__cb){.fn = fn, .arg = arg, .heap = true};
  if (mpx__future_add_cb(f, cb)) return MPX_OK;
  free(cb);
  unref(f, MPX__REF_USER); /* done already: it runs now, under the caller's reference */
  mpx__tl_callbacks++;
  rc = fn(f, arg);
  mpx__tl_callbacks--;
  if (rc < 0) {
    atomic_fetch_add_explicit(&callback_failures, 1, memory_order_relaxed);
    mpx__log(MPX_LOG_WARN, "a done-callback failed");
    return MPX_ECALLBACK;
  }
  return MPX_OK;
}

long mpx_future_callback_failures(void) {
  return atomic_load_explicit(&callback_failures, memory_order_relaxed);
}

int mpx_future_retain(mpx_future *f) {
  int rc = mpx__future_check(f);
  if (rc) return rc;
  if (atomic_load_explicit(&f->refs, memory_order_relaxed) >> 16 == 0xffff) return MPX_ENOMEM;
  /* relaxed: the caller already holds a reference */
  atomic_fetch_add_explicit(&f->refs, MPX__REF_USER, memory_order_relaxed);
  return MPX_OK;
}

int mpx_future_release(mpx_future *f) {
  int rc = mpx__future_check(f);
  if (rc) return rc;
  unref(f, MPX__REF_USER);
  return MPX_OK;
}
