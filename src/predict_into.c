/* Predictions into the caller's buffers, several inputs per forward (see
 * pno/model.h): the serving path. Every scratch buffer is sized by
 * pno_model_predict_init; a call allocates nothing. The draws and the
 * arithmetic per input are those of pno_fno_predict,
 * pno_vfno_predict_dist, pno_deeponet_predict_dist and
 * pno_ensemble_predict (the reference the tests hold this to). */
#include "pno/model.h"
#include "internal.h"
#include "predict_internal.h"

#include <math.h>
#include <string.h>

/* the normal draws' streams of the reference paths */
#define STREAM_Z_FNO 0xE1000000ull	/* predict.c, predict_methods.c */
#define STREAM_Z_ENS 0xE2000000ull	/* ensemble.c */
#define STREAM_VFNO 0xF1000000ull	/* predict_methods.c */

enum kind { KIND_FNO, KIND_FNO_DROPOUT, KIND_VFNO, KIND_DEEPONET,
	    KIND_ENSEMBLE };

struct pno__model_ws {
	int Smax;
	float *samp;		/* (Smax, C, P): samples nobody keeps */
	float *raw;		/* network outputs, by kind: dropout fno
				 * (Smax, heads*C*P); ensemble (K, Bmax,
				 * heads*C*P); vfno mu, var (2, Smax, C*P) */
	float *ale, *epi;	/* (C, P) variances nobody keeps */
	float *col;		/* (Smax) sort scratch */
};

void pno__model_ws_free(struct pno__model_ws *w)
{
	if (!w)
		return;
	pno_free(w->samp);
	pno_free(w->raw);
	pno_free(w->ale);
	pno_free(w->epi);
	pno_free(w->col);
	pno_free(w);
}

static enum kind kind_of(const struct pno_model *m)
{
	if (!strcmp(m->method, "vfno"))
		return KIND_VFNO;
	if (!strcmp(m->method, "deeponet"))
		return KIND_DEEPONET;
	if (!strcmp(m->method, "ensemble"))
		return KIND_ENSEMBLE;
	return pno_fno_has_dropout(&m->fno.arch) ? KIND_FNO_DROPOUT : KIND_FNO;
}

static int heads_of(const struct pno_model *m, enum kind k)
{
	const struct pno_fno_arch *a = k == KIND_ENSEMBLE ? &m->ens.m[0].arch
							 : &m->fno.arch;
	return (k == KIND_FNO || k == KIND_FNO_DROPOUT ||
		k == KIND_ENSEMBLE) && a->heads == 2 ? 2 : 1;
}

static float *alloc_floats(size_t a, size_t b, size_t c)
{
	size_t n, bytes;
	if (pno__mul_overflow(a, b, &n) || pno__mul_overflow(n, c, &n) ||
	    pno__mul_overflow(n ? n : 1, sizeof(float), &bytes))
		return NULL;
	return pno_malloc(bytes);
}

enum pno_status pno_model_predict_init(struct pno_model *m, int max_samples)
{
	if (!m || !m->method[0])
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict workspace: no loaded model");
	if (max_samples < 1 || max_samples > PNO_PREDICT_MAX_SAMPLES)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict workspace: %d samples per input "
				   "must be in [1, %d]", max_samples,
				   PNO_PREDICT_MAX_SAMPLES);
	const enum kind k = kind_of(m);
	const size_t N = (size_t)m->out_ch * m->X * m->Y, Sm = max_samples;
	const size_t R = (size_t)heads_of(m, k) * N;
	/* the samples are held whole, as pno__prediction_alloc refuses */
	double gb = (double)Sm * (double)N * sizeof(float) / 1e9;
	if (gb > 4.0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict workspace: %d samples of %zu values "
				   "need %.1f GB (at most 4)", max_samples, N,
				   gb);
	struct pno__model_ws *w = pno_calloc(1, sizeof *w);
	if (!w)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "predict workspace: out of memory");
	w->Smax = max_samples;
	w->samp = alloc_floats(Sm, N, 1);
	w->ale = alloc_floats(N, 1, 1);
	w->epi = alloc_floats(N, 1, 1);
	w->col = alloc_floats(Sm, 1, 1);
	switch (k) {
	case KIND_FNO_DROPOUT:
		w->raw = alloc_floats(Sm, R, 1);
		break;
	case KIND_ENSEMBLE:
		w->raw = alloc_floats((size_t)m->ens.K, (size_t)m->Bmax, R);
		break;
	case KIND_VFNO:
		w->raw = alloc_floats(2, Sm, N);
		break;
	default:
		w->raw = alloc_floats(1, 1, 1);
		break;
	}
	if (!w->samp || !w->ale || !w->epi || !w->col || !w->raw) {
		pno__model_ws_free(w);
		return pno__errorf(PNO_STATUS_NOMEM,
				   "predict workspace: out of memory for %d "
				   "samples of %zu values", max_samples, N);
	}
	pno__model_ws_free(m->ws);
	m->ws = w;
	return PNO_STATUS_OK;
}

