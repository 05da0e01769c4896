/* demo_queue: several producers and consumers over one mpx queue, as the multiprocessing docs'
 * producer/consumer example. Producers are forked processes; consumers are threads of this
 * process; the queue (created before any fork) serves both. Each producer sends its numbers,
 * then the main program sends one end sentinel (an empty item) per consumer. The totals are
 * checked at the end. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <mpx/mpx.h>

#include "demo_common.h"

enum { PRODUCERS = 3, CONSUMERS = 2, PER_PRODUCER = 1000 };

typedef struct job {
  mpx_queue *q;
  int id;
} job;

/* A task run in a child process: put PER_PRODUCER numbers. */
static int produce(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  job j;
  if (len != sizeof j) return mpx_task_fail(ctx, MPX_EINVAL, "bad job");
  memcpy(&j, arg, sizeof j);
  for (long i = 0; i < PER_PRODUCER; i++) {
    long v = j.id * 1000000L + i;
    int rc = mpx_queue_put(j.q, &v, sizeof v, true, MPX_FOREVER);
    if (rc) return mpx_task_fail(ctx, rc, "put: %s", mpx_strerror(rc));
  }
  return 0;
}
MPX_TASK(produce);

typedef struct consumer {
  mpx_queue *q;
  long count, sum;
} consumer;

/* A consumer thread: take items until the empty sentinel. */
static void *consume(void *p) {
  consumer *c = p;
  for (;;) {
    long v;
    size_t len;
    if (mpx_queue_get(c->q, &v, sizeof v, &len, true, MPX_FOREVER) || len == 0) break;
    c->count++;
    c->sum += v;
  }
  return NULL;
}

int main(int argc, char **argv) {
  int cli = demo_no_options(
      argc, argv, "demo_queue",
      "3 producer processes and 2 consumer threads over one mpx queue; checks the totals.");
  if (cli >= 0) return cli;
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_queue *q;
  if (mpx_queue_create(&q, 100, 0)) return 1; /* at most 100 items waiting: producers block */

  mpx_process *prod[PRODUCERS];
  for (int i = 0; i < PRODUCERS; i++) {
    job j = {q, i};
    mpx_process_create(&prod[i], "produce", &j, sizeof j, NULL);
    mpx_process_start(prod[i]); /* fork before starting threads: the simple, safe order */
  }
  pthread_t th[CONSUMERS];
  consumer cons[CONSUMERS];
  for (int i = 0; i < CONSUMERS; i++) {
    cons[i] = (consumer){q, 0, 0};
    pthread_create(&th[i], NULL, consume, &cons[i]);
  }
  int failed = 0;
  for (int i = 0; i < PRODUCERS; i++) {
    int code = -1;
    mpx_process_join(prod[i], MPX_FOREVER);
    mpx_process_exitcode(prod[i], &code);
    failed |= code != 0;
    mpx_process_destroy(prod[i]);
  }
  for (int i = 0; i < CONSUMERS; i++) mpx_queue_put(q, NULL, 0, true, MPX_FOREVER); /* sentinels */
  long count = 0, sum = 0, want = 0;
  for (int i = 0; i < CONSUMERS; i++) {
    pthread_join(th[i], NULL);
    printf("consumer %d took %ld items\n", i, cons[i].count);
    count += cons[i].count;
    sum += cons[i].sum;
  }
  for (int p = 0; p < PRODUCERS; p++)
    for (long i = 0; i < PER_PRODUCER; i++) want += p * 1000000L + i;
  printf("%ld items, sum %ld (expected %d, %ld)\n", count, sum, PRODUCERS * PER_PRODUCER, want);
  mpx_queue_destroy(q);
  int rc = mpx_finalize();
  return failed || count != PRODUCERS * PER_PRODUCER || sum != want || rc ? 1 : 0;
}
