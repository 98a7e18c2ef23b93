/* pno serve, in process: allocation-failure loops over what the server
 * allocates (the repository scan into a state with its model versions and
 * workers; a request's parse, run and response). The end-to-end
 * behaviour is test_serve.c. */
#include "testutil.h"
#include "pno/fno.h"
#include "serve_internal.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#define X1 16

static char repo[400];

/* A counting, failing allocator of its own: the server frees from worker
 * threads while the main thread frees too, so the counters are atomic
 * (testutil's are not thread-safe). */
static _Atomic long n_alloc, n_live, fail_at;
static _Atomic int g_failed;

static void *t_alloc(void *ud, size_t size, size_t align)
{
	void *p = NULL;
	(void)ud;
	long n = atomic_fetch_add(&n_alloc, 1) + 1;
	if (atomic_load(&fail_at) == n) {
		atomic_store(&g_failed, 1);
		return NULL;
	}
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	atomic_fetch_add(&n_live, 1);
	return p;
}

static void t_free(void *ud, void *p)
{
	(void)ud;
	atomic_fetch_sub(&n_live, 1);
	free(p);
}

static void t_reset(long k)
{
	atomic_store(&n_alloc, 0);
	atomic_store(&g_failed, 0);
	atomic_store(&fail_at, k);
}

static void write_model(const char *name, int v, int heads, uint64_t seed)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = 6, .modes1 = 4, .layers = 2,
				 .proj_hidden = 8, .heads = heads};
	char dir[1100], path[1200];
	snprintf(dir, sizeof dir, "%s/%s", repo, name);
	mkdir(dir, 0755);
	snprintf(dir, sizeof dir, "%s/%s/%d", repo, name, v);
	mkdir(dir, 0755);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_status(pno_fno_init(&m, &a, X1, 1, 2, seed), PNO_STATUS_OK);
	if (heads == 2)
		snprintf(m.method, sizeof m.method, "pno-r");
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
}

/* a server context with what the state and requests need, no HTTP */
static struct server *server_new(void)
{
	struct server *srv = calloc(1, sizeof *srv);
	assert_non_null(srv);
	serve_config_defaults(&srv->opts.cfg);
	snprintf(srv->opts.cfg.repository, sizeof srv->opts.cfg.repository,
		 "%s", repo);
	srv->opts.cfg.max_samples = 8;
	srv->opts.cfg.default_samples = 4;
	srv->opts.cfg.max_queue_size = 4;
	srv->opts.cfg.compute_threads = 1;
	pthread_mutex_init(&srv->state_mu, NULL);
	pthread_mutex_init(&srv->reload_mu, NULL);
	pthread_mutex_init(&srv->pool_mu, NULL);
	pthread_mutex_init(&srv->log_mu, NULL);
	pthread_mutex_init(&srv->workers_mu, NULL);
	pthread_cond_init(&srv->workers_cv, NULL);
	srv->log = fopen("/dev/null", "w");
	srv->log_level = PNO_LOG_LEVEL_ERROR + 1;	/* silent */
	assert_status(sv_metrics_init(&srv->met), PNO_STATUS_OK);
	return srv;
}

static void server_free(struct server *srv)
{
	sv_state_release(srv->state);
	sv_workers_wait(srv);
	prom_registry_free(srv->met.reg);
	fclose(srv->log);
	free(srv);
}

static int setup(void **state)
{
	(void)state;
	pno_threads_set(1);
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("serve_unit_repo"));
	mkdir(repo, 0755);
	write_model("a", 1, 0, 1);
	write_model("a", 2, 0, 2);
	write_model("b", 1, 2, 3);
	static const struct pno_allocator a = {t_alloc, t_free, NULL};
	pno_allocator_set(&a);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pno_allocator_set(NULL);
	return 0;
}

/* Every allocation of the scan (state, model table, model loads, version
 * queues) failed in turn: the start fails with a reason and leaves
 * nothing behind, or succeeds and releases to nothing. */
