/* codec_test.c: the wire codec (core/src/codec.c), the worker side (core/src/serve.c) and the
 * public protobuf helpers (mpx/proto.h).
 *
 * Round trips of every envelope; map chunk semantics; truncation at every length and flipped
 * bytes at every position (never a crash: EPROTO or a valid decode); limits that refuse oversized
 * lengths and counts before protobuf-c allocates; frame headers; serving known, unknown and
 * failing tasks and chunks; the initializer; mpx_msg_* with mpx.Error as the user message.
 * Single-threaded; run under ASan/UBSan in CI. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "mpx/proto.h"
#include "mpx/task.h"
#include "task_impl.h"
#include "vchunk.h"

static int failures;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                   \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)
#define CHECK_RC(expr, want)                                                                       \
  do {                                                                                             \
    int rc_ = (expr);                                                                              \
    if (rc_ != (want)) {                                                                           \
      fprintf(stderr, "%s:%d: %s = %s, want %s\n", __FILE__, __LINE__, #expr, mpx_err_name(rc_),   \
              mpx_err_name(want));                                                                 \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

/* ---- tasks ------------------------------------------------------------------------------- */

static int echo(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  return mpx_buf_set(out, arg, len);
}
MPX_TASK(echo);

static int fails(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  return mpx_task_fail(ctx, MPX_EINVAL, "fails was given %zu bytes", len);
}
MPX_TASK(fails);

/* Chunk item: long -> long square; negative items fail. */
static int sq(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len != sizeof(long)) return mpx_task_fail(ctx, MPX_EINVAL, "want a long");
  long x;
  memcpy(&x, arg, sizeof x);
  if (x < 0) return mpx_task_fail(ctx, MPX_EINVAL, "negative item %ld", x);
  long y = x * x;
  return mpx_buf_set(out, &y, sizeof y);
}
MPX_TASK(sq);

/* Returns one byte more than it got. */
static int grow(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  void *p;
  int rc = mpx_buf_reserve(out, len + 1, &p);
  if (rc) return rc;
  memset(p, 'g', len + 1);
  return 0;
}
MPX_TASK(grow);

/* Returns as many bytes as the size_t argument says. */
static int big(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  size_t n;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "want a size_t");
  memcpy(&n, arg, sizeof n);
  void *p;
  int rc = mpx_buf_reserve(out, n, &p);
  if (rc) return rc;
  memset(p, 'b', n);
  return 0;
}
MPX_TASK(big);

static int worker_index(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  int w = mpx_task_worker(ctx);
  return mpx_buf_set(out, &w, sizeof w);
}
MPX_TASK(worker_index);

static int init_calls;
static int init_ok(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  init_calls++;
  return len == 3 && memcmp(arg, "abc", 3) == 0 ? 0 : mpx_task_fail(ctx, MPX_EINVAL, "bad args");
}
MPX_TASK(init_ok);

static int init_bad(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  return mpx_task_fail(ctx, MPX_ESYS, "cannot open the database");
}
MPX_TASK(init_bad);

/* Writes an mpx.Error message as its result. */
static int msg_result(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = -42;
  e.message = (char *)"from a task";
  e.index = len;
  return mpx_buf_set_msg(out, &e.base);
}
MPX_TASK(msg_result);

