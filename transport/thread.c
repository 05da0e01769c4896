/* thread.c: the thread transport. Worker threads of this process run futures directly: pointers
 * pass through, nothing is encoded. It implements runner.h (the direct contract).
 *
 * Queues: every thread that submits gets its own submission queue (sq) in this executor: a
 * growable array that only it writes and workers steal from, Chase-Lev style without the owner's
 * pop, so tasks leave in the order they came. A push is two plain stores (the slot, then
 * `bottom` with release): no atomic read-modify-write, no fence, no line shared with other
 * submitters. A full array is replaced by one twice as large (old arrays stay allocated until
 * destroy, for thieves still reading them). Workers take from `top` with one CAS, a share of
 * what is queued at once (never more than 32), so backlogged queues drain in batches and short
 * ones stay balanced.
 *
 * Taken batches: a worker runs the first task it took and keeps the rest in its slot's `batch`,
 * a bounded Chase-Lev deque that it refills only when empty (from the submission queues). The
 * owner pops at `tail`, oldest first (the batch is stored reversed), with no read-modify-write
 * but for the last task; a worker that finds every submission queue empty steals one task back
 * from another worker's batch at `head` with a CAS, so no task waits behind a long one while a
 * worker is idle. A worker that keeps more than one task wakes a sleeper (see below) to come and
 * take some.
 *
 * Three races are settled with an asymmetric barrier (Linux membarrier: the rare side pays an IPI
 * so that the hot side needs only a compiler barrier; without membarrier the hot side uses a
 * seq_cst fence):
 *  - sleeping: a worker announces itself in `sleepers`, runs the heavy barrier, re-checks every
 *    queue and every other worker's batch, then sleeps on the `epoch` futex; a submitter reads
 *    `sleepers` after publishing, and so does a worker that put tasks in its batch. Either the
 *    publisher sees the sleeper (and wakes it) or the worker sees the task.
 *  - shutdown: a submitter raises its sq's `busy` flag, checks `closed`, pushes, lowers `busy`;
 *    close sets `closed`, runs the heavy barrier and waits for every `busy` flag to drop. After
 *    that no submit can add a task, and every task that got in is in a queue workers drain.
 *  - steal-back: Chase-Lev's owner stores `tail`, then reads `head`; its thief reads `head`, then
 *    `tail`; each needs a StoreLoad barrier in between. The owner, on every task, has the light
 *    one; a thief, rarely (only when a batch looks non-empty), the heavy one. Taking only one task
 *    per steal keeps Chase-Lev's argument: both can want the same task only when it is the last,
 *    and then both CAS `head`.
 * Workers exit on stop once the submission queues and every batch are empty; a worker running a
 * task keeps its batch until it runs it or others steal it.
 * With max_tasks_per_worker, a supervisor thread per slot replaces its worker thread after that
 * many tasks (fresh thread-locals, initializer run again); a worker never holds, and a thief never
 * steals, more than its own thread may still run. The worker threads are marked in
 * mpx__tl_transport, so that the executor knows a done-callback or a task calling shutdown or
 * destroy runs on one of them (see executor.c). */
#include <errno.h>
#include <limits.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "future_impl.h"
#include "os/cpu.h"
#include "os/futex.h"
#include "task_impl.h"
#include "runner.h"
#include "transports.h"

enum { SQ_FIRST = 1024, STEAL_MAX = 32, SPINS = 256, TL_CACHE = 4 };

typedef struct thread_tp thread_tp;

/* A queue's array; replaced by a larger one when full. */
typedef struct sqbuf {
  size_t cap;           /* a power of two */
  struct sqbuf *older;  /* the array this one replaced, freed at destroy */
  /* Atomic only so that a thief's speculative read of a slot the owner is reusing is not a data
   * race (the thief's CAS then fails and it drops what it read); relaxed: plain moves on x86. */
  _Atomic(mpx_future *) slot[];
} sqbuf;

/* A submitting thread's queue. `bottom`, `buf` and `busy` are written by the owner only. */
typedef struct sq {
  _Alignas(64) _Atomic size_t bottom;
  _Atomic(sqbuf *) buf;
  _Atomic int busy;             /* the owner is inside submit */
  size_t cached_top;            /* the owner's last look at top: full checks rarely read top */
  _Atomic pid_t owner;          /* tid of the owning thread, 0 when orphaned */
  struct sq *next;              /* the executor's list; append-only until destroy */
  _Alignas(64) _Atomic size_t top; /* thieves CAS it forward */
} sq;

