/* codec.c: limits, the growable write buffer, the allocation-free wire check, Batch pack/unpack
 * and frame headers. See codec.h for the contracts.
 *
 * The wire check is driven by protobuf-c's own message descriptors, so it follows mpx.proto (and
 * any user message handed to mpx_msg_unpack) without a second copy of the schema. It is at least
 * as strict as protobuf-c's parser about structure, so that a buffer it accepts is one whose
 * allocations are bounded by the limits: unpack allocates at most about
 * len + max_items * (largest message struct + a few pointers). It also measures what the decoded
 * Batch will take, so the decoder allocates once.
 *
 * Hot path: protobuf-c's generic, descriptor-driven pack and unpack cost ~3,600 instructions per
 * empty task for a scheduler -> worker -> scheduler round trip. A hand-written encoder and decoder
 * for mpx.Batch (the decoder below, the encoder in codec_encode.c) produce and read exactly protobuf-c's bytes and structs at less than half
 * that; anything unusual (unknown fields, a singular message sent twice) goes through protobuf-c.
 * A decoded Batch lives in one arena freed at once. The *_slow entry points keep protobuf-c's
 * path reachable so that tests and the fuzzer can check that the two agree. If mpx.proto changes,
 * update fd_* and fe_* with it (codec_test's random round trips catch a mismatch).
 *
 * Thread-safety: no state is kept between calls; everything is reentrant. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "mpx/error.h"

/* ---- limits ------------------------------------------------------------------------------ */

mpx__limits mpx__limits_default(size_t max_payload) {
  if (max_payload == 0) max_payload = MPX__DEFAULT_MAX_PAYLOAD;
  const size_t headroom_min = (size_t)64 << 20; /* many small envelopes around the payloads */
  if (max_payload > MPX__FRAME_MAX - headroom_min) max_payload = MPX__FRAME_MAX - headroom_min;
  size_t headroom = max_payload > headroom_min ? max_payload : headroom_min;
  size_t max_message = max_payload > MPX__FRAME_MAX - headroom ? MPX__FRAME_MAX
                                                               : max_payload + headroom;
  return (mpx__limits){
      .max_payload = max_payload, .max_message = max_message, .max_items = MPX__DEFAULT_MAX_ITEMS};
}

int mpx__task_code(int code) {
  switch (code) {
  case MPX_ETASK: case MPX_EINVAL: case MPX_ENOMEM: case MPX_ENOTASK: case MPX_ETIMEDOUT:
  case MPX_ETOOBIG: case MPX_EPROTO: case MPX_ESIZE: case MPX_ESYS: case MPX_EMPI: case MPX_EPERM:
  case MPX_ESTATE: case MPX_ENOTFOUND: case MPX_EEXIST: case MPX_EEOF: case MPX_ECLOSED:
  case MPX_EFULL: case MPX_EEMPTY: case MPX_EBROKEN: case MPX_EOWNERDEAD: case MPX_ETOPO:
    return code;
  default:
    return MPX_ETASK;
  }
}

/* ---- wbuf -------------------------------------------------------------------------------- */

int mpx__wbuf_reserve(mpx__wbuf *b, size_t extra) {
  if (!b) return MPX_EINVAL;
  if (extra <= b->cap - b->len) return MPX_OK;
  if (extra > (size_t)PTRDIFF_MAX - b->len) return MPX_ENOMEM; /* no object is larger */
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > (size_t)PTRDIFF_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) return MPX_ENOMEM;
  b->data = p;
  b->cap = cap;
  return MPX_OK;
}

int mpx__wbuf_append(mpx__wbuf *b, const void *data, size_t n) {
  int rc = mpx__wbuf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, data, n);
  b->len += n;
  return MPX_OK;
}

void mpx__wbuf_reset(mpx__wbuf *b) {
  if (b) b->len = 0;
}

void mpx__wbuf_free(mpx__wbuf *b) {
  if (!b) return;
  free(b->data);
  *b = (mpx__wbuf){0};
}

/* ---- wire check -------------------------------------------------------------------------- */

/* Read a varint of at most `max_bytes` bytes. Refuses truncation, overlong encodings past
 * max_bytes and values that overflow 64 bits. */
