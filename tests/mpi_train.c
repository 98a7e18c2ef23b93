/* Data-parallel collectives and training under mpirun (run by
 * tests/mpi_train.sh with 2 ranks). A failed check is counted, not fatal,
 * so the ranks keep meeting in the same collectives; at the end the ranks
 * agree on the verdict and all exit non-zero if any check failed. */
#include "internal.h"
#include "pno/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			failures++;                                           \
			fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", \
				pno_dist_rank(), __FILE__, __LINE__, #cond);  \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
		}                                                             \
	} while (0)

/* The collectives against what each rank can compute alone. */
static void test_collectives(void)
{
	int R = pno_dist_size(), me = pno_dist_rank();
	CHECK(R >= 2, "run under mpirun -np 2 or more (size %d)", R);

	char word[32] = "";
	if (me == R - 1)
		snprintf(word, sizeof word, "from %d", R - 1);
	CHECK(pno_dist_bcast(word, sizeof word, R - 1) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	char want[32];
	snprintf(want, sizeof want, "from %d", R - 1);
	CHECK(!strcmp(word, want), "bcast gave '%s'", word);

	/* sums: rank r contributes r + 1 + i; exact in float and double */
	float f[5];
	double d[5];
	for (int i = 0; i < 5; i++)
		f[i] = (float)(me + 1 + i), d[i] = 0.5 * (me + 1 + i);
	CHECK(pno_dist_allreduce_sum_f32(f, 5) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	CHECK(pno_dist_allreduce_sum_f64(d, 5) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	for (int i = 0; i < 5; i++) {
		double s = R * (R + 1) / 2.0 + (double)R * i;
		CHECK(f[i] == (float)s && d[i] == 0.5 * s,
		      "sum %d: %g %g, want %g", i, f[i], d[i], s);
	}

	/* gather: rank r's int lands at r; gatherv: rank r sends r + 1 ints */
	int mine = 100 + me, all[64] = {0}, v[64], got[64 * 65 / 2] = {0};
	size_t counts[64], total = 0;
	CHECK(pno_dist_gather(all, &mine, sizeof mine, 0) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	for (int r = 0; me == 0 && r < R && r < 64; r++)
		CHECK(all[r] == 100 + r, "gather[%d] = %d", r, all[r]);
	for (int i = 0; i <= me; i++)
		v[i] = me * 1000 + i;
	for (int r = 0; r < R && r < 64; r++)
		counts[r] = (size_t)(r + 1) * sizeof(int), total += r + 1;
	CHECK(pno_dist_gatherv(got, counts, v, (size_t)(me + 1) * sizeof(int),
			       0) == PNO_STATUS_OK, "%s", pno_last_error());
	for (int r = 0, k = 0; me == 0 && r < R && r < 64; r++)
		for (int i = 0; i <= r; i++, k++)
			CHECK(got[k] == r * 1000 + i, "gatherv[%d] = %d", k,
			      got[k]);

	/* agreement: all OK is OK; failures on the last two ranks give every
	 * rank the lower one's status and message */
	CHECK(pno_dist_agree(PNO_STATUS_OK, NULL) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	enum pno_status s = PNO_STATUS_OK;
	if (me == R - 1)
		s = pno__errorf(PNO_STATUS_FORMAT, "late.h5: not HDF5");
	if (me == R - 2)
		s = pno__errorf(PNO_STATUS_SHAPE, "early.h5: bad grid");
	s = pno_dist_agree(s, NULL);
	snprintf(want, sizeof want, "rank %d: ", R - 2);
	CHECK(s == PNO_STATUS_SHAPE, "agreed status %d", (int)s);
	CHECK(!strncmp(pno_last_error(), want, strlen(want)) &&
		      strstr(pno_last_error(), "early.h5: bad grid"),
	      "agreed message '%s'", pno_last_error());
	CHECK(pno_dist_bytes() > 0, "no bytes counted");
}

int main(int argc, char **argv)
{
	if (pno_dist_init(&argc, &argv) != PNO_STATUS_OK) {
		fprintf(stderr, "mpi_train: %s\n", pno_last_error());
		return 1;
	}
	const char *what = argc > 1 ? argv[1] : "collectives";
	if (!strcmp(what, "collectives"))
		test_collectives();
	else
		CHECK(0, "unknown test '%s'", what);
	enum pno_status s = pno_dist_agree(
		failures ? pno__errorf(PNO_STATUS_INTERNAL, "%d checks failed",
				       failures)
			 : PNO_STATUS_OK, NULL);
	if (pno_dist_is_root())
		printf("mpi_train %s: %d ranks: %s\n", what, pno_dist_size(),
		       s == PNO_STATUS_OK ? "ok" : pno_last_error());
	pno_dist_finalize();
	return s == PNO_STATUS_OK ? 0 : 1;
}
