/* thread.c: the thread transport. Worker threads of this process run futures directly: pointers
 * pass through, nothing is encoded.
 *
 * Queues: each worker owns a bounded lock-free MPMC ring (Vyukov's); submitters push round robin
 * from a per-thread counter, so no submit touches a shared counter; an idle worker steals from
 * the other rings. When every ring is full, tasks go to one mutex-protected overflow FIFO, and
 * keep going there until it is drained, so tasks are not overtaken indefinitely; workers take
 * them in batches. Sleeping: a worker spins briefly, then sleeps on a futex `epoch`; a submitter
 * wakes one only when `sleepers` is non-zero (seq_cst on both sides: either the submitter sees
 * the sleeper or the sleeper sees the task).
 * With max_tasks_per_worker, a supervisor thread per slot replaces its worker thread after that
 * many tasks (fresh thread-locals, initializer run again). */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "future_impl.h"
#include "task_impl.h"
#include "transport.h"

enum { RING_SIZE = 4096, OVERFLOW_BATCH = 64, SPINS = 256 };

typedef struct cell {
  _Atomic size_t seq;
  mpx_future *f;
} cell;

typedef struct ring {
  _Alignas(64) _Atomic size_t enq;
  _Alignas(64) _Atomic size_t deq;
  _Alignas(64) cell cells[RING_SIZE];
} ring;

typedef struct thread_tp thread_tp;

typedef struct slot {
  thread_tp *tp;
  int index;
  pthread_t tid;          /* the worker, or its supervisor with max_tasks_per_worker */
  ring *q;
  long done;              /* tasks run by the current worker thread */
  bool announced;         /* the start-up latch has heard from this slot */
} slot;

struct thread_tp {
  const mpx__config *cfg;
  int n;
  slot *slots;
  _Atomic bool stopping;  /* no more submits; workers exit once everything queued is done */
  _Alignas(64) _Atomic int sleepers;
  _Atomic uint32_t epoch;
  _Alignas(64) pthread_mutex_t olock; /* overflow FIFO */
  mpx_future *ohead, *otail;
  _Atomic size_t ocount;
  pthread_mutex_t lock;   /* start-up latch, live count, stop */
  pthread_cond_t cond;
  int started, init_failed;
  _Atomic int live;       /* slots with a worker; 0 only when every replacement failed */
  char init_msg[256];
  bool stopped, joined;
};

static _Thread_local unsigned rr; /* this submitter's round-robin position */

/* ---- rings ----------------------------------------------------------------------------- */

static void ring_init(ring *r) {
  atomic_init(&r->enq, 0);
  atomic_init(&r->deq, 0);
  for (size_t i = 0; i < RING_SIZE; i++) atomic_init(&r->cells[i].seq, i);
}

static bool ring_push(ring *r, mpx_future *f) {
  size_t pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
  for (;;) {
    cell *c = &r->cells[pos & (RING_SIZE - 1)];
    /* acquire: the cell's previous consumer is done with it */
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    intptr_t dif = (intptr_t)seq - (intptr_t)pos;
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&r->enq, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        c->f = f;
        /* release: the consumer that sees seq sees f and the future's fields */
        atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
        return true;
      }
    } else if (dif < 0) {
      return false; /* full */
    } else {
      pos = atomic_load_explicit(&r->enq, memory_order_relaxed);
    }
  }
}

static mpx_future *ring_pop(ring *r) {
  size_t pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
  for (;;) {
    cell *c = &r->cells[pos & (RING_SIZE - 1)];
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire); /* pairs with push */
    intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&r->deq, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        mpx_future *f = c->f;
        /* release: the producer that reuses the cell sees we have read it */
        atomic_store_explicit(&c->seq, pos + RING_SIZE, memory_order_release);
        return f;
      }
    } else if (dif < 0) {
      return NULL; /* empty */
    } else {
      pos = atomic_load_explicit(&r->deq, memory_order_relaxed);
    }
  }
}

/* ---- overflow FIFO ---------------------------------------------------------------------- */

static void overflow_push(thread_tp *tp, mpx_future *f) {
  f->next = NULL;
  pthread_mutex_lock(&tp->olock);
  if (tp->otail) tp->otail->next = f;
  else tp->ohead = f;
  tp->otail = f;
  atomic_fetch_add_explicit(&tp->ocount, 1, memory_order_relaxed);
  pthread_mutex_unlock(&tp->olock);
}

