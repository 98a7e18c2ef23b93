/* Scheduled health checks (run by the monitor thread), readiness from
 * their last results, GET /v2/health/details, and the drift hook. */
#include "serve_internal.h"
#include "../internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static const char *const status_names[] = {"ok", "warn", "fail", "off",
					   "unknown"};

const char *sv_check_status_name(enum sv_check_status s)
{
	return (int)s >= 0 && s <= SV_CHECK_UNKNOWN ? status_names[s] : "?";
}

struct checks {
	int n;
	struct sv_check *c;
	int64_t t;
};

static struct sv_check *add(struct checks *k, const char *name,
			    enum sv_check_status st, int readiness,
			    const char *msg_fmt, ...)
	__attribute__((format(printf, 5, 6)));
static struct sv_check *add(struct checks *k, const char *name,
			    enum sv_check_status st, int readiness,
			    const char *msg_fmt, ...)
{
	static struct sv_check spare;	/* past the table: dropped */
	struct sv_check *c = k->n < SV_MAX_CHECKS ? &k->c[k->n++] : &spare;
	va_list ap;
	snprintf(c->name, sizeof c->name, "%s", name);
	c->status = st;
	c->readiness = readiness;
	c->last_run_ns = k->t;
	snprintf(c->value, sizeof c->value, "null");
	va_start(ap, msg_fmt);
	vsnprintf(c->message, sizeof c->message, msg_fmt, ap);
	va_end(ap);
	return c;
}

static void set_num(struct sv_check *c, double v)
{
	if (isfinite(v))
		snprintf(c->value, sizeof c->value, "%.10g", v);
}

static void set_str(struct sv_check *c, const char *s)
{
	char esc[140];
	sv_json_escape(esc, sizeof esc, s);
	snprintf(c->value, sizeof c->value, "\"%s\"", esc);
}

static void check_models(struct sv_ops *o, struct checks *k)
{
	struct serve_state *st = sv_state_get(o->srv);
	int nv = 0, open = 0;
	for (int i = 0; i < st->nm; i++)
		for (int j = 0; j < st->m[i].nv; j++) {
			nv++;
			open += breaker_state_get(&st->m[i].v[j]->brk) ==
				BREAKER_OPEN;
		}
	/* the summaries first: past SV_MAX_CHECKS, versions are dropped,
	 * never these */
	struct sv_check *c = add(k, "models", nv ? SV_CHECK_OK : SV_CHECK_FAIL,
				 1, nv ? "%d model versions loaded" :
				 "no model version is loaded", nv);
	set_num(c, nv);
	c = add(k, "breakers", nv && open == nv ? SV_CHECK_FAIL : open ?
		SV_CHECK_WARN : SV_CHECK_OK, 1, "%d of %d circuit breakers "
		"open%s", open, nv, nv && open == nv ? ": nothing can be "
		"served" : "");
	set_num(c, open);
	for (int i = 0; i < st->nm; i++)
		for (int j = 0; j < st->m[i].nv; j++) {
			struct mversion *mv = st->m[i].v[j];
			enum breaker_state b = breaker_state_get(&mv->brk);
			char name[160];
			snprintf(name, sizeof name, "model:%s:%s", mv->name,
				 mv->vstr);
			c = add(k, name, b == BREAKER_OPEN ? SV_CHECK_FAIL :
				b == BREAKER_HALF_OPEN ? SV_CHECK_WARN :
				SV_CHECK_OK, 0, "loaded; circuit breaker %s",
				breaker_state_name(b));
			set_str(c, breaker_state_name(b));
		}
	/* drift scores of versions no longer served are forgotten */
	pthread_mutex_lock(&o->mu);
	for (int d = 0; d < o->ndrift;) {
		int live = 0;
		for (int i = 0; i < st->nm && !live; i++)
			for (int j = 0; j < st->m[i].nv && !live; j++) {
				char key[200];
				snprintf(key, sizeof key, "%s:%s",
					 st->m[i].v[j]->name,
					 st->m[i].v[j]->vstr);
				live = !strcmp(key, o->drift[d].key);
			}
		if (live)
			d++;
		else
			o->drift[d] = o->drift[--o->ndrift];
	}
	pthread_mutex_unlock(&o->mu);
	sv_state_release(st);
}

