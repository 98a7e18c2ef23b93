/* deeponet: forward against a naive double-precision model (1D, 2D),
 * every parameter gradient against central differences, the trunk cache,
 * learning the heat operator, save/load, refusing FNO and damaged files,
 * architecture errors, allocation-failure loops, no allocation per step,
 * and the 64x64 timing. */
#include "testutil.h"
#include "pno/deeponet.h"
#include "pno/fno.h"
#include "pno/pde.h"
#include "pno/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the naive reference: loops in double ---- */

static double gelu_d(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static const double *tensor(const struct pno_deeponet *m, const double *prm,
			    int i)
{
	size_t off;
	pno_deeponet_tensor_info(m, i, NULL, 0, NULL, NULL, &off, NULL);
	return prm + off;
}

/* One MLP on a vector: layers weight/bias at tensor indices first + 2l,
 * GELU after hidden layers (and after the last if act_last). */
static void mlp_d(const struct pno_deeponet *m, const double *prm, int first,
		  int depth, const int *sizes, int act_last, const double *in,
		  double *out, double *tmp0, double *tmp1)
{
	const double *h = in;
	for (int l = 0; l <= depth; l++) {
		const double *w = tensor(m, prm, first + 2 * l);
		const double *b = tensor(m, prm, first + 2 * l + 1);
		int I = sizes[l], O = sizes[l + 1];
		double *y = l == depth ? out : (l % 2 ? tmp1 : tmp0);
		for (int o = 0; o < O; o++) {
			double s = b[o];
			for (int i = 0; i < I; i++)
				s += w[(size_t)o * I + i] * h[i];
			y[o] = (l < depth || act_last) ? gelu_d(s) : s;
		}
		h = y;
	}
}

/* out (B, Cout, P) in double; prm: the parameters in the model's layout. */
static void ref_forward(const struct pno_deeponet *m, const double *prm,
			const float *x, int B, double *out)
{
	const struct pno_deeponet_arch *a = &m->arch;
	int S = a->sensors, s = a->sensor_stride, P = m->P, np = a->p;
	int Cin = a->in_ch, Cout = a->out_ch;
	int Lb = a->branch_depth, Lt = a->trunk_depth, nb = 2 * (Lb + 1);
	int bs[PNO_DEEPONET_MAX_DEPTH + 2], ts[PNO_DEEPONET_MAX_DEPTH + 2];
	bs[0] = Cin * S, ts[0] = a->dims;
	for (int l = 1; l <= Lb; l++)
		bs[l] = a->branch_width;
	for (int l = 1; l <= Lt; l++)
		ts[l] = a->trunk_width;
	bs[Lb + 1] = Cout * np, ts[Lt + 1] = np;
	int wmax = 4096;
	double *u = malloc((size_t)Cin * S * sizeof *u);
	double *beta = malloc((size_t)Cout * np * sizeof *beta);
	double *t = malloc((size_t)P * np * sizeof *t);
	double *t0 = malloc(wmax * sizeof *t0), *t1 = malloc(wmax * sizeof *t1);
	const double *ob = tensor(m, prm, pno_deeponet_tensor_count(m) - 1);
	for (int p = 0; p < P; p++) {
		int i = p / m->Y, j = p % m->Y;
		double c[2] = {(double)i / (m->X - 1),
			       a->dims == 2 ? (double)j / (m->Y - 1) : 0};
		mlp_d(m, prm, nb, Lt, ts, 1, c, t + (size_t)p * np, t0, t1);
	}
	for (int b = 0; b < B; b++) {
		for (int ch = 0; ch < Cin; ch++)
			for (int si = 0; si < m->SX; si++)
				for (int sj = 0; sj < m->SY; sj++) {
					double v = x[((size_t)b * Cin + ch) * P +
						     (size_t)si * s * m->Y + sj * s];
					u[ch * S + si * m->SY + sj] =
						(v - m->norm.in_mean[ch]) /
						m->norm.in_std[ch];
				}
		mlp_d(m, prm, 0, Lb, bs, 0, u, beta, t0, t1);
		for (int ch = 0; ch < Cout; ch++)
			for (int p = 0; p < P; p++) {
				double z = ob[ch];
				for (int k = 0; k < np; k++)
					z += beta[ch * np + k] * t[(size_t)p * np + k];
				out[((size_t)b * Cout + ch) * P + p] =
					z * m->norm.out_std[ch] + m->norm.out_mean[ch];
			}
	}
	free(u), free(beta), free(t), free(t0), free(t1);
}

static double *params_d(const struct pno_deeponet *m)
{
	double *d = malloc(m->n_params * sizeof *d);
	for (size_t i = 0; i < m->n_params; i++)
		d[i] = m->params[i];
	return d;
}

/* Small models: Cin = 2, Cout = 2 in 2D; sensor strides > 1. */
static struct pno_deeponet_arch small_arch(int dims)
{
	struct pno_deeponet_arch a = {
		.dims = dims, .in_ch = dims, .out_ch = dims,
		.sensors = dims == 1 ? 7 : 12, .branch_width = 6,
		.branch_depth = 2, .trunk_width = 5, .trunk_depth = 2, .p = 4};
	return a;
}

static void small_model(struct pno_deeponet *m, int dims, int B)
{
	struct pno_deeponet_arch a = small_arch(dims);
	int X = dims == 1 ? 20 : 9, Y = dims == 1 ? 1 : 7;
	assert_status(pno_deeponet_init(m, &a, X, Y, B, 11), PNO_STATUS_OK);
	/* non-zero biases and normalization so every term matters */
	int nt = pno_deeponet_tensor_count(m);
	for (int i = 1; i < nt; i += 2) {
		size_t off, cnt;
		pno_deeponet_tensor_info(m, i, NULL, 0, NULL, NULL, &off, &cnt);
		pno_rng_normal(m->params + off, cnt, 3, (uint64_t)i, 0);
		for (size_t j = 0; j < cnt; j++)
			m->params[off + j] *= 0.3f;
	}
	for (int c = 0; c < m->arch.in_ch; c++)
		m->norm.in_mean[c] = 0.3f + c, m->norm.in_std[c] = 1.7f - 0.5f * c;
	for (int c = 0; c < m->arch.out_ch; c++)
		m->norm.out_mean[c] = -0.2f * (c + 1),
		m->norm.out_std[c] = 0.6f + c;
}

static double max_abs_f_d(const float *a, const double *b, size_t n,
			  double *scale)
{
	double e = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs(a[i] - b[i]));
		s = fmax(s, fabs(b[i]));
	}
	*scale = s;
	return e;
}

