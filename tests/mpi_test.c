/* mpi_test: the MPI backend under mpirun (argv[1] picks the mode).
 *   job         (mpirun -np >= 3) AUTO picks MPI; errors carry rank and host; skewed durations
 *               are balanced over ranks; shutdown with pending work (wait, cancel_futures);
 *               results of 1 MiB and 64 MiB; hybrid slots; refused options; executors in turn
 *   hybrid      (mpirun -np 2) one worker rank running 2 tasks at once on its threads
 *               (two tasks that wait for each other)
 *   collective  (mpirun -np 4) MPI initialised by the program, mpx_comm_executor over two halves
 *               of MPI_COMM_WORLD split at once
 *   nompi       (no mpirun, MPX_MPI=0) AUTO picks threads; MPX_BACKEND_MPI fails clearly (without
 *               MPX_MPI=0 it would spawn its workers: cluster_test spawn)
 *   kill        (mpirun -np 3) a task SIGKILLs worker rank 1 mid-run: the job must end (the
 *               script mpi_kill.sh checks the exit status, the time and the message)
 * Timings are printed, never asserted: the checks are of behaviour (which ranks and threads ran
 * what), so that a loaded machine cannot fail them. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpi.h>

#include "check.h"

/* ---- tasks --------------------------------------------------------------------------------- */

static int world_rank(void) {
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  return r ? atoi(r) : -1;
}

typedef struct where_t {
  int32_t rank;
  int32_t pid;
  int64_t tid;
} where_t;

static void nap_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&ts, &ts)) {
  }
}

/* Sleep for the argument's seconds (if any); answer where it ran. */
static int where(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  double s = 0;
  if (len == sizeof s) memcpy(&s, arg, sizeof s);
  if (s > 0) nap_s(s);
  where_t w = {world_rank(), (int32_t)getpid(), (int64_t)syscall(SYS_gettid)};
  return mpx_buf_set(out, &w, sizeof w);
}
MPX_TASK(where)

/* Arrive, then wait (up to 30 s) until `want` tasks of this process have arrived: answers 1 when
 * they did, that is when `want` of them ran at the same time in this rank, else 0. */
static atomic_int arrived;
static int rendezvous(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  int want = 2;
  if (len == sizeof want) memcpy(&want, arg, sizeof want);
  int seen = atomic_fetch_add(&arrived, 1) + 1;
  for (int i = 0; i < 30000 && seen < want; i++) {
    nap_s(0.001);
    seen = atomic_load(&arrived);
  }
  int met = seen >= want;
  return mpx_buf_set(out, &met, sizeof met);
}
MPX_TASK(rendezvous)

static int boom(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  return mpx_task_fail(ctx, MPX_EINVAL, "boom on purpose");
}
MPX_TASK(boom)

/* Echo the argument, or with an 8-byte argument n, make n bytes (i * 31 + 7). */
static int blob(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  if (len != sizeof(uint64_t)) return mpx_buf_set(out, arg, len);
  uint64_t n;
  memcpy(&n, arg, sizeof n);
  unsigned char *p;
  int rc = mpx_buf_reserve(out, (size_t)n, (void **)&p);
  if (rc) return rc;
  for (uint64_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + 7);
  return 0;
}
MPX_TASK(blob)

static int die_on_rank1(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  if (world_rank() == 1) {
    nap_s(0.2);
    kill(getpid(), SIGKILL);
  }
  nap_s(0.05);
  return 0;
}
MPX_TASK(die_on_rank1)

/* ---- helpers ------------------------------------------------------------------------------- */

static int world_size(void) {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

static where_t where_of(mpx_future *f) {
  where_t w = {-1, -1, -1};
  CHECK_OK(mpx_future_result_copy(f, &w, sizeof w, MPX_FOREVER));
  return w;
}

static mpx_future *submit_where(mpx_executor *ex, double s) {
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "where", &s, sizeof s, &f));
  return f;
}

/* ---- job mode ------------------------------------------------------------------------------ */

