/* dispatch_impl.h: what the dispatcher's three files share (private to them): its state (a
 * pending FIFO, one window per worker) and the helpers they all use. dispatch.c has the whole
 * picture: batching, results, start and stop; dispatch_loss.c a lost worker's window;
 * dispatch_pages.c taking tasks back for idle workers (claim words of a progress page,
 * progress.h, or TAKEBACK / RETURNED with a rank), what else only workers with a page get (sweeps
 * of cancelled futures, shutdown(cancel_futures) on the windows) and the stall and time-limit
 * checks. Everything here is the dispatcher thread's, except what `lock`
 * guards (see dispatch.c). */
#ifndef MPX_DISPATCH_IMPL_H
#define MPX_DISPATCH_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "codec.h"
#include "dataplane.h"
#include "future_impl.h"
#include "link.h"
#include "progress.h"
#include "runner.h"

enum { BATCH_MAX = 256, WINDOW_MIN = 1, WINDOW_MAX = 1024 };
_Static_assert(MPX__CLAIM_RING >= 2 * WINDOW_MAX, "the claim ring must outlast a window");
/* The periods (options silent_after, sweep_interval, limit_interval; mpx/executor.h): a worker
 * with a window that has sent no results for SILENT is busy on a long task (or stalled): it is
 * fed no more, and its tasks not started are taken back for an idle worker; windows are swept
 * for futures the user cancelled every SWEEP_EVERY, and time limits checked every LIMIT_EVERY. */
#define SILENT(d) ((d)->cfg->silent_after)
#define SWEEP_EVERY(d) ((d)->cfg->sweep_interval)
#define LIMIT_EVERY(d) ((d)->cfg->limit_interval)

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
  /* With a progress page (processes): */
  mpx__progress *page;  /* NULL: none (MPI): futures count as running once sent */
  uint64_t seq;         /* tasks sent to the current process: their claim-ring index */
  uint64_t beat;        /* the heartbeat last seen, and when it changed */
  double beat_at;
  bool stalled;          /* killed for a heartbeat that stopped */
  uint64_t timed_out_id; /* killed for this task's time limit */
  uint64_t run_id;       /* the running word last seen, and when it was first seen */
  double run_seen;
  /* Tasks can be won back from it (a page, or MPX__CAP_TAKEBACK): a silent one is fed no more */
  bool reclaim;
  /* Without a page, with MPX__CAP_TAKEBACK (MPI ranks; dispatch_pages.c): */
  bool asked;            /* a TAKEBACK is out, its RETURNED not in yet: fed nothing meanwhile */
  bool answered;         /* its last RETURNED came after its last results and feed: not asked
                            again until one of those happens */
  bool retired;          /* dead for a violation but still running (a rank): told SHUTDOWN */
  /* A remote page (progress.h: an MPI rank's claim words as the root knows them) */
  bool remote;           /* page is this process's own copy (a shadow): see progress.h */
  bool flushing;         /* shutdown(cancel_futures): a TAKEBACK is out to cancel what it holds */
  int cancel_asks;       /* under d->lock: cancels waiting for a TAKEBACK to be sent */
  bool want_back;        /* dispatcher: cancel_asks seen, a TAKEBACK is due */
  bool ask_due;          /* under d->lock: a TAKEBACK is out since ask_at (cancellers read it) */
  double heard_at;       /* its last message (a rank: probed when quiet, dispatch_remote.c) */
  double ask_at;
  struct shadow *shadow; /* the remote page, kept from its READY until disp_free */
} wslot;

/* A remote page and who it belongs to: a canceller finds it from a future's claim word (the
 * allocation is aligned to SHADOW_ALIGN, the page first in it), never from anything a worker
 * wrote. */
#define SHADOW_ALIGN ((size_t)1 << 16)
typedef struct shadow {
  mpx__progress page;
  struct disp *d;
  int worker;
} shadow;
_Static_assert(sizeof(shadow) <= SHADOW_ALIGN, "a shadow page must fit its alignment");

