/* process.c: the process transport's state machine: the ops table the dispatcher
 * (core/src/dispatch.c) drives over forked worker processes. The fork server is forkserver.c, the
 * worker process worker.c; process_impl.h has the whole picture and the progress pages.
 *
 * Starting, ending and reaping the worker processes (through the fork server or directly) is
 * lifecycle.c; the state both files share is process_link.h.
 *
 * Losses. A worker is lost when its socket reaches EOF or breaks (a truncated, oversized or
 * unreadable frame: the transport kills it) or when its exit status arrives. The transport reads
 * everything a dead worker wrote before it reports MPX__EV_WORKER_LOST, so results and READY
 * always come before the loss; it reports once it has both the closed socket and the wait status
 * (killing a worker that closed its socket but lives on), with a detail such as "pid 1234 was
 * killed by signal 9 (Killed)" and what the worker's page held (the task it was running). A
 * replacement is started at the next poll (after the dispatcher handled the loss on the old page),
 * unless stopping or the worker was killed with replace = false; it announces itself with READY.
 *
 * Stalled mid-frame. A worker whose frame stays half-read, with no new byte for stall_timeout, has
 * stopped answering (a task wrote into its socket, or the process hangs between two writes): the
 * link kills it, and its loss says "pid N stalled mid-frame (no byte for S s) and was killed". (A
 * stopped or hung worker that writes nothing is the dispatcher's to find: its heartbeat stops.)
 *
 * Flow control. send never blocks: what the socket does not take at once is copied to the
 * worker's out-queue and flushed when poll sees POLLOUT; so the dispatcher can never deadlock with
 * a worker that is itself blocked writing a large result. Every frame length read is checked
 * against the limits (mpx__limits_default(cfg->max_payload), max_message lowered to
 * cfg->max_worker_memory) before a byte is allocated, and the receive buffer grows only with
 * bytes received; a worker's out-queue may not grow past max_worker_memory either (the worker is
 * killed: it does not read). configure resolves max_worker_memory (0: max_payload + 64 MiB).
 *
 * Trust. A worker runs user code: the link reports what it sent, and the dispatcher judges it.
 * Who a worker is (peer) is the pid the link forked or the fork server reported and the host name
 * read once here. Failures to start a worker say what ran out (lifecycle.c).
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
#include "os/share.h"
#include "process_link.h"
#include "task_impl.h"
#include "link.h"

/* Seconds stop(wait) gives workers to exit after SHUTDOWN before it kills them. */
#define STOP_GRACE 3.0
/* How long an idle side looks at its socket (yielding the CPU in between) before it sleeps in
 * poll: a reply to a small batch is often a few microseconds away and sleeping costs two context
 * switches. Only when the machine has CPUs to spare (more than workers + 2): measured on 2 CPUs,
 * spinning workers and dispatcher keep the woken submitter off the CPU and round trips go from
 * 14 us to 15-90 us. */
#define SPIN_NS 20000

static void oframe_free(oframe *f) {
  for (int k = 0; k < f->nfds; k++) close(f->fds[k]);
  free(f);
}

static void oq_free(pworker *w) {
  while (w->oq) {
    oframe *f = w->oq;
    w->oq = f->next;
    oframe_free(f);
  }
  w->oq_tail = NULL;
  w->oq_bytes = 0;
}

void mpx__pt_close_worker(proc_tp *tp, int i, const char *why) {
  pworker *w = &tp->w[i];
  if (w->state != W_LIVE) return;
  if (why && !w->why[0]) snprintf(w->why, sizeof w->why, "%s", why);
  mpx__chan_close(&w->ch);
  if (w->share_fd >= 0) close(w->share_fd);
  w->share_fd = -1;
  oq_free(w);
  w->readable = false;
  w->state = W_CLOSED;
  w->kill_at = mpx__now() + CLOSE_GRACE;
  if (why) mpx__pt_kill_worker(tp, i); /* it broke the protocol: end it now */
}

/* Queue or write one frame. */
int mpx__pt_send_raw(proc_tp *tp, int i, const uint8_t *data, size_t len) {
  return mpx__pt_send_fds(tp, i, data, len, NULL, 0);
}

