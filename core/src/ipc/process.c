/* process.c: multiprocessing.Process on fork(); see ipc_process.h for the contract and the fork
 * rule.
 *
 * The handle is heap memory owned by the parent; a mutex makes start, reaping and freeing safe
 * from several threads. Waiting uses a pidfd (poll() becomes readable when the child exits)
 * when the kernel has pidfd_open, else waitpid(WNOHANG) with a short back-off. Signals go
 * through pidfd_send_signal while the child is unreaped, so a recycled pid is never hit. The
 * only global state is the counter that numbers default names (atomic). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpx/ipc_process.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/spawn.h"
#include "task_impl.h"

#define PROC_MAGIC 0x6d707870u /* "mpxp" */

enum { CREATED, STARTED, ENDED };

struct mpx_process {
  uint32_t magic;
  pthread_mutex_t lock;
  const mpx_task *task;
  void *arg;
  size_t len;
  char *name;
  bool daemon;
  int state;
  pid_t pid;
  int pidfd; /* -1 without pidfd support */
  int exitcode;
};

static atomic_long process_counter; /* default names only; relaxed is enough */

static bool valid(const mpx_process *p) { return p && p->magic == PROC_MAGIC; }

int mpx_process_create(mpx_process **out, const char *task, const void *arg, size_t len,
                       const char *name) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!task || (!arg && len)) return MPX_EINVAL;
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  mpx_process *p = calloc(1, sizeof *p);
  if (!p) return MPX_ENOMEM;
  p->arg = len ? malloc(len) : NULL;
  if (name)
    p->name = strdup(name);
  else
    p->name = mpx__strdupf(
        "Process-%ld", atomic_fetch_add_explicit(&process_counter, 1, memory_order_relaxed) + 1);
  if ((len && !p->arg) || !p->name) {
    free(p->arg);
    free(p->name);
    free(p);
    return MPX_ENOMEM;
  }
  if (len) memcpy(p->arg, arg, len);
  p->len = len;
  p->task = t;
  p->pidfd = -1;
  pthread_mutex_init(&p->lock, NULL);
  p->magic = PROC_MAGIC;
  *out = p;
  return MPX_OK;
}

