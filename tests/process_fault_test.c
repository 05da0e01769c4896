/* process_fault_test: the process backend keeps going when workers crash, hang,
 * misbehave on the wire or are killed from outside, and leaves nothing behind.
 *
 *  - 100 workers SIGKILLed at random during a million tasks: every future not
 * lost is right, every lost one names its worker's pid; with retries every one
 * completes;
 *  - tasks that abort(), raise SIGSEGV, exit(3): only their futures fail, with
 * the pid and the signal or status; a task lost once is run again with retries
 * = 1;
 *  - a hung task with a time limit fails with MPX_ETIMEDOUT in about the limit,
 * others complete;
 *  - a worker writing an oversized, a truncated or a corrupt frame to its
 * socket is killed and replaced; an unknown task id gets MPX_ENOTASK; an
 * oversized argument is refused at submit with MPX_ETOOBIG; the chan frame
 * reader refuses oversized and truncated frames itself;
 *  - a failing initializer fails create with MPX_EINIT; a 64 MiB result comes
 * back intact;
 *  - after destroy no child but the fork server is left, no zombie, nothing new
 * in /dev/shm; after mpx_finalize no child at all. MPX_TEST_SCALE (default 1)
 * scales the million tasks (0.1 under sanitizers). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"
#include "codec.h"
#include "os/chan.h"

int mpx__procs_server_pid(
    void); /* process/forkserver.c: the fork server's pid, 0 if none */

/* ---- tasks
 * ----------------------------------------------------------------------------------
 */

static int twice(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len;
  uint64_t x;
  memcpy(&x, arg, sizeof x);
  x *= 2;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(twice)

static int do_abort(mpx_task_ctx *ctx, const void *arg, size_t len,
                    mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  abort();
}
MPX_TASK(do_abort)

static int do_segv(mpx_task_ctx *ctx, const void *arg, size_t len,
                   mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  signal(SIGSEGV, SIG_DFL); /* not a sanitizer's report: the plain crash */
  raise(SIGSEGV);
  return 0;
}
MPX_TASK(do_segv)

static int do_exit3(mpx_task_ctx *ctx, const void *arg, size_t len,
                    mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  _exit(3);
}
MPX_TASK(do_exit3)

static int hang(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  while (!len)
    pause(); /* until killed */
  return 0;
}
MPX_TASK(hang)

static int pid_fail(mpx_task_ctx *ctx, const void *arg, size_t len,
                    mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_ETASK, "refused by design");
}
MPX_TASK(pid_fail)

/* Dies the first time (the marker file does not exist yet), succeeds after. */
static int die_once(mpx_task_ctx *ctx, const void *arg, size_t len,
                    mpx_buf *out) {
  (void)ctx;
  char path[256];
  snprintf(path, sizeof path, "%.*s", (int)len, (const char *)arg);
  int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
  if (fd >= 0) {
    close(fd);
    raise(SIGKILL);
  }
  int pid = getpid();
  return mpx_buf_set(out, &pid, sizeof pid);
}
MPX_TASK(die_once)

static int big_result(mpx_task_ctx *ctx, const void *arg, size_t len,
                      mpx_buf *out) {
  (void)ctx, (void)len;
  uint64_t n;
  memcpy(&n, arg, sizeof n);
  void *data;
  int rc = mpx_buf_reserve(out, n, &data);
  if (rc)
    return rc;
  uint32_t *p = data;
  for (uint64_t i = 0; i < n / 4; i++)
    p[i] = (uint32_t)(i * 2654435761u);
  return 0;
}
MPX_TASK(big_result)

static int bad_init(mpx_task_ctx *ctx, const void *arg, size_t len,
                    mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_EINVAL, "cannot initialise this worker");
}
MPX_TASK(bad_init)

/* Write raw bytes to this worker's channel socket (the one socket a worker
 * has), then exit. */
static int write_own_socket(const void *bytes, size_t n) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return MPX_ESYS;
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[300], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t k = readlink(path, link, sizeof link - 1);
    if (k <= 0)
      continue;
    link[k] = '\0';
    if (strncmp(link, "socket:", 7))
      continue;
    int fd = atoi(e->d_name);
    struct stat st;
    if (fstat(fd, &st) || !S_ISSOCK(st.st_mode))
      continue;
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_STREAM)
      continue;
    ssize_t w = write(fd, bytes, n);
    (void)w;
  }
  closedir(d);
  return 0;
}

