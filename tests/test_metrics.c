/* metrics: every metric against plain brute-force loops written here
 * (full sorts, O(S^2) CRPS, O(S^2 P) energy score, a naive DFT), the
 * Gaussian CRPS against quadrature, the fair CRPS's unbiasedness, exact
 * quantile coverage, calibration of self-consistent data (and the
 * miscalibration of too-narrow predictions), Parseval and single modes
 * for the spectrum, thread independence, bad input, allocation failures,
 * and the JSON output against docs/eval/metrics.schema.json. */
#include "testutil.h"
#include "pno/metrics.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* docs/eval/metrics.schema.json beside this file's tests/ */
static const char *schema_path(void)
{
	static char buf[1024];
	const char *t = strstr(__FILE__, "tests/test_metrics.c");
	int n = t ? (int)(t - __FILE__) : 0;
	snprintf(buf, sizeof buf, "%.*sdocs/eval/metrics.schema.json", n,
		 __FILE__);
	return buf;
}

/* One test function: truth and prediction. */
struct fn {
	int C, S;
	size_t P, N;
	float *y, *x, *m, *s, *gmu, *gsg, *ale, *epi;
};

static void fn_free(struct fn *f)
{
	free(f->y), free(f->x), free(f->m), free(f->s);
	free(f->gmu), free(f->gsg), free(f->ale), free(f->epi);
	memset(f, 0, sizeof *f);
}

static float *xalloc(size_t n)
{
	float *v = malloc((n ? n : 1) * sizeof *v);
	assert_non_null(v);
	return v;
}

/* Per point mu ~ 2 N(0,1), sd = 0.2 + 2 U; samples N(mu, sd^2); truth
 * N(mu, (wide sd)^2); mean and std the samples' (std with S - 1, 0 at
 * S = 1 unless std_given), Gaussian parameters (mu, sd), a variance split
 * 0.3 / 0.7 of sd^2. Stream `st` of seed 77. `grid`: samples rounded to
 * 1/4 so there are ties. */
static void fn_make(struct fn *f, int C, size_t P, int S, uint64_t st,
		    double wide, int grid)
{
	const size_t N = (size_t)C * P;
	f->C = C, f->S = S, f->P = P, f->N = N;
	f->y = xalloc(N), f->x = xalloc((size_t)S * N), f->m = xalloc(N);
	f->s = xalloc(N), f->gmu = xalloc(N), f->gsg = xalloc(N);
	f->ale = xalloc(N), f->epi = xalloc(N);
	float *u = xalloc(N);
	pno_rng_normal(f->gmu, N, 77, st, 0);
	pno_rng_uniform(u, N, 77, st, N);
	pno_rng_normal(f->y, N, 77, st, 2 * N);
	pno_rng_normal(f->x, (size_t)S * N, 77, st, 3 * N);
	for (size_t k = 0; k < N; k++) {
		f->gmu[k] *= 2;
		f->gsg[k] = 0.2f + 2 * u[k];
		f->y[k] = f->gmu[k] + (float)wide * f->gsg[k] * f->y[k];
		f->ale[k] = 0.3f * f->gsg[k] * f->gsg[k];
		f->epi[k] = 0.7f * f->gsg[k] * f->gsg[k];
	}
	for (int t = 0; t < S; t++)
		for (size_t k = 0; k < N; k++) {
			float *v = &f->x[(size_t)t * N + k];
			*v = f->gmu[k] + f->gsg[k] * *v;
			if (grid)
				*v = roundf(*v * 4) / 4;
		}
	for (size_t k = 0; k < N; k++) {
		double a = 0, b = 0;
		for (int t = 0; t < S; t++)
			a += f->x[(size_t)t * N + k];
		a /= S;
		for (int t = 0; t < S; t++) {
			double d = f->x[(size_t)t * N + k] - a;
			b += d * d;
		}
		f->m[k] = (float)a;
		f->s[k] = S > 1 ? (float)sqrt(b / (S - 1)) : f->gsg[k];
	}
	free(u);
}

static struct pno_metrics_pred fn_pred(const struct fn *f, int gauss,
				       int decomp)
{
	struct pno_metrics_pred p = {f->S, f->x, f->m, f->s, NULL, NULL,
				     NULL, NULL};
	if (gauss)
		p.gauss_mu = f->gmu, p.gauss_sigma = f->gsg;
	if (decomp)
		p.aleatoric = f->ale, p.epistemic = f->epi;
	return p;
}

/* ---------------------------------------------------------------- brute */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* type 7 on a fully sorted array, the position rounded to 1e-9 (the
 * definition in metrics.md) */
static double q7(const double *v, int S, double p)
{
	double h = nearbyint((S - 1) * p * 1e9) / 1e9;
	int lo = (int)floor(h), hi = lo + 1 < S ? lo + 1 : S - 1;
	return v[lo] + (h - lo) * (v[hi] - v[lo]);
}

static double ref_crps_gauss(double mu, double sg, double y)
{
	if (sg == 0)
		return fabs(y - mu);
	double z = (y - mu) / sg;
	return sg * (z * erf(z / sqrt(2.0)) + sqrt(2 / M_PI) * exp(-z * z / 2) -
		     1 / sqrt(M_PI));
}

/* The metrics of F functions (all with gauss and decomposition) by
 * plain loops, on a dims-D grid (X, Y). */
