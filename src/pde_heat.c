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

/* Workspace of one periodic GRF synthesis: half-spectrum coefficients
 * (one or two fields) and the normals they are drawn from. Every buffer
 * comes from pno_malloc, so all are equally aligned and one c2r plan can be
 * executed on any workspace with FFTW's new-array interface. */
struct grf_work {
	int dims, nx, ny, nh;
	size_t ncoef;
	fftw_complex *c, *c2;	/* c2: NULL for one field */
	double *z;
};

static void grf_work_free(struct grf_work *w)
{
	pno_free(w->c);
	pno_free(w->c2);
	pno_free(w->z);
	memset(w, 0, sizeof *w);
}

static enum pno_status grf_work_init(struct grf_work *w, int dims, int X,
				     int Y, int two_fields)
{
	memset(w, 0, sizeof *w);
	w->dims = dims;
	w->nx = dims == 1 ? 1 : X;
	w->ny = dims == 1 ? X : Y;
	w->nh = w->ny / 2 + 1;
	w->ncoef = (size_t)w->nx * w->nh;
	w->c = pno_malloc(w->ncoef * sizeof *w->c);
	w->c2 = two_fields ? pno_malloc(w->ncoef * sizeof *w->c2) : NULL;
	w->z = pno_malloc(2 * w->ncoef * sizeof *w->z);
	if (!w->c || !w->z || (two_fields && !w->c2)) {
		grf_work_free(w);
		return pno__errorf(PNO_STATUS_NOMEM, "GRF: out of memory");
	}
	return PNO_STATUS_OK;
}

/* Draw the coefficients of sample `index` (and, with c2, the same field
 * multiplied mode by mode by decay). */
static void grf_coeffs(struct grf_work *w, const struct pno_grf_opts *g,
		       uint64_t seed, uint64_t index,
		       double (*decay)(double lambda, void *ud), void *ud)
{
	int nx = w->nx, ny = w->ny, nh = w->nh, dims = w->dims;
	const double *z = w->z;
	pno_rng_normal_f64(w->z, 2 * w->ncoef, seed, index, 0);
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
			w->c[id] = re + I * im;
			if (w->c2)
				w->c2[id] = w->c[id] * decay(lam, ud);
		}
	}
}

/* c2r plan for w's shape, planned on w->c and out (FFTW_ESTIMATE leaves
 * both untouched). The planner is not thread-safe: serialize it. */
static fftw_plan grf_plan(const struct grf_work *w, double *out)
{
	fftw_plan plan;
	pthread_mutex_lock(&plan_lock);
	if (w->dims == 1)
		plan = fftw_plan_dft_c2r_1d(w->ny, w->c, out, FFTW_ESTIMATE);
	else
		plan = fftw_plan_dft_c2r_2d(w->nx, w->ny, w->c, out,
					    FFTW_ESTIMATE);
	pthread_mutex_unlock(&plan_lock);
	return plan;
}

static void grf_plan_destroy(fftw_plan plan)
{
	if (!plan)
		return;
	pthread_mutex_lock(&plan_lock);
	fftw_destroy_plan(plan);
	pthread_mutex_unlock(&plan_lock);
}

/* c2r destroys its input: the second field first, then the first. */
static void grf_synthesize(fftw_plan plan, struct grf_work *w, double *out,
			   double *out2)
{
	if (w->c2)
		fftw_execute_dft_c2r(plan, w->c2, out2);
	fftw_execute_dft_c2r(plan, w->c, out);
}

enum pno_status pno_grf_periodic(double *out, double *out2, int dims, int X,
				 int Y, const struct pno_grf_opts *g,
				 uint64_t seed, uint64_t index,
				 double (*decay)(double lambda, void *ud),
				 void *ud)
{
	struct grf_work w;
	enum pno_status st;
	if (dims == 1)
		Y = 1;
	if ((st = grf_work_init(&w, dims, X, Y, out2 != NULL)) != PNO_STATUS_OK)
		return st;
	grf_coeffs(&w, g, seed, index, decay, ud);
	fftw_plan plan = grf_plan(&w, out);
	if (!plan) {
		st = pno__errorf(PNO_STATUS_INTERNAL, "GRF: FFTW plan failed");
	} else {
		grf_synthesize(plan, &w, out, out2);
		grf_plan_destroy(plan);
	}
	grf_work_free(&w);
	return st;
}

