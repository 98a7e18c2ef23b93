/* serve/drift: PSI against a hand computation; KS against a brute-force
 * sup over every point and its p-value against the null distribution;
 * reference statistics against direct computations (mean, std, type-7
 * deciles, single-mode spectra, Parseval); the JSON round trip and bad
 * JSON; on seeded Gaussian-random-field inputs, shifted inputs (mean +
 * 0.5 std) raise the alert within the window and unshifted inputs raise
 * none in at least 99 of 100 seeded runs; allocation-failure loops. */
#include "testutil.h"
#include "drift.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pno/io.h"

/* A reference whose deciles are 1..9 and bin fractions 0.1, for inputs of
 * 100 points in 1-D, built through the JSON reader. */
static void hand_ref(struct drift_ref *r)
{
	char buf[20000];
	int n = snprintf(buf, sizeof buf,
			 "{\"format\":\"pno-drift-reference\",\"version\":1,"
			 "\"channels\":1,\"dims\":1,\"X\":100,\"Y\":1,\"n_inputs\":5,"
			 "\"mean\":[5],\"std\":[2.9],"
			 "\"deciles\":[[1,2,3,4,5,6,7,8,9]],"
			 "\"bin_fractions\":[[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]],"
			 "\"shell_energy\":[[");
	for (int k = 0; k <= 50; k++)
		n += snprintf(buf + n, sizeof buf - n, "%s0", k ? "," : "");
	n += snprintf(buf + n, sizeof buf - n, "]],\"sample\":[[");
	for (int i = 0; i < 100; i++)
		n += snprintf(buf + n, sizeof buf - n, "%s%g", i ? "," : "",
			      0.1 * i + 0.05);
	snprintf(buf + n, sizeof buf - n, "]]}");
	assert_status(drift_ref_from_json(r, buf), PNO_STATUS_OK);
}

static void test_psi_hand(void **state)
{
	(void)state;
	struct drift_ref r;
	hand_ref(&r);
	struct drift_config c = drift_config_default();
	c.window = 1;
	c.points = 100;
	struct drift_monitor m;
	assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_OK);
	/* counts per bin 20,10,10,10,10,10,10,10,10,0 out of 100; values on
	 * an edge belong to the bin below it (v <= e) */
	float x[100];
	const int counts[10] = {20, 10, 10, 10, 10, 10, 10, 10, 10, 0};
	int k = 0;
	for (int b = 0; b < 10; b++)
		for (int i = 0; i < counts[b]; i++)
			x[k++] = (float)(b + (i % 2 ? 1.0 : 0.5)); /* b+1 is the edge */
	assert_int_equal(k, 100);
	assert_status(drift_observe(&m, x), PNO_STATUS_OK);
	struct drift_report rep;
	struct drift_channel ch;
	drift_evaluate(&m, &rep, &ch, 1);
	/* by hand: bin 0 at 0.2: 0.1 ln 2; bin 9 empty, floored at 1e-4:
	 * (1e-4 - 0.1) ln(1e-4 / 0.1); the rest 0 */
	double want = 0.1 * log(2.0) + (1e-4 - 0.1) * log(1e-4 / 0.1);
	tu_assert_close(ch.psi, want, 1e-12);	/* only rounding differs */
	assert_true(rep.ready);
	assert_int_equal(rep.level, DRIFT_CRITICAL);	/* 0.759 > 0.25 */
	/* the same counts straight into drift_psi */
	double a[10], e[10];
	for (int b = 0; b < 10; b++)
		a[b] = counts[b] / 100.0, e[b] = 0.1;
	tu_assert_close(drift_psi(a, e, 10, 1e-4), want, 1e-15);
	tu_assert_close(drift_psi(e, e, 10, 1e-4), 0, 0);
	/* a matching input: PSI 0, level ok */
	for (int i = 0; i < 100; i++)
		x[i] = (float)(i / 10 + 0.5);
	assert_status(drift_observe(&m, x), PNO_STATUS_OK);
	drift_evaluate(&m, &rep, &ch, 1);
	tu_assert_close(ch.psi, 0, 1e-15);
	assert_int_equal(rep.level, DRIFT_OK);
	tu_assert_close(ch.mean, 5.0, 1e-6);	/* mean of floor(i/10) + 0.5 */
	/* a non-finite input is refused and leaves the window alone */
	x[37] = NAN;
	assert_status(drift_observe(&m, x), PNO_STATUS_NONFINITE);
	drift_evaluate(&m, &rep, &ch, 0);
	assert_true(rep.observed == 2);
	tu_assert_close(ch.psi, 0, 1e-15);
	drift_monitor_free(&m);
	drift_ref_free(&r);
}