static void brute(struct pno_metrics *r, const struct fn *fs, int F, int dims,
		  int X, int Y)
{
	const int C = fs[0].C;
	const size_t P = fs[0].P, N = fs[0].N;
	double np = (double)F * N, se = 0, ae = 0, mx = 0, nll = 0, crps = 0;
	double crpsg = 0, energy = 0, sh = 0, s2c = 0, ale = 0, epi = 0;
	double rel = 0, rel2 = 0, cov[PNO_METRICS_NCOV] = {0};
	double wid[PNO_METRICS_NCOV] = {0}, is[PNO_METRICS_NIS] = {0};
	double cal[PNO_METRICS_NCAL] = {0};
	/* the floor from the first function's y (population std) */
	double ym = 0, yv = 0;
	for (size_t k = 0; k < N; k++)
		ym += fs[0].y[k];
	ym /= N;
	for (size_t k = 0; k < N; k++)
		yv += (fs[0].y[k] - ym) * (fs[0].y[k] - ym);
	double floor_ = 1e-6 * sqrt(yv / N);
	memset(r, 0, sizeof *r);
	for (int f = 0; f < F; f++) {
		const struct fn *g = &fs[f];
		const int S = g->S;
		double *v = malloc(S * sizeof *v), e2 = 0, y2 = 0;
		assert_non_null(v);
		for (size_t k = 0; k < N; k++) {
			double y = g->y[k], m = g->m[k], s = g->s[k];
			for (int t = 0; t < S; t++)
				v[t] = g->x[(size_t)t * N + k];
			qsort(v, S, sizeof *v, cmp_double);
			e2 += (m - y) * (m - y), y2 += y * y;
			ae += fabs(m - y), mx = fmax(mx, fabs(m - y));
			double sf = fmax(s, floor_);
			nll += 0.5 * log(2 * M_PI * sf * sf) +
			       (y - m) * (y - m) / (2 * sf * sf);
			double a = 0, b = 0;
			for (int i = 0; i < S; i++) {
				a += fabs(v[i] - y);
				for (int j = 0; j < S; j++)
					b += fabs(v[i] - v[j]);
			}
			crps += a / S - (S > 1 ? b / (2.0 * S * (S - 1)) : 0);
			crpsg += ref_crps_gauss(g->gmu[k], g->gsg[k], y);
			sh += s, s2c += s * s * (S + 1.0) / S;
			ale += g->ale[k], epi += g->epi[k];
			for (int j = 0; j < PNO_METRICS_NCOV; j++) {
				double L = PNO_METRICS_COVERAGE[j];
				double lo = q7(v, S, (1 - L) / 2), hi = q7(v, S, (1 + L) / 2);
				cov[j] += lo <= y && y <= hi;
				wid[j] += hi - lo;
			}
			for (int j = 0; j < PNO_METRICS_NIS; j++) {
				double al = PNO_METRICS_IS_ALPHA[j];
				double lo = q7(v, S, al / 2), hi = q7(v, S, 1 - al / 2);
				is[j] += (hi - lo) + (y < lo ? 2 / al * (lo - y) : 0) +
					 (y > hi ? 2 / al * (y - hi) : 0);
			}
			for (int j = 0; j < PNO_METRICS_NCAL; j++)
				cal[j] += y <= q7(v, S, PNO_METRICS_CAL[j]);
		}
		se += e2;
		rel += sqrt(e2 / y2), rel2 += e2 / y2;
		/* energy: sum over ordered pairs i != j */
		double ey = 0, exx = 0;
		for (int i = 0; i < S; i++) {
			double d = 0;
			for (size_t k = 0; k < N; k++) {
				double t = (double)g->x[(size_t)i * N + k] - g->y[k];
				d += t * t;
			}
			ey += sqrt(d / P);
			for (int j = 0; j < S; j++) {
				if (j == i)
					continue;
				double dd = 0;
				for (size_t k = 0; k < N; k++) {
					double t = (double)g->x[(size_t)i * N + k] -
						   g->x[(size_t)j * N + k];
					dd += t * t;
				}
				exx += sqrt(dd / P);
			}
		}
		energy += ey / S - (S > 1 ? exx / (2.0 * S * (S - 1)) : 0);
		/* spectrum: full naive DFT, signed wavenumbers */
		const int nx = dims == 2 ? X : 1, ny = dims == 2 ? Y : X;
		for (int c = 0; c < C; c++)
			for (int a = 0; a < nx; a++)
				for (int b = 0; b < ny; b++) {
					double er = 0, ei = 0, sr = 0, si = 0;
					for (int i = 0; i < nx; i++)
						for (int j = 0; j < ny; j++) {
							size_t k = (size_t)c * P + (size_t)i * ny + j;
							double ph = -2 * M_PI * ((double)a * i / nx +
										 (double)b * j / ny);
							double d = (double)g->m[k] - g->y[k];
							er += d * cos(ph), ei += d * sin(ph);
							sr += g->s[k] * cos(ph), si += g->s[k] * sin(ph);
						}
					int ka = a <= nx / 2 ? a : a - nx;
					int kb = b <= ny / 2 ? b : b - ny;
					int shl = (int)lround(sqrt((double)ka * ka + (double)kb * kb));
					if (shl > PNO_METRICS_MAX_SHELLS - 1)
						shl = PNO_METRICS_MAX_SHELLS - 1;
					r->n_shells = shl + 1 > r->n_shells ? shl + 1 : r->n_shells;
					r->err_spectrum[shl] += (er * er + ei * ei) / ((double)P * P) / F;
					r->std_spectrum[shl] += (sr * sr + si * si) / ((double)P * P) / F;
				}
		free(v);
	}
	/* correlation two-pass */
	double ms = sh / np, ma = ae / np, cs = 0, ca = 0, csa = 0;
	for (int f = 0; f < F; f++)
		for (size_t k = 0; k < N; k++) {
			double ds = fs[f].s[k] - ms;
			double da = fabs((double)fs[f].m[k] - fs[f].y[k]) - ma;
			cs += ds * ds, ca += da * da, csa += ds * da;
		}
	r->n_functions = F, r->n_points = (int64_t)np, r->S = fs[0].S;
	r->rel_l2 = rel / F;
	r->rel_l2_std = sqrt(fmax(rel2 / F - r->rel_l2 * r->rel_l2, 0));
	r->rmse = sqrt(se / np), r->mae = ae / np, r->max_err = mx;
	r->nll = nll / np, r->nll_std_floor = floor_;
	r->crps = crps / np, r->has_crps_gauss = 1, r->crps_gauss = crpsg / np;
	r->energy = energy / F;
	for (int j = 0; j < PNO_METRICS_NCOV; j++)
		r->coverage[j] = cov[j] / np, r->width[j] = wid[j] / np;
	for (int j = 0; j < PNO_METRICS_NIS; j++)
		r->interval_score[j] = is[j] / np;
	r->sharpness = sh / np;
	for (int j = 0; j < PNO_METRICS_NCAL; j++) {
		r->calib_obs[j] = cal[j] / np;
		r->calib_error += fabs(r->calib_obs[j] - PNO_METRICS_CAL[j]) /
				  PNO_METRICS_NCAL;
	}
	r->spread_skill = sqrt(s2c / se);
	r->std_err_corr = csa / sqrt(cs * ca);
	r->has_decomposition = 1;
	r->aleatoric = ale / np, r->epistemic = epi / np;
	r->total = (ale + epi) / np;
}

static double worst;	/* largest relative error seen by close() */

/* Relative agreement: both sides are double computations on the same
 * float inputs; only summation order differs (chunked sums, the sorted
 * CRPS identity vs O(S^2), FFT vs DFT), worth ~1e-14 here, so 1e-9. */
