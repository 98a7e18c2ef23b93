/* fno stochastic and probabilistic parts: gradient checks with every
 * dropout kind and the mean-scale heads (1D, 2D, both spectral paths),
 * mask statistics and the documented mask bits, Fourier dropout against a
 * naive DFT, the deterministic mode, reproducibility of sampling, the
 * scale head, argument checks, files, allocation failures. */
#include "testutil.h"
#include "pno/fno.h"
#include "pno/loss.h"
#include "pno/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum kind { K_NONE, K_LIFT, K_HIDDEN, K_PROJ, K_FOURIER, K_ALL, K_HEADS };
static const char *kind_name[] = {"none", "lift", "hidden", "proj", "fourier",
				  "all", "heads"};

static struct pno_fno_arch arch_of(int dims, enum kind k, float p)
{
	struct pno_fno_arch a = {.dims = dims, .in_ch = 1, .out_ch = 2,
				 .width = 6, .modes1 = 3, .modes2 = 3,
				 .layers = 3, .proj_hidden = 8};
	if (k == K_LIFT || k == K_ALL)
		a.p_lift = p;
	if (k == K_HIDDEN || k == K_ALL)
		a.p_hidden = p;
	if (k == K_PROJ || k == K_ALL)
		a.p_proj = p;
	if (k == K_FOURIER || k == K_ALL)
		a.p_fourier = p;
	if (k == K_HEADS || k == K_ALL)
		a.heads = 2;
	return a;
}

static float *randn(size_t n, uint64_t stream)
{
	float *v = malloc(n * sizeof *v);
	assert_non_null(v);
	pno_rng_normal(v, n, 77, stream, 0);
	return v;
}

static size_t out_count(const struct pno_fno *m, int B)
{
	return (size_t)B * pno_fno_out_channels(&m->arch) * m->P;
}

/* Every tensor's gradient against central differences with the masks
 * held fixed, h = 1e-2 of the tensor's largest entry. Normalized error
 * ||g_fd - g|| / ||g_fd|| below 2e-2 as in test_fno: float32 rounding of L
 * over 2h and the O(h^2) curvature of GELU / softplus bound what the
 * differences resolve; a missing or misplaced mask gives errors of order
 * 1 (checked: leaving out the backward mask of any kind fails). The probe
 * L = sum(out * r) redraws the masks from key 5 at every call
 * (tu_fno_probe), so the differences see the masks of the backward.
 * Returns the largest error. */
static double grad_check(int dims, enum kind k, enum pno_spectral_path path)
{
	struct pno_fno m;
	struct pno_fno_arch a = arch_of(dims, k, 0.3f);
	int X = dims == 1 ? 16 : 12, Y = dims == 1 ? 1 : 10, B = 2;
	assert_status(pno_fno_init(&m, &a, X, Y, B, 11), PNO_STATUS_OK);
	assert_status(pno_spectral_set_path(&m.spec, path), PNO_STATUS_OK);
	m.stochastic = 1;
	m.norm.in_mean[0] = 0.3f, m.norm.in_std[0] = 1.7f;
	m.norm.out_mean[0] = -0.2f, m.norm.out_std[0] = 0.6f;
	m.norm.out_mean[1] = 0.1f, m.norm.out_std[1] = 1.3f;
	size_t P = (size_t)m.P;
	float *x = randn(B * P, 1), *r = randn(out_count(&m, B), 2);
	for (int l = 0; l < a.layers; l++)
		for (size_t i = 0; i < pno_spectral_weight_count(&m.spec); i++)
			m.p.spec_w[l][i] *= 20.0f;
	pno_fno_zero_grad(&m);
	tu_fno_probe(&m, x, r, B);
	assert_int_equal(m.masked, k != K_NONE && k != K_HEADS);
	pno_fno_backward(&m, r, B);
	double worst = 0;
	int nt = pno_fno_tensor_count(&m);
	for (int t = 0; t < nt; t++) {
		char name[48];
		double err = tu_fno_grad_error(&m, t, x, r, B, 12, name);
		if (!(err < 2e-2))
			fail_msg("%dD %s (%s path) tensor %s: normalized "
				 "gradient error %.3g", dims, kind_name[k],
				 path == PNO_SPECTRAL_PATH_FFTW ? "FFTW" : "GEMM",
				 name, err);
		worst = fmax(worst, err);
	}
	free(x);
	free(r);
	pno_fno_free(&m);
	return worst;
}

