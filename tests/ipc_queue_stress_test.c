/* ipc_queue_stress_test: 8 producers x 8 consumers over one bounded queue with a small ring,
 * first as forked processes, then as threads. Items have varied sizes, some many times the ring
 * (streamed). Every item carries (producer, sequence) and a payload derived from them: consumers
 * verify each payload byte and tick a shared per-item counter, and at the end every counter must
 * be exactly 1: nothing lost, nothing duplicated, nothing torn. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpx/mpx.h>

#include "check.h"

#define NP 8
#define NC 8
#define PER 10000

typedef struct hdr {
  int32_t prod, seq;
} hdr;

typedef struct shared {
  mpx_queue *q;
  unsigned char *seen; /* NP * PER counters in a shared array */
  uint64_t *sums;      /* per consumer: sum of checksums */
} shared;

static size_t size_of(int prod, int seq) {
  if (seq % 211 == 0) return 20000 + (size_t)prod * 100; /* > ring: streamed */
  return (size_t)((seq * 7 + prod * 13) % 400);
}
static unsigned char byte_at(int prod, int seq, size_t i) {
  return (unsigned char)(prod * 31 + seq * 17 + i * 7);
}

static void produce(shared *s, int prod) {
  unsigned char *buf = malloc(sizeof(hdr) + 30000);
  CHECK(buf);
  for (int seq = 0; seq < PER; seq++) {
    hdr h = {prod, seq};
    size_t n = size_of(prod, seq);
    memcpy(buf, &h, sizeof h);
    for (size_t i = 0; i < n; i++) buf[sizeof h + i] = byte_at(prod, seq, i);
    CHECK_OK(mpx_queue_put(s->q, buf, sizeof h + n, true, MPX_FOREVER));
  }
  free(buf);
}

static void consume(shared *s, int cons) {
  uint64_t sum = 0;
  for (;;) {
    void *d;
    size_t len;
    CHECK_OK(mpx_queue_get_alloc(s->q, &d, &len, true, MPX_FOREVER));
    if (len == 0) break; /* end sentinel */
    CHECK(len >= sizeof(hdr));
    hdr h;
    memcpy(&h, d, sizeof h);
    CHECK(h.prod >= 0 && h.prod < NP && h.seq >= 0 && h.seq < PER);
    size_t n = size_of(h.prod, h.seq);
    CHECK(len == sizeof h + n);
    const unsigned char *p = (const unsigned char *)d + sizeof h;
    for (size_t i = 0; i < n; i++) CHECK(p[i] == byte_at(h.prod, h.seq, i));
    /* relaxed: only the count matters, read after everyone has been joined */
    __atomic_fetch_add(&s->seen[h.prod * PER + h.seq], 1, __ATOMIC_RELAXED);
    sum += (uint64_t)h.prod * PER + (uint64_t)h.seq;
    free(d);
  }
  s->sums[cons] = sum;
}

static int stress_producer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  shared s;
  int id;
  memcpy(&s, arg, sizeof s);
  memcpy(&id, (const char *)arg + sizeof s, sizeof id);
  produce(&s, id);
  return 0;
}
MPX_TASK(stress_producer);

static int stress_consumer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  shared s;
  int id;
  memcpy(&s, arg, sizeof s);
  memcpy(&id, (const char *)arg + sizeof s, sizeof id);
  consume(&s, id);
  return 0;
}
MPX_TASK(stress_consumer);

typedef struct targ {
  shared *s;
  int id;
} targ;
static void *tprod(void *p) {
  targ *t = p;
  produce(t->s, t->id);
  return NULL;
}
static void *tcons(void *p) {
  targ *t = p;
  consume(t->s, t->id);
  return NULL;
}

static void verify(shared *s) {
  uint64_t total = 0, want = 0;
  for (int i = 0; i < NP * PER; i++) {
    if (s->seen[i] != 1) {
      fprintf(stderr, "item prod %d seq %d seen %d times\n", i / PER, i % PER, s->seen[i]);
      exit(1);
    }
    want += (uint64_t)i;
  }
  for (int c = 0; c < NC; c++) total += s->sums[c];
  CHECK(total == want);
  CHECK(mpx_queue_empty(s->q) == 1);
}

static void run(bool processes) {
  mpx_array *seen, *sums;
  shared s;
  CHECK_OK(mpx_queue_create(&s.q, 64, 8192));
  CHECK_OK(mpx_array_create(&seen, 1, NP * PER, NULL, false));
  CHECK_OK(mpx_array_create(&sums, sizeof(uint64_t), NC, NULL, false));
  CHECK_OK(mpx_array_ptr(seen, (void **)&s.seen));
  CHECK_OK(mpx_array_ptr(sums, (void **)&s.sums));
  if (processes) {
    mpx_process *pp[NP], *pc[NC];
    unsigned char arg[sizeof s + sizeof(int)];
    memcpy(arg, &s, sizeof s);
    for (int i = 0; i < NC; i++) {
      memcpy(arg + sizeof s, &i, sizeof i);
      CHECK_OK(mpx_process_create(&pc[i], "stress_consumer", arg, sizeof arg, NULL));
      CHECK_OK(mpx_process_start(pc[i]));
    }
    for (int i = 0; i < NP; i++) {
      memcpy(arg + sizeof s, &i, sizeof i);
      CHECK_OK(mpx_process_create(&pp[i], "stress_producer", arg, sizeof arg, NULL));
      CHECK_OK(mpx_process_start(pp[i]));
    }
    int code;
    for (int i = 0; i < NP; i++) {
      CHECK_OK(mpx_process_join(pp[i], 90));
      CHECK_OK(mpx_process_exitcode(pp[i], &code));
      CHECK(code == 0);
      mpx_process_destroy(pp[i]);
    }
    for (int i = 0; i < NC; i++) CHECK_OK(mpx_queue_put(s.q, NULL, 0, true, MPX_FOREVER));
    for (int i = 0; i < NC; i++) {
      CHECK_OK(mpx_process_join(pc[i], 90));
      CHECK_OK(mpx_process_exitcode(pc[i], &code));
      CHECK(code == 0);
      mpx_process_destroy(pc[i]);
    }
  } else {
    pthread_t tp[NP], tc[NC];
    targ ap[NP], ac[NC];
    for (int i = 0; i < NC; i++) {
      ac[i] = (targ){&s, i};
      CHECK(pthread_create(&tc[i], NULL, tcons, &ac[i]) == 0);
    }
    for (int i = 0; i < NP; i++) {
      ap[i] = (targ){&s, i};
      CHECK(pthread_create(&tp[i], NULL, tprod, &ap[i]) == 0);
    }
    for (int i = 0; i < NP; i++) pthread_join(tp[i], NULL);
    for (int i = 0; i < NC; i++) CHECK_OK(mpx_queue_put(s.q, NULL, 0, true, MPX_FOREVER));
    for (int i = 0; i < NC; i++) pthread_join(tc[i], NULL);
  }
  verify(&s);
  mpx_array_destroy(seen);
  mpx_array_destroy(sums);
  mpx_queue_destroy(s.q);
  printf("ipc_queue_stress_test: %s %dx%d, %d items: ok\n", processes ? "processes" : "threads", NP,
         NC, NP * PER);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  if (!NO_FORK) run(true);
  run(false);
  return mpx_finalize();
}
