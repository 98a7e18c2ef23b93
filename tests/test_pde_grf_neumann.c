/* Neumann Gaussian random fields: the DCT-I synthesis against a naive
 * cosine sum (1D, 2D, non-square, X = 2), the spectrum recovered by an
 * independent trapezoid-rule projection, reproducibility, bad inputs and
 * allocation failures. */
#include "testutil.h"
#include "pno/pde.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double sd_of(const struct pno_grf_opts *g, double kk)
{
	return g->sigma * pow(M_PI * M_PI * kk + g->tau * g->tau, -g->alpha / 2);
}

/* phi_k(x) = 1 or sqrt2 cos(pi k x) */
static double phi(int k, double x)
{
	return k == 0 ? 1.0 : M_SQRT2 * cos(M_PI * k * x);
}

/* u(x_i, y_j) = sum_k sd_k z_k phi_kx(x_i) phi_ky(y_j), straight from the
 * definition (z drawn exactly as documented: stream = index, offset 0,
 * row-major (kx, ky)). */
static void naive(double *out, int dims, int X, int Y,
		  const struct pno_grf_opts *g, uint64_t seed, uint64_t index)
{
	if (dims == 1)
		Y = 1;
	size_t P = (size_t)X * Y;
	double *z = malloc(P * sizeof *z);
	assert_non_null(z);
	pno_rng_normal_f64(z, P, seed, index, 0);
	for (int i = 0; i < X; i++) {
		for (int j = 0; j < Y; j++) {
			double x = (double)i / (X - 1);
			double y = dims == 2 ? (double)j / (Y - 1) : 0.0;
			double s = 0;
			for (int kx = 0; kx < X; kx++)
				for (int ky = 0; ky < Y; ky++)
					s += sd_of(g, (double)kx * kx +
							      (double)ky * ky) *
					     z[(size_t)kx * Y + ky] *
					     phi(kx, x) *
					     (dims == 2 ? phi(ky, y) : 1.0);
			out[(size_t)i * Y + j] = s;
		}
	}
	free(z);
}

static void check_naive(int dims, int X, int Y, const struct pno_grf_opts *g)
{
	int Yn = dims == 1 ? 1 : Y;
	size_t P = (size_t)X * Yn;
	double *u = malloc(P * sizeof *u), *v = malloc(P * sizeof *v);
	assert_non_null(u);
	assert_non_null(v);
	assert_status(pno_grf_neumann(u, dims, X, Y, g, 7, 3), PNO_STATUS_OK);
	naive(v, dims, X, Y, g, 7, 3);
	double emax = 0, vmax = 0;
	for (size_t p = 0; p < P; p++) {
		emax = fmax(emax, fabs(u[p] - v[p]));
		vmax = fmax(vmax, fabs(v[p]));
	}
	/* both are O(P) sums of O(1) terms in double precision: agreement to
	 * ~1e-14 relative is expected; 1e-12 leaves room for the cosine
	 * evaluations */
	if (!(emax <= 1e-12 * vmax))
		fail_msg("dims %d %dx%d: max |dct - naive| %.3g, max |u| %.3g",
			 dims, X, Y, emax, vmax);
	free(u);
	free(v);
}

static void test_dct_vs_naive(void **state)
{
	(void)state;
	struct pno_grf_opts g = {2.0, 3.0, 3.0}, rough = {0.5, 1.0, 1.0};
	check_naive(1, 33, 0, &g);
	check_naive(1, 2, 0, &g);
	check_naive(1, 20, 0, &rough);
	check_naive(2, 17, 12, &g);
	check_naive(2, 9, 9, &rough);
	check_naive(2, 2, 5, &g);
}

/* Coefficient of phi_k recovered from values on the vertex grid by the
 * trapezoid rule: sum_i w_i cos(pi k i/N) cos(pi l i/N) (w = 1/2 at the
 * ends, 1 inside) is N/2 delta_kl for 0 < k < N and N for k = l in {0, N},
 * so <phi_k, phi_l>_h = delta_kl except <phi_N, phi_N>_h = 2. */
