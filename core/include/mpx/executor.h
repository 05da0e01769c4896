/* mpx executors: a pool of workers that runs registered tasks and returns futures, as
 * concurrent.futures.Executor. The backend (threads, forked processes, MPI ranks) is an option;
 * the calling code is the same for all of them.
 *
 * Argument lifetime: submit copies its argument, of any size, on every backend: the caller may
 * reuse or free its buffer as soon as submit returns. Up to MPX_INLINE_ARG bytes go inside the
 * future; larger ones into a block malloc'd by the submitting thread, freed with the future.
 * Zero copy is an explicit opt-in (mpx_submit_opts.borrow, mpx_imap_opts.borrow): the bytes are
 * then read in place (threads) or encoded when the batch is sent (processes, MPI), so the caller
 * must keep them valid and unchanged until the future is done. mpx_map without a timeout reads
 * its items in place (it returns only when every chunk is done).
 *
 * Thread-safety: submit, map and the future functions may be called from any thread at once;
 * shutdown may race with submit (a submit that loses the race gets MPX_ESHUTDOWN); destroy must be
 * called once, when no other thread uses the executor. */
#ifndef MPX_EXECUTOR_H
#define MPX_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"
#include "mpx/future.h"
#include "mpx/task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_executor mpx_executor;

/* Arguments up to this size are copied into the future itself at submit (larger ones into a
 * block of their own, unless borrowed). */
#define MPX_INLINE_ARG 24

typedef enum mpx_backend {
  MPX_BACKEND_AUTO = 0,      /* MPX_BACKEND env ("threads", "processes", "mpi"), else MPI when
                                launched by mpirun/srun with more than one rank, else threads */
  MPX_BACKEND_THREADS = 1,   /* worker threads of this process; pointers pass through */
  MPX_BACKEND_PROCESSES = 2, /* forked worker processes on this node; protobuf-c payloads */
  MPX_BACKEND_MPI = 3,       /* MPI ranks 1..N-1 serve rank 0; protobuf-c payloads */
} mpx_backend;

typedef enum mpx_binding {
  MPX_BIND_NONE = 0, /* let the OS place workers (default) */
  MPX_BIND_CORE = 1, /* one worker per core, spread over packages and NUMA nodes */
  MPX_BIND_PU = 2,   /* one worker per hardware thread (PU) */
  MPX_BIND_NUMA = 3, /* each worker bound to all cores of one NUMA node, round robin */
} mpx_binding;

typedef enum mpx_full_policy {
  MPX_FULL_BLOCK = 0, /* submit waits for room when max_pending tasks are queued (default) */
  MPX_FULL_FAIL = 1,  /* submit returns MPX_EFULL at once */
} mpx_full_policy;

