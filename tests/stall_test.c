/* stall_test: hostile workers do not strand the tasks queued to them (process backend).
 *
 *  - queued: futures sent to a busy worker but not started read PENDING, not running, and can
 *    be cancelled; the worker skips them and stays healthy;
 *  - fair: one long task, then 200 short ones: every short one is done before the long one ends
 *    (none waits behind it while the other worker is idle);
 *  - sigstop: one of two workers is stopped with 20,000 tasks queued: the un-started ones can be
 *    cancelled, every other one completes on the other worker, mpx_map with timeout 2.0 returns
 *    MPX_ETIMEDOUT, and destroy returns (the stopped worker is killed);
 *  - stopped_running: a worker stopped in the middle of a task: destroy returns, the task fails
 *    as lost ('stalled');
 *  - frame: a task writes a frame header into its socket and stalls: it fails with
 *    MPX_EWORKER_LOST ('stalled'), the tasks queued behind it complete;
 *  - pages: a task that zeroes every progress mapping it has cannot touch another worker's
 *    progress page, so that worker's death still charges its running task;
 *  - timed: 1000 short timed tasks and one that runs past its limit: only that one fails, with
 *    MPX_ETIMEDOUT;
 *  - shutdown: shutdown(cancel_futures) cancels the futures queued to busy workers that have not
 *    started, not only those still in the executor's queue;
 *  - options: a negative stall_timeout is refused; a short one detects a stopped worker sooner.
 * No check asserts a speed: bounds are loose ("within 20 s", "before the long task ended").
 * Usage: stall_test [name...] (all when none). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

int mpx__procs_server_pid(void); /* process.c: the fork server's pid, 0 if none */

/* ---- tasks -------------------------------------------------------------------------------- */

static int twice(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len;
  uint64_t x;
  memcpy(&x, arg, sizeof x);
  x *= 2;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(twice)

/* Sleep `arg` milliseconds (a uint32). */
static int nap(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  uint32_t ms;
  memcpy(&ms, arg, sizeof ms);
  usleep(ms * 1000u);
  return 0;
}
MPX_TASK(nap)

/* A gate: create DIR/started-PID, then wait until DIR/open exists. */
static int gate(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)out;
  char dir[200], path[300];
  snprintf(dir, sizeof dir, "%.*s", (int)len, (const char *)arg);
  snprintf(path, sizeof path, "%s/started-%d", dir, (int)getpid());
  int fd = open(path, O_CREAT | O_WRONLY, 0600);
  if (fd >= 0) close(fd);
  snprintf(path, sizeof path, "%s/open", dir);
  while (access(path, F_OK) != 0) usleep(5000);
  return 0;
}
MPX_TASK(gate)

/* Write our pid to the file named by arg, then wait to be killed. */
static int hang_here(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)out;
  char path[300];
  snprintf(path, sizeof path, "%.*s", (int)len, (const char *)arg);
  FILE *f = fopen(path, "w");
  if (f) {
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
  }
  for (;;) pause();
  return 0;
}
MPX_TASK(hang_here)

static int hang(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  for (;;) pause();
  return 0;
}
MPX_TASK(hang)

/* Write a frame header announcing 100 bytes to this worker's stream socket, then stall. */
static int frame_stall(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  const unsigned char hdr[4] = {100, 0, 0, 0};
  DIR *d = opendir("/proc/self/fd");
  if (!d) return MPX_ESYS;
  struct dirent *e;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    struct stat st;
    if (fd <= 2 || fstat(fd, &st) || !S_ISSOCK(st.st_mode)) continue;
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_STREAM) continue;
    ssize_t w = write(fd, hdr, sizeof hdr);
    (void)w;
  }
  closedir(d);
  for (;;) pause();
  return 0;
}
MPX_TASK(frame_stall)

