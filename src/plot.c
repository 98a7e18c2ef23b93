/* PNG figures through PLplot's pngcairo device: validation, one locked
 * PLplot stream per figure, atomic output.
 *
 * Like the rest of the library this never prints and never exits, though
 * PLplot on its own would do both on an error: plsError captures the
 * message of a recoverable error (plabort) instead of printing it, and an
 * exit handler (plsexit, called by plexit before anything else) jumps back
 * into render(), so a fatal error becomes PNO_STATUS_INTERNAL with
 * PLplot's message. Only plwarn has no hook; validated input never
 * reaches it (docs/eval/plots.md). */
#include "internal.h"
#include "pno/io.h"
#include "pno/plot.h"

#include <math.h>
#include <plplot.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TEXT_MAX 512

/* ---- PLplot state: global, so everything below runs under plot_lock ---- */
static pthread_mutex_t plot_lock = PTHREAD_MUTEX_INITIALIZER;
static jmp_buf pl_jmp;
static PLINT pl_code;
static char pl_errmsg[1024];
static char pl_fatal[512];

/* PLplot's exit handler: plexit() calls it first and it never returns:
 * it jumps back into render(), which turns the error into a status, so
 * plexit's own printing and exit() are never reached. */
static int on_plexit(const char *msg)
{
	snprintf(pl_fatal, sizeof pl_fatal, "%s", msg ? msg : "");
	longjmp(pl_jmp, 1);
	return 0;
}

/* plabort(): the message also lands in pl_errmsg (plsError). */
static void on_plabort(const char *msg)
{
	if (!pl_fatal[0])
		snprintf(pl_fatal, sizeof pl_fatal, "%s", msg ? msg : "");
}

/* cmap0: background, foreground, eight colour-blind-safe line colours
 * (Okabe-Ito), a light band fill and a light grid grey. */
enum { COL_BG, COL_FG, COL_LINE0, COL_BAND = 10, COL_GRID, N_COL0 };
#define N_LINE_COLOURS 8

static void set_palette(void)
{
	static const PLINT r[N_COL0] = {255, 0, 0, 230, 0, 213, 204, 86, 240, 120, 198, 215};
	static const PLINT g[N_COL0] = {255, 0, 114, 159, 158, 94, 121, 180, 228, 120, 219, 215};
	static const PLINT b[N_COL0] = {255, 0, 178, 0, 115, 0, 167, 233, 66, 120, 239, 215};
	/* viridis sampled at 9 points, linear in RGB between them */
	static const PLFLT pos[9] = {0, .125, .25, .375, .5, .625, .75, .875, 1};
	static const PLFLT vr[9] = {.267, .278, .231, .173, .128, .149, .369, .678, .993};
	static const PLFLT vg[9] = {.005, .175, .322, .449, .567, .681, .789, .864, .906};
	static const PLFLT vb[9] = {.329, .483, .546, .558, .551, .507, .383, .190, .144};
	plscmap0n(N_COL0);
	plscmap0(r, g, b, N_COL0);
	plscmap1n(256);
	plscmap1l(1, 9, pos, vr, vg, vb, NULL);
}

typedef void (*draw_fn)(void *ctx);

/* Draw one figure into `path` atomically. Inputs are validated and
 * buffers allocated before this is called. */
