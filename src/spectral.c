/* Spectral layer: init / free, path choice, and the stage dispatch to the
 * GEMM or FFTW transforms and the mixing kernels. */
#include "spectral_impl.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- sizes ---- */

static enum pno_status check_sizes(int dims, int Bmax, int Ci, int Co,
				   int X, int *Y, int M1, int *M2)
{
#define BAD(...) return pno__errorf(PNO_STATUS_INVALID, "spectral: " __VA_ARGS__)
	if (dims != 1 && dims != 2)
		BAD("dims = %d, must be 1 or 2", dims);
	if (Bmax < 1)
		BAD("Bmax = %d, must be >= 1", Bmax);
	if (Ci < 1 || Co < 1)
		BAD("channels Ci = %d, Co = %d, both must be >= 1", Ci, Co);
	if (X < 1)
		BAD("X = %d, must be >= 1", X);
	if (dims == 1) {
		if (*Y < 0 || *Y > 1 || *M2 < 0 || *M2 > 1)
			BAD("1D needs Y and M2 of 0 or 1, got Y = %d, M2 = %d",
			    *Y, *M2);
		*Y = *M2 = 1;
		if (M1 < 1 || M1 > X / 2 + 1)
			BAD("M1 = %d, must be in 1..X/2+1 = %d for X = %d", M1,
			    X / 2 + 1, X);
		return PNO_STATUS_OK;
	}
	if (*Y < 1)
		BAD("Y = %d, must be >= 1", *Y);
	if (M1 < 1 || 2 * (long)M1 > X)
		BAD("M1 = %d, must be in 1..X/2 = %d for X = %d", M1, X / 2, X);
	if (*M2 < 1 || *M2 > *Y / 2 + 1)
		BAD("M2 = %d, must be in 1..Y/2+1 = %d for Y = %d", *M2,
		    *Y / 2 + 1, *Y);
	return PNO_STATUS_OK;
#undef BAD
}

/* Every buffer must be indexable by a BLAS int. Products in double: the
 * factors are ints, so the value is exact enough to compare with INT_MAX
 * and cannot wrap. */
static enum pno_status check_extent(const struct pno_spectral *s, int C)
{
	double BC = (double)s->Bmax * C;
	double lines = s->dims == 2 ? BC * s->X : BC;
	int Ml = s->dims == 2 ? s->M2 : s->M1;
	double ext[5] = {
		BC * s->X * s->Y,		/* inputs and outputs */
		2.0 * Ml * lines,		/* line coefficients */
		2.0 * BC * s->K,		/* mode buffers */
		2.0 * s->Ci * s->Co * s->K,	/* weights */
		s->dims == 2 ? 4.0 * BC * s->K : 0,	/* first-axis products */
	};
	for (int i = 0; i < 5; i++)
		if (ext[i] > INT_MAX)
			return pno__errorf(PNO_STATUS_INVALID,
					   "spectral: sizes too large (a buffer "
					   "of %.0f elements exceeds %d)",
					   ext[i], INT_MAX);
	return PNO_STATUS_OK;
}

/* ---- path choice ---- */

static int largest_prime_factor(int n)
{
	int p = 1;
	for (int d = 2; (long)d * d <= n; d++)
		while (n % d == 0) {
			p = d;
			n /= d;
		}
	return n > 1 ? PNO__MAX(p, n) : p;
}

/* FFT flops of a length-n axis, 5 n log2 n (complex). FFTW has no fast
 * codelets for large prime factors: measured ~16x slower at n = 97, 101. */
static double fft_axis_flops(int n)
{
	double c = 5.0 * n * log2((double)PNO__MAX(n, 2));
	return largest_prime_factor(n) > 13 ? 16.0 * c : c;
}

/* Cost model, in microseconds per slice and direction, fitted to single-
 * thread runs of both paths over 1D / 2D sizes from 32^2 to 256^2 and
 * 256 to 8192 points, 8 to 128 modes (bench/bench_spectral and variants on
 * a 2-core AVX-512 EPYC VM): the GEMM path runs at ~70
 * Gflop/s; FFTW at ~25 Gflop/s plus a per-slice overhead of copying the
 * grid (0.5 ns per point) and gathering the modes (8 ns per mode, a cache
 * miss each). Checked on 13 configurations at 1 and 2 threads: it picks
 * the faster path in all but one 2% near-tie. The choice is a pure
 * function of the sizes, so it is the same on every run. */