/* brute force: the sup over every sample point t of |F_a(t) - F_b(t)| */
static double ks_brute(const float *a, int n, const float *b, int m)
{
	double d = 0;
	for (int pass = 0; pass < 2; pass++) {
		const float *t = pass ? b : a;
		int nt = pass ? m : n;
		for (int i = 0; i < nt; i++) {
			int ca = 0, cb = 0;
			for (int k = 0; k < n; k++)
				ca += a[k] <= t[i];
			for (int k = 0; k < m; k++)
				cb += b[k] <= t[i];
			d = fmax(d, fabs((double)ca / n - (double)cb / m));
		}
	}
	return d;
}

static int cmpf(const void *x, const void *y)
{
	float a = *(const float *)x, b = *(const float *)y;
	return (a > b) - (a < b);
}

static void test_ks(void **state)
{
	(void)state;
	float a[300], b[200];
	for (int trial = 0; trial < 50; trial++) {
		int n = 1 + trial * 6, m = 200 - trial * 3;
		pno_rng_normal(a, (size_t)n, 5, (uint64_t)trial, 0);
		pno_rng_normal(b, (size_t)m, 6, (uint64_t)trial, 0);
		for (int i = 0; i < m; i++)	/* shifted, and with ties */
			b[i] = roundf((b[i] + 0.02f * trial) * 4) / 4;
		if (trial % 3 == 0)
			for (int i = 0; i < n; i++)
				a[i] = roundf(a[i] * 4) / 4;
		qsort(a, (size_t)n, sizeof *a, cmpf);
		qsort(b, (size_t)m, sizeof *b, cmpf);
		double d = drift_ks_stat(a, n, b, m), want = ks_brute(a, n, b, m);
		if (fabs(d - want) > 1e-12)
			fail_msg("trial %d (n %d m %d): D %.15g, brute force %.15g",
				 trial, n, m, d, want);
	}
	/* the Kolmogorov distribution at its tabulated points: P(K > 1.36)
	 * = 0.0494, P(K > 1.63) = 0.0098 (large n: the correction -> 0) */
	tu_assert_close(drift_ks_pvalue(1.36 / sqrt(5e8), (int)1e9, (int)1e9),
			0.0494, 5e-4);
	tu_assert_close(drift_ks_critical(0.05, 1000, 1000), 1.3581 * sqrt(0.002), 1e-4);
	tu_assert_close(drift_ks_critical(0.01, 1000, 1000), 1.6276 * sqrt(0.002), 1e-4);
	assert_true(drift_ks_pvalue(0, 10, 10) == 1);
	/* under the null the p-value is about uniform: of 2000 pairs of
	 * independent samples (n 150, m 100) the share with p < 0.05 is
	 * 0.05 +- 3 sd (sd sqrt(0.05 0.95 / 2000) = 0.0049); the statistic
	 * is discrete, so the test is slightly conservative */
	int rej = 0;
	for (int t = 0; t < 2000; t++) {
		pno_rng_normal(a, 150, 7, (uint64_t)t, 0);
		pno_rng_normal(b, 100, 8, (uint64_t)t, 0);
		qsort(a, 150, sizeof *a, cmpf);
		qsort(b, 100, sizeof *b, cmpf);
		rej += drift_ks_pvalue(drift_ks_stat(a, 150, b, 100), 150, 100) < 0.05;
	}
	printf("KS null: %d of 2000 rejected at 0.05\n", rej);
	assert_true(rej >= 2000 * (0.05 - 3 * 0.0049) && rej <= 2000 * (0.05 + 3 * 0.0049));
}

/* type-7 quantile by the textbook formula on a qsort-ed copy */
static double q7(const float *s, size_t n, double p)
{
	double h = (n - 1) * p;
	size_t lo = (size_t)h;
	return lo + 1 < n ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[n - 1];
}

