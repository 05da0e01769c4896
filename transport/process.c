/* process.c: the process transport. Workers are forked processes of this same
 * binary (so they have the same task registry); each talks to the dispatcher
 * (core/src/dispatch.c) over its own AF_UNIX socketpair carrying chan frames
 * (core/src/ipc/chan.h: a 4-byte length, then one packed mpx.Batch). Node-local
 * only: no listening socket, no shared-memory object.
 *
 * Fork server. fork() in a process that already runs threads copies only the
 * calling thread, and any lock another thread held (malloc arenas aside, which
 * glibc resets) stays held in the child. So mpx_init calls mpx__procs_init
 * while the process has one thread, and that forks a small fork server: a
 * single-threaded copy of the program that forks every worker from its own
 * image. Each process transport opens a session with it (a SOCK_SEQPACKET
 * socketpair whose one end is passed over the server's main socket with
 * SCM_RIGHTS). On a session the transport asks for SPAWN (worker index) and
 * KILL (pid, signal); the server answers SPAWNED (index, pid, and the parent's
 * end of the new worker's socketpair, SCM_RIGHTS) and, since the workers are
 * its children, reaps them (SIGCHLD through a signalfd) and sends EXITED
 * (index, pid, wait status). Only the reaper signals a worker, so a recycled
 * pid is never hit. When a session closes, the server kills what is left of
 * that session's workers; when the main socket closes (mpx_finalize, or the
 * parent's death) it kills all its workers, reaps them and exits. The server
 * and the workers set PR_SET_PDEATHSIG(SIGKILL) and re-check getppid() after
 * it: the parent's death kills the server, whose death kills the workers (a
 * worker also exits on EOF on its socket). Linux sends the death signal when
 * the *thread* that forked exits: mpx_init must run on a thread that lives as
 * long as the process (main).
 *
 * Workers see the program as it was when mpx_init ran (the server's image), as
 * with Python's forkserver: global state set up after mpx_init is not in them;
 * arguments and initargs are.
 *
 * Without mpx_init (no fork server) the transport forks workers directly from
 * the thread that starts the executor (and later, for replacements, from the
 * dispatcher thread), reaps them by pid with a pidfd in its poll set, and kills
 * them through the pidfd. This is the fork-from-a- threaded-process trap: a
 * worker may deadlock if the task or the initializer takes a lock that another
 * parent thread held at fork time (stdio and malloc are safe with glibc). Call
 * mpx_init. MPX_FORK_SERVER=0 in the environment makes mpx_init skip the fork
 * server (for tests).
 *
 * A worker receives one hello frame (its index, limits, placement, initializer
 * and initargs), binds itself, runs mpx__serve_init and answers a Batch with
 * Control READY (an Error if the initializer failed, after which it exits).
 * Then it loops: receive a frame, exit(0) on Control SHUTDOWN, else
 * mpx__serve_batch and send the results frame. After max_tasks_per_worker tasks
 * it sends a zero-length frame (the retire mark; an empty Batch is never a
 * reply) and exits 0.
 *
 * Losses. A worker is lost when its socket reaches EOF or breaks (a truncated,
 * oversized or unreadable frame: the transport kills it) or when its exit
 * status arrives. The transport reads everything a dead worker wrote before it
 * reports MPX__EV_WORKER_LOST, so results and READY always come before the
 * loss; it reports once it has both the closed socket and the wait status
 * (killing a worker that closed its socket but lives on), with a detail such as
 * "pid 1234 was killed by signal 9 (Killed)". It then starts a replacement,
 * unless stopping or the worker was killed with replace = false; the
 * replacement announces itself with READY.
 *
 * What a dead worker was running. Each transport shares one small memfd with
 * its workers (passed with SCM_RIGHTS in a message before the hello), a cache
 * line per worker index. Serving stores each task's call id there as it
 * starts; the worker clears it once the batch's results are packed, before
 * it sends them (so the word never outlives the call ids it names). The loss
 * event carries what the dead worker left there, so the dispatcher charges a
 * retry to that task only: the rest of its window never started (or finished
 * without its results being sent) and is re-queued uncharged. A death outside
 * serving a batch charges nothing; one while serving charges exactly one task,
 * so a task that kills every worker it runs on still runs out of retries.
 * When the dispatcher ends a worker (a protocol violation, a time limit), the
 * word is read at that moment (pt_kill), so the charge goes to the task that
 * ran when the violation was seen, not to one the worker started afterwards.
 *
 * Flow control. send never blocks: what the socket does not take at once is
 * copied to the worker's out-queue and flushed when poll sees POLLOUT; so the
 * dispatcher can never deadlock with a worker that is itself blocked writing a
 * large result. Every frame length read is checked against the limits
 * (mpx__limits_default(cfg->max_payload), max_message lowered to
 * cfg->max_worker_memory) before a byte is allocated, and the receive buffer
 * grows only with bytes received; a worker's out-queue may not grow past
 * max_worker_memory either (the worker is killed: it does not read).
 *
 * Trust. A worker runs user code: the transport reports what it sent, and the
 * dispatcher judges it. Who a worker is (peer) is the pid the transport forked
 * or the fork server reported and the host name read once here. Failures to
 * start a worker say what ran out (ran_out: file descriptors, memory).
 *
 * Thread-safety: the ops are called by the dispatcher thread only, except wake
 * (any thread; an eventfd write). The fork server's main socket is shared by
 * every transport and guarded by a mutex; sessions are per transport. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "future_impl.h"
#include "init.h"
#include "ipc/chan.h"
#include "task_impl.h"
#include "transport.h"

/* Seconds stop(wait) gives workers to exit after SHUTDOWN before it kills them.
 */
#define STOP_GRACE 3.0
/* Seconds a worker whose socket closed may live on before it is killed. */
#define CLOSE_GRACE 0.5
/* Receive buffers larger than this are freed after a frame (a 64 MiB result
 * does not stay). */
