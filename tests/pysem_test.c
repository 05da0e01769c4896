/* pysem_test: the Python semantics of issue 10 on one backend (argv[1]: threads, processes or mpi,
 * the last under mpirun -np 3): arguments copied at submit (a buffer reused after submit),
 * borrow as an explicit opt-in, the variable-size map over strings (empty and 1 MiB items),
 * imap in order and imap_unordered complete with a failing item, map_async, fire-and-forget
 * submit, errors that name the unknown task and the worker, and the outcome callback.
 * Failure paths first. No timing is asserted. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

/* the argument's bytes back */
static int echo(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  return mpx_buf_set(out, arg, len);
}
MPX_TASK(echo)

/* fails on an argument that starts with "bad" */
static int picky(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len >= 3 && !memcmp(arg, "bad", 3)) return mpx_task_fail(ctx, MPX_EINVAL, "picky: bad item");
  uint64_t n = len, h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ ((const unsigned char *)arg)[i]) * 1099511628211ull;
  uint64_t r[2] = {n, h};
  return mpx_buf_set(out, r, sizeof r);
}
MPX_TASK(picky)

/* processes: the worker dies on "die" */
static int mortal(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  if (len == 3 && !memcmp(arg, "die", 3)) _exit(3);
  return mpx_buf_set(out, arg, len);
}
MPX_TASK(mortal)

/* long: x -> x * 3, fails on 13 */
static int triple(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  long x;
  if (len != sizeof x) return mpx_task_fail(ctx, MPX_EINVAL, "want a long");
  memcpy(&x, arg, sizeof x);
  if (x == 13) return mpx_task_fail(ctx, MPX_EINVAL, "13 is unlucky");
  x *= 3;
  return mpx_buf_set(out, &x, sizeof x);
}
MPX_TASK(triple)

static void test_errors(mpx_executor *ex) {
  mpx_future *f;
  CHECK_RC(mpx_submit(ex, "no_such_taks", "x", 1, &f), MPX_ENOTASK);
  CHECK(strstr(mpx_errmsg(), "no_such_taks") != NULL);
  CHECK(f == NULL);
  CHECK_RC(mpx_submit(ex, "echo", NULL, 5, &f), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "arg") != NULL);
  mpx_imap_iter *it;
  CHECK_RC(mpx_imap_var(ex, "nope", (mpx_bytes[]){{"a", 1}}, 1, NULL, &it), MPX_ENOTASK);
  CHECK(strstr(mpx_errmsg(), "nope") != NULL);
  CHECK_RC(mpx_imap_var(ex, "echo", (mpx_bytes[]){{"a", 1}, {NULL, 3}}, 2, NULL, &it), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "item 1") != NULL);
  mpx_results *r;
  CHECK_RC(mpx_map_var(ex, "echo", NULL, 3, NULL, &r), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "items is NULL"));
  CHECK_RC(mpx_map(ex, "echo", "abcd", 2, 2, NULL, 1, NULL), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "results is NULL"));
  /* a task error names the worker, on every backend */
  long x = 13;
  CHECK_OK(mpx_submit(ex, "triple", &x, sizeof x, &f));
  int code;
  const char *msg;
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, &msg));
  CHECK(code == MPX_EINVAL);
  CHECK(strstr(msg, "13 is unlucky") && strstr(msg, "worker "));
  mpx_future_release(f);
}

/* 1: a buffer reused after submit: each task sees what was in it at its submit */
static void test_copy(mpx_executor *ex) {
  enum { N = 200 };
  mpx_future *fs[N];
  char buf[64];
  for (int i = 0; i < N; i++) {
    snprintf(buf, sizeof buf, "/data/some/longer/directory/file-%04d.txt", i);
    CHECK(strlen(buf) > MPX_INLINE_ARG);
    CHECK_OK(mpx_submit(ex, "echo", buf, strlen(buf) + 1, &fs[i]));
  }
  memset(buf, 'Z', sizeof buf);
  for (int i = 0; i < N; i++) {
    const void *p;
    size_t n;
    CHECK_OK(mpx_future_result(fs[i], MPX_FOREVER, &p, &n));
    char want[64];
    snprintf(want, sizeof want, "/data/some/longer/directory/file-%04d.txt", i);
    if (strcmp(p, want)) {
      fprintf(stderr, "task %d saw '%s', submitted '%s'\n", i, (const char *)p, want);
      exit(1);
    }
    mpx_future_release(fs[i]);
  }
  /* borrow: explicit zero copy, the caller keeps the bytes (still correct when kept) */
  char big[100];
  memset(big, 'b', sizeof big);
  const mpx_task *t;
  CHECK_OK(mpx_task_find("echo", &t));
  mpx_future *f;
  CHECK_OK(mpx_submit_task(ex, t, big, sizeof big,
                           &(mpx_submit_opts){.retries = -1, .borrow = true}, &f));
  char back[100];
  CHECK_OK(mpx_future_result_copy(f, back, sizeof back, MPX_FOREVER));
  CHECK(!memcmp(back, big, sizeof big));
  mpx_future_release(f);
  /* fire and forget: out NULL is accepted */
  CHECK_OK(mpx_submit(ex, "echo", buf, sizeof buf, NULL));
}