/* Input b's outputs as a pno_prediction (views, nothing owned): the
 * caller's buffers, the workspace where the caller keeps none. var: 0 no
 * variances, 1 the caller's (or the workspace), 2 the workspace only (an
 * ensemble without a variance head computes zeros nobody asked for). */
static void view(struct pno_prediction *p, const struct pno__model_ws *w,
		 const struct pno_predict_out *o, int S, int C, int P,
		 const float *q, int nq, int var)
{
	memset(p, 0, sizeof *p);
	p->S = S, p->C = C, p->P = P, p->nq = nq;
	p->levels = (float *)q;	/* read only by the summaries */
	p->mean = o->mean;
	p->std = o->std;
	p->quantiles = nq ? o->quantiles : NULL;
	p->samples = o->samples ? o->samples : w->samp;
	p->aleatoric = var == 1 && o->aleatoric ? o->aleatoric
		       : var ? w->ale : NULL;
	p->epistemic = var == 1 && o->epistemic ? o->epistemic
		       : var ? w->epi : NULL;
}

/* An FNO's S samples from its outputs: row i at raw + i * rs (rs 0: one
 * deterministic forward serves all), (mu[, sigma]) of N each; then the
 * decomposition (heads 2) and the summaries. The arithmetic of
 * pno_fno_predict, operation for operation. */
static void fno_finish(struct pno_prediction *p, float *col, const float *raw,
		       size_t rs, int heads, uint64_t seed)
{
	const int S = p->S;
	const size_t N = (size_t)p->C * p->P;
	if (heads == 2) {
		pno_rng_normal(p->samples, (size_t)S * N, seed, STREAM_Z_FNO, 0);
		for (int i = 0; i < S; i++) {
			const float *mu = raw + (size_t)i * rs, *sg = mu + N;
			float *y = p->samples + (size_t)i * N;
			for (size_t k = 0; k < N; k++)
				y[k] = mu[k] + sg[k] * y[k];
		}
		for (size_t k = 0; k < N; k++) {
			double sm = 0, sm2 = 0, sv = 0;
			for (int i = 0; i < S; i++) {
				const float *mu = raw + (size_t)i * rs;
				sm += mu[k];
				sv += (double)mu[N + k] * mu[N + k];
			}
			double mbar = sm / S;
			for (int i = 0; i < S; i++) {
				double dv = raw[(size_t)i * rs + k] - mbar;
				sm2 += dv * dv;
			}
			p->aleatoric[k] = (float)(sv / S);
			p->epistemic[k] = (float)(S > 1 ? sm2 / (S - 1) : 0.0);
		}
	} else {
		for (int i = 0; i < S; i++)
			memcpy(p->samples + (size_t)i * N, raw + (size_t)i * rs,
			       N * sizeof(float));
	}
	pno__prediction_summarize(p, col);
}

/* Ensemble input: member k's outputs at raw + k * ks. As
 * pno_ensemble_predict. */