static uint32_t id_of(const char *name) {
  const mpx_task *t;
  if (mpx_task_find(name, &t)) return 0;
  return t->id;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static Mpx__Task mk_task(uint32_t id, uint64_t call, const void *arg, size_t len) {
  Mpx__Task t = MPX__TASK__INIT;
  t.task_id = id;
  t.call_id = call;
  t.arg.data = (uint8_t *)arg;
  t.arg.len = len;
  return t;
}

/* A batch exercising every message and field: 3 tasks (one a chunk), 2 results (one failed),
 * a Control with an error. Packs into *wb. */
static void sample_batch(mpx__wbuf *wb) {
  static const char arg1[] = "hello";
  static long items[4] = {1, 2, 3, 4};
  Mpx__Task t[3] = {mk_task(7, 100, arg1, 5), mk_task(8, 101, NULL, 0),
                    mk_task(9, 102, items, sizeof items)};
  t[2].count = 4;
  t[2].item_size = sizeof(long);
  t[2].result_size = sizeof(long);
  Mpx__Task *tp[3] = {&t[0], &t[1], &t[2]};
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = MPX_ETASK;
  e.message = (char *)"it broke";
  e.pid = 1234;
  e.host = (char *)"node7";
  e.rank = 3;
  e.index = 2;
  Mpx__Result r[2] = {MPX__RESULT__INIT, MPX__RESULT__INIT};
  r[0].call_id = 55;
  r[0].data.data = (uint8_t *)"result!";
  r[0].data.len = 7;
  r[1].call_id = 56;
  r[1].error = &e;
  Mpx__Result *rp[2] = {&r[0], &r[1]};
  Mpx__Error ce = MPX__ERROR__INIT;
  ce.code = MPX_EINIT;
  ce.message = (char *)"init failed";
  ce.rank = -1;
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__READY;
  c.error = &ce;
  c.pid = 99;
  c.host = (char *)"hostname";
  c.slots = 4;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_tasks = 3;
  b.tasks = tp;
  b.n_results = 2;
  b.results = rp;
  b.control = &c;
  mpx__limits lim = mpx__limits_default(0);
  CHECK_RC(mpx__codec_pack(&b, &lim, wb), MPX_OK);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_limits(void) {
  mpx__limits d = mpx__limits_default(0);
  CHECK(d.max_payload == (size_t)1 << 30);
  CHECK(d.max_message == (size_t)2 << 30);
  CHECK(d.max_items == (size_t)1 << 20);
  mpx__limits s = mpx__limits_default(1000);
  CHECK(s.max_payload == 1000 && s.max_message == 1000 + ((size_t)64 << 20));
  mpx__limits h = mpx__limits_default(SIZE_MAX);
  CHECK(h.max_message <= MPX__FRAME_MAX && h.max_payload < h.max_message);
}

static void test_wbuf(void) {
  mpx__wbuf w = {0};
  for (int i = 0; i < 1000; i++) CHECK_RC(mpx__wbuf_append(&w, &i, sizeof i), MPX_OK);
  CHECK(w.len == 1000 * sizeof(int) && w.cap >= w.len);
  int x;
  memcpy(&x, w.data + 999 * sizeof(int), sizeof x);
  CHECK(x == 999);
  mpx__wbuf_reset(&w);
  CHECK(w.len == 0 && w.data);
  CHECK_RC(mpx__wbuf_reserve(&w, SIZE_MAX), MPX_ENOMEM);
  mpx__wbuf_free(&w);
  CHECK(!w.data && !w.len && !w.cap);
}

static void test_round_trip(void) {
  mpx__wbuf wb = {0};
  sample_batch(&wb);
  mpx__limits lim = mpx__limits_default(0);
  Mpx__Batch *b;
  CHECK_RC(mpx__codec_unpack(wb.data, wb.len, &lim, &b), MPX_OK);
  if (b) {
    CHECK(b->n_tasks == 3 && b->n_results == 2 && b->control);
    CHECK(b->tasks[0]->task_id == 7 && b->tasks[0]->call_id == 100);
    CHECK(b->tasks[0]->arg.len == 5 && !memcmp(b->tasks[0]->arg.data, "hello", 5));
    CHECK(b->tasks[1]->arg.len == 0 && b->tasks[1]->count == 0);
    CHECK(b->tasks[2]->count == 4 && b->tasks[2]->item_size == sizeof(long));
    CHECK(b->tasks[2]->result_size == sizeof(long) && b->tasks[2]->arg.len == 4 * sizeof(long));
    CHECK(b->results[0]->call_id == 55 && !b->results[0]->error);
    CHECK(b->results[0]->data.len == 7 && !memcmp(b->results[0]->data.data, "result!", 7));
    const Mpx__Error *e = b->results[1]->error;
    CHECK(e && e->code == MPX_ETASK && !strcmp(e->message, "it broke") && e->pid == 1234);
    CHECK(e && !strcmp(e->host, "node7") && e->rank == 3 && e->index == 2);
    CHECK(b->control->kind == MPX__CONTROL__KIND__READY && b->control->pid == 99);
    CHECK(!strcmp(b->control->host, "hostname") && b->control->slots == 4);
    CHECK(b->control->error && b->control->error->code == MPX_EINIT && b->control->error->rank == -1);
    /* re-pack gives the same bytes */
    mpx__wbuf again = {0};
    CHECK_RC(mpx__codec_pack(b, &lim, &again), MPX_OK);
    CHECK(again.len == wb.len && !memcmp(again.data, wb.data, wb.len));
    mpx__wbuf_free(&again);
    mpx__codec_free(b);
  }
  /* appending: pack twice into one buffer, both decode */
  size_t one = wb.len;
  sample_batch(&wb);
  CHECK(wb.len == 2 * one && !memcmp(wb.data, wb.data + one, one));
  mpx__wbuf_free(&wb);

  /* the empty Batch is zero bytes */
  Mpx__Batch empty = MPX__BATCH__INIT;
  mpx__wbuf w0 = {0};
  CHECK_RC(mpx__codec_pack(&empty, &lim, &w0), MPX_OK);
  CHECK(w0.len == 0);
  CHECK_RC(mpx__codec_unpack(NULL, 0, &lim, &b), MPX_OK);
  CHECK(b && b->n_tasks == 0 && b->n_results == 0 && !b->control);
  mpx__codec_free(b);
  mpx__wbuf_free(&w0);
  mpx__codec_free(NULL);
}

static int unpack_task(const Mpx__Task *t, const mpx__limits *plim) {
  Mpx__Task *tp = (Mpx__Task *)t;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_tasks = 1;
  b.tasks = &tp;
  mpx__wbuf w = {0};
  mpx__limits lim = mpx__limits_default(0); /* a sender that lets any chunk size through */
  lim.max_items = SIZE_MAX;
  int rc = mpx__codec_pack(&b, &lim, &w);
  if (rc == 0) {
    Mpx__Batch *out;
    rc = mpx__codec_unpack(w.data, w.len, plim ? plim : &lim, &out);
    mpx__codec_free(out);
  }
  mpx__wbuf_free(&w);
  return rc;
}

static void test_semantics(void) {
  long items[3] = {1, 2, 3};
  Mpx__Task t = mk_task(1, 1, items, sizeof items);
  t.count = 3;
  t.item_size = sizeof(long);
  CHECK_RC(unpack_task(&t, NULL), MPX_OK);
  t.count = 2; /* 2 * 8 != 24 */
  CHECK_RC(unpack_task(&t, NULL), MPX_EPROTO);
  t.count = UINT32_MAX; /* overflow: 2^32-1 * 2^62 */
  t.item_size = (uint64_t)1 << 62;
  CHECK_RC(unpack_task(&t, NULL), MPX_EPROTO);
  t.item_size = 0; /* zero-size items: arg must be empty */
  t.count = 1000;
  CHECK_RC(unpack_task(&t, NULL), MPX_EPROTO);
  t.arg.len = 0;
  CHECK_RC(unpack_task(&t, NULL), MPX_OK);
  /* but a chunk's items are calls: no more than max_items of them */
  mpx__limits few = mpx__limits_default(0);
  few.max_items = 999;
  CHECK_RC(unpack_task(&t, &few), MPX_ETOOBIG);
  t.count = UINT32_MAX;
  mpx__limits dflt = mpx__limits_default(0);
  CHECK_RC(unpack_task(&t, &dflt), MPX_ETOOBIG);

  mpx__limits lim = mpx__limits_default(0);
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = 5; /* errors are negative */
  Mpx__Result r = MPX__RESULT__INIT;
  r.error = &e;
  Mpx__Result *rp = &r;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_results = 1;
  b.results = &rp;
  mpx__wbuf w = {0};
  CHECK_RC(mpx__codec_pack(&b, &lim, &w), MPX_OK);
  Mpx__Batch *out;
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &lim, &out), MPX_EPROTO);
  CHECK(out == NULL);
  e.code = 0;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&b, &lim, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &lim, &out), MPX_EPROTO);

  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = (Mpx__Control__Kind)7;
  Mpx__Batch cb = MPX__BATCH__INIT;
  cb.control = &c;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&cb, &lim, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &lim, &out), MPX_EPROTO);
  c.kind = MPX__CONTROL__KIND__READY;
  c.slots = -2; /* a worker cannot run fewer than no tasks at once */
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&cb, &lim, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &lim, &out), MPX_EPROTO);
  c.slots = 0;
  c.kind = MPX__CONTROL__KIND__SHUTDOWN;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&cb, &lim, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &lim, &out), MPX_OK);
  CHECK(out && out->control && out->control->kind == MPX__CONTROL__KIND__SHUTDOWN);
  mpx__codec_free(out);
  mpx__wbuf_free(&w);
}

