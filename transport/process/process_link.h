/* process_link.h: the process link's state (proc_tp, one pworker per worker index), shared by
 * process.c (the link's ops: sending, flow control, polling, losses) and lifecycle.c (starting,
 * ending and reaping worker processes). Private to transport/process/; see process_impl.h for
 * the whole picture.
 *
 * Thread-safety: all of it belongs to the dispatcher thread (and to the thread starting the
 * executor before the dispatcher exists), except wake_fd, which any thread writes. No locks. */
#ifndef MPX_TRANSPORT_PROCESS_LINK_H
#define MPX_TRANSPORT_PROCESS_LINK_H

#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"
#include "config.h"
#include "os/chan.h"
#include "process_impl.h"
#include "progress.h"

/* Seconds a worker whose socket closed may live on before it is killed. */
#define CLOSE_GRACE 0.5

enum wstate {
  W_NONE,     /* no process (not started, or gone and not replaced) */
  W_SPAWNING, /* asked the fork server; no socket yet */
  W_LIVE,     /* socket open */
  W_CLOSED,   /* socket closed; waiting for the exit status */
};

/* One frame of a worker's out-queue: what its socket did not take at once. */
typedef struct oframe {
  struct oframe *next;
  size_t len, sent;
  int nfds; /* segments passed with the frame's first bytes (our own dups, closed once sent) */
  int fds[MPX__CHAN_FDS_PER_FRAME];
  uint8_t data[];
} oframe;

typedef struct pworker {
  enum wstate state;
  pid_t pid;
  int pidfd;    /* direct-fork mode: -1 once reaped */
  mpx__chan ch; /* fd -1 unless LIVE */
  oframe *oq, *oq_tail;
  size_t oq_bytes; /* queued in oq, at most cfg->max_worker_memory */
  bool replace;    /* start a replacement when it is lost */
  bool readable;   /* poll saw input: read before polling again */
  bool exited;     /* wait status known */
  int status;
  bool retiring; /* sent the retire mark */
  bool kill_sent;
  bool kill_pending; /* killed while SPAWNING: kill once the pid is known */
  bool snapped;      /* pt_kill noted what it ran then: the loss reports that */
  uint64_t snap_running;
  double kill_at; /* CLOSED without a status: kill at this time */
  char why[112];  /* set when the transport broke the connection */
  bool has_page;  /* the current process was given its progress page */
  int share_fd;   /* our end of its broker socket (os/share.h: shared objects made after
                     mpx_init, fetched on first use), -1 */
  bool respawn;   /* lost: start a replacement at the next poll (after the dispatcher handled the
                     loss on the old page) */
  size_t frame_mark; /* bytes of a half-read frame at frame_since */
  double frame_since;
} pworker;

typedef struct proc_tp {
  const mpx__config *cfg;
  mpx__limits lim; /* max_message lowered to cfg->max_worker_memory */
  int n;
  pworker *w;
  int wake_fd;
  int fs; /* fork-server session, -1: direct-fork mode */
  bool stopping;
  int rr; /* where the next scan for input starts */
  struct pollfd *pfd;
  int *pfd_w; /* pfd index -> worker (or -1 wake, -2 fork server) */
  int *pfd_kind;
  uint8_t *hello;
  size_t hello_len;
  long spin_ns;               /* 0 when CPUs are scarce */
  uint8_t *pages; /* n progress pages, page_sz apart: worker i's at a fixed address for the
                     link's life (lifecycle.c: mpx__pt_make_pages, new_page) */
  size_t page_sz;
  double stall;               /* seconds a frame may stay half-read before the worker is killed */
  char host[64];              /* this host's name, read once: workers run here */
  int spawn_errno;            /* why the last worker could not be started, 0 */
} proc_tp;

/* Worker i's progress page as this process maps it. */
static inline mpx__progress *mpx__pt_page(proc_tp *tp, int i) {
  return (mpx__progress *)(void *)(tp->pages + (size_t)i * tp->page_sz);
}

/* ---- process.c ---------------------------------------------------------------------------- */

/* Close the socket of a LIVE worker: it is CLOSED until its exit status arrives. With `why`
 * (it broke the protocol) it is killed now and `why` becomes the loss's detail. */
void mpx__pt_close_worker(proc_tp *tp, int i, const char *why);
/* Queue or write one frame to LIVE worker i (never blocks). MPX_EWORKER_LOST if it is gone or
 * was closed here (out of memory, unread input over max_worker_memory). */
int mpx__pt_send_raw(proc_tp *tp, int i, const uint8_t *data, size_t len);
/* The same, passing fds[0..nfds) with the frame (dup'd when the frame has to wait in the
 * out-queue; the caller keeps its own). */
int mpx__pt_send_fds(proc_tp *tp, int i, const uint8_t *data, size_t len, const int *fds, int nfds);

/* ---- lifecycle.c -------------------------------------------------------------------------- */

/* What ran out, for the errno of a failed socketpair/memfd/eventfd/fork/fd passing: messages
 * name the resource, not just strerror. */
const char *mpx__pt_ran_out(int e);
/* The hello (with the limits, the initializer and its args), and the address space of the
 * progress pages (each worker's own page is mapped there when it is attached); at start. */
int mpx__pt_make_hello(proc_tp *tp);
int mpx__pt_make_pages(proc_tp *tp);
/* Open the fork-server session (if there is a fork server) and start every worker, waiting for
 * the fork server to report each one. 0, or a code with mpx__set_errmsg saying which worker
 * could not be started and what ran out. */
int mpx__pt_start_workers(proc_tp *tp);
/* Start worker i (a replacement): fork it, or ask the fork server (SPAWNING until it answers). */
int mpx__pt_spawn(proc_tp *tp, int i);
/* Have worker i killed (by its reaper: the fork server, or our pidfd); once the pid is known when
 * it is still SPAWNING. */
void mpx__pt_kill_worker(proc_tp *tp, int i);
/* Handle everything the fork server has said (SPAWNED, SPAWN_FAILED, EXITED, its death). */
void mpx__pt_read_server(proc_tp *tp);
/* Direct-fork mode: worker i's pidfd is readable: reap it. */
void mpx__pt_reap_direct(proc_tp *tp, int i);
/* Kill workers that closed their socket but do not exit; returns the poll timeout (ms, -1:
 * none) until the next such deadline, at most `ms`. */
int mpx__pt_close_deadlines(proc_tp *tp, int ms);

#endif
