/* task.c: the task registry (name -> function, wire id = FNV-1a of the name) and the helpers a
 * task uses to write its result or fail.
 *
 * Registration normally happens in constructors before main(), but takes a mutex so that late or
 * concurrent registration is safe. Lookups read an open-addressed table without the lock: slots
 * are published with release stores and never removed, so a reader sees either nothing or a
 * complete entry. The table is one of the two pieces of global state mpx keeps (with the topology
 * cache). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "task_impl.h"

#define MPX__TASK_SLOTS 4096 /* power of two; registries are small */

static struct {
  pthread_mutex_t lock;
  mpx_task entries[MPX__TASK_SLOTS];
  _Atomic(const mpx_task *) by_id[MPX__TASK_SLOTS];
  int count;
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

uint32_t mpx__task_hash(const char *name) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
  return h;
}

static bool name_ok(const char *name) {
  if (!name || !*name) return false;
  return strnlen(name, MPX_TASK_NAME_MAX + 1) <= MPX_TASK_NAME_MAX;
}

int mpx_task_register(const char *name, mpx_task_fn fn) {
  if (!name_ok(name) || !fn) return MPX_EINVAL;
  uint32_t id = mpx__task_hash(name);
  int rc = MPX_OK;
  pthread_mutex_lock(&registry.lock);
  if (registry.count >= MPX__TASK_SLOTS / 2) {
    rc = MPX_ENOMEM; /* keep the table at most half full so probes stay short */
    goto out;
  }
  size_t i = id & (MPX__TASK_SLOTS - 1);
  for (const mpx_task *e; (e = atomic_load_explicit(&registry.by_id[i], memory_order_relaxed));
       i = (i + 1) & (MPX__TASK_SLOTS - 1)) {
    if (e->id == id) { /* same name, or two names with one hash: both are refused */
      rc = MPX_EEXIST;
      goto out;
    }
  }
  mpx_task *t = &registry.entries[registry.count++];
  *t = (mpx_task){.name = name, .id = id, .fn = fn};
  /* release: a lock-free reader that sees the pointer sees the filled entry */
  atomic_store_explicit(&registry.by_id[i], t, memory_order_release);
out:
  pthread_mutex_unlock(&registry.lock);
  return rc;
}

int mpx_task_find_id(uint32_t id, const mpx_task **out) {
  if (!out) return MPX_EINVAL;
  size_t i = id & (MPX__TASK_SLOTS - 1);
  for (const mpx_task *e; (e = atomic_load_explicit(&registry.by_id[i], memory_order_acquire));
       i = (i + 1) & (MPX__TASK_SLOTS - 1)) {
    if (e->id == id) {
      *out = e;
      return MPX_OK;
    }
  }
  *out = NULL;
  return MPX_ENOTASK;
}

int mpx_task_find(const char *name, const mpx_task **out) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!name) {
    mpx__set_errmsg("task name is NULL");
    return MPX_EINVAL;
  }
  const mpx_task *t = NULL;
  if (!name_ok(name) || mpx_task_find_id(mpx__task_hash(name), &t) || strcmp(t->name, name)) {
    mpx__set_errmsg("no task is registered as '%.*s'%s", MPX_TASK_NAME_MAX, name,
                    name_ok(name) ? "" : " (not a valid name: 1 to 127 characters)");
    return MPX_ENOTASK;
  }
  *out = t;
  return MPX_OK;
}

char *mpx__strdupf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  return s;
}

int mpx_task_fail(mpx_task_ctx *ctx, int code, const char *fmt, ...) {
  if (code >= 0) code = MPX_ETASK;
  if (!ctx) return code;
  ctx->code = code;
  free(ctx->message);
  ctx->message = NULL;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&ctx->message, fmt, ap) < 0) ctx->message = NULL;
    va_end(ap);
  }
  return code;
}

int mpx_task_worker(const mpx_task_ctx *ctx) { return ctx ? ctx->worker : -1; }

void mpx__buf_init(mpx_buf *b, void *small, size_t small_cap, size_t max) {
  *b = (mpx_buf){.data = small, .cap = small ? small_cap : 0, .small = small,
                 .small_cap = small ? small_cap : 0, .max = max, .seg = MPX__SEG_NONE};
}

/* Move b's bytes into a segment of `len` bytes (len >= b->seg_min): one of the worker's
 * recycled result segments when it has one free (os/seg.h). */
