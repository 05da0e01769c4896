/* mpx tasks: C functions registered once under a name, run by workers of any backend.
 *
 * A task receives its argument bytes and writes result bytes into an mpx_buf, or fails with an
 * error code and a message. MPX_TASK(fn) registers `fn` under the name "fn" before main() runs
 * (a constructor), so every thread, forked process and MPI rank of the same binary holds the same
 * table. Only the task's id (a hash of its name) crosses a process or rank boundary: nothing that
 * arrives over a pipe or MPI can make a worker run code that was not registered.
 *
 * Thread-safety: registration is meant for load time (constructors) but is locked and may also be
 * called later; lookups are lock-free once registration is over. */
#ifndef MPX_TASK_H
#define MPX_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Result bytes a task produces. Small results live inside the future (no allocation). */
typedef struct mpx_buf mpx_buf;
/* Per-call context: lets a task fail with a message and tells it which worker runs it. */
typedef struct mpx_task_ctx mpx_task_ctx;

/* A task: return 0 on success (the result is whatever was written to `out`, possibly empty), or a
 * negative MPX_E* code, best through mpx_task_fail() so that the future carries a message.
 * `arg` is valid only during the call. */
typedef int (*mpx_task_fn)(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out);

/* A registered task; handles are valid for the life of the process. */
typedef struct mpx_task {
  const char *name;
  uint32_t id; /* what crosses boundaries: FNV-1a hash of the name */
  mpx_task_fn fn;
} mpx_task;

/* Longest task name accepted. */
#define MPX_TASK_NAME_MAX 127

/* Register `fn` under `name` (1..MPX_TASK_NAME_MAX characters; the string must outlive the
 * process, as a literal does). MPX_EEXIST if the name, or another name with the same id, is
 * taken; MPX_EINVAL for NULL or bad names. */
MPX_API int mpx_task_register(const char *name, mpx_task_fn fn);

/* Find a task by name (*out = handle). MPX_ENOTASK if none (mpx_errmsg names the name asked
 * for), MPX_EINVAL for a NULL name. Submitting with a handle skips the
 * name lookup on hot paths. */
MPX_API int mpx_task_find(const char *name, const mpx_task **out);

/* Find a task by wire id. MPX_ENOTASK if none. */
MPX_API int mpx_task_find_id(uint32_t id, const mpx_task **out);

/* Register the static function `fn` under its own name at load time. */
#define MPX_TASK(fn) MPX_TASK_NAMED(fn, #fn)
#define MPX_TASK_NAMED(fn, name)                                                                   \
  __attribute__((constructor)) static void mpx__register_##fn(void) {                              \
    (void)mpx_task_register(name, fn);                                                             \
  }

/* Fail the current task: records `code` (negative MPX_E*; MPX_ETASK if 0 or positive) and a
 * printf-style message, and returns the code so a task can `return mpx_task_fail(...)`.
 * On process and MPI workers a task may fail only with a task-failure code: MPX_ETASK, EINVAL,
 * ENOMEM, ENOTASK, ETIMEDOUT, ETOOBIG, EPROTO, ESIZE, ESYS, EMPI, EPERM, ESTATE, ENOTFOUND, EEXIST,
 * EEOF, ECLOSED, EFULL, EEMPTY, EBROKEN, EOWNERDEAD, ETOPO. Any other code (MPX_ECANCELLED,
 * MPX_EWORKER_LOST, MPX_ESHUTDOWN, MPX_ERELEASED, MPX_EINIT, MPX_ECALLBACK, MPX_ENOTBUILT,
 * MPX_ETERMINATED: the executor's own verdicts) is reported as MPX_ETASK, with the task's
 * message. */
MPX_API int mpx_task_fail(mpx_task_ctx *ctx, int code, const char *fmt, ...)
            __attribute__((format(printf, 3, 4)));

/* 1 once this task is asked to stop, else 0 (a task that runs long should ask now and then and
 * return soon after, for instance with mpx_task_fail(ctx, MPX_ETASK, "stopped")). Asked means:
 * its future was cancelled while it ran (mpx_future_cancel still answers MPX_ESTATE, as Python's
 * cancel() of a running future returns False, but the request reaches the task), or its executor
 * was shut down with cancel_futures or terminated (mpx_executor_terminate). On every backend:
 * threads read a flag in the future; process workers a word in their progress page, which the
 * parent writes; MPI ranks a message rank 0 sends (the call looks for it, without blocking).
 * A cheap call (a few loads; on MPI a non-blocking probe), seen within microseconds on threads
 * and processes, and within one message's latency on MPI. 0 for a NULL ctx. */
MPX_API int mpx_task_should_stop(const mpx_task_ctx *ctx);

/* Index of the worker running this task (0-based), or -1 when unknown. */
MPX_API int mpx_task_worker(const mpx_task_ctx *ctx);

/* Set the result to a copy of `len` bytes at `data` (data may be NULL when len is 0). */
MPX_API int mpx_buf_set(mpx_buf *out, const void *data, size_t len);

/* Make room for `len` result bytes and return where to write them in *data (the result's length
 * becomes `len`). Lets a task build a large result in place, without a second copy. On a process
 * worker a result of 1 MiB or more is built in shared memory and reaches the caller's
 * mpx_future_result without any copy. */
MPX_API int mpx_buf_reserve(mpx_buf *out, size_t len, void **data);

/* The result's current bytes and length (either pointer may be NULL). */
MPX_API int mpx_buf_get(const mpx_buf *out, void **data, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
