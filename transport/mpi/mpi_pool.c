/* mpi_pool.c: task threads inside one rank (mpi_impl.h: mpx__mpi_pool). A worker rank with
 * several task threads (hybrid) runs its Batches here, and so does the root when it works too
 * (mpi_local.c); neither half of the transport calls into the other's file for it.
 *
 * Threads take work from the queued Batches by guided self-scheduling (a claim of remaining /
 * (2 * threads) tasks, at least 1), so long tasks spread over the threads one by one and short
 * ones go in runs; each claim becomes one packed Batch of results in the outbox, and the thread
 * rings the owner's bell so that the results leave at once.
 *
 * Guarantees: every pushed task is answered exactly once, in one of the outbox's Batches; stop
 * finishes the queue before joining. A failure to serve (out of memory) ends the job: MPI_Abort,
 * as a worker rank's other fatal errors. Thread-safety: the queue, counters and outbox are under
 * p->lock; the owner's calls come from one thread at a time. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "mpx/error.h"
#include "os/log.h"

struct mpx__mpi_job {
  Mpx__Batch *b;
  size_t next, done;
  struct mpx__mpi_job *link;
  void *extra;                 /* freed with the batch (its big arguments), may be NULL */
  void (*extra_free)(void *);
};

static void fatal(const char *what, int rc) {
  mpx__log(MPX_LOG_ERROR, "task threads: %s: %s", what, mpx_strerror(rc));
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
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
    while (!p->head && !p->quit) pthread_cond_wait(&p->work, &p->lock);
    if (!p->head) break;
    mpx__mpi_job *j = p->head;
    size_t left = j->b->n_tasks - j->next, take = left / (2 * (size_t)p->threads);
    if (take < 1) take = 1;
    size_t first = j->next;
    j->next += take;
    if (j->next == j->b->n_tasks) { /* fully claimed: off the queue, still ours until done */
      p->head = j->link;
      if (!p->head) p->tail = NULL;
    }
    pthread_mutex_unlock(&p->lock);

    Mpx__Batch sub = MPX__BATCH__INIT;
    sub.n_tasks = take;
    sub.tasks = j->b->tasks + first;
    mpx__wbuf out = {0};
    rc = mpx__serve_batch(&sub, p->who, p->lim, &out);
    if (rc) fatal("serving a batch", rc);
    mpx__mpi_reply *r = malloc(sizeof *r);
    if (!r) fatal("serving a batch", MPX_ENOMEM);
    *r = (mpx__mpi_reply){.data = out.data, .len = out.len};

    pthread_mutex_lock(&p->lock);
    if (p->out_tail)
      p->out_tail->link = r;
    else
      p->out = r;
    p->out_tail = r;
    p->tasks_left -= take;
    j->done += take;
    bool last = j->done == j->b->n_tasks;
    pthread_mutex_unlock(&p->lock);
    mpx__bell_ring(p->bell);
    if (last) {
      mpx__codec_free(j->b);
      if (j->extra_free) j->extra_free(j->extra);
      free(j);
    }
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
  mpx__mpi_job *j = calloc(1, sizeof *j);
  if (!j) fatal("queueing a batch", MPX_ENOMEM);
  j->b = b;
  j->extra = extra;
  j->extra_free = extra_free;
  pthread_mutex_lock(&p->lock);
  if (p->tail)
    p->tail->link = j;
  else
    p->head = j;
  p->tail = j;
  p->tasks_left += b->n_tasks;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
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
  for (int i = 0; i < p->started; i++) pthread_join(p->tids[i], NULL);
  while (p->out) {
    mpx__mpi_reply *r = p->out;
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
