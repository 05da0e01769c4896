/* dispatch_remote.c: cancel and `running` for tasks sent to MPI ranks (remote pages, progress.h).
 * dispatch.c's header has the whole picture; this file is what only ranks need.
 *
 * A rank shares no memory with the root, so the root keeps a page of its own per rank (a shadow,
 * allocated at start, aligned so that a canceller finds it from a future's claim word) whose
 * words say what the root knows of each task it sent there: sent (call id | REMOTE), asked for by
 * a cancel (| CANCEL), started (STARTED), given back (TAKEN). A sent future is SENT (it reads
 * PENDING) until the rank says it started it: ranks report starts lazily, with a Control STARTED
 * listing the tasks that have run for a couple of milliseconds (mpi_pool.c), so short tasks cost
 * nothing and their results are their start; a RETURNED also says that every task the rank kept
 * had started. `running` is true only once the rank said so.
 *
 * Cancel (mpx__disp_cancel_remote) and shutdown(cancel_futures) (mpx__disp_flush_ranks) let the
 * rank decide: the task is marked and its rank sent a TAKEBACK, and the rank's own claim word,
 * on which the rank's runner (STARTED) and its server answering the TAKEBACK (TAKEN) race with
 * one CAS each, picks exactly one winner. Given back, the task is CANCELLED here (requeue_back in
 * dispatch_pages.c) and never runs; kept, it had started, and the cancel answers MPX_ESTATE.
 * Tasks given back that no cancel marked go back to pending, uncharged. A cancel thus waits for
 * one round trip to the rank (answered within about 2 ms while a task runs, by the rank's standby
 * thread); a rank that leaves it unanswered for stall_timeout is abandoned (below), which cancels
 * every task a cancel had marked there, so a cancel waits at most about stall_timeout.
 *
 * Hung ranks (mpx__disp_watch_ranks): a rank has no heartbeat the root can read, so the root
 * watches its answers; what it does with one that stopped answering is at the end of the file.
 *
 * Threads: cancellers run on any thread and touch only their future's word (CAS), d->lock's
 * fields (cancel_asks, cancel_asked, cancellers) and the link's wake; the rest runs on the
 * dispatcher thread, which owns the windows. Each atomic says its ordering. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch_impl.h"
#include "errmsg.h"
#include "os/log.h"

/* A rank started f (remote page): its word says so, unless it was reused already. True if a
 * cancel had marked it (it lost). */
bool mpx__disp_mark_started(mpx_future *f) {
  _Atomic uint64_t *word =
      (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed);
  uint64_t id = MPX__CALL_ADDR((uint64_t)(uintptr_t)f) | MPX__CLAIM_REMOTE, v = id;
  /* acq_rel: against a canceller's CAS, which then finds STARTED */
  if (atomic_compare_exchange_strong_explicit(word, &v, MPX__CLAIM_STARTED, memory_order_acq_rel,
                                              memory_order_acquire))
    return false;
  v = id | MPX__CLAIM_CANCEL;
  return atomic_compare_exchange_strong_explicit(word, &v, MPX__CLAIM_STARTED,
                                                 memory_order_acq_rel, memory_order_acquire);
}

/* shutdown(cancel_futures) on ranks: every task of their windows not known to be started is
 * marked for cancel and each rank asked for what it has not started (a TAKEBACK, once per
 * shutdown call); mpx__disp_returned cancels the marked tasks given back. True while an answer
 * is due. */
bool mpx__disp_flush_ranks(disp *d) {
  bool due = false;
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (!w->remote || !w->ready || w->dead) continue;
    if (!d->flush_started && w->inflight.n) {
      for (mpx_future *f = w->inflight.head; f; f = f->next) {
        _Atomic uint64_t *word =
            (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed);
        uint64_t v = MPX__CALL_ADDR((uint64_t)(uintptr_t)f) | MPX__CLAIM_REMOTE;
        /* acq_rel as a canceller's CAS: one of the two marks it, the other finds it marked */
        atomic_compare_exchange_strong_explicit(word, &v, v | MPX__CLAIM_CANCEL,
                                                memory_order_acq_rel, memory_order_acquire);
      }
      if (!w->asked) mpx__disp_ask_back(d, i);
      w->flushing = w->asked;
    }
    due |= w->flushing;
  }
  d->flush_started = due;
  return due;
}

/* Cancels that asked for a TAKEBACK (mpx__disp_cancel_remote): send one to each rank concerned,
 * unless one is out already (its RETURNED covers every task sent before it, so theirs too). */
