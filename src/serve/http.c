/* HTTP: the libmicrohttpd daemon, routing of the v2 protocol's paths, the
 * body reader (413 before reading an over-long body), and the endpoints
 * that are not inference (health, metadata, metrics, repository). */
#include "serve_internal.h"

#include <microhttpd.h>
#include <sodium.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum route {
	R_NONE,
	R_LIVE,
	R_READY,
	R_HEALTH_DETAILS,	/* admin: the scheduled checks (ops.h) */
	R_SERVER,
	R_METRICS,
	R_MODEL,		/* metadata */
	R_MODEL_READY,
	R_INFER,
	R_REPO_INDEX,
	R_REPO_LOAD,
	R_REPO_UNLOAD,
	R_SESSIONS,		/* POST create, DELETE revoke */
};

/* ---- request pool: buffers survive from one request to the next ---- */

#define POOL_KEEP 256
#define POOL_KEEP_BYTES (16u << 20)	/* larger buffers are not kept */

static struct req *req_get(struct server *srv)
{
	struct req *r;
	pthread_mutex_lock(&srv->pool_mu);
	r = srv->pool;
	if (r) {
		srv->pool = r->next;
		srv->pool_n--;
	}
	pthread_mutex_unlock(&srv->pool_mu);
	if (!r && !(r = pno_calloc(1, sizeof *r)))
		return NULL;
	char *body = r->body, *resp = r->resp, *arena = r->arena;
	float *x = r->x, *y = r->y;
	size_t bc = r->body_cap, rc = r->resp_cap, xc = r->x_cap;
	size_t yc = r->y_cap, ac = r->arena_cap;
	memset(r, 0, sizeof *r);
	r->body = body, r->resp = resp, r->x = x, r->y = y, r->arena = arena;
	r->body_cap = bc, r->resp_cap = rc, r->x_cap = xc, r->y_cap = yc;
	r->arena_cap = ac;
	r->srv = srv;
	return r;
}

static void req_free(struct req *r)
{
	pno_free(r->body);
	pno_free(r->resp);
	pno_free(r->x);
	pno_free(r->y);
	pno_free(r->arena);
	pno_free(r);
}

static void req_put(struct server *srv, struct req *r)
{
	if (r->body_cap > POOL_KEEP_BYTES || r->resp_cap > POOL_KEEP_BYTES ||
	    r->x_cap * 4 > POOL_KEEP_BYTES || r->y_cap * 4 > POOL_KEEP_BYTES ||
	    r->arena_cap > SV_ARENA_MAX) {
		req_free(r);
		return;
	}
	pthread_mutex_lock(&srv->pool_mu);
	if (srv->pool_n < POOL_KEEP) {
		r->next = srv->pool;
		srv->pool = r;
		srv->pool_n++;
		r = NULL;
	}
	pthread_mutex_unlock(&srv->pool_mu);
	if (r)
		req_free(r);
}

/* ---- responses ---- */

static const char *endpoint_name(int rt)
{
	return rt == R_INFER ? "infer" : rt == R_METRICS ? "metrics" :
	       rt == R_SESSIONS ? "sessions" :
	       rt >= R_REPO_INDEX ? "repository" : rt == R_NONE ? "unknown" :
	       "health_metadata";
}

/* counted when the answer is queued, so a client that has its answer
 * sees it in /metrics */
static void count(struct req *r, int status)
{
	struct server *srv = r->srv;
	char code[8];
	snprintf(code, sizeof code, "%d", status);
	const char *hl[2] = {endpoint_name(r->route), code};
	prom_inc(srv->met.http_requests, hl, 1);
	if (r->route == R_INFER && r->model[0]) {
		const char *lv[3] = {r->model, r->version, code};
		prom_inc(srv->met.requests, lv, 1);
		if (r->mv)
			prom_observe(srv->met.req_dur, lv,
				     sv_now() - r->t_start);
		sv_ops_request_done(r, status);
	}
}

static void client_addr(struct MHD_Connection *c, char *out, size_t size);

/* the audit record an answer gets (-1: none): every answer of an audited
 * kind, whoever asked (docs/serve/audit.md) */
static int audit_kind(const struct req *r, int status)
{
	if (status == 401 || status == 403)
		return AUDIT_EVENT_AUTH_FAILURE;
	if (status == 429)
		return AUDIT_EVENT_RATE_LIMITED;
	if (status == 413 || status == 431 || status == 405 ||
	    r->route == R_NONE)
		return AUDIT_EVENT_SECURITY_EVENT;
	switch (r->route) {
	case R_INFER:	/* a malformed body is a rejected request */
		return status == 400 ? AUDIT_EVENT_SECURITY_EVENT
				     : AUDIT_EVENT_INFER;
	case R_REPO_INDEX:
		return AUDIT_EVENT_RELOAD;
	case R_REPO_LOAD:
		return AUDIT_EVENT_LOAD;
	case R_REPO_UNLOAD:
		return AUDIT_EVENT_UNLOAD;
	case R_SESSIONS:
		return status == 400 ? AUDIT_EVENT_SECURITY_EVENT
				     : AUDIT_EVENT_SESSION;
	default:
		return -1;
	}
}