/* Float32 model vs the double loops: max |diff| / max |ref| below 1e-5
 * (float32 GEMM accumulation over at most ~30 terms per layer and the
 * GELU's few-ulp approximation give ~1e-6; a layout or index mistake is
 * of order 1). */
static void forward_check(int dims)
{
	struct pno_deeponet m;
	int B = 3;
	small_model(&m, dims, B);
	if (dims == 1) {
		assert_int_equal(m.arch.sensor_stride, 3);	/* ceil(20/3) = 7 */
		assert_int_equal(m.arch.sensors, 7);
	} else {
		assert_int_equal(m.arch.sensor_stride, 3);	/* 3 x 3 <= 12 */
		assert_int_equal(m.arch.sensors, 9);
	}
	size_t nin = (size_t)B * m.arch.in_ch * m.P;
	size_t nout = (size_t)B * m.arch.out_ch * m.P;
	float *x = malloc(nin * sizeof *x);
	double *ref = malloc(nout * sizeof *ref), *prm = params_d(&m), sc;
	pno_rng_normal(x, nin, 5, 1, 0);
	const float *out = pno_deeponet_forward(&m, x, B);
	assert_non_null(out);
	ref_forward(&m, prm, x, B, ref);
	double err = max_abs_f_d(out, ref, nout, &sc) / sc;
	print_message("%dD forward: max |float - double| / max |ref| = %.2e\n",
		      dims, err);
	assert_true(sc > 0.1);
	assert_true(err < 1e-5);
	/* batch rows are independent: sample 1 alone gives the same bits */
	float keep[1024];
	size_t per = nout / B;
	assert_true(per <= 1024);
	memcpy(keep, out + per, per * sizeof(float));
	out = pno_deeponet_forward(&m, x + nin / B, 1);
	double e1 = 0;
	for (size_t i = 0; i < per; i++)
		e1 = fmax(e1, fabs(out[i] - keep[i]));
	assert_true(e1 <= 1e-6 * sc);
	free(x), free(ref), free(prm);
	pno_deeponet_free(&m);
}

static void test_forward_1d(void **s) { (void)s; forward_check(1); }
static void test_forward_2d(void **s) { (void)s; forward_check(2); }

/* Changing a trunk weight after a forward: the next forward sees it (the
 * cache is refreshed), and backward without a new forward is refused. */