#define KEEP_BUF ((size_t)1 << 20)
/* How long an idle side looks at its socket (yielding the CPU in between)
 * before it sleeps in poll: a reply to a small batch is often a few
 * microseconds away and sleeping costs two context switches. Only when the
 * machine has CPUs to spare (more than workers + 2): measured on 2 CPUs,
 * spinning workers and dispatcher keep the woken submitter off the CPU and
 * round trips go from 14 us to 15-90 us. */
#define SPIN_NS 20000
/* uint64_t words per worker in the progress memfd: a cache line each. */
#define PROGRESS_WORDS 8

/* ==== fork server
 * ============================================================================
 */

enum {
  FS_SESSION = 1,
  FS_SPAWN,
  FS_KILL,
  FS_SPAWNED,
  FS_SPAWN_FAILED,
  FS_EXITED,
  FS_PROGRESS /* not the server's: sent before a worker's hello, with the
                 progress memfd */
};

typedef struct fs_msg {
  int32_t op, index, pid,
      status; /* status: wait status (EXITED) or errno (SPAWN_FAILED) */
} fs_msg;

/* The one process-wide fork server (mpx__procs_init .. mpx__procs_finalize). */
static struct {
  pthread_mutex_t lock; /* sock: one request at a time */
  pid_t pid;            /* 0: none */
  int sock;
} fsrv = {PTHREAD_MUTEX_INITIALIZER, 0, -1};

