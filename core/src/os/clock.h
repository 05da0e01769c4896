/* clock.h: the library's one monotonic clock (internal to libmpx).
 *
 * CLOCK_MONOTONIC, read through the vDSO (no system call): never jumps with the wall clock, so it
 * is the clock for every timeout, deadline and spin budget in core, the transports and the
 * multiprocessing primitives. Two views of the same clock: seconds as a double (deadlines that
 * are compared and subtracted) and whole nanoseconds (short spin budgets, where a double's
 * rounding would show).
 *
 * Stateless and safe from any thread, any process, and in a child between fork and exec. */
#ifndef MPX_OS_CLOCK_H
#define MPX_OS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic time in seconds. */
static inline double mpx__now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Monotonic time in nanoseconds. */
static inline int64_t mpx__now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

#endif
