/* seg.c: sealed memfd segments; see seg.h for what they are and what a reader checks.
 *
 * Costs. A fresh segment's pages are allocated by the kernel in one go (fallocate, then a
 * MAP_POPULATE mapping) rather than one page fault at a time, and a copy into a new segment is a
 * single pwrite: the kernel allocates and fills the pages together. A reader maps with
 * MAP_POPULATE, so reading the payload takes no page fault per page either.
 *
 * Recycling (seg.h): a process worker's ring of result segments, and the dispatcher's pool of
 * warm buffers that results are copied into. They are this file's only state: the ring belongs
 * to the worker's serving thread (no lock), the pool to whichever thread releases a future or
 * takes a buffer (pool_mu, never held across anything but the table itself, and across fork():
 * a child inherits the pool whole). The ring notices a fork (its owner's pid) and starts over
 * empty in the child.
 *
 * Otherwise no locks and no global state but a count of the segments made (a statistic). */
#include "os/seg.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

static atomic_ulong seg_made; /* relaxed: a statistic */

unsigned long mpx__seg_made(void) { return atomic_load_explicit(&seg_made, memory_order_relaxed); }

static int seg_fd(size_t len) {
  if (len > (size_t)INT64_MAX) return errno = EFBIG, -1;
  int fd = memfd_create("mpx-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  atomic_fetch_add_explicit(&seg_made, 1, memory_order_relaxed);
  if (ftruncate(fd, (off_t)len)) {
    int e = errno;
    close(fd);
    return errno = e, -1;
  }
  return fd;
}

static int code_of(int e) {
  return e == ENOMEM || e == ENOSPC || e == EFBIG ? MPX_ENOMEM : MPX_ESYS;
}

/* ---- the worker's ring of result segments (seg.h) ----------------------------------------- */

enum { RING_FREE = 0, RING_FULL = 1 };

static struct ring_slot {
  int fd;              /* -1: no segment in this slot */
  unsigned char *base; /* its mapping, writable: the header page, then cap bytes */
  size_t cap;
  bool lent; /* to a result being built (not yet sealed) */
} ring[MPX__SEG_RING_SLOTS];
static pid_t ring_pid; /* the process the ring was made in (0: none yet) */

static _Atomic uint32_t *ring_word(unsigned char *base) { return (_Atomic uint32_t *)base; }

static void slot_drop(struct ring_slot *r) {
  if (r->fd >= 0) {
    munmap(r->base, MPX__SEG_HDR + r->cap);
    close(r->fd);
  }
  *r = (struct ring_slot){.fd = -1};
}

/* The ring of this process: a child of the process that made one starts over (its copies of the
 * slots are its own fds and mappings: dropped). */
static void ring_here(void) {
  pid_t me = getpid();
  if (ring_pid == me) return;
  for (int i = 0; i < MPX__SEG_RING_SLOTS; i++) {
    if (ring_pid == 0) ring[i] = (struct ring_slot){.fd = -1};
    else slot_drop(&ring[i]);
  }
  ring_pid = me;
}

/* A new segment in slot r for results of up to `len` bytes (rounded up to a MiB, so that results
 * of about the same size share it). */
static int slot_make(struct ring_slot *r, size_t len) {
  size_t mib = (size_t)1 << 20, cap = (len + mib - 1) / mib * mib;
  if (cap > MPX__SEG_RING_MAX) cap = MPX__SEG_RING_MAX;
  mpx__seg t;
  int rc = mpx__seg_create(&t, MPX__SEG_HDR + cap);
  if (!rc && fcntl(t.fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
    rc = MPX_ESYS;
    mpx__seg_free(&t);
  }
  if (rc) return rc;
  *r = (struct ring_slot){.fd = t.fd, .base = t.data, .cap = cap};
  atomic_store_explicit(ring_word(r->base), RING_FREE, memory_order_relaxed); /* nobody else yet */
  return MPX_OK;
}

int mpx__seg_result_create(mpx__seg *s, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len) return MPX_EINVAL;
  ring_here();
  int pick = -1, spare = -1;
  for (int i = 0; len <= MPX__SEG_RING_MAX && i < MPX__SEG_RING_SLOTS; i++) {
    struct ring_slot *r = &ring[i];
    if (r->fd < 0) { /* room for a new one */
      if (spare < 0) spare = i;
      continue;
    }
    /* acquire: the dispatcher's copy out of this slot is complete before we write it again */
    if (r->lent || atomic_load_explicit(ring_word(r->base), memory_order_acquire) != RING_FREE)
      continue;
    if (r->cap < len) { /* free but too small: may be replaced */
      if (spare < 0 || ring[spare].fd >= 0) spare = i;
    } else if (pick < 0 || r->cap < ring[pick].cap) {
      pick = i;
    }
  }
  if (pick < 0 && spare >= 0) {
    slot_drop(&ring[spare]);
    if (slot_make(&ring[spare], len) == MPX_OK) pick = spare;
  }
  if (pick < 0) return mpx__seg_create(s, len); /* the ring is busy: a one-shot segment */
  ring[pick].lent = true;
  *s = (mpx__seg){.fd = -1, .data = ring[pick].base + MPX__SEG_HDR, .len = len,
                  .kind = MPX__SEG_RING, .slot = pick};
  return MPX_OK;
}

void mpx__seg_ring_reset(void) {
  ring_here();
  for (int i = 0; i < MPX__SEG_RING_SLOTS; i++) slot_drop(&ring[i]);
}

static void ring_give_back(int slot) {
  if (slot >= 0 && slot < MPX__SEG_RING_SLOTS) ring[slot].lent = false;
}

/* Within the slot: only the length changes; beyond it the bytes move to a one-shot segment. */
static int ring_resize(mpx__seg *s, size_t len) {
  if (!len) return MPX_EINVAL;
  if (len <= ring[s->slot].cap) {
    s->len = len;
    return MPX_OK;
  }
  mpx__seg t;
  int rc = mpx__seg_create(&t, len);
  if (rc) return rc;
  memcpy(t.data, s->data, s->len);
  ring_give_back(s->slot);
  *s = t;
  return MPX_OK;
}

/* The result is complete: mark the slot FULL and leave a dup of its fd to pass. */
static int ring_seal(mpx__seg *s) {
  struct ring_slot *r = &ring[s->slot];
  int fd = fcntl(r->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return MPX_ESYS;
  /* release: the result's bytes are written before the word says so (the dispatcher reads them
   * after the message that passes the fd, which orders them anyway) */
  atomic_store_explicit(ring_word(r->base), RING_FULL, memory_order_release);
  r->lent = false;
  *s = (mpx__seg){.fd = fd, .len = s->len};
  return MPX_OK;
}

int mpx__seg_map_ring(mpx__seg *s, int fd, size_t len, size_t max) {
  *s = MPX__SEG_NONE;
  struct stat st;
  int rc = MPX_EPROTO, seals;
  const int need = F_SEAL_SHRINK | F_SEAL_GROW;
  if (len > max)
    rc = MPX_ETOOBIG;
  else if (!len || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 0)
    rc = MPX_EPROTO;
  else if ((uint64_t)st.st_size < MPX__SEG_HDR + len ||
           ((uint64_t)st.st_size - MPX__SEG_HDR) / 2 > max)
    rc = MPX_EPROTO;
  else if ((seals = fcntl(fd, F_GET_SEALS)) < 0 || (seals & need) != need)
    rc = MPX_EPROTO; /* it could shrink under our mapping, and make it fault */
  else {
    size_t size = (size_t)st.st_size;
    /* not MAP_POPULATE: what lies past the declared bytes may be holes that populating would
     * fill with pages of ours; only the header and the declared bytes are faulted in, now */
    unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
#ifdef MADV_POPULATE_READ
    if (p != MAP_FAILED) madvise(p, MPX__SEG_HDR + len, MADV_POPULATE_READ); /* best effort */
#endif
    if (p != MAP_FAILED) {
      *s = (mpx__seg){.fd = -1, .data = p + MPX__SEG_HDR, .len = size - MPX__SEG_HDR,
                      .map_len = size, .kind = MPX__SEG_RINGMAP};
      rc = MPX_OK;
    } else {
      rc = code_of(errno);
    }
  }
  close(fd);
  return rc;
}

void mpx__seg_ring_free(const mpx__seg *s) {
  if (s->kind != MPX__SEG_RINGMAP) return;
  /* release: our copy out of it is complete before the worker may write it again */
  atomic_store_explicit(ring_word((unsigned char *)s->data - MPX__SEG_HDR), RING_FREE,
                        memory_order_release);
}

/* ---- the result pool (seg.h) ----------------------------------------------------------------- */

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_buf {
  void *p; /* NULL: an empty entry */
  size_t cap;
  bool lent;
  uint64_t used; /* pool_tick when last given back: the oldest idle one goes first */
} pool[MPX__SEG_POOL_N];
static size_t pool_idle; /* bytes of the idle buffers */
#define POOL_MAPPING ((void *)1) /* an entry whose buffer is being mapped (lent) */
static uint64_t pool_tick;
static bool pool_put(const void *data);

/* A fork copies the pool's buffers (a child may read the results it inherited) and its table:
 * pool_mu is held across the fork so that the child's copy is consistent and unlocked. */
static void pool_prepare(void) { pthread_mutex_lock(&pool_mu); }
static void pool_resume(void) { pthread_mutex_unlock(&pool_mu); }
static void pool_atfork(void) { pthread_atfork(pool_prepare, pool_resume, pool_resume); }
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Under pool_mu: nothing to do but to be registered for forks (pthread_once is called before the
 * lock is taken: pool_lock). */
static void pool_lock(void) {
  pthread_once(&pool_once, pool_atfork);
  pthread_mutex_lock(&pool_mu);
}

/* A buffer of cap bytes from the pool: an idle one that fits (not twice over), else a new
 * mapping in an empty entry (or one freed of the oldest idle buffer). NULL when none could be
 * mapped; *registered false when it has no entry (the table is all lent). */
static void *pool_take(size_t len, size_t cap, size_t *got, bool *registered) {
  struct pool_buf old = {0};
  int pick = -1, room = -1;
  pool_lock();
  for (int i = 0; i < MPX__SEG_POOL_N; i++) {
    struct pool_buf *b = &pool[i];
    if (!b->p) {
      if (room < 0 || pool[room].p) room = i;
    } else if (!b->lent && b->cap >= len && b->cap / 2 < len) {
      if (pick < 0 || b->cap < pool[pick].cap) pick = i;
    } else if (!b->lent && (room < 0 || (pool[room].p && b->used < pool[room].used))) {
      room = i; /* the oldest idle one, when there is no empty entry */
    }
  }
  if (pick >= 0) {
    pool[pick].lent = true;
    pool_idle -= pool[pick].cap;
    pthread_mutex_unlock(&pool_mu);
    *got = pool[pick].cap; /* stable: lent, nobody else touches the entry */
    *registered = true;
    return pool[pick].p;
  }
  if (room >= 0) {
    if (pool[room].p) {
      old = pool[room];
      pool_idle -= old.cap;
    }
    pool[room] = (struct pool_buf){.p = POOL_MAPPING, .cap = cap, .lent = true};
  }
  pthread_mutex_unlock(&pool_mu);
  if (old.p) munmap(old.p, old.cap);
  void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) madvise(p, cap, MADV_HUGEPAGE); /* best effort: a 512th of the faults */
  int e = errno;
  if (room >= 0) {
    pool_lock();
    if (pool[room].p == POOL_MAPPING) pool[room] = (struct pool_buf){0};
    if (p != MAP_FAILED) pool[room] = (struct pool_buf){.p = p, .cap = cap, .lent = true};
    pthread_mutex_unlock(&pool_mu);
  }
  *got = cap;
  *registered = room >= 0;
  return p == MAP_FAILED ? (errno = e, NULL) : p;
}

int mpx__seg_pool_get(mpx__seg *s, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len || len > SIZE_MAX - 4096) return MPX_EINVAL;
  size_t cap;
  bool reg;
  void *p = pool_take(len, (len + 4095) & ~(size_t)4095, &cap, &reg);
  if (!p) return code_of(errno);
  *s = (mpx__seg){.fd = -1, .data = p, .len = len, .map_len = cap, .kind = MPX__SEG_POOLBUF};
  return MPX_OK;
}