static void test_reference(void **state)
{
	(void)state;
	/* 2 channels of 2-D inputs, 7 x 6 grid (odd and even axes) */
	enum { N = 13, C = 2, X = 7, Y = 6, P = X * Y };
	static float x[N * C * P];
	pno_rng_normal(x, sizeof x / sizeof *x, 21, 0, 0);
	for (size_t i = 0; i < sizeof x / sizeof *x; i++)
		x[i] = x[i] * 3 + 1;
	struct drift_ref r;
	assert_status(drift_ref_compute(&r, x, N, C, 2, X, Y, 50), PNO_STATUS_OK);
	assert_int_equal(r.n_shells, 4);	/* min(7, 6)/2 + 1 */
	for (int c = 0; c < C; c++) {
		static float all[N * P];
		double s1 = 0, s2 = 0, sq = 0;
		for (int n = 0; n < N; n++)
			for (int p = 0; p < P; p++) {
				float v = x[((size_t)n * C + c) * P + p];
				all[n * P + p] = v;
				s1 += v;
				sq += (double)v * v;
			}
		double mean = s1 / (N * P);
		for (int i = 0; i < N * P; i++)
			s2 += (all[i] - mean) * (all[i] - mean);
		tu_assert_close(r.mean[c], mean, 1e-12);
		tu_assert_close(r.std[c], sqrt(s2 / (N * P)), 1e-12);
		qsort(all, N * P, sizeof *all, cmpf);
		for (int b = 0; b < 9; b++)
			tu_assert_close(r.edges[c * 9 + b], q7(all, N * P, (b + 1) / 10.0),
					1e-12);
		/* bin fractions counted directly */
		for (int b = 0; b < 10; b++) {
			int cnt = 0;
			for (int i = 0; i < N * P; i++) {
				double v = all[i];
				int in = (b == 0 || v > r.edges[c * 9 + b - 1]) &&
					 (b == 9 || v <= r.edges[c * 9 + b]);
				cnt += in;
			}
			tu_assert_close(r.bin_frac[c * 10 + b], (double)cnt / (N * P), 1e-15);
		}
		for (int i = 0; i < 50; i++)
			tu_assert_close(r.sample[c * 50 + i],
					(float)q7(all, N * P, (i + 0.5) / 50), 0);
		/* Parseval: the shells (tail pooled) sum to the mean square */
		double e = 0;
		for (int k = 0; k < r.n_shells; k++)
			e += r.shell_energy[c * r.n_shells + k];
		tu_assert_close(e, sq / (N * P), 1e-10 * sq / (N * P));
	}
	drift_ref_free(&r);

	/* a single mode: cos(2 pi (3 i / 64)) has energy 1/2 in shell 3 (1-D),
	 * cos(2 pi (3 i + 4 j) / 32) energy 1/2 in shell 5 (2-D) */
	static float u[64], v[32 * 32];
	for (int i = 0; i < 64; i++)
		u[i] = (float)cos(2 * M_PI * 3 * i / 64.0);
	assert_status(drift_ref_compute(&r, u, 1, 1, 1, 64, 1, 10), PNO_STATUS_OK);
	assert_int_equal(r.n_shells, 33);
	for (int k = 0; k < 33; k++)
		tu_assert_close(r.shell_energy[k], k == 3 ? 0.5 : 0, 1e-7);
	drift_ref_free(&r);
	for (int i = 0; i < 32; i++)
		for (int j = 0; j < 32; j++)
			v[i * 32 + j] = (float)cos(2 * M_PI * (3 * i + 4 * j) / 32.0);
	assert_status(drift_ref_compute(&r, v, 1, 1, 2, 32, 32, 10), PNO_STATUS_OK);
	for (int k = 0; k < r.n_shells; k++)
		tu_assert_close(r.shell_energy[k], k == 5 ? 0.5 : 0, 1e-7);
	drift_ref_free(&r);

	/* errors */
	assert_status(drift_ref_compute(&r, u, 1, 1, 3, 64, 1, 10), PNO_STATUS_INVALID);
	assert_status(drift_ref_compute(&r, u, 1, 1, 1, 64, 2, 10), PNO_STATUS_INVALID);
	assert_status(drift_ref_compute(&r, u, 1, 1, 1, 64, 1, 5), PNO_STATUS_INVALID);
	assert_err_has("sample size");
	u[9] = INFINITY;
	assert_status(drift_ref_compute(&r, u, 1, 1, 1, 64, 1, 10), PNO_STATUS_NONFINITE);
	assert_err_has("point 9");
	assert_null(r.mean);
}