#define close_(got, want, scale) close_at((got), (want), (scale), #got, __LINE__)
static void close_at(double got, double want, double scale, const char *name,
		     int line)
{
	double tol = 1e-9 * fmax(fabs(want), scale);
	double e = fabs(got - want) / fmax(fabs(want), scale);
	worst = fmax(worst, e);
	if (!(fabs(got - want) <= tol))
		fail_msg("line %d: %s = %.12g, brute force %.12g", line, name,
			 got, want);
}

static void check_against(const struct pno_metrics *g, const struct pno_metrics *w)
{
	assert_int_equal(g->n_functions, w->n_functions);
	assert_int_equal(g->n_points, w->n_points);
	assert_int_equal(g->S, w->S);
	close_(g->rel_l2, w->rel_l2, 0);
	close_(g->rel_l2_std, w->rel_l2_std, 1e-3);
	close_(g->rmse, w->rmse, 0);
	close_(g->mae, w->mae, 0);
	close_(g->max_err, w->max_err, 0);
	close_(g->nll, w->nll, 1);
	close_(g->nll_std_floor, w->nll_std_floor, 0);
	close_(g->crps, w->crps, 0);
	assert_int_equal(g->has_crps_gauss, 1);
	close_(g->crps_gauss, w->crps_gauss, 0);
	close_(g->energy, w->energy, 0);
	for (int j = 0; j < PNO_METRICS_NCOV; j++) {
		close_(g->coverage[j], w->coverage[j], 1);
		close_(g->width[j], w->width[j], 1e-3);
	}
	for (int j = 0; j < PNO_METRICS_NIS; j++)
		close_(g->interval_score[j], w->interval_score[j], 0);
	close_(g->sharpness, w->sharpness, 0);
	for (int j = 0; j < PNO_METRICS_NCAL; j++)
		close_(g->calib_obs[j], w->calib_obs[j], 1);
	close_(g->calib_error, w->calib_error, 1);
	close_(g->spread_skill, w->spread_skill, 0);
	close_(g->std_err_corr, w->std_err_corr, 1);
	assert_int_equal(g->n_shells, w->n_shells);
	double te = 0, ts = 0;
	for (int k = 0; k < w->n_shells; k++)
		te += w->err_spectrum[k], ts += w->std_spectrum[k];
	for (int k = 0; k < w->n_shells; k++) {
		close_(g->err_spectrum[k], w->err_spectrum[k], te);
		close_(g->std_spectrum[k], w->std_spectrum[k], ts);
	}
	assert_int_equal(g->has_decomposition, 1);
	close_(g->aleatoric, w->aleatoric, 0);
	close_(g->epistemic, w->epistemic, 0);
	close_(g->total, w->total, 0);
}

/* 1. every metric against the brute force, on grids and sample counts
 * that reach each branch: S = 1 (CRPS and energy degenerate to |x - y|
 * and ||x - y||), S = 2, S > 16 (the quicksort, not only insertion),
 * ties, odd and even 1-D and 2-D grids, several chunks. */
static void test_brute_force(void **state)
{
	(void)state;
	const struct {
		int C, dims, X, Y, S, F, grid;
	} cs[] = {
		{2, 2, 6, 5, 7, 3, 0},
		{1, 1, 16, 1, 1, 2, 0},
		{3, 1, 9, 1, 2, 3, 0},
		{1, 2, 8, 8, 33, 2, 1},
		{2, 1, 700, 1, 40, 2, 1},	/* 1400 points: 3 chunks */
		{1, 2, 7, 9, 20, 2, 0},
	};
	for (size_t t = 0; t < sizeof cs / sizeof cs[0]; t++) {
		struct pno_metrics_acc *acc;
		struct pno_metrics got, want;
		struct fn fs[3];
		size_t P = (size_t)cs[t].X * cs[t].Y;
		assert_status(pno_metrics_new(&acc, cs[t].C, cs[t].dims, cs[t].X,
					      cs[t].Y, cs[t].S + 3),
			      PNO_STATUS_OK);
		for (int f = 0; f < cs[t].F; f++) {
			fn_make(&fs[f], cs[t].C, P, cs[t].S, 100 * t + f, 1.3,
				cs[t].grid);
			struct pno_metrics_pred p = fn_pred(&fs[f], 1, 1);
			assert_status(pno_metrics_add(acc, fs[f].y, &p),
				      PNO_STATUS_OK);
		}
		assert_status(pno_metrics_finish(acc, &got), PNO_STATUS_OK);
		brute(&want, fs, cs[t].F, cs[t].dims, cs[t].X, cs[t].Y);
		check_against(&got, &want);
		if (cs[t].S == 1) {
			/* the degenerate estimators by their own definition */
			double a = 0;
			for (size_t k = 0; k < fs[0].N; k++)
				a += fabs((double)fs[0].x[k] - fs[0].y[k]) +
				     fabs((double)fs[1].x[k] - fs[1].y[k]);
			close_(got.crps, a / (2.0 * fs[0].N), 0);
		}
		for (int f = 0; f < cs[t].F; f++)
			fn_free(&fs[f]);
		pno_metrics_free(acc);
	}
	print_message("brute force: largest relative difference %.2e\n", worst);
}

/* ---------------------------------------------------------- closed forms */

/* (F(t) - 1{t >= y})^2 on [a, b] (one side of y) by composite Simpson,
 * 20000 panels: error ~ (b - a) h^4 f'''' / 180 ~ 1e-15 sigma. */
static double simpson(double a, double b, double mu, double sg, int upper)
{
	if (b <= a)
		return 0;
	const int n = 20000;
	double h = (b - a) / n, s = 0;
	for (int k = 0; k <= n; k++) {
		double t = a + k * h, F = 0.5 * erfc(-(t - mu) / (sg * sqrt(2.0)));
		double v = upper ? (1 - F) * (1 - F) : F * F;
		s += v * (k == 0 || k == n ? 1 : k % 2 ? 4 : 2);
	}
	return s * h / 3;
}

/* One point (X = 1): crps_gauss at (mu, sg) and y; the metrics of a
 * prediction whose samples are all mu. */
