/* dispatch_recv.c: what the dispatcher does with a message from a worker (dispatch.c has the
 * whole picture and the trust model): unpack it within the limits, accept READY only as a new
 * worker's first message, RETURNED and STARTED only from a rank that may send them, and results
 * only for call ids in that worker's window, each once (in order for in-order workers); complete
 * each accepted future (its data in the frame, or out of band through dataplane.c), and fold the
 * worker's busy time into the per-task average that sizes the windows. Anything else is a
 * violation (mpx__disp_violate: the worker is ended, charging only the task it was running).
 * Runs on the dispatcher thread (and on the starting thread in await_ready, before it exists),
 * which owns the windows; futures are completed with d->lock released. */
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

/* ---- small helpers ------------------------------------------------------------------------ */

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

/* ---- receiving ---------------------------------------------------------------------------- */

/* The text of a task failure a worker reported: its message (the worker's words, kept) and where
 * it ran, from the transport's own knowledge (where()), never from the Error's pid/host/rank. */
char *mpx__disp_error_text(const disp *d, const Mpx__Error *e, int i) {
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
    mpx__future_fail(f, mpx__task_code(r->error->code), mpx__disp_error_text(d, r->error, i));
  } else {
    mpx__future_finish_copy(f, r->data.data, r->data.len);
  }
  mpx__future_drop(f);
}

/* Accept the READY that a worker process sends as its first message: who it is comes from the
 * transport (peer), not from the message. */
void mpx__disp_take_peer(disp *d, int i) {
  wslot *w = &d->w[i];
  mpx__peer p = {.pid = 0, .rank = -1, .slots = 1, .host = ""};
  if (d->inner->peer) d->inner->peer(d->tp, i, &p);
  w->pid = p.pid;
  w->rank = p.rank;
  snprintf(w->host, sizeof w->host, "%s", p.host);
  w->slots = p.slots > 0 ? p.slots : 1;
}

void mpx__disp_on_ready(disp *d, int i, const Mpx__Control *c) {
  wslot *w = &d->w[i];
  mpx__disp_take_peer(d, i);
  w->sent = 0;
  w->seq_sent = w->seq_done = 0;
  w->seq = 0; /* a new process: a new stream, on a fresh page */
  w->page = d->inner->progress ? d->inner->progress(d->tp, i) : NULL;
  w->reclaim = w->page || (d->cfg->caps & MPX__CAP_TAKEBACK);
  w->remote = !w->page && (d->cfg->caps & MPX__CAP_TAKEBACK) && w->shadow;
  if (w->remote) { /* a rank: the root's own claim words for what it sends there */
    memset(&w->shadow->page, 0, sizeof w->shadow->page);
    w->page = &w->shadow->page;
  }
  w->flushing = false;
  w->heard_at = mpx__now();
  w->asked = w->answered = false;
  w->stalled = false;
  w->timed_out_id = w->run_id = 0;
  if (w->page) w->beat = atomic_load_explicit(&w->page->heartbeat, memory_order_relaxed);
  w->beat_at = mpx__now();
  if (c->error) { /* a replacement's initializer failed: retire the slot */
    char *msg = mpx__disp_error_text(d, c->error, i);
    mpx__log(MPX_LOG_WARN, "%s; worker %d is not replaced", msg ? msg : "initializer failed", i);
    free(msg);
    w->dead = true;
    d->inner->kill(d->tp, i, false);
    return;
  }
  w->ready = true;
  int rc = mpx__dp_reserve(&d->dp, d->cfg->caps, i, d->cfg->arg_reserve);
  if (rc) /* it makes its segments as arguments need them, as without */
    mpx__log(MPX_LOG_WARN, "worker %d: no argument segment reserved (%s)", i, mpx_strerror(rc));
}

/* Fold the time `tasks` tasks took on one slot into the per-task average. */
static void observe(disp *d, double seconds, size_t tasks) {
  if (!tasks) return;
  double per = seconds / (double)tasks;
  d->task_avg = d->task_avg <= 0 ? per : 0.8 * d->task_avg + 0.2 * per;
}

static mpx_future *take_result(disp *d, int i, uint64_t id);

/* The future a result from worker i is for, taken out of its window, or NULL: the call id must
 * be in the window (sent and not answered yet, so each is accepted once); a worker that runs
 * one task at a time answers in the order it was sent, so only the oldest id is accepted (a
 * task cannot answer for the tasks queued behind it). */
