/* mpi.c: the MPI transport, root half: its descriptor (registry.h) with the link the dispatcher
 * drives (link.h), the init / fini hooks mpx_init and mpx_finalize call, and the endpoint ops
 * behind mpx_comm_executor (core/src/comm_executor.c). The worker half is mpi_worker.c, the
 * helpers both use are in mpi_common.c; the wire and the progress rules are described in
 * mpi_impl.h, the user-visible behaviour in mpx/mpi.h. The rest of libmpx reaches this file only
 * through the descriptor, and it calls nothing above the link contract.
 *
 * Roles. mpx_init under a launcher initialises MPI (MPI_THREAD_MULTIPLE asked, SERIALIZED
 * required) and builds the "world session" over a dup of MPI_COMM_WORLD: rank 0 returns MPX_MAIN,
 * ranks 1..N-1 serve executor after executor until mpx_finalize on rank 0 sends TAG_STOP, then
 * finalise MPI and return MPX_WORKER (the init hook claims the job on rank 0 and sets the role
 * to MPX_WORKER on the others). mpx_comm_executor opens an endpoint instead: a one-shot session
 * over the caller's communicator, which cfg->endpoint then carries to configure and start.
 * Without either (no launched job), configure plans and start gets spawn mode's session
 * (mpi_spawn.c), which spawns the workers at the first MPI executor; a spawned process's init
 * serves its parent and becomes a worker.
 *
 * Workers and slots. The dispatcher's worker i is one worker rank (comm ranks in order, skipping
 * the root); each runs `threads` tasks at once and says so in READY's slots. cfg->workers is the
 * number of ranks used and cfg->slots their threads in all (what mpx_executor_workers reports):
 * options.workers = 0 uses every worker rank with threads_per_rank threads each (0: the cores the
 * rank owns); options.workers = W > 0 asks for W tasks at once, as on the other backends: W slots
 * over min(W, worker ranks) ranks (each capped at threads_per_rank when that is set). When the
 * root works too (root_threads, mpi_local.c), its threads are one more worker, index n, after the
 * ranks: send hands it its Batches and poll takes its messages before MPI's.
 *
 * Thread-safety: MPI is called by one thread at a time per transport (the executor's creating
 * thread in start, the dispatcher thread afterwards, the destroying thread in destroy); wake is
 * the one op any thread may call, and it only rings a futex. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../transports.h"
#include "link.h"
#include "mpi_impl.h"
#include "mpx.pb-c.h"
#include "mpx/job.h"
#include "mpx/mpi.h"
#include "os/clock.h"
#include "os/log.h"
#include "task_impl.h"

/* One MPI message carries at most INT_MAX bytes; a Batch can be twice max_payload, so keep
 * max_payload at 1 GiB - 1 under MPI. */
#define MPI_MAX_PAYLOAD (((size_t)1 << 30) - 1)

static struct {
  bool we_init;       /* mpx_init called MPI_Init_thread: mpx_finalize calls MPI_Finalize */
  bool worker_done;   /* a worker rank finalised MPI already */
  bool hooked;        /* mpx_init ran this transport's init: spawn mode may start workers */
  bool mpi_off;       /* MPX_MPI=0: no MPI at all, not even spawn mode */
  int provided;       /* the thread level MPI gave */
  mpx__mpi_session *world; /* rank 0 of an mpx_init job */
  _Atomic int active; /* MPI transports running (SERIALIZED allows one) */
} g;

/* ---- sessions (which ranks serve, and the session's stop: mpi_ranks.c) ---------------------- */

static void session_unref(mpx__mpi_session *s) {
  if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
    mpx__mpi_session_free(s);
}

static mpx__mpi_session *session_of(const mpx__config *cfg) {
  return cfg->endpoint ? (mpx__mpi_session *)cfg->endpoint : g.world;
}

/* Rank 0 working (mpi_local.c): the root's own task threads for these options (0: none). */
static int root_threads(const mpx__mpi_session *s, const mpx__config *cfg) {
  if (cfg->root_threads != 0) return cfg->root_threads > 0 ? cfg->root_threads : 0;
  /* workers = W asks for W in all; spawn mode plans before its session exists: asked only */
  return s && !s->spawned && cfg->workers_opt == 0 ? s->root_spare : 0;
}