static void test_truncation(void) {
  mpx__wbuf wb = {0};
  sample_batch(&wb);
  mpx__limits lim = mpx__limits_default(0);
  int eproto = 0;
  for (size_t n = 0; n < wb.len; n++) {
    /* a fresh copy of exactly n bytes, so ASan sees any read past the end */
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, wb.data, n);
    Mpx__Batch *b;
    int rc = mpx__codec_unpack(p, n, &lim, &b);
    CHECK(rc == MPX_OK || rc == MPX_EPROTO);
    if (rc == MPX_EPROTO) eproto++;
    CHECK((rc == MPX_OK) == (b != NULL));
    if (b) CHECK(b->n_tasks + b->n_results <= 5); /* a prefix that ends on a field boundary */
    mpx__codec_free(b);
    free(p);
  }
  CHECK(eproto > (int)wb.len / 2);
  /* a frame whose body is cut short is caught once the transport sees EOF: the header says
   * more than arrived; the codec only ever sees whole bodies, checked above */
  uint8_t hdr[4];
  mpx__frame_put_header(hdr, wb.len);
  size_t n;
  CHECK_RC(mpx__frame_get_header(hdr, &lim, &n), MPX_OK);
  CHECK(n == wb.len);
  mpx__wbuf_free(&wb);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Both decoders agree: same code, and batches that re-pack (slowly) to the same bytes; both
 * encoders agree on what was decoded. */
static int try_decode(const uint8_t *src, size_t len, const mpx__limits *lim) {
  uint8_t *p = malloc(len ? len : 1);
  if (len) memcpy(p, src, len);
  Mpx__Batch *b, *s;
  int rc = mpx__codec_unpack(p, len, lim, &b);
  int rs = mpx__codec_unpack_slow(p, len, lim, &s);
  CHECK(rc == rs);
  if (b && s) {
    mpx__wbuf w1 = {0}, w2 = {0}, w3 = {0};
    mpx__limits big_lim = *lim; /* what was let in packs again under the same limits */
    CHECK_RC(mpx__codec_pack_slow(b, &big_lim, &w1), MPX_OK);
    CHECK_RC(mpx__codec_pack_slow(s, &big_lim, &w2), MPX_OK);
    CHECK_RC(mpx__codec_pack(s, &big_lim, &w3), MPX_OK);
    CHECK(w1.len == w2.len && (!w1.len || !memcmp(w1.data, w2.data, w1.len)));
    CHECK(w3.len == w2.len && (!w3.len || !memcmp(w3.data, w2.data, w3.len)));
    mpx__wbuf_free(&w1);
    mpx__wbuf_free(&w2);
    mpx__wbuf_free(&w3);
  }
  mpx__codec_free(b);
  mpx__codec_free(s);
  free(p);
  return rc;
}

/* Random batches with every field at zero, small, large and negative values: the fast encoder
 * writes protobuf-c's bytes and the fast decoder reads them back as protobuf-c does. */
static uint64_t rnd(void);
static uint64_t rnd_val(void) {
  switch (rnd() % 5) {
  case 0: return 0;
  case 1: return rnd() % 200;
  case 2: return (uint64_t)-(int64_t)(rnd() % 100);
  case 3: return rnd() >> (rnd() % 64);
  default: return rnd();
  }
}

static void test_fast_paths(void) {
  /* a field added to mpx.proto needs fd_* and fe_* in codec.c to learn it */
  CHECK(mpx__codec_fast());
  static char strs[4][600];
  memset(strs[2], 's', 599);
  strcpy(strs[1], "x");
  strcpy(strs[3], "hé\xc3\xa9 ünï");
  static uint8_t bytes[300];
  for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)i;
  mpx__limits lim = mpx__limits_default(0);
  lim.max_items = SIZE_MAX; /* random Task.count values */
  for (int iter = 0; iter < 3000; iter++) {
    Mpx__Task t[8];
    Mpx__Task *tp[8];
    Mpx__Result r[8];
    Mpx__Result *rp[8];
    Mpx__Error e[9];
    Mpx__Control c = MPX__CONTROL__INIT;
    size_t nt = rnd() % 8, nr = rnd() % 8;
    for (size_t i = 0; i < 9; i++) {
      mpx__error__init(&e[i]);
      e[i].code = (int32_t)rnd_val();
      e[i].message = rnd() % 4 ? strs[rnd() % 4] : NULL;
      e[i].pid = (int32_t)rnd_val();
      e[i].host = strs[rnd() % 4];
      e[i].rank = (int32_t)rnd_val();
      e[i].index = rnd_val();
    }
    for (size_t i = 0; i < nt; i++) {
      mpx__task__init(&t[i]);
      t[i].task_id = (uint32_t)rnd_val();
      t[i].call_id = rnd_val();
      t[i].arg.len = rnd() % 3 ? rnd() % sizeof bytes : 0;
      t[i].arg.data = t[i].arg.len ? bytes : NULL;
      t[i].count = (uint32_t)rnd_val();
      t[i].item_size = rnd_val();
      t[i].result_size = rnd_val();
      tp[i] = &t[i];
    }
    for (size_t i = 0; i < nr; i++) {
      mpx__result__init(&r[i]);
      r[i].call_id = rnd_val();
      r[i].data.len = rnd() % 2 ? rnd() % sizeof bytes : 0;
      r[i].data.data = bytes;
      r[i].error = rnd() % 2 ? &e[i] : NULL;
      rp[i] = &r[i];
    }
    c.kind = (Mpx__Control__Kind)(rnd() % 5 ? (int)(rnd() % 4) : (int)(int32_t)rnd_val());
    c.error = rnd() % 2 ? &e[8] : NULL;
    c.pid = (int32_t)rnd_val();
    c.slots = (int32_t)rnd_val();
    c.host = rnd() % 3 ? strs[rnd() % 4] : NULL;
    if (iter % 2) { /* half of them valid, so that both decoders go all the way */
      for (size_t i = 0; i < 9; i++) e[i].code = -(int32_t)(rnd() % 100000) - 1;
      for (size_t i = 0; i < nt; i++) t[i].count = 0;
      c.kind = (Mpx__Control__Kind)(rnd() % 4);
      c.slots = (int32_t)(rnd() % 1000);
    }
    Mpx__Batch b = MPX__BATCH__INIT;
    b.n_tasks = nt, b.tasks = tp, b.n_results = nr, b.results = rp;
    b.control = rnd() % 2 ? &c : NULL;
    mpx__wbuf fast = {0}, slow = {0};
    CHECK_RC(mpx__codec_pack(&b, &lim, &fast), MPX_OK);
    CHECK_RC(mpx__codec_pack_slow(&b, &lim, &slow), MPX_OK);
    CHECK(fast.len == slow.len && (!fast.len || !memcmp(fast.data, slow.data, fast.len)));
    /* decode with protobuf-c's semantics: checked or not, both decoders agree */
    int rc = try_decode(slow.data, slow.len, &lim);
    if (iter % 2) CHECK_RC(rc, MPX_OK);
    mpx__wbuf_free(&fast);
    mpx__wbuf_free(&slow);
  }
}

