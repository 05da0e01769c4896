/* mpx topology: what hardware this process may use, and where workers go, from hwloc.
 *
 * The usable set respects taskset/sched_setaffinity, cgroup cpusets and CPU quotas, and the
 * binding mpirun or Slurm gave the process; the CPUs Slurm (SLURM_CPUS_PER_TASK) or PBS (NCPUS)
 * grant the process cap the default workers even when they did not bind it (mpx/job.h). The process-wide topology is loaded once (thread-safe)
 * and cached; mpx_topology_load_xml and mpx_topology_load_synthetic give private ones for tests and
 * tools. Counts and logical indices are hwloc's; a machine without Package or NUMA objects counts
 * as one of each, and one without Core objects counts each PU as a core.
 * Thread-safety: a topology is read-only after loading and may be shared between threads. */
#ifndef MPX_TOPOLOGY_H
#define MPX_TOPOLOGY_H

#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"
#include "mpx/executor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_topology mpx_topology;

/* Counts of what this process may use. */
typedef struct mpx_topo_info {
  int packages;   /* sockets with at least one usable PU */
  int numa_nodes; /* NUMA nodes with at least one usable PU (at least 1) */
  int cores;      /* usable cores */
  int pus;        /* usable hardware threads */
  int cpu_quota;  /* cgroup CPU quota rounded up to whole CPUs, 0 if none */
  int default_workers; /* what workers = 0 means: min(cores, cpu_quota, job CPUs if any), >= 1 */
  /* What the batch system grants this process (mpx/job.h), for the process-wide topology only
   * (0 in loaded ones, and when not set): */
  int cpus_per_task; /* Slurm's SLURM_CPUS_PER_TASK: caps default_workers */
  int ncpus;         /* PBS's NCPUS: caps default_workers */
  int job_nodes;     /* hosts in the job's allocation (SLURM_JOB_NUM_NODES, PBS_NODEFILE) */
} mpx_topo_info;

/* Where one worker goes. Placements from mpx_topology_place carry `binding` and `place`, which
 * let the bind functions use the exact place even when `cpuset` (for display) was truncated. */
typedef struct mpx_placement {
  int worker;
  int numa_node;   /* logical index of its NUMA node, -1 if unbound or spanning nodes */
  int core;        /* logical index of its core, -1 if bound wider than a core or unbound */
  int pu;          /* logical index of its PU, -1 if bound wider than a PU or unbound */
  char cpuset[64]; /* the OS CPU list it is bound to, as "0-3,8", or "" if unbound */
  int package;     /* logical index of its package, -1 if unbound, spanning packages or none */
  mpx_binding binding; /* the binding it was computed for; MPX_BIND_NONE for a hand-made one */
  int place;       /* index of its place in that binding's list, -1 if unbound or hand-made */
} mpx_placement;

/* The process-wide topology (loaded on first use, never freed by the caller). MPX_ETOPO if hwloc
 * could not read the machine or nothing is usable; the answer is cached either way. */
MPX_API int mpx_topology_get(const mpx_topology **out);

/* Load a topology from an hwloc XML file (synthetic machines in tests); free with
 * mpx_topology_free. Everything in it counts as usable and it has no CPU quota. *out is NULL on
 * failure: MPX_ENOTFOUND if the file cannot be read, MPX_ETOPO if hwloc cannot load it. */
MPX_API int mpx_topology_load_xml(const char *path, mpx_topology **out);

/* Load a synthetic topology from an hwloc description such as "pack:2 numa:2 core:4 pu:2"; as
 * load_xml, with MPX_EINVAL for a description hwloc rejects. */
MPX_API int mpx_topology_load_synthetic(const char *description, mpx_topology **out);

/* Free a loaded topology. MPX_EPERM (and nothing happens) for the process-wide one. */
MPX_API int mpx_topology_free(mpx_topology *t);

/* Counts of what is usable. */
MPX_API int mpx_topology_info(const mpx_topology *t, mpx_topo_info *out);

/* The usable set as an OS CPU list ("0-3,8") in buf; MPX_ETOOBIG if it was truncated to fit. */
MPX_API int mpx_topology_cpuset(const mpx_topology *t, char *buf, size_t len);

/* The number of distinct places under `binding` (workers beyond it wrap around): usable cores,
 * PUs or NUMA nodes, or 1 for MPX_BIND_NONE. A negative code on bad input. */
MPX_API int mpx_topology_places(const mpx_topology *t, mpx_binding binding);

/* Placement of `n` workers under `binding`: out[0..n) (more workers than places wrap around).
 * CORE and PU placements alternate packages, then NUMA nodes within a package; PU fills every
 * core's first PU before any SMT sibling. NUMA gives each worker all usable PUs of one node. */
MPX_API int mpx_topology_place(const mpx_topology *t, mpx_binding binding, int n,
                               mpx_placement *out);

/* Bind the calling thread to a placement computed on the process-wide topology, or to the OS CPU
 * list in a hand-made one (binding MPX_BIND_NONE). No-op for an unbound placement (empty cpuset).
 * MPX_EINVAL for a placement that does not match the process-wide topology or an unparsable list,
 * MPX_ESYS if the OS refused the binding. */
MPX_API int mpx_topology_bind_thread(const mpx_placement *p);

/* Bind the whole calling process, all its threads (for forked workers); as bind_thread. */
MPX_API int mpx_topology_bind_process(const mpx_placement *p);

#ifdef __cplusplus
}
#endif
#endif
