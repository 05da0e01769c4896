/* ipc_queue_kill_test: producers and consumers SIGKILLed in the middle of puts and gets, many
 * times, at random moments, on a queue whose ring is much smaller than most items (so kills land
 * mid-stream as well as mid-copy and while holding the put/get locks). Consumers verify every
 * item they receive byte by byte (a torn or partial item fails them); at the end the queue must
 * still work: no one is blocked, qsize is exact, and a fresh put/get round trip succeeds. First,
 * a deterministic case: a producer killed mid-stream while a consumer takes that very item. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/mpx.h>

#include "check.h"

typedef struct item_hdr {
  uint32_t magic, id, len, check;
} item_hdr;

#define MAGIC 0x1badf00du

static uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352d;
  x ^= x >> 15;
  return x;
}

typedef struct arg {
  mpx_queue *q;
  mpx_value *received; /* long: items verified by consumers */
  uint32_t id;         /* producer id */
} arg;

/* Produce forever: sizes from 0 to 40 KiB (ring: 2 KiB). */
static int kill_producer(mpx_task_ctx *ctx, const void *p, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  arg a;
  memcpy(&a, p, sizeof a);
  unsigned char *buf = malloc(sizeof(item_hdr) + 40000);
  for (uint32_t k = 0;; k++) {
    uint32_t r = mix(a.id * 7919u + k);
    uint32_t n = r % 4 == 0 ? r % 40000 : r % 200;
    item_hdr h = {MAGIC, r, n, 0};
    for (uint32_t i = 0; i < n; i++) buf[sizeof h + i] = (unsigned char)(r + i * 13);
    h.check = mix(r ^ n);
    memcpy(buf, &h, sizeof h);
    int rc = mpx_queue_put(a.q, buf, sizeof h + n, true, MPX_FOREVER);
    if (rc == MPX_ECLOSED) break;
    CHECK_OK(rc);
  }
  free(buf);
  return 0;
}
MPX_TASK(kill_producer);

/* Consume until an empty item (sentinel): every item must be whole and intact. */
static int kill_consumer(mpx_task_ctx *ctx, const void *p, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  arg a;
  memcpy(&a, p, sizeof a);
  for (;;) {
    void *d;
    size_t n;
    CHECK_OK(mpx_queue_get_alloc(a.q, &d, &n, true, MPX_FOREVER));
    if (n == 0) break;
    CHECK(n >= sizeof(item_hdr));
    item_hdr h;
    memcpy(&h, d, sizeof h);
    CHECK(h.magic == MAGIC && n == sizeof h + h.len && h.check == mix(h.id ^ h.len));
    const unsigned char *b = (const unsigned char *)d + sizeof h;
    for (uint32_t i = 0; i < h.len; i++) CHECK(b[i] == (unsigned char)(h.id + i * 13));
    free(d);
    CHECK(mpx_value_lock(a.received, MPX_FOREVER) >= MPX_EOWNERDEAD);
    long *cnt;
    mpx_value_ptr(a.received, (void **)&cnt);
    (*cnt)++;
    mpx_value_unlock(a.received);
  }
  return 0;
}
MPX_TASK(kill_consumer);

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static mpx_process *spawn(const char *task, arg *a) {
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, task, a, sizeof *a, NULL));
  CHECK_OK(mpx_process_start(p));
  return p;
}

static void reap_killed(mpx_process *p) {
  CHECK_OK(mpx_process_join(p, 10));
  int code;
  CHECK_OK(mpx_process_exitcode(p, &code));
  CHECK(code == -SIGKILL);
  CHECK_OK(mpx_process_destroy(p));
}

/* Put one item of 1 MiB (the ring is 4 KiB): the producer blocks mid-stream, holding the put
 * side, until it is killed. */
static int huge_putter(mpx_task_ctx *ctx, const void *p, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  mpx_queue *q;
  memcpy(&q, p, sizeof q);
  size_t n = 1 << 20;
  char *big = calloc(1, n);
  mpx_queue_put(q, big, n, true, MPX_FOREVER);
  free(big);
  return 0;
}
MPX_TASK(huge_putter);

/* Deterministic: the producer dies mid-item while a consumer is taking that item. The consumer
 * must not wait forever for the rest: it finds the producer dead, drops the partial item, and
 * the queue goes on. */
