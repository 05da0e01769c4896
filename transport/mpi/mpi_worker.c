/* mpi_worker.c: the MPI transport, worker half: a worker rank serves executor after executor.
 *
 * For each executor (a TAG_START record from the root) the rank runs the initializer, answers
 * with a Batch carrying Control READY (slots = its task threads; the initializer's Error if it
 * failed), then serves Batches until Control SHUTDOWN, answers TAG_BYE and waits for the next
 * start or TAG_STOP.
 *
 * One task thread: the serving thread runs each Batch itself (no hand-off, so short tasks keep
 * their latency) and posts the packed results with MPI_Isend. A standby thread looks every 2 ms
 * (500 wake-ups a second while an executor runs) whether the serving thread is still in the Batch
 * it saw last time; if so it takes the baton (the mutex held by whichever thread calls MPI, so
 * SERIALIZED suffices) and serves messages until that Batch is done: tasks are queued for the
 * serving thread, a TAKEBACK answered. Several task threads (hybrid ranks): the serving thread
 * only communicates; the task threads (started for the executor: each runs the initializer, as a
 * thread worker does) take work from the received Batches by guided self-scheduling (a claim of
 * remaining / (2 * threads) tasks, at least 1), so long tasks spread over the threads one by one
 * and short ones go in runs; each claim becomes one packed Batch of results in an outbox, and the
 * task thread rings the serving thread's bell so that the results leave at once.
 *
 * Take-back. Every received task has a claim word (0 queued) that its runner CASes to STARTED
 * just before running it (serve.c, who->claims). On a Control TAKEBACK the thread with the baton
 * CASes every word still 0 to TAKEN (newest first; with one task runner it stops at the first it
 * cannot take, so that it gives back the tail of what it received, as the dispatcher requires of
 * a one-slot rank) and answers at once with a Control RETURNED whose Results carry only those
 * call ids; the runner skips them (no Result). Exactly one CAS wins each word, so a task is either
 * run here or given back, never both. A TAKEBACK is answered within a few milliseconds even while
 * a long task runs: by a hybrid rank's serving thread, which runs no task, or by a one-thread
 * rank's standby.
 *
 * Thread-safety: one thread at a time calls MPI and uses the receive buffer and send queue: the
 * serving thread, or a one-thread rank's standby while it holds the baton. The pool's queue and
 * outbox are under pool.lock; the bell is lock-free (mpi_common.c); claim words are CASed
 * (relaxed: one CAS wins each, nothing else is read through them); has_work, running and runs
 * are relaxed hints that the lock or the baton then confirms. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "os/clock.h"
#include "os/log.h"
#include "progress.h"
#include "task_impl.h"

/* ---- the task threads -------------------------------------------------------------------- */

typedef struct job {
  Mpx__Batch *b;
  size_t next, done;
  struct job *link, *prev; /* the live jobs (not fully answered), in arrival order */
  _Atomic uint64_t claim[]; /* per task: 0 queued, STARTED (a task thread runs it), TAKEN (given
                               back to the dispatcher): serve.c's who->claims */
} job;

typedef struct reply {
  uint8_t *data;
  size_t len;
  struct reply *link;
} reply;

typedef struct pool {
  pthread_mutex_t lock;
  pthread_cond_t work, inited;
  job *head, *tail;      /* every live job */
  job *cur;              /* the first one with tasks no thread has claimed yet; NULL: none */
  _Atomic bool has_work; /* cur != NULL, for the threads' brief spin before they sleep */
  size_t tasks_left;     /* received, not yet answered or skipped */
  reply *out, *out_tail;
  bool quit;
  int threads, started, init_done, init_rc;
  char *init_msg;
  pthread_t *tids;
  mpx__bell *bell;
  const mpx__worker_id *who;
  const mpx__limits *lim;
  const char *init_name;
  const void *initargs;
  size_t initargs_len;
} pool;

static void fatal(const char *what, int rc) {
  mpx__log(MPX_LOG_ERROR, "worker rank: %s: %s", what, mpx_strerror(rc));
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
}

