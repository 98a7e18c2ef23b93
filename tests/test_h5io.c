/* HDF5 datasets (PDEBench layout): round trips of the Darcy and time-series
 * layouts, attributes, storage (chunked + deflate), every validation error,
 * and allocation- / I/O-failure loops. */
#include "testutil.h"
#include "io_internal.h"
#include "pno/io.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Value of element `i` of a test array tagged `tag`: exact in float32. */
static float val(int tag, size_t i) { return (float)tag * 1000.0f + (float)i * 0.5f; }

static float *filled(int tag, size_t n)
{
	float *p = malloc(n * sizeof *p + 1);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = val(tag, i);
	return p;
}

enum { N = 3, H = 4, W = 5, T = 6, X = 8 };

/* Darcy file: nu (N,H,W) tag 1, tensor (N,1,H,W) tag 2 (or (N,H,W)). */
static enum pno_status write_darcy(const char *path, int tensor_rank,
				   int overwrite, float *nan_nu, float *nan_t)
{
	float *nu = filled(1, N * H * W), *u = filled(2, N * H * W);
	float *xc = filled(3, H), *yc = filled(4, W);
	struct pno_h5_array a[4] = {
		{"nu", 3, {N, H, W}, nu},
		{"tensor", 4, {N, 1, H, W}, u},
		{"x-coordinate", 1, {H}, xc},
		{"y-coordinate", 1, {W}, yc},
	};
	struct pno_h5_attr at[3] = {
		{"pde", "darcy-flow", 0}, {"beta", NULL, 1.5}, {"seed", NULL, 42},
	};
	if (tensor_rank == 3) {
		a[1].ndim = 3;
		a[1].shape[1] = H;
		a[1].shape[2] = W;
	}
	if (nan_nu)
		nu[2 * H * W + 7] = *nan_nu;
	if (nan_t)
		u[1 * H * W + 3] = *nan_t;
	enum pno_status s = pno_h5_write(path, a, 4, at, 3, overwrite);
	free(nu), free(u), free(xc), free(yc);
	return s;
}

