/* job.c: mpx_job_get and mpx_job_deadline (mpx/job.h): the batch system's and the launcher's
 * variables, and the rules that decide whether this process is one of several ranks of a
 * launched job (the table is in mpx/job.h; mpx_init's MPI hook and the topology use them).
 *
 * Guarantees: pure functions of the environment, /proc/self/cmdline and PBS_NODEFILE; malformed
 * numbers count as unset (never as 0 or as a launch). Thread-safety: no state; getenv only. */
#include "mpx/job.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"
#include "job_impl.h"

/* A non-negative decimal integer from the environment, or -1 when unset or malformed. */
static long env_num(const char *name) {
  const char *s = getenv(name);
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < 0 || v > LONG_MAX) return -1;
  return (long)v;
}

/* The first of two spellings that is set (Slurm keeps old names such as SLURM_JOBID). */
static const char *env2(const char *a, const char *b) {
  const char *s = getenv(a);
  return s && *s ? s : getenv(b);
}

static long env2_num(const char *a, const char *b) {
  long v = env_num(a);
  return v >= 0 ? v : env_num(b);
}

/* SLURM_CPUS_PER_TASK may read "4" or, in some versions' steps, "4(x2)": take the leading count. */
static int leading_int(const char *s) {
  if (!s) return 0;
  long v = strtol(s, NULL, 10);
  return v > 0 && v <= INT_MAX ? (int)v : 0;
}

/* True if /proc/self/cmdline's last argument is the spawn marker. */
static bool spawned_by_mpx(void) {
  FILE *f = fopen("/proc/self/cmdline", "re");
  if (!f) return false;
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  bool full = feof(f);
  fclose(f);
  if (!full || n == 0) return false; /* a longer command line than we read: not ours */
  buf[n] = '\0';
  if (buf[n - 1] == '\0') n--; /* the terminator of the last argument */
  size_t len = strlen(MPX__SPAWN_ARG);
  return n >= len && memcmp(buf + n - len, MPX__SPAWN_ARG, len) == 0 &&
         (n == len || buf[n - len - 1] == '\0');
}

/* The PBS node file: its lines (slots) and distinct host names. Small files; quadratic is fine. */
static void read_nodefile(const char *path, int *slots, int *hosts) {
  *slots = *hosts = 0;
  FILE *f = path && *path ? fopen(path, "re") : NULL;
  if (!f) return;
  char line[256], (*seen)[256] = NULL;
  int cap = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, " \t\r\n")] = '\0';
    if (!line[0]) continue;
    (*slots)++;
    bool dup = false;
    for (int i = 0; i < *hosts && !dup; i++) dup = strcmp(seen[i], line) == 0;
    if (dup) continue;
    if (*hosts == cap) {
      int c = cap ? cap * 2 : 16;
      void *p = realloc(seen, (size_t)c * sizeof *seen);
      if (!p) break;
      seen = p;
      cap = c;
    }
    memcpy(seen[(*hosts)++], line, sizeof line);
  }
  free(seen);
  fclose(f);
}

static void say(mpx_job *j, bool launched, const char *launcher, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(mpx_job *j, bool launched, const char *launcher, const char *fmt, ...) {
  j->launched = launched;
  snprintf(j->launcher, sizeof j->launcher, "%s", launcher);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->reason, sizeof j->reason, fmt, ap);
  va_end(ap);
}

/* Step ids at or above this are Slurm's special steps (batch, extern, interactive...). */
#define SLURM_SPECIAL_STEP 0xfffffff0L

