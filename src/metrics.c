/* Streaming evaluation metrics of predictive distributions over fields
 * (see pno/metrics.h for the definitions, docs/eval/metrics.md for the
 * estimators and what the tests prove).
 *
 * Determinism: add() splits the points into chunks of a fixed size; each
 * chunk's sums are made by one thread in point order and the chunks are
 * combined in chunk order, so the result has the same bits at any thread
 * count. The energy score's pairs are summed per sample row in a fixed
 * order the same way; the spectrum is serial. */
#include "pno/metrics.h"

#include "internal.h"
#include "spectral_impl.h"

#include <math.h>
#include <omp.h>
#include <string.h>

const double PNO_METRICS_COVERAGE[PNO_METRICS_NCOV] = {0.5, 0.8, 0.9, 0.95,
						       0.99};
const double PNO_METRICS_IS_ALPHA[PNO_METRICS_NIS] = {0.1, 0.05, 0.01};
const double PNO_METRICS_CAL[PNO_METRICS_NCAL] = {
	0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50,
	0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95};

/* Per-point sums: scalars, then the per-level arrays. */
#define METRICS_SUM_LIST(X)                                                   \
	X(SE, 1)	/* (m - y)^2 */                                       \
	X(AE, 1)	/* |m - y| */                                         \
	X(Y2, 1)	/* y^2 */                                             \
	X(NLL, 1)                                                             \
	X(CRPS, 1)                                                            \
	X(CRPSG, 1)                                                           \
	X(S1, 1)	/* s */                                               \
	X(S2, 1)	/* s^2 */                                             \
	X(S2C, 1)	/* s^2 (S + 1) / S */                                 \
	X(A2, 1)	/* |m - y|^2 summed apart from SE for the correlation */ \
	X(SA, 1)	/* s |m - y| */                                       \
	X(ALE, 1)                                                             \
	X(EPI, 1)                                                             \
	X(COV, PNO_METRICS_NCOV)                                              \
	X(WID, PNO_METRICS_NCOV)                                              \
	X(IS, PNO_METRICS_NIS)                                                \
	X(CAL, PNO_METRICS_NCAL)

enum {
#define METRICS_SUM_ENUM(name, n) SUM_##name, SUM_##name##_END_ = SUM_##name + (n) - 1,
	METRICS_SUM_LIST(METRICS_SUM_ENUM)
#undef METRICS_SUM_ENUM
	NSUM
};

enum { CHUNK = 512 };	/* points per chunk: fixed, so sums are too */

struct pno_metrics_acc {
	int C, dims, X, Y, Smax;
	size_t P, N;			/* points per channel, C * P */
	/* spectrum: r2c plan on (X) or (X, Y), its arrays, the shell and
	 * Hermitian weight of each half-spectrum coefficient */
	fftw_plan plan;
	double *fin;
	fftw_complex *fout;
	size_t ncoef;
	int *shell;
	double *wt;
	int n_shells;
	/* work: one sort buffer of Smax per thread, per-chunk sums, energy
	 * rows */
	int nbuf;
	float *sortbuf;			/* (nbuf, Smax) */
	size_t nchunk;
	double *part;			/* (nchunk, NSUM) */
	double *partmax;		/* (nchunk) */
	double *erow;			/* (Smax) */
	/* totals over the functions added */
	int64_t n_functions, n_gauss, n_decomp, n_rel;
	int S0;
	double nll_floor;
	double sum[NSUM], max_err;
	double rel_sum, rel_sq, energy_sum;
	double err_spec[PNO_METRICS_MAX_SHELLS];
	double std_spec[PNO_METRICS_MAX_SHELLS];
};

static inline int wavenumber(int i, int n) { return i <= n / 2 ? i : i - n; }

void pno_metrics_free(struct pno_metrics_acc *a)
{
	if (!a)
		return;
	pno__fftw_destroy(&a->plan);
	pno_free(a->fin);
	pno_free(a->fout);
	pno_free(a->shell);
	pno_free(a->wt);
	pno_free(a->sortbuf);
	pno_free(a->part);
	pno_free(a->partmax);
	pno_free(a->erow);
	pno_free(a);
}