static void test_darcy_roundtrip(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("darcy.h5");
	struct pno_dataset d;
	char buf[64];
	for (int rank = 3; rank <= 4; rank++) {
		assert_status(write_darcy(path, rank, 1, NULL, NULL), PNO_STATUS_OK);
		assert_int_equal(tu_temps_left(path), 0);
		assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
		assert_int_equal(d.N, N);
		assert_int_equal(d.Cin, 1);
		assert_int_equal(d.Cout, 1);
		assert_int_equal(d.dims, 2);
		assert_int_equal(d.X, H);
		assert_int_equal(d.Y, W);
		assert_string_equal(d.layout, "darcy");
		assert_string_equal(d.pde, "darcy-flow");
		for (size_t i = 0; i < N * H * W; i++) {
			assert_true(d.in[i] == val(1, i));
			assert_true(d.out[i] == val(2, i));
		}
		pno_dataset_free(&d);
		pno_dataset_free(&d);	/* safe twice */
	}
	struct pno_dataset_opts o = {0, -1, 2, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	assert_int_equal(d.N, 2);
	assert_true(d.out[2 * H * W - 1] == val(2, 2 * H * W - 1));
	pno_dataset_free(&d);

	assert_status(pno_h5_attr_string(path, "pde", buf, sizeof buf), PNO_STATUS_OK);
	assert_string_equal(buf, "darcy-flow");
	assert_status(pno_h5_attr_string(path, "pde", buf, 5), PNO_STATUS_RANGE);
	assert_status(pno_h5_attr_string(path, "beta", buf, sizeof buf),
		      PNO_STATUS_FORMAT);
	assert_err_has("'beta'");
	assert_status(pno_h5_attr_string(path, "solver", buf, sizeof buf),
		      PNO_STATUS_NOTFOUND);
	assert_err_has("'solver'");

	/* numeric attributes are double scalars */
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	double beta = 0;
	hid_t at = H5Aopen(f, "beta", H5P_DEFAULT);
	assert_true(at >= 0);
	assert_true(H5Aread(at, H5T_NATIVE_DOUBLE, &beta) >= 0);
	assert_true(beta == 1.5);
	H5Aclose(at);
	H5Fclose(f);
	unlink(path);
}

/* tensor (N, T, X) or (N, T, X, Y) with value tag 5. */
static enum pno_status write_series(const char *path, int dims, int with_pde)
{
	size_t n = (size_t)N * T * X * (dims == 2 ? W : 1);
	float *u = filled(5, n);
	struct pno_h5_array a = {"tensor", dims == 2 ? 4 : 3, {N, T, X, W}, u};
	struct pno_h5_attr at = {"pde", "burgers", 0};
	enum pno_status s = pno_h5_write(path, &a, 1, &at, with_pde, 1);
	free(u);
	return s;
}

static void check_pair(const struct pno_dataset *d, int t_in, int t_out)
{
	size_t per = (size_t)d->X * d->Y;
	for (int n = 0; n < d->N; n++)
		for (size_t j = 0; j < per; j++) {
			size_t i_in = ((size_t)n * T + (size_t)t_in) * per + j;
			size_t i_out = ((size_t)n * T + (size_t)t_out) * per + j;
			if (d->in[n * per + j] != val(5, i_in) ||
			    d->out[n * per + j] != val(5, i_out))
				fail_msg("sample %d point %zu wrong for t %d -> %d", n,
					 j, t_in, t_out);
		}
}

static void test_series_roundtrip(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("series.h5");
	struct pno_dataset d;
	struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
	for (int dims = 1; dims <= 2; dims++) {
		assert_status(write_series(path, dims, dims == 1), PNO_STATUS_OK);
		assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
		assert_int_equal(d.N, N);
		assert_int_equal(d.dims, dims);
		assert_int_equal(d.X, X);
		assert_int_equal(d.Y, dims == 2 ? W : 1);
		assert_int_equal(d.Cin, 1);
		assert_string_equal(d.layout, "timeseries");
		assert_string_equal(d.pde, dims == 1 ? "burgers" : "unknown");
		check_pair(&d, 0, T - 1);
		pno_dataset_free(&d);
		o.t_in = 2;
		o.t_out = 1;	/* backwards is allowed */
		o.max_samples = 1;
		assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
		assert_int_equal(d.N, 1);
		check_pair(&d, 2, 1);
		pno_dataset_free(&d);
	}
	unlink(path);
}

/* PDEBench files are often float64: read them converted. */
static void test_float64_input(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("f64.h5");
	hsize_t dims[3] = {N, T, X};
	double *u = malloc(sizeof(double) * N * T * X);
	struct pno_dataset d;
	for (size_t i = 0; i < (size_t)N * T * X; i++)
		u[i] = val(5, i);
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t sp = H5Screate_simple(3, dims, NULL);
	hid_t ds = H5Dcreate2(f, "tensor", H5T_IEEE_F64LE, sp, H5P_DEFAULT,
			      H5P_DEFAULT, H5P_DEFAULT);
	assert_true(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, u) >= 0);
	/* h5py writes numpy bytes as fixed-length, null-padded ASCII */
	hid_t st = H5Tcopy(H5T_C_S1), sc = H5Screate(H5S_SCALAR);
	H5Tset_size(st, 9);
	H5Tset_strpad(st, H5T_STR_NULLPAD);
	hid_t at = H5Acreate2(f, "pde", st, sc, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(H5Awrite(at, st, "advection") >= 0);
	H5Aclose(at), H5Tclose(st), H5Sclose(sc);
	H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
	free(u);
	struct pno_dataset_opts o = {1, 4, 0, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	assert_string_equal(d.pde, "advection");
	check_pair(&d, 1, 4);
	pno_dataset_free(&d);
	unlink(path);
}

/* PDEBench's own layouts, as its files hold them: no root attributes,
 * 1D time series with T+1 time edges in `t-coordinate`, Darcy `nu` with a
 * singleton channel in `tensor`. */
static void test_pdebench_layouts(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("1D_Burgers_Sols_Nu0.1.hdf5");
	float *u = filled(6, (size_t)N * T * X), *xc = filled(7, X);
	float *tc = filled(8, T + 1);
	struct pno_h5_array burgers[3] = {
		{"tensor", 3, {N, T, X}, u},
		{"x-coordinate", 1, {X}, xc},
		{"t-coordinate", 1, {T + 1}, tc},
	};
	struct pno_dataset d;
	struct pno_dataset_opts o = {0, -1, 0, 0};
	assert_status(pno_h5_write(path, burgers, 3, NULL, 0, 1), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	assert_string_equal(d.layout, "timeseries");
	assert_int_equal(d.N, N);
	assert_int_equal(d.dims, 1);
	assert_int_equal(d.X, X);
	for (int n = 0; n < N; n++)
		for (int x = 0; x < X; x++) {
			assert_true(d.in[n * X + x] == val(6, ((size_t)n * T) * X + x));
			assert_true(d.out[n * X + x] ==
				    val(6, ((size_t)n * T + T - 1) * X + x));
		}
	pno_dataset_free(&d);
	unlink(path);

	path = tu_tmp_path("2D_DarcyFlow_beta1.0_Train.hdf5");
	float *nu = filled(1, (size_t)N * H * W), *t = filled(2, (size_t)N * H * W);
	struct pno_h5_array darcy[4] = {
		{"nu", 3, {N, H, W}, nu},
		{"tensor", 4, {N, 1, H, W}, t},
		{"x-coordinate", 1, {H}, xc},
		{"y-coordinate", 1, {W}, xc},
	};
	assert_status(pno_h5_write(path, darcy, 4, NULL, 0, 1), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
	assert_string_equal(d.layout, "darcy");
	assert_string_equal(d.pde, "darcy");
	assert_int_equal(d.dims, 2);
	assert_int_equal(d.X, H);
	assert_int_equal(d.Y, W);
	assert_memory_equal(d.in, nu, sizeof(float) * N * H * W);
	assert_memory_equal(d.out, t, sizeof(float) * N * H * W);
	pno_dataset_free(&d);
	unlink(path);
	free(u), free(xc), free(tc), free(nu), free(t);
}

/* Datasets are chunked by whole samples — small samples grouped up to
 * 2^16 values, a large sample alone — and deflate-compressed. */
static void test_storage(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("storage.h5");
	hsize_t chunk[4];
	int has_deflate = 0;
	assert_status(write_darcy(path, 4, 1, NULL, NULL), PNO_STATUS_OK);
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t ds = H5Dopen2(f, "tensor", H5P_DEFAULT);
	hid_t pl = H5Dget_create_plist(ds);
	assert_int_equal(H5Pget_layout(pl), H5D_CHUNKED);
	assert_int_equal(H5Pget_chunk(pl, 4, chunk), 4);
	assert_int_equal(chunk[0], N);	/* N * H * W values: one chunk */
	assert_int_equal(chunk[1], 1);
	assert_int_equal(chunk[2], H);
	assert_int_equal(chunk[3], W);
	for (int i = 0; i < H5Pget_nfilters(pl); i++) {
		unsigned flags, cd[8];
		size_t ncd = 8;
		char name[64];
		if (H5Pget_filter2(pl, (unsigned)i, &flags, &ncd, cd, sizeof name,
				   name, NULL) == H5Z_FILTER_DEFLATE) {
			has_deflate = 1;
			assert_int_equal(cd[0], 4);	/* level */
		}
	}
	assert_true(has_deflate || H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0);
	H5Pclose(pl), H5Dclose(ds), H5Fclose(f);

	/* a sample of 300 x 300 > 2^16 values: one sample per chunk */
	float *big = calloc(3 * 300 * 300, sizeof *big);
	struct pno_h5_array a = {"tensor", 3, {3, 300, 300}, big};
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 1), PNO_STATUS_OK);
	f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	ds = H5Dopen2(f, "tensor", H5P_DEFAULT);
	pl = H5Dget_create_plist(ds);
	assert_int_equal(H5Pget_chunk(pl, 3, chunk), 3);
	assert_int_equal(chunk[0], 1);
	assert_int_equal(chunk[1] * chunk[2], 300 * 300);
	H5Pclose(pl), H5Dclose(ds), H5Fclose(f);
	free(big);
	unlink(path);
}

static void write_plain(const char *path, const char *name, int rank,
			const hsize_t *dims)
{
	hsize_t n = 1;
	for (int i = 0; i < rank; i++)
		n *= dims[i];
	float *u = filled(7, n);
	hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
	if (f < 0)
		f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t sp = H5Screate_simple(rank, dims, NULL);
	hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT,
			      H5P_DEFAULT, H5P_DEFAULT);
	assert_true(ds >= 0);
	assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, u) >= 0);
	H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
	free(u);
}