static void test_grad(void **state)
{
	(void)state;
	/* thousands of tiny forwards: one thread (no fork-join overhead) */
	int thr0 = pno_threads_get();
	pno_threads_set(1);
	for (int dims = 1; dims <= 2; dims++)
		for (int k = K_LIFT; k <= K_HEADS; k++) {
			double e = grad_check(dims, (enum kind)k,
					      PNO_SPECTRAL_PATH_GEMM);
			print_message("grad %dD %-8s GEMM: max error %.2e\n",
				      dims, kind_name[k], e);
		}
	for (int dims = 1; dims <= 2; dims++) {
		double e = grad_check(dims, K_ALL, PNO_SPECTRAL_PATH_FFTW);
		print_message("grad %dD all      FFTW: max error %.2e\n", dims,
			      e);
	}
	pno_threads_set(thr0);
}

/* Dropped fraction per kind within 5 binomial standard deviations of p;
 * the masked activations are exactly the unmasked ones times
 * keep / (1 - p) (so E = unmasked); and each mask bit is the documented
 * Philox word compared with round(p 2^32). */
static void check_fraction(const uint8_t *keep, size_t n, double p,
			   const char *what)
{
	size_t drop = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(keep[i] == 0 || keep[i] == 1);
		drop += !keep[i];
	}
	double f = (double)drop / n, sd = sqrt(p * (1 - p) / n);
	print_message("%-8s dropped %.4f of %zu (p %.2f, %.1f sd)\n", what,
		      f, n, p, (f - p) / sd);
	if (!(fabs(f - p) < 5 * sd))
		fail_msg("%s: dropped fraction %.4f, p %.2f, 5 sd %.4f", what,
			 f, p, 5 * sd);
	/* the mean of keep/(1-p) is 1 within the same error */
	double mean = (1 - f) / (1 - p);
	assert_true(fabs(mean - 1) < 5 * sd / (1 - p));
}

static void check_bits(const uint8_t *keep, size_t n, int B, uint64_t key,
		       uint64_t stream, int id, uint64_t b0, float p)
{
	uint32_t thr = (uint32_t)nearbyint((double)p * 4294967296.0);
	for (int b = 0; b < B; b++)
		for (size_t e = 0; e < n; e++) {
			uint32_t w[4];
			pno_philox4x32(w, key,
				       ((b0 + (uint64_t)b) << 32) + (e >> 2),
				       ((uint64_t)1 << 62) + stream * 64 +
					       (uint64_t)id);
			int want = w[e & 3] >= thr;
			if (keep[(size_t)b * n + e] != want)
				fail_msg("mask %d, sample %d, element %zu: %d, "
					 "documented bits give %d", id, b, e,
					 keep[(size_t)b * n + e], want);
		}
}

/* a == (keep ? b * scale : 0) bit for bit, scale = 1/(1-p) in float */
static void check_applied(const float *a, const float *b,
			  const uint8_t *keep, size_t n, float p)
{
	float scale = (float)(1.0 / (1.0 - (double)p));
	for (size_t i = 0; i < n; i++) {
		float want = b[i] * (keep[i] ? scale : 0.0f);
		if (memcmp(&a[i], &want, sizeof want) != 0)
			fail_msg("element %zu: %.9g, want %.9g", i, a[i], want);
	}
}

