/* Deep ensembles of FNOs: members, training, one file, the mixture. */
#include "pno/ensemble.h"
#include "internal.h"
#include "model_io.h"
#include "predict_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Philox streams of the ensemble's derived seeds (see the header). */
#define STREAM_INIT 0xE5000000ull
#define STREAM_TRAIN 0xE5000001ull
#define STREAM_Z 0xE2000000ull

static const char *default_method(const struct pno_fno_arch *a)
{
	if (a->heads == 2)
		return "pno-r";
	return pno_fno_has_dropout(a) ? "mc-dropout" : "fno";
}

void pno_ensemble_free(struct pno_ensemble *e)
{
	if (!e)
		return;
	for (int k = 0; e->m && k < e->K; k++)
		pno_fno_free(&e->m[k]);
	pno_free(e->m);
	memset(e, 0, sizeof *e);
}

static enum pno_status check_K(int K)
{
	if (K < PNO_ENSEMBLE_MIN_K || K > PNO_ENSEMBLE_MAX_K)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble: %d members, must be in [%d, %d]",
				   K, PNO_ENSEMBLE_MIN_K, PNO_ENSEMBLE_MAX_K);
	return PNO_STATUS_OK;
}

/* K members with the given per-member seeds (NULL: all 0, for load). */
static enum pno_status members_init(struct pno_ensemble *e, int K,
				    const struct pno_fno_arch *a, int X, int Y,
				    int Bmax, uint64_t seed, int derive)
{
	enum pno_status st;
	memset(e, 0, sizeof *e);
	if ((st = check_K(K)) != PNO_STATUS_OK)
		return st;
	e->m = pno_calloc((size_t)K, sizeof *e->m);
	if (!e->m)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "ensemble: out of memory for %d members", K);
	e->K = K;
	for (int k = 0; k < K; k++) {
		uint64_t s = derive ? pno_rng_u64(seed, STREAM_INIT, (uint64_t)k)
				    : 0;
		if ((st = pno_fno_init(&e->m[k], a, X, Y, Bmax, s))) {
			pno__error_prefix(st, "ensemble member %d", k);
			pno_ensemble_free(e);
			return st;
		}
		snprintf(e->m[k].method, sizeof e->m[k].method, "%s",
			 default_method(a));
	}
	return PNO_STATUS_OK;
}

enum pno_status pno_ensemble_init(struct pno_ensemble *e, int K,
				  const struct pno_fno_arch *a, int X, int Y,
				  int Bmax, uint64_t seed)
{
	if (!e || !a) {
		if (e)
			memset(e, 0, sizeof *e);
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble init: NULL argument");
	}
	return members_init(e, K, a, X, Y, Bmax, seed, 1);
}

static enum pno_status check_ensemble(const struct pno_ensemble *e,
				      const char *what)
{
	if (!e || !e->m || e->K < PNO_ENSEMBLE_MIN_K ||
	    e->K > PNO_ENSEMBLE_MAX_K)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: not an initialized ensemble", what);
	return PNO_STATUS_OK;
}

/* ---- evaluation ---- */

