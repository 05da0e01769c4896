/* mpi_local.c: rank 0 working. The root's link (mpi.c) may give the dispatcher one more worker
 * than it has worker ranks: this one, task threads on the root itself (an mpx__mpi_pool,
 * mpi_pool.c) beside its dispatcher, so that cores the root owns do not only drive.
 *
 * It speaks the link's message contract without MPI: the link hands it the packed Batches the
 * dispatcher sends to its index, it unpacks and queues their tasks (a Control SHUTDOWN needs no
 * answer: the link stops it; a Control TAKEBACK is answered with a RETURNED behind the results
 * so far, mpi_pool.c), and the link's poll takes from it, one message per call, first a
 * Control READY (slots = its threads; the initializer's Error if it failed), then the packed
 * results in the order the threads produced them, and every 2 ms a Control STARTED for the tasks
 * the threads started since (mpi_pool.c), so that the root shows them running. The threads ring the link's bell when a result
 * is ready, so a poll waiting on it wakes at once.
 *
 * Thread-safety: start, send, poll and stop are the link's ops and run on its threads one at a
 * time (start and stop on the executor's thread, send and poll on the dispatcher's); the pool is
 * under its own lock. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "mpx/error.h"
#include "os/clock.h"

struct mpx__mpi_local {
  mpx__mpi_pool p;
  mpx__worker_id who;
  mpx__halt halt; /* stop requests for its tasks (who.halt) */
  mpx__limits lim;
  mpx__mpi_reply *ready; /* READY, until the first poll takes it */
  mpx__mpi_reply *in;    /* taken from the pool, not yet returned by poll */
  mpx__mpi_reply *cur;   /* returned by the last poll: freed at the next */
  int64_t starts_at;     /* the last look for started tasks (mpx__mpi_pool_starts) */
};

static int pack_ready(mpx__mpi_local *l, mpx__mpi_reply **out) {
  Mpx__Control c = MPX__CONTROL__INIT;
  Mpx__Error e = MPX__ERROR__INIT;
  c.kind = MPX__CONTROL__KIND__READY;
  c.pid = l->who.pid;
  c.host = (char *)l->who.host;
  c.slots = l->p.started;
  if (l->p.init_rc) {
    e.code = l->p.init_rc;
    e.message = l->p.init_msg ? l->p.init_msg : (char *)mpx_strerror(l->p.init_rc);
    e.pid = l->who.pid;
    e.host = (char *)l->who.host;
    e.rank = l->who.rank;
    c.error = &e;
  }
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  mpx__wbuf w = {0};
  char *cut = mpx__control_fit(&c, &l->lim); /* READY fits any max_payload */
  int rc = mpx__codec_pack(&b, &l->lim, &w);
  free(cut);
  mpx__mpi_reply *r = rc ? NULL : calloc(1, sizeof *r);
  if (!r) {
    mpx__wbuf_free(&w);
    return rc ? rc : MPX_ENOMEM;
  }
  *r = (mpx__mpi_reply){.data = w.data, .len = w.len};
  *out = r;
  return MPX_OK;
}

int mpx__mpi_local_start(mpx__mpi_local **out, int threads, int index, const mpx__mpi_session *s,
                         const char *init_name, const void *initargs, size_t initargs_len,
                         size_t max_payload, mpx__bell *bell) {
  *out = NULL;
  mpx__mpi_local *l = calloc(1, sizeof *l);
  if (!l) return MPX_ENOMEM;
  l->lim = mpx__limits_default(max_payload);
  l->who = (mpx__worker_id){.index = index, .pid = (int)getpid(), .rank = s->rank, .host = s->host,
                            .halt = &l->halt};
  l->p = (mpx__mpi_pool){.threads = threads,
                         .bell = bell,
                         .who = &l->who,
                         .lim = &l->lim,
                         .init_name = init_name ? init_name : "",
                         .initargs = initargs,
                         .initargs_len = initargs_len};
  int rc = mpx__mpi_pool_start(&l->p);
  if (!rc) rc = pack_ready(l, &l->ready);
  if (rc) {
    mpx__mpi_pool_stop(&l->p);
    free(l);
    return rc;
  }
  *out = l;
  return MPX_OK;
}

int mpx__mpi_local_send(mpx__mpi_local *l, const uint8_t *data, size_t len) {
  return mpx__mpi_local_send_parts(l, data, len, NULL, 0);
}

int mpx__mpi_local_send_parts(mpx__mpi_local *l, const uint8_t *data, size_t len,
                              const struct iovec *parts, int n) {
  Mpx__Batch *b;
  int rc = mpx__codec_unpack(data, len, &l->lim, &b);
  if (rc) return rc;
  int k = 0;
  for (size_t i = 0; i < b->n_tasks; i++) { /* a part that does not match leaves arg_shm set: */
    Mpx__Task *t = b->tasks[i];             /* serving fails that task */
    if (!t->arg_shm || k == n || parts[k].iov_len != t->arg_shm) continue;
    t->arg.data = parts[k].iov_base;
    t->arg.len = parts[k++].iov_len;
    t->arg_shm = 0;
  }
  if (b->control && b->control->kind == MPX__CONTROL__KIND__TAKEBACK) {
    mpx__wbuf out = {0}; /* what no thread started, given back behind the results so far */
    if (!(rc = mpx__mpi_pool_give_back(&l->p, &out))) mpx__mpi_pool_answer(&l->p, &out);
    mpx__wbuf_free(&out);
  }
  if (b->n_tasks)
    mpx__mpi_pool_push(&l->p, b); /* the pool frees it */
  else
    mpx__codec_free(b); /* control only (SHUTDOWN: the link stops us; TAKEBACK) */
  return rc;
}

static void reply_free(mpx__mpi_reply *r) {
  if (!r) return;
  free(r->data);
  free(r);
}

int mpx__mpi_local_poll(mpx__mpi_local *l, const uint8_t **data, size_t *len) {
  reply_free(l->cur);
  l->cur = NULL;
  if (l->ready) {
    l->cur = l->ready;
    l->ready = NULL;
  } else {
    int64_t now = mpx__now_ns();
    if (now - l->starts_at >= MPX__STARTS_NS) { /* report the tasks the threads started */
      l->starts_at = now;
      mpx__mpi_pool_starts(&l->p);
    }
    if (!l->in) l->in = mpx__mpi_pool_take(&l->p);
    if (!l->in) return 0;
    l->cur = l->in;
    l->in = l->in->link;
  }
  *data = l->cur->data;
  *len = l->cur->len;
  return 1;
}

void mpx__mpi_local_stop(mpx__mpi_local *l) {
  if (!l) return;
  mpx__mpi_pool_stop(&l->p); /* finishes what was queued; drops its results */
  reply_free(l->cur);
  reply_free(l->ready);
  while (l->in) {
    mpx__mpi_reply *n = l->in->link;
    reply_free(l->in);
    l->in = n;
  }
  free(l);
}

void mpx__mpi_local_halt(mpx__mpi_local *l, uint64_t id) { mpx__halt_note(&l->halt, id); }
