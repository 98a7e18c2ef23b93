/* loss: every score against an independent evaluation (quadrature, the
 * O(m^2) definitions, long-double closed forms, hand values), every
 * gradient against central differences, propriety and unbiasedness by
 * Philox sampling, and the edge cases (NAN on bad input, NULL gradients,
 * zero distances). */
#include "testutil.h"
#include "pno/loss.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *fvec(size_t n, uint64_t stream, float scale, float shift)
{
	float *v = malloc(n * sizeof *v);
	assert_non_null(v);
	pno_rng_normal(v, n, 2024, stream, 0);
	for (size_t i = 0; i < n; i++)
		v[i] = v[i] * scale + shift;
	return v;
}

/* ---------------------------------------------------------------- (a) */

/* NLL as -log of the normal density with sigma = exp(logvar/2), in long
 * double. Both sides are double-or-better sums of B*N terms: 1e-12
 * relative leaves 1e3 ulps of room. */
static void test_nll_values(void **state)
{
	(void)state;
	enum { B = 3, N = 17 };
	float *mu = fvec(B * N, 1, 1, 0), *lv = fvec(B * N, 2, 0.7f, 0);
	float *y = fvec(B * N, 3, 1.5f, 0.2f);
	long double ref = 0;
	for (int i = 0; i < B * N; i++) {
		long double sg = expl(0.5L * lv[i]), z = ((long double)y[i] - mu[i]) / sg;
		ref += logl(sg) + 0.5L * logl(2 * 3.14159265358979323846264338L) +
		       0.5L * z * z;
	}
	ref /= B * N;
	double got = pno_loss_gauss_nll(NULL, NULL, mu, lv, y, B, N);
	tu_assert_close(got, (double)ref, 1e-12 * fabsl(ref));
	free(mu), free(lv), free(y);
}

/* CRPS = int (F(t) - 1{t >= y})^2 dt by composite Simpson on the two
 * smooth pieces either side of y, truncated 12 sigma from mu (tails
 * ~1e-33). 6000 panels of <= 0.005 sigma: Simpson error ~1e-11 sigma,
 * so 1e-10 sigma (measured 7e-14). */
static double simpson_piece(double a, double b, double mu, double sg,
			    int upper)
{
	if (b <= a)
		return 0.0;
	int n = 6000;
	double hh = (b - a) / n, s = 0.0;
	for (int k = 0; k <= n; k++) {
		double t = a + k * hh;
		double F = 0.5 * erfc(-(t - mu) / (sg * sqrt(2.0)));
		double f = upper ? (1 - F) * (1 - F) : F * F;
		s += f * (k == 0 || k == n ? 1 : k % 2 ? 4 : 2);
	}
	return s * hh / 3;
}

static double crps_quadrature(double mu, double sg, double y)
{
	double lo = fmin(mu - 12 * sg, y), hi = fmax(mu + 12 * sg, y);
	return simpson_piece(lo, y, mu, sg, 0) + simpson_piece(y, hi, mu, sg, 1);
}

static void test_crps_gauss_quadrature(void **state)
{
	(void)state;
	/* (mu, sigma, y): z = 0, +-0.5, +-3, +-8, tiny and huge sigma */
	float cases[][3] = {
		{0, 1, 0}, {0, 1, 0.5f}, {0, 1, -0.5f}, {1, 2, 7},
		{1, 2, -5}, {0, 1, 8}, {0, 1, -8}, {3, 1e-3f, 3.0005f},
		{-2, 50, 10}, {0.25f, 0.3f, 0.1f},
	};
	enum { NC = sizeof cases / sizeof cases[0], NR = 40 };
	float mu[NC + NR], sg[NC + NR], y[NC + NR];
	for (int c = 0; c < NC; c++)
		mu[c] = cases[c][0], sg[c] = cases[c][1], y[c] = cases[c][2];
	float *r = fvec(3 * NR, 4, 1, 0);
	for (int c = 0; c < NR; c++) {
		mu[NC + c] = r[3 * c];
		sg[NC + c] = expf(0.8f * r[3 * c + 1]);
		y[NC + c] = mu[NC + c] + 2 * r[3 * c + 2];
	}
	double worst = 0, mean_ref = 0;
	for (int c = 0; c < NC + NR; c++) {
		double got = pno_loss_crps_gauss(NULL, NULL, mu + c, sg + c, y + c, 1, 1);
		double ref = crps_quadrature(mu[c], sg[c], y[c]);
		mean_ref += ref;
		worst = fmax(worst, fabs(got - ref) / sg[c]);
		tu_assert_close(got, ref, 1e-10 * sg[c]);
	}
	/* the batch call is the mean of the points */
	mean_ref /= NC + NR;
	double all = pno_loss_crps_gauss(NULL, NULL, mu, sg, y, 2, (NC + NR) / 2);
	tu_assert_close(all, mean_ref, 1e-10);
	printf("crps_gauss vs quadrature: max |err|/sigma %.2e\n", worst);
	free(r);
}

