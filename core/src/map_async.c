/* map_async.c: the maps as futures: mpx_map_async (fixed-size items and results, in place) and
 * mpx_map_var_async (variable-size, results in an mpx_results). Every chunk is queued at once;
 * each chunk future has a done-callback that counts down, and the last one (on whichever thread
 * completes it) settles the whole map and completes its future. No helper thread: nothing runs
 * after the last chunk's callback returns.
 *
 * Locking: none; one atomic count per map (the submitter holds one until every chunk is queued,
 * so the count cannot reach 0 while chunks are still being queued). acq_rel on it makes every
 * chunk's results visible to the callback that finishes the map. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "executor_impl.h"
#include "future_impl.h"
#include "map_impl.h"
#include "task_impl.h"
#include "vchunk.h"

/* ---- mpx_map_async: mpx_map as a future ---------------------------------------------------- */

typedef struct async_map {
  _Atomic size_t left; /* chunks not done, + 1 while the submitter queues them */
  mpx_future *whole;
  mpx__map_chunk *chunks;
  mpx_future **fs;
  size_t nchunks, submitted, chunk;
  int submit_rc;
} async_map;

static void async_finish(async_map *a) {
  int rc = MPX_OK;
  char *msg = NULL;
  for (size_t i = 0; i < a->submitted && !rc; i++) {
    mpx_future *f = a->fs[i];
    uint32_t s = mpx__future_state(f);
    if (s == MPX_CANCELLED) {
      rc = MPX_ECANCELLED;
      msg = mpx__strdupf("map chunk of items %zu.. was cancelled", i * a->chunk);
    } else if (s == MPX_FAILED) {
      rc = f->error;
      msg = mpx__strdupf("item %zu: %s", i * a->chunk + a->chunks[i].failed,
                         f->errmsg ? f->errmsg : mpx_strerror(rc));
    }
  }
  if (!rc && a->submitted < a->nchunks) {
    rc = a->submit_rc;
    msg = mpx__strdupf("only %zu of %zu map chunks could be queued: %s", a->submitted, a->nchunks,
                       mpx_strerror(rc));
  }
  for (size_t i = 0; i < a->submitted; i++) mpx_future_release(a->fs[i]);
  mpx_future *whole = a->whole;
  free(a->chunks);
  free(a->fs);
  free(a);
  if (rc)
    mpx__future_fail(whole, rc, msg);
  else
    mpx__future_finish_copy(whole, NULL, 0);
  mpx__future_drop(whole);
}

static int async_chunk_done(mpx_future *f, void *arg) {
  (void)f;
  async_map *a = arg;
  if (atomic_fetch_sub_explicit(&a->left, 1, memory_order_acq_rel) == 1) async_finish(a);
  return 0;
}

/* Queue chunk future `f` (it holds the map's chunk through f->owner) and have done(f, arg) run
 * once it completes: at once if it already did, or here after waiting for it when no callback
 * node could be allocated. On success the future goes to *slot and *left counts it; otherwise
 * the submit's code is returned and nothing was queued. */
static int queue_chunk(mpx_executor *ex, mpx_future *f, mpx_done_fn done, void *arg,
                       mpx_future **slot, _Atomic size_t *left) {
  atomic_fetch_or_explicit(&f->state, MPX__F_CHUNK, memory_order_relaxed);
  mpx__future_hold(f);
  int rc = mpx__executor_submit(ex, f);
  if (rc) {
    mpx__future_drop(f);
    return rc;
  }
  *slot = f;
  atomic_fetch_add_explicit(left, 1, memory_order_relaxed);
  rc = mpx_future_add_done_callback(f, done, arg); /* at once if done already */
  mpx__future_drop(f);
  if (rc && rc != MPX_ECALLBACK) { /* no memory for the callback: wait for it here */
    mpx_future_exception(f, MPX_FOREVER, NULL, NULL);
    done(f, arg);
  }
  return MPX_OK;
}

