/* Drift: reference statistics of training inputs (with their JSON form)
 * and the sliding-window monitor computing PSI and two-sample KS. */
#include "drift.h"
#include "../internal.h"
#include "../spectral_impl.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* ---- small numerics ---- */

/* type-7 quantile of sorted v[0..n) */
static double quantile7(const float *v, size_t n, double p)
{
	double h = (double)(n - 1) * p;
	size_t lo = (size_t)floor(h);
	if (lo >= n - 1)
		return v[n - 1];
	return v[lo] + (h - (double)lo) * ((double)v[lo + 1] - v[lo]);
}

/* number of v[0..n) <= t in sorted v */
static size_t upper_bound(const float *v, size_t n, double t)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((double)v[mid] <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* the PSI bin of v: the number of edges below it */
static int bin_of(const double *edges, double v)
{
	int b = 0;
	while (b < DRIFT_EDGES && v > edges[b])
		b++;
	return b;
}

double drift_psi(const double *a, const double *e, int nbins, double eps)
{
	double s = 0;
	for (int i = 0; i < nbins; i++) {
		double x = a[i] > eps ? a[i] : eps, y = e[i] > eps ? e[i] : eps;
		s += (x - y) * log(x / y);
	}
	return s;
}

double drift_ks_stat(const float *a, int n, const float *b, int m)
{
	int i = 0, j = 0;
	double d = 0;
	if (n < 1 || m < 1)
		return 0;
	while (i < n && j < m) {
		float t = a[i] < b[j] ? a[i] : b[j];
		while (i < n && a[i] <= t)
			i++;
		while (j < m && b[j] <= t)
			j++;
		double g = fabs((double)i / n - (double)j / m);
		if (g > d)
			d = g;
	}
	return d;
}

/* Q_KS(l) = 2 sum_k (-1)^(k-1) exp(-2 k^2 l^2) */
static double q_ks(double l)
{
	if (l < 0.2)
		return 1;
	double s = 0, sign = 1;
	for (int k = 1; k <= 100; k++) {
		double t = exp(-2.0 * k * k * l * l);
		s += sign * t;
		if (t < 1e-17)
			break;
		sign = -sign;
	}
	s *= 2;
	return s < 0 ? 0 : s > 1 ? 1 : s;
}

double drift_ks_pvalue(double d, int n, int m)
{
	if (n < 1 || m < 1)
		return 1;
	double ne = (double)n * m / ((double)n + m), r = sqrt(ne);
	return q_ks((r + 0.12 + 0.11 / r) * d);
}

double drift_ks_critical(double alpha, int n, int m)
{
	return sqrt(-0.5 * log(alpha / 2)) * sqrt(((double)n + m) / ((double)n * m));
}

/* ---- reference ---- */

void drift_ref_free(struct drift_ref *r)
{
	if (!r)
		return;
	pno_free(r->mean);
	pno_free(r->std);
	pno_free(r->edges);
	pno_free(r->bin_frac);
	pno_free(r->shell_energy);
	pno_free(r->sample);
	memset(r, 0, sizeof *r);
}

static int last_shell(int dims, int X, int Y)
{
	int k = dims == 2 ? PNO__MIN(X, Y) / 2 : X / 2;
	return PNO__MIN(k, DRIFT_MAX_SHELLS - 1);
}

static enum pno_status ref_alloc(struct drift_ref *r)
{
	size_t C = (size_t)r->C;
	r->mean = pno_calloc(C, sizeof *r->mean);
	r->std = pno_calloc(C, sizeof *r->std);
	r->edges = pno_calloc(C * DRIFT_EDGES, sizeof *r->edges);
	r->bin_frac = pno_calloc(C * DRIFT_BINS, sizeof *r->bin_frac);
	r->shell_energy = pno_calloc(C * (size_t)r->n_shells, sizeof *r->shell_energy);
	r->sample = pno_calloc(C * (size_t)r->sample_size, sizeof *r->sample);
	if (!r->mean || !r->std || !r->edges || !r->bin_frac ||
	    !r->shell_energy || !r->sample)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "drift: out of memory for reference statistics");
	return PNO_STATUS_OK;
}

