/* share_test: shared objects made after mpx_init, passed to pool tasks as arguments (issue 10,
 * part 3), on one backend (argv[1]: threads, processes, or mpi under mpirun -np 3).
 *
 * Failure paths first: a handle that is no object, a destroyed one and one pointing into an
 * object are refused with MPX_EINVAL and a message, in the caller and in a task (on processes the
 * worker asks the parent, which refuses: it answers only for the start of a live object it made).
 * Then a Lock, a Value, a Queue, a list, a dict and a Condition over the Lock, all made after
 * mpx_init, are used by 100 tasks: the counter the Lock guards (a read-modify-write), the queue's
 * items, the list's length and the dict's entries must be exact. On MPI, where ranks share no
 * memory, every such task fails at once with a message saying so. Last, on processes, a task
 * speaks the broker protocol itself (core/src/os/share.c): requests for addresses that are not the
 * start of a live object are refused without an fd, and garbage gets its socket closed. No timing
 * is asserted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

#define TASKS 100

typedef struct objs {
  mpx_lock *lock;
  mpx_value *count; /* a long, guarded by lock (created without its own lock) */
  mpx_queue *q;
  mpx_list *list;
  mpx_dict *dict;
  mpx_condition *cond; /* over lock */
  long i;
} objs;

#define TRY(expr, what)                                                                            \
  do {                                                                                             \
    int rc_ = (expr);                                                                              \
    if (rc_) return mpx_task_fail(ctx, rc_, "%s: %s", what, mpx_errmsg());                         \
  } while (0)

/* One pool task: everything a Python user does with Manager objects in Pool.apply_async. */
static int bump(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  objs o;
  if (len != sizeof o) return mpx_task_fail(ctx, MPX_EINVAL, "want objs");
  memcpy(&o, arg, sizeof o);
  TRY(mpx_lock_acquire(o.lock, true, -1), "lock");
  long *c;
  int rc = mpx_value_ptr(o.count, (void **)&c);
  if (rc) {
    mpx_lock_release(o.lock);
    return mpx_task_fail(ctx, rc, "value: %s", mpx_errmsg());
  }
  long v = *c;
  usleep(50); /* widen the window a missing lock would lose updates in */
  *c = v + 1;
  TRY(mpx_lock_release(o.lock), "unlock");
  TRY(mpx_queue_put(o.q, &o.i, sizeof o.i, true, -1), "queue");
  TRY(mpx_list_append(o.list, &o.i, sizeof o.i), "list");
  char key[32];
  snprintf(key, sizeof key, "k%ld", o.i);
  TRY(mpx_dict_set(o.dict, key, &o.i, sizeof o.i), "dict");
  TRY(mpx_condition_acquire(o.cond, true, -1), "condition");
  TRY(mpx_condition_notify_all(o.cond), "notify");
  TRY(mpx_condition_release(o.cond), "condition release");
  return MPX_OK;
}
MPX_TASK(bump)

/* Acquire whatever lock handle it is given: the error and message come back. */
static int grab(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  mpx_lock *l;
  if (len != sizeof l) return mpx_task_fail(ctx, MPX_EINVAL, "want a handle");
  memcpy(&l, arg, sizeof l);
  TRY(mpx_lock_acquire(l, true, 5), "lock");
  TRY(mpx_lock_release(l), "unlock");
  return MPX_OK;
}
MPX_TASK(grab)

/* Submit grab(l) and return its code; *msg gets a copy of its message. */
static int grab_in_task(mpx_executor *ex, mpx_lock *l, char *msg, size_t cap) {
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "grab", &l, sizeof l, &f));
  int code;
  const char *m;
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, &m));
  snprintf(msg, cap, "%s", m ? m : "");
  CHECK_OK(mpx_future_release(f));
  return code;
}

/* A hostile task: finds its broker socket (its only SOCK_SEQPACKET socket), asks for addresses
 * that are no object's start, then sends garbage. Result: {fds received, refusals, EOF seen}. */