void mpx__disp_ask_cancels(disp *d) {
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (!w->want_back) continue;
    w->want_back = false;
    if (!w->asked && w->ready && !w->dead) mpx__disp_ask_back(d, i);
  }
}

/* Worker i's Control STARTED (a rank, with a remote page): the bare call ids of tasks it started.
 * Accepted while serving, with no data and no error; ids not in its window are ignored (a start
 * can only be stale there: its task was answered since). A task that reached its rank's
 * communicator can at worst make its rank's own tasks read RUNNING, so that they refuse cancel. */
void mpx__disp_started(disp *d, int i, const Mpx__Batch *b) {
  wslot *w = &d->w[i];
  for (size_t j = 0; j < b->n_results; j++)
    if (b->results[j]->error || b->results[j]->data.len || b->results[j]->data_shm) {
      mpx__disp_violate(d, i, "sent STARTED with a result in it");
      return;
    }
  bool marked = false;
  for (size_t j = 0; j < b->n_results; j++)
    for (mpx_future *f = w->inflight.head; f; f = f->next)
      if (call_id(w, f, 0) == b->results[j]->call_id) { /* a page: seq is not used */
        marked |= mpx__disp_mark_started(f);
        break;
      }
  if (!marked) return;
  pthread_mutex_lock(&d->lock);
  pthread_cond_broadcast(&d->idle); /* a canceller waiting for it: it lost */
  pthread_mutex_unlock(&d->lock);
}

int mpx__disp_shadows(disp *d) {
  if (d->inner->progress || !(d->cfg->caps & MPX__CAP_TAKEBACK)) return MPX_OK;
  for (int i = 0; i < d->n; i++) {
    shadow *sh = aligned_alloc(SHADOW_ALIGN, SHADOW_ALIGN);
    if (!sh) return MPX_ENOMEM;
    memset(sh, 0, sizeof *sh);
    sh->d = d;
    sh->worker = i;
    d->w[i].shadow = sh;
  }
  return MPX_OK;
}

/* The rank decides (progress.h): the canceller marks the task's word (CANCEL) and has the
 * dispatcher send its rank a TAKEBACK (or waits for the one already out, which covers it: nothing
 * is sent to a rank between a TAKEBACK and its RETURNED). The rank's own claim word, CASed by the
 * rank's runner (STARTED) and by its server answering the TAKEBACK (TAKEN), picks exactly one
 * winner: given back, the task is CANCELLED by the dispatcher (requeue_back) and never runs;
 * kept, it had started, and its word here becomes STARTED (cancel answers MPX_ESTATE). A STARTED
 * notice may settle it first. The wait is bounded by stall_timeout: a rank that does not answer
 * by then keeps the task (the mark is taken back, unless the answer came in that instant).
 * Not on the dispatcher thread (a done-callback there): it would wait for itself, so such a
 * cancel answers MPX_ESTATE. As with process pages, a cancel must not race the destroy of the
 * executor that holds the future in a window (destroy waits for cancellers that got this far). */