/* Send `m` with an optional fd (SCM_RIGHTS). 0 or -1 (errno). */
static int msg_send(int sock, const fs_msg *m, int fd) {
  struct iovec v = {.iov_base = (void *)m, .iov_len = sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr h = {.msg_iov = &v, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    h.msg_control = u.buf;
    h.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t w = sendmsg(sock, &h, MSG_NOSIGNAL);
    if (w == (ssize_t)sizeof *m)
      return 0;
    if (w < 0 && errno == EINTR)
      continue;
    if (w >= 0)
      errno = EPROTO;
    return -1;
  }
}

/* Receive one message and an optional fd (*fd = -1 if none). 1 got one, 0 EOF,
 * -1 error (errno; EAGAIN on a nonblocking socket with nothing to read). */
static int msg_recv(int sock, fs_msg *m, int *fd, int flags) {
  struct iovec v = {.iov_base = m, .iov_len = sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr h = {.msg_iov = &v,
                     .msg_iovlen = 1,
                     .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  *fd = -1;
  ssize_t r;
  do
    r = recvmsg(sock, &h, MSG_CMSG_CLOEXEC | flags);
  while (r < 0 && errno == EINTR);
  if (r <= 0)
    return (int)r;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int got;
      memcpy(&got, CMSG_DATA(c), sizeof got);
      if (*fd < 0)
        *fd = got;
      else
        close(got);
    }
  if (r != (ssize_t)sizeof *m || (h.msg_flags & MSG_TRUNC)) {
    if (*fd >= 0)
      close(*fd);
    *fd = -1;
    errno = EPROTO;
    return -1;
  }
  if (h.msg_flags & MSG_CTRUNC) { /* the fd sent could not be installed: out of fds. The */
    if (*fd >= 0)                  /* message itself is whole: 1, *fd = -1, errno = EMFILE */
      close(*fd);
    *fd = -1;
    errno = EMFILE;
  }
  return 1;
}

static void worker_main(int fd, pid_t parent) __attribute__((noreturn));

/* The server's state (it is single-threaded). */
typedef struct fs_child {
  pid_t pid;
  int session; /* its session's socket, -1 once that closed */
  int index;
} fs_child;

typedef struct fs_state {
  int main_sock, sigfd;
  int *sessions;
  size_t nsessions, capsessions;
  fs_child *kids;
  size_t nkids, capkids;
} fs_state;

static void fs_kill_session(fs_state *s, int session) {
  for (size_t i = 0; i < s->nkids; i++)
    if (s->kids[i].session == session) {
      kill(s->kids[i].pid, SIGKILL); /* unreaped child: the pid is still ours */
      s->kids[i].session = -1;
    }
}

static void fs_spawn(fs_state *s, int session, int index) {
  fs_msg m = {.op = FS_SPAWN_FAILED, .index = index};
  int sv[2];
  if (s->nkids == s->capkids) {
    size_t cap = s->capkids ? 2 * s->capkids : 16;
    fs_child *k = realloc(s->kids, cap * sizeof *k);
    if (!k) {
      m.status = ENOMEM;
      msg_send(session, &m, -1);
      return;
    }
    s->kids = k;
    s->capkids = cap;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    m.status = errno;
    msg_send(session, &m, -1);
    return;
  }
  pid_t me = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(s->main_sock);
    close(s->sigfd);
    for (size_t i = 0; i < s->nsessions; i++)
      close(s->sessions[i]);
    close(sv[0]);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    worker_main(sv[1], me);
  }
  close(sv[1]);
  if (pid < 0) {
    m.status = errno;
    close(sv[0]);
    msg_send(session, &m, -1);
    return;
  }
  s->kids[s->nkids++] =
      (fs_child){.pid = pid, .session = session, .index = index};
  m = (fs_msg){.op = FS_SPAWNED, .index = index, .pid = pid};
  if (msg_send(session, &m, sv[0]))
    kill(pid, SIGKILL); /* the session is gone */
  close(sv[0]);
}

static void fs_reap(fs_state *s) {
  struct signalfd_siginfo si;
  while (read(s->sigfd, &si, sizeof si) > 0)
    continue;
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
    for (size_t i = 0; i < s->nkids; i++) {
      if (s->kids[i].pid != pid)
        continue;
      fs_msg m = {
          .op = FS_EXITED, .index = s->kids[i].index, .pid = pid, .status = st};
      if (s->kids[i].session >= 0)
        msg_send(s->kids[i].session, &m, -1);
      s->kids[i] = s->kids[--s->nkids];
      break;
    }
}

static void fs_main(int main_sock, pid_t parent) __attribute__((noreturn));
static void fs_main(int main_sock, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(0); /* the parent died before the death signal was armed */
  prctl(PR_SET_NAME, "mpx-forkserver");
  signal(SIGPIPE, SIG_IGN);
  signal(SIGCHLD, SIG_DFL); /* an inherited SIG_IGN would reap workers before we
                               see a status */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  fs_state s = {.main_sock = main_sock,
                .sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)};
  if (s.sigfd < 0)
    _exit(70);
  struct pollfd *pfd = NULL;
  size_t cappfd = 0;
  for (;;) {
    size_t n = 2 + s.nsessions;
    if (n > cappfd) {
      struct pollfd *p = realloc(pfd, n * sizeof *p);
      if (!p)
        _exit(71);
      pfd = p;
      cappfd = n;
    }
    pfd[0] = (struct pollfd){.fd = main_sock, .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = s.sigfd, .events = POLLIN};
    for (size_t i = 0; i < s.nsessions; i++)
      pfd[2 + i] = (struct pollfd){.fd = s.sessions[i], .events = POLLIN};
    if (poll(pfd, n, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pfd[1].revents)
      fs_reap(&s);
    for (size_t i = n; i-- > 2;) {
      if (!pfd[i].revents)
        continue;
      int sess = s.sessions[i - 2], fd;
      fs_msg m;
      int r = msg_recv(sess, &m, &fd, MSG_DONTWAIT);
      if (fd >= 0)
        close(fd);
      if (r < 0 && errno == EAGAIN)
        continue;
      if (r <= 0) { /* the transport closed its session: end its workers */
        fs_kill_session(&s, sess);
        close(sess);
        s.sessions[i - 2] = s.sessions[--s.nsessions];
        continue;
      }
      if (m.op == FS_SPAWN)
        fs_spawn(&s, sess, m.index);
      else if (m.op == FS_KILL)
        for (size_t k = 0; k < s.nkids; k++)
          if (s.kids[k].pid == m.pid && s.kids[k].session == sess)
            kill(m.pid, m.status);
    }
    if (pfd[0].revents) {
      fs_msg m;
      int fd;
      int r = msg_recv(main_sock, &m, &fd, MSG_DONTWAIT);
      if (r < 0 && errno == EAGAIN)
        continue;
      if (r <= 0)
        break; /* mpx_finalize or the parent's death */
      if (m.op == FS_SESSION && fd >= 0) {
        if (s.nsessions == s.capsessions) {
          size_t cap = s.capsessions ? 2 * s.capsessions : 8;
          int *p = realloc(s.sessions, cap * sizeof *p);
          if (!p) {
            close(fd);
            continue;
          }
          s.sessions = p;
          s.capsessions = cap;
        }
        s.sessions[s.nsessions++] = fd;
      } else if (fd >= 0) {
        close(fd);
      }
    }
  }
  for (size_t i = 0; i < s.nkids; i++)
    kill(s.kids[i].pid, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
    continue;
  _exit(0);
}

int mpx__procs_init(void) {
  if (fsrv.pid > 0)
    return MPX_OK;
  const char *env = getenv("MPX_FORK_SERVER");
  if (env && !strcmp(env, "0"))
    return MPX_OK;
  if (mpx__mpi_job())
    return MPX_OK; /* MPI libraries dislike fork; ranks use the MPI backend */
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
    return MPX_ESYS;
  fflush(NULL); /* nothing buffered is copied into the server, so workers never
                   repeat it */
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return MPX_ESYS;
  }
  if (pid == 0) {
    close(sv[0]);
    fs_main(sv[1], parent);
  }
  close(sv[1]);
  fsrv.pid = pid;
  fsrv.sock = sv[0];
  return MPX_OK;
}

void mpx__procs_finalize(void) {
  if (fsrv.pid <= 0)
    return;
  pthread_mutex_lock(&fsrv.lock);
  close(fsrv.sock); /* EOF: the server kills and reaps its workers and exits */
  fsrv.sock = -1;
  pid_t pid = fsrv.pid;
  fsrv.pid = 0;
  pthread_mutex_unlock(&fsrv.lock);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    continue;
}

/* The fork server's pid, 0 if none (tests). */
int mpx__procs_server_pid(void);
int mpx__procs_server_pid(void) { return (int)fsrv.pid; }

/* What ran out, for an errno of a failed socketpair/memfd/eventfd/fork/fd
 * passing: messages name the resource, not just strerror. */
static const char *ran_out(int e) {
  switch (e) {
  case EMFILE:
    return "out of file descriptors (EMFILE: this process's limit, see ulimit -n)";
  case ENFILE:
    return "out of file descriptors (ENFILE: the system's limit)";
  case ENOMEM:
    return "out of memory (ENOMEM)";
  case EAGAIN:
    return "out of processes or memory (EAGAIN)";
  default:
    return strerror(e);
  }
}

/* Open a session: the returned socket receives SPAWNED/EXITED for the workers
 * asked through it. -1 if there is no fork server (or it is gone; errno 0) or
 * the session could not be made (errno). */
static int fs_session(void) {
  int sv[2] = {-1, -1};
  pthread_mutex_lock(&fsrv.lock);
  int rc = -1;
  errno = 0;
  if (fsrv.pid > 0 && fsrv.sock >= 0 &&
      !socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
    fs_msg m = {.op = FS_SESSION};
    if (!msg_send(fsrv.sock, &m, sv[1]))
      rc = sv[0];
    else
      close(sv[0]);
    close(sv[1]);
  }
  pthread_mutex_unlock(&fsrv.lock);
  return rc;
}

/* ==== the worker
 * ============================================================================
 */

#define HELLO_MAGIC 0x6d707868u /* "mpxh" */

/* The first frame a worker receives: who it is and how to start. initargs
 * follow. */
typedef struct hello {
  uint32_t magic;
  int32_t index;
  int64_t max_tasks;
  uint64_t max_payload;
  uint64_t max_message; /* replies stay under it: the parent's max_worker_memory */
  uint32_t init_id; /* initializer's task id */
  uint32_t has_init;
  uint64_t initargs_len;
  int64_t spin_ns; /* how long to look for the next batch before sleeping */
  mpx_placement place;
} hello;

static void worker_exit(int code) __attribute__((noreturn));
static void worker_exit(int code) {
  fflush(NULL); /* task output is not lost; _exit skips the program's atexit
                   handlers */
  _exit(code);
}

/* Block until a whole frame is in; spin briefly first (the next batch often
 * follows at once). */
static int worker_recv(mpx__chan *c, const void **data, size_t *len,
                       long spin_ns) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int r = mpx__chan_recv_nb(c, data, len);
    if (r != 0)
      return r;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ns = (t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec);
    if (ns < spin_ns) {
      sched_yield(); /* a spinning worker must not keep a woken thread off the
                        CPU */
      continue;
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, -1) < 0 && errno != EINTR)
      return MPX_ESYS;
    clock_gettime(CLOCK_MONOTONIC, &t0);
  }
}

