/* 2D incompressible Navier-Stokes in vorticity form on the unit torus:
 *   w_t + u.grad w = nu Laplacian w + f,  -Laplacian psi = w,
 *   u = (psi_y, -psi_x),
 * pseudo-spectral on an n x n grid (FFTW r2c / c2r, doubles), and the data
 * generator built on it (docs/pde/navier-stokes.md).
 *
 * Spectra are kept unnormalized as FFTW's r2c returns them (n^2 times the
 * Fourier coefficient); the 1/n^2 is folded into the multipliers that feed
 * each c2r. Index (i, j) of the half spectrum is the wavevector
 * (kx, ky) = (wavenumber(i), j): the first array axis is x.
 *
 * Nonlinear term N(w) = P[(u . grad w)(Pw)] with P the 2/3 truncation
 * (modes with 3|kx| > n or 3|ky| > n dropped): velocity and gradient come
 * from the truncated vorticity and the product is truncated again, so the
 * pseudo-spectral product equals the Galerkin one (no aliasing) whenever
 * n is not a multiple of 3. Time stepping (Crank-Nicolson viscosity, Heun
 * for N and f, as in Li et al.'s FNO data solver), per mode with
 * a = 1 - dt nu lam / 2, b = 1 / (1 + dt nu lam / 2), lam = 4 pi^2 |k|^2:
 *   w~      = b (a w^n + dt (f - N(w^n)))
 *   w^{n+1} = b (a w^n + dt (f - (N(w^n) + N(w~)) / 2)).
 */
/* complex.h before fftw3.h (also via spectral_impl.h): fftw_complex is
 * then the C99 double complex */
#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pno/pde.h"
#include "internal.h"
#include "pde_grf.h"
#include "pde_internal.h"
#include "spectral_impl.h"

#define NS_TWO_PI 6.283185307179586
/* dt_out / dt above this is treated as a blow-up, not a step count */
#define NS_MAX_STEPS_PER_FRAME 1e9

static inline int wavenumber(int i, int n) { return i <= n / 2 ? i : i - n; }

/* Everything one solve on an n x n grid needs: made once (per thread in
 * the generator), reused for every sample; the time loop allocates
 * nothing. All buffers come from pno_malloc (PNO_ALIGN-aligned) so the
 * plans, made on u / tmp[0], run on any of them. */
struct ns_work {
	int n, nh;		/* grid n x n; half spectrum n x nh */
	size_t np, nc;		/* n*n reals, n*nh coefficients */
	fftw_plan r2c, c2r;
	double *u, *v, *wx, *wy;	/* (n, n) physical fields */
	fftw_complex *wh, *wp;		/* (n, nh) vorticity, predictor */
	fftw_complex *n1, *n2;		/* (n, nh) N(wh), N(wp) */
	fftw_complex *tmp[4];		/* (n, nh) c2r inputs (destroyed) */
	double *kx, *ky;		/* (n), (nh): 2 pi times wavenumber */
	double *keepx, *keepy;		/* (n), (nh): 1 kept by 2/3 rule, 0 not */
	double *cn_a, *cn_b;		/* (n, nh) Crank-Nicolson factors */
};

static void ns_work_free(struct ns_work *w)
{
	pno__fftw_destroy(&w->r2c);
	pno__fftw_destroy(&w->c2r);
	double *reals[] = {w->u, w->v, w->wx, w->wy, w->kx, w->ky,
			   w->keepx, w->keepy, w->cn_a, w->cn_b};
	for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
		pno_free(reals[i]);
	fftw_complex *cx[] = {w->wh, w->wp, w->n1, w->n2,
			      w->tmp[0], w->tmp[1], w->tmp[2], w->tmp[3]};
	for (size_t i = 0; i < sizeof cx / sizeof cx[0]; i++)
		pno_free(cx[i]);
	memset(w, 0, sizeof *w);
}

