/* Sampling and summaries of FNO-family predictive distributions. */
#include "pno/predict.h"
#include "internal.h"
#include "predict_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pno_prediction_free(struct pno_prediction *p)
{
	if (!p)
		return;
	pno_free(p->samples);
	pno_free(p->mean);
	pno_free(p->std);
	pno_free(p->aleatoric);
	pno_free(p->epistemic);
	pno_free(p->gauss_mu);
	pno_free(p->gauss_sigma);
	pno_free(p->levels);
	pno_free(p->quantiles);
	memset(p, 0, sizeof *p);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

enum pno_status pno__predict_check(const float *x, int S, const float *q,
				   int nq)
{
	if (!x || S < 1 || S > PNO_PREDICT_MAX_SAMPLES)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict: --samples %d must be in [1, %d]", S,
				   PNO_PREDICT_MAX_SAMPLES);
	if (nq < 0 || nq > PNO_PREDICT_MAX_QUANTILES || (nq > 0 && !q))
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict: %d quantile levels (at most %d)", nq,
				   PNO_PREDICT_MAX_QUANTILES);
	for (int k = 0; k < nq; k++)
		if (!(q[k] > 0 && q[k] < 1))
			return pno__errorf(PNO_STATUS_INVALID,
					   "predict: quantile level %g is not in "
					   "(0, 1)", (double)q[k]);
	return PNO_STATUS_OK;
}

enum pno_status pno__prediction_alloc(struct pno_prediction *p, int S, int C,
				      int P, const float *q, int nq,
				      int decomp)
{
	const size_t N = (size_t)C * P;
	memset(p, 0, sizeof *p);
	/* the samples (and the network outputs beside them) are held whole:
	 * refuse a request beyond 4 GB of them rather than let it swap or
	 * meet the OOM killer */
	double gb = (double)S * (double)N * sizeof(float) / 1e9;
	if (gb > 4.0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict: %d samples of %zu values need %.1f GB "
				   "(at most 4): lower --samples", S, N, gb);
	p->S = S, p->C = C, p->P = P, p->nq = nq;
	p->samples = pno_malloc((size_t)S * N * sizeof(float));
	p->mean = pno_malloc(N * sizeof(float));
	p->std = pno_malloc(N * sizeof(float));
	p->levels = pno_malloc((size_t)(nq ? nq : 1) * sizeof(float));
	p->quantiles = pno_malloc((size_t)(nq ? nq : 1) * N * sizeof(float));
	if (decomp) {
		p->aleatoric = pno_malloc(N * sizeof(float));
		p->epistemic = pno_malloc(N * sizeof(float));
	}
	if (!p->samples || !p->mean || !p->std || !p->levels || !p->quantiles ||
	    (decomp && (!p->aleatoric || !p->epistemic))) {
		pno_prediction_free(p);
		return pno__errorf(PNO_STATUS_NOMEM, "predict: out of memory");
	}
	if (nq)
		memcpy(p->levels, q, (size_t)nq * sizeof(float));
	return PNO_STATUS_OK;
}

void pno__prediction_summarize(struct pno_prediction *p, float *col)
{
	const int S = p->S, nq = p->nq;
	const size_t N = (size_t)p->C * p->P;
	const float *q = p->levels;
	for (size_t k = 0; k < N; k++) {
		double s = 0, s2 = 0;
		for (int i = 0; i < S; i++)
			s += p->samples[(size_t)i * N + k];
		double mean = s / S;
		for (int i = 0; i < S; i++) {
			double dv = p->samples[(size_t)i * N + k] - mean;
			s2 += dv * dv;
		}
		p->mean[k] = (float)mean;
		p->std[k] = (float)(S > 1 ? sqrt(s2 / (S - 1)) : 0.0);
		if (!nq)
			continue;
		int nan = 0;
		for (int i = 0; i < S; i++) {
			col[i] = p->samples[(size_t)i * N + k];
			nan |= isnan(col[i]);
		}
		/* the library's sort allocates nothing (glibc's qsort mallocs
		 * above 1 KB); it takes no NaN, which only qsort's comparator
		 * orders (a NaN answer is refused by its users anyway) */
		if (nan)
			qsort(col, (size_t)S, sizeof *col, cmp_float);
		else
			pno__sort_floats(col, (size_t)S);
		for (int j = 0; j < nq; j++) {
			double h = (S - 1) * (double)q[j];
			int lo = (int)floor(h);
			int hi = lo + 1 < S ? lo + 1 : lo;
			double f = h - lo;
			p->quantiles[(size_t)j * N + k] =
				(float)(col[lo] + f * (col[hi] - col[lo]));
		}
	}
}

