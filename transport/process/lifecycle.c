/* lifecycle.c: the process link's worker processes from fork to reaping: starting them (through
 * the fork server or directly), killing them, reaping them. The link's ops and the rest of its
 * state machine are in process.c, the state both share in process_link.h; process_impl.h has the
 * whole picture.
 *
 * Starting workers. With a fork server (mpx_init ran), the link opens a session with it and asks
 * it for SPAWN; the worker's socket arrives with SPAWNED and its wait status with EXITED.
 * Without mpx_init (no fork server) the link forks workers directly (mpx__spawn) from the thread
 * that starts the executor (and later, for replacements, from the dispatcher thread), reaps them
 * by pid with a pidfd in its poll set, and kills them through the pidfd. This is the
 * fork-from-a-threaded-process trap: a worker may deadlock if the task or the initializer takes a
 * lock that another parent thread held at fork time (stdio and malloc are safe with glibc). Call
 * mpx_init. Either way a new worker is sent its own new progress page (a memfd mapped over the
 * slot's fixed address here, see new_page), then its hello (whose max_message
 * is max_payload's limit lowered to cfg->max_worker_memory: the worker's replies stay under it),
 * and announces itself with READY. start waits for the fork server to report every worker.
 *
 * Ending and reaping. Only the reaper signals a worker (the fork server on FS_KILL, or this link
 * through the pidfd of its unreaped child), so a recycled pid is never hit. A worker that closed
 * its socket but lives on is killed CLOSE_GRACE seconds later.
 *
 * Failures to start a worker say what ran out (mpx__pt_ran_out: file descriptors, memory,
 * processes), from the errno of a failed socketpair or fork here, the fork server's
 * SPAWN_FAILED status, or EMFILE when a SPAWNED's socket could not be received (that process is
 * killed and the slot stays empty). The last such errno is kept in spawn_errno for start's
 * message ("could not start worker 3 of 8: out of file descriptors (EMFILE: ...)"); a
 * replacement's failure is logged (mpx__log).
 *
 * Thread-safety: as process.c: the dispatcher thread (and the thread starting the executor before
 * it exists); no locks. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errmsg.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/spawn.h"
#include "os/seg.h"
#include "process_link.h"

const char *mpx__pt_ran_out(int e) {
  switch (e) {
  case EMFILE: return "out of file descriptors (EMFILE: this process's limit, see ulimit -n)";
  case ENFILE: return "out of file descriptors (ENFILE: the system's limit)";
  case ENOMEM: return "out of memory (ENOMEM)";
  case EAGAIN: return "out of processes or memory (EAGAIN)";
  default: return strerror(e);
  }
}

void mpx__pt_kill_worker(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  if (w->exited || w->kill_sent) return;
  if (w->state == W_SPAWNING) {
    w->kill_pending = true;
    return;
  }
  if (w->pid <= 0) return;
  w->kill_sent = true;
  if (tp->fs >= 0) {
    fs_msg m = {.op = FS_KILL, .index = i, .pid = w->pid, .status = SIGKILL};
    mpx__fs_send(tp->fs, &m, -1);
  } else if (w->pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
  } else {
    kill(w->pid, SIGKILL); /* our unreaped child: the pid cannot have been reused */
  }
}

/* A fresh progress page for worker i: a new 0600 memfd mapped over the fixed address of slot i
 * (MAP_FIXED replaces the previous worker's page in one step, so a future that still points into
 * the slot always finds mapped memory; its claim CAS fails there, since a new page holds no call
 * id). MADV_DONTFORK keeps the page out of children forked from this process (direct-fork mode),
 * so a worker maps its own page only. Returns the memfd (to send, then close) or -1. Called only
 * once the previous worker's loss was handled by the dispatcher (process.c: take_lost defers the
 * respawn to the next poll), since the dispatcher reads the old page then. */
