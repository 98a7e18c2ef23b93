/*
 * PDE data generators and the solvers behind them.
 *
 * Every generator writes a dataset in PDEBench's HDF5 layout (see io.h)
 * atomically (temporary file, renamed when complete) with root attributes
 * recording the PDE, every parameter, the solver, time step, grid, seed
 * and pno version. Samples are computed in parallel (OpenMP); sample i
 * depends only on (seed, i), so the file is the same for any thread count.
 *
 * Random initial fields are Gaussian random fields
 * N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha)):
 *   periodic  on [0,1)^d, grid points i/X (FFT),
 *   Neumann   on [0,1]^d, grid points i/(X-1) including the boundary
 *             (cosine series, DCT-I).
 *
 * The single-sample solvers are public so that tests (and users) can run
 * them on chosen initial data: pno_darcy_solve, pno_burgers_solve,
 * pno_ks_solve, pno_ns_solve.
 */
#ifndef PNO_PDE_H
#define PNO_PDE_H

#include "pno/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- common ---- */

/* Called after each finished sample, serialized (never concurrently),
 * from any thread. Return nonzero to cancel: the generator stops, removes
 * its temporary file and returns PNO_STATUS_CANCELLED. */
typedef int (*pno_progress_fn)(void *ud, long done, long total);

struct pno_gen_base {
	int samples;		/* N >= 1 */
	int res;		/* output grid points per axis */
	uint64_t seed;
	pno_progress_fn progress;	/* NULL: none */
	void *progress_ud;
	/* If not NULL, polled between output frames and every few hundred
	 * time steps of every sample: nonzero cancels the run within about
	 * that much work (PNO_STATUS_CANCELLED, nothing written). May be set
	 * from a signal handler. */
	const volatile int *cancel;
};

/* Statistics of one solve (for tests and attributes). */
struct pno_solve_stats {
	long steps;		/* time steps or solver iterations */
	double dt;		/* time step used (time-dependent solvers) */
	double residual;	/* final relative residual (darcy) */
};

struct pno_grf_opts {
	double alpha, tau, sigma;
};

/* Periodic GRF sample `index` on an X (x Y (x Z)) grid, dims 1..3 (unused
 * sizes are ignored), written to out (row-major doubles). Mode k (integer
 * vector) has standard deviation sigma (4 pi^2 |k|^2 + tau^2)^(-alpha/2).
 * If `decay` is not NULL, each mode is also multiplied by
 * decay(4 pi^2 |k|^2, ud) and the result written to out2: this applies a
 * diagonal operator exactly (the heat equation). */
enum pno_status pno_grf_periodic(double *out, double *out2, int dims, int X,
				 int Y, const struct pno_grf_opts *g,
				 uint64_t seed, uint64_t index,
				 double (*decay)(double lambda, void *ud),
				 void *ud);
enum pno_status pno_grf_periodic3(double *out, int X, int Y, int Z,
				  const struct pno_grf_opts *g, uint64_t seed,
				  uint64_t index);

/* Neumann GRF sample on the vertex grid x_i = i/(X-1) (X, Y >= 2; Y
 * ignored in 1D): u = sum_k sd_k z_k phi_k with phi_k the L2-orthonormal
 * cosines (1, sqrt2 cos(pi k x), products in 2D), k_i = 0..X-1, and
 * sd_k = sigma (pi^2 |k|^2 + tau^2)^(-alpha/2). */
enum pno_status pno_grf_neumann(double *out, int dims, int X, int Y,
				const struct pno_grf_opts *g, uint64_t seed,
				uint64_t index);

