/* task_impl.h: what a worker needs to run one registered task: the context and result buffer
 * behind the opaque mpx_task_ctx and mpx_buf, and mpx__task_run. Internal to libmpx. */
#ifndef MPX_TASK_IMPL_H
#define MPX_TASK_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpx/task.h"
#include "os/seg.h"

/* Result bytes. `data` starts at `small` (inline storage the caller provides, may be NULL with
 * small_cap 0) and moves to the heap when a result does not fit; `heap` says which. */
struct mpx_buf {
  void *data;
  size_t len;
  size_t cap;
  void *small;
  size_t small_cap;
  bool heap;
  size_t max; /* largest result allowed (0: no limit); larger ones fail with MPX_ETOOBIG */
  /* Process workers (the data plane): a result of at least seg_min bytes (0: never) is built in
   * a memfd segment instead of the heap, so that it crosses to the scheduler without a copy;
   * in_seg says data is seg.data. */
  size_t seg_min;
  bool in_seg;
  mpx__seg seg;
};

#define MPX__ERRMSG_MAX 512

/* Where a running task learns that it should stop (mpx_task_should_stop, stop.c). The runner
 * sets this thread's mpx__tl_stop before it runs a task (each field NULL when it does not apply)
 * and clears it after; mpx__task_run points the task's context at it. */
typedef struct mpx__stop_src {
  const _Atomic uint32_t *state; /* threads: the future's state word; stop when state_bit is set */
  uint32_t state_bit;
  const _Atomic uint32_t *all;   /* threads: the runner's stop word (non-zero: stop) */
  const _Atomic uint64_t *word;  /* processes: the page's `stop`; stop when it equals id */
  const _Atomic uint64_t *word_all; /* processes: the page's `stop_all` (non-zero: stop) */
  uint64_t id;
  const struct mpx__halt *halt; /* MPI: the worker's stop requests (codec.h); stop when `all`
                                   is set or id is in its ring */
} mpx__stop_src;
extern _Thread_local mpx__stop_src mpx__tl_stop;

struct mpx_task_ctx {
  int worker;       /* worker index, -1 if unknown */
  int code;         /* set by mpx_task_fail */
  char *message;    /* heap, set by mpx_task_fail; owned by whoever reads it after the call */
  const mpx__stop_src *stop; /* this thread's mpx__tl_stop while the task runs */
};

/* Start `b` over caller-provided inline storage (may be NULL/0). */
void mpx__buf_init(mpx_buf *b, void *small, size_t small_cap, size_t max);
/* Take the heap block out of `b` (NULL if the data is inline); `b` no longer owns it: give it
 * back with mpx__seg_pool_free (from MPX__SEG_MIN bytes it may be a block of the result pool). */
void *mpx__buf_steal(mpx_buf *b);
/* Take the segment out of `b` (in_seg), cut to b->len bytes and sealed, into *out; `b` is empty
 * afterwards. MPX_EINVAL when b holds no segment or is empty (then b is left as it was). */
int mpx__buf_take_seg(mpx_buf *b, mpx__seg *out);
void mpx__buf_release(mpx_buf *b);

/* Run `t` on arg; returns 0 or the task's negative code. On failure *message (may be NULL on
 * return) receives a heap string the caller frees: the task's own message or a default. */
int mpx__task_run(const mpx_task *t, int worker, const void *arg, size_t len, mpx_buf *out,
                  char **message);

/* FNV-1a 32-bit hash of a name: the task's wire id. */
uint32_t mpx__task_hash(const char *name);

/* Format a heap message ("" on allocation failure is NULL). */
char *mpx__strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
