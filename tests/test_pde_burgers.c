/* Viscous Burgers (pno_burgers_solve, pno_generate_burgers): the
 * Cole-Hopf closed form, conservation of the mean, the maximum principle,
 * fourth-order convergence in time, the time-step contract, bad inputs,
 * allocation failures and the generator end to end. */
#include "testutil.h"
#include "pde_etdrk4.h"
#include "pno/io.h"
#include "pno/pde.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double *dalloc(size_t n)
{
	double *p = malloc(n * sizeof *p + 1);
	assert_non_null(p);
	return p;
}

/* Cole-Hopf: phi = c0 + sum_m c_m exp(-nu (2 pi m)^2 t) cos(2 pi m x)
 * solves phi_t = nu phi_xx and is positive when c0 > sum |c_m|, so
 * u = -2 nu phi_x / phi solves Burgers exactly. */
struct cole_hopf {
	double nu;
	int nc;
	double c[4];
};

static double cole_hopf_u(const struct cole_hopf *ch, double x, double t)
{
	long double phi = ch->c[0], px = 0;
	for (int m = 1; m < ch->nc; m++) {
		long double k = 2 * M_PI * m;
		long double e = ch->c[m] * expl(-ch->nu * k * k * t);
		phi += e * cosl(k * x);
		px -= e * k * sinl(k * x);
	}
	return (double)(-2 * ch->nu * px / phi);
}

/* Max error over all frames (nframes, every dt_out) against the closed
 * form, relative to max|u0|. */
static double cole_hopf_error(const struct cole_hopf *ch, int n, double dt,
			      int nframes, double dt_out)
{
	double *u0 = dalloc(n), *tr = dalloc((size_t)nframes * n);
	double um = 0, err = 0;
	for (int i = 0; i < n; i++) {
		u0[i] = cole_hopf_u(ch, (double)i / n, 0);
		um = fmax(um, fabs(u0[i]));
	}
	assert_status(pno_burgers_solve(n, ch->nu, u0, nframes, dt_out, dt, tr,
					NULL), PNO_STATUS_OK);
	for (int f = 0; f < nframes; f++)
		for (int i = 0; i < n; i++)
			err = fmax(err, fabs(tr[(size_t)f * n + i] -
					     cole_hopf_u(ch, (double)i / n, f * dt_out)));
	free(u0);
	free(tr);
	return err / um;
}

/* phi_k(z) = sum_j z^j / (j + k)!, by its series (|z| <= 2 here). */
static long double phi_series(int k, long double z)
{
	long double term = 1, sum = 0;
	for (int i = 1; i <= k; i++)
		term /= i;
	for (int j = 0; j < 60; j++) {
		sum += term;
		term *= z / (j + k + 1);
	}
	return sum;
}

/* The contour-mean coefficients against the naive versions: the phi
 * series near 0 (where the closed forms cancel) and the closed forms far
 * from 0 (where the series would), both in long double. */
