/* pno serve, automatic rollback end to end (the real server on a loopback
 * port). Error rate: eight clients hammer the default version of a model
 * whose newest version fails (non-finite output, as test_serve_secure
 * injects it); after two bad windows the previous version becomes the
 * default through a state swap. No request is lost (every client call
 * has an answer, the server counted exactly as many, no transport
 * error), every answer after the swap is 200 from the previous version,
 * the rollback happens once, is logged, metered and audited (the audit
 * log verifies), survives a SIGHUP reload, and an explicit load serves
 * the newest version again. Drift: a newest version whose training
 * reference the live inputs do not match is rolled back once its drift
 * level stays critical; the older version's matching reference stays ok. */
#include "serve_harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define XS 32

static char repo[1024], repo_d[1024], audit_dir[1024], audit_key[1100];
static char body[4096];

static int setup(void **state)
{
	(void)state;
	char cmd[4096];
	sh_fresh_dir("rb_repo", repo, sizeof repo);
	sh_fresh_dir("rb_repo_d", repo_d, sizeof repo_d);
	struct sh_model good = {.X = XS, .seed = 5};
	struct sh_model bad = {.X = XS, .huge = 1, .seed = 6};
	sh_write_model(repo, "m", 1, &good);
	sh_write_model(repo, "m", 2, &bad);
	/* drift: references of N(0, 1) points (version 1) and of N(3, 1)
	 * points (version 2); the traffic is N(0, 1) */
	enum { NREF = 200 };
	float *x = malloc(sizeof *x * NREF * XS);
	assert_non_null(x);
	pno_rng_normal(x, (size_t)NREF * XS, 11, 0, 0);
	struct sh_model d1 = {.X = XS, .seed = 7, .ref_x = x, .ref_n = NREF};
	sh_write_model(repo_d, "d", 1, &d1);
	for (int i = 0; i < NREF * XS; i++)
		x[i] += 3;
	struct sh_model d2 = {.X = XS, .seed = 8, .ref_x = x, .ref_n = NREF};
	sh_write_model(repo_d, "d", 2, &d2);
	free(x);
	float in[XS];
	for (int i = 0; i < XS; i++)
		in[i] = (float)sin(0.3 * i) + 0.5f;
	char *b = sh_body(in, XS, "\"num_samples\":2,\"seed\":1");
	snprintf(body, sizeof body, "%s", b);
	free(b);
	snprintf(audit_dir, sizeof audit_dir, "%s", tu_tmp_path("rb_audit"));
	snprintf(audit_key, sizeof audit_key, "%s.key", audit_dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' && %s audit keygen --out "
		 "'%s' >/dev/null", audit_dir, audit_key, PNO_BIN, audit_key);
	assert_int_equal(system(cmd), 0);
	curl_global_init(CURL_GLOBAL_ALL);
	return 0;
}

/* ---- the hammer ---- */

#define NCLI 8
#define MAXREQ 20000

struct rec {
	long code;
	char v[8];
	double t0;
};

struct client {
	const struct sh_srv *s;
	struct rec *rec;
	int n;
	pthread_t th;
};

static _Atomic int stop;

static void *client_main(void *arg)
{
	struct client *c = arg;
	while (!atomic_load(&stop) && c->n < MAXREQ) {
		struct sh_resp r;
		struct rec *e = &c->rec[c->n++];
		e->t0 = sh_now();
		sh_http(c->s, "POST", "/v2/models/m/infer", body, NULL, &r);
		e->code = r.code;
		e->v[0] = 0;
		if (r.code == 200)
			sh_version(r.body, e->v, sizeof e->v);
		sh_resp_free(&r);
	}
	return NULL;
}

/* the sum of every series of a family whose labels start with prefix */
static double metric_sum(const struct sh_srv *s, const char *prefix)
{
	struct sh_resp r;
	double v = 0;
	sh_http(s, "GET", "/metrics", NULL, NULL, &r);
	sh_expect(&r, 200);
	size_t n = strlen(prefix);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n'),
		    p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, n)) {
			const char *sp = strchr(p, ' ');
			v += strtod(sp + 1, NULL);
		}
	sh_resp_free(&r);
	return v;
}