/* The message before the hello, with the progress memfd attached (or none): map
 * it. NULL when there is none. */
static _Atomic uint64_t *worker_progress(int fd, size_t *words) {
  fs_msg m;
  int pfd;
  if (msg_recv(fd, &m, &pfd, 0) != 1 || m.op != FS_PROGRESS) {
    if (pfd >= 0)
      close(pfd);
    worker_exit(0); /* the parent went away before the hello */
  }
  if (pfd < 0)
    return NULL;
  struct stat st;
  void *p = MAP_FAILED;
  if (fstat(pfd, &st) == 0 && st.st_size > 0)
    p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, pfd,
             0);
  close(pfd);
  if (p == MAP_FAILED)
    return NULL;
  *words = (size_t)st.st_size / sizeof(uint64_t);
  return p;
}

static void worker_main(int fd, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(0);
  signal(SIGPIPE, SIG_IGN);
  size_t progress_words = 0;
  _Atomic uint64_t *progress = worker_progress(fd, &progress_words);
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  mpx__chan ch;
  mpx__chan_init(&ch, fd,
                 MPX__FRAME_MAX); /* the hello comes from the trusted parent */
  const void *data;
  size_t len;
  if (worker_recv(&ch, &data, &len, 0) != 1)
    worker_exit(0);
  hello h;
  if (len < sizeof h)
    worker_exit(64);
  memcpy(&h, data, sizeof h);
  if (h.magic != HELLO_MAGIC || h.initargs_len != len - sizeof h)
    worker_exit(64);
  void *initargs = NULL;
  if (h.initargs_len) {
    if (!(initargs = malloc(h.initargs_len)))
      worker_exit(65);
    memcpy(initargs, (const char *)data + sizeof h, h.initargs_len);
  }
  mpx__chan_shrink(&ch, KEEP_BUF);
  mpx__limits lim = mpx__limits_default(h.max_payload);
  if (h.max_message && h.max_message < lim.max_message)
    lim.max_message = (size_t)h.max_message;
  ch.max_frame = lim.max_message;
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  char name[16];
  snprintf(name, sizeof name, "mpx-worker-%d", h.index);
  prctl(PR_SET_NAME, name);
  if (h.place.cpuset[0])
    mpx_topology_bind_process(&h.place);
  mpx__worker_id who = {
      .index = h.index, .pid = (int)getpid(), .rank = -1, .host = host};
  size_t slot = (size_t)h.index * PROGRESS_WORDS;
  if (progress && h.index >= 0 && slot < progress_words)
    who.running = &progress[slot];

  int rc = MPX_OK;
  char *msg = NULL;
  const mpx_task *init = NULL;
  if (h.has_init) {
    rc = mpx_task_find_id(h.init_id, &init);
    if (rc)
      msg = mpx__strdupf("no initializer task is registered with id 0x%08x",
                         h.init_id);
    else
      rc = mpx__serve_init(init->name, initargs, (size_t)h.initargs_len, &who,
                           &msg);
  }
  free(initargs);
  Mpx__Error err = MPX__ERROR__INIT;
  Mpx__Control ctl = MPX__CONTROL__INIT;
  ctl.kind = MPX__CONTROL__KIND__READY;
  ctl.pid = who.pid;
  ctl.host = host;
  ctl.slots = 1;
  if (rc) {
    err.code = rc < 0 ? rc : MPX_EINIT;
    err.message = msg ? msg : (char *)mpx_strerror(rc);
    err.pid = who.pid;
    err.host = host;
    err.rank = -1;
    ctl.error = &err;
  }
  Mpx__Batch ready = MPX__BATCH__INIT;
  ready.control = &ctl;
  mpx__wbuf out = {0};
  char *cut = mpx__control_fit(&ctl, &lim); /* READY fits any max_payload */
  if (mpx__batch_pack(&ready, &lim, &out) ||
      mpx__chan_send(&ch, out.data, out.len))
    worker_exit(0);
  free(cut);
  free(msg);
  if (rc)
    worker_exit(0); /* the dispatcher reports the initializer's failure */

  long done = 0;
  for (;;) {
    int r = worker_recv(&ch, &data, &len, (long)h.spin_ns);
    if (r != 1)
      worker_exit(
          r == MPX_EEOF ? 0 : 66); /* parent gone, or a frame over the limit */
    Mpx__Batch *in;
    if (mpx__batch_unpack(data, len, &lim, &in))
      worker_exit(67);
    if (in->control && in->control->kind == MPX__CONTROL__KIND__SHUTDOWN)
      worker_exit(0);
    if (!in->n_tasks) {
      mpx__batch_free(in);
      continue;
    }
    mpx__wbuf_reset(&out);
    rc = mpx__serve_batch(in, &who, &lim, &out);
    done += (long)in->n_tasks;
    mpx__batch_free(in);
    if (rc)
      worker_exit(
          68); /* out of memory: the dispatcher re-runs or fails the batch */
    /* Every task ran and the results are packed: a death from here on is no
     * task's doing. Cleared before the send, so that once the results are out
     * the word never names a call id that may be reused for a later task. */
    if (who.running)
      atomic_store_explicit(who.running, 0, memory_order_relaxed);
    if (mpx__chan_send(&ch, out.data, out.len))
      worker_exit(0);
    if (out.cap > KEEP_BUF)
      mpx__wbuf_free(&out);
    mpx__chan_shrink(&ch, KEEP_BUF);
    if (h.max_tasks > 0 && done >= h.max_tasks) {
      mpx__chan_send(&ch, NULL, 0); /* the retire mark */
      worker_exit(0);
    }
  }
}