static void test_repo_alloc_failures(void **state)
{
	(void)state;
	struct server *srv = server_new();
	char err[SV_ERR_MAX];
	/* one clean run first: metric series created on first use stay */
	assert_int_equal(sv_repo_open(srv, err, sizeof err), 0);
	assert_int_equal(srv->state->nm, 2);
	assert_int_equal(srv->state->m[0].nv, 2);
	assert_string_equal(sv_state_version(srv->state, "a", "")->vstr, "2");
	assert_null(sv_state_version(srv->state, "a", "3"));
	sv_state_release(srv->state);
	srv->state = NULL;
	sv_workers_wait(srv);
	long live0 = atomic_load(&n_live), k;
	for (k = 1;; k++) {
		t_reset(k);
		err[0] = 0;
		int rc = sv_repo_open(srv, err, sizeof err);
		int failed = atomic_load(&g_failed);
		t_reset(0);
		if (rc == 0) {
			sv_state_release(srv->state);
			srv->state = NULL;
		}
		sv_workers_wait(srv);	/* workers free their versions */
		if (rc != 0) {
			assert_true(failed);
			assert_true(err[0] != 0);
		}
		if (atomic_load(&n_live) != live0)
			fail_msg("allocation %ld failed: %ld blocks left (%s)", k,
				 atomic_load(&n_live) - live0, err);
		if (!failed)
			break;
	}
	print_message("repository scan: %ld allocation points, each failure "
		      "clean\n", k - 1);
	server_free(srv);
}

static void req_release(struct req *r)
{
	pno_free(r->body);
	pno_free(r->x);
	pno_free(r->y);
	pno_free(r->resp);
	memset(r, 0, sizeof *r);
}

/* Parse, run and respond with every allocation failing in turn: 503 (out
 * of memory) or the full answer, and nothing left over. */
