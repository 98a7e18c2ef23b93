/*
 * DeepONet (Lu et al. 2021), the deterministic baseline: an unstacked
 * DeepONet mapping an input field u (Cin channels on an X (x Y) grid) to an
 * output field (Cout channels on the same grid).
 *
 *   branch: u sampled at S sensor points (a regular stride s of the grid,
 *           s the same on both axes), z-scored per channel, flattened to
 *           Cin*S values -> branch_depth hidden layers of branch_width
 *           (GELU) -> linear layer to Cout*p values b_{c,k}
 *   trunk:  grid coordinates (x) or (x, y), x_i = i/(X-1), y_j = j/(Y-1)
 *           -> trunk_depth hidden layers of trunk_width (GELU) -> layer to
 *           p values with GELU too (as DeepXDE: the basis t_k(x) is the
 *           trunk's activated output)
 *   output: z_c(x) = sum_k b_{c,k} t_k(x) + bias_c, then out = z*std + mean
 *           with the output statistics of the training split.
 *
 * The trunk depends only on the fixed coordinates and the trunk weights,
 * so its activations are cached: forward recomputes them only when the
 * trunk weights differ (bitwise) from those of the cached evaluation, so
 * inference evaluates the trunk once and training once per step. The
 * branch layers are GEMMs over the batch and the final contraction
 * (B*Cout, p) x (p, P) is one GEMM. Nothing allocates after init.
 *
 * The branch reads a fixed set of grid points, so unlike the FNO a model
 * is bound to its training grid: the grid is saved with the model and a
 * loaded model runs on that grid.
 *
 * Parameters, gradients and activations each live in one contiguous block
 * with named views (so pno_adam trains the model directly). Tensors, in
 * file order, with torch.nn.Linear shapes (out, in):
 *   branch.{l}.weight (Wb, in), branch.{l}.bias (Wb) for l < branch_depth
 *     (in = Cin*S for l = 0, else Wb); branch.{D}.weight (Cout*p, Wb or
 *     Cin*S), branch.{D}.bias (Cout*p) with D = branch_depth;
 *   trunk.{l}.weight, trunk.{l}.bias likewise from dims inputs, the last
 *     layer (index trunk_depth) with p outputs;
 *   output.bias (Cout).
 * Branch output index c*p + k holds b_{c,k}.
 */
#ifndef PNO_DEEPONET_H
#define PNO_DEEPONET_H

#include "pno/core.h"
#include "pno/io.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_DEEPONET_MAX_DEPTH 16
#define PNO_DEEPONET_MAX_CH 16
#define PNO_DEEPONET_DEFAULT_SENSORS 1024

struct pno_deeponet_arch {
	int dims;		/* 1 or 2 */
	int in_ch, out_ch;	/* Cin, Cout in [1, 16] */
	int sensors;		/* S: 0 = at most 1024 (default); > 0 without a
				 * stride: at most this many; with a stride:
				 * must equal what the stride gives. Init
				 * writes the count used. */
	int branch_width;	/* Wb */
	int branch_depth;	/* hidden layers, 0..16 */
	int trunk_width;	/* Wt */
	int trunk_depth;	/* hidden layers, 0..16 */
	int p;			/* basis functions per output channel */
	int sensor_stride;	/* s: 0 = the smallest stride giving at most
				 * `sensors` points. Init writes the stride. */
};

/* Checks every field; PNO_STATUS_INVALID with the field's name and range. */
enum pno_status pno_deeponet_arch_check(const struct pno_deeponet_arch *a);

struct pno_deeponet_norm {
	float in_mean[PNO_DEEPONET_MAX_CH], in_std[PNO_DEEPONET_MAX_CH];
	float out_mean[PNO_DEEPONET_MAX_CH], out_std[PNO_DEEPONET_MAX_CH];
};

/* Named views into a parameter-sized block. */
struct pno_deeponet_params {
	float *branch_w[PNO_DEEPONET_MAX_DEPTH + 1];
	float *branch_b[PNO_DEEPONET_MAX_DEPTH + 1];
	float *trunk_w[PNO_DEEPONET_MAX_DEPTH + 1];
	float *trunk_b[PNO_DEEPONET_MAX_DEPTH + 1];
	float *out_b;
};

struct pno_deeponet {
	struct pno_deeponet_arch arch;	/* sensors and sensor_stride resolved */
	struct pno_deeponet_norm norm;
	int Bmax, X, Y, P;	/* grid (Y = 1 in 1D), P = X*Y */
	int SX, SY;		/* sensors per axis: S = SX*SY */