int mpx__disp_cancel_remote(mpx_future *f) {
  _Atomic uint64_t *word =
      (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_acquire);
  if (!word || mpx__future_state(f) != MPX__SENT) return 1;
  shadow *sh = (shadow *)((uintptr_t)word & ~(uintptr_t)(SHADOW_ALIGN - 1));
  disp *d = sh->d;
  wslot *w = &d->w[sh->worker];
  const uint64_t id = MPX__CALL_ADDR((uint64_t)(uintptr_t)f) | MPX__CLAIM_REMOTE;
  uint64_t v = id;
  /* acq_rel: against the dispatcher's exchange (requeue_back) and marks (mark_started) */
  if (!atomic_compare_exchange_strong_explicit(word, &v, id | MPX__CLAIM_CANCEL,
                                               memory_order_acq_rel, memory_order_acquire) &&
      v != (id | MPX__CLAIM_CANCEL)) {
    if (mpx__future_state(f) != MPX__SENT ||
        (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_acquire) !=
            word)
      return 1; /* it moved */
    if (v == MPX__CLAIM_STARTED) return MPX_ESTATE;
    sched_yield(); /* TAKEN: being packed, or given back and on its way to PENDING */
    return 1;
  }
  if (mpx__tl_transport == d) { /* only this thread settles it: the CAS back cannot fail */
    v = id | MPX__CLAIM_CANCEL;
    atomic_compare_exchange_strong_explicit(word, &v, id, memory_order_acq_rel,
                                            memory_order_acquire);
    mpx__set_errmsg("a task sent to a rank cannot be cancelled from a callback that runs on the "
                    "executor's dispatcher thread (it would wait for itself)");
    return MPX_ESTATE;
  }
  pthread_mutex_lock(&d->lock);
  if (w->ask_due && mpx__now() - w->ask_at > d->cfg->stall_timeout) {
    /* a rank that has not answered for so long: do not wait again */
    pthread_mutex_unlock(&d->lock);
    v = id | MPX__CLAIM_CANCEL;
    if (!atomic_compare_exchange_strong_explicit(word, &v, id, memory_order_acq_rel,
                                                 memory_order_acquire))
      return 1; /* settled meanwhile: look again */
    char who[160];
    where(w, sh->worker, who, sizeof who);
    mpx__set_errmsg("%s has not answered for more than %.3g s whether it started the task",
                    who, d->cfg->stall_timeout);
    return MPX_ESTATE;
  }
  d->cancellers++;
  w->cancel_asks++;
  d->cancel_asked = true;
  pthread_mutex_unlock(&d->lock);
  d->inner->wake(d->tp);
  /* past stall_timeout from the TAKEBACK the watch abandons a rank that did not answer
   * (mpx__disp_watch_ranks), which settles the task (cancelled: it never started, as far as the
   * root knows); the extra half only covers the watch's period */
  double give_up = mpx__now() + 1.5 * d->cfg->stall_timeout;
  int rc = 1;
  pthread_mutex_lock(&d->lock);
  for (;;) {
    if (mpx__future_state(f) != MPX__SENT ||
        atomic_load_explicit(word, memory_order_acquire) != (id | MPX__CLAIM_CANCEL))
      break;
    double now = mpx__now();
    if (now >= give_up || d->exited) {
      v = id | MPX__CLAIM_CANCEL;
      if (atomic_compare_exchange_strong_explicit(word, &v, id, memory_order_acq_rel,
                                                  memory_order_acquire)) {
        char who[160];
        where(w, sh->worker, who, sizeof who);
        mpx__set_errmsg("%s did not answer within %.3g s whether it started the task",
                        who, d->cfg->stall_timeout);
        rc = MPX_ESTATE;
      }
      break;
    }
    /* in slices: a loss or a failure settles it without a broadcast */
    double until = now + 0.01 < give_up ? now + 0.01 : give_up;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double left = until - now;
    ts.tv_sec += (time_t)left;
    ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&d->idle, &d->lock, &ts);
  }
  if (--d->cancellers == 0) pthread_cond_broadcast(&d->idle);
  pthread_mutex_unlock(&d->lock);
  return rc;
}

/* Ranks are watched by their answers (stall_timeout, 5 s by default), since they have no
 * heartbeat the root can read: a rank that holds tasks and has sent nothing for half of
 * stall_timeout is sent a TAKEBACK (which also frees its unstarted tasks for others), which its
 * serving or standby thread answers within milliseconds even while a task runs; one whose
 * TAKEBACK is unanswered after stall_timeout (the whole process stopped or hung) is abandoned:
 * the link's kill without replace (mpi.c) reports its loss, lose() re-queues what it had not
 * started (uncharged), cancels what a cancel had marked, and fails what it said it started with
 * MPX_EWORKER_LOST (retries are refused on MPI); nothing more is sent to it. */
void mpx__disp_watch_ranks(disp *d, double now) {
  for (int i = 0; i < d->n; i++) {
    wslot *w = &d->w[i];
    if (!w->remote || !w->ready || w->dead || w->stalled || !w->inflight.n) continue;
    if (!w->asked) {
      if (now - w->heard_at > d->cfg->stall_timeout / 2) mpx__disp_ask_back(d, i);
      continue;
    }
    /* ask_due and ask_at are written by this thread only (under d->lock, for the cancellers that
     * read them): read here without it */
    bool late = w->ask_due && now - w->ask_at > d->cfg->stall_timeout;
    /* retired: its later messages are dropped; the link tells it at stop that the session is
     * over, so that if it resumes it ends (what it ran is dropped) */
    if (late && d->inner->kill(d->tp, i, false) == MPX_OK) {
      w->stalled = w->retired = true;
      char who[160];
      where(w, i, who, sizeof who);
      mpx__log(MPX_LOG_WARN, "%s has not answered for %.3g s: abandoned (what it had not started "
               "runs elsewhere; no later executor uses it)", who, d->cfg->stall_timeout);
    }
  }
}