/* Shell and weight of every r2c coefficient; the number of shells. */
static int shells_init(struct pno_metrics_acc *a)
{
	const int nx = a->dims == 2 ? a->X : 1;
	const int ny = a->dims == 2 ? a->Y : a->X;	/* the halved axis */
	const int nh = ny / 2 + 1;
	int top = 0;
	const int last = PNO_METRICS_MAX_SHELLS - 1;
	for (int ix = 0; ix < nx; ix++)
		for (int j = 0; j < nh; j++) {
			double kx = wavenumber(ix, nx);
			size_t id = (size_t)ix * nh + j;
			int sh = (int)lround(sqrt(kx * kx + (double)j * j));
			/* the c2r mirror holds the columns 0 < j < ny/2 twice */
			int edge = j == 0 || 2 * j == ny;
			/* the tail beyond the last shell is pooled into it */
			a->shell[id] = sh = PNO__MIN(sh, last);
			a->wt[id] = edge ? 1.0 : 2.0;
			top = PNO__MAX(top, sh);
		}
	return top + 1;
}

enum pno_status pno_metrics_new(struct pno_metrics_acc **out, int C, int dims,
				int X, int Y, int Smax)
{
	struct pno_metrics_acc *a = NULL;
	size_t P, N, sz;
	enum pno_status st = PNO_STATUS_OK;

	if (!out)
		return pno__errorf(PNO_STATUS_INVALID, "metrics: NULL output");
	*out = NULL;
	if (C < 1 || Smax < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics: %d channels and %d samples (need >= 1)",
				   C, Smax);
	if (dims != 1 && dims != 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics: %d-D grid (1-D or 2-D only)", dims);
	if (X < 1 || (dims == 2 && Y < 1) || (dims == 1 && Y > 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics: bad %d-D grid %d x %d", dims, X, Y);
	P = (size_t)X * (dims == 2 ? (size_t)Y : 1);
	if (pno__mul_overflow(P, (size_t)C, &N) ||
	    pno__mul_overflow(N, (size_t)Smax, &sz) || sz > (size_t)1 << 40)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics: grid of %d x %zu points and %d "
				   "samples is too large", C, P, Smax);

	a = pno_calloc(1, sizeof *a);
	if (!a)
		return pno__errorf(PNO_STATUS_NOMEM, "metrics: out of memory");
	a->C = C, a->dims = dims, a->X = X, a->Y = dims == 2 ? Y : 1;
	a->Smax = Smax, a->P = P, a->N = N;
	{
		const int ny = dims == 2 ? Y : X;
		a->ncoef = (P / (size_t)ny) * (size_t)(ny / 2 + 1);
	}
	a->nbuf = PNO__MAX(pno_threads_get(), 1);
	a->nchunk = (N + CHUNK - 1) / CHUNK;
	a->fin = pno_malloc(P * sizeof *a->fin);
	a->fout = pno_malloc(a->ncoef * sizeof *a->fout);
	a->shell = pno_malloc(a->ncoef * sizeof *a->shell);
	a->wt = pno_malloc(a->ncoef * sizeof *a->wt);
	a->sortbuf = pno_calloc((size_t)a->nbuf * Smax, sizeof *a->sortbuf);
	a->part = pno_calloc(a->nchunk * NSUM, sizeof *a->part);
	a->partmax = pno_calloc(a->nchunk, sizeof *a->partmax);
	a->erow = pno_calloc((size_t)Smax, sizeof *a->erow);
	if (!a->fin || !a->fout || !a->shell || !a->wt || !a->sortbuf ||
	    !a->part || !a->partmax || !a->erow) {
		st = pno__errorf(PNO_STATUS_NOMEM, "metrics: out of memory");
		goto cleanup;
	}
	a->n_shells = shells_init(a);
	pno__fftw_lock();
	/* FFTW_ESTIMATE: deterministic plans that leave the arrays alone */
	if (dims == 1)
		a->plan = fftw_plan_dft_r2c_1d(X, a->fin, a->fout,
					       FFTW_ESTIMATE);
	else
		a->plan = fftw_plan_dft_r2c_2d(X, Y, a->fin, a->fout,
					       FFTW_ESTIMATE);
	pno__fftw_unlock();
	if (!a->plan) {
		st = pno__errorf(PNO_STATUS_INTERNAL,
				 "metrics: FFTW plan failed");
		goto cleanup;
	}
	*out = a;
	return PNO_STATUS_OK;
cleanup:
	pno_metrics_free(a);
	return st;
}

/* ---- add ---- */


/* Type-7 sample quantile of sorted x[0..S). The position h = (S - 1) p
 * is rounded to 1e-9 so that decimal levels land where they mean to:
 * 1 - 0.99 is 0.010000000000000009 in double, which would move q_0.005
 * off an order statistic by 1e-15 and drop a truth sitting on it. */
static inline double quantile7(const float *x, int S, double p)
{
	double h = nearbyint((S - 1) * p * 1e9) / 1e9;
	int lo = (int)floor(h);
	int hi = lo + 1 < S ? lo + 1 : lo;
	return x[lo] + (h - lo) * ((double)x[hi] - x[lo]);
}

static inline double norm_cdf(double z) { return 0.5 * erfc(-z * M_SQRT1_2); }

/* CRPS of N(mu, sg^2) at y; sg = 0 is the point mass. */
static inline double crps_gauss(double mu, double sg, double y)
{
	if (sg <= 0)
		return fabs(y - mu);
	double z = (y - mu) / sg;
	double pdf = exp(-0.5 * z * z) / sqrt(2 * M_PI);
	return sg * (z * (2 * norm_cdf(z) - 1) + 2 * pdf - 1 / sqrt(M_PI));
}

/* First non-finite (or negative, for spreads) entry of v[0..n), or n. */
static size_t bad_entry(const float *v, size_t n, int nonneg)
{
	for (size_t k = 0; k < n; k++)
		if (!isfinite(v[k]) || (nonneg && v[k] < 0))
			return k;
	return n;
}

static enum pno_status check_inputs(const struct pno_metrics_acc *a,
				    const float *y,
				    const struct pno_metrics_pred *p)
{
	const size_t N = a->N, P = a->P;
	if (!y || !p)
		return pno__errorf(PNO_STATUS_INVALID, "metrics add: NULL argument");
	if (p->S < 1 || p->S > a->Smax)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics add: %d samples (the accumulator "
				   "takes 1..%d)", p->S, a->Smax);
	if (!p->samples || !p->mean || !p->std)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics add: samples, mean and std are "
				   "required");
	if (!p->gauss_mu != !p->gauss_sigma)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics add: gauss_mu and gauss_sigma go "
				   "together");
	if (!p->aleatoric != !p->epistemic)
		return pno__errorf(PNO_STATUS_INVALID,
				   "metrics add: aleatoric and epistemic go "
				   "together");
	struct {
		const char *name;
		const float *v;
		size_t n;
		int nonneg;
	} arr[] = {
		{"y", y, N, 0},
		{"samples", p->samples, (size_t)p->S * N, 0},
		{"mean", p->mean, N, 0},
		{"std", p->std, N, 1},
		{"gauss_mu", p->gauss_mu, N, 0},
		{"gauss_sigma", p->gauss_sigma, N, 1},
		{"aleatoric", p->aleatoric, N, 1},
		{"epistemic", p->epistemic, N, 1},
	};
	for (size_t t = 0; t < sizeof arr / sizeof arr[0]; t++) {
		if (!arr[t].v)
			continue;
		size_t k = bad_entry(arr[t].v, arr[t].n, arr[t].nonneg);
		if (k == arr[t].n)
			continue;
		size_t s = k / N, c = k % N / P, i = k % P;
		if (!strcmp(arr[t].name, "samples"))
			return pno__errorf(isfinite(arr[t].v[k]) ?
					   PNO_STATUS_RANGE : PNO_STATUS_NONFINITE,
					   "metrics add: samples[s=%zu, c=%zu, "
					   "i=%zu] = %g", s, c, i, arr[t].v[k]);
		return pno__errorf(isfinite(arr[t].v[k]) ? PNO_STATUS_RANGE :
				   PNO_STATUS_NONFINITE,
				   "metrics add: %s[c=%zu, i=%zu] = %g%s",
				   arr[t].name, c, i, arr[t].v[k],
				   isfinite(arr[t].v[k]) ? " is negative" : "");
	}
	return PNO_STATUS_OK;
}

