/* chan.h: a framed byte channel over one file descriptor (internal to libmpx; in os/ because
 * both mpx_pipe in core/src/ipc and the process transport are built on it).
 *
 * Wire format: each frame is a 4-byte little-endian length followed by that many body bytes. The
 * length is checked against the channel's max_frame before anything is allocated or read; a frame
 * over the limit breaks the channel (later calls answer MPX_EPROTO), because skipping an
 * attacker-sized body is not worth doing.
 *
 * One mechanism, two users: mpx_pipe (blocking fds, one frame per call) and the process backend's
 * worker socketpairs (nonblocking fds polled in an event loop). So the channel offers
 *   - mpx__chan_sendv: send one frame made of several parts (header + payload, envelope + bytes)
 *     with writev/sendmsg, without copying them together; partial writes and EINTR are resumed,
 *     EAGAIN on a nonblocking fd waits with poll(). A closed peer gives MPX_EEOF (no SIGPIPE:
 *     sockets are written with MSG_NOSIGNAL).
 *   - mpx__chan_recv: a blocking receive into the caller's buffer; a frame larger than the
 *     buffer is left pending and MPX_ETOOBIG says how large it is, so a retry with a bigger buffer
 *     gets it.
 *   - mpx__chan_recv_alloc: the same into a malloc'd buffer of exactly the frame's size.
 *   - mpx__chan_recv_nb: for nonblocking fds: read what the fd has, assemble the frame in the
 *     channel's own buffer, which grows with the bytes received (never from the header alone),
 *     answer 1 when a whole frame is there (0: come back when poll says readable).
 *   - mpx__chan_poll: readiness with a timeout (a pending frame or EOF counts as ready).
 * The timeout of the blocking receives bounds the wait for a frame to begin; once its first bytes
 * are in, the rest is read to the end (a peer that dies mid-frame gives EOF -> MPX_EPROTO).
 *
 * Thread-safety: a channel is not locked. One thread sends and one receives at a time (the
 * caller serialises, as Python's Connection requires); sending and receiving may overlap. */
#ifndef MPX_OS_CHAN_H
#define MPX_OS_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mpx/error.h"

/* Largest frame by default: 64 MiB (a uint32 length could say 4 GiB). */
#define MPX__CHAN_MAX_DEFAULT ((size_t)64 << 20)

typedef struct mpx__chan {
  int fd;
  size_t max_frame;
  bool is_socket; /* sendmsg(MSG_NOSIGNAL) works; otherwise writev */
  bool broken;    /* a frame over max_frame or a truncated frame was seen */
  /* receive state: a header read ahead, and the body assembled by recv_nb */
  unsigned char hdr[4];
  unsigned hdr_got; /* 0..4 */
  size_t body_len;  /* valid when hdr_got == 4 */
  size_t body_got;  /* bytes of the body in `body` (recv_nb) */
  unsigned char *body;
  size_t body_cap;
  /* recv_nb reads ahead: one read(2) takes whatever the fd has (up to MPX__CHAN_RA bytes), so a
   * small frame costs one syscall, and the bytes past it wait here for the next call */
  unsigned char *ra;
  size_t ra_off, ra_len; /* ra[ra_off..ra_len) not consumed yet */
  bool drained;          /* recv_nb's last read-ahead came back short: the fd was empty then */
  /* file descriptors the peer passed with SCM_RIGHTS (only with fds_on: the process data
   * plane's segments), in arrival order, until mpx__chan_take_fd takes them */
  bool fds_on;
  int fdq[32]; /* MPX__CHAN_FDQ */
  unsigned fdq_head, fdq_n;
} mpx__chan;

/* Most fds waiting in a channel; a peer that passes more breaks the channel (MPX_ESYS on read,
 * errno EBADMSG) and the extra fds are closed. */
#define MPX__CHAN_FDQ 32
/* Most fds passed with one frame. */
#define MPX__CHAN_FDS_PER_FRAME 16

/* Read-ahead buffer of recv_nb (allocated on its first use). */
#define MPX__CHAN_RA ((size_t)64 << 10)

/* Start a channel on `fd` (not taken over: mpx__chan_close closes it). max_frame 0: default. */
void mpx__chan_init(mpx__chan *c, int fd, size_t max_frame);
/* Free the receive buffer and close the fd (if >= 0). */
void mpx__chan_close(mpx__chan *c);

