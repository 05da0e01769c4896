/* chan.c: framed messages over a file descriptor; see chan.h for the wire format and contract.
 * No locks and no global state: a channel belongs to its caller, who serialises senders and
 * receivers (one of each at a time).
 *
 * Trust: the peer may be hostile (a worker runs user code). A frame's 4-byte length is checked
 * against max_frame before anything else, and recv_nb's buffer grows geometrically with the body
 * bytes that actually arrived (capped by the frame's length), so a header that claims gigabytes
 * and then stalls costs the reader nothing.
 *
 * Passed fds (the process data plane): with fds_on, every read is a recvmsg with room for
 * MPX__CHAN_FDS_PER_FRAME descriptors, which are queued in arrival order (at most MPX__CHAN_FDQ;
 * more break the channel and are closed) for mpx__chan_take_fd; a sender attaches a frame's fds
 * to its first bytes. Closing the channel closes the fds nobody took. */
#include "os/chan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "os/clock.h"

#define MAX_PARTS 15 /* + the header = 16 iovecs per frame */

void mpx__chan_init(mpx__chan *c, int fd, size_t max_frame) {
  *c = (mpx__chan){.fd = fd, .max_frame = max_frame ? max_frame : MPX__CHAN_MAX_DEFAULT};
  if (c->max_frame > UINT32_MAX) c->max_frame = UINT32_MAX;
  struct stat st;
  c->is_socket = fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

void mpx__chan_close(mpx__chan *c) {
  if (!c) return;
  for (int fd; (fd = mpx__chan_take_fd(c)) >= 0;) close(fd);
  free(c->body);
  c->body = NULL;
  c->body_cap = 0;
  free(c->ra);
  c->ra = NULL;
  c->ra_off = c->ra_len = 0;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* Milliseconds left until the deadline (monotonic seconds), for poll(); -1 = forever. */
static int ms_left(double deadline) {
  if (deadline < 0) return -1;
  double left = deadline - mpx__now();
  if (left <= 0) return 0;
  return left > (double)INT_MAX / 1000 ? INT_MAX : (int)ceil(left * 1000);
}

static double deadline_of(double timeout) {
  if (isnan(timeout) || timeout < 0) return -1;
  return mpx__now() + timeout;
}

/* Wait for `events` on the fd: 1 ready, 0 timed out, negative code. */
static int wait_fd(int fd, short events, int ms) {
  for (;;) {
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, ms);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return MPX_ESYS;
  }
}

/* Check the parts of one frame and lay it out as iov[0] = the 4-byte little-endian header (in
 * hdr), iov[1..n] = the parts; *total is the body length. */
static int frame_layout(const mpx__chan *c, const struct iovec *parts, int n,
                        struct iovec iov[MAX_PARTS + 1], unsigned char hdr[4], size_t *total) {
  if (!c || c->fd < 0 || n < 0 || n > MAX_PARTS || (n && !parts)) return MPX_EINVAL;
  size_t t = 0;
  for (int i = 0; i < n; i++) {
    if (!parts[i].iov_base && parts[i].iov_len) return MPX_EINVAL;
    if (parts[i].iov_len > c->max_frame - t) return MPX_ETOOBIG;
    t += parts[i].iov_len;
    iov[i + 1] = parts[i];
  }
  hdr[0] = (unsigned char)t, hdr[1] = (unsigned char)(t >> 8);
  hdr[2] = (unsigned char)(t >> 16), hdr[3] = (unsigned char)(t >> 24);
  iov[0] = (struct iovec){.iov_base = hdr, .iov_len = 4};
  *total = t;
  return MPX_OK;
}

/* The SCM_RIGHTS control message for fds[0..nfds) in u (nfds > 0), attached to m. */
typedef union fd_cmsg {
  struct cmsghdr h;
  char buf[CMSG_SPACE(sizeof(int) * MPX__CHAN_FDS_PER_FRAME)];
} fd_cmsg;

static void attach_fds(struct msghdr *m, fd_cmsg *u, const int *fds, int nfds) {
  memset(u, 0, sizeof *u);
  m->msg_control = u->buf;
  m->msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
  struct cmsghdr *h = CMSG_FIRSTHDR(m);
  h->cmsg_level = SOL_SOCKET;
  h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
  memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
}

int mpx__chan_sendv(mpx__chan *c, const struct iovec *parts, int n) {
  return mpx__chan_sendv_fds(c, parts, n, NULL, 0);
}

int mpx__chan_sendv_fds(mpx__chan *c, const struct iovec *parts, int n, const int *fds, int nfds) {
  struct iovec iov[MAX_PARTS + 1];
  unsigned char hdr[4];
  size_t total;
  if (nfds < 0 || nfds > MPX__CHAN_FDS_PER_FRAME || (nfds && (!fds || !c || !c->is_socket)))
    return MPX_EINVAL;
  int rc = frame_layout(c, parts, n, iov, hdr, &total);
  if (rc) return rc;
  struct iovec *v = iov;
  int nv = n + 1;
  while (nv > 0) {
    ssize_t w;
    if (c->is_socket) {
      struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)nv};
      fd_cmsg u;
      if (nfds) attach_fds(&m, &u, fds, nfds);
      w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
      if (w > 0) nfds = 0; /* they went with the first bytes */
    } else {
      w = writev(c->fd, v, nv);
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int r = wait_fd(c->fd, POLLOUT, -1);
        if (r < 0) return r;
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET) return MPX_EEOF;
      return MPX_ESYS;
    }
    /* Skip what was written; resume a partly written part where it stopped. */
    size_t done = (size_t)w;
    while (nv > 0 && done >= v->iov_len) {
      done -= v->iov_len;
      v++;
      nv--;
    }
    if (nv > 0) {
      v->iov_base = (char *)v->iov_base + done;
      v->iov_len -= done;
    }
  }
  return MPX_OK;
}

