/* spectral: both transform paths against the naive double DFT, adjoints,
 * gradients by finite differences, accumulation, allocation failures,
 * batch < Bmax, and bit-reproducibility. */
#include "testutil.h"
#include "internal.h"
#include "pno/spectral.h"

#include <fftw3.h>
#include <math.h>
#include <string.h>

static const enum pno_spectral_path paths[] = {PNO_SPECTRAL_PATH_GEMM,
					       PNO_SPECTRAL_PATH_FFTW};

struct shape {
	int dims, B, Ci, Co, X, Y, M1, M2;
};

/* odd sizes, M1 = X/2 in 2D, M2 = Y/2+1 (Nyquist column kept when Y is
 * even), 1D with the Nyquist mode, and single-mode edge cases */
static const struct shape shapes[] = {
	{1, 3, 2, 3, 16, 1, 5, 1},
	{1, 2, 3, 2, 15, 1, 8, 1},	/* odd X, M = X/2+1 */
	{1, 2, 2, 2, 16, 1, 9, 1},	/* Nyquist mode retained */
	{1, 1, 1, 1, 7, 1, 1, 1},
	{2, 2, 2, 3, 8, 8, 3, 3},
	{2, 2, 3, 2, 9, 7, 4, 4},	/* odd X, Y; M1 = X/2, M2 = Y/2+1 */
	{2, 2, 2, 2, 8, 10, 4, 6},	/* M1 = X/2, Nyquist column M2 = Y/2+1 */
	{2, 1, 1, 2, 6, 5, 1, 1},
	{2, 2, 3, 3, 12, 16, 6, 9},
	/* channels past one 16-wide vector of the mixing kernel plus a
	 * remainder, batch past one 4-row block plus a remainder */
	{2, 5, 17, 20, 8, 6, 2, 3},
	{1, 6, 33, 18, 12, 1, 4, 1},
	/* degenerate grids: a single point, a single column */
	{1, 2, 2, 2, 1, 1, 1, 1},
	{2, 2, 2, 2, 2, 1, 1, 1},
	{2, 1, 2, 3, 6, 1, 3, 1},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

struct bufs {
	float *x, *w, *y, *xh, *yh, *ref;
	size_t nx, nw, ny, nxh, nyh;
};

static void bufs_make(struct bufs *b, const struct pno_spectral *s, int B,
		      uint64_t seed)
{
	b->nx = (size_t)B * s->Ci * s->X * s->Y;
	b->ny = (size_t)B * s->Co * s->X * s->Y;
	b->nw = pno_spectral_weight_count(s);
	b->nxh = pno_spectral_modes_size(s, s->Ci, B);
	b->nyh = pno_spectral_modes_size(s, s->Co, B);
	b->x = pno_malloc(b->nx * sizeof(float));
	b->w = pno_malloc(b->nw * sizeof(float));
	b->y = pno_malloc(b->ny * sizeof(float));
	b->ref = pno_malloc(b->ny * sizeof(float));
	b->xh = pno_malloc(b->nxh * sizeof(float));
	b->yh = pno_malloc(b->nyh * sizeof(float));
	assert_true(b->x && b->w && b->y && b->ref && b->xh && b->yh);
	pno_rng_normal(b->x, b->nx, seed, 0, 0);
	pno_rng_normal(b->w, b->nw, seed, 1, 0);
}

static void bufs_free(struct bufs *b)
{
	pno_free(b->x);
	pno_free(b->w);
	pno_free(b->y);
	pno_free(b->ref);
	pno_free(b->xh);
	pno_free(b->yh);
}

static void init_ok(struct pno_spectral *s, const struct shape *h, int Bmax,
		    enum pno_spectral_path path)
{
	enum pno_status st = pno_spectral_init(s, h->dims, Bmax, h->Ci, h->Co,
					       h->X, h->Y, h->M1, h->M2);
	if (st != PNO_STATUS_OK)
		fail_msg("init: %s", pno_last_error());
	assert_int_equal(pno_spectral_set_path(s, path), PNO_STATUS_OK);
	assert_int_equal(pno_spectral_path_get(s), path);
}

/* Float32 against double: every output is a sum over the N = X*Y grid
 * points (and Ci channels) of O(1) terms; the GEMM and FFT sums round with
 * a relative error ~ eps * log2(N) .. eps * sqrt(N) (eps = 6e-8), i.e.
 * < 1e-6 for these grids (observed <= 4e-7). 5e-6 in relative L2 leaves
 * room for the rounded DFT matrix entries, yet any wrong mode, sign or
 * Hermitian factor gives O(1e-1) errors. */
#define TOL_FWD 5e-6

static void test_forward_vs_naive(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSHAPES; i++) {
		const struct shape *h = &shapes[i];
		for (int p = 0; p < 2; p++) {
			struct pno_spectral s;
			struct bufs b;
			init_ok(&s, h, h->B, paths[p]);
			bufs_make(&b, &s, h->B, 10 + i);
			assert_int_equal(pno_spectral_forward_naive(&s, b.ref, b.x, b.w, h->B),
					 PNO_STATUS_OK);
			pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h->B);
			double e = tu_rel_l2(b.y, b.ref, b.ny);
			if (!(e < TOL_FWD))
				fail_msg("shape %zu path %d: rel err %.3g", i, p, e);
			bufs_free(&b);
			pno_spectral_free(&s);
		}
	}
}

