/* mpi_spawn.c: the MPI transport's spawn mode, both sides (mpx/mpi.h: "Spawn mode").
 *
 * Parent. A program that was not launched as one of several ranks (mpx/job.h) and creates an
 * executor with MPX_BACKEND_MPI gets its worker ranks from MPI_Comm_spawn, as mpi4py.futures'
 * MPIPoolExecutor does: MPI is initialised then (MPI_Init_thread, MULTIPLE asked, SERIALIZED
 * required), never in mpx_init, so that plain runs never start MPI's runtime; N processes of this
 * same binary (/proc/self/exe, with this process's arguments and MPX__SPAWN_ARG appended) are
 * spawned; the intercommunicator is merged into one intracommunicator (the parent is its rank 0)
 * and a session over it serves executor after executor, as mpx_init's world session does. A later
 * executor that needs more ranks than the pool has ends the pool and spawns a bigger one.
 * mpx_finalize (the transport's fini) tells the pool to stop, disconnects and finalises MPI if
 * this file initialised it.
 *
 * Child. mpx_init sees MPX__SPAWN_ARG (job.c), removes it from argv, initialises MPI, merges the
 * parent's intercommunicator and serves the parent's session until TAG_STOP, then disconnects,
 * finalises MPI and makes mpx_init return MPX_WORKER.
 *
 * Mapping: Open MPI counts a singleton's slots as the node's cores, so N workers plus the parent
 * would not fit on a small node; the spawn asks map_by "slot:OVERSUBSCRIBE" unless
 * MPX_MPI_SPAWN_MAP_BY names another policy (empty: MPI's default).
 *
 * Thread-safety: the parent's functions run on the thread creating an executor or in
 * mpx_finalize, one at a time (executor creation on MPI is not concurrent with itself: the
 * caller holds the session's busy flag or no session exists yet); the child's run in mpx_init. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "job_impl.h"
#include "mpi_impl.h"
#include "mpx/error.h"
#include "os/log.h"

static struct {
  bool we_init;        /* this file called MPI_Init_thread */
  MPI_Comm inter;      /* parent: the spawned workers (MPI_COMM_NULL: no pool) */
  mpx__mpi_session *s; /* parent: the session over the merged communicator */
} sp = {.inter = MPI_COMM_NULL};

/* MPI_Init_thread unless MPI is up already; MPX_EMPI when it cannot be, or gives too little. */
static int ensure_mpi(int *argc, char ***argv) {
  int inited = 0, finalized = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) {
    mpx__set_errmsg("MPI was finalised already: spawn mode cannot start it again");
    return MPX_EMPI;
  }
  if (!inited) {
    const char *lv = getenv("MPX_MPI_THREAD_LEVEL");
    int want = lv && !strcmp(lv, "serialized") ? MPI_THREAD_SERIALIZED : MPI_THREAD_MULTIPLE;
    int rc = MPI_Init_thread(argc, argv, want, &provided);
    if (rc != MPI_SUCCESS) return mpx__mpi_fail("MPI_Init_thread", rc);
    sp.we_init = true;
  }
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_SERIALIZED) {
    mpx__set_errmsg("MPI provides less than MPI_THREAD_SERIALIZED; mpx needs SERIALIZED or better");
    return MPX_EMPI;
  }
  return MPX_OK;
}

/* This process's command line from /proc/self/cmdline: argv[1..] as a NULL-terminated array in
 * one allocation (the strings follow the pointers), with MPX__SPAWN_ARG appended. */
static char **spawn_args(void) {
  FILE *f = fopen("/proc/self/cmdline", "re");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *raw = malloc(cap);
  for (size_t k; raw && (k = fread(raw + n, 1, cap - n, f)) > 0;) {
    n += k;
    if (n == cap) {
      char *r = realloc(raw, cap *= 2);
      if (!r) free(raw);
      raw = r;
    }
  }
  fclose(f);
  if (!raw) return NULL;
  size_t nargs = 0;
  for (size_t i = 0; i < n; i++) nargs += raw[i] == '\0';
  size_t mark = sizeof MPX__SPAWN_ARG;
  char **args = malloc((nargs + 2) * sizeof *args + n + mark);
  if (!args) {
    free(raw);
    return NULL;
  }
  char *str = (char *)(args + nargs + 2);
  memcpy(str, raw, n);
  free(raw);
  size_t k = 0;
  for (size_t i = 0, arg = 0; i < n; arg++) { /* skip argv[0] */
    if (arg > 0) args[k++] = str + i;
    i += strlen(str + i) + 1;
  }
  memcpy(str + n, MPX__SPAWN_ARG, mark);
  args[k++] = str + n;
  args[k] = NULL;
  return args;
}

