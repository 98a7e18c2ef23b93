/* Fault injection over pno serve (issue 8, "What must be shown"): the real
 * server runs in this process (serve_run on a thread, an ephemeral port)
 * and is called with libcurl from the main thread; libcurl allocates with
 * malloc, the server through pno's allocator, which this test replaces by
 * a failing one (thread-safe: the server's threads allocate concurrently,
 * which testutil's counters are not made for).
 *
 * - Request path: for k = 1, 2, ... the k-th pno allocation from the
 *   moment a request is sent until it is answered fails; the answer must
 *   be a valid 200 or a clean 500/503 {"error": "...out of memory..."}
 *   (never a reset connection or a hang), then the same request with
 *   injection off answers 200 and the server is live; the loop ends at
 *   the first request that met no injected failure. Covered: the first
 *   request of a fresh server (a server per k), a grown request on a
 *   server warmed with small ones (a server per k: pools grow), and on a
 *   warm server JSON, batched, quantile + sample, binary requests, and
 *   with auth on a session POST and an audited inference.
 * - Model load: the k-th allocation of a reload (POST /v2/repository/
 *   index, POST .../models/n/load, SIGHUP) fails: the reload is refused
 *   (counted in pno_config_reload_failures_total, the old state serving)
 *   or applied.
 * - I/O: a served model file truncated, its header corrupted, or replaced
 *   by a directory, then a reload: refused with the file and the reason,
 *   the old version still serving; the audit log's writes failing
 *   (RLIMIT_FSIZE): inferences answered 503 (fail closed), the server
 *   live, and answered 200 again once the fault is gone.
 * After every server's shutdown, the blocks live through pno's allocator
 * are back at their count before it started (nothing leaked). */
#include "serve_harness.h"
#include "auth.h"
#include "serve.h"

#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

/* ---- the failing allocator ---- */

static atomic_long fa_n, fa_at, fa_live, fa_hits;

static void *fa_alloc(void *ud, size_t size, size_t align)
{
	void *p = NULL;
	(void)ud;
	long n = atomic_fetch_add(&fa_n, 1) + 1;
	if (n == atomic_load(&fa_at)) {
		atomic_fetch_add(&fa_hits, 1);
		if (getenv("INJ_TRACE")) {	/* debugging aid: who failed? */
			void *bt[12];
			int nb = backtrace(bt, 12);
			fprintf(stderr, "injected failure of allocation %ld:\n",
				n);
			backtrace_symbols_fd(bt, nb, 2);
		}
		return NULL;
	}
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	atomic_fetch_add(&fa_live, 1);
	return p;
}

static void fa_free(void *ud, void *p)
{
	(void)ud;
	atomic_fetch_sub(&fa_live, 1);
	free(p);
}

/* fail allocation k from now (0: none) */
static void fa_arm(long k)
{
	atomic_store(&fa_at, 0);
	atomic_store(&fa_hits, 0);
	atomic_store(&fa_n, 0);
	atomic_store(&fa_at, k);
}

/* injection off; 1 if the armed failure happened */
static int fa_disarm(void)
{
	atomic_store(&fa_at, 0);
	return atomic_load(&fa_hits) > 0;
}

/* ---- the server, in this process ---- */

enum { X = 32 };
#define MAX_K 5000	/* a loop that never ends is a failure */

static char repo[900], keys_path[1000], audit_dir[1000], audit_key[1000];
static char token[AUTH_KEY_LEN + 1], bearer[AUTH_KEY_LEN + 32];
static long live_base;	/* pno blocks live with no server running */
static struct serve_opts opts;
static pthread_t srv_th;
static struct sh_srv S;
static char port_file[1024], log_file[1024];
static int srv_running;

static void *server_thread(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)serve_run(&opts);
}

