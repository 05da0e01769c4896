/* demo_process: a Process's life, as multiprocessing.Process: name, pid, is_alive, join,
 * exitcode, terminate, kill, daemon. Each step prints what mpx answered beside what Python's
 * Process would say (exit code 0 after success, 1 after a failed task, n after exit(n), -N after
 * signal N), and the demo exits 0 only when every answer was the expected one.
 *
 * A process runs a registered task in a forked child (mpx_process_create names it, start
 * forks); its result bytes are dropped, so a child that must say something writes into shared
 * memory made before start (here an mpx Value). A daemon process is ended with its parent, even
 * a parent killed by SIGKILL: the last step starts a child that starts a daemon and returns, and
 * watches the daemon die with it.
 *   demo_process [--quick]      (there is no table of backends: this is one process's life) */
#include <signal.h>
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_process [--quick]\n"
    "  Walks an mpx_process through its life (create, start, is_alive, join, exitcode,\n"
    "  terminate, kill, daemon) and checks each answer (well under a second; --quick is\n"
    "  accepted as by the other demos).\n";

static bool all_ok = true;

static void nap(double s) {
  struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&t, &t) == -1 && errno == EINTR) {
  }
}

/* ---- the tasks the children run ---- */
static int sleeper(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)out;
  double s = 0; /* seconds; no argument: do not nap */
  if (len == sizeof s) memcpy(&s, arg, sizeof s);
  nap(s);
  return 0;
}
MPX_TASK(sleeper)

/* Waits (a minute at most) for the parent to set the Event: the child is surely alive until
 * then, however slow a loaded machine makes the parent's checks. */
static int waiter(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  mpx_event *e;
  if (len != sizeof e) return mpx_task_fail(ctx, MPX_EINVAL, "want an event");
  memcpy(&e, arg, sizeof e);
  return mpx_event_wait(e, 60);
}
MPX_TASK(waiter)

static int failer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_EINVAL, "this task fails on purpose (exit code 1)");
}
MPX_TASK(failer)

static int exiter(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  int code;
  if (len != sizeof code) return mpx_task_fail(ctx, MPX_EINVAL, "want an exit code");
  memcpy(&code, arg, sizeof code);
  exit(code);
}
MPX_TASK(exiter)

/* Starts a daemon that would sleep a minute, writes its pid into the shared Value, and returns:
 * this process ends, and the daemon with it. */
static int daemon_parent(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  mpx_value *v;
  if (len != sizeof v) return mpx_task_fail(ctx, MPX_EINVAL, "want a Value");
  memcpy(&v, arg, sizeof v);
  mpx_process *d;
  double minute = 60;
  int rc = mpx_process_create(&d, "sleeper", &minute, sizeof minute, "daemon-child");
  if (!rc) rc = mpx_process_set_daemon(d, true);
  if (!rc) rc = mpx_process_start(d);
  int pid = 0;
  if (!rc) rc = mpx_process_pid(d, &pid);
  if (!rc) rc = mpx_value_set(v, &pid, sizeof pid);
  return rc ? mpx_task_fail(ctx, rc, "daemon: %s", mpx_errmsg()) : 0; /* d is not joined */
}
MPX_TASK(daemon_parent)

/* ---- printing a step ---- */
static void show(const char *what, const char *got, const char *want) {
  bool ok = !strcmp(got, want);
  all_ok &= ok;
  printf("%-44s %-16s %-16s %s\n", what, got, want, ok ? "ok" : "WRONG");
}
static void show_rc(const char *what, int rc, int want) { /* a call's return code */
  show(what, rc ? mpx_err_name(rc) : "0", want ? mpx_err_name(want) : "0");
}
static void show_int(const char *what, long got, long want) {
  char g[32], w[32];
  snprintf(g, sizeof g, "%ld", got);
  snprintf(w, sizeof w, "%ld", want);
  show(what, g, w);
}

/* Start a process running `task`, wait for its end, show its exit code. */
static void exit_code_of(const char *what, const char *task, const void *arg, size_t len,
                         int want) {
  mpx_process *p;
  int code = 999;
  if (mpx_process_create(&p, task, arg, len, NULL) == 0) {
    if (mpx_process_start(p) == 0 && mpx_process_join(p, MPX_FOREVER) == 0)
      mpx_process_exitcode(p, &code);
    mpx_process_destroy(p);
  }
  show_int(what, code, want);
}

