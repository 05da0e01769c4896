/* dataplane.c: the dispatcher's side of the data plane; see dataplane.h.
 *
 * Why. Through the socket, a big payload was copied five times in user space (into the packed
 * batch, into the link's out-queue, into the receiver's frame buffer, into the decoded batch's
 * arena, into the future) and twice by the kernel, each copy into a freshly mapped buffer (every
 * buffer over glibc's mmap threshold is a new mapping, faulted in page by page, zeroed and
 * unmapped again), so that above ~16 MiB page faults and memmove dominated (see the note of
 * the dataplane branch). A segment is written once by its producer (a pwrite for an argument,
 * the task itself through mpx_buf_reserve for a result) and read in place by its consumer.
 *
 * Reuse. Fresh segments cost a page allocation (and the freeing) per 4 KiB page on both sides,
 * which is what separated a fresh segment from memcpy; so each worker has a ring of up to
 * MPX__SEG_ARG_SLOTS argument segments (size-sealed, not write-sealed: the dispatcher writes the
 * next argument into a slot once the task that last used it has left the worker's window; made as
 * tasks need them, never up front, grow only, up to MPX__DP_CACHE_MAX bytes over all workers), and
 * the worker keeps its mappings of them (worker.c). While a worker's ring is all in use, its next
 * big argument waits in pending (mpx__dp_room) rather than take a one-shot segment (new pages on
 * both sides), and among idle workers one whose ring holds a segment the argument fits is fed first
 * (mpx__dp_warm, dispatch.c). A new slot is written by one pwrite and mapped here only at its first
 * refill. A segment is only ever shared with one worker: a replacement starts with an empty ring
 * (mpx__dp_forget). With options.arg_reserve a worker's first slot is made, and its pages
 * allocated and mapped, when it starts (mpx__dp_reserve, from its READY), and the executor's start
 * makes a copy buffer per worker ready in the pool (mpx__seg_pool_warm): memory paid up front, so
 * that a fresh worker's first big arguments cost the memcpys a warm one's do. A worker may keep a
 * slot writable (seg.h): it can only spoil its own later
 * arguments, which the dispatcher rewrites whole before each use and never reads back. Results are
 * recycled too, but not in place: a worker writes them into a ring of segments it reuses
 * (os/seg.h), which we map once per segment (dp->ring) and copy each result out of, into a warm
 * buffer of the result pool that the caller reads in place until it releases the future (when the
 * buffer goes back to the pool); the segment goes back to the worker at once. One memcpy between
 * warm pages costs far less than the fresh pages of a new segment on both sides, and the copy is
 * what keeps the caller's bytes out of the worker's reach (os/seg.h: a worker that had a segment
 * writable can keep it writable, so a reused segment is never the memory a user reads).
 *
 * Trust. A result's segment comes from a worker: mpx__dp_result checks it with mpx__seg_map
 * (or mpx__seg_map_ring) before anything is mapped; a worker whose segment fails the checks
 * broke the protocol. A ring segment stays writable by its worker while we copy: a worker that
 * changes it then spoils only its own result (we read it once, never parse it); it cannot shrink
 * it (sealed), so our mapping never faults.
 *
 * Thread-safety: the dispatcher thread only; no state but dp. */
#include "dataplane.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "future_impl.h"
#include "task_impl.h"

int mpx__dp_init(mpx__dp *dp, int workers) {
  *dp = (mpx__dp){.n = workers};
  dp->keep = calloc((size_t)workers * MPX__SEG_ARG_SLOTS, sizeof *dp->keep);
  dp->ring = calloc((size_t)workers * MPX__SEG_RING_SLOTS, sizeof *dp->ring);
  if (!dp->keep || !dp->ring) {
    free(dp->keep);
    free(dp->ring);
    return MPX_ENOMEM;
  }
  for (int i = 0; i < workers * MPX__SEG_ARG_SLOTS; i++) dp->keep[i].seg = MPX__SEG_NONE;
  for (int i = 0; i < workers * MPX__SEG_RING_SLOTS; i++) dp->ring[i].seg = MPX__SEG_NONE;
  return MPX_OK;
}

