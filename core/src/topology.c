/* topology.c: the hardware this process may use and where workers go, from hwloc 2.x.
 *
 * A topology holds an hwloc topology, the usable cpuset, the counts, and for each binding the
 * ordered list of places, all computed at load; mpx_topology_place only copies from those lists.
 * For the process-wide topology the usable set is hwloc's allowed set (cgroup cpusets; hwloc drops
 * disallowed PUs at load) intersected with the process's current CPU binding (taskset, mpirun,
 * Slurm), and the cgroup CPU quota and the batch system's CPU grant (SLURM_CPUS_PER_TASK, PBS
 * NCPUS: job.c) cap default_workers. For XML and synthetic topologies
 * everything is usable and there is no quota.
 *
 * Spreading: each usable PU gets three ranks: its (package, NUMA node) domain's rank within the
 * package, its core's rank within the domain, and its own rank within the core. Sorting places by
 * (PU rank, core rank, domain rank, package) puts consecutive workers on different packages, then
 * different NUMA nodes, then different cores, and only then on SMT siblings.
 *
 * Thread-safety: the process-wide topology is built once under pthread_once and then never
 * modified or freed; hwloc allows concurrent reads and binding calls on a topology nobody modifies.
 * A private topology is read-only after loading; freeing it must not race its other uses. */
#include "mpx/topology.h"

#include <hwloc.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpx/job.h"
#include "topology_impl.h"

#define MPX__NBINDINGS 4 /* NONE, CORE, PU, NUMA: the values of mpx_binding */

typedef struct mpx__place {
  hwloc_bitmap_t set; /* the usable PUs of the place, exact even when pl.cpuset is truncated */
  mpx_placement pl;   /* all but .worker */
} mpx__place;

struct mpx_topology {
  hwloc_topology_t hw;
  hwloc_bitmap_t usable;
  mpx_topo_info info;
  bool process_wide;
  mpx__place *places[MPX__NBINDINGS]; /* [MPX_BIND_NONE] stays NULL */
  int nplaces[MPX__NBINDINGS];
};

/* One usable PU and its spreading ranks (see the header comment). */
typedef struct pu_rec {
  hwloc_obj_t pu;
  hwloc_obj_t core; /* NULL when the topology has no Core objects */
  int pkg_slot;     /* package logical index, or the count of packages if it has none */
  int dom_rank, core_rank, pu_rank;
} pu_rec;

/* A sort key for places: compared lexicographically. */
typedef struct place_key {
  int k[5];
  int idx;
} place_key;

/* ---- cgroup CPU quota ------------------------------------------------------------------------ */

enum { CG_PATH = 4096 };

/* True if the comma-separated `list` contains `tok`. */
static bool has_token(const char *list, const char *tok) {
  size_t n = strlen(tok);
  for (const char *p = list;; p++) {
    if (strncmp(p, tok, n) == 0 && (p[n] == ',' || p[n] == '\0')) return true;
    if (!(p = strchr(p, ','))) return false;
  }
}

/* Decode mountinfo's octal escapes ("\040" is a space) in place. */
static void unescape_octal(char *s) {
  char *w = s;
  for (char *r = s; *r; r++, w++) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
        r[3] <= '7') {
      *w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 3;
    } else {
      *w = *r;
    }
  }
  *w = '\0';
}

/* This process's path in the v2 hierarchy, or in the v1 hierarchy that has the cpu controller. */
static bool cgroup_path(const char *file, bool v2, char *out, size_t len) {
  FILE *f = fopen(file, "re");
  if (!f) return false;
  char *line = NULL;
  size_t cap = 0;
  bool found = false;
  while (!found && getline(&line, &cap, f) > 0) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c1 = *c2 = '\0';
    bool match = v2 ? strcmp(line, "0") == 0 && c1[1] == '\0' : has_token(c1 + 1, "cpu");
    if (match && strlen(c2 + 1) < len) {
      strcpy(out, c2 + 1);
      found = true;
    }
  }
  free(line);
  fclose(f);
  return found;
}

