/* conformal: point scores and fitted scales against hand-computed values,
 * argument errors, the coverage guarantees on synthetic over- and
 * under-confident predictors (independent and correlated noise, exact
 * Gaussian quantiles and sample quantiles), the stretch of a prediction,
 * the JSON form, the scale stored in a model file, and allocation-failure
 * loops. */
#include "testutil.h"
#include "pno/conformal.h"
#include "pno/fno.h"
#include "pno/io.h"
#include "pno/model.h"
#include "pno/predict.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- 1. scores ---- */

static void test_scores(void **state)
{
	(void)state;
	/* y above, below, at the mean; zero-width needed side; zero-width
	 * other side (finite); at the mean with both sides zero-width */
	const float y[] = {2, -1, 0.5f, 3, -2, 1, 1.75f, 0.25f, 2};
	const float m[] = {0, 0, 0.5f, 1, 1, 1, 1, 1, 1};
	const float lo[] = {-1, -0.5f, 0, 0, 1, 1, 0.5f, 0.5f, 1};
	const float hi[] = {4, 1, 1, 1, 3, 1, 1.25f, 2, 3};
	const float want[] = {0.5f, 2, 0, INFINITY, INFINITY, 0, 3, 1.5f, 0.5f};
	float s[9];
	assert_status(pno_conformal_scores(y, m, lo, hi, 9, s), PNO_STATUS_OK);
	for (int i = 0; i < 9; i++)
		if (!(s[i] == want[i]))
			fail_msg("point %d: score %g, want %g", i, (double)s[i],
				 (double)want[i]);
	/* non-finite input of each kind, naming the point */
	float bad[4][9];
	const float *src[4] = {y, m, lo, hi};
	const char *what[4] = {"truth", "mean", "quantile", "quantile"};
	const float inj[4] = {NAN, INFINITY, -INFINITY, NAN};
	for (int a = 0; a < 4; a++) {
		for (int b = 0; b < 4; b++)
			memcpy(bad[b], src[b], sizeof bad[b]);
		bad[a][6] = inj[a];
		assert_status(pno_conformal_scores(bad[0], bad[1], bad[2],
						   bad[3], 9, s),
			      PNO_STATUS_NONFINITE);
		assert_err_has("point 6");
		assert_err_has(what[a]);
	}
	assert_status(pno_conformal_scores(NULL, m, lo, hi, 9, s),
		      PNO_STATUS_INVALID);
	assert_status(pno_conformal_scores(y, m, lo, hi, 9, NULL),
		      PNO_STATUS_INVALID);
}

/* ---- 2. fit on hand-built scores ---- */

/* brute-force coverage of scores s (n x P) at scale c: point fraction and
 * fraction of functions with at least need points covered */
static void brute_cov(const float *s, int n, int P, double c, int need,
		      double *pts, double *fns)
{
	int in = 0, ok = 0;
	for (int j = 0; j < n; j++) {
		int k = 0;
		for (int i = 0; i < P; i++)
			k += s[j * P + i] <= c;
		in += k;
		ok += k >= need;
	}
	*pts = (double)in / (n * P);
	*fns = (double)ok / n;
}

