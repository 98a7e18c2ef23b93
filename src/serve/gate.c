/* Quality gates over a model's recorded evaluation (see gate.h). */
#include "gate.h"

#include "../internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static enum pno_status bad(const char *source, const char *key,
			   const char *want)
{
	return pno__errorf(PNO_STATUS_INVALID, "gates %s: \"%s\" must be %s",
			   source, key, want);
}

static int number(const json_t *v, double lo, double hi, double *out)
{
	if (!json_is_number(v))
		return 0;
	double x = json_number_value(v);
	if (!isfinite(x) || x < lo || x > hi)
		return 0;
	*out = x;
	return 1;
}

enum pno_status gate_config_parse(struct gate_config *g, const char *text,
				  const char *source)
{
	enum pno_status s;
	char msg[200];
	struct gate_config r = {0};
	memset(g, 0, sizeof *g);
	json_t *o = pno__json_loads(text ? text : "", &s, msg, sizeof msg);
	if (!o)
		return pno__errorf(s == PNO_STATUS_NOMEM ? s
							 : PNO_STATUS_INVALID,
				   "gates %s: %s", source, msg);
	const char *k;
	json_t *v;
	s = PNO_STATUS_OK;
	if (!json_is_object(o))
		s = pno__errorf(PNO_STATUS_INVALID,
				"gates %s: expected a JSON object", source);
	json_object_foreach(o, k, v)
	{
		if (s != PNO_STATUS_OK)
			break;
		if (!strcmp(k, "max_rel_l2")) {
			if (!number(v, 0, 1e30, &r.max_rel_l2))
				s = bad(source, k, "a number >= 0");
			r.has_rel_l2 = 1;
		} else if (!strcmp(k, "max_calib_error")) {
			if (!number(v, 0, 1, &r.max_calib_error))
				s = bad(source, k, "a number in [0, 1]");
			r.has_calib = 1;
		} else if (!strcmp(k, "max_crps_regression")) {
			if (!number(v, 0, 1e30, &r.max_crps_regression))
				s = bad(source, k, "a number >= 0 (a relative "
					"tolerance, 0.05 = 5%)");
			r.has_crps = 1;
		} else if (!strcmp(k, "coverage90")) {
			if (!json_is_array(v) || json_array_size(v) != 2 ||
			    !number(json_array_get(v, 0), 0, 1, &r.cov90_lo) ||
			    !number(json_array_get(v, 1), 0, 1, &r.cov90_hi) ||
			    r.cov90_lo > r.cov90_hi)
				s = bad(source, k, "[lo, hi] with 0 <= lo <= hi "
					"<= 1");
			r.has_cov90 = 1;
		} else {
			s = pno__errorf(PNO_STATUS_INVALID,
					"gates %s: unknown key \"%s\" (known: "
					"max_rel_l2, coverage90, max_calib_error, "
					"max_crps_regression)", source, k);
		}
	}
	json_decref(o);
	if (s == PNO_STATUS_OK)
		*g = r;
	return s;
}

enum pno_status gate_config_load(struct gate_config *g, const char *path)
{
	memset(g, 0, sizeof *g);
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return pno__errorf(PNO_STATUS_NOTFOUND, "gates %s: cannot open",
				   path);
	char buf[65536];
	size_t n = fread(buf, 1, sizeof buf - 1, fp);
	int err = ferror(fp), big = !feof(fp);
	fclose(fp);
	if (err)
		return pno__errorf(PNO_STATUS_IO, "gates %s: read error", path);
	if (big)
		return pno__errorf(PNO_STATUS_INVALID,
				   "gates %s: larger than 64 KB", path);
	buf[n] = '\0';
	return gate_config_parse(g, buf, path);
}

/* The served figure: the calibrated one when the model has a calibration. */
static int served(const json_t *ev, const char *key, double *out)
{
	const json_t *cal = json_object_get(ev, "calibrated");
	const json_t *v = json_is_object(cal) && json_object_get(cal, key)
				  ? json_object_get(cal, key)
				  : json_object_get(ev, key);
	return number(v, -1e300, 1e300, out);
}