/* Executor options. A zeroed struct (or NULL) means all defaults. */
typedef struct mpx_options {
  mpx_backend backend;
  int workers;                 /* 0: one per usable core (hwloc, respecting taskset and cgroups) */
  mpx_binding binding;
  const char *initializer;     /* registered task run once in each worker before any task, with
                                  initargs; its failure fails the executor's start with MPX_EINIT */
  const void *initargs;
  size_t initargs_len;
  long max_tasks_per_worker;   /* 0: unlimited; else the worker is replaced after that many
                                  (threads, processes; MPX_EPERM on MPI) */
  size_t max_pending;          /* 0: unbounded; else the bound on tasks queued and not started */
  mpx_full_policy on_full;
  int retries;                 /* times a task lost with its worker is run again (processes).
                                  Only the task a dead worker was running is charged; the rest of
                                  its queue is re-run uncharged. > 0 is MPX_EPERM on threads (a
                                  task is never lost with its thread) and MPI (a lost rank ends
                                  the job) */
  double task_timeout;         /* seconds; > 0 kills a worker whose task runs longer than that
                                  from its start (processes; MPX_EPERM on threads and MPI, which
                                  cannot end one worker). Timed tasks are batched like others:
                                  killing the worker charges only the task past its limit. NaN
                                  or infinite: MPX_EINVAL */
  size_t max_payload;          /* bytes one argument or result may have across a process or rank
                                  boundary; 0: 1 GiB */
  double stall_timeout;        /* processes: seconds a worker may go without a heartbeat (its
                                  process is stopped or hung: a thread in it beats every 50 ms,
                                  also during a long task) or with a reply frame half-written,
                                  before it is killed and replaced. Tasks queued to it and not
                                  started go to other workers uncharged; the task it was running
                                  is charged one retry (MPX_EWORKER_LOST, 'stalled', when none is
                                  left). 0: 5 s; negative, NaN or infinite: MPX_EINVAL. Keep
                                  it well above the beat (a loaded host delays the beating
                                  thread: under a second risks ending healthy workers). MPI: a
                                  rank quiet for half of it is sent a TAKEBACK, and one that
                                  leaves it unanswered this long is abandoned, not killed
                                  (mpx/mpi.h). > 0 is MPX_EPERM on threads */
  int threads_per_rank;        /* MPI: threads running tasks in each worker rank; 0: the cores the
                                  rank owns on its node; 1: one task at a time */
  size_t max_worker_memory;    /* processes: bytes the executor holds for one worker at most (what
                                  it is receiving from it, what waits to be written to it), and so
                                  the largest message a worker may send (a reply of many results
                                  is trimmed to fit: the largest become MPX_ETOOBIG errors). A
                                  worker that announces a larger frame is killed before any of it
                                  is read (its running task is charged); one whose unread input
                                  exceeds it is killed too. Buffers grow with the bytes that
                                  actually arrive. 0: max_payload + 64 MiB; else at least
                                  max_payload + 64 KiB (MPX_EINVAL below). Ignored by the other
                                  backends (MPI receives each message at its announced size) */
  int root_threads;            /* MPI: threads running tasks on the root (rank 0) itself, beside
                                  its dispatcher. 0: the cores it has to spare when workers is 0
                                  (none when worker ranks of its node share its cores); k > 0: k;
                                  -1: none (mpx/mpi.h) */
  /* Fairness and bookkeeping periods of the process and MPI schedulers, in seconds. 0: the
   * default; negative, NaN or infinite: MPX_EINVAL; > 0 where it does not apply: MPX_EPERM. */
  double silent_after;         /* processes, MPI: a worker that holds queued tasks and has sent
                                  no result for this long counts as busy on a long task (or
                                  stalled): it is sent nothing more, and once another worker is
                                  idle the tasks it has not started are taken back for that one.
                                  0: 5 ms (about five of the ~1 ms batches of work a worker is
                                  sent). Smaller moves tasks away from a long one sooner, at the
                                  cost of more take-backs; MPX_EPERM on threads (an idle thread
                                  steals at once) */
  double sweep_interval;       /* processes: how often the workers' queues are cleared of tasks
                                  the user cancelled (they hold queue room until then). 0: 20 ms;
                                  MPX_EPERM on threads and MPI (nothing to sweep) */
  double limit_interval;       /* processes: how often the running tasks' time limits are checked
                                  once a timed task was sent (a limit fires up to this late).
                                  0: 10 ms; MPX_EPERM on threads and MPI (no time limits) */
  size_t arg_reserve;          /* processes: bytes of memory made ready for each worker's big
                                  arguments when it starts: its first argument segment (shared,
                                  allocated and mapped by the executor then) and, at the
                                  executor's start, one buffer per worker in the process's pool
                                  that submit copies big arguments into, so that the first big
                                  arguments a fresh worker gets cost memcpys into warm pages
                                  rather than new pages allocated on the way (1-2 GB/s on a VM:
                                  README, Data plane). Costs twice this much memory per worker:
                                  the segment while the worker lives, the buffer idle in the pool
                                  (at most 512 MiB each over all workers: beyond, made on first
                                  use). An argument of at most this size uses them. 0: none, segments are made as arguments need
                                  them; else from 256 KiB (smaller arguments travel in the frame)
                                  to max_payload (MPX_EINVAL otherwise); MPX_EPERM on threads
                                  (pointers) and MPI (arguments go as messages) */
} mpx_options;

/* Create and start an executor. *out is NULL on failure. MPX_EINVAL for an option out of range
 * (or a bad MPX_BACKEND), MPX_ENOTASK for an unknown initializer, MPX_EINIT if the initializer
 * failed in a worker, MPX_EMPI for the MPI backend outside an MPI job of two or more ranks,
 * MPX_EPERM for an option the backend cannot honour (task_timeout, retries,
 * max_tasks_per_worker: see each, and mpx/mpi.h): such options are refused, never ignored;
 * mpx_errmsg() names the option and the backend.
 * MPX_ENOTBUILT for MPX_BACKEND_MPI in an mpx built without MPI (MPX_WITH_MPI=OFF; see MPX_HAVE_MPI
 * in mpx/features.h). */