static void test_request_alloc_failures(void **state)
{
	(void)state;
	struct server *srv = server_new();
	char err[SV_ERR_MAX], text[4096], *p = text;
	assert_int_equal(sv_repo_open(srv, err, sizeof err), 0);
	struct mversion *mv = sv_state_version(srv->state, "b", "1");
	assert_non_null(mv);
	p += sprintf(p, "{\"id\":\"q\",\"parameters\":{\"num_samples\":3,"
		     "\"seed\":4,\"return_samples\":true,\"quantiles\":[0.5]},"
		     "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
		     "\"shape\":[2,1,%d],\"data\":[", X1);
	for (int i = 0; i < 2 * X1; i++)
		p += sprintf(p, "%s%d", i ? "," : "", i % 5);
	sprintf(p, "]}]}");
	struct req r;
	long live0 = atomic_load(&n_live), k;
	size_t want_len = 0;
	for (k = 1;; k++) {
		memset(&r, 0, sizeof r);
		r.srv = srv;
		r.mv = mv;
		r.body = pno_strdup(text);
		assert_non_null(r.body);
		r.body_len = strlen(text);
		t_reset(k);
		int st = sv_infer_parse(&r, &srv->opts.cfg);
		if (!st) {
			sv_infer_run(mv, &r);
			st = r.status == 200 ? sv_infer_respond(&r) : r.status;
		}
		int failed = atomic_load(&g_failed);
		t_reset(0);
		if (st) {
			assert_true(failed);
			assert_int_equal(st, 503);
			assert_non_null(strstr(r.err, "memory"));
		} else {
			/* mean, std, 1 quantile, 2 variances, 3 samples */
			assert_non_null(strstr(r.resp, "\"id\":\"q\""));
			if (!want_len)
				want_len = r.resp_len;
			assert_int_equal(r.resp_len, want_len);
		}
		req_release(&r);
		if (atomic_load(&n_live) != live0)
			fail_msg("allocation %ld failed: %ld blocks left", k,
				 atomic_load(&n_live) - live0);
		if (!failed)
			break;
	}
	print_message("request parse/run/respond: %ld allocation points, each "
		      "failure 503 and clean\n", k - 1);

	/* steady state: a request object reused (as the pool does) keeps its
	 * buffers; what still allocates is jansson's parse and the library's
	 * prediction. Binary input leaves only the header to parse. */
	long counts[3];
	memset(&r, 0, sizeof r);
	r.srv = srv;
	r.mv = mv;
	r.body = pno_strdup(text);
	r.body_len = strlen(text);
	r.body_cap = r.body_len + 1;
	for (int run = 0; run < 3; run++) {
		t_reset(0);
		assert_int_equal(sv_infer_parse(&r, &srv->opts.cfg), 0);
		sv_infer_run(mv, &r);
		assert_int_equal(r.status, 200);
		assert_int_equal(sv_infer_respond(&r), 0);
		counts[run] = atomic_load(&n_alloc);
	}
	/* the same request with binary input */
	char head[512];
	float xb[2 * X1];
	for (int i = 0; i < 2 * X1; i++)
		xb[i] = (float)(i % 5);
	int hl = snprintf(head, sizeof head, "{\"id\":\"q\",\"parameters\":"
			  "{\"num_samples\":3,\"seed\":4,\"return_samples\":"
			  "true,\"quantiles\":[0.5]},\"inputs\":[{\"name\":"
			  "\"input\",\"datatype\":\"FP32\",\"shape\":[2,1,%d],"
			  "\"parameters\":{\"binary_data_size\":%zu}}]}", X1,
			  sizeof xb);
	size_t want = r.resp_len;
	pno_free(r.body);
	r.body = pno_malloc(hl + sizeof xb);
	memcpy(r.body, head, hl);
	memcpy(r.body + hl, xb, sizeof xb);
	r.body_len = hl + sizeof xb;
	r.header_len = hl;
	t_reset(0);
	assert_int_equal(sv_infer_parse(&r, &srv->opts.cfg), 0);
	sv_infer_run(mv, &r);
	assert_int_equal(sv_infer_respond(&r), 0);
	long bin = atomic_load(&n_alloc);
	assert_int_equal(r.resp_len, want);	/* the same answer */
	print_message("allocations per request (batch 2, 3 samples): first "
		      "%ld, then %ld, %ld; binary input %ld\n", counts[0],
		      counts[1], counts[2], bin);
	/* the buffers are kept: later requests allocate less */
	assert_true(counts[1] < counts[0] && counts[2] == counts[1]);
	assert_true(bin < counts[1]);
	req_release(&r);
	server_free(srv);
}

/* Every prefix of a valid request, and the request with bytes flipped
 * (Philox-chosen positions and values), parses to 0 or a 400 with a
 * message; never anything else (run under ASan, never out of bounds). */