static int buf_to_seg(mpx_buf *b, size_t len) {
  mpx__seg s;
  int rc = mpx__seg_result_create(&s, len);
  if (rc) return rc;
  if (b->len) memcpy(s.data, b->data, b->len < len ? b->len : len);
  if (b->heap) mpx__seg_pool_free(b->data, b->cap); /* it may be a pool block */
  b->heap = false;
  b->seg = s;
  b->in_seg = true;
  b->data = s.data;
  b->cap = len;
  return MPX_OK;
}

int mpx__buf_take_seg(mpx_buf *b, mpx__seg *out) {
  if (!b->in_seg || !b->len) return MPX_EINVAL;
  int rc = mpx__seg_resize(&b->seg, b->len);
  if (!rc) rc = mpx__seg_seal(&b->seg);
  if (rc) return rc;
  *out = b->seg;
  b->seg = MPX__SEG_NONE;
  b->in_seg = false;
  b->data = b->small;
  b->cap = b->small_cap;
  b->len = 0;
  return MPX_OK;
}

int mpx_buf_reserve(mpx_buf *b, size_t len, void **data) {
  if (!b) return MPX_EINVAL;
  if (b->max && len > b->max) return MPX_ETOOBIG;
  if (len > b->cap && b->in_seg) {
    int rc = mpx__seg_resize(&b->seg, len);
    if (rc) return rc;
    b->data = b->seg.data;
    b->cap = len;
  } else if (len > b->cap && b->seg_min && len >= b->seg_min) {
    int rc = buf_to_seg(b, len);
    if (rc) return rc;
  } else if (len > b->cap && (len >= MPX__SEG_MIN || (b->heap && b->cap >= MPX__SEG_MIN))) {
    /* big: a block of the result pool (os/seg.h), warm when one was given back, not a fresh
     * mapping of glibc's; never realloc'd (it may be a pool block) */
    void *p = mpx__seg_pool_alloc(len);
    if (!p) return MPX_ENOMEM;
    if (b->heap) {
      memcpy(p, b->data, b->len < len ? b->len : len);
      mpx__seg_pool_free(b->data, b->cap);
    }
    b->data = p;
    b->cap = len;
    b->heap = true;
  } else if (len > b->cap) {
    void *p = b->heap ? realloc(b->data, len) : malloc(len);
    if (!p) return MPX_ENOMEM;
    b->data = p;
    b->cap = len;
    b->heap = true;
  }
  b->len = len;
  if (data) *data = b->data;
  return MPX_OK;
}

int mpx_buf_set(mpx_buf *b, const void *data, size_t len) {
  if (!b || (!data && len)) return MPX_EINVAL;
  void *dst;
  int rc = mpx_buf_reserve(b, len, &dst);
  if (rc) return rc;
  if (len) memmove(dst, data, len);
  return MPX_OK;
}

int mpx_buf_get(const mpx_buf *b, void **data, size_t *len) {
  if (!b) return MPX_EINVAL;
  if (data) *data = b->data;
  if (len) *len = b->len;
  return MPX_OK;
}

void *mpx__buf_steal(mpx_buf *b) {
  if (!b->heap) return NULL;
  void *p = b->data;
  b->heap = false;
  b->data = b->small;
  b->cap = b->small_cap;
  return p;
}

void mpx__buf_release(mpx_buf *b) {
  if (b->heap) mpx__seg_pool_free(b->data, b->cap); /* a pool block, or the heap's */
  if (b->in_seg) mpx__seg_free(&b->seg);
  size_t seg_min = b->seg_min;
  mpx__buf_init(b, b->small, b->small_cap, b->max);
  b->seg_min = seg_min;
}

int mpx__task_run(const mpx_task *t, int worker, const void *arg, size_t len, mpx_buf *out,
                  char **message) {
  mpx_task_ctx ctx = {.worker = worker, .stop = &mpx__tl_stop};
  int rc = t->fn(&ctx, arg, len, out);
  if (rc > 0) rc = MPX_ETASK; /* a positive return is a bug in the task: report, don't trust */
  if (rc == 0 && ctx.code) rc = ctx.code; /* failed but returned 0 */
  if (rc == 0) {
    free(ctx.message);
    return 0;
  }
  if (message)
    *message = ctx.message ? ctx.message
                           : mpx__strdupf("task '%s' failed: %s", t->name, mpx_strerror(rc));
  else
    free(ctx.message);
  return rc;
}