static enum pno_status check_shape(int N, int C, int dims, int X, int Y,
				   size_t *npts, size_t *total)
{
	if (N < 1 || C < 1 || C > 4096 || (dims != 1 && dims != 2) || X < 1 ||
	    Y < 1 || (dims == 1 && Y != 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: bad input shape N %d C %d dims %d X %d Y %d",
				   N, C, dims, X, Y);
	size_t p, t;
	if (pno__mul_overflow((size_t)X, (size_t)Y, &p) ||
	    pno__mul_overflow(p, (size_t)N, &t) || t > ((size_t)1 << 40) ||
	    pno__mul_overflow(t, (size_t)C, total))
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: %d inputs of %d x %d x %d points is too many",
				   N, C, X, Y);
	*npts = p;
	*total = t;	/* points per channel */
	return PNO_STATUS_OK;
}

enum pno_status drift_ref_compute(struct drift_ref *r, const float *x, int N,
				  int C, int dims, int X, int Y, int R)
{
	size_t npts = 0, total = 0;
	enum pno_status st;
	float *vals = NULL;
	double *fin = NULL;
	fftw_complex *fout = NULL;
	int *shell = NULL;
	double *wt = NULL;
	fftw_plan plan = NULL;

	if (!r)
		return pno__errorf(PNO_STATUS_INVALID, "drift_ref_compute: NULL reference");
	memset(r, 0, sizeof *r);
	if (!x)
		return pno__errorf(PNO_STATUS_INVALID, "drift_ref_compute: NULL inputs");
	if ((st = check_shape(N, C, dims, X, Y, &npts, &total)))
		return st;
	if (R < 10 || R > 100000)
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: reference sample size %d not in [10, 100000]", R);
	r->C = C, r->dims = dims, r->X = X, r->Y = Y;
	r->n_inputs = N;
	r->n_shells = last_shell(dims, X, Y) + 1;
	r->sample_size = R;
	if ((st = ref_alloc(r)))
		goto cleanup;

	/* the r2c half spectrum of (X) or (X, Y): ny is the halved axis */
	const int nx = dims == 2 ? X : 1, ny = dims == 2 ? Y : X;
	const size_t nh = (size_t)ny / 2 + 1, ncoef = (size_t)nx * nh;
	vals = pno_malloc(total * sizeof *vals);
	fin = pno_malloc(npts * sizeof *fin);
	fout = pno_malloc(ncoef * sizeof *fout);
	shell = pno_malloc(ncoef * sizeof *shell);
	wt = pno_malloc(ncoef * sizeof *wt);
	if (!vals || !fin || !fout || !shell || !wt) {
		st = pno__errorf(PNO_STATUS_NOMEM,
				 "drift: out of memory for %zu points per channel", total);
		goto cleanup;
	}
	const int last = r->n_shells - 1;
	for (int ix = 0; ix < nx; ix++)
		for (size_t j = 0; j < nh; j++) {
			double kx = ix <= nx / 2 ? ix : ix - nx;
			long s = lround(sqrt(kx * kx + (double)j * j));
			size_t id = (size_t)ix * nh + j;
			shell[id] = s > last ? last : (int)s;
			/* columns 0 < j < ny/2 stand for themselves and their mirror */
			wt[id] = j == 0 || 2 * j == (size_t)ny ? 1.0 : 2.0;
		}
	pno__fftw_lock();
	plan = dims == 1 ? fftw_plan_dft_r2c_1d(X, fin, fout, FFTW_ESTIMATE)
			 : fftw_plan_dft_r2c_2d(X, Y, fin, fout, FFTW_ESTIMATE);
	pno__fftw_unlock();
	if (!plan) {
		st = pno__errorf(PNO_STATUS_INTERNAL, "drift: FFTW could not plan");
		goto cleanup;
	}

	const double norm = 1.0 / ((double)npts * (double)npts);
	for (int c = 0; c < C; c++) {
		double s1 = 0, s2 = 0;
		double *E = r->shell_energy + (size_t)c * r->n_shells;
		for (int n = 0; n < N; n++) {
			const float *src = x + ((size_t)n * C + c) * npts;
			float *dst = vals + (size_t)n * npts;
			for (size_t p = 0; p < npts; p++) {
				if (!isfinite(src[p])) {
					st = pno__errorf(PNO_STATUS_NONFINITE,
							 "drift: input %d channel %d point %zu is not finite",
							 n, c, p);
					goto cleanup;
				}
				dst[p] = src[p];
				fin[p] = src[p];
				s1 += src[p];
			}
			fftw_execute(plan);
			for (size_t k = 0; k < ncoef; k++)
				E[shell[k]] += wt[k] * norm *
					       (fout[k][0] * fout[k][0] + fout[k][1] * fout[k][1]);
		}
		for (int k = 0; k < r->n_shells; k++)
			E[k] /= N;
		double mean = s1 / (double)total;
		for (size_t i = 0; i < total; i++) {
			double d = vals[i] - mean;
			s2 += d * d;
		}
		r->mean[c] = mean;
		r->std[c] = sqrt(s2 / (double)total);
		pno__sort_floats(vals, total);
		double *e = r->edges + (size_t)c * DRIFT_EDGES;
		double *f = r->bin_frac + (size_t)c * DRIFT_BINS;
		size_t below = 0;
		for (int b = 0; b < DRIFT_EDGES; b++) {
			e[b] = quantile7(vals, total, (b + 1) / 10.0);
			size_t ub = upper_bound(vals, total, e[b]);
			f[b] = (double)(ub - below) / (double)total;
			below = ub;
		}
		f[DRIFT_EDGES] = (double)(total - below) / (double)total;
		float *smp = r->sample + (size_t)c * R;
		for (int i = 0; i < R; i++)
			smp[i] = (float)quantile7(vals, total, (i + 0.5) / R);
	}
	st = PNO_STATUS_OK;
cleanup:
	pno__fftw_destroy(&plan);
	pno_free(vals);
	pno_free(fin);
	pno_free(fout);
	pno_free(shell);
	pno_free(wt);
	if (st)
		drift_ref_free(r);
	return st;
}

