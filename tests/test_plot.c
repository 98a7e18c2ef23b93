/* Plots: every figure decodes as a PNG of the asked size with real
 * content; fields land where the layout puts them (x right, y up, own
 * colour range per panel); bad input fails before anything is written;
 * replacement is atomic; figures from two threads are serialized. */
#include "testutil.h"

#include "pno/plot.h"

#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* fontconfig (under pango/cairo) keeps its caches until exit */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libfontconfig.so\n";
}

/* Remove a test figure, unless PNO_TEST_KEEP_PLOTS is set (to look at). */
static void done_with(const char *path)
{
	if (!getenv("PNO_TEST_KEEP_PLOTS"))
		unlink(path);
}

struct img {
	int w, h;
	unsigned char *rgb;	/* (h, w, 3), row 0 at the top */
};

/* 1 and the image if `path` decodes as a PNG, else 0. */
static int img_read(struct img *im, const char *path)
{
	png_image pi;
	memset(&pi, 0, sizeof pi);
	pi.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_file(&pi, path))
		return 0;
	pi.format = PNG_FORMAT_RGB;
	im->w = (int)pi.width;
	im->h = (int)pi.height;
	im->rgb = malloc(PNG_IMAGE_SIZE(pi));
	assert_non_null(im->rgb);
	if (!png_image_finish_read(&pi, NULL, im->rgb, 0, NULL)) {
		free(im->rgb);
		return 0;
	}
	return 1;
}

