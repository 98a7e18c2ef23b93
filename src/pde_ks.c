/* Kuramoto-Sivashinsky u_t + u u_x + u_xx + u_xxxx = 0 on [0, L) periodic:
 * pseudo-spectral ETDRK4 (pde_etdrk4.c), smoothed uniform-noise initial
 * values and the generator. */
#include "pde_etdrk4.h"
#include "pde_internal.h"

#include <math.h>
#include <string.h>

#define KS_MAX_N (1 << 20)
#define KS_MAX_FRAMES 100001

void pno_ks_opts_default(struct pno_ks_opts *o)
{
	memset(o, 0, sizeof *o);
	o->base.samples = 1000;
	o->base.res = 256;
	o->L = 100.0;
	o->dt = 0.25;
	o->t_final = 300.0;
	o->dt_out = 1.0;
	o->burn_in = 0.0;
}

/* Whole number of steps dt in `span` (relative slack 1e-9), or -1. */
static long whole_steps(double span, double dt)
{
	double r = span / dt;
	if (!(r >= 0) || r > 1e12)
		return -1;
	double s = nearbyint(r);
	return fabs(s * dt - span) <= 1e-9 * fmax(span, dt) ? (long)s : -1;
}

/* ETDRK4 workspace for KS on n points of [0, L) with step dt. */
static enum pno_status ks_setup(struct pno__etdrk4 *w, int n, double L,
				double dt)
{
	enum pno_status st = pno__etdrk4_init(w, n, L, "ks");
	if (st != PNO_STATUS_OK)
		return st;
	for (int m = 0; m < w->nh; m++) {
		double k2 = w->k[m] * w->k[m];
		w->lin[m] = k2 - k2 * k2;
	}
	pno__etdrk4_coeffs(w, dt);
	return PNO_STATUS_OK;
}

/* Integrate `burn` steps from u0, then write nframes frames `every` steps
 * apart: doubles to traj (nframes x n) or floats to trajf. */
