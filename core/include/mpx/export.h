/* mpx export macro: MPX_API marks the functions of mpx's public API.
 *
 * libmpx is compiled with hidden visibility (-fvisibility=hidden), so only what a public header
 * declares with MPX_API is exported from libmpx.so; the library's internals (the mpx__ functions
 * and the protobuf-c code generated for mpx's wire format) stay inside it. Every public header
 * includes this one. A user never needs to name MPX_API. */
#ifndef MPX_EXPORT_H
#define MPX_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define MPX_API __attribute__((visibility("default")))
#else
#define MPX_API
#endif

#endif
