/* mpx processes: run a registered task in a new forked process, as multiprocessing.Process.
 *
 * mpx_process_create names the task (looked up now, by name, in the task registry) and copies
 * its argument bytes; mpx_process_start forks; the child runs the task once and _exit()s. The
 * task's result bytes are discarded (as a Process target's return value is): talk back through a
 * queue, pipe or shared value created before start. Exit code, as Python's Process.exitcode:
 * 0 when the task succeeded, 1 when it returned an error (its message goes to stderr), n when
 * the task called exit(n), -N when signal N ended it.
 *
 * The fork rule: fork() copies only the calling thread. mpx may fork from a parent that already
 * runs other threads only because the child does nothing but run the task and _exit(): glibc
 * resets malloc and stdio locks in the child, but any other lock another parent thread held at
 * fork time (your own mutexes, an mpx executor's, a library's) stays held forever in the child.
 * So a task run in an mpx_process must not take locks the parent's other threads use; mpx's
 * shared-memory primitives (queues, locks, values, dicts created before start) are safe. stdio
 * is flushed before fork and before the child exits, so output is neither lost nor doubled.
 *
 * Daemon processes end when their parent ends, even by SIGKILL: the child sets
 * prctl(PR_SET_PDEATHSIG, SIGKILL) and re-checks getppid() after it. Linux delivers the signal
 * when the *thread* that forked exits, so start daemons from a thread that lives as long as the
 * process (main). Non-daemon processes outlive their parent: join them.
 *
 * Thread-safety: all functions may be called from any thread; a handle is locked internally.
 * The child is reaped by join, is_alive or exitcode (waitpid on its pid only; if someone else
 * reaps it with waitpid(-1), its exit code reads as 255). Timeouts are seconds: negative waits
 * forever, 0 polls. */
#ifndef MPX_IPC_PROCESS_H
#define MPX_IPC_PROCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_process mpx_process;

/* A process that will run task `task` on a copy of arg[0..len). `name` may be NULL
 * ("Process-<n>"). MPX_ENOTASK if no task has that name. */
MPX_API int mpx_process_create(mpx_process **p, const char *task, const void *arg, size_t len,
                               const char *name);

/* Mark as daemon or not (before start; MPX_ESTATE after). */
MPX_API int mpx_process_set_daemon(mpx_process *p, bool daemon);
/* 1 if daemon, else 0. */
MPX_API int mpx_process_daemon(const mpx_process *p);

/* Fork and run the task in the child. MPX_ESTATE if already started, MPX_ESYS if fork fails. */
MPX_API int mpx_process_start(mpx_process *p);

/* Wait up to `timeout` for the process to end: 0 when it has (exit code known), MPX_ETIMEDOUT,
 * MPX_ESTATE if never started. */
MPX_API int mpx_process_join(mpx_process *p, double timeout);

/* 1 if started and not yet ended, else 0. */
MPX_API int mpx_process_is_alive(mpx_process *p);

/* Send SIGTERM / SIGKILL. 0 also when it has already ended; MPX_ESTATE if never started. */
MPX_API int mpx_process_terminate(mpx_process *p);
MPX_API int mpx_process_kill(mpx_process *p);

/* The child's pid (MPX_ESTATE before start). */
MPX_API int mpx_process_pid(const mpx_process *p, int *pid);

/* The exit code (see above) once ended; MPX_ESTATE while it runs or before start. */
MPX_API int mpx_process_exitcode(mpx_process *p, int *code);

/* The process's name (valid until destroy). */
MPX_API int mpx_process_name(const mpx_process *p, const char **name);

/* Free the handle (Python's close()): MPX_ESTATE if it still runs. A process never started, or
 * ended (reaped here if needed), is freed. */
MPX_API int mpx_process_destroy(mpx_process *p);

#ifdef __cplusplus
}
#endif
#endif
