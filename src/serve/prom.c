/* Prometheus registry: families of series with lock-free observations and
 * the text exposition format 0.0.4. */
#include "prom.h"
#include "../internal.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PROM_DEFAULT_SERIES 1024

/* One labelled series. Values are doubles kept as their bit patterns in
 * atomic uint64 so additions are compare-and-swap loops. Histograms keep
 * per-bucket (non-cumulative) counts, the +Inf bucket last; their _count
 * is the sum of the buckets, so le="+Inf" always equals _count. */
struct prom_series {
	char *values[PROM_MAX_LABELS];
	_Atomic uint64_t value;			/* counter/gauge value; histogram sum */
	_Atomic uint64_t buckets[];		/* histograms: n_buckets + 1 */
};

struct prom_family {
	struct prom_registry *reg;
	struct prom_family *next;
	enum prom_type type;
	char *name, *help;
	char *labels[PROM_MAX_LABELS];
	int n_labels;
	double bounds[PROM_MAX_BUCKETS];
	int n_buckets;
	int max_series;
	/* series[0..n_series) are published: a creator fills series[n] under
	 * mu and then stores n + 1 with release; readers load n_series with
	 * acquire and search without a lock. */
	struct prom_series **series;
	_Atomic int n_series;
	pthread_mutex_t mu;
};

struct prom_process {
	struct prom_family *resident, *virt, *cpu, *start, *fds, *max_fds;
};

struct prom_registry {
	pthread_mutex_t mu;			/* family list and exposition */
	struct prom_family *first, *last;
	struct prom_family *dropped;		/* pno_prom_dropped_series_total */
	struct prom_process proc;
	int has_process;
};

/* ---- atomics on doubles ---- */

static uint64_t dbits(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof u);
	return u;
}

static double bitsd(uint64_t u)
{
	double v;
	memcpy(&v, &u, sizeof v);
	return v;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(
		p, &old, dbits(bitsd(old) + v), memory_order_relaxed,
		memory_order_relaxed))
		;
}

/* ---- names ---- */

static int valid_metric_name(const char *s)
{
	if (!s || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
		return 0;
	for (s++; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':'))
			return 0;
	return 1;
}

