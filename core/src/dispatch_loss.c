/* dispatch_loss.c: what the dispatcher does when a worker is gone (dispatch.c has the whole
 * picture): its window is re-queued, charged or failed; and ending a worker that broke the
 * protocol (mpx__disp_violate). Runs on the dispatcher thread, which owns
 * the windows; pending is spliced under d->lock, and futures are completed with it released
 * (their callbacks may call into the executor). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "dispatch_impl.h"
#include "errmsg.h"
#include "os/log.h"
#include "task_impl.h"

/* Put `q` (futures made PENDING again, in order) back at the head of pending, where the gate
 * counts them again. Under d->lock. */
void mpx__disp_requeue_front(disp *d, fifo *q) {
  if (!q->n) return;
  q->tail->next = d->pending.head;
  d->pending.head = q->head;
  if (!d->pending.tail) d->pending.tail = q->tail;
  d->pending.n += q->n;
  if (d->cfg->gate) mpx__gate_return(d->cfg->gate, q->n);
  *q = (fifo){0};
}

static bool ev_known(const mpx__event *ev) { return ev && ev->running_known; }

/* Charge one lost attempt to f: re-queue it while its retries last, else fail it. */
static void charge(disp *d, int i, mpx_future *f, const char *detail, fifo *requeue) {
  wslot *w = &d->w[i];
  if (task_retries(d, f) > 0 && mpx__future_requeue(f)) {
    f->retries = (int16_t)(task_retries(d, f) - 1);
    f->worker = -1;
    fifo_push(requeue, f);
    return;
  }
  mpx__future_fail(f, MPX_EWORKER_LOST,
                   mpx__strdupf("task '%s' was lost with worker %d on %s: %s", f->task->name, i,
                                w->host[0] ? w->host : "?", detail));
  mpx__future_drop(f);
}

/* Worker i is gone: re-queue or fail what it held. With a progress page, the dispatcher first
 * wins back the claim of every task the worker had not started: those go back to the queue
 * uncharged (a future a user cancelled meanwhile is only dropped). Of the started ones only the
 * one it was running (ev->running) is charged a retry; the others ran but their results were
 * not sent, and are re-queued uncharged. A task killed for its time limit fails with
 * MPX_ETIMEDOUT and then nothing else is charged. Without a page, when the transport knows what
 * the worker was running (ev->running_known) only that task is charged; otherwise (ev NULL, or
 * MPI) every task it held is. */
void mpx__disp_lose(disp *d, int i, const char *detail, const mpx__event *ev) {
  wslot *w = &d->w[i];
  char who[160], why[sizeof w->why + 64];
  where(w, i, who, sizeof who);
  if (w->killed) { /* ended for a protocol violation: say that, not just 'killed by signal 9' */
    snprintf(why, sizeof why, "%s", w->why);
    detail = why;
  } else if (w->stalled) {
    snprintf(why, sizeof why, "stalled: %s for %.3g s; %s",
             w->remote ? "no answer" : "no heartbeat", d->cfg->stall_timeout, detail);
    detail = why;
  }
  bool timed_out = w->timed_out;
  uint64_t timed_id = w->timed_out_id;
  w->ready = w->timed = w->timed_out = w->stalled = w->killed = false;
  w->timed_out_id = 0;
  w->asked = w->answered = false; /* no RETURNED is due from a lost worker */
  mpx__dp_forget(&d->dp, i);       /* its result ring: nothing is left mapped of a dead worker */
  pthread_mutex_lock(&d->lock);
  w->ask_due = w->flushing = false;
  pthread_mutex_unlock(&d->lock);
  /* a worker that cannot be ended alone (a rank) is never replaced: nothing will say READY */
  if (!(d->cfg->caps & MPX__CAP_KILL_ONE)) w->dead = true;
  mpx_future *f;
  fifo requeue = {0}; /* the window is the dispatcher's own: no lock until the splice, and the
                         failures' callbacks run unlocked */
  for (uint64_t seq = w->seq_done; (f = fifo_pop(&w->inflight)); seq++) {
    if (d->term_done) { /* killed by mpx_executor_terminate: nothing is retried */
      mpx__disp_lose_terminated(d, i, f);
      continue;
    }
    uint64_t id = call_id(w, f, seq), v;
    if (w->remote && !ev_known(ev)) { /* a rank abandoned: its words say what it started */
      uint64_t said = atomic_load_explicit(
          (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed),
          memory_order_acquire);
      if (said == MPX__CLAIM_STARTED) {
        charge(d, i, f, detail, &requeue);
      } else if (said & MPX__CLAIM_CANCEL) { /* a cancel waits for it: the rank never answered */
        mpx__future_cancel(f);
        mpx__future_drop(f);
      } else if (mpx__future_requeue(f)) { /* not known to have started: uncharged */
        f->worker = -1;
        fifo_push(&requeue, f);
      } else {
        mpx__future_drop(f);
      }
    } else if (w->page && !w->remote) { /* a rank's remote page decides nothing else */
      if (mpx__disp_take_back(f, &v)) { /* never started: not an attempt */
        if (mpx__future_requeue(f)) {
          f->worker = -1;
          fifo_push(&requeue, f);
        } else {
          mpx__future_drop(f);
        }
      } else if (v == MPX__CLAIM_TAKEN) { /* cancelled by the user, who completes it */
        mpx__future_drop(f);
      } else if (id == timed_id) {
        mpx__future_fail(f, MPX_ETIMEDOUT,
                         mpx__strdupf("task '%s' ran past its %.3g s time limit; %s was killed",
                                      f->task->name, task_timeout(d, f), who));
        mpx__future_drop(f);
      } else if (timed_id || (ev && id != ev->running)) {
        if (mpx__future_requeue(f)) { /* ran (results not sent) or was killed by us: uncharged */
          f->worker = -1;
          fifo_push(&requeue, f);
        } else {
          mpx__future_drop(f);
        }
      } else {
        charge(d, i, f, detail, &requeue);
      }
    } else if (timed_out) {
      mpx__future_fail(f, MPX_ETIMEDOUT,
                       mpx__strdupf("task '%s' ran past its %.3g s time limit; %s was killed",
                                    f->task->name, task_timeout(d, f), who));
      mpx__future_drop(f);
    } else if (ev && ev->running_known && id != ev->running && mpx__future_requeue(f)) {
      f->worker = -1; /* never started: not an attempt */
      fifo_push(&requeue, f);
    } else {
      charge(d, i, f, detail, &requeue);
    }
  }
  /* retried tasks go first, in their original order; the gate counted them out already */
  pthread_mutex_lock(&d->lock);
  mpx__disp_requeue_front(d, &requeue);
  pthread_mutex_unlock(&d->lock);
}

/* Worker i broke the protocol (see 'Trust' in the header): it is ended and replaced, and its loss
 * charges only the task it was running. Its messages are ignored until the transport reports the
 * loss; lose() then uses `why` as the detail. A transport that cannot end one worker (MPI) gets
 * the slot retired instead: the oldest task of its window (the one it runs, or runs first) is
 * charged, the rest goes back to the queue. */
void mpx__disp_violate(disp *d, int i, const char *fmt, ...) {
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
  w->dead = w->retired = true; /* still told SHUTDOWN, so that it says BYE */
  mpx__event ev = {.kind = MPX__EV_WORKER_LOST, .worker = i, .running_known = true};
  ev.running = w->inflight.head ? call_id(w, w->inflight.head, w->seq_done) : 0;
  mpx__disp_lose(d, i, w->why, &ev);
}