void *mpx__seg_pool_alloc(size_t len) {
  if (len < MPX__SEG_MIN || len > SIZE_MAX - 4096) return malloc(len);
  size_t cap;
  bool reg;
  void *p = pool_take(len, (len + 4095) & ~(size_t)4095, &cap, &reg);
  if (p && !reg) { /* mpx__seg_pool_free must know it: a heap block instead */
    munmap(p, cap);
    p = NULL;
  }
  return p ? p : malloc(len);
}

int mpx__seg_pool_warm(size_t len, int count) {
  if (len < MPX__SEG_MIN || len > SIZE_MAX - 4096 || count <= 0) return 0;
  if (count > MPX__SEG_POOL_N) count = MPX__SEG_POOL_N;
  size_t cap = (len + 4095) & ~(size_t)4095;
  if ((size_t)count > MPX__SEG_POOL_IDLE / cap) count = (int)(MPX__SEG_POOL_IDLE / cap);
  void *got[MPX__SEG_POOL_N];
  int n = 0;
  for (; n < count; n++) { /* all taken at once: each is another buffer */
    size_t have;
    bool reg;
    void *p = pool_take(len, cap, &have, &reg);
    if (!p) break;
    if (!reg) { /* the table is all lent: no room to keep it */
      munmap(p, have);
      break;
    }
    bool warm = false;
#ifdef MADV_POPULATE_WRITE
    warm = madvise(p, have, MADV_POPULATE_WRITE) == 0; /* one call for every page */
#endif
    for (size_t off = 0; !warm && off < have; off += 4096) /* (a pool buffer is ours: scratch) */
      ((volatile unsigned char *)p)[off] = 0;
    got[n] = p;
  }
  for (int i = 0; i < n; i++) pool_put(got[i]);
  return n;
}

