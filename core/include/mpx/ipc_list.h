/* mpx shared list: a Manager-style list (items of bytes, in order) that forked processes and
 * threads share, without a server process, as Python's Manager().list().
 *
 * The list is a fixed-capacity array in shared memory. Made before fork(), children inherit it;
 * made after mpx_init, it may also be passed to process-pool tasks as an argument (ipc_sync.h
 * says how). Create it with its limits (how many items, longest item) and every child uses the same list. An append
 * or insert past max_items fails with MPX_EFULL, an item over max_item bytes with MPX_ETOOBIG.
 * Index arguments are Python's: 0..len-1, or negative from the end (-1 is the last); an index
 * out of range is MPX_EINVAL and mpx_errmsg() names it and the length. Every operation takes one
 * robust process-shared lock, so each is atomic with respect to the others; if a process dies in
 * the middle of one, the next caller finishes or undoes it before going on (an item being
 * written is either the old or the new one, a pop or insert under way is completed).
 *
 * Thread- and process-safe. Item i is found in O(1); insert and pop in the middle move item
 * indices (O(len)), never item bytes. */
#ifndef MPX_IPC_LIST_H
#define MPX_IPC_LIST_H

#include <stddef.h>
#include <sys/types.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_list mpx_list;

/* A list of up to max_items items of up to max_item bytes each. MPX_EINVAL (0 or over 2^30),
 * MPX_ETOOBIG (the mapping would be too large), MPX_ENOMEM. */
MPX_API int mpx_list_create(mpx_list **l, size_t max_items, size_t max_item);
/* Add at the end. MPX_EFULL, MPX_ETOOBIG. */
MPX_API int mpx_list_append(mpx_list *l, const void *item, size_t len);
/* Insert before index i (as list.insert: i past the end appends, below -len inserts first). */
MPX_API int mpx_list_insert(mpx_list *l, ssize_t i, const void *item, size_t len);
/* Replace item i. MPX_EINVAL (index), MPX_ETOOBIG. */
MPX_API int mpx_list_set(mpx_list *l, ssize_t i, const void *item, size_t len);
/* Copy item i into buf[0..cap); *len = its length. MPX_EINVAL (index), MPX_ETOOBIG (with *len
 * the size needed) when it does not fit. */
MPX_API int mpx_list_get(mpx_list *l, ssize_t i, void *buf, size_t cap, size_t *len);
/* Remove item i, copying it out first as mpx_list_get (buf may be NULL with cap 0 to drop it;
 * an item that does not fit is MPX_ETOOBIG and stays). MPX_EINVAL on an empty list. */
MPX_API int mpx_list_pop(mpx_list *l, ssize_t i, void *buf, size_t cap, size_t *len);
/* Items now (*n). */
MPX_API int mpx_list_len(mpx_list *l, size_t *n);
/* Remove every item. */
MPX_API int mpx_list_clear(mpx_list *l);
/* Unmap it in this process (other processes keep theirs). */
MPX_API int mpx_list_destroy(mpx_list *l);

#ifdef __cplusplus
}
#endif
#endif