/* Is the process `pid` gone (or a zombie nobody reaped)? */
static bool gone(int pid) {
  char path[64], stat[256];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return true;
  size_t n = fread(stat, 1, sizeof stat - 1, f);
  fclose(f);
  stat[n] = '\0';
  const char *paren = strrchr(stat, ')');
  return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

int main(int argc, char **argv) {
  demo_line_buffered();
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(argv[i], "--quick")) {
    } else
      return demo_bad_usage("demo_process", usage, "unknown option", argv[i]);
  }
  int init = demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;
  printf("%-44s %-16s %-16s %s\n", "step", "mpx says", "expected", "check");

  mpx_process *p;
  int pid = 0, code = 0;
  const char *name = "";
  mpx_event *go; /* made before start: the child waits for it */
  if (mpx_event_create(&go)) return 1;
  show_rc("create(\"waiter\", name \"napper\")",
          mpx_process_create(&p, "waiter", &go, sizeof go, "napper"), 0);
  mpx_process_name(p, &name);
  show("name", name, "napper");
  show_int("daemon (the default)", mpx_process_daemon(p), 0);
  show_int("is_alive before start", mpx_process_is_alive(p), 0);
  show_rc("pid before start", mpx_process_pid(p, &pid), MPX_ESTATE);
  show_rc("exitcode before start", mpx_process_exitcode(p, &code), MPX_ESTATE);
  show_rc("start", mpx_process_start(p), 0);
  mpx_process_pid(p, &pid);
  printf("%-44s %-16d (a child of %d)\n", "pid", pid, (int)getpid());
  show_int("pid is a new process", pid > 0 && pid != getpid(), 1);
  show_int("is_alive while it waits", mpx_process_is_alive(p), 1);
  show_rc("exitcode while it runs", mpx_process_exitcode(p, &code), MPX_ESTATE);
  show_rc("join(timeout 0.05 s) while it waits", mpx_process_join(p, 0.05), MPX_ETIMEDOUT);
  show_rc("destroy while it runs", mpx_process_destroy(p), MPX_ESTATE);
  show_rc("set_daemon after start", mpx_process_set_daemon(p, true), MPX_ESTATE);
  mpx_event_set(go); /* now it may end */
  show_rc("join() once it may end", mpx_process_join(p, MPX_FOREVER), 0);
  show_int("is_alive after join", mpx_process_is_alive(p), 0);
  code = 999;
  mpx_process_exitcode(p, &code);
  show_int("exitcode after success", code, 0);
  show_rc("destroy", mpx_process_destroy(p), 0);
  mpx_event_destroy(go);

  mpx_process_create(&p, "sleeper", NULL, 0, NULL);
  mpx_process_name(p, &name);
  show_int("a default name is Process-<n>", !strncmp(name, "Process-", 8), 1);
  mpx_process_destroy(p);

  double long_nap = 60;
  static const struct {
    const char *what;
    int (*stop)(mpx_process *);
    int sig;
  } stops[] = {{"exitcode after terminate (-SIGTERM)", mpx_process_terminate, SIGTERM},
               {"exitcode after kill (-SIGKILL)", mpx_process_kill, SIGKILL}};
  for (int i = 0; i < 2; i++) {
    code = 999;
    if (mpx_process_create(&p, "sleeper", &long_nap, sizeof long_nap, NULL) == 0) {
      if (mpx_process_start(p) == 0 && stops[i].stop(p) == 0 && mpx_process_join(p, 10) == 0)
        mpx_process_exitcode(p, &code);
      mpx_process_kill(p); /* if terminate was not enough, do not leave it behind */
      mpx_process_join(p, MPX_FOREVER);
      mpx_process_destroy(p);
    }
    show_int(stops[i].what, code, -stops[i].sig);
  }
  exit_code_of("exitcode after a failed task", "failer", NULL, 0, 1);
  int three = 3;
  exit_code_of("exitcode after exit(3)", "exiter", &three, sizeof three, 3);

  /* daemon: the child of a child that has ended is ended with it */
  mpx_value *v;
  int zero = 0, dpid = 0;
  mpx_value_create(&v, sizeof(int), &zero, true);
  exit_code_of("a parent starts a daemon, returns", "daemon_parent", &v, sizeof v, 0);
  mpx_value_get(v, &dpid, sizeof dpid);
  show_int("the daemon had a pid", dpid > 0, 1);
  double t0 = demo_now();
  while (dpid > 0 && !gone(dpid) && demo_now() - t0 < 5) nap(0.01);
  show_int("the daemon ended with its parent", dpid > 0 && gone(dpid), 1);
  if (dpid > 0 && !gone(dpid)) kill(dpid, SIGKILL);
  mpx_value_destroy(v);

  printf("%s\n", all_ok ? "every answer as expected" : "SOME ANSWERS WRONG");
  int rc = mpx_finalize();
  return all_ok && rc == 0 ? 0 : 1;
}
