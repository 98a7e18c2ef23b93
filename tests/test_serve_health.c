/* Health checks on a schedule and resource monitoring, against the real
 * server (docs/serve/operations.md "Health checks", "Resources"):
 * GET /v2/health/details needs the admin role and lists every check with
 * its status, value and last run; the checks run every
 * health_interval_ms, not per probe (two probes within an interval see
 * the same run); the sampled resident memory and open descriptors agree
 * with /proc/<pid> read here; an open circuit breaker shows in its
 * version's check, and readiness fails when every breaker is open; above
 * memory_limit_mb new inferences are answered 503 with Retry-After
 * (failure class overloaded) and readiness fails, and the server recovers
 * when a reload raises the limit. */
#include "serve_ops_harness.h"
#include "auth.h"

static char keys_path[900];
static char tok_admin[AUTH_KEY_LEN + 1], tok_user[AUTH_KEY_LEN + 1];

static void write_keys(void)
{
	char hex[2][2 * AUTH_HASH_BYTES + 1];
	char *tok[2] = {tok_admin, tok_user};
	for (int i = 0; i < 2; i++) {
		unsigned char h[AUTH_HASH_BYTES];
		auth_key_generate(tok[i], h);
		for (int j = 0; j < AUTH_HASH_BYTES; j++)
			snprintf(hex[i] + 2 * j, 3, "%02x", h[j]);
	}
	snprintf(keys_path, sizeof keys_path, "%s",
		 tu_tmp_path("health_keys.json"));
	char text[1024];
	snprintf(text, sizeof text, "[{\"name\":\"ops\",\"hash\":\"%s\","
		 "\"roles\":[\"admin\"]},{\"name\":\"app\",\"hash\":\"%s\","
		 "\"roles\":[\"infer\"]}]\n", hex[0], hex[1]);
	h_write_file(keys_path, text);
}

static const json_t *check(const json_t *d, const char *name)
{
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(d, "checks"), i, c)
		if (!strcmp(json_string_value(json_object_get(c, "name")), name))
			return c;
	fail_msg("no check \"%s\"", name);
	return NULL;
}

static const char *cstatus(const json_t *d, const char *name)
{
	return json_string_value(json_object_get(check(d, name), "status"));
}

static json_t *details(int port, const char *authz)
{
	struct h_resp r;
	h_http(port, "GET", "/v2/health/details", NULL, authz, NULL, &r);
	if (r.code != 200)
		fail_msg("details: %ld %s", r.code, r.body);
	json_t *d = h_json(&r);
	h_free(&r);
	return d;
}

/* /proc/<pid>/statm resident pages in bytes; open fds */
static double proc_rss(pid_t pid)
{
	char p[64];
	unsigned long long sz, res;
	snprintf(p, sizeof p, "/proc/%d/statm", (int)pid);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu %llu", &sz, &res), 2);
	fclose(f);
	return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static int proc_fds(pid_t pid)
{
	char cmd[128], out[64];
	snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)pid);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof out, p));
	pclose(p);
	return atoi(out);
}