static void test_auto(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, NULL));
  CHECK(mpx_executor_backend(ex) == MPX_BACKEND_MPI);
  CHECK(mpx_executor_workers(ex) >= world_size() - 1); /* at least one thread per worker rank */
  mpx_future *f = submit_where(ex, 0);
  where_t w = where_of(f);
  mpx_future_release(f);
  CHECK(w.rank >= 1 && w.rank < world_size() && w.pid != getpid());
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_errors(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "boom", NULL, 0, &f));
  int code = 0;
  const char *msg = NULL;
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, &msg));
  char host[64];
  gethostname(host, sizeof host);
  host[sizeof host - 1] = '\0';
  fprintf(stderr, "   error: %s\n", msg);
  CHECK(code == MPX_EINVAL && strstr(msg, "boom on purpose") && strstr(msg, "(rank ") &&
        strstr(msg, host));
  mpx_future_release(f);
  /* what MPI cannot honour is refused, clearly */
  mpx_executor *bad;
  CHECK_RC(mpx_executor_create(&bad, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                    .task_timeout = 1}), MPX_EPERM);
  CHECK(bad == NULL && strstr(mpx_errmsg(), "task_timeout"));
  double s = 0;
  CHECK_RC(mpx_submit_task(ex, NULL, &s, sizeof s, NULL, &f), MPX_EINVAL);
  const mpx_task *t;
  CHECK_OK(mpx_task_find("where", &t));
  CHECK_RC(mpx_submit_task(ex, t, &s, sizeof s, &(mpx_submit_opts){.retries = -1, .timeout = 1},
                           &f), MPX_EPERM);
  /* one executor at a time on the job's ranks */
  CHECK_RC(mpx_executor_create(&bad, &(mpx_options){.backend = MPX_BACKEND_MPI}), MPX_ESTATE);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* Ten long tasks first, then forty short ones, one thread per rank: the long ones must spread. */
static void test_skewed(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .threads_per_rank = 1}));
  int ranks = world_size() - 1;
  CHECK(mpx_executor_workers(ex) == ranks);
  enum { LONG = 10, SHORT = 40 };
  mpx_future *fs[LONG + SHORT];
  double t0 = check_now();
  for (int i = 0; i < LONG + SHORT; i++) fs[i] = submit_where(ex, i < LONG ? 0.06 : 0.002);
  int long_on[64] = {0}, any_on[64] = {0};
  for (int i = 0; i < LONG + SHORT; i++) {
    where_t w = where_of(fs[i]);
    CHECK(w.rank >= 1 && w.rank < 64);
    if (i < LONG) long_on[w.rank]++;
    any_on[w.rank]++;
    mpx_future_release(fs[i]);
  }
  double took = check_now() - t0, serial = LONG * 0.06 + SHORT * 0.002;
  fprintf(stderr, "   %d ranks: %.3f s for %.3f s of work; long tasks per rank:", ranks, took,
          serial);
  for (int r = 1; r <= ranks; r++) fprintf(stderr, " %d", long_on[r]);
  fprintf(stderr, "\n");
  for (int r = 1; r <= ranks && ranks <= 4; r++)
    CHECK(any_on[r] > 0 && long_on[r] >= LONG / ranks - 2); /* no rank did all the long ones */
  /* the long tasks spread: more than one rank ran some (the timing is printed, never asserted) */
  int ranks_with_long = 0;
  for (int r = 1; r <= ranks; r++) ranks_with_long += long_on[r] > 0;
  CHECK(ranks == 1 || ranks_with_long >= 2);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_shutdown_pending(void) {
  /* wait = true runs everything queued */
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
  enum { N = 300 };
  mpx_future *fs[N];
  for (int i = 0; i < N; i++) fs[i] = submit_where(ex, 0.0005);
  CHECK_OK(mpx_executor_shutdown(ex, true, false));
  for (int i = 0; i < N; i++) {
    CHECK(mpx_future_state_get(fs[i]) == MPX_FINISHED);
    mpx_future_release(fs[i]);
  }
  CHECK_OK(mpx_executor_destroy(ex));

  /* cancel_futures: what was not sent is cancelled, what was sent finishes; nothing is lost */
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
  for (int i = 0; i < N; i++) fs[i] = submit_where(ex, 0.01);
  nap_s(0.03);
  CHECK_OK(mpx_executor_shutdown(ex, false, true));
  int cancelled = 0, finished = 0;
  for (int i = 0; i < N; i++) {
    CHECK_OK(mpx_wait(&fs[i], 1, MPX_ALL_COMPLETED, 30));
    int s = mpx_future_state_get(fs[i]);
    CHECK(s == MPX_FINISHED || s == MPX_CANCELLED);
    cancelled += s == MPX_CANCELLED;
    finished += s == MPX_FINISHED;
    mpx_future_release(fs[i]);
  }
  fprintf(stderr, "   cancel_futures: %d finished, %d cancelled\n", finished, cancelled);
  CHECK(cancelled > N / 2 && finished >= 1);
  CHECK_OK(mpx_executor_destroy(ex));
  /* the ranks serve the next executor */
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
  mpx_future *f = submit_where(ex, 0);
  CHECK(where_of(f).rank >= 1);
  mpx_future_release(f);
  CHECK_OK(mpx_executor_destroy(ex));
}

