/* Darcy flow: the multigrid-PCG solver against a manufactured solution
 * (second-order convergence), an exact discrete eigenfunction (any n,
 * including grids that do not halve evenly), a naive residual, symmetry,
 * a thresholded-GRF coefficient at n = 241, bad inputs, non-convergence
 * and allocation failures; the generator end to end. */
#include "testutil.h"
#include "pno/io.h"
#include "pno/pde.h"
#include "pde_darcy_mg.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static double *dalloc(size_t n)
{
	double *p = calloc(n, sizeof *p);
	assert_non_null(p);
	return p;
}

/* ||f - L u||_2 / ||f||_2 over the interior, L the 5-point operator of
 * -div(a grad u) written out directly (h^-2 scaling, face = mean). */
static double naive_residual(int n, const double *a, const double *f,
			     const double *u)
{
	double h2 = 1.0 / ((double)(n - 1) * (n - 1)), rr = 0, ff = 0;
#define A(i, j) a[(size_t)(i) * n + (j)]
#define U(i, j) u[(size_t)(i) * n + (j)]
	for (int i = 1; i < n - 1; i++)
		for (int j = 1; j < n - 1; j++) {
			double fe = (A(i, j) + A(i + 1, j)) / 2;
			double fw = (A(i, j) + A(i - 1, j)) / 2;
			double fn = (A(i, j) + A(i, j + 1)) / 2;
			double fs = (A(i, j) + A(i, j - 1)) / 2;
			double Lu = -(fe * (U(i + 1, j) - U(i, j)) -
				      fw * (U(i, j) - U(i - 1, j)) +
				      fn * (U(i, j + 1) - U(i, j)) -
				      fs * (U(i, j) - U(i, j - 1))) / h2;
			double r = f[(size_t)i * n + j] - Lu;
			rr += r * r;
			ff += f[(size_t)i * n + j] * f[(size_t)i * n + j];
		}
#undef A
#undef U
	return sqrt(rr / ff);
}

static void check_boundary_zero(int n, const double *u)
{
	for (int k = 0; k < n; k++) {
		assert_true(u[k] == 0.0);
		assert_true(u[(size_t)(n - 1) * n + k] == 0.0);
		assert_true(u[(size_t)k * n] == 0.0);
		assert_true(u[(size_t)k * n + n - 1] == 0.0);
	}
}

/* u = sin(pi x) sin(pi y), a = 1 + 0.5 sin(2 pi x) cos(pi y) + x y (>= 0.5),
 * f = -div(a grad u) = -(a_x u_x + a_y u_y) + 2 pi^2 a u. */
static double mms_a(double x, double y)
{
	return 1 + 0.5 * sin(2 * M_PI * x) * cos(M_PI * y) + x * y;
}

static double mms_err(int n)
{
	size_t P = (size_t)n * n;
	double *a = dalloc(P), *f = dalloc(P), *u = dalloc(P);
	double h = 1.0 / (n - 1), pi = M_PI;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double x = i * h, y = j * h;
			double ax = pi * cos(2 * pi * x) * cos(pi * y) + y;
			double ay = -0.5 * pi * sin(2 * pi * x) * sin(pi * y) + x;
			double ux = pi * cos(pi * x) * sin(pi * y);
			double uy = pi * sin(pi * x) * cos(pi * y);
			double ue = sin(pi * x) * sin(pi * y);
			a[(size_t)i * n + j] = mms_a(x, y);
			f[(size_t)i * n + j] = -(ax * ux + ay * uy) +
					       2 * pi * pi * mms_a(x, y) * ue;
		}
	struct pno_solve_stats s;
	assert_status(pno_darcy_solve(n, a, f, 1e-12, u, &s), PNO_STATUS_OK);
	check_boundary_zero(n, u);
	double e = 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			e = fmax(e, fabs(u[(size_t)i * n + j] -
					 sin(pi * i * h) * sin(pi * j * h)));
	free(a);
	free(f);
	free(u);
	return e;
}

