/* The server's configuration table: defaults, JSON file, flags, checks,
 * reload diff and help, all driven by serve_config_keys. */
#include "config.h"
#include "../internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define KI(field, lo, hi, d, rel, h)                                          \
	{#field, CFG_INT, offsetof(struct serve_config, field), lo, hi, d,    \
	 rel, 0, h, sizeof(((struct serve_config *)0)->field), NULL}
#define KS(field, lo, d, rel, ch, h)                                          \
	{#field, CFG_STRING, offsetof(struct serve_config, field), lo,        \
	 sizeof(((struct serve_config *)0)->field) - 1, d, rel, 0, h,         \
	 sizeof(((struct serve_config *)0)->field), ch}

#define KD(field, lo, hi, d, rel, h)                                          \
	{#field, CFG_DOUBLE, offsetof(struct serve_config, field), lo, hi, d, \
	 rel, 0, h, sizeof(double), NULL}
#define KB(field, d, rel, h)                                                  \
	{#field, CFG_BOOL, offsetof(struct serve_config, field), 0, 1, d,     \
	 rel, 0, h, sizeof(int), NULL}

/* Reloadable: what the request path reads per request or per batch
 * (batching, samples, limits, timeouts, log level, retry-after). Not: what
 * is bound at start (listen address, thread pools, connection limit of the
 * HTTP daemon, the port file) and the repository, whose models are loaded
 * at start and held by in-flight requests; a new repository is a restart. */