typedef struct disp disp;
struct disp {
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
  bool cancel_sent; /* shutdown(cancel_futures): cancel what windows hold unstarted */
  bool terminating; /* mpx_executor_terminate (under lock; dispatch_stop.c) */
  bool term_done;   /* dispatcher only: the workers were told / killed */
  uint64_t stops_seen; /* dispatcher only: mpx__stop_asked when the windows were last looked at */
  mpx__stop_watch watch; /* links with a halt op: woken by a cancel of a running task */
  bool watching;
  bool timed_seen;  /* a task with a time limit was sent: check limits often */
  double swept_at, limits_at;
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
  int cancellers;        /* under lock: threads in mpx__disp_cancel_remote (destroy waits) */
  bool cancel_asked;     /* under lock: some worker's cancel_asks is set */
  bool flush_started;    /* dispatcher: shutdown(cancel_futures) asked the ranks (flushing) */
};

/* ---- small helpers ------------------------------------------------------------------------ */

static inline void fifo_push(fifo *q, mpx_future *f) {
  f->next = NULL;
  if (q->tail) q->tail->next = f;
  else q->head = f;
  q->tail = f;
  q->n++;
}

static inline mpx_future *fifo_pop(fifo *q) {
  mpx_future *f = q->head;
  if (!f) return NULL;
  q->head = f->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  f->next = NULL;
  return f;
}

/* The call id of the future numbered `seq` in worker w's window: its address, and for a worker
 * that answers in order (slots == 1) a number's low 16 bits in the top bits of the id, so that a
 * late answer for a future that was completed early (a task that answered for itself, then
 * finished) never matches a new future at the same address. With a progress page the number is
 * the future's claim-ring index (seq is not used): take-backs and cancels leave gaps in a window,
 * and the claim pointer says where each future is; the claim word itself holds the plain address
 * (the worker strips the tag, MPX__CALL_ADDR). */
static inline uint64_t call_id(const wslot *w, mpx_future *f, uint64_t seq) {
  uint64_t a = (uint64_t)(uintptr_t)f;
  if (w->slots != 1 || a >> 48) return a;
  if (w->page) {
    uintptr_t word = atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed);
    seq = (uint64_t)((_Atomic uint64_t *)word - w->page->claim);
  }
  return a | (seq & 0xffff) << 48;
}

static inline int task_retries(const disp *d, const mpx_future *f) {
  return f->retries >= 0 ? f->retries : d->cfg->retries;
}

/* Where worker i runs, from the transport's own knowledge (mpx__peer), never from a message. */
static inline void where(const wslot *w, int i, char *buf, size_t n) {
  if (w->rank >= 0)
    snprintf(buf, n, "worker %d (rank %d on %s)", i, w->rank, w->host[0] ? w->host : "?");
  else
    snprintf(buf, n, "worker %d (pid %d on %s)", i, w->pid, w->host[0] ? w->host : "?");
}

/* A task's time limit in seconds, 0: none. */
static inline double task_timeout(const disp *d, const mpx_future *f) {
  if (f->timeout < 0) return 0;
  return f->timeout > 0 ? f->timeout : d->cfg->task_timeout;
}

/* In-flight tasks a worker with `slots` parallel slots gets: about 1 ms of work per slot. */
static inline size_t window(const disp *d, int slots) {
  double w = d->task_avg <= 0 ? WINDOW_MIN /* nothing measured yet: one task per slot, so that a
                                                long first task leaves the rest cancellable */
                              : 1e-3 / d->task_avg;
  w = w < WINDOW_MIN ? WINDOW_MIN : w > WINDOW_MAX ? WINDOW_MAX : w;
  return (size_t)w * (size_t)slots;
}

/* Worker w's window has sent nothing for SILENT: it is busy on long tasks or stalled. */
static inline bool quiet(const struct disp *d, const wslot *w, double now) {
  return w->inflight.n && now - w->busy_since > SILENT(d);
}

/* A one-slot worker that tasks can be won back from (a page, or a rank that answers TAKEBACK)
 * and is quiet: new tasks wait in pending (cancellable, and free for the next idle worker). A
 * hybrid rank is still fed: its other threads take what waits behind a long task. */
static inline bool silent(const struct disp *d, const wslot *w, double now) {
  return w->reclaim && w->slots == 1 && quiet(d, w, now);
}

/* f's rank answered it (remote page): it ran, and its word is free again. A plain store: a
 * canceller's CAS that comes later fails on STARTED, and one that came first finds f done.
 * Release: the canceller reads f's state after the word. */
static inline void remote_ran(mpx_future *f) {
  atomic_store_explicit(
      (_Atomic uint64_t *)atomic_load_explicit(mpx__future_claim(f), memory_order_relaxed),
      MPX__CLAIM_STARTED, memory_order_release);
}

