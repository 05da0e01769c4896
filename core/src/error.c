/* error.c: mpx_strerror() and mpx_err_name(), generated from MPX_ERROR_LIST, and the per-thread
 * detail message behind mpx_errmsg(). Thread-safe. */
#include "mpx/error.h"

#include <stdarg.h>
#include <stdio.h>

#include "errmsg.h"

static _Thread_local char errmsg[512];

void mpx__set_errmsg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, sizeof errmsg, fmt, ap);
  va_end(ap);
}

const char *mpx_errmsg(void) { return errmsg; }

const char *mpx_strerror(int code) {
  switch (code) {
#define MPX__ERR_MSG(name, value, msg)                                                             \
  case value: return msg;
    MPX_ERROR_LIST(MPX__ERR_MSG)
#undef MPX__ERR_MSG
  }
  return "unknown mpx error";
}

const char *mpx_err_name(int code) {
  switch (code) {
#define MPX__ERR_NAME(name, value, msg)                                                            \
  case value: return "MPX_" #name;
    MPX_ERROR_LIST(MPX__ERR_NAME)
#undef MPX__ERR_NAME
  }
  return "MPX_UNKNOWN";
}
