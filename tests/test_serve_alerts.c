/* Alerts (docs/serve/operations.md "Alerts"): the rules parser; the
 * engine on a fake clock (for-duration, cooldown, resolve, "<" rules, a
 * reload that keeps state); the anomaly rule's EWMA baseline against an
 * independent recomputation, its false-alarm rate on seeded stationary
 * latencies and its detection of a shift; the latency ring's windowed
 * quantiles against brute force; the drift hook; and the real server:
 * rules over its own metrics fire and resolve into the log, the audit log,
 * the webhook (a collector in the test that answers 503 first, so the
 * notification is retried) and pno_alerts_firing. */
#include "serve_ops_harness.h"
#include "serve_harness.h"	/* sh_write_model: a model with a drift
				 * reference; sh_body */
#include "alert.h"
#include "serve_internal.h"

static const char *const rules_ok =
	"{\"rules\": ["
	"{\"name\": \"errors\", \"metric\": \"error_rate\", \"threshold\": 0.1,"
	" \"severity\": \"critical\", \"for_s\": 30, \"cooldown_s\": 300},"
	"{\"name\": \"low-rss\", \"metric\": \"resident_memory\", \"op\": \"<\","
	" \"threshold\": 1000},"
	"{\"name\": \"lat.anom\", \"metric\": \"latency_anomaly\", \"k_sigma\": 4,"
	" \"warmup\": 20, \"alpha\": 0.05, \"min_sigma_ratio\": 0.01,"
	" \"min_sigma_s\": 0}]}";

static void test_rules_parse(void **state)
{
	(void)state;
	struct alert_rules r;
	assert_status(alert_rules_parse(&r, rules_ok, "t"), PNO_STATUS_OK);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.r[0].name, "errors");
	assert_int_equal(r.r[0].metric, ALERT_METRIC_ERROR_RATE);
	assert_int_equal(r.r[0].severity, ALERT_SEVERITY_CRITICAL);
	assert_true(r.r[0].for_s == 30 && r.r[0].cooldown_s == 300);
	assert_false(r.r[0].below);
	assert_true(r.r[1].below);
	assert_int_equal(r.r[1].severity, ALERT_SEVERITY_WARNING);
	assert_int_equal(r.r[2].metric, ALERT_METRIC_LATENCY_ANOMALY);
	assert_true(r.r[2].k_sigma == 4 && r.r[2].warmup == 20);
	assert_true(r.r[2].alpha == 0.05 && r.r[2].min_sigma_ratio == 0.01);
	assert_true(r.r[2].min_sigma_s == 0);
	assert_status(alert_rules_parse(&r, "{\"rules\": [{\"name\": \"a\", "
					"\"metric\": \"latency_anomaly\"}]}",
					"t"), PNO_STATUS_OK);
	assert_true(r.r[0].k_sigma == 3 && r.r[0].warmup == 10 &&
		    r.r[0].alpha == 0.1 && r.r[0].min_sigma_ratio == 0.05 &&
		    r.r[0].min_sigma_s == 0.001);
	assert_status(alert_rules_parse(&r, rules_ok, "t"), PNO_STATUS_OK);
	for (int m = 0; m < ALERT_METRIC_COUNT; m++)
		assert_string_not_equal(alert_metric_name(m), "?");

	struct { const char *text, *msg; } bad[] = {
		{"[]", "expected {\"rules\""},
		{"{\"rules\": [], \"x\": 1}", "expected {\"rules\""},
		{"{\"rules\": [{\"metric\": \"error_rate\", \"threshold\": 1}]}",
		 "name must be"},
		{"{\"rules\": [{\"name\": \"a b\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1}]}", "name must be"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"cpu\", "
		 "\"threshold\": 1}]}", "metric must be one of"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\"}]}",
		 "no threshold"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": \"1\"}]}", "threshold is not a number"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1, \"op\": \">=\"}]}", "op must be"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1, \"severity\": \"page\"}]}", "severity must"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1, \"for_s\": -1}]}", "for_s -1 is out of range"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1, \"window\": 3}]}", "unknown field \"window\""},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1, \"k_sigma\": 3}]}", "k_sigma is for"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"latency_anomaly\", "
		 "\"threshold\": 1}]}", "takes k_sigma"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"latency_anomaly\", "
		 "\"warmup\": 2.5}]}", "warmup is not an integer"},
		{"{\"rules\": [{\"name\": \"a\", \"metric\": \"error_rate\", "
		 "\"threshold\": 1}, {\"name\": \"a\", \"metric\": "
		 "\"p99_latency\", \"threshold\": 1}]}", "given twice"},
		{"{\"rules\": [", "alerts"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct alert_rules keep = r;
		if (alert_rules_parse(&r, bad[i].text, "alerts") !=
		    PNO_STATUS_INVALID)
			fail_msg("accepted: %s", bad[i].text);
		if (!strstr(pno_last_error(), bad[i].msg))
			fail_msg("\"%s\" lacks \"%s\"", pno_last_error(),
				 bad[i].msg);
		assert_memory_equal(&keep, &r, sizeof r);	/* untouched */
	}
	/* 65 rules */
	char *big = malloc(65 * 100 + 32), *p = big;
	p += sprintf(p, "{\"rules\": [");
	for (int i = 0; i < 65; i++)
		p += sprintf(p, "%s{\"name\": \"r%d\", \"metric\": \"error_rate\""
			     ", \"threshold\": 1}", i ? "," : "", i);
	sprintf(p, "]}");
	assert_status(alert_rules_parse(&r, big, "t"), PNO_STATUS_INVALID);
	assert_non_null(strstr(pno_last_error(), "at most 64"));
	free(big);
	assert_status(alert_rules_load(&r, ""), PNO_STATUS_OK);
	assert_int_equal(r.n, 0);
	assert_status(alert_rules_load(&r, tu_tmp_path("no_such_rules")),
		      PNO_STATUS_NOTFOUND);
}