static void *pool_main(void *arg) {
  pool *p = arg;
  char *msg = NULL;
  int rc = mpx__serve_init(p->init_name, p->initargs, p->initargs_len, p->who, &msg);
  pthread_mutex_lock(&p->lock);
  if (rc && !p->init_rc) {
    p->init_rc = rc;
    p->init_msg = msg;
    msg = NULL;
  }
  p->init_done++;
  pthread_cond_broadcast(&p->inited);
  for (;;) {
    while (!p->cur && !p->quit) pthread_cond_wait(&p->work, &p->lock);
    if (!p->cur) break;
    job *j = p->cur;
    size_t left = j->b->n_tasks - j->next, take = left / (2 * (size_t)p->threads);
    if (take < 1) take = 1;
    size_t first = j->next;
    j->next += take;
    if (j->next == j->b->n_tasks) { /* fully claimed: still live until done */
      p->cur = j->link;
      atomic_store_explicit(&p->has_work, p->cur != NULL, memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->lock);

    Mpx__Batch sub = MPX__BATCH__INIT;
    sub.n_tasks = take;
    sub.tasks = j->b->tasks + first;
    mpx__worker_id who = *p->who;
    who.claims = j->claim + first; /* tasks the server gave back are skipped */
    mpx__wbuf out = {0};
    rc = mpx__serve_batch(&sub, &who, p->lim, &out);
    if (rc) fatal("serving a batch", rc);
    reply *r = NULL;
    if (out.len && !(r = malloc(sizeof *r))) fatal("serving a batch", MPX_ENOMEM);
    if (r) *r = (reply){.data = out.data, .len = out.len};
    else mpx__wbuf_free(&out); /* every task of the run was given back: nothing to send */

    pthread_mutex_lock(&p->lock);
    if (r && p->out_tail) p->out_tail->link = r;
    else if (r) p->out = r;
    if (r) p->out_tail = r;
    p->tasks_left -= take;
    j->done += take;
    bool last = j->done == j->b->n_tasks;
    if (last) { /* off the live list: the server's take-back walks it under the lock */
      if (j->prev) j->prev->link = j->link;
      else p->head = j->link;
      if (j->link) j->link->prev = j->prev;
      else p->tail = j->prev;
    }
    pthread_mutex_unlock(&p->lock);
    if (r) mpx__bell_ring(p->bell);
    if (last) {
      mpx__codec_free(j->b);
      free(j);
    }
    pthread_mutex_lock(&p->lock);
  }
  pthread_mutex_unlock(&p->lock);
  free(msg);
  return NULL;
}

/* Queue a received Batch of tasks for the task threads (server thread). */
static void pool_add(pool *p, Mpx__Batch *b) {
  job *j = calloc(1, sizeof *j + b->n_tasks * sizeof j->claim[0]); /* claims 0: queued */
  if (!j) fatal("queueing a batch", MPX_ENOMEM);
  j->b = b;
  pthread_mutex_lock(&p->lock);
  j->prev = p->tail;
  if (p->tail) p->tail->link = j;
  else p->head = j;
  p->tail = j;
  if (!p->cur) p->cur = j;
  atomic_store_explicit(&p->has_work, true, memory_order_relaxed);
  p->tasks_left += b->n_tasks;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
}

/* Take back up to `max` tasks no thread has started (their words: 0 -> TAKEN; the threads skip
 * them) into ids[], in the order they were received; returns how many (server thread). It walks
 * from the newest task back; with one task thread it stops at the first word it cannot take, so
 * that what it gives back is always the tail of what the rank received: that thread starts tasks
 * in order, and the dispatcher accepts from a one-slot rank only the tail of its window. */
static size_t pool_take_back(pool *p, uint64_t *ids, size_t max) {
  size_t k = 0;
  pthread_mutex_lock(&p->lock);
  for (job *j = p->tail; j && k < max; j = j->prev)
    for (size_t t = j->b->n_tasks; t-- > 0 && k < max;) {
      uint64_t queued = 0;
      /* relaxed: see serve.c (one CAS on the word wins; nothing else is read through it) */
      if (atomic_compare_exchange_strong_explicit(&j->claim[t], &queued, MPX__CLAIM_TAKEN,
                                                  memory_order_relaxed, memory_order_relaxed))
        ids[k++] = j->b->tasks[t]->call_id;
      else if (p->started == 1)
        goto done;
    }
done:
  pthread_mutex_unlock(&p->lock);
  for (size_t a = 0; a < k / 2; a++) { /* newest first -> in order */
    uint64_t x = ids[a];
    ids[a] = ids[k - 1 - a];
    ids[k - 1 - a] = x;
  }
  return k;
}

/* Start the threads and wait until each ran the initializer; `none`: no thread (a one-thread
 * rank's serving thread runs its tasks itself, see run_own), only the queue. */
static int pool_start(pool *p, bool none) {
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->inited, NULL);
  if (none) {
    p->started = 1; /* the one task runner, for pool_take_back's rule */
    return MPX_OK;
  }
  p->tids = calloc((size_t)p->threads, sizeof *p->tids);
  if (!p->tids) return MPX_ENOMEM;
  for (; p->started < p->threads; p->started++)
    if (pthread_create(&p->tids[p->started], NULL, pool_main, p)) break;
  pthread_mutex_lock(&p->lock);
  while (p->init_done < p->started) pthread_cond_wait(&p->inited, &p->lock);
  pthread_mutex_unlock(&p->lock);
  return p->started ? MPX_OK : MPX_ESYS;
}

