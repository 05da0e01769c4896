/* mpx topology: what hardware this process may use, and where workers go, from hwloc.
 *
 * The usable set respects taskset/sched_setaffinity, cgroup cpusets and CPU quotas, and the
 * binding mpirun or Slurm gave the process. The process-wide topology is loaded once (thread-safe)
 * and cached; mpx_topology_load_xml gives a private one for tests and tools.
 * Thread-safety: a topology is read-only after loading and may be shared between threads. */
#ifndef MPX_TOPOLOGY_H
#define MPX_TOPOLOGY_H

#include <stddef.h>

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
  int default_workers; /* what workers = 0 means: min(cores, cpu_quota if any), at least 1 */
} mpx_topo_info;

/* Where one worker goes. */
typedef struct mpx_placement {
  int worker;
  int numa_node;   /* logical index of its NUMA node, -1 if unbound */
  int core;        /* logical index of its core, -1 if bound wider than a core or unbound */
  int pu;          /* logical index of its PU, -1 if bound wider than a PU or unbound */
  char cpuset[64]; /* the OS CPU list it is bound to, as "0-3,8", or "" if unbound */
} mpx_placement;

/* The process-wide topology (loaded on first use, never freed by the caller). */
int mpx_topology_get(const mpx_topology **out);

/* Load a topology from an hwloc XML file (synthetic machines in tests); free with
 * mpx_topology_free. Everything in it counts as usable. */
int mpx_topology_load_xml(const char *path, mpx_topology **out);

/* Load a synthetic topology from an hwloc description such as "pack:2 numa:2 core:4 pu:2". */
int mpx_topology_load_synthetic(const char *description, mpx_topology **out);

int mpx_topology_free(mpx_topology *t);

/* Counts of what is usable. */
int mpx_topology_info(const mpx_topology *t, mpx_topo_info *out);

/* Placement of `n` workers under `binding`: out[0..n) (more workers than places wrap around). */
int mpx_topology_place(const mpx_topology *t, mpx_binding binding, int n, mpx_placement *out);

/* Bind the calling thread to a placement computed on the process-wide topology (no-op for
 * MPX_BIND_NONE or an empty cpuset). */
int mpx_topology_bind_thread(const mpx_placement *p);

/* Bind the whole calling process (for forked workers). */
int mpx_topology_bind_process(const mpx_placement *p);

#ifdef __cplusplus
}
#endif
#endif