MPX_API int mpx_executor_create(mpx_executor **out, const mpx_options *opt);

/* The number of workers, or a negative code. */
MPX_API int mpx_executor_workers(const mpx_executor *ex);
/* The backend in use (never MPX_BACKEND_AUTO once created), or a negative code. */
MPX_API int mpx_executor_backend(const mpx_executor *ex);
/* "threads", "processes" or "mpi"; "invalid" for a bad argument. */
MPX_API const char *mpx_backend_name(mpx_backend b);

/* Per-submit options; NULL means the executor's. As the executor's options, a time limit and
 * retries are refused with MPX_EPERM where the backend cannot honour them (threads, MPI). */
typedef struct mpx_submit_opts {
  int retries;         /* < 0: the executor's; 0: none; > 0: processes only; at most INT16_MAX */
  double timeout;      /* seconds; 0: the executor's task_timeout; < 0: none; > 0: processes
                          only; NaN or infinite: MPX_EINVAL */
  bool borrow;         /* zero copy: the argument is not copied at submit; the caller keeps its
                          bytes valid and unchanged until the future is done (see the top) */
} mpx_submit_opts;

/* Submit the task registered as `task` with a copy of the `len` argument bytes at `arg`; *out
 * receives a future with one reference. `out` may be NULL: fire and forget (the task runs, its
 * outcome is dropped; a done-callback cannot be added then). MPX_ENOTASK (mpx_errmsg names the
 * task), MPX_ESHUTDOWN, MPX_EFULL (FULL_FAIL policy), MPX_ETOOBIG, MPX_ENOMEM, MPX_EINVAL (NULL
 * executor, NULL arg with len > 0: mpx_errmsg says which) / MPX_EPERM for per-submit options
 * (mpx_submit_task). */
MPX_API int mpx_submit(mpx_executor *ex, const char *task, const void *arg, size_t len, mpx_future **out);

/* As mpx_submit with a task handle (no name lookup) and per-submit options (may be NULL). */
MPX_API int mpx_submit_task(mpx_executor *ex, const mpx_task *task, const void *arg, size_t len,
                            const mpx_submit_opts *opts, mpx_future **out);

/* Bytes of one item or one result: a (pointer, length) pair. */
typedef struct mpx_bytes {
  const void *data;
  size_t len;
} mpx_bytes;

/* Where mpx_map reports the first failure, in item order. */
typedef struct mpx_map_status {
  size_t failed_index; /* the first item (in order) whose task failed; n if none */
  int code;            /* its error code, 0 if none */
  char message[256];   /* its message, truncated */
} mpx_map_status;

/* Map options; NULL means defaults. */
typedef struct mpx_map_opts {
  size_t chunksize;        /* items per task message; 0: ceil(n / (4 * workers)), as Python.
                              Larger than n (or, on processes and MPI, than the 1 Mi items one
                              message takes): one chunk of that many */
  double timeout;          /* overall, seconds, counted from the call; 0, negative or +infinity:
                              no limit; NaN: MPX_EINVAL */
  mpx_map_status *status;  /* optional: details of the first failure */
} mpx_map_opts;

/* Apply `task` to each of the `n` items of `item_size` bytes at `items`, writing each result
 * (exactly `result_size` bytes; MPX_ESIZE otherwise) to results + i * result_size, in order.
 * Blocks until all items are done and returns 0, or the first failure in item order (the other
 * results are still written where their tasks succeeded). `results` may be NULL when
 * result_size is 0. MPX_EINVAL when n * item_size or n * result_size overflows size_t;
 * MPX_ETOOBIG (processes, MPI) when one chunk's items or results exceed max_payload.
 *
 * Without a timeout, tasks read `items` and write `results` in place. With a timeout, map
 * copies the items into a private buffer and the chunks write their results into one too; a
 * chunk's results are copied to `results` when map sees it done. At the deadline, map cancels
 * the chunks that have not started and returns MPX_ETIMEDOUT at once (status: the first item of
 * the first chunk not done): chunks still running finish into the private buffers, their
 * results are dropped, and the buffers are freed when the last one ends. So after map returns,
 * whatever it returned, `items` and `results` are the caller's again: nothing reads or writes
 * them. The copies cost memory (n * (item_size + result_size)) and time only with a timeout. */
