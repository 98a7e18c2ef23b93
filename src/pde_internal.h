/* The generator driver shared by all PDEs (src/pde_gen.c): parallel loop
 * over samples, per-thread workspaces, progress and cancellation, and the
 * atomic streaming HDF5 output. A PDE module only describes its outputs
 * and computes one sample. */
#ifndef PNO_PDE_INTERNAL_H
#define PNO_PDE_INTERNAL_H

#include "pno/io.h"
#include "pno/pde.h"

#define PNO__GEN_MAX_OUT 4
#define PNO__GEN_MAX_FIXED 4
#define PNO__GEN_MAX_ATTRS 40

/* A per-sample output dataset: stored with shape (N, shape...). */
struct pno__gen_out {
	const char *name;
	int ndim;			/* rank of one sample */
	int64_t shape[PNO_MAX_DIMS - 1];
};

struct pno__gen {
	const char *pde;		/* root attribute "pde", messages */
	const struct pno_gen_base *base;
	int n_out;
	struct pno__gen_out out[PNO__GEN_MAX_OUT];
	int n_fixed;			/* coordinates, written as given */
	struct pno_h5_array fixed[PNO__GEN_MAX_FIXED];
	int n_attrs;			/* PDE-specific root attributes; the
					 * driver adds pde, pno_version, seed,
					 * samples, resolution */
	struct pno_h5_attr attrs[PNO__GEN_MAX_ATTRS];
	void *ctx;
	/* Per-thread workspace (may be NULL: none). On failure returns a
	 * status with its message set (pno__errorf). */
	enum pno_status (*ws_new)(void *ctx, void **ws);
	void (*ws_free)(void *ctx, void *ws);
	/* Compute sample `index` into out[k] (one sample of output k, float).
	 * A non-OK status stops the run; the sample's message (pno__errorf)
	 * becomes the run's error. */
	enum pno_status (*sample)(void *ctx, void *ws, uint64_t index,
				  float *const *out);
};

/* Append a string / number attribute (silently ignored past the cap; the
 * cap is far above what any generator needs). */
void pno__gen_attr_str(struct pno__gen *g, const char *name, const char *v);
void pno__gen_attr_num(struct pno__gen *g, const char *name, double v);

/* Checks base (samples in [1, 1e7]), the output path, the total size;
 * then runs. */
enum pno_status pno__generate(const struct pno__gen *g, const char *path,
			      int overwrite);

/* Inside a sample: has the run been cancelled (by the user's flag or by
 * another sample's failure)? Solvers poll it between frames and every
 * PNO__CANCEL_POLL steps; outside a generator run it is always 0. */
int pno__gen_cancelled(void);
#define PNO__CANCEL_POLL 256
/* The status a solver returns when it sees pno__gen_cancelled(). */
enum pno_status pno__gen_cancel_status(const char *pde);

/* Evenly spaced coordinates: c[i] = i * step, i < n (pno_malloc'd). */
float *pno__coords(int n, double step);

/* Number of whole steps of at most dt_max in an interval dt_out (>= 1). */
long pno__steps_per_interval(double dt_out, double dt_max);

#endif