/* the definition with the O(m^2) pair loop, in double */
static double crps_ens_def(const float *X, const float *y, int B, int m,
			   size_t N)
{
	double s = 0;
	for (int b = 0; b < B; b++) {
		for (size_t i = 0; i < N; i++) {
			double yi = y[b * N + i], a = 0, p = 0;
			for (int j = 0; j < m; j++) {
				double xj = X[((size_t)b * m + j) * N + i];
				a += fabs(xj - yi);
				for (int k = 0; k < m; k++)
					p += fabs(xj - X[((size_t)b * m + k) * N + i]);
			}
			s += a / m - p / (2.0 * m * (m - 1));
		}
	}
	return s / (B * (double)N);
}

/* Values against the definition for m on the rank-count path (<= 256) and
 * the sort path (257: a run of one after 16 insertion-sorted runs, 300,
 * 1024: whole merge levels), with and without ties (values on a 0.25 grid, some equal to
 * y). For distinct values the gradient is also checked against the pair
 * form sign(x_j - y)/m - sum_k sign(x_j - x_k)/(m(m-1)). Tolerance 1e-12
 * absolute on O(1) scores: both are double sums of <= 1e6 terms. */
static void test_crps_ens_definition(void **state)
{
	(void)state;
	int ms[] = {2, 3, 7, 16, 17, 33, 100, 256, 257, 300, 1024};
	enum { B = 2, N = 5 };
	for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
		int m = ms[t];
		for (int ties = 0; ties < 2; ties++) {
			size_t nx = (size_t)B * m * N;
			float *X = fvec(nx, 10 + t, 1, 0.1f), *y = fvec(B * N, 30 + t, 1, 0);
			float *g = malloc(nx * sizeof *g);
			if (ties) {
				for (size_t i = 0; i < nx; i++)
					X[i] = roundf(X[i] * 4) / 4;
				for (int i = 0; i < B * N; i++)
					y[i] = roundf(y[i] * 4) / 4;
			}
			double got = pno_loss_crps_ens(g, X, y, B, m, N);
			double ref = crps_ens_def(X, y, B, m, N);
			tu_assert_close(got, ref, 1e-12);
			if (!ties) {
				double worst = 0;
				for (int b = 0; b < B; b++)
					for (int i = 0; i < N; i++)
						for (int j = 0; j < m; j++) {
							double xj = X[(b * m + j) * N + i];
							double yi = y[b * N + i];
							double gr = ((xj > yi) - (xj < yi)) / (double)m;
							double ps = 0;
							for (int k = 0; k < m; k++) {
								double xk = X[(b * m + k) * N + i];
								ps += (xj > xk) - (xj < xk);
							}
							gr = (gr - ps / ((double)m * (m - 1))) / (B * N);
							worst = fmax(worst, fabs(gr - g[(b * m + j) * N + i]) * B * N);
						}
				/* float rounding of O(1/(BN)) values */
				assert_true(worst < 1e-6);
			}
			free(X), free(y), free(g);
		}
	}
}

/* ||f|| = sqrt(h sum f^2) pairwise, in long double */
static double energy_def(const float *X, const float *y, int B, int m,
			 size_t N)
{
	long double tot = 0;
	for (int b = 0; b < B; b++) {
		const float *Xb = X + (size_t)b * m * N, *yb = y + (size_t)b * N;
		long double a = 0, p = 0;
		for (int j = 0; j < m; j++) {
			long double s = 0;
			for (size_t i = 0; i < N; i++) {
				long double d = (long double)Xb[j * N + i] - yb[i];
				s += d * d;
			}
			a += sqrtl(s / N);
			for (int k = 0; k < m; k++) {
				if (k == j)
					continue;
				s = 0;
				for (size_t i = 0; i < N; i++) {
					long double d = (long double)Xb[j * N + i] - Xb[k * N + i];
					s += d * d;
				}
				p += sqrtl(s / N);
			}
		}
		tot += a / m - p / (2.0L * m * (m - 1));
	}
	return (double)(tot / B);
}

