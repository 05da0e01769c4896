/* demo_lock_file: a pool of workers appending lines to one file, with a Lock around each line.
 * Each line is written in three write() calls (as a program that prints a line in pieces does),
 * so two workers writing at once can cut into each other's lines; holding an mpx Lock from the
 * first piece to the last keeps every line whole. The Lock lives in shared memory made before
 * mpx_init (the fork rule: process workers are forked by mpx's fork server, started in
 * mpx_init, and see what existed then), so threads and forked processes take the same Lock.
 *
 * Rows: a pool of threads with the Lock, a pool of processes with the Lock, and the processes
 * without it (its broken lines are counted, not judged: on a quiet machine there may be none).
 * Under mpirun the threads row only: ranks share no memory, so a Lock cannot span them.
 * The check (the rows with the Lock): the file has exactly tasks x lines lines, each intact,
 * and each task's lines in order.
 *   demo_lock_file [--tasks N] [--lines L] [--workers W] [--quick] */
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "demo_common.h"

static const char *usage =
    "usage: demo_lock_file [--tasks N] [--lines L] [--workers W] [--quick]\n"
    "  N tasks (default 8; --quick: 4) each append L lines (default 200; --quick: 50) to one\n"
    "  file, on a pool of W workers (default 4) of threads and of processes, each line under an\n"
    "  mpx Lock; then the processes without the Lock. Checks every line of the locked runs.\n";

static mpx_lock *lock; /* made before mpx_init: shared with every worker */
static char path[256]; /* the file, also known before mpx_init */

typedef struct job {
  long task, lines;
  int locked;
} job;

