/* mpi_worker.c: the MPI transport, worker half: a worker rank serves executor after executor.
 *
 * For each executor (a TAG_START record from the root) the rank runs the initializer, answers
 * with a Batch carrying Control READY (slots = its task threads; the initializer's Error if it
 * failed), then serves Batches until Control SHUTDOWN, answers TAG_BYE and waits for the next
 * start or TAG_STOP.
 *
 * One task thread: the serving thread runs each Batch itself (no hand-off, so short tasks keep
 * their latency; mpi_pool.c's threads-0 mode, in runs whose results go out as they are done). A
 * standby thread looks every 2 ms (500 wake-ups a second while an executor runs) whether the
 * serving thread is still in the run it saw last time; if so it takes the baton (the mutex held by
 * whichever thread calls MPI, so SERIALIZED suffices) and serves messages until that run ends:
 * tasks are queued, results posted, a TAKEBACK answered. Several task threads (hybrid ranks): the
 * serving thread only communicates; the task threads are started for the executor (each runs the
 * initializer, as a thread worker does) and take work from the received Batches by guided
 * self-scheduling (a claim of remaining / (2 * threads) tasks, at least 1), so long tasks spread
 * over the threads one by one and short ones go in runs; each claim becomes one packed Batch of
 * results in an outbox, and the task thread rings the serving thread's bell so that the results
 * leave at once.
 *
 * Take-back: a Control TAKEBACK is answered at once (by the serving thread, or by the standby while
 * a run lasts) with a Control RETURNED whose Results carry only the call ids of the tasks no runner
 * has started, which will never run here (mpi_pool.c's claim words: exactly one side wins each).
 * This is also how the root cancels a task sent here (dispatch_remote.c).
 *
 * Starts: the root shows a task as running only once the rank says it started it. The thread that
 * talks to the root (the standby while a run lasts 2 ms or more; the serving thread of a hybrid
 * rank, every 2 ms) queues a Control STARTED naming the tasks started since its last look
 * (mpx__mpi_pool_starts), ahead of their results; a shorter task is never reported (its result
 * is its start), so short tasks cost nothing.
 *
 * The task threads are a pool (mpi_pool.c), which the root also uses to run tasks on its own
 * cores. Thread-safety: one thread at a time calls MPI and uses the receive buffer and send queue:
 * the serving thread, or the standby while it holds the baton. The pool's queue and outbox are
 * under its lock; the bell is lock-free (mpi_common.c); running and runs are relaxed hints that
 * the baton then confirms. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/seg.h"
#include "task_impl.h"

static void fatal(const char *what, int rc) {
  mpx__log(MPX_LOG_ERROR, "worker rank: %s: %s", what, mpx_strerror(rc));
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
}

/* ---- big arguments, received as their own messages ---------------------------------------- */

/* The big arguments of one batch (TAG_PAYLOAD messages right after it), freed with the batch. */
typedef struct args_in {
  int n;
  void *buf[MPX__SERVE_SEGS]; /* result-pool blocks (os/seg.h): warm once one came back */
  size_t len[MPX__SERVE_SEGS];
} args_in;

static void free_args(void *a) {
  args_in *in = a;
  for (int k = 0; in && k < in->n; k++) mpx__seg_pool_free(in->buf[k], in->len[k]);
  free(in);
}

/* Receive the TAG_PAYLOAD messages that follow batch b (one per Task with arg_shm, in order)
 * into their own buffers; each Task's arg then points at its buffer. NULL when there are none.
 * The root is trusted, but sizes are still checked (mpx__mpi_take_payload: exactly arg_shm, at
 * most max_payload); a Task whose argument did not come keeps arg_shm, and serving fails it. */
static void *recv_args(MPI_Comm comm, int root, Mpx__Batch *b, const mpx__limits *lim) {
  args_in *in = NULL;
  for (size_t k = 0; k < b->n_tasks; k++) {
    Mpx__Task *t = b->tasks[k];
    if (!t->arg_shm) continue;
    if (!in && !(in = calloc(1, sizeof *in))) fatal("receiving an argument", MPX_ENOMEM);
    void *p = NULL;
    if (in->n == MPX__SERVE_SEGS || t->arg_shm > lim->max_payload || t->arg.len ||
        mpx__mpi_take_payload(comm, root, (size_t)t->arg_shm, 600.0, &p, NULL, NULL))
      continue;
    in->len[in->n] = (size_t)t->arg_shm;
    in->buf[in->n++] = p;
    t->arg.data = p;
    t->arg.len = (size_t)t->arg_shm;
    t->arg_shm = 0;
  }
  return in;
}

