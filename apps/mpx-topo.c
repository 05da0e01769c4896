/* mpx-topo: print what mpx sees of the hardware and where it would place workers.
 *
 *   mpx-topo [--workers N] [--binding none|core|pu|numa] [--xml FILE | --synthetic DESC]
 *
 * Without --xml or --synthetic it reads this process's machine the way an executor does (so run it
 * under the same taskset, cgroup, mpirun or srun as the job). Exit status: 0 on success, 1 if this
 * machine's topology cannot be loaded, 2 on a usage error: an unknown option, a bad value (named
 * on stderr), an --xml file or --synthetic description hwloc cannot load. More workers than 64
 * per PU are placed with a warning. --help prints to stdout; stdout is line-buffered. For this
 * machine it also prints the batch job and the launch mpx_init would see (mpx/job.h), so `srun
 * mpx-topo` shows each rank's placement and why it would or would not use MPI; it never initialises
 * MPI itself. Single-threaded. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpx/mpx.h"

enum { MAX_WORKERS = 1 << 20 };

static const char *const binding_names[] = {"none", "core", "pu", "numa"}; /* by mpx_binding */

typedef struct topo_args {
  int workers; /* 0: the default workers */
  mpx_binding binding;
  const char *xml;
  const char *synthetic;
  int machine; /* this machine, not a loaded topology: also print the job */
} topo_args;

static void usage(FILE *f, const char *prog) {
  fprintf(
      f,
      "usage: %s [--workers N] [--binding none|core|pu|numa] [--xml FILE | --synthetic DESC]\n"
      "\n"
      "Print the packages, NUMA nodes, cores and PUs this process may use, the cgroup CPU\n"
      "quota, the default number of workers and the usable cpuset, then where N workers\n"
      "would be placed under the binding, one line per worker.\n"
      "\n"
      "  -w, --workers N     workers to place (default: the default workers)\n"
      "  -b, --binding B     none, core, pu or numa (default: core, to show places; an\n"
      "                      executor binds only when its options ask: default none)\n"
      "  -x, --xml FILE      read an hwloc XML file (lstopo --of xml) instead of this machine\n"
      "  -s, --synthetic D   use an hwloc synthetic machine, e.g. \"pack:2 numa:2 core:4 pu:2\"\n"
      "  -h, --help          print this help\n",
      prog);
}

static int usage_error(const char *prog, const char *what, const char *arg) {
  fprintf(stderr, "%s: %s%s%s%s\n", prog, what, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
  fprintf(stderr, "Try '%s --help'.\n", prog);
  return 2;
}

static int parse_workers(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0 || v > MAX_WORKERS) return -1;
  *out = (int)v;
  return 0;
}

static int parse_binding(const char *s, mpx_binding *out) {
  for (int b = 0; b < (int)(sizeof binding_names / sizeof *binding_names); b++) {
    if (strcmp(s, binding_names[b]) == 0) {
      *out = (mpx_binding)b;
      return 0;
    }
  }
  return -1;
}

