/* Internal FNO file helpers shared by the model and the trainer. */
#ifndef PNO_FNO_INTERNAL_H
#define PNO_FNO_INTERNAL_H

#include "pno/fno.h"
#include "pno/io.h"

/* pno_fno_save plus extra tensors (optimizer state) in the same file. */
enum pno_status pno__fno_save_ext(const struct pno_fno *m, const char *path,
				  const char *extra_json,
				  const struct pno_tensor_view *xt, int n_xt);

#endif
