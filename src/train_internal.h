/* The training loop shared by every method (src/train_loop.c) and the
 * interface a method implements to use it. */
#ifndef PNO_TRAIN_INTERNAL_H
#define PNO_TRAIN_INTERNAL_H

#include "pno/train.h"

#include <jansson.h>

/* Loop state that a checkpoint carries besides weights and moments. */
struct pno__loop_state {
	int epoch;		/* last finished epoch */
	float lr_scale;		/* plateau and rollback reductions */
	double best_val;	/* INFINITY: none yet */
	int best_epoch, since_best, rollbacks;
};

#define PNO__MAX_BLOCKS 2

/* The training split's per-channel statistics, for a method's
 * normalization (computed by the loop: from memory or the file, summed
 * over the ranks). */
#define PNO__STATS_MAX_CH 16
struct pno__stats {
	int cin, cout;
	double in_mean[PNO__STATS_MAX_CH], in_sd[PNO__STATS_MAX_CH];
	double out_mean[PNO__STATS_MAX_CH], out_sd[PNO__STATS_MAX_CH];
};
/* Means and standard deviations as floats into a method's normalization
 * arrays (channels < cin, cout), a deviation <= 1e-12 or not finite
 * becoming 1 (as pno_fno_fit_normalization). */
void pno__stats_apply(const struct pno__stats *st, float *in_mean,
		      float *in_std, float *out_mean, float *out_std);

/* A trainable model: up to two parameter blocks, each with its own Adam
 * moments (a variational model keeps its [mu | rho] apart from the
 * network's point estimates). */
struct pno__trainee {
	const char *method;
	int nb;
	float *params[PNO__MAX_BLOCKS], *grads[PNO__MAX_BLOCKS];
	size_t n[PNO__MAX_BLOCKS];
	float weight_decay[PNO__MAX_BLOCKS];
	int Bmax;		/* inputs per evaluation batch */
	void *ctx;
	/* Check the data against the model (message names what differs). */
	enum pno_status (*check)(struct pno__trainee *t,
				 const struct pno_dataset *d);
	/* Set the normalization from the training split's statistics. */
	enum pno_status (*fit_norm)(struct pno__trainee *t,
				    const struct pno__stats *st);
	/* Zero the gradients, compute the loss on (xb, yb) and, if it is
	 * finite, accumulate its gradient. `step` is the optimizer step
	 * (randomness is keyed by it), `epoch` the 1-based epoch; the B rows
	 * are rows b0 .. b0 + B - 1 of the step's global batch (a data-
	 * parallel shard; 0 on one rank): per-sample randomness is keyed by
	 * that global row, so the shards draw what one process would. */
	double (*step)(struct pno__trainee *t, const float *xb, const float *yb,
		       int B, int64_t step, int epoch, int b0);
	/* Sum over the B samples of the relative L2 of the mean prediction. */
	double (*eval)(struct pno__trainee *t, const float *x, const float *y,
		       int B);
	/* The normalization statistics as floats (for the generic
	 * checkpoint; NULL with ckpt_write/ckpt_load set). */
	float *norm;
	size_t n_norm;
	/* Checkpoints: a method's own, or pno__ckpt_write/load (the trainer
	 * state: blocks, moments, best weights, normalization). */
	enum pno_status (*ckpt_write)(struct pno__trainee *t,
				      const struct pno_adam *opt,
				      const struct pno__loop_state *ls,
				      float *const *best, const char *path,
				      const char *extra_json);
	enum pno_status (*ckpt_load)(struct pno__trainee *t,
				     struct pno_adam *opt,
				     struct pno__loop_state *ls, float **best,
				     const char *path);
};

/* The generic checkpoint: a safetensors file "format": "pno-checkpoint"
 * holding every block's parameters, Adam moments and best weights, the
 * normalization and the loop state; resuming checks the method and the
 * block sizes. */
enum pno_status pno__ckpt_write(struct pno__trainee *t,
				const struct pno_adam *opt,
				const struct pno__loop_state *ls,
				float *const *best, const char *path,
				const char *extra_json);
enum pno_status pno__ckpt_load(struct pno__trainee *t, struct pno_adam *opt,
			       struct pno__loop_state *ls, float **best,
			       const char *path);

/* Integer key k of JSON object o in [0, INT32_MAX] into *v: 1, else 0
 * (*v untouched). */
int pno__json_int(json_t *o, const char *k, int *v);

/* Validation of the options every method shares, the batch against the
 * model's batch bound Bmax included. */
enum pno_status pno__train_check_opts(const struct pno_train_opts *o,
				      int Bmax);

/* The loop: shuffled mini-batches per (seed, epoch), validation, early
 * stopping, plateau schedule, best keeping, non-finite guard with
 * rollback, checkpoints; then the test error. */
enum pno_status pno__train_loop(struct pno__trainee *t,
				const struct pno_dataset *d,
				const struct pno_train_opts *o,
				struct pno_train_result *r);

/* *out = mean relative L2 of the trainee's mean prediction on samples
 * [first, first + count) (NAN if count is 0), each rank scoring its share;
 * (xb, yb) hold Bmax samples read from a file. Collective; errors agreed. */
enum pno_status pno__train_eval(struct pno__trainee *t,
				const struct pno_dataset *d, int first,
				int count, float *xb, float *yb, double *out);

#endif