int mpx__chan_send(mpx__chan *c, const void *data, size_t len) {
  struct iovec v = {.iov_base = (void *)data, .iov_len = len};
  return mpx__chan_sendv(c, &v, 1);
}

int mpx__chan_take_fd(mpx__chan *c) {
  if (!c || !c->fdq_n) return -1;
  int fd = c->fdq[c->fdq_head];
  c->fdq_head = (c->fdq_head + 1) % MPX__CHAN_FDQ;
  c->fdq_n--;
  return fd;
}

/* read(2) from the fd; with fds_on a recvmsg that queues the fds passed with the bytes. */
static ssize_t fd_read(mpx__chan *c, void *dst, size_t want) {
  if (!c->fds_on) return read(c->fd, dst, want);
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MPX__CHAN_FDS_PER_FRAME)];
  } u;
  struct iovec v = {.iov_base = dst, .iov_len = want};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  ssize_t r = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
  if (r < 0) return r;
  bool over = (m.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t j = 0; j < k; j++) {
      int fd;
      memcpy(&fd, CMSG_DATA(h) + j * sizeof(int), sizeof fd);
      if (c->fdq_n == MPX__CHAN_FDQ) {
        close(fd);
        over = true;
        continue;
      }
      c->fdq[(c->fdq_head + c->fdq_n++) % MPX__CHAN_FDQ] = fd;
    }
  }
  if (over) { /* more fds than any frame may carry: the peer is not following the protocol */
    c->broken = true;
    errno = EBADMSG;
    return -1;
  }
  return r;
}

/* Up to `want` bytes: what recv_nb read ahead first, else from the fd. Returns as read(2). */
static ssize_t chan_read(mpx__chan *c, void *dst, size_t want) {
  size_t have = c->ra_len - c->ra_off;
  if (!have) {
    c->drained = false; /* a read of ours: recv_nb's note about the fd is stale */
    return fd_read(c, dst, want);
  }
  size_t n = have < want ? have : want;
  memcpy(dst, c->ra + c->ra_off, n);
  c->ra_off += n;
  if (c->ra_off == c->ra_len) c->ra_off = c->ra_len = 0;
  return (ssize_t)n;
}

/* Read exactly `len` bytes (blocking, waiting with poll on a nonblocking fd). Returns 0,
 * MPX_EEOF if EOF came before any byte, MPX_EPROTO if EOF came after some, MPX_ESYS. */
static int read_full(mpx__chan *c, void *buf, size_t len, bool some_already) {
  int fd = c->fd;
  size_t got = 0;
  while (got < len) {
    ssize_t r = chan_read(c, (char *)buf + got, len - got);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0) return (got || some_already) ? MPX_EPROTO : MPX_EEOF;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int w = wait_fd(fd, POLLIN, -1);
      if (w < 0) return w;
      continue;
    }
    if (errno == ECONNRESET) return (got || some_already) ? MPX_EPROTO : MPX_EEOF;
    return MPX_ESYS;
  }
  return MPX_OK;
}

/* Make sure the header of the next frame is in c->hdr (waiting for it to begin up to the
 * deadline). Returns 0, MPX_ETIMEDOUT, MPX_EEOF, MPX_EPROTO, MPX_ESYS. */
