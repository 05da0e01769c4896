/* dispatch_stop.c: mpx_executor_terminate on the dispatcher (runner.h's terminate op; dispatch.c
 * has the whole picture).
 *
 * The executor closed the runner and cancelled what was pending before it calls terminate,
 * which only raises `terminating` (under d->lock) and wakes the dispatcher. The dispatcher thread
 * acts on it in housekeeping (mpx__disp_terminate_now), once:
 *  - every worker's page gets `stop_all` (progress.h): a task still running sees
 *    mpx_task_should_stop until its process goes;
 *  - a link that can end one worker (processes) kills every worker, without replacement. Each
 *    loss then decides that worker's window here (mpx__disp_lose_terminated, from lose()): a task
 *    the worker had not started is cancelled (its claim is won back), one a user cancelled is
 *    only dropped, and every other fails with MPX_ETERMINATED. Nothing is retried. The link's
 *    stop(wait) then reaps every process: no child is left behind;
 *  - a link that cannot (MPI ranks) retires every rank: the futures it holds fail with
 *    MPX_ETERMINATED at once, whatever it sends later is ignored, and it is still told SHUTDOWN,
 *    after which it ends the tasks it was sent and says BYE.
 * Everything here but mpx__disp_terminate runs on the dispatcher thread, which owns the windows;
 * futures are completed without d->lock held (their callbacks may call into the executor). */
#include <pthread.h>
#include <stdatomic.h>

#include "dispatch_impl.h"
#include "task_impl.h"

void mpx__disp_terminate(mpx__runner *self) {
  disp *d = (disp *)self;
  pthread_mutex_lock(&d->lock);
  d->terminating = true;
  pthread_mutex_unlock(&d->lock);
  d->inner->wake(d->tp);
}

static void fail_terminated(mpx_future *f, const char *who) {
  mpx__future_fail(f, MPX_ETERMINATED,
                   mpx__strdupf("task '%s' was stopped: its executor was terminated (%s)",
                                f->task->name, who));
  mpx__future_drop(f);
}

void mpx__disp_lose_terminated(disp *d, int i, mpx_future *f) {
  (void)d;
  uint64_t v;
  if (d->w[i].page && mpx__disp_take_back(f, &v)) { /* never started: cancelled, as queued */
    mpx__future_cancel(f);
    mpx__future_drop(f);
  } else if (d->w[i].page && v == MPX__CLAIM_TAKEN) { /* cancelled by a user, who completed it */
    mpx__future_drop(f);
  } else {
    char who[160];
    where(&d->w[i], i, who, sizeof who);
    fail_terminated(f, who);
  }
}

void mpx__disp_forward_stops(disp *d) {
  /* relaxed: a hint to look; the flags themselves are read below */
  uint64_t asked = atomic_load_explicit(&mpx__stop_asked, memory_order_relaxed);
  if (asked == d->stops_seen) return;
  d->stops_seen = asked;
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if ((w->page && !w->remote) || w->dead) continue; /* ranks only (remote pages) */
    uint64_t seq = w->seq_done;
    for (mpx_future *f = w->inflight.head; f; f = f->next, seq++) {
      uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
      if (!(s & MPX__F_STOP) || (s & MPX__F_STOP_SENT)) continue;
      atomic_fetch_or_explicit(&f->state, MPX__F_STOP_SENT, memory_order_relaxed);
      d->inner->halt(d->tp, i, call_id(w, f, seq));
    }
  }
}

void mpx__disp_halt_all(disp *d) {
  if (!d->inner->halt) return;
  for (int i = 0; i < d->n; i++)
    if ((!d->w[i].page || d->w[i].remote) && !d->w[i].dead)
      d->inner->halt(d->tp, i, MPX__HALT_ALL);
}

void mpx__disp_terminate_now(disp *d) {
  d->term_done = true;
  mpx__disp_halt_all(d); /* ranks: their running tasks see should_stop */
  bool kill = (d->cfg->caps & MPX__CAP_KILL_ONE) != 0;
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    /* relaxed: a flag the worker's task polls */
    if (w->page) atomic_store_explicit(&w->page->stop_all, 1, memory_order_relaxed);
    if (kill) {
      d->inner->kill(d->tp, i, false); /* its loss comes back through lose() */
      continue;
    }
    if (w->dead) continue;
    char who[160];
    where(w, i, who, sizeof who);
    w->ready = false;
    w->dead = w->retired = true; /* later messages are ignored; it is still told SHUTDOWN */
    mpx_future *f;
    while ((f = fifo_pop(&w->inflight))) fail_terminated(f, who);
  }
}

static void wake_dispatcher(void *arg) {
  disp *d = arg;
  d->inner->wake(d->tp);
}

void mpx__disp_watch_stops(disp *d, bool on) {
  if (on && d->inner->halt && !d->watching) {
    d->watch = (mpx__stop_watch){.wake = wake_dispatcher, .arg = d};
    mpx__stop_watch_add(&d->watch);
    d->watching = true;
  } else if (!on && d->watching) {
    mpx__stop_watch_remove(&d->watch);
    d->watching = false;
  }
}