/* extra: NULL-terminated key, value pairs */
static void srv_start(const char *const *extra)
{
	if (srv_running) {	/* left by a failed test: stop, no checks */
		kill(getpid(), SIGTERM);
		pthread_join(srv_th, NULL);
		srv_running = 0;
	}
	memset(&opts, 0, sizeof opts);
	serve_config_defaults(&opts.cfg);
	snprintf(port_file, sizeof port_file, "%s", tu_tmp_path("inj_port"));
	snprintf(log_file, sizeof log_file, "%s", tu_tmp_path("inj_log"));
	unlink(port_file);
	unlink(log_file);
	const char *kv[][2] = {
		{"repository", repo}, {"port", "0"}, {"port_file", port_file},
		{"auth", "false"}, {"log_level", "info"},
		{"max_samples", "16"}, {"default_samples", "4"},
		{"threads", "2"}, {"compute_threads", "1"},
		{"max_batch", "8"}, {"max_queue_delay_us", "0"}};
	/* as flags: a reload re-applies them over the defaults */
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
		opts.flag_name[opts.nflags] = kv[i][0];
		opts.flag_value[opts.nflags++] = kv[i][1];
	}
	for (int i = 0; extra && extra[i]; i += 2) {
		opts.flag_name[opts.nflags] = extra[i];
		opts.flag_value[opts.nflags++] = extra[i + 1];
	}
	for (int i = 0; i < opts.nflags; i++)
		assert_status(serve_config_set(&opts.cfg, opts.flag_name[i],
					       opts.flag_value[i], "test"),
			      PNO_STATUS_OK);
	assert_status(serve_config_check(&opts.cfg), PNO_STATUS_OK);
	opts.log_file = log_file;
	snprintf(S.log, sizeof S.log, "%s", log_file);
	S.pid = getpid();
	assert_int_equal(pthread_create(&srv_th, NULL, server_thread, NULL),
			 0);
	srv_running = 1;
	double t0 = sh_now();
	for (;;) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", &S.port) == 1;
			fclose(f);
			if (ok)
				break;
		}
		if (sh_now() - t0 > 30)
			fail_msg("no port file after 30 s (log %s)", log_file);
		usleep(2000);
	}
}

/* SIGTERM (drain), join; nothing of pno's allocator left behind */
static void srv_stop(void)
{
	void *ret;
	fa_disarm();
	kill(getpid(), SIGTERM);
	pthread_join(srv_th, &ret);
	srv_running = 0;
	assert_int_equal((int)(intptr_t)ret, 0);
	long live = atomic_load(&fa_live);
	if (live != live_base)
		fail_msg("%ld pno blocks live after the server stopped, %ld "
			 "before it started", live, live_base);
}

/* ---- requests ---- */

/* a JSON infer body: B inputs, params (JSON members, "" none) */
static char *body_json(int B, const char *params)
{
	size_t cap = 256 + (size_t)B * X * 16 + strlen(params), k;
	char *b = malloc(cap);
	assert_non_null(b);
	k = (size_t)snprintf(b, cap, "{\"parameters\":{%s},\"inputs\":[{"
			     "\"name\":\"input\",\"datatype\":\"FP32\","
			     "\"shape\":[%d,1,%d],\"data\":[", params, B, X);
	for (int i = 0; i < B * X; i++)
		k += (size_t)snprintf(b + k, cap - k, "%s%.4f", i ? "," : "",
				      0.5 + 0.3 * sin(0.2 * i));
	snprintf(b + k, cap - k, "]}]}");
	return b;
}

struct rq {
	const char *method, *path, *hdr;
	const char *body;
	size_t len, json_len;	/* json_len > 0: binary input after it */
	int B, S, nq, samples, binary_out;	/* what a 200 must hold */
};

/* one call with a body of len bytes (binary-safe) */
static void call(const struct rq *q, struct sh_resp *r)
{
	struct curl_slist *hs = NULL;
	char url[1200], hl[64];
	CURL *c = curl_easy_init();
	assert_non_null(c);
	memset(r, 0, sizeof *r);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", S.port, q->path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sh_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sh_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);	/* a hang fails */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	hs = curl_slist_append(hs, "Expect:");
	if (q->hdr)
		hs = curl_slist_append(hs, q->hdr);
	if (q->json_len) {
		snprintf(hl, sizeof hl, "Inference-Header-Content-Length: %zu",
			 q->json_len);
		hs = curl_slist_append(hs, hl);
	}
	if (q->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)q->len);
		hs = curl_slist_append(hs, q->json_len ? "Content-Type: "
				       "application/octet-stream" :
				       "Content-Type: application/json");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -(long)rc;
	curl_slist_free_all(hs);
	curl_easy_cleanup(c);
	if (!r->body)
		r->body = calloc(1, 1);
}