/* n even, 4 <= n <= 4096 (checked by the callers). */
static enum pno_status ns_work_init(struct ns_work *w, int n)
{
	memset(w, 0, sizeof *w);
	w->n = n;
	w->nh = n / 2 + 1;
	w->np = (size_t)n * n;
	w->nc = (size_t)n * w->nh;
	double **reals[] = {&w->u, &w->v, &w->wx, &w->wy};
	for (int i = 0; i < 4; i++)
		if (!(*reals[i] = pno_malloc(w->np * sizeof(double))))
			goto nomem;
	fftw_complex **cx[] = {&w->wh, &w->wp, &w->n1, &w->n2,
			       &w->tmp[0], &w->tmp[1], &w->tmp[2], &w->tmp[3]};
	for (int i = 0; i < 8; i++)
		if (!(*cx[i] = pno_malloc(w->nc * sizeof(fftw_complex))))
			goto nomem;
	w->kx = pno_malloc((size_t)n * sizeof(double));
	w->keepx = pno_malloc((size_t)n * sizeof(double));
	w->ky = pno_malloc((size_t)w->nh * sizeof(double));
	w->keepy = pno_malloc((size_t)w->nh * sizeof(double));
	w->cn_a = pno_malloc(w->nc * sizeof(double));
	w->cn_b = pno_malloc(w->nc * sizeof(double));
	if (!w->kx || !w->keepx || !w->ky || !w->keepy || !w->cn_a || !w->cn_b)
		goto nomem;
	for (int i = 0; i < n; i++) {
		int k = wavenumber(i, n);
		w->kx[i] = NS_TWO_PI * k;
		w->keepx[i] = 3 * abs(k) > n ? 0.0 : 1.0;
	}
	for (int j = 0; j < w->nh; j++) {
		w->ky[j] = NS_TWO_PI * j;
		w->keepy[j] = 3 * j > n ? 0.0 : 1.0;
	}
	/* FFTW_ESTIMATE neither reads nor writes the arrays while planning,
	 * and picks the same plan every time (bit-identical output) */
	pno__fftw_lock();
	w->r2c = fftw_plan_dft_r2c_2d(n, n, w->u, w->tmp[0], FFTW_ESTIMATE);
	w->c2r = fftw_plan_dft_c2r_2d(n, n, w->tmp[0], w->u, FFTW_ESTIMATE);
	pno__fftw_unlock();
	if (!w->r2c || !w->c2r) {
		ns_work_free(w);
		return pno__errorf(PNO_STATUS_INTERNAL,
				   "navier-stokes: FFTW plan failed (n = %d)", n);
	}
	return PNO_STATUS_OK;
nomem:
	ns_work_free(w);
	return pno__errorf(PNO_STATUS_NOMEM, "navier-stokes: out of memory");
}

/* The four c2r inputs from wh: truncated u = psi_y, v = -psi_x, w_x, w_y
 * (psi = w / lam, mean mode 0), scaled by 1/n^2. Complex arrays are
 * addressed as (re, im) pairs (C11 6.2.5: same layout) so the products by
 * i k stay plain real arithmetic. */
static void ns_fields(const struct ns_work *w, double *restrict tu,
		      double *restrict tv, double *restrict tx,
		      double *restrict ty, const double *restrict c)
{
	const int n = w->n, nh = w->nh;
	const double s = 1.0 / ((double)n * n);
	for (int i = 0; i < n; i++) {
		const double kx = w->kx[i], kx2 = kx * kx;
		const size_t row = (size_t)i * nh;
		for (int j = 0; j < nh; j++) {
			const size_t id = 2 * (row + j);
			const double m = w->keepx[i] * w->keepy[j] * s;
			const double ky = w->ky[j], lam = kx2 + ky * ky;
			const double cr = m * c[id], ci = m * c[id + 1];
			const double q = id == 0 ? 0.0 : 1.0 / lam;
			tu[id] = -ky * q * ci, tu[id + 1] = ky * q * cr;
			tv[id] = kx * q * ci, tv[id + 1] = -kx * q * cr;
			tx[id] = -kx * ci, tx[id + 1] = kx * cr;
			ty[id] = -ky * ci, ty[id + 1] = ky * cr;
		}
	}
}