int mpx__pt_send_fds(proc_tp *tp, int i, const uint8_t *data, size_t len, const int *fds,
                     int nfds) {
  pworker *w = &tp->w[i];
  if (w->state != W_LIVE) return MPX_EWORKER_LOST;
  if (nfds < 0 || nfds > MPX__CHAN_FDS_PER_FRAME) return MPX_EINVAL;
  size_t sent = 0;
  if (!w->oq) {
    struct iovec v = {.iov_base = (void *)data, .iov_len = len};
    int r = mpx__chan_sendv_nb_fds(&w->ch, &v, 1, fds, nfds, &sent);
    if (r == 1) return MPX_OK;
    if (r < 0) {
      if (r == MPX_ETOOBIG) return r;
      mpx__pt_close_worker(tp, i, r == MPX_EEOF ? NULL : "could not be written to");
      return MPX_EWORKER_LOST;
    }
  }
  if (w->oq && w->oq_bytes + len - sent > tp->cfg->max_worker_memory) {
    mpx__pt_close_worker(tp, i, "did not read its input (more than max_worker_memory queued)");
    return MPX_EWORKER_LOST;
  }
  oframe *f = malloc(sizeof *f + len);
  if (!f) {
    mpx__pt_close_worker(tp, i, "could not be sent to (out of memory)");
    return MPX_EWORKER_LOST;
  }
  f->next = NULL;
  f->len = len;
  f->sent = sent;
  f->nfds = 0;
  for (int k = 0; sent == 0 && k < nfds; k++) { /* not gone with a first byte yet: keep our own */
    int fd = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      oframe_free(f);
      mpx__pt_close_worker(tp, i, "could not be sent to (out of file descriptors)");
      return MPX_EWORKER_LOST;
    }
    f->fds[f->nfds++] = fd;
  }
  if (len) memcpy(f->data, data, len);
  if (w->oq_tail)
    w->oq_tail->next = f;
  else
    w->oq = f;
  w->oq_tail = f;
  w->oq_bytes += len;
  return MPX_OK;
}

static void flush(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  while (w->state == W_LIVE && w->oq) {
    oframe *f = w->oq;
    struct iovec v = {.iov_base = f->data, .iov_len = f->len};
    int r = mpx__chan_sendv_nb_fds(&w->ch, &v, 1, f->fds, f->sent ? 0 : f->nfds, &f->sent);
    if (r == 0) return;
    if (r < 0) {
      mpx__pt_close_worker(tp, i, r == MPX_EEOF ? NULL : "could not be written to");
      return;
    }
    w->oq = f->next;
    if (!w->oq) w->oq_tail = NULL;
    w->oq_bytes -= f->len;
    oframe_free(f);
  }
}

static int pt_send(mpx__link *self, int worker, const uint8_t *data, size_t len) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  if (len > tp->lim.max_message) return MPX_ETOOBIG;
  return mpx__pt_send_raw(tp, worker, data, len);
}

static int pt_send_fds(mpx__link *self, int worker, const uint8_t *data, size_t len,
                       const int *fds, int nfds) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  if (len > tp->lim.max_message) return MPX_ETOOBIG;
  return mpx__pt_send_fds(tp, worker, data, len, fds, nfds);
}

/* The oldest segment worker i passed (a result's, the data plane), -1 if none. */
static int pt_take_fd(mpx__link *self, int worker) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n || tp->w[worker].state != W_LIVE) return -1;
  return mpx__chan_take_fd(&tp->w[worker].ch);
}

static void pt_wake(mpx__link *self) {
  proc_tp *tp = (proc_tp *)self;
  uint64_t one = 1;
  ssize_t r = write(tp->wake_fd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is already non-zero, a wake is due anyway */
}

/* Who worker i is: the pid we forked or the fork server reported, this host. */
static int pt_peer(mpx__link *self, int worker, mpx__peer *out) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  *out = (mpx__peer){.pid = (int)tp->w[worker].pid, .rank = -1, .slots = 1};
  snprintf(out->host, sizeof out->host, "%s", tp->host);
  return MPX_OK;
}

static mpx__progress *pt_progress(mpx__link *self, int worker) {
  proc_tp *tp = (proc_tp *)self;
  return worker >= 0 && worker < tp->n ? mpx__pt_page(tp, worker) : NULL;
}