static void test_large(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}));
  size_t sizes[] = {(size_t)1 << 20, (size_t)64 << 20};
  for (size_t k = 0; k < 2; k++) {
    uint64_t n = sizes[k];
    mpx_future *made, *echoed;
    CHECK_OK(mpx_submit(ex, "blob", &n, sizeof n, &made)); /* small argument, large result */
    unsigned char *big = malloc(n);
    CHECK(big);
    for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 13 + 1);
    CHECK_OK(mpx_submit(ex, "blob", big, n, &echoed)); /* large argument and result */
    const void *p;
    size_t len;
    CHECK_OK(mpx_future_result(made, MPX_FOREVER, &p, &len));
    CHECK(len == n);
    for (size_t i = 0; i < n; i += 4093) CHECK(((const unsigned char *)p)[i] == (unsigned char)(i * 31 + 7));
    CHECK_OK(mpx_future_result(echoed, MPX_FOREVER, &p, &len));
    CHECK(len == n && memcmp(p, big, n) == 0);
    mpx_future_release(made);
    mpx_future_release(echoed);
    free(big);
  }
  /* over max_payload: refused at submit, and a result too large fails with a message */
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .max_payload = 1 << 20}));
  uint64_t n = 2 << 20;
  mpx_future *f;
  CHECK_OK(mpx_submit(ex, "blob", &n, sizeof n, &f));
  int code;
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, NULL));
  CHECK(code == MPX_ETOOBIG);
  mpx_future_release(f);
  static unsigned char two[2 << 20];
  CHECK_RC(mpx_submit(ex, "blob", two, sizeof two, &f), MPX_ETOOBIG);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* An explicit worker count: W tasks at once over at most W ranks. */
static void test_workers_option(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI, .workers = 1}));
  CHECK(mpx_executor_workers(ex) == 1);
  mpx_future *fs[4];
  for (int i = 0; i < 4; i++) fs[i] = submit_where(ex, 0.01);
  int rank = where_of(fs[0]).rank;
  for (int i = 0; i < 4; i++) {
    CHECK(where_of(fs[i]).rank == rank); /* one rank only */
    mpx_future_release(fs[i]);
  }
  CHECK_OK(mpx_executor_destroy(ex));
}

static void run_job(void) {
  CHECK(world_size() >= 3);
  RUN(test_auto);
  RUN(test_errors);
  RUN(test_skewed);
  RUN(test_shutdown_pending);
  RUN(test_large);
  RUN(test_workers_option);
}

/* ---- hybrid -------------------------------------------------------------------------------- */

static void run_hybrid(void) {
  CHECK(world_size() == 2);
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .threads_per_rank = 2}));
  CHECK(mpx_executor_workers(ex) == 2); /* one rank, two task threads */
  enum { N = 6 };
  mpx_future *fs[N];
  double t0 = check_now();
  for (int i = 0; i < N; i++) fs[i] = submit_where(ex, 0.15);
  int64_t tids[N];
  int distinct = 0;
  for (int i = 0; i < N; i++) {
    where_t w = where_of(fs[i]);
    CHECK(w.rank == 1);
    bool seen = false;
    for (int k = 0; k < distinct; k++) seen |= tids[k] == w.tid;
    if (!seen) tids[distinct++] = w.tid;
    mpx_future_release(fs[i]);
  }
  double took = check_now() - t0;
  fprintf(stderr, "   %d naps of 0.15 s on 1 rank x 2 threads: %.3f s, %d threads\n", N, took,
          distinct);
  CHECK(distinct == 2);
  /* and the two threads run tasks at the same time: two tasks that each wait for the other */
  mpx_future *r[2];
  int want = 2;
  for (int i = 0; i < 2; i++) CHECK_OK(mpx_submit(ex, "rendezvous", &want, sizeof want, &r[i]));
  for (int i = 0; i < 2; i++) {
    int met = 0;
    CHECK_OK(mpx_future_result_copy(r[i], &met, sizeof met, MPX_FOREVER));
    CHECK(met == 1);
    mpx_future_release(r[i]);
  }
  CHECK_OK(mpx_executor_destroy(ex));
  /* threads_per_rank = 1: one at a time */
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .threads_per_rank = 1}));
  CHECK(mpx_executor_workers(ex) == 1);
  CHECK_OK(mpx_executor_destroy(ex));
}