static int get_header(mpx__chan *c, double deadline) {
  if (c->hdr_got == 4) return MPX_OK;
  if (c->hdr_got == 0 && c->ra_len == c->ra_off) {
    int w = wait_fd(c->fd, POLLIN, ms_left(deadline));
    if (w < 0) return w;
    if (w == 0) return MPX_ETIMEDOUT;
  }
  int rc = read_full(c, c->hdr + c->hdr_got, 4 - c->hdr_got, c->hdr_got > 0);
  if (rc) {
    if (rc == MPX_EPROTO) c->broken = true;
    return rc;
  }
  c->hdr_got = 4;
  c->body_got = 0;
  c->body_len = (size_t)c->hdr[0] | (size_t)c->hdr[1] << 8 | (size_t)c->hdr[2] << 16 |
                (size_t)c->hdr[3] << 24;
  if (c->body_len > c->max_frame) { /* checked before anything is allocated */
    c->broken = true;
    return MPX_ETOOBIG;
  }
  return MPX_OK;
}

/* Copy out / finish a frame whose body is (partly) in c->body. */
static int finish_into(mpx__chan *c, void *dst) {
  if (c->body_got < c->body_len) {
    if (c->body_cap < c->body_len) { /* recv_nb grew it only as far as the bytes it had */
      void *p = realloc(c->body, c->body_len);
      if (!p) return MPX_ENOMEM;
      c->body = p;
      c->body_cap = c->body_len;
    }
    int rc = read_full(c, c->body + c->body_got, c->body_len - c->body_got, true);
    if (rc) {
      c->broken = true;
      return rc == MPX_EEOF ? MPX_EPROTO : rc;
    }
    c->body_got = c->body_len;
  }
  if (c->body_len) memcpy(dst, c->body, c->body_len);
  c->hdr_got = 0;
  c->body_got = 0;
  return MPX_OK;
}

int mpx__chan_recv(mpx__chan *c, void *buf, size_t cap, size_t *len, double timeout) {
  if (!c || !len || (!buf && cap)) return MPX_EINVAL;
  if (c->fd < 0) return MPX_ECLOSED;
  if (c->broken) return MPX_EPROTO;
  int rc = get_header(c, deadline_of(timeout));
  if (rc) return rc;
  *len = c->body_len;
  if (c->body_len > cap) return MPX_ETOOBIG; /* stays pending */
  if (c->body_got > 0) return finish_into(c, buf);
  rc = c->body_len ? read_full(c, buf, c->body_len, true) : 0;
  if (rc) {
    c->broken = true;
    return rc == MPX_EEOF ? MPX_EPROTO : rc;
  }
  c->hdr_got = 0;
  return MPX_OK;
}

int mpx__chan_recv_alloc(mpx__chan *c, void **data, size_t *len, double timeout) {
  if (!c || !data || !len) return MPX_EINVAL;
  *data = NULL;
  *len = 0;
  if (c->fd < 0) return MPX_ECLOSED;
  if (c->broken) return MPX_EPROTO;
  int rc = get_header(c, deadline_of(timeout));
  if (rc) return rc;
  void *p = NULL;
  if (c->body_len && !(p = malloc(c->body_len))) return MPX_ENOMEM; /* frame stays pending */
  size_t n;
  rc = mpx__chan_recv(c, p, c->body_len, &n, 0);
  if (rc) {
    free(p);
    return rc;
  }
  *data = p;
  *len = n;
  return MPX_OK;
}

/* recv_nb's source of bytes: the read-ahead, refilled with one read of up to MPX__CHAN_RA bytes
 * when it is empty (a large body is read straight into place instead). -2 without a syscall when
 * the previous refill came back short: the fd had nothing more then, so the caller should poll. */
static ssize_t read_ahead(mpx__chan *c, void *dst, size_t want) {
  if (c->ra_len > c->ra_off || want >= MPX__CHAN_RA) return chan_read(c, dst, want);
  if (c->drained) {
    c->drained = false;
    return -2;
  }
  if (!c->ra && !(c->ra = malloc(MPX__CHAN_RA))) return chan_read(c, dst, want);
  unsigned fds_before = c->fdq_n;
  ssize_t r = fd_read(c, c->ra, MPX__CHAN_RA);
  if (r <= 0) return r;
  c->ra_off = 0;
  c->ra_len = (size_t)r;
  /* short: the fd was empty, unless the read stopped at passed fds (the kernel ends a read
   * there, whatever follows) */
  bool drained = (size_t)r < MPX__CHAN_RA && c->fdq_n == fds_before;
  r = chan_read(c, dst, want);
  c->drained = drained;
  return r;
}