static int new_page(proc_tp *tp, int i) {
  int fd = memfd_create("mpx-progress", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (fchmod(fd, 0600) || ftruncate(fd, (off_t)tp->page_sz) ||
      mmap(mpx__pt_page(tp, i), tp->page_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
           0) == MAP_FAILED) {
    close(fd);
    return -1;
  }
  (void)madvise(mpx__pt_page(tp, i), tp->page_sz, MADV_DONTFORK);
  return fd;
}

/* The message before the hello, carrying the worker's new progress page. The socket is new and
 * empty, so it is taken at once. */
static int send_progress(proc_tp *tp, int i) {
  int fd = new_page(tp, i);
  if (fd < 0) return MPX_ESYS;
  fs_msg m = {.op = FS_PROGRESS, .index = i};
  int rc = mpx__fs_send(tp->w[i].ch.fd, &m, fd) ? MPX_ESYS : MPX_OK;
  close(fd);
  tp->w[i].has_page = true;
  return rc;
}

/* After the page: the worker's end of a new broker socket (os/share.h), over which its tasks
 * get the shared objects made here after mpx_init. Without one (out of file descriptors) the
 * message goes without an fd: the worker runs, and only a task using such an object fails,
 * saying so. */
static int send_share(proc_tp *tp, int i) {
  int sv[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0) {
    int fl = fcntl(sv[0], F_GETFL);
    fcntl(sv[0], F_SETFL, fl | O_NONBLOCK);
  }
  fs_msg m = {.op = FS_SHARE, .index = i};
  int rc = mpx__fs_send(tp->w[i].ch.fd, &m, sv[1]) ? MPX_ESYS : MPX_OK;
  if (sv[1] >= 0) close(sv[1]);
  if (rc && sv[0] >= 0) close(sv[0]);
  tp->w[i].share_fd = rc ? -1 : sv[0];
  return rc;
}

/* The hello of worker i (replacements): index and placement. */
static void hello_for(proc_tp *tp, int i) {
  memcpy(&((hello *)(void *)tp->hello)->place, &tp->cfg->places[i], sizeof(mpx_placement));
  ((hello *)(void *)tp->hello)->index = i;
}

/* The worker's process exists and `fd` is its socket: send it the progress memfd and the hello. */
static void attach(proc_tp *tp, int i, pid_t pid, int fd) {
  pworker *w = &tp->w[i];
  w->pid = pid;
  w->state = W_LIVE;
  w->exited = w->retiring = w->kill_sent = w->readable = false;
  w->why[0] = '\0';
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  mpx__chan_init(&w->ch, fd, tp->lim.max_message);
  mpx__chan_accept_fds(&w->ch); /* result segments (the data plane) */
  bool kill_now = w->kill_pending;
  w->kill_pending = false;
  if (tp->stopping || kill_now) {
    mpx__pt_close_worker(tp, i, NULL);
    mpx__pt_kill_worker(tp, i);
    return;
  }
  errno = 0;
  if (send_progress(tp, i) || send_share(tp, i)) {
    /* say what ran out: its page needs a memfd (a file descriptor) and memory */
    char why[112];
    int e = errno;
    if (e) snprintf(why, sizeof why, "could not get its progress page: %s", mpx__pt_ran_out(e));
    else snprintf(why, sizeof why, "could not be sent its hello");
    if (e) tp->spawn_errno = e;
    mpx__pt_close_worker(tp, i, why);
    mpx__pt_kill_worker(tp, i);
    return;
  }
  hello_for(tp, i);
  mpx__pt_send_raw(tp, i, tp->hello, tp->hello_len);
}

/* Fork a worker directly (no fork server). */
static int spawn_direct(proc_tp *tp, int i) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    tp->spawn_errno = errno;
    return MPX_ESYS;
  }
  pid_t pid = mpx__spawn(MPX__SPAWN_FLUSH | MPX__SPAWN_DIE_WITH_PARENT, 0);
  if (pid == 0) {
    /* The child of a threaded parent: close what it must not hold, then serve. */
    close(sv[0]);
    close(tp->wake_fd);
    for (int k = 0; k < tp->n; k++) {
      if (tp->w[k].ch.fd >= 0) close(tp->w[k].ch.fd);
      if (tp->w[k].pidfd >= 0) close(tp->w[k].pidfd);
      if (tp->w[k].share_fd >= 0) close(tp->w[k].share_fd);
    }
    mpx__worker_main(sv[1]);
  }
  if (pid < 0) tp->spawn_errno = errno; /* before close() can change it */
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return MPX_ESYS;
  }
  pworker *w = &tp->w[i];
  w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* unreaped child: the pid is ours */
  attach(tp, i, pid, sv[0]);
  return MPX_OK;
}

