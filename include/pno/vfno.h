/*
 * The Bayesian FNO ("vfno"): a Fourier neural operator whose spectral
 * weights (and optionally the pointwise weights and biases) carry a
 * mean-field Gaussian variational posterior q(w) = N(mu, sigma^2) with
 * sigma = softplus(rho), a Gaussian prior N(0, prior_sigma^2), and a
 * heteroscedastic output head: the network has 2C outputs, channels
 * [0, C) the predictive mean and [C, 2C) the log-variance.
 *
 * Training minimizes the negative ELBO per data point,
 *   loss = mean over points of the Gaussian NLL (one weight draw)
 *          + kl_weight * KL(q || prior),   kl_weight = beta / N_train,
 * with the reparameterization w = mu + softplus(rho) * eps, eps ~ N(0,1)
 * drawn in bulk from Philox (seed, stream = calls++) at every forward.
 * beta ramps from 0 to beta_max over the warm-up epochs
 * (pno_vfno_kl_weight).
 *
 * Units: the FNO de-normalizes each output channel with out_mean/out_std.
 * The log-variance channels are forced to mean 0, std 1 at every forward
 * and converted to physical units,
 *   logvar_phys[c] = logvar_net[c] + 2 log(out_std[c])   (c < C),
 * so the network's log-variance lives in normalized units and the NLL is
 * that of the physical data.
 *
 * Parameters: two blocks. net.params holds the point estimates (lift,
 * pointwise unless variational, projection); its entries for the
 * variational tensors hold the last weight draw and their net.grads
 * entries are kept at zero. var = [mu | rho] (2 n_var floats) with grads
 * vgrad = [gmu | grho]. pno_vfno_adam_* runs one Adam over each block (no
 * weight decay on the variational block: the KL is its regularizer).
 *
 * Nothing allocates after init: forward, loss, backward and prediction
 * use workspaces sized for Bmax.
 */
#ifndef PNO_VFNO_H
#define PNO_VFNO_H

#include "pno/fno.h"
#include "pno/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_VFNO_MAX_VAR (3 * PNO_FNO_MAX_LAYERS)

struct pno_vfno_opts {
	float prior_sigma;	 /* > 0, default 1 */
	int variational_pointwise; /* 1: pointwise weights and biases too */
	float sigma_init;	 /* > 0: initial sigma_q as a fraction of
				  * each tensor's RMS weight (default 1e-2) */
};
void pno_vfno_opts_default(struct pno_vfno_opts *o);

/* One variational tensor: its views in the network and in var/vgrad. */
struct pno_vfno_tensor {
	int fno_index;		/* index for pno_fno_tensor_info */
	size_t count;
	float *w, *gw;		/* in net.params / net.grads */
	float *mu, *rho, *gmu, *grho, *eps;
};

struct pno_vfno {
	struct pno_fno net;	/* arch.out_ch = 2C */
	int C;			/* physical output channels */
	int variational_pointwise;
	float prior_sigma;
	uint64_t seed, calls;	/* eps stream of the next forward = calls */

	int n_tensors;
	struct pno_vfno_tensor t[PNO_VFNO_MAX_VAR];
	size_t n_var;
	float *var, *vgrad;	/* [mu | rho] and [gmu | grho], 2 n_var each */
	float *mu, *rho, *gmu, *grho; /* views */
	float *eps;		/* (n_var) the last draw */
	float *sig, *dsig;	/* (n_var) softplus(rho), sigmoid(rho) of the
				 * last draw (float) */
	double *kl_part;	/* per-chunk KL sums (fixed chunks: the same
				 * bits at any thread count) */

	float *dout;		/* (Bmax, 2C, P) */
	double *acc;		/* (4, Bmax, C, P) prediction moments */
	double last_nll, last_kl; /* terms of the last pno_vfno_loss */
};

/* The model for physical arch `a` (a->out_ch = C outputs; the network gets
 * 2C; heads and dropout must be 0), grid X (x Y), batches up to Bmax.
 * mu comes from the FNO initialization (seed), rho so that
 * sigma_q = sigma_init * RMS(mu) per tensor. `opts` NULL: defaults. */
