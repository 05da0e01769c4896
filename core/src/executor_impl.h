/* executor_impl.h: what the map engines (map.c) need from the executor (executor.c): taking a
 * place, queueing a future, and the numbers chunking depends on. Internal to libmpx.
 * Thread-safety: as mpx_submit (any thread, concurrently). */
#ifndef MPX_EXECUTOR_IMPL_H
#define MPX_EXECUTOR_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/executor.h"

/* Queue a new future `f` (from mpx__future_new) on `ex`: a place under max_pending is taken
 * first. On failure f is released and dropped (gone) and the code returned (MPX_ESHUTDOWN,
 * MPX_EFULL, ...), with mpx_errmsg set. */
int mpx__executor_submit(mpx_executor *ex, mpx_future *f);
/* Tasks that run at once (workers, or threads over MPI ranks). */
int mpx__executor_slots(const mpx_executor *ex);
/* Whether tasks are encoded (processes, MPI), and the largest payload then. */
bool mpx__executor_encodes(const mpx_executor *ex);
size_t mpx__executor_max_payload(const mpx_executor *ex);

#endif