static void img_load(struct img *im, const char *path, int w, int h)
{
	if (!img_read(im, path))
		fail_msg("%s does not decode as a PNG", path);
	assert_int_equal(im->w, w);
	assert_int_equal(im->h, h);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static int distinct_colours(const struct img *im)
{
	size_t n = (size_t)im->w * im->h, d = 0;
	uint32_t *c = malloc(n * sizeof *c);
	assert_non_null(c);
	for (size_t i = 0; i < n; i++)
		c[i] = (uint32_t)im->rgb[3 * i] << 16 | im->rgb[3 * i + 1] << 8 |
		       im->rgb[3 * i + 2];
	qsort(c, n, sizeof *c, cmp_u32);
	for (size_t i = 0; i < n; i++)
		d += i == 0 || c[i] != c[i - 1];
	free(c);
	return (int)d;
}

static int near(const unsigned char *p, int r, int g, int b, int tol)
{
	return abs(p[0] - r) + abs(p[1] - g) + abs(p[2] - b) <= tol;
}

/* Pixels near colour (r, g, b) in columns [x0, x1). */
static long count_colour(const struct img *im, int x0, int x1, int r, int g,
			 int b, int tol)
{
	long n = 0;
	for (int y = 0; y < im->h; y++)
		for (int x = x0; x < x1; x++)
			n += near(im->rgb + 3 * ((size_t)y * im->w + x), r, g, b, tol);
	return n;
}

/* viridis ends as plot.c defines them */
#define LOW 68, 1, 84
#define HIGH 253, 231, 37
#define TOL 30

/* Columns (vertical = 0) or rows (vertical = 1) of the block [x0, x1) with
 * more than `min` pixels of the colour: their first and last index and
 * count. A colour bar adds only short runs, so it does not qualify. */
static int lines_of(const struct img *im, int x0, int x1, int vertical,
		    int r, int g, int b, int min, int *first, int *last)
{
	int n = 0, outer = vertical ? im->h : x1 - x0,
	    inner = vertical ? x1 - x0 : im->h;
	*first = -1;
	*last = -1;
	for (int a = 0; a < outer; a++) {
		int c = 0;
		for (int t = 0; t < inner; t++) {
			int x = vertical ? x0 + t : x0 + a, y = vertical ? a : t;
			c += near(im->rgb + 3 * ((size_t)y * im->w + x), r, g, b, TOL);
		}
		if (c > min) {
			if (*first < 0)
				*first = a;
			*last = a;
			n++;
		}
	}
	return n;
}

/* A (X, Y) field: 0 where i < X/2 (split_x) or j < Y/2, else `hi`,
 * plus `base`. */
static float *split_field(int X, int Y, int split_x, float base, float hi)
{
	float *f = malloc((size_t)X * Y * sizeof *f);
	assert_non_null(f);
	for (int i = 0; i < X; i++)
		for (int j = 0; j < Y; j++)
			f[i * Y + j] = base + ((split_x ? i >= X / 2 : j >= Y / 2) ? hi : 0);
	return f;
}

static void test_fields_2d(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("fields2d.png");
	int X = 32, Y = 24, W = 1200, H = 500;
	float *a = split_field(X, Y, 1, 0, 1);
	float *b = split_field(X, Y, 1, 1000, 1000);	/* other range, same look */
	float *c = split_field(X, Y, 0, -5, 0.5f);	/* top half high */
	struct pno_plot_panel p[3] = {{"left low", a}, {"x1000 + 1000", b},
				      {"top high", c}};
	struct pno_plot_opts o = {W, H};
	struct img im;
	int f0, l0, f1, l1, pw = W / 3;
	assert_status(pno_plot_fields(path, "split fields", 2, X, Y, 3, p, &o),
		      PNO_STATUS_OK);
	img_load(&im, path, W, H);
	int nc = distinct_colours(&im);
	print_message("2D fields: %d distinct colours\n", nc);
	assert_true(nc > 50);
	/* panels 0 and 1: purple columns all left of yellow columns, each a
	 * solid block of at least 40 columns; min 100 pixels per column is
	 * well above a colour bar's end (a few % of the bar height) */
	for (int k = 0; k < 2; k++) {
		int nl = lines_of(&im, k * pw, (k + 1) * pw, 0, LOW, 100, &f0, &l0);
		int nh = lines_of(&im, k * pw, (k + 1) * pw, 0, HIGH, 100, &f1, &l1);
		print_message("panel %d: low columns %d..%d (%d), high %d..%d (%d)\n",
			      k, f0, l0, nl, f1, l1, nh);
		assert_true(nl >= 40 && nh >= 40);
		assert_true(l0 < f1);
		/* cell i covers [i/X, (i+1)/X]: the halves are equally wide
		 * up to the frame line and edge anti-aliasing (3 columns) */
		assert_true(abs(nl - nh) <= 3);
	}
	/* panel 2: y up, so the high half is the upper rows */
	int nl = lines_of(&im, 2 * pw, 3 * pw, 1, LOW, 100, &f0, &l0);
	int nh = lines_of(&im, 2 * pw, 3 * pw, 1, HIGH, 100, &f1, &l1);
	print_message("panel 2: low rows %d..%d (%d), high rows %d..%d (%d)\n", f0,
		      l0, nl, f1, l1, nh);
	assert_true(nl >= 40 && nh >= 40);
	assert_true(abs(nl - nh) <= 3);
	assert_true(l1 < f0);
	/* no image colours in the page margin left of panel 0's axes */
	assert_int_equal(count_colour(&im, 0, 5, LOW, TOL), 0);
	free(im.rgb);
	free(a);
	free(b);
	free(c);
	assert_int_equal(tu_temps_left(path), 0);
	done_with(path);
}

static void test_fields_constant_and_1d(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("fields_const.png");
	int X = 16, Y = 16;
	float *z = calloc((size_t)X * Y, sizeof *z), *k = malloc(X * Y * sizeof *k);
	assert_non_null(z);
	assert_non_null(k);
	for (int i = 0; i < X * Y; i++)
		k[i] = 3.25f;
	struct pno_plot_panel p[2] = {{"zero", z}, {"constant 3.25", k}};
	struct img im;
	assert_status(pno_plot_fields(path, "constant", 2, X, Y, 2, p, NULL),
		      PNO_STATUS_OK);
	img_load(&im, path, 600, 400);	/* the default size of two panels */
	done_with(path);
	path = tu_tmp_path("fields1d.png");
	/* a constant field sits mid-range: no pixel at either end colour
	 * inside the image, but the colour bar still shows them: few */
	long lo = count_colour(&im, 0, 300, LOW, TOL);
	long mid = count_colour(&im, 0, 300, 33, 145, 140, TOL);	/* viridis(0.5) */
	print_message("constant field: %ld mid-colour px, %ld low-end px\n", mid, lo);
	assert_true(mid > 5000);
	assert_true(lo < mid / 20);
	free(im.rgb);

	/* 1D: one line per panel in its colour */
	float *s = malloc(64 * sizeof *s), *t = malloc(64 * sizeof *t);
	assert_non_null(s);
	assert_non_null(t);
	for (int i = 0; i < 64; i++) {
		s[i] = (float)sin(2 * M_PI * i / 64.0);
		t[i] = 2;
	}
	struct pno_plot_panel q[2] = {{"sin", s}, {"flat", t}};
	struct pno_plot_opts o = {900, 300};
	assert_status(pno_plot_fields(path, "1D # fields", 1, 64, 0, 2, q, &o),
		      PNO_STATUS_OK);
	img_load(&im, path, 900, 300);
	long blue = count_colour(&im, 0, 450, 0, 114, 178, 60);
	long orange = count_colour(&im, 450, 900, 230, 159, 0, 60);
	print_message("1D: %ld blue px in panel 0, %ld orange px in panel 1, "
		      "%d colours\n", blue, orange, distinct_colours(&im));
	assert_true(blue > 200 && orange > 200);
	assert_int_equal(count_colour(&im, 450, 900, 0, 114, 178, 20), 0);
	free(im.rgb);
	free(z);
	free(k);
	free(s);
	free(t);
	done_with(path);
}

static void test_uq(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("uq2d.png");
	int X = 20, Y = 20;
	size_t P = (size_t)X * Y;
	float *in = malloc(P * 4 * sizeof(float));
	assert_non_null(in);
	float *tr = in + P, *mu = tr + P, *sd = mu + P;
	for (size_t i = 0; i < P; i++) {
		in[i] = (float)(i % 7);
		tr[i] = (float)sin(0.1 * i);
		mu[i] = tr[i] + 0.1f * (float)cos(0.3 * i);
		sd[i] = 0.1f + 0.01f * (float)(i % 5);
	}
	struct pno_plot_uq f = {in, tr, mu, sd};
	struct img im;
	assert_status(pno_plot_uq(path, "darcy: sample 0", 2, X, Y, &f, NULL),
		      PNO_STATUS_OK);
	img_load(&im, path, 1400, 400);	/* five panels, default */
	/* five colour maps: each panel column holds a tall image block */
	for (int k = 0; k < 5; k++) {
		long v;
		int f0, l0;
		int n = lines_of(&im, k * 280, (k + 1) * 280, 0, 33, 145, 140, 0,
				 &f0, &l0);
		v = count_colour(&im, k * 280, (k + 1) * 280, 0, 0, 0, 0);
		print_message("uq panel %d: %d columns with mid colours, %ld black px\n",
			      k, n, v);
		assert_true(n > 0 && v > 100);
	}
	free(im.rgb);

	done_with(path);
	/* 1D: band, lines and no input panel */
	path = tu_tmp_path("uq1d.png");
	f.input = NULL;
	assert_status(pno_plot_uq(path, "burgers", 1, X * Y, 0, &f, NULL),
		      PNO_STATUS_OK);
	img_load(&im, path, 680, 400);
	long band = count_colour(&im, 0, 340, 198, 219, 239, 10);
	long red = count_colour(&im, 340, 680, 213, 94, 0, 60);
	print_message("uq 1D: %ld band px, %ld |error| px\n", band, red);
	assert_true(band > 1000 && red > 200);
	free(im.rgb);

	/* negative std, NaN in the mean */
	sd[3] = -1;
	assert_status(pno_plot_uq(path, "x", 2, X, Y, &f, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("std");
	sd[3] = 0;
	mu[5] = NAN;
	assert_status(pno_plot_uq(path, "x", 1, X * Y, 0, &f, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("mean: non-finite value nan at index 5");
	free(in);
	done_with(path);
}

static void test_diagrams(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("rel.png");
	double nom[9], obs[2 * 9];
	const char *names[2] = {"PNO (ours)", "MC dropout"};
	struct img im;
	for (int k = 0; k < 9; k++) {
		nom[k] = 0.1 * (k + 1);
		obs[k] = nom[k];				/* calibrated */
		obs[9 + k] = 0.5 + 0.5 * (nom[k] - 0.5) * 0.4;	/* overconfident */
	}
	assert_status(pno_plot_reliability(path, "reliability", 2, names, nom, obs,
					   9, NULL), PNO_STATUS_OK);
	img_load(&im, path, 600, 600);
	int nc = distinct_colours(&im);
	long blue = count_colour(&im, 0, 600, 0, 114, 178, 40);
	long orange = count_colour(&im, 0, 600, 230, 159, 0, 40);
	print_message("reliability: %d colours, %ld blue, %ld orange px\n", nc,
		      blue, orange);
	assert_true(nc > 20 && blue > 300 && orange > 300);
	free(im.rgb);

	done_with(path);
	path = tu_tmp_path("cov.png");
	struct pno_plot_opts o = {500, 450};
	double cnom[4] = {0.5, 0.8, 0.9, 0.95}, cobs[4] = {0.4, 0.7, 0.85, 0.9};
	assert_status(pno_plot_coverage(path, "coverage", 1, names, cnom, cobs, 4,
					&o), PNO_STATUS_OK);
	img_load(&im, path, 500, 450);
	blue = count_colour(&im, 0, 500, 0, 114, 178, 40);
	print_message("coverage: %d colours, %ld blue px\n", distinct_colours(&im),
		      blue);
	assert_true(blue > 100);
	assert_int_equal(count_colour(&im, 0, 500, 230, 159, 0, 40), 0);
	free(im.rgb);

	obs[4] = 1.5;
	assert_status(pno_plot_reliability(path, "r", 2, names, nom, obs, 9, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("method 0 (PNO (ours)) level 4");
	obs[4] = 0.5;
	nom[0] = NAN;
	assert_status(pno_plot_reliability(path, "r", 2, names, nom, obs, 9, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("nominal level 0");
	nom[0] = 0.1;
	assert_status(pno_plot_coverage(path, "c", 2, NULL, nom, obs, 9, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_coverage(path, "c", 0, names, nom, obs, 9, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_coverage(path, "c", 2, names, nom, obs, 0, NULL),
		      PNO_STATUS_INVALID);
	done_with(path);
}

static void test_curves(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("curves.png");
	double x[50], y[3 * 50];
	const char *names[3] = {"error", "std", "constant"};
	struct img im;
	for (int i = 0; i < 50; i++) {
		x[i] = i;
		y[i] = 1e-3 * exp(0.2 * i);
		y[50 + i] = 1e-3 * exp(0.15 * i);
		y[100 + i] = 0.5;
	}
	assert_status(pno_plot_curves(path, "rollout", "step", "relative L2", 3,
				      names, x, y, 50, 1, NULL), PNO_STATUS_OK);
	img_load(&im, path, 800, 500);
	long b = count_colour(&im, 0, 800, 0, 114, 178, 40);
	long o = count_colour(&im, 0, 800, 230, 159, 0, 40);
	long g = count_colour(&im, 0, 800, 0, 158, 115, 40);
	print_message("curves: %d colours, px per series %ld %ld %ld\n",
		      distinct_colours(&im), b, o, g);
	assert_true(b > 300 && o > 300 && g > 300);
	free(im.rgb);

	done_with(path);
	/* a single point and a constant series still plot */
	path = tu_tmp_path("curve1.png");
	assert_status(pno_plot_curves(path, NULL, NULL, NULL, 1, names, x, y + 100,
				      1, 0, NULL), PNO_STATUS_OK);
	img_load(&im, path, 800, 500);
	free(im.rgb);

	y[7] = 0;
	assert_status(pno_plot_curves(path, "r", "x", "y", 3, names, x, y, 50, 1,
				      NULL), PNO_STATUS_INVALID);
	assert_err_has("series 0 (error) point 7");
	y[7] = NAN;
	assert_status(pno_plot_curves(path, "r", "x", "y", 3, names, x, y, 50, 0,
				      NULL), PNO_STATUS_INVALID);
	assert_err_has("not finite");
	done_with(path);
}

static int file_is(const char *path, const char *content)
{
	char buf[64] = {0};
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	return n == strlen(content) && memcmp(buf, content, n) == 0;
}

static void test_bad_input(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("bad.png");
	float f[16] = {0};
	struct pno_plot_panel p[2] = {{"a", f}, {"b", NULL}};
	struct pno_plot_opts small = {10, 400}, huge = {400, 100000};
	struct img im;

	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 0, p, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("0 panels");
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 1, NULL, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 2, p, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("panel 1 (b): NULL data");
	assert_status(pno_plot_fields(path, "t", 3, 4, 4, 1, p, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_fields(path, "t", 2, 4, 1, 1, p, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 1, p, &small),
		      PNO_STATUS_INVALID);
	assert_err_has("size 10 x 400");
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 1, p, &huge),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_fields(NULL, "t", 2, 4, 4, 1, p, NULL),
		      PNO_STATUS_INVALID);
	assert_status(pno_plot_fields("", "t", 2, 4, 4, 1, p, NULL),
		      PNO_STATUS_INVALID);
	f[9] = INFINITY;
	p[1].data = f;
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 2, p, NULL),
		      PNO_STATUS_INVALID);
	assert_err_has("panel 0 (a): non-finite value inf at index 9");
	f[9] = 0;
	assert_int_equal(access(path, F_OK), -1);	/* nothing written */
	assert_int_equal(tu_temps_left(path), 0);

	/* a failed plot leaves an existing file as it was; a good one
	 * replaces it */
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs("old", fp);
	fclose(fp);
	f[0] = NAN;
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 1, p, NULL),
		      PNO_STATUS_INVALID);
	assert_true(file_is(path, "old"));
	f[0] = 1;
	assert_status(pno_plot_fields(path, "t", 2, 4, 4, 1, p, NULL),
		      PNO_STATUS_OK);
	img_load(&im, path, 600, 400);
	free(im.rgb);
	assert_int_equal(tu_temps_left(path), 0);
	unlink(path);

	/* unwritable: a missing directory, and a read-only one */
	assert_status(pno_plot_fields("/nonexistent-pno-dir/x.png", "t", 2, 4, 4,
				      1, p, NULL), PNO_STATUS_IO);
	assert_err_has("/nonexistent-pno-dir/x.png");
	char dir[1100], target[1200];
	snprintf(dir, sizeof dir, "%s", tu_tmp_path("rodir"));
	assert_int_equal(mkdir(dir, 0555), 0);
	snprintf(target, sizeof target, "%s/x.png", dir);
	enum pno_status s = pno_plot_fields(target, "t", 2, 4, 4, 1, p, NULL);
	if (geteuid() != 0) {
		assert_int_equal(s, PNO_STATUS_IO);
		assert_err_has("cannot create temporary file");
	}
	print_message("read-only dir: %s%s%s\n", pno_status_name(s),
		      s ? ", " : " (running as root)", s ? pno_last_error() : "");
	unlink(target);
	assert_int_equal(tu_temps_left(target), 0);
	assert_int_equal(rmdir(dir), 0);

	assert_status(pno_plot_fields(tu_tmp_path("a%nb.png"), "t", 2, 4, 4, 1, p,
				      NULL), PNO_STATUS_INVALID);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("alloc.png");
	float f[64];
	for (int i = 0; i < 64; i++)
		f[i] = (float)i;
	struct pno_plot_panel p[1] = {{"f", f}};
	struct pno_plot_uq u = {f, f, f, f};
	const char *names[1] = {"m"};
	double x[2] = {0, 1}, y[2] = {1, 2};
	long k;
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_plot_fields(path, "t", 2, 8, 8, 1, p, NULL),
				  live0))
			break;
		assert_int_equal(tu_temps_left(path), 0);
	}
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_plot_uq(path, "t", 2, 8, 8, &u, NULL), live0))
			break;
	}
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_plot_uq(path, "t", 1, 64, 0, &u, NULL), live0))
			break;
	}
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_plot_curves(path, "t", "x", "y", 1, names, x, y,
						  2, 0, NULL), live0))
			break;
	}
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	assert_int_equal(tu_temps_left(path), 0);
	done_with(path);
}