static void test_mask_stats(void **state)
{
	(void)state;
	struct pno_fno m;
	struct pno_fno_arch a = arch_of(2, K_ALL, 0.2f);
	a.p_proj = 0.35f;
	a.p_fourier = 0.1f;
	int B = 4;
	assert_status(pno_fno_init(&m, &a, 32, 24, B, 3), PNO_STATUS_OK);
	size_t P = (size_t)m.P, W = (size_t)a.width, H = (size_t)a.proj_hidden;
	size_t K = (size_t)m.spec.K, nw = B * W * P;
	float *x = randn(B * P, 3), *t = malloc(B * H * P * sizeof *t);
	m.stochastic = 1;
	pno_fno_set_rng(&m, 99);
	pno_fno_forward(&m, x, B);	/* stream 0 */
	pno_fno_forward(&m, x, B);	/* stream 1: the one checked */
	assert_true(m.rng_calls == 2);
	check_fraction(m.mask_lift, nw, a.p_lift, "lift");
	for (int l = 0; l < a.layers - 1; l++)
		check_fraction(m.mask_hidden[l], nw, a.p_hidden, "hidden");
	assert_null(m.mask_hidden[a.layers - 1]);
	check_fraction(m.mask_proj, B * H * P, a.p_proj, "proj");
	for (int l = 0; l < a.layers; l++)
		check_fraction(m.mask_fourier[l], B * W * K, a.p_fourier,
			       "fourier");
	check_bits(m.mask_lift, W * P, B, 99, 1, 0, 0, a.p_lift);
	check_bits(m.mask_hidden[1], W * P, B, 99, 1, 2, 0, a.p_hidden);
	check_bits(m.mask_proj, H * P, B, 99, 1, 17, 0, a.p_proj);
	check_bits(m.mask_fourier[2], W * K, B, 99, 1, 20, 0, a.p_fourier);
	/* masked activations: exactly the unmasked times keep / (1 - p) */
	for (int l = 0; l < a.layers - 1; l++) {
		pno_gelu_forward(t, m.pre[l], nw);
		check_applied(m.h[l + 1], t, m.mask_hidden[l], nw, a.p_hidden);
	}
	pno_gelu_forward(t, m.q, B * H * P);
	check_applied(m.qa, t, m.mask_proj, B * H * P, a.p_proj);
	/* the lift: against a deterministic forward's h[0] */
	float *h0 = malloc(nw * sizeof *h0);
	memcpy(h0, m.h[0], nw * sizeof *h0);
	uint8_t *keep = malloc(nw);
	memcpy(keep, m.mask_lift, nw);
	m.stochastic = 0;
	pno_fno_forward(&m, x, B);
	assert_int_equal(m.masked, 0);
	assert_true(m.rng_calls == 2);
	check_applied(h0, m.h[0], keep, nw, a.p_lift);
	/* two forwards draw different masks: agreement ~ p^2 + (1-p)^2 */
	m.stochastic = 1;
	pno_fno_forward(&m, x, B);
	size_t same = 0;
	for (size_t i = 0; i < nw; i++)
		same += keep[i] == m.mask_lift[i];
	double agree = (double)same / nw, pa = 0.2 * 0.2 + 0.8 * 0.8;
	assert_true(fabs(agree - pa) < 5 * sqrt(pa * (1 - pa) / nw));
	free(keep);
	free(h0);
	free(t);
	free(x);
	pno_fno_free(&m);
}

/* Mode (row frequency, column) of retained mode k, as spectral.h states. */
static void mode_freq(const struct pno_spectral *s, int k, int *fr, int *fc)
{
	if (s->dims == 1) {
		*fr = 0, *fc = k;
		return;
	}
	int r = k / s->M2;
	*fc = k % s->M2;
	*fr = r < s->M1 ? r : s->X - 2 * s->M1 + r;
}

/* One-layer model: its block output pre[0] must be the inverse DFT of the
 * masked mixed modes of h[0] plus the pointwise path, all computed here
 * in double from the definitions. Tolerance 2e-5 of the output's largest
 * magnitude: float32 transforms of a few hundred points against double. */
