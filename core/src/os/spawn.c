/* spawn.c: mpx__spawn (see spawn.h): fork with the death signal armed and re-checked. No state;
 * safe from any thread. */
#include "os/spawn.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

pid_t mpx__spawn(int flags, int orphan_status) {
  if (flags & MPX__SPAWN_FLUSH) fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0 && (flags & MPX__SPAWN_DIE_WITH_PARENT)) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(orphan_status); /* it died before the death signal was armed */
  }
  return pid;
}