/* ==== the transport
 * ========================================================================= */

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
  size_t oq_bytes; /* queued in oq, at most cfg->max_worker_memory */
  bool replace;  /* start a replacement when it is lost */
  bool readable; /* poll saw input: read before polling again */
  bool exited;   /* wait status known */
  int status;
  bool retiring; /* sent the retire mark */
  bool kill_sent;
  bool kill_pending; /* killed while SPAWNING: kill once the pid is known */
  bool snapped;          /* pt_kill noted what it ran then: the loss reports that */
  uint64_t snap_running;
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
  long spin_ns; /* 0 when CPUs are scarce */
  int progress_fd;            /* memfd shared with the workers, -1: none */
  _Atomic uint64_t *progress; /* its mapping: PROGRESS_WORDS per worker */
  char host[64];              /* this host's name, read once: workers run here */
  int spawn_errno;            /* why the last worker could not be started, 0 */
} proc_tp;

static double now_s(void) { return mpx__now(); }

static void oq_free(pworker *w) {
  while (w->oq) {
    oframe *f = w->oq;
    w->oq = f->next;
    free(f);
  }
  w->oq_tail = NULL;
  w->oq_bytes = 0;
}

/* Close the socket of a LIVE worker: it is CLOSED until its exit status
 * arrives. */
static void close_worker(proc_tp *tp, int i, const char *why);

static void kill_worker(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  if (w->exited || w->kill_sent)
    return;
  if (w->state == W_SPAWNING) {
    w->kill_pending = true;
    return;
  }
  if (w->pid <= 0)
    return;
  w->kill_sent = true;
  if (tp->fs >= 0) {
    fs_msg m = {.op = FS_KILL, .index = i, .pid = w->pid, .status = SIGKILL};
    msg_send(tp->fs, &m, -1);
  } else if (w->pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
  } else {
    kill(w->pid,
         SIGKILL); /* our unreaped child: the pid cannot have been reused */
  }
}

static void close_worker(proc_tp *tp, int i, const char *why) {
  pworker *w = &tp->w[i];
  if (w->state != W_LIVE)
    return;
  if (why && !w->why[0])
    snprintf(w->why, sizeof w->why, "%s", why);
  mpx__chan_close(&w->ch);
  oq_free(w);
  w->readable = false;
  w->state = W_CLOSED;
  w->kill_at = now_s() + CLOSE_GRACE;
  if (why)
    kill_worker(tp, i); /* it broke the protocol: end it now */
}

/* The worker's process exists and `fd` is its socket: send it the hello. */
static int send_raw(proc_tp *tp, int i, const uint8_t *data, size_t len);
static void hello_for(proc_tp *tp, int i);

/* The message before the hello, carrying the progress memfd when there is one.
 * The socket is new and empty, so it is taken at once. */
static int send_progress(proc_tp *tp, int i) {
  atomic_store_explicit(&tp->progress[(size_t)i * PROGRESS_WORDS], 0,
                        memory_order_relaxed);
  fs_msg m = {.op = FS_PROGRESS, .index = i};
  return msg_send(tp->w[i].ch.fd, &m, tp->progress_fd) ? MPX_ESYS : MPX_OK;
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
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    tp->spawn_errno = errno;
    return MPX_ESYS;
  }
  fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* The child of a threaded parent: close what it must not hold, then serve.
     */
    close(sv[0]);
    close(tp->wake_fd);
    if (tp->progress_fd >= 0)
      close(tp->progress_fd); /* it comes again over the socket */
    for (int k = 0; k < tp->n; k++) {
      if (tp->w[k].ch.fd >= 0)
        close(tp->w[k].ch.fd);
      if (tp->w[k].pidfd >= 0)
        close(tp->w[k].pidfd);
    }
    worker_main(sv[1], parent);
  }
  close(sv[1]);
  if (pid < 0) {
    tp->spawn_errno = errno;
    close(sv[0]);
    return MPX_ESYS;
  }
  pworker *w = &tp->w[i];
  w->pidfd = (int)syscall(SYS_pidfd_open, pid,
                          0); /* unreaped child: the pid is ours */
  attach(tp, i, pid, sv[0]);
  return MPX_OK;
}

static int spawn(proc_tp *tp, int i) {
  pworker *w = &tp->w[i];
  w->pid = 0;
  w->exited = false;
  w->kill_pending = w->kill_sent = false;
  if (tp->fs < 0)
    return spawn_direct(tp, i);
  fs_msg m = {.op = FS_SPAWN, .index = i};
  if (msg_send(tp->fs, &m, -1))
    return MPX_ESYS;
  w->state = W_SPAWNING;
  return MPX_OK;
}

