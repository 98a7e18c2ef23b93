/* The Darcy solver behind pno_darcy_solve: conjugate gradients on the
 * 5-point operator of -div(a grad u), preconditioned by one geometric
 * multigrid V-cycle (Galerkin coarse operators, symmetric Gauss-Seidel:
 * red-black on the finest grid; dense Cholesky on the coarsest). The
 * workspace is sized once for a grid and reused for every solve on it
 * (the generator keeps one per thread). */
#ifndef PNO_PDE_DARCY_MG_H
#define PNO_PDE_DARCY_MG_H

#include "pno/pde.h"

#define PNO__DARCY_MAX_LEVELS 16
/* PCG iteration cap: multigrid needs ~10; far above any sane need. */
#define PNO__DARCY_MAX_ITER 1000

struct pno__mg_level {
	int n;			/* points per axis, boundary included */
	double *st[9];		/* levels >= 1: Galerkin 9-point stencil,
				 * entry (di+1)*3 + (dj+1) of the row of
				 * point i*n + j; level 0 uses ax/ay */
	double *dinv;		/* (n, n) 1 / diagonal */
	double *x, *b, *r;	/* (n, n) iterate, right side, residual;
				 * boundary entries stay 0 */
	int *pn;		/* (n) number of interior coarse parents of
				 * fine index j (0 to 2) */
	int *pc;		/* (n, 2) the parents */
	double *pw;		/* (n, 2) their interpolation weights */
	double *t;		/* (n, nc) transfers: one axis done */
	double *V;		/* (nc, 5, 3) interpolation windows */
};

struct pno__darcy_ws {
	int n, nlev;
	double *ax, *ay;	/* (n, n) face coefficients: ax between (i,j)
				 * and (i+1,j), ay between (i,j) and (i,j+1) */
	double *rhs, *p, *q;	/* (n, n) h^2 f, CG direction, A p */
	struct pno__mg_level lev[PNO__DARCY_MAX_LEVELS];
	int nd;			/* coarsest unknowns */
	double *chol;		/* (nd, nd) lower Cholesky factor */
	double *tmp;		/* (nd) */
};

/* Size the workspace for n x n grids (3 <= n <= 16385); _free is safe
 * after a failure (PNO_STATUS_NOMEM). */
enum pno_status pno__darcy_ws_init(struct pno__darcy_ws *w, int n);
void pno__darcy_ws_free(struct pno__darcy_ws *w);
/* pno_darcy_solve on the workspace's grid, inputs already validated.
 * Allocates nothing. */
enum pno_status pno__darcy_ws_solve(struct pno__darcy_ws *w, const double *a,
				    const double *f, double tol, double *u,
				    struct pno_solve_stats *stats);

#endif