void mpx__seg_pool_free(void *p, size_t len) {
  (void)len;
  /* a pool buffer is page-aligned; a malloc'd block never is when glibc mapped it for itself,
   * and seldom otherwise: most frees skip the lock */
  if (p && (((uintptr_t)p & 4095) || !pool_put(p))) free(p);
}

/* Give a lent pool buffer back (true), unmapping the oldest idle ones over the bound; false when
 * `data` is not one. */
static bool pool_put(const void *data) {
  struct pool_buf drop[MPX__SEG_POOL_N];
  int ndrop = 0;
  bool mine = false;
  pool_lock();
  for (int i = 0; i < MPX__SEG_POOL_N && !mine; i++) {
    if (pool[i].p != data || !pool[i].lent) continue;
    mine = true;
    pool[i].lent = false;
    pool[i].used = ++pool_tick;
    pool_idle += pool[i].cap;
  }
  while (mine && pool_idle > MPX__SEG_POOL_IDLE) {
    int old = -1;
    for (int i = 0; i < MPX__SEG_POOL_N; i++)
      if (pool[i].p && !pool[i].lent && (old < 0 || pool[i].used < pool[old].used)) old = i;
    if (old < 0) break;
    drop[ndrop++] = pool[old];
    pool_idle -= pool[old].cap;
    pool[old] = (struct pool_buf){0};
  }
  pthread_mutex_unlock(&pool_mu);
  for (int i = 0; i < ndrop; i++) munmap(drop[i].p, drop[i].cap);
  return mine;
}

