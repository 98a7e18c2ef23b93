/*
 * Alert rules and their evaluation (docs/serve/operations.md "Alerts").
 *
 * A rules file is a JSON object {"rules": [ rule, ... ]}; a rule is
 *   {"name": "errors", "metric": "error_rate", "op": ">", "threshold": 0.05,
 *    "severity": "critical", "for_s": 60, "cooldown_s": 600}
 * with metric one of ALERT_METRIC_LIST, op ">" (default) or "<", severity
 * info | warning | critical (default warning), for_s and cooldown_s >= 0
 * (default 0). The anomaly rule (metric "latency_anomaly") takes no
 * threshold but k_sigma (default 3), warmup windows (default 10), alpha,
 * the EWMA weight of a new window (default 0.1), min_sigma_ratio
 * (default 0.05) and min_sigma_s (default 0.001): the baseline's standard
 * deviation is never taken below that fraction of its mean nor below that
 * many seconds, so a very steady baseline does not turn ordinary jitter
 * (or sub-millisecond wobble of fast answers) into alerts.
 *
 * The engine is a pure function of the values it is given and the time:
 * alert_engine_eval(values, now) moves every rule through
 *   inactive -> pending (condition true) -> firing (true for for_s)
 *   firing -> resolved (condition false, or no value)
 * and reports each transition to a callback. cooldown_s is the least time
 * between two firings of one rule: a rule that would fire sooner stays
 * pending (counted in suppressed) until the cooldown has passed.
 *
 * The anomaly rule reads one value per completed window: the median
 * latency of that window. Its baseline is an exponentially weighted mean
 * and variance of earlier windows' medians (West's EWMA update):
 *   d = x - mean;  mean += alpha d;  var = (1 - alpha) (var + alpha d^2)
 * z = (x - mean) / max(sqrt(var), min_sigma_ratio mean, min_sigma_s). After warmup
 * windows the condition is z > k_sigma; an anomalous window is not folded
 * into the baseline (it would teach the baseline the anomaly), every other
 * window is. The condition holds until the next window is judged.
 *
 * Nothing allocates after alert_rules_parse: rules and states are fixed
 * arrays.
 */
#ifndef PNO_SERVE_ALERT_H
#define PNO_SERVE_ALERT_H

#include "pno/core.h"

#include <stdint.h>

#define ALERT_METRIC_LIST(X)                                                  \
	X(ERROR_RATE, "error_rate")                                           \
	X(P99_LATENCY, "p99_latency")                                         \
	X(BREAKER_OPEN, "breaker_open")                                       \
	X(DRIFT_SCORE, "drift_score")                                         \
	X(RESIDENT_MEMORY, "resident_memory")                                 \
	X(AUDIT_WRITE_FAILURES, "audit_write_failures")                       \
	X(LATENCY_ANOMALY, "latency_anomaly")

enum alert_metric {
#define ALERT__M(n, s) ALERT_METRIC_##n,
	ALERT_METRIC_LIST(ALERT__M)
#undef ALERT__M
	ALERT_METRIC_COUNT
};
const char *alert_metric_name(enum alert_metric m);

enum alert_severity {
	ALERT_SEVERITY_INFO,
	ALERT_SEVERITY_WARNING,
	ALERT_SEVERITY_CRITICAL
};
const char *alert_severity_name(enum alert_severity s);

#define ALERT_MAX_RULES 64
#define ALERT_NAME_MAX 64

struct alert_rule {
	char name[ALERT_NAME_MAX];	/* [A-Za-z0-9_.-]{1,63}, unique */
	enum alert_metric metric;
	int below;			/* op "<" */
	double threshold;
	enum alert_severity severity;
	double for_s, cooldown_s;
	/* latency_anomaly */
	double k_sigma, alpha, min_sigma_ratio, min_sigma_s;
	int warmup;
};

struct alert_rules {
	int n;
	struct alert_rule r[ALERT_MAX_RULES];
};

/* Parse rules from JSON text; INVALID naming the rule and field (source
 * prefixes the message). *out is untouched on failure. */
enum pno_status alert_rules_parse(struct alert_rules *out, const char *text,
				  const char *source);
/* The same from a file; "" gives no rules. NOTFOUND, IO, INVALID. */
enum pno_status alert_rules_load(struct alert_rules *out, const char *path);

struct alert_state {
	int pending, firing;
	double pending_since, fired_at, last_fired;	/* last_fired < 0: never */
	double value;			/* the last value judged (NAN: none) */
	uint64_t fired, resolved, suppressed;
	/* anomaly baseline */
	double mean, var, z;
	int windows;			/* windows folded into the baseline */
	int cond;			/* the anomaly's standing condition */
};

/* The values of one evaluation; have[m] 0: no data for m (its rules are
 * false). For LATENCY_ANOMALY, have means a window has just completed and
 * v is its median latency. */
struct alert_values {
	double v[ALERT_METRIC_COUNT];
	int have[ALERT_METRIC_COUNT];
};

struct alert_engine {
	struct alert_rules rules;
	struct alert_state st[ALERT_MAX_RULES];
};

/* transition of rule i: firing 1 (fired) or 0 (resolved) */
typedef void (*alert_notify_fn)(void *ud, const struct alert_rule *r,
				const struct alert_state *s, int firing,
				double now);

void alert_engine_init(struct alert_engine *e, const struct alert_rules *r);
/* New rules (a reload): a rule with the same name and metric keeps its
 * state (a firing alert stays firing, the baseline stays learned); a rule
 * that is gone and was firing is reported resolved through notify. */
void alert_engine_set_rules(struct alert_engine *e,
			    const struct alert_rules *r, alert_notify_fn notify,
			    void *ud, double now);
/* Judge every rule at time now (seconds, any monotonic origin); returns
 * the number of transitions reported. */
int alert_engine_eval(struct alert_engine *e, const struct alert_values *v,
		      double now, alert_notify_fn notify, void *ud);

#endif
