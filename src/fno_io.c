/* FNO models as safetensors files with JSON metadata. */
#include "pno/fno.h"
#include "pno/io.h"
#include "internal.h"
#include "fno_internal.h"
#include "model_io.h"

#include <jansson.h>
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
	char *s = pno__json_text(o);
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

/* The FNO family's writer: m's tensors then xt; the metadata says method
 * (NULL: m's own) and the format's own keys (see model_io.h). */
enum pno_status pno__fno_write(const struct pno_fno *m, const char *path,
			       const char *method, const char *const *own,
			       const char *extra_json,
			       const struct pno_tensor_view *xt, int n_xt)
{
	int n = pno_fno_tensor_count(m);
	char (*names)[48] = pno_calloc((size_t)n, sizeof *names);
	struct pno_tensor_view *views = pno_calloc((size_t)(n + n_xt),
						   sizeof *views);
	const float *nv[4] = PNO__NORM_ARRAYS(&m->norm);
	struct pno__model_meta mm = {
		method ? method : m->method[0] ? m->method : "fno", own,
		pno_fno_arch_json(&m->arch),
		pno__norm_text(nv, m->arch.in_ch, m->arch.out_ch), m->X, m->Y};
	for (int i = 0; names && views && i < n; i++) {
		size_t off;
		pno_fno_tensor_info(m, i, names[i], sizeof names[i],
				    &views[i].ndim, views[i].shape, &off, NULL);
		views[i].name = names[i];
		views[i].data = m->params + off;
	}
	for (int i = 0; views && i < n_xt; i++)
		views[n + i] = xt[i];
	enum pno_status st = pno__model_write(path, names ? views : NULL,
					      n + n_xt, &mm, extra_json);
	pno_free(names);
	pno_free(views);
	return st;
}

enum pno_status pno__fno_save_ext(const struct pno_fno *m, const char *path,
				  const char *extra_json,
				  const struct pno_tensor_view *xt, int n_xt)
{
	pno__json_init();
	return pno__fno_write(m, path, NULL, NULL, extra_json, xt, n_xt);
}

int pno_fno_method_known(const char *name)
{
	return pno__name_listed(name, PNO_FNO_METHODS);
}

enum pno_status pno_fno_save(const struct pno_fno *m, const char *path,
			     const char *extra_json)
{
	return pno__fno_save_ext(m, path, extra_json, NULL, 0);
}

enum pno_status pno_fno_load(struct pno_fno *m, const char *path, int X,
			     int Y, int Bmax)
{
	struct pno_safetensors st = {0};
	struct pno_fno_arch arch;
	struct pno_fno_norm norm;
	float *nv[4] = PNO__NORM_ARRAYS(&norm);
	json_t *md = NULL;
	enum pno_status s;
	const char *v;
	char method[sizeof m->method];

	memset(m, 0, sizeof *m);
	if ((s = pno__model_open(&st, &md, path, PNO_FNO_METHODS)))
		return s;
	snprintf(method, sizeof method, "%s", pno__meta_string(md, "method"));
	if ((s = pno__meta_require(&v, md, "architecture", path)))
		goto out;
	if ((s = pno_fno_arch_parse(&arch, v)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	memset(&norm, 0, sizeof norm);
	for (int c = 0; c < PNO_FNO_MAX_CH; c++)
		norm.in_std[c] = norm.out_std[c] = 1.0f;
	if ((s = pno__meta_require(&v, md, "normalization", path)) ||
	    (s = pno__norm_parse(nv, v, arch.in_ch, arch.out_ch, path)) ||
	    (X <= 0 && (s = pno__meta_grid(&X, &Y, md, path))))
		goto out;
	if ((s = pno_fno_init(m, &arch, X, Y, Bmax, 0)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	m->norm = norm;
	memcpy(m->method, method, sizeof m->method);
	int n = pno_fno_tensor_count(m);
	for (int i = 0; i < n && s == PNO_STATUS_OK; i++) {
		char name[48];
		int ndim;
		int64_t shape[8];
		size_t off, count;
		pno_fno_tensor_info(m, i, name, sizeof name, &ndim, shape, &off,
				    &count);
		s = pno__model_take(m->params + off, &st, path, "", name, ndim,
				    shape, count);
	}
out:
	if (s != PNO_STATUS_OK)
		pno_fno_free(m);
	json_decref(md);
	pno_safetensors_free(&st);
	return s;
}