static enum pno_status render(const char *path, int w, int h, draw_fn draw,
			      void *ctx)
{
	struct pno_atomic_file af;
	enum pno_status s;
	struct stat st;

	s = pno_atomic_open(&af, path, 1);
	if (s != PNO_STATUS_OK)
		return s;
	/* PLplot opens the file by name itself */
	fclose(af.fp);
	af.fp = NULL;

	pthread_mutex_lock(&plot_lock);
	pl_code = 0;
	pl_errmsg[0] = '\0';
	pl_fatal[0] = '\0';
	if (setjmp(pl_jmp) == 0) {
		plsexit(on_plexit);
		plsabort(on_plabort);
		plsError(&pl_code, pl_errmsg);
		plsdev("pngcairo");
		plsfnam(af.tmp_path);
		plspage(0, 0, w, h, 0, 0);
		plscolbg(255, 255, 255);
		set_palette();
		plinit();
		if (pl_code == 0) {
			pladv(0);
			plschr(0, 0.85);
			draw(ctx);
		}
		plend1();
	} else {
		/* fatal error (in plinit or mid-figure): reset the stream
		 * (plend1 is safe on a half-begun one), unless that is fatal
		 * too */
		if (setjmp(pl_jmp) == 0)
			plend1();
	}
	if (pl_fatal[0] || pl_code)
		s = pno__errorf(PNO_STATUS_INTERNAL, "%s: PLplot failed: %s", path,
				pl_fatal[0] ? pl_fatal : pl_errmsg);
	pthread_mutex_unlock(&plot_lock);

	if (s == PNO_STATUS_OK && (stat(af.tmp_path, &st) != 0 || st.st_size == 0))
		s = pno__errorf(PNO_STATUS_INTERNAL,
				"%s: PLplot wrote nothing to %s", path, af.tmp_path);
	if (s == PNO_STATUS_OK) {
		af.fp = fopen(af.tmp_path, "r+b");
		if (!af.fp)
			s = pno__errorf(PNO_STATUS_IO, "%s: cannot reopen %s", path,
					af.tmp_path);
	}
	if (s != PNO_STATUS_OK) {
		pno_atomic_abort(&af);
		return s;
	}
	return pno_atomic_commit(&af);
}

/* ---- test hook: make PLplot fail inside a figure ---- */

/* from PLplot's private header plplotP.h (exported by libplplot) */
void plexit(const char *errormsg);
enum pno_status pno__plot_fault(const char *path, int kind);

static void draw_fault(void *ctx)
{
	int kind = *(const int *)ctx;
	plvpor(0.1, 0.9, 0.1, 0.9);
	plwind(0, 1, 0, 1);
	if (kind == 1)
		plimagefr(NULL, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, NULL, NULL);
	else
		plexit("pno test: fatal error");
}

/* Used by tests/test_plot.c only, to prove that PLplot's errors come back
 * as statuses with nothing printed and the process alive. kind 1: an
 * aborted operation (plabort), kind 2: a fatal error (plexit). */
enum pno_status pno__plot_fault(const char *path, int kind)
{
	return render(path, 300, 200, draw_fault, &kind);
}

/* ---- validation ---- */

static enum pno_status check_out(const char *fn, const char *path,
				 const struct pno_plot_opts *opts, int defw,
				 int defh, int *w, int *h)
{
	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "%s: empty output path", fn);
	/* PLplot expands "%n" in a file name into a family member number */
	if (strstr(path, "%n"))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: %s: \"%%n\" not allowed in a plot path", fn,
				   path);
	*w = opts && opts->width ? opts->width : defw;
	*h = opts && opts->height ? opts->height : defh;
	if (*w < PNO_PLOT_MIN_PIXELS || *w > PNO_PLOT_MAX_PIXELS ||
	    *h < PNO_PLOT_MIN_PIXELS || *h > PNO_PLOT_MAX_PIXELS)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: %s: size %d x %d pixels outside [%d, %d]", fn,
				   path, *w, *h, PNO_PLOT_MIN_PIXELS,
				   PNO_PLOT_MAX_PIXELS);
	return PNO_STATUS_OK;
}

static enum pno_status check_count(const char *fn, const char *what, int n)
{
	if (n < 1 || n > PNO_PLOT_MAX_SERIES)
		return pno__errorf(PNO_STATUS_INVALID, "%s: %d %s (want 1..%d)", fn,
				   n, what, PNO_PLOT_MAX_SERIES);
	return PNO_STATUS_OK;
}

static enum pno_status check_floats(const char *fn, const char *what,
				    const float *v, size_t n)
{
	if (!v)
		return pno__errorf(PNO_STATUS_INVALID, "%s: %s: NULL data", fn, what);
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: %s: non-finite value %g at index %zu",
					   fn, what, (double)v[i], i);
	return PNO_STATUS_OK;
}

static enum pno_status check_names(const char *fn, const char *const *names,
				   int n)
{
	if (!names)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL names", fn);
	for (int i = 0; i < n; i++)
		if (!names[i])
			return pno__errorf(PNO_STATUS_INVALID, "%s: name %d is NULL",
					   fn, i);
	return PNO_STATUS_OK;
}

