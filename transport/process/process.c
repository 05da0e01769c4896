/* process.c: the process transport's state machine: the ops table the dispatcher
 * (core/src/dispatch.c) drives over forked worker processes. The fork server is forkserver.c, the
 * worker process worker.c; process_impl.h has the whole picture and the progress words.
 *
 * Starting workers. With a fork server (mpx_init ran), the transport opens a session with it and
 * asks it for SPAWN; the worker's socket arrives with SPAWNED and its wait status with EXITED.
 * Without mpx_init (no fork server) the transport forks workers directly (mpx__spawn) from the
 * thread that starts the executor (and later, for replacements, from the dispatcher thread), reaps
 * them by pid with a pidfd in its poll set, and kills them through the pidfd. This is the
 * fork-from-a-threaded-process trap: a worker may deadlock if the task or the initializer takes a
 * lock that another parent thread held at fork time (stdio and malloc are safe with glibc). Call
 * mpx_init. Either way a new worker is sent the progress memfd, then its hello, and announces
 * itself with READY.
 *
 * Losses. A worker is lost when its socket reaches EOF or breaks (a truncated, oversized or
 * unreadable frame: the transport kills it) or when its exit status arrives. The transport reads
 * everything a dead worker wrote before it reports MPX__EV_WORKER_LOST, so results and READY
 * always come before the loss; it reports once it has both the closed socket and the wait status
 * (killing a worker that closed its socket but lives on), with a detail such as "pid 1234 was
 * killed by signal 9 (Killed)" and what the worker's progress word held (the task it was running).
 * It then starts a replacement, unless stopping or the worker was killed with replace = false;
 * the replacement announces itself with READY.
 *
 * Flow control. send never blocks: what the socket does not take at once is copied to the
 * worker's out-queue and flushed when poll sees POLLOUT; so the dispatcher can never deadlock with
 * a worker that is itself blocked writing a large result. Every frame length read is checked
 * against the limits (mpx__limits_default(cfg->max_payload)) before a byte is allocated.
 *
 * Thread-safety: the ops are called by the dispatcher thread only, except wake (any thread; an
 * eventfd write). The transport's state is the dispatcher's alone; its fork-server session is its
 * own (the server's main socket, shared by every transport, is locked in forkserver.c). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../transports.h"
#include "codec.h"
#include "future_impl.h"
#include "os/chan.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/spawn.h"
#include "process_impl.h"
#include "task_impl.h"
#include "link.h"

/* Seconds stop(wait) gives workers to exit after SHUTDOWN before it kills them. */
#define STOP_GRACE 3.0
/* Seconds a worker whose socket closed may live on before it is killed. */
#define CLOSE_GRACE 0.5
/* How long an idle side looks at its socket (yielding the CPU in between) before it sleeps in
 * poll: a reply to a small batch is often a few microseconds away and sleeping costs two context
 * switches. Only when the machine has CPUs to spare (more than workers + 2): measured on 2 CPUs,
 * spinning workers and dispatcher keep the woken submitter off the CPU and round trips go from
 * 14 us to 15-90 us. */
#define SPIN_NS 20000

enum wstate {
  W_NONE,     /* no process (not started, or gone and not replaced) */
  W_SPAWNING, /* asked the fork server; no socket yet */
  W_LIVE,     /* socket open */
  W_CLOSED,   /* socket closed; waiting for the exit status */
};

typedef struct oframe {
  struct oframe *next;
  size_t len, sent;
  uint8_t data[];
} oframe;

typedef struct pworker {
  enum wstate state;
  pid_t pid;
  int pidfd;    /* direct-fork mode: -1 once reaped */
  mpx__chan ch; /* fd -1 unless LIVE */
  oframe *oq, *oq_tail;
  bool replace;  /* start a replacement when it is lost */
  bool readable; /* poll saw input: read before polling again */
  bool exited;   /* wait status known */
  int status;
  bool retiring; /* sent the retire mark */
  bool kill_sent;
  bool kill_pending; /* killed while SPAWNING: kill once the pid is known */
  double kill_at;    /* CLOSED without a status: kill at this time */
  char why[112];     /* set when the transport broke the connection */
} pworker;