static const char audit_refusal[] = "{\"error\":\"audit log unavailable\"}";

/* Record the answer before it is sent. An inference answered 200 whose
 * record cannot be written becomes a 503 (fail closed): returns 1 then,
 * and the caller sends audit_refusal instead. */
static int audit_answer(struct req *r, int status, const char *buf,
			size_t len)
{
	int t = r->srv->audit ? audit_kind(r, status) : -1;
	if (t < 0)
		return 0;
	char addr[64], det[SV_ERR_MAX + 64] = "";
	client_addr(r->conn, addr, sizeof addr);
	if (t == AUDIT_EVENT_AUTH_FAILURE && r->auth_reason)
		snprintf(det, sizeof det, "%s", r->auth_reason);
	else if (status >= 400)
		snprintf(det, sizeof det, "%s", r->err);
	else if (r->route == R_SESSIONS)
		snprintf(det, sizeof det, "%s", r->principal_session ?
			 "revoke" : "create");
	int bad = sv_audit_request(r, (enum audit_event_type)t, addr, status,
				   det, buf, len);
	return bad && r->route == R_INFER && status == 200;
}

/* persistent: buf is r->resp (or static), kept until the request
 * completes (on_completed pools it), so MHD sends it without a copy */
static enum MHD_Result send_buf_mode(struct req *r, int status,
				     const char *ctype, const char *buf,
				     size_t len, int persistent)
{
	if (audit_answer(r, status, buf, len)) {
		status = 503;
		ctype = "application/json";
		buf = audit_refusal;
		len = sizeof audit_refusal - 1;
		r->json_len = 0;
		snprintf(r->err, sizeof r->err, "audit log unavailable");
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		len, (void *)buf, persistent ? MHD_RESPMEM_PERSISTENT
					     : MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	char tp[TRACEPARENT_LEN + 1];
	if (sv_ops_traceparent(r, tp))
		MHD_add_response_header(resp, "traceparent", tp);
	if (status == 503 || status == 429 || status == 504) {
		char ra[16];
		snprintf(ra, sizeof ra, "%d", r->retry_after > 0 ?
			 r->retry_after : atomic_load(&r->srv->retry_after));
		MHD_add_response_header(resp, "Retry-After", ra);
	}
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate",
					"Bearer realm=\"pno\"");
	if (status == 405)
		MHD_add_response_header(resp, "Allow",
					r->route == R_SESSIONS ? "POST, DELETE" :
					r->route == R_INFER ||
					r->route >= R_REPO_INDEX ? "POST"
								 : "GET");
	if (r->json_len && r->json_len < len) {
		char hl[32];
		snprintf(hl, sizeof hl, "%zu", r->json_len);
		MHD_add_response_header(resp, "Inference-Header-Content-Length",
					hl);
	}
	r->status = status;
	count(r, status);
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status,
						 resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_buf(struct req *r, int status, const char *ctype,
				const char *buf, size_t len)
{
	return send_buf_mode(r, status, ctype, buf, len, 0);
}

static enum MHD_Result send_json(struct req *r, int status, const char *text)
{
	return send_buf(r, status, "application/json", text, strlen(text));
}

static enum MHD_Result send_error(struct req *r, int status, const char *fmt,
				  ...) __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(struct req *r, int status, const char *fmt,
				  ...)
{
	char msg[SV_ERR_MAX], esc[2 * SV_ERR_MAX + 16], body[sizeof esc + 16];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sv_json_escape(esc, sizeof esc, msg);
	snprintf(body, sizeof body, "{\"error\":\"%s\"}", esc);
	snprintf(r->err, sizeof r->err, "%s", msg);
	return send_json(r, status, body);
}

/* ---- routing ---- */

/* split url into at most 8 segments */
static int split(const char *url, const char *seg[8], size_t len[8])
{
	int n = 0;
	const char *p = url;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *q = p;
		while (*q && *q != '/')
			q++;
		if (n == 8)
			return -1;
		seg[n] = p;
		len[n++] = (size_t)(q - p);
		p = q;
	}
	return n;
}

static int is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && !strncmp(s, lit, n);
}

