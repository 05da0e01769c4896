/* share.c: the table of this process's shared objects, the arena, and the broker protocol that
 * hands a pool worker the objects its parent made after mpx_init (see share.h).
 *
 * Broker protocol, over a SOCK_SEQPACKET socketpair per worker (transport/process makes it and
 * polls the parent's end): the worker sends one `req` (magic, address) and waits; the parent
 * answers one `rep` (status 0 with the object's size and its memfd over SCM_RIGHTS, or a
 * negative status and no fd). Requests go one at a time per worker (S.ask). */
#include "os/share.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "mpx/error.h"
#include "os/fdmsg.h"
#include "os/log.h"

#define EMPTY ((uintptr_t)0)
#define TOMB ((uintptr_t)1)
#define REQ_MAGIC 0x6d707846u /* "mpxF" */

typedef struct ent {
  _Atomic uintptr_t addr; /* EMPTY, TOMB, or the object's address (published last, release) */
  size_t size;            /* bytes mapped */
  int fd;                 /* the owner's memfd of an arena object, else -1 */
} ent;

typedef struct tab {
  struct tab *prev; /* a replaced table, kept: a lock-free reader may still be in it */
  size_t cap;       /* a power of two */
  size_t used;      /* live entries and tombstones */
  ent e[];
} tab;

static struct {
  pthread_mutex_t lock; /* table writes, the arena's bump pointer, serving */
  pthread_mutex_t ask;  /* a worker's requests, one at a time */
  _Atomic(tab *) tab;
  uintptr_t base, end, next; /* the arena (base 0: none) */
  pid_t owner;               /* the process that reserved it */
  int broker;                /* worker side: the socket to ask on, -1 */
} S = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, 0, -1};

typedef struct req {
  uint32_t magic, pad;
  uint64_t addr;
} req;
typedef struct rep {
  int32_t status;
  uint32_t pad;
  uint64_t addr, size;
} rep;

/* ---- fork ---------------------------------------------------------------------------------- */

