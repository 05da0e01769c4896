/* init.c: mpx_init and mpx_finalize. Call them from main's thread: mpx_init before any other
 * thread starts (the process transport forks its fork server here, and MPI must be initialised by
 * the thread that will finalise it). Idempotent; not meant to race with itself. */
#include <pthread.h>

#include "init.h"
#include "mpx/mpx.h"

static struct {
  bool done;
  int role;
  bool mpi_job;
} state;

bool mpx__mpi_job(void) { return state.mpi_job; }

const char *mpx_version(void) { return MPX_VERSION_STRING; }

int mpx_init(int *argc, char ***argv) {
  if (state.done) return state.role;
  int role = mpx__mpi_init(argc, argv, &state.mpi_job);
  if (role < 0) return role;
  if (role == MPX_MAIN) {
    int rc = mpx__procs_init();
    if (rc < 0) return rc;
  }
  state.done = true;
  state.role = role;
  return role;
}

int mpx_finalize(void) {
  mpx__executor_reap_wait(); /* executors destroyed from callbacks are gone before MPI is */
  if (!state.done) return MPX_OK;
  int rc = MPX_OK;
  if (state.role == MPX_MAIN) mpx__procs_finalize();
  rc = mpx__mpi_finalize();
  state.done = false;
  return rc;
}
