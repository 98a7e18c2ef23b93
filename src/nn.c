/* Pointwise linear layer (GEMM through CBLAS) and exact GELU. */
#include "pno/nn.h"
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void pno_linear_forward(float *y, const float *x, const float *w,
			const float *bias, int B, int Ci, int Co, int P,
			int accumulate)
{
	size_t so = (size_t)Co * P, si = (size_t)Ci * P;
	for (int b = 0; b < B; b++) {
		float *yb = y + b * so;
		if (bias) {
			for (int o = 0; o < Co; o++) {
				float v = bias[o];
				float *row = yb + (size_t)o * P;
				for (int p = 0; p < P; p++)
					row[p] = accumulate ? row[p] + v : v;
			}
		}
		/* yb (Co x P) = w (Co x Ci) * xb (Ci x P) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, P, Ci,
			    1.0f, w, Ci, x + b * si, P,
			    (accumulate || bias) ? 1.0f : 0.0f, yb, P);
	}
}

void pno_linear_backward(float *dx, float *dw, float *dbias, const float *dy,
			 const float *x, const float *w, int B, int Ci, int Co,
			 int P)
{
	size_t so = (size_t)Co * P, si = (size_t)Ci * P;
	for (int b = 0; b < B; b++) {
		const float *dyb = dy + b * so;
		if (dw) /* dw (Co x Ci) += dyb (Co x P) * xb^T (P x Ci) */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co,
				    Ci, P, 1.0f, dyb, P, x + b * si, P, 1.0f, dw,
				    Ci);
		if (dx) /* dxb (Ci x P) += w^T (Ci x Co) * dyb (Co x P) */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ci,
				    P, Co, 1.0f, w, Ci, dyb, P, 1.0f, dx + b * si,
				    P);
		if (dbias) {
			for (int o = 0; o < Co; o++) {
				const float *row = dyb + (size_t)o * P;
				float s = 0.0f;
				for (int p = 0; p < P; p++)
					s += row[p];
				dbias[o] += s;
			}
		}
	}
}

void pno_linear_forward_naive(float *y, const float *x, const float *w,
			      const float *bias, int B, int Ci, int Co, int P,
			      int accumulate)
{
	for (int b = 0; b < B; b++)
		for (int o = 0; o < Co; o++)
			for (int p = 0; p < P; p++) {
				double s = bias ? bias[o] : 0.0;
				for (int i = 0; i < Ci; i++)
					s += (double)w[o * Ci + i] *
					     x[((size_t)b * Ci + i) * P + p];
				float *yp = &y[((size_t)b * Co + o) * P + p];
				*yp = accumulate ? *yp + (float)s : (float)s;
			}
}

/* exp(x) for x <= 0 down to about -88: 2^n * e^r with |r| <= ln2/2 and a
 * degree-7 Taylor polynomial (truncation error < 2e-9 relative), written
 * without calls so loops vectorize. */
static inline float exp_neg(float x)
{
	const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
	/* also maps NaN to -87: the float-to-int conversion below is
	 * undefined for NaN (callers keep NaN: GELU multiplies by x) */
	x = x > -87.0f ? x : -87.0f;
	/* round to nearest by adding 1.5 * 2^23 (keeps the loop vectorized;
	 * |x * log2 e| < 2^22 here) */
	const float shifter = 12582912.0f;
	float n = (x * 1.44269504088896341f + shifter) - shifter;
	float r = (x - n * ln2_hi) - n * ln2_lo;
	float p = 1.0f / 5040.0f;
	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	union {
		float f;
		int i;
	} s;
	s.i = ((int)n + 127) << 23;
	return p * s.f;
}

/* erfc for z >= 0: the Chebyshev fit of Numerical Recipes (erfcc),
 * fractional error below 1.2e-7 everywhere. */
static inline float erfc_pos(float z)
{
	float t = 1.0f / (1.0f + 0.5f * z);
	float q = 0.17087277f;
	q = q * t - 0.82215223f;
	q = q * t + 1.48851587f;
	q = q * t - 1.13520398f;
	q = q * t + 0.27886807f;
	q = q * t - 0.18628806f;
	q = q * t + 0.09678418f;
	q = q * t + 0.37409196f;
	q = q * t + 1.00002368f;
	q = q * t - 1.26551223f;
	return t * exp_neg(-z * z + q);
}

float pno_erfc_fast(float x)
{
	return x >= 0.0f ? erfc_pos(x) : 2.0f - erfc_pos(-x);
}

#define PNO_SQRT1_2 0.70710678118654752440f
#define PNO_INV_SQRT_2PI 0.39894228040143267794f

/* Phi(x) = (1 + erf(x/sqrt2))/2 = erfc(-x/sqrt2)/2, computed from the side
 * where erfc keeps relative accuracy. */
static inline float phi(float x)
{
	float z = x * PNO_SQRT1_2;
	return z >= 0.0f ? 1.0f - 0.5f * erfc_pos(z) : 0.5f * erfc_pos(-z);
}

float pno_gelu(float x) { return x * phi(x); }

void pno_gelu_forward(float *y, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] * phi(x[i]);
}

static inline float gelu_grad(float v)
{
	return phi(v) + v * PNO_INV_SQRT_2PI * exp_neg(-0.5f * v * v);
}

void pno_gelu_backward_inplace(float *d, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		d[i] *= gelu_grad(x[i]);
}

void pno_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++) {
		dx[i] += dy[i] * gelu_grad(x[i]);
	}
}
