/* Autoregressive rollouts with uncertainty (see pno/rollout.h). */
#include "pno/rollout.h"

#include "internal.h"
#include "pno/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double PNO_ROLLOUT_ERR_Q[PNO_ROLLOUT_NQ] = {0.5, 0.9, 0.95, 0.99};

/* the streams pno_model_predict draws from (src/predict.c,
 * src/predict_methods.c, src/ensemble.c): the rollout reproduces its
 * draws exactly */
#define STREAM_Z_FNO 0xE1000000ull	/* mean-scale noise, fno and vfno */
#define STREAM_Z_ENS 0xE2000000ull	/* mean-scale noise, ensemble */
#define STREAM_VFNO 0xF1000000ull	/* vfno weight draws */
#define STREAM_KEY 0x70110000ull	/* the rollout's own keys */

enum method { M_FNO, M_VFNO, M_DEEPONET, M_ENSEMBLE };

struct pno_rollout {
	struct pno_model *m;
	struct pno_rollout_opts o;
	enum method kind;
	int C, P, heads, dropout, members;
	size_t N;			/* C * P */
	float *hist;			/* (K + 1, S, C, P) the sample states */
	float *raw;			/* (2, C, P) network output (heads, C, P)
					 * or vfno's (mu, var) */
	float *z;			/* (C, P) noise of one draw */
	float *mean, *std;		/* (C, P) */
	float *err;			/* (S, C, P) |x_i - y| */
	uint64_t *keys;			/* (S) this step's keys */
	int *idx;			/* (S) samples of one ensemble member */
	struct pno_metrics_acc **acc;	/* (K) */
	int cov90;			/* index of 0.9 in PNO_METRICS_COVERAGE */
	/* sums over trajectories, (K) each */
	double *sum_q;			/* (K, NQ) */
	double *sum_unc;
	int n_traj, n_exceeded;
	double sum_first;
};

void pno_rollout_opts_default(struct pno_rollout_opts *o)
{
	o->steps = 10;
	o->samples = 32;
	o->start = 0;
	o->seed = 0;
	o->threshold = 0.5;
}

uint64_t pno_rollout_key(uint64_t seed, uint64_t traj, uint64_t i,
			 uint64_t k)
{
	uint64_t a = pno_rng_u64(seed, STREAM_KEY, traj);
	uint64_t b = pno_rng_u64(a, STREAM_KEY + 1, i);
	return pno_rng_u64(b, STREAM_KEY + 2, k);
}

void pno_rollout_free(struct pno_rollout *r)
{
	if (!r)
		return;
	if (r->acc)
		for (int k = 0; k < r->o.steps; k++)
			pno_metrics_free(r->acc[k]);
	pno_free(r->acc);
	pno_free(r->hist);
	pno_free(r->raw);
	pno_free(r->z);
	pno_free(r->mean);
	pno_free(r->std);
	pno_free(r->err);
	pno_free(r->keys);
	pno_free(r->idx);
	pno_free(r->sum_q);
	pno_free(r->sum_unc);
	pno_free(r);
}

static enum pno_status check_opts(const struct pno_rollout_opts *o)
{
	if (o->steps < 1 || o->steps > PNO_ROLLOUT_MAX_STEPS)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: --steps %d must be in [1, %d]",
				   o->steps, PNO_ROLLOUT_MAX_STEPS);
	if (o->samples < 1 || o->samples > PNO_PREDICT_MAX_SAMPLES)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: --samples %d must be in [1, %d]",
				   o->samples, PNO_PREDICT_MAX_SAMPLES);
	if (o->start < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: --start %d must be >= 0", o->start);
	if (!(o->threshold > 0) || !isfinite(o->threshold))
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: --threshold %g must be a finite "
				   "number > 0", o->threshold);
	return PNO_STATUS_OK;
}

