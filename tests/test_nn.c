/* nn: pointwise linear (GEMM vs naive loops, backward vs finite
 * differences) and exact GELU (vs libm erf, derivative vs differences). */
#include "testutil.h"
#include "pno/nn.h"

#include <math.h>
#include <string.h>

static void fill(float *v, size_t n, uint64_t stream)
{
	pno_rng_normal(v, n, 77, stream, 0);
}

/* GEMM against the naive double-accumulated loop. Tolerance 1e-5 relative
 * L2: float32 sums of I = 13 products, each rounding ~6e-8 relative. */
static void test_linear_forward(void **state)
{
	(void)state;
	enum { B = 3, I = 13, O = 7, P = 29 };
	float x[B * I * P], w[O * I], b[O], y[B * O * P], r[B * O * P];
	fill(x, B * I * P, 1);
	fill(w, O * I, 2);
	fill(b, O, 3);
	for (int acc = 0; acc < 2; acc++) {
		for (int withb = 0; withb < 2; withb++) {
			fill(y, B * O * P, 4);
			memcpy(r, y, sizeof y);
			pno_linear_forward(y, x, w, withb ? b : NULL, B, I, O, P, acc);
			pno_linear_forward_naive(r, x, w, withb ? b : NULL, B, I, O, P, acc);
			assert_true(tu_rel_l2(y, r, B * O * P) < 1e-5);
		}
	}
}

/* Loss L = sum(y * g) is linear in x, w and b, so central differences are
 * exact up to rounding: h = 1e-2 and a 1e-3 relative bound (float32 rounding
 * of L ~ 1e-6 |L| divided by 2h). Checks accumulation too. */
static void test_linear_backward(void **state)
{
	(void)state;
	enum { B = 2, I = 5, O = 4, P = 11 };
	float x[B * I * P], w[O * I], b[O], g[B * O * P], y[B * O * P];
	float dx[B * I * P], dw[O * I], db[O];
	fill(x, B * I * P, 5);
	fill(w, O * I, 6);
	fill(b, O, 7);
	fill(g, B * O * P, 8);
	memset(dx, 0, sizeof dx);
	memset(dw, 0, sizeof dw);
	memset(db, 0, sizeof db);
	pno_linear_backward(dx, dw, db, g, x, w, B, I, O, P);
	float *params[3] = {x, w, b}, *grads[3] = {dx, dw, db};
	int sizes[3] = {B * I * P, O * I, O};
	for (int t = 0; t < 3; t++) {
		double num = 0, den = 0;
		for (int i = 0; i < sizes[t]; i++) {
			float keep = params[t][i], h = 1e-2f;
			double lp = 0, lm = 0;
			params[t][i] = keep + h;
			pno_linear_forward_naive(y, x, w, b, B, I, O, P, 0);
			for (int k = 0; k < B * O * P; k++) lp += (double)y[k] * g[k];
			params[t][i] = keep - h;
			pno_linear_forward_naive(y, x, w, b, B, I, O, P, 0);
			for (int k = 0; k < B * O * P; k++) lm += (double)y[k] * g[k];
			params[t][i] = keep;
			double fd = (lp - lm) / (2 * h);
			num += (fd - grads[t][i]) * (fd - grads[t][i]);
			den += fd * fd;
		}
		assert_true(sqrt(num / den) < 1e-3);
	}
	/* accumulation: a second call doubles the gradients */
	float dw2[O * I];
	memcpy(dw2, dw, sizeof dw);
	pno_linear_backward(NULL, dw, NULL, g, x, w, B, I, O, P);
	for (int i = 0; i < O * I; i++)
		tu_assert_close(dw[i], 2 * dw2[i], 1e-5 * (1 + fabs(dw2[i])));
}

/* GELU against x/2 (1 + erf(x/sqrt2)) in double over [-12, 12]. The
 * erfc fit is good to 1.2e-7 and the exponential to a few ulp, but the
 * float32 rounding of z^2 = x^2/2 inside exp(-z^2) adds a relative error of
 * about z^2 * 6e-8: so the bound is 1.5e-7 (4 + x^2). */
static void test_gelu_values(void **state)
{
	(void)state;
	for (int i = -120000; i <= 120000; i++) {
		float x = (float)i * 1e-4f;
		double ref = 0.5 * x * erfc(-(double)x / sqrt(2.0));
		double got = pno_gelu(x);
		if (fabs(ref) < 1e-30)
			continue;
		double rel = fabs(got - ref) / fabs(ref);
		if (!(rel <= 1.5e-7 * (4.0 + (double)x * x)))
			fail_msg("gelu(%g) = %.9g, reference %.9g", x, got, ref);
	}
	/* the vector loop agrees with the scalar function (the compiler may
	 * contract differently into FMAs: a few ulp) */
	float xs[1000], ys[1000];
	for (int i = 0; i < 1000; i++)
		xs[i] = (float)(i - 500) * 0.013f;
	pno_gelu_forward(ys, xs, 1000);
	for (int i = 0; i < 1000; i++)
		tu_assert_close(ys[i], pno_gelu(xs[i]), 1e-6 * (1 + fabs(ys[i])));
	/* tails: gelu(-x) -> 0 from below, gelu(x) -> x */
	assert_true(pno_gelu(-20.0f) <= 0.0f && pno_gelu(-20.0f) > -1e-30f);
	assert_true(pno_gelu(20.0f) == 20.0f);
}

/* d gelu / dx against central differences of the double-precision
 * formula: |err| < 1e-5 (derivative bounded by 1.13; h = 1e-4 gives a
 * truncation error ~1e-9). */
static void test_gelu_grad(void **state)
{
	(void)state;
	enum { N = 2001 };
	static float x[N], dy[N], dx[N], d2[N];
	for (int i = 0; i < N; i++) {
		x[i] = (float)(i - N / 2) * 0.01f;
		dy[i] = 1.0f;
		dx[i] = 0.5f;
		d2[i] = 1.0f;
	}
	pno_gelu_backward(dx, dy, x, N);
	pno_gelu_backward_inplace(d2, x, N);
	for (int i = 0; i < N; i++) {
		double h = 1e-4, v = x[i];
		double fp = 0.5 * (v + h) * erfc(-(v + h) / sqrt(2.0));
		double fm = 0.5 * (v - h) * erfc(-(v - h) / sqrt(2.0));
		double fd = (fp - fm) / (2 * h);
		tu_assert_close(dx[i] - 0.5f, fd, 1e-5);
		tu_assert_close(d2[i], fd, 1e-5);
	}
}

/* Non-finite activations (a diverging model) stay NaN/Inf through GELU and
 * its gradient and never reach the float-to-int conversion of the fast exp
 * with a NaN (undefined behaviour: the sanitizer build aborts on it). */
static void test_gelu_nonfinite(void **state)
{
	(void)state;
	const float x[4] = {NAN, INFINITY, -INFINITY, 1e30f};
	float y[4], d[4] = {1, 1, 1, 1};
	pno_gelu_forward(y, x, 4);
	assert_true(isnan(y[0]));
	assert_true(isinf(y[1]) && y[1] > 0);
	assert_true(y[3] == 1e30f);	/* Phi(1e30) = 1 */
	pno_gelu_backward_inplace(d, x, 4);
	assert_true(isnan(d[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linear_forward),
		cmocka_unit_test(test_linear_backward),
		cmocka_unit_test(test_gelu_values),
		cmocka_unit_test(test_gelu_grad),
		cmocka_unit_test(test_gelu_nonfinite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