/* The mount point and mount root of that hierarchy, from mountinfo. */
static bool cgroup_mount(const char *file, bool v2, char *root, char *mnt) {
  FILE *f = fopen(file, "re");
  if (!f) return false;
  char *line = NULL;
  size_t cap = 0;
  bool found = false;
  while (!found && getline(&line, &cap, f) > 0) {
    char fstype[64], opts[512];
    const char *sep = strstr(line, " - ");
    if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
        sscanf(sep + 3, "%63s %*s %511s", fstype, opts) != 2)
      continue;
    found = v2 ? strcmp(fstype, "cgroup2") == 0
               : strcmp(fstype, "cgroup") == 0 && has_token(opts, "cpu");
  }
  free(line);
  fclose(f);
  if (found) {
    unescape_octal(root);
    unescape_octal(mnt);
  }
  return found;
}

/* The part of cgroup path `path` below the mount's root ("" when the mount does not show it, as
 * in a container whose cgroup namespace hides the host's path; then the mount point is ours). */
static const char *cgroup_relative(const char *path, const char *root) {
  if (strstr(path, "/..")) return "";
  if (strcmp(root, "/") == 0) return path;
  size_t n = strlen(root);
  if (strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0')) return path + n;
  return "";
}

static long long read_ll(const char *dir, const char *name) {
  char path[CG_PATH];
  long long v = -1;
  int n = snprintf(path, sizeof path, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof path) return -1;
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  if (fscanf(f, "%lld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

/* Whole CPUs allowed by one cgroup directory's own quota, 0 if it sets none. */
static int quota_at(const char *dir, bool v2) {
  long long q = -1, p = 0;
  if (v2) {
    char path[CG_PATH], qs[32];
    int n = snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (n < 0 || (size_t)n >= sizeof path) return 0;
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    if (fscanf(f, "%31s %lld", qs, &p) == 2 && strcmp(qs, "max") != 0) q = strtoll(qs, NULL, 10);
    fclose(f);
  } else {
    q = read_ll(dir, "cpu.cfs_quota_us"); /* -1: unlimited */
    p = read_ll(dir, "cpu.cfs_period_us");
  }
  if (q <= 0 || p <= 0) return 0;
  long long cpus = q / p + (q % p != 0); /* round up: 1.5 CPUs of time keep 2 workers busy */
  return cpus > INT_MAX ? INT_MAX : (int)cpus;
}

static int min_quota(int a, int b) { return a == 0 ? b : b == 0 ? a : a < b ? a : b; }

/* The tightest quota from mnt + rel up to mnt. */
static int quota_walk(const char *mnt, const char *rel, bool v2) {
  char dir[CG_PATH];
  int n = snprintf(dir, sizeof dir, "%s%s", mnt, rel);
  if (n < 0 || (size_t)n >= sizeof dir) return 0;
  size_t base = strlen(mnt);
  int best = 0;
  for (;;) {
    best = min_quota(best, quota_at(dir, v2));
    char *slash = strrchr(dir, '/');
    if (strlen(dir) <= base || !slash || (size_t)(slash - dir) < base) break;
    *slash = '\0';
  }
  return best;
}

int mpx__cgroup_cpu_quota(const char *cgroup_file, const char *mountinfo_file) {
  if (!cgroup_file || !mountinfo_file) return MPX_EINVAL;
  int best = 0;
  for (int v2 = 1; v2 >= 0; v2--) { /* hybrid systems may have both; take the tighter */
    char path[CG_PATH], root[CG_PATH], mnt[CG_PATH];
    if (!cgroup_path(cgroup_file, v2, path, sizeof path) ||
        !cgroup_mount(mountinfo_file, v2, root, mnt))
      continue;
    best = min_quota(best, quota_walk(mnt, cgroup_relative(path, root), v2));
  }
  return best;
}

/* ---- places ---------------------------------------------------------------------------------- */

static int nobjs(hwloc_topology_t hw, hwloc_obj_type_t type) {
  int n = hwloc_get_nbobjs_by_type(hw, type);
  return n > 0 ? n : 0;
}

/* Logical index of the first NUMA node whose cpuset includes `set`, -1 if none does. */
static int numa_including(hwloc_topology_t hw, hwloc_const_bitmap_t set) {
  for (hwloc_obj_t n = NULL; (n = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, n));)
    if (hwloc_bitmap_isincluded(set, n->cpuset)) return (int)n->logical_index;
  return -1;
}

/* Logical index of `o` if it has `type`, else of its ancestor of that type, else -1. */
static int self_or_ancestor(hwloc_topology_t hw, hwloc_obj_type_t type, hwloc_obj_t o) {
  if (!o) return -1;
  if (o->type == type) return (int)o->logical_index;
  hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(hw, type, o);
  return a ? (int)a->logical_index : -1;
}

/* Fill everything of a placement but .worker from the place's PU set. */
static void fill_placement(const mpx_topology *t, hwloc_const_bitmap_t set, mpx_binding b,
                           int place, mpx_placement *pl) {
  memset(pl, 0, sizeof *pl);
  pl->binding = b;
  pl->place = place;
  pl->pu = pl->core = -1;
  hwloc_bitmap_list_snprintf(pl->cpuset, sizeof pl->cpuset, set);
  hwloc_obj_t o = hwloc_get_obj_covering_cpuset(t->hw, set); /* the deepest one */
  if (o && o->type == HWLOC_OBJ_PU) {
    pl->pu = (int)o->logical_index;
    /* Without Core objects each PU is its own core (as counted in info). */
    pl->core = nobjs(t->hw, HWLOC_OBJ_CORE) ? self_or_ancestor(t->hw, HWLOC_OBJ_CORE, o) : pl->pu;
  } else if (o && o->type == HWLOC_OBJ_CORE) {
    pl->core = (int)o->logical_index;
  }
  pl->package = self_or_ancestor(t->hw, HWLOC_OBJ_PACKAGE, o);
  pl->numa_node = numa_including(t->hw, set);
}

static int cmp_keys(const void *a, const void *b) {
  const place_key *x = a, *y = b;
  for (int i = 0; i < 5; i++)
    if (x->k[i] != y->k[i]) return x->k[i] < y->k[i] ? -1 : 1;
  return 0;
}

/* Fill recs[0..*n) with the usable PUs in logical order and their spreading ranks. */
static int rank_pus(const mpx_topology *t, pu_rec *recs, int *n) {
  hwloc_topology_t hw = t->hw;
  int npkg = nobjs(hw, HWLOC_OBJ_PACKAGE), nnuma = nobjs(hw, HWLOC_OBJ_NUMANODE);
  int ncore = nobjs(hw, HWLOC_OBJ_CORE), npu = nobjs(hw, HWLOC_OBJ_PU);
  size_t ndom = (size_t)(npkg + 1) * (size_t)(nnuma + 1), ncslot = (size_t)ncore + (size_t)npu;
  int *doms_in_pkg = calloc((size_t)npkg + 1, sizeof(int));
  int *dom_rank = malloc(ndom * sizeof(int)), *cores_in_dom = calloc(ndom, sizeof(int));
  int *core_rank = malloc(ncslot * sizeof(int)), *pus_in_core = calloc(ncslot, sizeof(int));
  int rc = MPX_ENOMEM;
  if (!doms_in_pkg || !dom_rank || !cores_in_dom || !core_rank || !pus_in_core) goto out;
  memset(dom_rank, -1, ndom * sizeof(int)); /* all bytes 0xff: -1 */
  memset(core_rank, -1, ncslot * sizeof(int));
  *n = 0;
  for (hwloc_obj_t pu = NULL; (pu = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_PU, pu));) {
    if (!hwloc_bitmap_isset(t->usable, pu->os_index)) continue;
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(hw, HWLOC_OBJ_PACKAGE, pu);
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(hw, HWLOC_OBJ_CORE, pu);
    int pkg_slot = pkg ? (int)pkg->logical_index : npkg;
    int numa = numa_including(hw, pu->cpuset);
    size_t dom = (size_t)pkg_slot * (size_t)(nnuma + 1) + (size_t)(numa >= 0 ? numa : nnuma);
    size_t cslot = core ? core->logical_index : (size_t)ncore + pu->logical_index;
    if (dom_rank[dom] < 0) dom_rank[dom] = doms_in_pkg[pkg_slot]++;
    if (core_rank[cslot] < 0) core_rank[cslot] = cores_in_dom[dom]++;
    recs[(*n)++] = (pu_rec){.pu = pu,
                            .core = core,
                            .pkg_slot = pkg_slot,
                            .dom_rank = dom_rank[dom],
                            .core_rank = core_rank[cslot],
                            .pu_rank = pus_in_core[cslot]++};
  }
  rc = 0;
out:
  free(doms_in_pkg);
  free(dom_rank);
  free(cores_in_dom);
  free(core_rank);
  free(pus_in_core);
  return rc;
}

/* Sort the keys into t->places[b]; key.idx names the place's set in `sets`. */
static int make_places(mpx_topology *t, mpx_binding b, place_key *keys, int nkeys,
                       hwloc_bitmap_t *sets) {
  qsort(keys, (size_t)nkeys, sizeof *keys, cmp_keys);
  t->places[b] = calloc((size_t)nkeys, sizeof(mpx__place));
  if (!t->places[b]) return MPX_ENOMEM;
  for (int i = 0; i < nkeys; i++) { /* ownership of each set moves to its place */
    t->places[b][i].set = sets[keys[i].idx];
    sets[keys[i].idx] = NULL;
    fill_placement(t, t->places[b][i].set, b, i, &t->places[b][i].pl);
    t->nplaces[b]++;
  }
  return 0;
}

/* The places of CORE (first PU of each core) and PU (every PU) bindings. */
static int core_pu_places(mpx_topology *t, const pu_rec *recs, int n, place_key *keys,
                          hwloc_bitmap_t *sets) {
  int nk = 0, rc;
  for (int i = 0; i < n; i++) {
    if (recs[i].pu_rank != 0) continue;
    const pu_rec *r = &recs[i];
    keys[nk] = (place_key){{r->core_rank, r->dom_rank, r->pkg_slot, (int)r->pu->logical_index, 0},
                           nk};
    sets[nk] = hwloc_bitmap_dup(r->core ? r->core->cpuset : r->pu->cpuset);
    if (!sets[nk]) return MPX_ENOMEM;
    hwloc_bitmap_and(sets[nk], sets[nk], t->usable);
    nk++;
  }
  if ((rc = make_places(t, MPX_BIND_CORE, keys, nk, sets))) return rc;
  for (int i = 0; i < n; i++) {
    const pu_rec *r = &recs[i];
    keys[i] = (place_key){
        {r->pu_rank, r->core_rank, r->dom_rank, r->pkg_slot, (int)r->pu->logical_index}, i};
    if (!(sets[i] = hwloc_bitmap_dup(r->pu->cpuset))) return MPX_ENOMEM;
  }
  return make_places(t, MPX_BIND_PU, keys, n, sets);
}

/* The NUMA places: each node's usable PUs, skipping nodes with none or with the same PUs as an
 * earlier node (memory-only and high-bandwidth nodes); the whole usable set if there is no node. */
static int numa_places(mpx_topology *t, const pu_rec *recs, int n, place_key *keys,
                       hwloc_bitmap_t *sets) {
  int nk = 0;
  for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(t->hw, HWLOC_OBJ_NUMANODE, o));) {
    hwloc_bitmap_t s = hwloc_bitmap_alloc();
    if (!s) return MPX_ENOMEM;
    hwloc_bitmap_and(s, o->cpuset, t->usable);
    bool dup = hwloc_bitmap_iszero(s);
    for (int j = 0; j < nk && !dup; j++) dup = hwloc_bitmap_isequal(s, sets[j]);
    if (dup) {
      hwloc_bitmap_free(s);
      continue;
    }
    const pu_rec *r = recs; /* rank the node by its first usable PU */
    while (r < recs + n - 1 && !hwloc_bitmap_isset(s, r->pu->os_index)) r++;
    keys[nk] = (place_key){{r->dom_rank, r->pkg_slot, (int)o->logical_index, 0, 0}, nk};
    sets[nk++] = s;
  }
  if (nk == 0) {
    if (!(sets[0] = hwloc_bitmap_dup(t->usable))) return MPX_ENOMEM;
    keys[nk++] = (place_key){{0, 0, 0, 0, 0}, 0};
  }
  return make_places(t, MPX_BIND_NUMA, keys, nk, sets);
}