/* Accept fds passed with SCM_RIGHTS on this (socket) channel from now on; without it they are
 * closed as they arrive (the kernel does so when no room is given for them). */
static inline void mpx__chan_accept_fds(mpx__chan *c) { c->fds_on = c->is_socket; }
/* The oldest fd the peer passed and nobody took yet (the caller owns it), or -1. A frame's fds
 * travel with its first bytes, so they are here by the time the frame is complete. */
int mpx__chan_take_fd(mpx__chan *c);

/* As mpx__chan_sendv, passing fds[0..nfds) (at most MPX__CHAN_FDS_PER_FRAME; the caller keeps
 * them open and closes them after) with the frame's first bytes. */
int mpx__chan_sendv_fds(mpx__chan *c, const struct iovec *parts, int n, const int *fds, int nfds);

/* Send one frame whose body is parts[0..n) concatenated. Returns 0, MPX_ETOOBIG (body over
 * max_frame, nothing sent), MPX_EEOF (peer closed), MPX_EINVAL or MPX_ESYS. */
int mpx__chan_sendv(mpx__chan *c, const struct iovec *parts, int n);
/* Convenience: one part. */
int mpx__chan_send(mpx__chan *c, const void *data, size_t len);

/* Wait up to `timeout` seconds (negative: forever, 0: poll) for a frame to begin, then read it
 * into buf[0..cap). *len = the frame's length. MPX_ETOOBIG with *len = the needed size when it
 * does not fit (the frame stays pending); MPX_EEOF when the peer closed between frames;
 * MPX_EPROTO on a truncated or oversized frame; MPX_ETIMEDOUT. */
int mpx__chan_recv(mpx__chan *c, void *buf, size_t cap, size_t *len, double timeout);
/* As mpx__chan_recv into a new malloc'd buffer (*data, caller frees; NULL when *len is 0). */
int mpx__chan_recv_alloc(mpx__chan *c, void **data, size_t *len, double timeout);

/* Nonblocking receive step for an fd opened O_NONBLOCK: returns 1 with *data and *len pointing at a
 * whole frame inside the channel (valid until the next receive on it), 0 when more bytes are
 * needed, MPX_EEOF, MPX_EPROTO or MPX_ESYS. A 0 means: wait until poll says the fd is readable
 * (after a read that emptied the fd it is answered without a syscall; a whole frame already read
 * ahead is always returned first, never left behind a 0). */
int mpx__chan_recv_nb(mpx__chan *c, const void **data, size_t *len);

/* Make the next recv_nb read the fd even if its last read-ahead found the fd empty: for a caller
 * that must see everything the peer wrote (the peer died) without polling first. */
static inline void mpx__chan_forget_drained(mpx__chan *c) { c->drained = false; }

/* 1 if a receive would not block for the frame's start (data, a pending frame, or EOF), 0 if not
 * within `timeout`; negative code on error. */
int mpx__chan_poll(mpx__chan *c, double timeout);

/* ---- additions for the process backend's event loop ---------------------------------------- */

/* Nonblocking send of one frame (header + parts[0..n)), resumable: *sent counts the frame's bytes
 * (header included) already written; start at 0 and call again with the same parts and *sent
 * when the fd is writable. Never waits: returns 1 when the whole frame is out, 0 when the fd is
 * full (*sent updated), MPX_ETOOBIG (nothing sent), MPX_EEOF (peer closed), MPX_EINVAL, MPX_ESYS.
 * Sockets are written with MSG_DONTWAIT, so the fd itself may be blocking. */
int mpx__chan_sendv_nb(mpx__chan *c, const struct iovec *parts, int n, size_t *sent);
/* As mpx__chan_sendv_nb, passing fds[0..nfds) with the first bytes written (when *sent is 0). */
int mpx__chan_sendv_nb_fds(mpx__chan *c, const struct iovec *parts, int n, const int *fds,
                           int nfds, size_t *sent);

/* Free the receive buffer if it grew past `keep` bytes and no frame is under way (call it after a
 * large frame was consumed), so that one large message does not pin its size for good. */
void mpx__chan_shrink(mpx__chan *c, size_t keep);

#endif