static void test_corruption(void) {
  mpx__wbuf wb = {0};
  sample_batch(&wb);
  mpx__limits lim = mpx__limits_default(0);
  static const uint8_t masks[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff, 0x7f};
  int ok = 0, bad = 0;
  uint8_t *p = malloc(wb.len);
  for (size_t i = 0; i < wb.len; i++)
    for (size_t m = 0; m < sizeof masks; m++) {
      memcpy(p, wb.data, wb.len);
      p[i] ^= masks[m];
      int rc = try_decode(p, wb.len, &lim);
      CHECK(rc == MPX_OK || rc == MPX_EPROTO);
      if (rc == MPX_OK) ok++;
      else bad++;
    }
  /* random multi-byte damage, insertions and deletions */
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = wb.len;
    uint8_t buf[1024];
    memcpy(buf, wb.data, len);
    int edits = 1 + (int)(rnd() % 4);
    for (int k = 0; k < edits; k++) {
      size_t at = len ? rnd() % len : 0;
      switch (rnd() % 3) {
      case 0:
        if (len) buf[at] = (uint8_t)rnd();
        break;
      case 1:
        if (len) {
          memmove(buf + at, buf + at + 1, len - at - 1);
          len--;
        }
        break;
      default:
        if (len < sizeof buf) {
          memmove(buf + at + 1, buf + at, len - at);
          buf[at] = (uint8_t)rnd();
          len++;
        }
      }
    }
    int rc = try_decode(buf, len, &lim);
    CHECK(rc == MPX_OK || rc == MPX_EPROTO);
  }
  CHECK(ok > 0 && bad > 0);
  free(p);
  mpx__wbuf_free(&wb);
}

