/* process_impl.h: what the three parts of the process transport share (private to
 * transport/process/).
 *
 * The process transport runs tasks in forked processes of this same binary (so they have the
 * same task registry). Each worker talks to the dispatcher (core/src/dispatch.c) over its own
 * AF_UNIX socketpair carrying chan frames (core/src/os/chan.h: a 4-byte length, then one packed
 * mpx.Batch). Node-local only: no listening socket, no named shared-memory object. Payloads of
 * at least MPX__SEG_MIN bytes travel beside the frame as sealed memfd segments passed with
 * SCM_RIGHTS (the data plane: os/seg.h, core/src/dataplane.c, serve.c): an argument is mapped by
 * the worker and read in place by the task, a result is written in place by the task
 * (mpx_buf_reserve) and read in place by the caller until the future is released. A dead side's
 * segments go with its fds and mappings: nothing has a name, nothing is left. Three programs make
 * it up:
 *  - forkserver.c: the fork server, a single-threaded process forked by mpx_init that forks every
 *    worker and reaps them; its message protocol (fs_msg over SOCK_SEQPACKET, fds passed with
 *    SCM_RIGHTS) and the client calls the transport uses (mpx__fs_session, mpx__fs_send/recv);
 *  - worker.c: the worker process: its progress page and heartbeat, the hello, the initializer,
 *    the serve loop;
 *  - process.c: the transport state machine the dispatcher drives, and its ops table; with
 *    lifecycle.c (starting, ending and reaping worker processes) and process_link.h (the state
 *    those two share).
 *
 * Progress pages (core/src/progress.h). Each worker process gets its own page: a new 0600 memfd,
 * passed with SCM_RIGHTS in an FS_PROGRESS message before the hello, mapped by the transport and
 * by that worker only (MADV_DONTFORK keeps the transport's mappings out of directly forked
 * workers; fork-server workers never had them), so no worker can write another's page. The
 * transport maps worker i's page at a fixed address (reserved at start, unmapped at destroy); a
 * replacement's fresh memfd is mapped over it (MAP_FIXED, one step) when the replacement is
 * attached, which happens only after the previous worker's loss was reported and handled by the
 * dispatcher (the loss marks the slot for respawn; the next poll starts it). So a future's pointer
 * into a page never dangles, and the dispatcher decides the claims of a dead worker's window on
 * that worker's own page. In the page:
 *  - a heartbeat, bumped every MPX__BEAT_MS by a thread in the worker; the dispatcher kills a
 *    worker whose beat stops for stall_timeout (stopped, or the whole process hung);
 *  - running: serving stores each task's call id there as it starts; the worker clears running
 *    once the batch's results are packed, before it sends them (so the word never outlives the
 *    call ids it names). The loss event carries what a dead worker left there, so the dispatcher
 *    charges a retry to that task only: a death outside serving a batch charges nothing, one
 *    while serving charges exactly one task, so a task that kills every worker it runs on still
 *    runs out of retries. When the dispatcher ends a worker (a protocol violation, a time limit,
 *    a stall), the word is read at that moment (pt_kill), so the charge goes to the task that ran
 *    when the decision was made, not to one the worker started afterwards. The dispatcher also
 *    times a task with a limit from when it first sees it there;
 *  - the claim ring: the dispatcher writes each task's call id before sending it, the worker
 *    claims it before running it and skips it if this process (a cancel, a take-back for an idle
 *    worker) claimed it first.
 * Shared objects made after mpx_init (os/share.h): after the page, each worker gets an FS_SHARE
 * message with its end of a SOCK_SEQPACKET broker socket (none if it could not be made); the
 * transport polls its own end beside the worker's channel and answers with mpx__share_serve,
 * which sends an object's memfd only for the exact address of a live object this process made.
 * A worker that misuses the socket loses it; nothing else changes for it.
 *
 * A worker for which no page can be made (memfd_create or mmap failed) is killed at once and
 * reported lost, its loss saying what ran out ("could not get its progress page: out of file
 * descriptors ...").
 *
 * Nothing here holds state; see each file for its own locking. */
#ifndef MPX_TRANSPORT_PROCESS_IMPL_H
#define MPX_TRANSPORT_PROCESS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "mpx/topology.h"
#include "registry.h"

/* Receive buffers larger than this are freed after a frame (a 64 MiB result does not stay). */
#define KEEP_BUF ((size_t)1 << 20)

/* ---- the fork server's messages ----------------------------------------------------------- */

enum {
  FS_SESSION = 1,  /* transport -> server on the main socket, with the session's socket */
  FS_SPAWN,        /* transport -> server: fork worker `index` */
  FS_KILL,         /* transport -> server: send signal `status` to `pid` */
  FS_SPAWNED,      /* server -> transport: `index` is `pid`, with the parent's socket end */
  FS_SPAWN_FAILED, /* server -> transport: errno in `status` */
  FS_EXITED,       /* server -> transport: `pid` was reaped, wait status in `status` */
  FS_PROGRESS,     /* not the server's: sent before a worker's hello, with its progress page */
  FS_SHARE         /* not the server's: after FS_PROGRESS, the worker's end of its broker
                      socket (os/share.h), or no fd when none could be made */
};

typedef struct fs_msg {
  int32_t op, index, pid, status; /* status: wait status (EXITED) or errno (SPAWN_FAILED) */
} fs_msg;

/* Send `m` with an optional fd (SCM_RIGHTS; -1: none). 0 or -1 (errno). */
int mpx__fs_send(int sock, const fs_msg *m, int fd);
/* Receive one message and an optional fd (*fd = -1 if none). 1 got one, 0 EOF, -1 error (errno;
 * EAGAIN on a nonblocking socket, or with MSG_DONTWAIT in flags, when there is nothing to read).
 * A whole message whose fd could not be installed (this process is out of file descriptors) is
 * 1 with *fd = -1 and errno = EMFILE. */
int mpx__fs_recv(int sock, fs_msg *m, int *fd, int flags);
/* Open a session with the fork server: the returned socket receives SPAWNED/EXITED for the
 * workers asked through it. -1 if there is no fork server (or it is gone; errno 0) or the session
 * could not be made (errno: socketpair or the fd passing failed). Any thread. */
int mpx__fs_session(void);

/* The transport's init and fini hooks (the process-wide fork server): mpx_init starts it while the
 * process has one thread, unless an MPI job claimed the process; mpx_finalize ends it. */
int mpx__procs_init(mpx__init_ctx *ctx);
int mpx__procs_fini(mpx__init_ctx *ctx);

/* ---- the worker --------------------------------------------------------------------------- */

#define HELLO_MAGIC 0x6d707868u /* "mpxh" */

/* The first frame a worker receives: who it is and how to start. initargs follow. */
typedef struct hello {
  uint32_t magic;
  int32_t index;
  int64_t max_tasks;
  uint64_t max_payload;
  uint64_t max_message; /* replies stay under it: the parent's max_worker_memory */
  uint32_t init_id;     /* initializer's task id */
  uint32_t has_init;
  uint64_t initargs_len;
  int64_t spin_ns; /* how long to look for the next batch before sleeping */
  uint64_t seg_min; /* results of at least this many bytes go out of band (0: never) */
  mpx_placement place;
} hello;

/* The worker process, in a child just forked by mpx__spawn: serve on socket `fd` until told to
 * stop or the parent goes away. Never returns. */
void mpx__worker_main(int fd) __attribute__((noreturn));

#endif
