/* map.c: the streaming and variable-size maps: mpx_imap / mpx_imap_var (results one at a time, in
 * order or as they finish, with a bound on items in flight), mpx_map_var (every item's result
 * bytes, kept in an mpx_results). The blocking fixed-size mpx_map is in executor.c, the maps
 * as futures (mpx_map_async, mpx_map_var_async) in map_async.c.
 *
 * Engine: an mpx_imap_iter owns `window` slots; each holds one chunk (descriptor, future, its items
 * encoded or copied unless borrowed, and once done its per-item outcomes, a vchunk.h vres). A slot
 * is refilled with the next chunk only when the caller has taken every item of the chunk it held,
 * so at most window * chunksize items are in flight and in memory, whatever n is. Ordered: the
 * caller waits for the oldest chunk's future. Unordered: each chunk future has a done-callback
 * that queues its slot on `done` (under `lock`, signalling `cond`), and the caller takes chunks
 * from that queue.
 *
 * Locking: an mpx_imap_iter is used by one thread at a time (its caller); `lock` guards only the
 * done queue and the count of callbacks that have run, which destroy waits on so that no callback
 * touches a freed imap. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"
#include "executor_impl.h"
#include "future_impl.h"
#include "task_impl.h"
#include "map_impl.h"
#include "vchunk.h"

/* Messages handed out (an item's error with where it ran): valid until the next call. */
static _Thread_local char item_msg[640];

typedef struct islot {
  mpx__map_chunk c;
  mpx_future *f;
  void *copy;   /* the chunk's items (encoded or copied); NULL when borrowed or empty */
  size_t first; /* its first item's index */
  size_t taken; /* items handed out */
  size_t chunk_no;
  struct mpx_imap_iter *it;
} islot;

struct mpx_imap_iter {
  mpx_executor *ex;
  const mpx_task *t;
  const unsigned char *base; /* fixed items */
  size_t item_size;
  const mpx_bytes *list; /* variable-size items */
  size_t n, chunk, nchunks, window;
  bool unordered, borrow;
  islot *slots;
  size_t *free_slots, nfree;
  size_t *order, order_head, order_n; /* ordered: slots in chunk order (a ring of window) */
  size_t next_chunk;                  /* chunks submitted (or failed to submit) */
  islot *cur;                         /* the chunk being handed out */
  size_t yielded;
  int submit_rc;
  char *submit_msg;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t *done, done_head, done_n; /* unordered: slots whose chunk is done (ring) */
  size_t callbacks_due, callbacks_run;
};

int mpx__map_einval(const char *what) {
  mpx__set_errmsg("%s", what);
  return MPX_EINVAL;
}

/* Default chunk: Python's ceil(n / (4 * workers)), at most `cap` (0: none). */
size_t mpx__map_chunk_of(const mpx_executor *ex, size_t n, size_t asked, size_t cap) {
  size_t q = 4 * (size_t)mpx__executor_slots(ex);
  size_t c = asked ? asked : n / q + (n % q != 0);
  if (!asked && cap && c > cap) c = cap;
  if (c > n) c = n;
  if (mpx__executor_encodes(ex) && c > MPX__DEFAULT_MAX_ITEMS) c = MPX__DEFAULT_MAX_ITEMS;
  return c ? c : 1;
}

static int on_chunk_done(mpx_future *f, void *arg) {
  (void)f;
  islot *s = arg;
  struct mpx_imap_iter *it = s->it;
  pthread_mutex_lock(&it->lock);
  it->done[(it->done_head + it->done_n++) % it->window] = (size_t)(s - it->slots);
  it->callbacks_run++;
  pthread_cond_broadcast(&it->cond);
  pthread_mutex_unlock(&it->lock);
  return 0;
}