static void test_manufactured(void **state)
{
	(void)state;
	/* the scheme is second order for smooth a; the algebraic error
	 * (tol 1e-12) is far below the discretization error */
	double e33 = mms_err(33), e65 = mms_err(65), e129 = mms_err(129);
	double p1 = log2(e33 / e65), p2 = log2(e65 / e129);
	print_message("manufactured: max error %.3e %.3e %.3e, orders %.3f %.3f\n",
		      e33, e65, e129, p1, p2);
	assert_true(p1 >= 1.85 && p1 <= 2.15);
	assert_true(p2 >= 1.85 && p2 <= 2.15);
	assert_true(e129 < 1e-4);
}

/* a = const, f = sin(pi x) sin(pi y): the grid function sin(pi x_i)
 * sin(pi y_j) is an eigenvector of the discrete operator with eigenvalue
 * a (8/h^2) sin^2(pi h/2), so the discrete solution is known exactly for
 * every n (odd numbers of intervals exercise the uneven coarsening). */
static void test_eigenfunction(void **state)
{
	(void)state;
	const int ns[] = {3, 4, 5, 10, 11, 12, 16, 50, 64, 100, 127};
	double worst = 0;
	for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
		int n = ns[t];
		size_t P = (size_t)n * n;
		double *a = dalloc(P), *f = dalloc(P), *u = dalloc(P);
		double h = 1.0 / (n - 1), c = 2.5;
		double lam = c * 8 / (h * h) * pow(sin(M_PI * h / 2), 2);
		for (size_t k = 0; k < P; k++) {
			a[k] = c;
			f[k] = sin(M_PI * (double)(k / n) * h) *
			       sin(M_PI * (double)(k % n) * h);
		}
		struct pno_solve_stats s;
		assert_status(pno_darcy_solve(n, a, f, 1e-12, u, &s), PNO_STATUS_OK);
		check_boundary_zero(n, u);
		double e = 0, m = 0;
		for (int i = 1; i < n - 1; i++)
			for (int j = 1; j < n - 1; j++) {
				size_t k = (size_t)i * n + j;
				e = fmax(e, fabs(u[k] - f[k] / lam));
				m = fmax(m, fabs(f[k] / lam));
			}
		/* relative residual 1e-12 bounds the relative error by
		 * cond(A) 1e-12 <= ~1e-8 at n = 127 */
		worst = fmax(worst, e / m);
		if (!(e <= 1e-8 * m))
			fail_msg("n %d: max error %.3g (max u %.3g), %ld iterations",
				 n, e, m, s.steps);
		free(a);
		free(f);
		free(u);
	}
	print_message("eigenfunction: worst relative error %.2e\n", worst);
}

/* A rough positive coefficient: smooth part times a checkerboard-ish
 * jump, deterministic. */
static double rough_a(int i, int j, int n)
{
	double x = (double)i / (n - 1), y = (double)j / (n - 1);
	double s = sin(7 * x + 3 * y) + cos(5 * x * y + 1);
	return (s > 0 ? 12.0 : 3.0) * (1 + 0.2 * x);
}

static void test_residual(void **state)
{
	(void)state;
	const int ns[] = {20, 65, 66};
	for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
		int n = ns[t];
		size_t P = (size_t)n * n;
		double *a = dalloc(P), *f = dalloc(P), *u = dalloc(P);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++) {
				a[(size_t)i * n + j] = rough_a(i, j, n);
				f[(size_t)i * n + j] = 1 + i % 3 - 0.5 * (j % 2);
			}
		/* NaN on the boundary of f is ignored */
		f[0] = NAN;
		struct pno_solve_stats s;
		double tol = 1e-10;
		assert_status(pno_darcy_solve(n, a, f, tol, u, &s), PNO_STATUS_OK);
		f[0] = 0;
		check_boundary_zero(n, u);
		double r = naive_residual(n, a, f, u);
		print_message("residual n %d: %ld iterations, stats %.3e, naive %.3e\n",
			      n, s.steps, s.residual, r);
		/* the same residual computed twice: the two differ by
		 * rounding, ~eps cond(A) ~ 1e-12 relative */
		assert_true(r <= 1.01 * tol);
		assert_true(s.residual <= tol);
		tu_assert_close(s.residual, r, 0.01 * tol);
		assert_true(s.steps >= 1);
		free(a);
		free(f);
		free(u);
	}
}