static mpx_future *accept_result(disp *d, int i, uint64_t id) {
  mpx_future *f = take_result(d, i, id);
  if (f && d->w[i].remote) remote_ran(f);
  return f;
}

static mpx_future *take_result(disp *d, int i, uint64_t id) {
  wslot *w = &d->w[i];
  if (w->slots == 1) {
    /* a task a user cancelled before its worker reached it (its claim word reads TAKEN) is skipped
     * by the worker, which never answers for it: out of the window, the next one is the oldest.
     * relaxed: TAKEN is final for that word until the future leaves the window */
    for (mpx_future *h; w->page && !w->remote && (h = w->inflight.head);) {
      _Atomic uint64_t *word =
          (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(h), memory_order_relaxed);
      if (!word || atomic_load_explicit(word, memory_order_relaxed) != MPX__CLAIM_TAKEN) break;
      mpx__future_drop(fifo_pop(&w->inflight));
    }
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
  case MPX__CONTROL__KIND__TAKEBACK: return "TAKEBACK";
  case MPX__CONTROL__KIND__RETURNED: return "RETURNED";
  case MPX__CONTROL__KIND__STARTED: return "STARTED";
  default: return "NONE";
  }
}

void mpx__disp_on_message(disp *d, int i, const uint8_t *data, size_t len) {
  wslot *w = &d->w[i];
  if (w->killed || w->dead) return; /* ended for a violation or retired: leftovers are ignored */
  double now = mpx__now();
  w->heard_at = now; /* ranks are watched by their answers (dispatch_remote.c) */
  Mpx__Batch *b;
  int rc = mpx__codec_unpack(data, len, &d->lim, &b);
  if (rc) {
    mpx__disp_violate(d, i, "sent a malformed message (%s)", mpx_strerror(rc));
    return;
  }
  if (!w->ready) { /* a worker process's first message: READY and nothing else */
    if (!b->control || b->control->kind != MPX__CONTROL__KIND__READY || b->n_results || b->n_tasks)
      mpx__disp_violate(d, i, "sent a message other than READY as its first");
    else
      mpx__disp_on_ready(d, i, b->control);
    mpx__codec_free(b);
    return;
  }
  if (b->control && b->control->kind == MPX__CONTROL__KIND__RETURNED && !b->n_tasks) {
    mpx__disp_returned(d, i, b); /* a rank gives back what it has not started */
    mpx__codec_free(b);
    return;
  }
  if (b->control && b->control->kind == MPX__CONTROL__KIND__STARTED && !b->n_tasks &&
      w->remote) {
    mpx__disp_started(d, i, b); /* a rank says which tasks it started */
    mpx__codec_free(b);
    return;
  }
  if (b->control || b->n_tasks) { /* a serving worker sends results only (or RETURNED) */
    mpx__disp_violate(d, i, "sent %s while serving", b->n_tasks ? "tasks"
                                                      : control_name(b->control->kind));
    mpx__codec_free(b);
    return;
  }
  size_t done = 0;
  for (size_t k = 0; k < b->n_results; k++) {
    uint64_t id = b->results[k]->call_id;
    mpx_future *f = accept_result(d, i, id);
    if (!f) { /* never dereferenced: a stale, repeated, out of order or forged id */
      mpx__disp_violate(d, i, "sent a result for call id 0x%llx, which it was not running",
              (unsigned long long)id);
      break;
    }
    mpx__seg seg = MPX__SEG_NONE; /* an out-of-band result: checked, mapped, or f fails */
    const char *why =
        mpx__dp_result(&d->dp, d->inner, d->tp, i, b->results[k], d->lim.max_payload, f, &seg);
    if (why) {
      mpx__disp_violate(d, i, "%s", why);
      break;
    }
    complete(d, i, f, b->results[k], &seg);
    done++;
    d->next = i;
  }
  if (done) {
    w->answered = false; /* it moved on: it may be asked to give back again */
    /* the worker was busy from busy_since (a send to its empty window, or its previous
     * results) until now, on `slots` tasks at once */
    observe(d, (now - w->busy_since) * (double)w->slots, done);
    w->busy_since = now;
  }
  if (done && w->timed && !w->inflight.n) w->timed = false;
  mpx__codec_free(b);
}
