/* topology_test.c: unit tests of the topology module (core/src/topology.c).
 *
 * Covers the real machine (counts agree with sched_getaffinity, placement, thread and process
 * binding), synthetic and XML machines (spreading over packages and NUMA nodes, SMT order, NUMA
 * places, wrap-around), machines without Package or Core objects, the cgroup quota parser on fake
 * files, and bad inputs. `topology_test --one-pu` is the mode ctest runs under `taskset -c 0`: it
 * checks that the usable set shrinks to that one PU. Single-threaded except the binding checks,
 * which run in their own thread or child process so the test's own affinity is never changed. */
#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mpx/topology.h"
#include "topology_impl.h"

#define CHECK(expr)                                                                                \
  do {                                                                                             \
    if (!(expr)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);                     \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define CHECK_RC(call, want)                                                                       \
  do {                                                                                             \
    int rc_ = (call);                                                                              \
    if (rc_ != (want)) {                                                                           \
      fprintf(stderr, "%s:%d: %s returned %d (%s), want %s\n", __FILE__, __LINE__, #call, rc_,     \
              mpx_err_name(rc_), #want);                                                           \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* ---- helpers --------------------------------------------------------------------------------- */

/* The calling thread's affinity as an hwloc bitmap (caller frees). */
static hwloc_bitmap_t affinity_now(void) {
  cpu_set_t cs;
  CHECK(sched_getaffinity(0, sizeof cs, &cs) == 0);
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  CHECK(b);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &cs)) hwloc_bitmap_set(b, (unsigned)c);
  return b;
}

static hwloc_bitmap_t parse_list(const char *list) {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  CHECK(b && hwloc_bitmap_list_sscanf(b, list) == 0);
  return b;
}

static bool list_equals_affinity(const char *list) {
  hwloc_bitmap_t want = parse_list(list), got = affinity_now();
  bool eq = hwloc_bitmap_isequal(want, got);
  hwloc_bitmap_free(want);
  hwloc_bitmap_free(got);
  return eq;
}

static mpx_topology *synthetic(const char *desc) {
  mpx_topology *t = NULL;
  CHECK_RC(mpx_topology_load_synthetic(desc, &t), 0);
  CHECK(t);
  return t;
}

static void check_info(const mpx_topology *t, int pkgs, int numas, int cores, int pus) {
  mpx_topo_info in;
  CHECK_RC(mpx_topology_info(t, &in), 0);
  CHECK(in.packages == pkgs && in.numa_nodes == numas && in.cores == cores && in.pus == pus);
  CHECK(in.cpu_quota == 0 && in.default_workers == cores);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f);
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
}

/* ---- the real machine ------------------------------------------------------------------------ */

typedef struct bind_job {
  mpx_placement p;
  int rc;
  bool agrees;
} bind_job;

static void *bind_in_thread(void *arg) {
  bind_job *j = arg;
  j->rc = mpx_topology_bind_thread(&j->p);
  j->agrees = j->rc == 0 && list_equals_affinity(j->p.cpuset);
  return NULL;
}

static void run_bind_thread(bind_job *j) {
  pthread_t th;
  CHECK(pthread_create(&th, NULL, bind_in_thread, j) == 0);
  CHECK(pthread_join(th, NULL) == 0);
}

static void test_real_machine(void) {
  const mpx_topology *t = NULL, *t2 = NULL;
  CHECK_RC(mpx_topology_get(&t), 0);
  CHECK_RC(mpx_topology_get(&t2), 0);
  CHECK(t && t == t2); /* loaded once */

  mpx_topo_info in;
  CHECK_RC(mpx_topology_info(t, &in), 0);
  CHECK(in.packages >= 1 && in.numa_nodes >= 1 && in.cores >= 1 && in.pus >= in.cores);
  CHECK(in.packages <= in.cores && in.numa_nodes <= in.pus);
  CHECK(in.cpu_quota >= 0 && in.default_workers >= 1 && in.default_workers <= in.cores);
  if (in.cpu_quota > 0) CHECK(in.default_workers <= in.cpu_quota);

  /* The usable set is exactly what the kernel lets this (unbound) process run on. */
  char usable[4096];
  CHECK_RC(mpx_topology_cpuset(t, usable, sizeof usable), 0);
  CHECK(list_equals_affinity(usable));
  cpu_set_t cs;
  CHECK(sched_getaffinity(0, sizeof cs, &cs) == 0);
  CHECK(in.pus == CPU_COUNT(&cs));

  /* One worker per core: all on distinct cores, inside the usable set. */
  int n = in.cores;
  mpx_placement *pl = calloc((size_t)n, sizeof *pl);
  CHECK(pl);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, n, pl), 0);
  hwloc_bitmap_t all = parse_list(usable);
  for (int i = 0; i < n; i++) {
    CHECK(pl[i].worker == i && pl[i].core >= 0 && pl[i].cpuset[0] != '\0');
    hwloc_bitmap_t s = parse_list(pl[i].cpuset);
    CHECK(hwloc_bitmap_isincluded(s, all));
    hwloc_bitmap_free(s);
    for (int j = 0; j < i; j++) CHECK(pl[i].core != pl[j].core);
  }

  /* Binding a thread to the last one: sched_getaffinity agrees. */
  bind_job j = {.p = pl[n - 1]};
  run_bind_thread(&j);
  CHECK_RC(j.rc, 0);
  CHECK(j.agrees);

  /* A hand-made placement (binding NONE) binds to its list. */
  j = (bind_job){.p = {.binding = MPX_BIND_NONE, .place = -1}};
  snprintf(j.p.cpuset, sizeof j.p.cpuset, "%s", pl[0].cpuset);
  run_bind_thread(&j);
  CHECK_RC(j.rc, 0);
  CHECK(j.agrees);

  /* Unbound placements bind to nothing and succeed. */
  mpx_placement none;
  CHECK_RC(mpx_topology_place(t, MPX_BIND_NONE, 1, &none), 0);
  CHECK(none.cpuset[0] == '\0' && none.core == -1 && none.numa_node == -1 && none.pu == -1);
  CHECK_RC(mpx_topology_bind_thread(&none), 0);
  CHECK(list_equals_affinity(usable)); /* unchanged */

  /* Binding a forked process: the child's affinity follows. */
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int rc = mpx_topology_bind_process(&pl[0]);
    _exit(rc == 0 && list_equals_affinity(pl[0].cpuset) ? 0 : 1);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* PU placement of every PU: distinct PUs. */
  mpx_placement *pp = calloc((size_t)in.pus, sizeof *pp);
  CHECK(pp);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_PU, in.pus, pp), 0);
  for (int i = 0; i < in.pus; i++)
    for (int k = 0; k < i; k++) CHECK(pp[i].pu >= 0 && pp[i].pu != pp[k].pu);
  CHECK(mpx_topology_places(t, MPX_BIND_CORE) == in.cores);
  CHECK(mpx_topology_places(t, MPX_BIND_PU) == in.pus);
  CHECK(mpx_topology_places(t, MPX_BIND_NUMA) >= 1);

  /* The process-wide topology cannot be freed by a caller. */
  CHECK_RC(mpx_topology_free((mpx_topology *)t), MPX_EPERM);
  hwloc_bitmap_free(all);
  free(pp);
  free(pl);
}

