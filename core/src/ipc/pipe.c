/* pipe.c: multiprocessing.Pipe over a socketpair, using the framed channel of os/chan.c.
 *
 * An end is a heap handle holding one mpx__chan and what the end may do. No locks: the caller
 * keeps to one sender and one receiver per end at a time (see ipc_pipe.h). After fork() each
 * process has its own copy of the handle and its own fd: mpx_pipe_close closes that fd,
 * mpx_pipe_destroy also frees that copy. */
#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "os/chan.h"
#include "mpx/ipc_pipe.h"

#define PIPE_MAGIC 0x6d707850u /* "mpxP" */

struct mpx_pipe {
  uint32_t magic;
  bool can_read;
  bool can_write;
  mpx__chan chan;
};

static bool ok(const mpx_pipe *p) { return p && p->magic == PIPE_MAGIC; }

int mpx_pipe_create(mpx_pipe **a, mpx_pipe **b, bool duplex) {
  if (!a || !b) return MPX_EINVAL;
  *a = *b = NULL;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return MPX_ESYS;
  mpx_pipe *x = calloc(1, sizeof *x), *y = calloc(1, sizeof *y);
  if (!x || !y) {
    free(x);
    free(y);
    close(sv[0]);
    close(sv[1]);
    return MPX_ENOMEM;
  }
  if (!duplex) { /* the unused directions are shut so that a misuse cannot leave bytes behind */
    shutdown(sv[0], SHUT_WR);
    shutdown(sv[1], SHUT_RD);
  }
  x->magic = y->magic = PIPE_MAGIC;
  x->can_read = true;
  x->can_write = duplex;
  y->can_read = duplex;
  y->can_write = true;
  mpx__chan_init(&x->chan, sv[0], 0);
  mpx__chan_init(&y->chan, sv[1], 0);
  *a = x;
  *b = y;
  return MPX_OK;
}

int mpx_pipe_set_max(mpx_pipe *p, size_t max_bytes) {
  if (!ok(p) || max_bytes == 0 || max_bytes > UINT32_MAX) return MPX_EINVAL;
  p->chan.max_frame = max_bytes;
  return MPX_OK;
}

static int can_send(const mpx_pipe *p) {
  if (!ok(p)) return MPX_EINVAL;
  if (p->chan.fd < 0) return MPX_ECLOSED;
  return p->can_write ? MPX_OK : MPX_EPERM;
}

static int can_recv(const mpx_pipe *p) {
  if (!ok(p)) return MPX_EINVAL;
  if (p->chan.fd < 0) return MPX_ECLOSED;
  return p->can_read ? MPX_OK : MPX_EPERM;
}

int mpx_pipe_send_bytes(mpx_pipe *p, const void *data, size_t len) {
  int rc = can_send(p);
  if (rc) return rc;
  if (!data && len) return MPX_EINVAL;
  return mpx__chan_send(&p->chan, data, len);
}

int mpx_pipe_recv_bytes(mpx_pipe *p, void *buf, size_t cap, size_t *len, double timeout) {
  int rc = can_recv(p);
  if (rc) return rc;
  if (!len || (!buf && cap)) return MPX_EINVAL;
  return mpx__chan_recv(&p->chan, buf, cap, len, timeout);
}

int mpx_pipe_recv_bytes_alloc(mpx_pipe *p, void **data, size_t *len, double timeout) {
  int rc = can_recv(p);
  if (rc) return rc;
  if (!data || !len) return MPX_EINVAL;
  return mpx__chan_recv_alloc(&p->chan, data, len, timeout);
}

int mpx_pipe_send(mpx_pipe *p, const struct ProtobufCMessage *msg) {
  int rc = can_send(p);
  if (rc) return rc;
  if (!msg || !msg->descriptor) return MPX_EINVAL;
  size_t n = protobuf_c_message_get_packed_size(msg);
  if (n > p->chan.max_frame) return MPX_ETOOBIG;
  uint8_t small[256];
  uint8_t *buf = n <= sizeof small ? small : malloc(n);
  if (!buf) return MPX_ENOMEM;
  protobuf_c_message_pack(msg, buf);
  rc = mpx__chan_send(&p->chan, buf, n);
  if (buf != small) free(buf);
  return rc;
}

int mpx_pipe_recv(mpx_pipe *p, const struct ProtobufCMessageDescriptor *desc,
                  struct ProtobufCMessage **msg, double timeout) {
  int rc = can_recv(p);
  if (rc) return rc;
  if (!desc || !msg) return MPX_EINVAL;
  *msg = NULL;
  void *data;
  size_t len;
  rc = mpx__chan_recv_alloc(&p->chan, &data, &len, timeout);
  if (rc) return rc;
  *msg = protobuf_c_message_unpack(desc, NULL, len, data);
  free(data);
  return *msg ? MPX_OK : MPX_EPROTO;
}

int mpx_pipe_poll(mpx_pipe *p, double timeout) {
  int rc = can_recv(p);
  if (rc) return rc;
  return mpx__chan_poll(&p->chan, timeout);
}

int mpx_pipe_fileno(const mpx_pipe *p, int *fd) {
  if (!ok(p) || !fd) return MPX_EINVAL;
  if (p->chan.fd < 0) return MPX_ECLOSED;
  *fd = p->chan.fd;
  return MPX_OK;
}

int mpx_pipe_readable(const mpx_pipe *p) { return ok(p) ? p->can_read : MPX_EINVAL; }
int mpx_pipe_writable(const mpx_pipe *p) { return ok(p) ? p->can_write : MPX_EINVAL; }

int mpx_pipe_close(mpx_pipe *p) {
  if (!ok(p)) return MPX_EINVAL;
  mpx__chan_close(&p->chan); /* fd = -1: later calls answer MPX_ECLOSED */
  return MPX_OK;
}

int mpx_pipe_destroy(mpx_pipe *p) {
  if (!ok(p)) return MPX_EINVAL;
  p->magic = 0;
  mpx__chan_close(&p->chan);
  free(p);
  return MPX_OK;
}
