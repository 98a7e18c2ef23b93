/* Shared test helpers: counting / failing allocator and the allocation-
 * failure loop step, temp paths and leftover temporaries, reading HDF5
 * datasets back, numerics. */
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

/* One run of an allocation-failure loop, given the status `s` of the call
 * made after tu_alloc_reset(k): 1 if no allocation failed (then s must be
 * OK), 0 if the injected failure happened (then s must be NOMEM and
 * tu_alloc_live() back at live0, its value before the loop):
 *	for (k = 1;; k++) {
 *		tu_alloc_reset(k);
 *		if (tu_alloc_step(pno_thing(...), live0))
 *			break;
 *		... checks that nothing else was left behind ...
 *	}
 * A failed check is reported at the caller's line. */
#define tu_alloc_step(s, live0)                                               \
	tu_alloc_step_((s), (live0), #s, __FILE__, __LINE__)
int tu_alloc_step_(enum pno_status s, long live0, const char *expr,
		   const char *file, int line);

struct pno_fno;
/* L = sum(out * r) in double of a forward of x (B inputs), the dropout
 * masks (if any) redrawn from key 5 each call, so every call sees the
 * same masks. */
double tu_fno_probe(struct pno_fno *m, const float *x, const float *r, int B);
/* Normalized error ||g_fd - g|| / ||g_fd|| of parameter tensor t's
 * gradient (m->grads, from a backward of r after tu_fno_probe) against
 * central differences of tu_fno_probe at about `points` evenly strided
 * entries, h = 1e-2 of the tensor's largest entry. Writes its name. */
double tu_fno_grad_error(struct pno_fno *m, int t, const float *x,
			 const float *r, int B, size_t points, char name[48]);

struct pno_dataset;
/* In-memory heat-operator dataset u0 -> u(T), exact: N periodic GRF
 * samples (alpha 2, tau 5, sigma 25; sample n from (seed, n)) on res (x
 * res) points, u(T) with every mode damped by exp(-4 pi^2 |k|^2 kt).
 * Fails the test if memory runs out; free with pno_dataset_free. */
void tu_heat_dataset(struct pno_dataset *d, int dims, int N, int res,
		     double kt, uint64_t seed);

/* A fresh path under the test temp dir ($PNO_TEST_TMP or /tmp). */
const char *tu_tmp_path(const char *name);

/* Number of "<basename of path>.tmp.*" entries in path's directory: the
 * temporaries the atomic writers (h5io, safetensors) create beside it. */
int tu_temps_left(const char *path);

/* The whole of dataset `name` in the HDF5 file `path` as float32
 * (malloc'd: free() it); rank, shape (up to 8 axes) and element count
 * through the out-parameters, each may be NULL. Fails the test if the
 * file or dataset cannot be read. */
float *tu_h5_read(const char *path, const char *name, int *rank,
		  int64_t shape[8], size_t *count);

/* Dataset `name` of two files that must hold the same bits (e.g. written
 * at 1 and at 2 threads): fails the test unless rank, shape and every
 * byte agree. Returns the first file's data as tu_h5_read does. */
float *tu_h5_read_same(const char *path1, const char *path2,
		       const char *name, int *rank, int64_t shape[8],
		       size_t *count);

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
