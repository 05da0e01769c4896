/* cluster_test: launch detection, batch-system facts, spawn mode and a working rank 0 (argv[1]
 * picks the mode; each mode is one ctest entry, in a fresh process, label mpi).
 *   rules        mpx_job_get over faked environments: malformed and overridden values first,
 *                then a Slurm batch step, srun steps of 1 and 4 tasks, PMIx, PMI, mpirun, PBS
 *   batch        a faked Slurm batch step (SLURM_PROCID=0, SLURM_NTASKS=4, SLURM_JOB_ID, no PMI):
 *                mpx_init leaves MPI alone and AUTO runs tasks on threads in this process
 *   batch1       the same with SLURM_NTASKS unset
 *   srun1        a faked srun step of one task: threads
 *   pbs          a faked PBS job script: threads
 *   slurmfacts   SLURM_CPUS_PER_TASK, SLURM_JOB_NUM_NODES and SLURM_JOB_END_TIME reach
 *                mpx_topology_info and mpx_job_deadline
 *   pbsfacts     PBS_NODEFILE (host count, slots) and NCPUS reach them
 *   spawnrefused spawn mode refused: MPX_MPI=0, then a spawn this MPI cannot place (map_by slot
 *                without oversubscription, 10000 workers): MPX_EMPI naming the spawn, nothing
 * started spawn        a plain run with MPX_BACKEND=mpi and workers = 2: two spawned workers run
 * the tasks in two other pids; a smaller executor reuses them, a bigger one respawns The
 * environment is faked with setenv before the first mpx call, never inherited from a real batch
 * system: the test clears every launcher variable first. No timing is asserted. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpx/mpi.h>

#include "check.h"

static int where(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  int32_t pid = (int32_t)getpid();
  return mpx_buf_set(out, &pid, sizeof pid);
}
MPX_TASK(where)

static const char *const launch_vars[] = {"MPX_MPI",
                                          "OMPI_COMM_WORLD_SIZE",
                                          "OMPI_COMM_WORLD_RANK",
                                          "PMI_SIZE",
                                          "PMI_RANK",
                                          "PMIX_RANK",
                                          "PMIX_NAMESPACE",
                                          "MPI_LOCALNRANKS",
                                          "SLURM_JOB_ID",
                                          "SLURM_JOBID",
                                          "SLURM_PROCID",
                                          "SLURM_NTASKS",
                                          "SLURM_NPROCS",
                                          "SLURM_STEP_ID",
                                          "SLURM_STEPID",
                                          "SLURM_STEP_NUM_TASKS",
                                          "SLURM_CPUS_PER_TASK",
                                          "SLURM_JOB_NUM_NODES",
                                          "SLURM_NNODES",
                                          "SLURM_JOB_END_TIME",
                                          "PBS_JOBID",
                                          "PBS_NODEFILE",
                                          "NCPUS",
                                          NULL};

static void clear_env(void) {
  for (int i = 0; launch_vars[i]; i++) unsetenv(launch_vars[i]);
}

/* Set "NAME=value" pairs from a NULL-terminated list. */
static void set_env(const char *const *kv) {
  for (; *kv; kv++) {
    char name[64];
    const char *eq = strchr(*kv, '=');
    CHECK(eq && (size_t)(eq - *kv) < sizeof name);
    memcpy(name, *kv, (size_t)(eq - *kv));
    name[eq - *kv] = '\0';
    CHECK(setenv(name, eq + 1, 1) == 0);
  }
}

static mpx_job job_in(const char *const *kv) {
  clear_env();
  set_env(kv);
  mpx_job j;
  CHECK_RC(mpx_job_get(&j), MPX_OK);
  printf("  %-40s -> %s %s (%s)\n", kv[0] ? kv[0] : "(empty)", j.launched ? "MPI" : "no MPI",
         j.launcher, j.reason);
  return j;
}

#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})