/* route, and copies model/version names into r; R_NONE if unknown */
static enum route route(struct req *r, const char *url)
{
	const char *s[8];
	size_t l[8];
	int n = split(url, s, l);
	if (n == 1 && is(s[0], l[0], "metrics"))
		return R_METRICS;
	if (n < 1 || !is(s[0], l[0], "v2"))
		return R_NONE;
	if (n == 1)
		return R_SERVER;
	if (n == 2 && is(s[1], l[1], "sessions"))
		return R_SESSIONS;
	if (n == 3 && is(s[1], l[1], "health"))
		return is(s[2], l[2], "live") ? R_LIVE :
		       is(s[2], l[2], "ready") ? R_READY :
		       is(s[2], l[2], "details") ? R_HEALTH_DETAILS : R_NONE;
	if (is(s[1], l[1], "repository")) {
		if (n == 3 && is(s[2], l[2], "index"))
			return R_REPO_INDEX;
		if (n == 5 && is(s[2], l[2], "models") &&
		    !sv_valid_name(s[3], l[3])) {
			r->bad_name = 1;
			return R_NONE;
		}
		if (n == 5 && is(s[2], l[2], "models")) {
			snprintf(r->model, sizeof r->model, "%.*s", (int)l[3],
				 s[3]);
			return is(s[4], l[4], "load") ? R_REPO_LOAD :
			       is(s[4], l[4], "unload") ? R_REPO_UNLOAD
							: R_NONE;
		}
		return R_NONE;
	}
	if (n < 3 || !is(s[1], l[1], "models"))
		return R_NONE;
	if (!sv_valid_name(s[2], l[2])) {
		r->bad_name = 1;	/* before any repository lookup */
		return R_NONE;
	}
	snprintf(r->model, sizeof r->model, "%.*s", (int)l[2], s[2]);
	int k = 3;
	if (n >= 5 && is(s[3], l[3], "versions")) {
		r->bad_name = 1;
		if (l[4] == 0 || l[4] >= sizeof r->version)
			return R_NONE;
		for (size_t i = 0; i < l[4]; i++)
			if (s[4][i] < '0' || s[4][i] > '9')
				return R_NONE;
		r->bad_name = 0;
		snprintf(r->version, sizeof r->version, "%.*s", (int)l[4],
			 s[4]);
		k = 5;
	}
	if (n == k)
		return R_MODEL;
	if (n == k + 1 && is(s[k], l[k], "ready"))
		return R_MODEL_READY;
	if (n == k + 1 && is(s[k], l[k], "infer"))
		return R_INFER;
	return R_NONE;
}

static int route_is_post(enum route rt)
{
	return rt == R_INFER || rt == R_REPO_INDEX || rt == R_REPO_LOAD ||
	       rt == R_REPO_UNLOAD;
}

/* ---- endpoints ---- */

static enum MHD_Result not_found(struct req *r, const struct serve_state *st)
{
	const struct refusal *rf = sv_state_refusal(st, r->model, r->version);
	const struct smodel *sm = sv_state_model(st, r->model);
	if (rf && (r->version[0] || !sm || sm->nv == 0))
		return send_error(r, 404, "model \"%s\" version %s is not "
				  "served: refused by the quality gates (%s)",
				  r->model, rf->vstr, rf->reason);
	if (!sm)
		return send_error(r, 404, "model \"%s\" not found", r->model);
	return send_error(r, 404, "model \"%s\" has no version %s", r->model,
			  r->version);
}

/* (-1[, -1], C, X[, Y]) */
static void put_shape(char *b, size_t size, size_t *k, int dims, int C, int X,
		      int Y, int samples)
{
	*k += (size_t)snprintf(b + *k, size - *k, "[-1,%s%d,%d", samples ?
			       "-1," : "", C, X);
	if (dims == 2)
		*k += (size_t)snprintf(b + *k, size - *k, ",%d", Y);
	*k += (size_t)snprintf(b + *k, size - *k, "]");
}

static enum MHD_Result model_metadata(struct req *r, struct serve_state *st)
{
	const struct smodel *sm = sv_state_model(st, r->model);
	struct mversion *mv = sv_state_version(st, r->model, r->version);
	char b[8192];
	size_t k = 0;
	if (!mv)
		return not_found(r, st);
	const struct pno_model *m = &mv->model;
	k += (size_t)snprintf(b + k, sizeof b - k, "{\"name\":\"%s\","
			      "\"versions\":[", mv->name);
	for (int i = 0; i < sm->nv; i++)
		if (!r->version[0] || sm->v[i] == mv)
			k += (size_t)snprintf(b + k, sizeof b - k, "%s\"%s\"",
					      k && b[k - 1] == '[' ? "" : ",",
					      sm->v[i]->vstr);
	k += (size_t)snprintf(b + k, sizeof b - k, "],\"platform\":\"pno\","
			      "\"inputs\":[{\"name\":\"input\",\"datatype\":"
			      "\"FP32\",\"shape\":");
	put_shape(b, sizeof b, &k, m->dims, m->in_ch, m->X, m->Y, 0);
	k += (size_t)snprintf(b + k, sizeof b - k, "}],\"outputs\":[");
	const char *outs[] = {"mean", "std", "quantile_<level>", "samples",
			      "aleatoric_variance", "epistemic_variance"};
	int nout = m->has_variance ? 6 : 4;
	/* only the load-time fields of m: the worker changes the rest */
	for (int i = 0; i < nout; i++) {
		k += (size_t)snprintf(b + k, sizeof b - k, "%s{\"name\":\"%s\","
				      "\"datatype\":\"FP32\",\"shape\":",
				      i ? "," : "", outs[i]);
		put_shape(b, sizeof b, &k, m->dims, m->out_ch, m->X, m->Y,
			  i == 3);
		k += (size_t)snprintf(b + k, sizeof b - k, "}");
	}
	k += (size_t)snprintf(b + k, sizeof b - k,
			      "],\"parameters\":{\"version\":\"%s\",\"method\":"
			      "\"%s\",\"dims\":%d,\"stochastic\":%s,"
			      "\"decomposition\":%s,\"conformal\":%s,"
			      "\"default_samples\":%d,\"max_samples\":%d",
			      mv->vstr, m->method, m->dims,
			      m->stochastic ? "true" : "false",
			      m->has_variance ? "true" : "false",
			      m->conformal.present ? "true" : "false",
			      st->cfg.default_samples, st->cfg.max_samples);
	/* versions the quality gates kept back, with why (the last 4) */
	if (!r->version[0] && sv_state_refusal(st, mv->name, NULL)) {
		int shown = 0, total = 0;
		for (int i = 0; i < st->nrefused; i++)
			total += !strcmp(st->refused[i].name, mv->name);
		k += (size_t)snprintf(b + k, sizeof b - k,
				      ",\"refused_versions\":[");
		for (int i = 0; i < st->nrefused && k < sizeof b; i++) {
			const struct refusal *rf = &st->refused[i];
			char esc[2 * SV_ERR_MAX];
			if (strcmp(rf->name, mv->name) || total-- > 4)
				continue;
			sv_json_escape(esc, sizeof esc, rf->reason);
			k += (size_t)snprintf(b + k, sizeof b - k, "%s{\"version"
					      "\":\"%s\",\"reason\":\"%s\"}",
					      shown++ ? "," : "", rf->vstr, esc);
		}
		if (k < sizeof b)
			k += (size_t)snprintf(b + k, sizeof b - k, "]");
	}
	if (k < sizeof b)
		k += (size_t)snprintf(b + k, sizeof b - k, "}}");
	if (k >= sizeof b)
		return send_error(r, 500, "metadata too long");
	return send_json(r, 200, b);
}