static void pool_stop(pool *p) {
  pthread_mutex_lock(&p->lock);
  p->quit = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; p->tids && i < p->started; i++) pthread_join(p->tids[i], NULL);
  while (p->out) {
    reply *r = p->out;
    p->out = r->link;
    free(r->data);
    free(r);
  }
  free(p->tids);
  free(p->init_msg);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->inited);
}

/* ---- one executor ------------------------------------------------------------------------- */

typedef struct server {
  mpx__mpi_session *s;
  mpx__limits lim;
  mpx__worker_id who;
  mpx__sendq sq;
  mpx__bell bell;
  pool p;
  uint8_t *rbuf;
  size_t rcap;
  bool stopping;       /* SHUTDOWN received */
  /* One task thread (own): the serving thread runs the tasks itself; while a run lasts, a
   * standby thread may take the baton and serve messages (see standby_main) */
  bool own;
  pthread_mutex_t baton; /* held by whichever thread calls MPI */
  _Atomic bool running;  /* the serving thread is in a run (baton released) */
  _Atomic uint64_t runs; /* runs started */
  _Atomic bool quit;
  pthread_t standby;
} server;

/* Post the packed bytes in `out` (taken over). */
static int post(server *sv, mpx__wbuf *out) {
  uint8_t *take = out->data;
  int rc = mpx__sendq_post(&sv->sq, sv->s->comm, sv->s->root, MPX__TAG_BATCH, out->data, out->len,
                           &take);
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

/* Answer a TAKEBACK: give back what no task thread has started, as a Control RETURNED whose
 * Results carry only those call ids (none: nothing was left). */
static void give_back(server *sv) {
  pthread_mutex_lock(&sv->p.lock);
  size_t cap = sv->p.tasks_left; /* only this thread adds tasks: an upper bound */
  pthread_mutex_unlock(&sv->p.lock);
  if (cap > sv->lim.max_items) cap = sv->lim.max_items;
  uint64_t *ids = malloc((cap ? cap : 1) * (sizeof *ids + sizeof(Mpx__Result) +
                                            sizeof(Mpx__Result *)));
  if (!ids) fatal("giving tasks back", MPX_ENOMEM);
  Mpx__Result *rs = (Mpx__Result *)(ids + (cap ? cap : 1));
  Mpx__Result **rp = (Mpx__Result **)(rs + (cap ? cap : 1));
  size_t k = pool_take_back(&sv->p, ids, cap);
  for (size_t i = 0; i < k; i++) {
    mpx__result__init(&rs[i]);
    rs[i].call_id = ids[i];
    rp[i] = &rs[i];
  }
  Mpx__Control c = MPX__CONTROL__INIT;
  c.kind = MPX__CONTROL__KIND__RETURNED;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &c;
  b.n_results = k;
  b.results = rp;
  mpx__wbuf out = {0};
  int rc = mpx__codec_pack(&b, &sv->lim, &out); /* bare ids of at most max_items tasks: fits */
  free(ids);
  if (rc || (rc = post(sv, &out))) fatal("giving tasks back", rc);
}

/* Parse and check a start record; its strings point into `m`. */
static int parse_start(const uint8_t *m, size_t len, mpx__mpi_start *h, char *name,
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

/* Take one message from the root if there is one (with the baton): tasks are queued, a TAKEBACK
 * answered, a SHUTDOWN noted. 1: one was taken, 0: none, or a negative code. */
static int take_message(server *sv) {
  int flag = 0;
  MPI_Message msg;
  MPI_Status st;
  int rc = MPI_Improbe(sv->s->root, MPI_ANY_TAG, sv->s->comm, &flag, &msg, &st);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Improbe", rc);
  if (!flag) return 0;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
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
  if (b->control && b->control->kind == MPX__CONTROL__KIND__TAKEBACK) give_back(sv);
  if (b->n_tasks) {
    pool_add(&sv->p, b);
    b = NULL;
  }
  mpx__codec_free(b);
  if (sv->rcap > ((size_t)16 << 20)) {
    free(sv->rbuf);
    sv->rbuf = NULL;
    sv->rcap = 0;
  }
  return 1;
}

/* Post the results in the outbox (with the baton), consecutive replies merged into one message
 * while it stays under max_message and 64 replies (each of at most BATCH_MAX results of one
 * received Batch: far under max_items): packed Batches of Results concatenate into one Batch (a
 * repeated field appends). True if anything was posted. */
static bool post_outbox(server *sv) {
  pthread_mutex_lock(&sv->p.lock);
  reply *r = sv->p.out;
  sv->p.out = sv->p.out_tail = NULL;
  pthread_mutex_unlock(&sv->p.lock);
  bool any = r != NULL;
  while (r) {
    mpx__wbuf out = {.data = r->data, .len = r->len, .cap = r->len};
    reply *next = r->link;
    free(r);
    int merged = 1;
    for (r = next; r && merged < 64 && out.len + r->len <= sv->lim.max_message; r = next, merged++) {
      if (mpx__wbuf_append(&out, r->data, r->len)) break; /* no memory: post it apart */
      next = r->link;
      free(r->data);
      free(r);
    }
    int rc = post(sv, &out);
    if (rc) fatal("sending results", rc);
  }
  return any;
}

/* Queue the packed results in `out` (taken over; nothing if empty) for post_outbox. */
static void outbox_add(pool *p, mpx__wbuf *out) {
  reply *r = NULL;
  if (out->len && !(r = malloc(sizeof *r))) fatal("serving a batch", MPX_ENOMEM);
  if (!r) {
    mpx__wbuf_free(out);
    return;
  }
  *r = (reply){.data = out->data, .len = out->len};
  *out = (mpx__wbuf){0};
  pthread_mutex_lock(&p->lock);
  if (p->out_tail) p->out_tail->link = r;
  else p->out = r;
  p->out_tail = r;
  pthread_mutex_unlock(&p->lock);
}

/* A one-thread rank: run the oldest queued Batch on the serving thread (no hand-off: the fast
 * path of short tasks), with the baton released so that the standby can serve messages if the
 * run lasts; then post its results. Called with the baton, returns with it. */
static void run_own(server *sv) {
  pool *p = &sv->p;
  pthread_mutex_lock(&p->lock);
  job *j = p->cur;
  j->next = j->b->n_tasks;
  p->cur = j->link;
  atomic_store_explicit(&p->has_work, p->cur != NULL, memory_order_relaxed);
  pthread_mutex_unlock(&p->lock);
  mpx__worker_id who = sv->who;
  /* relaxed: hints for the standby, which then takes the baton (that orders the rest) */
  atomic_fetch_add_explicit(&sv->runs, 1, memory_order_relaxed);
  atomic_store_explicit(&sv->running, true, memory_order_relaxed);
  pthread_mutex_unlock(&sv->baton);
  /* in runs of k tasks, k doubling while a run takes under 20 us (empty tasks: a few runs) and
   * back to 1 otherwise, each run's results to the outbox: a task that ends before a long one
   * has its result posted by the standby, not held until the Batch is done */
  size_t n = j->b->n_tasks, k = 1;
  for (size_t first = 0; first < n;) {
    if (k > n - first) k = n - first;
    Mpx__Batch sub = MPX__BATCH__INIT;
    sub.n_tasks = k;
    sub.tasks = j->b->tasks + first;
    who.claims = j->claim + first; /* tasks the standby gave back meanwhile are skipped */
    mpx__wbuf out = {0};
    int64_t t0 = mpx__now_ns();
    int rc = mpx__serve_batch(&sub, &who, &sv->lim, &out);
    if (rc) fatal("serving a batch", rc);
    first += k;
    k = mpx__now_ns() - t0 < 20000 ? 2 * k : 1;
    outbox_add(p, &out);
  }
  atomic_store_explicit(&sv->running, false, memory_order_relaxed);
  mpx__bell_ring(&sv->bell); /* a standby sleeping with the baton: give it back now */
  pthread_mutex_lock(&sv->baton);
  pthread_mutex_lock(&p->lock);
  p->tasks_left -= j->b->n_tasks;
  if (j->prev) j->prev->link = j->link;
  else p->head = j->link;
  if (j->link) j->link->prev = j->prev;
  else p->tail = j->prev;
  pthread_mutex_unlock(&p->lock);
  mpx__codec_free(j->b);
  free(j);
  post_outbox(sv);
}

/* A one-thread rank's standby: every 2 ms it looks whether the serving thread is still in the
 * run it saw last time; if so (a task of 2 ms or more), it takes the baton and serves messages
 * (queues tasks, answers TAKEBACK from the run's unstarted tasks and the queue) until that run
 * ends. So a long task never keeps a TAKEBACK waiting, and short ones pay no hand-off. */
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
    mpx__backoff bo = {0};
    while (atomic_load_explicit(&sv->running, memory_order_relaxed) &&
           atomic_load_explicit(&sv->runs, memory_order_relaxed) == r) {
      uint32_t bell = atomic_load_explicit(&sv->bell.seq, memory_order_seq_cst);
      int got = take_message(sv);
      if (got < 0 || mpx__sendq_progress(&sv->sq) < 0) fatal("serving while a task runs", got);
      got |= post_outbox(sv); /* results of the tasks the run has done so far */
      if (got) mpx__backoff_reset(&bo);
      else mpx__bell_wait(&sv->bell, bell, mpx__backoff_next(&bo));
    }
    pthread_mutex_unlock(&sv->baton);
  }
  return NULL;
}