static double lib_crps_gauss(float mu, float sg, float y)
{
	struct pno_metrics_acc *acc;
	struct pno_metrics r;
	float x = mu, s = sg;
	struct pno_metrics_pred p = {1, &x, &x, &s, &x, &s, NULL, NULL};
	assert_status(pno_metrics_new(&acc, 1, 1, 1, 1, 1), PNO_STATUS_OK);
	assert_status(pno_metrics_add(acc, &y, &p), PNO_STATUS_OK);
	assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
	pno_metrics_free(acc);
	assert_int_equal(r.has_crps_gauss, 1);
	assert_int_equal(r.n_shells, 1);
	return r.crps_gauss;
}

/* 2a. Gaussian CRPS closed form against quadrature of its definition
 * over [mu - 14 sg, mu + 14 sg] split at y (tails beyond ~1e-44):
 * 1e-9 sigma, measured below. sigma = 0 is the point mass |y - mu|. */
static void test_crps_gauss_quadrature(void **state)
{
	(void)state;
	const float c[][3] = {{0, 1, 0.3f},  {1.5f, 0.2f, 1.1f}, {-2, 3, 4},
			      {0.5f, 0.7f, -3}, {2, 1e-3f, 2.0005f}};
	double w = 0;
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		double mu = c[i][0], sg = c[i][1], y = c[i][2];
		double lo = fmin(mu - 14 * sg, y), hi = fmax(mu + 14 * sg, y);
		double q = simpson(lo, y, mu, sg, 0) + simpson(y, hi, mu, sg, 1);
		double got = lib_crps_gauss(c[i][0], c[i][1], c[i][2]);
		w = fmax(w, fabs(got - q) / sg);
		tu_assert_close(got, q, 1e-9 * sg);
	}
	tu_assert_close(lib_crps_gauss(1, 0, 3.5f), 2.5, 1e-15);
	print_message("crps_gauss vs quadrature: max error %.1e sigma\n", w);
}

/* 2b. The fair sample CRPS is unbiased: K functions of P points, every
 * point S draws of N(mu, sd^2) and the same truth y = mu + 0.6 sd, so
 * each point's estimate has expectation CRPS(N(mu, sd^2), y) exactly.
 * The function means (differences of the running results) give the
 * standard error of the overall mean; it must lie within 4 of them. */
static void test_crps_fair_unbiased(void **state)
{
	(void)state;
	enum { K = 40, P = 128, S = 200 };
	const double mu = 0.3, sd = 1.7, yv = mu + 0.6 * sd;
	struct pno_metrics_acc *acc;
	struct pno_metrics r;
	float *x = xalloc((size_t)S * P), y[P], m[P], s[P];
	double fm[K], prev = 0;
	assert_status(pno_metrics_new(&acc, 1, 1, P, 1, S), PNO_STATUS_OK);
	for (int i = 0; i < P; i++)
		y[i] = (float)yv, m[i] = (float)mu, s[i] = (float)sd;
	for (int k = 0; k < K; k++) {
		pno_rng_normal(x, (size_t)S * P, 5, k, 0);
		for (size_t i = 0; i < (size_t)S * P; i++)
			x[i] = (float)(mu + sd * x[i]);
		struct pno_metrics_pred p = {S, x, m, s, NULL, NULL, NULL, NULL};
		assert_status(pno_metrics_add(acc, y, &p), PNO_STATUS_OK);
		assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
		fm[k] = r.crps * (k + 1) - prev;
		prev = r.crps * (k + 1);
	}
	double a = 0, b = 0;
	for (int k = 0; k < K; k++)
		a += fm[k];
	a /= K;
	for (int k = 0; k < K; k++)
		b += (fm[k] - a) * (fm[k] - a);
	double se = sqrt(b / (K - 1) / K);
	/* exact at float-rounded y, mu, sd */
	double exact = ref_crps_gauss((float)mu, (float)sd, (float)yv);
	print_message("fair CRPS %.6f, closed form %.6f, diff %.2e, SE %.2e\n",
		      r.crps, exact, r.crps - exact, se);
	tu_assert_close(r.crps, exact, 4 * se);
	/* the SE must be a real spread, not a degenerate 0 */
	assert_true(se > 1e-5 && se < 1e-2);
	pno_metrics_free(acc);
	free(x);
}

/* 2c. Exact quantiles: samples 0..100 (shuffled) make q_p = 100 p
 * exactly; truths on a 0.5 grid over [-10, 110] include the interval
 * ends, which count as covered. Coverage, widths, calibration and the
 * interval score are then exact counts and sums. */
static void test_exact_quantiles(void **state)
{
	(void)state;
	enum { S = 101, N = 241 };
	float *x = xalloc((size_t)S * N), y[N], m[N], s[N];
	struct pno_metrics_acc *acc;
	struct pno_metrics r;
	for (int k = 0; k < N; k++) {
		y[k] = -10 + 0.5f * k, m[k] = 50, s[k] = 29;
		for (int t = 0; t < S; t++)
			x[(size_t)t * N + k] = (float)((t * 37 + k) % S);
	}
	assert_status(pno_metrics_new(&acc, 1, 1, N, 1, S), PNO_STATUS_OK);
	struct pno_metrics_pred p = {S, x, m, s, NULL, NULL, NULL, NULL};
	assert_status(pno_metrics_add(acc, y, &p), PNO_STATUS_OK);
	assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
	/* the interval ends and levels in percent, written out */
	const double cov_lo[PNO_METRICS_NCOV] = {25, 10, 5, 2.5, 0.5};
	const double is_lo[PNO_METRICS_NIS] = {5, 2.5, 0.5};
	for (int j = 0; j < PNO_METRICS_NCOV; j++) {
		double lo = cov_lo[j], hi = 100 - lo;
		int n = 0;
		for (int k = 0; k < N; k++)
			n += lo <= y[k] && y[k] <= hi;
		/* lo, hi on the 0.5 grid: count 2 (hi - lo) + 1 */
		assert_int_equal(n, (int)lround(2 * (hi - lo)) + 1);
		tu_assert_close(r.coverage[j], (double)n / N, 1e-15);
		tu_assert_close(r.width[j], hi - lo, 1e-12);
	}
	for (int j = 0; j < PNO_METRICS_NIS; j++) {
		double al = is_lo[j] / 50, lo = is_lo[j], hi = 100 - lo;
		double sc = 0;
		for (int k = 0; k < N; k++)
			sc += hi - lo + (y[k] < lo ? 2 / al * (lo - y[k]) : 0) +
			      (y[k] > hi ? 2 / al * (y[k] - hi) : 0);
		tu_assert_close(r.interval_score[j], sc / N, 1e-12 * sc / N);
	}
	for (int j = 0; j < PNO_METRICS_NCAL; j++) {
		int n = 0;
		for (int k = 0; k < N; k++)
			n += y[k] <= 5 * (j + 1);
		tu_assert_close(r.calib_obs[j], (double)n / N, 1e-15);
	}
	pno_metrics_free(acc);
	free(x);
}

