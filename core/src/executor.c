/* executor.c: the public executor: options, submit, map, shutdown, destroy.
 *
 * The executor resolves options (workers and placement from hwloc, the initializer by name, the
 * backend, found in the list of transports: registry.h), then hands futures to one runner
 * (runner.h): the transport's own when it takes futures (threads), or the dispatcher
 * (dispatch.c) that batches them onto the transport's link (processes, MPI). It never looks at
 * which transport runs: what differs is in the transport's capability word (config.h). An option
 * the transport lacks the capability for (time limits, retries, max_tasks_per_worker) is refused
 * with MPX_EPERM, never ignored; seconds must be finite (MPX_EINVAL).
 *
 * map with a timeout may return while chunks run: they then work in a private block that map and
 * each chunk future hold a reference on, freed by the last to let go (see the map section).
 *
 * Shutdown races with submit: `shut` only makes later submits fail fast; the transport's close
 * decides, inside its own queue operations, which racing submit got in (it is run) and which did
 * not (it fails with MPX_ESHUTDOWN). Nothing on the submit path is shared between submitters.
 *
 * Calls from the executor's own threads (a done-callback or a task running on one of its workers
 * or on its dispatcher; mpx__tl_transport says which): such a thread cannot wait for itself.
 * shutdown(wait) there shuts down without waiting and answers MPX_ESTATE. destroy there, or in any
 * done-callback (which may run inside this executor's shutdown on the user's thread, cancelling
 * futures), is deferred: it shuts down and hands the executor to a detached reaper thread, which
 * waits until no shutdown call is in progress (`active`), then destroys it as destroy does
 * (waiting for the queued tasks, joining the threads: the calling one by then has returned from
 * its callback) and frees it. mpx_finalize, and mpx_executor_create outside callbacks and
 * executor threads, wait for the reapers (an MPI communicator is free again only then). */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "executor_impl.h"
#include "future_impl.h"
#include "mpx/proto.h"
#include "registry.h"
#include "os/log.h"
#include "os/reaper.h"
#include "os/seg.h"

struct mpx_executor {
  const mpx__runner_ops *ops;
  mpx__runner *tp;
  mpx__config cfg;
  mpx__gate gate;
  _Atomic bool shut;
  _Atomic int active;   /* shutdown calls in progress: a deferred destroy waits for them */
};

#define MPX__DEFAULT_MAX_PAYLOAD ((size_t)1 << 30)

/* AUTO -> MPX_BACKEND from the environment, else the transport that claimed the job in mpx_init
 * (MPI when this is an MPI job), else threads. */
static int resolve_backend(mpx_backend b, mpx_backend *out) {
  if (b == MPX_BACKEND_AUTO) {
    const char *env = getenv("MPX_BACKEND");
    if (env && *env && mpx__backend_parse(env, &b)) {
      mpx__set_errmsg("MPX_BACKEND=%s is not one of auto, threads, processes, mpi", env);
      return MPX_EINVAL;
    }
    if (b == MPX_BACKEND_AUTO) b = mpx__transport_auto();
  }
  *out = b;
  return MPX_OK;
}

/* Seconds an option gives must be a finite number: NaN and infinities are refused. The check is
 * made as a float too, the width a per-submit timeout is kept in. */
static int check_seconds(const char *what, double s) {
  if (isfinite(s) && isfinite((float)s)) return MPX_OK;
  mpx__set_errmsg("%s is %g: not a finite number of seconds", what, s);
  return MPX_EINVAL;
}

/* An option the transport cannot honour (it lacks capability `cap`) is refused, never ignored. */
static int check_cap(const mpx__config *c, bool asked, unsigned cap, const char *what, double v) {
  if (!asked || (c->caps & cap)) return MPX_OK;
  bool here = !(c->caps & MPX__CAP_ENCODES); /* tasks run on threads of this process */
  const char *why = cap == MPX__CAP_KILL_ONE
                        ? (here ? "a task runs on a thread of this process, which cannot be "
                                  "stopped alone"
                                : "one worker cannot be ended without ending the job")
                    : cap == MPX__CAP_RETRY
                        ? (here ? "a task is never lost with its worker thread, so it is never "
                                  "run again"
                                : "a lost worker is not replaced (it ends the job)")
                        : "its workers cannot be replaced";
  mpx__set_errmsg("%s = %g is not supported on the %s backend: %s", what, v, c->transport->name,
                  why);
  return MPX_EPERM;
}

