/* Alert rules: parsing, and the engine's state machine (alert.h). */
#include "alert.h"
#include "../internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const metric_names[] = {
#define ALERT__S(n, s) s,
	ALERT_METRIC_LIST(ALERT__S)
#undef ALERT__S
};
static const char *const severity_names[] = {"info", "warning", "critical"};

const char *alert_metric_name(enum alert_metric m)
{
	return (int)m >= 0 && m < ALERT_METRIC_COUNT ? metric_names[m] : "?";
}

const char *alert_severity_name(enum alert_severity s)
{
	return (int)s >= 0 && s <= ALERT_SEVERITY_CRITICAL ? severity_names[s]
							    : "?";
}

/* ---- parsing ---- */

static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n >= ALERT_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' ||
		      *s == '-'))
			return 0;
	return 1;
}

/* a number member in [lo, hi]; absent: def. 0 ok, -1 bad (error set) */
static int num(const json_t *o, const char *key, double lo, double hi,
	       double def, double *out, const char *src, const char *rule)
{
	const json_t *v = json_object_get(o, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_number(v)) {
		pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": %s is not a "
			    "number", src, rule, key);
		return -1;
	}
	double x = json_number_value(v);
	if (!(x >= lo && x <= hi)) {
		pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": %s %g is out "
			    "of range [%g, %g]", src, rule, key, x, lo, hi);
		return -1;
	}
	*out = x;
	return 0;
}

static const char *const rule_keys[] = {
	"name", "metric", "op", "threshold", "severity", "for_s", "cooldown_s",
	"k_sigma", "alpha", "warmup", "min_sigma_ratio", "min_sigma_s", NULL};

static enum pno_status parse_rule(const json_t *o, struct alert_rule *r,
				  int idx, const char *src)
{
	char rn[32];
	snprintf(rn, sizeof rn, "#%d", idx);
	if (!json_is_object(o))
		return pno__errorf(PNO_STATUS_INVALID, "%s: rule %s is not an "
				   "object", src, rn);
	const char *key;
	const json_t *v;
	memset(r, 0, sizeof *r);
	const char *name = json_string_value(json_object_get(o, "name"));
	if (!name || !valid_name(name))
		return pno__errorf(PNO_STATUS_INVALID, "%s: rule %s: name must "
				   "be 1-%d of [A-Za-z0-9_.-]", src, rn,
				   ALERT_NAME_MAX - 1);
	snprintf(r->name, sizeof r->name, "%s", name);
	json_object_foreach((json_t *)o, key, v) {
		int known = 0;
		for (int i = 0; rule_keys[i]; i++)
			known |= !strcmp(rule_keys[i], key);
		if (!known)
			return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": "
					   "unknown field \"%.64s\"", src, name,
					   key);
	}
	const char *m = json_string_value(json_object_get(o, "metric"));
	r->metric = ALERT_METRIC_COUNT;
	for (int i = 0; m && i < ALERT_METRIC_COUNT; i++)
		if (!strcmp(m, metric_names[i]))
			r->metric = (enum alert_metric)i;
	if (r->metric == ALERT_METRIC_COUNT)
		return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": metric "
				   "must be one of error_rate, p99_latency, "
				   "breaker_open, drift_score, resident_memory, "
				   "audit_write_failures, latency_anomaly", src,
				   name);
	const json_t *op = json_object_get(o, "op");
	if (op) {
		const char *s = json_string_value(op);
		if (!s || (strcmp(s, ">") && strcmp(s, "<")))
			return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": "
					   "op must be \">\" or \"<\"", src, name);
		r->below = !strcmp(s, "<");
	}
	const json_t *sev = json_object_get(o, "severity");
	r->severity = ALERT_SEVERITY_WARNING;
	if (sev) {
		const char *s = json_string_value(sev);
		int k = -1;
		for (int i = 0; s && i < 3; i++)
			if (!strcmp(s, severity_names[i]))
				k = i;
		if (k < 0)
			return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": "
					   "severity must be info, warning or "
					   "critical", src, name);
		r->severity = (enum alert_severity)k;
	}
	int anomaly = r->metric == ALERT_METRIC_LATENCY_ANOMALY;
	if (!anomaly && !json_object_get(o, "threshold"))
		return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": no "
				   "threshold", src, name);
	if (anomaly && (json_object_get(o, "threshold") || op))
		return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": a "
				   "latency_anomaly rule takes k_sigma, not a "
				   "threshold or op", src, name);
	if (!anomaly)
		for (int i = 7; rule_keys[i]; i++)
			if (json_object_get(o, rule_keys[i]))
				return pno__errorf(PNO_STATUS_INVALID, "%s: rule "
						   "\"%s\": %s is for "
						   "latency_anomaly rules", src,
						   name, rule_keys[i]);
	double warm;
	if (num(o, "threshold", -1e300, 1e300, 0, &r->threshold, src, name) ||
	    num(o, "for_s", 0, 1e7, 0, &r->for_s, src, name) ||
	    num(o, "cooldown_s", 0, 1e7, 0, &r->cooldown_s, src, name) ||
	    num(o, "k_sigma", 0.1, 1000, 3, &r->k_sigma, src, name) ||
	    num(o, "alpha", 1e-4, 1, 0.1, &r->alpha, src, name) ||
	    num(o, "min_sigma_ratio", 0, 10, 0.05, &r->min_sigma_ratio, src,
		name) ||
	    num(o, "min_sigma_s", 0, 1e6, 0.001, &r->min_sigma_s, src, name) ||
	    num(o, "warmup", 1, 1e6, 10, &warm, src, name))
		return PNO_STATUS_INVALID;
	if (warm != floor(warm))
		return pno__errorf(PNO_STATUS_INVALID, "%s: rule \"%s\": warmup "
				   "is not an integer", src, name);
	r->warmup = (int)warm;
	return PNO_STATUS_OK;
}

