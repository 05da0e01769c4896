/* reaper.h: work handed to detached threads that the process waits for before it tears down.
 *
 * A caller that must not wait for something itself (an executor destroyed from one of its own
 * threads or from a done-callback: joining would wait for the calling thread) hands it to a
 * reaper: a detached thread that runs fn(arg) once. mpx__reaper_wait blocks until every reaper
 * started so far has returned (mpx_finalize, and executor creation outside callbacks, call it, so
 * that resources such as an MPI communicator are free again before they are reused).
 *
 * Thread-safety: any thread; one mutex and condition variable guard the count. */
#ifndef MPX_OS_REAPER_H
#define MPX_OS_REAPER_H

/* Run fn(arg) on a new detached thread. 0, or MPX_ESYS when no thread could be started (fn did
 * not run). */
int mpx__reaper_run(void (*fn)(void *), void *arg);

/* Wait until every reaper has returned. Must not be called from a reaper's fn. */
void mpx__reaper_wait(void);

#endif
