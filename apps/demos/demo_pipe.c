/* demo_pipe: two processes talking over an mpx pipe, as multiprocessing.Pipe. The child answers
 * each question with its length; the parent closes its end when done and the child sees
 * end-of-file (Python's EOFError) and exits. */
#include <stdio.h>
#include <string.h>

#include <mpx/mpx.h>

#include "demo_common.h"

typedef struct ends {
  mpx_pipe *mine, *theirs; /* the child's end, and the parent's (which the child closes) */
} ends;

/* The child: answer until EOF. */
static int answer(mpx_task_ctx *ctx, const void *arg, size_t len, mpx_buf *out) {
  (void)out, (void)len;
  ends e;
  memcpy(&e, arg, sizeof e);
  mpx_pipe_destroy(e.theirs); /* our copy of the parent's end: closing it lets EOF happen */
  for (;;) {
    char q[256];
    size_t n;
    int rc = mpx_pipe_recv_bytes(e.mine, q, sizeof q - 1, &n, MPX_FOREVER);
    if (rc == MPX_EEOF) break; /* the parent is done */
    if (rc) return mpx_task_fail(ctx, rc, "recv: %s", mpx_strerror(rc));
    q[n] = '\0';
    char a[300];
    int m = snprintf(a, sizeof a, "'%s' has %zu letters", q, n);
    if ((rc = mpx_pipe_send_bytes(e.mine, a, (size_t)m))) return mpx_task_fail(ctx, rc, "send");
  }
  mpx_pipe_destroy(e.mine);
  return 0;
}
MPX_TASK(answer);

int main(int argc, char **argv) {
  int cli = demo_no_options(
      argc, argv, "demo_pipe",
      "a parent and a child process talking over a duplex mpx pipe until end-of-file.");
  if (cli >= 0) return cli;
  if (mpx_init(&argc, &argv) == MPX_WORKER) return 0;
  mpx_pipe *parent_end, *child_end;
  if (mpx_pipe_create(&parent_end, &child_end, true)) return 1; /* duplex */
  ends e = {child_end, parent_end};
  mpx_process *p;
  mpx_process_create(&p, "answer", &e, sizeof e, "answerer");
  mpx_process_start(p);
  mpx_pipe_destroy(child_end); /* the parent keeps only its own end */

  const char *questions[] = {"hello", "multiprocessing", "pipe"};
  int ok = 1;
  for (int i = 0; i < 3; i++) {
    mpx_pipe_send_bytes(parent_end, questions[i], strlen(questions[i]));
    char reply[300];
    size_t n;
    if (mpx_pipe_recv_bytes(parent_end, reply, sizeof reply - 1, &n, 10) != 0) {
      ok = 0;
      break;
    }
    reply[n] = '\0';
    printf("child says: %s\n", reply);
  }
  mpx_pipe_destroy(parent_end); /* EOF for the child */
  int code = -1;
  mpx_process_join(p, 10);
  mpx_process_exitcode(p, &code);
  printf("child exit code %d\n", code);
  mpx_process_destroy(p);
  int rc = mpx_finalize();
  return ok && code == 0 && rc == 0 ? 0 : 1;
}