static void test_etdrk4_coefficients(void **state)
{
	(void)state;
	static const long double z[] = {0, 1e-12L, -1e-4L, 0.25L, -0.7L, -2,
					-5, -37.5L, -1000, -1e6L};
	int nz = (int)(sizeof z / sizeof z[0]);
	struct pno__etdrk4 w;
	assert_status(pno__etdrk4_init(&w, 32, 1.0, "test"), PNO_STATUS_OK);
	for (int m = 0; m < w.nh; m++)
		w.lin[m] = (double)z[m < nz ? m : 0];
	double h = 0.5;
	pno__etdrk4_coeffs(&w, 1.0);	/* then a different h recomputes */
	pno__etdrk4_coeffs(&w, h);
	double worst = 0;
	for (int m = 0; m < nz; m++) {
		long double x = h * (long double)w.lin[m], want[4];
		if (fabsl(x) <= 2) {
			long double p1 = phi_series(1, x), p2 = phi_series(2, x),
				    p3 = phi_series(3, x);
			want[0] = h * phi_series(1, x / 2) / 2;
			want[1] = h * (p1 - 3 * p2 + 4 * p3);
			want[2] = h * (p2 - 2 * p3);
			want[3] = h * (4 * p3 - p2);
		} else {
			long double e = expl(x), x3 = x * x * x;
			want[0] = h * (expl(x / 2) - 1) / x;
			want[1] = h * (-4 - x + e * (4 - 3 * x + x * x)) / x3;
			want[2] = h * (2 + x + e * (x - 2)) / x3;
			want[3] = h * (-4 - 3 * x - x * x + e * (4 - x)) / x3;
		}
		double got[4] = {w.Q[m], w.f1[m], w.f2[m], w.f3[m]};
		for (int c = 0; c < 4; c++) {
			double rel = (double)(fabsl(got[c] - want[c]) / fabsl(want[c]));
			worst = fmax(worst, rel);
			if (!(rel < 1e-14))
				fail_msg("hL %Lg coefficient %d: %.17g vs %.17Lg "
					 "(rel %.3g)", x, c, got[c], want[c], rel);
		}
		tu_assert_close(w.E[m], exp(h * w.lin[m]), 0);
	}
	print_message("contour coefficients: worst relative error %.3g\n", worst);
	pno__etdrk4_free(&w);
	pno__etdrk4_free(&w);	/* safe twice */
}

static void test_cole_hopf(void **state)
{
	(void)state;
	/* phi0 = 2 + cos 2pi x: poles of u at Im x = acosh(2)/2pi, Fourier
	 * decay e^{-1.32 m}, so the spatial error is at rounding level at
	 * n = 128; what remains is the O(dt^4) time error (measured 4.7e-11
	 * at dt = 1e-3). */
	struct cole_hopf a = {0.1, 2, {2, 1}};
	double e = cole_hopf_error(&a, 128, 1e-3, 11, 0.05);
	print_message("cole-hopf nu 0.1 n 128 dt 1e-3: max rel error %.3g\n", e);
	assert_true(e < 1e-9);
	/* nu = 0.02, phi0 = 1.2 + cos + 0.1 cos 2: min phi0 = 0.3, poles at
	 * Im x = 0.171 (decay e^{-1.08 m}): resolved at n = 256 (mode 85 at
	 * e^{-92}); measured 2.2e-13 at dt = 1e-3, so 1e-11 leaves room for
	 * rounding differences between machines. */
	struct cole_hopf b = {0.02, 3, {1.2, 1, 0.1}};
	e = cole_hopf_error(&b, 256, 1e-3, 11, 0.05);
	print_message("cole-hopf nu 0.02 n 256 dt 1e-3: max rel error %.3g\n", e);
	assert_true(e < 1e-11);
	/* the same at n = 1024 (the CFL bound takes over from the cap) */
	e = cole_hopf_error(&b, 1024, 1e-3, 11, 0.05);
	print_message("cole-hopf nu 0.02 n 1024: max rel error %.3g\n", e);
	assert_true(e < 1e-11);
}

/* A periodic GRF initial value as the generator draws it. */
static double *grf_u0(int n, uint64_t index)
{
	struct pno_grf_opts g = {2.0, 5.0, 25.0};
	double *u0 = dalloc(n);
	assert_status(pno_grf_periodic(u0, NULL, 1, n, 1, &g, 11, index, NULL,
				       NULL), PNO_STATUS_OK);
	return u0;
}