/* A scheduler period (silent_after, sweep_interval, limit_interval) set on a backend whose
 * scheduler has no such period (`applies` false) is refused, never ignored. */
static int check_period(const mpx__config *c, const char *what, double v, bool applies) {
  if (v <= 0 || applies) return MPX_OK;
  mpx__set_errmsg("%s = %g is not supported on the %s backend: its scheduler has no such period",
                  what, v, c->transport->name);
  return MPX_EPERM;
}

static int out_of_range(const char *what) {
  mpx__set_errmsg("option %s is out of range", what);
  return MPX_EINVAL;
}

static int resolve_options(mpx_executor *ex, const mpx_options *o) {
  mpx__config *c = &ex->cfg;
  if (o->backend < MPX_BACKEND_AUTO || o->backend > MPX_BACKEND_MPI) return out_of_range("backend");
  if (o->workers < 0) return out_of_range("workers");
  if (o->binding < MPX_BIND_NONE || o->binding > MPX_BIND_NUMA) return out_of_range("binding");
  if (o->max_tasks_per_worker < 0) return out_of_range("max_tasks_per_worker");
  if (o->on_full < MPX_FULL_BLOCK || o->on_full > MPX_FULL_FAIL) return out_of_range("on_full");
  if (o->retries < 0) return out_of_range("retries");
  if (o->threads_per_rank < 0) return out_of_range("threads_per_rank");
  if (o->root_threads < -1) return out_of_range("root_threads");
  if (!o->initargs && o->initargs_len) return out_of_range("initargs_len (initargs is NULL)");
  int rc = check_seconds("task_timeout", o->task_timeout);
  if (rc) return rc;
  if (o->task_timeout < 0) return out_of_range("task_timeout");
  if ((rc = check_seconds("stall_timeout", o->stall_timeout))) return rc;
  if (o->stall_timeout < 0) return out_of_range("stall_timeout");
  const struct { const char *what; double v; } periods[] = {
      {"silent_after", o->silent_after},
      {"sweep_interval", o->sweep_interval},
      {"limit_interval", o->limit_interval}};
  for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++) {
    if ((rc = check_seconds(periods[i].what, periods[i].v))) return rc;
    if (periods[i].v < 0) return out_of_range(periods[i].what);
  }
  if ((rc = resolve_backend(o->backend, &c->backend)) ||
      (rc = mpx__transport_find(c->backend, &c->transport)))
    return rc;
  c->caps = c->transport->caps;
  if ((rc = check_cap(c, o->task_timeout > 0, MPX__CAP_KILL_ONE, "task_timeout",
                      o->task_timeout)) ||
      (rc = check_cap(c, o->stall_timeout > 0 && !(c->caps & MPX__CAP_TAKEBACK),
                      MPX__CAP_KILL_ONE, "stall_timeout", o->stall_timeout)) ||
      (rc = check_cap(c, o->retries > 0, MPX__CAP_RETRY, "retries", o->retries)) ||
      (rc = check_cap(c, o->max_tasks_per_worker > 0, MPX__CAP_RECYCLE, "max_tasks_per_worker",
                      (double)o->max_tasks_per_worker)) ||
      (rc = check_period(c, "silent_after", o->silent_after, c->transport->link != NULL)) ||
      (rc = check_period(c, "sweep_interval", o->sweep_interval, c->caps & MPX__CAP_KILL_ONE)) ||
      (rc = check_period(c, "limit_interval", o->limit_interval, c->caps & MPX__CAP_KILL_ONE)))
    return rc;
  c->silent_after = o->silent_after > 0 ? o->silent_after : 5e-3;
  c->sweep_interval = o->sweep_interval > 0 ? o->sweep_interval : 20e-3;
  c->limit_interval = o->limit_interval > 0 ? o->limit_interval : 10e-3;
  c->link = c->transport->link; /* NULL for a runner */
  if (o->initializer && (rc = mpx_task_find(o->initializer, &c->initializer))) {
    mpx__set_errmsg("initializer '%s' is not a registered task", o->initializer);
    return rc;
  }
  const mpx_topology *topo;
  mpx_topo_info info;
  if ((rc = mpx_topology_get(&topo)) || (rc = mpx_topology_info(topo, &info))) return rc;
  c->initargs = o->initargs;
  c->initargs_len = o->initargs_len;
  c->max_tasks_per_worker = o->max_tasks_per_worker;
  c->max_payload = o->max_payload ? o->max_payload : MPX__DEFAULT_MAX_PAYLOAD;
  c->retries = o->retries;
  c->task_timeout = o->task_timeout;
  c->stall_timeout = o->stall_timeout > 0 ? o->stall_timeout : 5.0;
  c->threads_per_rank = o->threads_per_rank;
  c->root_threads = o->root_threads;
  if (o->arg_reserve) { /* the process data plane's segments (dataplane.c) */
    if (!(c->caps & MPX__CAP_SHM) || (c->caps & MPX__CAP_OOB)) {
      mpx__set_errmsg("arg_reserve = %zu is not supported on the %s backend: its arguments do not "
                      "travel in shared memory segments", o->arg_reserve, c->transport->name);
      return MPX_EPERM;
    }
    if (o->arg_reserve < MPX__SEG_MIN || o->arg_reserve > c->max_payload) {
      mpx__set_errmsg("arg_reserve (%zu) must be from %zu (smaller arguments travel in the frame) "
                      "to max_payload (%zu)", o->arg_reserve, MPX__SEG_MIN, c->max_payload);
      return MPX_EINVAL;
    }
  }
  c->arg_reserve = o->arg_reserve;
  if (o->max_worker_memory && (c->max_payload > SIZE_MAX - ((size_t)64 << 10) ||
                               o->max_worker_memory < c->max_payload + ((size_t)64 << 10))) {
    mpx__set_errmsg("max_worker_memory (%zu) must be at least max_payload (%zu) + 64 KiB",
                    o->max_worker_memory, c->max_payload);
    return MPX_EINVAL;
  }
  /* as given: the process link's configure resolves 0, other links clear it; runners ignore it */
  c->max_worker_memory = c->link ? o->max_worker_memory : 0;
  c->workers = c->workers_opt = o->workers;
  /* a transport may set its own worker count (MPI: ranks) or refuse options */
  if (c->link && c->link->configure && (rc = c->link->configure(c))) return rc;
  if (!c->workers) c->workers = info.default_workers;
  c->binding = o->binding;
  c->places = calloc((size_t)c->workers, sizeof *c->places);
  if (!c->places) return MPX_ENOMEM;
  if ((rc = mpx_topology_place(topo, c->binding, c->workers, c->places))) return rc;
  if (o->max_pending) {
    mpx__gate_init(&ex->gate, o->max_pending, o->on_full == MPX_FULL_FAIL);
    c->gate = &ex->gate;
  }
  return MPX_OK;
}

