/* log.h: the library's side of the log hook in mpx/log.h (internal to libmpx).
 *
 * mpx__log(level, fmt, ...) formats a message printf-style and hands it to the logger the
 * application (or MPX_LOG) installed. When the message's level is above the current one (and
 * always when no logger is installed) it costs one relaxed atomic load and a compare: the
 * arguments are not even evaluated. Messages are one line, without a trailing newline, at most
 * ~1 KiB (longer ones are cut).
 *
 * Levels: ERROR for a failure the application cannot otherwise see (just before an MPI abort),
 * WARN for one mpx carried on from (a worker not replaced, a done-callback that failed), INFO for
 * what an executor was set up with, DEBUG for details.
 *
 * Thread-safety: mpx__log may be called from any thread, and in forked children. */
#ifndef MPX_OS_LOG_H
#define MPX_OS_LOG_H

#include <stdatomic.h>

#include "mpx/log.h"

/* Messages with a level <= this are delivered: the current level when a logger is installed,
 * else MPX_LOG_OFF. INT_MAX until MPX_LOG has been read, so the first message reads it. */
extern _Atomic int mpx__log_gate;

/* Format and deliver (the slow half of mpx__log; it checks the level again). */
void mpx__log_emit(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mpx__log(level, ...)                                                                       \
  do {                                                                                             \
    if ((level) <= atomic_load_explicit(&mpx__log_gate, memory_order_relaxed))                     \
      mpx__log_emit((level), __VA_ARGS__);                                                         \
  } while (0)

#endif
