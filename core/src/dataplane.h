/* dataplane.h: the dispatcher's side of the data plane (dataplane.c): big arguments leave as
 * sealed memfd segments, big results arrive as ones, on links with MPX__CAP_SHM (config.h; the
 * process transport). Internal to libmpx; see os/seg.h for the segments themselves and serve.c
 * for the worker's side.
 *
 * Thread-safety: an mpx__dp belongs to the dispatcher thread (one batch at a time). */
#ifndef MPX_DATAPLANE_H
#define MPX_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>

#include "codec.h"
#include "link.h"
#include "os/seg.h"

/* Segments one batch may carry (the fds passed with one frame). */
#define MPX__DP_FDS 16

/* Bytes of argument segments kept for reuse, over all workers. */
#define MPX__DP_CACHE_MAX ((size_t)512 << 20)

/* One of a worker's argument segments (its argument ring): size-sealed, mapped writable here,
 * refilled with one memcpy once the task that last used it (`user`) has left the worker's
 * window. */
typedef struct mpx__dp_slot {
  mpx__seg seg;                  /* or none */
  const struct mpx_future *user; /* the task that last used it; NULL: none */
  bool reserved; /* made at the worker's start (options.arg_reserve): any argument up to its size
                    fits it */
} mpx__dp_slot;

/* The segments of the batch being built, and a small ring of reusable argument segments per
 * worker. */
typedef struct mpx__dp {
  int fds[MPX__DP_FDS];
  int nfds;
  struct iovec parts[MPX__DP_FDS]; /* MPX__CAP_OOB: arguments sent as their own messages */
  int nparts;
  int n;              /* workers */
  mpx__dp_slot *keep; /* n * MPX__SEG_ARG_SLOTS: worker i's argument ring (made as needed) */
  size_t kept;        /* their bytes */
  struct mpx__dp_ring *ring; /* n * MPX__SEG_RING_SLOTS: our mappings of worker i's result ring */
  uint64_t tick;             /* for the ring mappings' last use */
} mpx__dp;

typedef struct mpx__dp_ring {
  mpx__seg seg; /* MPX__SEG_RINGMAP, or none */
  unsigned long long id[2];
  uint64_t used;
} mpx__dp_ring;

/* Room for `workers` kept segments (none yet). MPX_ENOMEM. */
int mpx__dp_init(mpx__dp *dp, int workers);
/* options.arg_reserve: worker i (just started, its ring empty) gets its first argument segment
 * now, `len` bytes allocated and mapped here (pages populated), passed with the first argument it
 * takes, unless that would pass MPX__DP_CACHE_MAX (then it is made on first use, as without).
 * MPX_OK also when nothing is to be done (len 0, a link without segments); else the segment's
 * code (ENOMEM, ESYS): the worker works on, without it. */
int mpx__dp_reserve(mpx__dp *dp, unsigned caps, int worker, size_t len);
/* Close and unmap everything. */
void mpx__dp_fini(mpx__dp *dp);
/* Worker i is gone: unmap what we mapped of its result ring, and close its argument ring (a
 * replacement never gets segments its predecessor could reach). */
void mpx__dp_forget(mpx__dp *dp, int worker);

/* (Results: a process worker builds one of MPX__SEG_RESULT_MIN bytes or more in a segment.)
 * With `caps` & MPX__CAP_OOB and room: the argument (at least MPX__SEG_MIN bytes) goes as its
 * own message from the caller's buffer (dp->parts), t->arg_shm its length. Otherwise, with
 * `caps` & MPX__CAP_SHM and room in dp: move Task t's argument (t->arg, at least
 * MPX__SEG_MIN bytes) out of band: t->arg becomes empty, t->arg_shm its length, and a segment's
 * fd goes with the batch. The argument is copied into a free segment of the worker's argument
 * ring (warm pages: one memcpy, no page allocation), made or replaced first when none fits:
 * a slot is free when the task that last used it is no longer in `inflight` (the head of the
 * worker's window, linked by next, which holds f, the task's future, already), so the worker
 * is done reading it. With every slot busy (or MPX__DP_CACHE_MAX reached), a new fully sealed
 * one-shot segment. False when it stays in the frame (small, no room, or no segment). */
bool mpx__dp_arg(mpx__dp *dp, unsigned caps, Mpx__Task *t, int worker,
                 const struct mpx_future *f, const struct mpx_future *inflight);
/* Whether a task of `len` argument bytes (future f) may go to worker i now: false only when it
 * would go into a segment (not a map chunk) and every slot of the worker's argument ring is in use
 * by a task in its window (`inflight`), so that it waits in pending (or goes to another worker)
 * rather than take a new one-shot segment: a worker has at most MPX__SEG_ARG_SLOTS big arguments
 * in flight. */
bool mpx__dp_room(const mpx__dp *dp, unsigned caps, int worker, size_t len,
                  const struct mpx_future *f, const struct mpx_future *inflight);
/* Whether worker i holds an argument segment that a `len`-byte argument would fit (and would go
 * into: a link with MPX__CAP_SHM): a worker to prefer among idle ones. */
bool mpx__dp_warm(const mpx__dp *dp, unsigned caps, int worker, size_t len);
/* Send the batch through `link` (send_fds when it carries segments, send_parts when it carries
 * arguments as their own messages, else send), then close the
 * batch's fds (in flight, the kernel holds them; a dead worker's socket releases them). */
int mpx__dp_send(mpx__dp *dp, const mpx__link_ops *link, mpx__link *tp, int worker,
                 const uint8_t *data, size_t len);

/* Close the fds of a batch that was not sent. */
void mpx__dp_reset(mpx__dp *dp);

/* Result r from `worker`, for future f (taken out of the worker's window): when r says its data
 * is out of band (data_shm > 0, at most max_payload: checked first), take the worker's next fd:
 * a write-sealed one is mapped read-only after checking it (os/seg.h: sealed, a regular file of
 * exactly data_shm bytes, checked before mapping) into *seg, to be read in place; one of the
 * worker's ring segments (not write-sealed; os/seg.h says why) is checked and mapped once (kept
 * in dp->ring until the worker is gone or passes another), its data_shm bytes are copied into a
 * warm buffer of the result pool (*seg, MPX__SEG_POOLBUF) and the segment is handed back to the
 * worker (FREE); or, on a link with take_payload, take the worker's payload message of exactly
 * data_shm bytes, which came before its batch (MPI: never waited for), as a result-pool block
 * (seg->data, seg->len, map_len 0; the future adopts it). NULL when r is fine (or in band);
 * otherwise what the worker did wrong (it broke the protocol), and f has failed and been
 * dropped. */
const char *mpx__dp_result(mpx__dp *dp, const mpx__link_ops *link, mpx__link *tp, int worker,
                           const Mpx__Result *r, size_t max_payload, struct mpx_future *f,
                           mpx__seg *seg);
/* Complete f from *seg when it holds a result: a map chunk's results are copied out and the
 * mapping (or block) dropped, any other future takes it over (read in place until released).
 * False when seg holds nothing. */
bool mpx__dp_finish(struct mpx_future *f, mpx__seg *seg);

#endif
