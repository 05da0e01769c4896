/* ipc_list_test: the shared list (Manager().list(), issue 10): refusals first (bad limits, an
 * index out of range named in mpx_errmsg, full, too long, a buffer too small), then Python's
 * list semantics (append, insert, negative indices, set, pop), then the same list used by a
 * forked child, and a child killed while it holds the list's lock (the next caller repairs). */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mpx/mpx.h>

#include "check.h"

static void expect(mpx_list *l, const char *const *want, size_t n) {
  size_t len;
  CHECK_OK(mpx_list_len(l, &len));
  CHECK(len == n);
  for (size_t i = 0; i < n; i++) {
    char buf[64];
    size_t k;
    CHECK_OK(mpx_list_get(l, (ssize_t)i, buf, sizeof buf, &k));
    CHECK(k == strlen(want[i]) && !memcmp(buf, want[i], k));
  }
}

int main(void) {
  mpx_list *l;
  CHECK_RC(mpx_list_create(&l, 0, 8), MPX_EINVAL);
  CHECK_RC(mpx_list_create(NULL, 4, 8), MPX_EINVAL);
  CHECK_OK(mpx_list_create(&l, 4, 8));
  char buf[16];
  size_t n;
  CHECK_RC(mpx_list_get(l, 0, buf, sizeof buf, &n), MPX_EINVAL);
  CHECK(strstr(mpx_errmsg(), "index 0") && strstr(mpx_errmsg(), "0 items"));
  CHECK_RC(mpx_list_pop(l, -1, NULL, 0, NULL), MPX_EINVAL);
  CHECK_RC(mpx_list_append(l, "123456789", 9), MPX_ETOOBIG);
  CHECK(strstr(mpx_errmsg(), "max_item"));
  CHECK_RC(mpx_list_append(l, NULL, 3), MPX_EINVAL);
  CHECK_OK(mpx_list_append(l, "b", 1));
  CHECK_OK(mpx_list_append(l, "d", 1));
  CHECK_OK(mpx_list_insert(l, 0, "a", 1));
  CHECK_OK(mpx_list_insert(l, -1, "c", 1));
  expect(l, (const char *[]){"a", "b", "c", "d"}, 4);
  CHECK_RC(mpx_list_append(l, "e", 1), MPX_EFULL);
  CHECK_RC(mpx_list_get(l, 4, buf, sizeof buf, &n), MPX_EINVAL);
  CHECK_RC(mpx_list_get(l, -5, buf, sizeof buf, &n), MPX_EINVAL);
  CHECK_OK(mpx_list_set(l, -1, "dddd", 4));
  CHECK_RC(mpx_list_get(l, -1, buf, 2, &n), MPX_ETOOBIG);
  CHECK(n == 4);
  CHECK_OK(mpx_list_pop(l, 1, buf, sizeof buf, &n));
  CHECK(n == 1 && buf[0] == 'b');
  expect(l, (const char *[]){"a", "c", "dddd"}, 3);
  CHECK_OK(mpx_list_set(l, 0, "A", 1));
  CHECK_OK(mpx_list_insert(l, 100, "z", 1)); /* past the end appends, as list.insert */
  expect(l, (const char *[]){"A", "c", "dddd", "z"}, 4);
  CHECK_OK(mpx_list_clear(l));
  expect(l, NULL, 0);
  if (!NO_FORK) {
    /* a child appends; the parent sees its items */
    pid_t p = fork();
    if (p == 0) {
      for (int i = 0; i < 3; i++) {
        char s[8];
        snprintf(s, sizeof s, "c%d", i);
        if (mpx_list_append(l, s, strlen(s))) _exit(1);
      }
      _exit(0);
    }
    int st;
    CHECK(waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    expect(l, (const char *[]){"c0", "c1", "c2"}, 3);
    /* a child killed in the middle of inserts and pops: the list stays a list of whole items */
    p = fork();
    if (p == 0) {
      for (;;) {
        (void)mpx_list_insert(l, 0, "x", 1);
        (void)mpx_list_pop(l, 0, NULL, 0, NULL);
      }
    }
    usleep(20000);
    kill(p, SIGKILL);
    CHECK(waitpid(p, &st, 0) == p);
    CHECK_OK(mpx_list_len(l, &n));
    CHECK(n == 3 || n == 4);
    if (n == 4) {
      CHECK_OK(mpx_list_pop(l, 0, buf, sizeof buf, &n));
      CHECK(n == 1 && buf[0] == 'x');
    }
    expect(l, (const char *[]){"c0", "c1", "c2"}, 3);
  }
  CHECK_OK(mpx_list_destroy(l));
  fprintf(stderr, "ipc_list_test: all passed\n");
  return 0;
}