enum pno_status pno_ensemble_eval_rel_l2(struct pno_ensemble *e,
					 const struct pno_dataset *d,
					 int first, int count, double *out)
{
	enum pno_status st;
	if ((st = check_ensemble(e, "ensemble eval")))
		return st;
	if (!d || !out)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble eval: NULL data or result");
	struct pno_fno *m0 = &e->m[0];
	const int C = m0->arch.out_ch, P = m0->P, Bmax = m0->Bmax;
	const int heads = m0->arch.heads == 2 ? 2 : 1;
	const size_t nin = (size_t)d->Cin * P, nout = (size_t)C * P;
	if (first < 0 || count < 0 || first > d->N - count)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble eval: samples [%d, %d) outside the "
				   "dataset", first, first + count);
	if (d->Cin != m0->arch.in_ch || d->Cout != C || d->X * d->Y != P)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "ensemble eval: data (%d -> %d channels, %d "
				   "points) does not fit the members (%d -> %d, "
				   "%d)", d->Cin, d->Cout, d->X * d->Y,
				   m0->arch.in_ch, C, P);
	*out = NAN;
	if (count == 0)
		return PNO_STATUS_OK;
	double *acc = pno_malloc((size_t)Bmax * nout * sizeof(double));
	float *mean = pno_malloc((size_t)Bmax * nout * sizeof(float));
	if (!acc || !mean) {
		pno_free(acc);
		pno_free(mean);
		return pno__errorf(PNO_STATUS_NOMEM,
				   "ensemble eval: out of memory");
	}
	double sum = 0;
	for (int b0 = 0; b0 < count; b0 += Bmax) {
		int B = PNO__MIN(Bmax, count - b0);
		const float *x = d->in + (size_t)(first + b0) * nin;
		memset(acc, 0, (size_t)B * nout * sizeof(double));
		for (int k = 0; k < e->K; k++) {
			struct pno_fno *m = &e->m[k];
			int stochastic = m->stochastic;
			m->stochastic = 0;
			const float *o = pno_fno_forward(m, x, B);
			m->stochastic = stochastic;
			for (int b = 0; b < B; b++) {
				const float *mu = o + (size_t)b * heads * nout;
				double *a = acc + (size_t)b * nout;
				for (size_t j = 0; j < nout; j++)
					a[j] += mu[j];
			}
		}
		for (size_t j = 0; j < (size_t)B * nout; j++)
			mean[j] = (float)(acc[j] / e->K);
		sum += B * pno_loss_rel_l2(NULL, mean,
					   d->out + (size_t)(first + b0) * nout,
					   B, nout);
	}
	*out = sum / count;
	pno_free(acc);
	pno_free(mean);
	return PNO_STATUS_OK;
}

/* ---- training ---- */

enum pno_status pno_ensemble_train(struct pno_ensemble *e,
				   const struct pno_dataset *d,
				   const struct pno_train_opts *o,
				   struct pno_ensemble_result *r)
{
	enum pno_status st;
	struct pno_ensemble_result local;
	if (!r)
		r = &local;
	memset(r, 0, sizeof *r);
	if ((st = check_ensemble(e, "ensemble training")))
		return st;
	if (!d || !o)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble training: NULL data or options");
	/* member k checkpoints to "<path>.member<k>"; resume needs member
	 * 0's file (so a wrong path is not taken for a fresh start) and
	 * starts afresh the members not reached before the interruption */
	char ck[PNO_ENSEMBLE_MAX_K][4096], rs[PNO_ENSEMBLE_MAX_K][4096];
	for (int k = 0; k < e->K; k++) {
		if (o->checkpoint &&
		    snprintf(ck[k], sizeof ck[k], "%s.member%d", o->checkpoint,
			     k) >= (int)sizeof ck[k])
			return pno__errorf(PNO_STATUS_INVALID,
					   "ensemble training: checkpoint path "
					   "too long");
		if (o->resume &&
		    snprintf(rs[k], sizeof rs[k], "%s.member%d", o->resume,
			     k) >= (int)sizeof rs[k])
			return pno__errorf(PNO_STATUS_INVALID,
					   "ensemble training: resume path too "
					   "long");
	}
	if (o->resume && access(rs[0], F_OK) != 0)
		return pno__errorf(PNO_STATUS_NOTFOUND,
				   "ensemble training: no checkpoint %s (an "
				   "ensemble's checkpoint --resume %s is one "
				   "file per member, <path>.member<k>)", rs[0],
				   o->resume);
	r->K = e->K;
	double sum = 0;
	for (int k = 0; k < e->K; k++) {
		struct pno_train_opts ok = *o;
		ok.checkpoint = o->checkpoint ? ck[k] : NULL;
		ok.resume = o->resume && access(rs[k], F_OK) == 0 ? rs[k] : NULL;
		ok.seed = pno_rng_u64(o->seed, STREAM_TRAIN, (uint64_t)k);
		PNO_LOG(PNO_LOG_LEVEL_INFO, "ensemble: training member %d of %d",
			k + 1, e->K);
		if ((st = pno_train_fno(&e->m[k], d, &ok, &r->member[k]))) {
			pno__error_prefix(st, "ensemble member %d", k);
			return st;
		}
		r->seconds += r->member[k].seconds;
		sum += r->member[k].test_rel_l2;
	}
	r->mean_member_test_rel_l2 = sum / e->K;
	r->test_rel_l2 = NAN;
	if (o->n_test > 0 &&
	    (st = pno_ensemble_eval_rel_l2(e, d, d->N - o->n_test, o->n_test,
					   &r->test_rel_l2)))
		return st;
	PNO_LOG(PNO_LOG_LEVEL_INFO,
		"ensemble: test rel L2 of the mean %.4e, members' mean %.4e",
		r->test_rel_l2, r->mean_member_test_rel_l2);
	return PNO_STATUS_OK;
}

