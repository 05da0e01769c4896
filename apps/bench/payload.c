/* payload.c: mpx-bench's `payload` workload: how fast big arguments and results cross the
 * backend, beside the limits measured in the same run.
 *
 * For each size (--size 4M, or a range 64K..256M stepping x4; default that range):
 *   - args:    N tasks (--tasks, default the executor's workers) submitted at once, each with the
 *              same `size`-byte argument, which the task reads one byte a page of; every result
 *              taken. Best of 3 rounds; the first round, on an executor just created, is also
 *              reported (`fresh`: workers that never moved a big payload yet, but have started
 *              and served a small task each: their start-up is not counted; with --reserve R
 *              the executor's arg_reserve = R, so each worker's first argument memory was made
 *              when it started).
 *   - results: N tasks at once whose task makes a `size`-byte result with mpx_buf_reserve and
 *              writes one byte a page; the caller reads one byte a page of it in place
 *              (mpx_future_result), then releases the future. Best of 3.
 *   - memcpy:  one memcpy of `size` bytes between warm buffers, best of 3.
 *   - socketpair: `size` bytes written by a thread through an AF_UNIX socketpair and read into a
 *              warm buffer (the bare pipe a process worker's socket is), best of 3.
 *   - mpi:     on the MPI backend, `size` bytes sent by rank 0 with a bare MPI_Send to the worker
 *              rank that runs a task posting the matching MPI_Recv into a warm buffer (best of 3;
 *              on MPI_COMM_WORLD, never mpx's own communicator).
 *   - pages:   `size` bytes of fresh memory mapped, written one byte a page and unmapped, best of
 *              3: what any new buffer of that size costs (a result the caller keeps is one).
 * Figures are GB/s (10^9 bytes per second) of payload: N * size over the round's seconds for mpx,
 * size over seconds for the limits. `ratio` is args (and results) against memcpy, or against
 * bare MPI on the MPI backend. Nothing here is
 * asserted: the host is shared and noisy, compare within a row. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#if MPX_HAVE_MPI
#include <mpx/mpi.h>
#endif

#define PAGE 4096

/* Read one byte a page of the argument: a task that looks at its input without copying it. */
static int bench_touch(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  const volatile unsigned char *p = arg;
  uint64_t sum = 0;
  for (size_t i = 0; i < len; i += PAGE) sum += p[i];
  return mpx_buf_set(out, &sum, sizeof sum);
}
MPX_TASK(bench_touch)

/* Make a result of the uint64 size given, in place, writing one byte a page. */
static int bench_fill(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  uint64_t n;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "bench_fill wants a uint64 size");
  memcpy(&n, arg, sizeof n);
  unsigned char *p;
  int rc = mpx_buf_reserve(out, (size_t)n, (void **)&p);
  if (rc) return rc;
  for (size_t i = 0; i < n; i += PAGE) p[i] = (unsigned char)i;
  return 0;
}
MPX_TASK(bench_fill)

/* Nap 20 ms and say which worker ran it: rounds of these until every worker has served one. */
static int bench_who(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len;
  struct timespec t = {0, 20 * 1000 * 1000};
  nanosleep(&t, NULL);
  int w = mpx_task_worker(ctx);
  return mpx_buf_set(out, &w, sizeof w);
}
MPX_TASK(bench_who)

/* Every worker started and served a small task (at most 50 rounds); so that the `fresh` round
 * measures a worker's first big payload, not its start-up. */
static void all_started(mpx_executor *ex) {
  int w = mpx_executor_workers(ex), seen = 0;
  if (w <= 0 || w > 4096) return;
  unsigned char *got = calloc((size_t)w, 1);
  mpx_future **fs = calloc((size_t)w, sizeof *fs);
  for (int round = 0; got && fs && seen < w && round < 50; round++) {
    int n = 0;
    for (; n < w && !mpx_submit(ex, "bench_who", NULL, 0, &fs[n]); n++) {
    }
    for (int i = 0; i < n; i++) {
      int who = -1;
      if (!mpx_future_result_copy(fs[i], &who, sizeof who, MPX_FOREVER) && who >= 0 && who < w &&
          !got[who])
        got[who] = 1, seen++;
      mpx_future_release(fs[i]);
    }
  }
  free(got);
  free(fs);
}

