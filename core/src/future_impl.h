/* future_impl.h: the future's layout and the calls the scheduler and transports use to move a
 * future through its states. Internal to libmpx.
 *
 * Ownership: a new future has two references, the caller's and the scheduler's. The scheduler
 * drops its own (mpx__future_drop) after completing the future, so a future lives until both the
 * user and the scheduler are done with it. User and internal references are counted apart, so
 * that a handle the user released answers MPX_ERELEASED even while the scheduler still holds the
 * future. A user callback added and not yet run holds a user reference of its own (see future.c).
 * A future is at most 128 bytes.
 *
 * Links with a progress page (progress.h: processes) add one internal state, SENT: the future is
 * in a worker's window but the worker has not claimed it. The user sees it as PENDING (RUNNING
 * once the worker's claim word says STARTED) and can cancel it: the cancel CASes the claim word
 * the future points to (`claim`; `chunk_claim` in a map chunk), so the worker skips it, exactly
 * one side winning. The dispatcher moves a SENT future only after winning that word itself
 * (take-back, a lost worker) or when its result arrives. MPI ranks share no memory: their SENT
 * futures carry MPX__F_REMOTE, their words are the dispatcher's own copy, and cancel asks the
 * rank (progress.h, mpx__disp_cancel_remote). */
#ifndef MPX_FUTURE_IMPL_H
#define MPX_FUTURE_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "mpx/executor.h"
#include "mpx/future.h"
#include "os/clock.h" /* mpx__now, for the files that include this one */

/* Static flags in the state word's upper bits: set before the future is published, never changed. */
enum {
  MPX__ST_MASK = 0xffu,
  MPX__F_WAITERS = 1u << 8,    /* someone sleeps on the state word: wake on completion */
  MPX__F_CALLBACKS = 1u << 9,  /* the callback list is non-empty: run it on completion */
  MPX__F_CHUNK = 1u << 16,     /* a map chunk: owner points at its mpx__map_chunk */
  MPX__F_ARG_OWNED = 1u << 17, /* arg is a heap copy the future frees */
  MPX__F_BRIEF_SPIN = 1u << 18, /* waiters spin briefly before sleeping (polled transports) */
  MPX__F_MAP_PRIV = 1u << 20,  /* a chunk of a map with a timeout: the future holds a reference
                                  on owner->priv (without it, owner may be gone once done) */
  MPX__F_RES_MAPPED = 1u << 21, /* res is a read-only mapping of a worker's result segment (the
                                   data plane): unmapped when the future is freed. Set just
                                   before completion, by the one thread completing it */
  MPX__F_STOP = 1u << 22,       /* the task was asked to stop while it ran (mpx_future_cancel of
                                   a RUNNING future; mpx_task_should_stop reads it). Set by any
                                   thread with fetch_or; transitions keep it */
  MPX__F_STOP_SENT = 1u << 23,  /* the dispatcher forwarded MPX__F_STOP to the future's worker
                                   (links without pages: dispatch_stop.c) */
  MPX__F_REMOTE = 1u << 24,     /* sent to a worker whose claim words are remote (an MPI rank,
                                   progress.h): cancel asks the dispatcher. Set by the dispatcher
                                   before the future first becomes SENT, never cleared */
};

/* Bumped by every MPX__F_STOP a cancel sets: a dispatcher whose link forwards stop requests
 * looks through its windows only when it moved. */
extern _Atomic uint64_t mpx__stop_asked;
/* Who to wake when a cancel asks a running task to stop (stop.c): the dispatchers whose link
 * forwards the request by message (MPI), so that it leaves at once rather than at their next
 * housekeeping. add/remove/ring from any thread; `wake` must not block (it runs under a lock). */
typedef struct mpx__stop_watch {
  struct mpx__stop_watch *next;
  void (*wake)(void *arg);
  void *arg;
} mpx__stop_watch;
void mpx__stop_watch_add(mpx__stop_watch *w);
void mpx__stop_watch_remove(mpx__stop_watch *w);
void mpx__stop_watch_ring(void);

#define MPX__RES_SMALL 8

struct mpx__cb;