/* N = 1 and the 8-wide tails (7, 100); 1e-12 relative: double vs long
 * double sums of <= 300 squares. */
static void test_energy_definition(void **state)
{
	(void)state;
	int ms[] = {2, 3, 5, 11};
	size_t Ns[] = {1, 7, 64, 100};
	enum { B = 3 };
	for (int a = 0; a < 4; a++) {
		for (int c = 0; c < 4; c++) {
			int m = ms[a];
			size_t N = Ns[c], nx = B * m * N;
			float *X = fvec(nx, 50 + 4 * a + c, 1, 0.3f);
			float *y = fvec(B * N, 70 + 4 * a + c, 1.2f, 0);
			float *g = malloc(nx * sizeof *g);
			double ref = energy_def(X, y, B, m, N);
			tu_assert_close(pno_loss_energy(g, X, y, B, m, N), ref,
					1e-12 * fabs(ref));
			tu_assert_close(pno_loss_energy(NULL, X, y, B, m, N), ref,
					1e-12 * fabs(ref));
			free(X), free(y), free(g);
		}
	}
}

/* m = 70 (2415 pairs: two chunks of pairs) on N = 300 (two tiles of the
 * field): value against the definition, gradient against the pair form
 * (1/B) [h (x_j - y)/(m d_jy) - sum_k h (x_j - x_k)/(m(m-1) d_jk)] in
 * double. Gradient bound 1e-5 relative to max |g|: float sums of m terms. */
static void test_energy_chunks(void **state)
{
	(void)state;
	enum { B = 2, m = 70, N = 300, nx = B * m * N };
	float *X = fvec(nx, 80, 1, 0), *y = fvec(B * N, 81, 1, 0);
	float *g = malloc(nx * sizeof *g);
	double *r = calloc(nx, sizeof *r);
	double ref = energy_def(X, y, B, m, N);
	tu_assert_close(pno_loss_energy(g, X, y, B, m, N), ref, 1e-12 * fabs(ref));
	double h = 1.0 / N, worst = 0, gmax = 0;
	for (int b = 0; b < B; b++) {
		const float *Xb = X + (size_t)b * m * N, *yb = y + b * N;
		for (int j = 0; j < m; j++) {
			double s = 0;
			for (int i = 0; i < N; i++)
				s += ((double)Xb[j * N + i] - yb[i]) * ((double)Xb[j * N + i] - yb[i]);
			double c = h / (m * sqrt(h * s) * B);
			for (int i = 0; i < N; i++)
				r[(b * m + j) * N + i] += c * ((double)Xb[j * N + i] - yb[i]);
			for (int k = 0; k < m; k++) {
				if (k == j)
					continue;
				s = 0;
				for (int i = 0; i < N; i++) {
					double d = (double)Xb[j * N + i] - Xb[k * N + i];
					s += d * d;
				}
				c = h / ((double)m * (m - 1) * sqrt(h * s) * B);
				for (int i = 0; i < N; i++)
					r[(b * m + j) * N + i] -= c * ((double)Xb[j * N + i] - Xb[k * N + i]);
			}
		}
	}
	for (int i = 0; i < nx; i++) {
		worst = fmax(worst, fabs(g[i] - r[i]));
		gmax = fmax(gmax, fabs(r[i]));
	}
	printf("energy m 70 N 300: gradient max err %.1e of max |g|\n", worst / gmax);
	assert_true(worst < 1e-5 * gmax);
	free(X), free(y), free(g), free(r);
}

/* KL closed form in long double, sigma_q = log1p(e^rho) in long double,
 * including rho = -100 (sigma_q = e^-100) and rho = 40; 1e-12 relative.
 * Hand values: rho = 0 gives sigma_q = ln 2 exactly, so
 * KL(N(0, ln2^2) || N(0,1)) = -ln ln 2 + ln2^2/2 - 1/2 = 0.10673942754076504
 * and KL(N(1, ln2^2) || N(0, 4)) = ln(2/ln2) + (ln2^2 + 1)/8 - 1/2
 * = 0.7447167278813849; KL(p || p) = 0. */