static void test_json(void **state)
{
	(void)state;
	struct pno_dataset d;
	tu_heat_dataset(&d, 2, 20, 16, 0.01, 3);
	struct drift_ref r, b;
	assert_status(drift_ref_from_dataset(&r, &d, 100), PNO_STATUS_OK);
	char *t1, *t2;
	assert_status(drift_ref_to_json(&r, &t1), PNO_STATUS_OK);
	assert_status(drift_ref_from_json(&b, t1), PNO_STATUS_OK);
	assert_int_equal(b.C, r.C);
	assert_int_equal(b.n_shells, r.n_shells);
	assert_int_equal(b.sample_size, 100);
	assert_true(b.n_inputs == 20);
	/* bit-exact: 17 significant digits round-trip a double */
	assert_memory_equal(b.mean, r.mean, sizeof(double));
	assert_memory_equal(b.std, r.std, sizeof(double));
	assert_memory_equal(b.edges, r.edges, 9 * sizeof(double));
	assert_memory_equal(b.bin_frac, r.bin_frac, 10 * sizeof(double));
	assert_memory_equal(b.shell_energy, r.shell_energy, r.n_shells * sizeof(double));
	assert_memory_equal(b.sample, r.sample, 100 * sizeof(float));
	assert_status(drift_ref_to_json(&b, &t2), PNO_STATUS_OK);
	assert_string_equal(t1, t2);
	printf("reference JSON: %zu bytes (1 channel, 100 sample points, %d shells)\n",
	       strlen(t1), r.n_shells);
	pno_free(t2);
	drift_ref_free(&b);

	/* damaged copies */
	struct { const char *from, *to, *err; } bad[] = {
		{"\"format\":\"pno-drift-reference\"", "\"format\":\"x\"", "format"},
		{"\"channels\":1", "\"channels\":2", "mean"},
		{"\"dims\":2", "\"dims\":3", "dims"},
		{"\"version\":1", "\"version\":2", "version"},
		{"\"deciles\":[[", "\"deciles\":[[1e9,", "deciles"},
		{"\"std\":[", "\"std\":[-", "negative std"},
		{"\"bin_fractions\":[[", "\"bin_fractions\":[[0.5,", "bin_fractions"},
		{"\"n_inputs\":20", "\"n_inputs\":0", "n_inputs"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		const char *at = strstr(t1, bad[i].from);
		assert_non_null(at);
		size_t pre = (size_t)(at - t1);
		char *s = malloc(strlen(t1) + 64);
		memcpy(s, t1, pre);
		strcpy(s + pre, bad[i].to);
		strcat(s, at + strlen(bad[i].from));
		/* fix up the one edit that makes the row too long */
		enum pno_status st = drift_ref_from_json(&b, s);
		if (st != PNO_STATUS_FORMAT || !strstr(pno_last_error(), bad[i].err))
			fail_msg("edit %zu: %s, \"%s\" (want \"%s\")", i,
				 pno_status_name(st), pno_last_error(), bad[i].err);
		assert_null(b.mean);
		free(s);
	}
	/* an unsorted deciles row of the right length */
	{
		char *s = strdup(t1), *p = strstr(s, "\"deciles\":[[") + 12;
		/* the first edge's leading character (digit or '-') becomes 9:
		 * larger than the next edge (the fields are within +-5) */
		*p = '9';
		enum pno_status st = drift_ref_from_json(&b, s);
		assert_int_equal(st, PNO_STATUS_FORMAT);
		free(s);
	}
	assert_status(drift_ref_from_json(&b, "{"), PNO_STATUS_FORMAT);
	assert_status(drift_ref_from_json(&b, NULL), PNO_STATUS_FORMAT);
	pno_free(t1);
	drift_ref_free(&r);
	pno_dataset_free(&d);
}

/* ---- alerts on seeded random fields ---- */

enum { RES = 32, NREF = 200 };

/* inputs of one run: GRF fields (alpha 2, tau 5, sigma 25, periodic) */
static void fields(struct pno_dataset *d, int n, uint64_t seed)
{
	tu_heat_dataset(d, 2, n, RES, 0.01, seed);
}

static void test_alerts(void **state)
{
	(void)state;
	struct pno_dataset ref_d;
	fields(&ref_d, NREF, 1000);
	struct drift_ref r;
	assert_status(drift_ref_from_dataset(&r, &ref_d, 1000), PNO_STATUS_OK);
	pno_dataset_free(&ref_d);
	struct drift_config c = drift_config_default();
	const int W = c.window;
	const size_t P = RES * RES;
	const float shift = (float)(0.5 * r.std[0]);

	/* shifted inputs: a full window of unshifted ones (no alert), then
	 * shifted ones until the alert; it must come within W inputs */
	int worst_delay = 0, runs_shift = 10;
	double psi_end_max = 0, psi_shift_min = INFINITY;
	for (int run = 0; run < runs_shift; run++) {
		struct pno_dataset d;
		fields(&d, 2 * W, 5000 + run);
		struct drift_monitor m;
		c.seed = (uint64_t)run;
		assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_OK);
		struct drift_report rep;
		for (int i = 0; i < W; i++)
			assert_status(drift_observe(&m, d.in + i * P), PNO_STATUS_OK);
		drift_evaluate(&m, &rep, NULL, 0);
		assert_true(rep.ready);
		assert_int_equal(rep.level, DRIFT_OK);
		int at = -1;
		float x[RES * RES];
		for (int i = 0; i < W && at < 0; i++) {
			for (size_t p = 0; p < P; p++)
				x[p] = d.in[(W + i) * P + p] + shift;
			assert_status(drift_observe(&m, x), PNO_STATUS_OK);
			drift_evaluate(&m, &rep, NULL, 0);
			if (rep.level >= DRIFT_WARN)
				at = i + 1;
		}
		if (at < 0)
			fail_msg("run %d: no alert after %d shifted inputs", run, W);
		worst_delay = at > worst_delay ? at : worst_delay;
		/* keep going to a window of only shifted inputs */
		for (int i = at; i < W; i++) {
			for (size_t p = 0; p < P; p++)
				x[p] = d.in[(W + i) * P + p] + shift;
			assert_status(drift_observe(&m, x), PNO_STATUS_OK);
		}
		struct drift_channel ch;
		drift_evaluate(&m, &rep, &ch, 1);
		psi_shift_min = fmin(psi_shift_min, ch.psi);
		psi_end_max = fmax(psi_end_max, ch.mean_shift);
		tu_assert_close(ch.mean_shift, 0.5, 0.25);
		drift_monitor_free(&m);
		pno_dataset_free(&d);
	}
	printf("shifted: alert after at most %d of %d inputs; full-window PSI >= %.3f\n",
	       worst_delay, W, psi_shift_min);

	/* unshifted: 100 seeded runs of 2W inputs each, evaluated after every
	 * input once the window is full; count the runs with any alert */
	const int runs = getenv("PNO_SANITIZED") ? 30 : 100;
	int alarmed = 0;
	double psi_max = 0, ks_p_min = 1, ks_d_max = 0;
	for (int run = 0; run < runs; run++) {
		struct pno_dataset d;
		fields(&d, 2 * W, 9000 + run);
		struct drift_monitor m;
		c.seed = 100 + (uint64_t)run;
		assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_OK);
		int any = 0;
		for (int i = 0; i < 2 * W; i++) {
			struct drift_report rep;
			assert_status(drift_observe(&m, d.in + i * P), PNO_STATUS_OK);
			drift_evaluate(&m, &rep, NULL, 0);
			if (rep.ready) {
				any |= rep.level != DRIFT_OK;
				psi_max = fmax(psi_max, rep.psi_max);
			}
		}
		struct drift_report rep;
		struct drift_channel ch;
		drift_evaluate(&m, &rep, &ch, 1);
		ks_p_min = fmin(ks_p_min, ch.ks_p);
		ks_d_max = fmax(ks_d_max, ch.ks_d);
		alarmed += any;
		drift_monitor_free(&m);
		pno_dataset_free(&d);
	}
	printf("unshifted: %d of %d runs raised an alert; max PSI %.4f; "
	       "KS max D %.4f, min p %.2g\n", alarmed, runs, psi_max, ks_d_max, ks_p_min);
	assert_true(alarmed <= runs / 100);
	drift_ref_free(&r);
}