static double project1(const double *u, int X, int stride, int k)
{
	int N = X - 1;
	double s = 0;
	for (int i = 0; i < X; i++) {
		double w = (i == 0 || i == N) ? 0.5 : 1.0;
		s += w * u[(size_t)i * stride] * phi(k, (double)i / N);
	}
	return s / N / (k == N ? 2.0 : 1.0);
}

/* Empirical mean and variance of the recovered coefficient against 0 and
 * sd^2: 5 standard errors (variance s.e. sd^2 sqrt(2/M), mean s.e.
 * sd/sqrt(M)). The seed is fixed, so this is deterministic; with ~10
 * checks at 5 s.e. a correct generator fails with probability ~1e-5. */
static void check_moments(const double *c, int M, double sd, const char *what)
{
	double m = 0, v = 0;
	for (int s = 0; s < M; s++)
		m += c[s];
	m /= M;
	for (int s = 0; s < M; s++)
		v += c[s] * c[s];
	v /= M;		/* the true mean is 0: no estimated-mean correction */
	if (!(fabs(m) <= 5 * sd / sqrt(M)))
		fail_msg("%s: mean %.4g, bound %.4g", what, m, 5 * sd / sqrt(M));
	if (!(fabs(v - sd * sd) <= 5 * sd * sd * sqrt(2.0 / M)))
		fail_msg("%s: variance %.5g, expected %.5g +- %.3g", what, v,
			 sd * sd, 5 * sd * sd * sqrt(2.0 / M));
}

static void test_spectrum_1d(void **state)
{
	(void)state;
	enum { X = 33, M = 2000 };
	const int modes[] = {0, 1, 2, 5, 16, 31, 32};
	enum { K = sizeof modes / sizeof modes[0] };
	struct pno_grf_opts g = {2.0, 3.0, 3.0};
	double *u = malloc(X * sizeof *u), *c = malloc((size_t)K * M * sizeof *c);
	assert_non_null(u);
	assert_non_null(c);
	for (int s = 0; s < M; s++) {
		assert_status(pno_grf_neumann(u, 1, X, 0, &g, 11, (uint64_t)s),
			      PNO_STATUS_OK);
		for (int q = 0; q < K; q++)
			c[(size_t)q * M + s] = project1(u, X, 1, modes[q]);
	}
	for (int q = 0; q < K; q++) {
		char what[32];
		snprintf(what, sizeof what, "1D mode %d", modes[q]);
		check_moments(c + (size_t)q * M, M, sd_of(&g, (double)modes[q] * modes[q]),
			      what);
	}
	free(u);
	free(c);
}

static void test_spectrum_2d(void **state)
{
	(void)state;
	enum { X = 9, Y = 7, M = 600 };
	const int modes[][2] = {{0, 0}, {1, 0}, {0, 1}, {2, 3}, {8, 6}, {5, 1}};
	enum { K = sizeof modes / sizeof modes[0] };
	struct pno_grf_opts g = {1.5, 2.0, 2.0};
	double *u = malloc(X * Y * sizeof *u), *row = malloc(X * sizeof *row);
	double *c = malloc((size_t)K * M * sizeof *c);
	assert_non_null(u);
	assert_non_null(row);
	assert_non_null(c);
	for (int s = 0; s < M; s++) {
		assert_status(pno_grf_neumann(u, 2, X, Y, &g, 5, (uint64_t)s),
			      PNO_STATUS_OK);
		for (int q = 0; q < K; q++) {
			/* project along y for every x, then along x */
			for (int i = 0; i < X; i++)
				row[i] = project1(u + (size_t)i * Y, Y, 1, modes[q][1]);
			c[(size_t)q * M + s] = project1(row, X, 1, modes[q][0]);
		}
	}
	for (int q = 0; q < K; q++) {
		char what[32];
		double kk = (double)modes[q][0] * modes[q][0] +
			    (double)modes[q][1] * modes[q][1];
		snprintf(what, sizeof what, "2D mode (%d,%d)", modes[q][0],
			 modes[q][1]);
		check_moments(c + (size_t)q * M, M, sd_of(&g, kk), what);
	}
	free(u);
	free(row);
	free(c);
}