/* argument: 0 oversized header, 1 truncated frame then exit, 2 corrupt body */
static int wire_garbage(mpx_task_ctx *ctx, const void *arg, size_t len,
                        mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  int how;
  memcpy(&how, arg, sizeof how);
  if (how == 0) {
    const unsigned char hdr[4] = {0xff, 0xff, 0xff, 0xff};
    write_own_socket(hdr, sizeof hdr);
  } else if (how == 1) {
    const unsigned char part[8] = {100, 0, 0, 0, 1, 2, 3, 4};
    write_own_socket(part, sizeof part);
    _exit(0);
  } else {
    const unsigned char junk[10] = {6,    0,    0,    0,    0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff};
    write_own_socket(junk, sizeof junk);
  }
  while (how >= 0)
    pause(); /* the parent kills us */
  return 0;
}
MPX_TASK(wire_garbage)

/* ---- process inspection
 * ---------------------------------------------------------------------- */

/* Children of `parent` (pids into out, at most max); zombies among them counted
 * in *zombies. */
static int children_of(int parent, int *out, int max, int *zombies) {
  DIR *d = opendir("/proc");
  CHECK(d);
  int n = 0;
  if (zombies)
    *zombies = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    int pid = atoi(e->d_name);
    if (pid <= 0)
      continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = '\0';
    char *rp = strrchr(buf, ')');
    if (!rp)
      continue;
    char state;
    int ppid;
    if (sscanf(rp + 2, "%c %d", &state, &ppid) != 2 || ppid != parent)
      continue;
    if (state == 'Z' && zombies)
      (*zombies)++;
    if (n < max)
      out[n] = pid;
    n++;
  }
  closedir(d);
  return n;
}

/* The live worker processes: children of the fork server. */
static int workers_now(int *out, int max) {
  int fs = mpx__procs_server_pid();
  CHECK(fs > 0);
  return children_of(fs, out, max, NULL);
}

/* Entries of /dev/shm, as one string of "name\n" lines. Open MPI's vader
 * segments belong to concurrent mpirun jobs (other tests), never to this
 * process: they are left out. */
static char *shm_names(void) {
  static char buf[1 << 16];
  buf[0] = '\0';
  DIR *d = opendir("/dev/shm");
  if (!d)
    return strdup("");
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' || !strncmp(e->d_name, "vader_segment", 13))
      continue;
    n += (size_t)snprintf(buf + n, n < sizeof buf ? sizeof buf - n : 0, "%s\n",
                          e->d_name);
    if (n >= sizeof buf)
      break;
  }
  closedir(d);
  return strdup(buf);
}

/* 1 if `after` lists a name `before` does not. */
static int shm_new(const char *before, const char *after) {
  for (const char *p = after; *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = (size_t)(nl - p);
    char name[300];
    snprintf(name, sizeof name, "\n%.*s\n", (int)len, p);
    char wrapped[1 << 16];
    snprintf(wrapped, sizeof wrapped, "\n%s", before);
    if (!strstr(wrapped, name)) {
      fprintf(stderr, "new in /dev/shm: %.*s\n", (int)len, p);
      return 1;
    }
    p = nl + 1;
  }
  return 0;
}

static double scale(void) {
  const char *s = getenv("MPX_TEST_SCALE");
  double x = s ? atof(s) : 1.0;
  return x > 0 ? x : 1.0;
}

/* ---- tests
 * ------------------------------------------------------------------------------------
 */

typedef struct killer {
  _Atomic bool stop;
  _Atomic int
      kills; /* pids[0..kills) were killed; pids[kills] may be being killed */
  int want;
  int pids[4096]; /* MPX_STORM_KILLS is capped to fit */
  double every;
} killer;

