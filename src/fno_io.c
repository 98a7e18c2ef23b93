/* FNO models as safetensors files with JSON metadata. */
#include "pno/fno.h"
#include "pno/io.h"
#include "internal.h"
#include "fno_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

char *pno_fno_arch_json(const struct pno_fno_arch *a)
{
	pno__json_setup();
	json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
			      "s:f, s:f, s:f, s:f}",
			      "dims", a->dims, "in_channels", a->in_ch,
			      "out_channels", a->out_ch, "width", a->width,
			      "modes1", a->modes1, "modes2",
			      a->dims == 2 ? a->modes2 : 0, "layers", a->layers,
			      "proj_hidden", a->proj_hidden, "heads", a->heads,
			      "p_lift", (double)a->p_lift, "p_hidden",
			      (double)a->p_hidden, "p_proj", (double)a->p_proj,
			      "p_fourier", (double)a->p_fourier);
	if (!o)
		return NULL;
	/* 9 significant digits bring a float back to the same bits */
	char *s = pno__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					     JSON_REAL_PRECISION(9));
	json_decref(o);
	return s;
}

static int get_int(json_t *o, const char *key, int *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return 0;
	json_int_t x = json_integer_value(v);
	if (x < -1000000000 || x > 1000000000)
		return 0;
	*out = (int)x;
	return 1;
}

enum pno_status pno_fno_arch_parse(struct pno_fno_arch *a, const char *text)
{
	enum pno_status st;
	char msg[256];
	json_t *o = pno__json_loads(text, &st, msg, sizeof msg);
	memset(a, 0, sizeof *a);
	if (!o)
		return pno__errorf(st, "architecture JSON: %s", msg);
	static const char *keys[] = {"dims", "in_channels", "out_channels",
				     "width", "modes1", "modes2", "layers",
				     "proj_hidden"};
	int *fields[] = {&a->dims, &a->in_ch, &a->out_ch, &a->width,
			 &a->modes1, &a->modes2, &a->layers, &a->proj_hidden};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!get_int(o, keys[i], fields[i])) {
			json_decref(o);
			return pno__errorf(PNO_STATUS_FORMAT,
					   "architecture: missing or non-integer "
					   "\"%s\"", keys[i]);
		}
	/* the stochastic and probabilistic fields came later: absent is 0 */
	json_t *h = json_object_get(o, "heads");
	if (h && !get_int(o, "heads", &a->heads)) {
		json_decref(o);
		return pno__errorf(PNO_STATUS_FORMAT,
				   "architecture: non-integer \"heads\"");
	}
	static const char *pkeys[] = {"p_lift", "p_hidden", "p_proj",
				      "p_fourier"};
	float *pf[] = {&a->p_lift, &a->p_hidden, &a->p_proj, &a->p_fourier};
	for (size_t i = 0; i < sizeof pkeys / sizeof pkeys[0]; i++) {
		json_t *v = json_object_get(o, pkeys[i]);
		if (!v)
			continue;
		if (!json_is_number(v)) {
			json_decref(o);
			return pno__errorf(PNO_STATUS_FORMAT,
					   "architecture: \"%s\" is not a "
					   "number", pkeys[i]);
		}
		*pf[i] = (float)json_number_value(v);
	}
	json_decref(o);
	if (a->dims == 1)
		a->modes2 = 1;
	return pno_fno_arch_check(a);
}

static json_t *float_array(const float *v, int n)
{
	json_t *arr = json_array();
	for (int i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_real(v[i])) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static char *norm_json(const struct pno_fno *m)
{
	int ci = m->arch.in_ch, co = m->arch.out_ch;
	json_t *a[4] = {float_array(m->norm.in_mean, ci),
			float_array(m->norm.in_std, ci),
			float_array(m->norm.out_mean, co),
			float_array(m->norm.out_std, co)};
	json_t *o = NULL;
	char *s = NULL;
	if (a[0] && a[1] && a[2] && a[3])
		o = json_pack("{s:O, s:O, s:O, s:O}", "in_mean", a[0], "in_std",
			      a[1], "out_mean", a[2], "out_std", a[3]);
	if (o)
		s = pno__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					  JSON_REAL_PRECISION(9));
	for (int i = 0; i < 4; i++)
		json_decref(a[i]);
	json_decref(o);
	return s;
}