/* A worker's taken batch: tasks it took and has not started, [head, tail), the oldest at tail - 1.
 * Only its owner writes `tail` and the items (those only when head == tail); thieves CAS `head`.
 * Items are atomic for the same reason as sqbuf's slots: a thief's stale read of an item the owner
 * is refilling is dropped when its CAS fails (head only grows, so no ABA). */
typedef struct batch {
  _Alignas(64) _Atomic size_t head;
  _Atomic size_t tail;
  _Atomic(mpx_future *) item[STEAL_MAX];
} batch;

typedef struct slot {
  batch b;                /* first: its own cache lines */
  thread_tp *tp;
  int index;
  pthread_t tid;          /* the worker, or its supervisor with max_tasks_per_worker */
  long done;              /* tasks run by the current worker thread */
  bool announced;         /* the start-up latch has heard from this slot */
} slot;

struct thread_tp {
  const mpx__config *cfg;
  uint64_t gen;           /* distinguishes transports that reuse an address (thread caches) */
  int n;
  slot *slots;
  _Atomic(sq *) sqs;
  _Atomic bool closed;    /* no more submits */
  _Atomic bool stopping;  /* workers exit once everything queued is done */
  _Atomic bool cancelling; /* cancel_futures: what a worker took but has not started is cancelled */
  _Atomic uint32_t stop_word; /* MPX__STOP_ASK / _TERMINATE: running tasks are asked to stop
                                 (mpx_task_should_stop; future_run.c gives the verdict) */
  _Alignas(64) _Atomic int sleepers;
  _Atomic uint32_t epoch;
  _Alignas(64) pthread_mutex_t lock;   /* start-up latch, stop */
  pthread_cond_t cond;
  int started, init_failed;
  _Atomic int live;       /* slots with a worker; 0 only when every replacement failed */
  char init_msg[256];
  bool joined;
};

/* ---- the asymmetric barrier ------------------------------------------------------------- */

static pthread_once_t mb_once = PTHREAD_ONCE_INIT;
static bool mb_ok; /* membarrier expedited is registered for this process */