static void before_fork(void) {
  pthread_mutex_lock(&S.ask);
  pthread_mutex_lock(&S.lock);
}
static void after_fork_parent(void) {
  pthread_mutex_unlock(&S.lock);
  pthread_mutex_unlock(&S.ask);
}
static void after_fork_child(void) {
  pthread_mutex_unlock(&S.lock);
  pthread_mutex_unlock(&S.ask);
  /* A child of a worker must not answer-steal on its parent's broker socket. */
  if (S.broker >= 0) close(S.broker);
  S.broker = -1;
}
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_register(void) {
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* ---- the table ----------------------------------------------------------------------------- */

static size_t slot_of(uintptr_t a, size_t cap) {
  return (size_t)(((uint64_t)(a >> 12) * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static ent *find_in(tab *t, uintptr_t a) {
  if (!t) return NULL;
  for (size_t i = slot_of(a, t->cap);; i = (i + 1) & (t->cap - 1)) {
    /* acquire: pairs with the release that published the entry (size, fd written before) */
    uintptr_t k = atomic_load_explicit(&t->e[i].addr, memory_order_acquire);
    if (k == a) return &t->e[i];
    if (k == EMPTY) return NULL;
  }
}

static ent *find(uintptr_t a) {
  /* acquire: pairs with the release in grow(): the new table's entries are visible */
  return find_in(atomic_load_explicit(&S.tab, memory_order_acquire), a);
}

/* Under S.lock: room for one more entry. false when out of memory. */
static bool grow(void) {
  tab *t = atomic_load_explicit(&S.tab, memory_order_relaxed); /* we hold the lock */
  if (t && (t->used + 1) * 2 <= t->cap) return true;
  size_t live = 0;
  if (t)
    for (size_t i = 0; i < t->cap; i++)
      if (atomic_load_explicit(&t->e[i].addr, memory_order_relaxed) > TOMB) live++;
  size_t cap = 64;
  while (cap < (live + 1) * 4) cap *= 2;
  tab *n = calloc(1, sizeof *n + cap * sizeof(ent));
  if (!n) return false;
  n->cap = cap;
  n->prev = t;
  for (size_t i = 0; t && i < t->cap; i++) {
    uintptr_t k = atomic_load_explicit(&t->e[i].addr, memory_order_relaxed);
    if (k <= TOMB) continue;
    size_t j = slot_of(k, cap);
    while (atomic_load_explicit(&n->e[j].addr, memory_order_relaxed)) j = (j + 1) & (cap - 1);
    n->e[j].size = t->e[i].size;
    n->e[j].fd = t->e[i].fd;
    atomic_store_explicit(&n->e[j].addr, k, memory_order_relaxed); /* published below */
    n->used++;
  }
  /* release: a reader that sees the new table sees its entries */
  atomic_store_explicit(&S.tab, n, memory_order_release);
  return true;
}

/* Under S.lock. */
static bool insert(uintptr_t a, size_t size, int fd) {
  if (!grow()) return false;
  tab *t = atomic_load_explicit(&S.tab, memory_order_relaxed);
  size_t i = slot_of(a, t->cap);
  while (atomic_load_explicit(&t->e[i].addr, memory_order_relaxed) != EMPTY)
    i = (i + 1) & (t->cap - 1);
  t->e[i].size = size;
  t->e[i].fd = fd;
  t->used++;
  /* release: a reader that finds the address finds size and fd */
  atomic_store_explicit(&t->e[i].addr, a, memory_order_release);
  return true;
}

static bool in_arena(uintptr_t a) { return S.base && a >= S.base && a < S.end; }

static size_t page_size(void) {
  long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? (size_t)p : 4096;
}

/* ---- objects ------------------------------------------------------------------------------- */

void mpx__share_init(void) {
  pthread_once(&atfork_once, atfork_register);
  pthread_mutex_lock(&S.lock);
  if (!S.base || S.owner != getpid()) {
    /* Address space only: PROT_NONE and MAP_NORESERVE commit nothing. Smaller tries for hosts
     * (or sanitizers) that limit the address space. */
    for (size_t len = (size_t)64 << 30; len >= ((size_t)1 << 30); len /= 4) {
      void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) continue;
      S.base = S.next = (uintptr_t)p;
      S.end = S.base + len;
      S.owner = getpid();
      break;
    }
  }
  pthread_mutex_unlock(&S.lock);
}

void *mpx__share_alloc(size_t size) {
  pthread_once(&atfork_once, atfork_register);
  size_t pg = page_size();
  if (size == 0 || size > SIZE_MAX - pg) {
    errno = EINVAL;
    return NULL;
  }
  size = (size + pg - 1) & ~(pg - 1);
  pthread_mutex_lock(&S.lock);
  void *p = MAP_FAILED;
  int fd = -1;
  if (S.base && S.owner == getpid() && size <= S.end - S.next) {
    fd = memfd_create("mpx-shared", MFD_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
      /* Out of file descriptors: the object still works for threads and children forked from
       * now on, but pool workers cannot fetch it (they are told it is not a live object). */
      static _Atomic bool warned;
      if (!atomic_exchange_explicit(&warned, true, memory_order_relaxed))
        mpx__log(MPX_LOG_WARN, "out of file descriptors: shared objects made from now on cannot "
                 "reach process-pool workers forked earlier (each holds one fd; raise ulimit -n)");
      goto anonymous;
    }
    if (fd >= 0 && ftruncate(fd, (off_t)size) == 0)
      p = mmap((void *)S.next, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      if (fd >= 0) close(fd);
      pthread_mutex_unlock(&S.lock);
      errno = e;
      return NULL;
    }
    S.next += size; /* never reused: a worker may still map the old object there */
  } else {
  anonymous:
    /* Before mpx_init, in a worker or a child, or the arena is used up: reaches only threads and
     * processes forked from here afterwards. */
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      pthread_mutex_unlock(&S.lock);
      return NULL;
    }
  }
  if (!insert((uintptr_t)p, size, fd)) {
    if (in_arena((uintptr_t)p))
      mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    else
      munmap(p, size);
    if (fd >= 0) close(fd);
    p = NULL;
    errno = ENOMEM;
  }
  pthread_mutex_unlock(&S.lock);
  return p;
}

void mpx__share_free(void *obj) {
  if (!obj) return;
  pthread_mutex_lock(&S.lock);
  ent *e = find((uintptr_t)obj);
  if (e) {
    size_t size = e->size;
    int fd = e->fd;
    /* release: ordered after the reads of the entry above; readers only compare addresses */
    atomic_store_explicit(&e->addr, TOMB, memory_order_release);
    if (in_arena((uintptr_t)obj)) /* back to reserved: nothing else is ever mapped there */
      mmap(obj, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    else
      munmap(obj, size);
    if (fd >= 0) close(fd);
  }
  pthread_mutex_unlock(&S.lock);
}

/* Worker side: ask the parent for the object at `a` and map it there. Under S.ask. */
static bool fetch(uintptr_t a, const char *what) {
  req q = {.magic = REQ_MAGIC, .addr = a};
  ssize_t w;
  do w = send(S.broker, &q, sizeof q, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  if (w != (ssize_t)sizeof q) {
    mpx__set_errmsg("%s %p: could not ask the parent process for it (%s)", what, (void *)a,
                    strerror(errno));
    return false;
  }
  rep r;
  struct iovec v = {.iov_base = &r, .iov_len = sizeof r};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr h = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  ssize_t n;
  do n = recvmsg(S.broker, &h, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  int fd = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (n != (ssize_t)sizeof r || r.addr != a || r.status != 0 || fd < 0) {
    if (fd >= 0) close(fd);
    if (n == (ssize_t)sizeof r && r.status != 0)
      mpx__set_errmsg("%s %p: the parent process has no such object (destroyed, or not a shared "
                      "object it made)", what, (void *)a);
    else
      mpx__set_errmsg("%s %p: the parent process did not answer (it is gone?)", what, (void *)a);
    return false;
  }
  /* The parent is trusted, but a bad answer must still not map over something of ours. */
  struct stat st;
  bool ok = r.size > 0 && r.size % page_size() == 0 && r.size <= S.end - a &&
            fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= r.size;
  void *p = MAP_FAILED;
  if (ok)
    p = mmap((void *)a, (size_t)r.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    mpx__set_errmsg("%s %p: could not map the object the parent sent (%s)", what, (void *)a,
                    ok ? strerror(errno) : "unfit segment");
    return false;
  }
  pthread_mutex_lock(&S.lock);
  bool in = insert(a, (size_t)r.size, -1);
  pthread_mutex_unlock(&S.lock);
  if (!in) {
    mmap((void *)a, (size_t)r.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
         MAP_NORESERVE, -1, 0);
    mpx__set_errmsg("%s %p: out of memory", what, (void *)a);
  }
  return in;
}

bool mpx__share_known(const void *obj, const char *what) {
  uintptr_t a = (uintptr_t)obj;
  if (!obj) {
    mpx__set_errmsg("the %s handle is NULL", what);
    return false;
  }
  if (find(a)) return true;
  if (in_arena(a) && S.owner != getpid() && a % page_size() == 0) {
    pthread_mutex_lock(&S.ask);
    bool ok = find(a) != NULL; /* another thread of this task may have fetched it */
    if (!ok && S.broker >= 0) ok = fetch(a, what);
    else if (!ok)
      mpx__set_errmsg("%s %p was made after mpx_init by another process; only the process "
                      "pool workers of the process that made it can use it", what, obj);
    pthread_mutex_unlock(&S.ask);
    return ok;
  }
  mpx__set_errmsg("%s %p is not a live shared object of this process: destroyed, never made, or "
                  "made in another process that this one is not a pool worker of (memory "
                  "cannot be shared across MPI ranks: make it on the rank that uses it)",
                  what, obj);
  return false;
}

/* ---- the broker ---------------------------------------------------------------------------- */

void mpx__share_set_broker(int fd) {
  pthread_mutex_lock(&S.ask);
  if (S.broker >= 0) close(S.broker);
  S.broker = fd;
  pthread_mutex_unlock(&S.ask);
}

static int answer(int sock, const rep *r, int fd) {
  ssize_t w;
  do w = mpx__send_fd(sock, r, sizeof *r, fd, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (w < 0 && errno == EINTR);
  return w == (ssize_t)sizeof *r ? 0 : -1; /* a worker that does not read its answers is cut */
}

int mpx__share_serve(int sock) {
  for (int k = 0; k < 64; k++) { /* bounded: one worker cannot hold the caller's loop */
    req q;
    ssize_t n;
    do n = recv(sock, &q, sizeof q, MSG_DONTWAIT | MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (n != (ssize_t)sizeof q || q.magic != REQ_MAGIC) return -1; /* EOF, or not a request */
    /* Only the exact start of a live arena object this process made: size and fd are ours. */
    pthread_mutex_lock(&S.lock);
    ent *e = S.owner == getpid() && in_arena((uintptr_t)q.addr) ? find((uintptr_t)q.addr) : NULL;
    rep r = {.status = MPX_ENOTFOUND, .addr = q.addr};
    int fd = -1;
    if (e && e->fd >= 0) {
      r.status = 0;
      r.size = e->size;
      fd = e->fd;
    }
    int rc = answer(sock, &r, fd); /* under the lock: a free cannot close fd meanwhile */
    pthread_mutex_unlock(&S.lock);
    if (rc) return -1;
  }
  return 0;
}