/* ---- heat (exact) ---- */
struct pno_heat_opts {
	struct pno_gen_base base;	/* res default 256 / 64 / 32 */
	int dims;		/* 1, 2 or 3 */
	double kappa;		/* diffusivity, default 0.01 */
	double t_final;		/* default 0.2 */
	double dt_out;		/* 0: two frames (t = 0, t_final) */
	struct pno_grf_opts grf;	/* alpha 2, tau 5, sigma 25 */
};
void pno_heat_opts_default(struct pno_heat_opts *o, int dims);
/* Periodic heat equation u_t = kappa Laplacian u, exact in Fourier space.
 * Writes `tensor` (N, T, X[, Y[, Z]]) with frames t = 0, dt_out, ...,
 * t_final (T = 2 if dt_out is 0), `t-coordinate` (T), `x-coordinate`
 * (and y, z) at i/X. */
enum pno_status pno_generate_heat(const struct pno_heat_opts *o,
				  const char *path, int overwrite);

/* ---- wave (exact) ---- */
struct pno_wave_opts {
	struct pno_gen_base base;	/* res default 64 */
	double c;		/* wave speed, default 1 */
	double t_final;		/* default 2 */
	double dt_out;		/* default 0.1 */
	struct pno_grf_opts grf;	/* initial displacement; velocity 0 */
};
void pno_wave_opts_default(struct pno_wave_opts *o);
/* u_tt = c^2 Laplacian u on the periodic unit square, exact per Fourier
 * mode: u_k(t) = u0_k cos(c |k| t) (initial velocity zero). Writes
 * `tensor` (N, T, H, W), `t-coordinate`, `x-coordinate`, `y-coordinate`. */
enum pno_status pno_generate_wave(const struct pno_wave_opts *o,
				  const char *path, int overwrite);

/* ---- darcy ---- */
struct pno_darcy_opts {
	struct pno_gen_base base;	/* res default 61 */
	int fine_res;		/* solver grid incl. boundary, default 241,
				 * at most 1025; (fine_res-1) % (res-1) == 0 */
	struct pno_grf_opts grf;	/* Neumann GRF: alpha 2, tau 3, sigma 3,
					 * without its constant mode (zero
					 * mean: see docs/pde/darcy.md) */
	double a_pos, a_neg;	/* a = a_pos where g >= 0, a_neg where g < 0:
				 * default 12 and 3 */
	double forcing;		/* f, default 1; PDEBench's beta */
	double tol;		/* relative residual, default 1e-10 */
};
void pno_darcy_opts_default(struct pno_darcy_opts *o);
/* Solve -div(a grad u) = f on the n x n vertex grid of [0,1]^2 (h =
 * 1/(n-1)), u = 0 on the boundary, a > 0 and f given at the vertices (n*n
 * row-major; boundary values of f are ignored). Five-point second-order
 * finite differences, face coefficients the mean of the two vertices,
 * conjugate gradients preconditioned by a Galerkin multigrid V-cycle, to
 * ||r|| <= tol ||f|| (the recomputed true residual). u: n*n output with
 * zeros on the boundary. PNO_STATUS_RANGE if not converged. */
enum pno_status pno_darcy_solve(int n, const double *a, const double *f,
				double tol, double *u,
				struct pno_solve_stats *stats);
/* Writes `nu` (N, H, W) = a, `tensor` (N, 1, H, W) = u, `x-coordinate`
 * and `y-coordinate` (H) = i/(H-1). */
enum pno_status pno_generate_darcy(const struct pno_darcy_opts *o,
				   const char *path, int overwrite);

/* ---- burgers ---- */
struct pno_burgers_opts {
	struct pno_gen_base base;	/* res default 1024 */
	int fine_res;		/* solver grid, default 8192; multiple of res */
	double nu;		/* default 0.1 */
	double t_final;		/* default 1 */
	double dt_out;		/* default 0.05 */
	double dt;		/* 0: automatic (CFL); else at most this */
	struct pno_grf_opts grf;	/* periodic: alpha 2, tau 5, sigma 25 */
};
void pno_burgers_opts_default(struct pno_burgers_opts *o);
/* u_t + (u^2/2)_x = nu u_xx on the periodic unit interval, n points
 * (even), from u0 (n values). Writes nframes frames at t = k dt_out
 * (frame 0 = u0) to traj (nframes x n). dt > 0 caps the time step (the
 * solver may take smaller steps so that dt_out is a whole number of
 * steps and the advective CFL number stays below 1/2); dt <= 0 chooses it
 * from the CFL bound alone. */
