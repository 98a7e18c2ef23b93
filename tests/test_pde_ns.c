/* 2D Navier-Stokes (vorticity, unit torus): exact decaying and forced
 * solutions, a direct-summation Galerkin reference for the nonlinear term,
 * zero mean, second-order convergence in time, the CFL step rule, bad
 * inputs, allocation failures, and the generator end to end. */
#include "testutil.h"
#include "pno/io.h"
#include "pno/pde.h"

#include <complex.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PI 3.14159265358979323846
#define TWO_PI (2.0 * PI)

static double *dalloc(size_t n)
{
	double *p = calloc(n ? n : 1, sizeof *p);
	assert_non_null(p);
	return p;
}

static double max_abs(const double *a, size_t n)
{
	double m = 0.0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i]));
	return m;
}

static double max_diff(const double *a, const double *b, size_t n)
{
	double m = 0.0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i] - b[i]));
	return m;
}

static double mean(const double *a, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += a[i];
	return s / (double)n;
}

/* Periodic GRF with the generator's parameters (times `scale`), mean
 * removed. */
static void grf_zero_mean(double *w, int n, uint64_t index, double scale)
{
	struct pno_grf_opts g = {2.5, 7.0, pow(7.0, 1.5) * scale};
	assert_status(pno_grf_periodic(w, NULL, 2, n, n, &g, 11, index, NULL,
				       NULL), PNO_STATUS_OK);
	double m = mean(w, (size_t)n * n);
	for (size_t p = 0; p < (size_t)n * n; p++)
		w[p] -= m;
}

/* (a) Taylor-Green: w0 = 2k cos(kx) cos(ky), k = 2 pi, lies on the single
 * shell |m|^2 = 2 where psi is proportional to w, so u.grad w = 0 and
 * w = w0 exp(-2 nu k^2 t) exactly. */
static void taylor_green(double *w, int n, double amp)
{
	const double k = TWO_PI;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			w[(size_t)i * n + j] = amp * 2 * k *
					       cos(k * i / n) * cos(k * j / n);
}

static void test_taylor_green(void **state)
{
	(void)state;
	const int n = 32, T = 5;
	const double nu = 1e-3, dt_out = 0.25, lam = 2 * TWO_PI * TWO_PI;
	const size_t P = (size_t)n * n;
	double *w0 = dalloc(P), *traj = dalloc(T * P), *ex = dalloc(P);
	struct pno_solve_stats st;
	taylor_green(w0, n, 1.0);
	/* dt_max controls (cfl 2: |u|+|v| <= 1 allows 2/32 > 0.01). CN's
	 * error per step is (nu lam dt)^3 / 12 = (7.9e-4)^3 / 12 = 4.1e-11
	 * of the amplitude, 100 steps to t = 1: 4.1e-9 < 1e-8. */
	assert_status(pno_ns_solve(n, nu, 0, 2.0, 0.01, w0, T, dt_out, traj, &st),
		      PNO_STATUS_OK);
	assert_int_equal(st.steps, 100);
	tu_assert_close(st.dt, 0.01, 1e-15);
	double worst = 0.0;
	for (int f = 0; f < T; f++) {
		taylor_green(ex, n, exp(-nu * lam * f * dt_out));
		double e = max_diff(traj + f * P, ex, P) / max_abs(ex, P);
		worst = fmax(worst, e);
		if (!(e <= 1e-8))
			fail_msg("frame %d: relative error %.3g > 1e-8", f, e);
	}
	print_message("taylor-green n=%d dt=0.01: max relative error %.3g\n",
		      n, worst);

	/* CFL control: u = -sin(ky) cos(kx), v = sin(kx) cos(ky) (times the
	 * decay), max |u|+|v| = A(t) = exp(-nu lam t), attained at the grid
	 * point (1/8, 1/8). Interval k must take the fewest steps of at most
	 * cfl dx / A(k dt_out): 27, 27, 26, 26 for cfl 0.3. */
	const double cfl = 0.3;
	long want = 0;
	for (int f = 0; f < T - 1; f++) {
		double q = dt_out * exp(-nu * lam * f * dt_out) / (cfl / n);
		want += (long)ceil(q);
	}
	assert_status(pno_ns_solve(n, nu, 0, cfl, 1.0, w0, T, dt_out, traj, &st),
		      PNO_STATUS_OK);
	assert_int_equal(st.steps, want);
	assert_int_equal(want, 27 + 27 + 26 + 26);
	tu_assert_close(st.dt, dt_out / 27, 1e-15);
	for (int f = 0; f < T; f++) {
		taylor_green(ex, n, exp(-nu * lam * f * dt_out));
		double e = max_diff(traj + f * P, ex, P) / max_abs(ex, P);
		if (!(e <= 1e-8))	/* dt 0.0093-0.0096: as above */
			fail_msg("cfl frame %d: relative error %.3g > 1e-8", f, e);
	}
	free(w0), free(traj), free(ex);
}