/* The per-point sums of points [k0, k1) into s (NSUM), the largest
 * |m - y| into *mx. x: a sort buffer of S floats. */
static void chunk_sums(const struct pno_metrics_acc *a, double *s, double *mx,
		       float *x, const float *y, const struct pno_metrics_pred *p,
		       size_t k0, size_t k1)
{
	const size_t N = a->N;
	const int S = p->S;
	const double fl = a->nll_floor, half_log_2pi = 0.5 * log(2 * M_PI);
	const double corr = (S + 1.0) / S;
	double m_err = 0;
	memset(s, 0, NSUM * sizeof *s);
	for (size_t k = k0; k < k1; k++) {
		const double yv = y[k], m = p->mean[k], sd = p->std[k];
		const double e = m - yv, ae = fabs(e);
		for (int t = 0; t < S; t++)
			x[t] = p->samples[(size_t)t * N + k];
		pno__sort_floats(x, (size_t)S);

		s[SUM_SE] += e * e;
		s[SUM_AE] += ae;
		s[SUM_Y2] += yv * yv;
		m_err = ae > m_err ? ae : m_err;
		double sf = sd > fl ? sd : fl;
		s[SUM_NLL] += half_log_2pi + log(sf) + 0.5 * (e / sf) * (e / sf);
		/* fair CRPS: mean |x - y| - sum_{i,j} |x_i - x_j| / (2 S (S-1)),
		 * the double sum 2 sum_t (2t - S - 1) x_(t) over sorted x */
		double d1 = 0, d2 = 0;
		for (int t = 0; t < S; t++) {
			d1 += fabs((double)x[t] - yv);
			d2 += (2.0 * t + 1 - S) * x[t];
		}
		s[SUM_CRPS] += d1 / S - (S > 1 ? d2 / ((double)S * (S - 1)) : 0);
		if (p->gauss_mu)
			s[SUM_CRPSG] += crps_gauss(p->gauss_mu[k],
						   p->gauss_sigma[k], yv);
		s[SUM_S1] += sd;
		s[SUM_S2] += sd * sd;
		s[SUM_S2C] += sd * sd * corr;
		s[SUM_A2] += ae * ae;
		s[SUM_SA] += sd * ae;
		if (p->aleatoric) {
			s[SUM_ALE] += p->aleatoric[k];
			s[SUM_EPI] += p->epistemic[k];
		}
		for (int j = 0; j < PNO_METRICS_NCOV; j++) {
			double L = PNO_METRICS_COVERAGE[j];
			double lo = quantile7(x, S, (1 - L) / 2);
			double hi = quantile7(x, S, (1 + L) / 2);
			s[SUM_COV + j] += lo <= yv && yv <= hi;
			s[SUM_WID + j] += hi - lo;
		}
		for (int j = 0; j < PNO_METRICS_NIS; j++) {
			double al = PNO_METRICS_IS_ALPHA[j];
			double lo = quantile7(x, S, al / 2);
			double hi = quantile7(x, S, 1 - al / 2);
			double sc = hi - lo;
			if (yv < lo)
				sc += 2 / al * (lo - yv);
			if (yv > hi)
				sc += 2 / al * (yv - hi);
			s[SUM_IS + j] += sc;
		}
		for (int j = 0; j < PNO_METRICS_NCAL; j++)
			s[SUM_CAL + j] += yv <= quantile7(x, S, PNO_METRICS_CAL[j]);
	}
	*mx = m_err;
}