enum pno_spectral_path pno_spectral_path_auto(int dims, int Bmax, int Ci,
					      int Co, int X, int Y, int M1,
					      int M2)
{
	double gemm, fft, N = (double)X * (dims == 2 ? Y : 1);
	double K = dims == 2 ? 2.0 * M1 * M2 : M1;
	(void)Bmax, (void)Ci, (void)Co;	/* both costs scale with B*C */
	if (dims == 1) {
		gemm = 2.0 * X * 2 * M1;
		fft = 0.5 * fft_axis_flops(X);
	} else {
		gemm = 2.0 * X * Y * 2 * M2 + 2.0 * 2 * M2 * X * 4 * M1;
		/* X real rows, then M2 complex columns */
		fft = 0.5 * X * fft_axis_flops(Y) + (double)M2 * fft_axis_flops(X);
	}
	double t_gemm = gemm / 70e3;
	double t_fft = fft / 25e3 + 0.5e-3 * N + 8e-3 * K;
	return t_gemm <= t_fft ? PNO_SPECTRAL_PATH_GEMM : PNO_SPECTRAL_PATH_FFTW;
}

enum pno_status pno_spectral_set_path(struct pno_spectral *s,
				      enum pno_spectral_path path)
{
	struct pno_spectral__impl *im = s->impl;
	enum pno_status st = PNO_STATUS_OK;
	if (path == PNO_SPECTRAL_PATH_AUTO)
		path = pno_spectral_path_auto(s->dims, s->Bmax, s->Ci, s->Co,
					      s->X, s->Y, s->M1, s->M2);
	if (path == PNO_SPECTRAL_PATH_GEMM && !im->g)
		st = pno__spectral_gemm_init(&im->g, s);
	else if (path == PNO_SPECTRAL_PATH_FFTW && !im->f)
		st = pno__spectral_fftw_init(&im->f, s);
	else if (path != PNO_SPECTRAL_PATH_GEMM &&
		 path != PNO_SPECTRAL_PATH_FFTW)
		st = pno__errorf(PNO_STATUS_INVALID,
				 "spectral: path %d, must be AUTO, GEMM or FFTW",
				 (int)path);
	if (st == PNO_STATUS_OK)
		im->path = path;
	return st;
}

enum pno_spectral_path pno_spectral_path_get(const struct pno_spectral *s)
{
	return s->impl->path;
}

/* ---- init / free ---- */

void pno_spectral_free(struct pno_spectral *s)
{
	if (!s)
		return;
	if (s->impl) {
		pno__spectral_gemm_free(s->impl->g);
		pno__spectral_fftw_free(s->impl->f);
		pno_free(s->impl->wk);
		pno_free(s->impl->wt);
		pno_free(s->impl->dwk);
		pno_free(s->impl->dxh);
		pno_free(s->impl);
	}
	memset(s, 0, sizeof *s);
}

enum pno_status pno_spectral_init(struct pno_spectral *s, int dims, int Bmax,
				  int Ci, int Co, int X, int Y, int M1, int M2)
{
	enum pno_status st;
	struct pno_spectral__impl *im = NULL;

	memset(s, 0, sizeof *s);
	st = check_sizes(dims, Bmax, Ci, Co, X, &Y, M1, &M2);
	if (st != PNO_STATUS_OK)
		return st;
	*s = (struct pno_spectral){dims, Bmax, Ci, Co, X, Y, M1, M2,
				   dims == 1 ? M1 : 2 * M1 * M2, NULL};
	st = check_extent(s, PNO__MAX(Ci, Co));
	if (st != PNO_STATUS_OK)
		goto cleanup;
	im = s->impl = pno_calloc(1, sizeof *im);
	if (im) {
		size_t nw = pno_spectral_weight_count(s) * sizeof(float);
		im->C = PNO__MAX(Ci, Co);
		im->wk = pno_malloc(nw);
		im->wt = pno_malloc(nw);
		im->dwk = pno_malloc(nw);
		im->dxh = pno_malloc(pno_spectral_modes_size(s, Ci, Bmax) *
				     sizeof(float));
	}
	if (!im || !im->wk || !im->wt || !im->dwk || !im->dxh) {
		st = pno__errorf(PNO_STATUS_NOMEM,
				 "spectral: out of memory for mixing workspace");
		goto cleanup;
	}
	st = pno_spectral_set_path(s, PNO_SPECTRAL_PATH_AUTO);
cleanup:
	if (st != PNO_STATUS_OK)
		pno_spectral_free(s);
	return st;
}

size_t pno_spectral_weight_count(const struct pno_spectral *s)
{
	return (size_t)s->Ci * s->Co * s->K * 2;
}

size_t pno_spectral_modes_size(const struct pno_spectral *s, int C, int B)
{
	return (size_t)B * C * s->K * 2;
}