/* (b) From rest with the forcing f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)):
 * a function of x + y only, so u.grad w = 0 and
 * w = f (1 - exp(-nu lam t)) / (nu lam), lam = 8 pi^2. */
static void test_forced(void **state)
{
	(void)state;
	const int n = 32, T = 6;
	const double nu = 1e-3, dt_out = 2.0, lam = 2 * TWO_PI * TWO_PI;
	const size_t P = (size_t)n * n;
	double *w0 = dalloc(P), *traj = dalloc(T * P), *ex = dalloc(P);
	struct pno_solve_stats st;
	assert_status(pno_ns_solve(n, nu, 1, 0.5, 0.01, w0, T, dt_out, traj, &st),
		      PNO_STATUS_OK);
	assert_int_equal(st.steps, 1000);	/* |u|+|v| <= 0.2: dt_max rules */
	double worst = 0.0;
	for (int f = 1; f < T; f++) {
		double t = f * dt_out, g = (1 - exp(-nu * lam * t)) / (nu * lam);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++) {
				double s = TWO_PI * (double)(i + j) / n;
				ex[(size_t)i * n + j] = 0.1 * (sin(s) + cos(s)) * g;
			}
		/* the transient decays by CN's factor: relative error
		 * <= steps (nu lam dt)^3/12 / (nu lam t) = (nu lam dt)^2 / 12
		 * = 5.2e-8 */
		double e = max_diff(traj + f * P, ex, P) / max_abs(ex, P);
		worst = fmax(worst, e);
		if (!(e <= 1e-7))
			fail_msg("t = %g: relative error %.3g > 1e-7", t, e);
	}
	print_message("forced n=%d dt=0.01: max relative error %.3g\n", n, worst);
	free(w0), free(traj), free(ex);
}

/* ---- direct-summation Galerkin reference for the nonlinear term ----
 * Modes m with |mx|, |my| <= K, stored full (both signs) as c[(mx+K) *
 * (2K+1) + my+K]. dc_k/dt = -sum_{p+q=k} (u_p . 2pi i q) c_q
 * - nu 4pi^2|k|^2 c_k + f_k, u_p = 2pi i (py, -px) c_p / (4pi^2 |p|^2).
 * Nothing shared with the solver: no FFT, no half spectrum. */
enum { GK = 5, GM = 2 * GK + 1 };

struct galerkin {
	double nu;
	int forcing;
};

static void galerkin_rhs(const struct galerkin *g, double complex *d,
			 const double complex *c)
{
	for (int kx = -GK; kx <= GK; kx++)
		for (int ky = -GK; ky <= GK; ky++) {
			double complex s = 0.0;
			for (int px = -GK; px <= GK; px++)
				for (int py = -GK; py <= GK; py++) {
					int qx = kx - px, qy = ky - py;
					if (abs(qx) > GK || abs(qy) > GK ||
					    (px == 0 && py == 0))
						continue;
					double complex cp = c[(px + GK) * GM + py + GK];
					double complex cq = c[(qx + GK) * GM + qy + GK];
					double l = TWO_PI * TWO_PI * (px * px + py * py);
					double complex ux = TWO_PI * I * py * cp / l;
					double complex uy = -TWO_PI * I * px * cp / l;
					s += (ux * qx + uy * qy) * TWO_PI * I * cq;
				}
			double complex f = 0.0;
			if (g->forcing && ((kx == 1 && ky == 1) ||
					   (kx == -1 && ky == -1)))
				f = kx == 1 ? 0.05 * (1 - I) : 0.05 * (1 + I);
			double lam = TWO_PI * TWO_PI * (kx * kx + ky * ky);
			size_t id = (kx + GK) * GM + ky + GK;
			d[id] = -s - g->nu * lam * c[id] + f;
		}
}

