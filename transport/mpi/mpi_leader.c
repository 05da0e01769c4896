/* mpi_leader.c: node leaders, so that rank 0 exchanges messages per node, not per rank.
 *
 * With leaders on (mpi_session.c decides: MPX_MPI_LEADERS, or at least 2 nodes of 4 or more
 * ranks each), the lowest rank of each node other than the root leads it: the root's dispatcher
 * sees one worker per node, the leader, whose slots are the threads of the whole node, and the
 * other ranks of the node (its members) serve the leader exactly as flat ranks serve the root
 * (mpi_worker.c with s->up = the leader: START, READY, Batches, TAKEBACK, SHUTDOWN, BYE). The
 * leader relays: it queues the tasks the root sends in large batches, feeds its members (and its
 * own task threads, an mpi_local.c pool) windows of about a millisecond of work per slot, and
 * sends their results up in one Batch per sweep of the messages that were waiting (so under load
 * many results share a message, and an idle job still answers at once). It answers the root's
 * Control TAKEBACK at once with the tasks still in its queue, and when a member holds tasks behind
 * a long one while another idles it takes them back from the member the same way.
 *
 * Stealing between leaders (ADLB style). A leader whose queue is empty while its node has free
 * slots asks one other leader (in turn) with TAG_STEAL, carrying its free slots; the victim
 * answers TAG_LEND at once: a Batch of half its queue (tasks whose argument travels inline only),
 * or nothing. An empty answer doubles the thief's pause before its next request (0.5 ms up to
 * 50 ms), tasks from the root or a loan reset it. The thief runs the borrowed tasks and sends
 * their results back to the lender in Batches (TAG_BATCH), which forwards them to the root: the
 * root only ever hears about a task from the rank it gave it to. Every task remembers the rank
 * its result goes to; a borrowed task is never lent on (one hop: a result is matched by call id,
 * and a task lent back and forth would be out twice with one leader).
 *
 * Ending an executor. On the root's SHUTDOWN a leader finishes its queue, waits for every task it
 * gave out, has no request of its own in flight, then enters a non-blocking barrier of the leaders
 * (s->leaders); it answers requests with empty loans meanwhile. When the barrier completes no
 * leader can still ask it anything (a leader enters only once its own request was answered, and
 * MPI keeps a pair's messages in order), so every message of the executor has been taken. Then it
 * sends its members SHUTDOWN, takes their BYEs and sends its own BYE up.
 *
 * Big results go as their own TAG_PAYLOAD messages right before the Batch that declares them, on
 * every hop (member to leader, thief to lender, leader to root); a leader keeps those that came
 * ahead of their Batch per rank (L->stash, mpi_impl.h) and takes a declared one from there
 * without waiting.
 *
 * Failures: a member or leader that dies ends the job as in flat mode (the launcher sees the lost
 * process and aborts the job, naming it); an initializer error of any rank of the node retires
 * the whole leader (its READY carries that error). Results whose call id the leader did not give
 * that rank are dropped with a warning (the root checks what the leader sends, as for any rank).
 *
 * Thread-safety: one thread (the rank's serving thread) runs all of this and makes every MPI call;
 * the leader's own task threads are an mpi_local.c pool, under that pool's lock. Its queues and
 * the results it holds for other ranks are in mpi_leader_out.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_leader.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/seg.h"
#include "task_impl.h"

/* Give up to k queued tasks to peer i (a member or the own threads): one Batch, big arguments
 * out of band after it (members) or read in place (own threads). */