/* a symmetric under x <-> y and x -> 1 - x (so also y -> 1 - y), f too:
 * the discrete problem has the same symmetries, so must u (to the
 * solver's accuracy: relative residual 1e-10 times cond(A) ~ 1e3-1e4). */
static void test_symmetry(void **state)
{
	(void)state;
	const int ns[] = {50, 65};
	for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
		int n = ns[t];
		size_t P = (size_t)n * n;
		double *a = dalloc(P), *f = dalloc(P), *u = dalloc(P);
		double h = 1.0 / (n - 1);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++) {
				/* use the index form so the grid symmetry is
				 * exact in floating point */
				int ii = i < n - 1 - i ? i : n - 1 - i;
				int jj = j < n - 1 - j ? j : n - 1 - j;
				int lo = ii < jj ? ii : jj, hi = ii < jj ? jj : ii;
				double x = lo * h, y = hi * h;
				double s = sin(9 * x) * cos(4 * y) + x * y * 3;
				a[(size_t)i * n + j] = s > 0.1 ? 12 : 3;
				f[(size_t)i * n + j] = 1 + x + y * y;
			}
		struct pno_solve_stats s;
		assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_OK);
		double m = 0, et = 0, ex = 0;
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++) {
				double v = u[(size_t)i * n + j];
				m = fmax(m, fabs(v));
				et = fmax(et, fabs(v - u[(size_t)j * n + i]));
				ex = fmax(ex, fabs(v - u[(size_t)(n - 1 - i) * n + j]));
			}
		print_message("symmetry n %d: transpose %.2e, mirror %.2e (max u %.3e)\n",
			      n, et / m, ex / m, m);
		assert_true(et <= 1e-8 * m);
		assert_true(ex <= 1e-8 * m);
		free(a);
		free(f);
		free(u);
	}
}

/* The generator's coefficient: a Neumann GRF thresholded to 12 / 3 at the
 * default fine grid; multigrid should need tens of iterations at most. */
static void test_grf_coefficient(void **state)
{
	(void)state;
	int n = 241;
	size_t P = (size_t)n * n;
	double *g = dalloc(P), *a = dalloc(P), *f = dalloc(P), *u = dalloc(P);
	struct pno_grf_opts go = {2.0, 3.0, 3.0};
	for (uint64_t idx = 0; idx < 3; idx++) {
		/* without the constant mode, as the generator draws it */
		double z0, sd0 = go.sigma * pow(go.tau, -go.alpha);
		pno_rng_normal_f64(&z0, 1, 0, idx, 0);
		assert_status(pno_grf_neumann(g, 2, n, n, &go, 0, idx), PNO_STATUS_OK);
		size_t npos = 0;
		for (size_t k = 0; k < P; k++) {
			a[k] = g[k] - sd0 * z0 >= 0 ? 12.0 : 3.0;
			npos += a[k] == 12.0;
			f[k] = 1.0;
		}
		struct pno_solve_stats s;
		assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_OK);
		double r = naive_residual(n, a, f, u);
		print_message("GRF coefficient n 241 sample %d: %.0f%% a = 12, "
			      "%ld iterations, residual %.3e (naive %.3e)\n",
			      (int)idx, 100.0 * npos / P, s.steps, s.residual, r);
		assert_true(r <= 1.01e-10);
		assert_true(s.steps <= 40);
		/* f = 1 > 0 and a > 0: the maximum principle gives u > 0 in
		 * the interior */
		for (int i = 1; i < n - 1; i++)
			for (int j = 1; j < n - 1; j++)
				assert_true(u[(size_t)i * n + j] > 0);
	}
	free(g);
	free(a);
	free(f);
	free(u);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	int n = 8;
	double a[64], f[64], u[64];
	for (int k = 0; k < 64; k++)
		a[k] = 1, f[k] = 1;
	struct pno_solve_stats s;
	assert_status(pno_darcy_solve(2, a, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	assert_status(pno_darcy_solve(n, NULL, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	assert_status(pno_darcy_solve(n, a, NULL, 1e-10, u, &s), PNO_STATUS_INVALID);
	assert_status(pno_darcy_solve(n, a, f, 1e-10, NULL, &s), PNO_STATUS_INVALID);
	assert_status(pno_darcy_solve(n, a, f, 0, u, &s), PNO_STATUS_INVALID);
	assert_err_has("--tol");
	assert_status(pno_darcy_solve(n, a, f, NAN, u, &s), PNO_STATUS_INVALID);
	assert_status(pno_darcy_solve(n, a, f, INFINITY, u, &s), PNO_STATUS_INVALID);
	a[9] = 0;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	assert_err_has("a[1][1]");
	a[9] = -1;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	a[9] = NAN;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	a[9] = 1;
	a[63] = INFINITY;	/* a boundary value of a is used by the faces */
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	a[63] = 1;
	f[10] = NAN;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_INVALID);
	assert_err_has("f[1][2]");
	f[10] = 1;
	/* zero forcing: zero solution, no iterations */
	for (int k = 0; k < 64; k++)
		f[k] = 0, u[k] = 5;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, &s), PNO_STATUS_OK);
	for (int k = 0; k < 64; k++)
		assert_true(u[k] == 0.0);
	assert_int_equal(s.steps, 0);
	/* stats may be NULL */
	f[20] = 1;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, u, NULL), PNO_STATUS_OK);
}