static void test_kl_values(void **state)
{
	(void)state;
	enum { n = 64 };
	float *mu = fvec(n, 90, 1, 0.2f), *rho = fvec(n, 91, 2, 0);
	rho[0] = -100, rho[1] = 40, rho[2] = -30.5f, rho[3] = 29.5f;
	float mp = 0.3f, sp = 1.7f;
	long double ref = 0;
	for (int i = 0; i < n; i++) {
		long double sq = log1pl(expl((long double)rho[i]));
		long double dm = (long double)mu[i] - mp;
		ref += logl(sp / sq) + (sq * sq + dm * dm) / (2.0L * sp * sp) - 0.5L;
	}
	double got = pno_kl_gauss_softplus(NULL, NULL, mu, rho, n, mp, sp);
	tu_assert_close(got, (double)ref, 1e-12 * fabsl(ref));

	float z = 0, one = 1, r0 = 0;
	tu_assert_close(pno_kl_gauss_softplus(NULL, NULL, &z, &r0, 1, 0, 1),
			0.10673942754076504, 1e-15);
	tu_assert_close(pno_kl_gauss_softplus(NULL, NULL, &one, &r0, 1, 0, 2),
			0.7447167278813849, 1e-15);
	/* softplus(rho) = 1 at rho = ln(e - 1); float rho is off by ~3e-8,
	 * KL ~ (sigma - 1)^2 ~ 1e-15 */
	float r1 = (float)log(exp(1.0) - 1.0);
	double k0 = pno_kl_gauss_softplus(NULL, NULL, &z, &r1, 1, 0, 1);
	assert_true(k0 >= 0 && k0 < 1e-13);
	assert_true(pno_kl_gauss_softplus(NULL, NULL, NULL, NULL, 0, 0, 1) == 0.0);
	free(mu), free(rho);
}

/* ---------------------------------------------------------------- (b) */

typedef double (*loss_eval)(const void *ctx);

/* Central differences in double on the float parameter p[0..n): the
 * perturbed values are rounded to float, so the actual step is divided
 * by. Components flagged in skip (near a kink) are left out. Returns
 * max |fd - g| / max |g|. */
static double fd_error(loss_eval f, const void *ctx, float *p, const float *g,
		       size_t n, float h, const unsigned char *skip)
{
	double num = 0, gmax = 0;
	for (size_t i = 0; i < n; i++) {
		if (skip && skip[i])
			continue;
		float keep = p[i];
		p[i] = keep + h;
		double xp = p[i], lp = f(ctx);
		p[i] = keep - h;
		double xm = p[i], lm = f(ctx);
		p[i] = keep;
		double fd = (lp - lm) / (xp - xm);
		num = fmax(num, fabs(fd - g[i]));
		gmax = fmax(gmax, fabs(g[i]));
	}
	return num / gmax;
}

struct two_arg {
	float *a, *b, *y;
	int B, m;
	size_t N;
	float mp, sp;
};

static double ev_nll(const void *c)
{
	const struct two_arg *t = c;
	return pno_loss_gauss_nll(NULL, NULL, t->a, t->b, t->y, t->B, t->N);
}
static double ev_crps(const void *c)
{
	const struct two_arg *t = c;
	return pno_loss_crps_gauss(NULL, NULL, t->a, t->b, t->y, t->B, t->N);
}
static double ev_ens(const void *c)
{
	const struct two_arg *t = c;
	return pno_loss_crps_ens(NULL, t->a, t->y, t->B, t->m, t->N);
}
static double ev_energy(const void *c)
{
	const struct two_arg *t = c;
	return pno_loss_energy(NULL, t->a, t->y, t->B, t->m, t->N);
}
static double ev_kl(const void *c)
{
	const struct two_arg *t = c;
	return pno_kl_gauss_softplus(NULL, NULL, t->a, t->b, t->N, t->mp, t->sp);
}

/* Smooth losses, h = 1e-3 on O(1) inputs: truncation h^2 f'''/6 ~ 1e-7
 * relative, the double rounding of the loss 1e-16/h negligible, the float
 * gradient 6e-8: bound 2e-5 relative to max |g|. */