/* Many threads asking first at once all get the one topology (run before anything else loads it). */
static void *get_in_thread(void *arg) {
  const mpx_topology **out = arg;
  CHECK_RC(mpx_topology_get(out), 0);
  return NULL;
}

static void test_concurrent_get(void) {
  enum { N = 8 };
  pthread_t th[N];
  const mpx_topology *got[N];
  for (int i = 0; i < N; i++) CHECK(pthread_create(&th[i], NULL, get_in_thread, &got[i]) == 0);
  for (int i = 0; i < N; i++) CHECK(pthread_join(th[i], NULL) == 0);
  for (int i = 1; i < N; i++) CHECK(got[i] && got[i] == got[0]);
}

/* ---- synthetic machines ---------------------------------------------------------------------- */

/* pack:2 numa:2 core:4 pu:2 numbers PUs in order: package p holds PUs 16p..16p+15, NUMA node m
 * holds 8m..8m+7, core c holds 2c and 2c+1. */
static void test_two_packages(void) {
  mpx_topology *t = synthetic("pack:2 numa:2 core:4 pu:2");
  check_info(t, 2, 4, 16, 32);
  char buf[64];
  CHECK_RC(mpx_topology_cpuset(t, buf, sizeof buf), 0);
  CHECK(strcmp(buf, "0-31") == 0);
  CHECK(mpx_topology_places(t, MPX_BIND_CORE) == 16 && mpx_topology_places(t, MPX_BIND_PU) == 32);
  CHECK(mpx_topology_places(t, MPX_BIND_NUMA) == 4 && mpx_topology_places(t, MPX_BIND_NONE) == 1);

  /* CORE: 2 workers on different packages; 4 on 4 different NUMA nodes; 16 on all cores. */
  mpx_placement pl[40];
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 2, pl), 0);
  CHECK(pl[0].package == 0 && pl[1].package == 1);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 16, pl), 0);
  for (int i = 0; i < 4; i++) {
    CHECK(pl[i].package == i % 2);
    for (int k = 0; k < i; k++) CHECK(pl[i].numa_node != pl[k].numa_node);
  }
  for (int i = 0; i < 16; i++) {
    CHECK(pl[i].core >= 0 && pl[i].pu == -1 && pl[i].numa_node == pl[i].core / 4);
    CHECK(pl[i].package == pl[i].core / 8 && pl[i].binding == MPX_BIND_CORE && pl[i].place == i);
    char want[32];
    snprintf(want, sizeof want, "%d-%d", 2 * pl[i].core, 2 * pl[i].core + 1); /* both PUs */
    CHECK(strcmp(pl[i].cpuset, want) == 0);
    for (int k = 0; k < i; k++) CHECK(pl[i].core != pl[k].core);
  }
  CHECK(strcmp(pl[0].cpuset, "0-1") == 0 && strcmp(pl[1].cpuset, "16-17") == 0);

  /* Wrap-around: workers 16..19 repeat places 0..3. */
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 20, pl), 0);
  for (int i = 16; i < 20; i++) {
    CHECK(pl[i].worker == i && pl[i].core == pl[i - 16].core);
    CHECK(strcmp(pl[i].cpuset, pl[i - 16].cpuset) == 0);
  }

  /* PU: the first 16 workers take one PU of each core; SMT siblings only after that. */
  CHECK_RC(mpx_topology_place(t, MPX_BIND_PU, 34, pl), 0);
  for (int i = 0; i < 32; i++) {
    CHECK(pl[i].pu >= 0 && pl[i].core == pl[i].pu / 2 && pl[i].numa_node == pl[i].pu / 8);
    CHECK(pl[i].pu % 2 == (i < 16 ? 0 : 1)); /* first sibling of each core, then the second */
    char want[32];
    snprintf(want, sizeof want, "%d", pl[i].pu);
    CHECK(strcmp(pl[i].cpuset, want) == 0);
    for (int k = 0; k < i; k++) CHECK(pl[i].pu != pl[k].pu);
    if (i < 16)
      for (int k = 0; k < i; k++) CHECK(pl[i].core != pl[k].core);
  }
  CHECK(pl[0].package == 0 && pl[1].package == 1);
  CHECK(pl[32].pu == pl[0].pu && pl[33].pu == pl[1].pu);

  /* NUMA: whole nodes, alternating packages, then wrapping. */
  CHECK_RC(mpx_topology_place(t, MPX_BIND_NUMA, 6, pl), 0);
  const char *want_numa[] = {"0-7", "16-23", "8-15", "24-31"};
  const int want_node[] = {0, 2, 1, 3};
  for (int i = 0; i < 6; i++) {
    CHECK(strcmp(pl[i].cpuset, want_numa[i % 4]) == 0);
    CHECK(pl[i].core == -1 && pl[i].pu == -1 && pl[i].package == i % 2);
    CHECK(pl[i].numa_node == want_node[i % 4]);
  }

  /* NONE: unbound. */
  CHECK_RC(mpx_topology_place(t, MPX_BIND_NONE, 3, pl), 0);
  for (int i = 0; i < 3; i++)
    CHECK(pl[i].worker == i && pl[i].cpuset[0] == '\0' && pl[i].core == -1 && pl[i].place == -1);
  CHECK_RC(mpx_topology_free(t), 0);
}

