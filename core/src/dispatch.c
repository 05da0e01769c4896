/* dispatch.c: the scheduler for links (link.h: processes, MPI). It is a runner (runner.h) to the
 * executor and drives the transport's link (cfg->link) from one dispatcher thread; the link's
 * ops are called on the threads link.h names. The gate (cfg->gate) is changed only through
 * gate.h: left when a task starts or is cancelled, returned to when a lost worker's tasks are
 * re-queued.
 *
 * Submitters append futures to one pending FIFO under `lock` and wake the dispatcher. The
 * dispatcher alone owns the per-worker windows: it moves pending futures into batches (one packed
 * mpx.Batch per send), keeping each worker's in-flight count under an adaptive window (about a
 * millisecond of work per slot, from an average of task times measured per worker: from the
 * moment its window became non-empty, or its previous results, to its next results; one task
 * per slot until anything is measured, so that a long first task leaves the rest cancellable).
 * Short tasks share messages and long ones spread over workers: pending tasks are shared among
 * the workers with room, idle ones first, and one batch carries at most max_payload bytes of
 * arguments (one larger argument goes alone), so it always fits max_message. A batch that still
 * cannot be packed or sent fails its own tasks, not the worker. It turns results back into
 * completed futures, re-queues (retries) or fails the futures of a lost worker (charging a
 * retry only to the task it was running, when the transport knows it), and kills a worker whose
 * task passed its time limit. A task with a time limit is sent alone to an idle worker, so
 * killing that worker loses nothing else. Futures are identified on the wire by call ids that
 * are their addresses (tagged with their number in the window for in-order workers).
 * Futures are completed (and their done-callbacks run) only with `lock` released, so that a
 * callback may submit to, shut down or destroy this executor. Callbacks run on the dispatcher
 * thread (cancel_queued's on the caller's), which is marked in mpx__tl_transport: a callback that
 * destroys the executor is deferred to a reaper thread that joins this one (executor.c), so
 * nothing here runs after disp_free, and shutdown(wait) from it does not join itself.
 *
 * Trust. A worker runs user code, so everything it sends is hostile until checked:
 *  - a worker process's first message must be one Control READY (its initializer's error, if
 *    any, retires the slot only then); a later READY, any other control, tasks, or results
 *    before READY are violations;
 *  - a result is accepted only for a call id in that worker's window, once; a worker that runs one
 *    task at a time (processes, single-threaded ranks: slots == 1) answers in the order it was
 *    sent, so only the oldest id of its window is accepted: a task can answer for itself, never
 *    for the tasks queued behind it (hybrid ranks answer out of order: any id of the window);
 *  - a malformed message, a violation or a result it may not send gets the worker killed and
 *    replaced; its loss charges only the task it was running (the transport's progress word),
 *    the rest of its window is re-queued uncharged. Its messages are ignored until the loss;
 *  - codes are restricted to task failures (mpx__task_code: never MPX_ECANCELLED,
 *    MPX_EWORKER_LOST, ...); the worker's text is kept, but pid, rank, host and slots come from
 *    the link (its peer op, link.h's mpx__peer), never from Control or Error fields;
 *  - sizes are bounded by d->lim (max_message lowered to cfg->max_worker_memory).
 *
 * Locking: `lock` guards pending and the stop flags; the windows (w[]) belong to the dispatcher
 * thread alone (and to the starting thread before it exists). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dataplane.h"
#include "future_impl.h"
#include "os/log.h"
#include "task_impl.h"
#include "link.h"
#include "runner.h"

enum { BATCH_MAX = 256, WINDOW_MIN = 1, WINDOW_MAX = 1024 };

typedef struct fifo {
  mpx_future *head, *tail;
  size_t n;
} fifo;

typedef struct wslot {
  fifo inflight;        /* sent, in order; results come back in this order */
  bool ready;           /* READY received, not lost since */
  bool dead;            /* initializer failed in a replacement: never used again */
  bool timed;           /* holds one task with a time limit */
  bool timed_out;       /* killed for its time limit; the lost event fails that task */
  double deadline;
  double busy_since;    /* when its window last became non-empty or it last sent results */
  long sent;            /* tasks sent to the current worker process (max_tasks_per_worker) */
  int slots;            /* tasks it runs at once (the transport's mpx__peer), >= 1 */
  bool killed;          /* ended for a protocol violation; its loss is not reported yet */
  uint64_t seq_sent;    /* slots == 1: tasks sent to the current process (the next one's number) */
  uint64_t seq_done;    /* slots == 1: results accepted from it (the window head's number) */
  int pid;              /* pid, rank and host: the transport's mpx__peer, never a message's */
  int rank;
  char host[64];
  char why[384];        /* killed: what it did */
} wslot;