/* Spawn mode (mpi_spawn.c): no launched job and no endpoint. The workers to spawn, or a code. */
static int spawn_count(const mpx__config *cfg, int *n) {
  if (g.mpi_off) {
    mpx__set_errmsg("MPX_MPI=0: the MPI backend is off (unset it to spawn MPI workers, or run "
                    "under mpirun -np N)");
    return MPX_EMPI;
  }
  if (!g.hooked) {
    mpx__set_errmsg("the MPI backend outside mpirun spawns its workers, which needs mpx_init("
                    "&argc, &argv) first in main (the workers enter their role there)");
    return MPX_EMPI;
  }
  *n = cfg->workers_opt;
  if (*n <= 0) {
    const mpx_topology *t;
    mpx_topo_info in;
    *n = !mpx_topology_get(&t) && !mpx_topology_info(t, &in) ? in.default_workers : 1;
  }
  return MPX_OK;
}

static int mpi_configure(mpx__config *cfg) {
  mpx__mpi_session *s = session_of(cfg);
  int spawn = 0;
  if (!s && !cfg->endpoint) {
    int rc = spawn_count(cfg, &spawn);
    if (rc) return rc;
  }
  if (!spawn && (!s || s->nworkers < 1)) {
    mpx__set_errmsg("the MPI backend needs an MPI job of at least 2 ranks: run the program with "
                    "mpirun -np N (N >= 2) and call mpx_init first, or use mpx_comm_executor");
    return MPX_EMPI;
  }
  if (cfg->max_payload > MPI_MAX_PAYLOAD) cfg->max_payload = MPI_MAX_PAYLOAD;
  cfg->max_worker_memory = 0; /* ignored: MPI receives each message whole, at its announced size */
  if (spawn) { /* what mpx__mpi_plan() will give over `spawn` fresh ranks of one thread each */
    int tpr = cfg->threads_per_rank > 0 ? cfg->threads_per_rank : 1;
    cfg->workers = spawn;
    cfg->slots = cfg->workers_opt > 0 ? spawn : spawn * tpr;
  } else {
    int slots;
    cfg->workers = mpx__mpi_plan(s, cfg->workers, cfg->threads_per_rank, NULL, &slots);
    cfg->slots = slots;
  }
  int local = root_threads(s, cfg); /* the root's threads: one more worker, the last */
  if (local > 0) {
    cfg->workers += 1;
    cfg->slots += local;
  }
  return MPX_OK;
}

/* ---- the root's transport ----------------------------------------------------------------- */

typedef struct mpi_tp {
  mpx__mpi_session *s;
  const mpx__config *cfg;
  mpx__limits lim;
  int n;
  int *index_of;   /* comm rank -> worker index, -1 if not used */
  int *threads;    /* per worker index: the task threads it was started with */
  int lost_due;    /* abandoned workers whose loss poll has not reported yet (kill) */
  int *lost_q;
  bool *bye;       /* per comm rank: BYE received (or the rank is not used) */
  mpx__mpi_stash *stash; /* per comm rank: big results ahead of their batch (mpi_impl.h) */
  int byes_left;
  mpx__sendq sq;
  uint8_t *rbuf;
  size_t rcap;
  mpx__bell *bell; /* the session's bell for the root (shared with its node's ranks, or not) */
  uint32_t seen;
  bool stopped, counted;
  bool expect; /* rung by a worker whose message has not shown yet: poll on the timer */
  mpx__mpi_local *local; /* rank 0 working: the dispatcher's worker n (mpi_local.c), or NULL */
  int local_threads;
  unsigned long long msgs_out, bytes_out, msgs_in, bytes_in; /* this link's traffic, for stop */
} mpi_tp;

static int send_start(mpi_tp *tp, int i, int threads) {
  const mpx__config *c = tp->cfg;
  const char *name = c->initializer ? c->initializer->name : "";
  mpx__mpi_start h = {.magic = MPX__MPI_START_MAGIC,
                      .version = 1,
                      .max_payload = c->max_payload,
                      .threads = threads,
                      .worker = i,
                      .name_len = (uint32_t)strlen(name),
                      .flags = tp->n == tp->s->nworkers ? MPX__START_TEAM : 0,
                      .initargs_len = c->initargs_len};
  size_t len = sizeof h + h.name_len + c->initargs_len;
  if (len > INT_MAX) {
    mpx__set_errmsg("initargs of %zu bytes are too large for one MPI message", c->initargs_len);
    return MPX_ETOOBIG;
  }
  uint8_t *m = malloc(len);
  if (!m) return MPX_ENOMEM;
  memcpy(m, &h, sizeof h);
  memcpy(m + sizeof h, name, h.name_len);
  if (c->initargs_len) memcpy(m + sizeof h + h.name_len, c->initargs, c->initargs_len);
  int r = mpx__mpi_worker_rank(tp->s, i);
  int rc = MPI_Send(m, (int)len, MPI_BYTE, r, MPX__TAG_START, tp->s->comm);
  tp->msgs_out++, tp->bytes_out += len;
  mpx__mpi_ring(tp->s, r);
  free(m);
  return rc == MPI_SUCCESS ? MPX_OK : mpx__mpi_fail("MPI_Send", rc);
}

