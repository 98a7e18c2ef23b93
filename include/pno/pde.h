/*
 * PDE data generators. Each writes a dataset in PDEBench's HDF5 layout
 * (see io.h) with root attributes recording the PDE, every parameter, the
 * solver, the grid, the seed and the pno version.
 *
 * Initial fields are Gaussian random fields N(0, sigma^2 (-Laplacian +
 * tau^2 I)^(-alpha)) on the periodic unit interval / square, synthesized
 * from independent Fourier coefficients. Sample i depends only on
 * (seed, i), never on the thread count.
 */
#ifndef PNO_PDE_H
#define PNO_PDE_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pno_grf_opts {
	double alpha, tau, sigma;
};

/* Periodic GRF sample `index` on an X (x Y) grid (Y = 1 in 1D), written to
 * out (X*Y doubles, row-major). If `decay` is not NULL, each Fourier mode k
 * is also multiplied by decay(|k|^2 (4 pi^2), ud) and written to out2: this
 * applies a diagonal operator exactly (used for the heat equation). */
enum pno_status pno_grf_periodic(double *out, double *out2, int dims, int X,
				 int Y, const struct pno_grf_opts *g,
				 uint64_t seed, uint64_t index,
				 double (*decay)(double lambda, void *ud),
				 void *ud);

struct pno_heat_opts {
	int dims;		/* 1 or 2 */
	int samples, res;
	double kappa;		/* diffusivity */
	double t_final;
	struct pno_grf_opts grf;
	uint64_t seed;
};
void pno_heat_opts_default(struct pno_heat_opts *o, int dims);

/* Periodic heat equation u_t = kappa Laplacian u, solved exactly in Fourier
 * space: u(T)_k = u0_k exp(-kappa 4 pi^2 |k|^2 T). Writes `tensor`
 * (N, 2, X[, Y]) holding u0 and u(T), `t-coordinate` [0, T],
 * `x-coordinate` (and `y-coordinate`) at cell starts i/X. */
enum pno_status pno_generate_heat(const struct pno_heat_opts *o,
				  const char *path, int overwrite);

#ifdef __cplusplus
}
#endif
#endif
