/* runner.h: the direct contract, for runners that take futures (the thread transport,
 * transport/thread.c; the dispatcher, dispatch.c, which runs futures over a link).
 *
 * The executor (executor.c) is the only caller. It starts a runner once, submits futures to it
 * from any number of threads, and at shutdown calls close, maybe cancel_queued, then stop, and
 * finally destroy. A runner completes futures with the future_impl.h calls; pointers pass
 * through, nothing is encoded. A runner that holds queued tasks leaves the gate (cfg->gate,
 * gate.h) when a task starts or is cancelled, and returns to it when a started task goes back to
 * the queue; the gate is changed only through gate.h. A runner keeps its state behind its own
 * struct (mpx__runner is opaque here) and documents its own locking. */
#ifndef MPX_RUNNER_H
#define MPX_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "errmsg.h"
#include "mpx/future.h"

typedef struct mpx__runner mpx__runner;

typedef struct mpx__runner_ops {
  /* Create the runner for cfg and start cfg->workers workers. The thread transport runs the
   * initializer in each worker and blocks until all are up: MPX_EINIT if one failed
   * (mpx__set_errmsg says where); the dispatcher starts its link and blocks until every worker
   * sent READY. Called once, by the thread creating the executor. */
  int (*start)(mpx__runner **self, const mpx__config *cfg);

  /* Queue `f` (PENDING; the runner owns the scheduler's reference and drops it after completing
   * or cancelling f), or MPX_ESHUTDOWN after close (the caller keeps f). Any thread,
   * concurrently; never blocks. */
  int (*submit)(mpx__runner *self, mpx_future *f);

  /* Refuse every later submit with MPX_ESHUTDOWN; no submit racing with close may be queued
   * after it returns. Any thread; idempotent; does not block on running tasks. */
  void (*close)(mpx__runner *self);

  /* Cancel every queued future that has not started; returns how many. Any thread, after close;
   * does not block on running tasks. */
  size_t (*cancel_queued)(mpx__runner *self);

  /* Stop the workers after they finished what is queued. With wait, block until every worker is
   * gone; without, only ask. The thread shutting the executor down; idempotent. */
  void (*stop)(mpx__runner *self, bool wait);

  /* Free everything (after stop(self, true)). The thread destroying the executor. */
  void (*destroy)(mpx__runner *self);

  /* mpx_executor_terminate, after close and cancel_queued: stop the tasks that are running now;
   * each one's future fails with MPX_ETERMINATED (one that already finished keeps its outcome).
   * Threads cannot be killed: their tasks are asked to stop (mpx_task_should_stop) and fail when
   * they return. The dispatcher kills the workers of a link that can end one (processes); on
   * MPI the ranks are asked to stop (their tasks see mpx_task_should_stop) and the futures they
   * hold fail at once. Does not wait: stop(self, true) follows. Any thread; once. */
  void (*terminate)(mpx__runner *self);
} mpx__runner_ops;

/* The dispatcher (dispatch.c): a runner that batches futures onto cfg->link (link.h). */
extern const mpx__runner_ops mpx__dispatch_runner;

#endif
