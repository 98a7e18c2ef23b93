/* Split-conformal recalibration of the predictive spread (see
 * pno/conformal.h; the argument for each guarantee is in
 * docs/eval/conformal.md). */
#include "pno/conformal.h"
#include "pno/predict.h"

#include "internal.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum pno_status pno_conformal_scores(const float *y, const float *mean,
				     const float *lo, const float *hi,
				     size_t P, float *s)
{
	if (!y || !mean || !lo || !hi || !s)
		return pno__errorf(PNO_STATUS_INVALID,
				   "conformal scores: NULL array");
	for (size_t i = 0; i < P; i++) {
		float yi = y[i], m = mean[i], l = lo[i], h = hi[i];
		if (!isfinite(yi) || !isfinite(m) || !isfinite(l) ||
		    !isfinite(h))
			return pno__errorf(PNO_STATUS_NONFINITE,
					   "conformal scores: point %zu: "
					   "non-finite %s", i,
					   !isfinite(yi) ? "truth" :
					   !isfinite(m) ? "mean" : "quantile");
		double d = (double)yi - m, w;
		if (d > 0)
			w = (double)h - m;
		else if (d < 0)
			w = (double)m - l, d = -d;
		else {
			s[i] = 0;
			continue;
		}
		s[i] = w > 0 ? (float)(d / w) : INFINITY;
	}
	return PNO_STATUS_OK;
}

/* k-th smallest (1-based) of a[0..n), sorting a (no NaN: checked; +inf
 * scores sort last). */
static float kth_smallest(float *a, size_t n, size_t k)
{
	pno__sort_floats(a, n);
	return a[k - 1];
}

/* Fractions of points with score <= c, overall and per function. */
static void coverage(const float *s, int n, size_t P, double c, double alpha,
		     double *points, double *functions)
{
	size_t need = (size_t)ceil((1 - alpha) * (double)P - 1e-9);
	int64_t in = 0;
	int ok = 0;
	for (int j = 0; j < n; j++) {
		size_t k = 0;
		for (size_t i = 0; i < P; i++)
			k += s[(size_t)j * P + i] <= c;
		in += (int64_t)k;
		ok += k >= need;
	}
	*points = (double)in / ((double)n * (double)P);
	*functions = (double)ok / n;
}

