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
 * pools all points of all functions; docs/eval/metrics.md has the
 * estimators and what the tests prove):
 *   rel_l2      mean over functions of ||m - y|| / ||y|| (functions with
 *               y identically 0 left out; NaN if all are); rel_l2_std
 *               the population std over the same functions
 *   rmse, mae   over all points; max_err the largest |m - y|
 *   nll         mean over points of the Gaussian NLL of y under N(m, s^2),
 *               s floored at nll_std_floor = 1e-6 * (std of y over the
 *               first function added; 1e-6 if that is 0) so a
 *               zero-spread model gives a large finite value. The floor is
 *               fixed at the first add so the sum is exact in one pass.
 *   crps        mean over points of the unbiased (fair) sample estimator
 *               mean_i |x_i - y| - 1/(2 S (S - 1)) sum_{i,j} |x_i - x_j|
 *               (S = 1: |x_1 - y|)
 *   crps_gauss  the Gaussian closed form with (mu, sigma), when given for
 *               every function (has_crps_gauss; else NaN)
 *   energy      mean over functions of the unbiased energy score with the
 *               grid-scaled L2 norm ||v|| = sqrt(h sum_{c,i} v^2),
 *               h = 1 / P (the cell volume of the unit domain; S = 1:
 *               ||x_1 - y||)
 *   coverage[k], width[k]: the fraction of points with
 *               q_{a/2} <= y <= q_{1-a/2} for the central interval of
 *               level 1 - a = PNO_METRICS_COVERAGE[k] (sample quantiles,
 *               type 7, the position (S - 1) p rounded to 1e-9), and its
 *               mean width
 *   interval_score[k]: Gneiting-Raftery score at PNO_METRICS_IS_ALPHA[k]
 *   sharpness   mean over points of s
 *   calib_obs[j]  observed frequency of y <= q_p for p = PNO_METRICS_CAL[j]
 *   calib_error   mean over j of |calib_obs[j] - p_j|
 *   spread_skill  sqrt(mean s^2 (S + 1) / S) / sqrt(mean (m - y)^2): with
 *               m, s the mean and std of S samples, E (m - y)^2 =
 *               sigma^2 (1 + 1/S), so a calibrated model scores 1
 *               (NaN when m = y everywhere)
 *   std_err_corr  Pearson correlation of s and |m - y| over points (NaN
 *               when either is constant)
 *   spectrum    per wavenumber shell k = round(|kvec|) (kvec the signed
 *               integer wave numbers of the periodic grid; shells past
 *               MAX_SHELLS - 1 are pooled into the last), the mean over
 *               functions of the energy sum |F(v)|^2 / P^2 in the shell,
 *               channels summed, for v = m - y (err_spectrum) and v = s
 *               (std_spectrum); sum_k err_spectrum[k] = C rmse^2
 *   aleatoric, epistemic, total: means over points of the variance parts
 *               and their sum (has_decomposition = 0, NaN, unless every
 *               function gave them)
 * NaN marks an undefined value; pno_metrics_to_json writes it as null.
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

/* An accumulator for functions of C channels on a dims-D grid X (x Y);
 * dims is 1 (Y 0 or 1) or 2, points row-major (X, Y). Workspaces (FFT
 * plan, one sort buffer of Smax per thread at the current thread count,
 * which caps the threads add() uses) are made here; adding a function
 * allocates nothing. */
enum pno_status pno_metrics_new(struct pno_metrics_acc **acc, int C, int dims,
				int X, int Y, int Smax);
/* Add one function: y (C, P) and its prediction. Non-finite values are
 * PNO_STATUS_NONFINITE naming the array and point, a negative std, sigma
 * or variance PNO_STATUS_RANGE, S outside 1..Smax INVALID; a refused
 * function leaves the accumulator unchanged. Not thread-safe on one
 * accumulator (it uses OpenMP inside). */
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
