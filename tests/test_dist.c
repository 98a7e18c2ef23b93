/* dist: the single-process forms of the collectives (the build without
 * MPI, and the MPI build started without a launcher). Under mpirun the
 * same API is exercised by tests/mpi_train.c. */
#include "testutil.h"
#include "internal.h"
#include "pno/dist.h"

#include <stdlib.h>
#include <string.h>

static void test_single_process(void **state)
{
	(void)state;
	/* not started by a launcher: no MPI start-up, rank 0 of 1 */
	unsetenv("OMPI_COMM_WORLD_SIZE");
	unsetenv("PMIX_RANK");
	unsetenv("PMI_RANK");
	unsetenv("PMI_SIZE");
	assert_status(pno_dist_init(NULL, NULL), PNO_STATUS_OK);
	assert_status(pno_dist_init(NULL, NULL), PNO_STATUS_OK);
	assert_int_equal(pno_dist_rank(), 0);
	assert_int_equal(pno_dist_size(), 1);
	assert_true(pno_dist_is_root());
	assert_status(pno_dist_barrier(), PNO_STATUS_OK);

	/* a broadcast and the sums leave the data as it is */
	char b[4] = "abc";
	assert_status(pno_dist_bcast(b, 4, 0), PNO_STATUS_OK);
	assert_string_equal(b, "abc");
	assert_int_not_equal(pno_dist_bcast(b, 4, 1), PNO_STATUS_OK);
	float f[3] = {1.5f, -2.0f, 3.25f};
	double d[2] = {0.1, 1e300};
	assert_status(pno_dist_allreduce_sum_f32(f, 3), PNO_STATUS_OK);
	assert_status(pno_dist_allreduce_sum_f64(d, 2), PNO_STATUS_OK);
	assert_true(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
	assert_true(d[0] == 0.1 && d[1] == 1e300);

	/* gathers copy the root's own piece */
	int send[3] = {7, 8, 9}, recv[3] = {0};
	assert_status(pno_dist_gather(recv, send, sizeof send, 0), PNO_STATUS_OK);
	assert_memory_equal(recv, send, sizeof send);
	size_t cnt = 2 * sizeof(int);
	memset(recv, 0, sizeof recv);
	assert_status(pno_dist_gatherv(recv, &cnt, send, cnt, 0), PNO_STATUS_OK);
	assert_int_equal(recv[0], 7);
	assert_int_equal(recv[1], 8);
	assert_int_equal(recv[2], 0);
	cnt = 4;	/* counts[0] must match what rank 0 sends */
	assert_status(pno_dist_gatherv(recv, &cnt, send, 8, 0),
		      PNO_STATUS_INVALID);
	assert_status(pno_dist_gather(recv, send, 4, 1), PNO_STATUS_RANGE);

	/* agreement with oneself: the status and the message come back */
	assert_status(pno_dist_agree(PNO_STATUS_OK, NULL), PNO_STATUS_OK);
	pno__errorf(PNO_STATUS_IO, "data.h5: unreadable");
	assert_status(pno_dist_agree(PNO_STATUS_IO, NULL), PNO_STATUS_IO);
	assert_string_equal(pno_last_error(), "data.h5: unreadable");
	assert_status(pno_dist_agree(PNO_STATUS_SHAPE, "bad grid"),
		      PNO_STATUS_SHAPE);
	assert_string_equal(pno_last_error(), "bad grid");

	pno_dist_finalize();
	pno_dist_finalize();
	assert_int_equal(pno_dist_size(), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