int mpx_process_set_daemon(mpx_process *p, bool daemon) {
  if (!valid(p)) return MPX_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = p->state == CREATED ? MPX_OK : MPX_ESTATE;
  if (!rc) p->daemon = daemon;
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int mpx_process_daemon(const mpx_process *p) { return valid(p) ? (int)p->daemon : MPX_EINVAL; }

/* The child: run the task once and leave without running the parent's atexit handlers. */
static void __attribute__((noreturn)) child_main(mpx_process *p) {
  mpx_buf out;
  mpx__buf_init(&out, NULL, 0, 0);
  char *msg = NULL;
  int rc = mpx__task_run(p->task, -1, p->arg, p->len, &out, &msg);
  if (rc)
    mpx__log(MPX_LOG_ERROR, "process '%s' (pid %d): %s", p->name, (int)getpid(),
             msg ? msg : mpx_strerror(rc));
  fflush(stdout);
  fflush(stderr);
  _exit(rc ? 1 : 0);
}

int mpx_process_start(mpx_process *p) {
  if (!valid(p)) return MPX_EINVAL;
  pthread_mutex_lock(&p->lock);
  if (p->state != CREATED) {
    pthread_mutex_unlock(&p->lock);
    return MPX_ESTATE;
  }
  fflush(stdout); /* or the child would print the parent's buffered output again */
  fflush(stderr);
  /* a daemon dies with us; one whose parent died before prctl took hold exits 128 + SIGKILL */
  pid_t pid = mpx__spawn(p->daemon ? MPX__SPAWN_DIE_WITH_PARENT : 0, 128 + SIGKILL);
  if (pid == 0) child_main(p);
  if (pid < 0) {
    pthread_mutex_unlock(&p->lock);
    return MPX_ESYS;
  }
  p->pid = pid;
  p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (p->pidfd < 0) p->pidfd = -1;
  p->state = STARTED;
  pthread_mutex_unlock(&p->lock);
  return MPX_OK;
}

/* With the lock held: reap the child if it has ended. */
static void try_reap(mpx_process *p) {
  if (p->state != STARTED) return;
  int st;
  pid_t r;
  do r = waitpid(p->pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return;
  if (r == p->pid) {
    if (WIFEXITED(st))
      p->exitcode = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
      p->exitcode = -WTERMSIG(st);
    else
      return; /* stopped or continued: still there */
  } else {
    p->exitcode = 255; /* reaped by someone else: the status is lost */
  }
  p->state = ENDED;
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
}

int mpx_process_join(mpx_process *p, double timeout) {
  if (!valid(p)) return MPX_EINVAL;
  double end = (isnan(timeout) || timeout < 0) ? -1 : mpx__now() + timeout;
  double nap = 0.0005;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    if (p->state == CREATED) {
      pthread_mutex_unlock(&p->lock);
      return MPX_ESTATE;
    }
    try_reap(p);
    int fd = p->pidfd;
    int state = p->state;
    pthread_mutex_unlock(&p->lock);
    if (state == ENDED) return MPX_OK;
    double left = end < 0 ? -1 : end - mpx__now();
    if (end >= 0 && left <= 0) return MPX_ETIMEDOUT;
    if (fd >= 0) {
      /* The fd stays open while the state is STARTED, and only try_reap closes it, under the
       * lock after the child ended: at worst poll sees a closed fd and we loop. */
      struct pollfd pf = {.fd = fd, .events = POLLIN};
      int ms = left < 0 ? 100 : (int)ceil((left < 0.1 ? left : 0.1) * 1000);
      poll(&pf, 1, ms);
    } else {
      double s = left < 0 || nap < left ? nap : left;
      struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
      nanosleep(&ts, NULL);
      if (nap < 0.02) nap *= 2;
    }
  }
}

int mpx_process_is_alive(mpx_process *p) {
  if (!valid(p)) return MPX_EINVAL;
  pthread_mutex_lock(&p->lock);
  try_reap(p);
  int alive = p->state == STARTED;
  pthread_mutex_unlock(&p->lock);
  return alive;
}

static int send_signal(mpx_process *p, int sig) {
  if (!valid(p)) return MPX_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = MPX_OK;
  if (p->state == CREATED)
    rc = MPX_ESTATE;
  else if (p->state == STARTED) { /* unreaped: the pid cannot have been reused yet */
    long r =
        p->pidfd >= 0 ? syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) : kill(p->pid, sig);
    if (r != 0 && errno != ESRCH) rc = MPX_ESYS;
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int mpx_process_terminate(mpx_process *p) { return send_signal(p, SIGTERM); }
int mpx_process_kill(mpx_process *p) { return send_signal(p, SIGKILL); }

int mpx_process_pid(const mpx_process *p, int *pid) {
  if (!valid(p) || !pid) return MPX_EINVAL;
  mpx_process *m = (mpx_process *)p; /* the lock is not part of the logical state */
  pthread_mutex_lock(&m->lock);
  int rc = p->state == CREATED ? MPX_ESTATE : MPX_OK;
  if (!rc) *pid = (int)p->pid;
  pthread_mutex_unlock(&m->lock);
  return rc;
}

int mpx_process_exitcode(mpx_process *p, int *code) {
  if (!valid(p) || !code) return MPX_EINVAL;
  pthread_mutex_lock(&p->lock);
  try_reap(p);
  int rc = p->state == ENDED ? MPX_OK : MPX_ESTATE;
  if (!rc) *code = p->exitcode;
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int mpx_process_name(const mpx_process *p, const char **name) {
  if (!valid(p) || !name) return MPX_EINVAL;
  *name = p->name;
  return MPX_OK;
}

int mpx_process_destroy(mpx_process *p) {
  if (!valid(p)) return MPX_EINVAL;
  pthread_mutex_lock(&p->lock);
  try_reap(p);
  if (p->state == STARTED) {
    pthread_mutex_unlock(&p->lock);
    return MPX_ESTATE;
  }
  p->magic = 0;
  pthread_mutex_unlock(&p->lock);
  pthread_mutex_destroy(&p->lock);
  free(p->arg);
  free(p->name);
  free(p);
  return MPX_OK;
}
