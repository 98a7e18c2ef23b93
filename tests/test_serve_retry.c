/* serve/retry and serve/failure: full-jitter bounds and uniformity over
 * many draws, the cap and no overflow, the budget's exhaustion and
 * recovery as the window slides, Retry-After honoured and parsed, 4xx
 * never retried but 429, the retry loop on a fake clock, and the failure
 * table agreeing with the retry classifier. */
#include "testutil.h"
#include "failure.h"
#include "retry.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

static struct retry_policy pol(void)
{
	struct retry_policy p = {.max_attempts = 10, .base_ns = 100 * MS,
				 .cap_ns = 2 * SEC, .max_retry_after_ns = 60 * SEC};
	return p;
}

/* Each attempt's sleep is uniform on [0, min(cap, base 2^a)]: every draw
 * in range, the mean within 5 standard errors of bound/2 (sd of the mean
 * bound/sqrt(12 n)), the extremes within 0.1% of the ends (a uniform's
 * n = 20000 draws miss the last 0.1% with probability e^-20). */
static void test_jitter_bounds(void **state)
{
	(void)state;
	struct retry_policy p = pol();
	struct retry_rng rng = {.seed = 42, .stream = 7};
	const int n = 20000;
	for (int a = 0; a < 8; a++) {
		double bound = fmin(2e9, 1e8 * ldexp(1, a));
		double sum = 0, lo = INFINITY, hi = -INFINITY;
		for (int i = 0; i < n; i++) {
			int64_t d = retry_backoff_ns(&p, a, retry_rng_next(&rng));
			assert_true(d >= 0 && (double)d <= bound);
			sum += (double)d;
			lo = fmin(lo, (double)d);
			hi = fmax(hi, (double)d);
		}
		double mean = sum / n, se = bound / sqrt(12.0 * n);
		if (fabs(mean - bound / 2) > 5 * se)
			fail_msg("attempt %d: mean %.4g, want %.4g +- %.3g", a,
				 mean, bound / 2, 5 * se);
		assert_true(lo < 1e-3 * bound);
		assert_true(hi > (1 - 1e-3) * bound);
	}
	/* the extremes of r hit the ends exactly */
	assert_true(retry_backoff_ns(&p, 0, 0) == 0);
	assert_true(retry_backoff_ns(&p, 0, UINT64_MAX) == 100 * MS);
	assert_true(retry_backoff_ns(&p, 3, UINT64_MAX) == 800 * MS);
	/* the cap from attempt 5 on (100 ms * 32 > 2 s), no overflow */
	for (int a = 5; a < 200; a += 7)
		assert_true(retry_backoff_ns(&p, a, UINT64_MAX) == 2 * SEC);
	assert_true(retry_backoff_ns(&p, -3, UINT64_MAX) == 100 * MS);
	struct retry_policy big = {.max_attempts = 5, .base_ns = 1,
				   .cap_ns = INT64_MAX - 1};
	assert_true(retry_backoff_ns(&big, 62, UINT64_MAX) == INT64_MAX - 1);
	assert_true(retry_backoff_ns(&big, 61, UINT64_MAX) == (int64_t)1 << 61);
	/* same seed, same draws */
	struct retry_rng r1 = {.seed = 9}, r2 = {.seed = 9};
	for (int i = 0; i < 10; i++)
		assert_true(retry_rng_next(&r1) == retry_rng_next(&r2));
}

static void test_policy_check(void **state)
{
	(void)state;
	struct retry_policy p = retry_policy_default();
	assert_status(retry_policy_check(&p), PNO_STATUS_OK);
	p.max_attempts = 0;
	assert_status(retry_policy_check(&p), PNO_STATUS_INVALID);
	assert_err_has("max_attempts");
	p = retry_policy_default();
	p.cap_ns = p.base_ns - 1;
	assert_status(retry_policy_check(&p), PNO_STATUS_INVALID);
	assert_err_has("cap_ns");
}