int mpx_map_async(mpx_executor *ex, const char *task, const void *items, size_t item_size, size_t n,
                  void *results, size_t result_size, const mpx_map_opts *opts, mpx_future **out) {
  if (!out) return mpx__map_einval("mpx_map_async: out is NULL");
  *out = NULL;
  if (!ex) return mpx__map_einval("mpx_map_async: the executor is NULL");
  if ((!items && n && item_size) || (!results && n && result_size))
    return mpx__map_einval("mpx_map_async: items or results is NULL with n > 0");
  if (opts && opts->timeout > 0 && !isinf(opts->timeout))
    return mpx__map_einval("mpx_map_async: no timeout (wait on the future with one)");
  size_t bytes;
  if (__builtin_mul_overflow(n, item_size, &bytes) ||
      __builtin_mul_overflow(n, result_size, &bytes))
    return mpx__map_einval("mpx_map_async: n * item_size or n * result_size overflows size_t");
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  size_t chunk = n ? mpx__map_chunk_of(ex, n, opts ? opts->chunksize : 0, 0) : 1;
  if (mpx__executor_encodes(ex) && (chunk * item_size > mpx__executor_max_payload(ex) ||
                                    chunk * result_size > mpx__executor_max_payload(ex))) {
    mpx__set_errmsg("a map chunk of %zu items exceeds max_payload: lower chunksize", chunk);
    return MPX_ETOOBIG;
  }
  async_map *a = calloc(1, sizeof *a);
  mpx_future *whole = mpx__future_new(t, NULL, 0, MPX__ARG_BORROW);
  size_t nch = n / chunk + (n % chunk != 0);
  if (a) *a = (async_map){.whole = whole, .nchunks = nch, .chunk = chunk};
  if (!a || !whole || !(a->chunks = calloc(nch ? nch : 1, sizeof *a->chunks)) ||
      !(a->fs = calloc(nch ? nch : 1, sizeof *a->fs))) {
    if (a) free(a->chunks), free(a);
    if (whole) mpx_future_release(whole), mpx__future_drop(whole);
    mpx__set_errmsg("no memory for a map of %zu chunks", nch);
    return MPX_ENOMEM;
  }
  mpx__future_start(whole); /* running until its last chunk is done */
  atomic_init(&a->left, 1);
  const unsigned char *in = items;
  unsigned char *res = results;
  for (size_t i = 0; i < nch; i++) {
    size_t first = i * chunk, count = n - first < chunk ? n - first : chunk;
    a->chunks[i] = (mpx__map_chunk){.items = in ? in + first * item_size : NULL,
                                    .results = res ? res + first * result_size : NULL,
                                    .count = count,
                                    .item_size = item_size,
                                    .result_size = result_size};
    mpx_future *f = mpx__future_new(t, NULL, 0, MPX__ARG_BORROW);
    if (!f) {
      a->submit_rc = MPX_ENOMEM;
      break;
    }
    f->arg = a->chunks[i].items;
    f->arg_len = count * item_size;
    f->owner = &a->chunks[i];
    if ((rc = queue_chunk(ex, f, async_chunk_done, a, &a->fs[a->submitted], &a->left))) {
      a->submit_rc = rc;
      break;
    }
    a->submitted++;
  }
  *out = whole; /* the caller's reference; async_finish drops the scheduler's */
  if (atomic_fetch_sub_explicit(&a->left, 1, memory_order_acq_rel) == 1) async_finish(a);
  return MPX_OK;
}

/* ---- mpx_map_var_async: every chunk queued at once, the last one done builds the results --- */

typedef struct var_async {
  _Atomic size_t left; /* chunks not done, + 1 while the submitter queues them */
  mpx_future *whole;
  mpx__map_chunk *chunks;
  mpx_future **fs;
  void **copies; /* each chunk's encoded items */
  size_t n, chunk, nchunks, submitted;
  int submit_rc;
} var_async;

static void var_async_finish(var_async *a) {
  mpx_results *r = calloc(1, sizeof *r);
  if (r) *r = (mpx_results){.n = a->n, .chunk = a->chunk, .nchunks = a->nchunks};
  if (r && !(r->v = calloc(a->nchunks ? a->nchunks : 1, sizeof *r->v))) r = (free(r), NULL);
  for (size_t i = 0; r && i < a->nchunks; i++) {
    mpx__map_chunk *c = &a->chunks[i];
    if (i < a->submitted && c->vres) {
      r->v[i] = c->vres;
      c->vres = NULL;
    } else if (i < a->submitted) { /* failed whole: cancelled, lost, ... */
      int code;
      const char *msg;
      int rc = mpx_future_exception(a->fs[i], 0, &code, &msg);
      if (rc) code = rc, msg = mpx_strerror(rc);
      r->v[i] = mpx__vres_fail(c->count, code ? code : MPX_EPROTO, msg);
    } else {
      r->v[i] = mpx__vres_fail(c->count, a->submit_rc, "the map's chunk could not be queued");
    }
    if (!r->v[i]) r = (mpx_results_free(r), NULL);
  }
  for (size_t i = 0; i < a->nchunks; i++) {
    if (i < a->submitted) mpx_future_release(a->fs[i]);
    mpx__vres_free(a->chunks[i].vres);
    free(a->copies[i]);
  }
  mpx_future *whole = a->whole;
  free(a->chunks);
  free(a->fs);
  free(a->copies);
  free(a);
  if (r)
    mpx__future_finish_copy(whole, &r, sizeof r);
  else
    mpx__future_fail(whole, MPX_ENOMEM, mpx__strdupf("no memory for the map's results"));
  mpx__future_drop(whole);
}

