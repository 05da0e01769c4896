/* mpi_common.c: the MPI helpers both halves of the transport use (mpi_impl.h): error text, the
 * doorbell, the backoff between empty polls, the queue of sends in flight, matched receives and
 * the per-thread timer slack. Neither half calls into the other's file for them.
 *
 * Guarantees: the bell is lock-free and may be rung from any thread; everything else is called by
 * the thread that makes a rank's MPI calls (mpi_impl.h: one at a time per session). Nothing here
 * keeps state between calls except the cached MPX_MPI_POLL_US (an atomic, set once). */
#include <limits.h>
#include <stdbool.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "mpx/error.h"
#include "mpi_impl.h"
#include "os/clock.h"
#include "os/futex.h"
#include "os/seg.h"
int mpx__mpi_fail(const char *what, int mpi_rc) {
  char s[MPI_MAX_ERROR_STRING] = "";
  int n = 0;
  MPI_Error_string(mpi_rc, s, &n);
  mpx__set_errmsg("%s failed: %s", what, s);
  return MPX_EMPI;
}

void mpx__bell_ring(mpx__bell *b) {
  /* seq_cst on both sides (Dekker): either the sleeper sees the new seq before it sleeps, or we
   * see `sleeping` and wake it */
  atomic_fetch_add_explicit(&b->seq, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&b->sleeping, memory_order_seq_cst)) {
    if (b->shared) mpx__futex_wake(&b->seq, INT_MAX);
    else mpx__futex_wake_private(&b->seq, INT_MAX);
  }
}

void mpx__bell_wait(mpx__bell *b, uint32_t seen, long ns) {
  if (ns <= 0) {
    sched_yield();
    return;
  }
  atomic_fetch_add_explicit(&b->sleeping, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&b->seq, memory_order_seq_cst) == seen) {
    if (b->shared) { /* shared futexes take an absolute monotonic deadline */
      long long at = mpx__now_ns() + ns;
      struct timespec dl = {at / 1000000000LL, at % 1000000000LL};
      mpx__futex_wait(&b->seq, seen, &dl);
    } else {
      struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
      mpx__futex_wait_private(&b->seq, seen, &ts);
    }
  }
  atomic_fetch_sub_explicit(&b->sleeping, 1, memory_order_relaxed);
}

long mpx__mpi_poll_max_ns(void) {
  static _Atomic long cached;
  long v = atomic_load_explicit(&cached, memory_order_relaxed);
  if (v) return v;
  long us = 1000;
  const char *e = getenv("MPX_MPI_POLL_US");
  if (e && *e) {
    char *end;
    long x = strtol(e, &end, 10);
    if (!*end && x > 0) us = x;
  }
  us = us < 10 ? 10 : us > 100000 ? 100000 : us;
  atomic_store_explicit(&cached, us * 1000, memory_order_relaxed);
  return us * 1000;
}

long mpx__backoff_next(mpx__backoff *b) {
  if (b->idle++ == 0) b->t0 = mpx__now_ns();
  long spin = b->rung ? MPX__RUNG_SPIN_NS : MPX__SPIN_NS;
  if (mpx__now_ns() - b->t0 < spin) return 0; /* yield and look again */
  long max = mpx__mpi_poll_max_ns();
  if (b->rung && !b->expect) return b->ns = max; /* a ring wakes us: no need for a timer */
  b->ns = b->ns ? b->ns * 2 : 2000;
  if (b->ns > max) b->ns = max;
  return b->ns;
}

void mpx__mpi_thread_setup(void) {
  static _Thread_local bool done;
  if (done) return;
  done = true;
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us, so that 2 us sleeps are not 50 us */
}

/* What a borrowed send holds in q->buf: not ours to free. */
static uint8_t borrowed;

static void buf_free(uint8_t *b) {
  if (b != &borrowed) mpx__seg_pool_free(b, 0); /* a big result may be a result-pool block */
}

int mpx__sendq_post(mpx__sendq *q, MPI_Comm comm, int dest, int tag, const uint8_t *data,
                    size_t len, uint8_t **take) {
  return mpx__sendq_post_ex(q, comm, dest, tag, data, len, take, false);
}

