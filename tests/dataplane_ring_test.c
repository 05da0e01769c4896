/* dataplane_ring_test: a process worker's argument ring (dataplane.h): big arguments queued to
 * one worker go into a few segments the dispatcher reuses, each shared with that worker only.
 * Failure paths first:
 *  - a worker killed with ring arguments in flight: every future is right or MPX_EWORKER_LOST,
 *    its replacement never gets a segment the dead worker could reach (a new inode), and once the
 *    executor is gone no fd, no mapping of a segment and nothing in /dev/shm is left;
 *  - (hostile) a task that makes its argument's mapping writable and scribbles over it spoils
 *    nothing that comes after: the dispatcher rewrites a slot whole before each use;
 * then the working path:
 *  - many big arguments queued at once to one worker are all right, byte for byte, and reuse the
 *    ring: the segments made stay within MPX__SEG_ARG_SLOTS (a one-shot segment per queued task
 *    before the ring);
 *  - a big argument goes to an idle worker holding a segment it fits before an idle worker that
 *    would need a new one;
 *  - options.arg_reserve: refused on threads and out of range; else each worker's first segment
 *    is made when it starts, also for a replacement, and arguments up to its size use it; the
 *    process's pool holds a copy buffer per worker with its pages allocated (mincore).
 * Figures are never asserted (mpx-bench payload measures). */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"
#include "held.h"
#include "os/seg.h"

#define ARG_LEN (MPX__SEG_MIN + 4096 * 3 + 17) /* a segment, not a whole number of pages */

static unsigned char byte_of(uint64_t seq, size_t i) { return (unsigned char)(seq * 31 + i * 7); }

/* A big argument: its sequence number, then bytes that depend on it. */
static void fill(unsigned char *a, uint64_t seq) {
  memcpy(a, &seq, sizeof seq);
  for (size_t i = sizeof seq; i < ARG_LEN; i++) a[i] = byte_of(seq, i);
}

/* Check every byte of the argument and return its sequence number: a short task (under a
 * millisecond), so that the dispatcher queues several in the worker's window. */
static int ring_check(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  const unsigned char *a = arg;
  uint64_t seq;
  if (len != ARG_LEN) return mpx_task_fail(ctx, MPX_EINVAL, "argument of %zu bytes", len);
  memcpy(&seq, a, sizeof seq);
  for (size_t i = sizeof seq; i < len; i++)
    if (a[i] != byte_of(seq, i)) return mpx_task_fail(ctx, MPX_EPROTO, "byte %zu wrong", i);
  return mpx_buf_set(out, &seq, sizeof seq);
}
MPX_TASK(ring_check)

/* Make the argument's pages writable (a dishonest task: its worker may hold the segment
 * writable) and overwrite them; returns 1 when it could, 0 when the mapping refused. */
static int ring_scribble(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  uintptr_t lo = (uintptr_t)arg & ~(uintptr_t)4095, hi = ((uintptr_t)arg + len + 4095) & ~4095ul;
  int done = mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) == 0;
  if (done) memset((void *)lo, 0xee, hi - lo);
  return mpx_buf_set(out, &done, sizeof done);
}
MPX_TASK(ring_scribble)

/* The inode of the file the argument is mapped from (/proc/self/maps), 0 if none. */
static int ring_inode(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len;
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long long ino = 0;
  while (f && !ino && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    unsigned long long i;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %llu", &lo, &hi, &i) == 3 && (uintptr_t)arg >= lo &&
        (uintptr_t)arg < hi)
      ino = i;
  }
  if (f) fclose(f);
  return mpx_buf_set(out, &ino, sizeof ino);
}
MPX_TASK(ring_inode)

/* Nap for the int milliseconds given (a small argument), then say which worker ran it. */
static int ring_where(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  int ms = 0;
  if (len == sizeof ms) memcpy(&ms, arg, sizeof ms);
  struct timespec nap = {ms / 1000, (long)(ms % 1000) * 1000000L};
  if (ms > 0) nanosleep(&nap, NULL);
  int w = mpx_task_worker(ctx);
  return mpx_buf_set(out, &w, sizeof w);
}
MPX_TASK(ring_where)

static int ring_die(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  kill(getpid(), SIGKILL);
  return 0;
}
MPX_TASK(ring_die)

static mpx_executor *workers(int n) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(
      &ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES, .workers = n, .retries = 0}));
  return ex;
}

static mpx_executor *one_worker(void) { return workers(1); }

static int where(mpx_executor *ex, const void *arg, size_t len) {
  mpx_future *f;
  int w = -1;
  CHECK_OK(mpx_submit(ex, "ring_where", arg, len, &f));
  CHECK_OK(mpx_future_result_copy(f, &w, sizeof w, MPX_FOREVER));
  mpx_future_release(f);
  return w;
}

static unsigned long long inode_of_arg(mpx_executor *ex, const unsigned char *arg) {
  mpx_future *f;
  unsigned long long ino = 0;
  CHECK_OK(mpx_submit(ex, "ring_inode", arg, ARG_LEN, &f));
  CHECK_OK(mpx_future_result_copy(f, &ino, sizeof ino, MPX_FOREVER));
  mpx_future_release(f);
  return ino;
}

