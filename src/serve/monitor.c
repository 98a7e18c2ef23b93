/* The monitor thread: every health_interval_ms it samples the process's
 * resources (load shedding above memory_limit_mb), runs the health checks,
 * computes the windowed error rate and latency quantiles, and evaluates
 * the alert rules, whose transitions go to the log, the audit log and the
 * webhook (docs/serve/operations.md). */
#include "serve_internal.h"
#include "../internal.h"

#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t sv_unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the latency ring ---- */

void sv_latring_init(struct sv_latring *r)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
}

void sv_latring_free(struct sv_latring *r)
{
	pthread_mutex_destroy(&r->mu);
}

void sv_latring_add(struct sv_latring *r, double t, double latency)
{
	pthread_mutex_lock(&r->mu);
	int k = (int)(r->n % SV_LAT_RING);
	r->t[k] = t;
	r->lat[k] = (float)latency;
	r->n++;
	pthread_mutex_unlock(&r->mu);
}

int sv_latring_window(struct sv_latring *r, double t0, double t1,
		      float *scratch)
{
	int m = 0;
	pthread_mutex_lock(&r->mu);
	uint64_t n = r->n, k0 = n > SV_LAT_RING ? n - SV_LAT_RING : 0;
	for (uint64_t i = k0; i < n; i++) {
		int k = (int)(i % SV_LAT_RING);
		if (r->t[k] > t0 && r->t[k] <= t1 && !isnan(r->lat[k]))
			scratch[m++] = r->lat[k];
	}
	pthread_mutex_unlock(&r->mu);
	pno__sort_floats(scratch, (size_t)m);
	return m;
}

double sv_quantile_sorted(const float *v, int n, double q)
{
	/* nearest rank: the smallest value with at least q n values at or
	 * below it */
	int k = (int)ceil(q * n - 1e-9);
	k = k < 1 ? 1 : k > n ? n : k;
	return v[k - 1];
}

/* ---- request path ---- */

void sv_ops_request_done(struct req *r, int status)
{
	struct sv_ops *o = r->srv->ops;
	if (!o)
		return;
	double now = sv_now();
	atomic_fetch_add(&o->n_total, 1);
	if (status >= 500)
		atomic_fetch_add(&o->n_err, 1);
	/* latencies of answered inferences only: a refusal's speed says
	 * nothing about the model's */
	if (status == 200)
		sv_latring_add(&o->lat, now, now - r->t_start);
}

int sv_ops_shed(struct req *r)
{
	struct sv_ops *o = r->srv->ops;
	if (!o || !atomic_load(&o->shedding))
		return 0;
	const char *l[1] = {failure_label(FAILURE_OVERLOADED)};
	prom_inc(o->m_shed, l, 1);
	r->status = failure_http_status(FAILURE_OVERLOADED);
	snprintf(r->err, sizeof r->err, "overloaded: resident memory %.0f MiB "
		 "is above memory_limit_mb %.0f: retry later",
		 (double)atomic_load(&o->rss_bytes) / 1048576.0,
		 (double)o->mem_limit_bytes / 1048576.0);
	return 1;
}

/* ---- resources ---- */

