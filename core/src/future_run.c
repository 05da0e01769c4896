/* future_run.c: running a future on the calling thread, for runners (the thread transport): a
 * single task into the future's own result, or a map chunk (fixed-size items into the caller's
 * results, variable-size items into parsed records), then completing it. A failure names where it
 * ran ("worker N: a thread of pid P on host"), as a process or rank worker's does.
 *
 * Stopping: while a task runs, this thread's mpx__tl_stop (task_impl.h) points at the future's
 * MPX__F_STOP flag and at the runner's stop word, for mpx_task_should_stop. Once the runner is
 * terminated (MPX__STOP_TERMINATE), a future whose task returns fails with MPX_ETERMINATED
 * whatever the task answered, and a chunk runs no further item.
 *
 * Thread-safety: the calling worker thread owns f while it is RUNNING; completion goes through
 * future.c's state machine (mpx__future_ran, mpx__future_fail). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "errmsg.h"
#include "future_impl.h"
#include "task_impl.h"
#include "vchunk.h"

_Thread_local const _Atomic uint32_t *mpx__tl_runner_stop;

/* The executor was terminated while f ran: fail it so (true), whatever its task answered. */
static bool terminated(mpx_future *f, int worker) {
  /* relaxed: terminate sets it once; the verdict needs nothing else from that thread */
  if (!mpx__tl_runner_stop ||
      atomic_load_explicit(mpx__tl_runner_stop, memory_order_relaxed) != MPX__STOP_TERMINATE)
    return false;
  mpx__future_fail(f, MPX_ETERMINATED,
                   mpx__strdupf("task '%s' was stopped: its executor was terminated (worker %d)",
                                f->task->name, worker));
  return true;
}

/* A thread worker's task failure says where it ran, as a process or rank worker's does. */
static char *with_where(const mpx_future *f, char *msg, int worker) {
  char host[64] = "?";
  (void)gethostname(host, sizeof host - 1);
  char *m = mpx__strdupf("%s (worker %d: a thread of pid %d on %s)",
                         msg ? msg : f->task->name, worker, (int)getpid(), host);
  if (!m) return msg;
  free(msg);
  return m;
}

/* A variable-size chunk on this thread: the worker side's records, parsed as received ones. */
static void run_vchunk(mpx_future *f, int worker) {
  mpx__map_chunk *c = f->owner;
  mpx__wbuf w = {0};
  char *why = NULL;
  int rc = mpx__vchunk_serve(f->task, worker, c->var, f->arg, f->arg_len, c->count, c->item_size,
                             0, &w, &why);
  if (terminated(f, worker)) {
    mpx__wbuf_free(&w);
    free(why);
    return;
  }
  if (rc) mpx__wbuf_free(&w);
  else if (!(rc = mpx__vres_parse(w.data, w.len, c->count, w.data, &c->vres)))
    c->vres->worker = worker; /* (the parse took w's block, whatever it answered) */
  if (rc) {
    mpx__future_fail(f, rc, with_where(f, why, worker));
    return;
  }
  free(why);
  mpx__future_ran(f);
}

static void run_chunk(mpx_future *f, int worker) {
  mpx__map_chunk *c = f->owner;
  if (c->var) {
    run_vchunk(f, worker);
    return;
  }
  for (size_t i = 0; i < c->count; i++) {
    mpx_buf out;
    unsigned char *dst = c->results + i * c->result_size;
    mpx__buf_init(&out, c->result_size ? dst : NULL, c->result_size, 0);
    char *msg = NULL;
    int rc = mpx__task_run(f->task, worker, c->items + i * c->item_size, c->item_size, &out, &msg);
    if (rc == 0 && (out.heap || out.len != c->result_size)) {
      rc = MPX_ESIZE;
      msg = mpx__strdupf("task '%s' gave %zu result bytes, map expects %zu", f->task->name,
                         out.len, c->result_size);
    } else if (rc == 0 && out.data != dst && out.len) {
      memmove(dst, out.data, out.len);
    }
    mpx__buf_release(&out);
    if (terminated(f, worker)) {
      free(msg);
      return;
    }
    if (rc) {
      c->failed = i;
      mpx__future_fail(f, rc, with_where(f, msg, worker));
      return;
    }
  }
  mpx__future_ran(f);
}

static void run_one(mpx_future *f, int worker) {
  if (atomic_load_explicit(&f->state, memory_order_relaxed) & MPX__F_CHUNK) {
    run_chunk(f, worker);
    return;
  }
  mpx_buf out;
  mpx__buf_init(&out, f->res_small, sizeof f->res_small, 0);
  char *msg = NULL;
  int rc = mpx__task_run(f->task, worker, f->arg, f->arg_len, &out, &msg);
  if (terminated(f, worker)) {
    mpx__buf_release(&out);
    free(msg);
    return;
  }
  if (rc) {
    mpx__buf_release(&out);
    mpx__future_fail(f, rc, with_where(f, msg, worker));
    return;
  }
  f->res = out.data;
  f->res_len = out.len;
  mpx__future_ran(f);
}

void mpx__future_run(mpx_future *f, int worker) {
  mpx__tl_stop = (mpx__stop_src){.state = &f->state, .state_bit = MPX__F_STOP,
                                 .all = mpx__tl_runner_stop};
  run_one(f, worker);
  mpx__tl_stop = (mpx__stop_src){0};
}
