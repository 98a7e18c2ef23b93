/* Multigrid-preconditioned conjugate gradients for the Darcy operator.
 *
 * Fine operator (scaled by h^2): for an interior vertex (i, j),
 *   (A u)_ij = sum over the four faces of a_face (u_ij - u_neighbour),
 * a_face the mean of the two vertices' a, neighbours on the boundary
 * contributing u = 0. Coarse grids keep every other vertex; when a grid
 * has an odd number of intervals its last coarse interval is one fine
 * interval long, so any n coarsens (241 -> 121 -> 61 -> 31 -> 16 -> 9).
 * Prolongation P is linear interpolation along each axis (tensor
 * product), coarse operators are P^T A P (9-point). Smoothing: one
 * Gauss-Seidel sweep before the coarse correction and its adjoint after
 * (red-black then black-red on the finest grid, forward then backward
 * lexicographic on the 9-point coarse grids), and the coarsest grid is
 * solved by dense Cholesky: the V-cycle is then a symmetric positive
 * definite operator, as conjugate gradients needs. */
#include "pde_darcy_mg.h"
#include "internal.h"

#include <math.h>
#include <string.h>

/* coarsen while a grid has more interior unknowns than this */
#define DIRECT_MAX 64

static void level_free(struct pno__mg_level *L)
{
	for (int o = 0; o < 9; o++)
		pno_free(L->st[o]);
	pno_free(L->dinv);
	pno_free(L->x);
	pno_free(L->b);
	pno_free(L->r);
	pno_free(L->pn);
	pno_free(L->t);
	pno_free(L->V);
	pno_free(L->pc);
	pno_free(L->pw);
	memset(L, 0, sizeof *L);
}

void pno__darcy_ws_free(struct pno__darcy_ws *w)
{
	for (int l = 0; l < PNO__DARCY_MAX_LEVELS; l++)
		level_free(&w->lev[l]);
	pno_free(w->ax);
	pno_free(w->ay);
	pno_free(w->rhs);
	pno_free(w->p);
	pno_free(w->q);
	pno_free(w->chol);
	pno_free(w->tmp);
	memset(w, 0, sizeof *w);
}

/* Points of the coarse axis: m = n - 1 intervals become ceil(m / 2);
 * coarse point c sits at fine 2c (c < ceil(m/2)) and the last at n - 1. */
static int coarse_size(int n) { return n / 2 + 1; }

/* Linear interpolation from the coarse axis to fine index j, keeping
 * only interior coarse parents (boundary values are 0). */
static void make_parents(int *pn, int *pc, double *pw, int n)
{
	int m = n - 1, mc = coarse_size(n) - 1;
	for (int j = 0; j < n; j++) {
		int c[2], k = 0;
		double wt;
		if (j == 0 || j == m) {
			pn[j] = 0;
			continue;
		}
		if (j % 2 == 0) {
			c[k++] = j / 2;
			wt = 1.0;
		} else {
			c[k++] = (j - 1) / 2;
			c[k++] = (j + 1) / 2;
			wt = 0.5;
		}
		pn[j] = 0;
		for (int q = 0; q < k; q++)
			if (c[q] > 0 && c[q] < mc) {
				pc[2 * j + pn[j]] = c[q];
				pw[2 * j + pn[j]] = wt;
				pn[j]++;
			}
	}
}

/* V[(I*5 + k)*3 + q]: weight of coarse point I-1+q in the interpolation
 * to fine point 2I-2+k (k = 0..4 covers every fine neighbour of I's
 * children 2I-1..2I+1; points off the grid get 0). Parents of fine i are
 * within one coarse point of I whenever i is within two of 2I, so three
 * weights per fine point suffice. */
static void make_window(double *V, const int *pn, const int *pc,
			const double *pw, int n, int nc)
{
	for (int I = 0; I < nc; I++)
		for (int k = 0; k < 5; k++) {
			double *v = V + ((size_t)I * 5 + k) * 3;
			int i = 2 * I - 2 + k;
			v[0] = v[1] = v[2] = 0.0;
			if (i < 0 || i >= n)
				continue;
			for (int q = 0; q < pn[i]; q++) {
				int d = pc[2 * i + q] - I + 1;
				if (d >= 0 && d <= 2)
					v[d] = pw[2 * i + q];
			}
		}
}

