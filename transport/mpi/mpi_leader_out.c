/* mpi_leader_out.c: a node leader's queues of tasks and the results it holds for the root and for
 * the leaders it borrowed from (mpi_leader.h; the leader itself is mpi_leader.c). A result waits
 * so that many share one message: it goes once FLUSH_N are held for its rank, when the node is
 * about to run dry (the root refills on results), or when the oldest waited FLUSH_S or a tenth of
 * a task's time (up to FLUSH_S_MAX). The answers the held Results point into are freed once
 * nothing is held. Thread-safety: the leader's serving thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_leader.h"
#include "mpx/error.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/seg.h"

void mpx__lead_fatal(const char *what, int rc) {
  mpx__log(MPX_LOG_ERROR, "leader rank: %s: %s", what, mpx_strerror(rc));
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
}

void *mpx__lead_calloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) mpx__lead_fatal("allocating", MPX_ENOMEM);
  return p;
}

/* ---- queues ---------------------------------------------------------------------------------- */

void mpx__lq_push(lq *q, ltask *t) {
  t->next = NULL;
  if (q->tail)
    q->tail->next = t;
  else
    q->head = t;
  q->tail = t;
  q->n++;
}
/* Put every task of `front` before q's, in their order. */
void mpx__lq_prepend(lq *q, const lq *front) {
  if (!front->n) return;
  front->tail->next = q->head;
  if (!q->tail) q->tail = front->tail;
  q->head = front->head;
  q->n += front->n;
}
ltask *mpx__lq_pop(lq *q) {
  ltask *t = q->head;
  if (!t) return NULL;
  q->head = t->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  t->next = NULL;
  return t;
}
/* Take the task with call id `id` out of q (usually its head), or NULL. */
ltask *mpx__lq_take(lq *q, uint64_t id) {
  ltask *prev = NULL;
  for (ltask *t = q->head; t; prev = t, t = t->next) {
    if (t->t->call_id != id) continue;
    if (prev)
      prev->next = t->next;
    else
      q->head = t->next;
    if (q->tail == t) q->tail = prev;
    q->n--;
    t->next = NULL;
    return t;
  }
  return NULL;
}

void mpx__lead_task_done(ltask *t) { /* answered (or given back): drop its hold on the batch */
  lbatch *lb = t->lb;
  free(t);
  if (--lb->refs) return;
  for (size_t k = 0; k < lb->nargs; k++) mpx__seg_pool_free(lb->args[k], 0); /* pool blocks */
  free(lb->args);
  mpx__codec_free(lb->b);
  free(lb);
}

/* ---- sending --------------------------------------------------------------------------------- */

void mpx__lead_post(leader *L, int dest, int tag, mpx__wbuf *w) {
  uint8_t *take = w->data;
  int rc = mpx__sendq_post(&L->sq, L->s->comm, dest, tag, w->data, w->len, &take);
  mpx__mpi_ring(L->s, dest);
  if (rc) free(take), mpx__lead_fatal("sending", rc);
  *w = (mpx__wbuf){0};
}

void mpx__lead_post_control(leader *L, int dest, Mpx__Control *c, Mpx__Result **r, size_t n) {
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = c;
  b.results = r;
  b.n_results = n;
  mpx__wbuf w = {0};
  int rc = mpx__codec_pack(&b, &L->lim, &w);
  if (rc) mpx__lead_fatal("packing a control", rc);
  mpx__lead_post(L, dest, MPX__TAG_BATCH, &w);
}

static lout *out_for(leader *L, int rank) {
  for (int i = 0; i < L->nout; i++)
    if (L->out[i].rank == rank) return &L->out[i];
  L->out = realloc(L->out, (size_t)(L->nout + 1) * sizeof *L->out);
  if (!L->out) mpx__lead_fatal("allocating", MPX_ENOMEM);
  L->out[L->nout] = (lout){.rank = rank};
  return &L->out[L->nout++];
}

/* Send what `o` holds: its big results, each as its own message, then one Batch that declares
 * them (the receiver keeps them until the Batch comes: mpi_impl.h, the stash). */
static void flush_one(leader *L, lout *o) {
  if (!o->n) return;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.results = o->r;
  b.n_results = o->n;
  mpx__wbuf w = {0};
  int rc = mpx__codec_pack(&b, &L->lim, &w);
  if (rc) mpx__lead_fatal("packing results", rc);
  for (size_t k = 0; k < o->np; k++) {
    uint8_t *take = o->pay[k];
    if ((rc = mpx__sendq_post(&L->sq, L->s->comm, o->rank, MPX__TAG_PAYLOAD, o->pay[k], o->plen[k],
                              &take)))
      mpx__lead_fatal("sending a result", rc);
  }
  mpx__lead_post(L, o->rank, MPX__TAG_BATCH, &w);
  o->n = o->np = o->bytes = 0;
}

/* Send the results held for each rank once there are FLUSH_N of them, the oldest waited
 * FLUSH_S or a tenth of a task's time (up to FLUSH_S_MAX), the node is about to run dry (the root
 * refills on results), or `force`. The answers they came in are freed once nothing is held. */
void mpx__lead_flush(leader *L, bool force) {
  size_t slots = 0, held = L->q.n; /* the node's tasks, queued here or given out */
  for (int i = 0; i < L->np; i++) {
    slots += L->p[i].threads && L->p[i].ready ? L->p[i].slots : 0;
    held += L->p[i].fly.n;
  }
  bool low = held <= 2 * slots, empty = true;
  double now = mpx__now(), hold = L->avg / 10;
  hold = hold < FLUSH_S ? FLUSH_S : hold > FLUSH_S_MAX ? FLUSH_S_MAX : hold;
  for (int i = 0; i < L->nout; i++) {
    lout *o = &L->out[i];
    if (force || low || o->n >= FLUSH_N || now - o->t0 >= hold) flush_one(L, o);
    empty &= !o->n;
  }
  if (!empty) return;
  for (size_t k = 0; k < L->nheld; k++) mpx__codec_free(L->held[k]);
  L->nheld = 0;
}

/* Queue result r (of a task whose answer goes to `rank`; its big data, if any, in pay). */
void mpx__lead_out_add(leader *L, int rank, Mpx__Result *r, void *pay) {
  lout *o = out_for(L, rank);
  size_t sz = r->data.len + (size_t)r->data_shm + 64;
  if (o->n && (o->n + 1 > L->lim.max_items || o->bytes + r->data.len + 64 > L->lim.max_payload))
    flush_one(L, o); /* the Batches it came in are still held: the flushed Results stay valid */
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 64;
    if (!(o->r = realloc(o->r, o->cap * sizeof *o->r))) mpx__lead_fatal("allocating", MPX_ENOMEM);
  }
  if (!o->n) o->t0 = mpx__now();
  o->r[o->n++] = r;
  o->bytes += sz;
  if (!pay) return;
  if (o->np == o->pcap) {
    o->pcap = o->pcap ? 2 * o->pcap : 8;
    o->pay = realloc(o->pay, o->pcap * sizeof *o->pay);
    o->plen = realloc(o->plen, o->pcap * sizeof *o->plen);
    if (!o->pay || !o->plen) mpx__lead_fatal("allocating", MPX_ENOMEM);
  }
  o->pay[o->np] = pay;
  o->plen[o->np++] = (size_t)r->data_shm;
}
