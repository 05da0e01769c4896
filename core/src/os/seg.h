/* seg.h: sealed memfd segments, the out-of-band payloads of the process data plane (internal to
 * libmpx; in os/ because both the dispatcher and the worker side use them).
 *
 * A segment is an anonymous memfd (never a name in /dev/shm: it is reachable only through its
 * file descriptor, so nothing is left behind when every holder of the fd and the mappings is
 * gone, whichever side dies) holding one argument or result. The writer fills it, drops its
 * writable mapping and seals it (F_SEAL_SHRINK | GROW | WRITE | SEAL), then passes the fd with
 * SCM_RIGHTS; the reader checks, before anything is mapped, that the fd is a regular file whose
 * size is exactly what the message declared, no more than the reader's max_payload, and that it
 * carries those seals: so the sender can neither change the bytes under the reader (no write
 * access is left anywhere) nor shrink the file to make the reader's mapping fault (SIGBUS).
 *
 * Thread-safety: no shared state; a segment belongs to its caller. */
#ifndef MPX_OS_SEG_H
#define MPX_OS_SEG_H

#include <stddef.h>

#include "mpx/error.h"

/* Payloads of at least this many bytes cross a process boundary as a segment when the link can
 * pass them (MPX__CAP_SHM); smaller ones are copied into the frame. */
#define MPX__SEG_MIN ((size_t)256 << 10)
/* A process worker's result goes as a segment from this size on: a fresh segment costs a dozen
 * system calls and its pages, which below ~1 MiB the socket path (whose buffers glibc reuses
 * warm) beats; arguments go into the worker's kept segment, warm, from MPX__SEG_MIN. */
#define MPX__SEG_RESULT_MIN ((size_t)1 << 20)
/* Argument segments the dispatcher keeps per worker (its argument ring, dataplane.h) and that a
 * worker keeps mapped: tasks queued beyond a worker's first reuse warm segments. */
#define MPX__SEG_ARG_SLOTS 4

typedef struct mpx__seg {
  int fd;     /* -1: none */
  void *data; /* writable mapping while being filled; read-only mapping when received */
  size_t len;
  size_t map_len; /* bytes mapped (len rounded to what mmap was given; 0: no mapping) */
  int kind;       /* MPX__SEG_PLAIN, or one of the recycled kinds below */
  int slot;       /* MPX__SEG_RING: the worker's ring slot it was lent from */
} mpx__seg;

enum {
  MPX__SEG_PLAIN = 0,   /* a segment of its own: freed is unmapped and closed */
  MPX__SEG_RING = 1,    /* a worker's recycled result segment, lent to one result (below) */
  MPX__SEG_RINGMAP = 2, /* the dispatcher's mapping of a worker's ring segment (data after the
                         * header; map_len the whole file) */
  MPX__SEG_POOLBUF = 3, /* a warm buffer from the process's result pool (data, len; no fd) */
};

#define MPX__SEG_NONE ((mpx__seg){.fd = -1})

/* ---- recycled result segments (the process worker's ring) ------------------------------------
 *
 * Fresh pages cost 1-2 GB/s on a VM (allocation, zeroing, memcg charge, unmapping), which a
 * result segment paid on both sides every time: no result could go faster than that. So a worker
 * keeps a ring of MPX__SEG_RING_SLOTS result segments that it writes again and again, and the
 * dispatcher copies each result once, out of the ring into a warm buffer of its own process (the
 * result pool, below), and hands the ring segment back by storing FREE in its header.
 *
 * Why a copy: a worker that once had a segment writable can keep it writable (a dup of the fd, a
 * mapping of /proc/self/fd/N) and nothing in Linux takes that away but F_SEAL_WRITE, which is
 * forever. A segment the worker writes again can therefore never be the memory a user reads in
 * place: what the user reads is the dispatcher's copy, which no worker can reach, and it stays
 * unchanged until the user releases the future. A write-sealed one-shot segment (the worker's
 * fallback when its ring is busy or the result bigger than MPX__SEG_RING_MAX) is still read in
 * place without a copy.
 *
 * A ring segment is a memfd of MPX__SEG_HDR + cap bytes, sealed against shrink and grow (never
 * against write), whose first page holds a 32-bit word: FREE (0: the dispatcher copied what was
 * in it, release) or FULL (1: a result is in it, stored by the worker before it is sent). The
 * worker takes a slot only when it reads FREE (acquire), so an honest worker never overwrites
 * a result the dispatcher has not copied; a dishonest one spoils only its own results. */
#define MPX__SEG_HDR ((size_t)4096)
#define MPX__SEG_RING_SLOTS 2
#define MPX__SEG_RING_MAX ((size_t)256 << 20) /* a bigger result takes a one-shot segment */

/* Worker side: a segment for a result of `len` bytes, writable at s->data: a FREE ring slot big
 * enough (warm pages), else a new ring slot if the ring has room for one, else a new one-shot
 * segment (mpx__seg_create). mpx__seg_resize, _seal and _free know the ring kind: resize within
 * the slot's capacity is free (beyond it the bytes move to a one-shot segment), seal stores FULL
 * and leaves s->fd a dup of the slot's fd to pass (the slot stays mapped here), free gives an
 * unsealed slot back unused. Single-threaded (the worker's serving thread). */
int mpx__seg_result_create(mpx__seg *s, size_t len);
/* Unmap and close every slot of this process's ring (none may be lent): a process that serves
 * no more (tests). */
void mpx__seg_ring_reset(void);

