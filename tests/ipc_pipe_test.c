/* ipc_pipe_test: mpx_pipe between threads and forked processes: duplex and one-way ends,
 * EPERM on the wrong direction, EOF when the peer closes or dies, poll with timeouts of 0, small
 * and negative, large messages (partial reads and writes), ETOOBIG that keeps the message, the
 * max-frame check on a forged header, a truncated frame, protobuf-c messages, bad input; and the
 * internal channel (chan.h) the process backend reuses: iovec sends and nonblocking receives. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

#include "os/chan.h"
#include "mpx.pb-c.h"

static void test_duplex_local(void) {
  mpx_pipe *a, *b;
  CHECK_OK(mpx_pipe_create(&a, &b, true));
  CHECK(mpx_pipe_readable(a) == 1 && mpx_pipe_writable(a) == 1);
  CHECK_OK(mpx_pipe_send_bytes(a, "hello", 5));
  CHECK_OK(mpx_pipe_send_bytes(b, "", 0));
  char buf[16];
  size_t len;
  CHECK(mpx_pipe_poll(b, 0) == 1);
  CHECK_OK(mpx_pipe_recv_bytes(b, buf, sizeof buf, &len, -1));
  CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
  CHECK_OK(mpx_pipe_recv_bytes(a, buf, sizeof buf, &len, 0));
  CHECK(len == 0);
  /* nothing there: poll and recv time out */
  CHECK(mpx_pipe_poll(a, 0) == 0);
  double t0 = check_now();
  CHECK(mpx_pipe_poll(a, 0.05) == 0);
  CHECK(check_now() - t0 >= 0.045);
  CHECK_RC(mpx_pipe_recv_bytes(a, buf, sizeof buf, &len, 0), MPX_ETIMEDOUT);
  CHECK_RC(mpx_pipe_recv_bytes(a, buf, sizeof buf, &len, 0.02), MPX_ETIMEDOUT);
  /* too small a buffer keeps the message */
  CHECK_OK(mpx_pipe_send_bytes(a, "0123456789", 10));
  CHECK_RC(mpx_pipe_recv_bytes(b, buf, 4, &len, -1), MPX_ETOOBIG);
  CHECK(len == 10);
  void *d;
  CHECK_OK(mpx_pipe_recv_bytes_alloc(b, &d, &len, -1));
  CHECK(len == 10 && memcmp(d, "0123456789", 10) == 0);
  free(d);
  /* protobuf */
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = -7;
  e.message = "boom";
  CHECK_OK(mpx_pipe_send(a, &e.base));
  ProtobufCMessage *m;
  CHECK_OK(mpx_pipe_recv(b, &mpx__error__descriptor, &m, 1));
  CHECK(((Mpx__Error *)m)->code == -7 && strcmp(((Mpx__Error *)m)->message, "boom") == 0);
  protobuf_c_message_free_unpacked(m, NULL);
  CHECK_OK(mpx_pipe_send_bytes(a, "\xff\xff\xff", 3));
  CHECK_RC(mpx_pipe_recv(b, &mpx__error__descriptor, &m, 1), MPX_EPROTO);
  /* close one end: the other sees EOF, for recv and for send */
  CHECK_OK(mpx_pipe_send_bytes(a, "last", 4));
  CHECK_OK(mpx_pipe_close(a));
  CHECK_OK(mpx_pipe_close(a)); /* twice is fine */
  CHECK_RC(mpx_pipe_send_bytes(a, "x", 1), MPX_ECLOSED);
  CHECK_RC(mpx_pipe_recv_bytes(a, buf, sizeof buf, &len, 0), MPX_ECLOSED);
  CHECK_RC(mpx_pipe_poll(a, 0), MPX_ECLOSED);
  int fd;
  CHECK_RC(mpx_pipe_fileno(a, &fd), MPX_ECLOSED);
  CHECK_OK(mpx_pipe_destroy(a));
  CHECK_OK(mpx_pipe_recv_bytes(b, buf, sizeof buf, &len, -1)); /* what was sent still arrives */
  CHECK(mpx_pipe_poll(b, -1) == 1);                            /* EOF is "ready" */
  CHECK_RC(mpx_pipe_recv_bytes(b, buf, sizeof buf, &len, -1), MPX_EEOF);
  CHECK_RC(mpx_pipe_send_bytes(b, "x", 1), MPX_EEOF); /* no SIGPIPE */
  CHECK_OK(mpx_pipe_destroy(b));
}