/* The paths compute the same float function with different rounding:
 * same bound as against the reference. Larger sizes than the naive
 * reference affords, including the benchmark configurations' shapes
 * with smaller batch. */
static void test_paths_agree(void **state)
{
	(void)state;
	static const struct shape big[] = {
		{2, 2, 8, 8, 64, 64, 12, 12},
		{1, 2, 16, 16, 1024, 1, 16, 1},
		{2, 1, 4, 5, 30, 33, 15, 17},
	};
	for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
		const struct shape *h = &big[i];
		struct pno_spectral s;
		struct bufs b;
		init_ok(&s, h, h->B, PNO_SPECTRAL_PATH_GEMM);
		bufs_make(&b, &s, h->B, 20 + i);
		pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h->B);
		assert_int_equal(pno_spectral_set_path(&s, PNO_SPECTRAL_PATH_FFTW),
				 PNO_STATUS_OK);
		pno_spectral_forward(&s, b.ref, b.xh, b.yh, b.x, b.w, h->B);
		double e = tu_rel_l2(b.y, b.ref, b.ny);
		if (!(e < TOL_FWD))
			fail_msg("shape %zu: paths differ, rel err %.3g", i, e);
		bufs_free(&b);
		pno_spectral_free(&s);
	}
}

/* The reference's irfft2 semantics checked independently: rfft2 by a
 * rank-2 FFTW r2c, mixing in double, then a rank-2 FFTW c2r of the
 * zero-padded half spectrum / (X*Y) -- what torch.fft.irfft2 computes,
 * including dropping Im of the DC and Nyquist columns after the first-axis
 * transform. Shapes with odd and even Y and the Nyquist column retained;
 * the input has a DC-column imaginary part after mixing (w is random).
 * Float FFT vs double reference: tolerance as TOL_FWD. */