struct mpx_future {
  _Atomic uint32_t state; /* mpx_future_state | flags */
  _Atomic uint32_t refs;  /* user references << 16 | internal references */
  _Atomic uint32_t magic; /* MPX__FUT_MAGIC while the user holds it; MPX__FUT_DEAD after */
  int32_t error;          /* the failure code when FAILED */
  const mpx_task *task;
  const void *arg;
  size_t arg_len;
  void *res;              /* result bytes: res_small or a heap block */
  size_t res_len;
  char *errmsg;           /* heap message when FAILED */
  struct mpx__cb *cbs;    /* guarded by the future's stripe lock */
  struct mpx_future *next; /* link for whichever queue holds the future */
  union {
    void *owner;              /* map chunk futures (MPX__F_CHUNK): their mpx__map_chunk */
    _Atomic(uintptr_t) claim; /* other futures while SENT: their claim word (progress.h) */
  };
  int16_t retries;        /* message transports: runs left after a lost worker; -1 executor's */
  int16_t worker;         /* message transports: worker holding it, -1 none */
  float timeout;          /* seconds, 0: the executor's task_timeout, < 0 none */
  union {
    unsigned char arg_small[MPX_INLINE_ARG];
    /* map chunk futures while SENT: their claim word. A chunk's items are never inline (its
     * future is made with no argument and points at the chunk's), and the claim must live in the
     * future, which the dispatcher holds, not in the chunk: a chunk cancelled in a worker's
     * window stays there after its map (an mpx_imap that was destroyed) freed the chunk */
    _Atomic(uintptr_t) chunk_claim;
  };
  unsigned char res_small[MPX__RES_SMALL];
};

#define MPX__FUT_MAGIC 0x6d707846u
#define MPX__FUT_DEAD 0x64656164u

/* The private block of an mpx_map with a timeout (executor.c): its chunk descriptors and copies
 * of its items and results, which its chunks may still use after map returned. Map holds one
 * reference and each chunk future another, dropped when the future is freed (future.c); the last
 * to let go frees the block. */
typedef struct mpx__map_private {
  _Atomic size_t refs;
} mpx__map_private;

static inline void mpx__map_private_unref(mpx__map_private *p) {
  /* acq_rel: every user's reads and writes happen-before the free */
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) free(p);
}

/* A map chunk: items [first, first + count) of one mpx_map call. Without a map timeout it lives
 * in map's own array and points at the caller's items and results (map waits for it); with one
 * it lives in a private block (priv) and points into that block. */
typedef struct mpx__map_chunk {
  const unsigned char *items;  /* first item of this chunk */
  unsigned char *results;      /* where its first result goes */
  size_t count, item_size, result_size;
  size_t failed;               /* index in the chunk of the failing item (when FAILED) */
  mpx__map_private *priv;      /* NULL: in place; else the block the future holds a reference on */
  uint32_t var;                /* MPX__VAR_* (vchunk.h): a chunk of mpx_imap / mpx_map_var */
  struct mpx__vres *vres;      /* var chunks: the per-item outcomes, set before it finishes */
} mpx__map_chunk;

/* Internal state: in a worker's window, not claimed by the worker yet (see the header). */
#define MPX__SENT 7u

/* Where a future keeps the address of its claim word while SENT. */
static inline _Atomic(uintptr_t) *mpx__future_claim(mpx_future *f) {
  if (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK)
    return &f->chunk_claim;
  return &f->claim;
}

/* What a new future does with its argument. Arguments up to MPX_INLINE_ARG bytes are always
 * copied into the future. Larger ones: */
enum {
  MPX__ARG_BORROW = 0, /* point at the caller's bytes (they must outlive the future's run) */
  MPX__ARG_ADOPT = 1,  /* take over a malloc'd block (freed with the future) */
  MPX__ARG_COPY = 2,   /* copy into a malloc'd block the future owns (freed with it) */
};

/* A pending future with refs = 2 (caller + scheduler), its argument handled per `arg_mode`.
 * NULL on ENOMEM (an adopted block is then not freed). */
mpx_future *mpx__future_new(const mpx_task *t, const void *arg, size_t len, int arg_mode);

/* PENDING -> RUNNING; false if it was cancelled meanwhile (then it must not run). */
bool mpx__future_start(mpx_future *f);
/* PENDING -> SENT with `word` (a claim word holding f's call id) as its claim; false if it was
 * cancelled meanwhile. */
