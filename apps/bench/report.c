/* report.c: `mpx-bench report ARGS` runs mpx-bench-report ARGS, the script (apps/bench/report.py)
 * that CMake puts beside mpx-bench in the build tree and installs beside it in bin/: it runs every
 * workload and its peers and writes report.md and PNG plots. The script is found beside this
 * program's own file (/proc/self/exe), never on PATH, so a build tree runs its own copy. Called
 * before mpx_init: nothing of mpx is started. Returns only when the exec failed (exit 1). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

int bench_report(int argc, char **argv) {
  static const char name[] = "mpx-bench-report";
  char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path);
  char *slash = n > 0 && (size_t)n < sizeof path ? memrchr(path, '/', (size_t)n) : NULL;
  if (!slash || (size_t)(slash + 1 - path) + sizeof name > sizeof path) {
    fprintf(stderr, "mpx-bench report: cannot tell where mpx-bench is (/proc/self/exe)\n");
    return 1;
  }
  memcpy(slash + 1, name, sizeof name);
  argv[1] = path; /* the script's argv: its own path, then what followed "report" */
  execv(path, argv + 1);
  fprintf(stderr, "mpx-bench report: cannot run %s: %s%s\n", path, strerror(errno),
          errno == ENOENT ? " (it, or the python3 it needs, is missing)" : "");
  (void)argc;
  return 1;
}