/* Count what is usable; cpu_quota and the job's grants must already be set. */
static void count_info(mpx_topology *t, const pu_rec *recs, int n) {
  mpx_topo_info *in = &t->info;
  in->pus = n;
  in->cores = 0;
  for (int i = 0; i < n; i++) in->cores += recs[i].pu_rank == 0;
  in->packages = in->numa_nodes = 0;
  for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(t->hw, HWLOC_OBJ_PACKAGE, o));)
    in->packages += hwloc_bitmap_intersects(o->cpuset, t->usable);
  for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(t->hw, HWLOC_OBJ_NUMANODE, o));)
    in->numa_nodes += hwloc_bitmap_intersects(o->cpuset, t->usable);
  if (in->packages == 0) in->packages = 1; /* a machine without Package objects is one package */
  if (in->numa_nodes == 0) in->numa_nodes = 1;
  int w = in->cores;
  if (in->cpu_quota > 0 && in->cpu_quota < w) w = in->cpu_quota;
  if (in->cpus_per_task > 0 && in->cpus_per_task < w) w = in->cpus_per_task;
  if (in->ncpus > 0 && in->ncpus < w) w = in->ncpus;
  in->default_workers = w > 0 ? w : 1;
}

/* Given t->hw loaded, t->usable and t->info.cpu_quota set: the counts and the places. */
static int topology_finish(mpx_topology *t) {
  hwloc_bitmap_and(t->usable, t->usable, hwloc_topology_get_topology_cpuset(t->hw));
  int n = hwloc_bitmap_weight(t->usable), rc = MPX_ENOMEM;
  if (n <= 0) return MPX_ETOPO; /* -1 is an infinite set: impossible for a real machine */
  /* Room for one place per PU, or per NUMA node should overlapping nodes outnumber the PUs. */
  size_t cap = (size_t)n + (size_t)nobjs(t->hw, HWLOC_OBJ_NUMANODE) + 1;
  pu_rec *recs = calloc((size_t)n, sizeof *recs);
  place_key *keys = calloc(cap, sizeof *keys);
  hwloc_bitmap_t *sets = calloc(cap, sizeof *sets);
  if (!recs || !keys || !sets) goto out;
  int got = 0;
  if ((rc = rank_pus(t, recs, &got))) goto out;
  if (got == 0) { /* usable bits that name no PU object */
    rc = MPX_ETOPO;
    goto out;
  }
  count_info(t, recs, got);
  if ((rc = core_pu_places(t, recs, got, keys, sets))) goto out;
  rc = numa_places(t, recs, got, keys, sets);
out:
  for (size_t i = 0; sets && i < cap; i++) hwloc_bitmap_free(sets[i]); /* not moved to places */
  free(recs);
  free(keys);
  free(sets);
  return rc;
}