enum pno_status drift_ref_from_dataset(struct drift_ref *r,
				       const struct pno_dataset *d, int R)
{
	if (!d)
		return pno__errorf(PNO_STATUS_INVALID, "drift: NULL dataset");
	return drift_ref_compute(r, d->in, d->N, d->Cin, d->dims, d->X, d->Y, R);
}

/* ---- JSON ---- */

/* [[n values] x rows], doubles or floats */
static json_t *matrix(const double *d, const float *f, int rows, int n)
{
	json_t *outer = json_array();
	int bad = !outer;
	for (int i = 0; !bad && i < rows; i++) {
		json_t *row = json_array();
		bad = !row;
		for (int k = 0; !bad && k < n; k++) {
			size_t at = (size_t)i * n + k;
			bad = json_array_append_new(row, json_real(d ? d[at] : f[at])) != 0;
		}
		bad = json_array_append_new(outer, row) != 0 || bad;
	}
	if (bad) {
		json_decref(outer);
		return NULL;
	}
	return outer;
}

static json_t *vector(const double *d, int n)
{
	json_t *m = matrix(d, NULL, 1, n), *row = NULL;
	if (m) {
		row = json_incref(json_array_get(m, 0));
		json_decref(m);
	}
	return row;
}

enum pno_status drift_ref_to_json(const struct drift_ref *r, char **json)
{
	if (!r || !json || r->C < 1)
		return pno__errorf(PNO_STATUS_INVALID, "drift_ref_to_json: bad arguments");
	*json = NULL;
	pno__json_init();
	json_t *o = json_object();
	int bad = !o;
#define SETV(key, v) bad = bad || json_object_set_new(o, key, v) != 0
	SETV("format", json_string("pno-drift-reference"));
	SETV("version", json_integer(1));
	SETV("channels", json_integer(r->C));
	SETV("dims", json_integer(r->dims));
	SETV("X", json_integer(r->X));
	SETV("Y", json_integer(r->Y));
	SETV("n_inputs", json_integer(r->n_inputs));
	SETV("mean", vector(r->mean, r->C));
	SETV("std", vector(r->std, r->C));
	SETV("deciles", matrix(r->edges, NULL, r->C, DRIFT_EDGES));
	SETV("bin_fractions", matrix(r->bin_frac, NULL, r->C, DRIFT_BINS));
	SETV("shell_energy", matrix(r->shell_energy, NULL, r->C, r->n_shells));
	SETV("sample", matrix(NULL, r->sample, r->C, r->sample_size));
#undef SETV
	char *text = bad ? NULL : pno__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
						  JSON_REAL_PRECISION(17));
	json_decref(o);
	if (!text || pno__json_oom()) {
		pno_free(text);
		return pno__errorf(PNO_STATUS_NOMEM, "drift: out of memory writing JSON");
	}
	*json = text;
	return PNO_STATUS_OK;
}