static void tp_free(mpi_tp *tp) {
  mpx__mpi_local_stop(tp->local);
  free(tp->lost_q);
  mpx__sendq_free(&tp->sq);
  free(tp->index_of);
  free(tp->threads);
  free(tp->bye);
  for (int r = 0; tp->stash && r < tp->s->size; r++) mpx__mpi_stash_free(&tp->stash[r]);
  free(tp->stash);
  free(tp->rbuf);
  if (tp->counted) atomic_fetch_sub(&g.active, 1);
  free(tp);
}

static int mpi_start(mpx__link **out, const mpx__config *cfg) {
  *out = NULL;
  mpx__mpi_session *s = session_of(cfg);
  if (!s && !cfg->endpoint && g.hooked && !g.mpi_off) {
    int rc = mpx__mpi_spawn_session(cfg->workers, &s);
    if (rc) return rc;
  }
  if (!s) return mpi_configure((mpx__config *)cfg); /* only to report the error */
  bool expected = false;
  if (!atomic_compare_exchange_strong(&s->busy, &expected, true)) {
    mpx__set_errmsg("an MPI executor already runs on this communicator: destroy it first");
    return MPX_ESTATE;
  }
  mpi_tp *tp = calloc(1, sizeof *tp);
  if (!tp) {
    atomic_store(&s->busy, false);
    return MPX_ENOMEM;
  }
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (atomic_fetch_add(&g.active, 1) > 0 && provided < MPI_THREAD_MULTIPLE) {
    atomic_fetch_sub(&g.active, 1);
    atomic_store(&s->busy, false);
    free(tp);
    mpx__set_errmsg("two MPI executors at once need MPI_THREAD_MULTIPLE; MPI provides less");
    return MPX_ESTATE;
  }
  tp->counted = true;
  tp->s = s;
  tp->bell = s->my_bell;
  tp->cfg = cfg;
  tp->lim = mpx__limits_default(cfg->max_payload);
  tp->index_of = malloc((size_t)s->size * sizeof *tp->index_of);
  tp->bye = calloc((size_t)s->size, sizeof *tp->bye);
  tp->stash = calloc((size_t)s->size, sizeof *tp->stash);
  int *threads = calloc((size_t)s->nworkers, sizeof *threads);
  int rc = tp->index_of && tp->bye && tp->stash && threads ? MPX_OK : MPX_ENOMEM;
  if (!rc) {
    int slots;
    tp->n = mpx__mpi_plan(s, cfg->workers_opt, cfg->threads_per_rank, threads, &slots);
    tp->local_threads = root_threads(s, cfg);
    if (tp->n + (tp->local_threads > 0) != cfg->workers) rc = MPX_EINVAL; /* not configured */
    for (int r = 0; r < s->size; r++) tp->index_of[r] = -1, tp->bye[r] = true;
    for (int i = 0; !rc && i < tp->n; i++) {
      int r = mpx__mpi_worker_rank(s, i);
      tp->index_of[r] = i;
      tp->bye[r] = false;
    }
  }
  int sent = 0;
  for (; !rc && sent < tp->n; sent++) rc = send_start(tp, sent, threads[sent]);
  tp->threads = threads; /* for mpi_peer */
  if (!rc && tp->local_threads > 0) {
    const mpx__config *c = cfg;
    rc = mpx__mpi_local_start(&tp->local, tp->local_threads, tp->n, s,
                              c->initializer ? c->initializer->name : NULL, c->initargs,
                              c->initargs_len, c->max_payload, tp->bell);
  }
  if (rc && sent == 0) {
    atomic_store(&s->busy, false);
    tp_free(tp);
    return rc;
  }
  if (rc) { /* some ranks started: the dispatcher's SHUTDOWN and stop end them */
    for (int i = sent; i < tp->n; i++) tp->bye[mpx__mpi_worker_rank(s, i)] = true;
  }
  for (int r = 0; r < s->size; r++) tp->byes_left += !tp->bye[r];
  atomic_fetch_add(&s->refs, 1);
  s->served = true;
  *out = (mpx__link *)tp;
  return rc;
}