int mpx__sendq_post_ex(mpx__sendq *q, MPI_Comm comm, int dest, int tag, const uint8_t *data,
                       size_t len, uint8_t **take, bool borrow) {
  if (len > INT_MAX) {
    mpx__set_errmsg("a message of %zu bytes is over MPI's limit of %d", len, INT_MAX);
    return MPX_ETOOBIG;
  }
  if (q->n == q->cap) {
    int cap = q->cap ? q->cap * 2 : 16;
    MPI_Request *r = realloc(q->req, (size_t)cap * sizeof *r);
    if (r) q->req = r;
    uint8_t **b = realloc(q->buf, (size_t)cap * sizeof *b);
    if (b) q->buf = b;
    int *ix = realloc(q->idx, (size_t)cap * sizeof *ix);
    if (ix) q->idx = ix;
    int *ds = realloc(q->dest, (size_t)cap * sizeof *ds);
    if (ds) q->dest = ds;
    if (!r || !b || !ix || !ds) return MPX_ENOMEM;
    q->cap = cap;
  }
  uint8_t *buf;
  const void *from;
  if (borrow) {
    buf = &borrowed;
  } else if (take && *take) {
    buf = *take;
    *take = NULL;
  } else {
    buf = malloc(len ? len : 1);
    if (!buf) return MPX_ENOMEM;
    if (len) memcpy(buf, data, len);
  }
  from = borrow ? data : buf;
  int rc = MPI_Isend(from, (int)len, MPI_BYTE, dest, tag, comm, &q->req[q->n]);
  if (rc != MPI_SUCCESS) {
    buf_free(buf);
    return mpx__mpi_fail("MPI_Isend", rc);
  }
  q->dest[q->n] = dest;
  q->buf[q->n++] = buf;
  return MPX_OK;
}

int mpx__sendq_progress(mpx__sendq *q) {
  if (!q->n) return 0;
  int k = 0;
  int rc = MPI_Testsome(q->n, q->req, &k, q->idx, MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Testsome", rc);
  if (k == MPI_UNDEFINED || k == 0) return 0;
  for (int i = 0; i < k; i++) {
    buf_free(q->buf[q->idx[i]]);
    q->buf[q->idx[i]] = NULL;
  }
  int w = 0; /* compact: finished requests are MPI_REQUEST_NULL now */
  for (int i = 0; i < q->n; i++)
    if (q->buf[i]) {
      q->req[w] = q->req[i];
      q->dest[w] = q->dest[i];
      q->buf[w++] = q->buf[i];
    }
  q->n = w;
  return k;
}

int mpx__sendq_drain(mpx__sendq *q) {
  mpx__backoff bo = {0};
  mpx__bell none = {0};
  while (q->n) {
    int k = mpx__sendq_progress(q);
    if (k < 0) return k;
    if (k)
      mpx__backoff_reset(&bo);
    else if (q->n)
      mpx__bell_wait(&none, 0, mpx__backoff_next(&bo));
  }
  return MPX_OK;
}

int mpx__sendq_drain_except(mpx__sendq *q, const bool *skip) {
  int w = 0;
  for (int i = 0; skip && i < q->n; i++) {
    if (!skip[q->dest[i]]) {
      q->req[w] = q->req[i];
      q->dest[w] = q->dest[i];
      q->buf[w++] = q->buf[i];
    } else {
      MPI_Request_free(&q->req[i]); /* the send goes on (or never ends); its buffer is leaked */
    }
  }
  if (skip) q->n = w;
  return mpx__sendq_drain(q);
}

void mpx__sendq_free(mpx__sendq *q) {
  for (int i = 0; i < q->n; i++) {
    MPI_Cancel(&q->req[i]);
    MPI_Request_free(&q->req[i]);
    buf_free(q->buf[i]);
  }
  free(q->req);
  free(q->buf);
  free(q->idx);
  free(q->dest);
  *q = (mpx__sendq){0};
}

int mpx__mpi_mrecv(MPI_Message *msg, size_t len, uint8_t **buf, size_t *cap) {
  if (len > *cap || !*buf) {
    size_t c = len > 4096 ? len : 4096;
    uint8_t *p = malloc(c);
    if (!p) {
      char dummy;
      MPI_Mrecv(&dummy, 0, MPI_BYTE, msg, MPI_STATUS_IGNORE); /* drop it (truncated) */
      return MPX_ENOMEM;
    }
    free(*buf);
    *buf = p;
    *cap = c;
  }
  int rc = MPI_Mrecv(*buf, (int)len, MPI_BYTE, msg, MPI_STATUS_IGNORE);
  return rc == MPI_SUCCESS ? MPX_OK : mpx__mpi_fail("MPI_Mrecv", rc);
}

int mpx__mpi_take_payload(MPI_Comm comm, int src, size_t len, double seconds, void **out,
                          uint8_t **keep, size_t *keep_cap) {
  *out = NULL;
  mpx__backoff bo = {0};
  mpx__bell none = {0};
  double give_up = mpx__now() + seconds;
  for (;;) {
    int flag = 0, count = 0;
    MPI_Message msg;
    MPI_Status st;
    int rc = MPI_Improbe(src, MPX__TAG_PAYLOAD, comm, &flag, &msg, &st);
    if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Improbe", rc);
    if (!flag) {
      if (mpx__now() > give_up) return MPX_EPROTO;
      mpx__bell_wait(&none, 0, mpx__backoff_next(&bo));
      continue;
    }
    MPI_Get_count(&st, MPI_BYTE, &count);
    bool fits = count >= 0 && (size_t)count == len; /* the size is checked first */
    void *p = NULL;
    if (fits && keep && *keep && *keep_cap >= len) {
      p = *keep;
    } else if (fits && keep) {
      free(*keep);
      *keep_cap = 0;
      if ((*keep = malloc(len))) *keep_cap = len;
      p = *keep;
    } else if (fits) {
      p = mpx__seg_pool_alloc(len); /* warm when one was given back (mpx__seg_pool_free) */
    }
    if (!p) {
      char dummy;
      MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE); /* consumed (truncated) */
      return count >= 0 && (size_t)count == len ? MPX_ENOMEM : MPX_EPROTO;
    }
    rc = MPI_Mrecv(p, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      if (!keep) mpx__seg_pool_free(p, len);
      return mpx__mpi_fail("MPI_Mrecv", rc);
    }
    *out = p;
    return MPX_OK;
  }
}

