/* gate.h: the bound on queued tasks (options.max_pending). Submitters enter before queueing a task;
 * the transport leaves when the task starts or is cancelled, and returns when a started task goes
 * back to the queue. Only these functions change the counter. Lock-free counter with a futex for
 * blocked submitters. Any thread. */
#ifndef MPX_GATE_H
#define MPX_GATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mpx__gate {
  _Atomic uint32_t count;   /* queued, not started */
  _Atomic uint32_t sleepers;
  uint32_t max;
  bool fail_when_full;
} mpx__gate;

void mpx__gate_init(mpx__gate *g, size_t max, bool fail_when_full);
/* Take a place: 0, MPX_EFULL (fail policy), or MPX_ESHUTDOWN when *closed becomes true. */
int mpx__gate_enter(mpx__gate *g, _Atomic bool *closed);
/* Give a place back. */
void mpx__gate_leave(mpx__gate *g);
/* Take n places back without waiting, for tasks that return to the queue after they left it
 * (a lost worker's tasks, re-queued): they were admitted once and are not refused now, so the
 * count may pass max for a while. */
void mpx__gate_return(mpx__gate *g, size_t n);
/* Wake every blocked submitter (shutdown). */
void mpx__gate_wake_all(mpx__gate *g);

#endif