static int mpi_send(mpx__link *self, int worker, const uint8_t *data, size_t len) {
  mpi_tp *tp = (mpi_tp *)self;
  if (worker == tp->n && tp->local_threads > 0) /* the root's own threads */
    return tp->local ? mpx__mpi_local_send(tp->local, data, len) : MPX_EWORKER_LOST;
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  int r = mpx__mpi_worker_rank(tp->s, worker);
  int rc = mpx__sendq_post(&tp->sq, tp->s->comm, r, MPX__TAG_BATCH, data, len, NULL);
  tp->msgs_out++, tp->bytes_out += len;
  mpx__mpi_ring(tp->s, r);
  return rc;
}

/* A stop request (mpx_task_should_stop): 8 bytes with TAG_HALT, noted by the rank's serving
 * thread (or its standby while a task runs), which reads messages all the time. */
static int mpi_halt(mpx__link *self, int worker, uint64_t id) {
  mpi_tp *tp = (mpi_tp *)self;
  if (worker == tp->n && tp->local_threads > 0) { /* the root's own threads */
    if (tp->local) mpx__mpi_local_halt(tp->local, id);
    return MPX_OK;
  }
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  int r = mpx__mpi_worker_rank(tp->s, worker);
  int rc = mpx__sendq_post(&tp->sq, tp->s->comm, r, MPX__TAG_HALT, (const uint8_t *)&id,
                           sizeof id, NULL);
  tp->msgs_out++, tp->bytes_out += sizeof id;
  mpx__mpi_ring(tp->s, r);
  return rc;
}

/* The batch, then each big argument as its own TAG_PAYLOAD message from where it lies (the
 * caller's buffer stays valid until its future is done, which is after the rank received it). */
static int mpi_send_parts(mpx__link *self, int worker, const uint8_t *data, size_t len,
                          const struct iovec *parts, int n) {
  mpi_tp *tp = (mpi_tp *)self;
  if (worker == tp->n && tp->local_threads > 0) /* the root's own threads read them in place */
    return tp->local ? mpx__mpi_local_send_parts(tp->local, data, len, parts, n)
                     : MPX_EWORKER_LOST;
  int rc = mpi_send(self, worker, data, len);
  for (int k = 0; !rc && k < n; k++, tp->msgs_out++, tp->bytes_out += parts[k - 1].iov_len)
    rc = mpx__sendq_post_ex(&tp->sq, tp->s->comm, mpx__mpi_worker_rank(tp->s, worker),
                            MPX__TAG_PAYLOAD, parts[k].iov_base, parts[k].iov_len, NULL, true);
  return rc;
}

/* A big result of `len` bytes worker i sent right before its batch (mpi_impl.h: the stash); at
 * once: one that did not come first was never sent. */
static int mpi_take_payload(mpx__link *self, int worker, size_t len, void **out) {
  mpi_tp *tp = (mpi_tp *)self;
  *out = NULL;
  if (worker < 0 || worker >= tp->n || len > INT_MAX) return MPX_EPROTO;
  /* (counted in try_recv, where it came in) */
  return mpx__mpi_stash_take(&tp->stash[mpx__mpi_worker_rank(tp->s, worker)], len, out);
}

/* One message if there is one: 1 with *ev filled, 0 for none, or a negative code. BYEs are
 * counted here, never reported. */