static void test_fit_marginal_exact(void **state)
{
	(void)state;
	/* n = 19, P = 3, alpha = 0.2: k = ceil(20 * 0.8 * 3) = 48 of 57; the
	 * scores are (i + 1) / 8, i = 0..56, scattered by i -> 7 i mod 57, so
	 * the 48th smallest is 6 */
	enum { N = 19, P = 3 };
	float s[N * P], keep[N * P];
	for (int i = 0; i < N * P; i++)
		s[(7 * i) % (N * P)] = (float)(i + 1) / 8;
	memcpy(keep, s, sizeof s);
	struct pno_conformal c;
	assert_status(pno_conformal_fit(&c, s, N, P, PNO_CONFORMAL_MARGINAL,
					0.2, 0.5), PNO_STATUS_OK);
	assert_int_equal(c.present, 1);
	assert_int_equal(c.mode, PNO_CONFORMAL_MARGINAL);
	assert_true(c.scale == 6.0);
	assert_true(c.alpha == 0.2);
	assert_true(c.delta == 0);	/* not used by the marginal mode */
	assert_int_equal(c.n_cal, N);
	assert_int_equal(c.n_points, N * P);
	/* the fill-ins: 8 scores <= 1, 48 <= 6 */
	tu_assert_close(c.cov_before, 8.0 / 57, 1e-15);
	tu_assert_close(c.cov_after, 48.0 / 57, 1e-15);
	double pts, fns;
	brute_cov(keep, N, P, 1, 3, &pts, &fns);	/* ceil(0.8 * 3) = 3 */
	tu_assert_close(c.fw_before, fns, 1e-15);
	brute_cov(keep, N, P, 6, 3, &pts, &fns);
	tu_assert_close(c.fw_after, fns, 1e-15);

	/* ties: all scores 2 but the two largest -> c = 2 (k = 48 < 56) */
	for (int i = 0; i < N * P; i++)
		s[i] = i < 2 ? 9 : 2;
	assert_status(pno_conformal_fit(&c, s, N, P, PNO_CONFORMAL_MARGINAL,
					0.2, 0), PNO_STATUS_OK);
	assert_true(c.scale == 2.0);
	/* k = n P exactly (n = 9, alpha = 0.1: k = ceil(10 * 0.9 * 2) = 18):
	 * the largest score */
	for (int i = 0; i < 18; i++)
		s[i] = (float)((5 * i) % 18) + 0.5f;
	assert_status(pno_conformal_fit(&c, s, 9, 2, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_OK);
	assert_true(c.scale == 17.5);
	/* the same at P = 64: k = ceil(10 * 0.9 * 64) = 576 = n P */
	float big[9 * 64];
	for (int i = 0; i < 9 * 64; i++)
		big[i] = (float)((7 * i) % 576);
	assert_status(pno_conformal_fit(&c, big, 9, 64, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_OK);
	assert_true(c.scale == 575);
	/* n = 99, P = 64, alpha = 0.1: k = ceil(100 * 0.9 * 64) = 5760 */
	float *h = malloc(99 * 64 * sizeof *h);
	for (int i = 0; i < 99 * 64; i++)
		h[i] = (float)((37 * i) % (99 * 64));
	assert_status(pno_conformal_fit(&c, h, 99, 64, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_OK);
	assert_true(c.scale == 5759);
	free(h);
}

static void test_fit_functionwise_exact(void **state)
{
	(void)state;
	/* n = 9, P = 10, alpha = 0.3, delta = 0.2: per function the
	 * ceil(0.7 * 10) = 7th smallest point score; then the
	 * ceil(10 * 0.8) = 8th smallest of those. Function j's scores are
	 * o_j + {0, .25, ..., 2.25} (shuffled), o_j = 4 j mod 9, so
	 * r_j = o_j + 1.5 and the 8th smallest r is 7 + 1.5. */
	enum { N = 9, P = 10 };
	float s[N * P], keep[N * P];
	for (int j = 0; j < N; j++)
		for (int i = 0; i < P; i++)
			s[j * P + (3 * i + j) % P] = (float)((4 * j) % 9) +
						     0.25f * (float)i;
	memcpy(keep, s, sizeof s);
	struct pno_conformal c;
	assert_status(pno_conformal_fit(&c, s, N, P, PNO_CONFORMAL_FUNCTIONWISE,
					0.3, 0.2), PNO_STATUS_OK);
	assert_int_equal(c.mode, PNO_CONFORMAL_FUNCTIONWISE);
	assert_true(c.scale == 8.5);
	assert_true(c.delta == 0.2);
	double pts, fns;
	brute_cov(keep, N, P, 1, 7, &pts, &fns);
	tu_assert_close(c.cov_before, pts, 1e-15);
	tu_assert_close(c.fw_before, fns, 1e-15);
	brute_cov(keep, N, P, 8.5, 7, &pts, &fns);
	tu_assert_close(c.cov_after, pts, 1e-15);
	tu_assert_close(c.fw_after, fns, 1e-15);
	tu_assert_close(c.fw_after, 8.0 / 9, 1e-15);
	/* alpha small enough that every point is needed: r_j = max */
	assert_status(pno_conformal_fit(&c, s, N, P, PNO_CONFORMAL_FUNCTIONWISE,
					0.01, 0.2), PNO_STATUS_OK);
	assert_true(c.scale == 7 + 2.25);
	/* alpha large: ceil(0.05 * 10) = 1, the smallest point score */
	assert_status(pno_conformal_fit(&c, s, N, P, PNO_CONFORMAL_FUNCTIONWISE,
					0.95, 0.2), PNO_STATUS_OK);
	assert_true(c.scale == 7);
}

static void test_fit_errors(void **state)
{
	(void)state;
	float s[64 * 20];
	struct pno_conformal c;
	for (int i = 0; i < 64 * 20; i++)
		s[i] = 1 + 0.001f * (float)i;
	/* too few functions: the message gives the n needed, and that n works */
	struct {
		enum pno_conformal_mode mode;
		double alpha, delta;
		int need;
		const char *msg;
	} few[] = {
		{PNO_CONFORMAL_MARGINAL, 0.1, 0, 9, "at least 9 needed"},
		{PNO_CONFORMAL_MARGINAL, 0.05, 0, 19, "at least 19 needed"},
		{PNO_CONFORMAL_MARGINAL, 0.3, 0, 3, "at least 3 needed"},
		{PNO_CONFORMAL_MARGINAL, 0.25, 0, 3, "at least 3 needed"},
		{PNO_CONFORMAL_FUNCTIONWISE, 0.1, 0.1, 9, "at least 9 needed"},
		{PNO_CONFORMAL_FUNCTIONWISE, 0.5, 0.3, 3, "at least 3 needed"},
		{PNO_CONFORMAL_FUNCTIONWISE, 0.1, 0.05, 19, "at least 19 needed"},
	};
	for (size_t t = 0; t < sizeof few / sizeof few[0]; t++) {
		assert_status(pno_conformal_fit(&c, s, few[t].need - 1, 64,
						few[t].mode, few[t].alpha,
						few[t].delta), PNO_STATUS_RANGE);
		assert_err_has(few[t].msg);
		assert_int_equal(c.present, 0);
		assert_status(pno_conformal_fit(&c, s, few[t].need, 64,
						few[t].mode, few[t].alpha,
						few[t].delta), PNO_STATUS_OK);
	}
	/* infinite scale: the k-th score is +inf */
	for (int i = 0; i < 40; i++)
		s[i] = i < 5 ? 1 : INFINITY;
	assert_status(pno_conformal_fit(&c, s, 10, 4, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_RANGE);
	assert_err_has("no spread");
	assert_status(pno_conformal_fit(&c, s, 10, 4, PNO_CONFORMAL_FUNCTIONWISE,
					0.1, 0.1), PNO_STATUS_RANGE);
	assert_err_has("no spread");
	/* a few infinite scores above the k-th are fine: alpha 0.2 gives
	 * k = ceil(11 * 0.8 * 4) = 36 of 40, finite values 2..39 */
	for (int i = 0; i < 40; i++)
		s[i] = i < 2 ? INFINITY : (float)i;
	assert_status(pno_conformal_fit(&c, s, 10, 4, PNO_CONFORMAL_MARGINAL,
					0.2, 0), PNO_STATUS_OK);
	assert_true(c.scale == 37);
	/* alpha, delta outside (0, 1) */
	const double badv[] = {0, 1, -0.1, 1.5, NAN, INFINITY};
	for (int i = 0; i < 6; i++) {
		assert_status(pno_conformal_fit(&c, s, 10, 4,
						PNO_CONFORMAL_MARGINAL, badv[i],
						0.1), PNO_STATUS_INVALID);
		assert_err_has("alpha");
		assert_status(pno_conformal_fit(&c, s, 10, 4,
						PNO_CONFORMAL_FUNCTIONWISE, 0.1,
						badv[i]), PNO_STATUS_INVALID);
		assert_err_has("delta");
		/* the marginal mode ignores delta */
		assert_status(pno_conformal_fit(&c, s, 10, 4,
						PNO_CONFORMAL_MARGINAL, 0.2,
						badv[i]), PNO_STATUS_OK);
	}
	/* NaN and negative scores */
	s[17] = NAN;
	assert_status(pno_conformal_fit(&c, s, 10, 4, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_INVALID);
	assert_err_has("score 17");
	s[17] = -0.5f;
	assert_status(pno_conformal_fit(&c, s, 10, 4, PNO_CONFORMAL_FUNCTIONWISE,
					0.1, 0.1), PNO_STATUS_INVALID);
	assert_err_has("score 17");
	s[17] = 17;
	assert_status(pno_conformal_fit(&c, NULL, 10, 4, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_INVALID);
	assert_status(pno_conformal_fit(&c, s, 0, 4, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_INVALID);
	assert_status(pno_conformal_fit(&c, s, 10, 0, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_INVALID);
	assert_status(pno_conformal_fit(&c, s, 10, 4,
					(enum pno_conformal_mode)7, 0.1, 0.1),
		      PNO_STATUS_INVALID);
	assert_err_has("mode");
}

/* ---- 3. coverage on synthetic predictors ---- */

#define SP 64		/* points per function */
#define NCAL 100
#define NTEST 100
#define NSPLIT 200
#define SAMPLES 100
static const double Z90 = 1.6448536269514722;	/* Phi^-1(0.95) */

struct setup {
	const char *name;
	double sb, se;	/* std of the per-function offset and the point noise */
	double ratio;	/* predicted std / true std */
	int S;		/* 0: exact Gaussian quantiles; else S samples */
	int modes;	/* bit 0: run in the marginal test, bit 1: function-wise */
};

/* The model's view of n functions as one prediction over n * SP points:
 * mean, std, levels {0.05, 0.95} and their quantiles, samples if S. */
struct synth {
	struct pno_prediction p;
	float *y;
	float *col;	/* (S) */
	float *b;	/* (n) */
	float *zt;	/* (n SP, S) */
};

static void synth_alloc(struct synth *d, int n, int S)
{
	size_t N = (size_t)n * SP;
	memset(d, 0, sizeof *d);
	d->p.S = S, d->p.C = 1, d->p.P = (int)N, d->p.nq = 2;
	d->p.mean = malloc(N * sizeof(float));
	d->p.std = malloc(N * sizeof(float));
	d->p.levels = malloc(2 * sizeof(float));
	d->p.quantiles = malloc(2 * N * sizeof(float));
	d->p.samples = S ? malloc((size_t)S * N * sizeof(float)) : NULL;
	d->y = malloc(N * sizeof(float));
	d->col = malloc((size_t)(S ? S : 1) * sizeof(float));
	d->b = malloc((size_t)n * sizeof(float));
	d->zt = S ? malloc((size_t)S * N * sizeof(float)) : NULL;
	d->p.levels[0] = 0.05f, d->p.levels[1] = 0.95f;
}

static void synth_free(struct synth *d)
{
	free(d->p.mean), free(d->p.std), free(d->p.levels);
	free(d->p.quantiles), free(d->p.samples);
	free(d->y), free(d->col), free(d->b), free(d->zt);
}

static int cmp_f(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Type 7 quantile at level q (as src/predict.c) of x[0..S), given lo[]
 * and hi[], its K smallest and K largest values in order (hi[0] the
 * largest). */
#define K 8
static float type7(const float *lo, const float *hi, int S, double q)
{
	double h = (S - 1) * q;
	int a = (int)floor(h), b = a + 1 < S ? a + 1 : a;
	assert_true(b < K || S - 1 - a < K);
	float xa = a < K ? lo[a] : hi[S - 1 - a];
	float xb = b < K ? lo[b] : hi[S - 1 - b];
	return (float)(xa + (h - a) * (xb - xa));
}

/* the K smallest (sign 1) or largest (sign -1) of x[0..S) into out, in
 * order: the quantiles wanted sit near the ends, and a full sort of every
 * point's samples would dominate the test's time */
static void extremes(float *out, const float *x, int S, float sign)
{
	int n = 0;
	for (int i = 0; i < S; i++) {
		float v = sign * x[i];
		if (n == K && v >= out[K - 1])
			continue;
		int j = n < K ? n++ : K - 1;
		for (; j > 0 && out[j - 1] > v; j--)
			out[j] = out[j - 1];
		out[j] = v;
	}
	for (int i = 0; i < K; i++)
		out[i] *= sign;
}

/* Mean, std and type-7 quantiles of point k from its S samples col
 * (reordered). */
static void summarize_point(struct synth *d, size_t k, float *col)
{
	struct pno_prediction *p = &d->p;
	const size_t N = (size_t)p->P;
	double s = 0, s2 = 0;
	for (int i = 0; i < p->S; i++)
		s += col[i];
	double mean = s / p->S;
	for (int i = 0; i < p->S; i++)
		s2 += (col[i] - mean) * (col[i] - mean);
	p->mean[k] = (float)mean;
	p->std[k] = (float)sqrt(s2 / (p->S - 1));
	float lo[K], hi[K];
	extremes(lo, col, p->S, 1);
	extremes(hi, col, p->S, -1);
	if (k < 3) {
		/* the shortcut against a full sort */
		qsort(col, (size_t)p->S, sizeof(float), cmp_f);
		for (int i = 0; i < K; i++)
			assert_true(lo[i] == col[i] &&
				    hi[i] == col[p->S - 1 - i]);
	}
	for (int j = 0; j < 2; j++)
		p->quantiles[j * N + k] = type7(lo, hi, p->S, p->levels[j]);
}

/* The same for every point from d->p.samples. */
static void summarize(struct synth *d)
{
	const size_t N = (size_t)d->p.P;
	for (size_t k = 0; k < N; k++) {
		for (int i = 0; i < d->p.S; i++)
			d->col[i] = d->p.samples[(size_t)i * N + k];
		summarize_point(d, k, d->col);
	}
}

/* n functions y = mu + sb b_j + se e_ji under (seed, part) and the
 * model's prediction of them: mean mu, std ratio * sqrt(sb^2 + se^2),
 * as exact quantiles or from S samples. */
static void synth_draw(struct synth *d, const struct setup *u, int n,
		       uint64_t seed, int part)
{
	const size_t N = (size_t)n * SP;
	const float s = (float)(u->ratio * sqrt(u->sb * u->sb + u->se * u->se));
	pno_rng_normal(d->y, N, seed, 3 * (uint64_t)part, 0);
	pno_rng_normal(d->b, (size_t)n, seed, 3 * (uint64_t)part + 1, 0);
	for (int j = 0; j < n; j++)
		for (int i = 0; i < SP; i++) {
			float mu = (float)sin(2 * M_PI * i / SP);
			size_t k = (size_t)j * SP + i;
			d->y[k] = mu + (float)u->sb * d->b[j] +
				  (float)u->se * d->y[k];
			d->p.mean[k] = mu;
		}
	if (!u->S) {
		for (size_t k = 0; k < N; k++) {
			d->p.std[k] = s;
			d->p.quantiles[k] = d->p.mean[k] - (float)Z90 * s;
			d->p.quantiles[N + k] = d->p.mean[k] + (float)Z90 * s;
		}
		return;
	}
	/* drawn point-major (N, S) so each point's samples are contiguous,
	 * then stored (S, N) as a prediction holds them */
	pno_rng_normal(d->zt, (size_t)u->S * N, seed, 3 * (uint64_t)part + 2,
		       0);
	for (size_t k = 0; k < N; k++) {
		float *col = d->zt + k * (size_t)u->S;
		for (int i = 0; i < u->S; i++) {
			col[i] = d->p.mean[k] + s * col[i];
			d->p.samples[(size_t)i * N + k] = col[i];
		}
		summarize_point(d, k, col);
	}
}

/* Fraction of the points inside [q_0.05, q_0.95], and fraction of the
 * functions with at least need of their SP points inside. */
static void synth_cover(const struct synth *d, int n, int need, double *pts,
			double *fns)
{
	const size_t N = (size_t)n * SP;
	int in = 0, ok = 0;
	for (int j = 0; j < n; j++) {
		int k = 0;
		for (int i = 0; i < SP; i++) {
			size_t t = (size_t)j * SP + i;
			k += d->y[t] >= d->p.quantiles[t] &&
			     d->y[t] <= d->p.quantiles[N + t];
		}
		in += k;
		ok += k >= need;
	}
	*pts = (double)in / (double)N;
	*fns = (double)ok / n;
}

struct run {
	double cov[NSPLIT], cov0[NSPLIT], scale[NSPLIT], fw[NSPLIT];
};

static double mean_of(const double *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	return s / n;
}

/* standard error of the mean of v */
static double se_of(const double *v, int n)
{
	double m = mean_of(v, n), s2 = 0;
	for (int i = 0; i < n; i++)
		s2 += (v[i] - m) * (v[i] - m);
	return sqrt(s2 / (n - 1) / n);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* NSPLIT calibration/test splits of setup u in `mode`: fit on NCAL fresh
 * functions, apply to NTEST fresh ones; the test's point coverage before
 * and after, the scale, and the fraction of test functions with at least
 * ceil(0.9 SP) = 58 points covered after. */
static void run_splits(struct run *r, const struct setup *u,
		       enum pno_conformal_mode mode, uint64_t seed0)
{
	struct synth cal, test;
	const size_t N = (size_t)NCAL * SP;
	float *scores = malloc(N * sizeof *scores);
	synth_alloc(&cal, NCAL, u->S);
	synth_alloc(&test, NTEST, u->S);
	for (int t = 0; t < NSPLIT; t++) {
		struct pno_conformal c;
		double fw0;
		uint64_t seed = seed0 + (uint64_t)t;
		synth_draw(&cal, u, NCAL, seed, 0);
		assert_status(pno_conformal_scores(cal.y, cal.p.mean,
						   cal.p.quantiles,
						   cal.p.quantiles + N, N,
						   scores), PNO_STATUS_OK);
		assert_status(pno_conformal_fit(&c, scores, NCAL, SP, mode, 0.1,
						0.1), PNO_STATUS_OK);
		r->scale[t] = c.scale;
		synth_draw(&test, u, NTEST, seed, 1);
		synth_cover(&test, NTEST, 58, &r->cov0[t], &fw0);
		pno_conformal_apply(&c, &test.p);
		synth_cover(&test, NTEST, 58, &r->cov[t], &r->fw[t]);
		if (t == 0 && u->S) {
			/* the stretched quantiles are the quantiles of the
			 * stretched samples: an increasing affine map commutes
			 * with order statistics and their interpolation; only
			 * float rounding (a few ulp of the values) differs */
			const size_t M = (size_t)NTEST * SP;
			float *q = malloc(2 * M * sizeof *q);
			memcpy(q, test.p.quantiles, 2 * M * sizeof *q);
			summarize(&test);
			for (size_t k = 0; k < 2 * M; k++)
				if (!(fabs(q[k] - test.p.quantiles[k]) <=
				      2e-6 * (1 + fabs(q[k]))))
					fail_msg("%s: stretched quantile %zu "
						 "%.9g, of stretched samples "
						 "%.9g", u->name, k, (double)q[k],
						 (double)test.p.quantiles[k]);
			free(q);
		}
	}
	synth_free(&cal);
	synth_free(&test);
	free(scores);
}

static const struct setup setups[] = {
	{"indep, over-confident (std x 0.5)", 0, 1, 0.5, 0, 3},
	{"indep, under-confident (std x 2)", 0, 1, 2, 0, 3},
	{"correlated, over-confident", 0.8, 0.6, 0.5, 0, 3},
	{"correlated, under-confident", 0.8, 0.6, 2, 0, 3},
	{"correlated, over-confident, 100 samples", 0.8, 0.6, 0.5, SAMPLES, 1},
};
#define NSETUPS (int)(sizeof setups / sizeof setups[0])

/* Marginal mode, alpha = 0.1.
 *
 * What the method guarantees is E[test coverage] >= 0.9, the expectation
 * over calibration and test draws (docs/eval/conformal.md). Checked: the
 * mean over the 200 independent splits is >= 0.9 - 3 SE (SE its standard
 * error from the splits; a one-sided 3-sigma band, false alarm ~0.1%).
 * With independent point noise every point is exchangeable with every
 * other, so E[coverage] = k / (n P + 1) exactly (continuous scores,
 * k = ceil(101 * 0.9 * 64) = 5818): checked two-sided within 3.5 SE, which
 * an off-by-one k would not move but a wrong formula (k from n P, or per
 * function) would. For every setup the mean must also stay below the
 * upper bound 1 - alpha + 1/(n + 1) + 1/((n + 1) P) = 0.91005 (+ 3 SE),
 * which a too conservative k would break.
 *
 * The issue asked for more: coverage >= 0.9 in at least 95% of the
 * splits. That is a training-conditional statement which the marginal
 * guarantee does not make, so it is printed, not asserted. Measured (these
 * seeds): independent noise 0.980 (over-confident) and 0.965
 * (under-confident) of the splits; correlated noise 0.655, 0.680, and
 * 0.665 with 100 samples, while the mean coverage is 0.908, 0.909, 0.907.
 * With a per-function offset the split-to-split spread (~0.02) dwarfs the
 * 0.008 margin above 0.9: the requirement fails there, as a property of
 * the method, not of the code (docs/eval/conformal.md). */
static void test_coverage_marginal(void **state)
{
	(void)state;
	const int big = !getenv("PNO_SANITIZED");
	struct run *r = malloc(sizeof *r);
	for (int u = 0; u < NSETUPS; u++) {
		if (!(setups[u].modes & 1) || (setups[u].S && !big))
			continue;	/* ~3 s in Release, much more under ASan */
		run_splits(r, &setups[u], PNO_CONFORMAL_MARGINAL,
			   0x5eed0000u + 1000u * (uint64_t)u);
		int ok = 0;
		for (int t = 0; t < NSPLIT; t++)
			ok += r->cov[t] >= 0.9;
		double m = mean_of(r->cov, NSPLIT), se = se_of(r->cov, NSPLIT);
		double sorted[NSPLIT];
		memcpy(sorted, r->cov, sizeof sorted);
		qsort(sorted, NSPLIT, sizeof *sorted, cmp_d);
		print_message("marginal %-42s c %.4f  coverage before %.4f "
			      "after %.4f (SE %.4f; min %.4f, 5%% %.4f, "
			      "median %.4f)  splits >= 0.9: %.3f\n",
			      setups[u].name, mean_of(r->scale, NSPLIT),
			      mean_of(r->cov0, NSPLIT), m, se, sorted[0],
			      sorted[NSPLIT / 20], sorted[NSPLIT / 2],
			      (double)ok / NSPLIT);
		if (!(m >= 0.9 - 3 * se))
			fail_msg("%s: mean coverage %.4f below 0.9 - 3 SE "
				 "(SE %.4f)", setups[u].name, m, se);
		/* the matching upper bound for distinct scores:
		 * 1 - alpha + 1/(n + 1) + 1/((n + 1) P) */
		double up = 0.9 + 1.0 / 101 + 1.0 / (101 * SP);
		if (!(m <= up + 3 * se))
			fail_msg("%s: mean coverage %.4f above the bound %.5f "
				 "+ 3 SE (SE %.4f)", setups[u].name, m, up, se);
		/* the per-split requirement, for predictors whose
		 * points are exchangeable (asserted); with correlated noise
		 * it is printed above and the function-wise mode below is
		 * the one that meets it */
		if (setups[u].sb == 0 && !(ok >= 0.95 * NSPLIT))
			fail_msg("%s: coverage >= 0.9 in only %d of %d splits",
				 setups[u].name, ok, NSPLIT);
		if (setups[u].sb == 0) {
			double want = 5818.0 / 6401;
			if (!(fabs(m - want) <= 3.5 * se))
				fail_msg("%s: mean coverage %.5f, exact "
					 "expectation %.5f, SE %.5f",
					 setups[u].name, m, want, se);
		}
		if (setups[u].ratio < 1) {
			assert_true(mean_of(r->cov0, NSPLIT) < 0.7);
			for (int t = 0; t < NSPLIT; t++)
				assert_true(r->scale[t] > 1);
		} else {
			assert_true(mean_of(r->cov0, NSPLIT) > 0.99);
			for (int t = 0; t < NSPLIT; t++)
				assert_true(r->scale[t] < 1);
		}
	}
	free(r);
}

/* Function-wise mode, alpha = delta = 0.1: a test function is covered
 * when at least ceil(0.9 * 64) = 58 of its points are. The function scores
 * r_j are continuous and the functions i.i.d., so the chance a test
 * function is covered is exactly k / (n + 1) = ceil(101 * 0.9) / 101 =
 * 91 / 101 = 0.90099 (marginal over calibration and test), with or
 * without correlation inside a function. The mean over 200 splits must be
 * within 3.5 SE of it (which also catches a k off by one: 92/101 is
 * +0.0099, ~3 SE). */
static void test_coverage_functionwise(void **state)
{
	(void)state;
	const int big = !getenv("PNO_SANITIZED");
	struct run *r = malloc(sizeof *r);
	for (int u = 0; u < NSETUPS; u++) {
		if (!(setups[u].modes & 2) || (setups[u].S && !big))
			continue;
		run_splits(r, &setups[u], PNO_CONFORMAL_FUNCTIONWISE,
			   0x7eed0000u + 1000u * (uint64_t)u);
		double m = mean_of(r->fw, NSPLIT), se = se_of(r->fw, NSPLIT);
		double sorted[NSPLIT];
		memcpy(sorted, r->fw, sizeof sorted);
		qsort(sorted, NSPLIT, sizeof *sorted, cmp_d);
		int ok = 0;
		for (int t = 0; t < NSPLIT; t++)
			ok += r->fw[t] >= 0.9;
		print_message("function-wise %-42s c %.4f  functions covered: "
			      "mean %.4f (SE %.4f) min %.2f 5%% %.2f 25%% %.2f "
			      "median %.2f 75%% %.2f max %.2f; splits >= 0.9: "
			      "%.3f; point coverage %.4f\n", setups[u].name,
			      mean_of(r->scale, NSPLIT), m, se, sorted[0],
			      sorted[NSPLIT / 20], sorted[NSPLIT / 4],
			      sorted[NSPLIT / 2], sorted[3 * NSPLIT / 4],
			      sorted[NSPLIT - 1], (double)ok / NSPLIT,
			      mean_of(r->cov, NSPLIT));
		/* per split, the point coverage: a function-wise fit covers
		 * >= 90% of most functions' points, so the test set's points
		 * are covered >= 90% in at least 95% of the splits even with
		 * correlated noise (the requirement, which the
		 * marginal mode meets only for exchangeable points) */
		int okp = 0;
		for (int t = 0; t < NSPLIT; t++)
			okp += r->cov[t] >= 0.9;
		print_message("function-wise %-42s point coverage >= 0.9 in "
			      "%.3f of the splits\n", setups[u].name,
			      (double)okp / NSPLIT);
		if (!(okp >= 0.95 * NSPLIT))
			fail_msg("%s: point coverage >= 0.9 in only %d of %d "
				 "splits", setups[u].name, okp, NSPLIT);
		if (!(fabs(m - 91.0 / 101) <= 3.5 * se))
			fail_msg("%s: mean fraction of functions covered %.5f, "
				 "exact expectation %.5f, SE %.5f",
				 setups[u].name, m, 91.0 / 101, se);
	}
	free(r);
}

/* ---- 4. apply ---- */

static void test_apply(void **state)
{
	(void)state;
	float samples[3 * 2] = {0, 3, 2, -2, 1, -7};	/* (S = 3, C = 1, P = 2) */
	float mean[2] = {1, -2}, std[2] = {0.5f, 4};
	float ale[2] = {1, 2}, epi[2] = {0.25f, 8};
	float levels[2] = {0.1f, 0.9f};
	float quant[2 * 2] = {0.5f, -6, 1.5f, 2};
	struct pno_prediction p = {.S = 3, .C = 1, .P = 2, .samples = samples,
				   .mean = mean, .std = std, .aleatoric = ale,
				   .epistemic = epi, .nq = 2, .levels = levels,
				   .quantiles = quant};
	struct pno_conformal c = {.present = 1, .scale = 1.5};
	pno_conformal_apply(&c, &p);
	/* m + 1.5 (x - m), all exact in float */
	const float ws[6] = {-0.5f, 5.5f, 2.5f, -2, 1, -9.5f};
	const float wq[4] = {0.25f, -8, 1.75f, 4};
	assert_memory_equal(samples, ws, sizeof ws);
	assert_memory_equal(quant, wq, sizeof wq);
	assert_true(mean[0] == 1 && mean[1] == -2);
	assert_true(std[0] == 0.75f && std[1] == 6);
	assert_true(ale[0] == 2.25f && ale[1] == 4.5f);
	assert_true(epi[0] == 0.5625f && epi[1] == 18);
	assert_true(levels[0] == 0.1f && levels[1] == 0.9f);

	/* c = 1 is the identity to the bit, even where m + (x - m) would
	 * round (|x| << |m|) */
	float s2[4] = {1, -3e-8f, 0.1f, 7}, m2[2] = {1e8f, 0.3f};
	float q2[2] = {12345.678f, 1e-9f}, sd2[2] = {0.1f, 0.2f};
	float keep[4], keepq[2];
	memcpy(keep, s2, sizeof keep);
	memcpy(keepq, q2, sizeof keepq);
	struct pno_prediction p2 = {.S = 2, .C = 1, .P = 2, .samples = s2,
				    .mean = m2, .std = sd2, .nq = 1,
				    .levels = levels, .quantiles = q2};
	c.scale = 1;
	pno_conformal_apply(&c, &p2);
	assert_memory_equal(s2, keep, sizeof keep);
	assert_memory_equal(q2, keepq, sizeof keepq);
	assert_true(sd2[0] == 0.1f && sd2[1] == 0.2f);

	/* not present: no-op, whatever the scale says */
	c.present = 0, c.scale = 3;
	pno_conformal_apply(&c, &p);
	assert_memory_equal(samples, ws, sizeof ws);
	assert_memory_equal(quant, wq, sizeof wq);
	assert_true(std[1] == 6);
	pno_conformal_apply(NULL, &p);
	c.present = 1;
	pno_conformal_apply(&c, NULL);
	assert_memory_equal(samples, ws, sizeof ws);
}

/* ---- 5. JSON ---- */

static void same_conformal(const struct pno_conformal *a,
			   const struct pno_conformal *b)
{
	assert_int_equal(a->present, b->present);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->n_cal, b->n_cal);
	assert_true(a->n_points == b->n_points);
	const double *x[] = {&a->alpha, &a->delta, &a->scale, &a->cov_before,
			     &a->cov_after, &a->fw_before, &a->fw_after};
	const double *y[] = {&b->alpha, &b->delta, &b->scale, &b->cov_before,
			     &b->cov_after, &b->fw_before, &b->fw_after};
	for (int i = 0; i < 7; i++)
		if (memcmp(x[i], y[i], sizeof(double)))
			fail_msg("field %d: %.17g != %.17g", i, *x[i], *y[i]);
}

/* JSON text of the fields, one replaced (value NULL: left out) */
static void json_with(char *buf, size_t size, const char *key,
		      const char *value)
{
	static const char *const kv[][2] = {
		{"mode", "\"function-wise\""}, {"alpha", "0.1"},
		{"delta", "0.2"}, {"scale", "1.5"}, {"n_cal", "100"},
		{"n_points", "6400"}, {"cov_before", "0.5"},
		{"cov_after", "0.9"}, {"fw_before", "0.25"},
		{"fw_after", "0.95"},
	};
	size_t o = (size_t)snprintf(buf, size, "{");
	int first = 1;
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
		const char *v = kv[i][1];
		if (key && !strcmp(key, kv[i][0])) {
			if (!value)
				continue;
			v = value;
		}
		o += (size_t)snprintf(buf + o, size - o, "%s\"%s\": %s",
				      first ? "" : ", ", kv[i][0], v);
		first = 0;
	}
	snprintf(buf + o, size - o, "}");
}

static void test_json(void **state)
{
	(void)state;
	struct pno_conformal a = {
		.present = 1, .mode = PNO_CONFORMAL_FUNCTIONWISE,
		.alpha = 0.1, .delta = 1.0 / 3, .scale = 1.2345678901234567,
		.n_cal = 1234, .n_points = 80875904LL * 1000,
		.cov_before = 2.0 / 3, .cov_after = 0.90000000000000013,
		.fw_before = 1e-300, .fw_after = 0.99999999999999989,
	}, b;
	char *t = pno_conformal_to_json(&a);
	assert_non_null(t);
	assert_status(pno_conformal_from_json(&b, t), PNO_STATUS_OK);
	same_conformal(&a, &b);
	pno_free(t);
	/* a fitted marginal one (delta 0, scale from a float) */
	float s[20 * 8];
	pno_rng_uniform(s, 160, 3, 0, 0);
	assert_status(pno_conformal_fit(&a, s, 20, 8, PNO_CONFORMAL_MARGINAL,
					0.1, 0), PNO_STATUS_OK);
	t = pno_conformal_to_json(&a);
	assert_non_null(t);
	assert_status(pno_conformal_from_json(&b, t), PNO_STATUS_OK);
	same_conformal(&a, &b);
	pno_free(t);
	/* any scale fit can give survives the trip (a float's range) */
	a.scale = FLT_MAX;
	t = pno_conformal_to_json(&a);
	assert_status(pno_conformal_from_json(&b, t), PNO_STATUS_OK);
	same_conformal(&a, &b);
	pno_free(t);

	char buf[512];
	json_with(buf, sizeof buf, NULL, NULL);
	assert_status(pno_conformal_from_json(&b, buf), PNO_STATUS_OK);
	assert_int_equal(b.mode, PNO_CONFORMAL_FUNCTIONWISE);
	assert_true(b.scale == 1.5 && b.n_points == 6400);
	/* each field missing or bad -> FORMAT naming it (and not another) */
	struct {
		const char *key, *value;
	} bad[] = {
		{"mode", NULL}, {"mode", "\"both\""}, {"mode", "1"},
		{"alpha", NULL}, {"alpha", "0"}, {"alpha", "1"},
		{"alpha", "-0.1"}, {"alpha", "1.5"}, {"alpha", "\"0.1\""},
		{"delta", NULL}, {"delta", "0"}, {"delta", "1"},
		{"delta", "1.5"}, {"delta", "-1"},
		{"scale", NULL}, {"scale", "0"}, {"scale", "-2"},
		{"scale", "1e39"}, {"scale", "null"},
		{"n_cal", NULL}, {"n_cal", "0"}, {"n_cal", "2147483648"},
		{"n_cal", "1.5"}, {"n_points", NULL}, {"n_points", "0"},
		{"n_points", "-5"}, {"n_points", "\"6400\""},
		{"cov_before", NULL}, {"cov_before", "1.01"},
		{"cov_after", NULL}, {"cov_after", "-0.1"},
		{"fw_before", NULL}, {"fw_before", "2"},
		{"fw_after", NULL}, {"fw_after", "true"},
	};
	const char *keys[] = {"\"mode\"", "\"alpha\"", "\"delta\"",
			      "\"scale\"", "\"n_cal\"", "\"n_points\"",
			      "\"cov_before\"", "\"cov_after\"",
			      "\"fw_before\"", "\"fw_after\""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_with(buf, sizeof buf, bad[i].key, bad[i].value);
		enum pno_status st = pno_conformal_from_json(&b, buf);
		if (st != PNO_STATUS_FORMAT)
			fail_msg("%s = %s: status %s, want FORMAT", bad[i].key,
				 bad[i].value ? bad[i].value : "(missing)",
				 pno_status_name(st));
		assert_int_equal(b.present, 0);
		char want[32];
		snprintf(want, sizeof want, "\"%s\"", bad[i].key);
		for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
			if ((strstr(pno_last_error(), keys[k]) != NULL) !=
			    !strcmp(keys[k], want))
				fail_msg("%s = %s: message \"%s\" should name "
					 "%s only", bad[i].key,
					 bad[i].value ? bad[i].value : "(missing)",
					 pno_last_error(), want);
	}
	/* the marginal mode's delta is 0 */
	json_with(buf, sizeof buf, "mode", "\"marginal\"");
	assert_status(pno_conformal_from_json(&b, buf), PNO_STATUS_OK);
	char *p = strstr(buf, "0.2");
	memcpy(p, "0.0", 3);
	assert_status(pno_conformal_from_json(&b, buf), PNO_STATUS_OK);
	assert_true(b.delta == 0);
	/* not JSON, not an object, NULL */
	assert_status(pno_conformal_from_json(&b, "{\"mode\": "),
		      PNO_STATUS_FORMAT);
	assert_status(pno_conformal_from_json(&b, "[1, 2]"), PNO_STATUS_FORMAT);
	assert_status(pno_conformal_from_json(&b, NULL), PNO_STATUS_FORMAT);
}

/* ---- 6. model file ---- */

static void small_model(const char *path)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1, .width = 6,
				 .modes1 = 3, .modes2 = 3, .layers = 2,
				 .proj_hidden = 8, .heads = 2};
	assert_status(pno_fno_init(&m, &a, 16, 1, 4, 21), PNO_STATUS_OK);
	m.norm.out_std[0] = 0.7f;
	assert_status(pno_fno_save(&m, path, "{\"provenance\": \"test\"}"),
		      PNO_STATUS_OK);
	pno_fno_free(&m);
}

static unsigned char *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(*n ? *n : 1);
	assert_int_equal(fread(b, 1, *n, f), *n);
	fclose(f);
	return b;
}

static void same_tensors(const struct pno_safetensors *a,
			 const struct pno_safetensors *b)
{
	assert_int_equal(a->n, b->n);
	for (int i = 0; i < a->n; i++) {
		assert_string_equal(a->t[i].name, b->t[i].name);
		assert_int_equal(a->t[i].ndim, b->t[i].ndim);
		assert_memory_equal(a->t[i].shape, b->t[i].shape,
				    sizeof a->t[i].shape);
		assert_memory_equal(a->t[i].data, b->t[i].data,
				    a->t[i].count * sizeof(float));
	}
}

/* free a json_dumps string with whatever allocator jansson is using */
static void json_text_free(char *t)
{
	json_malloc_t a;
	json_free_t f;
	json_get_alloc_funcs(&a, &f);
	f(t);
}

/* Metadata b is a plus (extra != NULL) the one key "conformal" = extra. */
static void same_meta_but(const char *a, const char *b, const char *extra)
{
	json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
	assert_non_null(ja);
	assert_non_null(jb);
	assert_null(json_object_get(ja, "conformal"));
	assert_int_equal(json_object_size(jb),
			 json_object_size(ja) + (extra != NULL));
	const char *k;
	json_t *v;
	json_object_foreach(ja, k, v)
		assert_true(json_equal(v, json_object_get(jb, k)));
	if (extra)
		assert_string_equal(json_string_value(json_object_get(jb,
					"conformal")), extra);
	json_decref(ja);
	json_decref(jb);
}

static void test_model_file(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("conf_model.safetensors");
	unlink(path);
	small_model(path);
	struct pno_safetensors f0, f1;
	assert_status(pno_safetensors_read(&f0, path), PNO_STATUS_OK);

	struct pno_conformal c = {.present = 1,
				  .mode = PNO_CONFORMAL_FUNCTIONWISE,
				  .alpha = 0.1, .delta = 0.05,
				  .scale = 1.7320508075688772, .n_cal = 57,
				  .n_points = 57 * 16, .cov_before = 0.71,
				  .cov_after = 0.93, .fw_before = 0.4,
				  .fw_after = 0.96};
	assert_status(pno_model_file_set_conformal(path, &c), PNO_STATUS_OK);
	assert_status(pno_safetensors_read(&f1, path), PNO_STATUS_OK);
	same_tensors(&f0, &f1);
	char *text = pno_conformal_to_json(&c);
	same_meta_but(f0.metadata_json, f1.metadata_json, text);
	pno_free(text);
	pno_safetensors_free(&f1);
	/* setting it again replaces it */
	c.scale = 2.5;
	assert_status(pno_model_file_set_conformal(path, &c), PNO_STATUS_OK);

	struct pno_model m;
	assert_status(pno_model_load(&m, path, 16, 1, 4), PNO_STATUS_OK);
	assert_int_equal(m.conformal.present, 1);
	assert_int_equal(m.use_conformal, 1);
	same_conformal(&c, &m.conformal);
	assert_int_equal(m.stochastic, 1);
	assert_int_equal(m.has_variance, 1);

	/* with and without: the same draws, differing exactly by the stretch */
	float x[16], q[3] = {0.05f, 0.5f, 0.95f};
	pno_rng_normal(x, 16, 8, 0, 0);
	struct pno_prediction p1, p0;
	assert_status(pno_model_predict(&m, x, 12, 77, q, 3, &p1),
		      PNO_STATUS_OK);
	m.use_conformal = 0;
	assert_status(pno_model_predict(&m, x, 12, 77, q, 3, &p0),
		      PNO_STATUS_OK);
	const float f = 2.5f;
	const size_t N = 16;
	assert_memory_equal(p1.mean, p0.mean, N * sizeof(float));
	for (size_t k = 0; k < N; k++) {
		/* m + f (x - m) in float: three roundings (two if the
		 * compiler fuses the multiply-add), each at most 2^-24 of
		 * its result, so within 2^-22 (|m| + f |x - m|) of the exact
		 * stretch computed here in double */
		const float *x0[2] = {p0.samples + k, p0.quantiles + k};
		const float *x1[2] = {p1.samples + k, p1.quantiles + k};
		for (int a = 0; a < 2; a++)
			for (int i = 0; i < (a ? 3 : 12); i++) {
				double m0 = p0.mean[k], x = x0[a][i * N];
				double want = m0 + f * (x - m0);
				double tol = 0x1p-22 * (fabs(m0) +
							f * fabs(x - m0));
				if (!(fabs(x1[a][i * N] - want) <= tol))
					fail_msg("%s %d point %zu: %.9g, want "
						 "%.9g", a ? "quantile" : "sample",
						 i, k, (double)x1[a][i * N], want);
			}
		assert_true(p1.std[k] == p0.std[k] * f);
		assert_true(p1.aleatoric[k] == p0.aleatoric[k] * (f * f));
		assert_true(p1.epistemic[k] == p0.epistemic[k] * (f * f));
		assert_true(p0.std[k] > 0);
	}
	pno_prediction_free(&p0);
	pno_prediction_free(&p1);
	pno_model_free(&m);

	/* NULL removes it: metadata and tensors as first saved */
	assert_status(pno_model_file_set_conformal(path, NULL), PNO_STATUS_OK);
	assert_status(pno_safetensors_read(&f1, path), PNO_STATUS_OK);
	same_tensors(&f0, &f1);
	same_meta_but(f0.metadata_json, f1.metadata_json, NULL);
	pno_safetensors_free(&f1);
	assert_status(pno_model_load(&m, path, 16, 1, 4), PNO_STATUS_OK);
	assert_int_equal(m.conformal.present, 0);
	pno_model_free(&m);
	/* so does present = 0, and removing when absent is fine */
	assert_status(pno_model_file_set_conformal(path, &c), PNO_STATUS_OK);
	c.present = 0;
	assert_status(pno_model_file_set_conformal(path, &c), PNO_STATUS_OK);
	assert_status(pno_model_file_set_conformal(path, &c), PNO_STATUS_OK);
	assert_status(pno_model_load(&m, path, 16, 1, 4), PNO_STATUS_OK);
	assert_int_equal(m.conformal.present, 0);
	pno_model_free(&m);
	c.present = 1;

	/* a corrupt entry: FORMAT naming the entry and the field */
	struct pno_tensor_view v[64];
	assert_true(f0.n <= 64);
	for (int i = 0; i < f0.n; i++) {
		v[i].name = f0.t[i].name;
		v[i].ndim = f0.t[i].ndim;
		memcpy(v[i].shape, f0.t[i].shape, sizeof v[i].shape);
		v[i].data = f0.t[i].data;
	}
	json_t *md = json_loads(f0.metadata_json, 0, NULL);
	json_object_set_new(md, "conformal", json_string(
		"{\"mode\": \"marginal\", \"alpha\": 1.5, \"delta\": 0, "
		"\"scale\": 2, \"n_cal\": 10, \"n_points\": 100, "
		"\"cov_before\": 0.5, \"cov_after\": 0.9, \"fw_before\": 0.5, "
		"\"fw_after\": 0.9}"));
	char *meta = json_dumps(md, JSON_COMPACT);
	assert_status(pno_safetensors_write(path, v, f0.n, meta), PNO_STATUS_OK);
	json_text_free(meta);
	assert_status(pno_model_load(&m, path, 16, 1, 4), PNO_STATUS_FORMAT);
	assert_err_has("conformal");
	assert_err_has("\"alpha\"");
	assert_null(m.meta);
	pno_model_free(&m);
	/* not JSON at all */
	json_object_set_new(md, "conformal", json_string("scale=2"));
	meta = json_dumps(md, JSON_COMPACT);
	assert_status(pno_safetensors_write(path, v, f0.n, meta), PNO_STATUS_OK);
	json_text_free(meta);
	json_decref(md);
	assert_status(pno_model_load(&m, path, 16, 1, 4), PNO_STATUS_FORMAT);
	assert_err_has("conformal");
	/* set_conformal repairs it */
	assert_status(pno_model_file_set_conformal(path, &c), PNO_STATUS_OK);
	assert_status(pno_model_load(&m, path, 16, 1, 4), PNO_STATUS_OK);
	same_conformal(&c, &m.conformal);
	pno_model_free(&m);

	/* a safetensors file that is not a pno model: refused, left alone */
	const char *other = tu_tmp_path("conf_other.safetensors");
	assert_status(pno_safetensors_write(other, v, f0.n,
					    "{\"format\": \"pt\"}"),
		      PNO_STATUS_OK);
	size_t n0, n1;
	unsigned char *b0 = read_all(other, &n0);
	assert_status(pno_model_load(&m, other, 16, 1, 4), PNO_STATUS_FORMAT);
	assert_status(pno_model_file_set_conformal(other, &c),
		      PNO_STATUS_FORMAT);
	unsigned char *b1 = read_all(other, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(b0, b1, n0);
	free(b0), free(b1);
	unlink(other);
	/* not a safetensors file; no file */
	FILE *g = fopen(other, "wb");
	fputs("hello, not a model", g);
	fclose(g);
	assert_int_not_equal(pno_model_load(&m, other, 16, 1, 4),
			     PNO_STATUS_OK);
	assert_int_not_equal(pno_model_file_set_conformal(other, &c),
			     PNO_STATUS_OK);
	unlink(other);
	assert_status(pno_model_load(&m, other, 16, 1, 4),
		      PNO_STATUS_NOTFOUND);
	assert_status(pno_model_file_set_conformal(other, &c),
		      PNO_STATUS_NOTFOUND);

	pno_safetensors_free(&f0);
	unlink(path);
}

/* ---- 7. allocation failures ---- */

static void test_alloc_set_conformal(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("conf_alloc.safetensors");
	unlink(path);
	small_model(path);
	size_t n0, n1;
	unsigned char *b0 = read_all(path, &n0);
	struct pno_conformal c = {.present = 1, .mode = PNO_CONFORMAL_MARGINAL,
				  .alpha = 0.1, .scale = 1.25, .n_cal = 20,
				  .n_points = 320, .cov_before = 0.5,
				  .cov_after = 0.9, .fw_before = 0.2,
				  .fw_after = 0.8};
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_model_file_set_conformal(path, &c),
				  live0))
			break;
		unsigned char *b1 = read_all(path, &n1);
		assert_int_equal(n0, n1);
		assert_memory_equal(b0, b1, n0);
		free(b1);
		assert_int_equal(tu_temps_left(path), 0);
	}
	tu_alloc_uninstall();
	assert_true(k > 3);
	free(b0);
	struct pno_model m;
	assert_status(pno_model_load(&m, path, 0, 0, 1), PNO_STATUS_OK);
	same_conformal(&c, &m.conformal);
	pno_model_free(&m);
	unlink(path);
}

static void test_alloc_fit(void **state)
{
	(void)state;
	float s[30 * 16];
	pno_rng_uniform(s, 30 * 16, 4, 0, 0);
	for (int mode = 0; mode < 2; mode++) {
		struct pno_conformal c, want;
		assert_status(pno_conformal_fit(&want, s, 30, 16,
						(enum pno_conformal_mode)mode,
						0.1, 0.1), PNO_STATUS_OK);
		tu_alloc_install();
		long live0 = tu_alloc_live(), k;
		for (k = 1;; k++) {
			tu_alloc_reset(k);
			if (tu_alloc_step(pno_conformal_fit(&c, s, 30, 16,
					(enum pno_conformal_mode)mode, 0.1,
					0.1), live0))
				break;
			assert_int_equal(c.present, 0);
		}
		tu_alloc_uninstall();
		assert_true(k > 1);
		same_conformal(&want, &c);
	}
	/* and the JSON text */
	struct pno_conformal c = {.present = 1, .alpha = 0.1, .scale = 2,
				  .n_cal = 9, .n_points = 9};
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		char *t = pno_conformal_to_json(&c);
		if (t) {
			assert_false(tu_alloc_failed());
			pno_free(t);
			break;
		}
		assert_true(tu_alloc_failed());
		assert_int_equal(tu_alloc_live(), live0);
	}
	tu_alloc_uninstall();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_fit_marginal_exact),
		cmocka_unit_test(test_fit_functionwise_exact),
		cmocka_unit_test(test_fit_errors),
		cmocka_unit_test(test_coverage_marginal),
		cmocka_unit_test(test_coverage_functionwise),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_model_file),
		cmocka_unit_test(test_alloc_set_conformal),
		cmocka_unit_test(test_alloc_fit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