/* An unreachable tolerance: RANGE with a message, and the stats of the
 * last iterate (whose residual is at rounding level). */
static void test_not_converged(void **state)
{
	(void)state;
	int n = 12;
	double a[144], f[144], u[144];
	for (int k = 0; k < 144; k++)
		a[k] = 1 + k % 5, f[k] = 1;
	struct pno_solve_stats s;
	assert_status(pno_darcy_solve(n, a, f, 1e-300, u, &s), PNO_STATUS_RANGE);
	/* it either hits the cap or breaks down at rounding level */
	assert_err_has("darcy: conjugate gradients");
	assert_err_has("tolerance 1e-300");
	assert_true(s.steps >= 10);
	assert_true(s.residual < 1e-12);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	int n = 40;
	size_t P = (size_t)n * n;
	double *a = dalloc(P), *f = dalloc(P), *u = dalloc(P), *want = dalloc(P);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			a[(size_t)i * n + j] = rough_a(i, j, n), f[(size_t)i * n + j] = 1;
	assert_status(pno_darcy_solve(n, a, f, 1e-10, want, NULL), PNO_STATUS_OK);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_darcy_solve(n, a, f, 1e-10, u, NULL),
				  live0))
			break;
	}
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	assert_true(k >= 10);
	assert_memory_equal(u, want, P * sizeof *u);
	free(a);
	free(f);
	free(u);
	free(want);
}

/* ---- the multigrid hierarchy against dense linear algebra ---- */

/* Interpolation from an nc-point coarse axis to an n-point fine axis,
 * (n-2) x (nc-2) over interior points, derived from positions: coarse
 * point c sits at fine index 2c (c < nc-1) and the last at n-1; a fine
 * point takes the linear interpolant between the coarse points around
 * it. */
static double *dense_p1(int n, int nc)
{
	int *pos = malloc((size_t)nc * sizeof *pos);
	double *P = calloc((size_t)(n - 2) * (nc - 2), sizeof *P);
	assert_non_null(pos);
	assert_non_null(P);
	for (int c = 0; c < nc - 1; c++)
		pos[c] = 2 * c;
	pos[nc - 1] = n - 1;
	for (int j = 1; j < n - 1; j++) {
		int c = 0;
		while (pos[c + 1] < j)
			c++;
		double t = (double)(j - pos[c]) / (pos[c + 1] - pos[c]);
		if (c >= 1 && c <= nc - 2)
			P[(size_t)(j - 1) * (nc - 2) + (c - 1)] += 1 - t;
		if (c + 1 >= 1 && c + 1 <= nc - 2)
			P[(size_t)(j - 1) * (nc - 2) + c] += t;
	}
	free(pos);
	return P;
}

