/*
 * The Fourier neural operator (Li et al. 2021) in 1D and 2D.
 *
 *   input (B, Cin, grid) -> z-score -> append grid coordinates
 *     -> lift (pointwise, Cin + dims -> W)
 *     -> L blocks: h = GELU(spectral(h) + pointwise(h)), no GELU after the last
 *     -> proj1 (W -> H), GELU, proj2 (H -> Cout) -> undo output z-score
 *
 * Parameters, gradients and activations each live in one contiguous block
 * with named views (llm.c style). The parameter names and shapes follow
 * the reference FNO so a PyTorch user can load them:
 *   lift.weight (W, Cin+dims), lift.bias (W),
 *   spectral.{l}.weight (W, W, M1, 2) in 1D, (W, W, 2*M1, M2, 2) in 2D,
 *   pointwise.{l}.weight (W, W), pointwise.{l}.bias (W),
 *   proj1.weight (H, W), proj1.bias (H), proj2.weight (Cout, H), proj2.bias
 *   (with heads = 2: proj2.weight (2*Cout, H), proj2.bias (2*Cout), mean
 *   rows first).
 *
 * Stochastic parts (PNO-D, MC dropout): inverted dropout with kept values
 * scaled by 1/(1-p) on the lifting output (p_lift), on each block output but
 * the last (p_hidden), on the projection hidden layer (p_proj), and over
 * each layer's retained spectral coefficients of the mixed output modes,
 * per (batch element, output channel, mode), before the inverse transform
 * (p_fourier; a complex coefficient is kept or dropped as a whole). Masks
 * are active only while m->stochastic is set; they are drawn in bulk per
 * forward from Philox and kept for backward. A keep decision compares a
 * 32-bit Philox word with round(p * 2^32), so the drop probability is p
 * to within 2^-32.
 *
 * Mask bits (the reproducibility contract): forward number k since
 * pno_fno_set_rng(m, seed) (k = m->rng_calls before the call) draws its
 * masks from Philox key `seed`, stream k: element e (row-major within the
 * sample's mask) of batch element b of mask `id` is kept iff word e & 3 of
 * pno_philox4x32(seed, b * 2^32 + e / 4, 2^62 + 64 k + id) (b counted
 * from m->rng_b0, 0 unless training data-parallel) is >=
 * round(p * 2^32), with id 0 for the lift, 1 + l for hidden layer l, 17
 * for the projection and 18 + l for the Fourier modes of layer l (a mode
 * mask is (W, K) per sample in the canonical mode order of spectral.h).
 * pno_fno_sample uses k = 2^56 - 1 and b = the global sample index, so
 * sample i's masks depend only on (seed, i): not on S, Bmax or the thread
 * count. Masks never depend on the thread count.
 *
 * heads = 2 (PNO-R, mean-scale): proj2 has 2*Cout outputs; the model
 * returns (B, 2*Cout, P): channels [0, Cout) the mean (de-normalized),
 * channels [Cout, 2*Cout) sigma = (softplus(s) + 1e-6) * out_std[c] > 0.
 * Backward takes d loss / d out in the same layout.
 *
 * The model is resolution-independent; its workspace is sized at init for
 * a grid and a batch bound. The normalization statistics (per-channel mean
 * and std of inputs and outputs from the training split) are part of the
 * model: forward takes and returns physical values.
 */
#ifndef PNO_FNO_H
#define PNO_FNO_H

#include "pno/core.h"
#include "pno/spectral.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_FNO_MAX_LAYERS 16
#define PNO_FNO_MAX_CH 16