static void test_trunk_cache(void **state)
{
	(void)state;
	struct pno_deeponet m;
	int B = 2;
	small_model(&m, 2, B);
	size_t nin = (size_t)B * m.arch.in_ch * m.P;
	size_t nout = (size_t)B * m.arch.out_ch * m.P;
	float *x = malloc(nin * sizeof *x), *r = calloc(nout, sizeof *r);
	double *ref = malloc(nout * sizeof *ref), sc;
	pno_rng_normal(x, nin, 6, 1, 0);
	assert_non_null(pno_deeponet_forward(&m, x, B));
	m.p.trunk_w[1][3] += 0.5f;
	m.p.trunk_b[m.arch.trunk_depth][0] -= 0.25f;
	assert_status(pno_deeponet_backward(&m, r, B), PNO_STATUS_INVALID);
	assert_err_has("trunk");
	const float *out = pno_deeponet_forward(&m, x, B);
	double *prm = params_d(&m);
	ref_forward(&m, prm, x, B, ref);
	assert_true(max_abs_f_d(out, ref, nout, &sc) < 1e-5 * sc);
	assert_status(pno_deeponet_backward(&m, r, B), PNO_STATUS_OK);
	assert_status(pno_deeponet_backward(&m, r, B + 1), PNO_STATUS_INVALID);
	assert_null(pno_deeponet_forward(&m, x, B + 1));
	assert_err_has("batch");
	assert_null(pno_deeponet_forward(&m, NULL, 1));
	free(x), free(r), free(ref), free(prm);
	pno_deeponet_free(&m);
}

/* L = sum(out * r): d L / d params from the float model's backward
 * against central differences of the DOUBLE reference, for every element
 * of every tensor, h = 1e-3 max(|tensor|, 0.1). Per tensor the normalized
 * error ||g - g_fd|| / ||g_fd|| must be below 1e-4: the differences are
 * exact to O(h^2) ~ 1e-7 relative with negligible rounding (1e-16 / h), so
 * what remains is the float32 backward (~1e-6); a wrong term is O(1). */
static double ref_loss(const struct pno_deeponet *m, const double *prm,
		       const float *x, const float *r, int B, double *buf)
{
	size_t n = (size_t)B * m->arch.out_ch * m->P;
	double s = 0;
	ref_forward(m, prm, x, B, buf);
	for (size_t i = 0; i < n; i++)
		s += buf[i] * r[i];
	return s;
}

static void grad_check(int dims)
{
	struct pno_deeponet m;
	int B = 3;
	small_model(&m, dims, B);
	size_t nin = (size_t)B * m.arch.in_ch * m.P;
	size_t nout = (size_t)B * m.arch.out_ch * m.P;
	float *x = malloc(nin * sizeof *x), *r = malloc(nout * sizeof *r);
	double *buf = malloc(nout * sizeof *buf), *prm = params_d(&m);
	pno_rng_normal(x, nin, 7, 1, 0);
	pno_rng_normal(r, nout, 7, 2, 0);
	pno_deeponet_zero_grad(&m);
	assert_non_null(pno_deeponet_forward(&m, x, B));
	assert_status(pno_deeponet_backward(&m, r, B), PNO_STATUS_OK);
	/* backward accumulates: a second pass doubles the gradients */
	float *g1 = malloc(m.n_params * sizeof *g1);
	memcpy(g1, m.grads, m.n_params * sizeof *g1);
	assert_status(pno_deeponet_backward(&m, r, B), PNO_STATUS_OK);
	for (size_t i = 0; i < m.n_params; i++)
		assert_true(fabsf(m.grads[i] - 2 * g1[i]) <=
			    1e-6f * (fabsf(g1[i]) + 1e-3f));
	int nt = pno_deeponet_tensor_count(&m);
	double worst = 0;
	for (int t = 0; t < nt; t++) {
		char name[48];
		size_t off, cnt;
		pno_deeponet_tensor_info(&m, t, name, sizeof name, NULL, NULL,
					 &off, &cnt);
		double scale = 0.1;
		for (size_t i = 0; i < cnt; i++)
			scale = fmax(scale, fabs(prm[off + i]));
		double h = 1e-3 * scale, num = 0, den = 0;
		for (size_t i = 0; i < cnt; i++) {
			double keep = prm[off + i];
			prm[off + i] = keep + h;
			double lp = ref_loss(&m, prm, x, r, B, buf);
			prm[off + i] = keep - h;
			double lm = ref_loss(&m, prm, x, r, B, buf);
			prm[off + i] = keep;
			double fd = (lp - lm) / (2 * h), g = g1[off + i];
			num += (fd - g) * (fd - g);
			den += fd * fd;
		}
		double err = sqrt(num / (den > 0 ? den : 1));
		worst = fmax(worst, err);
		if (!(den > 0) || !(err < 1e-4))
			fail_msg("%dD tensor %s: normalized gradient error %.3g "
				 "(|g_fd| %.3g)", dims, name, err, sqrt(den));
	}
	print_message("%dD gradients: %d tensors, %zu parameters, worst "
		      "normalized error %.2e\n", dims, nt, m.n_params, worst);
	free(x), free(r), free(buf), free(prm), free(g1);
	pno_deeponet_free(&m);
}