static int forge(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  uintptr_t obj;
  if (len != sizeof obj) return mpx_task_fail(ctx, MPX_EINVAL, "want an address");
  memcpy(&obj, arg, sizeof obj);
  int b = -1;
  for (int fd = 3; fd < 1024 && b < 0; fd++) {
    int type = 0;
    socklen_t l = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_SEQPACKET) b = fd;
  }
  if (b < 0) return mpx_task_fail(ctx, MPX_ENOTFOUND, "no broker socket");
  struct {
    uint32_t magic, pad;
    uint64_t addr;
  } q = {0x6d707846u, 0, 0};
  uint64_t asks[3] = {obj + 8, obj + 4096 * 5, (uint64_t)(uintptr_t)&q};
  long got[3] = {0, 0, 0}; /* fds, refusals, eof */
  for (int k = 0; k < 3; k++) {
    q.addr = asks[k];
    if (send(b, &q, sizeof q, 0) != (ssize_t)sizeof q) return mpx_task_fail(ctx, MPX_ESYS, "send");
    struct {
      int32_t status;
      uint32_t pad;
      uint64_t addr, size;
    } r;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec v = {.iov_base = &r, .iov_len = sizeof r};
    struct msghdr h = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    if (recvmsg(b, &h, 0) != (ssize_t)sizeof r) return mpx_task_fail(ctx, MPX_ESYS, "recv");
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
      if (c->cmsg_type == SCM_RIGHTS) {
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        close(fd);
        got[0]++;
      }
    got[1] += r.status != 0;
  }
  if (send(b, "xyz", 3, 0) != 3) return mpx_task_fail(ctx, MPX_ESYS, "send garbage");
  struct pollfd p = {.fd = b, .events = POLLIN};
  char c;
  if (poll(&p, 1, 30000) == 1 && recv(b, &c, 1, 0) == 0) got[2] = 1; /* the parent hung up */
  return mpx_buf_set(out, got, sizeof got);
}
MPX_TASK(forge)

static void test_forged(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                    .workers = 1}));
  mpx_value *v;
  CHECK_OK(mpx_value_create(&v, sizeof(long), NULL, false));
  mpx_future *f;
  uintptr_t a = (uintptr_t)v;
  CHECK_OK(mpx_submit(ex, "forge", &a, sizeof a, &f));
  long got[3];
  CHECK_OK(mpx_future_result_copy(f, got, sizeof got, MPX_FOREVER));
  CHECK(got[0] == 0 && got[1] == 3 && got[2] == 1);
  CHECK_OK(mpx_future_release(f));
  /* that worker lost its broker; a use of a new object there fails, saying so */
  char msg[512];
  mpx_lock *l;
  CHECK_OK(mpx_lock_create(&l));
  CHECK_RC(grab_in_task(ex, l, msg, sizeof msg), MPX_EINVAL);
  if (!strstr(msg, "could not ask the parent") && !strstr(msg, "did not answer"))
    fprintf(stderr, "message: %s\n", msg);
  CHECK(strstr(msg, "could not ask the parent") || strstr(msg, "did not answer"));
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK_OK(mpx_lock_destroy(l));
  CHECK_OK(mpx_value_destroy(v));
}

/* Out of file descriptors (each object made after mpx_init holds one): objects are still made
 * and work in this process (they just cannot reach pool workers forked earlier). */
static void test_out_of_fds(void) {
  struct rlimit old, low;
  CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
  int top = 0;
  for (int fd = 0; fd < 4096; fd++) /* the highest open fd */
    if (fcntl(fd, F_GETFD) != -1) top = fd;
  low = old;
  low.rlim_cur = (rlim_t)top + 4;
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
  int held[4096], nheld = 0; /* fill every free descriptor below the limit */
  for (int fd; nheld < 4096 && (fd = dup(2)) >= 0;) held[nheld++] = fd;
  mpx_lock *ls[16];
  for (int i = 0; i < 16; i++) CHECK_OK(mpx_lock_create(&ls[i]));
  for (int i = 0; i < nheld; i++) close(held[i]);
  CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
  for (int i = 0; i < 16; i++) {
    CHECK_OK(mpx_lock_acquire(ls[i], true, 0));
    CHECK_OK(mpx_lock_release(ls[i]));
    CHECK_OK(mpx_lock_destroy(ls[i]));
  }
}