/* Classical RK4 to t_final in `steps` steps. */
static void galerkin_rk4(const struct galerkin *g, double complex *c,
			 double t_final, int steps)
{
	double complex k1[GM * GM], k2[GM * GM], k3[GM * GM], k4[GM * GM],
		tmp[GM * GM];
	double h = t_final / steps;
	for (int s = 0; s < steps; s++) {
		galerkin_rhs(g, k1, c);
		for (int i = 0; i < GM * GM; i++)
			tmp[i] = c[i] + 0.5 * h * k1[i];
		galerkin_rhs(g, k2, tmp);
		for (int i = 0; i < GM * GM; i++)
			tmp[i] = c[i] + 0.5 * h * k2[i];
		galerkin_rhs(g, k3, tmp);
		for (int i = 0; i < GM * GM; i++)
			tmp[i] = c[i] + h * k3[i];
		galerkin_rhs(g, k4, tmp);
		for (int i = 0; i < GM * GM; i++)
			c[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
	}
}

/* Grid values of the trigonometric polynomial (direct sum). */
static void galerkin_eval(double *w, int n, const double complex *c)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double complex s = 0.0;
			for (int mx = -GK; mx <= GK; mx++)
				for (int my = -GK; my <= GK; my++)
					s += c[(mx + GK) * GM + my + GK] *
					     cexp(TWO_PI * I * (double)(mx * i + my * j) / n);
			w[(size_t)i * n + j] = creal(s);
		}
}

/* On n = 16 the solver keeps exactly |mx|, |my| <= 5 = GK and, not being
 * a multiple of 3, has no aliasing: it integrates the same ODE system.
 * Random Hermitian coefficients with amplitude ~ |m|^-2, scaled so that
 * max|w0| ~ 20: advection over t = 0.5 moves the field by ~ a wavelength
 * (strongly nonlinear). */
static void test_galerkin_reference(void **state)
{
	(void)state;
	const int n = 16;
	const size_t P = (size_t)n * n;
	const double t_final = 0.5;
	struct galerkin g = {0.01, 1};
	double complex c[GM * GM];
	double z[2 * GM * GM];
	pno_rng_normal_f64(z, 2 * GM * GM, 5, 0, 0);
	memset(c, 0, sizeof c);
	for (int mx = -GK; mx <= GK; mx++)
		for (int my = -GK; my <= GK; my++) {
			int ax = mx, ay = my;
			/* one draw per conjugate pair: the lexicographically
			 * positive member */
			if (mx < 0 || (mx == 0 && my < 0))
				ax = -mx, ay = -my;
			if (ax == 0 && ay == 0)
				continue;
			size_t src = (size_t)(ax + GK) * GM + ay + GK;
			double amp = 6.0 / (ax * ax + ay * ay);
			double complex v = amp * (z[2 * src] + I * z[2 * src + 1]);
			c[(mx + GK) * GM + my + GK] = (ax == mx && ay == my) ? v : conj(v);
		}
	double *w0 = dalloc(P), *ref = dalloc(P), *traj = dalloc(2 * P);
	galerkin_eval(w0, n, c);
	/* RK4 with h = 2.5e-4: its error (~h^4) is far below the solver's */
	galerkin_rk4(&g, c, t_final, 2000);
	galerkin_eval(ref, n, c);
	double scale = max_abs(ref, P), err[2];
	const double dts[2] = {2e-3, 1e-3};
	for (int r = 0; r < 2; r++) {
		struct pno_solve_stats st;
		assert_status(pno_ns_solve(n, g.nu, 1, 2.0, dts[r], w0, 2, t_final,
					   traj, &st), PNO_STATUS_OK);
		tu_assert_close(st.dt, dts[r], 1e-15);	/* not CFL-limited */
		err[r] = max_diff(traj + P, ref, P) / scale;
	}
	double order = log2(err[0] / err[1]);
	print_message("galerkin n=16 max|w0|=%.3g: rel error %.3g (dt 2e-3), "
		      "%.3g (dt 1e-3), order %.3f\n", max_abs(w0, P), err[0],
		      err[1], order);
	/* converges to the independent solution at second order; the error
	 * constant is whatever the dynamics make it, the order is not */
	assert_true(order >= 1.8 && order <= 2.2);
	assert_true(err[1] <= 1e-3);
	free(w0), free(ref), free(traj);
}