static void *killer_main(void *arg) {
  killer *k = arg;
  unsigned seed = 12345;
  while (!atomic_load(&k->stop) && k->kills < k->want) {
    usleep((useconds_t)(k->every * 1e6));
    int pids[64];
    int n = workers_now(pids, 64);
    if (n <= 0)
      continue;
    if (n > 64)
      n = 64;
    int victim = pids[rand_r(&seed) % n];
    k->pids[k->kills] =
        victim; /* before the kill: its loss may be seen at once */
    if (kill(victim, SIGKILL) == 0)
      atomic_fetch_add(&k->kills, 1);
  }
  return NULL;
}

static bool names_killed_pid(const killer *k, const char *msg) {
  int upto = atomic_load(&k->kills);
  for (int i = 0; i <= upto && i < (int)(sizeof k->pids / sizeof *k->pids); i++) {
    char want[32];
    snprintf(want, sizeof want, "pid %d ", k->pids[i]);
    if (strstr(msg, want) && strstr(msg, "signal 9"))
      return true;
  }
  return false;
}

/* Run `total` tasks in waves while a thread kills `kills` workers; returns how
 * many were lost. */
static long run_under_fire(int retries, long total, int kills, double every, killer *k) {
  mpx_executor *ex;
  CHECK_OK(
      mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                              .workers = 4,
                                              .retries = retries}));
  memset(k, 0, sizeof *k);
  k->want = kills;
  k->every = every; /* test_sigkill_storm: 100 kills over ~1.2 s unless the environment says */
  pthread_t th;
  CHECK(pthread_create(&th, NULL, killer_main, k) == 0);
  enum { WAVE = 20000 };
  static mpx_future *fs[WAVE];
  const mpx_task *t;
  CHECK_OK(mpx_task_find("twice", &t));
  long done = 0, lost = 0;
  double t0 = check_now();
  while (done < total || (k->kills < kills && check_now() - t0 < 60)) {
    for (long i = 0; i < WAVE; i++) {
      uint64_t x = (uint64_t)(done + i);
      CHECK_OK(mpx_submit_task(ex, t, &x, sizeof x, NULL, &fs[i]));
    }
    for (long i = 0; i < WAVE; i++) {
      uint64_t y = 0;
      int rc = mpx_future_result_copy(fs[i], &y, sizeof y, MPX_FOREVER);
      if (rc == MPX_OK) {
        CHECK(y == 2 * (uint64_t)(done + i));
      } else {
        int code;
        const char *msg;
        CHECK_OK(mpx_future_exception(fs[i], 0, &code, &msg));
        if (code != MPX_EWORKER_LOST || !names_killed_pid(k, msg))
          fprintf(stderr, "unexpected failure %s: %s\n", mpx_err_name(code),
                  msg);
        CHECK(code == MPX_EWORKER_LOST);
        CHECK(names_killed_pid(k, msg));
        lost++;
      }
      mpx_future_release(fs[i]);
    }
    done += WAVE;
  }
  atomic_store(&k->stop, true);
  pthread_join(th, NULL);
  CHECK(k->kills == kills);
  CHECK_OK(mpx_executor_destroy(ex));
  fprintf(stderr,
          "   %ld tasks, %d workers killed, %ld futures lost (retries %d), "
          "%.2f s\n",
          done, atomic_load(&k->kills), lost, retries, check_now() - t0);
  return lost;
}

/* The storm's size: MPX_STORM_TASKS tasks (default a million, times MPX_TEST_SCALE), with a kill
 * every MPX_STORM_EVERY_MS milliseconds (default 12) until MPX_STORM_KILLS (default 100) workers
 * died: the figures come from 2M tasks with a kill every 2 ms. */
static double storm_env(const char *name, double dflt) {
  const char *e = getenv(name);
  double v = e && *e ? atof(e) : 0;
  return v > 0 ? v : dflt;
}

static void test_sigkill_storm(void) {
  long total = (long)storm_env("MPX_STORM_TASKS", 1000000 * scale());
  int kills = (int)storm_env("MPX_STORM_KILLS", 100);
  if (kills > 4000) kills = 4000; /* killer.pids */
  double every = storm_env("MPX_STORM_EVERY_MS", 12) / 1000;
  killer k;
  /* Each kill charges only the task its worker was running (or had run last in a batch whose
   * results were not sent yet); the rest of its window is re-queued uncharged. So with retries 0
   * at most one future is lost per kill, and with retries 1 a task is lost only if two kills
   * hit it while it runs: none is. */
  long lost = run_under_fire(0, total, kills, every, &k);
  CHECK(lost <= kills); /* never more than one task per kill (most kills find the worker
                           between batches and lose nothing: test_crashes shows the one lost) */
  lost = run_under_fire(1, total, kills, every, &k);
  CHECK(lost == 0);
}

