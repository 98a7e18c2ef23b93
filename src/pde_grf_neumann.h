/* Neumann Gaussian random fields with a reusable workspace (one DCT-I plan
 * per workspace, i.e. per thread): used by pno_grf_neumann and the Darcy
 * generator. */
#ifndef PNO_PDE_GRF_NEUMANN_H
#define PNO_PDE_GRF_NEUMANN_H

#include "pno/pde.h"

#include <fftw3.h>

struct pno__grf_neumann {
	int dims, X, Y;		/* Y = 1 in 1D */
	double *scale;		/* (X, Y) sd_k times the DCT-I input factors */
	double *c;		/* (X, Y) coefficients, transformed in place */
	fftw_plan plan;
};

/* Check the GRF parameters (tau > 0 unless alpha == 0, so the constant
 * mode has finite variance). `who` prefixes the message ("darcy"). */
enum pno_status pno__grf_neumann_check(const struct pno_grf_opts *g,
				       const char *who);
/* Build the workspace for a (dims, X, Y) field; safe to _free after a
 * failure. PNO_STATUS_NOMEM / INTERNAL (plan) / INVALID (sizes).
 * zero_mean: leave out the constant mode k = 0 (the field's integral,
 * its trapezoid-rule mean on the vertex grid, is then exactly 0 — not its
 * plain arithmetic mean — as in FNO's Darcy data); the other modes are drawn from the
 * same normals as with it, so only the constant shift differs. */
enum pno_status pno__grf_neumann_init(struct pno__grf_neumann *w, int dims,
				      int X, int Y,
				      const struct pno_grf_opts *g,
				      int zero_mean);
void pno__grf_neumann_free(struct pno__grf_neumann *w);
/* Sample `index` into out (X*Y doubles, row-major, x_i = i/(X-1) along
 * the first axis). Allocates nothing. */
void pno__grf_neumann_draw(struct pno__grf_neumann *w, double *out,
			   uint64_t seed, uint64_t index);

#endif