/* h sum (u - v)^2 over n points, h = 1/P. */
static inline double sqdist(const float *restrict u, const float *restrict v,
			    size_t n)
{
	double acc = 0;
#pragma omp simd reduction(+ : acc)
	for (size_t i = 0; i < n; i++) {
		double d = (double)u[i] - v[i];
		acc += d * d;
	}
	return acc;
}

/* The unbiased energy score of one function. */
static double energy_score(struct pno_metrics_acc *a, const float *y,
			   const struct pno_metrics_pred *p, int nt)
{
	const size_t N = a->N;
	const int S = p->S;
	const double h = 1.0 / (double)a->P;
	const float *X = p->samples;	/* (S, N) */
	double *row = a->erow;		/* row[i]: ||X_i - y|| - sum_{j>i} ... */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (S > 4)
	for (int i = 0; i < S; i++) {
		const float *xi = X + (size_t)i * N;
		double pair = 0;
		for (int j = i + 1; j < S; j++)
			pair += sqrt(h * sqdist(xi, X + (size_t)j * N, N));
		double dy = sqrt(h * sqdist(xi, y, N));
		/* 1/(2 S (S-1)) sum_{i != j} = 1/(S (S-1)) sum_{i < j} */
		row[i] = dy / S - (S > 1 ? pair / ((double)S * (S - 1)) : 0);
	}
	double es = 0;
	for (int i = 0; i < S; i++)
		es += row[i];
	return es;
}

