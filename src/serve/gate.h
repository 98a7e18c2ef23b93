/*
 * Quality gates: whether a model version may go live, judged from the
 * evaluation summary stored in its metadata ("evaluation", written by
 * `pno eval --record`) against a gates config, and optionally against the
 * live version's summary. `pno gate` runs the check offline; the server
 * runs it before a version becomes ready.
 *
 * Gates config (JSON object; every key optional, unknown keys refused):
 *   "max_rel_l2": x          relative L2 of the mean <= x
 *   "coverage90": [lo, hi]   90% central-interval coverage in [lo, hi]
 *   "max_calib_error": x     calibration error <= x
 *   "max_crps_regression": t CRPS <= (1 + t) x the baseline's CRPS; the
 *                            baseline must have been evaluated on the same
 *                            data (file hash), split and sample count
 * The figures judged are the ones the model serves: after its conformal
 * calibration when it has one ("calibrated" in the summary).
 * A gate that cannot be judged (no evaluation recorded, no baseline for a
 * regression gate, a baseline on other data) fails with the reason: a
 * version is never made live on a check that did not run.
 */
#ifndef PNO_SERVE_GATE_H
#define PNO_SERVE_GATE_H

#include "pno/core.h"

struct gate_config {
	int has_rel_l2, has_cov90, has_calib, has_crps;
	double max_rel_l2;
	double cov90_lo, cov90_hi;
	double max_calib_error;
	double max_crps_regression;
};

/* From JSON text (source names it in messages) or a file. INVALID with
 * the key and the allowed range for a bad entry; NOTFOUND for a missing
 * file. On failure *g is zeroed. */
enum pno_status gate_config_parse(struct gate_config *g, const char *text,
				  const char *source);
enum pno_status gate_config_load(struct gate_config *g, const char *path);

#define GATE_MAX_VERDICTS 8

struct gate_verdict {
	char name[32];		/* "rel_l2", "coverage90", ... */
	int pass;
	char detail[256];	/* e.g. "0.0213 <= 0.05" or the reason */
};

/* Judge an evaluation summary (JSON text, NULL if the model has none)
 * against g and, for the regression gate, the baseline's summary (NULL:
 * none). Fills v[0..*n) in a fixed order and returns 1 if every gate
 * passes, 0 otherwise. With no gate configured it returns 1 and *n = 0. */
int gate_check(const struct gate_config *g, const char *eval_json,
	       const char *baseline_json, struct gate_verdict *v, int *n);

#endif
