/* codec_encode.c: the hand-written encoder of mpx.Batch, the fast path of mpx__codec_pack
 * (codec.c), which decides when it applies (no unknown fields to carry) and checks every limit
 * before calling it.
 *
 * Writes exactly the bytes protobuf_c_message_pack writes for a Batch without unknown fields
 * (fields in number order, proto3 zero values, empty strings and NULL messages left out, int32
 * sign-extended to 10 bytes, sint32 zigzag), at a fraction of the cost. codec_test and the fuzzer
 * compare the two. Every field number of mpx.proto is below 16: one-byte tags.
 *
 * Thread-safety: pure functions of their arguments. */
#include <stdint.h>
#include <string.h>

#include "codec.h"

static inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

static inline uint64_t i32_wire(int32_t v) { return (uint64_t)(int64_t)v; }
static inline uint64_t zz32_wire(int32_t v) {
  return (uint32_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}
static inline size_t fe_varint_size(uint64_t v) { return v ? 1 + varint_size(v) : 0; }
static inline size_t fe_ld_size(size_t n) { return 1 + varint_size(n) + n; }
static inline size_t fe_str_len(const char *s) { return s && *s ? strlen(s) : 0; }

static inline uint8_t *fe_varint(uint8_t *p, unsigned num, uint64_t v) {
  if (!v) return p;
  *p++ = (uint8_t)(num << 3 | PROTOBUF_C_WIRE_TYPE_VARINT);
  return put_varint(p, v);
}

static inline uint8_t *fe_ld(uint8_t *p, unsigned num, const void *d, size_t n) {
  *p++ = (uint8_t)(num << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
  p = put_varint(p, n);
  if (n) memcpy(p, d, n);
  return p + n;
}

static size_t fe_task_size(const Mpx__Task *t) {
  return fe_varint_size(t->task_id) + fe_varint_size(t->call_id) +
         (t->arg.len ? fe_ld_size(t->arg.len) : 0) + fe_varint_size(t->count) +
         fe_varint_size(t->item_size) + fe_varint_size(t->result_size) + fe_varint_size(t->var) +
         fe_varint_size(t->arg_shm);
}

static size_t fe_error_size(const Mpx__Error *e) {
  size_t m = fe_str_len(e->message), h = fe_str_len(e->host);
  return fe_varint_size(zz32_wire(e->code)) + (m ? fe_ld_size(m) : 0) +
         fe_varint_size(i32_wire(e->pid)) + (h ? fe_ld_size(h) : 0) +
         fe_varint_size(i32_wire(e->rank)) + fe_varint_size(e->index);
}

static size_t fe_result_size(const Mpx__Result *r) {
  return fe_varint_size(r->call_id) + (r->data.len ? fe_ld_size(r->data.len) : 0) +
         (r->error ? fe_ld_size(fe_error_size(r->error)) : 0) + fe_varint_size(r->data_shm);
}

static size_t fe_control_size(const Mpx__Control *c) {
  size_t h = fe_str_len(c->host);
  return fe_varint_size(i32_wire((int32_t)c->kind)) +
         (c->error ? fe_ld_size(fe_error_size(c->error)) : 0) + fe_varint_size(i32_wire(c->pid)) +
         (h ? fe_ld_size(h) : 0) + fe_varint_size(i32_wire(c->slots));
}

size_t mpx__fe_batch_size(const Mpx__Batch *b) {
  size_t n = 0;
  for (size_t i = 0; i < b->n_tasks; i++) n += fe_ld_size(fe_task_size(b->tasks[i]));
  for (size_t i = 0; i < b->n_results; i++) n += fe_ld_size(fe_result_size(b->results[i]));
  if (b->control) n += fe_ld_size(fe_control_size(b->control));
  return n;
}

static uint8_t *fe_header(uint8_t *p, unsigned num, size_t n) {
  *p++ = (uint8_t)(num << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
  return put_varint(p, n);
}

static uint8_t *fe_error(uint8_t *p, const Mpx__Error *e) {
  p = fe_varint(p, 1, zz32_wire(e->code));
  size_t m = fe_str_len(e->message);
  if (m) p = fe_ld(p, 2, e->message, m);
  p = fe_varint(p, 3, i32_wire(e->pid));
  size_t h = fe_str_len(e->host);
  if (h) p = fe_ld(p, 4, e->host, h);
  p = fe_varint(p, 5, i32_wire(e->rank));
  return fe_varint(p, 6, e->index);
}

uint8_t *mpx__fe_batch(uint8_t *p, const Mpx__Batch *b) {
  for (size_t i = 0; i < b->n_tasks; i++) {
    const Mpx__Task *t = b->tasks[i];
    p = fe_header(p, 1, fe_task_size(t));
    p = fe_varint(p, 1, t->task_id);
    p = fe_varint(p, 2, t->call_id);
    if (t->arg.len) p = fe_ld(p, 3, t->arg.data, t->arg.len);
    p = fe_varint(p, 4, t->count);
    p = fe_varint(p, 5, t->item_size);
    p = fe_varint(p, 6, t->result_size);
    p = fe_varint(p, 7, t->var);
    p = fe_varint(p, 8, t->arg_shm);
  }
  for (size_t i = 0; i < b->n_results; i++) {
    const Mpx__Result *r = b->results[i];
    p = fe_header(p, 2, fe_result_size(r));
    p = fe_varint(p, 1, r->call_id);
    if (r->data.len) p = fe_ld(p, 2, r->data.data, r->data.len);
    if (r->error) p = fe_error(fe_header(p, 3, fe_error_size(r->error)), r->error);
    p = fe_varint(p, 4, r->data_shm);
  }
  if (b->control) {
    const Mpx__Control *c = b->control;
    p = fe_header(p, 3, fe_control_size(c));
    p = fe_varint(p, 1, i32_wire((int32_t)c->kind));
    if (c->error) p = fe_error(fe_header(p, 2, fe_error_size(c->error)), c->error);
    p = fe_varint(p, 3, i32_wire(c->pid));
    size_t h = fe_str_len(c->host);
    if (h) p = fe_ld(p, 4, c->host, h);
    p = fe_varint(p, 5, i32_wire(c->slots));
  }
  return p;
}