enum pno_status pno__darcy_ws_init(struct pno__darcy_ws *w, int n)
{
	memset(w, 0, sizeof *w);
	if (n < 3 || n > 16385)
		return pno__errorf(PNO_STATUS_INVALID,
				   "darcy: grid %d must have 3 to 16385 points "
				   "per axis", n);
	w->n = n;
	size_t P = (size_t)n * n;
	w->ax = pno_calloc(P, sizeof(double));
	w->ay = pno_calloc(P, sizeof(double));
	w->rhs = pno_calloc(P, sizeof(double));
	w->p = pno_calloc(P, sizeof(double));
	w->q = pno_calloc(P, sizeof(double));
	if (!w->ax || !w->ay || !w->rhs || !w->p || !w->q)
		goto nomem;
	int nl = n, l = 0;
	for (;;) {
		struct pno__mg_level *L = &w->lev[l];
		size_t Pl = (size_t)nl * nl;
		L->n = nl;
		L->dinv = pno_calloc(Pl, sizeof(double));
		L->x = pno_calloc(Pl, sizeof(double));
		L->b = pno_calloc(Pl, sizeof(double));
		L->r = pno_calloc(Pl, sizeof(double));
		if (!L->dinv || !L->x || !L->b || !L->r)
			goto nomem;
		if (l > 0) {
			for (int o = 0; o < 9; o++)
				if (!(L->st[o] = pno_calloc(Pl, sizeof(double))))
					goto nomem;
		}
		int last = (size_t)(nl - 2) * (nl - 2) <= DIRECT_MAX ||
			   l == PNO__DARCY_MAX_LEVELS - 1;
		if (last) {
			w->nlev = l + 1;
			w->nd = (nl - 2) * (nl - 2);
			break;
		}
		L->pn = pno_malloc((size_t)nl * sizeof *L->pn);
		L->pc = pno_malloc(2 * (size_t)nl * sizeof *L->pc);
		L->pw = pno_malloc(2 * (size_t)nl * sizeof *L->pw);
		L->t = pno_malloc((size_t)nl * coarse_size(nl) * sizeof *L->t);
		L->V = pno_malloc((size_t)coarse_size(nl) * 15 * sizeof *L->V);
		if (!L->pn || !L->pc || !L->pw || !L->t || !L->V)
			goto nomem;
		make_parents(L->pn, L->pc, L->pw, nl);
		make_window(L->V, L->pn, L->pc, L->pw, nl, coarse_size(nl));
		nl = coarse_size(nl);
		l++;
	}
	w->chol = pno_malloc((size_t)w->nd * w->nd * sizeof(double));
	w->tmp = pno_malloc((size_t)w->nd * sizeof(double));
	if (!w->chol || !w->tmp)
		goto nomem;
	return PNO_STATUS_OK;
nomem:
	pno__darcy_ws_free(w);
	return pno__errorf(PNO_STATUS_NOMEM, "darcy: out of memory");
}

/* ---- level 0: the 5-point operator ---- */

/* q = A u on the interior (boundary of q untouched). */
static void apply5(double *restrict q, const double *restrict u,
		   const double *restrict ax, const double *restrict ay,
		   int n)
{
	for (int i = 1; i < n - 1; i++) {
		for (int j = 1; j < n - 1; j++) {
			size_t k = (size_t)i * n + j;
			double aw = ax[k - n], ae = ax[k], as = ay[k - 1],
			       an = ay[k];
			q[k] = (aw + ae + as + an) * u[k] - aw * u[k - n] -
			       ae * u[k + n] - as * u[k - 1] - an * u[k + 1];
		}
	}
}

/* One colour of red-black Gauss-Seidel: points with (i + j) % 2 == c.
 * Same-colour points do not couple in the 5-point operator, so each
 * half-sweep is an exact block Gauss-Seidel step (and has no dependency
 * chain along the row). */
static void gs5_colour(double *restrict x, const double *restrict b,
		       const double *restrict ax, const double *restrict ay,
		       const double *restrict dinv, int n, int c)
{
	for (int i = 1; i < n - 1; i++) {
		for (int j = 1 + ((i + 1 + c) & 1); j < n - 1; j += 2) {
			size_t k = (size_t)i * n + j;
			x[k] = (b[k] + ax[k - n] * x[k - n] + ax[k] * x[k + n] +
				ay[k - 1] * x[k - 1] + ay[k] * x[k + 1]) *
			       dinv[k];
		}
	}
}

