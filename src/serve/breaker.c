/* Circuit breaker: a ring of call outcomes with running counts, a state
 * machine under one mutex. */
#include "breaker.h"
#include "../internal.h"

#include <math.h>
#include <string.h>

#define OUT_FAILED 1u
#define OUT_SLOW 2u

struct breaker_config breaker_config_default(void)
{
	struct breaker_config c = {
		.window_size = 20,
		.min_calls = 10,
		.failure_rate = 0.5,
		.slow_rate = 1.0,
		.slow_call_ns = 10 * (int64_t)1000000000,
		.wait_open_ns = 30 * (int64_t)1000000000,
		.half_open_calls = 3,
		.max_half_open_ns = 60 * (int64_t)1000000000,
	};
	return c;
}

static int rate_ok(double r)
{
	return isfinite(r) && r > 0 && r <= 1;
}

enum pno_status breaker_init(struct breaker *b, const struct breaker_config *c,
			     int64_t now_ns)
{
	if (!b || !c)
		return pno__errorf(PNO_STATUS_INVALID, "breaker_init: NULL argument");
	memset(b, 0, sizeof *b);
	if (c->window_size < 1 || c->window_size > (1 << 24))
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: window_size %d not in [1, 16777216]",
				   c->window_size);
	if (c->min_calls < 1 || c->min_calls > c->window_size)
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: min_calls %d not in [1, window_size %d]",
				   c->min_calls, c->window_size);
	if (!rate_ok(c->failure_rate))
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: failure_rate %g not in (0, 1]",
				   c->failure_rate);
	if (!rate_ok(c->slow_rate))
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: slow_rate %g not in (0, 1]",
				   c->slow_rate);
	if (c->slow_call_ns <= 0 || c->wait_open_ns <= 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: slow_call_ns %lld and wait_open_ns %lld must be > 0",
				   (long long)c->slow_call_ns,
				   (long long)c->wait_open_ns);
	if (c->half_open_calls < 1 || c->half_open_calls > (1 << 20))
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: half_open_calls %d not in [1, 1048576]",
				   c->half_open_calls);
	if (c->max_half_open_ns < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "breaker: max_half_open_ns %lld must be >= 0",
				   (long long)c->max_half_open_ns);
	b->ring = pno_calloc((size_t)c->window_size, 1);
	if (!b->ring)
		return pno__errorf(PNO_STATUS_NOMEM, "breaker: window of %d calls",
				   c->window_size);
	if (pthread_mutex_init(&b->mu, NULL)) {
		pno_free(b->ring);
		b->ring = NULL;
		return pno__errorf(PNO_STATUS_INTERNAL, "breaker: mutex init failed");
	}
	b->cfg = *c;
	b->state = BREAKER_CLOSED;
	b->since = now_ns;
	b->init = 1;
	return PNO_STATUS_OK;
}

void breaker_free(struct breaker *b)
{
	if (!b)
		return;
	if (b->init)
		pthread_mutex_destroy(&b->mu);
	pno_free(b->ring);
	memset(b, 0, sizeof *b);
}

static void window_clear(struct breaker *b)
{
	memset(b->ring, 0, (size_t)b->cfg.window_size);
	b->head = b->count = b->failures = b->slow = 0;
}

static void enter(struct breaker *b, enum breaker_state s, int64_t now)
{
	b->state = s;
	b->since = now;
	b->epoch++;
	b->probes_admitted = b->probes_recorded = 0;
	b->probe_failures = b->probe_slow = 0;
	if (s == BREAKER_OPEN)
		b->opened++;
	window_clear(b);	/* the window only counts calls while closed */
}

/* rate >= threshold with integers: k / n >= t */
static int over(int k, int n, double t)
{
	return n > 0 && (double)k >= t * (double)n;
}

static enum breaker_decision acquire_locked(struct breaker *b, int64_t now,
					    int64_t *wait_ns)
{
	int64_t wait = 0;
	if (b->state == BREAKER_OPEN) {
		int64_t left = b->since + b->cfg.wait_open_ns - now;
		if (left > 0) {
			wait = left;
			goto reject;
		}
		enter(b, BREAKER_HALF_OPEN, now);
	}
	if (b->state == BREAKER_HALF_OPEN) {
		if (b->cfg.max_half_open_ns > 0 &&
		    now - b->since >= b->cfg.max_half_open_ns) {
			enter(b, BREAKER_OPEN, now);
			wait = b->cfg.wait_open_ns;
			goto reject;
		}
		if (b->probes_admitted >= b->cfg.half_open_calls)
			goto reject;
		b->probes_admitted++;
	}
	b->permitted++;
	if (wait_ns)
		*wait_ns = 0;
	return BREAKER_PERMITTED;
reject:
	b->rejected++;
	if (wait_ns)
		*wait_ns = wait;
	return BREAKER_REJECTED;
}