int mpx__seg_create(mpx__seg *s, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len) return MPX_EINVAL;
  int fd = seg_fd(len);
  if (fd < 0) return code_of(errno);
  if (fallocate(fd, 0, 0, (off_t)len) && errno != EOPNOTSUPP) { /* no memory: say so now */
    int e = errno;
    close(fd);
    return code_of(e);
  }
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return code_of(e);
  }
  *s = (mpx__seg){.fd = fd, .data = p, .len = len, .map_len = len};
  return MPX_OK;
}

/* A new memfd holding a copy of data[0..len), written by pwrite: the kernel allocates each page
 * and fills it in one go (no zeroing first, no page fault). -1 with errno on failure. */
static int fd_filled(const void *data, size_t len) {
  int fd = seg_fd(len);
  if (fd < 0) return -1;
  for (size_t off = 0; off < len;) {
    ssize_t w = pwrite(fd, (const char *)data + off, len - off, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : ENOSPC;
      close(fd);
      return errno = e, -1;
    }
    off += (size_t)w;
  }
  return fd;
}

int mpx__seg_create_copy(mpx__seg *s, const void *data, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len || !data) return MPX_EINVAL;
  int fd = fd_filled(data, len);
  if (fd < 0) return code_of(errno);
  *s = (mpx__seg){.fd = fd, .len = len};
  return mpx__seg_seal(s);
}