static void test_rules_alloc_failure_loop(void **state)
{
	(void)state;
	struct alert_rules r, zero;
	memset(&zero, 0, sizeof zero);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		r = zero;
		tu_alloc_reset(k);
		if (tu_alloc_step(alert_rules_parse(&r, rules_ok, "t"), live0))
			break;
		assert_memory_equal(&r, &zero, sizeof r);
	}
	tu_alloc_uninstall();
	print_message("%ld allocation points\n", k - 1);
	assert_true(k > 3);
	assert_int_equal(r.n, 3);
}

/* ---- the engine on a fake clock ---- */

struct seen {
	int n;
	char name[32][ALERT_NAME_MAX];
	int firing[32];
	double t[32];
};

static void record(void *ud, const struct alert_rule *r,
		   const struct alert_state *s, int firing, double now)
{
	struct seen *v = ud;
	(void)s;
	if (v->n < 32) {
		snprintf(v->name[v->n], ALERT_NAME_MAX, "%s", r->name);
		v->firing[v->n] = firing;
		v->t[v->n] = now;
	}
	v->n++;
}

static struct alert_values vals(int m, double x)
{
	struct alert_values v;
	memset(&v, 0, sizeof v);
	if (m >= 0) {
		v.v[m] = x;
		v.have[m] = 1;
	}
	return v;
}

static void test_engine_for_cooldown_resolve(void **state)
{
	(void)state;
	struct alert_rules r;
	static struct alert_engine e;
	struct seen s = {0};
	assert_status(alert_rules_parse(&r, rules_ok, "t"), PNO_STATUS_OK);
	r.n = 1;	/* "errors": > 0.1 for 30 s, cooldown 300 s */
	alert_engine_init(&e, &r);
	struct alert_values hi = vals(ALERT_METRIC_ERROR_RATE, 0.5);
	struct alert_values lo = vals(ALERT_METRIC_ERROR_RATE, 0.05);
	struct alert_values none = vals(-1, 0);
	/* true from t = 0, ticks of 1 s: fires at exactly t = 30 */
	for (int t = 0; t < 30; t++)
		assert_int_equal(alert_engine_eval(&e, &hi, t, record, &s), 0);
	assert_true(e.st[0].pending && !e.st[0].firing);
	assert_int_equal(alert_engine_eval(&e, &hi, 30, record, &s), 1);
	assert_int_equal(s.n, 1);
	assert_true(s.firing[0] && s.t[0] == 30);
	/* stays firing without new notifications */
	for (int t = 31; t < 40; t++)
		assert_int_equal(alert_engine_eval(&e, &hi, t, record, &s), 0);
	/* at the threshold is not above it: resolves */
	struct alert_values eq = vals(ALERT_METRIC_ERROR_RATE, 0.1);
	assert_int_equal(alert_engine_eval(&e, &eq, 40, record, &s), 1);
	assert_true(!s.firing[1] && s.t[1] == 40);
	/* true again at 50: pending until 80, but the cooldown (fired at 30,
	 * 300 s) holds it until 330 */
	for (int t = 50; t < 330; t++)
		assert_int_equal(alert_engine_eval(&e, &hi, t, record, &s), 0);
	assert_int_equal(e.st[0].suppressed, 330 - 80);
	assert_int_equal(alert_engine_eval(&e, &hi, 330, record, &s), 1);
	assert_true(s.firing[2] && s.t[2] == 330);
	/* no data resolves (no requests: no error rate) */
	assert_int_equal(alert_engine_eval(&e, &none, 331, record, &s), 1);
	assert_false(s.firing[3]);
	/* a blip shorter than for_s never fires */
	for (int t = 700; t < 729; t++)
		alert_engine_eval(&e, &hi, t, record, &s);
	alert_engine_eval(&e, &lo, 729, record, &s);
	for (int t = 730; t < 759; t++)
		alert_engine_eval(&e, &hi, t, record, &s);
	assert_int_equal(s.n, 4);
	assert_int_equal(e.st[0].fired, 2);
	assert_int_equal(e.st[0].resolved, 2);

	/* "<" with for_s 0: fires on the first tick below, resolves above */
	struct alert_rules r2;
	assert_status(alert_rules_parse(&r2, rules_ok, "t"), PNO_STATUS_OK);
	r2.r[0] = r2.r[1];
	r2.n = 1;
	alert_engine_init(&e, &r2);
	s.n = 0;
	struct alert_values small = vals(ALERT_METRIC_RESIDENT_MEMORY, 999);
	struct alert_values large = vals(ALERT_METRIC_RESIDENT_MEMORY, 1000);
	assert_int_equal(alert_engine_eval(&e, &small, 0, record, &s), 1);
	assert_int_equal(alert_engine_eval(&e, &large, 1, record, &s), 1);
	assert_true(s.firing[0] && !s.firing[1]);

	/* a reload keeps the state of a rule it keeps, resolves one it
	 * drops */
	assert_status(alert_rules_parse(&r, rules_ok, "t"), PNO_STATUS_OK);
	r.n = 2;
	alert_engine_init(&e, &r);
	s.n = 0;
	for (int t = 0; t <= 30; t++)
		alert_engine_eval(&e, &hi, t, record, &s);
	struct alert_values both = hi;
	both.v[ALERT_METRIC_RESIDENT_MEMORY] = 10;
	both.have[ALERT_METRIC_RESIDENT_MEMORY] = 1;
	alert_engine_eval(&e, &both, 31, record, &s);
	assert_int_equal(s.n, 2);	/* errors, then low-rss */
	struct alert_rules keep_errors = r;
	keep_errors.r[0] = r.r[1];
	keep_errors.r[1] = r.r[0];	/* order changes too */
	keep_errors.n = 1;		/* only low-rss stays */
	alert_engine_set_rules(&e, &keep_errors, record, &s, 32);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.name[2], "errors");
	assert_false(s.firing[2]);
	assert_true(e.st[0].firing);	/* low-rss kept firing */
	assert_int_equal(alert_engine_eval(&e, &both, 33, record, &s), 0);
}