static int serve_executor(mpx__mpi_session *s, const uint8_t *m, size_t len) {
  mpx__mpi_start h;
  char name[MPX_TASK_NAME_MAX + 1];
  const uint8_t *initargs;
  int rc = parse_start(m, len, &h, name, &initargs);
  if (rc) fatal("a malformed start record from the root", rc);
  server sv = {.s = s};
  sv.lim = mpx__limits_default(h.max_payload);
  sv.who = (mpx__worker_id){.index = h.worker, .pid = (int)getpid(), .rank = s->rank,
                            .host = s->host};
  sv.own = h.threads == 1;
  sv.p = (pool){.threads = h.threads, .bell = &sv.bell, .who = &sv.who, .lim = &sv.lim,
                .init_name = name, .initargs = initargs, .initargs_len = h.initargs_len};
  if ((rc = pool_start(&sv.p, sv.own))) fatal("starting task threads", rc);
  pthread_mutex_init(&sv.baton, NULL);
  if (sv.own) {
    sv.p.init_rc = mpx__serve_init(name, initargs, h.initargs_len, &sv.who, &sv.p.init_msg);
    if (pthread_create(&sv.standby, NULL, standby_main, &sv)) fatal("starting a thread", MPX_ESYS);
  }
  rc = send_ready(&sv, sv.p.started, sv.p.init_rc, sv.p.init_msg);
  if (rc) fatal("sending READY", rc);

  mpx__backoff bo = {0};
  pthread_mutex_lock(&sv.baton);
  for (;;) {
    uint32_t seen = atomic_load_explicit(&sv.bell.seq, memory_order_seq_cst);
    bool busy = false;
    if ((rc = mpx__sendq_progress(&sv.sq)) < 0) break;
    busy |= rc > 0;
    busy |= post_outbox(&sv);
    if (sv.own && sv.p.cur) { /* the standby queues jobs only with the baton, which we hold */
      run_own(&sv);
      busy = true;
    } else if ((rc = take_message(&sv)) < 0) {
      break;
    } else {
      busy |= rc > 0;
    }
    if (sv.stopping) {
      pthread_mutex_lock(&sv.p.lock);
      bool idle = !sv.p.tasks_left && !sv.p.out;
      pthread_mutex_unlock(&sv.p.lock);
      if (idle) {
        rc = mpx__sendq_drain(&sv.sq);
        if (!rc) {
          int mrc = MPI_Send(NULL, 0, MPI_BYTE, s->root, MPX__TAG_BYE, s->comm);
          if (mrc != MPI_SUCCESS) rc = mpx__mpi_fail("MPI_Send", mrc);
        }
        break;
      }
    }
    if (busy) mpx__backoff_reset(&bo);
    else mpx__bell_wait(&sv.bell, seen, mpx__backoff_next(&bo));
  }
  pthread_mutex_unlock(&sv.baton);
  if (sv.own) {
    atomic_store_explicit(&sv.quit, true, memory_order_relaxed);
    pthread_join(sv.standby, NULL);
  }
  pthread_mutex_destroy(&sv.baton);
  pool_stop(&sv.p);
  mpx__sendq_free(&sv.sq);
  free(sv.rbuf);
  return rc < 0 ? rc : MPX_OK;
}