static enum MHD_Result metrics(struct req *r)
{
	char *text = NULL;
	size_t len = 0;
	if (prom_expose(r->srv->met.reg, &text, &len) != PNO_STATUS_OK)
		return send_error(r, 503, "out of memory for the metrics");
	enum MHD_Result ret = send_buf(r, 200, "text/plain; version=0.0.4; "
				       "charset=utf-8", text, len);
	pno_free(text);
	return ret;
}

static enum MHD_Result repository(struct req *r, enum route rt)
{
	struct server *srv = r->srv;
	char err[SV_ERR_MAX];
	const char *load = rt == R_REPO_LOAD ? r->model : NULL;
	const char *unload = rt == R_REPO_UNLOAD ? r->model : NULL;
	if (sv_reload(srv, rt == R_REPO_INDEX ? "index" : load ? "load" :
		      "unload", load, unload, err, sizeof err))
		return send_error(r, strstr(err, "not found") ? 404 : 400,
				  "%s", err);
	if (rt != R_REPO_INDEX)
		return send_json(r, 200, "{}");
	struct serve_state *st = sv_state_get(srv);
	size_t cap = 256 + 32 * (SV_NAME_MAX + 80), k;
	for (int i = 0; i < st->nm; i++)
		cap += (size_t)st->m[i].nv * (SV_NAME_MAX + 64);
	cap += (size_t)st->nrefused * (SV_NAME_MAX + 4 * SV_ERR_MAX);
	char *b = pno_malloc(cap);
	if (!b) {
		sv_state_release(st);
		return send_error(r, 503, "the reload was applied; out of "
				  "memory listing the index");
	}
	k = (size_t)snprintf(b, cap, "[");
	for (int i = 0; i < st->nm; i++)
		for (int j = 0; j < st->m[i].nv; j++)
			k += (size_t)snprintf(b + k, cap - k, "%s{\"name\":"
					      "\"%s\",\"version\":\"%s\","
					      "\"state\":\"READY\"}",
					      k > 1 ? "," : "", st->m[i].name,
					      st->m[i].v[j]->vstr);
	for (int i = 0; i < st->nrefused; i++) {
		char esc[2 * SV_ERR_MAX];
		sv_json_escape(esc, sizeof esc, st->refused[i].reason);
		k += (size_t)snprintf(b + k, cap - k, "%s{\"name\":\"%s\","
				      "\"version\":\"%s\",\"state\":"
				      "\"UNAVAILABLE\",\"reason\":\"refused by "
				      "the quality gates: %s\"}", k > 1 ? "," :
				      "", st->refused[i].name,
				      st->refused[i].vstr, esc);
	}
	pthread_mutex_lock(&srv->reload_mu);
	for (int i = 0; i < srv->n_unloaded; i++)
		k += (size_t)snprintf(b + k, cap - k, "%s{\"name\":\"%s\","
				      "\"state\":\"UNAVAILABLE\",\"reason\":"
				      "\"unloaded\"}", k > 1 ? "," : "",
				      srv->unloaded[i]);
	pthread_mutex_unlock(&srv->reload_mu);
	snprintf(b + k, cap - k, "]");
	sv_state_release(st);
	enum MHD_Result ret = send_json(r, 200, b);
	pno_free(b);
	return ret;
}