enum pno_status pno_burgers_solve(int n, double nu, const double *u0,
				  int nframes, double dt_out, double dt,
				  double *traj, struct pno_solve_stats *stats);
/* Writes `tensor` (N, T, X), `t-coordinate` (T), `x-coordinate` (X) at
 * i/X. */
enum pno_status pno_generate_burgers(const struct pno_burgers_opts *o,
				     const char *path, int overwrite);

/* ---- kuramoto-sivashinsky ---- */
struct pno_ks_opts {
	struct pno_gen_base base;	/* res default 256 (= solver grid) */
	double L;		/* domain length, default 100 */
	double dt;		/* ETDRK4 step, default 0.25 */
	double t_final;		/* default 300 */
	double dt_out;		/* default 1 */
	double burn_in;		/* time discarded before frame 0, default 0 */
};
void pno_ks_opts_default(struct pno_ks_opts *o);
/* u_t + u u_x + u_xx + u_xxxx = 0 on [0, L) periodic, n points, ETDRK4
 * with Kassam-Trefethen contour-integral coefficients and 2/3
 * dealiasing. Frames as pno_burgers_solve; dt_out must be a whole number
 * of steps dt (else PNO_STATUS_INVALID). */
enum pno_status pno_ks_solve(int n, double L, const double *u0, int nframes,
			     double dt_out, double dt, double *traj,
			     struct pno_solve_stats *stats);
/* Initial value of sample `index`: uniform in [-1, 1] per point, low-pass
 * filtered to Fourier modes 1 <= |m| <= n/16 (zero mean; see
 * docs/pde/ks.md). */
enum pno_status pno_ks_initial(double *u0, int n, uint64_t seed,
			       uint64_t index);
enum pno_status pno_generate_ks(const struct pno_ks_opts *o,
				const char *path, int overwrite);

/* ---- navier-stokes (2D vorticity, unit torus) ---- */
struct pno_ns_opts {
	struct pno_gen_base base;	/* res default 64 */
	int fine_res;		/* solver grid, default 256; multiple of res */
	double nu;		/* default 1e-3 */
	double t_final;		/* default 50 */
	double dt_out;		/* default 1 */
	double cfl;		/* CFL number, default 0.5 */
	double dt_max;		/* time-step cap, default 1e-2 */
	int forcing;		/* 1: f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)) */
	struct pno_grf_opts grf;	/* alpha 2.5, tau 7, sigma 7^0.75: the
					 * covariance 7^1.5 (-Lap + 49 I)^-2.5 */
};
void pno_ns_opts_default(struct pno_ns_opts *o);
/* w_t + u.grad w = nu Laplacian w + f on n x n points (even), from w0
 * (n*n, zero mean, else PNO_STATUS_INVALID). Pseudo-spectral with 2/3
 * dealiasing, Crank-Nicolson for viscosity, Heun (second order) for the
 * nonlinear term and forcing; the step is the largest with
 * dt max(|u| + |v|) n <= cfl, at most dt_max, dividing dt_out into whole
 * steps (re-chosen each output interval). A non-finite state is
 * PNO_STATUS_RANGE. Frames as pno_burgers_solve (nframes x n x n). */
enum pno_status pno_ns_solve(int n, double nu, int forcing, double cfl,
			     double dt_max, const double *w0, int nframes,
			     double dt_out, double *traj,
			     struct pno_solve_stats *stats);
/* Writes `tensor` (N, T, H, W), `t-coordinate`, `x-coordinate`,
 * `y-coordinate` (i/H). */
enum pno_status pno_generate_ns(const struct pno_ns_opts *o, const char *path,
				int overwrite);

#ifdef __cplusplus
}
#endif
#endif