static enum pno_status check_grid(const char *fn, int dims, int X, int Y,
				  size_t *P)
{
	if (dims != 1 && dims != 2)
		return pno__errorf(PNO_STATUS_INVALID, "%s: dims %d (want 1 or 2)",
				   fn, dims);
	if (dims == 1)
		Y = 1;
	if (X < 2 || Y < 1 || (dims == 2 && Y < 2) || X > (1 << 16) ||
	    Y > (1 << 16))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: grid %d x %d (want 2..65536 points per axis)",
				   fn, X, Y);
	*P = (size_t)X * (size_t)Y;
	return PNO_STATUS_OK;
}

/* ---- drawing helpers (called under plot_lock) ---- */

/* PLplot text with its escape character '#' made literal. */
static const char *text(char buf[TEXT_MAX], const char *s)
{
	size_t o = 0;
	if (!s)
		s = "";
	for (; *s && o + 3 < TEXT_MAX; s++) {
		if (*s == '#')
			buf[o++] = '#';
		buf[o++] = *s;
	}
	buf[o] = '\0';
	return buf;
}

/* [lo, hi] of v, widened when (nearly) constant so a range always exists. */
static void range_f(const float *v, size_t n, double *lo, double *hi)
{
	double a = v[0], b = v[0];
	for (size_t i = 1; i < n; i++) {
		a = fmin(a, v[i]);
		b = fmax(b, v[i]);
	}
	*lo = a;
	*hi = b;
}

static void widen(double *lo, double *hi)
{
	double m = fmax(fabs(*lo), fabs(*hi));
	if (*hi - *lo <= 1e-6 * m || *hi - *lo < 1e-30) {
		double pad = m > 0 ? 0.05 * m : 0.5;
		*lo -= pad;
		*hi += pad;
	}
}

static void page_title(const char *title)
{
	char buf[TEXT_MAX];
	if (!title || !*title)
		return;
	plcol0(COL_FG);
	plvpor(0, 1, 0, 1);
	plwind(0, 1, 0, 1);
	plschr(0, 1.0);
	plmtex("t", -1.6, 0.5, 0.5, text(buf, title));
	plschr(0, 0.85);
}

/* Viewport of panel k of n across the page, below the page title. */
static void panel_viewport(int k, int n, int square)
{
	double pw = 1.0 / n, x0 = k * pw;
	if (square)
		plvpas(x0 + 0.14 * pw, x0 + 0.70 * pw, 0.10, 0.84, 1.0);
	else
		plvpor(x0 + 0.18 * pw, x0 + 0.94 * pw, 0.14, 0.80);
}

/* An image colour bar (PLplot's cairo gradient leaks its pattern): the
 * bar is drawn as an image of N_BAR values spanning [lo, hi]. */
#define N_BAR 128
static void colour_bar(double lo, double hi)
{
	PLFLT cw, ch;
	PLFLT vals[N_BAR];
	const PLFLT *values[1] = {vals};
	PLINT n_values[1] = {N_BAR};
	const char *axis_opts[1] = {"bcvtm"};
	PLFLT ticks[1] = {0};
	PLINT sub_ticks[1] = {0};
	for (int i = 0; i < N_BAR; i++)
		vals[i] = lo + (hi - lo) * i / (N_BAR - 1);
	plcol0(COL_FG);
	plcolorbar(&cw, &ch, PL_COLORBAR_IMAGE | PL_COLORBAR_ORIENT_TOP,
		   PL_POSITION_RIGHT | PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT,
		   0.02, 0.0, 0.035, 1.0, COL_BG, COL_FG, 1, 0, 0, COL_FG, 0, 0,
		   NULL, NULL, 1, axis_opts, ticks, sub_ticks, n_values,
		   (PLFLT_MATRIX)values);
}

static void series_style(int s)
{
	plcol0(COL_LINE0 + s % N_LINE_COLOURS);
	pllsty(1 + (s / N_LINE_COLOURS) % 8);
	plwidth(2.0);
}

static const char *const MARKERS[8] = {"●", "■", "▲", "◆", "▼", "✚", "✖", "★"};

