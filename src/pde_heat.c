/* Periodic Gaussian random fields and the exact heat-equation generator. */
#include "pno/pde.h"
#include "pno/io.h"
#include "internal.h"

#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

/* Signed wavenumber of FFT index i on n points. */
static inline int wavenumber(int i, int n) { return i <= n / 2 ? i : i - n; }

enum pno_status pno_grf_periodic(double *out, double *out2, int dims, int X,
				 int Y, const struct pno_grf_opts *g,
				 uint64_t seed, uint64_t index,
				 double (*decay)(double lambda, void *ud),
				 void *ud)
{
	if (dims == 1)
		Y = 1;
	int nx = dims == 1 ? 1 : X, ny = dims == 1 ? X : Y;
	int nh = ny / 2 + 1;
	size_t ncoef = (size_t)nx * nh;
	fftw_complex *c = pno_malloc(ncoef * sizeof *c);
	fftw_complex *c2 = out2 ? pno_malloc(ncoef * sizeof *c2) : NULL;
	double *z = pno_malloc(2 * ncoef * sizeof *z);
	fftw_plan plan = NULL;
	enum pno_status st = PNO_STATUS_OK;
	if (!c || !z || (out2 && !c2)) {
		st = pno__errorf(PNO_STATUS_NOMEM, "GRF: out of memory");
		goto out;
	}
	pno_rng_normal_f64(z, 2 * ncoef, seed, index, 0);
	const double two_pi = 6.283185307179586;
	for (int i = 0; i < nx; i++) {
		int kx = dims == 1 ? 0 : wavenumber(i, nx);
		for (int j = 0; j < nh; j++) {
			int ky = j;
			size_t id = (size_t)i * nh + j;
			double lam = two_pi * two_pi * ((double)kx * kx + (double)ky * ky);
			double sd = g->sigma * pow(lam + g->tau * g->tau, -g->alpha / 2);
			/* self-conjugate modes are real with variance sd^2;
			 * others complex with E|c|^2 = sd^2 (each part sd^2/2).
			 * c2r then adds the mirrored half, so the field has
			 * covariance sum_k sd_k^2 e_k e_k^*. */
			int selfconj = (ky == 0 || 2 * ky == ny) &&
				       (kx == 0 || (dims == 2 && 2 * i == nx));
			double re, im;
			if (selfconj) {
				re = sd * z[2 * id];
				im = 0.0;
			} else {
				re = sd * z[2 * id] * M_SQRT1_2;
				im = sd * z[2 * id + 1] * M_SQRT1_2;
			}
			/* FFTW c2r is unnormalized: u(x) = sum_k c_k e^{ikx}
			 * as wanted. Enforce Hermitian pairs in column 0
			 * (and Nyquist) of 2D by taking the kx >= 0 draw. */
			if (dims == 2 && (ky == 0 || 2 * ky == ny) && kx < 0) {
				size_t mirror = (size_t)(nx - i) * nh + j;
				re = sd * z[2 * mirror] * M_SQRT1_2;
				im = -sd * z[2 * mirror + 1] * M_SQRT1_2;
			}
			c[id] = re + I * im;
			if (c2)
				c2[id] = c[id] * decay(lam, ud);
		}
	}
	pthread_mutex_lock(&plan_lock);
	if (dims == 1)
		plan = fftw_plan_dft_c2r_1d(ny, c, out, FFTW_ESTIMATE);
	else
		plan = fftw_plan_dft_c2r_2d(nx, ny, c, out, FFTW_ESTIMATE);
	pthread_mutex_unlock(&plan_lock);
	if (!plan) {
		st = pno__errorf(PNO_STATUS_INTERNAL, "GRF: FFTW plan failed");
		goto out;
	}
	/* c2r destroys its input: transform the second field first */
	if (c2)
		fftw_execute_dft_c2r(plan, c2, out2);
	fftw_execute_dft_c2r(plan, c, out);
out:
	if (plan) {
		pthread_mutex_lock(&plan_lock);
		fftw_destroy_plan(plan);
		pthread_mutex_unlock(&plan_lock);
	}
	pno_free(c);
	pno_free(c2);
	pno_free(z);
	return st;
}

void pno_heat_opts_default(struct pno_heat_opts *o, int dims)
{
	memset(o, 0, sizeof *o);
	o->dims = dims;
	o->samples = 1000;
	o->res = dims == 1 ? 256 : 64;
	o->kappa = 0.01;
	o->t_final = 0.2;
	o->grf.alpha = 2.0;
	o->grf.tau = 5.0;
	o->grf.sigma = 25.0;
	o->seed = 0;
}