static void ens_finish(struct pno_prediction *p, float *col, const float *raw,
		       size_t ks, int K, int heads, uint64_t seed)
{
	const int S = p->S;
	const size_t N = (size_t)p->C * p->P;
	if (heads == 2)
		pno_rng_normal(p->samples, (size_t)S * N, seed, STREAM_Z_ENS, 0);
	for (int i = 0; i < S; i++) {
		const float *mu = raw + (size_t)(i % K) * ks;
		float *y = p->samples + (size_t)i * N;
		if (heads == 2) {
			const float *sg = mu + N;
			for (size_t j = 0; j < N; j++)
				y[j] = mu[j] + sg[j] * y[j];
		} else {
			memcpy(y, mu, N * sizeof(float));
		}
	}
	for (size_t j = 0; j < N; j++) {
		double sm = 0, sv = 0, sd = 0;
		for (int k = 0; k < K; k++) {
			const float *mu = raw + (size_t)k * ks;
			sm += mu[j];
			if (heads == 2)
				sv += (double)mu[N + j] * mu[N + j];
		}
		double mbar = sm / K;
		for (int k = 0; k < K; k++) {
			double dv = raw[(size_t)k * ks + j] - mbar;
			sd += dv * dv;
		}
		p->aleatoric[j] = (float)(sv / K);
		p->epistemic[j] = (float)(sd / K);
	}
	pno__prediction_summarize(p, col);
}

/* vfno input: as pno_vfno_predict_dist. */
static enum pno_status vfno_one(struct pno_vfno *v, struct pno_prediction *p,
				float *col, float *mu, float *var,
				const float *x, uint64_t seed)
{
	const int S = p->S;
	const size_t N = (size_t)p->C * p->P;
	uint64_t calls = v->calls;
	v->calls = pno_rng_u64(seed, STREAM_VFNO, 0) >> 8;
	enum pno_status st = pno_vfno_predict(v, x, 1, S, mu, var);
	v->calls = calls;
	pno_vfno_use_mean(v);
	if (st != PNO_STATUS_OK)
		return st;
	pno_rng_normal(p->samples, (size_t)S * N, seed, STREAM_Z_FNO, 0);
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
	return PNO_STATUS_OK;
}

/* Does a forward of several inputs give each the bits of its own forward?
 * The pointwise layers run one GEMM per batch element and the FFTW
 * spectral path one transform per line, so yes; the spectral GEMM path
 * hands BLAS one product over the whole batch, whose kernels round by
 * shape and offset (measured: ~1e-7 relative), and so does DeepONet's
 * branch net. */
static int packable(const struct pno_model *m, enum kind k)
{
	if (k == KIND_FNO)
		return pno_spectral_path_get(&m->fno.spec) ==
		       PNO_SPECTRAL_PATH_FFTW;
	if (k != KIND_ENSEMBLE)
		return 0;
	for (int e = 0; e < m->ens.K; e++)
		if (pno_spectral_path_get(&m->ens.m[e].spec) !=
		    PNO_SPECTRAL_PATH_FFTW)
			return 0;
	return 1;
}

int pno_model_predict_batch(const struct pno_model *m)
{
	if (!m || !m->method[0])
		return 1;
	enum kind k = kind_of(m);
	return packable(m, k) ? m->Bmax : 1;
}

