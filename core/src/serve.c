/* serve.c: the worker side shared by the process and MPI transports: run the Tasks of one decoded
 * Batch and pack one Batch of Results; run the worker initializer.
 *
 * Cost per Batch of N tasks: one allocation for N result slots (Result, Error and bookkeeping
 * together), one growable arena that small result bytes are copied into (Result.data points into
 * it once every task has run, since the arena may move while it grows), one task result buffer
 * with inline storage reused by every task, and the packed bytes appended to the caller's wbuf.
 * A result too large for the inline storage is handed over without a copy. Failures add one
 * message string each.
 *
 * A task id nothing is registered under never runs anything: it becomes an MPX_ENOTASK Result.
 *
 * Claims (process workers, who->progress set): each task is claimed in the progress page
 * (progress.h) just before it runs; a task whose claim the parent won (cancelled, or taken back
 * to run elsewhere) is skipped and gets no Result. Then its call id is stored as `running` for
 * the dispatcher (relaxed: a hint it reads racily, see progress.h). A claim word that reads 0 or
 * STARTED before the worker reached it means a task overwrote the page: serving stops with
 * MPX_EPROTO (the worker exits; the task run just before is named as running, so it is charged).
 *
 * Take-back words (MPI ranks, who->claims): the same without a page or `running`: one word per
 * task of the Batch, CASed from 0 to STARTED before the task runs; a task whose word the rank's
 * server took (TAKEN, given back to the dispatcher) is skipped without a Result.
 *
 * Whatever a task returns, the worker goes on serving: a failure's code is mapped into the task
 * failure set (mpx__task_code), an error result always fits (its message is cut to max_payload
 * bytes, then to a few bytes, then dropped, keeping the code), a result over max_payload or one
 * that does not fit the reply becomes an MPX_ETOOBIG error, and a result that cannot be copied
 * (no memory) an MPX_ENOMEM error. Only a failure of the worker itself (no memory for the reply)
 * is an error of mpx__serve_batch. The scheduler trusts none of this and checks again.
 *
 * The data plane (process workers, who->seg_min > 0): a task's result of at least seg_min bytes
 * is built in a memfd segment by mpx_buf_reserve (the task writes it in place), sealed after the
 * task, and travels out of band: its Result carries data_shm = its length and no data, and its
 * fd is handed to the caller (fds, in Result order, at most MPX__SERVE_SEGS per reply; later
 * results of the same reply go on the heap). Arguments arrive already mapped (worker.c): a Task
 * that still says arg_shm fails with MPX_EPROTO.
 *
 * Thread-safety: reentrant; tasks run on the calling thread, one after another, in Batch order. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "mpx/error.h"
#include "progress.h"
#include "task_impl.h"
#include "vchunk.h"

/* Results at least this large that already live on the heap are handed over, not copied. */
#define SERVE_STEAL_MIN 4096
/* Inline result storage: most small results never touch the heap. */
#define SERVE_INLINE 256
/* Error messages are cut to this when a reply of only errors would not fit otherwise. */
#define SERVE_SHORT_MSG 64

typedef struct serve_slot {
  Mpx__Result r;
  Mpx__Error e;
  size_t off;  /* result bytes at arena.data + off, when owned is NULL */
  void *owned; /* result bytes handed over from the task's buffer (freed after packing) */
  char *msg;   /* heap message of e */
  mpx__seg seg; /* the result's segment (data_shm), when it has one */
  bool oob;     /* owned goes as its own message (data_shm; MPI) */
} serve_slot;

static const mpx__worker_id no_worker = {.index = -1, .pid = 0, .rank = -1, .host = NULL};

/* Cut a message to at most max - 1 bytes at a UTF-8 character boundary. */
static void clip_to(char *m, size_t max) {
  if (!m) return;
  size_t n = strnlen(m, max);
  if (n < max) return;
  n = max - 1;
  while (n > 0 && ((unsigned char)m[n] & 0xC0) == 0x80) n--;
  m[n] = '\0';
}

static void clip_message(char *m) { clip_to(m, MPX__ERRMSG_MAX); }

/* Make slot `s` a failure; takes `msg` (heap or NULL). */
static void slot_fail(serve_slot *s, const mpx__worker_id *who, int code, char *msg,
                      uint64_t index) {
  free(s->msg);
  clip_message(msg);
  s->msg = msg;
  mpx__error__init(&s->e);
  s->e.code = mpx__task_code(code); /* the parent maps again: it trusts no worker */
  s->e.message = msg ? msg : (char *)mpx_strerror(code);
  s->e.pid = who->pid;
  s->e.host = (char *)(who->host ? who->host : "");
  s->e.rank = who->rank;
  s->e.index = index;
  s->r.error = &s->e;
}

