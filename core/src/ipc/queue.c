/* queue.c: the shared-memory queue behind ipc_queue.h.
 *
 * Layout: one anonymous shared mapping = header + byte ring. The ring holds records
 *   { u32 kind; u32 frag_len; u64 item_len } + frag_len bytes padded to 8,
 * of kind WHOLE (an item in one record), FIRST/CONT/LAST (an item streamed in fragments), or
 * ABORT (the item being streamed was abandoned: consumers drop what they took of it).
 *
 * Two-lock design (Michael & Scott): put_lock serialises producers and get_lock consumers, both
 * robust process-shared mutexes, so between them the ring is single-producer single-consumer:
 * only the put_lock holder writes `tail`, only the get_lock holder writes `head`. Each is one
 * 64-bit word packing (items passed << 40 | bytes passed), so a record and the item count it
 * completes are published by one release store, and qsize = items(tail) - items(head) is exact.
 *
 * Crash safety, with robust mutexes (a holder's death gives the next locker EOWNERDEAD):
 *  - A producer that dies before publishing a record leaves nothing visible. One that dies in
 *    the middle of a streamed item leaves `in_item` set; whoever next takes put_lock (a producer,
 *    or a consumer waiting for the rest of that item, which probes put_lock with trylock every
 *    10 ms) appends an ABORT record. Every record leaves >= 16 bytes free, so the ABORT always
 *    fits.
 *  - A consumer that dies mid-item has consumed some fragments: the next consumer finds CONT or
 *    LAST records without a FIRST and discards them. `head` counts the LAST, so qsize stays exact.
 *
 * Wake-ups: the get_lock holder waits for data by spinning on `tail` (1-20 us, adaptive), then
 * sleeping on the futex `data_seq` after raising `cons_waiting`; a producer, after each publish,
 * fences and only if cons_waiting is up bumps data_seq and calls FUTEX_WAKE (a Dekker pair: a
 * fence on each side between its own store and its load of the other's); close bumps it
 * unconditionally. Space for producers works the same way with space_seq and prod_waiting.
 * Other producers and consumers sleep in the robust mutexes. */
#include <limits.h>
#include <protobuf-c/protobuf-c.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpx/ipc_queue.h"
#include "os/clock.h"
#include "shm.h"

enum { K_WHOLE = 1, K_FIRST = 2, K_CONT = 3, K_LAST = 4, K_ABORT = 5 };

#define HDR 16u     /* record header bytes */
#define RESERVE 16u /* always free after a record: room for an ABORT */
#define BBITS 40    /* bytes part of head/tail */
#define BMASK ((1ull << BBITS) - 1)
#define IMASK ((1ull << 24) - 1) /* items part: modulo 2^24 (differences stay exact) */
#define TRY_NS 20000             /* nonblocking calls retry a busy lock this long (ns) */
#define SPIN_MIN 500             /* adaptive spin before sleeping (ns): floor, start, ceiling */
#define SPIN_START 10000
#define SPIN_MAX 20000
#define PROBE_MS 10 /* a consumer mid-item checks its producer this often */

typedef struct rec_hdr {
  uint32_t kind;
  uint32_t len;
  uint64_t total;
} rec_hdr;

/* Fields are grouped by who writes them, one group per cache line, so that a hand-off moves as
 * few lines as possible between cores: in the steady state only the tail line and the ring bytes
 * travel to the consumer, and the head line back to the producer only when its cached view of
 * the head says the ring is full. The *_waiting flags have lines of their own: they are written
 * only around sleeps, so both sides keep them cached. */