/* Zero every progress mapping this process has; returns the bytes zeroed (a uint64). */
static int scribble(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return MPX_ESYS;
  char line[512];
  uint64_t bytes = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strstr(line, "mpx-progress")) continue;
    unsigned long lo, hi;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[1] != 'w') continue;
    memset((void *)lo, 0, hi - lo);
    bytes += hi - lo;
  }
  fclose(f);
  return mpx_buf_set(out, &bytes, sizeof bytes);
}
MPX_TASK(scribble)

/* ---- helpers ------------------------------------------------------------------------------ */

static mpx_future *submit(mpx_executor *ex, const char *task, const void *arg, size_t len,
                          const mpx_submit_opts *o) {
  const mpx_task *t;
  CHECK_OK(mpx_task_find(task, &t));
  mpx_future *f;
  CHECK_OK(mpx_submit_task(ex, t, arg, len, o, &f));
  return f;
}

static void check_twice(mpx_future *f, uint64_t x, double timeout) {
  uint64_t y = 0;
  CHECK_OK(mpx_future_result_copy(f, &y, sizeof y, timeout));
  CHECK(y == 2 * x);
}

static mpx_executor *make(int workers, int retries) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(
      &ex,
      &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = workers, .retries = retries}));
  /* warm up: the dispatcher measures task times and opens wide windows */
  enum { WARM = 4000 };
  static mpx_future *fs[WARM];
  for (uint64_t i = 0; i < WARM; i++) fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
  for (uint64_t i = 0; i < WARM; i++) {
    check_twice(fs[i], i, 60);
    mpx_future_release(fs[i]);
  }
  return ex;
}

/* Worker pids: children of the fork server (one executor at a time in this test). */
static int workers_now(int *out, int max) {
  int parent = mpx__procs_server_pid();
  CHECK(parent > 0);
  DIR *d = opendir("/proc");
  CHECK(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    int pid = atoi(e->d_name);
    if (pid <= 0) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = '\0';
    char *rp = strrchr(buf, ')');
    char state;
    int ppid;
    if (!rp || sscanf(rp + 2, "%c %d", &state, &ppid) != 2 || ppid != parent || state == 'Z')
      continue;
    if (n < max) out[n] = pid;
    n++;
  }
  closedir(d);
  return n;
}

