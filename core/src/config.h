/* config.h: an executor's options with every default resolved (mpx__config), and the capability
 * word a transport declares (MPX__CAP_*), which is how the scheduler tells transports apart.
 *
 * The executor (executor.c) fills a config once, before the transport starts; a link's configure
 * (link.h) may adjust the fields it names there. From then on it is read-only and valid until the
 * executor is destroyed: runners, the dispatcher and links keep a pointer to it and read it from
 * any of their threads without locking. */
#ifndef MPX_CONFIG_H
#define MPX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "gate.h"
#include "mpx/executor.h"
#include "mpx/topology.h"

/* What a transport can do, declared in its descriptor (registry.h). The executor and the
 * dispatcher test these bits, never a backend: */
enum {
  /* Arguments and results are encoded into messages (processes, MPI): max_payload applies to
   * them, and a map chunk holds at most MPX__DEFAULT_MAX_ITEMS items (codec.h). */
  MPX__CAP_ENCODES = 1u << 0,
  /* One worker can be ended alone (processes): time limits (task_timeout, a per-submit timeout)
   * are enforced by ending the worker that overran. Without it they are refused with MPX_EPERM
   * (executor.c). */
  MPX__CAP_KILL_ONE = 1u << 1,
  /* Progress is made by polling threads (MPI): a waiter spins only briefly before it sleeps, so
   * that it does not take their cores. */
  MPX__CAP_POLLED = 1u << 2,
  /* The link opens endpoints over a handle the user gives (MPI: a communicator), with the
   * endpoint ops of link.h (mpx_comm_executor). */
  MPX__CAP_ENDPOINT = 1u << 3,
  /* A worker can be lost alone and replaced, and the task it ran can be run again (processes):
   * retries apply. Without it (a thread's task is never lost with its worker; a lost MPI rank
   * ends the job) retries > 0 are refused with MPX_EPERM. */
  MPX__CAP_RETRY = 1u << 4,
  /* A worker can be replaced after max_tasks_per_worker tasks (threads, processes); without it
   * (MPI ranks) the option is refused with MPX_EPERM. */
  MPX__CAP_RECYCLE = 1u << 5,
  /* Big payloads may travel out of band (processes: the data plane, os/seg.h): the link has the
   * send_fds and take_fd ops (link.h), and the dispatcher sends an argument of at least
   * MPX__SEG_MIN bytes as a sealed memfd segment and takes results that came as one. */
  MPX__CAP_SHM = 1u << 7,
  /* Big payloads may travel as their own messages (MPI): the link has the send_parts and
   * take_payload ops (link.h); an argument of at least MPX__SEG_MIN bytes is sent from the
   * caller's buffer without a copy into the batch, a result that came so is received into its
   * own buffer, which the future keeps. */
  MPX__CAP_OOB = 1u << 8,
  /* Workers without a progress page give back, when sent a Control TAKEBACK, the tasks they hold
   * and have not started, in a Control RETURNED (MPI ranks): the dispatcher re-queues them for
   * idle workers, as it takes tasks back through the claim words of a page (progress.h). */
  MPX__CAP_TAKEBACK = 1u << 6,
};

struct mpx__transport;
struct mpx__link_ops;

/* Executor options with every default resolved. Owned by the executor; valid until destroy. */
typedef struct mpx__config {
  mpx_backend backend;                    /* never AUTO once resolved */
  const struct mpx__transport *transport; /* the descriptor that backend names (registry.h) */
  unsigned caps;                          /* transport->caps */
  const struct mpx__link_ops *link;       /* the link under the dispatcher; NULL for a runner */
  int workers;
  mpx_binding binding;
  mpx_placement *places;       /* workers entries (unbound entries when binding is NONE) */
  const mpx_task *initializer; /* NULL: none */
  const void *initargs;
  size_t initargs_len;
  long max_tasks_per_worker; /* 0: unlimited */
  size_t max_payload;        /* never 0 once resolved */
  int retries;
  double task_timeout; /* 0: none */
  double stall_timeout; /* seconds without a heartbeat (or with a frame half-read) before a worker
                           counts as stalled and is killed (links with progress pages); never 0
                           once resolved */
  int threads_per_rank;
  int root_threads; /* MPI: options.root_threads as given (-1 none, 0 default, k) */
  mpx__gate *gate; /* bound on queued tasks; NULL when unbounded */
  /* An endpoint the link opened (link.h: open_endpoint), which only that link understands (MPI:
   * the session over the user's communicator); NULL: the link's own default (MPI: mpx_init's). */
  void *endpoint;
  /* Set by a link's configure (0 otherwise): */
  int slots;       /* tasks run at once in all when not `workers` (MPI: threads over ranks); what
                      mpx_executor_workers reports */
  int workers_opt; /* options.workers as given (0: default), for configure/start */
  /* processes: bytes the parent holds for one worker at most (its receive buffer, its
   * out-queue); a frame over it is refused before it is read. options.max_worker_memory (its
   * floor checked) before configure; the process link's configure resolves 0 (never 0 after it),
   * other links' configure set 0 (MPI); 0 for runners. */
  size_t max_worker_memory;
  size_t arg_reserve; /* options.arg_reserve: each worker's first argument segment, made at its
                         READY (dataplane.c); 0 none */
  /* options.silent_after, sweep_interval, limit_interval, never 0 once resolved (dispatch.c) */
  double silent_after, sweep_interval, limit_interval;
} mpx__config;

#endif
