/* error.c: mpx_strerror() and mpx_err_name(), generated from MPX_ERROR_LIST. Pure, thread-safe. */
#include "mpx/error.h"

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