static enum pno_status parse_floats(json_t *o, const char *key, float *out,
				    int n, int positive)
{
	json_t *arr = json_object_get(o, key);
	if (!json_is_array(arr) || (int)json_array_size(arr) != n)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "normalization: \"%s\" must be an array of "
				   "%d numbers", key, n);
	for (int i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, (size_t)i);
		if (!json_is_number(v))
			return pno__errorf(PNO_STATUS_FORMAT,
					   "normalization: %s[%d] is not a "
					   "number", key, i);
		double x = json_number_value(v);
		if (!(x == x) || x > 1e30 || x < -1e30 || (positive && !(x > 0)))
			return pno__errorf(PNO_STATUS_FORMAT,
					   "normalization: %s[%d] = %g invalid",
					   key, i, x);
		out[i] = (float)x;
	}
	return PNO_STATUS_OK;
}

static enum pno_status norm_parse(struct pno_fno_norm *nm, const char *text,
				  int ci, int co)
{
	enum pno_status st;
	char msg[256];
	json_t *o = pno__json_loads(text, &st, msg, sizeof msg);
	if (!o)
		return pno__errorf(st, "normalization JSON: %s", msg);
	if ((st = parse_floats(o, "in_mean", nm->in_mean, ci, 0)) ||
	    (st = parse_floats(o, "in_std", nm->in_std, ci, 1)) ||
	    (st = parse_floats(o, "out_mean", nm->out_mean, co, 0)) ||
	    (st = parse_floats(o, "out_std", nm->out_std, co, 1))) {
		json_decref(o);
		return st;
	}
	json_decref(o);
	return PNO_STATUS_OK;
}

enum pno_status pno__fno_save_ext(const struct pno_fno *m, const char *path,
				  const char *extra_json,
				  const struct pno_tensor_view *xt, int n_xt)
{
	enum pno_status st = PNO_STATUS_NOMEM;
	int n = pno_fno_tensor_count(m);
	char (*names)[48] = NULL;
	struct pno_tensor_view *views = NULL;
	char *arch = NULL, *norm = NULL, *meta = NULL;
	json_t *md = NULL, *extra = NULL;
	char grid[64];

	pno__json_init();
	names = pno_calloc((size_t)n, sizeof *names);
	views = pno_calloc((size_t)(n + n_xt), sizeof *views);
	arch = pno_fno_arch_json(&m->arch);
	norm = norm_json(m);
	if (!names || !views || !arch || !norm)
		goto fail;
	for (int i = 0; i < n; i++) {
		size_t off;
		pno_fno_tensor_info(m, i, names[i], sizeof names[i],
				    &views[i].ndim, views[i].shape, &off, NULL);
		views[i].name = names[i];
		views[i].data = m->params + off;
	}
	snprintf(grid, sizeof grid, "[%d, %d]", m->X, m->Y);
	md = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "format", "pno",
		       "pno_version", PNO_VERSION_STRING, "method",
		       m->method[0] ? m->method : "fno",
		       "architecture", arch, "normalization", norm, "grid",
		       grid);
	if (!md)
		goto fail;
	if (extra_json) {
		char msg[256];
		extra = pno__json_loads(extra_json, &st, msg, sizeof msg);
		if (st == PNO_STATUS_NOMEM)
			goto fail;
		if (!json_is_object(extra)) {
			st = pno__errorf(PNO_STATUS_INVALID,
					 "extra metadata is not a JSON object");
			goto out;
		}
		const char *k;
		json_t *v;
		json_object_foreach(extra, k, v)
		{
			if (!json_is_string(v)) {
				st = pno__errorf(PNO_STATUS_INVALID,
						 "extra metadata \"%s\" is not "
						 "a string", k);
				goto out;
			}
			if (json_object_set(md, k, v) != 0)
				goto fail;
		}
	}
	meta = pno__json_dumps(md, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!meta || pno__json_oom())
		goto fail;
	for (int i = 0; i < n_xt; i++)
		views[n + i] = xt[i];
	st = pno_safetensors_write(path, views, n + n_xt, meta);
	goto out;
fail:
	st = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory saving model",
			 path);
out:
	json_decref(md);
	json_decref(extra);
	pno_free(meta);
	pno_free(arch);
	pno_free(norm);
	pno_free(names);
	pno_free(views);
	return st;
}

int pno_fno_method_known(const char *name)
{
	static const char *const known[] = {"fno", "pno-d", "pno-r",
					    "mc-dropout"};
	for (size_t i = 0; name && i < sizeof known / sizeof known[0]; i++)
		if (!strcmp(name, known[i]))
			return 1;
	return 0;
}

