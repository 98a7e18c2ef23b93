/* Autoregressive rollouts: every method's draws reproduced by hand through
 * pno_model_predict (the contract of pno/rollout.h, bit for bit, the
 * spread of step 1 fed back into step 2), reproducibility and independence
 * of S, every per-step metric against a brute-force computation from the
 * sample trajectories, the threshold time, bad inputs and allocation
 * failures. Models are small random-weight networks written to files and
 * loaded through the generic interface, as pno rollout does. */
#include "testutil.h"
#include "pno/model.h"
#include "pno/rollout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { X = 32, T = 8 };

static struct pno_fno_arch arch(int heads, float p_proj, float p_fourier)
{
	return (struct pno_fno_arch){.dims = 1, .in_ch = 1, .out_ch = 1,
				     .width = 8, .modes1 = 6, .modes2 = 1,
				     .layers = 2, .proj_hidden = 16,
				     .heads = heads, .p_proj = p_proj,
				     .p_fourier = p_fourier};
}

/* Write a random-weight model of `method` and load it through the generic
 * interface with batch bound Bmax. */
static void make_model(struct pno_model *m, const char *method, int Bmax)
{
	const char *path = tu_tmp_path("rollout_model.safetensors");
	struct pno_fno_arch a = arch(0, 0, 0);
	if (!strcmp(method, "pno-r"))
		a.heads = 2;
	else if (!strcmp(method, "pno-d"))
		a.p_proj = 0.2f, a.p_fourier = 0.2f;
	else if (!strcmp(method, "mc-dropout"))
		a.p_proj = 0.2f, a.p_hidden = 0.2f;
	if (!strcmp(method, "vfno")) {
		struct pno_vfno v = {0};
		struct pno_vfno_opts vo;
		pno_vfno_opts_default(&vo);
		assert_status(pno_vfno_init(&v, &a, X, 1, 4, 3, &vo),
			      PNO_STATUS_OK);
		assert_status(pno_vfno_save(&v, path, NULL), PNO_STATUS_OK);
		pno_vfno_free(&v);
	} else if (!strcmp(method, "ensemble")) {
		struct pno_ensemble e = {0};
		a.heads = 2;
		assert_status(pno_ensemble_init(&e, 3, &a, X, 1, 4, 3),
			      PNO_STATUS_OK);
		assert_status(pno_ensemble_save(&e, path, NULL), PNO_STATUS_OK);
		pno_ensemble_free(&e);
	} else if (!strcmp(method, "deeponet")) {
		struct pno_deeponet d = {0};
		struct pno_deeponet_arch da = {
			.dims = 1, .in_ch = 1, .out_ch = 1, .branch_width = 16,
			.branch_depth = 1, .trunk_width = 16, .trunk_depth = 1,
			.p = 8};
		assert_status(pno_deeponet_init(&d, &da, X, 1, 4, 3),
			      PNO_STATUS_OK);
		assert_status(pno_deeponet_save(&d, path, NULL), PNO_STATUS_OK);
		pno_deeponet_free(&d);
	} else {
		struct pno_fno f = {0};
		assert_status(pno_fno_init(&f, &a, X, 1, 4, 3), PNO_STATUS_OK);
		snprintf(f.method, sizeof f.method, "%s", method);
		assert_status(pno_fno_save(&f, path, NULL), PNO_STATUS_OK);
		pno_fno_free(&f);
	}
	assert_status(pno_model_load(m, path, X, 1, Bmax), PNO_STATUS_OK);
	unlink(path);
}

/* n trajectories (T, 1, X) of travelling waves with a mean offset (so
 * ||mean|| is far from 0) */
static float *waves(int n)
{
	float *u = malloc((size_t)n * T * X * sizeof *u);
	assert_non_null(u);
	for (int j = 0; j < n; j++)
		for (int t = 0; t < T; t++)
			for (int p = 0; p < X; p++)
				u[((size_t)j * T + t) * X + p] =
					1.0f + 0.5f * sinf(6.2831853f * (p + 2.0f * t +
									 3.0f * j) / X);
	return u;
}

static struct pno_rollout_opts opts(int K, int S, uint64_t seed)
{
	struct pno_rollout_opts o;
	pno_rollout_opts_default(&o);
	o.steps = K, o.samples = S, o.seed = seed;
	return o;
}

