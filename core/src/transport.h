/* transport.h: the contract between the scheduler (core/) and a transport (transport/).
 *
 * One ops table per transport (the nng / Open MPI MCA pattern); a transport keeps its state behind
 * its own struct. Two kinds exist:
 *  - direct transports (threads) take futures through `submit`, run them and complete them with
 *    the future_impl.h calls; pointers pass through, nothing is encoded;
 *  - message transports (processes, MPI) move encoded mpx.Batch messages: the scheduler's
 *    dispatcher (dispatch.c) batches futures per worker, calls `send`, and turns what `poll`
 *    reports into completed futures. Workers run mpx__serve_batch (codec.h) on what they receive.
 * The scheduler never #ifdefs on a transport: it looks the table up by backend. */
#ifndef MPX_TRANSPORT_H
#define MPX_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpx/executor.h"
#include "mpx/topology.h"
#include "errmsg.h"
#include "gate.h"

/* Executor options with every default resolved. Owned by the executor; valid until destroy. */
typedef struct mpx__config {
  mpx_backend backend;
  int workers;
  mpx_binding binding;
  mpx_placement *places;         /* workers entries (unbound entries when binding is NONE) */
  const mpx_task *initializer;   /* NULL: none */
  const void *initargs;
  size_t initargs_len;
  long max_tasks_per_worker;     /* 0: unlimited */
  size_t max_payload;            /* never 0 once resolved */
  int retries;
  double task_timeout;           /* 0: none */
  int threads_per_rank;
  mpx__gate *gate;               /* bound on queued tasks; NULL when unbounded */
  const struct mpx_transport_ops *inner; /* the message transport under the dispatcher */
  /* Set by a message transport's configure (0 / NULL / false otherwise): */
  int slots;                     /* tasks run at once in all when not `workers` (MPI: threads over
                                    ranks); what mpx_executor_workers reports */
  bool no_kill;                  /* one worker cannot be ended (MPI): time limits are refused */
  bool polled;                   /* progress is made by polling threads (MPI): a waiter spins only
                                    briefly, so that it does not take their cores */
  const void *mpi_comm;          /* MPI: the session (mpi_impl.h) to run on; NULL: mpx_init's */
  int workers_opt;               /* options.workers as given (0: default), for configure/start */
  size_t max_worker_memory;      /* processes: bytes the parent holds for one worker at most (its
                                    receive buffer, its out-queue), never 0 once resolved; a frame
                                    over it is refused before it is read. 0 for other backends */
} mpx__config;

typedef struct mpx_transport mpx_transport;

/* What a message transport's poll reports. */
typedef enum mpx__event_kind {
  MPX__EV_NONE = 0,
  MPX__EV_MESSAGE,      /* a packed mpx.Batch from `worker` (results or control); data/len.
                           A worker's first message is its Control READY. Untrusted: the
                           dispatcher checks it (see dispatch.c, 'Trust'). */
  MPX__EV_WORKER_LOST,  /* `worker` died or exited; `detail` says how (pid and signal, exit
                           status, rank). A replacement, if any, announces itself with READY. */
} mpx__event_kind;

typedef struct mpx__event {
  mpx__event_kind kind;
  int worker;
  const uint8_t *data; /* MPX__EV_MESSAGE: valid until the next poll */
  size_t len;
  char detail[160];
  /* MPX__EV_WORKER_LOST: when `running_known`, the worker published what it served and
   * `running` is the call id of the task it was running, or had run last in a batch whose results
   * it was still packing (0: none); only that task is charged a retry, the rest of its window never
   * started and goes back to the queue. Otherwise every task it held is charged. For a worker the
   * dispatcher ended (kill), `running` is what it ran when kill was called, not at its death. */
  bool running_known;
  uint64_t running;
} mpx__event;

/* Who a message transport's worker is, from the transport's own knowledge (the pid it forked or
 * the fork server reported, the rank it sends to, a host name it looked up itself, the threads
 * it started the worker with), never from anything the worker sent: a worker runs user code. */
