/* payload_limits.c: the ceilings for moving one big payload on this node with no framework, the
 * yardsticks of mpx-bench payload:
 *   payload_limits MiB [MiB ...]
 * For each size: memcpy between two warm buffers ("limit-memcpy", one process), and the same bytes
 * written through a socketpair to a forked child that reads them all and answers one byte
 * ("limit-socketpair", processes). Best of 3 each. One JSON line per size and peer as mpx-bench
 * --json, plus "size" (bytes) and "gb_s" (1e9 bytes/s). A short read, a failed write or a copy
 * that differs from its source is exit 1. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peer_json.h"

#define USAGE "payload_limits MiB [MiB ...] (1..4096 each)"

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k <= 0) return -1;
    p += k, n -= (size_t)k;
  }
  return 0;
}

static int read_all(int fd, char *p, size_t n) {
  while (n) {
    ssize_t k = read(fd, p, n);
    if (k <= 0) return -1;
    p += k, n -= (size_t)k;
  }
  return 0;
}

static void emit(const char *peer, const char *backend, size_t size, double s) {
  char extra[96];
  snprintf(extra, sizeof extra, "\"size\": %zu, \"gb_s\": %.3f", size, (double)size / s / 1e9);
  peer_emit(peer, backend, "payload", 1, 1, s, extra);
}

int main(int argc, char **argv) {
  if (argc < 2) return fprintf(stderr, "usage: %s\n", USAGE), 2;
  size_t max = 0;
  for (int i = 1; i < argc; i++) {
    long mib = peer_arg(argc, argv, i, USAGE);
    if (mib > 4096) return fprintf(stderr, "usage: %s\n", USAGE), 2;
    if ((size_t)mib << 20 > max) max = (size_t)mib << 20;
  }
  char *src = malloc(max), *dst = malloc(max);
  if (!src || !dst) return fprintf(stderr, "payload_limits: out of memory\n"), 1;
  for (size_t i = 0; i < max; i++) src[i] = (char)(i * 7);
  memset(dst, 0, max);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return perror("payload_limits: socketpair"), 1;
  pid_t pid = fork();
  if (pid < 0) return perror("payload_limits: fork"), 1;
  if (pid == 0) { /* read each announced size into dst, answer one byte */
    size_t want;
    close(sv[0]);
    while (read_all(sv[1], (char *)&want, sizeof want) == 0)
      if (want > max || read_all(sv[1], dst, want) || write(sv[1], "k", 1) != 1) _exit(1);
    _exit(0);
  }
  close(sv[1]);
  for (int i = 1; i < argc; i++) {
    size_t n = (size_t)atol(argv[i]) << 20;
    double mc = 1e30, sp = 1e30;
    for (int rep = 0; rep < 3; rep++) {
      double t = peer_now();
      memcpy(dst, src, n);
      t = peer_now() - t;
      if (memcmp(dst, src, n)) return fprintf(stderr, "payload_limits: bad copy\n"), 1;
      if (t < mc) mc = t;
      char ack;
      t = peer_now();
      if (write_all(sv[0], (const char *)&n, sizeof n) || write_all(sv[0], src, n) ||
          read(sv[0], &ack, 1) != 1)
        return fprintf(stderr, "payload_limits: socketpair transfer failed\n"), 1;
      t = peer_now() - t;
      if (t < sp) sp = t;
    }
    emit("limit-memcpy", "threads", n, mc);
    emit("limit-socketpair", "processes", n, sp);
  }
  close(sv[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  free(src), free(dst);
  return WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : 1;
}