int mpx_executor_create(mpx_executor **out, const mpx_options *opt) {
  return mpx__executor_create_on(out, opt, NULL);
}

/* INFO: the backend (and whether AUTO chose it), how many workers and where they are bound. */
static void log_created(const mpx_executor *ex, mpx_backend asked) {
  if (MPX_LOG_INFO > atomic_load_explicit(&mpx__log_gate, memory_order_relaxed)) return;
  const mpx__config *c = &ex->cfg;
  static const char *const bind[] = {"none", "core", "pu", "numa"};
  char where[256] = "unbound";
  size_t k = 0;
  if (c->binding > MPX_BIND_NONE && c->binding <= MPX_BIND_NUMA)
    k = (size_t)snprintf(where, sizeof where, "bound per %s to CPUs", bind[c->binding]);
  for (int i = 0; k && i < c->workers && k < sizeof where; i++)
    k += (size_t)snprintf(where + k, sizeof where - k, "%s %s", i ? ";" : "",
                          c->places[i].cpuset[0] ? c->places[i].cpuset : "-");
  mpx__log(MPX_LOG_INFO, "executor: backend %s%s, %d workers%s, %s", mpx_backend_name(c->backend),
           asked == MPX_BACKEND_AUTO ? " (chosen by auto)" : "",
           c->slots > 0 ? c->slots : c->workers,
           c->backend == MPX_BACKEND_MPI ? " (MPI slots)" : "", where);
}

