/* ticker.c: mpx-bench's progress on stderr while a workload runs, so that a long run (fib of a
 * large n, a big --tasks, metg's searches) is never silent. Nothing is printed in the first 2 s;
 * then, when stderr is a terminal, a status line ("mpx-bench: fib: 7 s, 1 row") redrawn every
 * second and erased before each row and at the end; otherwise (a log file, a pipe, mpirun's
 * forwarding) one line at 10 s and every 30 s after, each ending in a newline.
 * One ticker thread; `mu` guards the state it shares with the main thread (stop, rows, whether a
 * status line is on the terminal), and the condition variable (on CLOCK_MONOTONIC) wakes it at
 * the next tick or at stop. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static pthread_t thread;
static bool running, stop, drawn;
static const char *what;
static double t0;
static long rows;

static void *tick(void *arg) {
  (void)arg;
  bool tty = isatty(2);
  double next = t0 + (tty ? 2 : 10);
  pthread_mutex_lock(&mu);
  while (!stop) {
    struct timespec ts = {(time_t)next, (long)((next - (double)(time_t)next) * 1e9)};
    if (pthread_cond_timedwait(&cv, &mu, &ts) == 0 || stop) continue;
    double now = bench_now();
    if (now < next) continue;
    if (tty) {
      fprintf(stderr, "\r\033[Kmpx-bench: %s: %.0f s, %ld row%s", what, now - t0, rows,
              rows == 1 ? "" : "s");
      drawn = true;
      next = now + 1;
    } else {
      fprintf(stderr, "mpx-bench: %s: still running after %.0f s (%ld row%s printed)\n", what,
              now - t0, rows, rows == 1 ? "" : "s");
      next = now + 30;
    }
    fflush(stderr);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

void bench_ticker_start(const char *workload) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* bench_now's clock */
  pthread_cond_init(&cv, &ca);
  pthread_condattr_destroy(&ca);
  what = workload, t0 = bench_now(), stop = false, rows = 0;
  running = pthread_create(&thread, NULL, tick, NULL) == 0; /* no ticker: the run goes on silent */
}

void bench_ticker_row(void) {
  pthread_mutex_lock(&mu);
  if (drawn) fputs("\r\033[K", stderr);
  drawn = false;
  rows++;
  pthread_mutex_unlock(&mu);
}

void bench_ticker_stop(void) {
  if (!running) return;
  pthread_mutex_lock(&mu);
  stop = true;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(thread, NULL);
  running = false;
  if (drawn) fputs("\r\033[K", stderr);
  drawn = false;
}
