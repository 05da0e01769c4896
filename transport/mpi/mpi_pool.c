/* mpi_pool.c: task threads inside one rank (mpi_impl.h: mpx__mpi_pool). A worker rank with
 * several task threads (hybrid) runs its Batches here, and so does the root when it works too
 * (mpi_local.c); neither half of the transport calls into the other's file for it.
 *
 * Threads take work from the queued Batches by guided self-scheduling (a claim of remaining /
 * (2 * threads) tasks, at least 1), so long tasks spread over the threads one by one and short
 * ones go in runs; each claim becomes one packed Batch of results in the outbox, and the thread
 * rings the owner's bell so that the results leave at once.
 *
 * Take-back: every queued task has a claim word (0 queued) that its runner CASes to STARTED just
 * before running it (serve.c, who->claims); take_back CASes the words still 0 to TAKEN (newest
 * first; with one runner it stops at the first it cannot take, so that it gives back the tail of
 * what was pushed, as the dispatcher requires of a one-slot worker), and the runner skips those
 * (no Result). Exactly one CAS wins each word: a task is run or given back, never both; a cancel
 * at the root is decided here, by the same CAS (dispatch_remote.c). With
 * threads 0 the owner runs the tasks itself (mpx__mpi_pool_run: a one-thread worker rank, so
 * that short tasks pay no hand-off).
 *
 * Starts (mpx__mpi_pool_starts): the owner's thread that talks to the root looks every couple of
 * milliseconds for tasks a runner started (word STARTED), marks them REPORTED and queues a
 * Control STARTED with their ids in the outbox; a runner marks its tasks DONE before it queues
 * their results. Both under the lock's order, so a start is reported only before its result
 * (never after it), and tasks shorter than the look's period are never reported: their results
 * say it. The words then only grow: 0 -> STARTED -> REPORTED -> DONE, or 0 -> TAKEN.
 *
 * Guarantees: every pushed task is answered (or given back) exactly once, in one of the outbox's
 * Batches; stop finishes the queue before joining. A failure to serve (out of memory) ends the job:
 * MPI_Abort, as a worker rank's other fatal errors. Thread-safety: the queue, counters and outbox
 * are under p->lock; the owner's calls come from one thread at a time. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "mpx/error.h"
#include "os/clock.h"
#include "os/log.h"
#include "os/seg.h"
#include "progress.h"

struct mpx__mpi_job {
  Mpx__Batch *b;
  size_t next, done;
  struct mpx__mpi_job *link, *prev; /* the live jobs (not fully answered), in arrival order */
  void *extra;                      /* freed with the batch (its big arguments), may be NULL */
  void (*extra_free)(void *);
  _Atomic uint64_t claim[];         /* per task: 0 queued, STARTED, TAKEN (serve.c's claims) */
};

/* Claim words beyond progress.h's, seen only here: a start reported, a task answered. */
#define CLAIM_REPORTED ((uint64_t)3)
#define CLAIM_DONE ((uint64_t)4)

static void fatal(const char *what, int rc) {
  mpx__log(MPX_LOG_ERROR, "task threads: %s: %s", what, mpx_strerror(rc));
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
}

/* Under p->lock: reply r goes last in the queue the server sends from. */
static void append_reply(mpx__mpi_pool *p, mpx__mpi_reply *r) {
  r->link = NULL;
  if (p->out_tail)
    p->out_tail->link = r;
  else
    p->out = r;
  p->out_tail = r;
}

/* Serve tasks [first, first + take) of j on this thread and queue their results (none if every
 * one was given back); then count them answered, and free j once all are. */
static void serve_run(mpx__mpi_pool *p, mpx__mpi_job *j, size_t first, size_t take) {
  Mpx__Batch sub = MPX__BATCH__INIT;
  sub.n_tasks = take;
  sub.tasks = j->b->tasks + first;
  mpx__worker_id who = *p->who;
  who.claims = j->claim + first; /* tasks given back meanwhile are skipped */
  mpx__wbuf out = {0};
  mpx__mpi_reply *r = malloc(sizeof *r);
  if (!r) fatal("serving a batch", MPX_ENOMEM);
  r->nbufs = 0; /* a worker rank's big results go as their own messages (who.oob_min) */
  int rc = who.oob_min ? mpx__serve_batch_oob(&sub, &who, p->lim, &out, r->bufs, r->lens,
                                              &r->nbufs)
                       : mpx__serve_batch(&sub, &who, p->lim, &out);
  if (rc) fatal("serving a batch", rc);
  /* answered: no start to report any more (relaxed: the lock below orders it before the results
   * for mpx__mpi_pool_starts, which reads the words under it) */
  for (size_t t = 0; t < take; t++)
    if (atomic_load_explicit(&who.claims[t], memory_order_relaxed) != MPX__CLAIM_TAKEN)
      atomic_store_explicit(&who.claims[t], CLAIM_DONE, memory_order_relaxed);
  if (out.len) {
    r->data = out.data;
    r->len = out.len;
  } else { /* every task was given back: nothing to say (and no big result) */
    mpx__wbuf_free(&out);
    free(r);
    r = NULL;
  }
  pthread_mutex_lock(&p->lock);
  if (r) append_reply(p, r);
  p->tasks_left -= take;
  j->done += take;
  bool last = j->done == j->b->n_tasks;
  if (last) { /* off the live list: take_back walks it under the lock */
    if (j->prev)
      j->prev->link = j->link;
    else
      p->head = j->link;
    if (j->link)
      j->link->prev = j->prev;
    else
      p->tail = j->prev;
  }
  pthread_mutex_unlock(&p->lock);
  if (r) mpx__bell_ring(p->bell);
  if (last) {
    mpx__codec_free(j->b);
    if (j->extra_free) j->extra_free(j->extra);
    free(j);
  }
}