static void test_grad_smooth(void **state)
{
	(void)state;
	enum { B = 2, N = 9, n = B * N };
	struct two_arg t = {fvec(n, 100, 1, 0), fvec(n, 101, 0.5f, 0),
			    fvec(n, 102, 1, 0), B, 1, N, 0, 0};
	float ga[n], gb[n];
	/* NLL: d/dmu, d/dlogvar */
	pno_loss_gauss_nll(ga, gb, t.a, t.b, t.y, B, N);
	double e1 = fd_error(ev_nll, &t, t.a, ga, n, 1e-3f, NULL);
	double e2 = fd_error(ev_nll, &t, t.b, gb, n, 1e-3f, NULL);
	/* CRPS: d/dmu, d/dsigma with sigma = exp(b) > 0 */
	float *sg = t.b;
	for (int i = 0; i < n; i++)
		sg[i] = expf(sg[i]);
	pno_loss_crps_gauss(ga, gb, t.a, sg, t.y, B, N);
	double e3 = fd_error(ev_crps, &t, t.a, ga, n, 1e-3f, NULL);
	double e4 = fd_error(ev_crps, &t, t.b, gb, n, 1e-3f, NULL);
	/* KL: d/dmu, d/drho, rho spread over [-4, 4] */
	float *rho = fvec(n, 103, 2, 0);
	struct two_arg k = {t.a, rho, NULL, 1, 1, n, 0.3f, 0.8f};
	pno_kl_gauss_softplus(ga, gb, t.a, rho, n, 0.3f, 0.8f);
	double e5 = fd_error(ev_kl, &k, t.a, ga, n, 1e-3f, NULL);
	double e6 = fd_error(ev_kl, &k, rho, gb, n, 1e-3f, NULL);
	printf("fd rel err: nll mu %.1e logvar %.1e, crps mu %.1e sigma %.1e, "
	       "kl mu %.1e rho %.1e\n", e1, e2, e3, e4, e5, e6);
	assert_true(e1 < 2e-5 && e2 < 2e-5 && e3 < 2e-5);
	assert_true(e4 < 2e-5 && e5 < 2e-5 && e6 < 2e-5);
	free(t.a), free(t.b), free(t.y), free(rho);
}

/* Ensemble CRPS is piecewise linear: away from the kinks (x_j = x_k or
 * x_j = y, skipped when within 4h) central differences are exact up to
 * the double rounding of the loss over 2h, so 1e-6 relative (the float
 * gradient). Energy: smooth where no distance is zero, truncation
 * h^2 / dist^2 ~ 1e-6 with dist ~ 1: 2e-5. */
static void test_grad_ensemble(void **state)
{
	(void)state;
	enum { B = 2, m = 5, N = 6, nx = B * m * N };
	struct two_arg t = {fvec(nx, 110, 1, 0), NULL, fvec(B * N, 111, 1, 0),
			    B, m, N, 0, 0};
	float g[nx];
	unsigned char skip[nx];
	float h = 1e-3f;
	int nskip = 0;
	for (int b = 0; b < B; b++)
		for (int i = 0; i < N; i++)
			for (int j = 0; j < m; j++) {
				float xj = t.a[(b * m + j) * N + i];
				int near = fabsf(xj - t.y[b * N + i]) < 4 * h;
				for (int k = 0; k < m; k++)
					near |= k != j && fabsf(xj - t.a[(b * m + k) * N + i]) < 4 * h;
				skip[(b * m + j) * N + i] = (unsigned char)near;
				nskip += near;
			}
	assert_true(nskip < nx / 10);
	pno_loss_crps_ens(g, t.a, t.y, B, m, N);
	double e1 = fd_error(ev_ens, &t, t.a, g, nx, h, skip);
	pno_loss_energy(g, t.a, t.y, B, m, N);
	double e2 = fd_error(ev_energy, &t, t.a, g, nx, h, NULL);
	/* energy with a longer field: the vector loop and its tail */
	enum { N2 = 37, nx2 = B * 3 * N2 };
	struct two_arg u = {fvec(nx2, 112, 1, 0), NULL, fvec(B * N2, 113, 1, 0),
			    B, 3, N2, 0, 0};
	float g2[nx2];
	pno_loss_energy(g2, u.a, u.y, B, 3, N2);
	double e3 = fd_error(ev_energy, &u, u.a, g2, nx2, h, NULL);
	printf("fd rel err: crps_ens %.1e (%d kinks skipped), energy %.1e, %.1e\n",
	       e1, nskip, e2, e3);
	assert_true(e1 < 1e-6);
	assert_true(e2 < 2e-5 && e3 < 2e-5);
	free(t.a), free(t.y), free(u.a), free(u.y);
}

/* ---------------------------------------------------------------- (c) */

