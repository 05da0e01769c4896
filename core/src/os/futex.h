/* futex.h: Linux futex waits and wakes (internal to libmpx).
 *
 * Two kinds, for two kinds of memory:
 *  - private (FUTEX_PRIVATE_FLAG): words that only threads of this process ever map (a future's
 *    state, the submission gate, the thread pool's epoch, the MPI bell). Cheaper in the kernel.
 *    Timeouts are relative.
 *  - shared (no PRIVATE flag): words in MAP_SHARED memory that several processes map (the
 *    multiprocessing primitives in core/src/ipc). Deadlines are absolute CLOCK_MONOTONIC times
 *    (FUTEX_WAIT_BITSET), so a retried wait never stretches the caller's timeout.
 *
 * A wait returns when woken, when the word no longer holds `expect` (at once), on a signal, or
 * spuriously: callers always re-check their condition in a loop. Only MPX_ETIMEDOUT is reported.
 *
 * Stateless; safe from any thread (and, for the shared kind, any process that maps the word). */
#ifndef MPX_OS_FUTEX_H
#define MPX_OS_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Sleep while *word == expect, at most `timeout` (relative; NULL = no limit). 0 when woken, the
 * word changed or a signal came; MPX_ETIMEDOUT when the timeout passed. Process-private words. */
int mpx__futex_wait_private(_Atomic uint32_t *word, uint32_t expect,
                            const struct timespec *timeout);
/* Wake up to `n` sleepers (INT_MAX: all) on a process-private word. */
void mpx__futex_wake_private(_Atomic uint32_t *word, int n);

/* Sleep while *word == expect, until woken or the absolute monotonic deadline (NULL = forever).
 * Returns 0 when woken or the word changed (callers re-check their condition; spurious wake-ups
 * happen), MPX_ETIMEDOUT when the deadline passed (checked before sleeping, too). For words in
 * memory shared between processes. */
int mpx__futex_wait(_Atomic uint32_t *word, uint32_t expect, const struct timespec *deadline);
/* Wake up to `n` sleepers (INT_MAX for all) on a word shared between processes. */
void mpx__futex_wake(_Atomic uint32_t *word, int n);

#endif