/* Legend of n lines (with markers if `marks`). */
static void legend(int n, const char *const *names, int marks, PLINT position,
		   PLFLT x, PLFLT y)
{
	PLINT opt[PNO_PLOT_MAX_SERIES + 2], tcol[PNO_PLOT_MAX_SERIES + 2];
	PLINT lcol[PNO_PLOT_MAX_SERIES + 2], lsty[PNO_PLOT_MAX_SERIES + 2];
	PLINT scol[PNO_PLOT_MAX_SERIES + 2], snum[PNO_PLOT_MAX_SERIES + 2];
	PLFLT lw[PNO_PLOT_MAX_SERIES + 2], ss[PNO_PLOT_MAX_SERIES + 2];
	const char *txt[PNO_PLOT_MAX_SERIES + 2], *sym[PNO_PLOT_MAX_SERIES + 2];
	char buf[PNO_PLOT_MAX_SERIES + 2][TEXT_MAX];
	PLFLT w, h;
	for (int i = 0; i < n; i++) {
		opt[i] = PL_LEGEND_LINE | (marks ? PL_LEGEND_SYMBOL : 0);
		tcol[i] = COL_FG;
		lcol[i] = scol[i] = COL_LINE0 + i % N_LINE_COLOURS;
		lsty[i] = 1 + (i / N_LINE_COLOURS) % 8;
		lw[i] = 2.0;
		ss[i] = 0.8;
		snum[i] = 1;
		sym[i] = MARKERS[i % 8];
		txt[i] = text(buf[i], names[i]);
	}
	plcol0(COL_FG);
	pllegend(&w, &h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, position,
		 x, y, 0.08, COL_BG, COL_FG, 1, 0, 0, n, opt, 1.0, 0.9, 2.0, 0.0,
		 tcol, (PLCHAR_MATRIX)txt, NULL, NULL, NULL, NULL, lcol, lsty, lw,
		 scol, ss, snum, (PLCHAR_MATRIX)sym);
}

/* ---- fields ---- */

struct fields_ctx {
	const char *title;
	int dims, X, Y, n;
	const struct pno_plot_panel *panels;
	PLFLT **rows;	/* (X) row pointers into buf (2D) */
	PLFLT *buf;	/* (X, Y) for 2D; (2, X) for 1D */
};

static void draw_field2d(struct fields_ctx *c, int k)
{
	const float *d = c->panels[k].data;
	size_t P = (size_t)c->X * c->Y;
	double lo, hi;
	char buf[TEXT_MAX];
	range_f(d, P, &lo, &hi);
	widen(&lo, &hi);
	for (size_t i = 0; i < P; i++)
		c->buf[i] = d[i];
	plschr(0, 0.75);
	panel_viewport(k, c->n, 1);
	plwind(0, 1, 0, 1);
	/* plimagefr puts value (i, j) in the cell from corner
	 * (xmin + i dx, ymin + j dy), dx = (xmax - xmin) / (nx - 1): so
	 * xmax = (X - 1) / X makes cell i exactly [i / X, (i + 1) / X] */
	plimagefr((PLFLT_MATRIX)c->rows, c->X, c->Y, 0, (c->X - 1.0) / c->X, 0,
		  (c->Y - 1.0) / c->Y, lo, hi, lo, hi, NULL, NULL);
	plcol0(COL_FG);
	plwidth(1.0);
	plbox("bcnst", 0.5, 5, "bcnstv", 0.5, 5);
	plmtex("t", 0.8, 0.5, 0.5, text(buf, c->panels[k].title));
	colour_bar(lo, hi);
	plschr(0, 0.85);
}

static void draw_field1d(struct fields_ctx *c, int k)
{
	const float *d = c->panels[k].data;
	double lo, hi;
	char buf[TEXT_MAX];
	PLFLT *x = c->buf, *y = c->buf + c->X;
	range_f(d, (size_t)c->X, &lo, &hi);
	widen(&lo, &hi);
	for (int i = 0; i < c->X; i++) {
		x[i] = (double)i / c->X;
		y[i] = d[i];
	}
	panel_viewport(k, c->n, 0);
	plwind(0, 1, lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo));
	plcol0(COL_FG);
	plwidth(1.0);
	plbox("bcnst", 0.5, 5, "bcnstv", 0, 0);
	plmtex("t", 0.8, 0.5, 0.5, text(buf, c->panels[k].title));
	series_style(k);
	plline(c->X, x, y);
	pllsty(1);
}

