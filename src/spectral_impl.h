/* Spectral module internals shared by spectral.c (init, mixing, dispatch),
 * spectral_gemm.c (truncated DFT by GEMM), spectral_fftw.c (FFTW path) and
 * spectral_naive.c (double-precision reference). Not installed.
 *
 * Mode buffers are (K, B, 2, C): for each retained mode k a (B x C)
 * complex matrix stored as split rows (C real parts, then C imaginary
 * parts, per batch row), so the per-mode complex products in mixing
 * vectorise as plain FMAs over channels. k is the
 * canonical weight order: k = r*M2 + m2 in 2D (r = row of the 2*M1 axis,
 * m2 = column of the half spectrum), k = frequency in 1D.
 */
#ifndef PNO_SPECTRAL_IMPL_H
#define PNO_SPECTRAL_IMPL_H

#include "internal.h"
#include "pno/spectral.h"

#include <fftw3.h>

/* Truncated-DFT matrices and workspace of the GEMM path. In 1D the "line"
 * transform runs along X with M1 modes; in 2D along Y with M2 modes and
 * is followed by the 2*M1 retained rows of the first axis. */
struct pno__spectral_gemm {
	float *fa;	/* (2*Ml, L) line analysis: cos, -sin */
	float *fs;	/* (2*Ml, L) line synthesis: w cos / L, -w sin / L */
	float *ha;	/* (X, 4*M1) first-axis analysis, e^-i (2D) */
	float *hs;	/* (4*M1, X) first-axis synthesis, e^+i / X (2D) */
	float *t;	/* (2*Ml, Bmax*C*X[*1]) line coefficients */
	float *p;	/* (4*M1, 2*M2*Bmax*C) first-axis products (2D) */
};

struct pno__spectral_fftw {
	fftwf_plan r2c, c2r;	/* 1D: the line; 2D: the X rows along Y */
	fftwf_plan colf, colb;	/* 2D: M2 columns along X, in place */
	int nthr;		/* thread slots */
	size_t nr, nc;		/* floats per real / complex slot */
	float *re;		/* (nthr, nr) real slots */
	float *cx;		/* (nthr, nc) half-spectrum slots */
};

struct pno_spectral__impl {
	enum pno_spectral_path path;
	int C;			/* max(Ci, Co) */
	float *wk;		/* (K, Ci, 2, Co) weights as split rows */
	float *wt;		/* (K, Co, 2, Ci) their conjugate transpose */
	float *dwk;		/* (K, Ci, 2, Co) per-mode weight gradient */
	float *dxh;		/* modes (Bmax, Ci): backward scratch */
	struct pno__spectral_gemm *g;	/* NULL until the path is needed */
	struct pno__spectral_fftw *f;
};

/* Offset of Re z(k, b, c) in a mode buffer of batch B and C channels;
 * Im z(k, b, c) is C floats further. */
static inline size_t pno__mode_off(int k, int b, int c, int B, int C)
{
	return ((size_t)k * B + b) * 2 * C + c;
}

/* Hermitian weight of half-spectrum column c of a length-n real axis: 1 for
 * DC and Nyquist, 2 otherwise (c2r counts the mirrored half). */
static inline int pno__herm_weight(int c, int n)
{
	return (c == 0 || 2 * c == n) ? 1 : 2;
}

/* Frequency of row r of the retained 2*M1 rows of an axis of length n. */
static inline int pno__row_freq(int r, int M1, int n)
{
	return r < M1 ? r : n - 2 * M1 + r;
}

enum pno_status pno__spectral_gemm_init(struct pno__spectral_gemm **out,
					const struct pno_spectral *s);
void pno__spectral_gemm_free(struct pno__spectral_gemm *g);
/* dir: analyze (x -> modes), synthesize (modes -> y, overwrite), and the
 * adjoints: synthesize_backward (overwrite), analyze_backward (accumulate). */
void pno__spectral_gemm_analyze(const struct pno_spectral *s, float *xhat,
				const float *x, int C, int B);
void pno__spectral_gemm_synthesize(const struct pno_spectral *s, float *y,
				   const float *yhat, int C, int B);
void pno__spectral_gemm_synthesize_backward(const struct pno_spectral *s,
					    float *dyhat, const float *dy,
					    int C, int B);
void pno__spectral_gemm_analyze_backward(const struct pno_spectral *s,
					 float *dx, const float *dxhat, int C,
					 int B);

enum pno_status pno__spectral_fftw_init(struct pno__spectral_fftw **out,
					const struct pno_spectral *s);
void pno__spectral_fftw_free(struct pno__spectral_fftw *f);
void pno__spectral_fftw_analyze(const struct pno_spectral *s, float *xhat,
				const float *x, int C, int B);
void pno__spectral_fftw_synthesize(const struct pno_spectral *s, float *y,
				   const float *yhat, int C, int B);
void pno__spectral_fftw_synthesize_backward(const struct pno_spectral *s,
					    float *dyhat, const float *dy,
					    int C, int B);
void pno__spectral_fftw_analyze_backward(const struct pno_spectral *s,
					 float *dx, const float *dxhat, int C,
					 int B);

/* FFTW's planner is not thread-safe: every plan creation and destruction
 * in the library holds this lock. */
void pno__fftw_lock(void);
void pno__fftw_unlock(void);
/* Destroy a double-precision plan under the lock; NULL is allowed. *p is
 * NULL afterwards. */
void pno__fftw_destroy(fftw_plan *p);

/* Mixing (spectral_mix.c). */
void pno__spectral_mix(struct pno_spectral *s, float *yhat,
		       const float *xhat, const float *w, int B);
void pno__spectral_mix_backward(struct pno_spectral *s, float *dxhat,
				float *dw, const float *dyhat,
				const float *xhat, const float *w, int B);

#endif
