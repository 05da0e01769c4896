/* shm.h: the pieces every multiprocessing primitive is built from (internal to libmpx).
 *
 * - Shared memory: MAP_SHARED mappings from os/share.h, entered in this process's table of
 *   objects. An object created before fork() is visible at the same address in the parent and
 *   every child. One created after mpx_init is a memfd in the arena, which pool workers fetch
 *   on first use. Nothing is ever named, so nothing is left in /dev/shm. Each mapping starts with
 *   an mpx__shm_hdr that carries the mapping's size and the object's magic number.
 *   mpx__shm_check looks the handle up before reading it, so a handle that is not a live object
 *   of the right kind is refused (MPX_EINVAL, with mpx_errmsg saying why).
 * - Robust, process-shared mutexes: a holder that dies (even by SIGKILL) makes the next locker get
 *   EOWNERDEAD from the kernel's robust-futex list; mpx__mutex_lock marks the mutex consistent and
 *   reports MPX_EOWNERDEAD with the mutex held, so the caller can repair what it guards.
 * - Futexes (shared, not FUTEX_PRIVATE: the words live in memory several processes map) with
 *   absolute CLOCK_MONOTONIC deadlines: mpx__futex_wait/wake from os/futex.h, included here, as
 *   is mpx__cpu_relax (os/cpu.h) for the spin loops.
 * - Deadlines: a timeout in seconds (negative = forever, 0 = do not block) becomes an absolute
 *   monotonic time once, at the start of an operation, so retries never stretch it.
 *
 * All functions are safe to call from any thread of any process that maps the object. */
#ifndef MPX_IPC_SHM_H
#define MPX_IPC_SHM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mpx/error.h"
#include "os/cpu.h"
#include "os/futex.h"

/* At the start of every shared object. */
typedef struct mpx__shm_hdr {
  uint32_t magic;
  uint32_t pad;
  size_t size; /* bytes mapped, for munmap */
} mpx__shm_hdr;

#define MPX__MAGIC_QUEUE 0x6d707851u   /* "mpxQ" */
#define MPX__MAGIC_LOCK 0x6d70784cu    /* "mpxL" */
#define MPX__MAGIC_RLOCK 0x6d707852u   /* "mpxR" */
#define MPX__MAGIC_SEM 0x6d707853u     /* "mpxS" */
#define MPX__MAGIC_EVENT 0x6d707845u   /* "mpxE" */
#define MPX__MAGIC_COND 0x6d707843u    /* "mpxC" */
#define MPX__MAGIC_BARRIER 0x6d707842u /* "mpxB" */
#define MPX__MAGIC_ARRAY 0x6d707841u   /* "mpxA" */
#define MPX__MAGIC_DICT 0x6d707844u    /* "mpxD" */
#define MPX__MAGIC_VALUE 0x6d707856u   /* "mpxV" */
#define MPX__MAGIC_LIST 0x6d70786cu    /* "mpxl" */
#define MPX__MAGIC_DEAD 0xdeadbeefu    /* written by destroy: a stale handle in another process */

/* Map `size` zeroed bytes shared with future children; writes the header. NULL on failure. */
void *mpx__shm_alloc(size_t size, uint32_t magic);
/* Unmap an object made by mpx__shm_alloc (in this process only; other processes keep theirs). */
void mpx__shm_free(void *obj);
/* 1 if `obj` is non-NULL and carries `magic`. */
bool mpx__shm_check(const void *obj, uint32_t magic);

/* Initialise a process-shared robust mutex; `recursive` gives an RLock, otherwise error-checking.
 * Returns 0 or MPX_ESYS. */
int mpx__mutex_init(pthread_mutex_t *m, bool recursive);
/* Lock with an absolute monotonic deadline (NULL: forever; a deadline in the past: try once).
 * Returns 0, MPX_EOWNERDEAD (held and already marked consistent: repair what it guards),
 * MPX_ETIMEDOUT, MPX_ESTATE (this thread already holds an error-checking mutex) or MPX_ESYS. */
int mpx__mutex_lock(pthread_mutex_t *m, const struct timespec *deadline);
/* Unlock: 0, or MPX_EPERM when the caller does not hold it. */
int mpx__mutex_unlock(pthread_mutex_t *m);

/* Unlock only if the calling thread holds it (MPX_EPERM otherwise, without touching it): for
 * locks whose release is a public call. Costs a gettid() system call. */
int mpx__mutex_unlock_owned(pthread_mutex_t *m);
/* 1 if the calling thread holds `m`. */
bool mpx__mutex_held(pthread_mutex_t *m);

/* Turn a timeout in seconds into *ts. Returns NULL for "forever" (negative or NaN timeout), else
 * ts. A zero timeout gives a deadline equal to now (callers test mpx__deadline_passed). */
struct timespec *mpx__deadline(double timeout, struct timespec *ts);
/* 1 if the deadline (non-NULL) is now or in the past. */
bool mpx__deadline_passed(const struct timespec *deadline);
/* The earlier of `deadline` (may be NULL = forever) and now + `ms` milliseconds, into *out. */
struct timespec *mpx__deadline_min_ms(const struct timespec *deadline, long ms,
                                      struct timespec *out);

/* The caller's kernel thread id (a syscall: use off hot paths). */
int mpx__tid(void);

#endif