static int valid_label_name(const char *s)
{
	if (!s || !(isalpha((unsigned char)*s) || *s == '_'))
		return 0;
	for (s++; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_'))
			return 0;
	return 1;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Would family name a produce a sample name equal to one of b's? */
static int names_collide(const struct prom_family *f, const char *name,
			 enum prom_type type)
{
	static const char *const hsuffix[] = {"", "_bucket", "_sum", "_count"};
	int na = f->type == PROM_HISTOGRAM ? 4 : 1;
	int nb = type == PROM_HISTOGRAM ? 4 : 1;
	char a[300], b[300];
	if (strcmp(f->name, name) == 0)
		return 1;
	for (int i = 0; i < na; i++)
		for (int j = 0; j < nb; j++) {
			snprintf(a, sizeof a, "%s%s", f->name, hsuffix[i]);
			snprintf(b, sizeof b, "%s%s", name, hsuffix[j]);
			if (strcmp(a, b) == 0)
				return 1;
		}
	return 0;
}

/* ---- registry ---- */

static void family_free(struct prom_family *f)
{
	if (!f)
		return;
	int n = atomic_load_explicit(&f->n_series, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		for (int l = 0; l < f->n_labels; l++)
			pno_free(f->series[i]->values[l]);
		pno_free(f->series[i]);
	}
	pno_free(f->series);
	for (int l = 0; l < f->n_labels; l++)
		pno_free(f->labels[l]);
	pno_free(f->name);
	pno_free(f->help);
	pthread_mutex_destroy(&f->mu);
	pno_free(f);
}

enum pno_status prom_registry_new(struct prom_registry **r)
{
	if (!r)
		return pno__errorf(PNO_STATUS_INVALID, "prom: NULL registry");
	*r = NULL;
	struct prom_registry *g = pno_calloc(1, sizeof *g);
	if (!g)
		return pno__errorf(PNO_STATUS_NOMEM, "prom: out of memory");
	pthread_mutex_init(&g->mu, NULL);
	enum pno_status s = prom_register(
		g, &g->dropped, PROM_COUNTER, "pno_prom_dropped_series_total",
		"Observations dropped because their family reached its series "
		"bound (or a series could not be allocated).",
		NULL, NULL, 0, 1);
	if (s != PNO_STATUS_OK) {
		prom_registry_free(g);
		return s;
	}
	*r = g;
	return PNO_STATUS_OK;
}

void prom_registry_free(struct prom_registry *r)
{
	if (!r)
		return;
	struct prom_family *f = r->first;
	while (f) {
		struct prom_family *next = f->next;
		family_free(f);
		f = next;
	}
	pthread_mutex_destroy(&r->mu);
	pno_free(r);
}

static size_t series_size(const struct prom_family *f)
{
	size_t nb = f->type == PROM_HISTOGRAM ? (size_t)f->n_buckets + 1 : 0;
	return sizeof(struct prom_series) + nb * sizeof(_Atomic uint64_t);
}

/* Create series n_series (caller holds f->mu and checked the bound). */
static struct prom_series *series_add(struct prom_family *f,
				      const char *const *values)
{
	struct prom_series *s = pno_calloc(1, series_size(f));
	if (!s)
		return NULL;
	for (int l = 0; l < f->n_labels; l++) {
		s->values[l] = pno_strdup(values[l]);
		if (!s->values[l]) {
			for (int k = 0; k < l; k++)
				pno_free(s->values[k]);
			pno_free(s);
			return NULL;
		}
	}
	int n = atomic_load_explicit(&f->n_series, memory_order_relaxed);
	f->series[n] = s;
	atomic_store_explicit(&f->n_series, n + 1, memory_order_release);
	return s;
}

static enum pno_status check_family(const struct prom_registry *r,
				    enum prom_type type, const char *name,
				    const char *const *labels,
				    const double *buckets, int n_buckets,
				    int max_series)
{
	if (type != PROM_COUNTER && type != PROM_GAUGE && type != PROM_HISTOGRAM)
		return pno__errorf(PNO_STATUS_INVALID, "prom: unknown metric "
				   "type %d", (int)type);
	if (!valid_metric_name(name))
		return pno__errorf(PNO_STATUS_INVALID, "prom: metric name \"%s\" "
				   "is not [a-zA-Z_:][a-zA-Z0-9_:]*",
				   name ? name : "(null)");
	if (strlen(name) > 200)
		return pno__errorf(PNO_STATUS_INVALID, "prom: metric name \"%.40s"
				   "...\" is longer than 200 characters", name);
	if (type == PROM_COUNTER && !ends_with(name, "_total"))
		return pno__errorf(PNO_STATUS_INVALID, "prom: counter \"%s\" must "
				   "end in _total", name);
	if (type != PROM_COUNTER && ends_with(name, "_total"))
		return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\" ends in "
				   "_total but is not a counter", name);
	if (type == PROM_HISTOGRAM &&
	    (ends_with(name, "_bucket") || ends_with(name, "_sum") ||
	     ends_with(name, "_count")))
		return pno__errorf(PNO_STATUS_INVALID, "prom: histogram \"%s\" may "
				   "not end in _bucket, _sum or _count", name);
	for (const struct prom_family *f = r->first; f; f = f->next)
		if (names_collide(f, name, type))
			return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\" clashes "
					   "with the registered family \"%s\"",
					   name, f->name);
	int nl = 0;
	for (; labels && labels[nl]; nl++) {
		const char *l = labels[nl];
		if (nl == PROM_MAX_LABELS)
			return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\" has more "
					   "than %d labels", name, PROM_MAX_LABELS);
		if (!valid_label_name(l))
			return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\": label "
					   "name \"%s\" is not [a-zA-Z_][a-zA-Z0-9_]*",
					   name, l);
		if (strncmp(l, "__", 2) == 0)
			return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\": label "
					   "name \"%s\" starts with the reserved __",
					   name, l);
		if (strlen(l) > 100)
			return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\": label "
					   "name longer than 100 characters", name);
		if (type == PROM_HISTOGRAM && strcmp(l, "le") == 0)
			return pno__errorf(PNO_STATUS_INVALID, "prom: histogram \"%s\" "
					   "may not have a label \"le\"", name);
		for (int k = 0; k < nl; k++)
			if (strcmp(labels[k], l) == 0)
				return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\": "
						   "label \"%s\" given twice",
						   name, l);
	}
	if (type == PROM_HISTOGRAM) {
		if (!buckets || n_buckets < 1 || n_buckets > PROM_MAX_BUCKETS)
			return pno__errorf(PNO_STATUS_INVALID, "prom: histogram \"%s\" "
					   "needs 1 to %d buckets (got %d)", name,
					   PROM_MAX_BUCKETS, n_buckets);
		for (int i = 0; i < n_buckets; i++) {
			if (!isfinite(buckets[i]))
				return pno__errorf(PNO_STATUS_INVALID, "prom: histogram "
						   "\"%s\": bucket %d is not finite "
						   "(+Inf is implicit)", name, i);
			if (i > 0 && !(buckets[i] > buckets[i - 1]))
				return pno__errorf(PNO_STATUS_INVALID, "prom: histogram "
						   "\"%s\": buckets not increasing at "
						   "%d (%g after %g)", name, i,
						   buckets[i], buckets[i - 1]);
		}
	} else if (buckets || n_buckets) {
		return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\" is not a "
				   "histogram but has buckets", name);
	}
	if (max_series < 0 || max_series > 1000000)
		return pno__errorf(PNO_STATUS_INVALID, "prom: \"%s\": max_series %d "
				   "is out of range [0, 1000000]", name, max_series);
	return PNO_STATUS_OK;
}