/* Ring arguments in flight when the worker dies; its replacement starts with a new ring. */
static void test_killed_with_ring(void) {
  int fds = count_fds(), shm = count_shm();
  mpx_executor *ex = one_worker();
  unsigned char *arg = malloc(ARG_LEN);
  CHECK(arg);
  fill(arg, 0);
  unsigned long long before = inode_of_arg(ex, arg);
  CHECK(before != 0);
  enum { N = 12 };
  mpx_future *fs[N];
  for (int i = 0; i < N; i++) {
    fill(arg, (uint64_t)i);
    CHECK_OK(mpx_submit(ex, i == 4 ? "ring_die" : "ring_check", arg, ARG_LEN, &fs[i]));
  }
  int lost = 0;
  for (int i = 0; i < N; i++) {
    uint64_t seq = UINT64_MAX;
    int rc = mpx_future_result_copy(fs[i], &seq, sizeof seq, MPX_FOREVER);
    CHECK(rc == MPX_OK || rc == MPX_EWORKER_LOST);
    CHECK(rc != MPX_OK || (i != 4 && seq == (uint64_t)i));
    lost += rc != MPX_OK;
    mpx_future_release(fs[i]);
  }
  CHECK(lost >= 1); /* ring_die's own task at least */
  fill(arg, 99);
  unsigned long long after = inode_of_arg(ex, arg);
  CHECK(after != 0);
  CHECK(after != before); /* the replacement never maps its predecessor's segment */
  mpx_executor_destroy(ex);
  free(arg);
  CHECK(count_fds() == fds);
  CHECK(count_maps("mpx-payload") == 0);
  CHECK(count_shm() == shm);
}

/* A task that scribbles over its argument's segment spoils nothing after it. */
static void test_scribbled_ring(void) {
  mpx_executor *ex = one_worker();
  unsigned char *arg = malloc(ARG_LEN);
  CHECK(arg);
  for (int round = 0; round < 3; round++) {
    mpx_future *s, *fs[6];
    int done = -1;
    fill(arg, 1000);
    CHECK_OK(mpx_submit(ex, "ring_scribble", arg, ARG_LEN, &s));
    CHECK_OK(mpx_future_result_copy(s, &done, sizeof done, MPX_FOREVER));
    CHECK(done == 0 || done == 1);
    mpx_future_release(s);
    for (int i = 0; i < 6; i++) {
      fill(arg, (uint64_t)(round * 10 + i));
      CHECK_OK(mpx_submit(ex, "ring_check", arg, ARG_LEN, &fs[i]));
    }
    for (int i = 0; i < 6; i++) {
      uint64_t seq = 0;
      CHECK_OK(mpx_future_result_copy(fs[i], &seq, sizeof seq, MPX_FOREVER));
      CHECK(seq == (uint64_t)(round * 10 + i));
      mpx_future_release(fs[i]);
    }
  }
  mpx_executor_destroy(ex);
  free(arg);
}

/* Many big arguments queued at once to one worker: all right, and the ring is reused. */
static void test_queued(void) {
  mpx_executor *ex = one_worker();
  enum { N = 40 };
  unsigned char *arg = malloc(ARG_LEN);
  CHECK(arg);
  mpx_future *fs[N];
  unsigned long made = mpx__seg_made();
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++) {
      fill(arg, (uint64_t)(round * N + i));
      CHECK_OK(mpx_submit(ex, "ring_check", arg, ARG_LEN, &fs[i]));
    }
    for (int i = 0; i < N; i++) {
      uint64_t seq = 0;
      CHECK_OK(mpx_future_result_copy(fs[i], &seq, sizeof seq, MPX_FOREVER));
      CHECK(seq == (uint64_t)(round * N + i));
      mpx_future_release(fs[i]);
    }
  }
  made = mpx__seg_made() - made;
  fprintf(stderr, "   %d big arguments to one worker: %lu segments made\n", 2 * N, made);
  CHECK(made <= MPX__SEG_ARG_SLOTS);
  mpx_executor_destroy(ex);
  free(arg);
}

/* A big argument goes to an idle worker that holds a segment it fits, before an idle one that
 * would need a new segment (even when the other worker answered last: the rotation starts there).
 */
static void test_warm_worker_first(void) {
  mpx_executor *ex = workers(2);
  unsigned char *arg = malloc(ARG_LEN);
  CHECK(arg);
  fill(arg, 7);
  int warm = where(ex, arg, ARG_LEN); /* its worker now holds a slot */
  CHECK(warm == 0 || warm == 1);
  int compared = 0;
  for (int round = 0; round < 6 && compared < 2; round++) {
    /* a short task and a long one at once: one each; the long one answers last */
    int nap[2] = {0, 150}, got[2] = {-1, -1};
    mpx_future *fs[2];
    for (int i = 0; i < 2; i++)
      CHECK_OK(mpx_submit(ex, "ring_where", &nap[i], sizeof nap[i], &fs[i]));
    for (int i = 0; i < 2; i++) {
      CHECK_OK(mpx_future_result_copy(fs[i], &got[i], sizeof got[i], MPX_FOREVER));
      mpx_future_release(fs[i]);
    }
    /* the rotation now starts at got[1]: compare only when that is the other worker (not both
     * tasks on one worker, on a slow start) */
    if (got[0] == got[1] || got[1] == warm) continue;
    compared++;
    unsigned long made = mpx__seg_made();
    CHECK(where(ex, arg, ARG_LEN) == warm);
    CHECK(mpx__seg_made() == made); /* its slot again: no new segment */
  }
  CHECK(compared > 0);
  mpx_executor_destroy(ex);
  free(arg);
}