/* Roll out trajectory u as file index traj; samples (K + 1, S, X). */
static float *run(struct pno_model *m, const float *u, int traj,
		  struct pno_rollout_opts o)
{
	struct pno_rollout *r;
	float *x = malloc((size_t)(o.steps + 1) * o.samples * X * sizeof *x);
	assert_non_null(x);
	assert_status(pno_rollout_new(&r, m, 1, 1, X, 1, &o), PNO_STATUS_OK);
	assert_status(pno_rollout_add(r, u, T, traj, x, NULL, NULL),
		      PNO_STATUS_OK);
	pno_rollout_free(r);
	return x;
}

/* The draw the contract names for sample i at state `in`, by hand. */
static void by_hand(struct pno_model *m, float *out, const float *in,
		    uint64_t key, int i)
{
	struct pno_prediction p;
	int ens = !strcmp(m->method, "ensemble");
	int S = ens ? m->ens.K : 1, pick = ens ? i % m->ens.K : 0;
	m->use_conformal = 0;
	assert_status(pno_model_predict(m, in, S, key, NULL, 0, &p),
		      PNO_STATUS_OK);
	memcpy(out, p.samples + (size_t)pick * X, X * sizeof(float));
	pno_prediction_free(&p);
}

/* A deterministic model: S identical trajectories, each the model applied
 * K times by hand, bit for bit; the spread is exactly zero. */
static void test_deterministic(void **state)
{
	(void)state;
	static struct pno_model m;
	enum { K = 5, S = 3 };
	make_model(&m, "fno", 4);
	float *u = waves(1), *x = run(&m, u, 0, opts(K, S, 9));
	float cur[X], nxt[X];
	memcpy(cur, u, sizeof cur);
	for (int k = 1; k <= K; k++) {
		by_hand(&m, nxt, cur, 12345, 0);	/* seed irrelevant */
		for (int i = 0; i < S; i++)
			assert_memory_equal(x + ((size_t)k * S + i) * X, nxt,
					    sizeof nxt);
		memcpy(cur, nxt, sizeof cur);
	}
	/* the states moved: the test compares something */
	assert_true(tu_max_abs_diff(x + (size_t)K * S * X, u, X) > 1e-3);
	free(x);
	free(u);
	pno_model_free(&m);
}

/* Every method: sample i at step k is the contract's draw at sample i's
 * OWN state of step k - 1 (computed by hand from the rollout's step k - 1
 * states and the same keys), bit for bit, for steps 1 and 2. Stochastic
 * methods: the step-1 states differ between samples (a spread to feed
 * back), and step 2 drawn at sample 0's state instead of sample i's own
 * gives other values, so the check sees the feedback. */
static void test_methods_by_hand(void **state)
{
	(void)state;
	static const char *methods[] = {"fno",  "pno-r",    "pno-d",
					"mc-dropout", "vfno", "ensemble",
					"deeponet"};
	enum { K = 3, S = 5, TRAJ = 7 };
	const uint64_t seed = 42;
	float *u = waves(1);
	for (size_t j = 0; j < sizeof methods / sizeof *methods; j++) {
		static struct pno_model m;
		make_model(&m, methods[j], 2);	/* Bmax 2: several batches */
		float *x = run(&m, u, TRAJ, opts(K, S, seed));
		float y[X];
		for (int k = 1; k <= 2; k++)
			for (int i = 0; i < S; i++) {
				const float *own = x + ((size_t)(k - 1) * S + i) * X;
				uint64_t key = pno_rollout_key(seed, TRAJ, i, k);
				by_hand(&m, y, own, key, i);
				if (memcmp(y, x + ((size_t)k * S + i) * X, sizeof y))
					fail_msg("%s: sample %d step %d differs from "
						 "the draw by hand (max |diff| %g)",
						 methods[j], i, k,
						 tu_max_abs_diff(y, x + ((size_t)k * S + i) * X, X));
			}
		if (m.stochastic) {
			double spread = tu_max_abs_diff(x + (size_t)S * X,
							x + (size_t)(S + 1) * X, X);
			assert_true(spread > 1e-4);
			/* not fed back: sample 3's step-2 key at sample 0's
			 * step-1 state */
			by_hand(&m, y, x + (size_t)S * X,
				pno_rollout_key(seed, TRAJ, 3, 2), 3);
			assert_true(tu_max_abs_diff(y, x + ((size_t)2 * S + 3) * X,
						    X) > 1e-5);
		}
		free(x);
		pno_model_free(&m);
	}
	free(u);
}

