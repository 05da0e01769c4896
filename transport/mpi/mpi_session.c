/* mpi_session.c: an MPI session (mpi_impl.h): a private duplicate of a communicator with one
 * root, what each rank learns about the others when it is built, and its doorbells.
 *
 * Building one is collective over the communicator: the dup; the ranks of each node split that
 * node's cores (node_share: the cores a rank may use, split evenly between the worker ranks of
 * the node that may use exactly the same set; ranks bound to distinct cores keep theirs; the
 * root's spare cores are what it may use when no worker rank shares them); the node's doorbells
 * (mpi_bells.c); the gathers of every rank's core share and host name at the root; and node
 * leaders (mpx__mpi_leaders_setup, at the end: which rank each one serves, mpi_leader.c).
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
  s->up = root;
  s->leaders = MPI_COMM_NULL;
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
  rc = mpx__mpi_leaders_setup(s); /* collective: node leaders, or none */
  if (!r) r = rc;
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
  if (s->leaders != MPI_COMM_NULL) MPI_Comm_free(&s->leaders);
  MPI_Comm_free(&s->comm);
  free(s->cores);
  free(s->hosts);
  free(s->members);
  free(s->member_cores);
  free(s->leader_ranks);
  free(s->direct);
  free(s->span);
  free(s->lost);
  free(s->wmap);
  free(s->resumed);
  free(s);
}

/* ---- node leaders (mpi_leader.c) ---------------------------------------------------------- */

/* An integer from the environment in [lo, hi], else def. */
static int env_int(const char *name, int lo, int hi, int def) {
  const char *v = getenv(name);
  char *end;
  long x = v && *v ? strtol(v, &end, 10) : def;
  return v && *v && !*end && x >= lo && x <= hi ? (int)x : def;
}

/* Collective. The root decides, from its own environment, and tells the others (a launcher may
 * not pass every variable to every node): MPX_TEST_VNODES=K (tests and mpx-bench only) puts rank
 * r on virtual node r*K/size, else a node is what MPI_COMM_TYPE_SHARED groups; MPX_MPI_LEADERS=1
 * turns leaders on, 0 off, unset: on with at least 2 nodes and 4 worker ranks per node on
 * average. A node's leader is its lowest rank other than the root; a node with no rank besides
 * its leader (or the root) keeps it a plain worker rank. */