const struct cfg_key serve_config_keys[] = {
	KS(repository, 0, "", 0, NULL,
	   "model repository directory (required)"),
	KS(host, 1, "127.0.0.1", 0, NULL, "listen address"),
	KI(port, 0, 65535, "8000", 0, "listen port (0: ephemeral)"),
	KI(threads, 1, 1024, "4", 0, "HTTP worker threads"),
	KI(compute_threads, 0, 1024, "0", 0,
	   "threads for inference (0: all cores)"),
	KI(max_connections, 1, 65536, "256", 0, "concurrent connections"),
	KI(connection_timeout_s, 1, 3600, "30", 1,
	   "idle connection timeout in seconds"),
	KI(max_body_bytes, 1024, 17179869184.0, "67108864", 1,
	   "largest request body in bytes"),
	KI(max_batch, 1, 4096, "8", 1, "dynamic batching: items per batch"),
	KI(max_queue_delay_us, 0, 10000000, "2000", 1,
	   "dynamic batching: longest wait for a batch to fill, microseconds"),
	KI(max_queue_size, 1, 1000000, "256", 1,
	   "queued items before requests get 503"),
	KI(default_samples, 1, 100000, "32", 1,
	   "num_samples when a request gives none"),
	KI(max_samples, 1, 100000, "1000", 1, "largest num_samples accepted"),
	KI(max_header_bytes, 1024, 1048576, "16384", 0,
	   "largest request line + headers in bytes (431 beyond)"),
	KI(max_json_depth, 8, 1024, "32", 1,
	   "deepest nesting of [ and { in an infer body"),
	KI(max_json_elements, 16, 1000000000, "16777216", 1,
	   "most array elements + object members in an infer body"),
	KI(max_total_samples, 1, 1000000000, "4096", 1,
	   "largest items x num_samples in one request"),
	KI(exit_timeout_s, 0, 3600, "30", 1,
	   "graceful shutdown bound in seconds"),
	KI(retry_after_s, 0, 3600, "1", 1, "Retry-After seconds on 503"),
	KS(log_level, 1, "info", 1, "debug|info|warning|error", "log level"),
	KS(port_file, 0, "", 0, NULL,
	   "write the bound port to this file (\"\": none)"),
	KB(auth, "true", 0, "require API keys or session tokens (false: "
	   "open server, warned at start)"),
	KS(keys_file, 0, "", 0, NULL, "API keys file (required when auth is "
	   "on; re-read on reload)"),
	KI(session_max, 1, 10000000, "10000", 0, "sessions held at once"),
	KI(session_ttl_s, 1, 604800, "3600", 0,
	   "session absolute lifetime in seconds"),
	KI(session_idle_s, 1, 604800, "900", 0,
	   "session idle timeout in seconds"),
	KD(rate_limit, 0, 1e9, "0", 0,
	   "requests per second per key (per address without auth); 0: off"),
	KI(rate_burst, 1, 1000000, "20", 0, "rate limit burst"),
	KI(rate_max_clients, 1, 100000000, "65536", 0,
	   "clients the rate limiter tracks (least recent evicted)"),
	KI(breaker_window, 1, 100000, "20", 0,
	   "circuit breaker: calls in the sliding window"),
	KI(breaker_min_calls, 1, 100000, "10", 0,
	   "circuit breaker: calls before it may open"),
	KD(breaker_failure_rate, 0.001, 1, "0.5", 0,
	   "circuit breaker: failure rate that opens it"),
	KD(breaker_slow_rate, 0.001, 1, "1", 0,
	   "circuit breaker: slow-call rate that opens it"),
	KI(breaker_slow_call_ms, 1, 3600000, "10000", 0,
	   "circuit breaker: a call slower than this is slow"),
	KI(breaker_wait_ms, 1, 3600000, "30000", 0,
	   "circuit breaker: time open before probes"),
	KI(breaker_probes, 1, 1000, "3", 0,
	   "circuit breaker: probe calls when half-open"),
	KS(gates_file, 0, "", 1, NULL,
	   "quality gates a version must pass to be served (\"\": none)"),
	KS(audit_dir, 0, "", 0, NULL, "audit log directory (\"\": no audit "
	   "log; needs audit_key_file)"),
	KS(audit_key_file, 0, "", 0, NULL, "audit log master key file (pno "
	   "audit keygen; needs audit_dir)"),
	KB(audit_fsync, "true", 0, "sync each audit record to disk before "
	   "the answer is sent"),
	KI(request_timeout_ms, 0, 3600000, "0", 1,
	   "deadline of a request in ms from its arrival (0: none)"),
	KI(max_request_timeout_ms, 1, 3600000, "60000", 1,
	   "largest Request-Timeout-Ms / timeout_ms a request may ask (400 "
	   "above)"),
	KD(degrade_queue_high_water, 0, 1000000, "0", 1,
	   "queued items at which num_samples is cut (below 1: a fraction "
	   "of max_queue_size; 0: off)"),
	KI(degrade_min_samples, 1, 100000, "8", 1,
	   "num_samples of a request degraded at the high-water mark"),
	KS(fallback, 1, "none", 1, "none|lower",
	   "where a default-version request goes when its breaker is open"),
	KI(drift_window, 0, 100000, "200", 0,
	   "drift monitor: inputs in the sliding window (0: off)"),
	KI(drift_points, 1, 4096, "64", 0,
	   "drift monitor: points sampled per input and channel"),
	KI(drift_every, 1, 1000000, "50", 0,
	   "drift monitor: inputs between evaluations (gauges, alerts)"),
	KD(drift_psi_warn, 0.001, 100, "0.1", 0,
	   "drift monitor: PSI above this warns"),
	KD(drift_psi_crit, 0.001, 100, "0.25", 0,
	   "drift monitor: PSI above this is critical"),
	KD(rollback_error_rate, 0, 1, "0", 1,
	   "automatic rollback: model-failure rate of a window over which "
	   "it is bad (0: off)"),
	KS(rollback_drift, 1, "off", 1, "off|warn|critical",
	   "automatic rollback: a drift level that makes a window bad"),
	KI(rollback_window, 1, 1000000, "100", 1,
	   "automatic rollback: requests per window"),
	KI(rollback_windows, 1, 1000, "3", 1,
	   "automatic rollback: consecutive bad windows that roll back"),
	/* operations: docs/serve/operations.md */
	KI(health_interval_ms, 10, 3600000, "1000", 1,
	   "health checks, resource sampling and alert evaluation: period in "
	   "milliseconds"),
	KI(memory_limit_mb, 0, 16777216, "0", 1,
	   "answer new inferences 503 while resident memory is above this "
	   "many MiB (0: off)"),
	KS(alerts_file, 0, "", 1, NULL, "alert rules, JSON (\"\": none)"),
	KI(alert_window_s, 1, 86400, "60", 1,
	   "alert window: error rate, p99 latency, latency baseline, seconds"),
	KS(alert_webhook_url, 0, "", 1, NULL,
	   "POST alerts firing and resolving here, http:// or https:// "
	   "(\"\": none)"),
	KS(trace_otlp_url, 0, "", 0, NULL, "OTLP/HTTP JSON trace collector, "
	   "http[s]://host:port/v1/traces (\"\": none)"),
	KS(trace_file, 0, "", 0, NULL,
	   "append exported spans here as OTLP/JSON lines (\"\": none)"),
	KI(trace_queue_spans, 16, 10000000, "8192", 0,
	   "spans waiting for export; more are dropped (counted)"),
	KI(trace_batch_spans, 1, 100000, "512", 0, "spans per export"),
	KI(trace_flush_ms, 10, 600000, "1000", 0,
	   "longest wait before a partial batch of spans is exported"),
	KS(trace_service_name, 1, "pno", 0, NULL,
	   "service.name of the exported spans"),
};
const int serve_config_nkeys =
	(int)(sizeof serve_config_keys / sizeof serve_config_keys[0]);