static void expect_default(const struct sh_srv *s, const char *version,
			   long code)
{
	struct sh_resp r;
	char v[16];
	sh_http(s, "POST", "/v2/models/m/infer", body, NULL, &r);
	sh_expect(&r, code);
	if (code == 200) {
		sh_version(r.body, v, sizeof v);
		assert_string_equal(v, version);
	}
	sh_resp_free(&r);
}

static void test_rollback_under_load(void **state)
{
	(void)state;
	struct sh_srv s;
	struct client cl[NCLI];
	const char *ex[] = {"--threads", "8", "--max-queue-delay-us", "0",
			    "--rollback-error-rate", "0.5",
			    "--rollback-window", "10", "--rollback-windows",
			    "2", "--breaker-window", "10",
			    "--breaker-min-calls", "10", "--breaker-wait-ms",
			    "60000", "--audit-dir", audit_dir,
			    "--audit-key-file", audit_key, NULL};
	sh_start(&s, "rb_load", repo, ex);
	expect_default(&s, "2", 500);	/* the newest version is live */
	atomic_store(&stop, 0);
	for (int i = 0; i < NCLI; i++) {
		cl[i].s = &s;
		cl[i].n = 0;
		cl[i].rec = calloc(MAXREQ, sizeof *cl[i].rec);
		assert_non_null(cl[i].rec);
		assert_int_equal(pthread_create(&cl[i].th, NULL, client_main,
						&cl[i]), 0);
	}
	double t0 = sh_now(), t_roll = 0;
	while (sh_metric0(&s, "pno_rollbacks_total{model=\"m\"}") < 1) {
		if (sh_now() - t0 > 30)
			break;
		usleep(2000);
	}
	t_roll = sh_now();
	usleep(1000000);	/* a second of load on the new default */
	atomic_store(&stop, 1);
	for (int i = 0; i < NCLI; i++)
		pthread_join(cl[i].th, NULL);
	if (t_roll - t0 > 30)
		fail_msg("no rollback within 30 s");
	/* the first call (expect_default) was a 500 too */
	long total = 1, n200 = 0, n500 = 1, n503 = 0, after = 0;
	for (int i = 0; i < NCLI; i++)
		for (int k = 0; k < cl[i].n; k++) {
			const struct rec *e = &cl[i].rec[k];
			total++;
			if (e->code <= 0)
				fail_msg("a transport error (curl %ld)", -e->code);
			if (e->code == 200) {
				n200++;
				assert_string_equal(e->v, "1");
			} else if (e->code == 500) {
				n500++;
			} else if (e->code == 503) {
				n503++;
			} else {
				fail_msg("status %ld", e->code);
			}
			if (e->t0 > t_roll) {	/* sent after the swap */
				after++;
				if (e->code != 200)
					fail_msg("status %ld after the rollback",
						 e->code);
			}
		}
	/* no request lost: the server answered (and counted) every call */
	double counted = metric_sum(&s, "pno_requests_total{model=\"m\"");
	printf("rollback under load: %ld requests (%ld model failures, %ld "
	       "breaker refusals, %ld answered by version 1; %ld sent after "
	       "the swap), rollback %.3f s after the load began\n", total, n500,
	       n503, n200, after, t_roll - t0);
	assert_true(counted == (double)total);
	/* the breaker opened at its window (10), the rollback needed 20
	 * outcomes against version 2 */
	assert_true(n500 >= 10);
	assert_true(n500 + n503 >= 20);
	assert_true(after > 50);
	assert_true(sh_metric(&s, "pno_rollbacks_total{model=\"m\"}") == 1);
	assert_int_equal(sh_log_count(&s, "\"event\":\"rollback\"",
				      "\"from\":\"2\",\"to\":\"1\"", NULL), 1);
	for (int i = 0; i < NCLI; i++)
		free(cl[i].rec);
	/* version 2 is still served when named */
	struct sh_resp r;
	sh_http(&s, "POST", "/v2/models/m/versions/2/infer", body, NULL, &r);
	sh_expect(&r, 503);
	sh_resp_free(&r);
	/* a reload keeps the rollback */
	kill(s.pid, SIGHUP);
	assert_true(sh_wait_log(&s, "\"event\":\"reloaded\"", "SIGHUP", 10));
	expect_default(&s, "1", 200);
	/* an explicit load of the model serves its newest version again
	 * (whose breaker, kept across the reload, is still open) */
	sh_http(&s, "POST", "/v2/repository/models/m/load", "{}", NULL, &r);
	sh_expect(&r, 200);
	sh_resp_free(&r);
	expect_default(&s, "2", 503);
	sh_stop(&s);

	/* the audit log holds the rollback and verifies */
	char cmd[4096], out[1 << 16];
	snprintf(cmd, sizeof cmd, "%s audit show --log '%s' --key '%s' "
		 "2>/dev/null | grep '\"event\":\"rollback\"'", PNO_BIN,
		 audit_dir, audit_key);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t k = fread(out, 1, sizeof out - 1, p);
	out[k] = 0;
	pclose(p);
	if (!strstr(out, "default version 2 -> 1"))
		fail_msg("no rollback record in the audit log: %.500s", out);
	snprintf(cmd, sizeof cmd, "%s audit verify --log '%s' --key '%s' "
		 ">/dev/null 2>&1", PNO_BIN, audit_dir, audit_key);
	assert_int_equal(WEXITSTATUS(system(cmd)), 0);
}