int mpx__mpi_leaders_setup(mpx__mpi_session *s) {
  int conf[2] = {0, -1};
  if (s->rank == s->root) {
    conf[0] = env_int("MPX_TEST_VNODES", 1, s->size, 0);
    conf[1] = env_int("MPX_MPI_LEADERS", 0, 1, -1);
  }
  int rc = MPI_Bcast(conf, 2, MPI_INT, s->root, s->comm);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Bcast", rc);
  MPI_Comm node;
  int mine[3] = {0, s->my_cores, 0}, phys = 0;
  if ((rc = MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node)))
    return mpx__mpi_fail("MPI_Comm_split_type", rc);
  MPI_Comm_size(node, &phys);
  rc = MPI_Allreduce(&s->rank, &mine[0], 1, MPI_INT, MPI_MIN, node);
  MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Allreduce", rc);
  if (conf[0] > 0) mine[0] = (int)((long)s->rank * conf[0] / s->size);
  mine[2] = phys == s->size; /* every rank on one machine: any sender can ring a bell */
  int *all = malloc((size_t)s->size * sizeof mine);
  int *lead = malloc((size_t)s->size * sizeof *lead);
  if (!all || !lead) {
    free(all), free(lead);
    mpx__log(MPX_LOG_ERROR, "out of memory creating an MPI session");
    MPI_Abort(s->comm, 1);
    return MPX_ENOMEM;
  }
  rc = MPI_Allgather(mine, 3, MPI_INT, all, 3, MPI_INT, s->comm);
  if (rc != MPI_SUCCESS) {
    free(all), free(lead);
    return mpx__mpi_fail("MPI_Allgather", rc);
  }
  int nodes = 0, nlead = 0, ndirect = 0;
  for (int k = 0; k < s->size; k++) lead[k] = -2; /* per node key: no rank seen yet */
  for (int r = 0; r < s->size; r++) { /* lead[key]: the node's lowest rank other than the root */
    int k = all[3 * r];
    nodes += lead[k] == -2;
    if (lead[k] < 0 && r != s->root) lead[k] = r;
    else if (lead[k] == -2) lead[k] = -1;
  }
  bool on = conf[1] == 1 || (conf[1] < 0 && nodes >= 2 && (s->size - 1) >= 4 * nodes);
  size_t n = s->size > 0 ? (size_t)s->size : 1;
  int *ups = calloc(n, sizeof *ups), *cnt = calloc(n, sizeof *cnt);
  for (int r = 0; ups && cnt && r < s->size; r++) {
    int l = lead[all[3 * r]];
    ups[r] = r == s->root ? -1 : on && l != r ? l : s->root;
    if (ups[r] >= 0) cnt[ups[r]]++;
  }
  for (int r = 0; ups && cnt && r < s->size; r++) {
    nlead += cnt[r] > 0 && r != s->root;
    ndirect += ups[r] == s->root;
  }
  if (ups && cnt && s->rank != s->root && cnt[s->rank]) {
    int m = s->nmembers = cnt[s->rank];
    s->members = calloc((size_t)m, sizeof *s->members);
    s->member_cores = calloc((size_t)m, sizeof *s->member_cores);
    for (int q = 0, k = 0; s->members && s->member_cores && q < s->size; q++)
      if (ups[q] == s->rank) s->members[k] = q, s->member_cores[k++] = all[3 * q + 1];
  }
  free(cnt);
  if (!ups || (s->nmembers && (!s->members || !s->member_cores))) {
    mpx__log(MPX_LOG_ERROR, "out of memory creating an MPI session");
    MPI_Abort(s->comm, 1);
  }
  if (s->rank != s->root) s->up = ups[s->rank];
  if ((s->nmembers || s->up != s->root) && !mine[2])
    s->rung = false; /* a leader or member whose senders may sit elsewhere: none can ring it */
  if (nlead && s->rank == s->root) { /* the root's workers: the leaders and the lone ranks */
    s->direct = calloc((size_t)ndirect, sizeof *s->direct);
    s->span = calloc((size_t)s->size, sizeof *s->span);
    if (!s->direct || !s->span) MPI_Abort(s->comm, 1);
    for (int r = 0, k = 0; r < s->size; r++) {
      if (ups[r] == s->root) s->direct[k++] = r;
      s->span[r]++;
      if (ups[r] >= 0 && ups[r] != s->root) s->span[ups[r]]++, s->cores[ups[r]] += all[3 * r + 1];
    }
    s->nworkers = ndirect;
    mpx__log(MPX_LOG_INFO, "mpi: %d nodes%s, %d leaders: rank 0 serves %d ranks", nodes,
             conf[0] > 0 ? " (virtual)" : "", nlead, ndirect);
  }
  rc = MPI_Comm_split(s->comm, s->nmembers ? 0 : MPI_UNDEFINED, s->rank, &s->leaders);
  if (rc == MPI_SUCCESS && s->nmembers) {
    int nl = 0;
    MPI_Comm_size(s->leaders, &nl);
    if (!(s->leader_ranks = calloc((size_t)nl, sizeof *s->leader_ranks))) MPI_Abort(s->comm, 1);
    rc = MPI_Allgather(&s->rank, 1, MPI_INT, s->leader_ranks, 1, MPI_INT, s->leaders);
  }
  free(all), free(lead), free(ups);
  return rc == MPI_SUCCESS ? MPX_OK : mpx__mpi_fail("MPI_Comm_split", rc);
}