/* Make the Error of slot `s` (if any) packable under lim: its message cut to max_payload bytes,
 * its host left out when longer. */
static void fit_error(serve_slot *s, const mpx__limits *lim) {
  if (!s->r.error) return;
  size_t max = lim->max_payload;
  if (s->e.host && strlen(s->e.host) > max) s->e.host = (char *)"";
  if (!s->e.message || strlen(s->e.message) <= max) return;
  if (!s->msg) { /* a static text: take a copy to cut */
    s->msg = strdup(s->e.message);
    s->e.message = s->msg ? s->msg : (char *)"";
  }
  if (s->msg) clip_to(s->msg, max + 1);
}

/* Copy `n` bytes to the arena for slot `s`. */
static int slot_copy(serve_slot *s, mpx__wbuf *arena, const void *data, size_t n) {
  s->off = arena->len;
  s->r.data.len = n;
  return mpx__wbuf_append(arena, data, n);
}

static int run_single(serve_slot *s, const Mpx__Task *t, const mpx_task *task,
                      const mpx__worker_id *who, mpx_buf *buf, mpx__wbuf *arena, size_t oob_min) {
  buf->len = 0;
  if (t->arg_shm) { /* the transport maps an out-of-band argument before serving */
    slot_fail(s, who, MPX_EPROTO, mpx__strdupf("task '%s': argument not mapped", task->name), 0);
    return MPX_OK;
  }
  char *msg = NULL;
  int rc = mpx__task_run(task, who->index, t->arg.data, t->arg.len, buf, &msg);
  if (rc) {
    if (buf->in_seg) mpx__buf_release(buf);
    slot_fail(s, who, rc, msg, 0);
    return MPX_OK;
  }
  if (buf->max && buf->len > buf->max) { /* a task that wrote around mpx_buf_reserve's check */
    slot_fail(s, who, MPX_ETOOBIG,
              mpx__strdupf("task '%s' returned %zu bytes, more than the limit of %zu", task->name,
                           buf->len, buf->max),
              0);
    return MPX_OK;
  }
  if (buf->in_seg) { /* built in a segment: it goes out of band, as it is */
    rc = buf->len && !(buf->max && buf->len > buf->max) ? mpx__buf_take_seg(buf, &s->seg)
                                                          : MPX_EINVAL;
    if (rc == MPX_OK) {
      s->r.data_shm = s->seg.len;
      return MPX_OK;
    }
    mpx__buf_release(buf); /* empty, or it could not be sealed: the bytes are lost */
    if (rc != MPX_EINVAL) {
      slot_fail(s, who, rc, mpx__strdupf("task '%s': result could not be sealed", task->name), 0);
      return MPX_OK;
    }
  }
  if (buf->heap && buf->len >= SERVE_STEAL_MIN) {
    s->oob = oob_min && buf->len >= oob_min; /* handed over as its own message, not packed */
    if (s->oob) s->r.data_shm = buf->len;
    else s->r.data.len = buf->len;
    s->owned = mpx__buf_steal(buf);
    return MPX_OK;
  }
  if (slot_copy(s, arena, buf->data, buf->len)) { /* the task's result, not the worker, fails */
    s->r.data.len = 0;
    slot_fail(s, who, MPX_ENOMEM, NULL, 0);
  }
  return MPX_OK;
}

