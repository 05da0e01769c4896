/* mpx shared dict: a Manager-style dictionary (string keys, byte values) that forked processes
 * and threads share, without a server process.
 *
 * The dict is a fixed-capacity hash table in shared memory, with fixed limits. Made before fork(),
 * children inherit it; made after mpx_init, it may also be passed to process-pool tasks as an
 * argument, and the worker gets it from the parent on first use (ipc_sync.h says how). Create it
 * with its limits (how many entries, longest key, longest value) and every child uses the
 * same table. A set that would exceed a limit fails cleanly: MPX_EFULL for one entry too many,
 * MPX_ETOOBIG for a key or value too long. Every operation takes one robust process-shared
 * lock, so each is atomic with respect to the others. If a process dies in the middle of one,
 * the next caller repairs the table before going on: an entry being overwritten at that moment
 * is removed (never left half-written); everything else stays.
 *
 * Thread- and process-safe. Lookups are O(1) on average; after heavy churn (many deletes) they
 * degrade towards O(capacity) until mpx_dict_clear. */
#ifndef MPX_IPC_DICT_H
#define MPX_IPC_DICT_H

#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_dict mpx_dict;

/* A dict for up to max_entries entries, keys up to max_key bytes (not counting the NUL) and
 * values up to max_value bytes. */
MPX_API int mpx_dict_create(mpx_dict **d, size_t max_entries, size_t max_key, size_t max_value);

/* Insert or overwrite. MPX_EFULL (new key, dict full), MPX_ETOOBIG (key or value too long). */
MPX_API int mpx_dict_set(mpx_dict *d, const char *key, const void *val, size_t len);
/* Copy the value into buf[0..cap); *len = its length. MPX_ENOTFOUND; MPX_ETOOBIG (with *len =
 * the size needed) when it does not fit. */
MPX_API int mpx_dict_get(mpx_dict *d, const char *key, void *buf, size_t cap, size_t *len);
/* Remove: 0 or MPX_ENOTFOUND. */
MPX_API int mpx_dict_delete(mpx_dict *d, const char *key);
/* 1 if present, else 0. */
MPX_API int mpx_dict_contains(mpx_dict *d, const char *key);
/* Entries now (*n). */
MPX_API int mpx_dict_len(mpx_dict *d, size_t *n);
/* A snapshot of the keys (*keys: n malloc'd strings in a malloc'd array; free with
 * mpx_dict_keys_free). */
MPX_API int mpx_dict_keys(mpx_dict *d, char ***keys, size_t *n);
MPX_API void mpx_dict_keys_free(char **keys, size_t n);
/* Iterate without allocating: start with *cursor = 0; returns 1 with the next key copied into
 * key[0..key_cap) (NUL-terminated; key_cap > max_key always suffices), 0 at the end. Keys added
 * or removed meanwhile may or may not be seen; others are seen exactly once. */
MPX_API int mpx_dict_next(mpx_dict *d, size_t *cursor, char *key, size_t key_cap);
/* Remove every entry. */
MPX_API int mpx_dict_clear(mpx_dict *d);
MPX_API int mpx_dict_destroy(mpx_dict *d);

#ifdef __cplusplus
}
#endif
#endif
