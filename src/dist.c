/* Collectives over MPI, or single-process no-ops (see pno/dist.h). */
#include "pno/dist.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PNO_HAVE_MPI
#include <mpi.h>
#endif

/* The process group is process-wide by nature (one per MPI process), so
 * its state is too; it changes only in init and finalize. */
static int g_rank = 0, g_size = 1;
static uint64_t g_bytes;

int pno_dist_rank(void) { return g_rank; }
int pno_dist_size(void) { return g_size; }
int pno_dist_is_root(void) { return g_rank == 0; }
uint64_t pno_dist_bytes(void) { return g_bytes; }

/* Single-process forms of the collectives that move data. */
static enum pno_status local_gatherv(void *recv, const void *send,
				     size_t bytes)
{
	if (bytes && recv != send)
		memcpy(recv, send, bytes);
	return PNO_STATUS_OK;
}

static enum pno_status local_agree(enum pno_status s, const char *msg)
{
	if (s != PNO_STATUS_OK && msg && msg != pno_last_error())
		return pno__errorf(s, "%s", msg);
	return s;
}

#ifndef PNO_HAVE_MPI

int pno_dist_compiled(void) { return 0; }
enum pno_status pno_dist_init(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return PNO_STATUS_OK;
}
void pno_dist_finalize(void) {}
enum pno_status pno_dist_barrier(void) { return PNO_STATUS_OK; }
enum pno_status pno_dist_bcast(void *buf, size_t bytes, int root)
{
	(void)buf, (void)bytes;
	return root == 0 ? PNO_STATUS_OK
			 : pno__errorf(PNO_STATUS_RANGE,
				       "broadcast from rank %d of 1", root);
}
enum pno_status pno_dist_allreduce_sum_f32(float *buf, size_t n)
{
	(void)buf, (void)n;
	return PNO_STATUS_OK;
}
enum pno_status pno_dist_allreduce_sum_f64(double *buf, size_t n)
{
	(void)buf, (void)n;
	return PNO_STATUS_OK;
}
enum pno_status pno_dist_gather(void *recv, const void *send, size_t bytes,
				int root)
{
	if (root != 0)
		return pno__errorf(PNO_STATUS_RANGE, "gather to rank %d of 1",
				   root);
	return local_gatherv(recv, send, bytes);
}
enum pno_status pno_dist_gatherv(void *recv, const size_t *counts,
				 const void *send, size_t bytes, int root)
{
	if (root != 0)
		return pno__errorf(PNO_STATUS_RANGE, "gather to rank %d of 1",
				   root);
	if (counts && counts[0] != bytes)
		return pno__errorf(PNO_STATUS_INVALID,
				   "gatherv: rank 0 sends %zu bytes, counts[0] "
				   "says %zu", bytes, counts[0]);
	return local_gatherv(recv, send, bytes);
}
enum pno_status pno_dist_agree(enum pno_status s, const char *msg)
{
	return local_agree(s, msg);
}

#else /* PNO_HAVE_MPI */

static MPI_Comm g_comm = MPI_COMM_NULL;
static int g_owned;	/* 1: we called MPI_Init, so we finalize */

/* MPI counts are ints: large buffers go in pieces of this many elements */
#define CHUNK ((size_t)1 << 30)

int pno_dist_compiled(void) { return 1; }

static enum pno_status mpi_err(const char *what, int rc)
{
	char text[MPI_MAX_ERROR_STRING];
	int len = 0;
	if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
		snprintf(text, sizeof text, "error %d", rc);
	return pno__errorf(PNO_STATUS_IO, "MPI %s failed: %s", what, text);
}

static int launched(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
					   "PMI_RANK", "PMI_SIZE"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		if (getenv(vars[i]))
			return 1;
	return 0;
}

enum pno_status pno_dist_init(int *argc, char ***argv)
{
	int inited = 0, finalized = 0, provided, rc;
	if (g_comm != MPI_COMM_NULL)
		return PNO_STATUS_OK;
	MPI_Initialized(&inited);
	MPI_Finalized(&finalized);
	if (finalized)
		return PNO_STATUS_OK;	/* too late: stay single-process */
	if (!inited) {
		if (!launched())
			return PNO_STATUS_OK;
		rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
		if (rc != MPI_SUCCESS)
			return pno__errorf(PNO_STATUS_IO, "MPI_Init failed "
					   "(error %d)", rc);
		g_owned = 1;
	}
	if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &g_comm)) != MPI_SUCCESS)
		return mpi_err("Comm_dup", rc);
	MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(g_comm, &g_rank);
	MPI_Comm_size(g_comm, &g_size);
	g_bytes = 0;
	return PNO_STATUS_OK;
}

void pno_dist_finalize(void)
{
	int finalized = 0;
	MPI_Finalized(&finalized);
	if (finalized)
		return;
	if (g_comm != MPI_COMM_NULL)
		MPI_Comm_free(&g_comm);
	g_comm = MPI_COMM_NULL;
	g_rank = 0;
	g_size = 1;
	if (g_owned)
		MPI_Finalize();
	g_owned = 0;
}

static int active(void) { return g_comm != MPI_COMM_NULL && g_size > 1; }

static enum pno_status check_root(int root, const char *what)
{
	if (root < 0 || root >= g_size)
		return pno__errorf(PNO_STATUS_RANGE, "%s from rank %d of %d",
				   what, root, g_size);
	return PNO_STATUS_OK;
}

enum pno_status pno_dist_barrier(void)
{
	int rc;
	if (active() && (rc = MPI_Barrier(g_comm)) != MPI_SUCCESS)
		return mpi_err("Barrier", rc);
	return PNO_STATUS_OK;
}

