/* leader_test: node leaders on the MPI backend (transport/mpi/mpi_leader.c), on virtual nodes
 * (MPX_TEST_VNODES=K, MPX_MPI_LEADERS=1, set by ctest) so that one machine has several nodes.
 *   nodes K    (mpirun -np N) rank 0 says it serves K leaders (its info line at the executor's
 *              end, caught by a logger); 2000 tasks and a map give the right answers and every
 *              rank ran some (the members get their work through their leader); executors in
 *              turn; then skew: one 2.5 s task first, then 80 naps of 10 ms: the last nap ends
 *              before the long task (leaders take back what waits behind it and steal from each
 *              other), and naps ran on every node
 *   kill R     (mpirun -np N) a task SIGKILLs rank R (a leader) mid-run: the job must end; the
 *              script leader_kill.sh checks the status, the time and that R is named
 * Timings are printed, never asserted against a speed: the skew bound is an order (the naps end
 * before the long task), which holds with room to spare on a loaded machine. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpi.h>

#include "check.h"

static int world_rank(void) {
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  return r ? atoi(r) : -1;
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* one clock for every process of the machine */
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct done_t {
  int64_t rank;
  int64_t x;
  double end;
} done_t;

/* Argument: {x, seconds}: nap, then answer {rank, x * x, end time}. */
static int nap_sq(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  double a[2];
  if (len != sizeof a) return mpx_task_fail(ctx, MPX_EINVAL, "want {x, seconds}");
  memcpy(a, arg, sizeof a);
  if (a[1] > 0) {
    struct timespec ts = {(time_t)a[1], (long)((a[1] - (double)(time_t)a[1]) * 1e9)};
    while (nanosleep(&ts, &ts)) {
    }
  }
  done_t d = {world_rank(), (int64_t)a[0] * (int64_t)a[0], mono()};
  return mpx_buf_set(out, &d, sizeof d);
}
MPX_TASK(nap_sq)

static int die_on(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)out;
  int r = -1;
  if (len == sizeof r) memcpy(&r, arg, sizeof r);
  if (world_rank() == r) kill(getpid(), SIGKILL);
  usleep(2000);
  return 0;
}
MPX_TASK(die_on)

