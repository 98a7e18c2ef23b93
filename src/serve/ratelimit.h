/*
 * Rate limiting for pno serve: GCRA (the generic cell rate algorithm, a
 * leaky bucket kept as one timestamp per client) per API key name, or per
 * client address for unauthenticated requests.
 *
 * With rate r requests/s and burst b >= 1: emission interval T = 1/r,
 * tolerance tau = (b - 1) T. Each client has a theoretical arrival time
 * TAT (a new client: TAT = now). A request at t is admitted iff
 * TAT - t <= tau, and then TAT = max(TAT, t) + T; a denied request leaves
 * TAT alone. So b requests at the same instant are admitted and the
 * (b+1)-th is not; in the long run r per second; a client idle for
 * b T has its whole burst back. A denied client may retry after
 * TAT - tau - t seconds: Retry-After is that rounded up to whole seconds,
 * at least 1. All times are integer nanoseconds of an injected monotonic
 * clock (T rounded to the nearest ns).
 *
 * The table of clients is bounded (max_keys) and allocated whole at
 * creation: a check allocates nothing. It is split into shards, each with
 * its own mutex, hash buckets and LRU list; a client goes to a shard by a
 * keyed hash of its identity (random key per table, so clients cannot aim
 * at one shard or bucket). When a shard is full its least recently seen
 * client is evicted; an evicted client that returns starts with a full
 * burst (so max_keys must exceed the number of clients active within the
 * burst-refill time b T, or an attacker cycling through more
 * identities than that gets up to b requests each, which is exactly what
 * distinct identities get anyway).
 *
 * Identities are (kind, id) pairs, e.g. ("key", "alice") and ("addr",
 * "10.0.0.7"): a key named like an address is a different client.
 */
#ifndef PNO_SERVE_RATELIMIT_H
#define PNO_SERVE_RATELIMIT_H

#include "auth.h"

struct ratelimit_opts {
	double rate;		/* requests per second, > 0; default 10 */
	int burst;		/* >= 1; default 20 */
	int max_keys;		/* clients tracked; default 65536 */
	serve_clock_fn clock;	/* NULL: serve_clock_monotonic */
	void *clock_ud;
};
void ratelimit_opts_default(struct ratelimit_opts *o);

struct ratelimit;

/* INVALID if rate is not in (0, 1e9], burst not in 1..1e6 or max_keys not
 * in 1..1e8. */
enum pno_status ratelimit_new(struct ratelimit **out,
			      const struct ratelimit_opts *o);
void ratelimit_free(struct ratelimit *rl);

/* Account one request of client (kind, id): 1 admitted, 0 denied (then
 * *retry_after_s, if not NULL, is the whole seconds to wait, >= 1).
 * Thread-safe; allocates nothing. */
int ratelimit_check(struct ratelimit *rl, const char *kind, const char *id,
		    int *retry_after_s);

/* Clients tracked now, and evicted so far (summed over shards). */
int ratelimit_count(struct ratelimit *rl);
uint64_t ratelimit_evictions(struct ratelimit *rl);

#endif