static void verdict(struct gate_verdict *v, int *n, const char *name,
		    int pass, const char *detail)
{
	struct gate_verdict *x = &v[(*n)++];
	snprintf(x->name, sizeof x->name, "%s", name);
	x->pass = pass;
	snprintf(x->detail, sizeof x->detail, "%s", detail);
}

static void failure(struct gate_verdict *v, int *n, const char *name,
		    const char *why)
{
	verdict(v, n, name, 0, why);
}

static int same_string(const json_t *a, const json_t *b, const char *key)
{
	const char *x = json_string_value(json_object_get(a, key));
	const char *y = json_string_value(json_object_get(b, key));
	return x && y && !strcmp(x, y);
}

int gate_check(const struct gate_config *g, const char *eval_json,
	       const char *baseline_json, struct gate_verdict *v, int *n)
{
	*n = 0;
	int any = g->has_rel_l2 || g->has_cov90 || g->has_calib || g->has_crps;
	if (!any)
		return 1;
	json_t *ev = eval_json ? json_loads(eval_json, 0, NULL) : NULL;
	json_t *base = baseline_json ? json_loads(baseline_json, 0, NULL)
				     : NULL;
	const char *none = !eval_json ? "no evaluation recorded in the model "
					"(run pno eval --record)"
			   : !json_is_object(ev) ? "the recorded evaluation is "
						   "not a JSON object"
						 : NULL;
	double x;
	char d[256];
	int ok;
	if (g->has_rel_l2) {
		if (none || !served(ev, "rel_l2", &x))
			failure(v, n, "rel_l2", none ? none : "no rel_l2 recorded");
		else {
			ok = x <= g->max_rel_l2;
			snprintf(d, sizeof d, "relative L2 %.6g %s %.6g", x,
				 ok ? "<=" : ">", g->max_rel_l2);
			verdict(v, n, "rel_l2", ok, d);
		}
	}
	if (g->has_cov90) {
		if (none || !served(ev, "coverage90", &x))
			failure(v, n, "coverage90",
				none ? none : "no coverage90 recorded");
		else {
			ok = x >= g->cov90_lo && x <= g->cov90_hi;
			snprintf(d, sizeof d, "90%% coverage %.4f %s [%.4g, "
				 "%.4g]", x, ok ? "in" : "outside",
				 g->cov90_lo, g->cov90_hi);
			verdict(v, n, "coverage90", ok, d);
		}
	}
	if (g->has_calib) {
		if (none || !served(ev, "calib_error", &x))
			failure(v, n, "calib_error",
				none ? none : "no calib_error recorded");
		else {
			ok = x <= g->max_calib_error;
			snprintf(d, sizeof d, "calibration error %.4f %s %.4g",
				 x, ok ? "<=" : ">", g->max_calib_error);
			verdict(v, n, "calib_error", ok, d);
		}
	}
	if (g->has_crps) {
		double b;
		if (none || !served(ev, "crps", &x))
			failure(v, n, "crps_regression",
				none ? none : "no crps recorded");
		else if (!baseline_json)
			failure(v, n, "crps_regression",
				"no baseline (live) version to compare with");
		else if (!json_is_object(base) || !served(base, "crps", &b))
			failure(v, n, "crps_regression",
				"the baseline has no recorded evaluation");
		else if (!same_string(ev, base, "data_blake2b") ||
			 !same_string(ev, base, "split") ||
			 !json_equal(json_object_get(ev, "samples"),
				     json_object_get(base, "samples")))
			failure(v, n, "crps_regression",
				"the baseline was evaluated on other data, "
				"split or sample count: not comparable");
		else {
			double lim = (1 + g->max_crps_regression) * b;
			ok = x <= lim;
			snprintf(d, sizeof d, "CRPS %.6g %s %.6g (the "
				 "baseline's %.6g x %.4g)", x, ok ? "<=" : ">",
				 lim, b, 1 + g->max_crps_regression);
			verdict(v, n, "crps_regression", ok, d);
		}
	}
	json_decref(ev);
	json_decref(base);
	int pass = 1;
	for (int i = 0; i < *n; i++)
		pass &= v[i].pass;
	return pass;
}