typedef struct disp {
  const mpx__config *cfg;
  const mpx__link_ops *inner;
  mpx__link *tp;
  mpx__limits lim;
  pthread_t thread;
  pthread_mutex_t lock;  /* pending, stopping */
  pthread_cond_t idle;   /* signalled when the dispatcher thread exits */
  fifo pending;
  fifo unsent;           /* dispatcher only: could not be sent, failed after the lock is dropped */
  bool stopping, closed, exited, joined;
  wslot *w;
  int n;
  int next;              /* the worker feed_all serves first: the last one that returned
                            results (still polling, not yet backed off), so a lone task meets a
                            warm worker; under load every worker gets its share anyway */
  double task_avg;       /* seconds per task, EWMA */
  mpx__wbuf out;
  Mpx__Task *tasks;      /* scratch for one batch */
  Mpx__Task **task_ptrs;
  mpx__dp dp;            /* the batch's out-of-band arguments (dataplane.h) */
} disp;

/* ---- small helpers ------------------------------------------------------------------------ */

static void fifo_push(fifo *q, mpx_future *f) {
  f->next = NULL;
  if (q->tail) q->tail->next = f;
  else q->head = f;
  q->tail = f;
  q->n++;
}

static mpx_future *fifo_pop(fifo *q) {
  mpx_future *f = q->head;
  if (!f) return NULL;
  q->head = f->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  f->next = NULL;
  return f;
}

/* Remove the future with call id `id` from q (usually the head). */
static mpx_future *fifo_take(fifo *q, uint64_t id) {
  mpx_future *prev = NULL;
  for (mpx_future *f = q->head; f; prev = f, f = f->next) {
    if ((uint64_t)(uintptr_t)f != id) continue;
    if (prev) prev->next = f->next;
    else q->head = f->next;
    if (q->tail == f) q->tail = prev;
    q->n--;
    f->next = NULL;
    return f;
  }
  return NULL;
}

static double task_timeout(const disp *d, const mpx_future *f) {
  if (f->timeout < 0) return 0;
  return f->timeout > 0 ? f->timeout : d->cfg->task_timeout;
}

static int task_retries(const disp *d, const mpx_future *f) {
  return f->retries >= 0 ? f->retries : d->cfg->retries;
}

/* The call id of the future numbered `seq` in worker w's window: its address, and for a worker
 * that answers in order (slots == 1) the number's low 16 bits in the top bits of the id, so that a
 * late answer for a future that was completed early (a task that answered for itself, then
 * finished) never matches a new future at the same address. */
static uint64_t call_id(const wslot *w, const mpx_future *f, uint64_t seq) {
  uint64_t a = (uint64_t)(uintptr_t)f;
  if (w->slots != 1 || a >> 48) return a;
  return a | (seq & 0xffff) << 48;
}

/* Where worker i runs, from the transport's own knowledge (mpx__peer), never from a message. */
static void where(const wslot *w, int i, char *buf, size_t n) {
  if (w->rank >= 0)
    snprintf(buf, n, "worker %d (rank %d on %s)", i, w->rank, w->host[0] ? w->host : "?");
  else
    snprintf(buf, n, "worker %d (pid %d on %s)", i, w->pid, w->host[0] ? w->host : "?");
}

/* ---- sending ------------------------------------------------------------------------------ */

/* In-flight tasks a worker with `slots` parallel slots gets: about 1 ms of work per slot. */
static size_t window(const disp *d, int slots) {
  double w = d->task_avg <= 0 ? WINDOW_MIN /* nothing measured yet: one task per slot, so that a
                                                long first task leaves the rest cancellable */
                              : 1e-3 / d->task_avg;
  w = w < WINDOW_MIN ? WINDOW_MIN : w > WINDOW_MAX ? WINDOW_MAX : w;
  return (size_t)w * (size_t)slots;
}