static void test_read_errors(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("bad.h5");
	struct pno_dataset d;
	struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
	float nan = NAN, inf = INFINITY;
	FILE *fp;

	unlink(path);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_NOTFOUND);
	assert_err_has(path);
	assert_null(d.in);

	assert_non_null(fp = fopen(path, "w"));
	fputs("this is not HDF5\n", fp);
	fclose(fp);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_FORMAT);
	assert_err_has("not an HDF5 file");
	assert_err_has(path);
	unlink(path);

	hsize_t dims[4] = {2, 8, 0, 0};
	write_plain(path, "foo", 2, dims);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_FORMAT);
	assert_err_has("no dataset 'tensor'");
	assert_err_has("'nu'+'tensor'");
	write_plain(path, "tensor", 2, dims);	/* rank 2 */
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_SHAPE);
	assert_err_has("'tensor' has shape (2, 8)");
	unlink(path);

	/* Darcy: nu of the wrong rank, N mismatch, grid mismatch */
	hsize_t nd[3] = {3, 4, 5}, td[4] = {2, 1, 4, 5};
	write_plain(path, "nu", 2, nd);
	write_plain(path, "tensor", 4, td);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_SHAPE);
	assert_err_has("'nu' has shape (3, 4)");
	unlink(path);
	write_plain(path, "nu", 3, nd);
	write_plain(path, "tensor", 4, td);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_SHAPE);
	assert_err_has("'nu' has 3 samples but 'tensor' has 2");
	unlink(path);
	td[0] = 3;
	td[3] = 6;
	write_plain(path, "nu", 3, nd);
	write_plain(path, "tensor", 4, td);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_SHAPE);
	assert_err_has("grids differ");
	unlink(path);
	td[1] = 2;
	td[3] = 5;
	write_plain(path, "nu", 3, nd);
	write_plain(path, "tensor", 4, td);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_SHAPE);
	assert_err_has("(3, 2, 4, 5)");
	unlink(path);

	/* non-finite values name dataset and sample */
	assert_status(write_darcy(path, 4, 1, NULL, &nan), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_NONFINITE);
	assert_err_has("'tensor' sample 1");
	assert_null(d.in);
	assert_status(write_darcy(path, 4, 1, &inf, NULL), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_NONFINITE);
	assert_err_has("'nu' sample 2");
	o.max_samples = 2;	/* the bad sample is not read */
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_OK);
	pno_dataset_free(&d);

	/* time indices */
	assert_status(write_series(path, 1, 0), PNO_STATUS_OK);
	o = (struct pno_dataset_opts){0, T, 0, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_RANGE);
	assert_err_has("T = 6");
	o = (struct pno_dataset_opts){-1, 2, 0, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_RANGE);
	o = (struct pno_dataset_opts){T - 1, -1, 0, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_RANGE);
	assert_err_has("both 5");
	o = (struct pno_dataset_opts){0, -2, 0, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_INVALID);
	o = (struct pno_dataset_opts){0, -1, -3, 0};
	assert_status(pno_dataset_read(&d, path, &o), PNO_STATUS_INVALID);
	unlink(path);
}

