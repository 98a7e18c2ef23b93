#include "testutil.h"
#include "pno/fno.h"
#include "pno/io.h"
#include "pno/pde.h"

#include <math.h>

#include <dirent.h>
#include <execinfo.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long n_alloc, fail_at_n, live;
static int failed;

static void *tu_alloc(void *ud, size_t size, size_t align)
{
	void *p = NULL;
	(void)ud;
	n_alloc++;
	if (fail_at_n > 0 && n_alloc == fail_at_n) {
		failed = 1;
		if (getenv("TU_ALLOC_TRACE")) { /* debugging aid: who failed? */
			void *bt[16];
			int nb = backtrace(bt, 16);
			fprintf(stderr, "injected failure of allocation %ld:\n", n_alloc);
			backtrace_symbols_fd(bt, nb, 2);
		}
		return NULL;
	}
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	live++;
	return p;
}

static void tu_free(void *ud, void *p)
{
	(void)ud;
	live--;
	free(p);
}

void tu_alloc_install(void)
{
	struct pno_allocator a = {tu_alloc, tu_free, NULL};
	pno_allocator_set(&a);
	tu_alloc_reset(0);
}

void tu_alloc_uninstall(void) { pno_allocator_set(NULL); }

void tu_alloc_reset(long fail_at)
{
	n_alloc = 0;
	fail_at_n = fail_at;
	failed = 0;
}

long tu_alloc_count(void) { return n_alloc; }
long tu_alloc_live(void) { return live; }
int tu_alloc_failed(void) { return failed; }

int tu_alloc_step_(enum pno_status s, long live0, const char *expr,
		   const char *file, int line)
{
	if (!failed) {
		if (s == PNO_STATUS_OK)
			return 1;
		print_error("ERROR: %s = %s, want OK: no allocation failed "
			    "(%s)\n", expr, pno_status_name(s), pno_last_error());
		_fail(file, line);
	}
	if (s != PNO_STATUS_NOMEM) {
		print_error("ERROR: %s = %s with allocation %ld failing, want "
			    "NOMEM (%s)\n", expr, pno_status_name(s), fail_at_n,
			    pno_last_error());
		_fail(file, line);
	}
	if (live != live0) {
		print_error("ERROR: %ld blocks live after allocation %ld failed "
			    "in %s, want %ld\n", live, fail_at_n, expr, live0);
		_fail(file, line);
	}
	return 0;
}

const char *tu_tmp_path(const char *name)
{
	static char buf[4][1024];
	static int slot;
	const char *dir = getenv("PNO_TEST_TMP");
	char *b = buf[slot++ & 3];
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(b, sizeof buf[0], "%s/%ld_%s", dir, (long)getpid(), name);
	return b;
}

int tu_temps_left(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[1024], pre[1024];
	DIR *d;
	struct dirent *e;
	int n = 0;
	assert_non_null(slash);
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	snprintf(pre, sizeof pre, "%s.tmp.", slash + 1);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d)))
		n += strncmp(e->d_name, pre, strlen(pre)) == 0;
	closedir(d);
	return n;
}

float *tu_h5_read(const char *path, const char *name, int *rank,
		  int64_t shape[8], size_t *count)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (f < 0)
		fail_msg("cannot open %s", path);
	hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
	if (ds < 0)
		fail_msg("%s has no dataset '%s'", path, name);
	hid_t sp = H5Dget_space(ds);
	hsize_t dims[8];
	int r = H5Sget_simple_extent_ndims(sp);
	assert_in_range(r, 0, 8);
	H5Sget_simple_extent_dims(sp, dims, NULL);
	size_t n = 1;
	for (int d = 0; d < r; d++) {
		n *= dims[d];
		if (shape)
			shape[d] = (int64_t)dims[d];
	}
	float *x = malloc(n * sizeof *x + 1);	/* + 1: never malloc(0) */
	assert_non_null(x);
	if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
		fail_msg("cannot read '%s' of %s", name, path);
	H5Sclose(sp);
	H5Dclose(ds);
	H5Fclose(f);
	if (rank)
		*rank = r;
	if (count)
		*count = n;
	return x;
}