static int var_async_chunk_done(mpx_future *f, void *arg) {
  (void)f;
  var_async *a = arg;
  if (atomic_fetch_sub_explicit(&a->left, 1, memory_order_acq_rel) == 1) var_async_finish(a);
  return 0;
}

int mpx_map_var_async(mpx_executor *ex, const char *task, const mpx_bytes *items, size_t n,
                      const mpx_map_opts *opts, mpx_future **out) {
  if (!out) return mpx__map_einval("mpx_map_var_async: out is NULL");
  *out = NULL;
  if (!ex) return mpx__map_einval("mpx_map_var_async: the executor is NULL");
  if (!items && n) return mpx__map_einval("mpx_map_var_async: items is NULL with n > 0");
  if (opts && opts->timeout > 0 && !isinf(opts->timeout))
    return mpx__map_einval("mpx_map_var_async: no timeout (wait on the future with one)");
  for (size_t i = 0; i < n; i++)
    if (!items[i].data && items[i].len) {
      mpx__set_errmsg("mpx_map_var_async: item %zu has data NULL and len %zu", i, items[i].len);
      return MPX_EINVAL;
    }
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  size_t chunk = n ? mpx__map_chunk_of(ex, n, opts ? opts->chunksize : 0, IMAP_CHUNK_MAX) : 1;
  size_t nch = n / chunk + (n % chunk != 0);
  var_async *a = calloc(1, sizeof *a);
  mpx_future *whole = mpx__future_new(t, NULL, 0, MPX__ARG_BORROW);
  if (a) *a = (var_async){.whole = whole, .n = n, .chunk = chunk, .nchunks = nch};
  if (!a || !whole || !(a->chunks = calloc(nch ? nch : 1, sizeof *a->chunks)) ||
      !(a->fs = calloc(nch ? nch : 1, sizeof *a->fs)) ||
      !(a->copies = calloc(nch ? nch : 1, sizeof *a->copies))) {
    if (a) free(a->chunks), free(a->fs), free(a);
    if (whole) mpx_future_release(whole), mpx__future_drop(whole);
    mpx__set_errmsg("no memory for a map of %zu chunks", nch);
    return MPX_ENOMEM;
  }
  mpx__future_start(whole); /* running until its last chunk is done */
  atomic_init(&a->left, 1);
  for (size_t i = 0; i < nch; i++) /* every chunk's count: those not queued fail item by item */
    a->chunks[i] = (mpx__map_chunk){.count = n - i * chunk < chunk ? n - i * chunk : chunk,
                                    .var = MPX__VAR_ITEMS | MPX__VAR_RESULTS};
  for (size_t i = 0; i < nch; i++) {
    size_t first = i * chunk, count = a->chunks[i].count, len = 0;
    mpx_future *f = NULL;
    if ((rc = mpx__vchunk_pack_items(items + first, count, &a->copies[i], &len)) ||
        (mpx__executor_encodes(ex) && len > mpx__executor_max_payload(ex) && (rc = MPX_ETOOBIG)) ||
        (!(f = mpx__future_new(t, NULL, 0, MPX__ARG_BORROW)) && (rc = MPX_ENOMEM))) {
      a->submit_rc = rc;
      break;
    }
    f->arg = a->copies[i];
    f->arg_len = len;
    f->owner = &a->chunks[i];
    if ((rc = queue_chunk(ex, f, var_async_chunk_done, a, &a->fs[a->submitted], &a->left))) {
      a->submit_rc = rc;
      break;
    }
    a->submitted++;
  }
  *out = whole; /* the caller's reference; var_async_finish drops the scheduler's */
  if (atomic_fetch_sub_explicit(&a->left, 1, memory_order_acq_rel) == 1) var_async_finish(a);
  return MPX_OK;
}