/* Dispatcher side: check a worker's ring segment fd (taken over: closed) that declares `len`
 * bytes of result: a regular file of at least MPX__SEG_HDR + len and at most MPX__SEG_HDR +
 * 2 * max bytes, sealed against shrink and grow (so the mapping can never fault), and map it
 * whole, shared and writable (the header's word is written back; only the header and the
 * declared bytes are faulted in, never holes past them), as kind MPX__SEG_RINGMAP:
 * s->data the bytes after the header, s->len what they can hold. MPX_ETOOBIG, MPX_EPROTO,
 * MPX_ESYS/MPX_ENOMEM as mpx__seg_map. */
int mpx__seg_map_ring(mpx__seg *s, int fd, size_t len, size_t max);
/* Hand a ring segment back to its worker: store FREE (release: the copy is done). */
void mpx__seg_ring_free(const mpx__seg *s);

/* ---- the result pool (the dispatcher's process) ---------------------------------------------
 *
 * Warm anonymous buffers that copied results live in while users read them in place (and the
 * copies of big submitted arguments): taken by mpx__seg_pool_get (_alloc), given back by
 * mpx__seg_unmap (_free) when the future is released (from any thread: a mutex). Idle buffers
 * are bounded by MPX__SEG_POOL_IDLE bytes and MPX__SEG_POOL_N entries; the rest are unmapped.
 * A forked child inherits the buffers and the table (the lock is held across fork()). */
#define MPX__SEG_POOL_N 64
#define MPX__SEG_POOL_IDLE ((size_t)512 << 20)
/* A buffer of at least `len` bytes (len > 0) as kind MPX__SEG_POOLBUF. MPX_ENOMEM. */
int mpx__seg_pool_get(mpx__seg *s, size_t len);
/* For a copy the caller keeps (a submitted argument): from len >= MPX__SEG_MIN a pool buffer,
 * else (or when the pool's table is all lent) malloc; NULL when out of memory. Given back with
 * mpx__seg_pool_free and the same len (a block that is not a pool buffer is free()d: a heap
 * block of any origin may be passed; below MPX__SEG_MIN the pool is not even looked at). */
void *mpx__seg_pool_alloc(size_t len);
void mpx__seg_pool_free(void *p, size_t len);
/* Make `count` idle buffers of at least len bytes ready in the pool, their pages allocated (those
 * already idle count; at most the pool's table and MPX__SEG_POOL_IDLE bytes are kept): the copies
 * of the next big submitted arguments then land in warm pages (options.arg_reserve). Returns how
 * many are ready. */
int mpx__seg_pool_warm(size_t len, int count);

/* A new segment of `len` bytes (len > 0), mapped writable at s->data (pages allocated up front).
 * MPX_ENOMEM, MPX_ESYS (out of file descriptors: errno says). */
int mpx__seg_create(mpx__seg *s, size_t len);
/* A new segment holding a copy of data[0..len), sealed (no mapping left). */
int mpx__seg_create_copy(mpx__seg *s, const void *data, size_t len);
/* A new segment holding a copy of data[0..len) (written by the kernel as it allocates the
 * pages: cheaper than a zeroed segment and a memcpy), not sealed and not mapped here yet (s->data
 * NULL: a segment that is passed on at once need not be mapped by its maker). */
int mpx__seg_create_from(mpx__seg *s, const void *data, size_t len);
/* Map a segment of ours (mpx__seg_create_from) writable at s->data, its pages mapped in one
 * call; nothing when it is mapped already. MPX_ESYS/MPX_ENOMEM. */
int mpx__seg_map_own(mpx__seg *s);
/* Change a writable segment's size (before sealing), keeping its bytes; s->data may move. */
int mpx__seg_resize(mpx__seg *s, size_t len);
/* Drop the writable mapping and seal the segment; s->fd stays open for sending. */
int mpx__seg_seal(mpx__seg *s);
/* Seal only the size (F_SEAL_SHRINK | GROW | SEAL), keeping the writable mapping: a segment its
 * creator reuses (the dispatcher's per-worker argument segment; the dispatcher never reads it
 * back, so a worker that writes to it only spoils its own arguments, and cannot make the
 * dispatcher's mapping fault). */
int mpx__seg_seal_size(mpx__seg *s);
/* Check received fd (taken over: closed) and map it read-only. MPX__SEG_EXACT (a result, from a
 * worker): a regular file of exactly `len` bytes, sealed against write, shrink and grow.
 * MPX__SEG_AT_LEAST (an argument, from the dispatcher): a regular file of at least `len` bytes
 * and at most 2 * max, sealed against shrink and grow, mapped whole (s->map_len, s->len = len).
 * len <= max always. MPX_ETOOBIG when len > max (checked first, before fstat), MPX_EPROTO when
 * the fd is not what was declared, MPX_ESYS/MPX_ENOMEM when mmap fails. */
enum { MPX__SEG_EXACT = 0, MPX__SEG_AT_LEAST = 1 };
int mpx__seg_map(mpx__seg *s, int fd, size_t len, size_t max, int mode);
/* Segments (memfds) this process has made so far (tests: reuse is counted, never timed). */
unsigned long mpx__seg_made(void);
/* The identity of fd's file (device and inode), to recognise a segment passed again. */
int mpx__seg_ident(int fd, unsigned long long id[2]);
/* Unmap and close whatever the segment holds (a ring slot goes back to the ring, a pool buffer
 * to the pool); it becomes MPX__SEG_NONE. */
void mpx__seg_free(mpx__seg *s);
/* Unmap a mapping made by mpx__seg_map (data and len as it gave them), or give a pool buffer
 * (data as mpx__seg_pool_get gave it) back to the pool. */
void mpx__seg_unmap(const void *data, size_t len);

#endif
