/* ipc_process_test: mpx_process as multiprocessing.Process: exit codes (0 success, 1 task error,
 * n from exit(n), -N for signal N), join with timeouts of 0, small and negative, is_alive,
 * terminate, kill, pid, name, the argument bytes reaching the child, daemon children dying with
 * their SIGKILLed parent while non-daemon ones live on, and bad input. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

/* The argument says what to do: "ok", "fail", "exit:<n>", "usr1", "sleep", "check:<text>". */
static int behave(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  char cmd[64] = {0};
  memcpy(cmd, arg, len < sizeof cmd - 1 ? len : sizeof cmd - 1);
  if (!strcmp(cmd, "ok")) return mpx_buf_set(out, "ignored", 7);
  if (!strcmp(cmd, "fail")) return mpx_task_fail(ctx, MPX_EINVAL, "asked to fail (expected)");
  if (!strncmp(cmd, "exit:", 5)) exit(atoi(cmd + 5));
  if (!strcmp(cmd, "usr1")) raise(SIGUSR1); /* not SIGSEGV: sanitizers catch that */
  if (!strcmp(cmd, "sleep")) {
    for (;;) pause();
  }
  return MPX_EPROTO;
}
MPX_TASK(behave);

static mpx_process *run(const char *cmd) {
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, "behave", cmd, strlen(cmd), NULL));
  CHECK_OK(mpx_process_start(p));
  return p;
}

static int code_of(mpx_process *p) {
  CHECK_OK(mpx_process_join(p, 10));
  int code = 12345;
  CHECK_OK(mpx_process_exitcode(p, &code));
  return code;
}

static void test_exitcodes(void) {
  mpx_process *p = run("ok");
  CHECK(code_of(p) == 0);
  CHECK(mpx_process_is_alive(p) == 0);
  CHECK_OK(mpx_process_join(p, 0)); /* joining again is fine */
  mpx_process_destroy(p);
  p = run("fail");
  CHECK(code_of(p) == 1);
  mpx_process_destroy(p);
  p = run("exit:7");
  CHECK(code_of(p) == 7);
  mpx_process_destroy(p);
  p = run("usr1");
  CHECK(code_of(p) == -SIGUSR1);
  mpx_process_destroy(p);
}

static void test_lifecycle(void) {
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, "behave", "sleep", 5, "sleeper"));
  const char *name;
  CHECK_OK(mpx_process_name(p, &name));
  CHECK(strcmp(name, "sleeper") == 0);
  int pid, code;
  CHECK_RC(mpx_process_pid(p, &pid), MPX_ESTATE);
  CHECK_RC(mpx_process_join(p, 0), MPX_ESTATE);
  CHECK_RC(mpx_process_exitcode(p, &code), MPX_ESTATE);
  CHECK_RC(mpx_process_terminate(p), MPX_ESTATE);
  CHECK(mpx_process_is_alive(p) == 0);
  CHECK_OK(mpx_process_start(p));
  CHECK_RC(mpx_process_start(p), MPX_ESTATE);
  CHECK_RC(mpx_process_set_daemon(p, true), MPX_ESTATE);
  CHECK_OK(mpx_process_pid(p, &pid));
  CHECK(pid > 0);
  CHECK(mpx_process_is_alive(p) == 1);
  CHECK_RC(mpx_process_join(p, 0), MPX_ETIMEDOUT);
  double t0 = check_now();
  CHECK_RC(mpx_process_join(p, 0.1), MPX_ETIMEDOUT);
  CHECK(check_now() - t0 >= 0.095);
  CHECK_RC(mpx_process_exitcode(p, &code), MPX_ESTATE);
  CHECK_RC(mpx_process_destroy(p), MPX_ESTATE); /* still running */
  CHECK_OK(mpx_process_terminate(p));
  CHECK_OK(mpx_process_join(p, MPX_FOREVER));
  CHECK_OK(mpx_process_exitcode(p, &code));
  CHECK(code == -SIGTERM);
  CHECK_OK(mpx_process_terminate(p)); /* ended: no-op */
  CHECK_OK(mpx_process_kill(p));
  CHECK_OK(mpx_process_destroy(p));

  p = run("sleep");
  CHECK_OK(mpx_process_kill(p));
  CHECK(code_of(p) == -SIGKILL);
  mpx_process_destroy(p);

  /* default names differ */
  mpx_process *a, *b;
  const char *na, *nb;
  CHECK_OK(mpx_process_create(&a, "behave", "ok", 2, NULL));
  CHECK_OK(mpx_process_create(&b, "behave", "ok", 2, NULL));
  CHECK_OK(mpx_process_name(a, &na));
  CHECK_OK(mpx_process_name(b, &nb));
  CHECK(strncmp(na, "Process-", 8) == 0 && strcmp(na, nb) != 0);
  CHECK(mpx_process_daemon(a) == 0);
  CHECK_OK(mpx_process_set_daemon(a, true));
  CHECK(mpx_process_daemon(a) == 1);
  mpx_process_destroy(a); /* never started: freed */
  mpx_process_destroy(b);
}

