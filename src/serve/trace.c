/* W3C traceparent parsing and formatting, spans, OTLP/JSON encoding. */
#include "trace.h"
#include "../internal.h"

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* lower-case hex digit value, -1 otherwise (upper case is invalid) */
static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* n bytes from 2n hex characters; 0 on a bad character */
static int unhex(uint8_t *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval((unsigned char)s[2 * i]);
		int lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return 0;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 1;
}

static int all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int trace_parse(const char *v, size_t len, struct trace_context *out)
{
	struct trace_context c;
	uint8_t flags;
	memset(out, 0, sizeof *out);
	if (!v || len < TRACEPARENT_LEN)
		return 0;
	if (!unhex(&c.version, v, 1) || c.version == 0xff)
		return 0;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-')
		return 0;
	if (!unhex(c.trace_id, v + 3, 16) || !unhex(c.parent_id, v + 36, 8) ||
	    !unhex(&flags, v + 53, 1))
		return 0;
	if (c.version == 0 ? len != TRACEPARENT_LEN
			   : len > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-')
		return 0;
	if (all_zero(c.trace_id, 16) || all_zero(c.parent_id, 8))
		return 0;
	c.flags = flags & TRACE_FLAG_SAMPLED;
	*out = c;
	return 1;
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_setup(void)
{
	sodium_ok = sodium_init() >= 0;
}

enum pno_status trace_random_id(uint8_t *id, size_t n)
{
	pthread_once(&sodium_once, sodium_setup);
	if (!sodium_ok)
		return pno__errorf(PNO_STATUS_INTERNAL, "trace: sodium_init failed");
	do
		randombytes_buf(id, n);
	while (all_zero(id, n));
	return PNO_STATUS_OK;
}

void trace_hex(char *out, const uint8_t *id, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[id[i] >> 4];
		out[2 * i + 1] = d[id[i] & 15];
	}
	out[2 * n] = 0;
}

void trace_format(char out[TRACEPARENT_LEN + 1], const uint8_t trace_id[16],
		  const uint8_t span_id[8], uint8_t flags)
{
	out[0] = out[1] = '0';
	out[2] = out[35] = out[52] = '-';
	trace_hex(out + 3, trace_id, 16);
	out[35] = '-';
	trace_hex(out + 36, span_id, 8);
	out[52] = '-';
	trace_hex(out + 53, &flags, 1);
}

/* ---- spans ---- */

static void copy_trunc(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = 0;
}

enum pno_status trace_span_start(struct trace_span *sp, const char *name,
				 enum trace_kind kind,
				 const struct trace_span *parent,
				 const struct trace_context *in,
				 uint8_t new_flags, int64_t start_ns)
{
	if (!sp || !name)
		return pno__errorf(PNO_STATUS_INVALID, "trace_span_start: NULL span or name");
	struct trace_span s;
	memset(&s, 0, sizeof s);
	copy_trunc(s.name, sizeof s.name, name);
	s.kind = kind;
	s.start_ns = s.end_ns = start_ns;
	if (parent) {
		memcpy(s.trace_id, parent->trace_id, 16);
		memcpy(s.parent_id, parent->span_id, 8);
		s.has_parent = 1;
		s.flags = parent->flags;
	} else if (in && !all_zero(in->trace_id, 16) &&
		   !all_zero(in->parent_id, 8)) {
		memcpy(s.trace_id, in->trace_id, 16);
		memcpy(s.parent_id, in->parent_id, 8);
		s.has_parent = 1;
		s.flags = in->flags;
	} else {
		enum pno_status st = trace_random_id(s.trace_id, 16);
		if (st)
			return st;
		s.flags = new_flags & TRACE_FLAG_SAMPLED;
	}
	enum pno_status st = trace_random_id(s.span_id, 8);
	if (st)
		return st;
	*sp = s;
	return PNO_STATUS_OK;
}

void trace_span_end(struct trace_span *sp, int64_t end_ns,
		    enum trace_status status)
{
	sp->end_ns = end_ns;
	sp->status = status;
}

static struct trace_attr *attr_slot(struct trace_span *sp, const char *key,
				    enum pno_status *st)
{
	if (!sp || !key || !*key || strlen(key) >= TRACE_KEY_MAX) {
		*st = pno__errorf(PNO_STATUS_INVALID,
				  "trace: attribute key \"%.60s\" empty or longer than %d bytes",
				  key ? key : "(null)", TRACE_KEY_MAX - 1);
		return NULL;
	}
	if (sp->n_attrs >= TRACE_MAX_ATTRS) {
		*st = pno__errorf(PNO_STATUS_RANGE,
				  "trace: span \"%s\" already has %d attributes (%s)",
				  sp->name, TRACE_MAX_ATTRS, key);
		return NULL;
	}
	struct trace_attr *a = &sp->attrs[sp->n_attrs++];
	memset(a, 0, sizeof *a);
	copy_trunc(a->key, sizeof a->key, key);
	*st = PNO_STATUS_OK;
	return a;
}

enum pno_status trace_span_attr_str(struct trace_span *sp, const char *key,
				    const char *value)
{
	enum pno_status st;
	struct trace_attr *a = attr_slot(sp, key, &st);
	if (a)
		copy_trunc(a->s, sizeof a->s, value ? value : "");
	return st;
}

enum pno_status trace_span_attr_int(struct trace_span *sp, const char *key,
				    int64_t value)
{
	enum pno_status st;
	struct trace_attr *a = attr_slot(sp, key, &st);
	if (a) {
		a->is_int = 1;
		a->i = value;
	}
	return st;
}

void trace_span_traceparent(const struct trace_span *sp,
			    char out[TRACEPARENT_LEN + 1])
{
	trace_format(out, sp->trace_id, sp->span_id, sp->flags);
}

/* ---- OTLP/JSON ---- */

/* A JSON string of s with every byte that is not printable ASCII
 * replaced by '?': span names and attributes come from requests, and
 * jansson refuses invalid UTF-8 (which would read as out of memory). */
static json_t *jstr(const char *s)
{
	char buf[256];
	size_t n = 0;
	for (; s[n] && n < sizeof buf - 1; n++) {
		unsigned char c = (unsigned char)s[n];
		buf[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[n] = 0;
	return json_string(buf);
}

/* set o[key] = v, taking v's reference; 1 on failure (v released) */
static int put(json_t *o, const char *key, json_t *v)
{
	return !v || json_object_set_new(o, key, v) != 0;
}

static int add(json_t *arr, json_t *v)
{
	return !v || json_array_append_new(arr, v) != 0;
}

static json_t *kv_str(const char *key, const char *val)
{
	json_t *o = json_object(), *v = json_object();
	int bad = !o || !v;
	bad = bad || put(v, "stringValue", jstr(val));
	bad = bad || put(o, "key", jstr(key));
	if (!bad) {
		bad = put(o, "value", v);
		v = NULL;
	}
	json_decref(v);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *kv_int(const char *key, int64_t val)
{
	char num[24];
	snprintf(num, sizeof num, "%lld", (long long)val);
	json_t *o = json_object(), *v = json_object();
	int bad = !o || !v;
	bad = bad || put(v, "intValue", json_string(num));
	bad = bad || put(o, "key", jstr(key));
	if (!bad) {
		bad = put(o, "value", v);
		v = NULL;
	}
	json_decref(v);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *span_json(const struct trace_span *s)
{
	char tid[33], sid[17], pid[17], t0[24], t1[24];
	trace_hex(tid, s->trace_id, 16);
	trace_hex(sid, s->span_id, 8);
	trace_hex(pid, s->parent_id, 8);
	snprintf(t0, sizeof t0, "%lld", (long long)s->start_ns);
	snprintf(t1, sizeof t1, "%lld", (long long)s->end_ns);
	json_t *o = json_object(), *attrs = json_array(), *st = json_object();
	int bad = !o || !attrs || !st;
	bad = bad || put(o, "traceId", json_string(tid));
	bad = bad || put(o, "spanId", json_string(sid));
	if (s->has_parent)
		bad = bad || put(o, "parentSpanId", json_string(pid));
	bad = bad || put(o, "name", jstr(s->name));
	bad = bad || put(o, "kind", json_integer(s->kind));
	bad = bad || put(o, "startTimeUnixNano", json_string(t0));
	bad = bad || put(o, "endTimeUnixNano", json_string(t1));
	for (int i = 0; !bad && i < s->n_attrs && i < TRACE_MAX_ATTRS; i++) {
		const struct trace_attr *a = &s->attrs[i];
		bad = add(attrs, a->is_int ? kv_int(a->key, a->i)
					   : kv_str(a->key, a->s));
	}
	bad = bad || put(st, "code", json_integer(s->status));
	if (!bad) {
		bad = put(o, "attributes", attrs);
		attrs = NULL;
	}
	if (!bad) {
		bad = put(o, "status", st);
		st = NULL;
	}
	json_decref(attrs);
	json_decref(st);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* the document, or NULL when jansson ran out of memory */
static json_t *otlp_doc(const struct trace_span *spans, int n,
			const char *service)
{
	json_t *root = json_object(), *rs_arr = json_array(), *rs = json_object();
	json_t *res = json_object(), *rattrs = json_array(), *ss_arr = json_array();
	json_t *ss = json_object(), *scope = json_object(), *sp_arr = json_array();
	int bad = !root || !rs_arr || !rs || !res || !rattrs || !ss_arr ||
		  !ss || !scope || !sp_arr;
	for (int i = 0; !bad && i < n; i++)
		bad = add(sp_arr, span_json(&spans[i]));
	bad = bad || add(rattrs, kv_str("service.name", service));
	bad = bad || put(scope, "name", json_string("pno.serve"));
	bad = bad || put(scope, "version", json_string(PNO_VERSION_STRING));
	/* assemble bottom-up; each put takes a reference, so NULL the
	 * local once handed over */
#define HAND(obj, key, child)                                                 \
	if (!bad) {                                                           \
		bad = json_object_set_new(obj, key, child) != 0;              \
		child = NULL;                                                 \
	}
#define APPEND(arr, child)                                                    \
	if (!bad) {                                                           \
		bad = json_array_append_new(arr, child) != 0;                 \
		child = NULL;                                                 \
	}
	HAND(ss, "scope", scope);
	HAND(ss, "spans", sp_arr);
	APPEND(ss_arr, ss);
	HAND(res, "attributes", rattrs);
	HAND(rs, "resource", res);
	HAND(rs, "scopeSpans", ss_arr);
	APPEND(rs_arr, rs);
	HAND(root, "resourceSpans", rs_arr);
#undef HAND
#undef APPEND
	json_decref(rs_arr);
	json_decref(rs);
	json_decref(res);
	json_decref(rattrs);
	json_decref(ss_arr);
	json_decref(ss);
	json_decref(scope);
	json_decref(sp_arr);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

enum pno_status trace_otlp_json(const struct trace_span *spans, int n,
				const char *service, char **json, size_t *len)
{
	if (!json || n < 0 || (n > 0 && !spans) || !service)
		return pno__errorf(PNO_STATUS_INVALID,
				   "trace_otlp_json: bad arguments (n %d)", n);
	*json = NULL;
	pno__json_init();
	json_t *root = otlp_doc(spans, n, service);
	char *text = root ? pno__json_dumps(root, JSON_COMPACT |
					    JSON_PRESERVE_ORDER) : NULL;
	json_decref(root);
	if (!text || pno__json_oom()) {
		pno_free(text);
		return pno__errorf(PNO_STATUS_NOMEM,
				   "trace: out of memory encoding %d spans", n);
	}
	*json = text;
	if (len)
		*len = strlen(text);
	return PNO_STATUS_OK;
}
