/* held.h: what this process holds, for the tests that check nothing leaks (the data-plane tests):
 * its open fds (counting this DIR's own, as every count does alike), its mappings whose
 * /proc/self/maps line names `what` (a memfd's name), and the entries of /dev/shm, leaving out
 * Open MPI's vader segments (concurrent mpirun jobs on this host, never this process's). Each
 * answers -1 (0 for /dev/shm when it has none) when it cannot look. Header-only: static helpers,
 * one copy per test. */
#ifndef MPX_TEST_HELD_H
#define MPX_TEST_HELD_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>

static inline int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static inline int count_maps(const char *what) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strstr(line, what) != NULL;
  fclose(f);
  return n;
}

static inline int count_shm(void) {
  int n = 0;
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    n += e->d_name[0] != '.' && strncmp(e->d_name, "vader_segment", 13) != 0;
  closedir(d);
  return n;
}

#endif