enum pno_status pno_fno_predict(struct pno_fno *m, const float *x, int S,
				uint64_t seed, const float *q, int nq,
				struct pno_prediction *p)
{
	const int C = m->arch.out_ch, P = m->P;
	const int heads = m->arch.heads == 2 ? 2 : 1;
	const size_t N = (size_t)C * P;
	float *raw = NULL, *col = NULL;
	enum pno_status st;

	memset(p, 0, sizeof *p);
	if ((st = pno__predict_check(x, S, q, nq)) != PNO_STATUS_OK)
		return st;
	if ((st = pno__prediction_alloc(p, S, C, P, q, nq, heads == 2)))
		return st;
	raw = pno_malloc((size_t)S * heads * N * sizeof(float));
	col = pno_malloc((size_t)S * sizeof(float));
	if (!raw || !col) {
		st = pno__errorf(PNO_STATUS_NOMEM, "predict: out of memory");
		goto fail;
	}

	/* the network's samples: batched; without dropout one forward serves
	 * all of them */
	int stochastic = m->stochastic;
	if (pno_fno_has_dropout(&m->arch)) {
		m->stochastic = 1;
		st = pno_fno_sample(m, raw, x, S, seed);
		m->stochastic = stochastic;
		if (st != PNO_STATUS_OK)
			goto fail;
	} else {
		m->stochastic = 0;
		const float *out = pno_fno_forward(m, x, 1);
		m->stochastic = stochastic;
		for (int i = 0; i < S; i++)
			memcpy(raw + (size_t)i * heads * N, out,
			       heads * N * sizeof(float));
	}
	if (heads == 2) {
		/* y_i = mu_i + sigma_i z_i; stream 1 of the seed: apart from
		 * the masks' streams */
		pno_rng_normal(p->samples, (size_t)S * N, seed, 0xE1000000ull, 0);
		for (int i = 0; i < S; i++) {
			const float *mu = raw + (size_t)i * 2 * N, *sg = mu + N;
			float *y = p->samples + (size_t)i * N;
			for (size_t k = 0; k < N; k++)
				y[k] = mu[k] + sg[k] * y[k];
		}
		for (size_t k = 0; k < N; k++) {
			double sm = 0, sm2 = 0, sv = 0;
			for (int i = 0; i < S; i++) {
				const float *mu = raw + (size_t)i * 2 * N;
				sm += mu[k];
				sv += (double)mu[N + k] * mu[N + k];
			}
			double mbar = sm / S;
			for (int i = 0; i < S; i++) {
				double dv = raw[(size_t)i * 2 * N + k] - mbar;
				sm2 += dv * dv;
			}
			p->aleatoric[k] = (float)(sv / S);
			p->epistemic[k] = (float)(S > 1 ? sm2 / (S - 1) : 0.0);
		}
		if (!pno_fno_has_dropout(&m->arch)) {
			p->gauss_mu = pno_malloc(N * sizeof(float));
			p->gauss_sigma = pno_malloc(N * sizeof(float));
			if (!p->gauss_mu || !p->gauss_sigma) {
				st = pno__errorf(PNO_STATUS_NOMEM,
						 "predict: out of memory");
				goto fail;
			}
			memcpy(p->gauss_mu, raw, N * sizeof(float));
			memcpy(p->gauss_sigma, raw + N, N * sizeof(float));
		}
	} else {
		memcpy(p->samples, raw, (size_t)S * N * sizeof(float));
	}

	pno__prediction_summarize(p, col);
	pno_free(raw);
	pno_free(col);
	return PNO_STATUS_OK;
fail:
	pno_free(raw);
	pno_free(col);
	pno_prediction_free(p);
	return st;
}
