/* pno_dataset_open / pno_dataset_fetch: samples read one hyperslab at a
 * time from the file must be the bits pno_dataset_read puts in memory,
 * for the Darcy layout, a time series (t_in -> t_out) and pairs (t, t+k);
 * errors name the sample; nothing leaks when an allocation fails. */
#include "testutil.h"
#include "pno/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 7, T = 5, H = 6, W = 4 };

/* value of (sample n, step t, point p): distinct everywhere */
static float val(int n, int t, int p) { return (float)(n * 1000 + t * 100 + p) * 0.25f; }

static const char *write_darcy(float bad_at)
{
	static float nu[N * H * W], u[N * H * W];
	const char *path = tu_tmp_path("fetch_darcy.h5");
	for (int n = 0; n < N; n++)
		for (int p = 0; p < H * W; p++) {
			nu[n * H * W + p] = val(n, 0, p);
			u[n * H * W + p] = -val(n, 1, p);
		}
	if (bad_at >= 0)	/* a NaN in sample bad_at's output */
		u[(int)bad_at * H * W + 3] = NAN;
	struct pno_h5_array a[2] = {
		{"nu", 3, {N, H, W}, nu},
		{"tensor", 4, {N, 1, H, W}, u},
	};
	assert_status(pno_h5_write(path, a, 2, NULL, 0, 1), PNO_STATUS_OK);
	return path;
}

static const char *write_series(void)
{
	static float u[N * T * H * W];
	const char *path = tu_tmp_path("fetch_series.h5");
	for (int n = 0; n < N; n++)
		for (int t = 0; t < T; t++)
			for (int p = 0; p < H * W; p++)
				u[((size_t)n * T + t) * H * W + p] = val(n, t, p);
	struct pno_h5_array a = {"tensor", 4, {N, T, H, W}, u};
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 1), PNO_STATUS_OK);
	return path;
}

/* Every sample fetched from the opened file, by index list (reversed)
 * and by range, equals the read dataset's. */
static void same_samples(const char *path, const struct pno_dataset_opts *o)
{
	struct pno_dataset m, f;
	assert_status(pno_dataset_read(&m, path, o), PNO_STATUS_OK);
	assert_status(pno_dataset_open(&f, path, o), PNO_STATUS_OK);
	assert_null(f.in);
	assert_null(f.out);
	assert_int_equal(f.N, m.N);
	assert_int_equal(f.pairs, m.pairs);
	assert_true(f.X == m.X && f.Y == m.Y && f.dims == m.dims);
	assert_string_equal(f.layout, m.layout);
	size_t per = (size_t)m.X * m.Y;
	float *x = calloc((size_t)m.N * per, sizeof *x);
	float *y = calloc((size_t)m.N * per, sizeof *y);
	int *idx = malloc((size_t)m.N * sizeof *idx);
	for (int i = 0; i < m.N; i++)
		idx[i] = m.N - 1 - i;
	assert_status(pno_dataset_fetch(&f, idx, 0, m.N, x, y), PNO_STATUS_OK);
	for (int i = 0; i < m.N; i++) {
		assert_memory_equal(x + (size_t)i * per,
				    m.in + (size_t)idx[i] * per, per * sizeof *x);
		assert_memory_equal(y + (size_t)i * per,
				    m.out + (size_t)idx[i] * per, per * sizeof *y);
	}
	/* a range, the outputs only; and the in-memory dataset fetches too */
	memset(y, 0, (size_t)m.N * per * sizeof *y);
	assert_status(pno_dataset_fetch(&f, NULL, 2, m.N - 2, NULL, y),
		      PNO_STATUS_OK);
	assert_memory_equal(y, m.out + 2 * per, (size_t)(m.N - 2) * per * 4);
	assert_status(pno_dataset_fetch(&m, NULL, 1, 2, x, y), PNO_STATUS_OK);
	assert_memory_equal(x, m.in + per, 2 * per * sizeof *x);
	/* out of range */
	idx[0] = m.N;
	assert_status(pno_dataset_fetch(&f, idx, 0, 1, x, y), PNO_STATUS_RANGE);
	assert_status(pno_dataset_fetch(&f, NULL, -1, 1, x, y),
		      PNO_STATUS_RANGE);
	free(x);
	free(y);
	free(idx);
	pno_dataset_free(&m);
	pno_dataset_free(&f);
	pno_dataset_free(&f);	/* twice: zeroed */
}

static void test_layouts(void **state)
{
	(void)state;
	struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
	same_samples(write_darcy(-1), &o);
	const char *s = write_series();
	o.t_in = 1;
	o.t_out = 3;
	same_samples(s, &o);
	o.t_out = -1;
	same_samples(s, &o);
	o.pairs_step = 2;	/* 7 trajectories x 3 pairs */
	same_samples(s, &o);
	o.max_samples = 4;
	same_samples(s, &o);
}

/* The file is checked as it is read: a NaN is found when its sample is
 * fetched, named; the open itself fails as pno_dataset_read does. */
static void test_errors(void **state)
{
	(void)state;
	struct pno_dataset f;
	float x[2 * H * W], y[2 * H * W];
	const char *path = write_darcy(5);
	assert_status(pno_dataset_open(&f, path, NULL), PNO_STATUS_OK);
	assert_status(pno_dataset_fetch(&f, NULL, 4, 1, x, y), PNO_STATUS_OK);
	assert_status(pno_dataset_fetch(&f, NULL, 4, 2, x, y),
		      PNO_STATUS_NONFINITE);
	assert_non_null(strstr(pno_last_error(), "sample 5"));
	assert_non_null(strstr(pno_last_error(), path));
	pno_dataset_free(&f);
	assert_status(pno_dataset_open(&f, tu_tmp_path("no_such.h5"), NULL),
		      PNO_STATUS_NOTFOUND);
	assert_null(f.file);
	struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
	o.t_in = 9;
	assert_status(pno_dataset_open(&f, write_series(), &o),
		      PNO_STATUS_RANGE);
	assert_status(pno_dataset_fetch(&f, NULL, 0, 1, x, y),
		      PNO_STATUS_INVALID);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const char *path = write_darcy(-1);
	struct pno_dataset f;
	float x[H * W], y[H * W];
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (long k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_dataset_open(&f, path, NULL), live0))
			break;
		assert_null(f.file);
	}
	tu_alloc_reset(0);
	assert_status(pno_dataset_fetch(&f, NULL, 6, 1, x, y), PNO_STATUS_OK);
	assert_true(x[0] == val(6, 0, 0) && y[1] == -val(6, 1, 1));
	pno_dataset_free(&f);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