int mpx__mpi_stash_recv(mpx__mpi_stash *st, MPI_Message *msg, int count, size_t max) {
  int rc = count <= 0 ? MPX_EPROTO : (size_t)count > max ? MPX_ETOOBIG
           : st->n == MPX__SERVE_SEGS                  ? MPX_EPROTO
                                                       : MPX_OK;
  void *p = rc ? NULL : mpx__seg_pool_alloc((size_t)count); /* warm when one was given back */
  if (!p) {
    char dummy;
    MPI_Mrecv(&dummy, 0, MPI_BYTE, msg, MPI_STATUS_IGNORE); /* consumed (truncated) */
    return rc ? rc : MPX_ENOMEM;
  }
  int mrc = MPI_Mrecv(p, count, MPI_BYTE, msg, MPI_STATUS_IGNORE);
  if (mrc != MPI_SUCCESS) {
    mpx__seg_pool_free(p, (size_t)count);
    return mpx__mpi_fail("MPI_Mrecv", mrc);
  }
  int at = (st->head + st->n++) % MPX__SERVE_SEGS;
  st->data[at] = p;
  st->len[at] = (size_t)count;
  return MPX_OK;
}

int mpx__mpi_stash_take(mpx__mpi_stash *st, size_t len, void **out) {
  *out = NULL;
  if (!st->n) return MPX_EPROTO;
  void *p = st->data[st->head];
  size_t got = st->len[st->head];
  st->head = (st->head + 1) % MPX__SERVE_SEGS;
  st->n--;
  if (got != len) {
    mpx__seg_pool_free(p, got);
    return MPX_EPROTO;
  }
  *out = p;
  return MPX_OK;
}

void mpx__mpi_stash_free(mpx__mpi_stash *st) {
  void *p;
  while (st->n) {
    size_t len = st->len[st->head];
    mpx__mpi_stash_take(st, len, &p);
    mpx__seg_pool_free(p, len);
  }
}
