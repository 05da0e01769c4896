/* mpi_impl.h: what the files of the MPI transport share. Internal to libmpx.
 *
 * mpi.c is the root's half (the descriptor and link the dispatcher drives, the init hooks, the
 * endpoint ops behind mpx_comm_executor); mpi_worker.c is the worker ranks' half (serve executor
 * after executor, hybrid threads); mpi_common.c holds the helpers both use (error text, bell,
 * backoff, send queue, matched receive, thread setup) and mpi_pool.c the task threads of a rank
 * (a worker rank's hybrid threads, the root's when it works too), so neither half calls into the
 * other's file for them; mpi_session.c builds sessions, mpi_bells.c their doorbells,
 * mpi_local.c the root's own worker, mpi_spawn.c spawn mode and mpi_leader.c node leaders (a
 * leader serves the root as a worker rank does, and its node's ranks serve it: `up`). A session is one communicator (a
 * dup of MPI_COMM_WORLD from mpx_init, of the user's communicator in mpx_comm_executor, or of
 * spawn mode's merged communicator) with one root; worker ranks of a session serve at most one
 * executor at a time.
 *
 * The wire, on the session's private communicator:
 *   root -> worker  TAG_START  a start record (below): serve an executor with this configuration
 *   root -> worker  TAG_STOP   empty: the session is over, return
 *   both ways       TAG_BATCH  one packed mpx.Batch (tasks down; results and Control READY up;
 *                              Control SHUTDOWN down ends the executor; Control TAKEBACK down
 *                              is answered at once by one Control RETURNED up, whose Results
 *                              are the bare call ids of the tasks given back, see mpi_worker.c;
 *                              Control STARTED up names, by bare call ids, tasks the rank
 *                              started, ahead of their results: sent for tasks that run 2 ms
 *                              or more, so that the root shows them running, mpi_pool.c)
 *   worker -> root  TAG_BYE    empty: the executor is over on this rank; nothing follows it
 *   root -> worker  TAG_HALT   8 bytes: the call id of a running task asked to stop, or
 *                              MPX__HALT_ALL (codec.h): every task (mpx_task_should_stop); the
 *                              serving thread notes it in its mpx__halt, which tasks poll
 *   both ways       TAG_PAYLOAD one big argument (down) or result (up) of at least MPX__SEG_MIN
 *                              bytes, right after the batch whose Task.arg_shm / Result.data_shm
 *                              names its length, in the batch's order: sent from where it lies,
 *                              received (MPI_Mprobe / MPI_Mrecv) into its own buffer
 * MPI keeps messages between two ranks on one communicator in order, so BYE is the last message
 * of an executor and a root that drains up to it leaves nothing behind for the next one.
 *
 * Progress: every MPI call of a rank is made by one thread at a time (the root's executor or
 * dispatcher thread; the worker's serving thread). Waiting is MPI_Improbe / MPI_Testsome in a
 * loop with backoff: for MPX__SPIN_NS after the last message it polls between sched_yield()s (the
 * next message of a conversation usually comes within a round trip, and yielding leaves the core
 * to anyone who needs it), then futex sleeps of 2 us doubling up to MPX_MPI_POLL_US (default
 * 1000 us), so a rank idle for longer costs ~1000 wake-ups a second. The sleep is
 * on a `bell` that other threads ring (the dispatcher's wake; a worker's task threads when a
 * reply is ready), which ends it at once. On the root's node the bells are shared between the
 * ranks (mpi_bells.c) and every send to a rank there rings it: a rank all of whose senders ring
 * it sleeps on its bell up to MPX_MPI_POLL_US at once after the spin, and looks again for a while
 * whenever it was rung. */
#ifndef MPX_MPI_IMPL_H
#define MPX_MPI_IMPL_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "codec.h"

enum { MPX__TAG_START = 0x6d01, MPX__TAG_STOP, MPX__TAG_BATCH, MPX__TAG_BYE, MPX__TAG_PAYLOAD,
       MPX__TAG_HALT, MPX__TAG_STEAL, MPX__TAG_LEND /* between node leaders (mpi_leader.c) */ };

/* A doorbell: ring from any thread; wait sleeps until rung or the timeout. A bell in memory
 * several processes map (mpi_bells.c) has `shared` set and uses shared futexes. */
typedef struct mpx__bell {
  _Atomic uint32_t seq;
  _Atomic int sleeping;
  int shared;
} mpx__bell;
void mpx__bell_ring(mpx__bell *b);
/* Sleep up to ns unless seq has moved from `seen`. */
void mpx__bell_wait(mpx__bell *b, uint32_t seen, long ns);