enum pno_status alert_rules_parse(struct alert_rules *out, const char *text,
				  const char *source)
{
	const char *src = source ? source : "alerts";
	if (!out || !text)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL argument", src);
	enum pno_status s;
	char msg[200];
	pno__json_init();
	json_t *root = pno__json_loads(text, &s, msg, sizeof msg);
	if (!root) {
		if (s == PNO_STATUS_NOMEM)
			return pno__errorf(s, "%s: out of memory", src);
		return pno__errorf(PNO_STATUS_INVALID, "%s: %s", src, msg);
	}
	struct alert_rules *rs = pno_malloc(sizeof *rs);
	if (!rs) {
		json_decref(root);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", src);
	}
	rs->n = 0;
	const json_t *arr = json_object_get(root, "rules");
	s = PNO_STATUS_OK;
	if (!json_is_object(root) || !json_is_array(arr) ||
	    json_object_size(root) != 1) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: expected {\"rules\": "
				"[...]}", src);
		goto cleanup;
	}
	if (json_array_size(arr) > ALERT_MAX_RULES) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: %zu rules, at most %d",
				src, json_array_size(arr), ALERT_MAX_RULES);
		goto cleanup;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		struct alert_rule *r = &rs->r[rs->n];
		if ((s = parse_rule(json_array_get(arr, i), r, (int)i, src)))
			goto cleanup;
		for (int k = 0; k < rs->n; k++)
			if (!strcmp(rs->r[k].name, r->name)) {
				s = pno__errorf(PNO_STATUS_INVALID, "%s: rule "
						"name \"%s\" given twice", src,
						r->name);
				goto cleanup;
			}
		rs->n++;
	}
	*out = *rs;
cleanup:
	pno_free(rs);
	json_decref(root);
	return s;
}

enum pno_status alert_rules_load(struct alert_rules *out, const char *path)
{
	if (!out || !path)
		return pno__errorf(PNO_STATUS_INVALID, "alerts: NULL argument");
	if (!path[0]) {
		out->n = 0;
		return PNO_STATUS_OK;
	}
	char src[600];
	snprintf(src, sizeof src, "alerts_file %s", path);
	FILE *f = fopen(path, "rb");
	if (!f)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
				   : PNO_STATUS_IO, "%s: %s", src,
				   strerror(errno));
	char *text = pno_malloc(1 << 20);
	if (!text) {
		fclose(f);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", src);
	}
	size_t n = fread(text, 1, (1 << 20) - 1, f);
	int big = n == (1 << 20) - 1, err = ferror(f);
	fclose(f);
	text[n] = 0;
	enum pno_status s;
	if (err)
		s = pno__errorf(PNO_STATUS_IO, "%s: read error", src);
	else if (big)
		s = pno__errorf(PNO_STATUS_INVALID, "%s: larger than 1 MiB", src);
	else if (strlen(text) != n)
		s = pno__errorf(PNO_STATUS_INVALID, "%s: holds a NUL byte", src);
	else
		s = alert_rules_parse(out, text, src);
	pno_free(text);
	return s;
}