MPX_API int mpx_map(mpx_executor *ex, const char *task, const void *items, size_t item_size, size_t n,
            void *results, size_t result_size, const mpx_map_opts *opts);

/* mpx_map as a future: returns at once with *out, a future that completes when every item is
 * done: with no result bytes on success, else failed with the first failure in item order (its
 * message names the item). Items are read and results written in place, so both must stay valid
 * until the future is done. opts->timeout must be 0 (wait on the future with one); status is not
 * used. As Python's map_async. MPX_EINVAL, MPX_ENOTASK, MPX_ETOOBIG (a chunk over max_payload),
 * MPX_ENOMEM; a failure to queue chunks (shutdown) fails the future. */
MPX_API int mpx_map_async(mpx_executor *ex, const char *task, const void *items, size_t item_size,
                          size_t n, void *results, size_t result_size, const mpx_map_opts *opts,
                          mpx_future **out);

/* ---- variable-size and streaming maps ------------------------------------------------------
 * Items of any size (strings, records, protobuf messages: mpx_bytes), results of any size per
 * item, and every item has its own outcome: a failing item does not stop the others. Chunked as
 * mpx_map (chunksize items per task message); on processes and MPI a chunk of variable-size
 * items is sent as each item's length then its bytes. */

/* The results of mpx_map_var: one outcome per item. */
typedef struct mpx_results mpx_results;

/* Apply `task` to each of the `n` items (pointer, length) and keep every result: returns 0 when
 * every item succeeded, else the first failing item's code (in item order; details in
 * opts->status); either way *out holds every item's outcome (mpx_results_get) until
 * mpx_results_free. The items are copied into the chunks as they are queued (the caller's bytes
 * are not read after map returns). With opts->timeout, at the deadline map cancels the chunks
 * not started, waits for those running, and returns MPX_ETIMEDOUT with *out NULL. MPX_EINVAL
 * (NULL items with n > 0, an item with NULL data and len > 0: mpx_errmsg names it),
 * MPX_ENOTASK, MPX_ETOOBIG (a chunk over max_payload: lower chunksize), MPX_ENOMEM,
 * MPX_ESHUTDOWN. */
MPX_API int mpx_map_var(mpx_executor *ex, const char *task, const mpx_bytes *items, size_t n,
                        const mpx_map_opts *opts, mpx_results **out);

/* mpx_map_var as a future: returns at once; the future finishes with the mpx_results pointer as
 * its result bytes (mpx_future_result_copy(f, &r, sizeof r, timeout)), yours to mpx_results_free,
 * holding every item's outcome (item failures are there, not in the future), or fails when the
 * map could not start (MPX_EINVAL, MPX_ENOTASK, MPX_ENOMEM: returned, no future). Every chunk is
 * queued at once with a copy of its items, so `items` may be reused as soon as this returns; a
 * chunk that could not be queued (shutdown, over max_payload) gives its items that code. No
 * timeout (wait on the future with one). */
MPX_API int mpx_map_var_async(mpx_executor *ex, const char *task, const mpx_bytes *items, size_t n,
                              const mpx_map_opts *opts, mpx_future **out);

/* Item i's outcome: 0 and its result (*data, valid until mpx_results_free; NULL when *len is 0),
 * or its error code and *message (with the item and the worker; valid until the next call on
 * this thread). MPX_EINVAL for i >= n. Any pointer may be NULL. */
MPX_API int mpx_results_get(const mpx_results *r, size_t i, const void **data, size_t *len,
                            const char **message);
/* Items in r (0 for NULL). */
MPX_API size_t mpx_results_count(const mpx_results *r);
MPX_API int mpx_results_free(mpx_results *r);

/* A streaming map (Python's imap / imap_unordered). */
typedef struct mpx_imap_iter mpx_imap_iter;

typedef struct mpx_imap_opts {
  size_t chunksize;    /* items per task message; 0: ceil(n / (4 * workers)), at most 4096 */
  size_t max_inflight; /* items queued or running or done and not yet taken, at most (rounded
                          down to whole chunks, at least one chunk); 0: 8 chunks per worker.
                          Memory is bounded by it, whatever n is */
  bool unordered;      /* false: results in item order (imap); true: as chunks finish
                          (imap_unordered) */
  bool borrow;         /* fixed-size items only: read in place, not copied into each chunk; the
                          caller keeps them valid until mpx_imap_destroy */
} mpx_imap_opts;