static void test_producer_dies_mid_item(void) {
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 0, 4096));
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, "huge_putter", &q, sizeof q, NULL));
  CHECK_OK(mpx_process_start(p));
  nap_ms(50); /* it fills the ring and waits for room */
  void *d = NULL;
  size_t len;
  CHECK_OK(mpx_process_kill(p));
  reap_killed(p);
  /* the consumer starts the item, finds its producer dead, drops it; nothing else comes */
  CHECK_RC(mpx_queue_get_alloc(q, &d, &len, true, 0.5), MPX_ETIMEDOUT);
  CHECK(d == NULL);
  size_t n;
  CHECK_OK(mpx_queue_qsize(q, &n));
  CHECK(n == 0);
  int v = 77, w = 0;
  CHECK_OK(mpx_queue_put(q, &v, sizeof v, true, 1));
  CHECK_OK(mpx_queue_get(q, &w, sizeof w, &len, true, 1));
  CHECK(w == 77 && mpx_queue_empty(q) == 1);
  mpx_queue_destroy(q);
}

#define NPROD 3
#define NCONS 3

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  if (NO_FORK) { /* every case here forks */
    printf("%s: skipped (no fork)\n", argv[0]);
    return mpx_finalize();
  }
  srand(12345);
  test_producer_dies_mid_item();
  mpx_queue *q;
  mpx_value *received;
  CHECK_OK(mpx_queue_create(&q, 16, 2048));
  CHECK_OK(mpx_value_create(&received, sizeof(long), NULL, true));
  arg a = {q, received, 0};
  mpx_process *prod[NPROD], *cons[NCONS];
  for (int i = 0; i < NPROD; i++) {
    a.id = (uint32_t)i;
    prod[i] = spawn("kill_producer", &a);
  }
  for (int i = 0; i < NCONS; i++) cons[i] = spawn("kill_consumer", &a);
  uint32_t next_id = NPROD;
  int kills = 0;
  for (int round = 0; round < 60; round++) {
    nap_ms(5 + rand() % 20);
    bool producer = rand() % 2;
    int i = rand() % (producer ? NPROD : NCONS);
    mpx_process **slot = producer ? &prod[i] : &cons[i];
    CHECK_OK(mpx_process_kill(*slot));
    reap_killed(*slot);
    kills++;
    a.id = next_id++;
    *slot = spawn(producer ? "kill_producer" : "kill_consumer", &a);
  }
  /* Progress after all those kills: consumers keep receiving. */
  long before, after;
  mpx_value_get(received, &before, sizeof before);
  after = before;
  for (int i = 0; i < 1000 && after == before; i++) { /* up to 10 s on a loaded machine */
    nap_ms(10);
    mpx_value_get(received, &after, sizeof after);
  }
  CHECK(after > before);
  /* Stop the producers (kill: they loop forever), let consumers drain, send sentinels. */
  for (int i = 0; i < NPROD; i++) {
    CHECK_OK(mpx_process_kill(prod[i]));
    reap_killed(prod[i]);
  }
  for (int i = 0; i < NCONS; i++) CHECK_OK(mpx_queue_put(q, NULL, 0, true, 10));
  int code;
  for (int i = 0; i < NCONS; i++) {
    CHECK_OK(mpx_process_join(cons[i], 30));
    CHECK_OK(mpx_process_exitcode(cons[i], &code));
    CHECK(code == 0);
    mpx_process_destroy(cons[i]);
  }
  /* The queue is consistent and usable. */
  size_t n;
  CHECK_OK(mpx_queue_qsize(q, &n));
  CHECK(n == 0);
  mpx_value_get(received, &before, sizeof before);
  mpx_process *last = spawn("kill_consumer", &a);
  for (uint32_t k = 0; k < 3; k++) { /* streamed items through the same ring, then a sentinel */
    unsigned char buf[sizeof(item_hdr) + 10000];
    item_hdr h = {MAGIC, 1000 + k, 10000, mix((1000 + k) ^ 10000)};
    memcpy(buf, &h, sizeof h);
    for (uint32_t i = 0; i < h.len; i++) buf[sizeof h + i] = (unsigned char)(h.id + i * 13);
    CHECK_OK(mpx_queue_put(q, buf, sizeof buf, true, 10));
  }
  CHECK_OK(mpx_queue_put(q, NULL, 0, true, 10));
  CHECK_OK(mpx_process_join(last, 30));
  CHECK_OK(mpx_process_exitcode(last, &code));
  CHECK(code == 0);
  mpx_process_destroy(last);
  mpx_value_get(received, &after, sizeof after);
  CHECK(after == before + 3);
  CHECK(mpx_queue_empty(q) == 1);
  mpx_value_get(received, &after, sizeof after);
  printf("ipc_queue_kill_test: %d kills, %ld intact items received: ok\n", kills, after);
  mpx_value_destroy(received);
  mpx_queue_destroy(q);
  return mpx_finalize();
}
