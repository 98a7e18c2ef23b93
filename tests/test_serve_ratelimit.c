/* serve/ratelimit: GCRA on a fake clock against an independent token
 * bucket (exact integer arithmetic), the issue's scenario (rate 10/s,
 * burst 5, 100 requests), Retry-After values, independence of clients,
 * the LRU bound, threads, allocation failures. */
#include "testutil.h"
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000LL
#define NS 1000000000LL

static _Atomic int64_t fake_ns;
static int64_t fake_clock(void *ud)
{
	(void)ud;
	return atomic_load(&fake_ns);
}

static struct ratelimit *limiter(double rate, int burst, int max_keys)
{
	struct ratelimit_opts o;
	ratelimit_opts_default(&o);
	o.rate = rate;
	o.burst = burst;
	o.max_keys = max_keys;
	o.clock = fake_clock;
	struct ratelimit *rl = NULL;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_OK);
	return rl;
}

static int at(struct ratelimit *rl, int64_t t, const char *id, int *ra)
{
	atomic_store(&fake_ns, t);
	return ratelimit_check(rl, "key", id, ra);
}

/* The reference: a token bucket of capacity b tokens refilled at r per
 * second, a request costing one token, which admits the same requests as
 * GCRA with tau = (b - 1) T. Kept in units of 1/T of a token (one token =
 * T ns of refill) so every step is exact integer arithmetic. */
struct bucket {
	int64_t T, cap, tokens, last;
	int fresh;
};

static int bucket_take(struct bucket *k, int64_t t, int *ra)
{
	if (k->fresh) {
		k->tokens = k->cap;
		k->fresh = 0;
	} else {
		k->tokens += t - k->last;
		if (k->tokens > k->cap)
			k->tokens = k->cap;
	}
	k->last = t;
	if (k->tokens >= k->T) {
		k->tokens -= k->T;
		return 1;
	}
	int64_t wait = k->T - k->tokens;	/* ns until one token */
	*ra = (int)((wait + NS - 1) / NS);
	if (*ra < 1)
		*ra = 1;
	return 0;
}

/* The issue: rate 10/s, burst 5, 100 requests in 1 s from one key ->
 * 6 +- 1 admitted, the rest refused with Retry-After >= 1, a second key
 * unaffected. Three readings of "100 requests in 1 s". */
static void test_issue_scenario(void **state)
{
	(void)state;
	int ra;
	/* (a) spread evenly over the second, t = k * 10 ms: the first 5 at
	 * 0..40 ms (the burst), then one per emission interval at 100, 200,
	 * ..., 900 ms: 14. A limiter of 10/s must admit about 10 in any
	 * second, so 6 +- 1 cannot be meant for this reading. */
	struct ratelimit *rl = limiter(10, 5, 1024);
	int got = 0, ra_min = 1 << 30;
	char times[256] = "";
	for (int k = 0; k < 100; k++) {
		ra = 0;
		if (at(rl, k * 10 * MS, "alice", &ra)) {
			got++;
			size_t o = strlen(times);
			snprintf(times + o, sizeof times - o, "%s%d", o ? "," : "",
				 k * 10);
		} else if (ra < ra_min) {
			ra_min = ra;
		}
	}
	print_message("evenly over 1 s: %d admitted at ms %s\n", got, times);
	assert_int_equal(got, 14);
	assert_string_equal(times, "0,10,20,30,40,100,200,300,400,500,600,700,"
			    "800,900");
	assert_int_equal(ra_min, 1);
	/* a second key at the same instants: its own 14, then its own burst */
	atomic_store(&fake_ns, 990 * MS);
	for (int i = 0; i < 5; i++)
		assert_true(ratelimit_check(rl, "key", "bob", &ra));
	assert_false(ratelimit_check(rl, "key", "bob", &ra));
	ratelimit_free(rl);

	/* (b) all 100 at once (a client firing without waiting): exactly the
	 * burst, 5, within 6 +- 1; each refusal says retry in 1 s (the next
	 * admission is 100 ms away). */
	rl = limiter(10, 5, 1024);
	got = 0;
	for (int k = 0; k < 100; k++) {
		ra = 0;
		if (at(rl, 0, "alice", &ra))
			got++;
		else
			assert_int_equal(ra, 1);
	}
	print_message("all at once: %d admitted\n", got);
	assert_int_equal(got, 5);
	/* the other key is untouched: its full burst at the same instant */
	for (int i = 0; i < 5; i++)
		assert_true(at(rl, 0, "bob", &ra));
	assert_false(at(rl, 0, "bob", &ra));
	ratelimit_free(rl);

	/* (c) 100 requests spread evenly over the first 100 ms, ends
	 * included (t_k = k * 100 ms / 99): the burst at 0..4 ms and one more
	 * at 100 ms: 6, the issue's figure. */
	rl = limiter(10, 5, 1024);
	got = 0;
	for (int k = 0; k < 100; k++)
		got += at(rl, k * 100 * MS / 99, "alice", &ra);
	print_message("over 100 ms: %d admitted\n", got);
	assert_int_equal(got, 6);
	ratelimit_free(rl);
}

