/* Viscous Burgers u_t + (u^2/2)_x = nu u_xx on the periodic unit interval:
 * pseudo-spectral ETDRK4 (pde_etdrk4.c) and the GRF-initial-value
 * generator. */
#include "pde_etdrk4.h"
#include "pde_grf.h"
#include "pde_internal.h"

#include <math.h>
#include <string.h>

/* Largest grid the solver accepts (sizes stay far from int overflow). */
#define BURGERS_MAX_N (1 << 24)
/* Most steps per output interval before we call the step too small. */
#define BURGERS_MAX_STEPS 1000000000L
/* Advective CFL number dt max|u0| / dx the step stays below. */
#define BURGERS_CFL 0.5

void pno_burgers_opts_default(struct pno_burgers_opts *o)
{
	memset(o, 0, sizeof *o);
	o->base.samples = 1000;
	o->base.res = 1024;
	o->fine_res = 8192;
	o->nu = 0.1;
	o->t_final = 1.0;
	o->dt_out = 0.05;
	o->dt = 0.0;
	o->grf.alpha = 2.0;
	o->grf.tau = 5.0;
	o->grf.sigma = 25.0;
}

/* One thread's solver: the ETDRK4 workspace with L = -nu k^2. */
struct burgers_solver {
	struct pno__etdrk4 w;
	double nu;		/* that lin holds; 0: none yet */
};

static void set_viscosity(struct burgers_solver *s, double nu)
{
	if (s->nu == nu)
		return;
	for (int m = 0; m < s->w.nh; m++)
		s->w.lin[m] = -nu * s->w.k[m] * s->w.k[m];
	s->w.h = 0;		/* coefficients are stale */
	s->nu = nu;
}

/* The step for u0: at most dt_cap (if > 0), CFL number at most 1/2 with
 * max|u0| (Burgers' maximum principle bounds |u| for all t), and a whole
 * number `*steps` of them per dt_out. */