/* a 200 infer answer holds every output asked for, each of its size */
static void check_infer_ok(const struct rq *q, const struct sh_resp *r)
{
	char v[32];
	size_t jl = r->len;
	if (sh_header(r, "Inference-Header-Content-Length", v, sizeof v))
		jl = strtoul(v, NULL, 10);
	assert_true(jl <= r->len);
	json_error_t e;
	json_t *j = json_loadb(r->body, jl, 0, &e);
	if (!j)
		fail_msg("a 200 answer that is not JSON: %s", e.text);
	json_t *outs = json_object_get(j, "outputs");
	size_t want = 2 + (size_t)q->nq + (q->samples ? 1 : 0), bin = 0;
	assert_int_equal(json_array_size(outs), want);
	for (size_t i = 0; i < want; i++) {
		json_t *o = json_array_get(outs, i);
		const char *nm = json_string_value(json_object_get(o, "name"));
		assert_non_null(nm);
		size_t n = (size_t)q->B * X * (strcmp(nm, "samples") ? 1 :
					       (size_t)q->S);
		json_t *d = json_object_get(o, "data");
		if (q->binary_out) {
			json_t *p = json_object_get(o, "parameters");
			assert_int_equal(json_integer_value(json_object_get(
				p, "binary_data_size")), 4 * n);
			bin += 4 * n;
		} else {
			assert_int_equal(json_array_size(d), n);
			for (size_t k = 0; k < n; k++)
				assert_true(json_is_number(json_array_get(d, k)));
		}
	}
	assert_int_equal(r->len - jl, bin);
	json_decref(j);
}

/* a clean refusal: status 500/503 (want_lo..503) and {"error": text}
 * holding one of up to two substrings */