static void mode_rules(void) {
  CHECK_RC(mpx_job_get(NULL), MPX_EINVAL);
  /* malformed numbers count as unset, never as a launch */
  mpx_job j = job_in(ENV("OMPI_COMM_WORLD_SIZE=abc"));
  CHECK(!j.launched && j.tasks == 0);
  j = job_in(ENV("PMI_SIZE=-3"));
  CHECK(!j.launched);
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_STEP_NUM_TASKS=4x"));
  CHECK(!j.launched);
  /* overrides win over everything */
  j = job_in(ENV("MPX_MPI=0", "OMPI_COMM_WORLD_SIZE=4"));
  CHECK(!j.launched && !strcmp(j.launcher, "MPX_MPI"));
  j = job_in(ENV("MPX_MPI=1"));
  CHECK(j.launched && !strcmp(j.launcher, "MPX_MPI"));
  /* Slurm's special step ids (batch = 0xfffffffb) are not srun steps */
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_STEP_ID=4294967291", "SLURM_NTASKS=8", "SLURM_PROCID=0"));
  CHECK(!j.launched && j.scheduler == MPX_SCHED_SLURM);
  /* the case: a batch step has SLURM_PROCID=0 and maybe SLURM_NTASKS > 1 */
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_PROCID=0", "SLURM_NTASKS=4"));
  CHECK(!j.launched && j.scheduler == MPX_SCHED_SLURM && !strcmp(j.job_id, "9"));
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_PROCID=0"));
  CHECK(!j.launched);
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=1", "SLURM_PROCID=0"));
  CHECK(!j.launched && j.tasks == 1 && j.rank == 0);
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_STEP_ID=1", "SLURM_STEP_NUM_TASKS=4", "SLURM_PROCID=2"));
  CHECK(j.launched && j.tasks == 4 && j.rank == 2 && !strcmp(j.launcher, "srun"));
  j = job_in(ENV("SLURM_JOB_ID=9", "SLURM_STEPID=3", "SLURM_NTASKS=2", "SLURM_PROCID=1"));
  CHECK(j.launched && j.tasks == 2);
  j = job_in(ENV("PMIX_RANK=0", "SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=1"));
  CHECK(!j.launched && !strcmp(j.launcher, "pmix"));
  j = job_in(ENV("PMIX_RANK=3", "SLURM_JOB_ID=9", "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=8"));
  CHECK(j.launched && j.rank == 3 && j.tasks == 8);
  j = job_in(ENV("PMIX_RANK=0"));
  CHECK(j.launched && j.tasks == 0);
  j = job_in(ENV("PMI_SIZE=1", "PMI_RANK=0"));
  CHECK(!j.launched);
  j = job_in(ENV("PMI_SIZE=3", "PMI_RANK=2"));
  CHECK(j.launched && j.rank == 2);
  j = job_in(ENV("OMPI_COMM_WORLD_SIZE=1", "OMPI_COMM_WORLD_RANK=0", "PMIX_RANK=0"));
  CHECK(!j.launched && !strcmp(j.launcher, "mpirun"));
  j = job_in(ENV("OMPI_COMM_WORLD_SIZE=3", "OMPI_COMM_WORLD_RANK=1", "SLURM_JOB_ID=9"));
  CHECK(j.launched && j.rank == 1 && j.tasks == 3 && j.scheduler == MPX_SCHED_SLURM);
  j = job_in(ENV("PBS_JOBID=12.server", "NCPUS=8"));
  CHECK(!j.launched && j.scheduler == MPX_SCHED_PBS && j.ncpus == 8);
  j = job_in(ENV("PBS_JOBID=12.server", "OMPI_COMM_WORLD_SIZE=16"));
  CHECK(j.launched);
  j = job_in(ENV("PATH_UNUSED=1"));
  CHECK(!j.launched && j.scheduler == MPX_SCHED_NONE && !strcmp(j.launcher, "none"));
  CHECK(!j.spawned);
}

