/* mpx synchronisation primitives shared by threads and forked processes, as multiprocessing's
 * Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier.
 *
 * Each object lives in its own shared mapping. Nothing is named or left in /dev/shm.
 * mpx_*_destroy unmaps the object from the calling process only.
 *
 * Sharing (this holds for every mpx_* shared object: queue, value, array, dict, list too):
 *  - An object made before fork() is inherited: the parent and every child use the same handle.
 *  - An object made after mpx_init may also be passed to process-pool tasks, even though their
 *    workers were forked before it existed. Copy the handle (the pointer) into the argument
 *    bytes. The first time a task uses it, the worker asks its parent for it over its own socket.
 *    The parent answers only if a live object it made starts at that address, and it sends the
 *    object's memfd, which the worker maps at the same address. Each such object holds one file
 *    descriptor in the process that made it, until it is destroyed.
 *  - Every call looks the handle up in this process's table of objects before it reads it. A
 *    handle that was destroyed, never made, or made in another process is refused with
 *    MPX_EINVAL, and mpx_errmsg() says why; it is never dereferenced.
 *  - MPI ranks share no memory. A task on a rank that is handed such a handle gets MPX_EINVAL,
 *    and mpx_errmsg() says memory cannot be shared across MPI ranks.
 *
 * Dead holders: Lock, RLock and Condition are built on robust process-shared mutexes. When a
 * process (or thread) dies holding one, the next acquirer gets MPX_EOWNERDEAD: it now holds the
 * lock (already marked usable again) and should check or repair the data the lock guards before
 * releasing it. Nobody deadlocks. Semaphores, Events and Barriers have no owner (as in Python): a
 * process that dies after acquiring a semaphore simply never releases it.
 *
 * Unlike multiprocessing.Lock (a semaphore underneath), a Lock may only be released by the
 * thread that acquired it (MPX_EPERM otherwise) and acquiring it twice from one thread is
 * MPX_ESTATE instead of a deadlock; use a Semaphore(1) to hand a permit across threads.
 *
 * Timeouts are seconds: negative waits forever, 0 tries once. `block = false` is the same as a
 * zero timeout. A lock or permit not obtained in time answers MPX_ETIMEDOUT. All functions may be
 * called from any thread of any process that has the object. */
#ifndef MPX_IPC_SYNC_H
#define MPX_IPC_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Lock: a non-recursive mutex ---- */
typedef struct mpx_lock mpx_lock;
MPX_API int mpx_lock_create(mpx_lock **l);
/* 0, MPX_EOWNERDEAD (held; the last holder died), MPX_ETIMEDOUT, MPX_ESTATE (held by you). */
MPX_API int mpx_lock_acquire(mpx_lock *l, bool block, double timeout);
/* 0, or MPX_EPERM if the caller does not hold it. */
MPX_API int mpx_lock_release(mpx_lock *l);
MPX_API int mpx_lock_destroy(mpx_lock *l);

/* ---- RLock: a recursive mutex; release as many times as acquired ---- */
typedef struct mpx_rlock mpx_rlock;
MPX_API int mpx_rlock_create(mpx_rlock **l);
/* 0, MPX_EOWNERDEAD (held once; the last holder died), MPX_ETIMEDOUT. */
MPX_API int mpx_rlock_acquire(mpx_rlock *l, bool block, double timeout);
/* 0, or MPX_EPERM if the caller does not hold it. */
MPX_API int mpx_rlock_release(mpx_rlock *l);
MPX_API int mpx_rlock_destroy(mpx_rlock *l);

/* ---- Semaphore and BoundedSemaphore ---- */
typedef struct mpx_semaphore mpx_semaphore;
/* A semaphore with `value` permits. bounded: releasing beyond the initial value is an error. */
MPX_API int mpx_semaphore_create(mpx_semaphore **s, unsigned value, bool bounded);
/* Take a permit: 0 or MPX_ETIMEDOUT. */
MPX_API int mpx_semaphore_acquire(mpx_semaphore *s, bool block, double timeout);
/* Give a permit back: 0, or MPX_ESTATE for a bounded semaphore already at its initial value
 * (Python's "released too many times"). */