enum pno_status pno_fno_save(const struct pno_fno *m, const char *path,
			     const char *extra_json)
{
	return pno__fno_save_ext(m, path, extra_json, NULL, 0);
}

static const char *meta_string(json_t *md, const char *key)
{
	json_t *v = json_object_get(md, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

enum pno_status pno_fno_load(struct pno_fno *m, const char *path, int X,
			     int Y, int Bmax)
{
	struct pno_safetensors st = {0};
	struct pno_fno_arch arch;
	struct pno_fno_norm norm;
	json_t *md = NULL;
	enum pno_status s;
	const char *v;

	memset(m, 0, sizeof *m);
	pno__json_setup();
	if ((s = pno_safetensors_read(&st, path)) != PNO_STATUS_OK)
		return s;
	char msg[256];
	md = pno__json_loads(st.metadata_json, &s, msg, sizeof msg);
	if (!md) {
		s = pno__errorf(s, "%s: metadata: %s", path, msg);
		goto out;
	}
	v = meta_string(md, "format");
	if (!v || strcmp(v, "pno") != 0) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: not a pno model (metadata \"format\" is "
				"not \"pno\")", path);
		goto out;
	}
	v = meta_string(md, "method");
	if (!v || !pno_fno_method_known(v)) {
		s = pno__errorf(PNO_STATUS_UNSUPPORTED,
				"%s: model method \"%s\" is not one of the FNO "
				"family (%s): load it with its own method", path,
				v ? v : "(missing)", PNO_FNO_METHODS);
		goto out;
	}
	char method[sizeof m->method];
	snprintf(method, sizeof method, "%s", v);
	v = meta_string(md, "architecture");
	if (!v) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: metadata has no \"architecture\"", path);
		goto out;
	}
	if ((s = pno_fno_arch_parse(&arch, v)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	memset(&norm, 0, sizeof norm);
	for (int c = 0; c < PNO_FNO_MAX_CH; c++)
		norm.in_std[c] = norm.out_std[c] = 1.0f;
	v = meta_string(md, "normalization");
	if (!v) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: metadata has no \"normalization\"", path);
		goto out;
	}
	if ((s = norm_parse(&norm, v, arch.in_ch, arch.out_ch))) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	if (X <= 0) {
		v = meta_string(md, "grid");
		if (!v || sscanf(v, "[%d, %d]", &X, &Y) != 2) {
			s = pno__errorf(PNO_STATUS_FORMAT,
					"%s: metadata has no valid \"grid\"",
					path);
			goto out;
		}
	}
	if ((s = pno_fno_init(m, &arch, X, Y, Bmax, 0)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	m->norm = norm;
	memcpy(m->method, method, sizeof m->method);
	int n = pno_fno_tensor_count(m);
	for (int i = 0; i < n; i++) {
		char name[48];
		int ndim;
		int64_t shape[8];
		size_t off, count;
		pno_fno_tensor_info(m, i, name, sizeof name, &ndim, shape, &off,
				    &count);
		const struct pno_st_entry *e = pno_safetensors_find(&st, name);
		if (!e) {
			s = pno__errorf(PNO_STATUS_FORMAT,
					"%s: tensor \"%s\" missing", path, name);
			goto out;
		}
		int same = e->ndim == ndim;
		for (int d = 0; same && d < ndim; d++)
			same = e->shape[d] == shape[d];
		if (!same) {
			char want[96] = "", got[96] = "";
			for (int d = 0; d < ndim; d++)
				snprintf(want + strlen(want),
					 sizeof want - strlen(want), "%s%lld",
					 d ? "," : "", (long long)shape[d]);
			for (int d = 0; d < e->ndim; d++)
				snprintf(got + strlen(got),
					 sizeof got - strlen(got), "%s%lld",
					 d ? "," : "", (long long)e->shape[d]);
			s = pno__errorf(PNO_STATUS_SHAPE,
					"%s: tensor \"%s\" has shape (%s), the "
					"architecture needs (%s)", path, name,
					got, want);
			goto out;
		}
		for (size_t j = 0; j < count; j++)
			if (!isfinite(e->data[j])) {
				s = pno__errorf(PNO_STATUS_NONFINITE,
						"%s: tensor \"%s\" element %zu "
						"is not finite", path, name, j);
				goto out;
			}
		memcpy(m->params + off, e->data, count * sizeof(float));
	}
	s = PNO_STATUS_OK;
out:
	if (s != PNO_STATUS_OK)
		pno_fno_free(m);
	json_decref(md);
	pno_safetensors_free(&st);
	return s;
}
