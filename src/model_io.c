/* Model files: metadata, normalization and tensor checks shared by the
 * model formats (see model_io.h). */
#include "model_io.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

char *pno__json_text(const json_t *o)
{
	return o ? pno__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					      JSON_REAL_PRECISION(9))
		 : NULL;
}

/* ---- saving ---- */

static int set_string(json_t *md, const char *key, const char *value)
{
	return json_object_set_new(md, key, json_string(value)) == 0;
}

static json_t *meta_new(const struct pno__model_meta *mm)
{
	char grid[64];
	json_t *md = json_object();
	int ok = md && set_string(md, "format", "pno") &&
		 set_string(md, "pno_version", PNO_VERSION_STRING) &&
		 set_string(md, "method", mm->method);
	for (const char *const *kv = mm->own; ok && kv && kv[0]; kv += 2)
		ok = set_string(md, kv[0], kv[1]);
	snprintf(grid, sizeof grid, "[%d, %d]", mm->X, mm->Y);
	ok = ok && set_string(md, "architecture", mm->arch) &&
	     set_string(md, "normalization", mm->norm) &&
	     set_string(md, "grid", grid);
	if (!ok) {
		json_decref(md);
		return NULL;
	}
	return md;
}

/* The caller's keys after the model's own; a key the model wrote is
 * refused rather than overwritten. */
static enum pno_status merge_extra(json_t *md, const char *extra_json,
				   const char *path)
{
	enum pno_status st;
	char msg[256];
	const char *k;
	json_t *v, *extra = pno__json_loads(extra_json, &st, msg, sizeof msg);
	if (st == PNO_STATUS_NOMEM)
		return st;
	if (!json_is_object(extra)) {
		json_decref(extra);
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: extra metadata is not a JSON object",
				   path);
	}
	st = PNO_STATUS_OK;
	json_object_foreach(extra, k, v)
	{
		if (!json_is_string(v))
			st = pno__errorf(PNO_STATUS_INVALID,
					 "%s: extra metadata \"%s\" is not a "
					 "string", path, k);
		else if (json_object_get(md, k))
			st = pno__errorf(PNO_STATUS_INVALID,
					 "%s: extra metadata \"%s\" would "
					 "replace the model's own", path, k);
		else if (json_object_set(md, k, v) != 0)
			st = PNO_STATUS_NOMEM;
		if (st != PNO_STATUS_OK)
			break;
	}
	json_decref(extra);
	return st;
}

enum pno_status pno__model_write(const char *path,
				 const struct pno_tensor_view *views, int n,
				 const struct pno__model_meta *mm,
				 const char *extra_json)
{
	enum pno_status st = PNO_STATUS_NOMEM;
	char *meta = NULL;
	json_t *md = views && mm->arch && mm->norm ? meta_new(mm) : NULL;
	if (md && extra_json)
		st = merge_extra(md, extra_json, path);
	if (md && (!extra_json || st == PNO_STATUS_OK))
		meta = pno__json_text(md);
	json_decref(md);
	pno_free(mm->arch);
	pno_free(mm->norm);
	if (meta && !pno__json_oom())
		st = pno_safetensors_write(path, views, n, meta);
	else if (st != PNO_STATUS_INVALID)
		st = pno__errorf(PNO_STATUS_NOMEM,
				 "%s: out of memory saving model", path);
	pno_free(meta);
	return st;
}

/* ---- loading ---- */

int pno__name_listed(const char *name, const char *list)
{
	size_t n = name ? strlen(name) : 0;
	for (const char *p = list; n && p && *p;) {
		const char *end = strstr(p, ", ");
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !memcmp(p, name, n))
			return 1;
		p = end ? end + 2 : NULL;
	}
	return 0;
}

const char *pno__meta_string(const json_t *md, const char *key)
{
	json_t *v = json_object_get(md, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

enum pno_status pno__meta_require(const char **out, const json_t *md,
				  const char *key, const char *path)
{
	*out = pno__meta_string(md, key);
	if (!*out)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: metadata has no \"%s\"", path, key);
	return PNO_STATUS_OK;
}

enum pno_status pno__meta_grid(int *X, int *Y, const json_t *md,
			       const char *path)
{
	const char *v = pno__meta_string(md, "grid");
	if (!v || sscanf(v, "[%d, %d]", X, Y) != 2)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: metadata has no valid \"grid\"", path);
	return PNO_STATUS_OK;
}