static void set_kind(struct pno_rollout *r)
{
	struct pno_model *m = r->m;
	r->heads = 1;
	if (!strcmp(m->method, "vfno")) {
		r->kind = M_VFNO;
	} else if (!strcmp(m->method, "deeponet")) {
		r->kind = M_DEEPONET;
	} else if (!strcmp(m->method, "ensemble")) {
		r->kind = M_ENSEMBLE;
		r->members = m->ens.K;
		r->heads = m->ens.m[0].arch.heads == 2 ? 2 : 1;
	} else {
		r->kind = M_FNO;
		r->heads = m->fno.arch.heads == 2 ? 2 : 1;
		r->dropout = pno_fno_has_dropout(&m->fno.arch);
	}
}

enum pno_status pno_rollout_new(struct pno_rollout **out, struct pno_model *m,
				int C, int dims, int X, int Y,
				const struct pno_rollout_opts *o)
{
	enum pno_status s;
	struct pno_rollout *r = NULL;
	if (!out || !m || !o)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: NULL output, model or options");
	*out = NULL;
	if ((s = check_opts(o)) != PNO_STATUS_OK)
		return s;
	if (C < 1 || X < 1 || Y < 1 || (dims != 1 && dims != 2))
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: bad state shape (%dD, %d x %d, %d "
				   "channels)", dims, X, Y, C);
	if ((s = pno_model_check_shape(m, dims, X, Y, C, C,
				       "the data's state (a one-step model maps it to itself)")))
		return s;
	const int K = o->steps, S = o->samples;
	const size_t N = (size_t)C * X * Y;
	/* the states of all K + 1 steps are kept (metrics are added only
	 * once the whole rollout is finite): refuse beyond 4 GB */
	double gb = (double)(K + 1) * S * (double)N * sizeof(float) / 1e9;
	if (gb > 4.0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: %d steps x %d samples of %zu values "
				   "need %.1f GB (at most 4): lower --steps or "
				   "--samples", K, S, N, gb);
	if (!(r = pno_calloc(1, sizeof *r)))
		return pno__errorf(PNO_STATUS_NOMEM, "rollout: out of memory");
	r->m = m;
	r->o = *o;
	r->C = C;
	r->P = X * Y;
	r->N = N;
	set_kind(r);
	r->hist = pno_malloc((size_t)(K + 1) * S * N * sizeof(float));
	/* vfno keeps (mu, var) of one draw in raw */
	r->raw = pno_malloc(2 * N * sizeof(float));
	r->z = pno_malloc(N * sizeof(float));
	r->mean = pno_malloc(N * sizeof(float));
	r->std = pno_malloc(N * sizeof(float));
	r->err = pno_malloc((size_t)S * N * sizeof(float));
	r->keys = pno_malloc((size_t)S * sizeof *r->keys);
	r->idx = pno_malloc((size_t)S * sizeof *r->idx);
	r->acc = pno_calloc((size_t)K, sizeof *r->acc);
	r->sum_q = pno_calloc((size_t)K * PNO_ROLLOUT_NQ, sizeof(double));
	r->sum_unc = pno_calloc((size_t)K, sizeof(double));
	if (!r->hist || !r->raw || !r->z || !r->mean || !r->std ||
	    !r->err || !r->keys || !r->idx || !r->acc || !r->sum_q ||
	    !r->sum_unc) {
		pno_rollout_free(r);
		return pno__errorf(PNO_STATUS_NOMEM, "rollout: out of memory");
	}
	for (int k = 0; k < K; k++)
		if ((s = pno_metrics_new(&r->acc[k], C, dims, X, Y, S))) {
			pno_rollout_free(r);
			return s;
		}
	r->cov90 = -1;
	for (int j = 0; j < PNO_METRICS_NCOV; j++)
		if (fabs(PNO_METRICS_COVERAGE[j] - 0.9) < 1e-12)
			r->cov90 = j;
	if (r->cov90 < 0) {
		pno_rollout_free(r);
		return pno__errorf(PNO_STATUS_INTERNAL,
				   "rollout: the metrics have no 90%% interval");
	}
	*out = r;
	return PNO_STATUS_OK;
}

/* y = mu + sigma z, z the draw's noise: the same expression as
 * pno_fno_predict / pno_ensemble_predict use */
