/* dataplane_test: the process data plane (big arguments and results as sealed memfd segments).
 * Failure paths first:
 *  - mpx__seg_map refuses, before mapping: a size over max (ETOOBIG), a pipe, an unsealed memfd,
 *    a sealed memfd of another size than declared, a size-sealed one where a write seal is
 *    required; none of them leaves an fd open;
 *  - the channel queues passed fds in order and closes them with the channel; a peer passing
 *    more than the queue holds breaks the channel;
 *  - a worker forging an out-of-band result (a size over max_payload, an unsealed memfd, no fd
 *    at all) fails that future and is killed and replaced, before anything of it is mapped (its
 *    memfd never appears in our mappings); the pool goes on;
 *  - workers SIGKILLed while large results are in flight: every future is right or
 *    MPX_EWORKER_LOST; afterwards no fd, no mapping of a segment, nothing in /dev/shm is left;
 * then the working paths:
 *  - arguments and results of 0, 1, MPX__SEG_MIN - 1, MPX__SEG_MIN, MPX__SEG_MIN + 1 bytes, the
 *    same around MPX__SEG_RESULT_MIN, and 256 MiB (x MPX_TEST_SCALE) both ways, and results grown
 *    from 300 KiB (a pool block) to each size, checked byte for byte (`dataplane_test mpi` under
 *    mpirun: the same on ranks, where big payloads go as their own messages);
 *  - a result read in place stays valid until the future is released (even past the executor),
 *    and is never memory a worker can reach: it is the dispatcher's copy out of the worker's
 *    ring, in a pool buffer that goes back to the pool on release;
 *  - recycling (os/seg.h): mpx__seg_map_ring refuses a ring segment that could shrink, is too
 *    small or too big for what it declares, or is no memfd; a worker's ring lends a slot only
 *    when its word says FREE (a FULL one is skipped, then a one-shot segment is made) and reuses
 *    the slot the dispatcher handed back; pool buffers come back warm, a forked child inherits
 *    them (and the pool);
 *  - (hostile) a worker that scribbles over every payload segment it can reach after its result
 *    was taken does not change the result a caller is reading in place.
 * Figures are never asserted (mpx-bench payload measures). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"
#include "held.h"
#include "codec.h"
#include "os/chan.h"
#include "os/seg.h"

static double scale(void) {
  const char *s = getenv("MPX_TEST_SCALE");
  double v = s ? atof(s) : 1.0;
  return v > 0 && v <= 1 ? v : 1.0;
}

/* Whether p lies in a mapping of ours whose line names `what`. */
static bool in_maps(const void *p, const char *what) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return false;
  char line[512];
  bool in = false;
  while (!in && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (strstr(line, what) && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
      in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
  }
  fclose(f);
  return in;
}

/* Whether the page at p is mapped in this process. */
static bool mapped(const void *p) {
  unsigned char v;
  void *page = (void *)((uintptr_t)p & ~(uintptr_t)4095);
  return mincore(page, 4096, &v) == 0;
}

static unsigned char pattern(size_t i, size_t len) { return (unsigned char)(i * 131 + len); }

static int memfd_of(const char *name, size_t len, unsigned seals) {
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, (off_t)len) == 0);
  if (seals) CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0);
  return fd;
}

#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

/* ---- tasks (run in the workers) ------------------------------------------------------------- */

/* Check the argument's pattern, then return the same bytes, written in place. */
static int echo_checked(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  const unsigned char *a = arg;
  for (size_t i = 0; i < len; i++)
    if (a[i] != pattern(i, len)) return mpx_task_fail(ctx, MPX_EPROTO, "arg byte %zu wrong", i);
  void *dst = NULL;
  int rc = mpx_buf_reserve(out, len, &dst);
  if (rc) return rc;
  if (len) memcpy(dst, arg, len);
  return 0;
}
MPX_TASK(echo_checked)

/* A result of the uint64 size given, the pattern written in place. */
static int make_result(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  uint64_t n;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "want a size");
  memcpy(&n, arg, sizeof n);
  unsigned char *p;
  int rc = mpx_buf_reserve(out, (size_t)n, (void **)&p);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) p[i] = pattern(i, (size_t)n);
  return 0;
}
MPX_TASK(make_result)

/* A result that grows: 300 KiB first (a pool block), then the uint64 size given (a segment on
 * processes from 1 MiB, a bigger pool block on threads), the pattern kept across the move. */