/* ---- files ---- */

/* [{"in_mean": [...], "in_std": [...], "out_mean": [...], "out_std":
 * [...]}, ...] for the K members. */
static char *norms_json(const struct pno_ensemble *e)
{
	int ci = e->m[0].arch.in_ch, co = e->m[0].arch.out_ch;
	json_t *arr = json_array();
	for (int k = 0; arr && k < e->K; k++) {
		const float *nv[4] = PNO__NORM_ARRAYS(&e->m[k].norm);
		if (json_array_append_new(arr, pno__norm_json(nv, ci, co))) {
			json_decref(arr);
			arr = NULL;
		}
	}
	char *s = pno__json_text(arr);
	json_decref(arr);
	return s;
}

enum pno_status pno_ensemble_save(const struct pno_ensemble *e,
				  const char *path, const char *extra_json)
{
	enum pno_status st;
	if ((st = check_ensemble(e, "ensemble save")))
		return st;
	if (!path)
		return pno__errorf(PNO_STATUS_INVALID, "ensemble save: no path");
	const struct pno_fno *m0 = &e->m[0];
	const int K = e->K, n = pno_fno_tensor_count(m0);
	const size_t total = (size_t)K * n;
	char members[16];
	snprintf(members, sizeof members, "%d", K);
	const char *const own[] = {"members", members, "member_method",
				   m0->method[0] ? m0->method : "fno", NULL};
	pno__json_init();
	char (*names)[80] = pno_calloc(total, sizeof *names);
	struct pno_tensor_view *views = pno_calloc(total, sizeof *views);
	struct pno__model_meta mm = {"ensemble", own,
				     pno_fno_arch_json(&m0->arch),
				     norms_json(e), m0->X, m0->Y};
	for (int k = 0; names && views && k < K; k++)
		for (int i = 0; i < n; i++) {
			size_t j = (size_t)k * n + i, off;
			char base[48];
			pno_fno_tensor_info(&e->m[k], i, base, sizeof base,
					    &views[j].ndim, views[j].shape, &off,
					    NULL);
			snprintf(names[j], sizeof names[j], "member.%d.%s", k,
				 base);
			views[j].name = names[j];
			views[j].data = e->m[k].params + off;
		}
	st = pno__model_write(path, names ? views : NULL, (int)total, &mm,
			      extra_json);
	pno_free(names);
	pno_free(views);
	return st;
}

