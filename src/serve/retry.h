/*
 * Retries for everything the server sends out (trace export, alert
 * webhooks) and for `pno client`: exponential backoff with full jitter,
 * bounded by a retry budget, honouring the server's Retry-After.
 *
 * Backoff before retry number a+1 (a = 0 after the first failure):
 *	sleep = uniform in [0, min(cap, base * 2^a)]   ("full jitter")
 * and never less than the server's Retry-After when it sent one.
 *
 * What is retried: transport errors (connect, reset, timeout) and the
 * HTTP statuses 429, 502, 503 and 504. Never any other 4xx (the request
 * itself is wrong) and never 500 (this server answers 500 only for model
 * failures and internal errors, which a retry does not cure; see
 * failure.h, whose retryable column agrees and is tested to).
 *
 * The retry budget (Finagle's RetryBudget; gRPC's retry throttling has the
 * same aim) keeps retries from multiplying load on a struggling server:
 * over a sliding window of ttl, retries are allowed while
 *	retries + 1 <= min_per_sec * ttl_s + ratio * requests
 * (the window is kept in 10 slots of ttl/10, so it slides in steps of
 * ttl/10). Each logical request deposits once; each retry withdraws.
 *
 * Randomness: a counter-based Philox stream (struct retry_rng), seeded by
 * the caller (from randombytes in production, a constant in tests).
 * Time: nanoseconds from an injected clock. Nothing allocates.
 */
#ifndef PNO_SERVE_RETRY_H
#define PNO_SERVE_RETRY_H

#include "pno/core.h"

#include <pthread.h>
#include <stdint.h>

struct retry_policy {
	int max_attempts;		/* tries including the first, 1..100 */
	int64_t base_ns, cap_ns;	/* 0 < base <= cap */
	int64_t max_retry_after_ns;	/* a longer Retry-After: give up (0: any) */
};
/* 4 attempts, base 100 ms, cap 10 s, Retry-After up to 60 s. */
struct retry_policy retry_policy_default(void);
enum pno_status retry_policy_check(const struct retry_policy *p);

struct retry_rng {
	uint64_t seed, stream, counter;
};
uint64_t retry_rng_next(struct retry_rng *r);

/* The full-jitter sleep before retry attempt+1 given a uniform 64-bit r:
 * floor(u * (bound + 1)) with u = r / 2^64, bound = min(cap, base*2^attempt),
 * so every value in [0, bound] is possible. attempt < 0 counts as 0. */
int64_t retry_backoff_ns(const struct retry_policy *p, int attempt, uint64_t r);

/* 1 if a try that ended with this outcome may be retried: transport_error
 * nonzero, or http_status 429, 502, 503, 504. */
int retry_retryable(int http_status, int transport_error);

/* Retry-After: delta-seconds ("120") or an IMF-fixdate ("Sun, 06 Nov 1994
 * 08:49:37 GMT", compared with now_unix_s; a past date is 0). INVALID for
 * anything else, or delta-seconds above 10^9. */
enum pno_status retry_after_parse(const char *value, int64_t now_unix_s,
				  int64_t *ns);

struct retry_budget_config {
	int64_t ttl_ns;			/* window, >= 10 ns */
	double ratio;			/* retries per request, [0, 10] */
	double min_per_sec;		/* reserve, [0, 1e6] */
};
/* ttl 10 s, ratio 0.2, 10 retries per second (Finagle's defaults). */
struct retry_budget_config retry_budget_config_default(void);

#define RETRY_BUDGET_SLOTS 10
struct retry_budget {
	pthread_mutex_t mu;
	struct retry_budget_config cfg;
	int64_t slot_ns, cur;		/* cur: index of the newest slot */
	int64_t req[RETRY_BUDGET_SLOTS], ret[RETRY_BUDGET_SLOTS];
	uint64_t refused;		/* retries refused since init */
	int init;
};
enum pno_status retry_budget_init(struct retry_budget *b,
				  const struct retry_budget_config *c,
				  int64_t now_ns);
void retry_budget_free(struct retry_budget *b);	/* safe on zeroed */
void retry_budget_deposit(struct retry_budget *b, int64_t now_ns);
/* 1 and one retry counted if the budget allows it, else 0. */
int retry_budget_withdraw(struct retry_budget *b, int64_t now_ns);
/* Requests and retries in the current window. */
void retry_budget_counts(struct retry_budget *b, int64_t now_ns,
			 int64_t *requests, int64_t *retries);

#define RETRY_VERDICT_LIST(X)                                                 \
	X(SUCCEEDED, "succeeded")                                             \
	X(AGAIN, "retry")                                                     \
	X(NOT_RETRYABLE, "not retryable")                                     \
	X(ATTEMPTS, "attempts exhausted")                                     \
	X(BUDGET, "retry budget exhausted")                                   \
	X(DEADLINE, "deadline would pass")

enum retry_verdict {
#define RETRY__ENUM(n, s) RETRY_##n,
	RETRY_VERDICT_LIST(RETRY__ENUM)
#undef RETRY__ENUM
};
const char *retry_verdict_str(enum retry_verdict v);

struct retry_outcome {
	int http_status;		/* 0 if there was no answer */
	int transport_error;		/* nonzero: connect/reset/timeout */
	int64_t retry_after_ns;		/* < 0: none given */
};

/* After try number `attempt` (0 = the first) ended with o: SUCCEEDED if
 * it did (no transport error, status 1xx-3xx), else whether and how long
 * to wait: AGAIN with *delay_ns = max(backoff, Retry-After), or why not.
 * Checks, in order: retryable, attempts left, Retry-After within
 * max_retry_after_ns and now + delay before deadline_ns (0: none), both
 * DEADLINE when not met (a wait the caller cannot afford), then the
 * budget (b may be NULL), which is only charged when the answer is AGAIN. */
enum retry_verdict retry_decide(const struct retry_policy *p,
				struct retry_budget *b, struct retry_rng *rng,
				int attempt, const struct retry_outcome *o,
				int64_t now_ns, int64_t deadline_ns,
				int64_t *delay_ns);

/* A whole retried call: tries call() until retry_decide says stop,
 * sleeping through env. Deposits once in the budget. *attempts (may be
 * NULL) gets the number of tries, *last the final outcome. */
struct retry_env {
	int64_t (*now)(void *ud);
	void (*sleep)(void *ud, int64_t ns);
	void *ud;
};
typedef void (*retry_call_fn)(void *ud, int attempt, struct retry_outcome *o);
enum retry_verdict retry_run(const struct retry_policy *p,
			     struct retry_budget *b, struct retry_rng *rng,
			     const struct retry_env *env, int64_t deadline_ns,
			     retry_call_fn call, void *call_ud, int *attempts,
			     struct retry_outcome *last);

#endif