static void fourier_case(int dims, enum pno_spectral_path path)
{
	struct pno_fno m;
	struct pno_fno_arch a = arch_of(dims, K_FOURIER, 0.5f);
	a.layers = 1;
	int X = dims == 1 ? 20 : 12, Y = dims == 1 ? 1 : 9, B = 3;
	assert_status(pno_fno_init(&m, &a, X, Y, B, 8), PNO_STATUS_OK);
	assert_status(pno_spectral_set_path(&m.spec, path), PNO_STATUS_OK);
	for (size_t i = 0; i < pno_spectral_weight_count(&m.spec); i++)
		m.p.spec_w[0][i] *= 30.0f;
	m.stochastic = 1;
	pno_fno_set_rng(&m, 4);
	float *x = randn((size_t)B * m.P, 9);
	pno_fno_forward(&m, x, B);
	const struct pno_spectral *s = &m.spec;
	int W = a.width, K = s->K, R = dims == 2 ? X : 1, Ln = dims == 2 ? Y : X;
	size_t N = (size_t)m.P;
	double *xh = calloc((size_t)B * W * K * 2, sizeof *xh);
	double *yh = calloc((size_t)B * W * K * 2, sizeof *yh);
	double scale = 1.0 / (1.0 - 0.5), maxv = 0, maxerr = 0, maxunm = 0;
	for (int bi = 0; bi < B * W; bi++)
		for (int k = 0; k < K; k++) {
			int fr, fc;
			mode_freq(s, k, &fr, &fc);
			double re = 0, im = 0;
			for (int u = 0; u < R; u++)
				for (int v = 0; v < Ln; v++) {
					double th = 2 * M_PI * ((double)fr * u / R +
								(double)fc * v / Ln);
					double val = m.h[0][(size_t)bi * N + (size_t)u * Ln + v];
					re += val * cos(th);
					im -= val * sin(th);
				}
			xh[((size_t)bi * K + k) * 2] = re;
			xh[((size_t)bi * K + k) * 2 + 1] = im;
		}
	int dropped = 0;
	for (int b = 0; b < B; b++)
		for (int o = 0; o < W; o++)
			for (int k = 0; k < K; k++) {
				double re = 0, im = 0;
				for (int i = 0; i < W; i++) {
					const double *p = xh + (((size_t)b * W + i) * K + k) * 2;
					const float *q = m.p.spec_w[0] + (((size_t)i * W + o) * K + k) * 2;
					re += p[0] * q[0] - p[1] * q[1];
					im += p[0] * q[1] + p[1] * q[0];
				}
				uint8_t kp = m.mask_fourier[0][((size_t)b * W + o) * K + k];
				dropped += !kp;
				double f = kp ? scale : 0;
				yh[(((size_t)b * W + o) * K + k) * 2] = re * f;
				yh[(((size_t)b * W + o) * K + k) * 2 + 1] = im * f;
			}
	assert_true(dropped > 0 && dropped < B * W * K);
	/* deterministic forward of the same input: the unmasked layer */
	float *unm = malloc((size_t)B * W * N * sizeof *unm);
	float *masked = malloc((size_t)B * W * N * sizeof *masked);
	memcpy(masked, m.pre[0], (size_t)B * W * N * sizeof *masked);
	m.stochastic = 0;
	pno_fno_forward(&m, x, B);
	memcpy(unm, m.pre[0], (size_t)B * W * N * sizeof *unm);
	for (int b = 0; b < B; b++)
		for (int o = 0; o < W; o++)
			for (int u = 0; u < R; u++)
				for (int v = 0; v < Ln; v++) {
					double acc = 0;
					for (int k = 0; k < K; k++) {
						int fr, fc;
						mode_freq(s, k, &fr, &fc);
						double hw = (fc == 0 || 2 * fc == Ln) ? 1 : 2;
						double th = 2 * M_PI * ((double)fr * u / R +
									(double)fc * v / Ln);
						const double *z = yh + (((size_t)b * W + o) * K + k) * 2;
						acc += hw * (z[0] * cos(th) - z[1] * sin(th));
					}
					acc /= (double)N;
					size_t pi = (size_t)u * Ln + v;
					/* + pointwise path W h + b */
					acc += m.p.pw_b[0][o];
					for (int i = 0; i < W; i++)
						acc += (double)m.p.pw_w[0][o * W + i] *
						       m.h[0][((size_t)b * W + i) * N + pi];
					size_t idx = ((size_t)b * W + o) * N + pi;
					maxv = fmax(maxv, fabs(acc));
					maxerr = fmax(maxerr, fabs(acc - masked[idx]));
					maxunm = fmax(maxunm, fabs(acc - unm[idx]));
				}
	print_message("fourier %dD %s: max |naive - model| %.2e of max %.2f "
		      "(unmasked differs by %.2f)\n", dims,
		      path == PNO_SPECTRAL_PATH_FFTW ? "FFTW" : "GEMM",
		      maxerr, maxv, maxunm);
	assert_true(maxerr < 2e-5 * maxv);
	assert_true(maxunm > 1e-2 * maxv);	/* the mask matters */
	free(unm);
	free(masked);
	free(xh);
	free(yh);
	free(x);
	pno_fno_free(&m);
}

static void test_fourier_naive(void **state)
{
	(void)state;
	for (int dims = 1; dims <= 2; dims++) {
		fourier_case(dims, PNO_SPECTRAL_PATH_GEMM);
		fourier_case(dims, PNO_SPECTRAL_PATH_FFTW);
	}
}

/* stochastic = 0: bit-identical to the plain FNO (all p = 0, heads 1) with
 * the same init seed, forward and gradients; heads 0 and 1 are the same
 * model; the heads = 2 mean channel matches the heads = 1 output (its
 * weights are the same draws) to float rounding. */