/* The K normalizations from the metadata's JSON array. */
static enum pno_status norms_parse(struct pno_fno_norm *nm, int K,
				   const char *text, int ci, int co,
				   const char *path)
{
	enum pno_status st;
	char msg[256];
	json_t *arr = pno__json_loads(text, &st, msg, sizeof msg);
	if (!arr)
		return pno__errorf(st, "%s: normalization JSON: %s", path, msg);
	if (!json_is_array(arr) || (int)json_array_size(arr) != K) {
		json_decref(arr);
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: \"normalization\" must be an array of "
				   "%d member objects", path, K);
	}
	for (int k = 0; k < K && st == PNO_STATUS_OK; k++) {
		struct pno_fno_norm *n = &nm[k];
		float *nv[4] = PNO__NORM_ARRAYS(n);
		memset(n, 0, sizeof *n);
		for (int c = 0; c < PNO_FNO_MAX_CH; c++)
			n->in_std[c] = n->out_std[c] = 1.0f;
		st = pno__norm_from_json(nv, json_array_get(arr, (size_t)k),
					 ci, co, path, k);
	}
	json_decref(arr);
	return st;
}

/* Copy member k's tensors from the file, checking each. */
static enum pno_status member_tensors(struct pno_fno *m, int k,
				      const struct pno_safetensors *sf,
				      const char *path)
{
	enum pno_status s = PNO_STATUS_OK;
	int n = pno_fno_tensor_count(m);
	char who[32];
	snprintf(who, sizeof who, "member %d: ", k);
	for (int i = 0; i < n && s == PNO_STATUS_OK; i++) {
		char base[48], name[80];
		int ndim;
		int64_t shape[8];
		size_t off, count;
		pno_fno_tensor_info(m, i, base, sizeof base, &ndim, shape, &off,
				    &count);
		snprintf(name, sizeof name, "member.%d.%s", k, base);
		s = pno__model_take(m->params + off, sf, path, who, name, ndim,
				    shape, count);
	}
	return s;
}

enum pno_status pno_ensemble_load(struct pno_ensemble *e, const char *path,
				  int X, int Y, int Bmax)
{
	struct pno_safetensors sf = {0};
	struct pno_fno_arch arch;
	struct pno_fno_norm *norms = NULL;
	json_t *md = NULL;
	enum pno_status s;
	const char *v;
	char method[16];
	int K;

	if (!e || !path) {
		if (e)
			memset(e, 0, sizeof *e);
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble load: NULL argument");
	}
	memset(e, 0, sizeof *e);
	if ((s = pno__model_open(&sf, &md, path, "ensemble")))
		return s;
	v = pno__meta_string(md, "members");
	char *end = NULL;
	long Kl = v ? strtol(v, &end, 10) : 0;
	if (!v || end == v || *end || Kl < PNO_ENSEMBLE_MIN_K ||
	    Kl > PNO_ENSEMBLE_MAX_K) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: metadata \"members\" is \"%s\", not a count "
				"in [%d, %d]", path, v ? v : "(missing)",
				PNO_ENSEMBLE_MIN_K, PNO_ENSEMBLE_MAX_K);
		goto out;
	}
	K = (int)Kl;
	if ((s = pno__meta_require(&v, md, "architecture", path)))
		goto out;
	if ((s = pno_fno_arch_parse(&arch, v)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	v = pno__meta_string(md, "member_method");
	if (v && !pno_fno_method_known(v)) {
		s = pno__errorf(PNO_STATUS_UNSUPPORTED,
				"%s: member method \"%s\" is not one of the FNO "
				"family (%s)", path, v, PNO_FNO_METHODS);
		goto out;
	}
	snprintf(method, sizeof method, "%s", v ? v : default_method(&arch));
	norms = pno_calloc((size_t)K, sizeof *norms);
	if (!norms) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		goto out;
	}
	if ((s = pno__meta_require(&v, md, "normalization", path)) ||
	    (s = norms_parse(norms, K, v, arch.in_ch, arch.out_ch, path)) ||
	    (X <= 0 && (s = pno__meta_grid(&X, &Y, md, path))))
		goto out;
	if ((s = members_init(e, K, &arch, X, Y, Bmax, 0, 0))) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	for (int k = 0; k < K; k++) {
		e->m[k].norm = norms[k];
		snprintf(e->m[k].method, sizeof e->m[k].method, "%s", method);
		if ((s = member_tensors(&e->m[k], k, &sf, path)))
			goto out;
	}
	/* every member's tensors are there: anything more is a stray */
	int n = pno_fno_tensor_count(&e->m[0]);
	if ((size_t)sf.n != (size_t)K * n) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: %d tensors, but %d members of this "
				"architecture have %d", path, sf.n, K, K * n);
		goto out;
	}
	s = PNO_STATUS_OK;