static void test_config(void **state)
{
	(void)state;
	struct drift_ref r;
	hand_ref(&r);
	struct drift_monitor m;
	struct drift_config c;
#define CHECK(stmt, sub)                                                      \
	do {                                                                  \
		c = drift_config_default();                                   \
		stmt;                                                         \
		assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_INVALID); \
		assert_err_has(sub);                                          \
	} while (0)
	CHECK(c.window = 0, "window");
	CHECK(c.points = 0, "points");
	CHECK(c.min_inputs = c.window + 1, "min_inputs");
	CHECK(c.psi_warn = 0.3, "psi_warn");
	CHECK(c.ks_alpha = 1, "ks_alpha");
#undef CHECK
	/* min_inputs: not ready, so no level, until that many inputs */
	c = drift_config_default();
	c.window = 4;
	c.min_inputs = 2;
	c.points = 1000;	/* clipped to the 100-point grid */
	assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_OK);
	assert_int_equal(m.P, 100);
	float x[100];
	for (int i = 0; i < 100; i++)
		x[i] = 100;	/* everything in the top bin */
	struct drift_report rep;
	assert_status(drift_observe(&m, x), PNO_STATUS_OK);
	drift_evaluate(&m, &rep, NULL, 0);
	assert_false(rep.ready);
	assert_int_equal(rep.level, DRIFT_OK);
	assert_true(rep.psi_max > 1);
	assert_status(drift_observe(&m, x), PNO_STATUS_OK);
	drift_evaluate(&m, &rep, NULL, 0);
	assert_true(rep.ready);
	assert_int_equal(rep.level, DRIFT_CRITICAL);
	assert_string_equal(drift_level_name(rep.level), "critical");
	/* the window slides: 4 matching inputs push the bad ones out */
	for (int i = 0; i < 100; i++)
		x[i] = (float)(i / 10 + 0.5);
	for (int k = 0; k < 4; k++)
		assert_status(drift_observe(&m, x), PNO_STATUS_OK);
	drift_evaluate(&m, &rep, NULL, 0);
	assert_int_equal(rep.inputs, 4);
	tu_assert_close(rep.psi_max, 0, 1e-15);
	drift_monitor_free(&m);
	drift_monitor_free(&m);
	drift_ref_free(&r);
}