static void test_small_machines(void) {
  /* One core, no explicit NUMA level (hwloc still adds one node) and no package. */
  mpx_topology *t = synthetic("core:1 pu:1");
  check_info(t, 1, 1, 1, 1);
  mpx_placement pl[4];
  for (int b = MPX_BIND_CORE; b <= MPX_BIND_NUMA; b++) {
    CHECK(mpx_topology_places(t, (mpx_binding)b) == 1);
    CHECK_RC(mpx_topology_place(t, (mpx_binding)b, 3, pl), 0);
    for (int i = 0; i < 3; i++)
      CHECK(strcmp(pl[i].cpuset, "0") == 0 && pl[i].core == 0 && pl[i].pu == 0 &&
            pl[i].package == -1 && pl[i].numa_node == 0);
  }
  CHECK_RC(mpx_topology_free(t), 0);

  /* PUs without Core or Package objects: each PU counts as a core. */
  t = synthetic("pu:4");
  check_info(t, 1, 1, 4, 4);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 4, pl), 0);
  for (int i = 0; i < 4; i++) CHECK(pl[i].core == pl[i].pu && pl[i].pu >= 0);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_NUMA, 1, pl), 0);
  CHECK(strcmp(pl[0].cpuset, "0-3") == 0);
  CHECK_RC(mpx_topology_free(t), 0);

  /* Two packages sharing one NUMA node: CORE still alternates packages. */
  t = synthetic("pack:2 core:2 pu:1");
  check_info(t, 2, 1, 4, 4);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 2, pl), 0);
  CHECK(pl[0].package == 0 && pl[1].package == 1);
  CHECK_RC(mpx_topology_free(t), 0);
}