/* Submit chunk `it->next_chunk` into a free slot. */
static int submit_next(struct mpx_imap_iter *it) {
  islot *s = &it->slots[it->free_slots[--it->nfree]];
  size_t k = it->next_chunk++, first = k * it->chunk;
  size_t count = it->n - first < it->chunk ? it->n - first : it->chunk;
  *s = (islot){.first = first, .chunk_no = k, .it = it};
  s->c = (mpx__map_chunk){.count = count,
                          .item_size = it->list ? 0 : it->item_size,
                          .var = MPX__VAR_RESULTS | (it->list ? MPX__VAR_ITEMS : 0)};
  const void *arg = NULL;
  size_t len = 0;
  int rc = MPX_OK;
  if (it->list) {
    rc = mpx__vchunk_pack_items(it->list + first, count, &s->copy, &len);
    arg = s->copy;
  } else if ((len = count * it->item_size)) {
    arg = it->base + first * it->item_size;
    if (!it->borrow && !(arg = s->copy = malloc(len)))
      rc = MPX_ENOMEM;
    else if (!it->borrow)
      memcpy(s->copy, it->base + first * it->item_size, len);
  }
  if (!rc && mpx__executor_encodes(it->ex) && len > mpx__executor_max_payload(it->ex)) {
    mpx__set_errmsg("map chunk %zu (items %zu..%zu) has %zu bytes of items, more than max_payload "
                    "(%zu): lower chunksize",
                    k, first, first + count - 1, len, mpx__executor_max_payload(it->ex));
    rc = MPX_ETOOBIG;
  }
  mpx_future *f = rc ? NULL : mpx__future_new(it->t, NULL, 0, MPX__ARG_BORROW);
  if (!rc && !f) rc = MPX_ENOMEM;
  if (rc) {
    if (rc == MPX_ENOMEM) mpx__set_errmsg("no memory for map chunk %zu", k);
    free(s->copy);
    s->copy = NULL;
    it->free_slots[it->nfree++] = (size_t)(s - it->slots);
    return rc;
  }
  f->arg = arg;
  f->arg_len = len;
  f->owner = &s->c;
  atomic_fetch_or_explicit(&f->state, MPX__F_CHUNK, memory_order_relaxed);
  if (it->unordered) {
    /* before submit: the callback is then sure to run, once, whatever happens */
    if ((rc = mpx_future_add_done_callback(f, on_chunk_done, s))) {
      mpx_future_release(f);
      mpx__future_drop(f);
      free(s->copy);
      it->free_slots[it->nfree++] = (size_t)(s - it->slots);
      return rc;
    }
    it->callbacks_due++;
  }
  s->f = f;
  mpx__future_hold(f); /* ours, so that a failed submit still leaves f for the callback's run */
  rc = mpx__executor_submit(it->ex, f); /* on failure f was released and dropped once */
  if (rc) {
    /* a queued callback must still run: fail the never-queued future (it is PENDING) */
    s->f = NULL;
    free(s->copy);
    s->copy = NULL;
    if (it->unordered) /* its items are handed out as failures when the callback queued it */
      s->c.vres = mpx__vres_fail(count, rc, mpx_strerror(rc));
    else
      it->free_slots[it->nfree++] = (size_t)(s - it->slots);
    mpx__future_fail(f, rc, mpx__strdupf("map chunk %zu was not queued: %s", k, mpx_strerror(rc)));
    mpx__future_drop(f);
    return rc;
  }
  mpx__future_drop(f);
  if (!it->unordered)
    it->order[(it->order_head + it->order_n++) % it->window] = (size_t)(s - it->slots);
  return MPX_OK;
}

/* Submit chunks while slots are free; the first failure is kept and ends submission. */
static void refill(struct mpx_imap_iter *it) {
  while (!it->submit_rc && it->nfree && it->next_chunk < it->nchunks) {
    int rc = submit_next(it);
    if (rc) {
      it->submit_rc = rc;
      it->submit_msg = mpx__strdupf("%s", mpx_errmsg());
    }
  }
}

