/* run.c: the mpx task of mpx-farm: run one command with /bin/sh -c and report how it ended.
 *
 * The task "mpx_farm_run" receives a command record (record.c), starts `/bin/sh -c CMD` with
 * vfork+execve (the child shares the parent's memory until exec: no page-table copy, the cheapest
 * way to start a process from a large multi-threaded parent), waits for it and returns a result
 * record: exit value, signal, pid, host, rank, slot, start time, runtime, output sizes and, in
 * grouped mode, the output itself.
 * Guarantees:
 *  - the child has its own process group (a timeout or a stop signals the whole tree it started),
 *    stdin from /dev/null, default signal dispositions and an empty signal mask, and dies with the
 *    thread that started it (PR_SET_PDEATHSIG): a farm that is SIGKILLed leaves no task running,
 *    so a resumed run never races an orphan of the previous one;
 *  - the timeout, the walltime kill (kill_at) and a farm-wide stop are enforced here, in the
 *    worker: SIGTERM to the group, then SIGKILL after `grace` seconds. A stop reaches the task
 *    through the stop pipe (this process and its forked workers) or as a stop request on its
 *    future (mpx_task_should_stop, looked at every 50 ms: MPI ranks);
 *  - every descriptor this file opens is close-on-exec, so a task never holds another task's pipe;
 *  - the environment adds MPX_FARM_SEQ, _INDEX, _LINE, _REPEAT, _ATTEMPT, _SLOT, _NODE, _RANK,
 *    _CORES (and _CPUSET with --bind; CUDA/ROCR_VISIBLE_DEVICES with GPUs), PARALLEL_SEQ and
 *    DISBATCH_REPEAT_INDEX for scripts written for GNU parallel or disBatch.
 * Locking: none shared between tasks except the pack file's mutex (output.c); each call owns its
 * pipes and buffers. The stop pipe is created before mpx_init so forked workers inherit it; once
 * written it stays readable, so every running and later task sees the stop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "farm.h"

extern char **environ;

static int stop_pipe[2] = {-1, -1};
static char **base_env; /* environ at setup, without the variables we set per task */
static size_t base_n;
static char host[256];
static int my_rank;

/* Set per task, or dropped: what the launcher set for the farm's own ranks (OMPI_* but the
 * user's MCA choices and the root permission, PMIX_*, PMI_*) would make an MPI (or mpx) program
 * started by a task believe it is a rank of the farm's job. */
static const char *const overridden[] = {"MPX_FARM_",
                                         "PARALLEL_SEQ=",
                                         "DISBATCH_REPEAT_INDEX=",
                                         "OMPI_",
                                         "PMIX_",
                                         "PMI_",
                                         "OMPI_MCA_ess",
                                         "OMPI_MCA_pmix",
                                         "OMPI_MCA_orte_",
                                         "OMPI_MCA_initial_wdir",
                                         "OMPI_MCA_shmem_RUNTIME_QUERY_hint",
                                         NULL};
static const char *const kept[] = {"OMPI_MCA_", "OMPI_ALLOW_RUN_AS_ROOT", NULL};

static int has_prefix(const char *e, const char *const *list, int from, int to) {
  for (int i = from; i < to && list[i]; i++)
    if (strncmp(e, list[i], strlen(list[i])) == 0) return 1;
  return 0;
}

static int is_overridden(const char *e, int gpus) {
  if (has_prefix(e, overridden, 0, 3)) return 1;
  if (has_prefix(e, overridden, 3, 6) && !has_prefix(e, kept, 0, 2)) return 1;
  if (has_prefix(e, overridden, 6, 100)) return 1;
  if (gpus && (strncmp(e, "CUDA_VISIBLE_DEVICES=", 21) == 0 ||
               strncmp(e, "ROCR_VISIBLE_DEVICES=", 21) == 0))
    return 1;
  return 0;
}

