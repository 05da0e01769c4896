/* peer_json.h: the one printer and clock of the C and C++ peers. Each result is one JSON line with
 * mpx-bench --json's keys (peer, backend, workload, workers, tasks, seconds, tasks_per_s), then
 * `extra` (already JSON, without a leading comma, or NULL); stdout is flushed after every line so
 * that a peer killed by the report's time limit still leaves what it measured. Header-only: each
 * peer is one translation unit. */
#ifndef MPX_PEER_JSON_H
#define MPX_PEER_JSON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double peer_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline void peer_emit(const char *peer, const char *backend, const char *workload,
                             int workers, long tasks, double seconds, const char *extra) {
  printf("{\"peer\": \"%s\", \"backend\": \"%s\", \"workload\": \"%s\", \"workers\": %d, "
         "\"tasks\": %ld, \"seconds\": %.6f, \"tasks_per_s\": %.1f%s%s}\n",
         peer, backend, workload, workers, tasks, seconds,
         seconds > 0 ? (double)tasks / seconds : 0.0, extra ? ", " : "", extra ? extra : "");
  fflush(stdout);
}

/* A positive long from argv[i], or the usage line and exit 2. */
static inline long peer_arg(int argc, char **argv, int i, const char *usage) {
  char *end = NULL;
  long v = i < argc ? strtol(argv[i], &end, 10) : 0;
  if (i >= argc || !end || *end || v <= 0) {
    fprintf(stderr, "usage: %s\n", usage);
    exit(2);
  }
  return v;
}

#endif