MPX_API int mpx_semaphore_release(mpx_semaphore *s);
/* Permits available now (*value). */
MPX_API int mpx_semaphore_value(const mpx_semaphore *s, unsigned *value);
MPX_API int mpx_semaphore_destroy(mpx_semaphore *s);

/* ---- Event: a flag others can wait for ---- */
typedef struct mpx_event mpx_event;
MPX_API int mpx_event_create(mpx_event **e);
MPX_API int mpx_event_set(mpx_event *e); /* set and wake every waiter */
MPX_API int mpx_event_clear(mpx_event *e);
/* 1 if set, else 0. */
MPX_API int mpx_event_is_set(const mpx_event *e);
/* 0 once the flag is set (at once if it is), MPX_ETIMEDOUT otherwise. */
MPX_API int mpx_event_wait(mpx_event *e, double timeout);
MPX_API int mpx_event_destroy(mpx_event *e);

/* ---- Condition: a condition variable over an mpx_lock ---- */
typedef struct mpx_condition mpx_condition;
/* Over `lock` (must live as long as the condition; shared with the processes that use it), or,
 * when `lock` is NULL, over a Lock of its own. */
MPX_API int mpx_condition_create(mpx_condition **c, mpx_lock *lock);
/* As mpx_lock_acquire. */
MPX_API int mpx_condition_acquire(mpx_condition *c, bool block, double timeout);
MPX_API int mpx_condition_release(mpx_condition *c);
/* The caller holds the lock. Release it, wait for a notify or the timeout, take it back. Returns
 * 0 (notified; spurious wake-ups are possible, so re-check the predicate), MPX_ETIMEDOUT (the
 * lock is held again in both cases), MPX_EOWNERDEAD (held again; a holder died meanwhile), or
 * MPX_EPERM if the caller did not hold the lock (nothing waited). */
MPX_API int mpx_condition_wait(mpx_condition *c, double timeout);
/* Wait until pred(arg) returns true (checked with the lock held), for up to `timeout` overall:
 * 0 when it holds, MPX_ETIMEDOUT if it still does not. */
MPX_API int mpx_condition_wait_for(mpx_condition *c, bool (*pred)(void *arg), void *arg,
                                   double timeout);
/* Wake at least one / up to n / every waiter. The caller must hold the lock (MPX_EPERM). */
MPX_API int mpx_condition_notify(mpx_condition *c, int n);
MPX_API int mpx_condition_notify_all(mpx_condition *c);
MPX_API int mpx_condition_destroy(mpx_condition *c);

/* ---- Barrier: `parties` callers meet, then all go on ---- */
typedef struct mpx_barrier mpx_barrier;
MPX_API int mpx_barrier_create(mpx_barrier **b, unsigned parties);
/* Wait for all parties. 0 with *index (may be NULL) distinct in 0..parties-1 for each party of a
 * round; MPX_EBROKEN if the barrier is or becomes broken (abort, reset, or another party's
 * timeout); MPX_ETIMEDOUT if this caller's own timeout passed (the barrier is then broken for
 * the others, as in Python). */
MPX_API int mpx_barrier_wait(mpx_barrier *b, double timeout, unsigned *index);
/* Break the barrier: waiters and later callers get MPX_EBROKEN until reset. */
MPX_API int mpx_barrier_abort(mpx_barrier *b);
/* Back to the initial state; parties waiting now get MPX_EBROKEN. */
MPX_API int mpx_barrier_reset(mpx_barrier *b);
MPX_API int mpx_barrier_parties(const mpx_barrier *b, unsigned *parties);
MPX_API int mpx_barrier_n_waiting(const mpx_barrier *b, unsigned *n);
/* 1 if broken, else 0. */
MPX_API int mpx_barrier_broken(const mpx_barrier *b);
MPX_API int mpx_barrier_destroy(mpx_barrier *b);

#ifdef __cplusplus
}
#endif
#endif