int farm_run_setup(void) {
  if (pipe2(stop_pipe, O_CLOEXEC) < 0) return -1;
  (void)fcntl(stop_pipe[1], F_SETFL, O_NONBLOCK);
  size_t n = 0;
  while (environ[n]) n++;
  base_env = calloc(n + 1, sizeof *base_env);
  if (!base_env) return -1;
  for (size_t i = 0; i < n; i++)
    if (!is_overridden(environ[i], 0)) base_env[base_n++] = environ[i];
  if (gethostname(host, sizeof host - 1) < 0) strcpy(host, "localhost");
  static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                          "SLURM_PROCID", NULL};
  for (int i = 0; rank_vars[i]; i++) {
    const char *v = getenv(rank_vars[i]);
    if (v && *v) {
      my_rank = atoi(v);
      break;
    }
  }
  return 0;
}

void farm_run_stop_all(void) {
  if (stop_pipe[1] >= 0) {
    ssize_t w = write(stop_pipe[1], "x", 1); /* async-signal-safe; once is enough */
    (void)w;
  }
}

/* ---- spawning -------------------------------------------------------------------------------- */

/* vfork + execve /bin/sh -c cmd. All signals are blocked around vfork so that no handler of the
 * parent runs in the child while it shares the parent's memory; the child resets every caught
 * signal to its default before unblocking. Returns the pid, or -1 with errno. */
static pid_t spawn_sh(const char *cmd, char *const *envp, const int fds[3], const cpu_set_t *cpus) {
  char *argv[] = {"sh", "-c", (char *)cmd, NULL};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t parent = getpid();
  pid_t pid = vfork();
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    for (int s = 1; s < NSIG; s++) {
      struct sigaction sa;
      if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &sa) < 0) continue;
      if (sa.sa_handler != SIG_DFL || s == SIGPIPE) {
        sa.sa_handler = SIG_DFL;
        sa.sa_flags = 0;
        sigaction(s, &sa, NULL);
      }
    }
    for (int i = 0; i < 3; i++)
      if (fds[i] != i) dup2(fds[i], i);
    if (cpus) sched_setaffinity(0, sizeof *cpus, cpus);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve("/bin/sh", argv, envp);
    _exit(127);
  }
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return pid;
}

/* ---- environment ----------------------------------------------------------------------------- */

typedef struct envbuf {
  char **v;
  size_t n;
  char store[1024];
  size_t used;
} envbuf;

static void env_add(envbuf *e, const char *name, const char *fmt_val) {
  size_t need = strlen(name) + 1 + strlen(fmt_val) + 1;
  if (e->used + need > sizeof e->store) return;
  char *s = e->store + e->used;
  strcpy(s, name), strcat(s, "="), strcat(s, fmt_val);
  e->used += need;
  e->v[e->n++] = s;
}

static void env_num(envbuf *e, const char *name, long v) {
  char b[32];
  snprintf(b, sizeof b, "%ld", v);
  env_add(e, name, b);
}

/* The GPUs of slot `slot` out of `slots`: every slots-th entry of the list, or one shared entry
 * when there are fewer GPUs than slots. */
static void gpu_share(const char *list, int slot, int slots, char *out, size_t len) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", list);
  char *ids[256];
  int n = 0;
  for (char *save, *t = strtok_r(tmp, ",", &save); t && n < 256; t = strtok_r(NULL, ",", &save))
    ids[n++] = t;
  out[0] = '\0';
  if (n == 0) return;
  if (n < slots) {
    snprintf(out, len, "%s", ids[slot % n]);
    return;
  }
  size_t used = 0;
  for (int i = slot; i < n; i += slots) {
    int w = snprintf(out + used, len - used, "%s%s", used ? "," : "", ids[i]);
    if (w < 0 || (size_t)w >= len - used) break;
    used += (size_t)w;
  }
}