typedef struct mpx__peer {
  int pid;       /* process id, 0 when not known (MPI ranks) */
  int rank;      /* MPI rank, -1 for a process worker */
  int slots;     /* tasks it runs at once, >= 1 */
  char host[64]; /* "" when not known */
} mpx__peer;

typedef struct mpx_transport_ops {
  const char *name; /* "threads", "processes", "mpi" */

  /* Create the transport and start cfg->workers workers. Direct transports run the initializer in
   * each worker and block until all are up: MPX_EINIT if one failed (mpx__set_errmsg says where).
   * Message transports' workers (and every replacement) run mpx__serve_init first and send a
   * Batch with Control READY (with an Error if it failed) before serving; the dispatcher waits
   * for those. Called once. */
  int (*start)(mpx_transport **self, const mpx__config *cfg);

  /* Direct transports: queue `f` (PENDING, the transport owns the scheduler's reference and drops
   * it after completing or cancelling f), or MPX_ESHUTDOWN after close (the caller keeps f). Any
   * thread, concurrently; never blocks. NULL for message transports. */
  int (*submit)(mpx_transport *self, mpx_future *f);

  /* Direct transports: refuse every later submit with MPX_ESHUTDOWN; no submit racing with close
   * may be queued after it returns. Idempotent. */
  void (*close)(mpx_transport *self);

  /* Direct transports: cancel every queued future that has not started; returns how many. */
  size_t (*cancel_queued)(mpx_transport *self);

  /* Message transports: send one packed mpx.Batch to `worker`. Called only by the dispatcher
   * thread; may block until the bytes are handed over. MPX_EWORKER_LOST if the worker is gone. */
  int (*send)(mpx_transport *self, int worker, const uint8_t *data, size_t len);

  /* Message transports: wait up to timeout_ms (0: don't block) for one event. Dispatcher thread
   * only. Returns 0 with ev->kind set (MPX__EV_NONE on timeout) or a negative code. */
  int (*poll)(mpx_transport *self, mpx__event *ev, int timeout_ms);

  /* Message transports: end `worker` now (task time limit, failed initializer); its loss is then
   * reported by poll, and a replacement started when `replace`. Dispatcher thread only. */
  int (*kill)(mpx_transport *self, int worker, bool replace);

  /* Message transports: make a poll in progress (or the next one) return soon. Any thread. */
  void (*wake)(mpx_transport *self);

  /* Stop the workers. Direct transports finish what is queued first. Message transports are
   * stopped by the dispatcher after it sent every live worker a Control SHUTDOWN batch: they stop
   * replacing workers and, with wait, reap them (killing any that does not exit within a few
   * seconds). With wait, block until every worker is gone. Idempotent. */
  void (*stop)(mpx_transport *self, bool wait);

  /* Free everything (after stop(self, true)). */
  void (*destroy)(mpx_transport *self);

  /* Optional, message transports: called by the executor before start, with the options resolved
   * except that workers is still the user's (0: the transport's default) and places are not
   * computed yet. Sets workers (and slots, no_kill) for this transport, may lower max_payload, or
   * refuses options it cannot honour (a code and mpx__set_errmsg). */
  int (*configure)(mpx__config *cfg);

  /* Message transports: fill *out for the current process of `worker` (the dispatcher calls it
   * when it accepts that process's READY, its first message). Dispatcher thread only. */
  int (*peer)(mpx_transport *self, int worker, mpx__peer *out);
} mpx_transport_ops;

extern const mpx_transport_ops mpx__thread_transport;
/* The dispatcher (dispatch.c): a direct-style table that batches futures onto cfg->inner. */
extern const mpx_transport_ops mpx__dispatch_transport;
/* The process and MPI transports: always built in (strong references, so that a static link
 * pulls them in; see init.h). */
extern const mpx_transport_ops mpx__process_transport;
extern const mpx_transport_ops mpx__mpi_transport;

/* mpx_executor_create on a given MPI session (mpx_comm_executor); NULL: as mpx_executor_create. */
int mpx__executor_create_on(mpx_executor **out, const mpx_options *opt, const void *mpi_comm);


#endif
