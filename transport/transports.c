/* transports.c: the list of transports built into libmpx (registry.h: mpx__transports), in the
 * order mpx_init calls their init hooks. MPI comes first: it finds out whether this process was
 * launched as a rank of an MPI job, and claims the job when so, before the process transport
 * decides whether to fork its fork server. Threads come last and need no hooks.
 *
 * These are strong references: a program linked against the static library keeps every backend
 * listed here, without a constructor or a weak symbol. Read-only; any thread. */
#include "transports.h"

const mpx__transport *const mpx__transports[] = {
#ifdef MPX_WITH_MPI
    &mpx__mpi_transport,
#endif
    &mpx__process_transport,
    &mpx__thread_transport,
    NULL,
};
