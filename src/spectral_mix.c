/* Per-mode complex channel mixing of the spectral layer.
 *
 * For each retained mode k: Y_k (B x Co) = X_k (B x Ci) . W_k (Ci x Co).
 * The matrices are small (B, C ~ 16..64) and there are K of them, so
 * instead of K tiny BLAS calls the modes are split over threads and each
 * runs a register-blocked kernel: 4 output rows x 16 columns of split
 * (re, im) accumulators, fed by one weight row and 4 broadcast scalars per
 * step. Mode buffers and repacked weights are split rows (spectral_impl.h),
 * so every complex product is four plain FMAs on vectors.
 *
 * Weights arrive in the canonical (Ci, Co, K, 2) layout and are repacked
 * per call and mode into (K, Ci, 2, Co), plus for the input gradient their
 * conjugate transpose (K, Co, 2, Ci); the per-mode weight gradient is made in
 * (K, Ci, 2, Co) and added into dw in canonical order by the thread that
 * owns the mode, one add per entry: deterministic.
 */
#include "spectral_impl.h"

#include <string.h>

#define VW 16	/* floats per vector of the kernel */
typedef float pno__v16 __attribute__((vector_size(VW * sizeof(float))));

/* Unaligned vector load / store. Macros, not functions: passing vectors
 * by value changes the ABI between -march levels (-Wpsabi). */
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(v))

/* Operand descriptors. Output / right operand: row m re at p + m*rs, im at
 * + im. Left operand element (m, j) re at p + m*sm + j*sj, im at + im, its
 * imaginary part times conj (+1 or -1). */
struct rows {
	float *p;
	size_t rs, im;
};
struct crows {
	const float *p;
	size_t rs, im;
};
struct lhs {
	const float *p;
	size_t sm, sj, im;
	float conj;
};

/* RB rows x VW columns of c (+)= a . b; RB is a constant at each call. */
static inline __attribute__((always_inline)) void
kern(int RB, struct rows c, int add, struct lhs a, struct crows b, int J)
{
	pno__v16 cr[4] = {0}, ci[4] = {0};
	for (int j = 0; j < J; j++) {
		const float *bj = b.p + (size_t)j * b.rs;
		pno__v16 br, bi;
		VLOAD(br, bj);
		VLOAD(bi, bj + b.im);
		for (int q = 0; q < RB; q++) {
			const float *e = a.p + q * a.sm + j * a.sj;
			float ar = e[0], ai = a.conj * e[a.im];
			cr[q] += ar * br - ai * bi;
			ci[q] += ar * bi + ai * br;
		}
	}
	for (int q = 0; q < RB; q++) {
		float *o = c.p + q * c.rs;
		if (add) {
			pno__v16 vr, vi;
			VLOAD(vr, o);
			VLOAD(vi, o + c.im);
			cr[q] += vr;
			ci[q] += vi;
		}
		VSTORE(o, cr[q]);
		VSTORE(o + c.im, ci[q]);
	}
}

/* Columns [n0, N) that do not fill a vector. */
static void tail(struct rows c, int add, struct lhs a, struct crows b, int M,
		 int n0, int N, int J)
{
	for (int m = 0; m < M; m++)
		for (int n = n0; n < N; n++) {
			float sr = 0, si = 0;
			for (int j = 0; j < J; j++) {
				const float *e = a.p + m * a.sm + j * a.sj;
				const float *bj = b.p + (size_t)j * b.rs + n;
				float ar = e[0], ai = a.conj * e[a.im];
				sr += ar * bj[0] - ai * bj[b.im];
				si += ar * bj[b.im] + ai * bj[0];
			}
			float *o = c.p + m * c.rs + n;
			o[0] = add ? o[0] + sr : sr;
			o[c.im] = add ? o[c.im] + si : si;
		}
}

/* c (M x N) (+)= a (M x J) . b (J x N), complex, split rows. */
static void cmm(struct rows c, int add, struct lhs a, struct crows b, int M,
		int N, int J)
{
	int nv = N - N % VW, m = 0;
	for (; m + 4 <= M; m += 4)
		for (int n = 0; n < nv; n += VW) {
			struct rows cm = {c.p + m * c.rs + n, c.rs, c.im};
			struct lhs am = a;
			struct crows bn = {b.p + n, b.rs, b.im};
			am.p += m * a.sm;
			kern(4, cm, add, am, bn, J);
		}
	for (; m < M; m++)
		for (int n = 0; n < nv; n += VW) {
			struct rows cm = {c.p + m * c.rs + n, c.rs, c.im};
			struct lhs am = a;
			struct crows bn = {b.p + n, b.rs, b.im};
			am.p += m * a.sm;
			kern(1, cm, add, am, bn, J);
		}
	if (nv < N)
		tail(c, add, a, b, M, nv, N, J);
}