struct mpx_queue {
  mpx__shm_hdr h;
  uint64_t cap; /* ring bytes, a power of two */
  long maxsize; /* 0: unbounded */
  _Atomic uint32_t closed;
  /* the put_lock holder's own state */
  alignas(64) pthread_mutex_t put_lock;
  _Atomic uint32_t in_item;   /* a streamed item is under way */
  _Atomic uint32_t prod_spin; /* adaptive spin budget (ns), a hint */
  uint64_t head_seen;         /* the head as last loaded: a lower bound, so free space is >= */
  uint64_t tail_own;          /* the tail as we last stored it: the tail line itself is usually
                                 in the spinning consumer's cache, and reading it back would cost
                                 the producer a miss per put. Re-read after a holder died. */
  /* written by the put_lock holder, read by consumers */
  alignas(64) _Atomic uint64_t tail;
  _Atomic uint32_t data_seq; /* futex: bumped after each publish */
  /* written by a consumer about to sleep, read by producers */
  alignas(64) _Atomic uint32_t cons_waiting;
  /* the get_lock holder's own state */
  alignas(64) pthread_mutex_t get_lock;
  _Atomic uint32_t cons_spin; /* adaptive spin budget (ns), a hint */
  /* written by the get_lock holder, read by producers */
  alignas(64) _Atomic uint64_t head;
  _Atomic uint32_t space_seq; /* futex: bumped after head moves */
  /* written by a producer about to sleep, read by consumers */
  alignas(64) _Atomic uint32_t prod_waiting;
  alignas(64) unsigned char ring[];
};

static inline uint64_t bpos(uint64_t w) { return w & BMASK; }
static inline uint64_t items(uint64_t w) { return w >> BBITS; }
static inline uint64_t advance(uint64_t w, uint64_t bytes, uint64_t n) {
  return (((items(w) + n) & IMASK) << BBITS) | ((bpos(w) + bytes) & BMASK);
}
static inline size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static bool valid(const mpx_queue *q) { return mpx__shm_check(q, MPX__MAGIC_QUEUE); }

int mpx_queue_create(mpx_queue **out, long maxsize, size_t ring_bytes) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (ring_bytes == 0) ring_bytes = MPX_QUEUE_RING_DEFAULT;
  if (ring_bytes > ((size_t)1 << 31)) return MPX_EINVAL; /* record lengths are 32-bit */
  size_t cap = 128;
  while (cap < ring_bytes) cap <<= 1;
  mpx_queue *q = mpx__shm_alloc(sizeof *q + cap, MPX__MAGIC_QUEUE);
  if (!q) return MPX_ENOMEM;
  q->cap = cap;
  atomic_init(&q->prod_spin, SPIN_START); /* before anyone else can see q */
  atomic_init(&q->cons_spin, SPIN_START);
  q->maxsize = maxsize > 0 ? maxsize : 0;
  if (q->maxsize > (long)(IMASK / 2)) q->maxsize = (long)(IMASK / 2);
  if (mpx__mutex_init(&q->put_lock, false) || mpx__mutex_init(&q->get_lock, false)) {
    mpx__shm_free(q);
    return MPX_ESYS;
  }
  *out = q;
  return MPX_OK;
}

int mpx_queue_destroy(mpx_queue *q) {
  if (!valid(q)) return MPX_EINVAL;
  mpx__shm_free(q);
  return MPX_OK;
}

/* ---- ring access ---------------------------------------------------------------------------- */

static void ring_write(mpx_queue *q, uint64_t pos, const void *src, size_t n) {
  size_t off = (size_t)(pos & (q->cap - 1));
  size_t first = n < q->cap - off ? n : q->cap - off;
  memcpy(q->ring + off, src, first);
  if (n > first) memcpy(q->ring, (const char *)src + first, n - first);
}

static void ring_read(const mpx_queue *q, uint64_t pos, void *dst, size_t n) {
  size_t off = (size_t)(pos & (q->cap - 1));
  size_t first = n < q->cap - off ? n : q->cap - off;
  memcpy(dst, q->ring + off, first);
  if (n > first) memcpy((char *)dst + first, q->ring, n - first);
}

