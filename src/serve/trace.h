/*
 * Tracing: the W3C Trace Context `traceparent` header (level 1), span
 * records and their OTLP/JSON encoding.
 *
 * traceparent = version "-" trace-id "-" parent-id "-" trace-flags, each
 * field lower-case hex (2, 32, 16, 2 characters). A header is ignored
 * (and the server starts a new trace) when: it is shorter than 55
 * characters; a field has a character that is not lower-case hex or a
 * separator is not '-'; the version is ff; the trace-id or parent-id is
 * all zeros; or version 00 has anything past its 55 characters. A higher
 * version is parsed leniently as the spec asks: the first 55 characters
 * as version 00, and what follows must begin with '-' (fields a future
 * version may add). Only the sampled flag (bit 0) is kept: level 1 says
 * unknown flags are not propagated. The parser reads exactly len bytes,
 * allocates nothing and never reads past them.
 *
 * Ids are generated with libsodium's randombytes (never all zeros). The
 * outgoing traceparent is always version 00 with the server span's id.
 *
 * A span is a fixed-size record (name, ids, start and end in unix
 * nanoseconds, kind, status, up to TRACE_MAX_ATTRS string or integer
 * attributes) so recording one allocates nothing. trace_otlp_json encodes
 * a batch as OTLP/JSON (the body of POST /v1/traces): resourceSpans ->
 * scopeSpans -> spans with hex ids, times as decimal strings, kind and
 * status code as integers and attributes as {key, value: {stringValue}
 * or {intValue}} (intValue a decimal string: int64 in proto3 JSON).
 */
#ifndef PNO_SERVE_TRACE_H
#define PNO_SERVE_TRACE_H

#include "pno/core.h"

#include <stddef.h>
#include <stdint.h>

#define TRACEPARENT_LEN 55
#define TRACE_FLAG_SAMPLED 0x01

struct trace_context {
	uint8_t trace_id[16];
	uint8_t parent_id[8];		/* the caller's span */
	uint8_t flags;			/* sampled bit only */
	uint8_t version;		/* as received (00 .. fe) */
};

/* 1 and *out filled if value[0..len) is a valid traceparent, else 0 (and
 * *out zeroed). value need not be NUL-terminated. */
int trace_parse(const char *value, size_t len, struct trace_context *out);

/* Random non-zero ids from libsodium. INTERNAL if sodium_init fails. */
enum pno_status trace_random_id(uint8_t *id, size_t n);

/* "00-<trace>-<span>-<flags>" and a NUL into out[56]. */
void trace_format(char out[TRACEPARENT_LEN + 1], const uint8_t trace_id[16],
		  const uint8_t span_id[8], uint8_t flags);
/* Lower-case hex of n bytes and a NUL into out[2n + 1]. */
void trace_hex(char *out, const uint8_t *id, size_t n);

enum trace_kind {			/* OTLP SpanKind values */
	TRACE_KIND_INTERNAL = 1,
	TRACE_KIND_SERVER = 2,
	TRACE_KIND_CLIENT = 3
};
enum trace_status { TRACE_STATUS_UNSET = 0, TRACE_STATUS_OK = 1,
		    TRACE_STATUS_ERROR = 2 };

#define TRACE_MAX_ATTRS 12
#define TRACE_NAME_MAX 64
#define TRACE_KEY_MAX 48
#define TRACE_VALUE_MAX 128

struct trace_attr {
	char key[TRACE_KEY_MAX];
	int is_int;
	int64_t i;
	char s[TRACE_VALUE_MAX];
};

struct trace_span {
	char name[TRACE_NAME_MAX];
	uint8_t trace_id[16], span_id[8], parent_id[8];
	int has_parent;
	uint8_t flags;
	int64_t start_ns, end_ns;	/* unix epoch nanoseconds */
	enum trace_kind kind;
	enum trace_status status;
	int n_attrs;
	struct trace_attr attrs[TRACE_MAX_ATTRS];
};

/* Start a span with a fresh span id. Its trace and parent come from the
 * in-process parent span if given, else from a valid incoming context
 * (in->trace_id, in->parent_id, in->flags), else a new trace (flags
 * `new_flags`). name is truncated to TRACE_NAME_MAX - 1 bytes. INVALID
 * without span or name; INTERNAL if no random id could be drawn. */
enum pno_status trace_span_start(struct trace_span *sp, const char *name,
				 enum trace_kind kind,
				 const struct trace_span *parent,
				 const struct trace_context *in,
				 uint8_t new_flags, int64_t start_ns);
void trace_span_end(struct trace_span *sp, int64_t end_ns,
		    enum trace_status status);
/* Attributes: RANGE when the span already has TRACE_MAX_ATTRS, INVALID
 * for an empty key or one of TRACE_KEY_MAX bytes or more; a string value
 * is truncated to TRACE_VALUE_MAX - 1 bytes. */
enum pno_status trace_span_attr_str(struct trace_span *sp, const char *key,
				    const char *value);
enum pno_status trace_span_attr_int(struct trace_span *sp, const char *key,
				    int64_t value);
/* The traceparent to send on (or return) for this span. */
void trace_span_traceparent(const struct trace_span *sp,
			    char out[TRACEPARENT_LEN + 1]);

/* OTLP/JSON of spans[0..n) (n >= 0) under one resource with service.name
 * = service and scope "pno.serve", into a pno_malloc'd NUL-terminated
 * *json (*len its length, may be NULL). NOMEM; INVALID for bad args. */
enum pno_status trace_otlp_json(const struct trace_span *spans, int n,
				const char *service, char **json, size_t *len);

#endif