/* the anomaly rule's baseline, recomputed here from its definition */
static void test_anomaly_baseline(void **state)
{
	(void)state;
	struct alert_rules r;
	static struct alert_engine e;
	struct seen s = {0};
	assert_status(alert_rules_parse(&r, rules_ok, "t"), PNO_STATUS_OK);
	r.r[0] = r.r[2];	/* k 4, warmup 20, alpha 0.05, floor 0.01 */
	r.n = 1;
	alert_engine_init(&e, &r);
	enum { W = 4000 };
	static float x[W];
	/* per-window medians: 10 ms + N(0, 0.5 ms), from Philox */
	pno_rng_normal(x, W, 42, 1, 0);
	for (int i = 0; i < W; i++)
		x[i] = 0.010f + 0.0005f * x[i];
	double mean = x[0], var = 0, var_avg = 0;
	int fires = 0;
	for (int i = 0; i < W; i++) {
		struct alert_values v = vals(ALERT_METRIC_LATENCY_ANOMALY, x[i]);
		fires += alert_engine_eval(&e, &v, i, record, &s) > 0 &&
			 e.st[0].firing;
		if (i > 0) {
			double sd = sqrt(var);
			double z = (x[i] - mean) / (sd > 0.01 * mean ? sd :
						    0.01 * mean);
			if (!(i >= 20 && z > 4)) {
				double d = x[i] - mean;
				mean += 0.05 * d;
				var = 0.95 * (var + 0.05 * d * d);
			}
		}
		if (i >= 200)
			var_avg += var / (W - 200);
	}
	/* the same numbers as the definition (double arithmetic in both) */
	assert_true(fabs(e.st[0].mean - mean) <= 1e-12);
	assert_true(fabs(e.st[0].var - var) <= 1e-15);
	/* the EWMA of N(mu, s^2) settles near mu (its own spread is
	 * s sqrt(alpha / (2 - alpha)) = 0.16 s: 4 of those) and, averaged
	 * over the run, its variance near (1 - alpha)(1 + alpha / (2 -
	 * alpha)) s^2 = 0.974 s^2 (the last value alone has a relative
	 * spread of ~ sqrt(alpha) = 22%, so the average is what is tested,
	 * within 10%) */
	assert_true(fabs(mean - 0.010) < 4 * 0.0005 * sqrt(0.05 / 1.95));
	double want = 0.95 * (1 + 0.05 / 1.95) * 0.0005 * 0.0005;
	print_message("stationary: %d firings in %d windows; baseline %.4f ms; "
		      "sd now %.4f ms, rms over the run %.4f ms (expected "
		      "%.4f)\n", fires, W, 1e3 * mean, 1e3 * sqrt(var),
		      1e3 * sqrt(var_avg), 1e3 * sqrt(want));
	assert_true(fabs(var_avg - want) < 0.1 * want);
	/* false alarms: z > 4 with sigma estimated from ~2 / alpha = 40
	 * windows is roughly a t(40) tail, 1.3e-4 per window: 0.5 expected
	 * in 4000; more than 3 has Poisson probability 0.2% */
	assert_true(fires <= 3);
	/* a shift to 15 ms (10 sigma) fires on the first shifted window */
	int before = s.n;
	struct alert_values up = vals(ALERT_METRIC_LATENCY_ANOMALY, 0.015);
	assert_int_equal(alert_engine_eval(&e, &up, W, record, &s), 1);
	assert_true(s.firing[(before < 32 ? before : 31)] || before >= 32);
	assert_true(e.st[0].firing);
	assert_true(e.st[0].z > 8);
	/* the anomalous windows are not learned: still firing 50 windows on */
	double m0 = e.st[0].mean;
	for (int i = 1; i <= 50; i++)
		alert_engine_eval(&e, &up, W + i, record, &s);
	assert_true(e.st[0].firing);
	assert_true(e.st[0].mean == m0);
	/* back to normal: resolved */
	struct alert_values norm = vals(ALERT_METRIC_LATENCY_ANOMALY, 0.010);
	assert_int_equal(alert_engine_eval(&e, &norm, W + 51, record, &s), 1);
	assert_false(e.st[0].firing);
	/* a window without requests keeps the standing condition */
	struct alert_values none = vals(-1, 0);
	assert_int_equal(alert_engine_eval(&e, &none, W + 52, record, &s), 0);

	/* during warm-up nothing fires, however far off */
	alert_engine_init(&e, &r);
	s.n = 0;
	for (int i = 0; i < 20; i++) {
		struct alert_values v = vals(ALERT_METRIC_LATENCY_ANOMALY,
					     i == 10 ? 1.0 : x[i]);
		alert_engine_eval(&e, &v, i, record, &s);
	}
	assert_int_equal(s.n, 0);
}

