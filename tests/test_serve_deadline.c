/* pno serve, per-request deadlines end to end (the real server on a
 * loopback port): the Request-Timeout-Ms header and parameters.timeout_ms
 * validated against max_request_timeout_ms; requests queued behind a long
 * compute past their deadline are answered 504 and never computed (the
 * samples and batch counters prove it); a compute that overruns its
 * deadline is a 504 and a model failure that opens the breaker; the
 * config default applies when a request gives none and a request may
 * raise it within the bound; breaker_release_permit gives a probe back. */
#include "serve_harness.h"
#include "breaker.h"

#include <pthread.h>

#define XG 256

static char repo[1024];
static float xin[XG];
static double per_sample_s;	/* compute of one sample, measured */

struct call {
	const struct sh_srv *s;
	char *body;
	char hdr[128];
	struct sh_resp r;
	double t_end;
	pthread_t th;
};

static void *call_main(void *arg)
{
	struct call *c = arg;
	sh_http(c->s, "POST", "/v2/models/slow/infer", c->body,
		c->hdr[0] ? c->hdr : NULL, &c->r);
	c->t_end = sh_now();
	return NULL;
}

static void call_start(struct call *c, const struct sh_srv *s, int S,
		       const char *hdr)
{
	char p[96];
	memset(c, 0, sizeof *c);
	c->s = s;
	snprintf(p, sizeof p, "\"num_samples\":%d,\"seed\":7", S);
	c->body = sh_body(xin, XG, p);
	if (hdr)
		snprintf(c->hdr, sizeof c->hdr, "%s", hdr);
	assert_int_equal(pthread_create(&c->th, NULL, call_main, c), 0);
}

static void call_join(struct call *c)
{
	pthread_join(c->th, NULL);
	free(c->body);
}

static const char *common[] = {"--max-batch", "1", "--max-queue-delay-us",
			       "0", "--threads", "8", "--max-samples",
			       "100000", "--max-total-samples", "1000000",
			       "--default-samples", "4", NULL};

/* the common flags then extra */
static void start(struct sh_srv *s, const char *tag, const char *const *extra)
{
	const char *argv[40];
	int n = 0;
	for (int i = 0; common[i]; i++)
		argv[n++] = common[i];
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	sh_start(s, tag, repo, argv);
}

/* a request occupying the worker for about `secs` */
static int long_S(double secs)
{
	int S = (int)(secs / per_sample_s);
	return S < 8 ? 8 : S;
}

/* the worker is busy with one request and its queue is empty */
static void wait_busy(const struct sh_srv *s)
{
	double t0 = sh_now();
	while (sh_metric0(s, "pno_inflight_requests") < 1 ||
	       sh_metric0(s, "pno_queue_depth{model=\"slow\",version=\"1\"}")
		       != 0) {
		if (sh_now() - t0 > 10)
			fail_msg("the long request never started");
		usleep(2000);
	}
}

static int setup(void **state)
{
	(void)state;
	sh_fresh_dir("dl_repo", repo, sizeof repo);
	struct sh_model m = {.X = XG, .width = 32, .layers = 4,
			     .dropout = 0.1f, .seed = 3};
	sh_write_model(repo, "slow", 1, &m);
	for (int i = 0; i < XG; i++)
		xin[i] = (float)sin(0.05 * i);
	curl_global_init(CURL_GLOBAL_ALL);
	return 0;
}

static void calibrate(const struct sh_srv *s)
{
	struct sh_resp r;
	char *b = sh_body(xin, XG, "\"num_samples\":64,\"seed\":1");
	double best = 1e9;
	for (int i = 0; i < 3; i++) {
		sh_http(s, "POST", "/v2/models/slow/infer", b, NULL, &r);
		sh_expect(&r, 200);
		double c = 1e-6 * sh_param(r.body, "compute_time_us");
		best = c < best ? c : best;
		sh_resp_free(&r);
	}
	free(b);
	per_sample_s = best / 64;
	printf("compute: %.3f ms per sample\n", 1e3 * per_sample_s);
}

