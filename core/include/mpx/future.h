/* mpx futures: the outcome of one submitted task, as concurrent.futures.Future.
 *
 * States: PENDING -> RUNNING -> FINISHED | FAILED, or PENDING -> CANCELLED. A task queued to a
 * process worker that has not started it is still PENDING (and can be cancelled); it is RUNNING
 * once that worker has started it. Under MPI a task sent to a rank is PENDING too until the rank
 * says it started it (ranks report a start once the task has run a couple of milliseconds, or
 * with its result): mpx_future_cancel and shutdown(cancel_futures) ask the rank for it, and the
 * rank decides: given back, it is CANCELLED and never runs; started, cancel answers MPX_ESTATE.
 * Such a cancel waits for the rank's answer (a round trip); a rank that does not answer within
 * the executor's stall_timeout is abandoned (mpx/mpi.h), and the task is then CANCELLED. One
 * made from a done-callback on the executor's own dispatcher thread answers MPX_ESTATE at once. When another rank runs dry while a task waits behind a long one,
 * the dispatcher may take it back unstarted (the rank confirms it will not run it) and send it
 * elsewhere; such a task still runs exactly once. A future completes exactly once. Done-callbacks run exactly once each, in the order they were added, on
 * the thread that completes the future (or at once, on the caller's thread, if it is already done),
 * never under an mpx lock, so a callback may call any mpx function, including destroying the
 * executor that runs it (the free is deferred until the callback returned; see
 * mpx_executor_destroy). shutdown with wait from a callback on the executor's own thread cannot
 * wait for that thread: it shuts down and returns MPX_ESTATE (see mpx_executor_shutdown).
 *
 * A future is reference counted: mpx_submit hands the caller one reference, mpx_future_release
 * drops it. Result bytes stay valid until the last reference is dropped. All functions are safe
 * to call from any thread. Timeouts are in seconds: MPX_FOREVER waits without limit, 0 polls. */
#ifndef MPX_FUTURE_H
#define MPX_FUTURE_H

#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_future mpx_future;

/* Wait without limit. Any negative timeout, and +infinity, mean the same; a NaN timeout is
 * refused with MPX_EINVAL by every call that takes one. */
#define MPX_FOREVER (-1.0)

typedef enum mpx_future_state {
  MPX_PENDING = 0,
  MPX_RUNNING = 1,
  MPX_FINISHED = 2,
  MPX_FAILED = 3,
  MPX_CANCELLED = 4,
} mpx_future_state;

/* Wait up to `timeout` for the task's result. On success *data points at the result bytes (valid
 * until the future is released; may be NULL when *len is 0). Otherwise returns MPX_ETIMEDOUT,
 * MPX_ECANCELLED, or the task's error code (see mpx_future_exception for its message). */
MPX_API int mpx_future_result(mpx_future *f, double timeout, const void **data, size_t *len);

/* As mpx_future_result, copying the result into `dst`, which must be exactly `size` bytes long:
 * MPX_ESIZE (nothing copied) when the result has another length. */
MPX_API int mpx_future_result_copy(mpx_future *f, void *dst, size_t size, double timeout);

/* Wait up to `timeout` for the outcome; then *code is 0 if the task succeeded or its error code,
 * and *message (may be NULL) is the error text ("" on success), valid until release. Returns
 * MPX_ETIMEDOUT if still not done; MPX_ECANCELLED if it was cancelled. */
MPX_API int mpx_future_exception(mpx_future *f, double timeout, int *code, const char **message);

/* 1 if finished, failed or cancelled, else 0; negative code on a bad handle. */
MPX_API int mpx_future_done(const mpx_future *f);
/* 1 if a worker is running it now, else 0. */
MPX_API int mpx_future_running(const mpx_future *f);
/* 1 if it was cancelled, else 0. */
MPX_API int mpx_future_cancelled(const mpx_future *f);
/* The state now (a mpx_future_state), or a negative code. */
MPX_API int mpx_future_state_get(const mpx_future *f);

