/*
 * Spectral convolution: the Fourier layer of an FNO, in 1D and 2D.
 *
 *   y = irfft( W · rfft(x) restricted to the retained modes )
 *
 * Input x is (B, Ci, X) in 1D or (B, Ci, X, Y) in 2D, row-major, channels
 * first. 1D keeps the M1 lowest frequencies 0..M1-1 of the half spectrum.
 * 2D keeps M2 columns 0..M2-1 of the half spectrum along the last axis and,
 * along the first axis, rows 0..M1-1 and the M1 most negative rows
 * X-M1..X-1 (Li et al. 2021). K is the number of retained complex modes
 * (M1 in 1D, 2*M1*M2 in 2D).
 *
 * Weights w are (Ci, Co, M1, 2) in 1D and (Ci, Co, 2*M1, M2, 2) in 2D
 * (trailing 2 = real, imaginary; rows 0..M1-1 of the 2*M1 axis are the
 * non-negative frequencies, rows M1..2*M1-1 the negative ones in FFT order
 * X-M1..X-1). Output mode k of channel o is sum_i xhat_i(k) w(i, o, k).
 * Normalization follows torch.fft: forward unscaled, inverse 1/N.
 *
 * The layer is split into three stages so that models can act between
 * them (e.g. a dropout mask over the retained coefficients):
 *   analyze    x    -> xhat  (retained modes of the input)
 *   mix        xhat -> yhat  (per-mode complex channel mixing with w)
 *   synthesize yhat -> y     (inverse transform, other modes zero)
 * Each stage has a backward that accumulates into its input gradient (and
 * into dw for mix). Mode buffers hold pno_spectral_modes_size(s, C, B)
 * floats; their internal layout is private to this module.
 *
 * All workspace and transform plans are made at init for batches up to
 * Bmax; the stage functions allocate nothing and may be called with any
 * B <= Bmax. A pno_spectral must not be used by two threads at once. The
 * stages run on the OpenMP threads (pno_threads_set); the FFTW path keeps
 * per-thread buffers for the thread count current at init and uses at
 * most that many. Results are bit-identical run to run for a fixed thread
 * count.
 */
#ifndef PNO_SPECTRAL_H
#define PNO_SPECTRAL_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pno_spectral__impl;

struct pno_spectral {
	int dims;		/* 1 or 2 */
	int Bmax, Ci, Co;	/* batch bound, input and output channels */
	int X, Y;		/* grid; Y = 1 in 1D */
	int M1, M2;		/* retained modes; M2 = 1 in 1D */
	int K;			/* retained complex modes per channel */
	struct pno_spectral__impl *impl;
};

/* Validates sizes: Bmax, Ci, Co, X, M1 >= 1; M1 <= X/2 + 1 in 1D (Y and
 * M2 must be 0 or 1 there and are stored as 1); in 2D Y, M2 >= 1,
 * 2*M1 <= X and M2 <= Y/2 + 1. Returns PNO_STATUS_INVALID with a message
 * otherwise (also if the buffers would be too large for BLAS int sizes),
 * PNO_STATUS_NOMEM if out of memory. The path is chosen as for
 * PNO_SPECTRAL_PATH_AUTO. On failure *s is left zeroed. */
enum pno_status pno_spectral_init(struct pno_spectral *s, int dims, int Bmax,
				  int Ci, int Co, int X, int Y, int M1, int M2);
void pno_spectral_free(struct pno_spectral *s);

/* How the transforms are computed. Both give the same result up to float
 * rounding (relative ~1e-7 .. 1e-6); each is bit-reproducible for a fixed
 * thread count.
 *   GEMM  only the retained modes, as real GEMMs by truncated DFT matrices
 *         precomputed at init (last axis, then the 2*M1 rows of the first
 *         axis); cheapest for few modes (the usual FNO case)
 *   FFTW  r2c / c2r with FFTW (in 2D the first-axis transform is done only
 *         for the M2 retained columns); FFTW_ESTIMATE plans, so the plan and
 *         hence the bits do not depend on timing; wins for many modes
 * AUTO picks one from a cost model (flop counts plus memory terms, fitted
 * once to measurements) of the sizes given at init, never from timing, so
 * the choice is the same on every run. */
