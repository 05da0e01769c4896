/* job_impl.h: what job.c shares with the rest of libmpx (the MPI transport's spawn mode).
 * Internal to libmpx. Thread-safety: constants only. */
#ifndef MPX_JOB_IMPL_H
#define MPX_JOB_IMPL_H

/* The last command-line argument of a worker an mpx program started in spawn mode (mpx/mpi.h).
 * mpx_job_get reports spawned = 1 when /proc/self/cmdline ends with it, and mpx_init removes it
 * from argv. An argument, not an environment variable: MPI_Comm_spawn from a singleton hands the
 * children the environment of the runtime daemon the singleton forked at MPI_Init, not the
 * parent's environment at the time of the spawn. */
#define MPX__SPAWN_ARG "--mpx-spawned-worker"

#endif