static void test_naive_vs_fftw_rank2(void **state)
{
	(void)state;
	static const struct shape rs[] = {
		{2, 2, 2, 3, 8, 10, 4, 6},
		{2, 2, 3, 2, 9, 7, 4, 4},
		{2, 1, 2, 2, 6, 8, 2, 5},
	};
	for (size_t t = 0; t < sizeof rs / sizeof rs[0]; t++) {
		const struct shape *h = &rs[t];
		struct pno_spectral s;
		struct bufs b;
		int X = h->X, Y = h->Y, H = Y / 2 + 1;
		init_ok(&s, h, h->B, PNO_SPECTRAL_PATH_GEMM);
		bufs_make(&b, &s, h->B, 90 + t);
		assert_int_equal(pno_spectral_forward_naive(&s, b.ref, b.x, b.w, h->B),
				 PNO_STATUS_OK);
		float *re = fftwf_alloc_real((size_t)X * Y);
		fftwf_complex *in = fftwf_alloc_complex((size_t)h->Ci * X * H);
		fftwf_complex *out = fftwf_alloc_complex((size_t)X * H);
		assert_true(re && in && out);
		fftwf_plan pf = fftwf_plan_dft_r2c_2d(X, Y, re, out, FFTW_ESTIMATE);
		fftwf_plan pb = fftwf_plan_dft_c2r_2d(X, Y, out, re, FFTW_ESTIMATE);
		for (int bb = 0; bb < h->B; bb++) {
			for (int i = 0; i < h->Ci; i++) {
				memcpy(re, b.x + ((size_t)bb * h->Ci + i) * X * Y,
				       sizeof(float) * X * Y);
				fftwf_execute(pf);
				memcpy(in + (size_t)i * X * H, out, sizeof *out * X * H);
			}
			for (int o = 0; o < h->Co; o++) {
				memset(out, 0, sizeof *out * X * H);
				for (int r = 0; r < 2 * h->M1; r++)
					for (int c = 0; c < h->M2; c++) {
						int f = r < h->M1 ? r : X - 2 * h->M1 + r, k = r * h->M2 + c;
						double zr = 0, zi = 0;
						for (int i = 0; i < h->Ci; i++) {
							const float *z = in[(size_t)i * X * H + f * H + c];
							const float *w = b.w + (((size_t)i * h->Co + o) * s.K + k) * 2;
							zr += (double)z[0] * w[0] - (double)z[1] * w[1];
							zi += (double)z[0] * w[1] + (double)z[1] * w[0];
						}
						out[f * H + c][0] = (float)(zr / (X * Y));
						out[f * H + c][1] = (float)(zi / (X * Y));
					}
				fftwf_execute(pb);
				memcpy(b.y + ((size_t)bb * h->Co + o) * X * Y, re,
				       sizeof(float) * X * Y);
			}
		}
		double e = tu_rel_l2(b.y, b.ref, b.ny);
		if (!(e < TOL_FWD))
			fail_msg("shape %zu: naive vs FFTW rank-2, rel err %.3g", t, e);
		fftwf_destroy_plan(pf);
		fftwf_destroy_plan(pb);
		fftwf_free(re);
		fftwf_free(in);
		fftwf_free(out);
		bufs_free(&b);
		pno_spectral_free(&s);
	}
}

static double dot(const float *a, const float *b, size_t n)
{
	double d = 0;
	for (size_t i = 0; i < n; i++)
		d += (double)a[i] * b[i];
	return d;
}

static double norm(const float *a, size_t n) { return sqrt(dot(a, a, n)); }

/* <A u, v> = <u, A^T v> for analyze, synthesize and mix. The products are
 * accumulated in double; the float stage outputs carry relative errors
 * ~1e-6, so |lhs - rhs| <= 1e-5 ||A u|| ||v|| (Cauchy-Schwarz scale). A
 * wrong Hermitian factor or sign gives an O(1) relative gap. */
static void test_adjoints(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSHAPES; i++) {
		const struct shape *h = &shapes[i];
		for (int p = 0; p < 2; p++) {
			struct pno_spectral s;
			struct bufs b;
			init_ok(&s, h, h->B, paths[p]);
			bufs_make(&b, &s, h->B, 30 + i);
			size_t nz = PNO__MAX(b.nxh, b.nyh), nv = PNO__MAX(b.nx, b.ny);
			float *z = pno_malloc(nz * sizeof *z);
			float *v = pno_malloc(nv * sizeof *v);
			float *g = pno_calloc(PNO__MAX(nz, nv), sizeof *g);
			assert_true(z && v && g);

			/* analyze: x -> modes */
			pno_rng_normal(z, b.nxh, 5, i, 0);
			pno_spectral_analyze(&s, b.xh, b.x, h->B);
			pno_spectral_analyze_backward(&s, g, z, h->B);
			double l = dot(b.xh, z, b.nxh), r = dot(b.x, g, b.nx);
			tu_assert_close(l, r, 1e-5 * norm(b.xh, b.nxh) * norm(z, b.nxh));

			/* synthesize: modes -> y (Im of DC/Nyquist ignored) */
			pno_rng_normal(z, b.nyh, 6, i, 0);
			pno_rng_normal(v, b.ny, 7, i, 0);
			pno_spectral_synthesize(&s, b.y, z, h->B);
			pno_spectral_synthesize_backward(&s, g, v, h->B);
			l = dot(b.y, v, b.ny);
			r = dot(z, g, b.nyh);
			tu_assert_close(l, r, 1e-5 * norm(b.y, b.ny) * norm(v, b.ny));

			/* mix: xhat -> yhat */
			pno_rng_normal(z, b.nyh, 8, i, 0);
			memset(g, 0, b.nxh * sizeof *g);
			pno_spectral_mix(&s, b.yh, b.xh, b.w, h->B);
			pno_spectral_mix_backward(&s, g, NULL, z, b.xh, b.w, h->B);
			l = dot(b.yh, z, b.nyh);
			r = dot(b.xh, g, b.nxh);
			tu_assert_close(l, r, 1e-5 * norm(b.yh, b.nyh) * norm(z, b.nyh));

			pno_free(z);
			pno_free(v);
			pno_free(g);
			bufs_free(&b);
			pno_spectral_free(&s);
		}
	}
}