static void topology_release(mpx_topology *t) {
  for (int b = 0; b < MPX__NBINDINGS; b++) {
    for (int i = 0; i < t->nplaces[b]; i++) hwloc_bitmap_free(t->places[b][i].set);
    free(t->places[b]);
    t->places[b] = NULL;
    t->nplaces[b] = 0;
  }
  hwloc_bitmap_free(t->usable);
  t->usable = NULL;
  if (t->hw) hwloc_topology_destroy(t->hw);
  t->hw = NULL;
}

/* ---- loading --------------------------------------------------------------------------------- */

/* The PUs the process may run on now: allowed (cgroup cpuset) and bound (affinity). */
static int process_usable(mpx_topology *t) {
  t->usable = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t->hw));
  hwloc_bitmap_t bound = hwloc_bitmap_alloc();
  int rc = 0;
  if (!t->usable || !bound) {
    rc = MPX_ENOMEM;
  } else if (hwloc_get_cpubind(t->hw, bound, HWLOC_CPUBIND_PROCESS) == 0 ||
             hwloc_get_cpubind(t->hw, bound, HWLOC_CPUBIND_THREAD) == 0) {
    /* PROCESS is the union over the process's threads on Linux, so a thread that bound itself
     * narrower than the process does not shrink what the process may use. */
    hwloc_bitmap_and(t->usable, t->usable, bound);
  } /* else: binding unsupported here, the allowed set is all we know */
  hwloc_bitmap_free(bound);
  return rc;
}