void mpx__dp_forget(mpx__dp *dp, int worker) {
  if (worker < 0 || worker >= dp->n) return;
  for (int k = 0; dp->ring && k < MPX__SEG_RING_SLOTS; k++)
    mpx__seg_free(&dp->ring[worker * MPX__SEG_RING_SLOTS + k].seg);
  for (int k = 0; dp->keep && k < MPX__SEG_ARG_SLOTS; k++) {
    mpx__dp_slot *a = &dp->keep[worker * MPX__SEG_ARG_SLOTS + k];
    dp->kept -= a->seg.fd >= 0 ? a->seg.len : 0;
    mpx__seg_free(&a->seg);
    a->user = NULL;
    a->reserved = false;
  }
}

int mpx__dp_reserve(mpx__dp *dp, unsigned caps, int worker, size_t len) {
  if (!len || !(caps & MPX__CAP_SHM) || (caps & MPX__CAP_OOB) || !dp->keep || worker < 0 ||
      worker >= dp->n)
    return MPX_OK;
  mpx__dp_slot *a = &dp->keep[worker * MPX__SEG_ARG_SLOTS];
  if (a->seg.fd >= 0 || len > MPX__DP_CACHE_MAX - dp->kept) return MPX_OK;
  int rc = mpx__seg_create(&a->seg, len); /* allocated, and mapped with its pages populated */
  if (!rc && (rc = mpx__seg_seal_size(&a->seg))) mpx__seg_free(&a->seg);
  if (rc) return rc;
  dp->kept += len;
  a->user = NULL;
  a->reserved = true;
  return MPX_OK;
}

void mpx__dp_fini(mpx__dp *dp) {
  mpx__dp_reset(dp);
  for (int i = 0; i < dp->n; i++) mpx__dp_forget(dp, i);
  free(dp->keep);
  free(dp->ring);
  dp->keep = NULL;
  dp->ring = NULL;
  dp->kept = 0;
}

/* Worker i's ring segment `fd` (taken over) with a result of len bytes: copy it into a pool
 * buffer (*out) and hand the segment back. MPX_EPROTO/ETOOBIG/ENOMEM/ESYS as mpx__seg_map_ring;
 * MPX_ENOMEM when no buffer could be had. */
static int ring_copy(mpx__dp *dp, int i, int fd, size_t len, size_t max, mpx__seg *out) {
  unsigned long long id[2];
  if (i < 0 || i >= dp->n || mpx__seg_ident(fd, id)) {
    close(fd);
    return MPX_EPROTO;
  }
  mpx__dp_ring *slots = &dp->ring[i * MPX__SEG_RING_SLOTS], *r = NULL;
  for (int k = 0; k < MPX__SEG_RING_SLOTS && !r; k++)
    if (slots[k].seg.kind == MPX__SEG_RINGMAP && slots[k].id[0] == id[0] && slots[k].id[1] == id[1])
      r = &slots[k];
  if (r) { /* mapped already (and checked then: its size and seals cannot have changed) */
    close(fd);
    if (len > max) return MPX_ETOOBIG;
    if (len > r->seg.len) return MPX_EPROTO;
  } else {
    r = &slots[0];
    for (int k = 1; k < MPX__SEG_RING_SLOTS; k++) /* an empty one, else the least recently used */
      if (r->seg.kind == MPX__SEG_RINGMAP && (slots[k].seg.kind != MPX__SEG_RINGMAP ||
                                              slots[k].used < r->used))
        r = &slots[k];
    mpx__seg_free(&r->seg);
    int rc = mpx__seg_map_ring(&r->seg, fd, len, max);
    if (rc) return rc;
    r->id[0] = id[0], r->id[1] = id[1];
  }
  r->used = ++dp->tick;
  int rc = mpx__seg_pool_get(out, len);
  if (rc == MPX_OK) memcpy(out->data, r->seg.data, len);
  mpx__seg_ring_free(&r->seg);
  return rc;
}

/* Whether the task that last used slot a may still read it: it is in worker's window (f, the
 * task being placed, is new there: a slot it names was used by a future released since, at
 * the same address). A future's address reused by another task in the window keeps the slot
 * busy a little longer: never the other way round. */
static bool slot_busy(const mpx__dp_slot *a, const mpx_future *f, const mpx_future *inflight) {
  if (!a->user || a->user == f) return false;
  for (const mpx_future *g = inflight; g; g = g->next)
    if (g == a->user) return true;
  return false;
}

/* A dup of a free slot of worker i's argument ring holding a copy of t's argument (the slot now
 * used by f); -1 when every slot is busy or none can be made. A slot that fits (not twice
 * over) is refilled; else an empty slot is filled, else a free one of another size replaced. */