static void test_mean_and_max_principle(void **state)
{
	(void)state;
	int n = 512, T = 11;
	for (int c = 0; c < 2; c++) {
		double nu = c == 0 ? 0.1 : 0.02;
		double *u0 = grf_u0(n, (uint64_t)c), *tr = dalloc((size_t)T * n);
		struct pno_solve_stats st;
		assert_status(pno_burgers_solve(n, nu, u0, T, 0.02, 0, tr, &st),
			      PNO_STATUS_OK);
		double m0 = 0, um = 0, dmean = 0, grow = 0;
		for (int i = 0; i < n; i++) {
			m0 += u0[i];
			um = fmax(um, fabs(u0[i]));
		}
		m0 /= n;
		for (int f = 1; f < T; f++) {
			double m = 0, mx = 0;
			for (int i = 0; i < n; i++) {
				m += tr[(size_t)f * n + i];
				mx = fmax(mx, fabs(tr[(size_t)f * n + i]));
			}
			dmean = fmax(dmean, fabs(m / n - m0));
			grow = fmax(grow, mx / um - 1);
		}
		print_message("nu %g: mean %.3g drift %.3g (max|u0| %.3g), "
			      "max|u| growth %.3g, %ld steps\n", nu, m0, dmean,
			      um, grow, st.steps);
		/* mode 0 is never touched (E_0 = 1, N_0 = 0): the drift is the
		 * rounding of one c2r and a sum of n terms */
		assert_true(dmean <= 1e-13 * um);
		/* maximum principle max|u(t)| <= max|u0|; the resolved spectral
		 * solution may overshoot only by its tiny truncation error */
		assert_true(grow <= 1e-6);
		free(u0);
		free(tr);
	}
}

/* Error of the last frame at step cap dt against a reference at dt/16. */
static double final_error(const struct cole_hopf *ch, int n, int T,
			  double dt_out, double dt, const double *ref)
{
	double *u0 = dalloc(n), *tr = dalloc((size_t)T * n), e = 0;
	struct pno_solve_stats st;
	for (int i = 0; i < n; i++)
		u0[i] = cole_hopf_u(ch, (double)i / n, 0);
	assert_status(pno_burgers_solve(n, ch->nu, u0, T, dt_out, dt, tr, &st),
		      PNO_STATUS_OK);
	tu_assert_close(st.dt, dt, 1e-15);	/* the cap is what we test */
	for (int i = 0; i < n; i++)
		e = fmax(e, fabs(tr[(size_t)(T - 1) * n + i] - ref[i]));
	free(u0);
	free(tr);
	return e;
}

static void test_time_order(void **state)
{
	(void)state;
	/* n = 128 keeps the CFL bound (0.0146) above the steps tested, and
	 * the reference on the same grid removes the spatial error */
	struct cole_hopf ch = {0.02, 3, {1.2, 1, 0.1}};
	int n = 128, T = 11;
	double dt_out = 0.05, dt[3] = {0.01, 0.005, 0.0025}, err[3];
	double *u0 = dalloc(n), *ref = dalloc((size_t)T * n);
	for (int i = 0; i < n; i++)
		u0[i] = cole_hopf_u(&ch, (double)i / n, 0);
	assert_status(pno_burgers_solve(n, ch.nu, u0, T, dt_out, dt[2] / 16, ref,
					NULL), PNO_STATUS_OK);
	for (int j = 0; j < 3; j++)
		err[j] = final_error(&ch, n, T, dt_out, dt[j],
				     ref + (size_t)(T - 1) * n);
	for (int j = 1; j < 3; j++) {
		double p = log2(err[j - 1] / err[j]);
		print_message("dt %g -> %g: error %.3g -> %.3g, order %.3f\n",
			      dt[j - 1], dt[j], err[j - 1], err[j], p);
		/* ETDRK4 is fourth order; the window allows for the
		 * pre-asymptotic terms still visible at these steps */
		assert_true(p >= 3.6 && p <= 4.4);
	}
	free(u0);
	free(ref);
}