/* Whether every page of [p, p + len) is resident (mincore): a buffer made ready, not one whose
 * pages the next write would still have to allocate. */
static bool resident(const void *p, size_t len) {
  size_t pages = (len + 4095) / 4096;
  unsigned char *vec = malloc(pages);
  CHECK(vec);
  CHECK(mincore((void *)p, len, vec) == 0);
  bool all = true;
  for (size_t i = 0; i < pages; i++) all &= (vec[i] & 1) != 0;
  free(vec);
  return all;
}

/* The pool made ready (mpx__seg_pool_warm, used by arg_reserve): that many idle buffers of the
 * size, distinct, every page allocated; the next one beyond them is a new mapping, not. */
static void test_pool_warm(void) {
  size_t len = ((size_t)3 << 20) + 5; /* a size no earlier case left in the pool */
  CHECK(mpx__seg_pool_warm(len, 3) == 3);
  void *b[4];
  for (int i = 0; i < 4; i++) {
    b[i] = mpx__seg_pool_alloc(len);
    CHECK(b[i] && ((uintptr_t)b[i] & 4095) == 0);
    for (int k = 0; k < i; k++) CHECK(b[k] != b[i]);
  }
  for (int i = 0; i < 3; i++) CHECK(resident(b[i], len));
  CHECK(!resident(b[3], len));
  for (int i = 0; i < 4; i++) mpx__seg_pool_free(b[i], len);
  CHECK(mpx__seg_pool_warm(len, 0) == 0 && mpx__seg_pool_warm(100, 3) == 0); /* nothing asked */
}

/* options.arg_reserve: refused where it cannot apply or is out of range; else each worker's
 * first argument segment is made when it starts (before any big argument), any argument up to
 * its size uses it (here one under half of it, which a slot made on demand would not take), a
 * replacement gets its own, and nothing else is made for arguments one at a time. */
static void test_reserved(void) {
  mpx_executor *ex;
  CHECK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_THREADS,
                                                .arg_reserve = 4 << 20}) == MPX_EPERM);
  CHECK(strstr(mpx_errmsg(), "arg_reserve") != NULL);
  CHECK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                .arg_reserve = 4096}) == MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "arg_reserve") != NULL);
  CHECK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                .max_payload = 1 << 20,
                                                .arg_reserve = 2 << 20}) == MPX_EINVAL);
  unsigned long made = mpx__seg_made();
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_PROCESSES,
                                                   .workers = 1, .arg_reserve = 2 * ARG_LEN + 1}));
  int nap = 0;
  CHECK(where(ex, &nap, sizeof nap) == 0); /* started (READY): its segment is made */
  CHECK(mpx__seg_made() - made == 1);
  void *copy = mpx__seg_pool_alloc(2 * ARG_LEN + 1); /* and a copy buffer per worker is ready */
  CHECK(copy && resident(copy, 2 * ARG_LEN + 1));
  mpx__seg_pool_free(copy, 2 * ARG_LEN + 1);
  unsigned char *arg = malloc(ARG_LEN);
  CHECK(arg);
  for (uint64_t i = 0; i < 6; i++) {
    mpx_future *f;
    uint64_t seq = UINT64_MAX;
    fill(arg, i);
    CHECK_OK(mpx_submit(ex, "ring_check", arg, ARG_LEN, &f));
    CHECK_OK(mpx_future_result_copy(f, &seq, sizeof seq, MPX_FOREVER));
    CHECK(seq == i);
    mpx_future_release(f);
  }
  CHECK(mpx__seg_made() - made == 1); /* every one went through the reserved segment */
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "ring_die", NULL, 0, &f));
  CHECK(mpx_future_result(f, MPX_FOREVER, NULL, NULL) == MPX_EWORKER_LOST);
  mpx_future_release(f);
  CHECK(where(ex, &nap, sizeof nap) == 0); /* the replacement started, with its own */
  CHECK(mpx__seg_made() - made == 2);
  mpx_executor_destroy(ex);
  free(arg);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  if (NO_FORK) {
    printf("dataplane_ring_test: skipped (no fork)\n");
    return mpx_finalize();
  }
  RUN(test_killed_with_ring);
  RUN(test_scribbled_ring);
  RUN(test_queued);
  RUN(test_warm_worker_first);
  RUN(test_pool_warm);
  RUN(test_reserved);
  printf("dataplane_ring_test: ok\n");
  return mpx_finalize();
}
