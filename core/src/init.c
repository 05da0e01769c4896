/* init.c: mpx_init and mpx_finalize, and what AUTO picks from what they found (registry.h).
 *
 * mpx_init walks mpx__transports in order and calls each init hook with one context; it names no
 * transport. A transport may claim the job (MPX_BACKEND_AUTO then picks it) or make this process
 * a worker that already served (the walk stops; mpx_init returns MPX_WORKER). If an init fails,
 * the hooks that ran are undone in reverse order and mpx_init returns its code. mpx_finalize calls
 * fini in reverse order for every transport whose init ran.
 *
 * Call them from main's thread: mpx_init before any other thread starts (the process transport
 * forks its fork server there, and MPI must be initialised by the thread that will finalise it).
 * Idempotent; not meant to race with itself. The lookups read state mpx_init wrote before any
 * executor existed, so any thread may call them afterwards. */
#include "mpx/mpx.h"
#include "os/reaper.h"
#include "os/share.h"
#include "registry.h"

static struct {
  bool done;
  int inited; /* transports whose init ran, a prefix of mpx__transports */
  mpx__init_ctx ctx;
} state;

const char *mpx_version(void) { return MPX_VERSION_STRING; }

static int fini_from(int n) {
  int rc = MPX_OK;
  for (int i = n - 1; i >= 0; i--) {
    const mpx__transport *t = mpx__transports[i];
    int r = t->fini ? t->fini(&state.ctx) : MPX_OK;
    if (r && !rc) rc = r;
  }
  return rc;
}

int mpx_init(int *argc, char ***argv) {
  if (state.done) return state.ctx.role;
  /* Before any transport forks (the fork server): every pool worker inherits the arena where
   * shared objects made from now on go, and gets them from us on first use (os/share.h). */
  mpx__share_init();
  state.ctx = (mpx__init_ctx){.argc = argc, .argv = argv, .role = MPX_MAIN};
  state.inited = 0;
  for (int i = 0; mpx__transports[i] && state.ctx.role == MPX_MAIN; i++) {
    const mpx__transport *t = mpx__transports[i];
    int rc = t->init ? t->init(&state.ctx) : MPX_OK;
    if (rc < 0) {
      fini_from(state.inited);
      state.ctx = (mpx__init_ctx){0};
      return rc;
    }
    state.inited = i + 1;
  }
  state.done = true;
  return state.ctx.role;
}

int mpx_finalize(void) {
  mpx__reaper_wait(); /* executors destroyed from callbacks are gone before MPI is */
  if (!state.done) return MPX_OK;
  int rc = fini_from(state.inited);
  state.done = false;
  state.inited = 0;
  return rc;
}

mpx_backend mpx__transport_auto(void) {
  return state.ctx.claimed ? state.ctx.claimed->backend : MPX_BACKEND_THREADS;
}