static inline int rd_varint(const uint8_t **pp, const uint8_t *end, int max_bytes, uint64_t *v) {
  const uint8_t *p = *pp;
  if (p < end && *p < 0x80) { /* tags, small values and lengths: one byte */
    *v = *p;
    *pp = p + 1;
    return MPX_OK;
  }
  uint64_t x = 0;
  for (int i = 0; i < max_bytes; i++) {
    if (p == end) return MPX_EPROTO;
    uint8_t b = *p++;
    if (i == 9 && b > 1) return MPX_EPROTO; /* bits past 64 */
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *pp = p;
      *v = x;
      return MPX_OK;
    }
  }
  return MPX_EPROTO;
}

/* The wire type a field of type `t` uses when not packed. */
static int wire_type_of(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_BOOL:
  case PROTOBUF_C_TYPE_ENUM: return PROTOBUF_C_WIRE_TYPE_VARINT;
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_FLOAT: return PROTOBUF_C_WIRE_TYPE_32BIT;
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE: return PROTOBUF_C_WIRE_TYPE_64BIT;
  default: return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
  }
}

/* The body of a packed repeated scalar field: whole elements only. */
static int check_packed(int wt, const uint8_t *p, const uint8_t *end) {
  size_t n = (size_t)(end - p);
  if (wt == PROTOBUF_C_WIRE_TYPE_32BIT) return n % 4 ? MPX_EPROTO : MPX_OK;
  if (wt == PROTOBUF_C_WIRE_TYPE_64BIT) return n % 8 ? MPX_EPROTO : MPX_OK;
  while (p < end) {
    uint64_t v;
    if (rd_varint(&p, end, 10, &v)) return MPX_EPROTO;
  }
  return MPX_OK;
}

typedef struct wire_state {
  const mpx__limits *lim;
  size_t items;
  size_t bytes; /* what the decoded structs, pointer arrays, bytes and strings take, 8-aligned */
  bool odd;     /* unknown fields or a singular message sent twice: leave it to protobuf-c */
} wire_state;

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

static int wire_walk(wire_state *st, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                     const uint8_t *end, int depth) {
  uint64_t seen = 0; /* singular message fields (numbers < 64) met so far in this message */
  while (p < end) {
    uint64_t tag;
    if (rd_varint(&p, end, 5, &tag) || tag > UINT32_MAX) return MPX_EPROTO;
    uint32_t num = (uint32_t)(tag >> 3);
    int wt = (int)(tag & 7);
    if (num == 0) return MPX_EPROTO;
    /* fields numbered 1..n in order (all of mpx.proto) are found directly */
    const ProtobufCFieldDescriptor *f =
        num <= d->n_fields && d->fields[num - 1].id == num
            ? &d->fields[num - 1]
            : protobuf_c_message_descriptor_get_field(d, num);
    int want = f ? wire_type_of(f->type) : -1;
    bool packed_ok = f && f->label == PROTOBUF_C_LABEL_REPEATED &&
                     want != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    if (f && wt != want && !(packed_ok && wt == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED))
      return MPX_EPROTO;
    if (!f) {
      st->odd = true;
      if (++st->items > st->lim->max_items) return MPX_ETOOBIG; /* kept as unknown field */
    }
    switch (wt) {
    case PROTOBUF_C_WIRE_TYPE_VARINT: {
      uint64_t v;
      if (rd_varint(&p, end, 10, &v)) return MPX_EPROTO;
      break;
    }
    case PROTOBUF_C_WIRE_TYPE_64BIT:
      if (end - p < 8) return MPX_EPROTO;
      p += 8;
      break;
    case PROTOBUF_C_WIRE_TYPE_32BIT:
      if (end - p < 4) return MPX_EPROTO;
      p += 4;
      break;
    case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
      uint64_t n;
      /* protobuf-c reads lengths of at most 5 bytes (32 bits) */
      if (rd_varint(&p, end, 5, &n) || n > UINT32_MAX) return MPX_EPROTO;
      if (n > (uint64_t)(end - p)) return MPX_EPROTO; /* past the end: truncated or corrupt */
      const uint8_t *sub = p;
      p += n;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (depth + 1 > MPX__WIRE_MAX_DEPTH) return MPX_EPROTO;
        /* each element of a repeated message field is one more allocation that stays; a
         * singular one repeated on the wire is merged into one */
        if (f->label == PROTOBUF_C_LABEL_REPEATED && ++st->items > st->lim->max_items)
          return MPX_ETOOBIG;
        const ProtobufCMessageDescriptor *sd = f->descriptor;
        st->bytes += ALIGN8(sd->sizeof_message) + (f->label == PROTOBUF_C_LABEL_REPEATED ? 8 : 0);
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
          if (num >= 64 || (seen >> num & 1)) st->odd = true;
          else seen |= (uint64_t)1 << num;
        }
        int rc = wire_walk(st, (const ProtobufCMessageDescriptor *)f->descriptor, sub, p,
                           depth + 1);
        if (rc) return rc;
      } else {
        if (n > st->lim->max_payload) return MPX_ETOOBIG;
        st->bytes += ALIGN8(n + 1);
        if (f && want != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED && check_packed(want, sub, p))
          return MPX_EPROTO;
      }
      break;
    }
    default: /* 3, 4: groups (protobuf-c has none); 6, 7: not wire types */
      return MPX_EPROTO;
    }
  }
  return MPX_OK;
}