static int load_process(mpx_topology *t) {
  t->process_wide = true;
  if (hwloc_topology_init(&t->hw) != 0) return MPX_ENOMEM;
#if HWLOC_API_VERSION >= 0x00020800
  /* The load may run while other threads of the application work: never touch their binding. */
  hwloc_topology_set_flags(t->hw, HWLOC_TOPOLOGY_FLAG_DONT_CHANGE_BINDING);
#endif
  int rc = hwloc_topology_load(t->hw) == 0 ? process_usable(t) : MPX_ETOPO;
  if (rc == 0) {
    int q = mpx__cgroup_cpu_quota("/proc/self/cgroup", "/proc/self/mountinfo");
    t->info.cpu_quota = q > 0 ? q : 0;
    mpx_job job;
    mpx_job_get(&job);
    t->info.cpus_per_task = job.cpus_per_task;
    t->info.ncpus = job.ncpus;
    t->info.job_nodes = job.nodes;
    rc = topology_finish(t);
  }
  if (rc != 0) topology_release(t);
  return rc;
}

static mpx_topology g_topology; /* the process-wide one; see the header comment */
static int g_topology_rc;
static pthread_once_t g_topology_once = PTHREAD_ONCE_INIT;

static void load_process_once(void) { g_topology_rc = load_process(&g_topology); }

