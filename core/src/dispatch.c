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
 * task passed its time limit. Futures are identified on the wire by call ids that
 * are their addresses (tagged with their number in the window for in-order workers).
 *
 * Workers with a progress page (the link's optional progress op: the process transport;
 * progress.h). A task's claim word in the worker's page reads TAKEN while its batch is packed (so
 * no cancel completes a future whose argument and map chunk are still being read), then gets its
 * call id before the send; the future is SENT from the start (future_impl.h):
 * it reads PENDING, and RUNNING only once the worker has claimed it (the worker claims each task
 * just before running it). Exactly one side wins each claim word, the worker (STARTED) or this
 * process (TAKEN: a user's mpx_future_cancel from any thread, or the dispatcher), so:
 *  - cancel works until the task starts: the worker skips a task it could not claim and sends
 *    no Result for it; the dispatcher drops cancelled futures from its windows every
 *    sweep_interval (20 ms; sweep), and shutdown(cancel_futures) has it cancel every unstarted
 *    task in the windows;
 *  - fairness: a worker whose window has returned nothing for silent_after (5 ms: a long task,
 *    or a stalled process) is fed nothing more; when pending is empty and a worker is idle, the
 *    dispatcher takes back every task the silent workers have not started and feeds the idle
 *    ones (rebalance), so no task waits behind a running one while a worker idles;
 *  - stalls: a worker whose heartbeat (a thread in it bumps it every 50 ms) has not moved for
 *    cfg->stall_timeout is killed and replaced; the transport itself kills a worker that leaves
 *    a frame half-written that long. Its loss re-queues what it had not started;
 *  - time limits: every limit_interval (10 ms) once a timed task was sent, the task each worker
 *    runs (the page's running word) is timed from when the dispatcher first saw it there, and its
 *    worker killed when past its limit; timed tasks are batched like the others.
 * A lost worker's window (lose()): the dispatcher wins back the claim of every task not started
 * (re-queued uncharged, at the head of pending), drops those a user cancelled, fails the task
 * killed for its time limit with MPX_ETIMEDOUT (and then charges nothing else), re-queues
 * uncharged the started ones the worker was not running (run, results not sent), and charges the
 * one it was running (ev->running) a retry: re-queued while retries last, else MPX_EWORKER_LOST
 * ("stalled: no heartbeat for N s; ..." when it was killed as stalled). The transport maps the
 * replacement's fresh page over the same address only after this, so the claims are decided on
 * the old page. shutdown(wait) and destroy wait for started tasks (as Python) and for the rest,
 * which a stalled worker cannot hold longer than stall_timeout.
 *
 * Workers without a page (MPI: ranks share no memory with rank 0). With MPX__CAP_TAKEBACK (MPI)
 * the dispatcher keeps a remote page per rank (its own copy of the claim words,
 * dispatch_remote.c): a sent future is SENT and reads PENDING until the rank reports it started
 * (Control STARTED, lazily; or its result); a cancel, or shutdown(cancel_futures), asks the rank
 * with a TAKEBACK and the rank's own claim word decides (given back: CANCELLED; kept: it runs).
 * Fairness is kept by the same messages (dispatch_pages.c): a silent rank is fed no more, and
 * when pending is empty and a worker idles, a silent rank holding more tasks than it runs at
 * once is sent a TAKEBACK; it answers with a Control RETURNED listing the tasks none of its
 * threads started (which it will never run), and those go back to the head of pending,
 * uncharged, for the idle workers. Nothing is sent to a rank between its TAKEBACK and its
 * RETURNED, nor asked of it again (for fairness) until it has sent results or been sent tasks
 * since its last RETURNED. A loss charges every task the worker held unless the transport
 * reports which one it ran; a task with a time limit goes alone to an idle worker, killed at
 * its deadline from the send (MPI refuses time limits).
 *
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
 *  - a RETURNED is accepted only in answer to a TAKEBACK (once), with bare call ids only, and
 *    only for ids of the worker's window: from a one-slot rank exactly the tail of its window in
 *    order (it starts tasks in order; the ids before keep their numbers), from a hybrid rank any
 *    ids of the window, each once. A task that reached its rank's communicator can at worst give
 *    back itself or the tasks queued behind it, which its rank may do anyway;
 *  - a malformed message, a violation or a result it may not send gets the worker killed and
 *    replaced; its loss charges only the task it was running (the transport's progress word),
 *    the rest of its window is re-queued uncharged. Its messages are ignored until the loss;
 *  - codes are restricted to task failures (mpx__task_code: never MPX_ECANCELLED,
 *    MPX_EWORKER_LOST, ...); the worker's text is kept, but pid, rank, host and slots come from
 *    the link (its peer op, link.h's mpx__peer), never from Control or Error fields;
 *  - sizes are bounded by d->lim (max_message lowered to cfg->max_worker_memory).
 *
 * Files: this one batches, sends, starts and stops; dispatch_recv.c checks a worker's messages
 * and takes its results; dispatch_loss.c handles a lost worker's window (lose(), above);
 * dispatch_pages.c has taking tasks back (claim words and TAKEBACK), what else only workers with
 * a page need, and the time-limit and stall checks; dispatch_remote.c the ranks' claim words;
 * dispatch_stop.c terminate and stop requests; dispatch_impl.h the state they share.
 *
 * Locking: `lock` guards pending, the stop flags and cancel_sent; the windows (w[]) belong to the
 * dispatcher thread alone (and to the starting thread before it exists). Claim words are shared
 * with workers and cancelling threads: orderings are given where they are used (progress.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dispatch_impl.h"
#include "future_impl.h"
#include "os/log.h"
#include "task_impl.h"
#include "link.h"
#include "runner.h"

/* ---- sending ------------------------------------------------------------------------------ */

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
    t->var = c->var;
  }
}

/* Pack and send `k` tasks (the last k of w's window) to worker i. Called under d->lock; tasks
 * it cannot send go to d->unsent, which feed_all fails after unlocking. */
static void send_batch(disp *d, int i, size_t k) {
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_tasks = k;
  b.tasks = d->task_ptrs;
  mpx__wbuf_reset(&d->out);
  int rc = mpx__codec_pack(&b, &d->lim, &d->out);
  wslot *w = &d->w[i];
  /* packed (the arguments are copied out): the words get their call ids, and cancels may win
   * them from here on. Release: see progress.h; the worker reads them after the send */
  uint64_t remote = w->remote ? MPX__CLAIM_REMOTE : 0; /* a rank: the root's copy (progress.h) */
  for (size_t j = 0; rc == 0 && w->page && j < k; j++)
    atomic_store_explicit(&w->page->claim[(w->seq + j) % MPX__CLAIM_RING],
                          MPX__CALL_ADDR(d->tasks[j].call_id) | remote, memory_order_release);
  if (rc == 0) rc = mpx__dp_send(&d->dp, d->inner, d->tp, i, d->out.data, d->out.len);
  else mpx__dp_reset(&d->dp);
  if (rc == 0 || rc == MPX_EWORKER_LOST) { /* a loss: poll reports it, lose() re-queues */
    w->seq += k;
    return;
  }
  /* never sent: their claim words are free again (relaxed: the worker never sees them) */
  for (size_t j = 0; w->page && j < k; j++)
    atomic_store_explicit(&w->page->claim[(w->seq + j) % MPX__CLAIM_RING], 0, memory_order_relaxed);
  /* The batch could not be packed or sent (a limit the submit checks did not cover, such as a
   * map chunk of more items than the codec takes, or no memory): fail these k tasks, not the
   * worker, which got nothing. */
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

/* Fill worker i's window from pending (under d->lock), taking at most `share` tasks. With a
 * progress page each task's claim word reads TAKEN before the future becomes SENT (a cancel that
 * sees SENT then waits), and gets its call id once the batch is packed (send_batch); a word that
 * still holds an unclaimed id (the worker is a whole ring behind) ends the batch. */
void mpx__disp_feed(disp *d, int i, size_t share) {
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
    /* without a page, a timed task goes alone to an idle worker (killing it loses nothing else) */
    if (timed && !w->page && (k || w->inflight.n)) break;
    /* arguments of one batch stay under max_payload together (one may reach it alone), so a
     * batch always fits max_message (at least twice max_payload, see mpx__limits_default) */
    if (k && bytes + f->arg_len > d->lim.max_payload) break;
    /* a big argument waits while the worker's argument ring is all in use (dataplane.h) */
    if (!mpx__dp_room(&d->dp, d->cfg->caps, i, f->arg_len, f, w->inflight.head)) break;
    _Atomic uint64_t *word = NULL;
    if (w->page) {
      word = &w->page->claim[(w->seq + k) % MPX__CLAIM_RING];
      /* relaxed: only an unclaimed id matters, and only the worker changes it meanwhile */
      if (atomic_load_explicit(word, memory_order_relaxed) > MPX__CLAIM_TAKEN) break;
    }
    bytes += f->arg_len;
    fifo_pop(&d->pending);
    if (d->cfg->gate) mpx__gate_leave(d->cfg->gate);
    bool ok;
    if (word) {
      /* TAKEN until the batch is packed (send_batch): a cancel that sees it waits, so the future
       * cannot complete while its argument and its map chunk (which its map may free once it is
       * cancelled) are still being read here */
      atomic_store_explicit(word, MPX__CLAIM_TAKEN, memory_order_relaxed);
      /* relaxed: the CAS to SENT publishes it; a rank decides this future's cancels */
      if (w->remote) atomic_fetch_or_explicit(&f->state, MPX__F_REMOTE, memory_order_relaxed);
      ok = mpx__future_send(f, word);
      if (!ok) atomic_store_explicit(word, 0, memory_order_relaxed);
    } else {
      ok = mpx__future_start(f);
    }
    if (!ok) { /* cancelled while pending */
      mpx__future_drop(f);
      continue;
    }
    f->worker = (int16_t)i;
    if (!w->inflight.n) w->busy_since = mpx__now();
    fifo_push(&w->inflight, f);
    fill_task(&d->tasks[k], f, call_id(w, f, w->seq_sent++));
    /* a big argument goes out of band: into a free segment of the worker's argument ring */
    mpx__dp_arg(&d->dp, d->cfg->caps, &d->tasks[k], i, f, w->inflight.head);
    d->task_ptrs[k] = &d->tasks[k];
    k++;
    w->sent++;
    if (timed) d->timed_seen = true;
    if (timed && !w->page) {
      w->timed = true;
      w->deadline = mpx__now() + task_timeout(d, f);
      break;
    }
  }
  if (k) {
    w->answered = false;
    send_batch(d, i, k);
  }
}

/* Fail what send_batch could not send (after d->lock is released: callbacks run). */
void mpx__disp_fail_unsent(disp *d) {
  for (mpx_future *f; (f = fifo_pop(&d->unsent));) {
    mpx__future_fail(f, f->error, mpx__strdupf("task '%s' could not be sent to worker %d: %s",
                                               f->task->name, f->worker, mpx_strerror(f->error)));
    mpx__future_drop(f);
  }
}

/* Share pending tasks among the workers with room, idle workers first, starting at a rotating
 * worker: a window sized from an average that is out of date (short tasks, then long ones) must
 * not put every long task on one worker, nor a task behind a long one while a worker idles.
 * When the next task's argument goes into a segment, idle workers holding a segment that fits it
 * come first (one memcpy into warm pages, where another idle worker needs new ones). */
static void feed_all(disp *d) {
  pthread_mutex_lock(&d->lock);
  if (d->pending.n) {
    size_t open = 0;
    for (int i = 0; i < d->n; i++) open += has_room(d, &d->w[i]);
    if (open) {
      size_t share = (d->pending.n + open - 1) / open;
      const mpx_future *h = d->pending.head; /* a map chunk's items go in the frame */
      size_t big = h->arg_len >= MPX__SEG_MIN &&
                           !(atomic_load_explicit(&h->state, memory_order_relaxed) & MPX__F_CHUNK)
                       ? h->arg_len
                       : 0;
      for (int pass = big ? 0 : 1; pass < 3; pass++)
        for (int k = 0; k < d->n && d->pending.n; k++) {
          int i = (d->next + k) % d->n;
          if ((d->w[i].inflight.n == 0) != (pass < 2)) continue;
          if (pass == 0 && !mpx__dp_warm(&d->dp, d->cfg->caps, i, big)) continue;
          mpx__disp_feed(d, i, share);
        }
    }
  }
  pthread_mutex_unlock(&d->lock);
  mpx__disp_fail_unsent(d);
}

static void handle(disp *d, const mpx__event *ev) {
  if (ev->kind == MPX__EV_MESSAGE) mpx__disp_on_message(d, ev->worker, ev->data, ev->len);
  else if (ev->kind == MPX__EV_WORKER_LOST) mpx__disp_lose(d, ev->worker, ev->detail, ev);
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
    if (!d->w[i].dead || d->w[i].retired) d->inner->send(d->tp, i, d->out.data, d->out.len);
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
    int rc = d->inner->poll(d->tp, &ev, mpx__disp_poll_ms(d));
    if (rc) {
      fail_pending(d, rc, "cannot run: the transport failed");
      mpx__disp_fail_windows(d, rc);
      break;
    }
    handle(d, &ev);
    /* drain whatever else is ready without blocking */
    while (ev.kind != MPX__EV_NONE && !d->inner->poll(d->tp, &ev, 0)) handle(d, &ev);
    mpx__disp_check_deadlines(d);
    mpx__disp_housekeeping(d);
  }
  send_shutdown(d);
  d->inner->stop(d->tp, true);
  pthread_mutex_lock(&d->lock);
  d->exited = true;
  d->cancel_sent = false;
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
        mpx__disp_take_peer(d, ev.worker);
        char *msg = mpx__disp_error_text(d, c->error, ev.worker);
        mpx__set_errmsg("initializer failed in worker %d: %s", ev.worker, msg ? msg : "?");
        free(msg);
        mpx__codec_free(b);
        return MPX_EINIT;
      }
      mpx__disp_on_ready(d, ev.worker, c);
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
  for (int i = 0; d->w && i < d->n; i++) free(d->w[i].shadow);
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
  if (!rc) rc = mpx__disp_shadows(d); /* ranks: the root's copy of their claim words */
  /* what one worker may make us hold: no message from it is larger (see mpx__config) */
  if (cfg->max_worker_memory && d->lim.max_message > cfg->max_worker_memory)
    d->lim.max_message = cfg->max_worker_memory;
  if (!rc) rc = d->inner->start(&d->tp, cfg);
  if (rc) {
    disp_free(d);
    return rc;
  }
  /* arg_reserve: the copies of the first big arguments land in warm pages (one per worker) */
  if (cfg->arg_reserve) mpx__seg_pool_warm(cfg->arg_reserve, d->n);
  if (!rc) rc = await_ready(d);
  if (!rc && pthread_create(&d->thread, NULL, dispatcher_main, d)) rc = MPX_ESYS;
  if (rc) {
    send_shutdown(d);
    d->inner->stop(d->tp, true);
    d->inner->destroy(d->tp);
    disp_free(d);
    return rc;
  }
  mpx__disp_watch_stops(d, true); /* dispatch_stop.c */
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

/* Cancel what is pending here, then have the dispatcher cancel what the windows hold and no
 * worker has started (it owns the windows); wait for that, briefly. Returns the pending count. */
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
  /* the windows are the dispatcher's: it cancels their unstarted tasks (housekeeping). Wait for
   * that, briefly, unless this is the dispatcher thread itself (a done-callback it runs): then it
   * happens when the callback has returned. */
  pthread_mutex_lock(&d->lock);
  d->cancel_sent = !d->exited;
  pthread_mutex_unlock(&d->lock);
  d->inner->wake(d->tp);
  if (mpx__tl_transport == d) return k;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  pthread_mutex_lock(&d->lock);
  while (d->cancel_sent && !d->exited)
    if (pthread_cond_timedwait(&d->idle, &d->lock, &until)) break;
  pthread_mutex_unlock(&d->lock);
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
  mpx__disp_watch_stops(d, false);
  pthread_mutex_lock(&d->lock); /* a canceller still reading d (mpx__disp_cancel_remote) */
  while (d->cancellers) pthread_cond_wait(&d->idle, &d->lock);
  pthread_mutex_unlock(&d->lock);
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
    .terminate = mpx__disp_terminate,
};
