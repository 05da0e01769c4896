/* dispatch_pages.c: the dispatcher's taking back of tasks a worker has not started, its other
 * work for workers with a progress page (progress.h: the process transport), and its time-limit
 * and stall checks. dispatch.c's header has the whole picture; this file: winning claims back
 * (take_back), dropping from the windows what a user cancelled (sweep), cancelling the windows'
 * unstarted tasks for shutdown(cancel_futures), taking back a silent worker's unstarted tasks for
 * idle workers (rebalance: through the claim words of a page, or by a Control TAKEBACK to a rank
 * with MPX__CAP_TAKEBACK, whose RETURNED mpx__disp_returned checks and re-queues), killing a
 * worker whose heartbeat stopped or whose running task passed its limit, and failing the windows
 * when the link fails. All of it runs on the dispatcher thread, which owns the windows; pending
 * is touched under d->lock, and futures are completed with it released (their callbacks may call
 * into the executor). Claim words are shared with workers and cancelling threads: each atomic
 * says its ordering. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch_impl.h"
#include "errmsg.h"
#include "task_impl.h"

/* Win back the claim of a SENT future from its worker: true if the worker had not started it
 * (it will skip it). Otherwise *v says who had it: STARTED (the worker) or TAKEN (a user's
 * cancel, which makes the future CANCELLED). */
bool mpx__disp_take_back(mpx_future *f, uint64_t *v) {
  _Atomic uint64_t *word =
      (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed);
  *v = (uint64_t)(uintptr_t)f;
  /* acq_rel: as the worker's and a canceller's CAS on the same word (progress.h) */
  return word && atomic_compare_exchange_strong_explicit(
                     word, v, MPX__CLAIM_TAKEN, memory_order_acq_rel, memory_order_acquire);
}

/* Drop from the windows the futures a user cancelled (the worker skips them and never answers
 * for them), so that they do not hold window room or keep shutdown waiting. */
static void sweep(disp *d) {
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (!w->page || w->remote) continue; /* a rank's window holds no CANCELLED future */
    mpx_future *prev = NULL, *f = w->inflight.head;
    while (f) {
      mpx_future *next = f->next;
      if (mpx__future_state(f) == MPX_CANCELLED) {
        if (prev)
          prev->next = next;
        else
          w->inflight.head = next;
        if (w->inflight.tail == f) w->inflight.tail = prev;
        w->inflight.n--;
        f->next = NULL;
        mpx__future_drop(f);
      } else {
        prev = f;
      }
      f = next;
    }
  }
}

/* Take back from worker i's window every task it has not started (all of them when `all`...);
 * `cancel`: cancel them instead of re-queuing. Returns how many were taken. */
static size_t take_window(disp *d, int i, bool cancel, fifo *out) {
  wslot *w = &d->w[i];
  size_t k = 0;
  mpx_future *prev = NULL, *f = w->inflight.head;
  while (f) {
    mpx_future *next = f->next;
    uint64_t v;
    if (mpx__disp_take_back(f, &v)) {
      if (prev)
        prev->next = next;
      else
        w->inflight.head = next;
      if (w->inflight.tail == f) w->inflight.tail = prev;
      w->inflight.n--;
      f->next = NULL;
      k++;
      if (cancel) {
        mpx__future_cancel(f);
        mpx__future_drop(f);
      } else if (mpx__future_requeue(f)) {
        f->worker = -1;
        fifo_push(out, f);
      } else {
        mpx__future_drop(f);
      }
    } else {
      prev = f;
    }
    f = next;
  }
  return k;
}

/* Ask worker i (a rank without a page) to give back what it has not started: a Control
 * TAKEBACK. Nothing more is sent to it until its RETURNED (mpx__disp_returned). */