static void add_noise(float *restrict y, const float *restrict mu,
		      const float *restrict sg, const float *restrict z,
		      size_t N)
{
	for (size_t j = 0; j < N; j++)
		y[j] = mu[j] + sg[j] * z[j];
}

/* Sample i's state y (C, P) from its network output o ((heads, C, P)):
 * the output, or mu + sigma z with z the draw's noise. */
static void finish_draw(struct pno_rollout *r, float *y, const float *o,
			int i, uint64_t zstream, uint64_t zoff)
{
	const size_t N = r->N;
	if (r->heads == 2) {
		pno_rng_normal(r->z, N, r->keys[i], zstream, zoff);
		add_noise(y, o, o + N, r->z, N);
	} else {
		memcpy(y, o, N * sizeof(float));
	}
}

/* Deterministic networks: the states of samples idx[0..n), one forward
 * each. Not batched on purpose: a forward's bits depend on its batch size
 * (FFT plans and GEMM kernels differ), so a batch would tie sample i to
 * S and to the batch bound, and break the equality with
 * pno_model_predict. */
static enum pno_status forward_each(struct pno_rollout *r,
				    struct pno_fno *f, float *next,
				    const float *cur, const int *idx, int n,
				    uint64_t zstream, uint64_t zoff)
{
	const size_t N = r->N;
	for (int b = 0; b < n; b++) {
		const int i = idx[b];
		const float *o;
		if (f) {
			int stochastic = f->stochastic;
			f->stochastic = 0;
			o = pno_fno_forward(f, cur + (size_t)i * N, 1);
			f->stochastic = stochastic;
		} else {
			o = pno_deeponet_forward(&r->m->don, cur + (size_t)i * N,
						 1);
		}
		if (!o)
			return pno__errorf(PNO_STATUS_INTERNAL,
					   "rollout: the model's forward failed");
		finish_draw(r, next + (size_t)i * N, o, i, zstream, zoff);
	}
	return PNO_STATUS_OK;
}

/* next (S, C, P): one draw per sample at its own state in cur. */
static enum pno_status step(struct pno_rollout *r, float *next,
			    const float *cur, int traj, int k)
{
	const int S = r->o.samples;
	const size_t N = r->N;
	struct pno_model *m = r->m;
	enum pno_status s = PNO_STATUS_OK;
	for (int i = 0; i < S; i++) {
		r->keys[i] = pno_rollout_key(r->o.seed, (uint64_t)traj,
					     (uint64_t)i, (uint64_t)k);
		r->idx[i] = i;
	}
	switch (r->kind) {
	case M_DEEPONET:
		return forward_each(r, NULL, next, cur, r->idx, S, 0, 0);
	case M_FNO:
		if (!r->dropout)
			return forward_each(r, &m->fno, next, cur, r->idx, S,
					    STREAM_Z_FNO, 0);
		/* masks keyed per draw: one forward each */
		for (int i = 0; i < S && !s; i++) {
			s = pno_fno_sample(&m->fno, r->raw, cur + (size_t)i * N,
					   1, r->keys[i]);
			if (!s)
				finish_draw(r, next + (size_t)i * N, r->raw, i,
					    STREAM_Z_FNO, 0);
		}
		return s;
	case M_VFNO: {
		/* as pno_vfno_predict_dist with S = 1: one weight draw of
		 * the key's stream, then mu + sqrt(var) z */
		struct pno_vfno *v = &m->vfno;
		float *mu = r->raw, *var = r->raw + N;
		uint64_t calls = v->calls;
		for (int i = 0; i < S && !s; i++) {
			v->calls = pno_rng_u64(r->keys[i], STREAM_VFNO, 0) >> 8;
			s = pno_vfno_predict(v, cur + (size_t)i * N, 1, 1, mu,
					     var);
			if (s)
				break;
			pno_rng_normal(r->z, N, r->keys[i], STREAM_Z_FNO, 0);
			float *y = next + (size_t)i * N;
			for (size_t j = 0; j < N; j++)
				y[j] = mu[j] + sqrtf(var[j]) * r->z[j];
		}
		v->calls = calls;
		pno_vfno_use_mean(v);
		return s;
	}
	case M_ENSEMBLE:
		/* member j serves the samples i = j mod M; the noise
		 * of sample j of an M-sample prediction */
		for (int j = 0; j < r->members && !s; j++) {
			int n = 0;
			for (int i = j; i < S; i += r->members)
				r->idx[n++] = i;
			if (n)
				s = forward_each(r, &m->ens.m[j], next, cur, r->idx, n,
					    STREAM_Z_ENS, (uint64_t)j * N);
		}
		return s;
	}
	return PNO_STATUS_INTERNAL;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* type-7 quantile of sorted v (n) */
static double quantile7(const float *v, size_t n, double q)
{
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)floor(h), hi = lo + 1 < n ? lo + 1 : lo;
	return v[lo] + (h - (double)lo) * ((double)v[hi] - v[lo]);
}