typedef struct proc_tp {
  const mpx__config *cfg;
  mpx__limits lim;
  int n;
  pworker *w;
  int wake_fd;
  int fs; /* fork-server session, -1: direct-fork mode */
  bool stopping;
  int rr; /* where the next scan for input starts */
  struct pollfd *pfd;
  int *pfd_w; /* pfd index -> worker (or -1 wake, -2 fork server) */
  int *pfd_kind;
  uint8_t *hello;
  size_t hello_len;
  long spin_ns;               /* 0 when CPUs are scarce */
  int progress_fd;            /* memfd shared with the workers, -1: none */
  _Atomic uint64_t *progress; /* its mapping: PROGRESS_WORDS per worker */
} proc_tp;

static void oq_free(pworker *w) {
  while (w->oq) {
    oframe *f = w->oq;
    w->oq = f->next;
    free(f);
  }
  w->oq_tail = NULL;
}

/* Close the socket of a LIVE worker: it is CLOSED until its exit status arrives. */
static void close_worker(proc_tp *tp, int i, const char *why);

static void kill_worker(proc_tp *tp, int i) {
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

static void close_worker(proc_tp *tp, int i, const char *why) {
  pworker *w = &tp->w[i];
  if (w->state != W_LIVE) return;
  if (why && !w->why[0]) snprintf(w->why, sizeof w->why, "%s", why);
  mpx__chan_close(&w->ch);
  oq_free(w);
  w->readable = false;
  w->state = W_CLOSED;
  w->kill_at = mpx__now() + CLOSE_GRACE;
  if (why) kill_worker(tp, i); /* it broke the protocol: end it now */
}

/* The worker's process exists and `fd` is its socket: send it the hello. */
static int send_raw(proc_tp *tp, int i, const uint8_t *data, size_t len);
static void hello_for(proc_tp *tp, int i);

/* The message before the hello, carrying the progress memfd when there is one. The socket is new
 * and empty, so it is taken at once. */
static int send_progress(proc_tp *tp, int i) {
  atomic_store_explicit(&tp->progress[(size_t)i * PROGRESS_WORDS], 0, memory_order_relaxed);
  fs_msg m = {.op = FS_PROGRESS, .index = i};
  return mpx__fs_send(tp->w[i].ch.fd, &m, tp->progress_fd) ? MPX_ESYS : MPX_OK;
}

static void attach(proc_tp *tp, int i, pid_t pid, int fd) {
  pworker *w = &tp->w[i];
  w->pid = pid;
  w->state = W_LIVE;
  w->exited = w->retiring = w->kill_sent = w->readable = false;
  w->why[0] = '\0';
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  mpx__chan_init(&w->ch, fd, tp->lim.max_message);
  bool kill_now = w->kill_pending;
  w->kill_pending = false;
  if (tp->stopping || kill_now) {
    close_worker(tp, i, NULL);
    kill_worker(tp, i);
    return;
  }
  if (send_progress(tp, i)) {
    close_worker(tp, i, "could not be sent its hello");
    kill_worker(tp, i);
    return;
  }
  hello_for(tp, i);
  send_raw(tp, i, tp->hello, tp->hello_len);
}

/* Fork a worker directly (no fork server). */
static int spawn_direct(proc_tp *tp, int i) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return MPX_ESYS;
  pid_t pid = mpx__spawn(MPX__SPAWN_FLUSH | MPX__SPAWN_DIE_WITH_PARENT, 0);
  if (pid == 0) {
    /* The child of a threaded parent: close what it must not hold, then serve. */
    close(sv[0]);
    close(tp->wake_fd);
    if (tp->progress_fd >= 0) close(tp->progress_fd); /* it comes again over the socket */
    for (int k = 0; k < tp->n; k++) {
      if (tp->w[k].ch.fd >= 0) close(tp->w[k].ch.fd);
      if (tp->w[k].pidfd >= 0) close(tp->w[k].pidfd);
    }
    mpx__worker_main(sv[1]);
  }
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

static int spawn(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  w->pid = 0;
  w->exited = false;
  w->kill_pending = w->kill_sent = false;
  if (tp->fs < 0) return spawn_direct(tp, i);
  fs_msg m = {.op = FS_SPAWN, .index = i};
  if (mpx__fs_send(tp->fs, &m, -1)) return MPX_ESYS;
  w->state = W_SPAWNING;
  return MPX_OK;
}

/* Queue or write one frame. */
static int send_raw(proc_tp *tp, int i, const uint8_t *data, size_t len) {
  pworker *w = &tp->w[i];
  if (w->state != W_LIVE) return MPX_EWORKER_LOST;
  size_t sent = 0;
  if (!w->oq) {
    struct iovec v = {.iov_base = (void *)data, .iov_len = len};
    int r = mpx__chan_sendv_nb(&w->ch, &v, 1, &sent);
    if (r == 1) return MPX_OK;
    if (r < 0) {
      if (r == MPX_ETOOBIG) return r;
      close_worker(tp, i, r == MPX_EEOF ? NULL : "could not be written to");
      return MPX_EWORKER_LOST;
    }
  }
  oframe *f = malloc(sizeof *f + len);
  if (!f) {
    close_worker(tp, i, "could not be sent to (out of memory)");
    return MPX_EWORKER_LOST;
  }
  f->next = NULL;
  f->len = len;
  f->sent = sent;
  if (len) memcpy(f->data, data, len);
  if (w->oq_tail)
    w->oq_tail->next = f;
  else
    w->oq = f;
  w->oq_tail = f;
  return MPX_OK;
}

static void flush(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  while (w->state == W_LIVE && w->oq) {
    oframe *f = w->oq;
    struct iovec v = {.iov_base = f->data, .iov_len = f->len};
    int r = mpx__chan_sendv_nb(&w->ch, &v, 1, &f->sent);
    if (r == 0) return;
    if (r < 0) {
      close_worker(tp, i, r == MPX_EEOF ? NULL : "could not be written to");
      return;
    }
    w->oq = f->next;
    if (!w->oq) w->oq_tail = NULL;
    free(f);
  }
}

static int pt_send(mpx__link *self, int worker, const uint8_t *data, size_t len) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  if (len > tp->lim.max_message) return MPX_ETOOBIG;
  return send_raw(tp, worker, data, len);
}

