/* transports.h: the descriptors of the transports built into libmpx (registry.h), for the list in
 * transports.c. Each transport's own file defines its descriptor and includes this header so
 * that the definition is checked against the declaration; no transport reaches another through
 * it. MPX_WITH_MPI (CMake) says whether the MPI transport is built. */
#ifndef MPX_TRANSPORTS_H
#define MPX_TRANSPORTS_H

#include "registry.h"

extern const mpx__transport mpx__thread_transport;  /* thread.c: a runner */
extern const mpx__transport mpx__process_transport; /* process.c: a link */
#ifdef MPX_WITH_MPI
extern const mpx__transport mpx__mpi_transport; /* mpi/mpi.c: a link with endpoints */
#endif

#endif
