/*
 * Training: Adam/AdamW, learning-rate schedule, gradient clipping, the
 * relative L2 loss, and the FNO training loop with checkpoints.
 *
 * The loop is deterministic: mini-batches are a Philox permutation of the
 * training split drawn from (seed, epoch), so the same seed and thread
 * count give the same loss trajectory to the bit, and a run resumed from a
 * checkpoint continues exactly as the uninterrupted run would have. No
 * allocation happens inside a training step.
 *
 * Data-parallel: when several ranks of pno/dist.h run (under mpirun),
 * every rank calls the same training function with the same options and
 * model; each computes its contiguous share of every batch and the
 * gradients are summed in one allreduce per step, so the run follows the
 * single-process one to float32 rounding (docs/mpi.md). Rank 0 alone
 * writes checkpoints; failures are agreed, so every rank returns the same
 * status and message. A dataset from pno_dataset_open is read row by row
 * (each rank its own rows); pno_eval_rel_l2 needs one in memory.
 */
#ifndef PNO_TRAIN_H
#define PNO_TRAIN_H

#include "pno/fno.h"
#include "pno/io.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pno_adam {
	int decoupled;		/* 1: AdamW (decoupled weight decay) */
	float lr, beta1, beta2, eps, weight_decay;
	int64_t step;
	size_t n;
	float *m, *v;		/* first and second moments (n each) */
};
enum pno_status pno_adam_init(struct pno_adam *o, size_t n, float lr,
			      float weight_decay, int decoupled);
void pno_adam_free(struct pno_adam *o);
/* One update of params from grads (both n long). */
void pno_adam_step(struct pno_adam *o, float *params, const float *grads);

/* Scale grads so their global L2 norm is at most max_norm (if > 0);
 * returns the norm before clipping (may be inf or nan). */
double pno_grad_clip(float *grads, size_t n, float max_norm);

/* Mean over the batch of ||pred_b - y_b|| / ||y_b|| (norms over the N
 * values of a sample). If dpred is not NULL it is OVERWRITTEN with the
 * gradient of that mean. Samples with ||y_b|| = 0 use ||y_b|| = 1. */
double pno_loss_rel_l2(float *dpred,	/* (B, N) or NULL */
		       const float *pred,	/* (B, N) */
		       const float *y,		/* (B, N) */
		       int B, size_t N);

struct pno_epoch_stats {
	int epoch, epochs;	/* 1-based epoch just finished */
	double train_loss;	/* mean training loss over the epoch's batches
				 * (relative L2, energy score, CRPS or
				 * negative ELBO, by method) */
	double val_loss;	/* relative L2 on the validation split (NAN if empty) */
	double seconds;		/* wall time of the epoch */
	float lr;		/* learning rate used */
	int skipped_steps;	/* steps skipped for non-finite loss/grads */
	int rolled_back;	/* 1: the epoch was restarted from the last
				 * good state with a halved learning rate */
	int best;		/* 1: best validation loss so far */
};

/* What a training step minimizes (see pno_train_fno). */
enum pno_loss_kind {
	PNO_LOSS_REL_L2 = 0,	/* relative L2 of the (single-head) output */
	PNO_LOSS_ENERGY,	/* energy score of ens_samples samples */
	PNO_LOSS_CRPS,		/* closed-form Gaussian CRPS (heads = 2) */
};