/* One outcome handed out by mpx_imap_next; data and message are valid until the next call on
 * the iterator (or its destroy). */
typedef struct mpx_map_item {
  size_t index;        /* the item's index */
  int code;            /* 0, or the item's error code */
  const void *data;    /* result bytes (NULL when len is 0 or on failure) */
  size_t len;
  const char *message; /* "" on success; else the error, naming the item and the worker */
} mpx_map_item;

/* Start a streaming map over `n` fixed-size items (item_size bytes each, at `items`; item_size
 * 0 is fine: n empty items). Returns at once: chunks are queued as the caller takes results, at
 * most max_inflight items at a time. MPX_EINVAL, MPX_ENOTASK, MPX_ETOOBIG, MPX_ENOMEM,
 * MPX_ESHUTDOWN (nothing could be queued). */
MPX_API int mpx_imap(mpx_executor *ex, const char *task, const void *items, size_t item_size,
                     size_t n, const mpx_imap_opts *opts, mpx_imap_iter **out);
/* The same over `n` variable-size items; the list and the bytes it points at are read as each
 * chunk is queued (copied then), so they must stay valid until mpx_imap_destroy or until every
 * result was taken. */
MPX_API int mpx_imap_var(mpx_executor *ex, const char *task, const mpx_bytes *items, size_t n,
                         const mpx_imap_opts *opts, mpx_imap_iter **out);
/* The next outcome (ordered: item 0, 1, ...; unordered: as finished), waiting up to `timeout`:
 * 0, MPX_EEMPTY when every item was handed out, MPX_ETIMEDOUT, or the code that stopped the
 * map from queueing more (MPX_ESHUTDOWN, ...: mpx_errmsg says after how many items). A failing
 * item is an outcome (code != 0), not an error of this call. */
MPX_API int mpx_imap_next(mpx_imap_iter *it, double timeout, mpx_map_item *item);
/* Cancel the chunks not started, wait for those running, free everything. */
MPX_API int mpx_imap_destroy(mpx_imap_iter *it);

/* Stop accepting work. cancel_futures cancels every task that has not started; wait blocks until
 * every started or queued task is done and the workers are gone. Calling it again is fine.
 * Called with wait on one of the executor's own threads (from a done-callback or a task it runs),
 * which the wait would have to wait for: it shuts down without waiting (queued tasks still run)
 * and returns MPX_ESTATE (mpx_errmsg says why); call destroy, or shutdown with wait, from another
 * thread to wait. */
MPX_API int mpx_executor_shutdown(mpx_executor *ex, bool wait, bool cancel_futures);

/* Python's Pool.terminate: stop now. Every queued task is cancelled (MPX_CANCELLED); every
 * running task is stopped and its future fails with MPX_ETERMINATED (a task that finished first
 * keeps its outcome); then the executor is shut down, as shutdown(wait = true), and only destroy
 * is left to call. Running tasks see mpx_task_should_stop from the start. How each backend stops
 * them:
 *  - processes: the workers are killed (SIGKILL) and reaped before this returns: no child is
 *    left behind;
 *  - threads: a thread cannot be killed, so running tasks are only asked to stop (should_stop)
 *    and this call waits until they return; a task that never asks runs to its end (and its
 *    future still fails with MPX_ETERMINATED);
 *  - MPI: ranks cannot be killed alone; their futures fail at once, each rank is asked to stop
 *    (its running task sees should_stop), and this call waits until every rank has finished what
 *    it was sent and said goodbye.
 * MPX_EINVAL for NULL. Called on one of the executor's own threads (a task or a done-callback),
 * it terminates without waiting and returns MPX_ESTATE, as shutdown does. Calling it again, or
 * after shutdown, is fine. */
MPX_API int mpx_executor_terminate(mpx_executor *ex);

/* shutdown(wait = true, cancel_futures = false), then free. Futures stay valid until released.
 * From a done-callback (any executor's, on any thread) or a task of this executor, it is
 * deferred: it shuts down and returns MPX_OK at once, and a helper thread waits for the queued
 * tasks, joins the workers (the calling thread once its callback returned) and frees the executor.
 * mpx_finalize, and mpx_executor_create (except from a callback or an executor's thread), wait
 * until such deferred destroys are complete. Either way `ex` must not be used after the call. */
MPX_API int mpx_executor_destroy(mpx_executor *ex);

#ifdef __cplusplus
}
#endif
#endif
