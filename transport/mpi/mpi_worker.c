/* mpi_worker.c: the MPI transport, worker half: a worker rank serves executor after executor.
 *
 * For each executor (a TAG_START record from the root) the rank runs the initializer, answers
 * with a Batch carrying Control READY (slots = its task threads; the initializer's Error if it
 * failed), then serves Batches until Control SHUTDOWN, answers TAG_BYE and waits for the next
 * start or TAG_STOP.
 *
 * One task thread: the serving thread runs each Batch itself (mpx__serve_batch) and posts the
 * packed results with MPI_Isend, so it is back at MPI_Improbe while they travel. Several task
 * threads (hybrid ranks): the serving thread only communicates; the task threads are started for
 * the executor (each runs the initializer, as a thread worker does) and take work from the
 * received Batches by guided self-scheduling (a claim of remaining / (2 * threads) tasks, at
 * least 1), so long tasks spread over the threads one by one and short ones go in runs; each claim
 * becomes one packed Batch of results in an outbox, and the task thread rings the serving
 * thread's bell so that the results leave at once.
 *
 * The task threads are a pool (mpi_pool.c), which the root also uses to run tasks on its own
 * cores. Thread-safety: only the serving thread calls MPI. The pool's queue and outbox are under
 * its lock; the bell is lock-free (mpi_common.c). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "os/seg.h"
#include "os/log.h"
#include "task_impl.h"

static void fatal(const char *what, int rc) {
  mpx__log(MPX_LOG_ERROR, "worker rank: %s: %s", what, mpx_strerror(rc));
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
}

/* ---- big arguments, received as their own messages ---------------------------------------- */

/* The big arguments of one batch, received as their own messages after it; buf[0] may be the
 * serving thread's kept buffer (keep_first), which is not freed. */
typedef struct args_in {
  int n;
  bool keep_first;
  void *buf[MPX__SERVE_SEGS];
} args_in;

static void free_args(void *a) {
  args_in *in = a;
  for (int k = 0; in && k < in->n; k++)
    if (k || !in->keep_first) free(in->buf[k]);
  free(in);
}

/* Largest argument buffer a single-threaded rank keeps between batches. */
#define KEEP_ARG_MAX ((size_t)512 << 20)

/* Receive the TAG_PAYLOAD messages that follow batch b (one per Task with arg_shm, in order)
 * into their own buffers (the first into *keep when keep is not NULL); each Task's arg then
 * points at its buffer. NULL when there are none. The root is trusted, but sizes are still
 * checked (mpx__mpi_take_payload: exactly arg_shm, at most max_payload). */
