/* Solver benchmark: seconds per time step and per sample for
 * navier-stokes at 64x64 and 256x256 and burgers at 8192 points, with the
 * generators' default parameters, one thread per sample (as the
 * generator runs them: samples are what is parallel).
 *   usage: bench_pde [runs]   (default 5, at least 3)
 * Per step: median over runs of a short integration (20 steps of the
 * first output interval's step) divided by its step count. Per sample: a
 * whole default sample (t = 0..50 for navier-stokes, 0..1 for burgers),
 * median over runs, except navier-stokes 256x256 (about 20 s a sample),
 * timed once. */
#include "bench_util.h"
#include "pno/pde.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
	fprintf(stderr, "bench_pde: %s: %s\n", what, pno_last_error());
	return 1;
}

/* Navier-Stokes on an n x n grid: per step, then `whole` whole samples. */
static int bench_ns(int n, int runs, int whole)
{
	struct pno_ns_opts o;
	pno_ns_opts_default(&o);
	size_t P = (size_t)n * n;
	double *w0 = malloc(P * sizeof *w0), *traj = malloc(2 * P * sizeof *traj);
	double *ts = malloc((size_t)runs * sizeof *ts);
	double *tw = malloc((size_t)(whole > 0 ? whole : 1) * sizeof *tw);
	struct pno_solve_stats st;
	int rc = 1;
	if (!w0 || !traj || !ts || !tw || whole < 1)
		goto out;
	if (pno_grf_periodic(w0, NULL, 2, n, n, &o.grf, 0, 0, NULL, NULL))
		goto err;
	double mean = 0;
	for (size_t p = 0; p < P; p++)
		mean += w0[p];
	for (size_t p = 0; p < P; p++)
		w0[p] -= mean / (double)P;
	/* the step the solver picks for this field over one output interval */
	if (pno_ns_solve(n, o.nu, o.forcing, o.cfl, o.dt_max, w0, 2, o.dt_out,
			 traj, &st))
		goto err;
	double dt = st.dt;
	for (int r = 0; r < runs; r++) {
		double t0 = bench_now();
		if (pno_ns_solve(n, o.nu, o.forcing, 2.0, dt, w0, 2, 20 * dt,
				 traj, &st))
			goto err;
		ts[r] = (bench_now() - t0) / (double)st.steps;
	}
	int frames = (int)lround(o.t_final / o.dt_out) + 1;
	double *full = malloc((size_t)frames * P * sizeof *full);
	if (!full)
		goto out;
	for (int r = 0; r < whole; r++) {
		double t0 = bench_now();
		if (pno_ns_solve(n, o.nu, o.forcing, o.cfl, o.dt_max, w0, frames,
				 o.dt_out, full, &st)) {
			free(full);
			goto err;
		}
		tw[r] = bench_now() - t0;
	}
	free(full);
	printf("navier-stokes %4dx%-4d  %9.3f ms/step  %8.2f s/sample  "
	       "(%ld steps, smallest dt %.2e; %d sample run%s)\n", n, n,
	       1e3 * bench_median(ts, runs), bench_median(tw, whole), st.steps,
	       st.dt, whole, whole > 1 ? "s" : "");
	rc = 0;
	goto out;
err:
	rc = fail("navier-stokes");
out:
	free(w0), free(traj), free(ts), free(tw);
	return rc;
}

static int bench_burgers(int n, int runs)
{
	struct pno_burgers_opts o;
	pno_burgers_opts_default(&o);
	int frames = (int)lround(o.t_final / o.dt_out) + 1;
	double *u0 = malloc((size_t)n * sizeof *u0);
	double *traj = malloc((size_t)frames * n * sizeof *traj);
	double *ts = malloc((size_t)runs * sizeof *ts);
	double *tw = malloc((size_t)runs * sizeof *tw);
	struct pno_solve_stats st;
	int rc = 1;
	if (!u0 || !traj || !ts || !tw)
		goto out;
	if (pno_grf_periodic(u0, NULL, 1, n, 1, &o.grf, 0, 0, NULL, NULL))
		goto err;
	for (int r = 0; r < runs; r++) {
		double t0 = bench_now();
		if (pno_burgers_solve(n, o.nu, u0, frames, o.dt_out, o.dt, traj,
				      &st))
			goto err;
		tw[r] = bench_now() - t0;
		ts[r] = tw[r] / (double)st.steps;
	}
	printf("burgers       %9d  %9.3f ms/step  %8.3f s/sample  "
	       "(%ld steps, dt %.2e)\n", n, 1e3 * bench_median(ts, runs),
	       bench_median(tw, runs), st.steps, st.dt);
	rc = 0;
	goto out;
err:
	rc = fail("burgers");
out:
	free(u0), free(traj), free(ts), free(tw);
	return rc;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 5;
	if (runs < 3) {
		fprintf(stderr, "usage: bench_pde [runs >= 3]\n");
		return 2;
	}
	printf("1 thread per sample, median of %d runs, generator defaults\n",
	       runs);
	if (bench_ns(64, runs, runs) || bench_ns(256, runs, 1) ||
	    bench_burgers(8192, runs))
		return 1;
	return 0;
}