/* ---- the latency ring and quantiles against brute force ---- */

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static void test_latring(void **state)
{
	(void)state;
	static struct sv_latring ring;
	static float lat[10000], t[10000], scratch[SV_LAT_RING], ref[10000];
	sv_latring_init(&ring);
	pno_rng_uniform(lat, 10000, 5, 1, 0);
	for (int i = 0; i < 10000; i++)
		t[i] = 0.01f * i;	/* 100 per second for 100 s */
	for (int i = 0; i < 10000; i++)
		sv_latring_add(&ring, t[i], lat[i]);
	double windows[][2] = {{90, 95}, {-1, 100}, {50, 60}, {99.5, 99.99},
			       {200, 300}};
	for (size_t w = 0; w < sizeof windows / sizeof *windows; w++) {
		double t0 = windows[w][0], t1 = windows[w][1];
		int n = 0;
		/* brute force: the last 4096 written, in (t0, t1] */
		for (int i = 10000 - SV_LAT_RING; i < 10000; i++)
			if ((double)t[i] > t0 && (double)t[i] <= t1)
				ref[n++] = lat[i];
		qsort(ref, (size_t)n, sizeof *ref, cmpf);
		int m = sv_latring_window(&ring, t0, t1, scratch);
		assert_int_equal(m, n);
		assert_memory_equal(scratch, ref, (size_t)n * sizeof *ref);
		for (double q = 0.01; m && q <= 1.0; q += 0.01) {
			/* nearest rank: smallest x with #(<= x) >= q n */
			int k = 0;
			while ((double)(k + 1) < q * n - 1e-9)
				k++;
			assert_true(sv_quantile_sorted(scratch, m, q) == ref[k]);
		}
	}
	/* p99 of 1..100 is 99, p50 is 50 */
	float v[100];
	for (int i = 0; i < 100; i++)
		v[i] = (float)(i + 1);
	assert_true(sv_quantile_sorted(v, 100, 0.99) == 99);
	assert_true(sv_quantile_sorted(v, 100, 0.5) == 50);
	assert_true(sv_quantile_sorted(v, 1, 0.99) == 1);
	sv_latring_free(&ring);
}

/* the drift hook: the largest score per model version, forgotten with a
 * negative score */
static void test_drift_hook(void **state)
{
	(void)state;
	static struct server srv;
	static struct sv_ops o;
	memset(&srv, 0, sizeof srv);
	memset(&o, 0, sizeof o);
	pthread_mutex_init(&o.mu, NULL);
	srv.ops = &o;
	o.srv = &srv;
	int have;
	sv_health_drift_max(&o, &have);
	assert_false(have);
	sv_ops_drift_report(&srv, "heat", "1", 0.05);
	sv_ops_drift_report(&srv, "heat", "2", 0.3);
	sv_ops_drift_report(&srv, "heat", "1", 0.12);
	assert_true(sv_health_drift_max(&o, &have) == 0.3 && have);
	assert_int_equal(o.ndrift, 2);
	sv_ops_drift_report(&srv, "heat", "2", -1);
	assert_true(sv_health_drift_max(&o, &have) == 0.12);
	sv_ops_drift_report(&srv, "heat", "1", NAN);	/* ignored */
	assert_true(sv_health_drift_max(&o, &have) == 0.12);
	for (int i = 0; i < 2 * SV_MAX_DRIFT; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", i + 10);
		sv_ops_drift_report(&srv, "m", v, 0.01 * i);
	}
	assert_int_equal(o.ndrift, SV_MAX_DRIFT);
	sv_ops_drift_report(NULL, "m", "1", 1);		/* no server: nothing */
	pthread_mutex_destroy(&o.mu);
}

/* ---- the real server ---- */

static char audit_dir[900], audit_key[1000];