static void fill_task(Mpx__Task *t, mpx_future *f, uint64_t id) {
  mpx__task__init(t);
  t->task_id = f->task->id;
  t->call_id = id;
  t->arg.data = (uint8_t *)f->arg;
  t->arg.len = f->arg_len;
  if (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK) {
    const mpx__map_chunk *c = f->owner;
    t->count = (uint32_t)c->count;
    t->item_size = c->item_size;
    t->result_size = c->result_size;
  }
}

static void lose(disp *d, int i, const char *detail, const mpx__event *ev);

/* Pack and send `k` tasks (the last k of w's window) to worker i. Called under d->lock; tasks
 * it cannot send go to d->unsent, which feed_all fails after unlocking. */
static void send_batch(disp *d, int i, size_t k) {
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_tasks = k;
  b.tasks = d->task_ptrs;
  mpx__wbuf_reset(&d->out);
  int rc = mpx__codec_pack(&b, &d->lim, &d->out);
  if (rc == 0) rc = mpx__dp_send(&d->dp, d->inner, d->tp, i, d->out.data, d->out.len);
  else mpx__dp_reset(&d->dp);
  if (rc == 0 || rc == MPX_EWORKER_LOST) return; /* a loss: poll reports it, lose() re-queues */
  /* The batch could not be packed or sent (a limit the submit checks did not cover, such as a
   * map chunk of more items than the codec takes, or no memory): fail these k tasks, not the
   * worker, which got nothing. */
  wslot *w = &d->w[i];
  size_t keep = w->inflight.n - k;
  mpx_future *last = NULL, *f = w->inflight.head;
  for (size_t j = 0; j < keep; j++) last = f, f = f->next;
  if (last) last->next = NULL;
  else w->inflight.head = NULL;
  w->inflight.tail = last;
  w->inflight.n = keep;
  w->sent -= (long)k;
  w->seq_sent -= k;
  if (w->timed && !keep) w->timed = false;
  while (f) { /* failed by feed_all once d->lock is released: callbacks run then */
    mpx_future *next = f->next;
    f->error = rc;
    fifo_push(&d->unsent, f);
    f = next;
  }
}

static bool has_room(const disp *d, const wslot *w) {
  return w->ready && !w->dead && !w->timed && w->inflight.n < window(d, w->slots);
}

/* Fill worker i's window from pending (under d->lock), taking at most `share` tasks. */
static void feed(disp *d, int i, size_t share) {
  wslot *w = &d->w[i];
  long max = d->cfg->max_tasks_per_worker;
  size_t room = window(d, w->slots), k = 0;
  if (!has_room(d, w)) return;
  room -= w->inflight.n;
  if (room > share) room = share;
  if (room > BATCH_MAX) room = BATCH_MAX;
  size_t bytes = 0;
  while (k < room && (!max || w->sent < max)) {
    mpx_future *f = d->pending.head;
    if (!f) break;
    bool timed = task_timeout(d, f) > 0;
    if (timed && (k || w->inflight.n)) break; /* a timed task goes alone to an idle worker */
    /* arguments of one batch stay under max_payload together (one may reach it alone), so a
     * batch always fits max_message (at least twice max_payload, see mpx__limits_default) */
    if (k && bytes + f->arg_len > d->lim.max_payload) break;
    bytes += f->arg_len;
    fifo_pop(&d->pending);
    if (d->cfg->gate) mpx__gate_leave(d->cfg->gate);
    if (!mpx__future_start(f)) { /* cancelled while pending */
      mpx__future_drop(f);
      continue;
    }
    f->worker = (int16_t)i;
    if (!w->inflight.n) w->busy_since = mpx__now();
    fifo_push(&w->inflight, f);
    fill_task(&d->tasks[k], f, call_id(w, f, w->seq_sent++));
    /* a big argument goes out of band; into the worker's kept segment when it has nothing
     * else in flight */
    mpx__dp_arg(&d->dp, d->cfg->caps, &d->tasks[k], i, w->inflight.n == 1);
    d->task_ptrs[k] = &d->tasks[k];
    k++;
    w->sent++;
    if (timed) {
      w->timed = true;
      w->deadline = mpx__now() + task_timeout(d, f);
      break;
    }
  }
  if (k) send_batch(d, i, k);
}