static void make_dir(char *dir, size_t n, const char *what) {
  snprintf(dir, n, "/tmp/mpx-stall-%s-%d", what, (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  CHECK(mkdir(dir, 0700) == 0);
}

static void remove_dir(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

static int count_started(const char *dir) {
  DIR *d = opendir(dir);
  CHECK(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += !strncmp(e->d_name, "started-", 8);
  closedir(d);
  return n;
}

static void wait_started(const char *dir, int want) {
  double t0 = check_now();
  while (count_started(dir) < want) {
    CHECK(check_now() - t0 < 30);
    usleep(5000);
  }
}

static void open_gate(const char *dir) {
  char path[300];
  snprintf(path, sizeof path, "%s/open", dir);
  int fd = open(path, O_CREAT | O_WRONLY, 0600);
  CHECK(fd >= 0);
  close(fd);
}

/* A watchdog: the test fails (instead of hanging until ctest's timeout) if a step that must end
 * does not end within its bound. */
static _Atomic double watchdog_at;
static const char *_Atomic watchdog_what;
static void *watchdog_main(void *arg) {
  (void)arg;
  for (;;) {
    usleep(100000);
    double at = atomic_load(&watchdog_at);
    if (at > 0 && check_now() > at) {
      fprintf(stderr, "watchdog: '%s' did not end within its bound\n", atomic_load(&watchdog_what));
      _exit(1);
    }
  }
  return NULL;
}
static void watch(const char *what, double seconds) {
  atomic_store(&watchdog_what, what);
  atomic_store(&watchdog_at, seconds > 0 ? check_now() + seconds : 0);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Futures queued behind busy workers have not started: they read PENDING and can be cancelled. */
static void test_queued(void) {
  mpx_executor *ex = make(2, 0);
  char dir[200];
  make_dir(dir, sizeof dir, "queued");
  mpx_future *g[2];
  for (int i = 0; i < 2; i++) g[i] = submit(ex, "gate", dir, strlen(dir), NULL);
  wait_started(dir, 2); /* both workers are busy now */
  for (int i = 0; i < 2; i++) CHECK(mpx_future_running(g[i]) == 1);
  enum { N = 100 };
  mpx_future *fs[N];
  for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
  usleep(200000); /* let the dispatcher send them */
  for (int i = 0; i < N; i++) {
    if (mpx_future_running(fs[i]) != 0 || mpx_future_state_get(fs[i]) != MPX_PENDING)
      fprintf(stderr, "future %d: running %d, state %d\n", i, mpx_future_running(fs[i]),
              mpx_future_state_get(fs[i]));
    CHECK(mpx_future_running(fs[i]) == 0);
    CHECK(mpx_future_state_get(fs[i]) == MPX_PENDING);
  }
  for (int i = 0; i < N; i += 2) CHECK_OK(mpx_future_cancel(fs[i]));
  open_gate(dir);
  for (int i = 0; i < 2; i++) {
    CHECK_OK(mpx_future_result(g[i], 30, NULL, NULL));
    mpx_future_release(g[i]);
  }
  for (int i = 0; i < N; i++) {
    if (i % 2 == 0) {
      CHECK_RC(mpx_future_result(fs[i], 30, NULL, NULL), MPX_ECANCELLED);
    } else {
      check_twice(fs[i], (uint64_t)i, 30);
    }
    mpx_future_release(fs[i]);
  }
  /* the workers skipped what was cancelled and serve on */
  for (uint64_t i = 0; i < 1000; i++) {
    mpx_future *f = submit(ex, "twice", &i, sizeof i, NULL);
    check_twice(f, i, 30);
    mpx_future_release(f);
  }
  CHECK_OK(mpx_executor_destroy(ex));
  remove_dir(dir);
}

/* One long task, then 200 short ones: all short ones are done before the long one ends. */
static void test_fair(void) {
  mpx_executor *ex = make(2, 0);
  char dir[200];
  make_dir(dir, sizeof dir, "fair");
  mpx_future *lng = submit(ex, "gate", dir, strlen(dir), NULL);
  wait_started(dir, 1);
  enum { N = 200 };
  mpx_future *fs[N];
  uint32_t ms = 1;
  for (int i = 0; i < N; i++) fs[i] = submit(ex, "nap", &ms, sizeof ms, NULL);
  for (int i = 0; i < N; i++) {
    CHECK_OK(mpx_future_result(fs[i], 30, NULL, NULL));
    mpx_future_release(fs[i]);
  }
  CHECK(mpx_future_done(lng) == 0); /* the long task has not ended: nothing waited for it */
  open_gate(dir);
  CHECK_OK(mpx_future_result(lng, 30, NULL, NULL));
  mpx_future_release(lng);
  CHECK_OK(mpx_executor_destroy(ex));
  remove_dir(dir);
}

/* One of two workers is stopped (SIGSTOP) with 20,000 tasks queued. */
static void test_sigstop(void) {
  mpx_executor *ex = make(2, 0);
  int pids[8];
  CHECK(workers_now(pids, 8) == 2);
  int stopped = pids[0];
  CHECK(kill(stopped, SIGSTOP) == 0);
  enum { N = 20000 };
  static mpx_future *fs[N];
  for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
  /* cancel every tenth, from the last: what did not start is cancelled; what did must finish */
  int cancelled = 0;
  for (int i = N - 1; i >= 0; i -= 10) cancelled += mpx_future_cancel(fs[i]) == MPX_OK;
  watch("the tasks queued with a stopped worker", 60);
  long finished = 0;
  for (int i = 0; i < N; i++) {
    const void *p;
    size_t len;
    int rc = mpx_future_result(fs[i], 30, &p, &len);
    if (rc == MPX_ECANCELLED) {
      CHECK(i % 10 == (N - 1) % 10);
    } else {
      if (rc)
        fprintf(stderr, "task %d: %s (state %d)\n", i, mpx_err_name(rc),
                mpx_future_state_get(fs[i]));
      CHECK_OK(rc);
      uint64_t y;
      memcpy(&y, p, sizeof y);
      CHECK(len == sizeof y && y == 2 * (uint64_t)i);
      finished++;
    }
    mpx_future_release(fs[i]);
  }
  watch(NULL, 0);
  fprintf(stderr, "   %d cancelled, %ld finished with worker %d stopped\n", cancelled, finished,
          stopped);
  /* map with a time limit: the chunks that did not start are cancelled at the limit */
  enum { M = 60 };
  uint32_t items[M];
  for (int i = 0; i < M; i++) items[i] = 100;
  double t0 = check_now();
  watch("mpx_map with timeout 2.0", 30);
  int rc = mpx_map(ex, "nap", items, sizeof items[0], M, NULL, 0,
                   &(mpx_map_opts){.chunksize = 1, .timeout = 2.0});
  watch(NULL, 0);
  fprintf(stderr, "   map: %s after %.2f s\n", mpx_err_name(rc), check_now() - t0);
  CHECK_RC(rc, MPX_ETIMEDOUT);
  CHECK(check_now() - t0 < 20);
  /* destroy ends whatever the stopped worker does */
  t0 = check_now();
  watch("destroy with a stopped worker", 30);
  CHECK_OK(mpx_executor_destroy(ex));
  watch(NULL, 0);
  fprintf(stderr, "   destroy took %.2f s\n", check_now() - t0);
  CHECK(check_now() - t0 < 15);
  kill(stopped, SIGCONT);
}

/* A worker stopped in the middle of a task: destroy still returns (the stopped worker is found
 * stalled and killed), and its task fails as lost, 'stalled', with retries 0. */
static void test_stopped_running(void) {
  mpx_executor *ex = make(2, 0);
  char dir[200];
  make_dir(dir, sizeof dir, "stopped");
  mpx_future *g = submit(ex, "gate", dir, strlen(dir), NULL);
  wait_started(dir, 1);
  DIR *d = opendir(dir);
  CHECK(d);
  int pid = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, "started-", 8)) pid = atoi(e->d_name + 8);
  closedir(d);
  CHECK(pid > 0 && kill(pid, SIGSTOP) == 0);
  double t0 = check_now();
  watch("destroy with a worker stopped in a task", 40);
  CHECK_OK(mpx_executor_destroy(ex));
  watch(NULL, 0);
  double took = check_now() - t0;
  int code = 0;
  const char *msg = "";
  CHECK_OK(mpx_future_exception(g, 0, &code, &msg));
  fprintf(stderr, "   destroy took %.2f s; the stopped task: %s: %s\n", took, mpx_err_name(code),
          msg);
  CHECK(took < 5 + 10); /* stall_timeout (5 s) plus a generous margin */
  CHECK(code == MPX_EWORKER_LOST && strstr(msg, "stalled"));
  mpx_future_release(g);
  kill(pid, SIGCONT);
  remove_dir(dir);
}

/* A task writes a frame header into its socket and stalls. */
static void test_frame(void) {
  mpx_executor *ex = make(2, 0);
  double t0 = check_now();
  mpx_future *bad = submit(ex, "frame_stall", NULL, 0, NULL);
  enum { N = 2000 };
  static mpx_future *fs[N];
  for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
  watch("the tasks queued with a stalled worker", 60);
  for (uint64_t i = 0; i < N; i++) {
    check_twice(fs[i], i, 30);
    mpx_future_release(fs[i]);
  }
  int code = 0;
  const char *msg = "";
  CHECK_OK(mpx_future_exception(bad, 30, &code, &msg));
  watch(NULL, 0);
  fprintf(stderr, "   stalled task: %s: %s (%.2f s)\n", mpx_err_name(code), msg, check_now() - t0);
  CHECK(code == MPX_EWORKER_LOST && strstr(msg, "stall"));
  mpx_future_release(bad);
  t0 = check_now();
  watch("destroy", 30);
  CHECK_OK(mpx_executor_destroy(ex));
  watch(NULL, 0);
  CHECK(check_now() - t0 < 15);
}

/* A task that zeroes every progress mapping it has cannot reach another worker's page. */
static void test_pages(void) {
  mpx_executor *ex = make(2, 0);
  char path[200];
  snprintf(path, sizeof path, "/tmp/mpx-stall-pages-%d", (int)getpid());
  unlink(path);
  mpx_future *victim = submit(ex, "hang_here", path, strlen(path), NULL);
  int pid = 0;
  double t0 = check_now();
  while (pid <= 0) {
    CHECK(check_now() - t0 < 30);
    usleep(5000);
    FILE *f = fopen(path, "r");
    if (f) {
      if (fscanf(f, "%d", &pid) != 1) pid = 0;
      fclose(f);
    }
  }
  mpx_future *s = submit(ex, "scribble", NULL, 0, NULL);
  uint64_t bytes = 0;
  CHECK_OK(mpx_future_result_copy(s, &bytes, sizeof bytes, 30));
  mpx_future_release(s);
  CHECK(bytes > 0);
  CHECK(kill(pid, SIGKILL) == 0);
  /* its running task is charged (retries 0): it fails, it is not re-run */
  int code = 0;
  const char *msg = "";
  CHECK_OK(mpx_future_exception(victim, 20, &code, &msg));
  CHECK(code == MPX_EWORKER_LOST);
  mpx_future_release(victim);
  /* a task that zeroes its own page with tasks queued behind it strands none of them: the worker
   * sees the page is corrupt and exits, what it had not started runs elsewhere */
  watch("tasks queued behind a task that zeroes its own page", 60);
  for (int round = 0; round < 3; round++) {
    s = submit(ex, "scribble", NULL, 0, NULL);
    enum { N = 500 };
    static mpx_future *fs[N];
    for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
    for (uint64_t i = 0; i < N; i++) {
      check_twice(fs[i], i, 30);
      mpx_future_release(fs[i]);
    }
    CHECK_OK(mpx_future_exception(s, 30, &code, &msg)); /* done: ran, or lost with its worker */
    if (code) fprintf(stderr, "   scribble: %s: %s\n", mpx_err_name(code), msg);
    CHECK(code == MPX_OK || code == MPX_EWORKER_LOST);
    mpx_future_release(s);
  }
  watch(NULL, 0);
  CHECK_OK(mpx_executor_destroy(ex));
  unlink(path);
}

/* Timed tasks travel in batches; only the one past its limit fails. */
static void test_timed(void) {
  mpx_executor *ex = make(2, 0);
  mpx_future *h = submit(ex, "hang", NULL, 0, &(mpx_submit_opts){.retries = -1, .timeout = 1.0});
  enum { N = 1000 };
  static mpx_future *fs[N];
  const mpx_submit_opts timed = {.retries = -1, .timeout = 20.0};
  for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i, &timed);
  for (uint64_t i = 0; i < N; i++) {
    check_twice(fs[i], i, 30);
    mpx_future_release(fs[i]);
  }
  int code = 0;
  const char *msg = "";
  CHECK_OK(mpx_future_exception(h, 30, &code, &msg));
  CHECK(code == MPX_ETIMEDOUT && strstr(msg, "time limit"));
  mpx_future_release(h);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* shutdown(wait = false, cancel_futures = true) while both workers are busy and 100 tasks wait in
 * their windows: every one of them is cancelled, none runs. */
static void test_shutdown(void) {
  mpx_executor *ex = make(2, 0);
  char dir[200];
  make_dir(dir, sizeof dir, "shutdown");
  mpx_future *g[2];
  for (int i = 0; i < 2; i++) g[i] = submit(ex, "gate", dir, strlen(dir), NULL);
  wait_started(dir, 2);
  enum { N = 100 };
  mpx_future *fs[N];
  for (uint64_t i = 0; i < N; i++) fs[i] = submit(ex, "twice", &i, sizeof i, NULL);
  usleep(200000); /* let the dispatcher send them */
  CHECK_OK(mpx_executor_shutdown(ex, false, true));
  int cancelled = 0;
  for (int i = 0; i < N; i++) cancelled += mpx_future_cancelled(fs[i]) == 1;
  fprintf(stderr, "   %d of %d cancelled by shutdown\n", cancelled, N);
  open_gate(dir);
  CHECK(cancelled == N);
  for (int i = 0; i < 2; i++) {
    CHECK_OK(mpx_future_result(g[i], 30, NULL, NULL)); /* started: shutdown waits for them */
    mpx_future_release(g[i]);
  }
  for (int i = 0; i < N; i++) {
    CHECK_RC(mpx_future_result(fs[i], 30, NULL, NULL), MPX_ECANCELLED);
    mpx_future_release(fs[i]);
  }
  CHECK_OK(mpx_executor_destroy(ex));
  remove_dir(dir);
}

#ifndef STALL_TEST_OLD_API
/* stall_timeout: negative is refused, and any on threads; 1 s finds a stopped worker (and destroy
 * ends) sooner. */
static void test_options(void) {
  mpx_executor *ex;
  CHECK_RC(
      mpx_executor_create(
          &ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = 1, .stall_timeout = -1}),
      MPX_EINVAL);
  /* refused where it cannot be honoured, never ignored */
  CHECK_RC(
      mpx_executor_create(
          &ex, &(mpx_options){.backend = MPX_BACKEND_THREADS, .workers = 1, .stall_timeout = 1}),
      MPX_EPERM);
  CHECK_OK(mpx_executor_create(
      &ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = 1, .stall_timeout = 1.0}));
  uint64_t x = 1;
  mpx_future *f = submit(ex, "twice", &x, sizeof x, NULL);
  check_twice(f, 1, 30);
  mpx_future_release(f);
  int pids[4];
  CHECK(workers_now(pids, 4) == 1);
  CHECK(kill(pids[0], SIGSTOP) == 0);
  /* its one task waits until the stopped worker is found stalled and replaced */
  double t0 = check_now();
  f = submit(ex, "twice", &x, sizeof x, &(mpx_submit_opts){.retries = 1});
  check_twice(f, 1, 30);
  mpx_future_release(f);
  fprintf(stderr, "   a task queued to a stopped worker (stall_timeout 1) done after %.2f s\n",
          check_now() - t0);
  CHECK_OK(mpx_executor_destroy(ex));
  kill(pids[0], SIGCONT);
}
#endif

static const struct {
  const char *name;
  void (*fn)(void);
} tests[] = {
    {"queued", test_queued},     {"fair", test_fair},
    {"sigstop", test_sigstop},   {"frame", test_frame},
    {"pages", test_pages},       {"timed", test_timed},
    {"shutdown", test_shutdown}, {"stopped_running", test_stopped_running},
#ifndef STALL_TEST_OLD_API
    {"options", test_options},
#endif
};

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  if (NO_FORK) {
    fprintf(stderr, "stall_test: skipped (no fork)\n");
    return 0;
  }
  pthread_t wd;
  CHECK(pthread_create(&wd, NULL, watchdog_main, NULL) == 0);
  pthread_detach(wd);
  size_t nt = sizeof tests / sizeof tests[0];
  for (size_t k = 0; k < nt; k++) {
    bool want = argc < 2;
    for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], tests[k].name);
    if (!want) continue;
    fprintf(stderr, "-- %s\n", tests[k].name);
    tests[k].fn();
  }
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "stall_test: all passed\n");
  return 0;
}