static void sample_resources(struct sv_ops *o, double now)
{
	struct prom_process_values v;
	if (prom_process_sample(o->srv->met.reg, &v) != PNO_STATUS_OK)
		return;
	if (o->t_prev > 0 && now > o->t_prev)
		o->cpu_cores = (v.cpu_seconds - o->cpu_prev) / (now - o->t_prev);
	o->cpu_prev = v.cpu_seconds;
	o->t_prev = now;
	o->res = v;
	prom_set(o->m_cpu_cores, NULL, o->cpu_cores);
	atomic_store(&o->rss_bytes, (int64_t)v.resident_bytes);
	int64_t lim = o->mem_limit_bytes;
	int was = atomic_load(&o->shedding), now_shed;
	/* shed above the limit; take load again below 95% of it, so the
	 * sampled value's jitter does not flap the state */
	if (lim <= 0)
		now_shed = 0;
	else if (was)
		now_shed = v.resident_bytes > 0.95 * (double)lim;
	else
		now_shed = v.resident_bytes > (double)lim;
	if (now_shed) {
		/* give freed heap back to the system, or the resident size
		 * never falls after the burst that raised it */
		malloc_trim(0);
	}
	if (now_shed != was) {
		atomic_store(&o->shedding, now_shed);
		sv_log(o->srv, now_shed ? PNO_LOG_LEVEL_WARN : PNO_LOG_LEVEL_INFO,
		       now_shed ? "load_shedding_on" : "load_shedding_off",
		       ",\"resident_bytes\":%.0f,\"memory_limit_bytes\":%" PRId64,
		       v.resident_bytes, lim);
	}
	prom_set(o->m_shedding, NULL, now_shed);
	prom_set(o->m_mem_limit, NULL, (double)lim);
}

/* ---- windows ---- */

static void hist_push(struct sv_ops *o, double now, double audit_fail)
{
	int k = (o->hist_head + o->hist_n) % SV_HIST;
	if (o->hist_n == SV_HIST)
		o->hist_head = (o->hist_head + 1) % SV_HIST;
	else
		o->hist_n++;
	o->hist[k].t = now;
	o->hist[k].total = atomic_load(&o->n_total);
	o->hist[k].err = atomic_load(&o->n_err);
	o->hist[k].audit_fail = audit_fail;
}

/* the oldest snapshot at or after now - w (the window's start), and the
 * newest; 0 if fewer than two */
static int hist_window(const struct sv_ops *o, double now, double w,
		       const struct sv_hist **a, const struct sv_hist **b)
{
	if (o->hist_n < 2)
		return 0;
	*b = &o->hist[(o->hist_head + o->hist_n - 1) % SV_HIST];
	*a = &o->hist[o->hist_head];
	/* the newest snapshot at or before the window's start: the window
	 * covers at least w (up to one tick more) */
	for (int i = o->hist_n - 2; i >= 0; i--) {
		const struct sv_hist *h = &o->hist[(o->hist_head + i) % SV_HIST];
		if (h->t <= now - w + 1e-9) {
			*a = h;
			break;
		}
	}
	return *a != *b;
}

/* ---- alerts ---- */

static void iso_time(char *out, size_t size, int64_t unix_ns)
{
	struct tm tm;
	time_t s = (time_t)(unix_ns / 1000000000);
	gmtime_r(&s, &tm);
	size_t k = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, size - k, ".%03dZ",
		 (int)(unix_ns % 1000000000 / 1000000));
}

static void num_json(char *out, size_t size, double v)
{
	if (isfinite(v))
		snprintf(out, size, "%.9g", v);
	else
		snprintf(out, size, "null");
}

