/* Failure classes: the table's columns read through one X-macro list. */
#include "failure.h"

#include <string.h>

struct failure_row {
	const char *label;
	int status, retryable, breaker;
};

static const struct failure_row rows[FAILURE_COUNT] = {
#define FAILURE__ROW(name, label, status, retry, brk) {label, status, retry, brk},
	FAILURE_LIST(FAILURE__ROW)
#undef FAILURE__ROW
};

static const struct failure_row *row(enum failure_class c)
{
	if ((int)c < 0 || c >= FAILURE_COUNT)
		c = FAILURE_INTERNAL;
	return &rows[c];
}

int failure_http_status(enum failure_class c) { return row(c)->status; }
int failure_retryable(enum failure_class c) { return row(c)->retryable; }
int failure_counts_for_breaker(enum failure_class c) { return row(c)->breaker; }
const char *failure_label(enum failure_class c) { return row(c)->label; }

int failure_from_label(const char *label)
{
	for (int i = 0; label && i < FAILURE_COUNT; i++)
		if (!strcmp(rows[i].label, label))
			return i;
	return -1;
}

enum failure_class failure_from_status(enum pno_status s)
{
	switch (s) {
	case PNO_STATUS_INVALID:
	case PNO_STATUS_SHAPE:
	case PNO_STATUS_RANGE:
	case PNO_STATUS_FORMAT:
	case PNO_STATUS_UNSUPPORTED:
		return FAILURE_INVALID_INPUT;
	case PNO_STATUS_NOTFOUND:
		return FAILURE_NOT_FOUND;
	case PNO_STATUS_NONFINITE:
		return FAILURE_MODEL_FAILURE;
	case PNO_STATUS_NOMEM:
		return FAILURE_OVERLOADED;
	case PNO_STATUS_CANCELLED:
		return FAILURE_DEADLINE_EXCEEDED;
	default:
		return FAILURE_INTERNAL;
	}
}