/* ---- stages ---- */

static int bad_batch(const struct pno_spectral *s, int B, const char *fn)
{
	if (B >= 1 && B <= s->Bmax)
		return 0;
	PNO_LOG(PNO_LOG_LEVEL_ERROR, "%s: B = %d outside 1..Bmax = %d", fn, B,
		s->Bmax);
	return 1;
}

void pno_spectral_analyze(struct pno_spectral *s, float *xhat, const float *x,
			  int B)
{
	if (bad_batch(s, B, __func__))
		return;
	if (s->impl->path == PNO_SPECTRAL_PATH_GEMM)
		pno__spectral_gemm_analyze(s, xhat, x, s->Ci, B);
	else
		pno__spectral_fftw_analyze(s, xhat, x, s->Ci, B);
}

void pno_spectral_synthesize(struct pno_spectral *s, float *y,
			     const float *yhat, int B)
{
	if (bad_batch(s, B, __func__))
		return;
	if (s->impl->path == PNO_SPECTRAL_PATH_GEMM)
		pno__spectral_gemm_synthesize(s, y, yhat, s->Co, B);
	else
		pno__spectral_fftw_synthesize(s, y, yhat, s->Co, B);
}

void pno_spectral_synthesize_backward(struct pno_spectral *s, float *dyhat,
				      const float *dy, int B)
{
	if (bad_batch(s, B, __func__))
		return;
	if (s->impl->path == PNO_SPECTRAL_PATH_GEMM)
		pno__spectral_gemm_synthesize_backward(s, dyhat, dy, s->Co, B);
	else
		pno__spectral_fftw_synthesize_backward(s, dyhat, dy, s->Co, B);
}

void pno_spectral_analyze_backward(struct pno_spectral *s, float *dx,
				   const float *dxhat, int B)
{
	if (bad_batch(s, B, __func__))
		return;
	if (s->impl->path == PNO_SPECTRAL_PATH_GEMM)
		pno__spectral_gemm_analyze_backward(s, dx, dxhat, s->Ci, B);
	else
		pno__spectral_fftw_analyze_backward(s, dx, dxhat, s->Ci, B);
}

void pno_spectral_mix(struct pno_spectral *s, float *yhat, const float *xhat,
		      const float *w, int B)
{
	if (!bad_batch(s, B, __func__))
		pno__spectral_mix(s, yhat, xhat, w, B);
}

void pno_spectral_mix_backward(struct pno_spectral *s, float *dxhat,
			       float *dw, const float *dyhat,
			       const float *xhat, const float *w, int B)
{
	if (!bad_batch(s, B, __func__))
		pno__spectral_mix_backward(s, dxhat, dw, dyhat, xhat, w, B);
}

void pno_spectral_forward(struct pno_spectral *s, float *y, float *xhat_save,
			  float *yhat, const float *x, const float *w, int B)
{
	if (bad_batch(s, B, __func__))
		return;
	pno_spectral_analyze(s, xhat_save, x, B);
	pno_spectral_mix(s, yhat, xhat_save, w, B);
	pno_spectral_synthesize(s, y, yhat, B);
}

void pno_spectral_modes_mask(const struct pno_spectral *s, float *z,
			     const uint8_t *keep, float scale, int C, int B)
{
	int K = s->K;
	if (B < 1 || C < 1)
		return;
	/* the buffer is (K, B, 2, C): walk it in order, gather the mask */
#pragma omp parallel for schedule(static) if ((size_t)K * B * C > 65536)
	for (int k = 0; k < K; k++)
		for (int b = 0; b < B; b++) {
			float *re = z + pno__mode_off(k, b, 0, B, C);
			float *im = re + C;
			const uint8_t *kb = keep + (size_t)b * C * K + k;
			for (int c = 0; c < C; c++) {
				float f = kb[(size_t)c * K] ? scale : 0.0f;
				re[c] *= f;
				im[c] *= f;
			}
		}
}

void pno_spectral_backward(struct pno_spectral *s, float *dx, float *dw,
			   float *dyhat, const float *dy,
			   const float *xhat_save, const float *w, int B)
{
	float *dxh = s->impl->dxh;
	if (bad_batch(s, B, __func__))
		return;
	pno_spectral_synthesize_backward(s, dyhat, dy, B);
	if (dx)
		memset(dxh, 0, pno_spectral_modes_size(s, s->Ci, B) * sizeof *dxh);
	pno_spectral_mix_backward(s, dx ? dxh : NULL, dw, dyhat, xhat_save, w,
				  B);
	if (dx)
		pno_spectral_analyze_backward(s, dx, dxh, B);
}