/* ----------------------------------------------------------- statistics */

enum { SX = 4096, SF = 25 };	/* 25 functions of 4096 points: 102400 */

/* Two accumulators over the same predictions (S samples of N(mu, sd^2)
 * per point): truths from the predictive distribution, and from one
 * twice as wide. */
static void stat_run(int S, struct pno_metrics *cal, struct pno_metrics *wide)
{
	struct pno_metrics_acc *a1, *a2;
	assert_status(pno_metrics_new(&a1, 1, 1, SX, 1, S), PNO_STATUS_OK);
	assert_status(pno_metrics_new(&a2, 1, 1, SX, 1, S), PNO_STATUS_OK);
	for (int f = 0; f < SF; f++) {
		struct fn g;
		fn_make(&g, 1, SX, S, 1000 + f, 1, 0);
		struct pno_metrics_pred p = fn_pred(&g, 1, 0);
		assert_status(pno_metrics_add(a1, g.y, &p), PNO_STATUS_OK);
		/* the wide truth: y = mu + 2 (y - mu) */
		for (size_t k = 0; k < g.N; k++)
			g.y[k] = g.gmu[k] + 2 * (g.y[k] - g.gmu[k]);
		assert_status(pno_metrics_add(a2, g.y, &p), PNO_STATUS_OK);
		fn_free(&g);
	}
	assert_status(pno_metrics_finish(a1, cal), PNO_STATUS_OK);
	assert_status(pno_metrics_finish(a2, wide), PNO_STATUS_OK);
	pno_metrics_free(a1);
	pno_metrics_free(a2);
}

static double norm_cdf(double z) { return 0.5 * erfc(-z / sqrt(2.0)); }