static int try_recv(mpi_tp *tp, mpx__event *ev) {
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    int rc = MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, tp->s->comm, &flag, &msg, &st);
    if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Improbe", rc);
    if (!flag) return 0;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    tp->msgs_in++, tp->bytes_in += count > 0 ? (unsigned)count : 0;
    int src = st.MPI_SOURCE, i = src >= 0 && src < tp->s->size ? tp->index_of[src] : -1;
    if (i >= 0 && st.MPI_TAG == MPX__TAG_PAYLOAD) { /* ahead of its batch: kept for it */
      rc = mpx__mpi_stash_recv(&tp->stash[src], &msg, count, tp->lim.max_payload);
      if (rc == MPX_EMPI) return rc;
      continue;
    }
    if (i < 0 || st.MPI_TAG != MPX__TAG_BATCH || (size_t)count > tp->lim.max_message) {
      char dummy;
      MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE); /* consumed (maybe truncated) */
      if (st.MPI_TAG == MPX__TAG_BYE && tp->s->lost && tp->s->lost[src]) tp->s->resumed[src] = true;
      if (i >= 0 && st.MPI_TAG == MPX__TAG_BYE && !tp->bye[src]) {
        tp->bye[src] = true;
        tp->byes_left--;
      } else if (i >= 0 && st.MPI_TAG == MPX__TAG_BATCH) {
        ev->kind = MPX__EV_WORKER_LOST;
        ev->worker = i;
        snprintf(ev->detail, sizeof ev->detail,
                 "(rank %d) sent a message of %d bytes, over the limit of %zu", src, count,
                 tp->lim.max_message);
        return 1;
      }
      continue;
    }
    if ((rc = mpx__mpi_mrecv(&msg, (size_t)count, &tp->rbuf, &tp->rcap))) return rc;
    ev->kind = MPX__EV_MESSAGE;
    ev->worker = i;
    ev->data = tp->rbuf;
    ev->len = (size_t)count;
    return 1;
  }
}

static int mpi_poll(mpx__link *self, mpx__event *ev, int timeout_ms) {
  mpi_tp *tp = (mpi_tp *)self;
  mpx__mpi_thread_setup();
  ev->kind = MPX__EV_NONE;
  if (tp->rcap > ((size_t)16 << 20)) { /* the last message was big: do not keep its buffer */
    free(tp->rbuf);
    tp->rbuf = NULL;
    tp->rcap = 0;
  }
  uint32_t cur = atomic_load_explicit(&tp->bell->seq, memory_order_seq_cst);
  bool woken = cur != tp->seen;
  tp->seen = cur;
  double deadline = mpx__now() + timeout_ms / 1e3;
  mpx__backoff bo = mpx__backoff_for(tp->s);
  bo.expect = tp->expect;
  if (tp->lost_due) { /* abandoned (kill): its loss first */
    int i = tp->lost_q[--tp->lost_due], r = mpx__mpi_worker_rank(tp->s, i);
    ev->kind = MPX__EV_WORKER_LOST;
    ev->worker = i;
    snprintf(ev->detail, sizeof ev->detail, "rank %d on %s stopped answering and was abandoned",
             r, tp->s->hosts ? tp->s->hosts[r] : "?");
    return MPX_OK;
  }
  for (;;) {
    int rc = mpx__sendq_progress(&tp->sq);
    if (rc < 0) return rc;
    if (tp->local && mpx__mpi_local_poll(tp->local, &ev->data, &ev->len)) {
      ev->kind = MPX__EV_MESSAGE;
      ev->worker = tp->n;
      return MPX_OK;
    }
    if ((rc = try_recv(tp, ev))) {
      tp->expect = false;
      return rc < 0 ? rc : MPX_OK;
    }
    if (woken || timeout_ms <= 0) return MPX_OK;
    double left = deadline - mpx__now();
    if (left <= 0) return MPX_OK;
    long ns = mpx__backoff_next(&bo);
    if (ns > left * 1e9) ns = (long)(left * 1e9) + 1;
    mpx__bell_wait(tp->bell, cur, ns);
    uint32_t now = atomic_load_explicit(&tp->bell->seq, memory_order_seq_cst);
    if (now != cur) { /* woken: one more look for a message, then return */
      tp->seen = cur = now;
      woken = true;
      tp->expect = true; /* a worker's ring, or a submitter's: either way, look soon */
    }
  }
}

/* Who worker i is: its rank, the host it reported at session start (before any task ran) and
 * the threads we started it with. */