static uint64_t used_bytes(uint64_t tail, uint64_t head) {
  return (bpos(tail) - bpos(head)) & BMASK;
}
static uint64_t count_items(uint64_t tail, uint64_t head) {
  return (items(tail) - items(head)) & IMASK;
}

/* Wake whoever sleeps on `seq` if its flag says someone may. The fence orders our publish (the
 * tail or head store before the call) before the flag load, pairing with the waiter's flag store,
 * fence and re-check (a Dekker pair, see wait_for). Only then is `seq` bumped: an unconditional
 * RMW would take the line the other side is spinning on away from it on every hand-off. */
static void signal_seq(_Atomic uint32_t *seq, _Atomic uint32_t *flag) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(flag, memory_order_relaxed)) {
    atomic_fetch_add_explicit(seq, 1, memory_order_seq_cst);
    mpx__futex_wake(seq, INT_MAX);
  }
}

/* Producer: write a record at the tail (owned by the put_lock holder) and publish. */
static void put_record(mpx_queue *q, uint32_t kind, const void *data, uint32_t len,
                       uint64_t total) {
  uint64_t t = q->tail_own;
  rec_hdr h = {.kind = kind, .len = len, .total = total};
  ring_write(q, bpos(t), &h, HDR);
  if (len) ring_write(q, bpos(t) + HDR, data, len);
  uint64_t nt = advance(t, HDR + pad8(len), kind == K_WHOLE || kind == K_LAST);
  /* release: a consumer that sees the new tail sees the record's bytes */
  atomic_store_explicit(&q->tail, nt, memory_order_release);
  q->tail_own = nt; /* a death between the two stores is repaired by put_locked */
  signal_seq(&q->data_seq, &q->cons_waiting);
}

/* Lock one side. block = false: try for a short while (a holder that is only copying soon lets
 * go), then give up with MPX_ETIMEDOUT. EOWNERDEAD is handled by `recover` (may be NULL). */
static int lock_side(mpx_queue *q, pthread_mutex_t *m, bool block, const struct timespec *dl,
                     bool *owner_died) {
  int rc;
  if (block) {
    rc = mpx__mutex_lock(m, dl);
  } else {
    struct timespec now;
    mpx__deadline(0, &now);
    double until = (double)mpx__now_ns() + TRY_NS;
    for (int i = 0;; i++) {
      rc = mpx__mutex_lock(m, &now);
      if (rc != MPX_ETIMEDOUT || ((i & 63) == 63 && (double)mpx__now_ns() > until)) break;
      mpx__cpu_relax();
    }
  }
  if (owner_died) *owner_died = rc == MPX_EOWNERDEAD;
  return rc == MPX_EOWNERDEAD ? MPX_OK : rc; /* made consistent; the caller repairs the rest */
}

/* ---- waiting -------------------------------------------------------------------------------- */

typedef bool (*cond_fn)(mpx_queue *q, size_t arg);

/* Wait until cond(q, arg) holds: spin first, then sleep on `seq` with `flag` raised. Returns 0
 * when it holds, MPX_ETIMEDOUT when the deadline passed first (a passed deadline: one check). */
