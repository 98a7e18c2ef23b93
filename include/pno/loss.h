/*
 * Proper scoring rules and divergences for probabilistic operators, each
 * with its gradient. All work on float fields of N grid values per sample,
 * accumulate in double, and return the mean over the batch. A gradient
 * argument that is not NULL is OVERWRITTEN with d(loss)/d(argument).
 *
 * Function-space norms: ||f||^2 = h * sum_i f_i^2 with h the grid cell
 * volume (1/N on the unit interval / square), so scores approximate their
 * L2(domain) values and do not grow with the resolution.
 *
 * Invalid arguments (B < 1, N == 0, a NULL input, an ensemble size out of
 * range, sigma <= 0, a bad prior) give NAN, leave the gradients untouched
 * and say what is wrong in pno_last_error(). Nothing here allocates.
 */
#ifndef PNO_LOSS_H
#define PNO_LOSS_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Gaussian negative log-likelihood, mean over the B*N points:
 * 0.5 (log(2 pi) + logvar + (y - mu)^2 exp(-logvar)). */
double pno_loss_gauss_nll(float *dmu, float *dlogvar, const float *mu,
			  const float *logvar, const float *y, int B,
			  size_t N);

/* CRPS of N(mu, sigma^2) at y, closed form, mean over the B*N points:
 * sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mu)/sigma.
 * Every sigma must be > 0. */
double pno_loss_crps_gauss(float *dmu, float *dsigma, const float *mu,
			   const float *sigma, const float *y, int B,
			   size_t N);

/* CRPS of the m-sample ensemble X (B, m, N) at y (B, N), unbiased
 * (fair) estimator per point, mean over the B*N points:
 * (1/m) sum_j |X_j - y| - 1/(2 m (m-1)) sum_{j != k} |X_j - X_k|.
 * 2 <= m <= 1024 (the per-point sort uses a fixed stack scratch).
 * O(m log m) per point (sorted form) for m > 256; below, an O(m^2) rank
 * count vectorized across points, which is faster there. */
double pno_loss_crps_ens(float *dX, const float *X, const float *y, int B,
			 int m, size_t N);

/* Energy score of the m samples X (B, m, N) at y (B, N), unbiased
 * estimator, mean over the batch:
 * (1/m) sum_j ||X_j - y|| - 1/(2 m (m-1)) sum_{j != k} ||X_j - X_k||
 * with ||f|| = sqrt(h sum_i f_i^2), h = 1/N. m >= 2. Where a distance is
 * zero its gradient is taken as zero (the subgradient of ||.|| at 0). */
double pno_loss_energy(float *dX, const float *X, const float *y, int B,
		       int m, size_t N);

/* KL( N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2) ) summed over n independent
 * coordinates, with sigma_q = softplus(rho_q) (the mean-field variational
 * parameterization) and a fixed prior (mu_p, sigma_p > 0). Gradients with
 * respect to mu_q and rho_q. */
double pno_kl_gauss_softplus(float *dmu, float *drho, const float *mu,
			     const float *rho, size_t n, float mu_p,
			     float sigma_p);

/* softplus(x) = log(1 + e^x), computed without overflow, and its
 * derivative, the logistic function. */
static inline double pno_softplus(double x)
{
	return x > 30 ? x : x < -30 ? __builtin_exp(x) : __builtin_log1p(__builtin_exp(x));
}
static inline double pno_sigmoid(double x)
{
	return x >= 0 ? 1.0 / (1.0 + __builtin_exp(-x))
		      : __builtin_exp(x) / (1.0 + __builtin_exp(x));
}

#ifdef __cplusplus
}
#endif
#endif
