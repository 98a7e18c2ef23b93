/* The generator driver and the exact generators: periodic GRF spectra
 * (1D-3D) against the prescribed covariance, heat and wave frames against
 * an independent naive DFT of the exact evolution, thread-count
 * invariance, progress, cancellation, failures and allocation failures. */
#include "testutil.h"
#include "internal.h"
#include "pde_internal.h"
#include "pno/io.h"
#include "pno/pde.h"

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double two_pi = 6.283185307179586;

/* Naive DFT coefficient c_k = (1/P) sum_x u(x) e^{-2 pi i k.x} of a field
 * on an n0 x n1 x n2 grid (unused axes 1), k given per axis. */
static double complex dft(const double *u, const int n[3], const int k[3])
{
	double complex s = 0;
	for (int a = 0; a < n[0]; a++)
		for (int b = 0; b < n[1]; b++)
			for (int c = 0; c < n[2]; c++) {
				double ph = two_pi * ((double)k[0] * a / n[0] +
						      (double)k[1] * b / n[1] +
						      (double)k[2] * c / n[2]);
				s += u[((size_t)a * n[1] + b) * n[2] + c] *
				     cexp(-I * ph);
			}
	return s / (n[0] * n[1] * n[2]);
}

static int signed_k(int i, int n) { return i <= n / 2 ? i : i - n; }

/* Empirical E|c_k|^2 over M samples for every mode against sd_k^2. A
 * complex mode has |c|^2 = sd^2 Exp(1) (standard deviation sd^2), a real
 * one (self-conjugate: k = -k mod n) sd^2 chi^2_1 (sd sqrt2 sd^2): the
 * mean of M draws is within 5 standard errors. A missing Hermitian pair
 * (a c2r input that is not conjugate-symmetric) would halve or double a
 * mode's power and fail this. */
static void check_spectrum(int dims, const int n[3], int M)
{
	struct pno_grf_opts g = {2.0, 3.0, 10.0};
	size_t P = (size_t)n[0] * n[1] * n[2];
	double *u = malloc(P * sizeof *u);
	double *pow2 = calloc(P, sizeof *pow2);
	double complex *mean = calloc(P, sizeof *mean);
	for (int s = 0; s < M; s++) {
		if (dims == 3)
			assert_status(pno_grf_periodic3(u, n[0], n[1], n[2], &g, 7,
							(uint64_t)s),
				      PNO_STATUS_OK);
		else
			assert_status(pno_grf_periodic(u, NULL, dims,
						       dims == 1 ? n[2] : n[1],
						       n[2], &g, 7, (uint64_t)s,
						       NULL, NULL),
				      PNO_STATUS_OK);
		size_t id = 0;
		for (int a = 0; a < n[0]; a++)
			for (int b = 0; b < n[1]; b++)
				for (int c = 0; c < n[2]; c++, id++) {
					int k[3] = {a, b, c};
					double complex ck = dft(u, n, k);
					pow2[id] += creal(ck * conj(ck));
					mean[id] += ck;
				}
	}
	size_t id = 0;
	for (int a = 0; a < n[0]; a++)
		for (int b = 0; b < n[1]; b++)
			for (int c = 0; c < n[2]; c++, id++) {
				int k0 = signed_k(a, n[0]), k1 = signed_k(b, n[1]),
				    k2 = signed_k(c, n[2]);
				double lam = two_pi * two_pi *
					     (double)(k0 * k0 + k1 * k1 + k2 * k2);
				double var = g.sigma * g.sigma *
					     pow(lam + g.tau * g.tau, -g.alpha);
				int real = (2 * a) % n[0] == 0 &&
					   (2 * b) % n[1] == 0 &&
					   (2 * c) % n[2] == 0;
				double se = (real ? M_SQRT2 : 1.0) * var / sqrt(M);
				double got = pow2[id] / M;
				if (fabs(got - var) > 5 * se)
					fail_msg("dims %d mode (%d,%d,%d): E|c|^2 "
						 "%.5g, want %.5g (5 s.e. %.3g)",
						 dims, k0, k1, k2, got, var, 5 * se);
				/* the mean is within 5 s.e. of zero too */
				assert_true(cabs(mean[id] / M) <=
					    5 * sqrt(var / M) * 1.5);
			}
	free(u), free(pow2), free(mean);
}

