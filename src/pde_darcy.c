/* Darcy flow -div(a grad u) = f on the unit square, u = 0 on the boundary:
 * the public single-sample solver and the generator (Neumann GRF
 * thresholded to a two-valued coefficient, solved on a fine vertex grid
 * and subsampled). The solver itself is in pde_darcy_mg.c. */
#include "pde_darcy_mg.h"
#include "pde_grf_neumann.h"
#include "pde_internal.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum pno_status pno_darcy_solve(int n, const double *a, const double *f,
				double tol, double *u,
				struct pno_solve_stats *stats)
{
	if (n < 3 || n > 16385)
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: --fine-res %d must be in [3, 16385]", n);
	if (!a || !f || !u)
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: missing coefficient, forcing or "
				   "output array");
	if (!(tol > 0) || !isfinite(tol))
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: --tol %g must be finite and > 0", tol);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			size_t k = (size_t)i * n + j;
			if (!(a[k] > 0) || !isfinite(a[k]))
				return pno__errorf(PNO_STATUS_INVALID,
						   "darcy: coefficient a[%d][%d] = "
						   "%g must be finite and > 0",
						   i, j, a[k]);
			int inner = i > 0 && j > 0 && i < n - 1 && j < n - 1;
			if (inner && !isfinite(f[k]))
				return pno__errorf(PNO_STATUS_INVALID,
						   "darcy: forcing f[%d][%d] = %g "
						   "is not finite", i, j, f[k]);
		}
	struct pno__darcy_ws w;
	enum pno_status st = pno__darcy_ws_init(&w, n);
	if (st != PNO_STATUS_OK)
		return st;
	st = pno__darcy_ws_solve(&w, a, f, tol, u, stats);
	pno__darcy_ws_free(&w);
	return st;
}

void pno_darcy_opts_default(struct pno_darcy_opts *o)
{
	memset(o, 0, sizeof *o);
	o->base.samples = 1000;
	o->base.res = 61;
	o->base.seed = 0;
	o->fine_res = 241;
	o->grf.alpha = 2.0;
	o->grf.tau = 3.0;
	o->grf.sigma = 3.0;
	o->a_pos = 12.0;
	o->a_neg = 3.0;
	o->forcing = 1.0;
	o->tol = 1e-10;
}

/* ---- generator ---- */

struct darcy_run {
	const struct pno_darcy_opts *o;
	int n, res, stride;
};

struct darcy_ws {
	struct pno__grf_neumann grf;
	struct pno__darcy_ws solver;
	double *a, *f, *u;	/* (n, n); the GRF is drawn into a */
};

static void darcy_ws_free(void *ctx, void *ws)
{
	struct darcy_ws *w = ws;
	(void)ctx;
	pno__grf_neumann_free(&w->grf);
	pno__darcy_ws_free(&w->solver);
	pno_free(w->a);
	pno_free(w->f);
	pno_free(w->u);
	pno_free(w);
}

static enum pno_status darcy_ws_new(void *ctx, void **out)
{
	const struct darcy_run *r = ctx;
	size_t P = (size_t)r->n * r->n;
	enum pno_status st;
	struct darcy_ws *w = pno_calloc(1, sizeof *w);
	if (!w)
		return pno__errorf(PNO_STATUS_NOMEM, "darcy: out of memory");
	/* zero mean: see docs/pde/darcy.md (as FNO's GRF.m, which sets the
	 * constant mode to 0; with it ~8% of the default samples would have
	 * a constant coefficient) */
	if ((st = pno__grf_neumann_init(&w->grf, 2, r->n, r->n, &r->o->grf,
					1)) != PNO_STATUS_OK ||
	    (st = pno__darcy_ws_init(&w->solver, r->n)) != PNO_STATUS_OK) {
		darcy_ws_free(ctx, w);
		return st;
	}
	if (!(w->a = pno_malloc(P * sizeof *w->a)) ||
	    !(w->f = pno_malloc(P * sizeof *w->f)) ||
	    !(w->u = pno_malloc(P * sizeof *w->u))) {
		darcy_ws_free(ctx, w);
		return pno__errorf(PNO_STATUS_NOMEM, "darcy: out of memory");
	}
	for (size_t k = 0; k < P; k++)
		w->f[k] = r->o->forcing;
	*out = w;
	return PNO_STATUS_OK;
}

static enum pno_status darcy_sample(void *ctx, void *ws, uint64_t index,
				    float *const *out)
{
	const struct darcy_run *r = ctx;
	struct darcy_ws *w = ws;
	int n = r->n, res = r->res, s = r->stride;
	size_t P = (size_t)n * n;
	pno__grf_neumann_draw(&w->grf, w->a, r->o->base.seed, index);
	for (size_t k = 0; k < P; k++)
		w->a[k] = w->a[k] >= 0 ? r->o->a_pos : r->o->a_neg;
	enum pno_status st = pno__darcy_ws_solve(&w->solver, w->a, w->f,
						 r->o->tol, w->u, NULL);
	if (st != PNO_STATUS_OK)
		return st;	/* the driver adds the sample index */
	for (int I = 0; I < res; I++)
		for (int J = 0; J < res; J++) {
			size_t k = (size_t)I * s * n + (size_t)J * s;
			out[0][(size_t)I * res + J] = (float)w->a[k];
			out[1][(size_t)I * res + J] = (float)w->u[k];
		}
	return PNO_STATUS_OK;
}