/* Exact Retry-After values: wait = TAT - tau - t rounded up to seconds. */
static void test_retry_after(void **state)
{
	(void)state;
	int ra;
	/* rate 0.1/s (T = 10 s), burst 1 */
	struct ratelimit *rl = limiter(0.1, 1, 16);
	assert_true(at(rl, 0, "a", &ra));
	assert_false(at(rl, 0, "a", &ra));
	assert_int_equal(ra, 10);
	assert_false(at(rl, 2500 * MS, "a", &ra));
	assert_int_equal(ra, 8);	/* 7.5 s */
	assert_false(at(rl, 9 * NS, "a", &ra));
	assert_int_equal(ra, 1);	/* exactly 1 s */
	assert_false(at(rl, 10 * NS - 1, "a", &ra));
	assert_int_equal(ra, 1);	/* 1 ns, rounded up */
	assert_true(at(rl, 10 * NS, "a", &ra));
	/* denials do not push the next admission back */
	assert_true(at(rl, 20 * NS, "a", &ra));
	ratelimit_free(rl);

	/* rate 1/s, burst 3: after the burst at 0, wait 1 s; the burst comes
	 * back after (b - 1) T + T = 3 s idle */
	rl = limiter(1, 3, 16);
	for (int i = 0; i < 3; i++)
		assert_true(at(rl, 0, "a", &ra));
	assert_false(at(rl, 0, "a", &ra));
	assert_int_equal(ra, 1);
	assert_false(at(rl, 999 * MS, "a", &ra));
	assert_int_equal(ra, 1);
	assert_true(at(rl, 1 * NS, "a", &ra));
	for (int i = 0; i < 3; i++)
		assert_true(at(rl, 4 * NS, "a", &ra));
	assert_false(at(rl, 4 * NS, "a", &ra));
	ratelimit_free(rl);

	/* a long wait: rate 1/min, burst 2: after 2 at t=0, 60 s */
	rl = limiter(1.0 / 60, 2, 16);
	assert_true(at(rl, 0, "a", &ra));
	assert_true(at(rl, 0, "a", &ra));
	assert_false(at(rl, 0, "a", &ra));
	assert_int_equal(ra, 60);
	assert_false(at(rl, 59500 * MS, "a", &ra));
	assert_int_equal(ra, 1);
	ratelimit_free(rl);
}

/* Decision by decision and Retry-After by Retry-After, GCRA agrees with
 * the token bucket on random arrivals (gaps drawn from Philox, from
 * back-to-back to 3.6 emission intervals over the 5 clients), for several rates and
 * bursts, and over several clients interleaved. */
static void test_against_bucket(void **state)
{
	(void)state;
	static const struct {
		double rate;
		int burst;
	} cfg[] = {{10, 5}, {10, 1}, {1000, 50}, {7, 3}, {0.5, 2}, {250000, 100}};
	enum { NC = 5, N = 20000 };
	for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
		struct ratelimit *rl = limiter(cfg[c].rate, cfg[c].burst, 64);
		int64_t T = llround(1e9 / cfg[c].rate);
		struct bucket b[NC];
		for (int i = 0; i < NC; i++)
			b[i] = (struct bucket){.T = T, .cap = cfg[c].burst * T,
					       .fresh = 1};
		float u[2 * N];
		pno_rng_uniform(u, 2 * N, 42, c, 0);
		int64_t t = 5 * NS;
		int admitted = 0, denied = 0;
		for (int n = 0; n < N; n++) {
			/* gap: 0 half the time, else uniform up to 3.6 T / NC:
			 * each client asks at 1/0.9 of the rate, in bursts */
			double g = u[2 * n] < 0.5f ? 0 : (u[2 * n] - 0.5) * 2;
			int64_t gap = (int64_t)(g * 3.6 * (double)T / NC);
			t += gap;
			int who = (int)(u[2 * n + 1] * NC);
			char id[8];
			snprintf(id, sizeof id, "c%d", who);
			int ra = -1, rb = -2;
			int got = at(rl, t, id, &ra);
			int want = bucket_take(&b[who], t, &rb);
			if (got != want)
				fail_msg("rate %g burst %d request %d (client %d, "
					 "t %lld ns): gcra %d, bucket %d",
					 cfg[c].rate, cfg[c].burst, n, who,
					 (long long)t, got, want);
			if (!got && ra != rb)
				fail_msg("request %d: Retry-After %d, bucket %d",
					 n, ra, rb);
			admitted += got;
			denied += !got;
		}
		print_message("rate %g/s burst %d: %d admitted, %d denied, all "
			      "as the token bucket\n", cfg[c].rate, cfg[c].burst,
			      admitted, denied);
		assert_true(admitted > 100 && denied > 100);	/* both exercised */
		ratelimit_free(rl);
	}
}

