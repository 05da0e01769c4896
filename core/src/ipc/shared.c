/* shared.c: Value and Array (see ipc_shared.h). One layout serves both: a header, an optional
 * recursive robust mutex, the element size and count, then the bytes (max-aligned). A Value is
 * an Array of one element with its own magic, so neither handle can be passed for the other.
 * No atomics: every access to the bytes goes through the lock, or is the caller's business when
 * the object was created without one. */
#include <stdalign.h>
#include <string.h>

#include "mpx/ipc_shared.h"
#include "shm.h"

#define MAX_BYTES ((size_t)1 << 30)

typedef struct block {
  mpx__shm_hdr h;
  pthread_mutex_t m;
  bool has_lock;
  size_t elem;
  size_t count;
  alignas(max_align_t) unsigned char data[];
} block;

struct mpx_value {
  block b;
};
struct mpx_array {
  block b;
};

static int block_create(block **out, uint32_t magic, size_t elem, size_t count, const void *init,
                        bool lock) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (elem == 0 || count == 0 || count > MAX_BYTES / elem) return MPX_EINVAL;
  block *b = mpx__shm_alloc(sizeof *b + elem * count, magic);
  if (!b) return MPX_ENOMEM;
  if (lock) {
    int rc = mpx__mutex_init(&b->m, true);
    if (rc) {
      mpx__shm_free(b);
      return rc;
    }
  }
  b->has_lock = lock;
  b->elem = elem;
  b->count = count;
  if (init) memcpy(b->data, init, elem * count);
  *out = b;
  return MPX_OK;
}

/* Lock if there is a lock: 0, MPX_EOWNERDEAD (held), MPX_ETIMEDOUT. */
static int b_lock(block *b, double timeout) {
  if (!b->has_lock) return MPX_OK;
  struct timespec ts;
  return mpx__mutex_lock(&b->m, mpx__deadline(timeout, &ts));
}

static void b_unlock(block *b) {
  if (b->has_lock) mpx__mutex_unlock(&b->m);
}

/* Copy n elements at start, in (to shared) or out, under the lock. */
static int b_copy(block *b, size_t start, size_t n, void *buf, bool in) {
  if (!buf || start >= b->count || n > b->count - start || n == 0) return MPX_EINVAL;
  int rc = b_lock(b, -1);
  if (rc && rc != MPX_EOWNERDEAD) return rc;
  if (in)
    memcpy(b->data + start * b->elem, buf, n * b->elem);
  else
    memcpy(buf, b->data + start * b->elem, n * b->elem);
  b_unlock(b);
  return rc; /* 0, or MPX_EOWNERDEAD: done, but a holder died before */
}

static int b_user_lock(block *b, double timeout) {
  if (!b->has_lock) return MPX_EPERM;
  return b_lock(b, timeout);
}

static int b_user_unlock(block *b) {
  if (!b->has_lock) return MPX_EPERM;
  return mpx__mutex_unlock_owned(&b->m);
}

#define VAL_OK(v) mpx__shm_check((v), MPX__MAGIC_VALUE)
#define ARR_OK(a) mpx__shm_check((a), MPX__MAGIC_ARRAY)

int mpx_value_create(mpx_value **v, size_t size, const void *init, bool lock) {
  return block_create((block **)v, MPX__MAGIC_VALUE, size, 1, init, lock);
}
int mpx_value_get(mpx_value *v, void *dst, size_t size) {
  if (!VAL_OK(v)) return MPX_EINVAL;
  if (size != v->b.elem) return MPX_ESIZE;
  return b_copy(&v->b, 0, 1, dst, false);
}
int mpx_value_set(mpx_value *v, const void *src, size_t size) {
  if (!VAL_OK(v)) return MPX_EINVAL;
  if (size != v->b.elem) return MPX_ESIZE;
  return b_copy(&v->b, 0, 1, (void *)src, true);
}
int mpx_value_lock(mpx_value *v, double timeout) {
  return VAL_OK(v) ? b_user_lock(&v->b, timeout) : MPX_EINVAL;
}
int mpx_value_unlock(mpx_value *v) { return VAL_OK(v) ? b_user_unlock(&v->b) : MPX_EINVAL; }
int mpx_value_ptr(mpx_value *v, void **ptr) {
  if (!VAL_OK(v) || !ptr) return MPX_EINVAL;
  *ptr = v->b.data;
  return MPX_OK;
}
int mpx_value_size(const mpx_value *v, size_t *size) {
  if (!VAL_OK(v) || !size) return MPX_EINVAL;
  *size = v->b.elem;
  return MPX_OK;
}
int mpx_value_destroy(mpx_value *v) {
  if (!VAL_OK(v)) return MPX_EINVAL;
  mpx__shm_free(v);
  return MPX_OK;
}

int mpx_array_create(mpx_array **a, size_t elem_size, size_t count, const void *init, bool lock) {
  return block_create((block **)a, MPX__MAGIC_ARRAY, elem_size, count, init, lock);
}
int mpx_array_get(mpx_array *a, size_t index, void *dst, size_t size) {
  if (!ARR_OK(a)) return MPX_EINVAL;
  if (size != a->b.elem) return MPX_ESIZE;
  return b_copy(&a->b, index, 1, dst, false);
}
int mpx_array_set(mpx_array *a, size_t index, const void *src, size_t size) {
  if (!ARR_OK(a)) return MPX_EINVAL;
  if (size != a->b.elem) return MPX_ESIZE;
  return b_copy(&a->b, index, 1, (void *)src, true);
}
int mpx_array_read(mpx_array *a, size_t start, size_t n, void *dst) {
  return ARR_OK(a) ? b_copy(&a->b, start, n, dst, false) : MPX_EINVAL;
}
int mpx_array_write(mpx_array *a, size_t start, size_t n, const void *src) {
  return ARR_OK(a) ? b_copy(&a->b, start, n, (void *)src, true) : MPX_EINVAL;
}
int mpx_array_lock(mpx_array *a, double timeout) {
  return ARR_OK(a) ? b_user_lock(&a->b, timeout) : MPX_EINVAL;
}
int mpx_array_unlock(mpx_array *a) { return ARR_OK(a) ? b_user_unlock(&a->b) : MPX_EINVAL; }
int mpx_array_ptr(mpx_array *a, void **ptr) {
  if (!ARR_OK(a) || !ptr) return MPX_EINVAL;
  *ptr = a->b.data;
  return MPX_OK;
}
int mpx_array_len(const mpx_array *a, size_t *count) {
  if (!ARR_OK(a) || !count) return MPX_EINVAL;
  *count = a->b.count;
  return MPX_OK;
}
int mpx_array_elem_size(const mpx_array *a, size_t *elem_size) {
  if (!ARR_OK(a) || !elem_size) return MPX_EINVAL;
  *elem_size = a->b.elem;
  return MPX_OK;
}
int mpx_array_destroy(mpx_array *a) {
  if (!ARR_OK(a)) return MPX_EINVAL;
  mpx__shm_free(a);
  return MPX_OK;
}