/* Share pending tasks among the workers with room, idle workers first, starting at a rotating
 * worker: a window sized from an average that is out of date (short tasks, then long ones) must
 * not put every long task on one worker, nor a task behind a long one while a worker idles. */
static void feed_all(disp *d) {
  pthread_mutex_lock(&d->lock);
  if (d->pending.n) {
    size_t open = 0;
    for (int i = 0; i < d->n; i++) open += has_room(d, &d->w[i]);
    if (open) {
      size_t share = (d->pending.n + open - 1) / open;
      for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < d->n && d->pending.n; k++) {
          int i = (d->next + k) % d->n;
          if ((d->w[i].inflight.n == 0) == (pass == 0)) feed(d, i, share);
        }
    }
  }
  pthread_mutex_unlock(&d->lock);
  for (mpx_future *f; (f = fifo_pop(&d->unsent));) {
    mpx__future_fail(f, f->error, mpx__strdupf("task '%s' could not be sent to worker %d: %s",
                                               f->task->name, f->worker, mpx_strerror(f->error)));
    mpx__future_drop(f);
  }
}

/* ---- receiving ---------------------------------------------------------------------------- */

/* The text of a task failure a worker reported: its message (the worker's words, kept) and where
 * it ran, from the transport's own knowledge (where()), never from the Error's pid/host/rank. */
static char *error_text(const disp *d, const Mpx__Error *e, int i) {
  const char *msg = e && e->message && e->message[0] ? e->message : mpx_strerror(e ? e->code : 0);
  char who[160];
  where(&d->w[i], i, who, sizeof who);
  return mpx__strdupf("%s (%s)", msg, who);
}

/* Complete f with result r from worker i; `seg` (mapped) when its data came out of band. */
static void complete(disp *d, int i, mpx_future *f, const Mpx__Result *r, mpx__seg *seg) {
  if (mpx__dp_finish(f, seg)) { /* its data came out of band, read in place (dataplane.c) */
  } else if (r->error) {
    if (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK) {
      /* the results before the failing item came back too: write them, as threads do */
      mpx__map_chunk *c = f->owner;
      c->failed = r->error->index < c->count ? (size_t)r->error->index : 0;
      size_t before = c->failed * c->result_size;
      if (r->data.len == before && before) memcpy(c->results, r->data.data, before);
    }
    /* a worker reports task failures only: never a cancellation, a loss, ... (mpx__task_code) */
    mpx__future_fail(f, mpx__task_code(r->error->code), error_text(d, r->error, i));
  } else {
    mpx__future_finish_copy(f, r->data.data, r->data.len);
  }
  mpx__future_drop(f);
}

/* Worker i broke the protocol (see 'Trust' in the header): it is ended and replaced, and its loss
 * charges only the task it was running. Its messages are ignored until the transport reports the
 * loss; lose() then uses `why` as the detail. A transport that cannot end one worker (MPI) gets
 * the slot retired instead: the oldest task of its window (the one it runs, or runs first) is
 * charged, the rest goes back to the queue. */