/* Clients are independent: a key and an address, a key and an address
 * with the same text, a flood on one never touches another. */
static void test_independent(void **state)
{
	(void)state;
	struct ratelimit *rl = limiter(10, 5, 1024);
	int ra;
	atomic_store(&fake_ns, 0);
	for (int i = 0; i < 1000; i++)
		ratelimit_check(rl, "key", "mallory", &ra);
	for (int i = 0; i < 5; i++) {
		assert_true(ratelimit_check(rl, "key", "alice", &ra));
		assert_true(ratelimit_check(rl, "addr", "mallory", &ra));
		assert_true(ratelimit_check(rl, "addr", "10.0.0.7", &ra));
		/* the kind/id boundary is not ambiguous */
		assert_true(ratelimit_check(rl, "ke", "ymallory", &ra));
	}
	assert_false(ratelimit_check(rl, "key", "alice", &ra));
	assert_false(ratelimit_check(rl, "addr", "mallory", &ra));
	assert_false(ratelimit_check(rl, "key", "mallory", &ra));
	assert_int_equal(ratelimit_count(rl), 5);
	/* NULLs are refused, not crashed on */
	assert_false(ratelimit_check(rl, NULL, "x", &ra));
	assert_int_equal(ra, 1);
	assert_false(ratelimit_check(NULL, "key", "x", &ra));
	ratelimit_free(rl);
}

/* The table holds at most max_keys clients; the least recently seen one
 * is evicted and, coming back, starts with a full burst. */
static void test_lru(void **state)
{
	(void)state;
	struct ratelimit *rl = limiter(1, 2, 4);
	int ra;
	char id[16];
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof id, "c%d", i);
		assert_true(at(rl, 0, id, &ra));
		assert_true(at(rl, 0, id, &ra));
		assert_false(at(rl, 0, id, &ra));
	}
	assert_int_equal(ratelimit_count(rl), 4);
	assert_false(at(rl, 100 * MS, "c0", &ra));	/* c0 seen last: c1 LRU */
	assert_true(at(rl, 100 * MS, "c4", &ra));	/* evicts c1 */
	assert_int_equal(ratelimit_count(rl), 4);
	assert_true(ratelimit_evictions(rl) == 1);
	assert_false(at(rl, 100 * MS, "c0", &ra));	/* kept its state */
	assert_false(at(rl, 100 * MS, "c2", &ra));	/* kept: evicts nothing */
	assert_false(at(rl, 100 * MS, "c3", &ra));
	assert_true(ratelimit_evictions(rl) == 1);
	/* c1 comes back with its whole burst (evicting c4, now the oldest) */
	assert_true(at(rl, 100 * MS, "c1", &ra));
	assert_true(at(rl, 100 * MS, "c1", &ra));
	assert_false(at(rl, 100 * MS, "c1", &ra));
	assert_true(ratelimit_evictions(rl) == 2);
	assert_true(at(rl, 100 * MS, "c4", &ra));	/* c4 was evicted */
	ratelimit_free(rl);

	/* a sharded table: 10000 clients into room for 4096 */
	rl = limiter(1, 2, 4096);
	for (int i = 0; i < 10000; i++) {
		snprintf(id, sizeof id, "k%d", i);
		assert_true(at(rl, 0, id, &ra));
	}
	print_message("sharded table: %d kept, %llu evicted\n",
		      ratelimit_count(rl),
		      (unsigned long long)ratelimit_evictions(rl));
	assert_int_equal(ratelimit_count(rl), 4096);
	assert_true(ratelimit_evictions(rl) == 10000 - 4096);
	/* the most recent clients are still tracked (a shard evicts its
	 * oldest, and the last 100 are the newest of every shard) */
	for (int i = 9900; i < 10000; i++) {
		snprintf(id, sizeof id, "k%d", i);
		assert_true(at(rl, 0, id, &ra));
		assert_false(at(rl, 0, id, &ra));
	}
	ratelimit_free(rl);
}

