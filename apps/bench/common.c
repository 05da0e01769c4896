/* common.c: mpx-bench's clock, its one printer (table rows under a header line, or --json
 * lines), and rank 0's traffic on the MPI backend: the link's info line at each executor's end
 * ("mpi link: rank 0 sent N messages (B bytes), received ..."), caught by a logger that passes on
 * what MPX_LOG asked for. Called from the main thread only, but the logger, which may run on any
 * thread; the line is read after mpx_executor_destroy, which joins the thread that logged it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
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

static int user_level = MPX_LOG_WARN; /* what MPX_LOG asked for (mpx/log.h's rules) */
static char link_line[256];
static double cpu0; /* this process's CPU seconds when the watch began */

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void watch(int level, const char *msg, void *user) {
  (void)user;
  if (strstr(msg, "mpi link: rank 0 sent")) snprintf(link_line, sizeof link_line, "%s", msg);
  if (level <= user_level) mpx_log_default(level, msg, NULL);
}

void bench_watch_link(void) {
  static const char *names[] = {"off", "error", "warn", "info", "debug"};
  const char *e = getenv("MPX_LOG");
  user_level = e && *e ? MPX_LOG_WARN : MPX_LOG_OFF;
  for (int l = 0; e && l <= MPX_LOG_DEBUG; l++)
    if (!strcasecmp(e, names[l])) user_level = l;
  mpx_log_set(watch, NULL);
  cpu0 = cpu_now();
  mpx_log_set_level(user_level > MPX_LOG_INFO ? user_level : MPX_LOG_INFO);
}

void bench_link_report(const bench_args *a, const char *workload, long tasks) {
  unsigned long long mo, bo, mi, bi;
  int workers = 0;
  if (!link_line[0] || tasks <= 0 ||
      sscanf(link_line, "mpi link: rank 0 sent %llu messages (%llu bytes), received %llu (%llu "
                        "bytes), %d workers", &mo, &bo, &mi, &bi, &workers) != 5)
    return; /* not the MPI backend */
  bool leaders = strstr(link_line, "(node leaders)") != NULL;
  double per_k = 1000.0 * (double)(mo + mi) / (double)tasks;
  double bytes = (double)(bo + bi) / (double)tasks;
  double cpu_us = (cpu_now() - cpu0) * 1e6 / (double)tasks; /* rank 0's CPU per task, all in */
  cpu0 = cpu_now();
  if (a->json)
    printf("{\"peer\": \"mpx-mpi\", \"backend\": \"mpi\", \"workload\": \"%s-rank0\", "
           "\"tasks\": %ld, \"rank0_msgs_sent\": %llu, \"rank0_msgs_received\": %llu, "
           "\"rank0_msgs_per_1000_tasks\": %.2f, \"rank0_bytes_per_task\": %.1f, "
           "\"rank0_cpu_us_per_task\": %.3f, \"rank0_peers\": %d, \"leaders\": %s}\n",
           workload, tasks, mo, mi, per_k, bytes, cpu_us, workers, leaders ? "true" : "false");
  else
    printf("rank 0     %-9s %3d peers %11ld tasks: %llu msgs sent, %llu received: %.2f msgs "
           "per 1000 tasks, %.1f bytes per task, %.2f us CPU per task%s\n",
           workload, workers, tasks, mo, mi, per_k, bytes, cpu_us,
           leaders ? " (node leaders)" : "");
  link_line[0] = '\0';
  fflush(stdout);
}
