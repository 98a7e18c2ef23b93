/* Periodic Gaussian random fields (1D-3D), synthesized with FFTW c2r from
 * independent Fourier coefficients, and their diagonal evolution (the
 * exact heat and wave generators apply a multiplier per mode and frame). */
#include "internal.h"
#include "pde_grf.h"
#include "spectral_impl.h"

#include <math.h>
#include <string.h>

/* Signed wavenumber of FFT index i on n points. */
static inline int wavenumber(int i, int n) { return i <= n / 2 ? i : i - n; }

void pno__grf_free(struct pno__grf *w)
{
	pno__fftw_destroy(&w->plan);
	pno_free(w->c);
	pno_free(w->c2);
	pno_free(w->lam);
	pno_free(w->z);
	memset(w, 0, sizeof *w);
}

enum pno_status pno__grf_init(struct pno__grf *w, int dims, int X, int Y,
			      int Z)
{
	memset(w, 0, sizeof *w);
	if (dims < 1 || dims > 3 || X < 1 || (dims > 1 && Y < 1) ||
	    (dims > 2 && Z < 1))
		return pno__errorf(PNO_STATUS_INVALID, "GRF: bad grid");
	/* the last axis is the halved one: (1,1,X), (1,X,Y) or (X,Y,Z) */
	w->dims = dims;
	w->n[0] = dims == 3 ? X : 1;
	w->n[1] = dims == 3 ? Y : dims == 2 ? X : 1;
	w->n[2] = dims == 3 ? Z : dims == 2 ? Y : X;
	w->nh = w->n[2] / 2 + 1;
	w->npts = (size_t)w->n[0] * w->n[1] * w->n[2];
	w->ncoef = (size_t)w->n[0] * w->n[1] * w->nh;
	w->c = pno_malloc(w->ncoef * sizeof *w->c);
	w->c2 = pno_malloc(w->ncoef * sizeof *w->c2);
	w->lam = pno_malloc(w->ncoef * sizeof *w->lam);
	w->z = pno_malloc(2 * w->ncoef * sizeof *w->z);
	double *probe = pno_malloc(w->npts * sizeof *probe);
	if (!w->c || !w->c2 || !w->lam || !w->z || !probe) {
		pno_free(probe);
		pno__grf_free(w);
		return pno__errorf(PNO_STATUS_NOMEM, "GRF: out of memory");
	}
	pno__fftw_lock();
	/* FFTW_ESTIMATE: deterministic plans that leave the arrays alone */
	if (dims == 1)
		w->plan = fftw_plan_dft_c2r_1d(w->n[2], w->c2, probe,
					       FFTW_ESTIMATE);
	else if (dims == 2)
		w->plan = fftw_plan_dft_c2r_2d(w->n[1], w->n[2], w->c2, probe,
					       FFTW_ESTIMATE);
	else
		w->plan = fftw_plan_dft_c2r_3d(w->n[0], w->n[1], w->n[2], w->c2,
					       probe, FFTW_ESTIMATE);
	pno__fftw_unlock();
	pno_free(probe);
	if (!w->plan) {
		pno__grf_free(w);
		return pno__errorf(PNO_STATUS_INTERNAL, "GRF: FFTW plan failed");
	}
	return PNO_STATUS_OK;
}