static void test_wire_rules(void) {
  mpx__limits lim = mpx__limits_default(0);
  /* Batch.tasks (1) as a varint: wrong wire type for a known field */
  static const uint8_t wrong_wt[] = {0x08, 0x01};
  CHECK_RC(mpx__wire_check(wrong_wt, sizeof wrong_wt, &lim), MPX_EPROTO);
  /* field number 0 */
  static const uint8_t field0[] = {0x00, 0x01};
  CHECK_RC(mpx__wire_check(field0, sizeof field0, &lim), MPX_EPROTO);
  /* wire types 3, 4, 6, 7 on an unknown field 15 */
  for (int wt = 3; wt <= 7; wt++) {
    if (wt == 5) continue;
    uint8_t g[] = {(uint8_t)(15 << 3 | wt), 0x00, 0x00, 0x00, 0x00, 0x00};
    CHECK_RC(mpx__wire_check(g, sizeof g, &lim), MPX_EPROTO);
  }
  /* unknown fields of the other wire types are kept (forward compatibility) */
  static const uint8_t unknown[] = {15 << 3 | 0, 0x96, 0x01, 14 << 3 | 5, 1, 2, 3, 4,
                                    13 << 3 | 1, 1, 2, 3, 4, 5, 6, 7, 8, 12 << 3 | 2, 2, 'h', 'i'};
  CHECK_RC(mpx__wire_check(unknown, sizeof unknown, &lim), MPX_OK);
  Mpx__Batch *b;
  CHECK_RC(mpx__codec_unpack(unknown, sizeof unknown, &lim, &b), MPX_OK);
  mpx__codec_free(b);
  /* fixed fields cut short */
  CHECK_RC(mpx__wire_check(unknown + 3, 4, &lim), MPX_EPROTO);
  /* a varint that never ends, and one with bits past 64 */
  static const uint8_t endless[] = {15 << 3, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK_RC(mpx__wire_check(endless, sizeof endless, &lim), MPX_EPROTO);
  static const uint8_t over64[] = {15 << 3, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0x02};
  CHECK_RC(mpx__wire_check(over64, sizeof over64, &lim), MPX_EPROTO);
  static const uint8_t max64[] = {15 << 3, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0x01};
  CHECK_RC(mpx__wire_check(max64, sizeof max64, &lim), MPX_OK);
  /* a tag longer than 5 bytes */
  static const uint8_t longtag[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  CHECK_RC(mpx__wire_check(longtag, sizeof longtag, &lim), MPX_EPROTO);
  /* a Task whose length runs past the end, claiming 2 GiB */
  static const uint8_t past[] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x08, 0x08, 0x01};
  CHECK_RC(mpx__wire_check(past, sizeof past, &lim), MPX_EPROTO);
  CHECK_RC(mpx__codec_unpack(past, sizeof past, &lim, &b), MPX_EPROTO);
  /* Task.arg (field 3) sent as a varint inside a Task */
  static const uint8_t argvar[] = {0x0a, 0x02, 0x18, 0x01};
  CHECK_RC(mpx__wire_check(argvar, sizeof argvar, &lim), MPX_EPROTO);
  /* Result.error (field 3) as a fixed32 */
  static const uint8_t errfix[] = {0x12, 0x05, 0x1d, 0, 0, 0, 0};
  CHECK_RC(mpx__wire_check(errfix, sizeof errfix, &lim), MPX_EPROTO);
  /* a well-formed nested Result.error */
  static const uint8_t errok[] = {0x12, 0x04, 0x1a, 0x02, 0x08, 0x03}; /* code = sint -2 */
  CHECK_RC(mpx__codec_unpack(errok, sizeof errok, &lim, &b), MPX_OK);
  CHECK(b && b->results[0]->error && b->results[0]->error->code == -2);
  mpx__codec_free(b);
  /* NULL arguments */
  CHECK_RC(mpx__wire_check(NULL, 3, &lim), MPX_EINVAL);
  CHECK_RC(mpx__wire_check(errok, sizeof errok, NULL), MPX_EINVAL);
  CHECK_RC(mpx__codec_unpack(errok, sizeof errok, &lim, NULL), MPX_EINVAL);
}

static void test_limits_enforced(void) {
  Mpx__Batch *none = NULL;
  mpx__limits lim = mpx__limits_default(0);
  mpx__limits small = {.max_payload = 100, .max_message = 1000, .max_items = 5};
  static uint8_t arg[200];
  Mpx__Task t = mk_task(1, 1, arg, 101);
  Mpx__Task *tp[10];
  for (int i = 0; i < 10; i++) tp[i] = &t;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_tasks = 1;
  b.tasks = tp;
  mpx__wbuf w = {0};
  /* the packer refuses before packing, and leaves out as it was */
  CHECK_RC(mpx__codec_pack(&b, &small, &w), MPX_ETOOBIG);
  CHECK(w.len == 0);
  /* a permissive sender; the receiver refuses before unpacking */
  CHECK_RC(mpx__codec_pack(&b, &lim, &w), MPX_OK);
  CHECK_RC(mpx__wire_check(w.data, w.len, &small), MPX_ETOOBIG);
  Mpx__Batch *out;
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &small, &out), MPX_ETOOBIG);
  CHECK(!out);
  /* too many items */
  t.arg.len = 1;
  b.n_tasks = 6;
  CHECK_RC(mpx__codec_pack(&b, &small, &w), MPX_ETOOBIG);
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&b, &lim, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &small, &out), MPX_ETOOBIG);
  b.n_tasks = 5;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&b, &small, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &small, &out), MPX_OK);
  mpx__codec_free(out);
  /* a whole message over max_message, every field under max_payload */
  t.arg.len = 100;
  b.n_tasks = 10;
  small.max_items = 100;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&b, &small, &w), MPX_ETOOBIG);
  CHECK_RC(mpx__codec_pack(&b, &lim, &w), MPX_OK);
  CHECK(w.len > 1000);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &small, &out), MPX_ETOOBIG);
  /* a string (Error.message) over max_payload */
  char msg[150];
  memset(msg, 'm', sizeof msg - 1);
  msg[sizeof msg - 1] = 0;
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = -1;
  e.message = msg;
  Mpx__Result r = MPX__RESULT__INIT;
  r.error = &e;
  Mpx__Result *rp = &r;
  Mpx__Batch rb = MPX__BATCH__INIT;
  rb.n_results = 1;
  rb.results = &rp;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(&rb, &small, &w), MPX_ETOOBIG);
  CHECK_RC(mpx__codec_pack(&rb, &lim, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &small, &out), MPX_ETOOBIG);

  /* a reply of errors only fits the item limit of the tasks it answers */
  mpx__limits five = {.max_payload = 512, .max_message = 4096, .max_items = 5};
  Mpx__Task u = mk_task(0x12345678, 9, NULL, 0);
  Mpx__Task *up[5] = {&u, &u, &u, &u, &u};
  Mpx__Batch ub = MPX__BATCH__INIT;
  ub.n_tasks = 5;
  ub.tasks = up;
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__serve_batch(&ub, NULL, &five, &w), MPX_OK);
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &five, &out), MPX_OK);
  CHECK(out && out->n_results == 5 && out->results[4]->error &&
        out->results[4]->error->code == MPX_ENOTASK);
  mpx__codec_free(out);
  ub.n_tasks = 6;
  Mpx__Task *up6[6] = {&u, &u, &u, &u, &u, &u};
  ub.tasks = up6;
  CHECK_RC(mpx__serve_batch(&ub, NULL, &five, &w), MPX_ETOOBIG);

  /* unknown fields kept by a decode count as items when packed again */
  static const uint8_t unknown[] = {15 << 3 | 0, 0x01, 14 << 3 | 0, 0x01, 13 << 3 | 0, 0x01,
                                    0x0a, 0x02, 12 << 3 | 0, 0x01};
  CHECK_RC(mpx__codec_unpack(unknown, sizeof unknown, &lim, &out), MPX_OK);
  CHECK(out && out->n_tasks == 1 && out->base.n_unknown_fields == 3);
  mpx__limits four = {.max_payload = 100, .max_message = 100, .max_items = 4};
  mpx__limits five_items = {.max_payload = 100, .max_message = 100, .max_items = 5};
  mpx__wbuf_reset(&w);
  CHECK_RC(mpx__codec_pack(out, &four, &w), MPX_ETOOBIG);
  CHECK_RC(mpx__codec_unpack(unknown, sizeof unknown, &four, &none), MPX_ETOOBIG);
  CHECK_RC(mpx__codec_pack(out, &five_items, &w), MPX_OK);
  CHECK(w.len == sizeof unknown); /* the same fields, the unknown ones moved to the end */
  mpx__codec_free(out);
  mpx__wbuf_free(&w);
}