static int grow_result(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  uint64_t n;
  unsigned char *p;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "want a size");
  memcpy(&n, arg, sizeof n);
  int rc = mpx_buf_reserve(out, 300u << 10, (void **)&p);
  for (size_t i = 0; !rc && i < (300u << 10); i++) p[i] = pattern(i, (size_t)n);
  if (!rc) rc = mpx_buf_reserve(out, (size_t)n, (void **)&p);
  for (size_t i = 300u << 10; !rc && i < n; i++) p[i] = pattern(i, (size_t)n);
  return rc;
}
MPX_TASK(grow_result)

/* Hostile: write over every payload segment this worker has mapped writable, and every one it
 * can reach through its fds (a dup of a ring segment kept by a task), after its results went. */
static int scribble(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  uint64_t n = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perm[8];
    if (strstr(line, "mpx-payload") && sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) == 3 &&
        perm[1] == 'w')
      memset((void *)lo, 0xEE, hi - lo), n++;
  }
  if (f) fclose(f);
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[300], to[128];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t k = readlink(path, to, sizeof to - 1);
    if (k <= 0) continue;
    to[k] = '\0';
    struct stat st;
    int fd = strstr(to, "mpx-payload") ? open(path, O_RDWR) : -1;
    if (fd < 0) continue;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
      void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) memset(m, 0xEE, (size_t)st.st_size), munmap(m, (size_t)st.st_size), n++;
    }
    close(fd);
  }
  if (d) closedir(d);
  return mpx_buf_set(out, &n, sizeof n);
}
MPX_TASK(scribble)

/* The call id this task runs under: the worker's progress word (see trust_test). */
static uint64_t own_call_id(int worker) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[512];
  uint64_t id = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strstr(line, "mpx-progress")) continue;
    unsigned long lo = 0;
    if (sscanf(line, "%lx-", &lo) == 1)
      id = *(volatile uint64_t *)((uintptr_t)lo + (size_t)worker * 64);
    break;
  }
  fclose(f);
  return id;
}

/* Frame a Batch and write it to this worker's stream socket(s), passing `fd` (or none). */
static void send_forged(const Mpx__Batch *b, int fd) {
  mpx__limits lim = mpx__limits_default(0);
  mpx__wbuf w = {0};
  if (mpx__codec_pack_framed(b, &lim, &w)) return;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d));) {
    int s = atoi(e->d_name);
    struct stat st;
    int type = 0;
    socklen_t tl = sizeof type;
    if (e->d_name[0] == '.' || s == dirfd(d) || fstat(s, &st) || !S_ISSOCK(st.st_mode) ||
        getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_STREAM)
      continue;
    mpx__chan c;
    mpx__chan_init(&c, s, 0);
    struct iovec v = {.iov_base = w.data, .iov_len = w.len - 4}; /* chan adds the header */
    v.iov_base = w.data + 4;
    mpx__chan_sendv_fds(&c, &v, 1, &fd, fd >= 0 ? 1 : 0);
  }
  if (d) closedir(d);
  mpx__wbuf_free(&w);
}

/* Forge a result for itself: arg is {uint32 kind}: 0 a size over max_payload with a sealed memfd
 * of that size, 1 an unsealed memfd of the declared size, 2 no fd at all. */
static int forge_segment(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  uint32_t kind;
  if (len != sizeof kind) return mpx_task_fail(ctx, MPX_EINVAL, "want a kind");
  memcpy(&kind, arg, sizeof kind);
  size_t declared = kind == 0 ? ((size_t)2 << 20) : ((size_t)512 << 10);
  int fd = -1;
  if (kind == 0) fd = memfd_of("mpx-forged", declared, ALL_SEALS);
  if (kind == 1) fd = memfd_of("mpx-forged", declared, 0);
  Mpx__Result r = MPX__RESULT__INIT;
  r.call_id = own_call_id(mpx_task_worker(ctx));
  r.data_shm = declared;
  Mpx__Result *rs[1] = {&r};
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_results = 1;
  b.results = rs;
  send_forged(&b, fd);
  sleep(30); /* until killed */
  return 0;
}
MPX_TASK(forge_segment)

/* ---- unit: segments and fd passing --------------------------------------------------------- */

