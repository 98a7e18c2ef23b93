/* Internal: the parts of a predictive summary shared by the FNO family
 * (src/predict.c) and the deep ensemble (src/ensemble.c). */
#ifndef PNO_PREDICT_INTERNAL_H
#define PNO_PREDICT_INTERNAL_H

#include "pno/predict.h"

/* Check a request: x not NULL, S in [1, PNO_PREDICT_MAX_SAMPLES], nq in
 * [0, PNO_PREDICT_MAX_QUANTILES], every level in (0, 1). INVALID with the
 * offending value otherwise. */
enum pno_status pno__predict_check(const float *x, int S, const float *q,
				   int nq);

/* Size *p for S samples of (C, P) and nq levels (copied from q): samples,
 * mean, std, levels, quantiles, and aleatoric/epistemic if `decomp`. On
 * failure *p is released and zeroed (NOMEM). */
enum pno_status pno__prediction_alloc(struct pno_prediction *p, int S, int C,
				      int P, const float *q, int nq,
				      int decomp);

/* Fill mean, std (divisor S - 1, 0 if S = 1) and the type-7 quantiles
 * from p->samples. col: scratch of S floats. */
void pno__prediction_summarize(struct pno_prediction *p,
			       float *col /* (S) scratch */);

struct pno__model_ws;
/* Release pno_model_predict_init's workspace (NULL is fine). */
void pno__model_ws_free(struct pno__model_ws *w);

#endif