static void draw_fields(void *ctx)
{
	struct fields_ctx *c = ctx;
	page_title(c->title);
	for (int k = 0; k < c->n; k++) {
		if (c->dims == 2)
			draw_field2d(c, k);
		else
			draw_field1d(c, k);
	}
}

enum pno_status pno_plot_fields(const char *path, const char *title, int dims,
				int X, int Y, int n_panels,
				const struct pno_plot_panel *panels,
				const struct pno_plot_opts *opts)
{
	static const char fn[] = "pno_plot_fields";
	struct fields_ctx c = {title, dims, X, Y, n_panels, panels, NULL, NULL};
	enum pno_status s;
	size_t P = 0, nbuf;
	int w, h;
	char what[TEXT_MAX + 32];

	if ((s = check_count(fn, "panels", n_panels)) != PNO_STATUS_OK ||
	    (s = check_out(fn, path, opts, PNO__MAX(600, 280 * n_panels), 400,
			   &w, &h)) != PNO_STATUS_OK ||
	    (s = check_grid(fn, dims, X, Y, &P)) != PNO_STATUS_OK)
		return s;
	if (!panels)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL panels", fn);
	for (int k = 0; k < n_panels; k++) {
		snprintf(what, sizeof what, "panel %d (%s)", k,
			 panels[k].title ? panels[k].title : "untitled");
		if ((s = check_floats(fn, what, panels[k].data, P)) != PNO_STATUS_OK)
			return s;
	}
	if (dims == 1)
		c.Y = 1;
	nbuf = dims == 2 ? P : 2 * (size_t)X;
	c.buf = pno_malloc(nbuf * sizeof *c.buf);
	c.rows = pno_malloc((size_t)X * sizeof *c.rows);
	if (!c.buf || !c.rows) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: %s: out of memory", fn, path);
		goto cleanup;
	}
	for (int i = 0; i < X; i++)
		c.rows[i] = c.buf + (size_t)i * c.Y;
	s = render(path, w, h, draw_fields, &c);
cleanup:
	pno_free(c.buf);
	pno_free(c.rows);
	return s;
}

/* ---- uq: 1D overlay ---- */

struct uq1d_ctx {
	const char *title;
	int X;
	const struct pno_plot_uq *f;
	PLFLT *buf;	/* (9, X): x, truth, mean, |err|, 2 std, band (2, 2X) */
};

static void draw_uq1d(void *ctx)
{
	struct uq1d_ctx *c = ctx;
	const struct pno_plot_uq *f = c->f;
	int X = c->X, n = f->input ? 3 : 2, k = 0;
	PLFLT *x = c->buf, *tr = x + X, *mu = tr + X, *err = mu + X,
	      *s2 = err + X, *px = s2 + X, *py = px + 2 * X;
	double lo, hi, elo = 0, ehi = 0;

	page_title(c->title);
	for (int i = 0; i < X; i++) {
		x[i] = (double)i / X;
		tr[i] = f->truth[i];
		mu[i] = f->mean[i];
		err[i] = fabs(mu[i] - tr[i]);
		s2[i] = f->std ? 2.0 * f->std[i] : 0;
		ehi = fmax(ehi, fmax(err[i], s2[i]));
	}
	if (f->input) {
		range_f(f->input, (size_t)X, &lo, &hi);
		widen(&lo, &hi);
		panel_viewport(k, n, 0);
		plwind(0, 1, lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo));
		plcol0(COL_FG);
		plwidth(1.0);
		plbox("bcnst", 0.5, 5, "bcnstv", 0, 0);
		plmtex("t", 0.8, 0.5, 0.5, "input");
		for (int i = 0; i < X; i++)
			px[i] = f->input[i];
		series_style(4);
		plline(X, x, px);
		k++;
	}
	/* truth, mean and the band: range over all three */
	lo = hi = tr[0];
	for (int i = 0; i < X; i++) {
		lo = fmin(lo, fmin(tr[i], mu[i] - s2[i]));
		hi = fmax(hi, fmax(tr[i], mu[i] + s2[i]));
	}
	widen(&lo, &hi);
	panel_viewport(k, n, 0);
	plwind(0, 1, lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo));
	if (f->std) {
		for (int i = 0; i < X; i++) {
			px[i] = x[i];
			py[i] = mu[i] + s2[i];
			px[2 * X - 1 - i] = x[i];
			py[2 * X - 1 - i] = mu[i] - s2[i];
		}
		plcol0(COL_BAND);
		plfill(2 * X, px, py);
	}
	plcol0(COL_FG);
	plwidth(1.0);
	plbox("bcnst", 0.5, 5, "bcnstv", 0, 0);
	plmtex("t", 0.8, 0.5, 0.5,
	       f->std ? "truth, mean ± 2 std" : "truth, mean");
	series_style(0);
	plline(X, x, tr);
	series_style(1);
	plline(X, x, mu);
	{
		static const char *const names[2] = {"truth", "mean"};
		legend(2, names, 0, PL_POSITION_TOP | PL_POSITION_RIGHT |
			   PL_POSITION_INSIDE, 0.01, 0.01);
	}
	k++;
	widen(&elo, &ehi);
	panel_viewport(k, n, 0);
	plwind(0, 1, 0, ehi * 1.05);
	plcol0(COL_FG);
	plwidth(1.0);
	plbox("bcnst", 0.5, 5, "bcnstv", 0, 0);
	plmtex("t", 0.8, 0.5, 0.5, f->std ? "|mean - truth| (red), 2 std (blue)" :
		    "|mean - truth|");
	series_style(3);
	plline(X, x, err);
	if (f->std) {
		series_style(0);
		plline(X, x, s2);
	}
	pllsty(1);
}