static void test_seg_refusals(void) {
  int base = count_fds();
  mpx__seg s;
  size_t len = (size_t)1 << 20;
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, ALL_SEALS), len, len - 1, MPX__SEG_EXACT),
           MPX_ETOOBIG);
  int p[2];
  CHECK(pipe(p) == 0);
  close(p[1]);
  CHECK_RC(mpx__seg_map(&s, p[0], len, len, MPX__SEG_EXACT), MPX_EPROTO);
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, 0), len, len, MPX__SEG_EXACT), MPX_EPROTO);
  /* a forged size: the message says more (or less) than the file holds */
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, ALL_SEALS), 2 * len, 4 * len, MPX__SEG_EXACT),
           MPX_EPROTO);
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, ALL_SEALS), len / 2, len, MPX__SEG_EXACT),
           MPX_EPROTO);
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, F_SEAL_SHRINK | F_SEAL_GROW), len, len,
                        MPX__SEG_EXACT),
           MPX_EPROTO);
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, F_SEAL_SHRINK), len, len, MPX__SEG_AT_LEAST),
           MPX_EPROTO);
  CHECK_RC(mpx__seg_map(&s, memfd_of("t", len, ALL_SEALS), 0, len, MPX__SEG_EXACT), MPX_EPROTO);
  CHECK(count_fds() == base);
  CHECK(count_maps("memfd:t") == 0);
  /* and the good ones */
  unsigned char data[300];
  for (size_t i = 0; i < sizeof data; i++) data[i] = pattern(i, sizeof data);
  mpx__seg w;
  CHECK_OK(mpx__seg_create_copy(&w, data, sizeof data));
  CHECK_OK(mpx__seg_map(&s, w.fd, sizeof data, sizeof data, MPX__SEG_EXACT));
  CHECK(s.len == sizeof data && memcmp(s.data, data, sizeof data) == 0);
  mpx__seg_free(&s);
  CHECK_OK(mpx__seg_create(&w, 2 * len));
  CHECK_OK(mpx__seg_seal_size(&w));
  memset(w.data, 7, 2 * len);
  int dup = fcntl(w.fd, F_DUPFD_CLOEXEC, 0);
  CHECK_OK(mpx__seg_map(&s, dup, len, len, MPX__SEG_AT_LEAST));
  CHECK(s.len == len && ((unsigned char *)s.data)[len - 1] == 7);
  mpx__seg_free(&s);
  mpx__seg_free(&w);
  CHECK(count_fds() == base);
}

static void test_ring_refusals(void) {
  int base = count_fds();
  mpx__seg s;
  size_t len = (size_t)1 << 20, hdr = MPX__SEG_HDR;
  const unsigned ring = F_SEAL_SHRINK | F_SEAL_GROW;
  CHECK_RC(mpx__seg_map_ring(&s, memfd_of("t", hdr + len, ring), len, len - 1), MPX_ETOOBIG);
  int p[2];
  CHECK(pipe(p) == 0);
  close(p[1]);
  CHECK_RC(mpx__seg_map_ring(&s, p[0], len, len), MPX_EPROTO);
  CHECK_RC(mpx__seg_map_ring(&s, memfd_of("t", hdr + len, 0), len, len), MPX_EPROTO);
  CHECK_RC(mpx__seg_map_ring(&s, memfd_of("t", hdr + len, F_SEAL_GROW), len, len), MPX_EPROTO);
  /* no room for the header: the declared bytes would run past the end */
  CHECK_RC(mpx__seg_map_ring(&s, memfd_of("t", len, ring), len, len), MPX_EPROTO);
  /* far bigger than any result it may send: we would map (and populate) all of it */
  CHECK_RC(mpx__seg_map_ring(&s, memfd_of("t", hdr + 3 * len, ring), len, len), MPX_EPROTO);
  CHECK_RC(mpx__seg_map_ring(&s, memfd_of("t", hdr + len, ring), 0, len), MPX_EPROTO);
  CHECK(count_fds() == base);
  CHECK(count_maps("memfd:t") == 0);
  CHECK_OK(mpx__seg_map_ring(&s, memfd_of("t", hdr + 2 * len, ring), len, len));
  CHECK(s.kind == MPX__SEG_RINGMAP && s.len == 2 * len);
  mpx__seg_free(&s);
  CHECK(count_fds() == base && count_maps("memfd:t") == 0);
}