int mpx__executor_create_on(mpx_executor **out, const mpx_options *opt, void *endpoint) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  /* an executor destroyed from a callback is gone first (its MPI communicator is free again);
   * not on a thread a reaper may be joining, which would wait for itself */
  if (!mpx__tl_transport && !mpx__tl_callbacks) mpx__reaper_wait();
  static const mpx_options defaults;
  mpx_executor *ex = calloc(1, sizeof *ex);
  if (!ex) return MPX_ENOMEM;
  ex->cfg.endpoint = endpoint;
  int rc = resolve_options(ex, opt ? opt : &defaults);
  if (!rc) {
    ex->ops = ex->cfg.link ? &mpx__dispatch_runner : ex->cfg.transport->runner;
    rc = ex->ops->start(&ex->tp, &ex->cfg);
  }
  if (rc) {
    free(ex->cfg.places);
    free(ex);
    return rc;
  }
  log_created(ex, opt ? opt->backend : MPX_BACKEND_AUTO);
  *out = ex;
  return MPX_OK;
}

/* Tasks that run at once: the workers, or the threads over MPI ranks. */
static int slots(const mpx_executor *ex) {
  return ex->cfg.slots > 0 ? ex->cfg.slots : ex->cfg.workers;
}

int mpx_executor_workers(const mpx_executor *ex) { return ex ? slots(ex) : MPX_EINVAL; }
int mpx_executor_backend(const mpx_executor *ex) { return ex ? (int)ex->cfg.backend : MPX_EINVAL; }

/* Queue `f` (already holding the scheduler's reference) or fail it back to the caller. */
static int submit_future(mpx_executor *ex, mpx_future *f) {
  /* not yet published: a plain read and write of the state word will do */
  if (ex->cfg.caps & MPX__CAP_POLLED)
    atomic_store_explicit(&f->state,
                          atomic_load_explicit(&f->state, memory_order_relaxed) | MPX__F_BRIEF_SPIN,
                          memory_order_relaxed);
  int rc = ex->ops->submit(ex->tp, f);
  if (rc) {
    if (ex->cfg.gate) mpx__gate_leave(ex->cfg.gate);
    mpx_future_release(f);
    mpx__future_drop(f);
  }
  return rc;
}

/* Fail fast after shutdown, and take a place under max_pending. */
static int enter(mpx_executor *ex) {
  if (atomic_load_explicit(&ex->shut, memory_order_relaxed)) return MPX_ESHUTDOWN;
  return ex->cfg.gate ? mpx__gate_enter(ex->cfg.gate, &ex->shut) : MPX_OK;
}

int mpx__executor_submit(mpx_executor *ex, mpx_future *f) {
  int rc = enter(ex);
  if (rc) {
    mpx__set_errmsg("cannot submit task '%s': %s", f->task->name, mpx_strerror(rc));
    mpx_future_release(f);
    mpx__future_drop(f);
    return rc;
  }
  return submit_future(ex, f);
}
int mpx__executor_slots(const mpx_executor *ex) { return slots(ex); }
bool mpx__executor_encodes(const mpx_executor *ex) { return ex->cfg.caps & MPX__CAP_ENCODES; }
size_t mpx__executor_max_payload(const mpx_executor *ex) { return ex->cfg.max_payload; }

/* Per-submit options: a finite timeout; a time limit and retries only where the transport can
 * honour them (as the executor's options). */
static int check_submit_opts(const mpx_executor *ex, const mpx_submit_opts *o) {
  if (o->retries > INT16_MAX) {
    mpx__set_errmsg("per-submit retries = %d exceeds %d", o->retries, INT16_MAX);
    return MPX_EINVAL;
  }
  int rc = check_seconds("per-submit timeout", o->timeout);
  if (!rc) rc = check_cap(&ex->cfg, o->timeout > 0, MPX__CAP_KILL_ONE, "per-submit timeout",
                          o->timeout);
  if (!rc) rc = check_cap(&ex->cfg, o->retries > 0, MPX__CAP_RETRY, "per-submit retries",
                          o->retries);
  return rc;
}

/* Submit `task` on `arg`, handled per `mode` (MPX__ARG_*: with ADOPT, arg is a malloc'd block
 * that is ours to free, whatever happens). A NULL `out` is fire and forget: the caller's reference
 * is dropped at once (the task still runs; its outcome is for done-callbacks of nobody). */