/* 2: the variable-size map over strings, with an empty and a 1 MiB item */
static void test_map_var(mpx_executor *ex) {
  enum { N = 1000 };
  static char store[N][40];
  mpx_bytes items[N + 2];
  for (int i = 0; i < N; i++) {
    int k = snprintf(store[i], sizeof store[i], "item-%d-%.*s", i, i % 20, "xxxxxxxxxxxxxxxxxxxx");
    items[i] = (mpx_bytes){store[i], (size_t)k};
  }
  size_t mib = (size_t)1 << 20;
  char *huge = malloc(mib);
  CHECK(huge);
  for (size_t i = 0; i < mib; i++) huge[i] = (char)(i * 7);
  items[N] = (mpx_bytes){NULL, 0};
  items[N + 1] = (mpx_bytes){huge, mib};
  mpx_results *r;
  CHECK_OK(mpx_map_var(ex, "echo", items, N + 2, NULL, &r));
  CHECK(mpx_results_count(r) == N + 2);
  for (int i = 0; i < N + 2; i++) {
    const void *p;
    size_t n;
    CHECK_OK(mpx_results_get(r, (size_t)i, &p, &n, NULL));
    CHECK(n == items[i].len);
    CHECK(n == 0 || !memcmp(p, items[i].data, n));
  }
  CHECK_RC(mpx_results_get(r, N + 2, NULL, NULL, NULL), MPX_EINVAL);
  mpx_results_free(r);
  /* a failing item: its own outcome; the others have theirs */
  items[7] = (mpx_bytes){"bad one", 7};
  mpx_map_status st;
  CHECK_RC(mpx_map_var(ex, "picky", items, N, &(mpx_map_opts){.chunksize = 16, .status = &st}, &r),
           MPX_EINVAL);
  CHECK(st.failed_index == 7 && st.code == MPX_EINVAL);
  CHECK(strstr(st.message, "picky: bad item") && strstr(st.message, "worker"));
  for (int i = 0; i < N; i++) {
    const void *p;
    size_t n;
    const char *m;
    int c = mpx_results_get(r, (size_t)i, &p, &n, &m);
    if (i == 7) {
      CHECK(c == MPX_EINVAL && strstr(m, "item 7"));
      continue;
    }
    CHECK_OK(c);
    uint64_t res[2];
    CHECK(n == sizeof res);
    memcpy(res, p, n);
    CHECK(res[0] == items[i].len);
  }
  mpx_results_free(r);
  /* the same as a future */
  mpx_future *f;
  CHECK_RC(mpx_map_var_async(ex, "nope", items, N, NULL, &f), MPX_ENOTASK);
  CHECK_OK(mpx_map_var_async(ex, "picky", items, N, NULL, &f));
  CHECK_OK(mpx_future_result_copy(f, &r, sizeof r, MPX_FOREVER));
  mpx_future_release(f);
  CHECK(mpx_results_count(r) == N);
  CHECK(mpx_results_get(r, 7, NULL, NULL, NULL) == MPX_EINVAL);
  CHECK_OK(mpx_results_get(r, 8, NULL, NULL, NULL));
  mpx_results_free(r);
  /* after shutdown: the future is there, every item says why it did not run */
  mpx_executor *dead;
  CHECK_OK(
      mpx_executor_create(&dead, &(mpx_options){.backend = MPX_BACKEND_THREADS, .workers = 1}));
  CHECK_OK(mpx_executor_shutdown(dead, true, false));
  CHECK_OK(mpx_map_var_async(dead, "echo", items, 100, &(mpx_map_opts){.chunksize = 7}, &f));
  CHECK_OK(mpx_future_result_copy(f, &r, sizeof r, MPX_FOREVER));
  mpx_future_release(f);
  for (size_t i = 0; i < 100; i++) CHECK(mpx_results_get(r, i, NULL, NULL, NULL) == MPX_ESHUTDOWN);
  mpx_results_free(r);
  mpx_executor_destroy(dead);
  free(huge);
}