/* End the pool: STOP to every worker, free the session, disconnect. */
static void pool_end(void) {
  if (sp.inter == MPI_COMM_NULL) return;
  mpx__mpi_session *s = sp.s;
  for (int r = 0; r < s->size; r++)
    if (r != s->root) {
      MPI_Send(NULL, 0, MPI_BYTE, r, MPX__TAG_STOP, s->comm);
      mpx__mpi_ring(s, r);
    }
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
    mpx__mpi_session_free(s);
  else
    mpx__log(MPX_LOG_WARN, "spawn mode: an MPI executor still runs as its workers are stopped");
  sp.s = NULL;
  int rc = MPI_Comm_disconnect(&sp.inter);
  if (rc != MPI_SUCCESS) mpx__log(MPX_LOG_WARN, "MPI_Comm_disconnect failed (%d)", rc);
  sp.inter = MPI_COMM_NULL;
}

int mpx__mpi_spawn_session(int n, mpx__mpi_session **out) {
  *out = NULL;
  if (sp.s && sp.s->nworkers >= n) {
    *out = sp.s;
    return MPX_OK;
  }
  if (sp.s && atomic_load(&sp.s->busy)) {
    mpx__set_errmsg("spawn mode: an MPI executor runs on the %d spawned workers; destroy it "
                    "before asking for %d",
                    sp.s->nworkers, n);
    return MPX_ESTATE;
  }
  int rc = ensure_mpi(NULL, NULL);
  if (rc) return rc;
  pool_end();
  char exe[4096];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char **args = spawn_args();
  if (len <= 0 || !args) {
    free(args);
    mpx__set_errmsg("spawn mode: cannot read this program's path or arguments from /proc/self");
    return MPX_ESYS;
  }
  exe[len] = '\0';
  MPI_Info info = MPI_INFO_NULL;
  const char *map = getenv("MPX_MPI_SPAWN_MAP_BY");
  if (!map) map = "slot:OVERSUBSCRIBE";
  if (*map) {
    MPI_Info_create(&info);
    MPI_Info_set(info, "map_by", map);
  }
  int *errs = calloc((size_t)n, sizeof *errs);
  MPI_Comm inter = MPI_COMM_NULL, merged = MPI_COMM_NULL;
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN); /* a failed spawn is an error code */
  mpx__log(MPX_LOG_INFO, "spawn mode: spawning %d worker%s of %s (map_by %s)", n, n == 1 ? "" : "s",
           exe, *map ? map : "default");
  rc = errs ? MPI_Comm_spawn(exe, args, n, info, 0, MPI_COMM_SELF, &inter, errs) : MPI_ERR_NO_MEM;
  free(args);
  free(errs);
  if (info != MPI_INFO_NULL) MPI_Info_free(&info);
  if (rc != MPI_SUCCESS) {
    mpx__mpi_fail("MPI_Comm_spawn", rc);
    char why[256];
    snprintf(why, sizeof why, "%s", mpx_errmsg());
    mpx__set_errmsg("spawn mode: this MPI could not start %d worker%s (%s); run under mpirun "
                    "-np N instead, or set MPX_MPI_SPAWN_MAP_BY",
                    n, n == 1 ? "" : "s", why);
    return MPX_EMPI;
  }
  if ((rc = MPI_Intercomm_merge(inter, 0, &merged)) != MPI_SUCCESS) {
    MPI_Comm_disconnect(&inter);
    return mpx__mpi_fail("MPI_Intercomm_merge", rc);
  }
  mpx__mpi_session *s;
  rc = mpx__mpi_session_new(merged, 0, false, &s);
  MPI_Comm_free(&merged);
  if (rc) {
    MPI_Comm_disconnect(&inter);
    return rc;
  }
  s->spawned = true;
  sp.s = s;
  sp.inter = inter;
  *out = s;
  return MPX_OK;
}

bool mpx__mpi_spawn_fini(void) {
  pool_end();
  bool fin = sp.we_init;
  sp.we_init = false;
  return fin;
}

int mpx__mpi_spawned_serve(int *argc, char ***argv) {
  if (argc && argv && *argv && *argc > 0 && !strcmp((*argv)[*argc - 1], MPX__SPAWN_ARG))
    (*argv)[--*argc] = NULL;
  int rc = ensure_mpi(argc, argv);
  if (rc) return rc;
  MPI_Comm parent = MPI_COMM_NULL, merged = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  if (parent == MPI_COMM_NULL) {
    mpx__set_errmsg("started with " MPX__SPAWN_ARG " but not by MPI_Comm_spawn: no parent");
    return MPX_EMPI;
  }
  if ((rc = MPI_Intercomm_merge(parent, 1, &merged)) != MPI_SUCCESS)
    return mpx__mpi_fail("MPI_Intercomm_merge", rc);
  mpx__mpi_session *s;
  rc = mpx__mpi_session_new(merged, 0, false, &s);
  MPI_Comm_free(&merged);
  if (rc) return rc;
  s->spawned = true;
  rc = mpx__mpi_serve(s);
  mpx__mpi_session_free(s);
  MPI_Comm_disconnect(&parent);
  if (sp.we_init) MPI_Finalize();
  sp.we_init = false;
  return rc;
}