/* Metrics of step k (1-based) from its samples x (S, C, P) and truth y;
 * adds them to the accumulators and fills ps. */
static enum pno_status score(struct pno_rollout *r, int k, const float *x,
			     const float *y, struct pno_rollout_step *ps)
{
	const int S = r->o.samples;
	const size_t N = r->N, SN = (size_t)S * N;
	double sm2 = 0, ss2 = 0;
	for (size_t j = 0; j < N; j++) {
		double a = 0, b = 0;
		for (int i = 0; i < S; i++)
			a += x[(size_t)i * N + j];
		a /= S;
		for (int i = 0; i < S; i++) {
			double d = x[(size_t)i * N + j] - a;
			b += d * d;
		}
		r->mean[j] = (float)a;
		r->std[j] = (float)(S > 1 ? sqrt(b / (S - 1)) : 0.0);
		sm2 += (double)r->mean[j] * r->mean[j];
		ss2 += (double)r->std[j] * r->std[j];
	}
	struct pno_metrics_pred p = {.S = S, .samples = x, .mean = r->mean,
				     .std = r->std};
	enum pno_status s = pno_metrics_add(r->acc[k - 1], y, &p);
	if (s != PNO_STATUS_OK)
		return s;
	/* this trajectory's own values: the CRPS and coverage only through
	 * the accumulator (one definition), the rest here */
	double e2 = 0, y2 = 0, sd = 0;
	for (size_t j = 0; j < N; j++) {
		double dm = (double)r->mean[j] - y[j];
		e2 += dm * dm;
		y2 += (double)y[j] * y[j];
		sd += r->std[j];
	}
	ps->rel_l2 = sqrt(e2) / sqrt(y2);
	ps->crps = NAN;
	ps->coverage90 = NAN;
	ps->mean_std = sd / (double)N;
	for (int i = 0; i < S; i++)
		for (size_t j = 0; j < N; j++)
			r->err[(size_t)i * N + j] =
				fabsf(x[(size_t)i * N + j] - y[j]);
	qsort(r->err, SN, sizeof *r->err, cmp_float);
	for (int q = 0; q < PNO_ROLLOUT_NQ; q++)
		ps->err_q[q] = quantile7(r->err, SN, PNO_ROLLOUT_ERR_Q[q]);
	ps->rel_unc = sm2 > 0 ? sqrt(ss2) / sqrt(sm2)
			      : (ss2 > 0 ? INFINITY : 0.0);
	return PNO_STATUS_OK;
}