/* imap in order and imap_unordered, both complete with a failing item */
static void test_imap(mpx_executor *ex) {
  enum { N = 5000 };
  long *xs = malloc(N * sizeof *xs);
  CHECK(xs);
  for (long i = 0; i < N; i++) xs[i] = i;
  for (int unordered = 0; unordered < 2; unordered++) {
    mpx_imap_iter *it;
    CHECK_OK(mpx_imap(
        ex, "triple", xs, sizeof *xs, N,
        &(mpx_imap_opts){.chunksize = 64, .max_inflight = 256, .unordered = unordered}, &it));
    char *seen = calloc(N, 1);
    CHECK(seen);
    size_t got = 0;
    mpx_map_item item;
    int rc;
    while ((rc = mpx_imap_next(it, MPX_FOREVER, &item)) == MPX_OK) {
      CHECK(item.index < N && !seen[item.index]);
      seen[item.index] = 1;
      if (!unordered) CHECK(item.index == got);
      if (item.index == 13) {
        CHECK(item.code == MPX_EINVAL && strstr(item.message, "unlucky"));
      } else {
        long y;
        CHECK_OK(item.code);
        CHECK(item.len == sizeof y);
        memcpy(&y, item.data, sizeof y);
        CHECK(y == 3 * (long)item.index);
      }
      got++;
    }
    CHECK_RC(rc, MPX_EEMPTY);
    CHECK(got == N);
    free(seen);
    CHECK_OK(mpx_imap_destroy(it));
  }
  /* strings, and a stop before the end: destroy cancels the rest */
  mpx_bytes words[3] = {{"alpha", 5}, {"", 0}, {"gamma", 5}};
  mpx_imap_iter *it;
  CHECK_OK(mpx_imap_var(ex, "echo", words, 3, &(mpx_imap_opts){.chunksize = 1}, &it));
  mpx_map_item item;
  for (int i = 0; i < 3; i++) {
    CHECK_OK(mpx_imap_next(it, MPX_FOREVER, &item));
    CHECK(item.index == (size_t)i && item.len == words[i].len);
    CHECK(!item.len || !memcmp(item.data, words[i].data, item.len));
  }
  CHECK_RC(mpx_imap_next(it, 0, &item), MPX_EEMPTY);
  CHECK_OK(mpx_imap_destroy(it));
  /* stopped early: destroy cancels the rest. Repeated: a chunk cancelled while in a worker's
   * window stays there until the dispatcher drops it, after destroy freed the iterator (the
   * dispatcher must not read the freed chunk then: ASan caught it once in 2 runs) */
  for (int round = 0; round < 60; round++) {
    CHECK_OK(mpx_imap(ex, "triple", xs, sizeof *xs, N,
                      &(mpx_imap_opts){.chunksize = 8, .unordered = round & 1}, &it));
    CHECK_OK(mpx_imap_next(it, MPX_FOREVER, &item));
    CHECK_OK(mpx_imap_destroy(it));
  }
  CHECK_RC(mpx_imap_next(NULL, 0, &item), MPX_EINVAL);
  CHECK_OK(mpx_imap(ex, "triple", xs, sizeof *xs, 0, NULL, &it));
  CHECK_RC(mpx_imap_next(it, 0, &item), MPX_EEMPTY); /* an empty map */
  CHECK_OK(mpx_imap_destroy(it));
  free(xs);
}

/* threads: items started (counted in this process) stay within max_inflight of those taken */
static _Atomic long started;
static int count_start(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  atomic_fetch_add(&started, 1);
  return 0;
}
MPX_TASK(count_start)

static void test_imap_bound(mpx_executor *ex) {
  mpx_imap_iter *it;
  CHECK_OK(mpx_imap(ex, "count_start", NULL, 0, 10000,
                    &(mpx_imap_opts){.chunksize = 4, .max_inflight = 16}, &it));
  mpx_map_item item;
  long taken = 0;
  while (mpx_imap_next(it, MPX_FOREVER, &item) == MPX_OK) {
    taken++;
    long s = atomic_load(&started);
    if (s > taken + 16) {
      fprintf(stderr, "%ld items started with %ld taken: over max_inflight\n", s, taken);
      exit(1);
    }
    if (taken % 1000 == 0) usleep(1000); /* a slow consumer */
  }
  CHECK(taken == 10000);
  CHECK_OK(mpx_imap_destroy(it));
}

/* processes: a worker lost in the middle of a chunk fails that chunk's items (each with the loss),
 * and only them; the map goes on */