static void mb_init(void) {
  mb_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* A full StoreLoad barrier on this thread. ThreadSanitizer does not model fences (and GCC
 * refuses them under it), so there a seq_cst read-modify-write, a full barrier on x86, stands in. */
static inline void full_fence(void) {
#if defined(__SANITIZE_THREAD__)
  static _Atomic int dummy;
  atomic_fetch_add_explicit(&dummy, 0, memory_order_seq_cst);
#else
  atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* The hot side: orders a preceding store before a following load. */
static inline void light_barrier(void) {
  if (__builtin_expect(mb_ok, 1)) atomic_signal_fence(memory_order_seq_cst); /* compiler only */
  else full_fence();
}

/* The rare side: a full barrier on every thread of the process (or just here, without). */
static void heavy_barrier(void) {
  if (!mb_ok || syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) full_fence();
}

/* ---- submission queues ------------------------------------------------------------------ */

static _Atomic uint64_t next_gen = 1;
/* initial-exec: direct %fs accesses on the submit path, no __tls_get_addr calls */
#define MPX__TLS _Thread_local __attribute__((tls_model("initial-exec")))
static MPX__TLS struct {
  thread_tp *tp;
  uint64_t gen;
  sq *q;
} tl_sq[TL_CACHE];
static MPX__TLS unsigned tl_rr;
static MPX__TLS pid_t tl_tid;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

/* Thread exit: hand this thread's cached queues back for adoption (their tasks stay queued). */
static void tl_release(void *unused) {
  (void)unused;
  for (int i = 0; i < TL_CACHE; i++)
    if (tl_sq[i].q) atomic_store_explicit(&tl_sq[i].q->owner, 0, memory_order_release);
}
static void tl_key_make(void) { (void)pthread_key_create(&tl_key, tl_release); }

/* Find or make the calling thread's queue in tp. */
static sq *sq_find(thread_tp *tp, pid_t tid) {
  sq *head = atomic_load_explicit(&tp->sqs, memory_order_acquire);
  for (sq *q = head; q; q = q->next) /* mine already (a tid is unique among live threads) */
    if (atomic_load_explicit(&q->owner, memory_order_relaxed) == tid) return q;
  for (sq *q = head; q; q = q->next) { /* an orphan left by a thread that exited */
    pid_t none = 0;
    if (atomic_compare_exchange_strong(&q->owner, &none, tid)) return q;
  }
  sq *q = aligned_alloc(64, sizeof *q);
  sqbuf *b = malloc(sizeof *b + SQ_FIRST * sizeof b->slot[0]);
  if (!q || !b) {
    free(q);
    free(b);
    return NULL;
  }
  memset(q, 0, sizeof *q);
  b->cap = SQ_FIRST;
  b->older = NULL;
  atomic_init(&q->buf, b);
  atomic_init(&q->owner, tid);
  q->next = atomic_load_explicit(&tp->sqs, memory_order_relaxed);
  /* release: a worker that sees the new head sees an initialised queue */
  while (!atomic_compare_exchange_weak_explicit(&tp->sqs, &q->next, q, memory_order_release,
                                                memory_order_relaxed)) {
  }
  return q;
}

static sq *my_sq(thread_tp *tp) {
  for (int i = 0; i < TL_CACHE; i++)
    if (tl_sq[i].tp == tp && tl_sq[i].gen == tp->gen) return tl_sq[i].q;
  if (!tl_tid) {
    tl_tid = (pid_t)syscall(SYS_gettid);
    pthread_once(&tl_once, tl_key_make);
    pthread_setspecific(tl_key, &tl_sq);
  }
  sq *q = sq_find(tp, tl_tid);
  if (q) {
    unsigned i = tl_rr++ % TL_CACHE;
    tl_sq[i].tp = tp, tl_sq[i].gen = tp->gen, tl_sq[i].q = q;
  }
  return q;
}

/* Owner only: replace a full array by one twice as large, holding items [t, b). */
static sqbuf *sq_grow(sq *q, sqbuf *old, size_t t, size_t b) {
  sqbuf *n = malloc(sizeof *n + 2 * old->cap * sizeof n->slot[0]);
  if (!n) return NULL;
  n->cap = 2 * old->cap;
  n->older = old;
  for (size_t i = t; i < b; i++)
    atomic_store_explicit(&n->slot[i & (n->cap - 1)],
                          atomic_load_explicit(&old->slot[i & (old->cap - 1)], memory_order_relaxed),
                          memory_order_relaxed);
  /* release: a thief that reads the new array sees the copied slots; the old array stays valid
   * for thieves that loaded it before, with the same items at the same indices */
  atomic_store_explicit(&q->buf, n, memory_order_release);
  return n;
}

/* Owner only. MPX_ENOMEM if the array had to grow and could not. */
static int sq_push(sq *q, mpx_future *f) {
  size_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
  sqbuf *a = atomic_load_explicit(&q->buf, memory_order_relaxed);
  if (b - q->cached_top >= a->cap) {
    q->cached_top = atomic_load_explicit(&q->top, memory_order_acquire);
    if (b - q->cached_top >= a->cap && !(a = sq_grow(q, a, q->cached_top, b))) return MPX_ENOMEM;
  }
  /* The slot was last read by the thief that took item b - cap, whose CAS moved top past it
   * before we could see top > b - cap: no thief still reads it. */
  atomic_store_explicit(&a->slot[b & (a->cap - 1)], f, memory_order_relaxed);
  /* release: a thief that sees the new bottom sees the slot and the future's fields */
  atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
  return MPX_OK;
}

/* Any worker: take up to `max` of the oldest tasks; returns how many. */
static int sq_steal(sq *q, mpx_future **out, int max, int workers) {
  for (;;) {
    size_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    size_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
    if (t >= b) return 0;
    size_t avail = b - t, k = avail / (size_t)(2 * workers);
    if (k < 1) k = 1;
    if (k > (size_t)max) k = (size_t)max;
    /* acquire: loaded after bottom, so it holds every item below b (see sq_grow) */
    sqbuf *a = atomic_load_explicit(&q->buf, memory_order_acquire);
    for (size_t i = 0; i < k; i++)
      out[i] = atomic_load_explicit(&a->slot[(t + i) & (a->cap - 1)], memory_order_relaxed);
    /* acq_rel: the slots were read before the owner may reuse them (it acquires top) */
    if (atomic_compare_exchange_weak_explicit(&q->top, &t, t + k, memory_order_acq_rel,
                                              memory_order_relaxed))
      return (int)k;
  }
}

static bool sq_empty(const sq *q) {
  return atomic_load_explicit(&((sq *)q)->top, memory_order_acquire) >=
         atomic_load_explicit(&((sq *)q)->bottom, memory_order_acquire);
}

/* ---- submit and wake -------------------------------------------------------------------- */

static void wake_one(thread_tp *tp) {
  light_barrier(); /* the push is ordered before this read: see the header */
  if (atomic_load_explicit(&tp->sleepers, memory_order_relaxed) > 0) {
    atomic_fetch_add_explicit(&tp->epoch, 1, memory_order_relaxed);
    mpx__futex_wake_private(&tp->epoch, 1);
  }
}

static int tp_submit(mpx__runner *self, mpx_future *f) {
  thread_tp *tp = (thread_tp *)self;
  if (!atomic_load_explicit(&tp->live, memory_order_relaxed))
    return MPX_EINIT; /* every slot died: nothing would run it */
  sq *q = my_sq(tp);
  if (!q) return MPX_ENOMEM;
  atomic_store_explicit(&q->busy, 1, memory_order_relaxed);
  light_barrier(); /* busy is visible before we read closed: see the header */
  if (atomic_load_explicit(&tp->closed, memory_order_relaxed)) {
    atomic_store_explicit(&q->busy, 0, memory_order_release);
    return MPX_ESHUTDOWN;
  }
  int rc = sq_push(q, f);
  atomic_store_explicit(&q->busy, 0, memory_order_release); /* release: the push comes first */
  if (!rc) wake_one(tp);
  return rc;
}

/* ---- workers ---------------------------------------------------------------------------- */

/* Owner only: the oldest task of its batch, or NULL. */
static mpx_future *batch_pop(batch *b) {
  size_t t = atomic_load_explicit(&b->tail, memory_order_relaxed);
  if (atomic_load_explicit(&b->head, memory_order_relaxed) >= t) return NULL; /* empty: no steal
                                                                                 can refill it */
  atomic_store_explicit(&b->tail, --t, memory_order_relaxed);
  light_barrier(); /* tail is visible before we read head: see the header */
  size_t h = atomic_load_explicit(&b->head, memory_order_relaxed);
  mpx_future *f = NULL;
  if (h <= t) {
    f = atomic_load_explicit(&b->item[t & (STEAL_MAX - 1)], memory_order_relaxed);
    if (h < t) return f;
    /* the last one: a thief may want it too */
    if (!atomic_compare_exchange_strong_explicit(&b->head, &h, h + 1, memory_order_acq_rel,
                                                 memory_order_relaxed))
      f = NULL;
  }
  atomic_store_explicit(&b->tail, t + 1, memory_order_relaxed); /* empty: head == tail */
  return f;
}

/* Thief: the newest task of another worker's batch, or NULL. */
static mpx_future *batch_steal(batch *b) {
  size_t h = atomic_load_explicit(&b->head, memory_order_acquire);
  if (h >= atomic_load_explicit(&b->tail, memory_order_acquire)) return NULL; /* a cheap look */
  heavy_barrier(); /* head was read before tail: see the header */
  /* acquire: the items below tail are published (batch_fill) */
  size_t t = atomic_load_explicit(&b->tail, memory_order_acquire);
  if (h >= t) return NULL;
  mpx_future *f = atomic_load_explicit(&b->item[h & (STEAL_MAX - 1)], memory_order_relaxed);
  /* acq_rel: the item was read before the owner may refill its place */
  if (!atomic_compare_exchange_strong_explicit(&b->head, &h, h + 1, memory_order_acq_rel,
                                               memory_order_relaxed))
    return NULL;
  return f;
}

/* Owner only, b empty (head == tail): publish in[0..n), in[0] the oldest, popped first. The places
 * reused held tasks already taken, which a late thief may still read; its CAS then fails. */
static void batch_fill(batch *b, mpx_future *const *in, int n) {
  size_t t = atomic_load_explicit(&b->tail, memory_order_relaxed);
  for (int i = 0; i < n; i++)
    atomic_store_explicit(&b->item[(t + (size_t)(n - 1 - i)) & (STEAL_MAX - 1)], in[i],
                          memory_order_relaxed);
  atomic_store_explicit(&b->tail, t + (size_t)n, memory_order_release);
}

static bool batch_empty(batch *b) {
  return atomic_load_explicit(&b->head, memory_order_acquire) >=
         atomic_load_explicit(&b->tail, memory_order_acquire);
}

/* Take tasks into got[]: from the submission queues, else one back from another worker's batch;
 * at most what this worker may still run before it retires. Returns how many. */
static int steal(slot *s, mpx_future **got) {
  thread_tp *tp = s->tp;
  long max = tp->cfg->max_tasks_per_worker, cap = STEAL_MAX;
  if (max && max - s->done < cap) cap = max - s->done;
  if (cap <= 0) return 0;
  sq *head = atomic_load_explicit(&tp->sqs, memory_order_acquire);
  for (sq *q = head; q; q = q->next) {
    int k = sq_steal(q, got, (int)cap, tp->n);
    if (k) return k;
  }
  for (int j = 1; j < tp->n; j++) /* what another worker took and has not started */
    if ((got[0] = batch_steal(&tp->slots[(s->index + j) % tp->n].b))) return 1;
  return 0;
}

static mpx_future *find_work(slot *s) {
  mpx_future *got[STEAL_MAX], *f = batch_pop(&s->b);
  if (f) return f;
  int k = steal(s, got);
  if (!k) return NULL;
  if (k > 1) { /* keep the rest where an idle worker can take it */
    batch_fill(&s->b, got + 1, k - 1);
    wake_one(s->tp);
  }
  return got[0];
}

/* No task is queued or waiting in a batch. */
static bool queues_empty(thread_tp *tp) {
  for (sq *q = atomic_load_explicit(&tp->sqs, memory_order_acquire); q; q = q->next)
    if (!sq_empty(q)) return false;
  for (int i = 0; i < tp->n; i++)
    if (!batch_empty(&tp->slots[i].b)) return false;
  return true;
}

static void run_one(slot *s, mpx_future *f) {
  if (s->tp->cfg->gate) mpx__gate_leave(s->tp->cfg->gate);
  if (atomic_load_explicit(&s->tp->cancelling, memory_order_relaxed)) mpx__future_cancel(f);
  else if (mpx__future_start(f)) mpx__future_run(f, s->index);
  mpx__future_drop(f);
  s->done++;
}

/* Spin a little, then sleep until a submit bumps the epoch, unless work or a stop shows up. */
static mpx_future *idle(slot *s) {
  thread_tp *tp = s->tp;
  mpx_future *f;
  for (int i = 0; i < SPINS; i++) {
    if ((f = find_work(s))) return f;
    if (atomic_load_explicit(&tp->stopping, memory_order_relaxed)) return NULL;
    if (i < SPINS / 2) mpx__cpu_relax();
    else sched_yield();
  }
  uint32_t e = atomic_load_explicit(&tp->epoch, memory_order_acquire);
  atomic_fetch_add_explicit(&tp->sleepers, 1, memory_order_relaxed);
  heavy_barrier(); /* sleepers is visible before we look at the queues: see the header */
  if (!(f = find_work(s)) && queues_empty(tp) && !atomic_load(&tp->stopping)) {
    struct timespec ts = {1, 0}; /* bounded, as a defence in depth */
    mpx__futex_wait_private(&tp->epoch, e, &ts);
  }
  atomic_fetch_sub_explicit(&tp->sleepers, 1, memory_order_relaxed);
  return f;
}

static bool run_initializer(slot *s) {
  const mpx__config *cfg = s->tp->cfg;
  if (!cfg->initializer) return true;
  unsigned char small[16];
  mpx_buf out;
  mpx__buf_init(&out, small, sizeof small, 0);
  char *msg = NULL;
  int rc = mpx__task_run(cfg->initializer, s->index, cfg->initargs, cfg->initargs_len, &out, &msg);
  mpx__buf_release(&out);
  if (rc == 0) return true;
  thread_tp *tp = s->tp;
  pthread_mutex_lock(&tp->lock);
  if (!tp->init_failed++)
    snprintf(tp->init_msg, sizeof tp->init_msg, "initializer '%s' failed in worker %d: %s",
             cfg->initializer->name, s->index, msg ? msg : mpx_strerror(rc));
  pthread_mutex_unlock(&tp->lock);
  free(msg);
  return false;
}

/* The worker loop; returns true when it retired (max tasks reached), false when stopped. */
static bool work(slot *s) {
  thread_tp *tp = s->tp;
  long max = tp->cfg->max_tasks_per_worker;
  mpx_future *f;
  s->done = 0;
  for (;;) {
    if (max && s->done >= max) return true; /* steal() never takes more than max allows */
    if ((f = find_work(s)) || (f = idle(s))) {
      run_one(s, f);
      continue;
    }
    if (atomic_load(&tp->stopping) && queues_empty(tp)) return false;
  }
}

static void announce(thread_tp *tp, bool up) {
  pthread_mutex_lock(&tp->lock);
  tp->started++;
  if (up) tp->live++;
  pthread_cond_broadcast(&tp->cond);
  pthread_mutex_unlock(&tp->lock);
}

static void *worker_main(void *arg) {
  slot *s = arg;
  mpx__tl_transport = s->tp;
  mpx__tl_runner_stop = &s->tp->stop_word;
  mpx_topology_bind_thread(&s->tp->cfg->places[s->index]);
  bool ok = run_initializer(s);
  announce(s->tp, ok);
  if (ok) work(s);
  return NULL;
}

/* Take every queued future off the queues and hand each to `fn`; returns how many. */
static size_t drain(thread_tp *tp, bool (*fn)(mpx_future *)) {
  size_t k = 0;
  mpx_future *got[STEAL_MAX];
  for (sq *q = atomic_load_explicit(&tp->sqs, memory_order_acquire); q; q = q->next)
    for (int n; (n = sq_steal(q, got, STEAL_MAX, 1));)
      for (int i = 0; i < n; i++) {
        if (tp->cfg->gate) mpx__gate_leave(tp->cfg->gate);
        k += fn(got[i]);
        mpx__future_drop(got[i]);
      }
  return k;
}

static bool fail_lost(mpx_future *f) {
  mpx__future_fail(f, MPX_EINIT, mpx__strdupf("no live worker is left to run the task"));
  return true;
}

/* Fail everything queued: no worker is left to run it. */
static void fail_queued(thread_tp *tp) { drain(tp, fail_lost); }

/* A slot whose replacement worker could not start: when none is left, fail what is queued. */
static void slot_died(slot *s) {
  thread_tp *tp = s->tp;
  pthread_mutex_lock(&tp->lock);
  int live = --tp->live;
  pthread_mutex_unlock(&tp->lock);
  if (live == 0) fail_queued(tp);
}

/* With max_tasks_per_worker: one worker thread after another in this slot, each with its own
 * initializer run and thread-locals. Returns (void *)1 when it retired. */
static void *retiring_thread(void *arg) {
  slot *s = arg;
  mpx__tl_transport = s->tp;
  mpx_topology_bind_thread(&s->tp->cfg->places[s->index]);
  bool ok = run_initializer(s);
  if (!s->announced) {
    s->announced = true;
    announce(s->tp, ok);
  } else if (!ok) {
    slot_died(s);
  }
  return (void *)(intptr_t)(ok && work(s));
}

static void *supervisor_main(void *arg) {
  slot *s = arg;
  mpx__tl_transport = s->tp; /* it may fail what is queued (slot_died), running callbacks */
  for (;;) {
    pthread_t t;
    if (pthread_create(&t, NULL, retiring_thread, s)) {
      if (!s->announced) {
        s->announced = true;
        announce(s->tp, false);
      } else {
        slot_died(s);
      }
      return NULL;
    }
    void *retired;
    pthread_join(t, &retired);
    if (!retired) return NULL;
  }
}

/* ---- ops -------------------------------------------------------------------------------- */

static void tp_free(thread_tp *tp) {
  for (sq *q = atomic_load(&tp->sqs), *next; q; q = next) {
    next = q->next;
    for (sqbuf *b = atomic_load(&q->buf), *older; b; b = older) {
      older = b->older;
      free(b);
    }
    free(q);
  }
  free(tp->slots);
  pthread_mutex_destroy(&tp->lock);
  pthread_cond_destroy(&tp->cond);
  free(tp);
}

static void tp_stop(mpx__runner *self, bool wait);

static int tp_start(mpx__runner **out, const mpx__config *cfg) {
  pthread_once(&mb_once, mb_init);
  thread_tp *tp = aligned_alloc(64, (sizeof *tp + 63) & ~(size_t)63);
  if (!tp) return MPX_ENOMEM;
  memset(tp, 0, sizeof *tp);
  tp->cfg = cfg;
  tp->gen = atomic_fetch_add(&next_gen, 1);
  tp->n = cfg->workers;
  pthread_mutex_init(&tp->lock, NULL);
  pthread_cond_init(&tp->cond, NULL);
  tp->slots = aligned_alloc(64, (size_t)tp->n * sizeof *tp->slots); /* sizeof: 64's multiple */
  if (!tp->slots) {
    tp_free(tp);
    return MPX_ENOMEM;
  }
  memset(tp->slots, 0, (size_t)tp->n * sizeof *tp->slots);
  for (int i = 0; i < tp->n; i++) tp->slots[i] = (slot){.tp = tp, .index = i};
  void *(*entry)(void *) = cfg->max_tasks_per_worker > 0 ? supervisor_main : worker_main;
  int created = 0;
  for (; created < tp->n; created++)
    if (pthread_create(&tp->slots[created].tid, NULL, entry, &tp->slots[created])) break;
  pthread_mutex_lock(&tp->lock);
  while (tp->started < created) pthread_cond_wait(&tp->cond, &tp->lock);
  int failed = tp->init_failed;
  pthread_mutex_unlock(&tp->lock);
  if (created < tp->n || failed) {
    tp->n = created; /* join only the threads that exist */
    if (failed) mpx__set_errmsg("%s", tp->init_msg);
    else mpx__set_errmsg("could not start worker thread %d", created);
    tp_stop((mpx__runner *)tp, true);
    tp_free(tp);
    return failed ? MPX_EINIT : MPX_ESYS;
  }
  *out = (mpx__runner *)tp;
  return MPX_OK;
}

static bool cancel_one(mpx_future *f) { return mpx__future_cancel(f); }

static size_t tp_cancel_queued(mpx__runner *self) {
  thread_tp *tp = (thread_tp *)self;
  atomic_store(&tp->cancelling, true); /* also what workers hold in their taken batches */
  uint32_t go = 0; /* running tasks are asked to stop (a terminate's word stays) */
  atomic_compare_exchange_strong(&tp->stop_word, &go, MPX__STOP_ASK);
  return drain(tp, cancel_one);
}

/* Refuse every later submit: after the heavy barrier every submitter either sees `closed` or has
 * its busy flag visible to us; once those drop, every task that got in is queued. */
static void tp_close(mpx__runner *self) {
  thread_tp *tp = (thread_tp *)self;
  if (atomic_exchange(&tp->closed, true)) return;
  heavy_barrier();
  for (sq *q = atomic_load_explicit(&tp->sqs, memory_order_acquire); q; q = q->next)
    while (atomic_load_explicit(&q->busy, memory_order_acquire)) sched_yield();
}

static void tp_stop(mpx__runner *self, bool wait) {
  thread_tp *tp = (thread_tp *)self;
  tp_close(self);
  atomic_store(&tp->stopping, true);
  atomic_fetch_add(&tp->epoch, 1);
  mpx__futex_wake_private(&tp->epoch, INT_MAX);
  if (!wait) return;
  pthread_mutex_lock(&tp->lock);
  bool join = !tp->joined;
  tp->joined = true;
  pthread_mutex_unlock(&tp->lock);
  if (!join) return;
  for (int i = 0; i < tp->n; i++) pthread_join(tp->slots[i].tid, NULL);
  /* every worker is gone: whatever is still queued (all slots died) can never run */
  fail_queued(tp);
}

static void tp_destroy(mpx__runner *self) { tp_free((thread_tp *)self); }

/* A thread cannot be killed: running tasks are asked to stop (mpx_task_should_stop) and their
 * futures fail with MPX_ETERMINATED when they return (future_run.c); stop(wait) waits for them. */
static void tp_terminate(mpx__runner *self) {
  thread_tp *tp = (thread_tp *)self;
  atomic_store(&tp->stop_word, MPX__STOP_TERMINATE);
}

static const mpx__runner_ops thread_runner = {
    .start = tp_start,
    .submit = tp_submit,
    .close = tp_close,
    .cancel_queued = tp_cancel_queued,
    .stop = tp_stop,
    .destroy = tp_destroy,
    .terminate = tp_terminate,
};

/* Tasks run in this process: nothing is encoded, nothing polls, a worker cannot be ended alone
 * and is never lost; a worker thread can be replaced (max_tasks_per_worker). */
const mpx__transport mpx__thread_transport = {
    .name = "threads",
    .backend = MPX_BACKEND_THREADS,
    .caps = MPX__CAP_RECYCLE,
    .runner = &thread_runner,
};