/* ---- one executor ------------------------------------------------------------------------- */

typedef struct server {
  mpx__mpi_session *s;
  mpx__limits lim;
  mpx__worker_id who;
  mpx__sendq sq;
  mpx__bell *bell; /* the session's bell for this rank */
  mpx__mpi_pool p;      /* threads 0 (one task thread): this thread runs the tasks */
  bool own;
  bool stopping;        /* SHUTDOWN received */
  mpx__halt halt;       /* stop requests (TAG_HALT) its tasks poll (who.halt) */
  uint8_t *rbuf;
  size_t rcap;
  /* own: while a run lasts, a standby thread may take the baton and serve messages */
  pthread_mutex_t baton; /* held by whichever thread calls MPI */
  _Atomic bool running;  /* the serving thread is in a run (baton released) */
  _Atomic uint64_t runs; /* runs started */
  _Atomic bool quit;
  pthread_t standby;
} server;

/* Post the packed bytes in `out` (taken over). */
static int post(server *sv, mpx__wbuf *out) {
  uint8_t *take = out->data;
  int rc = mpx__sendq_post(&sv->sq, sv->s->comm, sv->s->up, MPX__TAG_BATCH, out->data, out->len,
                           &take);
  mpx__mpi_ring(sv->s, sv->s->up);
  if (rc) free(take);
  *out = (mpx__wbuf){0};
  return rc;
}

static int send_ready(server *sv, int slots, int init_rc, const char *init_msg) {
  Mpx__Control c = MPX__CONTROL__INIT;
  Mpx__Error e = MPX__ERROR__INIT;
  c.kind = MPX__CONTROL__KIND__READY;
  c.pid = sv->who.pid;
  c.host = (char *)sv->who.host;
  c.slots = slots;
  if (init_rc) {
    e.code = init_rc;
    e.message = (char *)(init_msg ? init_msg : mpx_strerror(init_rc));
    e.pid = sv->who.pid;
    e.host = (char *)sv->who.host;
    e.rank = sv->who.rank;
    c.error = &e;
  }
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  mpx__wbuf out = {0};
  char *cut = mpx__control_fit(&c, &sv->lim); /* READY fits any max_payload */
  int rc = mpx__codec_pack(&b, &sv->lim, &out);
  free(cut);
  if (rc) {
    mpx__wbuf_free(&out);
    return rc;
  }
  return post(sv, &out);
}

/* Parse and check a start record; its strings point into `m`. */
int mpx__mpi_start_parse(const uint8_t *m, size_t len, mpx__mpi_start *h, char *name,
                         const uint8_t **initargs) {
  if (len < sizeof *h) return MPX_EPROTO;
  memcpy(h, m, sizeof *h);
  if (h->magic != MPX__MPI_START_MAGIC || h->version != 1 || h->threads < 1 ||
      h->threads > 4096 || h->name_len > MPX_TASK_NAME_MAX ||
      h->initargs_len > len - sizeof *h || h->name_len != len - sizeof *h - h->initargs_len)
    return MPX_EPROTO;
  memcpy(name, m + sizeof *h, h->name_len);
  name[h->name_len] = '\0';
  *initargs = m + sizeof *h + h->name_len;
  return MPX_OK;
}

/* Post the results the pool packed, one message each (with the baton), each reply's big results
 * first, as their own messages from the task's buffer (the root keeps them until the reply that
 * declares them: mpi_impl.h, the stash). True if any. */
