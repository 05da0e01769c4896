/* strings.c: mpx-bench's variable-size and streaming workloads (issue 10):
 *   strmap   N strings of 10-200 bytes (a fixed seed) through mpx_map_var, each answered with its
 *            16-byte MD5 digest; then the same through mpx_imap_var (in order). The peer is
 *            apps/bench/peers/strmap.py (Pool.map / Pool.imap with hashlib.md5, same strings).
 *   stream   N empty items through mpx_imap (unordered), results taken one at a time: items/s
 *            and the peak RSS (getrusage), which stays flat however large N is.
 * The MD5 below is RFC 1321's, written out so that the bench needs no crypto library. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"

/* ---- MD5 (RFC 1321) ------------------------------------------------------------------------ */

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
static const uint8_t R[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(uint32_t h[4], const uint8_t *p) {
  uint32_t m[16], a = h[0], b = h[1], c = h[2], d = h[3];
  for (int i = 0; i < 16; i++)
    m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
           (uint32_t)p[4 * i + 3] << 24;
  for (int i = 0; i < 64; i++) {
    uint32_t f;
    int g;
    if (i < 16)
      f = (b & c) | (~b & d), g = i;
    else if (i < 32)
      f = (d & b) | (~d & c), g = (5 * i + 1) & 15;
    else if (i < 48)
      f = b ^ c ^ d, g = (3 * i + 5) & 15;
    else
      f = c ^ (b | ~d), g = (7 * i) & 15;
    uint32_t t = d;
    d = c;
    c = b;
    uint32_t x = a + f + K[i] + m[g];
    b += (x << R[i]) | (x >> (32 - R[i]));
    a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d;
}

static void md5(const void *data, size_t len, uint8_t out[16]) {
  uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  const uint8_t *p = data;
  size_t i = 0;
  for (; i + 64 <= len; i += 64) md5_block(h, p + i);
  uint8_t tail[128] = {0};
  size_t r = len - i;
  if (r) memcpy(tail, p + i, r);
  tail[r] = 0x80;
  size_t tl = r < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int k = 0; k < 8; k++) tail[tl - 8 + k] = (uint8_t)(bits >> (8 * k));
  md5_block(h, tail);
  if (tl == 128) md5_block(h, tail + 64);
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < 4; j++) out[4 * k + j] = (uint8_t)(h[k] >> (8 * j));
}

static int bench_md5(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  void *d;
  int rc = mpx_buf_reserve(out, 16, &d);
  if (rc) return rc;
  md5(arg, len, d);
  return 0;
}
MPX_TASK(bench_md5)

static int bench_nothing(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  return 0;
}
MPX_TASK(bench_nothing)

/* ---- workloads ----------------------------------------------------------------------------- */

static long peak_rss_kib(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) ? -1 : ru.ru_maxrss;
}

static int open_ex(const bench_args *a, mpx_executor **ex) {
  int rc = mpx_executor_create(
      ex, &(mpx_options){.backend = a->backend, .workers = a->workers, .binding = a->binding});
  if (rc) fprintf(stderr, "mpx-bench: executor: %s %s\n", mpx_strerror(rc), mpx_errmsg());
  return rc;
}

/* The same strings as peers/strmap.py: a 64-bit LCG, lengths 10..200, letters. */
static char *make_strings(long n, mpx_bytes *items) {
  uint64_t s = 42;
  size_t total = 0;
  size_t *lens = malloc((size_t)n * sizeof *lens);
  if (!lens) return NULL;
  for (long i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    lens[i] = 10 + (size_t)((s >> 33) % 191);
    total += lens[i];
  }
  char *buf = malloc(total);
  if (!buf) {
    free(lens);
    return NULL;
  }
  size_t off = 0;
  for (long i = 0; i < n; i++) {
    for (size_t k = 0; k < lens[i]; k++) buf[off + k] = (char)('a' + (i + (long)k) % 26);
    items[i] = (mpx_bytes){buf + off, lens[i]};
    off += lens[i];
  }
  free(lens);
  return buf;
}

int bench_strmap(const bench_args *a) {
  mpx_executor *ex;
  if (open_ex(a, &ex)) return 1;
  const char *be = mpx_backend_name((mpx_backend)mpx_executor_backend(ex));
  mpx_bytes *items = malloc((size_t)a->tasks * sizeof *items);
  char *buf = items ? make_strings(a->tasks, items) : NULL;
  if (!buf) return 1;
  double t0 = bench_now();
  mpx_results *r;
  int rc = mpx_map_var(ex, "bench_md5", items, (size_t)a->tasks, NULL, &r);
  double s = bench_now() - t0;
  if (rc) {
    fprintf(stderr, "mpx-bench: map_var: %s %s\n", mpx_strerror(rc), mpx_errmsg());
    return 1;
  }
  uint8_t x = 0; /* every digest is read, as a caller would */
  for (long i = 0; i < a->tasks; i++) {
    const void *d;
    size_t n;
    if (mpx_results_get(r, (size_t)i, &d, &n, NULL) || n != 16) return 1;
    x ^= ((const uint8_t *)d)[0];
  }
  mpx_results_free(r);
  char extra[96];
  snprintf(extra, sizeof extra, "\"api\": \"map_var\", \"xor\": %u", x);
  bench_emit(a, be, "strmap", mpx_executor_workers(ex), a->tasks, s, extra);
  t0 = bench_now();
  mpx_imap_iter *it;
  if ((rc = mpx_imap_var(ex, "bench_md5", items, (size_t)a->tasks, NULL, &it))) return 1;
  mpx_map_item item;
  long got = 0;
  x = 0;
  while (mpx_imap_next(it, MPX_FOREVER, &item) == MPX_OK && !item.code) {
    x ^= ((const uint8_t *)item.data)[0];
    got++;
  }
  mpx_imap_destroy(it);
  s = bench_now() - t0;
  if (got != a->tasks) return 1;
  snprintf(extra, sizeof extra, "\"api\": \"imap_var\", \"xor\": %u", x);
  bench_emit(a, be, "strmap", mpx_executor_workers(ex), a->tasks, s, extra);
  mpx_executor_destroy(ex);
  free(buf);
  free(items);
  return 0;
}

int bench_stream(const bench_args *a) {
  mpx_executor *ex;
  if (open_ex(a, &ex)) return 1;
  long before = peak_rss_kib();
  double t0 = bench_now();
  mpx_imap_iter *it;
  int rc = mpx_imap(ex, "bench_nothing", NULL, 0, (size_t)a->tasks,
                    &(mpx_imap_opts){.unordered = true}, &it);
  if (rc) {
    fprintf(stderr, "mpx-bench: imap: %s %s\n", mpx_strerror(rc), mpx_errmsg());
    return 1;
  }
  mpx_map_item item;
  long got = 0;
  while ((rc = mpx_imap_next(it, MPX_FOREVER, &item)) == MPX_OK) got += item.code == 0;
  mpx_imap_destroy(it);
  double s = bench_now() - t0;
  if (got != a->tasks) {
    fprintf(stderr, "mpx-bench: stream: %ld of %ld items\n", got, a->tasks);
    return 1;
  }
  char extra[96];
  snprintf(extra, sizeof extra, "\"peak_rss_kib_before\": %ld, \"peak_rss_kib\": %ld", before,
           peak_rss_kib());
  bench_emit(a, mpx_backend_name((mpx_backend)mpx_executor_backend(ex)), "stream",
             mpx_executor_workers(ex), a->tasks, s, extra);
  mpx_executor_destroy(ex);
  return 0;
}