/* Take up to `max` futures off the overflow FIFO as a list. */
static mpx_future *overflow_take(thread_tp *tp, size_t max) {
  if (!atomic_load_explicit(&tp->ocount, memory_order_relaxed)) return NULL;
  pthread_mutex_lock(&tp->olock);
  mpx_future *head = tp->ohead, *last = NULL, *f = head;
  size_t k = 0;
  for (; f && k < max; k++) {
    last = f;
    f = f->next;
  }
  if (last) last->next = NULL;
  tp->ohead = f;
  if (!f) tp->otail = NULL;
  atomic_fetch_sub_explicit(&tp->ocount, k, memory_order_relaxed);
  pthread_mutex_unlock(&tp->olock);
  return head;
}

/* ---- submit and wake -------------------------------------------------------------------- */

static void wake_one(thread_tp *tp) {
  atomic_thread_fence(memory_order_seq_cst); /* the task is queued before we read sleepers */
  if (atomic_load_explicit(&tp->sleepers, memory_order_relaxed) > 0) {
    atomic_fetch_add_explicit(&tp->epoch, 1, memory_order_seq_cst);
    syscall(SYS_futex, &tp->epoch, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
  }
}

static int tp_submit(mpx_transport *self, mpx_future *f) {
  thread_tp *tp = (thread_tp *)self;
  if (!tp->live) return MPX_EINIT; /* every slot died: nothing would run it (racy read is fine) */
  bool queued = false;
  if (!atomic_load_explicit(&tp->ocount, memory_order_relaxed)) {
    unsigned start = rr++;
    for (int k = 0; k < tp->n && !queued; k++)
      queued = ring_push(tp->slots[(start + (unsigned)k) % (unsigned)tp->n].q, f);
  }
  if (!queued) overflow_push(tp, f);
  wake_one(tp);
  return MPX_OK;
}

/* ---- workers ---------------------------------------------------------------------------- */

static mpx_future *find_work(slot *s, mpx_future **batch) {
  thread_tp *tp = s->tp;
  mpx_future *f = ring_pop(s->q);
  if (f) return f;
  if (!*batch) *batch = overflow_take(tp, OVERFLOW_BATCH);
  if (*batch) {
    f = *batch;
    *batch = f->next;
    return f;
  }
  for (int k = 1; k < tp->n; k++)
    if ((f = ring_pop(tp->slots[(s->index + k) % tp->n].q))) return f;
  return NULL;
}

static void run_one(slot *s, mpx_future *f) {
  if (s->tp->cfg->gate) mpx__gate_leave(s->tp->cfg->gate);
  if (mpx__future_start(f)) mpx__future_run(f, s->index);
  mpx__future_drop(f);
  s->done++;
}

/* Sleep until a submit bumps the epoch, unless work or a stop shows up first. */
static void idle(slot *s, mpx_future **batch, mpx_future **found) {
  thread_tp *tp = s->tp;
  for (int i = 0; i < SPINS; i++) {
    if ((*found = find_work(s, batch))) return;
    if (i < SPINS / 2) __builtin_ia32_pause();
    else sched_yield();
  }
  uint32_t e = atomic_load_explicit(&tp->epoch, memory_order_seq_cst);
  atomic_fetch_add_explicit(&tp->sleepers, 1, memory_order_seq_cst);
  if (!(*found = find_work(s, batch)) && !atomic_load(&tp->stopping)) {
    struct timespec ts = {0, 100 * 1000 * 1000}; /* a bounded nap: defence against any lost wake */
    syscall(SYS_futex, &tp->epoch, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, e, &ts, NULL, 0);
  }
  atomic_fetch_sub_explicit(&tp->sleepers, 1, memory_order_seq_cst);
}

static bool queues_empty(thread_tp *tp) {
  if (atomic_load(&tp->ocount)) return false;
  for (int k = 0; k < tp->n; k++) {
    ring *r = tp->slots[k].q;
    if (atomic_load(&r->enq) != atomic_load(&r->deq)) return false;
  }
  return true;
}

/* Run the initializer; on failure record why. */
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
  mpx_future *batch = NULL, *f;
  s->done = 0;
  for (;;) {
    if (max && s->done >= max && !batch) return true;
    if ((f = find_work(s, &batch)) || (idle(s, &batch, &f), f)) {
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
  mpx_topology_bind_thread(&s->tp->cfg->places[s->index]);
  bool ok = run_initializer(s);
  announce(s->tp, ok);
  if (ok) work(s);
  return NULL;
}

/* Fail everything queued: no worker is left to run it. */
static void fail_queued(thread_tp *tp) {
  mpx_future *f;
  for (int i = 0; i < tp->n; i++)
    while ((f = ring_pop(tp->slots[i].q))) {
      if (tp->cfg->gate) mpx__gate_leave(tp->cfg->gate);
      mpx__future_fail(f, MPX_EINIT, mpx__strdupf("no live worker is left to run the task"));
      mpx__future_drop(f);
    }
  while ((f = overflow_take(tp, SIZE_MAX)))
    while (f) {
      mpx_future *next = f->next;
      if (tp->cfg->gate) mpx__gate_leave(tp->cfg->gate);
      mpx__future_fail(f, MPX_EINIT, mpx__strdupf("no live worker is left to run the task"));
      mpx__future_drop(f);
      f = next;
    }
}

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
  for (int i = 0; i < tp->n; i++) free(tp->slots[i].q);
  free(tp->slots);
  pthread_mutex_destroy(&tp->olock);
  pthread_mutex_destroy(&tp->lock);
  pthread_cond_destroy(&tp->cond);
  free(tp);
}

static void tp_stop(mpx_transport *self, bool wait);

static int tp_start(mpx_transport **out, const mpx__config *cfg) {
  thread_tp *tp = aligned_alloc(64, (sizeof *tp + 63) & ~(size_t)63);
  if (!tp) return MPX_ENOMEM;
  memset(tp, 0, sizeof *tp);
  tp->cfg = cfg;
  tp->n = cfg->workers;
  pthread_mutex_init(&tp->olock, NULL);
  pthread_mutex_init(&tp->lock, NULL);
  pthread_cond_init(&tp->cond, NULL);
  tp->slots = calloc((size_t)tp->n, sizeof *tp->slots);
  if (!tp->slots) {
    tp_free(tp);
    return MPX_ENOMEM;
  }
  for (int i = 0; i < tp->n; i++) {
    tp->slots[i] = (slot){.tp = tp, .index = i, .q = aligned_alloc(64, sizeof(ring))};
    if (!tp->slots[i].q) {
      tp_free(tp);
      return MPX_ENOMEM;
    }
    ring_init(tp->slots[i].q);
  }
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
    tp_stop((mpx_transport *)tp, true);
    tp_free(tp);
    return failed ? MPX_EINIT : MPX_ESYS;
  }
  *out = (mpx_transport *)tp;
  return MPX_OK;
}