/* L = sum(y * r) with y from the naive double reference (rounded to
 * float). L is linear in x and in w separately, so a central difference
 * with a large step (eps = 0.5) has no truncation error; what remains is
 * the float rounding of y, ~1e-7 relative (observed <= 4e-7 incl. the fast
 * gradient's own rounding). Normalized error ||g_fd - g|| / ||g_fd|| <
 * 1e-5; a missing factor 2 or sign is O(1). */
static double naive_loss(const struct pno_spectral *s, float *y,
			 const float *x, const float *w, const float *r,
			 size_t ny, int B)
{
	assert_int_equal(pno_spectral_forward_naive(s, y, x, w, B), PNO_STATUS_OK);
	return dot(y, r, ny);
}

static void fd_grad(const struct pno_spectral *s, float *g, float *v,
		    size_t n, float *y, const float *x, const float *w,
		    const float *r, size_t ny, int B)
{
	const float eps = 0.5f;
	for (size_t j = 0; j < n; j++) {
		float keep = v[j];
		v[j] = keep + eps;
		double lp = naive_loss(s, y, x, w, r, ny, B);
		v[j] = keep - eps;
		double lm = naive_loss(s, y, x, w, r, ny, B);
		v[j] = keep;
		g[j] = (float)((lp - lm) / (2.0 * eps));
	}
}

static void test_gradients_fd(void **state)
{
	(void)state;
	static const struct shape gs[] = {
		{1, 2, 2, 3, 10, 1, 6, 1},	/* Nyquist mode */
		{1, 1, 2, 2, 9, 1, 5, 1},
		{2, 2, 2, 2, 6, 6, 3, 4},	/* M1 = X/2, Nyquist column */
		{2, 1, 2, 3, 7, 5, 2, 3},
		{1, 5, 17, 18, 8, 1, 4, 1},	/* mixing kernel blocks + tails */
	};
	for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
		const struct shape *h = &gs[i];
		for (int p = 0; p < 2; p++) {
			struct pno_spectral s;
			struct bufs b;
			init_ok(&s, h, h->B, paths[p]);
			bufs_make(&b, &s, h->B, 40 + i);
			float *r = pno_malloc(b.ny * sizeof *r);
			float *dx = pno_calloc(b.nx, sizeof *dx);
			float *dw = pno_calloc(b.nw, sizeof *dw);
			float *gx = pno_malloc(b.nx * sizeof *gx);
			float *gw = pno_malloc(b.nw * sizeof *gw);
			assert_true(r && dx && dw && gx && gw);
			pno_rng_normal(r, b.ny, 41, i, 0);

			pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h->B);
			pno_spectral_backward(&s, dx, dw, b.yh, r, b.xh, b.w, h->B);
			fd_grad(&s, gx, b.x, b.nx, b.ref, b.x, b.w, r, b.ny, h->B);
			fd_grad(&s, gw, b.w, b.nw, b.ref, b.x, b.w, r, b.ny, h->B);
			double ex = tu_rel_l2(dx, gx, b.nx), ew = tu_rel_l2(dw, gw, b.nw);
			if (!(ex < 1e-5 && ew < 1e-5))
				fail_msg("shape %zu path %d: dx err %.3g, dw err %.3g",
					 i, p, ex, ew);

			pno_free(r);
			pno_free(dx);
			pno_free(dw);
			pno_free(gx);
			pno_free(gw);
			bufs_free(&b);
			pno_spectral_free(&s);
		}
	}
}