static int wait_for(mpx_queue *q, cond_fn cond, size_t arg, _Atomic uint32_t *seq,
                    _Atomic uint32_t *flag, _Atomic uint32_t *spin, const struct timespec *dl) {
  if (cond(q, arg)) return MPX_OK;
  if (dl && mpx__deadline_passed(dl)) return MPX_ETIMEDOUT;
  /* Spin with pause while the other side, running on another core, is likely to answer within
   * microseconds; then sleep. The budget adapts: it grows when spinning pays off and halves when
   * it does not (the other side shares our core, or is slow), so a loaded machine does not burn
   * a spin on every hand-off. (sched_yield spinning was tried: it hands whole time slices to
   * unrelated CPU hogs sharing the core.) The budget is a hint: relaxed loads and stores. */
  uint32_t learnt = atomic_load_explicit(spin, memory_order_relaxed);
  double start = (double)mpx__now_ns();
  /* About one wait in 32 (by the clock's bits) probes with the full budget: when both sides
   * have fallen back to sleeping, only a long spin finds out that they could spin again. */
  uint32_t budget = (((uint64_t)start >> 10) & 31) == 0 ? SPIN_MAX : learnt;
  for (int i = 1;; i++) {
    mpx__cpu_relax();
    if (cond(q, arg)) {
      if (learnt < SPIN_MAX) {
        uint32_t grown = budget + budget / 2;
        atomic_store_explicit(spin, grown > SPIN_MAX ? SPIN_MAX : grown, memory_order_relaxed);
      }
      return MPX_OK;
    }
    if ((i & 63) == 0 && (double)mpx__now_ns() - start > budget) break;
  }
  if (learnt > SPIN_MIN)
    atomic_store_explicit(spin, learnt / 2 < SPIN_MIN ? SPIN_MIN : learnt / 2,
                          memory_order_relaxed);
  for (;;) {
    atomic_store_explicit(flag, 1, memory_order_seq_cst);         /* Dekker with signal_seq */
    atomic_thread_fence(memory_order_seq_cst);                    /* flag before the re-check */
    /* A bump of seq we read here (by signal_seq or close) came after the publish it announces,
     * so the re-check below sees that publish; one we miss makes futex_wait return at once. */
    uint32_t s = atomic_load_explicit(seq, memory_order_seq_cst);
    if (cond(q, arg)) break;
    int rc = mpx__futex_wait(seq, s, dl);
    if (cond(q, arg)) break;
    if (rc == MPX_ETIMEDOUT) {
      atomic_store_explicit(flag, 0,
                            memory_order_relaxed); /* a hint only: a stale 1 costs a wake */
      return MPX_ETIMEDOUT;
    }
  }
  atomic_store_explicit(flag, 0, memory_order_relaxed); /* a hint only, as above */
  return MPX_OK;
}

static bool is_closed(const mpx_queue *q) {
  return atomic_load_explicit(&q->closed, memory_order_acquire); /* pairs with close's release */
}

/* Producer may write `need` bytes (plus the reserve), and if `counted`, one more item fits. */
/* Free ring bytes between tail `t` and head `h` (0 if they are inconsistent, so that no check
 * can underflow into "room"). */
static uint64_t free_bytes(const mpx_queue *q, uint64_t t, uint64_t h) {
  uint64_t used = used_bytes(t, h);
  return used >= q->cap ? 0 : q->cap - used;
}

static bool fits(const mpx_queue *q, uint64_t t, uint64_t h, size_t need, bool counted) {
  if (counted && q->maxsize && count_items(t, h) >= (uint64_t)q->maxsize) return false;
  return free_bytes(q, t, h) >= need + RESERVE;
}

/* Producer (put_lock held) may write `need` bytes plus the reserve, and if `counted`, one more
 * item fits. Looks at the consumer's head line only when the cached head says no. */
static bool space_ok(mpx_queue *q, size_t need_counted) {
  size_t need = need_counted >> 1;
  bool counted = need_counted & 1;
  if (is_closed(q)) return true;
  uint64_t t = q->tail_own;
  if (fits(q, t, q->head_seen, need, counted)) return true;
  /* acquire: the consumer has finished reading the bytes it released */
  q->head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
  return fits(q, t, q->head_seen, need, counted);
}

static bool data_ok(mpx_queue *q, size_t unused) {
  (void)unused;
  uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* ours (get_lock holder) */
  /* acquire: seeing the tail means seeing the record bytes behind it */
  return bpos(atomic_load_explicit(&q->tail, memory_order_acquire)) != bpos(h) || is_closed(q);
}

static bool data_only(mpx_queue *q, size_t unused) {
  (void)unused;
  uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* ours (get_lock holder) */
  /* acquire: seeing the tail means seeing the record bytes behind it */
  return bpos(atomic_load_explicit(&q->tail, memory_order_acquire)) != bpos(h);
}