/* u <- u w_x + v w_y (np points); returns max |u| + |v|. Four
 * independent maxima so the compiler can vectorize; NaNs are skipped here
 * and caught by the per-frame finiteness check. */
static double ns_product(double *restrict u, const double *restrict v,
			 const double *restrict wx, const double *restrict wy,
			 size_t np)
{
	double m4[4] = {0.0, 0.0, 0.0, 0.0};
	for (size_t p = 0; p < np; p += 4)	/* np = n^2, n even */
		for (int l = 0; l < 4; l++) {
			double a = fabs(u[p + l]) + fabs(v[p + l]);
			m4[l] = a > m4[l] ? a : m4[l];
		}
	for (size_t p = 0; p < np; p++)
		u[p] = u[p] * wx[p] + v[p] * wy[p];
	return fmax(fmax(m4[0], m4[1]), fmax(m4[2], m4[3]));
}

/* out = N(wh) (unnormalized, truncated, mean 0). Returns max over the
 * grid of |u| + |v| (the velocity advecting the truncated vorticity). */
static double ns_nonlinear(struct ns_work *w, const fftw_complex *wh,
			   fftw_complex *out)
{
	ns_fields(w, (double *)w->tmp[0], (double *)w->tmp[1],
		  (double *)w->tmp[2], (double *)w->tmp[3], (const double *)wh);
	fftw_execute_dft_c2r(w->c2r, w->tmp[0], w->u);
	fftw_execute_dft_c2r(w->c2r, w->tmp[1], w->v);
	fftw_execute_dft_c2r(w->c2r, w->tmp[2], w->wx);
	fftw_execute_dft_c2r(w->c2r, w->tmp[3], w->wy);
	double umax = ns_product(w->u, w->v, w->wx, w->wy, w->np);
	fftw_execute_dft_r2c(w->r2c, w->u, out);
	for (int i = 0; i < w->n; i++)
		for (int j = 0; j < w->nh; j++)
			if (w->keepx[i] * w->keepy[j] == 0.0)
				out[(size_t)i * w->nh + j] = 0.0;
	out[0] = 0.0;	/* mean of div(u w): zero exactly, not to rounding */
	return umax;
}

static void ns_cn_factors(struct ns_work *w, double nu, double dt)
{
	for (int i = 0; i < w->n; i++)
		for (int j = 0; j < w->nh; j++) {
			size_t id = (size_t)i * w->nh + j;
			double h = 0.5 * dt * nu *
				   (w->kx[i] * w->kx[i] + w->ky[j] * w->ky[j]);
			w->cn_a[id] = 1.0 - h;
			w->cn_b[id] = 1.0 / (1.0 + h);
		}
}

/* Receives frame k (n x n doubles, valid only during the call). */
typedef void (*ns_emit_fn)(void *ud, int k, const double *w);

struct ns_params {
	double nu, cfl, dt_max, dt_out;
	int forcing, nframes;
};

/* Solve from w0 (n*n, zero mean, finite: checked by the callers) on the
 * grid of w, handing every frame to emit. */
static enum pno_status ns_run(struct ns_work *w, const struct ns_params *pr,
			      const double *w0, ns_emit_fn emit, void *ud,
			      struct pno_solve_stats *stats)
{
	const int n = w->n, nh = w->nh;
	const size_t nc = w->nc;
	const double s = 1.0 / ((double)n * n), dx = 1.0 / n;
	/* f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)) = c e^{2pi i(x+y)} + conj,
	 * c = 0.05 (1 - i): the single stored mode (kx, ky) = (1, 1) */
	const size_t fid = (size_t)1 * nh + 1;
	const fftw_complex fc = pr->forcing ? 0.05 * (1.0 - I) / s : 0.0;
	long steps = 0;
	double dt_min = 0.0;