/* Backward accumulates: two calls give exactly twice one call (g + g is
 * exact in float and each call adds the same values). */
static void test_backward_accumulates(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSHAPES; i++) {
		const struct shape *h = &shapes[i];
		for (int p = 0; p < 2; p++) {
			struct pno_spectral s;
			struct bufs b;
			init_ok(&s, h, h->B, paths[p]);
			bufs_make(&b, &s, h->B, 50 + i);
			float *dx1 = pno_calloc(b.nx, sizeof(float));
			float *dx2 = pno_calloc(b.nx, sizeof(float));
			float *dw1 = pno_calloc(b.nw, sizeof(float));
			float *dw2 = pno_calloc(b.nw, sizeof(float));
			assert_true(dx1 && dx2 && dw1 && dw2);
			pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h->B);
			pno_spectral_backward(&s, dx1, dw1, b.yh, b.y, b.xh, b.w, h->B);
			pno_spectral_backward(&s, dx2, dw2, b.yh, b.y, b.xh, b.w, h->B);
			pno_spectral_backward(&s, dx2, dw2, b.yh, b.y, b.xh, b.w, h->B);
			for (size_t j = 0; j < b.nx; j++)
				assert_true(dx2[j] == 2.0f * dx1[j]);
			for (size_t j = 0; j < b.nw; j++)
				assert_true(dw2[j] == 2.0f * dw1[j]);
			/* the accumulating stages on their own */
			size_t nxh = b.nxh;
			float *g1 = pno_calloc(nxh, sizeof(float));
			float *g2 = pno_calloc(nxh, sizeof(float));
			assert_true(g1 && g2);
			memset(dw1, 0, b.nw * sizeof(float));
			memset(dw2, 0, b.nw * sizeof(float));
			pno_spectral_mix_backward(&s, g1, dw1, b.yh, b.xh, b.w, h->B);
			pno_spectral_mix_backward(&s, g2, dw2, b.yh, b.xh, b.w, h->B);
			pno_spectral_mix_backward(&s, g2, dw2, b.yh, b.xh, b.w, h->B);
			for (size_t j = 0; j < nxh; j++)
				assert_true(g2[j] == 2.0f * g1[j]);
			for (size_t j = 0; j < b.nw; j++)
				assert_true(dw2[j] == 2.0f * dw1[j]);
			memset(dx1, 0, b.nx * sizeof(float));
			memset(dx2, 0, b.nx * sizeof(float));
			pno_spectral_analyze_backward(&s, dx1, g1, h->B);
			pno_spectral_analyze_backward(&s, dx2, g1, h->B);
			pno_spectral_analyze_backward(&s, dx2, g1, h->B);
			for (size_t j = 0; j < b.nx; j++)
				assert_true(dx2[j] == 2.0f * dx1[j]);
			pno_free(g1);
			pno_free(g2);
			/* dx NULL: dw only, same values */
			memset(dw1, 0, b.nw * sizeof(float));
			pno_spectral_backward(&s, dx1, dw1, b.yh, b.y, b.xh, b.w, h->B);
			memset(dw2, 0, b.nw * sizeof(float));
			pno_spectral_backward(&s, NULL, dw2, b.yh, b.y, b.xh, b.w, h->B);
			assert_memory_equal(dw1, dw2, b.nw * sizeof(float));
			pno_free(dx1);
			pno_free(dx2);
			pno_free(dw1);
			pno_free(dw2);
			bufs_free(&b);
			pno_spectral_free(&s);
		}
	}
}

/* Fail allocation N = 1, 2, ... until init succeeds: every failure is a
 * clean NOMEM that leaks nothing; the same for switching paths. Then the
 * stage functions allocate nothing at all. */
