/* futex.c: the futex system calls behind futex.h. Stateless: every call works on the word the
 * caller passes, so it is safe from any thread (and any process, for the shared kind). */
#include "os/futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mpx/error.h"

int mpx__futex_wait_private(_Atomic uint32_t *word, uint32_t expect,
                            const struct timespec *timeout) {
  long rc = syscall(SYS_futex, word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, expect, timeout, NULL, 0);
  if (rc == -1 && errno == ETIMEDOUT) return MPX_ETIMEDOUT;
  return MPX_OK; /* woken, EAGAIN (word changed) or EINTR: the caller re-checks */
}

void mpx__futex_wake_private(_Atomic uint32_t *word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

static int passed(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > deadline->tv_sec ||
         (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

int mpx__futex_wait(_Atomic uint32_t *word, uint32_t expect, const struct timespec *deadline) {
  if (deadline && passed(deadline)) return MPX_ETIMEDOUT;
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time; not PRIVATE: shared mappings. */
  long rc =
      syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expect, deadline, NULL, FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) return MPX_ETIMEDOUT;
  return MPX_OK; /* woken, EAGAIN (word changed) or EINTR: the caller re-checks */
}

void mpx__futex_wake(_Atomic uint32_t *word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}
