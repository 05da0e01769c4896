/* demo_pipeline: the picture pipeline download -> hash -> store, stage by stage, and the gain
 * each stage gets from a pool. Three kinds of work:
 *   download  waiting (a sleep standing for the network), then the picture's bytes (generated
 *             from its index): a pool overlaps the waits, so it gains with its worker count
 *   hash      CPU: 32 chained passes of FNV-1a 64 over the picture: gains up to the cores
 *   store     writing the picture to a file in a fresh temporary directory: little CPU, and on
 *             processes each picture must first be copied to the worker
 * Each stage runs over all pictures serially, then through mpx_map (one picture per task) on a
 * pool of threads and one of processes (the MPI ranks under mpirun), and the table shows each
 * stage's seconds and gain. In Python only processes gain on the hash stage (threads hold one
 * interpreter lock) and threads are the cheap choice for the waiting stages; in C threads gain
 * everywhere processes do, and processes pay for every byte they are sent.
 *
 * The check: each pool's pictures, digests and stored files (read back) equal the serial run's.
 *   demo_pipeline [--pictures N] [--size BYTES] [--wait S] [--workers W] [--quick] */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_pipeline [--pictures N] [--size BYTES] [--wait S] [--workers W] [--quick]\n"
    "  N pictures (default 12; --quick: 6) of BYTES (default 1 MiB; --quick: 256 KiB), each\n"
    "  downloaded (a wait of S seconds, default 0.1; --quick: 0.03), hashed and stored to a\n"
    "  temporary directory: serially, then on W workers (default: the cores) of threads and of\n"
    "  processes (of the MPI ranks under mpirun); the seconds and gain of each stage.\n";

enum { PASSES = 32, STAGES = 3 };
static double wait_s = 0.1; /* set before mpx_init: the workers inherit them */
static long pic_size = 1L << 20;

/* ---- the three stages as plain functions (the serial run calls them directly) ---- */

/* download: wait, then write the bytes of picture `index` (xorshift64 from the index) to p. */
static void fetch(long index, unsigned char *p) {
  struct timespec t = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
  while (nanosleep(&t, &t) == -1 && errno == EINTR) {
  }
  uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(index + 1);
  for (long i = 0; i < pic_size; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (unsigned char)x;
  }
}

/* hash: PASSES chained passes of FNV-1a 64 (each pass goes on from the last one's state). */
static uint64_t digest(const unsigned char *p, size_t len) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int pass = 0; pass < PASSES; pass++)
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* store's item: where to write, then the picture's bytes. */
typedef struct store_hdr {
  char dir[200];
  long index;
} store_hdr;

static void file_name(char *buf, size_t n, const char *dir, long index) {
  snprintf(buf, n, "%s/picture_%03ld.bin", dir, index);
}

/* store: write the picture to <dir>/picture_<index>.bin; the bytes written, or -errno. */
static long save(const store_hdr *h, const unsigned char *p, long len) {
  char path[256];
  file_name(path, sizeof path, h->dir, h->index);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  long done = 0;
  while (done < len) {
    ssize_t w = write(fd, p + done, (size_t)(len - done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += w;
  }
  close(fd);
  return done;
}

/* ---- the same as mpx tasks ---- */
static int download(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  long index;
  if (len != sizeof index) return mpx_task_fail(ctx, MPX_EINVAL, "want a picture index");
  memcpy(&index, arg, sizeof index);
  void *p;
  int rc = mpx_buf_reserve(out, (size_t)pic_size, &p); /* written in place */
  if (!rc) fetch(index, p);
  return rc;
}
MPX_TASK(download)

static int hash(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  uint64_t h = digest(arg, len);
  return mpx_buf_set(out, &h, sizeof h);
}
MPX_TASK(hash)

static int store(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  store_hdr h;
  if (len < sizeof h) return mpx_task_fail(ctx, MPX_EINVAL, "want a header and a picture");
  memcpy(&h, arg, sizeof h);
  h.dir[sizeof h.dir - 1] = '\0';
  long done = save(&h, (const unsigned char *)arg + sizeof h, (long)(len - sizeof h));
  if (done < 0)
    return mpx_task_fail(ctx, MPX_ESYS, "store picture %ld in %s: %s", h.index, h.dir,
                         strerror((int)-done));
  return mpx_buf_set(out, &done, sizeof done);
}
MPX_TASK(store)

/* One pipeline run on `ex` (NULL: serially): times[stage]; the pictures, digests and files. */
static bool pipeline(mpx_executor *ex, const char *dir, long n, unsigned char *pics,
                     unsigned char *items, uint64_t *digests, double times[STAGES]) {
  size_t isz = sizeof(store_hdr) + (size_t)pic_size;
  long *idx = malloc((size_t)n * sizeof *idx), *written = calloc((size_t)n, sizeof *written);
  if (!idx || !written) return false;
  for (long i = 0; i < n; i++) idx[i] = i;
  mpx_map_status st = {0};
  mpx_map_opts o = {.chunksize = 1, .status = &st}; /* one picture per task */
  int rc = 0;
  double t0 = demo_now();
  if (ex)
    rc = mpx_map(ex, "download", idx, sizeof *idx, (size_t)n, pics, (size_t)pic_size, &o);
  else
    for (long i = 0; i < n; i++) fetch(i, pics + i * pic_size);
  times[0] = demo_now() - t0;
  for (long i = 0; i < n; i++) { /* store's items: header, then the picture (not timed) */
    store_hdr h = {.index = i};
    snprintf(h.dir, sizeof h.dir, "%s", dir);
    memcpy(items + (size_t)i * isz, &h, sizeof h);
    memcpy(items + (size_t)i * isz + sizeof h, pics + i * pic_size, (size_t)pic_size);
  }
  t0 = demo_now();
  if (ex && !rc)
    rc = mpx_map(ex, "hash", pics, (size_t)pic_size, (size_t)n, digests, sizeof *digests, &o);
  else if (!ex)
    for (long i = 0; i < n; i++) digests[i] = digest(pics + i * pic_size, (size_t)pic_size);
  times[1] = demo_now() - t0;
  t0 = demo_now();
  if (ex && !rc)
    rc = mpx_map(ex, "store", items, isz, (size_t)n, written, sizeof *written, &o);
  else if (!ex)
    for (long i = 0; i < n; i++) {
      store_hdr h; /* copied out: an item's header need not be aligned */
      memcpy(&h, items + (size_t)i * isz, sizeof h);
      written[i] = save(&h, pics + i * pic_size, pic_size);
    }
  times[2] = demo_now() - t0;
  if (rc) fprintf(stderr, "map: %s: %s\n", mpx_strerror(rc), st.message);
  bool ok = rc == 0;
  for (long i = 0; i < n; i++) ok &= written[i] == pic_size;
  free(idx);
  free(written);
  return ok;
}

/* Do the stored files hold exactly the pictures? (Each is removed after it is read.) */
static bool files_match(const char *dir, long n, const unsigned char *pics) {
  unsigned char *buf = malloc((size_t)pic_size + 1);
  bool ok = buf != NULL;
  for (long i = 0; i < n && buf; i++) {
    char path[256];
    file_name(path, sizeof path, dir, i);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, (size_t)pic_size + 1, f) : 0;
    if (f) fclose(f);
    ok &= got == (size_t)pic_size && !memcmp(buf, pics + i * pic_size, (size_t)pic_size);
    unlink(path);
  }
  free(buf);
  return ok;
}

int main(int argc, char **argv) {
  demo_line_buffered();
  bool quick = demo_quick(argc, argv); /* smaller defaults; the options below still apply */
  long n = quick ? 6 : 12, workers = 0;
  pic_size = quick ? 256L << 10 : 1L << 20;
  wait_s = quick ? 0.03 : 0.1;
  const demo_opt opts[] = {
      {"--pictures", .l = &n, .lo = 1, .hi = 1000},
      {"--size", .l = &pic_size, .lo = 1, .hi = 64L << 20},
      {"--wait", .d = &wait_s, .lo = 0, .hi = 10},
      {"--workers", .l = &workers, .lo = 1, .hi = 256},
  };
  int parsed = demo_parse("demo_pipeline", usage, argc, argv, opts, sizeof opts / sizeof *opts);
  if (parsed >= 0) return parsed;
  if ((double)n * (double)pic_size > (double)(256L << 20)) {
    fprintf(stderr, "demo_pipeline: %ld pictures of %ld bytes is over 256 MiB\n%s", n, pic_size,
            usage);
    return DEMO_USAGE;
  }
  bool mpi_job = demo_mpi_job();
  int init = demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;

  char dir[200];
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/mpx_pipeline.XXXXXX",
           tmp && *tmp && strlen(tmp) < 150 ? tmp : "/tmp");
  size_t isz = sizeof(store_hdr) + (size_t)pic_size;
  unsigned char *pics = malloc((size_t)n * (size_t)pic_size), *items = malloc((size_t)n * isz);
  unsigned char *want = malloc((size_t)n * (size_t)pic_size);
  uint64_t *digests = malloc((size_t)n * sizeof *digests),
           *want_d = malloc((size_t)n * sizeof *want_d);
  if (!mkdtemp(dir) || !pics || !items || !want || !digests || !want_d) {
    fprintf(stderr, "demo_pipeline: no temporary directory or memory: %s\n", strerror(errno));
    return 1;
  }
  printf("%ld pictures of %.1f KiB: download (a %.3f s wait each), hash (%d passes of FNV-1a), "
         "store (to %s)\n",
         n, (double)pic_size / 1024, wait_s, PASSES, dir);
  double serial[STAGES], t[2][STAGES];
  bool all_ok = pipeline(NULL, dir, n, want, items, want_d, serial) && files_match(dir, n, want);
  mpx_backend rows[2];
  int nrows = demo_backends(mpi_job, rows), used[2] = {0, 0};
  bool ok[2] = {false, false};
  for (int r = 0; r < nrows; r++) {
    mpx_executor *ex = demo_executor(rows[r], (int)workers, 0);
    if (!ex) continue;
    used[r] = mpx_executor_workers(ex);
    memset(pics, 0, (size_t)n * (size_t)pic_size);
    ok[r] = pipeline(ex, dir, n, pics, items, digests, t[r]) && files_match(dir, n, pics) &&
            !memcmp(pics, want, (size_t)n * (size_t)pic_size) &&
            !memcmp(digests, want_d, (size_t)n * sizeof *digests);
    mpx_executor_destroy(ex);
  }
  rmdir(dir);
  printf("%-10s %9s", "stage", "serial s");
  for (int r = 0; r < nrows; r++) {
    char h[40];
    snprintf(h, sizeof h, "%s x%d s", mpx_backend_name(rows[r]), used[r]);
    printf(" %17s %6s", h, "gain");
  }
  printf("\n");
  static const char *names[STAGES] = {"download", "hash", "store"};
  for (int s = 0; s < STAGES; s++) {
    printf("%-10s %9.3f", names[s], serial[s]);
    for (int r = 0; r < nrows; r++) printf(" %17.3f %5.2fx", t[r][s], serial[s] / t[r][s]);
    printf("\n");
  }
  printf("%-10s %9s", "check", all_ok ? "ok" : "WRONG");
  for (int r = 0; r < nrows; r++) printf(" %17s %6s", ok[r] ? "ok" : "WRONG", "");
  printf("\nwaits overlap on any pool (gain ~ workers); CPU gains up to the free cores, on threads "
         "as on processes (C has no interpreter lock); processes pay to receive every picture\n");
  all_ok &= ok[0] && (nrows < 2 || ok[1]);
  free(pics), free(items), free(want), free(digests), free(want_d);
  int rc = mpx_finalize();
  return all_ok && rc == 0 ? 0 : 1;
}