static void audit_fresh(void)
{
	char cmd[4096];
	snprintf(audit_dir, sizeof audit_dir, "%s", tu_tmp_path("alerts_audit"));
	snprintf(audit_key, sizeof audit_key, "%s.key", audit_dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", audit_dir, audit_key);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s audit keygen --out '%s' >/dev/null",
		 PNO_BIN, audit_key);
	assert_int_equal(system(cmd), 0);
}

/* alert records in the audit log: "name state" strings, in order */
static int audit_alerts(char out[][96], int max)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s audit show --log '%s' --key '%s' "
		 "2>/dev/null", PNO_BIN, audit_dir, audit_key);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	static char line[65536];
	int n = 0;
	while (fgets(line, sizeof line, p)) {
		json_error_t e;
		json_t *j = json_loads(line, 0, &e);
		if (!j)
			fail_msg("audit show: not JSON: %.200s", line);
		const char *ev = json_string_value(json_object_get(j, "event"));
		const char *d = json_string_value(json_object_get(j, "detail"));
		if (ev && !strcmp(ev, "alert") && d && n < max)
			snprintf(out[n++], 96, "%.95s", d);
		json_decref(j);
	}
	assert_int_equal(pclose(p), 0);
	return n;
}

/* webhook bodies received so far with this alert and state */
static int hook_count(struct h_collector *k, const char *alert,
		      const char *state)
{
	char a[128], s[64];
	int n = 0;
	snprintf(a, sizeof a, "\"alert\":\"%s\"", alert);
	snprintf(s, sizeof s, "\"state\":\"%s\"", state);
	pthread_mutex_lock(&k->mu);
	for (int i = 0; i < k->n && i < H_MAX_POSTS; i++)
		n += !strstr(k->path[i], " 503") && strstr(k->body[i], a) &&
		     strstr(k->body[i], s);
	pthread_mutex_unlock(&k->mu);
	return n;
}

static int wait_hook(struct h_collector *k, const char *alert,
		     const char *state, int want, double timeout)
{
	double t0 = h_now();
	int n;
	while ((n = hook_count(k, alert, state)) < want &&
	       h_now() - t0 < timeout)
		usleep(20000);
	return n;
}