int mpx__wire_check_msg(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                        const mpx__limits *lim) {
  if (!desc || !lim || (!buf && len)) return MPX_EINVAL;
  if (desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC) return MPX_EINVAL;
  if (len > lim->max_message) return MPX_ETOOBIG;
  static const uint8_t empty[1];
  if (!len) buf = empty; /* no arithmetic on NULL, and protobuf-c wants a pointer */
  wire_state st = {.lim = lim};
  return len ? wire_walk(&st, desc, buf, buf + len, 1) : MPX_OK;
}

int mpx__wire_check(const uint8_t *buf, size_t len, const mpx__limits *lim) {
  return mpx__wire_check_msg(&mpx__batch__descriptor, buf, len, lim);
}

/* ---- Batch unpack ------------------------------------------------------------------------ */

static bool error_ok(const Mpx__Error *e) { return !e || e->code < 0; }

/* What protobuf-c cannot check: the meaning of the fields. */
static int batch_semantics(const Mpx__Batch *b, const mpx__limits *lim) {
  for (size_t i = 0; i < b->n_tasks; i++) {
    const Mpx__Task *t = b->tasks[i];
    if (t->count > lim->max_items) return MPX_ETOOBIG; /* every item is a call: bound the work */
    if (t->var & ~3u || (t->var && !t->count) || ((t->var & 1) && t->item_size)) return MPX_EPROTO;
    if (t->count > 0 && !(t->var & 1)) {
      uint64_t items = t->count, size = t->item_size;
      if (size && items > UINT64_MAX / size) return MPX_EPROTO;
      if (items * size != (uint64_t)t->arg.len) return MPX_EPROTO;
    }
  }
  for (size_t i = 0; i < b->n_results; i++)
    if (!error_ok(b->results[i]->error)) return MPX_EPROTO;
  if (b->control) {
    const Mpx__Control *c = b->control;
    if (c->kind < MPX__CONTROL__KIND__NONE || c->kind > MPX__CONTROL__KIND__STARTED)
      return MPX_EPROTO;
    if (!error_ok(c->error) || c->slots < 0) return MPX_EPROTO;
  }
  return MPX_OK;
}

/* A decoded Batch lives in one arena: protobuf-c allocates its structs, pointer arrays, bytes and
 * scratch slabs from a few large chunks instead of one malloc each, and mpx__codec_free releases
 * the chunks without walking the message. Every allocation is preceded by a header that leads
 * back to the arena, so the Batch pointer alone finds it whatever order protobuf-c allocates in. */
typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  max_align_t data[]; /* cap bytes */
} arena_chunk;

typedef struct arena {
  ProtobufCAllocator pc; /* first: protobuf-c's allocator_data points at the arena */
  arena_chunk *chunks;
  size_t next_cap;
} arena;

#define ARENA_MAGIC 0x6d70786172656e61ull /* "mpxarena" */
typedef struct arena_hdr {
  arena *owner;
  uint64_t magic;
} arena_hdr;
_Static_assert(sizeof(arena_hdr) % _Alignof(max_align_t) == 0, "arena header keeps alignment");

