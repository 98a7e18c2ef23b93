/* Trace export wired into the real server (docs/serve/operations.md
 * "Tracing export"): a collector inside the test (a libmicrohttpd daemon
 * recording the bodies POSTed to /v1/traces) receives OTLP/JSON; a valid
 * traceparent keeps its trace id end to end, invalid ones start new
 * traces, the span tree is request > {queue_wait, batch > compute} with
 * nested times, retries reach a collector that first answers 503, a dead
 * collector costs dropped spans (counted), never slow answers; the file
 * export holds the same spans. The outbound client (libcurl) is checked
 * directly: URL checks, status, Retry-After, connection reuse, refused
 * connections, TLS failure, timeout. */
#include "serve_ops_harness.h"
#include "outbound.h"

static struct h_collector C;
static struct h_srv S;
static char trace_file[900];

/* ---- reading what the collector got ---- */

struct span {
	char name[64], trace[40], id[24], parent[24];
	long long t0, t1;
	int kind, status;
	const json_t *attrs;
};

/* every span of every body POSTed so far, and the bodies' documents
 * (caller json_decref's *docs) */
static int spans_of(struct h_collector *k, struct span *out, int max,
		    json_t **docs)
{
	int n = 0;
	*docs = json_array();
	pthread_mutex_lock(&k->mu);
	for (int i = 0; i < k->n && i < H_MAX_POSTS; i++) {
		if (strstr(k->path[i], " 503"))
			continue;
		json_error_t e;
		json_t *d = json_loads(k->body[i], 0, &e);
		if (!d)
			fail_msg("collector body %d is not JSON: %s", i, e.text);
		json_array_append_new(*docs, d);
		json_t *rs = json_array_get(json_object_get(d, "resourceSpans"),
					    0);
		/* service.name on the resource */
		json_t *ra = json_object_get(json_object_get(rs, "resource"),
					     "attributes");
		json_t *a0 = json_array_get(ra, 0);
		assert_string_equal(json_string_value(json_object_get(a0, "key")),
				    "service.name");
		json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
		json_t *sp = json_object_get(ss, "spans"), *s;
		size_t j;
		json_array_foreach(sp, j, s) {
			if (n == max)
				break;
			struct span *o = &out[n++];
			memset(o, 0, sizeof *o);
			snprintf(o->name, sizeof o->name, "%s",
				 json_string_value(json_object_get(s, "name")));
			snprintf(o->trace, sizeof o->trace, "%s",
				 json_string_value(json_object_get(s, "traceId")));
			snprintf(o->id, sizeof o->id, "%s",
				 json_string_value(json_object_get(s, "spanId")));
			const char *p = json_string_value(
				json_object_get(s, "parentSpanId"));
			snprintf(o->parent, sizeof o->parent, "%s", p ? p : "");
			o->t0 = atoll(json_string_value(
				json_object_get(s, "startTimeUnixNano")));
			o->t1 = atoll(json_string_value(
				json_object_get(s, "endTimeUnixNano")));
			o->kind = (int)json_integer_value(json_object_get(s, "kind"));
			o->status = (int)json_integer_value(json_object_get(
				json_object_get(s, "status"), "code"));
			o->attrs = json_object_get(s, "attributes");
		}
	}
	pthread_mutex_unlock(&k->mu);
	return n;
}

static const char *attr(const struct span *s, const char *key)
{
	static __thread char v[128];
	size_t i;
	const json_t *a;
	json_array_foreach(s->attrs, i, a)
		if (!strcmp(json_string_value(json_object_get(a, "key")), key)) {
			const json_t *val = json_object_get(a, "value");
			const char *t = json_string_value(json_object_get(val,
				"stringValue"));
			if (!t)
				t = json_string_value(json_object_get(val,
					"intValue"));
			snprintf(v, sizeof v, "%s", t ? t : "");
			return v;
		}
	return NULL;
}

static const struct span *find(const struct span *s, int n,
			       const char *trace, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(s[i].trace, trace) && !strcmp(s[i].name, name))
			return &s[i];
	return NULL;
}

/* the trace id of a traceparent value (static buffer) */
static const char *tp_trace(const char *tp)
{
	static __thread char t[33];
	if (strlen(tp) != 55)
		fail_msg("traceparent \"%s\" is not 55 characters", tp);
	memcpy(t, tp + 3, 32);
	t[32] = 0;
	return t;
}