/* mpx_init in a faked non-launch environment: MPI untouched, AUTO = threads, tasks run here. */
static void plain_run(const char *const *kv) {
  clear_env();
  set_env(kv);
  int argc = 1;
  char *args[] = {"cluster_test", NULL}, **argv = args;
  CHECK_RC(mpx_init(&argc, &argv), MPX_MAIN);
  int inited = 1;
  MPI_Initialized(&inited);
  CHECK(!inited); /* no singleton MPI_Init, no runtime daemon */
  mpx_executor *ex;
  CHECK_RC(mpx_executor_create(&ex, NULL), MPX_OK);
  CHECK(mpx_executor_backend(ex) == MPX_BACKEND_THREADS);
  mpx_future *f;
  int32_t pid = 0;
  CHECK_RC(mpx_submit(ex, "where", NULL, 0, &f), MPX_OK);
  CHECK_RC(mpx_future_result_copy(f, &pid, sizeof pid, MPX_FOREVER), MPX_OK);
  CHECK(pid == (int32_t)getpid());
  mpx_future_release(f);
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  CHECK_RC(mpx_finalize(), MPX_OK);
}

/* Run `n` where-tasks on ex; count the distinct pids into pids[0..*npids), at most 16. */
static void pids_of(mpx_executor *ex, int n, int32_t *pids, int *npids) {
  *npids = 0;
  mpx_future *fs[256];
  CHECK(n <= 256);
  for (int i = 0; i < n; i++) CHECK_RC(mpx_submit(ex, "where", NULL, 0, &fs[i]), MPX_OK);
  for (int i = 0; i < n; i++) {
    int32_t pid = 0;
    CHECK_RC(mpx_future_result_copy(fs[i], &pid, sizeof pid, MPX_FOREVER), MPX_OK);
    mpx_future_release(fs[i]);
    bool seen = false;
    for (int k = 0; k < *npids && !seen; k++) seen = pids[k] == pid;
    if (!seen && *npids < 16) pids[(*npids)++] = pid;
  }
}

static int busy_ms(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  struct timespec ts = {0, 2000000};
  nanosleep(&ts, NULL);
  return where(ctx, arg, len, out);
}
MPX_TASK(busy_ms)

static _Atomic int inits; /* initializer runs in this process */
static int count_init(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  atomic_fetch_add(&inits, 1);
  return 0;
}
MPX_TASK(count_init)

/* 2 ms tasks on ex: whether rank 0 (this pid) and some other pid ran any. */
static void who_ran(mpx_executor *ex, int n, bool *here, bool *elsewhere) {
  *here = *elsewhere = false;
  mpx_future *fs[200];
  CHECK(n <= 200);
  for (int i = 0; i < n; i++) CHECK_RC(mpx_submit(ex, "busy_ms", NULL, 0, &fs[i]), MPX_OK);
  for (int i = 0; i < n; i++) {
    int32_t pid;
    CHECK_RC(mpx_future_result_copy(fs[i], &pid, sizeof pid, MPX_FOREVER), MPX_OK);
    mpx_future_release(fs[i]);
    if (pid == (int32_t)getpid())
      *here = true;
    else
      *elsewhere = true;
  }
}

static void mode_spawnrefused(void) {
  clear_env();
  setenv("MPX_MPI", "0", 1);
  int argc = 1;
  char *args[] = {"cluster_test", NULL}, **argv = args;
  CHECK_RC(mpx_init(&argc, &argv), MPX_MAIN);
  mpx_executor *ex = NULL;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI, .workers = 2}),
           MPX_EMPI);
  CHECK(ex == NULL && strstr(mpx_errmsg(), "MPX_MPI=0"));
  int inited = 1;
  MPI_Initialized(&inited);
  CHECK(!inited);
  CHECK_RC(mpx_finalize(), MPX_OK);
  /* an MPI that cannot place the workers: refused with MPI's reason, MPI still finalised */
  unsetenv("MPX_MPI");
  setenv("MPX_MPI_SPAWN_MAP_BY", "slot", 1);
  unsetenv("OMPI_MCA_rmaps_base_oversubscribe"); /* ctest sets it for the mpirun tests */
  CHECK_RC(mpx_init(&argc, &argv), MPX_MAIN);
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI, .workers = 10000}),
           MPX_EMPI);
  CHECK(ex == NULL && strstr(mpx_errmsg(), "spawn mode") && strstr(mpx_errmsg(), "10000 workers"));
  printf("  refused: %s\n", mpx_errmsg());
  CHECK_RC(mpx_finalize(), MPX_OK);
}