static void check_clean_error(const struct sh_resp *r, long lo,
			      const char *a, const char *b)
{
	if (r->code < lo || r->code > 503)
		fail_msg("status %ld, want %ld..503 or 200: %.300s", r->code,
			 lo, r->body);
	json_t *j = json_loads(r->body, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (!msg || !(strstr(msg, a) || (b && strstr(msg, b))))
		fail_msg("status %ld with body %.300s: want {\"error\": "
			 "\"...%s...\"}", r->code, r->body, a);
	json_decref(j);
}

static void expect_live(void)
{
	struct sh_resp r;
	sh_http(&S, "GET", "/v2/health/live", NULL, NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
}

/* outcomes of one loop */
struct tally {
	const char *name;
	int points, ok, refused, ok_hit;
	int nmsg;
	char msg[8][160];	/* the distinct refusals: "status error" */
};

static void tally_msg(struct tally *t, const struct sh_resp *r)
{
	char m[160];
	json_t *j = json_loads(r->body, 0, NULL);
	const char *e = json_string_value(json_object_get(j, "error"));
	snprintf(m, sizeof m, "%ld %.150s", r->code, e ? e : "?");
	json_decref(j);
	for (int i = 0; i < t->nmsg; i++)
		if (!strcmp(t->msg[i], m))
			return;
	if (t->nmsg < 8)
		snprintf(t->msg[t->nmsg++], sizeof t->msg[0], "%s", m);
}

static void tally_print(const struct tally *t)
{
	print_message("%-34s %4d injection points: %4d refused cleanly, "
		      "%4d answered 200 (%d of them past a failed "
		      "allocation)\n", t->name, t->points, t->refused,
		      t->ok + t->ok_hit, t->ok_hit);
	for (int i = 0; i < t->nmsg; i++)
		print_message("    refused: %s\n", t->msg[i]);
}

/* One armed request: check the answer; then the same request unarmed
 * answers 200. Returns 1 when the armed one met no failure. */
static int inject_once(const struct rq *q, long k, struct tally *t,
		       const char *e1, const char *e2)
{
	struct sh_resp r;
	usleep(1000);	/* the previous answer's completion is done */
	fa_arm(k);
	call(q, &r);
	int hit = fa_disarm();
	if (r.code == 200) {
		check_infer_ok(q, &r);
		if (hit)
			t->ok_hit++;
		else
			t->ok++;
	} else {
		if (!hit)
			fail_msg("%s: status %ld with no injected failure: "
				 "%.300s", t->name, r.code, r.body);
		check_clean_error(&r, 500, e1, e2);
		tally_msg(t, &r);
		t->refused++;
	}
	sh_resp_free(&r);
	expect_live();
	if (hit) {
		call(q, &r);
		if (r.code != 200)
			fail_msg("%s: after allocation %ld failed, the same "
				 "request unarmed: %ld %.300s", t->name, k,
				 r.code, r.body);
		check_infer_ok(q, &r);
		sh_resp_free(&r);
	}
	t->points = (int)k;
	return !hit;
}

static void loop_request(const struct rq *q, struct tally *t)
{
	for (long k = 1;; k++) {
		assert_true(k < MAX_K);
		if (inject_once(q, k, t, "out of memory", NULL))
			break;
	}
	t->points--;	/* the last k met no failure */
	tally_print(t);
}

/* ---- the repository ---- */

static void write_model(const char *name, int v, uint64_t seed)
{
	struct sh_model o = {.X = X, .width = 8, .layers = 2, .seed = seed,
			     .dropout = 0.1f};
	sh_write_model(repo, name, v, &o);
}

static void model_path(char *out, size_t n, const char *name, int v)
{
	snprintf(out, n, "%s/%s/%d/model.safetensors", repo, name, v);
}

static void rmrf(const char *p)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
	assert_int_equal(system(cmd), 0);
}

static struct rq rq_json(const char *body, int B, int S_, int nq, int smp)
{
	struct rq q = {"POST", "/v2/models/m/infer", NULL, body, strlen(body),
		       0, B, S_, nq, smp, 0};
	return q;
}

/* ---- 1. request path ---- */

/* The first request a fresh server sees (empty pools, metric series not
 * yet created), and a grown request (batch 8, 16 samples, quantiles and
 * samples) on a server warmed with small ones: a server per k. */
static void test_request_fresh(void **state)
{
	(void)state;
	char *small = body_json(1, "\"num_samples\":2");
	char *big = body_json(8, "\"num_samples\":16,\"quantiles\":"
			      "[0.1,0.5,0.9],\"return_samples\":true");
	struct rq qs = rq_json(small, 1, 2, 2, 0);
	struct rq qb = rq_json(big, 8, 16, 3, 1);
	struct tally tf = {.name = "first request, fresh server"};
	struct tally tg = {.name = "grown request, warm server"};
	for (int pass = 0; pass < 2; pass++) {
		struct tally *t = pass ? &tg : &tf;
		const struct rq *q = pass ? &qb : &qs;
		for (long k = 1;; k++) {
			assert_true(k < MAX_K);
			srv_start(NULL);
			if (pass) {
				struct sh_resp r;
				for (int i = 0; i < 3; i++) {
					call(&qs, &r);
					sh_expect(&r, 200);
					sh_resp_free(&r);
				}
			}
			int done = inject_once(q, k, t, "out of memory", NULL);
			srv_stop();
			if (done)
				break;
		}
		t->points--;
		tally_print(t);
		assert_true(t->points >= 5);
	}
	free(small);
	free(big);
}

/* A warm server: JSON, batched with quantiles and samples, binary in and
 * out, /metrics and the repository index GET-like POST paths stay. */
static void test_request_warm(void **state)
{
	(void)state;
	srv_start(NULL);
	char *b1 = body_json(1, "");
	char *b3 = body_json(3, "\"num_samples\":8,\"quantiles\":[0.25,0.75]"
			     ",\"return_samples\":true,\"seed\":3");
	struct rq q1 = rq_json(b1, 1, 4, 2, 0);
	struct rq q3 = rq_json(b3, 3, 8, 2, 1);
	/* binary: FP32 input after the JSON header, every output binary */
	char hdr[512];
	int hl = snprintf(hdr, sizeof hdr, "{\"parameters\":{\"num_samples\""
			  ":4,\"binary_data_output\":true},\"inputs\":[{"
			  "\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":"
			  "[2,1,%d],\"parameters\":{\"binary_data_size\":%d}}]"
			  "}", X, 2 * X * 4);
	char *bb = malloc((size_t)hl + 2 * X * 4);
	memcpy(bb, hdr, (size_t)hl);
	for (int i = 0; i < 2 * X; i++) {
		float f = 0.5f + 0.01f * (float)i;
		memcpy(bb + hl + 4 * i, &f, 4);
	}
	struct rq qb = {"POST", "/v2/models/m/infer", NULL, bb,
			(size_t)hl + 2 * X * 4, (size_t)hl, 2, 4, 2, 0, 1};
	const struct rq *qs[] = {&q1, &q3, &qb};
	const char *names[] = {"warm JSON request", "warm batched + samples",
			       "warm binary in and out"};
	for (int i = 0; i < 3; i++) {
		struct sh_resp r;
		call(qs[i], &r);	/* warm this shape */
		sh_expect(&r, 200);
		check_infer_ok(qs[i], &r);
		sh_resp_free(&r);
		struct tally t = {.name = names[i]};
		loop_request(qs[i], &t);
	}
	srv_stop();
	free(b1);
	free(b3);
	free(bb);
}

/* ---- 2. model load and reload ---- */

static double reload_failures(void)
{
	return sh_metric0(&S, "pno_config_reload_failures_total");
}

/* the version that answers model/[versions/v/]infer (0: not 200) */
static int answers(const char *model, int v)
{
	char path[128], ver[32];
	char *b = body_json(1, "");
	struct sh_resp r;
	if (v)
		snprintf(path, sizeof path, "/v2/models/%s/versions/%d/infer",
			 model, v);
	else
		snprintf(path, sizeof path, "/v2/models/%s/infer", model);
	sh_http(&S, "POST", path, b, NULL, &r);
	free(b);
	int got = 0;
	if (r.code == 200) {
		sh_version(r.body, ver, sizeof ver);
		got = atoi(ver);
	}
	sh_resp_free(&r);
	return got;
}

static void post_admin(const char *path, long want)
{
	struct sh_resp r;
	sh_http(&S, "POST", path, "", NULL, &r);
	sh_expect(&r, want);
	sh_resp_free(&r);
}

/* k-th allocation of a reload through an endpoint: refused (400 with an
 * error, counted, the old state answering) or applied */
static void loop_reload(const char *path, const char *model, int newv,
			int oldv, void (*reset)(void), struct tally *t)
{
	double f0 = reload_failures();
	int refused400 = 0;
	for (long k = 1;; k++) {
		struct sh_resp r;
		assert_true(k < MAX_K);
		fa_arm(k);
		sh_http(&S, "POST", path, "", NULL, &r);
		int hit = fa_disarm();
		if (r.code == 200) {
			assert_int_equal(answers(model, 0), newv);
			sh_resp_free(&r);
			if (!hit) {
				t->ok++;
				t->points = (int)k - 1;
				break;
			}
			t->ok_hit++;
			reset();	/* back to the old state */
			continue;
		}
		if (!hit)
			fail_msg("%s: %ld with no injected failure: %.300s",
				 path, r.code, r.body);
		if (r.code == 503 && strstr(r.body, "reload was applied")) {
			/* applied, then no memory for the index answer */
			sh_resp_free(&r);
			assert_int_equal(answers(model, 0), newv);
			t->ok_hit++;
			reset();
			continue;
		}
		if (r.code != 400 && r.code != 503)
			fail_msg("%s: allocation %ld failed: status %ld: %.300s",
				 path, k, r.code, r.body);
		json_t *j = json_loads(r.body, 0, NULL);
		assert_non_null(json_string_value(json_object_get(j, "error")));
		json_decref(j);
		if (k % 50 == 1 || t->nmsg < 8)
			tally_msg(t, &r);
		sh_resp_free(&r);
		t->refused++;
		refused400 += r.code == 400;
		/* the old state serving (0: the model is not served) */
		assert_int_equal(answers(model, 0), oldv);
	}
	/* every refused reload counted, the applied ones not */
	tu_assert_close(reload_failures(), f0 + refused400, 0);
	expect_live();
	tally_print(t);
	assert_true(t->refused >= 5);
}

static void reset_index(void)
{
	char d[1000];
	snprintf(d, sizeof d, "%s/m/2", repo);
	rmrf(d);
	post_admin("/v2/repository/index", 200);
	assert_int_equal(answers("m", 0), 1);
	write_model("m", 2, 22);
}

static void reset_load(void)
{
	post_admin("/v2/repository/models/n/unload", 200);
	assert_int_equal(answers("n", 0), 0);
}

/* SIGHUP: the main thread reloads; the outcome is read from the log (a
 * /metrics poll would allocate inside the armed window) */
static void loop_sighup(struct tally *t)
{
	double f0 = reload_failures();
	for (long k = 1;; k++) {
		assert_true(k < MAX_K);
		int ok0 = sh_log_count(&S, "\"reloaded\"", "SIGHUP", NULL);
		int bad0 = sh_log_count(&S, "\"reload_failed\"", "SIGHUP", NULL);
		fa_arm(k);
		kill(getpid(), SIGHUP);
		double t0 = sh_now();
		int ok, bad;
		for (;;) {
			ok = sh_log_count(&S, "\"reloaded\"", "SIGHUP", NULL);
			bad = sh_log_count(&S, "\"reload_failed\"", "SIGHUP",
					   NULL);
			if (ok > ok0 || bad > bad0)
				break;
			if (sh_now() - t0 > 30)
				fail_msg("SIGHUP %ld: no outcome in the log", k);
			usleep(1000);
		}
		usleep(200);	/* the reload's last log and audit lines */
		int hit = fa_disarm();
		if (bad > bad0) {
			assert_true(hit);
			t->refused++;
			assert_int_equal(answers("m", 0), 2);
			continue;
		}
		assert_int_equal(answers("m", 0), 3);
		if (!hit) {
			t->ok++;
			t->points = (int)k - 1;
			break;
		}
		t->ok_hit++;
		char d[1000];	/* back: drop version 3, write it anew */
		snprintf(d, sizeof d, "%s/m/3", repo);
		rmrf(d);
		post_admin("/v2/repository/index", 200);
		write_model("m", 3, 33);
	}
	tu_assert_close(reload_failures(), f0 + t->refused, 0);
	expect_live();
	tally_print(t);
	assert_true(t->refused >= 5);
}

static void test_reload(void **state)
{
	(void)state;
	char d[1000];
	snprintf(d, sizeof d, "%s/m/2", repo);
	rmrf(d);
	snprintf(d, sizeof d, "%s/m/3", repo);
	rmrf(d);
	srv_start(NULL);
	assert_int_equal(answers("m", 0), 1);
	write_model("m", 2, 22);	/* a new version to load */
	struct tally ti = {.name = "reload: POST repository/index"};
	loop_reload("/v2/repository/index", "m", 2, 1, reset_index, &ti);
	reset_load();
	struct tally tl = {.name = "reload: POST models/n/load"};
	loop_reload("/v2/repository/models/n/load", "n", 1, 0, reset_load,
		    &tl);
	write_model("m", 3, 33);
	struct tally th = {.name = "reload: SIGHUP"};
	loop_sighup(&th);
	srv_stop();
	snprintf(d, sizeof d, "%s/m/2", repo);
	rmrf(d);
	snprintf(d, sizeof d, "%s/m/3", repo);
	rmrf(d);
}

/* ---- 3. I/O errors ---- */

static void truncate_file(const char *p)
{
	struct stat sb;
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(truncate(p, sb.st_size / 2), 0);
}

static void corrupt_header(const char *p)
{
	FILE *f = fopen(p, "r+b");
	assert_non_null(f);
	/* the safetensors header length: far past the file's end */
	unsigned char junk[8] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
	assert_int_equal(fwrite(junk, 1, 8, f), 8);
	assert_int_equal(fclose(f), 0);
}

static void to_directory(const char *p)
{
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(p, 0755), 0);
}