static const char *type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_INT: return "int";
	case CFG_DOUBLE: return "double";
	case CFG_BOOL: return "bool";
	case CFG_STRING: return "string";
	}
	return "?";
}

/* ---- field access ---- */

static int64_t get_int(const struct cfg_key *k, const void *base)
{
	const char *p = (const char *)base + k->offset;
	if (k->size == sizeof(int64_t)) {
		int64_t v;
		memcpy(&v, p, sizeof v);
		return v;
	}
	int v;
	memcpy(&v, p, sizeof v);
	return v;
}

static void put_int(const struct cfg_key *k, void *base, int64_t v)
{
	char *p = (char *)base + k->offset;
	if (k->size == sizeof(int64_t)) {
		memcpy(p, &v, sizeof v);
	} else {
		int i = (int)v;
		memcpy(p, &i, sizeof i);
	}
}

static double get_double(const struct cfg_key *k, const void *base)
{
	double v;
	memcpy(&v, (const char *)base + k->offset, sizeof v);
	return v;
}

static void fmt_num(char *out, size_t size, double v)
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		snprintf(out, size, "%.0f", v);
	else
		snprintf(out, size, "%.17g", v);
}

static void fmt_range(const struct cfg_key *k, char *out, size_t size)
{
	char lo[40], hi[40];
	fmt_num(lo, sizeof lo, k->min);
	fmt_num(hi, sizeof hi, k->max);
	if (k->type == CFG_BOOL)
		snprintf(out, size, "true|false");
	else if (k->type == CFG_STRING && k->choices)
		snprintf(out, size, "%s", k->choices);
	else if (k->type == CFG_STRING)
		snprintf(out, size, "length [%s, %s]", lo, hi);
	else
		snprintf(out, size, "[%s, %s]", lo, hi);
}

void serve_config_format(const struct cfg_key *k, const void *base, char *out,
			 size_t size)
{
	const char *p = (const char *)base + k->offset;
	switch (k->type) {
	case CFG_INT:
		snprintf(out, size, "%lld", (long long)get_int(k, base));
		break;
	case CFG_DOUBLE:
		fmt_num(out, size, get_double(k, base));
		break;
	case CFG_BOOL: {
		int b;
		memcpy(&b, p, sizeof b);
		snprintf(out, size, "%s", b ? "true" : "false");
		break;
	}
	case CFG_STRING:
		snprintf(out, size, "%.*s", (int)k->size, p);
		break;
	}
}

static int key_matches(const char *table, const char *name)
{
	for (; *table && *name; table++, name++)
		if (*table != (*name == '-' ? '_' : *name))
			return 0;
	return *table == *name;
}

static const struct cfg_key *find_key(const struct cfg_key *keys, int nkeys,
				      const char *name)
{
	if (!name)
		return NULL;
	if (strncmp(name, "--", 2) == 0)
		name += 2;
	for (int i = 0; i < nkeys; i++)
		if (key_matches(keys[i].name, name))
			return &keys[i];
	return NULL;
}

const struct cfg_key *serve_config_key(const char *name)
{
	return find_key(serve_config_keys, serve_config_nkeys, name);
}

/* ---- setting values ---- */

