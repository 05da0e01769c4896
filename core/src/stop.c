/* stop.c: mpx_task_should_stop, the task's side of cooperative stopping (task.h).
 *
 * A runner says where the stop requests for the task it is about to run can be read by filling
 * this thread's mpx__tl_stop (task_impl.h): the thread transport points it at the future's state
 * word (MPX__F_STOP, which mpx_future_cancel sets on a running future) and at its own stop word
 * (shutdown with cancel_futures, terminate); a process worker at its progress page's `stop` and
 * `stop_all` words (progress.h), which the parent writes; an MPI rank at the halt record its
 * serving thread fills from rank 0's TAG_HALT messages (codec.h's mpx__halt). Reading needs no lock: each source is a word another
 * thread or process sets once (relaxed loads: a request is a hint the task polls; nothing else
 * is published with it).
 *
 * The watch list: dispatchers whose link forwards stop requests by message (MPI) register here,
 * and a cancel that asks a running task to stop wakes them all (rare: only such cancels ring).
 * Guarded by watch_lock; a dispatcher removes itself before it is freed, so a ring never wakes
 * a freed one. */
#include <pthread.h>

#include "codec.h"
#include "future_impl.h"
#include "task_impl.h"

_Thread_local mpx__stop_src mpx__tl_stop;

int mpx_task_should_stop(const mpx_task_ctx *ctx) {
  if (!ctx || !ctx->stop) return 0;
  const mpx__stop_src *s = ctx->stop;
  if (s->state && (atomic_load_explicit(s->state, memory_order_relaxed) & s->state_bit)) return 1;
  if (s->all && atomic_load_explicit(s->all, memory_order_relaxed)) return 1;
  if (s->word_all && atomic_load_explicit(s->word_all, memory_order_relaxed)) return 1;
  if (s->word && s->id && atomic_load_explicit(s->word, memory_order_relaxed) == s->id) return 1;
  if (s->halt) {
    if (atomic_load_explicit(&s->halt->all, memory_order_relaxed)) return 1;
    for (int i = 0; i < MPX__HALT_RING; i++)
      if (atomic_load_explicit(&s->halt->id[i], memory_order_relaxed) == s->id) return 1;
  }
  return 0;
}

static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static mpx__stop_watch *watches;

void mpx__stop_watch_add(mpx__stop_watch *w) {
  pthread_mutex_lock(&watch_lock);
  w->next = watches;
  watches = w;
  pthread_mutex_unlock(&watch_lock);
}

void mpx__stop_watch_remove(mpx__stop_watch *w) {
  pthread_mutex_lock(&watch_lock);
  for (mpx__stop_watch **p = &watches; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  pthread_mutex_unlock(&watch_lock);
}

void mpx__stop_watch_ring(void) {
  pthread_mutex_lock(&watch_lock);
  for (mpx__stop_watch *w = watches; w; w = w->next) w->wake(w->arg);
  pthread_mutex_unlock(&watch_lock);
}
