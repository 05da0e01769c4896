/* limits.c: what one unbatched round trip costs here with no framework at all, the floor under
 * mpx-bench pingpong and latency:
 *   limits N   a one-byte token through two pipes between this process and a forked child, N
 *              round trips ("limit-pipe", backend processes); then a turn passed N times each
 *              way between two threads under one mutex and condition variable ("limit-condvar",
 *              backend threads). One untimed round first in both, so start-up is not timed.
 * JSON lines as mpx-bench --json (peer_json.h); a failed read, write or child is exit 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peer_json.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long turn, rounds; /* turn: under lock; even: the main thread's, odd: the other's */

static void take_turns(long parity, long count) {
  for (long i = 0; i < count; i++) {
    pthread_mutex_lock(&lock);
    while (turn % 2 != parity) pthread_cond_wait(&cond, &lock);
    turn++;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
  }
}

static void *other_thread(void *arg) {
  (void)arg;
  take_turns(1, rounds + 1);
  return NULL;
}

static int pipe_round(int out, int in) {
  char token = 't';
  return write(out, &token, 1) == 1 && read(in, &token, 1) == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
  rounds = peer_arg(argc, argv, 1, "limits N");
  int down[2], up[2];
  if (pipe(down) || pipe(up)) return perror("limits: pipe"), 1;
  pid_t pid = fork();
  if (pid < 0) return perror("limits: fork"), 1;
  if (pid == 0) { /* echo every byte back until the parent closes its end */
    char token;
    close(down[1]), close(up[0]);
    while (read(down[0], &token, 1) == 1)
      if (write(up[1], &token, 1) != 1) _exit(1);
    _exit(0);
  }
  close(down[0]), close(up[1]);
  if (pipe_round(down[1], up[0])) return fprintf(stderr, "limits: pipe round failed\n"), 1;
  double t0 = peer_now();
  for (long i = 0; i < rounds; i++)
    if (pipe_round(down[1], up[0])) return fprintf(stderr, "limits: pipe round failed\n"), 1;
  double s = peer_now() - t0;
  close(down[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status)) return fprintf(stderr, "limits: child failed\n"), 1;
  peer_emit("limit-pipe", "processes", "pingpong", 2, rounds, s, NULL);

  pthread_t th;
  if (pthread_create(&th, NULL, other_thread, NULL)) return fprintf(stderr, "limits: thread\n"), 1;
  take_turns(0, 1); /* the untimed round: the other thread is up once it has taken its turn */
  pthread_mutex_lock(&lock);
  while (turn < 2) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  t0 = peer_now();
  take_turns(0, rounds);
  pthread_mutex_lock(&lock); /* the last turn is the other thread's */
  while (turn < 2 * rounds + 2) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  s = peer_now() - t0;
  pthread_join(th, NULL);
  peer_emit("limit-condvar", "threads", "pingpong", 2, rounds, s, NULL);
  return 0;
}