static void test_classify(void **state)
{
	(void)state;
	for (int s = 400; s < 500; s++)
		assert_int_equal(retry_retryable(s, 0), s == 429);
	for (int s = 500; s < 600; s++)
		assert_int_equal(retry_retryable(s, 0),
				 s == 502 || s == 503 || s == 504);
	for (int s = 100; s < 400; s++)
		assert_false(retry_retryable(s, 0));
	assert_true(retry_retryable(0, 1));
	assert_true(retry_retryable(400, 1));	/* no answer was read */

	/* the failure table: status, label, and retryable agree with the
	 * classifier the client uses */
	const struct { int c, status, retry; const char *label; } want[] = {
		{FAILURE_INVALID_INPUT, 400, 0, "invalid_input"},
		{FAILURE_UNAUTHENTICATED, 401, 0, "unauthenticated"},
		{FAILURE_FORBIDDEN, 403, 0, "forbidden"},
		{FAILURE_NOT_FOUND, 404, 0, "not_found"},
		{FAILURE_RATE_LIMITED, 429, 1, "rate_limited"},
		{FAILURE_OVERLOADED, 503, 1, "overloaded"},
		{FAILURE_DEADLINE_EXCEEDED, 504, 1, "deadline_exceeded"},
		{FAILURE_MODEL_FAILURE, 500, 0, "model_failure"},
		{FAILURE_INTERNAL, 500, 0, "internal"},
	};
	assert_int_equal(sizeof want / sizeof want[0], FAILURE_COUNT);
	for (int i = 0; i < FAILURE_COUNT; i++) {
		enum failure_class c = (enum failure_class)want[i].c;
		assert_int_equal(failure_http_status(c), want[i].status);
		assert_int_equal(failure_retryable(c), want[i].retry);
		assert_int_equal(failure_retryable(c),
				 retry_retryable(failure_http_status(c), 0));
		assert_string_equal(failure_label(c), want[i].label);
		assert_int_equal(failure_from_label(want[i].label), (int)c);
		assert_int_equal(failure_counts_for_breaker(c),
				 c == FAILURE_MODEL_FAILURE);
	}
	assert_int_equal(failure_from_label("nope"), -1);
	assert_int_equal(failure_from_label(NULL), -1);
	assert_string_equal(failure_label((enum failure_class)99), "internal");
	assert_int_equal(failure_from_status(PNO_STATUS_SHAPE), FAILURE_INVALID_INPUT);
	assert_int_equal(failure_from_status(PNO_STATUS_NOTFOUND), FAILURE_NOT_FOUND);
	assert_int_equal(failure_from_status(PNO_STATUS_NONFINITE),
			 FAILURE_MODEL_FAILURE);
	assert_int_equal(failure_from_status(PNO_STATUS_NOMEM), FAILURE_OVERLOADED);
	assert_int_equal(failure_from_status(PNO_STATUS_CANCELLED),
			 FAILURE_DEADLINE_EXCEEDED);
	assert_int_equal(failure_from_status(PNO_STATUS_IO), FAILURE_INTERNAL);
}

/* ratio 0.2, no reserve: 100 requests buy exactly 20 retries; when the
 * window slides past them they are forgotten, and new requests buy new
 * retries. Then a reserve of 1/s alone allows ttl_s = 10 retries. */
static void test_budget(void **state)
{
	(void)state;
	struct retry_budget b;
	struct retry_budget_config c = {.ttl_ns = 10 * SEC, .ratio = 0.2,
					.min_per_sec = 0};
	int64_t t = 100 * SEC, req, ret;
	assert_status(retry_budget_init(&b, &c, t), PNO_STATUS_OK);
	assert_false(retry_budget_withdraw(&b, t));	/* nothing deposited */
	for (int i = 0; i < 100; i++)
		retry_budget_deposit(&b, t);
	int ok = 0;
	for (int i = 0; i < 50; i++)
		ok += retry_budget_withdraw(&b, t + i * MS);
	assert_int_equal(ok, 20);
	retry_budget_counts(&b, t, &req, &ret);
	assert_true(req == 100 && ret == 20);
	assert_true(b.refused == 31);
	/* 9.9 s later the window still holds them: still exhausted */
	assert_false(retry_budget_withdraw(&b, t + 9 * SEC + 900 * MS));
	/* a full window later they have aged out; no credit left either */
	t += 11 * SEC;
	retry_budget_counts(&b, t, &req, &ret);
	assert_true(req == 0 && ret == 0);
	assert_false(retry_budget_withdraw(&b, t));
	/* recovery: 10 new requests, 2 retries */
	for (int i = 0; i < 10; i++)
		retry_budget_deposit(&b, t);
	assert_true(retry_budget_withdraw(&b, t));
	assert_true(retry_budget_withdraw(&b, t));
	assert_false(retry_budget_withdraw(&b, t));
	retry_budget_free(&b);

	c.ratio = 0;
	c.min_per_sec = 1;
	assert_status(retry_budget_init(&b, &c, 0), PNO_STATUS_OK);
	ok = 0;
	for (int i = 0; i < 30; i++)
		ok += retry_budget_withdraw(&b, 0);
	assert_int_equal(ok, 10);
	retry_budget_free(&b);

	c.ttl_ns = 5;
	assert_status(retry_budget_init(&b, &c, 0), PNO_STATUS_INVALID);
	assert_err_has("ttl_ns");
	c = retry_budget_config_default();
	c.ratio = -1;
	assert_status(retry_budget_init(&b, &c, 0), PNO_STATUS_INVALID);
	assert_err_has("ratio");
	retry_budget_free(&b);
}