static int mpi_peer(mpx__link *self, int worker, mpx__peer *out) {
  mpi_tp *tp = (mpi_tp *)self;
  if (worker == tp->n && tp->local_threads > 0) { /* the root's own threads (mpi_local.c) */
    *out = (mpx__peer){.pid = (int)getpid(), .rank = tp->s->rank, .slots = tp->local_threads};
    snprintf(out->host, sizeof out->host, "%s", tp->s->host);
    return MPX_OK;
  }
  if (worker < 0 || worker >= tp->n) return MPX_EINVAL;
  int r = mpx__mpi_worker_rank(tp->s, worker);
  *out = (mpx__peer){.pid = 0, .rank = r, .slots = tp->threads ? tp->threads[worker] : 1};
  /* a node leader (mpi_leader.c) queues for its node: the dispatcher's window of ~1 ms of work
   * per slot, measured through two hops, would starve it; MPX__LEADER_DEPTH slots per thread
   * make its smallest window a batch the leader can spread, and it gives back on TAKEBACK */
  if (tp->s->span && tp->s->span[r] > 1 && tp->cfg->workers_opt == 0)
    out->slots *= MPX__LEADER_DEPTH; /* (workers = W asks for W tasks at once: kept) */
  snprintf(out->host, sizeof out->host, "%s", tp->s->hosts ? tp->s->hosts[r] : "");
  return MPX_OK;
}

/* A rank cannot be ended alone: kill with replace is MPX_EPERM. Without replace (the dispatcher
 * gave up on a rank that stopped answering: stall_timeout) the rank is abandoned: poll reports
 * its loss, nothing is waited for from it (no BYE; sends to it are forgotten at stop), its late
 * messages are dropped, and no later executor of the session uses it. The rank itself goes on
 * (a stopped process resumes where it was): stop tells it the session is over (TAG_STOP), and
 * the job's end waits for it a bounded time (mpx__mpi_await_lost; mpx/mpi.h). */
static int mpi_kill(mpx__link *self, int worker, bool replace) {
  mpi_tp *tp = (mpi_tp *)self;
  mpx__mpi_session *s = tp->s;
  if (replace || worker < 0 || worker >= tp->n) {
    mpx__set_errmsg("a single MPI rank cannot be ended without ending the job");
    return MPX_EPERM;
  }
  int r = mpx__mpi_worker_rank(s, worker);
  if (!s->resumed && !(s->resumed = calloc((size_t)s->size, sizeof *s->resumed)))
    return MPX_ENOMEM;
  if (!s->lost && !(s->lost = calloc((size_t)s->size, sizeof *s->lost))) return MPX_ENOMEM;
  if (!tp->lost_q && !(tp->lost_q = calloc((size_t)tp->n, sizeof *tp->lost_q))) return MPX_ENOMEM;
  if (s->lost[r]) return MPX_OK;
  s->lost[r] = true;
  if (tp->cfg->stall_timeout > s->lost_grace) s->lost_grace = tp->cfg->stall_timeout;
  if (!tp->bye[r]) {
    tp->bye[r] = true;
    tp->byes_left--;
  }
  tp->lost_q[tp->lost_due++] = worker;
  return MPX_OK;
}

static void mpi_wake(mpx__link *self) { mpx__bell_ring(((mpi_tp *)self)->bell); }

static void mpi_stop(mpx__link *self, bool wait) {
  mpi_tp *tp = (mpi_tp *)self;
  (void)wait; /* always waits: the workers' last messages must be drained before the next executor */
  if (tp->stopped) return;
  tp->stopped = true;
  mpx__mpi_local_stop(tp->local); /* its SHUTDOWN came: finish, drop late results */
  tp->local = NULL;
  mpx__sendq_drain_except(&tp->sq, tp->s->lost); /* not what an abandoned rank did not take */
  mpx__backoff bo = mpx__backoff_for(tp->s);
  while (tp->byes_left > 0) {
    mpx__event ev = {0};
    int rc = try_recv(tp, &ev);
    if (rc < 0) {
      mpx__log(MPX_LOG_WARN, "stopping the MPI executor: %s", mpx_errmsg());
      break;
    }
    if (rc) mpx__backoff_reset(&bo); /* a late message (results of a failed start): dropped */
    else mpx__bell_wait(tp->bell, atomic_load(&tp->bell->seq), mpx__backoff_next(&bo));
  }
  /* rank 0's traffic for this executor (mpx-bench reads it: flat against node leaders) */
  mpx__log(MPX_LOG_INFO, "mpi link: rank 0 sent %llu messages (%llu bytes), received %llu "
           "(%llu bytes), %d workers%s", tp->msgs_out, tp->bytes_out, tp->msgs_in, tp->bytes_in,
           tp->n, tp->s->direct ? " (node leaders)" : "");
  for (int i = 0; tp->s->lost && i < tp->n; i++) { /* abandoned by this executor: see kill */
    int r = mpx__mpi_worker_rank(tp->s, i);
    if (tp->s->lost[r]) mpx__mpi_stop_lost(tp->s, r);
  }
  if (tp->s->oneshot) { /* ranks the executor did not use wait for their stop */
    bool *used = calloc((size_t)tp->s->size, sizeof *used);
    if (used)
      for (int i = 0; i < tp->n; i++) used[mpx__mpi_worker_rank(tp->s, i)] = true;
    mpx__mpi_send_stop(tp->s, used);
    free(used);
  }
  mpx__mpi_exclude_lost(tp->s);
  atomic_store(&tp->s->busy, false);
}

