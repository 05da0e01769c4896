/* proto_msg.c: the public protobuf helpers of mpx/proto.h. Decoding goes through the same
 * allocation-free wire check as mpx's own envelopes (codec.c) before protobuf-c unpacks.
 * Reentrant; no state. */
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"
#include "mpx/proto.h"

static int msg_ok(const ProtobufCMessage *m) {
  return m && m->descriptor && m->descriptor->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
}

int mpx_msg_pack(const ProtobufCMessage *m, void **data, size_t *len) {
  if (data) *data = NULL;
  if (len) *len = 0;
  if (!msg_ok(m) || !data || !len) return MPX_EINVAL;
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = malloc(n ? n : 1);
  if (!p) return MPX_ENOMEM;
  size_t w = protobuf_c_message_pack(m, p);
  if (w != n) {
    free(p);
    return MPX_EINVAL;
  }
  *data = p;
  *len = n;
  return MPX_OK;
}

int mpx_buf_set_msg(mpx_buf *out, const ProtobufCMessage *m) {
  if (!out || !msg_ok(m)) return MPX_EINVAL;
  size_t n = protobuf_c_message_get_packed_size(m);
  void *p;
  int rc = mpx_buf_reserve(out, n, &p);
  if (rc) return rc;
  if (n && protobuf_c_message_pack(m, p) != n) {
    mpx_buf_reserve(out, 0, NULL);
    return MPX_EINVAL;
  }
  return MPX_OK;
}

int mpx_msg_unpack(const ProtobufCMessageDescriptor *d, const void *data, size_t len,
                   size_t max_len, ProtobufCMessage **out) {
  if (out) *out = NULL;
  if (!d || !out || (!data && len)) return MPX_EINVAL;
  if (d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC) return MPX_EINVAL;
  size_t max = max_len ? max_len : SIZE_MAX;
  mpx__limits lim = {.max_payload = max, .max_message = max, .max_items = MPX__DEFAULT_MAX_ITEMS};
  int rc = mpx__wire_check_msg(d, data, len, &lim);
  if (rc) return rc;
  static const uint8_t empty[1];
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, len ? data : empty);
  if (!m) return MPX_EPROTO;
  *out = m;
  return MPX_OK;
}

int mpx_msg_free(ProtobufCMessage *m) {
  if (m) protobuf_c_message_free_unpacked(m, NULL);
  return MPX_OK;
}