static void test_xml(void) {
  char dir[] = "/tmp/mpx_topo_test.XXXXXX", path[128];
  CHECK(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/machine.xml", dir);
  hwloc_topology_t hw;
  CHECK(hwloc_topology_init(&hw) == 0);
  CHECK(hwloc_topology_set_synthetic(hw, "pack:2 core:2 pu:2") == 0);
  CHECK(hwloc_topology_load(hw) == 0);
  CHECK(hwloc_topology_export_xml(hw, path, 0) == 0);
  hwloc_topology_destroy(hw);

  mpx_topology *t = NULL;
  CHECK_RC(mpx_topology_load_xml(path, &t), 0);
  check_info(t, 2, 1, 4, 8);
  mpx_placement pl[4];
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 4, pl), 0);
  const char *want[] = {"0-1", "4-5", "2-3", "6-7"};
  for (int i = 0; i < 4; i++) CHECK(strcmp(pl[i].cpuset, want[i]) == 0);
  CHECK_RC(mpx_topology_free(t), 0);

  /* A file that is not hwloc XML. */
  write_file(path, "this is not xml\n");
  CHECK(mpx_topology_load_xml(path, &t) < 0 && t == NULL);
  CHECK(unlink(path) == 0 && rmdir(dir) == 0);
}

/* ---- cgroup quota on fake files -------------------------------------------------------------- */