static enum pno_status out_of_range(const struct cfg_key *k, const char *src,
				    const char *shown)
{
	char range[96];
	fmt_range(k, range, sizeof range);
	return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": %s is out of "
			   "range %s", src, k->name, shown, range);
}

static enum pno_status set_int(const struct cfg_key *k, void *base,
			       int64_t v, const char *src)
{
	if ((double)v < k->min || (double)v > k->max) {
		char t[32];
		snprintf(t, sizeof t, "%lld", (long long)v);
		return out_of_range(k, src, t);
	}
	put_int(k, base, v);
	return PNO_STATUS_OK;
}

static enum pno_status set_double(const struct cfg_key *k, void *base,
				  double v, const char *src)
{
	if (!(v >= k->min && v <= k->max)) {
		char t[40];
		fmt_num(t, sizeof t, v);
		return out_of_range(k, src, t);
	}
	memcpy((char *)base + k->offset, &v, sizeof v);
	return PNO_STATUS_OK;
}

static enum pno_status set_string(const struct cfg_key *k, void *base,
				  const char *v, const char *src)
{
	size_t n = strlen(v);
	if (k->choices) {
		const char *c = k->choices;
		int ok = 0;
		for (;;) {
			const char *bar = strchr(c, '|');
			size_t len = bar ? (size_t)(bar - c) : strlen(c);
			if (len == n && strncmp(c, v, n) == 0) {
				ok = 1;
				break;
			}
			if (!bar)
				break;
			c = bar + 1;
		}
		if (!ok)
			return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": "
					   "\"%.64s\" is not one of %s", src,
					   k->name, v, k->choices);
	}
	if ((double)n > k->max || n + 1 > k->size)
		return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": the value "
				   "(%zu characters) is longer than %.0f", src,
				   k->name, n, k->max);
	if ((double)n < k->min)
		return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": the value "
				   "may not be empty", src, k->name);
	char *p = (char *)base + k->offset;
	memset(p, 0, k->size);
	memcpy(p, v, n);
	return PNO_STATUS_OK;
}

static enum pno_status set_bool(const struct cfg_key *k, void *base, int b)
{
	memcpy((char *)base + k->offset, &b, sizeof b);
	return PNO_STATUS_OK;
}

/* Strict decimal integer: optional '-', digits, nothing else. *overflow
 * set when the digits do not fit in int64. */
static int parse_int(const char *s, int64_t *v, int *overflow)
{
	int neg = *s == '-';
	const char *p = s + neg;
	uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
	*overflow = 0;
	if (!*p)
		return 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		unsigned d = (unsigned)(*p - '0');
		if (acc > (lim - d) / 10)
			*overflow = 1;
		else
			acc = acc * 10 + d;
	}
	*v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
	return 1;
}

/* Strict finite double: all of s consumed, no leading space. */
static int parse_double(const char *s, double *v)
{
	char *end;
	if (!*s || !(*s == '-' || *s == '+' || *s == '.' ||
		     (*s >= '0' && *s <= '9')))
		return 0;
	errno = 0;
	*v = strtod(s, &end);
	return *end == 0 && isfinite(*v);
}

static enum pno_status set_text(const struct cfg_key *k, void *base,
				const char *value, const char *src)
{
	switch (k->type) {
	case CFG_INT: {
		int64_t v;
		int overflow;
		if (!parse_int(value, &v, &overflow))
			return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": "
					   "\"%.64s\" is not an integer", src,
					   k->name, value);
		if (overflow)
			return out_of_range(k, src, value);
		return set_int(k, base, v, src);
	}
	case CFG_DOUBLE: {
		double v;
		if (!parse_double(value, &v))
			return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": "
					   "\"%.64s\" is not a finite number", src,
					   k->name, value);
		return set_double(k, base, v, src);
	}
	case CFG_BOOL:
		if (!strcmp(value, "true") || !strcmp(value, "1"))
			return set_bool(k, base, 1);
		if (!strcmp(value, "false") || !strcmp(value, "0"))
			return set_bool(k, base, 0);
		return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": \"%.64s\" "
				   "is not true or false", src, k->name, value);
	case CFG_STRING:
		return set_string(k, base, value, src);
	}
	return pno__errorf(PNO_STATUS_INTERNAL, "%s: key \"%s\": bad type", src,
			   k->name);
}