static int submit_one(mpx_executor *ex, const mpx_task *task, const void *arg, size_t len,
                      const mpx_submit_opts *opts, int mode, mpx_future **out) {
  int rc = MPX_OK;
  if (!ex || !task || (!arg && len)) {
    mpx__set_errmsg("submit: %s", !ex ? "the executor is NULL" : !task ? "the task is NULL"
                                                        : "arg is NULL with len > 0");
    rc = MPX_EINVAL;
  } else if (opts && (rc = check_submit_opts(ex, opts))) {
    /* rc and the message are set */
  } else if ((ex->cfg.caps & MPX__CAP_ENCODES) && len > ex->cfg.max_payload) {
    mpx__set_errmsg("argument of %zu bytes to task '%s' exceeds max_payload (%zu)", len,
                    task->name, ex->cfg.max_payload);
    rc = MPX_ETOOBIG;
  }
  if (!rc) rc = enter(ex);
  if (mode == MPX__ARG_COPY && opts && opts->borrow) mode = MPX__ARG_BORROW;
  mpx_future *f = rc ? NULL : mpx__future_new(task, arg, len, mode);
  if (!rc && !f) {
    if (ex->cfg.gate) mpx__gate_leave(ex->cfg.gate);
    mpx__set_errmsg("no memory for a future (or the %zu-byte copy of its argument)", len);
    rc = MPX_ENOMEM;
  }
  if (rc) {
    if (mode == MPX__ARG_ADOPT) free((void *)arg);
    return rc;
  }
  if (opts) {
    f->retries = (int16_t)(opts->retries < 0 ? -1 : opts->retries);
    f->timeout = (float)opts->timeout;
  }
  rc = submit_future(ex, f);
  if (rc) return rc;
  if (out) *out = f;
  else mpx_future_release(f); /* fire and forget */
  return MPX_OK;
}

int mpx_submit_task(mpx_executor *ex, const mpx_task *task, const void *arg, size_t len,
                    const mpx_submit_opts *opts, mpx_future **out) {
  if (out) *out = NULL;
  return submit_one(ex, task, arg, len, opts, MPX__ARG_COPY, out);
}

int mpx_submit_msg(mpx_executor *ex, const char *task, const ProtobufCMessage *msg,
                   const mpx_submit_opts *opts, mpx_future **out) {
  if (out) *out = NULL;
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  void *data;
  size_t len;
  if ((rc = mpx_msg_pack(msg, &data, &len))) return rc;
  return submit_one(ex, t, data, len, opts, MPX__ARG_ADOPT, out);
}

int mpx_submit(mpx_executor *ex, const char *task, const void *arg, size_t len, mpx_future **out) {
  if (out) *out = NULL;
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  return mpx_submit_task(ex, t, arg, len, NULL, out);
}

int mpx_future_result_msg(mpx_future *f, double timeout, const ProtobufCMessageDescriptor *d,
                          size_t max_len, ProtobufCMessage **out) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  const void *data;
  size_t len;
  int rc = mpx_future_result(f, timeout, &data, &len);
  if (rc) return rc;
  return mpx_msg_unpack(d, data ? data : "", len, max_len, out);
}

/* ---- map ----------------------------------------------------------------------------------
 * Without a timeout, map waits for every chunk, so chunks read the caller's items and write the
 * caller's results in place (no copy), and their descriptors live in map's own array.
 *
 * With a timeout, map returns at the deadline whatever still runs, and the caller may free its
 * items and results at once. So the chunks work in one private block (mpx__map_private,
 * future_impl.h): their descriptors, a copy of the items and room for the results. Map copies a
 * chunk's results out when it sees the chunk done, before the deadline or at it; at the deadline
 * it cancels the chunks that have not started and returns. A chunk still running finishes into
 * the block, whose results are dropped; map and each chunk future hold a reference on the block,
 * and whichever lets go last frees it (map at return, a future when it is freed: future.c). */

typedef struct map_run {
  mpx__map_chunk *chunks;
  mpx__map_private *priv; /* with a timeout; NULL: in place */
  unsigned char *results; /* the caller's */
  size_t result_size;
  mpx_future **fs;
  size_t nchunks, submitted;
} map_run;

#define MAP_ALIGN 64 /* offsets in the private block: items keep the alignment they had */