static void pt_wake(mpx__link *self) {
  proc_tp *tp = (proc_tp *)self;
  uint64_t one = 1;
  ssize_t r = write(tp->wake_fd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is already non-zero, a wake is due anyway */
}

static int pt_kill(mpx__link *self, int worker, bool replace) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  pworker *w = &tp->w[worker];
  w->replace = replace;
  if (w->state == W_NONE) return MPX_OK;
  kill_worker(tp, worker);
  return MPX_OK;
}

/* ---- events ---------------------------------------------------------------------------------- */

static void describe(const pworker *w, const mpx__config *cfg, char *buf, size_t n) {
  int st = w->status;
  if (st == -1)
    snprintf(buf, n, "pid %d ended; its status is unknown (the program ignores SIGCHLD)",
             (int)w->pid);
  else if (w->why[0] && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && w->kill_sent)
    snprintf(buf, n, "pid %d %s and was killed", (int)w->pid, w->why);
  else if (WIFSIGNALED(st))
    snprintf(buf, n, "pid %d was killed by signal %d (%s)%s", (int)w->pid, WTERMSIG(st),
             strsignal(WTERMSIG(st)), WCOREDUMP(st) ? ", core dumped" : "");
  else if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && w->retiring)
    snprintf(buf, n, "pid %d retired after %ld tasks", (int)w->pid, cfg->max_tasks_per_worker);
  else if (WIFEXITED(st))
    snprintf(buf, n, "pid %d exited with status %d%s%s", (int)w->pid, WEXITSTATUS(st),
             w->why[0] ? " after it " : "", w->why);
  else
    snprintf(buf, n, "pid %d ended (wait status 0x%x)", (int)w->pid, st);
}