/* One communicator with a root and its worker ranks. */
typedef struct mpx__mpi_session {
  MPI_Comm comm;     /* private dup: our tags never meet the program's messages */
  int root, rank, size;
  int nworkers;      /* size - 1 */
  int *cores;        /* root only: per comm rank, the cores that rank owns (its default threads) */
  int my_cores;      /* this rank's share of its node's cores */
  int root_spare;    /* root: cores it owns beyond its dispatcher's (0 when worker ranks of its
                        node share its cores), its task threads when root_threads is 0 */
  bool oneshot;      /* collective mode: workers return after one executor */
  _Atomic bool busy; /* root: an executor runs on it */
  _Atomic int refs;  /* root: the owner (mpx_init or mpx_comm_executor) and a running transport */
  bool served;       /* root: START was sent, so the workers will hear a SHUTDOWN */
  bool ended;        /* worker: TAG_STOP came while it served an executor (the root had abandoned
                        it: mpi.c's kill), so the session is over once that executor is */
  mpx__bell own_bell; /* this rank's bell when it has none in `bells` */
  mpx__bell *my_bell; /* where this rank waits: &bells[rank] or &own_bell */
  mpx__bell *bells;   /* mpi_bells.c: one per session rank, shared by the root's node, or NULL */
  size_t bells_len;
  bool rung;          /* every rank that sends to this one rings my_bell: sleep at once */
  bool spawned;      /* over spawn mode's merged communicator: one task thread per rank unless
                        threads_per_rank says otherwise (the ranks share the parent's cores) */
  char host[64];
  char (*hosts)[64]; /* root only: per comm rank, its host name (gathered at session start) */
  /* node leaders (mpi_session.c sets them, mpi_leader.c relays): with leaders off, up is the
   * root for every rank and the rest is empty */
  int up;            /* the rank this one serves: the root, or its node's leader */
  int nmembers;      /* a leader: the ranks of its node that serve it */
  int *members, *member_cores;
  MPI_Comm leaders;  /* the leaders (ranks with members), or MPI_COMM_NULL on the others */
  int *leader_ranks; /* a leader: every leader's comm rank, in the order of `leaders` */
  int *direct;       /* root with leaders on: the nworkers ranks that serve it, in order */
  int *span;         /* root with leaders on: per comm rank, the ranks it speaks for (itself and
                        its members); cores[] of a leader is its node's */
  /* root only: ranks an executor abandoned (stopped answering, stall_timeout; mpi.c's kill):
   * per comm rank, NULL while none; the ranks later executors use (worker index -> rank), NULL
   * while none was lost; nworkers counts the others. Changed between executors only. */
  bool *lost;
  int *wmap;
  bool *resumed;     /* per comm rank: an abandoned rank said BYE since (it ended that executor) */
  double lost_grace; /* the longest stall_timeout a rank was abandoned after */
} mpx__mpi_session;

/* Create a session over `comm` (collective over comm): dup, node-local core shares, gathered at
 * the root. MPX_EMPI with mpx_errmsg on failure. */
int mpx__mpi_session_new(MPI_Comm comm, int root, bool oneshot, mpx__mpi_session **out);
/* Free it (collective, as MPI_Comm_free). */
void mpx__mpi_session_free(mpx__mpi_session *s);

/* Which ranks serve the root (mpi_ranks.c, root only): worker i's comm rank; the ranks and task
 * threads for options (workers, threads_per_rank): returns the ranks used, fills
 * threads[0..ranks) when not NULL and *slots; between executors, leave the abandoned ranks out
 * of later plans; tell every rank of the plan but those in skip (may be NULL) that the session is
 * over, or one abandoned rank at its executor's stop; then wait, bounded, for the abandoned ones
 * to end (MPX_OK, or MPX_EWORKER_LOST naming one that did not). */
int mpx__mpi_worker_rank(const mpx__mpi_session *s, int i);
int mpx__mpi_plan(const mpx__mpi_session *s, int workers, int tpr, int *threads, int *slots);
void mpx__mpi_exclude_lost(mpx__mpi_session *s);
void mpx__mpi_send_stop(mpx__mpi_session *s, const bool *skip);
void mpx__mpi_stop_lost(mpx__mpi_session *s, int r);
int mpx__mpi_await_lost(mpx__mpi_session *s);

/* Worker ranks: serve executors until TAG_STOP (or after one, for a oneshot session).
 * Returns 0 or a negative code (an MPI failure). */
int mpx__mpi_serve(mpx__mpi_session *s);