static void test_alloc_failures(void **state)
{
	(void)state;
	static const struct shape as[] = {
		{1, 2, 3, 4, 32, 1, 6, 1},
		{2, 2, 3, 4, 16, 12, 4, 5},
	};
	tu_alloc_install();
	for (size_t i = 0; i < 2; i++) {
		const struct shape *h = &as[i];
		long live0 = tu_alloc_live();
		struct pno_spectral s;
		long n;
		for (n = 1; n < 1000; n++) {
			tu_alloc_reset(n);
			enum pno_status st = pno_spectral_init(&s, h->dims, h->B, h->Ci,
							       h->Co, h->X, h->Y, h->M1, h->M2);
			if (st == PNO_STATUS_OK)
				break;
			assert_int_equal(st, PNO_STATUS_NOMEM);
			assert_true(tu_alloc_failed());
			assert_null(s.impl);
			assert_int_equal(tu_alloc_live(), live0);
		}
		assert_false(tu_alloc_failed());
		assert_true(n > 3);
		/* the other path's workspace */
		enum pno_spectral_path other = pno_spectral_path_get(&s) ==
			PNO_SPECTRAL_PATH_GEMM ? PNO_SPECTRAL_PATH_FFTW
					       : PNO_SPECTRAL_PATH_GEMM, first = pno_spectral_path_get(&s);
		long live1 = tu_alloc_live();
		for (n = 1; n < 1000; n++) {
			tu_alloc_reset(n);
			enum pno_status st = pno_spectral_set_path(&s, other);
			if (st == PNO_STATUS_OK)
				break;
			assert_int_equal(st, PNO_STATUS_NOMEM);
			assert_int_equal(pno_spectral_path_get(&s), first);
			assert_int_equal(tu_alloc_live(), live1);
		}
		tu_alloc_reset(0);
		struct bufs b;
		bufs_make(&b, &s, h->B, 60);
		float *dx = pno_calloc(b.nx, sizeof *dx);
		float *dw = pno_calloc(b.nw, sizeof *dw);
		assert_true(dx && dw);
		for (int p = 0; p < 2; p++) {
			assert_int_equal(pno_spectral_set_path(&s, paths[p]), PNO_STATUS_OK);
			tu_alloc_reset(0);
			pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h->B);
			pno_spectral_backward(&s, dx, dw, b.yh, b.y, b.xh, b.w, h->B);
			pno_spectral_mix_backward(&s, b.xh, dw, b.yh, b.xh, b.w, h->B);
			assert_int_equal(tu_alloc_count(), 0);
		}
		pno_free(dx);
		pno_free(dw);
		bufs_free(&b);
		pno_spectral_free(&s);
		assert_int_equal(tu_alloc_live(), live0);
	}
	tu_alloc_uninstall();
}

/* Batches below Bmax use the same buffers compactly. Tolerance as in
 * test_forward_vs_naive. */
static void test_partial_batch(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSHAPES; i += 2) {
		const struct shape *h = &shapes[i];
		for (int p = 0; p < 2; p++) {
			struct pno_spectral s;
			struct bufs b;
			init_ok(&s, h, h->B + 3, paths[p]);
			bufs_make(&b, &s, h->B, 70 + i);
			assert_int_equal(pno_spectral_forward_naive(&s, b.ref, b.x, b.w, h->B),
					 PNO_STATUS_OK);
			pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h->B);
			assert_true(tu_rel_l2(b.y, b.ref, b.ny) < TOL_FWD);
			bufs_free(&b);
			pno_spectral_free(&s);
		}
	}
}

/* Same inputs, same bits: forward and backward twice, memcmp. */
static void test_reproducible(void **state)
{
	(void)state;
	static const struct shape h = {2, 4, 8, 8, 32, 32, 8, 8};
	for (int p = 0; p < 2; p++) {
		struct pno_spectral s;
		struct bufs b;
		init_ok(&s, &h, h.B, paths[p]);
		bufs_make(&b, &s, h.B, 80);
		float *y2 = pno_malloc(b.ny * sizeof *y2);
		float *dx[2], *dw[2];
		for (int t = 0; t < 2; t++) {
			dx[t] = pno_calloc(b.nx, sizeof(float));
			dw[t] = pno_calloc(b.nw, sizeof(float));
			assert_true(dx[t] && dw[t]);
		}
		pno_spectral_forward(&s, b.y, b.xh, b.yh, b.x, b.w, h.B);
		pno_spectral_backward(&s, dx[0], dw[0], b.yh, b.y, b.xh, b.w, h.B);
		pno_spectral_forward(&s, y2, b.xh, b.yh, b.x, b.w, h.B);
		pno_spectral_backward(&s, dx[1], dw[1], b.yh, y2, b.xh, b.w, h.B);
		assert_memory_equal(b.y, y2, b.ny * sizeof *y2);
		assert_memory_equal(dx[0], dx[1], b.nx * sizeof(float));
		assert_memory_equal(dw[0], dw[1], b.nw * sizeof(float));
		for (int t = 0; t < 2; t++) {
			pno_free(dx[t]);
			pno_free(dw[t]);
		}
		pno_free(y2);
		bufs_free(&b);
		pno_spectral_free(&s);
	}
}