/* A served version's file broken between start and a reload: the reload
 * is refused naming the file's model and version and why; the loaded
 * version keeps answering; repaired, the reload applies. */
static void test_io_model(void **state)
{
	(void)state;
	void (*faults[])(const char *) = {truncate_file, corrupt_header,
					  to_directory};
	const char *names[] = {"truncated", "corrupt header", "a directory"};
	char p[1100];
	snprintf(p, sizeof p, "%s/m/2", repo);
	rmrf(p);
	snprintf(p, sizeof p, "%s/m/3", repo);
	rmrf(p);
	model_path(p, sizeof p, "m", 1);
	srv_start(NULL);
	for (int i = 0; i < 3; i++) {
		struct sh_resp r;
		double f0 = reload_failures();
		faults[i](p);
		sh_http(&S, "POST", "/v2/repository/index", "", NULL, &r);
		sh_expect(&r, 400);
		json_t *j = json_loads(r.body, 0, NULL);
		const char *e = json_string_value(json_object_get(j, "error"));
		assert_non_null(e);
		print_message("model file %s: 400 %s\n", names[i], e);
		assert_non_null(strstr(e, "model m"));
		assert_non_null(strstr(e, p));
		json_decref(j);
		sh_resp_free(&r);
		tu_assert_close(reload_failures(), f0 + 1, 0);
		assert_true(sh_log_count(&S, "\"reload_failed\"", p, NULL) >= 1);
		assert_int_equal(answers("m", 1), 1);
		assert_int_equal(answers("m", 0), 1);
		rmrf(p);
		write_model("m", 1, 11);
		post_admin("/v2/repository/index", 200);
		assert_int_equal(answers("m", 0), 1);
	}
	srv_stop();
}