static double norm_inv(double p)	/* bisection: plenty for a test */
{
	double lo = -10, hi = 10;
	for (int i = 0; i < 100; i++) {
		double mid = 0.5 * (lo + hi);
		if (norm_cdf(mid) < p)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

/* 3. Truth drawn from the predictive distribution itself, 102400
 * points of varied N(mu, sd^2).
 *
 * Finite S: for a new draw y and S i.i.d. samples, P(y <= x_(r)) =
 * r / (S + 1) (ranks are uniform), so the type-7 quantile at h = (S-1)p
 * (0-based) covers about (h + 1) / (S + 1) and a central interval of
 * level L about L (S - 1) / (S + 1): 2 L / (S + 1) short of nominal,
 * 1.96 points at S = 100, L = 0.99 (1.78 at 90 %). So at S = 100 the
 * coverages are checked against that expectation (binomial sd at most
 * 0.16 points, tolerance 0.5 points) and only 50 % against nominal;
 * the nominal 1.5-point check runs at S = 200 (short by at most 0.99
 * points). The calibration bias is mean_j |1 - 2 p_j| / (S + 1) = 0.0047
 * at S = 100: calib_error < 0.02.
 *
 * Spread-skill: with m and s the samples' mean and std, E (m - y)^2 =
 * sd^2 (1 + 1/S) and E s^2 = sd^2, so the (S + 1)/S factor makes the
 * ratio 1; its standard error here is ~0.003: tolerance 0.015.
 *
 * Twice as wide: the 90 % interval covers about P(|Z| < 1.645 / 2) =
 * 0.589 and calib_error is about mean_j |Phi(Phi^-1(p_j) / 2) - p_j| =
 * 0.102 (infinite S); checked < 0.6, and within 0.01 of 0.102, and
 * spread-skill about 1/2. */
static void test_calibration(void **state)
{
	(void)state;
	struct pno_metrics c, w;
	stat_run(100, &c, &w);
	const double S = 100;
	print_message("S = 100: calib_error %.4f, spread_skill %.4f, corr %.3f\n",
		      c.calib_error, c.spread_skill, c.std_err_corr);
	for (int j = 0; j < PNO_METRICS_NCOV; j++) {
		double L = PNO_METRICS_COVERAGE[j], ex = L * (S - 1) / (S + 1);
		print_message("  coverage %.2f: %.4f (finite-S expectation %.4f)\n",
			      L, c.coverage[j], ex);
		tu_assert_close(c.coverage[j], ex, 0.005);
	}
	tu_assert_close(c.coverage[0], 0.5, 0.015);
	/* at S = 100 the 99 % interval really is ~2 points short */
	assert_true(0.99 - c.coverage[4] > 0.015);
	assert_true(c.calib_error < 0.02);
	tu_assert_close(c.spread_skill, 1.0, 0.015);
	assert_true(c.std_err_corr > 0.2);
	assert_int_equal(c.n_points, (int64_t)SF * SX);

	double ce = 0;
	for (int j = 0; j < PNO_METRICS_NCAL; j++)
		ce += fabs(norm_cdf(norm_inv(PNO_METRICS_CAL[j]) / 2) -
			   PNO_METRICS_CAL[j]) / PNO_METRICS_NCAL;
	print_message("wide: coverage90 %.4f (inf-S %.4f), calib_error %.4f "
		      "(inf-S %.4f), spread_skill %.4f\n", w.coverage[2],
		      2 * norm_cdf(norm_inv(0.95) / 2) - 1, w.calib_error, ce,
		      w.spread_skill);
	assert_true(w.coverage[2] < 0.6);
	for (int j = 0; j < PNO_METRICS_NCOV; j++)
		assert_true(w.coverage[j] < PNO_METRICS_COVERAGE[j] - 0.05);
	assert_true(w.calib_error > 0.09);
	tu_assert_close(w.calib_error, ce, 0.01);
	tu_assert_close(w.spread_skill, 0.5, 0.01);

	if (getenv("PNO_SANITIZED"))
		return;	/* the S = 200 run costs ~4 x the S = 100 one */
	stat_run(200, &c, &w);
	for (int j = 0; j < PNO_METRICS_NCOV; j++) {
		print_message("  S = 200 coverage %.2f: %.4f\n",
			      PNO_METRICS_COVERAGE[j], c.coverage[j]);
		tu_assert_close(c.coverage[j], PNO_METRICS_COVERAGE[j], 0.015);
	}
	assert_true(c.calib_error < 0.02);
	tu_assert_close(c.spread_skill, 1.0, 0.015);
}

/* ------------------------------------------------------------- spectrum */

/* 4a. Parseval: the shells sum to mean over functions of
 * (1/P) sum_{c,i} (m - y)^2 = C rmse^2, and to C mean s^2 for the std,
 * on even and odd 1-D and 2-D grids (Nyquist columns weighted once). */
static void test_parseval(void **state)
{
	(void)state;
	const int g[][4] = {{1, 16, 1, 2}, {1, 15, 1, 1}, {2, 12, 10, 2},
			    {2, 9, 7, 3},  {2, 8, 11, 1}};
	double w = 0;
	for (size_t t = 0; t < sizeof g / sizeof g[0]; t++) {
		struct pno_metrics_acc *acc;
		struct pno_metrics r;
		const int C = g[t][3];
		size_t P = (size_t)g[t][1] * g[t][2];
		double s2 = 0;
		assert_status(pno_metrics_new(&acc, C, g[t][0], g[t][1], g[t][2], 4),
			      PNO_STATUS_OK);
		for (int f = 0; f < 3; f++) {
			struct fn h;
			fn_make(&h, C, P, 4, 300 + 10 * t + f, 1, 0);
			struct pno_metrics_pred p = fn_pred(&h, 0, 0);
			assert_status(pno_metrics_add(acc, h.y, &p), PNO_STATUS_OK);
			for (size_t k = 0; k < h.N; k++)
				s2 += (double)h.s[k] * h.s[k];
			fn_free(&h);
		}
		assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
		double se = 0, ss = 0;
		for (int k = 0; k < r.n_shells; k++)
			se += r.err_spectrum[k], ss += r.std_spectrum[k];
		double want_e = C * r.rmse * r.rmse, want_s = s2 / (3.0 * P);
		w = fmax(w, fabs(se - want_e) / want_e);
		w = fmax(w, fabs(ss - want_s) / want_s);
		tu_assert_close(se, want_e, 1e-12 * want_e);
		tu_assert_close(ss, want_s, 1e-12 * want_s);
		pno_metrics_free(acc);
	}
	print_message("Parseval: max relative error %.1e\n", w);
}

/* 4b. One Fourier mode of the error lands in its shell only: 2-D
 * (kx, ky) = (3, 4) and (-3, 4) -> shell 5 with A^2 / 2; 1-D Nyquist
 * cos(pi i) -> shell X/2 with A^2 (a self-conjugate mode); on 4096
 * points k = 1500 lands in the last shell 1023, which pools the tail.
 * Other shells hold FFT round-off only: below 1e-13 of the total. */
static void test_single_mode(void **state)
{
	(void)state;
	const int modes[][5] = {{2, 3, 4, 5, 32}, {2, -3, 4, 5, 32},
				{1, 16, 0, 16, 32}, {1, 1500, 0, 1023, 4096}};
	for (size_t t = 0; t < 4; t++) {
		const int dims = modes[t][0], X = modes[t][4];
		const int Y = dims == 2 ? 16 : 1;
		const size_t P = (size_t)X * Y;
		const double A = 0.75;
		float *y = xalloc(P), *m = xalloc(P), *s = xalloc(P);
		struct pno_metrics_acc *acc;
		struct pno_metrics r;
		for (int i = 0; i < X; i++)
			for (int j = 0; j < Y; j++) {
				double ph = 2 * M_PI * ((double)modes[t][1] * i / X +
							(double)modes[t][2] * j / Y);
				y[i * Y + j] = 1;
				m[i * Y + j] = (float)(1 + A * cos(ph));
				s[i * Y + j] = 0.5f;
			}
		assert_status(pno_metrics_new(&acc, 1, dims, X, Y, 1), PNO_STATUS_OK);
		struct pno_metrics_pred p = {1, m, m, s, NULL, NULL, NULL, NULL};
		assert_status(pno_metrics_add(acc, y, &p), PNO_STATUS_OK);
		assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
		const int sh = modes[t][3];
		assert_int_equal(r.n_shells, X == 4096 ? 1024 : dims == 2 ? 19 : 17);
		/* the float field's own energy, for round-off of m */
		double e = 0;
		for (size_t k = 0; k < P; k++)
			e += ((double)m[k] - 1) * ((double)m[k] - 1) / P;
		double want = sh == X / 2 && dims == 1 ? A * A : A * A / 2;
		tu_assert_close(r.err_spectrum[sh], e, 1e-12 * e);
		tu_assert_close(e, want, 1e-6 * want);	/* float cos */
		for (int k = 0; k < r.n_shells; k++)
			if (k != sh)
				assert_true(r.err_spectrum[k] < 1e-13 * e);
		/* a constant std is all in shell 0 */
		tu_assert_close(r.std_spectrum[0], 0.25, 1e-15);
		pno_metrics_free(acc);
		free(y), free(m), free(s);
	}
}

/* -------------------------------------------------------------- threads */

/* 5. The same bits at 1 and 2 threads (7 chunks of points, the energy
 * rows split over threads), and with one sort buffer. */
static void test_threads(void **state)
{
	(void)state;
	enum { C = 3, X = 1100, S = 20 };
	struct pno_metrics r[3];
	int saved = pno_threads_get();
	for (int v = 0; v < 3; v++) {
		struct pno_metrics_acc *acc;
		pno_threads_set(v == 2 ? 1 : 2);
		assert_status(pno_metrics_new(&acc, C, 1, X, 1, S), PNO_STATUS_OK);
		pno_threads_set(v == 0 ? 1 : 2);
		for (int f = 0; f < 2; f++) {
			struct fn g;
			fn_make(&g, C, X, S, 500 + f, 1.2, 0);
			struct pno_metrics_pred p = fn_pred(&g, 1, 1);
			assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_OK);
			fn_free(&g);
		}
		assert_status(pno_metrics_finish(acc, &r[v]), PNO_STATUS_OK);
		pno_metrics_free(acc);
	}
	pno_threads_set(saved);
	assert_memory_equal(&r[0], &r[1], sizeof r[0]);
	assert_memory_equal(&r[0], &r[2], sizeof r[0]);
}

/* ------------------------------------------------------------ bad input */

/* 6. Each bad input is refused with a message naming it, and a refused
 * add leaves the accumulator as it was. */
static void test_bad_input(void **state)
{
	(void)state;
	struct pno_metrics_acc *acc = NULL;
	struct pno_metrics r0, r1;
	struct fn g;
	assert_status(pno_metrics_new(&acc, 2, 2, 0, 4, 3), PNO_STATUS_INVALID);
	assert_err_has("grid");
	assert_null(acc);
	assert_status(pno_metrics_new(&acc, 2, 3, 4, 4, 3), PNO_STATUS_INVALID);
	assert_status(pno_metrics_new(&acc, 2, 1, 4, 4, 3), PNO_STATUS_INVALID);
	assert_status(pno_metrics_new(&acc, 0, 1, 4, 1, 3), PNO_STATUS_INVALID);
	assert_status(pno_metrics_new(&acc, 1, 1, 4, 1, 0), PNO_STATUS_INVALID);
	assert_status(pno_metrics_new(NULL, 1, 1, 4, 1, 1), PNO_STATUS_INVALID);

	assert_status(pno_metrics_new(&acc, 2, 2, 4, 3, 5), PNO_STATUS_OK);
	assert_status(pno_metrics_finish(acc, &r0), PNO_STATUS_RANGE);
	assert_err_has("no functions");
	fn_make(&g, 2, 12, 5, 900, 1, 0);
	struct pno_metrics_pred p = fn_pred(&g, 1, 1);
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_OK);
	assert_status(pno_metrics_finish(acc, &r0), PNO_STATUS_OK);

	g.y[13] = NAN;	/* channel 1, point 1 */
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_NONFINITE);
	assert_err_has("y[c=1, i=1]");
	g.y[13] = 0;
	g.x[2 * 24 + 5] = INFINITY;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_NONFINITE);
	assert_err_has("samples[s=2, c=0, i=5]");
	g.x[2 * 24 + 5] = 0;
	g.s[3] = -1;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_RANGE);
	assert_err_has("std[c=0, i=3]");
	g.s[3] = 1;
	g.epi[0] = NAN;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_NONFINITE);
	assert_err_has("epistemic");
	g.epi[0] = 1;
	p.S = 6;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_INVALID);
	assert_err_has("6 samples");
	p.S = 0;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_INVALID);
	p.S = 5;
	p.gauss_sigma = NULL;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_INVALID);
	p.gauss_sigma = g.gsg;
	p.std = NULL;
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_INVALID);
	p.std = g.s;
	assert_status(pno_metrics_add(acc, NULL, &p), PNO_STATUS_INVALID);
	assert_status(pno_metrics_add(NULL, g.y, &p), PNO_STATUS_INVALID);
	assert_status(pno_metrics_finish(acc, NULL), PNO_STATUS_INVALID);
	/* nothing of the refused adds was kept */
	assert_status(pno_metrics_finish(acc, &r1), PNO_STATUS_OK);
	assert_memory_equal(&r0, &r1, sizeof r0);
	assert_null(pno_metrics_to_json(NULL));
	pno_metrics_free(acc);
	pno_metrics_free(NULL);
	fn_free(&g);
}