/* Room for an ABORT record (the reserve included), from a fresh look at the head. */
static bool abort_fits(mpx_queue *q, size_t unused) {
  (void)unused;
  uint64_t t = q->tail_own;
  /* acquire: the consumer has finished reading the bytes it released */
  q->head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
  return free_bytes(q, t, q->head_seen) >= HDR;
}

/* With put_lock held, after its previous holder died: that holder may have died between
 * publishing the tail and noting it in tail_own. The tail itself is the truth. */
static void resync_tail(mpx_queue *q) {
  q->tail_own = atomic_load_explicit(&q->tail, memory_order_acquire);
}

/* With put_lock held: a streamer keeps put_lock for its whole item, so `in_item` up now means
 * its producer died mid-item. Abandon that item with an ABORT, once there is room for one (a
 * recoverer may itself have died between its ABORT and lowering in_item: the room check keeps a
 * second ABORT from overrunning the ring). 0, or MPX_ETIMEDOUT with in_item still up, for the
 * next holder to finish. */
static int recover_put(mpx_queue *q, const struct timespec *dl) {
  /* acquire: pairs with the release store of the dead holder (and the mutex hand-over) */
  if (!atomic_load_explicit(&q->in_item, memory_order_acquire)) return MPX_OK;
  int rc = wait_for(q, abort_fits, 0, &q->space_seq, &q->prod_waiting, &q->prod_spin, dl);
  if (rc) return rc;
  put_record(q, K_ABORT, NULL, 0, 0);
  atomic_store_explicit(&q->in_item, 0, memory_order_release); /* after the ABORT is out */
  return MPX_OK;
}

/* ---- put ------------------------------------------------------------------------------------ */

int mpx_queue_put(mpx_queue *q, const void *data, size_t len, bool block, double timeout) {
  if (!valid(q) || (!data && len) || len > ((uint64_t)1 << 38)) return MPX_EINVAL;
  if (is_closed(q)) return MPX_ECLOSED;
  struct timespec ts, *dl = block ? mpx__deadline(timeout, &ts) : NULL;
  int busy = block ? MPX_ETIMEDOUT : MPX_EFULL;
  bool died;
  int rc = lock_side(q, &q->put_lock, block, dl, &died);
  if (rc) return rc == MPX_ETIMEDOUT ? busy : rc;
  if (died) resync_tail(q);
  struct timespec now;
  if ((rc = recover_put(q, block ? dl : mpx__deadline(0, &now)))) {
    mpx__mutex_unlock(&q->put_lock);
    return rc == MPX_ETIMEDOUT ? busy : rc;
  }
  const char *src = data;
  size_t rec = HDR + pad8(len);
  if (rec + RESERVE <= q->cap) { /* one piece */
    if (!block)
      rc = space_ok(q, rec << 1 | 1) ? MPX_OK : MPX_ETIMEDOUT;
    else
      rc = wait_for(q, space_ok, rec << 1 | 1, &q->space_seq, &q->prod_waiting, &q->prod_spin, dl);
    if (rc)
      rc = busy;
    else if (is_closed(q))
      rc = MPX_ECLOSED;
    else
      put_record(q, K_WHOLE, src, (uint32_t)len, len);
    mpx__mutex_unlock(&q->put_lock);
    return rc;
  }
  /* Streamed: FIRST, CONT..., LAST, each as large as the free space allows. */
  if (!block) {
    mpx__mutex_unlock(&q->put_lock);
    return MPX_EFULL;
  }
  rc =
      wait_for(q, space_ok, (HDR + 8) << 1 | 1, &q->space_seq, &q->prod_waiting, &q->prod_spin, dl);
  if (!rc && is_closed(q)) rc = MPX_ECLOSED;
  if (rc) {
    mpx__mutex_unlock(&q->put_lock);
    return rc == MPX_ETIMEDOUT ? busy : rc;
  }
  /* release: a recoverer that sees in_item also sees everything before it */
  atomic_store_explicit(&q->in_item, 1, memory_order_release);
  size_t off = 0;
  while (off < len) {
    if (off > 0) {
      rc =
          wait_for(q, space_ok, (HDR + 8) << 1, &q->space_seq, &q->prod_waiting, &q->prod_spin, dl);
      if (!rc && is_closed(q)) rc = MPX_ECLOSED;
      if (rc) { /* abandon the item: consumers drop what they took of it */
        put_record(q, K_ABORT, NULL, 0, 0);
        atomic_store_explicit(&q->in_item, 0, memory_order_release); /* after the ABORT */
        mpx__mutex_unlock(&q->put_lock);
        return rc;
      }
    }
    uint64_t t = q->tail_own;
    uint64_t h = q->head_seen; /* space_ok loaded it (acquire) when it last had to */
    uint64_t fb = free_bytes(q, t, h); /* >= HDR + 8 + RESERVE: we waited for that */
    size_t room = fb > RESERVE + HDR ? (size_t)(fb - RESERVE - HDR) : 0;
    if (room > UINT32_MAX - 7) room = UINT32_MAX - 7;
    size_t chunk = len - off;
    if (chunk > (room & ~(size_t)7)) chunk = room & ~(size_t)7;
    uint32_t kind = off == 0 ? K_FIRST : off + chunk == len ? K_LAST : K_CONT;
    put_record(q, kind, src + off, (uint32_t)chunk, len);
    off += chunk;
  }
  atomic_store_explicit(&q->in_item, 0, memory_order_release); /* after the LAST is out */
  mpx__mutex_unlock(&q->put_lock);
  return MPX_OK;
}