/* ---- the engine ---- */

static void state_reset(struct alert_state *s)
{
	memset(s, 0, sizeof *s);
	s->last_fired = -1;
	s->value = NAN;
}

void alert_engine_init(struct alert_engine *e, const struct alert_rules *r)
{
	memset(e, 0, sizeof *e);
	if (r)
		e->rules = *r;
	for (int i = 0; i < ALERT_MAX_RULES; i++)
		state_reset(&e->st[i]);
}

void alert_engine_set_rules(struct alert_engine *e,
			    const struct alert_rules *r, alert_notify_fn notify,
			    void *ud, double now)
{
	struct alert_state st[ALERT_MAX_RULES];
	int kept[ALERT_MAX_RULES] = {0};
	for (int i = 0; i < r->n; i++) {
		state_reset(&st[i]);
		for (int k = 0; k < e->rules.n; k++)
			if (!strcmp(e->rules.r[k].name, r->r[i].name) &&
			    e->rules.r[k].metric == r->r[i].metric) {
				st[i] = e->st[k];
				kept[k] = 1;
			}
	}
	for (int k = 0; k < e->rules.n; k++)
		if (!kept[k] && e->st[k].firing) {
			e->st[k].firing = 0;
			e->st[k].resolved++;
			if (notify)
				notify(ud, &e->rules.r[k], &e->st[k], 0, now);
		}
	e->rules = *r;
	for (int i = 0; i < ALERT_MAX_RULES; i++)
		if (i < r->n)
			e->st[i] = st[i];
		else
			state_reset(&e->st[i]);
}

/* one completed window's median against the baseline; the condition */
static int anomaly_judge(const struct alert_rule *r, struct alert_state *s,
			 double x)
{
	if (s->windows == 0) {
		s->mean = x;
		s->var = 0;
		s->windows = 1;
		s->z = 0;
		return 0;
	}
	double sd = sqrt(s->var), floor_sd = r->min_sigma_ratio * fabs(s->mean);
	if (sd < floor_sd)
		sd = floor_sd;
	if (sd < r->min_sigma_s)
		sd = r->min_sigma_s;
	if (sd < 1e-12)
		sd = 1e-12;
	s->z = (x - s->mean) / sd;
	int anomalous = s->windows >= r->warmup && s->z > r->k_sigma;
	if (!anomalous) {
		double d = x - s->mean;
		s->mean += r->alpha * d;
		s->var = (1 - r->alpha) * (s->var + r->alpha * d * d);
		s->windows++;
	}
	return anomalous;
}

int alert_engine_eval(struct alert_engine *e, const struct alert_values *v,
		      double now, alert_notify_fn notify, void *ud)
{
	int transitions = 0;
	for (int i = 0; i < e->rules.n; i++) {
		const struct alert_rule *r = &e->rules.r[i];
		struct alert_state *s = &e->st[i];
		int have = v->have[r->metric] && !isnan(v->v[r->metric]);
		double x = v->v[r->metric];
		int cond;
		if (r->metric == ALERT_METRIC_LATENCY_ANOMALY) {
			if (have) {
				s->cond = anomaly_judge(r, s, x);
				s->value = x;
			}
			cond = s->cond;
		} else {
			s->value = have ? x : NAN;
			cond = have && (r->below ? x < r->threshold
						 : x > r->threshold);
		}
		if (!cond) {
			s->pending = 0;
			if (s->firing) {
				s->firing = 0;
				s->resolved++;
				transitions++;
				if (notify)
					notify(ud, r, s, 0, now);
			}
			continue;
		}
		if (!s->pending) {
			s->pending = 1;
			s->pending_since = now;
		}
		if (s->firing || now - s->pending_since < r->for_s)
			continue;
		if (s->last_fired >= 0 && now - s->last_fired < r->cooldown_s) {
			s->suppressed++;
			continue;
		}
		s->firing = 1;
		s->fired_at = s->last_fired = now;
		s->fired++;
		transitions++;
		if (notify)
			notify(ud, r, s, 1, now);
	}
	return transitions;
}