static enum pno_status get_int(json_t *o, const char *key, long lo, long hi,
			       long *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "drift reference: \"%s\" must be an integer in [%ld, %ld]",
				   key, lo, hi);
	*out = (long)json_integer_value(v);
	return PNO_STATUS_OK;
}

/* rows x n numbers into d (double) or f (float); rows 0: a flat vector */
static enum pno_status get_matrix(json_t *o, const char *key, int rows, int n,
				  double *d, float *f)
{
	json_t *m = json_object_get(o, key);
	int flat = rows == 0;
	if (flat)
		rows = 1;
	if (!json_is_array(m) || (!flat && (int)json_array_size(m) != rows))
		goto bad;
	for (int i = 0; i < rows; i++) {
		json_t *row = flat ? m : json_array_get(m, (size_t)i);
		if (!json_is_array(row) || (int)json_array_size(row) != n)
			goto bad;
		for (int k = 0; k < n; k++) {
			json_t *v = json_array_get(row, (size_t)k);
			double x = json_is_number(v) ? json_number_value(v) : NAN;
			if (!isfinite(x) || (f && !isfinite((float)x)))
				goto bad;
			if (d)
				d[(size_t)i * n + k] = x;
			else
				f[(size_t)i * n + k] = (float)x;
		}
	}
	return PNO_STATUS_OK;
bad:
	return pno__errorf(PNO_STATUS_FORMAT,
			   "drift reference: \"%s\" must be %d array%s of %d finite numbers",
			   key, rows, rows == 1 ? "" : "s", n);
}

