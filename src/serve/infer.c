/* Inference requests: parse and validate a v2 infer request (JSON tensors
 * or the binary tensor extension), run it on a model version, and write
 * the response (JSON, with binary outputs appended when asked). */
#include "serve_internal.h"
#include "../internal.h"

#include <jansson.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* samples kept in req->y: only when the answer carries them */
#define SK(r) ((r)->want & 1u << SV_OUT_SAMPLES ? (r)->S : 0)

static const char *out_names[] = {
#define SV_OUT_NAME(n, s) s,
	SV_OUTPUTS(SV_OUT_NAME)
#undef SV_OUT_NAME
};

static int fail(struct req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct req *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof r->err, fmt, ap);
	va_end(ap);
	r->status = status;
	return status;
}

int sv_buf_reserve(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	char *p = pno_malloc(n);
	if (!p)
		return -1;
	/* callers reserve before writing, so nothing to keep but the
	 * prefix already written */
	if (*buf && *cap)
		memcpy(p, *buf, *cap);
	pno_free(*buf);
	*buf = p;
	*cap = n;
	return 0;
}

static int reserve_floats(float **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return 0;
	float *q = pno_malloc(n * sizeof *q);
	if (!q)
		return -1;
	pno_free(*p);
	*p = q;
	*cap = n;
	return 0;
}

static void shape_text(char *out, size_t size, const int64_t *sh, int n)
{
	size_t k = (size_t)snprintf(out, size, "[");
	for (int i = 0; i < n && k < size; i++)
		k += (size_t)snprintf(out + k, size - k, "%s%" PRId64,
				      i ? ", " : "", sh[i]);
	if (k < size)
		snprintf(out + k, size - k, "]");
}

/* the model's input shape with -1 for the batch */
static int model_shape(const struct mversion *mv, int64_t sh[4])
{
	const struct pno_model *m = &mv->model;
	sh[0] = -1;
	sh[1] = m->in_ch;
	sh[2] = m->X;
	sh[3] = m->Y;
	return m->dims + 2;
}

/* flatten nested or flat JSON numbers into x (n values expected) */
static int flatten(struct req *r, const json_t *a, int depth, int maxdepth,
		   size_t *k, size_t n, int fp32)
{
	size_t i;
	const json_t *v;
	if (depth > maxdepth)
		return fail(r, 400, "inputs[0] \"input\": data is nested deeper "
			    "than its shape (%d axes)", maxdepth);
	json_array_foreach(a, i, v) {
		if (json_is_array(v)) {
			if (flatten(r, v, depth + 1, maxdepth, k, n, fp32))
				return r->status;
			continue;
		}
		if (!json_is_number(v))
			return fail(r, 400, "inputs[0] \"input\": data[%zu] is "
				    "not a number", *k);
		double d = json_number_value(v);
		if (*k >= n) {
			(*k)++;
			continue;	/* count them all for the message */
		}
		float f = (float)d;
		if (!isfinite(d) || !isfinite(f))
			return fail(r, 400, "inputs[0] \"input\": data[%zu] = %g "
				    "is not a finite %s value", *k, d,
				    fp32 ? "FP32" : "FP64");
		r->x[(*k)++] = f;
	}
	return 0;
}

static int level_index(const struct req *r, float q)
{
	for (int k = 0; k < r->nq; k++)
		if (r->q[k] == q)
			return k;
	return -1;
}

static int add_level(struct req *r, double v, const char *what)
{
	if (!(v > 0 && v < 1))
		return fail(r, 400, "%s: quantile level %g is out of range; "
			    "expected a number in (0, 1)", what, v);
	if (level_index(r, (float)v) >= 0)
		return 0;
	if (r->nq >= PNO_PREDICT_MAX_QUANTILES)
		return fail(r, 400, "%s: at most %d quantile levels", what,
			    PNO_PREDICT_MAX_QUANTILES);
	r->q[r->nq++] = (float)v;
	return 0;
}

static int get_bool(struct req *r, const json_t *o, const char *key,
		    const char *where, int *out)
{
	const json_t *v = json_object_get(o, key);
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fail(r, 400, "%s.%s: expected true or false", where,
			    key);
	*out = json_is_true(v);
	return 0;
}