static void test_frames(void) {
  mpx__limits lim = {.max_payload = 100, .max_message = 1000, .max_items = 10};
  uint8_t h[4];
  size_t n = 7;
  mpx__frame_put_header(h, 0);
  CHECK_RC(mpx__frame_get_header(h, &lim, &n), MPX_OK);
  CHECK(n == 0);
  mpx__frame_put_header(h, 1000);
  CHECK(h[0] == 0xe8 && h[1] == 0x03 && h[2] == 0 && h[3] == 0); /* little-endian */
  CHECK_RC(mpx__frame_get_header(h, &lim, &n), MPX_OK);
  CHECK(n == 1000);
  mpx__frame_put_header(h, 1001);
  n = 7;
  CHECK_RC(mpx__frame_get_header(h, &lim, &n), MPX_ETOOBIG);
  CHECK(n == 7);
  static const uint8_t all[4] = {0xff, 0xff, 0xff, 0xff};
  mpx__limits dflt = mpx__limits_default(0);
  CHECK_RC(mpx__frame_get_header(all, &dflt, &n), MPX_ETOOBIG);
  mpx__frame_put_header(h, MPX__FRAME_MAX);
  CHECK(!memcmp(h, all, 4));
  CHECK_RC(mpx__frame_get_header(NULL, &lim, &n), MPX_EINVAL);

  /* framed pack: header then body; appends after what is there */
  mpx__wbuf w = {0};
  CHECK_RC(mpx__wbuf_append(&w, "xy", 2), MPX_OK);
  Mpx__Task t = mk_task(3, 4, "abc", 3);
  Mpx__Task *tp = &t;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_tasks = 1;
  b.tasks = &tp;
  CHECK_RC(mpx__codec_pack_framed(&b, &dflt, &w), MPX_OK);
  CHECK_RC(mpx__frame_get_header(w.data + 2, &dflt, &n), MPX_OK);
  CHECK(n == w.len - 6);
  Mpx__Batch *out;
  CHECK_RC(mpx__codec_unpack(w.data + 6, n, &dflt, &out), MPX_OK);
  CHECK(out && out->n_tasks == 1 && out->tasks[0]->call_id == 4);
  mpx__codec_free(out);
  size_t before = w.len;
  t.arg.len = 101;
  static uint8_t big_arg[101];
  t.arg.data = big_arg;
  CHECK_RC(mpx__codec_pack_framed(&b, &lim, &w), MPX_ETOOBIG);
  CHECK(w.len == before);
  mpx__wbuf_free(&w);
}

/* Serve `tasks` and decode the reply. */
static Mpx__Batch *serve(Mpx__Task *tasks, size_t n, const mpx__limits *lim) {
  Mpx__Task *tp[32];
  for (size_t i = 0; i < n; i++) tp[i] = &tasks[i];
  Mpx__Batch in = MPX__BATCH__INIT;
  in.n_tasks = n;
  in.tasks = tp;
  /* through the wire, as a worker sees it */
  mpx__wbuf w = {0};
  mpx__limits dflt = mpx__limits_default(0);
  CHECK_RC(mpx__codec_pack(&in, &dflt, &w), MPX_OK);
  Mpx__Batch *got;
  CHECK_RC(mpx__codec_unpack(w.data, w.len, &dflt, &got), MPX_OK);
  mpx__wbuf out = {0};
  CHECK_RC(mpx__wbuf_append(&out, "zz", 2), MPX_OK); /* serve appends */
  mpx__worker_id who = {.index = 2, .pid = 4321, .rank = -1, .host = "testhost"};
  CHECK_RC(mpx__serve_batch(got, &who, lim, &out), MPX_OK);
  mpx__codec_free(got);
  Mpx__Batch *reply = NULL;
  CHECK(out.len >= 2 && !memcmp(out.data, "zz", 2));
  CHECK_RC(mpx__codec_unpack(out.data + 2, out.len - 2, &dflt, &reply), MPX_OK);
  mpx__wbuf_free(&w);
  mpx__wbuf_free(&out);
  CHECK(reply && reply->n_results == n && reply->n_tasks == 0);
  for (size_t i = 0; reply && i < reply->n_results; i++)
    CHECK(reply->results[i]->call_id == tasks[i].call_id);
  return reply;
}

static void check_err(const Mpx__Result *r, int code, const char *in_msg, uint64_t index) {
  const Mpx__Error *e = r->error;
  CHECK(e != NULL);
  if (!e) return;
  if (e->code != code)
    fprintf(stderr, "error code %s, want %s (%s)\n", mpx_err_name(e->code), mpx_err_name(code),
            e->message);
  CHECK(e->code == code);
  CHECK(e->pid == 4321 && e->rank == -1 && !strcmp(e->host, "testhost"));
  CHECK(e->index == index);
  if (in_msg && !strstr(e->message, in_msg)) {
    fprintf(stderr, "message '%s' lacks '%s'\n", e->message, in_msg);
    failures++;
  }
}