static size_t align_up(size_t x) { return (x + MAP_ALIGN - 1) & ~(size_t)(MAP_ALIGN - 1); }

/* Lay out the chunks of `n` items, in map's array or (with `priv`) in one private block with a
 * copy of the items; m->chunks is set. MPX_ENOMEM or MPX_ETOOBIG (the block's size overflows). */
static int map_layout(map_run *m, bool priv, const unsigned char *items, size_t item_size,
                      size_t n, unsigned char *results, size_t result_size, size_t chunk) {
  size_t head = align_up(sizeof(mpx__map_private)), chunks_at = head, items_at = 0,
         results_at = 0, total = 0, cbytes;
  if (__builtin_mul_overflow(m->nchunks, sizeof *m->chunks, &cbytes) ||
      (priv && (__builtin_add_overflow(chunks_at, cbytes, &items_at) ||
                (items_at = align_up(items_at)) < chunks_at ||
                __builtin_add_overflow(items_at, n * item_size, &results_at) ||
                (results_at = align_up(results_at)) < items_at ||
                __builtin_add_overflow(results_at, n * result_size, &total)))) {
    mpx__set_errmsg("map of %zu items of %zu bytes (results of %zu bytes): its buffers would "
                    "exceed the address space", n, item_size, result_size);
    return MPX_ETOOBIG;
  }
  unsigned char *base = NULL;
  if (priv) {
    if (!(base = malloc(total))) {
      mpx__set_errmsg("no memory for map's private buffers (%zu bytes)", total);
      return MPX_ENOMEM;
    }
    m->priv = (mpx__map_private *)base;
    atomic_init(&m->priv->refs, 1); /* map's own */
    m->chunks = (mpx__map_chunk *)(base + chunks_at);
    if (item_size) memcpy(base + items_at, items, n * item_size);
    items = item_size ? base + items_at : items;
    results = result_size ? base + results_at : results;
  } else if (!(m->chunks = malloc(cbytes ? cbytes : 1))) {
    mpx__set_errmsg("no memory for %zu map chunks", m->nchunks);
    return MPX_ENOMEM;
  }
  for (size_t i = 0; i < m->nchunks; i++) {
    size_t first = i * chunk, count = n - first < chunk ? n - first : chunk;
    m->chunks[i] = (mpx__map_chunk){.items = items + first * item_size,
                                    .results = results ? results + first * result_size : NULL,
                                    .count = count, .item_size = item_size,
                                    .result_size = result_size, .priv = m->priv};
  }
  return MPX_OK;
}

static int map_submit(mpx_executor *ex, const mpx_task *t, map_run *m) {
  for (size_t i = 0; i < m->nchunks; i++) {
    mpx__map_chunk *c = &m->chunks[i];
    int rc = enter(ex);
    if (rc) return rc;
    mpx_future *f = mpx__future_new(t, NULL, 0, MPX__ARG_BORROW);
    if (!f) {
      if (ex->cfg.gate) mpx__gate_leave(ex->cfg.gate);
      return MPX_ENOMEM;
    }
    /* the chunk's items are read where the chunk points (the caller's, or the private copy) */
    f->arg = c->items;
    f->arg_len = c->count * c->item_size;
    f->owner = c;
    uint32_t flags = MPX__F_CHUNK;
    if (m->priv) { /* the future's reference on the block, dropped when it is freed */
      atomic_fetch_add_explicit(&m->priv->refs, 1, memory_order_relaxed);
      flags |= MPX__F_MAP_PRIV;
    }
    atomic_fetch_or_explicit(&f->state, flags, memory_order_relaxed);
    rc = submit_future(ex, f);
    if (rc) return rc;
    m->fs[m->submitted++] = f;
  }
  return MPX_OK;
}

/* Chunk i (of `chunk` items) of a map with a timeout is done (state s): copy its results (on a
 * failure, those before the failing item) from the private block to the caller. */
static void map_copy_out(const map_run *m, size_t i, size_t chunk, uint32_t s) {
  const mpx__map_chunk *c = &m->chunks[i];
  if (!m->result_size || (s != MPX_FINISHED && s != MPX_FAILED)) return;
  size_t count = s == MPX_FINISHED ? c->count : c->failed;
  if (count) memcpy(m->results + i * chunk * m->result_size, c->results, count * m->result_size);
}

