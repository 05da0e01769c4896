/* task_test: the task registry (names, ids, duplicates, bad input), the result buffer helpers,
 * mpx__task_run's failure paths, and the error list (every code has a name and a message). */
#include <string.h>

#include <mpx/mpx.h>

#include "check.h"
#include "task_impl.h"

static int ok_task(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx;
  CHECK(mpx_task_worker(ctx) == 3);
  return mpx_buf_set(out, arg, len);
}
MPX_TASK(ok_task)

static int positive_rc(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  return 5; /* a bug in the task: positive is not a code */
}
MPX_TASK(positive_rc)

static int fail_then_zero(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)arg, (void)len, (void)out;
  mpx_task_fail(ctx, MPX_ESIZE, "first %s", "message");
  mpx_task_fail(ctx, 0, "second %d", 2); /* 0 is not a code: becomes MPX_ETASK */
  return 0; /* failed, yet returned 0: still a failure */
}
MPX_TASK(fail_then_zero)

static int silent_fail(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)ctx, (void)arg, (void)len, (void)out;
  return MPX_ENOMEM;
}
MPX_TASK_NAMED(silent_fail, "a.b/c-d silent")

static void test_registry(void) {
  const mpx_task *t, *u;
  CHECK_OK(mpx_task_find("ok_task", &t));
  CHECK(t->fn == ok_task && !strcmp(t->name, "ok_task") && t->id == mpx__task_hash("ok_task"));
  CHECK_OK(mpx_task_find_id(t->id, &u));
  CHECK(u == t);
  CHECK_OK(mpx_task_find("a.b/c-d silent", &t)); /* any name up to MPX_TASK_NAME_MAX */
  CHECK_RC(mpx_task_find("missing", &t), MPX_ENOTASK);
  CHECK(t == NULL);
  CHECK_RC(mpx_task_find_id(12345, &t), MPX_ENOTASK);
  CHECK_RC(mpx_task_find(NULL, &t), MPX_EINVAL);
  CHECK_RC(mpx_task_find("ok_task", NULL), MPX_EINVAL);
  CHECK_RC(mpx_task_register("ok_task", silent_fail), MPX_EEXIST);
  CHECK_RC(mpx_task_register(NULL, silent_fail), MPX_EINVAL);
  CHECK_RC(mpx_task_register("", silent_fail), MPX_EINVAL);
  CHECK_RC(mpx_task_register("x", NULL), MPX_EINVAL);
  char longname[MPX_TASK_NAME_MAX + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK_RC(mpx_task_register(longname, silent_fail), MPX_EINVAL);
  CHECK_RC(mpx_task_find(longname, &t), MPX_ENOTASK);
  longname[MPX_TASK_NAME_MAX] = 0;
  CHECK_OK(mpx_task_register(longname, silent_fail)); /* exactly the maximum is fine */
  CHECK_OK(mpx_task_find(longname, &t));
  /* late registration works and is found by id */
  CHECK_OK(mpx_task_register("late", ok_task));
  CHECK_OK(mpx_task_find_id(mpx__task_hash("late"), &t));
  CHECK(t->fn == ok_task);
}

static void test_run(void) {
  const mpx_task *t;
  unsigned char small[4];
  mpx_buf out;
  char *msg = NULL;
  CHECK_OK(mpx_task_find("ok_task", &t));
  mpx__buf_init(&out, small, sizeof small, 0);
  CHECK_OK(mpx__task_run(t, 3, "hi", 2, &out, &msg));
  CHECK(out.len == 2 && !out.heap && !memcmp(out.data, "hi", 2));
  CHECK_OK(mpx__task_run(t, 3, "longer than four", 16, &out, &msg)); /* grows to the heap */
  CHECK(out.len == 16 && out.heap && !memcmp(out.data, "longer than four", 16));
  mpx__buf_release(&out);

  CHECK_OK(mpx_task_find("positive_rc", &t));
  CHECK_RC(mpx__task_run(t, 0, NULL, 0, &out, &msg), MPX_ETASK);
  CHECK(msg && strstr(msg, "positive_rc"));
  free(msg);
  CHECK_OK(mpx_task_find("fail_then_zero", &t));
  CHECK_RC(mpx__task_run(t, 0, NULL, 0, &out, &msg), MPX_ETASK);
  CHECK(msg && !strcmp(msg, "second 2"));
  free(msg);
  CHECK_OK(mpx_task_find("a.b/c-d silent", &t));
  CHECK_RC(mpx__task_run(t, 0, NULL, 0, &out, &msg), MPX_ENOMEM);
  CHECK(msg && strstr(msg, mpx_strerror(MPX_ENOMEM))); /* a default message names the code */
  free(msg);

  /* the buffer helpers */
  void *p;
  size_t len;
  mpx__buf_init(&out, small, sizeof small, 8);
  CHECK_RC(mpx_buf_set(&out, "123456789", 9), MPX_ETOOBIG); /* over its maximum */
  CHECK_RC(mpx_buf_set(&out, NULL, 3), MPX_EINVAL);
  CHECK_RC(mpx_buf_set(NULL, "a", 1), MPX_EINVAL);
  CHECK_OK(mpx_buf_set(&out, NULL, 0));
  CHECK_OK(mpx_buf_reserve(&out, 8, &p));
  memcpy(p, "abcdefgh", 8);
  CHECK_OK(mpx_buf_get(&out, &p, &len));
  CHECK(len == 8 && !memcmp(p, "abcdefgh", 8));
  CHECK_RC(mpx_buf_get(NULL, &p, &len), MPX_EINVAL);
  mpx__buf_release(&out);
  CHECK_RC(mpx_task_fail(NULL, MPX_EINVAL, "x"), MPX_EINVAL);
}

static void test_errors(void) {
#define CHECK_ONE(name, value, msg)                                                                \
  CHECK(!strcmp(mpx_err_name(value), "MPX_" #name) && !strcmp(mpx_strerror(value), msg));
  MPX_ERROR_LIST(CHECK_ONE)
#undef CHECK_ONE
  CHECK(!strcmp(mpx_err_name(-9999), "MPX_UNKNOWN"));
  CHECK(!strcmp(mpx_strerror(12345), "unknown mpx error"));
  CHECK(mpx_errmsg() != NULL);
  CHECK(strcmp(mpx_version(), MPX_VERSION_STRING) == 0);
}

int main(void) {
  RUN(test_registry);
  RUN(test_run);
  RUN(test_errors);
  fprintf(stderr, "task_test: all passed\n");
  return 0;
}
