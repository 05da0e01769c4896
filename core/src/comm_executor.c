/* comm_executor.c: mpx_comm_executor (mpx/mpi.h), collective mode over a communicator the user
 * gives. Compiled only with MPX_WITH_MPI.
 *
 * It reaches the MPI transport only through the list of transports and the link contract: it
 * finds the transport by backend, opens an endpoint over the communicator (link.h:
 * open_endpoint, collective), and then either serves it (every rank but the root) or creates an
 * ordinary executor on it (the root, mpx__executor_create_on) and drops its hold on it
 * (close_endpoint), which tells the workers to return if no executor ever started there. No
 * transport header is included and no transport calls back here.
 *
 * Thread-safety: collective over the communicator, one thread per rank; nothing is shared. */
#include "mpx/mpi.h"
#include "registry.h"

int mpx_comm_executor(MPI_Comm comm, int root, const mpx_options *opt, mpx_executor **out) {
  if (out) *out = NULL;
  const mpx__transport *t;
  int rc = mpx__transport_find(MPX_BACKEND_MPI, &t);
  if (rc) return rc;
  if (!(t->caps & MPX__CAP_ENDPOINT) || !t->link) {
    mpx__set_errmsg("the %s transport does not open endpoints over a communicator", t->name);
    return MPX_ENOTBUILT;
  }
  void *ep;
  rc = t->link->open_endpoint(&comm, root, &ep);
  if (rc < 0) return rc;
  if (rc == MPX_WORKER) return t->link->serve_endpoint(ep);
  mpx_options o = opt ? *opt : (mpx_options){0};
  if (!out || (o.backend != MPX_BACKEND_AUTO && o.backend != t->backend)) {
    mpx__set_errmsg(out ? "mpx_comm_executor makes MPI executors: backend must be AUTO or MPI"
                        : "out is NULL");
    rc = MPX_EINVAL;
  } else {
    o.backend = t->backend;
    rc = mpx__executor_create_on(out, &o, ep);
  }
  t->link->close_endpoint(ep);
  return rc ? rc : MPX_MAIN;
}