/* The launch rules of mpx/job.h, in order. */
static void decide(mpx_job *j) {
  const char *ov = getenv("MPX_MPI");
  long n;
  if (ov && !strcmp(ov, "0")) return say(j, false, "MPX_MPI", "MPX_MPI=0: MPI is not used");
  if (ov && !strcmp(ov, "1"))
    return say(j, true, "MPX_MPI", "MPX_MPI=1: MPI is initialised; its size decides the roles");
  if (spawned_by_mpx()) {
    j->spawned = 1;
    return say(j, false, "spawn", "started by an mpx program in spawn mode (" MPX__SPAWN_ARG ")");
  }
  if ((n = env_num("OMPI_COMM_WORLD_SIZE")) >= 0) {
    j->tasks = (int)(n > INT_MAX ? INT_MAX : n);
    j->rank = (int)env_num("OMPI_COMM_WORLD_RANK");
    return say(j, n > 1, "mpirun", "mpirun started %ld rank%s (OMPI_COMM_WORLD_SIZE=%ld)", n,
               n == 1 ? "" : "s", n);
  }
  if ((n = env_num("PMI_SIZE")) >= 0) {
    j->tasks = (int)(n > INT_MAX ? INT_MAX : n);
    j->rank = (int)env_num("PMI_RANK");
    return say(j, n > 1, "pmi", "a PMI launcher started %ld rank%s (PMI_SIZE=%ld)", n,
               n == 1 ? "" : "s", n);
  }
  long step_tasks = env_num("SLURM_STEP_NUM_TASKS");
  long step_id = env2_num("SLURM_STEP_ID", "SLURM_STEPID");
  bool srun_step = step_tasks >= 0 || (step_id >= 0 && step_id < SLURM_SPECIAL_STEP);
  if (srun_step && step_tasks < 0) step_tasks = env2_num("SLURM_NTASKS", "SLURM_NPROCS");
  if (srun_step && step_tasks >= 0) j->tasks = (int)(step_tasks > INT_MAX ? INT_MAX : step_tasks);
  if (getenv("PMIX_RANK")) {
    j->rank = (int)env_num("PMIX_RANK");
    if (step_tasks >= 0)
      return say(j, step_tasks > 1, "pmix",
                 "a PMIx launcher started %ld task%s (PMIX_RANK, "
                 "SLURM_STEP_NUM_TASKS=%ld)",
                 step_tasks, step_tasks == 1 ? "" : "s", step_tasks);
    return say(j, true, "pmix",
               "a PMIx launcher (PMIX_RANK) without a task count: MPI_Init decides the roles");
  }
  if (srun_step) {
    j->rank = (int)env_num("SLURM_PROCID");
    if (step_tasks < 0)
      return say(j, false, "srun", "an srun step that does not say its task count");
    return say(j, step_tasks > 1, "srun", "an srun step of %ld task%s (SLURM_STEP_NUM_TASKS=%ld)",
               step_tasks, step_tasks == 1 ? "" : "s", step_tasks);
  }
  if (j->scheduler == MPX_SCHED_SLURM)
    return say(j, false, "none",
               "a Slurm batch step or allocation shell, not an srun step "
               "(SLURM_JOB_ID=%s without SLURM_STEP_NUM_TASKS; SLURM_PROCID says nothing here)",
               j->job_id);
  if (j->scheduler == MPX_SCHED_PBS)
    return say(j, false, "none", "a PBS job script (PBS_JOBID=%s), not a launched rank", j->job_id);
  return say(j, false, "none", "no launcher in the environment: a plain run");
}

int mpx_job_get(mpx_job *out) {
  if (!out) {
    mpx__set_errmsg("mpx_job_get: out is NULL");
    return MPX_EINVAL;
  }
  memset(out, 0, sizeof *out);
  out->rank = -1;
  const char *id;
  if ((id = env2("SLURM_JOB_ID", "SLURM_JOBID")) && *id) {
    out->scheduler = MPX_SCHED_SLURM;
    snprintf(out->job_id, sizeof out->job_id, "%s", id);
    out->cpus_per_task = leading_int(getenv("SLURM_CPUS_PER_TASK"));
    long n = env2_num("SLURM_JOB_NUM_NODES", "SLURM_NNODES");
    out->nodes = n > 0 && n <= INT_MAX ? (int)n : 0;
    long end = env_num("SLURM_JOB_END_TIME");
    out->end_time = end > 0 ? (double)end : 0;
  } else if ((id = getenv("PBS_JOBID")) && *id) {
    out->scheduler = MPX_SCHED_PBS;
    snprintf(out->job_id, sizeof out->job_id, "%s", id);
    long n = env_num("NCPUS");
    out->ncpus = n > 0 && n <= INT_MAX ? (int)n : 0;
    read_nodefile(getenv("PBS_NODEFILE"), &out->node_slots, &out->nodes);
  }
  decide(out);
  return MPX_OK;
}

int mpx_job_deadline(double *end_time, double *seconds_left) {
  mpx_job j;
  mpx_job_get(&j);
  if (j.end_time <= 0) {
    mpx__set_errmsg(j.scheduler == MPX_SCHED_SLURM
                        ? "SLURM_JOB_END_TIME is not set (an older Slurm, or no time limit)"
                        : "no batch system in the environment gives the job's end time");
    return MPX_ENOTFOUND;
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (end_time) *end_time = j.end_time;
  if (seconds_left) *seconds_left = j.end_time - ((double)now.tv_sec + now.tv_nsec / 1e9);
  return MPX_OK;
}
