/* pno serve, graceful degradation end to end (the real server on a
 * loopback port): past the queue's high-water mark (a count, and a
 * fraction of max_queue_size) num_samples is cut to the floor and the
 * answer says so, and is exactly the answer of an undegraded request for
 * that many samples; below the mark nothing changes. With fallback
 * "lower", a default-version request whose breaker is open is answered
 * by the next lower version (named in the answer, flagged degraded, the
 * same numbers as asking that version directly); a request naming its
 * version, a lower version of another shape, or fallback "none" get the
 * breaker's 503. */
#include "serve_harness.h"

#include <pthread.h>

#define XG 256
#define XS 32

static char repo[1024], repo_fb[1024];
static float xin[XG];
static double per_sample_s;

struct call {
	const struct sh_srv *s;
	char *body;
	struct sh_resp r;
	pthread_t th;
};

static void *call_main(void *arg)
{
	struct call *c = arg;
	sh_http(c->s, "POST", "/v2/models/slow/infer", c->body, NULL, &c->r);
	return NULL;
}

static void call_start(struct call *c, const struct sh_srv *s,
		       const char *params)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->body = sh_body(xin, XG, params);
	assert_int_equal(pthread_create(&c->th, NULL, call_main, c), 0);
}

static void call_join(struct call *c)
{
	pthread_join(c->th, NULL);
	free(c->body);
}

/* the JSON text of output `name`'s data in an answer (caller frees) */
static char *output_data(const char *body, const char *name, json_t **shape)
{
	json_t *j = json_loads(body, 0, NULL), *o;
	size_t i;
	char *t = NULL;
	assert_non_null(j);
	json_array_foreach(json_object_get(j, "outputs"), i, o)
		if (!strcmp(json_string_value(json_object_get(o, "name")), name)) {
			/* jansson's text comes from its allocator (the
			 * library's hooks): copy it to a malloc'd one */
			json_malloc_t ma;
			json_free_t fr;
			char *d = json_dumps(json_object_get(o, "data"),
					     JSON_COMPACT);
			json_get_alloc_funcs(&ma, &fr);
			t = strdup(d);
			fr(d);
			if (shape)
				*shape = json_incref(json_object_get(o, "shape"));
		}
	json_decref(j);
	assert_non_null(t);
	return t;
}

static int setup(void **state)
{
	(void)state;
	sh_fresh_dir("dg_repo", repo, sizeof repo);
	sh_fresh_dir("dg_repo_fb", repo_fb, sizeof repo_fb);
	struct sh_model slow = {.X = XG, .width = 32, .layers = 4,
				.dropout = 0.1f, .seed = 3};
	sh_write_model(repo, "slow", 1, &slow);
	struct sh_model good = {.X = XS, .dropout = 0.1f, .seed = 5};
	struct sh_model bad = {.X = XS, .huge = 1, .seed = 6};
	struct sh_model other = {.X = 16, .seed = 7};
	sh_write_model(repo_fb, "m", 1, &good);
	sh_write_model(repo_fb, "m", 2, &bad);
	sh_write_model(repo_fb, "n", 1, &other);
	sh_write_model(repo_fb, "n", 2, &bad);
	for (int i = 0; i < XG; i++)
		xin[i] = (float)sin(0.05 * i);
	curl_global_init(CURL_GLOBAL_ALL);
	return 0;
}

static void wait_depth(const struct sh_srv *s, int depth, int inflight)
{
	double t0 = sh_now();
	while (sh_metric0(s, "pno_queue_depth{model=\"slow\",version=\"1\"}")
		       != depth ||
	       sh_metric0(s, "pno_inflight_requests") != inflight) {
		if (sh_now() - t0 > 10)
			fail_msg("queue depth never reached %d", depth);
		usleep(2000);
	}
}

/* A long request keeps the worker busy; four requests for 32 samples
 * arrive one by one at queue depths 0, 1, 2, 3: the mark (2 items) cuts
 * the last two to 4 samples. */
static void highwater(const char *tag, const char *const *flags)
{
	struct sh_srv s;
	struct sh_resp r;
	struct call a, b[4];
	const char *argv[32] = {"--max-batch", "1", "--max-queue-delay-us", "0",
				"--threads", "8", "--max-samples", "100000",
				"--max-total-samples", "1000000",
				"--degrade-min-samples", "4"};
	int n = 12;
	for (int i = 0; flags[i]; i++)
		argv[n++] = flags[i];
	argv[n] = NULL;
	sh_start(&s, tag, repo, argv);
	if (per_sample_s == 0) {
		char *p = sh_body(xin, XG, "\"num_samples\":64");
		sh_http(&s, "POST", "/v2/models/slow/infer", p, NULL, &r);
		sh_expect(&r, 200);
		per_sample_s = 1e-6 * sh_param(r.body, "compute_time_us") / 64;
		sh_resp_free(&r);
		free(p);
	}
	char lp[64];
	int SA = (int)(0.6 / per_sample_s);
	snprintf(lp, sizeof lp, "\"num_samples\":%d", SA < 8 ? 8 : SA);
	call_start(&a, &s, lp);
	wait_depth(&s, 0, 1);
	for (int i = 0; i < 4; i++) {
		char p[128];
		snprintf(p, sizeof p, "\"num_samples\":32,\"seed\":%d,"
			 "\"return_samples\":true", 50 + i);
		call_start(&b[i], &s, p);
		wait_depth(&s, i + 1, i + 2);
	}
	call_join(&a);
	sh_expect(&a.r, 200);
	assert_true(isnan(sh_param(a.r.body, "degraded")));
	sh_resp_free(&a.r);
	for (int i = 0; i < 4; i++) {
		call_join(&b[i]);
		sh_expect(&b[i].r, 200);
		json_t *shape = NULL;
		char *smp = output_data(b[i].r.body, "samples", &shape);
		free(smp);
		int used = (int)json_integer_value(json_array_get(shape, 1));
		json_decref(shape);
		if (i < 2) {
			assert_true(isnan(sh_param(b[i].r.body, "degraded")));
			assert_true(sh_param(b[i].r.body, "num_samples") == 32);
			assert_int_equal(used, 32);
		} else {
			assert_true(sh_param(b[i].r.body, "degraded") == 1);
			assert_true(sh_param(b[i].r.body, "num_samples") == 4);
			assert_true(sh_param(b[i].r.body, "num_samples_used") == 4);
			assert_true(sh_param(b[i].r.body,
					     "num_samples_requested") == 32);
			assert_int_equal(used, 4);
		}
	}
	/* the degraded answer is the undegraded answer for 4 samples */
	char *deg = output_data(b[3].r.body, "mean", NULL);
	char *p = sh_body(xin, XG, "\"num_samples\":4,\"seed\":53");
	sh_http(&s, "POST", "/v2/models/slow/infer", p, NULL, &r);
	sh_expect(&r, 200);
	char *direct = output_data(r.body, "mean", NULL);
	assert_string_equal(deg, direct);
	free(deg);
	free(direct);
	free(p);
	sh_resp_free(&r);
	for (int i = 0; i < 4; i++)
		sh_resp_free(&b[i].r);
	assert_true(sh_metric0(&s, "pno_degraded_total{model=\"slow\","
			       "version=\"1\",kind=\"samples\"}") == 2);
	sh_stop(&s);
}