/* Mode k of w (Ci, Co, K, 2) as split rows wk (Ci, 2, Co). Done per mode
 * inside the mode loop: the stores are sequential and the block is hot in
 * cache for the kernel (a separate k-blocked pass puts the stores 8 KB
 * apart and thrashes cache sets at power-of-two channel counts). */
static void repack_mode(float *wk, const float *w, int Ci, int Co, int K,
			int k)
{
	size_t ks = (size_t)K * 2;	/* w stride between (i, o) pairs */
	for (int i = 0; i < Ci; i++) {
		const float *src = w + (size_t)i * Co * ks + 2 * (size_t)k;
		float *d = wk + (size_t)i * 2 * Co;
		for (int o = 0; o < Co; o++) {
			d[o] = src[o * ks];
			d[Co + o] = src[o * ks + 1];
		}
	}
}

/* One mode's conjugate transpose, (Ci, 2, Co) -> (Co, 2, Ci); both blocks
 * are small and hot in cache. */
static void conj_transpose(float *wt, const float *wk, int Ci, int Co)
{
	for (int o = 0; o < Co; o++)
		for (int i = 0; i < Ci; i++) {
			wt[(size_t)o * 2 * Ci + i] = wk[(size_t)i * 2 * Co + o];
			wt[(size_t)o * 2 * Ci + Ci + i] = -wk[(size_t)i * 2 * Co + Co + o];
		}
}

void pno__spectral_mix(struct pno_spectral *s, float *yhat,
		       const float *xhat, const float *w, int B)
{
	int Ci = s->Ci, Co = s->Co, K = s->K;
	float *wk = s->impl->wk;
#pragma omp parallel for schedule(static)
	for (int k = 0; k < K; k++) {
		float *wkk = wk + (size_t)k * Ci * 2 * Co;
		struct rows y = {yhat + pno__mode_off(k, 0, 0, B, Co), 2 * (size_t)Co, Co};
		struct lhs x = {xhat + pno__mode_off(k, 0, 0, B, Ci), 2 * (size_t)Ci,
				1, Ci, 1.0f};
		struct crows wr = {wkk, 2 * (size_t)Co, Co};
		repack_mode(wkk, w, Ci, Co, K, k);
		cmm(y, 0, x, wr, B, Co, Ci);
	}
}

/* dX_k += dY_k . W_k^H and dW_k = X_k^H . dY_k (gradients of a real loss
 * as d/dre + i d/dim). */
void pno__spectral_mix_backward(struct pno_spectral *s, float *dxhat,
				float *dw, const float *dyhat,
				const float *xhat, const float *w, int B)
{
	int Ci = s->Ci, Co = s->Co, K = s->K;
	float *wk = s->impl->wk, *wt = s->impl->wt, *dwk = s->impl->dwk;
#pragma omp parallel for schedule(static)
	for (int k = 0; k < K; k++) {
		const float *dyk = dyhat + pno__mode_off(k, 0, 0, B, Co);
		const float *xk = xhat + pno__mode_off(k, 0, 0, B, Ci);
		if (dxhat) {
			float *wkk = wk + (size_t)k * Ci * 2 * Co;
			float *wtk = wt + (size_t)k * Co * 2 * Ci;
			struct rows dx = {dxhat + pno__mode_off(k, 0, 0, B, Ci),
					  2 * (size_t)Ci, Ci};
			struct lhs dy = {dyk, 2 * (size_t)Co, 1, Co, 1.0f};
			struct crows wr = {wtk, 2 * (size_t)Ci, Ci};
			repack_mode(wkk, w, Ci, Co, K, k);
			conj_transpose(wtk, wkk, Ci, Co);
			cmm(dx, 1, dy, wr, B, Ci, Co);
		}
		if (dw) {
			struct rows g = {dwk + (size_t)k * Ci * 2 * Co, 2 * (size_t)Co, Co};
			struct lhs xc = {xk, 1, 2 * (size_t)Ci, Ci, -1.0f};	/* X^H */
			struct crows dy = {dyk, 2 * (size_t)Co, Co};
			cmm(g, 0, xc, dy, Ci, Co, B);
			/* add into canonical dw while the block is hot; this
			 * thread owns mode k, so each entry gets one add (a
			 * separate pass over all modes reads the blocks from
			 * the other cores' caches and is slower) */
			for (int i = 0; i < Ci; i++)
				for (int o = 0; o < Co; o++) {
					float *d = dw + ((size_t)i * Co + o) * K * 2 + 2 * (size_t)k;
					d[0] += g.p[(size_t)i * 2 * Co + o];
					d[1] += g.p[(size_t)i * 2 * Co + Co + o];
				}
		}
	}
}
