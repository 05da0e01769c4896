/* seg.c: sealed memfd segments; see seg.h for what they are and what a reader checks.
 *
 * Costs. A fresh segment's pages are allocated by the kernel in one go (fallocate, then a
 * MAP_POPULATE mapping) rather than one page fault at a time, and a copy into a new segment is a
 * single pwrite: the kernel allocates and fills the pages together. A reader maps with
 * MAP_POPULATE, so reading the payload takes no page fault per page either.
 *
 * No locks, no global state. */
#include "os/seg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

static int seg_fd(size_t len) {
  if (len > (size_t)INT64_MAX) return errno = EFBIG, -1;
  int fd = memfd_create("mpx-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  if (ftruncate(fd, (off_t)len)) {
    int e = errno;
    close(fd);
    return errno = e, -1;
  }
  return fd;
}

static int code_of(int e) {
  return e == ENOMEM || e == ENOSPC || e == EFBIG ? MPX_ENOMEM : MPX_ESYS;
}

int mpx__seg_create(mpx__seg *s, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len) return MPX_EINVAL;
  int fd = seg_fd(len);
  if (fd < 0) return code_of(errno);
  if (fallocate(fd, 0, 0, (off_t)len) && errno != EOPNOTSUPP) { /* no memory: say so now */
    int e = errno;
    close(fd);
    return code_of(e);
  }
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return code_of(e);
  }
  *s = (mpx__seg){.fd = fd, .data = p, .len = len, .map_len = len};
  return MPX_OK;
}

int mpx__seg_create_copy(mpx__seg *s, const void *data, size_t len) {
  *s = MPX__SEG_NONE;
  if (!len || !data) return MPX_EINVAL;
  int fd = seg_fd(len);
  if (fd < 0) return code_of(errno);
  for (size_t off = 0; off < len;) {
    ssize_t w = pwrite(fd, (const char *)data + off, len - off, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : ENOSPC;
      close(fd);
      return code_of(e);
    }
    off += (size_t)w;
  }
  *s = (mpx__seg){.fd = fd, .len = len};
  return mpx__seg_seal(s);
}

int mpx__seg_resize(mpx__seg *s, size_t len) {
  if (s->fd < 0 || !s->map_len || !len) return MPX_EINVAL;
  if (len == s->len) return MPX_OK;
  if (ftruncate(s->fd, (off_t)len)) return code_of(errno);
  void *p = mremap(s->data, s->map_len, len, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    int e = errno;
    if (ftruncate(s->fd, (off_t)s->len)) { /* keep the old size: the mapping still covers it */
    }
    return code_of(e);
  }
  s->data = p;
  s->len = s->map_len = len;
  return MPX_OK;
}

int mpx__seg_seal(mpx__seg *s) {
  if (s->fd < 0) return MPX_EINVAL;
  if (s->map_len) munmap(s->data, s->map_len); /* F_SEAL_WRITE wants no writable mapping */
  s->data = NULL;
  s->map_len = 0;
  if (fcntl(s->fd, F_ADD_SEALS, SEALS)) return MPX_ESYS;
  return MPX_OK;
}

int mpx__seg_seal_size(mpx__seg *s) {
  if (s->fd < 0 || fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
    return MPX_ESYS;
  return MPX_OK;
}

int mpx__seg_ident(int fd, unsigned long long id[2]) {
  struct stat st;
  if (fstat(fd, &st)) return MPX_ESYS;
  id[0] = (unsigned long long)st.st_dev;
  id[1] = (unsigned long long)st.st_ino;
  return MPX_OK;
}

int mpx__seg_map(mpx__seg *s, int fd, size_t len, size_t max, int mode) {
  *s = MPX__SEG_NONE;
  struct stat st;
  int rc = MPX_EPROTO;
  int need = mode == MPX__SEG_EXACT ? SEALS & ~F_SEAL_SEAL : F_SEAL_SHRINK | F_SEAL_GROW;
  uint64_t size = 0;
  if (len > max)
    rc = MPX_ETOOBIG;
  else if (!len || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 0)
    rc = MPX_EPROTO;
  else if ((size = (uint64_t)st.st_size) < len || (mode == MPX__SEG_EXACT && size != len) ||
           size / 2 > max)
    rc = MPX_EPROTO;
  else if ((fcntl(fd, F_GET_SEALS) & need) != need)
    rc = MPX_EPROTO; /* the sender could still change or shrink it under our mapping */
  else {
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p != MAP_FAILED) {
      *s = (mpx__seg){.fd = -1, .data = p, .len = len, .map_len = (size_t)size};
      rc = MPX_OK;
    } else {
      rc = code_of(errno);
    }
  }
  close(fd);
  return rc;
}

void mpx__seg_free(mpx__seg *s) {
  if (s->map_len) munmap(s->data, s->map_len);
  if (s->fd >= 0) close(s->fd);
  *s = MPX__SEG_NONE;
}

void mpx__seg_unmap(const void *data, size_t len) {
  if (data && len) munmap((void *)data, len);
}