static void test_grad_1d(void **s) { (void)s; grad_check(1); }
static void test_grad_2d(void **s) { (void)s; grad_check(2); }

/* ---- architecture errors ---- */
static void test_arch_errors(void **state)
{
	(void)state;
	struct pno_deeponet m;
	/* each field out of range, one at a time: INVALID naming it */
	const char *names[] = {"dims", "in_ch", "out_ch", "sensors",
			       "sensor_stride", "branch_width", "branch_depth",
			       "trunk_width", "trunk_depth", "p"};
	for (int k = 0; k < 10; k++)
		for (int big = 0; big < 2; big++) {
			struct pno_deeponet_arch a = small_arch(1);
			int *f[] = {&a.dims, &a.in_ch, &a.out_ch, &a.sensors,
				    &a.sensor_stride, &a.branch_width,
				    &a.branch_depth, &a.trunk_width,
				    &a.trunk_depth, &a.p};
			*f[k] = big ? 1000000000 : -1;
			assert_status(pno_deeponet_arch_check(&a),
				      PNO_STATUS_INVALID);
			assert_err_has(names[k]);
			assert_status(pno_deeponet_init(&m, &a, 16, 1, 2, 0),
				      PNO_STATUS_INVALID);
			assert_err_has(names[k]);
			pno_deeponet_free(&m); /* safe on the zeroed struct */
		}
	struct pno_deeponet_arch a = small_arch(1);
	a.in_ch = 0;
	assert_status(pno_deeponet_arch_check(&a), PNO_STATUS_INVALID);
	assert_err_has("in_ch");
	a = small_arch(1);
	a.p = 0;
	assert_status(pno_deeponet_arch_check(&a), PNO_STATUS_INVALID);
	assert_err_has("p = 0");
	/* a stride and a count that disagree */
	a = small_arch(1);
	a.sensor_stride = 2, a.sensors = 7;	/* stride 2 on 20 gives 10 */
	assert_status(pno_deeponet_init(&m, &a, 20, 1, 2, 0), PNO_STATUS_INVALID);
	assert_err_has("sensors");
	a.sensors = 10;
	assert_status(pno_deeponet_init(&m, &a, 20, 1, 2, 0), PNO_STATUS_OK);
	assert_int_equal(m.SX, 10);
	pno_deeponet_free(&m);
	/* defaults: all grid points up to 1024; 64 x 64 -> stride 2, 32 x 32 */
	a = small_arch(2);
	a.sensors = 0;
	assert_status(pno_deeponet_init(&m, &a, 64, 64, 1, 0), PNO_STATUS_OK);
	assert_int_equal(m.arch.sensor_stride, 2);
	assert_int_equal(m.arch.sensors, 1024);
	pno_deeponet_free(&m);
	a = small_arch(1);
	a.sensors = 0;
	assert_status(pno_deeponet_init(&m, &a, 100, 1, 1, 0), PNO_STATUS_OK);
	assert_int_equal(m.arch.sensor_stride, 1);
	assert_int_equal(m.arch.sensors, 100);
	pno_deeponet_free(&m);
	/* grid and batch */
	a = small_arch(2);
	assert_status(pno_deeponet_init(&m, &a, 9, 1, 2, 0), PNO_STATUS_INVALID);
	assert_err_has("grid");
	assert_status(pno_deeponet_init(&m, &a, 9, 7, 0, 0), PNO_STATUS_INVALID);
	assert_status(pno_deeponet_init(&m, NULL, 9, 7, 1, 0), PNO_STATUS_INVALID);
	/* depth 0 (linear branch, one trunk layer) is a valid model */
	a = small_arch(1);
	a.branch_depth = 0, a.trunk_depth = 0;
	assert_status(pno_deeponet_init(&m, &a, 20, 1, 2, 0), PNO_STATUS_OK);
	assert_int_equal(pno_deeponet_tensor_count(&m), 5);
	pno_deeponet_free(&m);
	/* arch JSON round trip, and a bad activation */
	a = small_arch(2);
	a.sensor_stride = 3;
	char *js = pno_deeponet_arch_json(&a);
	assert_non_null(js);
	struct pno_deeponet_arch b;
	assert_status(pno_deeponet_arch_parse(&b, js), PNO_STATUS_OK);
	assert_memory_equal(&a, &b, sizeof a);
	pno_free(js);
	assert_status(pno_deeponet_arch_parse(&b, "{\"dims\": 1}"),
		      PNO_STATUS_FORMAT);
	assert_err_has("in_channels");
	assert_status(pno_deeponet_arch_parse(
			      &b, "{\"dims\":1,\"in_channels\":1,\"out_channels\":1,"
				  "\"sensors\":0,\"sensor_stride\":0,"
				  "\"branch_width\":4,\"branch_depth\":1,"
				  "\"trunk_width\":4,\"trunk_depth\":1,\"p\":3,"
				  "\"activation\":\"relu\"}"),
		      PNO_STATUS_UNSUPPORTED);
}

