/* check.h: the assertion macros the C tests share. A failed check prints file:line, the
 * expression and, for codes, both names, then exits 1 so that ctest reports the test failed. */
#ifndef MPX_CHECK_H
#define MPX_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/error.h>
#include <mpx/executor.h>

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* expr must return exactly the code `want` */
#define CHECK_RC(expr, want)                                                                       \
  do {                                                                                             \
    int rc_ = (expr), want_ = (want);                                                              \
    if (rc_ != want_) {                                                                            \
      fprintf(stderr, "%s:%d: %s returned %s (%d: %s), expected %s\n", __FILE__, __LINE__, #expr,  \
              mpx_err_name(rc_), rc_, mpx_strerror(rc_), mpx_err_name(want_));                    \
      if (*mpx_errmsg()) fprintf(stderr, "  detail: %s\n", mpx_errmsg());                          \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, MPX_OK)

/* Forking under ThreadSanitizer is not supported: then, and with MPX_TEST_NO_FORK set, tests run
 * only their thread paths. */
#if defined(__SANITIZE_THREAD__)
#define NO_FORK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NO_FORK 1
#endif
#endif
#ifndef NO_FORK
#define NO_FORK (getenv("MPX_TEST_NO_FORK") != NULL)
#endif

/* Monotonic seconds. */
static inline double check_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The backend a test's argv[1] names: "processes", "mpi", else threads (the default). */
static inline mpx_backend check_backend(int argc, char **argv) {
  const char *b = argc > 1 ? argv[1] : "threads";
  return !strcmp(b, "processes") ? MPX_BACKEND_PROCESSES
         : !strcmp(b, "mpi")     ? MPX_BACKEND_MPI
                                 : MPX_BACKEND_THREADS;
}

#define RUN(test)                                                                                  \
  do {                                                                                             \
    fprintf(stderr, "-- %s\n", #test);                                                             \
    test();                                                                                        \
  } while (0)

#endif