void cfg_table_defaults(const struct cfg_key *keys, int nkeys, void *base)
{
	for (int i = 0; i < nkeys; i++) {
		/* the table's defaults are tested to be valid */
		enum pno_status s = set_text(&keys[i], base, keys[i].def,
					     "default");
		(void)s;
	}
}

void serve_config_defaults(struct serve_config *c)
{
	memset(c, 0, sizeof *c);
	cfg_table_defaults(serve_config_keys, serve_config_nkeys, c);
}

enum pno_status cfg_table_set(const struct cfg_key *keys, int nkeys,
			      void *base, const char *name, const char *value,
			      const char *source)
{
	const char *src = source ? source : "config";
	if (!base || !name || !value)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL argument", src);
	const struct cfg_key *k = find_key(keys, nkeys, name);
	if (!k)
		return pno__errorf(PNO_STATUS_INVALID, "%s: unknown key \"%s\"",
				   src, name);
	return set_text(k, base, value, src);
}

enum pno_status serve_config_set(struct serve_config *c, const char *name,
				 const char *value, const char *source)
{
	return cfg_table_set(serve_config_keys, serve_config_nkeys, c, name,
			     value, source);
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

static enum pno_status set_json(const struct cfg_key *k, void *base,
				const json_t *v, const char *src)
{
	static const char *const want[] = {"an integer", "a number",
					   "true or false", "a string"};
	switch (k->type) {
	case CFG_INT:
		if (json_is_integer(v))
			return set_int(k, base, (int64_t)json_integer_value(v),
				       src);
		break;
	case CFG_DOUBLE:
		if (json_is_number(v))
			return set_double(k, base, json_number_value(v), src);
		break;
	case CFG_BOOL:
		if (json_is_boolean(v))
			return set_bool(k, base, json_is_true(v));
		break;
	case CFG_STRING:
		if (json_is_string(v)) {
			if (strlen(json_string_value(v)) != json_string_length(v))
				return pno__errorf(PNO_STATUS_INVALID, "%s: key "
						   "\"%s\": the string holds a NUL",
						   src, k->name);
			return set_string(k, base, json_string_value(v), src);
		}
		break;
	}
	return pno__errorf(PNO_STATUS_INVALID, "%s: key \"%s\": expected %s, "
			   "got %s", src, k->name, want[k->type], json_kind(v));
}

enum pno_status cfg_table_load_json(const struct cfg_key *keys, int nkeys,
				    void *base, size_t base_size,
				    const char *text, const char *source)
{
	const char *src = source ? source : "config";
	if (!base || !text)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL argument", src);
	enum pno_status s = PNO_STATUS_OK;
	void *copy = NULL;
	json_error_t err;
	/* the wrappers' allocation record, with duplicate keys rejected */
	pno__json_init();
	json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &err);
	if (pno__json_oom()) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory parsing JSON",
				src);
		goto cleanup;
	}
	if (!o) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: %s at line %d column %d",
				src, err.text, err.line, err.column);
		goto cleanup;
	}
	if (!json_is_object(o)) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: expected a JSON object "
				"of keys, got %s", src, json_kind(o));
		goto cleanup;
	}
	copy = pno_malloc(base_size);
	if (!copy) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", src);
		goto cleanup;
	}
	memcpy(copy, base, base_size);
	const char *name;
	json_t *v;
	json_object_foreach(o, name, v) {
		const struct cfg_key *k = NULL;
		for (int i = 0; i < nkeys && !k; i++)
			if (strcmp(keys[i].name, name) == 0)
				k = &keys[i];
		if (!k)
			s = pno__errorf(PNO_STATUS_INVALID, "%s: unknown key "
					"\"%.64s\"", src, name);
		else
			s = set_json(k, copy, v, src);
		if (s != PNO_STATUS_OK)
			goto cleanup;
	}
	memcpy(base, copy, base_size);
cleanup:
	pno_free(copy);
	json_decref(o);
	return s;
}