enum pno_status pno_conformal_fit(struct pno_conformal *c, float *scores,
				  int n, size_t P,
				  enum pno_conformal_mode mode, double alpha,
				  double delta)
{
	memset(c, 0, sizeof *c);
	if (!scores || n < 1 || P < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "conformal fit: %s", !scores ? "no scores" :
				   "needs at least one function and one point");
	if (!(alpha > 0 && alpha < 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "conformal fit: alpha %g is not in (0, 1)",
				   alpha);
	if (mode != PNO_CONFORMAL_MARGINAL &&
	    mode != PNO_CONFORMAL_FUNCTIONWISE)
		return pno__errorf(PNO_STATUS_INVALID,
				   "conformal fit: unknown mode %d", (int)mode);
	if (mode == PNO_CONFORMAL_FUNCTIONWISE && !(delta > 0 && delta < 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "conformal fit: delta %g is not in (0, 1)",
				   delta);
	size_t total;
	if (pno__mul_overflow((size_t)n, P, &total))
		return pno__errorf(PNO_STATUS_INVALID,
				   "conformal fit: %d x %zu scores overflow",
				   n, P);
	for (size_t i = 0; i < total; i++)
		if (isnan(scores[i]) || scores[i] < 0)
			return pno__errorf(PNO_STATUS_INVALID,
					   "conformal fit: score %zu is %g "
					   "(scores are >= 0 or +inf)", i,
					   (double)scores[i]);

	double before_pts, before_fn;
	coverage(scores, n, P, 1.0, alpha, &before_pts, &before_fn);

	double scale;
	if (mode == PNO_CONFORMAL_MARGINAL) {
		/* k = ceil((n + 1)(1 - alpha) P) of the n P pooled scores */
		double kd = ceil((n + 1.0) * (1 - alpha) * (double)P - 1e-9);
		if (kd > (double)total) {
			int need = (int)ceil((1 - alpha) / alpha - 1e-9);
			return pno__errorf(PNO_STATUS_RANGE,
					   "conformal fit: %d calibration "
					   "functions are too few for alpha "
					   "%g (at least %d needed)", n, alpha,
					   need);
		}
		float *tmp = pno_malloc(total * sizeof *tmp);
		if (!tmp)
			return pno__errorf(PNO_STATUS_NOMEM,
					   "conformal fit: out of memory");
		memcpy(tmp, scores, total * sizeof *tmp);
		scale = kth_smallest(tmp, total, (size_t)kd);
		pno_free(tmp);
	} else {
		/* r_j = the ceil((1 - alpha) P)-th smallest point score of
		 * function j; scale = the ceil((n + 1)(1 - delta))-th r_j */
		double kd = ceil((n + 1.0) * (1 - delta) - 1e-9);
		if (kd > n) {
			int need = (int)ceil((1 - delta) / delta - 1e-9);
			return pno__errorf(PNO_STATUS_RANGE,
					   "conformal fit: %d calibration "
					   "functions are too few for delta "
					   "%g (at least %d needed)", n, delta,
					   need);
		}
		size_t kp = (size_t)ceil((1 - alpha) * (double)P - 1e-9);
		if (kp < 1)
			kp = 1;
		float *r = pno_malloc((size_t)n * sizeof *r);
		float *row = pno_malloc(P * sizeof *row);
		if (!r || !row) {
			pno_free(r);
			pno_free(row);
			return pno__errorf(PNO_STATUS_NOMEM,
					   "conformal fit: out of memory");
		}
		for (int j = 0; j < n; j++) {
			memcpy(row, scores + (size_t)j * P, P * sizeof *row);
			r[j] = kth_smallest(row, P, kp);
		}
		scale = kth_smallest(r, (size_t)n, (size_t)kd);
		pno_free(r);
		pno_free(row);
	}
	if (!isfinite(scale))
		return pno__errorf(PNO_STATUS_RANGE,
				   "conformal fit: no spread to scale: too "
				   "often the truth lies on a side of the mean "
				   "where the interval has no width (a "
				   "deterministic model, or a mean outside the "
				   "interval of skewed samples: try a smaller "
				   "alpha or more samples)");
	if (scale <= 0) {
		/* every needed score is 0: the truth sits on the mean. Keep
		 * the smallest positive stretch that changes nothing. */
		scale = 0x1p-20;
	}
	c->present = 1;
	c->mode = mode;
	c->alpha = alpha;
	c->delta = mode == PNO_CONFORMAL_FUNCTIONWISE ? delta : 0;
	c->scale = scale;
	c->n_cal = n;
	c->n_points = (int64_t)total;
	c->cov_before = before_pts;
	c->fw_before = before_fn;
	coverage(scores, n, P, scale, alpha, &c->cov_after, &c->fw_after);
	return PNO_STATUS_OK;
}

void pno_conformal_apply(const struct pno_conformal *c,
			 struct pno_prediction *p)
{
	/* scale 1 returns early: m + 1 (x - m) in float is not always x
	 * (it rounds when |x| << |m|), and no calibration must change no bit */
	if (!c || !c->present || !p || !p->mean || c->scale == 1)
		return;
	const float f = (float)c->scale, f2 = f * f;
	const size_t N = (size_t)p->C * p->P;
	for (int i = 0; i < p->S; i++) {
		float *x = p->samples + (size_t)i * N;
		for (size_t k = 0; k < N; k++)
			x[k] = p->mean[k] + f * (x[k] - p->mean[k]);
	}
	for (int j = 0; j < p->nq; j++) {
		float *x = p->quantiles + (size_t)j * N;
		for (size_t k = 0; k < N; k++)
			x[k] = p->mean[k] + f * (x[k] - p->mean[k]);
	}
	for (size_t k = 0; k < N; k++)
		p->std[k] *= f;
	if (p->gauss_sigma)	/* mu + c (x - mu): N(mu, (c sigma)^2) */
		for (size_t k = 0; k < N; k++)
			p->gauss_sigma[k] *= f;
	if (p->aleatoric)
		for (size_t k = 0; k < N; k++)
			p->aleatoric[k] *= f2, p->epistemic[k] *= f2;
}

char *pno_conformal_to_json(const struct pno_conformal *c)
{
	pno__json_init();
	json_t *o = json_pack("{s:s,s:f,s:f,s:f,s:i,s:I,s:f,s:f,s:f,s:f}",
			      "mode", c->mode == PNO_CONFORMAL_FUNCTIONWISE ?
			      "function-wise" : "marginal",
			      "alpha", c->alpha, "delta", c->delta,
			      "scale", c->scale, "n_cal", c->n_cal,
			      "n_points", (json_int_t)c->n_points,
			      "cov_before", c->cov_before,
			      "cov_after", c->cov_after,
			      "fw_before", c->fw_before,
			      "fw_after", c->fw_after);
	char *text = o ? pno__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					 JSON_REAL_PRECISION(17)) : NULL;
	json_decref(o);
	if (pno__json_oom()) {
		pno_free(text);
		return NULL;
	}
	return text;
}

static enum pno_status get_real(const json_t *o, const char *key, double lo,
				double hi, int open_lo, double *out)
{
	const json_t *v = json_object_get(o, key);
	double x = json_is_number(v) ? json_number_value(v) : NAN;
	if (!isfinite(x) || x < lo || x > hi || (open_lo && x == lo))
		return pno__errorf(PNO_STATUS_FORMAT,
				   "\"%s\" must be a number in %s%g, %g]",
				   key, open_lo ? "(" : "[", lo, hi);
	*out = x;
	return PNO_STATUS_OK;
}

enum pno_status pno_conformal_from_json(struct pno_conformal *c,
					const char *text)
{
	enum pno_status s;
	char msg[200];
	struct pno_conformal r = {0};
	memset(c, 0, sizeof *c);
	json_t *o = pno__json_loads(text ? text : "", &s, msg, sizeof msg);
	if (!o)
		return pno__errorf(s, "conformal: %s", msg);
	const char *mode = json_string_value(json_object_get(o, "mode"));
	const json_t *nc = json_object_get(o, "n_cal");
	const json_t *np = json_object_get(o, "n_points");
	s = PNO_STATUS_OK;
	if (!mode || (strcmp(mode, "marginal") &&
		      strcmp(mode, "function-wise")))
		s = pno__errorf(PNO_STATUS_FORMAT, "conformal: \"mode\" must "
				"be \"marginal\" or \"function-wise\"");
	else if (!json_is_integer(nc) || json_integer_value(nc) < 1 ||
		 json_integer_value(nc) > INT32_MAX)
		s = pno__errorf(PNO_STATUS_FORMAT, "conformal: \"n_cal\" must "
				"be an integer in [1, %d]", INT32_MAX);
	else if (!json_is_integer(np) || json_integer_value(np) < 1)
		s = pno__errorf(PNO_STATUS_FORMAT, "conformal: \"n_points\" "
				"must be an integer >= 1");
	if (s == PNO_STATUS_OK) {
		r.mode = strcmp(mode, "marginal") ? PNO_CONFORMAL_FUNCTIONWISE
						  : PNO_CONFORMAL_MARGINAL;
		r.n_cal = (int)json_integer_value(nc);
		r.n_points = json_integer_value(np);
	}
	if (s == PNO_STATUS_OK)
		s = get_real(o, "alpha", 0, 1, 1, &r.alpha);
	if (s == PNO_STATUS_OK && r.alpha == 1)
		s = pno__errorf(PNO_STATUS_FORMAT, "conformal: \"alpha\" must "
				"be below 1");
	if (s == PNO_STATUS_OK)
		s = get_real(o, "delta", 0, 1, r.mode == PNO_CONFORMAL_FUNCTIONWISE,
			     &r.delta);
	/* the function-wise delta is in (0, 1), as the fit requires */
	if (s == PNO_STATUS_OK && r.mode == PNO_CONFORMAL_FUNCTIONWISE &&
	    r.delta == 1)
		s = pno__errorf(PNO_STATUS_FORMAT, "conformal: \"delta\" must "
				"be below 1");
	/* any scale a fit can give: a float's range (it was 1e30, so a file
	 * stretched by more could be written but not loaded) */
	if (s == PNO_STATUS_OK)
		s = get_real(o, "scale", 0, FLT_MAX, 1, &r.scale);
	const char *fr[] = {"cov_before", "cov_after", "fw_before", "fw_after"};
	double *fv[] = {&r.cov_before, &r.cov_after, &r.fw_before, &r.fw_after};
	for (int i = 0; i < 4 && s == PNO_STATUS_OK; i++)
		s = get_real(o, fr[i], 0, 1, 0, fv[i]);
	json_decref(o);
	if (s != PNO_STATUS_OK)
		return s;
	r.present = 1;
	*c = r;
	return PNO_STATUS_OK;
}
