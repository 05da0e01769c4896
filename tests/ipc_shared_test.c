/* ipc_shared_test: Value, Array and the shared dict between threads and forked processes: a
 * counter incremented under the value's lock by several processes, array slices, sizes that do
 * not match (ESIZE), values without a lock (EPERM on lock), the dict's set/get/delete/len/
 * contains/keys/next/clear, its limits (EFULL, ETOOBIG), workers filling it from processes, and
 * bad input. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpx/mpx.h>

#include "check.h"

static bool forks = true;

typedef struct warg {
  mpx_value *v;
  mpx_dict *d;
  int id, n;
} warg;

static void incr(warg *a) {
  for (int i = 0; i < a->n; i++) {
    CHECK_OK(mpx_value_lock(a->v, -1));
    long x;
    CHECK_OK(mpx_value_get(a->v, &x, sizeof x)); /* recursive: fine inside the lock */
    x++;
    CHECK_OK(mpx_value_set(a->v, &x, sizeof x));
    CHECK_OK(mpx_value_unlock(a->v));
  }
}

static void fill(warg *a) {
  for (int i = 0; i < a->n; i++) {
    char key[32];
    snprintf(key, sizeof key, "w%d-k%d", a->id, i);
    long val = (long)a->id * 100000 + i;
    CHECK_OK(mpx_dict_set(a->d, key, &val, sizeof val));
  }
}

static int shared_worker(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)len, (void)out;
  warg a;
  memcpy(&a, arg, sizeof a);
  if (a.v) incr(&a);
  if (a.d) fill(&a);
  return 0;
}
MPX_TASK(shared_worker);

static void *thread_worker(void *p) {
  warg *a = p;
  if (a->v) incr(a);
  if (a->d) fill(a);
  return NULL;
}

static void run_workers(warg *base, int n, bool procs) {
  warg a[8];
  pthread_t t[8];
  mpx_process *p[8];
  for (int i = 0; i < n; i++) {
    a[i] = *base;
    a[i].id = i;
    if (procs) {
      CHECK_OK(mpx_process_create(&p[i], "shared_worker", &a[i], sizeof a[i], NULL));
      CHECK_OK(mpx_process_start(p[i]));
    } else {
      CHECK(pthread_create(&t[i], NULL, thread_worker, &a[i]) == 0);
    }
  }
  for (int i = 0; i < n; i++) {
    if (procs) {
      int code;
      CHECK_OK(mpx_process_join(p[i], 60));
      CHECK_OK(mpx_process_exitcode(p[i], &code));
      CHECK(code == 0);
      mpx_process_destroy(p[i]);
    } else {
      pthread_join(t[i], NULL);
    }
  }
}

static void test_value(void) {
  mpx_value *v;
  long init = 5, x = 0;
  CHECK_OK(mpx_value_create(&v, sizeof(long), &init, true));
  CHECK_OK(mpx_value_get(v, &x, sizeof x));
  CHECK(x == 5);
  CHECK_RC(mpx_value_get(v, &x, 4), MPX_ESIZE);
  CHECK_RC(mpx_value_set(v, &x, 16), MPX_ESIZE);
  size_t sz;
  CHECK_OK(mpx_value_size(v, &sz));
  CHECK(sz == sizeof(long));
  x = 0;
  CHECK_OK(mpx_value_set(v, &x, sizeof x));
  for (int procs = 0; procs < (forks ? 2 : 1); procs++) {
    warg a = {v, NULL, 0, 2000};
    x = 0;
    mpx_value_set(v, &x, sizeof x);
    run_workers(&a, 4, procs);
    CHECK_OK(mpx_value_get(v, &x, sizeof x));
    CHECK(x == 4 * 2000);
  }
  CHECK_RC(mpx_value_unlock(v), MPX_EPERM); /* not held */
  mpx_value_destroy(v);
  /* without a lock */
  CHECK_OK(mpx_value_create(&v, 3, "abc", false));
  char buf[3];
  CHECK_OK(mpx_value_get(v, buf, 3));
  CHECK(memcmp(buf, "abc", 3) == 0);
  CHECK_RC(mpx_value_lock(v, -1), MPX_EPERM);
  CHECK_RC(mpx_value_unlock(v), MPX_EPERM);
  void *p;
  CHECK_OK(mpx_value_ptr(v, &p));
  CHECK(memcmp(p, "abc", 3) == 0);
  mpx_value_destroy(v);
}

