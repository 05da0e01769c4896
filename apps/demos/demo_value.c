/* demo_value: a counter shared through an mpx Value with a lock, incremented by several
 * processes. Each increment is a read-modify-write under the value's lock (Python's
 * `with v.get_lock(): v.value += 1`); without the lock, increments would be lost. */
#include <stdio.h>
#include <string.h>

#include <mpx/mpx.h>

#include "demo_common.h"

enum { WORKERS = 4, INCREMENTS = 10000 };

static int add(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out, (void)len;
  mpx_value *v;
  memcpy(&v, arg, sizeof v); /* the handle: a shared mapping, valid in the child */
  for (int i = 0; i < INCREMENTS; i++) {
    int rc = mpx_value_lock(v, MPX_FOREVER); /* MPX_EOWNERDEAD would also mean "held" */
    if (rc && rc != MPX_EOWNERDEAD) return mpx_task_fail(ctx, rc, "lock: %s", mpx_strerror(rc));
    long *counter;
    mpx_value_ptr(v, (void **)&counter);
    (*counter)++;
    mpx_value_unlock(v);
  }
  return 0;
}
MPX_TASK(add);

int main(int argc, char **argv) {
  int cli =
      demo_no_options(argc, argv, "demo_value",
                      "4 processes increment a shared mpx Value under its lock; checks the count.");
  if (cli >= 0) return cli;
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_value *v;
  long zero = 0;
  if (mpx_value_create(&v, sizeof(long), &zero, true)) return 1;
  mpx_process *p[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    mpx_process_create(&p[i], "add", &v, sizeof v, NULL);
    mpx_process_start(p[i]);
  }
  for (int i = 0; i < WORKERS; i++) {
    mpx_process_join(p[i], MPX_FOREVER);
    mpx_process_destroy(p[i]);
  }
  long total;
  mpx_value_get(v, &total, sizeof total);
  printf("counter = %ld (expected %d)\n", total, WORKERS * INCREMENTS);
  mpx_value_destroy(v);
  int rc = mpx_finalize();
  return total == WORKERS * INCREMENTS && rc == 0 ? 0 : 1;
}
