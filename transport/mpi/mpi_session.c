/* mpi_session.c: an MPI session (mpi_impl.h): a private duplicate of a communicator with one
 * root, what each rank learns about the others when it is built, and its doorbells.
 *
 * Building one is collective over the communicator: the dup; the ranks of each node split that
 * node's cores (node_share: the cores a rank may use, split evenly between the worker ranks of
 * the node that may use exactly the same set; ranks bound to distinct cores keep theirs; the
 * root's spare cores are what it may use when no worker rank shares them); the node's doorbells
 * (mpi_bells.c); and the gathers of every rank's core share and host name at the root.
 *
 * Thread-safety: built and freed by one thread per rank (mpx_init's, mpx_comm_executor's caller,
 * spawn mode's executor creator); read-only afterwards except for the root's busy, refs and served,
 * which mpi.c keeps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_impl.h"
#include "mpx/topology.h"
#include "os/log.h"

typedef struct node_info {
  char cpuset[248];
  int32_t cores;
  int32_t is_root;
} node_info;

/* This rank's share of its node's cores: the cores it may use, split evenly between the worker
 * ranks of the node that may use exactly the same set (ranks mpirun bound to distinct cores keep
 * theirs). */
static int node_share(mpx__mpi_session *s, int *share) {
  node_info me = {0};
  const mpx_topology *t;
  mpx_topo_info info;
  me.cores = 1;
  if (!mpx_topology_get(&t) && !mpx_topology_info(t, &info)) {
    me.cores = info.cores > 0 ? info.cores : 1;
    mpx_topology_cpuset(t, me.cpuset, sizeof me.cpuset);
  }
  me.is_root = s->rank == s->root;
  MPI_Comm node;
  int rc = MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Comm_split_type", rc);
  int nn, nr;
  MPI_Comm_size(node, &nn);
  MPI_Comm_rank(node, &nr);
  node_info *all = calloc((size_t)nn, sizeof *all);
  if (!all) {
    MPI_Comm_free(&node);
    return MPX_ENOMEM;
  }
  rc = MPI_Allgather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, node);
  int root_at = -1; /* the root's rank in `node`, if it is on this node: doorbells there */
  for (int i = 0; rc == MPI_SUCCESS && i < nn; i++)
    if (all[i].is_root) root_at = i;
  if (rc == MPI_SUCCESS) mpx__mpi_bells_setup(s, node, root_at);
  MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS) {
    free(all);
    return mpx__mpi_fail("MPI_Allgather", rc);
  }
  int sharing = 0, idx = 0;
  for (int i = 0; i < nn; i++) {
    if (all[i].is_root || strcmp(all[i].cpuset, me.cpuset)) continue;
    if (i < nr) idx++;
    sharing++;
  }
  free(all);
  if (me.is_root) s->root_spare = sharing ? 0 : me.cores - 1; /* one core drives */
  if (me.is_root || sharing == 0) sharing = 1;
  int k = me.cores / sharing + (idx < me.cores % sharing);
  *share = k > 0 ? k : 1;
  return MPX_OK;
}

int mpx__mpi_session_new(MPI_Comm comm, int root, bool oneshot, mpx__mpi_session **out) {
  *out = NULL;
  mpx__mpi_session *s = calloc(1, sizeof *s);
  if (!s) return MPX_ENOMEM;
  int rc = MPI_Comm_dup(comm, &s->comm);
  if (rc != MPI_SUCCESS) {
    free(s);
    return mpx__mpi_fail("MPI_Comm_dup", rc);
  }
  MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(s->comm, &s->rank);
  MPI_Comm_size(s->comm, &s->size);
  s->root = root;
  s->nworkers = s->size - 1;
  s->oneshot = oneshot;
  s->my_bell = &s->own_bell;
  atomic_init(&s->refs, 1);
  if (gethostname(s->host, sizeof s->host)) snprintf(s->host, sizeof s->host, "?");
  s->host[sizeof s->host - 1] = '\0';
  int r = node_share(s, &s->my_cores);
  if (r) s->my_cores = 1, r = 0; /* no topology: one thread */
  if (s->rank == root && !(s->cores = calloc((size_t)s->size, sizeof *s->cores))) {
    mpx__log(MPX_LOG_ERROR, "out of memory creating an MPI session");
    MPI_Abort(s->comm, 1);
  }
  rc = MPI_Gather(&s->my_cores, 1, MPI_INT, s->cores, 1, MPI_INT, root, s->comm);
  if (!r && rc != MPI_SUCCESS) r = mpx__mpi_fail("MPI_Gather", rc);
  /* every rank's host name, before any task runs: error messages name hosts from this, never
   * from what a worker sends */
  if (s->rank == root && !(s->hosts = calloc((size_t)s->size, sizeof *s->hosts))) {
    mpx__log(MPX_LOG_ERROR, "out of memory creating an MPI session");
    MPI_Abort(s->comm, 1);
  }
  rc = MPI_Gather(s->host, (int)sizeof s->host, MPI_CHAR, s->hosts, (int)sizeof s->host, MPI_CHAR,
                  root, s->comm);
  if (!r && rc != MPI_SUCCESS) r = mpx__mpi_fail("MPI_Gather", rc);
  for (int i = 0; s->hosts && i < s->size; i++) s->hosts[i][sizeof s->host - 1] = '\0';
  if (r) {
    mpx__mpi_session_free(s);
    return r;
  }
  *out = s;
  return MPX_OK;
}

void mpx__mpi_session_free(mpx__mpi_session *s) {
  if (!s) return;
  mpx__mpi_bells_free(s);
  MPI_Comm_free(&s->comm);
  free(s->cores);
  free(s->hosts);
  free(s);
}
