/* mpx protobuf helpers: pass your own protobuf-c messages as task arguments and results.
 *
 * Tasks take and return bytes. To send a structured value, pack a protobuf-c message into bytes
 * with mpx_msg_pack (or, inside a task, straight into the result with mpx_buf_set_msg) and unpack
 * it on the other side with mpx_msg_unpack, which bounds the input size and refuses malformed
 * bytes (and nesting deeper than 16 levels) before protobuf-c allocates anything.
 *
 *   static int area(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
 *     ProtobufCMessage *m;
 *     int rc = mpx_msg_unpack(&shape__descriptor, arg, len, 1 << 20, &m);
 *     if (rc) return mpx_task_fail(ctx, rc, "bad Shape");
 *     Shape *s = (Shape *)m;
 *     Area a = AREA__INIT;
 *     a.value = s->w * s->h;
 *     mpx_msg_free(m);
 *     return mpx_buf_set_msg(out, &a.base);
 *   }
 *
 * Thread-safety: all functions are reentrant; a message may not be packed while another thread
 * modifies it. */
#ifndef MPX_PROTO_H
#define MPX_PROTO_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "mpx/export.h"
#include "mpx/error.h"
#include "mpx/executor.h"
#include "mpx/future.h"
#include "mpx/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pack `m` into a new malloc'd buffer: *data (free() it) and *len. An empty message gives
 * *len == 0 and a valid 1-byte allocation. MPX_EINVAL for NULL arguments or a `m` whose
 * descriptor is not a message descriptor; MPX_ENOMEM. */
MPX_API int mpx_msg_pack(const ProtobufCMessage *m, void **data, size_t *len);

/* Inside a task: make the packed bytes of `m` the task's result, packed straight into the result
 * buffer (mpx_buf_reserve), without an intermediate copy. MPX_EINVAL; MPX_ETOOBIG when the packed
 * message exceeds the result limit; MPX_ENOMEM. */
MPX_API int mpx_buf_set_msg(mpx_buf *out, const ProtobufCMessage *m);

/* Unpack `len` bytes at `data` as a message of type `d` into *out (free with mpx_msg_free).
 * `max_len` bounds both `len` and every string, bytes or unknown field inside (0: no bound).
 * MPX_ETOOBIG over max_len, or for more than 2^20 elements of repeated message fields and
 * unknown fields; MPX_EPROTO for malformed, truncated or too deeply nested bytes, or whatever
 * else protobuf-c refuses; MPX_EINVAL for NULL arguments. *out is NULL on error. */
MPX_API int mpx_msg_unpack(const ProtobufCMessageDescriptor *d, const void *data, size_t len,
                           size_t max_len, ProtobufCMessage **out);

/* Free a message from mpx_msg_unpack (NULL is fine). Returns 0. */
MPX_API int mpx_msg_free(ProtobufCMessage *m);

/* Submit `task` with `msg` packed as its argument (as mpx_submit_task otherwise; opts may be
 * NULL). The packed bytes belong to the future, so `msg` may be freed or changed at once. */
MPX_API int mpx_submit_msg(mpx_executor *ex, const char *task, const ProtobufCMessage *msg,
                           const mpx_submit_opts *opts, mpx_future **out);

/* Wait up to `timeout` for the result (as mpx_future_result) and unpack it as a message of type
 * `d` (as mpx_msg_unpack with `max_len`) into *out, to free with mpx_msg_free. */
MPX_API int mpx_future_result_msg(mpx_future *f, double timeout,
                                  const ProtobufCMessageDescriptor *d, size_t max_len,
                                  ProtobufCMessage **out);

#ifdef __cplusplus
}
#endif
#endif
