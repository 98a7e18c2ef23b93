/*
 * A model file of any method behind one interface: load, describe,
 * predict. What evaluation, calibration, rollouts, the benchmark and the
 * server use, so each works for every method pno trains (fno, pno-d,
 * pno-r, mc-dropout, vfno, deeponet, ensemble).
 *
 * If the file carries a conformal calibration (metadata key "conformal",
 * written by pno_model_file_set_conformal), predictions are stretched by
 * it (pno_conformal_apply) unless m->use_conformal is cleared.
 */
#ifndef PNO_MODEL_H
#define PNO_MODEL_H

#include "pno/conformal.h"
#include "pno/deeponet.h"
#include "pno/ensemble.h"
#include "pno/fno.h"
#include "pno/predict.h"
#include "pno/vfno.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_t;
struct pno__model_ws;		/* predict_into's workspace (src/predict_into.c) */
struct pno_model {
	char method[16];	/* as recorded in the file */
	int dims, in_ch, out_ch;
	int X, Y;		/* the grid it was loaded for (Y = 1 in 1D) */
	int Bmax;		/* batch bound it was loaded with */
	int stochastic;		/* samples differ (0: fno, deeponet) */
	int has_variance;	/* aleatoric / epistemic parts available */
	struct pno_conformal conformal;	/* present = 0 if none */
	int use_conformal;	/* apply it (1 after load) */
	struct json_t *meta;	/* the file's "__metadata__", parsed (internal) */
	/* one of these holds the model, by method */
	struct pno_fno fno;
	struct pno_vfno vfno;
	struct pno_deeponet don;
	struct pno_ensemble ens;
	struct pno__model_ws *ws;	/* NULL until pno_model_predict_init */
};

/* Load any pno model file for grid X (x Y) and batches up to Bmax (Bmax
 * >= 1; a larger one lets predictions run more samples per forward).
 * Errors as the method's own loader (NOTFOUND, FORMAT, UNSUPPORTED for an
 * unknown method, ...); a malformed "conformal" entry is FORMAT. On
 * failure *m is zeroed. */
enum pno_status pno_model_load(struct pno_model *m, const char *path, int X,
			       int Y, int Bmax);
void pno_model_free(struct pno_model *m);

/* PNO_STATUS_SHAPE, with a message naming both, unless the model fits a
 * dataset of `dims` dimensions, grid X x Y and cin -> cout channels. */
enum pno_status pno_model_check_shape(const struct pno_model *m, int dims,
				      int X, int Y, int cin, int cout,
				      const char *what);

/* S samples at one input x (1, Cin, P) and their summaries, as
 * pno_fno_predict (see predict.h); the conformal scale applied if present
 * and enabled. Same seed, same bits at a fixed thread count. */
enum pno_status pno_model_predict(struct pno_model *m, const float *x, int S,
				  uint64_t seed, const float *q, int nq,
				  struct pno_prediction *p);

/* ---- predicting into the caller's buffers, several inputs at a time ----
 *
 * The serving path: no allocation per call (every scratch buffer is sized
 * once by pno_model_predict_init), outputs written where the caller says,
 * B inputs per call.
 *
 * Input b's answer is bit for bit that of pno_model_predict(m, x_b, S,
 * seeds[b], q, nq): the same draws (randomness depends on (seeds[b],
 * sample index) only) and the same arithmetic, whichever inputs share the
 * call and in which order. So inputs share a forward only where the
 * forward computes each batch element alone: fno / pno-r and ensemble
 * members whose spectral layers run the FFTW path (up to Bmax inputs per
 * forward). The spectral GEMM path (pno_spectral_path_get) and DeepONet's
 * branch net give BLAS one product over the whole batch, whose kernels
 * round by shape (~1e-7 relative), so those run a forward per input; a
 * dropout model (pno-d, mc-dropout) runs each input's samples in batches
 * of Bmax as pno_fno_predict does; vfno per input. The gauss_mu /
 * gauss_sigma parts of pno_prediction are not produced. */

/* Caller-owned outputs of one input (an array of B for B inputs). */
struct pno_predict_out {
	float *mean, *std;	/* (C, P); required */
	float *quantiles;	/* (nq, C, P); required when nq > 0 */
	float *aleatoric;	/* (C, P) or NULL; written only for a model */
	float *epistemic;	/* with has_variance */
	float *samples;		/* (S, C, P) or NULL */
};

/* Size the workspace of pno_model_predict_into for up to max_samples
 * samples per input (1..PNO_PREDICT_MAX_SAMPLES; a later call resizes).
 * Freed by pno_model_free. INVALID for a bad bound, NOMEM; the model is
 * unchanged on failure. */
enum pno_status pno_model_predict_init(struct pno_model *m, int max_samples);

/* B >= 1 inputs x (B, Cin, P), S samples each (S <= the reserved bound),
 * input b drawn with seeds[b], quantile levels q (nq in [0,
 * PNO_PREDICT_MAX_QUANTILES], each in (0, 1)), conformal scale applied as
 * pno_model_predict does. Allocates nothing. INVALID (naming the value)
 * for bad arguments, a missing required output or no workspace. out[b]
 * receives input b's answer. */
enum pno_status pno_model_predict_into(struct pno_model *m,
				       const float *x, /* (B, Cin, P) */
				       int B, int S,
				       const uint64_t *seeds, /* (B) */
				       const float *q, int nq,
				       const struct pno_predict_out *out /* (B) */);

/* How many inputs pno_model_predict_into runs per forward: Bmax where
 * they share one (see above), else 1 (one after another: a caller that
 * answers per input gains nothing by calling with more at once). */
int pno_model_predict_batch(const struct pno_model *m);

/* The string metadata value of key in the file, NULL if absent. */
const char *pno_model_meta(const struct pno_model *m, const char *key);

/* Set metadata entry key to the string value (NULL: remove it) in the
 * model file at path, atomically: every tensor and every other entry
 * unchanged. Keys the model's writer owns (format, method, architecture,
 * normalization, grid, ...) are refused: INVALID. */
enum pno_status pno_model_file_set_meta(const char *path, const char *key,
					const char *value);

/* Store c (NULL: remove any calibration) in the model file at path as
 * the entry "conformal" (pno_model_file_set_meta), removing any recorded
 * evaluation ("evaluation"): it describes the distribution served before. */
enum pno_status pno_model_file_set_conformal(const char *path,
					     const struct pno_conformal *c);

#ifdef __cplusplus
}
#endif
#endif
