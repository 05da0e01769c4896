/* list.c: the shared list (see ipc_list.h): `max_items` fixed-size slots of { length, bytes },
 * and an order array of slot numbers: order[0..count) are the list's items in order. A slot not
 * named by order[0..count) (and not the `spare` being written) is free.
 *
 * All access is under one robust mutex. Crash consistency comes from the order of writes, each
 * step one store that leaves the list valid, and from recording a move before making it:
 *  - append/insert write the item into a free slot first, invisible until count grows;
 *  - set writes into a free slot (`spare`), then swaps it into order[i] (one store);
 *  - insert/pop move order entries one at a time, with `shift_*` recording the move and how far
 *    it got, so that a repair after EOWNERDEAD finishes it; count changes last (pop) or after
 *    the move (insert);
 *  - clear sets count to 0 (one store).
 * Free slots are found in `used` (a byte per slot, in the mapping), which a repair rebuilds from
 * order[0..count). */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "errmsg.h"
#include "mpx/ipc_list.h"
#include "shm.h"

#define LIMIT ((size_t)1 << 30)
/* Keeps the compiler from reordering the stores a repair depends on (x86 and ARM keep a
 * thread's own stores in program order as far as a dead thread's are concerned: they are
 * simply lost after the last one that reached memory). */
#define STEP() atomic_signal_fence(memory_order_seq_cst)

typedef struct lslot {
  uint32_t len;
  unsigned char bytes[];
} lslot;

struct mpx_list {
  mpx__shm_hdr h;
  pthread_mutex_t m;
  size_t max_items, max_item, slot_size;
  size_t count;
  int shift; /* 0: none; +1 an insert's move right, -1 a pop's move left, under way */
  size_t shift_at, shift_to, shift_end; /* the move's next step and its bounds */
  size_t pending;                       /* insert: the slot holding the new item */
  size_t used_at, slots_at;             /* offsets in data of `used` and of the slots */
  _Alignas(8) unsigned char data[];     /* order (uint32 per item), used (a byte per slot:
                                           named by order[0..count)), then the slots */
};

static bool ok(const mpx_list *l) { return mpx__shm_check(l, MPX__MAGIC_LIST); }
static uint32_t *order_of(mpx_list *l) { return (uint32_t *)l->data; }
static uint8_t *used_of(mpx_list *l) { return l->data + l->used_at; }
static lslot *at(mpx_list *l, size_t s) {
  return (lslot *)(l->data + l->slots_at + s * l->slot_size);
}

int mpx_list_create(mpx_list **out, size_t max_items, size_t max_item) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!max_items || max_items > LIMIT || max_item > LIMIT) {
    mpx__set_errmsg("mpx_list_create: max_items (%zu) must be 1..2^30, max_item (%zu) at most "
                    "2^30",
                    max_items, max_item);
    return MPX_EINVAL;
  }
  size_t slot_size = (sizeof(lslot) + max_item + 7) & ~(size_t)7;
  size_t order = (max_items * sizeof(uint32_t) + 7) & ~(size_t)7;
  size_t used = (max_items + 7) & ~(size_t)7;
  if (slot_size > (LIMIT * 4) / max_items) return MPX_ETOOBIG;
  mpx_list *l = mpx__shm_alloc(sizeof *l + order + used + max_items * slot_size, MPX__MAGIC_LIST);
  if (!l) return MPX_ENOMEM;
  int rc = mpx__mutex_init(&l->m, false);
  if (rc) {
    mpx__shm_free(l);
    return rc;
  }
  l->max_items = max_items;
  l->max_item = max_item;
  l->slot_size = slot_size;
  l->used_at = order;
  l->slots_at = order + used;
  *out = l;
  return MPX_OK;
}