/* Same seed: the same bits; another seed: other weights. Biases start 0. */
static void test_init_determinism(void **state)
{
	(void)state;
	struct pno_deeponet m1, m2, m3;
	struct pno_deeponet_arch a = small_arch(2);
	assert_status(pno_deeponet_init(&m1, &a, 9, 7, 2, 42), PNO_STATUS_OK);
	assert_status(pno_deeponet_init(&m2, &a, 9, 7, 2, 42), PNO_STATUS_OK);
	assert_status(pno_deeponet_init(&m3, &a, 9, 7, 2, 43), PNO_STATUS_OK);
	assert_memory_equal(m1.params, m2.params, m1.n_params * sizeof(float));
	assert_memory_not_equal(m1.params, m3.params, m1.n_params * sizeof(float));
	/* weights within the Glorot bound */
	size_t off, cnt;
	int64_t sh[8];
	pno_deeponet_tensor_info(&m1, 0, NULL, 0, NULL, sh, &off, &cnt);
	float bound = sqrtf(6.0f / (float)(sh[0] + sh[1])), mx = 0;
	for (size_t i = 0; i < cnt; i++)
		mx = fmaxf(mx, fabsf(m1.params[off + i]));
	assert_true(mx <= bound && mx > 0.8f * bound);
	for (size_t i = 0; i < (size_t)sh[0]; i++)
		assert_true(m1.p.branch_b[0][i] == 0.0f);
	/* parameter count from the shapes */
	size_t S = 9, Wb = 6, Wt = 5, p = 4, C = 2;
	size_t want = (C * S * Wb + Wb) + (Wb * Wb + Wb) + (Wb * C * p + C * p) +
		      (2 * Wt + Wt) + (Wt * Wt + Wt) + (Wt * p + p) + C;
	assert_int_equal(m1.n_params, want);
	pno_deeponet_free(&m1), pno_deeponet_free(&m2), pno_deeponet_free(&m3);
}

/* ---- learning ---- */



/* Mean relative L2 on samples [first, first+count) in batches of Bmax. */
static double eval_rel_l2(struct pno_deeponet *m, const struct pno_dataset *d,
			  int first, int count)
{
	size_t P = (size_t)m->P, nin = d->Cin * P, nout = d->Cout * P;
	double s = 0;
	for (int i = 0; i < count; i += m->Bmax) {
		int B = count - i < m->Bmax ? count - i : m->Bmax;
		const float *out = pno_deeponet_forward(
			m, d->in + (size_t)(first + i) * nin, B);
		assert_non_null(out);
		s += pno_loss_rel_l2(NULL, out, d->out + (size_t)(first + i) * nout,
				     B, nout) * B;
	}
	return s / count;
}

/* The 1D heat operator u0 -> u(0.2) (kappa 0.01) on 64 points: 300
 * training samples, 1000 Adam steps of batch 20 on the relative L2 (lr
 * 5e-3, halved every 300 steps; about 1.2 s on one core). Baselines on
 * the 100 held-out samples: the training-mean field (rel L2 1.00) and the
 * identity u(T) = u0 (0.128: the heat flow only damps, so that is already
 * a good guess). Measured 0.058 at one thread; the bounds leave room for
 * other thread counts: below 0.1x the mean field and 0.6x the identity. */