enum pno_status pno_vfno_init(struct pno_vfno *v, const struct pno_fno_arch *a,
			      int X, int Y, int Bmax, uint64_t seed,
			      const struct pno_vfno_opts *opts);
void pno_vfno_free(struct pno_vfno *v);

/* Draw eps for `stream` and set the network's variational weights to
 * mu + softplus(rho) eps; pno_vfno_use_mean sets them to mu (eps = 0). */
void pno_vfno_sample(struct pno_vfno *v, uint64_t stream);
void pno_vfno_use_mean(struct pno_vfno *v);

/* One weight draw (stream calls++) and forward. Returns (B, 2C, P):
 * physical mean, then physical log-variance; valid until the next forward. */
const float *pno_vfno_forward(struct pno_vfno *v,
			      const float *x, /* (B, Cin, P) */ int B);

/* Negative ELBO of one draw: mean Gaussian NLL over the B*C*P points of y
 * (B, C, P) + kl_weight * KL. If backward, gradients are ACCUMULATED into
 * net.grads (point estimates) and vgrad (mu, rho), KL included. Returns
 * NAN with an error message for invalid arguments. */
double pno_vfno_loss(struct pno_vfno *v, const float *x, const float *y,
		     int B, double kl_weight, int backward);
void pno_vfno_zero_grad(struct pno_vfno *v);

/* KL(q || prior) summed over the variational weights, in double straight
 * from mu and rho (the reference; the loss uses a float-softplus,
 * multithreaded version of it that agrees to ~1e-7 relative); gradients
 * (may be NULL) are ACCUMULATED scaled by `scale`. */
double pno_vfno_kl(const struct pno_vfno *v, float *gmu, float *grho,
		   double scale);

/* beta(epoch) / n_train with beta = beta_max * min(1, epoch / warmup)
 * (epoch 0-based; warmup <= 0: beta_max from the start). */
double pno_vfno_kl_weight(int epoch, int warmup, double beta_max,
			  int n_train);

/* S posterior draws (streams calls, calls+1, ...; calls += S) on B inputs
 * (any B; chunks of Bmax share each draw). mean and var (S, B, C, P):
 * per-draw physical predictive mean and variance exp(logvar_phys). */
enum pno_status pno_vfno_predict(struct pno_vfno *v, const float *x, int B,
				 int S, float *mean, float *var);
/* The same draws reduced per point (double accumulation):
 * mean = E_s[mu_s], aleatoric = E_s[var_s], epistemic = Var_s[mu_s]
 * (1/S), total = E_s[var_s + mu_s^2] - mean^2 (law of total variance,
 * equal to aleatoric + epistemic). Each (B, C, P); any may be NULL. */
enum pno_status pno_vfno_predict_moments(struct pno_vfno *v, const float *x,
					 int B, int S, float *mean,
					 float *aleatoric, float *epistemic,
					 float *total);

/* Adam over both blocks (the variational one without weight decay). */
struct pno_vfno_adam {
	struct pno_adam net, var;
};
enum pno_status pno_vfno_adam_init(struct pno_vfno_adam *o,
				   const struct pno_vfno *v, float lr,
				   float weight_decay, int decoupled);
void pno_vfno_adam_step(struct pno_vfno_adam *o, struct pno_vfno *v);
void pno_vfno_adam_free(struct pno_vfno_adam *o);

/* safetensors: the FNO tensors (variational ones hold mu), then
 * "vfno.mu.<name>" and "vfno.rho.<name>" per variational tensor; metadata
 * "method": "vfno" and "vfno": {"prior_sigma", "variational_pointwise",
 * "channels", "seed", "calls"} (a JSON string). Atomic. */
enum pno_status pno_vfno_save(struct pno_vfno *v, const char *path,
			      const char *extra_json);
/* Load a file written by pno_vfno_save for grid X (x Y; X <= 0: the saved
 * grid) and Bmax. Checks every tensor's presence, shape and finiteness. */
enum pno_status pno_vfno_load(struct pno_vfno *v, const char *path, int X,
			      int Y, int Bmax);

#ifdef __cplusplus
}
#endif
#endif
