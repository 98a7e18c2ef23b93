/* train: Adam/AdamW against a double-precision transcription of the
 * torch.optim update, clipping, and the relative L2 loss and its gradient. */
#include "testutil.h"
#include "pno/train.h"

#include <math.h>
#include <string.h>

static void adam_ref(double *p, double *m, double *v, const double *g, int n,
		     int t, double lr, double wd, int decoupled)
{
	const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
	for (int i = 0; i < n; i++) {
		double gi = g[i], pi = p[i];
		if (decoupled)
			pi *= 1 - lr * wd;
		else
			gi += wd * pi;
		m[i] = b1 * m[i] + (1 - b1) * gi;
		v[i] = b2 * v[i] + (1 - b2) * gi * gi;
		double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
		p[i] = pi - lr * mh / (sqrt(vh) + eps);
	}
}

/* Five steps of Adam and AdamW against the reference: parameters agree to
 * 1e-6 absolute (steps are ~lr = 1e-2, float32 rounding ~1e-9 per step
 * relative to parameters of size ~1). */
static void test_adam(void **state)
{
	(void)state;
	enum { N = 257 };
	for (int dec = 0; dec < 2; dec++) {
		struct pno_adam o;
		float p[N], g[N];
		double pr[N], mr[N] = {0}, vr[N] = {0}, gr[N];
		assert_int_equal(pno_adam_init(&o, N, 1e-2f, 0.05f, dec), PNO_STATUS_OK);
		pno_rng_normal(p, N, 1, 1, 0);
		for (int i = 0; i < N; i++)
			pr[i] = p[i];
		for (int t = 1; t <= 5; t++) {
			pno_rng_normal(g, N, 2, (uint64_t)t, 0);
			for (int i = 0; i < N; i++)
				gr[i] = g[i];
			pno_adam_step(&o, p, g);
			adam_ref(pr, mr, vr, gr, N, t, 1e-2, 0.05, dec);
		}
		for (int i = 0; i < N; i++)
			tu_assert_close(p[i], pr[i], 1e-6);
		assert_int_equal(o.step, 5);
		pno_adam_free(&o);
	}
}

static void test_clip(void **state)
{
	(void)state;
	float g[4] = {3, 4, 0, 0};
	double n = pno_grad_clip(g, 4, 10.0f);
	tu_assert_close(n, 5.0, 1e-12);
	tu_assert_close(g[0], 3.0, 0);	/* under the bound: untouched */
	n = pno_grad_clip(g, 4, 1.0f);
	tu_assert_close(n, 5.0, 1e-12);
	tu_assert_close(sqrt(g[0] * g[0] + g[1] * g[1]), 1.0, 1e-5);
	float bad[2] = {NAN, 1};
	assert_true(isnan(pno_grad_clip(bad, 2, 1.0f)));
}

/* Loss value against a brute-force double computation; gradient against
 * central differences in double of the brute-force loss (|err| < 1e-4
 * relative: float32 gradient values). */
static double rel_l2_ref(const float *p, const float *y, int B, int N,
			 int perturb_idx, double h)
{
	double tot = 0;
	for (int b = 0; b < B; b++) {
		double nd = 0, ny = 0;
		for (int i = 0; i < N; i++) {
			double pv = p[b * N + i] + (b * N + i == perturb_idx ? h : 0);
			nd += (pv - y[b * N + i]) * (pv - y[b * N + i]);
			ny += (double)y[b * N + i] * y[b * N + i];
		}
		tot += sqrt(nd) / sqrt(ny);
	}
	return tot / B;
}

static void test_rel_l2(void **state)
{
	(void)state;
	enum { B = 3, N = 50 };
	float p[B * N], y[B * N], d[B * N];
	pno_rng_normal(p, B * N, 3, 0, 0);
	pno_rng_normal(y, B * N, 4, 0, 0);
	double l = pno_loss_rel_l2(d, p, y, B, N);
	tu_assert_close(l, rel_l2_ref(p, y, B, N, -1, 0), 1e-9);
	double num = 0, den = 0;
	for (int i = 0; i < B * N; i++) {
		double fd = (rel_l2_ref(p, y, B, N, i, 1e-6) -
			     rel_l2_ref(p, y, B, N, i, -1e-6)) / 2e-6;
		num += (fd - d[i]) * (fd - d[i]);
		den += fd * fd;
	}
	assert_true(sqrt(num / den) < 1e-4);
	/* perfect prediction: zero loss, zero gradient */
	assert_true(pno_loss_rel_l2(d, y, y, B, N) == 0.0);
	for (int i = 0; i < B * N; i++)
		assert_true(d[i] == 0.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adam),
		cmocka_unit_test(test_clip),
		cmocka_unit_test(test_rel_l2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