static void mpi_destroy(mpx__link *self) {
  mpi_tp *tp = (mpi_tp *)self;
  mpi_stop(self, true);
  mpx__mpi_session *s = tp->s;
  tp_free(tp);
  session_unref(s);
}

/* ---- mpx_init / mpx_finalize hooks -------------------------------------------------------- */

/* The launch rules of mpx/job.h (job.c), logged at info so that MPX_LOG=info shows why. */
static bool launched(mpx_job *j) {
  mpx_job_get(j);
  const char *what = j->spawned ? "spawned worker" : j->launched ? "MPI ranks" : "no MPI job";
  mpx__log(MPX_LOG_INFO, "launch: %s: %s", what, j->reason);
  return j->launched;
}

static const char *level_name(int level) {
  switch (level) {
  case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
  case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
  case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
  case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown level";
}

/* Under a launcher: initialise MPI; on rank 0 of a job of two or more ranks, build the world
 * session and claim the job; on the other ranks serve until it is over and become a worker. */
static int mpi_init(mpx__init_ctx *ctx) {
  mpx_job job;
  g.hooked = true;
  bool mpi = launched(&job);
  g.mpi_off = !mpi && !strcmp(job.launcher, "MPX_MPI");
  if (job.spawned) { /* spawn mode's worker: serve the parent, then be done */
    int rc = mpx__mpi_spawned_serve(ctx->argc, ctx->argv);
    if (rc) {
      mpx__log(MPX_LOG_ERROR, "spawned worker %ld: %s", (long)getpid(), mpx_errmsg());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    g.worker_done = true;
    ctx->role = MPX_WORKER;
    return MPX_OK;
  }
  if (!mpi) return MPX_OK;
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited || finalized) return MPX_OK; /* the program owns MPI: see mpx_comm_executor */
  const char *lv = getenv("MPX_MPI_THREAD_LEVEL");
  int want = lv && !strcmp(lv, "serialized") ? MPI_THREAD_SERIALIZED : MPI_THREAD_MULTIPLE;
  int rc = MPI_Init_thread(ctx->argc, ctx->argv, want, &g.provided);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Init_thread", rc);
  g.we_init = true;
  if (g.provided < MPI_THREAD_SERIALIZED) {
    mpx__set_errmsg("MPI provides only %s; mpx needs MPI_THREAD_SERIALIZED or better",
                    level_name(g.provided));
    mpx__log(MPX_LOG_ERROR, "%s", mpx_errmsg());
    MPI_Finalize();
    g.we_init = false;
    return MPX_EMPI;
  }
  int size, rank;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (size < 2) { /* one rank: MPI is up, the backend stays threads */
    if (job.tasks > 1)
      mpx__log(MPX_LOG_WARN,
               "the launcher started %d tasks but MPI sees one rank: with srun, "
               "use --mpi=pmix (or the PMI your MPI was built with); running on threads",
               job.tasks);
    return MPX_OK;
  }
  mpx__mpi_session *s;
  if ((rc = mpx__mpi_session_new(MPI_COMM_WORLD, 0, false, &s))) return rc;
  if (rank == 0) {
    g.world = s;
    ctx->claimed = &mpx__mpi_transport;
    return MPX_OK;
  }
  rc = mpx__mpi_serve(s);
  if (rc) {
    mpx__log(MPX_LOG_ERROR, "rank %d: %s", rank, mpx_errmsg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  mpx__mpi_session_free(s);
  MPI_Finalize();
  g.we_init = false;
  g.worker_done = true;
  ctx->role = MPX_WORKER;
  return MPX_OK;
}

static int mpi_fini(mpx__init_ctx *ctx) {
  int lost = MPX_OK;
  if (g.world) {
    mpx__mpi_send_stop(g.world, NULL);
    lost = mpx__mpi_await_lost(g.world);
    session_unref(g.world);
    g.world = NULL;
  }
  g.hooked = false;
  if (mpx__mpi_spawn_fini()) g.we_init = true; /* spawn mode started MPI: finalise it here */
  if (!g.we_init) return lost;
  g.we_init = false;
  if (lost) return lost; /* (the process exits without MPI_Finalize: the launcher ends the job) */
  int rc = MPI_Finalize();
  return rc == MPI_SUCCESS ? MPX_OK : mpx__mpi_fail("MPI_Finalize", rc);
}

/* ---- endpoints (collective mode: mpx_comm_executor, core/src/comm_executor.c) ------------ */

/* handle: a pointer to the user's communicator. The checks run on every rank before the collective
 * session is built, so that they fail everywhere alike. */
static int mpi_open_endpoint(const void *handle, int root, void **ep) {
  *ep = NULL;
  MPI_Comm comm = handle ? *(const MPI_Comm *)handle : MPI_COMM_NULL;
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (!inited || finalized) {
    mpx__set_errmsg("mpx_comm_executor needs MPI to be initialised (and not finalised)");
    return MPX_EMPI;
  }
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_SERIALIZED) {
    mpx__set_errmsg("MPI provides only %s; mpx_comm_executor needs MPI_THREAD_SERIALIZED or "
                    "better (MPI_Init_thread)",
                    level_name(provided));
    return MPX_EMPI;
  }
  int size, rank;
  if (comm == MPI_COMM_NULL || MPI_Comm_size(comm, &size) != MPI_SUCCESS) {
    mpx__set_errmsg("not a valid communicator");
    return MPX_EINVAL;
  }
  MPI_Comm_rank(comm, &rank);
  if (root < 0 || root >= size) {
    mpx__set_errmsg("root %d is not a rank of the communicator (size %d)", root, size);
    return MPX_EINVAL;
  }
  if (size < 2) {
    mpx__set_errmsg("the communicator has a single rank: no worker ranks");
    return MPX_EINVAL;
  }
  mpx__mpi_session *s;
  int rc = mpx__mpi_session_new(comm, root, true, &s);
  if (rc) return rc;
  *ep = s;
  return rank == root ? MPX_MAIN : MPX_WORKER;
}

static int mpi_serve_endpoint(void *ep) {
  mpx__mpi_session *s = ep;
  int rc = mpx__mpi_serve(s);
  mpx__mpi_session_free(s);
  return rc ? rc : MPX_WORKER;
}

static void mpi_close_endpoint(void *ep) {
  mpx__mpi_session *s = ep;
  if (!s->served) mpx__mpi_send_stop(s, NULL); /* the workers never heard of an executor */
  session_unref(s);
}

/* ---- the descriptor ----------------------------------------------------------------------- */

static const mpx__link_ops mpi_link = {
    .configure = mpi_configure,
    .start = mpi_start,
    .send = mpi_send,
    .send_parts = mpi_send_parts,
    .halt = mpi_halt,
    .take_payload = mpi_take_payload,
    .poll = mpi_poll,
    .kill = mpi_kill,
    .peer = mpi_peer,
    .wake = mpi_wake,
    .stop = mpi_stop,
    .destroy = mpi_destroy,
    .open_endpoint = mpi_open_endpoint,
    .serve_endpoint = mpi_serve_endpoint,
    .close_endpoint = mpi_close_endpoint,
};

/* Payloads are encoded, big ones as their own messages (OOB); a single rank cannot be ended,
 * re-run or replaced (no KILL_ONE, RETRY or RECYCLE: the executor refuses time limits, retries
 * and max_tasks_per_worker); progress is made by polling threads; a rank gives back the tasks it
 * has not started when asked (TAKEBACK, mpi_worker.c); executors can run over the user's
 * communicators. */
const mpx__transport mpx__mpi_transport = {
    .name = "mpi",
    .backend = MPX_BACKEND_MPI,
    .caps = MPX__CAP_ENCODES | MPX__CAP_POLLED | MPX__CAP_ENDPOINT | MPX__CAP_TAKEBACK |
            MPX__CAP_OOB,
    .init = mpi_init,
    .fini = mpi_fini,
    .link = &mpi_link,
};
