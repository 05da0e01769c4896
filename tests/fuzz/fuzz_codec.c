/* fuzz_codec.c: libFuzzer target for every decoder of bytes from outside in the codec: the frame
 * header, mpx__codec_unpack (wire check, fast decoder or protobuf-c unpack, semantic checks) and
 * mpx_msg_unpack.
 *
 * Input: 4 bytes of frame header, then the body. Properties checked beyond "no crash, no leak,
 * no UB": a decode returns only 0, MPX_EPROTO or MPX_ETOOBIG; the fast decoder and protobuf-c's
 * return the same code and batches that pack to the same bytes, and the fast encoder writes
 * protobuf-c's bytes; a decoded Batch re-packs, the
 * re-packed bytes decode, and packing that gives the same bytes again (canonical form); serving
 * a decoded Batch succeeds and its reply decodes with one Result per Task.
 *
 * With MPX_FUZZ_SEEDS=dir in the environment, LLVMFuzzerInitialize writes a few valid seed
 * inputs into `dir` (created if missing) before libFuzzer reads its corpus. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "mpx/proto.h"
#include "task_impl.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int echo(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len && ((const uint8_t *)arg)[0] == 'F') return mpx_task_fail(ctx, MPX_EINVAL, "F: %zu", len);
  return mpx_buf_set(out, arg, len);
}
MPX_TASK(echo);

static void must(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "fuzz_codec: property violated: %s\n", what);
    abort();
  }
}

static void write_seed(const char *dir, int n, const mpx__wbuf *body) {
  char path[4096];
  snprintf(path, sizeof path, "%s/seed-%02d", dir, n);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  uint8_t hdr[MPX__FRAME_HDR];
  mpx__frame_put_header(hdr, body->len);
  fwrite(hdr, 1, sizeof hdr, f);
  if (body->len) fwrite(body->data, 1, body->len, f);
  fclose(f);
}

static void write_seeds(const char *dir) {
  if (mkdir(dir, 0777) && errno != EEXIST) return;
  mpx__limits lim = mpx__limits_default(0);
  const mpx_task *t;
  uint32_t id = mpx_task_find("echo", &t) ? 1 : t->id;
  long items[3] = {1, 2, 3};
  Mpx__Task ts[3] = {MPX__TASK__INIT, MPX__TASK__INIT, MPX__TASK__INIT};
  ts[0].task_id = id, ts[0].call_id = 1, ts[0].arg.data = (uint8_t *)"hello", ts[0].arg.len = 5;
  ts[1].task_id = 0xdeadbeef, ts[1].call_id = 2;
  ts[2].task_id = id, ts[2].call_id = 3, ts[2].arg.data = (uint8_t *)items;
  ts[2].arg.len = sizeof items, ts[2].count = 3, ts[2].item_size = sizeof(long);
  ts[2].result_size = sizeof(long);
  Mpx__Task *tp[3] = {&ts[0], &ts[1], &ts[2]};
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = MPX_ETASK, e.message = (char *)"boom", e.pid = 12, e.host = (char *)"h", e.rank = -1;
  e.index = 2;
  Mpx__Result rs[2] = {MPX__RESULT__INIT, MPX__RESULT__INIT};
  rs[0].call_id = 1, rs[0].data.data = (uint8_t *)"res", rs[0].data.len = 3;
  rs[1].call_id = 2, rs[1].error = &e;
  Mpx__Result *rp[2] = {&rs[0], &rs[1]};
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__READY, c.error = &e, c.pid = 5, c.host = (char *)"node";
  c.slots = 3;
  Mpx__Control back = MPX__CONTROL__INIT; /* a rank's answer to TAKEBACK: bare call ids */
  back.kind = MPX__CONTROL__KIND__RETURNED;
  Mpx__Result ids[2] = {MPX__RESULT__INIT, MPX__RESULT__INIT};
  ids[0].call_id = 7, ids[1].call_id = 8;
  Mpx__Result *ip[2] = {&ids[0], &ids[1]};
  Mpx__Batch bs[5] = {MPX__BATCH__INIT, MPX__BATCH__INIT, MPX__BATCH__INIT, MPX__BATCH__INIT,
                      MPX__BATCH__INIT};
  bs[1].n_tasks = 3, bs[1].tasks = tp;
  bs[2].n_results = 2, bs[2].results = rp;
  bs[3].n_tasks = 3, bs[3].tasks = tp, bs[3].n_results = 2, bs[3].results = rp, bs[3].control = &c;
  bs[4].n_results = 2, bs[4].results = ip, bs[4].control = &back;
  for (int i = 0; i < 5; i++) {
    mpx__wbuf w = {0};
    if (mpx__codec_pack(&bs[i], &lim, &w) == 0) write_seed(dir, i, &w);
    mpx__wbuf_free(&w);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *dir = getenv("MPX_FUZZ_SEEDS");
  if (dir && *dir) write_seeds(dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* small limits so that the ETOOBIG paths are reachable from small inputs */
  static const mpx__limits small = {.max_payload = 512, .max_message = 3000, .max_items = 64};
  mpx__limits dflt = mpx__limits_default(0);
  if (size < MPX__FRAME_HDR) return 0;
  size_t n;
  int rc = mpx__frame_get_header(data, &small, &n);
  must(rc == 0 || rc == MPX_ETOOBIG, "frame header code");
  const uint8_t *body = data + MPX__FRAME_HDR;
  size_t len = size - MPX__FRAME_HDR;
  /* the body as given (the header only picks the limits: within them or default) */
  const mpx__limits *lim = rc == 0 ? &small : &dflt;
  uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
  if (len) memcpy(copy, body, len);
  Mpx__Batch *b;
  rc = mpx__codec_unpack(copy, len, lim, &b);
  must(rc == 0 || rc == MPX_EPROTO || rc == MPX_ETOOBIG, "unpack code");
  must((rc == 0) == (b != NULL), "unpack result");
  /* the fast decoder and protobuf-c's agree */
  Mpx__Batch *s;
  int rs = mpx__codec_unpack_slow(copy, len, lim, &s);
  must(rs == rc, "fast and slow decoders return the same code");
  if (b) {
    mpx__wbuf ws = {0}, wf = {0}, wfs = {0};
    must(mpx__codec_pack_slow(s, &dflt, &ws) == 0, "slow pack of slow decode");
    must(mpx__codec_pack_slow(b, &dflt, &wf) == 0, "slow pack of fast decode");
    must(mpx__codec_pack(s, &dflt, &wfs) == 0, "fast pack of slow decode");
    must(ws.len == wf.len && (!ws.len || !memcmp(ws.data, wf.data, ws.len)), "decoders agree");
    must(ws.len == wfs.len && (!ws.len || !memcmp(ws.data, wfs.data, ws.len)), "encoders agree");
    mpx__wbuf_free(&ws);
    mpx__wbuf_free(&wf);
    mpx__wbuf_free(&wfs);
  }
  mpx__codec_free(s);
  if (b) {
    mpx__wbuf w1 = {0}, w2 = {0}, reply = {0};
    must(mpx__codec_pack(b, &dflt, &w1) == 0, "re-pack");
    Mpx__Batch *b2;
    must(mpx__codec_unpack(w1.data, w1.len, &dflt, &b2) == 0, "re-decode");
    must(mpx__codec_pack(b2, &dflt, &w2) == 0, "re-re-pack");
    must(w1.len == w2.len && (!w1.len || !memcmp(w1.data, w2.data, w1.len)), "canonical");
    mpx__codec_free(b2);
    mpx__worker_id who = {.index = 0, .pid = 1, .rank = -1, .host = "fuzz"};
    rc = mpx__serve_batch(b, &who, &small, &reply);
    must(rc == 0 || rc == MPX_ETOOBIG, "serve");
    if (rc == 0) {
      Mpx__Batch *r;
      must(mpx__codec_unpack(reply.data, reply.len, &small, &r) == 0, "reply decodes");
      must(r->n_results == b->n_tasks, "one result per task");
      mpx__codec_free(r);
    }
    mpx__wbuf_free(&w1);
    mpx__wbuf_free(&w2);
    mpx__wbuf_free(&reply);
    mpx__codec_free(b);
  }
  /* the same bytes as a user message through the public helper */
  ProtobufCMessage *m;
  rc = mpx_msg_unpack(&mpx__error__descriptor, copy, len, 256, &m);
  must(rc == 0 || rc == MPX_EPROTO || rc == MPX_ETOOBIG, "msg_unpack code");
  if (m) {
    void *p;
    size_t pl;
    must(mpx_msg_pack(m, &p, &pl) == 0, "msg re-pack");
    free(p);
    mpx_msg_free(m);
  }
  free(copy);
  return 0;
}
