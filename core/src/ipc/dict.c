/* dict.c: the shared dict (see ipc_dict.h): open addressing with linear probing over
 * fixed-size slots { state, hash, key length, value length, key[max_key+1], value[max_value] },
 * table size a power of two >= 2 * max_entries, deletions leave tombstones (those that end a
 * probe run are turned back into empty slots at once).
 *
 * All access is under one robust mutex. Crash consistency comes from the order of writes:
 *  - insert: key and value are written into a free slot, then `state` flips to USED (one store);
 *  - overwrite: `state` gets the BUSY bit, the value is written, then the bit is cleared;
 *  - delete: `state` becomes TOMB;
 *  - clear: `clearing` is raised for the duration.
 * So after EOWNERDEAD the repair is: finish an interrupted clear, turn BUSY slots into TOMB (the
 * half-written entry is dropped), recount `count`. */
#include <stdlib.h>
#include <string.h>

#include "mpx/ipc_dict.h"
#include "shm.h"

enum { EMPTY = 0, USED = 1, TOMB = 2, BUSY = 4 };

typedef struct slot {
  uint32_t state;
  uint32_t hash;
  uint32_t klen;
  uint32_t vlen;
  char bytes[]; /* key (klen + NUL, room for max_key + 1), then value (room for max_value) */
} slot;

struct mpx_dict {
  mpx__shm_hdr h;
  pthread_mutex_t m;
  size_t max_entries, max_key, max_value;
  size_t nslots; /* power of two */
  size_t slot_size;
  size_t count;
  uint32_t clearing; /* a clear is under way: a repair finishes it */
  _Alignas(8) unsigned char slots[];
};

#define LIMIT ((size_t)1 << 30)

static bool ok(const mpx_dict *d) { return mpx__shm_check(d, MPX__MAGIC_DICT); }

static slot *at(mpx_dict *d, size_t i) { return (slot *)(d->slots + i * d->slot_size); }
static char *val_of(mpx_dict *d, slot *s) { return s->bytes + d->max_key + 1; }

static uint32_t hash_key(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 16777619u;
  return h;
}

int mpx_dict_create(mpx_dict **out, size_t max_entries, size_t max_key, size_t max_value) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!max_entries || !max_key || max_entries > LIMIT || max_key > 65535 || max_value > LIMIT)
    return MPX_EINVAL;
  size_t nslots = 8;
  while (nslots < 2 * max_entries) nslots <<= 1;
  size_t slot_size = (sizeof(slot) + max_key + 1 + max_value + 7) & ~(size_t)7;
  if (slot_size > LIMIT / nslots) return MPX_ETOOBIG;
  mpx_dict *d = mpx__shm_alloc(sizeof *d + nslots * slot_size, MPX__MAGIC_DICT);
  if (!d) return MPX_ENOMEM;
  int rc = mpx__mutex_init(&d->m, false);
  if (rc) {
    mpx__shm_free(d);
    return rc;
  }
  d->max_entries = max_entries;
  d->max_key = max_key;
  d->max_value = max_value;
  d->nslots = nslots;
  d->slot_size = slot_size;
  *out = d;
  return MPX_OK;
}

/* Lock; after a holder's death, repair first (see the file header). */
static int lock(mpx_dict *d) {
  int rc = mpx__mutex_lock(&d->m, NULL);
  if (rc == MPX_EOWNERDEAD) {
    if (d->clearing) {
      for (size_t i = 0; i < d->nslots; i++) at(d, i)->state = EMPTY;
      d->clearing = 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < d->nslots; i++) {
      slot *s = at(d, i);
      if (s->state & BUSY) s->state = TOMB;
      if (s->state == USED) n++;
    }
    d->count = n;
    rc = MPX_OK;
  }
  return rc;
}

static void unlock(mpx_dict *d) { mpx__mutex_unlock(&d->m); }

/* Find `key`: *found = its slot or NULL; *free_slot = the first reusable slot on its path. */
static void find(mpx_dict *d, const char *key, size_t klen, uint32_t h, slot **found,
                 slot **free_slot) {
  *found = NULL;
  *free_slot = NULL;
  size_t mask = d->nslots - 1;
  for (size_t n = 0, i = h & mask; n < d->nslots; n++, i = (i + 1) & mask) {
    slot *s = at(d, i);
    if (s->state == EMPTY) {
      if (!*free_slot) *free_slot = s;
      return;
    }
    if (s->state == TOMB) {
      if (!*free_slot) *free_slot = s;
      continue;
    }
    if (s->hash == h && s->klen == klen && memcmp(s->bytes, key, klen) == 0) {
      *found = s;
      return;
    }
  }
}

static int check_key(const mpx_dict *d, const char *key, size_t *klen) {
  if (!key) return MPX_EINVAL;
  size_t n = strnlen(key, d->max_key + 1);
  if (n > d->max_key) return MPX_ETOOBIG;
  *klen = n;
  return MPX_OK;
}

int mpx_dict_set(mpx_dict *d, const char *key, const void *val, size_t len) {
  if (!ok(d) || (!val && len)) return MPX_EINVAL;
  size_t klen;
  int rc = check_key(d, key, &klen);
  if (rc) return rc;
  if (len > d->max_value) return MPX_ETOOBIG;
  uint32_t h = hash_key(key, klen);
  if ((rc = lock(d))) return rc;
  slot *s, *f;
  find(d, key, klen, h, &s, &f);
  if (s) { /* overwrite: BUSY marks the window in which the value is torn */
    s->state = USED | BUSY;
    if (len) memcpy(val_of(d, s), val, len);
    s->vlen = (uint32_t)len;
    s->state = USED;
  } else if (d->count >= d->max_entries || !f) {
    rc = MPX_EFULL;
  } else { /* insert: invisible until state says USED */
    f->hash = h;
    f->klen = (uint32_t)klen;
    memcpy(f->bytes, key, klen);
    f->bytes[klen] = '\0';
    if (len) memcpy(val_of(d, f), val, len);
    f->vlen = (uint32_t)len;
    f->state = USED;
    d->count++;
  }
  unlock(d);
  return rc;
}

