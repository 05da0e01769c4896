/* bench.h: the harness shared by mpx-bench's workloads: parsed arguments, a clock, and one
 * printer for table rows and --json lines (keys as apps/bench/peers/README.md: backend/peer,
 * workload, workers, tasks, seconds, tasks_per_s, plus extras). */
#ifndef MPX_BENCH_H
#define MPX_BENCH_H

#include <stdbool.h>

#include <mpx/mpx.h>

typedef struct bench_args {
  const char *workload;
  mpx_backend backend;
  int workers;   /* 0: mpx's default */
  mpx_binding binding; /* where workers are bound (hwloc); pingpong binds its two sides */
  long tasks;    /* N (or K for fib) */
  int fib_n;     /* fib: n */
  double task_us; /* metg: starting task duration */
  double long_s;  /* skew: the long task's seconds */
  double short_ms; /* skew: each short task's milliseconds (the heavy tail's smallest) */
  const char *size; /* payload: "4M" or "64K..256M" */
  unsigned long long reserve; /* payload: --reserve, the executor's arg_reserve (bytes; 0 none) */
  bool tasks_given; /* --tasks was given (payload: else one task per worker) */
  double timeout;  /* --timeout: the executor's task_timeout (s), 0: none */
  int repeats;     /* metg: independent searches (--repeat), their median reported */
  bool json;
} bench_args;

/* Monotonic seconds. */
double bench_now(void);

/* Print one result: a table row, or with --json one object per line. `extra_json` is either NULL
 * or a string of extra keys such as "\"speedup\": 1.95" (no leading comma). */
void bench_emit(const bench_args *a, const char *backend, const char *workload, int workers,
                long tasks, double seconds, const char *extra_json);

/* Rank 0's traffic on the MPI backend. watch_link (at start) catches the link's line at each
 * executor's end; link_report (after mpx_executor_destroy) prints its messages per 1000 tasks and
 * bytes per task over the `tasks` the executor ran (nothing on other backends). */
void bench_watch_link(void);
void bench_link_report(const bench_args *a, const char *workload, long tasks);

/* Progress of a run on stderr (ticker.c): after 2 s, a status line redrawn every second when
 * stderr is a terminal, else one line at 10 s and every 30 s after. bench_emit clears the status
 * line before it prints a row (bench_ticker_row, which also counts it). Start and stop from the
 * main thread. */
void bench_ticker_start(const char *workload);
void bench_ticker_stop(void);
void bench_ticker_row(void);

/* Workloads: each returns 0, or prints why it failed and returns 1. */
int bench_empty(const bench_args *a);
int bench_map(const bench_args *a);
int bench_latency(const bench_args *a);
int bench_fib(const bench_args *a);
int bench_metg(const bench_args *a);
int bench_pingpong(const bench_args *a);
int bench_skew(const bench_args *a);
int bench_strmap(const bench_args *a);
int bench_stream(const bench_args *a);
int bench_payload(const bench_args *a);

/* `mpx-bench report ARGS`: execs the report script installed beside mpx-bench (report.c); returns
 * 1 only when that failed. */
int bench_report(int argc, char **argv);

#endif
