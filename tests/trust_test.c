/* trust_test: a worker runs user code, so the executor treats everything a worker sends as
 * hostile (label "hostile"). Each case is a task that misbehaves on purpose:
 *
 *  - corrupt frame: a task writes junk into its worker's socket; only that task fails (retries
 *    0), the 48 tasks queued behind it on the same worker complete;
 *  - forged READY: a task of every worker sends a Control READY with an error; the pool keeps
 *    working (READY is accepted only as a worker process's first message);
 *  - forged code: a task fails with MPX_ECANCELLED, or writes a result for itself with that code;
 *    the future reports MPX_ETASK with the task's text and is not cancelled;
 *  - forged identity: that result names pid 4242, host "evilhost", rank 7; none appears;
 *  - forged results: a task answers for the tasks queued behind it, for an id never sent and twice
 *    for itself; every bystander gets its own result;
 *  - a header that claims gigabytes, then stalls: the executor reserves nothing for it (its
 *    address space does not grow by the claim), and one over max_worker_memory is refused unread;
 *  - max_payload 16: failing tasks and oversized results come back as error results, and the
 *    worker (its pid) stays; an initializer's failure still reaches create;
 *  - max_worker_memory: refused below max_payload + 64 KiB; replies are trimmed to fit it;
 *  - fd exhaustion: creating an executor under a low RLIMIT_NOFILE fails with a message that says
 *    file descriptors ran out.
 * Tasks find their worker's socket by scanning their fds (the one stream socket a worker has) and
 * the call id they run from the progress memfd (/memfd:mpx-progress), as a hostile task could.
 * `trust_test mpi` (under mpirun) runs the cases that apply to ranks: forged codes, and a forged
 * RETURNED (a give-back no TAKEBACK asked for) or STARTED carrying a result, sent on the rank's
 * private communicator, which a task finds by Fortran handle (MPI_Comm_f2c). No case
 * measures speed: sleeps only order events, and every wait has a generous limit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"
#include "codec.h"
#include "progress.h"

static mpx_backend backend = MPX_BACKEND_PROCESSES;

/* ---- what a hostile task can do ---------------------------------------------------------- */

static void nap(double s) {
  struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&t, &t) && errno == EINTR) continue;
}

/* Write raw bytes to this worker's channel socket (the one stream socket a worker has). */
static void write_own_socket(const void *bytes, size_t n) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    if (fd < 3 || fd == dirfd(d)) continue;
    struct stat st;
    if (fstat(fd, &st) || !S_ISSOCK(st.st_mode)) continue;
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_STREAM) continue;
    const char *p = bytes;
    size_t left = n;
    while (left) {
      ssize_t w = write(fd, p, left);
      if (w <= 0) break;
      p += w, left -= (size_t)w;
    }
  }
  closedir(d);
}

/* Frame and write a Batch to this worker's socket. */
static void write_batch(const Mpx__Batch *b) {
  mpx__limits lim = mpx__limits_default(0);
  mpx__wbuf w = {0};
  if (mpx__codec_pack_framed(b, &lim, &w) == 0) write_own_socket(w.data, w.len);
  mpx__wbuf_free(&w);
}

/* The call id this task runs under: the running word of this worker's progress page (its only
 * mpx-progress mapping, progress.h). 0 if not found. */
static uint64_t own_call_id(int worker) {
  (void)worker;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[512];
  uint64_t id = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strstr(line, "mpx-progress")) continue;
    unsigned long lo = 0;
    if (sscanf(line, "%lx-", &lo) == 1)
      id = atomic_load_explicit(&((mpx__progress *)(uintptr_t)lo)->running, memory_order_relaxed);
    break;
  }
  fclose(f);
  return id;
}

