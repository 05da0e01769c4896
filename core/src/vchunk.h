/* vchunk.h: variable-size map chunks (mpx_imap, mpx_map_var): their encoding, running them, and
 * the per-item results the scheduler keeps. Internal to libmpx.
 *
 * A chunk of `count` items is one Task (core/proto/mpx.proto) with `var` bits:
 *  - MPX__VAR_ITEMS: arg is each item as a varint length, then its bytes (item_size is 0);
 *    without it, arg is count * item_size packed bytes, as a fixed chunk's;
 *  - MPX__VAR_RESULTS: the Result's data is one record per item, in item order: a varint
 *    zigzag code (0: success), a varint length, then the result bytes, or for a failure the
 *    message with its terminating NUL. Every item has its own outcome: a failing item does not
 *    stop the chunk.
 * Every length is checked against what remains before anything is read or allocated, on both
 * sides; the parent maps each code into the task-failure set (mpx__task_code), as for tasks.
 *
 * Thread-safety: reentrant; a vres is written once, before its chunk's future completes, and only
 * read afterwards. */
#ifndef MPX_VCHUNK_H
#define MPX_VCHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "mpx/executor.h"

enum { MPX__VAR_ITEMS = 1u, MPX__VAR_RESULTS = 2u, MPX__VAR_MASK = 3u };

/* One item's outcome: code (0 ok), and its result bytes or its message at bytes + off. */
typedef struct mpx__vent {
  int32_t code;
  size_t off, len;
} mpx__vent;

/* A chunk's per-item outcomes: one block (this header, the entries, then the bytes unless
 * `bytes` is a block of its own, `own`). */
typedef struct mpx__vres {
  size_t count;
  int worker; /* the worker that ran the chunk, -1 when not known */
  uint8_t *bytes;
  void *own; /* a separate block holding the bytes, freed with the vres; NULL when inline */
  mpx__vent ent[];
} mpx__vres;

void mpx__vres_free(mpx__vres *v);

/* Encode `count` items of `list` as MPX__VAR_ITEMS bytes: *arg is malloc'd (NULL when *len is
 * 0). MPX_ENOMEM, MPX_ETOOBIG (the encoding overflows size_t). */
int mpx__vchunk_pack_items(const mpx_bytes *list, size_t count, void **arg, size_t *len);

/* Run the `count` items of a chunk (arg/len as on the wire, per `var`) through `t` on this
 * thread and append one result record per item to `out`. Each result is at most max_payload
 * bytes (0: no limit; a larger one becomes an MPX_ETOOBIG record). Returns 0, or a failure of
 * the whole chunk with *why (heap, may be NULL): MPX_EPROTO (items malformed), MPX_ENOMEM. */
int mpx__vchunk_serve(const mpx_task *t, int worker, uint32_t var, const uint8_t *arg, size_t len,
                      uint64_t count, uint64_t item_size, size_t max_payload, mpx__wbuf *out,
                      char **why);

/* Parse `len` bytes of result records, exactly `count` of them. With `adopt` (a malloc'd block
 * holding rec), the vres takes it over whatever happens; else the bytes are copied. MPX_EPROTO
 * (malformed, short, long), MPX_ENOMEM. */
int mpx__vres_parse(const uint8_t *rec, size_t len, size_t count, void *adopt, mpx__vres **out);

/* A vres of `count` items that all failed with `code` and `message` (the chunk failed as a
 * whole: cancelled, lost with its worker, ...). NULL on ENOMEM. */
mpx__vres *mpx__vres_fail(size_t count, int code, const char *message);

#endif