/* Node leaders. setup (mpi_session.c, collective, at the end of mpx__mpi_session_new) decides
 * whether leaders are on and fills the fields above; lead (mpi_leader.c) serves one executor on
 * a leader, from its start record (relaying to the members), and returns after its BYE. */
int mpx__mpi_leaders_setup(mpx__mpi_session *s);
/* The slots the root's dispatcher gives a leader per task thread of its node (mpi.c's peer). */
#define MPX__LEADER_DEPTH 128
int mpx__mpi_lead(mpx__mpi_session *s, const uint8_t *start, size_t len);

/* Spawn mode (mpi_spawn.c). Parent: a session over at least n spawned workers (spawning them,
 * and initialising MPI, at first use); MPX_EMPI with mpx_errmsg when this MPI cannot spawn.
 * mpx__mpi_spawn_fini ends the pool in mpx_finalize and returns true if MPI must be finalised
 * (spawn mode initialised it). Child: serve the parent until it stops the pool, finalise MPI;
 * 0 (the process is then a worker) or a negative code. */
int mpx__mpi_spawn_session(int n, mpx__mpi_session **out);
bool mpx__mpi_spawn_fini(void);
int mpx__mpi_spawned_serve(int *argc, char ***argv);

/* Doorbells on the root's node (mpi_bells.c). setup is collective over `node` (the session's
 * ranks on one node; root_at: the root's rank in it, -1 if not there) and sets my_bell, bells and
 * rung; free unmaps; ring wakes `rank` if it has a bell (after a message to it was posted). */
void mpx__mpi_bells_setup(mpx__mpi_session *s, MPI_Comm node, int root_at);
void mpx__mpi_bells_free(mpx__mpi_session *s);
void mpx__mpi_ring(const mpx__mpi_session *s, int rank);

/* The start record (TAG_START), fixed little header then the initializer's name and initargs. */
typedef struct mpx__mpi_start {
  uint32_t magic, version;
  uint64_t max_payload;
  int32_t threads;      /* task threads in this rank, >= 1 */
  int32_t worker;       /* the dispatcher's index of this rank */
  uint32_t name_len;    /* 0: no initializer */
  uint32_t flags;       /* MPX__START_TEAM: every node leader serves this executor (they steal
                           from each other and end together; mpi_leader.c) */
  uint64_t initargs_len;
} mpx__mpi_start;
#define MPX__START_TEAM 1u
#define MPX__MPI_START_MAGIC 0x6d707853u
/* Parse and check a start record (mpi_worker.c); name gets MPX_TASK_NAME_MAX + 1 bytes,
 * initargs points into m. MPX_EPROTO when malformed. */
int mpx__mpi_start_parse(const uint8_t *m, size_t len, mpx__mpi_start *h, char *name,
                         const uint8_t **initargs);


/* Backoff between empty polls: yields for MPX__SPIN_NS, then exponential sleeps. A rank whose
 * senders all ring its bell (`rung`) polls for MPX__RUNG_SPIN_NS, then sleeps on the bell up to
 * MPX_MPI_POLL_US at once: a ring ends the sleep. After a ring whose message has not shown yet
 * (it may travel by TCP, between the jobs of spawn mode, or by rendezvous) it sleeps on the timer
 * again until a message comes, since no second ring will come for it. */
#define MPX__SPIN_NS 100000L
#define MPX__RUNG_SPIN_NS MPX__SPIN_NS
typedef struct mpx__backoff {
  int idle;       /* empty polls in a row */
  long ns;        /* the next sleep */
  long long t0;   /* monotonic ns of the first empty poll in a row */
  bool rung;      /* set by the owner: see above */
  bool expect;    /* rung, but the message has not shown yet (TCP, rendezvous): timed sleeps */
} mpx__backoff;
/* Nanoseconds to sleep after one more empty poll (0: yield only). */
long mpx__backoff_next(mpx__backoff *b);
static inline void mpx__backoff_reset(mpx__backoff *b) { b->idle = 0, b->ns = 0, b->expect = 0; }
/* Woken by a ring: look again, and until a message comes, sleep on the timer, not on the bell. */
static inline void mpx__backoff_rung(mpx__backoff *b) {
  mpx__backoff_reset(b);
  b->expect = true;
}
static inline mpx__backoff mpx__backoff_for(const mpx__mpi_session *s) {
  return (mpx__backoff){.rung = s && s->rung};
}
/* MPX_MPI_POLL_US in ns (default 1 ms, 10 us .. 100 ms). */
long mpx__mpi_poll_max_ns(void);
/* Sleeps of a few microseconds need a small timer slack; set it once on the calling thread. */
void mpx__mpi_thread_setup(void);

