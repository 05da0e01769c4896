/* mpx: submit, map and future results on threads, forked processes or MPI ranks.
 *
 * Include this one header; add <mpx/proto.h> to pass protobuf-c messages (this header does not
 * include protobuf-c) and <mpx/mpi.h> for the MPI communicator form. The multiprocessing
 * primitives (<mpx/ipc_*.h>) are included when built in (MPX_HAVE_IPC, <mpx/features.h>).
 *
 * Call mpx_init() first thing in main(), before any thread is started: under mpirun it
 * initialises MPI and turns ranks 1..N-1 into workers (they serve tasks and mpx_init returns
 * MPX_WORKER when the job's executor shuts down); it is also where the process backend starts
 * its fork server, so that worker processes are forked from a parent with a single thread. Call
 * mpx_finalize() last. mpx writes nothing to stderr unless asked to: see mpx/log.h. */
#ifndef MPX_MPX_H
#define MPX_MPX_H

#include "mpx/features.h"
#include "mpx/export.h"
#include "mpx/error.h"
#include "mpx/executor.h"
#include "mpx/future.h"
#include "mpx/log.h"
#include "mpx/task.h"
#include "mpx/topology.h"
#include "mpx/job.h"
#if MPX_HAVE_IPC
#include "mpx/ipc_dict.h"
#include "mpx/ipc_list.h"
#include "mpx/ipc_pipe.h"
#include "mpx/ipc_process.h"
#include "mpx/ipc_queue.h"
#include "mpx/ipc_shared.h"
#include "mpx/ipc_sync.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MPX_VERSION_MAJOR 0
#define MPX_VERSION_MINOR 1
#define MPX_VERSION_PATCH 0
#define MPX_VERSION_STRING "0.1.0"

/* What mpx_init tells its caller. */
enum {
  MPX_MAIN = 0,   /* this process runs the program's main work */
  MPX_WORKER = 1, /* this MPI rank was a worker and is done: return from main */
};

/* Initialise mpx (argc/argv may be NULL). Returns MPX_MAIN, MPX_WORKER, or a negative code.
 * Calling it again returns the first answer. */
MPX_API int mpx_init(int *argc, char ***argv);

/* Release what mpx_init set up (finalises MPI if mpx initialised it). Returns 0 or a code:
 * under MPI, MPX_EWORKER_LOST when a worker rank an executor abandoned (it stopped answering for
 * stall_timeout, mpx/mpi.h) has not answered since, within that long again; MPI is then not
 * finalised (MPI_Finalize would wait for it forever), mpx_errmsg() names the rank, and the
 * launcher ends the job when this process exits. */
MPX_API int mpx_finalize(void);

/* mpx's version string. */
MPX_API const char *mpx_version(void);

#ifdef __cplusplus
}
#endif
#endif
