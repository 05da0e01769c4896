/* pingpong.c: the seeds' context-switch test. Two workers pass a token back and forth
 * a->tasks times over two mpx queues (ping: A -> B, pong: B -> A), once as two threads of this
 * process and once as two processes (the echo side forked through mpx_process). One round trip =
 * two puts and two gets; the figure to compare is round trips per second. With --binding, the
 * two sides are bound to the first two places of that binding (hwloc), as an executor's workers
 * would be: on a 2-CPU machine, whether the scheduler happens to put both on one CPU (every hand
 * over a context switch) or on two (both spin) is otherwise what the figure measures. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "mpx/ipc_process.h"
#include "mpx/ipc_queue.h"
#include "mpx/topology.h"

typedef struct echo_arg {
  mpx_queue *in, *out; /* shared mappings made before fork: valid in the child as in the parent */
  long n;
  mpx_binding binding;
} echo_arg;

/* Bind the calling side (0: driver, 1: echo) per `binding`; a thread, or the whole process. */
static int bind_side(mpx_binding binding, int side, bool process) {
  if (binding == MPX_BIND_NONE) return MPX_OK;
  const mpx_topology *t;
  mpx_placement place[2];
  int rc = mpx_topology_get(&t);
  if (!rc) rc = mpx_topology_place(t, binding, 2, place);
  if (!rc)
    rc = process ? mpx_topology_bind_process(&place[side]) : mpx_topology_bind_thread(&place[side]);
  if (rc) fprintf(stderr, "pingpong: cannot bind side %d: %s\n", side, mpx_strerror(rc));
  return rc;
}

/* The B side: take each token and send it back incremented. */
static int echo_loop(const echo_arg *e) {
  for (long i = 0; i < e->n; i++) {
    long tok;
    size_t len;
    int rc = mpx_queue_get(e->in, &tok, sizeof tok, &len, true, MPX_FOREVER);
    if (rc) return rc;
    tok++;
    if ((rc = mpx_queue_put(e->out, &tok, sizeof tok, true, MPX_FOREVER))) return rc;
  }
  return 0;
}

static int pingpong_echo(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out;
  if (len != sizeof(echo_arg)) return mpx_task_fail(ctx, MPX_EINVAL, "bad echo argument");
  echo_arg e;
  memcpy(&e, arg, sizeof e);
  int rc = bind_side(e.binding, 1, true);
  return rc ? rc : echo_loop(&e);
}
MPX_TASK(pingpong_echo);

static void *echo_thread(void *p) {
  const echo_arg *e = p;
  int rc = bind_side(e->binding, 1, false);
  return (void *)(long)(rc ? rc : echo_loop(e));
}

/* The A side: returns seconds for n round trips, or a negative value on error. */
static double drive(mpx_queue *ping, mpx_queue *pong, long n) {
  double t0 = bench_now();
  long tok = 0;
  for (long i = 0; i < n; i++) {
    size_t len;
    if (mpx_queue_put(ping, &tok, sizeof tok, true, MPX_FOREVER)) return -1;
    if (mpx_queue_get(pong, &tok, sizeof tok, &len, true, MPX_FOREVER)) return -1;
  }
  double secs = bench_now() - t0;
  return tok == n ? secs : -1;
}

int bench_pingpong(const bench_args *a) {
  long n = a->tasks > 0 ? a->tasks : 100000;
  mpx_queue *ping = NULL, *pong = NULL;
  if (mpx_queue_create(&ping, 0, 4096) || mpx_queue_create(&pong, 0, 4096)) {
    fprintf(stderr, "pingpong: cannot create queues\n");
    mpx_queue_destroy(ping);
    return 1;
  }
  int status = 0;
  echo_arg e = {.in = ping, .out = pong, .n = n, .binding = a->binding};
  if (bind_side(a->binding, 0, false)) status = 1;

  /* two threads */
  pthread_t th;
  if (pthread_create(&th, NULL, echo_thread, &e) == 0) {
    double s = drive(ping, pong, n);
    void *ret;
    pthread_join(th, &ret);
    if (s < 0 || ret) {
      fprintf(stderr, "pingpong: thread run failed\n");
      status = 1;
    } else {
      bench_emit(a, "threads", "pingpong", 2, n, s, NULL);
    }
  } else {
    status = 1;
  }

  /* two processes */
  mpx_process *p = NULL;
  int rc = mpx_process_create(&p, "pingpong_echo", &e, sizeof e, "pingpong-echo");
  if (!rc) rc = mpx_process_start(p);
  if (rc) {
    fprintf(stderr, "pingpong: cannot start the echo process: %s\n", mpx_strerror(rc));
    status = 1;
  } else {
    double s = drive(ping, pong, n);
    int code = -1;
    mpx_process_join(p, MPX_FOREVER);
    mpx_process_exitcode(p, &code);
    if (s < 0 || code != 0) {
      fprintf(stderr, "pingpong: process run failed (exit code %d)\n", code);
      status = 1;
    } else {
      bench_emit(a, "processes", "pingpong", 2, n, s, NULL);
    }
  }
  mpx_process_destroy(p);
  mpx_queue_destroy(ping);
  mpx_queue_destroy(pong);
  return status;
}