enum pno_status serve_config_load_file(struct serve_config *c,
				       const char *path)
{
	if (!c || !path)
		return pno__errorf(PNO_STATUS_INVALID, "config: NULL argument");
	char src[CFG_STR + 16];
	snprintf(src, sizeof src, "config %s", path);
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
				   : PNO_STATUS_IO, "%s: %s", src,
				   strerror(errno));
	enum pno_status s = PNO_STATUS_OK;
	char *text = NULL;
	long n = -1;
	if (fseek(fp, 0, SEEK_END) == 0)
		n = ftell(fp);
	if (n < 0 || fseek(fp, 0, SEEK_SET) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "%s: cannot read: %s", src,
				strerror(errno));
		goto cleanup;
	}
	if (n > (1 << 20)) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: %ld bytes is larger than "
				"a config file may be (1 MiB)", src, n);
		goto cleanup;
	}
	text = pno_malloc((size_t)n + 1);
	if (!text) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", src);
		goto cleanup;
	}
	if (fread(text, 1, (size_t)n, fp) != (size_t)n) {
		s = pno__errorf(PNO_STATUS_IO, "%s: short read", src);
		goto cleanup;
	}
	text[n] = 0;
	if (strlen(text) != (size_t)n) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: the file holds a NUL "
				"byte", src);
		goto cleanup;
	}
	s = cfg_table_load_json(serve_config_keys, serve_config_nkeys, c,
				sizeof *c, text, src);
cleanup:
	pno_free(text);
	fclose(fp);
	return s;
}

enum pno_status serve_config_check(const struct serve_config *c)
{
	if (!c)
		return pno__errorf(PNO_STATUS_INVALID, "config: NULL argument");
	if (!c->repository[0])
		return pno__errorf(PNO_STATUS_INVALID, "config: repository is not "
				   "set (--repository DIR or \"repository\" in "
				   "the config file)");
	if (c->auth && !c->keys_file[0])
		return pno__errorf(PNO_STATUS_INVALID, "config: auth is on and "
				   "keys_file is not set (set keys_file, or "
				   "auth false to serve without "
				   "authentication)");
	if (!c->audit_dir[0] != !c->audit_key_file[0])
		return pno__errorf(PNO_STATUS_INVALID, "config: %s is set and "
				   "%s is not (the audit log needs both)",
				   c->audit_dir[0] ? "audit_dir" :
				   "audit_key_file", c->audit_dir[0] ?
				   "audit_key_file" : "audit_dir");
	if (c->session_idle_s > c->session_ttl_s)
		return pno__errorf(PNO_STATUS_INVALID, "config: session_idle_s "
				   "(%d) exceeds session_ttl_s (%d)",
				   c->session_idle_s, c->session_ttl_s);
	if (c->breaker_min_calls > c->breaker_window)
		return pno__errorf(PNO_STATUS_INVALID, "config: "
				   "breaker_min_calls (%d) exceeds "
				   "breaker_window (%d)", c->breaker_min_calls,
				   c->breaker_window);
	if (c->request_timeout_ms > c->max_request_timeout_ms)
		return pno__errorf(PNO_STATUS_INVALID, "config: "
				   "request_timeout_ms (%d) exceeds "
				   "max_request_timeout_ms (%d)",
				   c->request_timeout_ms,
				   c->max_request_timeout_ms);
	if (c->drift_psi_warn > c->drift_psi_crit)
		return pno__errorf(PNO_STATUS_INVALID, "config: drift_psi_warn "
				   "(%g) exceeds drift_psi_crit (%g)",
				   c->drift_psi_warn, c->drift_psi_crit);
	if (c->default_samples > c->max_total_samples)
		return pno__errorf(PNO_STATUS_INVALID, "config: default_samples "
				   "(%d) exceeds max_total_samples (%d)",
				   c->default_samples, c->max_total_samples);
	if (c->default_samples > c->max_samples)
		return pno__errorf(PNO_STATUS_INVALID, "config: default_samples "
				   "(%d) exceeds max_samples (%d)",
				   c->default_samples, c->max_samples);
	return PNO_STATUS_OK;
}

/* ---- reload diff ---- */

static int field_differs(const struct cfg_key *k, const void *a,
			 const void *b)
{
	const char *pa = (const char *)a + k->offset;
	const char *pb = (const char *)b + k->offset;
	if (k->type == CFG_STRING)
		return strncmp(pa, pb, k->size) != 0;
	return memcmp(pa, pb, k->size) != 0;
}