static void violate(disp *d, int i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void violate(disp *d, int i, const char *fmt, ...) {
  wslot *w = &d->w[i];
  char what[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  char who[160];
  where(w, i, who, sizeof who);
  if (w->rank >= 0) snprintf(w->why, sizeof w->why, "rank %d %s and was killed", w->rank, what);
  else snprintf(w->why, sizeof w->why, "pid %d %s and was killed", w->pid, what);
  w->ready = false;
  w->killed = true;
  if (d->inner->kill(d->tp, i, true) == MPX_OK) return;
  snprintf(w->why, sizeof w->why, "rank %d %s and was retired", w->rank, what);
  mpx__log(MPX_LOG_WARN, "%s %s and is not used any more", who, what);
  w->dead = true;
  mpx__event ev = {.kind = MPX__EV_WORKER_LOST, .worker = i, .running_known = true};
  ev.running = w->inflight.head ? call_id(w, w->inflight.head, w->seq_done) : 0;
  lose(d, i, w->why, &ev);
}

/* Accept the READY that a worker process sends as its first message: who it is comes from the
 * transport (peer), not from the message. */
static void take_peer(disp *d, int i) {
  wslot *w = &d->w[i];
  mpx__peer p = {.pid = 0, .rank = -1, .slots = 1, .host = ""};
  if (d->inner->peer) d->inner->peer(d->tp, i, &p);
  w->pid = p.pid;
  w->rank = p.rank;
  snprintf(w->host, sizeof w->host, "%s", p.host);
  w->slots = p.slots > 0 ? p.slots : 1;
}

static void on_ready(disp *d, int i, const Mpx__Control *c) {
  wslot *w = &d->w[i];
  take_peer(d, i);
  w->sent = 0;
  w->seq_sent = w->seq_done = 0;
  if (c->error) { /* a replacement's initializer failed: retire the slot */
    char *msg = error_text(d, c->error, i);
    mpx__log(MPX_LOG_WARN, "%s; worker %d is not replaced", msg ? msg : "initializer failed", i);
    free(msg);
    w->dead = true;
    d->inner->kill(d->tp, i, false);
    return;
  }
  w->ready = true;
}

/* Fold the time `tasks` tasks took on one slot into the per-task average. */
static void observe(disp *d, double seconds, size_t tasks) {
  if (!tasks) return;
  double per = seconds / (double)tasks;
  d->task_avg = d->task_avg <= 0 ? per : 0.8 * d->task_avg + 0.2 * per;
}

/* The future a result from worker i is for, taken out of its window, or NULL: the call id must
 * be in the window (sent and not answered yet, so each is accepted once); a worker that runs
 * one task at a time answers in the order it was sent, so only the oldest id is accepted (a
 * task cannot answer for the tasks queued behind it). */
static mpx_future *accept_result(disp *d, int i, uint64_t id) {
  wslot *w = &d->w[i];
  if (w->slots == 1) {
    if (!w->inflight.head || call_id(w, w->inflight.head, w->seq_done) != id) return NULL;
    w->seq_done++;
    return fifo_pop(&w->inflight);
  }
  return fifo_take(&w->inflight, id); /* hybrid ranks: threads answer out of order */
}

static const char *control_name(int kind) {
  switch (kind) {
  case MPX__CONTROL__KIND__READY: return "READY";
  case MPX__CONTROL__KIND__SHUTDOWN: return "SHUTDOWN";
  case MPX__CONTROL__KIND__RETIRE: return "RETIRE";
  default: return "NONE";
  }
}

static void on_message(disp *d, int i, const uint8_t *data, size_t len) {
  wslot *w = &d->w[i];
  if (w->killed || w->dead) return; /* ended for a violation or retired: leftovers are ignored */
  Mpx__Batch *b;
  int rc = mpx__codec_unpack(data, len, &d->lim, &b);
  if (rc) {
    violate(d, i, "sent a malformed message (%s)", mpx_strerror(rc));
    return;
  }
  if (!w->ready) { /* a worker process's first message: READY and nothing else */
    if (!b->control || b->control->kind != MPX__CONTROL__KIND__READY || b->n_results || b->n_tasks)
      violate(d, i, "sent a message other than READY as its first");
    else
      on_ready(d, i, b->control);
    mpx__codec_free(b);
    return;
  }
  if (b->control || b->n_tasks) { /* a serving worker sends results only */
    violate(d, i, "sent %s while serving", b->n_tasks ? "tasks"
                                                      : control_name(b->control->kind));
    mpx__codec_free(b);
    return;
  }
  double now = mpx__now();
  size_t done = 0;
  for (size_t k = 0; k < b->n_results; k++) {
    uint64_t id = b->results[k]->call_id;
    mpx_future *f = accept_result(d, i, id);
    if (!f) { /* never dereferenced: a stale, repeated, out of order or forged id */
      violate(d, i, "sent a result for call id 0x%llx, which it was not running",
              (unsigned long long)id);
      break;
    }
    mpx__seg seg = MPX__SEG_NONE; /* an out-of-band result: checked, mapped, or f fails */
    const char *why =
        mpx__dp_result(d->inner, d->tp, i, b->results[k], d->lim.max_payload, f, &seg);
    if (why) {
      violate(d, i, "%s", why);
      break;
    }
    complete(d, i, f, b->results[k], &seg);
    done++;
    d->next = i;
  }
  if (done) {
    /* the worker was busy from busy_since (a send to its empty window, or its previous
     * results) until now, on `slots` tasks at once */
    observe(d, (now - w->busy_since) * (double)w->slots, done);
    w->busy_since = now;
  }
  if (done && w->timed && !w->inflight.n) w->timed = false;
  mpx__codec_free(b);
}

/* Worker i is gone: re-queue or fail what it held. When the transport knows what the worker was
 * running (ev->running_known), only that task is charged: it is retried while its retries last,
 * else fails; the others never started (or ran without their results being sent) and are
 * re-queued uncharged. Otherwise (ev NULL, or MPI) every task it held is charged. */
static void lose(disp *d, int i, const char *detail, const mpx__event *ev) {
  wslot *w = &d->w[i];
  char who[160];
  where(w, i, who, sizeof who);
  bool timed_out = w->timed_out;
  char why[sizeof w->why];
  if (w->killed) { /* ended for a protocol violation: say that, not just 'killed by signal 9' */
    snprintf(why, sizeof why, "%s", w->why);
    detail = why;
  }
  w->ready = w->timed = w->timed_out = w->killed = false;
  /* a worker that cannot be ended alone (a rank) is never replaced: nothing will say READY */
  if (!(d->cfg->caps & MPX__CAP_KILL_ONE)) w->dead = true;
  mpx_future *f;
  fifo requeue = {0}; /* the window is the dispatcher's own: no lock until the splice, and the
                         failures' callbacks run unlocked */
  for (uint64_t seq = w->seq_done; (f = fifo_pop(&w->inflight)); seq++) {
    uint64_t id = call_id(w, f, seq);
    if (timed_out) {
      mpx__future_fail(f, MPX_ETIMEDOUT,
                       mpx__strdupf("task '%s' ran past its %.3g s time limit; %s was killed",
                                    f->task->name, task_timeout(d, f), who));
      mpx__future_drop(f);
    } else if (ev && ev->running_known && id != ev->running &&
               mpx__future_requeue(f)) {
      f->worker = -1; /* never started: not an attempt */
      fifo_push(&requeue, f);
    } else if (task_retries(d, f) > 0 && mpx__future_requeue(f)) {
      f->retries = (int16_t)(task_retries(d, f) - 1);
      f->worker = -1;
      fifo_push(&requeue, f);
    } else {
      mpx__future_fail(f, MPX_EWORKER_LOST,
                       mpx__strdupf("task '%s' was lost with worker %d on %s: %s", f->task->name,
                                    i, w->host[0] ? w->host : "?", detail));
      mpx__future_drop(f);
    }
  }
  /* retried tasks go first, in their original order; the gate counted them out already */
  pthread_mutex_lock(&d->lock);
  if (requeue.n) {
    requeue.tail->next = d->pending.head;
    d->pending.head = requeue.head;
    if (!d->pending.tail) d->pending.tail = requeue.tail;
    d->pending.n += requeue.n;
    if (d->cfg->gate) mpx__gate_return(d->cfg->gate, requeue.n);
  }
  pthread_mutex_unlock(&d->lock);
}

static void check_deadlines(disp *d) {
  double now = mpx__now();
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (w->timed && !w->timed_out && now >= w->deadline) {
      w->timed_out = true;
      d->inner->kill(d->tp, i, true);
    }
  }
}

/* Milliseconds to block in poll: until the nearest deadline, at most 100 ms. */
static int poll_ms(disp *d) {
  double wait = 0.1, now = mpx__now();
  for (int i = 0; i < d->n; i++)
    if (d->w[i].timed && !d->w[i].timed_out && d->w[i].deadline - now < wait)
      wait = d->w[i].deadline - now;
  return wait <= 0 ? 0 : (int)(wait * 1000) + 1;
}

static void handle(disp *d, const mpx__event *ev) {
  if (ev->kind == MPX__EV_MESSAGE) on_message(d, ev->worker, ev->data, ev->len);
  else if (ev->kind == MPX__EV_WORKER_LOST) lose(d, ev->worker, ev->detail, ev);
}


static size_t inflight(const disp *d) {
  size_t k = 0;
  for (int i = 0; i < d->n; i++) k += d->w[i].inflight.n;
  return k;
}

static bool live_workers(const disp *d) {
  for (int i = 0; i < d->n; i++)
    if (!d->w[i].dead) return true;
  return false;
}

/* Nothing can run the pending tasks any more: fail them. */
static void fail_pending(disp *d, int code, const char *why) {
  pthread_mutex_lock(&d->lock);
  fifo q = d->pending;
  d->pending = (fifo){0};
  pthread_mutex_unlock(&d->lock);
  mpx_future *f;
  while ((f = fifo_pop(&q))) { /* unlocked: the callbacks may call into this executor */
    if (d->cfg->gate) mpx__gate_leave(d->cfg->gate);
    mpx__future_fail(f, code, mpx__strdupf("task '%s' %s", f->task->name, why));
    mpx__future_drop(f);
  }
}

static void send_shutdown(disp *d) {
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__SHUTDOWN;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  mpx__wbuf_reset(&d->out);
  if (mpx__codec_pack(&b, &d->lim, &d->out)) return;
  for (int i = 0; i < d->n; i++)
    if (!d->w[i].dead) d->inner->send(d->tp, i, d->out.data, d->out.len);
}

static void *dispatcher_main(void *arg) {
  disp *d = arg;
  mpx__tl_transport = d; /* callbacks run here: the executor must not join this thread from them */
  for (;;) {
    feed_all(d);
    pthread_mutex_lock(&d->lock);
    bool stop = d->stopping && !d->pending.n;
    pthread_mutex_unlock(&d->lock);
    if (stop && !inflight(d)) break;
    if (!live_workers(d)) fail_pending(d, MPX_EINIT, "cannot run: no worker is left");
    mpx__event ev = {0};
    int rc = d->inner->poll(d->tp, &ev, poll_ms(d));
    if (rc) {
      fail_pending(d, rc, "cannot run: the transport failed");
      break;
    }
    handle(d, &ev);
    /* drain whatever else is ready without blocking */
    while (ev.kind != MPX__EV_NONE && !d->inner->poll(d->tp, &ev, 0)) handle(d, &ev);
    check_deadlines(d);
  }
  send_shutdown(d);
  d->inner->stop(d->tp, true);
  pthread_mutex_lock(&d->lock);
  d->exited = true;
  pthread_cond_broadcast(&d->idle);
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

/* ---- start-up: wait for every worker's READY ---------------------------------------------- */

static int await_ready(disp *d) {
  int ready = 0;
  double give_up = mpx__now() + 60;
  while (ready < d->n) {
    mpx__event ev = {0};
    int rc = d->inner->poll(d->tp, &ev, 100);
    if (rc) return rc;
    if (ev.kind == MPX__EV_WORKER_LOST) {
      mpx__set_errmsg("worker %d died while starting: %s", ev.worker, ev.detail);
      return MPX_EINIT;
    }
    if (ev.kind == MPX__EV_MESSAGE) {
      /* each worker's first message must be one READY (the initializer is user code too) */
      Mpx__Batch *b;
      if ((rc = mpx__codec_unpack(ev.data, ev.len, &d->lim, &b))) {
        mpx__set_errmsg("worker %d sent a malformed message while starting (%s)", ev.worker,
                        mpx_strerror(rc));
        return MPX_EINIT;
      }
      const Mpx__Control *c = b->control;
      if (d->w[ev.worker].ready || !c || c->kind != MPX__CONTROL__KIND__READY || b->n_results ||
          b->n_tasks) {
        mpx__set_errmsg("worker %d sent a message other than one READY while starting",
                        ev.worker);
        mpx__codec_free(b);
        return MPX_EINIT;
      }
      if (c->error) {
        take_peer(d, ev.worker);
        char *msg = error_text(d, c->error, ev.worker);
        mpx__set_errmsg("initializer failed in worker %d: %s", ev.worker, msg ? msg : "?");
        free(msg);
        mpx__codec_free(b);
        return MPX_EINIT;
      }
      on_ready(d, ev.worker, c);
      ready++;
      mpx__codec_free(b);
    }
    if (mpx__now() > give_up) {
      mpx__set_errmsg("workers did not report ready within 60 s");
      return MPX_ETIMEDOUT;
    }
  }
  return MPX_OK;
}

static void disp_free(disp *d) {
  mpx__dp_fini(&d->dp);
  mpx__wbuf_free(&d->out);
  free(d->tasks);
  free(d->task_ptrs);
  free(d->w);
  pthread_mutex_destroy(&d->lock);
  pthread_cond_destroy(&d->idle);
  free(d);
}

static int disp_start(mpx__runner **out, const mpx__config *cfg) {
  disp *d = calloc(1, sizeof *d);
  if (!d) return MPX_ENOMEM;
  d->cfg = cfg;
  d->inner = cfg->link;
  d->n = cfg->workers;
  d->lim = mpx__limits_default(cfg->max_payload);
  pthread_mutex_init(&d->lock, NULL);
  pthread_cond_init(&d->idle, NULL);
  d->w = calloc((size_t)d->n, sizeof *d->w);
  d->tasks = calloc(BATCH_MAX, sizeof *d->tasks);
  d->task_ptrs = calloc(BATCH_MAX, sizeof *d->task_ptrs);
  int rc = d->w && d->tasks && d->task_ptrs && !mpx__dp_init(&d->dp, d->n) ? MPX_OK : MPX_ENOMEM;
  for (int i = 0; d->w && i < d->n; i++) d->w[i].rank = -1;
  /* what one worker may make us hold: no message from it is larger (see mpx__config) */
  if (cfg->max_worker_memory && d->lim.max_message > cfg->max_worker_memory)
    d->lim.max_message = cfg->max_worker_memory;
  if (!rc) rc = d->inner->start(&d->tp, cfg);
  if (rc) {
    disp_free(d);
    return rc;
  }
  if (!rc) rc = await_ready(d);
  if (!rc && pthread_create(&d->thread, NULL, dispatcher_main, d)) rc = MPX_ESYS;
  if (rc) {
    send_shutdown(d);
    d->inner->stop(d->tp, true);
    d->inner->destroy(d->tp);
    disp_free(d);
    return rc;
  }
  *out = (mpx__runner *)d;
  return MPX_OK;
}

static int disp_submit(mpx__runner *self, mpx_future *f) {
  disp *d = (disp *)self;
  pthread_mutex_lock(&d->lock);
  if (d->closed) {
    pthread_mutex_unlock(&d->lock);
    return MPX_ESHUTDOWN;
  }
  bool was_empty = d->pending.n == 0;
  fifo_push(&d->pending, f);
  pthread_mutex_unlock(&d->lock);
  if (was_empty) d->inner->wake(d->tp); /* a non-empty queue means a wake is already due */
  return MPX_OK;
}

static void disp_close(mpx__runner *self) {
  disp *d = (disp *)self;
  pthread_mutex_lock(&d->lock);
  d->closed = true;
  pthread_mutex_unlock(&d->lock);
}

static size_t disp_cancel_queued(mpx__runner *self) {
  disp *d = (disp *)self;
  size_t k = 0;
  pthread_mutex_lock(&d->lock);
  fifo q = d->pending;
  d->pending = (fifo){0};
  pthread_mutex_unlock(&d->lock);
  mpx_future *f;
  while ((f = fifo_pop(&q))) { /* unlocked: the callbacks may call into this executor */
    if (d->cfg->gate) mpx__gate_leave(d->cfg->gate);
    k += mpx__future_cancel(f);
    mpx__future_drop(f);
  }
  return k;
}

static void disp_stop(mpx__runner *self, bool wait) {
  disp *d = (disp *)self;
  pthread_mutex_lock(&d->lock);
  d->stopping = d->closed = true;
  pthread_mutex_unlock(&d->lock);
  d->inner->wake(d->tp);
  if (!wait) return;
  pthread_mutex_lock(&d->lock);
  bool join = !d->joined;
  d->joined = true;
  pthread_mutex_unlock(&d->lock);
  if (join) pthread_join(d->thread, NULL);
}

static void disp_destroy(mpx__runner *self) {
  disp *d = (disp *)self;
  d->inner->destroy(d->tp);
  disp_free(d);
}

const mpx__runner_ops mpx__dispatch_runner = {
    .start = disp_start,
    .submit = disp_submit,
    .close = disp_close,
    .cancel_queued = disp_cancel_queued,
    .stop = disp_stop,
    .destroy = disp_destroy,
};