/* Finish a move a dead holder left (each step is idempotent), and rebuild `used`. */
static void repair(mpx_list *l) {
  uint32_t *o = order_of(l);
  if (l->shift < 0) { /* pop: o[k] = o[k + 1] for k = shift_at .. shift_end - 1 */
    for (size_t k = l->shift_at; k < l->shift_end; k++) o[k] = o[k + 1];
    l->count = l->shift_end;
  } else if (l->shift > 0) { /* insert: o[k] = o[k - 1] for k = shift_at down to shift_to + 1 */
    for (size_t k = l->shift_at; k > l->shift_to; k--) o[k] = o[k - 1];
    o[l->shift_to] = (uint32_t)l->pending; /* its bytes were written before the move began */
    l->count = l->shift_end + 1;
  }
  l->shift = 0;
  memset(used_of(l), 0, l->max_items);
  for (size_t k = 0; k < l->count; k++) used_of(l)[o[k]] = 1;
}

static int lock(mpx_list *l) {
  int rc = mpx__mutex_lock(&l->m, NULL);
  if (rc == MPX_EOWNERDEAD) {
    repair(l);
    rc = MPX_OK;
  }
  return rc;
}
static void unlock(mpx_list *l) { mpx__mutex_unlock(&l->m); }

/* A free slot (one exists whenever count < max_items). */
static size_t free_slot(mpx_list *l) {
  for (size_t s = 0; s < l->max_items; s++)
    if (!used_of(l)[s]) return s;
  return 0;
}

/* Python's index rules: i in [-count, count) -> 0..count-1; else MPX_EINVAL, named. */
static int index_of(mpx_list *l, ssize_t i, const char *op, size_t *out) {
  ssize_t n = (ssize_t)l->count, k = i < 0 ? i + n : i;
  if (k < 0 || k >= n) {
    mpx__set_errmsg("%s: index %zd out of range for a list of %zu items", op, i, l->count);
    return MPX_EINVAL;
  }
  *out = (size_t)k;
  return MPX_OK;
}

static int check_item(const mpx_list *l, const void *item, size_t len, const char *op) {
  if (!item && len) {
    mpx__set_errmsg("%s: item is NULL with len %zu", op, len);
    return MPX_EINVAL;
  }
  if (len > l->max_item) {
    mpx__set_errmsg("%s: item of %zu bytes exceeds max_item (%zu)", op, len, l->max_item);
    return MPX_ETOOBIG;
  }
  return MPX_OK;
}

static int put(mpx_list *l, ssize_t i, const void *item, size_t len, bool at_end) {
  const char *op = at_end ? "mpx_list_append" : "mpx_list_insert";
  if (!ok(l)) return MPX_EINVAL;
  int rc = check_item(l, item, len, op);
  if (rc || (rc = lock(l))) return rc;
  if (l->count >= l->max_items) {
    mpx__set_errmsg("%s: the list is full (%zu items)", op, l->max_items);
    unlock(l);
    return MPX_EFULL;
  }
  size_t n = l->count, k = n;
  if (!at_end) {
    ssize_t kk = i < 0 ? i + (ssize_t)n : i;
    k = kk < 0 ? 0 : (size_t)kk > n ? n : (size_t)kk;
  }
  size_t s = free_slot(l);
  lslot *sl = at(l, s);
  if (len) memcpy(sl->bytes, item, len);
  sl->len = (uint32_t)len;
  uint32_t *o = order_of(l);
  if (k < n) { /* make room at k: o[n] = o[n-1], ..., o[k+1] = o[k] */
    l->shift_to = k, l->shift_end = n, l->shift_at = n, l->pending = s;
    STEP();
    l->shift = 1;
    for (size_t j = n; j > k; j--) {
      STEP();
      o[j] = o[j - 1];
      STEP();
      l->shift_at = j - 1;
    }
  }
  STEP();
  o[k] = (uint32_t)s;
  used_of(l)[s] = 1;
  STEP();
  l->count = n + 1;
  STEP();
  l->shift = 0;
  unlock(l);
  return MPX_OK;
}

