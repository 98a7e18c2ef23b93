/*
 * Neural-network layers as forward/backward pairs over channels-first
 * tensors (B, C, P) where P is the number of grid points (X or X*Y).
 *
 * Backward functions ACCUMULATE into gradient buffers (zeroing is the
 * caller's job) and take NULL for gradients that are not wanted. Nothing
 * here allocates.
 */
#ifndef PNO_NN_H
#define PNO_NN_H

#include "pno/core.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[b,o,p] = sum_i w[o,i] x[b,i,p] + bias[o] (+ y if accumulate). */
void pno_linear_forward(float *y,	     /* (B, Co, P) */
			const float *x,	     /* (B, Ci, P) */
			const float *w,	     /* (Co, Ci) */
			const float *bias,   /* (Co) or NULL */
			int B, int Ci, int Co, int P, int accumulate);
void pno_linear_backward(float *dx,	     /* (B, Ci, P) or NULL, += */
			 float *dw,	     /* (Co, Ci) or NULL, += */
			 float *dbias,	     /* (Co) or NULL, += */
			 const float *dy,    /* (B, Co, P) */
			 const float *x,     /* (B, Ci, P) */
			 const float *w,     /* (Co, Ci) */
			 int B, int Ci, int Co, int P);
/* Naive loops, the reference the GEMM version must agree with. */
void pno_linear_forward_naive(float *y, const float *x, const float *w,
			      const float *bias, int B, int Ci, int Co, int P,
			      int accumulate);

/* GELU, exact form: y = x/2 (1 + erf(x / sqrt 2)). y may alias x. */
void pno_gelu_forward(float *y, const float *x, size_t n);
/* dx += dy * gelu'(x); x is the layer input. */
void pno_gelu_backward(float *dx, const float *dy, const float *x, size_t n);
/* d *= gelu'(x): turns d loss/d y into d loss/d x in place. */
void pno_gelu_backward_inplace(float *d, const float *x, size_t n);
/* Scalar versions (float accurate to a few ulp). */
float pno_gelu(float x);
float pno_erfc_fast(float x);

#ifdef __cplusplus
}
#endif
#endif