/* (c) The mean vorticity stays zero for a random start with forcing. */
static void test_zero_mean(void **state)
{
	(void)state;
	const int n = 64, T = 6;
	const size_t P = (size_t)n * n;
	double *w0 = dalloc(P), *traj = dalloc(T * P);
	struct pno_solve_stats st;
	grf_zero_mean(w0, n, 3, 1.0);
	assert_status(pno_ns_solve(n, 1e-3, 1, 0.5, 0.01, w0, T, 1.0, traj, &st),
		      PNO_STATUS_OK);
	double worst = 0.0;
	for (int f = 0; f < T; f++) {
		/* the mode is set to 0 each step; only c2r rounding and the
		 * summation here remain (~1e-16 of max|w|) */
		double r = fabs(mean(traj + f * P, P)) / max_abs(traj + f * P, P);
		worst = fmax(worst, r);
		assert_true(r <= 1e-13);
	}
	/* and it did evolve */
	assert_true(max_diff(traj + (T - 1) * P, w0, P) > 0.1 * max_abs(w0, P));
	print_message("zero mean: worst |mean|/max|w| %.3g over %ld steps\n",
		      worst, st.steps);
	free(w0), free(traj);
}

/* (d) Step halving on a random (scaled-up, so the nonlinear term matters)
 * start with forcing, n = 64, t = 1, dt_max 0.01 / 0.005 / 0.0025 (cfl 2
 * so that dt_max decides): the Richardson ratio of consecutive
 * differences gives the observed order; also the errors against a run at
 * dt = 1/1280 (max|w0| = 1.8; that the CFL bound never undercuts
 * dt_max is checked through st.dt). */
static void test_time_order(void **state)
{
	(void)state;
	const int n = 64;
	const size_t P = (size_t)n * n;
	double *w0 = dalloc(P), *w[4];
	const double dts[4] = {0.01, 0.005, 0.0025, 1.0 / 1280};
	grf_zero_mean(w0, n, 7, 4.0);
	const int runs = 4;
	for (int r = 0; r < runs; r++) {
		struct pno_solve_stats st;
		w[r] = dalloc(2 * P);
		assert_status(pno_ns_solve(n, 1e-3, 1, 2.0, dts[r], w0, 2, 1.0,
					   w[r], &st), PNO_STATUS_OK);
		tu_assert_close(st.dt, dts[r], 1e-15);
	}
	double d01 = max_diff(w[0] + P, w[1] + P, P);
	double d12 = max_diff(w[1] + P, w[2] + P, P);
	double order = log2(d01 / d12);
	print_message("time order n=64 max|w0|=%.3g: |w(.01)-w(.005)| %.3g, "
		      "|w(.005)-w(.0025)| %.3g, order %.3f\n", max_abs(w0, P),
		      d01, d12, order);
	assert_true(order >= 1.8 && order <= 2.2);
	assert_true(d12 > 1e-9 * max_abs(w0, P));	/* above rounding */
	/* against dt = 1/1280; its own error biases the last ratio up:
	 * (4 - 0.1) / (1 - 0.1) -> order 2.11 */
	double e[3];
	for (int r = 0; r < 3; r++)
		e[r] = max_diff(w[r] + P, w[3] + P, P);
	print_message("vs dt 1/1280: %.3g %.3g %.3g, orders %.3f %.3f\n", e[0],
		      e[1], e[2], log2(e[0] / e[1]), log2(e[1] / e[2]));
	assert_true(log2(e[0] / e[1]) >= 1.8 && log2(e[0] / e[1]) <= 2.2);
	assert_true(log2(e[1] / e[2]) >= 1.8 && log2(e[1] / e[2]) <= 2.25);
	for (int r = 0; r < runs; r++)
		free(w[r]);
	free(w0);
}

