/* forge_mpi.h: what a hostile task on an MPI worker rank can do to reach the root, for the tests
 * that check the root refuses it (trust_test, dataplane_forge_test): find the MPI transport's
 * private session communicator, and send a Batch of its own making on it as if its rank's server
 * had. Header-only, under MPX_HAVE_MPI; needs <mpi.h> and codec.h included first. */
#ifndef MPX_TEST_FORGE_MPI_H
#define MPX_TEST_FORGE_MPI_H

/* The newest communicator congruent with MPI_COMM_WORLD that this rank can name by Fortran
 * handle, as any code in the rank can: the MPI transport's private session communicator (a dup
 * of MPI_COMM_WORLD). MPI_COMM_NULL if none. */
static inline MPI_Comm session_comm(void) {
  MPI_Comm found = MPI_COMM_NULL;
  for (MPI_Fint i = 0; i < 256; i++) {
    MPI_Comm c = MPI_Comm_f2c(i); /* Open MPI: NULL past the table or for a freed slot */
    int same = MPI_UNEQUAL;
    if (!c || c == MPI_COMM_NULL || c == MPI_COMM_WORLD) continue;
    if (MPI_Comm_compare(c, MPI_COMM_WORLD, &same) == MPI_SUCCESS && same == MPI_CONGRUENT)
      found = c;
  }
  return found;
}

/* Pack b and send it to the root (rank 0) on comm with the transport's batch tag (TAG_BATCH,
 * transport/mpi/mpi_impl.h); nothing is sent if it does not pack. */
static inline void forge_send(const Mpx__Batch *b, MPI_Comm comm) {
  mpx__limits lim = mpx__limits_default(0);
  mpx__wbuf w = {0};
  if (mpx__codec_pack(b, &lim, &w) == 0)
    MPI_Send(w.data, (int)w.len, MPI_BYTE, 0, 0x6d03 /* MPX__TAG_BATCH */, comm);
  mpx__wbuf_free(&w);
}

#endif
