/* Time the energy score with its gradient (pno_loss_energy) on a 64x64
 * field: a training batch of 3-sample ensembles (B 16, m 3) and one large
 * ensemble (B 1, m 100); also the ensemble CRPS at the same sizes. Median
 * of several runs on 1 thread.
 * usage: bench_loss [runs]  */
#include "bench_util.h"
#include "pno/loss.h"

#include <stdio.h>
#include <stdlib.h>

static void run(int B, int m, size_t N, int runs)
{
	size_t nx = (size_t)B * m * N;
	float *X = malloc(nx * sizeof *X), *y = malloc((size_t)B * N * sizeof *y);
	float *g = malloc(nx * sizeof *g);
	double *te = malloc(runs * sizeof *te), *tc = malloc(runs * sizeof *tc);
	if (!X || !y || !g || !te || !tc) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	pno_rng_normal(X, nx, 1, 1, 0);
	pno_rng_normal(y, (size_t)B * N, 1, 2, 0);
	volatile double sink = 0; /* keep the calls */
	for (int r = -1; r < runs; r++) { /* one warm-up */
		double t0 = bench_now();
		sink += pno_loss_energy(g, X, y, B, m, N);
		double t1 = bench_now();
		sink += pno_loss_crps_ens(g, X, y, B, m, N);
		double t2 = bench_now();
		if (r >= 0)
			te[r] = t1 - t0, tc[r] = t2 - t1;
	}
	double me = bench_median(te, runs), mc = bench_median(tc, runs);
	/* pairs + sample-to-y distances, each a read of two fields and (with
	 * the gradient) an update of two */
	double pairs = B * (m * (m - 1) / 2.0 + m);
	printf("B %2d m %3d N %zu: energy+grad %.3f ms (%.2f ns per pair-value), "
	       "crps_ens+grad %.3f ms, median of %d, 1 thread\n",
	       B, m, N, 1e3 * me, 1e9 * me / (pairs * N), 1e3 * mc, runs);
	free(X), free(y), free(g), free(te), free(tc);
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 9;
	if (runs < 1)
		runs = 1;
	pno_threads_set(1);
	run(16, 3, 64 * 64, runs);
	run(1, 100, 64 * 64, runs);
	return 0;
}
