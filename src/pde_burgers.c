/* Viscous Burgers u_t + (u^2/2)_x = nu u_xx on the periodic unit interval:
 * pseudo-spectral ETDRK4 (pde_etdrk4.c) and the GRF-initial-value
 * generator. */
#include "pde_etdrk4.h"
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
	*steps = pno__etdrk4_steps(dt_out, bound, BURGERS_MAX_STEPS);
	if (*steps == 0)
		return pno__errorf(PNO_STATUS_RANGE,
				   "burgers: more than %ld time steps per output "
				   "interval (max|u0| %g on %d points)",
				   BURGERS_MAX_STEPS, umax, n);
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
	if (nframes > 1 &&
	    (st = choose_step(n, u0, dt_out, dt_cap, &dt, &steps)) != PNO_STATUS_OK)
		return st;
	const double *u = u0;
	for (int f = 0; f < nframes; f++) {
		if (f > 0) {
			for (long j = 0; j < steps; j++)
				pno__etdrk4_step(w);
			if (!isfinite(pno__etdrk4_physical(w)))
				return pno__errorf(PNO_STATUS_RANGE,
						   "burgers: solution not finite "
						   "at t = %g", f * dt_out);
			u = w->phys;
		} else {
			set_viscosity(s, nu);
			if (nframes > 1) {
				pno__etdrk4_coeffs(w, dt);
				pno__etdrk4_load(w, u0);
			}
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