enum pno_status drift_ref_from_json(struct drift_ref *r, const char *text)
{
	enum pno_status st;
	char msg[200];
	long v[7] = {0};
	if (!r)
		return pno__errorf(PNO_STATUS_INVALID, "drift_ref_from_json: NULL reference");
	memset(r, 0, sizeof *r);
	pno__json_init();
	json_t *o = pno__json_loads(text ? text : "", &st, msg, sizeof msg);
	if (!o)
		return pno__errorf(st, "drift reference: %s", msg);
	const char *fmt = json_string_value(json_object_get(o, "format"));
	if (!fmt || strcmp(fmt, "pno-drift-reference")) {
		st = pno__errorf(PNO_STATUS_FORMAT,
				 "drift reference: \"format\" is not \"pno-drift-reference\"");
		goto cleanup;
	}
	if ((st = get_int(o, "version", 1, 1, &v[0])) ||
	    (st = get_int(o, "channels", 1, 4096, &v[1])) ||
	    (st = get_int(o, "dims", 1, 2, &v[2])) ||
	    (st = get_int(o, "X", 1, 1L << 30, &v[3])) ||
	    (st = get_int(o, "Y", 1, 1L << 30, &v[4])) ||
	    (st = get_int(o, "n_inputs", 1, 1L << 40, &v[5])))
		goto cleanup;
	r->C = (int)v[1], r->dims = (int)v[2], r->X = (int)v[3], r->Y = (int)v[4];
	r->n_inputs = v[5];
	if (r->dims == 1 && r->Y != 1) {
		st = pno__errorf(PNO_STATUS_FORMAT, "drift reference: 1-D with Y %d", r->Y);
		goto cleanup;
	}
	r->n_shells = last_shell(r->dims, r->X, r->Y) + 1;
	json_t *smp = json_array_get(json_object_get(o, "sample"), 0);
	r->sample_size = (int)json_array_size(smp);
	if (r->sample_size < 10 || r->sample_size > 100000) {
		st = pno__errorf(PNO_STATUS_FORMAT,
				 "drift reference: \"sample\" rows must hold 10 to 100000 values");
		goto cleanup;
	}
	if ((st = ref_alloc(r)) ||
	    (st = get_matrix(o, "mean", 0, r->C, r->mean, NULL)) ||
	    (st = get_matrix(o, "std", 0, r->C, r->std, NULL)) ||
	    (st = get_matrix(o, "deciles", r->C, DRIFT_EDGES, r->edges, NULL)) ||
	    (st = get_matrix(o, "bin_fractions", r->C, DRIFT_BINS, r->bin_frac, NULL)) ||
	    (st = get_matrix(o, "shell_energy", r->C, r->n_shells, r->shell_energy, NULL)) ||
	    (st = get_matrix(o, "sample", r->C, r->sample_size, NULL, r->sample)))
		goto cleanup;
	for (int c = 0; c < r->C; c++) {
		const double *e = r->edges + (size_t)c * DRIFT_EDGES;
		const double *f = r->bin_frac + (size_t)c * DRIFT_BINS;
		const float *s = r->sample + (size_t)c * r->sample_size;
		double sum = 0;
		int ok = r->std[c] >= 0;
		for (int b = 0; b < DRIFT_EDGES - 1; b++)
			ok = ok && e[b] <= e[b + 1];
		for (int b = 0; b < DRIFT_BINS; b++) {
			ok = ok && f[b] >= 0 && f[b] <= 1;
			sum += f[b];
		}
		ok = ok && fabs(sum - 1) < 1e-9;
		for (int i = 0; i + 1 < r->sample_size; i++)
			ok = ok && s[i] <= s[i + 1];
		if (!ok) {
			st = pno__errorf(PNO_STATUS_FORMAT,
					 "drift reference: channel %d has a negative std, decreasing "
					 "deciles or sample, or bin fractions not summing to 1", c);
			goto cleanup;
		}
	}
	st = PNO_STATUS_OK;
cleanup:
	json_decref(o);
	if (st == PNO_STATUS_OK && pno__json_oom())
		st = pno__errorf(PNO_STATUS_NOMEM, "drift reference: out of memory");
	if (st)
		drift_ref_free(r);
	return st;
}

/* ---- monitor ---- */

const char *drift_level_name(enum drift_level l)
{
	switch (l) {
	case DRIFT_OK: return "ok";
	case DRIFT_WARN: return "warn";
	case DRIFT_CRITICAL: return "critical";
	}
	return "unknown";
}

struct drift_config drift_config_default(void)
{
	struct drift_config c = {
		.window = 200, .points = 64, .min_inputs = 0,
		.psi_warn = 0.1, .psi_crit = 0.25, .ks_alpha = 0.01,
		.ks_alert = 0, .seed = 0,
	};
	return c;
}

void drift_monitor_free(struct drift_monitor *m)
{
	if (!m)
		return;
	if (m->init)
		pthread_mutex_destroy(&m->mu);
	pno_free(m->vals);
	pno_free(m->bins);
	pno_free(m->counts);
	pno_free(m->sortbuf);
	pno_free(m->u);
	pno_free(m->idx);
	memset(m, 0, sizeof *m);
}

