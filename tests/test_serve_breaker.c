/* serve/breaker: a scripted failing call sequence on a fake clock (closed
 * below the minimum calls, opens exactly at the threshold with the oldest
 * outcome leaving the window, the remaining wait to the nanosecond,
 * exactly the configured probes, reopen on a failed probe, close on good
 * probes); slow calls; the half-open bound; stale permits; threads
 * acquiring and recording with the invariants checked; config
 * validation; allocation failure. */
#include "testutil.h"
#include "breaker.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC ((int64_t)1000000000)

static struct breaker_config cfg_basic(void)
{
	struct breaker_config c = breaker_config_default();
	c.window_size = 10;
	c.min_calls = 5;
	c.failure_rate = 0.5;
	c.slow_rate = 1.0;
	c.slow_call_ns = 1 * SEC;
	c.wait_open_ns = 10 * SEC;
	c.half_open_calls = 2;
	c.max_half_open_ns = 0;
	return c;
}

/* one permitted call finishing at t with its outcome */
static void call(struct breaker *b, int64_t t, int failed)
{
	int64_t w = -1;
	assert_int_equal(breaker_acquire(b, t, &w), BREAKER_PERMITTED);
	assert_true(w == 0);
	breaker_record(b, t, 1000, failed);
}

static void test_sequence(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = cfg_basic();
	struct breaker_stats st;
	int64_t t = 1000 * SEC, w;
	assert_status(breaker_init(&b, &c, t), PNO_STATUS_OK);

	/* below the minimum number of calls even 100% failures keep it closed */
	for (int i = 0; i < 4; i++)
		call(&b, t, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	breaker_free(&b);
	assert_status(breaker_init(&b, &c, t), PNO_STATUS_OK);

	/* 6 successes then failures: rates 1/7, 2/8, 3/9, 4/10 stay below
	 * 0.5; the 5th failure pushes the oldest success out: 5/10 = 0.5 */
	for (int i = 0; i < 6; i++)
		call(&b, t, 0);
	for (int k = 1; k <= 4; k++) {
		call(&b, t, 1);
		assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	}
	breaker_stats_get(&b, &st);
	assert_int_equal(st.window_calls, 10);
	assert_int_equal(st.window_failures, 4);
	int64_t t_open = t + 5;
	call(&b, t_open, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);

	/* open: rejected with the exact remaining wait */
	assert_int_equal(breaker_acquire(&b, t_open + 3 * SEC, &w), BREAKER_REJECTED);
	assert_true(w == 7 * SEC);
	assert_int_equal(breaker_acquire(&b, t_open + 10 * SEC - 1, &w),
			 BREAKER_REJECTED);
	assert_true(w == 1);
	/* outcomes arriving while open are dropped */
	breaker_record(&b, t_open + SEC, 10, 1);
	breaker_stats_get(&b, &st);
	assert_true(st.dropped == 1);

	/* after the wait exactly 2 probes, the third rejected with wait 0 */
	int64_t t1 = t_open + 10 * SEC;
	assert_int_equal(breaker_acquire(&b, t1, &w), BREAKER_PERMITTED);
	assert_int_equal(breaker_state_get(&b), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_acquire(&b, t1, &w), BREAKER_PERMITTED);
	for (int i = 0; i < 5; i++) {
		w = -1;
		assert_int_equal(breaker_acquire(&b, t1 + i * SEC, &w),
				 BREAKER_REJECTED);
		assert_true(w == 0);
	}
	/* one probe fails of two: rate 0.5 >= 0.5 -> open again, new wait */
	breaker_record(&b, t1 + SEC, 10, 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_HALF_OPEN);
	int64_t t2 = t1 + 2 * SEC;
	breaker_record(&b, t2, 10, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	assert_int_equal(breaker_acquire(&b, t2, &w), BREAKER_REJECTED);
	assert_true(w == 10 * SEC);

	/* two good probes close it with an empty window */
	int64_t t3 = t2 + 10 * SEC;
	assert_int_equal(breaker_acquire(&b, t3, &w), BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire(&b, t3, &w), BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire(&b, t3, &w), BREAKER_REJECTED);
	breaker_record(&b, t3, 10, 0);
	breaker_record(&b, t3, 10, 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	breaker_stats_get(&b, &st);
	assert_int_equal(st.window_calls, 0);
	assert_true(st.opened == 2);
	/* closed -> open -> half -> open -> half -> closed */
	assert_true(st.transitions == 5);
	/* and it really is closed: 4 failures (below min calls) pass */
	for (int i = 0; i < 4; i++)
		call(&b, t3 + SEC, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
	breaker_free(&b);
	breaker_free(&b);	/* idempotent on the zeroed struct */
}

static void test_slow_calls(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = cfg_basic();
	c.window_size = 5;
	c.min_calls = 5;
	c.failure_rate = 1.0;
	c.slow_rate = 0.6;
	int64_t t = 0, w;
	assert_status(breaker_init(&b, &c, t), PNO_STATUS_OK);
	/* exactly slow_call_ns is not slow ("above" the threshold) */
	const int64_t d[5] = {SEC, SEC + 1, 5 * SEC, 2 * SEC, 10};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(breaker_acquire(&b, t, &w), BREAKER_PERMITTED);
		breaker_record(&b, t, d[i], 0);
		assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	}
	assert_int_equal(breaker_acquire(&b, t, &w), BREAKER_PERMITTED);
	breaker_record(&b, t, d[4], 0);	/* 3 slow of 5 = 0.6 */
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	/* half-open: 2 probes, one slow: 0.5 < 0.6 -> closed */
	t += 10 * SEC;
	assert_int_equal(breaker_acquire(&b, t, &w), BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire(&b, t, &w), BREAKER_PERMITTED);
	breaker_record(&b, t, 3 * SEC, 0);
	breaker_record(&b, t, 10, 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	/* 4 fast successes and one slow failure: failure 0.2, slow 0.2 */
	for (int i = 0; i < 5; i++) {
		assert_int_equal(breaker_acquire(&b, t, &w), BREAKER_PERMITTED);
		breaker_record(&b, t, i == 4 ? 3 * SEC : 10, i == 4);
	}
	struct breaker_stats st;
	breaker_stats_get(&b, &st);
	assert_int_equal(st.state, BREAKER_CLOSED);
	assert_int_equal(st.window_failures, 1);
	assert_int_equal(st.window_slow, 1);
	breaker_free(&b);
}

/* A probe that never comes back cannot wedge the breaker half-open. */
static void test_half_open_bound(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = cfg_basic();
	c.min_calls = 1;
	c.max_half_open_ns = 5 * SEC;
	int64_t w;
	assert_status(breaker_init(&b, &c, 0), PNO_STATUS_OK);
	call(&b, 0, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	assert_int_equal(breaker_acquire(&b, 10 * SEC, &w), BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire(&b, 10 * SEC, &w), BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire(&b, 15 * SEC - 1, &w), BREAKER_REJECTED);
	assert_true(w == 0);
	assert_int_equal(breaker_acquire(&b, 15 * SEC, &w), BREAKER_REJECTED);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	assert_true(w == 10 * SEC);
	/* the late probe results are dropped while open */
	breaker_record(&b, 16 * SEC, 10, 0);
	breaker_record(&b, 16 * SEC, 10, 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	breaker_free(&b);
}

/* A call admitted while closed that ends during half-open is not a probe
 * when recorded with its permit. */
static void test_stale_permit(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = cfg_basic();
	c.min_calls = 1;
	c.half_open_calls = 1;
	struct breaker_permit slow_call, p;
	int64_t w;
	assert_status(breaker_init(&b, &c, 0), PNO_STATUS_OK);
	assert_int_equal(breaker_acquire_permit(&b, 0, &w, &slow_call),
			 BREAKER_PERMITTED);
	assert_int_equal(breaker_acquire_permit(&b, 0, &w, &p), BREAKER_PERMITTED);
	breaker_record_permit(&b, 0, &p, 10, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);
	assert_int_equal(breaker_acquire_permit(&b, 10 * SEC, &w, &p),
			 BREAKER_PERMITTED);
	/* the old call fails now: dropped, the probe is still outstanding */
	breaker_record_permit(&b, 10 * SEC, &slow_call, 20 * SEC, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_HALF_OPEN);
	breaker_record_permit(&b, 10 * SEC, &p, 10, 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_CLOSED);
	struct breaker_stats st;
	breaker_stats_get(&b, &st);
	assert_true(st.dropped == 1);
	breaker_free(&b);
}

static void test_config(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c;
#define CHECK(field, stmt)                                                    \
	do {                                                                  \
		c = breaker_config_default();                                 \
		stmt;                                                         \
		assert_status(breaker_init(&b, &c, 0), PNO_STATUS_INVALID);   \
		assert_err_has(field);                                        \
		breaker_free(&b);                                             \
	} while (0)
	CHECK("window_size", c.window_size = 0);
	CHECK("min_calls", c.min_calls = 0);
	CHECK("min_calls", c.min_calls = c.window_size + 1);
	CHECK("failure_rate", c.failure_rate = 0);
	CHECK("failure_rate", c.failure_rate = 1.01);
	CHECK("failure_rate", c.failure_rate = NAN);
	CHECK("slow_rate", c.slow_rate = -0.5);
	CHECK("slow_call_ns", c.slow_call_ns = 0);
	CHECK("wait_open_ns", c.wait_open_ns = -1);
	CHECK("half_open_calls", c.half_open_calls = 0);
	CHECK("max_half_open_ns", c.max_half_open_ns = -1);
#undef CHECK
	assert_status(breaker_init(NULL, &c, 0), PNO_STATUS_INVALID);
	c = breaker_config_default();
	assert_status(breaker_init(&b, &c, 0), PNO_STATUS_OK);
	breaker_free(&b);
}

/* ---- threads ---- */

#define NTHREADS 8

struct shared {
	struct breaker *b;
	_Atomic int64_t clock;
	_Atomic long attempts, permits, records;
	_Atomic int stop, violations;
	int iters;
	int record;
};

static void *hammer(void *arg)
{
	struct shared *s = arg;
	uint64_t seed = (uint64_t)atomic_fetch_add(&s->attempts, 0) + 77;
	for (int i = 0; i < s->iters; i++) {
		int64_t now = atomic_fetch_add(&s->clock, s->record ? 1000000 : 0);
		int64_t w;
		atomic_fetch_add(&s->attempts, 1);
		if (breaker_acquire(s->b, now, &w) == BREAKER_REJECTED) {
			if (w < 0)
				atomic_fetch_add(&s->violations, 1);
			continue;
		}
		atomic_fetch_add(&s->permits, 1);
		if (!s->record)
			continue;
		uint64_t r = pno_rng_u64(seed, (uint64_t)pthread_self(), (uint64_t)i);
		breaker_record(s->b, now, (int64_t)(r % (2 * SEC)), (r >> 32) % 10 < 4);
		atomic_fetch_add(&s->records, 1);
	}
	return NULL;
}

static void *watch(void *arg)
{
	struct shared *s = arg;
	const struct breaker_config *c = &s->b->cfg;
	while (!atomic_load(&s->stop)) {
		struct breaker_stats st;
		breaker_stats_get(s->b, &st);
		int bad = st.window_calls > c->window_size ||
			  st.window_failures > st.window_calls ||
			  st.window_slow > st.window_calls ||
			  st.probes_admitted > c->half_open_calls ||
			  st.probes_recorded > st.probes_admitted ||
			  (st.state != BREAKER_HALF_OPEN && st.probes_admitted) ||
			  (st.state != BREAKER_CLOSED && st.window_calls);
		if (bad)
			atomic_fetch_add(&s->violations, 1);
	}
	return NULL;
}

static void run_threads(struct shared *s)
{
	pthread_t t[NTHREADS], w;
	atomic_store(&s->stop, 0);
	assert_int_equal(pthread_create(&w, NULL, watch, s), 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, s), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&s->stop, 1);
	pthread_join(w, NULL);
}

static void test_threads(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = cfg_basic();
	c.half_open_calls = 3;
	/* phase 1 leaves its probes out: only the bound gets it going again */
	c.max_half_open_ns = 2 * SEC;
	assert_status(breaker_init(&b, &c, 0), PNO_STATUS_OK);
	for (int i = 0; i < 5; i++)
		call(&b, 0, 1);
	assert_int_equal(breaker_state_get(&b), BREAKER_OPEN);

	/* after the wait, 8 threads race for probes: exactly 3 get one */
	struct shared s = {.b = &b, .iters = 2000, .record = 0};
	atomic_store(&s.clock, 10 * SEC);
	run_threads(&s);
	assert_int_equal(atomic_load(&s.permits), 3);
	assert_int_equal(atomic_load(&s.violations), 0);
	assert_int_equal(breaker_state_get(&b), BREAKER_HALF_OPEN);

	/* mixed traffic with 40% failures and random durations, the clock
	 * moving 1 ms per call: the breaker cycles through its states */
	struct breaker_stats st0, st;
	breaker_stats_get(&b, &st0);
	struct shared m = {.b = &b, .iters = 20000, .record = 1};
	atomic_store(&m.clock, 10 * SEC);
	run_threads(&m);
	breaker_stats_get(&b, &st);
	assert_int_equal(atomic_load(&m.violations), 0);
	assert_true(st.permitted - st0.permitted == (uint64_t)atomic_load(&m.permits));
	assert_true((st.permitted + st.rejected) - (st0.permitted + st0.rejected) ==
		    (uint64_t)atomic_load(&m.attempts));
	assert_true(atomic_load(&m.records) == atomic_load(&m.permits));
	assert_true(st.opened > st0.opened + 1);
	printf("threads: %ld attempts, %ld permitted, %llu openings\n",
	       (long)atomic_load(&m.attempts), (long)atomic_load(&m.permits),
	       (unsigned long long)(st.opened - st0.opened));
	breaker_free(&b);
}

/* A rejection is O(1): report the measured time per rejected acquire. */
static void test_reject_fast(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = cfg_basic();
	c.min_calls = 1;
	assert_status(breaker_init(&b, &c, 0), PNO_STATUS_OK);
	call(&b, 0, 1);
	struct timespec t0, t1;
	int64_t w;
	long n = 1000000, rej = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		rej += breaker_acquire(&b, 1 + i, &w) == BREAKER_REJECTED;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n;
	printf("rejected acquire: %.1f ns per call\n", ns);
	assert_int_equal(rej, n);
	assert_true(ns < 1e6);	/* the requirement: well under 1 ms */
	breaker_free(&b);
}

static void test_alloc_fail(void **state)
{
	(void)state;
	struct breaker b;
	struct breaker_config c = breaker_config_default();
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (long k = 1;; k++) {
		tu_alloc_reset(k);
		enum pno_status s = breaker_init(&b, &c, 0);
		if (tu_alloc_step(s, live0))
			break;
	}
	breaker_free(&b);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequence),
		cmocka_unit_test(test_slow_calls),
		cmocka_unit_test(test_half_open_bound),
		cmocka_unit_test(test_stale_permit),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_reject_fast),
		cmocka_unit_test(test_alloc_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