/* Start an iterator; `cap` bounds the default chunk size. */
static int imap_start(mpx_executor *ex, const char *task, const void *items, size_t item_size,
                      const mpx_bytes *list, size_t n, const mpx_imap_opts *o, size_t cap,
                      mpx_imap_iter **out) {
  static const mpx_imap_opts dflt;
  if (!o) o = &dflt;
  if (!out) return mpx__map_einval("mpx_imap: out is NULL");
  *out = NULL;
  if (!ex) return mpx__map_einval("mpx_imap: the executor is NULL");
  if (n && !list && !items && item_size)
    return mpx__map_einval("mpx_imap: items is NULL with n > 0");
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  for (size_t i = 0; list && i < n; i++)
    if (!list[i].data && list[i].len) {
      mpx__set_errmsg("mpx_imap_var: item %zu has data NULL and len %zu", i, list[i].len);
      return MPX_EINVAL;
    }
  if (!list && item_size && n > SIZE_MAX / item_size) {
    mpx__set_errmsg("mpx_imap: n (%zu) * item_size (%zu) overflows size_t", n, item_size);
    return MPX_EINVAL;
  }
  struct mpx_imap_iter *it = calloc(1, sizeof *it);
  if (!it) return MPX_ENOMEM;
  *it = (struct mpx_imap_iter){.ex = ex,
                               .t = t,
                               .base = items,
                               .item_size = item_size,
                               .list = list,
                               .n = n,
                               .unordered = o->unordered,
                               .borrow = o->borrow};
  it->chunk = n ? mpx__map_chunk_of(ex, n, o->chunksize, cap) : 1;
  it->nchunks = n / it->chunk + (n % it->chunk != 0);
  size_t w = o->max_inflight ? o->max_inflight / it->chunk : 8 * (size_t)mpx__executor_slots(ex);
  it->window = w < 1 ? 1 : w > it->nchunks ? (it->nchunks ? it->nchunks : 1) : w;
  pthread_mutex_init(&it->lock, NULL);
  pthread_cond_init(&it->cond, NULL);
  it->slots = calloc(it->window, sizeof *it->slots);
  it->free_slots = calloc(it->window, sizeof(size_t));
  it->order = calloc(it->window, sizeof(size_t));
  it->done = calloc(it->window, sizeof(size_t));
  if (!it->slots || !it->free_slots || !it->order || !it->done) {
    mpx_imap_destroy(it);
    mpx__set_errmsg("no memory for a map of %zu chunks in flight", it->window);
    return MPX_ENOMEM;
  }
  for (size_t i = 0; i < it->window; i++) it->free_slots[it->nfree++] = it->window - 1 - i;
  refill(it);
  if (it->submit_rc && it->next_chunk == 1) { /* nothing could be queued: say so now */
    rc = it->submit_rc;
    mpx__set_errmsg("%s", it->submit_msg ? it->submit_msg : mpx_strerror(rc));
    mpx_imap_destroy(it);
    return rc;
  }
  *out = it;
  return MPX_OK;
}

int mpx_imap(mpx_executor *ex, const char *task, const void *items, size_t item_size, size_t n,
             const mpx_imap_opts *opts, mpx_imap_iter **out) {
  return imap_start(ex, task, items, item_size, NULL, n, opts, IMAP_CHUNK_MAX, out);
}

int mpx_imap_var(mpx_executor *ex, const char *task, const mpx_bytes *items, size_t n,
                 const mpx_imap_opts *opts, mpx_imap_iter **out) {
  if (!items && n) return mpx__map_einval("mpx_imap_var: items is NULL with n > 0");
  static const mpx_bytes none[1];
  return imap_start(ex, task, NULL, 0, items ? items : none, n, opts, IMAP_CHUNK_MAX, out);
}

/* An item's error message, with where it ran (worker), unless it says so already. */
static const char *item_message(const mpx__vres *v, const mpx__vent *e, size_t index) {
  const char *m = (const char *)v->bytes + e->off;
  if (v->worker >= 0 && !strstr(m, "(worker"))
    snprintf(item_msg, sizeof item_msg, "%s (item %zu, worker %d)", m, index, v->worker);
  else
    snprintf(item_msg, sizeof item_msg, "%s (item %zu)", m, index);
  return item_msg;
}

/* The chunk in s is done: make sure it has per-item outcomes (a chunk that failed whole gives
 * every item its code and message). */
static int settle(islot *s) {
  if (s->c.vres) return MPX_OK;
  int code;
  const char *msg;
  int rc = mpx_future_exception(s->f, 0, &code, &msg);
  if (rc == MPX_ECANCELLED)
    code = rc, msg = mpx_strerror(rc);
  else if (rc)
    return rc;
  else if (!code)
    code = MPX_EPROTO, msg = "map chunk finished without results";
  if (!(s->c.vres = mpx__vres_fail(s->c.count, code, msg))) return MPX_ENOMEM;
  return MPX_OK;
}

static void slot_clear(struct mpx_imap_iter *it, islot *s) {
  if (s->f) mpx_future_release(s->f);
  mpx__vres_free(s->c.vres);
  free(s->copy);
  *s = (islot){0};
  it->free_slots[it->nfree++] = (size_t)(s - it->slots);
}