static void put(int fd, const char *s) { /* one write() of s; a short write is retried */
  size_t n = strlen(s), done = 0;
  while (done < n) {
    ssize_t w = write(fd, s + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    done += (size_t)w;
  }
}

/* The task: append the job's lines, each in three pieces, each line under the Lock if asked. */
static int write_lines(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  job j;
  if (len != sizeof j) return mpx_task_fail(ctx, MPX_EINVAL, "want a job");
  memcpy(&j, arg, sizeof j);
  int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return mpx_task_fail(ctx, MPX_ESYS, "open %s: %s", path, strerror(errno));
  char head[64], body[96];
  for (long i = 0; i < j.lines; i++) {
    if (j.locked) {
      int rc = mpx_lock_acquire(lock, true, MPX_FOREVER); /* EOWNERDEAD: held, a holder died */
      if (rc && rc != MPX_EOWNERDEAD) {
        close(fd);
        return mpx_task_fail(ctx, rc, "lock: %s", mpx_strerror(rc));
      }
    }
    snprintf(head, sizeof head, "task %03ld line %04ld ", j.task, i);
    snprintf(body, sizeof body, "pid %ld %s", (long)getpid(),
             "........................................");
    put(fd, head);
    sched_yield(); /* let another writer in, if nothing stops it */
    put(fd, body);
    put(fd, "\n");
    if (j.locked) mpx_lock_release(lock);
  }
  close(fd);
  return 0;
}
MPX_TASK(write_lines)

/* Read the file back: lines in total, and those not intact or out of order. */
static void check_file(long tasks, long lines, long *total, long *broken) {
  FILE *f = fopen(path, "r");
  long *next = calloc((size_t)tasks, sizeof *next);
  char buf[512];
  *total = *broken = 0;
  while (f && next && fgets(buf, sizeof buf, f)) {
    long t, l, pid;
    char dots[64];
    int end = 0;
    (*total)++;
    bool ok = sscanf(buf, "task %3ld line %4ld pid %ld %40[.]%n", &t, &l, &pid, dots, &end) == 4 &&
              strlen(dots) == 40 && buf[end] == '\n' && buf[end + 1] == '\0' && t >= 0 &&
              t < tasks && l == next[t];
    if (ok)
      next[t]++;
    else
      (*broken)++;
  }
  for (long t = 0; next && t < tasks && *broken == 0; t++)
    *broken += next[t] != lines; /* missing */
  if (f) fclose(f);
  free(next);
}

int main(int argc, char **argv) {
  demo_line_buffered();
  bool quick = demo_quick(argc, argv);
  long tasks = quick ? 4 : 8, lines = quick ? 50 : 200, workers = 4;
  const demo_opt opts[] = {
      {"--tasks", .l = &tasks, .lo = 1, .hi = 999},
      {"--lines", .l = &lines, .lo = 1, .hi = 9999},
      {"--workers", .l = &workers, .lo = 1, .hi = 256},
  };
  int parsed = demo_parse("demo_lock_file", usage, argc, argv, opts, sizeof opts / sizeof *opts);
  if (parsed >= 0) return parsed;
  bool mpi_job = demo_mpi_job();
  /* Before mpx_init on a plain run: the Lock and the file every worker will use. Under mpirun
   * after it, on rank 0 only (its threads are the only workers that can share a Lock). */
  int init = mpi_job ? demo_init(&argc, &argv) : 0;
  if (init) return init > 0 ? 0 : 1;
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/mpx_lock_file.XXXXXX",
           tmp && *tmp && strlen(tmp) < 200 ? tmp : "/tmp");
  int fd = mkstemp(path);
  int rc = fd < 0 ? MPX_ESYS : mpx_lock_create(&lock);
  if (rc) {
    fprintf(stderr, "demo_lock_file: no file or lock: %s\n",
            fd < 0 ? strerror(errno) : mpx_errmsg());
    return 1;
  }
  close(fd);
  init = mpi_job ? 0 : demo_init(&argc, &argv);
  if (init) return init > 0 ? 0 : 1;

  printf("%ld tasks x %ld lines appended to %s, each line in 3 write() calls\n", tasks, lines,
         path);
  printf("%-22s %8s %9s %7s %7s  %s\n", "row", "workers", "seconds", "lines", "broken", "check");
  static const struct {
    mpx_backend b;
    int locked;
    const char *name;
  } plan[] = {
      {MPX_BACKEND_THREADS, 1, "threads + Lock"},
      {MPX_BACKEND_PROCESSES, 1, "processes + Lock"},
      {MPX_BACKEND_PROCESSES, 0, "processes, no lock"},
  };
  job *jobs = malloc((size_t)tasks * sizeof *jobs);
  bool all_ok = jobs != NULL;
  for (size_t p = 0; jobs && p < sizeof plan / sizeof plan[0]; p++) {
    if (mpi_job && plan[p].b != MPX_BACKEND_THREADS) continue;
    mpx_executor *ex = demo_executor(plan[p].b, (int)workers, 0);
    if (!ex || truncate(path, 0)) {
      all_ok = false;
      if (ex) mpx_executor_destroy(ex);
      continue;
    }
    for (long t = 0; t < tasks; t++) jobs[t] = (job){t, lines, plan[p].locked};
    mpx_map_status st = {0};
    double t0 = demo_now();
    rc = mpx_map(ex, "write_lines", jobs, sizeof *jobs, (size_t)tasks, NULL, 0,
                 &(mpx_map_opts){.chunksize = 1, .status = &st});
    double s = demo_now() - t0;
    if (rc) fprintf(stderr, "map: %s: %s\n", mpx_strerror(rc), st.message);
    long total, broken;
    check_file(tasks, lines, &total, &broken);
    bool ok = rc == 0 && total == tasks * lines && broken == 0;
    if (plan[p].locked) all_ok &= ok;
    printf("%-22s %8d %9.3f %7ld %7ld  %s\n", plan[p].name, mpx_executor_workers(ex), s, total,
           broken, plan[p].locked ? (ok ? "ok" : "WRONG") : "(not checked)");
    mpx_executor_destroy(ex);
  }
  if (mpi_job) printf("%-22s skipped: ranks share no memory, so no Lock spans them\n", "mpi");
  printf("with the Lock every line is whole; without it, lines written in pieces may interleave\n");
  free(jobs);
  unlink(path);
  rc = mpx_finalize();
  mpx_lock_destroy(lock);
  return all_ok && rc == 0 ? 0 : 1;
}