static void expect_invalid(int dims, int Bmax, int Ci, int Co, int X, int Y,
			   int M1, int M2, const char *word)
{
	struct pno_spectral s;
	pno_clear_error();
	assert_int_equal(pno_spectral_init(&s, dims, Bmax, Ci, Co, X, Y, M1, M2),
			 PNO_STATUS_INVALID);
	assert_null(s.impl);
	if (!strstr(pno_last_error(), word))
		fail_msg("message '%s' does not name '%s'", pno_last_error(), word);
	pno_spectral_free(&s);	/* safe on the zeroed struct */
}

static void test_invalid_sizes(void **state)
{
	(void)state;
	expect_invalid(3, 1, 1, 1, 8, 8, 2, 2, "dims");
	expect_invalid(2, 0, 1, 1, 8, 8, 2, 2, "Bmax");
	expect_invalid(2, 1, 0, 1, 8, 8, 2, 2, "Ci");
	expect_invalid(2, 1, 1, 0, 8, 8, 2, 2, "Co");
	expect_invalid(2, 1, 1, 1, 8, 8, 5, 2, "M1");	/* 2*M1 > X */
	expect_invalid(2, 1, 1, 1, 8, 8, 0, 2, "M1");
	expect_invalid(2, 1, 1, 1, 8, 8, 2, 6, "M2");	/* > Y/2+1 */
	expect_invalid(1, 1, 1, 1, 8, 1, 6, 1, "M1");	/* > X/2+1 */
	expect_invalid(1, 1, 1, 1, 8, 4, 2, 1, "Y");
	expect_invalid(2, 1 << 20, 1 << 10, 1, 1 << 10, 1 << 10, 2, 2, "too large");
	struct pno_spectral z;
	memset(&z, 0, sizeof z);
	pno_spectral_free(&z);
}

/* The automatic choice is a pure function of the sizes, and follows the
 * calibration measurements: few modes -> GEMM (the benchmark targets),
 * many modes of a large grid -> FFTW. */
static void test_auto_path(void **state)
{
	(void)state;
	enum pno_spectral_path a = pno_spectral_path_auto(2, 16, 32, 32, 64, 64, 12, 12);
	assert_int_equal(a, PNO_SPECTRAL_PATH_GEMM);
	assert_int_equal(pno_spectral_path_auto(1, 32, 64, 64, 1024, 1, 16, 1),
			 PNO_SPECTRAL_PATH_GEMM);
	assert_int_equal(pno_spectral_path_auto(1, 32, 64, 64, 1024, 1, 128, 1),
			 PNO_SPECTRAL_PATH_FFTW);
	assert_int_equal(pno_spectral_path_auto(2, 2, 32, 32, 256, 256, 32, 32),
			 PNO_SPECTRAL_PATH_FFTW);
	struct pno_spectral s;
	assert_int_equal(pno_spectral_init(&s, 2, 16, 32, 32, 64, 64, 12, 12),
			 PNO_STATUS_OK);
	assert_int_equal(pno_spectral_path_get(&s), a);
	pno_spectral_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_vs_naive),
		cmocka_unit_test(test_naive_vs_fftw_rank2),
		cmocka_unit_test(test_paths_agree),
		cmocka_unit_test(test_adjoints),
		cmocka_unit_test(test_gradients_fd),
		cmocka_unit_test(test_backward_accumulates),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_partial_batch),
		cmocka_unit_test(test_reproducible),
		cmocka_unit_test(test_invalid_sizes),
		cmocka_unit_test(test_auto_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
