/* Periodic GRF workspace (src/pde_grf.c): one per thread, reused for
 * every sample; the c2r plan is made once at init. */
#ifndef PNO_PDE_GRF_H
#define PNO_PDE_GRF_H

#include "pno/pde.h"

#include <fftw3.h>

struct pno__grf {
	int dims;
	int n[3];		/* (1,1,X), (1,X,Y) or (X,Y,Z): last axis halved */
	int nh;			/* n[2]/2 + 1 */
	size_t npts, ncoef;
	fftw_complex *c;	/* drawn coefficients (kept) */
	fftw_complex *c2;	/* scratch: c times a multiplier, destroyed */
	double *lam;		/* 4 pi^2 |k|^2 per coefficient */
	double *z;		/* normals */
	fftw_plan plan;
};

enum pno_status pno__grf_init(struct pno__grf *w, int dims, int X, int Y,
			      int Z);
void pno__grf_free(struct pno__grf *w);
/* Draw sample `index`'s coefficients into w->c. */
void pno__grf_draw(struct pno__grf *w, const struct pno_grf_opts *g,
		   uint64_t seed, uint64_t index);
/* out (npts doubles from pno_malloc: the plan's alignment) = the field
 * with mode k multiplied by mult(4 pi^2 |k|^2, ud) (NULL: the field). */
void pno__grf_synth(struct pno__grf *w, double (*mult)(double lam, void *ud),
		    void *ud, double *out);

#endif
