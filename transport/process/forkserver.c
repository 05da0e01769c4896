/* forkserver.c: the process transport's fork server (see process_impl.h for the whole picture).
 *
 * fork() in a process that already runs threads copies only the calling thread, and any lock
 * another thread held (malloc arenas aside, which glibc resets) stays held in the child. So
 * mpx_init calls mpx__procs_init (the transport's init hook) while the process has one thread,
 * and that forks a small fork server: a single-threaded copy of the program that forks every
 * worker from its own image.
 *
 * Protocol. Each process transport opens a session with it (mpx__fs_session: a SOCK_SEQPACKET
 * socketpair whose one end is passed over the server's main socket with SCM_RIGHTS in an
 * FS_SESSION message). On a session the transport asks for SPAWN (worker index) and KILL (pid,
 * signal); the server answers SPAWNED (index, pid, and the parent's end of the new worker's
 * socketpair, SCM_RIGHTS) or SPAWN_FAILED (errno) and, since the workers are its children, reaps
 * them (SIGCHLD through a signalfd) and sends EXITED (index, pid, wait status). Only the reaper
 * signals a worker, so a recycled pid is never hit. When a session closes, the server kills what
 * is left of that session's workers; when the main socket closes (mpx_finalize, or the parent's
 * death) it kills all its workers, reaps them and exits.
 *
 * Lifetime. The server and the workers are forked with mpx__spawn's PR_SET_PDEATHSIG(SIGKILL) and
 * getppid() re-check: the parent's death kills the server, whose death kills the workers (a worker
 * also exits on EOF on its socket). Linux sends the death signal when the *thread* that forked
 * exits: mpx_init must run on a thread that lives as long as the process (main).
 *
 * Workers see the program as it was when mpx_init ran (the server's image), as with Python's
 * forkserver: global state set up after mpx_init is not in them; arguments and initargs are.
 * MPX_FORK_SERVER=0 in the environment makes mpx_init skip the fork server (for tests); so does
 * an MPI job (MPI libraries dislike fork; ranks use the MPI backend).
 *
 * Locking: the server itself is single-threaded. In the parent, the main socket (`fsrv`) is shared
 * by every transport and guarded by a mutex, so one FS_SESSION request goes at a time; sessions
 * are per transport. mpx__fs_send/recv are stateless. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "registry.h"
#include "os/fdmsg.h"
#include "os/spawn.h"
#include "process_impl.h"

/* The one process-wide fork server (mpx__procs_init .. mpx__procs_fini). */
static struct {
  pthread_mutex_t lock; /* sock: one request at a time */
  pid_t pid;            /* 0: none */
  int sock;
} fsrv = {PTHREAD_MUTEX_INITIALIZER, 0, -1};

/* Send `m` with an optional fd (SCM_RIGHTS). 0 or -1 (errno). */
int mpx__fs_send(int sock, const fs_msg *m, int fd) {
  for (;;) {
    ssize_t w = mpx__send_fd(sock, m, sizeof *m, fd, MSG_NOSIGNAL);
    if (w == (ssize_t)sizeof *m) return 0;
    if (w < 0 && errno == EINTR) continue;
    if (w >= 0) errno = EPROTO;
    return -1;
  }
}

/* Receive one message and an optional fd (*fd = -1 if none). 1 got one, 0 EOF, -1 error (errno;
 * EAGAIN on a nonblocking socket with nothing to read). A whole message whose fd could not be
 * installed (out of file descriptors) is 1 with *fd = -1 and errno = EMFILE. */
int mpx__fs_recv(int sock, fs_msg *m, int *fd, int flags) {
  struct iovec v = {.iov_base = m, .iov_len = sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr h = {
      .msg_iov = &v, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  *fd = -1;
  ssize_t r;
  do r = recvmsg(sock, &h, MSG_CMSG_CLOEXEC | flags);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return (int)r;
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
    if (*fd >= 0) close(*fd);
    *fd = -1;
    errno = EPROTO;
    return -1;
  }
  if (h.msg_flags & MSG_CTRUNC) { /* the fd sent could not be installed: out of fds. The */
    if (*fd >= 0) close(*fd);     /* message itself is whole: 1, *fd = -1, errno = EMFILE */
    *fd = -1;
    errno = EMFILE;
  }
  return 1;
}

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
      mpx__fs_send(session, &m, -1);
      return;
    }
    s->kids = k;
    s->capkids = cap;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
    m.status = errno;
    mpx__fs_send(session, &m, -1);
    return;
  }
  pid_t pid = mpx__spawn(MPX__SPAWN_DIE_WITH_PARENT, 0);
  if (pid == 0) {
    close(s->main_sock);
    close(s->sigfd);
    for (size_t i = 0; i < s->nsessions; i++) close(s->sessions[i]);
    close(sv[0]);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    mpx__worker_main(sv[1]);
  }
  close(sv[1]);
  if (pid < 0) {
    m.status = errno;
    close(sv[0]);
    mpx__fs_send(session, &m, -1);
    return;
  }
  s->kids[s->nkids++] = (fs_child){.pid = pid, .session = session, .index = index};
  m = (fs_msg){.op = FS_SPAWNED, .index = index, .pid = pid};
  if (mpx__fs_send(session, &m, sv[0])) kill(pid, SIGKILL); /* the session is gone */
  close(sv[0]);
}