static void test_reproducible(void **state)
{
	(void)state;
	enum { X = 21, Y = 13 };
	struct pno_grf_opts g = {2.0, 3.0, 3.0};
	double a[X * Y], b[X * Y], c[X * Y], d[X * Y];
	assert_status(pno_grf_neumann(a, 2, X, Y, &g, 42, 9), PNO_STATUS_OK);
	assert_status(pno_grf_neumann(b, 2, X, Y, &g, 42, 9), PNO_STATUS_OK);
	assert_status(pno_grf_neumann(c, 2, X, Y, &g, 42, 10), PNO_STATUS_OK);
	assert_status(pno_grf_neumann(d, 2, X, Y, &g, 43, 9), PNO_STATUS_OK);
	assert_memory_equal(a, b, sizeof a);
	int diff_c = 0, diff_d = 0;
	for (int p = 0; p < X * Y; p++) {
		diff_c += a[p] != c[p];
		diff_d += a[p] != d[p];
	}
	/* independent draws: every value differs */
	assert_int_equal(diff_c, X * Y);
	assert_int_equal(diff_d, X * Y);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	double u[64];
	struct pno_grf_opts g = {2.0, 3.0, 3.0};
	struct pno_grf_opts bad_tau = {2.0, 0.0, 3.0}, bad_sigma = {2.0, 3.0, NAN};
	struct pno_grf_opts bad_alpha = {-1.0, 3.0, 3.0}, white = {0.0, 0.0, 1.0};
	assert_status(pno_grf_neumann(NULL, 1, 8, 0, &g, 0, 0), PNO_STATUS_INVALID);
	assert_status(pno_grf_neumann(u, 3, 4, 4, &g, 0, 0), PNO_STATUS_INVALID);
	assert_status(pno_grf_neumann(u, 1, 1, 0, &g, 0, 0), PNO_STATUS_INVALID);
	assert_status(pno_grf_neumann(u, 2, 8, 1, &g, 0, 0), PNO_STATUS_INVALID);
	assert_status(pno_grf_neumann(u, 1, 8, 0, NULL, 0, 0), PNO_STATUS_INVALID);
	assert_status(pno_grf_neumann(u, 1, 8, 0, &bad_tau, 0, 0), PNO_STATUS_INVALID);
	assert_err_has("--tau");
	assert_status(pno_grf_neumann(u, 1, 8, 0, &bad_sigma, 0, 0), PNO_STATUS_INVALID);
	assert_err_has("--sigma");
	assert_status(pno_grf_neumann(u, 1, 8, 0, &bad_alpha, 0, 0), PNO_STATUS_INVALID);
	assert_err_has("--alpha");
	/* alpha 0, tau 0: white noise, finite variance, allowed */
	assert_status(pno_grf_neumann(u, 1, 8, 0, &white, 0, 0), PNO_STATUS_OK);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	struct pno_grf_opts g = {2.0, 3.0, 3.0};
	double want[10 * 6], u[10 * 6];
	assert_status(pno_grf_neumann(want, 2, 10, 6, &g, 1, 2), PNO_STATUS_OK);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_grf_neumann(u, 2, 10, 6, &g, 1, 2), live0))
			break;
	}
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	assert_true(k >= 2);
	assert_memory_equal(u, want, sizeof u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dct_vs_naive),
		cmocka_unit_test(test_spectrum_1d),
		cmocka_unit_test(test_spectrum_2d),
		cmocka_unit_test(test_reproducible),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