/* 0 to go on, 2 after a usage error, -1 after --help. */
static int parse_args(int argc, char **argv, topo_args *a) {
  static const struct option opts[] = {
      {"workers", required_argument, NULL, 'w'}, {"binding", required_argument, NULL, 'b'},
      {"xml", required_argument, NULL, 'x'},     {"synthetic", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  const char *prog = argv[0];
  *a = (topo_args){.binding = MPX_BIND_CORE};
  opterr = 0; /* our own messages */
  for (int c; (c = getopt_long(argc, argv, ":w:b:x:s:h", opts, NULL)) != -1;) {
    switch (c) {
    case 'w':
      if (parse_workers(optarg, &a->workers) != 0)
        return usage_error(prog, "--workers wants a whole number from 0 to 1048576, not", optarg);
      break;
    case 'b':
      if (parse_binding(optarg, &a->binding) != 0)
        return usage_error(prog, "--binding wants none, core, pu or numa, not", optarg);
      break;
    case 'x': a->xml = optarg; break;
    case 's': a->synthetic = optarg; break;
    case 'h': usage(stdout, prog); return -1;
    case ':': return usage_error(prog, "missing value for", argv[optind - 1]);
    default: return usage_error(prog, "unknown option", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage_error(prog, "unexpected argument", argv[optind]);
  if (a->xml && a->synthetic) return usage_error(prog, "give --xml or --synthetic, not both", NULL);
  return 0;
}

static void print_placement(const mpx_placement *p) {
  char core[16] = "-", pu[16] = "-", numa[16] = "-", pkg[16] = "-";
  if (p->core >= 0) snprintf(core, sizeof core, "%d", p->core);
  if (p->pu >= 0) snprintf(pu, sizeof pu, "%d", p->pu);
  if (p->numa_node >= 0) snprintf(numa, sizeof numa, "%d", p->numa_node);
  if (p->package >= 0) snprintf(pkg, sizeof pkg, "%d", p->package);
  printf("worker %-4d package %-3s numa %-3s core %-4s pu %-4s cpuset %s\n", p->worker, pkg, numa,
         core, pu, p->cpuset[0] ? p->cpuset : "(unbound)");
}

static const char *const sched_names[] = {"none", "slurm", "pbs"}; /* by mpx_scheduler */

/* This process's job, as mpx_init would see it (only for this machine's topology). */
static void report_job(void) {
  mpx_job j;
  char host[256] = "?";
  if (mpx_job_get(&j) != 0) return;
  gethostname(host, sizeof host - 1);
  printf("host:            %s (pid %ld)\n", host, (long)getpid());
  printf("batch system:    %s%s%s\n", sched_names[j.scheduler], j.job_id[0] ? " job " : "",
         j.job_id);
  printf("launch:          %s (%s)\n",
         j.spawned    ? "spawned worker"
         : j.launched ? "MPI ranks"
                      : "not launched: threads",
         j.reason);
  if (j.tasks > 0 || j.rank >= 0) printf("rank:            %d of %d\n", j.rank, j.tasks);
  if (j.cpus_per_task > 0) printf("cpus per task:   %d (SLURM_CPUS_PER_TASK)\n", j.cpus_per_task);
  if (j.ncpus > 0) printf("ncpus:           %d (PBS NCPUS)\n", j.ncpus);
  if (j.nodes > 0) printf("job nodes:       %d\n", j.nodes);
  if (j.node_slots > 0) printf("nodefile slots:  %d\n", j.node_slots);
  double end, left;
  if (mpx_job_deadline(&end, &left) == 0) printf("job ends:        %.0f (in %.0f s)\n", end, left);
}

static int report(const mpx_topology *t, const char *source, const topo_args *a) {
  mpx_topo_info in;
  char cpuset[4096];
  int rc = mpx_topology_info(t, &in);
  if (rc == 0 && mpx_topology_cpuset(t, cpuset, sizeof cpuset) == MPX_ETOOBIG)
    strcpy(cpuset + sizeof cpuset - 4, "...");
  if (rc != 0) return rc;
  printf("source:          %s\n", source);
  printf("packages:        %d\n", in.packages);
  printf("numa nodes:      %d\n", in.numa_nodes);
  printf("cores:           %d\n", in.cores);
  printf("pus:             %d\n", in.pus);
  if (in.cpu_quota > 0)
    printf("cgroup quota:    %d cpus\n", in.cpu_quota);
  else
    printf("cgroup quota:    none\n");
  printf("default workers: %d\n", in.default_workers);
  printf("usable cpuset:   %s\n", cpuset);
  if (a->machine) report_job();

  int n = a->workers > 0 ? a->workers : in.default_workers;
  if (n > 64L * in.pus)
    fprintf(stderr, "mpx-topo: warning: %d workers is more than 64 per PU (%d PUs)\n", n, in.pus);
  mpx_placement *pl = calloc((size_t)n, sizeof *pl);
  if (!pl) return MPX_ENOMEM;
  rc = mpx_topology_place(t, a->binding, n, pl);
  if (rc == 0) {
    int places = mpx_topology_places(t, a->binding);
    printf("\n%d worker%s, binding %s (%d distinct place%s%s):\n", n, n == 1 ? "" : "s",
           binding_names[a->binding], places, places == 1 ? "" : "s",
           n > places && a->binding != MPX_BIND_NONE ? ", wrapping around" : "");
    for (int i = 0; i < n; i++) print_placement(&pl[i]);
  }
  free(pl);
  return rc;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* each line reaches a pipe or a file as it is printed */
  topo_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc != 0) return rc < 0 ? 0 : rc;

  mpx_topology *own = NULL;
  const mpx_topology *t = NULL;
  char source[512];
  if (a.xml) {
    rc = mpx_topology_load_xml(a.xml, &own);
    snprintf(source, sizeof source, "xml %s", a.xml);
  } else if (a.synthetic) {
    rc = mpx_topology_load_synthetic(a.synthetic, &own);
    snprintf(source, sizeof source, "synthetic \"%s\"", a.synthetic);
  } else {
    rc = mpx_topology_get(&t);
    a.machine = 1;
    snprintf(source, sizeof source, "this machine (as this process may use it)");
  }
  if (own) t = own;
  if (rc != 0) {
    fprintf(stderr, "%s: cannot load the topology of %s: %s (%s)%s%s\n", argv[0], source,
            mpx_strerror(rc), mpx_err_name(rc), *mpx_errmsg() ? ": " : "", mpx_errmsg());
    return a.machine ? 1 : 2; /* a file or description given: a bad value */
  }
  rc = report(t, source, &a);
  if (own) mpx_topology_free(own);
  if (rc != 0) {
    fprintf(stderr, "%s: %s (%s)\n", argv[0], mpx_strerror(rc), mpx_err_name(rc));
    return 1;
  }
  return 0;
}