static void on_alert(void *ud, const struct alert_rule *r,
		     const struct alert_state *s, int firing, double now)
{
	struct sv_ops *o = ud;
	struct server *srv = o->srv;
	char val[40], thr[40], ts[40], body[1024];
	(void)now;
	num_json(val, sizeof val, s->value);
	if (r->metric == ALERT_METRIC_LATENCY_ANOMALY)
		snprintf(thr, sizeof thr, "%.9g", r->k_sigma);
	else
		num_json(thr, sizeof thr, r->threshold);
	iso_time(ts, sizeof ts, sv_unix_ns());
	const char *state = firing ? "firing" : "resolved";
	const char *sev = alert_severity_name(r->severity);
	const char *metric = alert_metric_name(r->metric);
	char extra[96] = "";
	if (r->metric == ALERT_METRIC_LATENCY_ANOMALY)
		snprintf(extra, sizeof extra, ",\"z\":%.4g,\"baseline_s\":%.6g",
			 isfinite(s->z) ? s->z : 0, s->mean);
	sv_log(srv, firing ? (r->severity == ALERT_SEVERITY_INFO ?
			      PNO_LOG_LEVEL_INFO : PNO_LOG_LEVEL_WARN)
			   : PNO_LOG_LEVEL_INFO, "alert",
	       ",\"alert\":\"%s\",\"state\":\"%s\",\"severity\":\"%s\","
	       "\"metric\":\"%s\",\"value\":%s,\"%s\":%s%s", r->name, state,
	       sev, metric, val, r->metric == ALERT_METRIC_LATENCY_ANOMALY ?
	       "k_sigma" : "threshold", thr, extra);
	char det[400];
	snprintf(det, sizeof det, "alert %s %s: %s %s %s (%s)", r->name, state,
		 metric, val, r->metric == ALERT_METRIC_LATENCY_ANOMALY ?
		 "z vs k_sigma" : r->below ? "<" : ">", thr);
	sv_audit_event(srv, AUDIT_EVENT_ALERT, "monitor", firing ? 1 : 0, det);
	const char *lv[2] = {r->name, sev};
	prom_set(o->m_firing, lv, firing);
	const char *tl[2] = {r->name, state};
	prom_inc(o->m_alert_tr, tl, 1);
	if (o->webhook) {
		int n = snprintf(body, sizeof body, "{\"alert\":\"%s\",\"state\":"
				 "\"%s\",\"severity\":\"%s\",\"metric\":\"%s\","
				 "\"value\":%s,\"%s\":%s%s,\"time\":\"%s\","
				 "\"service\":\"%s\"}", r->name, state, sev,
				 metric, val, r->metric ==
				 ALERT_METRIC_LATENCY_ANOMALY ? "k_sigma" :
				 "threshold", thr, extra, ts,
				 srv->opts.cfg.trace_service_name);
		if (n > 0 && (size_t)n < sizeof body)
			ob_sender_push(o->webhook, body, (size_t)n);
	}
}

static void webhook_metrics(struct sv_ops *o)
{
	if (!o->webhook)
		return;
	const struct ob_counters *c = ob_sender_counters(o->webhook);
	const char *full[1] = {"queue_full"}, *failed[1] = {"failed"};
	/* counters mirrored from the sender's own (monotone) */
	double sent = (double)atomic_load(&c->sent);
	double f = (double)atomic_load(&c->dropped_full);
	double g = (double)atomic_load(&c->dropped_failed);
	double s0 = prom_value(o->m_hook_sent, NULL);
	double f0 = prom_value(o->m_hook_drop, full);
	double g0 = prom_value(o->m_hook_drop, failed);
	prom_inc(o->m_hook_sent, NULL, sent - (isnan(s0) ? 0 : s0));
	prom_inc(o->m_hook_drop, full, f - (isnan(f0) ? 0 : f0));
	prom_inc(o->m_hook_drop, failed, g - (isnan(g0) ? 0 : g0));
}