static void test_details_scheduled(void **state)
{
	(void)state;
	struct h_srv s;
	char a_admin[300], a_user[300];
	h_make_repo("health_repo", 1, 1);
	write_keys();
	snprintf(a_admin, sizeof a_admin, "Authorization: Bearer %s", tok_admin);
	snprintf(a_user, sizeof a_user, "Authorization: Bearer %s", tok_user);
	const char *ex[] = {"--keys-file", keys_path, "--health-interval-ms",
			    "400", "--breaker-window", "4",
			    "--breaker-min-calls", "4", "--breaker-wait-ms",
			    "60000", NULL};
	h_start(&s, "health", ex);
	struct h_resp r;
	/* admin only; readiness stays open to probes */
	h_http(s.port, "GET", "/v2/health/details", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 401);
	h_free(&r);
	h_http(s.port, "GET", "/v2/health/details", NULL, a_user, NULL, &r);
	assert_int_equal(r.code, 403);
	h_free(&r);
	h_http(s.port, "GET", "/v2/health/ready", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 200);
	h_free(&r);

	json_t *d = details(s.port, a_admin);
	assert_true(json_is_true(json_object_get(d, "ready")));
	assert_int_equal(json_integer_value(json_object_get(d, "interval_ms")),
			 400);
	const char *names[] = {"model:heat:1", "model:bad:1", "models",
			       "breakers", "memory", "open_fds", "cpu",
			       "audit_log", "drift"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		const json_t *c = check(d, names[i]);
		assert_non_null(json_object_get(c, "value"));
		assert_non_null(json_string_value(json_object_get(c, "status")));
		assert_non_null(json_string_value(json_object_get(c,
								  "last_run")));
		assert_true(json_integer_value(json_object_get(
			c, "last_run_unix_ns")) > 0);
	}
	assert_string_equal(cstatus(d, "model:heat:1"), "ok");
	assert_string_equal(json_string_value(json_object_get(
		check(d, "model:heat:1"), "value")), "closed");
	assert_string_equal(cstatus(d, "audit_log"), "off");
	assert_string_equal(cstatus(d, "drift"), "unknown");
	assert_int_equal(json_integer_value(json_object_get(check(d, "models"),
							    "value")), 2);

	/* scheduled: a probe within the interval sees the same run, one
	 * after it a later one; never a run per probe */
	json_int_t t1 = json_integer_value(json_object_get(check(d, "memory"),
							   "last_run_unix_ns"));
	json_decref(d);
	int same = 0, later = 0;
	double t0 = h_now();
	while (h_now() - t0 < 1.3) {
		d = details(s.port, a_admin);
		json_int_t t2 = json_integer_value(json_object_get(
			check(d, "memory"), "last_run_unix_ns"));
		json_decref(d);
		same += t2 == t1;
		if (t2 != t1) {
			/* runs are interval_ms apart (timer jitter: 20%) */
			double gap = 1e-9 * (double)(t2 - t1);
			if (gap < 0.8 * 0.4)
				fail_msg("runs %.3f s apart, interval 0.4 s",
					 gap);
			later++;
			t1 = t2;
		}
		usleep(20000);
	}
	print_message("1.3 s of probes every 20 ms: %d saw a repeated run, %d "
		      "a new one\n", same, later);
	assert_true(later >= 2 && later <= 4);
	assert_true(same > 4 * later);

	/* the sampled resources agree with /proc read here */
	usleep(500000);
	d = details(s.port, a_admin);
	double rss = json_number_value(json_object_get(check(d, "memory"),
						       "value"));
	double fds = json_number_value(json_object_get(check(d, "open_fds"),
						       "value"));
	json_decref(d);
	double rss_p = proc_rss(s.pid);
	int fds_p = proc_fds(s.pid);
	print_message("memory: sampled %.2f MiB, /proc %.2f MiB; fds: sampled "
		      "%.0f, /proc %d\n", rss / 1048576, rss_p / 1048576, fds,
		      fds_p);
	/* up to 0.4 s apart, with no load: within 10% */
	assert_true(fabs(rss - rss_p) <= 0.1 * rss_p);
	/* our probe connections come and go: a few descriptors */
	assert_true(fabs(fds - fds_p) <= 4);
	assert_true(h_metric(s.port, "process_resident_memory_bytes") > 1e6);
	assert_true(h_metric(s.port, "pno_health_check_status{check=\"memory\"}")
		    == 0);
	assert_true(h_metric(s.port, "pno_ready") == 1);

	/* the breaker of "bad" opens after 4 model failures: its check
	 * fails at the next run; heat is still served, so still ready */
	char a_app[300];
	snprintf(a_app, sizeof a_app, "%s", a_user);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(h_infer(s.port, "bad", a_app, &r), 500);
		h_free(&r);
	}
	usleep(900000);
	d = details(s.port, a_admin);
	assert_string_equal(cstatus(d, "model:bad:1"), "fail");
	assert_string_equal(json_string_value(json_object_get(
		check(d, "model:bad:1"), "value")), "open");
	assert_string_equal(cstatus(d, "breakers"), "warn");
	assert_true(json_is_true(json_object_get(d, "ready")));
	json_decref(d);
	h_http(s.port, "GET", "/v2/health/ready", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 200);
	h_free(&r);
	assert_true(h_metric(s.port, "pno_health_check_status{check=\"model:"
			     "bad:1\"}") == 2);
	h_stop(&s);

	/* only "bad", its breaker open: nothing can be served, not ready */
	h_make_repo("health_repo_bad", 0, 1);
	const char *ex2[] = {"--auth", "false", "--health-interval-ms", "100",
			     "--breaker-window", "2", "--breaker-min-calls", "2",
			     "--breaker-wait-ms", "60000", NULL};
	h_start(&s, "health_bad", ex2);
	h_http(s.port, "GET", "/v2/health/ready", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 200);
	h_free(&r);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(h_infer(s.port, "bad", NULL, &r), 500);
		h_free(&r);
	}
	t0 = h_now();
	do {
		usleep(20000);
		h_http(s.port, "GET", "/v2/health/ready", NULL, NULL, NULL, &r);
		if (r.code == 200)
			h_free(&r);
	} while (r.code == 200 && h_now() - t0 < 5);
	print_message("not ready %.2f s after the breaker opened (interval "
		      "0.1 s)\n", h_now() - t0);
	assert_int_equal(r.code, 503);
	assert_non_null(strstr(r.body, "breakers"));
	assert_non_null(strstr(r.body, "nothing can be served"));
	h_free(&r);
	assert_true(h_metric(s.port, "pno_ready") == 0);
	h_stop(&s);
}