static int setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_ALL);
	h_make_repo("otlp_repo", 1, 0);
	h_coll_start(&C, 0, 0);
	snprintf(trace_file, sizeof trace_file, "%s",
		 tu_tmp_path("otlp_spans.jsonl"));
	unlink(trace_file);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", C.port);
	const char *ex[] = {"--auth", "false", "--trace-otlp-url", url,
			    "--trace-file", trace_file, "--trace-flush-ms",
			    "50", "--trace-batch-spans", "64", NULL};
	h_start(&S, "otlp", ex);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (S.pid > 0)
		h_stop(&S);
	h_coll_stop(&C);
	curl_global_cleanup();
	return 0;
}

/* ---- tests ---- */

static void test_url(void **state)
{
	(void)state;
	struct ob_url u;
	assert_status(ob_url_parse("http://127.0.0.1:4318/v1/traces", &u),
		      PNO_STATUS_OK);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 4318);
	assert_string_equal(u.path, "/v1/traces");
	assert_string_equal(u.url, "http://127.0.0.1:4318/v1/traces");
	assert_int_equal(u.tls, 0);
	assert_status(ob_url_parse("http://collector", &u), PNO_STATUS_OK);
	assert_int_equal(u.port, 80);
	assert_string_equal(u.path, "/");
	assert_status(ob_url_parse("http://[::1]:9/x?y=1#frag", &u),
		      PNO_STATUS_OK);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.path, "/x?y=1");
	assert_string_equal(u.url, "http://[::1]:9/x?y=1");	/* no #frag */
	/* https: libcurl does TLS */
	assert_status(ob_url_parse("https://collector/v1/traces", &u),
		      PNO_STATUS_OK);
	assert_int_equal(u.tls, 1);
	assert_int_equal(u.port, 443);
	assert_string_equal(u.url, "https://collector/v1/traces");
	assert_status(ob_url_parse("HTTPS://Collector:8443", &u), PNO_STATUS_OK);
	assert_int_equal(u.port, 8443);
	assert_int_equal(u.tls, 1);
	/* refused, each with its reason and the URL in the message */
	struct { const char *url, *msg; } bad[] = {
		{"ftp://x/", "the scheme \"ftp\" is not supported (http:// or "
			     "https://)"},
		{"file:///etc/passwd", "the scheme \"file\" is not supported"},
		{"gopher://h/", "the scheme \"gopher\" is not supported"},
		{"collector:4318/v1/traces", "scheme"},
		{"http://", "host"},
		{"http://h:0/", "bad port"},
		{"http://h:65536/", "ort"},
		{"http://h:12x/", "ort"},
		{"http://a b/", "hostname"},
		{"http://h/a b", "path"},
		{"http://h/caf\xc3\xa9", "the path needs percent-encoding"},
		{"http://u@h/", "credentials"},
		{"https://u:pw@h/", "credentials"},
		{"http://[::1/", "IPv6"},
		{"", "scheme"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (ob_url_parse(bad[i].url, &u) != PNO_STATUS_INVALID)
			fail_msg("\"%s\" was accepted", bad[i].url);
		char want[300];
		snprintf(want, sizeof want, "url \"%s\": ", bad[i].url);
		if (strncmp(pno_last_error(), want, strlen(want)) ||
		    !strstr(pno_last_error(), bad[i].msg))
			fail_msg("\"%s\": message \"%s\" lacks \"%s\"",
				 bad[i].url, pno_last_error(), bad[i].msg);
	}
	assert_status(ob_url_parse(NULL, &u), PNO_STATUS_INVALID);
	struct ob_client cl;
	assert_status(ob_client_init(&cl, ""), PNO_STATUS_INVALID);
	assert_status(ob_client_init(&cl, "a\r\nX-Evil: 1"), PNO_STATUS_INVALID);
	ob_client_free(NULL);
}

/* one POST at a time against a collector of our own (the server's main
 * collector is left alone) */
