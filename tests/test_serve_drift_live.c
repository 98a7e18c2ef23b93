/* Drift in the request path. Statistics at the server's cadence: the
 * monitor with the server's defaults (window 200 inputs, 64 points per
 * input, evaluated every 50 inputs as sv_drift_observe does) on seeded
 * heat-equation fields: inputs shifted by half a reference std raise an
 * alert within one window in every run; unshifted inputs raise none in
 * at least 99 of 100 runs. End to end: a model carrying the reference
 * of its training inputs, served with the defaults: unshifted traffic
 * keeps the gauges ok, shifted traffic raises the level (log line, audit
 * record, gauges) within the window. */
#include "serve_harness.h"
#include "serve_internal.h"

#include <pthread.h>

enum { RES = 32, NREF = 200, X1 = 64 };

static char repo[1024], audit_dir[1024], audit_key[1100];

static void test_cadence_statistics(void **state)
{
	(void)state;
	struct pno_dataset ref_d;
	tu_heat_dataset(&ref_d, 2, NREF, RES, 0.01, 1000);
	struct drift_ref r;
	assert_status(drift_ref_from_dataset(&r, &ref_d, 1000), PNO_STATUS_OK);
	pno_dataset_free(&ref_d);
	struct serve_config sc;
	serve_config_defaults(&sc);
	struct drift_config c = drift_config_default();
	c.window = sc.drift_window;
	c.points = sc.drift_points;
	c.psi_warn = sc.drift_psi_warn;
	c.psi_crit = sc.drift_psi_crit;
	const int W = c.window, every = sc.drift_every;
	const size_t P = RES * RES;
	const float shift = (float)(0.5 * r.std[0]);
	float x[RES * RES];

	/* shifted: after a window of unshifted inputs, the first
	 * evaluation (every 50 inputs) at warn or above */
	int worst = 0;
	for (int run = 0; run < 10; run++) {
		struct pno_dataset d;
		struct drift_monitor m;
		struct drift_report rep;
		tu_heat_dataset(&d, 2, 2 * W, RES, 0.01, 70000 + run);
		c.seed = 500 + (uint64_t)run;
		assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_OK);
		for (int i = 0; i < W; i++)
			assert_status(drift_observe(&m, d.in + i * P),
				      PNO_STATUS_OK);
		drift_evaluate(&m, &rep, NULL, 1);
		assert_int_equal(rep.level, DRIFT_OK);
		int at = -1;
		for (int i = 0; i < W && at < 0; i++) {
			for (size_t p = 0; p < P; p++)
				x[p] = d.in[(W + i) * P + p] + shift;
			assert_status(drift_observe(&m, x), PNO_STATUS_OK);
			if ((W + i + 1) % every)
				continue;
			drift_evaluate(&m, &rep, NULL, 1);
			if (rep.level >= DRIFT_WARN)
				at = i + 1;
		}
		if (at < 0)
			fail_msg("run %d: no alert within %d shifted inputs", run,
				 W);
		worst = at > worst ? at : worst;
		drift_monitor_free(&m);
		pno_dataset_free(&d);
	}
	/* unshifted: 100 runs of 2W inputs, evaluated every 50 */
	const int runs = getenv("PNO_SANITIZED") ? 30 : 100;
	int alarmed = 0;
	double psi_max = 0;
	for (int run = 0; run < runs; run++) {
		struct pno_dataset d;
		struct drift_monitor m;
		struct drift_report rep;
		tu_heat_dataset(&d, 2, 2 * W, RES, 0.01, 80000 + run);
		c.seed = 900 + (uint64_t)run;
		assert_status(drift_monitor_init(&m, &r, &c), PNO_STATUS_OK);
		int any = 0;
		for (int i = 0; i < 2 * W; i++) {
			assert_status(drift_observe(&m, d.in + i * P),
				      PNO_STATUS_OK);
			if ((i + 1) % every)
				continue;
			drift_evaluate(&m, &rep, NULL, 1);
			if (rep.ready) {
				any |= rep.level != DRIFT_OK;
				psi_max = fmax(psi_max, rep.psi_max);
			}
		}
		alarmed += any;
		drift_monitor_free(&m);
		pno_dataset_free(&d);
	}
	printf("server cadence (W %d, P %d, every %d): shifted alert within %d "
	       "inputs (10 runs); unshifted: %d of %d runs alarmed, max PSI "
	       "%.4f\n", W, c.points, every, worst, alarmed, runs, psi_max);
	assert_true(alarmed <= runs / 100);
	drift_ref_free(&r);
}