struct pno_fno_arch {
	int dims;		/* 1 or 2 */
	int in_ch, out_ch;	/* physical channels (grid channels excluded) */
	int width;		/* W */
	int modes1, modes2;	/* M1, M2 (M2 unused in 1D) */
	int layers;		/* L */
	int proj_hidden;	/* H, 128 in the reference */
	/* Stochastic and probabilistic parts (all zero: the plain FNO). */
	int heads;		/* 0 or 1: the field; 2: mean and scale heads
				 * (proj2 has 2*out_ch outputs: mean, then
				 * sigma = (softplus(s) + 1e-6) * out_std) */
	float p_lift;		/* dropout on the lifting output */
	float p_hidden;		/* dropout on each block's output except the
				 * last (MC dropout) */
	float p_proj;		/* dropout on the projection hidden layer */
	float p_fourier;	/* dropout over each layer's retained spectral
				 * coefficients before the inverse transform */
};

/* Checks every field; PNO_STATUS_INVALID with the field's name and range. */
enum pno_status pno_fno_arch_check(const struct pno_fno_arch *a);

struct pno_fno_norm {
	float in_mean[PNO_FNO_MAX_CH], in_std[PNO_FNO_MAX_CH];
	float out_mean[PNO_FNO_MAX_CH], out_std[PNO_FNO_MAX_CH];
};

/* Named views into a parameter-sized block. */
struct pno_fno_params {
	float *lift_w, *lift_b;
	float *spec_w[PNO_FNO_MAX_LAYERS];
	float *pw_w[PNO_FNO_MAX_LAYERS], *pw_b[PNO_FNO_MAX_LAYERS];
	float *proj1_w, *proj1_b, *proj2_w, *proj2_b;
};

/* Methods of the FNO family, as stored in a model file's "method". */
#define PNO_FNO_METHODS "fno, pno-d, pno-r, mc-dropout"
/* 1 if `name` is one of PNO_FNO_METHODS. */
int pno_fno_method_known(const char *name);

struct pno_fno {
	struct pno_fno_arch arch;
	char method[16];	/* written to files ("" saves as "fno"); set
				 * from the file by pno_fno_load */
	struct pno_fno_norm norm;
	int Bmax, X, Y, P;	/* workspace bounds; P = X*Y (Y = 1 in 1D) */

	size_t n_params;
	float *params, *grads;	/* n_params each */
	struct pno_fno_params p, g;

	struct pno_spectral spec;	/* workspace shared by all layers */

	/* activations, sized for Bmax (one block) */
	float *acts;
	float *grid;			/* (dims, P) coordinates */
	float *xin;			/* (B, Cin+dims, P) */
	float *h[PNO_FNO_MAX_LAYERS + 1]; /* block inputs/outputs (B, W, P) */
	float *pre[PNO_FNO_MAX_LAYERS];	/* pre-activations (B, W, P) */
	float *xhat[PNO_FNO_MAX_LAYERS];	/* spectral input modes */
	float *modes_scratch;		/* (B, W) modes */
	float *q, *qa;			/* proj1 pre/post GELU (B, H, P) */
	float *out;			/* (B, Cout, P) physical */
	float *dh, *dh2;		/* (B, W, P) gradient scratch */
	float *dq;			/* (B, H, P) */
	float *dout;			/* (B, Cout*heads, P) */
	float *raw;			/* (B, Cout*heads, P) proj2 output */
	float *dxhat;			/* (B, W) modes: backward scratch */
	int last_B;			/* batch of the last forward */

	/* stochastic state (see the overview) */
	int stochastic;			/* 1: dropout active, 0: deterministic */
	uint64_t rng_seed, rng_calls;	/* Philox key; forwards drawn so far */
	uint64_t rng_b0;		/* number of the first batch element in
					 * the masks (b = rng_b0 + row; a data-
					 * parallel shard's offset, else 0) */
	int masked;			/* did the last forward apply masks? */
	/* keep masks of the last forward (1 kept, 0 dropped), sized for Bmax;
	 * NULL where the matching p is 0 */
	uint8_t *mask_lift;		/* (B, W, P) */
	uint8_t *mask_hidden[PNO_FNO_MAX_LAYERS]; /* (B, W, P), l < L-1 */
	uint8_t *mask_proj;		/* (B, H, P) */
	uint8_t *mask_fourier[PNO_FNO_MAX_LAYERS]; /* (B, W, K) */
	uint8_t *masks;			/* the block they live in */
};