static void test_quota(void) {
  char dir[] = "/tmp/mpx_quota_test.XXXXXX", p[512], cg[512], mi[512];
  CHECK(mkdtemp(dir));
  snprintf(cg, sizeof cg, "%s/cgroup", dir);
  snprintf(mi, sizeof mi, "%s/mountinfo", dir);

  /* v2: the parent allows 1.5 CPUs, the child "max": the parent's limit holds, rounded up. */
  snprintf(p, sizeof p, "%s/v2/a/b", dir);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "mkdir -p %s %s/v1/x", p, dir);
  CHECK(system(cmd) == 0);
  snprintf(p, sizeof p, "%s/v2/a/cpu.max", dir);
  write_file(p, "150000 100000\n");
  snprintf(p, sizeof p, "%s/v2/a/b/cpu.max", dir);
  write_file(p, "max 100000\n");
  write_file(cg, "0::/a/b\n");
  char line[1024];
  snprintf(line, sizeof line, "30 1 0:26 / %s/v2 rw,nosuid - cgroup2 cgroup2 rw\n", dir);
  write_file(mi, line);
  CHECK(mpx__cgroup_cpu_quota(cg, mi) == 2);

  /* A child tighter than its parent wins. */
  write_file(p, "50000 100000\n");
  CHECK(mpx__cgroup_cpu_quota(cg, mi) == 1);

  /* v1 with the mount's root as a prefix of the cgroup path (a container's bind mount); a
   * v2 mount with no cpu.max does not count. */
  snprintf(p, sizeof p, "%s/v1/x/cpu.cfs_quota_us", dir);
  write_file(p, "250000\n");
  snprintf(p, sizeof p, "%s/v1/x/cpu.cfs_period_us", dir);
  write_file(p, "100000\n");
  write_file(cg, "3:cpu,cpuacct:/docker/x\n2:cpuset:/\n0::/\n");
  snprintf(line, sizeof line,
           "31 1 0:27 / %s/nothing rw - cgroup2 cgroup2 rw\n"
           "32 1 0:28 /docker %s/v1 rw - cgroup cgroup rw,cpu,cpuacct\n",
           dir, dir);
  write_file(mi, line);
  CHECK(mpx__cgroup_cpu_quota(cg, mi) == 3);

  /* Unlimited v1 quota, missing files, NULL. */
  snprintf(p, sizeof p, "%s/v1/x/cpu.cfs_quota_us", dir);
  write_file(p, "-1\n");
  CHECK(mpx__cgroup_cpu_quota(cg, mi) == 0);
  CHECK(mpx__cgroup_cpu_quota("/nonexistent/cgroup", mi) == 0);
  CHECK(mpx__cgroup_cpu_quota(cg, "/nonexistent/mountinfo") == 0);
  CHECK(mpx__cgroup_cpu_quota(NULL, mi) == MPX_EINVAL);
  CHECK(mpx__cgroup_cpu_quota("/proc/self/cgroup", "/proc/self/mountinfo") >= 0);

  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

/* ---- bad inputs ------------------------------------------------------------------------------ */