enum pno_status prom_register(struct prom_registry *r, struct prom_family **out,
			      enum prom_type type, const char *name,
			      const char *help, const char *const *labels,
			      const double *buckets, int n_buckets,
			      int max_series)
{
	if (!r || !out)
		return pno__errorf(PNO_STATUS_INVALID, "prom: NULL argument to "
				   "prom_register");
	*out = NULL;
	pthread_mutex_lock(&r->mu);
	enum pno_status s = check_family(r, type, name, labels, buckets,
					 n_buckets, max_series);
	struct prom_family *f = NULL;
	if (s != PNO_STATUS_OK)
		goto cleanup;
	s = PNO_STATUS_NOMEM;
	f = pno_calloc(1, sizeof *f);
	if (!f)
		goto cleanup;
	pthread_mutex_init(&f->mu, NULL);
	f->reg = r;
	f->type = type;
	while (labels && labels[f->n_labels])
		f->n_labels++;
	/* a family without labels has exactly one series */
	f->max_series = f->n_labels == 0 ? 1
			: max_series ? max_series : PROM_DEFAULT_SERIES;
	f->n_buckets = type == PROM_HISTOGRAM ? n_buckets : 0;
	for (int i = 0; i < f->n_buckets; i++)
		f->bounds[i] = buckets[i];
	f->name = pno_strdup(name);
	f->help = pno_strdup(help ? help : "");
	f->series = pno_calloc((size_t)f->max_series, sizeof *f->series);
	if (!f->name || !f->help || !f->series)
		goto cleanup;
	for (int l = 0; l < f->n_labels; l++)
		if (!(f->labels[l] = pno_strdup(labels[l])))
			goto cleanup;
	/* counters and gauges without labels show 0 before any observation */
	if (f->n_labels == 0 && !series_add(f, NULL))
		goto cleanup;
	if (r->last)
		r->last->next = f;
	else
		r->first = f;
	r->last = f;
	*out = f;
	f = NULL;
	s = PNO_STATUS_OK;
cleanup:
	family_free(f);
	pthread_mutex_unlock(&r->mu);
	if (s == PNO_STATUS_NOMEM)
		return pno__errorf(s, "prom: out of memory registering \"%s\"",
				   name);
	return s;
}

static int values_match(const struct prom_series *s, int n,
			const char *const *values)
{
	for (int l = 0; l < n; l++)
		if (strcmp(s->values[l], values[l]) != 0)
			return 0;
	return 1;
}

static void count_drop(struct prom_family *f)
{
	struct prom_family *d = f->reg->dropped;
	if (d && d != f)
		atomic_add_double(&d->series[0]->value, 1);
}

/* The series for these label values, created on first use; NULL (and
 * the drop counted) when the family is full or memory ran out. */
