/* shm.c: shared mappings, robust process-shared mutexes and deadlines for the multiprocessing
 * primitives (see shm.h; their shared futexes are in os/futex.c). Stateless: every function works on memory the caller
 * passes, so it is safe from any thread and any process. */
#include "shm.h"

#include "errmsg.h"
#include "os/share.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void *mpx__shm_alloc(size_t size, uint32_t magic) {
  if (size < sizeof(mpx__shm_hdr)) return NULL;
  void *p = mpx__share_alloc(size); /* in this process's table; page-rounded */
  if (!p) return NULL;
  mpx__shm_hdr *h = p;
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  h->size = (size + (size_t)page - 1) & ~((size_t)page - 1);
  h->magic = magic;
  return p;
}

void mpx__shm_free(void *obj) { mpx__share_free(obj); }

static const char *kind(uint32_t magic) {
  switch (magic) {
  case MPX__MAGIC_QUEUE: return "queue";
  case MPX__MAGIC_LOCK: return "lock";
  case MPX__MAGIC_RLOCK: return "rlock";
  case MPX__MAGIC_SEM: return "semaphore";
  case MPX__MAGIC_EVENT: return "event";
  case MPX__MAGIC_COND: return "condition";
  case MPX__MAGIC_BARRIER: return "barrier";
  case MPX__MAGIC_ARRAY: return "array";
  case MPX__MAGIC_DICT: return "dict";
  case MPX__MAGIC_VALUE: return "value";
  case MPX__MAGIC_LIST: return "list";
  default: return "shared object";
  }
}

bool mpx__shm_check(const void *obj, uint32_t magic) {
  /* Looked up before it is read: a stale, foreign or made-up handle is refused, not followed;
   * an object the parent made after mpx_init is fetched here (a pool worker's first use). */
  if (!mpx__share_known(obj, kind(magic))) return false;
  uint32_t m = ((const mpx__shm_hdr *)obj)->magic;
  if (m == magic) return true;
  mpx__set_errmsg("%p is a %s, not a %s", obj, kind(m), kind(magic));
  return false;
}

int mpx__mutex_init(pthread_mutex_t *m, bool recursive) {
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a)) return MPX_ESYS;
  int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (!rc) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (!rc)
    rc = pthread_mutexattr_settype(&a,
                                   recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
  if (!rc) rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return rc ? MPX_ESYS : MPX_OK;
}

int mpx__mutex_lock(pthread_mutex_t *m, const struct timespec *deadline) {
  int rc;
  if (!deadline)
    rc = pthread_mutex_lock(m);
  else if (mpx__deadline_passed(deadline))
    rc = pthread_mutex_trylock(m);
  else {
    /* pthread_mutex_timedlock (CLOCK_REALTIME) rather than clocklock: sanitizers intercept it.
     * The monotonic deadline is converted once; a wall-clock jump can only stretch one wait. */
    struct timespec now_m, now_r, abs_r;
    clock_gettime(CLOCK_MONOTONIC, &now_m);
    clock_gettime(CLOCK_REALTIME, &now_r);
    long long left = (long long)(deadline->tv_sec - now_m.tv_sec) * 1000000000LL +
                     (deadline->tv_nsec - now_m.tv_nsec);
    if (left < 0) left = 0;
    long long ns = (long long)now_r.tv_nsec + left % 1000000000LL;
    abs_r.tv_sec = now_r.tv_sec + (time_t)(left / 1000000000LL) + (time_t)(ns / 1000000000LL);
    abs_r.tv_nsec = (long)(ns % 1000000000LL);
    rc = pthread_mutex_timedlock(m, &abs_r);
  }
  switch (rc) {
  case 0:
    return MPX_OK;
  case EOWNERDEAD:
    /* We hold it now; make it usable again. The caller repairs what it guards. */
    pthread_mutex_consistent(m);
    return MPX_EOWNERDEAD;
  case EBUSY:
  case ETIMEDOUT:
    return MPX_ETIMEDOUT;
  case EDEADLK:
    return MPX_ESTATE;
  case ENOTRECOVERABLE:
    return MPX_EBROKEN;
  default:
    return MPX_ESYS;
  }
}

int mpx__mutex_unlock(pthread_mutex_t *m) {
  int rc = pthread_mutex_unlock(m);
  return rc == 0 ? MPX_OK : rc == EPERM ? MPX_EPERM : MPX_ESYS;
}

int mpx__mutex_unlock_owned(pthread_mutex_t *m) {
  /* Check first rather than let pthread answer EPERM: sanitizers treat an unlock by a non-owner
   * as a bug even when the call fails cleanly. glibc keeps the owner's tid in the mutex. */
  if (m->__data.__owner != mpx__tid()) return MPX_EPERM;
  return mpx__mutex_unlock(m);
}

bool mpx__mutex_held(pthread_mutex_t *m) { return m->__data.__owner == mpx__tid(); }

struct timespec *mpx__deadline(double timeout, struct timespec *ts) {
  if (isnan(timeout) || timeout < 0) return NULL;
  clock_gettime(CLOCK_MONOTONIC, ts);
  if (timeout > 1e9) timeout = 1e9; /* ~31 years: forever in practice, no overflow */
  double whole = floor(timeout);
  ts->tv_sec += (time_t)whole;
  ts->tv_nsec += (long)((timeout - whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
  return ts;
}

bool mpx__deadline_passed(const struct timespec *deadline) {
  if (!deadline) return false;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > deadline->tv_sec ||
         (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

struct timespec *mpx__deadline_min_ms(const struct timespec *deadline, long ms,
                                      struct timespec *out) {
  struct timespec t;
  mpx__deadline((double)ms / 1000.0, &t);
  if (deadline && (deadline->tv_sec < t.tv_sec ||
                   (deadline->tv_sec == t.tv_sec && deadline->tv_nsec < t.tv_nsec)))
    t = *deadline;
  *out = t;
  return out;
}

int mpx__tid(void) { return (int)syscall(SYS_gettid); }