static enum MHD_Result get_endpoint(struct req *r, enum route rt)
{
	struct server *srv = r->srv;
	int draining = atomic_load(&srv->draining);
	switch (rt) {
	case R_LIVE:
		return send_json(r, 200, "{\"live\":true}");
	case R_READY: {
		/* the last scheduled checks, not a check per probe */
		char why[256], esc[600], b[700];
		if (sv_ops_ready(srv, why, sizeof why))
			return send_json(r, 200, "{\"ready\":true}");
		sv_json_escape(esc, sizeof esc, why);
		snprintf(b, sizeof b, "{\"ready\":false,\"reason\":\"%s\"}",
			 esc);
		return send_json(r, 503, b);
	}
	case R_HEALTH_DETAILS: {
		char *text = NULL;
		size_t len = 0;
		if (sv_ops_health_details(srv, &text, &len))
			return send_error(r, 503, "health details unavailable");
		enum MHD_Result ret = send_json(r, 200, text);
		pno_free(text);
		return ret;
	}
	case R_SERVER:
		return send_json(r, 200, "{\"name\":\"pno\",\"version\":\""
				 PNO_VERSION_STRING "\",\"extensions\":["
				 "\"binary_tensor_data\",\"model_repository\","
				 "\"parameters\"]}");
	case R_METRICS:
		return metrics(r);
	default:
		break;
	}
	struct serve_state *st = sv_state_get(srv);
	enum MHD_Result ret;
	struct mversion *mv = sv_state_version(st, r->model, r->version);
	if (rt == R_MODEL) {
		ret = model_metadata(r, st);
	} else if (!mv) {
		ret = not_found(r, st);
	} else {
		char b[SV_NAME_MAX + 64];
		snprintf(b, sizeof b, "{\"name\":\"%s\",\"version\":\"%s\","
			 "\"ready\":%s}", mv->name, mv->vstr,
			 draining ? "false" : "true");
		ret = send_json(r, draining ? 503 : 200, b);
	}
	sv_state_release(st);
	return ret;
}

/* ---- authentication, authorization, rate limit ---- */

/* the role a route needs; -1: open (health probes, metrics) */
static int route_role(enum route rt)
{
	switch (rt) {
	case R_LIVE: case R_READY: case R_METRICS: case R_NONE:
		return -1;
	case R_REPO_INDEX: case R_REPO_LOAD: case R_REPO_UNLOAD:
	case R_HEALTH_DETAILS:
		return AUTH_ROLE_ADMIN;
	case R_SESSIONS:
		return 0;	/* any valid key */
	default:
		return AUTH_ROLE_INFER;
	}
}

static void client_addr(struct MHD_Connection *c, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(out, size, "?");
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  out, (socklen_t)size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)size);
}

/* Authenticate, authorize and rate-limit a request whose route needs it;
 * 1 if it was answered (through *ret), 0 to go on. The reason of a
 * refusal goes to the log, never to the client. */
static int guard(struct req *r, const char *authz, enum MHD_Result *ret)
{
	struct server *srv = r->srv;
	int role = route_role((enum route)r->route);
	if (role < 0)
		return 0;
	if (srv->auth) {
		struct auth_principal p;
		enum auth_result a = serve_authenticate(srv->auth, srv->sessions,
							authz, (unsigned)role,
							&p);
		r->auth_reason = p.reason;
		if (a != AUTH_UNAUTHENTICATED)
			snprintf(r->principal, sizeof r->principal, "%s",
				 p.name);
		if (a == AUTH_UNAUTHENTICATED) {
			const char *lv[1] = {"401"};
			prom_inc(srv->met.auth_fail, lv, 1);
			*ret = send_error(r, 401, "missing or invalid "
					  "credentials (Authorization: Bearer "
					  "<API key or session token>)");
			return 1;
		}
		if (a == AUTH_FORBIDDEN) {
			const char *lv[1] = {"403"};
			char need[32];
			auth_roles_str(need, sizeof need, (unsigned)role);
			prom_inc(srv->met.auth_fail, lv, 1);
			*ret = send_error(r, 403, "key \"%s\" lacks the %s role",
					  p.name, need);
			return 1;
		}
		if (r->route == R_SESSIONS)
			r->principal_session = p.session;
	}
	if (srv->rl) {
		char addr[INET6_ADDRSTRLEN + 1];
		int ra = 0, ok;
		if (srv->auth) {
			ok = ratelimit_check(srv->rl, "key", r->principal, &ra);
		} else {
			client_addr(r->conn, addr, sizeof addr);
			ok = ratelimit_check(srv->rl, "addr", addr, &ra);
		}
		if (!ok) {
			prom_inc(srv->met.rate_limited, NULL, 1);
			r->retry_after = ra;
			*ret = send_error(r, 429, "rate limit exceeded (%g "
					  "requests/s, burst %d): retry after "
					  "%d s", srv->opts.cfg.rate_limit,
					  srv->opts.cfg.rate_burst, ra);
			return 1;
		}
	}
	return 0;
}

/* POST /v2/sessions with an API key: a session token; DELETE with the
 * token: revoke it. */