int mpx__chan_recv_nb(mpx__chan *c, const void **data, size_t *len) {
  if (!c || !data || !len) return MPX_EINVAL;
  if (c->fd < 0) return MPX_ECLOSED;
  if (c->broken) return MPX_EPROTO;
  for (;;) {
    unsigned char *dst;
    size_t want;
    if (c->hdr_got < 4) {
      dst = c->hdr + c->hdr_got;
      want = 4 - c->hdr_got;
    } else {
      if (c->body_got == c->body_cap && c->body_got < c->body_len) {
        /* grow with the bytes that arrived, never ahead of them: a header alone pins nothing */
        size_t cap = c->body_cap ? c->body_cap : 256;
        while (cap <= c->body_got) cap *= 2;
        if (cap > c->body_len) cap = c->body_len;
        void *p = realloc(c->body, cap);
        if (!p) return MPX_ENOMEM;
        c->body = p;
        c->body_cap = cap;
      }
      dst = c->body + c->body_got;
      want = (c->body_len < c->body_cap ? c->body_len : c->body_cap) - c->body_got;
    }
    if (want) {
      ssize_t r = read_ahead(c, dst, want);
      if (r == -2) return 0; /* the fd was emptied by the last read: poll first */
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno != ECONNRESET) return MPX_ESYS;
        r = 0;
      }
      if (r == 0) {
        bool mid = c->hdr_got > 0;
        if (mid) c->broken = true;
        return mid ? MPX_EPROTO : MPX_EEOF;
      }
      if (c->hdr_got < 4) {
        c->hdr_got += (unsigned)r;
        if (c->hdr_got < 4) continue;
        c->body_got = 0;
        c->body_len = (size_t)c->hdr[0] | (size_t)c->hdr[1] << 8 | (size_t)c->hdr[2] << 16 |
                      (size_t)c->hdr[3] << 24;
        if (c->body_len > c->max_frame) {
          c->broken = true;
          return MPX_ETOOBIG;
        }
        continue;
      }
      c->body_got += (size_t)r;
      continue;
    }
    /* whole frame */
    *data = c->body;
    *len = c->body_len;
    c->hdr_got = 0;
    c->body_got = 0;
    return 1;
  }
}

int mpx__chan_poll(mpx__chan *c, double timeout) {
  if (!c) return MPX_EINVAL;
  if (c->fd < 0) return MPX_ECLOSED;
  if (c->hdr_got > 0 || c->ra_len > c->ra_off) return 1;
  int w = wait_fd(c->fd, POLLIN, ms_left(deadline_of(timeout)));
  return w;
}

/* ---- additions for the process backend's event loop (see chan.h) ---------------------------- */

int mpx__chan_sendv_nb(mpx__chan *c, const struct iovec *parts, int n, size_t *sent) {
  return mpx__chan_sendv_nb_fds(c, parts, n, NULL, 0, sent);
}

int mpx__chan_sendv_nb_fds(mpx__chan *c, const struct iovec *parts, int n, const int *fds,
                           int nfds, size_t *sent) {
  if (!sent) return MPX_EINVAL;
  if (nfds < 0 || nfds > MPX__CHAN_FDS_PER_FRAME || (nfds && (!fds || !c || !c->is_socket)))
    return MPX_EINVAL;
  struct iovec iov[MAX_PARTS + 1];
  unsigned char hdr[4];
  size_t total;
  int rc = frame_layout(c, parts, n, iov, hdr, &total);
  if (rc) return rc;
  if (*sent > total + 4) return MPX_EINVAL;
  struct iovec *v = iov;
  int nv = n + 1;
  size_t skip = *sent;
  for (;;) {
    while (nv > 0 && skip >= v->iov_len) { /* skip what earlier calls wrote */
      skip -= v->iov_len;
      v++;
      nv--;
    }
    if (nv == 0) return 1;
    v->iov_base = (char *)v->iov_base + skip;
    v->iov_len -= skip;
    skip = 0;
    ssize_t w;
    if (c->is_socket) {
      struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)nv};
      fd_cmsg u;
      if (nfds && *sent == 0) attach_fds(&m, &u, fds, nfds);
      w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      w = writev(c->fd, v, nv);
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == EPIPE || errno == ECONNRESET) return MPX_EEOF;
      return MPX_ESYS;
    }
    *sent += (size_t)w;
    skip = (size_t)w;
  }
}

void mpx__chan_shrink(mpx__chan *c, size_t keep) {
  if (!c || c->body_cap <= keep || c->hdr_got != 0) return; /* no frame under way */
  free(c->body);
  c->body = NULL;
  c->body_cap = 0;
}
