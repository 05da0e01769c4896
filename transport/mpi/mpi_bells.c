/* mpi_bells.c: doorbells between the ranks of the root's node, so that an idle rank sleeps until
 * a message for it is sent instead of polling MPI on a timer.
 *
 * MPI gives no way to block until a message arrives without spinning a core (Open MPI's blocking
 * probe polls). So a session whose root shares a node with worker ranks puts one mpx__bell per
 * session rank in a shared-memory segment that the ranks of that node map (POSIX shm, created by
 * the root, opened by the others, unlinked as soon as all have it: nothing stays in /dev/shm).
 * Whoever sends a message to a rank of that node rings its bell after the send is posted
 * (mpx__mpi_ring), and a rank waits on its own bell (a shared futex) between polls. A rank all of
 * whose senders ring it (a worker rank on the root's node; a root whose worker ranks are all on
 * its node) sleeps at once after a short spin, up to MPX_MPI_POLL_US as a safety net for
 * messages MPI had not delivered when the bell rang (large ones go by rendezvous, progressed by
 * polls); the others keep the timed backoff (mpi_common.c). The wait is a futex on the bell's
 * sequence number, so a ring that comes between a rank's last poll and its sleep is never lost.
 *
 * Guarantees: setup is collective over the node's ranks and all-or-nothing (if any rank cannot
 * map the segment, none uses it). Thread-safety: ringing and waiting are lock-free, from any
 * thread of a rank; setup and free run on the thread that builds or frees the session. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mpi_impl.h"
#include "os/log.h"

void mpx__mpi_bells_setup(mpx__mpi_session *s, MPI_Comm node, int root_at) {
  s->my_bell = &s->own_bell;
  if (root_at < 0) return; /* not the root's node: no rank here is rung */
  int nn, nr;
  MPI_Comm_size(node, &nn);
  MPI_Comm_rank(node, &nr);
  if (nn < 2) return;
  static _Atomic unsigned seq;
  char name[64] = "";
  size_t bytes = (size_t)s->size * sizeof(mpx__bell);
  int fd = -1;
  void *m = MAP_FAILED;
  if (nr == root_at) { /* create, map and mark every bell shared before anyone else maps it */
    snprintf(name, sizeof name, "/mpx-bells-%ld-%u", (long)getpid(), atomic_fetch_add(&seq, 1));
    fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 && ftruncate(fd, (off_t)bytes) == 0)
      m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED)
      for (int r = 0; r < s->size; r++) ((mpx__bell *)m)[r].shared = 1;
    if (fd >= 0) close(fd);
    if (m == MAP_FAILED && fd >= 0) shm_unlink(name);
    if (m == MAP_FAILED) name[0] = '\0';
  }
  MPI_Bcast(name, sizeof name, MPI_CHAR, root_at, node);
  if (nr != root_at && name[0] && (fd = shm_open(name, O_RDWR | O_CLOEXEC, 0)) >= 0) {
    m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
  }
  const char *off = getenv("MPX_MPI_BELLS"); /* 0: no doorbells (to compare) */
  int ok = m != MAP_FAILED && !(off && !strcmp(off, "0")), all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, node); /* everyone has opened it (or not) */
  if (nr == root_at && name[0]) shm_unlink(name);
  if (!all_ok) {
    if (m != MAP_FAILED) munmap(m, bytes);
    mpx__log(MPX_LOG_INFO, "MPI: no shared doorbells on this node; idle ranks poll on a timer");
    return;
  }
  s->bells = m; /* zero-filled by ftruncate, marked shared by the root */
  s->bells_len = bytes;
  s->my_bell = &s->bells[s->rank];
  /* every sender rings: a worker here is sent to only by the root; the root by its workers */
  s->rung = s->rank != s->root || nn == s->size;
}

void mpx__mpi_bells_free(mpx__mpi_session *s) {
  if (s->bells) munmap(s->bells, s->bells_len);
  s->bells = NULL;
  s->my_bell = &s->own_bell;
}

void mpx__mpi_ring(const mpx__mpi_session *s, int rank) {
  if (s->bells && rank >= 0 && rank < s->size) mpx__bell_ring(&s->bells[rank]);
}
