/*
 * Circuit breaker for one model version, with resilience4j's semantics.
 *
 * CLOSED: every call is permitted; the outcomes of the last window_size
 * calls are kept (a count-based sliding window). Once at least min_calls
 * are in the window, the breaker opens when the failure rate or the
 * slow-call rate (a call is slow when its duration is above slow_call_ns)
 * reaches its threshold (>=, as resilience4j).
 * OPEN: every call is rejected with the time left until wait_open_ns has
 * passed since opening (the server's Retry-After). The first acquire after
 * the wait moves to HALF_OPEN.
 * HALF_OPEN: exactly half_open_calls probe calls are permitted; further
 * calls are rejected (remaining wait 0) while probes are outstanding. When
 * all probes are recorded, their failure and slow rates decide: either
 * rate at or above its threshold -> OPEN again (a new wait), else CLOSED
 * with an empty window. With max_half_open_ns > 0, probes that have not
 * all come back within that time send the breaker back to OPEN (a stuck
 * probe cannot wedge it).
 *
 * Outcomes are recorded for every permitted call. breaker_record accepts
 * an outcome into whatever state the breaker is in (as resilience4j does);
 * the permit variants drop an outcome whose permit was issued before the
 * last state change, so a slow call admitted while CLOSED cannot count as
 * a probe. Outcomes arriving while OPEN are dropped in both.
 *
 * Time is an injected monotonic clock in nanoseconds (the caller passes
 * now). All operations take the breaker's mutex and do O(1) work; nothing
 * allocates after breaker_init.
 */
#ifndef PNO_SERVE_BREAKER_H
#define PNO_SERVE_BREAKER_H

#include "pno/core.h"

#include <pthread.h>
#include <stdint.h>

/* Values are the exported metric (pno_breaker_state gauge). */
enum breaker_state {
	BREAKER_CLOSED = 0,
	BREAKER_OPEN = 1,
	BREAKER_HALF_OPEN = 2
};

enum breaker_decision { BREAKER_PERMITTED, BREAKER_REJECTED };

struct breaker_config {
	int window_size;		/* calls in the sliding window, >= 1 */
	int min_calls;			/* 1..window_size */
	double failure_rate;		/* threshold in (0, 1] */
	double slow_rate;		/* threshold in (0, 1] */
	int64_t slow_call_ns;		/* > 0 */
	int64_t wait_open_ns;		/* > 0 */
	int half_open_calls;		/* probes, >= 1 */
	int64_t max_half_open_ns;	/* 0: wait for the probes forever */
};

/* window 20, min 10, failure 0.5, slow 1.0 (off unless every call is
 * slow), slow above 10 s, open 30 s, 3 probes, half-open bound 60 s. */
struct breaker_config breaker_config_default(void);

struct breaker_permit {
	uint64_t epoch;			/* state changes before the permit */
};

/* A snapshot for metrics and tests. */
struct breaker_stats {
	enum breaker_state state;
	int window_calls, window_failures, window_slow;
	int probes_admitted, probes_recorded;
	uint64_t permitted, rejected, dropped;	/* since init */
	uint64_t transitions;			/* state changes */
	uint64_t opened;			/* times it went OPEN */
};

struct breaker {
	pthread_mutex_t mu;
	struct breaker_config cfg;
	uint8_t *ring;			/* (window_size) bit 0 failed, 1 slow */
	int head, count, failures, slow;
	enum breaker_state state;
	int64_t since;			/* time of the last state change */
	int probes_admitted, probes_recorded, probe_failures, probe_slow;
	uint64_t epoch;
	uint64_t permitted, rejected, dropped, opened;
	int init;
};

/* INVALID naming the field if the config is out of range; NOMEM. */
enum pno_status breaker_init(struct breaker *b, const struct breaker_config *c,
			     int64_t now_ns);
void breaker_free(struct breaker *b);	/* safe on a zeroed struct */

/* PERMITTED, or REJECTED with *wait_ns (may be NULL) the time until the
 * breaker will admit probes (0 in HALF_OPEN with all probes out). */
enum breaker_decision breaker_acquire(struct breaker *b, int64_t now_ns,
				      int64_t *wait_ns);
/* Outcome of a permitted call: its duration and whether it failed. */
void breaker_record(struct breaker *b, int64_t now_ns, int64_t duration_ns,
		    int failed);

/* The same with a permit: an outcome from before the last state change
 * is dropped (counted in stats.dropped). */
enum breaker_decision breaker_acquire_permit(struct breaker *b, int64_t now_ns,
					     int64_t *wait_ns,
					     struct breaker_permit *p);
void breaker_record_permit(struct breaker *b, int64_t now_ns,
			   const struct breaker_permit *p,
			   int64_t duration_ns, int failed);

/* A permit that was never used (its call was dropped before it ran): a
 * half-open probe slot is given back; otherwise nothing is recorded. */
void breaker_release_permit(struct breaker *b, const struct breaker_permit *p);

enum breaker_state breaker_state_get(struct breaker *b);
const char *breaker_state_name(enum breaker_state s);	/* "closed" ... */
void breaker_stats_get(struct breaker *b, struct breaker_stats *out);

#endif
