/* consumer: a short mpx program built against an installed mpx by install_test.sh (CMake and
 * pkg-config, shared and static); README's own program is extracted from README.md there. */
#include <mpx/mpx.h>
#include <stdio.h>
#include <string.h>

static int square(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  if (len != sizeof(long)) return mpx_task_fail(ctx, MPX_EINVAL, "want one long, got %zu bytes", len);
  long x;
  memcpy(&x, arg, sizeof x);
  long y = x * x;
  return mpx_buf_set(out, &y, sizeof y);
}
MPX_TASK(square)

int main(int argc, char **argv) {
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_executor *ex;
  int rc = mpx_executor_create(&ex, NULL);
  if (rc) {
    fprintf(stderr, "%s: %s\n", mpx_strerror(rc), mpx_errmsg());
    return 1;
  }
  long xs[100], ys[100];
  for (int i = 0; i < 100; i++) xs[i] = i;
  rc = mpx_map(ex, "square", xs, sizeof xs[0], 100, ys, sizeof ys[0], NULL);
  mpx_executor_destroy(ex);
  if (rc || ys[99] != 99 * 99) return 1;
  printf("consumer (%s): ok\n", mpx_version());
  return mpx_finalize();
}