static int sq_item(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  long x;
  if (len != sizeof x) return MPX_EINVAL;
  memcpy(&x, arg, sizeof x);
  x *= x;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(sq_item)

/* ---- rank 0's line at an executor's end ----------------------------------------------------- */

static char last_link[512];
static void catch_log(int level, const char *msg, void *user) {
  (void)user;
  if (strstr(msg, "mpi link:")) snprintf(last_link, sizeof last_link, "%s", msg);
  if (level <= MPX_LOG_WARN) fprintf(stderr, "log: %s\n", msg);
}

static int size_of_job(void) {
  const char *s = getenv("OMPI_COMM_WORLD_SIZE");
  return s ? atoi(s) : 0;
}

/* ---- nodes K -------------------------------------------------------------------------------- */

static void run_round(mpx_executor *ex, int n, bool *ran) {
  mpx_future **fs = calloc((size_t)n, sizeof *fs);
  CHECK(fs != NULL);
  for (int i = 0; i < n; i++) {
    double a[2] = {i, i % 50 == 0 ? 0.002 : 0};
    CHECK_OK(mpx_submit(ex, "nap_sq", a, sizeof a, &fs[i]));
  }
  for (int i = 0; i < n; i++) {
    done_t d;
    CHECK_OK(mpx_future_result_copy(fs[i], &d, sizeof d, 60));
    CHECK(d.x == (int64_t)i * i);
    if (d.rank >= 0 && d.rank < 4096) ran[d.rank] = true;
    mpx_future_release(fs[i]);
  }
  free(fs);
}

static void skew(mpx_executor *ex, int size, int nodes) {
  enum { SHORTS = 80 };
  mpx_future *fl, *fs[SHORTS];
  double a[2] = {7, 2.5};
  double t0 = mono();
  CHECK_OK(mpx_submit(ex, "nap_sq", a, sizeof a, &fl));
  for (int i = 0; i < SHORTS; i++) {
    double b[2] = {i, 0.010};
    CHECK_OK(mpx_submit(ex, "nap_sq", b, sizeof b, &fs[i]));
  }
  done_t dl, d;
  double last = 0;
  bool node_ran[64] = {0};
  for (int i = 0; i < SHORTS; i++) {
    CHECK_OK(mpx_future_result_copy(fs[i], &d, sizeof d, 60));
    CHECK(d.x == (int64_t)i * i);
    if (d.end > last) last = d.end;
    if (d.rank >= 0 && d.rank < size) node_ran[d.rank * nodes / size] = true;
    mpx_future_release(fs[i]);
  }
  CHECK_OK(mpx_future_result_copy(fl, &dl, sizeof dl, 60));
  mpx_future_release(fl);
  fprintf(stderr,
          "leader_test skew: naps done %.2f s after the start, the long task at %.2f s "
          "(rank %lld)\n",
          last - t0, dl.end - t0, (long long)dl.rank);
  CHECK(last < dl.end); /* nothing waited behind the long task */
  for (int k = 0; k < nodes && k < 64; k++) CHECK(node_ran[k]);
}

static void run_nodes(int nodes) {
  int size = size_of_job();
  CHECK(size > nodes && size <= 4096);
  mpx_log_set(catch_log, NULL);
  mpx_log_set_level(MPX_LOG_INFO);
  bool *ran = calloc((size_t)size, sizeof *ran);
  CHECK(ran != NULL);
  for (int round = 0; round < 2; round++) { /* executors in turn over the same leaders */
    mpx_executor *ex;
    CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
    run_round(ex, 2000, ran);
    enum { N = 5000 };
    static long in[N], out[N];
    for (long i = 0; i < N; i++) in[i] = i - 77;
    CHECK_OK(mpx_map(ex, "sq_item", in, sizeof *in, N, out, sizeof *out, NULL));
    for (long i = 0; i < N; i++) CHECK(out[i] == in[i] * in[i]);
    if (round == 1) skew(ex, size, nodes);
    last_link[0] = '\0';
    CHECK_OK(mpx_executor_destroy(ex));
    fprintf(stderr, "leader_test: %s\n", last_link);
    char want[64];
    snprintf(want, sizeof want, "%d workers (node leaders)", nodes);
    CHECK(strstr(last_link, want) != NULL); /* rank 0 spoke to one rank per node */
  }
  for (int r = 1; r < size; r++) {
    if (!ran[r]) fprintf(stderr, "leader_test: rank %d ran nothing\n", r);
    CHECK(ran[r]);
  }
  free(ran);
  /* workers = 1 asks for one task at a time: one leader, one thread, no stealing */
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI, .workers = 1}));
  CHECK(mpx_executor_workers(ex) == 1);
  run_round(ex, 300, (bool[4096]){0});
  CHECK_OK(mpx_executor_destroy(ex));
}

static void run_kill(int victim) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
  enum { N = 3000 };
  static mpx_future *fs[N];
  for (int i = 0; i < N; i++) CHECK_OK(mpx_submit(ex, "die_on", &victim, sizeof victim, &fs[i]));
  for (int i = 0; i < N; i++) mpx_wait(&fs[i], 1, MPX_ALL_COMPLETED, MPX_FOREVER);
  fprintf(stderr, "leader_test kill: the job survived the loss of rank %d (it must not)\n", victim);
  exit(3);
}

int main(int argc, char **argv) {
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  CHECK_RC(role, MPX_MAIN);
  const char *mode = argc > 1 ? argv[1] : "";
  int k = argc > 2 ? atoi(argv[2]) : 0;
  if (!strcmp(mode, "nodes") && k > 0)
    run_nodes(k);
  else if (!strcmp(mode, "kill") && k > 0)
    run_kill(k);
  else {
    fprintf(stderr, "usage: leader_test nodes K | kill RANK\n");
    return 2;
  }
  fprintf(stderr, "leader_test %s %d: all passed\n", mode, k);
  return mpx_finalize();
}