void pno_heat_opts_default(struct pno_heat_opts *o, int dims)
{
	memset(o, 0, sizeof *o);
	o->dims = dims;
	o->base.samples = 1000;
	o->base.res = dims == 1 ? 256 : 64;
	o->kappa = 0.01;
	o->t_final = 0.2;
	o->grf.alpha = 2.0;
	o->grf.tau = 5.0;
	o->grf.sigma = 25.0;
	o->base.seed = 0;
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
	if (o->base.samples < 1 || o->base.samples > 10000000)
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: --samples %d must be in [1, 1e7]", o->base.samples);
	if (o->base.res < 4 || o->base.res > (o->dims == 1 ? 1 << 20 : 4096))
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: --res %d must be in [4, %d]", o->base.res,
				   o->dims == 1 ? 1 << 20 : 4096);
	if (!(o->kappa > 0) || !(o->t_final > 0) || !(o->grf.tau >= 0) ||
	    !(o->grf.alpha > 0) || !(o->grf.sigma > 0))
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: kappa, t-final, alpha and sigma must "
				   "be > 0, tau >= 0");
	int X = o->base.res, Y = o->dims == 2 ? o->base.res : 1;
	size_t P = (size_t)X * Y, N = (size_t)o->base.samples;
	size_t total;
	if (pno__mul_overflow(N * 2, P, &total) || total > ((size_t)1 << 33))
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: %d samples at resolution %d are too "
				   "large", o->base.samples, o->base.res);
	float *tensor = pno_malloc(total * sizeof(float));
	float *xc = pno_malloc((size_t)X * sizeof(float));
	enum pno_status st = PNO_STATUS_OK;
	struct grf_work scratch = {0};
	double *scratch_out = NULL;
	fftw_plan plan = NULL;
	if (!tensor || !xc) {
		st = pno__errorf(PNO_STATUS_NOMEM, "heat: out of memory");
		goto out;
	}
	struct heat_decay hd = {o->kappa * o->t_final};
	/* one plan for all samples, made on a scratch workspace and executed
	 * on each thread's own (equally aligned) buffers */
	scratch_out = pno_malloc(P * sizeof(double));
	if (!scratch_out ||
	    grf_work_init(&scratch, o->dims, X, Y, 0) != PNO_STATUS_OK) {
		st = pno__errorf(PNO_STATUS_NOMEM, "heat: out of memory");
		goto out;
	}
	plan = grf_plan(&scratch, scratch_out);
	if (!plan) {
		st = pno__errorf(PNO_STATUS_INTERNAL, "heat: FFTW plan failed");
		goto out;
	}
	int failed = 0;
#pragma omp parallel
	{
		struct grf_work w = {0};
		double *u0 = pno_malloc(P * sizeof(double));
		double *u1 = pno_malloc(P * sizeof(double));
		if (!u0 || !u1 ||
		    grf_work_init(&w, o->dims, X, Y, 1) != PNO_STATUS_OK) {
#pragma omp atomic write
			failed = 1;
		}
#pragma omp for schedule(dynamic, 4)
		for (long n = 0; n < (long)N; n++) {
			if (failed)
				continue;
			grf_coeffs(&w, &o->grf, o->base.seed, (uint64_t)n, heat_decay,
				   &hd);
			grf_synthesize(plan, &w, u0, u1);
			float *dst = tensor + (size_t)n * 2 * P;
			for (size_t p = 0; p < P; p++) {
				dst[p] = (float)u0[p];
				dst[P + p] = (float)u1[p];
			}
		}
		grf_work_free(&w);
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
		{"tensor", 2 + o->dims, {o->base.samples, 2, X, Y}, tensor},
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
		{"seed", NULL, (double)o->base.seed},
		{"samples", NULL, (double)o->base.samples},
		{"resolution", NULL, (double)o->base.res},
		{"dims", NULL, (double)o->dims},
	};
	st = pno_h5_write(path, arrays, o->dims == 2 ? 4 : 3, attrs,
			  (int)(sizeof attrs / sizeof attrs[0]), overwrite);
out:
	grf_plan_destroy(plan);
	grf_work_free(&scratch);
	pno_free(scratch_out);
	pno_free(tensor);
	pno_free(xc);
	return st;
}
