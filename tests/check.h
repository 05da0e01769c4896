/* check.h: the assertion macros the C tests share. A failed check prints file:line, the
 * expression and, for codes, both names, then exits 1 so that ctest reports the test failed. */
#ifndef MPX_CHECK_H
#define MPX_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <mpx/error.h>

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

#define RUN(test)                                                                                  \
  do {                                                                                             \
    fprintf(stderr, "-- %s\n", #test);                                                             \
    test();                                                                                        \
  } while (0)

#endif
