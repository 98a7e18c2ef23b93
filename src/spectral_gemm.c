/* GEMM path of the spectral layer: only the retained modes are computed,
 * as real GEMMs by truncated DFT matrices.
 *
 * Analysis, 2D (1D is the first step alone, along X):
 *   t (2*M2, B*C*X)       = fa (2*M2, Y) . x^T              last axis
 *   p (4*M1, 2*M2*B*C)    = ha^T . (t as (2*M2*B*C, X))^T   first axis
 *   xhat                  = combine(p)                      complex sums
 * ha holds e^-i of the retained rows as real (cos, -sin) column pairs, so
 * p has the four real products of (t_re + i t_im)(h_re + i h_im); combine
 * adds them up into the (K, B, 2, C) mode layout.
 * Synthesis runs the same chain backwards with fs / hs (which fold in the
 * 1/N scaling and the Hermitian weight 1 or 2 of each half-spectrum
 * column, so the c2r semantics of torch.fft.irfft2 hold: only Re of the
 * first-axis result of the DC / Nyquist column contributes).
 * The backward stages are the literal transposes: the same GEMMs with the
 * other operand transposed, and expand / combine with the conjugate sign.
 */
#include "spectral_impl.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

static float *alloc_floats(size_t n)
{
	size_t bytes;
	if (pno__mul_overflow(n, sizeof(float), &bytes))
		return NULL;
	return pno_malloc(bytes);
}

/* Angle 2*pi*(a*b mod n)/n in double, exact in the index product. */
static double twiddle_angle(long a, long b, long n)
{
	return 2.0 * M_PI * (double)((a * b) % n) / (double)n;
}

static void fill_line_matrices(float *fa,	/* (2*Ml, L) */
			       float *fs,	/* (2*Ml, L) */
			       int Ml, int L)
{
	for (int c = 0; c < Ml; c++) {
		double wgt = pno__herm_weight(c, L) / (double)L;
		for (int n = 0; n < L; n++) {
			double a = twiddle_angle(c, n, L);
			fa[(size_t)(2 * c) * L + n] = (float)cos(a);
			fa[(size_t)(2 * c + 1) * L + n] = (float)-sin(a);
			fs[(size_t)(2 * c) * L + n] = (float)(wgt * cos(a));
			fs[(size_t)(2 * c + 1) * L + n] = (float)(-wgt * sin(a));
		}
	}
}

static void fill_row_matrices(float *ha,	/* (X, 4*M1) */
			      float *hs,	/* (4*M1, X) */
			      int M1, int X)
{
	for (int r = 0; r < 2 * M1; r++) {
		int f = pno__row_freq(r, M1, X);
		for (int x = 0; x < X; x++) {
			double a = twiddle_angle(f, x, X);
			ha[(size_t)x * 4 * M1 + 2 * r] = (float)cos(a);
			ha[(size_t)x * 4 * M1 + 2 * r + 1] = (float)-sin(a);
			hs[(size_t)(2 * r) * X + x] = (float)(cos(a) / X);
			hs[(size_t)(2 * r + 1) * X + x] = (float)(sin(a) / X);
		}
	}
}

void pno__spectral_gemm_free(struct pno__spectral_gemm *g)
{
	if (!g)
		return;
	pno_free(g->fa);
	pno_free(g->fs);
	pno_free(g->ha);
	pno_free(g->hs);
	pno_free(g->t);
	pno_free(g->p);
	pno_free(g);
}

/* Sizes were validated (and checked against INT_MAX) by the caller. */
enum pno_status pno__spectral_gemm_init(struct pno__spectral_gemm **out,
					const struct pno_spectral *s)
{
	enum pno_status st = PNO_STATUS_NOMEM;
	size_t C = (size_t)s->impl->C, Bm = (size_t)s->Bmax;
	int two = s->dims == 2;
	int L = two ? s->Y : s->X, Ml = two ? s->M2 : s->M1;
	size_t lines = Bm * C * (two ? (size_t)s->X : 1);
	struct pno__spectral_gemm *g = pno_calloc(1, sizeof *g);

	*out = NULL;
	if (!g)
		goto cleanup;
	g->fa = alloc_floats((size_t)2 * Ml * L);
	g->fs = alloc_floats((size_t)2 * Ml * L);
	g->t = alloc_floats((size_t)2 * Ml * lines);
	if (!g->fa || !g->fs || !g->t)
		goto cleanup;
	fill_line_matrices(g->fa, g->fs, Ml, L);
	if (two) {
		size_t r4 = (size_t)4 * s->M1;
		g->ha = alloc_floats(r4 * s->X);
		g->hs = alloc_floats(r4 * s->X);
		g->p = alloc_floats((size_t)2 * s->M2 * Bm * C * r4);
		if (!g->ha || !g->hs || !g->p)
			goto cleanup;
		fill_row_matrices(g->ha, g->hs, s->M1, s->X);
	}
	*out = g;
	g = NULL;
	st = PNO_STATUS_OK;
cleanup:
	pno__spectral_gemm_free(g);
	if (st != PNO_STATUS_OK)
		pno__errorf(st, "spectral: out of memory for GEMM workspace");
	return st;
}