/* Cancel a future that has not started: 0 if it is now cancelled (or already was), MPX_ESTATE if
 * it is running or done (as Python, a running task is not interrupted). A running task is,
 * however, asked to stop: its mpx_task_should_stop turns true (task.h), on every backend, so a
 * task that polls it can end early; its future then completes with whatever the task returns. */
MPX_API int mpx_future_cancel(mpx_future *f);

/* A done-callback. A negative return is reported on stderr and counted (see
 * mpx_future_callback_failures); the remaining callbacks still run. */
typedef int (*mpx_done_fn)(mpx_future *f, void *arg);

/* Add a callback: run once when the future completes, after those added before it, or at once if
 * it is already done. The callback holds a reference of its own until it returns: inside it `f`
 * is a valid handle (its result, exception and state can be read) even when every reference the
 * user held was released before it ran, so submit, add a callback, release is a complete
 * fire-and-forget. The callback must not release that reference; after it returns, `f` is dead
 * unless the user still holds one. */
MPX_API int mpx_future_add_done_callback(mpx_future *f, mpx_done_fn fn, void *arg);

/* A done-callback that is handed the outcome: code 0 and the result bytes (data may be NULL when
 * len is 0), or the error code (MPX_ECANCELLED when cancelled) and its message (never NULL).
 * data and message are valid during the call. A negative return counts as for mpx_done_fn. */
typedef int (*mpx_outcome_fn)(mpx_future *f, int code, const void *data, size_t len,
                              const char *message, void *arg);

/* As mpx_future_add_done_callback, for a callback that takes the outcome. */
MPX_API int mpx_future_add_outcome_callback(mpx_future *f, mpx_outcome_fn fn, void *arg);

/* Number of callbacks that returned a negative code, process-wide (for tests and monitoring). */
MPX_API long mpx_future_callback_failures(void);

/* Take another reference (for handing the future to another owner). */
MPX_API int mpx_future_retain(mpx_future *f);
/* Drop a reference. The handle must not be used afterwards; functions that still detect the stale
 * handle answer MPX_ERELEASED. */
MPX_API int mpx_future_release(mpx_future *f);

/* How mpx_wait decides it may return. */
typedef enum mpx_wait_mode {
  MPX_FIRST_COMPLETED = 0, /* any future is done or cancelled */
  MPX_FIRST_EXCEPTION = 1, /* any future failed, or all are done */
  MPX_ALL_COMPLETED = 2,   /* every future is done or cancelled */
} mpx_wait_mode;

/* Wait until the condition holds for `fs[0..n)`: 0 if it holds, MPX_ETIMEDOUT if not by then.
 * NULL entries are MPX_EINVAL. Duplicates are allowed. Use mpx_future_done to split the set. */
MPX_API int mpx_wait(mpx_future *const *fs, size_t n, mpx_wait_mode mode, double timeout);

/* An iterator over futures in the order they complete (those already done come first). */
typedef struct mpx_as_completed mpx_as_completed;

/* Start iterating over `fs[0..n)` (duplicates are yielded once). `timeout` bounds the whole
 * iteration, counted from this call, as Python's as_completed(timeout=...). The iterator holds a
 * reference to each future until it is destroyed. */
MPX_API int mpx_as_completed_create(mpx_future *const *fs, size_t n, double timeout,
                                    mpx_as_completed **it);
/* The next completed future (*f; no reference is added), MPX_EEMPTY when all were yielded, or
 * MPX_ETIMEDOUT when the overall timeout passed first. */
MPX_API int mpx_as_completed_next(mpx_as_completed *it, mpx_future **f);
/* Free the iterator and drop its references. */
MPX_API int mpx_as_completed_destroy(mpx_as_completed *it);

#ifdef __cplusplus
}
#endif
#endif