	emit(ud, 0, w0);
	memcpy(w->u, w0, w->np * sizeof(double));
	fftw_execute_dft_r2c(w->r2c, w->u, w->wh);
	w->wh[0] = 0.0;
	fftw_complex *wh = w->wh, *wp = w->wp, *n1 = w->n1, *n2 = w->n2;
	const double *a = w->cn_a, *b = w->cn_b;
	for (int k = 1; k < pr->nframes; k++) {
		double umax = ns_nonlinear(w, wh, n1);
		if (!isfinite(umax))
			return pno__errorf(PNO_STATUS_RANGE,
					   "navier-stokes: the solution blew up "
					   "before t = %g (try a smaller --cfl or "
					   "--dt-max)", (k - 1) * pr->dt_out);
		double dt_want = pr->dt_max;
		if (umax > 0 && pr->cfl * dx / umax < dt_want)
			dt_want = pr->cfl * dx / umax;
		if (!(pr->dt_out / dt_want <= NS_MAX_STEPS_PER_FRAME))
			return pno__errorf(PNO_STATUS_RANGE,
					   "navier-stokes: time step %g at t = %g "
					   "is too small (velocity %g)", dt_want,
					   (k - 1) * pr->dt_out, umax);
		long m = pno__steps_per_interval(pr->dt_out, dt_want);
		double dt = pr->dt_out / m;
		if (dt_min == 0.0 || dt < dt_min)
			dt_min = dt;
		ns_cn_factors(w, pr->nu, dt);
		for (long step = 0; step < m; step++) {
			if (step % PNO__CANCEL_POLL == 0 && pno__gen_cancelled())
				return pno__gen_cancel_status("navier-stokes");
			if (step > 0)
				ns_nonlinear(w, wh, n1);
			for (size_t id = 0; id < nc; id++)
				wp[id] = b[id] * (a[id] * wh[id] - dt * n1[id]);
			wp[fid] += b[fid] * dt * fc;
			ns_nonlinear(w, wp, n2);
			for (size_t id = 0; id < nc; id++)
				wh[id] = b[id] * (a[id] * wh[id] -
						  0.5 * dt * (n1[id] + n2[id]));
			wh[fid] += b[fid] * dt * fc;
			wh[0] = 0.0;
		}
		steps += m;
		for (size_t id = 0; id < nc; id++)
			w->tmp[0][id] = s * wh[id];
		fftw_execute_dft_c2r(w->c2r, w->tmp[0], w->u);
		for (size_t p = 0; p < w->np; p++)
			if (!isfinite(w->u[p]))
				return pno__errorf(PNO_STATUS_RANGE,
						   "navier-stokes: the solution "
						   "blew up before t = %g (try a "
						   "smaller --cfl or --dt-max)",
						   k * pr->dt_out);
		emit(ud, k, w->u);
	}
	if (stats) {
		stats->steps = steps;
		stats->dt = dt_min;
		stats->residual = 0.0;
	}
	return PNO_STATUS_OK;
}

/* Checks shared by pno_ns_solve and pno_generate_ns (flag names, since
 * the CLI prints these). */
static enum pno_status ns_check_params(const struct ns_params *pr)
{
	if (!(pr->nu > 0) || !isfinite(pr->nu))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --nu %g must be > 0", pr->nu);
	if (pr->forcing != 0 && pr->forcing != 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --forcing %d must be 0 or 1",
				   pr->forcing);
	if (!(pr->cfl > 0 && pr->cfl <= 2))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --cfl %g must be in (0, 2]",
				   pr->cfl);
	if (!(pr->dt_max > 0) || !isfinite(pr->dt_max))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --dt-max %g must be > 0",
				   pr->dt_max);
	if (pr->nframes > 1 && (!(pr->dt_out > 0) || !isfinite(pr->dt_out)))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --dt-out %g must be > 0",
				   pr->dt_out);
	return PNO_STATUS_OK;
}