static void test_parse_garbage(void **state)
{
	(void)state;
	struct server *srv = server_new();
	char err[SV_ERR_MAX], text[2048], *p = text;
	assert_int_equal(sv_repo_open(srv, err, sizeof err), 0);
	struct mversion *mv = sv_state_version(srv->state, "b", "1");
	p += sprintf(p, "{\"id\":\"g\",\"parameters\":{\"num_samples\":2,"
		     "\"quantiles\":[0.25]},\"inputs\":[{\"name\":\"input\","
		     "\"datatype\":\"FP64\",\"shape\":[1,1,%d],\"data\":[[",
		     X1);
	for (int i = 0; i < X1; i++)
		p += sprintf(p, "%s%d.5", i ? "," : "", i);
	sprintf(p, "]]}],\"outputs\":[{\"name\":\"mean\"},{\"name\":"
		"\"quantile_0.75\"}]}");
	size_t n = strlen(text);
	struct req r;
	memset(&r, 0, sizeof r);
	r.srv = srv;
	r.mv = mv;
	r.body = pno_malloc(n + 1);
	r.body_cap = n + 1;
	int ok = 0, bad = 0;
	for (size_t len = 0; len <= n + 400; len++) {
		uint32_t w[4];
		memcpy(r.body, text, n + 1);
		size_t use = len;
		if (len > n) {	/* flip 1-3 bytes of the whole request */
			pno_philox4x32(w, 77, len, 0);
			for (int f = 0; f <= (int)(w[3] % 3); f++)
				r.body[w[f] % n] = (char)(w[(f + 1) % 4] >> 8);
			use = n;
		}
		r.body_len = use;
		r.header_len = 0;
		int st = sv_infer_parse(&r, &srv->opts.cfg);
		if (st == 0) {
			ok++;
		} else {
			if (st != 400)
				fail_msg("length %zu: status %d (%s)", len, st,
					 r.err);
			assert_true(r.err[0] != 0);
			bad++;
		}
	}
	print_message("garbage: %d parsed, %d refused with 400\n", ok, bad);
	assert_true(ok >= 1 && bad > (int)n);
	req_release(&r);
	server_free(srv);
}

/* ---- input hardening: the JSON pre-scan ---- */

struct gen {
	char *p, *end;
	uint64_t ctr;
	uint32_t w[4];
	int used;
};

static uint32_t gen_u32(struct gen *g)
{
	if (g->used == 0 || g->used == 4) {
		pno_philox4x32(g->w, 91, g->ctr++, 0);
		g->used = 0;
	}
	return g->w[g->used++];
}

static void gen_put(struct gen *g, const char *s)
{
	size_t n = strlen(s);
	assert_true(g->p + n < g->end);
	memcpy(g->p, s, n);
	g->p += n;
	*g->p = 0;
}

static void gen_ws(struct gen *g)
{
	static const char *const ws[] = {"", "", " ", "\n\t", "\r\n  "};
	gen_put(g, ws[gen_u32(g) % 5]);
}

/* a string holding the scanner's hard cases: brackets, commas, escaped
 * quotes and backslashes, \u escapes */
static void gen_string(struct gen *g, int index)
{
	static const char *const parts[] = {"a", "[", "]", "{", "}", ",",
					    "\\\"", "\\\\", "\\u005b", "\\n",
					    "\\\\\\\"", " ", "x,y"};
	char k[16];
	gen_put(g, "\"");
	int n = (int)(gen_u32(g) % 5);
	for (int i = 0; i < n; i++)
		gen_put(g, parts[gen_u32(g) % 13]);
	if (index >= 0) {	/* object keys: distinct */
		snprintf(k, sizeof k, "#%d", index);
		gen_put(g, k);
	}
	gen_put(g, "\"");
}

static void gen_value(struct gen *g, int depth)
{
	uint32_t t = gen_u32(g) % (depth >= 9 ? 3 : 6);
	gen_ws(g);
	if (t == 0) {
		gen_put(g, gen_u32(g) % 2 ? "-1.5e3" : "7");
	} else if (t == 1) {
		gen_string(g, -1);
	} else if (t == 2) {
		gen_put(g, gen_u32(g) % 2 ? "true" : "null");
	} else {
		int obj = t == 5, n = (int)(gen_u32(g) % 5);
		gen_put(g, obj ? "{" : "[");
		for (int i = 0; i < n; i++) {
			if (i)
				gen_put(g, ",");
			if (obj) {
				gen_ws(g);
				gen_string(g, i);
				gen_ws(g);
				gen_put(g, ":");
			}
			gen_value(g, depth + 1);
		}
		gen_ws(g);
		gen_put(g, obj ? "}" : "]");
	}
	gen_ws(g);
}