static enum MHD_Result sessions(struct req *r, int post, const char *authz)
{
	struct server *srv = r->srv;
	if (!srv->auth)
		return send_error(r, 404, "sessions need authentication (auth "
				  "is off)");
	const char *tok;
	size_t len;
	if (auth_parse_bearer(authz, &tok, &len))
		return send_error(r, 401, "missing or invalid credentials");
	if (!post) {
		if (!r->principal_session)
			return send_error(r, 400, "DELETE /v2/sessions takes "
					  "the session token to end, not an "
					  "API key");
		session_revoke(srv->sessions, tok, len);
		return send_json(r, 200, "{\"revoked\":true}");
	}
	if (r->principal_session) {
		const char *lv[1] = {"403"};
		prom_inc(srv->met.auth_fail, lv, 1);
		return send_error(r, 403, "a session token cannot create "
				  "sessions: use an API key");
	}
	struct auth_principal p;
	if (serve_authenticate(srv->auth, NULL, authz, 0, &p) != AUTH_OK)
		return send_error(r, 401, "missing or invalid credentials");
	char token[SESSION_TOKEN_LEN + 1], b[SESSION_TOKEN_LEN + 128];
	int64_t ttl = 0;
	enum pno_status s = session_create(srv->sessions, &p, token, &ttl);
	if (s == PNO_STATUS_RANGE)
		return send_error(r, 503, "the session table is full (%d "
				  "live sessions)", srv->opts.cfg.session_max);
	if (s != PNO_STATUS_OK)
		return send_error(r, 500, "cannot create a session");
	snprintf(b, sizeof b, "{\"token\":\"%s\",\"expires_in_s\":%lld,"
		 "\"idle_timeout_s\":%d}", token, (long long)ttl,
		 srv->opts.cfg.session_idle_s);
	sodium_memzero(token, sizeof token);
	enum MHD_Result ret = send_json(r, 200, b);
	sodium_memzero(b, sizeof b);
	return ret;
}

/* Resilience: the version's breaker, before the request queues. */
static int breaker_admit(struct req *r)
{
	int64_t wait = 0, now = serve_clock_monotonic(NULL);
	enum breaker_decision d = breaker_acquire_permit(&r->mv->brk, now,
							  &wait, &r->permit);
	sv_breaker_export(r->mv);
	if (d == BREAKER_PERMITTED) {
		r->has_permit = 1;
		return 0;
	}
	const char *lv[2] = {r->mv->name, r->mv->vstr};
	prom_inc(r->srv->met.breaker_rejected, lv, 1);
	int64_t s = (wait + 999999999) / 1000000000;
	r->retry_after = s < 1 ? 1 : s > 86400 ? 86400 : (int)s;
	return -1;
}

static enum MHD_Result infer_start(struct req *r)
{
	struct server *srv = r->srv;
	if (atomic_load(&srv->draining))
		return send_error(r, 503, "the server is shutting down");
	if (sv_ops_shed(r))	/* above memory_limit_mb: overloaded */
		return send_error(r, r->status, "%s", r->err);
	r->st = sv_state_get(srv);
	r->mv = sv_state_version(r->st, r->model, r->version);
	if (!r->mv)
		return not_found(r, r->st);
	r->rs.asked_default = !r->version[0];
	r->rs.target = r->mv;
	snprintf(r->version, sizeof r->version, "%s", r->mv->vstr);
	if (sv_queue_full(r->mv))	/* shed before parsing the body */
		return send_error(r, 503, "the queue of %s:%s is full "
				  "(max_queue_size %d inputs)", r->mv->name,
				  r->mv->vstr, r->mv->cap);
	/* lend the parser an arena for jansson's nodes: ~48 bytes a number,
	 * 8x the text of a typical body (a body needing more grows it) */
	size_t jl = r->header_len ? r->header_len : r->body_len;
	size_t want = jl < SV_ARENA_MAX / 8 ? 8 * jl + 65536 : SV_ARENA_MAX;
	if (r->arena_cap < want)
		sv_buf_reserve(&r->arena, &r->arena_cap, want);
	if (sv_infer_parse(r, &r->st->cfg) ||
	    sv_deadline_start(r, &r->st->cfg))
		return send_error(r, r->status, "%s", r->err);
	if (breaker_admit(r) && sv_fallback(r, breaker_admit))
		return send_error(r, 503, "the circuit breaker of %s:%s is "
				  "open after model failures: retry after %d s",
				  r->mv->name, r->mv->vstr, r->retry_after);
	sv_degrade(r);
	sv_drift_observe(r);
	atomic_fetch_add(&srv->inflight, 1);
	prom_inc(srv->met.inflight, NULL, 1);
	r->queued = 1;
	r->status = 0;
	MHD_suspend_connection(r->conn);
	if (sv_version_enqueue(r->mv, r)) {
		/* the worker never saw it: answer 503 after the resume; the
		 * permit is given back as a success of no duration (the
		 * module has no release) */
		breaker_record_permit(&r->mv->brk, serve_clock_monotonic(NULL),
				      &r->permit, 0, 0);
		r->has_permit = 0;
		r->status = 503;
		snprintf(r->err, sizeof r->err, "the queue of %s:%s is full "
			 "(max_queue_size %d inputs)", r->mv->name, r->mv->vstr,
			 r->mv->cap);
		atomic_store(&r->ready, 1);
		MHD_resume_connection(r->conn);
	}
	return MHD_YES;
}