static void test_serve(void) {
  mpx__limits lim = mpx__limits_default(10000);
  long items[5] = {1, 2, 3, -4, 5};
  long good[3] = {6, 7, 8};
  size_t too_big = 10001, stolen = 6000;
  Mpx__Task t[] = {
      mk_task(id_of("echo"), 10, "ping", 4),
      mk_task(0xdeadbeef, 11, "x", 1),
      mk_task(id_of("fails"), 12, "abc", 3),
      mk_task(id_of("sq"), 13, items, sizeof items),
      mk_task(id_of("grow"), 14, items, sizeof items),
      mk_task(id_of("big"), 15, &too_big, sizeof too_big),
      mk_task(id_of("big"), 16, &stolen, sizeof stolen),
      mk_task(id_of("sq"), 17, good, sizeof good),
      mk_task(id_of("worker_index"), 18, NULL, 0),
      mk_task(id_of("echo"), 19, NULL, 0),
      mk_task(id_of("sq"), 20, good, sizeof good),
      mk_task(id_of("msg_result"), 21, "12345", 5),
  };
  t[3].count = 5, t[3].item_size = sizeof(long), t[3].result_size = sizeof(long);
  t[4].count = 5, t[4].item_size = sizeof(long), t[4].result_size = sizeof(long);
  t[7].count = 3, t[7].item_size = sizeof(long), t[7].result_size = sizeof(long);
  /* results over the limit: 3 * 4000 > 10000 */
  t[10].count = 3, t[10].item_size = sizeof(long), t[10].result_size = 4000;
  size_t n = sizeof t / sizeof t[0];
  Mpx__Batch *r = serve(t, n, &lim);
  if (!r) return;
  CHECK(!r->results[0]->error && r->results[0]->data.len == 4);
  CHECK(!memcmp(r->results[0]->data.data, "ping", 4));
  check_err(r->results[1], MPX_ENOTASK, "0xdeadbeef", 0);
  check_err(r->results[2], MPX_EINVAL, "fails was given 3 bytes", 0);
  /* chunk with a failing item: items before it delivered */
  check_err(r->results[3], MPX_EINVAL, "negative item -4", 3);
  CHECK(r->results[3]->data.len == 3 * sizeof(long));
  long sq3[3];
  memcpy(sq3, r->results[3]->data.data, sizeof sq3);
  CHECK(sq3[0] == 1 && sq3[1] == 4 && sq3[2] == 9);
  check_err(r->results[4], MPX_ESIZE, "item 0 returned 9 bytes, expected 8", 0);
  CHECK(r->results[4]->data.len == 0);
  check_err(r->results[5], MPX_ETOOBIG, NULL, 0);
  CHECK(!r->results[6]->error && r->results[6]->data.len == stolen);
  CHECK(r->results[6]->data.data[0] == 'b' && r->results[6]->data.data[stolen - 1] == 'b');
  CHECK(!r->results[7]->error && r->results[7]->data.len == 3 * sizeof(long));
  long sq7[3];
  memcpy(sq7, r->results[7]->data.data, sizeof sq7);
  CHECK(sq7[0] == 36 && sq7[1] == 49 && sq7[2] == 64);
  CHECK(!r->results[8]->error && r->results[8]->data.len == sizeof(int));
  int w;
  memcpy(&w, r->results[8]->data.data, sizeof w);
  CHECK(w == 2);
  CHECK(!r->results[9]->error && r->results[9]->data.len == 0);
  check_err(r->results[10], MPX_ETOOBIG, "exceed the limit", 0);
  CHECK(!r->results[11]->error);
  ProtobufCMessage *m;
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, r->results[11]->data.data,
                          r->results[11]->data.len, 0, &m),
           MPX_OK);
  if (m) {
    const Mpx__Error *e = (const Mpx__Error *)m;
    CHECK(e->code == -42 && !strcmp(e->message, "from a task") && e->index == 5);
    mpx_msg_free(m);
  }
  mpx__codec_free(r);

  /* a malformed chunk built in memory (serve rechecks what unpack checks) */
  Mpx__Task bad = mk_task(id_of("sq"), 30, items, 7);
  bad.count = 1;
  bad.item_size = 8;
  bad.result_size = 8;
  Mpx__Task *bp = &bad;
  Mpx__Batch in = MPX__BATCH__INIT;
  in.n_tasks = 1;
  in.tasks = &bp;
  mpx__wbuf out = {0};
  CHECK_RC(mpx__serve_batch(&in, NULL, &lim, &out), MPX_OK);
  Mpx__Batch *rr;
  CHECK_RC(mpx__codec_unpack(out.data, out.len, &lim, &rr), MPX_OK);
  CHECK(rr && rr->n_results == 1 && rr->results[0]->error);
  if (rr && rr->results[0]->error) {
    CHECK(rr->results[0]->error->code == MPX_EPROTO);
    CHECK(rr->results[0]->error->pid == (int)getpid() && rr->results[0]->error->rank == -1);
  }
  mpx__codec_free(rr);

  /* empty batch -> empty reply */
  Mpx__Batch none = MPX__BATCH__INIT;
  mpx__wbuf_reset(&out);
  CHECK_RC(mpx__serve_batch(&none, NULL, &lim, &out), MPX_OK);
  CHECK(out.len == 0);
  CHECK_RC(mpx__serve_batch(NULL, NULL, &lim, &out), MPX_EINVAL);
  mpx__wbuf_free(&out);

  /* results that fit one by one but not together: the largest fail with ETOOBIG */
  mpx__limits tight = {.max_payload = 1000, .max_message = 2500, .max_items = 100};
  size_t k = 1000;
  Mpx__Task three[3] = {mk_task(id_of("big"), 1, &k, sizeof k), mk_task(id_of("big"), 2, &k, sizeof k),
                        mk_task(id_of("big"), 3, &k, sizeof k)};
  r = serve(three, 3, &tight);
  if (r) {
    int ok = 0, big_err = 0;
    for (int i = 0; i < 3; i++) {
      if (!r->results[i]->error && r->results[i]->data.len == 1000) ok++;
      if (r->results[i]->error && r->results[i]->error->code == MPX_ETOOBIG) big_err++;
    }
    CHECK(ok == 2 && big_err == 1);
    mpx__codec_free(r);
  }
}

static void test_serve_init(void) {
  mpx__worker_id who = {.index = 0, .pid = 1, .rank = -1, .host = "h"};
  char *msg = (char *)"junk";
  init_calls = 0;
  CHECK_RC(mpx__serve_init("init_ok", "abc", 3, &who, &msg), MPX_OK);
  CHECK(init_calls == 1 && msg == NULL);
  CHECK_RC(mpx__serve_init("init_ok", "xyz", 3, &who, &msg), MPX_EINIT);
  CHECK(msg && strstr(msg, "bad args"));
  free(msg);
  CHECK_RC(mpx__serve_init("init_bad", NULL, 0, NULL, &msg), MPX_EINIT);
  CHECK(msg && strstr(msg, "cannot open the database") && strstr(msg, "MPX_ESYS"));
  free(msg);
  CHECK_RC(mpx__serve_init("no_such_initializer", NULL, 0, &who, &msg), MPX_ENOTASK);
  CHECK(msg && strstr(msg, "no_such_initializer"));
  free(msg);
  CHECK_RC(mpx__serve_init(NULL, NULL, 0, &who, &msg), MPX_OK);
  CHECK(msg == NULL);
  CHECK_RC(mpx__serve_init("init_bad", NULL, 0, &who, NULL), MPX_EINIT);
}