static void test_bad_input(void) {
  mpx_process *p;
  int x;
  CHECK_RC(mpx_process_create(NULL, "behave", NULL, 0, NULL), MPX_EINVAL);
  CHECK_RC(mpx_process_create(&p, NULL, NULL, 0, NULL), MPX_EINVAL);
  CHECK_RC(mpx_process_create(&p, "no_such_task", NULL, 0, NULL), MPX_ENOTASK);
  CHECK_RC(mpx_process_create(&p, "behave", NULL, 3, NULL), MPX_EINVAL);
  CHECK_RC(mpx_process_start(NULL), MPX_EINVAL);
  CHECK_RC(mpx_process_join(NULL, 0), MPX_EINVAL);
  CHECK(mpx_process_is_alive(NULL) == MPX_EINVAL);
  CHECK_RC(mpx_process_kill(NULL), MPX_EINVAL);
  CHECK_RC(mpx_process_pid(NULL, &x), MPX_EINVAL);
  CHECK_RC(mpx_process_exitcode(NULL, &x), MPX_EINVAL);
  CHECK_RC(mpx_process_destroy(NULL), MPX_EINVAL);
  CHECK_OK(mpx_process_create(&p, "behave", "ok", 2, NULL));
  CHECK_RC(mpx_process_pid(p, NULL), MPX_EINVAL);
  CHECK_RC(mpx_process_name(p, NULL), MPX_EINVAL);
  mpx_process_destroy(p);
}

/* The middle process: start a sleeping child (daemon or not) that inherits the write end of a
 * pipe, report its pid, then sleep until killed. */
static int middle(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  int v[3]; /* daemon flag, report fd, keep-alive write fd (inherited by the grandchild) */
  memcpy(v, arg, sizeof v);
  mpx_process *g;
  CHECK_OK(mpx_process_create(&g, "behave", "sleep", 5, "grandchild"));
  CHECK_OK(mpx_process_set_daemon(g, v[0] != 0));
  CHECK_OK(mpx_process_start(g));
  int pid;
  mpx_process_pid(g, &pid);
  CHECK(write(v[1], &pid, sizeof pid) == sizeof pid);
  for (;;) pause();
}
MPX_TASK(middle);

/* 1 if the read end sees EOF (every write end closed: the grandchild is gone) within `secs`. */
static int eof_within(int fd, double secs) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, (int)(secs * 1000)) <= 0) return 0;
  char c;
  return read(fd, &c, 1) == 0;
}

static void test_daemon(bool daemon) {
  int report[2], alive[2];
  CHECK(pipe(report) == 0 && pipe(alive) == 0);
  int v[3] = {daemon, report[1], alive[1]};
  mpx_process *m;
  CHECK_OK(mpx_process_create(&m, "middle", v, sizeof v, NULL));
  CHECK_OK(mpx_process_start(m));
  close(alive[1]);
  close(report[1]);
  int gpid = 0;
  CHECK(read(report[0], &gpid, sizeof gpid) == sizeof gpid && gpid > 0);
  CHECK_OK(mpx_process_kill(m)); /* SIGKILL: no atexit, no cleanup in the middle process */
  CHECK(code_of(m) == -SIGKILL);
  mpx_process_destroy(m);
  if (daemon) {
    CHECK(eof_within(alive[0], 5)); /* the daemon died with its parent */
  } else {
    CHECK(!eof_within(alive[0], 0.2)); /* a non-daemon outlives it */
    CHECK(kill(gpid, SIGKILL) == 0);
    CHECK(eof_within(alive[0], 5));
  }
  close(alive[0]);
  close(report[0]);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  if (NO_FORK) { /* every case here forks */
    printf("%s: skipped (no fork)\n", argv[0]);
    return mpx_finalize();
  }
  test_bad_input();
  test_exitcodes();
  test_lifecycle();
  test_daemon(true);
  test_daemon(false);
  printf("ipc_process_test: ok\n");
  return mpx_finalize();
}