int mpx__seg_create_from(mpx__seg *s, const void *data, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len || !data) return MPX_EINVAL;
  int fd = fd_filled(data, len);
  if (fd < 0) return code_of(errno);
  *s = (mpx__seg){.fd = fd, .len = len}; /* no mapping until one is wanted (mpx__seg_map_own) */
  return MPX_OK;
}

int mpx__seg_map_own(mpx__seg *s) {
  if (s->fd < 0 || !s->len) return MPX_EINVAL;
  if (s->map_len) return MPX_OK;
  void *p = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, s->fd, 0);
  if (p == MAP_FAILED) return code_of(errno);
  s->data = p;
  s->map_len = s->len;
  return MPX_OK;
}

int mpx__seg_resize(mpx__seg *s, size_t len) {
  if (s->kind == MPX__SEG_RING) return ring_resize(s, len);
  if (s->fd < 0 || !s->map_len || !len) return MPX_EINVAL;
  if (len == s->len) return MPX_OK;
  if (ftruncate(s->fd, (off_t)len)) return code_of(errno);
  void *p = mremap(s->data, s->map_len, len, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    int e = errno;
    if (ftruncate(s->fd, (off_t)s->len)) { /* keep the old size: the mapping still covers it */
    }
    return code_of(e);
  }
  s->data = p;
  s->len = s->map_len = len;
  return MPX_OK;
}

int mpx__seg_seal(mpx__seg *s) {
  if (s->kind == MPX__SEG_RING) return ring_seal(s);
  if (s->fd < 0) return MPX_EINVAL;
  if (s->map_len) munmap(s->data, s->map_len); /* F_SEAL_WRITE wants no writable mapping */
  s->data = NULL;
  s->map_len = 0;
  if (fcntl(s->fd, F_ADD_SEALS, SEALS)) return MPX_ESYS;
  return MPX_OK;
}

int mpx__seg_seal_size(mpx__seg *s) {
  if (s->fd < 0 || fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
    return MPX_ESYS;
  return MPX_OK;
}

int mpx__seg_ident(int fd, unsigned long long id[2]) {
  struct stat st;
  if (fstat(fd, &st)) return MPX_ESYS;
  id[0] = (unsigned long long)st.st_dev;
  id[1] = (unsigned long long)st.st_ino;
  return MPX_OK;
}

int mpx__seg_map(mpx__seg *s, int fd, size_t len, size_t max, int mode) {
  *s = MPX__SEG_NONE;
  struct stat st;
  int rc = MPX_EPROTO;
  int need = mode == MPX__SEG_EXACT ? SEALS & ~F_SEAL_SEAL : F_SEAL_SHRINK | F_SEAL_GROW;
  uint64_t size = 0;
  if (len > max)
    rc = MPX_ETOOBIG;
  else if (!len || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 0)
    rc = MPX_EPROTO;
  else if ((size = (uint64_t)st.st_size) < len || (mode == MPX__SEG_EXACT && size != len) ||
           size / 2 > max)
    rc = MPX_EPROTO;
  else if ((fcntl(fd, F_GET_SEALS) & need) != need)
    rc = MPX_EPROTO; /* the sender could still change or shrink it under our mapping */
  else {
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p != MAP_FAILED) {
      *s = (mpx__seg){.fd = -1, .data = p, .len = len, .map_len = (size_t)size};
      rc = MPX_OK;
    } else {
      rc = code_of(errno);
    }
  }
  close(fd);
  return rc;
}

void mpx__seg_free(mpx__seg *s) {
  if (s->kind == MPX__SEG_RING)
    ring_give_back(s->slot);
  else if (s->kind == MPX__SEG_RINGMAP)
    munmap((char *)s->data - MPX__SEG_HDR, s->map_len);
  else if (s->kind == MPX__SEG_POOLBUF)
    mpx__seg_unmap(s->data, s->len);
  else if (s->map_len)
    munmap(s->data, s->map_len);
  if (s->fd >= 0) close(s->fd);
  *s = MPX__SEG_NONE;
}

void mpx__seg_unmap(const void *data, size_t len) {
  if (data && len && !pool_put(data)) munmap((void *)data, len);
}
