/* registry.h: how transports register with the scheduler (the pattern of nng's tran_init /
 * tran_fini and Open MPI's components).
 *
 * Each transport defines one descriptor (mpx__transport): its backend, its capability word
 * (config.h), process-wide init/fini hooks, and either runner ops (runner.h: it takes futures)
 * or link ops (link.h: the dispatcher drives it with encoded batches). The transport layer lists
 * its descriptors in mpx__transports (transport/transports.c), in the order mpx_init calls
 * their init; the scheduler walks that list and names no transport.
 *
 * mpx_init (init.c) calls each init in list order with one mpx__init_ctx, in which earlier
 * transports leave what they found for later ones; mpx_finalize calls fini in reverse order for
 * those whose init ran. Both run on main's thread, before other threads start and after they
 * ended; the lookups below are read-only afterwards and may be called from any thread. */
#ifndef MPX_REGISTRY_H
#define MPX_REGISTRY_H

#include <stdbool.h>

#include "config.h"
#include "link.h"
#include "mpx/executor.h"
#include "runner.h"

/* Process-wide start-up state, shared by the init hooks of one mpx_init. */
typedef struct mpx__init_ctx {
  int *argc; /* as given to mpx_init (may be NULL) */
  char ***argv;
  /* MPX_MAIN. A transport whose init made this process a worker, served and is done (an MPI
   * worker rank) sets MPX_WORKER: no later init runs, and mpx_init returns it. */
  int role;
  /* The transport whose init found that it launched this job and claimed it (MPI under mpirun
   * with more than one rank), else NULL. MPX_BACKEND_AUTO picks it; later transports leave the
   * job to it (the process transport starts no fork server: MPI libraries dislike fork). */
  const struct mpx__transport *claimed;
} mpx__init_ctx;

typedef struct mpx__transport {
  const char *name; /* "threads", "processes", "mpi" */
  mpx_backend backend;
  unsigned caps; /* MPX__CAP_* */
  /* Optional process-wide hooks. init returns 0 or a negative code; fini returns 0 or a code
   * mpx_finalize reports. */
  int (*init)(mpx__init_ctx *ctx);
  int (*fini)(mpx__init_ctx *ctx);
  /* Exactly one is set. */
  const mpx__runner_ops *runner;
  const mpx__link_ops *link;
} mpx__transport;

/* The transports built into this mpx, NULL-terminated, in init order (transport/transports.c).
 * Strong references, so that a static link (libmpx.a) keeps every backend. */
extern const mpx__transport *const mpx__transports[];

/* The transport for backend b (not AUTO): 0 with *out, or MPX_ENOTBUILT with mpx_errmsg naming
 * the backend. */
int mpx__transport_find(mpx_backend b, const mpx__transport **out);

/* What MPX_BACKEND_AUTO picks when the environment does not say: the transport that claimed the
 * job in mpx_init, else threads. */
mpx_backend mpx__transport_auto(void);

/* mpx_executor_create on an endpoint of the chosen transport's link (link.h: open_endpoint;
 * NULL: as mpx_executor_create). executor.c; for mpx_comm_executor (comm_executor.c). */
int mpx__executor_create_on(mpx_executor **out, const mpx_options *opt, void *endpoint);

/* Parse "threads", "processes", "mpi" or "auto". */
int mpx__backend_parse(const char *s, mpx_backend *out);

#endif
