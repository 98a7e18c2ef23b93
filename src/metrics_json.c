/* pno_metrics_to_json: the result as the JSON object that
 * docs/eval/metrics.schema.json describes. Keys are the struct's field
 * names; non-finite numbers (undefined metrics) are null. */
#include "pno/metrics.h"

#include "internal.h"

#include <jansson.h>
#include <math.h>

/* A number, or null when it is not finite. */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int set(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0;
}

static int append(json_t *arr, json_t *v)
{
	return v && json_array_append_new(arr, v) == 0;
}

/* [{"<lkey>": levels[k], "<vkey>": v[k] (, "width": w[k])}, ...] */
static json_t *levelled(const double *levels, const char *lkey,
			const char *vkey, const double *v, const double *w,
			int n)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	for (int k = 0; k < n; k++) {
		json_t *o = json_object();
		int ok = o && set(o, lkey, json_real(levels[k])) &&
			 set(o, vkey, num(v[k])) &&
			 (!w || set(o, "width", num(w[k])));
		if (!ok || !append(arr, o)) {
			if (!ok)
				json_decref(o);
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *numbers(const double *v, int n)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	for (int k = 0; k < n; k++)
		if (!append(arr, num(v[k]))) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

char *pno_metrics_to_json(const struct pno_metrics *r)
{
	if (!r)
		return NULL;
	pno__json_init();
	json_t *o = json_object();
	char *text = NULL;
	int n_shells = r->n_shells < 0 ? 0 :
		       PNO__MIN(r->n_shells, PNO_METRICS_MAX_SHELLS);
	int ok = o &&
		 set(o, "n_functions", json_integer(r->n_functions)) &&
		 set(o, "n_points", json_integer(r->n_points)) &&
		 set(o, "S", json_integer(r->S)) &&
		 set(o, "rel_l2", num(r->rel_l2)) &&
		 set(o, "rel_l2_std", num(r->rel_l2_std)) &&
		 set(o, "rmse", num(r->rmse)) &&
		 set(o, "mae", num(r->mae)) &&
		 set(o, "max_err", num(r->max_err)) &&
		 set(o, "nll", num(r->nll)) &&
		 set(o, "nll_std_floor", num(r->nll_std_floor)) &&
		 set(o, "crps", num(r->crps)) &&
		 set(o, "has_crps_gauss", json_boolean(r->has_crps_gauss)) &&
		 set(o, "crps_gauss",
		     r->has_crps_gauss ? num(r->crps_gauss) : json_null()) &&
		 set(o, "energy", num(r->energy)) &&
		 set(o, "coverage",
		     levelled(PNO_METRICS_COVERAGE, "level", "observed",
			      r->coverage, r->width, PNO_METRICS_NCOV)) &&
		 set(o, "interval_score",
		     levelled(PNO_METRICS_IS_ALPHA, "alpha", "score",
			      r->interval_score, NULL, PNO_METRICS_NIS)) &&
		 set(o, "sharpness", num(r->sharpness)) &&
		 set(o, "calib_obs",
		     levelled(PNO_METRICS_CAL, "level", "observed",
			      r->calib_obs, NULL, PNO_METRICS_NCAL)) &&
		 set(o, "calib_error", num(r->calib_error)) &&
		 set(o, "spread_skill", num(r->spread_skill)) &&
		 set(o, "std_err_corr", num(r->std_err_corr)) &&
		 set(o, "n_shells", json_integer(n_shells)) &&
		 set(o, "err_spectrum", numbers(r->err_spectrum, n_shells)) &&
		 set(o, "std_spectrum", numbers(r->std_spectrum, n_shells)) &&
		 set(o, "has_decomposition",
		     json_boolean(r->has_decomposition)) &&
		 set(o, "aleatoric",
		     r->has_decomposition ? num(r->aleatoric) : json_null()) &&
		 set(o, "epistemic",
		     r->has_decomposition ? num(r->epistemic) : json_null()) &&
		 set(o, "total",
		     r->has_decomposition ? num(r->total) : json_null());
	if (ok)
		text = pno__json_dumps(o, JSON_PRESERVE_ORDER | JSON_INDENT(1));
	if (text && pno__json_oom()) {
		pno_free(text);
		text = NULL;
	}
	json_decref(o);
	return text;
}