/* ---- coarse levels: 9-point stencils ---- */

static void apply9(double *restrict q, const double *restrict u,
		   double *const *st, int n)
{
	const ptrdiff_t off[9] = {-n - 1, -n, -n + 1, -1, 0, 1, n - 1, n, n + 1};
	for (int i = 1; i < n - 1; i++) {
		for (int j = 1; j < n - 1; j++) {
			size_t k = (size_t)i * n + j;
			double s = 0;
			for (int o = 0; o < 9; o++)
				s += st[o][k] * u[k + off[o]];
			q[k] = s;
		}
	}
}

/* Lexicographic Gauss-Seidel sweep, forward or backward. The neighbour
 * just updated (west going forward, east going back) is subtracted last,
 * so only one multiply-add per point waits for the previous point. */
static void gs9(double *restrict x, const double *restrict b,
		double *const *st, const double *restrict dinv, int n,
		int backward)
{
	const double *s0 = st[0], *s1 = st[1], *s2 = st[2], *s3 = st[3];
	const double *s5 = st[5], *s6 = st[6], *s7 = st[7], *s8 = st[8];
	for (int ii = 1; ii < n - 1; ii++) {
		int i = backward ? n - 1 - ii : ii;
		size_t r = (size_t)i * n;
		if (!backward) {
			for (size_t k = r + 1; k < r + n - 1; k++) {
				double t = b[k] - s0[k] * x[k - n - 1] -
					   s1[k] * x[k - n] - s2[k] * x[k - n + 1] -
					   s5[k] * x[k + 1] - s6[k] * x[k + n - 1] -
					   s7[k] * x[k + n] - s8[k] * x[k + n + 1];
				x[k] = (t - s3[k] * x[k - 1]) * dinv[k];
			}
		} else {
			for (size_t k = r + n - 2; k > r; k--) {
				double t = b[k] - s0[k] * x[k - n - 1] -
					   s1[k] * x[k - n] - s2[k] * x[k - n + 1] -
					   s3[k] * x[k - 1] - s6[k] * x[k + n - 1] -
					   s7[k] * x[k + n] - s8[k] * x[k + n + 1];
				x[k] = (t - s5[k] * x[k + 1]) * dinv[k];
			}
		}
	}
}

/* Row of the level-l operator at interior point (i, j) as 9 stencil
 * entries, entries for boundary neighbours (not unknowns) zeroed. */
static inline void row_of(const struct pno__darcy_ws *w, int l, int i, int j,
			  double row[9])
{
	const struct pno__mg_level *L = &w->lev[l];
	int n = L->n;
	size_t k = (size_t)i * n + j;
	if (l > 0) {
		for (int o = 0; o < 9; o++)
			row[o] = L->st[o][k];
	} else {
		const double *ax = w->ax, *ay = w->ay;
		row[0] = row[2] = row[6] = row[8] = 0.0;
		row[1] = -ax[k - n];
		row[7] = -ax[k];
		row[3] = -ay[k - 1];
		row[5] = -ay[k];
		row[4] = ax[k - n] + ax[k] + ay[k - 1] + ay[k];
	}
	if (i == 1)
		row[0] = row[1] = row[2] = 0.0;
	if (i == n - 2)
		row[6] = row[7] = row[8] = 0.0;
	if (j == 1)
		row[0] = row[3] = row[6] = 0.0;
	if (j == n - 2)
		row[2] = row[5] = row[8] = 0.0;
}

/* acc (3 x 3) += a px py^T, written out so it stays in registers */
static inline void outer_add(double acc[9], double a, const double *px,
			     const double *py)
{
	double x0 = a * px[0], x1 = a * px[1], x2 = a * px[2];
	double y0 = py[0], y1 = py[1], y2 = py[2];
	acc[0] += x0 * y0, acc[1] += x0 * y1, acc[2] += x0 * y2;
	acc[3] += x1 * y0, acc[4] += x1 * y1, acc[5] += x1 * y2;
	acc[6] += x2 * y0, acc[7] += x2 * y1, acc[8] += x2 * y2;
}