static enum pno_status choose_step(int n, const double *u0, double dt_out,
				   double dt_cap, double *dt, long *steps)
{
	double umax = 0;
	for (int i = 0; i < n; i++) {
		if (!isfinite(u0[i]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "burgers: initial value is not finite "
					   "at x[%d]", i);
		umax = fmax(umax, fabs(u0[i]));
	}
	double bound = umax > 0 ? BURGERS_CFL / (n * umax) : INFINITY;
	if (dt_cap > 0)
		bound = fmin(bound, dt_cap);
	if (!(dt_out / bound <= (double)BURGERS_MAX_STEPS))
		return pno__errorf(PNO_STATUS_RANGE,
				   "burgers: more than %ld time steps per output "
				   "interval (max|u0| %g on %d points)",
				   BURGERS_MAX_STEPS, umax, n);
	*steps = pno__steps_per_interval(dt_out, bound);
	*dt = dt_out / (double)*steps;
	return PNO_STATUS_OK;
}

/* Solve from u0 (n) and write the frames either as doubles to traj
 * (nframes x n) or, every `stride`-th point, as floats to trajf
 * (nframes x n/stride). */
static enum pno_status burgers_run(struct burgers_solver *s, double nu,
				   const double *u0, int nframes,
				   double dt_out, double dt_cap, double *traj,
				   float *trajf, int stride,
				   struct pno_solve_stats *stats)
{
	struct pno__etdrk4 *w = &s->w;
	int n = w->n, X = n / stride;
	double dt = 0;
	long steps = 0;
	enum pno_status st;
	set_viscosity(s, nu);
	if (nframes > 1) {
		st = choose_step(n, u0, dt_out, dt_cap, &dt, &steps);
		if (st != PNO_STATUS_OK)
			return st;
		pno__etdrk4_coeffs(w, dt);
		pno__etdrk4_load(w, u0);
	}
	for (int f = 0; f < nframes; f++) {
		const double *u = u0;
		if (f > 0) {
			for (long j = 0; j < steps; j++) {
				if (j % PNO__CANCEL_POLL == 0 && pno__gen_cancelled())
					return pno__gen_cancel_status("burgers");
				pno__etdrk4_step(w);
			}
			if (!isfinite(pno__etdrk4_physical(w)))
				return pno__errorf(PNO_STATUS_RANGE,
						   "burgers: solution not finite "
						   "at t = %g", f * dt_out);
			u = w->phys;
		}
		if (traj)
			memcpy(traj + (size_t)f * n, u, (size_t)n * sizeof *u);
		else
			for (int i = 0; i < X; i++)
				trajf[(size_t)f * X + i] = (float)u[(size_t)i * stride];
	}
	if (stats) {
		stats->steps = steps * (nframes - 1);
		stats->dt = dt;
		stats->residual = 0;
	}
	return PNO_STATUS_OK;
}

enum pno_status pno_burgers_solve(int n, double nu, const double *u0,
				  int nframes, double dt_out, double dt,
				  double *traj, struct pno_solve_stats *stats)
{
	if (n < 4 || n % 2 || n > BURGERS_MAX_N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: grid size %d must be even, in [4, %d]",
				   n, BURGERS_MAX_N);
	if (!(nu > 0) || !isfinite(nu))
		return pno__errorf(PNO_STATUS_INVALID, "burgers: --nu must be > 0");
	if (!u0 || !traj || nframes < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: need u0, traj and nframes >= 1");
	if (nframes > 1 && (!(dt_out > 0) || !isfinite(dt_out)))
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --dt-out must be > 0");
	if (isnan(dt) || isinf(dt))
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --dt must be finite");
	struct burgers_solver s = {0};
	enum pno_status st = pno__etdrk4_init(&s.w, n, 1.0, "burgers");
	if (st != PNO_STATUS_OK)
		return st;
	st = burgers_run(&s, nu, u0, nframes, dt_out, dt, traj, NULL, 1, stats);
	pno__etdrk4_free(&s.w);
	return st;
}

/* ---- generator ---- */

struct burgers_gen {
	const struct pno_burgers_opts *o;
	int stride;		/* fine_res / res */
	int frames;
};

/* One thread's workspace: solver on the fine grid, GRF synthesis, u0. */
struct burgers_ws {
	struct burgers_solver s;
	struct pno__grf grf;
	double *u0;		/* (fine_res) */
};

static void burgers_ws_free(void *ctx, void *ws)
{
	struct burgers_ws *w = ws;
	(void)ctx;
	pno__etdrk4_free(&w->s.w);
	pno__grf_free(&w->grf);
	pno_free(w->u0);
	pno_free(w);
}

static enum pno_status burgers_ws_new(void *ctx, void **out)
{
	const struct burgers_gen *b = ctx;
	int n = b->o->fine_res;
	enum pno_status st;
	struct burgers_ws *w = pno_calloc(1, sizeof *w);
	if (!w)
		return pno__errorf(PNO_STATUS_NOMEM, "burgers: out of memory");
	if ((st = pno__etdrk4_init(&w->s.w, n, 1.0, "burgers")) != PNO_STATUS_OK ||
	    (st = pno__grf_init(&w->grf, 1, n, 1, 1)) != PNO_STATUS_OK) {
		burgers_ws_free(ctx, w);
		return st;
	}
	if (!(w->u0 = pno_malloc((size_t)n * sizeof *w->u0))) {
		burgers_ws_free(ctx, w);
		return pno__errorf(PNO_STATUS_NOMEM, "burgers: out of memory");
	}
	set_viscosity(&w->s, b->o->nu);
	*out = w;
	return PNO_STATUS_OK;
}

static enum pno_status burgers_sample(void *ctx, void *ws, uint64_t index,
				      float *const *out)
{
	const struct burgers_gen *b = ctx;
	const struct pno_burgers_opts *o = b->o;
	struct burgers_ws *w = ws;
	pno__grf_draw(&w->grf, &o->grf, o->base.seed, index);
	pno__grf_synth(&w->grf, NULL, NULL, w->u0);
	return burgers_run(&w->s, o->nu, w->u0, b->frames, o->dt_out, o->dt,
			   NULL, out[0], b->stride, NULL);
}

/* Frames 0, dt_out, ..., t_final: t_final a whole number (1 to 100000)
 * of dt_out, relative 1e-9. */
static enum pno_status frame_count(double t_final, double dt_out, int *frames)
{
	if (!(t_final > 0) || !isfinite(t_final))
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --t-final must be > 0");
	if (!(dt_out > 0) || !isfinite(dt_out))
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --dt-out must be > 0");
	double k = t_final / dt_out, kr = nearbyint(k);
	if (kr < 1 || kr > 100000 || fabs(k - kr) > 1e-9 * kr)
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --t-final %g must be a whole multiple "
				   "(1 to 100000) of --dt-out %g", t_final, dt_out);
	*frames = (int)kr + 1;
	return PNO_STATUS_OK;
}

enum pno_status pno_generate_burgers(const struct pno_burgers_opts *o,
				     const char *path, int overwrite)
{
	struct burgers_gen b = {o, 0, 0};
	struct pno__gen g = {0};
	enum pno_status st;
	int res = o->base.res, fine = o->fine_res;
	if (fine < 4 || fine % 2 || fine > BURGERS_MAX_N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --fine-res %d must be even, in [4, %d]",
				   fine, BURGERS_MAX_N);
	if (res < 1 || res > fine || fine % res)
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --res %d does not divide the fine "
				   "grid %d (--fine-res)", res, fine);
	if (!(o->nu > 0) || !isfinite(o->nu))
		return pno__errorf(PNO_STATUS_INVALID, "burgers: --nu must be > 0");
	if ((st = frame_count(o->t_final, o->dt_out, &b.frames)) != PNO_STATUS_OK)
		return st;
	if (!(o->dt >= 0) || !isfinite(o->dt))
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: --dt must be >= 0 (0: automatic)");
	const struct pno_grf_opts *gr = &o->grf;
	if (!(gr->alpha > 0 && gr->alpha < 1e3) ||
	    !(gr->tau >= 0 && gr->tau < 1e9) ||
	    !(gr->sigma > 0 && gr->sigma < 1e12))
		return pno__errorf(PNO_STATUS_INVALID,
				   "burgers: GRF parameters need --alpha in (0, "
				   "1000), --tau in [0, 1e9), --sigma in (0, 1e12)");
	b.stride = fine / res;

	g.pde = "burgers";
	g.base = &o->base;
	g.n_out = 1;
	g.out[0] = (struct pno__gen_out){"tensor", 2, {b.frames, res}};
	float *tc = pno__coords(b.frames, o->dt_out);
	float *xc = pno__coords(res, 1.0 / res);
	if (!tc || !xc) {
		pno_free(tc);
		pno_free(xc);
		return pno__errorf(PNO_STATUS_NOMEM, "burgers: out of memory");
	}
	g.fixed[g.n_fixed++] = (struct pno_h5_array){"t-coordinate", 1,
						     {b.frames}, tc};
	g.fixed[g.n_fixed++] = (struct pno_h5_array){"x-coordinate", 1,
						     {res}, xc};
	pno__gen_attr_str(&g, "solver",
			  "pseudo-spectral ETDRK4 (Cox-Matthews, Kassam-"
			  "Trefethen contour coefficients), 2/3 dealiasing, "
			  "solved on fine_res points and subsampled");
	pno__gen_attr_num(&g, "nu", o->nu);
	pno__gen_attr_num(&g, "t_final", o->dt_out * (b.frames - 1));
	pno__gen_attr_num(&g, "dt_out", o->dt_out);
	/* the step is chosen per sample (CFL with that sample's max|u0|):
	 * record the rule and the cap */
	pno__gen_attr_num(&g, "dt_max", o->dt);
	pno__gen_attr_num(&g, "cfl", BURGERS_CFL);
	pno__gen_attr_str(&g, "time_step",
			  "per sample: the largest dt <= dt_max (0: no cap) "
			  "with dt max|u0| fine_res <= cfl that divides dt_out");
	pno__gen_attr_num(&g, "fine_res", fine);
	pno__gen_attr_num(&g, "contour_points", PNO__ETDRK4_CONTOUR_M);
	pno__gen_attr_num(&g, "grf_alpha", gr->alpha);
	pno__gen_attr_num(&g, "grf_tau", gr->tau);
	pno__gen_attr_num(&g, "grf_sigma", gr->sigma);
	pno__gen_attr_str(&g, "grid", "periodic, points i/res of [0, 1)");
	g.ctx = &b;
	g.ws_new = burgers_ws_new;
	g.ws_free = burgers_ws_free;
	g.sample = burgers_sample;
	st = pno__generate(&g, path, overwrite);
	pno_free(tc);
	pno_free(xc);
	return st;
}