/* Same seed, same bits; sample i independent of S and of the batch bound;
 * another seed or trajectory index, other draws. */
static void test_reproducible(void **state)
{
	(void)state;
	static struct pno_model m, m1;
	enum { K = 4 };
	make_model(&m, "pno-r", 4);
	make_model(&m1, "pno-r", 1);
	float *u = waves(1);
	float *a = run(&m, u, 2, opts(K, 3, 5)), *b = run(&m, u, 2, opts(K, 3, 5));
	float *c = run(&m1, u, 2, opts(K, 7, 5)), *d = run(&m, u, 2, opts(K, 3, 6));
	float *e = run(&m, u, 3, opts(K, 3, 5));
	assert_memory_equal(a, b, (size_t)(K + 1) * 3 * X * sizeof(float));
	for (int k = 0; k <= K; k++)
		for (int i = 0; i < 3; i++)
			assert_memory_equal(a + ((size_t)k * 3 + i) * X,
					    c + ((size_t)k * 7 + i) * X,
					    X * sizeof(float));
	assert_true(tu_max_abs_diff(a + (size_t)3 * X, d + (size_t)3 * X, X) > 1e-4);
	assert_true(tu_max_abs_diff(a + (size_t)3 * X, e + (size_t)3 * X, X) > 1e-4);
	free(a), free(b), free(c), free(d), free(e), free(u);
	pno_model_free(&m);
	pno_model_free(&m1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double q7(const double *v, int n, double q)
{
	double h = (n - 1) * q;
	int lo = (int)floor(h), hi = lo + 1 < n ? lo + 1 : lo;
	return v[lo] + (h - lo) * (v[hi] - v[lo]);
}

/* Brute force from the sample trajectories of each trajectory, in double:
 * the CRPS with the O(S^2) pair sum, coverage from sorted samples, the
 * error quantiles from all S X errors. Tolerance 1e-5 relative: the
 * library sums float states in double too, but its mean/std are rounded
 * to float before use. */
static void test_metrics_brute(void **state)
{
	(void)state;
	static struct pno_model m;
	enum { K = 4, S = 9, NT = 3 };
	make_model(&m, "pno-r", 4);
	float *u = waves(NT);
	struct pno_rollout_opts o = opts(K, S, 11);
	o.start = 2;
	struct pno_rollout *r;
	struct pno_rollout_result res;
	float *x = malloc((size_t)NT * (K + 1) * S * X * sizeof *x);
	struct pno_rollout_step per[NT][K];
	assert_non_null(x);
	assert_status(pno_rollout_new(&r, &m, 1, 1, X, 1, &o), PNO_STATUS_OK);
	for (int n = 0; n < NT; n++)
		assert_status(pno_rollout_add(r, u + (size_t)n * T * X, T, n,
					      x + (size_t)n * (K + 1) * S * X,
					      NULL, per[n]), PNO_STATUS_OK);
	assert_status(pno_rollout_finish(r, &res), PNO_STATUS_OK);
	assert_int_equal(res.n_traj, NT);
	for (int k = 1; k <= K; k++) {
		double rel = 0, crps = 0, cov = 0, sd = 0, unc = 0;
		double eq[PNO_ROLLOUT_NQ] = {0};
		static double err[S * X];
		for (int n = 0; n < NT; n++) {
			const float *xs = x + ((size_t)n * (K + 1) + k) * S * X;
			const float *y = u + ((size_t)n * T + o.start + k) * X;
			double e2 = 0, y2 = 0, m2 = 0, s2 = 0, col[S];
			for (int p = 0; p < X; p++) {
				double mu = 0, v = 0, a = 0, b = 0;
				for (int i = 0; i < S; i++)
					mu += xs[i * X + p];
				mu /= S;
				for (int i = 0; i < S; i++) {
					v += (xs[i * X + p] - mu) * (xs[i * X + p] - mu);
					a += fabs(xs[i * X + p] - (double)y[p]);
					for (int l = 0; l < S; l++)
						b += fabs((double)xs[i * X + p] - xs[l * X + p]);
					col[i] = xs[i * X + p];
					err[i * X + p] = fabs(xs[i * X + p] - (double)y[p]);
				}
				double sdp = sqrt(v / (S - 1));
				crps += a / S - b / (2.0 * S * (S - 1));
				qsort(col, S, sizeof *col, cmp_double);
				cov += y[p] >= q7(col, S, 0.05) && y[p] <= q7(col, S, 0.95);
				sd += sdp;
				e2 += (mu - y[p]) * (mu - y[p]);
				y2 += (double)y[p] * y[p];
				m2 += mu * mu;
				s2 += sdp * sdp;
			}
			rel += sqrt(e2 / y2);
			qsort(err, S * X, sizeof *err, cmp_double);
			for (int q = 0; q < PNO_ROLLOUT_NQ; q++)
				eq[q] += q7(err, S * X, PNO_ROLLOUT_ERR_Q[q]);
			unc += sqrt(s2 / m2);
			tu_assert_close(per[n][k - 1].rel_unc, sqrt(s2 / m2),
					    1e-5 * sqrt(s2 / m2));
			tu_assert_close(per[n][k - 1].rel_l2, sqrt(e2 / y2),
					    1e-5 * sqrt(e2 / y2));
		}
		const struct pno_rollout_step *ps = &res.step[k - 1];
		tu_assert_close(ps->rel_l2, rel / NT, 1e-5 * rel / NT);
		tu_assert_close(ps->crps, crps / (NT * X), 1e-5 * crps / (NT * X));
		tu_assert_close(ps->coverage90, cov / (NT * X), 1e-12);
		tu_assert_close(ps->mean_std, sd / (NT * X), 1e-5 * sd / (NT * X));
		tu_assert_close(ps->rel_unc, unc / NT, 1e-5 * unc / NT);
		for (int q = 0; q < PNO_ROLLOUT_NQ; q++)
			tu_assert_close(ps->err_q[q], eq[q] / NT, 1e-5 * eq[q] / NT);
		/* a real spread and a real error: the checks compare
		 * something */
		assert_true(ps->mean_std > 1e-3 && ps->crps > 1e-3);
	}
	pno_rollout_result_free(&res);
	pno_rollout_free(r);
	free(x);
	free(u);
	pno_model_free(&m);
}

/* The first step whose relative uncertainty exceeds the threshold: with
 * thresholds placed between the values of the measured curve. */
static void test_threshold(void **state)
{
	(void)state;
	static struct pno_model m;
	enum { K = 6, S = 8 };
	make_model(&m, "pno-r", 4);
	float *u = waves(1);
	struct pno_rollout_opts o = opts(K, S, 3);
	struct pno_rollout *r;
	struct pno_rollout_step per[K];
	int first;
	o.threshold = 1e30;
	assert_status(pno_rollout_new(&r, &m, 1, 1, X, 1, &o), PNO_STATUS_OK);
	assert_status(pno_rollout_add(r, u, T, 0, NULL, &first, per),
		      PNO_STATUS_OK);
	assert_int_equal(first, -1);
	pno_rollout_free(r);
	/* a threshold just below each step's value: the first step at or
	 * after which some value exceeds it */
	for (int k = 1; k <= K; k++) {
		double thr = per[k - 1].rel_unc * (1 - 1e-6);
		int want = -1;
		for (int j = 1; j <= K && want < 0; j++)
			if (per[j - 1].rel_unc > thr)
				want = j;
		assert_true(want >= 1 && want <= k);
		o.threshold = thr;
		struct pno_rollout_result res;
		assert_status(pno_rollout_new(&r, &m, 1, 1, X, 1, &o),
			      PNO_STATUS_OK);
		assert_status(pno_rollout_add(r, u, T, 0, NULL, &first, NULL),
			      PNO_STATUS_OK);
		assert_int_equal(first, want);
		assert_status(pno_rollout_finish(r, &res), PNO_STATUS_OK);
		assert_int_equal(res.mean_exceed, want);	/* one trajectory */
		assert_int_equal(res.n_exceeded, 1);
		tu_assert_close(res.mean_first_exceed, want, 0);
		pno_rollout_result_free(&res);
		pno_rollout_free(r);
	}
	free(u);
	pno_model_free(&m);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	static struct pno_model m;
	struct pno_rollout *r = NULL;
	struct pno_rollout_result res;
	make_model(&m, "pno-r", 4);
	float *u = waves(1);
	struct pno_rollout_opts o = opts(3, 4, 0);
	/* the state's shape: channels, dims, grid */
	assert_status(pno_rollout_new(&r, &m, 2, 1, X, 1, &o), PNO_STATUS_SHAPE);
	assert_err_has("1 -> 1");
	assert_status(pno_rollout_new(&r, &m, 1, 2, X, X, &o), PNO_STATUS_SHAPE);
	assert_status(pno_rollout_new(&r, &m, 1, 1, X / 2, 1, &o),
		      PNO_STATUS_SHAPE);
	assert_null(r);
	struct pno_rollout_opts bad[] = {opts(0, 4, 0), opts(3, 0, 0), opts(3, 4, 0),
					 opts(3, 4, 0), opts(3, 4, 0)};
	bad[2].threshold = 0;
	bad[3].threshold = NAN;
	bad[4].start = -1;
	static const char *what[] = {"--steps", "--samples", "--threshold",
				     "--threshold", "--start"};
	for (int i = 0; i < 5; i++) {
		assert_status(pno_rollout_new(&r, &m, 1, 1, X, 1, &bad[i]),
			      PNO_STATUS_INVALID);
		assert_err_has(what[i]);
	}
	assert_status(pno_rollout_new(NULL, &m, 1, 1, X, 1, &o), PNO_STATUS_INVALID);
	assert_status(pno_rollout_new(&r, NULL, 1, 1, X, 1, &o), PNO_STATUS_INVALID);
	/* past the trajectory's end: T = 8, t0 + K = 8 */
	o.start = 5;
	assert_status(pno_rollout_new(&r, &m, 1, 1, X, 1, &o), PNO_STATUS_OK);
	assert_status(pno_rollout_add(r, u, T, 0, NULL, NULL, NULL),
		      PNO_STATUS_RANGE);
	assert_err_has("last step 7");
	assert_status(pno_rollout_add(r, NULL, T, 0, NULL, NULL, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_rollout_finish(r, &res), PNO_STATUS_RANGE);
	pno_rollout_free(r);
	/* a diverging model: NONFINITE naming the step; nothing added */
	o.start = 0;
	m.fno.norm.out_std[0] = 1e30f;
	assert_status(pno_rollout_new(&r, &m, 1, 1, X, 1, &o), PNO_STATUS_OK);
	assert_status(pno_rollout_add(r, u, T, 0, NULL, NULL, NULL),
		      PNO_STATUS_NONFINITE);
	assert_err_has("diverged at step");
	assert_status(pno_rollout_finish(r, &res), PNO_STATUS_RANGE);
	pno_rollout_free(r);
	free(u);
	pno_model_free(&m);
}

/* Every allocation of new and finish fails in turn (NOMEM, nothing
 * leaked); add allocates nothing at all. */
static void test_alloc_failures(void **state)
{
	(void)state;
	static struct pno_model m;
	make_model(&m, "pno-d", 4);
	float *u = waves(1);
	struct pno_rollout_opts o = opts(3, 5, 1);
	struct pno_rollout *r = NULL;
	struct pno_rollout_result res;
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (int k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_rollout_new(&r, &m, 1, 1, X, 1, &o), live0))
			break;
		assert_null(r);
	}
	tu_alloc_reset(0);
	assert_status(pno_rollout_add(r, u, T, 0, NULL, NULL, NULL),
		      PNO_STATUS_OK);
	assert_int_equal(tu_alloc_count(), 0);
	long live1 = tu_alloc_live();
	for (int k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_rollout_finish(r, &res), live1))
			break;
		assert_null(res.step);
	}
	pno_rollout_result_free(&res);
	pno_rollout_free(r);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	free(u);
	pno_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_methods_by_hand),
		cmocka_unit_test(test_reproducible),
		cmocka_unit_test(test_metrics_brute),
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