static void test_post(void **state)
{
	(void)state;
	struct h_collector k;
	struct retry_outcome o;
	struct ob_client cl;
	struct ob_url u;
	char url[96];
	assert_status(ob_client_init(&cl, "application/json"), PNO_STATUS_OK);

	/* a 503 with Retry-After 0, then 200 with none: both on one
	 * connection (the handle keeps it alive) */
	h_coll_start(&k, 1, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", k.port);
	assert_status(ob_url_parse(url, &u), PNO_STATUS_OK);
	ob_post(&cl, &u, "{\"a\":1}", 7, 2000, &o);
	assert_int_equal(o.http_status, 503);
	assert_int_equal(o.transport_error, 0);
	assert_true(o.retry_after_ns == 0);
	ob_post(&cl, &u, "{\"a\":2}", 7, 2000, &o);
	assert_int_equal(o.http_status, 200);
	assert_int_equal(o.transport_error, 0);
	assert_true(o.retry_after_ns < 0);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.body[0], "{\"a\":1}");
	assert_string_equal(k.body[1], "{\"a\":2}");
	assert_string_equal(k.path[1], "/hook");
	/* a 200 kB body arrives whole, at once, on the same connection */
	static char big[200000];
	memset(big, 'x', sizeof big - 1);
	double t0 = h_now();
	ob_post(&cl, &u, big, sizeof big - 1, 2000, &o);
	assert_int_equal(o.http_status, 200);
	assert_true(h_now() - t0 < 0.5);
	assert_int_equal(k.n, 3);
	assert_int_equal(strlen(k.body[2]), sizeof big - 1);
	print_message("3 posts over %d connection(s), the big one %.3f s\n",
		      k.conns, h_now() - t0);
	assert_int_equal(k.conns, 1);
	int port = k.port;
	h_coll_stop(&k);

	/* the collector went away: the kept connection is dead and a new
	 * one is refused: a transport error, at once */
	t0 = h_now();
	ob_post(&cl, &u, "{}", 2, 2000, &o);
	assert_int_equal(o.transport_error, 1);
	assert_int_equal(o.http_status, 0);
	assert_true(h_now() - t0 < 1.0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);

	/* https to a plain-http listener: the TLS handshake fails */
	h_coll_start(&k, 0, 0);
	snprintf(url, sizeof url, "https://127.0.0.1:%d/hook", k.port);
	assert_status(ob_url_parse(url, &u), PNO_STATUS_OK);
	t0 = h_now();
	ob_post(&cl, &u, "{}", 2, 2000, &o);
	assert_int_equal(o.transport_error, 1);
	assert_int_equal(o.http_status, 0);
	assert_true(h_now() - t0 < 1.9);
	h_coll_stop(&k);

	/* an answer slower than the timeout: a transport error after it */
	h_coll_start(&k, 0, 1500);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", k.port);
	assert_status(ob_url_parse(url, &u), PNO_STATUS_OK);
	t0 = h_now();
	ob_post(&cl, &u, "{}", 2, 300, &o);
	double dt = h_now() - t0;
	print_message("timeout 300 ms: a transport error after %.3f s\n", dt);
	assert_int_equal(o.transport_error, 1);
	assert_true(dt >= 0.29 && dt < 1.0);
	h_coll_stop(&k);
	ob_client_free(&cl);
}

/* Retry-After as seconds and as an HTTP-date, read from the answer and
 * honoured by ob_deliver */
static void test_post_retry_after(void **state)
{
	(void)state;
	struct h_collector k;
	struct retry_outcome o;
	struct ob_client cl;
	struct ob_url u;
	char url[96], date[64];
	assert_status(ob_client_init(&cl, "application/json"), PNO_STATUS_OK);
	h_coll_start(&k, 4, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", k.port);
	assert_status(ob_url_parse(url, &u), PNO_STATUS_OK);
	pthread_mutex_lock(&k.mu);
	k.retry_after = "7";
	pthread_mutex_unlock(&k.mu);
	ob_post(&cl, &u, "{}", 2, 2000, &o);
	assert_int_equal(o.http_status, 503);
	assert_true(o.retry_after_ns == 7000000000LL);
	/* a date 3 s ahead; whole seconds, so 2 to 3 s from now */
	time_t t = time(NULL) + 3;
	struct tm tm;
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT",
		 gmtime_r(&t, &tm));
	pthread_mutex_lock(&k.mu);
	k.retry_after = date;
	pthread_mutex_unlock(&k.mu);
	ob_post(&cl, &u, "{}", 2, 2000, &o);
	assert_int_equal(o.http_status, 503);
	print_message("Retry-After %s: %.3f s\n", date, o.retry_after_ns / 1e9);
	assert_true(o.retry_after_ns >= 1000000000LL &&
		    o.retry_after_ns <= 3000000000LL);
	/* unreadable: none (the backoff decides) */
	pthread_mutex_lock(&k.mu);
	k.retry_after = "soon";
	pthread_mutex_unlock(&k.mu);
	ob_post(&cl, &u, "{}", 2, 2000, &o);
	assert_int_equal(o.http_status, 503);
	assert_true(o.retry_after_ns < 0);

	/* honoured: the 4th answer is a 503 with Retry-After 1, the 5th a
	 * 200; the backoff alone would wait at most 1 ms */
	pthread_mutex_lock(&k.mu);
	k.retry_after = "1";
	pthread_mutex_unlock(&k.mu);
	struct retry_policy p = retry_policy_default();
	p.base_ns = p.cap_ns = 1000000;
	struct retry_budget b;
	struct retry_budget_config bc = retry_budget_config_default();
	struct retry_rng rng = {1, 2, 0};
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;		/* timed waits on CLOCK_MONOTONIC */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	_Atomic int stop = 0;
	int retries = -1;
	assert_status(retry_budget_init(&b, &bc, ob_now_ns()), PNO_STATUS_OK);
	double t0 = h_now();
	int ok = ob_deliver(&cl, &u, "{\"d\":1}", 7, 2000, &p, &b, &rng, &mu,
			    &cv, &stop, &retries);
	double dt = h_now() - t0;
	print_message("Retry-After 1: delivered after %.3f s, %d retry\n", dt,
		      retries);
	assert_int_equal(ok, 1);
	assert_int_equal(retries, 1);
	assert_true(dt >= 1.0 && dt < 2.0);
	assert_int_equal(k.n, 5);
	assert_string_equal(k.body[4], "{\"d\":1}");
	retry_budget_free(&b);
	pthread_cond_destroy(&cv);
	h_coll_stop(&k);
	ob_client_free(&cl);
}