/* Add the shell energies |F(v)|^2 / P^2 of v (P) to spec. */
static void spectrum_add(struct pno_metrics_acc *a, double *spec)
{
	const double inv = 1.0 / ((double)a->P * (double)a->P);
	fftw_execute(a->plan);
	for (size_t id = 0; id < a->ncoef; id++) {
		double re = a->fout[id][0], im = a->fout[id][1];
		spec[a->shell[id]] += a->wt[id] * (re * re + im * im) * inv;
	}
}

enum pno_status pno_metrics_add(struct pno_metrics_acc *a, const float *y,
				const struct pno_metrics_pred *p)
{
	enum pno_status st;
	if (!a)
		return pno__errorf(PNO_STATUS_INVALID, "metrics add: NULL accumulator");
	if ((st = check_inputs(a, y, p)) != PNO_STATUS_OK)
		return st;
	const size_t N = a->N, P = a->P;
	const int nt = PNO__MIN(PNO__MAX(pno_threads_get(), 1), a->nbuf);

	if (a->n_functions == 0) {
		/* the NLL floor: 1e-6 x the std of the first function's y */
		double s1 = 0, s2 = 0;
		for (size_t k = 0; k < N; k++)
			s1 += y[k];
		s1 /= (double)N;
		for (size_t k = 0; k < N; k++)
			s2 += (y[k] - s1) * (y[k] - s1);
		double sd = sqrt(s2 / (double)N);
		a->nll_floor = 1e-6 * (sd > 0 ? sd : 1.0);
		a->S0 = p->S;
	}

#pragma omp parallel for schedule(static) num_threads(nt) if (N > CHUNK)
	for (size_t c = 0; c < a->nchunk; c++) {
		float *buf = a->sortbuf + (size_t)omp_get_thread_num() * a->Smax;
		size_t k0 = c * CHUNK, k1 = PNO__MIN(N, k0 + CHUNK);
		chunk_sums(a, a->part + c * NSUM, a->partmax + c, buf, y, p, k0,
			   k1);
	}
	double fs[NSUM] = {0}, mx = a->max_err;
	for (size_t c = 0; c < a->nchunk; c++) {
		for (int j = 0; j < NSUM; j++)
			fs[j] += a->part[c * NSUM + j];
		mx = PNO__MAX(mx, a->partmax[c]);
	}
	for (int j = 0; j < NSUM; j++)
		a->sum[j] += fs[j];
	a->max_err = mx;
	if (fs[SUM_Y2] > 0) {
		double r = sqrt(fs[SUM_SE] / fs[SUM_Y2]);
		a->rel_sum += r;
		a->rel_sq += r * r;
		a->n_rel++;
	}
	a->energy_sum += energy_score(a, y, p, nt);

	for (int c = 0; c < a->C; c++) {
		const float *yc = y + (size_t)c * P, *mc = p->mean + (size_t)c * P;
		const float *sc = p->std + (size_t)c * P;
		for (size_t i = 0; i < P; i++)
			a->fin[i] = (double)mc[i] - yc[i];
		spectrum_add(a, a->err_spec);
		for (size_t i = 0; i < P; i++)
			a->fin[i] = sc[i];
		spectrum_add(a, a->std_spec);
	}
	a->n_gauss += p->gauss_mu != NULL;
	a->n_decomp += p->aleatoric != NULL;
	a->n_functions++;
	return PNO_STATUS_OK;
}