static void mode_spawn(void) {
  clear_env();
  setenv("MPX_BACKEND", "mpi", 1);
  int argc = 1;
  char *args[] = {"cluster_test", NULL}, **argv = args;
  int role = mpx_init(&argc, &argv);
  if (role == MPX_WORKER) exit(0); /* never here: the workers' main returns in main() */
  CHECK_RC(role, MPX_MAIN);
  int inited = 1;
  MPI_Initialized(&inited);
  CHECK(!inited); /* not before the first MPI executor */
  mpx_executor *ex;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.workers = 2}), MPX_OK);
  CHECK(mpx_executor_backend(ex) == MPX_BACKEND_MPI && mpx_executor_workers(ex) == 2);
  int32_t pids[16];
  int n = 0;
  pids_of(ex, 200, pids, &n);
  for (int i = 0; i < n; i++) CHECK(pids[i] != (int32_t)getpid());
  /* both workers serve: 2 ms tasks, so that one worker cannot take them all */
  mpx_future *fs[40];
  int32_t seen[2] = {0, 0};
  int nseen = 0;
  for (int i = 0; i < 40; i++) CHECK_RC(mpx_submit(ex, "busy_ms", NULL, 0, &fs[i]), MPX_OK);
  for (int i = 0; i < 40; i++) {
    int32_t pid;
    CHECK_RC(mpx_future_result_copy(fs[i], &pid, sizeof pid, MPX_FOREVER), MPX_OK);
    mpx_future_release(fs[i]);
    CHECK(pid != (int32_t)getpid());
    if (nseen < 2 && (nseen == 0 || seen[0] != pid)) seen[nseen++] = pid;
  }
  printf("  spawned workers: pids %d and %d (this process %d)\n", (int)seen[0], (int)seen[1],
         (int)getpid());
  CHECK(nseen == 2);
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  /* a smaller executor reuses the pool */
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.workers = 1}), MPX_OK);
  pids_of(ex, 20, pids, &n);
  CHECK(n == 1 && (pids[0] == seen[0] || pids[0] == seen[1]));
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  /* a bigger one ends it and spawns anew */
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.workers = 3}), MPX_OK);
  CHECK(mpx_executor_workers(ex) == 3);
  pids_of(ex, 50, pids, &n);
  for (int i = 0; i < n; i++) CHECK(pids[i] != (int32_t)getpid());
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  /* the parent works too when asked: 2 spawned workers and 1 thread of its own */
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.workers = 2, .root_threads = 1}), MPX_OK);
  CHECK(mpx_executor_workers(ex) == 3);
  bool here, elsewhere;
  who_ran(ex, 100, &here, &elsewhere);
  CHECK(here && elsewhere);
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  CHECK_RC(mpx_finalize(), MPX_OK);
  int fin = 0;
  MPI_Finalized(&fin);
  CHECK(fin); /* spawn mode started MPI, mpx_finalize ended it */
}

