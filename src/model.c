/* Any model file behind one interface (see pno/model.h). */
#include "pno/model.h"

#include "internal.h"
#include "model_io.h"
#include "predict_internal.h"

#include <jansson.h>
#include <string.h>

#define MODEL_METHODS \
	"fno, pno-d, pno-r, mc-dropout, vfno, deeponet, ensemble"

static enum pno_status load_method(struct pno_model *m, const char *path,
				   int X, int Y, int Bmax)
{
	enum pno_status s;
	const struct pno_fno *n = NULL;
	if (!strcmp(m->method, "vfno")) {
		if ((s = pno_vfno_load(&m->vfno, path, X, Y, Bmax)))
			return s;
		n = &m->vfno.net;
		m->out_ch = m->vfno.C;
		m->stochastic = m->has_variance = 1;
	} else if (!strcmp(m->method, "deeponet")) {
		if ((s = pno_deeponet_load(&m->don, path, Bmax)))
			return s;
		m->dims = m->don.arch.dims, m->in_ch = m->don.arch.in_ch;
		m->out_ch = m->don.arch.out_ch, m->X = m->don.X;
		m->Y = m->don.Y;
		return PNO_STATUS_OK;
	} else if (!strcmp(m->method, "ensemble")) {
		if ((s = pno_ensemble_load(&m->ens, path, X, Y, Bmax)))
			return s;
		n = &m->ens.m[0];
		m->out_ch = n->arch.out_ch;
		m->stochastic = 1;
		m->has_variance = n->arch.heads == 2;
	} else {
		if ((s = pno_fno_load(&m->fno, path, X, Y, Bmax)))
			return s;
		n = &m->fno;
		m->out_ch = n->arch.out_ch;
		m->has_variance = n->arch.heads == 2;
		m->stochastic = m->has_variance ||
				pno_fno_has_dropout(&n->arch);
	}
	m->dims = n->arch.dims, m->in_ch = n->arch.in_ch;
	m->X = n->X, m->Y = n->Y;
	return PNO_STATUS_OK;
}

enum pno_status pno_model_load(struct pno_model *m, const char *path, int X,
			       int Y, int Bmax)
{
	struct pno_safetensors sf = {0};
	json_t *md = NULL;
	enum pno_status s;
	memset(m, 0, sizeof *m);
	if (!path || Bmax < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "model load: %s", !path ? "no path" :
				   "batch bound must be >= 1");
	s = pno__model_open(&sf, &md, path, MODEL_METHODS);
	pno_safetensors_free(&sf);
	if (s != PNO_STATUS_OK)
		return s;
	snprintf(m->method, sizeof m->method, "%s",
		 pno__meta_string(md, "method"));
	const char *conf = pno__meta_string(md, "conformal");
	if (conf && (s = pno_conformal_from_json(&m->conformal, conf))) {
		/* not pno__errorf(..., pno_last_error()): that formats the
		 * message buffer into itself */
		s = pno__error_prefix(s, "%s: metadata \"conformal\"", path);
		json_decref(md);
		memset(m, 0, sizeof *m);
		return s;
	}
	m->meta = md;
	m->Bmax = Bmax;
	m->use_conformal = 1;
	if ((s = load_method(m, path, X, Y, Bmax)) != PNO_STATUS_OK) {
		pno_model_free(m);
		return s;
	}
	return PNO_STATUS_OK;
}

void pno_model_free(struct pno_model *m)
{
	if (!m)
		return;
	pno_fno_free(&m->fno);
	pno_vfno_free(&m->vfno);
	pno_deeponet_free(&m->don);
	pno_ensemble_free(&m->ens);
	pno__model_ws_free(m->ws);
	json_decref(m->meta);
	memset(m, 0, sizeof *m);
}

enum pno_status pno_model_check_shape(const struct pno_model *m, int dims,
				      int X, int Y, int cin, int cout,
				      const char *what)
{
	if (m->dims == dims && m->in_ch == cin && m->out_ch == cout &&
	    m->X == X && m->Y == Y)
		return PNO_STATUS_OK;
	return pno__errorf(PNO_STATUS_SHAPE,
			   "the model (%s) is %dD %d x %d with %d -> %d "
			   "channels; %s is %dD %d x %d with %d -> %d",
			   m->method, m->dims, m->X, m->Y, m->in_ch, m->out_ch,
			   what ? what : "the data", dims, X, Y, cin, cout);
}

