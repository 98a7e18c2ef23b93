/* Time series read for one-step models and rollouts: every pair (t, t + k)
 * of every trajectory (pno_dataset_opts.pairs_step) and whole trajectories
 * (pno_trajectories_read), checked value by value against hand-built
 * files, with every validation error and allocation-failure loops. */
#include "testutil.h"
#include "pno/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 4, T = 6, X = 8, H = 3, W = 5 };

/* u[n, t, p]: exact in float32 and different for every (n, t, p). */
static float val(int n, int t, int p)
{
	return (float)n * 1000.0f + (float)t * 10.0f + (float)p * 0.5f;
}

/* tensor (N, T, P) with P = X (1D) or H x W (2D); times of length nt
 * (0: none). Returns the path. */
static const char *write_series(const char *name, int dims, int nt)
{
	const char *path = tu_tmp_path(name);
	const int P = dims == 1 ? X : H * W;
	float *u = malloc((size_t)N * T * P * sizeof *u);
	float tc[T + 1];
	assert_non_null(u);
	for (int n = 0; n < N; n++)
		for (int t = 0; t < T; t++)
			for (int p = 0; p < P; p++)
				u[((size_t)n * T + t) * P + p] = val(n, t, p);
	for (int t = 0; t <= T; t++)
		tc[t] = 0.25f * (float)t;
	struct pno_h5_array a[2] = {
		dims == 1 ? (struct pno_h5_array){"tensor", 3, {N, T, X}, u}
			  : (struct pno_h5_array){"tensor", 4, {N, T, H, W}, u},
		{"t-coordinate", 1, {nt}, tc},
	};
	struct pno_h5_attr at = {"pde", "toy", 0};
	assert_status(pno_h5_write(path, a, nt ? 2 : 1, &at, 1, 1),
		      PNO_STATUS_OK);
	free(u);
	return path;
}

static void check_pairs(const struct pno_dataset *d, int ntraj, int k, int P)
{
	assert_int_equal(d->pairs, T - k);
	assert_int_equal(d->N, ntraj * (T - k));
	assert_int_equal(d->Cin, 1);
	assert_int_equal(d->Cout, 1);
	assert_string_equal(d->layout, "timeseries");
	assert_string_equal(d->pde, "toy");
	for (int n = 0; n < ntraj; n++)
		for (int t = 0; t + k < T; t++) {
			size_t i = (size_t)n * (T - k) + t;
			for (int p = 0; p < P; p++) {
				assert_float_equal(d->in[i * P + p], val(n, t, p), 0);
				assert_float_equal(d->out[i * P + p],
						   val(n, t + k, p), 0);
			}
		}
}

/* Every pair of every trajectory, steps 1, 2 and T - 1, 1D and 2D. */
static void test_pairs_values(void **state)
{
	(void)state;
	for (int dims = 1; dims <= 2; dims++) {
		const char *path = write_series("pairs.h5", dims, T);
		const int P = dims == 1 ? X : H * W;
		int ks[3] = {1, 2, T - 1};
		for (int j = 0; j < 3; j++) {
			struct pno_dataset d;
			struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
			o.pairs_step = ks[j];
			o.t_in = 3;	/* ignored with pairs */
			assert_status(pno_dataset_read(&d, path, &o),
				      PNO_STATUS_OK);
			assert_int_equal(d.dims, dims);
			assert_int_equal(d.X, dims == 1 ? X : H);
			assert_int_equal(d.Y, dims == 1 ? 1 : W);
			check_pairs(&d, N, ks[j], P);
			pno_dataset_free(&d);
		}
		/* off: the single pair t_in -> t_out, pairs = 0 */
		struct pno_dataset d;
		struct pno_dataset_opts o = {1, 4, 0, 0};
		assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
		assert_int_equal(d.N, N);
		assert_int_equal(d.pairs, 0);
		assert_float_equal(d.in[P + 2], val(1, 1, 2), 0);
		assert_float_equal(d.out[P + 2], val(1, 4, 2), 0);
		pno_dataset_free(&d);
		unlink(path);
	}
}

/* max_samples limits trajectories, not pairs. */
static void test_pairs_max(void **state)
{
	(void)state;
	const char *path = write_series("pairs_max.h5", 1, T);
	struct pno_dataset d;
	struct pno_dataset_opts o = {0, -1, 2, 1};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	check_pairs(&d, 2, 1, X);
	pno_dataset_free(&d);
	o.max_samples = 100;	/* more than the file: all */
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	check_pairs(&d, N, 1, X);
	pno_dataset_free(&d);
	unlink(path);
}