void mpx__disp_ask_back(disp *d, int i) {
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__TAKEBACK;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  mpx__wbuf_reset(&d->out);
  if (mpx__codec_pack(&b, &d->lim, &d->out)) return;
  int rc = d->inner->send(d->tp, i, d->out.data, d->out.len);
  d->w[i].asked = rc == MPX_OK;
  if (!d->w[i].remote || rc) return;
  pthread_mutex_lock(&d->lock); /* cancellers read it: not waited for past stall_timeout */
  d->w[i].ask_due = true;
  d->w[i].ask_at = mpx__now();
  pthread_mutex_unlock(&d->lock);
}

/* Fairness: when nothing is pending and a worker is idle, take back the tasks that a silent
 * worker (busy on a long task for SILENT, or stalled) has not started, and give them to the idle
 * workers. With a page the claim words are won here; a rank (MPX__CAP_TAKEBACK) is sent a
 * TAKEBACK when its window holds more tasks than it runs at once, and what it gives back is
 * re-queued when its RETURNED comes (mpx__disp_returned): the idle workers get it then. */
static void rebalance(disp *d) {
  pthread_mutex_lock(&d->lock);
  bool empty = d->pending.n == 0;
  pthread_mutex_unlock(&d->lock);
  if (!empty) return;
  double now = mpx__now();
  int idle = 0;
  for (int i = 0; i < d->n; i++)
    idle += d->w[i].reclaim && has_room(d, &d->w[i]) && !d->w[i].inflight.n;
  if (!idle) return;
  fifo got = {0};
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (!w->ready || !w->reclaim || !quiet(d, w, now)) continue;
    if (w->page && !w->remote)
      take_window(d, i, false, &got);
    else if (!w->asked && !w->answered && w->inflight.n > (size_t)w->slots)
      mpx__disp_ask_back(d, i);
  }
  if (!got.n) return;
  size_t n = got.n, share = (n + (size_t)idle - 1) / (size_t)idle;
  pthread_mutex_lock(&d->lock);
  mpx__disp_requeue_front(d, &got);
  for (int i = 0; i < d->n && d->pending.n; i++)
    if (d->w[i].page && !d->w[i].inflight.n) mpx__disp_feed(d, i, share);
  pthread_mutex_unlock(&d->lock);
  mpx__disp_fail_unsent(d);
  (void)n;
}

/* Time limits and stalls. Without a page: a timed task is alone on its worker, killed at its
 * deadline from the send. With one: a worker whose heartbeat has not moved for stall_timeout is
 * killed (lose() re-queues what it had not started); and every LIMIT_EVERY the running word of
 * each worker is read: a task is timed from when its id was first seen there (at most
 * LIMIT_EVERY after it started: the worker reads no clock per task), so timed tasks batch like
 * others and the clock starts when the task does. */
void mpx__disp_check_deadlines(disp *d) {
  double now = mpx__now();
  bool limits = d->timed_seen && now - d->limits_at >= LIMIT_EVERY(d);
  if (limits) d->limits_at = now;
  mpx__disp_watch_ranks(d, now); /* ranks (no heartbeat the root can read) */
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (w->timed && !w->timed_out && now >= w->deadline) {
      w->timed_out = true;
      d->inner->kill(d->tp, i, true);
    }
    if (!w->page || w->remote || !w->ready || w->stalled || w->timed_out_id) continue;
    /* relaxed: a counter compared with its last value */
    uint64_t beat = atomic_load_explicit(&w->page->heartbeat, memory_order_relaxed);
    if (beat != w->beat) {
      w->beat = beat;
      w->beat_at = now;
    } else if (now - w->beat_at > d->cfg->stall_timeout) {
      w->stalled = true;
      d->inner->kill(d->tp, i, true);
      continue;
    }
    if (!limits) continue;
    /* relaxed: a hint; an id seen late only starts its clock late */
    uint64_t id = atomic_load_explicit(&w->page->running, memory_order_relaxed);
    if (id != w->run_id) {
      w->run_id = id;
      w->run_seen = now;
      continue;
    }
    if (!id || !w->inflight.n) continue;
    mpx_future *f = w->inflight.head;
    while (f && call_id(w, f, 0) != id) f = f->next; /* page workers: seq is not used */
    double limit = f ? task_timeout(d, f) : 0;
    if (limit > 0 && now - w->run_seen > limit) {
      w->timed_out_id = id;
      d->inner->kill(d->tp, i, true);
    }
  }
}