static int twice(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len;
  uint64_t x;
  memcpy(&x, arg, sizeof x);
  x *= 2;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(twice)

static int my_pid(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  int32_t pid = (int32_t)getpid();
  return mpx_buf_set(out, &pid, sizeof pid);
}
MPX_TASK(my_pid)

/* A corrupt frame, written once the tasks behind this one are in its worker's window. */
static int corrupt_frame(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  nap(0.3);
  const unsigned char junk[9] = {5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff};
  write_own_socket(junk, sizeof junk);
  nap(30); /* until killed */
  return 0;
}
MPX_TASK(corrupt_frame)

/* A READY carrying an initializer error, sent while serving. */
static int forge_ready(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = MPX_EINIT;
  e.message = "forged initializer failure";
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__READY;
  c.error = &e;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  write_batch(&b);
  nap(30); /* until killed */
  return 0;
}
MPX_TASK(forge_ready)

static int fail_cancelled(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_ECANCELLED, "pretending to be cancelled");
}
MPX_TASK(fail_cancelled)

/* A result for itself with a forged code, pid, host and rank. */
static int forge_identity(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = MPX_ECANCELLED;
  e.message = "forged failure";
  e.pid = 4242;
  e.host = "evilhost";
  e.rank = 7;
  Mpx__Result r = MPX__RESULT__INIT;
  r.call_id = own_call_id(mpx_task_worker(ctx));
  r.error = &e;
  Mpx__Result *rs[1] = {&r};
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_results = 1;
  b.results = rs;
  write_batch(&b);
  nap(0.5); /* then its real (empty) result follows: an answer for a finished call */
  return 0;
}
MPX_TASK(forge_identity)

/* Results for the ids in the file named by arg (the tasks queued behind it), for an id never
 * sent, and twice for itself. */
static int forge_results(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  char path[256];
  snprintf(path, sizeof path, "%.*s", (int)len, (const char *)arg);
  uint64_t ids[64];
  size_t n = 0;
  for (int tries = 0; tries < 3000 && !n; tries++) {
    FILE *f = fopen(path, "r");
    if (f) {
      while (n < 60 && fscanf(f, "%" SCNx64, &ids[n]) == 1) n++;
      fclose(f);
    }
    if (!n) nap(0.01);
  }
  nap(0.3); /* they are in this worker's window by now */
  uint64_t me = own_call_id(mpx_task_worker(ctx));
  ids[n++] = 0x5eed0000u; /* never sent */
  ids[n++] = me;
  ids[n++] = me;
  static uint64_t forged = 0xdeadbeef;
  Mpx__Result r[64], *rs[64];
  for (size_t i = 0; i < n; i++) {
    mpx__result__init(&r[i]);
    r[i].call_id = ids[i];
    r[i].data.data = (uint8_t *)&forged;
    r[i].data.len = sizeof forged;
    rs[i] = &r[i];
  }
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_results = n;
  b.results = rs;
  write_batch(&b);
  nap(30); /* until killed */
  return 0;
}
MPX_TASK(forge_results)

#if MPX_HAVE_MPI
#include <mpi.h>

#include "forge_mpi.h"

/* A RETURNED nobody asked for, giving back a call id never sent, on the session communicator to
 * the root (tag TAG_BATCH, transport/mpi/mpi_impl.h); then a nap, as the head of its window.
 * With an argument: a STARTED whose Result carries data (a start notice names bare ids only). */
static int forge_returned(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  bool started = len > 0 && arg;
  MPI_Comm comm = session_comm();
  if (comm == MPI_COMM_NULL) return mpx_task_fail(ctx, MPX_ENOTFOUND, "no session communicator");
  Mpx__Result r = MPX__RESULT__INIT;
  r.call_id = 0x4242000;
  Mpx__Result *rp = &r;
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = started ? MPX__CONTROL__KIND__STARTED : MPX__CONTROL__KIND__RETURNED;
  static uint8_t data[8] = "forged";
  if (started) {
    r.data.data = data;
    r.data.len = sizeof data;
  }
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  b.n_results = 1;
  b.results = &rp;
  forge_send(&b, comm);
  nap(0.3);
  return 0;
}
MPX_TASK(forge_returned)
#endif