enum pno_status pno_rollout_add(struct pno_rollout *r, const float *u, int T,
				int traj, float *samples, int *first_exceed,
				struct pno_rollout_step *per_step)
{
	if (!r || !u || traj < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: NULL rollout or trajectory, or "
				   "trajectory index %d < 0", traj);
	const int K = r->o.steps, S = r->o.samples, t0 = r->o.start;
	const size_t N = r->N, SN = (size_t)S * N;
	if ((long)t0 + K >= (long)T)
		return pno__errorf(PNO_STATUS_RANGE,
				   "rollout: --start %d + --steps %d goes past the "
				   "trajectory's last step %d (T = %d)", t0, K,
				   T - 1, T);
	for (int i = 0; i < S; i++)
		memcpy(r->hist + (size_t)i * N, u + (size_t)t0 * N,
		       N * sizeof(float));
	for (int k = 1; k <= K; k++) {
		float *next = r->hist + (size_t)k * SN;
		enum pno_status s = step(r, next, next - SN, traj, k);
		if (s != PNO_STATUS_OK)
			return s;
		for (size_t j = 0; j < SN; j++)
			if (!isfinite(next[j]))
				return pno__errorf(PNO_STATUS_NONFINITE,
						   "rollout: trajectory %d diverged "
						   "at step %d (sample %zu: %g)",
						   traj, k, j / N,
						   (double)next[j]);
	}
	int first = -1;
	for (int k = 1; k <= K; k++) {
		struct pno_rollout_step ps;
		enum pno_status s = score(r, k, r->hist + (size_t)k * SN,
					  u + (size_t)(t0 + k) * N, &ps);
		if (s != PNO_STATUS_OK)
			return s;
		for (int q = 0; q < PNO_ROLLOUT_NQ; q++)
			r->sum_q[(size_t)(k - 1) * PNO_ROLLOUT_NQ + q] +=
				ps.err_q[q];
		r->sum_unc[k - 1] += ps.rel_unc;
		if (first < 0 && ps.rel_unc > r->o.threshold)
			first = k;
		if (per_step)
			per_step[k - 1] = ps;
	}
	r->n_traj++;
	if (first > 0) {
		r->n_exceeded++;
		r->sum_first += first;
	}
	if (first_exceed)
		*first_exceed = first;
	if (samples)
		memcpy(samples, r->hist, (size_t)(K + 1) * SN * sizeof(float));
	return PNO_STATUS_OK;
}

enum pno_status pno_rollout_finish(const struct pno_rollout *r,
				   struct pno_rollout_result *res)
{
	if (!r || !res)
		return pno__errorf(PNO_STATUS_INVALID,
				   "rollout: NULL rollout or result");
	memset(res, 0, sizeof *res);
	if (r->n_traj < 1)
		return pno__errorf(PNO_STATUS_RANGE,
				   "rollout: no trajectory was rolled out");
	const int K = r->o.steps;
	res->step = pno_calloc((size_t)K, sizeof *res->step);
	if (!res->step)
		return pno__errorf(PNO_STATUS_NOMEM, "rollout: out of memory");
	res->K = K;
	res->S = r->o.samples;
	res->n_traj = r->n_traj;
	res->threshold = r->o.threshold;
	res->mean_exceed = -1;
	for (int k = 0; k < K; k++) {
		struct pno_metrics mt;
		enum pno_status s = pno_metrics_finish(r->acc[k], &mt);
		if (s != PNO_STATUS_OK) {
			pno_rollout_result_free(res);
			return s;
		}
		struct pno_rollout_step *ps = &res->step[k];
		ps->rel_l2 = mt.rel_l2;
		ps->crps = mt.crps;
		ps->coverage90 = mt.coverage[r->cov90];
		ps->mean_std = mt.sharpness;
		for (int q = 0; q < PNO_ROLLOUT_NQ; q++)
			ps->err_q[q] = r->sum_q[(size_t)k * PNO_ROLLOUT_NQ + q] /
				       r->n_traj;
		ps->rel_unc = r->sum_unc[k] / r->n_traj;
		if (res->mean_exceed < 0 && ps->rel_unc > r->o.threshold)
			res->mean_exceed = k + 1;
	}
	res->n_exceeded = r->n_exceeded;
	res->mean_first_exceed = r->n_exceeded ? r->sum_first / r->n_exceeded
					       : NAN;
	return PNO_STATUS_OK;
}

void pno_rollout_result_free(struct pno_rollout_result *res)
{
	if (!res)
		return;
	pno_free(res->step);
	memset(res, 0, sizeof *res);
}