/* ---- the serve loop ----------------------------------------------------------------------- */

int mpx__mpi_serve(mpx__mpi_session *s) {
  mpx__mpi_thread_setup();
  mpx__backoff bo = {0};
  mpx__bell none = {0};
  uint8_t *buf = NULL;
  size_t cap = 0;
  int rc = MPX_OK;
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    int mrc = MPI_Improbe(s->root, MPI_ANY_TAG, s->comm, &flag, &msg, &st);
    if (mrc != MPI_SUCCESS) {
      rc = mpx__mpi_fail("MPI_Improbe", mrc);
      break;
    }
    if (!flag) {
      mpx__bell_wait(&none, 0, mpx__backoff_next(&bo));
      continue;
    }
    mpx__backoff_reset(&bo);
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if (st.MPI_TAG == MPX__TAG_START && (size_t)count <= ((size_t)1 << 30) + 4096) {
      if ((rc = mpx__mpi_mrecv(&msg, (size_t)count, &buf, &cap))) break;
      if ((rc = serve_executor(s, buf, (size_t)count))) break;
      if (s->oneshot) break;
      if (cap > 4096) {
        free(buf);
        buf = NULL;
        cap = 0;
      }
      continue;
    }
    char dummy;
    MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    if (st.MPI_TAG == MPX__TAG_STOP) break;
    /* anything else between executors is stale: dropped */
  }
  free(buf);
  return rc;
}