static void *arena_alloc(void *data, size_t size) {
  arena *a = data;
  const size_t al = _Alignof(max_align_t);
  if (size > SIZE_MAX - sizeof(arena_hdr) - al) return NULL;
  size_t need = (sizeof(arena_hdr) + size + al - 1) & ~(al - 1);
  arena_chunk *c = a->chunks;
  if (!c || c->cap - c->used < need) {
    size_t cap = need > a->next_cap ? need : a->next_cap;
    arena_chunk *n = malloc(sizeof *n + cap);
    if (!n) return NULL;
    n->used = 0;
    n->cap = cap;
    if (need > a->next_cap / 2 && c) { /* a big block: own chunk, keep filling the current one */
      n->next = c->next;
      c->next = n;
    } else {
      n->next = c;
      a->chunks = n;
      if (a->next_cap < ((size_t)1 << 26)) a->next_cap *= 2;
    }
    c = n;
  }
  arena_hdr *h = (arena_hdr *)((char *)c->data + c->used);
  c->used += need;
  *h = (arena_hdr){.owner = a, .magic = ARENA_MAGIC};
  return h + 1;
}

static void arena_free_one(void *data, void *p) { (void)data, (void)p; /* all at once, later */ }

static void arena_release(arena *a) {
  for (arena_chunk *c = a->chunks, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  free(a);
}

/* An arena whose first chunk holds `first_cap` bytes of allocations. */
static arena *arena_new(size_t first_cap) {
  arena *a = malloc(sizeof *a);
  if (!a) return NULL;
  a->pc = (ProtobufCAllocator){.alloc = arena_alloc, .free = arena_free_one, .allocator_data = a};
  a->chunks = NULL;
  a->next_cap = first_cap < 1024 ? 1024 : first_cap;
  return a;
}

/* ---- the fast decoder ---------------------------------------------------------------------
 * protobuf-c's generic unpack spends ~600 instructions on a 12-byte Task. For the common shape
 * of a Batch (only known fields, each singular message once: what mpx itself sends) this decoder
 * fills the same Mpx__* structs straight from the checked wire bytes into one block sized by the
 * wire check, with protobuf-c's conventions (proto3 defaults, last scalar wins, int32 as the low
 * 32 bits, strings NUL-terminated copies, empty bytes NULL). Anything else goes to protobuf-c.
 * codec_test and the fuzzer compare both decoders. */

typedef struct bump {
  uint8_t *p, *end;
} bump;

static void *bump_alloc(bump *z, size_t n) {
  n = ALIGN8(n);
  if ((size_t)(z->end - z->p) < n) return NULL;
  void *r = z->p;
  z->p += n;
  return r;
}

typedef struct wire_field {
  uint32_t num;
  int wt;
  uint64_t v;
  const uint8_t *d;
  size_t n;
} wire_field;

static inline int next_field(const uint8_t **pp, const uint8_t *end, wire_field *f) {
  uint64_t tag, n;
  if (rd_varint(pp, end, 5, &tag)) return -1;
  f->num = (uint32_t)(tag >> 3);
  f->wt = (int)(tag & 7);
  switch (f->wt) {
  case PROTOBUF_C_WIRE_TYPE_VARINT: return rd_varint(pp, end, 10, &f->v) ? -1 : 0;
  case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
    if (rd_varint(pp, end, 5, &n) || n > (uint64_t)(end - *pp)) return -1;
    f->d = *pp;
    f->n = (size_t)n;
    *pp += n;
    return 0;
  default: return -1; /* mpx.proto has no fixed-width fields */
  }
}

static int fd_bytes(bump *z, const wire_field *f, ProtobufCBinaryData *out) {
  if (f->wt != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) return -1;
  out->len = f->n;
  out->data = NULL;
  if (!f->n) return 0;
  if (!(out->data = bump_alloc(z, f->n))) return -1;
  memcpy(out->data, f->d, f->n);
  return 0;
}

static int fd_string(bump *z, const wire_field *f, char **out) {
  if (f->wt != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) return -1;
  char *s = bump_alloc(z, f->n + 1);
  if (!s) return -1;
  if (f->n) memcpy(s, f->d, f->n);
  s[f->n] = '\0';
  *out = s;
  return 0;
}

static inline int32_t unzigzag32(uint32_t v) {
  return (v & 1) ? -(int32_t)(v >> 1) - 1 : (int32_t)(v >> 1);
}

#define FD_VARINT(f) if ((f).wt != PROTOBUF_C_WIRE_TYPE_VARINT) return -1

static int fd_task(bump *z, const uint8_t *p, const uint8_t *end, Mpx__Task *t) {
  mpx__task__init(t);
  wire_field f;
  while (p < end) {
    if (next_field(&p, end, &f)) return -1;
    switch (f.num) {
    case 1: FD_VARINT(f); t->task_id = (uint32_t)f.v; break;
    case 2: FD_VARINT(f); t->call_id = f.v; break;
    case 3: if (fd_bytes(z, &f, &t->arg)) return -1; break;
    case 4: FD_VARINT(f); t->count = (uint32_t)f.v; break;
    case 5: FD_VARINT(f); t->item_size = f.v; break;
    case 6: FD_VARINT(f); t->result_size = f.v; break;
    case 7: FD_VARINT(f); t->var = (uint32_t)f.v; break;
    case 8: FD_VARINT(f); t->arg_shm = f.v; break;
    default: return -1;
    }
  }
  return 0;
}

static int fd_error(bump *z, const wire_field *outer, Mpx__Error **out) {
  if (outer->wt != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) return -1;
  Mpx__Error *e = bump_alloc(z, sizeof *e);
  if (!e) return -1;
  mpx__error__init(e);
  const uint8_t *p = outer->d, *end = outer->d + outer->n;
  wire_field f;
  while (p < end) {
    if (next_field(&p, end, &f)) return -1;
    switch (f.num) {
    case 1: FD_VARINT(f); e->code = unzigzag32((uint32_t)f.v); break;
    case 2: if (fd_string(z, &f, &e->message)) return -1; break;
    case 3: FD_VARINT(f); e->pid = (int32_t)(uint32_t)f.v; break;
    case 4: if (fd_string(z, &f, &e->host)) return -1; break;
    case 5: FD_VARINT(f); e->rank = (int32_t)(uint32_t)f.v; break;
    case 6: FD_VARINT(f); e->index = f.v; break;
    default: return -1;
    }
  }
  *out = e;
  return 0;
}

static int fd_result(bump *z, const uint8_t *p, const uint8_t *end, Mpx__Result *r) {
  mpx__result__init(r);
  wire_field f;
  while (p < end) {
    if (next_field(&p, end, &f)) return -1;
    switch (f.num) {
    case 1: FD_VARINT(f); r->call_id = f.v; break;
    case 2: if (fd_bytes(z, &f, &r->data)) return -1; break;
    case 3: if (r->error || fd_error(z, &f, &r->error)) return -1; break;
    case 4: FD_VARINT(f); r->data_shm = f.v; break;
    default: return -1;
    }
  }
  return 0;
}

static int fd_control(bump *z, const wire_field *outer, Mpx__Control **out) {
  if (outer->wt != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) return -1;
  Mpx__Control *c = bump_alloc(z, sizeof *c);
  if (!c) return -1;
  mpx__control__init(c);
  const uint8_t *p = outer->d, *end = outer->d + outer->n;
  wire_field f;
  while (p < end) {
    if (next_field(&p, end, &f)) return -1;
    switch (f.num) {
    case 1: FD_VARINT(f); c->kind = (Mpx__Control__Kind)(int32_t)(uint32_t)f.v; break;
    case 2: if (c->error || fd_error(z, &f, &c->error)) return -1; break;
    case 3: FD_VARINT(f); c->pid = (int32_t)(uint32_t)f.v; break;
    case 4: if (fd_string(z, &f, &c->host)) return -1; break;
    case 5: FD_VARINT(f); c->slots = (int32_t)(uint32_t)f.v; break;
    default: return -1;
    }
  }
  *out = c;
  return 0;
}

/* The hand-written codec knows these many fields per message; a field added to mpx.proto turns
 * the fast paths off (correct, slower) until fd_* and fe_* learn it. */
bool mpx__codec_fast(void) {
  return mpx__batch__descriptor.n_fields == 3 && mpx__task__descriptor.n_fields == 8 &&
         mpx__result__descriptor.n_fields == 4 && mpx__error__descriptor.n_fields == 6 &&
         mpx__control__descriptor.n_fields == 5;
}

/* Decode into `b` (initialised) with memory from `z`. -1: not the simple shape after all. */
static int fd_batch(bump *z, const uint8_t *buf, size_t len, Mpx__Batch *b) {
  const uint8_t *p = buf, *end = buf + len;
  wire_field f;
  size_t nt = 0, nr = 0;
  while (p < end) { /* count first: the pointer arrays are allocated once */
    if (next_field(&p, end, &f)) return -1;
    nt += f.num == 1;
    nr += f.num == 2;
  }
  if (nt) {
    Mpx__Task *ts = bump_alloc(z, nt * sizeof *ts);
    if (!(b->tasks = bump_alloc(z, nt * sizeof *b->tasks)) || !ts) return -1;
    for (size_t i = 0; i < nt; i++) b->tasks[i] = &ts[i];
  }
  if (nr) {
    Mpx__Result *rs = bump_alloc(z, nr * sizeof *rs);
    if (!(b->results = bump_alloc(z, nr * sizeof *b->results)) || !rs) return -1;
    for (size_t i = 0; i < nr; i++) b->results[i] = &rs[i];
  }
  for (p = buf; p < end;) {
    if (next_field(&p, end, &f) || f.wt != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) return -1;
    switch (f.num) {
    case 1:
      if (fd_task(z, f.d, f.d + f.n, b->tasks[b->n_tasks++])) return -1;
      break;
    case 2:
      if (fd_result(z, f.d, f.d + f.n, b->results[b->n_results++])) return -1;
      break;
    case 3:
      if (b->control || fd_control(z, &f, &b->control)) return -1;
      break;
    default: return -1;
    }
  }
  return 0;
}

/* The Batch from the fast decoder in `a`, or NULL to go the protobuf-c way. */
static Mpx__Batch *fast_unpack(arena *a, const uint8_t *buf, size_t len, size_t bytes) {
  Mpx__Batch *b = arena_alloc(a, sizeof *b);
  void *blk = b ? arena_alloc(a, bytes) : NULL;
  if (!blk) return NULL;
  mpx__batch__init(b);
  bump z = {blk, (uint8_t *)blk + bytes};
  return fd_batch(&z, buf, len, b) ? NULL : b;
}

static int batch_unpack(const uint8_t *buf, size_t len, const mpx__limits *lim, bool fast,
                        Mpx__Batch **out) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!lim || (!buf && len)) return MPX_EINVAL;
  if (len > lim->max_message) return MPX_ETOOBIG;
  static const uint8_t empty[1];
  if (!len) buf = empty; /* no arithmetic on NULL, and protobuf-c wants a pointer */
  wire_state st = {.lim = lim};
  int rc = len ? wire_walk(&st, &mpx__batch__descriptor, buf, buf + len, 1) : MPX_OK;
  if (rc) return rc;
  Mpx__Batch *b = NULL;
  arena *a;
  if (fast && !st.odd && mpx__codec_fast()) {
    /* room for the Batch, the block and their two headers */
    a = arena_new(ALIGN8(sizeof *b) + st.bytes + 2 * sizeof(arena_hdr) + 32);
    if (!a) return MPX_ENOMEM;
    b = fast_unpack(a, buf, len, st.bytes);
    if (!b) {
      arena_release(a);
      a = NULL;
    }
  }
  if (!b) {
    a = arena_new(1024 + 2 * st.bytes);
    if (!a) return MPX_ENOMEM;
    /* The wire check passed, so a NULL here is protobuf-c refusing something subtler (an
     * overlong encoding) or running out of memory; both end this message. */
    b = mpx__batch__unpack(&a->pc, len, buf);
    if (!b) {
      arena_release(a);
      return MPX_EPROTO;
    }
  }
  rc = batch_semantics(b, lim);
  if (rc) {
    arena_release(a);
    return rc;
  }
  *out = b;
  return MPX_OK;
}

