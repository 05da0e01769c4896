/* mpx/log.h: where mpx's diagnostics go.
 *
 * mpx never writes to stderr on its own. What it has to say (a worker that could not be replaced,
 * a done-callback that failed, which backend an executor chose and where its workers are bound)
 * goes to a log hook, and by default there is none: the library is silent. An application either
 *  - installs a logger with mpx_log_set: its own function, or mpx_log_default, which writes
 *    "mpx: <level>: <message>" lines to stderr; or
 *  - leaves it to the environment: MPX_LOG=off|error|warn|info|debug, read once, the first time
 *    mpx logs or a function of this header is called, installs mpx_log_default at that level
 *    (any other non-empty value means warn). A logger installed by mpx_log_set replaces it, and
 *    mpx_log_set_level changes the level, whenever they are called.
 * Messages above the level are neither formatted nor delivered; the level is MPX_LOG_WARN unless
 * MPX_LOG or mpx_log_set_level says otherwise.
 *
 * Thread-safety: every function here may be called from any thread at any time. A logger is
 * called from whichever thread logs (the dispatcher thread, a worker thread, the thread that
 * creates an executor; in forked children too), possibly from several at once, so it must be
 * thread-safe itself. It must not block for long, and should not call back into mpx. */
#ifndef MPX_LOG_H
#define MPX_LOG_H

#include "mpx/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels, most severe first. A message is delivered when its level <= the current level. */
enum {
  MPX_LOG_OFF = 0,   /* as a level: deliver nothing */
  MPX_LOG_ERROR = 1, /* something failed and mpx could not recover it for the application */
  MPX_LOG_WARN = 2,  /* something failed and mpx carried on (a worker not replaced, ...) */
  MPX_LOG_INFO = 3,  /* once per executor and rarer: backend, workers, placement */
  MPX_LOG_DEBUG = 4  /* details for whoever debugs mpx itself */
};

/* A logger: `level` is one of MPX_LOG_ERROR..MPX_LOG_DEBUG, `msg` one line without a trailing
 * newline (valid only during the call), `user` the pointer given to mpx_log_set. */
typedef void (*mpx_log_fn)(int level, const char *msg, void *user);

/* Install `fn` (called with `user`) as the logger; NULL makes mpx silent. Replaces the logger
 * MPX_LOG installed, if any, and keeps the current level. A thread that was already inside the
 * previous logger may still finish that call after mpx_log_set returns. */
MPX_API void mpx_log_set(mpx_log_fn fn, void *user);

/* Set the level: messages more verbose than `level` are dropped before they are formatted.
 * Returns MPX_OK, or MPX_EINVAL when level is not MPX_LOG_OFF..MPX_LOG_DEBUG (nothing changes). */
MPX_API int mpx_log_set_level(int level);

/* The default logger: writes "mpx: error: <msg>\n" (or warn, info, debug) to stderr with a
 * single write(2), so lines from several threads or processes do not interleave. `user` is
 * ignored. Install it with mpx_log_set(mpx_log_default, NULL). */
MPX_API void mpx_log_default(int level, const char *msg, void *user);

#ifdef __cplusplus
}
#endif
#endif