/* C (M x N) = A . B + beta C, row-major, with the larger of M and N split
 * evenly over the OpenMP threads, each running a single-threaded BLAS call
 * (OpenBLAS' OpenMP build does so inside a parallel region). OpenBLAS'
 * own threading leaves these tall-skinny shapes (32768 x 64 x 24) on one
 * core or slower. Every output element is still one BLAS dot product over
 * the whole K, so the split changes no bits for a given thread count. */
static void sgemm_split(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int M, int N, int K, const float *A, int lda,
			const float *B, int ldb, float beta, float *C, int ldc)
{
#pragma omp parallel
	{
		int nt = omp_get_num_threads(), id = omp_get_thread_num();
		int along_m = M >= N, L = along_m ? M : N;
		int l0 = (int)((long)L * id / nt), l1 = (int)((long)L * (id + 1) / nt);
		const float *a = A, *b = B;
		float *c = C;
		if (along_m) {
			a += ta == CblasNoTrans ? (size_t)l0 * lda : (size_t)l0;
			c += (size_t)l0 * ldc;
		} else {
			b += tb == CblasNoTrans ? (size_t)l0 : (size_t)l0 * ldb;
			c += l0;
		}
		if (l1 > l0)
			cblas_sgemm(CblasRowMajor, ta, tb, along_m ? l1 - l0 : M,
				    along_m ? N : l1 - l0, K, 1.0f, a, lda, b, ldb,
				    beta, c, ldc);
	}
}

/* t = a . x^T: the 2*Ml line coefficients of every line. */
static void line_forward(float *t,		/* (2*Ml, lines) */
			 const float *a,	/* (2*Ml, L) */
			 const float *x,	/* (lines, L) */
			 int Ml, int L, int lines)
{
	sgemm_split(CblasNoTrans, CblasTrans, 2 * Ml, lines, L, a, L, x, L,
		    0.0f, t, lines);
}

/* y = t^T . a + beta y */
static void line_inverse(float *y,		/* (lines, L) */
			 const float *t,	/* (2*Ml, lines) */
			 const float *a,	/* (2*Ml, L) */
			 float beta, int Ml, int L, int lines)
{
	sgemm_split(CblasTrans, CblasNoTrans, lines, L, 2 * Ml, t, lines, a, L,
		    beta, y, L);
}

/* p = H^T . t^T with H (X, 4*M1) the first-axis matrix; h holds H itself
 * (xmajor) or H^T. p comes out row-major by (row, re/im) so that combine
 * streams over (b, c). */
static void rows_forward(float *p,		/* (4*M1, R) */
			 const float *t,	/* (R, X) */
			 const float *h, int xmajor, int R, int X, int M1)
{
	sgemm_split(xmajor ? CblasTrans : CblasNoTrans, CblasTrans, 4 * M1, R,
		    X, h, xmajor ? 4 * M1 : X, t, X, 0.0f, p, R);
}

/* t = p^T . G with G (4*M1, X); h holds G (not xmajor) or G^T. */
static void rows_inverse(float *t,		/* (R, X) */
			 const float *p,	/* (4*M1, R) */
			 const float *h, int xmajor, int R, int X, int M1)
{
	sgemm_split(CblasTrans, xmajor ? CblasTrans : CblasNoTrans, R, X,
		    4 * M1, p, R, h, xmajor ? 4 * M1 : X, 0.0f, t, X);
}

/* Sum the real products into complex modes: p[(r, a)][(m2, b)] holds
 * row-factor part a times line-coefficient part b. sgn = +1 multiplies by
 * the row factor, sgn = -1 by its conjugate (the adjoint of expand). */
static void combine(float *z,			/* modes (K, B, 2, C) */
		    const float *p,		/* (2*M1, 2, 2*M2, 2, B*C) */
		    float sgn, int M1, int M2, int B, int C)
{
	size_t BC = (size_t)B * C, row = 2 * (size_t)M2 * BC;
#pragma omp parallel for schedule(static)
	for (int k = 0; k < 2 * M1 * M2; k++) {
		int r = k / M2, m2 = k % M2;
		const float *p0 = p + (size_t)(2 * r) * row + (size_t)(2 * m2) * BC;
		const float *p1 = p0 + row;	/* imaginary row factor */
		for (int b = 0; b < B; b++) {
			float *o = z + pno__mode_off(k, b, 0, B, C);
			const float *q0 = p0 + (size_t)b * C, *q1 = p1 + (size_t)b * C;
			for (int c = 0; c < C; c++) {
				o[c] = q0[c] - sgn * q1[BC + c];
				o[C + c] = sgn * q1[c] + q0[BC + c];
			}
		}
	}
}