static void test_retry_after(void **state)
{
	(void)state;
	int64_t ns;
	assert_status(retry_after_parse("120", 0, &ns), PNO_STATUS_OK);
	assert_true(ns == 120 * SEC);
	assert_status(retry_after_parse("0", 0, &ns), PNO_STATUS_OK);
	assert_true(ns == 0);
	/* 784111777 = Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example) */
	assert_status(retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT",
					784111777 - 30, &ns), PNO_STATUS_OK);
	assert_true(ns == 30 * SEC);
	assert_status(retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT",
					784111777 + 5, &ns), PNO_STATUS_OK);
	assert_true(ns == 0);
	assert_status(retry_after_parse("Thu, 01 Jan 2030 00:00:00 GMT",
					1893456000 - 2, &ns), PNO_STATUS_OK);
	assert_true(ns == 2 * SEC);
	const char *bad[] = {"", "-1", "1.5", " 5", "5 ", "99999999999",
			     "Sun, 06 Nov 1994 08:49:37 UTC",
			     "Sun, 06 Foo 1994 08:49:37 GMT",
			     "Sun, 32 Nov 1994 08:49:37 GMT",
			     "Sunday, 06-Nov-94 08:49:37 GMT"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_status(retry_after_parse(bad[i], 0, &ns), PNO_STATUS_INVALID);
		assert_err_has("Retry-After");
	}

	/* a decision honours it: the delay is at least Retry-After even when
	 * the jittered backoff is shorter, and the backoff when longer */
	struct retry_policy p = pol();
	struct retry_rng rng = {.seed = 1};
	struct retry_outcome o = {.http_status = 503, .retry_after_ns = 5 * SEC};
	int64_t d;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 0, 0, &d),
				 RETRY_AGAIN);
		assert_true(d == 5 * SEC);	/* backoff <= 100 ms */
	}
	o.retry_after_ns = 1;
	int longer = 0;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(retry_decide(&p, NULL, &rng, 4, &o, 0, 0, &d),
				 RETRY_AGAIN);
		assert_true(d >= 1 && d <= 1600 * MS);
		longer += d > 1;
	}
	assert_true(longer >= 99);
	/* beyond max_retry_after: give up rather than wait a minute+ */
	o.retry_after_ns = 61 * SEC;
	assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 0, 0, &d),
			 RETRY_DEADLINE);
	/* a Retry-After that would pass the deadline */
	o.retry_after_ns = 5 * SEC;
	assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 10 * SEC,
				      14 * SEC, &d), RETRY_DEADLINE);
	assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 10 * SEC,
				      16 * SEC, &d), RETRY_AGAIN);
}

static void test_decide(void **state)
{
	(void)state;
	struct retry_policy p = pol();
	p.max_attempts = 3;
	struct retry_rng rng = {.seed = 2};
	struct retry_outcome o = {.retry_after_ns = -1};
	int64_t d;
	for (int s = 400; s < 500; s++) {
		o.http_status = s;
		assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 0, 0, &d),
				 s == 429 ? RETRY_AGAIN : RETRY_NOT_RETRYABLE);
	}
	o.http_status = 500;
	assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 0, 0, &d),
			 RETRY_NOT_RETRYABLE);
	o.http_status = 200;
	assert_int_equal(retry_decide(&p, NULL, &rng, 0, &o, 0, 0, &d),
			 RETRY_SUCCEEDED);
	o.http_status = 0;
	o.transport_error = 1;
	assert_int_equal(retry_decide(&p, NULL, &rng, 1, &o, 0, 0, &d), RETRY_AGAIN);
	assert_int_equal(retry_decide(&p, NULL, &rng, 2, &o, 0, 0, &d),
			 RETRY_ATTEMPTS);
	/* the budget is charged only for an actual retry */
	struct retry_budget b;
	struct retry_budget_config bc = {.ttl_ns = 10 * SEC, .ratio = 0.5};
	assert_status(retry_budget_init(&b, &bc, 0), PNO_STATUS_OK);
	retry_budget_deposit(&b, 0);
	retry_budget_deposit(&b, 0);
	o.http_status = 404;
	o.transport_error = 0;
	assert_int_equal(retry_decide(&p, &b, &rng, 0, &o, 0, 0, &d),
			 RETRY_NOT_RETRYABLE);
	o.http_status = 503;
	assert_int_equal(retry_decide(&p, &b, &rng, 0, &o, 0, 0, &d), RETRY_AGAIN);
	assert_int_equal(retry_decide(&p, &b, &rng, 0, &o, 0, 0, &d), RETRY_BUDGET);
	assert_true(d == 0);
	assert_string_equal(retry_verdict_str(RETRY_BUDGET), "retry budget exhausted");
	retry_budget_free(&b);
}