/* 6b. Every allocation of pno_metrics_new and pno_metrics_to_json
 * failing in turn: NOMEM (NULL) and nothing left; add and finish
 * allocate nothing. */
static void test_alloc_failure(void **state)
{
	(void)state;
	struct pno_metrics_acc *acc = NULL;
	struct pno_metrics r;
	struct fn g;
	long live0, k;
	fn_make(&g, 2, 20, 6, 950, 1, 0);
	tu_alloc_install();
	live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_metrics_new(&acc, 2, 2, 5, 4, 6), live0))
			break;
		assert_null(acc);
	}
	assert_true(k > 5);
	struct pno_metrics_pred p = fn_pred(&g, 1, 1);
	tu_alloc_reset(0);
	assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_OK);
	assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
	assert_int_equal(tu_alloc_count(), 0);
	long live1 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		char *s = pno_metrics_to_json(&r);
		if (!tu_alloc_failed()) {
			assert_non_null(s);
			pno_free(s);
			break;
		}
		assert_null(s);
		assert_int_equal(tu_alloc_live(), live1);
	}
	assert_true(k > 10);
	pno_metrics_free(acc);
	tu_alloc_reset(0);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	fn_free(&g);
}

/* ----------------------------------------------------------------- JSON */

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

static int type_ok(const json_t *v, const char *t)
{
	const char *n = type_name(v);
	return !strcmp(n, t) || (!strcmp(t, "number") && !strcmp(n, "integer"));
}

/* The schema keywords the metrics schema uses: type (string or array),
 * required, properties, additionalProperties: false, items, minItems,
 * maxItems, minimum, maximum. Returns the number of violations (each
 * printed). Any other keyword (besides annotations) fails the test, so
 * the checker cannot silently ignore a constraint. */
static int check_schema(const json_t *v, const json_t *sc, const char *path)
{
	const char *key;
	json_t *kw;
	int bad = 0;
#define VIOLATION(...) (print_message(__VA_ARGS__), bad++)
	json_object_foreach((json_t *)sc, key, kw) {
		if (!strcmp(key, "type")) {
			int ok = 0;
			if (json_is_string(kw))
				ok = type_ok(v, json_string_value(kw));
			for (size_t i = 0; json_is_array(kw) && i < json_array_size(kw); i++)
				ok |= type_ok(v, json_string_value(json_array_get(kw, i)));
			if (!ok)
				VIOLATION("%s: %s not allowed by its schema type\n",
					  path, type_name(v));
		} else if (!strcmp(key, "required")) {
			for (size_t i = 0; i < json_array_size(kw); i++) {
				const char *k = json_string_value(json_array_get(kw, i));
				if (json_is_object(v) && !json_object_get(v, k))
					VIOLATION("%s: required key \"%s\" missing\n",
						  path, k);
			}
		} else if (!strcmp(key, "properties")) {
			const char *k;
			json_t *sub;
			json_object_foreach(kw, k, sub) {
				json_t *e = json_is_object(v) ? json_object_get(v, k) : NULL;
				char p[256];
				snprintf(p, sizeof p, "%s.%s", path, k);
				if (e)
					bad += check_schema(e, sub, p);
			}
		} else if (!strcmp(key, "additionalProperties")) {
			assert_true(json_is_false(kw));
			json_t *props = json_object_get(sc, "properties");
			const char *k;
			json_t *e;
			if (json_is_object(v))
				json_object_foreach((json_t *)v, k, e) {
					if (!json_object_get(props, k))
						VIOLATION("%s: key \"%s\" not in the "
							  "schema\n", path, k);
				}
		} else if (!strcmp(key, "items")) {
			for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
				char p[256];
				snprintf(p, sizeof p, "%s[%zu]", path, i);
				bad += check_schema(json_array_get(v, i), kw, p);
			}
		} else if (!strcmp(key, "minItems") || !strcmp(key, "maxItems")) {
			if (!json_is_array(v))
				continue;
			size_t n = json_array_size(v), b = json_integer_value(kw);
			if (key[1] == 'i' ? n < b : n > b)
				VIOLATION("%s: %zu items against %s %zu\n", path, n,
					  key, b);
		} else if (!strcmp(key, "minimum") || !strcmp(key, "maximum")) {
			if (!json_is_number(v))
				continue;
			double x = json_number_value(v), b = json_number_value(kw);
			if (key[1] == 'i' ? x < b : x > b)
				VIOLATION("%s: %g against %s %g\n", path, x, key, b);
		} else if (strcmp(key, "description") && strcmp(key, "title") &&
			   strcmp(key, "$schema") && strcmp(key, "$id")) {
			fail_msg("%s: schema keyword \"%s\" not checked", path, key);
		}
	}