static void feed(leader *L, int i, size_t k) {
  lpeer *p = &L->p[i];
  Mpx__Task *copy = mpx__lead_calloc(k, sizeof *copy);
  Mpx__Task **tp = mpx__lead_calloc(k, sizeof *tp);
  struct iovec *parts = mpx__lead_calloc(k, sizeof *parts);
  size_t n = 0, inline_bytes = 0;
  int nparts = 0;
  while (n < k && L->q.head) {
    Mpx__Task *t = L->q.head->t;
    bool big = t->arg.len >= MPX__SEG_MIN;
    if (n && !big && inline_bytes + t->arg.len > INLINE_MAX) break;
    ltask *lt = mpx__lq_pop(&L->q);
    copy[n] = *t;
    if (big) {
      copy[n].arg_shm = t->arg.len;
      copy[n].arg.len = 0;
      copy[n].arg.data = NULL;
      parts[nparts++] = (struct iovec){t->arg.data, t->arg.len};
    } else {
      inline_bytes += t->arg.len;
    }
    tp[n] = &copy[n];
    n++;
    if (!p->fly.n) p->since = mpx__now();
    mpx__lq_push(&p->fly, lt);
  }
  Mpx__Batch b = MPX__BATCH__INIT;
  b.tasks = tp;
  b.n_tasks = n;
  mpx__wbuf w = {0};
  int rc = mpx__codec_pack(&b, &L->lim, &w);
  if (rc) mpx__lead_fatal("packing tasks", rc);
  if (p->rank < 0) {
    rc = mpx__mpi_local_send_parts(L->local, w.data, w.len, parts, nparts);
    if (rc) mpx__lead_fatal("queueing tasks", rc);
    mpx__wbuf_free(&w);
  } else {
    mpx__lead_post(L, p->rank, MPX__TAG_BATCH, &w);
    for (int j = 0; j < nparts; j++) /* borrowed: the batch holding it lives until answered */
      if ((rc = mpx__sendq_post_ex(&L->sq, L->s->comm, p->rank, MPX__TAG_PAYLOAD, parts[j].iov_base,
                                   parts[j].iov_len, NULL, true)))
        mpx__lead_fatal("sending an argument", rc);
  }
  free(copy), free(tp), free(parts);
}

static void send_takeback(leader *L, int i) {
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__TAKEBACK;
  if (L->p[i].rank < 0) {
    Mpx__Batch b = MPX__BATCH__INIT;
    b.control = &c;
    mpx__wbuf w = {0};
    int rc = mpx__codec_pack(&b, &L->lim, &w);
    if (!rc) rc = mpx__mpi_local_send(L->local, w.data, w.len);
    mpx__wbuf_free(&w);
    if (rc) mpx__lead_fatal("taking tasks back", rc);
  } else {
    mpx__lead_post_control(L, L->p[i].rank, &c, NULL, 0);
  }
  L->p[i].tb = true;
}

/* ---- receiving ------------------------------------------------------------------------------- */

/* Tasks from the root (after their batch, its big arguments) or a loan from another leader. */
static void take_tasks(leader *L, Mpx__Batch *b, int origin, bool with_args) {
  lbatch *lb = mpx__lead_calloc(1, sizeof *lb);
  lb->b = b;
  lb->refs = b->n_tasks;
  if (with_args) lb->args = mpx__lead_calloc(b->n_tasks, sizeof *lb->args);
  for (size_t k = 0; k < b->n_tasks; k++) {
    Mpx__Task *t = b->tasks[k];
    void *buf = NULL;
    if (with_args && t->arg_shm && !t->arg.len && t->arg_shm <= L->lim.max_payload &&
        !mpx__mpi_take_payload(L->s->comm, origin, (size_t)t->arg_shm, 600.0, &buf, NULL, NULL)) {
      lb->args[lb->nargs++] = buf;
      t->arg.data = buf;
      t->arg.len = (size_t)t->arg_shm;
      t->arg_shm = 0; /* a big argument that did not come keeps arg_shm: serving fails it */
    }
    ltask *lt = mpx__lead_calloc(1, sizeof *lt);
    *lt = (ltask){.t = t, .lb = lb, .origin = origin};
    mpx__lq_push(&L->q, lt);
  }
}