/* Queue or write one frame. */
static int send_raw(proc_tp *tp, int i, const uint8_t *data, size_t len) {
  pworker *w = &tp->w[i];
  if (w->state != W_LIVE)
    return MPX_EWORKER_LOST;
  size_t sent = 0;
  if (!w->oq) {
    struct iovec v = {.iov_base = (void *)data, .iov_len = len};
    int r = mpx__chan_sendv_nb(&w->ch, &v, 1, &sent);
    if (r == 1)
      return MPX_OK;
    if (r < 0) {
      if (r == MPX_ETOOBIG)
        return r;
      close_worker(tp, i, r == MPX_EEOF ? NULL : "could not be written to");
      return MPX_EWORKER_LOST;
    }
  }
  if (w->oq && w->oq_bytes + len - sent > tp->cfg->max_worker_memory) {
    close_worker(tp, i, "did not read its input (more than max_worker_memory queued)");
    return MPX_EWORKER_LOST;
  }
  oframe *f = malloc(sizeof *f + len);
  if (!f) {
    close_worker(tp, i, "could not be sent to (out of memory)");
    return MPX_EWORKER_LOST;
  }
  f->next = NULL;
  f->len = len;
  f->sent = sent;
  if (len)
    memcpy(f->data, data, len);
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
    int r = mpx__chan_sendv_nb(&w->ch, &v, 1, &f->sent);
    if (r == 0)
      return;
    if (r < 0) {
      close_worker(tp, i, r == MPX_EEOF ? NULL : "could not be written to");
      return;
    }
    w->oq = f->next;
    if (!w->oq)
      w->oq_tail = NULL;
    w->oq_bytes -= f->len;
    free(f);
  }
}

static int pt_send(mpx_transport *self, int worker, const uint8_t *data,
                   size_t len) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n)
    return MPX_EINVAL;
  if (len > tp->lim.max_message)
    return MPX_ETOOBIG;
  return send_raw(tp, worker, data, len);
}

static void pt_wake(mpx_transport *self) {
  proc_tp *tp = (proc_tp *)self;
  uint64_t one = 1;
  ssize_t r = write(tp->wake_fd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is already non-zero, a wake is due anyway */
}

/* Who worker i is: the pid we forked or the fork server reported, this host. */
static int pt_peer(mpx_transport *self, int worker, mpx__peer *out) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n)
    return MPX_EINVAL;
  *out = (mpx__peer){.pid = (int)tp->w[worker].pid, .rank = -1, .slots = 1};
  snprintf(out->host, sizeof out->host, "%s", tp->host);
  return MPX_OK;
}

static int pt_kill(mpx_transport *self, int worker, bool replace) {
  proc_tp *tp = (proc_tp *)self;
  if (worker < 0 || worker >= tp->n)
    return MPX_EINVAL;
  pworker *w = &tp->w[worker];
  w->replace = replace;
  if (w->state == W_NONE)
    return MPX_OK;
  if (!w->snapped) { /* the task running when the dispatcher decided, not at the death */
    w->snapped = true;
    w->snap_running = atomic_load_explicit(
        &tp->progress[(size_t)worker * PROGRESS_WORDS], memory_order_relaxed);
  }
  kill_worker(tp, worker);
  return MPX_OK;
}

/* ---- events
 * ---------------------------------------------------------------------------------
 */

static void describe(const pworker *w, const mpx__config *cfg, char *buf,
                     size_t n) {
  int st = w->status;
  if (st == -1)
    snprintf(
        buf, n,
        "pid %d ended; its status is unknown (the program ignores SIGCHLD)",
        (int)w->pid);
  else if (w->why[0] && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL &&
           w->kill_sent)
    snprintf(buf, n, "pid %d %s and was killed", (int)w->pid, w->why);
  else if (WIFSIGNALED(st))
    snprintf(buf, n, "pid %d was killed by signal %d (%s)%s", (int)w->pid,
             WTERMSIG(st), strsignal(WTERMSIG(st)),
             WCOREDUMP(st) ? ", core dumped" : "");
  else if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && w->retiring)
    snprintf(buf, n, "pid %d retired after %ld tasks", (int)w->pid,
             cfg->max_tasks_per_worker);
  else if (WIFEXITED(st))
    snprintf(buf, n, "pid %d exited with status %d%s%s", (int)w->pid,
             WEXITSTATUS(st), w->why[0] ? " after it " : "", w->why);
  else
    snprintf(buf, n, "pid %d ended (wait status 0x%x)", (int)w->pid, st);
}

/* A CLOSED worker whose status is known: report it, then replace it. */
static bool take_lost(proc_tp *tp, mpx__event *ev) {
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state != W_CLOSED || !w->exited)
      continue;
    ev->kind = MPX__EV_WORKER_LOST;
    ev->worker = i;
    describe(w, tp->cfg, ev->detail, sizeof ev->detail);
    /* the process is reaped: nothing writes its progress word any more */
    ev->running_known = tp->progress_fd >= 0;
    ev->running = atomic_exchange_explicit(
        &tp->progress[(size_t)i * PROGRESS_WORDS], 0, memory_order_relaxed);
    if (w->snapped)
      ev->running = w->snap_running;
    w->snapped = false;
    w->state = W_NONE;
    if (w->pidfd >= 0)
      close(w->pidfd);
    w->pidfd = -1;
    if (w->replace && !tp->stopping && spawn(tp, i)) {
      /* could not even ask for a replacement: the slot stays empty */
      fprintf(stderr, "mpx: could not start a replacement for worker %d\n", i);
    }
    return true;
  }
  return false;
}

/* Read one frame from worker i if it has one. 1: *ev is a message; 0: nothing
 * now. */