/* w0 must be finite with zero mean (the vorticity of a periodic velocity
 * integrates to zero). Rounding-level means (|mean| <= 1e-10 max|w0|) are
 * accepted and projected out. */
static enum pno_status ns_check_w0(const double *w0, size_t np)
{
	double sum = 0.0, big = 0.0;
	for (size_t p = 0; p < np; p++) {
		if (!isfinite(w0[p]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "navier-stokes: initial vorticity is "
					   "not finite at point %zu", p);
		sum += w0[p];
		big = fmax(big, fabs(w0[p]));
	}
	double mean = sum / (double)np;
	if (fabs(mean) > 1e-10 * big)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: initial vorticity has mean %g "
				   "(must be zero on the torus)", mean);
	return PNO_STATUS_OK;
}

struct ns_traj {
	double *traj;
	size_t np;
};

static void ns_emit_traj(void *ud, int k, const double *w)
{
	struct ns_traj *t = ud;
	memcpy(t->traj + (size_t)k * t->np, w, t->np * sizeof(double));
}

enum pno_status pno_ns_solve(int n, double nu, int forcing, double cfl,
			     double dt_max, const double *w0, int nframes,
			     double dt_out, double *traj,
			     struct pno_solve_stats *stats)
{
	struct ns_params pr = {nu, cfl, dt_max, dt_out, forcing, nframes};
	enum pno_status st;
	if (n < 4 || n > 4096 || n % 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: grid size %d must be even and "
				   "in [4, 4096]", n);
	if (nframes < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: %d frames (need >= 1)", nframes);
	if (!w0 || !traj)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: NULL initial field or output");
	if ((st = ns_check_params(&pr)) != PNO_STATUS_OK)
		return st;
	if ((st = ns_check_w0(w0, (size_t)n * n)) != PNO_STATUS_OK)
		return st;
	struct ns_work w;
	if ((st = ns_work_init(&w, n)) != PNO_STATUS_OK)
		return st;
	struct ns_traj t = {traj, w.np};
	st = ns_run(&w, &pr, w0, ns_emit_traj, &t, stats);
	ns_work_free(&w);
	return st;
}

/* ---- generator ---- */

void pno_ns_opts_default(struct pno_ns_opts *o)
{
	memset(o, 0, sizeof *o);
	o->base.samples = 1000;
	o->base.res = 64;
	o->base.seed = 0;
	o->fine_res = 256;
	o->nu = 1e-3;
	o->t_final = 50.0;
	o->dt_out = 1.0;
	o->cfl = 0.5;
	o->dt_max = 1e-2;
	o->forcing = 1;
	o->grf.alpha = 2.5;
	o->grf.tau = 7.0;
	o->grf.sigma = pow(7.0, 0.75);	/* covariance 7^(3/2) (-Lap + 49)^(-2.5) */
}

struct ns_gen {
	const struct pno_ns_opts *o;
	struct ns_params pr;
	int T, stride;
};

struct ns_gen_ws {
	struct ns_work w;
	struct pno__grf grf;
	double *w0;	/* (fine, fine) initial vorticity */
};

static enum pno_status ns_ws_new(void *ctx, void **out)
{
	struct ns_gen *g = ctx;
	enum pno_status st;
	struct ns_gen_ws *ws = pno_calloc(1, sizeof *ws);
	if (!ws)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "navier-stokes: out of memory");
	int n = g->o->fine_res;
	ws->w0 = pno_malloc((size_t)n * n * sizeof(double));
	if (!ws->w0) {
		pno_free(ws);
		return pno__errorf(PNO_STATUS_NOMEM,
				   "navier-stokes: out of memory");
	}
	if ((st = ns_work_init(&ws->w, n)) != PNO_STATUS_OK) {
		pno_free(ws->w0);
		pno_free(ws);
		return st;
	}
	if ((st = pno__grf_init(&ws->grf, 2, n, n, 1)) != PNO_STATUS_OK) {
		ns_work_free(&ws->w);
		pno_free(ws->w0);
		pno_free(ws);
		return st;
	}
	*out = ws;
	return PNO_STATUS_OK;
}

