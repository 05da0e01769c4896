/* mpx error codes: one X-macro list generates the enum, mpx_strerror() and mpx_err_name().
 *
 * Every public mpx function returns 0 (MPX_OK) on success or one of these negative codes. Functions
 * that answer a yes/no question (mpx_future_done, ...) return 1 or 0, or a negative code on bad
 * input. Codes are stable: append new ones at the end of the list, never renumber. */
#ifndef MPX_ERROR_H
#define MPX_ERROR_H

#include "mpx/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define MPX_ERROR_LIST(X)                                                                          \
  X(OK, 0, "success")                                                                              \
  X(EINVAL, -1, "invalid argument")                                                                \
  X(ENOMEM, -2, "out of memory")                                                                   \
  X(ENOTASK, -3, "no task is registered under that name or id")                                    \
  X(ESHUTDOWN, -4, "the executor is shut down")                                                    \
  X(ETIMEDOUT, -5, "timed out")                                                                    \
  X(ECANCELLED, -6, "the future was cancelled")                                                    \
  X(ETASK, -7, "the task failed")                                                                  \
  X(EWORKER_LOST, -8, "the worker running the task was lost (killed, crashed or exited)")         \
  X(ENOTBUILT, -9, "this backend is not built into this mpx")                                      \
  X(ESTATE, -10, "the operation is not valid in the object's current state")                       \
  X(ERELEASED, -11, "the future handle was already released")                                      \
  X(EFULL, -12, "full: the bound on queued items is reached")                                      \
  X(EEMPTY, -13, "empty: there is nothing to take")                                                \
  X(EEOF, -14, "end of file: the other end is closed")                                             \
  X(ETOOBIG, -15, "payload exceeds the configured maximum size")                                   \
  X(EPROTO, -16, "malformed, truncated or corrupt frame or message")                               \
  X(ESIZE, -17, "result size differs from the size the caller expected")                           \
  X(ECLOSED, -18, "the object is closed")                                                          \
  X(EPERM, -19, "operation not permitted on this object or end")                                   \
  X(EOWNERDEAD, -20, "the previous holder died while holding it; state may be inconsistent")       \
  X(ESYS, -21, "a system call failed")                                                             \
  X(EMPI, -22, "an MPI call failed")                                                               \
  X(EINIT, -23, "the worker initializer failed")                                                   \
  X(EEXIST, -24, "already exists")                                                                 \
  X(ENOTFOUND, -25, "not found")                                                                   \
  X(EBROKEN, -26, "broken: a party left, was reset, or the object can no longer be used")          \
  X(ETOPO, -27, "the hardware topology could not be read or has no usable cores")                  \
  X(ECALLBACK, -28, "a done-callback reported a failure")                                          \
  X(ETERMINATED, -29, "the executor was terminated: the task was stopped before it finished")

typedef enum mpx_error {
#define MPX__ERR_ENUM(name, value, msg) MPX_##name = (value),
  MPX_ERROR_LIST(MPX__ERR_ENUM)
#undef MPX__ERR_ENUM
} mpx_error;

/* A sentence that explains `code` ("unknown mpx error" for a code not in the list). Never NULL. */
MPX_API const char *mpx_strerror(int code);

/* The code's name, such as "MPX_ETIMEDOUT" ("MPX_UNKNOWN" for a code not in the list).
 * Never NULL. */
MPX_API const char *mpx_err_name(int code);

/* Details of the last failure of an mpx call on this thread (which worker's initializer failed,
 * which file could not be read, ...), or "" if none was recorded. Valid until the next mpx call on
 * this thread. */
MPX_API const char *mpx_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif
