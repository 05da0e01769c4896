/* mpx-demo: the main job. One futures program, unchanged, on every backend built into this mpx:
 * it counts the primes below a limit by submitting one task per block and collecting them with
 * as_completed, then squares a million numbers with map, and prints what it did and how fast,
 * next to the same work done serially.
 *   mpx-demo [--limit N] [--backend threads|processes|mpi]   plain run: threads, then processes
 *   mpirun -np 3 mpx-demo                                   rank 0 drives 2 worker ranks
 * --help prints the usage to stdout (exit 0); an unknown option or value is refused with exit 2;
 * stdout is line-buffered, so a log shows each row as soon as it is done. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/mpx.h>

/* A block of numbers to test: [lo, hi). */
typedef struct block {
  long lo, hi;
} block;

static bool is_prime(long n) {
  if (n < 2) return false;
  for (long d = 2; d * d <= n; d++)
    if (n % d == 0) return false;
  return true;
}

/* The task: count the primes in a block. Arguments and results are plain bytes. */
static int count_primes(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len != sizeof(block)) return mpx_task_fail(ctx, MPX_EINVAL, "want a block, got %zu bytes", len);
  block b;
  memcpy(&b, arg, sizeof b);
  long n = 0;
  for (long x = b.lo; x < b.hi; x++) n += is_prime(x);
  return mpx_buf_set(out, &n, sizeof n);
}
MPX_TASK(count_primes)

static int square(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len;
  long x;
  memcpy(&x, arg, sizeof x);
  x *= x;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(square)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { BLOCKS = 64, MAP_N = 1000000 };

/* Count primes below `limit` on `ex`; returns the count or -1. */
static long primes_on(mpx_executor *ex, long limit) {
  mpx_future *fs[BLOCKS];
  block bs[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    bs[i] = (block){limit * i / BLOCKS, limit * (i + 1) / BLOCKS};
    int rc = mpx_submit(ex, "count_primes", &bs[i], sizeof bs[i], &fs[i]);
    if (rc) {
      fprintf(stderr, "submit: %s\n", mpx_strerror(rc));
      return -1;
    }
  }
  mpx_as_completed *it;
  if (mpx_as_completed_create(fs, BLOCKS, MPX_FOREVER, &it)) return -1;
  long total = 0;
  mpx_future *f;
  while (mpx_as_completed_next(it, &f) == MPX_OK) { /* in the order they finish */
    long n;
    int rc = mpx_future_result_copy(f, &n, sizeof n, MPX_FOREVER);
    if (rc) {
      const char *msg = "";
      mpx_future_exception(f, 0, NULL, &msg);
      fprintf(stderr, "a block failed: %s: %s\n", mpx_strerror(rc), msg);
      total = -1;
      break;
    }
    total += n;
  }
  mpx_as_completed_destroy(it);
  for (int i = 0; i < BLOCKS; i++) mpx_future_release(fs[i]);
  return total;
}

static int run(mpx_backend backend, long limit, long serial_count, double serial_s) {
  mpx_executor *ex;
  double t0 = now();
  int rc = mpx_executor_create(&ex, &(mpx_options){.backend = backend});
  if (rc && backend == MPX_BACKEND_MPI) { /* not an MPI job: say so and go on */
    printf("%-10s skipped: %s\n", mpx_backend_name(backend), *mpx_errmsg() ? mpx_errmsg() : mpx_strerror(rc));
    return 0;
  }
  if (rc) {
    fprintf(stderr, "%s: cannot start: %s %s\n", mpx_backend_name(backend), mpx_strerror(rc),
            mpx_errmsg());
    return 1;
  }
  double t_start = now() - t0;
  t0 = now();
  long count = primes_on(ex, limit);
  double t_primes = now() - t0;
  long *xs = malloc(MAP_N * sizeof *xs), *ys = malloc(MAP_N * sizeof *ys);
  for (long i = 0; i < MAP_N; i++) xs[i] = i;
  t0 = now();
  rc = mpx_map(ex, "square", xs, sizeof *xs, MAP_N, ys, sizeof *ys, NULL);
  double t_map = now() - t0;
  bool map_ok = rc == 0 && ys[MAP_N - 1] == (long)(MAP_N - 1) * (MAP_N - 1) && ys[12345] == 12345L * 12345;
  printf("%-10s %2d workers: started in %.3f s; %ld primes below %ld in %.3f s (%.2fx serial, %s); "
         "map of %d squares in %.3f s (%.1f M items/s, %s)\n",
         mpx_backend_name(backend), mpx_executor_workers(ex), t_start, count, limit, t_primes,
         serial_s / t_primes, count == serial_count ? "right" : "WRONG", MAP_N, t_map,
         MAP_N / t_map / 1e6, map_ok ? "right" : "WRONG");
  free(xs);
  free(ys);
  mpx_executor_destroy(ex);
  return count == serial_count && map_ok ? 0 : 1;
}

static const char *usage =
    "usage: mpx-demo [--limit N] [--backend threads|processes|mpi]\n"
    "  Counts the primes below N (default 3000000, at least 64, at most 100000000) in 64 tasks,\n"
    "  then maps a million squares: serially, then on threads and processes (a plain run), on\n"
    "  the MPI ranks (under mpirun), or on the one --backend named. Exit 0 when all is right.\n";

/* A bad command line: why, and the usage, on stderr; exit code 2. */
static int bad_usage(const char *what, const char *arg) {
  fprintf(stderr, "mpx-demo: %s '%s'\n%s", what, arg, usage);
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a file or a pipe */
  /* The command line is read before mpx_init, so that a bad one ends every rank alike. */
  long limit = 3000000;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(argv[i], "--limit") || !strcmp(argv[i], "--backend")) {
      if (i + 1 >= argc) return bad_usage("a value is missing after", argv[i]);
      const char *v = argv[++i];
      if (argv[i - 1][2] == 'b') {
        if (strcmp(v, "threads") && strcmp(v, "processes") && strcmp(v, "mpi"))
          return bad_usage("--backend wants threads, processes or mpi, not", v);
        only = v;
      } else {
        char *end;
        errno = 0;
        limit = strtol(v, &end, 10);
        if (errno || end == v || *end || limit < BLOCKS || limit > 100000000)
          return bad_usage("--limit wants an integer in 64..100000000, not", v);
      }
    } else
      return bad_usage("unknown option", argv[i]);
  }
  int role = mpx_init(&argc, &argv); /* MPI worker ranks serve inside and return here */
  if (role == MPX_WORKER) return 0;
  if (role < 0) {
    fprintf(stderr, "mpx_init: %s %s\n", mpx_strerror(role), mpx_errmsg());
    return 1;
  }
  printf("mpx %s: counting primes below %ld in %d tasks, then a map of %d squares\n",
         mpx_version(), limit, BLOCKS, MAP_N);
  double t0 = now();
  long serial = 0;
  for (long x = 0; x < limit; x++) serial += is_prime(x);
  double serial_s = now() - t0;
  printf("%-10s             %ld primes in %.3f s\n", "serial", serial, serial_s);
  int rc = 0;
  mpx_executor *probe;
  /* Under mpirun, AUTO is MPI: run there. Otherwise every backend that runs on one node. */
  bool mpi_job = mpx_executor_create(&probe, NULL) == 0 &&
                 mpx_executor_backend(probe) == MPX_BACKEND_MPI;
  if (probe) mpx_executor_destroy(probe);
  static const struct { const char *name; mpx_backend b; } all[] = {
      {"threads", MPX_BACKEND_THREADS}, {"processes", MPX_BACKEND_PROCESSES}, {"mpi", MPX_BACKEND_MPI}};
  for (int i = 0; i < 3; i++) {
    if (only ? strcmp(only, all[i].name) != 0 : (mpi_job != (all[i].b == MPX_BACKEND_MPI)))
      continue;
    rc |= run(all[i].b, limit, serial, serial_s);
  }
  mpx_finalize();
  return rc;
}