/* Task threads in a rank (mpi_pool.c): a worker rank's hybrid threads, or the root's own (rank 0
 * working). The owner sets threads, bell, who, lim and the initializer, starts it (each thread
 * runs the initializer, the first failure is kept in init_rc / init_msg), pushes unpacked
 * Batches, and takes the packed results; a thread rings `bell` when it adds one. The queue and
 * the outbox are under `lock`; the owner's calls are made by one thread. */
typedef struct mpx__mpi_job mpx__mpi_job;
typedef struct mpx__mpi_reply {
  uint8_t *data;
  size_t len;
  struct mpx__mpi_reply *link;
  /* a worker rank's big results (who->oob_min), each sent as its own TAG_PAYLOAD message before
   * `data` (heap blocks, taken over by the send queue) */
  void *bufs[MPX__SERVE_SEGS];
  size_t lens[MPX__SERVE_SEGS];
  int nbufs;
} mpx__mpi_reply;
typedef struct mpx__mpi_pool {
  pthread_mutex_t lock;
  pthread_cond_t work, inited;
  mpx__mpi_job *head, *tail; /* every live job (not fully answered) */
  mpx__mpi_job *cur;         /* the first with tasks no runner has claimed; NULL: none */
  size_t tasks_left; /* received, not yet answered */
  mpx__mpi_reply *out, *out_tail;
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
} mpx__mpi_pool;
/* Start the threads; returns once each ran the initializer (MPX_ESYS if none started). With
 * threads 0 no thread: the owner runs the initializer here and the tasks in mpx__mpi_pool_run. */
int mpx__mpi_pool_start(mpx__mpi_pool *p);
/* threads 0: run the oldest queued Batch on the calling thread, its results to the outbox run by
 * run; false if none was queued. */
bool mpx__mpi_pool_run(mpx__mpi_pool *p);
bool mpx__mpi_pool_has_work(mpx__mpi_pool *p);
/* Give back up to `max` queued tasks no runner has started (they will never run) into ids[], in
 * the order pushed; returns how many. Tasks received, not yet answered: an upper bound. */
size_t mpx__mpi_pool_take_back(mpx__mpi_pool *p, uint64_t *ids, size_t max);
/* Answer a Control TAKEBACK: take back what no runner started and pack a Control RETURNED whose
 * Results carry only those call ids into `out` (0, or a code: no memory). */
int mpx__mpi_pool_give_back(mpx__mpi_pool *p, mpx__wbuf *out);
/* Report the tasks a runner started since the last call (not answered yet): a Control STARTED
 * with their bare call ids, queued in the outbox (before their results). Cheap when there are
 * none; the owner calls it every MPX__STARTS_NS or so while tasks run. */
void mpx__mpi_pool_starts(mpx__mpi_pool *p);
#define MPX__STARTS_NS 2000000LL
/* Queue a packed message of the owner's (a RETURNED) behind the results so far; takes out. */
void mpx__mpi_pool_answer(mpx__mpi_pool *p, mpx__wbuf *out);
/* Queue a Batch's tasks (the pool frees b once they are answered). */
void mpx__mpi_pool_push(mpx__mpi_pool *p, Mpx__Batch *b);
/* The same, with `extra` (the batch's big arguments) freed by extra_free together with b. */
void mpx__mpi_pool_push_with(mpx__mpi_pool *p, Mpx__Batch *b, void *extra,
                             void (*extra_free)(void *));
/* The results packed so far, oldest first (the caller frees data and each reply). */
mpx__mpi_reply *mpx__mpi_pool_take(mpx__mpi_pool *p);
/* Nothing queued, running or waiting to be taken. */
bool mpx__mpi_pool_idle(mpx__mpi_pool *p);
/* Finish what is queued, join the threads, free what is left. */
void mpx__mpi_pool_stop(mpx__mpi_pool *p);

/* Rank 0 working (mpi_local.c): `threads` task threads on the root, as the dispatcher's worker
 * `index`, with the executor's initializer. send takes a packed Batch for it; poll returns 1 with
 * its next packed message (READY first; valid until the next poll or stop), 0 when there is none;
 * stop finishes the queued tasks and frees it. */
typedef struct mpx__mpi_local mpx__mpi_local;
int mpx__mpi_local_start(mpx__mpi_local **out, int threads, int index, const mpx__mpi_session *s,
                         const char *init_name, const void *initargs, size_t initargs_len,
                         size_t max_payload, mpx__bell *bell);
int mpx__mpi_local_send(mpx__mpi_local *l, const uint8_t *data, size_t len);
/* send, with the batch's big arguments beside it (the Tasks with arg_shm, in order: the link's
 * send_parts): the task threads read them where they lie, as thread workers do. */