enum pno_status pno_model_predict_into(struct pno_model *m, const float *x,
				       int B, int S, const uint64_t *seeds,
				       const float *q, int nq,
				       const struct pno_predict_out *out)
{
	enum pno_status st;
	if (!m || !out || !seeds || B < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict: no model, outputs or seeds, or "
				   "batch %d < 1", B);
	struct pno__model_ws *w = m->ws;
	if (!w)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict: no workspace (pno_model_predict_"
				   "init was not called)");
	if ((st = pno__predict_check(x, S, q, nq)) != PNO_STATUS_OK)
		return st;
	if (S > w->Smax)
		return pno__errorf(PNO_STATUS_INVALID,
				   "predict: %d samples exceed the workspace's "
				   "%d", S, w->Smax);
	for (int b = 0; b < B; b++)
		if (!out[b].mean || !out[b].std || (nq && !out[b].quantiles))
			return pno__errorf(PNO_STATUS_INVALID,
					   "predict: input %d has no %s buffer",
					   b, !out[b].mean ? "mean" :
					   !out[b].std ? "std" : "quantile");

	const enum kind k = kind_of(m);
	const int C = m->out_ch, P = m->X * m->Y, heads = heads_of(m, k);
	const int var = k != KIND_DEEPONET && m->has_variance;
	const size_t N = (size_t)C * P, R = (size_t)heads * N;
	const size_t nin = (size_t)m->in_ch * P;
	struct pno_prediction p;

	/* inputs share a forward only where it computes each batch element
	 * alone: else the answer would depend on its neighbours' count */
	const int pack = packable(m, k) ? m->Bmax : 1;
	switch (k) {
	case KIND_FNO:
	case KIND_DEEPONET:
		/* one deterministic forward per input: up to `pack` inputs
		 * per forward */
		for (int b0 = 0; b0 < B; b0 += pack) {
			int nb = PNO__MIN(pack, B - b0);
			const float *o;
			if (k == KIND_FNO) {
				int stoch = m->fno.stochastic;
				m->fno.stochastic = 0;
				o = pno_fno_forward(&m->fno, x + b0 * nin, nb);
				m->fno.stochastic = stoch;
			} else if (!(o = pno_deeponet_forward(
					     &m->don, x + b0 * nin, nb))) {
				return pno__errorf(PNO_STATUS_INTERNAL,
						   "predict: the DeepONet "
						   "forward failed");
			}
			for (int j = 0; j < nb; j++) {
				view(&p, w, &out[b0 + j], S, C, P, q, nq, var);
				fno_finish(&p, w->col, o + j * R, 0,
					   k == KIND_FNO ? heads : 1,
					   seeds[b0 + j]);
			}
		}
		break;
	case KIND_FNO_DROPOUT:
		/* masks are keyed by one seed and the sample index per
		 * forward: each input's samples in batches of Bmax */
		for (int b = 0; b < B; b++) {
			if ((st = pno_fno_sample(&m->fno, w->raw, x + b * nin, S,
						 seeds[b])) != PNO_STATUS_OK)
				return st;
			view(&p, w, &out[b], S, C, P, q, nq, var);
			fno_finish(&p, w->col, w->raw, R, heads, seeds[b]);
		}
		break;
	case KIND_ENSEMBLE: {
		const int K = m->ens.K;
		for (int b0 = 0; b0 < B; b0 += pack) {
			int nb = PNO__MIN(pack, B - b0);
			for (int e = 0; e < K; e++) {
				struct pno_fno *f = &m->ens.m[e];
				int stoch = f->stochastic;
				f->stochastic = 0;
				const float *o = pno_fno_forward(
					f, x + b0 * nin, nb);
				f->stochastic = stoch;
				memcpy(w->raw + (size_t)e * m->Bmax * R, o,
				       (size_t)nb * R * sizeof(float));
			}
			for (int j = 0; j < nb; j++) {
				view(&p, w, &out[b0 + j], S, C, P, q, nq,
				     m->has_variance ? 1 : 2);
				ens_finish(&p, w->col, w->raw + j * R,
					   (size_t)m->Bmax * R, K, heads,
					   seeds[b0 + j]);
			}
		}
		break;
	}
	case KIND_VFNO:
		for (int b = 0; b < B; b++) {
			view(&p, w, &out[b], S, C, P, q, nq, 1);
			if ((st = vfno_one(&m->vfno, &p, w->col, w->raw,
					   w->raw + (size_t)w->Smax * N,
					   x + b * nin, seeds[b])))
				return st;
		}
		break;
	}
	if (m->use_conformal && m->conformal.present)
		for (int b = 0; b < B; b++) {
			/* samples nobody keeps are stretched in the
			 * workspace: harmless */
			view(&p, w, &out[b], S, C, P, q, nq, var);
			pno_conformal_apply(&m->conformal, &p);
		}
	return PNO_STATUS_OK;
}