/* The root's TAKEBACK: the results so far, then a RETURNED with the queued tasks it gave us. */
static void give_back(leader *L) {
  mpx__lead_flush(L, true);
  lq keep = {0};
  Mpx__Result *rs = mpx__lead_calloc(L->q.n, sizeof *rs);
  Mpx__Result **rp = mpx__lead_calloc(L->q.n, sizeof *rp);
  ltask **gone = mpx__lead_calloc(L->q.n, sizeof *gone);
  size_t n = 0;
  for (ltask *t; (t = mpx__lq_pop(&L->q));) {
    if (t->origin != L->s->up || n == L->lim.max_items) {
      mpx__lq_push(&keep, t);
      continue;
    }
    mpx__result__init(&rs[n]);
    rs[n].call_id = t->t->call_id;
    rp[n] = &rs[n];
    gone[n++] = t;
  }
  L->q = keep;
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__RETURNED;
  mpx__lead_post_control(L, L->s->up, &c, rp, n);
  for (size_t k = 0; k < n; k++) mpx__lead_task_done(gone[k]);
  free(rs), free(rp), free(gone);
}

/* An answer from peer i: READY, results, or RETURNED. Takes b. */
static void take_answer(leader *L, int i, Mpx__Batch *b, int src) {
  lpeer *p = &L->p[i];
  Mpx__Control *c = b->control;
  double now = mpx__now();
  if (c && c->kind == MPX__CONTROL__KIND__READY && !p->ready && p->threads) {
    p->ready = true;
    p->slots = c->slots > 0 ? c->slots : 1;
    if (c->error && !L->err_code) {
      L->err_code = c->error->code < 0 ? c->error->code : MPX_EINIT;
      snprintf(L->err_msg, sizeof L->err_msg, "rank %d: %s", src,
               c->error->message ? c->error->message : "initializer failed");
    }
    mpx__codec_free(b);
    return;
  }
  if (c && c->kind == MPX__CONTROL__KIND__STARTED) { /* starts: passed up for the root's tasks */
    Mpx__Result **up = calloc(b->n_results ? b->n_results : 1, sizeof *up);
    size_t n = 0;
    for (size_t k = 0; up && k < b->n_results; k++)
      for (ltask *t = p->fly.head; t; t = t->next)
        if (t->t->call_id == b->results[k]->call_id) {
          if (t->origin == L->s->up) up[n++] = b->results[k];
          break;
        }
    if (n) mpx__lead_post_control(L, L->s->up, c, up, n);
    free(up);
    mpx__codec_free(b);
    return;
  }
  bool returned = c && c->kind == MPX__CONTROL__KIND__RETURNED;
  size_t done = 0;
  lq back = {0}; /* given back, in the order they were sent */
  for (size_t k = 0; k < b->n_results; k++) {
    Mpx__Result *r = b->results[k];
    ltask *t = mpx__lq_take(&p->fly, r->call_id);
    void *pay = NULL;
    if (!returned && r->data_shm && src >= 0 &&
        mpx__mpi_stash_take(&L->stash[src], (size_t)r->data_shm, &pay)) /* sent before it */
      mpx__lead_fatal("receiving a big result", MPX_EPROTO);
    if (!t) {
      mpx__log(MPX_LOG_WARN,
               "leader %d: an answer from rank %d for a task it does not hold "
               "(call id %llu): dropped",
               L->s->rank, src, (unsigned long long)r->call_id);
      mpx__seg_pool_free(pay, (size_t)r->data_shm);
      continue;
    }
    if (returned) { /* never started there: back to the head of our queue */
      mpx__lq_push(&back, t);
      continue;
    }
    mpx__lead_out_add(L, t->origin, r, pay);
    mpx__lead_task_done(t);
    done++;
  }
  if (returned) {
    p->tb = false;
    mpx__lq_prepend(&L->q, &back);
  }
  if (done && p->threads) { /* seconds per task per slot, for the members' windows */
    double per = (now - p->since) * p->slots / (double)done;
    L->avg = L->avg > 0 ? 0.8 * L->avg + 0.2 * per : per;
  }
  if (done) p->since = now; /* (a RETURNED is no sign of progress: the long task still runs) */
  if (L->nheld == L->hcap) {
    L->hcap = L->hcap ? 2 * L->hcap : 16;
    if (!(L->held = realloc(L->held, L->hcap * sizeof *L->held)))
      mpx__lead_fatal("allocating", MPX_ENOMEM);
  }
  L->held[L->nheld++] = b; /* its Results are in `out` until the next flush */
}

/* A leader asks for work: lend half our queue (tasks from the root with inline arguments only: a
 * borrowed task is never lent on, so that no task is out twice with one leader, which would match
 * its result to the wrong copy), or nothing. */