/* A frame header claiming arg bytes, a little of the body, a stall, then the worker ends. */
static int huge_header(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  uint32_t claim;
  memcpy(&claim, arg, sizeof claim);
  unsigned char hdr[4] = {(unsigned char)claim, (unsigned char)(claim >> 8),
                          (unsigned char)(claim >> 16), (unsigned char)(claim >> 24)};
  write_own_socket(hdr, sizeof hdr);
  static unsigned char some[4096];
  write_own_socket(some, sizeof some);
  nap(1.5);
  _exit(0); /* the frame stays truncated */
}
MPX_TASK(huge_header)

static int fail_long(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_EINVAL, "a failure message far longer than sixteen bytes");
}
MPX_TASK(fail_long)

static int result_32(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  void *p;
  int rc = mpx_buf_reserve(out, 32, &p);
  if (rc) return rc;
  memset(p, 7, 32);
  return 0;
}
MPX_TASK(result_32)

/* ---- helpers ------------------------------------------------------------------------------ */

static mpx_executor *make(int workers, size_t max_payload) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend,
                                                   .workers = workers,
                                                   .max_payload = max_payload}));
  return ex;
}

static mpx_future *submit(mpx_executor *ex, const char *task, const void *arg, size_t len) {
  mpx_future *f;
  const mpx_task *t;
  CHECK_OK(mpx_task_find(task, &t));
  CHECK_OK(mpx_submit_task(ex, t, arg, len, &(mpx_submit_opts){.retries = 0}, &f));
  return f;
}

static void check_twice(mpx_future *f, uint64_t x) {
  uint64_t y = 0;
  CHECK_OK(mpx_future_result_copy(f, &y, sizeof y, 120));
  CHECK(y == 2 * x);
  mpx_future_release(f);
}

/* The future fails with `code`; returns its message (a copy). */
static char *expect_fail(mpx_future *f, int code) {
  CHECK_RC(mpx_future_result(f, 120, NULL, NULL), code);
  int c = 0;
  const char *msg = NULL;
  CHECK_OK(mpx_future_exception(f, 0, &c, &msg));
  CHECK(c == code);
  return strdup(msg ? msg : "");
}

/* Short tasks until the dispatcher's windows are wide, so later tasks queue on a worker. */
static void warm(mpx_executor *ex) {
  enum { N = 400 };
  mpx_future *fs[N];
  for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i);
  for (uint64_t i = 0; i < N; i++) check_twice(fs[i], i);
}

static int32_t worker_pid(mpx_executor *ex) {
  mpx_future *f = submit(ex, "my_pid", NULL, 0);
  int32_t pid = 0;
  CHECK_OK(mpx_future_result_copy(f, &pid, sizeof pid, 120));
  mpx_future_release(f);
  return pid;
}

/* ---- cases -------------------------------------------------------------------------------- */

enum { BYSTANDERS = 48 };

