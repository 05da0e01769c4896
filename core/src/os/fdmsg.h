/* fdmsg.h: send one message with at most one file descriptor attached (SCM_RIGHTS), internal to
 * libmpx. The fork server's requests (transport/process/forkserver.c) and the shared objects'
 * broker answers (os/share.c) both send a fixed record with an optional fd; the framed channel
 * (os/chan.c) attaches several fds to a frame with its own helper. The receiving sides check
 * what arrives (its kind, and that exactly one fd came) before they use it.
 * Guarantees: one sendmsg call (so a SOCK_SEQPACKET or datagram socket gets one record, fd
 * included, or nothing); fd < 0 sends the record alone; the fd stays open in the sender.
 * Locking: none; the caller serialises writers on one socket. */
#ifndef MPX_OS_FDMSG_H
#define MPX_OS_FDMSG_H

#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* sendmsg(2) of `len` bytes at `data` with `fd` attached when fd >= 0; its result and errno. */
static inline ssize_t mpx__send_fd(int sock, const void *data, size_t len, int fd, int flags) {
  struct iovec v = {.iov_base = (void *)data, .iov_len = len};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr h = {.msg_iov = &v, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    h.msg_control = u.buf;
    h.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return sendmsg(sock, &h, flags);
}

#endif