int mpx_queue_put_nowait(mpx_queue *q, const void *data, size_t len) {
  return mpx_queue_put(q, data, len, false, 0);
}

/* ---- get ------------------------------------------------------------------------------------ */

/* Consumer, mid-item, found the ring empty: wait for the rest. No deadline: the producer either
 * finishes or aborts the item, unless it died, which the put_lock probe finds out. */
static int wait_rest(mpx_queue *q) {
  for (;;) {
    struct timespec ts;
    mpx__deadline((double)PROBE_MS / 1000.0, &ts);
    if (wait_for(q, data_only, 0, &q->data_seq, &q->cons_waiting, &q->cons_spin, &ts) == MPX_OK)
      return MPX_OK;
    struct timespec now;
    mpx__deadline(0, &now);
    int rc = mpx__mutex_lock(&q->put_lock, &now);
    if (rc == MPX_EOWNERDEAD) resync_tail(q);
    if (rc == MPX_EOWNERDEAD || rc == MPX_OK) {
      /* We hold put_lock, so no one is streaming: if in_item is up, its producer died and we
       * append the ABORT we are waiting for (the ring is empty for us: it fits). Else its last
       * record is there. */
      recover_put(q, &now);
      mpx__mutex_unlock(&q->put_lock);
    }
  }
}

static void consume(mpx_queue *q, uint64_t h, const rec_hdr *r) {
  uint64_t nh = advance(h, HDR + pad8(r->len), r->kind == K_WHOLE || r->kind == K_LAST);
  /* release: the producer that sees the new head may overwrite the bytes we read */
  atomic_store_explicit(&q->head, nh, memory_order_release);
  signal_seq(&q->space_seq, &q->prod_waiting);
}

/* At `h` starts a FIRST record: if the published records show that item was aborted, return
 * the byte count up to and including its ABORT (0 if it was not, or it is not known yet). */
