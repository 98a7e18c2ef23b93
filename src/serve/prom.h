/*
 * Prometheus metrics for the server: a registry of families (counter,
 * gauge, histogram), each with fixed label names, exposed in the text
 * format 0.0.4 (one HELP and one TYPE line per family; histogram buckets
 * cumulative with le="+Inf" equal to _count; _sum and _count).
 *
 * Naming follows the Prometheus rules: [a-zA-Z_:][a-zA-Z0-9_:]* names,
 * counters end in _total, units in the name (_seconds, _bytes); label
 * values escaped (\\, \", \n). Registration validates names and returns
 * INVALID with the reason.
 *
 * Thread safety: observations (inc, set, observe) are lock-free atomics on
 * a series found by its label values (a linear search of the published
 * series, no lock); a series is created on its first use under the
 * family's mutex (bounded per family: beyond max_series the observation is
 * dropped and counted in pno_prom_dropped_series_total, which every
 * registry has; so is an observation whose series could not be allocated
 * or whose label values are missing). Exposition takes a consistent-enough
 * snapshot (each value read atomically; a histogram's _count is the sum
 * of its buckets as read, so le="+Inf" always equals _count) without
 * stopping observers. Registration and exposition serialize on the
 * registry's mutex.
 *
 * Observations that make no sense are ignored: NaN anywhere, a negative
 * counter increment, inc/set/observe on a family of another type.
 */
#ifndef PNO_SERVE_PROM_H
#define PNO_SERVE_PROM_H

#include "pno/core.h"

#include <stddef.h>

enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM };

struct prom_registry;
struct prom_family;

#define PROM_MAX_LABELS 4
#define PROM_MAX_BUCKETS 32

enum pno_status prom_registry_new(struct prom_registry **r);
void prom_registry_free(struct prom_registry *r);

/* Register a family. labels: NULL-terminated names (at most
 * PROM_MAX_LABELS; [a-zA-Z_][a-zA-Z0-9_]*, not __*, not le on a
 * histogram) or NULL; buckets: 1..PROM_MAX_BUCKETS increasing finite upper
 * bounds for histograms (+Inf is implicit), NULL and 0 otherwise.
 * max_series 0: 1024 (a family without labels has its one series from the
 * start, so it is exposed with 0 before any observation). A name that is
 * invalid, a counter not ending in _total (or a non-counter that does), or
 * a name whose samples would clash with a registered family's: INVALID.
 * *f stays owned by the registry. */
enum pno_status prom_register(struct prom_registry *r, struct prom_family **f,
			      enum prom_type type, const char *name,
			      const char *help, const char *const *labels,
			      const double *buckets, int n_buckets,
			      int max_series);

/* Observations; label_values has one value per label name (NULL for a
 * family without labels). */
void prom_inc(struct prom_family *f, const char *const *label_values,
	      double v);		/* counter (v >= 0) or gauge */
void prom_set(struct prom_family *f, const char *const *label_values,
	      double v);		/* gauge */
void prom_observe(struct prom_family *f, const char *const *label_values,
		  double v);		/* histogram */

/* Standard process metrics refreshed at each exposition:
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_start_time_seconds, process_open_fds,
 * process_max_fds (from /proc/self, /proc/stat and getrlimit). Once per
 * registry (INVALID the second time). */
enum pno_status prom_register_process(struct prom_registry *r);

/* Refresh the process metrics now (as an exposition does) and read them:
 * the monitor's periodic sample shares the exported gauges. INVALID if the
 * registry has no process metrics. */
struct prom_process_values {
	double resident_bytes, virtual_bytes, cpu_seconds, open_fds, max_fds;
};
enum pno_status prom_process_sample(struct prom_registry *r,
				    struct prom_process_values *out);

/* A counter's or gauge's current value for these label values (NULL for
 * a family without labels); NAN if the series does not exist (never
 * creates it) or f is a histogram. */
double prom_value(struct prom_family *f, const char *const *label_values);

/* The whole registry as text format 0.0.4 into a malloc'd (pno_malloc)
 * NUL-terminated buffer; *len its length. NOMEM on failure. */
enum pno_status prom_expose(struct prom_registry *r, char **text, size_t *len);

/* Helpers for buckets: n exponential bounds start * factor^i (each the
 * previous times factor). */
void prom_exp_buckets(double *out, double start, double factor, int n);

#endif