static void test_step_contract(void **state)
{
	(void)state;
	int n = 256, T = 3;
	double *u0 = grf_u0(n, 3), *tr = dalloc((size_t)T * n), um = 0;
	for (int i = 0; i < n; i++)
		um = fmax(um, fabs(u0[i]));
	struct pno_solve_stats st;
	double caps[3] = {0, 1e-4, 0.0173};
	for (int c = 0; c < 3; c++) {
		assert_status(pno_burgers_solve(n, 0.1, u0, T, 0.05, caps[c], tr,
						&st), PNO_STATUS_OK);
		double per = 0.05 / st.dt;
		/* a whole number of steps per dt_out, CFL <= 1/2, at most the
		 * cap, and the largest step with those properties */
		tu_assert_close(per, nearbyint(per), 1e-9);
		assert_true(st.dt * um * n <= 0.5 * (1 + 1e-9));
		if (caps[c] > 0)
			assert_true(st.dt <= caps[c] * (1 + 1e-9));
		double bound = 0.5 / (um * n);
		if (caps[c] > 0 && caps[c] < bound)
			bound = caps[c];
		assert_true(0.05 / (nearbyint(per) - 1) > bound);
		assert_int_equal(st.steps, (long)nearbyint(per) * (T - 1));
	}
	/* frame 0 is u0 itself, bit for bit */
	assert_memory_equal(tr, u0, (size_t)n * sizeof *u0);
	/* one frame: nothing to step */
	assert_status(pno_burgers_solve(n, 0.1, u0, 1, 0, 0, tr, &st),
		      PNO_STATUS_OK);
	assert_int_equal(st.steps, 0);
	free(u0);
	free(tr);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	double u0[8] = {0}, tr[16];
	assert_status(pno_burgers_solve(7, 0.1, u0, 2, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_burgers_solve(2, 0.1, u0, 2, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_burgers_solve(8, 0, u0, 2, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("--nu");
	assert_status(pno_burgers_solve(8, NAN, u0, 2, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_burgers_solve(8, 0.1, u0, 0, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_burgers_solve(8, 0.1, NULL, 2, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_burgers_solve(8, 0.1, u0, 2, 0.1, 0, NULL, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_burgers_solve(8, 0.1, u0, 2, 0, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("--dt-out");
	assert_status(pno_burgers_solve(8, 0.1, u0, 2, 0.1, INFINITY, tr, NULL),
		      PNO_STATUS_INVALID);
	u0[3] = NAN;
	assert_status(pno_burgers_solve(8, 0.1, u0, 2, 0.1, 0, tr, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("not finite");
	/* a step this small (1e-300 of dt_out) is refused, not attempted */
	u0[3] = 0;
	assert_status(pno_burgers_solve(8, 0.1, u0, 2, 0.1, 1e-300, tr, NULL),
		      PNO_STATUS_RANGE);
}

static void test_alloc_failure(void **state)
{
	(void)state;
	int n = 64;
	double *u0 = grf_u0(n, 0), *tr = dalloc((size_t)3 * n);
	long k;
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_burgers_solve(n, 0.1, u0, 3, 0.01, 0, tr,
						    NULL), live0))
			break;
	}
	assert_true(k >= 2);
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	free(u0);
	free(tr);
}

static void small_opts(struct pno_burgers_opts *o)
{
	pno_burgers_opts_default(o);
	o->base.samples = 4;
	o->base.seed = 3;
	o->fine_res = 256;
	o->base.res = 64;
	o->t_final = 0.2;
	o->dt_out = 0.05;
}

static void test_generate(void **state)
{
	(void)state;
	struct pno_burgers_opts o;
	small_opts(&o);
	const char *p1 = tu_tmp_path("burgers1.h5");
	char p1c[1024];
	snprintf(p1c, sizeof p1c, "%s", p1);
	const char *p2 = tu_tmp_path("burgers2.h5");
	int threads = pno_threads_get();
	pno_threads_set(1);
	assert_status(pno_generate_burgers(&o, p1c, 1), PNO_STATUS_OK);
	pno_threads_set(2);
	assert_status(pno_generate_burgers(&o, p2, 1), PNO_STATUS_OK);
	pno_threads_set(threads);
	int rank;
	int64_t sh[8];
	/* sample i depends on (seed, i) only: same bits at 1 and 2 threads */
	float *a = tu_h5_read_same(p1c, p2, "tensor", &rank, sh, NULL);
	assert_int_equal(rank, 3);
	assert_int_equal(sh[0], 4);
	assert_int_equal(sh[1], 5);	/* t = 0, 0.05, ..., 0.2 */
	assert_int_equal(sh[2], 64);
	/* each sample is the GRF on the fine grid, solved there by the public
	 * solver and subsampled every 4th point (frame 0: the GRF itself) */
	int n = 256, T = 5, X = 64;
	double *u0 = dalloc(n), *tr = dalloc((size_t)T * n);
	for (int i = 0; i < 4; i++) {
		assert_status(pno_grf_periodic(u0, NULL, 1, n, 1, &o.grf, 3,
					       (uint64_t)i, NULL, NULL),
			      PNO_STATUS_OK);
		assert_status(pno_burgers_solve(n, o.nu, u0, T, 0.05, 0, tr, NULL),
			      PNO_STATUS_OK);
		for (int f = 0; f < T; f++)
			for (int j = 0; j < X; j++) {
				float want = (float)tr[(size_t)f * n + 4 * j];
				float got = a[((size_t)i * T + f) * X + j];
				if (got != want)
					fail_msg("sample %d frame %d x %d: %.9g != "
						 "%.9g", i, f, j, got, want);
			}
	}
	/* read back as (in, out) pairs: frame 0 -> last frame */
	struct pno_dataset ds;
	struct pno_dataset_opts dopt = PNO_DATASET_OPTS_DEFAULT;
	assert_status(pno_dataset_read(&ds, p1c, &dopt), PNO_STATUS_OK);
	assert_int_equal(ds.N, 4);
	assert_int_equal(ds.X, 64);
	assert_string_equal(ds.pde, "burgers");
	assert_memory_equal(ds.in, a, 64 * sizeof *a);
	assert_memory_equal(ds.out, a + 4 * 64, 64 * sizeof *a);
	pno_dataset_free(&ds);
	char buf[256];
	assert_status(pno_h5_attr_string(p1c, "solver", buf, sizeof buf),
		      PNO_STATUS_OK);
	assert_non_null(strstr(buf, "ETDRK4"));
	free(u0);
	free(tr);
	free(a);
}

static void test_generate_bad_options(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("burgers_bad.h5");
	struct pno_burgers_opts o;
	pno_burgers_opts_default(&o);
	o.base.res = 1000;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	assert_err_has("burgers: --res 1000 does not divide the fine grid 8192 "
		       "(--fine-res)");
	small_opts(&o);
	o.fine_res = 255;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	assert_err_has("--fine-res");
	small_opts(&o);
	o.nu = 0;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	assert_err_has("burgers: --nu must be > 0");
	small_opts(&o);
	o.dt_out = 0;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	assert_err_has("--dt-out");
	small_opts(&o);
	o.dt_out = 0.03;	/* 0.2 / 0.03 is not whole */
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	assert_err_has("--t-final");
	small_opts(&o);
	o.t_final = 1e4;
	o.dt_out = 1e-2;	/* 1e6 frames */
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	small_opts(&o);
	o.dt = -1;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	assert_err_has("--dt");
	small_opts(&o);
	o.grf.sigma = 0;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	small_opts(&o);
	o.base.samples = 0;
	assert_status(pno_generate_burgers(&o, path, 1), PNO_STATUS_INVALID);
	FILE *f = fopen(path, "rb");
	assert_null(f);		/* nothing was written */
}

static void test_generate_alloc_failure(void **state)
{
	(void)state;
	struct pno_burgers_opts o;
	small_opts(&o);
	o.base.samples = 2;
	const char *path = tu_tmp_path("burgers_alloc.h5");
	int threads = pno_threads_get();
	long k;
	pno_threads_set(1);
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_generate_burgers(&o, path, 1), live0))
			break;
	}
	assert_true(k >= 2);
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	pno_threads_set(threads);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_etdrk4_coefficients),
		cmocka_unit_test(test_cole_hopf),
		cmocka_unit_test(test_mean_and_max_principle),
		cmocka_unit_test(test_time_order),
		cmocka_unit_test(test_step_contract),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_alloc_failure),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_generate_bad_options),
		cmocka_unit_test(test_generate_alloc_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