/* Collect in order; note the first failure. With a deadline (0: none), at the deadline cancel
 * what has not started and return without waiting for what runs (it has its private block). */
static int map_collect(map_run *m, size_t chunk, double deadline, int rc, mpx_map_status *st) {
  bool timed_out = false;
  for (size_t i = 0; i < m->submitted; i++) {
    mpx_future *f = m->fs[i];
    if (!timed_out) {
      double left = deadline ? deadline - mpx__now() : MPX_FOREVER;
      if (deadline && left < 0) left = 0;
      timed_out = mpx_future_exception(f, left, NULL, NULL) == MPX_ETIMEDOUT;
    }
    if (timed_out) mpx_future_cancel(f); /* fails (ESTATE) on a running or done chunk: fine */
    uint32_t s = mpx__future_state(f);
    if (m->priv) map_copy_out(m, i, chunk, s);
    if (s == MPX_FINISHED || rc) continue;
    if (s == MPX_CANCELLED || !mpx__state_done(s)) { /* cancelled, or still running */
      rc = timed_out ? MPX_ETIMEDOUT : MPX_ECANCELLED;
      if (st) st->failed_index = i * chunk, st->code = rc;
      continue;
    }
    rc = f->error;
    if (st) {
      st->failed_index = i * chunk + m->chunks[i].failed;
      st->code = rc;
      snprintf(st->message, sizeof st->message, "%s", f->errmsg ? f->errmsg : mpx_strerror(rc));
    }
  }
  return timed_out ? MPX_ETIMEDOUT : rc;
}

int mpx_map(mpx_executor *ex, const char *task, const void *items, size_t item_size, size_t n,
            void *results, size_t result_size, const mpx_map_opts *opts) {
  mpx_map_status *st = opts ? opts->status : NULL;
  if (st) *st = (mpx_map_status){.failed_index = n};
  if (!ex || (!items && n && item_size) || (!results && n && result_size)) {
    mpx__set_errmsg("mpx_map: %s", !ex ? "the executor is NULL"
                                   : !items && n && item_size ? "items is NULL with n > 0"
                                                              : "results is NULL with n > 0");
    return MPX_EINVAL;
  }
  double timeout = opts ? opts->timeout : 0;
  if (isnan(timeout)) {
    mpx__set_errmsg("mpx_map: timeout is NaN (0, a negative number or infinity: no limit)");
    return MPX_EINVAL;
  }
  const mpx_task *t;
  int rc = mpx_task_find(task, &t);
  if (rc) return rc;
  if (n == 0) return MPX_OK;
  size_t bytes;
  if (__builtin_mul_overflow(n, item_size, &bytes)) {
    mpx__set_errmsg("mpx_map: n (%zu) * item_size (%zu) overflows size_t", n, item_size);
    return MPX_EINVAL;
  }
  if (__builtin_mul_overflow(n, result_size, &bytes)) {
    mpx__set_errmsg("mpx_map: n (%zu) * result_size (%zu) overflows size_t", n, result_size);
    return MPX_EINVAL;
  }
  /* chunk <= n from here, so chunk * item_size and chunk * result_size cannot overflow */
  size_t quarter = 4 * (size_t)slots(ex);
  size_t chunk = opts && opts->chunksize ? (opts->chunksize < n ? opts->chunksize : n)
                                         : n / quarter + (n % quarter != 0);
  /* encoded payloads: the codec takes at most MPX__DEFAULT_MAX_ITEMS items in one chunk, and
   * each chunk's items and results must fit max_payload */
  bool encodes = ex->cfg.caps & MPX__CAP_ENCODES;
  if (encodes && chunk > MPX__DEFAULT_MAX_ITEMS) chunk = MPX__DEFAULT_MAX_ITEMS;
  if (encodes &&
      (chunk * item_size > ex->cfg.max_payload || chunk * result_size > ex->cfg.max_payload)) {
    mpx__set_errmsg("a map chunk of %zu items of %zu bytes (results of %zu bytes) exceeds "
                    "max_payload (%zu bytes): lower chunksize", chunk, item_size, result_size,
                    ex->cfg.max_payload);
    return MPX_ETOOBIG;
  }
  double deadline = timeout > 0 && !isinf(timeout) ? mpx__now() + timeout : 0;
  map_run m = {.nchunks = n / chunk + (n % chunk != 0), .results = results,
               .result_size = result_size};
  if (!(m.fs = calloc(m.nchunks, sizeof *m.fs))) {
    mpx__set_errmsg("no memory for %zu map chunks", m.nchunks);
    return MPX_ENOMEM;
  }
  rc = map_layout(&m, deadline != 0, items, item_size, n, results, result_size, chunk);
  if (!rc) {
    rc = map_submit(ex, t, &m);
    rc = map_collect(&m, chunk, deadline, rc, st);
  }
  for (size_t i = 0; i < m.submitted; i++) mpx_future_release(m.fs[i]);
  if (m.priv) mpx__map_private_unref(m.priv);
  else free(m.chunks);
  free(m.fs);
  return rc;
}

