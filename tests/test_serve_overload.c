/* pno serve under overload, end to end (the real server on a loopback
 * port). The capacity is measured first (closed loop, 4 clients); then an
 * open-loop generator offers twice that rate for 30 s (8 s under the
 * sanitizers; PNO_OVERLOAD_SECONDS overrides), with 50 health probes a
 * second among it, against a server whose rate limit is 1.5x capacity and
 * whose queue holds 8 inputs. Shown: only 200, 429 and 503 answers (no
 * 500), no transport error (reset, empty reply, timeout), rejections
 * answered as fast as a health probe (p99 printed and bounded), resident
 * memory bounded, and afterwards the server is fully
 * healthy: ready, nothing in flight or queued, breaker closed, an
 * inference answered 200. */
#include "serve_harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define XG 256

static char repo[1024], body[8192];

static int setup(void **state)
{
	(void)state;
	float x[XG];
	sh_fresh_dir("ov_repo", repo, sizeof repo);
	struct sh_model m = {.X = XG, .width = 32, .layers = 4,
			     .dropout = 0.1f, .seed = 3};
	sh_write_model(repo, "ov", 1, &m);
	for (int i = 0; i < XG; i++)
		x[i] = (float)sin(0.05 * i);
	char *b = sh_body(x, XG, "\"num_samples\":16,\"seed\":2");
	snprintf(body, sizeof body, "%s", b);
	free(b);
	curl_global_init(CURL_GLOBAL_ALL);
	return 0;
}

static const char *common[] = {"--threads", "4", "--max-batch", "1",
			       "--max-queue-delay-us", "0", "--max-queue-size",
			       "8", "--max-connections", "512", NULL};

/* ---- capacity: closed loop ---- */

static _Atomic int cl_stop;
static _Atomic long cl_ok;

static void *closed_main(void *arg)
{
	const struct sh_srv *s = arg;
	while (!atomic_load(&cl_stop)) {
		struct sh_resp r;
		sh_http(s, "POST", "/v2/models/ov/infer", body, NULL, &r);
		if (r.code == 200)
			atomic_fetch_add(&cl_ok, 1);
		sh_resp_free(&r);
	}
	return NULL;
}

static double capacity(void)
{
	struct sh_srv s;
	pthread_t th[4];
	const char *argv[16];
	int n = 0;
	for (int i = 0; common[i]; i++)
		argv[n++] = common[i];
	argv[n] = NULL;
	sh_start(&s, "ov_cap", repo, argv);
	atomic_store(&cl_stop, 0);
	atomic_store(&cl_ok, 0);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, closed_main, &s);
	usleep(500000);		/* warm up */
	long ok0 = atomic_load(&cl_ok);
	double t0 = sh_now();
	usleep(3000000);
	double cap = (atomic_load(&cl_ok) - ok0) / (sh_now() - t0);
	atomic_store(&cl_stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	sh_stop(&s);
	return cap;
}

/* ---- open loop ---- */