static void test_learns_heat_1d(void **state)
{
	(void)state;
	if (getenv("PNO_SANITIZED")) {
		skip();
		return;
	}
	int N = 400, ntr = 300, nte = 100, X = 64, Bt = 20, steps = 1000;
	struct pno_dataset d;
	tu_heat_dataset(&d, 1, N, X, 2e-3, 10);
	struct pno_deeponet m;
	struct pno_deeponet_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				      .branch_width = 64, .branch_depth = 1,
				      .trunk_width = 64, .trunk_depth = 3,
				      .p = 48};
	assert_status(pno_deeponet_init(&m, &a, X, 1, Bt, 1), PNO_STATUS_OK);
	assert_status(pno_deeponet_fit_normalization(&m, &d, ntr), PNO_STATUS_OK);

	/* baselines */
	double *mean = calloc(X, sizeof *mean);
	for (int n = 0; n < ntr; n++)
		for (int i = 0; i < X; i++)
			mean[i] += d.out[(size_t)n * X + i] / ntr;
	float *mf = malloc(X * sizeof *mf);
	for (int i = 0; i < X; i++)
		mf[i] = (float)mean[i];
	double base_mean = 0, base_id = 0;
	for (int n = ntr; n < N; n++) {
		base_mean += pno_loss_rel_l2(NULL, mf, d.out + (size_t)n * X, 1, X);
		base_id += pno_loss_rel_l2(NULL, d.in + (size_t)n * X,
					   d.out + (size_t)n * X, 1, X);
	}
	base_mean /= nte, base_id /= nte;
	double before = eval_rel_l2(&m, &d, ntr, nte);

	struct pno_adam opt;
	assert_status(pno_adam_init(&opt, m.n_params, 5e-3f, 0, 0), PNO_STATUS_OK);
	float *xb = malloc((size_t)Bt * X * sizeof *xb);
	float *yb = malloc((size_t)Bt * X * sizeof *yb);
	float *dp = malloc((size_t)Bt * X * sizeof *dp);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int step = 0; step < steps; step++) {
		opt.lr = 5e-3f * powf(0.5f, (float)(step / 300));
		for (int k = 0; k < Bt; k++) {
			int idx = (int)(pno_rng_u64(5, 1, (uint64_t)(step * Bt + k)) %
					(uint64_t)ntr);
			memcpy(xb + k * X, d.in + (size_t)idx * X, X * sizeof *xb);
			memcpy(yb + k * X, d.out + (size_t)idx * X, X * sizeof *yb);
		}
		const float *out = pno_deeponet_forward(&m, xb, Bt);
		pno_loss_rel_l2(dp, out, yb, Bt, X);
		pno_deeponet_zero_grad(&m);
		assert_status(pno_deeponet_backward(&m, dp, Bt), PNO_STATUS_OK);
		pno_adam_step(&opt, m.params, m.grads);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double after = eval_rel_l2(&m, &d, ntr, nte);
	double train = eval_rel_l2(&m, &d, 0, 100);
	print_message("heat 1D held-out rel L2: init %.4f, mean-field %.4f, "
		      "identity %.4f, DeepONet after %d steps %.4f (train %.4f), "
		      "%.2f s, %zu parameters\n",
		      before, base_mean, base_id, steps, after, train,
		      (double)(t1.tv_sec - t0.tv_sec) +
			      1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
		      m.n_params);
	assert_true(base_mean > 0.9);
	assert_true(after < 0.1 * base_mean);
	assert_true(after < 0.6 * base_id);
	free(mean), free(mf), free(xb), free(yb), free(dp);
	pno_adam_free(&opt);
	pno_deeponet_free(&m);
	pno_dataset_free(&d);
}

/* ---- files ---- */

static void copy_prefix(const char *src, const char *dst, long keep)
{
	FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
	assert_non_null(f);
	assert_non_null(g);
	for (long i = 0; i < keep; i++) {
		int c = fgetc(f);
		if (c == EOF)
			break;
		fputc(c, g);
	}
	fclose(f);
	fclose(g);
}

static long file_size(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fclose(f);
	return n;
}