static void test_corrupt_frame(void) {
  mpx_executor *ex = make(1, 0);
  warm(ex);
  mpx_future *bad = submit(ex, "corrupt_frame", NULL, 0);
  mpx_future *fs[BYSTANDERS];
  for (uint64_t i = 0; i < BYSTANDERS; i++) fs[i] = submit(ex, "twice", &i, sizeof i);
  char *msg = expect_fail(bad, MPX_EWORKER_LOST);
  CHECK(strstr(msg, "malformed"));
  free(msg);
  mpx_future_release(bad);
  for (uint64_t i = 0; i < BYSTANDERS; i++) check_twice(fs[i], i); /* none charged */
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_forged_ready(void) {
  enum { W = 2 };
  mpx_executor *ex = make(W, 0);
  mpx_future *bad[2 * W];
  for (int i = 0; i < 2 * W; i++) bad[i] = submit(ex, "forge_ready", NULL, 0);
  for (int i = 0; i < 2 * W; i++) {
    char *msg = expect_fail(bad[i], MPX_EWORKER_LOST);
    CHECK(strstr(msg, "READY"));
    free(msg);
    mpx_future_release(bad[i]);
  }
  for (uint64_t i = 0; i < 20; i++) check_twice(submit(ex, "twice", &i, sizeof i), i);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_forged_code(void) {
  mpx_executor *ex = make(backend == MPX_BACKEND_MPI ? 0 : 1, 0);
  mpx_future *f = submit(ex, "fail_cancelled", NULL, 0);
  char *msg = expect_fail(f, MPX_ETASK);
  CHECK(strstr(msg, "pretending to be cancelled"));
  CHECK(mpx_future_cancelled(f) == 0);
  if (backend == MPX_BACKEND_MPI) CHECK(strstr(msg, "(rank ")); /* the transport's own rank */
  free(msg);
  mpx_future_release(f);
  CHECK_OK(mpx_executor_destroy(ex));
}

#if MPX_HAVE_MPI
/* A task reaches its rank's session communicator (MPI_Comm_f2c) and sends a RETURNED that no
 * TAKEBACK asked for, naming a call id never sent: the dispatcher accepts none of it (a RETURNED
 * only answers a TAKEBACK, and names only ids of that rank's window); the rank is retired, its
 * task charged (MPX_EWORKER_LOST, the message says why), the bystanders run on the other rank,
 * and the retired rank still ends with the executor, so that the next one starts. */
static void forged_control(bool started) {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) { /* a task may not call MPI beside the serving thread */
    fprintf(stderr, "   skipped: MPI provides less than MPI_THREAD_MULTIPLE\n");
    return;
  }
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .threads_per_rank = 1}));
  if (mpx_executor_workers(ex) < 2) { /* np 2: no rank would be left for the bystanders */
    fprintf(stderr, "   skipped: needs two worker ranks\n");
    CHECK_OK(mpx_executor_destroy(ex));
    return;
  }
  char one = 1;
  mpx_future *bad = submit(ex, "forge_returned", started ? &one : NULL, started);
  mpx_future *fs[BYSTANDERS];
  for (uint64_t i = 0; i < BYSTANDERS; i++) fs[i] = submit(ex, "twice", &i, sizeof i);
  char *msg = expect_fail(bad, MPX_EWORKER_LOST);
  CHECK(strstr(msg, started ? "STARTED with a result in it" : "RETURNED, which was not asked for"));
  free(msg);
  mpx_future_release(bad);
  for (uint64_t i = 0; i < BYSTANDERS; i++) check_twice(fs[i], i);
  CHECK_OK(mpx_executor_destroy(ex)); /* the retired rank is told SHUTDOWN too: no hang */
  ex = make(0, 0);
  uint64_t x = 21;
  check_twice(submit(ex, "twice", &x, sizeof x), x);
  CHECK_OK(mpx_executor_destroy(ex));
}
static void test_forged_returned(void) { forged_control(false); }
/* The same with a Control STARTED (a rank's start notice) that carries a result: retired too. */
static void test_forged_started(void) { forged_control(true); }
#endif

static void test_forged_identity(void) {
  mpx_executor *ex = make(1, 0);
  int32_t pid = worker_pid(ex);
  mpx_future *f = submit(ex, "forge_identity", NULL, 0);
  char *msg = expect_fail(f, MPX_ETASK); /* its own result: the code is mapped */
  CHECK(mpx_future_cancelled(f) == 0);
  CHECK(strstr(msg, "forged failure"));
  CHECK(!strstr(msg, "evilhost") && !strstr(msg, "4242") && !strstr(msg, "rank 7"));
  char want[64];
  snprintf(want, sizeof want, "pid %d on ", (int)pid);
  CHECK(strstr(msg, want));
  free(msg);
  mpx_future_release(f);
  uint64_t x = 5;
  check_twice(submit(ex, "twice", &x, sizeof x), x);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_forged_results(void) {
  mpx_executor *ex = make(1, 0);
  warm(ex);
  char path[128];
  snprintf(path, sizeof path, "/tmp/mpx-trust-%d", (int)getpid());
  unlink(path);
  mpx_future *bad = submit(ex, "forge_results", path, strlen(path));
  mpx_future *fs[BYSTANDERS];
  for (uint64_t i = 0; i < BYSTANDERS; i++) fs[i] = submit(ex, "twice", &i, sizeof i);
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  CHECK(f);
  for (int i = 0; i < BYSTANDERS; i++) fprintf(f, "%" PRIx64 "\n", (uint64_t)(uintptr_t)fs[i]);
  CHECK(fclose(f) == 0);
  CHECK(rename(tmp, path) == 0);
  for (uint64_t i = 0; i < BYSTANDERS; i++) check_twice(fs[i], i); /* their own results */
  int rc = mpx_future_result(bad, 120, NULL, NULL);
  CHECK(rc == MPX_EWORKER_LOST || rc == MPX_OK); /* a result for itself is its own business */
  mpx_future_release(bad);
  unlink(path);
  CHECK_OK(mpx_executor_destroy(ex));
}

static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f);
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
  fclose(f);
  return v;
}