/* Ac = (P1 x P1)^T A (P1 x P1), all dense; A is N x N, N = (n-2)^2. */
static double *dense_rap(const double *A, int n, int nc)
{
	int m = n - 2, mc = nc - 2, N = m * m, Nc = mc * mc;
	double *P1 = dense_p1(n, nc);
	double *AP = calloc((size_t)N * Nc, sizeof *AP);
	double *Ac = calloc((size_t)Nc * Nc, sizeof *Ac);
	assert_non_null(AP);
	assert_non_null(Ac);
#define P2(r, c) (P1[(size_t)((r) / m) * mc + (c) / mc] * \
		  P1[(size_t)((r) % m) * mc + (c) % mc])
	for (int r = 0; r < N; r++)
		for (int k = 0; k < N; k++) {
			double a = A[(size_t)r * N + k];
			if (a != 0)
				for (int c = 0; c < Nc; c++)
					AP[(size_t)r * Nc + c] += a * P2(k, c);
		}
	for (int r = 0; r < Nc; r++)
		for (int k = 0; k < N; k++) {
			double p = P2(k, r);
			if (p != 0)
				for (int c = 0; c < Nc; c++)
					Ac[(size_t)r * Nc + c] += p * AP[(size_t)k * Nc + c];
		}
#undef P2
	free(P1);
	free(AP);
	return Ac;
}

/* Level lev's 9-point stencils must be exactly the dense matrix Ac (and Ac
 * must have no entries outside the 3 x 3 neighbourhood). */
static void check_level(const struct pno__mg_level *L, const double *Ac)
{
	int nc = L->n, mc = nc - 2, Nc = mc * mc;
	double amax = 0, e = 0;
	for (size_t k = 0; k < (size_t)Nc * Nc; k++)
		amax = fmax(amax, fabs(Ac[k]));
	for (int r = 0; r < Nc; r++)
		for (int c = 0; c < Nc; c++) {
			int I = r / mc + 1, J = r % mc + 1;
			int di = c / mc + 1 - I, dj = c % mc + 1 - J;
			double want = Ac[(size_t)r * Nc + c], got = 0;
			if (abs(di) <= 1 && abs(dj) <= 1)
				got = L->st[(di + 1) * 3 + dj + 1][(size_t)I * nc + J];
			e = fmax(e, fabs(got - want));
		}
	print_message("galerkin level n %d: max diff %.2e of max %.3g\n", nc, e, amax);
	/* the same sums in another order: rounding only */
	if (!(e <= 1e-13 * amax))
		fail_msg("level n %d: max |stencil - dense RAP| %.3g (max %.3g)",
			 nc, e, amax);
}

static void test_galerkin_dense(void **state)
{
	(void)state;
	const int ns[] = {24, 25};	/* 23 intervals (uneven) and 24 */
	for (size_t t = 0; t < 2; t++) {
		int n = ns[t], m = n - 2, N = m * m;
		size_t P = (size_t)n * n;
		double *a = dalloc(P), *f = dalloc(P), *u = dalloc(P);
		double *A = dalloc((size_t)N * N);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++)
				a[(size_t)i * n + j] = rough_a(i, j, n), f[(size_t)i * n + j] = 1;
		struct pno__darcy_ws w;
		assert_status(pno__darcy_ws_init(&w, n), PNO_STATUS_OK);
		assert_status(pno__darcy_ws_solve(&w, a, f, 1e-10, u, NULL),
			      PNO_STATUS_OK);
		assert_int_equal(w.nlev, 3);
		assert_int_equal(w.lev[1].n, 13);
		assert_int_equal(w.lev[2].n, 7);
		/* the fine operator (h^2 scaled), from the definition */
		for (int i = 1; i < n - 1; i++)
			for (int j = 1; j < n - 1; j++) {
				int r = (i - 1) * m + (j - 1);
				const int di[4] = {-1, 1, 0, 0}, dj[4] = {0, 0, -1, 1};
				for (int q = 0; q < 4; q++) {
					int i2 = i + di[q], j2 = j + dj[q];
					double fa = (a[(size_t)i * n + j] +
						     a[(size_t)i2 * n + j2]) / 2;
					A[(size_t)r * N + r] += fa;
					if (i2 >= 1 && i2 <= n - 2 && j2 >= 1 && j2 <= n - 2)
						A[(size_t)r * N + (i2 - 1) * m + (j2 - 1)] -= fa;
				}
			}
		double *A1 = dense_rap(A, n, 13);
		check_level(&w.lev[1], A1);
		double *A2 = dense_rap(A1, 13, 7);
		check_level(&w.lev[2], A2);
		pno__darcy_ws_free(&w);
		free(a), free(f), free(u), free(A), free(A1), free(A2);
	}
}

