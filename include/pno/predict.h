/*
 * Predictive distributions of the FNO-family models (fno, pno-d, pno-r,
 * mc-dropout): S samples per input, computed as batches, and their
 * summaries.
 *
 * A sample of a dropout model is one forward with fresh masks; a sample of
 * a mean-scale model (heads = 2) is mu + sigma z with z ~ N(0, 1) (and, if
 * it also has dropout, mu and sigma from that sample's masks). Everything
 * is drawn from Philox keyed by the seed, so the same seed gives the same
 * samples, bit for bit, at a fixed thread count; sample i does not depend
 * on S.
 *
 * Uncertainty decomposition (models with a variance head): per point,
 * aleatoric = mean over samples of sigma_i^2, epistemic = variance over
 * samples of mu_i, total = aleatoric + epistemic (the law of total
 * variance; std^2 of the samples estimates it).
 */
#ifndef PNO_PREDICT_H
#define PNO_PREDICT_H

#include "pno/fno.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_PREDICT_MAX_SAMPLES 100000
#define PNO_PREDICT_MAX_QUANTILES 64

struct pno_prediction {
	int S, C, P;		/* samples, output channels, grid points */
	float *samples;		/* (S, C, P) */
	float *mean, *std;	/* (C, P); std with divisor S - 1 (0 if S = 1) */
	float *aleatoric;	/* (C, P) variances, NULL without a variance head */
	float *epistemic;	/* (C, P) */
	float *gauss_mu;	/* (C, P): the predictive distribution is exactly */
	float *gauss_sigma;	/* N(mu, sigma^2) per point (a mean-scale model
				 * without dropout); NULL otherwise */
	int nq;
	float *levels;		/* (nq) quantile levels in (0, 1) */
	float *quantiles;	/* (nq, C, P), linear interpolation between
				 * order statistics (type 7) */
};

/* S samples of model m at one input x (1, Cin, P) with the given seed,
 * plus mean, std, the nq quantile levels q (each in (0, 1)), and the
 * decomposition for heads = 2. S in [1, PNO_PREDICT_MAX_SAMPLES], nq in
 * [0, PNO_PREDICT_MAX_QUANTILES], else PNO_STATUS_INVALID. On failure *p
 * is zeroed. */
enum pno_status pno_fno_predict(struct pno_fno *m, const float *x, int S,
				uint64_t seed, const float *q, int nq,
				struct pno_prediction *p);
void pno_prediction_free(struct pno_prediction *p);

struct pno_vfno;		/* pno/vfno.h */
struct pno_deeponet;		/* pno/deeponet.h */

/* The same for a variational FNO: sample i is a posterior weight draw's
 * mean plus its predicted noise, mu_i + sigma_i z_i; aleatoric = mean of
 * sigma_i^2, epistemic = variance of mu_i (divisor S - 1). Draws and z
 * are keyed by `seed`. */
enum pno_status pno_vfno_predict_dist(struct pno_vfno *v, const float *x,
				      int S, uint64_t seed, const float *q,
				      int nq, struct pno_prediction *p);
/* A deterministic DeepONet: S equal samples (std 0), for a uniform
 * interface. */
enum pno_status pno_deeponet_predict_dist(struct pno_deeponet *m,
					  const float *x, int S,
					  const float *q, int nq,
					  struct pno_prediction *p);

#ifdef __cplusplus
}
#endif
#endif
