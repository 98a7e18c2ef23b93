/* Predictive distributions of the variational FNO and of DeepONet, with
 * the summaries shared with the FNO family. */
#include "internal.h"
#include "pno/deeponet.h"
#include "pno/vfno.h"
#include "predict_internal.h"

#include <math.h>
#include <string.h>

enum pno_status pno_vfno_predict_dist(struct pno_vfno *v, const float *x,
				      int S, uint64_t seed, const float *q,
				      int nq, struct pno_prediction *p)
{
	const int C = v->C, P = v->net.P;
	const size_t N = (size_t)C * P;
	float *mu = NULL, *var = NULL, *col = NULL;
	enum pno_status st;
	memset(p, 0, sizeof *p);
	if ((st = pno__predict_check(x, S, q, nq)) != PNO_STATUS_OK ||
	    (st = pno__prediction_alloc(p, S, C, P, q, nq, 1)) != PNO_STATUS_OK)
		return st;
	mu = pno_malloc((size_t)S * N * sizeof(float));
	var = pno_malloc((size_t)S * N * sizeof(float));
	col = pno_malloc((size_t)S * sizeof(float));
	if (!mu || !var || !col) {
		st = pno__errorf(PNO_STATUS_NOMEM, "predict: out of memory");
		goto fail;
	}
	/* the posterior draws of this seed: streams far from training's */
	uint64_t calls = v->calls;
	v->calls = pno_rng_u64(seed, 0xF1000000ull, 0) >> 8;
	st = pno_vfno_predict(v, x, 1, S, mu, var);
	v->calls = calls;
	pno_vfno_use_mean(v);
	if (st != PNO_STATUS_OK)
		goto fail;
	pno_rng_normal(p->samples, (size_t)S * N, seed, 0xE1000000ull, 0);
	for (size_t k = 0; k < (size_t)S * N; k++)
		p->samples[k] = mu[k] + sqrtf(var[k]) * p->samples[k];
	for (size_t k = 0; k < N; k++) {
		double sv = 0, sm = 0, s2 = 0;
		for (int i = 0; i < S; i++) {
			sv += var[(size_t)i * N + k];
			sm += mu[(size_t)i * N + k];
		}
		double mbar = sm / S;
		for (int i = 0; i < S; i++) {
			double dv = mu[(size_t)i * N + k] - mbar;
			s2 += dv * dv;
		}
		p->aleatoric[k] = (float)(sv / S);
		p->epistemic[k] = (float)(S > 1 ? s2 / (S - 1) : 0.0);
	}
	pno__prediction_summarize(p, col);
	pno_free(mu);
	pno_free(var);
	pno_free(col);
	return PNO_STATUS_OK;
fail:
	pno_free(mu);
	pno_free(var);
	pno_free(col);
	pno_prediction_free(p);
	return st;
}

enum pno_status pno_deeponet_predict_dist(struct pno_deeponet *m,
					  const float *x, int S,
					  const float *q, int nq,
					  struct pno_prediction *p)
{
	const int C = m->arch.out_ch, P = m->P;
	const size_t N = (size_t)C * P;
	enum pno_status st;
	memset(p, 0, sizeof *p);
	if ((st = pno__predict_check(x, S, q, nq)) != PNO_STATUS_OK ||
	    (st = pno__prediction_alloc(p, S, C, P, q, nq, 0)) != PNO_STATUS_OK)
		return st;
	float *col = pno_malloc((size_t)S * sizeof(float));
	const float *out = col ? pno_deeponet_forward(m, x, 1) : NULL;
	if (!out) {
		st = col ? PNO_STATUS_INTERNAL
			 : pno__errorf(PNO_STATUS_NOMEM, "predict: out of memory");
		pno_free(col);
		pno_prediction_free(p);
		return st;
	}
	for (int i = 0; i < S; i++)
		memcpy(p->samples + (size_t)i * N, out, N * sizeof(float));
	pno__prediction_summarize(p, col);
	pno_free(col);
	return PNO_STATUS_OK;
}