static void *recv_args(MPI_Comm comm, int root, Mpx__Batch *b, const mpx__limits *lim,
                       uint8_t **keep, size_t *keep_cap) {
  args_in *in = NULL;
  for (size_t k = 0; k < b->n_tasks; k++) {
    Mpx__Task *t = b->tasks[k];
    if (!t->arg_shm) continue;
    if (!in && !(in = calloc(1, sizeof *in))) fatal("receiving an argument", MPX_ENOMEM);
    void *p = NULL;
    bool kept = keep && in->n == 0 && t->arg_shm <= KEEP_ARG_MAX; /* the first: warm pages */
    if (in->n == MPX__SERVE_SEGS || t->arg_shm > lim->max_payload || t->arg.len ||
        mpx__mpi_take_payload(comm, root, (size_t)t->arg_shm, 600.0, &p, kept ? keep : NULL,
                              kept ? keep_cap : NULL))
      continue; /* serving fails this task (argument not mapped) */
    if (in->n == 0) in->keep_first = kept;
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
  mpx__mpi_pool p;
  bool hybrid;
  uint8_t *rbuf;
  size_t rcap;
  uint8_t *argbuf; /* single-threaded: the kept buffer of big arguments (recv_args) */
  size_t argcap;
} server;

/* Post the packed bytes in `out` (taken over). */
static int post(server *sv, mpx__wbuf *out) {
  uint8_t *take = out->data;
  int rc = mpx__sendq_post(&sv->sq, sv->s->comm, sv->s->root, MPX__TAG_BATCH, out->data, out->len,
                           &take);
  mpx__mpi_ring(sv->s, sv->s->root);
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

static int serve_executor(mpx__mpi_session *s, const uint8_t *m, size_t len) {
  mpx__mpi_start h;
  char name[MPX_TASK_NAME_MAX + 1];
  const uint8_t *initargs;
  int rc = parse_start(m, len, &h, name, &initargs);
  if (rc) fatal("a malformed start record from the root", rc);
  server sv = {.s = s, .bell = s->my_bell};
  sv.lim = mpx__limits_default(h.max_payload);
  sv.who = (mpx__worker_id){.index = h.worker, .pid = (int)getpid(), .rank = s->rank,
                            .host = s->host, .oob_min = MPX__SEG_MIN};
  sv.hybrid = h.threads > 1;
  int init_rc = 0;
  char *init_msg = NULL;
  if (sv.hybrid) {
    sv.p = (mpx__mpi_pool){.threads = h.threads, .bell = sv.bell, .who = &sv.who, .lim = &sv.lim,
                  .init_name = name, .initargs = initargs, .initargs_len = h.initargs_len};
    if ((rc = mpx__mpi_pool_start(&sv.p))) fatal("starting task threads", rc);
    init_rc = sv.p.init_rc;
    init_msg = sv.p.init_msg;
  } else {
    init_rc = mpx__serve_init(name, initargs, h.initargs_len, &sv.who, &init_msg);
  }
  rc = send_ready(&sv, sv.hybrid ? sv.p.started : 1, init_rc, init_msg);
  if (!sv.hybrid) free(init_msg);
  if (rc) fatal("sending READY", rc);

  bool stopping = false;
  mpx__backoff bo = mpx__backoff_for(s);
  for (;;) {
    uint32_t seen = atomic_load_explicit(&sv.bell->seq, memory_order_seq_cst);
    bool busy = false;
    if ((rc = mpx__sendq_progress(&sv.sq)) < 0) break;
    busy |= rc > 0;
    if (sv.hybrid) { /* results the task threads packed */
      mpx__mpi_reply *r = mpx__mpi_pool_take(&sv.p);
      while (r) {
        mpx__mpi_reply *next = r->link;
        mpx__wbuf out = {.data = r->data, .len = r->len, .cap = r->len};
        if ((rc = post(&sv, &out))) fatal("sending results", rc);
        free(r);
        r = next;
        busy = true;
      }
    }
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    rc = MPI_Improbe(s->root, MPI_ANY_TAG, s->comm, &flag, &msg, &st);
    if (rc != MPI_SUCCESS) {
      rc = mpx__mpi_fail("MPI_Improbe", rc);
      break;
    }
    if (flag) {
      busy = true;
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      if (st.MPI_TAG != MPX__TAG_BATCH || (size_t)count > sv.lim.max_message) {
        char dummy;
        MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        mpx__log(MPX_LOG_WARN, "rank %d: unexpected message (tag %d, %d bytes) ignored", s->rank,
                 st.MPI_TAG, count);
      } else {
        if ((rc = mpx__mpi_mrecv(&msg, (size_t)count, &sv.rbuf, &sv.rcap))) break;
        Mpx__Batch *b;
        if ((rc = mpx__codec_unpack(sv.rbuf, (size_t)count, &sv.lim, &b)))
          fatal("a malformed batch from the root", rc);
        if (b->control && b->control->kind == MPX__CONTROL__KIND__SHUTDOWN) stopping = true;
        /* a single-threaded rank is done with its arguments when it has served the batch: the
         * first big one goes into a buffer kept for the next batch */
        void *args = recv_args(s->comm, s->root, b, &sv.lim, sv.hybrid ? NULL : &sv.argbuf,
                               &sv.argcap);
        if (b->n_tasks && sv.hybrid) {
          mpx__mpi_pool_push_with(&sv.p, b, args, free_args); /* freed with the batch */
          b = NULL;
          args = NULL;
        } else if (b->n_tasks) {
          mpx__wbuf out = {0};
          void *big[MPX__SERVE_SEGS];
          size_t lens[MPX__SERVE_SEGS];
          int nbig = 0;
          if ((rc = mpx__serve_batch_oob(b, &sv.who, &sv.lim, &out, big, lens, &nbig)))
            fatal("serving a batch", rc);
          if ((rc = post(&sv, &out))) fatal("sending results", rc);
          for (int k = 0; k < nbig; k++) { /* big results follow as their own messages */
            uint8_t *take = big[k];
            rc = mpx__sendq_post(&sv.sq, s->comm, s->root, MPX__TAG_PAYLOAD, big[k], lens[k],
                                 &take);
            free(take);
            if (rc) fatal("sending results", rc);
          }
        }
        free_args(args);
        mpx__codec_free(b);
        if (sv.rcap > ((size_t)16 << 20)) {
          free(sv.rbuf);
          sv.rbuf = NULL;
          sv.rcap = 0;
        }
      }
    }
    if (stopping) {
      bool idle = true;
      if (sv.hybrid) idle = mpx__mpi_pool_idle(&sv.p);
      if (idle) {
        rc = mpx__sendq_drain(&sv.sq);
        if (!rc) {
          int mrc = MPI_Send(NULL, 0, MPI_BYTE, s->root, MPX__TAG_BYE, s->comm);
          mpx__mpi_ring(s, s->root);
          if (mrc != MPI_SUCCESS) rc = mpx__mpi_fail("MPI_Send", mrc);
        }
        break;
      }
    }
    if (busy) mpx__backoff_reset(&bo);
    else mpx__bell_wait(sv.bell, seen, mpx__backoff_next(&bo));
    /* rung: a message is on its way (the probe that saw nothing may only have pulled it in), so
     * look again for a while before the next long sleep */
    if (atomic_load_explicit(&sv.bell->seq, memory_order_seq_cst) != seen) mpx__backoff_rung(&bo);
  }
  if (sv.hybrid) mpx__mpi_pool_stop(&sv.p);
  mpx__sendq_free(&sv.sq);
  free(sv.rbuf);
  free(sv.argbuf);
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
    int mrc = MPI_Improbe(s->root, MPI_ANY_TAG, s->comm, &flag, &msg, &st);
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