/* Wait (up to the deadline, 0: none, or poll) for the next done chunk; it becomes it->cur. */
static int next_chunk(struct mpx_imap_iter *it, double timeout) {
  if (!it->unordered) {
    if (!it->order_n) return MPX_EEMPTY;
    islot *s = &it->slots[it->order[it->order_head]];
    int rc = mpx_future_exception(s->f, timeout, NULL, NULL);
    if (rc && rc != MPX_ECANCELLED) return rc;
    it->order_head = (it->order_head + 1) % it->window;
    it->order_n--;
    it->cur = s;
    return MPX_OK;
  }
  pthread_mutex_lock(&it->lock);
  struct timespec ts;
  bool timed = timeout >= 0;
  if (timed) {
    clock_gettime(CLOCK_REALTIME, &ts);
    double end = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + timeout;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
  }
  int rc = MPX_OK;
  while (!it->done_n) {
    if (it->callbacks_run == it->callbacks_due) { /* nothing in flight */
      rc = MPX_EEMPTY;
      break;
    }
    if (timed && pthread_cond_timedwait(&it->cond, &it->lock, &ts)) {
      if (!it->done_n) rc = MPX_ETIMEDOUT;
      break;
    }
    if (!timed) pthread_cond_wait(&it->cond, &it->lock);
  }
  if (!rc) {
    it->cur = &it->slots[it->done[it->done_head]];
    it->done_head = (it->done_head + 1) % it->window;
    it->done_n--;
  }
  pthread_mutex_unlock(&it->lock);
  return rc;
}

int mpx_imap_next(mpx_imap_iter *it, double timeout, mpx_map_item *item) {
  if (!it || !item) return mpx__map_einval("mpx_imap_next: the iterator or item is NULL");
  if (isnan(timeout)) return mpx__map_einval("mpx_imap_next: timeout is NaN");
  if (isinf(timeout)) timeout = MPX_FOREVER;
  if (it->cur && it->cur->taken == it->cur->c.count) {
    slot_clear(it, it->cur);
    it->cur = NULL;
  }
  if (!it->cur) {
    refill(it);
    int rc = next_chunk(it, timeout);
    if (rc == MPX_EEMPTY && it->submit_rc) { /* what could not be queued ends the map */
      rc = it->submit_rc;
      mpx__set_errmsg("map stopped after %zu of %zu items: %s", it->yielded, it->n,
                      it->submit_msg ? it->submit_msg : mpx_strerror(rc));
      return rc;
    }
    if (rc) {
      if (rc == MPX_ETIMEDOUT) mpx__set_errmsg("mpx_imap_next: no result within %g s", timeout);
      return rc;
    }
    if ((rc = settle(it->cur))) return rc;
  }
  islot *s = it->cur;
  const mpx__vent *e = &s->c.vres->ent[s->taken];
  const uint8_t *bytes = s->c.vres->bytes + e->off;
  *item = (mpx_map_item){.index = s->first + s->taken, .code = e->code};
  if (e->code) {
    item->message = item_message(s->c.vres, e, item->index);
  } else {
    item->data = e->len ? bytes : NULL;
    item->len = e->len;
    item->message = "";
  }
  s->taken++;
  it->yielded++;
  return MPX_OK;
}

int mpx_imap_destroy(mpx_imap_iter *it) {
  if (!it) return mpx__map_einval("mpx_imap_destroy: the iterator is NULL");
  /* cancel what has not started, then wait for the rest and for every callback */
  for (size_t i = 0; it->slots && i < it->window; i++)
    if (it->slots[i].f) mpx_future_cancel(it->slots[i].f);
  for (size_t i = 0; it->slots && i < it->window; i++)
    if (it->slots[i].f) mpx_future_exception(it->slots[i].f, MPX_FOREVER, NULL, NULL);
  pthread_mutex_lock(&it->lock);
  while (it->callbacks_run != it->callbacks_due) pthread_cond_wait(&it->cond, &it->lock);
  pthread_mutex_unlock(&it->lock);
  for (size_t i = 0; it->slots && i < it->window; i++)
    if (it->slots[i].f || it->slots[i].copy || it->slots[i].c.vres) slot_clear(it, &it->slots[i]);
  pthread_mutex_destroy(&it->lock);
  pthread_cond_destroy(&it->cond);
  free(it->slots);
  free(it->free_slots);
  free(it->order);
  free(it->done);
  free(it->submit_msg);
  free(it);
  return MPX_OK;
}

/* ---- mpx_map_var: every chunk at once, every outcome kept --------------------------------- */

