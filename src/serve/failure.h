/*
 * Failure classes of the server: every error a request can meet falls in
 * one class, and the class alone fixes the HTTP status of the answer,
 * whether a client may retry it (and so whether the answer carries
 * Retry-After), whether it counts against the model version's circuit
 * breaker, and the label of the error metric. One X-macro table below is
 * the only place these are written down.
 *
 *   class              status  retryable  breaker  label
 *   invalid_input        400      no        no     invalid_input
 *   unauthenticated      401      no        no     unauthenticated
 *   forbidden            403      no        no     forbidden
 *   not_found            404      no        no     not_found
 *   rate_limited         429      yes       no     rate_limited
 *   overloaded           503      yes       no     overloaded
 *   deadline_exceeded    504      yes       no     deadline_exceeded
 *   model_failure        500      no        yes    model_failure
 *   internal             500      no        no     internal
 *
 * A model failure is a compute error or a non-finite output: the same
 * input would fail again, so the client is told not to retry, but the
 * breaker counts it. A compute that overran its deadline is answered as
 * deadline_exceeded and recorded in the breaker as failed by the caller
 * (work dropped from the queue past its deadline never reached the model
 * and is not recorded).
 */
#ifndef PNO_SERVE_FAILURE_H
#define PNO_SERVE_FAILURE_H

#include "pno/core.h"

/* X(NAME, label, http status, retryable, counts for the breaker) */
#define FAILURE_LIST(X)                                                       \
	X(INVALID_INPUT, "invalid_input", 400, 0, 0)                          \
	X(UNAUTHENTICATED, "unauthenticated", 401, 0, 0)                      \
	X(FORBIDDEN, "forbidden", 403, 0, 0)                                  \
	X(NOT_FOUND, "not_found", 404, 0, 0)                                  \
	X(RATE_LIMITED, "rate_limited", 429, 1, 0)                            \
	X(OVERLOADED, "overloaded", 503, 1, 0)                                \
	X(DEADLINE_EXCEEDED, "deadline_exceeded", 504, 1, 0)                  \
	X(MODEL_FAILURE, "model_failure", 500, 0, 1)                          \
	X(INTERNAL, "internal", 500, 0, 0)

enum failure_class {
#define FAILURE__ENUM(name, label, status, retry, brk) FAILURE_##name,
	FAILURE_LIST(FAILURE__ENUM)
#undef FAILURE__ENUM
	FAILURE_COUNT
};

/* The table's columns; an out-of-range class reads as FAILURE_INTERNAL. */
int failure_http_status(enum failure_class c);
int failure_retryable(enum failure_class c);	/* 1: Retry-After is sent */
int failure_counts_for_breaker(enum failure_class c);
const char *failure_label(enum failure_class c);	/* never NULL */

/* The class of a label ("rate_limited"); -1 if none. */
int failure_from_label(const char *label);

/* The default class of a library status: INVALID, SHAPE, RANGE, FORMAT,
 * UNSUPPORTED -> invalid_input; NOTFOUND -> not_found; NONFINITE ->
 * model_failure; NOMEM -> overloaded (memory pressure sheds load);
 * CANCELLED -> deadline_exceeded; everything else (IO, INTERNAL, EXISTS,
 * OK given by mistake) -> internal. */
enum failure_class failure_from_status(enum pno_status s);

#endif