/* Milliseconds to block in poll: until the nearest deadline, at most 100 ms (LIMIT_EVERY once
 * timed tasks run on workers with a page). */
int mpx__disp_poll_ms(disp *d) {
  double wait = d->timed_seen && LIMIT_EVERY(d) < 0.1 ? LIMIT_EVERY(d) : 0.1, now = mpx__now();
  for (int i = 0; i < d->n; i++)
    if (d->w[i].timed && !d->w[i].timed_out && d->w[i].deadline - now < wait)
      wait = d->w[i].deadline - now;
  return wait <= 0 ? 0 : (int)(wait * 1000) + 1;
}

/* The transport failed: no result will come. Fail what the windows hold (a future must not stay
 * SENT: its claim word goes away with the transport). */
void mpx__disp_fail_windows(disp *d, int code) {
  for (int i = 0; i < d->n; i++) {
    mpx_future *f;
    while ((f = fifo_pop(&d->w[i].inflight))) {
      uint64_t v;
      if (!d->w[i].page || d->w[i].remote || mpx__disp_take_back(f, &v) || v != MPX__CLAIM_TAKEN)
        mpx__future_fail(f, code,
                         mpx__strdupf("task '%s' was lost: the transport failed", f->task->name));
      mpx__future_drop(f); /* a future a user cancelled is CANCELLED already */
    }
  }
}

/* Sweeps, shutdown(cancel_futures), cancels on ranks and fairness. */
void mpx__disp_housekeeping(disp *d) {
  double now = mpx__now();
  pthread_mutex_lock(&d->lock);
  bool cancel = d->cancel_sent, term = d->terminating, asks = d->cancel_asked;
  d->cancel_asked = false;
  for (int i = 0; asks && i < d->n; i++) {
    d->w[i].want_back |= d->w[i].cancel_asks > 0;
    d->w[i].cancel_asks = 0;
  }
  pthread_mutex_unlock(&d->lock);
  if (asks) mpx__disp_ask_cancels(d);
  if (term && !d->term_done) mpx__disp_terminate_now(d); /* dispatch_stop.c */
  if (d->inner->halt) mpx__disp_forward_stops(d);
  if (cancel) {
    for (int i = 0; i < d->n; i++)
      if (d->w[i].page && !d->w[i].remote) {
        take_window(d, i, true, NULL);
        /* running tasks are asked to stop (mpx_task_should_stop). relaxed: a polled flag */
        atomic_store_explicit(&d->w[i].page->stop_all, 1, memory_order_relaxed);
      }
    if (!mpx__disp_flush_ranks(d)) {
      /* workers without pages: their running tasks are asked through the link, once the ranks
       * gave back what they had not started (as quickly as before: no longer a round earlier) */
      mpx__disp_halt_all(d);
      pthread_mutex_lock(&d->lock);
      d->cancel_sent = false;
      pthread_cond_broadcast(&d->idle);
      pthread_mutex_unlock(&d->lock);
    }
  }
  if (now - d->swept_at >= SWEEP_EVERY(d)) {
    d->swept_at = now;
    sweep(d);
  }
  rebalance(d);
}

/* Futures a rank gave back (`k` of them, out of its window): PENDING again, at the head of
 * pending, uncharged (they never started). */
static void requeue_back(disp *d, wslot *w, fifo *back, size_t k) {
  w->sent -= (long)k;
  fifo requeue = {0};
  for (mpx_future *f; (f = fifo_pop(back));) {
    if (w->remote) {
      /* its word is free again; a cancel that marked it wins: the rank will never run it.
       * acq_rel: against the canceller's CAS, one of the two sees the other's value */
      uint64_t v = atomic_exchange_explicit(
          (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed),
          MPX__CLAIM_TAKEN, memory_order_acq_rel);
      if (v & MPX__CLAIM_CANCEL) {
        mpx__future_cancel(f); /* unlocked: its callbacks may call into the executor */
        mpx__future_drop(f);
        continue;
      }
    }
    if (mpx__future_requeue(f)) {
      f->worker = -1;
      fifo_push(&requeue, f);
    } else {
      mpx__future_drop(f);
    }
  }
  pthread_mutex_lock(&d->lock);
  mpx__disp_requeue_front(d, &requeue);
  pthread_mutex_unlock(&d->lock);
}

