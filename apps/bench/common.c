/* common.c: mpx-bench's clock and its one printer (table rows under a header line, or --json
 * lines). Called from the main thread only. */
#include <stdio.h>
#include <time.h>

#include "bench.h"

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void bench_emit(const bench_args *a, const char *backend, const char *workload, int workers,
                long tasks, double seconds, const char *extra_json) {
  static const char *bindings[] = {"none", "core", "pu", "numa"};
  const char *bind = a->binding >= 0 && a->binding <= 3 ? bindings[a->binding] : "?";
  double rate = seconds > 0 ? (double)tasks / seconds : 0;
  static bool header;
  bench_ticker_row();
  if (!a->json && !header) {
    header = true;
    printf("%-10s %-9s %11s %17s %11s %22s  %s\n", "backend", "workload", "workers", "tasks",
           "seconds", "rate", "details");
  }
  if (a->json) {
    printf("{\"peer\": \"mpx-%s\", \"backend\": \"%s\", \"workload\": \"%s\", \"workers\": %d, "
           "\"tasks\": %ld, \"seconds\": %.6f, \"tasks_per_s\": %.1f, \"binding\": \"%s\"%s%s}\n",
           backend, backend, workload, workers, tasks, seconds, rate, bind,
           extra_json ? ", " : "", extra_json ? extra_json : "");
  } else {
    printf("%-10s %-9s %3d workers %11ld tasks %9.4f s %14.0f tasks/s  %s%s%s\n", backend,
           workload, workers, tasks, seconds, rate, extra_json ? extra_json : "",
           a->binding ? "  binding " : "", a->binding ? bind : "");
  }
  fflush(stdout);
}