/* A CLOSED worker whose status is known: report it, then replace it. */
static bool take_lost(proc_tp *tp, mpx__event *ev) {
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state != W_CLOSED || !w->exited) continue;
    ev->kind = MPX__EV_WORKER_LOST;
    ev->worker = i;
    describe(w, tp->cfg, ev->detail, sizeof ev->detail);
    /* the process is reaped: nothing writes its progress word any more */
    ev->running_known = tp->progress_fd >= 0;
    ev->running = atomic_exchange_explicit(&tp->progress[(size_t)i * PROGRESS_WORDS], 0,
                                           memory_order_relaxed);
    w->state = W_NONE;
    if (w->pidfd >= 0) close(w->pidfd);
    w->pidfd = -1;
    if (w->replace && !tp->stopping && spawn(tp, i)) {
      /* could not even ask for a replacement: the slot stays empty */
      mpx__log(MPX_LOG_WARN, "could not start a replacement for worker %d", i);
    }
    return true;
  }
  return false;
}

/* Read one frame from worker i if it has one. 1: *ev is a message; 0: nothing now. */
static int read_worker(proc_tp *tp, int i, mpx__event *ev) {
  pworker *w = &tp->w[i];
  mpx__chan_shrink(&w->ch, KEEP_BUF); /* the last frame it returned is consumed by now */
  bool looked = false;
  for (;;) {
    const void *data;
    size_t len;
    int r = mpx__chan_recv_nb(&w->ch, &data, &len);
    if (r == 0 && w->exited && !looked) {
      /* A 0 may come from the read-ahead's note that the fd was empty at its last read; the worker
       * may have written more before it died. Look at the fd itself once. */
      looked = true;
      mpx__chan_forget_drained(&w->ch);
      continue;
    }
    if (r == 1) {
      if (len == 0) { /* the retire mark */
        w->retiring = true;
        continue;
      }
      ev->kind = MPX__EV_MESSAGE;
      ev->worker = i;
      ev->data = data;
      ev->len = len;
      return 1;
    }
    w->readable = false;
    if (r == 0) {
      if (w->exited) close_worker(tp, i, NULL); /* all it wrote is read; someone else holds it */
      return 0;
    }
    char why[96];
    if (r == MPX_EEOF)
      why[0] = '\0';
    else if (r == MPX_ETOOBIG)
      snprintf(why, sizeof why, "sent a frame over the limit of %zu bytes", tp->lim.max_message);
    else if (r == MPX_EPROTO)
      snprintf(why, sizeof why, "sent a truncated frame");
    else
      snprintf(why, sizeof why, "could not be read from (%s)", mpx_strerror(r));
    close_worker(tp, i, why[0] ? why : NULL);
    return 0;
  }
}

/* Handle everything the fork server has said. */
static void read_server(proc_tp *tp) {
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
    if (fd >= 0) close(fd);
    if (m.op == FS_SPAWN_FAILED && w->state == W_SPAWNING) {
      mpx__log(MPX_LOG_WARN, "the fork server could not start worker %d: %s", m.index,
               strerror(m.status));
      w->state = W_NONE;
    } else if (m.op == FS_EXITED && m.pid == w->pid && w->state >= W_LIVE) {
      w->exited = true;
      w->status = m.status;
      if (w->state == W_LIVE) w->readable = true; /* read what it wrote, then close */
    }
  }
}