static void mode_rank0(int *argc, char ***argv) {
  int role = mpx_init(argc, argv);
  if (role == MPX_WORKER) exit(0);
  CHECK_RC(role, MPX_MAIN);
  mpx_executor *ex = NULL;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI, .root_threads = -2}),
           MPX_EINVAL);
  CHECK(ex == NULL);
  bool here, elsewhere;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .threads_per_rank = 1,
                                                   .root_threads = -1}),
           MPX_OK);
  CHECK(mpx_executor_workers(ex) == 1);
  who_ran(ex, 40, &here, &elsewhere);
  CHECK(!here && elsewhere);
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.backend = MPX_BACKEND_MPI,
                                                   .threads_per_rank = 1,
                                                   .root_threads = 1,
                                                   .initializer = "count_init"}),
           MPX_OK);
  CHECK(mpx_executor_workers(ex) == 2);
  CHECK(atomic_load(&inits) == 1); /* the root's thread ran the initializer */
  who_ran(ex, 100, &here, &elsewhere);
  printf("  root_threads = 1: tasks on rank 0 (pid %d): %s, on rank 1: %s\n", (int)getpid(),
         here ? "yes" : "no", elsewhere ? "yes" : "no");
  CHECK(here && elsewhere);
  /* map over both, results in order */
  int32_t items[64], pids[64];
  for (int i = 0; i < 64; i++) items[i] = i;
  CHECK_RC(mpx_map(ex, "where", items, sizeof items[0], 64, pids, sizeof pids[0],
                   &(mpx_map_opts){.chunksize = 1}),
           MPX_OK);
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  CHECK_RC(mpx_finalize(), MPX_OK);
}

static int host_of(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len;
  char h[64] = "";
  gethostname(h, sizeof h - 1);
  return mpx_buf_set(out, h, sizeof h);
}
MPX_TASK(host_of)

static void mode_vnodes(int *argc, char ***argv) {
  mpx_job j;
  CHECK_RC(mpx_job_get(&j), MPX_OK);
  CHECK(j.launched && j.tasks == 4 && !strcmp(j.launcher, "mpirun"));
  int role = mpx_init(argc, argv);
  if (role == MPX_WORKER) exit(0);
  CHECK_RC(role, MPX_MAIN);
  char me[64] = "";
  gethostname(me, sizeof me - 1);
  mpx_executor *ex;
  CHECK_RC(mpx_executor_create(&ex, &(mpx_options){.threads_per_rank = 1}), MPX_OK);
  CHECK(mpx_executor_backend(ex) == MPX_BACKEND_MPI && mpx_executor_workers(ex) == 3);
  enum { N = 60 };
  mpx_future *fs[N];
  for (int i = 0; i < N; i++) CHECK_RC(mpx_submit(ex, "busy_ms", NULL, 0, &fs[i]), MPX_OK);
  for (int i = 0; i < N; i++) {
    CHECK_RC(mpx_future_result(fs[i], MPX_FOREVER, NULL, NULL), MPX_OK);
    mpx_future_release(fs[i]);
  }
  bool here = false, other = false;
  for (int i = 0; i < N; i++) CHECK_RC(mpx_submit(ex, "host_of", NULL, 0, &fs[i]), MPX_OK);
  for (int i = 0; i < N; i++) {
    char h[64];
    CHECK_RC(mpx_future_result_copy(fs[i], h, sizeof h, MPX_FOREVER), MPX_OK);
    mpx_future_release(fs[i]);
    h[63] = '\0';
    if (!strcmp(h, me))
      here = true;
    else
      other = true;
  }
  printf("  root on %s; tasks on its node: %s, on the other: %s\n", me, here ? "yes" : "no",
         other ? "yes" : "no");
  CHECK(other); /* the other node's ranks serve (its ranks get most of the work) */
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
  CHECK_RC(mpx_finalize(), MPX_OK);
}