static void test_ring_protocol(void) {
  size_t len = (size_t)2 << 20;
  mpx__seg a, b, c, m;
  CHECK_OK(mpx__seg_result_create(&a, len));
  CHECK(a.kind == MPX__SEG_RING);
  int slot_a = a.slot;
  for (size_t i = 0; i < len; i++) ((unsigned char *)a.data)[i] = pattern(i, len);
  CHECK_OK(mpx__seg_resize(&a, len - 5)); /* within the slot */
  CHECK_OK(mpx__seg_seal(&a));            /* FULL, and a dup to pass */
  CHECK(a.kind == MPX__SEG_PLAIN && a.fd >= 0 && a.len == len - 5);
  unsigned long long id_a[2], id[2];
  CHECK_OK(mpx__seg_ident(a.fd, id_a));
  CHECK_OK(mpx__seg_result_create(&b, len)); /* slot a is FULL: the other one */
  CHECK(b.kind == MPX__SEG_RING && b.slot != slot_a);
  CHECK_OK(mpx__seg_seal(&b));
  CHECK_OK(mpx__seg_result_create(&c, len)); /* both FULL: a one-shot segment */
  CHECK(c.kind == MPX__SEG_PLAIN && c.map_len == len);
  mpx__seg_free(&c);
  /* the dispatcher's side: map, read, hand back */
  CHECK_OK(mpx__seg_map_ring(&m, a.fd, len - 5, len));
  a.fd = -1;
  for (size_t i = 0; i < len - 5; i += 4093)
    CHECK(((unsigned char *)m.data)[i] == pattern(i, len));
  mpx__seg_ring_free(&m);
  CHECK_OK(mpx__seg_result_create(&c, len)); /* slot a again: warm */
  CHECK(c.kind == MPX__SEG_RING && c.slot == slot_a);
  CHECK_OK(mpx__seg_resize(&c, 3 * len)); /* beyond the slot: the bytes move to a one-shot */
  CHECK(c.kind == MPX__SEG_PLAIN && c.len == 3 * len);
  CHECK(((unsigned char *)c.data)[len - 1] == pattern(len - 1, len));
  mpx__seg_free(&c);
  CHECK_OK(mpx__seg_result_create(&c, len)); /* the resize gave slot a back unused */
  CHECK(c.slot == slot_a);
  CHECK_OK(mpx__seg_seal(&c));
  CHECK_OK(mpx__seg_ident(c.fd, id));
  CHECK(id[0] == id_a[0] && id[1] == id_a[1]); /* the same file */
  mpx__seg_free(&c);
  mpx__seg_free(&m);
  mpx__seg_free(&b);
  mpx__seg_ring_reset(); /* this process serves no more */
  CHECK(count_maps("mpx-payload") == 0);
}

static void test_pool(void) {
  size_t len = ((size_t)3 << 20) + 5;
  mpx__seg s;
  CHECK_OK(mpx__seg_pool_get(&s, len));
  CHECK(s.kind == MPX__SEG_POOLBUF && s.map_len >= len);
  unsigned char *p = s.data;
  memset(p, 1, len);
  pid_t pid = fork(); /* a child reads what it inherited, and may give it back to its own pool */
  if (pid == 0) {
    int bad = !mapped(p) || p[len - 1] != 1;
    mpx__seg_unmap(p, len);
    mpx__seg t;
    bad |= mpx__seg_pool_get(&t, len) != MPX_OK || t.data != p; /* its copy of the pool */
    _exit(bad);
  }
  int st = -1;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  mpx__seg_unmap(p, len); /* given back: idle, still mapped */
  CHECK(mapped(p));
  CHECK_OK(mpx__seg_pool_get(&s, len - 100)); /* the same buffer, warm */
  CHECK(s.data == p && p[len - 1] == 1);
  mpx__seg_free(&s);
  void *h = mpx__seg_pool_alloc(100); /* small: the heap */
  CHECK(h && ((uintptr_t)h & 4095));
  mpx__seg_pool_free(h, 100);
  void *q = mpx__seg_pool_alloc(len); /* big: the pool's idle buffer again */
  CHECK(q == p);
  mpx__seg_pool_free(q, len);
}

/* recv_nb until a frame or an error, polling when it asks to. */
static int recv_wait(mpx__chan *c, const void **data, size_t *len) {
  int r;
  while ((r = mpx__chan_recv_nb(c, data, len)) == 0)
    if (mpx__chan_poll(c, 1) <= 0) return 0;
  return r;
}

