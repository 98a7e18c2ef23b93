/*
 * Evaluation metrics of predictive distributions over fields.
 *
 * Streaming: create an accumulator for a grid, add one test function at a
 * time (its truth and the model's prediction: samples, mean, std and, if
 * the method has them, the Gaussian parameters and variance parts), then
 * finish into a result. Sums are in double precision; a result depends
 * only on the functions added, not on how the work is split into threads.
 *
 * Definitions (per function f with truth y, predictive mean m, std s,
 * samples x_1..x_S, points i = 1..P, channels pooled; "mean over points"
 * pools all points of all functions):
 *   rel_l2      mean over functions of ||m - y|| / ||y||
 *   rmse, mae   over all points; max_err the largest |m - y|
 *   nll         mean over points of the Gaussian NLL of y under N(m, s^2),
 *               s floored at 1e-6 * (std of y over the test set) so a
 *               zero-spread model gives a large finite value, reported
 *               with the floor used
 *   crps        mean over points of the unbiased (fair) sample estimator
 *               mean_i |x_i - y| - 1/(2 S (S - 1)) sum_{i,j} |x_i - x_j|
 *   crps_gauss  the Gaussian closed form with (mu, sigma), when given
 *   energy      mean over functions of the unbiased energy score with the
 *               grid-scaled L2 norm ||v|| = sqrt(h sum_i v_i^2),
 *               h = 1 / P (the cell volume of the unit domain)
 *   coverage[k], width[k]: the fraction of points with y inside the
 *               central interval [q_{a/2}, q_{1-a/2}] of level
 *               PNO_METRICS_COVERAGE[k] (sample quantiles, type 7), and
 *               its mean width
 *   interval_score[k]: Gneiting-Raftery score at PNO_METRICS_IS_ALPHA[k]
 *   sharpness   mean over points of s
 *   calib_obs[j]  observed frequency of y <= q_p for p = PNO_METRICS_CAL[j]
 *   calib_error   mean over j of |calib_obs[j] - p_j|
 *   spread_skill  sqrt(mean s^2) / sqrt(mean (m - y)^2)
 *   std_err_corr  Pearson correlation of s and |m - y| over points
 *   spectrum    per wavenumber shell k = round(|kvec|) (integer wave
 *               numbers of the periodic grid), the mean over functions of
 *               the energy sum |F(v)|^2 / P^2 in the shell, for v = m - y
 *               (err_spectrum) and v = s (std_spectrum)
 *   aleatoric, epistemic, total: means over points of the variance parts
 *               (has_decomposition = 0 when a method has none)
 */
#ifndef PNO_METRICS_H
#define PNO_METRICS_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_METRICS_NCOV 5	/* central intervals 50 80 90 95 99 % */
#define PNO_METRICS_NIS 3	/* interval score at alpha .1 .05 .01 */
#define PNO_METRICS_NCAL 19	/* calibration levels .05, .10, ..., .95 */
#define PNO_METRICS_MAX_SHELLS 1024

extern const double PNO_METRICS_COVERAGE[PNO_METRICS_NCOV];
extern const double PNO_METRICS_IS_ALPHA[PNO_METRICS_NIS];
extern const double PNO_METRICS_CAL[PNO_METRICS_NCAL];

/* One test function's prediction. samples (S, C, P) with S >= 1; mean
 * and std (C, P) are required; gauss_mu / gauss_sigma (C, P) NULL unless
 * the predictive distribution is exactly N(mu, sigma^2) per point;
 * aleatoric / epistemic (C, P) NULL without a decomposition. */
struct pno_metrics_pred {
	int S;
	const float *samples, *mean, *std;
	const float *gauss_mu, *gauss_sigma;
	const float *aleatoric, *epistemic;
};

struct pno_metrics {
	int64_t n_functions, n_points;
	int S;			/* samples per prediction (the first one's) */
	double rel_l2, rel_l2_std;	/* mean and std over functions */
	double rmse, mae, max_err;
	double nll, nll_std_floor;
	double crps;
	int has_crps_gauss;
	double crps_gauss;
	double energy;
	double coverage[PNO_METRICS_NCOV], width[PNO_METRICS_NCOV];
	double interval_score[PNO_METRICS_NIS];
	double sharpness;
	double calib_obs[PNO_METRICS_NCAL], calib_error;
	double spread_skill, std_err_corr;
	int n_shells;
	double err_spectrum[PNO_METRICS_MAX_SHELLS];
	double std_spectrum[PNO_METRICS_MAX_SHELLS];
	int has_decomposition;
	double aleatoric, epistemic, total;
};

struct pno_metrics_acc;

/* An accumulator for functions of C channels on a dims-D grid X (x Y).
 * Workspaces (FFT plans, sort buffers for up to Smax samples) are made
 * here; adding a function allocates nothing. */
enum pno_status pno_metrics_new(struct pno_metrics_acc **acc, int C, int dims,
				int X, int Y, int Smax);
/* Add one function: y (C, P) and its prediction. Non-finite values are
 * PNO_STATUS_NONFINITE naming the array and point; S > Smax INVALID. */
enum pno_status pno_metrics_add(struct pno_metrics_acc *acc, const float *y,
				const struct pno_metrics_pred *p);
/* The metrics over everything added (at least one function, else
 * PNO_STATUS_RANGE). The accumulator stays usable. */
enum pno_status pno_metrics_finish(const struct pno_metrics_acc *acc,
				   struct pno_metrics *r);
void pno_metrics_free(struct pno_metrics_acc *acc);

/* The result as a JSON object text (every field, named as in the struct;
 * arrays with their levels), following docs/eval/metrics.schema.json.
 * pno_free'd by the caller; NULL on allocation failure. */
char *pno_metrics_to_json(const struct pno_metrics *r);

#ifdef __cplusplus
}
#endif
#endif