/* A cut file (a copy interrupted, a full disk) is refused, never read. */
static void test_truncated(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("whole.h5"), *cut = tu_tmp_path("cut.h5");
	struct pno_dataset d;
	FILE *fp;
	char *b;
	long n;
	assert_status(write_darcy(path, 4, 1, NULL, NULL), PNO_STATUS_OK);
	assert_non_null(fp = fopen(path, "rb"));
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	assert_non_null(b = malloc((size_t)n));
	assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	for (long len = 0; len < n; len += 1 + len / 8) {
		assert_non_null(fp = fopen(cut, "wb"));
		assert_int_equal(fwrite(b, 1, (size_t)len, fp), (size_t)len);
		fclose(fp);
		enum pno_status s = pno_dataset_read(&d, cut, NULL);
		if (s != PNO_STATUS_FORMAT)
			fail_msg("cut at %ld of %ld: %s (%s)", len, n,
				 pno_status_name(s), pno_last_error());
		assert_null(d.in);
	}
	free(b);
	unlink(path);
	unlink(cut);
}

static void test_write_errors(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("exists.h5");
	struct pno_dataset d;
	float x[2] = {1, 2};
	struct pno_h5_array a = {"tensor", 3, {1, 2, 1}, x};
	assert_status(write_series(path, 1, 1), PNO_STATUS_OK);
	/* existing target without overwrite: EXISTS and the file unchanged */
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 0), PNO_STATUS_EXISTS);
	assert_err_has(path);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
	check_pair(&d, 0, T - 1);
	pno_dataset_free(&d);
	assert_int_equal(tu_temps_left(path), 0);
	/* overwrite replaces it */
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 1), PNO_STATUS_OK);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
	assert_int_equal(d.N, 1);
	assert_true(d.in[0] == 1 && d.out[0] == 2);
	pno_dataset_free(&d);
	/* invalid arrays */
	a.shape[0] = -1;
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 1), PNO_STATUS_INVALID);
	a.shape[0] = 1;
	a.data = NULL;
	assert_status(pno_h5_write(path, &a, 1, NULL, 0, 1), PNO_STATUS_INVALID);
	assert_err_has("'tensor'");
	/* unwritable place */
	a.data = x;
	assert_status(pno_h5_write("/nonexistent-pno-dir/d.h5", &a, 1, NULL, 0, 1),
		      PNO_STATUS_IO);
	assert_err_has("/nonexistent-pno-dir/d.h5");
	/* two datasets of one name: HDF5 refuses, nothing is left behind */
	struct pno_h5_array two[2] = {a, a};
	assert_status(pno_h5_write(path, two, 2, NULL, 0, 1), PNO_STATUS_IO);
	assert_err_has("'tensor'");
	assert_int_equal(tu_temps_left(path), 0);
	assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
	pno_dataset_free(&d);
	unlink(path);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("alloc.h5");
	struct pno_dataset d;
	long n;
	assert_status(write_darcy(path, 4, 1, NULL, NULL), PNO_STATUS_OK);
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (n = 1;; n++) {
		tu_alloc_reset(n);
		if (tu_alloc_step(pno_dataset_read(&d, path, NULL), live0)) {
			pno_dataset_free(&d);
			break;
		}
		assert_null(d.in);
		assert_null(d.out);
	}
	assert_true(n >= 2);
	/* writer: NOMEM before anything is touched */
	for (n = 1;; n++) {
		tu_alloc_reset(n);
		if (tu_alloc_step(write_series(path, 1, 1), live0))
			break;
		assert_int_equal(tu_temps_left(path), 0);
		tu_alloc_reset(0);
		assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
		assert_string_equal(d.layout, "darcy");
		pno_dataset_free(&d);
	}
	tu_alloc_uninstall();
	unlink(path);
}