/* Direct-fork mode: worker i's pidfd is readable. */
static void reap_direct(proc_tp *tp, int i) {
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

/* Kill workers that closed their socket but do not exit; poll timeout until the next such. */
static int close_deadlines(proc_tp *tp, int ms) {
  double now = mpx__now();
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state != W_CLOSED || w->exited) continue;
    if (now >= w->kill_at) {
      kill_worker(tp, i);
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

/* Wait for fds (up to ms) and note what is ready. Returns true if the wake fd fired. */
static bool wait_fds(proc_tp *tp, int ms) {
  int k = 0;
  tp->pfd[k] = (struct pollfd){.fd = tp->wake_fd, .events = POLLIN};
  tp->pfd_w[k++] = -1;
  if (tp->fs >= 0) {
    tp->pfd[k] = (struct pollfd){.fd = tp->fs, .events = POLLIN};
    tp->pfd_w[k++] = -2;
  }
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state == W_LIVE) {
      tp->pfd[k] = (struct pollfd){.fd = w->ch.fd, .events = POLLIN | (w->oq ? POLLOUT : 0)};
      tp->pfd_kind[k] = 0;
      tp->pfd_w[k++] = i;
    }
    if (w->pidfd >= 0 && !w->exited) {
      tp->pfd[k] = (struct pollfd){.fd = w->pidfd, .events = POLLIN};
      tp->pfd_kind[k] = 1;
      tp->pfd_w[k++] = i;
    }
  }
  int r = poll(tp->pfd, (nfds_t)k, ms);
  if (r <= 0) return false;
  bool woke = false;
  for (int j = 0; j < k; j++) {
    short re = tp->pfd[j].revents;
    if (!re) continue;
    int i = tp->pfd_w[j];
    if (i == -1) {
      uint64_t v;
      ssize_t rr = read(tp->wake_fd, &v, sizeof v);
      (void)rr;
      woke = true;
    } else if (i == -2) {
      read_server(tp);
    } else if (tp->pfd_kind[j] == 1) {
      reap_direct(tp, i);
    } else {
      if (re & POLLOUT) flush(tp, i);
      if (re & (POLLIN | POLLHUP | POLLERR)) tp->w[i].readable = true;
    }
  }
  return woke;
}

/* An event without blocking: a loss ready to report, or a frame from a worker known readable. */
static bool take_ready(proc_tp *tp, mpx__event *ev) {
  for (int k = 0; k < tp->n; k++) {
    int i = (tp->rr + k) % tp->n;
    if (tp->w[i].state == W_LIVE && tp->w[i].readable && read_worker(tp, i, ev)) {
      tp->rr = (i + 1) % tp->n;
      return true;
    }
  }
  return take_lost(tp, ev);
}

static int pt_poll(mpx__link *self, mpx__event *ev, int timeout_ms) {
  proc_tp *tp = (proc_tp *)self;
  ev->kind = MPX__EV_NONE;
  if (take_ready(tp, ev)) return MPX_OK;
  /* Nothing known: look without blocking for a short while (a reply to a small batch is usually a
   * few microseconds away, and sleeping in poll costs two context switches), then sleep. */
  double start = mpx__now();
  double spin_end = start + (double)tp->spin_ns * 1e-9;
  double deadline = start + (timeout_ms > 0 ? timeout_ms : 0) / 1000.0;
  for (;;) {
    double now = mpx__now();
    int ms;
    if (timeout_ms == 0 || now < spin_end)
      ms = 0;
    else if (timeout_ms < 0)
      ms = -1;
    else if (now >= deadline)
      return MPX_OK;
    else
      ms = (int)((deadline - now) * 1000) + 1;
    ms = close_deadlines(tp, ms);
    bool woke = wait_fds(tp, ms);
    if (take_ready(tp, ev) || woke || timeout_ms == 0) return MPX_OK;
    if (ms == 0) sched_yield();
  }
}

/* ---- start, stop, destroy -------------------------------------------------------------------- */

