/* progress.h: the progress page a message transport may share with each worker, and the claim
 * protocol on it. Internal to libmpx.
 *
 * A page belongs to one worker process: the process transport makes it a 0600 memfd per worker
 * (a replacement gets a fresh one), mapped by the parent and by that worker only, so no worker
 * can write another's page. Fields:
 *  - heartbeat: bumped every MPX__BEAT_MS by a small thread in the worker; it stops when the
 *    process is stopped (SIGSTOP, a debugger) or the whole process hangs, and goes on during a
 *    long task. The dispatcher reads it to detect a stalled worker;
 *  - running: the call id of the task being served; cleared once a batch's results are packed,
 *    before they are sent. The dispatcher charges a dead worker's retry to `running` only, and
 *    times a task with a limit from when it first sees its id there (it looks every
 *    limit_interval, 10 ms by default: no clock is read per task in the worker);
 *  - claim[]: one word per task sent, indexed by the task's sequence number in that worker's
 *    stream (both sides count the tasks of every Batch in order) modulo MPX__CLAIM_RING. The
 *    parent stores the task's call id there before it sends the task (release). Before running
 *    a task the worker CASes its word from that call id to MPX__CLAIM_STARTED; the parent may
 *    CAS it from the call id to MPX__CLAIM_TAKEN instead (a user's cancel, or the dispatcher taking
 *    a task back to run it elsewhere). Exactly one CAS wins: a task the worker did not win is
 *    skipped (no Result is sent for it), a task the parent did not win is running or ran.
 *    A word is reused only when it no longer holds a call id (STARTED, TAKEN or 0): a stale
 *    entry the worker reaches later then fails its CAS and is skipped, as it must be, since
 *    only a task taken back can be left behind. Call ids are future addresses (>= 4096), so
 *    they never equal the markers.
 * Memory orderings: the parent's store of a call id is a release (the worker sees it by the
 * time it reads the task anyway: the socket write and read order them, but the release costs
 * nothing on x86); both CASes are acq_rel (the winner's later writes, the task's results or the
 * cancelled state, come after its win); heartbeat and running are relaxed (they
 * are hints, read racily by design: a stale value costs at most one late or early decision,
 * which the next look corrects).
 *
 * Remote pages (MPI ranks, which share no memory with the root): the dispatcher keeps a page of
 * its own per rank, used as the claim words of the futures it sent there, but the rank's own
 * claim words (mpi_pool.c) decide, so the words here say what the root knows: a sent task's word
 * holds its call id | MPX__CLAIM_REMOTE (| MPX__CLAIM_CANCEL once a cancel asked for it), and
 * becomes STARTED when the rank says it started the task (a Control STARTED, a result, or a
 * RETURNED that left it out), TAKEN when the rank gave it back. Only the dispatcher writes them,
 * except a canceller's CAS adding MPX__CLAIM_CANCEL; such futures carry MPX__F_REMOTE
 * (future_impl.h), set by the dispatcher, never read from a page, so a process worker that
 * writes these bits into its own page gains nothing. The rank wins or loses each cancel: see
 * mpx__disp_cancel_remote (dispatch_pages.c). */
#ifndef MPX_PROGRESS_H
#define MPX_PROGRESS_H

#include <stdatomic.h>
#include <stdint.h>

/* Claim words per page: at least the largest window (dispatch.c's WINDOW_MAX tasks per worker
 * slot; process workers have one slot) times two, so that a slot is normally free again long
 * before it comes round. */
#define MPX__CLAIM_RING    4096
#define MPX__CLAIM_STARTED ((uint64_t)1)
#define MPX__CLAIM_TAKEN   ((uint64_t)2)
/* Remote pages only: the word's task was sent (the rank has not said it started it), and a
 * cancel asked the rank for it. Call ids and addresses stay below bit 48. */
#define MPX__CLAIM_REMOTE ((uint64_t)1 << 63)
#define MPX__CLAIM_CANCEL ((uint64_t)1 << 62)
/* The address a call id names (the dispatcher tags ids with a number in their top 16 bits): what
 * a claim word holds. */
#define MPX__CALL_ADDR(id) ((id) & (((uint64_t)1 << 48) - 1))
/* Pages are mapped at multiples of this (a power of two, at least sizeof(mpx__progress)), so that
 * the page of a claim word is found from the word's address alone (mpx__progress_of): a cancel
 * holds only the future, whose claim word points into its worker's page. */
#define MPX__PROGRESS_ALIGN ((size_t)64 << 10)
/* Heartbeat period of a worker, milliseconds. */
#define MPX__BEAT_MS 50

typedef struct mpx__progress {
  _Atomic uint64_t heartbeat;
  _Atomic uint64_t running;
  /* Stop requests (mpx_task_should_stop, stop.c). `stop`: the call address (MPX__CALL_ADDR) of
   * the task the parent asks to stop, written by a user's mpx_future_cancel of a running task;
   * the worker clears it before it claims each task, so a request is only ever seen by the task
   * it names (the canceller writes it only after it saw that task's claim STARTED). `stop_all`:
   * set once by the dispatcher when the executor shuts down with cancel_futures or terminates:
   * every task from then on is asked to stop. Relaxed: flags a task polls. */
  _Atomic uint64_t stop;
  _Atomic uint64_t stop_all;
  uint64_t pad[4]; /* the claim ring starts on its own cache line */
  _Atomic uint64_t claim[MPX__CLAIM_RING];
} mpx__progress;

_Static_assert(sizeof(mpx__progress) <= MPX__PROGRESS_ALIGN, "a page fits its alignment");

/* The page a claim word lies in. */
static inline mpx__progress *mpx__progress_of(const void *claim_word) {
  return (mpx__progress *)((uintptr_t)claim_word & ~(uintptr_t)(MPX__PROGRESS_ALIGN - 1));
}

/* The worker's side: claim task number `seq` with call id `id` before running it. 1: run it;
 * 0: the parent has it (TAKEN, or the word was reused for a later task after a take-back): skip
 * it; -1: the word holds 0 or STARTED, which the protocol never leaves in a word the worker has
 * not reached yet: the page was overwritten (by a task of this worker), and the worker can no
 * longer tell what it may run. */
static inline int mpx__claim_start(mpx__progress *p, uint64_t seq, uint64_t id) {
  uint64_t seen = id;
  if (atomic_compare_exchange_strong_explicit(&p->claim[seq % MPX__CLAIM_RING], &seen,
                                              MPX__CLAIM_STARTED, memory_order_acq_rel,
                                              memory_order_acquire))
    return 1;
  return seen == MPX__CLAIM_TAKEN || seen > MPX__CLAIM_TAKEN ? 0 : -1;
}

struct mpx_future;
/* Cancel a SENT future with MPX__F_REMOTE (future.c's mpx_future_cancel, any thread): ask its
 * rank for it and wait for the answer. MPX_OK: the rank gave it back, it is CANCELLED and will
 * never run; MPX_ESTATE: the rank had started it (or it is done), or no answer came within the
 * executor's stall_timeout (mpx_errmsg says which); 1: the future moved meanwhile, look again. */
int mpx__disp_cancel_remote(struct mpx_future *f);

#endif