static void test_refused(mpx_executor *ex, bool mpi) {
  char msg[512];
  /* not an object at all: refused without being read */
  long junk[64] = {0};
  CHECK_RC(mpx_lock_acquire((mpx_lock *)(void *)junk, true, 0), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "not a live shared object"));
  CHECK_RC(mpx_lock_acquire(NULL, true, 0), MPX_EINVAL);
  /* destroyed: refused here (this used to read unmapped memory), and in a task */
  mpx_lock *gone;
  CHECK_OK(mpx_lock_create(&gone));
  CHECK_OK(mpx_lock_destroy(gone));
  CHECK_RC(mpx_lock_acquire(gone, true, 0), MPX_EINVAL);
  CHECK_RC(grab_in_task(ex, gone, msg, sizeof msg), MPX_EINVAL);
  CHECK(strstr(msg, "lock"));
  /* the wrong kind, and an address inside a live object: refused, in a task too */
  mpx_value *v;
  CHECK_OK(mpx_value_create(&v, sizeof(long), NULL, false));
  CHECK_RC(mpx_lock_acquire((mpx_lock *)(void *)v, true, 0), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "value") && strstr(mpx_errmsg(), "not a lock"));
  if (!mpi) {
    CHECK_RC(grab_in_task(ex, (mpx_lock *)(void *)v, msg, sizeof msg), MPX_EINVAL);
    CHECK(strstr(msg, "not a lock"));
  }
  CHECK_RC(grab_in_task(ex, (mpx_lock *)(void *)((char *)v + 64), msg, sizeof msg), MPX_EINVAL);
  /* a page past it: in the arena, but nothing the parent made starts there */
  CHECK_RC(grab_in_task(ex, (mpx_lock *)(void *)((char *)v + 4096 * 7), msg, sizeof msg),
           MPX_EINVAL);
  CHECK(strstr(msg, "lock"));
  CHECK_OK(mpx_value_destroy(v));
}

static void test_pool(mpx_executor *ex, bool mpi) {
  objs o = {0};
  long zero = 0;
  CHECK_OK(mpx_lock_create(&o.lock));
  CHECK_OK(mpx_value_create(&o.count, sizeof(long), &zero, false));
  CHECK_OK(mpx_queue_create(&o.q, 0, 64 << 10));
  CHECK_OK(mpx_list_create(&o.list, TASKS, sizeof(long)));
  CHECK_OK(mpx_dict_create(&o.dict, TASKS, 16, sizeof(long)));
  CHECK_OK(mpx_condition_create(&o.cond, o.lock));
  mpx_future *fs[TASKS];
  for (long i = 0; i < TASKS; i++) {
    o.i = i;
    CHECK_OK(mpx_submit(ex, "bump", &o, sizeof o, &fs[i]));
  }
  int failed = 0;
  for (int i = 0; i < TASKS; i++) {
    int code;
    const char *m;
    CHECK_OK(mpx_future_exception(fs[i], MPX_FOREVER, &code, &m));
    if (code) {
      failed++;
      if (!mpi) fprintf(stderr, "task %d: %s: %s\n", i, mpx_err_name(code), m ? m : "");
      /* MPI: memory cannot be shared across ranks, and the message says so */
      CHECK(mpi && code == MPX_EINVAL && m && strstr(m, "MPI ranks") && strstr(m, "lock"));
    }
    CHECK_OK(mpx_future_release(fs[i]));
  }
  long c = -1;
  CHECK_OK(mpx_value_get(o.count, &c, sizeof c));
  size_t n = 0;
  CHECK_OK(mpx_list_len(o.list, &n));
  if (mpi) {
    CHECK(failed == TASKS && c == 0 && n == 0);
  } else {
    CHECK(failed == 0);
    CHECK(c == TASKS);
    CHECK(n == TASKS);
    CHECK_OK(mpx_dict_len(o.dict, &n));
    CHECK(n == TASKS);
    char seen[TASKS] = {0};
    for (int i = 0; i < TASKS; i++) {
      long x;
      size_t len;
      CHECK_OK(mpx_queue_get(o.q, &x, sizeof x, &len, false, 0));
      CHECK(len == sizeof x && x >= 0 && x < TASKS && !seen[x]);
      seen[x] = 1;
    }
    CHECK_RC(mpx_queue_get_nowait(o.q, &c, sizeof c, &n), MPX_EEMPTY);
  }
  CHECK_OK(mpx_condition_destroy(o.cond));
  CHECK_OK(mpx_dict_destroy(o.dict));
  CHECK_OK(mpx_list_destroy(o.list));
  CHECK_OK(mpx_queue_destroy(o.q));
  CHECK_OK(mpx_value_destroy(o.count));
  CHECK_OK(mpx_lock_destroy(o.lock));
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_backend backend = check_backend(argc, argv);
  if (NO_FORK && backend == MPX_BACKEND_PROCESSES) return 0;
  bool mpi = backend == MPX_BACKEND_MPI;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2}));
  test_refused(ex, mpi);
  test_pool(ex, mpi);
  test_pool(ex, mpi); /* again: objects at new addresses, workers that already fetched others */
  CHECK_OK(mpx_executor_destroy(ex));
  if (backend == MPX_BACKEND_PROCESSES) test_forged();
  if (backend == MPX_BACKEND_THREADS) test_out_of_fds();
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "share_test %s: all passed\n", mpx_backend_name(backend));
  return 0;
}