/* Panel list for the 2D case: |mean - truth| goes into err. */
static int uq2d_panels(struct pno_plot_panel p[5], const struct pno_plot_uq *f,
		       const float *err)
{
	int n = 0;
	if (f->input)
		p[n++] = (struct pno_plot_panel){"input", f->input};
	p[n++] = (struct pno_plot_panel){"truth", f->truth};
	p[n++] = (struct pno_plot_panel){"mean", f->mean};
	if (f->std)
		p[n++] = (struct pno_plot_panel){"std", f->std};
	p[n++] = (struct pno_plot_panel){"|mean - truth|", err};
	return n;
}

enum pno_status pno_plot_uq(const char *path, const char *title, int dims,
			    int X, int Y, const struct pno_plot_uq *f,
			    const struct pno_plot_opts *opts)
{
	static const char fn[] = "pno_plot_uq";
	enum pno_status s;
	size_t P = 0;
	int w, h;
	float *err = NULL;

	if ((s = check_grid(fn, dims, X, Y, &P)) != PNO_STATUS_OK)
		return s;
	if (!f)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL fields", fn);
	if ((f->input && (s = check_floats(fn, "input", f->input, P))) ||
	    (s = check_floats(fn, "truth", f->truth, P)) != PNO_STATUS_OK ||
	    (s = check_floats(fn, "mean", f->mean, P)) != PNO_STATUS_OK ||
	    (f->std && (s = check_floats(fn, "std", f->std, P))))
		return s;
	if (f->std)
		for (size_t i = 0; i < P; i++)
			if (f->std[i] < 0)
				return pno__errorf(PNO_STATUS_INVALID,
						   "%s: std: negative value %g at index %zu",
						   fn, (double)f->std[i], i);
	if (dims == 2) {
		struct pno_plot_panel p[5];
		int n;
		err = pno_malloc(P * sizeof *err);
		if (!err)
			return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", fn);
		for (size_t i = 0; i < P; i++)
			err[i] = fabsf(f->mean[i] - f->truth[i]);
		/* a finite mean and truth can still overflow the difference */
		if ((s = check_floats(fn, "|mean - truth|", err, P)) == PNO_STATUS_OK) {
			n = uq2d_panels(p, f, err);
			s = pno_plot_fields(path, title, 2, X, Y, n, p, opts);
		}
		pno_free(err);
		return s;
	}
	{
		int n = f->input ? 3 : 2;
		struct uq1d_ctx c = {title, X, f, NULL};
		if ((s = check_out(fn, path, opts, PNO__MAX(600, 340 * n), 400, &w,
				   &h)) != PNO_STATUS_OK)
			return s;
		for (size_t i = 0; i < P; i++)
			if (!isfinite((double)f->mean[i] - f->truth[i] +
				      (f->std ? 2.0 * f->std[i] : 0) + f->mean[i]))
				return pno__errorf(PNO_STATUS_INVALID,
						   "%s: mean +/- 2 std overflows at index %zu",
						   fn, i);
		c.buf = pno_malloc(9 * (size_t)X * sizeof *c.buf);
		if (!c.buf)
			return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", fn);
		s = render(path, w, h, draw_uq1d, &c);
		pno_free(c.buf);
		return s;
	}
}