/* ---- generator ---- */

static double attr_num(const char *path, const char *name)
{
	double v = NAN;
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	assert_true(f >= 0);
	hid_t a = H5Aopen(f, name, H5P_DEFAULT);
	assert_true(a >= 0);
	assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
	H5Aclose(a);
	H5Fclose(f);
	return v;
}

static void small_opts(struct pno_darcy_opts *o, int fine, int res)
{
	pno_darcy_opts_default(o);
	o->base.samples = 6;
	o->base.seed = 17;
	o->fine_res = fine;
	o->base.res = res;
}

static void test_generate(void **state)
{
	(void)state;
	const char *p1 = tu_tmp_path("darcy1.h5"), *p2 = tu_tmp_path("darcy2.h5");
	const char *pf = tu_tmp_path("darcy_full.h5");
	struct pno_darcy_opts o;
	struct pno_dataset d1, d2, df;
	small_opts(&o, 33, 17);
	pno_threads_set(1);
	assert_status(pno_generate_darcy(&o, p1, 1), PNO_STATUS_OK);
	pno_threads_set(2);
	assert_status(pno_generate_darcy(&o, p2, 1), PNO_STATUS_OK);
	o.base.res = 33;	/* stride 1: nu is the whole fine coefficient */
	assert_status(pno_generate_darcy(&o, pf, 1), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d1, p1, NULL), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d2, p2, NULL), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&df, pf, NULL), PNO_STATUS_OK);
	assert_string_equal(d1.layout, "darcy");
	assert_string_equal(d1.pde, "darcy");
	assert_int_equal(d1.N, 6);
	assert_int_equal(d1.X, 17);
	assert_int_equal(d1.Y, 17);
	assert_int_equal(df.X, 33);
	/* thread count changes nothing: sample i depends on (seed, i) only */
	size_t P = 17 * 17, F = 33 * 33;
	assert_memory_equal(d1.in, d2.in, 6 * P * sizeof(float));
	assert_memory_equal(d1.out, d2.out, 6 * P * sizeof(float));

	/* nu: the zero-mean Neumann GRF thresholded at 0 to 12 / 3, i.e.
	 * pno_grf_neumann minus its constant mode sd_0 z_0 (z_0 the first
	 * normal of the sample's stream) */
	double *g = dalloc(F), *a = dalloc(F), *f = dalloc(F), *u = dalloc(F);
	double sd0 = o.grf.sigma * pow(o.grf.tau, -o.grf.alpha);
	int n12 = 0, n3 = 0;
	for (int s = 0; s < 6; s++) {
		double z0;
		pno_rng_normal_f64(&z0, 1, o.base.seed, (uint64_t)s, 0);
		assert_status(pno_grf_neumann(g, 2, 33, 33, &o.grf, o.base.seed,
					      (uint64_t)s), PNO_STATUS_OK);
		for (size_t k = 0; k < F; k++) {
			float v = df.in[(size_t)s * F + k];
			assert_true(v == 3.0f || v == 12.0f);
			n12 += v == 12.0f, n3 += v == 3.0f;
			if (fabs(g[k] - sd0 * z0) > 1e-9)
				assert_true(v == (g[k] - sd0 * z0 >= 0 ? 12.0f : 3.0f));
		}
		/* the subsampled file holds every second vertex */
		for (int I = 0; I < 17; I++)
			for (int J = 0; J < 17; J++) {
				assert_true(d1.in[s * P + I * 17 + J] ==
					    df.in[s * F + 2 * I * 33 + 2 * J]);
				assert_true(d1.out[s * P + I * 17 + J] ==
					    df.out[s * F + 2 * I * 33 + 2 * J]);
			}
	}
	print_message("generator: %d vertices a = 12, %d a = 3 over 6 samples\n",
		      n12, n3);
	assert_true(n12 > 0 && n3 > 0);
	/* tensor: a direct solve of sample 0 with its coefficient (the same
	 * solver on the same doubles: equal up to the float conversion) */
	for (size_t k = 0; k < F; k++)
		a[k] = df.in[k], f[k] = o.forcing;
	assert_status(pno_darcy_solve(33, a, f, o.tol, u, NULL), PNO_STATUS_OK);
	double e = 0, m = 0;
	for (int I = 0; I < 17; I++)
		for (int J = 0; J < 17; J++) {
			double ud = u[(size_t)2 * I * 33 + 2 * J];
			e = fmax(e, fabs(d1.out[I * 17 + J] - ud));
			m = fmax(m, fabs(ud));
		}
	assert_true(e <= 1e-7 * m);	/* float rounding: 6e-8 relative */
	assert_true(m > 0);

	char buf[256];
	assert_status(pno_h5_attr_string(p1, "grid", buf, sizeof buf), PNO_STATUS_OK);
	assert_string_equal(buf, "vertex");
	assert_status(pno_h5_attr_string(p1, "solver", buf, sizeof buf), PNO_STATUS_OK);
	assert_non_null(strstr(buf, "PCG"));
	assert_true(attr_num(p1, "fine_res") == 33);
	assert_true(attr_num(p1, "stride") == 2);
	assert_true(attr_num(p1, "beta") == 1.0);
	assert_true(attr_num(p1, "forcing") == 1.0);
	assert_true(attr_num(p1, "a_pos") == 12.0);
	assert_true(attr_num(p1, "a_neg") == 3.0);
	assert_true(attr_num(p1, "tol") == 1e-10);
	assert_true(attr_num(p1, "grf_tau") == 3.0);
	pno_dataset_free(&d1);
	pno_dataset_free(&d2);
	pno_dataset_free(&df);
	free(g), free(a), free(f), free(u);
	unlink(p1), unlink(p2), unlink(pf);
}

