/* Gaussian random fields with Neumann (cosine) modes on the vertex grid of
 * [0,1]^d, synthesized with FFTW's DCT-I (REDFT00). */
#include "pde_grf_neumann.h"
#include "internal.h"
#include "spectral_impl.h"

#include <math.h>
#include <string.h>

enum pno_status pno__grf_neumann_check(const struct pno_grf_opts *g,
				       const char *who)
{
	if (!g)
		return pno__errorf(PNO_STATUS_INVALID, "%s: no GRF options", who);
	if (!isfinite(g->alpha) || !(g->alpha >= 0))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --alpha %g must be finite and >= 0", who,
				   g->alpha);
	if (!isfinite(g->tau) || !(g->tau >= 0) ||
	    (g->tau == 0 && g->alpha > 0))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --tau %g must be finite and > 0 (the "
				   "constant mode's variance is sigma^2 "
				   "tau^(-2 alpha))", who, g->tau);
	if (!isfinite(g->sigma) || !(g->sigma >= 0))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --sigma %g must be finite and >= 0", who,
				   g->sigma);
	return PNO_STATUS_OK;
}

void pno__grf_neumann_free(struct pno__grf_neumann *w)
{
	pno__fftw_destroy(&w->plan);
	pno_free(w->scale);
	pno_free(w->c);
	memset(w, 0, sizeof *w);
}

/* Factor turning the coefficient of phi_k (k = 0..n-1) into REDFT00 input:
 * REDFT00 computes Y_i = X_0 + (-1)^i X_{n-1} + 2 sum_{0<k<n-1} X_k
 * cos(pi k i/(n-1)), and phi_k = sqrt2 cos(pi k x) for k > 0, so
 * X_0 = c_0, X_{n-1} = sqrt2 c_{n-1}, X_k = c_k / sqrt2 otherwise. */
static double dct1_factor(int k, int n)
{
	if (k == 0)
		return 1.0;
	return k == n - 1 ? M_SQRT2 : M_SQRT1_2;
}

enum pno_status pno__grf_neumann_init(struct pno__grf_neumann *w, int dims,
				      int X, int Y,
				      const struct pno_grf_opts *g,
				      int zero_mean)
{
	enum pno_status st;
	memset(w, 0, sizeof *w);
	if (dims != 1 && dims != 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "GRF: dims %d must be 1 or 2", dims);
	if (dims == 1)
		Y = 1;
	if (X < 2 || (dims == 2 && Y < 2) || X > (1 << 24) || Y > (1 << 24))
		return pno__errorf(PNO_STATUS_INVALID,
				   "GRF: grid %d x %d must have 2 to 2^24 points "
				   "per axis", X, Y);
	if ((st = pno__grf_neumann_check(g, "GRF")) != PNO_STATUS_OK)
		return st;
	size_t P;
	if (pno__mul_overflow((size_t)X, (size_t)Y, &P) ||
	    P > ((size_t)1 << 32))
		return pno__errorf(PNO_STATUS_INVALID,
				   "GRF: grid %d x %d is too large", X, Y);
	w->dims = dims;
	w->X = X;
	w->Y = Y;
	w->scale = pno_malloc(P * sizeof *w->scale);
	w->c = pno_malloc(P * sizeof *w->c);
	if (!w->scale || !w->c) {
		pno__grf_neumann_free(w);
		return pno__errorf(PNO_STATUS_NOMEM, "GRF: out of memory");
	}
	const double pi2 = M_PI * M_PI, tau2 = g->tau * g->tau;
	for (int i = 0; i < X; i++) {
		for (int j = 0; j < Y; j++) {
			double kk = (double)i * i + (double)j * j;
			double sd = g->alpha == 0
					    ? g->sigma
					    : g->sigma *
						      pow(pi2 * kk + tau2, -g->alpha / 2);
			double f = dct1_factor(i, X);
			if (dims == 2)
				f *= dct1_factor(j, Y);
			w->scale[(size_t)i * Y + j] = sd * f;
		}
	}
	if (zero_mean)
		w->scale[0] = 0.0;
	/* in place on the workspace's own buffer: the plan never sees
	 * another array, so every workspace of this shape (equally aligned
	 * by pno_malloc) runs the same ESTIMATE plan and gives the same
	 * bits */
	pno__fftw_lock();
	if (dims == 1)
		w->plan = fftw_plan_r2r_1d(X, w->c, w->c, FFTW_REDFT00,
					   FFTW_ESTIMATE);
	else
		w->plan = fftw_plan_r2r_2d(X, Y, w->c, w->c, FFTW_REDFT00,
					   FFTW_REDFT00, FFTW_ESTIMATE);
	pno__fftw_unlock();
	if (!w->plan) {
		pno__grf_neumann_free(w);
		return pno__errorf(PNO_STATUS_INTERNAL, "GRF: FFTW plan failed");
	}
	return PNO_STATUS_OK;
}

void pno__grf_neumann_draw(struct pno__grf_neumann *w, double *out,
			   uint64_t seed, uint64_t index)
{
	size_t P = (size_t)w->X * w->Y;
	pno_rng_normal_f64(w->c, P, seed, index, 0);
	for (size_t k = 0; k < P; k++)
		w->c[k] *= w->scale[k];
	fftw_execute(w->plan);
	memcpy(out, w->c, P * sizeof *out);
}

enum pno_status pno_grf_neumann(double *out, int dims, int X, int Y,
				const struct pno_grf_opts *g, uint64_t seed,
				uint64_t index)
{
	struct pno__grf_neumann w;
	enum pno_status st;
	if (!out)
		return pno__errorf(PNO_STATUS_INVALID, "GRF: no output array");
	if ((st = pno__grf_neumann_init(&w, dims, X, Y, g, 0)) != PNO_STATUS_OK)
		return st;
	pno__grf_neumann_draw(&w, out, seed, index);
	pno__grf_neumann_free(&w);
	return PNO_STATUS_OK;
}
