/* A barrier that sleeps while it waits. Open MPI's blocking collectives
 * busy-poll: a rank that reaches pno_dist_agree while the others still
 * work for minutes (pno bench: a rank whose cells are done) would burn a
 * core those others' child processes need. This waits in MPI_Ibarrier,
 * testing it every poll_s seconds and sleeping in between.
 *
 * Declared in pno/dist.h. MPI_COMM_WORLD, not pno/dist's private duplicate: a
 * barrier has no payload to meet another's, and every rank calls it at
 * the same point. */
#include "internal.h"

#include "pno/dist.h"

#ifdef PNO_HAVE_MPI
#include <mpi.h>
#endif
#include <time.h>

enum pno_status pno_dist_barrier_idle(double poll_s)
{
	if (!(poll_s > 0 && poll_s <= 10))
		return pno__errorf(PNO_STATUS_INVALID, "idle barrier: poll "
				   "interval %g s not in (0, 10]", poll_s);
#ifdef PNO_HAVE_MPI
	if (pno_dist_size() < 2)
		return PNO_STATUS_OK;
	MPI_Request req;
	int done = 0, rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
	struct timespec ts = {(time_t)poll_s,
			      (long)((poll_s - (double)(time_t)poll_s) * 1e9)};
	while (rc == MPI_SUCCESS && !done) {
		rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
		if (rc == MPI_SUCCESS && !done)
			nanosleep(&ts, NULL);
	}
	if (rc != MPI_SUCCESS)
		return pno__errorf(PNO_STATUS_IO, "idle barrier: MPI error %d",
				   rc);
#endif
	return PNO_STATUS_OK;
}