int mpx__codec_unpack(const uint8_t *buf, size_t len, const mpx__limits *lim, Mpx__Batch **out) {
  return batch_unpack(buf, len, lim, true, out);
}

int mpx__codec_unpack_slow(const uint8_t *buf, size_t len, const mpx__limits *lim,
                           Mpx__Batch **out) {
  return batch_unpack(buf, len, lim, false, out);
}

void mpx__codec_free(Mpx__Batch *b) {
  if (!b) return;
  arena_hdr *h = (arena_hdr *)b - 1;
  if (h->magic != ARENA_MAGIC) abort(); /* not from mpx__codec_unpack: a bug in the caller */
  h->magic = 0;
  arena_release(h->owner);
}

/* ---- Batch pack -------------------------------------------------------------------------- */

static bool str_ok(const char *s, size_t max) { return !s || strnlen(s, max + 1) <= max; }

static bool error_fits(const Mpx__Error *e, size_t max) {
  return !e || (str_ok(e->message, max) && str_ok(e->host, max));
}

/* Items as mpx__wire_check counts them: tasks, results and unknown fields (kept by decoded
 * messages that are packed again). */
static size_t unknown_of(const void *m) {
  return m ? ((const ProtobufCMessage *)m)->n_unknown_fields : 0;
}

static int batch_pack(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out, bool use_fast) {
  if (!b || !lim || !out) return MPX_EINVAL;
  if (b->n_tasks > lim->max_items || b->n_results > lim->max_items - b->n_tasks)
    return MPX_ETOOBIG;
  size_t items = b->n_tasks + b->n_results + b->base.n_unknown_fields;
  for (size_t i = 0; i < b->n_tasks; i++) {
    if (b->tasks[i]->arg.len > lim->max_payload || b->tasks[i]->count > lim->max_items)
      return MPX_ETOOBIG;
    items += b->tasks[i]->base.n_unknown_fields;
  }
  for (size_t i = 0; i < b->n_results; i++) {
    const Mpx__Result *r = b->results[i];
    if (r->data.len > lim->max_payload || !error_fits(r->error, lim->max_payload))
      return MPX_ETOOBIG;
    items += r->base.n_unknown_fields + unknown_of(r->error);
  }
  if (b->control) {
    if (!error_fits(b->control->error, lim->max_payload) ||
        !str_ok(b->control->host, lim->max_payload))
      return MPX_ETOOBIG;
    items += b->control->base.n_unknown_fields + unknown_of(b->control->error);
  }
  if (items > lim->max_items) return MPX_ETOOBIG;
  /* the fast encoder when there are no unknown fields to carry and it knows the schema */
  bool fast = use_fast && items == b->n_tasks + b->n_results && mpx__codec_fast();
  size_t n = fast ? mpx__fe_batch_size(b) : protobuf_c_message_get_packed_size(&b->base);
  if (n > lim->max_message) return MPX_ETOOBIG;
  if (n == 0) return MPX_OK; /* the empty Batch is zero bytes */
  int rc = mpx__wbuf_reserve(out, n);
  if (rc) return rc;
  size_t w = fast ? (size_t)(mpx__fe_batch(out->data + out->len, b) - (out->data + out->len))
                  : protobuf_c_message_pack(&b->base, out->data + out->len);
  if (w != n) return MPX_EINVAL; /* a message that does not size consistently */
  out->len += n;
  return MPX_OK;
}