static void test_deterministic_mode(void **state)
{
	(void)state;
	for (int dims = 1; dims <= 2; dims++) {
		struct pno_fno m0, m1, m2, m3;
		struct pno_fno_arch a0 = arch_of(dims, K_NONE, 0);
		struct pno_fno_arch a1 = arch_of(dims, K_ALL, 0.4f);
		a1.heads = 1;
		struct pno_fno_arch a3 = a0;
		a3.heads = 0;
		struct pno_fno_arch a2 = arch_of(dims, K_HEADS, 0);
		int X = 16, Y = dims == 2 ? 12 : 1, B = 2;
		assert_status(pno_fno_init(&m0, &a0, X, Y, B, 21), PNO_STATUS_OK);
		assert_status(pno_fno_init(&m1, &a1, X, Y, B, 21), PNO_STATUS_OK);
		assert_status(pno_fno_init(&m2, &a2, X, Y, B, 21), PNO_STATUS_OK);
		assert_status(pno_fno_init(&m3, &a3, X, Y, B, 21), PNO_STATUS_OK);
		assert_int_equal(m0.n_params, m1.n_params);
		assert_memory_equal(m0.params, m1.params, m0.n_params * 4);
		size_t n = out_count(&m0, B);
		float *x = randn((size_t)B * m0.P, 4), *r = randn(n, 5);
		float *o0 = malloc(n * sizeof *o0);
		memcpy(o0, pno_fno_forward(&m0, x, B), n * sizeof *o0);
		m1.stochastic = 0;
		assert_memory_equal(o0, pno_fno_forward(&m1, x, B), n * 4);
		assert_memory_equal(o0, pno_fno_forward(&m3, x, B), n * 4);
		pno_fno_zero_grad(&m0);
		pno_fno_zero_grad(&m1);
		pno_fno_backward(&m0, r, B);
		pno_fno_backward(&m1, r, B);
		assert_memory_equal(m0.grads, m1.grads, m0.n_params * 4);
		const float *o2 = pno_fno_forward(&m2, x, B);
		size_t per = (size_t)a0.out_ch * m0.P;
		for (int b = 0; b < B; b++)
			assert_true(tu_max_abs_diff(o2 + 2 * b * per,
						    o0 + b * per, per) < 1e-5);
		free(o0);
		free(x);
		free(r);
		pno_fno_free(&m0);
		pno_fno_free(&m1);
		pno_fno_free(&m2);
		pno_fno_free(&m3);
	}
}

/* Sampling: the same seed gives the same bits; another seed differs;
 * sample i is the same whatever S and Bmax (its masks are those of global
 * index i: checked to the bit on the masks and on the outputs); the
 * forward counter and the stochastic flag are left alone; the samples
 * agree with forwards of the same masks. */
