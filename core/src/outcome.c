/* outcome.c: done-callbacks that are handed the future's outcome (mpx_future_add_outcome_callback),
 * so that a callback does not repeat the result/exception split.
 *
 * Built on mpx_future_add_done_callback: a small heap node carries the user's function and
 * argument to a trampoline, which reads the outcome of the (done) future without waiting and
 * frees the node. Guarantees are those of done-callbacks (future.h): exactly once, in the order
 * added, never under an mpx lock, the future valid inside the callback. No lock of its own. */
#include <stdlib.h>

#include "errmsg.h"
#include "mpx/future.h"

typedef struct outcome_node {
  mpx_outcome_fn fn;
  void *arg;
} outcome_node;

static int trampoline(mpx_future *f, void *p) {
  outcome_node n = *(outcome_node *)p;
  free(p);
  int code = 0;
  const char *msg = "";
  const void *data = NULL;
  size_t len = 0;
  int rc = mpx_future_exception(f, 0, &code, &msg);
  if (rc == MPX_ECANCELLED) {
    code = MPX_ECANCELLED;
    msg = mpx_strerror(code);
  } else if (rc) {
    code = rc;
    msg = mpx_strerror(rc);
  } else if (code == 0) {
    (void)mpx_future_result(f, 0, &data, &len);
  }
  return n.fn(f, code, data, len, msg, n.arg);
}

int mpx_future_add_outcome_callback(mpx_future *f, mpx_outcome_fn fn, void *arg) {
  if (!fn) {
    mpx__set_errmsg("mpx_future_add_outcome_callback: the callback is NULL");
    return MPX_EINVAL;
  }
  outcome_node *n = malloc(sizeof *n);
  if (!n) return MPX_ENOMEM;
  *n = (outcome_node){.fn = fn, .arg = arg};
  int rc = mpx_future_add_done_callback(f, trampoline, n);
  /* refused before it was added (bad handle, no memory): the node is still ours. A callback that
   * ran at once and failed (MPX_ECALLBACK) freed it. */
  if (rc && rc != MPX_ECALLBACK) free(n);
  return rc;
}