int mpx__codec_pack(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out) {
  return batch_pack(b, lim, out, true);
}

int mpx__codec_pack_slow(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out) {
  return batch_pack(b, lim, out, false);
}

int mpx__codec_pack_framed(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out) {
  if (!out) return MPX_EINVAL;
  size_t start = out->len;
  int rc = mpx__wbuf_reserve(out, MPX__FRAME_HDR);
  if (rc) return rc;
  out->len += MPX__FRAME_HDR;
  rc = mpx__codec_pack(b, lim, out);
  if (rc) {
    out->len = start;
    return rc;
  }
  mpx__frame_put_header(out->data + start, out->len - start - MPX__FRAME_HDR);
  return MPX_OK;
}

/* ---- frames ------------------------------------------------------------------------------ */

void mpx__frame_put_header(uint8_t hdr[MPX__FRAME_HDR], size_t len) {
  uint32_t n = (uint32_t)len;
  hdr[0] = (uint8_t)n;
  hdr[1] = (uint8_t)(n >> 8);
  hdr[2] = (uint8_t)(n >> 16);
  hdr[3] = (uint8_t)(n >> 24);
}

int mpx__frame_get_header(const uint8_t hdr[MPX__FRAME_HDR], const mpx__limits *lim, size_t *len) {
  if (!hdr || !lim || !len) return MPX_EINVAL;
  size_t n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
  if (n > lim->max_message) return MPX_ETOOBIG;
  *len = n;
  return MPX_OK;
}