/* Coarse operator of level l+1 = P^T A_l P, one coarse row at a time:
 * row (I, J) = sum over its children (i, j) = (2I-1+d, 2J-1+e), weighted
 * by their interpolation weights, of A's row at (i, j) times P, where P's
 * rows for the neighbours are the dense 3 x 3 windows around (I, J)
 * (outer products of the per-axis windows V). Fixed-size loops with a
 * local accumulator: no scattered updates. */
static void galerkin(struct pno__darcy_ws *w, int l)
{
	struct pno__mg_level *F = &w->lev[l], *C = &w->lev[l + 1];
	int nc = C->n;
	const double *V = F->V;
	for (int I = 1; I < nc - 1; I++) {
		for (int J = 1; J < nc - 1; J++) {
			double acc[9] = {0};
			const double *vi = V + (size_t)I * 15, *vj = V + (size_t)J * 15;
			for (int d = 0; d < 3; d++) {
				double wi = vi[(d + 1) * 3 + 1];
				if (wi == 0.0)
					continue;
				for (int e = 0; e < 3; e++) {
					double wc = wi * vj[(e + 1) * 3 + 1];
					if (wc == 0.0)
						continue;
					double row[9];
					row_of(w, l, 2 * I - 1 + d, 2 * J - 1 + e, row);
					for (int o = 0; o < 9; o++) {
						double a = wc * row[o];
						if (a == 0.0)
							continue;
						const double *px = vi + (d + o / 3) * 3;
						const double *py = vj + (e + o % 3) * 3;
						outer_add(acc, a, px, py);
					}
				}
			}
			size_t K = (size_t)I * nc + J;
			for (int o = 0; o < 9; o++)
				C->st[o][K] = acc[o];
			C->dinv[K] = 1.0 / acc[4];
		}
	}
}

/* Dense Cholesky of the coarsest operator (row-major lower factor). */
static enum pno_status coarse_factor(struct pno__darcy_ws *w)
{
	int l = w->nlev - 1, n = w->lev[l].n, m = n - 2, N = w->nd;
	double *A = w->chol;
	memset(A, 0, (size_t)N * N * sizeof *A);
	for (int i = 1; i < n - 1; i++)
		for (int j = 1; j < n - 1; j++) {
			double row[9];
			row_of(w, l, i, j, row);
			for (int o = 0; o < 9; o++) {
				double a = row[o];
				if (a == 0.0)
					continue;
				int r = (i - 1) * m + (j - 1);
				int c = (i + o / 3 - 2) * m + (j + o % 3 - 2);
				A[(size_t)r * N + c] = a;
			}
		}
	for (int j = 0; j < N; j++) {
		double d = A[(size_t)j * N + j];
		for (int k = 0; k < j; k++)
			d -= A[(size_t)j * N + k] * A[(size_t)j * N + k];
		if (!(d > 0))
			return pno__errorf(PNO_STATUS_INTERNAL,
					   "darcy: coarse operator not "
					   "positive definite");
		d = sqrt(d);
		A[(size_t)j * N + j] = d;
		for (int i = j + 1; i < N; i++) {
			double s = A[(size_t)i * N + j];
			for (int k = 0; k < j; k++)
				s -= A[(size_t)i * N + k] * A[(size_t)j * N + k];
			A[(size_t)i * N + j] = s / d;
		}
	}
	return PNO_STATUS_OK;
}

static void coarse_solve(struct pno__darcy_ws *w, double *x, const double *b)
{
	int n = w->lev[w->nlev - 1].n, m = n - 2, N = w->nd;
	const double *L = w->chol;
	double *t = w->tmp;
	for (int i = 0; i < N; i++) {
		double s = b[(size_t)(i / m + 1) * n + (i % m + 1)];
		for (int k = 0; k < i; k++)
			s -= L[(size_t)i * N + k] * t[k];
		t[i] = s / L[(size_t)i * N + i];
	}
	for (int i = N - 1; i >= 0; i--) {
		double s = t[i];
		for (int k = i + 1; k < N; k++)
			s -= L[(size_t)k * N + i] * t[k];
		t[i] = s / L[(size_t)i * N + i];
	}
	for (int i = 0; i < N; i++)
		x[(size_t)(i / m + 1) * n + (i % m + 1)] = t[i];
}

