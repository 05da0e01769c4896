/* output.c: where the output of mpx-farm's tasks goes.
 *
 *  - grouped (default): the worker captures a task's stdout and stderr through pipes and returns
 *    them with the result; the coordinator, the only writer of the farm's own stdout and stderr,
 *    prints each task's output in one piece when the task ends (--tag puts "TAG\t" before each
 *    line), so the output of two tasks never interleaves;
 *  - packed (--pack DIR): each worker process appends a task's stdout then stderr to its own file
 *    DIR/pack-HOST-PID.dat (a mutex serialises the threads of one process; offset taken and bytes
 *    written under it, one writev), and the coordinator appends "seq attempt file offset out err"
 *    to DIR/index with one write(2) per line: a few files for a whole run instead of one or two
 *    per task; `mpx-farm cat DIR SEQ` prints a task's output back (the last attempt's);
 *  - per task files (--results DIR) are opened by run.c: DIR/SEQ.out and DIR/SEQ.err.
 * Locking: pack_lock guards the pack file of this process; everything else runs on the
 * coordinator thread. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "farm.h"

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

static void print_stream(int fd, const char *p, size_t n, const char *tag) {
  if (!n) return;
  if (!tag) {
    (void)write_all(fd, p, n);
    return;
  }
  size_t tl = strlen(tag), lines = 1;
  for (size_t i = 0; i < n; i++) lines += p[i] == '\n';
  char *b = malloc(n + lines * (tl + 1) + 1);
  if (!b) {
    (void)write_all(fd, p, n);
    return;
  }
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    memcpy(b + o, tag, tl), o += tl, b[o++] = '\t';
    const char *nl = memchr(p + i, '\n', n - i);
    size_t l = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
    memcpy(b + o, p + i, l), o += l, i += l;
  }
  if (o && b[o - 1] != '\n') b[o++] = '\n';
  (void)write_all(fd, b, o);
  free(b);
}

void farm_output_print(const farm_res *r, const char *tag) {
  print_stream(1, r->out, r->out_inline, tag);
  print_stream(2, r->err, r->err_inline, tag);
}

static pthread_mutex_t pack_lock = PTHREAD_MUTEX_INITIALIZER;
static int pack_fd = -1;
static pid_t pack_pid;
static char pack_name[512];

int farm_pack_append(const char *dir, const char *host, const char *out, size_t olen,
                     const char *err, size_t elen, char *name, size_t namelen, uint64_t *off) {
  pthread_mutex_lock(&pack_lock);
  int rc = -1;
  if (pack_fd < 0 || pack_pid != getpid()) { /* a forked worker opens its own file */
    snprintf(pack_name, sizeof pack_name, "pack-%s-%ld.dat", host, (long)getpid());
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, pack_name);
    pack_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pack_pid = getpid();
  }
  if (pack_fd >= 0) {
    off_t o = lseek(pack_fd, 0, SEEK_END);
    struct iovec iov[2] = {{(void *)out, olen}, {(void *)err, elen}};
    size_t want = olen + elen, done = 0;
    int ok = o >= 0;
    while (ok && done < want) {
      /* only the first call sees both buffers whole; a short write is finished piecewise */
      ssize_t w;
      if (done == 0)
        w = writev(pack_fd, iov, 2);
      else if (done < olen)
        w = write(pack_fd, out + done, olen - done);
      else
        w = write(pack_fd, err + (done - olen), want - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        ok = 0;
      else
        done += (size_t)w;
    }
    if (ok) {
      *off = (uint64_t)o;
      snprintf(name, namelen, "%s", pack_name);
      rc = 0;
    }
  }
  pthread_mutex_unlock(&pack_lock);
  return rc;
}

int farm_pack_index(const char *dir, const farm_res *r) {
  static int fd = -1;
  if (fd < 0) {
    char path[4096];
    snprintf(path, sizeof path, "%s/index", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
  }
  char line[1024];
  int n =
      snprintf(line, sizeof line, "%" PRId64 "\t%d\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
               r->seq, r->attempt, r->where, r->pack_off, r->out_len, r->err_len);
  if (n <= 0 || (size_t)n >= sizeof line) return -1;
  return write_all(fd, line, (size_t)n);
}

static int copy_range(const char *path, uint64_t off, uint64_t len, int to) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[65536];
  while (len) {
    ssize_t r = pread(fd, buf, len < sizeof buf ? len : sizeof buf, (off_t)off);
    if (r <= 0) return close(fd), -1;
    if (write_all(to, buf, (size_t)r) < 0) return close(fd), -1;
    off += (uint64_t)r, len -= (uint64_t)r;
  }
  close(fd);
  return 0;
}

int farm_cat_main(int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--help") == 0) {
    FILE *f = argc == 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
    fprintf(f, "usage: mpx-farm cat PACKDIR SEQ\n"
               "Print the stdout (to stdout) and stderr (to stderr) that task SEQ wrote in a run\n"
               "with --pack PACKDIR (its last attempt).\n");
    return f == stdout ? 0 : FARM_EXIT_USAGE;
  }
  char *end;
  long seq = strtol(argv[2], &end, 10);
  if (*end || end == argv[2] || seq < 1) {
    fprintf(stderr, "mpx-farm cat: '%s' is not a task number (1, 2, ...)\n", argv[2]);
    return FARM_EXIT_USAGE;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/index", argv[1]);
  FILE *ix = fopen(path, "r");
  if (!ix) {
    fprintf(stderr, "mpx-farm cat: cannot read %s: %s\n", path, strerror(errno));
    return FARM_EXIT_USAGE;
  }
  char line[1024], file[512] = "";
  uint64_t off = 0, olen = 0, elen = 0;
  int found = 0;
  while (fgets(line, sizeof line, ix)) {
    long s;
    int att;
    char f[512];
    uint64_t o, a, b;
    if (!strchr(line, '\n')) continue; /* torn */
    if (sscanf(line, "%ld\t%d\t%511s\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64, &s, &att, f, &o, &a,
               &b) == 6 &&
        s == seq)
      found = 1, snprintf(file, sizeof file, "%s", f), off = o, olen = a, elen = b;
  }
  fclose(ix);
  if (!found) {
    fprintf(stderr, "mpx-farm cat: task %ld has no packed output in %s\n", seq, argv[1]);
    return 1;
  }
  snprintf(path, sizeof path, "%s/%s", argv[1], file);
  if (copy_range(path, off, olen, 1) < 0 || copy_range(path, off + olen, elen, 2) < 0) {
    fprintf(stderr, "mpx-farm cat: cannot read %s: %s\n", path, strerror(errno));
    return 1;
  }
  return 0;
}