static void test_chan_fds(void) {
  int base = count_fds();
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  mpx__chan a, b;
  mpx__chan_init(&a, sv[0], 0);
  mpx__chan_init(&b, sv[1], 0);
  mpx__chan_accept_fds(&b);
  int f1 = memfd_of("t1", 10, 0), f2 = memfd_of("t2", 20, 0);
  int two[2] = {f1, f2};
  CHECK_OK(mpx__chan_sendv_fds(&a, &(struct iovec){.iov_base = "x", .iov_len = 1}, 1, two, 2));
  CHECK_OK(mpx__chan_send(&a, "yy", 2));
  close(f1);
  close(f2);
  const void *data;
  size_t len;
  CHECK(recv_wait(&b, &data, &len) == 1 && len == 1);
  int g1 = mpx__chan_take_fd(&b), g2 = mpx__chan_take_fd(&b);
  struct stat st;
  CHECK(g1 >= 0 && fstat(g1, &st) == 0 && st.st_size == 10);
  CHECK(g2 >= 0 && fstat(g2, &st) == 0 && st.st_size == 20);
  CHECK(mpx__chan_take_fd(&b) == -1);
  close(g1);
  close(g2);
  CHECK(recv_wait(&b, &data, &len) == 1 && len == 2);
  /* fds nobody took are closed with the channel */
  int f3 = memfd_of("t3", 1, 0);
  CHECK_OK(mpx__chan_sendv_fds(&a, &(struct iovec){.iov_base = "z", .iov_len = 1}, 1, &f3, 1));
  close(f3);
  CHECK(recv_wait(&b, &data, &len) == 1);
  /* more than the queue holds breaks the channel */
  int many[MPX__CHAN_FDS_PER_FRAME];
  for (int i = 0; i < MPX__CHAN_FDS_PER_FRAME; i++) many[i] = memfd_of("tm", 1, 0);
  for (int k = 0; k < 3; k++)
    CHECK_OK(mpx__chan_sendv_fds(&a, &(struct iovec){.iov_base = "m", .iov_len = 1}, 1, many,
                                 MPX__CHAN_FDS_PER_FRAME));
  for (int i = 0; i < MPX__CHAN_FDS_PER_FRAME; i++) close(many[i]);
  int r;
  while ((r = recv_wait(&b, &data, &len)) == 1) continue;
  CHECK(r < 0 && b.broken);
  mpx__chan_close(&a);
  mpx__chan_close(&b);
  CHECK(count_fds() == base);
}

/* ---- executor: hostile and dying workers ----------------------------------------------------- */

static void test_forged_segments(void) {
  int base = count_fds();
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                     .workers = 2,
                                                     .max_payload = (size_t)1 << 20}));
  for (uint32_t kind = 0; kind < 3; kind++) {
    mpx_future *f;
    CHECK_OK(mpx_submit(ex, "forge_segment", &kind, sizeof kind, &f));
    int code;
    const char *msg;
    CHECK_OK(mpx_future_exception(f, 60, &code, &msg));
    CHECK(code != MPX_OK);
    fprintf(stderr, "  forged kind %u: %s: %s\n", kind, mpx_err_name(code), msg ? msg : "");
    CHECK(count_maps("mpx-forged") == 0); /* refused before mapping */
    mpx_future_release(f);
    uint64_t n = 8; /* the pool goes on */
    CHECK_OK(mpx_submit(ex, "make_result", &n, sizeof n, &f));
    CHECK_OK(mpx_future_result(f, 60, NULL, NULL));
    mpx_future_release(f);
  }
  mpx_executor_destroy(ex);
  CHECK(count_fds() == base);
  CHECK(count_maps("mpx-payload") == 0);
}

/* The parent pid of process `pid` (from /proc/pid/stat), 0 if unknown. */
static pid_t ppid_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *close_paren = strrchr(buf, ')');
  int pp = 0;
  if (!close_paren || sscanf(close_paren + 2, "%*c %d", &pp) != 1) return 0;
  return (pid_t)pp;
}

