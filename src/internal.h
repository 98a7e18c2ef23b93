/* Internal helpers shared by the library's modules (not installed). */
#ifndef PNO_INTERNAL_H
#define PNO_INTERNAL_H

#include "pno/core.h"

#include <stdarg.h>

#if defined(__GNUC__)
#define PNO__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PNO__PRINTF(a, b)
#endif

/* Record a failure message for pno_last_error() and return `s`. */
enum pno_status pno__errorf(enum pno_status s, const char *fmt, ...)
	PNO__PRINTF(2, 3);
/* Prefix the current error message with more context ("file.h5: ..."). */
enum pno_status pno__error_prefix(enum pno_status s, const char *fmt, ...)
	PNO__PRINTF(2, 3);

int pno__log_enabled(enum pno_log_level level);
void pno__logf(enum pno_log_level level, const char *fmt, ...)
	PNO__PRINTF(2, 3);
#define PNO_LOG(level, ...)                                                   \
	do {                                                                  \
		if (pno__log_enabled(level))                                  \
			pno__logf(level, __VA_ARGS__);                        \
	} while (0)

/* Size arithmetic that reports overflow instead of wrapping. */
static inline int pno__mul_overflow(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out);
}

#define PNO__MIN(a, b) ((a) < (b) ? (a) : (b))
#define PNO__MAX(a, b) ((a) > (b) ? (a) : (b))

/* Route jansson's allocations through the hooks (set once; call before
 * any jansson use). Strings from jansson must come through pno__json_dumps
 * (released with pno_free), never from json_dumps directly. */
void pno__json_setup(void);
/* pno__json_setup, and clear this thread's jansson out-of-memory flag. */
void pno__json_init(void);
/* Did a jansson allocation fail since pno__json_init() on this thread?
 * (jansson sometimes reports one as a parse error or not at all.) */
int pno__json_oom(void);
/* json_dumps that returns NULL if an allocation failed inside it (free the
 * result with pno_free). Failures stay recorded for pno__json_oom. */
struct json_t;
/* Serve this thread's jansson allocations from buf (size bytes) until
 * pno__json_arena_end: blocks are carved in order and never freed one by
 * one; what does not fit goes to the usual allocator. Every JSON value
 * made meanwhile must be released before the arena is reused. */
void pno__json_arena_begin(void *buf, size_t size);
/* End the arena; returns the bytes it could not hold (0: all fitted), so
 * the caller can lend a larger one next time. */
size_t pno__json_arena_end(void);
char *pno__json_dumps(const struct json_t *j, size_t flags);
/* json_loads that tells an allocation failure (PNO_STATUS_NOMEM) from bad
 * JSON (PNO_STATUS_FORMAT, msg gives the position). */
struct json_t *pno__json_loads(const char *text, enum pno_status *status,
			       char *msg, size_t msg_size);

/* Ascending sort of floats without NaN (infinities sort to the ends):
 * quicksort (median of three, recursion
 * on the smaller side so the stack stays O(log n)), insertion below 16.
 * Allocates nothing (unlike qsort in some libcs) and needs no callback. */
void pno__sort_floats(float *v, size_t n);

#endif
