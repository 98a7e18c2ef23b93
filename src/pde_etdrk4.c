/* ETDRK4 with Kassam-Trefethen coefficients for 1D periodic equations
 * u_t = L u - (u^2/2)_x (see pde_etdrk4.h). */
#include "pde_etdrk4.h"
#include "spectral_impl.h"

#include <math.h>
#include <string.h>

/* glibc defines CMPLX only for gcc >= 4.7; clang (which claims gcc 4.2)
 * has the same builtin: without this a clang build does not link */
#ifndef CMPLX
#define CMPLX(x, y) __builtin_complex((double)(x), (double)(y))
#endif

enum { NREAL = 9, NCPLX = 8 };	/* arrays of nh in the two blocks */

void pno__etdrk4_free(struct pno__etdrk4 *w)
{
	pno__fftw_destroy(&w->r2c);
	pno__fftw_destroy(&w->c2r);
	pno_free(w->k);		/* heads of the two blocks */
	pno_free(w->v);
	pno_free(w->spec);
	pno_free(w->phys);
	memset(w, 0, sizeof *w);
}

enum pno_status pno__etdrk4_init(struct pno__etdrk4 *w, int n, double length,
				 const char *who)
{
	memset(w, 0, sizeof *w);
	w->n = n;
	w->nh = n / 2 + 1;
	w->mmax = n / 3;
	size_t nh = (size_t)w->nh;
	w->k = pno_calloc(NREAL * nh, sizeof(double));
	w->v = pno_calloc(NCPLX * nh, sizeof(double complex));
	w->spec = pno_calloc(nh, sizeof(double complex));
	w->phys = pno_calloc((size_t)n, sizeof(double));
	if (!w->k || !w->v || !w->spec || !w->phys) {
		pno__etdrk4_free(w);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", who);
	}
	double **re[NREAL] = {&w->k, &w->lin, &w->gi, &w->E, &w->E2,
			      &w->Q, &w->f1, &w->f2, &w->f3};
	for (int i = 1; i < NREAL; i++)
		*re[i] = w->k + i * nh;
	double complex **cx[NCPLX] = {&w->v, &w->a, &w->b, &w->c,
				      &w->Nv, &w->Na, &w->Nb, &w->Nc};
	for (int i = 1; i < NCPLX; i++)
		*cx[i] = w->v + i * nh;

	const double two_pi = 6.283185307179586;
	double inv_n2 = 1.0 / ((double)n * n);
	for (int m = 0; m < w->nh; m++) {
		w->k[m] = two_pi * m / length;
		w->gi[m] = m <= w->mmax ? -0.5 * w->k[m] * inv_n2 : 0.0;
	}
	pno__fftw_lock();
	w->r2c = fftw_plan_dft_r2c_1d(n, w->phys, w->spec, FFTW_ESTIMATE);
	w->c2r = fftw_plan_dft_c2r_1d(n, w->spec, w->phys, FFTW_ESTIMATE);
	pno__fftw_unlock();
	if (!w->r2c || !w->c2r) {
		pno__etdrk4_free(w);
		return pno__errorf(PNO_STATUS_INTERNAL, "%s: FFTW plan failed", who);
	}
	return PNO_STATUS_OK;
}