/* Worker i may be sent more now. */
static inline bool has_room(const disp *d, const wslot *w) {
  return w->ready && !w->dead && !w->timed && !w->stalled && !w->timed_out_id && !w->asked &&
         w->inflight.n < window(d, w->slots) && !silent(d, w, mpx__now());
}

/* dispatch.c */
/* Worker i broke the protocol ('Trust' in dispatch.c): end and replace it, or retire it. */
void mpx__disp_violate(disp *d, int i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fill worker i's window from pending, taking at most `share` tasks. Under d->lock. */
void mpx__disp_feed(disp *d, int i, size_t share);
/* Fail what a send could not send (after d->lock is released: callbacks run). */
void mpx__disp_fail_unsent(disp *d);

/* dispatch_loss.c */
/* Worker i is gone (ev: the link's loss event, NULL when unknown): re-queue, charge or fail
 * what its window held. */
void mpx__disp_lose(disp *d, int i, const char *detail, const mpx__event *ev);
/* Put `q` back at the head of pending, where the gate counts them again. Under d->lock. */
void mpx__disp_requeue_front(disp *d, fifo *q);

/* dispatch_pages.c */
/* Win back a SENT future's claim word: true if its worker had not started it (see there). */
bool mpx__disp_take_back(mpx_future *f, uint64_t *v);
/* Kill workers past a time limit or whose heartbeat stopped. */
void mpx__disp_check_deadlines(disp *d);
/* Milliseconds the dispatcher may block in poll. */
int mpx__disp_poll_ms(disp *d);
/* The link failed: fail what the windows hold. */
void mpx__disp_fail_windows(disp *d, int code);
/* Sweeps, shutdown(cancel_futures) on the windows, and taking back for idle workers. */
void mpx__disp_housekeeping(disp *d);
/* dispatch_stop.c: the runner's terminate op; on the dispatcher thread, act on it (kill the
 * workers, or ask ranks to stop), and decide a future of a worker lost after it. */
void mpx__disp_terminate(mpx__runner *self);
void mpx__disp_terminate_now(disp *d);
void mpx__disp_lose_terminated(disp *d, int i, mpx_future *f);
/* Links with a halt op: forward the stop requests of running futures (MPX__F_STOP) to their
 * workers, each once; and ask every worker to stop all its tasks (shutdown with cancel). */
void mpx__disp_forward_stops(disp *d);
void mpx__disp_halt_all(disp *d);
/* Links with a halt op: be woken by cancels of running tasks (on: after start; off: before the
 * dispatcher is freed). */
void mpx__disp_watch_stops(disp *d, bool on);
/* Worker i's Control RETURNED (Batch b): accept the tasks it gave back, or violate. */
void mpx__disp_returned(disp *d, int i, const Mpx__Batch *b);
/* Send worker i (a rank) a Control TAKEBACK; w->asked says whether it went. */
void mpx__disp_ask_back(disp *d, int i);

/* dispatch_remote.c: ranks' remote pages */
/* Worker i's Control STARTED (a rank with a remote page): mark those tasks started. */
void mpx__disp_started(disp *d, int i, const Mpx__Batch *b);
/* Allocate the remote pages of a link with MPX__CAP_TAKEBACK and no pages (MPX_ENOMEM). */
int mpx__disp_shadows(disp *d);
/* f's rank started it: its remote word says STARTED. True if a cancel had marked it. */
bool mpx__disp_mark_started(mpx_future *f);
/* shutdown(cancel_futures) on the ranks: true while a RETURNED is due. */
bool mpx__disp_flush_ranks(disp *d);
/* Send the TAKEBACKs that cancels asked for (want_back). */
void mpx__disp_ask_cancels(disp *d);
/* Probe quiet ranks, and abandon one that has not answered for stall_timeout. */
void mpx__disp_watch_ranks(disp *d, double now);

/* dispatch_recv.c: a worker's message (on the dispatcher thread); READY's bookkeeping, shared
 * with the start-up wait; the text of a reported task failure with where it ran (heap, or NULL);
 * the worker's pid/host/rank from the link (mpx__peer). */
void mpx__disp_on_message(disp *d, int i, const uint8_t *data, size_t len);
void mpx__disp_on_ready(disp *d, int i, const Mpx__Control *c);
char *mpx__disp_error_text(const disp *d, const Mpx__Error *e, int i);
void mpx__disp_take_peer(disp *d, int i);

#endif