static int pt_kill(mpx__link *self, int worker, bool replace) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  pworker *w = &tp->w[worker];
  w->replace = replace;
  if (w->state == W_NONE) return MPX_OK;
  if (!w->snapped) { /* the task running when the dispatcher decided, not at the death */
    w->snapped = true;
    w->snap_running = w->has_page ? atomic_load_explicit(&mpx__pt_page(tp, worker)->running,
                                                         memory_order_relaxed)
                                  : 0;
  }
  mpx__pt_kill_worker(tp, worker);
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
    /* the process is reaped: nothing writes its page any more. relaxed: the reap (a syscall)
     * came after its last store. A process that never got its page ran nothing. */
    ev->running_known = true;
    ev->running =
        w->has_page ? atomic_load_explicit(&mpx__pt_page(tp, i)->running, memory_order_relaxed) : 0;
    if (w->snapped) ev->running = w->snap_running;
    w->snapped = false;
    w->state = W_NONE;
    if (w->pidfd >= 0) close(w->pidfd);
    w->pidfd = -1;
    /* The replacement is started at the next poll, not now: its new page replaces this one,
     * which the dispatcher reads while it handles this loss (the claims of its window). */
    w->respawn = w->replace && !tp->stopping;
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
      if (w->exited)
        mpx__pt_close_worker(tp, i, NULL); /* all it wrote is read; someone else holds it */
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
    mpx__pt_close_worker(tp, i, why[0] ? why : NULL);
    return 0;
  }
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
    if (w->state == W_LIVE && w->share_fd >= 0) {
      tp->pfd[k] = (struct pollfd){.fd = w->share_fd, .events = POLLIN};
      tp->pfd_kind[k] = 2;
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
      mpx__pt_read_server(tp);
    } else if (tp->pfd_kind[j] == 1) {
      mpx__pt_reap_direct(tp, i);
    } else if (tp->pfd_kind[j] == 2) {
      /* a task's first use of a shared object: answered at once; a worker that misuses the
       * socket only loses it (its later fetches fail, nothing else) */
      if (tp->w[i].share_fd >= 0 && mpx__share_serve(tp->w[i].share_fd)) {
        close(tp->w[i].share_fd);
        tp->w[i].share_fd = -1;
      }
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

/* Replacements for the losses the dispatcher has handled (see take_lost). */
static void respawn(proc_tp *tp) {
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (!w->respawn || w->state != W_NONE) continue;
    w->respawn = false;
    if (!tp->stopping && mpx__pt_spawn(tp, i)) /* could not even ask: the slot stays empty */
      mpx__log(MPX_LOG_WARN, "could not start a replacement for worker %d", i);
  }
}

/* The progress deadline on the wire: a worker whose frame stays half-read, with no new byte for
 * tp->stall seconds, stopped answering mid-frame. It is killed; the dispatcher charges the task it
 * was running. */
static void frame_deadlines(proc_tp *tp) {
  double now = 0;
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state != W_LIVE || !w->ch.hdr_got) {
      w->frame_since = 0;
      continue;
    }
    size_t mark = w->ch.hdr_got + w->ch.body_got;
    if (!now) now = mpx__now();
    if (!w->frame_since || mark != w->frame_mark) {
      w->frame_mark = mark;
      w->frame_since = now;
    } else if (now - w->frame_since > tp->stall) {
      char why[96];
      snprintf(why, sizeof why, "stalled mid-frame (no byte for %.3g s)", tp->stall);
      mpx__pt_close_worker(tp, i, why);
    }
  }
}

static int pt_poll(mpx__link *self, mpx__event *ev, int timeout_ms) {
  proc_tp *tp = (proc_tp *)self;
  ev->kind = MPX__EV_NONE;
  respawn(tp);
  frame_deadlines(tp);
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
    ms = mpx__pt_close_deadlines(tp, ms);
    bool woke = wait_fds(tp, ms);
    if (take_ready(tp, ev) || woke || timeout_ms == 0) return MPX_OK;
    if (ms == 0) sched_yield();
  }
}

/* ---- start, stop, destroy -------------------------------------------------------------------- */

static void pt_stop(mpx__link *self, bool wait);
static void pt_destroy(mpx__link *self);