static void test_sampling_repro(void **state)
{
	(void)state;
	struct pno_fno m, m5;
	struct pno_fno_arch a = arch_of(2, K_ALL, 0.2f);
	int X = 16, Y = 12, S = 7;
	assert_status(pno_fno_init(&m, &a, X, Y, 3, 13), PNO_STATUS_OK);
	assert_status(pno_fno_init(&m5, &a, X, Y, 8, 13), PNO_STATUS_OK);
	size_t per = (size_t)pno_fno_out_channels(&a) * m.P;
	float *x = randn((size_t)m.P, 6);
	float *s1 = malloc(S * per * 4), *s2 = malloc(S * per * 4);
	float *s3 = malloc(S * per * 4), *s4 = malloc(S * per * 4);
	m.rng_calls = 17;
	assert_status(pno_fno_sample(&m, s1, x, S, 1234), PNO_STATUS_OK);
	assert_true(m.rng_calls == 17 && m.stochastic == 0);
	assert_status(pno_fno_sample(&m, s2, x, S, 1234), PNO_STATUS_OK);
	assert_memory_equal(s1, s2, S * per * 4);
	/* last chunk (samples 6) masks: documented bits, sample index 6 */
	check_bits(m.mask_lift, (size_t)a.width * m.P, 1, 1234,
		   ((uint64_t)1 << 56) - 1, 0, 6, a.p_lift);
	assert_status(pno_fno_sample(&m, s3, x, S, 1235), PNO_STATUS_OK);
	assert_true(tu_max_abs_diff(s1, s3, S * per) > 1e-3);
	/* other Bmax, other S: the same masks (bits checked above), so the
	 * same samples up to float rounding (the transforms of a batch of 8
	 * and of 3 may round differently: BLAS blocking depends on the
	 * sizes); relative 1e-5 of the output scale */
	assert_status(pno_fno_sample(&m5, s4, x, 5, 1234), PNO_STATUS_OK);
	check_bits(m5.mask_proj, (size_t)a.proj_hidden * m.P, 5, 1234,
		   ((uint64_t)1 << 56) - 1, 17, 0, a.p_proj);
	double scl = 0;
	for (size_t i = 0; i < 5 * per; i++)
		scl = fmax(scl, fabs(s1[i]));
	double dd = tu_max_abs_diff(s1, s4, 5 * per);
	print_message("sample prefix, Bmax 3 vs 8: max diff %.2e of %.2f\n",
		      dd, scl);
	assert_true(dd <= 1e-5 * scl);
	/* samples are distinct from each other */
	for (int i = 1; i < S; i++)
		assert_true(tu_max_abs_diff(s1, s1 + i * per, per) > 1e-4);
	/* forwards: same seed, same sequence of masks and outputs */
	float *f = malloc(2 * per * 4);
	float *xx = malloc(2 * (size_t)m.P * 4);
	memcpy(xx, x, m.P * 4);
	memcpy(xx + m.P, x, m.P * 4);
	m.stochastic = 1;
	pno_fno_set_rng(&m, 42);
	pno_fno_forward(&m, xx, 2);
	memcpy(f, pno_fno_forward(&m, xx, 2), 2 * per * 4);
	pno_fno_set_rng(&m, 42);
	pno_fno_forward(&m, xx, 2);
	assert_memory_equal(f, pno_fno_forward(&m, xx, 2), 2 * per * 4);
	/* two copies in one batch get different masks */
	assert_true(tu_max_abs_diff(f, f + per, per) > 1e-4);
	/* masks do not depend on the thread count */
	int thr0 = pno_threads_get();
	uint8_t *k1 = malloc(2 * (size_t)a.proj_hidden * m.P);
	for (int nt = 1; nt <= 2; nt++) {
		pno_threads_set(nt);
		pno_fno_set_rng(&m, 42);
		pno_fno_forward(&m, xx, 2);
		if (nt == 1)
			memcpy(k1, m.mask_proj, 2 * (size_t)a.proj_hidden * m.P);
		else
			assert_memory_equal(k1, m.mask_proj,
					    2 * (size_t)a.proj_hidden * m.P);
	}
	pno_threads_set(thr0);
	/* argument checks */
	assert_status(pno_fno_sample(&m, s1, x, 0, 1), PNO_STATUS_INVALID);
	assert_err_has("S = 0");
	assert_status(pno_fno_sample(&m, NULL, x, 1, 1), PNO_STATUS_INVALID);
	free(k1);
	free(f);
	free(xx);
	free(s1);
	free(s2);
	free(s3);
	free(s4);
	free(x);
	pno_fno_free(&m);
	pno_fno_free(&m5);
}

/* heads = 2: sigma > 0 even for a very negative s (softplus underflows to
 * ~0, the 1e-6 floor remains) and finite for a large one; the sigma
 * channels are (softplus(s) + 1e-6) * out_std; d sigma / d s =
 * sigmoid(s) out_std checked through the proj2 bias gradient (closed form,
 * relative 1e-5: float sums of a few hundred terms) and against central
 * differences of the sigma sum (relative 1e-3: h = 1e-2, float32 sums). */