enum pno_status drift_monitor_init(struct drift_monitor *m,
				   const struct drift_ref *ref,
				   const struct drift_config *cfg)
{
	if (!m)
		return pno__errorf(PNO_STATUS_INVALID, "drift_monitor_init: NULL monitor");
	memset(m, 0, sizeof *m);
	if (!ref || !cfg || ref->C < 1 || !ref->edges || !ref->sample)
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift_monitor_init: missing reference or config");
	struct drift_config c = *cfg;
	if (c.window < 1 || c.window > 100000)
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: window %d not in [1, 100000]", c.window);
	if (c.points < 1 || c.points > 65536)
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: points %d not in [1, 65536]", c.points);
	if (c.min_inputs == 0)
		c.min_inputs = c.window;
	if (c.min_inputs < 1 || c.min_inputs > c.window)
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: min_inputs %d not in [1, window %d]",
				   c.min_inputs, c.window);
	if (!(c.psi_warn > 0 && c.psi_warn <= c.psi_crit && isfinite(c.psi_crit)))
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: need 0 < psi_warn (%g) <= psi_crit (%g)",
				   c.psi_warn, c.psi_crit);
	if (!(c.ks_alpha > 0 && c.ks_alpha < 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: ks_alpha %g not in (0, 1)", c.ks_alpha);
	size_t npts = (size_t)ref->X * ref->Y, wp, cwp;
	int P = c.points;
	if ((size_t)P > npts)
		P = (int)npts;
	if (pno__mul_overflow((size_t)c.window, (size_t)P, &wp) || wp > INT32_MAX ||
	    pno__mul_overflow(wp, (size_t)ref->C, &cwp))
		return pno__errorf(PNO_STATUS_INVALID,
				   "drift: window %d x %d points is too large", c.window, P);
	m->cfg = c;
	m->ref = ref;
	m->C = ref->C, m->P = P, m->npts = (int)npts, m->wp = (int)wp;
	m->vals = pno_malloc(cwp * sizeof *m->vals);
	m->bins = pno_malloc(cwp);
	m->counts = pno_calloc((size_t)ref->C * DRIFT_BINS, sizeof *m->counts);
	m->sortbuf = pno_malloc(wp * sizeof *m->sortbuf);
	m->u = pno_malloc((size_t)P * sizeof *m->u);
	m->idx = pno_malloc((size_t)P * sizeof *m->idx);
	if (!m->vals || !m->bins || !m->counts || !m->sortbuf || !m->u || !m->idx) {
		drift_monitor_free(m);
		return pno__errorf(PNO_STATUS_NOMEM,
				   "drift: out of memory for a window of %zu points", cwp);
	}
	if (pthread_mutex_init(&m->mu, NULL)) {
		drift_monitor_free(m);
		return pno__errorf(PNO_STATUS_INTERNAL, "drift: mutex init failed");
	}
	m->init = 1;
	return PNO_STATUS_OK;
}

enum pno_status drift_observe(struct drift_monitor *m, const float *x)
{
	if (!m || !m->init || !x)
		return pno__errorf(PNO_STATUS_INVALID, "drift_observe: NULL argument");
	pthread_mutex_lock(&m->mu);
	const int P = m->P, C = m->C;
	enum pno_status st = PNO_STATUS_OK;
	/* one point uniformly in each of P equal runs of the grid */
	pno_rng_uniform(m->u, (size_t)P, m->cfg.seed, 0x6472696674ULL,
			(uint64_t)m->observed * (uint64_t)P);
	for (int j = 0; j < P; j++) {
		if (P == m->npts) {
			m->idx[j] = j;
			continue;
		}
		double lo = (double)j * m->npts / P, hi = (double)(j + 1) * m->npts / P;
		int k = (int)(lo + m->u[j] * (hi - lo));
		m->idx[j] = k < m->npts ? k : m->npts - 1;
	}
	for (int c = 0; c < C; c++)
		for (int j = 0; j < P; j++)
			if (!isfinite(x[(size_t)c * m->npts + m->idx[j]])) {
				st = pno__errorf(PNO_STATUS_NONFINITE,
						 "drift: input point %d of channel %d is not finite",
						 m->idx[j], c);
				goto out;
			}
	size_t base = (size_t)m->head * P;
	for (int c = 0; c < C; c++) {
		const double *e = m->ref->edges + (size_t)c * DRIFT_EDGES;
		int64_t *cnt = m->counts + (size_t)c * DRIFT_BINS;
		float *vals = m->vals + (size_t)c * m->wp + base;
		uint8_t *bins = m->bins + (size_t)c * m->wp + base;
		for (int j = 0; j < P; j++) {
			if (m->filled == m->cfg.window)
				cnt[bins[j]]--;	/* the oldest input leaves */
			float v = x[(size_t)c * m->npts + m->idx[j]];
			int b = bin_of(e, v);
			vals[j] = v;
			bins[j] = (uint8_t)b;
			cnt[b]++;
		}
	}
	if (m->filled < m->cfg.window)
		m->filled++;
	m->head = (m->head + 1) % m->cfg.window;
	m->observed++;
out:
	pthread_mutex_unlock(&m->mu);
	return st;
}

void drift_evaluate(struct drift_monitor *m, struct drift_report *rep,
		    struct drift_channel *ch, int with_ks)
{
	memset(rep, 0, sizeof *rep);
	pthread_mutex_lock(&m->mu);
	const int n = m->filled * m->P, R = m->ref->sample_size;
	rep->inputs = m->filled;
	rep->observed = m->observed;
	rep->ready = m->filled >= m->cfg.min_inputs;
	rep->worst = 0;
	for (int c = 0; c < m->C; c++) {
		struct drift_channel dc = {.ks_p = 1};
		double a[DRIFT_BINS];
		const int64_t *cnt = m->counts + (size_t)c * DRIFT_BINS;
		for (int b = 0; b < DRIFT_BINS; b++)
			a[b] = n ? (double)cnt[b] / n : 0;
		dc.psi = n ? drift_psi(a, m->ref->bin_frac + (size_t)c * DRIFT_BINS,
				       DRIFT_BINS, DRIFT_PSI_EPS) : 0;
		const float *v = m->vals + (size_t)c * m->wp;
		if (with_ks && n > 0) {
			/* the ring's first n slots are the window, in any order */
			double s = 0;
			memcpy(m->sortbuf, v, (size_t)n * sizeof *v);
			for (int i = 0; i < n; i++)
				s += v[i];
			pno__sort_floats(m->sortbuf, (size_t)n);
			dc.ks_d = drift_ks_stat(m->sortbuf, n,
						m->ref->sample + (size_t)c * R, R);
			dc.ks_p = drift_ks_pvalue(dc.ks_d, n, R);
			dc.ks_crit = drift_ks_critical(m->cfg.ks_alpha, n, R);
			dc.mean = s / n;
			double sd = m->ref->std[c];
			dc.mean_shift = sd > 0 ? (dc.mean - m->ref->mean[c]) / sd : 0;
		}
		if (dc.psi > rep->psi_max || c == 0) {
			rep->psi_max = dc.psi;
			rep->worst = c;
		}
		if (dc.ks_d > rep->ks_max)
			rep->ks_max = dc.ks_d;
		if (rep->ready) {
			enum drift_level l = dc.psi > m->cfg.psi_crit ? DRIFT_CRITICAL
					     : dc.psi > m->cfg.psi_warn ? DRIFT_WARN
									: DRIFT_OK;
			if (m->cfg.ks_alert && with_ks && dc.ks_p < m->cfg.ks_alpha &&
			    l < DRIFT_WARN)
				l = DRIFT_WARN;
			if (l > rep->level)
				rep->level = l;
		}
		if (ch)
			ch[c] = dc;
	}
	pthread_mutex_unlock(&m->mu);
}
