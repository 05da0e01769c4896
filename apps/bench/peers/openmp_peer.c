/* openmp_peer.c: OpenMP tasks, the thread-level task runtime mpx's threads backend is held to.
 *   openmp_peer empty N W   N empty tasks created one by one by one thread (`omp single`), run by
 *                           a team of W; the time until the team's implicit barrier (all done).
 *                           Two rounds, as mpx-bench empty: tasks_per_s is the second.
 *   openmp_peer metg W MAX  the smallest task grain (us of spinning) at which W threads running
 *                           OpenMP tasks still reach 50% efficiency: the grains, calibration and
 *                           0.2 s budget per grain of mpx-bench metg, at most MAX tasks a grain;
 *                           one "metg-step" line per grain, then the "metg" line (metg_us; -1: not
 *                           even 1000 us reached 50%).
 * JSON lines as mpx-bench --json (peer_json.h); a wrong count of executed tasks is exit 1. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "peer_json.h"

#define USAGE "openmp_peer empty N W | metg W MAX_TASKS"

static long spin(long iters) {
  volatile long acc = 0;
  for (long i = 0; i < iters; i++) acc += i;
  return acc;
}

/* Loop iterations per microsecond of spin() on this thread. */
static double calibrate(void) {
  for (long iters = 1000;; iters *= 2) {
    double t0 = peer_now();
    spin(iters);
    double s = peer_now() - t0;
    if (s > 0.05) return (double)iters / (s * 1e6);
  }
}

/* n tasks of `iters` spins each on w threads; seconds, or -1 when a task went missing. */
static double run_tasks(long n, long iters, int w) {
  long done = 0;
  double t0 = peer_now();
#pragma omp parallel num_threads(w)
#pragma omp single
  for (long i = 0; i < n; i++) {
#pragma omp task firstprivate(i) shared(done)
    {
      if (iters) spin(iters);
#pragma omp atomic
      done++;
    }
  }
  double s = peer_now() - t0;
  return done == n ? s : -1;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "empty")) {
    long n = peer_arg(argc, argv, 2, USAGE);
    int w = (int)peer_arg(argc, argv, 3, USAGE);
    double cold = run_tasks(n, 0, w), s = run_tasks(n, 0, w);
    if (cold < 0 || s < 0) return fprintf(stderr, "openmp_peer: a task went missing\n"), 1;
    char extra[64];
    snprintf(extra, sizeof extra, "\"first_round_tasks_per_s\": %.1f", (double)n / cold);
    peer_emit("openmp-task", "threads", "empty", w, n, s, extra);
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "metg")) {
    int w = (int)peer_arg(argc, argv, 2, USAGE);
    long max = peer_arg(argc, argv, 3, USAGE);
    double per_us = calibrate(), metg = -1, budget = 0.2;
    const double grains[] = {1000, 500, 200, 100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05};
    for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
      long iters = (long)(grains[g] * per_us);
      if (iters < 1) break;
      double grain_us = (double)iters / per_us;
      long n = (long)(budget * 1e6 * w / grain_us);
      if (n > max) n = max;
      if (n < 10 * w) n = 10 * w;
      double s = run_tasks(n, iters, w);
      if (s < 0) return fprintf(stderr, "openmp_peer: a task went missing\n"), 1;
      double eff = (double)n * grain_us * 1e-6 / ((double)w * s);
      if (eff < 0.5) { /* one more try, as mpx-bench: a noisy host can halve one run */
        double again = run_tasks(n, iters, w);
        if (again > 0 && again < s) eff = (double)n * grain_us * 1e-6 / ((double)w * (s = again));
      }
      char extra[96];
      snprintf(extra, sizeof extra, "\"grain_us\": %.3f, \"efficiency\": %.3f", grain_us, eff);
      peer_emit("openmp-task", "threads", "metg-step", w, n, s, extra);
      if (eff < 0.5) break;
      metg = grain_us;
    }
    char extra[48];
    snprintf(extra, sizeof extra, "\"metg_us\": %.3f", metg);
    peer_emit("openmp-task", "threads", "metg", w, 0, 0, extra);
    return 0;
  }
  fprintf(stderr, "usage: %s\n", USAGE);
  return 2;
}