/* C->b = P^T (F->b - F->r), F->r = A x on entry; P = Px (x) Py is
 * applied one axis at a time through F->t. */
static void restrict_residual(struct pno__mg_level *F, struct pno__mg_level *C)
{
	int n = F->n, nc = C->n;
	const int *pn = F->pn, *pc = F->pc;
	const double *pw = F->pw;
	double *t = F->t;
	memset(t, 0, (size_t)n * nc * sizeof *t);
	memset(C->b, 0, (size_t)nc * nc * sizeof *C->b);
	for (int i = 1; i < n - 1; i++) {
		const double *b = F->b + (size_t)i * n, *r = F->r + (size_t)i * n;
		double *ti = t + (size_t)i * nc;
		for (int j = 1; j < n - 1; j++) {
			double v = b[j] - r[j];
			for (int q = 0; q < pn[j]; q++)
				ti[pc[2 * j + q]] += pw[2 * j + q] * v;
		}
	}
	for (int i = 1; i < n - 1; i++)
		for (int q = 0; q < pn[i]; q++) {
			double *cb = C->b + (size_t)pc[2 * i + q] * nc;
			const double *ti = t + (size_t)i * nc;
			double wq = pw[2 * i + q];
			for (int J = 1; J < nc - 1; J++)
				cb[J] += wq * ti[J];
		}
}

/* F->x += P C->x */
static void prolong_add(struct pno__mg_level *F, const struct pno__mg_level *C)
{
	int n = F->n, nc = C->n;
	const int *pn = F->pn, *pc = F->pc;
	const double *pw = F->pw;
	double *t = F->t;
	for (int i = 1; i < n - 1; i++) {
		double *ti = t + (size_t)i * nc;
		memset(ti, 0, (size_t)nc * sizeof *ti);
		for (int q = 0; q < pn[i]; q++) {
			const double *cx = C->x + (size_t)pc[2 * i + q] * nc;
			double wq = pw[2 * i + q];
			for (int J = 1; J < nc - 1; J++)
				ti[J] += wq * cx[J];
		}
	}
	for (int i = 1; i < n - 1; i++) {
		double *x = F->x + (size_t)i * n;
		const double *ti = t + (size_t)i * nc;
		for (int j = 1; j < n - 1; j++) {
			double e = 0;
			for (int q = 0; q < pn[j]; q++)
				e += pw[2 * j + q] * ti[pc[2 * j + q]];
			x[j] += e;
		}
	}
}

static void smooth(struct pno__darcy_ws *w, int l, int backward)
{
	struct pno__mg_level *L = &w->lev[l];
	if (l == 0) {
		/* red then black before, black then red after: the
		 * post-smoother is the pre-smoother's adjoint */
		gs5_colour(L->x, L->b, w->ax, w->ay, L->dinv, L->n, backward);
		gs5_colour(L->x, L->b, w->ax, w->ay, L->dinv, L->n, !backward);
	} else
		gs9(L->x, L->b, L->st, L->dinv, L->n, backward);
}

/* lev[l].x = V-cycle approximation of A_l^{-1} lev[l].b */
static void vcycle(struct pno__darcy_ws *w, int l)
{
	struct pno__mg_level *F = &w->lev[l];
	int n = F->n;
	if (l == w->nlev - 1) {
		coarse_solve(w, F->x, F->b);
		return;
	}
	struct pno__mg_level *C = &w->lev[l + 1];
	memset(F->x, 0, (size_t)n * n * sizeof(double));
	smooth(w, l, 0);
	if (l == 0)
		apply5(F->r, F->x, w->ax, w->ay, n);
	else
		apply9(F->r, F->x, F->st, n);
	restrict_residual(F, C);
	vcycle(w, l + 1);
	prolong_add(F, C);
	smooth(w, l, 1);
}

static double dot(const double *a, const double *b, int n)
{
	double s = 0;
	for (int i = 1; i < n - 1; i++)
		for (int j = 1; j < n - 1; j++)
			s += a[(size_t)i * n + j] * b[(size_t)i * n + j];
	return s;
}

