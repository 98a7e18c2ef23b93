/* Model files: what the model formats (FNO family, vfno, DeepONet,
 * ensembles) share (internal, not installed).
 *
 * A pno model is a safetensors file whose "__metadata__" values are all
 * strings, in this order:
 *   "format": "pno", "pno_version", "method",
 *   the format's own keys (an ensemble's "members", vfno's "vfno", ...),
 *   "architecture" and "normalization" (JSON text), "grid": "[X, Y]",
 *   then the caller's extra keys.
 * The caller's extra metadata must be a JSON object of strings and may not
 * name a key the model writes itself: such a key is refused
 * (PNO_STATUS_INVALID, "would replace the model's own"), never silently
 * overwritten, so a file always says truthfully what it holds.
 *
 * Saving: pno__json_init(), build the architecture and normalization
 * text, then pno__model_write. Loading: pno__model_open, then
 * pno__meta_require / pno__meta_grid / pno__norm_parse and pno__model_take
 * for each tensor. All jansson text goes through the pno__json_* wrappers
 * (see src/json.c). */
#ifndef PNO_MODEL_IO_H
#define PNO_MODEL_IO_H

#include "internal.h"
#include "pno/io.h"

struct json_t;

/* ---- saving ---- */

/* What a model writes about itself (own: NULL or a NULL-terminated list of
 * key, value, key, value, ... placed after "method"). */
struct pno__model_meta {
	const char *method;
	const char *const *own;
	char *arch, *norm;	/* JSON text (pno_malloc'd), freed by the write */
	int X, Y;
};

/* The metadata of mm plus extra_json (may be NULL), then the n tensors to
 * path; frees mm->arch and mm->norm. PNO_STATUS_INVALID for bad extra
 * metadata, PNO_STATUS_NOMEM if views, arch or norm is NULL (the caller's
 * allocation failed) or any jansson allocation failed since
 * pno__json_init(). */
enum pno_status pno__model_write(const char *path,
				 const struct pno_tensor_view *views, int n,
				 const struct pno__model_meta *mm,
				 const char *extra_json);

/* Compact JSON text in key order, reals to 9 significant digits (enough to
 * bring a float back to the same bits); free with pno_free. NULL on
 * failure. */
char *pno__json_text(const struct json_t *o);

/* ---- loading ---- */

/* Read path and its metadata: "format" must be "pno" (else
 * PNO_STATUS_FORMAT) and "method" one of `methods`, a ", "-separated list
 * (else PNO_STATUS_UNSUPPORTED: "load it with its own method"). On failure
 * *sf is zeroed and *md NULL. Release with json_decref and
 * pno_safetensors_free. */
enum pno_status pno__model_open(struct pno_safetensors *sf,
				struct json_t **md, const char *path,
				const char *methods);
/* 1 if name is one of the ", "-separated list. */
int pno__name_listed(const char *name, const char *list);
/* The string value of key, NULL if absent or not a string. */
const char *pno__meta_string(const struct json_t *md, const char *key);
/* The same, PNO_STATUS_FORMAT ("metadata has no ...") if absent. */
enum pno_status pno__meta_require(const char **out, const struct json_t *md,
				  const char *key, const char *path);
/* "grid": "[X, Y]". */
enum pno_status pno__meta_grid(int *X, int *Y, const struct json_t *md,
			       const char *path);

/* One tensor of the file into dst: present, of the shape wanted, finite.
 * `who` ("" or "member 2: ") goes before the tensor in messages. */
enum pno_status pno__model_take(float *dst, const struct pno_safetensors *sf,
				const char *path, const char *who,
				const char *name, int ndim,
				const int64_t *shape, size_t count);

/* ---- the FNO family ---- */

/* Its writer (src/fno_io.c; fno_internal.h is the trainer's view of it):
 * m's tensors then xt, under `method` (NULL: m's own) and the format's
 * own keys. Call pno__json_init() first. */
struct pno_fno;
enum pno_status pno__fno_write(const struct pno_fno *m, const char *path,
			       const char *method, const char *const *own,
			       const char *extra_json,
			       const struct pno_tensor_view *xt, int n_xt);

/* ---- normalization ---- */

/* The four arrays of a normalization struct (pno_fno_norm,
 * pno_deeponet_norm): in_mean, in_std (ci long), out_mean, out_std (co). */
#define PNO__NORM_ARRAYS(n) {(n)->in_mean, (n)->in_std, (n)->out_mean, (n)->out_std}

/* {"in_mean": [...], "in_std": [...], "out_mean": [...], "out_std": [...]} */
struct json_t *pno__norm_json(const float *const *v, int ci, int co);
/* The same as JSON text (pno__json_text); NULL on failure. */
char *pno__norm_text(const float *const *v, int ci, int co);
/* That object back into v; every value finite, |x| <= 1e30, stds > 0.
 * member >= 0 names an ensemble member in messages. */
enum pno_status pno__norm_from_json(float *const *v, const struct json_t *o,
				    int ci, int co, const char *path,
				    int member);
/* The same from JSON text. */
enum pno_status pno__norm_parse(float *const *v, const char *text, int ci,
				int co, const char *path);

#endif
