/*
 * Split-conformal recalibration of a model's predictive spread.
 *
 * A calibration set of n functions (inputs with known outputs, exchangeable
 * with the test data) gives, at each point, the model's predictive mean m
 * and central (1 - alpha) interval [lo, hi] (its alpha/2 and 1 - alpha/2
 * quantiles). The point's score is the factor by which that interval must
 * be stretched about the mean to contain the truth y:
 *
 *   s = (y - m) / (hi - m)   if y > m,
 *       (m - y) / (m - lo)   if y < m,
 *       0                    if y = m,
 * with s = +inf where the needed side of the interval has zero width.
 *
 * The fitted scale c stretches the whole predictive distribution about
 * its mean: every sample x_i -> m + c (x_i - m), so the quantiles map the
 * same way (order statistics and their linear interpolation are
 * equivariant under an increasing affine map), std -> c std and the
 * variance parts -> c^2 times themselves (a Gaussian prediction's sigma
 * -> c sigma, about its own mu, which the sample mean estimates). The
 * calibrated central
 * (1 - alpha) interval is [m - c (m - lo), m + c (hi - m)].
 *
 * Modes:
 *  - marginal: with the n P pooled point scores sorted, c is the k-th
 *    smallest, k = ceil((n + 1)(1 - alpha) P). Then the expected fraction
 *    of a test function's points inside the calibrated interval is at
 *    least 1 - alpha (finite-sample, for exchangeable functions; proof in
 *    docs/eval/conformal.md). Needs k <= n P, i.e. n >= (1 - alpha) /
 *    alpha roughly; else PNO_STATUS_RANGE naming the n needed.
 *  - function-wise (the UQNO criterion of Ma et al. 2024): a function's
 *    score r_j is the ceil((1 - alpha) P)-th smallest of its point scores
 *    (the stretch that covers at least 1 - alpha of its points); c is the
 *    k-th smallest r_j, k = ceil((n + 1)(1 - delta)). Then a test function
 *    has at least 1 - alpha of its points covered with probability at
 *    least 1 - delta. Needs k <= n.
 * An infinite c (the truth outside a zero-width interval too often, e.g.
 * a deterministic model) is PNO_STATUS_RANGE: "no spread to scale".
 */
#ifndef PNO_CONFORMAL_H
#define PNO_CONFORMAL_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

enum pno_conformal_mode {
	PNO_CONFORMAL_MARGINAL = 0,
	PNO_CONFORMAL_FUNCTIONWISE = 1,
};

struct pno_conformal {
	int present;		/* 0: no calibration (scale 1) */
	enum pno_conformal_mode mode;
	double alpha;		/* miscoverage level in (0, 1) */
	double delta;		/* function-wise: failure probability in (0, 1) */
	double scale;		/* c > 0 */
	int n_cal;		/* calibration functions used */
	int64_t n_points;	/* calibration points: n_cal x points per function */
	double cov_before;	/* calibration set: fraction of points in the */
	double cov_after;	/* model's / the scaled central interval */
	double fw_before;	/* fraction of calibration functions with at */
	double fw_after;	/* least 1 - alpha of their points covered */
};

/* Point scores s[i] (formula above) for P points. Non-finite inputs are
 * PNO_STATUS_NONFINITE naming the point. */
enum pno_status pno_conformal_scores(const float *y, const float *mean,
				     const float *lo, const float *hi,
				     size_t P, float *s);

/* Fit c from the scores of n functions (n x P, row-major; the array may be
 * reordered in place). alpha in (0, 1); delta in (0, 1) for the
 * function-wise mode (ignored otherwise). Fills every field of *c
 * (present = 1). Errors: bad arguments INVALID; too few functions or an
 * infinite scale RANGE with a message saying what is needed. */
enum pno_status pno_conformal_fit(struct pno_conformal *c, float *scores,
				  int n, size_t P,
				  enum pno_conformal_mode mode, double alpha,
				  double delta);

/* Stretch a prediction's spread by c->scale about its mean (samples,
 * std, quantiles, variance parts). No-op when !c->present. */
struct pno_prediction;
void pno_conformal_apply(const struct pno_conformal *c,
			 struct pno_prediction *p);

/* JSON text of *c ({"mode": "marginal" | "function-wise", "alpha", "delta",
 * "scale", "n_cal", "n_points", "cov_before", "cov_after", "fw_before",
 * "fw_after"}), pno_free'd by the caller; NULL on allocation failure. */
char *pno_conformal_to_json(const struct pno_conformal *c);
/* Back from that text: every field checked (mode known, alpha and delta
 * in (0, 1), scale finite and > 0, counts >= 1); FORMAT naming the field
 * otherwise. */
enum pno_status pno_conformal_from_json(struct pno_conformal *c,
					const char *text);

#ifdef __cplusplus
}
#endif
#endif
