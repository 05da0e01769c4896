/* mpi_impl.h: what the files of the MPI transport share. Internal to libmpx.
 *
 * mpi.c is the root's half (the descriptor and link the dispatcher drives, the init hooks, the
 * endpoint ops behind mpx_comm_executor); mpi_worker.c is the worker ranks' half (serve executor
 * after executor, hybrid threads); mpi_common.c holds the helpers both use (error text, bell,
 * backoff, send queue, matched receive, thread setup), so neither half calls into the other's
 * file for them. A session is one communicator (a dup of MPI_COMM_WORLD from mpx_init, or of the
 * user's communicator in mpx_comm_executor) with one root; worker ranks of a session serve at
 * most one executor at a time.
 *
 * The wire, on the session's private communicator:
 *   root -> worker  TAG_START  a start record (below): serve an executor with this configuration
 *   root -> worker  TAG_STOP   empty: the session is over, return
 *   both ways       TAG_BATCH  one packed mpx.Batch (tasks down; results and Control READY up;
 *                              Control SHUTDOWN down ends the executor)
 *   worker -> root  TAG_BYE    empty: the executor is over on this rank; nothing follows it
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
 * reply is ready), which ends it at once. */
#ifndef MPX_MPI_IMPL_H
#define MPX_MPI_IMPL_H

#include <mpi.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

enum { MPX__TAG_START = 0x6d01, MPX__TAG_STOP, MPX__TAG_BATCH, MPX__TAG_BYE, MPX__TAG_PAYLOAD };

/* One communicator with a root and its worker ranks. */
typedef struct mpx__mpi_session {
  MPI_Comm comm;     /* private dup: our tags never meet the program's messages */
  int root, rank, size;
  int nworkers;      /* size - 1 */
  int *cores;        /* root only: per comm rank, the cores that rank owns (its default threads) */
  int my_cores;      /* this rank's share of its node's cores */
  bool oneshot;      /* collective mode: workers return after one executor */
  _Atomic bool busy; /* root: an executor runs on it */
  _Atomic int refs;  /* root: the owner (mpx_init or mpx_comm_executor) and a running transport */
  bool served;       /* root: START was sent, so the workers will hear a SHUTDOWN */
  char host[64];
  char (*hosts)[64]; /* root only: per comm rank, its host name (gathered at session start) */
} mpx__mpi_session;

/* Create a session over `comm` (collective over comm): dup, node-local core shares, gathered at
 * the root. MPX_EMPI with mpx_errmsg on failure. */
int mpx__mpi_session_new(MPI_Comm comm, int root, bool oneshot, mpx__mpi_session **out);
/* Free it (collective, as MPI_Comm_free). */
void mpx__mpi_session_free(mpx__mpi_session *s);

/* Worker ranks: serve executors until TAG_STOP (or after one, for a oneshot session).
 * Returns 0 or a negative code (an MPI failure). */
int mpx__mpi_serve(mpx__mpi_session *s);

/* The start record (TAG_START), fixed little header then the initializer's name and initargs. */
typedef struct mpx__mpi_start {
  uint32_t magic, version;
  uint64_t max_payload;
  int32_t threads;      /* task threads in this rank, >= 1 */
  int32_t worker;       /* the dispatcher's index of this rank */
  uint32_t name_len;    /* 0: no initializer */
  uint32_t pad;
  uint64_t initargs_len;
} mpx__mpi_start;
#define MPX__MPI_START_MAGIC 0x6d707853u

/* A doorbell: ring from any thread; wait sleeps until rung or the timeout. */
typedef struct mpx__bell {
  _Atomic uint32_t seq;
  _Atomic int sleeping;
} mpx__bell;
void mpx__bell_ring(mpx__bell *b);
/* Sleep up to ns unless seq has moved from `seen`. */
void mpx__bell_wait(mpx__bell *b, uint32_t seen, long ns);

/* Backoff between empty polls: yields for MPX__SPIN_NS, then exponential sleeps. */
#define MPX__SPIN_NS 100000L
typedef struct mpx__backoff {
  int idle;       /* empty polls in a row */
  long ns;        /* the next sleep */
  long long t0;   /* monotonic ns of the first empty poll in a row */
} mpx__backoff;
/* Nanoseconds to sleep after one more empty poll (0: yield only). */
long mpx__backoff_next(mpx__backoff *b);
static inline void mpx__backoff_reset(mpx__backoff *b) { b->idle = 0, b->ns = 0; }
/* MPX_MPI_POLL_US in ns (default 1 ms, 10 us .. 100 ms). */
long mpx__mpi_poll_max_ns(void);
/* Sleeps of a few microseconds need a small timer slack; set it once on the calling thread. */
void mpx__mpi_thread_setup(void);

/* Sends in flight: each owns its buffer until MPI is done with it. */
typedef struct mpx__sendq {
  MPI_Request *req;
  uint8_t **buf;
  int *idx;
  int n, cap;
} mpx__sendq;
/* Send `len` bytes (copied, or taken over from *take when it is not NULL, which is then NULL). */
int mpx__sendq_post(mpx__sendq *q, MPI_Comm comm, int dest, int tag, const uint8_t *data,
                    size_t len, uint8_t **take);
/* As mpx__sendq_post; with `borrow`, `data` is sent where it lies (no copy, nothing freed): the
 * caller keeps it valid until the send is retired. */
int mpx__sendq_post_ex(mpx__sendq *q, MPI_Comm comm, int dest, int tag, const uint8_t *data,
                       size_t len, uint8_t **take, bool borrow);
/* Receive the next TAG_PAYLOAD message from `src` into a new malloc'd *out, which must be exactly
 * `len` bytes: waits for it up to `seconds` (it follows its batch). MPX_EPROTO if none came or
 * it has another size (then it is consumed and dropped), MPX_ENOMEM, MPX_EMPI. With `keep`
 * (a buffer of *keep_cap bytes kept between calls, grown as needed), the message goes there
 * and *out points into it (warm pages: a worker rank's arguments). */
int mpx__mpi_take_payload(MPI_Comm comm, int src, size_t len, double seconds, void **out,
                          uint8_t **keep, size_t *keep_cap);
/* Retire finished sends; returns how many finished, or a negative code. */
int mpx__sendq_progress(mpx__sendq *q);
/* Wait for every send. */
int mpx__sendq_drain(mpx__sendq *q);
void mpx__sendq_free(mpx__sendq *q);

/* An MPI error as "MPI_Xxx failed: <MPI's string>" into mpx_errmsg; returns MPX_EMPI. */
int mpx__mpi_fail(const char *what, int mpi_rc);

/* Receive the message `msg` of `len` bytes into *buf (grown as needed, capacity in *cap). */
int mpx__mpi_mrecv(MPI_Message *msg, size_t len, uint8_t **buf, size_t *cap);

#endif