/* reference: depth and elements from jansson's tree */
static void tree_count(const json_t *v, int d, int *depth, int64_t *el)
{
	size_t i;
	const char *k;
	json_t *c;
	if (!json_is_array(v) && !json_is_object(v))
		return;
	*depth = d + 1 > *depth ? d + 1 : *depth;
	if (json_is_array(v)) {
		*el += (int64_t)json_array_size(v);
		json_array_foreach(v, i, c)
			tree_count(c, d + 1, depth, el);
	} else {
		*el += (int64_t)json_object_size(v);
		json_object_foreach((json_t *)v, k, c)
			tree_count(c, d + 1, depth, el);
	}
}

/* 2000 Philox-generated documents (nesting to 10, strings full of
 * brackets, commas and escapes): the scanner's depth and element count
 * equal jansson's tree exactly; at limit = the count it passes, at
 * count - 1 it stops. */
static void test_prescan_reference(void **state)
{
	(void)state;
	static char buf[1 << 20];
	int maxd = 0;
	int64_t maxel = 0;
	for (int doc = 0; doc < 2000; doc++) {
		struct gen g = {buf, buf + sizeof buf, (uint64_t)doc << 32, {0},
				0};
		gen_put(&g, "");
		gen_value(&g, 0);
		size_t n = (size_t)(g.p - buf);
		json_error_t e;
		json_t *j = json_loadb(buf, n, JSON_DECODE_ANY, &e);
		if (!j)
			fail_msg("doc %d does not parse: %s: %s", doc, e.text, buf);
		int rd = 0, d = -1;
		int64_t rel = 0, el = -1;
		size_t at;
		tree_count(j, 0, &rd, &rel);
		json_decref(j);
		assert_int_equal(sv_json_prescan(buf, n, 1024, INT64_MAX, &d, &el,
						 &at), SV_SCAN_OK);
		if (d != rd || el != rel)
			fail_msg("doc %d: scan depth %d elements %lld, tree %d "
				 "%lld: %s", doc, d, (long long)el, rd,
				 (long long)rel, buf);
		assert_int_equal(at, n);
		assert_int_equal(sv_json_prescan(buf, n, rd, rel, NULL, NULL,
						 NULL), SV_SCAN_OK);
		if (rd > 0)
			assert_int_equal(sv_json_prescan(buf, n, rd - 1, rel, NULL,
							 NULL, NULL),
					 SV_SCAN_DEPTH);
		if (rel > 0)
			assert_int_equal(sv_json_prescan(buf, n, rd, rel - 1, NULL,
							 NULL, NULL),
					 SV_SCAN_ELEMENTS);
		maxd = rd > maxd ? rd : maxd;
		maxel = rel > maxel ? rel : maxel;
	}
	print_message("prescan: 2000 documents agree with jansson (depth up "
		      "to %d, up to %lld elements)\n", maxd, (long long)maxel);
	assert_true(maxd >= 8 && maxel >= 50);
}

/* Hostile bodies through sv_infer_parse: 100000 '[' stop at the depth
 * limit's byte, before the parser; too many elements; too many samples. */