static void test_bad_inputs(void) {
  mpx_topology *t = (mpx_topology *)&t; /* must be reset to NULL on failure */
  CHECK_RC(mpx_topology_get(NULL), MPX_EINVAL);
  CHECK_RC(mpx_topology_load_xml(NULL, &t), MPX_EINVAL);
  CHECK(t == NULL);
  CHECK_RC(mpx_topology_load_xml("", &t), MPX_EINVAL);
  CHECK_RC(mpx_topology_load_xml("/nonexistent/machine.xml", &t), MPX_ENOTFOUND);
  CHECK(t == NULL);
  CHECK_RC(mpx_topology_load_xml("/tmp", &t), MPX_ETOPO); /* a directory */
  CHECK_RC(mpx_topology_load_xml("x.xml", NULL), MPX_EINVAL);
  CHECK_RC(mpx_topology_load_synthetic(NULL, &t), MPX_EINVAL);
  CHECK_RC(mpx_topology_load_synthetic("", &t), MPX_EINVAL);
  CHECK_RC(mpx_topology_load_synthetic("bogus:3", &t), MPX_EINVAL);
  CHECK_RC(mpx_topology_load_synthetic("pack:2 pu:-1", &t), MPX_EINVAL);
  CHECK(t == NULL);
  CHECK_RC(mpx_topology_load_synthetic("pu:2", NULL), MPX_EINVAL);
  CHECK_RC(mpx_topology_free(NULL), MPX_EINVAL);

  t = synthetic("pack:2 core:2 pu:2");
  mpx_topo_info in;
  mpx_placement pl[2];
  char buf[4];
  CHECK_RC(mpx_topology_info(NULL, &in), MPX_EINVAL);
  CHECK_RC(mpx_topology_info(t, NULL), MPX_EINVAL);
  CHECK_RC(mpx_topology_cpuset(NULL, buf, sizeof buf), MPX_EINVAL);
  CHECK_RC(mpx_topology_cpuset(t, NULL, 8), MPX_EINVAL);
  CHECK_RC(mpx_topology_cpuset(t, buf, 0), MPX_EINVAL);
  CHECK_RC(mpx_topology_cpuset(t, buf, 3), MPX_ETOOBIG); /* "0-7" needs 4 bytes */
  CHECK(strcmp(buf, "0-") == 0);
  CHECK_RC(mpx_topology_places(NULL, MPX_BIND_CORE), MPX_EINVAL);
  CHECK_RC(mpx_topology_places(t, (mpx_binding)9), MPX_EINVAL);
  CHECK_RC(mpx_topology_place(NULL, MPX_BIND_CORE, 2, pl), MPX_EINVAL);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, -1, pl), MPX_EINVAL);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 2, NULL), MPX_EINVAL);
  CHECK_RC(mpx_topology_place(t, (mpx_binding)4, 2, pl), MPX_EINVAL);
  CHECK_RC(mpx_topology_place(t, (mpx_binding)-1, 2, pl), MPX_EINVAL);
  CHECK_RC(mpx_topology_place(t, MPX_BIND_CORE, 0, NULL), 0);
  CHECK_RC(mpx_topology_free(t), 0);

  /* Binding: NULL, garbage lists, a place from nowhere, CPUs the machine does not have. Run in a
   * thread so that a wrong success could not narrow the test's own affinity. */
  CHECK_RC(mpx_topology_bind_thread(NULL), MPX_EINVAL);
  CHECK_RC(mpx_topology_bind_process(NULL), MPX_EINVAL);
  bind_job j = {.p = {.binding = MPX_BIND_NONE, .cpuset = "x-y"}};
  run_bind_thread(&j);
  CHECK_RC(j.rc, MPX_EINVAL);
  j = (bind_job){.p = {.binding = MPX_BIND_CORE, .place = 1 << 20, .cpuset = "0"}};
  run_bind_thread(&j);
  CHECK_RC(j.rc, MPX_EINVAL);
  j = (bind_job){.p = {.binding = MPX_BIND_CORE, .place = 0, .cpuset = "99999"}};
  run_bind_thread(&j); /* place 0 exists but shows another list: not from this topology */
  CHECK_RC(j.rc, MPX_EINVAL);
  j = (bind_job){.p = {.binding = (mpx_binding)7, .cpuset = "0"}};
  run_bind_thread(&j);
  CHECK_RC(j.rc, MPX_EINVAL);
  j = (bind_job){.p = {.binding = MPX_BIND_NONE, .cpuset = "100000"}};
  run_bind_thread(&j);
  CHECK_RC(j.rc, MPX_ESYS);
  mpx_placement unterminated;
  memset(&unterminated, 'x', sizeof unterminated);
  unterminated.binding = MPX_BIND_NONE;
  CHECK_RC(mpx_topology_bind_thread(&unterminated), MPX_EINVAL);
}

/* ---- under taskset -c 0 ---------------------------------------------------------------------- */

static int one_pu_mode(void) {
  const mpx_topology *t;
  CHECK_RC(mpx_topology_get(&t), 0);
  mpx_topo_info in;
  CHECK_RC(mpx_topology_info(t, &in), 0);
  CHECK(in.pus == 1 && in.cores == 1 && in.packages == 1 && in.numa_nodes == 1);
  CHECK(in.default_workers == 1);
  char usable[64];
  CHECK_RC(mpx_topology_cpuset(t, usable, sizeof usable), 0);
  CHECK(list_equals_affinity(usable));
  mpx_placement pl[3];
  for (int b = MPX_BIND_CORE; b <= MPX_BIND_NUMA; b++) {
    CHECK_RC(mpx_topology_place(t, (mpx_binding)b, 3, pl), 0);
    for (int i = 0; i < 3; i++) CHECK(strcmp(pl[i].cpuset, usable) == 0);
  }
  printf("topology_test --one-pu: usable set is {%s}: ok\n", usable);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--one-pu") == 0) return one_pu_mode();
  if (argc > 1) {
    fprintf(stderr, "usage: %s [--one-pu]\n", argv[0]);
    return 2;
  }
  test_concurrent_get();
  test_real_machine();
  test_two_packages();
  test_small_machines();
  test_xml();
  test_quota();
  test_bad_inputs();
  printf("topology_test: ok\n");
  return 0;
}