static void test_huge_header(void) {
  mpx_executor *ex = make(1, 0);
  uint64_t x = 1;
  check_twice(submit(ex, "twice", &x, sizeof x), x);
  /* within max_worker_memory (1 GiB + 64 MiB by default): read, but nothing reserved ahead */
  long vm0 = status_kib("VmSize"), rss0 = status_kib("VmRSS");
  uint32_t claim = (uint32_t)1 << 30;
  mpx_future *f = submit(ex, "huge_header", &claim, sizeof claim);
  nap(0.8); /* the header and a little body are read; the worker stalls */
  long vm1 = status_kib("VmSize"), rss1 = status_kib("VmRSS");
  fprintf(stderr, "   VmSize %+ld KiB, VmRSS %+ld KiB while a 1 GiB frame stalls\n", vm1 - vm0,
          rss1 - rss0);
  CHECK(vm1 - vm0 < 64 * 1024);
  CHECK(rss1 - rss0 < 8 * 1024);
  char *msg = expect_fail(f, MPX_EWORKER_LOST); /* then it ends mid-frame */
  CHECK(strstr(msg, "truncated"));
  free(msg);
  mpx_future_release(f);
  /* over max_worker_memory: refused before a byte of the body is read */
  claim = 0x7ffffff0u;
  f = submit(ex, "huge_header", &claim, sizeof claim);
  msg = expect_fail(f, MPX_EWORKER_LOST);
  CHECK(strstr(msg, "over the limit"));
  free(msg);
  mpx_future_release(f);
  check_twice(submit(ex, "twice", &x, sizeof x), x);
  CHECK_OK(mpx_executor_destroy(ex));
}

static int bad_init(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_EINVAL, "this initializer fails with a long message");
}
MPX_TASK(bad_init)

/* An initializer's failure reaches create whatever max_payload is (READY is cut to fit). */
static void test_tiny_payload_init(void) {
  mpx_executor *ex = (mpx_executor *)1;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = backend,
                                                   .workers = 1,
                                                   .max_payload = 16,
                                                   .initializer = "bad_init"}),
           MPX_EINIT);
  CHECK(ex == NULL);
  fprintf(stderr, "   %s\n", mpx_errmsg());
  CHECK(strstr(mpx_errmsg(), "initializer failed in worker 0"));
}

/* max_worker_memory: refused below max_payload + 64 KiB; a reply of several large results is
 * trimmed to fit it (the largest become MPX_ETOOBIG), and the worker stays. */
static int result_n(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len;
  uint64_t n;
  memcpy(&n, arg, sizeof n);
  void *p;
  int rc = mpx_buf_reserve(out, n, &p);
  if (rc) return rc;
  memset(p, 1, n);
  return 0;
}
MPX_TASK(result_n)