static void test_proto_helpers(void) {
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = MPX_ETIMEDOUT;
  e.message = (char *)"slow";
  e.pid = 77;
  e.host = (char *)"box";
  e.rank = 5;
  e.index = 1ull << 40;
  void *data;
  size_t len;
  CHECK_RC(mpx_msg_pack(&e.base, &data, &len), MPX_OK);
  CHECK(len == mpx__error__get_packed_size(&e));
  ProtobufCMessage *m;
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, data, len, 1000, &m), MPX_OK);
  if (m) {
    const Mpx__Error *g = (const Mpx__Error *)m;
    CHECK(g->code == MPX_ETIMEDOUT && !strcmp(g->message, "slow") && g->pid == 77);
    CHECK(!strcmp(g->host, "box") && g->rank == 5 && g->index == 1ull << 40);
  }
  CHECK_RC(mpx_msg_free(m), MPX_OK);
  CHECK_RC(mpx_msg_free(NULL), MPX_OK);
  /* limits: whole message and fields */
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, data, len, len - 1, &m), MPX_ETOOBIG);
  CHECK(m == NULL);
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, data, len, len, &m), MPX_OK);
  mpx_msg_free(m);
  /* truncated and corrupt */
  for (size_t n = 0; n < len; n++) {
    int rc = mpx_msg_unpack(&mpx__error__descriptor, data, n, 0, &m);
    CHECK(rc == MPX_OK || rc == MPX_EPROTO);
    mpx_msg_free(m);
  }
  static const uint8_t junk[] = {0x0f, 0xff, 0xff};
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, junk, sizeof junk, 0, &m), MPX_EPROTO);
  /* wrong wire type for Error.message (2) */
  static const uint8_t wt[] = {0x10, 0x01};
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, wt, sizeof wt, 0, &m), MPX_EPROTO);
  CHECK_RC(mpx_msg_unpack(NULL, data, len, 0, &m), MPX_EINVAL);
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, data, len, 0, NULL), MPX_EINVAL);
  free(data);
  CHECK_RC(mpx_msg_pack(NULL, &data, &len), MPX_EINVAL);
  CHECK(data == NULL && len == 0);
  /* empty message: zero bytes, still a buffer to free */
  Mpx__Error z = MPX__ERROR__INIT;
  CHECK_RC(mpx_msg_pack(&z.base, &data, &len), MPX_OK);
  CHECK(len == 0 && data != NULL);
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, data, 0, 0, &m), MPX_OK);
  CHECK(m && ((Mpx__Error *)m)->code == 0);
  mpx_msg_free(m);
  free(data);
  /* mpx_buf_set_msg straight into a result buffer, with the result limit */
  uint8_t small[8];
  mpx_buf b;
  mpx__buf_init(&b, small, sizeof small, 0);
  CHECK_RC(mpx_buf_set_msg(&b, &e.base), MPX_OK);
  void *p;
  size_t n;
  mpx_buf_get(&b, &p, &n);
  CHECK(n == mpx__error__get_packed_size(&e));
  CHECK_RC(mpx_msg_unpack(&mpx__error__descriptor, p, n, 0, &m), MPX_OK);
  CHECK(m && ((Mpx__Error *)m)->pid == 77);
  mpx_msg_free(m);
  mpx__buf_release(&b);
  mpx__buf_init(&b, small, sizeof small, 4);
  CHECK_RC(mpx_buf_set_msg(&b, &e.base), MPX_ETOOBIG);
  mpx__buf_release(&b);
  CHECK_RC(mpx_buf_set_msg(NULL, &e.base), MPX_EINVAL);
}

/* Variable-size chunks (issue 10): the wire's semantic checks, serving, and the parent's parse of
 * per-item records, each length checked. */
static void test_vchunk(void) {
  mpx__limits lim = mpx__limits_default(0);
  /* semantics: var without count, item_size with var items, unknown bits */
  Mpx__Task bad[3] = {mk_task(id_of("echo"), 1, "\x01a", 2), mk_task(id_of("echo"), 2, "\x01a", 2),
                      mk_task(id_of("echo"), 3, "\x01a", 2)};
  bad[0].var = 3;
  bad[1].var = 3, bad[1].count = 1, bad[1].item_size = 2;
  bad[2].var = 8, bad[2].count = 1;
  for (int i = 0; i < 3; i++) {
    Mpx__Task *tp = &bad[i];
    Mpx__Batch in = MPX__BATCH__INIT;
    in.n_tasks = 1, in.tasks = &tp;
    mpx__wbuf w = {0};
    CHECK_RC(mpx__codec_pack(&in, &lim, &w), MPX_OK);
    Mpx__Batch *got = NULL;
    CHECK_RC(mpx__codec_unpack(w.data, w.len, &lim, &got), MPX_EPROTO);
    mpx__wbuf_free(&w);
  }
  /* serving: two good items, then a chunk whose item runs past its bytes */
  Mpx__Task t[2] = {mk_task(id_of("echo"), 5, "\x02hi\x00", 4), mk_task(id_of("echo"), 6, "\x05" "ab", 3)};
  t[0].var = 3, t[0].count = 2;
  t[1].var = 3, t[1].count = 1;
  Mpx__Batch *r = serve(t, 2, &lim);
  if (!r) return;
  CHECK(r->n_results == 2 && !r->results[0]->error);
  mpx__vres *v = NULL;
  CHECK_RC(mpx__vres_parse(r->results[0]->data.data, r->results[0]->data.len, 2, NULL, &v), MPX_OK);
  if (v) {
    CHECK(v->ent[0].code == 0 && v->ent[0].len == 2 && !memcmp(v->bytes + v->ent[0].off, "hi", 2));
    CHECK(v->ent[1].code == 0 && v->ent[1].len == 0);
    mpx__vres_free(v);
  }
  CHECK(r->results[1]->error && r->results[1]->error->code == MPX_EPROTO);
  /* parse: fewer or more records than the count, a length past the end, a message without NUL */
  CHECK_RC(mpx__vres_parse(r->results[0]->data.data, r->results[0]->data.len, 3, NULL, &v),
           MPX_EPROTO);
  CHECK_RC(mpx__vres_parse(r->results[0]->data.data, r->results[0]->data.len, 1, NULL, &v),
           MPX_EPROTO);
  CHECK_RC(mpx__vres_parse((const uint8_t *)"\x00\x09" "ab", 4, 1, NULL, &v), MPX_EPROTO);
  CHECK_RC(mpx__vres_parse((const uint8_t *)"\x0d\x02" "ab", 4, 1, NULL, &v), MPX_EPROTO);
  CHECK_RC(mpx__vres_parse((const uint8_t *)"\x0d\x03" "ab\x00", 5, 1, NULL, &v), MPX_OK);
  if (v) {
    CHECK(v->ent[0].code == MPX_ETASK);
    mpx__vres_free(v);
  }
  CHECK_RC(mpx__vres_parse((const uint8_t *)"", 0, 1000000, NULL, &v), MPX_EPROTO);
  mpx__codec_free(r);
}

int main(void) {
  test_limits();
  test_wbuf();
  test_round_trip();
  test_semantics();
  test_truncation();
  test_corruption();
  test_fast_paths();
  test_wire_rules();
  test_limits_enforced();
  test_frames();
  test_serve();
  test_serve_init();
  test_proto_helpers();
  test_vchunk();
  if (failures) {
    fprintf(stderr, "codec_test: %d failure(s)\n", failures);
    return 1;
  }
  printf("codec_test: ok\n");
  return 0;
}