/* r = h^2 f - A u (into lev[0].b, q as scratch); returns ||r||. */
static double true_residual(struct pno__darcy_ws *w, const double *u)
{
	int n = w->n;
	double *r = w->lev[0].b;
	apply5(w->q, u, w->ax, w->ay, n);
	for (size_t k = 0; k < (size_t)n * n; k++)
		r[k] = w->rhs[k] - w->q[k];
	return sqrt(dot(r, r, n));
}

enum pno_status pno__darcy_ws_solve(struct pno__darcy_ws *w, const double *a,
				    const double *f, double tol, double *u,
				    struct pno_solve_stats *stats)
{
	int n = w->n;
	size_t P = (size_t)n * n;
	double h2 = 1.0 / ((double)(n - 1) * (n - 1));
	enum pno_status st;
	struct pno_solve_stats dummy;
	if (!stats)
		stats = &dummy;
	memset(stats, 0, sizeof *stats);
	memset(u, 0, P * sizeof *u);
	/* faces on the boundary rows/columns are used by interior rows */
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			size_t k = (size_t)i * n + j;
			w->ax[k] = i < n - 1 ? 0.5 * (a[k] + a[k + n]) : 0.0;
			w->ay[k] = j < n - 1 ? 0.5 * (a[k] + a[k + 1]) : 0.0;
		}
	struct pno__mg_level *L0 = &w->lev[0];
	for (int i = 1; i < n - 1; i++)
		for (int j = 1; j < n - 1; j++) {
			size_t k = (size_t)i * n + j;
			L0->dinv[k] = 1.0 / (w->ax[k - n] + w->ax[k] +
					     w->ay[k - 1] + w->ay[k]);
			w->rhs[k] = h2 * f[k];
		}
	for (int l = 0; l + 1 < w->nlev; l++)
		galerkin(w, l);
	if ((st = coarse_factor(w)) != PNO_STATUS_OK)
		return st;

	/* PCG: r lives in lev[0].b and the preconditioned z in lev[0].x,
	 * where the V-cycle reads and writes them */
	double *r = L0->b, *z = L0->x, *p = w->p, *q = w->q;
	double bnorm = sqrt(dot(w->rhs, w->rhs, n));
	if (bnorm == 0.0)
		return PNO_STATUS_OK;
	memcpy(r, w->rhs, P * sizeof *r);
	double rnorm = bnorm, rz = 0;
	int restart = 1;
	const char *fail = NULL;
	long it;
	for (it = 0;; it++) {
		if (rnorm <= tol * bnorm) {
			/* the recursive residual drifts from the true one:
			 * accept only if the true residual also passes */
			rnorm = true_residual(w, u);
			if (rnorm <= tol * bnorm)
				break;
			restart = 1;
		}
		if (it >= PNO__DARCY_MAX_ITER) {
			fail = "did not converge in";
			break;
		}
		vcycle(w, 0);
		double rz_new = dot(r, z, n);
		if (restart) {
			memcpy(p, z, P * sizeof *p);
			restart = 0;
		} else {
			double beta = rz_new / rz;
			for (size_t k = 0; k < P; k++)
				p[k] = z[k] + beta * p[k];
		}
		rz = rz_new;
		apply5(q, p, w->ax, w->ay, n);
		double pq = dot(p, q, n), alpha = rz / pq;
		if (!(pq > 0) || !isfinite(alpha)) {
			/* breakdown (only at rounding level for SPD A and
			 * M): keep the iterate if it is good enough */
			rnorm = true_residual(w, u);
			if (!(rnorm <= tol * bnorm))
				fail = "broke down after";
			break;
		}
		for (int i = 1; i < n - 1; i++)
			for (int j = 1; j < n - 1; j++) {
				size_t k = (size_t)i * n + j;
				u[k] += alpha * p[k];
				r[k] -= alpha * q[k];
			}
		rnorm = sqrt(dot(r, r, n));
	}
	stats->steps = it;
	stats->residual = rnorm / bnorm;
	if (!fail)
		return PNO_STATUS_OK;
	return pno__errorf(PNO_STATUS_RANGE,
			   "darcy: conjugate gradients %s %ld iterations "
			   "(relative residual %.3g, tolerance %.3g)",
			   fail, it, rnorm / bnorm, tol);
}
