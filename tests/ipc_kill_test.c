/* ipc_kill_test: holders SIGKILLed while holding a Lock, an RLock (recursively), a Value's lock
 * and a Condition's lock: the next acquirer (including one already blocked) gets
 * MPX_EOWNERDEAD and holds the lock, and the lock works normally afterwards. And a process
 * killed at random moments while overwriting, inserting and deleting dict entries: the dict is
 * repaired (no torn value is ever read, its length matches its keys) and stays usable. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpx/mpx.h>

#include "check.h"

typedef struct karg {
  int kind; /* 0 lock, 1 rlock, 2 value, 3 condition */
  mpx_lock *lock;
  mpx_rlock *rlock;
  mpx_value *value;
  mpx_condition *cond;
  mpx_event *holding;
  mpx_dict *dict;
} karg;

/* Take the lock, say so, and wait to be killed. */

static int holder(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  karg a;
  memcpy(&a, arg, sizeof a);
  switch (a.kind) {
  case 0:
    CHECK_OK(mpx_lock_acquire(a.lock, true, -1));
    break;
  case 1:
    for (int i = 0; i < 3; i++) CHECK_OK(mpx_rlock_acquire(a.rlock, true, -1));
    break;
  case 2: {
    CHECK_OK(mpx_value_lock(a.value, -1));
    long *p;
    mpx_value_ptr(a.value, (void **)&p);
    *p = -1; /* half of an update */
    break;
  }
  case 3:
    CHECK_OK(mpx_condition_acquire(a.cond, true, -1));
    break;
  }
  mpx_event_set(a.holding);
  for (;;) pause();
}
MPX_TASK(holder);

static int acquire(const karg *a, double timeout) {
  switch (a->kind) {
  case 0:
    return mpx_lock_acquire(a->lock, true, timeout);
  case 1:
    return mpx_rlock_acquire(a->rlock, true, timeout);
  case 2:
    return mpx_value_lock(a->value, timeout);
  default:
    return mpx_condition_acquire(a->cond, true, timeout);
  }
}

static int release(const karg *a) {
  switch (a->kind) {
  case 0:
    return mpx_lock_release(a->lock);
  case 1:
    return mpx_rlock_release(a->rlock);
  case 2:
    return mpx_value_unlock(a->value);
  default:
    return mpx_condition_release(a->cond);
  }
}

static void *blocked_acquirer(void *p) {
  karg *a = p;
  int rc = acquire(a, 10);
  if (rc == MPX_EOWNERDEAD || rc == MPX_OK) CHECK_OK(release(a));
  return (void *)(long)rc;
}

static void test_dead_holder(karg *a, bool with_waiter) {
  mpx_event_clear(a->holding);
  mpx_process *p;
  CHECK_OK(mpx_process_create(&p, "holder", a, sizeof *a, NULL));
  CHECK_OK(mpx_process_start(p));
  CHECK_OK(mpx_event_wait(a->holding, 10));
  CHECK_RC(acquire(a, 0.02), MPX_ETIMEDOUT); /* alive: it holds it */
  pthread_t t;
  if (with_waiter) CHECK(pthread_create(&t, NULL, blocked_acquirer, a) == 0);
  struct timespec ts = {0, 20 * 1000000};
  nanosleep(&ts, NULL);
  CHECK_OK(mpx_process_kill(p));
  CHECK_OK(mpx_process_join(p, 10));
  mpx_process_destroy(p);
  if (with_waiter) {
    void *r;
    pthread_join(t, &r);
    CHECK((long)r == MPX_EOWNERDEAD); /* the blocked one was told */
  } else {
    if (a->kind == 2) { /* get/set report it too, having done their copy */
      long v;
      CHECK_RC(mpx_value_get(a->value, &v, sizeof v), MPX_EOWNERDEAD);
      CHECK(v == -1);
    } else {
      CHECK_RC(acquire(a, 10), MPX_EOWNERDEAD);
      CHECK_OK(release(a)); /* one release, even for the RLock the dead one took 3 times */
    }
  }
  CHECK_OK(acquire(a, 0)); /* healthy again */
  CHECK_OK(release(a));
  CHECK_RC(release(a), MPX_EPERM);
}

/* Overwrite, insert and delete forever. Values are 2 KiB of one repeated byte. */
static int dict_writer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  karg a;
  memcpy(&a, arg, sizeof a);
  char v[2048];
  mpx_event_set(a.holding);
  for (unsigned i = 0;; i++) {
    memset(v, 'a' + (int)(i % 26), sizeof v);
    char key[16];
    snprintf(key, sizeof key, "k%u", i % 50);
    CHECK(mpx_dict_set(a.dict, key, v, sizeof v) == MPX_OK);
    snprintf(key, sizeof key, "k%u", (i * 7) % 50);
    mpx_dict_delete(a.dict, key);
  }
}
MPX_TASK(dict_writer);

static void check_dict(mpx_dict *d) {
  char **keys;
  size_t n, len;
  CHECK_OK(mpx_dict_keys(d, &keys, &n));
  size_t n2;
  CHECK_OK(mpx_dict_len(d, &n2));
  CHECK(n == n2);
  for (size_t i = 0; i < n; i++) {
    char v[2048];
    CHECK_OK(mpx_dict_get(d, keys[i], v, sizeof v, &len));
    CHECK(len == sizeof v);
    for (size_t k = 1; k < len; k++) CHECK(v[k] == v[0]); /* never torn */
  }
  mpx_dict_keys_free(keys, n);
}

static void test_dict(karg *a) {
  CHECK_OK(mpx_dict_create(&a->dict, 64, 8, 2048));
  for (int round = 0; round < 25; round++) {
    mpx_event_clear(a->holding);
    mpx_process *p;
    CHECK_OK(mpx_process_create(&p, "dict_writer", a, sizeof *a, NULL));
    CHECK_OK(mpx_process_start(p));
    CHECK_OK(mpx_event_wait(a->holding, 10));
    struct timespec ts = {0, (1 + rand() % 10) * 1000000L};
    nanosleep(&ts, NULL);
    CHECK_OK(mpx_process_kill(p));
    CHECK_OK(mpx_process_join(p, 10));
    mpx_process_destroy(p);
    check_dict(a->dict);
  }
  CHECK_OK(mpx_dict_set(a->dict, "after", "ok", 2));
  CHECK(mpx_dict_contains(a->dict, "after") == 1);
  mpx_dict_destroy(a->dict);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  if (NO_FORK) { /* every case here forks */
    printf("%s: skipped (no fork)\n", argv[0]);
    return mpx_finalize();
  }
  karg a = {0};
  CHECK_OK(mpx_lock_create(&a.lock));
  CHECK_OK(mpx_rlock_create(&a.rlock));
  CHECK_OK(mpx_value_create(&a.value, sizeof(long), NULL, true));
  CHECK_OK(mpx_condition_create(&a.cond, NULL));
  CHECK_OK(mpx_event_create(&a.holding));
  for (a.kind = 0; a.kind < 4; a.kind++) {
    test_dead_holder(&a, false);
    test_dead_holder(&a, true);
  }
  srand(7);
  test_dict(&a);
  printf("ipc_kill_test: ok\n");
  mpx_lock_destroy(a.lock);
  mpx_rlock_destroy(a.rlock);
  mpx_value_destroy(a.value);
  mpx_condition_destroy(a.cond);
  mpx_event_destroy(a.holding);
  return mpx_finalize();
}