/* Mean and standard error of the paired differences d[0..n). */
static void mean_se(const double *d, int n, double *mean, double *se)
{
	double s = 0, s2 = 0;
	for (int i = 0; i < n; i++)
		s += d[i];
	*mean = s / n;
	for (int i = 0; i < n; i++)
		s2 += (d[i] - *mean) * (d[i] - *mean);
	*se = sqrt(s2 / (n - 1) / n);
}

/* y ~ N(0, 1) per point; forecasts from N(0,1) (true), N(0.5, 1),
 * N(0, 2^2), N(0, 0.5^2), the same normal draws reused (paired). The
 * expected score of each wrong forecast must exceed the true one's by
 * more than 8 standard errors. Chunks of Bc batches give the samples
 * for the standard error. */
static void propriety(int energy, int m, int N, int chunks, int Bc)
{
	size_t ny = (size_t)Bc * N, nx = ny * m;
	float *y = malloc(ny * sizeof *y), *z = malloc(nx * sizeof *z);
	float *X = malloc(nx * sizeof *X);
	double *d[3];
	for (int a = 0; a < 3; a++)
		d[a] = malloc(chunks * sizeof *d[a]);
	const float shift[4] = {0, 0.5f, 0, 0}, scale[4] = {1, 1, 2, 0.5f};
	for (int c = 0; c < chunks; c++) {
		pno_rng_normal(y, ny, 7, 2 * (uint64_t)(energy * 1000 + c), 0);
		pno_rng_normal(z, nx, 7, 2 * (uint64_t)(energy * 1000 + c) + 1, 0);
		double s[4];
		for (int a = 0; a < 4; a++) {
			for (size_t i = 0; i < nx; i++)
				X[i] = scale[a] * z[i] + shift[a];
			s[a] = energy ? pno_loss_energy(NULL, X, y, Bc, m, N)
				      : pno_loss_crps_ens(NULL, X, y, Bc, m, N);
		}
		for (int a = 0; a < 3; a++)
			d[a][c] = s[a + 1] - s[0];
	}
	const char *names[3] = {"shift 0.5", "sigma 2", "sigma 0.5"};
	for (int a = 0; a < 3; a++) {
		double mean, se;
		mean_se(d[a], chunks, &mean, &se);
		printf("%s propriety, %s: E[wrong - true] = %.4f (se %.4f, %.0f se)\n",
		       energy ? "energy" : "crps_ens", names[a], mean, se, mean / se);
		assert_true(mean > 8 * se);
		free(d[a]);
	}
	free(y), free(z), free(X);
}

static void test_propriety(void **state)
{
	(void)state;
	propriety(0, 4, 100, 100, 4);	/* 40000 points */
	propriety(1, 4, 16, 100, 20);	/* 2000 fields of 16 values */
}

/* The fair ensemble CRPS of m = 3 draws from N(mu, sigma^2) is an
 * unbiased estimate of the closed-form CRPS: over 64 points and 8000
 * draws its mean must be within 4 standard errors of the closed form.
 * The biased estimator (1/(2m^2) on the pair sum) would be off by
 * mean(sigma)/(m sqrt(pi)), which must be > 20 standard errors for the
 * test to be able to tell them apart. */
static void test_crps_ens_unbiased(void **state)
{
	(void)state;
	enum { N = 64, m = 3, Bc = 80, chunks = 100 };
	float *mu = fvec(N, 120, 1, 0), *sg = fvec(N, 121, 0.5f, 0);
	float *yv = fvec(N, 122, 1, 0);
	double sbar = 0;
	for (int i = 0; i < N; i++) {
		sg[i] = expf(sg[i]);
		yv[i] = mu[i] + sg[i] * yv[i] * 1.5f;
		sbar += sg[i] / N;
	}
	double exact = pno_loss_crps_gauss(NULL, NULL, mu, sg, yv, 1, N);
	float *X = malloc((size_t)Bc * m * N * sizeof *X);
	float *y = malloc((size_t)Bc * N * sizeof *y);
	for (int b = 0; b < Bc; b++)
		memcpy(y + b * N, yv, sizeof(float) * N);
	double v[chunks];
	for (int c = 0; c < chunks; c++) {
		pno_rng_normal(X, (size_t)Bc * m * N, 9, (uint64_t)c, 0);
		for (int b = 0; b < Bc * m; b++)
			for (int i = 0; i < N; i++)
				X[b * N + i] = mu[i] + sg[i] * X[b * N + i];
		v[c] = pno_loss_crps_ens(NULL, X, y, Bc, m, N) - exact;
	}
	double mean, se, bias = sbar / (m * sqrt(M_PI));
	mean_se(v, chunks, &mean, &se);
	printf("crps_ens unbiased: mean - closed form = %.2e (se %.2e); the "
	       "biased estimator would be off by %.3f (%.0f se)\n",
	       mean, se, bias, bias / se);
	assert_true(fabs(mean) < 4 * se);
	assert_true(bias > 20 * se);
	free(mu), free(sg), free(yv), free(X), free(y);
}

