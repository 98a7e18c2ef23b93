/* Darcy flow -div(a grad u) = f on the unit square, u = 0 on the boundary:
 * the public single-sample solver and the generator (Neumann GRF
 * thresholded to a two-valued coefficient, solved on a fine vertex grid
 * and subsampled). The solver itself is in pde_darcy_mg.c. */
#include "pde_darcy_mg.h"
#include "pde_grf_neumann.h"
#include "pde_internal.h"
#include "internal.h"

#include <math.h>
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