static enum MHD_Result infer_finish(struct req *r)
{
	if (r->status != 200)
		return send_error(r, r->status ? r->status : 500, "%s", r->err);
	if (sv_infer_respond(r))
		return send_error(r, r->status, "%s", r->err);
	return send_buf_mode(r, 200, r->json_len < r->resp_len ?
			     "application/octet-stream" : "application/json",
			     r->resp, r->resp_len, 1);
}

/* the request line's and headers' bytes as sent (name: value CRLF) */
static enum MHD_Result header_bytes(void *cls, enum MHD_ValueKind kind,
				    const char *key, const char *value)
{
	size_t *n = cls;
	(void)kind;
	*n += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* No request object (out of memory): a static 503 rather than a dropped
 * connection; nothing else can be done for it (no metrics, no record). */
static enum MHD_Result answer_nomem(struct server *srv,
				    struct MHD_Connection *c)
{
	static const char body[] = "{\"error\":\"out of memory: the request "
				   "could not be accepted\"}";
	char ra[16];
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	snprintf(ra, sizeof ra, "%d", atomic_load(&srv->retry_after));
	MHD_add_response_header(resp, "Retry-After", ra);
	sv_log(srv, PNO_LOG_LEVEL_WARN, "request", ",\"status\":503,"
	       "\"error\":\"out of memory for a request object\"");
	enum MHD_Result ret = MHD_queue_response(c, 503, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct server *srv = cls;
	struct req *r = *con_cls;
	(void)version;
	if (!r) {
		if (!(r = req_get(srv)))
			return answer_nomem(srv, c);
		*con_cls = r;
		r->conn = c;
		r->t_start = sv_now();
		r->rid = atomic_fetch_add(&srv->next_rid, 1) + 1;
		r->route = route(r, url);
		sv_ops_request_begin(r, MHD_lookup_connection_value(
					     c, MHD_HEADER_KIND, "traceparent"));
		int to = atomic_load(&srv->conn_timeout);
		if (to != srv->conn_timeout0)	/* changed by a reload */
			MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
						  (unsigned)to);
		int post = !strcmp(method, "POST");
		size_t hb = strlen(method) + strlen(url) + 12;
		MHD_get_connection_values(c, MHD_HEADER_KIND, header_bytes, &hb);
		if (hb > (size_t)srv->max_header)
			return send_error(r, 431, "the request line and headers "
					  "(%zu bytes) exceed max_header_bytes "
					  "(%d)", hb, srv->max_header);
		if (r->route == R_NONE && r->bad_name)
			return send_error(r, 400, "invalid model name or "
					  "version in %.200s: names are 1-127 "
					  "of [A-Za-z0-9_.-], not \".\" or "
					  "\"..\"; versions are digits", url);
		if (r->route == R_NONE)
			return send_error(r, 404, "no such endpoint: %s %.200s",
					  method, url);
		const char *authz = MHD_lookup_connection_value(
			c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		if (r->route == R_SESSIONS) {
			if (!post && strcmp(method, "DELETE"))
				return send_error(r, 405, "%s is not allowed on "
						  "%.200s", method, url);
			enum MHD_Result ret;
			if (guard(r, authz, &ret))
				return ret;
			return sessions(r, post, authz);
		}
		if (route_is_post(r->route) != post ||
		    (!post && strcmp(method, "GET") && strcmp(method, "HEAD")))
			return send_error(r, 405, "%s is not allowed on %.200s",
					  method, url);
		enum MHD_Result ret;
		if (guard(r, authz, &ret))
			return ret;
		if (!post)
			return get_endpoint(r, r->route);
		const char *cl = MHD_lookup_connection_value(
			c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		int64_t max = atomic_load(&srv->max_body);
		if (cl && strtoull(cl, NULL, 10) > (unsigned long long)max)
			return send_error(r, 413, "the body (%s bytes) exceeds "
					  "max_body_bytes (%" PRId64 ")", cl,
					  max);
		const char *hl = MHD_lookup_connection_value(
			c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
		if (hl) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(hl, &end, 10);
			if (end == hl || *end || errno || v > (uint64_t)max)
				return send_error(r, 400, "Inference-Header-"
						  "Content-Length: \"%.40s\" is "
						  "not a byte count", hl);
			r->header_len = (size_t)v;
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size, max = (size_t)atomic_load(&srv->max_body);
		*upload_size = 0;
		if (r->body_nomem) {
			r->discarded += n;	/* answered 503 at its end */
			return r->discarded > max ? MHD_NO : MHD_YES;
		}
		if (r->too_large || r->body_len + n > max) {
			/* a chunked body past the limit: drop it, answer 413
			 * at its end; one limit's worth more, then close */
			r->too_large = 1;
			r->discarded += n;
			return r->discarded > max ? MHD_NO : MHD_YES;
		}
		if (sv_buf_reserve(&r->body, &r->body_cap,
				   r->body_len + n + 1)) {
			r->body_nomem = 1;
			r->discarded += n;
			return MHD_YES;
		}
		memcpy(r->body + r->body_len, upload, n);
		r->body_len += n;
		return MHD_YES;
	}
	if (atomic_load(&r->ready))
		return infer_finish(r);
	if (r->body_nomem)
		return send_error(r, 503, "out of memory for the request body");
	if (r->too_large)
		return send_error(r, 413, "the body exceeds max_body_bytes "
				  "(%" PRId64 ")", atomic_load(&srv->max_body));
	if (r->route == R_INFER)
		return infer_start(r);
	return repository(r, (enum route)r->route);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct req *r = *con_cls;
	(void)c;
	if (!r)
		return;
	*con_cls = NULL;
	double dt = sv_now() - r->t_start;
	const char *ep = endpoint_name(r->route);
	if (!r->status)
		count(r, 499);	/* the client left before an answer */
	char id[600] = "", eb[2 * SV_ERR_MAX + 16] = "", who[AUTH_NAME_MAX + 80];
	/* key names are [A-Za-z0-9_.@-]: nothing to escape */
	snprintf(who, sizeof who, "%s%s%s%s%s", r->principal[0] ?
		 ",\"principal\":\"" : "", r->principal, r->principal[0] ?
		 "\"" : "", r->auth_reason && r->status >= 400 ?
		 ",\"auth\":\"" : "", r->auth_reason && r->status >= 400 ?
		 r->auth_reason : "");
	if (r->auth_reason && r->status >= 400)
		strncat(who, "\"", sizeof who - strlen(who) - 1);
	if (r->has_id)
		sv_json_escape(id, sizeof id, r->id);
	if (r->status != 200 && r->err[0]) {
		char e[2 * SV_ERR_MAX];
		sv_json_escape(e, sizeof e, r->err);
		snprintf(eb, sizeof eb, ",\"error\":\"%s\"", e);
	}
	sv_log(srv, r->route != R_INFER && r->status < 400 ?
	       PNO_LOG_LEVEL_DEBUG : r->status >= 500 ? PNO_LOG_LEVEL_WARN :
	       PNO_LOG_LEVEL_INFO, "request",
	       ",\"request\":\"r%" PRIu64 "\",\"id\":\"%s\",\"endpoint\":"
	       "\"%s\",\"model\":\"%s\",\"version\":\"%s\",\"status\":%d,"
	       "\"latency_ms\":%.3f,\"samples\":%d,\"batch\":%d,\"items\":"
	       "%d%s%s", r->rid, id, ep, r->model, r->version,
	       r->status ? r->status : 499, 1e3 * dt,
	       r->status == 200 ? r->S : 0, r->batch_items, r->B, who, eb);
	sv_ops_request_end(r, r->route == R_INFER);
	if (r->has_permit && r->mv) {
		/* admitted but never computed (the client left first) */
		breaker_record_permit(&r->mv->brk, serve_clock_monotonic(NULL),
				      &r->permit, 0, 0);
		r->has_permit = 0;
	}
	if (r->queued) {
		atomic_fetch_sub(&srv->inflight, 1);
		prom_inc(srv->met.inflight, NULL, -1);
	}
	(void)toe;
	sv_resil_complete(r);
	sv_state_release(r->st);
	r->st = NULL;
	r->mv = NULL;
	req_put(srv, r);
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss,
		      int *v6)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	const char *h = !strcmp(host, "localhost") ? "127.0.0.1" : host;
	if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*v6 = 0;
		return 0;
	}
	if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*v6 = 1;
		return 0;
	}
	return -1;
}

/* libmicrohttpd's own messages, as log lines */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[1024], esc[2100];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = 0;
	sv_json_escape(esc, sizeof esc, msg);
	sv_log(cls, PNO_LOG_LEVEL_WARN, "http", ",\"message\":\"%s\"", esc);
}