static mpx_future *submit(mpx_executor *ex, const char *task, const void *arg,
                          size_t len, const mpx_submit_opts *o) {
  const mpx_task *t;
  CHECK_OK(mpx_task_find(task, &t));
  mpx_future *f;
  CHECK_OK(mpx_submit_task(ex, t, arg, len, o, &f));
  return f;
}

static void expect_lost(mpx_future *f, const char *how) {
  int code;
  const char *msg;
  CHECK_OK(mpx_future_exception(f, 60, &code, &msg));
  if (code != MPX_EWORKER_LOST || !strstr(msg, how) || !strstr(msg, "pid "))
    fprintf(stderr, "got %s: %s (wanted '%s')\n", mpx_err_name(code), msg, how);
  CHECK(code == MPX_EWORKER_LOST && strstr(msg, how) && strstr(msg, "pid "));
  mpx_future_release(f);
}

static void check_twice(mpx_future *f, uint64_t x) {
  uint64_t y;
  CHECK_OK(mpx_future_result_copy(f, &y, sizeof y, 60));
  CHECK(y == 2 * x);
  mpx_future_release(f);
}

static void test_crashes(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(
      &ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = 2}));
  /* One crash at a time among innocent tasks without retries. A crash fails
   * only the task that crashed: the innocent ones in its worker's window,
   * before it (run, results not sent) or after it (not started), are re-queued
   * without being charged, so every one completes. */
  enum { N = 100 };
  const char *crash[3] = {"do_abort", "do_segv", "do_exit3"};
  const char *how[3] = {"signal 6", "signal 11", "exited with status 3"};
  static mpx_future *good[3][2 * N];
  const mpx_submit_opts again = {.retries = 0}, once = {.retries = 0};
  for (int c = 0; c < 3; c++) {
    for (uint64_t i = 0; i < N; i++)
      good[c][i] = submit(ex, "twice", &i, sizeof i, &again);
    mpx_future *bad = submit(ex, crash[c], NULL, 0, &once);
    for (uint64_t i = N; i < 2 * N; i++)
      good[c][i] = submit(ex, "twice", &i, sizeof i, &again);
    expect_lost(bad, how[c]);
  }
  for (int c = 0; c < 3; c++)
    for (uint64_t i = 0; i < 2 * N; i++)
      check_twice(good[c][i], i);

  /* the pool was replaced: everything runs again */
  for (uint64_t i = 0; i < 100; i++)
    check_twice(submit(ex, "twice", &i, sizeof i, NULL), i);

  /* a task error comes back with its message and the worker's pid */
  mpx_future *f = submit(ex, "pid_fail", NULL, 0, NULL);
  int code;
  const char *msg;
  CHECK_OK(mpx_future_exception(f, 60, &code, &msg));
  CHECK(code == MPX_ETASK && strstr(msg, "refused by design") &&
        strstr(msg, "pid "));
  mpx_future_release(f);

  /* an unknown task id is refused by the worker, never run */
  static const mpx_task ghost = {.name = "ghost", .id = 0x0badf00d, .fn = NULL};
  CHECK_OK(mpx_submit_task(ex, &ghost, NULL, 0, NULL, &f));
  CHECK_OK(mpx_future_exception(f, 60, &code, &msg));
  CHECK(code == MPX_ENOTASK);
  mpx_future_release(f);

  /* retries: lost once, run again elsewhere */
  char marker[128];
  snprintf(marker, sizeof marker, "/tmp/mpx-die-once-%d", (int)getpid());
  unlink(marker);
  f = submit(ex, "die_once", marker, strlen(marker),
             &(mpx_submit_opts){.retries = 1});
  int pid = 0;
  CHECK_OK(mpx_future_result_copy(f, &pid, sizeof pid, 60));
  CHECK(pid > 0);
  mpx_future_release(f);
  unlink(marker);
  f = submit(ex, "die_once", marker, strlen(marker),
             &(mpx_submit_opts){.retries = 0});
  expect_lost(f, "signal 9");
  unlink(marker);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_timeout(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(
      &ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = 2}));
  double t0 = check_now();
  mpx_future *h = submit(ex, "hang", NULL, 0,
                         &(mpx_submit_opts){.retries = -1, .timeout = 0.5});
  enum { N = 2000 };
  mpx_future *fs[N];
  for (uint64_t i = 0; i < N; i++)
    fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
  int code;
  const char *msg;
  CHECK_OK(mpx_future_exception(h, 30, &code, &msg));
  double took = check_now() - t0;
  CHECK(code == MPX_ETIMEDOUT && strstr(msg, "time limit") &&
        strstr(msg, "pid "));
  /* the 0.5 s limit ended it, not the 30 s wait (a generous bound: that it fired, not how fast) */
  CHECK(took >= 0.45 && took < 15.0);
  mpx_future_release(h);
  for (uint64_t i = 0; i < N; i++)
    check_twice(fs[i], i);
  CHECK_OK(mpx_executor_destroy(ex));

  /* the executor-wide time limit, and a pool whose timed tasks keep it busy */
  CHECK_OK(
      mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                              .workers = 2,
                                              .task_timeout = 0.3}));
  mpx_future *hs[3];
  for (int i = 0; i < 3; i++)
    hs[i] = submit(ex, "hang", NULL, 0, NULL);
  uint64_t x = 21;
  mpx_future *g = submit(ex, "twice", &x, sizeof x, NULL);
  for (int i = 0; i < 3; i++) {
    CHECK_RC(mpx_future_result(hs[i], 30, NULL, NULL), MPX_ETIMEDOUT);
    mpx_future_release(hs[i]);
  }
  check_twice(g, 21);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_wire(void) {
  mpx_executor *ex;
  CHECK_OK(
      mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                              .workers = 2,
                                              .max_payload = 1 << 20}));
  const char *want[3] = {"over the limit", "truncated frame", "malformed"};
  for (int how = 0; how < 3; how++) {
    mpx_future *f = submit(ex, "wire_garbage", &how, sizeof how, NULL);
    expect_lost(f, want[how]);
    uint64_t x = (uint64_t)how;
    check_twice(submit(ex, "twice", &x, sizeof x, NULL),
                x); /* replaced, still serving */
  }
  /* oversized argument: refused at submit, nothing sent */
  size_t big = (1 << 20) + 1;
  char *buf = calloc(1, big);
  mpx_future *f = (mpx_future *)1;
  CHECK_RC(mpx_submit(ex, "twice", buf, big, &f), MPX_ETOOBIG);
  CHECK(f == NULL);
  /* oversized result: the worker refuses to send it */
  uint64_t n = 2 << 20;
  f = submit(ex, "big_result", &n, sizeof n, NULL);
  CHECK_RC(mpx_future_result(f, 60, NULL, NULL), MPX_ETOOBIG);
  mpx_future_release(f);
  free(buf);
  CHECK_OK(mpx_executor_destroy(ex));

  /* the frame reader itself (chan over a socketpair, the limit the transport
   * uses) */
  mpx__limits lim = mpx__limits_default(1 << 20);
  for (int how = 0; how < 3; how++) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    mpx__chan c;
    mpx__chan_init(&c, sv[0], lim.max_message);
    const void *data;
    size_t len;
    CHECK(mpx__chan_recv_nb(&c, &data, &len) == 0); /* nothing yet */
    if (how == 0) { /* a header past the limit: refused before any allocation */
      const unsigned char hdr[4] = {0, 0, 0, 0x7f};
      CHECK(write(sv[1], hdr, 4) == 4);
      CHECK_RC(mpx__chan_recv_nb(&c, &data, &len), MPX_ETOOBIG);
      CHECK(c.body_cap == 0);
    } else if (how == 1) { /* truncated: the peer closes mid-frame */
      const unsigned char part[6] = {10, 0, 0, 0, 1, 2};
      CHECK(write(sv[1], part, 6) == 6);
      CHECK(mpx__chan_recv_nb(&c, &data, &len) == 0);
      close(sv[1]);
      sv[1] = -1;
      CHECK_RC(mpx__chan_recv_nb(&c, &data, &len), MPX_EPROTO);
    } else { /* a whole frame of junk: the codec refuses it */
      const unsigned char junk[9] = {5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff};
      CHECK(write(sv[1], junk, 9) == 9);
      CHECK(mpx__chan_recv_nb(&c, &data, &len) == 1 && len == 5);
      Mpx__Batch *b;
      CHECK_RC(mpx__codec_unpack(data, len, &lim, &b), MPX_EPROTO);
    }
    mpx__chan_close(&c);
    if (sv[1] >= 0)
      close(sv[1]);
  }
  /* the resumable nonblocking send: a frame larger than the socket buffer goes
   * out in parts */
  {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    mpx__chan a, b;
    mpx__chan_init(&a, sv[0], 0);
    mpx__chan_init(&b, sv[1], 0);
    size_t n2 = 8 << 20, sent = 0;
    unsigned char *p = malloc(n2);
    for (size_t i = 0; i < n2; i++)
      p[i] = (unsigned char)(i * 31);
    struct iovec v = {.iov_base = p, .iov_len = n2};
    int r = mpx__chan_sendv_nb(&a, &v, 1, &sent);
    CHECK(r == 0 && sent > 0 &&
          sent < n2); /* the socket took a part; the rest waits */
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    void *got = NULL;
    size_t glen = 0;
    for (;;) { /* alternate nonblocking steps on both ends */
      const void *data;
      size_t len;
      int rr = mpx__chan_recv_nb(&b, &data, &len);
      CHECK(rr >= 0);
      if (rr == 1) {
        got = malloc(len);
        memcpy(got, data, len);
        glen = len;
        break;
      }
      if (r == 0)
        r = mpx__chan_sendv_nb(&a, &v, 1, &sent);
      CHECK(r >= 0);
    }
    CHECK(r == 1 && sent == n2 + 4 && glen == n2 && memcmp(got, p, n2) == 0);
    free(got);
    free(p);
    mpx__chan_close(&a);
    mpx__chan_close(&b);
  }
}

