/* gate.c: see gate.h. seq_cst on count and sleepers so that a submitter that decides to sleep and
 * a task start that decides whether to wake cannot both miss each other (Dekker-style). */
#include "gate.h"

#include <limits.h>
#include <time.h>

#include "mpx/error.h"
#include "os/futex.h"

static void futex_wait(_Atomic uint32_t *a, uint32_t v) {
  struct timespec ts = {0, 50 * 1000 * 1000}; /* bounded, so shutdown is noticed */
  mpx__futex_wait_private(a, v, &ts);
}

void mpx__gate_init(mpx__gate *g, size_t max, bool fail_when_full) {
  atomic_init(&g->count, 0);
  atomic_init(&g->sleepers, 0);
  g->max = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
  g->fail_when_full = fail_when_full;
}

int mpx__gate_enter(mpx__gate *g, _Atomic bool *closed) {
  for (;;) {
    uint32_t c = atomic_load(&g->count);
    if (c < g->max) {
      if (atomic_compare_exchange_weak(&g->count, &c, c + 1)) return MPX_OK;
      continue;
    }
    if (g->fail_when_full) return MPX_EFULL;
    if (atomic_load(closed)) return MPX_ESHUTDOWN;
    atomic_fetch_add(&g->sleepers, 1);
    if (atomic_load(&g->count) >= g->max) futex_wait(&g->count, c);
    atomic_fetch_sub(&g->sleepers, 1);
  }
}

void mpx__gate_leave(mpx__gate *g) {
  atomic_fetch_sub(&g->count, 1);
  if (atomic_load(&g->sleepers))
    mpx__futex_wake_private(&g->count, 1);
}

void mpx__gate_return(mpx__gate *g, size_t n) {
  atomic_fetch_add(&g->count, (uint32_t)n);
}

void mpx__gate_wake_all(mpx__gate *g) {
  mpx__futex_wake_private(&g->count, INT_MAX);
}