enum pno_status pno_model_predict(struct pno_model *m, const float *x, int S,
				  uint64_t seed, const float *q, int nq,
				  struct pno_prediction *p)
{
	enum pno_status s;
	if (!strcmp(m->method, "vfno"))
		s = pno_vfno_predict_dist(&m->vfno, x, S, seed, q, nq, p);
	else if (!strcmp(m->method, "deeponet"))
		s = pno_deeponet_predict_dist(&m->don, x, S, q, nq, p);
	else if (!strcmp(m->method, "ensemble"))
		s = pno_ensemble_predict(&m->ens, x, S, seed, q, nq, p);
	else
		s = pno_fno_predict(&m->fno, x, S, seed, q, nq, p);
	if (s == PNO_STATUS_OK && m->use_conformal)
		pno_conformal_apply(&m->conformal, p);
	return s;
}

const char *pno_model_meta(const struct pno_model *m, const char *key)
{
	return m->meta ? pno__meta_string(m->meta, key) : NULL;
}

/* Keys a model file's writer owns: never replaced through set_meta. */
static const char *const OWN_KEYS[] = {
	"format", "pno_version", "method", "architecture", "normalization",
	"grid", "members", "member_method", "vfno", "deeponet", NULL};

/* Set key to value (NULL: remove it) and remove the key `drop` (NULL:
 * none) in one atomic rewrite. */
static enum pno_status set_meta(const char *path, const char *key,
				const char *value, const char *drop)
{
	struct pno_safetensors sf = {0};
	struct pno_tensor_view *v = NULL;
	json_t *md = NULL;
	char *meta = NULL;
	enum pno_status s;
	if (!path || !key || !*key)
		return pno__errorf(PNO_STATUS_INVALID,
				   "model metadata: no path or key");
	for (int i = 0; OWN_KEYS[i]; i++)
		if (!strcmp(key, OWN_KEYS[i]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: metadata \"%s\" is the model's "
					   "own and cannot be replaced", path,
					   key);
	pno__json_init();
	s = pno__model_open(&sf, &md, path, MODEL_METHODS);
	if (s != PNO_STATUS_OK)
		return s;
	if (value) {
		json_t *str = json_string(value);
		if (!str || json_object_set_new(md, key, str)) {
			s = pno__errorf(str ? PNO_STATUS_NOMEM
					    : PNO_STATUS_INVALID,
					"%s: metadata \"%s\": %s", path, key,
					str ? "out of memory"
					    : "value is not UTF-8");
			goto out;
		}
	} else {
		json_object_del(md, key);
	}
	if (drop)
		json_object_del(md, drop);
	meta = pno__json_dumps(md, JSON_COMPACT | JSON_PRESERVE_ORDER);
	v = pno_calloc((size_t)(sf.n ? sf.n : 1), sizeof *v);
	if (!meta || !v || pno__json_oom()) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		goto out;
	}
	for (int i = 0; i < sf.n; i++) {
		v[i].name = sf.t[i].name;
		v[i].ndim = sf.t[i].ndim;
		memcpy(v[i].shape, sf.t[i].shape, sizeof v[i].shape);
		v[i].data = sf.t[i].data;
	}
	s = pno_safetensors_write(path, v, sf.n, meta);
out:
	pno_free(meta);
	pno_free(v);
	json_decref(md);
	pno_safetensors_free(&sf);
	return s;
}

enum pno_status pno_model_file_set_meta(const char *path, const char *key,
					const char *value)
{
	return set_meta(path, key, value, NULL);
}

enum pno_status pno_model_file_set_conformal(const char *path,
					     const struct pno_conformal *c)
{
	char *text = NULL;
	if (c && c->present && !(text = pno_conformal_to_json(c)))
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory",
				   path ? path : "");
	/* the recorded evaluation ("evaluation", pno eval --record) judged
	 * the distribution before this change: the quality gates must not
	 * take it for the one now served */
	enum pno_status s = set_meta(path, "conformal", text, "evaluation");
	pno_free(text);
	return s;
}