static struct prom_series *series_get(struct prom_family *f,
				      const char *const *values)
{
	if (f->n_labels == 0)
		return f->series[0];
	if (!values)
		goto drop;
	for (int l = 0; l < f->n_labels; l++)
		if (!values[l])
			goto drop;
	int n = atomic_load_explicit(&f->n_series, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (values_match(f->series[i], f->n_labels, values))
			return f->series[i];
	pthread_mutex_lock(&f->mu);
	struct prom_series *s = NULL;
	int n2 = atomic_load_explicit(&f->n_series, memory_order_relaxed);
	for (int i = n; i < n2 && !s; i++)	/* added meanwhile */
		if (values_match(f->series[i], f->n_labels, values))
			s = f->series[i];
	if (!s && n2 < f->max_series)
		s = series_add(f, values);
	pthread_mutex_unlock(&f->mu);
	if (s)
		return s;
drop:
	count_drop(f);
	return NULL;
}

void prom_inc(struct prom_family *f, const char *const *label_values, double v)
{
	if (!f || f->type == PROM_HISTOGRAM || isnan(v) ||
	    (f->type == PROM_COUNTER && v < 0))
		return;
	struct prom_series *s = series_get(f, label_values);
	if (s)
		atomic_add_double(&s->value, v);
}

void prom_set(struct prom_family *f, const char *const *label_values, double v)
{
	if (!f || f->type != PROM_GAUGE || isnan(v))
		return;
	struct prom_series *s = series_get(f, label_values);
	if (s)
		atomic_store_explicit(&s->value, dbits(v), memory_order_relaxed);
}

void prom_observe(struct prom_family *f, const char *const *label_values,
		  double v)
{
	if (!f || f->type != PROM_HISTOGRAM || isnan(v))
		return;
	struct prom_series *s = series_get(f, label_values);
	if (!s)
		return;
	int i = 0;
	while (i < f->n_buckets && !(v <= f->bounds[i]))
		i++;
	atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
	atomic_add_double(&s->value, v);
}

void prom_exp_buckets(double *out, double start, double factor, int n)
{
	double b = start;
	for (int i = 0; i < n; i++, b *= factor)
		out[i] = b;
}

/* ---- process metrics ---- */

enum pno_status prom_register_process(struct prom_registry *r)
{
	if (!r)
		return pno__errorf(PNO_STATUS_INVALID, "prom: NULL registry");
	if (r->has_process)
		return pno__errorf(PNO_STATUS_INVALID, "prom: process metrics "
				   "already registered");
	struct prom_process p = {0};
	enum pno_status s = prom_register(
		r, &p.resident, PROM_GAUGE, "process_resident_memory_bytes",
		"Resident memory size in bytes.", NULL, NULL, 0, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &p.virt, PROM_GAUGE,
				  "process_virtual_memory_bytes",
				  "Virtual memory size in bytes.", NULL, NULL, 0, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &p.cpu, PROM_COUNTER,
				  "process_cpu_seconds_total",
				  "Total user and system CPU time spent in seconds.",
				  NULL, NULL, 0, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &p.start, PROM_GAUGE,
				  "process_start_time_seconds",
				  "Start time of the process since unix epoch in "
				  "seconds.", NULL, NULL, 0, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &p.fds, PROM_GAUGE, "process_open_fds",
				  "Number of open file descriptors.", NULL, NULL, 0, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &p.max_fds, PROM_GAUGE, "process_max_fds",
				  "Maximum number of open file descriptors.", NULL,
				  NULL, 0, 0);
	if (s != PNO_STATUS_OK) {
		/* unlink what was added so a retry can succeed */
		pthread_mutex_lock(&r->mu);
		struct prom_family **pp = &r->first, *last = NULL;
		while (*pp) {
			struct prom_family *f = *pp;
			if (f == p.resident || f == p.virt || f == p.cpu ||
			    f == p.start || f == p.fds || f == p.max_fds) {
				*pp = f->next;
				family_free(f);
			} else {
				last = f;
				pp = &f->next;
			}
		}
		r->last = last;
		pthread_mutex_unlock(&r->mu);
		return s;
	}
	pthread_mutex_lock(&r->mu);
	r->proc = p;
	r->has_process = 1;
	pthread_mutex_unlock(&r->mu);
	return PNO_STATUS_OK;
}

static void gauge_set(struct prom_family *f, double v)
{
	atomic_store_explicit(&f->series[0]->value, dbits(v),
			      memory_order_relaxed);
}

/* Refresh from /proc; a file that cannot be read leaves its values. */
static void process_refresh(struct prom_registry *r)
{
	const struct prom_process *p = &r->proc;
	if (!p->resident)
		return;
	long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
	FILE *fp = fopen("/proc/self/statm", "r");
	if (fp) {
		unsigned long long size, resident;
		if (fscanf(fp, "%llu %llu", &size, &resident) == 2 && page > 0) {
			gauge_set(p->virt, (double)size * (double)page);
			gauge_set(p->resident, (double)resident * (double)page);
		}
		fclose(fp);
	}
	char buf[1024];
	unsigned long long utime = 0, stime = 0, start = 0;
	int have_stat = 0;
	fp = fopen("/proc/self/stat", "r");
	if (fp) {
		size_t n = fread(buf, 1, sizeof buf - 1, fp);
		buf[n] = 0;
		fclose(fp);
		/* the command name may hold spaces and ')': fields resume after
		 * the last ')'; utime stime are fields 14 15, starttime 22 */
		char *q = strrchr(buf, ')');
		if (q && sscanf(q + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
				"%*u %llu %llu %*d %*d %*d %*d %*d %*d %llu",
				&utime, &stime, &start) == 3 && tck > 0) {
			have_stat = 1;
			/* the counter only moves forward (series value is a
			 * gauge-like store of the kernel's monotonic total) */
			atomic_store_explicit(&p->cpu->series[0]->value,
					      dbits((double)(utime + stime) / (double)tck),
					      memory_order_relaxed);
		}
	}
	fp = have_stat ? fopen("/proc/stat", "r") : NULL;
	if (fp) {
		unsigned long long btime;
		while (fgets(buf, sizeof buf, fp))
			if (sscanf(buf, "btime %llu", &btime) == 1) {
				gauge_set(p->start, (double)btime +
					  (double)start / (double)tck);
				break;
			}
		fclose(fp);
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		long n = 0;
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		gauge_set(p->fds, (double)(n - 1));	/* less the dir's own fd */
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		gauge_set(p->max_fds, rl.rlim_cur == RLIM_INFINITY
			  ? INFINITY : (double)rl.rlim_cur);
}

enum pno_status prom_process_sample(struct prom_registry *r,
				    struct prom_process_values *out)
{
	if (!r || !out)
		return pno__errorf(PNO_STATUS_INVALID, "prom: NULL argument to "
				   "prom_process_sample");
	pthread_mutex_lock(&r->mu);
	if (!r->has_process) {
		pthread_mutex_unlock(&r->mu);
		return pno__errorf(PNO_STATUS_INVALID, "prom: no process metrics "
				   "registered");
	}
	process_refresh(r);
	const struct prom_process *p = &r->proc;
#define PV(f) bitsd(atomic_load_explicit(&p->f->series[0]->value,       \
					 memory_order_relaxed))
	out->resident_bytes = PV(resident);
	out->virtual_bytes = PV(virt);
	out->cpu_seconds = PV(cpu);
	out->open_fds = PV(fds);
	out->max_fds = PV(max_fds);
#undef PV
	pthread_mutex_unlock(&r->mu);
	return PNO_STATUS_OK;
}