static void test_array(void) {
  mpx_array *a;
  double init[5] = {1, 2, 3, 4, 5};
  CHECK_OK(mpx_array_create(&a, sizeof(double), 5, init, true));
  size_t n, es;
  CHECK_OK(mpx_array_len(a, &n));
  CHECK_OK(mpx_array_elem_size(a, &es));
  CHECK(n == 5 && es == sizeof(double));
  double d;
  CHECK_OK(mpx_array_get(a, 4, &d, sizeof d));
  CHECK(d == 5);
  CHECK_RC(mpx_array_get(a, 5, &d, sizeof d), MPX_EINVAL); /* out of range */
  CHECK_RC(mpx_array_get(a, 0, &d, 4), MPX_ESIZE);
  d = 9;
  CHECK_OK(mpx_array_set(a, 0, &d, sizeof d));
  double sl[3] = {7, 8, 9}, got[5];
  CHECK_OK(mpx_array_write(a, 2, 3, sl));
  CHECK_RC(mpx_array_write(a, 3, 3, sl), MPX_EINVAL); /* runs past the end */
  CHECK_RC(mpx_array_read(a, 0, 0, got), MPX_EINVAL);
  CHECK_OK(mpx_array_read(a, 0, 5, got));
  CHECK(got[0] == 9 && got[1] == 2 && got[2] == 7 && got[4] == 9);
  CHECK_OK(mpx_array_lock(a, 0));
  CHECK_OK(mpx_array_unlock(a));
  mpx_array_destroy(a);
  CHECK_RC(mpx_array_create(&a, 0, 5, NULL, true), MPX_EINVAL);
  CHECK_RC(mpx_array_create(&a, 8, 0, NULL, true), MPX_EINVAL);
  CHECK_RC(mpx_array_create(&a, SIZE_MAX / 2, 4, NULL, true), MPX_EINVAL);
}

static void test_dict(void) {
  mpx_dict *d;
  CHECK_RC(mpx_dict_create(&d, 0, 8, 8), MPX_EINVAL);
  CHECK_OK(mpx_dict_create(&d, 4, 8, 16));
  size_t len, n;
  char buf[32];
  CHECK_OK(mpx_dict_set(d, "a", "1", 1));
  CHECK_OK(mpx_dict_set(d, "b", "22", 2));
  CHECK_OK(mpx_dict_set(d, "", "empty key", 9));
  CHECK_OK(mpx_dict_set(d, "a", "111", 3)); /* overwrite */
  CHECK_OK(mpx_dict_len(d, &n));
  CHECK(n == 3);
  CHECK_OK(mpx_dict_get(d, "a", buf, sizeof buf, &len));
  CHECK(len == 3 && memcmp(buf, "111", 3) == 0);
  CHECK_RC(mpx_dict_get(d, "a", buf, 2, &len), MPX_ETOOBIG);
  CHECK(len == 3);
  CHECK_RC(mpx_dict_get(d, "zz", buf, sizeof buf, &len), MPX_ENOTFOUND);
  CHECK(mpx_dict_contains(d, "b") == 1 && mpx_dict_contains(d, "zz") == 0);
  CHECK_RC(mpx_dict_set(d, "toolongkey", "x", 1), MPX_ETOOBIG);
  CHECK_RC(mpx_dict_set(d, "c", "0123456789abcdefg", 17), MPX_ETOOBIG);
  CHECK_OK(mpx_dict_set(d, "c", NULL, 0));
  CHECK_RC(mpx_dict_set(d, "e", "x", 1), MPX_EFULL); /* 4 entries */
  CHECK_OK(mpx_dict_set(d, "c", "x", 1));            /* overwrite is fine when full */
  char **keys;
  CHECK_OK(mpx_dict_keys(d, &keys, &n));
  CHECK(n == 4);
  int seen = 0;
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(keys[i], "a")) seen |= 1;
    if (!strcmp(keys[i], "b")) seen |= 2;
    if (!strcmp(keys[i], "c")) seen |= 4;
    if (!strcmp(keys[i], "")) seen |= 8;
  }
  CHECK(seen == 15);
  mpx_dict_keys_free(keys, n);
  size_t cur = 0, cnt = 0;
  char key[16];
  int r;
  while ((r = mpx_dict_next(d, &cur, key, sizeof key)) == 1) cnt++;
  CHECK(r == 0 && cnt == 4);
  CHECK_OK(mpx_dict_delete(d, "a"));
  CHECK_RC(mpx_dict_delete(d, "a"), MPX_ENOTFOUND);
  CHECK_OK(mpx_dict_set(d, "e", "x", 1)); /* room again */
  CHECK_OK(mpx_dict_clear(d));
  CHECK_OK(mpx_dict_len(d, &n));
  CHECK(n == 0);
  /* churn: many deletes and inserts through tombstones */
  for (int i = 0; i < 1000; i++) {
    char k[8];
    snprintf(k, sizeof k, "k%d", i % 4);
    mpx_dict_delete(d, k);
    CHECK_OK(mpx_dict_set(d, k, &i, sizeof i));
    if (i % 3 == 0) CHECK_OK(mpx_dict_delete(d, k));
  }
  /* bad input */
  CHECK_RC(mpx_dict_set(NULL, "a", "1", 1), MPX_EINVAL);
  CHECK_RC(mpx_dict_set(d, NULL, "1", 1), MPX_EINVAL);
  CHECK_RC(mpx_dict_set(d, "a", NULL, 1), MPX_EINVAL);
  CHECK_RC(mpx_dict_get(d, "a", NULL, 4, &len), MPX_EINVAL);
  CHECK_RC(mpx_dict_get(d, "a", buf, 4, NULL), MPX_EINVAL);
  CHECK_RC(mpx_dict_len(d, NULL), MPX_EINVAL);
  CHECK_RC(mpx_dict_keys(d, NULL, &n), MPX_EINVAL);
  CHECK_RC(mpx_dict_next(d, NULL, key, sizeof key), MPX_EINVAL);
  mpx_dict_destroy(d);

  /* workers fill it, from threads then processes */
  for (int procs = 0; procs < (forks ? 2 : 1); procs++) {
    CHECK_OK(mpx_dict_create(&d, 8 * 300, 16, sizeof(long)));
    warg a = {NULL, d, 0, 300};
    run_workers(&a, 8, procs);
    CHECK_OK(mpx_dict_len(d, &n));
    CHECK(n == 8 * 300);
    for (int w = 0; w < 8; w++)
      for (int i = 0; i < 300; i++) {
        char k[32];
        long v;
        snprintf(k, sizeof k, "w%d-k%d", w, i);
        CHECK_OK(mpx_dict_get(d, k, &v, sizeof v, &len));
        CHECK(len == sizeof v && v == (long)w * 100000 + i);
      }
    CHECK_RC(mpx_dict_set(d, "one-more", "x", 1), MPX_EFULL);
    mpx_dict_destroy(d);
  }
}