int mpx_topology_get(const mpx_topology **out) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  /* pthread_once also publishes g_topology to every thread that returns from it. */
  if (pthread_once(&g_topology_once, load_process_once) != 0) return MPX_ESYS;
  if (g_topology_rc != 0) return g_topology_rc;
  *out = &g_topology;
  return 0;
}

typedef int (*hw_source_fn)(hwloc_topology_t hw, const char *arg);

static int source_xml(hwloc_topology_t hw, const char *path) {
  return hwloc_topology_set_xml(hw, path) == 0 ? 0 : MPX_ETOPO;
}

static int source_synthetic(hwloc_topology_t hw, const char *desc) {
  return hwloc_topology_set_synthetic(hw, desc) == 0 ? 0 : MPX_EINVAL;
}

static int load_private(hw_source_fn source, const char *arg, mpx_topology **out) {
  mpx_topology *t = calloc(1, sizeof *t);
  if (!t) return MPX_ENOMEM;
  int rc = hwloc_topology_init(&t->hw) == 0 ? 0 : MPX_ENOMEM;
  if (rc == 0) rc = source(t->hw, arg);
  if (rc == 0 && hwloc_topology_load(t->hw) != 0) rc = MPX_ETOPO;
  if (rc == 0) {
    t->usable = hwloc_bitmap_dup(hwloc_topology_get_topology_cpuset(t->hw));
    rc = t->usable ? topology_finish(t) : MPX_ENOMEM;
  }
  if (rc != 0) {
    topology_release(t);
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int mpx_topology_load_xml(const char *path, mpx_topology **out) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!path || !*path) return MPX_EINVAL;
  if (access(path, R_OK) != 0) return MPX_ENOTFOUND; /* hwloc would only say "failed" */
  return load_private(source_xml, path, out);
}

