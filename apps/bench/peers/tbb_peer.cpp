// tbb_peer.cpp: oneTBB's task_group, the other thread-level task runtime beside OpenMP.
//   tbb_peer empty N W   N empty tasks run() one by one from this thread into a task_group on an
//                        arena of W threads, then wait(); two rounds, tasks_per_s is the second
//                        (as mpx-bench empty). A wrong count of executed tasks is exit 1.
// JSON lines as mpx-bench --json (peer_json.h).
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "peer_json.h"

#define USAGE "tbb_peer empty N W"

static double round_of(tbb::task_arena &arena, long n) {
  std::atomic<long> done{0};
  double t0 = peer_now();
  arena.execute([&] {
    tbb::task_group g;
    for (long i = 0; i < n; i++) g.run([&done] { done.fetch_add(1, std::memory_order_relaxed); });
    g.wait();
  });
  double s = peer_now() - t0;
  return done.load() == n ? s : -1;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "empty")) {
    fprintf(stderr, "usage: %s\n", USAGE);
    return 2;
  }
  long n = peer_arg(argc, argv, 2, USAGE);
  int w = (int)peer_arg(argc, argv, 3, USAGE);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, (size_t)w);
  tbb::task_arena arena(w);
  double cold = round_of(arena, n), s = round_of(arena, n);
  if (cold < 0 || s < 0) return fprintf(stderr, "tbb_peer: a task went missing\n"), 1;
  char extra[64];
  snprintf(extra, sizeof extra, "\"first_round_tasks_per_s\": %.1f", (double)n / cold);
  peer_emit("onetbb-task_group", "threads", "empty", w, n, s, extra);
  return 0;
}