static void ns_ws_free(void *ctx, void *p)
{
	struct ns_gen_ws *ws = p;
	if (!ws)
		return;
	ns_work_free(&ws->w);
	pno__grf_free(&ws->grf);
	pno_free(ws->w0);
	pno_free(ws);
}

struct ns_sub {
	float *out;	/* (T, res, res) */
	int n, res, stride;
};

static void ns_emit_sub(void *ud, int k, const double *w)
{
	struct ns_sub *s = ud;
	float *dst = s->out + (size_t)k * s->res * s->res;
	for (int i = 0; i < s->res; i++)
		for (int j = 0; j < s->res; j++)
			dst[(size_t)i * s->res + j] =
				(float)w[(size_t)i * s->stride * s->n +
					 (size_t)j * s->stride];
}

static enum pno_status ns_sample(void *ctx, void *p, uint64_t index,
				 float *const *out)
{
	struct ns_gen *g = ctx;
	struct ns_gen_ws *ws = p;
	const struct pno_ns_opts *o = g->o;
	int n = o->fine_res;
	size_t np = (size_t)n * n;
	/* the same field as pno_grf_periodic(w0, NULL, 2, n, n, &o->grf,
	 * seed, index, NULL, NULL), from this thread's workspace */
	pno__grf_draw(&ws->grf, &o->grf, o->base.seed, index);
	pno__grf_synth(&ws->grf, NULL, NULL, ws->w0);
	/* the GRF's mean mode is random; vorticity on the torus has mean 0 */
	double sum = 0.0;
	for (size_t q = 0; q < np; q++)
		sum += ws->w0[q];
	double mean = sum / (double)np;
	for (size_t q = 0; q < np; q++)
		ws->w0[q] -= mean;
	struct ns_sub sub = {out[0], n, o->base.res, g->stride};
	return ns_run(&ws->w, &g->pr, ws->w0, ns_emit_sub, &sub, NULL);
}