static void test_highwater_count(void **state)
{
	(void)state;
	const char *f[] = {"--degrade-queue-high-water", "2",
			   "--max-queue-size", "64", NULL};
	highwater("dg_count", f);
}

static void test_highwater_fraction(void **state)
{
	(void)state;
	/* 0.5 of a queue of 4 items: the same mark of 2 */
	const char *f[] = {"--degrade-queue-high-water", "0.5",
			   "--max-queue-size", "4", NULL};
	highwater("dg_frac", f);
}

static void post(const struct sh_srv *s, const char *path, const char *body,
		 long code, struct sh_resp *r)
{
	sh_http(s, "POST", path, body, NULL, r);
	sh_expect(r, code);
}

static void test_fallback(void **state)
{
	(void)state;
	struct sh_srv s;
	struct sh_resp r;
	char v[32];
	float x[XS];
	const char *ex[] = {"--fallback", "lower", "--breaker-window", "4",
			    "--breaker-min-calls", "4", "--breaker-wait-ms",
			    "60000", NULL};
	for (int i = 0; i < XS; i++)
		x[i] = (float)cos(0.2 * i);
	char *b = sh_body(x, XS, "\"num_samples\":8,\"seed\":9");
	sh_start(&s, "dg_fb", repo_fb, ex);
	/* version 2 (the default) fails until its breaker opens */
	for (int i = 0; i < 4; i++) {
		post(&s, "/v2/models/m/infer", b, 500, &r);
		sh_resp_free(&r);
	}
	assert_true(sh_metric(&s, "pno_breaker_state{model=\"m\","
			      "version=\"2\"}") == 1);
	post(&s, "/v2/models/m/infer", b, 200, &r);
	sh_version(r.body, v, sizeof v);
	assert_string_equal(v, "1");
	assert_true(sh_param(r.body, "degraded") == 1);
	assert_non_null(strstr(r.body, "\"fallback_from_version\":\"2\""));
	char *fb = output_data(r.body, "mean", NULL);
	sh_resp_free(&r);
	post(&s, "/v2/models/m/versions/1/infer", b, 200, &r);
	char *direct = output_data(r.body, "mean", NULL);
	assert_true(isnan(sh_param(r.body, "degraded")));
	assert_string_equal(fb, direct);
	free(fb);
	free(direct);
	sh_resp_free(&r);
	/* a request naming version 2 wants version 2 */
	post(&s, "/v2/models/m/versions/2/infer", b, 503, &r);
	assert_non_null(strstr(r.body, "circuit breaker of m:2"));
	sh_resp_free(&r);
	assert_true(sh_metric0(&s, "pno_degraded_total{model=\"m\",version="
			       "\"2\",kind=\"fallback\"}") == 1);
	assert_true(sh_metric0(&s, "pno_requests_total{model=\"m\",version="
			       "\"1\",code=\"200\"}") == 2);
	/* n's version 1 takes another grid: no fallback there */
	for (int i = 0; i < 4; i++) {
		post(&s, "/v2/models/n/infer", b, 500, &r);
		sh_resp_free(&r);
	}
	post(&s, "/v2/models/n/infer", b, 503, &r);
	assert_non_null(strstr(r.body, "circuit breaker of n:2"));
	sh_resp_free(&r);
	sh_stop(&s);

	/* fallback "none" (the default): the breaker's 503 */
	const char *ex2[] = {"--breaker-window", "4", "--breaker-min-calls",
			     "4", "--breaker-wait-ms", "60000", NULL};
	sh_start(&s, "dg_nofb", repo_fb, ex2);
	for (int i = 0; i < 4; i++) {
		post(&s, "/v2/models/m/infer", b, 500, &r);
		sh_resp_free(&r);
	}
	post(&s, "/v2/models/m/infer", b, 503, &r);
	sh_resp_free(&r);
	assert_true(sh_metric0(&s, "pno_degraded_total{model=\"m\",version="
			       "\"2\",kind=\"fallback\"}") == 0);
	sh_stop(&s);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_highwater_count),
		cmocka_unit_test(test_highwater_fraction),
		cmocka_unit_test(test_fallback),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