static void evaluate(struct sv_ops *o, double now)
{
	struct server *srv = o->srv;
	struct alert_values v;
	memset(&v, 0, sizeof v);
	double w = o->window_s;
	double af = prom_value(srv->met.audit_fail, NULL);
	hist_push(o, now, isnan(af) ? 0 : af);
	const struct sv_hist *a, *b;
	o->err_rate = NAN;
	if (hist_window(o, now, w, &a, &b)) {
		uint64_t n = b->total - a->total;
		if (n > 0) {
			o->err_rate = (double)(b->err - a->err) / (double)n;
			v.v[ALERT_METRIC_ERROR_RATE] = o->err_rate;
			v.have[ALERT_METRIC_ERROR_RATE] = 1;
		}
		v.v[ALERT_METRIC_AUDIT_WRITE_FAILURES] = b->audit_fail -
							 a->audit_fail;
		v.have[ALERT_METRIC_AUDIT_WRITE_FAILURES] = 1;
	}
	int m = sv_latring_window(&o->lat, now - w, now, o->scratch);
	o->p99 = m ? sv_quantile_sorted(o->scratch, m, 0.99) : NAN;
	if (m) {
		v.v[ALERT_METRIC_P99_LATENCY] = o->p99;
		v.have[ALERT_METRIC_P99_LATENCY] = 1;
	}
	/* the anomaly rule: one median per completed (non-overlapping)
	 * window */
	if (o->anomaly_t0 <= 0)
		o->anomaly_t0 = now;
	if (now - o->anomaly_t0 >= w) {
		int k = sv_latring_window(&o->lat, o->anomaly_t0, now,
					  o->scratch);
		if (k) {
			v.v[ALERT_METRIC_LATENCY_ANOMALY] =
				sv_quantile_sorted(o->scratch, k, 0.5);
			v.have[ALERT_METRIC_LATENCY_ANOMALY] = 1;
		}
		o->anomaly_t0 = now;
	}
	v.v[ALERT_METRIC_RESIDENT_MEMORY] = o->res.resident_bytes;
	v.have[ALERT_METRIC_RESIDENT_MEMORY] = o->res.resident_bytes > 0;
	int open = 0;
	for (int i = 0; i < o->nchecks; i++)
		if (!strncmp(o->checks[i].name, "model:", 6) &&
		    o->checks[i].status == SV_CHECK_FAIL)
			open++;
	v.v[ALERT_METRIC_BREAKER_OPEN] = open;
	v.have[ALERT_METRIC_BREAKER_OPEN] = 1;
	pthread_mutex_lock(&o->mu);
	int have;
	v.v[ALERT_METRIC_DRIFT_SCORE] = sv_health_drift_max(o, &have);
	v.have[ALERT_METRIC_DRIFT_SCORE] = have;
	alert_engine_eval(&o->eng, &v, now, on_alert, o);
	webhook_metrics(o);	/* under mu: a reload may replace it */
	for (int i = 0; i < o->eng.rules.n; i++)
		if (o->eng.rules.r[i].metric == ALERT_METRIC_LATENCY_ANOMALY) {
			const char *l[1] = {o->eng.rules.r[i].name};
			prom_set(o->m_anom_z, l, o->eng.st[i].z);
		}
	pthread_mutex_unlock(&o->mu);
	prom_set(o->m_err_rate, NULL, isnan(o->err_rate) ? 0 : o->err_rate);
	prom_set(o->m_p99, NULL, isnan(o->p99) ? 0 : o->p99);
}

static void tick(struct sv_ops *o)
{
	double now = sv_now();
	sample_resources(o, now);
	sv_health_run(o, now);
	evaluate(o, now);
	prom_inc(o->m_runs, NULL, 1);
}