/* ---------------------------------------------------------------- (d) */

static int all_equal(const float *g, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&g[i], &v, sizeof v))
			return 0;
	return 1;
}

static void test_edge_cases(void **state)
{
	(void)state;
	enum { B = 2, m = 3, N = 4, nx = B * m * N };
	float *X = fvec(nx, 130, 1, 0), *y = fvec(B * N, 131, 1, 0);
	float *sg = fvec(B * N, 132, 0.1f, 1), g[nx], g2[nx];
	const float sentinel = 12345.0f;
	for (int i = 0; i < nx; i++)
		g[i] = sentinel;
	/* ensemble sizes out of range: NAN, gradient untouched */
	int bad_m[] = {-1, 0, 1, 1025};
	for (int k = 0; k < 4; k++) {
		assert_true(isnan(pno_loss_crps_ens(g, X, y, 1, bad_m[k], 1)));
		assert_err_has("ensemble size");
	}
	assert_true(isnan(pno_loss_energy(g, X, y, B, 1, N)));
	assert_true(isnan(pno_loss_energy(g, X, y, B, 0, N)));
	/* sigma <= 0 or NaN anywhere: NAN, gradients untouched */
	float keep = sg[5];
	float badsg[] = {0.0f, -1.0f, NAN};
	for (int k = 0; k < 3; k++) {
		sg[5] = badsg[k];
		assert_true(isnan(pno_loss_crps_gauss(g, g + 8, y, sg, y, B, N)));
		assert_err_has("sigma[5]");
	}
	sg[5] = keep;
	/* empty or NULL: NAN */
	assert_true(isnan(pno_loss_gauss_nll(g, g, X, X, y, 0, N)));
	assert_true(isnan(pno_loss_gauss_nll(g, g, X, X, y, B, 0)));
	assert_true(isnan(pno_loss_gauss_nll(g, g, NULL, X, y, B, N)));
	assert_true(isnan(pno_loss_crps_gauss(g, g, X, sg, NULL, B, N)));
	assert_true(isnan(pno_loss_crps_ens(g, NULL, y, B, m, N)));
	assert_true(isnan(pno_loss_energy(g, X, NULL, B, m, N)));
	assert_true(isnan(pno_loss_energy(g, X, y, -3, m, N)));
	assert_true(isnan(pno_kl_gauss_softplus(g, g, X, X, 4, 0, 0)));
	assert_true(isnan(pno_kl_gauss_softplus(g, g, X, X, 4, 0, -1)));
	assert_true(isnan(pno_kl_gauss_softplus(g, g, X, X, 4, NAN, 1)));
	assert_true(isnan(pno_kl_gauss_softplus(g, g, NULL, X, 4, 0, 1)));
	assert_true(all_equal(g, nx, sentinel));

	/* each gradient may be NULL alone; a non-NULL one is overwritten */
	float a1[B * N], b1[B * N], a2[B * N], b2[B * N];
	double v0 = pno_loss_gauss_nll(a1, b1, X, sg, y, B, N);
	for (int i = 0; i < B * N; i++)
		a2[i] = b2[i] = sentinel;
	assert_true(pno_loss_gauss_nll(a2, NULL, X, sg, y, B, N) == v0);
	assert_true(pno_loss_gauss_nll(NULL, b2, X, sg, y, B, N) == v0);
	assert_memory_equal(a1, a2, sizeof a1);
	assert_memory_equal(b1, b2, sizeof b1);
	v0 = pno_loss_crps_gauss(a1, b1, X, sg, y, B, N);
	for (int i = 0; i < B * N; i++)
		a2[i] = b2[i] = sentinel;
	assert_true(pno_loss_crps_gauss(a2, NULL, X, sg, y, B, N) == v0);
	assert_true(pno_loss_crps_gauss(NULL, b2, X, sg, y, B, N) == v0);
	assert_memory_equal(a1, a2, sizeof a1);
	assert_memory_equal(b1, b2, sizeof b1);
	v0 = pno_kl_gauss_softplus(a1, b1, X, y, B * N, 0.1f, 0.9f);
	for (int i = 0; i < B * N; i++)
		a2[i] = b2[i] = sentinel;
	assert_true(pno_kl_gauss_softplus(a2, NULL, X, y, B * N, 0.1f, 0.9f) == v0);
	assert_true(pno_kl_gauss_softplus(NULL, b2, X, y, B * N, 0.1f, 0.9f) == v0);
	assert_memory_equal(a1, a2, sizeof a1);
	assert_memory_equal(b1, b2, sizeof b1);
	for (int ens = 0; ens < 2; ens++) {
		v0 = ens ? pno_loss_crps_ens(g, X, y, B, m, N)
			 : pno_loss_energy(g, X, y, B, m, N);
		for (int i = 0; i < nx; i++)
			g2[i] = sentinel;
		assert_true((ens ? pno_loss_crps_ens(g2, X, y, B, m, N)
				 : pno_loss_energy(g2, X, y, B, m, N)) == v0);
		assert_true((ens ? pno_loss_crps_ens(NULL, X, y, B, m, N)
				 : pno_loss_energy(NULL, X, y, B, m, N)) == v0);
		assert_memory_equal(g, g2, sizeof g);
	}

	/* identical samples: zero pair distances, score ||x - y||; and all
	 * equal to y: score 0, gradient 0 */
	for (int j = 1; j < m; j++)
		for (int b = 0; b < B; b++)
			memcpy(X + (b * m + j) * N, X + b * m * N, sizeof(float) * N);
	double ref = 0;
	for (int b = 0; b < B; b++) {
		double s = 0;
		for (int i = 0; i < N; i++) {
			double d = (double)X[b * m * N + i] - y[b * N + i];
			s += d * d;
		}
		ref += sqrt(s / N) / B;
	}
	tu_assert_close(pno_loss_energy(g, X, y, B, m, N), ref, 1e-14);
	for (int i = 0; i < nx; i++)
		assert_true(isfinite(g[i]));
	double e_same = pno_loss_energy(g, X, X, 1, m, N); /* y = the samples */
	assert_true(e_same == 0.0);
	assert_true(all_equal(g, m * N, 0.0f));
	/* distances of a few subnormal ulps: the scale h/dist overflows float,
	 * the gradient must not. m = 2, N = 1, y = 0: d/dx1 = (1 + 1)/2,
	 * d/dx2 = (1 - 1)/2. */
	float tiny[2] = {1e-40f, 2e-40f}, zero = 0, gt[2];
	double et = pno_loss_energy(gt, tiny, &zero, 1, 2, 1);
	tu_assert_close(et, 1e-40, 1e-45);
	tu_assert_close(gt[0], 1.0, 1e-6);
	tu_assert_close(gt[1], 0.0, 1e-6);
	free(X), free(y), free(sg);
}