static int make_hello(proc_tp *tp) {
  const mpx__config *cfg = tp->cfg;
  size_t len = sizeof(hello) + cfg->initargs_len;
  tp->hello = malloc(len);
  if (!tp->hello) return MPX_ENOMEM;
  hello h;
  memset(&h, 0, sizeof h);
  h.magic = HELLO_MAGIC;
  h.max_tasks = cfg->max_tasks_per_worker;
  h.max_payload = cfg->max_payload;
  h.has_init = cfg->initializer != NULL;
  h.init_id = cfg->initializer ? cfg->initializer->id : 0;
  h.initargs_len = cfg->initargs_len;
  memcpy(tp->hello, &h, sizeof h);
  if (cfg->initargs_len) memcpy(tp->hello + sizeof h, cfg->initargs, cfg->initargs_len);
  tp->hello_len = len;
  return MPX_OK;
}

/* The progress words. Without a memfd (an old kernel, or none left) they are private memory and
 * losses charge every task the worker held, as under MPI. */
static int make_progress(proc_tp *tp) {
  size_t len = (size_t)tp->n * PROGRESS_WORDS * sizeof(uint64_t);
  tp->progress_fd = memfd_create("mpx-progress", MFD_CLOEXEC);
  if (tp->progress_fd >= 0 && ftruncate(tp->progress_fd, (off_t)len) == 0) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, tp->progress_fd, 0);
    if (p != MAP_FAILED) {
      tp->progress = p;
      return MPX_OK;
    }
  }
  if (tp->progress_fd >= 0) close(tp->progress_fd);
  tp->progress_fd = -1;
  tp->progress = calloc(len / sizeof(uint64_t), sizeof(uint64_t));
  return tp->progress ? MPX_OK : MPX_ENOMEM;
}

static void pt_stop(mpx__link *self, bool wait);
static void pt_destroy(mpx__link *self);