static void test_server_alerts(void **state)
{
	(void)state;
	struct h_collector k;
	struct h_srv s;
	h_make_repo("alerts_repo", 1, 1);
	audit_fresh();
	h_coll_start(&k, 1, 0);		/* the first notification: 503 */
	char rules[900], url[128];
	snprintf(rules, sizeof rules, "%s", tu_tmp_path("alerts_rules.json"));
	h_write_file(rules,
		     "{\"rules\": ["
		     "{\"name\": \"rss\", \"metric\": \"resident_memory\","
		     " \"threshold\": 1, \"severity\": \"info\"},"
		     "{\"name\": \"slow\", \"metric\": \"p99_latency\","
		     " \"threshold\": 0},"
		     "{\"name\": \"errors\", \"metric\": \"error_rate\","
		     " \"threshold\": 0.5, \"severity\": \"critical\","
		     " \"for_s\": 0.3},"
		     "{\"name\": \"breaker\", \"metric\": \"breaker_open\","
		     " \"threshold\": 0, \"severity\": \"critical\"},"
		     "{\"name\": \"audit\", \"metric\": \"audit_write_failures\","
		     " \"threshold\": 0}]}");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", k.port);
	const char *ex[] = {"--auth", "false", "--alerts-file", rules,
			    "--alert-webhook-url", url, "--alert-window-s", "1",
			    "--health-interval-ms", "100", "--audit-dir",
			    audit_dir, "--audit-key-file", audit_key,
			    "--breaker-window", "4", "--breaker-min-calls", "4",
			    "--breaker-wait-ms", "60000", NULL};
	h_start(&s, "alerts", ex);
	/* rss fires at the first evaluation (before the port is written);
	 * its first POST got 503 + Retry-After 0 and was retried */
	assert_int_equal(wait_hook(&k, "rss", "firing", 1, 5), 1);
	pthread_mutex_lock(&k.mu);
	assert_non_null(strstr(k.path[0], " 503"));
	assert_string_equal(k.body[0], k.body[1]);	/* the same message */
	json_error_t e;
	json_t *j = json_loads(k.body[1], 0, &e);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "severity")),
			    "info");
	assert_string_equal(json_string_value(json_object_get(j, "metric")),
			    "resident_memory");
	assert_true(json_number_value(json_object_get(j, "value")) > 1e6);
	assert_non_null(json_object_get(j, "time"));
	json_decref(j);
	pthread_mutex_unlock(&k.mu);

	/* one answered inference: slow fires (p99 > 0 s), and resolves once
	 * the 1 s window holds no answer */
	struct h_resp r;
	double t0 = h_now();
	assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
	h_free(&r);
	assert_int_equal(wait_hook(&k, "slow", "firing", 1, 5), 1);
	double t_fire = h_now() - t0;
	assert_true(h_metric(s.port, "pno_alerts_firing{alert=\"slow\","
			     "severity=\"warning\"}") == 1);
	assert_int_equal(wait_hook(&k, "slow", "resolved", 1, 5), 1);
	double t_res = h_now() - t0;
	print_message("slow: fired %.2f s, resolved %.2f s after the request "
		      "(window 1 s, interval 0.1 s)\n", t_fire, t_res);
	assert_true(t_fire < 1.0);
	assert_true(t_res >= 0.9 && t_res < 3.0);
	assert_true(h_metric(s.port, "pno_alerts_firing{alert=\"slow\","
			     "severity=\"warning\"}") == 0);

	/* four model failures: error rate 1 for 0.3 s fires "errors"; the
	 * breaker (window 4) opens: "breaker" fires */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(h_infer(s.port, "bad", NULL, &r), 500);
		h_free(&r);
	}
	assert_int_equal(wait_hook(&k, "breaker", "firing", 1, 5), 1);
	assert_int_equal(wait_hook(&k, "errors", "firing", 1, 5), 1);
	/* open breaker: refusals are 503s, errors as well */
	assert_int_equal(h_infer(s.port, "bad", NULL, &r), 503);
	h_free(&r);
	assert_true(h_metric(s.port, "pno_alerts_firing{alert=\"errors\","
			     "severity=\"critical\"}") == 1);
	/* the window empties: errors resolves; the breaker stays open */
	assert_int_equal(wait_hook(&k, "errors", "resolved", 1, 5), 1);
	assert_int_equal(hook_count(&k, "breaker", "resolved"), 0);
	assert_int_equal(hook_count(&k, "audit", "firing"), 0);

	/* the health details list the rules' states */
	h_http(s.port, "GET", "/v2/health/details", NULL, NULL, NULL, &r);
	assert_int_equal(r.code, 200);
	json_t *d = h_json(&r);
	h_free(&r);
	json_t *al = json_object_get(d, "alerts"), *a;
	size_t i;
	int seen = 0;
	json_array_foreach(al, i, a) {
		const char *nm = json_string_value(json_object_get(a, "name"));
		const char *st = json_string_value(json_object_get(a, "state"));
		if (!strcmp(nm, "breaker") || !strcmp(nm, "rss"))
			assert_string_equal(st, "firing"), seen++;
		if (!strcmp(nm, "slow") || !strcmp(nm, "errors")) {
			assert_string_equal(st, "inactive");
			assert_int_equal(json_integer_value(json_object_get(a,
				"resolved")), 1);
			seen++;
		}
	}
	assert_int_equal(seen, 4);
	json_decref(d);

	/* a reload that drops "rss" resolves it; a broken rules file keeps
	 * the rules in force */
	h_write_file(rules, "{\"rules\": [{\"name\": \"breaker\", \"metric\":"
		     " \"breaker_open\", \"threshold\": 0}]}");
	kill(s.pid, SIGHUP);
	assert_int_equal(wait_hook(&k, "rss", "resolved", 1, 5), 1);
	h_write_file(rules, "{\"rules\": [{\"name\": \"x\"}]}");
	kill(s.pid, SIGHUP);
	t0 = h_now();
	while (!h_log_count(&s, "alerts_reload_failed", NULL) &&
	       h_now() - t0 < 5)
		usleep(20000);
	assert_int_equal(h_log_count(&s, "alerts_reload_failed", NULL), 1);
	usleep(300000);
	assert_int_equal(hook_count(&k, "breaker", "resolved"), 0);

	/* the log has one line per transition */
	assert_int_equal(h_log_count(&s, "\"event\":\"alert\"",
				     "\"alert\":\"slow\""), 2);
	assert_int_equal(h_log_count(&s, "\"event\":\"alert\"",
				     "\"state\":\"firing\""), 4);
	assert_true(h_metric(s.port, "pno_alert_webhook_sent_total") == 7);
	assert_true(h_metric(s.port, "pno_alert_webhook_dropped_total"
			     "{reason=\"failed\"}") == 0);
	h_stop(&s);
	/* and the audit log, in order */
	char rec[32][96];
	int n = audit_alerts(rec, 32);
	const char *want[] = {"alert rss firing", "alert slow firing",
			      "alert slow resolved"};
	assert_int_equal(n, 7);
	for (int w = 0; w < 3; w++)
		if (strncmp(rec[w], want[w], strlen(want[w])))
			fail_msg("audit record %d: \"%s\", want \"%s...\"", w,
				 rec[w], want[w]);
	int rss_res = 0;
	for (int w = 0; w < n; w++)
		rss_res += !strncmp(rec[w], "alert rss resolved", 18);
	assert_int_equal(rss_res, 1);
	h_coll_stop(&k);
}

/* the anomaly rule in the server: a baseline of fast answers, then a
 * reload adds 30 ms of batching delay to every request: the window's
 * median jumps and the rule fires */
