/* mpx shared values and arrays: fixed-size C data in shared memory, as multiprocessing.Value and
 * multiprocessing.Array.
 *
 * A Value holds one element of `size` bytes (a long, a double, a struct...); an Array holds
 * `count` elements of `elem_size` bytes. Both live in shared memory. Made before fork(), parent
 * and children see the same bytes; made after mpx_init, they may also be passed to process-pool
 * tasks as arguments (ipc_sync.h says how). Created with a lock, each get/set
 * copies under a recursive robust lock (an RLock, as Python's default), and the caller can hold
 * that lock around a read-modify-write (lock ... ptr ... unlock); get/set inside such a section
 * are fine. Created without a lock, get/set are plain copies (synchronise yourself) and lock
 * answers MPX_EPERM.
 *
 * If a process dies holding the lock, the next locker gets MPX_EOWNERDEAD: from lock it means
 * "you hold it, check the data"; from get/set it means "done, but a holder died before you and
 * the data may be half-written". Thread- and process-safe when created with a lock. Sizes given
 * to get/set must equal the element size (MPX_ESIZE otherwise). */
#ifndef MPX_IPC_SHARED_H
#define MPX_IPC_SHARED_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_value mpx_value;
typedef struct mpx_array mpx_array;

/* A value of `size` bytes (1..1 GiB), initialised from `init` (NULL: zeros). */
MPX_API int mpx_value_create(mpx_value **v, size_t size, const void *init, bool lock);
MPX_API int mpx_value_get(mpx_value *v, void *dst, size_t size);
MPX_API int mpx_value_set(mpx_value *v, const void *src, size_t size);
/* Take / drop the value's lock (recursive). MPX_EPERM if it has none. */
MPX_API int mpx_value_lock(mpx_value *v, double timeout);
MPX_API int mpx_value_unlock(mpx_value *v);
/* The shared bytes themselves (*ptr), for work done under mpx_value_lock. */
MPX_API int mpx_value_ptr(mpx_value *v, void **ptr);
MPX_API int mpx_value_size(const mpx_value *v, size_t *size);
MPX_API int mpx_value_destroy(mpx_value *v);

/* An array of `count` elements of `elem_size` bytes (total 1..1 GiB), initialised from `init`
 * (count * elem_size bytes; NULL: zeros). */
MPX_API int mpx_array_create(mpx_array **a, size_t elem_size, size_t count, const void *init,
                             bool lock);
/* One element; MPX_EINVAL for an index out of range. */
MPX_API int mpx_array_get(mpx_array *a, size_t index, void *dst, size_t size);
MPX_API int mpx_array_set(mpx_array *a, size_t index, const void *src, size_t size);
/* n elements from `start` (a slice), under one lock hold. */
MPX_API int mpx_array_read(mpx_array *a, size_t start, size_t n, void *dst);
MPX_API int mpx_array_write(mpx_array *a, size_t start, size_t n, const void *src);
MPX_API int mpx_array_lock(mpx_array *a, double timeout);
MPX_API int mpx_array_unlock(mpx_array *a);
MPX_API int mpx_array_ptr(mpx_array *a, void **ptr);
MPX_API int mpx_array_len(const mpx_array *a, size_t *count);
MPX_API int mpx_array_elem_size(const mpx_array *a, size_t *elem_size);
MPX_API int mpx_array_destroy(mpx_array *a);

#ifdef __cplusplus
}
#endif
#endif