static void test_alloc_fail(void **state)
{
	(void)state;
	enum { N = 3, X = 8, Y = 8 };
	static float x[N * X * Y];
	pno_rng_normal(x, N * X * Y, 4, 0, 0);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	struct drift_ref r, b;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(drift_ref_compute(&r, x, N, 1, 2, X, Y, 10), live0))
			break;
		assert_null(r.mean);
	}
	long live1 = tu_alloc_live();
	char *text = NULL;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(drift_ref_to_json(&r, &text), live1))
			break;
		assert_null(text);
	}
	long live2 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(drift_ref_from_json(&b, text), live2))
			break;
		assert_null(b.mean);
	}
	printf("from_json: %ld allocation points\n", k - 1);
	long live3 = tu_alloc_live();
	struct drift_monitor m;
	struct drift_config c = drift_config_default();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(drift_monitor_init(&m, &b, &c), live3))
			break;
	}
	/* observing allocates nothing */
	tu_alloc_reset(1);
	assert_status(drift_observe(&m, x), PNO_STATUS_OK);
	struct drift_report rep;
	drift_evaluate(&m, &rep, NULL, 1);
	assert_int_equal(tu_alloc_count(), 0);
	tu_alloc_reset(0);
	drift_monitor_free(&m);
	drift_ref_free(&b);
	pno_free(text);
	drift_ref_free(&r);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_psi_hand),
		cmocka_unit_test(test_ks),
		cmocka_unit_test(test_reference),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_alerts),
		cmocka_unit_test(test_alloc_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