/* ---- finish ---- */

enum pno_status pno_metrics_finish(const struct pno_metrics_acc *a,
				   struct pno_metrics *r)
{
	if (!a || !r)
		return pno__errorf(PNO_STATUS_INVALID, "metrics finish: NULL argument");
	if (a->n_functions < 1)
		return pno__errorf(PNO_STATUS_RANGE,
				   "metrics finish: no functions were added");
	const double *s = a->sum;
	const double nf = (double)a->n_functions;
	const double np = nf * (double)a->N;
	memset(r, 0, sizeof *r);
	r->n_functions = a->n_functions;
	r->n_points = a->n_functions * (int64_t)a->N;
	r->S = a->S0;
	if (a->n_rel > 0) {
		double mu = a->rel_sum / (double)a->n_rel;
		double var = a->rel_sq / (double)a->n_rel - mu * mu;
		r->rel_l2 = mu;
		r->rel_l2_std = sqrt(var > 0 ? var : 0);
	} else {
		r->rel_l2 = r->rel_l2_std = NAN;
	}
	r->rmse = sqrt(s[SUM_SE] / np);
	r->mae = s[SUM_AE] / np;
	r->max_err = a->max_err;
	r->nll = s[SUM_NLL] / np;
	r->nll_std_floor = a->nll_floor;
	r->crps = s[SUM_CRPS] / np;
	r->has_crps_gauss = a->n_gauss == a->n_functions;
	r->crps_gauss = r->has_crps_gauss ? s[SUM_CRPSG] / np : NAN;
	r->energy = a->energy_sum / nf;
	for (int j = 0; j < PNO_METRICS_NCOV; j++) {
		r->coverage[j] = s[SUM_COV + j] / np;
		r->width[j] = s[SUM_WID + j] / np;
	}
	for (int j = 0; j < PNO_METRICS_NIS; j++)
		r->interval_score[j] = s[SUM_IS + j] / np;
	r->sharpness = s[SUM_S1] / np;
	r->calib_error = 0;
	for (int j = 0; j < PNO_METRICS_NCAL; j++) {
		r->calib_obs[j] = s[SUM_CAL + j] / np;
		r->calib_error += fabs(r->calib_obs[j] - PNO_METRICS_CAL[j]);
	}
	r->calib_error /= PNO_METRICS_NCAL;
	r->spread_skill = s[SUM_SE] > 0 ? sqrt(s[SUM_S2C] / s[SUM_SE]) : NAN;
	{
		double ms = s[SUM_S1] / np, ma = s[SUM_AE] / np;
		double vs = s[SUM_S2] / np - ms * ms;
		double va = s[SUM_A2] / np - ma * ma;
		double cv = s[SUM_SA] / np - ms * ma;
		if (vs > 0 && va > 0) {
			double c = cv / sqrt(vs * va);
			r->std_err_corr = c > 1 ? 1 : c < -1 ? -1 : c;
		} else {
			r->std_err_corr = NAN;
		}
	}
	r->n_shells = a->n_shells;
	for (int k = 0; k < a->n_shells; k++) {
		r->err_spectrum[k] = a->err_spec[k] / nf;
		r->std_spectrum[k] = a->std_spec[k] / nf;
	}
	r->has_decomposition = a->n_decomp == a->n_functions;
	if (r->has_decomposition) {
		r->aleatoric = s[SUM_ALE] / np;
		r->epistemic = s[SUM_EPI] / np;
		r->total = (s[SUM_ALE] + s[SUM_EPI]) / np;
	} else {
		r->aleatoric = r->epistemic = r->total = NAN;
	}
	return PNO_STATUS_OK;
}