/* Parse an OS CPU list ("0-3,8") into a cpu_set_t. */
static int parse_cpulist(const char *s, cpu_set_t *set) {
  CPU_ZERO(set);
  while (*s) {
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end == s) return -1;
    s = end;
    if (*s == '-') {
      b = strtol(s + 1, &end, 10);
      if (end == s + 1) return -1;
      s = end;
    }
    for (long c = a; c <= b && c < CPU_SETSIZE; c++) CPU_SET((int)c, set);
    if (*s == ',')
      s++;
    else if (*s)
      return -1;
  }
  return 0;
}

/* ---- waiting -----------------------------------------------------------------------------------
 */

/* Output kept per stream in grouped and packed modes: the result of a task must fit mpx's
 * max_payload (1 GiB) on the processes and MPI backends. Bytes beyond it are read (the task does
 * not block) and counted, not kept; stderr says how many. --results has no limit. */
#define FARM_CAPTURE_MAX ((size_t)256 << 20)

typedef struct capture {
  char *p;
  size_t n, cap;
  uint64_t dropped;
} capture;

static int cap_read(int fd, capture *c) {
  for (;;) {
    if (c->n >= FARM_CAPTURE_MAX) {
      char scratch[65536];
      ssize_t r = read(fd, scratch, sizeof scratch);
      if (r > 0) {
        c->dropped += (uint64_t)r;
        continue;
      }
      if (r == 0) return 0;
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 1 : 0;
    }
    if (c->cap - c->n < 65536) {
      size_t cap = c->cap ? c->cap * 2 : 65536;
      char *np = realloc(c->p, cap);
      if (!np) return -1;
      c->p = np, c->cap = cap;
    }
    ssize_t r = read(fd, c->p + c->n, c->cap - c->n);
    if (r > 0) {
      c->n += (size_t)r;
      if ((size_t)r < 65536) return 1;
      continue;
    }
    if (r == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 1;
    return 0;
  }
}

static int cap_note(capture *c, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *np = realloc(c->p, c->n + la + lb + 2);
  if (!np) return -1;
  c->p = np;
  memcpy(c->p + c->n, a, la), memcpy(c->p + c->n + la, b, lb);
  c->n += la + lb;
  c->p[c->n++] = '\n';
  c->cap = c->n + 1;
  return 0;
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct waited {
  int status;
  int outcome; /* FARM_R_TIMEOUT / _DEADLINE / _STOPPED when we signalled it, else -1 */
} waited;

/* Read the pipes until EOF and reap the child, enforcing the timeout, the walltime and a stop. */
static void wait_child(mpx_task_ctx *ctx, pid_t pid, int out_fd, int err_fd, capture *out,
                       capture *err, const farm_cmd *c, double t0, waited *w) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  double term_at = c->timeout > 0 ? t0 + c->timeout : -1;
  int term_why = FARM_R_TIMEOUT;
  if (c->kill_at > 0) {
    /* the walltime is an epoch time: convert it with a clock pair read now, not with t0 (the
     * start, before the fork, which a loaded host may have delayed: the task would then be
     * signalled early, before the coordinator sees the end, and it would start the next) */
    double k = mono() + (c->kill_at - farm_now());
    if (term_at < 0 || k < term_at) term_at = k, term_why = FARM_R_DEADLINE;
  }
  double kill_at = -1;
  int exited = 0, stop_seen = 0;
  w->outcome = -1;
  w->status = 0;
  while (!exited || out_fd >= 0 || err_fd >= 0) {
    struct pollfd p[4];
    int np = 0, io = -1, ie = -1, is = -1, ip = -1;
    if (out_fd >= 0) io = np, p[np++] = (struct pollfd){.fd = out_fd, .events = POLLIN};
    if (err_fd >= 0) ie = np, p[np++] = (struct pollfd){.fd = err_fd, .events = POLLIN};
    if (!stop_seen) is = np, p[np++] = (struct pollfd){.fd = stop_pipe[0], .events = POLLIN};
    if (!exited && pidfd >= 0) ip = np, p[np++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
    double now = mono(), next = -1;
    if (w->outcome < 0 && term_at >= 0) next = term_at;
    if (kill_at >= 0) next = next < 0 || kill_at < next ? kill_at : next;
    int ms = next < 0 ? -1 : (int)((next - now) * 1000 + 1);
    if (ms < -1 || (next >= 0 && ms < 0)) ms = 0;
    if (!exited && pidfd < 0 && (ms < 0 || ms > 20)) ms = 20; /* no pidfd: poll waitpid */
    /* the coordinator's stop (--halt now, a signal) reaches a task on another rank or process as
     * a stop request on its future: look every 50 ms */
    if (!stop_seen && (ms < 0 || ms > 50)) ms = 50;
    int r = poll(p, (nfds_t)np, ms);
    if (r < 0 && errno != EINTR) break;
    if (r > 0) {
      if (io >= 0 && p[io].revents && cap_read(out_fd, out) <= 0) close(out_fd), out_fd = -1;
      if (ie >= 0 && p[ie].revents && cap_read(err_fd, err) <= 0) close(err_fd), err_fd = -1;
      if (is >= 0 && p[is].revents) {
        stop_seen = 1;
        if (w->outcome < 0) term_at = mono(), term_why = FARM_R_STOPPED;
      }
    }
    if (!stop_seen && mpx_task_should_stop(ctx)) {
      stop_seen = 1;
      if (w->outcome < 0) term_at = mono(), term_why = FARM_R_STOPPED;
    }
    if (!exited && (pidfd < 0 || (ip >= 0 && p[ip].revents))) {
      pid_t rp = waitpid(pid, &w->status, pidfd < 0 ? WNOHANG : 0);
      if (rp == pid || (rp < 0 && errno == ECHILD)) exited = 1;
    }
    now = mono();
    if (w->outcome < 0 && term_at >= 0 && now >= term_at) {
      w->outcome = term_why;
      kill(-pid, SIGTERM);
      kill_at = now + (c->grace > 0 ? c->grace : 0);
    }
    if (kill_at >= 0 && now >= kill_at) {
      kill(-pid, SIGKILL);
      kill_at = -1;
    }
  }
  if (!exited) waitpid(pid, &w->status, 0);
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (pidfd >= 0) close(pidfd);
}

/* ---- slots -------------------------------------------------------------------------------------
 */

/* A process's slots: at most `slots` tasks of this process run at once, each in the lowest free
 * slot (its cpuset and GPU share). A process may have more task threads than slots (MPI ranks get
 * two per slot so the next task waits here, not a round trip away); a thread without a slot waits
 * for one, and gives up (-1) when the farm stops. */
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static unsigned char slot_busy[4096];

static int stopped(void) {
  struct pollfd p = {.fd = stop_pipe[0], .events = POLLIN};
  return poll(&p, 1, 0) > 0;
}

static int slot_acquire(int slots) {
  if (slots > (int)sizeof slot_busy) slots = (int)sizeof slot_busy;
  pthread_mutex_lock(&slot_mu);
  for (;;) {
    for (int i = 0; i < slots; i++)
      if (!slot_busy[i]) {
        slot_busy[i] = 1;
        pthread_mutex_unlock(&slot_mu);
        return i;
      }
    if (stopped()) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&slot_cv, &slot_mu, &ts);
  }
  pthread_mutex_unlock(&slot_mu);
  return -1;
}

static void slot_release(int slot) {
  pthread_mutex_lock(&slot_mu);
  slot_busy[slot] = 0;
  pthread_cond_signal(&slot_cv);
  pthread_mutex_unlock(&slot_mu);
}

/* ---- the task ----------------------------------------------------------------------------------
 */

static int open_result(const farm_cmd *c, const char *ext) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%lld.%s", c->dir, (long long)c->seq, ext);
  return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static int farm_run_task(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *outbuf) {
  farm_cmd c;
  if (farm_cmd_decode(arg, len, &c) < 0)
    return mpx_task_fail(ctx, MPX_EPROTO, "mpx-farm: malformed command record (%zu bytes)", len);
  int worker = mpx_task_worker(ctx), slot = 0;
  if (c.bind & FARM_SLOT_WORKER)
    slot = worker < 0 ? 0 : worker % c.slots;
  else if ((slot = slot_acquire(c.slots)) < 0) { /* stopped while waiting: never started */
    farm_res r = {.seq = c.seq,
                  .attempt = c.attempt,
                  .host = host,
                  .where = "",
                  .rank = my_rank,
                  .exitval = -1,
                  .outcome = FARM_R_STOPPED};
    void *p;
    int rc = mpx_buf_reserve(outbuf, farm_res_size(&r), &p);
    if (rc == 0) farm_res_encode(&r, p);
    return rc;
  }
  farm_res r = {.seq = c.seq,
                .attempt = c.attempt,
                .host = host,
                .where = "",
                .rank = my_rank,
                .slot = slot,
                .exitval = -1};

  /* environment */
  char **envv = malloc((base_n + 20) * sizeof *envv);
  if (!envv) return mpx_task_fail(ctx, MPX_ENOMEM, "mpx-farm: out of memory");
  int gpus = c.gpus[0] != '\0';
  size_t ne = 0;
  for (size_t i = 0; i < base_n; i++)
    if (!gpus || !is_overridden(base_env[i], 1)) envv[ne++] = base_env[i];
  envbuf e = {.v = envv + ne};
  env_num(&e, "MPX_FARM_SEQ", (long)c.seq);
  env_num(&e, "MPX_FARM_INDEX", (long)c.seq - 1);
  env_num(&e, "MPX_FARM_LINE", (long)c.line);
  if (c.repeat >= 0) env_num(&e, "MPX_FARM_REPEAT", c.repeat);
  env_num(&e, "MPX_FARM_ATTEMPT", c.attempt);
  env_num(&e, "MPX_FARM_SLOT", slot);
  env_add(&e, "MPX_FARM_NODE", host);
  env_num(&e, "MPX_FARM_RANK", my_rank);
  env_num(&e, "MPX_FARM_CORES", c.cores);
  env_num(&e, "PARALLEL_SEQ", (long)c.seq);
  if (c.repeat >= 0) env_num(&e, "DISBATCH_REPEAT_INDEX", c.repeat);
  cpu_set_t cpus, *cpusp = NULL;
  if (c.bind & FARM_BIND) {
    const mpx_topology *t;
    mpx_placement pl[1024];
    int n = c.slots < 1024 ? c.slots : 1024;
    if (mpx_topology_get(&t) == 0 && mpx_topology_place(t, MPX_BIND_CORE, n, pl) == 0 &&
        pl[slot % n].cpuset[0] && parse_cpulist(pl[slot % n].cpuset, &cpus) == 0) {
      cpusp = &cpus;
      env_add(&e, "MPX_FARM_CPUSET", pl[slot % n].cpuset);
    }
  }
  if (gpus) {
    char share[256];
    gpu_share(c.gpus, slot, c.slots, share, sizeof share);
    env_add(&e, "CUDA_VISIBLE_DEVICES", share);
    env_add(&e, "ROCR_VISIBLE_DEVICES", share);
  }
  envv[ne + e.n] = NULL;

  /* descriptors */
  int pout[2] = {-1, -1}, perr[2] = {-1, -1}, fds[3];
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fds[0] = devnull >= 0 ? devnull : 0;
  fds[1] = 1, fds[2] = 2;
  int ok = 1;
  if (c.out_mode == FARM_OUT_GROUP || c.out_mode == FARM_OUT_PACK) {
    ok = pipe2(pout, O_CLOEXEC) == 0 && pipe2(perr, O_CLOEXEC) == 0;
    fds[1] = pout[1], fds[2] = perr[1];
  } else if (c.out_mode == FARM_OUT_RESULTS) {
    fds[1] = open_result(&c, "out"), fds[2] = open_result(&c, "err");
    ok = fds[1] >= 0 && fds[2] >= 0;
  }
  capture out = {0}, err = {0};
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  r.start = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
  double t0 = mono();
  pid_t pid = ok ? spawn_sh(c.cmd, envv, fds, cpusp) : -1;
  int spawn_errno = errno;
  if (pout[1] >= 0) close(pout[1]);
  if (perr[1] >= 0) close(perr[1]);
  if (pid > 0) {
    waited w;
    if (pout[0] >= 0) (void)fcntl(pout[0], F_SETFL, O_NONBLOCK);
    if (perr[0] >= 0) (void)fcntl(perr[0], F_SETFL, O_NONBLOCK);
    wait_child(ctx, pid, pout[0], perr[0], &out, &err, &c, t0, &w);
    r.pid = (int)pid;
    if (WIFEXITED(w.status))
      r.exitval = WEXITSTATUS(w.status);
    else if (WIFSIGNALED(w.status))
      r.sig = WTERMSIG(w.status);
    if (w.outcome >= 0)
      r.outcome = w.outcome;
    else
      r.outcome = r.exitval == 0 && r.sig == 0 ? FARM_R_OK : FARM_R_FAIL;
  } else {
    if (pout[0] >= 0) close(pout[0]);
    if (perr[0] >= 0) close(perr[0]);
    r.outcome = FARM_R_SPAWN;
    r.exitval = 127;
    const char *msg = strerror(spawn_errno);
    if (cap_note(&err, "mpx-farm: cannot start /bin/sh: ", msg) < 0) err.n = 0;
  }
  r.runtime = mono() - t0;
  if (c.out_mode == FARM_OUT_RESULTS) {
    struct stat st;
    if (fds[1] >= 0 && fstat(fds[1], &st) == 0) r.out_len = (uint64_t)st.st_size;
    if (fds[2] >= 0 && fstat(fds[2], &st) == 0) r.err_len = (uint64_t)st.st_size;
    if (fds[1] >= 0) close(fds[1]);
    if (fds[2] >= 0) close(fds[2]);
  } else {
    r.out_len = out.n + out.dropped, r.err_len = err.n + err.dropped;
    char note[160];
    for (int k = 0; k < 2; k++) {
      uint64_t d = k ? err.dropped : out.dropped;
      if (!d) continue;
      snprintf(note, sizeof note, "%llu bytes of %s dropped (over %zu MiB; --results keeps all)",
               (unsigned long long)d, k ? "stderr" : "stdout", FARM_CAPTURE_MAX >> 20);
      (void)cap_note(&err, "mpx-farm: ", note);
    }
  }
  if (devnull >= 0) close(devnull);
  free(envv);
  char packname[512] = "";
  if (c.out_mode == FARM_OUT_PACK && farm_pack_append(c.dir, host, out.p, out.n, err.p, err.n,
                                                      packname, sizeof packname, &r.pack_off) == 0)
    r.where = packname;
  else if (c.out_mode == FARM_OUT_GROUP || c.out_mode == FARM_OUT_PACK)
    r.out = out.p, r.out_inline = out.n, r.err = err.p, r.err_inline = err.n;
  if (!(c.bind & FARM_SLOT_WORKER)) slot_release(slot);
  void *p;
  int rc = mpx_buf_reserve(outbuf, farm_res_size(&r), &p);
  if (rc == 0) farm_res_encode(&r, p);
  free(out.p), free(err.p);
  return rc == 0 ? 0 : mpx_task_fail(ctx, rc, "mpx-farm: no memory for the result");
}
MPX_TASK_NAMED(farm_run_task, "mpx_farm_run")