static void test_server_anomaly(void **state)
{
	(void)state;
	struct h_srv s;
	char rules[900], cfg[900];
	h_make_repo("alerts_repo3", 1, 0);
	snprintf(rules, sizeof rules, "%s", tu_tmp_path("alerts_rules3.json"));
	snprintf(cfg, sizeof cfg, "%s", tu_tmp_path("alerts_cfg3.json"));
	/* k 4 over a floor of 20% of the baseline and 2 ms: only a median
	 * 8 ms above a sub-millisecond baseline fires (load on the machine
	 * moves fast medians by far less; the slow phase adds 30 ms) */
	h_write_file(rules, "{\"rules\": [{\"name\": \"lat\", \"metric\": "
		     "\"latency_anomaly\", \"k_sigma\": 4, \"warmup\": 3, "
		     "\"alpha\": 0.3, \"min_sigma_ratio\": 0.2, "
		     "\"min_sigma_s\": 0.002}]}");
	h_write_file(cfg, "{\"max_queue_delay_us\": 0, \"max_batch\": 8}");
	const char *ex[] = {"--auth", "false", "--config", cfg, "--alerts-file",
			    rules, "--alert-window-s", "1",
			    "--health-interval-ms", "100", NULL};
	h_delay_flag = 0;
	h_start(&s, "anomaly", ex);
	h_delay_flag = 1;
	const char *firing = "pno_alerts_firing{alert=\"lat\",severity="
			     "\"warning\"}";
	const char *z = "pno_latency_anomaly_z{alert=\"lat\"}";
	struct h_resp r;
	double t0 = h_now(), fast = 0;
	int nf = 0;
	while (h_now() - t0 < 5.5) {	/* 5 windows: warm-up 3 */
		assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
		fast += r.seconds, nf++;
		h_free(&r);
	}
	double z_fast = h_metric(s.port, z);
	assert_true(h_metric(s.port, firing) != 1);
	h_write_file(cfg, "{\"max_queue_delay_us\": 30000, \"max_batch\": 8}");
	kill(s.pid, SIGHUP);
	usleep(200000);
	t0 = h_now();
	double slow = 0, t_fire = -1;
	int ns = 0;
	while (h_now() - t0 < 4 && t_fire < 0) {
		assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
		slow += r.seconds, ns++;
		h_free(&r);
		if (ns % 5 == 0 && h_metric(s.port, firing) == 1)
			t_fire = h_now() - t0;
	}
	print_message("anomaly: %d fast answers (mean %.2f ms, z %.2f), then "
		      "%d slow (mean %.2f ms): fired %.2f s into the slow "
		      "phase, z %.1f\n", nf, 1e3 * fast / nf, z_fast, ns,
		      1e3 * slow / ns, t_fire, h_metric(s.port, z));
	assert_true(t_fire > 0 && t_fire < 3);
	assert_true(h_metric(s.port, z) > 4);
	assert_int_equal(h_log_count(&s, "\"alert\":\"lat\"", "firing"), 1);
	h_stop(&s);
}

/* drift end to end: the drift monitor's PSI reaches the ops hook, the
 * drift check and a drift_score rule (shifted inputs as
 * test_serve_drift_live.c sends them) */
static void test_server_drift(void **state)
{
	(void)state;
	enum { NREF = 200, X = 64 };
	struct pno_dataset ref_d, live;
	struct h_srv s;
	char rules[900];
	h_make_repo("alerts_repo5", 0, 0);
	tu_heat_dataset(&ref_d, 1, NREF, X, 0.01, 2000);
	struct sh_model m = {.X = X, .seed = 4, .ref_x = ref_d.in,
			     .ref_n = NREF};
	sh_write_model(h_repo, "h", 1, &m);
	struct drift_ref r;
	assert_status(drift_ref_from_dataset(&r, &ref_d, 1000), PNO_STATUS_OK);
	const float shift = (float)(0.5 * r.std[0]);
	drift_ref_free(&r);
	pno_dataset_free(&ref_d);
	snprintf(rules, sizeof rules, "%s", tu_tmp_path("alerts_rules5.json"));
	h_write_file(rules, "{\"rules\": [{\"name\": \"drift\", \"metric\": "
		     "\"drift_score\", \"threshold\": 0.1, \"severity\": "
		     "\"critical\"}]}");
	const char *ex[] = {"--auth", "false", "--alerts-file", rules,
			    "--health-interval-ms", "100", NULL};
	h_start(&s, "drift", ex);
	tu_heat_dataset(&live, 1, 400, X, 0.01, 3000);
	const char *firing = "pno_alerts_firing{alert=\"drift\",severity="
			     "\"critical\"}";
	float y[X];
	struct h_resp rr;
	char path[] = "/v2/models/h/infer";
	for (int i = 0; i < 400; i++) {
		float sh = i < 200 ? 0 : shift;
		for (int k = 0; k < X; k++)
			y[k] = live.in[(size_t)i * X + k] + sh;
		char *b = sh_body(y, X, "\"num_samples\":1");
		h_http(s.port, "POST", path, b, NULL, NULL, &rr);
		free(b);
		assert_int_equal(rr.code, 200);
		h_free(&rr);
		if (i == 199) {
			/* the window is full and unshifted: a score, no alert */
			usleep(300000);
			h_http(s.port, "GET", "/v2/health/details", NULL, NULL,
			       NULL, &rr);
			json_t *d = h_json(&rr);
			h_free(&rr);
			size_t j;
			json_t *c;
			json_array_foreach(json_object_get(d, "checks"), j, c)
				if (!strcmp(json_string_value(json_object_get(
					c, "name")), "drift")) {
					assert_string_equal(json_string_value(
						json_object_get(c, "status")),
						"ok");
					assert_true(json_number_value(
						json_object_get(c, "value")) <
						0.1);
				}
			json_decref(d);
			assert_true(h_metric(s.port, firing) != 1);
		}
		if (i >= 200 && (i + 1) % 50 == 0 &&
		    h_metric_wait(s.port, firing, 1, 0.5) == 1)
			break;
	}
	double psi = h_metric(s.port, "pno_drift_psi{model=\"h\",version="
			      "\"1\"}");
	print_message("drift: alert firing %g with PSI %.3f after shifted "
		      "inputs\n", h_metric(s.port, firing), psi);
	assert_true(h_metric(s.port, firing) == 1);
	assert_true(psi > 0.1);
	assert_int_equal(h_log_count(&s, "\"alert\":\"drift\"", "firing"), 1);
	pno_dataset_free(&live);
	h_stop(&s);
}