static void test_scale_head(void **state)
{
	(void)state;
	struct pno_fno m;
	struct pno_fno_arch a = arch_of(1, K_HEADS, 0);
	int B = 2, X = 32;
	assert_status(pno_fno_init(&m, &a, X, 1, B, 2), PNO_STATUS_OK);
	m.norm.out_std[0] = 2.0f, m.norm.out_std[1] = 0.5f;
	size_t P = (size_t)m.P, per = 4 * P;
	float *x = randn(B * P, 7);
	float bias[3] = {-200.0f, 0.3f, 60.0f};
	for (int t = 0; t < 3; t++) {
		m.p.proj2_b[2] = bias[t];
		m.p.proj2_b[3] = -bias[t];
		const float *o = pno_fno_forward(&m, x, B);
		for (int b = 0; b < B; b++)
			for (int c = 0; c < 2; c++)
				for (size_t p = 0; p < P; p++) {
					float sg = o[b * per + (2 + c) * P + p];
					double s = m.raw[b * per + (2 + c) * P + p];
					double want = (pno_softplus(s) + 1e-6) *
						      m.norm.out_std[c];
					assert_true(sg > 0 && isfinite(sg));
					assert_true(fabs(sg - want) <= 1e-6 * want);
				}
	}
	m.p.proj2_b[2] = 0.3f;
	m.p.proj2_b[3] = -0.7f;
	float *d = calloc(B * per, sizeof *d);
	for (int b = 0; b < B; b++)
		for (size_t p = 0; p < 2 * P; p++)
			d[b * per + 2 * P + p] = 1.0f;	/* L = sum of sigmas */
	pno_fno_forward(&m, x, B);
	double want[2] = {0, 0};
	for (int b = 0; b < B; b++)
		for (int c = 0; c < 2; c++)
			for (size_t p = 0; p < P; p++)
				want[c] += m.norm.out_std[c] *
					   pno_sigmoid(m.raw[b * per + (2 + c) * P + p]);
	pno_fno_zero_grad(&m);
	pno_fno_backward(&m, d, B);
	for (int c = 0; c < 2; c++) {
		tu_assert_close(m.g.proj2_b[2 + c], want[c], 1e-5 * fabs(want[c]));
		/* mean-channel biases get nothing from a sigma-only loss */
		assert_true(m.g.proj2_b[c] == 0.0f);
		float keep = m.p.proj2_b[2 + c], h = 1e-2f;
		double l[2];
		for (int sgn = 0; sgn < 2; sgn++) {
			m.p.proj2_b[2 + c] = keep + (sgn ? -h : h);
			const float *o = pno_fno_forward(&m, x, B);
			l[sgn] = 0;
			for (size_t i = 0; i < B * per; i++)
				l[sgn] += (double)o[i] * d[i];
		}
		m.p.proj2_b[2 + c] = keep;
		double fd = (l[0] - l[1]) / (2.0 * h);
		tu_assert_close(fd, want[c], 1e-3 * fabs(want[c]));
	}
	free(d);
	free(x);
	pno_fno_free(&m);
}

static void test_arch_check(void **state)
{
	(void)state;
	struct pno_fno m;
	struct {
		enum kind k;
		float p;
		const char *name;
	} bad[] = {{K_LIFT, 1.0f, "p_lift"}, {K_HIDDEN, -0.1f, "p_hidden"},
		   {K_PROJ, NAN, "p_proj"}, {K_FOURIER, 1.5f, "p_fourier"},
		   {K_FOURIER, INFINITY, "p_fourier"}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct pno_fno_arch a = arch_of(1, bad[i].k, bad[i].p);
		assert_status(pno_fno_init(&m, &a, 16, 1, 2, 0),
			      PNO_STATUS_INVALID);
		assert_err_has(bad[i].name);
	}
	struct pno_fno_arch a = arch_of(1, K_NONE, 0);
	a.heads = 3;
	assert_status(pno_fno_arch_check(&a), PNO_STATUS_INVALID);
	assert_err_has("heads");
	a.heads = -1;
	assert_status(pno_fno_arch_check(&a), PNO_STATUS_INVALID);
	a = arch_of(1, K_LIFT, 0.999999f);
	assert_status(pno_fno_arch_check(&a), PNO_STATUS_OK);
	pno_fno_free(&m);
}

/* Files: the new fields round-trip; a heads = 2 model loads with the same
 * outputs; an architecture without the new fields (an older file) parses
 * with them zero; a bad field type is refused. */