enum pno_spectral_path {
	PNO_SPECTRAL_PATH_AUTO,
	PNO_SPECTRAL_PATH_GEMM,
	PNO_SPECTRAL_PATH_FFTW
};

/* Force a path (tests, benchmarks). May allocate the other path's
 * workspace or plans: returns PNO_STATUS_NOMEM / INTERNAL on failure and
 * leaves the current path in place. Not to be called concurrently with
 * the stage functions. */
enum pno_status pno_spectral_set_path(struct pno_spectral *s,
				      enum pno_spectral_path path);
/* The path in use (GEMM or FFTW, never AUTO). */
enum pno_spectral_path pno_spectral_path_get(const struct pno_spectral *s);
/* The path AUTO chooses for these sizes (no side effects). */
enum pno_spectral_path pno_spectral_path_auto(int dims, int Bmax, int Ci,
					      int Co, int X, int Y, int M1,
					      int M2);

/* Number of floats in the weight tensor: Ci*Co*K*2. */
size_t pno_spectral_weight_count(const struct pno_spectral *s);
/* Floats in a mode buffer for C channels and batch B: B*C*K*2. The layout
 * depends on B: a buffer written with batch B must be read with the same
 * B. */
size_t pno_spectral_modes_size(const struct pno_spectral *s, int C, int B);

void pno_spectral_analyze(struct pno_spectral *s,
			  float *xhat,		/* modes (B, Ci) */
			  const float *x,	/* (B, Ci, X[, Y]) */
			  int B);
/* Stage functions do nothing for B < 1 or B > Bmax (a caller bug; logged
 * at PNO_LOG_LEVEL_ERROR). */
void pno_spectral_mix(struct pno_spectral *s,
		      float *yhat,		/* modes (B, Co) */
		      const float *xhat,	/* modes (B, Ci) */
		      const float *w,		/* (Ci, Co, K..., 2) */
		      int B);
/* Overwrites y. */
void pno_spectral_synthesize(struct pno_spectral *s,
			     float *y,		/* (B, Co, X[, Y]) */
			     const float *yhat, /* modes (B, Co) */
			     int B);

/* z(b, c, k) *= keep[(b*C + c)*K + k] ? scale : 0 for a mode buffer of C
 * channels and batch B: a mask over complex coefficients given in the
 * canonical (B, C, K) order whatever the buffer layout. Its own adjoint, so
 * the same call masks a gradient in backward. */
void pno_spectral_modes_mask(const struct pno_spectral *s,
			     float *z,			/* modes (B, C) */
			     const uint8_t *keep,	/* (B, C, K) */
			     float scale, int C, int B);

/* Overwrites dyhat (it is a fresh gradient of a stage output). */
void pno_spectral_synthesize_backward(struct pno_spectral *s,
				      float *dyhat,	 /* modes (B, Co) */
				      const float *dy,	 /* (B, Co, X[, Y]) */
				      int B);
/* Accumulates into dxhat (if not NULL) and dw (if not NULL). */
void pno_spectral_mix_backward(struct pno_spectral *s,
			       float *dxhat,	     /* modes (B, Ci) */
			       float *dw,	     /* like w */
			       const float *dyhat,   /* modes (B, Co) */
			       const float *xhat,    /* modes (B, Ci) */
			       const float *w, int B);
/* Accumulates into dx. */
void pno_spectral_analyze_backward(struct pno_spectral *s,
				   float *dx,		/* (B, Ci, X[, Y]) */
				   const float *dxhat,	/* modes (B, Ci) */
				   int B);

/* Whole layer. xhat_save keeps the input modes for backward; yhat is
 * scratch of modes (B, Co) that backward reuses as dyhat. */
void pno_spectral_forward(struct pno_spectral *s, float *y, float *xhat_save,
			  float *yhat, const float *x, const float *w, int B);
/* Accumulates into dx (if not NULL) and dw. dyhat is scratch (B, Co). */
void pno_spectral_backward(struct pno_spectral *s, float *dx, float *dw,
			   float *dyhat, const float *dy,
			   const float *xhat_save, const float *w, int B);

/* Reference: the same layer by a naive DFT in double precision, O(N^2)
 * per line. For tests; allocates. */
enum pno_status pno_spectral_forward_naive(const struct pno_spectral *s,
					   float *y, const float *x,
					   const float *w, int B);

#ifdef __cplusplus
}
#endif
#endif