/* what cannot work refuses to start, saying why */
static void test_bad_start(void **state)
{
	(void)state;
	h_make_repo("alerts_repo4", 1, 0);
	char rules[900], out[900], cmd[4096];
	snprintf(rules, sizeof rules, "%s", tu_tmp_path("alerts_rules4.json"));
	snprintf(out, sizeof out, "%s", tu_tmp_path("alerts_bad_start.txt"));
	h_write_file(rules, "{\"rules\": [{\"name\": \"a\", \"metric\": "
		     "\"p99_latency\", \"threshold\": 1, \"for\": 3}]}");
	struct { const char *flags, *msg; } bad[] = {
		{"--alerts-file /nonexistent/rules.json", "alerts_file"},
		{"--alerts-file RULES", "unknown field \"for\""},
		{"--alert-webhook-url ftp://example.com/hook",
		 "alert_webhook_url: url \"ftp://example.com/hook\": the "
		 "scheme \"ftp\" is not supported (http:// or https://)"},
		{"--alert-webhook-url http://[::1/hook",
		 "alert_webhook_url: url \"http://[::1/hook\": "},
		{"--trace-otlp-url ftp://collector/v1/traces",
		 "trace export: url \"ftp://collector/v1/traces\": the scheme "
		 "\"ftp\" is not supported"},
		{"--trace-file /nonexistent/dir/spans.jsonl", "trace_file"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char flags[1200];
		const char *p = strstr(bad[i].flags, "RULES");
		if (p)
			snprintf(flags, sizeof flags, "%.*s%s",
				 (int)(p - bad[i].flags), bad[i].flags, rules);
		else
			snprintf(flags, sizeof flags, "%s", bad[i].flags);
		snprintf(cmd, sizeof cmd, "%s serve --repository '%s' --port 0 "
			 "--auth false --log-file '%s.log' %s 2>'%s'", PNO_BIN,
			 h_repo, out, flags, out);
		int st = system(cmd);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 1);
		FILE *f = fopen(out, "r");
		char msg[2048] = "";
		assert_non_null(f);
		size_t n = fread(msg, 1, sizeof msg - 1, f);
		msg[n] = 0;
		fclose(f);
		if (!strstr(msg, bad[i].msg))
			fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].flags, msg,
				 bad[i].msg);
	}
}

/* a webhook that is down: notifications are retried, then dropped and
 * counted; the server is unaffected */
static void test_webhook_down(void **state)
{
	(void)state;
	struct h_collector k;
	struct h_srv s;
	h_make_repo("alerts_repo2", 1, 0);
	h_coll_start(&k, 0, 0);
	int port = k.port;
	h_coll_stop(&k);		/* nobody listens there now */
	char rules[900], url[128];
	snprintf(rules, sizeof rules, "%s", tu_tmp_path("alerts_rules2.json"));
	h_write_file(rules, "{\"rules\": [{\"name\": \"rss\", \"metric\": "
		     "\"resident_memory\", \"threshold\": 1}]}");
	/* https: accepted at start (libcurl does TLS), then refused at
	 * connect like any dead webhook */
	snprintf(url, sizeof url, "https://127.0.0.1:%d/hook", port);
	const char *ex[] = {"--auth", "false", "--alerts-file", rules,
			    "--alert-webhook-url", url,
			    "--health-interval-ms", "50", NULL};
	h_start(&s, "alerts_down", ex);
	double v = h_metric_wait(s.port, "pno_alert_webhook_dropped_total"
				 "{reason=\"failed\"}", 1, 10);
	assert_true(v == 1);
	struct h_resp r;
	assert_int_equal(h_infer(s.port, "heat", NULL, &r), 200);
	h_free(&r);
	assert_int_equal(h_log_count(&s, "\"event\":\"alert\"", "firing"), 1);
	h_stop(&s);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_parse),
		cmocka_unit_test(test_rules_alloc_failure_loop),
		cmocka_unit_test(test_engine_for_cooldown_resolve),
		cmocka_unit_test(test_anomaly_baseline),
		cmocka_unit_test(test_latring),
		cmocka_unit_test(test_drift_hook),
		cmocka_unit_test(test_server_alerts),
		cmocka_unit_test(test_server_anomaly),
		cmocka_unit_test(test_server_drift),
		cmocka_unit_test(test_webhook_down),
		cmocka_unit_test(test_bad_start),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