out:
	if (s != PNO_STATUS_OK)
		pno_ensemble_free(e);
	pno_free(norms);
	json_decref(md);
	pno_safetensors_free(&sf);
	return s;
}

/* ---- prediction ---- */

enum pno_status pno_ensemble_predict(struct pno_ensemble *e, const float *x,
				     int S, uint64_t seed, const float *q,
				     int nq, struct pno_prediction *p)
{
	enum pno_status st;
	if (!p)
		return pno__errorf(PNO_STATUS_INVALID,
				   "ensemble predict: NULL prediction");
	memset(p, 0, sizeof *p);
	if ((st = check_ensemble(e, "ensemble predict")) ||
	    (st = pno__predict_check(x, S, q, nq)))
		return st;
	const int K = e->K, C = e->m[0].arch.out_ch, P = e->m[0].P;
	const int heads = e->m[0].arch.heads == 2 ? 2 : 1;
	const size_t N = (size_t)C * P, R = (size_t)heads * N;
	float *raw = NULL, *col = NULL;

	if ((st = pno__prediction_alloc(p, S, C, P, q, nq, 1)))
		return st;
	raw = pno_malloc((size_t)K * R * sizeof(float));
	col = pno_malloc((size_t)S * sizeof(float));
	if (!raw || !col) {
		pno_free(raw);
		pno_free(col);
		pno_prediction_free(p);
		return pno__errorf(PNO_STATUS_NOMEM, "predict: out of memory");
	}
	/* one deterministic forward per member: (mu_k[, sigma_k]) */
	for (int k = 0; k < K; k++) {
		struct pno_fno *m = &e->m[k];
		int stochastic = m->stochastic;
		m->stochastic = 0;
		const float *out = pno_fno_forward(m, x, 1);
		m->stochastic = stochastic;
		memcpy(raw + (size_t)k * R, out, R * sizeof(float));
	}
	/* sample i from member i mod K */
	if (heads == 2)
		pno_rng_normal(p->samples, (size_t)S * N, seed, STREAM_Z, 0);
	for (int i = 0; i < S; i++) {
		const float *mu = raw + (size_t)(i % K) * R;
		float *y = p->samples + (size_t)i * N;
		if (heads == 2) {
			const float *sg = mu + N;
			for (size_t j = 0; j < N; j++)
				y[j] = mu[j] + sg[j] * y[j];
		} else {
			memcpy(y, mu, N * sizeof(float));
		}
	}
	/* the mixture's exact decomposition */
	for (size_t j = 0; j < N; j++) {
		double sm = 0, sv = 0, sd = 0;
		for (int k = 0; k < K; k++) {
			const float *mu = raw + (size_t)k * R;
			sm += mu[j];
			if (heads == 2)
				sv += (double)mu[N + j] * mu[N + j];
		}
		double mbar = sm / K;
		for (int k = 0; k < K; k++) {
			double dv = raw[(size_t)k * R + j] - mbar;
			sd += dv * dv;
		}
		p->aleatoric[j] = (float)(sv / K);
		p->epistemic[j] = (float)(sd / K);
	}
	pno__prediction_summarize(p, col);
	pno_free(raw);
	pno_free(col);
	return PNO_STATUS_OK;
}