static int run_chunk(serve_slot *s, const Mpx__Task *t, const mpx_task *task,
                     const mpx__worker_id *who, const mpx__limits *lim, mpx_buf *buf,
                     mpx__wbuf *arena) {
  uint64_t count = t->count, isz = t->item_size, rsz = t->result_size;
  if ((isz && count > UINT64_MAX / isz) || count * isz != (uint64_t)t->arg.len) {
    slot_fail(s, who, MPX_EPROTO,
              mpx__strdupf("map chunk of %" PRIu64 " items of %" PRIu64 " bytes has %zu bytes",
                           count, isz, t->arg.len),
              0);
    return MPX_OK;
  }
  if (count > lim->max_items) {
    slot_fail(s, who, MPX_ETOOBIG,
              mpx__strdupf("map chunk of %" PRIu64 " items exceeds the limit of %zu items", count,
                           lim->max_items),
              0);
    return MPX_OK;
  }
  if ((rsz && count > UINT64_MAX / rsz) || count * rsz > lim->max_payload) {
    slot_fail(s, who, MPX_ETOOBIG,
              mpx__strdupf("map chunk results of %" PRIu64 " x %" PRIu64
                           " bytes exceed the limit of %zu bytes",
                           count, rsz, lim->max_payload),
              0);
    return MPX_OK;
  }
  size_t total = (size_t)(count * rsz);
  int rc = mpx__wbuf_reserve(arena, total);
  if (rc) { /* no room for this chunk's results: it fails, the worker goes on */
    slot_fail(s, who, rc, NULL, 0);
    return MPX_OK;
  }
  s->off = arena->len;
  const uint8_t *arg = t->arg.data;
  uint64_t i;
  for (i = 0; i < count; i++) {
    buf->len = 0;
    char *msg = NULL;
    rc = mpx__task_run(task, who->index, arg ? arg + i * isz : NULL, (size_t)isz, buf, &msg);
    if (rc) {
      slot_fail(s, who, rc, msg, i);
      break;
    }
    if (buf->len != rsz) {
      slot_fail(s, who, MPX_ESIZE,
                mpx__strdupf("task '%s' item %" PRIu64 " returned %zu bytes, expected %" PRIu64,
                             task->name, i, buf->len, rsz),
                i);
      break;
    }
    if (rsz) memcpy(arena->data + s->off + i * rsz, buf->data, (size_t)rsz);
  }
  s->r.data.len = (size_t)(i * rsz);
  arena->len += s->r.data.len;
  return MPX_OK;
}

/* A variable-size chunk (vchunk.h): one record per item into the arena; only a malformed chunk
 * (or no memory) fails it whole. */
static int run_vchunk(serve_slot *s, const Mpx__Task *t, const mpx_task *task,
                      const mpx__worker_id *who, const mpx__limits *lim, mpx__wbuf *arena) {
  if (t->count > lim->max_items) {
    slot_fail(s, who, MPX_ETOOBIG, mpx__strdupf("map chunk of %" PRIu32 " items exceeds the "
                                                "limit of %zu items", t->count, lim->max_items), 0);
    return MPX_OK;
  }
  s->off = arena->len;
  char *why = NULL;
  int rc = mpx__vchunk_serve(task, who->index, t->var, t->arg.data, t->arg.len, t->count,
                             t->item_size, lim->max_payload, arena, &why);
  if (rc) slot_fail(s, who, rc, why, 0);
  else s->r.data.len = arena->len - s->off;
  return MPX_OK;
}

/* Largest successful data; NULL if none carries data. */
static serve_slot *largest_data(serve_slot *slots, size_t n) {
  serve_slot *best = NULL;
  for (size_t i = 0; i < n; i++)
    if (!slots[i].r.error && slots[i].r.data.len && (!best || slots[i].r.data.len > best->r.data.len))
      best = &slots[i];
  return best;
}

static int serve(const Mpx__Batch *in, const mpx__worker_id *who, const mpx__limits *lim,
                 mpx__wbuf *out, int *fds, int *nfds, void **bufs, size_t *lens, int *nbufs);

int mpx__serve_batch(const Mpx__Batch *in, const mpx__worker_id *who, const mpx__limits *lim,
                     mpx__wbuf *out) {
  return serve(in, who, lim, out, NULL, NULL, NULL, NULL, NULL);
}

int mpx__serve_batch_fds(const Mpx__Batch *in, const mpx__worker_id *who,
                         const mpx__limits *lim, mpx__wbuf *out, int *fds, int *nfds) {
  if (!fds || !nfds) return MPX_EINVAL;
  return serve(in, who, lim, out, fds, nfds, NULL, NULL, NULL);
}

int mpx__serve_batch_oob(const Mpx__Batch *in, const mpx__worker_id *who,
                         const mpx__limits *lim, mpx__wbuf *out, void **bufs, size_t *lens,
                         int *n) {
  if (!bufs || !lens || !n) return MPX_EINVAL;
  return serve(in, who, lim, out, NULL, NULL, bufs, lens, n);
}

