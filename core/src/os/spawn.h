/* spawn.h: the one way libmpx forks a child (internal to libmpx).
 *
 * Every fork in the library (the fork server, the workers it forks, workers forked directly by a
 * process transport without a fork server, and mpx_process) goes through mpx__spawn, which does
 * what those sites share:
 *  - MPX__SPAWN_FLUSH: fflush(NULL) first, so that nothing buffered in stdio is copied into the
 *    child and printed twice;
 *  - MPX__SPAWN_DIE_WITH_PARENT: in the child, prctl(PR_SET_PDEATHSIG, SIGKILL), then a re-check
 *    of getppid() against the parent's pid taken before the fork: a parent that died before the
 *    death signal was armed would never send it, so the child leaves at once with _exit
 *    (`orphan_status`). Linux sends the death signal when the *thread* that forked exits, not the
 *    process: fork from a thread that lives as long as the child should (mpx_init runs on main).
 * The rest of each child's set-up (closing the parent's descriptors, signal masks) stays with the
 * caller, between mpx__spawn's return of 0 and the child's main function.
 *
 * Thread-safety: callable from any thread, with the usual fork caveat: in a threaded parent only
 * the calling thread is copied, and locks other threads held stay held in the child. No state. */
#ifndef MPX_OS_SPAWN_H
#define MPX_OS_SPAWN_H

#include <sys/types.h>

enum {
  MPX__SPAWN_FLUSH = 1,          /* fflush(NULL) before forking */
  MPX__SPAWN_DIE_WITH_PARENT = 2 /* PR_SET_PDEATHSIG(SIGKILL) and the getppid() re-check */
};

/* Fork. Returns as fork() does: the child's pid in the parent, 0 in the child, -1 (errno) when
 * the fork failed. With MPX__SPAWN_DIE_WITH_PARENT a child whose parent is already gone does not
 * return: it calls _exit(orphan_status). */
pid_t mpx__spawn(int flags, int orphan_status);

#endif
