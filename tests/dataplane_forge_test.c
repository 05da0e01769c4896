/* dataplane_forge_test: a worker rank that declares an out-of-band result and never sends it
 * (under mpirun -np 3; label mpi, hostile).
 *
 * A task reaches its rank's session communicator (MPI_Comm_f2c, as trust_test does), learns the
 * call id it runs under from the test's root (the future's address: the first task sent to a
 * one-slot rank, transport/mpi and core/src/dispatch.c), and sends the root a reply whose Result
 * declares 1 MiB of data as its own message (data_shm) without ever sending that message. The
 * dispatcher must refuse it at once, naming the rank (the future fails with MPX_EPROTO, the rank
 * is retired for breaking the protocol), and go on serving the other rank: bystanders submitted next all finish
 * within 20 s each, well inside the 30 s the dispatcher used to wait for the missing message
 * (a bound on a stall, not a speed: the suite runs beside two CPU hogs). Skipped without
 * MPI_THREAD_MULTIPLE (a task may not call MPI beside the serving thread) or with fewer than two
 * worker ranks. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"
#include "codec.h"

#if MPX_HAVE_MPI
#include <mpi.h>

#include "forge_mpi.h"

enum { TAG_HELLO = 7801, TAG_ID = 7802, BYSTANDERS = 8 };

/* Say which rank this is, take the call id, declare a payload that never comes, then nap. */
static int forge_declared(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  MPI_Comm comm = session_comm();
  if (comm == MPI_COMM_NULL) return mpx_task_fail(ctx, MPX_ENOTFOUND, "no session communicator");
  int me;
  uint64_t id = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Send(&me, 1, MPI_INT, 0, TAG_HELLO, MPI_COMM_WORLD);
  MPI_Recv(&id, 1, MPI_UINT64_T, 0, TAG_ID, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  Mpx__Result r = MPX__RESULT__INIT;
  r.call_id = id;
  r.data_shm = 1u << 20;
  Mpx__Result *rp = &r;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.n_results = 1;
  b.results = &rp;
  forge_send(&b, comm);
  sleep(2);
  return 0;
}
MPX_TASK(forge_declared)

static int twice(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  uint64_t x;
  if (len != sizeof x) return mpx_task_fail(ctx, MPX_EINVAL, "want a uint64");
  memcpy(&x, arg, sizeof x);
  x *= 2;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(twice)

static void test_declared_never_sent(void) {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    fprintf(stderr, "   skipped: MPI provides less than MPI_THREAD_MULTIPLE\n");
    return;
  }
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                     .threads_per_rank = 1}));
  if (mpx_executor_workers(ex) < 2) {
    fprintf(stderr, "   skipped: needs two worker ranks\n");
    CHECK_OK(mpx_executor_destroy(ex));
    return;
  }
  mpx_future *bad;
  CHECK_OK(mpx_submit(ex, "forge_declared", NULL, 0, &bad));
  int rank = -1;
  MPI_Recv(&rank, 1, MPI_INT, MPI_ANY_SOURCE, TAG_HELLO, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  uint64_t id = (uint64_t)(uintptr_t)bad; /* call id: the future, sequence 0 on its rank */
  MPI_Send(&id, 1, MPI_UINT64_T, rank, TAG_ID, MPI_COMM_WORLD);
  mpx_future *fs[BYSTANDERS];
  for (uint64_t i = 0; i < BYSTANDERS; i++) CHECK_OK(mpx_submit(ex, "twice", &i, sizeof i, &fs[i]));
  double t0 = check_now();
  for (uint64_t i = 0; i < BYSTANDERS; i++) {
    uint64_t y = 0;
    CHECK_OK(mpx_future_result_copy(fs[i], &y, sizeof y, 20.0)); /* not behind a 30 s wait */
    CHECK(y == 2 * i);
    mpx_future_release(fs[i]);
  }
  int code = 0;
  const char *msg = NULL;
  CHECK_OK(mpx_future_exception(bad, 20.0, &code, &msg));
  fprintf(stderr, "  forged rank %d: %s: %s (bystanders done in %.2f s)\n", rank,
          mpx_err_name(code), msg ? msg : "", check_now() - t0);
  CHECK_RC(code, MPX_EPROTO);
  char named[32];
  snprintf(named, sizeof named, "(rank %d)", rank);
  CHECK(msg && strstr(msg, "did not send") && strstr(msg, named));
  mpx_future_release(bad);
  CHECK_OK(mpx_executor_destroy(ex)); /* the retired rank ends with the executor too */
}
#endif

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
#if MPX_HAVE_MPI
  RUN(test_declared_never_sent);
#endif
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "dataplane_forge_test: all passed\n");
  return 0;
}
