/*
 * Input drift: reference statistics of a model's training inputs, and a
 * live monitor comparing a sliding window of request inputs with them.
 *
 * Reference (per input channel, over every point of every training input):
 * mean and standard deviation (population, double accumulation); the 9
 * decile edges (type-7 quantiles of all points); the fraction of points in
 * each of the 10 bins the edges make (bin b holds e_b < v <= e_{b+1}, with
 * e_0 = -inf, e_10 = +inf; with ties the fractions differ from 0.1, so
 * they are stored rather than assumed); the spectral energy by wavenumber
 * shell, shell k = round(|kvec|), each input's sum of |F|^2 / P^2 over the
 * shell averaged over inputs, the tail past min(X, Y)/2 pooled into the
 * last shell so the shells sum to the mean of v^2 (Parseval); and a
 * reference sample of R points: the (i + 0.5)/R quantiles of all points,
 * i = 0..R-1, sorted (a deterministic sketch of the distribution for the
 * KS test). drift_ref_to_json / drift_ref_from_json store it as JSON text
 * for the model's metadata; reals are written with 17 significant digits
 * so the round trip is exact.
 *
 * Monitor: each observed input contributes P points per channel, at grid
 * positions drawn stratified (one uniformly in each of P equal runs of
 * the flattened grid) from Philox(seed, input number), so a run is
 * reproducible. The last W inputs' points are kept in a ring (W * P per
 * channel, sized at init; nothing allocates after). Per channel:
 *   PSI = sum_b (a_b - e_b) ln(a_b / e_b)
 * over the 10 decile bins, a the window's fractions, e the reference's,
 * each floored at eps = 1e-4 so an empty bin gives a large finite term;
 *   KS  D = sup_t |F_window(t) - F_ref(t)|
 * two-sample against the reference sample, with the asymptotic p-value
 * Q_KS((sqrt(ne) + 0.12 + 0.11/sqrt(ne)) D), ne = n m / (n + m)
 * (Stephens), and the critical value c(alpha) sqrt((n + m) / (n m)),
 * c(alpha) = sqrt(-ln(alpha / 2) / 2).
 * The points of one input field are spatially correlated, so the KS
 * p-value (which assumes independent points) is far too small for real
 * fields: it is exported as a distance, and only PSI raises alerts
 * unless ks_alert is set. Levels: PSI > psi_warn (0.1) warn, > psi_crit
 * (0.25) critical, the worst channel deciding, evaluated once the window
 * holds min_inputs inputs (default W).
 *
 * Thread safety: a monitor's observe and evaluate serialize on its mutex;
 * the reference must outlive the monitor and not change under it.
 */
#ifndef PNO_SERVE_DRIFT_H
#define PNO_SERVE_DRIFT_H

#include "pno/core.h"
#include "pno/io.h"

#include <pthread.h>
#include <stdint.h>

#define DRIFT_EDGES 9
#define DRIFT_BINS 10
#define DRIFT_MAX_SHELLS 512
#define DRIFT_PSI_EPS 1e-4

struct drift_ref {
	int C, dims, X, Y;
	int64_t n_inputs;		/* inputs it was computed from */
	int n_shells;
	int sample_size;		/* R */
	double *mean, *std;		/* (C) */
	double *edges;			/* (C, 9) non-decreasing */
	double *bin_frac;		/* (C, 10) summing to 1 */
	double *shell_energy;		/* (C, n_shells) */
	float *sample;			/* (C, R) ascending */
};

/* From inputs x (N, C, X[, Y]) row-major, finite; R in [10, 100000]
 * (1000 is a good default). INVALID for bad dimensions, NONFINITE naming
 * the input and channel, NOMEM, INTERNAL if FFTW cannot plan. */
enum pno_status drift_ref_compute(struct drift_ref *r, const float *x, int N,
				  int C, int dims, int X, int Y, int R);
/* The same from a dataset's inputs. */
enum pno_status drift_ref_from_dataset(struct drift_ref *r,
				       const struct pno_dataset *d, int R);
void drift_ref_free(struct drift_ref *r);	/* safe on a zeroed struct */

/* JSON text (pno_malloc'd, NUL-terminated) and back. from_json: FORMAT
 * naming the field that is missing, of the wrong length or out of order;
 * NOMEM. On failure *r is zeroed. */
enum pno_status drift_ref_to_json(const struct drift_ref *r, char **json);
enum pno_status drift_ref_from_json(struct drift_ref *r, const char *json);

enum drift_level { DRIFT_OK = 0, DRIFT_WARN = 1, DRIFT_CRITICAL = 2 };
const char *drift_level_name(enum drift_level l);	/* "ok" ... */

struct drift_config {
	int window;			/* W inputs, 1..100000 */
	int points;			/* P per input and channel (clipped to the grid) */
	int min_inputs;			/* 0: W */
	double psi_warn, psi_crit;	/* 0 < warn <= crit */
	double ks_alpha;		/* (0, 1) */
	int ks_alert;			/* 1: p < ks_alpha raises at least warn */
	uint64_t seed;
};
/* W 200, P 64, min_inputs W, warn 0.1, critical 0.25, alpha 0.01, KS
 * alerts off, seed 0. */
struct drift_config drift_config_default(void);

struct drift_channel {
	double psi;
	double ks_d, ks_p, ks_crit;	/* with_ks only, else 0, 1, 0 */
	double mean, mean_shift;	/* window mean; (mean - ref) / ref std */
};

struct drift_report {
	int ready;			/* window holds min_inputs inputs */
	int inputs;			/* in the window */
	int64_t observed;		/* since init */
	enum drift_level level;
	double psi_max, ks_max;
	int worst;			/* channel of psi_max */
};

struct drift_monitor {
	pthread_mutex_t mu;
	struct drift_config cfg;
	const struct drift_ref *ref;
	int C, P, npts, wp;		/* wp = W * P */
	float *vals;			/* (C, W*P) ring of points */
	uint8_t *bins;			/* (C, W*P) their bins */
	int64_t *counts;		/* (C, 10) window bin counts */
	float *sortbuf;			/* (W*P) */
	float *u;			/* (P) */
	int *idx;			/* (P) */
	int64_t observed;
	int head, filled;
	int init;
};

enum pno_status drift_monitor_init(struct drift_monitor *m,
				   const struct drift_ref *ref,
				   const struct drift_config *cfg);
void drift_monitor_free(struct drift_monitor *m);	/* safe on zeroed */
/* One input x (C, X[, Y]) of the reference's shape. NONFINITE (nothing
 * recorded) if a sampled point is not finite. */
enum pno_status drift_observe(struct drift_monitor *m, const float *x);
/* The current statistics; ch (may be NULL) receives C entries. with_ks
 * sorts the window (O(W P log(W P)) per channel); PSI alone is O(C). */
void drift_evaluate(struct drift_monitor *m, struct drift_report *rep,
		    struct drift_channel *ch, int with_ks);

/* Building blocks, exposed for tests. */
double drift_psi(const double *a, const double *e, int nbins, double eps);
/* D of sorted a[0..n) and sorted b[0..m) */
double drift_ks_stat(const float *a, int n, const float *b, int m);
double drift_ks_pvalue(double d, int n, int m);
double drift_ks_critical(double alpha, int n, int m);

#endif