static void *monitor_main(void *arg)
{
	struct sv_ops *o = arg;
	double last = sv_now();
	pthread_mutex_lock(&o->mu);
	while (!atomic_load(&o->stop)) {
		/* the deadline from the interval in force: a reload that
		 * shortens it takes effect at once (it broadcasts cv) */
		double due = last + 1e-3 * o->interval_ms;
		if (sv_now() < due) {
			struct timespec ts;
			ts.tv_sec = (time_t)due;
			ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
			pthread_cond_timedwait(&o->cv, &o->mu, &ts);
			continue;
		}
		pthread_mutex_unlock(&o->mu);
		last = sv_now();
		tick(o);
		pthread_mutex_lock(&o->mu);
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

/* ---- start, reload, stop ---- */

static int register_metrics(struct sv_ops *o)
{
	struct prom_registry *g = o->srv->met.reg;
	static const char *ck[] = {"check", NULL};
	static const char *as[] = {"alert", "severity", NULL};
	static const char *at[] = {"alert", "state", NULL};
	static const char *al[] = {"alert", NULL};
	static const char *rs[] = {"reason", NULL};
	static const char *cl[] = {"class", NULL};
#define REG(f, t, n, h, l)                                                    \
	if (prom_register(g, &o->f, t, n, h, l, NULL, 0, 0))                   \
		return -1;
	REG(m_check, PROM_GAUGE, "pno_health_check_status",
	    "Last result of a scheduled health check: 0 ok, 1 warn, 2 fail, "
	    "3 off, 4 unknown.", ck)
	REG(m_ready, PROM_GAUGE, "pno_ready",
	    "1 when the last checks say ready (what /v2/health/ready "
	    "answers).", NULL)
	REG(m_shedding, PROM_GAUGE, "pno_load_shedding",
	    "1 while resident memory is above memory_limit_mb and new "
	    "inferences are refused.", NULL)
	REG(m_shed, PROM_COUNTER, "pno_shed_requests_total",
	    "Inferences refused with 503 by load shedding, by failure "
	    "class.", cl)
	REG(m_mem_limit, PROM_GAUGE, "pno_memory_limit_bytes",
	    "memory_limit_mb in bytes (0: off).", NULL)
	REG(m_cpu_cores, PROM_GAUGE, "pno_process_cpu_cores",
	    "CPU seconds per second over the last monitor interval.", NULL)
	REG(m_firing, PROM_GAUGE, "pno_alerts_firing",
	    "1 while an alert rule is firing.", as)
	REG(m_alert_tr, PROM_COUNTER, "pno_alert_transitions_total",
	    "Alert rules that fired or resolved.", at)
	REG(m_hook_sent, PROM_COUNTER, "pno_alert_webhook_sent_total",
	    "Alert notifications delivered to the webhook.", NULL)
	REG(m_hook_drop, PROM_COUNTER, "pno_alert_webhook_dropped_total",
	    "Alert notifications not delivered: queue_full or failed (after "
	    "retries).", rs)
	REG(m_err_rate, PROM_GAUGE, "pno_window_error_rate",
	    "Share of inferences answered 5xx over the last alert_window_s.",
	    NULL)
	REG(m_p99, PROM_GAUGE, "pno_window_latency_p99_seconds",
	    "p99 latency of inferences answered 200 over the last "
	    "alert_window_s (0: none).", NULL)
	REG(m_anom_z, PROM_GAUGE, "pno_latency_anomaly_z",
	    "The last window's median latency in baseline standard "
	    "deviations, by anomaly rule.", al)
	REG(m_runs, PROM_COUNTER, "pno_monitor_runs_total",
	    "Monitor ticks: health checks, resource samples, alert "
	    "evaluations.", NULL)
	REG(m_span_exp, PROM_COUNTER, "pno_trace_spans_exported_total",
	    "Spans delivered to the collector or written to trace_file.", NULL)
	REG(m_span_drop, PROM_COUNTER, "pno_trace_spans_dropped_total",
	    "Spans not exported: queue_full or failed (after retries).", rs)
#undef REG
	const char *l1[1] = {"queue_full"}, *l2[1] = {"failed"};
	prom_inc(o->m_span_drop, l1, 0);
	prom_inc(o->m_span_drop, l2, 0);
	const char *c1[1] = {failure_label(FAILURE_OVERLOADED)};
	prom_inc(o->m_shed, c1, 0);
	return 0;
}

static void copy_config(struct sv_ops *o, const struct serve_config *c)
{
	o->interval_ms = c->health_interval_ms;
	o->window_s = c->alert_window_s;
	o->mem_limit_bytes = (int64_t)c->memory_limit_mb * 1048576;
}

static int webhook_set(struct sv_ops *o, const char *url)
{
	if (!strcmp(url, o->webhook_url))
		return 0;
	if (!url[0]) {
		ob_sender_free(o->webhook);
		o->webhook = NULL;
	} else if (o->webhook) {
		if (ob_sender_set_url(o->webhook, url))
			return -1;
	} else {
		struct retry_policy p = retry_policy_default();
		if (ob_sender_new(&o->webhook, url, "application/json", 64,
				  1024, 5000, &p))
			return -1;
	}
	snprintf(o->webhook_url, sizeof o->webhook_url, "%s", url);
	return 0;
}

int sv_ops_start(struct server *srv)
{
	const struct serve_config *c = &srv->opts.cfg;
	struct sv_ops *o = pno_calloc(1, sizeof *o);
	char esc[2 * SV_ERR_MAX];
	struct alert_rules rules;
	if (!o) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"monitor: out of memory\"");
		return -1;
	}
	o->srv = srv;
	pthread_mutex_init(&o->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cv, &ca);
	pthread_condattr_destroy(&ca);
	sv_latring_init(&o->lat);
	o->p99 = o->err_rate = NAN;
	copy_config(o, c);
	srv->ops = o;
	const char *why = NULL;
	if (register_metrics(o))
		why = "monitor: cannot register metrics";
	else if (alert_rules_load(&rules, c->alerts_file))
		why = "alert rules";
	if (!why)
		alert_engine_init(&o->eng, &rules);
	if (!why && webhook_set(o, c->alert_webhook_url))
		why = "alert_webhook_url";
	if (!why && sv_export_start(o))
		why = "trace export";
	if (why) {
		sv_json_escape(esc, sizeof esc, pno_last_error());
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"%s: %s\"", why, esc);
		if (srv->opts.log_file)
			fprintf(stderr, "pno serve: %s: %s\n", why,
				pno_last_error());
		sv_ops_stop(srv);
		return -1;
	}
	/* the first results before the first probe */
	tick(o);
	if (pthread_create(&o->th, NULL, monitor_main, o)) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"monitor: cannot start a thread\"");
		sv_ops_stop(srv);
		return -1;
	}
	o->th_started = 1;
	sv_log(srv, PNO_LOG_LEVEL_INFO, "monitor_started",
	       ",\"interval_ms\":%d,\"alert_rules\":%d,\"memory_limit_mb\":%d,"
	       "\"webhook\":%s,\"trace_export\":%s", o->interval_ms,
	       o->eng.rules.n, c->memory_limit_mb, o->webhook ? "true" :
	       "false", o->exp ? "true" : "false");
	return 0;
}