static void test_grf_spectrum(void **state)
{
	(void)state;
	int sanitized = getenv("PNO_SANITIZED") != NULL;
	check_spectrum(1, (int[3]){1, 1, 16}, sanitized ? 800 : 4000);
	check_spectrum(2, (int[3]){1, 8, 6}, sanitized ? 400 : 2000);
	check_spectrum(3, (int[3]){4, 2, 6}, sanitized ? 300 : 1500);
}

/* Sample i depends on (seed, i) only, and different i differ. */
static void test_grf_reproducible(void **state)
{
	(void)state;
	struct pno_grf_opts g = {2.0, 5.0, 25.0};
	double a[64], b[64], c[64];
	assert_status(pno_grf_periodic(a, NULL, 2, 8, 8, &g, 3, 5, NULL, NULL),
		      PNO_STATUS_OK);
	assert_status(pno_grf_periodic(b, NULL, 2, 8, 8, &g, 3, 5, NULL, NULL),
		      PNO_STATUS_OK);
	assert_status(pno_grf_periodic(c, NULL, 2, 8, 8, &g, 3, 6, NULL, NULL),
		      PNO_STATUS_OK);
	assert_memory_equal(a, b, sizeof a);
	assert_true(memcmp(a, c, sizeof a) != 0);
	assert_status(pno_grf_periodic(a, NULL, 4, 8, 8, &g, 3, 5, NULL, NULL),
		      PNO_STATUS_INVALID);
}

struct frames_check {
	int dims, res, frames;
	double dt_out;
	double param;		/* kappa or c */
	int wave;
};

/* Every frame's naive DFT equals the initial frame's times the exact
 * factor: exp(-kappa 4pi^2|k|^2 t) (heat) or cos(c 2pi|k| t) (wave). The
 * file holds float32, each value rounded by 2^-24 relative: the DFT
 * (an average) errs by at most ~6e-8 max|u|, so 1e-6 max|c_0| bounds it
 * with room. Frame 0 equals the GRF of the same (seed, index). */
static void check_frames(const char *path, const struct frames_check *fc,
			 int samples, uint64_t seed,
			 const struct pno_grf_opts *g)
{
	size_t n;
	int64_t shape[8];
	int rank;
	float *x = tu_h5_read(path, "tensor", &rank, shape, &n);
	int nn[3] = {1, 1, 1};
	for (int d = 0; d < fc->dims; d++)
		nn[3 - fc->dims + d] = fc->res;
	size_t P = (size_t)nn[0] * nn[1] * nn[2];
	assert_int_equal(rank, 2 + fc->dims);
	assert_int_equal(shape[0], samples);
	assert_int_equal(shape[1], fc->frames);
	assert_int_equal(n, (size_t)samples * fc->frames * P);
	double *u0 = malloc(P * sizeof *u0), *uk = malloc(P * sizeof *uk);
	double *ref = malloc(P * sizeof *ref);
	for (int s = 0; s < samples; s++) {
		const float *f0 = x + (size_t)s * fc->frames * P;
		if (fc->dims == 3)
			assert_status(pno_grf_periodic3(ref, fc->res, fc->res,
							fc->res, g, seed, s),
				      PNO_STATUS_OK);
		else
			assert_status(pno_grf_periodic(ref, NULL, fc->dims,
						       fc->res, fc->res, g, seed,
						       s, NULL, NULL),
				      PNO_STATUS_OK);
		for (size_t p = 0; p < P; p++) {
			u0[p] = f0[p];
			assert_true(f0[p] == (float)ref[p]);
		}
		double cmax = 0;
		for (int a = 0; a < nn[0]; a++)
			for (int b = 0; b < nn[1]; b++)
				for (int c = 0; c < nn[2]; c++) {
					int k[3] = {a, b, c};
					cmax = fmax(cmax, cabs(dft(u0, nn, k)));
				}
		for (int t = 1; t < fc->frames; t++) {
			const float *ft = f0 + (size_t)t * P;
			for (size_t p = 0; p < P; p++)
				uk[p] = ft[p];
			double time = t * fc->dt_out;
			for (int a = 0; a < nn[0]; a++)
				for (int b = 0; b < nn[1]; b++)
					for (int c = 0; c < nn[2]; c++) {
						int k[3] = {a, b, c};
						int s0 = signed_k(a, nn[0]),
						    s1 = signed_k(b, nn[1]),
						    s2 = signed_k(c, nn[2]);
						double ksq = (double)(s0 * s0 +
								      s1 * s1 +
								      s2 * s2);
						double m = fc->wave
							? cos(fc->param * two_pi *
							      sqrt(ksq) * time)
							: exp(-fc->param * two_pi *
							      two_pi * ksq * time);
						double complex want =
							dft(u0, nn, k) * m;
						double complex got = dft(uk, nn, k);
						if (cabs(got - want) > 1e-6 * cmax)
							fail_msg("frame %d mode "
								 "(%d,%d,%d): "
								 "|diff| %.3g",
								 t, s0, s1, s2,
								 cabs(got - want));
					}
		}
	}
	free(x), free(u0), free(uk), free(ref);
}