/* src/plot.c's hook: a figure in which PLplot fails (1: plabort,
 * 2: plexit) */
enum pno_status pno__plot_fault(const char *path, int kind);

static void test_plplot_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("fault.png");
	float f[16] = {0, 1, 2, 3};
	struct pno_plot_panel p[1] = {{"f", f}};
	struct img im;
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs("old", fp);
	fclose(fp);
	assert_status(pno__plot_fault(path, 1), PNO_STATUS_INTERNAL);
	assert_err_has("nx and ny must be positive");
	assert_true(file_is(path, "old"));
	assert_int_equal(tu_temps_left(path), 0);
	/* plexit would print, tidy and exit(1): the process must survive */
	assert_status(pno__plot_fault(path, 2), PNO_STATUS_INTERNAL);
	assert_err_has("pno test: fatal error");
	assert_true(file_is(path, "old"));
	assert_int_equal(tu_temps_left(path), 0);
	/* and PLplot still works afterwards */
	assert_status(pno_plot_fields(path, "after", 2, 4, 4, 1, p, NULL),
		      PNO_STATUS_OK);
	img_load(&im, path, 600, 400);
	assert_true(distinct_colours(&im) > 20);
	free(im.rgb);
	unlink(path);
}

struct job {
	int id;
	enum pno_status s[3];
	char path[3][1100];
};