static int keep_copy(mpx__dp *dp, int i, const Mpx__Task *t, const mpx_future *f,
                     const mpx_future *inflight) {
  mpx__dp_slot *ring = &dp->keep[i * MPX__SEG_ARG_SLOTS];
  mpx__dp_slot *fit = NULL, *empty = NULL, *other = NULL;
  size_t len = t->arg.len;
  for (int k = 0; k < MPX__SEG_ARG_SLOTS; k++) {
    mpx__dp_slot *a = &ring[k];
    if (a->seg.fd < 0) {
      if (!empty) empty = a;
    } else if (slot_busy(a, f, inflight)) {
      continue;
    } else if (a->seg.len >= len && (a->reserved || a->seg.len / 2 <= len)) {
      if (!fit || a->seg.len < fit->seg.len) fit = a;
    } else if (!other) {
      other = a;
    }
  }
  mpx__dp_slot *a = fit ? fit : empty ? empty : other;
  if (!a) return -1;
  if (!fit && a->seg.fd >= 0) { /* wrong size: make another */
    dp->kept -= a->seg.len;
    mpx__seg_free(&a->seg);
    a->user = NULL;
    a->reserved = false;
  }
  bool filled = false;
  if (a->seg.fd < 0) { /* a new slot: the kernel fills the pages as it allocates them */
    if (len > MPX__DP_CACHE_MAX - dp->kept) return -1;
    if (mpx__seg_create_from(&a->seg, t->arg.data, len)) return -1;
    if (mpx__seg_seal_size(&a->seg)) {
      mpx__seg_free(&a->seg);
      return -1;
    }
    dp->kept += len;
    filled = true;
  }
  /* a slot is mapped here at its first refill: a worker's first argument costs no mapping */
  if (!filled && mpx__seg_map_own(&a->seg)) return -1;
  int fd = fcntl(a->seg.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (!filled) memcpy(a->seg.data, t->arg.data, len);
  a->user = f;
  return fd;
}

bool mpx__dp_warm(const mpx__dp *dp, unsigned caps, int worker, size_t len) {
  if (len < MPX__SEG_MIN || !(caps & MPX__CAP_SHM) || (caps & MPX__CAP_OOB) || !dp->keep ||
      worker < 0 || worker >= dp->n)
    return false;
  const mpx__dp_slot *ring = &dp->keep[worker * MPX__SEG_ARG_SLOTS];
  for (int k = 0; k < MPX__SEG_ARG_SLOTS; k++)
    if (ring[k].seg.fd >= 0 && ring[k].seg.len >= len &&
        (ring[k].reserved || ring[k].seg.len / 2 <= len))
      return true;
  return false;
}

bool mpx__dp_room(const mpx__dp *dp, unsigned caps, int worker, size_t len, const mpx_future *f,
                  const mpx_future *inflight) {
  if (len < MPX__SEG_MIN || !(caps & MPX__CAP_SHM) || (caps & MPX__CAP_OOB) || !dp->keep ||
      worker < 0 || worker >= dp->n || !inflight ||
      (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK)) /* in the frame */
    return true;
  const mpx__dp_slot *ring = &dp->keep[worker * MPX__SEG_ARG_SLOTS];
  for (int k = 0; k < MPX__SEG_ARG_SLOTS; k++)
    if (ring[k].seg.fd < 0 || !slot_busy(&ring[k], f, inflight)) return true;
  return false;
}

bool mpx__dp_arg(mpx__dp *dp, unsigned caps, Mpx__Task *t, int worker, const mpx_future *f,
                 const mpx_future *inflight) {
  if (t->count || t->arg.len < MPX__SEG_MIN) return false;
  if ((caps & MPX__CAP_OOB) && dp->nparts < MPX__DP_FDS) { /* its own message, no copy */
    dp->parts[dp->nparts++] = (struct iovec){.iov_base = t->arg.data, .iov_len = t->arg.len};
    t->arg_shm = t->arg.len;
    t->arg.data = NULL;
    t->arg.len = 0;
    return true;
  }
  if (!(caps & MPX__CAP_SHM) || dp->nfds == MPX__DP_FDS) return false;
  int fd = dp->keep && worker >= 0 && worker < dp->n ? keep_copy(dp, worker, t, f, inflight) : -1;
  if (fd < 0) {
    mpx__seg s;
    if (mpx__seg_create_copy(&s, t->arg.data, t->arg.len)) return false; /* it goes in the frame */
    fd = s.fd;
  }
  dp->fds[dp->nfds++] = fd;
  t->arg_shm = t->arg.len;
  t->arg.data = NULL;
  t->arg.len = 0;
  return true;
}

int mpx__dp_send(mpx__dp *dp, const mpx__link_ops *link, mpx__link *tp, int worker,
                 const uint8_t *data, size_t len) {
  int rc = dp->nfds && link->send_fds ? link->send_fds(tp, worker, data, len, dp->fds, dp->nfds)
           : dp->nparts && link->send_parts
               ? link->send_parts(tp, worker, data, len, dp->parts, dp->nparts)
               : link->send(tp, worker, data, len);
  mpx__dp_reset(dp);
  return rc;
}

void mpx__dp_reset(mpx__dp *dp) {
  for (int i = 0; i < dp->nfds; i++) close(dp->fds[i]);
  dp->nfds = 0;
  dp->nparts = 0;
}

const char *mpx__dp_result(mpx__dp *dp, const mpx__link_ops *link, mpx__link *tp, int worker,
                           const Mpx__Result *r, size_t max_payload, mpx_future *f, mpx__seg *seg) {
  *seg = MPX__SEG_NONE;
  if (!r->data_shm) return NULL;
  const char *why = NULL;
  int rc = MPX_EPROTO;
  int fd = -1;
  if (r->error || r->data.len)
    why = "sent a result with both inline and out-of-band data (or an error)";
  else if (r->data_shm > max_payload) /* before the fd is even looked at */
    why = "sent an out-of-band result larger than max_payload", rc = MPX_ETOOBIG;
  else if (link->take_payload) { /* its own message (MPI) */
    void *p = NULL;
    if ((rc = link->take_payload(tp, worker, (size_t)r->data_shm, &p)))
      why = rc == MPX_EPROTO ? "declared a result message it did not send (or of another size)"
                             : "sent a result message that could not be received";
    else /* a pool block (or heap): the future adopts it, mpx__seg_pool_free on release */
      *seg = (mpx__seg){.fd = -1, .data = p, .len = (size_t)r->data_shm};
  } else if ((fd = link->take_fd ? link->take_fd(tp, worker) : -1) < 0)
    why = "declared an out-of-band result it did not pass";
  else if (dp && dp->ring && !(fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE)) { /* its ring, or nothing */
    if ((rc = ring_copy(dp, worker, fd, (size_t)r->data_shm, max_payload, seg)))
      why = rc == MPX_EPROTO ? "passed a result segment that is neither sealed nor a ring segment "
                               "big enough for its declared size"
                             : "passed a result that could not be mapped or copied";
  } else if ((rc = mpx__seg_map(seg, fd, (size_t)r->data_shm, max_payload, MPX__SEG_EXACT)))
    why = rc == MPX_EPROTO ? "passed a result that is not a sealed memfd of its declared size"
                           : "passed a result that could not be mapped";
  if (!why) return NULL;
  mpx__peer peer = {.rank = -1};
  char who[48] = "";
  if (link->peer && !link->peer(tp, worker, &peer) && peer.rank >= 0)
    snprintf(who, sizeof who, " (rank %d)", peer.rank);
  else if (peer.pid > 0)
    snprintf(who, sizeof who, " (pid %d)", peer.pid);
  mpx__future_fail(f, rc,
                   mpx__strdupf("task '%s': the result from worker %d%s was refused: it %s",
                                f->task->name, worker, who, why));
  mpx__future_drop(f);
  return why;
}

bool mpx__dp_finish(mpx_future *f, mpx__seg *seg) {
  if (!seg->data) return false;
  bool chunk = atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK;
  if (chunk) mpx__future_finish_copy(f, seg->data, seg->len);
  if (chunk && !seg->map_len)
    mpx__seg_pool_free(seg->data, seg->len); /* a block from MPI's stash */
  else if (chunk)
    mpx__seg_free(seg); /* a pool buffer goes back to the pool */
  else if (seg->map_len) /* a mapped segment, or a pool buffer: mpx__seg_unmap on release */
    mpx__future_finish_mapped(f, seg->data, seg->len);
  else
    mpx__future_finish_adopt(f, seg->data, seg->len); /* a pool block (MPI: the stash) */
  return true;
}