int mpx_results_free(mpx_results *r) {
  if (!r) return mpx__map_einval("mpx_results_free: the results are NULL");
  for (size_t i = 0; i < r->nchunks; i++) mpx__vres_free(r->v[i]);
  free(r->v);
  free(r);
  return MPX_OK;
}

int mpx_results_get(const mpx_results *r, size_t i, const void **data, size_t *len,
                    const char **message) {
  if (data) *data = NULL;
  if (len) *len = 0;
  if (message) *message = "";
  if (!r) return mpx__map_einval("mpx_results_get: the results are NULL");
  if (i >= r->n) {
    mpx__set_errmsg("mpx_results_get: item %zu of a map of %zu items", i, r->n);
    return MPX_EINVAL;
  }
  const mpx__vres *v = r->v[i / r->chunk];
  const mpx__vent *e = &v->ent[i % r->chunk];
  if (e->code) {
    if (message) *message = item_message(v, e, i);
    return e->code;
  }
  if (data) *data = e->len ? v->bytes + e->off : NULL;
  if (len) *len = e->len;
  return MPX_OK;
}

size_t mpx_results_count(const mpx_results *r) { return r ? r->n : 0; }

int mpx_map_var(mpx_executor *ex, const char *task, const mpx_bytes *items, size_t n,
                const mpx_map_opts *opts, mpx_results **out) {
  mpx_map_status *st = opts ? opts->status : NULL;
  if (st) *st = (mpx_map_status){.failed_index = n};
  if (!out) return mpx__map_einval("mpx_map_var: out is NULL");
  *out = NULL;
  if (!items && n) return mpx__map_einval("mpx_map_var: items is NULL with n > 0");
  double timeout = opts ? opts->timeout : 0;
  if (isnan(timeout)) return mpx__map_einval("mpx_map_var: timeout is NaN");
  double deadline = timeout > 0 && !isinf(timeout) ? mpx__now() + timeout : 0;
  static const mpx_bytes none[1];
  mpx_imap_iter *it;
  mpx_imap_opts io = {.chunksize = opts ? opts->chunksize : 0};
  /* chunks and window as imap's: the items are copied (and their results parsed) a few chunks
   * at a time, in small blocks the allocator reuses, while earlier results are collected */
  int rc = imap_start(ex, task, NULL, 0, items ? items : none, n, &io, IMAP_CHUNK_MAX, &it);
  if (rc) return rc;
  mpx_results *r = calloc(1, sizeof *r);
  if (r) *r = (mpx_results){.n = n, .chunk = it->chunk, .nchunks = it->nchunks};
  if (!r || !(r->v = calloc(it->nchunks ? it->nchunks : 1, sizeof *r->v))) {
    free(r);
    mpx_imap_destroy(it);
    mpx__set_errmsg("no memory for the results of %zu map chunks", it->nchunks);
    return MPX_ENOMEM;
  }
  for (size_t k = 0; k < it->nchunks && !rc; k++) {
    refill(it); /* the slots taken so far are free again */
    double left = deadline ? deadline - mpx__now() : MPX_FOREVER;
    if ((rc = next_chunk(it, deadline && left < 0 ? 0 : left)) == MPX_EEMPTY)
      rc = it->submit_rc ? it->submit_rc : MPX_EPROTO; /* (never: a chunk is always queued) */
    if (!rc && !(rc = settle(it->cur))) {
      r->v[k] = it->cur->c.vres; /* ordered: chunk k */
      it->cur->c.vres = NULL;
      slot_clear(it, it->cur);
      it->cur = NULL;
    }
  }
  if (rc == MPX_ETIMEDOUT)
    mpx__set_errmsg("mpx_map_var: not done within %g s", timeout);
  else if (rc && it->submit_msg)
    mpx__set_errmsg("%s", it->submit_msg);
  if (rc && st) st->code = rc;
  mpx_imap_destroy(it);
  if (rc) {
    mpx_results_free(r);
    return rc;
  }
  *out = r;
  for (size_t i = 0; i < n; i++) { /* the first failure, in item order */
    const char *m;
    int c = mpx_results_get(r, i, NULL, NULL, &m);
    if (!c) continue;
    if (st) {
      st->failed_index = i;
      st->code = c;
      snprintf(st->message, sizeof st->message, "%s", m);
    }
    return c;
  }
  return MPX_OK;
}