static void test_budget(void) {
  mpx_executor *ex = (mpx_executor *)1;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = backend,
                                                   .workers = 1,
                                                   .max_payload = 1 << 20,
                                                   .max_worker_memory = 1 << 20}),
           MPX_EINVAL);
  CHECK(ex == NULL);
  CHECK(strstr(mpx_errmsg(), "max_worker_memory"));
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend,
                                                   .workers = 1,
                                                   .max_payload = 1 << 20,
                                                   .max_worker_memory = (1 << 20) + (256 << 10)}));
  int32_t pid = worker_pid(ex);
  warm(ex); /* wide windows: the next tasks share batches */
  enum { N = 16 };
  mpx_future *fs[N];
  uint64_t n = 700 << 10; /* two of them do not fit one reply */
  for (int i = 0; i < N; i++) fs[i] = submit(ex, "result_n", &n, sizeof n);
  int ok = 0;
  for (int i = 0; i < N; i++) {
    size_t len = 0;
    int rc = mpx_future_result(fs[i], 120, NULL, &len);
    CHECK(rc == MPX_OK || rc == MPX_ETOOBIG);
    if (rc == MPX_OK) {
      ok++;
      CHECK(len == n);
    }
    mpx_future_release(fs[i]);
  }
  fprintf(stderr, "   %d of %d results of %" PRIu64 " KiB came back whole\n", ok, N, n >> 10);
  CHECK(ok > 0);
  CHECK(worker_pid(ex) == pid); /* no worker was killed for a large reply */
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_tiny_payload(void) {
  mpx_executor *ex = make(1, 16);
  int32_t pid = worker_pid(ex);
  for (int round = 0; round < 3; round++) {
    mpx_future *a = submit(ex, "fail_long", NULL, 0);
    char *msg = expect_fail(a, MPX_EINVAL); /* the code, with as much text as fits */
    CHECK(strlen(msg) > 0);
    free(msg);
    mpx_future_release(a);
    mpx_future *b = submit(ex, "result_32", NULL, 0);
    CHECK_RC(mpx_future_result(b, 120, NULL, NULL), MPX_ETOOBIG);
    mpx_future_release(b);
    CHECK(worker_pid(ex) == pid); /* the same worker: none exited */
  }
  CHECK_OK(mpx_executor_destroy(ex));
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  CHECK(d);
  while (readdir(d)) n++;
  closedir(d);
  return n - 3; /* ., .. and the DIR's own */
}

static void test_fd_exhaustion(void) {
  struct rlimit old;
  CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
  int base = count_fds();
  int failures = 0;
  for (int extra = 0; extra < 12; extra++) {
    struct rlimit lim = {.rlim_cur = (rlim_t)(base + extra), .rlim_max = old.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    mpx_executor *ex = NULL;
    int rc = mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 4});
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mpx_errmsg());
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    if (rc == MPX_OK) {
      CHECK_OK(mpx_executor_destroy(ex));
      continue;
    }
    failures++;
    fprintf(stderr, "   limit %d: %s: %s\n", base + extra, mpx_err_name(rc), msg);
    CHECK(strstr(msg, "file descriptors"));
    CHECK(!strstr(msg, "Protocol error"));
  }
  CHECK(failures > 0);
  CHECK(count_fds() <= base + 1); /* nothing leaked by the failed starts */
}

/* argv[1]: "processes" (default) or "mpi"; argv[2]: run only the case of that name. */
static const char *only;
#define CASE(test)                                                                                 \
  do {                                                                                             \
    if (!only || !strcmp(only, #test)) RUN(test);                                                  \
  } while (0)

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  CHECK(role == MPX_MAIN);
  if (argc > 1 && !strcmp(argv[1], "mpi")) backend = MPX_BACKEND_MPI;
  if (argc > 2) only = argv[2];
  if (backend == MPX_BACKEND_MPI) {
    CASE(test_forged_code);
#if MPX_HAVE_MPI
    CASE(test_forged_returned);
    CASE(test_forged_started);
#endif
  } else if (!NO_FORK) {
    CASE(test_corrupt_frame);
    CASE(test_forged_ready);
    CASE(test_forged_code);
    CASE(test_forged_identity);
    CASE(test_forged_results);
    CASE(test_huge_header);
    CASE(test_tiny_payload);
    CASE(test_tiny_payload_init);
    CASE(test_budget);
    CASE(test_fd_exhaustion);
  }
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "trust_test (%s): all passed\n", mpx_backend_name(backend));
  return 0;
}