static uint64_t aborted_run(const mpx_queue *q, uint64_t h, uint64_t t) {
  uint64_t p = bpos(h), end = bpos(t), n = 0;
  for (bool first = true; p != end; first = false) {
    rec_hdr r;
    ring_read(q, p, &r, HDR);
    uint64_t sz = HDR + pad8(r.len);
    if (r.kind == K_ABORT) return n + sz;
    if (r.kind != K_CONT && !(first && r.kind == K_FIRST)) return 0;
    n += sz;
    p = (p + sz) & BMASK;
  }
  return 0;
}

/* The get engine: into `buf` (cap) or, when `alloc`, into a new buffer at *out. */
static int get_impl(mpx_queue *q, void *buf, size_t cap, void **out, size_t *len, bool block,
                    double timeout) {
  bool alloc = out != NULL;
  if (!valid(q) || !len || (!alloc && !buf && cap)) return MPX_EINVAL;
  struct timespec ts, *dl = block ? mpx__deadline(timeout, &ts) : NULL;
  bool nowait = !block || (dl && mpx__deadline_passed(dl));
  int empty = block ? MPX_ETIMEDOUT : MPX_EEMPTY;
  int rc = lock_side(q, &q->get_lock, block, dl, NULL);
  if (rc) return rc == MPX_ETIMEDOUT ? empty : rc;
  char *dst = NULL; /* the item being assembled */
  bool in_item = false;
  uint64_t total = 0, got = 0;
  for (;;) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* only we write it */
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire); /* see the bytes */
    if (bpos(t) == bpos(h)) {
      if (in_item) {
        wait_rest(q);
        continue;
      }
      if (is_closed(q)) {
        rc = MPX_ECLOSED;
        break;
      }
      if (nowait) {
        rc = empty;
        break;
      }
      rc = wait_for(q, data_ok, 0, &q->data_seq, &q->cons_waiting, &q->cons_spin, dl);
      if (rc) {
        rc = empty;
        break;
      }
      continue;
    }
    rec_hdr r;
    ring_read(q, bpos(h), &r, HDR);
    if (r.kind == K_WHOLE || r.kind == K_FIRST) {
      if (in_item) { /* cannot happen: items do not interleave; drop the partial one */
        in_item = false;
      }
      if (nowait && count_items(t, h) == 0) { /* not whole yet: would have to wait */
        rc = empty;
        break;
      }
      if (r.total > ((uint64_t)1 << 38) || r.len > r.total) {
        rc = MPX_EPROTO;
        break;
      }
      if (alloc) {
        if (!dst || total < r.total) {
          free(dst);
          dst = r.total ? malloc((size_t)r.total) : NULL;
          if (r.total && !dst) {
            rc = MPX_ENOMEM; /* the item stays */
            break;
          }
        }
      } else if (r.total > cap) {
        uint64_t skip = r.kind == K_FIRST ? aborted_run(q, h, t) : 0;
        if (skip) { /* an abandoned item is not "too big": drop it and go on */
          /* release: as in consume(), the producer may reuse these bytes */
          atomic_store_explicit(&q->head, advance(h, skip, 0), memory_order_release);
          signal_seq(&q->space_seq, &q->prod_waiting);
          continue;
        }
        *len = (size_t)r.total;
        rc = MPX_ETOOBIG; /* the item stays */
        break;
      } else {
        dst = buf;
      }
      total = r.total;
      if (r.len) ring_read(q, bpos(h) + HDR, dst, r.len);
      got = r.len;
      consume(q, h, &r);
      if (r.kind == K_WHOLE) break;
      in_item = true;
      continue;
    }
    if (r.kind == K_CONT || r.kind == K_LAST) {
      if (in_item && got + r.len <= total) {
        if (r.len) ring_read(q, bpos(h) + HDR, dst + got, r.len);
        got += r.len;
      } else {
        in_item = false; /* the orphaned rest of an item whose consumer died: discard */
      }
      consume(q, h, &r);
      if (r.kind == K_LAST && in_item) break;
      continue;
    }
    if (r.kind == K_ABORT) {
      in_item = false; /* its producer gave up or died: drop what we took */
      consume(q, h, &r);
      continue;
    }
    rc = MPX_EPROTO; /* unknown kind: memory was overwritten from outside */
    break;
  }
  mpx__mutex_unlock(&q->get_lock);
  if (rc == MPX_ETOOBIG) return rc;
  if (rc) {
    if (alloc) free(dst);
    return rc;
  }
  *len = (size_t)total;
  if (alloc) {
    if (!total) {
      free(dst);
      dst = NULL;
    }
    *out = dst;
  }
  return MPX_OK;
}