static void test_oneway(void) {
  mpx_pipe *r, *w;
  CHECK_OK(mpx_pipe_create(&r, &w, false));
  CHECK(mpx_pipe_readable(r) == 1 && mpx_pipe_writable(r) == 0);
  CHECK(mpx_pipe_readable(w) == 0 && mpx_pipe_writable(w) == 1);
  char buf[8];
  size_t len;
  CHECK_RC(mpx_pipe_send_bytes(r, "x", 1), MPX_EPERM);
  CHECK_RC(mpx_pipe_recv_bytes(w, buf, sizeof buf, &len, 0), MPX_EPERM);
  CHECK_RC(mpx_pipe_poll(w, 0), MPX_EPERM);
  CHECK_OK(mpx_pipe_send_bytes(w, "abc", 3));
  CHECK_OK(mpx_pipe_recv_bytes(r, buf, sizeof buf, &len, 1));
  CHECK(len == 3);
  CHECK_OK(mpx_pipe_destroy(w));
  CHECK_RC(mpx_pipe_recv_bytes(r, buf, sizeof buf, &len, 1), MPX_EEOF);
  CHECK_OK(mpx_pipe_destroy(r));
}

static void test_bad_input(void) {
  mpx_pipe *a, *b;
  size_t len;
  char buf[4];
  CHECK_RC(mpx_pipe_create(NULL, &b, true), MPX_EINVAL);
  CHECK_OK(mpx_pipe_create(&a, &b, true));
  CHECK_RC(mpx_pipe_send_bytes(NULL, "x", 1), MPX_EINVAL);
  CHECK_RC(mpx_pipe_send_bytes(a, NULL, 1), MPX_EINVAL);
  CHECK_RC(mpx_pipe_recv_bytes(a, NULL, 4, &len, 0), MPX_EINVAL);
  CHECK_RC(mpx_pipe_recv_bytes(a, buf, 4, NULL, 0), MPX_EINVAL);
  CHECK_RC(mpx_pipe_recv_bytes_alloc(a, NULL, &len, 0), MPX_EINVAL);
  CHECK_RC(mpx_pipe_send(a, NULL), MPX_EINVAL);
  CHECK_RC(mpx_pipe_recv(a, NULL, NULL, 0), MPX_EINVAL);
  CHECK_RC(mpx_pipe_set_max(a, 0), MPX_EINVAL);
  CHECK(mpx_pipe_poll(NULL, 0) == MPX_EINVAL);
  CHECK_RC(mpx_pipe_destroy(NULL), MPX_EINVAL);
  CHECK_RC(mpx_pipe_close(NULL), MPX_EINVAL);
  /* the sender's limit */
  CHECK_OK(mpx_pipe_set_max(a, 8));
  CHECK_RC(mpx_pipe_send_bytes(a, "123456789", 9), MPX_ETOOBIG);
  /* a forged header over the receiver's limit: refused before allocating, end broken */
  CHECK_OK(mpx_pipe_set_max(b, 1000));
  int fd;
  CHECK_OK(mpx_pipe_fileno(a, &fd));
  unsigned char forged[4] = {0xff, 0xff, 0xff, 0x7f};
  CHECK(write(fd, forged, 4) == 4);
  void *d;
  CHECK_RC(mpx_pipe_recv_bytes_alloc(b, &d, &len, 1), MPX_ETOOBIG);
  CHECK_RC(mpx_pipe_recv_bytes(b, buf, sizeof buf, &len, 1), MPX_EPROTO);
  mpx_pipe_destroy(a);
  mpx_pipe_destroy(b);
  /* a truncated frame: header says 100, 10 bytes come, then the writer closes */
  CHECK_OK(mpx_pipe_create(&a, &b, true));
  CHECK_OK(mpx_pipe_fileno(a, &fd));
  unsigned char part[14] = {100, 0, 0, 0};
  CHECK(write(fd, part, sizeof part) == (ssize_t)sizeof part);
  mpx_pipe_destroy(a);
  CHECK_RC(mpx_pipe_recv_bytes_alloc(b, &d, &len, 1), MPX_EPROTO);
  mpx_pipe_destroy(b);
}