static int serve(const Mpx__Batch *in, const mpx__worker_id *who, const mpx__limits *lim,
                 mpx__wbuf *out, int *fds, int *nfds, void **bufs, size_t *lens, int *nbufs) {
  if (!in || !lim || !out) return MPX_EINVAL;
  if (nfds) *nfds = 0;
  if (nbufs) *nbufs = 0;
  mpx__worker_id anon = no_worker;
  if (!who) {
    anon.pid = (int)getpid();
    who = &anon;
  }
  size_t n = in->n_tasks;
  if (n > lim->max_items) return MPX_ETOOBIG; /* the reply could never be sent */
  if (n > SIZE_MAX / (sizeof(serve_slot) + sizeof(Mpx__Result *))) return MPX_ENOMEM;
  serve_slot *slots = NULL;
  Mpx__Result **ptrs = NULL;
  if (n) {
    /* one block: slots, then the pointer array protobuf-c wants */
    slots = malloc(n * (sizeof *slots + sizeof *ptrs));
    if (!slots) return MPX_ENOMEM;
    ptrs = (Mpx__Result **)(slots + n);
  }
  mpx__wbuf arena = {0};
  uint8_t small[SERVE_INLINE];
  mpx_buf buf;
  mpx__buf_init(&buf, small, sizeof small, lim->max_payload);
  int segs = 0, oobs = 0;
  int rc = MPX_OK;
  size_t done = 0, m = 0; /* m: results to send (tasks not skipped) */
  mpx__progress *pg = who->progress;
  for (; done < n; done++) {
    serve_slot *s = &slots[done];
    const Mpx__Task *t = in->tasks[done];
    mpx__result__init(&s->r);
    s->r.call_id = t->call_id;
    s->off = 0;
    s->owned = NULL;
    s->msg = NULL;
    s->seg = MPX__SEG_NONE;
    s->oob = false;
    buf.seg_min = fds && segs < MPX__SERVE_SEGS && !t->count ? who->seg_min : 0;
    size_t oob_min = bufs && oobs < MPX__SERVE_SEGS ? who->oob_min : 0;
    if (pg) {
      /* a stop request names one task (progress.h): none is left for this one before we claim
       * it, so the canceller, who writes after it saw our claim, can only reach this task.
       * relaxed: a polled flag */
      atomic_store_explicit(&pg->stop, 0, memory_order_relaxed);
      int claim = mpx__claim_start(pg, (*who->seq)++, MPX__CALL_ADDR(t->call_id));
      if (claim < 0) {
        /* A corrupt page: stop. The task run just before is the likely culprit: name it as the
         * one running, so that the worker's loss charges it (and not the tasks after it, which
         * go back to the queue uncharged); relaxed as every store of `running`. */
        atomic_store_explicit(&pg->running, done ? in->tasks[done - 1]->call_id : 0,
                              memory_order_relaxed);
        rc = MPX_EPROTO;
        done++;
        break;
      }
      if (!claim) continue; /* the parent has it */
      atomic_store_explicit(&pg->running, t->call_id, memory_order_relaxed);
      mpx__tl_stop = (mpx__stop_src){.word = &pg->stop, .word_all = &pg->stop_all,
                                     .id = MPX__CALL_ADDR(t->call_id)};
    } else if (who->claims) {
      uint64_t queued = 0;
      /* relaxed: one CAS on this word wins (the rank's server takes it with one too), and
       * neither side reads anything the other wrote for it */
      if (!atomic_compare_exchange_strong_explicit(&who->claims[done], &queued,
                                                   MPX__CLAIM_STARTED, memory_order_relaxed,
                                                   memory_order_relaxed))
        continue; /* taken back by the rank's server, which reported it to the dispatcher */
    }
    if (!pg && who->halt) /* MPI: the rank's stop requests name tasks by call id */
      mpx__tl_stop = (mpx__stop_src){.halt = who->halt, .id = t->call_id};
    ptrs[m++] = &s->r;
    const mpx_task *task;
    if (mpx_task_find_id(t->task_id, &task)) {
      slot_fail(s, who, MPX_ENOTASK,
                mpx__strdupf("no task is registered with id 0x%08" PRIx32, t->task_id), 0);
      continue;
    }
    rc = t->var   ? run_vchunk(s, t, task, who, lim, &arena)
         : t->count ? run_chunk(s, t, task, who, lim, &buf, &arena)
                  : run_single(s, t, task, who, &buf, &arena, oob_min);
    segs += s->seg.fd >= 0;
    oobs += s->oob;
    if (rc) {
      done++;
      break;
    }
  }
  mpx__tl_stop = (mpx__stop_src){0};
  mpx__buf_release(&buf);
  if (rc == MPX_OK) {
    for (size_t i = 0; i < n; i++)
      if (!slots[i].owned) slots[i].r.data.data = slots[i].r.data.len ? arena.data + slots[i].off
                                                                      : NULL;
      else
        slots[i].r.data.data = slots[i].owned;
    /* an error result always fits: no string over max_payload (messages are cut, a host name
     * that long is left out), whatever max_payload is */
    for (size_t i = 0; i < n; i++) fit_error(&slots[i], lim);
    Mpx__Batch reply = MPX__BATCH__INIT;
    reply.n_results = m;
    reply.results = ptrs;
    while ((rc = mpx__codec_pack(&reply, lim, out)) == MPX_ETOOBIG) {
      /* Each result fits but together they do not: fail the largest until the rest fit. */
      serve_slot *big = largest_data(slots, n);
      if (!big) break;
      slot_fail(big, who, MPX_ETOOBIG,
                mpx__strdupf("result of %zu bytes does not fit in one reply of at most %zu bytes "
                             "with the other results",
                             big->r.data.len, lim->max_message),
                0);
      fit_error(big, lim);
      big->r.data.len = 0;
      big->r.data_shm = 0;
    }
    if (rc == MPX_ETOOBIG) {
      /* Errors alone are too many for one reply: keep their codes, shorten their messages. */
      for (size_t i = 0; i < n; i++)
        if (slots[i].r.error && slots[i].msg) clip_to(slots[i].msg, SERVE_SHORT_MSG);
        else if (slots[i].r.error) slots[i].e.message = (char *)"";
      rc = mpx__codec_pack(&reply, lim, out);
    }
    if (rc == MPX_ENOMEM) {
      /* No memory for the reply as it is: every result becomes a bare MPX_ENOMEM error (or
       * keeps its own code), which needs a few bytes per task. */
      for (size_t i = 0; i < n; i++) {
        if (!slots[i].r.error) slot_fail(&slots[i], who, MPX_ENOMEM, NULL, 0);
        slots[i].r.data.len = 0;
        slots[i].r.data_shm = 0;
      }
      rc = MPX_ETOOBIG; /* and strip the messages below */
    }
    if (rc == MPX_ETOOBIG) {
      /* Still too large: codes alone (a failed chunk's partial results go too). */
      for (size_t i = 0; i < n; i++)
        if (slots[i].r.error) {
          slots[i].e.message = (char *)"";
          slots[i].e.host = (char *)"";
          slots[i].r.data.len = 0;
        }
      rc = mpx__codec_pack(&reply, lim, out);
    }
  }
  for (size_t i = 0; i < done; i++) {
    /* a segment goes to the caller only if its Result still says so (the fallbacks above turn
     * results into errors) and the reply was packed */
    if (rc == MPX_OK && slots[i].seg.fd >= 0 && slots[i].r.data_shm && !slots[i].r.error) {
      fds[(*nfds)++] = slots[i].seg.fd;
      slots[i].seg.fd = -1;
    }
    mpx__seg_free(&slots[i].seg);
    if (rc == MPX_OK && slots[i].oob && slots[i].r.data_shm && !slots[i].r.error) {
      bufs[*nbufs] = slots[i].owned; /* the caller sends it with the reply, then frees it */
      lens[(*nbufs)++] = (size_t)slots[i].r.data_shm;
      slots[i].owned = NULL;
    }
    mpx__seg_pool_free(slots[i].owned, 0); /* a pool block (task.c), or the heap's */
    free(slots[i].msg);
  }
  mpx__wbuf_free(&arena);
  free(slots);
  return rc;
}

