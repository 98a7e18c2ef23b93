/* Micro-benchmark of the spectral layer: median time of forward and of
 * backward for each transform path on the target 1D and 2D configurations,
 * plus which path the cost model picks.
 *   usage: bench_spectral [runs]   (default 15, at least 7) */
#include "bench_util.h"
#include "pno/spectral.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cfg {
	const char *name;
	int dims, B, Ci, Co, X, Y, M1, M2;
};

static const char *path_name(enum pno_spectral_path p)
{
	return p == PNO_SPECTRAL_PATH_GEMM ? "gemm" : "fftw";
}

static int bench(const struct cfg *c, int runs)
{
	struct pno_spectral s;
	enum pno_status st = pno_spectral_init(&s, c->dims, c->B, c->Ci, c->Co,
					       c->X, c->Y, c->M1, c->M2);
	if (st != PNO_STATUS_OK) {
		fprintf(stderr, "%s: %s\n", c->name, pno_last_error());
		return 1;
	}
	size_t nx = (size_t)c->B * c->Ci * c->X * s.Y;
	size_t ny = (size_t)c->B * c->Co * c->X * s.Y;
	size_t nw = pno_spectral_weight_count(&s);
	size_t nm = pno_spectral_modes_size(&s, c->Ci > c->Co ? c->Ci : c->Co, c->B);
	float *x = pno_malloc(nx * sizeof *x), *y = pno_malloc(ny * sizeof *y);
	float *dx = pno_calloc(nx, sizeof *dx), *dy = pno_malloc(ny * sizeof *dy);
	float *w = pno_malloc(nw * sizeof *w), *dw = pno_calloc(nw, sizeof *dw);
	float *xh = pno_malloc(nm * sizeof *xh), *yh = pno_malloc(nm * sizeof *yh);
	double *tf = malloc((size_t)runs * sizeof *tf);
	double *tb = malloc((size_t)runs * sizeof *tb);
	int rc = 1;
	if (!x || !y || !dx || !dy || !w || !dw || !xh || !yh || !tf || !tb)
		goto cleanup;
	pno_rng_normal(x, nx, 1, 0, 0);
	pno_rng_normal(dy, ny, 1, 1, 0);
	pno_rng_normal(w, nw, 1, 2, 0);
	enum pno_spectral_path chosen = pno_spectral_path_get(&s);
	for (int p = PNO_SPECTRAL_PATH_GEMM; p <= PNO_SPECTRAL_PATH_FFTW; p++) {
		if (pno_spectral_set_path(&s, (enum pno_spectral_path)p) != PNO_STATUS_OK) {
			fprintf(stderr, "%s: %s\n", c->name, pno_last_error());
			goto cleanup;
		}
		for (int r = -2; r < runs; r++) {	/* two warm-up runs */
			double t0 = bench_now();
			pno_spectral_forward(&s, y, xh, yh, x, w, c->B);
			double t1 = bench_now();
			pno_spectral_backward(&s, dx, dw, yh, dy, xh, w, c->B);
			double t2 = bench_now();
			if (r >= 0) {
				tf[r] = 1e3 * (t1 - t0);	/* ms */
				tb[r] = 1e3 * (t2 - t1);
			}
		}
		printf("%-4s %-5s forward %8.3f ms  backward %8.3f ms%s\n", c->name,
		       path_name((enum pno_spectral_path)p),
		       bench_median(tf, runs), bench_median(tb, runs),
		       p == (int)chosen ? "  (auto)" : "");
	}
	rc = 0;
cleanup:
	pno_free(x);
	pno_free(y);
	pno_free(dx);
	pno_free(dy);
	pno_free(w);
	pno_free(dw);
	pno_free(xh);
	pno_free(yh);
	free(tf);
	free(tb);
	pno_spectral_free(&s);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct cfg cfgs[] = {
		{"2D", 2, 16, 32, 32, 64, 64, 12, 12},
		{"1D", 1, 32, 64, 64, 1024, 1, 16, 1},
	};
	int runs = argc > 1 ? atoi(argv[1]) : 15;
	if (runs < 7)
		runs = 7;
	printf("spectral bench: %d threads, median of %d runs\n",
	       pno_threads_get(), runs);
	printf("2D: B=16 Ci=Co=32 X=Y=64 M1=M2=12; 1D: B=32 C=64 X=1024 M=16\n");
	for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
		if (bench(&cfgs[i], runs))
			return 1;
	return 0;
}