/* Output channels of the model: out_ch, or 2*out_ch with heads = 2. */
int pno_fno_out_channels(const struct pno_fno_arch *a);
/* 1 if any dropout rate of the architecture is > 0 (its samples differ
 * while m->stochastic is set). */
int pno_fno_has_dropout(const struct pno_fno_arch *a);

/* Builds the model for a grid X (x Y) and batches up to Bmax; weights are
 * initialized from `seed` as the reference FNO does (uniform +-1/sqrt(fan_in)
 * for pointwise layers, scale/(W*W) * U[0,1) for spectral weights).
 * Normalization starts as identity. */
enum pno_status pno_fno_init(struct pno_fno *m, const struct pno_fno_arch *a,
			     int X, int Y, int Bmax, uint64_t seed);
void pno_fno_free(struct pno_fno *m);

/* Forward: out = model(x) for B <= Bmax. Returns a pointer to the output
 * (B, Cout*heads, P) held by the model (valid until the next forward).
 * With m->stochastic set and some p > 0, draws fresh masks (stream
 * m->rng_calls++). */
const float *pno_fno_forward(struct pno_fno *m,
			     const float *x, /* (B, Cin, X[, Y]) physical */
			     int B);
/* Backward of the last forward: grads += d loss / d params, through the
 * masks that forward drew (if any). */
void pno_fno_backward(struct pno_fno *m,
		      const float *dout, /* (B, Cout*heads, P) d loss / d out */
		      int B);

/* Reset the mask generator: key `seed`, forward counter 0. Forwards made
 * with m->stochastic set then draw the same masks in the same order. */
void pno_fno_set_rng(struct pno_fno *m, uint64_t seed);

/* S samples of the model at one input, computed as batches of up to Bmax
 * copies of x with stochastic masks (whatever m->stochastic says; the flag
 * and the forward counter are left as they were). Writes out (S, Cout*heads,
 * P). Sample i uses the masks of global sample index i under key `seed`
 * (see the overview), so a prefix of the samples does not depend on S or
 * Bmax. The last chunk's masks stay in the model (backward is allowed for
 * it). Returns INVALID for S < 1 or NULL pointers. Allocates nothing. */
enum pno_status pno_fno_sample(struct pno_fno *m,
			       float *out,	/* (S, Cout*heads, X[, Y]) */
			       const float *x,	/* (1, Cin, X[, Y]) physical */
			       int S, uint64_t seed);
void pno_fno_zero_grad(struct pno_fno *m);

/* Iterate over the named parameter tensors (index 0..count-1). */
int pno_fno_tensor_count(const struct pno_fno *m);
/* Name, shape and parameter offset of tensor i. */
void pno_fno_tensor_info(const struct pno_fno *m, int i, char *name,
			 size_t name_size, int *ndim, int64_t shape[8],
			 size_t *offset, size_t *count);

/* ---- files ---- */
/* Save the model as safetensors with metadata; `extra_json` (NULL or a
 * JSON object text) is merged into the metadata ("provenance", "metrics",
 * ... as JSON-string values). Atomic. */
enum pno_status pno_fno_save(const struct pno_fno *m, const char *path,
			     const char *extra_json);
/* Load a model saved by pno_fno_save, sized for grid X (x Y) and Bmax. If
 * X <= 0 the training grid recorded in the file is used. Checks every
 * tensor's presence and shape. */
enum pno_status pno_fno_load(struct pno_fno *m, const char *path, int X,
			     int Y, int Bmax);

/* Architecture and normalization as JSON text (pno_free the result). */
char *pno_fno_arch_json(const struct pno_fno_arch *a);
enum pno_status pno_fno_arch_parse(struct pno_fno_arch *a, const char *json);

#ifdef __cplusplus
}
#endif
#endif