static void test_init_and_big(void) {
  mpx_executor *ex;
  CHECK_RC(
      mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                              .workers = 2,
                                              .initializer = "bad_init"}),
      MPX_EINIT);
  CHECK(ex == NULL && strstr(mpx_errmsg(), "cannot initialise this worker"));

  CHECK_OK(mpx_executor_create(
      &ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = 2}));
  uint64_t n = (uint64_t)64 << 20;
  mpx_future *f = submit(ex, "big_result", &n, sizeof n, NULL);
  const void *p;
  size_t len;
  CHECK_OK(mpx_future_result(f, 120, &p, &len));
  CHECK(len == n);
  const uint32_t *q = p;
  for (uint64_t i = 0; i < n / 4; i++)
    if (q[i] != (uint32_t)(i * 2654435761u))
      CHECK(!"64 MiB result corrupt");
  mpx_future_release(f);
  CHECK_OK(mpx_executor_destroy(ex));
}

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER)
    return 0;
  char *shm_before = shm_names();
  RUN(test_wire);
  RUN(test_crashes);
  RUN(test_timeout);
  RUN(test_init_and_big);
  RUN(test_sigkill_storm);
  /* nothing left but the fork server: no worker, no zombie */
  int kids[16], zombies;
  int n = children_of((int)getpid(), kids, 16, &zombies);
  CHECK(zombies == 0);
  CHECK(n == 1 && kids[0] == mpx__procs_server_pid());
  int fs = mpx__procs_server_pid();
  CHECK(children_of(fs, kids, 16, &zombies) == 0);
  char *shm_after = shm_names();
  CHECK(!shm_new(shm_before, shm_after));
  free(shm_before);
  free(shm_after);
  CHECK_OK(mpx_finalize());
  CHECK(children_of((int)getpid(), kids, 16, &zombies) == 0);
  fprintf(stderr, "process_fault_test: all passed\n");
  return 0;
}
