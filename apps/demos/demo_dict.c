/* demo_dict: worker processes fill a Manager-style shared dict (string keys, byte values), as
 * the multiprocessing docs' Manager().dict() example. The dict's capacity is fixed when it is
 * created, before the workers are forked; each worker writes the squares of its numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpx/mpx.h>

#include "demo_common.h"

enum { WORKERS = 4, PER_WORKER = 25 };

typedef struct job {
  mpx_dict *d;
  int first;
} job;

static int squares(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out, (void)len;
  job j;
  memcpy(&j, arg, sizeof j);
  for (int i = j.first; i < j.first + PER_WORKER; i++) {
    char key[16];
    snprintf(key, sizeof key, "%d", i);
    long sq = (long)i * i;
    int rc = mpx_dict_set(j.d, key, &sq, sizeof sq);
    if (rc) return mpx_task_fail(ctx, rc, "set %s: %s", key, mpx_strerror(rc));
  }
  return 0;
}
MPX_TASK(squares);

int main(int argc, char **argv) {
  int cli =
      demo_no_options(argc, argv, "demo_dict",
                      "worker processes fill a shared mpx dict with squares; checks every entry.");
  if (cli >= 0) return cli;
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_dict *d;
  /* room for every entry; keys up to 15 bytes; values are one long */
  if (mpx_dict_create(&d, WORKERS * PER_WORKER, 15, sizeof(long))) return 1;
  mpx_process *p[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    job j = {d, i * PER_WORKER};
    mpx_process_create(&p[i], "squares", &j, sizeof j, NULL);
    mpx_process_start(p[i]);
  }
  for (int i = 0; i < WORKERS; i++) {
    mpx_process_join(p[i], MPX_FOREVER);
    mpx_process_destroy(p[i]);
  }
  size_t n;
  mpx_dict_len(d, &n);
  char **keys;
  size_t nk;
  int ok = n == WORKERS * PER_WORKER && mpx_dict_keys(d, &keys, &nk) == 0;
  for (size_t i = 0; ok && i < nk; i++) {
    long sq;
    size_t len;
    ok = mpx_dict_get(d, keys[i], &sq, sizeof sq, &len) == 0 && sq == atol(keys[i]) * atol(keys[i]);
  }
  if (ok) mpx_dict_keys_free(keys, nk);
  long v;
  size_t len;
  if (mpx_dict_get(d, "12", &v, sizeof v, &len) == 0) printf("d['12'] = %ld\n", v);
  printf("%zu entries, all squares: %s\n", n, ok ? "yes" : "NO");
  mpx_dict_destroy(d);
  int rc = mpx_finalize();
  return ok && rc == 0 ? 0 : 1;
}