static void test_pairs_errors(void **state)
{
	(void)state;
	const char *path = write_series("pairs_err.h5", 1, T);
	struct pno_dataset d;
	struct pno_dataset_opts o = {0, -1, 0, T};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_RANGE);
	assert_err_has("pairs step 6");
	assert_err_has("T = 6");
	assert_null(d.in);
	o.pairs_step = -1;
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_INVALID);
	assert_err_has("pairs_step -1");

	/* a Darcy-style file has no time axis */
	const char *dpath = tu_tmp_path("pairs_darcy.h5");
	float nu[2 * 4 * 4] = {0}, u[2 * 4 * 4] = {0};
	struct pno_h5_array a[2] = {{"nu", 3, {2, 4, 4}, nu},
				    {"tensor", 4, {2, 1, 4, 4}, u}};
	assert_status(pno_h5_write(dpath, a, 2, NULL, 0, 1), PNO_STATUS_OK);
	o.pairs_step = 1;
	assert_status(pno_dataset_read(&d, dpath, &o), PNO_STATUS_INVALID);
	assert_err_has("needs a time series");
	assert_status(pno_trajectories_read(&(struct pno_trajectories){0},
					    dpath, 0, 0), PNO_STATUS_FORMAT);
	assert_err_has("not a time series");
	unlink(dpath);

	/* a NaN at trajectory 2, step 5 (reached only as an output) */
	float *v = malloc((size_t)N * T * X * sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < (size_t)N * T * X; i++)
		v[i] = 1.0f;
	v[((size_t)2 * T + 5) * X + 3] = NAN;
	struct pno_h5_array b = {"tensor", 3, {N, T, X}, v};
	assert_status(pno_h5_write(path, &b, 1, NULL, 0, 1), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_NONFINITE);
	assert_err_has("trajectory 2 step 5");
	o.max_samples = 2;	/* trajectories 0, 1 only: fine */
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	pno_dataset_free(&d);
	struct pno_trajectories tr;
	assert_status(pno_trajectories_read(&tr, path, 1, 0),
		      PNO_STATUS_NONFINITE);
	assert_err_has("trajectory 2 step 5");
	assert_null(tr.u);
	free(v);
	unlink(path);
}

static void test_trajectories(void **state)
{
	(void)state;
	for (int dims = 1; dims <= 2; dims++) {
		const char *path = write_series("traj.h5", dims, T);
		const int P = dims == 1 ? X : H * W;
		struct pno_trajectories tr;
		assert_status(pno_trajectories_read(&tr, path, 1, 2),
			      PNO_STATUS_OK);
		assert_int_equal(tr.N, 2);
		assert_int_equal(tr.T, T);
		assert_int_equal(tr.C, 1);
		assert_int_equal(tr.first, 1);
		assert_int_equal(tr.dims, dims);
		assert_int_equal(tr.X * tr.Y, P);
		assert_string_equal(tr.pde, "toy");
		for (int n = 0; n < 2; n++)
			for (int t = 0; t < T; t++)
				for (int p = 0; p < P; p++)
					assert_float_equal(
						tr.u[((size_t)n * T + t) * P + p],
						val(n + 1, t, p), 0);
		assert_non_null(tr.t);
		assert_float_equal(tr.t[3], 0.75, 0);
		pno_trajectories_free(&tr);
		/* max 0 and a max past the end: to the last trajectory */
		assert_status(pno_trajectories_read(&tr, path, 2, 0),
			      PNO_STATUS_OK);
		assert_int_equal(tr.N, N - 2);
		pno_trajectories_free(&tr);
		assert_status(pno_trajectories_read(&tr, path, 3, 50),
			      PNO_STATUS_OK);
		assert_int_equal(tr.N, 1);
		assert_float_equal(tr.u[P * 2 + 1], val(3, 2, 1), 0);
		pno_trajectories_free(&tr);
		unlink(path);
	}
	/* PDEBench's T + 1 time edges, or no times: t is NULL */
	const char *path = write_series("traj_edges.h5", 1, T + 1);
	struct pno_trajectories tr;
	assert_status(pno_trajectories_read(&tr, path, 0, 0), PNO_STATUS_OK);
	assert_null(tr.t);
	pno_trajectories_free(&tr);
	path = write_series("traj_edges.h5", 1, 0);
	assert_status(pno_trajectories_read(&tr, path, 0, 0), PNO_STATUS_OK);
	assert_null(tr.t);
	assert_int_equal(tr.N, N);
	pno_trajectories_free(&tr);
	/* errors */
	assert_status(pno_trajectories_read(&tr, path, N, 0), PNO_STATUS_RANGE);
	assert_err_has("trajectory 4 does not exist");
	assert_status(pno_trajectories_read(&tr, path, -1, 0), PNO_STATUS_RANGE);
	assert_status(pno_trajectories_read(&tr, path, 0, -2), PNO_STATUS_RANGE);
	assert_status(pno_trajectories_read(&tr, tu_tmp_path("nope.h5"), 0, 0),
		      PNO_STATUS_NOTFOUND);
	assert_status(pno_trajectories_read(NULL, path, 0, 0),
		      PNO_STATUS_INVALID);
	float one[3 * 1 * 4] = {0};
	struct pno_h5_array a = {"tensor", 3, {3, 1, 4}, one};
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 1), PNO_STATUS_OK);
	assert_status(pno_trajectories_read(&tr, path, 0, 0), PNO_STATUS_SHAPE);
	assert_err_has("at least 2");
	unlink(path);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const char *path = write_series("pairs_alloc.h5", 2, T);
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (int k = 1;; k++) {
		struct pno_dataset d;
		struct pno_dataset_opts o = {0, -1, 0, 2};
		tu_alloc_reset(k);
		enum pno_status s = pno_dataset_read(&d, path, &o);
		if (tu_alloc_step(s, live0)) {
			check_pairs(&d, N, 2, H * W);
			pno_dataset_free(&d);
			break;
		}
		assert_null(d.in);
	}
	for (int k = 1;; k++) {
		struct pno_trajectories tr;
		tu_alloc_reset(k);
		enum pno_status s = pno_trajectories_read(&tr, path, 0, 0);
		if (tu_alloc_step(s, live0)) {
			assert_non_null(tr.t);
			pno_trajectories_free(&tr);
			break;
		}
		assert_null(tr.u);
	}
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs_values),
		cmocka_unit_test(test_pairs_max),
		cmocka_unit_test(test_pairs_errors),
		cmocka_unit_test(test_trajectories),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