/* Look `key` up with the lock held: on 0 the lock is held and *s is its slot (NULL when absent);
 * a key too long to be stored answers MPX_ENOTFOUND without locking. */
static int lookup_locked(mpx_dict *d, const char *key, slot **s) {
  size_t klen;
  int rc = check_key(d, key, &klen);
  if (rc) return rc == MPX_ETOOBIG ? MPX_ENOTFOUND : rc; /* too long to be there */
  uint32_t h = hash_key(key, klen);
  if ((rc = lock(d))) return rc;
  slot *f;
  find(d, key, klen, h, s, &f);
  return MPX_OK;
}

int mpx_dict_get(mpx_dict *d, const char *key, void *buf, size_t cap, size_t *len) {
  if (!ok(d) || !len || (!buf && cap)) return MPX_EINVAL;
  slot *s;
  int rc = lookup_locked(d, key, &s);
  if (rc) return rc;
  if (!s) {
    rc = MPX_ENOTFOUND;
  } else {
    *len = s->vlen;
    if (s->vlen > cap)
      rc = MPX_ETOOBIG;
    else if (s->vlen)
      memcpy(buf, val_of(d, s), s->vlen);
  }
  unlock(d);
  return rc;
}

/* Tombstones that end a probe run (the next slot is EMPTY) are on no other key's path: turn them
 * back into EMPTY, from `s` backwards, so that churn does not fill the table with tombstones and
 * make every miss scan it. One store per slot, each leaving a valid table: safe to die midway. */
static void reclaim(mpx_dict *d, slot *s) {
  size_t mask = d->nslots - 1;
  size_t i = (size_t)((unsigned char *)s - d->slots) / d->slot_size;
  if (at(d, (i + 1) & mask)->state != EMPTY) return;
  for (size_t n = 0; n < d->nslots && at(d, i)->state == TOMB; n++, i = (i - 1) & mask)
    at(d, i)->state = EMPTY;
}

int mpx_dict_delete(mpx_dict *d, const char *key) {
  if (!ok(d)) return MPX_EINVAL;
  slot *s;
  int rc = lookup_locked(d, key, &s);
  if (rc) return rc;
  if (!s) {
    rc = MPX_ENOTFOUND;
  } else {
    s->state = TOMB;
    d->count--;
    reclaim(d, s);
  }
  unlock(d);
  return rc;
}

int mpx_dict_contains(mpx_dict *d, const char *key) {
  if (!ok(d)) return MPX_EINVAL;
  slot *s;
  int rc = lookup_locked(d, key, &s);
  if (rc) return rc == MPX_ENOTFOUND ? 0 : rc; /* too long to be there */
  unlock(d);
  return s != NULL;
}

int mpx_dict_len(mpx_dict *d, size_t *n) {
  if (!ok(d) || !n) return MPX_EINVAL;
  int rc = lock(d);
  if (rc) return rc;
  *n = d->count;
  unlock(d);
  return MPX_OK;
}

void mpx_dict_keys_free(char **keys, size_t n) {
  if (!keys) return;
  for (size_t i = 0; i < n; i++) free(keys[i]);
  free(keys);
}

int mpx_dict_keys(mpx_dict *d, char ***keys, size_t *n) {
  if (!ok(d) || !keys || !n) return MPX_EINVAL;
  *keys = NULL;
  *n = 0;
  int rc = lock(d);
  if (rc) return rc;
  size_t cnt = d->count, k = 0;
  char **out = calloc(cnt ? cnt : 1, sizeof *out);
  if (!out) rc = MPX_ENOMEM;
  for (size_t i = 0; !rc && i < d->nslots && k < cnt; i++) {
    slot *s = at(d, i);
    if (s->state != USED) continue;
    if (!(out[k] = strndup(s->bytes, s->klen)))
      rc = MPX_ENOMEM;
    else
      k++;
  }
  unlock(d);
  if (rc) {
    mpx_dict_keys_free(out, k);
    return rc;
  }
  *keys = out;
  *n = k;
  return MPX_OK;
}

int mpx_dict_next(mpx_dict *d, size_t *cursor, char *key, size_t key_cap) {
  if (!ok(d) || !cursor || !key || key_cap == 0) return MPX_EINVAL;
  int rc = lock(d);
  if (rc) return rc;
  int found = 0;
  for (size_t i = *cursor; i < d->nslots; i++) {
    slot *s = at(d, i);
    if (s->state != USED) continue;
    if (s->klen >= key_cap) {
      rc = MPX_ETOOBIG;
      break;
    }
    memcpy(key, s->bytes, s->klen + 1);
    *cursor = i + 1;
    found = 1;
    break;
  }
  if (!found && !rc) *cursor = d->nslots;
  unlock(d);
  return rc ? rc : found;
}

int mpx_dict_clear(mpx_dict *d) {
  if (!ok(d)) return MPX_EINVAL;
  int rc = lock(d);
  if (rc) return rc;
  d->clearing = 1; /* a half-done clear would cut probe chains: a repair completes it */
  for (size_t i = 0; i < d->nslots; i++) at(d, i)->state = EMPTY;
  d->count = 0;
  d->clearing = 0;
  unlock(d);
  return MPX_OK;
}

int mpx_dict_destroy(mpx_dict *d) {
  if (!ok(d)) return MPX_EINVAL;
  mpx__shm_free(d);
  return MPX_OK;
}
