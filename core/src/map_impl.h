/* map_impl.h: what map.c and map_async.c share: the results of a variable-size map and the
 * chunking rule. Internal to libmpx. An mpx_results is written by one thread, then only read. */
#ifndef MPX_MAP_IMPL_H
#define MPX_MAP_IMPL_H

#include <stddef.h>

#include "mpx/executor.h"
#include "vchunk.h"

/* Default chunks of the streaming and variable-size maps hold at most this many items. */
enum { IMAP_CHUNK_MAX = 4096 };

struct mpx_results {
  size_t n, chunk, nchunks;
  mpx__vres **v; /* per chunk: chunk i holds items [i * chunk, i * chunk + its count) */
};

/* MPX_EINVAL with `what` as mpx_errmsg. */
int mpx__map_einval(const char *what);
/* Items per chunk: `asked`, else Python's ceil(n / (4 * workers)) capped at `cap` (0: none);
 * at most n, and on processes and MPI at most the items one message takes. */
size_t mpx__map_chunk_of(const mpx_executor *ex, size_t n, size_t asked, size_t cap);

#endif
