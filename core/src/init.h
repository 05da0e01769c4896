/* init.h: process-wide start-up state (mpx_init) and the hooks transports provide for it.
 * Every transport is always built in, and these are strong references: a weak one would not pull
 * its object out of the static library (libmpx.a) and a static program would lose the backend. */
#ifndef MPX_INIT_H
#define MPX_INIT_H

#include <stdbool.h>

#include "mpx/executor.h"

/* True when mpx_init found an MPI job of more than one rank and this is its root. */
bool mpx__mpi_job(void);

/* Parse "threads", "processes", "mpi" or "auto". */
int mpx__backend_parse(const char *s, mpx_backend *out);

/* MPI transport (mpi.c): when launched by mpirun/srun, initialise MPI; worker ranks serve until
 * the root's executor shuts down and then return MPX_WORKER; the root returns MPX_MAIN with
 * *job set when there is more than one rank. Outside a launcher: MPX_MAIN, *job false. */
int mpx__mpi_init(int *argc, char ***argv, bool *job);
int mpx__mpi_finalize(void);

/* executor.c: wait until every executor destroyed from a callback has been torn down. */
void mpx__executor_reap_wait(void);

/* Process transport (process.c): start the fork server while the process has one thread. */
int mpx__procs_init(void);
void mpx__procs_finalize(void);

#endif