float *tu_h5_read_same(const char *path1, const char *path2,
		       const char *name, int *rank, int64_t shape[8],
		       size_t *count)
{
	int r1, r2;
	int64_t s1[8], s2[8];
	size_t n1, n2;
	float *a = tu_h5_read(path1, name, &r1, s1, &n1);
	float *b = tu_h5_read(path2, name, &r2, s2, &n2);
	assert_int_equal(r1, r2);
	assert_memory_equal(s1, s2, (size_t)r1 * sizeof s1[0]);
	assert_memory_equal(a, b, n1 * sizeof *a);
	free(b);
	if (rank)
		*rank = r1;
	if (shape)
		memcpy(shape, s1, (size_t)r1 * sizeof s1[0]);
	if (count)
		*count = n1;
	return a;
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (d > m || isnan(d))
			m = isnan(d) ? INFINITY : d;
	}
	return m;
}

double tu_rel_l2(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

static double tu_heat_decay(double lam, void *ud)
{
	return exp(-lam * *(double *)ud);
}

void tu_heat_dataset(struct pno_dataset *d, int dims, int N, int res,
		     double kt, uint64_t seed)
{
	struct pno_grf_opts g = {2.0, 5.0, 25.0};
	memset(d, 0, sizeof *d);
	d->N = N, d->Cin = d->Cout = 1, d->dims = dims;
	d->X = res, d->Y = dims == 2 ? res : 1;
	size_t P = (size_t)d->X * d->Y;
	d->in = pno_malloc((size_t)N * P * sizeof(float));
	d->out = pno_malloc((size_t)N * P * sizeof(float));
	double *u0 = malloc(P * sizeof *u0), *u1 = malloc(P * sizeof *u1);
	assert_non_null(d->in);
	assert_non_null(d->out);
	assert_non_null(u0);
	assert_non_null(u1);
	for (int n = 0; n < N; n++) {
		assert_int_equal(pno_grf_periodic(u0, u1, dims, d->X, d->Y, &g,
						  seed, (uint64_t)n,
						  tu_heat_decay, &kt),
				 PNO_STATUS_OK);
		for (size_t p = 0; p < P; p++) {
			d->in[(size_t)n * P + p] = (float)u0[p];
			d->out[(size_t)n * P + p] = (float)u1[p];
		}
	}
	free(u0);
	free(u1);
}

double tu_fno_probe(struct pno_fno *m, const float *x, const float *r, int B)
{
	pno_fno_set_rng(m, 5);
	const float *out = pno_fno_forward(m, x, B);
	size_t n = (size_t)B * pno_fno_out_channels(&m->arch) * m->P;
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)out[i] * r[i];
	return s;
}

double tu_fno_grad_error(struct pno_fno *m, int t, const float *x,
			 const float *r, int B, size_t points, char name[48])
{
	size_t off, cnt;
	pno_fno_tensor_info(m, t, name, 48, NULL, NULL, &off, &cnt);
	double scale = 0;
	for (size_t i = 0; i < cnt; i++)
		scale = fmax(scale, fabs(m->params[off + i]));
	float h = (float)(1e-2 * (scale > 0 ? scale : 1));
	double num = 0, den = 0;
	size_t stride = cnt > points ? cnt / points : 1;
	for (size_t i = 0; i < cnt; i += stride) {
		float keep = m->params[off + i];
		m->params[off + i] = keep + h;
		double lp = tu_fno_probe(m, x, r, B);
		m->params[off + i] = keep - h;
		double lm = tu_fno_probe(m, x, r, B);
		m->params[off + i] = keep;
		double fd = (lp - lm) / (2.0 * h);
		double g = m->grads[off + i];
		num += (fd - g) * (fd - g);
		den += fd * fd;
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}