static void test_validation(void **state)
{
	(void)state;
	struct sh_srv s;
	struct sh_resp r;
	start(&s, "dl_valid", NULL);
	calibrate(&s);
	char *b = sh_body(xin, XG, "\"num_samples\":2");
	static const char *bad_hdr[] = {"Request-Timeout-Ms: abc",
					"Request-Timeout-Ms: 0",
					"Request-Timeout-Ms: -5",
					"Request-Timeout-Ms: 12x",
					"Request-Timeout-Ms: 99999999999"};
	for (size_t i = 0; i < sizeof bad_hdr / sizeof *bad_hdr; i++) {
		sh_http(&s, "POST", "/v2/models/slow/infer", b, bad_hdr[i], &r);
		sh_expect(&r, 400);
		assert_non_null(strstr(r.body, "Request-Timeout-Ms"));
		sh_resp_free(&r);
	}
	/* above max_request_timeout_ms (60000): refused, naming the key */
	sh_http(&s, "POST", "/v2/models/slow/infer", b,
		"Request-Timeout-Ms: 60001", &r);
	sh_expect(&r, 400);
	assert_non_null(strstr(r.body, "max_request_timeout_ms (60000)"));
	sh_resp_free(&r);
	sh_http(&s, "POST", "/v2/models/slow/infer", b,
		"Request-Timeout-Ms: 60000", &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	free(b);
	static const char *bad_param[] = {"\"timeout_ms\":\"5\"",
					  "\"timeout_ms\":0",
					  "\"timeout_ms\":1.5",
					  "\"timeout_ms\":-1"};
	for (size_t i = 0; i < sizeof bad_param / sizeof *bad_param; i++) {
		b = sh_body(xin, XG, bad_param[i]);
		sh_http(&s, "POST", "/v2/models/slow/infer", b, NULL, &r);
		sh_expect(&r, 400);
		assert_non_null(strstr(r.body, "timeout_ms"));
		sh_resp_free(&r);
		free(b);
	}
	b = sh_body(xin, XG, "\"timeout_ms\":600000");
	sh_http(&s, "POST", "/v2/models/slow/infer", b, NULL, &r);
	sh_expect(&r, 400);
	assert_non_null(strstr(r.body, "parameters.timeout_ms: 600000 ms "
			       "exceeds max_request_timeout_ms"));
	sh_resp_free(&r);
	free(b);
	sh_stop(&s);
}

/* Five requests with a 100 ms deadline queued behind a ~600 ms compute:
 * all 504, none computed. */
static void test_queue_drop(void **state)
{
	(void)state;
	struct sh_srv s;
	struct call a, b[5];
	char v[64];
	start(&s, "dl_queue", NULL);
	if (per_sample_s == 0)
		calibrate(&s);
	const char *samp = "pno_samples_total{model=\"slow\",version=\"1\"}";
	const char *bat = "pno_batch_size_count{model=\"slow\",version=\"1\"}";
	double samples0 = sh_metric0(&s, samp), batches0 = sh_metric0(&s, bat);
	int SA = long_S(0.6);
	call_start(&a, &s, SA, NULL);
	wait_busy(&s);
	double t_sent = sh_now();
	for (int i = 0; i < 5; i++)
		call_start(&b[i], &s, 64, "Request-Timeout-Ms: 100");
	call_join(&a);
	sh_expect(&a.r, 200);
	for (int i = 0; i < 5; i++) {
		call_join(&b[i]);
		sh_expect(&b[i].r, 504);
		assert_non_null(strstr(b[i].r.body, "not computed"));
		assert_non_null(strstr(b[i].r.body, "deadline exceeded"));
		assert_non_null(sh_header(&b[i].r, "Retry-After", v, sizeof v));
		/* answered when the worker got to it: not before its
		 * deadline, and once the long compute ended; 0.25 s covers
		 * scheduling on a shared 2-core machine (the drop itself
		 * does no work) */
		assert_true(b[i].t_end - t_sent >= 0.1);
		if (b[i].t_end - a.t_end > 0.25)
			fail_msg("a dropped request was answered %.3f s after "
				 "the compute ended", b[i].t_end - a.t_end);
		sh_resp_free(&b[i].r);
	}
	sh_resp_free(&a.r);
	/* only the long request drew samples and ran a batch */
	assert_true(sh_metric0(&s, samp) - samples0 == SA);
	assert_true(sh_metric0(&s, bat) - batches0 == 1);
	assert_true(sh_metric0(&s, "pno_deadline_exceeded_total{model=\"slow\","
			       "version=\"1\",stage=\"queue\"}") == 5);
	assert_true(sh_metric0(&s, "pno_requests_total{model=\"slow\","
			       "version=\"1\",code=\"504\"}") == 5);
	/* dropped work is not a model failure: the breaker stays closed */
	assert_true(sh_metric0(&s, "pno_breaker_state{model=\"slow\","
			       "version=\"1\"}") == 0);
	assert_int_equal(sh_log_count(&s, "\"status\":504", "not computed",
				      NULL), 5);
	printf("queue drop: %d samples computed for the long request, 0 for "
	       "the 5 expired\n", SA);
	sh_stop(&s);
}

/* A compute longer than its deadline: 504 and a failure for the breaker
 * (window 2: two overruns open it). */
static void test_compute_overrun(void **state)
{
	(void)state;
	struct sh_srv s;
	struct sh_resp r;
	const char *ex[] = {"--breaker-window", "2", "--breaker-min-calls", "2",
			    "--breaker-wait-ms", "60000", NULL};
	start(&s, "dl_overrun", ex);
	if (per_sample_s == 0)
		calibrate(&s);
	char p[96];
	snprintf(p, sizeof p, "\"num_samples\":%d,\"timeout_ms\":150",
		 long_S(0.5));
	char *b = sh_body(xin, XG, p);
	for (int i = 0; i < 2; i++) {
		sh_http(&s, "POST", "/v2/models/slow/infer", b, NULL, &r);
		sh_expect(&r, 504);
		assert_non_null(strstr(r.body, "past the 150 ms timeout"));
		/* the whole compute ran: the answer came after it */
		assert_true(r.dt > 0.3);
		sh_resp_free(&r);
	}
	free(b);
	assert_true(sh_metric0(&s, "pno_deadline_exceeded_total{model=\"slow\","
			       "version=\"1\",stage=\"compute\"}") == 2);
	assert_true(sh_metric0(&s, "pno_breaker_state{model=\"slow\","
			       "version=\"1\"}") == 1);
	b = sh_body(xin, XG, "\"num_samples\":2");
	sh_http(&s, "POST", "/v2/models/slow/infer", b, NULL, &r);
	sh_expect(&r, 503);
	assert_non_null(strstr(r.body, "circuit breaker"));
	sh_resp_free(&r);
	free(b);
	sh_stop(&s);
}

/* The config default (150 ms) applies to a request without a timeout; a
 * request may raise it up to max_request_timeout_ms; with both a header
 * and a parameter the tighter wins. */
static void test_default_and_override(void **state)
{
	(void)state;
	struct sh_srv s;
	struct call a, nohdr, raised, tighter;
	const char *ex[] = {"--request-timeout-ms", "150",
			    "--max-request-timeout-ms", "20000", NULL};
	start(&s, "dl_default", ex);
	if (per_sample_s == 0)
		calibrate(&s);
	call_start(&a, &s, long_S(0.6), "Request-Timeout-Ms: 20000");
	wait_busy(&s);
	call_start(&nohdr, &s, 16, NULL);
	call_start(&raised, &s, 16, "Request-Timeout-Ms: 15000");
	/* header 15000, parameter 100: 100 applies */
	memset(&tighter, 0, sizeof tighter);
	tighter.s = &s;
	tighter.body = sh_body(xin, XG, "\"num_samples\":16,\"timeout_ms\":100");
	snprintf(tighter.hdr, sizeof tighter.hdr, "Request-Timeout-Ms: 15000");
	assert_int_equal(pthread_create(&tighter.th, NULL, call_main,
					&tighter), 0);
	call_join(&a);
	call_join(&nohdr);
	call_join(&raised);
	call_join(&tighter);
	sh_expect(&a.r, 200);
	sh_expect(&nohdr.r, 504);
	assert_non_null(strstr(nohdr.r.body, "150 ms timeout; not computed"));
	sh_expect(&raised.r, 200);
	sh_expect(&tighter.r, 504);
	assert_non_null(strstr(tighter.r.body, "100 ms timeout; not computed"));
	sh_resp_free(&a.r);
	sh_resp_free(&nohdr.r);
	sh_resp_free(&raised.r);
	sh_resp_free(&tighter.r);
	sh_stop(&s);
}

/* A permit dropped before its call ran gives a half-open probe back;
 * outside half-open it changes nothing. */
static void test_release_permit(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = breaker_config_default();
	struct breaker_permit p, q;
	struct breaker_stats st;
	int64_t t = 0, w;
	c.window_size = 2;
	c.min_calls = 2;
	c.half_open_calls = 1;
	c.wait_open_ns = 10;
	assert_status(breaker_init(&b, &c, t), PNO_STATUS_OK);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(breaker_acquire_permit(&b, t, &w, &p),
				 BREAKER_PERMITTED);
		breaker_record_permit(&b, t, &p, 1, 1);
	}
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	t += 10;
	assert_int_equal(breaker_acquire_permit(&b, t, &w, &p),
			 BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire_permit(&b, t, &w, &q),
			 BREAKER_REJECTED);
	breaker_release_permit(&b, &p);
	assert_int_equal(breaker_acquire_permit(&b, t, &w, &q),
			 BREAKER_PERMITTED);
	breaker_stats_get(&b, &st);
	assert_int_equal(st.probes_admitted, 1);
	assert_int_equal(st.state, BREAKER_HALF_OPEN);
	breaker_record_permit(&b, t, &q, 1, 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	/* closed: releasing records nothing */
	assert_int_equal(breaker_acquire_permit(&b, t, &w, &p),
			 BREAKER_PERMITTED);
	breaker_release_permit(&b, &p);
	breaker_stats_get(&b, &st);
	assert_int_equal(st.window_calls, 0);
	breaker_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_queue_drop),
		cmocka_unit_test(test_compute_overrun),
		cmocka_unit_test(test_default_and_override),
		cmocka_unit_test(test_release_permit),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