static void lend(leader *L, int src, int free_slots) {
  int i = src >= 0 && src < L->s->size ? L->peer_at[src] : -1;
  size_t k = L->q.n >= 2 ? L->q.n / 2 : 0, n = 0;
  if (i < 0 || L->stopping || L->fin) k = 0;
  if (L->h.threads < 2) k = 0; /* the root takes a one-slot worker's answers in order only */
  if (free_slots < 1) k = 0;
  if (k > 4096) k = 4096;
  Mpx__Task **tp = mpx__lead_calloc(k, sizeof *tp);
  lq keep = {0};
  for (ltask *t; (t = mpx__lq_pop(&L->q));) {
    if (n < k && t->t->arg.len < MPX__SEG_MIN && t->origin == L->s->up) {
      tp[n++] = t->t;
      if (!L->p[i].fly.n) L->p[i].since = mpx__now();
      mpx__lq_push(&L->p[i].fly, t);
    } else {
      mpx__lq_push(&keep, t);
    }
  }
  L->q = keep;
  mpx__wbuf w = {0};
  if (n) {
    Mpx__Batch b = MPX__BATCH__INIT;
    b.tasks = tp;
    b.n_tasks = n;
    int rc = mpx__codec_pack(&b, &L->lim, &w);
    if (rc) mpx__lead_fatal("packing a loan", rc);
  }
  free(tp);
  L->lent += n;
  mpx__lead_post(L, src, MPX__TAG_LEND, &w);
}

/* A stop request (TAG_HALT: a call id, or every task) for the tasks this leader gave out: to its
 * own threads and members, and, from the root, to the leaders holding its loans. */
static void relay_halt(leader *L, uint64_t id, bool from_up) {
  if (L->local) mpx__mpi_local_halt(L->local, id);
  for (int i = 0; i < L->np; i++) {
    lpeer *p = &L->p[i];
    if (p->rank < 0 || (p->threads ? !p->ready : !from_up || !p->fly.n)) continue;
    mpx__wbuf w = {0};
    if (mpx__wbuf_append(&w, &id, sizeof id)) mpx__lead_fatal("allocating", MPX_ENOMEM);
    mpx__lead_post(L, p->rank, MPX__TAG_HALT, &w);
  }
}

