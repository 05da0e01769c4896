/* mpi_ranks.c: which ranks serve the root, for the MPI transport's root half (mpi.c): the worker
 * index -> comm rank map (the ranks in order skipping the root; with node leaders the leaders and
 * lone ranks, mpi_session.c), the per-executor plan of ranks and task threads, the ranks an
 * executor abandoned (mpi.c's kill without replace: a rank that stopped answering for
 * stall_timeout), which no later executor uses, and the session's end: TAG_STOP to every rank the
 * root serves (abandoned ones heard it at their executor's stop), then a bounded wait for the
 * abandoned ones.
 *
 * Guarantees: a rank abandoned by one executor is left out of every later plan (wmap), and is
 * told the session is over (TAG_STOP) once, at that executor's stop, so that one that resumes
 * ends its executor (mpi_worker.c: it then says BYE and finalises). mpx__mpi_await_lost never
 * waits longer than the longest stall_timeout a rank was abandoned after, and says which rank did
 * not come back.
 *
 * Thread-safety: root only, on the thread that drives MPI (mpi.c's rule); the session's lost,
 * resumed and wmap arrays change between executors (exclude_lost, at an executor's stop) or on
 * the dispatcher thread (kill, and try_recv marking a BYE), never concurrently. */
#include <stdatomic.h>
#include <stdlib.h>

#include "errmsg.h"
#include "mpi_impl.h"
#include "mpx/error.h"
#include "os/clock.h"
#include "os/log.h"

/* Tell every worker rank of the current plan but those in `skip` (may be NULL) that the session
 * is over: the leaders pass it on. (Ranks an executor abandoned are out of the plan: they were
 * told at that executor's stop, mpx__mpi_stop_lost.) */
void mpx__mpi_send_stop(mpx__mpi_session *s, const bool *skip) {
  for (int i = 0; i < s->nworkers; i++) {
    int r = mpx__mpi_worker_rank(s, i);
    if (!(skip && skip[r])) {
      MPI_Send(NULL, 0, MPI_BYTE, r, MPX__TAG_STOP, s->comm);
      mpx__mpi_ring(s, r);
    }
  }
}

/* At the stop of the executor that abandoned comm rank r: the session is over for it (TAG_STOP),
 * so that if it resumes it ends that executor, says BYE and finalises (mpi_worker.c), rather than
 * wait for a SHUTDOWN it will never get; it serves no later executor anyway. */
void mpx__mpi_stop_lost(mpx__mpi_session *s, int r) {
  MPI_Send(NULL, 0, MPI_BYTE, r, MPX__TAG_STOP, s->comm);
  mpx__mpi_ring(s, r);
}

/* Worker i's comm rank: the ranks in order skipping the root, or with node leaders on
 * (mpi_leader.c) the leaders and lone ranks, each of which speaks for its whole node; once an
 * executor abandoned a rank (kill), the ones left (wmap). */
int mpx__mpi_worker_rank(const mpx__mpi_session *s, int i) {
  return s->wmap ? s->wmap[i] : s->direct ? s->direct[i] : i < s->root ? i : i + 1;
}

/* Between executors: ranks an executor abandoned (kill) serve no later one (with node leaders,
 * an abandoned leader's members go with it: they hear only it). */
void mpx__mpi_exclude_lost(mpx__mpi_session *s) {
  if (!s->lost) return;
  int *map = malloc((size_t)s->size * sizeof *map), n = 0;
  if (!map) return; /* they stay in the plan: a later executor waits for their READY */
  for (int i = 0; i < s->nworkers; i++) {
    int r = mpx__mpi_worker_rank(s, i);
    if (!s->lost[r]) map[n++] = r;
  }
  free(s->wmap);
  s->wmap = map;
  s->nworkers = n;
}

/* Ranks and threads for options (workers, threads_per_rank): returns the ranks used, fills
 * threads[0..ranks) when not NULL and *slots. */
int mpx__mpi_plan(const mpx__mpi_session *s, int workers, int tpr, int *threads, int *slots) {
  int ranks = workers > 0 && workers < s->nworkers ? workers : s->nworkers;
  int total = 0;
  for (int i = 0; i < ranks; i++) {
    int t;
    if (workers > 0) {
      t = workers / ranks + (i < workers % ranks);
      if (tpr > 0 && t > tpr) t = tpr;
    } else {
      int r = mpx__mpi_worker_rank(s, i);
      int span = s->span ? s->span[r] : 1; /* a leader: its node's ranks */
      t = tpr > 0 ? tpr * span : s->spawned ? span : s->cores[r];
    }
    if (t < 1) t = 1;
    if (threads) threads[i] = t;
    total += t;
  }
  *slots = total;
  return ranks;
}

/* After the session's TAG_STOP: ranks an executor abandoned end their executor when they hear
 * it and say BYE, if they run at all. Wait for that at most the longest stall_timeout they were
 * abandoned after; MPX_OK when every one did (or had, during a later executor), else
 * MPX_EWORKER_LOST naming the first that did not: MPI_Finalize would wait for it forever. */
int mpx__mpi_await_lost(mpx__mpi_session *s) {
  if (!s->lost) return MPX_OK;
  double give_up = mpx__now() + (s->lost_grace > 0 ? s->lost_grace : 5.0);
  mpx__backoff bo = mpx__backoff_for(s);
  for (int r = 0; r < s->size; r++) {
    while (s->lost[r] && !s->resumed[r]) {
      int flag = 0;
      MPI_Message msg;
      MPI_Status st;
      if (MPI_Improbe(r, MPI_ANY_TAG, s->comm, &flag, &msg, &st) != MPI_SUCCESS) break;
      if (flag) { /* its late results, then its BYE: dropped */
        char dummy;
        MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        s->resumed[r] = st.MPI_TAG == MPX__TAG_BYE;
        continue;
      }
      if (mpx__now() >= give_up) {
        mpx__set_errmsg("rank %d on %s was abandoned (it stopped answering) and has not answered "
                        "since: MPI is not finalised, as MPI_Finalize would wait for it; the "
                        "launcher ends the job when this process exits", r,
                        s->hosts ? s->hosts[r] : "?");
        mpx__log(MPX_LOG_ERROR, "%s", mpx_errmsg());
        return MPX_EWORKER_LOST;
      }
      mpx__bell_wait(s->my_bell, atomic_load(&s->my_bell->seq), mpx__backoff_next(&bo));
    }
  }
  return MPX_OK;
}

