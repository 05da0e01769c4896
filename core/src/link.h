/* link.h: the message contract, for links that move encoded batches to workers elsewhere (the
 * process transport, transport/process/; the MPI transport, transport/mpi/).
 *
 * A link never sees a future. The dispatcher (dispatch.c) batches futures per worker into packed
 * mpx.Batch messages, calls `send`, and turns what `poll` reports into completed futures. Workers
 * run mpx__serve_init and mpx__serve_batch (codec.h) on what they receive, and send a Batch with
 * Control READY (with an Error if the initializer failed) before serving; the dispatcher waits for
 * those. Calling threads: configure and start run on the thread creating the executor; send,
 * poll, kill, peer and stop on the dispatcher thread only; wake on any thread; destroy on the
 * thread destroying the executor. So a link needs no lock between its ops except around what wake
 * touches. What a link can do beyond this (end one worker, progress by polling, endpoints) is
 * in its descriptor's capability word (config.h), not in which ops are set: every op here is set
 * except the optional ones marked so. */
#ifndef MPX_LINK_H
#define MPX_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "errmsg.h"

typedef struct mpx__link mpx__link;

/* What a link's poll reports. */
typedef enum mpx__event_kind {
  MPX__EV_NONE = 0,
  MPX__EV_MESSAGE,     /* a packed mpx.Batch from `worker` (results or control); data/len.
                          A worker's first message is its Control READY. Untrusted: the
                          dispatcher checks it (see dispatch.c, 'Trust'). */
  MPX__EV_WORKER_LOST, /* `worker` died or exited; `detail` says how (pid and signal, exit
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

/* Who a link's worker is, from the link's own knowledge (the pid it forked or the fork server
 * reported, the rank it sends to, a host name it looked up itself, the threads it started the
 * worker with), never from anything the worker sent: a worker runs user code. */
typedef struct mpx__peer {
  int pid;       /* process id, 0 when not known (MPI ranks) */
  int rank;      /* MPI rank, -1 for a process worker */
  int slots;     /* tasks it runs at once, >= 1 */
  char host[64]; /* "" when not known */
} mpx__peer;

typedef struct mpx__link_ops {
  /* Optional. Called by the executor before start, with the options resolved except that workers
   * is still the user's (0: the link's default) and places are not computed yet. Sets workers (and
   * slots) for this link, may lower max_payload, or refuses options it cannot honour (a code and
   * mpx__set_errmsg). Does not block. */
  int (*configure)(mpx__config *cfg);

  /* Create the link and start cfg->workers workers (and a replacement for every one that is
   * lost, as long as the link replaces workers). May block while workers are spawned or told to
   * start, not until they are READY. Called once. */
  int (*start)(mpx__link **self, const mpx__config *cfg);

  /* Send one packed mpx.Batch to `worker`. May block until the bytes are handed over.
   * MPX_EWORKER_LOST if the worker is gone (poll then reports the loss). */
  int (*send)(mpx__link *self, int worker, const uint8_t *data, size_t len);

  /* Wait up to timeout_ms (0: don't block) for one event. Returns 0 with ev->kind set
   * (MPX__EV_NONE on timeout or after a wake) or a negative code. */
  int (*poll)(mpx__link *self, mpx__event *ev, int timeout_ms);

  /* End `worker` now (task time limit, failed initializer, malformed message); its loss is then
   * reported by poll, and a replacement started when `replace`. Does not wait for it to go. A
   * link without MPX__CAP_KILL_ONE answers MPX_EPERM. */
  int (*kill)(mpx__link *self, int worker, bool replace);

  /* Fill *out for the current process of `worker` (the dispatcher calls it when it accepts that
   * process's READY, its first message). Dispatcher thread only. */
  int (*peer)(mpx__link *self, int worker, mpx__peer *out);

  /* Make a poll in progress (or the next one) return soon. Any thread; never blocks. */
  void (*wake)(mpx__link *self);

  /* Called after the dispatcher sent every live worker a Control SHUTDOWN batch: stop replacing
   * workers and, with wait, reap them (killing any that does not exit within a few seconds) and
   * block until every worker is gone. Idempotent. */
  void (*stop)(mpx__link *self, bool wait);

  /* Free everything (after stop(self, true)). */
  void (*destroy)(mpx__link *self);

  /* Optional, with MPX__CAP_SHM (the data plane): send as `send`, passing fds[0..nfds) (at most
   * MPX__CHAN_FDS_PER_FRAME; the caller closes its own copies after the call) with the batch; and
   * take the oldest fd worker i passed that nobody took yet (the caller owns it), -1 if none.
   * Dispatcher thread only. */
  int (*send_fds)(mpx__link *self, int worker, const uint8_t *data, size_t len, const int *fds,
                  int nfds);
  int (*take_fd)(mpx__link *self, int worker);

  /* Optional, with MPX__CAP_OOB (big payloads as their own messages): send as `send`, then each
   * of parts[0..n) as its own message, from the caller's memory (valid until the tasks that
   * carry them are done); and take the next such message worker i sent (a worker sends them
   * before the batch that declares them), which must be `len` bytes (len <= max is checked by
   * the caller), as *out (a result-pool block, os/seg.h: mpx__seg_pool_free). take_payload
   * MPX_EPROTO at once when there is none or it has another size: it never waits. Dispatcher
   * thread only. */
  int (*send_parts)(mpx__link *self, int worker, const uint8_t *data, size_t len,
                    const struct iovec *parts, int n);
  int (*take_payload)(mpx__link *self, int worker, size_t len, void **out);
  /* Optional: worker i's progress page (progress.h) as mapped in this process, at an address
   * fixed until destroy (a replacement's fresh page is mapped there once the loss of the previous
   * worker was reported and handled); NULL for a link without pages (MPI), whose futures then
   * count as running once sent. Dispatcher thread only. */
  struct mpx__progress *(*progress)(mpx__link *self, int worker);
  /* Optional, for links without progress pages (MPI): ask worker i to stop the task with call id
   * `id`, or every task (MPX__HALT_ALL, codec.h), through mpx_task_should_stop. Never blocks
   * (a small message queued). Dispatcher thread only. */
  int (*halt)(mpx__link *self, int worker, uint64_t id);

  /* Optional, with MPX__CAP_ENDPOINT: endpoints over a handle the user gives (MPI: a pointer to a
   * communicator), on which executors are then created (cfg->endpoint).
   * open_endpoint is collective over the members the handle names, called by one thread of each:
   * it returns MPX_MAIN on the `root` member with *ep for cfg->endpoint, MPX_WORKER on the others
   * with *ep for serve_endpoint, or a negative code (mpx__set_errmsg) on every member.
   * serve_endpoint, on a non-root member: serve the executor the root creates on ep, block until
   * it is over, free ep; returns MPX_WORKER or a negative code.
   * close_endpoint, on the root after the executor was created on ep or failed to be: drop the
   * opener's hold on ep (a running executor keeps its own); if no executor ever started on it,
   * tell the other members, so that their serve_endpoint returns. */
  int (*open_endpoint)(const void *handle, int root, void **ep);
  int (*serve_endpoint)(void *ep);
  void (*close_endpoint)(void *ep);
} mpx__link_ops;

#endif