/* A worker of ours: a grandchild through the fork server, or a child (direct fork); 0 if none. */
static pid_t my_worker(void) {
  pid_t me = getpid(), found = 0;
  DIR *d = opendir("/proc");
  for (struct dirent *e; d && !found && (e = readdir(d));) {
    pid_t pid = (pid_t)atoi(e->d_name);
    if (pid <= 0) continue;
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
    fclose(f);
    if (strncmp(comm, "mpx-worker-", 11)) continue;
    pid_t pp = ppid_of(pid);
    if (pp == me || (pp > 0 && ppid_of(pp) == me)) found = pid;
  }
  if (d) closedir(d);
  return found;
}

static void test_killed_in_flight(void) {
  int base = count_fds(), shm = count_shm();
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                     .workers = 2}));
  enum { N = 24 };
  uint64_t size = (uint64_t)((double)(8u << 20) * scale());
  if (size < (2u << 20)) size = 2u << 20;
  mpx_future *fs[N];
  for (int i = 0; i < N; i++) CHECK_OK(mpx_submit(ex, "make_result", &size, sizeof size, &fs[i]));
  /* kill whichever worker runs, a few times, while results are being made and sent */
  for (int k = 0; k < 4; k++) {
    usleep(20000);
    pid_t pid = my_worker();
    if (pid > 0) kill(pid, SIGKILL);
  }
  int ok = 0, lost = 0;
  for (int i = 0; i < N; i++) {
    const void *data;
    size_t len;
    int rc = mpx_future_result(fs[i], 120, &data, &len);
    if (rc == MPX_OK) {
      CHECK(len == size);
      for (size_t j = 0; j < len; j += 4093)
        CHECK(((const unsigned char *)data)[j] == pattern(j, len));
      ok++;
    } else {
      CHECK_RC(rc, MPX_EWORKER_LOST);
      lost++;
    }
    mpx_future_release(fs[i]);
  }
  fprintf(stderr, "  killed in flight: %d ok, %d lost\n", ok, lost);
  mpx_executor_destroy(ex);
  CHECK(count_fds() == base);
  CHECK(count_maps("mpx-payload") == 0);
  CHECK(count_shm() <= shm);
}

/* ---- executor: sizes both ways, in place ---------------------------------------------------- */

static mpx_backend sizes_backend = MPX_BACKEND_PROCESSES;
static int sizes_root_threads; /* MPI: tasks on rank 0 too (big arguments read in place) */

static void test_sizes(void) {
  int base = count_fds();
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = sizes_backend,
                                                     .workers = sizes_root_threads ? 0 : 2,
                                                     .root_threads = sizes_root_threads}));
  size_t big = (size_t)((double)((size_t)256 << 20) * scale());
  size_t sizes[] = {0,
                    1,
                    MPX__SEG_MIN - 1,
                    MPX__SEG_MIN,
                    MPX__SEG_MIN + 1,
                    MPX__SEG_RESULT_MIN - 1,
                    MPX__SEG_RESULT_MIN,
                    MPX__SEG_RESULT_MIN + 1,
                    big};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t len = sizes[k];
    unsigned char *arg = malloc(len ? len : 1);
    CHECK(arg);
    for (size_t i = 0; i < len; i++) arg[i] = pattern(i, len);
    for (int round = 0; round < 2; round++) { /* the second reuses the worker's kept segment */
      mpx_future *f;
      CHECK_OK(mpx_submit(ex, "echo_checked", arg, len, &f));
      const void *data;
      size_t got;
      CHECK_OK(mpx_future_result(f, 120, &data, &got));
      CHECK(got == len && (len == 0 || memcmp(data, arg, len) == 0));
      mpx_future_release(f);
    }
    if (len <= ((size_t)16 << 20)) { /* a burst, so that every worker gets some at once */
      mpx_future *fs[6];
      for (int i = 0; i < 6; i++) CHECK_OK(mpx_submit(ex, "echo_checked", arg, len, &fs[i]));
      for (int i = 0; i < 6; i++) {
        const void *data;
        size_t got;
        CHECK_OK(mpx_future_result(fs[i], 120, &data, &got));
        CHECK(got == len && (len == 0 || memcmp(data, arg, len) == 0));
        mpx_future_release(fs[i]);
      }
    }
    uint64_t want = len;
    mpx_future *f;
    for (int g = 0; g < 2; g++) { /* written in place; then grown from 300 KiB to len */
      CHECK_OK(mpx_submit(ex, g ? "grow_result" : "make_result", &want, sizeof want, &f));
      const void *data;
      size_t got;
      CHECK_OK(mpx_future_result(f, 120, &data, &got));
      CHECK(got == len && (len == 0 || memcmp(data, arg, len) == 0));
      mpx_future_release(f);
    }
    free(arg);
  }
  mpx_executor_destroy(ex);
  if (sizes_backend == MPX_BACKEND_PROCESSES) CHECK(count_fds() == base); /* MPI opens its own */
}