void pno__etdrk4_coeffs(struct pno__etdrk4 *w, double h)
{
	enum { MH = PNO__ETDRK4_CONTOUR_M / 2 };
	long double complex r[MH], er[MH], er2[MH];
	const long double pi = 3.141592653589793238462643383279503L;
	if (w->h == h)
		return;
	for (int j = 0; j < MH; j++) {
		r[j] = cexpl(I * pi * (j + 0.5L) / MH);
		er[j] = cexpl(r[j]);
		er2[j] = cexpl(r[j] / 2);
	}
	for (int m = 0; m < w->nh; m++) {
		long double hl = (long double)h * w->lin[m];
		long double e = expl(hl), e2 = expl(hl / 2);
		long double complex sq = 0, s1 = 0, s2 = 0, s3 = 0;
		/* mean over the circle |z - hL| = 1 of the phi-type functions
		 * (exact by the mean value property; the circle keeps z away
		 * from the cancellation at z = 0). e^z = e^{hL} e^{r_j}. */
		for (int j = 0; j < MH; j++) {
			long double complex z = hl + r[j], iz = 1 / z;
			long double complex ez = e * er[j], ez2 = e2 * er2[j];
			long double complex iz3 = iz * iz * iz;
			sq += (ez2 - 1) * iz;
			s1 += (-4 - z + ez * (4 - 3 * z + z * z)) * iz3;
			s2 += (2 + z + ez * (z - 2)) * iz3;
			s3 += (-4 - 3 * z - z * z + ez * (4 - z)) * iz3;
		}
		w->Q[m] = (double)(h * creall(sq) / MH);
		w->f1[m] = (double)(h * creall(s1) / MH);
		w->f2[m] = (double)(h * creall(s2) / MH);
		w->f3[m] = (double)(h * creall(s3) / MH);
		w->E[m] = exp(h * w->lin[m]);
		w->E2[m] = exp(h * w->lin[m] / 2);
	}
	w->h = h;
}

void pno__etdrk4_load(struct pno__etdrk4 *w, const double *u)
{
	memcpy(w->phys, u, (size_t)w->n * sizeof *u);
	fftw_execute(w->r2c);
	memcpy(w->v, w->spec, (size_t)w->nh * sizeof *w->v);
}

/* out = N(v) = -(i k / 2) FFT(u^2), product modes above mmax dropped */
static void nonlin(struct pno__etdrk4 *w, double complex *out,
		   const double complex *v)
{
	int n = w->n, nh = w->nh;
	double *p = w->phys;
	memcpy(w->spec, v, (size_t)nh * sizeof *v);	/* c2r destroys input */
	fftw_execute(w->c2r);
	for (int i = 0; i < n; i++)
		p[i] *= p[i];
	fftw_execute(w->r2c);
	for (int m = 0; m < nh; m++) {
		double complex s = w->spec[m];
		out[m] = CMPLX(-w->gi[m] * cimag(s), w->gi[m] * creal(s));
	}
}

void pno__etdrk4_step(struct pno__etdrk4 *w)
{
	int nh = w->nh;
	double complex *restrict v = w->v, *restrict a = w->a,
			       *restrict b = w->b, *restrict c = w->c;
	const double complex *Nv = w->Nv, *Na = w->Na, *Nb = w->Nb,
			     *Nc = w->Nc;
	const double *E = w->E, *E2 = w->E2, *Q = w->Q;
	nonlin(w, w->Nv, v);
	for (int m = 0; m < nh; m++)
		a[m] = E2[m] * v[m] + Q[m] * Nv[m];
	nonlin(w, w->Na, a);
	for (int m = 0; m < nh; m++)
		b[m] = E2[m] * v[m] + Q[m] * Na[m];
	nonlin(w, w->Nb, b);
	for (int m = 0; m < nh; m++)
		c[m] = E2[m] * a[m] + Q[m] * (2 * Nb[m] - Nv[m]);
	nonlin(w, w->Nc, c);
	for (int m = 0; m < nh; m++)
		v[m] = E[m] * v[m] + w->f1[m] * Nv[m] +
		       2 * w->f2[m] * (Na[m] + Nb[m]) + w->f3[m] * Nc[m];
}

double pno__etdrk4_physical(struct pno__etdrk4 *w)
{
	int n = w->n;
	double inv = 1.0 / n, mx = 0;
	int finite = 1;
	memcpy(w->spec, w->v, (size_t)w->nh * sizeof *w->v);
	fftw_execute(w->c2r);
	for (int i = 0; i < n; i++) {
		double x = w->phys[i] * inv;
		w->phys[i] = x;
		finite &= isfinite(x) != 0;
		mx = fmax(mx, fabs(x));
	}
	return finite ? mx : NAN;
}