/* The transpose of combine(., -sgn): spread modes into product rows. */
static void expand(float *p,			/* (2*M1, 2, 2*M2, 2, B*C) */
		   const float *z,		/* modes (K, B, 2, C) */
		   float sgn, int M1, int M2, int B, int C)
{
	size_t BC = (size_t)B * C, row = 2 * (size_t)M2 * BC;
#pragma omp parallel for schedule(static)
	for (int k = 0; k < 2 * M1 * M2; k++) {
		int r = k / M2, m2 = k % M2;
		float *p0 = p + (size_t)(2 * r) * row + (size_t)(2 * m2) * BC;
		float *p1 = p0 + row;
		for (int b = 0; b < B; b++) {
			const float *i = z + pno__mode_off(k, b, 0, B, C);
			float *q0 = p0 + (size_t)b * C, *q1 = p1 + (size_t)b * C;
			for (int c = 0; c < C; c++) {
				q0[c] = i[c];
				q1[c] = -sgn * i[C + c];
				q0[BC + c] = i[C + c];
				q1[BC + c] = sgn * i[c];
			}
		}
	}
}

/* 1D: (2*M, B*C) rows <-> modes: plain row copies. */
static void to_modes(float *z,			/* modes (M, B, 2, C) */
		     const float *t,		/* (2*M, B, C) */
		     int M, int B, int C)
{
	size_t BC = (size_t)B * C;
#pragma omp parallel for schedule(static)
	for (int k = 0; k < M; k++)
		for (int b = 0; b < B; b++) {
			float *o = z + pno__mode_off(k, b, 0, B, C);
			const float *tr = t + 2 * k * BC + (size_t)b * C;
			memcpy(o, tr, (size_t)C * sizeof *o);
			memcpy(o + C, tr + BC, (size_t)C * sizeof *o);
		}
}

static void from_modes(float *t,		/* (2*M, B, C) */
		       const float *z,		/* modes (M, B, 2, C) */
		       int M, int B, int C)
{
	size_t BC = (size_t)B * C;
#pragma omp parallel for schedule(static)
	for (int k = 0; k < M; k++)
		for (int b = 0; b < B; b++) {
			const float *i = z + pno__mode_off(k, b, 0, B, C);
			float *tr = t + 2 * k * BC + (size_t)b * C;
			memcpy(tr, i, (size_t)C * sizeof *i);
			memcpy(tr + BC, i + C, (size_t)C * sizeof *i);
		}
}

/* Shared forward chain: line GEMM by `a`, then (2D) rows by `h`. */
static void chain_forward(const struct pno_spectral *s, float *z,
			  const float *x, const float *a, const float *h,
			  int xmajor, float sgn, int C, int B)
{
	struct pno__spectral_gemm *g = s->impl->g;
	int BC = B * C;
	if (s->dims == 1) {
		line_forward(g->t, a, x, s->M1, s->X, BC);
		to_modes(z, g->t, s->M1, B, C);
		return;
	}
	line_forward(g->t, a, x, s->M2, s->Y, BC * s->X);
	rows_forward(g->p, g->t, h, xmajor, 2 * s->M2 * BC, s->X, s->M1);
	combine(z, g->p, sgn, s->M1, s->M2, B, C);
}

static void chain_inverse(const struct pno_spectral *s, float *y,
			  const float *z, const float *a, const float *h,
			  int xmajor, float sgn, float beta, int C, int B)
{
	struct pno__spectral_gemm *g = s->impl->g;
	int BC = B * C;
	if (s->dims == 1) {
		from_modes(g->t, z, s->M1, B, C);
		line_inverse(y, g->t, a, beta, s->M1, s->X, BC);
		return;
	}
	expand(g->p, z, sgn, s->M1, s->M2, B, C);
	rows_inverse(g->t, g->p, h, xmajor, 2 * s->M2 * BC, s->X, s->M1);
	line_inverse(y, g->t, a, beta, s->M2, s->Y, BC * s->X);
}

void pno__spectral_gemm_analyze(const struct pno_spectral *s, float *xhat,
				const float *x, int C, int B)
{
	const struct pno__spectral_gemm *g = s->impl->g;
	chain_forward(s, xhat, x, g->fa, g->ha, 1, 1.0f, C, B);
}

void pno__spectral_gemm_synthesize(const struct pno_spectral *s, float *y,
				   const float *yhat, int C, int B)
{
	const struct pno__spectral_gemm *g = s->impl->g;
	chain_inverse(s, y, yhat, g->fs, g->hs, 0, 1.0f, 0.0f, C, B);
}

void pno__spectral_gemm_synthesize_backward(const struct pno_spectral *s,
					    float *dyhat, const float *dy,
					    int C, int B)
{
	const struct pno__spectral_gemm *g = s->impl->g;
	chain_forward(s, dyhat, dy, g->fs, g->hs, 0, -1.0f, C, B);
}

void pno__spectral_gemm_analyze_backward(const struct pno_spectral *s,
					 float *dx, const float *dxhat, int C,
					 int B)
{
	const struct pno__spectral_gemm *g = s->impl->g;
	chain_inverse(s, dx, dxhat, g->fa, g->ha, 1, -1.0f, 1.0f, C, B);
}