int mpx_list_append(mpx_list *l, const void *item, size_t len) {
  return put(l, 0, item, len, true);
}
int mpx_list_insert(mpx_list *l, ssize_t i, const void *item, size_t len) {
  return put(l, i, item, len, false);
}

int mpx_list_set(mpx_list *l, ssize_t i, const void *item, size_t len) {
  if (!ok(l)) return MPX_EINVAL;
  int rc = check_item(l, item, len, "mpx_list_set");
  if (rc || (rc = lock(l))) return rc;
  size_t k;
  if (!(rc = index_of(l, i, "mpx_list_set", &k))) {
    size_t old = order_of(l)[k];
    /* a free slot if there is one, else the item's own (then a crash may tear it: the one
     * case where the list is full and an item is overwritten in place) */
    size_t s = l->count < l->max_items ? free_slot(l) : old;
    lslot *sl = at(l, s);
    if (len) memcpy(sl->bytes, item, len);
    sl->len = (uint32_t)len;
    STEP();
    order_of(l)[k] = (uint32_t)s;
    used_of(l)[old] = 0;
    used_of(l)[s] = 1;
  }
  unlock(l);
  return rc;
}

static int copy_out(mpx_list *l, size_t k, void *buf, size_t cap, size_t *len) {
  lslot *sl = at(l, order_of(l)[k]);
  if (len) *len = sl->len;
  if (sl->len > cap) {
    mpx__set_errmsg("item %zu has %u bytes, more than the %zu given", k, sl->len, cap);
    return MPX_ETOOBIG;
  }
  if (sl->len) memcpy(buf, sl->bytes, sl->len);
  return MPX_OK;
}

int mpx_list_get(mpx_list *l, ssize_t i, void *buf, size_t cap, size_t *len) {
  if (!ok(l) || !len || (!buf && cap)) return MPX_EINVAL;
  int rc = lock(l);
  if (rc) return rc;
  size_t k;
  if (!(rc = index_of(l, i, "mpx_list_get", &k))) rc = copy_out(l, k, buf, cap, len);
  unlock(l);
  return rc;
}

int mpx_list_pop(mpx_list *l, ssize_t i, void *buf, size_t cap, size_t *len) {
  if (!ok(l) || (!buf && cap)) return MPX_EINVAL;
  int rc = lock(l);
  if (rc) return rc;
  size_t k;
  uint32_t *o = order_of(l);
  if (!(rc = index_of(l, i, "mpx_list_pop", &k))) {
    if (buf)
      rc = copy_out(l, k, buf, cap, len); /* buf NULL: dropped */
    else if (len)
      *len = at(l, o[k])->len;
  }
  if (!rc) {
    size_t s = o[k], n = l->count;
    l->shift_at = k, l->shift_end = n - 1;
    STEP();
    l->shift = -1;
    for (size_t j = k; j + 1 < n; j++) {
      STEP();
      o[j] = o[j + 1];
      STEP();
      l->shift_at = j + 1;
    }
    STEP();
    l->count = n - 1;
    STEP();
    l->shift = 0;
    used_of(l)[s] = 0;
  }
  unlock(l);
  return rc;
}

int mpx_list_len(mpx_list *l, size_t *n) {
  if (!ok(l) || !n) return MPX_EINVAL;
  int rc = lock(l);
  if (rc) return rc;
  *n = l->count;
  unlock(l);
  return MPX_OK;
}

int mpx_list_clear(mpx_list *l) {
  if (!ok(l)) return MPX_EINVAL;
  int rc = lock(l);
  if (rc) return rc;
  l->count = 0;
  memset(used_of(l), 0, l->max_items);
  unlock(l);
  return MPX_OK;
}

int mpx_list_destroy(mpx_list *l) {
  if (!ok(l)) return MPX_EINVAL;
  mpx__shm_free(l);
  return MPX_OK;
}