static int pt_start(mpx__link **out, const mpx__config *cfg) {
  proc_tp *tp = calloc(1, sizeof *tp);
  if (!tp) return MPX_ENOMEM;
  tp->cfg = cfg;
  tp->n = cfg->workers;
  tp->lim = mpx__limits_default(cfg->max_payload);
  tp->fs = -1;
  tp->progress_fd = -1;
  tp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  tp->w = calloc((size_t)tp->n, sizeof *tp->w);
  for (int i = 0; tp->w && i < tp->n; i++) {
    tp->w[i].pidfd = -1;
    tp->w[i].ch.fd = -1;
    tp->w[i].replace = true;
  }
  size_t npfd = 2 + 2 * (size_t)tp->n;
  tp->pfd = calloc(npfd, sizeof *tp->pfd);
  tp->pfd_w = calloc(npfd, sizeof *tp->pfd_w);
  tp->pfd_kind = calloc(npfd, sizeof *tp->pfd_kind);
  if (!tp->w || !tp->pfd || !tp->pfd_w || !tp->pfd_kind || tp->wake_fd < 0 || make_hello(tp)) {
    int rc = tp->wake_fd < 0 ? MPX_ESYS : MPX_ENOMEM;
    pt_destroy((mpx__link *)tp);
    return rc;
  }
  if (make_progress(tp)) {
    pt_destroy((mpx__link *)tp);
    return MPX_ENOMEM;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  tp->spin_ns = cpus > (long)tp->n + 2 ? SPIN_NS : 0;
  ((hello *)(void *)tp->hello)->spin_ns = tp->spin_ns;
  tp->fs = mpx__fs_session();
  int rc = MPX_OK;
  for (int i = 0; i < tp->n && !rc; i++) {
    rc = spawn(tp, i);
    while (!rc && tp->w[i].state == W_SPAWNING) {
      struct pollfd p = {.fd = tp->fs, .events = POLLIN};
      if (poll(&p, 1, 10000) <= 0)
        rc = MPX_ESYS;
      else
        read_server(tp);
      if (tp->fs < 0) rc = MPX_ESYS;
    }
    if (!rc && tp->w[i].state == W_NONE) rc = MPX_ESYS;
  }
  if (rc) {
    mpx__set_errmsg("could not start the worker processes (%s)", strerror(errno));
    pt_stop((mpx__link *)tp, true);
    pt_destroy((mpx__link *)tp);
    return rc;
  }
  *out = (mpx__link *)tp;
  return MPX_OK;
}

/* The hello of worker i (replacements): index and placement. */
static void hello_for(proc_tp *tp, int i) {
  memcpy(&((hello *)(void *)tp->hello)->place, &tp->cfg->places[i], sizeof(mpx_placement));
  ((hello *)(void *)tp->hello)->index = i;
}

static bool all_gone(proc_tp *tp) {
  for (int i = 0; i < tp->n; i++)
    if (tp->w[i].state != W_NONE) return false;
  return true;
}

static void pt_stop(mpx__link *self, bool wait) {
  proc_tp *tp = (proc_tp *)self;
  tp->stopping = true;
  if (!wait) return;
  double t0 = mpx__now();
  bool killed = false;
  while (!all_gone(tp)) {
    if (!killed && mpx__now() - t0 > STOP_GRACE) {
      for (int i = 0; i < tp->n; i++) kill_worker(tp, i);
      killed = true;
    }
    if (mpx__now() - t0 > 3 * STOP_GRACE) break; /* the reaper does not answer: give up */
    mpx__event ev;
    while (take_ready(tp, &ev)) continue; /* late results and losses are dropped */
    if (all_gone(tp)) break;
    int ms = close_deadlines(tp, 50);
    wait_fds(tp, ms < 0 || ms > 50 ? 50 : ms);
  }
}

static void pt_destroy(mpx__link *self) {
  proc_tp *tp = (proc_tp *)self;
  if (!tp) return;
  for (int i = 0; tp->w && i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->ch.fd >= 0) mpx__chan_close(&w->ch);
    free(w->ch.body);
    oq_free(w);
    if (tp->fs < 0 && w->pid > 0 && !w->exited && w->state != W_NONE) {
      /* direct mode: never leave a zombie */
      if (w->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
      else
        kill(w->pid, SIGKILL);
      while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) continue;
    }
    if (w->pidfd >= 0) close(w->pidfd);
  }
  if (tp->fs >= 0) close(tp->fs); /* the fork server ends what is left of this session */
  if (tp->wake_fd >= 0) close(tp->wake_fd);
  if (tp->progress_fd >= 0) {
    munmap((void *)tp->progress, (size_t)tp->n * PROGRESS_WORDS * sizeof(uint64_t));
    close(tp->progress_fd);
  } else {
    free((void *)tp->progress);
  }
  free(tp->w);
  free(tp->pfd);
  free(tp->pfd_w);
  free(tp->pfd_kind);
  free(tp->hello);
  free(tp);
}

/* ---- the ops table --------------------------------------------------------------------------- */

static const mpx__link_ops process_link = {
    .start = pt_start,
    .send = pt_send,
    .poll = pt_poll,
    .kill = pt_kill,
    .wake = pt_wake,
    .stop = pt_stop,
    .destroy = pt_destroy,
};

/* Payloads are encoded; one worker can be ended (time limits), lost and replaced (retries) or
 * recycled; the fork server lives from mpx_init to mpx_finalize (the init and fini hooks,
 * forkserver.c). */
const mpx__transport mpx__process_transport = {
    .name = "processes",
    .backend = MPX_BACKEND_PROCESSES,
    .caps = MPX__CAP_ENCODES | MPX__CAP_KILL_ONE | MPX__CAP_RETRY | MPX__CAP_RECYCLE,
    .init = mpx__procs_init,
    .fini = mpx__procs_fini,
    .link = &process_link,
};