int mpx__pt_spawn(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  w->pid = 0;
  w->exited = false;
  w->kill_pending = w->kill_sent = false;
  w->has_page = w->respawn = false;
  w->frame_since = 0;
  if (tp->fs < 0) return spawn_direct(tp, i);
  fs_msg m = {.op = FS_SPAWN, .index = i};
  if (mpx__fs_send(tp->fs, &m, -1)) return MPX_ESYS;
  w->state = W_SPAWNING;
  return MPX_OK;
}

void mpx__pt_read_server(proc_tp *tp) {
  for (;;) {
    fs_msg m;
    int fd;
    int r = mpx__fs_recv(tp->fs, &m, &fd, MSG_DONTWAIT);
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) { /* the fork server died: every worker died with it */
      close(tp->fs);
      tp->fs = -1;
      for (int i = 0; i < tp->n; i++) {
        pworker *w = &tp->w[i];
        if (w->state == W_SPAWNING) w->state = W_CLOSED;
        if (w->state != W_NONE && !w->exited) {
          w->exited = true;
          w->status = SIGKILL; /* as if killed: its reaper is gone */
          if (!w->why[0]) snprintf(w->why, sizeof w->why, "lost its fork server");
        }
      }
      return;
    }
    if (m.index < 0 || m.index >= tp->n) {
      if (fd >= 0) close(fd);
      continue;
    }
    pworker *w = &tp->w[m.index];
    if (m.op == FS_SPAWNED && fd >= 0 && w->state == W_SPAWNING) {
      attach(tp, m.index, m.pid, fd);
      continue;
    }
    if (m.op == FS_SPAWNED && fd < 0 && w->state == W_SPAWNING) {
      /* its socket could not be received (out of fds): end it, the slot stays empty */
      fs_msg k = {.op = FS_KILL, .index = m.index, .pid = m.pid, .status = SIGKILL};
      mpx__fs_send(tp->fs, &k, -1);
      tp->spawn_errno = EMFILE;
      mpx__log(MPX_LOG_WARN, "could not start worker %d: %s", m.index, mpx__pt_ran_out(EMFILE));
      w->state = W_NONE;
      continue;
    }
    if (fd >= 0) close(fd);
    if (m.op == FS_SPAWN_FAILED && w->state == W_SPAWNING) {
      mpx__log(MPX_LOG_WARN, "the fork server could not start worker %d: %s", m.index,
               mpx__pt_ran_out(m.status));
      tp->spawn_errno = m.status;
      w->state = W_NONE;
    } else if (m.op == FS_EXITED && m.pid == w->pid && w->state >= W_LIVE) {
      w->exited = true;
      w->status = m.status;
      if (w->state == W_LIVE) w->readable = true; /* read what it wrote, then close */
    }
  }
}

void mpx__pt_reap_direct(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  int st;
  pid_t r = waitpid(w->pid, &st, WNOHANG);
  if (r < 0 && errno == ECHILD)
    st = -1; /* the program ignores SIGCHLD: reaped, status unknown */
  else if (r != w->pid)
    return;
  close(w->pidfd);
  w->pidfd = -1;
  w->exited = true;
  w->status = st;
  if (w->state == W_LIVE) w->readable = true;
}