static void test_generate_bad_options(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("darcy_bad.h5");
	struct pno_darcy_opts o;
	unlink(path);
	pno_darcy_opts_default(&o);
	assert_int_equal(o.base.res, 61);
	assert_int_equal(o.fine_res, 241);
	assert_int_equal(o.base.samples, 1000);
	o.base.res = 50;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("darcy: --res 50 does not divide the fine grid 241");
	assert_err_has("e.g. --res 49 or 61");
	o.base.res = 300;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--res 300");
	o.base.res = 1;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--res 1");
	o.base.res = 2;
	o.fine_res = 2;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--fine-res");
	o.fine_res = 1026;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--fine-res");
	pno_darcy_opts_default(&o);
	o.a_pos = 0;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--a-pos");
	pno_darcy_opts_default(&o);
	o.a_neg = NAN;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--a-neg");
	pno_darcy_opts_default(&o);
	o.tol = 0;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--tol");
	pno_darcy_opts_default(&o);
	o.forcing = INFINITY;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--forcing");
	pno_darcy_opts_default(&o);
	o.grf.tau = 0;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--tau");
	pno_darcy_opts_default(&o);
	o.base.samples = 0;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_INVALID);
	assert_int_equal(access(path, F_OK), -1);
	/* a failing solve stops the run, names the sample, leaves no file */
	small_opts(&o, 17, 9);
	o.base.samples = 2;
	o.tol = 1e-300;
	pno_threads_set(1);
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_RANGE);
	assert_err_has("darcy: conjugate gradients");
	assert_err_has("(sample 0)");
	assert_int_equal(access(path, F_OK), -1);
	pno_threads_set(2);
	/* zero forcing is allowed: u = 0 */
	small_opts(&o, 17, 9);
	o.forcing = 0;
	assert_status(pno_generate_darcy(&o, path, 0), PNO_STATUS_OK);
	unlink(path);
}

static void test_generate_alloc_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("darcy_alloc.h5");
	struct pno_darcy_opts o;
	small_opts(&o, 17, 9);
	o.base.samples = 2;
	unlink(path);
	pno_threads_set(1);	/* the counting allocator is not thread-safe */
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_generate_darcy(&o, path, 0), live0))
			break;
		assert_int_equal(access(path, F_OK), -1);
	}
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	pno_threads_set(2);
	assert_true(k > 10);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manufactured),
		cmocka_unit_test(test_eigenfunction),
		cmocka_unit_test(test_residual),
		cmocka_unit_test(test_symmetry),
		cmocka_unit_test(test_grf_coefficient),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_not_converged),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_galerkin_dense),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_generate_bad_options),
		cmocka_unit_test(test_generate_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