static void test_files(void **state)
{
	(void)state;
	struct pno_fno m, m2;
	struct pno_fno_arch a = arch_of(2, K_ALL, 0.15f), b;
	a.p_hidden = 0.1f, a.p_fourier = 1.0f / 3.0f;
	char *js = pno_fno_arch_json(&a);
	assert_non_null(js);
	assert_status(pno_fno_arch_parse(&b, js), PNO_STATUS_OK);
	assert_memory_equal(&a, &b, sizeof a);
	pno_free(js);
	assert_status(pno_fno_arch_parse(&b, "{\"dims\":1,\"in_channels\":1,"
				      "\"out_channels\":1,\"width\":4,\"modes1\":3,"
				      "\"modes2\":0,\"layers\":2,\"proj_hidden\":8}"),
		      PNO_STATUS_OK);
	assert_int_equal(b.heads, 0);
	assert_true(b.p_lift == 0 && b.p_hidden == 0 && b.p_proj == 0 &&
		    b.p_fourier == 0);
	assert_status(pno_fno_arch_parse(&b, "{\"dims\":1,\"in_channels\":1,"
				      "\"out_channels\":1,\"width\":4,\"modes1\":3,"
				      "\"modes2\":0,\"layers\":2,\"proj_hidden\":8,"
				      "\"p_proj\":\"x\"}"),
		      PNO_STATUS_FORMAT);
	assert_err_has("p_proj");
	assert_status(pno_fno_arch_parse(&b, "{\"dims\":1,\"in_channels\":1,"
				      "\"out_channels\":1,\"width\":4,\"modes1\":3,"
				      "\"modes2\":0,\"layers\":2,\"proj_hidden\":8,"
				      "\"heads\":5}"),
		      PNO_STATUS_INVALID);

	const char *path = tu_tmp_path("stoch.safetensors");
	unlink(path);
	assert_status(pno_fno_init(&m, &a, 12, 10, 2, 9), PNO_STATUS_OK);
	m.norm.out_std[1] = 3.0f;
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	assert_status(pno_fno_load(&m2, path, 0, 0, 2), PNO_STATUS_OK);
	assert_memory_equal(&m.arch, &m2.arch, sizeof m.arch);
	int64_t shape[8];
	pno_fno_tensor_info(&m2, pno_fno_tensor_count(&m2) - 2, NULL, 0, NULL,
			    shape, NULL, NULL);
	assert_int_equal(shape[0], 4);
	size_t n = out_count(&m, 2);
	float *x = randn(2 * (size_t)m.P, 1), *o = malloc(n * 4);
	memcpy(o, pno_fno_forward(&m, x, 2), n * 4);
	assert_memory_equal(o, pno_fno_forward(&m2, x, 2), n * 4);
	float *s1 = malloc(3 * n * 4), *s2 = malloc(3 * n * 4);
	assert_status(pno_fno_sample(&m, s1, x, 3, 8), PNO_STATUS_OK);
	assert_status(pno_fno_sample(&m2, s2, x, 3, 8), PNO_STATUS_OK);
	assert_memory_equal(s1, s2, 3 * n / 2 * 4);
	free(s1);
	free(s2);
	free(o);
	free(x);
	pno_fno_free(&m);
	pno_fno_free(&m2);
	unlink(path);
}

/* init with every new field + a stochastic forward / backward + sampling
 * (the file paths' failures are test_fno's allocation loop; the new
 * fields only add JSON numbers there). */
static enum pno_status run_all(const struct pno_fno_arch *a, const float *x,
			       float *buf)
{
	struct pno_fno m;
	enum pno_status s = pno_fno_init(&m, a, 12, 10, 2, 1);
	if (s != PNO_STATUS_OK)
		return s;
	m.stochastic = 1;
	pno_fno_forward(&m, x, 2);
	pno_fno_backward(&m, buf, 2);
	s = pno_fno_sample(&m, buf, x, 3, 1);
	pno_fno_free(&m);
	return s;
}

static void test_alloc_failure(void **state)
{
	(void)state;
	struct pno_fno_arch a = arch_of(2, K_ALL, 0.2f);
	float *x = randn(2 * 120, 1), *buf = calloc(3 * 4 * 120, sizeof *buf);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(run_all(&a, x, buf), live0))
			break;
	}
	assert_true(k > 3);
	/* after init, forward / backward / sample allocate nothing */
	struct pno_fno m;
	tu_alloc_reset(0);
	assert_status(pno_fno_init(&m, &a, 12, 10, 2, 1), PNO_STATUS_OK);
	tu_alloc_reset(0);
	m.stochastic = 1;
	pno_fno_forward(&m, x, 2);
	pno_fno_backward(&m, buf, 2);
	assert_status(pno_fno_sample(&m, buf, x, 3, 1), PNO_STATUS_OK);
	assert_int_equal(tu_alloc_count(), 0);
	pno_fno_free(&m);
	tu_alloc_uninstall();
	free(x);
	free(buf);
}

static double t_start;
static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int tic(void **state) { (void)state; t_start = now_s(); return 0; }
static int toc(void **state)
{
	(void)state;
	print_message("  (%.2f s)\n", now_s() - t_start);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_grad, tic, toc),
		cmocka_unit_test_setup_teardown(test_mask_stats, tic, toc),
		cmocka_unit_test_setup_teardown(test_fourier_naive, tic, toc),
		cmocka_unit_test_setup_teardown(test_deterministic_mode, tic, toc),
		cmocka_unit_test_setup_teardown(test_sampling_repro, tic, toc),
		cmocka_unit_test_setup_teardown(test_scale_head, tic, toc),
		cmocka_unit_test_setup_teardown(test_arch_check, tic, toc),
		cmocka_unit_test_setup_teardown(test_files, tic, toc),
		cmocka_unit_test_setup_teardown(test_alloc_failure, tic, toc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
