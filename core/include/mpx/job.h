/* mpx job: what the batch system and the launcher say about this process, from its environment.
 *
 * mpx_job_get reads Slurm's and PBS's variables and the launcher's (Open MPI's mpirun, PMIx,
 * PMI-1/2, srun) and says whether this process is one of several ranks of a launched job. That
 * decision is the one mpx_init makes to start MPI (mpx/mpi.h), with the reason in words; run with
 * MPX_LOG=info to see it logged, or look at mpx-topo's "job" lines. The rules, first match wins:
 *
 *   MPX_MPI=0 / MPX_MPI=1                           not launched / launched (MPI_Init decides size)
 *   started by an mpx spawn-mode parent             spawned worker (serves its parent)
 *   OMPI_COMM_WORLD_SIZE=n (mpirun, orterun)        launched if n > 1
 *   PMI_SIZE=n (MPICH hydra, srun --mpi=pmi2)       launched if n > 1
 *   PMIX_RANK (srun --mpi=pmix, prrte)              launched if the step's task count is > 1 or
 *                                                   not given (a PMIx server answers MPI_Init)
 *   an srun step (SLURM_STEP_NUM_TASKS=n, or a      launched if n > 1 (without --mpi=pmix the MPI
 *     regular SLURM_STEP_ID with SLURM_NTASKS=n)      may still see one rank: mpx_init then warns)
 *   Slurm batch step or salloc shell (SLURM_JOB_ID  not launched: SLURM_PROCID=0 there says
 *     without a step)                                 nothing about ranks
 *   a PBS job script (PBS_JOBID)                    not launched
 *   nothing of the above                            not launched (a plain run)
 *
 * Not launched means mpx_init does not touch MPI: MPX_BACKEND_AUTO picks threads, and
 * MPX_BACKEND_MPI spawns its workers (spawn mode, mpx/mpi.h).
 *
 * The batch system's grants feed the topology (mpx/topology.h): SLURM_CPUS_PER_TASK and PBS's
 * NCPUS cap default_workers, and the job's end (SLURM_JOB_END_TIME) is a deadline a program can
 * plan against (mpx_job_deadline). Cgroup limits Slurm or PBS put on the job are read by the
 * topology itself (cpusets through hwloc, CPU quotas from the cgroup files).
 *
 * Thread-safety: both functions read the environment and, for PBS, the node file; they keep no
 * state. Do not call them while another thread changes the environment (setenv). */
#ifndef MPX_JOB_H
#define MPX_JOB_H

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mpx_scheduler {
  MPX_SCHED_NONE = 0, /* no batch system in the environment */
  MPX_SCHED_SLURM,    /* SLURM_JOB_ID */
  MPX_SCHED_PBS,      /* PBS_JOBID (PBS Pro, OpenPBS, Torque) */
} mpx_scheduler;

typedef struct mpx_job {
  mpx_scheduler scheduler;
  char job_id[64];   /* "" when there is none */
  int launched;      /* 1: one of several ranks of a launched job (or MPX_MPI=1): MPI is used */
  int spawned;       /* 1: a worker an mpx program started in spawn mode */
  int tasks;         /* the launcher's task (rank) count; 0 when it does not say */
  int rank;          /* this task's rank among them; -1 when it does not say */
  char launcher[16]; /* "mpirun", "pmi", "pmix", "srun", "spawn", "MPX_MPI" or "none" */
  char reason[192];  /* the rule that decided, in words, with the variables it read */
  int cpus_per_task; /* SLURM_CPUS_PER_TASK; 0 when not set */
  int ncpus;         /* PBS NCPUS (the CPUs of this host's chunk); 0 when not set */
  int nodes;         /* hosts in the allocation: SLURM_JOB_NUM_NODES, or the distinct host
                        names in PBS_NODEFILE; 0 when unknown */
  int node_slots;    /* PBS: lines in PBS_NODEFILE (one per MPI slot); 0 when unknown */
  double end_time;   /* the job's projected end, seconds since the epoch (SLURM_JOB_END_TIME);
                        0 when unknown */
} mpx_job;

/* Read the environment now and fill *out. MPX_EINVAL for a NULL out. */
MPX_API int mpx_job_get(mpx_job *out);

/* The job's deadline: *end_time (seconds since the epoch) and *seconds_left (negative once past),
 * either may be NULL. MPX_ENOTFOUND (mpx_errmsg says why) when the batch system does not give one
 * (not under Slurm, or a Slurm too old to export SLURM_JOB_END_TIME). */
MPX_API int mpx_job_deadline(double *end_time, double *seconds_left);

#ifdef __cplusplus
}
#endif
#endif