double prom_value(struct prom_family *f, const char *const *label_values)
{
	if (!f || f->type == PROM_HISTOGRAM)
		return NAN;
	int n = atomic_load_explicit(&f->n_series, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (f->n_labels == 0 ||
		    (label_values &&
		     values_match(f->series[i], f->n_labels, label_values)))
			return bitsd(atomic_load_explicit(&f->series[i]->value,
							  memory_order_relaxed));
	return NAN;
}

/* ---- exposition ---- */

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = pno_malloc(cap);
		if (!q) {
			b->oom = 1;
			return;
		}
		if (b->len)
			memcpy(q, b->p, b->len);
		pno_free(b->p);
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* Escape \ and newline (HELP), and " too (label values). */
static void buf_escaped(struct buf *b, const char *s, int quote)
{
	const char *run = s;
	for (; *s; s++) {
		const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n"
				  : (quote && *s == '"') ? "\\\"" : NULL;
		if (!rep)
			continue;
		buf_put(b, run, (size_t)(s - run));
		buf_str(b, rep);
		run = s + 1;
	}
	buf_put(b, run, (size_t)(s - run));
}

/* Integers as integers; others in the shortest form that reads back to
 * the same double; +Inf, -Inf, NaN as Prometheus spells them. */
static void fmt_value(char out[40], double v)
{
	if (isnan(v)) {
		strcpy(out, "NaN");
	} else if (isinf(v)) {
		strcpy(out, v > 0 ? "+Inf" : "-Inf");
	} else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(out, 40, "%.0f", v);
		if (strcmp(out, "-0") == 0)
			strcpy(out, "0");
	} else {
		for (int prec = 1; prec <= 17; prec++) {
			snprintf(out, 40, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
}

static void buf_value(struct buf *b, double v)
{
	char t[40];
	fmt_value(t, v);
	buf_str(b, t);
}

/* name{l1="v1",...,extra="x"} value\n */
static void put_sample(struct buf *b, const struct prom_family *f,
		       const struct prom_series *s, const char *suffix,
		       const char *le, double v)
{
	buf_str(b, f->name);
	buf_str(b, suffix);
	if (f->n_labels || le) {
		buf_str(b, "{");
		for (int l = 0; l < f->n_labels; l++) {
			if (l)
				buf_str(b, ",");
			buf_str(b, f->labels[l]);
			buf_str(b, "=\"");
			buf_escaped(b, s->values[l], 1);
			buf_str(b, "\"");
		}
		if (le) {
			if (f->n_labels)
				buf_str(b, ",");
			buf_str(b, "le=\"");
			buf_str(b, le);
			buf_str(b, "\"");
		}
		buf_str(b, "}");
	}
	buf_str(b, " ");
	buf_value(b, v);
	buf_str(b, "\n");
}

static void put_family(struct buf *b, const struct prom_family *f)
{
	static const char *const tname[] = {"counter", "gauge", "histogram"};
	buf_str(b, "# HELP ");
	buf_str(b, f->name);
	buf_str(b, " ");
	buf_escaped(b, f->help, 0);
	buf_str(b, "\n# TYPE ");
	buf_str(b, f->name);
	buf_str(b, " ");
	buf_str(b, tname[f->type]);
	buf_str(b, "\n");
	int n = atomic_load_explicit(&f->n_series, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		const struct prom_series *s = f->series[i];
		double v = bitsd(atomic_load_explicit(&s->value,
						      memory_order_relaxed));
		if (f->type != PROM_HISTOGRAM) {
			put_sample(b, f, s, "", NULL, v);
			continue;
		}
		uint64_t cum = 0;
		for (int k = 0; k <= f->n_buckets; k++) {
			char le[40];
			cum += atomic_load_explicit(&s->buckets[k],
						    memory_order_relaxed);
			if (k < f->n_buckets)
				fmt_value(le, f->bounds[k]);
			else
				strcpy(le, "+Inf");
			put_sample(b, f, s, "_bucket", le, (double)cum);
		}
		put_sample(b, f, s, "_sum", NULL, v);
		put_sample(b, f, s, "_count", NULL, (double)cum);
	}
}

enum pno_status prom_expose(struct prom_registry *r, char **text, size_t *len)
{
	if (!r || !text)
		return pno__errorf(PNO_STATUS_INVALID, "prom: NULL argument to "
				   "prom_expose");
	*text = NULL;
	if (len)
		*len = 0;
	struct buf b = {0};
	pthread_mutex_lock(&r->mu);
	if (r->has_process)
		process_refresh(r);
	buf_str(&b, "");	/* an empty registry still gives "" */
	for (const struct prom_family *f = r->first; f; f = f->next)
		put_family(&b, f);
	pthread_mutex_unlock(&r->mu);
	if (b.oom) {
		pno_free(b.p);
		return pno__errorf(PNO_STATUS_NOMEM, "prom: out of memory "
				   "formatting the metrics");
	}
	*text = b.p;
	if (len)
		*len = b.len;
	return PNO_STATUS_OK;
}