/* ---- auth, sessions, audit ---- */

static void write_keys(void)
{
	unsigned char h[AUTH_HASH_BYTES];
	auth_key_generate(token, h);
	snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", token);
	FILE *f = fopen(keys_path, "w");
	assert_non_null(f);
	fprintf(f, "[{\"name\":\"ops\",\"hash\":\"");
	for (int i = 0; i < AUTH_HASH_BYTES; i++)
		fprintf(f, "%02x", h[i]);
	fprintf(f, "\",\"roles\":[\"infer\",\"admin\"]}]\n");
	assert_int_equal(fclose(f), 0);
}

static int run_quiet(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* With auth and the audit log on: a session POST and an audited
 * inference under the allocation loop; then the audit log's writes fail
 * (RLIMIT_FSIZE of 1 byte for the window: EFBIG, SIGXFSZ ignored) and
 * are restored. */
static void test_auth_audit(void **state)
{
	(void)state;
	char cmd[3000];
	rmrf(audit_dir);
	unlink(audit_key);
	snprintf(cmd, sizeof cmd, "%s audit keygen --out '%s' >/dev/null",
		 PNO_BIN, audit_key);
	assert_int_equal(run_quiet(cmd), 0);
	write_keys();
	const char *ex[] = {"auth", "true", "keys_file", keys_path,
			    "audit_dir", audit_dir, "audit_key_file",
			    audit_key, "audit_fsync", "false", NULL};
	srv_start(ex);

	/* sessions */
	struct rq qsess = {"POST", "/v2/sessions", bearer, "", 0, 0, 0, 0, 0,
			   0, 0};
	struct tally ts = {.name = "session POST (auth on)"};
	for (long k = 1;; k++) {
		struct sh_resp r;
		assert_true(k < MAX_K);
		usleep(1000);
		fa_arm(k);
		call(&qsess, &r);
		int hit = fa_disarm();
		if (r.code == 200) {
			json_t *j = json_loads(r.body, 0, NULL);
			assert_non_null(json_string_value(json_object_get(
				j, "token")));
			json_decref(j);
			hit ? ts.ok_hit++ : ts.ok++;
		} else {
			assert_true(hit);
			check_clean_error(&r, 500, "out of memory", NULL);
			tally_msg(&ts, &r);
			ts.refused++;
		}
		sh_resp_free(&r);
		expect_live();
		if (!hit) {
			ts.points = (int)k - 1;
			break;
		}
		call(&qsess, &r);
		sh_expect(&r, 200);
		sh_resp_free(&r);
	}
	tally_print(&ts);

	/* an audited inference */
	char *b1 = body_json(1, "\"num_samples\":4");
	struct rq q = rq_json(b1, 1, 4, 2, 0);
	q.hdr = bearer;
	struct sh_resp r;
	call(&q, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	struct tally ta = {.name = "audited inference (auth on)"};
	for (long k = 1;; k++) {
		assert_true(k < MAX_K);
		if (inject_once(&q, k, &ta, "out of memory",
				"audit log unavailable"))
			break;
	}
	ta.points--;
	tally_print(&ta);

	/* the audit log's writes fail, then work again */
	double af0 = sh_metric0(&S, "pno_audit_failures_total");
	struct rlimit old, tiny;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	tiny = old;
	tiny.rlim_cur = 1;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
	int refused = 0;
	for (int i = 0; i < 5; i++) {
		char ra[16];
		call(&q, &r);
		if (r.code == 503 && strstr(r.body, "audit log unavailable") &&
		    sh_header(&r, "Retry-After", ra, sizeof ra))
			refused++;
		sh_resp_free(&r);
		sh_http(&S, "GET", "/v2/health/live", NULL, NULL, &r);
		sh_expect(&r, 200);
		sh_resp_free(&r);
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	double af1 = sh_metric0(&S, "pno_audit_failures_total");
	call(&q, &r);	/* the fault gone: answered and recorded again */
	sh_expect(&r, 200);
	check_infer_ok(&q, &r);
	sh_resp_free(&r);
	print_message("audit writes failing (EFBIG): %d of 5 inferences "
		      "refused 503 (audit failures counted %g); the next one "
		      "after the fault 200\n", refused, af1 - af0);
	assert_int_equal(refused, 5);
	assert_true(af1 - af0 >= 5);
	srv_stop();
	free(b1);
	char out[4096];
	snprintf(cmd, sizeof cmd, "%s audit verify --log '%s' --key '%s' "
		 ">/dev/null 2>&1", PNO_BIN, audit_dir, audit_key);
	assert_int_equal(run_quiet(cmd), 0);
	(void)out;
}

/* ---- setup ---- */

static int setup(void **state)
{
	(void)state;
	struct pno_allocator a = {fa_alloc, fa_free, NULL};
	pno_allocator_set(&a);
	curl_global_init(CURL_GLOBAL_ALL);
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("inj_repo"));
	snprintf(keys_path, sizeof keys_path, "%s", tu_tmp_path("inj_keys"));
	snprintf(audit_dir, sizeof audit_dir, "%s", tu_tmp_path("inj_audit"));
	snprintf(audit_key, sizeof audit_key, "%s", tu_tmp_path("inj_akey"));
	rmrf(repo);
	write_model("m", 1, 11);
	write_model("n", 1, 12);
	/* one server run first: process-wide caches (FFT plans) filled */
	live_base = atomic_load(&fa_live);
	srv_start(NULL);
	assert_int_equal(answers("m", 0), 1);
	char *b = body_json(8, "\"num_samples\":16,\"return_samples\":true");
	struct sh_resp r;
	sh_http(&S, "POST", "/v2/models/m/infer", b, NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	free(b);
	kill(getpid(), SIGTERM);
	pthread_join(srv_th, NULL);
	srv_running = 0;
	live_base = atomic_load(&fa_live);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rmrf(repo);
	rmrf(audit_dir);
	unlink(audit_key);
	unlink(keys_path);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_fresh),
		cmocka_unit_test(test_request_warm),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_io_model),
		cmocka_unit_test(test_auth_audit),
	};
	if (getenv("INJECT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("INJECT_TEST_FILTER"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