int cfg_table_diff(const struct cfg_key *keys, int nkeys, const void *old,
		   const void *new_, void (*log)(void *ud, const char *line),
		   void *ud, const char **non_reloadable)
{
	int changed = 0;
	if (non_reloadable)
		*non_reloadable = NULL;
	if (!old || !new_)
		return 0;
	for (int i = 0; i < nkeys; i++) {
		const struct cfg_key *k = &keys[i];
		if (!field_differs(k, old, new_))
			continue;
		changed++;
		if (!k->reloadable && non_reloadable && !*non_reloadable)
			*non_reloadable = k->name;
		if (!log)
			continue;
		char a[CFG_STR + 8], b[CFG_STR + 8], line[2 * CFG_STR + 200];
		if (k->secret) {
			snprintf(line, sizeof line, "%s: (redacted) -> "
				 "(redacted)%s", k->name,
				 k->reloadable ? "" : " (needs a restart)");
		} else {
			serve_config_format(k, old, a, sizeof a);
			serve_config_format(k, new_, b, sizeof b);
			const char *q = k->type == CFG_STRING ? "\"" : "";
			snprintf(line, sizeof line, "%s: %s%s%s -> %s%s%s%s",
				 k->name, q, a, q, q, b, q,
				 k->reloadable ? "" : " (needs a restart)");
		}
		log(ud, line);
	}
	return changed;
}

int serve_config_diff(const struct serve_config *old,
		      const struct serve_config *new_,
		      void (*log)(void *ud, const char *line), void *ud,
		      const char **non_reloadable)
{
	return cfg_table_diff(serve_config_keys, serve_config_nkeys, old, new_,
			      log, ud, non_reloadable);
}

/* ---- help and docs ---- */

static void flag_name(const struct cfg_key *k, char *out, size_t size)
{
	size_t i = 0;
	for (; k->name[i] && i + 1 < size; i++)
		out[i] = k->name[i] == '_' ? '-' : k->name[i];
	out[i] = 0;
}

static void shown_default(const struct cfg_key *k, char *out, size_t size)
{
	if (k->type == CFG_STRING)
		snprintf(out, size, "\"%s\"", k->def);
	else
		snprintf(out, size, "%s", k->def);
}

void serve_config_help(FILE *out)
{
	if (!out)
		return;
	int wf = 0, wr = 0, wd = 0;
	char flag[80], range[96], def[CFG_STR];
	for (int i = 0; i < serve_config_nkeys; i++) {
		const struct cfg_key *k = &serve_config_keys[i];
		flag_name(k, flag, sizeof flag);
		fmt_range(k, range, sizeof range);
		shown_default(k, def, sizeof def);
		wf = PNO__MAX(wf, (int)strlen(flag));
		wr = PNO__MAX(wr, (int)strlen(range));
		wd = PNO__MAX(wd, (int)strlen(def));
	}
	fprintf(out, "configuration (--key value, or \"key\": value in a JSON "
		"config file):\n");
	for (int i = 0; i < serve_config_nkeys; i++) {
		const struct cfg_key *k = &serve_config_keys[i];
		flag_name(k, flag, sizeof flag);
		fmt_range(k, range, sizeof range);
		shown_default(k, def, sizeof def);
		fprintf(out, "  --%-*s  %-6s  %-*s  default %-*s  %-12s  %s\n",
			wf, flag, type_name(k->type), wr, range, wd, def,
			k->reloadable ? "(reloadable)" : "", k->help);
	}
}

/* '|' would end a markdown table cell */
static void md_cell(char *out, size_t size, const char *s)
{
	size_t j = 0;
	for (; *s && j + 3 < size; s++) {
		if (*s == '|')
			out[j++] = '\\';
		out[j++] = *s;
	}
	out[j] = 0;
}

void serve_config_doc_row(const struct cfg_key *k, char *out, size_t size)
{
	char range[96], def[CFG_STR], r[200], h[400];
	fmt_range(k, range, sizeof range);
	shown_default(k, def, sizeof def);
	md_cell(r, sizeof r, range);
	md_cell(h, sizeof h, k->help);
	snprintf(out, size, "| `%s` | %s | %s | `%s` | %s | %s |", k->name,
		 type_name(k->type), r, def, k->reloadable ? "yes" : "no", h);
}