void sv_ops_reconfigure(struct server *srv)
{
	struct sv_ops *o = srv->ops;
	if (!o)
		return;
	struct serve_config c;
	pthread_mutex_lock(&srv->state_mu);
	c = srv->opts.cfg;
	pthread_mutex_unlock(&srv->state_mu);
	struct alert_rules rules;
	int bad = alert_rules_load(&rules, c.alerts_file) != PNO_STATUS_OK;
	char esc[2 * SV_ERR_MAX];
	if (bad) {
		sv_json_escape(esc, sizeof esc, pno_last_error());
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "alerts_reload_failed",
		       ",\"reason\":\"%s\",\"message\":\"the previous rules "
		       "stay in force\"", esc);
	}
	pthread_mutex_lock(&o->mu);
	copy_config(o, &c);
	if (!bad)
		alert_engine_set_rules(&o->eng, &rules, on_alert, o, sv_now());
	if (webhook_set(o, c.alert_webhook_url)) {
		sv_json_escape(esc, sizeof esc, pno_last_error());
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "webhook_reload_failed",
		       ",\"reason\":\"%s\"", esc);
	}
	pthread_cond_broadcast(&o->cv);	/* a new interval starts now */
	pthread_mutex_unlock(&o->mu);
}

void sv_ops_stop(struct server *srv)
{
	struct sv_ops *o = srv->ops;
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	atomic_store(&o->stop, 1);
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
	if (o->th_started)
		pthread_join(o->th, NULL);
	sv_export_stop(o);
	ob_sender_free(o->webhook);
	sv_latring_free(&o->lat);
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	srv->ops = NULL;
	pno_free(o);
}
