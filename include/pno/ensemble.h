/*
 * Deep ensembles (Lakshminarayanan et al. 2017) of FNOs: K members of one
 * architecture and grid, each initialized and trained from its own seed,
 * kept in one model file. The predictive distribution is the uniform
 * mixture of the members:
 *
 *   single-head members (fno):  p(y | x) = 1/K sum_k delta(y - f_k(x))
 *   mean-scale members (pno-r): p(y | x) = 1/K sum_k N(mu_k(x), sigma_k(x)^2)
 *
 * pointwise and independently per point for the Gaussian case. Members are
 * evaluated deterministically (dropout, if the architecture has any, acts
 * only as a training regularizer; prediction uses the mean network).
 *
 * Seeds: member k is initialized from pno_rng_u64(seed, 0xE5000000, k) and
 * trained with pno_rng_u64(opts.seed, 0xE5000001, k) as its training seed
 * (so its mini-batch order and any loss noise differ too). Sample i of a
 * prediction is drawn from member i mod K: that member's output, or
 * mu + sigma z with z from Philox (key: the prediction seed, stream
 * 0xE2000000, index i * C * P + point), so sample i does not depend on S.
 *
 * Variance decomposition, exact for the mixture (not estimated from the
 * samples), per point:
 *   aleatoric = 1/K sum_k sigma_k^2        (0 for single-head members)
 *   epistemic = 1/K sum_k (mu_k - mubar)^2  (divisor K: the mixture's own
 *                                            between-member variance)
 *   total     = aleatoric + epistemic       (the mixture variance)
 * With S a multiple of K, std^2 (divisor S - 1) of the samples of
 * single-head members is S/(S-1) times the epistemic part.
 *
 * File: one safetensors file; tensor "member.{k}.{name}" for every tensor
 * of every member (names as in fno.h), metadata {"format": "pno",
 * "pno_version", "method": "ensemble", "members": "K", "member_method":
 * "fno" | "pno-r" | ..., "architecture": arch JSON, "normalization": a JSON
 * array of K per-member objects, "grid": "[X, Y]"} plus the caller's extra
 * string entries.
 */
#ifndef PNO_ENSEMBLE_H
#define PNO_ENSEMBLE_H

#include "pno/fno.h"
#include "pno/io.h"
#include "pno/predict.h"
#include "pno/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_ENSEMBLE_DEFAULT_K 5
#define PNO_ENSEMBLE_MIN_K 2
#define PNO_ENSEMBLE_MAX_K 64

struct pno_ensemble {
	int K;
	struct pno_fno *m;	/* K members, same arch, grid and Bmax */
};

/* K members of architecture a for grid X (x Y), batches up to Bmax;
 * member k's weights from seed pno_rng_u64(seed, 0xE5000000, k). K in
 * [PNO_ENSEMBLE_MIN_K, PNO_ENSEMBLE_MAX_K] else INVALID. All or nothing:
 * on failure *e is zeroed. Member method: "pno-r" with heads = 2,
 * "mc-dropout" with dropout, else "fno". */
enum pno_status pno_ensemble_init(struct pno_ensemble *e, int K,
				  const struct pno_fno_arch *a, int X, int Y,
				  int Bmax, uint64_t seed);
/* Safe on a zeroed or failed ensemble. */
void pno_ensemble_free(struct pno_ensemble *e);

struct pno_ensemble_result {
	int K;
	struct pno_train_result member[PNO_ENSEMBLE_MAX_K];
	double mean_member_test_rel_l2;	/* 1/K sum_k member[k].test_rel_l2 */
	double test_rel_l2;	/* relative L2 of the ensemble mean on the
				 * test split (<= the mean above by the
				 * triangle inequality) */
	double seconds;
};

/* Train every member in turn with pno_train_fno under o, member k with
 * training seed pno_rng_u64(o->seed, 0xE5000001, k). The loss kind must
 * suit the members (REL_L2 for single-head, CRPS or ENERGY for heads = 2;
 * pno_train_fno checks). Checkpoints: member k writes its own FNO
 * checkpoint "<o->checkpoint>.member<k>" after every epoch; with
 * o->resume, member k continues from "<o->resume>.member<k>" if that
 * exists and starts afresh otherwise (it was not reached), but member 0's
 * file must exist (NOTFOUND) so a mistyped path is not a fresh start.
 * Members train independently, so a resumed run ends with the weights of
 * the uninterrupted one, bit for bit. r may be NULL. */
enum pno_status pno_ensemble_train(struct pno_ensemble *e,
				   const struct pno_dataset *d,
				   const struct pno_train_opts *o,
				   struct pno_ensemble_result *r);

/* Mean relative L2 of the ensemble mean (1/K sum_k mean head of member k)
 * on samples [first, first+count). */
enum pno_status pno_ensemble_eval_rel_l2(struct pno_ensemble *e,
					 const struct pno_dataset *d,
					 int first, int count, double *out);

/* One file for all members (see the overview); extra_json: NULL or a JSON
 * object of string values merged into the metadata (a reserved key is
 * INVALID). Atomic. */
enum pno_status pno_ensemble_save(const struct pno_ensemble *e,
				  const char *path, const char *extra_json);

/* Load an ensemble saved by pno_ensemble_save for grid X (x Y) (X <= 0:
 * the recorded grid) and Bmax. A file of another method is UNSUPPORTED
 * (naming the method: load it with its own method); each member's
 * tensors must all be present (FORMAT) with the architecture's shapes
 * (SHAPE naming the member and tensor) and finite (NONFINITE); a file
 * with tensors beyond the K members is FORMAT. All or nothing: on
 * failure *e is zeroed. */
enum pno_status pno_ensemble_load(struct pno_ensemble *e, const char *path,
				  int X, int Y, int Bmax);

/* S samples of the mixture at one input x (1, Cin, P) (sample i from
 * member i mod K), mean, std, the nq quantile levels q, and the exact
 * decomposition (aleatoric and epistemic always set). Limits and failure
 * as pno_fno_predict: on failure *p is zeroed. */
enum pno_status pno_ensemble_predict(struct pno_ensemble *e, const float *x,
				     int S, uint64_t seed, const float *q,
				     int nq, struct pno_prediction *p);

#ifdef __cplusplus
}
#endif
#endif
