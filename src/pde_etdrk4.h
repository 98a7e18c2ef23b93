/* ETDRK4 (Cox-Matthews) for 1D periodic pseudo-spectral equations
 *
 *     u_t = L u - (1/2) (u^2)_x,     L diagonal and real in Fourier space,
 *
 * shared by Burgers (L = -nu k^2) and Kuramoto-Sivashinsky (L = k^2 - k^4).
 * The phi-function coefficients are Kassam-Trefethen contour means (long
 * double complex), the quadratic term is dealiased by the 2/3 rule (modes
 * |m| > n/3 of the product are dropped), transforms are FFTW r2c/c2r in
 * double precision with plans made once per workspace. One workspace is
 * used by one thread; nothing is allocated after pno__etdrk4_init. */
#ifndef PNO_PDE_ETDRK4_H
#define PNO_PDE_ETDRK4_H

#include "internal.h"

#include <complex.h>
#include <fftw3.h>

/* Points of the contour mean: M on the full circle |z - hL| = 1, of which
 * the M/2 in the upper half plane are evaluated (L is real, so the mean
 * over the lower half is the complex conjugate). */
#define PNO__ETDRK4_CONTOUR_M 64

struct pno__etdrk4 {
	int n, nh;		/* grid points (even), n/2 + 1 spectral */
	int mmax;		/* dealiasing: product modes |m| <= mmax kept */
	double h;		/* step the coefficients are for (0: none) */
	double *k;		/* (nh) wavenumbers 2 pi m / length */
	double *lin;		/* (nh) L_m: set by the caller, then coeffs */
	double *gi;		/* (nh) N(v) = i gi_m r2c((c2r v)^2), 0 above
				 * mmax; gi = -k/2 / n^2 (r2c is unnormalized) */
	double *E, *E2, *Q, *f1, *f2, *f3;	/* (nh) step coefficients */
	double complex *v;	/* (nh) state: r2c(u), unnormalized */
	double complex *a, *b, *c, *Nv, *Na, *Nb, *Nc;	/* (nh) stages */
	double complex *spec;	/* (nh) transform scratch */
	double *phys;		/* (n) transform scratch */
	fftw_plan r2c, c2r;	/* phys -> spec, spec -> phys */
};

/* Buffers and plans for n points (even, >= 4) on a period of `length`.
 * lin is zero. On failure w is left freed; NOMEM or INTERNAL. `who` names
 * the PDE in messages. */
enum pno_status pno__etdrk4_init(struct pno__etdrk4 *w, int n, double length,
				 const char *who);
/* Safe on a zeroed or freed workspace. */
void pno__etdrk4_free(struct pno__etdrk4 *w);
/* Coefficients for step h from w->lin (skipped if h and lin are those of
 * the previous call: callers that change lin set w->h = 0). */
void pno__etdrk4_coeffs(struct pno__etdrk4 *w, double h);
/* u (n) -> state. */
void pno__etdrk4_load(struct pno__etdrk4 *w, const double *u);
/* One step of w->h. */
void pno__etdrk4_step(struct pno__etdrk4 *w);
/* state -> w->phys (physical values); returns max |u|, or NaN/inf if
 * some value is not finite. */
double pno__etdrk4_physical(struct pno__etdrk4 *w);

#endif