static void fs_reap(fs_state *s) {
  struct signalfd_siginfo si;
  while (read(s->sigfd, &si, sizeof si) > 0) continue;
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
    for (size_t i = 0; i < s->nkids; i++) {
      if (s->kids[i].pid != pid) continue;
      fs_msg m = {.op = FS_EXITED, .index = s->kids[i].index, .pid = pid, .status = st};
      if (s->kids[i].session >= 0) mpx__fs_send(s->kids[i].session, &m, -1);
      s->kids[i] = s->kids[--s->nkids];
      break;
    }
}

static void fs_main(int main_sock) __attribute__((noreturn));
static void fs_main(int main_sock) {
  prctl(PR_SET_NAME, "mpx-forkserver");
  signal(SIGPIPE, SIG_IGN);
  signal(SIGCHLD, SIG_DFL); /* an inherited SIG_IGN would reap workers before we see a status */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  fs_state s = {.main_sock = main_sock, .sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)};
  if (s.sigfd < 0) _exit(70);
  struct pollfd *pfd = NULL;
  size_t cappfd = 0;
  for (;;) {
    size_t n = 2 + s.nsessions;
    if (n > cappfd) {
      struct pollfd *p = realloc(pfd, n * sizeof *p);
      if (!p) _exit(71);
      pfd = p;
      cappfd = n;
    }
    pfd[0] = (struct pollfd){.fd = main_sock, .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = s.sigfd, .events = POLLIN};
    for (size_t i = 0; i < s.nsessions; i++)
      pfd[2 + i] = (struct pollfd){.fd = s.sessions[i], .events = POLLIN};
    if (poll(pfd, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfd[1].revents) fs_reap(&s);
    for (size_t i = n; i-- > 2;) {
      if (!pfd[i].revents) continue;
      int sess = s.sessions[i - 2], fd;
      fs_msg m;
      int r = mpx__fs_recv(sess, &m, &fd, MSG_DONTWAIT);
      if (fd >= 0) close(fd);
      if (r < 0 && errno == EAGAIN) continue;
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
          if (s.kids[k].pid == m.pid && s.kids[k].session == sess) kill(m.pid, m.status);
    }
    if (pfd[0].revents) {
      fs_msg m;
      int fd;
      int r = mpx__fs_recv(main_sock, &m, &fd, MSG_DONTWAIT);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) break; /* mpx_finalize or the parent's death */
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
  for (size_t i = 0; i < s.nkids; i++) kill(s.kids[i].pid, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) continue;
  _exit(0);
}

int mpx__procs_init(mpx__init_ctx *ctx) {
  if (fsrv.pid > 0) return MPX_OK;
  const char *env = getenv("MPX_FORK_SERVER");
  if (env && !strcmp(env, "0")) return MPX_OK;
  /* a launcher's job (MPI) claimed this process: MPI libraries dislike fork; ranks use that backend */
  if (ctx->claimed) return MPX_OK;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) return MPX_ESYS;
  /* flushed: nothing buffered is copied into the server, so workers never repeat it */
  pid_t pid = mpx__spawn(MPX__SPAWN_FLUSH | MPX__SPAWN_DIE_WITH_PARENT, 0);
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return MPX_ESYS;
  }
  if (pid == 0) {
    close(sv[0]);
    fs_main(sv[1]);
  }
  close(sv[1]);
  fsrv.pid = pid;
  fsrv.sock = sv[0];
  return MPX_OK;
}

int mpx__procs_fini(mpx__init_ctx *ctx) {
  (void)ctx;
  if (fsrv.pid <= 0) return MPX_OK;
  pthread_mutex_lock(&fsrv.lock);
  close(fsrv.sock); /* EOF: the server kills and reaps its workers and exits */
  fsrv.sock = -1;
  pid_t pid = fsrv.pid;
  fsrv.pid = 0;
  pthread_mutex_unlock(&fsrv.lock);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) continue;
  return MPX_OK;
}

/* The fork server's pid, 0 if none (tests). */
int mpx__procs_server_pid(void);
int mpx__procs_server_pid(void) { return (int)fsrv.pid; }

/* Open a session: the returned socket receives SPAWNED/EXITED for the workers asked through it. -1
 * if there is no fork server (or it is gone; errno 0) or the session could not be made (errno). */
int mpx__fs_session(void) {
  int sv[2] = {-1, -1};
  pthread_mutex_lock(&fsrv.lock);
  int rc = -1;
  errno = 0;
  if (fsrv.pid > 0 && fsrv.sock >= 0 &&
      !socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
    fs_msg m = {.op = FS_SESSION};
    if (!mpx__fs_send(fsrv.sock, &m, sv[1]))
      rc = sv[0];
    else
      close(sv[0]);
    close(sv[1]);
  }
  pthread_mutex_unlock(&fsrv.lock);
  return rc;
}