enum pno_status pno_dist_bcast(void *buf, size_t bytes, int root)
{
	enum pno_status s = check_root(root, "broadcast");
	if (s != PNO_STATUS_OK || !active())
		return s;
	for (size_t o = 0; o < bytes; o += CHUNK) {
		int n = (int)PNO__MIN(CHUNK, bytes - o);
		int rc = MPI_Bcast((char *)buf + o, n, MPI_BYTE, root, g_comm);
		if (rc != MPI_SUCCESS)
			return mpi_err("Bcast", rc);
	}
	if (g_rank == root)
		g_bytes += bytes;
	return PNO_STATUS_OK;
}

static enum pno_status allreduce(void *buf, size_t n, size_t esize,
				 MPI_Datatype t)
{
	if (!active())
		return PNO_STATUS_OK;
	for (size_t o = 0; o < n; o += CHUNK) {
		int c = (int)PNO__MIN(CHUNK, n - o);
		int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + o * esize, c,
				       t, MPI_SUM, g_comm);
		if (rc != MPI_SUCCESS)
			return mpi_err("Allreduce", rc);
	}
	g_bytes += n * esize;
	return PNO_STATUS_OK;
}

enum pno_status pno_dist_allreduce_sum_f32(float *buf, size_t n)
{
	return allreduce(buf, n, sizeof(float), MPI_FLOAT);
}

enum pno_status pno_dist_allreduce_sum_f64(double *buf, size_t n)
{
	return allreduce(buf, n, sizeof(double), MPI_DOUBLE);
}

enum pno_status pno_dist_gather(void *recv, const void *send, size_t bytes,
				int root)
{
	enum pno_status s = check_root(root, "gather");
	if (s != PNO_STATUS_OK)
		return s;
	if (!active())
		return local_gatherv(recv, send, bytes);
	if (bytes > (size_t)INT32_MAX)
		return pno__errorf(PNO_STATUS_RANGE, "gather of %zu bytes per "
				   "rank: at most 2^31 - 1", bytes);
	int rc = MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes,
			    MPI_BYTE, root, g_comm);
	if (rc != MPI_SUCCESS)
		return mpi_err("Gather", rc);
	g_bytes += bytes;
	return PNO_STATUS_OK;
}

enum pno_status pno_dist_gatherv(void *recv, const size_t *counts,
				 const void *send, size_t bytes, int root)
{
	enum pno_status s = check_root(root, "gatherv");
	int *cnt = NULL, *displ = NULL, rc;
	if (s != PNO_STATUS_OK)
		return s;
	if (bytes > (size_t)INT32_MAX)
		return pno__errorf(PNO_STATUS_RANGE, "gatherv of %zu bytes "
				   "from one rank: at most 2^31 - 1", bytes);
	if (!active()) {
		if (counts && counts[0] != bytes)
			return pno__errorf(PNO_STATUS_INVALID,
					   "gatherv: rank 0 sends %zu bytes, "
					   "counts[0] says %zu", bytes, counts[0]);
		return local_gatherv(recv, send, bytes);
	}
	if (g_rank == root) {
		size_t off = 0;
		cnt = pno_malloc((size_t)g_size * sizeof *cnt);
		displ = pno_malloc((size_t)g_size * sizeof *displ);
		if (!cnt || !displ) {
			s = pno__errorf(PNO_STATUS_NOMEM, "gatherv: out of memory");
			goto out;
		}
		for (int r = 0; r < g_size; r++) {
			if (counts[r] > (size_t)INT32_MAX ||
			    off > (size_t)INT32_MAX) {
				s = pno__errorf(PNO_STATUS_RANGE,
						"gatherv: %zu bytes from rank %d "
						"at offset %zu: MPI counts stop "
						"at 2^31 - 1", counts[r], r, off);
				goto out;
			}
			cnt[r] = (int)counts[r];
			displ[r] = (int)off;
			off += counts[r];
		}
	}
out:
	/* a root-side failure must not leave the others waiting */
	if ((s = pno_dist_agree(s, NULL)) != PNO_STATUS_OK) {
		pno_free(cnt);
		pno_free(displ);
		return s;
	}
	rc = MPI_Gatherv(send, (int)bytes, MPI_BYTE, recv, cnt, displ, MPI_BYTE,
			 root, g_comm);
	pno_free(cnt);
	pno_free(displ);
	if (rc != MPI_SUCCESS)
		return mpi_err("Gatherv", rc);
	g_bytes += bytes;
	return PNO_STATUS_OK;
}

enum pno_status pno_dist_agree(enum pno_status s, const char *msg)
{
	struct {
		int32_t status;
		char msg[1000];
	} m;
	int first = s != PNO_STATUS_OK ? g_rank : g_size, rc;
	if (!active())
		return local_agree(s, msg);
	rc = MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, g_comm);
	if (rc != MPI_SUCCESS)
		return mpi_err("Allreduce (agreeing on an error)", rc);
	g_bytes += sizeof first;
	if (first == g_size)
		return PNO_STATUS_OK;
	memset(&m, 0, sizeof m);
	if (g_rank == first) {
		const char *t = msg ? msg : pno_last_error();
		m.status = (int32_t)s;
		snprintf(m.msg, sizeof m.msg, "%s", *t ? t : pno_status_str(s));
	}
	rc = MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, g_comm);
	if (rc != MPI_SUCCESS)
		return mpi_err("Bcast (agreeing on an error)", rc);
	if (g_rank == first)
		g_bytes += sizeof m;
	if (m.status <= PNO_STATUS_OK || m.status >= PNO_STATUS_COUNT)
		m.status = PNO_STATUS_INTERNAL;
	return pno__errorf((enum pno_status)m.status, "rank %d: %s", first,
			   m.msg);
}

#endif /* PNO_HAVE_MPI */