/* ---- across processes ---- */
typedef struct parg {
  mpx_pipe *end;   /* the child's end */
  mpx_pipe *other; /* the parent's end: the child closes its copy */
  int n;
} parg;

/* Echo every message back, doubled in length, until EOF. */
static int pipe_echo(mpx_task_ctx *ctx, const void *p, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  parg a;
  memcpy(&a, p, sizeof a);
  mpx_pipe_destroy(a.other);
  for (;;) {
    void *d;
    size_t n;
    int rc = mpx_pipe_recv_bytes_alloc(a.end, &d, &n, -1);
    if (rc == MPX_EEOF) break;
    CHECK_OK(rc);
    char *twice = malloc(2 * n + 1);
    if (n) {
      memcpy(twice, d, n);
      memcpy(twice + n, d, n);
    }
    CHECK_OK(mpx_pipe_send_bytes(a.end, twice, 2 * n));
    free(twice);
    free(d);
  }
  mpx_pipe_destroy(a.end);
  return 0;
}
MPX_TASK(pipe_echo);

static int pipe_die(mpx_task_ctx *ctx, const void *p, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out, (void)p;
  raise(SIGKILL);
  return 0;
}
MPX_TASK(pipe_die);

static void test_processes(void) {
  mpx_pipe *mine, *theirs;
  CHECK_OK(mpx_pipe_create(&mine, &theirs, true));
  parg a = {theirs, mine, 0};
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, "pipe_echo", &a, sizeof a, "echo"));
  CHECK_OK(mpx_process_start(p));
  mpx_pipe_destroy(theirs);
  size_t sizes[] = {0, 1, 100, 70000, 3 << 20}; /* up to 3 MiB: many partial reads/writes */
  for (int i = 0; i < 5; i++) {
    char *msg = malloc(sizes[i] + 1);
    for (size_t k = 0; k < sizes[i]; k++) msg[k] = (char)(k * 7 + i);
    CHECK_OK(mpx_pipe_send_bytes(mine, msg, sizes[i]));
    void *d;
    size_t n;
    CHECK_OK(mpx_pipe_recv_bytes_alloc(mine, &d, &n, 30));
    CHECK(n == 2 * sizes[i]);
    CHECK(!n ||
          (memcmp(d, msg, sizes[i]) == 0 && memcmp((char *)d + sizes[i], msg, sizes[i]) == 0));
    free(d);
    free(msg);
  }
  mpx_pipe_destroy(mine); /* the child sees EOF and exits 0 */
  CHECK_OK(mpx_process_join(p, 10));
  int code;
  CHECK_OK(mpx_process_exitcode(p, &code));
  CHECK(code == 0);
  mpx_process_destroy(p);

  /* the peer process dies: EOF */
  CHECK_OK(mpx_pipe_create(&mine, &theirs, true));
  a = (parg){theirs, mine, 0};
  CHECK_OK(mpx_process_create(&p, "pipe_die", &a, sizeof a, NULL));
  CHECK_OK(mpx_process_start(p));
  mpx_pipe_destroy(theirs);
  char buf[4];
  size_t n;
  CHECK_RC(mpx_pipe_recv_bytes(mine, buf, sizeof buf, &n, 10), MPX_EEOF);
  CHECK_OK(mpx_process_join(p, 10));
  CHECK_OK(mpx_process_exitcode(p, &code));
  CHECK(code == -SIGKILL);
  mpx_process_destroy(p);
  mpx_pipe_destroy(mine);
}