/* ---- reliability / coverage diagrams ---- */

struct diagram_ctx {
	const char *title, *xlabel, *ylabel;
	int n_methods, n_levels;
	const char *const *names;
	const double *nominal, *observed;
};

static void draw_diagram(void *ctx)
{
	struct diagram_ctx *c = ctx;
	static const PLFLT dx[2] = {0, 1}, dy[2] = {0, 1};
	char b1[TEXT_MAX], b2[TEXT_MAX], b3[TEXT_MAX];
	plvpas(0.13, 0.95, 0.11, 0.90, 1.0);
	plwind(0, 1, 0, 1);
	plcol0(COL_GRID);
	plwidth(1.0);
	plbox("g", 0.1, 0, "g", 0.1, 0);
	plcol0(COL_FG);
	plbox("bcnst", 0.2, 2, "bcnstv", 0.2, 2);
	pllab(text(b1, c->xlabel), text(b2, c->ylabel), text(b3, c->title));
	pllsty(2);
	plline(2, dx, dy);
	for (int m = 0; m < c->n_methods; m++) {
		const double *o = c->observed + (size_t)m * c->n_levels;
		series_style(m);
		plline(c->n_levels, c->nominal, o);
		pllsty(1);
		plstring(c->n_levels, c->nominal, o, MARKERS[m % 8]);
	}
	pllsty(1);
	legend(c->n_methods, c->names, 1,
	       PL_POSITION_TOP | PL_POSITION_LEFT | PL_POSITION_INSIDE, 0.02,
	       0.02);
}

static enum pno_status diagram(const char *fn, const char *path,
			       const char *title, const char *xlabel,
			       const char *ylabel, int n_methods,
			       const char *const *names, const double *nominal,
			       const double *observed, int n_levels,
			       const struct pno_plot_opts *opts)
{
	struct diagram_ctx c = {title, xlabel, ylabel, n_methods, n_levels,
				names, nominal, observed};
	enum pno_status s;
	int w, h;
	if ((s = check_count(fn, "methods", n_methods)) != PNO_STATUS_OK ||
	    (s = check_out(fn, path, opts, 600, 600, &w, &h)) != PNO_STATUS_OK ||
	    (s = check_names(fn, names, n_methods)) != PNO_STATUS_OK)
		return s;
	if (n_levels < 1 || n_levels > 1000)
		return pno__errorf(PNO_STATUS_INVALID, "%s: %d levels (want 1..1000)",
				   fn, n_levels);
	if (!nominal || !observed)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL %s", fn,
				   nominal ? "observed" : "nominal");
	for (int k = 0; k < n_levels; k++)
		if (!(nominal[k] >= 0 && nominal[k] <= 1))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: nominal level %d = %g not in [0, 1]",
					   fn, k, nominal[k]);
	for (int m = 0; m < n_methods; m++)
		for (int k = 0; k < n_levels; k++) {
			double o = observed[(size_t)m * n_levels + k];
			if (!(o >= 0 && o <= 1))
				return pno__errorf(PNO_STATUS_INVALID,
						   "%s: method %d (%s) level %d: observed %g not in [0, 1]",
						   fn, m, names[m], k, o);
		}
	return render(path, w, h, draw_diagram, &c);
}

enum pno_status pno_plot_reliability(const char *path, const char *title,
				     int n_methods, const char *const *names,
				     const double *nominal, const double *observed,
				     int n_levels, const struct pno_plot_opts *opts)
{
	return diagram("pno_plot_reliability", path, title,
		       "nominal quantile level p", "observed frequency of truth ≤ q(p)",
		       n_methods, names, nominal, observed, n_levels, opts);
}