static void test_memory_shedding(void **state)
{
	(void)state;
	struct h_srv s;
	char cfg[900];
	h_make_repo("health_repo_mem", 1, 0);
	snprintf(cfg, sizeof cfg, "%s", tu_tmp_path("health_mem.json"));
	/* 1 MiB: any process is above it */
	/* in the file, not flags: flags would win over it on reload */
	h_write_file(cfg, "{\"memory_limit_mb\": 1, \"retry_after_s\": 7, "
		     "\"health_interval_ms\": 100}");
	const char *ex[] = {"--auth", "false", "--config", cfg, NULL};
	h_start(&s, "mem", ex);
	struct h_resp r;
	/* shedding from the first check, before the port was written */
	assert_int_equal(h_infer(s.port, "heat", NULL, &r), 503);
	assert_string_equal(h_header(&r, "Retry-After"), "7");
	assert_non_null(strstr(r.body, "overloaded"));
	assert_non_null(strstr(r.body, "memory_limit_mb 1"));
	print_message("shed answer in %.2f ms\n", 1e3 * r.seconds);
	h_free(&r);
	for (int i = 0; i < 9; i++) {
		assert_int_equal(h_infer(s.port, "heat", NULL, &r), 503);
		h_free(&r);
	}
	assert_true(h_metric(s.port, "pno_shed_requests_total{class="
			     "\"overloaded\"}") == 10);
	assert_true(h_metric(s.port, "pno_load_shedding") == 1);
	assert_true(h_metric(s.port, "pno_memory_limit_bytes") == 1048576);
	/* refused before a version was chosen: version "" */
	assert_true(h_metric(s.port, "pno_requests_total{model=\"heat\","
			     "version=\"\",code=\"503\"}") == 10);
	/* readiness fails with the reason; other endpoints answer */
	h_http(s.port, "GET", "/v2/health/ready", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 503);
	assert_non_null(strstr(r.body, "memory"));
	h_free(&r);
	h_http(s.port, "GET", "/v2/models/heat", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 200);
	h_free(&r);
	assert_true(h_log_count(&s, "load_shedding_on", NULL) == 1);
	assert_int_equal(kill(s.pid, 0), 0);	/* alive, not killed */

	/* a reload raises the limit: recovery within an interval or two */
	h_write_file(cfg, "{\"memory_limit_mb\": 1000000, "
		     "\"health_interval_ms\": 250}");
	double t0 = h_now();
	kill(s.pid, SIGHUP);
	do {
		usleep(10000);
		h_http(s.port, "GET", "/v2/health/ready", NULL, NULL, NULL, &r);
		if (r.code != 200)
			h_free(&r);
	} while (r.code != 200 && h_now() - t0 < 5);
	double rec = h_now() - t0;
	assert_int_equal(r.code, 200);
	h_free(&r);
	print_message("ready again %.2f s after the reload (interval 0.1 s)\n",
		      rec);
	assert_true(rec < 1.0);
	assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
	h_free(&r);
	assert_true(h_metric(s.port, "pno_load_shedding") == 0);
	assert_true(h_log_count(&s, "load_shedding_off", NULL) == 1);
	/* the interval was reloaded too */
	h_http(s.port, "GET", "/v2/health/details", NULL, NULL, NULL, &r);
	json_t *d = h_json(&r);
	h_free(&r);
	assert_int_equal(json_integer_value(json_object_get(d, "interval_ms")),
			 250);
	assert_true(json_is_false(json_object_get(d, "load_shedding")));
	json_decref(d);
	/* and back under a limit just below what it uses now */
	double rss = proc_rss(s.pid);
	char text[128];
	snprintf(text, sizeof text, "{\"memory_limit_mb\": %d}",
		 (int)(rss / 1048576) - 1 > 1 ? (int)(rss / 1048576) - 1 : 1);
	h_write_file(cfg, text);
	kill(s.pid, SIGHUP);
	t0 = h_now();
	do {
		usleep(10000);
		h_infer(s.port, "heat", NULL, &r);
		if (r.code == 200)
			h_free(&r);
	} while (r.code == 200 && h_now() - t0 < 5);
	assert_int_equal(r.code, 503);
	h_free(&r);
	h_stop(&s);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_details_scheduled),
		cmocka_unit_test(test_memory_shedding),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