struct pno_train_opts {
	int epochs, batch;
	enum pno_loss_kind loss;
	int ens_samples;	/* m: samples per input for the energy score
				 * (default 3, in [2, 64]) */
	float kl_beta;		/* vfno: KL weight beta (default 1) ... */
	int kl_warmup;		/* ... reached linearly over this many epochs
				 * (default 5; 0: from the start) */
	float lr, weight_decay;
	int adamw;		/* 1: AdamW, 0: Adam with L2 in the gradient */
	int step_size;		/* epochs between lr *= gamma (0: never) */
	float gamma;
	float clip;		/* max gradient norm (0: off) */
	uint64_t seed;
	int n_train, n_val, n_test; /* split: first n_train, next n_val, last n_test */
	/* Validation-driven control (need n_val > 0; 0 turns each off): */
	int patience;		/* stop after this many epochs without a new
				 * best validation loss */
	int plateau;		/* lr *= gamma after this many epochs without
				 * a new best (on top of step_size) */
	int keep_best;		/* 1: end with the parameters of the best
				 * validation epoch (default 1) */
	/* Non-finite guard: a step with a non-finite loss or gradient is
	 * skipped (optimizer state kept); after rollback_after consecutive
	 * such steps the epoch restarts from the state at the end of the
	 * last good epoch with the learning rate halved, at most
	 * max_rollbacks times (then PNO_STATUS_NONFINITE). */
	int rollback_after;	/* default 3 */
	int max_rollbacks;	/* default 8 */
	const char *checkpoint;	/* written atomically after every epoch (or NULL) */
	const char *resume;	/* checkpoint to continue from (or NULL) */
	const char *provenance_json; /* JSON object text kept in checkpoints */
	void (*on_epoch)(void *ud, const struct pno_epoch_stats *s);
	void (*on_batch)(void *ud, int epoch, int batch, int n_batches,
			 double loss);
	void *ud;
};
void pno_train_opts_default(struct pno_train_opts *o);

struct pno_train_result {
	int epochs_run;
	double train_loss, val_loss, test_rel_l2;
	double seconds;
	int best_epoch;		/* epoch of the best validation loss (0: none) */
	double best_val_loss;
	int stopped_early;	/* 1: patience ran out */
	int rollbacks;
};

/* Check a dataset against a model: channels, dimensions, enough samples
 * for the split. Message names what differs. */
enum pno_status pno_train_check_data(const struct pno_fno *m,
				     const struct pno_dataset *d,
				     const struct pno_train_opts *o);

/* Fill the model's normalization from the training split. */
void pno_fno_fit_normalization(struct pno_fno *m, const struct pno_dataset *d,
			       int n_train);

/* Train m on d. The model must be initialized for the data's grid.
 * Dropout (any p_* of the architecture > 0) is active in training steps,
 * off in validation and test (which score the mean prediction by relative
 * L2: the mean head with heads = 2). The loss:
 *   REL_L2  heads 1: relative L2 (fno, mc-dropout);
 *   ENERGY  heads 1: each input is replicated ens_samples times in the batch
 *           and the dropout masks make the samples (pno-d; needs
 *           Bmax >= batch * ens_samples); heads 2: samples mu + sigma z,
 *           z ~ N(0, 1) from Philox (pno-r, reparameterized);
 *   CRPS    heads 2: closed-form CRPS of N(mu, sigma^2) per point (pno-r).
 * Masks and z of a step are keyed by (seed, optimizer step), so a resumed
 * run repeats the uninterrupted one. */
enum pno_status pno_train_fno(struct pno_fno *m, const struct pno_dataset *d,
			      const struct pno_train_opts *o,
			      struct pno_train_result *r);

struct pno_vfno;		/* pno/vfno.h */
struct pno_deeponet;		/* pno/deeponet.h */

/* The variational Bayesian FNO: minimizes the negative ELBO, mean
 * Gaussian NLL + beta(epoch) / n_train * KL(q || prior), beta ramping
 * linearly from 0 to kl_beta over kl_warmup epochs; one posterior draw per
 * step, keyed by the optimizer step. Validation and test score the
 * posterior-mean network's mean head. Weight decay applies to the point
 * estimates only. Checkpoints hold the trainer state (both blocks, their
 * moments, best weights, normalization): a resumed run repeats the
 * uninterrupted one. */
enum pno_status pno_train_vfno(struct pno_vfno *v, const struct pno_dataset *d,
			       const struct pno_train_opts *o,
			       struct pno_train_result *r);

/* DeepONet with the relative L2 loss (same loop and checkpoints). */
enum pno_status pno_train_deeponet(struct pno_deeponet *m,
				   const struct pno_dataset *d,
				   const struct pno_train_opts *o,
				   struct pno_train_result *r);

/* Mean relative L2 of the model on samples [first, first+count). */
enum pno_status pno_eval_rel_l2(struct pno_fno *m, const struct pno_dataset *d,
				int first, int count, double *out);

/* Save model plus optimizer state and the epoch to finish next. */
enum pno_status pno_checkpoint_save(const struct pno_fno *m,
				    const struct pno_adam *o, int epoch,
				    const char *path, const char *extra_json);

#ifdef __cplusplus
}
#endif
#endif