int mpx_queue_get(mpx_queue *q, void *buf, size_t cap, size_t *len, bool block, double timeout) {
  return get_impl(q, buf, cap, NULL, len, block, timeout);
}

int mpx_queue_get_nowait(mpx_queue *q, void *buf, size_t cap, size_t *len) {
  return get_impl(q, buf, cap, NULL, len, false, 0);
}

int mpx_queue_get_alloc(mpx_queue *q, void **data, size_t *len, bool block, double timeout) {
  if (!data) return MPX_EINVAL;
  *data = NULL;
  return get_impl(q, NULL, 0, data, len, block, timeout);
}

int mpx_queue_put_msg(mpx_queue *q, const struct ProtobufCMessage *msg, bool block,
                      double timeout) {
  if (!valid(q) || !msg || !msg->descriptor) return MPX_EINVAL;
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t small[256];
  uint8_t *buf = n <= sizeof small ? small : malloc(n);
  if (!buf) return MPX_ENOMEM;
  protobuf_c_message_pack(msg, buf);
  int rc = mpx_queue_put(q, buf, n, block, timeout);
  if (buf != small) free(buf);
  return rc;
}

int mpx_queue_get_msg(mpx_queue *q, const struct ProtobufCMessageDescriptor *desc,
                      struct ProtobufCMessage **msg, bool block, double timeout) {
  if (!valid(q) || !desc || !msg) return MPX_EINVAL;
  *msg = NULL;
  void *data;
  size_t len;
  int rc = mpx_queue_get_alloc(q, &data, &len, block, timeout);
  if (rc) return rc;
  *msg = protobuf_c_message_unpack(desc, NULL, len, data);
  free(data);
  return *msg ? MPX_OK : MPX_EPROTO;
}

/* ---- state ---------------------------------------------------------------------------------- */

int mpx_queue_qsize(const mpx_queue *q, size_t *n) {
  if (!valid(q) || !n) return MPX_EINVAL;
  /* head first: both only grow, so the difference can overstate a moving queue, never go < 0 */
  uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
  uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
  *n = (size_t)count_items(t, h);
  return MPX_OK;
}

int mpx_queue_empty(const mpx_queue *q) {
  size_t n;
  int rc = mpx_queue_qsize(q, &n);
  return rc ? rc : n == 0;
}

int mpx_queue_full(const mpx_queue *q) {
  size_t n;
  int rc = mpx_queue_qsize(q, &n);
  return rc ? rc : (q->maxsize > 0 && n >= (size_t)q->maxsize);
}

int mpx_queue_close(mpx_queue *q) {
  if (!valid(q)) return MPX_EINVAL;
  /* release: pairs with the acquire in is_closed */
  atomic_store_explicit(&q->closed, 1, memory_order_release);
  /* seq_cst bumps: sleepers that read the old value are woken below or see the change */
  atomic_fetch_add_explicit(&q->data_seq, 1, memory_order_seq_cst);
  atomic_fetch_add_explicit(&q->space_seq, 1, memory_order_seq_cst);
  mpx__futex_wake(&q->data_seq, INT_MAX);
  mpx__futex_wake(&q->space_seq, INT_MAX);
  return MPX_OK;
}

int mpx_queue_closed(const mpx_queue *q) { return valid(q) ? (int)is_closed(q) : MPX_EINVAL; }