static void test_save_load(void **state)
{
	(void)state;
	struct pno_deeponet m, m2;
	const char *path = tu_tmp_path("deeponet.safetensors");
	int B = 2;
	small_model(&m, 2, B);
	unlink(path);
	assert_status(pno_deeponet_save(&m, path, "{\"provenance\": \"{}\"}"),
		      PNO_STATUS_OK);
	assert_status(pno_deeponet_load(&m2, path, 3), PNO_STATUS_OK);
	assert_int_equal(m2.X, 9);
	assert_int_equal(m2.Y, 7);
	assert_int_equal(m2.Bmax, 3);
	assert_memory_equal(&m.arch, &m2.arch, sizeof m.arch);
	assert_memory_equal(&m.norm, &m2.norm, sizeof m.norm);
	assert_memory_equal(m.params, m2.params, m.n_params * sizeof(float));
	size_t nin = (size_t)B * m.arch.in_ch * m.P;
	size_t nout = (size_t)B * m.arch.out_ch * m.P;
	float *x = malloc(nin * sizeof *x), *keep = malloc(nout * sizeof *keep);
	pno_rng_normal(x, nin, 1, 1, 0);
	memcpy(keep, pno_deeponet_forward(&m, x, B), nout * sizeof *keep);
	assert_memory_equal(keep, pno_deeponet_forward(&m2, x, B),
			    nout * sizeof *keep);
	pno_deeponet_free(&m2);

	/* bad extra metadata is refused before anything is written */
	assert_status(pno_deeponet_save(&m, path, "{\"a\": 1}"), PNO_STATUS_INVALID);
	assert_status(pno_deeponet_save(&m, path, "[1]"), PNO_STATUS_INVALID);

	/* a tensor with the right size but the wrong shape */
	{
		int nt = pno_deeponet_tensor_count(&m);
		struct pno_tensor_view v[64];
		char names[64][48];
		char *arch = pno_deeponet_arch_json(&m.arch), meta[1024];
		for (int i = 0; i < nt; i++) {
			size_t off;
			pno_deeponet_tensor_info(&m, i, names[i], 48, &v[i].ndim,
						 v[i].shape, &off, NULL);
			v[i].name = names[i];
			v[i].data = m.params + off;
		}
		int64_t t = v[0].shape[0];
		v[0].shape[0] = v[0].shape[1], v[0].shape[1] = t;
		/* architecture JSON has no quotes needing escapes beyond " */
		char esc[512], *o = esc;
		for (const char *c = arch; *c; c++) {
			if (*c == '"')
				*o++ = '\\';
			*o++ = *c;
		}
		*o = 0;
		snprintf(meta, sizeof meta,
			 "{\"format\":\"pno\",\"method\":\"deeponet\","
			 "\"architecture\":\"%s\",\"normalization\":"
			 "\"{\\\"in_mean\\\":[0,0],\\\"in_std\\\":[1,1],"
			 "\\\"out_mean\\\":[0,0],\\\"out_std\\\":[1,1]}\","
			 "\"grid\":\"[9, 7]\"}", esc);
		pno_free(arch);
		const char *bad = tu_tmp_path("deeponet_shape.safetensors");
		assert_status(pno_safetensors_write(bad, v, nt, meta), PNO_STATUS_OK);
		assert_status(pno_deeponet_load(&m2, bad, 1), PNO_STATUS_SHAPE);
		assert_err_has("branch.0.weight");
		/* the right shapes in the same wrapper load */
		v[0].shape[1] = v[0].shape[0], v[0].shape[0] = t;
		assert_status(pno_safetensors_write(bad, v, nt, meta), PNO_STATUS_OK);
		assert_status(pno_deeponet_load(&m2, bad, 1), PNO_STATUS_OK);
		pno_deeponet_free(&m2);
		/* a missing tensor */
		assert_status(pno_safetensors_write(bad, v, nt - 1, meta),
			      PNO_STATUS_OK);
		assert_status(pno_deeponet_load(&m2, bad, 1), PNO_STATUS_FORMAT);
		unlink(bad);
	}

	/* truncated files: every cut is refused cleanly */
	const char *cut = tu_tmp_path("deeponet_cut.safetensors");
	long size = file_size(path);
	long cuts[] = {0, 4, 8, 20, size / 2, size - 4, size - 1};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		copy_prefix(path, cut, cuts[i]);
		enum pno_status s = pno_deeponet_load(&m2, cut, 1);
		if (s == PNO_STATUS_OK)
			fail_msg("file cut to %ld of %ld bytes loaded", cuts[i],
				 size);
		assert_int_equal(s, PNO_STATUS_FORMAT);
		assert_null(m2.params);
		pno_deeponet_free(&m2);
	}
	unlink(cut);

	/* an FNO file is refused with a message naming both methods */
	const char *fpath = tu_tmp_path("fno_as_deeponet.safetensors");
	struct pno_fno f;
	struct pno_fno_arch fa = {.dims = 2, .in_ch = 1, .out_ch = 1, .width = 4,
				  .modes1 = 2, .modes2 = 2, .layers = 1,
				  .proj_hidden = 4};
	assert_status(pno_fno_init(&f, &fa, 8, 8, 1, 1), PNO_STATUS_OK);
	assert_status(pno_fno_save(&f, fpath, NULL), PNO_STATUS_OK);
	pno_fno_free(&f);
	assert_status(pno_deeponet_load(&m2, fpath, 1), PNO_STATUS_UNSUPPORTED);
	assert_err_has("\"fno\"");
	assert_err_has("deeponet");
	print_message("FNO file as DeepONet: %s\n", pno_last_error());
	/* and the FNO refuses a DeepONet file */
	assert_int_not_equal(pno_fno_load(&f, path, 0, 0, 1), PNO_STATUS_OK);
	unlink(fpath);
	assert_status(pno_deeponet_load(&m2, tu_tmp_path("none.safetensors"), 1),
		      PNO_STATUS_NOTFOUND);
	free(x), free(keep);
	pno_deeponet_free(&m);
	unlink(path);
}

/* ---- allocation ---- */

/* Fail each allocation of init, then of save, then of load, in turn: a
 * clean NOMEM, nothing leaked, no file left behind by a failed save. */
