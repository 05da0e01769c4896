/* errmsg.h: record a detail message for the last failure on this thread (mpx_errmsg()). */
#ifndef MPX_ERRMSG_H
#define MPX_ERRMSG_H

void mpx__set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