static size_t tp_cancel_queued(mpx_transport *self) {
  thread_tp *tp = (thread_tp *)self;
  size_t k = 0;
  mpx_future *f;
  for (int i = 0; i < tp->n; i++) {
    while ((f = ring_pop(tp->slots[i].q))) {
      if (tp->cfg->gate) mpx__gate_leave(tp->cfg->gate);
      k += mpx__future_cancel(f);
      mpx__future_drop(f);
    }
  }
  while ((f = overflow_take(tp, SIZE_MAX))) {
    while (f) {
      mpx_future *next = f->next;
      if (tp->cfg->gate) mpx__gate_leave(tp->cfg->gate);
      k += mpx__future_cancel(f);
      mpx__future_drop(f);
      f = next;
    }
  }
  return k;
}

static void tp_stop(mpx_transport *self, bool wait) {
  thread_tp *tp = (thread_tp *)self;
  atomic_store(&tp->stopping, true);
  atomic_fetch_add(&tp->epoch, 1);
  syscall(SYS_futex, &tp->epoch, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL, NULL, 0);
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

static void tp_destroy(mpx_transport *self) { tp_free((thread_tp *)self); }

const mpx_transport_ops mpx__thread_transport = {
    .name = "threads",
    .start = tp_start,
    .submit = tp_submit,
    .cancel_queued = tp_cancel_queued,
    .stop = tp_stop,
    .destroy = tp_destroy,
};