static void test_trace_kept_end_to_end(void **state)
{
	(void)state;
	const char *tid = "0af7651916cd43dd8448eb211c80319c";
	const char *pid = "b7ad6b7169203331";
	char h[128];
	snprintf(h, sizeof h, "traceparent: 00-%s-%s-01", tid, pid);
	struct h_resp r;
	int before = C.n;
	assert_int_equal(h_infer(S.port, "heat", h, &r), 200);
	const char *tp = h_header(&r, "traceparent");
	assert_string_equal(tp_trace(tp), tid);
	assert_true(strncmp(tp + 36, pid, 16) != 0);	/* the server's span */
	assert_string_equal(tp + 53, "01");
	char root_id[17];
	memcpy(root_id, tp + 36, 16);
	root_id[16] = 0;
	h_free(&r);
	assert_true(h_coll_wait(&C, before + 1, 10) > before);

	static struct span sp[1024];
	json_t *docs;
	int n = spans_of(&C, sp, 1024, &docs);
	const struct span *root = find(sp, n, tid, "POST /v2/models/{model}/infer");
	const struct span *q = find(sp, n, tid, "queue_wait");
	const struct span *b = find(sp, n, tid, "batch");
	const struct span *c = find(sp, n, tid, "compute");
	assert_non_null(root);
	assert_non_null(q);
	assert_non_null(b);
	assert_non_null(c);
	/* the tree: the caller's span > request > {queue_wait, batch > compute} */
	assert_string_equal(root->parent, pid);
	assert_string_equal(root->id, root_id);
	assert_int_equal(root->kind, 2);	/* SERVER */
	assert_string_equal(q->parent, root->id);
	assert_string_equal(b->parent, root->id);
	assert_string_equal(c->parent, b->id);
	assert_int_equal(q->kind, 1);
	assert_int_equal(c->kind, 1);
	/* times nest: request >= queue_wait, then batch >= compute */
	assert_true(root->t0 <= q->t0 && q->t0 <= q->t1);
	assert_true(q->t1 <= b->t0 + 1000 && b->t0 <= c->t0);
	assert_true(c->t0 <= c->t1 && c->t1 <= b->t1 + 1000);
	assert_true(b->t1 <= root->t1);
	/* a plausible clock: within a minute of ours */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	double ago = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec -
		     (double)root->t0 * 1e-9;
	if (!(ago >= 0 && ago < 60))
		fail_msg("span start %lld, now %ld", root->t0, (long)now.tv_sec);
	assert_true(ago >= 0 && ago < 60);
	print_message("spans: request %.3f ms, queue %.3f ms, batch %.3f ms, "
		      "compute %.3f ms\n", 1e-6 * (root->t1 - root->t0),
		      1e-6 * (q->t1 - q->t0), 1e-6 * (b->t1 - b->t0),
		      1e-6 * (c->t1 - c->t0));
	assert_string_equal(attr(root, "http.response.status_code"), "200");
	assert_string_equal(attr(root, "pno.model"), "heat");
	assert_string_equal(attr(root, "pno.version"), "1");
	assert_string_equal(attr(b, "pno.batch_items"), "1");
	assert_int_equal(root->status, 0);
	json_decref(docs);
}