/* Worker i's Control RETURNED (Batch b): the tasks it gives back, which it will never run, as bare
 * call ids. Accepted only in answer to a TAKEBACK (one RETURNED per TAKEBACK), only with no data
 * and no error, and only for ids of its window: a one-slot rank starts its tasks in order, so it
 * must give back exactly the tail of its window, in order (then the numbers of the ids before it
 * stay as they were); a hybrid rank any ids of its window, each once. Anything else is a
 * violation (a task that reached the rank's communicator). The futures go back to the head of
 * pending, uncharged (PENDING again); idle workers get them at the next feed. */
void mpx__disp_returned(disp *d, int i, const Mpx__Batch *b) {
  wslot *w = &d->w[i];
  size_t k = b->n_results;
  if (!w->asked) {
    mpx__disp_violate(d, i, "sent RETURNED, which was not asked for");
    return;
  }
  w->asked = false;
  w->answered = true;
  for (size_t j = 0; j < k; j++)
    if (b->results[j]->error || b->results[j]->data.len) {
      mpx__disp_violate(d, i, "sent RETURNED with a result in it");
      return;
    }
  fifo back = {0};
  if (w->slots == 1) {
    if (k > w->inflight.n) {
      mpx__disp_violate(d, i, "gave back %zu tasks, more than the %zu it holds", k, w->inflight.n);
      return;
    }
    size_t keep = w->inflight.n - k;
    mpx_future *last = NULL, *f = w->inflight.head;
    for (size_t j = 0; j < keep; j++) last = f, f = f->next;
    mpx_future *tail = f;
    for (size_t j = 0; j < k; j++, f = f->next)
      if (call_id(w, f, w->seq_done + keep + j) != b->results[j]->call_id) {
        mpx__disp_violate(d, i, "gave back call id 0x%llx, which is not the tail of its window",
                          (unsigned long long)b->results[j]->call_id);
        return;
      }
    if (last)
      last->next = NULL;
    else
      w->inflight.head = NULL;
    w->inflight.tail = last;
    w->inflight.n = keep;
    w->seq_sent -= k; /* the ids before them keep their numbers */
    for (f = tail; f;) {
      mpx_future *next = f->next;
      fifo_push(&back, f);
      f = next;
    }
  } else {
    for (size_t j = 0; j < k; j++) {
      mpx_future *f = NULL;
      for (mpx_future *prev = NULL, *g = w->inflight.head; g; prev = g, g = g->next)
        if ((uint64_t)(uintptr_t)g == b->results[j]->call_id) { /* hybrid ids: plain addresses */
          if (prev)
            prev->next = g->next;
          else
            w->inflight.head = g->next;
          if (w->inflight.tail == g) w->inflight.tail = prev;
          w->inflight.n--;
          f = g;
          break;
        }
      if (!f) { /* what it gave back before this id is still given back */
        requeue_back(d, w, &back, j);
        mpx__disp_violate(d, i, "gave back call id 0x%llx, which it does not hold",
                          (unsigned long long)b->results[j]->call_id);
        return;
      }
      fifo_push(&back, f);
    }
  }
  requeue_back(d, w, &back, k);
  if (!w->remote) return;
  /* what it kept, it started: it gives back every task no runner has claimed */
  for (mpx_future *f = w->inflight.head; f; f = f->next) mpx__disp_mark_started(f);
  pthread_mutex_lock(&d->lock);
  w->flushing = w->ask_due = false;
  pthread_cond_broadcast(&d->idle); /* cancellers waiting for this answer */
  pthread_mutex_unlock(&d->lock);
}
