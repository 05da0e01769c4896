/* mpi_farm.c: the hand-written MPI master/worker farm a framework is held to: rank 0 hands N
 * empty tasks (a long each) one message at a time to ranks 1..W, each answering with the same
 * long, and sends the next task to whichever rank answered. No batching, no futures.
 *   mpirun -np W+1 mpi_farm N
 * Rank 0 prints one JSON line as mpx-bench --json (peer "limit-mpi-farm", backend mpi, workload
 * empty) and checks that the answers sum to 0 + 1 + ... + N-1 (else exit 1). Needs 2+ ranks. */
#include <mpi.h>
#include <stdio.h>

#include "peer_json.h"

enum { TAG_TASK = 1, TAG_STOP = 2 };

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long n = argc > 1 ? atol(argv[1]) : 0, task;
  if (n <= 0 || size < 2) {
    if (rank == 0) fprintf(stderr, "usage: mpirun -np W+1 mpi_farm N (N > 0, 2+ ranks)\n");
    MPI_Finalize();
    return 2;
  }
  MPI_Status st;
  MPI_Barrier(MPI_COMM_WORLD); /* every rank is up: MPI start-up is not timed */
  if (rank != 0) {
    for (;;) {
      MPI_Recv(&task, 1, MPI_LONG, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
      if (st.MPI_TAG == TAG_STOP) break;
      MPI_Send(&task, 1, MPI_LONG, 0, TAG_TASK, MPI_COMM_WORLD);
    }
    MPI_Finalize();
    return 0;
  }
  long sent = 0, done = 0, sum = 0;
  double t0 = MPI_Wtime();
  for (int w = 1; w < size && sent < n; w++, sent++)
    MPI_Send(&sent, 1, MPI_LONG, w, TAG_TASK, MPI_COMM_WORLD);
  while (done < n) {
    MPI_Recv(&task, 1, MPI_LONG, MPI_ANY_SOURCE, TAG_TASK, MPI_COMM_WORLD, &st);
    sum += task, done++;
    if (sent < n) MPI_Send(&sent, 1, MPI_LONG, st.MPI_SOURCE, TAG_TASK, MPI_COMM_WORLD), sent++;
  }
  double s = MPI_Wtime() - t0;
  for (int w = 1; w < size; w++) MPI_Send(&sent, 1, MPI_LONG, w, TAG_STOP, MPI_COMM_WORLD);
  int ok = sum == n * (n - 1) / 2;
  if (ok) peer_emit("limit-mpi-farm", "mpi", "empty", size - 1, n, s, NULL);
  else fprintf(stderr, "mpi_farm: wrong sum of answers\n");
  MPI_Finalize();
  return ok ? 0 : 1;
}
