/*
 * Autoregressive rollouts with uncertainty for time-dependent PDEs.
 *
 * A one-step model (trained on pairs (t, t + 1), pno train --pairs-step 1)
 * is applied to its own output K times. S sample trajectories start from
 * the true state u(t0) of a test trajectory; at step k each sample
 * trajectory's next state is ONE draw of the model's predictive
 * distribution at that trajectory's own current state:
 *
 *   x_{i,0} = u(t0),   x_{i,k} ~ p(. | x_{i,k-1}),   i = 0..S-1,
 *
 * so the spread a step produces is fed back and propagates (a
 * deterministic model gives S identical trajectories). Which draw, bit for
 * bit (the reproducibility contract): with key = pno_rollout_key(seed,
 * traj, i, k), x_{i,k} is
 *   - sample 0 of pno_model_predict(m, x_{i,k-1}, 1, key) for fno, pno-d,
 *     pno-r, mc-dropout, vfno and deeponet: fresh dropout masks / weight
 *     draw / noise at every step;
 *   - sample (i mod M) of pno_model_predict(m, x_{i,k-1}, M, key) for an
 *     ensemble of M members: trajectory i follows member i mod M (each
 *     member rolls out its own trajectories, plus fresh noise for
 *     mean-scale members), as pno_model_predict assigns samples at one
 *     input;
 * with the model's conformal scale NOT applied (a one-step calibration
 * does not carry over to k steps, and the stretch about an S-sample mean
 * is not defined for one draw). Sample i thus depends on (seed, traj, i)
 * only, not on S. The draws are computed without pno_model_predict: work
 * buffers are sized once in pno_rollout_new and nothing is allocated per
 * step. Every draw is one forward of batch 1 (S forwards per step): a
 * forward's bits depend on its batch size (FFT plans, GEMM kernels), so
 * batching the S states would make sample i depend on S and on the batch
 * bound, and dropout / weight-draw randomness is keyed per draw anyway.
 * The model's batch bound m->Bmax is therefore irrelevant here (1 is
 * enough).
 *
 * Per step k = 1..K, for each trajectory (then the mean over trajectories;
 * channels pooled; P points; samples x_i, their mean m and std s (divisor
 * S - 1), truth y = u(t0 + k)):
 *   rel_l2      ||m - y|| / ||y||                       (pno_metrics)
 *   crps        mean over points of the fair estimator  (pno_metrics)
 *               mean_i |x_i - y| - 1/(2 S (S-1)) sum_ij |x_i - x_j|
 *   coverage90  fraction of points with y in the central 90% interval of
 *               the samples (type-7 quantiles)          (pno_metrics)
 *   mean_std    mean over points of s                   (pno_metrics)
 *   err_q[j]    the PNO_ROLLOUT_ERR_Q[j] = 50/90/95/99% quantile (type 7)
 *               of the S P values |x_i(p) - y(p)|
 *   rel_unc     ||s|| / ||m||
 * and per trajectory the first step whose rel_unc exceeds the threshold
 * (-1 if none does).
 */
#ifndef PNO_ROLLOUT_H
#define PNO_ROLLOUT_H

#include "pno/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_ROLLOUT_NQ 4
extern const double PNO_ROLLOUT_ERR_Q[PNO_ROLLOUT_NQ];	/* .5 .9 .95 .99 */
#define PNO_ROLLOUT_MAX_STEPS 100000

struct pno_rollout_opts {
	int steps;		/* K >= 1 */
	int samples;		/* S in [1, PNO_PREDICT_MAX_SAMPLES] */
	int start;		/* t0 >= 0 */
	uint64_t seed;
	double threshold;	/* relative uncertainty threshold > 0 */
};
/* K 10, S 32, t0 0, seed 0, threshold 0.5 */
void pno_rollout_opts_default(struct pno_rollout_opts *o);

/* The Philox key of draw (trajectory traj, sample i, step k). */
uint64_t pno_rollout_key(uint64_t seed, uint64_t traj, uint64_t i,
			 uint64_t k);

struct pno_rollout_step {	/* means over the trajectories added */
	double rel_l2, crps, coverage90, mean_std;
	double err_q[PNO_ROLLOUT_NQ];
	double rel_unc;
};

struct pno_rollout_result {
	int K, S, n_traj;
	double threshold;
	struct pno_rollout_step *step;	/* (K): step[k - 1] is step k */
	int mean_exceed;	/* first step whose MEAN rel_unc exceeds the
				 * threshold, -1 if none */
	int n_exceeded;		/* trajectories whose rel_unc exceeded it */
	double mean_first_exceed;	/* mean first step over those (NAN if
					 * none) */
};

struct pno_rollout;

/* A rollout of model m over trajectories of C channels on a dims-D grid
 * X (x Y). The model must map the state to itself: PNO_STATUS_SHAPE
 * unless it is dims-D, X x Y, C -> C. Bad options INVALID naming the
 * option. Sizes every buffer and the K metric accumulators. The model is
 * borrowed (used by pno_rollout_add; not freed). */
enum pno_status pno_rollout_new(struct pno_rollout **r, struct pno_model *m,
				int C, int dims, int X, int Y,
				const struct pno_rollout_opts *o);

/* Roll out one trajectory u (T, C, P) (`traj`: its index in the file,
 * part of the seeds) from step t0 for K steps (t0 + K < T, else
 * PNO_STATUS_RANGE) and add its per-step metrics. Optional outputs (NULL:
 * not wanted): samples (K + 1, S, C, P), step 0 the start state;
 * first_exceed the first step whose rel_unc exceeds the threshold (-1:
 * none); per_step (K) this trajectory's own values (crps and coverage90
 * NAN there: they come only from the accumulators, whose results are
 * pooled means). A non-finite state
 * (the model diverged) is PNO_STATUS_NONFINITE naming step and sample;
 * nothing is added then. Allocates nothing. */
enum pno_status pno_rollout_add(struct pno_rollout *r, const float *u, int T,
				int traj, float *samples, int *first_exceed,
				struct pno_rollout_step *per_step);

/* Means over the trajectories added (at least one, else RANGE). */
enum pno_status pno_rollout_finish(const struct pno_rollout *r,
				   struct pno_rollout_result *res);
void pno_rollout_result_free(struct pno_rollout_result *res);
void pno_rollout_free(struct pno_rollout *r);

#ifdef __cplusplus
}
#endif
#endif