/* One waiting message, if any: 1 taken, 0 none. */
static int take_message(leader *L) {
  int flag = 0, count = 0;
  MPI_Message msg;
  MPI_Status st;
  int rc = MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, L->s->comm, &flag, &msg, &st);
  if (rc != MPI_SUCCESS) mpx__lead_fatal("MPI_Improbe", mpx__mpi_fail("MPI_Improbe", rc));
  if (!flag) return 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  int src = st.MPI_SOURCE, tag = st.MPI_TAG;
  int i = src >= 0 && src < L->s->size ? L->peer_at[src] : -1;
  bool from_up = src == L->s->up;
  if (tag == MPX__TAG_HALT && count == (int)sizeof(uint64_t) && (from_up || i >= 0)) {
    uint64_t id = 0;
    MPI_Mrecv(&id, (int)sizeof id, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    relay_halt(L, id, from_up);
    return 1;
  }
  if (tag == MPX__TAG_STOP && from_up) { /* the root gave up on this node and ended the session:
                                          * end this executor as on SHUTDOWN, then the session */
    MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    L->stopping = L->s->ended = true;
    return 1;
  }
  if (tag == MPX__TAG_PAYLOAD && i >= 0) { /* a big result ahead of its answer: kept for it */
    if ((rc = mpx__mpi_stash_recv(&L->stash[src], &msg, count, L->lim.max_payload)) == MPX_EMPI)
      mpx__lead_fatal("receiving a big result", rc);
    return 1;
  }
  bool ok = (tag == MPX__TAG_BATCH || tag == MPX__TAG_LEND || tag == MPX__TAG_STEAL) &&
            (size_t)count <= L->lim.max_message && (from_up || i >= 0);
  if (!ok) {
    char dummy;
    MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    if (tag == MPX__TAG_BYE && i >= 0)
      L->p[i].bye = true;
    else
      mpx__log(MPX_LOG_WARN, "leader %d: unexpected message (tag %d, %d bytes) from %d", L->s->rank,
               tag, count, src);
    return 1;
  }
  if ((rc = mpx__mpi_mrecv(&msg, (size_t)count, &L->rbuf, &L->rcap)))
    mpx__lead_fatal("receiving", rc);
  if (tag == MPX__TAG_STEAL) {
    int32_t f = 0;
    if (count == (int)sizeof f) memcpy(&f, L->rbuf, sizeof f);
    lend(L, src, f);
    return 1;
  }
  Mpx__Batch *b = NULL;
  if (count && (rc = mpx__codec_unpack(L->rbuf, (size_t)count, &L->lim, &b)))
    mpx__lead_fatal("a malformed batch", rc);
  if (tag == MPX__TAG_LEND) {
    L->steal_out = false;
    if (b && b->n_tasks) {
      L->borrowed += b->n_tasks;
      take_tasks(L, b, src, false);
      L->steal_gap = STEAL_GAP0; /* work was found: ask again as soon as the node runs dry */
      L->steal_at = 0;
    } else {
      mpx__codec_free(b);
      L->steal_gap = L->steal_gap * 2 > STEAL_GAP_MAX ? STEAL_GAP_MAX : L->steal_gap * 2;
      L->steal_at = mpx__now() + L->steal_gap;
    }
    return 1;
  }
  if (!b) return 1;
  if (from_up) {
    Mpx__Control *c = b->control;
    if (c && c->kind == MPX__CONTROL__KIND__SHUTDOWN) L->stopping = true;
    if (c && c->kind == MPX__CONTROL__KIND__TAKEBACK) give_back(L);
    if (b->n_tasks)
      take_tasks(L, b, src, true);
    else
      mpx__codec_free(b);
    return 1;
  }
  take_answer(L, i, b, src);
  return 1;
}

/* ---- the loop -------------------------------------------------------------------------------- */

static size_t window(const leader *L, const lpeer *p) {
  double w = L->avg > 0 ? 1e-3 / L->avg : 2;
  w = w < 2 ? 2 : w > 256 ? 256 : w;
  return (size_t)w * (size_t)p->slots;
}

static void send_ready(leader *L) {
  Mpx__Control c = MPX__CONTROL__INIT;
  Mpx__Error e = MPX__ERROR__INIT;
  c.kind = MPX__CONTROL__KIND__READY;
  c.pid = (int)getpid();
  c.host = L->s->host;
  for (int i = 0; i < L->np; i++) c.slots += L->p[i].threads ? L->p[i].slots : 0;
  if (L->err_code) {
    e.code = L->err_code;
    e.message = L->err_msg;
    e.pid = c.pid;
    e.host = L->s->host;
    e.rank = L->s->rank;
    c.error = &e;
  }
  mpx__lead_post_control(L, L->s->up, &c, NULL, 0);
  L->ready_sent = true;
}