enum pno_status pno_generate_ns(const struct pno_ns_opts *o, const char *path,
				int overwrite)
{
	const int res = o->base.res, fine = o->fine_res;
	if (res < 4 || res > 4096)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --res %d must be in [4, 4096]",
				   res);
	if (fine < 4 || fine > 4096 || fine % 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --fine-res %d must be even and "
				   "in [4, 4096]", fine);
	if (fine % res)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --res %d does not divide the "
				   "fine grid %d (--fine-res)", res, fine);
	if (!(o->t_final > 0) || !isfinite(o->t_final))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --t-final %g must be > 0",
				   o->t_final);
	if (!(o->dt_out > 0) || !isfinite(o->dt_out))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --dt-out %g must be > 0",
				   o->dt_out);
	double q = o->t_final / o->dt_out;
	if (!(q < 100000 - 0.5))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --t-final %g / --dt-out %g "
				   "gives more than 100000 frames", o->t_final,
				   o->dt_out);
	double qr = floor(q + 0.5);
	if (qr < 1 || fabs(qr * o->dt_out - o->t_final) > 1e-9 * o->t_final)
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --t-final %g is not a whole "
				   "multiple of --dt-out %g", o->t_final,
				   o->dt_out);
	if (!(o->grf.alpha > 0) || !(o->grf.tau >= 0) || !(o->grf.sigma > 0) ||
	    !isfinite(o->grf.alpha) || !isfinite(o->grf.tau) ||
	    !isfinite(o->grf.sigma))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: --alpha %g and --sigma %g must "
				   "be > 0, --tau %g >= 0", o->grf.alpha,
				   o->grf.sigma, o->grf.tau);
	struct ns_gen ctx = {
		.o = o,
		.pr = {o->nu, o->cfl, o->dt_max, o->dt_out, o->forcing,
		       (int)qr + 1},
		.T = (int)qr + 1,
		.stride = fine / res,
	};
	enum pno_status st = ns_check_params(&ctx.pr);
	if (st != PNO_STATUS_OK)
		return st;
	size_t per_sample;
	if (pno__mul_overflow((size_t)ctx.T, (size_t)res * res, &per_sample) ||
	    per_sample > ((size_t)1 << 31))
		return pno__errorf(PNO_STATUS_INVALID,
				   "navier-stokes: %d frames at --res %d are too "
				   "large per sample", ctx.T, res);

	struct pno__gen g;
	memset(&g, 0, sizeof g);
	g.pde = "navier-stokes";
	g.base = &o->base;
	g.n_out = 1;
	g.out[0].name = "tensor";
	g.out[0].ndim = 3;
	g.out[0].shape[0] = ctx.T;
	g.out[0].shape[1] = res;
	g.out[0].shape[2] = res;
	float *tc = pno__coords(ctx.T, o->dt_out);
	float *xc = pno__coords(res, 1.0 / res);
	if (!tc || !xc) {
		st = pno__errorf(PNO_STATUS_NOMEM, "navier-stokes: out of memory");
		goto cleanup;
	}
	g.n_fixed = 3;
	g.fixed[0] = (struct pno_h5_array){"t-coordinate", 1, {ctx.T}, tc};
	g.fixed[1] = (struct pno_h5_array){"x-coordinate", 1, {res}, xc};
	g.fixed[2] = (struct pno_h5_array){"y-coordinate", 1, {res}, xc};
	pno__gen_attr_str(&g, "solver",
			  "pseudo-spectral (FFT), Crank-Nicolson viscosity, "
			  "Heun nonlinear term and forcing, 2/3 dealiasing of "
			  "velocity, gradient and product");
	pno__gen_attr_str(&g, "equation",
			  "w_t + u.grad w = nu Laplacian w + f, -Laplacian psi "
			  "= w, u = (psi_y, -psi_x), unit torus");
	pno__gen_attr_str(&g, "forcing_function",
			  o->forcing ? "0.1 (sin 2pi(x+y) + cos 2pi(x+y))"
				     : "none");
	pno__gen_attr_str(&g, "time_step",
			  "min(dt_max, cfl / (fine_res max(|u|+|v|))) at the "
			  "start of each output interval, shortened to divide "
			  "dt_out");
	pno__gen_attr_str(&g, "initial_condition",
			  "periodic GRF on the fine grid, mean removed");
	pno__gen_attr_num(&g, "nu", o->nu);
	pno__gen_attr_num(&g, "forcing", o->forcing);
	pno__gen_attr_num(&g, "t_final", o->t_final);
	pno__gen_attr_num(&g, "dt_out", o->dt_out);
	pno__gen_attr_num(&g, "cfl", o->cfl);
	pno__gen_attr_num(&g, "dt_max", o->dt_max);
	pno__gen_attr_num(&g, "fine_res", fine);
	pno__gen_attr_num(&g, "grf_alpha", o->grf.alpha);
	pno__gen_attr_num(&g, "grf_tau", o->grf.tau);
	pno__gen_attr_num(&g, "grf_sigma", o->grf.sigma);
	g.ctx = &ctx;
	g.ws_new = ns_ws_new;
	g.ws_free = ns_ws_free;
	g.sample = ns_sample;
	st = pno__generate(&g, path, overwrite);
cleanup:
	pno_free(tc);
	pno_free(xc);
	return st;
}