/* Nothing allocates (the contract for use inside a training step). */
static void test_no_allocation(void **state)
{
	(void)state;
	enum { B = 2, m = 40, N = 8, nx = B * m * N };
	float *X = fvec(nx, 140, 1, 0), *y = fvec(B * N, 141, 1, 0);
	float *sg = fvec(B * N, 142, 0.1f, 1), g[nx], g2[nx];
	tu_alloc_install();
	tu_alloc_reset(0);
	pno_loss_gauss_nll(g, g2, X, sg, y, B, N);
	pno_loss_crps_gauss(g, g2, X, sg, y, B, N);
	pno_loss_crps_ens(g, X, y, B, m, N);
	pno_loss_energy(g, X, y, B, m, N);
	pno_kl_gauss_softplus(g, g2, X, y, B * N, 0, 1);
	long count = tu_alloc_count();
	tu_alloc_uninstall();
	assert_int_equal(count, 0);
	free(X), free(y), free(sg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nll_values),
		cmocka_unit_test(test_crps_gauss_quadrature),
		cmocka_unit_test(test_crps_ens_definition),
		cmocka_unit_test(test_energy_definition),
		cmocka_unit_test(test_energy_chunks),
		cmocka_unit_test(test_kl_values),
		cmocka_unit_test(test_grad_smooth),
		cmocka_unit_test(test_grad_ensemble),
		cmocka_unit_test(test_propriety),
		cmocka_unit_test(test_crps_ens_unbiased),
		cmocka_unit_test(test_edge_cases),
		cmocka_unit_test(test_no_allocation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