static void post_d(const struct sh_srv *s, uint64_t seed, char *v, size_t vs)
{
	float x[XS];
	struct sh_resp r;
	pno_rng_normal(x, XS, 99, seed, 0);
	char *b = sh_body(x, XS, "\"num_samples\":1");
	sh_http(s, "POST", "/v2/models/d/infer", b, NULL, &r);
	sh_expect(&r, 200);
	sh_version(r.body, v, vs);
	sh_resp_free(&r);
	free(b);
}

static void test_rollback_on_drift(void **state)
{
	(void)state;
	struct sh_srv s;
	char v[16];
	const char *ex[] = {"--rollback-drift", "critical",
			    "--rollback-window", "10", "--rollback-windows",
			    "2", "--drift-window", "20", "--drift-every", "5",
			    NULL};
	sh_start(&s, "rb_drift", repo_d, ex);
	/* version 2's window fills at input 20 (critical from then on):
	 * windows ending at 20 and 30 are bad */
	int n = 0;
	for (; n < 30; n++) {
		post_d(&s, (uint64_t)n, v, sizeof v);
		assert_string_equal(v, "2");
	}
	double t0 = sh_now();
	while (sh_metric0(&s, "pno_rollbacks_total{model=\"d\"}") < 1) {
		if (sh_now() - t0 > 10)
			fail_msg("no rollback 10 s after two critical windows");
		usleep(2000);
	}
	assert_true(sh_metric(&s, "pno_drift_level{model=\"d\",version=\"2\"}")
		    == 2);
	double psi2 = sh_metric(&s, "pno_drift_psi{model=\"d\",version=\"2\"}");
	assert_true(psi2 > 0.25);
	for (int k = 0; k < 25; k++, n++) {
		post_d(&s, (uint64_t)n, v, sizeof v);
		assert_string_equal(v, "1");
	}
	/* the older version's reference matches the traffic */
	double psi1 = sh_metric(&s, "pno_drift_psi{model=\"d\",version=\"1\"}");
	assert_true(sh_metric(&s, "pno_drift_level{model=\"d\",version=\"1\"}")
		    == 0);
	assert_true(psi1 < 0.1);
	printf("drift rollback: PSI of version 2 %.3f (critical), of version "
	       "1 %.4f after 25 inputs\n", psi2, psi1);
	assert_int_equal(sh_log_count(&s, "\"event\":\"rollback\"",
				      "drift critical", NULL), 1);
	assert_int_equal(sh_log_count(&s, "\"event\":\"drift_level\"",
				      "\"to\":\"critical\"", NULL), 1);
	sh_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rollback_under_load),
		cmocka_unit_test(test_rollback_on_drift),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
