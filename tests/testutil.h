/* Shared test helpers: counting / failing allocator, temp paths, numerics. */
#ifndef PNO_TESTUTIL_H
#define PNO_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pno/core.h"

/* Install the counting allocator. Allocation number `fail_at` (1-based,
 * counted from the last tu_alloc_reset) fails; 0 never fails. */
void tu_alloc_install(void);
void tu_alloc_uninstall(void);
void tu_alloc_reset(long fail_at);
long tu_alloc_count(void);	/* allocations since reset */
long tu_alloc_live(void);	/* outstanding blocks (alloc - free), global */
int tu_alloc_failed(void);	/* did the injected failure happen? */

/* A fresh path under the test temp dir ($PNO_TEST_TMP or /tmp). */
const char *tu_tmp_path(const char *name);

/* Max |a-b| / max(|b|, floor) style comparisons. */
double tu_max_abs_diff(const float *a, const float *b, size_t n);
double tu_rel_l2(const float *a, const float *b, size_t n);	/* ||a-b||/||b|| */

#define tu_assert_close(a, b, tol)                                            \
	do {                                                                  \
		double tu_a_ = (a), tu_b_ = (b), tu_t_ = (tol);               \
		if (!(fabs(tu_a_ - tu_b_) <= tu_t_))                          \
			fail_msg("%s = %.9g, %s = %.9g, |diff| %.3g > tol %.3g", \
				 #a, tu_a_, #b, tu_b_, fabs(tu_a_ - tu_b_),    \
				 tu_t_);                                       \
	} while (0)

/* A status call with its expected status; on mismatch prints both names
 * and the library's error detail. */
#define assert_status(expr, want)                                             \
	do {                                                                  \
		enum pno_status got_ = (expr);                                \
		if (got_ != (want))                                           \
			fail_msg("%s = %s, want %s (%s)", #expr,              \
				 pno_status_name(got_), pno_status_name(want), \
				 pno_last_error());                           \
	} while (0)

#define assert_err_has(sub)                                                   \
	do {                                                                  \
		if (!strstr(pno_last_error(), (sub)))                         \
			fail_msg("error \"%s\" lacks \"%s\"", pno_last_error(), \
				 (sub));                                      \
	} while (0)

#endif