static void check_resources(struct sv_ops *o, struct checks *k)
{
	const struct prom_process_values *r = &o->res;
	double lim = (double)o->mem_limit_bytes;
	int shed = atomic_load(&o->shedding);
	struct sv_check *c;
	if (lim > 0)
		c = add(k, "memory", shed ? SV_CHECK_FAIL : r->resident_bytes >
			0.9 * lim ? SV_CHECK_WARN : SV_CHECK_OK, 1,
			"resident %.1f MiB of memory_limit_mb %.0f%s",
			r->resident_bytes / 1048576.0, lim / 1048576.0, shed ?
			": shedding load (new inferences answered 503)" : "");
	else
		c = add(k, "memory", SV_CHECK_OK, 1, "resident %.1f MiB (no "
			"memory_limit_mb)", r->resident_bytes / 1048576.0);
	set_num(c, r->resident_bytes);
	double fr = r->max_fds > 0 && isfinite(r->max_fds) ?
		    r->open_fds / r->max_fds : 0;
	c = add(k, "open_fds", fr >= 0.95 ? SV_CHECK_FAIL : fr >= 0.8 ?
		SV_CHECK_WARN : SV_CHECK_OK, 1, "%.0f open of at most %.0f",
		r->open_fds, r->max_fds);
	set_num(c, r->open_fds);
	c = add(k, "cpu", SV_CHECK_OK, 0, "%.3f cores over the last interval "
		"(%.2f CPU seconds in all)", o->cpu_cores, r->cpu_seconds);
	set_num(c, o->cpu_cores);
}

static void check_audit(struct sv_ops *o, struct checks *k)
{
	struct server *srv = o->srv;
	const char *dir = srv->opts.cfg.audit_dir;
	if (!srv->audit) {
		add(k, "audit_log", SV_CHECK_OFF, 0, "no audit log (audit_dir "
		    "not set)");
		return;
	}
	double f = prom_value(srv->met.audit_fail, NULL);
	f = isnan(f) ? 0 : f;
	double new_f = f - o->audit_fail_prev;
	o->audit_fail_prev = f;
	struct statvfs sv;
	int writable = access(dir, W_OK) == 0;
	double free_b = statvfs(dir, &sv) == 0 ?
			(double)sv.f_bavail * (double)sv.f_frsize : NAN;
	struct sv_check *c;
	if (!writable)
		c = add(k, "audit_log", SV_CHECK_FAIL, 0, "%s is not writable",
			dir);
	else if (new_f > 0)
		c = add(k, "audit_log", SV_CHECK_FAIL, 0, "%.0f records failed "
			"since the last check", new_f);
	else if (free_b < 16.0 * 1048576)
		c = add(k, "audit_log", SV_CHECK_WARN, 0, "%.1f MiB free on the "
			"audit log's file system", free_b / 1048576.0);
	else
		c = add(k, "audit_log", SV_CHECK_OK, 0, "writable; %.0f MiB "
			"free", free_b / 1048576.0);
	set_num(c, f);
}

double sv_health_drift_max(struct sv_ops *o, int *have)
{
	double m = 0;
	*have = o->ndrift > 0;
	for (int i = 0; i < o->ndrift; i++)
		if (o->drift[i].score > m)
			m = o->drift[i].score;
	return m;
}

static void check_drift(struct sv_ops *o, struct checks *k)
{
	int have;
	pthread_mutex_lock(&o->mu);
	double m = sv_health_drift_max(o, &have);
	int n = o->ndrift;
	pthread_mutex_unlock(&o->mu);
	if (!have) {
		add(k, "drift", SV_CHECK_UNKNOWN, 0, "no drift score reported");
		return;
	}
	/* the drift monitor's levels (drift_psi_warn, drift_psi_crit) */
	const struct serve_config *cf = &o->srv->opts.cfg;
	struct sv_check *c = add(k, "drift", m > cf->drift_psi_crit ?
				 SV_CHECK_FAIL : m > cf->drift_psi_warn ?
				 SV_CHECK_WARN : SV_CHECK_OK, 0, "largest PSI "
				 "of %d model versions", n);
	set_num(c, m);
}

void sv_health_run(struct sv_ops *o, double now)
{
	static __thread struct sv_check work[SV_MAX_CHECKS];
	struct checks k = {0, work, sv_unix_ns()};
	(void)now;
	check_resources(o, &k);
	check_audit(o, &k);
	check_drift(o, &k);
	check_models(o, &k);	/* the per-version checks last */
	char why[200] = "";
	int ready = 1;
	for (int i = 0; i < k.n; i++) {
		const char *l[1] = {work[i].name};
		prom_set(o->m_check, l, (double)work[i].status);
		if (ready && work[i].readiness &&
		    work[i].status == SV_CHECK_FAIL) {
			ready = 0;
			snprintf(why, sizeof why, "%.60s: %.130s", work[i].name,
				 work[i].message);
		}
	}
	pthread_mutex_lock(&o->mu);
	memcpy(o->checks, work, (size_t)k.n * sizeof *work);
	o->nchecks = k.n;
	snprintf(o->not_ready, sizeof o->not_ready, "%s", why);
	atomic_store(&o->ready, ready);
	pthread_mutex_unlock(&o->mu);
	prom_set(o->m_ready, NULL, ready && !atomic_load(&o->srv->draining));
}