#if MPX_HAVE_MPI
enum { TAG_HELLO = 7701, TAG_DATA = 7702 };

/* On a worker rank: say which rank this is, then receive arg's uint64 size of bytes from rank 0
 * into a buffer kept between calls (warm, as the limit should be). */
static int bench_mpi_recv(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  static unsigned char *buf;
  static size_t cap;
  uint64_t n;
  if (len != sizeof n) return mpx_task_fail(ctx, MPX_EINVAL, "want a size");
  memcpy(&n, arg, sizeof n);
  if (n > cap) {
    free(buf);
    if (!(buf = malloc(n))) return cap = 0, MPX_ENOMEM;
    memset(buf, 0, n);
    cap = n;
  }
  int me;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Send(&me, 1, MPI_INT, 0, TAG_HELLO, MPI_COMM_WORLD);
  MPI_Recv(buf, (int)n, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  return 0;
}
MPX_TASK(bench_mpi_recv)

/* Rank 0: best of 3 bare transfers of `size` bytes to a worker rank; < 0 if not possible. */
static double best_mpi(mpx_executor *ex, const unsigned char *src, size_t size) {
  int inited = 0, level = 0;
  MPI_Initialized(&inited);
  if (!inited || size > (size_t)INT32_MAX) return -1;
  MPI_Query_thread(&level);
  if (level < MPI_THREAD_MULTIPLE) return -1; /* the dispatcher calls MPI at the same time */
  double best = 1e30;
  uint64_t n = size;
  for (int r = 0; r < 3; r++) {
    mpx_future *f;
    if (mpx_submit(ex, "bench_mpi_recv", &n, sizeof n, &f)) return -1;
    int rank = -1;
    MPI_Recv(&rank, 1, MPI_INT, MPI_ANY_SOURCE, TAG_HELLO, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    double t0 = bench_now();
    MPI_Send(src, (int)size, MPI_BYTE, rank, TAG_DATA, MPI_COMM_WORLD);
    int rc = mpx_future_result(f, MPX_FOREVER, NULL, NULL);
    double s = bench_now() - t0;
    mpx_future_release(f);
    if (rc) return -1;
    if (s < best) best = s;
  }
  return best;
}
#endif

/* "4M", "64K", "1G", "123": bytes, 0 if malformed. */
static size_t parse_size(const char *s, const char **end) {
  char *e;
  unsigned long long v = strtoull(s, &e, 10);
  if (e == s) return 0;
  if (*e == 'K' || *e == 'k')
    v <<= 10, e++;
  else if (*e == 'M' || *e == 'm')
    v <<= 20, e++;
  else if (*e == 'G' || *e == 'g')
    v <<= 30, e++;
  *end = e;
  return (size_t)v;
}

static void fmt_size(size_t n, char *buf, size_t cap) {
  if (n >= (1u << 20) && n % (1u << 20) == 0)
    snprintf(buf, cap, "%zuM", n >> 20);
  else if (n >= 1024 && n % 1024 == 0)
    snprintf(buf, cap, "%zuK", n >> 10);
  else
    snprintf(buf, cap, "%zu", n);
}

/* Seconds of one round of n tasks; < 0 on failure. */
static double round_args(mpx_executor *ex, const mpx_task *t, const void *arg, size_t size,
                         mpx_future **fs, long n) {
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    int rc = mpx_submit_task(ex, t, arg, size, NULL, &fs[i]);
    if (rc)
      return fprintf(stderr, "mpx-bench: submit: %s %s\n", mpx_strerror(rc), mpx_errmsg()), -1;
  }
  for (long i = 0; i < n; i++) {
    int rc = mpx_future_result(fs[i], MPX_FOREVER, NULL, NULL);
    if (rc)
      return fprintf(stderr, "mpx-bench: result: %s %s\n", mpx_strerror(rc), mpx_errmsg()), -1;
    mpx_future_release(fs[i]);
  }
  return bench_now() - t0;
}

static double round_results(mpx_executor *ex, const mpx_task *t, size_t size, mpx_future **fs,
                            long n) {
  uint64_t want = size;
  volatile unsigned sink = 0;
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    int rc = mpx_submit_task(ex, t, &want, sizeof want, NULL, &fs[i]);
    if (rc)
      return fprintf(stderr, "mpx-bench: submit: %s %s\n", mpx_strerror(rc), mpx_errmsg()), -1;
  }
  for (long i = 0; i < n; i++) {
    const void *data;
    size_t len;
    int rc = mpx_future_result(fs[i], MPX_FOREVER, &data, &len);
    if (rc || len != size)
      return fprintf(stderr, "mpx-bench: result: %s %s (%zu bytes)\n", mpx_strerror(rc),
                     mpx_errmsg(), len),
             -1;
    for (size_t k = 0; k < len; k += PAGE) sink += ((const unsigned char *)data)[k];
    mpx_future_release(fs[i]);
  }
  (void)sink;
  return bench_now() - t0;
}