static void test_heat_exact(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("heat.h5");
	for (int dims = 1; dims <= 3; dims++) {
		struct pno_heat_opts o;
		pno_heat_opts_default(&o, dims);
		o.base.samples = 3;
		o.base.res = dims == 3 ? 6 : 8;
		o.base.seed = 11;
		o.kappa = 0.05;
		o.t_final = 0.3;
		o.dt_out = 0.1;
		assert_status(pno_generate_heat(&o, path, 1), PNO_STATUS_OK);
		struct frames_check fc = {dims, o.base.res, 4, 0.1, o.kappa, 0};
		check_frames(path, &fc, 3, 11, &o.grf);
		/* default: two frames, t = 0 and t_final */
		o.dt_out = 0;
		assert_status(pno_generate_heat(&o, path, 1), PNO_STATUS_OK);
		struct frames_check f2 = {dims, o.base.res, 2, 0.3, o.kappa, 0};
		check_frames(path, &f2, 3, 11, &o.grf);
	}
	char pde[16];
	assert_status(pno_h5_attr_string(path, "pde", pde, sizeof pde),
		      PNO_STATUS_OK);
	assert_string_equal(pde, "heat3d");
	unlink(path);
}

static void test_wave_exact(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("wave.h5");
	struct pno_wave_opts o;
	pno_wave_opts_default(&o);
	o.base.samples = 2;
	o.base.res = 8;
	o.base.seed = 4;
	o.c = 0.7;
	o.t_final = 1.0;
	o.dt_out = 0.25;
	assert_status(pno_generate_wave(&o, path, 0), PNO_STATUS_OK);
	struct frames_check fc = {2, 8, 5, 0.25, 0.7, 1};
	check_frames(path, &fc, 2, 4, &o.grf);
	size_t n;
	float *t = tu_h5_read(path, "t-coordinate", NULL, NULL, &n);
	assert_int_equal(n, 5);
	for (int k = 0; k < 5; k++)
		tu_assert_close(t[k], 0.25 * k, 1e-7);
	free(t);
	/* bad options: nothing written */
	unlink(path);
	o.dt_out = 0.3;		/* 1.0 is not a whole number of 0.3 */
	assert_status(pno_generate_wave(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--dt-out");
	o.dt_out = 0.25;
	o.c = 0;
	assert_status(pno_generate_wave(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--c");
	assert_int_equal(access(path, F_OK), -1);
}

/* The same file for 1 and 2 threads. */
static void test_thread_invariance(void **state)
{
	(void)state;
	const char *p1 = tu_tmp_path("t1.h5"), *p2 = tu_tmp_path("t2.h5");
	struct pno_heat_opts o;
	pno_heat_opts_default(&o, 2);
	o.base.samples = 37;
	o.base.res = 16;
	pno_threads_set(1);
	assert_status(pno_generate_heat(&o, p1, 1), PNO_STATUS_OK);
	pno_threads_set(2);
	assert_status(pno_generate_heat(&o, p2, 1), PNO_STATUS_OK);
	free(tu_h5_read_same(p1, p2, "tensor", NULL, NULL, NULL));
	unlink(p1), unlink(p2);
}

/* ---- the driver with a synthetic PDE ---- */
struct fake {
	int flag_at;		/* sample index that raises the cancel flag */
	volatile int flag;
	int fail_at;		/* sample index that fails (-1: none) */
	int cancel_at;		/* progress count that cancels (0: none) */
	int ws_fail;
	long calls, last_done, total;
	int monotone;
};

static enum pno_status fake_ws_new(void *ctx, void **ws)
{
	struct fake *f = ctx;
	if (f->ws_fail)	/* a failure that is not out of memory */
		return pno__errorf(PNO_STATUS_INTERNAL, "fake: plan failed");
	*ws = pno_malloc(16);
	return *ws ? PNO_STATUS_OK
		   : pno__errorf(PNO_STATUS_NOMEM, "fake: out of memory");
}

static void fake_ws_free(void *ctx, void *ws)
{
	(void)ctx;
	pno_free(ws);
}

/* sample i: out0 = (i, i+0.5, ...) over 3x2; out1 = -i */
static enum pno_status fake_sample(void *ctx, void *ws, uint64_t i,
				   float *const *out)
{
	struct fake *f = ctx;
	(void)ws;
	if ((int)i == f->fail_at)
		return pno__errorf(PNO_STATUS_RANGE, "fake: sample %d diverged",
				   (int)i);
	if ((int)i == f->flag_at) {
		/* the user's flag goes up while this sample runs: a solver
		 * polling pno__gen_cancelled() sees it before finishing */
		f->flag = 1;
		if (pno__gen_cancelled())
			return pno__gen_cancel_status("fake");
		fail_msg("pno__gen_cancelled() missed the flag");
	}
	for (int k = 0; k < 6; k++)
		out[0][k] = (float)i + 0.5f * k;
	out[1][0] = -(float)i;
	return PNO_STATUS_OK;
}

static int fake_progress(void *ud, long done, long total)
{
	struct fake *f = ud;
	f->calls++;
	if (done != f->last_done + 1)
		f->monotone = 0;
	f->last_done = done;
	f->total = total;
	return f->cancel_at && done >= f->cancel_at;
}

static enum pno_status fake_run(struct fake *f, int samples, const char *path,
				int overwrite)
{
	struct pno_gen_base b = {.samples = samples, .res = 3, .seed = 9,
				.progress = fake_progress, .progress_ud = f,
				.cancel = &f->flag};
	float xc[3] = {0, 1, 2};
	struct pno__gen g = {0};
	g.pde = "fake";
	g.base = &b;
	g.n_out = 2;
	g.out[0] = (struct pno__gen_out){"tensor", 2, {3, 2}};
	g.out[1] = (struct pno__gen_out){"label", 1, {1}};
	g.n_fixed = 1;
	g.fixed[0] = (struct pno_h5_array){"x-coordinate", 1, {3}, xc};
	pno__gen_attr_str(&g, "solver", "none");
	pno__gen_attr_num(&g, "nu", 0.25);
	g.ctx = f;
	g.ws_new = fake_ws_new;
	g.ws_free = fake_ws_free;
	g.sample = fake_sample;
	f->calls = f->last_done = 0;
	f->monotone = 1;
	return pno__generate(&g, path, overwrite);
}

static void test_driver(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("fake.h5");
	struct fake f = {.flag_at = -1, .fail_at = -1, .monotone = 1};
	unlink(path);
	pno_threads_set(2);
	assert_status(fake_run(&f, 25, path, 0), PNO_STATUS_OK);
	assert_int_equal(f.calls, 25);
	assert_true(f.monotone);
	assert_int_equal(f.total, 25);
	size_t n;
	int64_t shape[8];
	int rank;
	float *x = tu_h5_read(path, "tensor", &rank, shape, &n);
	assert_int_equal(rank, 3);
	assert_int_equal(shape[0], 25);
	assert_int_equal(shape[1], 3);
	assert_int_equal(shape[2], 2);
	for (int i = 0; i < 25; i++)	/* each sample at its own index */
		for (int k = 0; k < 6; k++)
			assert_true(x[i * 6 + k] == (float)i + 0.5f * k);
	free(x);
	x = tu_h5_read(path, "label", &rank, shape, &n);
	assert_int_equal(n, 25);
	for (int i = 0; i < 25; i++)
		assert_true(x[i] == -(float)i);
	free(x);
	char buf[32];
	assert_status(pno_h5_attr_string(path, "pde", buf, sizeof buf),
		      PNO_STATUS_OK);
	assert_string_equal(buf, "fake");
	assert_status(pno_h5_attr_string(path, "seed", buf, sizeof buf),
		      PNO_STATUS_OK);
	assert_string_equal(buf, "9");
	assert_status(pno_h5_attr_string(path, "pno_version", buf, sizeof buf),
		      PNO_STATUS_OK);

	/* an existing output is refused before any sample is computed */
	assert_status(fake_run(&f, 25, path, 0), PNO_STATUS_EXISTS);
	assert_int_equal(f.calls, 0);
	unlink(path);

	/* a failing sample stops the run with its message; nothing left */
	f.fail_at = 7;
	assert_status(fake_run(&f, 25, path, 0), PNO_STATUS_RANGE);
	assert_err_has("sample 7 diverged (sample 7)");
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(tu_temps_left(path), 0);
	f.fail_at = -1;

	/* cancellation from the progress callback */
	f.cancel_at = 5;
	assert_status(fake_run(&f, 25, path, 0), PNO_STATUS_CANCELLED);
	assert_err_has("cancelled after 5 of 25");
	assert_int_equal(f.calls, 5);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(tu_temps_left(path), 0);
	f.cancel_at = 0;

	/* the cancel flag raised inside a sample stops the run there */
	f.flag_at = 9;
	pno_threads_set(1);
	assert_status(fake_run(&f, 25, path, 0), PNO_STATUS_CANCELLED);
	assert_err_has("fake: cancelled after 9 of 25 samples");
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(tu_temps_left(path), 0);
	assert_false(pno__gen_cancelled());	/* outside a run */
	f.flag_at = -1;
	f.flag = 0;
	pno_threads_set(2);

	/* a worker without a workspace: its status and message */
	f.ws_fail = 1;
	assert_status(fake_run(&f, 25, path, 0), PNO_STATUS_INTERNAL);
	assert_err_has("fake: plan failed");
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(tu_temps_left(path), 0);
	f.ws_fail = 0;

	assert_status(fake_run(&f, 0, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--samples");
}

/* Every allocation failure returns NOMEM, leaks nothing, leaves no file. */
static void test_alloc_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("alloc.h5");
	struct pno_heat_opts o;
	pno_heat_opts_default(&o, 2);
	o.base.samples = 3;
	o.base.res = 8;
	o.dt_out = 0.1;
	unlink(path);
	pno_threads_set(1);	/* the counting allocator is not thread-safe */
	tu_alloc_install();
	long live0 = tu_alloc_live(), n;
	for (n = 1;; n++) {
		tu_alloc_reset(n);
		if (tu_alloc_step(pno_generate_heat(&o, path, 0), live0))
			break;
		assert_int_equal(access(path, F_OK), -1);
		assert_int_equal(tu_temps_left(path), 0);
	}
	tu_alloc_uninstall();
	assert_true(n > 5);
	unlink(path);
}

static void test_bad_options(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("bad.h5");
	struct pno_heat_opts o;
	unlink(path);
	pno_heat_opts_default(&o, 1);
	o.dims = 4;
	assert_status(pno_generate_heat(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--dim");
	pno_heat_opts_default(&o, 3);
	o.base.res = 300;
	assert_status(pno_generate_heat(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--res");
	pno_heat_opts_default(&o, 1);
	o.kappa = -1;
	assert_status(pno_generate_heat(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--kappa");
	pno_heat_opts_default(&o, 1);
	o.grf.alpha = 0;
	assert_status(pno_generate_heat(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--alpha");
	pno_heat_opts_default(&o, 1);
	o.base.samples = 0;
	assert_status(pno_generate_heat(&o, path, 0), PNO_STATUS_INVALID);
	assert_err_has("--samples");
	assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grf_spectrum),
		cmocka_unit_test(test_grf_reproducible),
		cmocka_unit_test(test_heat_exact),
		cmocka_unit_test(test_wave_exact),
		cmocka_unit_test(test_thread_invariance),
		cmocka_unit_test(test_driver),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