static void post(const struct sh_srv *s, const float *x, float shift)
{
	float y[X1];
	struct sh_resp r;
	for (int i = 0; i < X1; i++)
		y[i] = x[i] + shift;
	char *b = sh_body(y, X1, "\"num_samples\":1");
	sh_http(s, "POST", "/v2/models/h/infer", b, NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	free(b);
}

static void test_end_to_end(void **state)
{
	(void)state;
	struct pno_dataset ref_d, live;
	struct sh_srv s;
	char cmd[4096];
	sh_fresh_dir("dl_live_repo", repo, sizeof repo);
	tu_heat_dataset(&ref_d, 1, NREF, X1, 0.01, 2000);
	struct sh_model h = {.X = X1, .seed = 4, .ref_x = ref_d.in,
			     .ref_n = NREF};
	sh_write_model(repo, "h", 1, &h);
	struct drift_ref r;
	assert_status(drift_ref_from_dataset(&r, &ref_d, 1000), PNO_STATUS_OK);
	const float shift = (float)(0.5 * r.std[0]);
	drift_ref_free(&r);
	pno_dataset_free(&ref_d);
	snprintf(audit_dir, sizeof audit_dir, "%s", tu_tmp_path("dl_audit"));
	snprintf(audit_key, sizeof audit_key, "%s.key", audit_dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' && %s audit keygen --out "
		 "'%s' >/dev/null", audit_dir, audit_key, PNO_BIN, audit_key);
	assert_int_equal(system(cmd), 0);
	const char *ex[] = {"--audit-dir", audit_dir, "--audit-key-file",
			    audit_key, NULL};
	sh_start(&s, "dl_live", repo, ex);
	assert_int_equal(sh_log_count(&s, "\"event\":\"drift_on\"",
				      "\"window\":200", NULL), 1);
	tu_heat_dataset(&live, 1, 400, X1, 0.01, 3000);
	const char *lvl = "pno_drift_level{model=\"h\",version=\"1\"}";
	const char *psi = "pno_drift_psi{model=\"h\",version=\"1\"}";
	for (int i = 0; i < 200; i++)
		post(&s, live.in + (size_t)i * X1, 0);
	double psi0 = sh_metric(&s, psi);
	assert_true(sh_metric(&s, lvl) == 0);
	assert_true(psi0 < 0.1);
	assert_int_equal(sh_log_count(&s, "\"event\":\"drift_level\"", NULL,
				      NULL), 0);
	int at = -1;
	for (int i = 200; i < 400 && at < 0; i++) {
		post(&s, live.in + (size_t)i * X1, shift);
		if ((i + 1) % 50 == 0 && sh_metric(&s, lvl) >= 1)
			at = i + 1 - 200;
	}
	if (at < 0)
		fail_msg("no drift level within 200 shifted inputs");
	double psi1 = sh_metric(&s, psi);
	printf("end to end: PSI %.4f after 200 unshifted inputs; level %g "
	       "(PSI %.3f, KS %.3f) after %d shifted\n", psi0,
	       sh_metric(&s, lvl), psi1,
	       sh_metric(&s, "pno_drift_ks{model=\"h\",version=\"1\"}"), at);
	assert_true(psi1 > 0.1);
	assert_true(sh_metric(&s, "pno_drift_inputs_total{model=\"h\","
			      "version=\"1\"}") == 200 + at);
	assert_int_equal(sh_log_count(&s, "\"event\":\"drift_level\"",
				      "\"from\":\"ok\"", NULL), 1);
	sh_stop(&s);
	pno_dataset_free(&live);
	snprintf(cmd, sizeof cmd, "%s audit show --log '%s' --key '%s' "
		 "2>/dev/null | grep -c '\"event\":\"drift\".*input drift ok "
		 "-> '", PNO_BIN, audit_dir, audit_key);
	FILE *p = popen(cmd, "r");
	char out[64] = "";
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof out, p));
	pclose(p);
	assert_int_equal(atoi(out), 1);
}

static enum pno_status guard_open_close(struct mversion *mv,
					const struct serve_config *cfg)
{
	enum pno_status s = sv_guard_open(mv, cfg);
	if (s)
		sv_guard_free(mv);	/* what version_free does */
	return s;
}

/* A version's guard (reference parsed from the metadata, monitor sized)
 * under every allocation failure: NOMEM, nothing left; once all succeed
 * the monitor is on, and observing allocates nothing. */
static void test_guard_alloc_failure(void **state)
{
	(void)state;
	struct pno_dataset ref_d;
	char dir[1024], path[1200];
	sh_fresh_dir("dl_alloc_repo", dir, sizeof dir);
	tu_heat_dataset(&ref_d, 1, 50, X1, 0.01, 42);
	struct sh_model h = {.X = X1, .seed = 4, .ref_x = ref_d.in,
			     .ref_n = 50};
	sh_write_model(dir, "h", 1, &h);
	snprintf(path, sizeof path, "%s/h/1/model.safetensors", dir);
	struct server *srv = calloc(1, sizeof *srv);
	struct mversion *mv = calloc(1, sizeof *mv);
	assert_non_null(srv);
	assert_non_null(mv);
	srv->log_level = 100;	/* silent */
	mv->srv = srv;
	snprintf(mv->name, sizeof mv->name, "h");
	snprintf(mv->vstr, sizeof mv->vstr, "1");
	mv->version = 1;
	assert_status(pno_model_load(&mv->model, path, 0, 0, 1), PNO_STATUS_OK);
	mv->P = mv->model.X * mv->model.Y;
	struct serve_config cfg;
	serve_config_defaults(&cfg);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(guard_open_close(mv, &cfg), live0))
			break;
		assert_null(mv->guard);
	}
	assert_non_null(mv->guard);
	assert_true(mv->guard->has_drift);
	/* the request path: observe allocates nothing */
	struct req r = {0};
	r.mv = mv;
	r.srv = srv;
	r.B = 1;
	r.x = ref_d.in;
	tu_alloc_reset(0);
	long n0 = tu_alloc_count();
	for (int i = 0; i < 120; i++)
		sv_drift_observe(&r);
	assert_int_equal(tu_alloc_count(), n0);
	sv_guard_free(mv);
	tu_alloc_uninstall();
	print_message("guard: %ld allocation points\n", k - 1);
	assert_true(k > 3);
	pno_model_free(&mv->model);
	pno_dataset_free(&ref_d);
	free(mv);
	free(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cadence_statistics),
		cmocka_unit_test(test_end_to_end),
		cmocka_unit_test(test_guard_alloc_failure),
	};
	curl_global_init(CURL_GLOBAL_ALL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