static void test_parse_limits(void **state)
{
	(void)state;
	struct server *srv = server_new();
	char err[SV_ERR_MAX];
	assert_int_equal(sv_repo_open(srv, err, sizeof err), 0);
	struct mversion *mv = sv_state_version(srv->state, "b", "1");
	struct serve_config cfg = srv->opts.cfg;
	struct req r;
	memset(&r, 0, sizeof r);
	r.srv = srv;
	r.mv = mv;
	size_t n = 100000;
	r.body = pno_malloc(n + 64 * X1 + 512);
	r.body_cap = n + 1;
	memset(r.body, '[', n);
	r.body_len = n;
	long a0 = atomic_load(&n_alloc);
	double t0 = (double)clock();
	assert_int_equal(sv_infer_parse(&r, &cfg), 400);
	double dt = ((double)clock() - t0) / CLOCKS_PER_SEC;
	assert_string_equal(r.err, "the JSON nests deeper than "
			    "max_json_depth (32) at byte 32");
	/* refused before the parser: nothing allocated */
	assert_int_equal(atomic_load(&n_alloc), a0);
	print_message("100000 '[': 400 in %.1f us\n", 1e6 * dt);
	/* a body within the limits: the elements of data (X1 numbers) and
	 * the rest; parsed at the exact count, refused one below */
	int len = sprintf(r.body, "{\"parameters\":{\"num_samples\":4},"
			  "\"inputs\":[{\"name\":\"input\",\"datatype\":"
			  "\"FP32\",\"shape\":[2,1,%d],\"data\":[", X1);
	for (int i = 0; i < 2 * X1; i++)
		len += sprintf(r.body + len, "%s%d", i ? "," : "", i % 3);
	len += sprintf(r.body + len, "]}]}");
	r.body_len = (size_t)len;
	/* root 2 + parameters 1 + inputs 1 + input 4 + shape 3 + data */
	int64_t want = 2 + 1 + 1 + 4 + 3 + 2 * X1;
	int64_t el;
	assert_int_equal(sv_json_prescan(r.body, r.body_len, 32, INT64_MAX,
					 NULL, &el, NULL), SV_SCAN_OK);
	assert_int_equal(el, want);
	cfg.max_json_elements = (int)want;
	assert_int_equal(sv_infer_parse(&r, &cfg), 0);
	cfg.max_json_elements = (int)want - 1;
	assert_int_equal(sv_infer_parse(&r, &cfg), 400);
	assert_non_null(strstr(r.err, "max_json_elements (" ));
	cfg.max_json_elements = 16777216;
	/* 2 items x 4 samples = 8 */
	cfg.max_total_samples = 8;
	assert_int_equal(sv_infer_parse(&r, &cfg), 0);
	cfg.max_total_samples = 7;
	assert_int_equal(sv_infer_parse(&r, &cfg), 400);
	assert_string_equal(r.err, "2 items x 4 samples = 8 exceeds "
			    "max_total_samples (7)");
	req_release(&r);
	server_free(srv);
}

/* The float formatter of JSON answers: every one of 2^20 Philox-drawn
 * finite bit patterns (all exponents, subnormals included) and the edge
 * values read back (strtof, and strtod then a cast, as a JSON reader
 * does) as the same bits, in at most 16 characters. */
static void test_float_text(void **state)
{
	(void)state;
	const float edge[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.1f, 1e-5f, 1e-6f,
			      123456789.0f, 999999999.0f, 1e9f, 3.4028235e38f,
			      1.17549435e-38f, 1.4e-45f, 9.9999999e-6f,
			      0.30000001f, 100.0f, 65504.0f};
	char buf[32];
	long n = 0, maxlen = 0;
	for (long i = 0; i < (1L << 20) + 17; i++) {
		float v;
		if (i < 17) {
			v = edge[i];
		} else {
			uint32_t u = (uint32_t)pno_rng_u64(5, 0, (uint64_t)i);
			memcpy(&v, &u, 4);
			if (!isfinite(v))
				continue;
		}
		int len = sv_fmt_f32(buf, v);
		buf[len] = 0;
		if (len > maxlen)
			maxlen = len;
		float back = strtof(buf, NULL);
		float back2 = (float)strtod(buf, NULL);
		if (memcmp(&back, &v, 4) || memcmp(&back2, &v, 4))
			fail_msg("%.9g printed as \"%s\" reads back as %.9g",
				 (double)v, buf, (double)back);
		n++;
	}
	print_message("float text: %ld values round-trip, longest %ld "
		      "characters\n", n, maxlen);
	assert_true(maxlen <= 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repo_alloc_failures),
		cmocka_unit_test(test_request_alloc_failures),
		cmocka_unit_test(test_parse_garbage),
		cmocka_unit_test(test_float_text),
		cmocka_unit_test(test_prescan_reference),
		cmocka_unit_test(test_parse_limits),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