static int parse_params(struct req *r, const json_t *p,
			const struct serve_config *cfg, int *ret_samples,
			int *bin_all, int *have_levels)
{
	const json_t *v;
	if (!p)
		return 0;
	if (!json_is_object(p))
		return fail(r, 400, "parameters: expected an object");
	if ((v = json_object_get(p, "num_samples"))) {
		json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
		if (!json_is_integer(v) || n < 1 || n > cfg->max_samples)
			return fail(r, 400, "parameters.num_samples: expected an "
				    "integer in [1, %d]", cfg->max_samples);
		r->S = (int)n;
	}
	if ((v = json_object_get(p, "timeout_ms"))) {
		/* bounds: sv_deadline_start */
		json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
		if (!json_is_integer(v) || n < 1)
			return fail(r, 400, "parameters.timeout_ms: expected an "
				    "integer >= 1 (milliseconds)");
		r->rs.param_timeout_ms = n > 1000000000 ? 1000000000 : (int)n;
	}
	if ((v = json_object_get(p, "seed"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return fail(r, 400, "parameters.seed: expected an "
				    "integer >= 0");
		r->seed = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(p, "quantiles"))) {
		size_t i;
		const json_t *e;
		if (!json_is_array(v))
			return fail(r, 400, "parameters.quantiles: expected a "
				    "list of levels in (0, 1)");
		r->nq = 0;
		*have_levels = 1;
		json_array_foreach(v, i, e) {
			if (!json_is_number(e))
				return fail(r, 400, "parameters.quantiles[%zu]: "
					    "expected a number in (0, 1)", i);
			if (add_level(r, json_number_value(e),
				      "parameters.quantiles"))
				return r->status;
		}
	}
	if (get_bool(r, p, "return_samples", "parameters", ret_samples) ||
	    get_bool(r, p, "binary_data_output", "parameters", bin_all))
		return r->status;
	return 0;
}

static int parse_input(struct req *r, const json_t *inputs)
{
	const struct mversion *mv = r->mv;
	int64_t want[4], got[8];
	char ws[96], gs[160];
	int rank = model_shape(mv, want);
	if (!json_is_array(inputs) || json_array_size(inputs) != 1)
		return fail(r, 400, "inputs: expected a list of one tensor "
			    "named \"input\"");
	const json_t *in = json_array_get(inputs, 0);
	const json_t *name = json_object_get(in, "name");
	const json_t *dt = json_object_get(in, "datatype");
	const json_t *shape = json_object_get(in, "shape");
	if (!json_is_object(in) || !json_is_string(name) ||
	    strcmp(json_string_value(name), "input"))
		return fail(r, 400, "inputs[0].name: expected \"input\"");
	if (!json_is_string(dt))
		return fail(r, 400, "inputs[0].datatype: expected \"FP32\" or "
			    "\"FP64\"");
	int fp32 = !strcmp(json_string_value(dt), "FP32");
	if (!fp32 && strcmp(json_string_value(dt), "FP64"))
		return fail(r, 400, "inputs[0].datatype: \"%.32s\" is not "
			    "supported; expected \"FP32\" or \"FP64\"",
			    json_string_value(dt));
	shape_text(ws, sizeof ws, want, rank);
	if (!json_is_array(shape) || json_array_size(shape) > 8)
		return fail(r, 400, "inputs[0].shape: expected a list of %d "
			    "integers %s", rank, ws);
	int n = (int)json_array_size(shape), ok = n == rank;
	for (int i = 0; i < n; i++) {
		const json_t *e = json_array_get(shape, (size_t)i);
		if (!json_is_integer(e))
			return fail(r, 400, "inputs[0].shape[%d]: expected an "
				    "integer", i);
		got[i] = json_integer_value(e);
		if (i < rank && i > 0 && got[i] != want[i])
			ok = 0;
	}
	shape_text(gs, sizeof gs, got, n);
	if (!ok || got[0] < 1 || got[0] > 65536)
		return fail(r, 400, "inputs[0].shape: %s does not match the "
			    "model %s:%s; expected %s (batch 1..65536)", gs,
			    mv->name, mv->vstr, ws);
	r->B = (int)got[0];
	size_t per = (size_t)mv->model.in_ch * mv->P, count = per * r->B;
	if (reserve_floats(&r->x, &r->x_cap, count))
		return fail(r, 503, "out of memory for the input");

	const json_t *ip = json_object_get(in, "parameters");
	const json_t *bds = ip ? json_object_get(ip, "binary_data_size") : NULL;
	const json_t *data = json_object_get(in, "data");
	if (bds) {
		size_t es = fp32 ? 4 : 8;
		if (!json_is_integer(bds) || json_integer_value(bds) < 0)
			return fail(r, 400, "inputs[0].parameters.binary_data_"
				    "size: expected an integer >= 0");
		size_t sz = (size_t)json_integer_value(bds);
		if (!r->header_len)
			return fail(r, 400, "inputs[0]: binary_data_size without "
				    "an Inference-Header-Content-Length header");
		if (sz != count * es)
			return fail(r, 400, "inputs[0]: binary_data_size %zu does "
				    "not match shape %s: expected %zu bytes of "
				    "%s", sz, gs, count * es, fp32 ? "FP32" :
				    "FP64");
		if (r->body_len - r->header_len != sz)
			return fail(r, 400, "inputs[0]: the body holds %zu "
				    "binary bytes after the JSON header; "
				    "binary_data_size says %zu",
				    r->body_len - r->header_len, sz);
		const char *b = r->body + r->header_len;
		for (size_t i = 0; i < count; i++) {
			double d;
			if (fp32) {
				float f;
				memcpy(&f, b + 4 * i, 4);
				d = f;
			} else {
				memcpy(&d, b + 8 * i, 8);
			}
			float f = (float)d;
			if (!isfinite(f))
				return fail(r, 400, "inputs[0] \"input\": "
					    "data[%zu] = %g is not a finite "
					    "FP32 value", i, d);
			r->x[i] = f;
		}
		return 0;
	}
	if (!json_is_array(data))
		return fail(r, 400, "inputs[0].data: expected a list of numbers "
			    "(flat or nested) or parameters.binary_data_size");
	size_t k = 0;
	if (flatten(r, data, 1, rank, &k, count, fp32))
		return r->status;
	if (k != count)
		return fail(r, 400, "inputs[0] \"input\": data has %zu values; "
			    "shape %s needs %zu", k, gs, count);
	return 0;
}

static int parse_outputs(struct req *r, const json_t *outs, int bin_all,
			 int have_levels)
{
	size_t i;
	const json_t *o;
	if (!json_is_array(outs))
		return fail(r, 400, "outputs: expected a list of {\"name\": "
			    "...} objects");
	int listed_q = 0, nq0 = r->nq;
	float q0[PNO_PREDICT_MAX_QUANTILES];
	memcpy(q0, r->q, sizeof q0);
	if (!have_levels)
		r->nq = 0;	/* the defaults yield to the listed levels */
	r->want = 0;
	json_array_foreach(outs, i, o) {
		const json_t *nm = json_object_get(o, "name");
		const char *s = json_is_string(nm) ? json_string_value(nm) : "";
		int b = bin_all, which = -1;
		if (!json_is_object(o) || !*s)
			return fail(r, 400, "outputs[%zu].name: expected a "
				    "string", i);
		const json_t *op = json_object_get(o, "parameters");
		if (op && get_bool(r, op, "binary_data", "outputs[].parameters",
				   &b))
			return r->status;
		if (!strncmp(s, "quantile_", 9)) {
			char *end;
			double v = strtod(s + 9, &end);
			if (end == s + 9 || *end)
				return fail(r, 400, "outputs[%zu]: \"%.64s\": "
					    "expected quantile_<level>", i, s);
			if (add_level(r, v, "outputs"))
				return r->status;
			listed_q = 1;
			which = SV_OUT_QUANTILES;
		}
		for (int k = 0; k < SV_OUT_COUNT && which < 0; k++)
			if (k != SV_OUT_QUANTILES && !strcmp(s, out_names[k]))
				which = k;
		if ((which == SV_OUT_ALEATORIC || which == SV_OUT_EPISTEMIC) &&
		    !r->mv->model.has_variance)
			which = -1;
		if (which < 0)
			return fail(r, 400, "outputs[%zu]: unknown output "
				    "\"%.64s\"; expected mean, std, samples, "
				    "quantile_<level>%s", i, s,
				    r->mv->model.has_variance ?
				    ", aleatoric_variance, epistemic_variance"
				    : "");
		r->want |= 1u << which;
		if (b)
			r->binary |= 1u << which;
	}
	if (!listed_q && !have_levels) {
		r->nq = nq0;
		memcpy(r->q, q0, sizeof q0);
	}
	return 0;
}

enum sv_scan sv_json_prescan(const char *s, size_t n, int max_depth,
			     int64_t max_elements, int *depth,
			     int64_t *elements, size_t *at)
{
	int d = 0, dmax = 0, in_str = 0, opened = 0;
	int64_t el = 0;
	enum sv_scan res = SV_SCAN_OK;
	size_t i = 0;
	for (; i < n; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;	/* the escaped byte */
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (opened) {	/* first byte after '[' or '{' */
			opened = 0;
			if (c != ']' && c != '}' && ++el > max_elements) {
				res = SV_SCAN_ELEMENTS;
				break;
			}
		}
		switch (c) {
		case '"':
			in_str = 1;
			break;
		case '[':
		case '{':
			if (++d > max_depth) {
				res = SV_SCAN_DEPTH;
				break;
			}
			dmax = d > dmax ? d : dmax;
			opened = 1;
			break;
		case ']':
		case '}':
			d -= d > 0;
			break;
		case ',':
			if (d > 0 && ++el > max_elements)
				res = SV_SCAN_ELEMENTS;
			break;
		default:
			break;
		}
		if (res != SV_SCAN_OK)
			break;
	}
	if (depth)
		*depth = res == SV_SCAN_DEPTH ? d : dmax;
	if (elements)
		*elements = el;
	if (at)
		*at = i < n ? i : n;
	return res;
}

int sv_infer_parse(struct req *r, const struct serve_config *cfg)
{
	const struct mversion *mv = r->mv;
	json_error_t e;
	json_t *root = NULL;
	int ret_samples = 0, bin_all = 0, have_levels = 0;
	size_t jlen = r->header_len ? r->header_len : r->body_len;

	r->status = 0;
	r->err[0] = 0;
	r->S = cfg->default_samples;
	/* 63 bits, so a client can send the echoed seed back as a JSON
	 * integer */
	r->seed = pno_rng_u64(r->srv->seed_key, 1, r->rid) >> 1;
	r->nq = 2;
	r->q[0] = 0.05f;
	r->q[1] = 0.95f;
	r->want = r->binary = 0;
	r->has_id = 0;
	r->rs.param_timeout_ms = 0;
	if (r->header_len > r->body_len)
		return fail(r, 400, "Inference-Header-Content-Length %zu exceeds "
			    "the body (%zu bytes)", r->header_len, r->body_len);
	size_t at;
	switch (sv_json_prescan(r->body, jlen, cfg->max_json_depth,
				cfg->max_json_elements, NULL, NULL, &at)) {
	case SV_SCAN_DEPTH:
		return fail(r, 400, "the JSON nests deeper than max_json_depth "
			    "(%d) at byte %zu", cfg->max_json_depth, at);
	case SV_SCAN_ELEMENTS:
		return fail(r, 400, "the JSON holds more than max_json_elements "
			    "(%d) elements (byte %zu)", cfg->max_json_elements,
			    at);
	case SV_SCAN_OK:
		break;
	}
	pno__json_setup();
	if (r->arena_cap)
		pno__json_arena_begin(r->arena, r->arena_cap);
	root = json_loadb(r->body, jlen, 0, &e);
	if (!root && json_error_code(&e) == json_error_out_of_memory) {
		fail(r, 503, "out of memory parsing the request");
		goto out;
	}
	if (!root) {
		fail(r, 400, "malformed JSON at line %d, column %d (byte %d): "
		     "%s", e.line, e.column, e.position, e.text);
		goto out;
	}
	if (!json_is_object(root)) {
		fail(r, 400, "the request must be a JSON object");
		goto out;
	}
	const json_t *id = json_object_get(root, "id");
	if (id) {
		if (!json_is_string(id) || strlen(json_string_value(id)) >=
						   sizeof r->id) {
			fail(r, 400, "id: expected a string of at most %zu "
			     "bytes", sizeof r->id - 1);
			goto out;
		}
		snprintf(r->id, sizeof r->id, "%s", json_string_value(id));
		r->has_id = 1;
	}
	if (parse_params(r, json_object_get(root, "parameters"), cfg,
			 &ret_samples, &bin_all, &have_levels) ||
	    parse_input(r, json_object_get(root, "inputs")))
		goto out;
	if ((int64_t)r->B * r->S > cfg->max_total_samples) {
		fail(r, 400, "%d items x %d samples = %lld exceeds "
		     "max_total_samples (%d)", r->B, r->S,
		     (long long)r->B * r->S, cfg->max_total_samples);
		goto out;
	}
	const json_t *outs = json_object_get(root, "outputs");
	if (json_is_array(outs) && json_array_size(outs) == 0)
		outs = NULL;	/* an empty list asks for the defaults */
	if (outs) {
		if (parse_outputs(r, outs, bin_all, have_levels))
			goto out;
	} else {
		r->want = 1u << SV_OUT_MEAN | 1u << SV_OUT_STD;
		if (r->nq)
			r->want |= 1u << SV_OUT_QUANTILES;
		if (mv->model.has_variance)
			r->want |= 1u << SV_OUT_ALEATORIC |
				   1u << SV_OUT_EPISTEMIC;
		if (ret_samples)
			r->want |= 1u << SV_OUT_SAMPLES;
		if (bin_all)
			r->binary = r->want;
	}
	if (!(r->want & 1u << SV_OUT_QUANTILES))
		r->nq = 0;	/* not asked for: not computed */
	size_t item = sv_item_floats(mv, SK(r), r->nq), total;
	if (__builtin_mul_overflow(item, (size_t)r->B, &total) ||
	    total > ((size_t)1 << 28)) {
		fail(r, 400, "the answer would hold too many values (batch %d "
		     "x %d samples); ask for fewer", r->B, r->S);
		goto out;
	}
	if (reserve_floats(&r->y, &r->y_cap, total))
		fail(r, 503, "out of memory for the outputs");
out:
	json_decref(root);
	size_t spilled = r->arena_cap ? pno__json_arena_end() : 0;
	if (spilled && r->arena_cap < SV_ARENA_MAX) {
		/* room for such a body next time (past the bound: malloc) */
		size_t want = r->arena_cap + spilled + spilled / 4;
		sv_buf_reserve(&r->arena, &r->arena_cap,
			       want < SV_ARENA_MAX ? want : SV_ARENA_MAX);
	}
	return r->status;
}

int sv_infer_compatible(const struct req *a, const struct req *b)
{
	return a->S == b->S && a->nq == b->nq &&
	       !memcmp(a->q, b->q, (size_t)a->nq * sizeof a->q[0]);
}

void sv_infer_outputs(const struct req *r, int b, struct pno_predict_out *o)
{
	const struct mversion *mv = r->mv;
	size_t item = sv_item_floats(mv, SK(r), r->nq);
	float *y = r->y + b * item;
#define AT(out) (y + sv_item_offset(mv, SK(r), r->nq, (out), 0))
	o->mean = AT(SV_OUT_MEAN);
	o->std = AT(SV_OUT_STD);
	o->quantiles = r->nq ? AT(SV_OUT_QUANTILES) : NULL;
	o->aleatoric = mv->model.has_variance ? AT(SV_OUT_ALEATORIC) : NULL;
	o->epistemic = mv->model.has_variance ? AT(SV_OUT_EPISTEMIC) : NULL;
	o->samples = SK(r) ? AT(SV_OUT_SAMPLES) : NULL;
#undef AT
}

void sv_infer_done(struct mversion *mv, struct req *r, enum pno_status s)
{
	size_t f = (size_t)mv->C * mv->P, item = sv_item_floats(mv, SK(r), r->nq);
	if (s == PNO_STATUS_NOMEM) {
		fail(r, 503, "out of memory for the prediction");
		return;
	}
	if (s != PNO_STATUS_OK) {
		fail(r, 500, "prediction failed: %s", pno_last_error());
		return;
	}
	for (int b = 0; b < r->B; b++) {
		const float *y = r->y + b * item;
		/* a model failure the breaker counts: never send NaN or
		 * Inf as an answer (mean and std cover every output) */
		for (size_t i = 0; i < 2 * f; i++)
			if (!isfinite(y[i])) {
				fail(r, 500, "the model produced a non-finite "
				     "output (input %d)", b);
				return;
			}
	}
	r->status = 200;
}

/* ---- response ---- */

/* Powers of ten as doubles, 1e-64 .. 1e64 (products of exact ones: the
 * relative error, ~1e-15, is far below the 9-digit rounding below). */
static double pow10_tab(int k)
{
	static const double e[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
				   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
				   1e15, 1e16};
	double r = 1;
	int a = k < 0 ? -k : k;
	while (a > 16) {
		r *= 1e16;
		a -= 16;
	}
	r *= e[a];
	return k < 0 ? 1 / r : r;
}

/* A finite float as JSON text that parses back to the same float: 9
 * significant digits (enough for float32, as %.9g) without printf, which
 * took ~0.7 us a number (11 ms for the 16k numbers of a 64x64 answer).
 * The 9-digit rounding is within 5e-9 relative of v, far inside its
 * half-ulp (>= 6e-8), so a reader recovers v exactly. Returns the length
 * (at most 16). */
int sv_fmt_f32(char *out, float v)
{
	char *p = out, dig[16];
	double a = v;
	if (signbit(v)) {
		*p++ = '-';
		a = -a;
	}
	if (a == 0) {
		*p++ = '0';
		return (int)(p - out);
	}
	int e = (int)floor(log10(a));
	long long d = llround(a * pow10_tab(8 - e));
	if (d >= 1000000000LL) {	/* log10 rounded down too far */
		e++;
		d = llround(a * pow10_tab(8 - e));
	} else if (d < 100000000LL) {
		e--;
		d = llround(a * pow10_tab(8 - e));
	}
	if (d >= 1000000000LL) {	/* 9.999999995 -> 10.00000000 */
		d /= 10;
		e++;
	}
	int n = 9;
	for (int i = 8; i >= 0; i--, d /= 10)
		dig[i] = (char)('0' + d % 10);
	while (n > 1 && dig[n - 1] == '0')
		n--;
	if (e >= 0 && e < 9) {			/* ddd.ddd */
		for (int i = 0; i <= e; i++)
			*p++ = i < n ? dig[i] : '0';
		if (n > e + 1) {
			*p++ = '.';
			for (int i = e + 1; i < n; i++)
				*p++ = dig[i];
		}
	} else if (e < 0 && e >= -5) {		/* 0.000ddd */
		*p++ = '0';
		*p++ = '.';
		for (int i = -1; i > e; i--)
			*p++ = '0';
		for (int i = 0; i < n; i++)
			*p++ = dig[i];
	} else {				/* d.ddde-XX */
		*p++ = dig[0];
		if (n > 1) {
			*p++ = '.';
			for (int i = 1; i < n; i++)
				*p++ = dig[i];
		}
		*p++ = 'e';
		if (e < 0) {
			*p++ = '-';
			e = -e;
		}
		if (e >= 10)
			*p++ = (char)('0' + e / 10);
		*p++ = (char)('0' + e % 10);
	}
	return (int)(p - out);
}

struct wbuf {
	struct req *r;
	int oom;
};

static void put(struct wbuf *w, const char *s, size_t n)
{
	struct req *r = w->r;
	if (w->oom || sv_buf_reserve(&r->resp, &r->resp_cap,
				     r->resp_len + n + 1)) {
		w->oom = 1;
		return;
	}
	memcpy(r->resp + r->resp_len, s, n);
	r->resp_len += n;
}

static void putf(struct wbuf *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void putf(struct wbuf *w, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	put(w, tmp, (size_t)(n < (int)sizeof tmp ? n : (int)sizeof tmp - 1));
}

/* one output tensor: name, shape and its values for every item */
static void put_output(struct wbuf *w, const char *name, size_t off,
		       size_t len, int with_samples, int binary, int first)
{
	struct req *r = w->r;
	const struct mversion *mv = r->mv;
	const struct pno_model *m = &mv->model;
	size_t item = sv_item_floats(mv, SK(r), r->nq);
	putf(w, "%s{\"name\":\"%s\",\"datatype\":\"FP32\",\"shape\":[%d,",
	     first ? "" : ",", name, r->B);
	if (with_samples)
		putf(w, "%d,", r->S);
	putf(w, "%d,%d", m->out_ch, m->X);
	if (m->dims == 2)
		putf(w, ",%d", m->Y);
	putf(w, "]");
	if (binary) {
		putf(w, ",\"parameters\":{\"binary_data_size\":%zu}}",
		     len * r->B * sizeof(float));
		return;
	}
	put(w, ",\"data\":[", 9);
	if (w->oom || sv_buf_reserve(&r->resp, &r->resp_cap,
				     r->resp_len + 18 * len * r->B + 8)) {
		w->oom = 1;
		return;
	}
	char *p = r->resp + r->resp_len;
	for (int b = 0; b < r->B; b++) {
		const float *y = r->y + b * item + off;
		for (size_t i = 0; i < len; i++) {
			if (b || i)
				*p++ = ',';
			if (isfinite(y[i])) {
				p += sv_fmt_f32(p, y[i]);
			} else {
				memcpy(p, "null", 4);
				p += 4;
			}
		}
	}
	r->resp_len = (size_t)(p - r->resp);
	put(w, "]}", 2);
}

static void put_binary(struct wbuf *w, size_t off, size_t len)
{
	struct req *r = w->r;
	size_t item = sv_item_floats(r->mv, SK(r), r->nq);
	for (int b = 0; b < r->B; b++)
		put(w, (const char *)(r->y + b * item + off),
		    len * sizeof(float));
}

/* walk the outputs in order: emit == 0 writes JSON, 1 the binary parts */
static void walk(struct wbuf *w, int emit_binary)
{
	struct req *r = w->r;
	const struct mversion *mv = r->mv;
	size_t f = (size_t)mv->C * mv->P;
	int first = 1;
	for (int o = 0; o < SV_OUT_COUNT; o++) {
		if (!(r->want & 1u << o))
			continue;
		int bin = !!(r->binary & 1u << o);
		int nk = o == SV_OUT_QUANTILES ? r->nq : 1;
		for (int k = 0; k < nk; k++) {
			size_t off = sv_item_offset(mv, SK(r), r->nq, o, k);
			size_t len = o == SV_OUT_SAMPLES ? f * r->S : f;
			char name[48];
			if (o == SV_OUT_QUANTILES)
				snprintf(name, sizeof name, "quantile_%g",
					 (double)r->q[k]);
			else
				snprintf(name, sizeof name, "%s", out_names[o]);
			if (emit_binary && bin)
				put_binary(w, off, len);
			else if (!emit_binary)
				put_output(w, name, off, len,
					   o == SV_OUT_SAMPLES, bin, first);
			first = 0;
		}
	}
}

int sv_infer_respond(struct req *r)
{
	struct wbuf w = {r, 0};
	/* every byte may escape to 6 ("\u001f"): the id echoed whole */
	char id[6 * sizeof r->id + 8], extra[160];
	r->resp_len = 0;
	putf(&w, "{\"model_name\":\"%s\",\"model_version\":\"%s\"",
	     r->mv->name, r->mv->vstr);
	if (r->has_id) {
		sv_json_escape(id, sizeof id, r->id);
		/* not putf: its 1 KiB buffer would cut a long escaped id */
		put(&w, ",\"id\":\"", 7);
		put(&w, id, strlen(id));
		put(&w, "\"", 1);
	}
	sv_resil_params(r, extra, sizeof extra);
	putf(&w, ",\"parameters\":{\"num_samples\":%d,\"seed\":%" PRIu64
	     ",\"batch_size\":%d,\"queue_time_us\":%.0f,"
	     "\"compute_time_us\":%.0f%s},\"outputs\":[", r->S, r->seed,
	     r->batch_items, 1e6 * (r->t_exec - r->t_enq), 1e6 * r->compute_s,
	     extra);
	walk(&w, 0);
	put(&w, "]}", 2);
	r->json_len = r->resp_len;
	if (r->binary & r->want)
		walk(&w, 1);
	if (w.oom)
		return fail(r, 503, "out of memory for the response");
	return 0;
}