static int read_worker(proc_tp *tp, int i, mpx__event *ev) {
  pworker *w = &tp->w[i];
  mpx__chan_shrink(
      &w->ch, KEEP_BUF); /* the last frame it returned is consumed by now */
  bool looked = false;
  for (;;) {
    const void *data;
    size_t len;
    int r = mpx__chan_recv_nb(&w->ch, &data, &len);
    if (r == 0 && w->exited && !looked) {
      /* A 0 may come from the read-ahead's note that the fd was empty at its last read; the
       * worker may have written more before it died. Look at the fd itself once. */
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
        close_worker(tp, i,
                     NULL); /* all it wrote is read; someone else holds it */
      return 0;
    }
    char why[96];
    if (r == MPX_EEOF)
      why[0] = '\0';
    else if (r == MPX_ETOOBIG)
      snprintf(why, sizeof why, "sent a frame over the limit of %zu bytes",
               tp->lim.max_message);
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
    int r = msg_recv(tp->fs, &m, &fd, MSG_DONTWAIT);
    if (r < 0 && errno == EAGAIN)
      return;
    if (r <= 0) { /* the fork server died: every worker died with it */
      close(tp->fs);
      tp->fs = -1;
      for (int i = 0; i < tp->n; i++) {
        pworker *w = &tp->w[i];
        if (w->state == W_SPAWNING)
          w->state = W_CLOSED;
        if (w->state != W_NONE && !w->exited) {
          w->exited = true;
          w->status = SIGKILL; /* as if killed: its reaper is gone */
          if (!w->why[0])
            snprintf(w->why, sizeof w->why, "lost its fork server");
        }
      }
      return;
    }
    if (m.index < 0 || m.index >= tp->n) {
      if (fd >= 0)
        close(fd);
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
      msg_send(tp->fs, &k, -1);
      tp->spawn_errno = EMFILE;
      fprintf(stderr, "mpx: could not start worker %d: %s\n", m.index, ran_out(EMFILE));
      w->state = W_NONE;
      continue;
    }
    if (fd >= 0)
      close(fd);
    if (m.op == FS_SPAWN_FAILED && w->state == W_SPAWNING) {
      fprintf(stderr, "mpx: the fork server could not start worker %d: %s\n",
              m.index, ran_out(m.status));
      tp->spawn_errno = m.status;
      w->state = W_NONE;
    } else if (m.op == FS_EXITED && m.pid == w->pid && w->state >= W_LIVE) {
      w->exited = true;
      w->status = m.status;
      if (w->state == W_LIVE)
        w->readable = true; /* read what it wrote, then close */
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
  if (w->state == W_LIVE)
    w->readable = true;
}

/* Kill workers that closed their socket but do not exit; poll timeout until the
 * next such. */
static int close_deadlines(proc_tp *tp, int ms) {
  double now = now_s();
  for (int i = 0; i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->state != W_CLOSED || w->exited)
      continue;
    if (now >= w->kill_at) {
      kill_worker(tp, i);
      /* direct mode without a pidfd: wait for it here (it was killed) */
      if (tp->fs < 0 && w->pidfd < 0 && w->pid > 0 &&
          waitpid(w->pid, &w->status, 0) == w->pid)
        w->exited = true;
      if (tp->fs < 0 && w->pidfd < 0 && !w->exited)
        w->exited = true, w->status = SIGKILL;
      continue;
    }
    int left = (int)((w->kill_at - now) * 1000) + 1;
    if (ms < 0 || left < ms)
      ms = left;
  }
  return ms;
}

/* Wait for fds (up to ms) and note what is ready. Returns true if the wake fd
 * fired. */
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
      tp->pfd[k] = (struct pollfd){.fd = w->ch.fd,
                                   .events = POLLIN | (w->oq ? POLLOUT : 0)};
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
  if (r <= 0)
    return false;
  bool woke = false;
  for (int j = 0; j < k; j++) {
    short re = tp->pfd[j].revents;
    if (!re)
      continue;
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
      if (re & POLLOUT)
        flush(tp, i);
      if (re & (POLLIN | POLLHUP | POLLERR))
        tp->w[i].readable = true;
    }
  }
  return woke;
}

/* An event without blocking: a loss ready to report, or a frame from a worker
 * known readable. */
static bool take_ready(proc_tp *tp, mpx__event *ev) {
  for (int k = 0; k < tp->n; k++) {
    int i = (tp->rr + k) % tp->n;
    if (tp->w[i].state == W_LIVE && tp->w[i].readable &&
        read_worker(tp, i, ev)) {
      tp->rr = (i + 1) % tp->n;
      return true;
    }
  }
  return take_lost(tp, ev);
}

static int pt_poll(mpx_transport *self, mpx__event *ev, int timeout_ms) {
  proc_tp *tp = (proc_tp *)self;
  ev->kind = MPX__EV_NONE;
  if (take_ready(tp, ev))
    return MPX_OK;
  /* Nothing known: look without blocking for a short while (a reply to a small
   * batch is usually a few microseconds away, and sleeping in poll costs two
   * context switches), then sleep. */
  double start = now_s();
  double spin_end = start + (double)tp->spin_ns * 1e-9;
  double deadline = start + (timeout_ms > 0 ? timeout_ms : 0) / 1000.0;
  for (;;) {
    double now = now_s();
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
    if (take_ready(tp, ev) || woke || timeout_ms == 0)
      return MPX_OK;
    if (ms == 0)
      sched_yield();
  }
}

/* ---- start, stop, destroy
 * -------------------------------------------------------------------- */

static int make_hello(proc_tp *tp) {
  const mpx__config *cfg = tp->cfg;
  size_t len = sizeof(hello) + cfg->initargs_len;
  tp->hello = malloc(len);
  if (!tp->hello)
    return MPX_ENOMEM;
  hello h;
  memset(&h, 0, sizeof h);
  h.magic = HELLO_MAGIC;
  h.max_tasks = cfg->max_tasks_per_worker;
  h.max_payload = cfg->max_payload;
  h.max_message = tp->lim.max_message;
  h.has_init = cfg->initializer != NULL;
  h.init_id = cfg->initializer ? cfg->initializer->id : 0;
  h.initargs_len = cfg->initargs_len;
  memcpy(tp->hello, &h, sizeof h);
  if (cfg->initargs_len)
    memcpy(tp->hello + sizeof h, cfg->initargs, cfg->initargs_len);
  tp->hello_len = len;
  return MPX_OK;
}

/* The progress words. Without a memfd (an old kernel, or none left) they are
 * private memory and losses charge every task the worker held, as under MPI. */
static int make_progress(proc_tp *tp) {
  size_t len = (size_t)tp->n * PROGRESS_WORDS * sizeof(uint64_t);
  tp->progress_fd = memfd_create("mpx-progress", MFD_CLOEXEC);
  if (tp->progress_fd >= 0 && ftruncate(tp->progress_fd, (off_t)len) == 0) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   tp->progress_fd, 0);
    if (p != MAP_FAILED) {
      tp->progress = p;
      return MPX_OK;
    }
  }
  if (tp->progress_fd >= 0)
    close(tp->progress_fd);
  tp->progress_fd = -1;
  tp->progress = calloc(len / sizeof(uint64_t), sizeof(uint64_t));
  return tp->progress ? MPX_OK : MPX_ENOMEM;
}