char *mpx__control_fit(Mpx__Control *c, const mpx__limits *lim) {
  if (!c || !lim) return NULL;
  size_t max = lim->max_payload;
  if (c->host && strlen(c->host) > max) c->host = (char *)"";
  Mpx__Error *e = c->error;
  if (!e) return NULL;
  if (e->host && strlen(e->host) > max) e->host = (char *)"";
  if (!e->message || strlen(e->message) <= max) return NULL;
  char *cut = strdup(e->message);
  if (cut) clip_to(cut, max + 1);
  e->message = cut ? cut : (char *)"";
  return cut;
}

int mpx__serve_init(const char *initializer_name, const void *initargs, size_t len,
                    const mpx__worker_id *who, char **message) {
  if (message) *message = NULL;
  if (!initializer_name || !*initializer_name) return MPX_OK;
  if (!initargs && len) return MPX_EINVAL;
  mpx__worker_id anon = no_worker;
  if (!who) {
    anon.pid = (int)getpid();
    who = &anon;
  }
  const mpx_task *task;
  if (mpx_task_find(initializer_name, &task)) {
    if (message)
      *message = mpx__strdupf("no initializer task is registered as '%s'", initializer_name);
    return MPX_ENOTASK;
  }
  uint8_t small[SERVE_INLINE];
  mpx_buf buf;
  mpx__buf_init(&buf, small, sizeof small, 0);
  char *msg = NULL;
  int rc = mpx__task_run(task, who->index, initargs, len, &buf, &msg);
  mpx__buf_release(&buf);
  if (rc == MPX_OK) return MPX_OK;
  if (message)
    *message = mpx__strdupf("initializer '%s' failed (%s): %s", initializer_name,
                            mpx_err_name(rc), msg ? msg : mpx_strerror(rc));
  free(msg);
  return MPX_EINIT;
}