/* ---- shutdown ----------------------------------------------------------------------------- */

/* On one of ex's own threads (a worker, the dispatcher), which must not wait for itself. */
static bool own_thread(const mpx_executor *ex) { return mpx__tl_transport == (const void *)ex->tp; }

int mpx_executor_shutdown(mpx_executor *ex, bool wait, bool cancel_futures) {
  if (!ex) return MPX_EINVAL;
  atomic_fetch_add_explicit(&ex->active, 1, memory_order_relaxed);
  bool self = wait && own_thread(ex);
  atomic_store_explicit(&ex->shut, true, memory_order_relaxed);
  if (ex->cfg.gate) mpx__gate_wake_all(ex->cfg.gate);
  ex->ops->close(ex->tp);
  if (cancel_futures) ex->ops->cancel_queued(ex->tp);
  ex->ops->stop(ex->tp, wait && !self);
  /* release: a deferred destroy that sees 0 frees ex after our last use of it */
  atomic_fetch_sub_explicit(&ex->active, 1, memory_order_release);
  if (self) {
    mpx__set_errmsg("shut down but not waited for: called on one of the executor's own threads "
                    "(a done-callback or a task), which the wait would wait for");
    return MPX_ESTATE;
  }
  return MPX_OK;
}

int mpx_executor_terminate(mpx_executor *ex) {
  if (!ex) return MPX_EINVAL;
  atomic_fetch_add_explicit(&ex->active, 1, memory_order_relaxed);
  bool self = own_thread(ex);
  atomic_store_explicit(&ex->shut, true, memory_order_relaxed);
  if (ex->cfg.gate) mpx__gate_wake_all(ex->cfg.gate);
  ex->ops->close(ex->tp);
  ex->ops->cancel_queued(ex->tp);
  if (ex->ops->terminate) ex->ops->terminate(ex->tp); /* running tasks: runner.h */
  ex->ops->stop(ex->tp, !self);
  /* release: a deferred destroy that sees 0 frees ex after our last use of it */
  atomic_fetch_sub_explicit(&ex->active, 1, memory_order_release);
  if (self) {
    mpx__set_errmsg("terminated but not waited for: called on one of the executor's own threads "
                    "(a done-callback or a task), which the wait would wait for");
    return MPX_ESTATE;
  }
  return MPX_OK;
}

static void destroy_now(mpx_executor *ex) {
  mpx_executor_shutdown(ex, true, false);
  ex->ops->destroy(ex->tp);
  free(ex->cfg.places);
  free(ex);
}

static void reap(void *arg) {
  mpx_executor *ex = arg;
  /* acquire: the shutdown that ran our callback (if any) is done with ex */
  while (atomic_load_explicit(&ex->active, memory_order_acquire))
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  destroy_now(ex);
}

/* destroy from a callback or an executor thread: shut down now, free on a reaper thread. */
static int destroy_later(mpx_executor *ex) {
  mpx_executor_shutdown(ex, false, false);
  if (!mpx__reaper_run(reap, ex)) return MPX_OK;
  mpx__set_errmsg("no thread to destroy the executor from a callback: it is shut down, not freed; "
                  "destroy it again from another thread");
  return MPX_ESYS;
}

int mpx_executor_destroy(mpx_executor *ex) {
  if (!ex) return MPX_EINVAL;
  if (own_thread(ex) || mpx__tl_callbacks) return destroy_later(ex);
  destroy_now(ex);
  return MPX_OK;
}