#undef VIOLATION
	return bad;
}

static double jnum(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		fail_msg("key \"%s\" missing", key);
	return json_is_null(v) ? NAN : json_number_value(v);
}

static void same(double json, double want, const char *what)
{
	if (isnan(want) ? !isnan(json) : json != want)
		fail_msg("%s: JSON %.17g, struct %.17g", what, json, want);
}

/* 7. The JSON parses back to the struct's values (17 digits round-trip
 * exactly), has every key the schema requires with its type and range;
 * and the schema's shape is checked on both a full and an undefined-
 * heavy result (nulls where the schema allows them). A result out of
 * range must fail the checker (the checker is live). */
static void test_json(void **state)
{
	(void)state;
	json_error_t err;
	json_t *schema = json_load_file(schema_path(), 0, &err);
	if (!schema)
		fail_msg("%s: %s", schema_path(), err.text);
	for (int v = 0; v < 2; v++) {
		struct pno_metrics_acc *acc;
		struct pno_metrics r;
		struct fn g;
		fn_make(&g, 2, 30, v ? 1 : 6, 990 + v, 1, 0);
		struct pno_metrics_pred p = fn_pred(&g, !v, !v);
		if (v)	/* a perfect point-mass model: rmse 0, s 0 */
			memcpy(g.m, g.y, g.N * sizeof *g.y), memcpy(g.x, g.y, g.N * sizeof *g.y),
				memset(g.s, 0, g.N * sizeof *g.s);
		assert_status(pno_metrics_new(&acc, 2, 2, 6, 5, 6), PNO_STATUS_OK);
		assert_status(pno_metrics_add(acc, g.y, &p), PNO_STATUS_OK);
		assert_status(pno_metrics_finish(acc, &r), PNO_STATUS_OK);
		char *text = pno_metrics_to_json(&r);
		assert_non_null(text);
		json_t *o = json_loads(text, 0, &err);
		if (!o)
			fail_msg("JSON does not parse: %s", err.text);
		assert_int_equal(check_schema(o, schema, "$"), 0);
		assert_int_equal(json_integer_value(json_object_get(o, "n_points")),
				 r.n_points);
		assert_int_equal(json_integer_value(json_object_get(o, "S")), r.S);
		same(jnum(o, "rel_l2"), r.rel_l2, "rel_l2");
		same(jnum(o, "rmse"), r.rmse, "rmse");
		same(jnum(o, "nll"), r.nll, "nll");
		same(jnum(o, "crps"), r.crps, "crps");
		same(jnum(o, "crps_gauss"), r.crps_gauss, "crps_gauss");
		same(jnum(o, "energy"), r.energy, "energy");
		same(jnum(o, "spread_skill"), r.spread_skill, "spread_skill");
		same(jnum(o, "std_err_corr"), r.std_err_corr, "std_err_corr");
		same(jnum(o, "total"), r.total, "total");
		same(jnum(o, "calib_error"), r.calib_error, "calib_error");
		assert_int_equal(json_is_true(json_object_get(o, "has_crps_gauss")),
				 r.has_crps_gauss);
		json_t *cov = json_object_get(o, "coverage");
		for (int j = 0; j < PNO_METRICS_NCOV; j++) {
			json_t *e = json_array_get(cov, j);
			same(jnum(e, "level"), PNO_METRICS_COVERAGE[j], "level");
			same(jnum(e, "observed"), r.coverage[j], "coverage");
			same(jnum(e, "width"), r.width[j], "width");
		}
		json_t *is = json_object_get(o, "interval_score");
		for (int j = 0; j < PNO_METRICS_NIS; j++)
			same(jnum(json_array_get(is, j), "score"), r.interval_score[j],
			     "interval_score");
		json_t *cal = json_object_get(o, "calib_obs");
		for (int j = 0; j < PNO_METRICS_NCAL; j++)
			same(jnum(json_array_get(cal, j), "observed"), r.calib_obs[j],
			     "calib_obs");
		json_t *es = json_object_get(o, "err_spectrum");
		assert_int_equal(json_array_size(es), r.n_shells);
		for (int k = 0; k < r.n_shells; k++)
			same(json_number_value(json_array_get(es, k)),
			     r.err_spectrum[k], "err_spectrum");
		if (v) {	/* the undefined ones are null */
			assert_true(isnan(r.spread_skill) && isnan(r.std_err_corr));
			assert_true(json_is_null(json_object_get(o, "spread_skill")));
			assert_true(json_is_null(json_object_get(o, "crps_gauss")));
			assert_true(json_is_null(json_object_get(o, "aleatoric")));
			tu_assert_close(r.crps, 0, 0);
			tu_assert_close(r.energy, 0, 0);
		}
		/* the checker is live: a coverage of 1.5 is out of range */
		json_object_set_new(json_array_get(cov, 1), "observed",
				    json_real(1.5));
		json_object_del(o, "mae");
		json_object_set_new(o, "n_shells", json_string("many"));
		print_message("(three violations expected:)\n");
		assert_int_equal(check_schema(o, schema, "$"), 3);
		json_decref(o);
		pno_free(text);
		pno_metrics_free(acc);
		fn_free(&g);
	}
	json_decref(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_brute_force),
		cmocka_unit_test(test_crps_gauss_quadrature),
		cmocka_unit_test(test_crps_fair_unbiased),
		cmocka_unit_test(test_exact_quantiles),
		cmocka_unit_test(test_calibration),
		cmocka_unit_test(test_parseval),
		cmocka_unit_test(test_single_mode),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_alloc_failure),
		cmocka_unit_test(test_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