static void test_bad_input(void) {
  mpx_value *v;
  long x;
  CHECK_RC(mpx_value_create(NULL, 8, NULL, true), MPX_EINVAL);
  CHECK_RC(mpx_value_create(&v, 0, NULL, true), MPX_EINVAL);
  CHECK_RC(mpx_value_get(NULL, &x, 8), MPX_EINVAL);
  CHECK_OK(mpx_value_create(&v, 8, NULL, true));
  CHECK_RC(mpx_value_get(v, NULL, 8), MPX_EINVAL);
  CHECK_RC(mpx_value_ptr(v, NULL), MPX_EINVAL);
  CHECK_RC(mpx_array_get((mpx_array *)v, 0, &x, 8), MPX_EINVAL); /* wrong kind */
  mpx_value_destroy(v);
}

/* The dict against a plain array model: random sets, deletes and lookups over few keys in a small
 * table (long probe runs that wrap around, many tombstones reclaimed), every answer checked. */
static void test_dict_model(void) {
  enum { KEYS = 24, OPS = 200000 };
  mpx_dict *d;
  CHECK_OK(mpx_dict_create(&d, KEYS, 8, sizeof(long))); /* 64 slots for 24 keys */
  long model[KEYS];
  bool has[KEYS] = {false};
  unsigned seed = 12345;
  size_t live = 0;
  for (long op = 0; op < OPS; op++) {
    seed = seed * 1103515245u + 12345u;
    int k = (int)((seed >> 8) % KEYS), what = (int)((seed >> 20) % 3);
    char key[8];
    snprintf(key, sizeof key, "k%d", k);
    if (what == 0) {
      CHECK_OK(mpx_dict_set(d, key, &op, sizeof op));
      live += !has[k];
      has[k] = true;
      model[k] = op;
    } else if (what == 1) {
      CHECK_RC(mpx_dict_delete(d, key), has[k] ? MPX_OK : MPX_ENOTFOUND);
      live -= has[k];
      has[k] = false;
    } else {
      long v = -1;
      size_t len = 0;
      CHECK_RC(mpx_dict_get(d, key, &v, sizeof v, &len), has[k] ? MPX_OK : MPX_ENOTFOUND);
      CHECK(!has[k] || (len == sizeof v && v == model[k]));
    }
    if (op % 1000 == 0) {
      size_t n;
      CHECK_OK(mpx_dict_len(d, &n));
      CHECK(n == live);
    }
  }
  mpx_dict_destroy(d);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  forks = !NO_FORK;
  test_bad_input();
  test_value();
  test_array();
  test_dict();
  test_dict_model();
  printf("ipc_shared_test: ok\n");
  return mpx_finalize();
}
