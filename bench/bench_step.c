/* Time one FNO training step (forward + backward + AdamW) for the two
 * reference configurations of docs/performance.md, and the share of each
 * part. Prints the median of several runs and the thread count.
 * usage: bench_step [runs] [threads]  */
#include "bench_util.h"
#include "pno/fno.h"
#include "pno/nn.h"
#include "pno/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run(const char *label, struct pno_fno_arch a, int X, int Y, int B,
		int runs)
{
	struct pno_fno m;
	struct pno_adam opt;
	if (pno_fno_init(&m, &a, X, Y, B, 1) != PNO_STATUS_OK ||
	    pno_adam_init(&opt, m.n_params, 1e-3f, 1e-4f, 1) != PNO_STATUS_OK) {
		fprintf(stderr, "init failed: %s\n", pno_last_error());
		exit(1);
	}
	size_t n = (size_t)B * m.P;
	float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
	float *d = malloc(n * sizeof *d);
	pno_rng_normal(x, n, 1, 1, 0);
	pno_rng_normal(y, n, 1, 2, 0);
	double *tf = malloc(runs * sizeof *tf), *tb = malloc(runs * sizeof *tb);
	double *to = malloc(runs * sizeof *to), *tt = malloc(runs * sizeof *tt);
	for (int r = -2; r < runs; r++) { /* two warm-up steps */
		double t0 = bench_now();
		pno_fno_zero_grad(&m);
		const float *out = pno_fno_forward(&m, x, B);
		pno_loss_rel_l2(d, out, y, B, (size_t)m.P);
		double t1 = bench_now();
		pno_fno_backward(&m, d, B);
		double t2 = bench_now();
		pno_adam_step(&opt, m.params, m.grads);
		double t3 = bench_now();
		if (r >= 0) {
			tf[r] = t1 - t0, tb[r] = t2 - t1, to[r] = t3 - t2;
			tt[r] = t3 - t0;
		}
	}
	double mt = bench_median(tt, runs), mf = bench_median(tf, runs);
	double mb = bench_median(tb, runs), mo = bench_median(to, runs);
	printf("%-4s grid %dx%d width %d modes %d layers %d batch %d: "
	       "step %.4f s (forward %.4f, backward %.4f, adam %.4f), "
	       "%zu params, median of %d, %d threads\n",
	       label, X, Y, a.width, a.modes1, a.layers, B, mt, mf, mb, mo,
	       m.n_params, runs, pno_threads_get());
	free(x), free(y), free(d), free(tf), free(tb), free(to), free(tt);
	pno_adam_free(&opt);
	pno_fno_free(&m);
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 9;
	int threads = argc > 2 ? atoi(argv[2]) : 0;
	if (runs < 1)
		runs = 1;
	pno_threads_set(threads);
	struct pno_fno_arch a2 = {.dims = 2, .in_ch = 1, .out_ch = 1, .width = 32,
				  .modes1 = 12, .modes2 = 12, .layers = 4,
				  .proj_hidden = 128};
	struct pno_fno_arch a1 = {.dims = 1, .in_ch = 1, .out_ch = 1, .width = 64,
				  .modes1 = 16, .modes2 = 1, .layers = 4,
				  .proj_hidden = 128};
	run("2D", a2, 64, 64, 16, runs);
	run("1D", a1, 1024, 1, 32, runs);
	return 0;
}