static int pt_start(mpx__link **out, const mpx__config *cfg) {
  proc_tp *tp = calloc(1, sizeof *tp);
  if (!tp) return MPX_ENOMEM;
  tp->cfg = cfg;
  tp->n = cfg->workers;
  tp->lim = mpx__limits_default(cfg->max_payload);
  if (cfg->max_worker_memory && tp->lim.max_message > cfg->max_worker_memory)
    tp->lim.max_message = cfg->max_worker_memory; /* a larger frame is refused unread */
  if (gethostname(tp->host, sizeof tp->host - 1)) snprintf(tp->host, sizeof tp->host, "?");
  tp->fs = -1;
  tp->stall = cfg->stall_timeout > 0 ? cfg->stall_timeout : 5.0;
  tp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int wake_errno = errno;
  tp->w = calloc((size_t)tp->n, sizeof *tp->w);
  for (int i = 0; tp->w && i < tp->n; i++) {
    tp->w[i].pidfd = -1;
    tp->w[i].ch.fd = -1;
    tp->w[i].share_fd = -1;
    tp->w[i].replace = true;
  }
  size_t npfd = 2 + 3 * (size_t)tp->n;
  tp->pfd = calloc(npfd, sizeof *tp->pfd);
  tp->pfd_w = calloc(npfd, sizeof *tp->pfd_w);
  tp->pfd_kind = calloc(npfd, sizeof *tp->pfd_kind);
  if (!tp->w || !tp->pfd || !tp->pfd_w || !tp->pfd_kind || tp->wake_fd < 0 ||
      mpx__pt_make_hello(tp)) {
    int rc = tp->wake_fd < 0 ? MPX_ESYS : MPX_ENOMEM;
    if (tp->wake_fd < 0)
      mpx__set_errmsg("could not create the executor's wake-up eventfd: %s",
                      mpx__pt_ran_out(wake_errno));
    pt_destroy((mpx__link *)tp);
    return rc;
  }
  if (mpx__pt_make_pages(tp)) {
    pt_destroy((mpx__link *)tp);
    return MPX_ENOMEM;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  tp->spin_ns = cpus > (long)tp->n + 2 ? SPIN_NS : 0;
  ((hello *)(void *)tp->hello)->spin_ns = tp->spin_ns;
  int rc = mpx__pt_start_workers(tp); /* says which worker and what ran out */
  if (rc) {
    pt_stop((mpx__link *)tp, true);
    pt_destroy((mpx__link *)tp);
    return rc;
  }
  *out = (mpx__link *)tp;
  return MPX_OK;
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
      for (int i = 0; i < tp->n; i++) mpx__pt_kill_worker(tp, i);
      killed = true;
    }
    if (mpx__now() - t0 > 3 * STOP_GRACE) break; /* the reaper does not answer: give up */
    mpx__event ev;
    while (take_ready(tp, &ev)) continue; /* late results and losses are dropped */
    if (all_gone(tp)) break;
    int ms = mpx__pt_close_deadlines(tp, 50);
    wait_fds(tp, ms < 0 || ms > 50 ? 50 : ms);
  }
}

static void pt_destroy(mpx__link *self) {
  proc_tp *tp = (proc_tp *)self;
  if (!tp) return;
  for (int i = 0; tp->w && i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->ch.fd >= 0) mpx__chan_close(&w->ch);
    if (w->share_fd >= 0) close(w->share_fd);
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
  if (tp->pages) munmap(tp->pages, (size_t)tp->n * tp->page_sz);
  free(tp->w);
  free(tp->pfd);
  free(tp->pfd_w);
  free(tp->pfd_kind);
  free(tp->hello);
  free(tp);
}

/* max_worker_memory as the user gave it (the executor checked its floor); 0: max_payload + 64 MiB,
 * never past a whole message. */
static int pt_configure(mpx__config *cfg) {
  if (!cfg->max_worker_memory) {
    mpx__limits lim = mpx__limits_default(cfg->max_payload);
    size_t extra = (size_t)64 << 20;
    cfg->max_worker_memory =
        lim.max_payload > lim.max_message - extra ? lim.max_message : lim.max_payload + extra;
  }
  return MPX_OK;
}

/* ---- the ops table --------------------------------------------------------------------------- */

static const mpx__link_ops process_link = {
    .configure = pt_configure,
    .start = pt_start,
    .send = pt_send,
    .send_fds = pt_send_fds,
    .take_fd = pt_take_fd,
    .poll = pt_poll,
    .kill = pt_kill,
    .peer = pt_peer,
    .wake = pt_wake,
    .stop = pt_stop,
    .destroy = pt_destroy,
    .progress = pt_progress,
};

/* Payloads are encoded, big ones travel as segments (the data plane); one worker can be ended
 * (time limits), lost and replaced (retries) or recycled; the fork server lives from mpx_init to
 * mpx_finalize (the init and fini hooks, forkserver.c). */
const mpx__transport mpx__process_transport = {
    .name = "processes",
    .backend = MPX_BACKEND_PROCESSES,
    .caps = MPX__CAP_ENCODES | MPX__CAP_KILL_ONE | MPX__CAP_RETRY | MPX__CAP_RECYCLE |
            MPX__CAP_SHM,
    .init = mpx__procs_init,
    .fini = mpx__procs_fini,
    .link = &process_link,
};