static void record_locked(struct breaker *b, int64_t now, int64_t duration,
			  int failed)
{
	unsigned o = (failed ? OUT_FAILED : 0u) |
		     (duration > b->cfg.slow_call_ns ? OUT_SLOW : 0u);
	if (b->state == BREAKER_OPEN) {
		b->dropped++;
		return;
	}
	if (b->state == BREAKER_HALF_OPEN) {
		if (b->probes_recorded >= b->probes_admitted) {
			b->dropped++;	/* not one of the probes */
			return;
		}
		b->probes_recorded++;
		b->probe_failures += !!(o & OUT_FAILED);
		b->probe_slow += !!(o & OUT_SLOW);
		if (b->probes_recorded < b->cfg.half_open_calls)
			return;
		int n = b->probes_recorded;
		if (over(b->probe_failures, n, b->cfg.failure_rate) ||
		    over(b->probe_slow, n, b->cfg.slow_rate))
			enter(b, BREAKER_OPEN, now);
		else
			enter(b, BREAKER_CLOSED, now);
		return;
	}
	/* CLOSED: replace the oldest outcome once the window is full */
	if (b->count == b->cfg.window_size) {
		unsigned old = b->ring[b->head];
		b->failures -= !!(old & OUT_FAILED);
		b->slow -= !!(old & OUT_SLOW);
	} else {
		b->count++;
	}
	b->ring[b->head] = (uint8_t)o;
	b->head = (b->head + 1) % b->cfg.window_size;
	b->failures += !!(o & OUT_FAILED);
	b->slow += !!(o & OUT_SLOW);
	if (b->count >= b->cfg.min_calls &&
	    (over(b->failures, b->count, b->cfg.failure_rate) ||
	     over(b->slow, b->count, b->cfg.slow_rate)))
		enter(b, BREAKER_OPEN, now);
}

enum breaker_decision breaker_acquire_permit(struct breaker *b, int64_t now_ns,
					     int64_t *wait_ns,
					     struct breaker_permit *p)
{
	pthread_mutex_lock(&b->mu);
	enum breaker_decision d = acquire_locked(b, now_ns, wait_ns);
	if (p)
		p->epoch = b->epoch;
	pthread_mutex_unlock(&b->mu);
	return d;
}

enum breaker_decision breaker_acquire(struct breaker *b, int64_t now_ns,
				      int64_t *wait_ns)
{
	return breaker_acquire_permit(b, now_ns, wait_ns, NULL);
}

void breaker_record_permit(struct breaker *b, int64_t now_ns,
			   const struct breaker_permit *p,
			   int64_t duration_ns, int failed)
{
	pthread_mutex_lock(&b->mu);
	if (p && p->epoch != b->epoch)
		b->dropped++;
	else
		record_locked(b, now_ns, duration_ns, failed);
	pthread_mutex_unlock(&b->mu);
}

void breaker_record(struct breaker *b, int64_t now_ns, int64_t duration_ns,
		    int failed)
{
	breaker_record_permit(b, now_ns, NULL, duration_ns, failed);
}

void breaker_release_permit(struct breaker *b, const struct breaker_permit *p)
{
	pthread_mutex_lock(&b->mu);
	if (p && p->epoch == b->epoch && b->state == BREAKER_HALF_OPEN &&
	    b->probes_admitted > b->probes_recorded)
		b->probes_admitted--;
	pthread_mutex_unlock(&b->mu);
}

enum breaker_state breaker_state_get(struct breaker *b)
{
	pthread_mutex_lock(&b->mu);
	enum breaker_state s = b->state;
	pthread_mutex_unlock(&b->mu);
	return s;
}

const char *breaker_state_name(enum breaker_state s)
{
	switch (s) {
	case BREAKER_CLOSED: return "closed";
	case BREAKER_OPEN: return "open";
	case BREAKER_HALF_OPEN: return "half_open";
	}
	return "unknown";
}

void breaker_stats_get(struct breaker *b, struct breaker_stats *o)
{
	pthread_mutex_lock(&b->mu);
	o->state = b->state;
	o->window_calls = b->count;
	o->window_failures = b->failures;
	o->window_slow = b->slow;
	o->probes_admitted = b->probes_admitted;
	o->probes_recorded = b->probes_recorded;
	o->permitted = b->permitted;
	o->rejected = b->rejected;
	o->dropped = b->dropped;
	o->transitions = b->epoch;
	o->opened = b->opened;
	pthread_mutex_unlock(&b->mu);
}