int mpx__mpi_local_send_parts(mpx__mpi_local *l, const uint8_t *data, size_t len,
                              const struct iovec *parts, int n);
int mpx__mpi_local_poll(mpx__mpi_local *l, const uint8_t **data, size_t *len);
/* Ask the root's own task(s) to stop (as TAG_HALT does on a rank). Dispatcher thread. */
void mpx__mpi_local_halt(mpx__mpi_local *l, uint64_t id);
void mpx__mpi_local_stop(mpx__mpi_local *l);

/* Sends in flight: each owns its buffer until MPI is done with it. */
typedef struct mpx__sendq {
  MPI_Request *req;
  uint8_t **buf;
  int *idx;
  int *dest; /* per send: its destination rank */
  int n, cap;
} mpx__sendq;
/* Send `len` bytes (copied, or taken over from *take when it is not NULL, which is then NULL). */
int mpx__sendq_post(mpx__sendq *q, MPI_Comm comm, int dest, int tag, const uint8_t *data,
                    size_t len, uint8_t **take);
/* As mpx__sendq_post; with `borrow`, `data` is sent where it lies (no copy, nothing freed): the
 * caller keeps it valid until the send is retired. */
int mpx__sendq_post_ex(mpx__sendq *q, MPI_Comm comm, int dest, int tag, const uint8_t *data,
                       size_t len, uint8_t **take, bool borrow);
/* Receive the next TAG_PAYLOAD message from `src` into a new *out (mpx__seg_pool_alloc: give it
 * back with mpx__seg_pool_free), which must be exactly
 * `len` bytes: waits for it up to `seconds` (it follows its batch). MPX_EPROTO if none came or
 * it has another size (then it is consumed and dropped), MPX_ENOMEM, MPX_EMPI. With `keep`
 * (a buffer of *keep_cap bytes kept between calls, grown as needed), the message goes there
 * and *out points into it (warm pages: a worker rank's arguments). */
int mpx__mpi_take_payload(MPI_Comm comm, int src, size_t len, double seconds, void **out,
                          uint8_t **keep, size_t *keep_cap);
/* Big results the root received before the batch that declares them, per comm rank. A worker
 * rank sends each big result as a TAG_PAYLOAD message right before its reply's TAG_BATCH; MPI's
 * non-overtaking rule (both match the root's any-tag probe) makes the root see them first, so the
 * dispatcher takes a declared payload from here without waiting: one that is not here was never
 * sent, and the rank broke the protocol (it cannot stall the dispatcher). At most
 * MPX__SERVE_SEGS wait per rank, each at most max_payload bytes (what a rank may make the root
 * hold); more, or bigger, are dropped (their Results then find nothing). */
typedef struct mpx__mpi_stash {
  void *data[MPX__SERVE_SEGS]; /* result-pool blocks (os/seg.h: mpx__seg_pool_alloc) */
  size_t len[MPX__SERVE_SEGS];
  int head, n;
} mpx__mpi_stash;
/* Receive payload message `msg` of `count` bytes into st (or drop it, consumed: MPX_ETOOBIG over
 * max, MPX_EPROTO when st is full, MPX_ENOMEM). MPX_EMPI when MPI fails. */
int mpx__mpi_stash_recv(mpx__mpi_stash *st, MPI_Message *msg, int count, size_t max);
/* The oldest stashed payload, which must be exactly `len` bytes: MPX_OK with *out (given back
 * with mpx__seg_pool_free), MPX_EPROTO when there is none or it has another size (dropped). */
int mpx__mpi_stash_take(mpx__mpi_stash *st, size_t len, void **out);
void mpx__mpi_stash_free(mpx__mpi_stash *st);

/* Retire finished sends; returns how many finished, or a negative code. */
int mpx__sendq_progress(mpx__sendq *q);
/* Wait for every send. */
int mpx__sendq_drain(mpx__sendq *q);
/* Wait for every send but those to ranks in `skip` (per comm rank), which are forgotten: their
 * requests freed, their buffers left to MPI (a rank that stopped answering may still read them). */
int mpx__sendq_drain_except(mpx__sendq *q, const bool *skip);
void mpx__sendq_free(mpx__sendq *q);

/* An MPI error as "MPI_Xxx failed: <MPI's string>" into mpx_errmsg; returns MPX_EMPI. */
int mpx__mpi_fail(const char *what, int mpi_rc);

/* Receive the message `msg` of `len` bytes into *buf (grown as needed, capacity in *cap). */
int mpx__mpi_mrecv(MPI_Message *msg, size_t len, uint8_t **buf, size_t *cap);

#endif