static void *pool_main(void *arg) {
  mpx__mpi_pool *p = arg;
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
    mpx__mpi_job *j = p->cur;
    size_t left = j->b->n_tasks - j->next, take = left / (2 * (size_t)p->threads);
    if (take < 1) take = 1;
    size_t first = j->next;
    j->next += take;
    if (j->next == j->b->n_tasks) p->cur = j->link; /* fully claimed: live until answered */
    pthread_mutex_unlock(&p->lock);
    serve_run(p, j, first, take);
    pthread_mutex_lock(&p->lock);
  }
  pthread_mutex_unlock(&p->lock);
  free(msg);
  return NULL;
}

int mpx__mpi_pool_start(mpx__mpi_pool *p) {
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->inited, NULL);
  if (p->threads == 0) { /* the owner runs the tasks (mpx__mpi_pool_run) */
    p->started = 1;
    p->init_rc = mpx__serve_init(p->init_name, p->initargs, p->initargs_len, p->who, &p->init_msg);
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

void mpx__mpi_pool_push(mpx__mpi_pool *p, Mpx__Batch *b) {
  mpx__mpi_pool_push_with(p, b, NULL, NULL);
}

void mpx__mpi_pool_push_with(mpx__mpi_pool *p, Mpx__Batch *b, void *extra,
                             void (*extra_free)(void *)) {
  mpx__mpi_job *j = calloc(1, sizeof *j + b->n_tasks * sizeof j->claim[0]); /* 0: queued */
  if (!j) fatal("queueing a batch", MPX_ENOMEM);
  j->b = b;
  j->extra = extra;
  j->extra_free = extra_free;
  pthread_mutex_lock(&p->lock);
  j->prev = p->tail;
  if (p->tail)
    p->tail->link = j;
  else
    p->head = j;
  p->tail = j;
  if (!p->cur) p->cur = j;
  p->tasks_left += b->n_tasks;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
}

bool mpx__mpi_pool_run(mpx__mpi_pool *p) {
  pthread_mutex_lock(&p->lock);
  mpx__mpi_job *j = p->cur;
  if (j) {
    j->next = j->b->n_tasks;
    p->cur = j->link;
  }
  pthread_mutex_unlock(&p->lock);
  if (!j) return false;
  /* in runs of k tasks, k doubling while a run takes under 20 us (empty tasks: a few runs), else
   * back to 1: each run's results go to the outbox, so that a task done before a long one is
   * posted (by the owner's standby) without waiting for the whole Batch */
  size_t n = j->b->n_tasks, k = 1;
  for (size_t first = 0; first < n;) {
    if (k > n - first) k = n - first;
    size_t run = k;
    int64_t t0 = mpx__now_ns();
    bool last = first + run == n;
    serve_run(p, j, first, run); /* frees j after the last run */
    first += run;
    k = mpx__now_ns() - t0 < 20000 ? 2 * k : 1;
    if (last) break;
  }
  return true;
}

bool mpx__mpi_pool_has_work(mpx__mpi_pool *p) {
  pthread_mutex_lock(&p->lock);
  bool any = p->cur != NULL;
  pthread_mutex_unlock(&p->lock);
  return any;
}

size_t mpx__mpi_pool_take_back(mpx__mpi_pool *p, uint64_t *ids, size_t max) {
  size_t k = 0;
  pthread_mutex_lock(&p->lock);
  for (mpx__mpi_job *j = p->tail; j && k < max; j = j->prev)
    for (size_t t = j->b->n_tasks; t-- > 0 && k < max;) {
      uint64_t queued = 0;
      /* relaxed: one CAS on the word wins (serve.c's is the other); nothing is read through it */
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

int mpx__mpi_pool_give_back(mpx__mpi_pool *p, mpx__wbuf *out) {
  pthread_mutex_lock(&p->lock);
  size_t cap = p->tasks_left; /* only the owner pushes: an upper bound */
  pthread_mutex_unlock(&p->lock);
  if (cap > p->lim->max_items) cap = p->lim->max_items;
  size_t c = cap ? cap : 1;
  uint64_t *ids = malloc(c * (sizeof *ids + sizeof(Mpx__Result) + sizeof(Mpx__Result *)));
  if (!ids) return MPX_ENOMEM;
  Mpx__Result *rs = (Mpx__Result *)(ids + c);
  Mpx__Result **rp = (Mpx__Result **)(rs + c);
  size_t k = mpx__mpi_pool_take_back(p, ids, cap);
  for (size_t i = 0; i < k; i++) {
    mpx__result__init(&rs[i]);
    rs[i].call_id = ids[i];
    rp[i] = &rs[i];
  }
  Mpx__Control ctl = MPX__CONTROL__INIT;
  ctl.kind = MPX__CONTROL__KIND__RETURNED;
  Mpx__Batch b = MPX__BATCH__INIT;
  b.control = &ctl;
  b.n_results = k;
  b.results = rp;
  int rc = mpx__codec_pack(&b, p->lim, out); /* bare ids of at most max_items tasks: fits */
  free(ids);
  return rc;
}

void mpx__mpi_pool_starts(mpx__mpi_pool *p) {
  enum { MAX = 256 };
  Mpx__Result rs[MAX], *rp[MAX];
  size_t k = 0;
  mpx__mpi_reply *r = NULL;
  /* all under the lock: the notice enters the outbox before any result of its tasks */
  pthread_mutex_lock(&p->lock);
  for (mpx__mpi_job *j = p->head; j && k < MAX; j = j->link)
    for (size_t t = 0; t < j->b->n_tasks && k < MAX; t++) {
      uint64_t started = MPX__CLAIM_STARTED;
      /* relaxed: under the lock, which orders it against a runner's DONE and results */
      if (atomic_compare_exchange_strong_explicit(&j->claim[t], &started, CLAIM_REPORTED,
                                                  memory_order_relaxed, memory_order_relaxed)) {
        mpx__result__init(&rs[k]);
        rs[k].call_id = j->b->tasks[t]->call_id;
        rp[k] = &rs[k];
        k++;
      }
    }
  mpx__wbuf out = {0};
  if (k) {
    Mpx__Control ctl = MPX__CONTROL__INIT;
    ctl.kind = MPX__CONTROL__KIND__STARTED;
    Mpx__Batch b = MPX__BATCH__INIT;
    b.control = &ctl;
    b.n_results = k;
    b.results = rp;
    int rc = mpx__codec_pack(&b, p->lim, &out); /* bare ids of at most 256 tasks: fits */
    if (rc || !(r = malloc(sizeof *r))) fatal("reporting starts", rc ? rc : MPX_ENOMEM);
    *r = (mpx__mpi_reply){.data = out.data, .len = out.len};
    append_reply(p, r);
  }
  pthread_mutex_unlock(&p->lock);
  if (k) mpx__bell_ring(p->bell);
}

void mpx__mpi_pool_answer(mpx__mpi_pool *p, mpx__wbuf *out) {
  mpx__mpi_reply *r = malloc(sizeof *r);
  if (!r) fatal("answering", MPX_ENOMEM);
  *r = (mpx__mpi_reply){.data = out->data, .len = out->len};
  *out = (mpx__wbuf){0};
  pthread_mutex_lock(&p->lock);
  append_reply(p, r);
  pthread_mutex_unlock(&p->lock);
  mpx__bell_ring(p->bell);
}

mpx__mpi_reply *mpx__mpi_pool_take(mpx__mpi_pool *p) {
  pthread_mutex_lock(&p->lock);
  mpx__mpi_reply *r = p->out;
  p->out = p->out_tail = NULL;
  pthread_mutex_unlock(&p->lock);
  return r;
}

bool mpx__mpi_pool_idle(mpx__mpi_pool *p) {
  pthread_mutex_lock(&p->lock);
  bool idle = !p->tasks_left && !p->out;
  pthread_mutex_unlock(&p->lock);
  return idle;
}

void mpx__mpi_pool_stop(mpx__mpi_pool *p) {
  pthread_mutex_lock(&p->lock);
  p->quit = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; p->tids && i < p->started; i++) pthread_join(p->tids[i], NULL);
  while (p->out) {
    mpx__mpi_reply *r = p->out;
    p->out = r->link;
    free(r->data);
    for (int k = 0; k < r->nbufs; k++) mpx__seg_pool_free(r->bufs[k], r->lens[k]);
    free(r);
  }
  free(p->tids);
  free(p->init_msg);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->inited);
}