static void *plot_thread(void *arg)
{
	struct job *j = arg;
	float f[16 * 16];
	const char *names[2] = {"a", "b"};
	double nom[3] = {0.1, 0.5, 0.9}, obs[6] = {0.1, 0.5, 0.9, 0.2, 0.5, 0.8};
	double x[4] = {0, 1, 2, 3}, y[8] = {1, 2, 3, 4, 4, 3, 2, 1};
	for (int i = 0; i < 256; i++)
		f[i] = (float)((i * (j->id + 3)) % 17);
	struct pno_plot_panel p[2] = {{"f", f}, {"g", f}};
	j->s[0] = pno_plot_fields(j->path[0], "thread", 2, 16, 16, 2, p, NULL);
	j->s[1] = pno_plot_reliability(j->path[1], "thread", 2, names, nom, obs,
				       3, NULL);
	j->s[2] = pno_plot_curves(j->path[2], "thread", "x", "y", 2, names, x, y,
				  4, 0, NULL);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct job jobs[2];
	pthread_t t[2];
	static const int W[3] = {600, 600, 800}, H[3] = {400, 600, 500};
	for (int i = 0; i < 2; i++) {
		jobs[i].id = i;
		for (int k = 0; k < 3; k++) {
			char name[64];
			snprintf(name, sizeof name, "thread%d_%d.png", i, k);
			snprintf(jobs[i].path[k], sizeof jobs[i].path[k], "%s",
				 tu_tmp_path(name));
		}
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, plot_thread, &jobs[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	struct img im[2][3];
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 3; k++) {
			assert_status(jobs[i].s[k], PNO_STATUS_OK);
			img_load(&im[i][k], jobs[i].path[k], W[k], H[k]);
			assert_true(distinct_colours(&im[i][k]) > 20);
			assert_int_equal(tu_temps_left(jobs[i].path[k]), 0);
			unlink(jobs[i].path[k]);
		}
	/* the threads' field figures show their own data (no crossed
	 * streams); the other two figures got the same input */
	size_t n0 = (size_t)W[0] * H[0] * 3, n1 = (size_t)W[1] * H[1] * 3;
	assert_true(memcmp(im[0][0].rgb, im[1][0].rgb, n0) != 0);
	assert_true(memcmp(im[0][1].rgb, im[1][1].rgb, n1) == 0);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 3; k++)
			free(im[i][k].rgb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_2d),
		cmocka_unit_test(test_fields_constant_and_1d),
		cmocka_unit_test(test_uq),
		cmocka_unit_test(test_diagrams),
		cmocka_unit_test(test_curves),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_plplot_failures),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
