/* Sampling speed of the stochastic FNO (PNO-D / MC dropout): S samples at
 * one input with pno_fno_sample, against one deterministic forward of
 * batch 1 and a deterministic forward of the same S copies (the dropout
 * overhead). Configuration: 2D 64x64, Cin = Cout = 1, width 32, modes
 * 12x12, 4 layers, proj_hidden 128 (the reference FNO's; settable),
 * p_lift = p_proj = p_fourier = 0.1.
 *
 *   bench_sample [threads [S [Bmax [runs [proj_hidden]]]]]
 *   defaults 2 100 25 7 128
 *
 * Prints medians over `runs` runs (after one warm-up) and samples/s. */
#include "pno/fno.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double median_of(double *t, int n) { return bench_median(t, n); }

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2;
	int S = argc > 2 ? atoi(argv[2]) : 100;
	int Bmax = argc > 3 ? atoi(argv[3]) : 25;
	int runs = argc > 4 ? atoi(argv[4]) : 7;
	int H = argc > 5 ? atoi(argv[5]) : 128;
	if (threads < 1 || S < 1 || Bmax < 1 || runs < 1 || runs > 100 ||
	    H < 1) {
		fprintf(stderr, "usage: bench_sample [threads [S [Bmax [runs "
				"[proj_hidden]]]]]\n");
		return 2;
	}
	pno_threads_set(threads);
	struct pno_fno_arch a = {.dims = 2, .in_ch = 1, .out_ch = 1,
				 .width = 32, .modes1 = 12, .modes2 = 12,
				 .layers = 4, .proj_hidden = H,
				 .p_lift = 0.1f, .p_proj = 0.1f,
				 .p_fourier = 0.1f};
	struct pno_fno m;
	int X = 64, Y = 64;
	if (pno_fno_init(&m, &a, X, Y, Bmax, 1) != PNO_STATUS_OK) {
		fprintf(stderr, "init: %s\n", pno_last_error());
		return 1;
	}
	size_t P = (size_t)X * Y;
	float *x = malloc(P * sizeof *x);
	float *xs = malloc((size_t)Bmax * P * sizeof *xs);
	float *out = malloc((size_t)S * P * sizeof *out);
	if (!x || !xs || !out)
		return 1;
	pno_rng_normal(x, P, 3, 0, 0);
	for (int b = 0; b < Bmax; b++)
		memcpy(xs + (size_t)b * P, x, P * sizeof *x);

	double t1[100], ts[100], td[100];
	for (int r = -1; r < runs; r++) {
		double t0 = bench_now();
		pno_fno_forward(&m, x, 1);
		double t = bench_now();
		if (pno_fno_sample(&m, out, x, S, (uint64_t)r + 7) !=
		    PNO_STATUS_OK) {
			fprintf(stderr, "sample: %s\n", pno_last_error());
			return 1;
		}
		double t2 = bench_now();
		for (int s0 = 0; s0 < S; s0 += Bmax)
			pno_fno_forward(&m, xs, S - s0 < Bmax ? S - s0 : Bmax);
		double t3 = bench_now();
		if (r >= 0) {
			t1[r] = t - t0;
			ts[r] = t2 - t;
			td[r] = t3 - t2;
		}
	}
	double f1 = median_of(t1, runs), fs = median_of(ts, runs);
	double fd = median_of(td, runs);
	printf("bench_sample: 64x64, width 32, modes 12x12, 4 layers, "
	       "proj_hidden %d, p_lift = p_proj = p_fourier = 0.1\n", H);
	printf("threads %d, S %d, Bmax %d, median of %d runs\n", threads, S,
	       Bmax, runs);
	printf("  deterministic forward, batch 1:     %8.2f ms\n", 1e3 * f1);
	printf("  %d samples (pno_fno_sample):       %8.2f ms  "
	       "(%.0f samples/s, %.1fx one forward)\n", S, 1e3 * fs, S / fs,
	       fs / f1);
	printf("  %d copies, deterministic batches:  %8.2f ms  "
	       "(dropout overhead %.1f%%)\n", S, 1e3 * fd,
	       100.0 * (fs - fd) / fd);
	free(x);
	free(xs);
	free(out);
	pno_fno_free(&m);
	return 0;
}