/* ---- the loop on a fake clock ---- */

struct fake {
	int64_t now;
	int64_t slept[16];
	int nsleep;
	const int *script;	/* statuses; -1 transport error */
	int nscript, calls;
};

static int64_t fake_now(void *ud) { return ((struct fake *)ud)->now; }

static void fake_sleep(void *ud, int64_t ns)
{
	struct fake *f = ud;
	f->slept[f->nsleep++] = ns;
	f->now += ns;
}

static void fake_call(void *ud, int attempt, struct retry_outcome *o)
{
	struct fake *f = ud;
	assert_int_equal(attempt, f->calls);
	int s = f->script[f->calls < f->nscript ? f->calls : f->nscript - 1];
	f->calls++;
	f->now += 10 * MS;
	if (s < 0)
		o->transport_error = 1;
	else
		o->http_status = s;
	if (s == 429)
		o->retry_after_ns = 3 * SEC;
}

static void test_run(void **state)
{
	(void)state;
	struct retry_policy p = pol();
	p.max_attempts = 5;
	struct retry_rng rng = {.seed = 3};
	struct retry_env env = {fake_now, fake_sleep, NULL};
	struct retry_outcome last;
	int n;

	const int s1[] = {503, -1, 429, 200};
	struct fake f = {.now = SEC, .script = s1, .nscript = 4};
	env.ud = &f;
	assert_int_equal(retry_run(&p, NULL, &rng, &env, 0, fake_call, &f, &n,
				   &last), RETRY_SUCCEEDED);
	assert_int_equal(n, 4);
	assert_int_equal(last.http_status, 200);
	assert_int_equal(f.nsleep, 3);
	assert_true(f.slept[0] <= 100 * MS);
	assert_true(f.slept[1] <= 200 * MS);
	assert_true(f.slept[2] == 3 * SEC);	/* 429's Retry-After */

	const int s2[] = {503};
	struct fake g = {.script = s2, .nscript = 1};
	env.ud = &g;
	assert_int_equal(retry_run(&p, NULL, &rng, &env, 0, fake_call, &g, &n,
				   NULL), RETRY_ATTEMPTS);
	assert_int_equal(n, 5);
	assert_int_equal(g.nsleep, 4);

	const int s3[] = {503, 400};
	struct fake h = {.script = s3, .nscript = 2};
	env.ud = &h;
	assert_int_equal(retry_run(&p, NULL, &rng, &env, 0, fake_call, &h, &n,
				   &last), RETRY_NOT_RETRYABLE);
	assert_int_equal(n, 2);
	assert_int_equal(last.http_status, 400);

	/* with a budget: one request buys no retry without a reserve */
	struct retry_budget b;
	struct retry_budget_config bc = {.ttl_ns = 10 * SEC, .ratio = 0.5};
	assert_status(retry_budget_init(&b, &bc, 0), PNO_STATUS_OK);
	struct fake k = {.script = s2, .nscript = 1};
	env.ud = &k;
	assert_int_equal(retry_run(&p, &b, &rng, &env, 0, fake_call, &k, &n,
				   NULL), RETRY_BUDGET);
	assert_int_equal(n, 1);
	/* the second request's deposit makes 2 * 0.5 = 1 retry */
	struct fake k2 = {.script = s2, .nscript = 1};
	env.ud = &k2;
	assert_int_equal(retry_run(&p, &b, &rng, &env, 0, fake_call, &k2, &n,
				   NULL), RETRY_BUDGET);
	assert_int_equal(n, 2);
	retry_budget_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jitter_bounds),
		cmocka_unit_test(test_policy_check),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