static double best_memcpy(void *dst, const void *src, size_t size) {
  double best = 1e30;
  for (int r = 0; r < 3; r++) {
    double t0 = bench_now();
    memcpy(dst, src, size);
    __asm__ volatile("" : : "r"(dst) : "memory");
    double s = bench_now() - t0;
    if (s < best) best = s;
  }
  return best;
}

typedef struct sp_job {
  int fd;
  const unsigned char *src;
  size_t size;
} sp_job;

static void *sp_writer(void *arg) {
  sp_job *j = arg;
  for (size_t off = 0; off < j->size;) {
    ssize_t w = write(j->fd, j->src + off, j->size - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
  return NULL;
}

/* One transfer of `size` bytes through a socketpair, best of 3; < 0 if it could not be made. */
static double best_socketpair(unsigned char *dst, const unsigned char *src, size_t size) {
  double best = 1e30;
  for (int r = 0; r < 3; r++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    sp_job j = {.fd = sv[0], .src = src, .size = size};
    pthread_t th;
    double t0 = bench_now();
    if (pthread_create(&th, NULL, sp_writer, &j)) return close(sv[0]), close(sv[1]), -1;
    size_t got = 0;
    while (got < size) {
      ssize_t n = read(sv[1], dst + got, size - got);
      if (n <= 0) break;
      got += (size_t)n;
    }
    double s = bench_now() - t0;
    pthread_join(th, NULL);
    close(sv[0]);
    close(sv[1]);
    if (s < best) best = s;
  }
  return best;
}

static double best_pages(size_t size) {
  double best = 1e30;
  for (int r = 0; r < 3 && size; r++) {
    double t0 = bench_now();
    unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    for (size_t i = 0; i < size; i += PAGE) p[i] = 1;
    munmap(p, size);
    double s = bench_now() - t0;
    if (s < best) best = s;
  }
  return best;
}

static int one_size(const bench_args *a, size_t size) {
  mpx_executor *ex;
  int rc = mpx_executor_create(
      &ex, &(mpx_options){.backend = a->backend, .workers = a->workers, .binding = a->binding,
                          .arg_reserve = (size_t)a->reserve});
  if (rc) {
    fprintf(stderr, "mpx-bench: cannot create the executor: %s %s\n", mpx_strerror(rc),
            mpx_errmsg());
    return 1;
  }
  long n = a->tasks_given ? a->tasks : mpx_executor_workers(ex);
  const mpx_task *touch, *fill;
  mpx_task_find("bench_touch", &touch);
  mpx_task_find("bench_fill", &fill);
  unsigned char *src = malloc(size ? size : 1), *dst = malloc(size ? size : 1);
  mpx_future **fs = calloc((size_t)n, sizeof *fs);
  if (!src || !dst || !fs) return fprintf(stderr, "mpx-bench: out of memory\n"), 1;
  memset(src, 0x5a, size);
  memset(dst, 0, size);
  all_started(ex);
  double fresh = round_args(ex, touch, src, size, fs, n), args = 1e30, res = 1e30;
  for (int r = 0; r < 3 && fresh >= 0; r++) {
    double s = round_args(ex, touch, src, size, fs, n);
    if (s < 0) return 1;
    if (s < args) args = s;
  }
  for (int r = 0; r < 3 && fresh >= 0; r++) {
    double s = round_results(ex, fill, size, fs, n);
    if (s < 0) return 1;
    if (s < res) res = s;
  }
  if (fresh < 0) return 1;
  double mc = best_memcpy(dst, src, size);
  double sp = best_socketpair(dst, src, size);
  double pg = best_pages(size), mp = -1;
#if MPX_HAVE_MPI
  if (mpx_executor_backend(ex) == MPX_BACKEND_MPI) mp = best_mpi(ex, src, size);
#endif
  double total = (double)size * (double)n;
  double g_args = total / args / 1e9, g_res = total / res / 1e9, g_fresh = total / fresh / 1e9;
  double g_mc = (double)size / mc / 1e9, g_sp = sp > 0 ? (double)size / sp / 1e9 : 0;
  double g_pg = pg > 0 ? (double)size / pg / 1e9 : 0;
  double g_mp = mp > 0 ? (double)size / mp / 1e9 : 0;
  double lim = g_mp > 0 ? g_mp : g_mc; /* the ratio's yardstick: bare MPI on MPI, else memcpy */
  char sz[32], extra[400];
  fmt_size(size, sz, sizeof sz);
  snprintf(extra, sizeof extra,
           "\"size\": %zu, \"args_gb_s\": %.3f, \"results_gb_s\": %.3f, \"fresh_args_gb_s\": "
           "%.3f, \"memcpy_gb_s\": %.3f, \"socketpair_gb_s\": %.3f, \"pages_gb_s\": %.3f, "
           "\"mpi_gb_s\": %.3f, \"args_ratio\": %.2f, \"results_ratio\": %.2f",
           size, g_args, g_res, g_fresh, g_mc, g_sp, g_pg, g_mp, g_args / lim, g_res / lim);
  char mpi_col[32] = "";
  if (g_mp > 0) snprintf(mpi_col, sizeof mpi_col, "  mpi %6.3f", g_mp);
  if (a->json) {
    bench_emit(a, mpx_backend_name((mpx_backend)mpx_executor_backend(ex)), "payload",
               mpx_executor_workers(ex), n, args, extra);
  } else {
    bench_ticker_row(); /* erase the progress line */
    printf("%-10s payload %6s x%-3ld %2d workers  args %7.3f GB/s  results %7.3f GB/s  fresh "
           "%6.3f | memcpy %7.3f  socketpair %6.3f  pages %6.3f%s GB/s | ratio %.2f / %.2f\n",
           mpx_backend_name((mpx_backend)mpx_executor_backend(ex)), sz, n, mpx_executor_workers(ex),
           g_args, g_res, g_fresh, g_mc, g_sp, g_pg, mpi_col, g_args / lim, g_res / lim);
    fflush(stdout);
  }
  free(fs);
  free(src);
  free(dst);
  mpx_executor_destroy(ex);
  return 0;
}

int bench_payload(const bench_args *a) {
  const char *spec = a->size ? a->size : "64K..256M";
  const char *e;
  size_t lo = parse_size(spec, &e), hi = lo;
  if (!strncmp(e, "..", 2)) {
    const char *e2;
    hi = parse_size(e + 2, &e2);
    e = e2;
  }
  if (*e || hi < lo || (lo == 0 && hi != 0))
    return fprintf(stderr, "mpx-bench: bad --size '%s' (4M, 64K..256M)\n", spec), 1;
  for (size_t s = lo;; s *= 4) {
    if (one_size(a, s)) return 1;
    if (s == 0 || s >= hi || s > SIZE_MAX / 4) break;
  }
  return 0;
}