static void pt_stop(mpx_transport *self, bool wait);
static void pt_destroy(mpx_transport *self);

static int pt_start(mpx_transport **out, const mpx__config *cfg) {
  proc_tp *tp = calloc(1, sizeof *tp);
  if (!tp)
    return MPX_ENOMEM;
  tp->cfg = cfg;
  tp->n = cfg->workers;
  tp->lim = mpx__limits_default(cfg->max_payload);
  if (cfg->max_worker_memory && tp->lim.max_message > cfg->max_worker_memory)
    tp->lim.max_message = cfg->max_worker_memory; /* a larger frame is refused unread */
  if (gethostname(tp->host, sizeof tp->host - 1))
    snprintf(tp->host, sizeof tp->host, "?");
  tp->fs = -1;
  tp->progress_fd = -1;
  tp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int wake_errno = errno;
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
  if (!tp->w || !tp->pfd || !tp->pfd_w || !tp->pfd_kind || tp->wake_fd < 0 ||
      make_hello(tp)) {
    int rc = tp->wake_fd < 0 ? MPX_ESYS : MPX_ENOMEM;
    if (tp->wake_fd < 0)
      mpx__set_errmsg("could not create the executor's wake-up eventfd: %s",
                      ran_out(wake_errno));
    pt_destroy((mpx_transport *)tp);
    return rc;
  }
  if (make_progress(tp)) {
    pt_destroy((mpx_transport *)tp);
    return MPX_ENOMEM;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  tp->spin_ns = cpus > (long)tp->n + 2 ? SPIN_NS : 0;
  ((hello *)(void *)tp->hello)->spin_ns = tp->spin_ns;
  tp->fs = fs_session();
  if (tp->fs < 0 && errno) {
    mpx__set_errmsg("could not open a session with the fork server: %s",
                    ran_out(errno));
    pt_destroy((mpx_transport *)tp);
    return MPX_ESYS;
  }
  int rc = MPX_OK, failed = -1;
  const char *why = NULL;
  for (int i = 0; i < tp->n && !rc; i++) {
    failed = i;
    if ((rc = spawn(tp, i)) && !tp->spawn_errno)
      tp->spawn_errno = errno;
    while (!rc && tp->w[i].state == W_SPAWNING) {
      struct pollfd p = {.fd = tp->fs, .events = POLLIN};
      if (poll(&p, 1, 10000) <= 0)
        rc = MPX_ESYS, why = "the fork server did not answer within 10 s";
      else
        read_server(tp);
      if (tp->fs < 0)
        rc = MPX_ESYS, why = "the fork server is gone";
    }
    if (!rc && tp->w[i].state == W_NONE)
      rc = MPX_ESYS;
  }
  if (rc) {
    mpx__set_errmsg("could not start worker %d of %d: %s", failed, tp->n,
                    why                ? why
                    : tp->spawn_errno ? ran_out(tp->spawn_errno)
                                      : "unknown reason");
    pt_stop((mpx_transport *)tp, true);
    pt_destroy((mpx_transport *)tp);
    return rc;
  }
  *out = (mpx_transport *)tp;
  return MPX_OK;
}

/* The hello of worker i (replacements): index and placement. */
static void hello_for(proc_tp *tp, int i) {
  memcpy(&((hello *)(void *)tp->hello)->place, &tp->cfg->places[i],
         sizeof(mpx_placement));
  ((hello *)(void *)tp->hello)->index = i;
}

static bool all_gone(proc_tp *tp) {
  for (int i = 0; i < tp->n; i++)
    if (tp->w[i].state != W_NONE)
      return false;
  return true;
}

static void pt_stop(mpx_transport *self, bool wait) {
  proc_tp *tp = (proc_tp *)self;
  tp->stopping = true;
  if (!wait)
    return;
  double t0 = now_s();
  bool killed = false;
  while (!all_gone(tp)) {
    if (!killed && now_s() - t0 > STOP_GRACE) {
      for (int i = 0; i < tp->n; i++)
        kill_worker(tp, i);
      killed = true;
    }
    if (now_s() - t0 > 3 * STOP_GRACE)
      break; /* the reaper does not answer: give up */
    mpx__event ev;
    while (take_ready(tp, &ev))
      continue; /* late results and losses are dropped */
    if (all_gone(tp))
      break;
    int ms = close_deadlines(tp, 50);
    wait_fds(tp, ms < 0 || ms > 50 ? 50 : ms);
  }
}

static void pt_destroy(mpx_transport *self) {
  proc_tp *tp = (proc_tp *)self;
  if (!tp)
    return;
  for (int i = 0; tp->w && i < tp->n; i++) {
    pworker *w = &tp->w[i];
    if (w->ch.fd >= 0)
      mpx__chan_close(&w->ch);
    free(w->ch.body);
    oq_free(w);
    if (tp->fs < 0 && w->pid > 0 && !w->exited && w->state != W_NONE) {
      /* direct mode: never leave a zombie */
      if (w->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
      else
        kill(w->pid, SIGKILL);
      while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
        continue;
    }
    if (w->pidfd >= 0)
      close(w->pidfd);
  }
  if (tp->fs >= 0)
    close(tp->fs); /* the fork server ends what is left of this session */
  if (tp->wake_fd >= 0)
    close(tp->wake_fd);
  if (tp->progress_fd >= 0) {
    munmap((void *)tp->progress,
           (size_t)tp->n * PROGRESS_WORDS * sizeof(uint64_t));
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

const mpx_transport_ops mpx__process_transport = {
    .name = "processes",
    .start = pt_start,
    .send = pt_send,
    .poll = pt_poll,
    .kill = pt_kill,
    .peer = pt_peer,
    .wake = pt_wake,
    .stop = pt_stop,
    .destroy = pt_destroy,
};