int sv_ops_ready(struct server *srv, char *why, size_t size)
{
	struct sv_ops *o = srv->ops;
	if (atomic_load(&srv->draining)) {
		snprintf(why, size, "the server is shutting down");
		return 0;
	}
	if (!o || atomic_load(&o->ready))
		return 1;
	pthread_mutex_lock(&o->mu);
	snprintf(why, size, "%s", o->not_ready);
	pthread_mutex_unlock(&o->mu);
	return 0;
}

void sv_ops_drift_report(struct server *srv, const char *model,
			 const char *version, double score)
{
	struct sv_ops *o = srv ? srv->ops : NULL;
	if (!o || !model || !version || isnan(score))
		return;
	char key[200];
	snprintf(key, sizeof key, "%s:%s", model, version);
	pthread_mutex_lock(&o->mu);
	int i = 0;
	while (i < o->ndrift && strcmp(o->drift[i].key, key))
		i++;
	if (score < 0) {
		if (i < o->ndrift)
			o->drift[i] = o->drift[--o->ndrift];
	} else if (i < o->ndrift || o->ndrift < SV_MAX_DRIFT) {
		if (i == o->ndrift)
			o->ndrift++;
		snprintf(o->drift[i].key, sizeof o->drift[i].key, "%s", key);
		o->drift[i].score = score;
	}
	pthread_mutex_unlock(&o->mu);
}

/* ---- GET /v2/health/details ---- */

static void iso(char *out, size_t size, int64_t ns)
{
	struct tm tm;
	time_t s = (time_t)(ns / 1000000000);
	gmtime_r(&s, &tm);
	size_t k = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, size - k, ".%03dZ", (int)(ns % 1000000000 / 1000000));
}

int sv_ops_health_details(struct server *srv, char **json, size_t *len)
{
	struct sv_ops *o = srv->ops;
	*json = NULL;
	if (!o)
		return -1;
	size_t cap = 1024 + (size_t)SV_MAX_CHECKS * 900 +
		     (size_t)ALERT_MAX_RULES * 400;
	char *b = pno_malloc(cap), why[200];
	if (!b)
		return -1;
	int ready = sv_ops_ready(srv, why, sizeof why);
	char esc[512], ts[40];
	sv_json_escape(esc, sizeof esc, ready ? "" : why);
	size_t k = (size_t)snprintf(b, cap, "{\"ready\":%s,\"reason\":\"%s\","
				    "\"load_shedding\":%s,\"checks\":[",
				    ready ? "true" : "false", esc,
				    atomic_load(&o->shedding) ? "true" :
				    "false");
	pthread_mutex_lock(&o->mu);
	k += (size_t)snprintf(b + k, cap - k, "%s", "");
	for (int i = 0; i < o->nchecks && k < cap; i++) {
		const struct sv_check *c = &o->checks[i];
		char name[2 * sizeof c->name], msg[2 * sizeof c->message];
		sv_json_escape(name, sizeof name, c->name);
		sv_json_escape(msg, sizeof msg, c->message);
		iso(ts, sizeof ts, c->last_run_ns);
		k += (size_t)snprintf(b + k, cap - k, "%s{\"name\":\"%s\","
				      "\"status\":\"%s\",\"value\":%s,"
				      "\"message\":\"%s\",\"last_run\":\"%s\","
				      "\"last_run_unix_ns\":%" PRId64 ","
				      "\"affects_readiness\":%s}", i ? "," : "",
				      name, sv_check_status_name(c->status),
				      c->value, msg, ts, c->last_run_ns,
				      c->readiness ? "true" : "false");
	}
	if (k < cap)
		k += (size_t)snprintf(b + k, cap - k, "],\"alerts\":[");
	for (int i = 0; i < o->eng.rules.n && k < cap; i++) {
		const struct alert_rule *r = &o->eng.rules.r[i];
		const struct alert_state *s = &o->eng.st[i];
		char v[40];
		if (isfinite(s->value))
			snprintf(v, sizeof v, "%.9g", s->value);
		else
			snprintf(v, sizeof v, "null");
		k += (size_t)snprintf(b + k, cap - k, "%s{\"name\":\"%s\","
				      "\"metric\":\"%s\",\"severity\":\"%s\","
				      "\"state\":\"%s\",\"value\":%s,\"fired\":"
				      "%" PRIu64 ",\"resolved\":%" PRIu64 "}",
				      i ? "," : "", r->name,
				      alert_metric_name(r->metric),
				      alert_severity_name(r->severity),
				      s->firing ? "firing" : s->pending ?
				      "pending" : "inactive", v, s->fired,
				      s->resolved);
	}
	if (k < cap)
		k += (size_t)snprintf(b + k, cap - k, "],\"interval_ms\":%d}",
				      o->interval_ms);
	pthread_mutex_unlock(&o->mu);
	if (k >= cap) {
		pno_free(b);
		return -1;
	}
	*json = b;
	*len = k;
	return 0;
}
