/* vchunk.c: encoding, running and decoding variable-size map chunks (see vchunk.h for the format
 * and its checks). Used by the thread path (future.c), the worker side (serve.c) and the
 * scheduler side (future.c's completion, for results received by dispatch.c).
 *
 * Guarantees: nothing is read past a length that was not first checked against what remains; a
 * varint is at most 10 bytes; a record stream with more or fewer records than the chunk's count
 * is refused whole (MPX_EPROTO). No locks: every function works on its arguments only. */
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "task_impl.h"
#include "vchunk.h"

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) *p++ = (uint8_t)(v | 0x80), v >>= 7;
  *p++ = (uint8_t)v;
  return p;
}

/* Read a varint at *p (< end): 0, or -1 for a truncated or over-long one. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    if (shift == 63 && b > 1) return -1;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static uint64_t zz(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static int64_t unzz(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

int mpx__vchunk_pack_items(const mpx_bytes *list, size_t count, void **arg, size_t *len) {
  *arg = NULL;
  *len = 0;
  size_t total = 0;
  for (size_t i = 0; i < count; i++)
    if (__builtin_add_overflow(total, varint_len(list[i].len), &total) ||
        __builtin_add_overflow(total, list[i].len, &total))
      return MPX_ETOOBIG;
  if (!total) return MPX_OK;
  uint8_t *p = malloc(total), *q = p;
  if (!p) return MPX_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    q = put_varint(q, list[i].len);
    if (list[i].len) memcpy(q, list[i].data, list[i].len);
    q += list[i].len;
  }
  *arg = p;
  *len = total;
  return MPX_OK;
}

/* Append one record. */
static int put_record(mpx__wbuf *out, int code, const void *data, size_t n) {
  int rc = mpx__wbuf_reserve(out, 20 + n);
  if (rc) return rc;
  uint8_t *p = put_varint(out->data + out->len, zz(code));
  p = put_varint(p, n);
  if (n) memcpy(p, data, n);
  out->len = (size_t)(p + n - out->data);
  return MPX_OK;
}

static int put_failure(mpx__wbuf *out, int code, const char *msg) {
  if (!msg) msg = mpx_strerror(code);
  return put_record(out, code, msg, strlen(msg) + 1);
}

int mpx__vchunk_serve(const mpx_task *t, int worker, uint32_t var, const uint8_t *arg, size_t len,
                      uint64_t count, uint64_t item_size, size_t max_payload, mpx__wbuf *out,
                      char **why) {
  *why = NULL;
  const uint8_t *p = arg, *end = arg ? arg + len : arg;
  if (!(var & MPX__VAR_ITEMS) &&
      ((item_size && count > UINT64_MAX / item_size) || count * item_size != len)) {
    *why = mpx__strdupf("map chunk of %llu items of %llu bytes has %zu bytes",
                        (unsigned long long)count, (unsigned long long)item_size, len);
    return MPX_EPROTO;
  }
  size_t start = out->len;
  /* room for every record of an empty result at once (most maps' results are small) */
  if (count < SIZE_MAX / 4 && mpx__wbuf_reserve(out, (size_t)count * 2 + 16)) return MPX_ENOMEM;
  uint8_t small[256];
  mpx_buf buf;
  mpx__buf_init(&buf, small, sizeof small, max_payload);
  int rc = MPX_OK;
  for (uint64_t i = 0; i < count && !rc; i++) {
    const uint8_t *item = p;
    uint64_t n = item_size;
    if (var & MPX__VAR_ITEMS) {
      if (get_varint(&p, end, &n) || n > (uint64_t)(end - p)) {
        *why = mpx__strdupf("map chunk item %llu: its length runs past the chunk's %zu bytes",
                            (unsigned long long)i, len);
        rc = MPX_EPROTO;
        break;
      }
      item = p;
    }
    if (n) p += n; /* (no arithmetic on a NULL arg of empty items) */
    buf.len = 0;
    char *msg = NULL;
    int trc = mpx__task_run(t, worker, n ? item : NULL, (size_t)n, &buf, &msg);
    if (!trc && max_payload && buf.len > max_payload) {
      trc = MPX_ETOOBIG;
      msg = mpx__strdupf("task '%s' item %llu returned %zu bytes, more than max_payload (%zu)",
                         t->name, (unsigned long long)i, buf.len, max_payload);
    }
    rc = trc ? put_failure(out, trc, msg) : put_record(out, 0, buf.data, buf.len);
    free(msg);
    if (buf.heap) mpx__buf_release(&buf);
  }
  mpx__buf_release(&buf);
  if (!rc && (var & MPX__VAR_ITEMS) && p != end) {
    *why = mpx__strdupf("map chunk has %zu bytes after its %llu items", (size_t)(end - p),
                        (unsigned long long)count);
    rc = MPX_EPROTO;
  }
  if (rc) out->len = start;
  return rc;
}

void mpx__vres_free(mpx__vres *v) {
  if (!v) return;
  free(v->own);
  free(v);
}

int mpx__vres_parse(const uint8_t *rec, size_t len, size_t count, void *adopt, mpx__vres **out) {
  *out = NULL;
  /* every record takes at least 2 bytes: a count the bytes cannot hold is refused unallocated */
  if (count > len / 2 + 1 || count > (SIZE_MAX - sizeof(mpx__vres)) / sizeof(mpx__vent) - 1) {
    free(adopt);
    return MPX_EPROTO;
  }
  size_t head = sizeof(mpx__vres) + count * sizeof(mpx__vent);
  mpx__vres *v = malloc(head + (adopt ? 0 : len));
  if (!v) {
    free(adopt);
    return MPX_ENOMEM;
  }
  v->count = count;
  v->worker = -1;
  v->own = adopt;
  v->bytes = adopt ? adopt : (uint8_t *)v + head;
  if (!adopt && len) memcpy(v->bytes, rec, len);
  const uint8_t *base = v->bytes, *p = base, *end = base + len;
  for (size_t i = 0; i < count; i++) {
    uint64_t code, n;
    if (get_varint(&p, end, &code) || get_varint(&p, end, &n) || n > (uint64_t)(end - p)) break;
    int64_t c = unzz(code);
    mpx__vent *e = &v->ent[i];
    e->code = c == 0 ? 0 : mpx__task_code(c < INT32_MIN || c > 0 ? MPX_ETASK : (int)c);
    e->off = (size_t)(p - base);
    e->len = (size_t)n;
    if (e->code && (n == 0 || p[n - 1] != '\0')) break; /* a message ends with its NUL */
    p += n;
    if (i + 1 == count && p == end) {
      *out = v;
      return MPX_OK;
    }
  }
  if (count == 0 && len == 0) {
    *out = v;
    return MPX_OK;
  }
  mpx__vres_free(v);
  return MPX_EPROTO;
}

mpx__vres *mpx__vres_fail(size_t count, int code, const char *message) {
  if (!message) message = mpx_strerror(code);
  size_t m = strlen(message) + 1;
  if (count > (SIZE_MAX - sizeof(mpx__vres) - m) / sizeof(mpx__vent)) return NULL;
  size_t head = sizeof(mpx__vres) + count * sizeof(mpx__vent);
  mpx__vres *v = malloc(head + m);
  if (!v) return NULL;
  v->count = count;
  v->worker = -1;
  v->own = NULL;
  v->bytes = (uint8_t *)v + head;
  memcpy(v->bytes, message, m);
  for (size_t i = 0; i < count; i++) v->ent[i] = (mpx__vent){.code = code, .off = 0, .len = m};
  return v;
}
