/* serve/prom: every exposition read back by a strict parser of the text
 * format 0.0.4 written here; exact totals under 4 concurrent observers;
 * name and label validation; escaping; the series bound; process metrics
 * against independent readings; allocation-failure loop. */
#include "testutil.h"
#include "prom.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- a strict parser of the text format ---- */

struct sample {
	char name[160];
	char labels[600];	/* unescaped k="v" pairs but le, in order */
	char le[300];		/* the le label's text, "" if none */
	double value;
};

struct family {
	char name[160], type[16];
	int help, has_type, nsamples;
};

struct parsed {
	struct sample *s;
	int n, cap;
	struct family fam[64];
	int nfam;
};

static char perr[1024];

static int is_name(const char *s, size_t n, int colon)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 c == '_' || (colon && c == ':') ||
			 (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return 0;
	}
	return 1;
}

static size_t name_len(const char *s, int colon)
{
	size_t n = 0;
	while (s[n] && (s[n] == '_' || (colon && s[n] == ':') ||
			(s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
			(s[n] >= '0' && s[n] <= '9')))
		n++;
	return n;
}

static int parse_value(const char *s, size_t n, double *v)
{
	char t[64], *end;
	if (n == 0 || n >= sizeof t)
		return 0;
	memcpy(t, s, n);
	t[n] = 0;
	if (!strcmp(t, "+Inf")) { *v = INFINITY; return 1; }
	if (!strcmp(t, "-Inf")) { *v = -INFINITY; return 1; }
	if (!strcmp(t, "NaN")) { *v = NAN; return 1; }
	if (!((t[0] >= '0' && t[0] <= '9') || t[0] == '-'))
		return 0;
	*v = strtod(t, &end);
	return *end == 0 && isfinite(*v);
}

static struct family *fam_find(struct parsed *p, const char *name)
{
	for (int i = 0; i < p->nfam; i++)
		if (!strcmp(p->fam[i].name, name))
			return &p->fam[i];
	return NULL;
}

static struct family *fam_add(struct parsed *p, const char *name)
{
	struct family *f = fam_find(p, name);
	if (f || p->nfam == 64)
		return f;
	f = &p->fam[p->nfam++];
	memset(f, 0, sizeof *f);
	snprintf(f->name, sizeof f->name, "%s", name);
	return f;
}

static int ends(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && !strcmp(s + n - m, suf);
}

/* The family a sample name belongs to (histogram suffixes stripped). */
static struct family *sample_family(struct parsed *p, const char *name)
{
	static const char *const suf[] = {"_bucket", "_sum", "_count"};
	for (int i = 0; i < 3; i++)
		if (ends(name, suf[i])) {
			char base[160];
			snprintf(base, sizeof base, "%.*s",
				 (int)(strlen(name) - strlen(suf[i])), name);
			struct family *f = fam_find(p, base);
			if (f && !strcmp(f->type, "histogram"))
				return f;
		}
	return fam_find(p, name);
}

#define PFAIL(...)                                                            \
	do {                                                                  \
		char m_[400];                                                 \
		snprintf(m_, sizeof m_, __VA_ARGS__);                          \
		snprintf(perr, sizeof perr, "line %d: %s", lineno, m_);       \
		return perr;                                                  \
	} while (0)

static const char *check_histograms(struct parsed *p);

/* NULL if text is valid; otherwise what is wrong. */
static const char *parse(const char *text, struct parsed *p)
{
	memset(p, 0, sizeof *p);
	int lineno = 0;
	struct family *cur = NULL;
	const char *line = text;
	if (*text && text[strlen(text) - 1] != '\n') {
		snprintf(perr, sizeof perr, "last line lacks its newline");
		return perr;
	}
	while (*line) {
		const char *eol = strchr(line, '\n');
		size_t len = (size_t)(eol - line);
		lineno++;
		if (len == 0)
			PFAIL("empty line");
		if (line[0] == '#') {
			int help = !strncmp(line, "# HELP ", 7);
			if (!help && strncmp(line, "# TYPE ", 7))
				PFAIL("comment is neither HELP nor TYPE");
			const char *nm = line + 7;
			size_t nl = name_len(nm, 1);
			if (!is_name(nm, nl, 1) || nm[nl] != ' ')
				PFAIL("bad metric name in %s", help ? "HELP" : "TYPE");
			char name[160];
			snprintf(name, sizeof name, "%.*s", (int)nl, nm);
			struct family *f = fam_add(p, name);
			if (!f)
				PFAIL("too many families");
			const char *rest = nm + nl + 1;
			size_t rl = (size_t)(eol - rest);
			if (help) {
				if (f->help)
					PFAIL("second HELP for %s", name);
				f->help = 1;
				for (size_t i = 0; i < rl; i++)
					if (rest[i] == '\\' &&
					    (i + 1 == rl || (rest[i + 1] != '\\' &&
							     rest[i + 1] != 'n')))
						PFAIL("bad escape in HELP");
					else if (rest[i] == '\\')
						i++;
			} else {
				if (f->has_type)
					PFAIL("second TYPE for %s", name);
				if (f->nsamples)
					PFAIL("TYPE for %s after its samples", name);
				snprintf(f->type, sizeof f->type, "%.*s", (int)rl, rest);
				if (strcmp(f->type, "counter") && strcmp(f->type, "gauge") &&
				    strcmp(f->type, "histogram"))
					PFAIL("unknown type \"%s\"", f->type);
				if (!strcmp(f->type, "counter") && !ends(name, "_total"))
					PFAIL("counter %s does not end in _total", name);
				f->has_type = 1;
				cur = f;
			}
			line = eol + 1;
			continue;
		}
		struct sample s = {0};
		size_t nl = name_len(line, 1);
		if (!is_name(line, nl, 1))
			PFAIL("bad sample name");
		snprintf(s.name, sizeof s.name, "%.*s", (int)nl, line);
		const char *q = line + nl;
		size_t lo = 0;
		if (*q == '{') {
			q++;
			while (*q != '}') {
				size_t ll = name_len(q, 0);
				if (!is_name(q, ll, 0) || q[ll] != '=' || q[ll + 1] != '"')
					PFAIL("bad label in %s", s.name);
				char lname[120], val[300];
				size_t vn = 0;
				snprintf(lname, sizeof lname, "%.*s", (int)ll, q);
				q += ll + 2;
				while (*q != '"') {
					if (*q == '\n' || !*q)
						PFAIL("unterminated label value");
					char c = *q++;
					if (c == '\\') {
						c = *q++;
						if (c == 'n')
							c = '\n';
						else if (c != '\\' && c != '"')
							PFAIL("bad escape in label value");
					}
					if (vn + 1 < sizeof val)
						val[vn++] = c;
				}
				val[vn] = 0;
				q++;
				if (!strcmp(lname, "le"))
					snprintf(s.le, sizeof s.le, "%s", val);
				else
					lo += (size_t)snprintf(s.labels + lo,
							       sizeof s.labels - lo,
							       "%s%s=\"%s\"",
							       lo ? "," : "", lname, val);
				if (*q == ',')
					q++;
				else if (*q != '}')
					PFAIL("expected , or } in %s", s.name);
			}
			q++;
		}
		if (*q != ' ')
			PFAIL("no space before the value of %s", s.name);
		q++;
		if (!parse_value(q, (size_t)(eol - q), &s.value))
			PFAIL("bad value \"%.*s\"", (int)(eol - q), q);
		struct family *f = sample_family(p, s.name);
		if (!f || !f->has_type)
			PFAIL("sample %s before a TYPE", s.name);
		if (f != cur)
			PFAIL("sample %s not with its family's TYPE", s.name);
		if (strcmp(f->type, "histogram") && strcmp(s.name, f->name))
			PFAIL("sample %s in family %s", s.name, f->name);
		if (!strcmp(f->type, "histogram") && !strcmp(s.name, f->name))
			PFAIL("histogram sample without a suffix");
		int hist = !strcmp(f->type, "histogram");
		if (hist && (s.le[0] != 0) != ends(s.name, "_bucket"))
			PFAIL("le missing or misplaced on %s", s.name);
		if (!hist && s.le[0]) {	/* an ordinary label elsewhere */
			char t[sizeof s.labels + sizeof s.le + 8];
			snprintf(t, sizeof t, "%s%sle=\"%s\"", s.labels,
				 s.labels[0] ? "," : "", s.le);
			if (strlen(t) >= sizeof s.labels)
				PFAIL("labels too long for this parser");
			memcpy(s.labels, t, strlen(t) + 1);
			s.le[0] = 0;
		}
		f->nsamples++;
		if (p->n == p->cap) {
			p->cap = p->cap ? 2 * p->cap : 64;
			p->s = realloc(p->s, (size_t)p->cap * sizeof *p->s);
		}
		p->s[p->n++] = s;
		line = eol + 1;
	}
	return check_histograms(p);
}

/* Per histogram series: buckets increasing in le, non-decreasing counts,
 * the last le +Inf equal to _count, _sum present. */
static const char *check_histograms(struct parsed *p)
{
	for (int fi = 0; fi < p->nfam; fi++) {
		struct family *f = &p->fam[fi];
		if (!f->has_type)
			return snprintf(perr, sizeof perr, "%s: HELP without TYPE",
					f->name), perr;
		if (strcmp(f->type, "histogram"))
			continue;
		char bucket[200], sum[200], count[200];
		snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
		snprintf(sum, sizeof sum, "%s_sum", f->name);
		snprintf(count, sizeof count, "%s_count", f->name);
		for (int i = 0; i < p->n; i++) {
			if (strcmp(p->s[i].name, count))
				continue;
			const char *lab = p->s[i].labels;
			double prev_le = -INFINITY, prev_c = 0, inf_c = -1;
			int has_sum = 0, nb = 0;
			for (int j = 0; j < p->n; j++) {
				if (strcmp(p->s[j].labels, lab))
					continue;
				if (!strcmp(p->s[j].name, sum))
					has_sum = 1;
				if (strcmp(p->s[j].name, bucket))
					continue;
				double le;
				if (!parse_value(p->s[j].le, strlen(p->s[j].le), &le) ||
				    isnan(le))
					return snprintf(perr, sizeof perr, "%s: bad le",
							f->name), perr;
				if (!(le > prev_le) || p->s[j].value < prev_c)
					return snprintf(perr, sizeof perr, "%s{%s}: "
							"buckets not increasing at le %s",
							f->name, lab, p->s[j].le), perr;
				prev_le = le;
				prev_c = p->s[j].value;
				nb++;
				if (isinf(le))
					inf_c = p->s[j].value;
			}
			if (!nb || !isinf(prev_le) || inf_c != p->s[i].value)
				return snprintf(perr, sizeof perr, "%s{%s}: +Inf "
						"bucket missing or not _count",
						f->name, lab), perr;
			if (!has_sum)
				return snprintf(perr, sizeof perr, "%s{%s}: no _sum",
						f->name, lab), perr;
		}
	}
	return NULL;
}

/* Value of the sample (name, labels) or NAN when absent. */
static double sval(const struct parsed *p, const char *name, const char *labels,
		   const char *le)
{
	for (int i = 0; i < p->n; i++)
		if (!strcmp(p->s[i].name, name) &&
		    !strcmp(p->s[i].labels, labels ? labels : "") &&
		    !strcmp(p->s[i].le, le ? le : ""))
			return p->s[i].value;
	return NAN;
}

static int nseries(const struct parsed *p, const char *name)
{
	int n = 0;
	for (int i = 0; i < p->n; i++)
		n += !strcmp(p->s[i].name, name);
	return n;
}

/* Expose r, parse strictly (failing the test if invalid); text kept in
 * *text if asked. */
static void expose_parse(struct prom_registry *r, struct parsed *p,
			 char **text)
{
	char *t;
	size_t len;
	assert_status(prom_expose(r, &t, &len), PNO_STATUS_OK);
	assert_int_equal(len, strlen(t));
	const char *e = parse(t, p);
	if (e)
		fail_msg("invalid exposition: %s\n%s", e, t);
	if (text)
		*text = t;
	else
		pno_free(t);
}

/* ---- tests ---- */

static void test_parser_rejects(void **state)
{
	(void)state;
	struct parsed p;
	static const char *const bad[] = {
		"x 1",						/* no newline */
		"x 1\n",					/* no TYPE */
		"# TYPE x gauge\n# TYPE x gauge\nx 1\n",
		"# TYPE x gauge\nx 1\n# TYPE x gauge\n",
		"# TYPE x_total counter\n# TYPE y gauge\nx_total 1\n",
		"# TYPE x counter\nx 1\n",			/* no _total */
		"# TYPE x gauge\nx{a=\"b} 1\n",
		"# TYPE x gauge\nx{a=\"\\t\"} 1\n",
		"# TYPE x gauge\nx{1a=\"b\"} 1\n",
		"# TYPE x gauge\nx 1.5x\n",
		"# TYPE x gauge\nx inf\n",
		"# TYPE 9x gauge\n9x 1\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
		"h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
		"h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
		"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
		"# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
		"h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (!parse(bad[i], &p))
			fail_msg("parser accepted case %zu:\n%s", i, bad[i]);
		free(p.s);
	}
	const char *good = "# HELP h a \\\\ b\\n\n# TYPE h histogram\n"
			   "h_bucket{k=\"a\\\"\",le=\"1\"} 1\n"
			   "h_bucket{k=\"a\\\"\",le=\"+Inf\"} 2\n"
			   "h_sum{k=\"a\\\"\"} 3.5\nh_count{k=\"a\\\"\"} 2\n";
	const char *e = parse(good, &p);
	if (e)
		fail_msg("parser rejected a valid text: %s", e);
	assert_true(sval(&p, "h_sum", "k=\"a\"\"", NULL) == 3.5);
	free(p.s);
}

static void test_format(void **state)
{
	(void)state;
	struct prom_registry *r;
	struct prom_family *c, *g, *gl, *h, *cl;
	assert_status(prom_registry_new(&r), PNO_STATUS_OK);
	const char *lab[] = {"model", "code", NULL};
	const double b[] = {0.005, 0.01, 0.025, 0.1, 1, 2.5, 10};
	assert_status(prom_register(r, &c, PROM_COUNTER, "t_requests_total",
				    "Requests.", NULL, NULL, 0, 0), PNO_STATUS_OK);
	assert_status(prom_register(r, &cl, PROM_COUNTER, "t_errors_total",
				    "Errors by model.", lab, NULL, 0, 0),
		      PNO_STATUS_OK);
	assert_status(prom_register(r, &g, PROM_GAUGE, "t_value", "A \\ value\n"
				    "on two lines.", NULL, NULL, 0, 0),
		      PNO_STATUS_OK);
	assert_status(prom_register(r, &gl, PROM_GAUGE, "t_labelled", "L.", lab,
				    NULL, 0, 0), PNO_STATUS_OK);
	assert_status(prom_register(r, &h, PROM_HISTOGRAM, "t_latency_seconds",
				    "Latency.", lab, b, 7, 0), PNO_STATUS_OK);
	/* before any observation: unlabelled at 0, labelled with no series */
	struct parsed p;
	char *t;
	expose_parse(r, &p, &t);
	assert_true(sval(&p, "t_requests_total", NULL, NULL) == 0);
	assert_true(sval(&p, "t_value", NULL, NULL) == 0);
	assert_true(sval(&p, "pno_prom_dropped_series_total", NULL, NULL) == 0);
	assert_int_equal(nseries(&p, "t_errors_total"), 0);
	assert_non_null(strstr(t, "# HELP t_errors_total Errors by model.\n"
			       "# TYPE t_errors_total counter\n"));
	assert_non_null(strstr(t, "# HELP t_value A \\\\ value\\non two lines.\n"));
	assert_int_equal(p.nfam, 6);
	pno_free(t);
	free(p.s);

	prom_inc(c, NULL, 3);
	prom_inc(c, NULL, -1);		/* ignored: counters only go up */
	prom_inc(c, NULL, NAN);		/* ignored */
	prom_set(g, NULL, 0.1);
	const char *v1[] = {"fno", "200"}, *v2[] = {"a\"b\\c\nd", "500"};
	prom_inc(cl, v1, 1);
	prom_inc(cl, v2, 2.5);
	prom_set(gl, v1, 1e300);
	prom_set(gl, v2, -INFINITY);
	prom_observe(h, v1, 0.005);	/* le is inclusive */
	prom_observe(h, v1, 0.02);
	prom_observe(h, v1, 3);
	prom_observe(h, v1, 100);
	prom_observe(h, v1, NAN);	/* ignored */
	prom_set(c, NULL, 7);		/* wrong type: ignored */
	prom_observe(g, NULL, 1);	/* wrong type: ignored */
	expose_parse(r, &p, &t);
	assert_true(sval(&p, "t_requests_total", NULL, NULL) == 3);
	assert_true(sval(&p, "t_errors_total", "model=\"fno\",code=\"200\"", NULL)
		    == 1);
	/* the parser unescapes: the value comes back as given */
	assert_true(sval(&p, "t_errors_total",
			 "model=\"a\"b\\c\nd\",code=\"500\"", NULL) == 2.5);
	assert_non_null(strstr(t, "t_errors_total{model=\"a\\\"b\\\\c\\nd\","
			       "code=\"500\"} 2.5\n"));
	assert_non_null(strstr(t, "t_value 0.1\n"));
	assert_non_null(strstr(t, "t_requests_total 3\n"));
	assert_non_null(strstr(t, "t_labelled{model=\"fno\",code=\"200\"} 1e+300\n"));
	assert_non_null(strstr(t, "code=\"500\"} -Inf\n"));
	static const char *const les[] = {"0.005", "0.01", "0.025", "0.1", "1",
					  "2.5", "10", "+Inf"};
	static const double want[] = {1, 1, 2, 2, 2, 2, 3, 4};
	for (int i = 0; i < 8; i++) {
		char line[200];
		snprintf(line, sizeof line, "t_latency_seconds_bucket{model=\"fno\","
			 "code=\"200\",le=\"%s\"} %g\n", les[i], want[i]);
		if (!strstr(t, line))
			fail_msg("missing \"%s\" in\n%s", line, t);
	}
	assert_true(sval(&p, "t_latency_seconds_count", "model=\"fno\",code=\"200\"",
			 NULL) == 4);
	assert_true(sval(&p, "t_latency_seconds_sum", "model=\"fno\",code=\"200\"",
			 NULL) == 0.005 + 0.02 + 3 + 100);
	pno_free(t);
	free(p.s);
	prom_registry_free(r);
	prom_registry_free(NULL);
}

static void test_invalid(void **state)
{
	(void)state;
	struct prom_registry *r;
	struct prom_family *f;
	assert_status(prom_registry_new(&r), PNO_STATUS_OK);
	const double b[] = {1, 2}, bdown[] = {2, 1}, binf[] = {1, INFINITY},
		     bnan[] = {NAN};
	double many[PROM_MAX_BUCKETS + 1];
	prom_exp_buckets(many, 1, 2, PROM_MAX_BUCKETS + 1);
	const char *l_bad[] = {"1a", NULL}, *l_res[] = {"__x", NULL},
		   *l_le[] = {"le", NULL}, *l_dup[] = {"a", "a", NULL},
		   *l_many[] = {"a", "b", "c", "d", "e", NULL},
		   *l_dash[] = {"a-b", NULL}, *l_ok[] = {"le", NULL};
	struct {
		enum prom_type t;
		const char *name, *const *labels;
		const double *b;
		int nb;
		const char *why;
	} cases[] = {
		{PROM_GAUGE, "1abc", NULL, NULL, 0, "is not"},
		{PROM_GAUGE, "a-b", NULL, NULL, 0, "is not"},
		{PROM_GAUGE, "", NULL, NULL, 0, "is not"},
		{PROM_GAUGE, NULL, NULL, NULL, 0, "(null)"},
		{PROM_GAUGE, "a b", NULL, NULL, 0, "is not"},
		{PROM_COUNTER, "requests", NULL, NULL, 0, "_total"},
		{PROM_GAUGE, "x_total", NULL, NULL, 0, "not a counter"},
		{PROM_GAUGE, "x", l_bad, NULL, 0, "label name \"1a\""},
		{PROM_GAUGE, "x", l_dash, NULL, 0, "label name \"a-b\""},
		{PROM_GAUGE, "x", l_res, NULL, 0, "reserved"},
		{PROM_HISTOGRAM, "x", l_le, b, 2, "\"le\""},
		{PROM_GAUGE, "x", l_dup, NULL, 0, "twice"},
		{PROM_GAUGE, "x", l_many, NULL, 0, "more than 4"},
		{PROM_HISTOGRAM, "x", NULL, bdown, 2, "not increasing"},
		{PROM_HISTOGRAM, "x", NULL, binf, 2, "not finite"},
		{PROM_HISTOGRAM, "x", NULL, bnan, 1, "not finite"},
		{PROM_HISTOGRAM, "x", NULL, b, 0, "buckets"},
		{PROM_HISTOGRAM, "x", NULL, NULL, 2, "buckets"},
		{PROM_HISTOGRAM, "x", NULL, many, PROM_MAX_BUCKETS + 1, "buckets"},
		{PROM_HISTOGRAM, "x_count", NULL, b, 2, "_count"},
		{PROM_GAUGE, "x", NULL, b, 2, "not a histogram"},
		{(enum prom_type)7, "x", NULL, NULL, 0, "type"},
		{PROM_COUNTER, "pno_prom_dropped_series_total", NULL, NULL, 0,
		 "clashes"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		f = (struct prom_family *)1;
		enum pno_status s = prom_register(r, &f, cases[i].t, cases[i].name,
						  "h", cases[i].labels, cases[i].b,
						  cases[i].nb, 0);
		if (s != PNO_STATUS_INVALID || f != NULL ||
		    !strstr(pno_last_error(), cases[i].why))
			fail_msg("case %zu (%s): %s \"%s\", want INVALID with "
				 "\"%s\"", i, cases[i].name ? cases[i].name : "NULL",
				 pno_status_name(s), pno_last_error(), cases[i].why);
	}
	/* le is fine on a gauge; histogram suffixes clash both ways */
	assert_status(prom_register(r, &f, PROM_GAUGE, "g", "h", l_ok, NULL, 0, 0),
		      PNO_STATUS_OK);
	const char *v_ok[] = {"x"};
	prom_set(f, v_ok, 2);
	assert_status(prom_register(r, &f, PROM_HISTOGRAM, "h", "h", NULL, b, 2,
				    0), PNO_STATUS_OK);
	assert_status(prom_register(r, &f, PROM_GAUGE, "h_sum", "h", NULL, NULL,
				    0, 0), PNO_STATUS_INVALID);
	assert_err_has("clashes");
	assert_status(prom_register(r, &f, PROM_GAUGE, "k_bucket", "h", NULL,
				    NULL, 0, 0), PNO_STATUS_OK);
	assert_status(prom_register(r, &f, PROM_HISTOGRAM, "k", "h", NULL, b, 2,
				    0), PNO_STATUS_INVALID);
	assert_status(prom_register(r, &f, PROM_GAUGE, "g", "h", NULL, NULL, 0,
				    0), PNO_STATUS_INVALID);
	assert_status(prom_register(r, &f, PROM_GAUGE, "m", "h", NULL, NULL, 0,
				    -1), PNO_STATUS_INVALID);
	assert_status(prom_register(NULL, &f, PROM_GAUGE, "m", "h", NULL, NULL, 0,
				    0), PNO_STATUS_INVALID);
	assert_status(prom_registry_new(NULL), PNO_STATUS_INVALID);
	assert_status(prom_register_process(r), PNO_STATUS_OK);
	assert_status(prom_register_process(r), PNO_STATUS_INVALID);
	/* still a valid exposition after all the refusals */
	struct parsed p;
	expose_parse(r, &p, NULL);
	assert_int_equal(p.nfam, 10);
	assert_true(sval(&p, "g", "le=\"x\"", NULL) == 2);
	assert_true(sval(&p, "k_bucket", NULL, NULL) == 0);
	free(p.s);
	/* observations on NULL families are no-ops */
	prom_inc(NULL, NULL, 1);
	prom_set(NULL, NULL, 1);
	prom_observe(NULL, NULL, 1);
	prom_registry_free(r);
}

static void test_series_bound(void **state)
{
	(void)state;
	struct prom_registry *r;
	struct prom_family *f;
	const char *lab[] = {"model", NULL};
	assert_status(prom_registry_new(&r), PNO_STATUS_OK);
	assert_status(prom_register(r, &f, PROM_COUNTER, "b_total", "b", lab,
				    NULL, 0, 3), PNO_STATUS_OK);
	const char *names[] = {"a", "b", "c", "d", "e"};
	for (int rep = 0; rep < 2; rep++)
		for (int i = 0; i < 5; i++) {
			const char *v[] = {names[i]};
			prom_inc(f, v, 1);
		}
	const char *vnull[] = {NULL};
	prom_inc(f, vnull, 1);		/* missing value: a drop */
	prom_inc(f, NULL, 1);		/* no values at all: a drop */
	struct parsed p;
	expose_parse(r, &p, NULL);
	assert_int_equal(nseries(&p, "b_total"), 3);
	assert_true(sval(&p, "b_total", "model=\"a\"", NULL) == 2);
	assert_true(sval(&p, "b_total", "model=\"c\"", NULL) == 2);
	assert_true(isnan(sval(&p, "b_total", "model=\"d\"", NULL)));
	/* d and e twice each, plus the two without values */
	assert_true(sval(&p, "pno_prom_dropped_series_total", NULL, NULL) == 6);
	free(p.s);
	prom_registry_free(r);
}

/* ---- concurrency ---- */

#define NTHREADS 4
#define NITER 100000

struct conc {
	struct prom_family *c, *cl, *g, *h;
	atomic_int stop;
	struct prom_registry *r;
	int expositions;
};

static void *observer(void *arg)
{
	struct conc *x = arg;
	static const char *const vals[] = {"v0", "v1", "v2", "v3", "v4", "v5",
					   "v6", "v7"};
	for (int i = 0; i < NITER; i++) {
		const char *v[] = {vals[i % 8]};
		prom_inc(x->c, NULL, 1);
		prom_inc(x->cl, v, 1);
		prom_inc(x->g, NULL, (i & 1) ? -1 : 1);
		prom_observe(x->h, v, 0.25 * (i % 4));
	}
	return NULL;
}

static void *exposer(void *arg)
{
	struct conc *x = arg;
	while (!atomic_load(&x->stop)) {
		struct parsed p;
		expose_parse(x->r, &p, NULL);
		free(p.s);
		x->expositions++;
	}
	return NULL;
}

static void test_concurrency(void **state)
{
	(void)state;
	struct conc x = {0};
	const char *lab[] = {"k", NULL};
	const double b[] = {0.1, 0.3, 0.6};
	assert_status(prom_registry_new(&x.r), PNO_STATUS_OK);
	assert_status(prom_register(x.r, &x.c, PROM_COUNTER, "c_total", "c", NULL,
				    NULL, 0, 0), PNO_STATUS_OK);
	assert_status(prom_register(x.r, &x.cl, PROM_COUNTER, "cl_total", "c",
				    lab, NULL, 0, 0), PNO_STATUS_OK);
	assert_status(prom_register(x.r, &x.g, PROM_GAUGE, "g", "g", NULL, NULL, 0,
				    0), PNO_STATUS_OK);
	assert_status(prom_register(x.r, &x.h, PROM_HISTOGRAM, "h_seconds", "h",
				    lab, b, 3, 0), PNO_STATUS_OK);
	pthread_t th[NTHREADS], ex;
	assert_int_equal(pthread_create(&ex, NULL, exposer, &x), 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, observer, &x), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	atomic_store(&x.stop, 1);
	pthread_join(ex, NULL);
	struct parsed p;
	expose_parse(x.r, &p, NULL);
	/* every increment counted exactly (integers below 2^53 add exactly) */
	assert_true(sval(&p, "c_total", NULL, NULL) == NTHREADS * NITER);
	assert_true(sval(&p, "g", NULL, NULL) == 0);
	assert_int_equal(nseries(&p, "cl_total"), 8);
	assert_int_equal(nseries(&p, "h_seconds_count"), 8);
	for (int k = 0; k < 8; k++) {
		char l[32];
		snprintf(l, sizeof l, "k=\"v%d\"", k);
		assert_true(sval(&p, "cl_total", l, NULL) == NTHREADS * NITER / 8);
		/* series k sees i = k mod 8, so i % 4 = k % 4 each time:
		 * value 0.25 (k%4), a multiple of 1/4, summed exactly */
		double n = NTHREADS * NITER / 8, v = 0.25 * (k % 4);
		assert_true(sval(&p, "h_seconds_count", l, NULL) == n);
		assert_true(sval(&p, "h_seconds_sum", l, NULL) == n * v);
		assert_true(sval(&p, "h_seconds_bucket", l, "0.1") ==
			    (v <= 0.1 ? n : 0));
		assert_true(sval(&p, "h_seconds_bucket", l, "0.6") ==
			    (v <= 0.6 ? n : 0));
		assert_true(sval(&p, "h_seconds_bucket", l, "+Inf") == n);
	}
	assert_true(sval(&p, "pno_prom_dropped_series_total", NULL, NULL) == 0);
	print_message("%d concurrent expositions parsed\n", x.expositions);
	free(p.s);
	prom_registry_free(x.r);
}

/* ---- process metrics ---- */

static void test_process(void **state)
{
	(void)state;
	struct prom_registry *r;
	assert_status(prom_registry_new(&r), PNO_STATUS_OK);
	assert_status(prom_register_process(r), PNO_STATUS_OK);
	/* touch 8 MB so resident memory is clearly above 1 MB */
	size_t n = 8 << 20;
	volatile char *big = malloc(n);
	for (size_t i = 0; i < n; i += 4096)
		big[i] = 1;
	struct parsed p;
	expose_parse(r, &p, NULL);
	double rss = sval(&p, "process_resident_memory_bytes", NULL, NULL);
	double vm = sval(&p, "process_virtual_memory_bytes", NULL, NULL);
	double cpu0 = sval(&p, "process_cpu_seconds_total", NULL, NULL);
	double start = sval(&p, "process_start_time_seconds", NULL, NULL);
	double fds0 = sval(&p, "process_open_fds", NULL, NULL);
	double maxfds = sval(&p, "process_max_fds", NULL, NULL);
	free(p.s);
	print_message("resident %.1f MB, virtual %.1f MB, cpu %.2f s, start "
		      "%.0f, fds %.0f/%.0f\n", rss / 1e6, vm / 1e6, cpu0, start,
		      fds0, maxfds);
	assert_true(rss > 8e6 && rss >= 1 << 20);
	assert_true(vm >= rss);
	assert_true(cpu0 >= 0);
	double now = (double)time(NULL);
	/* started before now, and not longer ago than the test run allows */
	assert_true(start <= now + 1 && start > now - 3600);
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY)
		assert_true(maxfds == (double)rl.rlim_cur);
	/* three more descriptors are seen as exactly three more */
	int d[3];
	for (int i = 0; i < 3; i++)
		d[i] = dup(1);
	/* burn ~0.3 s of CPU: the counter must move by about that */
	struct timespec t0, t1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	volatile double acc = 0;
	do {
		for (int i = 0; i < 100000; i++)
			acc += sqrt((double)i);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	} while ((t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec) < 0.3);
	expose_parse(r, &p, NULL);
	double fds1 = sval(&p, "process_open_fds", NULL, NULL);
	double cpu1 = sval(&p, "process_cpu_seconds_total", NULL, NULL);
	free(p.s);
	for (int i = 0; i < 3; i++)
		close(d[i]);
	assert_true(fds1 == fds0 + 3);
	/* clock ticks are 10 ms; allow two ticks of rounding either way */
	if (!(cpu1 - cpu0 >= 0.28 && cpu1 - cpu0 < 2))
		fail_msg("cpu moved %.3f s over a 0.3 s busy loop", cpu1 - cpu0);
	free((void *)big);
	prom_registry_free(r);
}

static void test_exp_buckets(void **state)
{
	(void)state;
	double b[5];
	prom_exp_buckets(b, 0.001, 2, 5);
	const double want[] = {0.001, 0.002, 0.004, 0.008, 0.016};
	for (int i = 0; i < 5; i++)
		assert_true(b[i] == want[i]);
}

/* ---- allocation failures ---- */

static enum pno_status build_and_expose(void)
{
	struct prom_registry *r = NULL;
	struct prom_family *c, *h;
	char *t = NULL;
	const char *lab[] = {"model", NULL};
	const double b[] = {0.01, 0.1, 1};
	enum pno_status s = prom_registry_new(&r);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &c, PROM_COUNTER, "a_requests_total",
				  "Requests by model.", lab, NULL, 0, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register(r, &h, PROM_HISTOGRAM, "a_latency_seconds", "L.",
				  lab, b, 3, 0);
	if (s == PNO_STATUS_OK)
		s = prom_register_process(r);
	if (s == PNO_STATUS_OK) {
		/* enough series that the text outgrows the first buffer; a
		 * series that cannot be allocated is a counted drop */
		for (int i = 0; i < 40; i++) {
			char m[48];
			snprintf(m, sizeof m, "model-with-a-long-name-%d", i);
			const char *v[] = {m};
			prom_inc(c, v, i);
			prom_observe(h, v, 0.05 * i);
		}
		size_t len;
		s = prom_expose(r, &t, &len);
	}
	if (s == PNO_STATUS_OK) {
		struct parsed p;
		const char *e = parse(t, &p);
		if (e)
			fail_msg("invalid exposition: %s", e);
		assert_true(strlen(t) > 8192);
		/* a series whose allocation failed is dropped and counted:
		 * then that was this run's injected failure */
		double dropped = sval(&p, "pno_prom_dropped_series_total", NULL,
				      NULL);
		int ns = nseries(&p, "a_requests_total") +
			 nseries(&p, "a_latency_seconds_count");
		assert_true(dropped == 80 - ns);
		if (dropped > 0) {
			assert_true(dropped == 1 && tu_alloc_failed());
			s = PNO_STATUS_NOMEM;
		}
		free(p.s);
	}
	pno_free(t);
	prom_registry_free(r);
	return s;
}

static void test_alloc_failure_loop(void **state)
{
	(void)state;
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(build_and_expose(), live0))
			break;
	}
	tu_alloc_uninstall();
	print_message("%ld allocation points\n", k - 1);
	assert_true(k > 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parser_rejects),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_series_bound),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_process),
		cmocka_unit_test(test_exp_buckets),
		cmocka_unit_test(test_alloc_failure_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