enum pno_status pno_plot_coverage(const char *path, const char *title,
				  int n_methods, const char *const *names,
				  const double *nominal, const double *observed,
				  int n_levels, const struct pno_plot_opts *opts)
{
	return diagram("pno_plot_coverage", path, title,
		       "nominal coverage of central interval",
		       "empirical coverage", n_methods, names, nominal, observed,
		       n_levels, opts);
}

/* ---- curves ---- */

struct curves_ctx {
	const char *title, *xlabel, *ylabel;
	int n_series, n, log_y;
	const char *const *names;
	const double *x;
	PLFLT *y;	/* (n_series, n), log10'd if log_y */
};

static void draw_curves(void *ctx)
{
	struct curves_ctx *c = ctx;
	size_t N = (size_t)c->n_series * c->n;
	double xlo = c->x[0], xhi = c->x[0], ylo = c->y[0], yhi = c->y[0];
	char b1[TEXT_MAX], b2[TEXT_MAX], b3[TEXT_MAX];
	for (int i = 0; i < c->n; i++) {
		xlo = fmin(xlo, c->x[i]);
		xhi = fmax(xhi, c->x[i]);
	}
	for (size_t i = 0; i < N; i++) {
		ylo = fmin(ylo, c->y[i]);
		yhi = fmax(yhi, c->y[i]);
	}
	widen(&xlo, &xhi);
	widen(&ylo, &yhi);
	plvpor(0.11, 0.72, 0.12, 0.90);
	plwind(xlo, xhi, ylo - 0.04 * (yhi - ylo), yhi + 0.04 * (yhi - ylo));
	plcol0(COL_GRID);
	plwidth(1.0);
	plbox("g", 0, 0, c->log_y ? "gl" : "g", 0, 0);
	plcol0(COL_FG);
	plbox("bcnst", 0, 0, c->log_y ? "bcnstlv" : "bcnstv", 0, 0);
	pllab(text(b1, c->xlabel), text(b2, c->ylabel), text(b3, c->title));
	for (int s = 0; s < c->n_series; s++) {
		series_style(s);
		plline(c->n, c->x, c->y + (size_t)s * c->n);
		if (c->n <= 40) {
			pllsty(1);
			plstring(c->n, c->x, c->y + (size_t)s * c->n, MARKERS[s % 8]);
		}
	}
	pllsty(1);
	legend(c->n_series, c->names, c->n <= 40,
	       PL_POSITION_RIGHT | PL_POSITION_OUTSIDE, 0.02, 0.0);
}

enum pno_status pno_plot_curves(const char *path, const char *title,
				const char *xlabel, const char *ylabel,
				int n_series, const char *const *names,
				const double *x, const double *y, int n, int log_y,
				const struct pno_plot_opts *opts)
{
	static const char fn[] = "pno_plot_curves";
	struct curves_ctx c = {title, xlabel, ylabel, n_series, n, !!log_y,
			       names, x, NULL};
	enum pno_status s;
	int w, h;
	size_t N;
	if ((s = check_count(fn, "series", n_series)) != PNO_STATUS_OK ||
	    (s = check_out(fn, path, opts, 800, 500, &w, &h)) != PNO_STATUS_OK ||
	    (s = check_names(fn, names, n_series)) != PNO_STATUS_OK)
		return s;
	if (n < 1 || n > (1 << 24))
		return pno__errorf(PNO_STATUS_INVALID, "%s: %d points (want 1..%d)",
				   fn, n, 1 << 24);
	if (!x || !y)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL %s", fn,
				   x ? "y" : "x");
	for (int i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: x[%d] = %g is not finite", fn, i, x[i]);
	N = (size_t)n_series * n;
	for (size_t i = 0; i < N; i++) {
		int sr = (int)(i / n), k = (int)(i % n);
		if (!isfinite(y[i]))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: series %d (%s) point %d: y = %g is not finite",
					   fn, sr, names[sr], k, y[i]);
		if (log_y && !(y[i] > 0))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: series %d (%s) point %d: y = %g not > 0 on a log axis",
					   fn, sr, names[sr], k, y[i]);
	}
	c.y = pno_malloc(N * sizeof *c.y);
	if (!c.y)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", fn);
	for (size_t i = 0; i < N; i++)
		c.y[i] = log_y ? log10(y[i]) : y[i];
	s = render(path, w, h, draw_curves, &c);
	pno_free(c.y);
	return s;
}