static bool post_replies(server *sv) {
  mpx__mpi_reply *r = mpx__mpi_pool_take(&sv->p);
  bool any = r != NULL;
  while (r) {
    mpx__mpi_reply *next = r->link;
    for (int k = 0; k < r->nbufs; k++) {
      uint8_t *take = r->bufs[k];
      int rc = mpx__sendq_post(&sv->sq, sv->s->comm, sv->s->up, MPX__TAG_PAYLOAD, take,
                               r->lens[k], &take);
      mpx__seg_pool_free(take, r->lens[k]); /* NULL when the queue took it */
      if (rc) fatal("sending a result", rc);
    }
    mpx__wbuf out = {.data = r->data, .len = r->len, .cap = r->len};
    int rc = post(sv, &out);
    if (rc) fatal("sending results", rc);
    free(r);
    r = next;
  }
  return any;
}

/* Take one message from the root if there is one (with the baton): tasks are queued, a TAKEBACK
 * answered at once, a SHUTDOWN noted. 1: one was taken, 0: none, or a negative code. */
static int take_message(server *sv) {
  int flag = 0;
  MPI_Message msg;
  MPI_Status st;
  int rc = MPI_Improbe(sv->s->up, MPI_ANY_TAG, sv->s->comm, &flag, &msg, &st);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Improbe", rc);
  if (!flag) return 0;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  if (st.MPI_TAG == MPX__TAG_HALT && count == (int)sizeof(uint64_t)) {
    uint64_t id = 0; /* a running task asked to stop, or all: its should_stop sees it */
    MPI_Mrecv(&id, (int)sizeof id, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    mpx__halt_note(&sv->halt, id);
    return 1;
  }
  if (st.MPI_TAG == MPX__TAG_STOP) { /* the root abandoned this rank (it stopped answering) and
                                       * has ended the session: drop what has not started, end */
    MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    mpx__log(MPX_LOG_WARN, "rank %d: the session ended while it served an executor (the root had "
             "given up on this rank): its unstarted tasks are dropped", sv->s->rank);
    mpx__wbuf dropped = {0}; /* taken back as for a TAKEBACK, and not sent: they never run */
    mpx__mpi_pool_give_back(&sv->p, &dropped);
    mpx__wbuf_free(&dropped);
    sv->stopping = sv->s->ended = true;
    return 1;
  }
  if (st.MPI_TAG != MPX__TAG_BATCH || (size_t)count > sv->lim.max_message) {
    char dummy;
    MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    mpx__log(MPX_LOG_WARN, "rank %d: unexpected message (tag %d, %d bytes) ignored", sv->s->rank,
             st.MPI_TAG, count);
    return 1;
  }
  if ((rc = mpx__mpi_mrecv(&msg, (size_t)count, &sv->rbuf, &sv->rcap))) return rc;
  Mpx__Batch *b;
  if ((rc = mpx__codec_unpack(sv->rbuf, (size_t)count, &sv->lim, &b)))
    fatal("a malformed batch from the root", rc);
  if (b->control && b->control->kind == MPX__CONTROL__KIND__SHUTDOWN) sv->stopping = true;
  if (b->control && b->control->kind == MPX__CONTROL__KIND__TAKEBACK) {
    post_replies(sv); /* the results so far first */
    mpx__wbuf out = {0};
    if ((rc = mpx__mpi_pool_give_back(&sv->p, &out)) || (rc = post(sv, &out)))
      fatal("giving tasks back", rc);
  }
  void *args = recv_args(sv->s->comm, sv->s->up, b, &sv->lim); /* big ones follow it */
  if (b->n_tasks) {
    mpx__mpi_pool_push_with(&sv->p, b, args, free_args); /* the pool frees both */
    b = NULL;
    args = NULL;
  }
  free_args(args);
  mpx__codec_free(b);
  if (sv->rcap > ((size_t)16 << 20)) {
    free(sv->rbuf);
    sv->rbuf = NULL;
    sv->rcap = 0;
  }
  return 1;
}

/* One task thread: run the oldest queued Batch on this (serving) thread, with the baton released
 * so that the standby can serve messages if it lasts; then post its results. Called with the
 * baton, returns with it. */
static void run_own(server *sv) {
  /* relaxed: hints for the standby, which then takes the baton (that orders the rest) */
  atomic_fetch_add_explicit(&sv->runs, 1, memory_order_relaxed);
  atomic_store_explicit(&sv->running, true, memory_order_relaxed);
  pthread_mutex_unlock(&sv->baton);
  mpx__mpi_pool_run(&sv->p);
  atomic_store_explicit(&sv->running, false, memory_order_relaxed);
  mpx__bell_ring(sv->bell); /* a standby sleeping with the baton: give it back now */
  pthread_mutex_lock(&sv->baton);
  post_replies(sv);
}

/* One task thread's standby: every 2 ms it looks whether the serving thread is still in the run
 * it saw last time; if so (a Batch of 2 ms or more), it takes the baton and serves messages
 * (queues tasks, answers TAKEBACK, posts the results the run has so far) until that run ends.
 * So a long task never keeps a TAKEBACK waiting, and short ones pay no hand-off. */
static void *standby_main(void *arg) {
  server *sv = arg;
  mpx__mpi_thread_setup();
  uint64_t seen = 0;
  const struct timespec tick = {0, 2000000};
  while (!atomic_load_explicit(&sv->quit, memory_order_relaxed)) {
    nanosleep(&tick, NULL);
    uint64_t r = atomic_load_explicit(&sv->runs, memory_order_relaxed);
    if (!atomic_load_explicit(&sv->running, memory_order_relaxed) || r != seen) {
      seen = r;
      continue;
    }
    pthread_mutex_lock(&sv->baton);
    mpx__backoff bo = mpx__backoff_for(sv->s);
    int64_t starts_at = 0;
    while (atomic_load_explicit(&sv->running, memory_order_relaxed) &&
           atomic_load_explicit(&sv->runs, memory_order_relaxed) == r) {
      uint32_t bell = atomic_load_explicit(&sv->bell->seq, memory_order_seq_cst);
      int64_t now = mpx__now_ns();
      if (now - starts_at >= MPX__STARTS_NS) { /* the task that runs this long: report it */
        starts_at = now;
        mpx__mpi_pool_starts(&sv->p);
      }
      int got = take_message(sv);
      if (got < 0 || mpx__sendq_progress(&sv->sq) < 0) fatal("serving while a task runs", got);
      got |= post_replies(sv);
      if (got) mpx__backoff_reset(&bo);
      else mpx__bell_wait(sv->bell, bell, mpx__backoff_next(&bo));
    }
    pthread_mutex_unlock(&sv->baton);
  }
  return NULL;
}

static int serve_executor(mpx__mpi_session *s, const uint8_t *m, size_t len) {
  mpx__mpi_start h;
  char name[MPX_TASK_NAME_MAX + 1];
  const uint8_t *initargs;
  int rc = mpx__mpi_start_parse(m, len, &h, name, &initargs);
  if (rc) fatal("a malformed start record from the root", rc);
  server sv = {.s = s, .bell = s->my_bell};
  sv.lim = mpx__limits_default(h.max_payload);
  sv.who = (mpx__worker_id){.index = h.worker, .pid = (int)getpid(), .rank = s->rank,
                            .host = s->host, .halt = &sv.halt, .oob_min = MPX__SEG_MIN};
  sv.own = h.threads == 1;
  sv.p = (mpx__mpi_pool){.threads = sv.own ? 0 : h.threads, .bell = sv.bell, .who = &sv.who,
                         .lim = &sv.lim, .init_name = name, .initargs = initargs,
                         .initargs_len = h.initargs_len};
  if ((rc = mpx__mpi_pool_start(&sv.p))) fatal("starting task threads", rc);
  pthread_mutex_init(&sv.baton, NULL);
  if (sv.own && pthread_create(&sv.standby, NULL, standby_main, &sv))
    fatal("starting a thread", MPX_ESYS);
  rc = send_ready(&sv, sv.p.started, sv.p.init_rc, sv.p.init_msg);
  if (rc) fatal("sending READY", rc);

  mpx__backoff bo = mpx__backoff_for(s);
  int64_t starts_at = 0;
  pthread_mutex_lock(&sv.baton);
  for (;;) {
    uint32_t seen = atomic_load_explicit(&sv.bell->seq, memory_order_seq_cst);
    bool busy = false;
    if (!sv.own) { /* task threads: report the tasks they started, every MPX__STARTS_NS */
      int64_t now = mpx__now_ns();
      if (now - starts_at >= MPX__STARTS_NS) {
        starts_at = now;
        mpx__mpi_pool_starts(&sv.p);
      }
    }
    if ((rc = mpx__sendq_progress(&sv.sq)) < 0) break;
    busy |= rc > 0;
    busy |= post_replies(&sv); /* results the task threads packed */
    if (sv.own && mpx__mpi_pool_has_work(&sv.p)) {
      run_own(&sv);
      busy = true;
    } else if ((rc = take_message(&sv)) < 0) {
      break;
    } else {
      busy |= rc > 0;
    }
    if (sv.stopping && mpx__mpi_pool_idle(&sv.p)) {
      rc = mpx__sendq_drain(&sv.sq);
      if (!rc) {
        int mrc = MPI_Send(NULL, 0, MPI_BYTE, s->up, MPX__TAG_BYE, s->comm);
        mpx__mpi_ring(s, s->up);
        if (mrc != MPI_SUCCESS) rc = mpx__mpi_fail("MPI_Send", mrc);
      }
      break;
    }
    if (busy) mpx__backoff_reset(&bo);
    else mpx__bell_wait(sv.bell, seen, mpx__backoff_next(&bo));
    /* rung: a message is on its way (the probe that saw nothing may only have pulled it in), so
     * look again for a while before the next long sleep */
    if (atomic_load_explicit(&sv.bell->seq, memory_order_seq_cst) != seen) mpx__backoff_rung(&bo);
  }
  pthread_mutex_unlock(&sv.baton);
  if (sv.own) {
    atomic_store_explicit(&sv.quit, true, memory_order_relaxed);
    pthread_join(sv.standby, NULL);
  }
  pthread_mutex_destroy(&sv.baton);
  mpx__mpi_pool_stop(&sv.p);
  mpx__sendq_free(&sv.sq);
  free(sv.rbuf);
  return rc < 0 ? rc : MPX_OK;
}

/* ---- the serve loop ----------------------------------------------------------------------- */

int mpx__mpi_serve(mpx__mpi_session *s) {
  mpx__mpi_thread_setup();
  mpx__backoff bo = mpx__backoff_for(s);
  uint8_t *buf = NULL;
  size_t cap = 0;
  int rc = MPX_OK;
  for (;;) {
    uint32_t seen = atomic_load_explicit(&s->my_bell->seq, memory_order_seq_cst);
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    int mrc = MPI_Improbe(s->up, MPI_ANY_TAG, s->comm, &flag, &msg, &st);
    if (mrc != MPI_SUCCESS) {
      rc = mpx__mpi_fail("MPI_Improbe", mrc);
      break;
    }
    if (!flag) {
      mpx__bell_wait(s->my_bell, seen, mpx__backoff_next(&bo));
      if (atomic_load_explicit(&s->my_bell->seq, memory_order_seq_cst) != seen)
        mpx__backoff_rung(&bo); /* rung: look again before the next long sleep */
      continue;
    }
    mpx__backoff_reset(&bo);
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if (st.MPI_TAG == MPX__TAG_START && (size_t)count <= ((size_t)1 << 30) + 4096) {
      if ((rc = mpx__mpi_mrecv(&msg, (size_t)count, &buf, &cap))) break;
      rc = s->nmembers ? mpx__mpi_lead(s, buf, (size_t)count) /* a node leader relays */
                       : serve_executor(s, buf, (size_t)count);
      if (rc) break;
      if (s->oneshot) break;
      if (cap > 4096) {
        free(buf);
        buf = NULL;
        cap = 0;
      }
      if (!s->ended) continue;
      /* the session ended while it served (an abandoned rank): TAG_STOP came then, and its
       * members still wait for theirs */
    } else {
      uint64_t dummy; /* a stale TAG_HALT is 8 bytes */
      MPI_Mrecv(&dummy, count == (int)sizeof dummy ? count : 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    }
    if (st.MPI_TAG == MPX__TAG_STOP || s->ended) {
      for (int k = 0; k < s->nmembers; k++) { /* a leader's members serve it: pass it on */
        MPI_Send(NULL, 0, MPI_BYTE, s->members[k], MPX__TAG_STOP, s->comm);
        mpx__mpi_ring(s, s->members[k]);
      }
      break;
    }
    /* anything else between executors is stale: dropped */
  }
  free(buf);
  return rc;
}