static void test_in_place(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                     .workers = 1}));
  uint64_t want = 4u << 20;
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "make_result", &want, sizeof want, &f));
  const void *data;
  size_t len;
  CHECK_OK(mpx_future_result(f, 60, &data, &len));
  CHECK(len == want);
  const unsigned char *p = data;
  CHECK(!in_maps(p, "mpx-payload")); /* our copy, not the worker's segment */
  mpx_executor_destroy(ex); /* the future outlives its executor, and so does its result */
  CHECK(count_maps("mpx-payload") == 0);
  CHECK(mapped(p) && mapped(p + len - 1));
  for (size_t i = 0; i < len; i += 4093) CHECK(p[i] == pattern(i, len));
  mpx_future_release(f);
  mpx__seg s; /* given back to the pool with the future: the next buffer of its size */
  CHECK_OK(mpx__seg_pool_get(&s, len));
  CHECK(s.data == p);
  mpx__seg_free(&s);
}

/* A worker scribbles over every payload segment it can reach while a caller reads one of its
 * results in place: the caller's bytes do not change (they were never in a segment the worker
 * can write), and the worker's later results are still right. */
static void test_scribbled(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                     .workers = 1}));
  uint64_t want = 2u << 20;
  mpx_future *f, *g;
  const void *data;
  size_t len;
  CHECK_OK(mpx_submit(ex, "make_result", &want, sizeof want, &f));
  CHECK_OK(mpx_future_result(f, 60, &data, &len));
  CHECK(len == want);
  for (int round = 0; round < 2; round++) {
    uint64_t n = 0;
    CHECK_OK(mpx_submit(ex, "scribble", NULL, 0, &g));
    CHECK_OK(mpx_future_result_copy(g, &n, sizeof n, 60));
    CHECK(n >= 1); /* it did reach the ring */
    mpx_future_release(g);
    for (size_t i = 0; i < len; i++)
      if (((const unsigned char *)data)[i] != pattern(i, len)) {
        fprintf(stderr, "  byte %zu of the result read in place changed\n", i);
        CHECK(0);
      }
    CHECK_OK(mpx_submit(ex, "make_result", &want, sizeof want, &g)); /* and it goes on */
    const void *d2;
    size_t l2;
    CHECK_OK(mpx_future_result(g, 60, &d2, &l2));
    CHECK(l2 == want && ((const unsigned char *)d2)[want - 1] == pattern(want - 1, want));
    mpx_future_release(g);
  }
  mpx_future_release(f);
  mpx_executor_destroy(ex);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  if (argc > 1 && !strncmp(argv[1], "mpi", 3)) { /* under mpirun: the sizes on ranks */
    sizes_backend = MPX_BACKEND_MPI;
    if (!strcmp(argv[1], "mpi-root")) sizes_root_threads = 1; /* and on rank 0's own thread */
    double t0 = check_now();
    test_sizes();
    printf("%-18s ok (%.2f s)\n", argv[1], check_now() - t0);
    return mpx_finalize();
  }
  if (NO_FORK) {
    printf("dataplane_test: skipped (no fork)\n");
    return mpx_finalize();
  }
  struct {
    const char *name;
    void (*fn)(void);
  } cases[] = {
      {"seg_refusals", test_seg_refusals},   {"ring_refusals", test_ring_refusals},
      {"ring_protocol", test_ring_protocol}, {"pool", test_pool},
      {"chan_fds", test_chan_fds},
      {"forged_segments", test_forged_segments}, {"killed_in_flight", test_killed_in_flight},
      {"sizes", test_sizes},                 {"in_place", test_in_place},
      {"scribbled", test_scribbled},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    if (argc > 1 && strcmp(argv[1], cases[i].name)) continue;
    double t0 = check_now();
    cases[i].fn();
    printf("%-18s ok (%.2f s)\n", cases[i].name, check_now() - t0);
  }
  return mpx_finalize();
}