int mpx__pt_close_deadlines(proc_tp *tp, int ms) {
  double now = mpx__now();
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state != W_CLOSED || w->exited) continue;
    if (now >= w->kill_at) {
      mpx__pt_kill_worker(tp, i);
      /* direct mode without a pidfd: wait for it here (it was killed) */
      if (tp->fs < 0 && w->pidfd < 0 && w->pid > 0 && waitpid(w->pid, &w->status, 0) == w->pid)
        w->exited = true;
      if (tp->fs < 0 && w->pidfd < 0 && !w->exited) w->exited = true, w->status = SIGKILL;
      continue;
    }
    int left = (int)((w->kill_at - now) * 1000) + 1;
    if (ms < 0 || left < ms) ms = left;
  }
  return ms;
}

/* ---- start -------------------------------------------------------------------------------- */

int mpx__pt_make_hello(proc_tp *tp) {
  const mpx__config *cfg = tp->cfg;
  size_t len = sizeof(hello) + cfg->initargs_len;
  tp->hello = malloc(len);
  if (!tp->hello) return MPX_ENOMEM;
  hello h;
  memset(&h, 0, sizeof h);
  h.magic = HELLO_MAGIC;
  h.max_tasks = cfg->max_tasks_per_worker;
  h.max_payload = cfg->max_payload;
  h.max_message = tp->lim.max_message;
  h.has_init = cfg->initializer != NULL;
  h.init_id = cfg->initializer ? cfg->initializer->id : 0;
  h.initargs_len = cfg->initargs_len;
  h.seg_min = MPX__SEG_RESULT_MIN;
  memcpy(tp->hello, &h, sizeof h);
  if (cfg->initargs_len) memcpy(tp->hello + sizeof h, cfg->initargs, cfg->initargs_len);
  tp->hello_len = len;
  return MPX_OK;
}

/* Address space for the progress pages: worker i's page is mapped at a fixed place (new_page)
 * and stays mapped until destroy, so a future's claim pointer never dangles while the link
 * lives. */
int mpx__pt_make_pages(proc_tp *tp) {
  /* Each page at a multiple of MPX__PROGRESS_ALIGN (progress.h: a claim word finds its page):
   * reserve one alignment more and trim the ends. */
  tp->page_sz = MPX__PROGRESS_ALIGN;
  size_t len = (size_t)tp->n * tp->page_sz;
  uint8_t *p = mmap(NULL, len + MPX__PROGRESS_ALIGN, PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return MPX_ENOMEM;
  uint8_t *a = (uint8_t *)(((uintptr_t)p + MPX__PROGRESS_ALIGN - 1) &
                           ~(uintptr_t)(MPX__PROGRESS_ALIGN - 1));
  if (a > p) munmap(p, (size_t)(a - p));
  if (a + len < p + len + MPX__PROGRESS_ALIGN)
    munmap(a + len, (size_t)(p + len + MPX__PROGRESS_ALIGN - (a + len)));
  (void)madvise(a, len, MADV_DONTFORK);
  tp->pages = a;
  return MPX_OK;
}

int mpx__pt_start_workers(proc_tp *tp) {
  tp->fs = mpx__fs_session();
  if (tp->fs < 0 && errno) {
    mpx__set_errmsg("could not open a session with the fork server: %s", mpx__pt_ran_out(errno));
    return MPX_ESYS;
  }
  int rc = MPX_OK, failed = -1;
  const char *why = NULL;
  for (int i = 0; i < tp->n && !rc; i++) {
    failed = i;
    if ((rc = mpx__pt_spawn(tp, i)) && !tp->spawn_errno) tp->spawn_errno = errno;
    while (!rc && tp->w[i].state == W_SPAWNING) {
      struct pollfd p = {.fd = tp->fs, .events = POLLIN};
      if (poll(&p, 1, 10000) <= 0)
        rc = MPX_ESYS, why = "the fork server did not answer within 10 s";
      else
        mpx__pt_read_server(tp);
      if (tp->fs < 0) rc = MPX_ESYS, why = "the fork server is gone";
    }
    if (!rc && tp->w[i].state == W_NONE) rc = MPX_ESYS;
  }
  if (rc)
    mpx__set_errmsg("could not start worker %d of %d: %s", failed, tp->n,
                    why               ? why
                    : tp->spawn_errno ? mpx__pt_ran_out(tp->spawn_errno)
                                      : "unknown reason");
  return rc;
}