struct slot {
	int probe;		/* GET /v2/health/live */
	CURL *c;
	struct curl_slist *hs;
	struct sh_resp r;
	double t_add;
};

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void test_overload(void **state)
{
	(void)state;
	double cap = capacity();
	const char *env = getenv("PNO_OVERLOAD_SECONDS");
	double dur = env ? atof(env) : getenv("PNO_SANITIZED") ? 8 : 30;
	double rate = 2 * cap;
	char rl[32];
	snprintf(rl, sizeof rl, "%.1f", 1.5 * cap);
	printf("capacity %.1f requests/s (closed loop, 4 clients); offering "
	       "%.1f/s for %.0f s; rate limit %s/s\n", cap, rate, dur, rl);
	assert_true(cap > 5);

	struct sh_srv s;
	const char *argv[24];
	int n = 0;
	for (int i = 0; common[i]; i++)
		argv[n++] = common[i];
	argv[n++] = "--rate-limit";
	argv[n++] = rl;
	argv[n++] = "--rate-burst";
	argv[n++] = "20";
	argv[n] = NULL;
	sh_start(&s, "ov_load", repo, argv);
	for (int i = 0; i < 20; i++) {	/* warm: pools, pages */
		struct sh_resp r;
		sh_http(&s, "POST", "/v2/models/ov/infer", body, NULL, &r);
		sh_expect(&r, 200);
		sh_resp_free(&r);
		usleep(20000);
	}
	long rss0 = sh_rss_kb(s.pid), rss_max = rss0;

	size_t max = (size_t)((rate + 50) * dur * 1.1) + 100;
	struct slot *sl = calloc(max, sizeof *sl);
	double *rej = malloc(max * sizeof *rej), *okl = malloc(max * sizeof *okl);
	double *live = malloc(max * sizeof *rej);
	long nlive = 0;
	double *r429 = malloc(max * sizeof *rej), *r503 = malloc(max * sizeof *rej);
	assert_non_null(sl);
	assert_non_null(rej);
	assert_non_null(okl);
	CURLM *mh = curl_multi_init();
	size_t issued = 0, skipped = 0;
	long n200 = 0, n429 = 0, n503 = 0, nother = 0, nerr = 0, nrej = 0;
	int running = 0, inflight = 0;
	const int limit = 256;	/* below max_connections */
	double t0 = sh_now(), next = t0, t_rss = t0, next_probe = t0;
	for (;;) {
		double now = sh_now();
		while (now < t0 + dur && issued < max &&
		       (next <= now || next_probe <= now)) {
			/* 50 health probes a second on top of the load:
			 * what the server takes to answer anything now */
			int probe = next_probe <= now;
			if (probe)
				next_probe += 0.02;
			else
				next += 1 / rate;
			if (inflight >= limit) {
				skipped++;
				continue;
			}
			struct slot *q = &sl[issued++];
			q->probe = probe;
			q->c = q->probe ?
			       sh_easy(&s, "GET", "/v2/health/live", NULL,
				       &q->hs, NULL, &q->r) :
			       sh_easy(&s, "POST", "/v2/models/ov/infer", body,
				       &q->hs, NULL, &q->r);
			curl_easy_setopt(q->c, CURLOPT_PRIVATE, q);
			curl_easy_setopt(q->c, CURLOPT_TIMEOUT, 60L);
			q->t_add = now;
			curl_multi_add_handle(mh, q->c);
			inflight++;
		}
		curl_multi_perform(mh, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(mh, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct slot *q;
			long code = 0;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&q);
			double dt = sh_now() - q->t_add;
			if (msg->data.result != CURLE_OK) {
				nerr++;
				printf("transport error: %s\n",
				       curl_easy_strerror(msg->data.result));
			} else {
				curl_easy_getinfo(q->c, CURLINFO_RESPONSE_CODE,
						  &code);
				if (q->probe && code == 200) {
					live[nlive++] = dt;
				} else if (code == 200) {
					okl[n200++] = dt;
				} else if (code == 429 || code == 503) {
					n429 += code == 429;
					n503 += code == 503;
					if (code == 429)
						r429[n429 - 1] = dt;
					else
						r503[n503 - 1] = dt;
					rej[nrej++] = dt;
				} else {
					nother++;
					printf("status %ld: %.200s\n", code,
					       q->r.body ? q->r.body : "");
				}
			}
			curl_multi_remove_handle(mh, q->c);
			curl_easy_cleanup(q->c);
			curl_slist_free_all(q->hs);
			sh_resp_free(&q->r);
			inflight--;
		}
		if (now - t_rss > 1) {
			long v = sh_rss_kb(s.pid);
			rss_max = v > rss_max ? v : rss_max;
			t_rss = now;
		}
		if (now >= t0 + dur && inflight == 0)
			break;
		if (now > t0 + dur + 90)
			fail_msg("%d requests still unanswered 90 s after the "
				 "load ended", inflight);
		curl_multi_poll(mh, NULL, 0, 1, NULL);
	}
	double wall = sh_now() - t0;
	curl_multi_cleanup(mh);
	long rss1 = sh_rss_kb(s.pid);
	qsort(rej, (size_t)nrej, sizeof *rej, cmp_d);
	qsort(okl, (size_t)n200, sizeof *okl, cmp_d);
	double p50r = nrej ? rej[nrej / 2] : 0;
	double p99r = nrej ? rej[(size_t)(0.99 * (double)(nrej - 1))] : 0;
	double maxr = nrej ? rej[nrej - 1] : 0;
	qsort(r429, (size_t)n429, sizeof *rej, cmp_d);
	qsort(r503, (size_t)n503, sizeof *rej, cmp_d);
	printf("p99 429 %.2f ms (%ld), p99 503 %.2f ms (%ld)\n",
	       n429 ? 1e3 * r429[(size_t)(0.99 * (n429 - 1))] : 0.0, n429,
	       n503 ? 1e3 * r503[(size_t)(0.99 * (n503 - 1))] : 0.0, n503);
	qsort(live, (size_t)nlive, sizeof *live, cmp_d);
	double p99l = nlive ? live[(size_t)(0.99 * (nlive - 1))] : 0;
	printf("health probes: %ld, p50 %.2f ms, p99 %.2f ms; answers 200: p50 "
	       "%.1f ms\n", nlive, nlive ? 1e3 * live[nlive / 2] : 0.0,
	       1e3 * p99l, n200 ? 1e3 * okl[n200 / 2] : 0.0);
	double p99o = n200 ? okl[(size_t)(0.99 * (double)(n200 - 1))] : 0;
	printf("overload: %zu requests in %.1f s (%zu not sent: client at %d "
	       "in flight): 200 %ld (%.1f/s), 429 %ld, 503 %ld, other %ld, "
	       "transport errors %ld\n", issued, wall, skipped, limit, n200,
	       n200 / dur, n429, n503, nother, nerr);
	printf("rejections: p50 %.2f ms, p99 %.2f ms, max %.2f ms; answers "
	       "200: p99 %.1f ms\n", 1e3 * p50r, 1e3 * p99r, 1e3 * maxr,
	       1e3 * p99o);
	printf("resident memory: %.1f MB before, %.1f MB peak, %.1f MB after "
	       "(+%.1f MB)\n", rss0 / 1024.0, rss_max / 1024.0, rss1 / 1024.0,
	       (rss1 - rss0) / 1024.0);
	assert_int_equal(nerr, 0);
	assert_int_equal(nother, 0);
	assert_true(n200 > 0);
	assert_true(n429 > 0);
	assert_true(n503 > 0);
	/* the generator kept up: at most 1% of the offered load unsent */
	assert_true(skipped <= issued / 100);
	/* a rejection does no compute and waits for no worker: it is
	 * answered about as fast as a health probe at the same moment (on
	 * a shared 2-core machine both are dominated by scheduling: the
	 * probe is the yardstick, 2x + 5 ms the allowance), and far below
	 * the 200 answers' tail. No absolute bound: on a loaded machine
	 * any fixed figure measures the neighbours, not the server */
	assert_true(nlive >= (long)(dur * 50) - 1);
	if (p99r > 2 * p99l + 0.005)
		fail_msg("rejections p99 %.2f ms vs health probes p99 %.2f ms",
			 1e3 * p99r, 1e3 * p99l);
	if (p99r >= p99o)
		fail_msg("rejections p99 %.2f ms not below the 200 answers' "
			 "p99 %.2f ms", 1e3 * p99r, 1e3 * p99o);
	/* memory: the request pool (<= 256 requests' buffers, ~60 kB each
	 * here) and libmicrohttpd's per-connection memory (64 kB x the
	 * connections) bound the growth; 64 MB is above both */
	assert_true(rss1 - rss0 < 64 * 1024);
	assert_true(rss_max - rss0 < 64 * 1024);

	/* fully healthy afterwards */
	double tw = sh_now();
	while (sh_metric0(&s, "pno_inflight_requests") != 0) {
		if (sh_now() - tw > 10)
			fail_msg("requests still in flight after the load");
		usleep(10000);
	}
	assert_true(sh_metric0(&s, "pno_queue_depth{model=\"ov\",version="
			       "\"1\"}") == 0);
	assert_true(sh_metric0(&s, "pno_breaker_state{model=\"ov\",version="
			       "\"1\"}") == 0);
	assert_true(sh_metric0(&s, "pno_requests_total{model=\"ov\","
			       "version=\"1\",code=\"500\"}") == 0);
	struct sh_resp r;
	sh_http(&s, "GET", "/v2/health/ready", NULL, NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	sh_http(&s, "GET", "/v2/models/ov/ready", NULL, NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	usleep(1100000);	/* a token bucket's worth of rate */
	sh_http(&s, "POST", "/v2/models/ov/infer", body, NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	sh_stop(&s);
	free(sl);
	free(rej);
	free(okl);
	free(r429);
	free(live);
	free(r503);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overload),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