	size_t n_params;
	float *params, *grads;	/* n_params each */
	struct pno_deeponet_params p, g;
	size_t trunk_off, trunk_count;	/* the trunk tensors' span */

	/* activations and scratch, one block sized at init */
	float *acts;
	float *coords;		/* (P, dims) */
	float *ones;		/* max(Bmax, P) ones for bias reductions */
	float *ub;		/* (B, Cin*S) normalized sensor values */
	float *bpre[PNO_DEEPONET_MAX_DEPTH + 1]; /* (B, Wb); last (B, Cout*p) */
	float *bact[PNO_DEEPONET_MAX_DEPTH];	  /* (B, Wb) GELU(bpre) */
	float *tpre[PNO_DEEPONET_MAX_DEPTH + 1]; /* (P, Wt); last (P, p) */
	float *tact[PNO_DEEPONET_MAX_DEPTH + 1]; /* GELU(tpre); last = basis */
	float *out;		/* (B, Cout, P) physical */
	float *dz;		/* (B, Cout, P) normalized-space gradient */
	float *dbr[2];		/* (B, max(Wb, Cout*p)) */
	float *dtr[2];		/* (P, max(Wt, p)) */
	float *rowsum;		/* (B*Cout) */
	float *trunk_snap;	/* trunk weights of the cached evaluation */
	int trunk_valid;
	int last_B;		/* batch of the last forward */
};

/* Build the model for an X (x Y) grid (Y ignored in 1D) and batches up to
 * Bmax. Weights: Glorot uniform U(+-sqrt(6/(fan_in+fan_out))) drawn from
 * Philox (seed, one stream per tensor); biases zero. Normalization starts
 * as identity. */
enum pno_status pno_deeponet_init(struct pno_deeponet *m,
				  const struct pno_deeponet_arch *a, int X,
				  int Y, int Bmax, uint64_t seed);
/* Safe on a zeroed or failed-init struct. */
void pno_deeponet_free(struct pno_deeponet *m);

/* out = model(x) for 1 <= B <= Bmax: a pointer to (B, Cout, P) held by the
 * model, valid until the next forward. NULL (PNO_STATUS_INVALID recorded)
 * on bad arguments. */
const float *pno_deeponet_forward(struct pno_deeponet *m,
				  const float *x, /* (B, Cin, X[, Y]) physical */
				  int B);
/* Backward of the last forward (same B, weights unchanged since):
 * grads += d loss / d params. */
enum pno_status pno_deeponet_backward(struct pno_deeponet *m,
				      const float *dout, /* (B, Cout, P) */
				      int B);
void pno_deeponet_zero_grad(struct pno_deeponet *m);

/* The named parameter tensors, index 0..count-1 (file order). */
int pno_deeponet_tensor_count(const struct pno_deeponet *m);
void pno_deeponet_tensor_info(const struct pno_deeponet *m, int i,
			      char *name, size_t name_size, int *ndim,
			      int64_t shape[8], size_t *offset, size_t *count);

/* Normalization from samples [0, n_train) of d (per-channel mean and std;
 * std 1 where a channel is constant). Checks the data fits the model. */
enum pno_status pno_deeponet_fit_normalization(struct pno_deeponet *m,
					       const struct pno_dataset *d,
					       int n_train);

/* ---- files ---- */
/* safetensors with metadata {"format":"pno", "pno_version", "method":
 * "deeponet", "architecture", "normalization", "grid": "[X, Y]"} plus
 * extra_json's string values (NULL or a JSON object). Atomic. */
enum pno_status pno_deeponet_save(const struct pno_deeponet *m,
				  const char *path, const char *extra_json);
/* Load a model saved by pno_deeponet_save, on its saved grid, for batches
 * up to Bmax. A file of another method is PNO_STATUS_UNSUPPORTED naming
 * it; every tensor's presence, shape and finiteness is checked. */
enum pno_status pno_deeponet_load(struct pno_deeponet *m, const char *path,
				  int Bmax);

/* Architecture as JSON text (pno_free it) and back. */
char *pno_deeponet_arch_json(const struct pno_deeponet_arch *a);
enum pno_status pno_deeponet_arch_parse(struct pno_deeponet_arch *a,
					const char *json);

#ifdef __cplusplus
}
#endif
#endif
