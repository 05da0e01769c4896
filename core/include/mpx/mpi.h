/* mpx/mpi.h: executors on MPI ranks. Include it (it includes <mpi.h> and mpx/mpx.h) to use
 * mpx_comm_executor; programs that only use mpx_init and MPX_BACKEND_AUTO/MPI need just mpx/mpx.h.
 *
 * Two ways to run on ranks
 *  - Job mode: `mpirun -np N ./app` (or `srun --mpi=pmix -n N ./app`) with mpx_init() first in
 *    main. mpx_init starts MPI only when this process is one of several ranks of a launched job,
 *    by the rules of mpx/job.h (mpirun's OMPI_COMM_WORLD_SIZE > 1, PMI_SIZE > 1, a PMIx rank, an
 *    srun step of more than one task; never a Slurm batch step, a one-task srun, a PBS script or a
 *    plain run; MPX_MPI=0 or 1 overrides; MPX_LOG=info logs the decision and why), and
 *    initialises MPI with MPI_Init_thread (asking
 *    MPI_THREAD_MULTIPLE, or SERIALIZED with MPX_MPI_THREAD_LEVEL=serialized; less than
 *    SERIALIZED fails with MPX_EMPI), and with more than one rank: rank 0 returns MPX_MAIN and
 *    runs the program, and MPX_BACKEND_AUTO picks MPI there; ranks 1..N-1 serve executor after
 *    executor (one at a time) until mpx_finalize() on rank 0 tells them the job is over, then
 *    finalise MPI themselves and return MPX_WORKER from mpx_init (return from main then). Outside
 *    a launcher mpx_init does not touch MPI. If the program initialised MPI itself before
 *    mpx_init, mpx_init leaves roles alone: use mpx_comm_executor (or spawn mode).
 *  - Spawn mode: a plain run (not launched, by the rules of mpx/job.h) that creates an executor
 *    with MPX_BACKEND_MPI (or MPX_BACKEND=mpi) and workers = N gets N worker processes from
 *    MPI_Comm_spawn, as mpi4py.futures' MPIPoolExecutor(max_workers=N): same API, no mpirun.
 *    MPI is initialised then, at the first MPI executor (never by mpx_init, so plain runs never
 *    start MPI's runtime), with the thread level as in job mode; mpx_finalize stops the workers,
 *    disconnects and finalises MPI. The workers run this same binary (/proc/self/exe, with this
 *    process's arguments and "--mpx-spawned-worker" appended, which mpx_init removes from argv):
 *    their mpx_init serves the parent and returns MPX_WORKER, so mpx_init must be first in main
 *    (without it, spawn mode is refused with MPX_EMPI). workers = 0 spawns the default workers
 *    (mpx/topology.h); each worker runs one task at a time unless threads_per_rank says more.
 *    Executors reuse the spawned workers; one that asks for more ends them and spawns anew (while
 *    no MPI executor runs; MPX_ESTATE otherwise). The spawn asks map_by "slot:OVERSUBSCRIBE" (a
 *    singleton's node has as many slots as cores, and the parent takes one);
 *    MPX_MPI_SPAWN_MAP_BY sets another policy ("" for MPI's default). Where the MPI cannot spawn
 *    (no dynamic processes, no slots, a launcher that forbids it), executor creation fails with
 *    MPX_EMPI and mpx_errmsg gives MPI's reason; MPX_MPI=0 turns spawn mode off (MPX_EMPI).
 *    Open MPI 4 carries messages between a parent and the workers it spawned over TCP even on
 *    one node (its shared-memory transport does not cross jobs): batches of many tasks hide it,
 *    single round trips are slower than under mpirun.
 *  - Collective mode: mpx_comm_executor over any communicator (below), as mpi4py's
 *    MPICommExecutor.
 *
 * Workers, threads and options under MPI
 *  - The dispatcher's workers are worker ranks; each runs tasks on its own threads (hybrid):
 *    threads_per_rank = 0 gives a rank the cores it owns (the cores it may use, split evenly
 *    between the worker ranks of its node that see the same cores; a rank mpirun bound keeps its
 *    own; the root's rank is not counted), 1 runs one task at a time per rank, k runs k.
 *  - workers = 0 uses every worker rank; workers = W > 0 asks for W tasks at once, as on the other
 *    backends: W threads over min(W, worker ranks) ranks (each at most threads_per_rank when it is
 *    set). mpx_executor_workers() reports the task threads in all; map's default chunk size
 *    follows it.
 *  - Rank 0 working: root_threads = k > 0 adds k task threads on the root (rank 0, or the spawn
 *    parent) itself, beside its dispatcher, as one more worker (tasks report the root's rank and
 *    pid); -1 keeps the root to scheduling. 0, the default, gives it the cores it has to spare
 *    when workers is 0: all its cores but one when no worker rank of its node shares them (rank 0
 *    alone on its node, or bound to cores of its own, as with srun --cpus-per-task), none when
 *    they do (mpirun -np N on one node: the worker ranks split the node's cores). With workers = W
 *    > 0, and in spawn mode, the default is none, so that W stays the number of tasks at once.
 *  - The initializer runs once in each task thread of each rank used, before its tasks; a rank is
 *    reused by later executors, so state it keeps in globals outlives an executor.
 *  - binding is ignored (bind ranks with mpirun's --bind-to / --map-by).
 *  - Arguments and results travel as packed protobuf-c Batches, one MPI message each;
 *    max_payload is at most 1 GiB - 1 byte under MPI (one message carries at most INT_MAX bytes).
 *  - task_timeout > 0, a per-submit timeout > 0, retries > 0 (executor or per-submit) and
 *    max_tasks_per_worker > 0 are refused with MPX_EPERM: a single rank cannot be ended or
 *    replaced without ending the job, so a task lost with its rank is never run again.
 *    stall_timeout applies: a hung rank is abandoned, not killed (below).
 *  - One MPI executor at a time per communicator (MPX_ESTATE otherwise); several at once on
 *    distinct communicators need MPI_THREAD_MULTIPLE. With MPI_THREAD_SERIALIZED the program must
 *    not call MPI itself while an MPI executor exists.
 *
 * Progress and idle ranks: nothing busy-polls without bound. A rank waiting for a message polls
 * MPI_Improbe / MPI_Testsome between yields for 100 us after its last message (the next message
 * of a conversation usually comes within that), then sleeps. The ranks of the root's node share
 * doorbells (a futex per rank in shared memory): whoever sends to one of them rings it, so a
 * worker rank there, and a root whose worker ranks all share its node, sleep until rung (at most
 * MPX_MPI_POLL_US, a safety net) and wake within a futex wake-up of the message, not at the end
 * of a timer. Other ranks (another node than the root's) sleep from 2 us doubling up to
 * MPX_MPI_POLL_US microseconds (default 1000, range 10..100000), so a task that arrives at such
 * an idle rank may wait up to that long before it starts. MPX_MPI_BELLS=0 turns the doorbells
 * off (for comparison). Submitting wakes the root at once.
 *
 * What survives and what does not
 *  - A task that fails returns its code and message with the rank and host it ran on
 *    ("... (rank 2 on node7)"); the executor goes on.
 *  - A rank that dies (signal, exit, abort) ends the whole job under Open MPI's defaults: mpirun
 *    kills every rank within seconds and names the lost rank ("mpirun noticed that process rank
 *    1 ... exited on signal 9"), rank 0 included, so no future is left waiting. mpx does not
 *    survive it: retries do not apply and nothing is replaced. (Open MPI's ULFM or
 *    --enable-recovery are not used.)
 *  - A rank that hangs whole (a task deadlocks the process, a node stops answering): a rank
 *    that holds tasks and has sent nothing for half of options.stall_timeout (default 5 s) is
 *    sent a TAKEBACK (its serving or standby thread answers within milliseconds, even while a task
 *    runs); one that leaves it unanswered for stall_timeout is abandoned. Its tasks not known to
 *    have started run on the other ranks, uncharged (they may run twice if it resumes: tasks are
 *    at-least-once under failures), the task it said it started fails with MPX_EWORKER_LOST
 *    ("stalled ... abandoned"), nothing more is sent to it, destroy does not wait for it, and
 *    later executors of the job run without it. It is not killed (a rank cannot be ended alone):
 *    if it resumes, its late answers are dropped and it ends with the job. At mpx_finalize the
 *    root waits for an abandoned rank at most that stall_timeout more; if it has not answered,
 *    mpx_finalize returns MPX_EWORKER_LOST naming it and does not call MPI_Finalize (which would
 *    wait for it forever), and when the process exits the launcher ends the job (mpirun exits
 *    non-zero and kills the hung rank) instead of holding the allocation. A rank merely paused
 *    longer than stall_timeout (a debugger) is abandoned too: raise it for such sessions.
 *  - Rank 0 must call mpx_finalize() (or the worker ranks wait for it until mpirun ends the job).
 *
 * Thread-safety: mpx_comm_executor is collective over `comm` and is called by one thread per
 * rank; the executor it returns is an ordinary executor. */
#ifndef MPX_MPI_H
#define MPX_MPI_H

#include <mpi.h>

#include "mpx/export.h"
#include "mpx/mpx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Collective over `comm` (call it on every rank of comm; MPI must be initialised with at least
 * MPI_THREAD_SERIALIZED). On `root` it creates an MPI executor whose workers are the other ranks
 * of comm, stores it in *out and returns MPX_MAIN; use and destroy it as any executor (the
 * options' backend must be AUTO or MPI; the other options as under MPX_BACKEND_MPI; opt may be
 * NULL). On every other rank it serves that executor and returns MPX_WORKER once it is shut down
 * (*out is NULL there; opt and out are not used). The communicator is duplicated, so the
 * program's own messages on comm never mix with mpx's. A negative code on failure: MPX_EINVAL
 * (bad root, a communicator of one rank, NULL out on the root), MPX_EMPI (MPI not initialised or
 * too low a thread level), or any code mpx_executor_create returns (then the worker ranks
 * return MPX_WORKER too). */
MPX_API int mpx_comm_executor(MPI_Comm comm, int root, const mpx_options *opt, mpx_executor **out);

#ifdef __cplusplus
}
#endif
#endif