enum pno_status pno__model_open(struct pno_safetensors *sf, json_t **md,
				const char *path, const char *methods)
{
	enum pno_status s;
	char msg[256];
	const char *v;
	*md = NULL;
	pno__json_setup();
	if ((s = pno_safetensors_read(sf, path)) != PNO_STATUS_OK)
		return s;
	*md = pno__json_loads(sf->metadata_json, &s, msg, sizeof msg);
	if (!*md) {
		s = pno__errorf(s, "%s: metadata: %s", path, msg);
	} else if (!(v = pno__meta_string(*md, "format")) || strcmp(v, "pno")) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: not a pno model (metadata \"format\" is "
				"not \"pno\")", path);
	} else if (v = pno__meta_string(*md, "method"),
		   !pno__name_listed(v, methods)) {
		s = pno__errorf(PNO_STATUS_UNSUPPORTED,
				"%s: model method \"%s\" is not %s%s%s: load it "
				"with its own method", path,
				v ? v : "(missing)",
				strchr(methods, ',') ? "one of (" : "\"",
				methods, strchr(methods, ',') ? ")" : "\"");
	}
	if (s != PNO_STATUS_OK) {
		json_decref(*md);
		*md = NULL;
		pno_safetensors_free(sf);
	}
	return s;
}

static void shape_text(char *buf, size_t size, int ndim, const int64_t *sh)
{
	buf[0] = 0;
	for (int d = 0; d < ndim; d++)
		snprintf(buf + strlen(buf), size - strlen(buf), "%s%lld",
			 d ? "," : "", (long long)sh[d]);
}

enum pno_status pno__model_take(float *dst, const struct pno_safetensors *sf,
				const char *path, const char *who,
				const char *name, int ndim,
				const int64_t *shape, size_t count)
{
	const struct pno_st_entry *e = pno_safetensors_find(sf, name);
	if (!e)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: %stensor \"%s\" missing", path, who,
				   name);
	int same = e->ndim == ndim && e->count == count;
	for (int d = 0; same && d < ndim; d++)
		same = e->shape[d] == shape[d];
	if (!same) {
		char want[96], got[96];
		shape_text(want, sizeof want, ndim, shape);
		shape_text(got, sizeof got, e->ndim, e->shape);
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: %stensor \"%s\" has shape (%s), the "
				   "architecture needs (%s)", path, who, name,
				   got, want);
	}
	for (size_t j = 0; j < count; j++)
		if (!isfinite(e->data[j]))
			return pno__errorf(PNO_STATUS_NONFINITE,
					   "%s: %stensor \"%s\" element %zu is "
					   "not finite", path, who, name, j);
	memcpy(dst, e->data, count * sizeof(float));
	return PNO_STATUS_OK;
}

/* ---- normalization ---- */

static const char *const norm_keys[4] = {"in_mean", "in_std", "out_mean",
					 "out_std"};

json_t *pno__norm_json(const float *const *v, int ci, int co)
{
	json_t *o = json_object();
	for (int k = 0; o && k < 4; k++) {
		int n = k < 2 ? ci : co;
		json_t *arr = json_array();
		for (int i = 0; arr && i < n; i++)
			if (json_array_append_new(arr, json_real(v[k][i])) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		if (!arr || json_object_set_new(o, norm_keys[k], arr) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

char *pno__norm_text(const float *const *v, int ci, int co)
{
	json_t *o = pno__norm_json(v, ci, co);
	char *s = pno__json_text(o);
	json_decref(o);
	return s;
}

enum pno_status pno__norm_from_json(float *const *v, const json_t *o,
				    int ci, int co, const char *path,
				    int member)
{
	char who[32] = "";
	if (member >= 0)
		snprintf(who, sizeof who, "member %d ", member);
	for (int k = 0; k < 4; k++) {
		int n = k < 2 ? ci : co;
		json_t *arr = json_object_get(o, norm_keys[k]);
		if (!json_is_array(arr) || (int)json_array_size(arr) != n)
			return pno__errorf(PNO_STATUS_FORMAT,
					   "%s: %snormalization \"%s\" must be "
					   "an array of %d numbers", path, who,
					   norm_keys[k], n);
		for (int i = 0; i < n; i++) {
			json_t *x = json_array_get(arr, (size_t)i);
			double d = json_is_number(x) ? json_number_value(x) : NAN;
			/* the stds divide: they must be > 0 */
			if (!isfinite(d) || fabs(d) > 1e30 || (k % 2 && !(d > 0)))
				return pno__errorf(PNO_STATUS_FORMAT,
						   "%s: %snormalization %s[%d] "
						   "is not a valid number", path,
						   who, norm_keys[k], i);
			v[k][i] = (float)d;
		}
	}
	return PNO_STATUS_OK;
}

enum pno_status pno__norm_parse(float *const *v, const char *text, int ci,
				int co, const char *path)
{
	enum pno_status st;
	char msg[256];
	json_t *o = pno__json_loads(text, &st, msg, sizeof msg);
	if (!o)
		return pno__errorf(st, "%s: normalization JSON: %s", path, msg);
	st = pno__norm_from_json(v, o, ci, co, path, -1);
	json_decref(o);
	return st;
}