/* ---- the internal channel ---- */
static void test_chan(void) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
  mpx__chan tx, rx;
  mpx__chan_init(&tx, sv[0], 0);
  mpx__chan_init(&rx, sv[1], 1 << 20);
  const void *d;
  size_t len;
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 0); /* nothing yet */
  struct iovec parts[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
  CHECK_OK(mpx__chan_sendv(&tx, parts, 3));
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 1);
  CHECK(len == 6 && memcmp(d, "abcdef", 6) == 0);
  /* a frame arriving byte by byte is assembled across calls */
  unsigned char raw[7] = {3, 0, 0, 0, 'x', 'y', 'z'};
  for (int i = 0; i < 7; i++) {
    CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 0);
    CHECK(write(sv[0], raw + i, 1) == 1);
  }
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 1);
  CHECK(len == 3 && memcmp(d, "xyz", 3) == 0);
  /* frames that arrive together are read ahead in one read and each returned before any 0; one
   * larger than the read-ahead buffer, cut across it, is assembled whole */
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 0);
  size_t large = MPX__CHAN_RA + 1000;
  unsigned char *lg = malloc(large);
  for (size_t i = 0; i < large; i++) lg[i] = (unsigned char)(i * 7);
  struct iovec three[3] = {{"one", 3}, {"two!", 4}, {lg, large}};
  pid_t sender = fork();
  if (sender == 0) {
    int bad = 0;
    for (int k = 0; k < 3; k++) bad |= mpx__chan_sendv(&tx, &three[k], 1);
    _exit(bad ? 1 : 0);
  }
  int got_frames = 0;
  while (got_frames < 3) {
    int r = mpx__chan_recv_nb(&rx, &d, &len);
    CHECK(r >= 0);
    if (r == 0) {
      CHECK(mpx__chan_poll(&rx, 10) == 1);
      continue;
    }
    CHECK(len == three[got_frames].iov_len && memcmp(d, three[got_frames].iov_base, len) == 0);
    got_frames++;
  }
  int sst;
  waitpid(sender, &sst, 0);
  CHECK(WIFEXITED(sst) && WEXITSTATUS(sst) == 0);
  free(lg);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 0);
  /* two small frames in one write: both come out of one read, the second without a syscall */
  unsigned char two[2 * 6] = {2, 0, 0, 0, 'h', 'i', 2, 0, 0, 0, 'y', 'o'};
  CHECK(write(sv[0], two, sizeof two) == (ssize_t)sizeof two);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 1 && len == 2 && memcmp(d, "hi", 2) == 0);
  CHECK(rx.ra_len - rx.ra_off == 6); /* the second frame waits in the read-ahead */
  CHECK(mpx__chan_poll(&rx, 0) == 1);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 1 && len == 2 && memcmp(d, "yo", 2) == 0);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 0);
  /* after a short read, a 0 may be answered from the note alone; forget_drained makes the next
   * call look at the fd (the process transport does this for a worker that died) */
  CHECK(write(sv[0], two, 6) == 6);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 1 && len == 2 && memcmp(d, "hi", 2) == 0);
  CHECK(write(sv[0], two + 6, 6) == 6);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 0); /* the note: no syscall */
  mpx__chan_forget_drained(&rx);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == 1 && len == 2 && memcmp(d, "yo", 2) == 0);
  /* a large frame on a nonblocking receiver: blocking recv waits with poll */
  size_t big = 1 << 19;
  char *b = malloc(big), *got = malloc(big);
  memset(b, 'q', big);
  struct iovec one = {b, big};
  CHECK(mpx__chan_poll(&rx, 0) == 0);
  /* the socket buffer is smaller than the frame: a forked child sends while we receive */
  pid_t pid = fork();
  if (pid == 0) {
    _exit(mpx__chan_sendv(&tx, &one, 1) == 0 ? 0 : 1);
  }
  CHECK_OK(mpx__chan_recv(&rx, got, big, &len, 10));
  CHECK(len == big && memcmp(got, b, big) == 0);
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  free(b);
  free(got);
  mpx__chan_close(&tx);
  CHECK(mpx__chan_recv_nb(&rx, &d, &len) == MPX_EEOF);
  CHECK_RC(mpx__chan_sendv(&rx, parts, 99), MPX_EINVAL);
  mpx__chan_close(&rx);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  test_duplex_local();
  test_oneway();
  test_bad_input();
  if (!NO_FORK) {
    test_processes();
    test_chan();
  }
  printf("ipc_pipe_test: ok\n");
  return mpx_finalize();
}
