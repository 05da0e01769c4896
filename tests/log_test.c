/* log_test: the log hook (mpx/log.h).
 *
 *  - nothing reaches stderr by default: a child with fd 2 on a pipe and no MPX_LOG runs what used
 *    to print (a failing done-callback, an mpx_process whose task fails, executors on threads and
 *    processes) and the pipe stays empty;
 *  - MPX_LOG=info, set before mpx's first use, installs the default logger: an executor created
 *    with backend AUTO writes "mpx: info: executor: backend threads (chosen by auto), 2 workers"
 *    to stderr, and no debug line appears;
 *  - a logger installed with mpx_log_set receives the messages at or below the level; NULL
 *    silences; mpx_log_set_level refuses levels out of range.
 * Each case that depends on MPX_LOG runs in a forked child, before the parent touches mpx. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

static int nothing(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  return MPX_OK;
}
MPX_TASK(nothing)

static int fails(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_ETASK, "failing on purpose");
}
MPX_TASK(fails)

static int bad_callback(mpx_future *f, void *arg) {
  (void)f, (void)arg;
  return -1;
}

/* Create an executor with 2 workers on `backend`, run one task, destroy it. */
static void run_executor(mpx_backend backend) {
  mpx_options o = {0};
  o.backend = backend;
  o.workers = 2;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &o));
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "nothing", NULL, 0, &f));
  CHECK_OK(mpx_future_result(f, -1, NULL, NULL));
  CHECK_RC(mpx_future_add_done_callback(f, bad_callback, NULL), MPX_ECALLBACK); /* used to print */
  CHECK_OK(mpx_future_release(f));
  CHECK_OK(mpx_executor_destroy(ex));
}

/* Everything that used to write to stderr. */
static void noisy_things(void) {
  run_executor(MPX_BACKEND_THREADS);
  run_executor(MPX_BACKEND_PROCESSES);
#if MPX_HAVE_IPC /* mpx_process: built with the multiprocessing primitives */
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, "fails", NULL, 0, "failing")); /* its child used to print */
  CHECK_OK(mpx_process_start(p));
  CHECK_OK(mpx_process_join(p, -1));
  int code;
  CHECK_OK(mpx_process_exitcode(p, &code));
  CHECK(code == 1);
  CHECK_OK(mpx_process_destroy(p));
#endif
}

/* Run fn in a child whose stderr goes to a pipe, with MPX_LOG = env (NULL: unset); return what
 * the child wrote there (malloc'd), after checking it exited 0. */
static char *child_stderr(const char *env, void (*fn)(void)) {
  int pfd[2];
  CHECK(pipe(pfd) == 0);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    if (env)
      setenv("MPX_LOG", env, 1);
    else
      unsetenv("MPX_LOG");
    int keep = dup(2); /* CHECK failures still reach the real stderr */
    dup2(pfd[1], 2);
    close(pfd[1]);
    fn();
    fflush(NULL);
    dup2(keep, 2);
    _exit(0);
  }
  close(pfd[1]);
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  CHECK(buf);
  for (;;) {
    if (n + 1 == cap) CHECK((buf = realloc(buf, cap *= 2)));
    ssize_t r = read(pfd[0], buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  close(pfd[0]);
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return buf;
}

static void auto_executor(void) {
  mpx_options o = {0};
  o.workers = 2;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &o));
  CHECK_OK(mpx_executor_destroy(ex));
}

static void silent_by_default(void) {
  char *out = child_stderr(NULL, noisy_things);
  if (*out) fprintf(stderr, "unexpected stderr output:\n%s", out);
  CHECK(*out == '\0');
  free(out);
  out = child_stderr("off", noisy_things);
  CHECK(*out == '\0');
  free(out);
}

static void env_info(void) {
  char *out = child_stderr("info", auto_executor);
  fprintf(stderr, "   MPX_LOG=info wrote: %s", out);
  CHECK(strstr(out, "mpx: info: executor: backend threads (chosen by auto), 2 workers, unbound\n"));
  CHECK(!strstr(out, "mpx: debug:"));
  free(out);
  /* warn: the failing callback shows, the executor line does not */
  out = child_stderr("warn", noisy_things);
  CHECK(strstr(out, "mpx: warn: a done-callback failed\n"));
  CHECK(!strstr(out, "mpx: info:"));
  free(out);
}

/* A logger that keeps what it gets. */
static struct {
  int calls, last_level;
  char last[512];
} got;

static void capture(int level, const char *msg, void *user) {
  CHECK(user == &got);
  got.calls++;
  got.last_level = level;
  snprintf(got.last, sizeof got.last, "%s", msg);
}

static void custom_logger(void) {
  mpx_log_set(capture, &got);
  CHECK_OK(mpx_log_set_level(MPX_LOG_INFO));
  auto_executor();
  CHECK(got.calls == 1);
  CHECK(got.last_level == MPX_LOG_INFO);
  CHECK(strstr(got.last, "executor: backend threads (chosen by auto), 2 workers"));
  CHECK(!strchr(got.last, '\n'));

  mpx_options o = {0};
  o.backend = MPX_BACKEND_PROCESSES;
  o.workers = 1;
  o.binding = MPX_BIND_CORE;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &o));
  CHECK(got.calls == 2);
  CHECK(strstr(got.last, "executor: backend processes, 1 workers, bound per core to CPUs "));
  CHECK_OK(mpx_executor_destroy(ex));

  /* WARN only: the executor line is dropped, the failing callback is not */
  CHECK_OK(mpx_log_set_level(MPX_LOG_WARN));
  run_executor(MPX_BACKEND_THREADS);
  CHECK(got.calls == 3);
  CHECK(got.last_level == MPX_LOG_WARN);
  CHECK(!strcmp(got.last, "a done-callback failed"));

  /* NULL: silent */
  mpx_log_set(NULL, NULL);
  CHECK_OK(mpx_log_set_level(MPX_LOG_DEBUG));
  run_executor(MPX_BACKEND_THREADS);
  CHECK(got.calls == 3);

  CHECK_RC(mpx_log_set_level(-1), MPX_EINVAL);
  CHECK_RC(mpx_log_set_level(MPX_LOG_DEBUG + 1), MPX_EINVAL);
}

int main(void) {
  /* MPX_LOG is read once per process: the cases that set it run in children forked before this
   * process uses mpx at all. */
  RUN(silent_by_default);
  RUN(env_info);
  CHECK(mpx_init(NULL, NULL) == MPX_MAIN);
  RUN(custom_logger);
  mpx_finalize();
  fprintf(stderr, "log_test: all passed\n");
  return 0;
}