/* I/O failure at the fsync / rename / directory fsync points. */
static void test_io_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("iofail.h5");
	struct pno_dataset d;
	long n;
	for (n = 1;; n++) {
		assert_status(write_darcy(path, 4, 1, NULL, NULL), PNO_STATUS_OK);
		pno__io_fault_reset(n);
		enum pno_status s = write_series(path, 1, 1);
		long points = pno__io_fault_count();
		pno__io_fault_reset(0);
		if (points < n) {
			assert_status(s, PNO_STATUS_OK);
			break;
		}
		assert_status(s, PNO_STATUS_IO);
		assert_err_has(path);
		int renamed = strstr(pno_last_error(), "renamed") != NULL;
		assert_int_equal(tu_temps_left(path), 0);
		assert_status(pno_dataset_read(&d, path, NULL), PNO_STATUS_OK);
		assert_string_equal(d.layout, renamed ? "timeseries" : "darcy");
		pno_dataset_free(&d);
	}
	assert_true(n >= 3);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_darcy_roundtrip),
		cmocka_unit_test(test_series_roundtrip),
		cmocka_unit_test(test_float64_input),
		cmocka_unit_test(test_pdebench_layouts),
		cmocka_unit_test(test_storage),
		cmocka_unit_test(test_read_errors),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_io_failures),
	};
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