int mpx_topology_load_synthetic(const char *description, mpx_topology **out) {
  if (!out) return MPX_EINVAL;
  *out = NULL;
  if (!description || !*description) return MPX_EINVAL;
  return load_private(source_synthetic, description, out);
}

int mpx_topology_free(mpx_topology *t) {
  if (!t) return MPX_EINVAL;
  if (t->process_wide) return MPX_EPERM;
  topology_release(t);
  free(t);
  return 0;
}

/* ---- queries --------------------------------------------------------------------------------- */

static bool binding_valid(mpx_binding b) { return (int)b >= 0 && (int)b < MPX__NBINDINGS; }

int mpx_topology_info(const mpx_topology *t, mpx_topo_info *out) {
  if (!t || !out) return MPX_EINVAL;
  *out = t->info;
  return 0;
}

int mpx_topology_cpuset(const mpx_topology *t, char *buf, size_t len) {
  if (!t || !buf || len == 0) return MPX_EINVAL;
  int n = hwloc_bitmap_list_snprintf(buf, len, t->usable);
  return n >= 0 && (size_t)n < len ? 0 : MPX_ETOOBIG;
}

int mpx_topology_places(const mpx_topology *t, mpx_binding binding) {
  if (!t || !binding_valid(binding)) return MPX_EINVAL;
  return binding == MPX_BIND_NONE ? 1 : t->nplaces[binding];
}

int mpx_topology_place(const mpx_topology *t, mpx_binding binding, int n, mpx_placement *out) {
  if (!t || !binding_valid(binding) || n < 0 || (n > 0 && !out)) return MPX_EINVAL;
  for (int i = 0; i < n; i++) {
    if (binding == MPX_BIND_NONE) {
      out[i] = (mpx_placement){
          .numa_node = -1, .core = -1, .pu = -1, .package = -1, .binding = binding, .place = -1};
    } else {
      out[i] = t->places[binding][i % t->nplaces[binding]].pl; /* nplaces >= 1 once loaded */
    }
    out[i].worker = i;
  }
  return 0;
}

/* ---- binding --------------------------------------------------------------------------------- */

static int bind_placement(const mpx_placement *p, int flags) {
  if (!p || !binding_valid(p->binding)) return MPX_EINVAL;
  if (memchr(p->cpuset, '\0', sizeof p->cpuset) == NULL) return MPX_EINVAL; /* unterminated */
  if (p->cpuset[0] == '\0') return 0;                                        /* unbound */
  const mpx_topology *t;
  int rc = mpx_topology_get(&t);
  if (rc != 0) return rc;
  hwloc_bitmap_t own = NULL;
  hwloc_const_bitmap_t set;
  if (p->binding != MPX_BIND_NONE) {
    /* A computed placement: its place must exist and show the same list (else it came from
     * another topology). */
    if (p->place < 0 || p->place >= t->nplaces[p->binding]) return MPX_EINVAL;
    const mpx__place *pl = &t->places[p->binding][p->place];
    if (strcmp(pl->pl.cpuset, p->cpuset) != 0) return MPX_EINVAL;
    set = pl->set;
  } else {
    if (!(own = hwloc_bitmap_alloc())) return MPX_ENOMEM;
    if (hwloc_bitmap_list_sscanf(own, p->cpuset) != 0 || hwloc_bitmap_iszero(own) ||
        hwloc_bitmap_weight(own) < 0) {
      hwloc_bitmap_free(own);
      return MPX_EINVAL;
    }
    set = own;
  }
  rc = hwloc_set_cpubind(t->hw, set, flags) == 0 ? 0 : MPX_ESYS;
  hwloc_bitmap_free(own);
  return rc;
}

int mpx_topology_bind_thread(const mpx_placement *p) {
  return bind_placement(p, HWLOC_CPUBIND_THREAD);
}

int mpx_topology_bind_process(const mpx_placement *p) {
  return bind_placement(p, HWLOC_CPUBIND_PROCESS);
}