/* ---- collective mode ----------------------------------------------------------------------- */

static void run_collective(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  CHECK(provided >= MPI_THREAD_SERIALIZED);
  CHECK(mpx_init(&argc, &argv) == MPX_MAIN); /* MPI is the program's: no roles */
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(size == 4);
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, rank / 2, rank, &half);
  for (int round = 0; round < 2; round++) { /* twice on the same communicator */
    mpx_executor *ex = NULL;
    int role = mpx_comm_executor(half, 0, NULL, &ex);
    if (role == MPX_WORKER) {
      CHECK(ex == NULL && rank % 2 == 1);
      continue;
    }
    CHECK_RC(role, MPX_MAIN);
    CHECK(rank % 2 == 0 && ex && mpx_executor_backend(ex) == MPX_BACKEND_MPI);
    for (int i = 0; i < 20; i++) {
      mpx_future *f = submit_where(ex, 0.001);
      CHECK(where_of(f).rank == rank + 1); /* the other rank of this half */
      mpx_future_release(f);
    }
    long xs[100];
    where_t ws[100];
    for (int i = 0; i < 100; i++) xs[i] = 0;
    CHECK_OK(mpx_map(ex, "where", xs, 0, 100, ws, sizeof(where_t), NULL));
    for (int i = 0; i < 100; i++) CHECK(ws[i].rank == rank + 1);
    CHECK_OK(mpx_executor_destroy(ex));
    fprintf(stderr, "   rank %d: collective executor %d over its half done\n", rank, round);
  }
  /* bad input is refused the same way on every rank */
  mpx_executor *ex;
  CHECK_RC(mpx_comm_executor(half, 5, NULL, &ex), MPX_EINVAL);
  MPI_Comm_free(&half);
  CHECK_OK(mpx_finalize());
  MPI_Finalize();
}

/* ---- no launcher --------------------------------------------------------------------------- */

static void run_nompi(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, NULL));
  CHECK(mpx_executor_backend(ex) == MPX_BACKEND_THREADS);
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI}), MPX_EMPI);
  CHECK(ex == NULL && strstr(mpx_errmsg(), "MPX_MPI=0") && strstr(mpx_errmsg(), "mpirun"));
  int inited = 1;
  MPI_Initialized(&inited);
  CHECK(!inited); /* plain runs never pay for MPI */
}

/* ---- a rank dies --------------------------------------------------------------------------- */

static void run_kill(void) {
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .threads_per_rank = 1}));
  enum { N = 200 };
  mpx_future *fs[N];
  for (int i = 0; i < N; i++) CHECK_OK(mpx_submit(ex, "die_on_rank1", NULL, 0, &fs[i]));
  for (int i = 0; i < N; i++) mpx_wait(&fs[i], 1, MPX_ALL_COMPLETED, MPX_FOREVER);
  fprintf(stderr, "mpi_test kill: the job survived the loss of rank 1 (it must not)\n");
  exit(3);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "job";
  if (!strcmp(mode, "collective")) {
    run_collective(argc, argv);
    fprintf(stderr, "mpi_test collective: all passed\n");
    return 0;
  }
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) return 0;
  CHECK_RC(role, MPX_MAIN);
  if (!strcmp(mode, "job")) run_job();
  else if (!strcmp(mode, "hybrid")) run_hybrid();
  else if (!strcmp(mode, "nompi")) run_nompi();
  else if (!strcmp(mode, "kill")) run_kill();
  else {
    fprintf(stderr, "usage: mpi_test job|hybrid|collective|nompi|kill\n");
    return 2;
  }
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "mpi_test %s: all passed\n", mode);
  return 0;
}