struct heat_decay {
	double kt;
};

static double heat_decay(double lam, void *ud)
{
	return exp(-lam * ((struct heat_decay *)ud)->kt);
}

enum pno_status pno_generate_heat(const struct pno_heat_opts *o,
				  const char *path, int overwrite)
{
	if (o->dims != 1 && o->dims != 2)
		return pno__errorf(PNO_STATUS_INVALID, "heat: --dim %d must be 1 or 2", o->dims);
	if (o->samples < 1 || o->samples > 10000000)
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: --samples %d must be in [1, 1e7]", o->samples);
	if (o->res < 4 || o->res > (o->dims == 1 ? 1 << 20 : 4096))
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: --res %d must be in [4, %d]", o->res,
				   o->dims == 1 ? 1 << 20 : 4096);
	if (!(o->kappa > 0) || !(o->t_final > 0) || !(o->grf.tau >= 0) ||
	    !(o->grf.alpha > 0) || !(o->grf.sigma > 0))
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: kappa, t-final, alpha and sigma must "
				   "be > 0, tau >= 0");
	int X = o->res, Y = o->dims == 2 ? o->res : 1;
	size_t P = (size_t)X * Y, N = (size_t)o->samples;
	size_t total;
	if (pno__mul_overflow(N * 2, P, &total) || total > ((size_t)1 << 33))
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: %d samples at resolution %d are too "
				   "large", o->samples, o->res);
	float *tensor = pno_malloc(total * sizeof(float));
	float *xc = pno_malloc((size_t)X * sizeof(float));
	enum pno_status st = PNO_STATUS_OK;
	if (!tensor || !xc) {
		st = pno__errorf(PNO_STATUS_NOMEM, "heat: out of memory");
		goto out;
	}
	struct heat_decay hd = {o->kappa * o->t_final};
	int failed = 0;
#pragma omp parallel
	{
		double *u0 = pno_malloc(P * sizeof(double));
		double *u1 = pno_malloc(P * sizeof(double));
		if (!u0 || !u1) {
#pragma omp atomic write
			failed = 1;
		}
#pragma omp for schedule(dynamic, 4)
		for (long n = 0; n < (long)N; n++) {
			if (!u0 || !u1 || failed)
				continue;
			if (pno_grf_periodic(u0, u1, o->dims, X, Y, &o->grf,
					     o->seed, (uint64_t)n, heat_decay,
					     &hd) != PNO_STATUS_OK) {
#pragma omp atomic write
				failed = 1;
				continue;
			}
			float *dst = tensor + (size_t)n * 2 * P;
			for (size_t p = 0; p < P; p++) {
				dst[p] = (float)u0[p];
				dst[P + p] = (float)u1[p];
			}
		}
		pno_free(u0);
		pno_free(u1);
	}
	if (failed) {
		st = pno__errorf(PNO_STATUS_NOMEM, "heat: out of memory");
		goto out;
	}
	for (int i = 0; i < X; i++)
		xc[i] = (float)i / (float)X;
	float tc[2] = {0.0f, (float)o->t_final};
	struct pno_h5_array arrays[4] = {
		{"tensor", 2 + o->dims, {o->samples, 2, X, Y}, tensor},
		{"t-coordinate", 1, {2}, tc},
		{"x-coordinate", 1, {X}, xc},
		{"y-coordinate", 1, {Y}, xc},
	};
	struct pno_h5_attr attrs[] = {
		{"pde", o->dims == 1 ? "heat1d" : "heat2d", 0},
		{"solver", "exact Fourier-space solution", 0},
		{"pno_version", PNO_VERSION_STRING, 0},
		{"kappa", NULL, o->kappa},
		{"t_final", NULL, o->t_final},
		{"grf_alpha", NULL, o->grf.alpha},
		{"grf_tau", NULL, o->grf.tau},
		{"grf_sigma", NULL, o->grf.sigma},
		{"seed", NULL, (double)o->seed},
		{"samples", NULL, (double)o->samples},
		{"resolution", NULL, (double)o->res},
		{"dims", NULL, (double)o->dims},
	};
	st = pno_h5_write(path, arrays, o->dims == 2 ? 4 : 3, attrs,
			  (int)(sizeof attrs / sizeof attrs[0]), overwrite);
out:
	pno_free(tensor);
	pno_free(xc);
	return st;
}