static void test_options(void **state)
{
	(void)state;
	struct ratelimit_opts o;
	struct ratelimit *rl = (struct ratelimit *)1;
	ratelimit_opts_default(&o);
	assert_true(o.rate == 10 && o.burst == 20 && o.max_keys == 65536);
	o.rate = 0;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_INVALID);
	assert_err_has("rate");
	assert_null(rl);
	o.rate = -1;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_INVALID);
	ratelimit_opts_default(&o);
	o.burst = 0;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_INVALID);
	assert_err_has("burst 0");
	ratelimit_opts_default(&o);
	o.max_keys = 0;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_INVALID);
	assert_err_has("max_keys");
	ratelimit_opts_default(&o);
	o.rate = 1e-9;
	o.burst = 1000000;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_INVALID);
	assert_err_has("30 years");
	ratelimit_opts_default(&o);
	o.rate = NAN;
	assert_status(ratelimit_new(&rl, &o), PNO_STATUS_INVALID);
}

struct hammer {
	struct ratelimit *rl;
	int tid, n, keys, ok, no;
	unsigned char pad[64];
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;
	char id[32];
	int ra;
	for (int i = 0; i < h->n; i++) {
		if (h->keys)	/* own clients */
			snprintf(id, sizeof id, "t%d-%d", h->tid, i % h->keys);
		else		/* one client shared by all threads */
			snprintf(id, sizeof id, "shared");
		if (ratelimit_check(h->rl, "key", id, &ra))
			h->ok++;
		else
			h->no++;
	}
	return NULL;
}

/* Threads on a frozen clock: one shared client admits exactly its burst
 * however the threads interleave; per-thread clients exactly theirs. */
static void test_threads(void **state)
{
	(void)state;
	enum { NT = 4, B = 50 };
	int n = getenv("PNO_SANITIZED") ? 20000 : 200000;
	atomic_store(&fake_ns, 1000 * NS);
	for (int mode = 0; mode < 2; mode++) {
		struct ratelimit *rl = limiter(5, B, 65536);
		struct hammer h[NT];
		pthread_t th[NT];
		for (int i = 0; i < NT; i++) {
			h[i] = (struct hammer){.rl = rl, .tid = i, .n = n,
					       .keys = mode ? 200 : 0};
			pthread_create(&th[i], NULL, hammer, &h[i]);
		}
		int ok = 0, no = 0;
		for (int i = 0; i < NT; i++) {
			pthread_join(th[i], NULL);
			ok += h[i].ok;
			no += h[i].no;
		}
		print_message("%s: %d admitted of %d\n",
			      mode ? "4 x 200 clients" : "one shared client", ok,
			      NT * n);
		assert_int_equal(ok + no, NT * n);
		assert_int_equal(ok, mode ? NT * 200 * B : B);
		assert_int_equal(ratelimit_count(rl), mode ? NT * 200 : 1);
		ratelimit_free(rl);
	}
}

static enum pno_status make(struct ratelimit **rl, int max_keys)
{
	struct ratelimit_opts o;
	ratelimit_opts_default(&o);
	o.max_keys = max_keys;
	o.clock = fake_clock;
	return ratelimit_new(rl, &o);
}

/* Creation fails cleanly at every allocation; checks (inserting new
 * clients and evicting old ones) allocate nothing. */
static void test_alloc_failure_loop(void **state)
{
	(void)state;
	tu_alloc_install();
	long live0 = tu_alloc_live(), k1, k2;
	struct ratelimit *rl = NULL;
	for (k1 = 1;; k1++) {
		tu_alloc_reset(k1);
		if (tu_alloc_step(make(&rl, 100), live0))
			break;
		assert_null(rl);
	}
	ratelimit_free(rl);
	for (k2 = 1;; k2++) {
		tu_alloc_reset(k2);
		if (tu_alloc_step(make(&rl, 5000), live0))	/* sharded */
			break;
		assert_null(rl);
	}
	tu_alloc_reset(0);
	char id[16];
	int ra;
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof id, "c%d", i);
		ratelimit_check(rl, "addr", id, &ra);
	}
	assert_int_equal(tu_alloc_count(), 0);
	ratelimit_free(rl);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	print_message("allocation points: %ld (one shard), %ld (16 shards)\n",
		      k1 - 1, k2 - 1);
	assert_true(k1 - 1 == 4 && k2 - 1 == 2 + 2 * 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_scenario),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_against_bucket),
		cmocka_unit_test(test_independent),
		cmocka_unit_test(test_lru),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_alloc_failure_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