static void test_invalid_traceparents_start_new_traces(void **state)
{
	(void)state;
	const char *bad[] = {
		/* all-zero trace id, all-zero parent id */
		"00-00000000000000000000000000000000-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
		/* upper-case hex */
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
		/* version ff */
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		/* short, version 00 with more after it, bad separator */
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
		"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	};
	enum { NB = sizeof bad / sizeof *bad };
	char got[NB][33];
	int before = C.n;
	for (int i = 0; i < NB; i++) {
		char h[200];
		struct h_resp r;
		snprintf(h, sizeof h, "traceparent: %s", bad[i]);
		assert_int_equal(h_infer(S.port, "heat", h, &r), 200);
		const char *t = tp_trace(h_header(&r, "traceparent"));
		snprintf(got[i], sizeof got[i], "%s", t);
		if (!strcmp(t, "0af7651916cd43dd8448eb211c80319c") ||
		    !strcmp(t, "00000000000000000000000000000000"))
			fail_msg("traceparent %s kept its trace id", bad[i]);
		for (int k = 0; k < i; k++)
			assert_string_not_equal(got[k], t);
		assert_string_equal(h_header(&r, "traceparent") + 53, "01");
		h_free(&r);
	}
	/* exported as new traces: roots without a parent */
	static struct span sp[2048];
	json_t *docs;
	double t0 = h_now();
	int found = 0;
	while (found < NB && h_now() - t0 < 10) {
		h_coll_wait(&C, before + 1, 5);
		int n = spans_of(&C, sp, 2048, &docs);
		found = 0;
		for (int i = 0; i < NB; i++) {
			const struct span *root =
				find(sp, n, got[i], "POST /v2/models/{model}/infer");
			if (root) {
				assert_string_equal(root->parent, "");
				found++;
			}
		}
		json_decref(docs);
		if (found < NB)
			usleep(50000);
	}
	assert_int_equal(found, NB);
	/* a request without a traceparent gets one too */
	struct h_resp r;
	assert_int_equal(h_infer(S.port, "heat", NULL, &r), 200);
	assert_int_equal(strlen(h_header(&r, "traceparent")), 55);
	h_free(&r);
}

static void test_unsampled_not_exported(void **state)
{
	(void)state;
	const char *tid = "4bf92f3577b34da6a3ce929d0e0e4736";
	struct h_resp r;
	assert_int_equal(h_infer(S.port, "heat", "traceparent: 00-4bf92f3577b"
				 "34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
				 &r), 200);
	const char *tp = h_header(&r, "traceparent");
	assert_string_equal(tp_trace(tp), tid);
	assert_string_equal(tp + 53, "00");	/* propagated unsampled */
	h_free(&r);
	/* a sampled request after it: once its spans are in, the unsampled
	 * one's would be too (one exporter, in order) */
	const char *t2 = "5bf92f3577b34da6a3ce929d0e0e4736";
	assert_int_equal(h_infer(S.port, "heat", "traceparent: 00-5bf92f3577b"
				 "34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				 &r), 200);
	h_free(&r);
	static struct span sp[4096];
	json_t *docs;
	double t0 = h_now();
	int n;
	for (;;) {
		n = spans_of(&C, sp, 4096, &docs);
		if (find(sp, n, t2, "compute") || h_now() - t0 > 10)
			break;
		json_decref(docs);
		usleep(20000);
	}
	assert_non_null(find(sp, n, t2, "compute"));
	for (int i = 0; i < n; i++)
		assert_string_not_equal(sp[i].trace, tid);
	json_decref(docs);
}

static void test_file_export(void **state)
{
	(void)state;
	/* every span the collector got is in the file (the same batches) */
	static struct span sp[4096];
	json_t *docs;
	usleep(300000);
	int n = spans_of(&C, sp, 4096, &docs);
	json_decref(docs);
	FILE *f = fopen(trace_file, "r");
	assert_non_null(f);
	static char line[1 << 20];
	int lines = 0, in_file = 0, matched = 0;
	while (fgets(line, sizeof line, f)) {
		json_error_t e;
		json_t *d = json_loads(line, 0, &e);
		if (!d)
			fail_msg("trace_file line %d is not JSON: %s", lines + 1,
				 e.text);
		lines++;
		json_t *sps = json_object_get(json_array_get(json_object_get(
			json_array_get(json_object_get(d, "resourceSpans"), 0),
			"scopeSpans"), 0), "spans");
		size_t j;
		json_t *s;
		json_array_foreach(sps, j, s) {
			in_file++;
			const char *id = json_string_value(json_object_get(s,
				"spanId"));
			for (int i = 0; i < n; i++)
				if (!strcmp(sp[i].id, id)) {
					matched++;
					break;
				}
		}
		json_decref(d);
	}
	fclose(f);
	print_message("trace_file: %d lines, %d spans; collector %d spans\n",
		      lines, in_file, n);
	assert_true(lines >= 1);
	assert_int_equal(in_file, n);
	assert_int_equal(matched, n);
	double exported = h_metric(S.port, "pno_trace_spans_exported_total");
	assert_true(exported >= n);
}

/* a collector that answers 503 (Retry-After 0) twice: the batch arrives
 * on the third try; then it is gone: spans are dropped (counted) and the
 * answers stay fast */
static void test_retry_and_dead_collector(void **state)
{
	(void)state;
	struct h_collector k;
	struct h_srv s;
	h_coll_start(&k, 2, 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", k.port);
	const char *ex[] = {"--auth", "false", "--trace-otlp-url", url,
			    "--trace-flush-ms", "20", NULL};
	h_start(&s, "otlp_retry", ex);
	struct h_resp r;
	assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
	const char *tid = tp_trace(h_header(&r, "traceparent"));
	char t1[33];
	snprintf(t1, sizeof t1, "%s", tid);
	h_free(&r);
	assert_true(h_coll_wait(&k, 3, 10) >= 3);
	pthread_mutex_lock(&k.mu);
	assert_non_null(strstr(k.path[0], " 503"));
	assert_non_null(strstr(k.path[1], " 503"));
	assert_string_equal(k.path[2], "/v1/traces");
	/* the same batch each time */
	assert_string_equal(k.body[0], k.body[2]);
	assert_non_null(strstr(k.body[2], t1));
	pthread_mutex_unlock(&k.mu);
	assert_true(h_metric_wait(s.port, "pno_trace_spans_exported_total", 4,
				  5) >= 4);

	/* the collector dies: connects are refused, each batch gives up
	 * after its tries (4, backoff <= 0.1 + 0.2 + 0.4 s) */
	h_coll_stop(&k);
	double worst = 0;
	for (int i = 0; i < 10; i++) {
		assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
		worst = r.seconds > worst ? r.seconds : worst;
		h_free(&r);
	}
	const char *failed = "pno_trace_spans_dropped_total{reason=\"failed\"}";
	double dropped = h_metric_wait(s.port, failed, 40, 15);
	print_message("dead collector: %.0f spans dropped; slowest answer "
		      "%.1f ms\n", dropped, 1e3 * worst);
	assert_true(dropped >= 40);	/* 10 requests x 4 spans */
	assert_true(worst < 2.0);	/* the request path never waits */
	assert_true(h_log_count(&s, "trace_export_failed", NULL) >= 1);
	h_stop(&s);
}

/* a queue of 16 spans behind a collector that takes 1 s per batch:
 * a burst overflows it; every request is still answered 200 */
static void test_queue_full_drops(void **state)
{
	(void)state;
	struct h_collector k;
	struct h_srv s;
	h_coll_start(&k, 0, 1000);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", k.port);
	const char *ex[] = {"--auth", "false", "--trace-otlp-url", url,
			    "--trace-flush-ms", "10", "--trace-queue-spans",
			    "16", "--trace-batch-spans", "4", NULL};
	h_start(&s, "otlp_full", ex);
	struct h_resp r;
	for (int i = 0; i < 30; i++) {
		assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
		h_free(&r);
	}
	double full = h_metric(s.port,
			       "pno_trace_spans_dropped_total{reason=\"queue_full\"}");
	print_message("queue of 16 spans, 120 spans offered: %.0f dropped "
		      "(queue_full)\n", full);
	/* 120 spans; the queue holds 16 and the exporter takes 4 per second */
	assert_true(full >= 120 - 16 - 4 * 8);
	assert_true(full <= 120 - 16);
	h_stop(&s);
	h_coll_stop(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_post),
		cmocka_unit_test(test_post_retry_after),
		cmocka_unit_test(test_trace_kept_end_to_end),
		cmocka_unit_test(test_invalid_traceparents_start_new_traces),
		cmocka_unit_test(test_unsampled_not_exported),
		cmocka_unit_test(test_file_export),
		cmocka_unit_test(test_retry_and_dead_collector),
		cmocka_unit_test(test_queue_full_drops),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