/* Work to do without a message: READY, feeding, taking back, stealing, the end. */
static void schedule(leader *L) {
  bool all_ready = true, idle = false;
  int free_slots = 0;
  for (int i = 0; i < L->np; i++) {
    lpeer *p = &L->p[i];
    if (!p->threads) continue;
    all_ready &= p->ready;
    if (!p->ready) continue;
    idle |= !p->fly.n;
    if (p->fly.n < (size_t)p->slots) free_slots += p->slots - (int)p->fly.n;
  }
  if (!L->ready_sent) {
    if (!all_ready) return;
    send_ready(L);
  }
  size_t ready_n = 0;
  for (int i = 0; i < L->np; i++) ready_n += L->p[i].threads && L->p[i].ready && !L->p[i].tb;
  double now = mpx__now();
  for (int i = 0; i < L->np && L->q.n && !L->err_code; i++) {
    lpeer *p = &L->p[i];
    if (!p->threads || !p->ready || p->tb) continue;
    if (p->fly.n >= (size_t)p->slots && now - p->since > QUIET_S)
      continue; /* busy on long tasks: what waits here stays free for the others */
    size_t w = window(L, p);
    if (p->fly.n >= w) continue;
    size_t share = (L->q.n + ready_n - 1) / ready_n; /* guided: the queue over the peers */
    size_t k = w - p->fly.n < share ? w - p->fly.n : share;
    feed(L, i, k ? k : 1);
  }
  if (!L->q.n && idle) /* a member holds tasks behind a long one while another idles */
    for (int i = 0; i < L->np; i++) {
      lpeer *p = &L->p[i];
      if (p->threads && p->ready && !p->tb && p->fly.n > (size_t)p->slots &&
          now - p->since > QUIET_S)
        send_takeback(L, i);
    }
  int nl = L->nl;
  if (!L->q.n && idle && nl > 1 && !L->steal_out && !L->fin && !L->err_code && now >= L->steal_at) {
    int v = L->s->leader_ranks[L->victim++ % nl];
    if (v == L->s->rank) v = L->s->leader_ranks[L->victim++ % nl];
    mpx__wbuf w = {0};
    int32_t f = free_slots;
    if (mpx__wbuf_append(&w, &f, sizeof f)) mpx__lead_fatal("allocating", MPX_ENOMEM);
    mpx__lead_post(L, v, MPX__TAG_STEAL, &w);
    L->steal_out = true;
    L->steals++;
  }
  bool quiet = !L->q.n && !L->steal_out;
  for (int i = 0; i < L->np && quiet; i++) quiet = !L->p[i].fly.n;
  if (L->stopping && quiet && !L->fin) {
    mpx__lead_flush(L, true);
    L->fin = true;
    if (L->nl)
      MPI_Ibarrier(L->s->leaders, &L->fin_req);
    else
      L->fin_req = MPI_REQUEST_NULL;
  }
}