static void mode_slurmfacts(void) {
  clear_env();
  time_t end = time(NULL) + 3600;
  char endv[64];
  snprintf(endv, sizeof endv, "SLURM_JOB_END_TIME=%lld", (long long)end);
  set_env(ENV("SLURM_JOB_ID=41", "SLURM_PROCID=0", "SLURM_CPUS_PER_TASK=1", "SLURM_JOB_NUM_NODES=3",
              endv));
  const mpx_topology *t;
  mpx_topo_info in;
  CHECK_RC(mpx_topology_get(&t), MPX_OK);
  CHECK_RC(mpx_topology_info(t, &in), MPX_OK);
  CHECK(in.cpus_per_task == 1 && in.job_nodes == 3 && in.ncpus == 0);
  CHECK(in.default_workers == 1); /* capped by the grant, whatever the machine has */
  double e = 0, left = 0;
  CHECK_RC(mpx_job_deadline(&e, &left), MPX_OK);
  CHECK(e == (double)end && left > 0 && left <= 3600);
  CHECK_RC(mpx_job_deadline(NULL, NULL), MPX_OK);
  unsetenv("SLURM_JOB_END_TIME"); /* the deadline is read anew each call */
  CHECK_RC(mpx_job_deadline(&e, &left), MPX_ENOTFOUND);
  CHECK(strstr(mpx_errmsg(), "SLURM_JOB_END_TIME"));
  mpx_executor *ex;
  CHECK_RC(mpx_executor_create(&ex, NULL), MPX_OK);
  CHECK(mpx_executor_workers(ex) == 1);
  CHECK_RC(mpx_executor_destroy(ex), MPX_OK);
}

static void mode_pbsfacts(void) {
  clear_env();
  char path[] = "/tmp/mpx_nodefile_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char lines[] = "n1\nn1\nn2\nn3\nn3\nn3\n";
  CHECK(write(fd, lines, sizeof lines - 1) == (ssize_t)(sizeof lines - 1));
  close(fd);
  setenv("PBS_JOBID", "17.pbs", 1);
  setenv("PBS_NODEFILE", path, 1);
  setenv("NCPUS", "1", 1);
  const mpx_topology *t;
  mpx_topo_info in;
  CHECK_RC(mpx_topology_get(&t), MPX_OK);
  CHECK_RC(mpx_topology_info(t, &in), MPX_OK);
  CHECK(in.ncpus == 1 && in.job_nodes == 3 && in.cpus_per_task == 0 && in.default_workers == 1);
  mpx_job j;
  CHECK_RC(mpx_job_get(&j), MPX_OK);
  CHECK(j.scheduler == MPX_SCHED_PBS && j.node_slots == 6 && j.nodes == 3 && !j.launched);
  CHECK_RC(mpx_job_deadline(NULL, NULL), MPX_ENOTFOUND);
  unlink(path);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* spawn mode's workers are this binary: they serve in mpx_init and return here */
  if (argc > 1 && !strcmp(argv[argc - 1], "--mpx-spawned-worker"))
    return mpx_init(&argc, &argv) == MPX_WORKER ? 0 : 1;
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "rules"))
    mode_rules();
  else if (!strcmp(mode, "batch"))
    plain_run(ENV("SLURM_JOB_ID=101", "SLURM_PROCID=0", "SLURM_NTASKS=4", "SLURM_CPUS_PER_TASK=2"));
  else if (!strcmp(mode, "batch1"))
    plain_run(ENV("SLURM_JOB_ID=101", "SLURM_PROCID=0"));
  else if (!strcmp(mode, "srun1"))
    plain_run(ENV("SLURM_JOB_ID=101", "SLURM_PROCID=0", "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=1",
                  "SLURM_NTASKS=1"));
  else if (!strcmp(mode, "pbs"))
    plain_run(ENV("PBS_JOBID=7.pbs", "NCPUS=2"));
  else if (!strcmp(mode, "slurmfacts"))
    mode_slurmfacts();
  else if (!strcmp(mode, "pbsfacts"))
    mode_pbsfacts();
  else if (!strcmp(mode, "spawnrefused"))
    mode_spawnrefused();
  else if (!strcmp(mode, "spawn"))
    mode_spawn();
  else if (!strcmp(mode, "rank0"))
    mode_rank0(&argc, &argv);
  else if (!strcmp(mode, "vnodes"))
    mode_vnodes(&argc, &argv);
  else {
    fprintf(stderr,
            "usage: %s "
            "rules|batch|batch1|srun1|pbs|slurmfacts|pbsfacts|spawnrefused|spawn|rank0|vnodes\n",
            argv[0]);
    return 2;
  }
  printf("cluster_test %s: ok\n", mode);
  return 0;
}
