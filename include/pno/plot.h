/*
 * PNG figures for evaluation and the benchmark, drawn with PLplot
 * (device "pngcairo").
 *
 *   pno_plot_fields       a row of fields: 2D as colour maps (a
 *                         viridis-like map, each panel with its own colour
 *                         bar and value range), 1D as line plots
 *   pno_plot_uq           one test input of a probabilistic method: input,
 *                         truth, predictive mean, std and |mean - truth|
 *                         (2D: five colour maps; 1D: three panels, the
 *                         middle one truth and mean with a +/- 2 std band)
 *   pno_plot_reliability  quantile calibration: observed frequency of
 *                         truth <= q_p against p, one line per method,
 *                         with the diagonal
 *   pno_plot_coverage     empirical coverage of central intervals against
 *                         their nominal level, one line per method
 *   pno_plot_curves       generic lines against x (rollout error, std
 *                         growth), optionally on a log y axis
 *
 * Fields are (X, Y) row-major, data[i * Y + j] at x_i = i / X,
 * y_j = j / Y on the unit square, drawn with x to the right and y up;
 * 1D fields are (X). Every input is checked before PLplot is touched: a
 * non-finite value is PNO_STATUS_INVALID naming the panel (or series) and
 * index (it is not drawn masked: a NaN in a prediction is a bug to see,
 * not to hide). A constant field or series still plots (its range is
 * widened). At most PNO_PLOT_MAX_SERIES panels, methods or series.
 *
 * Output is atomic: the figure is rendered to "<path>.tmp.XXXXXX" beside
 * the target, fsynced and renamed over it; any failure removes the
 * temporary and leaves an existing file untouched. An unwritable
 * directory is PNO_STATUS_IO. PLplot is not thread-safe: every figure is
 * drawn under one process-wide lock, so the functions may be called from
 * any thread (figures are serialized). PLplot's fatal-error exit is
 * caught (the process never exits); a PLplot failure is
 * PNO_STATUS_INTERNAL with PLplot's message. Do not use PLplot elsewhere
 * in the same process while a figure is drawn.
 */
#ifndef PNO_PLOT_H
#define PNO_PLOT_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_PLOT_MAX_SERIES 16
#define PNO_PLOT_MIN_PIXELS 64
#define PNO_PLOT_MAX_PIXELS 8192

/* Image size in pixels; 0 picks the default of each figure (field rows:
 * max(600, 280 * panels) x 400, diagrams 600 x 600, curves 800 x 500).
 * A NULL options pointer means all defaults. */
struct pno_plot_opts {
	int width;
	int height;
};

struct pno_plot_panel {
	const char *title;	/* may be NULL */
	const float *data;	/* (X, Y) row-major for 2D, (X) for 1D */
};

/* n_panels fields side by side (dims 1 or 2; Y is ignored for dims 1). */
enum pno_status pno_plot_fields(const char *path, const char *title, int dims,
				int X, int Y, int n_panels,
				const struct pno_plot_panel *panels,
				const struct pno_plot_opts *opts);

/* One test function of a probabilistic prediction. */
struct pno_plot_uq {
	const float *input;	/* may be NULL: no input panel */
	const float *truth;	/* required */
	const float *mean;	/* required */
	const float *std;	/* may be NULL: no std panel / band */
};
/* dims 2: input, truth, mean, std, |mean - truth| as colour maps.
 * dims 1: input | truth and mean with the mean +/- 2 std band |
 * |mean - truth| with 2 std. Each array is (X, Y) or (X). */
enum pno_status pno_plot_uq(const char *path, const char *title, int dims,
			    int X, int Y, const struct pno_plot_uq *f,
			    const struct pno_plot_opts *opts);

/* Reliability diagram: observed[m * n_levels + k] is method m's observed
 * frequency at nominal quantile level nominal[k]; all in [0, 1]. */
enum pno_status pno_plot_reliability(const char *path, const char *title,
				     int n_methods, const char *const *names,
				     const double *nominal,	/* (n_levels) */
				     const double *observed,	/* (n_methods, n_levels) */
				     int n_levels,
				     const struct pno_plot_opts *opts);

/* Coverage of central intervals: observed[m * n_levels + k] is the
 * fraction of truths inside method m's central interval of nominal level
 * nominal[k]; all in [0, 1]. */
enum pno_status pno_plot_coverage(const char *path, const char *title,
				  int n_methods, const char *const *names,
				  const double *nominal,	/* (n_levels) */
				  const double *observed,	/* (n_methods, n_levels) */
				  int n_levels,
				  const struct pno_plot_opts *opts);

/* Lines y[s * n + i] against x[i] (increasing or not), one per series,
 * with a legend. log_y: logarithmic y axis (every y must be > 0). */
enum pno_status pno_plot_curves(const char *path, const char *title,
				const char *xlabel, const char *ylabel,
				int n_series, const char *const *names,
				const double *x,	/* (n) */
				const double *y,	/* (n_series, n) */
				int n, int log_y,
				const struct pno_plot_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