/* (e) Bad inputs name what is wrong. */
static void test_bad_inputs(void **state)
{
	(void)state;
	const int n = 8;
	double w0[64] = {0}, traj[2 * 64];
	struct pno_solve_stats st;
	assert_status(pno_ns_solve(7, 1e-3, 0, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_status(pno_ns_solve(2, 1e-3, 0, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_status(pno_ns_solve(n, 0, 0, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("--nu");
	assert_status(pno_ns_solve(n, NAN, 0, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_status(pno_ns_solve(n, 1e-3, 2, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("--forcing");
	assert_status(pno_ns_solve(n, 1e-3, 0, 0, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("--cfl");
	assert_status(pno_ns_solve(n, 1e-3, 0, 2.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("--cfl");
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("--dt-max");
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0.01, w0, 2, 0, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("--dt-out");
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0.01, w0, 0, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0.01, NULL, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	w0[5] = 1.0;	/* mean 1/64 */
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("mean");
	w0[6] = -1.0;
	w0[7] = NAN;
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0.01, w0, 2, 1, traj, &st),
		      PNO_STATUS_INVALID);
	assert_err_has("finite");
	/* one frame: just w0, no stepping */
	w0[7] = 0.0;
	assert_status(pno_ns_solve(n, 1e-3, 0, 0.5, 0.01, w0, 1, 0, traj, &st),
		      PNO_STATUS_OK);
	assert_int_equal(st.steps, 0);
	assert_memory_equal(traj, w0, sizeof w0);

	/* generator options, each rejected before any work */
	struct pno_ns_opts o;
	const char *path = tu_tmp_path("ns_bad.h5");
	unlink(path);
#define BAD(field, value, flag)                                               \
	do {                                                                  \
		pno_ns_opts_default(&o);                                      \
		o.field = value;                                              \
		assert_status(pno_generate_ns(&o, path, 1), PNO_STATUS_INVALID); \
		assert_err_has(flag);                                         \
		assert_int_equal(access(path, F_OK), -1);                     \
	} while (0)
	BAD(base.res, 60, "--res 60 does not divide the fine grid 256 (--fine-res)");
	BAD(base.res, 2, "--res");
	BAD(fine_res, 255, "--fine-res");
	BAD(fine_res, 100000, "--fine-res");
	BAD(nu, 0, "--nu");
	BAD(nu, -1, "--nu");
	BAD(dt_out, 0, "--dt-out");
	BAD(t_final, 0, "--t-final");
	BAD(t_final, 50.5, "--t-final");
	BAD(t_final, 1e6, "100000 frames");
	BAD(cfl, 0, "--cfl");
	BAD(cfl, 2.01, "--cfl");
	BAD(dt_max, 0, "--dt-max");
	BAD(forcing, 3, "--forcing");
	BAD(grf.alpha, 0, "--alpha");
	BAD(grf.sigma, -1, "--sigma");
	BAD(grf.tau, -1, "--tau");
	BAD(grf.tau, NAN, "--tau");
#undef BAD
	/* a whole multiple to rounding is accepted: 0.3 / 0.1 */
	pno_ns_opts_default(&o);
	o.t_final = 0.3;
	o.dt_out = 0.1;
	o.base.samples = 0;	/* rejected later, by the driver */
	assert_status(pno_generate_ns(&o, path, 1), PNO_STATUS_INVALID);
	assert_true(strstr(pno_last_error(), "--t-final") == NULL);
}

/* An unstable run (huge vorticity, cfl 2, almost no viscosity) is
 * reported as RANGE instead of returning NaNs. */
static void test_blowup(void **state)
{
	(void)state;
	const int n = 32, T = 11;
	const size_t P = (size_t)n * n;
	double *w0 = dalloc(P), *traj = dalloc(T * P);
	grf_zero_mean(w0, n, 1, 2000.0);
	/* cfl 2 puts the advection eigenvalues near the 2/3 cutoff at
	 * |dt lambda| ~ 4, outside Heun's stability region, and nu is too
	 * small to damp them */
	enum pno_status s = pno_ns_solve(n, 1e-6, 0, 2.0, 1.0, w0, T, 1.0, traj,
					 NULL);
	assert_status(s, PNO_STATUS_RANGE);
	assert_err_has("blew up");
	free(w0), free(traj);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const int n = 16;
	const size_t P = (size_t)n * n;
	double *w0 = dalloc(P), *traj = dalloc(3 * P), *ok = dalloc(3 * P);
	grf_zero_mean(w0, n, 2, 1.0);
	assert_status(pno_ns_solve(n, 1e-3, 1, 0.5, 0.01, w0, 3, 0.1, ok, NULL),
		      PNO_STATUS_OK);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_ns_solve(n, 1e-3, 1, 0.5, 0.01, w0, 3,
					       0.1, traj, NULL), live0))
			break;
	}
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	assert_true(k > 10);
	/* same bits as without the counting allocator */
	assert_memory_equal(traj, ok, 3 * P * sizeof(double));
	free(w0), free(traj), free(ok);
}

static void small_opts(struct pno_ns_opts *o)
{
	pno_ns_opts_default(o);
	o->base.samples = 3;
	o->base.seed = 9;
	o->base.res = 16;
	o->fine_res = 32;
	o->t_final = 0.5;
	o->dt_out = 0.25;
}

/* Generator end to end: same bits at 1 and 2 threads, layout, frame 0 =
 * the subsampled zero-mean GRF, later frames = pno_ns_solve on it. */
static void test_generate(void **state)
{
	(void)state;
	struct pno_ns_opts o;
	small_opts(&o);
	const int N = 3, T = 3, R = 16, n = 32, S = 2;
	const size_t P = (size_t)n * n, F = (size_t)R * R;
	char p1[1024], p2[1024];
	snprintf(p1, sizeof p1, "%s", tu_tmp_path("ns1.h5"));
	snprintf(p2, sizeof p2, "%s", tu_tmp_path("ns2.h5"));
	pno_threads_set(1);
	assert_status(pno_generate_ns(&o, p1, 1), PNO_STATUS_OK);
	pno_threads_set(2);
	assert_status(pno_generate_ns(&o, p2, 1), PNO_STATUS_OK);
	pno_threads_set(0);
	int64_t sh[8];
	int rank;
	float *a = tu_h5_read_same(p1, p2, "tensor", &rank, sh, NULL);
	assert_int_equal(rank, 4);
	assert_int_equal(sh[0], N);
	assert_int_equal(sh[1], T);
	assert_int_equal(sh[2], R);
	assert_int_equal(sh[3], R);
	float *tc = tu_h5_read(p1, "t-coordinate", &rank, sh, NULL);
	assert_int_equal(sh[0], T);
	for (int k = 0; k < T; k++)
		assert_true(tc[k] == (float)(k * 0.25));
	float *xc = tu_h5_read(p1, "x-coordinate", &rank, sh, NULL);
	assert_int_equal(sh[0], R);
	for (int i = 0; i < R; i++)
		assert_true(xc[i] == (float)i / R);
	free(xc);
	xc = tu_h5_read(p1, "y-coordinate", &rank, sh, NULL);
	assert_int_equal(sh[0], R);
	char buf[256];
	assert_status(pno_h5_attr_string(p1, "pde", buf, sizeof buf), PNO_STATUS_OK);
	assert_string_equal(buf, "navier-stokes");
	assert_status(pno_h5_attr_string(p1, "solver", buf, sizeof buf),
		      PNO_STATUS_OK);
	assert_non_null(strstr(buf, "Crank-Nicolson"));

	/* the initial field and the trajectory, recomputed from the public
	 * functions: the same operations, so the same bits */
	double *w0 = dalloc(P), *traj = dalloc(T * P);
	for (int s = 0; s < N; s++) {
		assert_status(pno_grf_periodic(w0, NULL, 2, n, n, &o.grf, o.base.seed,
					       (uint64_t)s, NULL, NULL),
			      PNO_STATUS_OK);
		double m = mean(w0, P);
		for (size_t p = 0; p < P; p++)
			w0[p] -= m;
		assert_status(pno_ns_solve(n, o.nu, o.forcing, o.cfl, o.dt_max, w0,
					   T, o.dt_out, traj, NULL),
			      PNO_STATUS_OK);
		for (int k = 0; k < T; k++)
			for (int i = 0; i < R; i++)
				for (int j = 0; j < R; j++) {
					float want = (float)traj[k * P +
								 (size_t)i * S * n +
								 (size_t)j * S];
					float got = a[((size_t)s * T + k) * F +
						      (size_t)i * R + j];
					if (got != want)
						fail_msg("sample %d frame %d (%d,%d): "
							 "%.9g != %.9g", s, k, i, j,
							 got, want);
				}
	}
	/* frame 0 is also exactly the GRF itself (not a transform of it) */
	assert_memory_equal(traj, w0, P * sizeof(double));

	struct pno_dataset d;
	assert_status(pno_dataset_read(&d, p1, NULL), PNO_STATUS_OK);
	assert_int_equal(d.N, N);
	assert_int_equal(d.dims, 2);
	assert_int_equal(d.X, R);
	assert_int_equal(d.Y, R);
	assert_memory_equal(d.out, a + 2 * F, F * sizeof(float));
	pno_dataset_free(&d);
	free(a), free(tc), free(xc), free(w0), free(traj);
	unlink(p1);
	unlink(p2);
}

static void test_generate_alloc_failures(void **state)
{
	(void)state;
	struct pno_ns_opts o;
	small_opts(&o);
	o.base.samples = 1;
	const char *path = tu_tmp_path("ns_alloc.h5");
	unlink(path);
	pno_threads_set(1);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_generate_ns(&o, path, 1), live0))
			break;
		assert_int_equal(access(path, F_OK), -1);
	}
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	pno_threads_set(0);
	assert_true(k > 10);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_taylor_green),
		cmocka_unit_test(test_forced),
		cmocka_unit_test(test_galerkin_reference),
		cmocka_unit_test(test_zero_mean),
		cmocka_unit_test(test_time_order),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_blowup),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_generate_alloc_failures),
	};
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
