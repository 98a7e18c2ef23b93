/* Per-request deadlines: the timeout a request runs under, the worker's
 * drop of queued work past it (answered 504, never computed) and the
 * overrun of a compute (504, a model failure for the breaker). */
#include "serve_internal.h"
#include "failure.h"

#include <microhttpd.h>

#include <stdio.h>
#include <string.h>

/* strict decimal milliseconds >= 1 (at most 10 digits); 0 if malformed */
static long parse_ms(const char *s)
{
	long v = 0;
	size_t n = strlen(s);
	if (n == 0 || n > 10)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static void count(struct mversion *mv, const char *stage)
{
	const char *lv[3] = {mv->name, mv->vstr, stage};
	prom_inc(mv->srv->met.rm.deadline, lv, 1);
}

int sv_deadline_start(struct req *r, const struct serve_config *cfg)
{
	int t = cfg->request_timeout_ms;
	long asked = 0;
	const char *src = "Request-Timeout-Ms";
	const char *h = r->conn ? MHD_lookup_connection_value(
		r->conn, MHD_HEADER_KIND, "Request-Timeout-Ms") : NULL;
	r->rs.deadline = 0;
	r->rs.timeout_ms = 0;
	if (h && !(asked = parse_ms(h))) {
		r->status = failure_http_status(FAILURE_INVALID_INPUT);
		snprintf(r->err, sizeof r->err, "Request-Timeout-Ms: \"%.40s\" "
			 "is not a whole number of milliseconds >= 1", h);
		return r->status;
	}
	/* both given: the tighter one */
	if (r->rs.param_timeout_ms > 0 &&
	    (!asked || r->rs.param_timeout_ms < asked)) {
		asked = r->rs.param_timeout_ms;
		src = "parameters.timeout_ms";
	}
	if (asked > cfg->max_request_timeout_ms) {
		r->status = failure_http_status(FAILURE_INVALID_INPUT);
		snprintf(r->err, sizeof r->err, "%s: %ld ms exceeds "
			 "max_request_timeout_ms (%d)", src, asked,
			 cfg->max_request_timeout_ms);
		return r->status;
	}
	if (asked)
		t = (int)asked;
	if (!t)
		return 0;
	r->rs.timeout_ms = t;
	r->rs.deadline = r->t_start + 1e-3 * t;
	if (sv_now() >= r->rs.deadline) {	/* a slow upload used it up */
		count(r->mv, "arrival");
		r->status = failure_http_status(FAILURE_DEADLINE_EXCEEDED);
		snprintf(r->err, sizeof r->err, "deadline exceeded: the %d ms "
			 "timeout passed before the request was read", t);
		return r->status;
	}
	return 0;
}

int sv_deadline_passed(const struct req *r, double now)
{
	return r->rs.deadline > 0 && now >= r->rs.deadline;
}

void sv_deadline_drop(struct mversion *mv, struct req **rs, int n)
{
	for (int i = 0; i < n; i++) {
		struct req *r = rs[i];
		double now = sv_now();
		if (r->has_permit) {
			/* never reached the model: neither success nor
			 * failure (a probe slot goes back) */
			breaker_release_permit(&mv->brk, &r->permit);
			r->has_permit = 0;
		}
		count(mv, "queue");
		r->status = failure_http_status(FAILURE_DEADLINE_EXCEEDED);
		snprintf(r->err, sizeof r->err, "deadline exceeded: %.0f ms in "
			 "the queue of %s:%s past its %d ms timeout; not "
			 "computed", 1e3 * (now - r->t_enq), mv->name, mv->vstr,
			 r->rs.timeout_ms);
		r->rs.dropped = 1;
		r->t_exec = r->t_done = now;
		r->batch_items = 0;
		atomic_store(&r->ready, 1);
		MHD_resume_connection(r->conn);
	}
}

int sv_deadline_overran(struct mversion *mv, struct req *r, double t)
{
	if (r->status != 200 || !sv_deadline_passed(r, t))
		return 0;
	count(mv, "compute");
	r->status = failure_http_status(FAILURE_DEADLINE_EXCEEDED);
	snprintf(r->err, sizeof r->err, "deadline exceeded: the compute on "
		 "%s:%s ended %.0f ms past the %d ms timeout", mv->name,
		 mv->vstr, 1e3 * (t - r->rs.deadline), r->rs.timeout_ms);
	r->rs.model_failed = 1;
	return 1;
}