/* The valid --res values next to `res` for a fine grid of m intervals:
 * divisors d of m give --res d + 1. */
static void res_neighbours(int m, int res, int *below, int *above)
{
	*below = *above = 0;
	for (int d = 1; d <= m; d++) {
		if (m % d)
			continue;
		if (d + 1 < res)
			*below = d + 1;
		else if (d + 1 > res && !*above)
			*above = d + 1;
	}
}

static enum pno_status check_positive(const char *flag, double v)
{
	if (!(v > 0) || !isfinite(v))
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: %s %g must be finite and > 0", flag, v);
	return PNO_STATUS_OK;
}

enum pno_status pno_generate_darcy(const struct pno_darcy_opts *o,
				   const char *path, int overwrite)
{
	enum pno_status st;
	int res = o->base.res, fine = o->fine_res;
	if (res < 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: --res %d must be >= 2", res);
	if (fine < 3 || fine > 1025)
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: --fine-res %d must be in [3, 1025]", fine);
	if (res > fine || (fine - 1) % (res - 1) != 0) {
		int below, above;
		char eg[64] = "";
		res_neighbours(fine - 1, res, &below, &above);
		if (below >= 2 && above)
			snprintf(eg, sizeof eg, ", e.g. --res %d or %d", below, above);
		else if (below >= 2 || above)
			snprintf(eg, sizeof eg, ", e.g. --res %d",
				 above ? above : below);
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: --res %d does not divide the fine grid "
				   "%d: (fine-res - 1) must be a multiple of "
				   "(res - 1)%s", res, fine, eg);
	}
	if ((st = check_positive("--a-pos", o->a_pos)) != PNO_STATUS_OK ||
	    (st = check_positive("--a-neg", o->a_neg)) != PNO_STATUS_OK ||
	    (st = check_positive("--tol", o->tol)) != PNO_STATUS_OK ||
	    (st = pno__grf_neumann_check(&o->grf, "darcy")) != PNO_STATUS_OK)
		return st;
	if (!isfinite(o->forcing))
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: --forcing %g must be finite", o->forcing);

	struct darcy_run r = {o, fine, res, (fine - 1) / (res - 1)};
	struct pno__gen g = {0};
	g.pde = "darcy";
	g.base = &o->base;
	g.n_out = 2;
	g.out[0] = (struct pno__gen_out){"nu", 2, {res, res}};
	g.out[1] = (struct pno__gen_out){"tensor", 3, {1, res, res}};
	float *xc = pno__coords(res, 1.0 / (res - 1));
	if (!xc)
		return pno__errorf(PNO_STATUS_NOMEM, "darcy: out of memory");
	g.n_fixed = 2;
	g.fixed[0] = (struct pno_h5_array){"x-coordinate", 1, {res}, xc};
	g.fixed[1] = (struct pno_h5_array){"y-coordinate", 1, {res}, xc};
	pno__gen_attr_str(&g, "solver",
			  "5-point finite differences (face coefficient the "
			  "mean of its two vertices), PCG with a Galerkin "
			  "multigrid V-cycle (symmetric Gauss-Seidel, "
			  "red-black on the finest grid; dense Cholesky on "
			  "the coarsest)");
	pno__gen_attr_str(&g, "equation",
			  "-div(a grad u) = f on [0,1]^2, u = 0 on the boundary");
	pno__gen_attr_str(&g, "grid", "vertex");
	pno__gen_attr_num(&g, "fine_res", fine);
	pno__gen_attr_num(&g, "stride", r.stride);
	pno__gen_attr_num(&g, "tol", o->tol);
	pno__gen_attr_num(&g, "a_pos", o->a_pos);
	pno__gen_attr_num(&g, "a_neg", o->a_neg);
	pno__gen_attr_num(&g, "forcing", o->forcing);
	pno__gen_attr_num(&g, "beta", o->forcing);
	pno__gen_attr_num(&g, "grf_alpha", o->grf.alpha);
	pno__gen_attr_num(&g, "grf_tau", o->grf.tau);
	pno__gen_attr_num(&g, "grf_sigma", o->grf.sigma);
	pno__gen_attr_str(&g, "grf_mean",
			  "zero: Neumann GRF without its constant mode, "
			  "a = a_pos where g >= 0 else a_neg");
	g.ctx = &r;
	g.ws_new = darcy_ws_new;
	g.ws_free = darcy_ws_free;
	g.sample = darcy_sample;
	st = pno__generate(&g, path, overwrite);
	pno_free(xc);
	return st;
}