void pno__grf_draw(struct pno__grf *w, const struct pno_grf_opts *g,
		   uint64_t seed, uint64_t index)
{
	const int *n = w->n;
	const int nh = w->nh;
	const double *z = w->z;
	const double two_pi = 6.283185307179586;
	pno_rng_normal_f64(w->z, 2 * w->ncoef, seed, index, 0);
	for (int i0 = 0; i0 < n[0]; i0++)
		for (int i1 = 0; i1 < n[1]; i1++)
			for (int j = 0; j < nh; j++) {
				int k0 = wavenumber(i0, n[0]);
				int k1 = wavenumber(i1, n[1]);
				size_t id = ((size_t)i0 * n[1] + i1) * nh + j;
				double ksq = (double)k0 * k0 + (double)k1 * k1 +
					     (double)j * j;
				double lam = two_pi * two_pi * ksq;
				double sd = g->sigma *
					    pow(lam + g->tau * g->tau, -g->alpha / 2);
				w->lam[id] = lam;
				/* In the planes j = 0 and 2j = n2 the
				 * coefficient at (i0, i1) must be the
				 * conjugate of the one at (-i0, -i1): the
				 * lexicographically smaller index draws, its
				 * mirror conjugates that draw; a self-mirror
				 * mode is real with variance sd^2. Other
				 * modes are complex with E|c|^2 = sd^2; c2r
				 * adds the mirrored half, so the field has
				 * covariance sum_k sd_k^2 e_k e_k^*. */
				int edge = j == 0 || 2 * j == n[2];
				int m0 = (n[0] - i0) % n[0];
				int m1 = (n[1] - i1) % n[1];
				double re, im;
				if (edge && m0 == i0 && m1 == i1) {
					re = sd * z[2 * id];
					im = 0.0;
				} else if (edge && (m0 < i0 || (m0 == i0 && m1 < i1))) {
					size_t mid = ((size_t)m0 * n[1] + m1) * nh + j;
					re = sd * z[2 * mid] * M_SQRT1_2;
					im = -sd * z[2 * mid + 1] * M_SQRT1_2;
				} else {
					re = sd * z[2 * id] * M_SQRT1_2;
					im = sd * z[2 * id + 1] * M_SQRT1_2;
				}
				w->c[id][0] = re;
				w->c[id][1] = im;
			}
}

void pno__grf_synth(struct pno__grf *w, double (*mult)(double lam, void *ud),
		    void *ud, double *out)
{
	/* out must share the planning alignment (any pno_malloc block) */
	/* c2r destroys its input: work on the copy c2 */
	for (size_t id = 0; id < w->ncoef; id++) {
		double m = mult ? mult(w->lam[id], ud) : 1.0;
		w->c2[id][0] = w->c[id][0] * m;
		w->c2[id][1] = w->c[id][1] * m;
	}
	fftw_execute_dft_c2r(w->plan, w->c2, out);
}

static enum pno_status grf_once(double *out, double *out2, int dims, int X,
				int Y, int Z, const struct pno_grf_opts *g,
				uint64_t seed, uint64_t index,
				double (*decay)(double lambda, void *ud),
				void *ud)
{
	struct pno__grf w;
	enum pno_status st = pno__grf_init(&w, dims, X, Y, Z);
	if (st != PNO_STATUS_OK)
		return st;
	/* the plan wants the planning alignment (pno_malloc's): the caller's
	 * arrays may have any, so synthesize into our own and copy */
	double *tmp = pno_malloc(w.npts * sizeof *tmp);
	if (!tmp) {
		pno__grf_free(&w);
		return pno__errorf(PNO_STATUS_NOMEM, "GRF: out of memory");
	}
	pno__grf_draw(&w, g, seed, index);
	pno__grf_synth(&w, NULL, NULL, tmp);
	memcpy(out, tmp, w.npts * sizeof *tmp);
	if (out2) {
		pno__grf_synth(&w, decay, ud, tmp);
		memcpy(out2, tmp, w.npts * sizeof *tmp);
	}
	pno_free(tmp);
	pno__grf_free(&w);
	return PNO_STATUS_OK;
}

enum pno_status pno_grf_periodic(double *out, double *out2, int dims, int X,
				 int Y, const struct pno_grf_opts *g,
				 uint64_t seed, uint64_t index,
				 double (*decay)(double lambda, void *ud),
				 void *ud)
{
	if (dims != 1 && dims != 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "GRF: dims %d must be 1 or 2", dims);
	if (out2 && !decay)
		return pno__errorf(PNO_STATUS_INVALID,
				   "GRF: a second field needs a decay function");
	return grf_once(out, out2, dims, X, Y, 1, g, seed, index, decay, ud);
}

enum pno_status pno_grf_periodic3(double *out, int X, int Y, int Z,
				  const struct pno_grf_opts *g, uint64_t seed,
				  uint64_t index)
{
	return grf_once(out, NULL, 3, X, Y, Z, g, seed, index, NULL, NULL);
}