static enum pno_status ks_run(struct pno__etdrk4 *w, const double *u0,
			      long burn, int nframes, long every,
			      double *traj, float *trajf)
{
	int n = w->n;
	for (int i = 0; i < n; i++)
		if (!isfinite(u0[i]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "ks: initial value is not finite at "
					   "x[%d]", i);
	pno__etdrk4_load(w, u0);
	for (int f = 0; f < nframes; f++) {
		const double *u = u0;
		long steps = f == 0 ? burn : every;
		for (long j = 0; j < steps; j++) {
			if (j % PNO__CANCEL_POLL == 0 && pno__gen_cancelled())
				return pno__gen_cancel_status("ks");
			pno__etdrk4_step(w);
		}
		if (f > 0 || burn > 0) {
			if (!isfinite(pno__etdrk4_physical(w)))
				return pno__errorf(PNO_STATUS_RANGE,
						   "ks: solution not finite at "
						   "frame %d", f);
			u = w->phys;
		}
		if (traj)
			memcpy(traj + (size_t)f * n, u, (size_t)n * sizeof *u);
		else
			for (int i = 0; i < n; i++)
				trajf[(size_t)f * n + i] = (float)u[i];
	}
	return PNO_STATUS_OK;
}

enum pno_status pno_ks_solve(int n, double L, const double *u0, int nframes,
			     double dt_out, double dt, double *traj,
			     struct pno_solve_stats *stats)
{
	if (n < 4 || n % 2 || n > KS_MAX_N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: --res %d must be even, in [4, %d]", n,
				   KS_MAX_N);
	if (!(L > 0) || !isfinite(L))
		return pno__errorf(PNO_STATUS_INVALID, "ks: --L must be > 0");
	if (!(dt > 0) || !isfinite(dt))
		return pno__errorf(PNO_STATUS_INVALID, "ks: --dt must be > 0");
	if (!u0 || !traj || nframes < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: need u0, traj and nframes >= 1");
	long every = 0;
	if (nframes > 1) {
		every = whole_steps(dt_out, dt);
		if (!(dt_out > 0) || every < 1)
			return pno__errorf(PNO_STATUS_INVALID,
					   "ks: --dt-out %g must be a whole "
					   "number of steps --dt %g", dt_out, dt);
	}
	struct pno__etdrk4 w;
	enum pno_status st = ks_setup(&w, n, L, dt);
	if (st != PNO_STATUS_OK)
		return st;
	st = ks_run(&w, u0, 0, nframes, every, traj, NULL);
	pno__etdrk4_free(&w);
	if (st == PNO_STATUS_OK && stats) {
		stats->steps = every * (nframes - 1);
		stats->dt = dt;
		stats->residual = 0;
	}
	return st;
}

/* Initial value on w's grid: U(-1, 1) per point, then only Fourier modes
 * 1 <= |m| <= n/16 kept (zero mean; see docs/pde/ks.md). */
static void ks_initial(struct pno__etdrk4 *w, double *u0, uint64_t seed,
		       uint64_t index)
{
	int n = w->n, mc = n / 16 > 1 ? n / 16 : 1;
	float *x = (float *)w->spec;	/* n floats fit in nh complex */
	pno_rng_uniform(x, (size_t)n, seed, index, 0);
	for (int i = 0; i < n; i++)
		w->phys[i] = 2.0 * x[i] - 1.0;
	fftw_execute(w->r2c);
	for (int m = 0; m < w->nh; m++)
		w->spec[m] = m >= 1 && m <= mc ? w->spec[m] / n : 0;
	fftw_execute(w->c2r);
	memcpy(u0, w->phys, (size_t)n * sizeof *u0);
}

enum pno_status pno_ks_initial(double *u0, int n, uint64_t seed,
			       uint64_t index)
{
	if (!u0 || n < 4 || n % 2 || n > KS_MAX_N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: --res %d must be even, in [4, %d]", n,
				   KS_MAX_N);
	struct pno__etdrk4 w;
	enum pno_status st = pno__etdrk4_init(&w, n, 1.0, "ks");
	if (st != PNO_STATUS_OK)
		return st;
	ks_initial(&w, u0, seed, index);
	pno__etdrk4_free(&w);
	return PNO_STATUS_OK;
}

/* ---- generator ---- */

struct ks_gen {
	const struct pno_ks_opts *o;
	int frames;
	long every, burn;	/* steps per frame, burn-in steps */
};

struct ks_ws {
	struct pno__etdrk4 w;
	double *u0;		/* (res) */
};

static void ks_ws_free(void *ctx, void *ws)
{
	struct ks_ws *k = ws;
	(void)ctx;
	pno__etdrk4_free(&k->w);
	pno_free(k->u0);
	pno_free(k);
}

static enum pno_status ks_ws_new(void *ctx, void **out)
{
	const struct ks_gen *g = ctx;
	const struct pno_ks_opts *o = g->o;
	enum pno_status st;
	struct ks_ws *k = pno_calloc(1, sizeof *k);
	if (!k)
		return pno__errorf(PNO_STATUS_NOMEM, "ks: out of memory");
	if ((st = ks_setup(&k->w, o->base.res, o->L, o->dt)) != PNO_STATUS_OK) {
		ks_ws_free(ctx, k);
		return st;
	}
	if (!(k->u0 = pno_malloc((size_t)o->base.res * sizeof *k->u0))) {
		ks_ws_free(ctx, k);
		return pno__errorf(PNO_STATUS_NOMEM, "ks: out of memory");
	}
	*out = k;
	return PNO_STATUS_OK;
}

static enum pno_status ks_sample(void *ctx, void *ws, uint64_t index,
				 float *const *out)
{
	const struct ks_gen *g = ctx;
	struct ks_ws *k = ws;
	ks_initial(&k->w, k->u0, g->o->base.seed, index);
	return ks_run(&k->w, k->u0, g->burn, g->frames, g->every, NULL, out[0]);
}

enum pno_status pno_generate_ks(const struct pno_ks_opts *o, const char *path,
				int overwrite)
{
	struct ks_gen k = {o, 0, 0, 0};
	struct pno__gen g = {0};
	enum pno_status st;
	int res = o->base.res;
	if (res < 4 || res % 2 || res > KS_MAX_N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: --res %d must be even, in [4, %d]", res,
				   KS_MAX_N);
	if (!(o->L > 0) || !isfinite(o->L))
		return pno__errorf(PNO_STATUS_INVALID, "ks: --L must be > 0");
	if (!(o->dt > 0) || !isfinite(o->dt))
		return pno__errorf(PNO_STATUS_INVALID, "ks: --dt must be > 0");
	if (!(o->t_final > 0) || !isfinite(o->t_final))
		return pno__errorf(PNO_STATUS_INVALID, "ks: --t-final must be > 0");
	if (!(o->dt_out > 0) || !isfinite(o->dt_out))
		return pno__errorf(PNO_STATUS_INVALID, "ks: --dt-out must be > 0");
	double fr = o->t_final / o->dt_out, frr = nearbyint(fr);
	if (frr < 1 || frr > KS_MAX_FRAMES - 1 || fabs(fr - frr) > 1e-9 * frr)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: --t-final %g must be a whole multiple (1 "
				   "to %d) of --dt-out %g", o->t_final,
				   KS_MAX_FRAMES - 1, o->dt_out);
	k.frames = (int)frr + 1;
	if ((k.every = whole_steps(o->dt_out, o->dt)) < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: --dt-out %g must be a whole number of "
				   "steps --dt %g", o->dt_out, o->dt);
	if (!(o->burn_in >= 0) || !isfinite(o->burn_in) ||
	    (k.burn = whole_steps(o->burn_in, o->dt)) < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ks: --burn-in %g must be >= 0 and a whole "
				   "number of steps --dt %g", o->burn_in, o->dt);

	g.pde = "ks";
	g.base = &o->base;
	g.n_out = 1;
	g.out[0] = (struct pno__gen_out){"tensor", 2, {k.frames, res}};
	float *tc = pno__coords(k.frames, o->dt_out);
	float *xc = pno__coords(res, o->L / res);
	if (!tc || !xc) {
		pno_free(tc);
		pno_free(xc);
		return pno__errorf(PNO_STATUS_NOMEM, "ks: out of memory");
	}
	g.fixed[g.n_fixed++] = (struct pno_h5_array){"t-coordinate", 1,
						     {k.frames}, tc};
	g.fixed[g.n_fixed++] = (struct pno_h5_array){"x-coordinate", 1,
						     {res}, xc};
	pno__gen_attr_str(&g, "solver",
			  "pseudo-spectral ETDRK4 (Cox-Matthews, Kassam-"
			  "Trefethen contour coefficients), 2/3 dealiasing");
	pno__gen_attr_num(&g, "L", o->L);
	pno__gen_attr_num(&g, "dt", o->dt);
	pno__gen_attr_num(&g, "t_final", o->dt_out * (k.frames - 1));
	pno__gen_attr_num(&g, "dt_out", o->dt_out);
	pno__gen_attr_num(&g, "burn_in", o->burn_in);
	pno__gen_attr_num(&g, "contour_points", PNO__ETDRK4_CONTOUR_M);
	pno__gen_attr_str(&g, "init",
			  "U(-1,1) per grid point (Philox, stream = sample "
			  "index), low-passed to Fourier modes 1 <= |m| <= "
			  "res/16 (mean zero)");
	pno__gen_attr_str(&g, "grid", "periodic, points i L/res of [0, L)");
	g.ctx = &k;
	g.ws_new = ks_ws_new;
	g.ws_free = ks_ws_free;
	g.sample = ks_sample;
	st = pno__generate(&g, path, overwrite);
	pno_free(tc);
	pno_free(xc);
	return st;
}