static void test_alloc_failure_loops(void **state)
{
	(void)state;
	struct pno_deeponet m, m2;
	struct pno_deeponet_arch a = small_arch(2);
	const char *path = tu_tmp_path("deeponet_alloc.safetensors");
	unlink(path);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_deeponet_init(&m, &a, 9, 7, 2, 1), live0))
			break;
		assert_null(m.params);
	}
	assert_true(k > 3);
	long live_m = tu_alloc_live(); /* the model's blocks */
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_deeponet_save(&m, path, "{\"x\": \"y\"}"),
				  live_m))
			break;
		assert_int_equal(access(path, F_OK), -1);
		assert_int_equal(tu_temps_left(path), 0);
	}
	long live1 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_deeponet_load(&m2, path, 2), live1))
			break;
		assert_null(m2.params);
	}
	assert_true(k > 5);
	assert_memory_equal(m.params, m2.params, m.n_params * sizeof(float));
	pno_deeponet_free(&m2);
	pno_deeponet_free(&m);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	unlink(path);
}

/* Forward and backward allocate nothing (trunk refresh included). */
static void test_no_alloc_in_step(void **state)
{
	(void)state;
	tu_alloc_install();
	struct pno_deeponet m;
	int B = 2;
	small_model(&m, 1, B);
	size_t nin = (size_t)B * m.arch.in_ch * m.P;
	size_t nout = (size_t)B * m.arch.out_ch * m.P;
	float *x = malloc(nin * sizeof *x), *r = malloc(nout * sizeof *r);
	pno_rng_normal(x, nin, 1, 1, 0);
	pno_rng_normal(r, nout, 1, 2, 0);
	tu_alloc_reset(0);
	for (int i = 0; i < 3; i++) {
		assert_non_null(pno_deeponet_forward(&m, x, B));
		assert_status(pno_deeponet_backward(&m, r, B), PNO_STATUS_OK);
		m.p.trunk_w[0][0] += 0.01f;
	}
	assert_int_equal(tu_alloc_count(), 0);
	free(x), free(r);
	pno_deeponet_free(&m);
	tu_alloc_uninstall();
}

/* ---- timing: 64 x 64, batch 16 ---- */

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void test_timing_64x64(void **state)
{
	(void)state;
	int B = 16, X = 64, reps = getenv("PNO_SANITIZED") ? 1 : 10;
	struct pno_deeponet m;
	struct pno_deeponet_arch a = {.dims = 2, .in_ch = 1, .out_ch = 1,
				      .branch_width = 128, .branch_depth = 2,
				      .trunk_width = 128, .trunk_depth = 2,
				      .p = 128};
	assert_status(pno_deeponet_init(&m, &a, X, X, B, 1), PNO_STATUS_OK);
	size_t n = (size_t)B * X * X;
	float *x = malloc(n * sizeof *x), *r = malloc(n * sizeof *r);
	pno_rng_normal(x, n, 2, 1, 0);
	pno_rng_normal(r, n, 2, 2, 0);
	assert_non_null(pno_deeponet_forward(&m, x, B)); /* warm up */
	double t0 = now_s();
	for (int i = 0; i < reps; i++)
		pno_deeponet_forward(&m, x, B);
	double t_inf = (now_s() - t0) / reps;
	double t_fwd = 0, t_bwd = 0;
	for (int i = 0; i < reps; i++) {
		m.trunk_valid = 0; /* as after an optimizer step */
		t0 = now_s();
		pno_deeponet_forward(&m, x, B);
		double t1 = now_s();
		assert_status(pno_deeponet_backward(&m, r, B), PNO_STATUS_OK);
		t_fwd += t1 - t0;
		t_bwd += now_s() - t1;
	}
	print_message("64x64 batch 16: sensors %d (stride %d), %zu parameters; "
		      "forward %.2f ms with cached trunk, %.2f ms with trunk, "
		      "backward %.2f ms\n", m.arch.sensors, m.arch.sensor_stride,
		      m.n_params, 1e3 * t_inf, 1e3 * t_fwd / reps,
		      1e3 * t_bwd / reps);
	free(x), free(r);
	pno_deeponet_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_1d),
		cmocka_unit_test(test_forward_2d),
		cmocka_unit_test(test_trunk_cache),
		cmocka_unit_test(test_grad_1d),
		cmocka_unit_test(test_grad_2d),
		cmocka_unit_test(test_arch_errors),
		cmocka_unit_test(test_init_determinism),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_alloc_failure_loops),
		cmocka_unit_test(test_no_alloc_in_step),
		cmocka_unit_test(test_learns_heat_1d),
		cmocka_unit_test(test_timing_64x64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