int mpx__mpi_lead(mpx__mpi_session *s, const uint8_t *m, size_t len) {
  leader L = {.s = s, .steal_gap = STEAL_GAP0, .fin_req = MPI_REQUEST_NULL};
  char name[MPX_TASK_NAME_MAX + 1];
  const uint8_t *initargs;
  int rc = mpx__mpi_start_parse(m, len, &L.h, name, &initargs);
  if (rc) mpx__lead_fatal("a malformed start record from the root", rc);
  L.lim = mpx__limits_default(L.h.max_payload);
  L.victim = s->rank;
  /* peers: this rank's threads, its members, then the other leaders (who may borrow) */
  int nl = 0; /* the leaders this one steals from, when all of them serve this executor */
  if (s->leaders != MPI_COMM_NULL && (L.h.flags & MPX__START_TEAM)) MPI_Comm_size(s->leaders, &nl);
  L.nl = nl;
  L.p = mpx__lead_calloc((size_t)(1 + s->nmembers + nl), sizeof *L.p);
  L.peer_at = mpx__lead_calloc((size_t)s->size, sizeof *L.peer_at);
  L.stash = mpx__lead_calloc((size_t)s->size, sizeof *L.stash);
  for (int r = 0; r < s->size; r++) L.peer_at[r] = -1;
  int n = 1 + s->nmembers, total = L.h.threads, sum = s->my_cores;
  for (int k = 0; k < s->nmembers; k++) sum += s->member_cores[k];
  for (int k = 0; k < n; k++) { /* the node's cores as planned, else an even split */
    int cores = k ? s->member_cores[k - 1] : s->my_cores;
    int t = total == sum ? cores : total / n + (k < total % n);
    L.p[L.np++] = (lpeer){.rank = k ? s->members[k - 1] : -1, .threads = t};
  }
  for (int k = 0; k < nl; k++)
    if (s->leader_ranks[k] != s->rank) L.p[L.np++] = (lpeer){.rank = s->leader_ranks[k]};
  for (int i = 0; i < L.np; i++)
    if (L.p[i].rank >= 0) L.peer_at[L.p[i].rank] = i;
  for (int i = 1; i <= s->nmembers; i++) { /* the members' START: as the root's, fewer threads */
    if (!L.p[i].threads) continue;
    mpx__mpi_start h = L.h;
    h.threads = L.p[i].threads;
    mpx__wbuf w = {0};
    if (mpx__wbuf_append(&w, &h, sizeof h) || mpx__wbuf_append(&w, m + sizeof h, len - sizeof h))
      mpx__lead_fatal("allocating", MPX_ENOMEM);
    mpx__lead_post(&L, L.p[i].rank, MPX__TAG_START, &w);
  }
  if (L.p[0].threads && (rc = mpx__mpi_local_start(&L.local, L.p[0].threads, L.h.worker, s,
                                                   L.h.name_len ? name : NULL, initargs,
                                                   L.h.initargs_len, L.h.max_payload, s->my_bell)))
    mpx__lead_fatal("starting task threads", rc);
  mpx__mpi_thread_setup();
  mpx__backoff bo = mpx__backoff_for(s);
  for (;;) {
    uint32_t seen = atomic_load_explicit(&s->my_bell->seq, memory_order_seq_cst);
    bool busy = mpx__sendq_progress(&L.sq) > 0;
    int got = 0;
    while (got < SWEEP_MAX && take_message(&L)) got++;
    const uint8_t *d;
    size_t dl;
    while (L.local && mpx__mpi_local_poll(L.local, &d, &dl)) {
      Mpx__Batch *b;
      if ((rc = mpx__codec_unpack(d, dl, &L.lim, &b))) mpx__lead_fatal("own results", rc);
      take_answer(&L, 0, b, -1);
      got++;
    }
    schedule(&L);
    mpx__lead_flush(&L, false);
    if (L.fin) {
      int done = 0;
      MPI_Test(&L.fin_req, &done, MPI_STATUS_IGNORE);
      if (done) break;
    }
    if (busy || got)
      mpx__backoff_reset(&bo);
    else
      mpx__bell_wait(s->my_bell, seen, mpx__backoff_next(&bo));
    if (atomic_load_explicit(&s->my_bell->seq, memory_order_seq_cst) != seen)
      mpx__backoff_rung(&bo);
  }
  Mpx__Control c = MPX__CONTROL__INIT; /* the members' end: SHUTDOWN, then their BYEs */
  c.kind = MPX__CONTROL__KIND__SHUTDOWN;
  for (int i = 1; i <= s->nmembers; i++)
    if (L.p[i].threads) mpx__lead_post_control(&L, L.p[i].rank, &c, NULL, 0);
  for (bool all = false; !all;) {
    all = true;
    for (int i = 1; i <= s->nmembers; i++) all &= !L.p[i].threads || L.p[i].bye;
    if (all) break;
    mpx__sendq_progress(&L.sq);
    if (!take_message(&L)) mpx__bell_wait(s->my_bell, atomic_load(&s->my_bell->seq), 100000);
    mpx__lead_flush(&L, true);
  }
  mpx__mpi_local_stop(L.local);
  if (s->oneshot) /* members this executor did not start wait for their stop */
    for (int i = 1; i <= s->nmembers; i++)
      if (!L.p[i].threads) {
        MPI_Send(NULL, 0, MPI_BYTE, L.p[i].rank, MPX__TAG_STOP, s->comm);
        mpx__mpi_ring(s, L.p[i].rank);
      }
  rc = mpx__sendq_drain(&L.sq);
  mpx__log(MPX_LOG_INFO, "leader %d: lent %llu tasks, borrowed %llu in %llu requests", s->rank,
           L.lent, L.borrowed, L.steals);
  int mrc = MPI_Send(NULL, 0, MPI_BYTE, s->up, MPX__TAG_BYE, s->comm);
  mpx__mpi_ring(s, s->up);
  if (!rc && mrc != MPI_SUCCESS) rc = mpx__mpi_fail("MPI_Send", mrc);
  for (int i = 0; i < L.nout; i++) free(L.out[i].r), free(L.out[i].pay), free(L.out[i].plen);
  for (int r = 0; r < s->size; r++) mpx__mpi_stash_free(&L.stash[r]);
  free(L.out), free(L.held), free(L.p), free(L.peer_at), free(L.stash), free(L.rbuf);
  mpx__sendq_free(&L.sq);
  return rc;
}