static void test_lost_chunk(mpx_executor *ex) {
  mpx_bytes items[40];
  for (int i = 0; i < 40; i++) items[i] = (mpx_bytes){i == 21 ? "die" : "live", i == 21 ? 3 : 4};
  mpx_imap_iter *it;
  CHECK_OK(mpx_imap_var(ex, "mortal", items, 40,
                        &(mpx_imap_opts){.chunksize = 10, .unordered = true}, &it));
  mpx_map_item item;
  int ok = 0, lost = 0;
  while (mpx_imap_next(it, MPX_FOREVER, &item) == MPX_OK) {
    if (item.code == 0) {
      CHECK(item.len == 4 && item.index / 10 != 2);
      ok++;
    } else {
      CHECK(item.code == MPX_EWORKER_LOST && item.index / 10 == 2);
      CHECK(strstr(item.message, "pid") && strstr(item.message, "worker"));
      lost++;
    }
  }
  CHECK(ok == 30 && lost == 10);
  CHECK_OK(mpx_imap_destroy(it));
}

static void test_map_async(mpx_executor *ex) {
  enum { N = 3000 };
  long xs[N], ys[N];
  for (long i = 0; i < N; i++) xs[i] = i + 100;
  mpx_future *f;
  CHECK_RC(mpx_map_async(ex, "triple", xs, sizeof *xs, N, ys, sizeof *ys,
                         &(mpx_map_opts){.timeout = 5}, &f),
           MPX_EINVAL);
  CHECK_OK(mpx_map_async(ex, "triple", xs, sizeof *xs, N, ys, sizeof *ys, NULL, &f));
  CHECK_OK(mpx_future_result(f, MPX_FOREVER, NULL, NULL));
  for (long i = 0; i < N; i++) CHECK(ys[i] == 3 * xs[i]);
  mpx_future_release(f);
  xs[2000] = 13;
  CHECK_OK(mpx_map_async(ex, "triple", xs, sizeof *xs, N, ys, sizeof *ys, NULL, &f));
  int code;
  const char *msg;
  CHECK_OK(mpx_future_exception(f, MPX_FOREVER, &code, &msg));
  CHECK(code == MPX_EINVAL && strstr(msg, "item 2000") && strstr(msg, "unlucky"));
  mpx_future_release(f);
}

static _Atomic int outcomes;
static int on_outcome(mpx_future *f, int code, const void *data, size_t len, const char *message,
                      void *arg) {
  (void)f;
  long want = *(long *)arg, y = 0;
  if (want < 0) {
    if (code != MPX_EINVAL || !strstr(message, "unlucky")) return -1;
  } else {
    if (code || len != sizeof y) return -1;
    memcpy(&y, data, sizeof y);
    if (y != want) return -1;
  }
  atomic_fetch_add(&outcomes, 1);
  return 0;
}

static void test_outcome_callback(mpx_executor *ex) {
  long x = 5, want5 = 15, x13 = 13, fail = -1;
  mpx_future *a, *b;
  long before = mpx_future_callback_failures();
  CHECK_OK(mpx_submit(ex, "triple", &x, sizeof x, &a));
  CHECK_OK(mpx_submit(ex, "triple", &x13, sizeof x13, &b));
  CHECK_RC(mpx_future_add_outcome_callback(a, NULL, NULL), MPX_EINVAL);
  CHECK_OK(mpx_future_add_outcome_callback(a, on_outcome, &want5));
  CHECK_OK(mpx_future_add_outcome_callback(b, on_outcome, &fail));
  mpx_wait((mpx_future *[]){a, b}, 2, MPX_ALL_COMPLETED, MPX_FOREVER);
  mpx_future_release(a);
  mpx_future_release(b);
  for (int i = 0; i < 10000 && atomic_load(&outcomes) < 2; i++) usleep(1000);
  CHECK(atomic_load(&outcomes) == 2);
  CHECK(mpx_future_callback_failures() == before);
}

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_backend backend = check_backend(argc, argv);
  if (NO_FORK && backend == MPX_BACKEND_PROCESSES) return 0;
  mpx_executor *ex;
  CHECK_OK(mpx_executor_create(&ex, &(mpx_options){.backend = backend, .workers = 2}));
  test_errors(ex);
  test_copy(ex);
  test_map_var(ex);
  test_imap(ex);
  if (backend == MPX_BACKEND_THREADS) test_imap_bound(ex);
  if (backend == MPX_BACKEND_PROCESSES) test_lost_chunk(ex);
  test_map_async(ex);
  test_outcome_callback(ex);
  CHECK_OK(mpx_executor_destroy(ex));
  CHECK_OK(mpx_finalize());
  fprintf(stderr, "pysem_test %s: all passed\n", mpx_backend_name(backend));
  return 0;
}
