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

typedef struct mpx__seg {
  int fd;     /* -1: none */
  void *data; /* writable mapping while being filled; read-only mapping when received */
  size_t len;
  size_t map_len; /* bytes mapped (len rounded to what mmap was given; 0: no mapping) */
} mpx__seg;

#define MPX__SEG_NONE ((mpx__seg){.fd = -1})

/* A new segment of `len` bytes (len > 0), mapped writable at s->data (pages allocated up front).
 * MPX_ENOMEM, MPX_ESYS (out of file descriptors: errno says). */
int mpx__seg_create(mpx__seg *s, size_t len);
/* A new segment holding a copy of data[0..len), sealed (no mapping left). */
int mpx__seg_create_copy(mpx__seg *s, const void *data, size_t len);
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
/* The identity of fd's file (device and inode), to recognise a segment passed again. */
int mpx__seg_ident(int fd, unsigned long long id[2]);
/* Unmap and close whatever the segment holds; it becomes MPX__SEG_NONE. */
void mpx__seg_free(mpx__seg *s);
/* Unmap a mapping made by mpx__seg_map (data and len as it gave them). */
void mpx__seg_unmap(const void *data, size_t len);

#endif
