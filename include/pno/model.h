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

/* The string metadata value of key in the file, NULL if absent. */
const char *pno_model_meta(const struct pno_model *m, const char *key);

/* Set metadata entry key to the string value (NULL: remove it) in the
 * model file at path, atomically: every tensor and every other entry
 * unchanged. Keys the model's writer owns (format, method, architecture,
 * normalization, grid, ...) are refused: INVALID. */
enum pno_status pno_model_file_set_meta(const char *path, const char *key,
					const char *value);

/* Store c (NULL: remove any calibration) in the model file at path as
 * the entry "conformal" (pno_model_file_set_meta). */
enum pno_status pno_model_file_set_conformal(const char *path,
					     const struct pno_conformal *c);

#ifdef __cplusplus
}
#endif
#endif
