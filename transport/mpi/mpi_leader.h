/* mpi_leader.h: what the two files of node leaders share (mpi_leader.c runs a leader's executor,
 * mpi_leader_out.c keeps its queues and the results it holds for other ranks). Internal to the
 * MPI transport; one thread (the leader's serving thread) uses all of it. */
#ifndef MPX_MPI_LEADER_H
#define MPX_MPI_LEADER_H

#include "mpi_impl.h"
#include "mpx.pb-c.h"

#define QUIET_S       0.005  /* a member that answered nothing for this long may hold a long task */
#define STEAL_GAP0    0.0005 /* first pause after an empty loan */
#define STEAL_GAP_MAX 0.05   /* longest pause between requests */
#define SWEEP_MAX     256    /* messages taken in one sweep before answers are flushed */
#define FLUSH_N       256    /* results sent up together under load */
#define FLUSH_S       0.004  /* a result waits for others at most this long, or a tenth of */
#define FLUSH_S_MAX   0.05   /* a task's time (longer tasks), up to this */
#define INLINE_MAX    ((size_t)8 << 20) /* inline argument bytes in one batch to a member (then 1) */

typedef struct lbatch { /* tasks from one message, freed when its last task is answered */
  Mpx__Batch *b;
  void **args; /* big arguments received after it (up to b->n_tasks) */
  size_t nargs;
  size_t refs;
} lbatch;

typedef struct ltask {
  Mpx__Task *t;
  lbatch *lb;
  int origin; /* the rank its result goes to: the root (s->up) or the leader that lent it */
  struct ltask *next;
} ltask;

typedef struct lq {
  ltask *head, *tail;
  size_t n;
} lq;

typedef struct lpeer {
  int rank;    /* comm rank; -1: this rank's own task threads */
  int threads; /* it was started with (0: not started; a leader that borrows: 0) */
  int slots;
  bool ready, bye, tb; /* tb: a TAKEBACK is out, no RETURNED yet */
  lq fly;              /* given to it, not answered */
  double since;        /* its last answer, or the send into its empty window */
} lpeer;

typedef struct lout { /* results bound for one rank */
  int rank;
  double t0; /* when the oldest of them came */
  Mpx__Result **r;
  size_t n, cap, bytes;
  void **pay; /* big results that came out of band, in the order of their Results */
  size_t *plen, np, pcap;
} lout;

typedef struct leader {
  mpx__mpi_session *s;
  mpx__limits lim;
  mpx__mpi_start h;
  lpeer *p;
  int np;
  int *peer_at; /* comm rank -> index in p, or -1 */
  mpx__mpi_stash *stash; /* per comm rank: big results ahead of their batch (mpi_impl.h) */
  lq q;
  lout *out;
  int nout;
  Mpx__Batch **held; /* answers whose Results are in `out`, freed after each flush */
  size_t nheld, hcap;
  mpx__sendq sq;
  mpx__mpi_local *local;
  uint8_t *rbuf;
  size_t rcap;
  bool ready_sent, stopping, steal_out, fin;
  MPI_Request fin_req;
  int victim, err_code;
  int nl; /* leaders in the team (MPX__START_TEAM), 0: this one works alone */
  char err_msg[256];
  double steal_at, steal_gap, avg;
  unsigned long long lent, borrowed, steals;
} leader;

/* mpi_leader_out.c. fatal logs, aborts the job and does not return; xcalloc never fails. */
void mpx__lead_fatal(const char *what, int rc);
void *mpx__lead_calloc(size_t n, size_t sz);
void mpx__lq_push(lq *q, ltask *t);
/* Put every task of `front` before q's, in their order. */
void mpx__lq_prepend(lq *q, const lq *front);
ltask *mpx__lq_pop(lq *q);
/* Take the task with call id `id` out of q (usually its head), or NULL. */
ltask *mpx__lq_take(lq *q, uint64_t id);
/* Answered (or given back): drop its hold on its batch (freed with the last). */
void mpx__lead_task_done(ltask *t);
/* Post w's bytes to dest (taken over) and ring it. */
void mpx__lead_post(leader *L, int dest, int tag, mpx__wbuf *w);
/* Post a Batch of control c (with results r[0..n): RETURNED's bare ids) to dest. */
void mpx__lead_post_control(leader *L, int dest, Mpx__Control *c, Mpx__Result **r, size_t n);
/* Hold result r (its big data in pay, or NULL) for `rank`; answers the Results point into stay
 * in L->held until sent. */
void mpx__lead_out_add(leader *L, int rank, Mpx__Result *r, void *pay);
/* Send what is held (see the rules there), all of it with force. */
void mpx__lead_flush(leader *L, bool force);

#endif