enum pno_status sv_http_start(struct server *srv)
{
	const struct serve_config *c = &srv->opts.cfg;
	struct sockaddr_storage ss;
	int v6;
	if (parse_addr(c->host, c->port, &ss, &v6))
		return PNO_STATUS_INVALID;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (v6)
		flags |= MHD_USE_IPv6;
	/* the connection's memory holds the whole header section: room for
	 * max_header_bytes (answered 431 by on_request) and the read buffer;
	 * beyond it the daemon answers by itself (docs/serve.md "Limits") */
	srv->max_header = c->max_header_bytes;
	size_t mem = 2 * (size_t)c->max_header_bytes + 32768;
	srv->daemon = MHD_start_daemon(
		flags, (uint16_t)c->port, NULL, NULL, on_request, srv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->threads,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->connection_timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_END);
	if (!srv->daemon)
		return PNO_STATUS_IO;
	const union MHD_DaemonInfo *di =
		MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : c->port;
	return PNO_STATUS_OK;
}

void sv_http_stop(struct server *srv)
{
	if (srv->daemon)
		MHD_stop_daemon(srv->daemon);
	srv->daemon = NULL;
	while (srv->pool) {
		struct req *r = srv->pool;
		srv->pool = r->next;
		req_free(r);
	}
	srv->pool_n = 0;
}