bool mpx__future_send(mpx_future *f, _Atomic uint64_t *word);
/* SENT -> RUNNING (the worker claimed it); false if it was not SENT. */
bool mpx__future_started(mpx_future *f);

/* Run a started future's task (or map chunk) on this thread and complete it (thread backend). */
void mpx__future_run(mpx_future *f, int worker);

/* Complete a started future with a copy of `len` bytes (chunk futures: copied to their results). */
void mpx__future_finish_copy(mpx_future *f, const void *data, size_t len);
/* Complete a started (non-chunk) future with a result segment's read-only mapping, which the
 * future takes over: the caller reads it in place until the future is released (os/seg.h). */
void mpx__future_finish_mapped(mpx_future *f, const void *data, size_t len);
/* The same with a malloc'd block of len > 0 bytes, which the future takes over (frees). */
void mpx__future_finish_adopt(mpx_future *f, void *data, size_t len);
/* Complete a future as FAILED with `code` and a heap message the future takes over (may be NULL). */
void mpx__future_fail(mpx_future *f, int code, char *message);
/* PENDING (or SENT, by whoever won its claim word) -> CANCELLED; true if this call cancelled it. */
bool mpx__future_cancel(mpx_future *f);
/* RUNNING or SENT -> PENDING, for a task that will be sent again (its worker was lost, or the
 * dispatcher won its claim word back). */
bool mpx__future_requeue(mpx_future *f);

/* Take / drop an internal reference (the scheduler's, a waiter's). */
void mpx__future_hold(mpx_future *f);
void mpx__future_drop(mpx_future *f);

#define MPX__REF_USER (1u << 16)
#define MPX__REF_INTERNAL 1u

static inline uint32_t mpx__future_state(const mpx_future *f) {
  return atomic_load_explicit(&((mpx_future *)f)->state, memory_order_acquire) & MPX__ST_MASK;
}
static inline bool mpx__state_done(uint32_t s) {
  return (s & MPX__ST_MASK) - MPX_FINISHED <= MPX_CANCELLED - MPX_FINISHED;
}

/* The transport this thread serves (a thread worker, the dispatcher), NULL elsewhere. Set by the
 * transport's threads when they start, so that the executor can tell a call made on one of its own
 * threads (from a done-callback or a task), which must not wait for that very thread. */
extern _Thread_local const void *mpx__tl_transport;
/* The stop word of the runner whose worker this thread is (thread.c sets it when the worker
 * starts; NULL elsewhere): MPX__STOP_ASK once the executor shuts down with cancel_futures (tasks
 * are asked to stop), MPX__STOP_TERMINATE once it is terminated (tasks are asked to stop and a
 * future whose task returns from then on fails with MPX_ETERMINATED). mpx__future_run reads it. */
enum { MPX__STOP_ASK = 1, MPX__STOP_TERMINATE = 2 };
extern _Thread_local const _Atomic uint32_t *mpx__tl_runner_stop;
/* How many done-callbacks this thread is running now (they may nest). */
extern _Thread_local int mpx__tl_callbacks;

/* A node of a future's callback list. */
struct mpx__cb {
  struct mpx__cb *next;
  mpx_done_fn fn;
  void *arg;
  bool heap; /* user callbacks are heap nodes; waiters (wait.c) embed theirs */
};

/* For wait.c: validate a user handle (0, MPX_EINVAL, MPX_ERELEASED); add `cb` to f's callback
 * list (false: f is already done, nothing added); take `cb` off again (false: completion already
 * detached it). Any thread. */
int mpx__future_check(const mpx_future *f);
bool mpx__future_add_cb(mpx_future *f, struct mpx__cb *cb);
bool mpx__future_remove_cb(mpx_future *f, struct mpx__cb *cb);
/* A wait's timeout: NaN is refused (MPX_EINVAL, mpx_errmsg says so); +infinity becomes
 * MPX_FOREVER. */
int mpx__wait_timeout(double *timeout);
/* Seconds (clamped at 0) as a timespec. */
struct timespec mpx__timespec_of(double s);

/* future_run.c's completion of a future it ran: RUNNING -> FINISHED. */
void mpx__future_ran(mpx_future *f);

#endif
