/* pno bench: the reports. One column list drives the JSON aggregates, the
 * CSV, the Markdown and the LaTeX table; a run with failed cells says so
 * in each of them. */
#include "bench.h"
#include "cli.h"

#include "pno/core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double bench_metric(const struct bench_cell *c, const char *key)
{
	json_t *v = json_object_get(json_object_get(c->eval, "metrics"), key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

double bench_coverage(const struct bench_cell *c, double level, int width)
{
	json_t *cov = json_object_get(json_object_get(c->eval, "metrics"),
				      "coverage");
	size_t i;
	json_t *e;
	json_array_foreach(cov, i, e)
	{
		json_t *l = json_object_get(e, "level");
		if (json_is_number(l) && fabs(json_number_value(l) - level) < 1e-9) {
			json_t *v = json_object_get(e, width ? "width" : "observed");
			return json_is_number(v) ? json_number_value(v) : NAN;
		}
	}
	return NAN;
}

enum col_kind { COL_METRIC, COL_COVERAGE, COL_WIDTH, COL_TRAIN_S,
		COL_EVAL_S, COL_TRAIN_CPU, COL_EVAL_CPU, COL_PREDICT_S };

/* key (JSON and CSV), table heads (NULL: not in the tables), the metric
 * key or coverage level, printf formats of mean and std in the tables */
static const struct col {
	const char *key, *md, *tex;
	enum col_kind kind;
	const char *metric;
	double level;
	const char *fmt, *sfmt;	/* mean, std */
} cols[] = {
	{"rel_l2", "Rel. L2", "Rel.\\ $L^2$", COL_METRIC, "rel_l2", 0, "%.4g", "%.2g"},
	{"nll", "NLL", "NLL", COL_METRIC, "nll", 0, "%.4g", "%.2g"},
	{"crps", "CRPS", "CRPS", COL_METRIC, "crps", 0, "%.4g", "%.2g"},
	{"coverage_90", "Coverage 90%", "Cov.\\ 90\\%", COL_COVERAGE, NULL, 0.9, "%.3f", "%.3f"},
	{"width_90", "Width 90%", "Width 90\\%", COL_WIDTH, NULL, 0.9, "%.4g", "%.2g"},
	{"coverage_95", NULL, NULL, COL_COVERAGE, NULL, 0.95, "%.3f", "%.3f"},
	{"calib_error", NULL, NULL, COL_METRIC, "calib_error", 0, "%.4g", "%.2g"},
	{"energy", NULL, NULL, COL_METRIC, "energy", 0, "%.4g", "%.2g"},
	{"train_seconds", "Train s", "Train (s)", COL_TRAIN_S, NULL, 0, "%.1f", "%.1f"},
	{"eval_seconds", NULL, NULL, COL_EVAL_S, NULL, 0, "%.1f", "%.1f"},
	{"train_cpu_seconds", NULL, NULL, COL_TRAIN_CPU, NULL, 0, "%.1f", "%.1f"},
	{"eval_cpu_seconds", NULL, NULL, COL_EVAL_CPU, NULL, 0, "%.1f", "%.1f"},
	{"predict_seconds_per_sample", "Predict s/sample",
	 "Predict (s/sample)", COL_PREDICT_S, NULL, 0, "%.3g", "%.2g"},
};
#define N_COLS ((int)(sizeof cols / sizeof cols[0]))

static double col_value(const struct bench_cell *c, const struct col *k)
{
	json_t *v;
	switch (k->kind) {
	case COL_METRIC:
		return bench_metric(c, k->metric);
	case COL_COVERAGE:
		return bench_coverage(c, k->level, 0);
	case COL_WIDTH:
		return bench_coverage(c, k->level, 1);
	case COL_TRAIN_S:
		return c->train_seconds;
	case COL_EVAL_S:
		return c->eval_seconds;
	case COL_TRAIN_CPU:
		return c->train_cpu;
	case COL_EVAL_CPU:
		return c->eval_cpu;
	case COL_PREDICT_S:
		v = json_object_get(c->eval, "predict_seconds_per_sample");
		return json_is_number(v) ? json_number_value(v) : NAN;
	}
	return NAN;
}

struct agg {
	int ok, failed;
	double mean[N_COLS], std[N_COLS];
	int n[N_COLS];
};

/* Mean and sample std (divisor n - 1; 0 for one seed) over the cells of
 * one PDE and method that finished; finite values only. */
static void aggregate(const struct bench *b, int p, int m, struct agg *a)
{
	memset(a, 0, sizeof *a);
	for (int k = 0; k < N_COLS; k++) {
		double s = 0, s2 = 0;
		int n = 0;
		for (int i = 0; i < b->n_cells; i++) {
			const struct bench_cell *c = &b->cells[i];
			if (c->p != p || c->m != m)
				continue;
			if (k == 0)
				c->state == BENCH_CELL_OK ? a->ok++ : a->failed++;
			if (c->state != BENCH_CELL_OK)
				continue;
			double v = col_value(c, &cols[k]);
			if (!isfinite(v))
				continue;
			s += v;
			n++;
		}
		double mean = n ? s / n : NAN;
		for (int i = 0; i < b->n_cells; i++) {
			const struct bench_cell *c = &b->cells[i];
			double v;
			if (c->p != p || c->m != m || c->state != BENCH_CELL_OK ||
			    !isfinite(v = col_value(c, &cols[k])))
				continue;
			s2 += (v - mean) * (v - mean);
		}
		a->n[k] = n;
		a->mean[k] = mean;
		a->std[k] = n > 1 ? sqrt(s2 / (n - 1)) : 0;
	}
}

static int n_failed(const struct bench *b)
{
	int f = 0;
	for (int i = 0; i < b->n_cells; i++)
		f += b->cells[i].state != BENCH_CELL_OK;
	return f;
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* ---- a growing text buffer ---- */
struct text {
	char *s;
	size_t n, cap;
	int oom;
};

static void tprintf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int k = vsnprintf(t->s ? t->s + t->n : NULL,
				  t->s ? t->cap - t->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			t->oom = 1;
			return;
		}
		if (t->s && t->n + (size_t)k < t->cap) {
			t->n += (size_t)k;
			return;
		}
		size_t cap = (t->cap ? 2 * t->cap : 4096) + (size_t)k;
		char *s = realloc(t->s, cap);
		if (!s) {
			t->oom = 1;
			return;
		}
		t->s = s;
		t->cap = cap;
	}
}

/* ---- results.json ---- */
static json_t *results_json(const struct bench *b)
{
	json_t *doc = json_object(), *pdes = json_array(), *cells = json_array();
	json_t *aggs = json_array();
	int failed = n_failed(b);
	json_object_set_new(doc, "schema", json_string("pno-bench/1"));
	json_object_set_new(doc, "name", json_string(b->name));
	json_object_set_new(doc, "config_path", json_string(b->config_path));
	json_object_set_new(doc, "pno_version", json_string(PNO_VERSION_STRING));
	json_object_set_new(doc, "complete", json_boolean(failed == 0));
	json_object_set_new(doc, "cells_total", json_integer(b->n_cells));
	json_object_set_new(doc, "cells_failed", json_integer(failed));
	json_object_set_new(doc, "wall_seconds", json_real(b->wall_seconds));
	json_object_set_new(doc, "jobs", json_integer(b->jobs));
	json_object_set_new(doc, "threads", json_integer(b->threads));
	json_object_set(doc, "config", b->cfg);
	for (int p = 0; p < b->n_pdes; p++) {
		const struct bench_pde *d = &b->pdes[p];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:f}", "label",
				      d->label, "pde", d->name, "data", d->data,
				      "data_blake2b", d->data_hash, "reused",
				      d->data_reused, "generate_seconds",
				      d->gen_seconds);
		if (o && !d->data_ok)
			json_object_set_new(o, "error", json_string(d->data_error));
		json_array_append_new(pdes, o);
	}
	for (int i = 0; i < b->n_cells; i++) {
		const struct bench_cell *c = &b->cells[i];
		char log[BENCH_PATH];
		if (snprintf(log, sizeof log, "%s/log.txt", c->dir) >=
		    (int)sizeof log)
			log[0] = '\0';
		json_t *o = json_pack(
			"{s:s, s:s, s:s, s:I, s:s, s:b, s:s, s:s, s:s}", "pde",
			b->pdes[c->p].label, "method", b->methods[c->m].label,
			"model", b->methods[c->m].model, "seed",
			(json_int_t)c->seed, "status",
			c->state == BENCH_CELL_OK ? "ok" : "failed", "reused",
			c->reused, "dir", c->dir, "log", log, "hash", c->hash);
		if (!o)
			continue;
		json_object_set_new(o, "train_seconds", num_or_null(c->train_seconds));
		json_object_set_new(o, "eval_seconds", num_or_null(c->eval_seconds));
		json_object_set_new(o, "train_cpu_seconds", num_or_null(c->train_cpu));
		json_object_set_new(o, "eval_cpu_seconds", num_or_null(c->eval_cpu));
		if (c->state == BENCH_CELL_OK) {
			json_object_set(o, "eval", c->eval);
			json_object_set_new(o, "rollout", c->rollout ?
					    json_incref(c->rollout) : json_null());
		} else {
			json_object_set_new(o, "failed_step", json_string(c->failed_step));
			json_object_set_new(o, "exit_code", json_integer(c->exit_code));
			json_object_set_new(o, "error", json_string(c->error));
			json_object_set_new(o, "eval", json_null());
		}
		json_array_append_new(cells, o);
	}
	for (int p = 0; p < b->n_pdes; p++)
		for (int m = 0; m < b->n_methods; m++) {
			struct agg a;
			aggregate(b, p, m, &a);
			json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:b}",
					      "pde", b->pdes[p].label, "method",
					      b->methods[m].label, "model",
					      b->methods[m].model, "seeds_ok",
					      a.ok, "seeds_failed", a.failed,
					      "complete", a.failed == 0);
			json_t *ms = json_object();
			for (int k = 0; k < N_COLS; k++)
				json_object_set_new(ms, cols[k].key, json_pack(
					"{s:o, s:o, s:i}", "mean",
					num_or_null(a.mean[k]), "std",
					a.n[k] ? num_or_null(a.std[k])
					       : json_null(),
					"n", a.n[k]));
			json_object_set_new(o, "metrics", ms);
			json_array_append_new(aggs, o);
		}
	json_object_set_new(doc, "pdes", pdes);
	json_object_set_new(doc, "cells", cells);
	json_object_set_new(doc, "aggregates", aggs);
	return doc;
}

/* ---- results.csv: one row per cell ---- */
static void csv_field(struct text *t, const char *s)
{
	tprintf(t, "\"");
	for (; *s; s++)
		tprintf(t, *s == '"' ? "\"\"" : "%c", *s);
	tprintf(t, "\"");
}

static void results_csv(const struct bench *b, struct text *t)
{
	tprintf(t, "pde,method,model,seed,status,failed_step");
	for (int k = 0; k < N_COLS; k++)
		tprintf(t, ",%s", cols[k].key);
	tprintf(t, ",error\n");
	for (int i = 0; i < b->n_cells; i++) {
		const struct bench_cell *c = &b->cells[i];
		int ok = c->state == BENCH_CELL_OK;
		tprintf(t, "%s,%s,%s,%llu,%s,%s", b->pdes[c->p].label,
			b->methods[c->m].label, b->methods[c->m].model,
			(unsigned long long)c->seed, ok ? "ok" : "failed",
			ok ? "" : c->failed_step);
		for (int k = 0; k < N_COLS; k++) {
			double v = ok ? col_value(c, &cols[k]) : NAN;
			if (isfinite(v))
				tprintf(t, ",%.9g", v);
			else
				tprintf(t, ",");
		}
		tprintf(t, ",");
		csv_field(t, ok ? "" : c->error);
		tprintf(t, "\n");
	}
}

/* "mean ± std" (std omitted for one seed), "n/a" without values */
static void cell_text(char *out, size_t size, const struct agg *a, int k,
		      const char *pm)
{
	char m[32], s[32];
	if (!a->n[k]) {
		snprintf(out, size, "n/a");
		return;
	}
	snprintf(m, sizeof m, cols[k].fmt, a->mean[k]);
	if (a->n[k] < 2) {
		snprintf(out, size, "%s", m);
		return;
	}
	snprintf(s, sizeof s, cols[k].sfmt, a->std[k]);
	snprintf(out, size, "%s%s%s", m, pm, s);
}

static void failed_list(const struct bench *b, struct text *t, int tex)
{
	for (int i = 0; i < b->n_cells; i++) {
		const struct bench_cell *c = &b->cells[i];
		if (c->state == BENCH_CELL_OK)
			continue;
		if (tex) {
			tprintf(t, "%% failed: %s/%s/seed%llu (%s)\n",
				b->pdes[c->p].label, b->methods[c->m].label,
				(unsigned long long)c->seed, c->failed_step);
			continue;
		}
		tprintf(t, "- `%s/%s/seed%llu`: %s failed (exit %d): %s — "
			"log `%s/log.txt`\n", b->pdes[c->p].label,
			b->methods[c->m].label, (unsigned long long)c->seed,
			c->failed_step, c->exit_code, c->error, c->dir);
	}
}

static void results_md(const struct bench *b, struct text *t)
{
	int failed = n_failed(b);
	tprintf(t, "# Benchmark: %s\n\n", b->name);
	if (failed)
		tprintf(t, "**INCOMPLETE: %d of %d cells failed.** Rows marked "
			"† average only the seeds that finished; rows with no "
			"finished seed show n/a. Failed cells:\n\n", failed,
			b->n_cells);
	if (failed) {
		failed_list(b, t, 0);
		tprintf(t, "\n");
	}
	tprintf(t, "| PDE | Method");
	for (int k = 0; k < N_COLS; k++)
		if (cols[k].md)
			tprintf(t, " | %s", cols[k].md);
	tprintf(t, " | Seeds |\n|---|---");
	for (int k = 0; k < N_COLS; k++)
		if (cols[k].md)
			tprintf(t, "|---:");
	tprintf(t, "|---:|\n");
	for (int p = 0; p < b->n_pdes; p++)
		for (int m = 0; m < b->n_methods; m++) {
			struct agg a;
			aggregate(b, p, m, &a);
			tprintf(t, "| %s | %s", b->pdes[p].label,
				b->methods[m].label);
			for (int k = 0; k < N_COLS; k++) {
				char s[80];
				if (!cols[k].md)
					continue;
				cell_text(s, sizeof s, &a, k, " ± ");
				tprintf(t, " | %s", s);
			}
			tprintf(t, " | %d/%d%s |\n", a.ok, a.ok + a.failed,
				!a.failed ? "" : a.ok ? " †" : " FAILED");
		}
	tprintf(t, "\nMean ± sample standard deviation over seeds. Evaluated "
		"on the %s split with %d predictive samples per input; "
		"coverage and width of the central 90%% interval; train s is "
		"the wall time of `pno train`, predict s/sample the time per "
		"predictive sample in `pno eval` (%d thread%s per process). "
		"Every metric of every cell: results.json.\n", b->eval_split,
		b->eval_samples, b->threads, b->threads > 1 ? "s" : "");
}

static void tex_escape(struct text *t, const char *s)
{
	for (; *s; s++) {
		if (strchr("&%$#_{}", *s))
			tprintf(t, "\\%c", *s);
		else if (*s == '~')
			tprintf(t, "\\textasciitilde{}");
		else if (*s == '^')
			tprintf(t, "\\textasciicircum{}");
		else if (*s == '\\')
			tprintf(t, "\\textbackslash{}");
		else
			tprintf(t, "%c", *s);
	}
}

static void results_tex(const struct bench *b, struct text *t)
{
	int failed = n_failed(b);
	tprintf(t, "%% generated by pno bench (pno %s); needs \\usepackage"
		"{booktabs}\n", PNO_VERSION_STRING);
	failed_list(b, t, 1);
	tprintf(t, "\\begin{table}[t]\n\\centering\n\\caption{");
	tex_escape(t, b->name);
	tprintf(t, ": mean $\\pm$ std over seeds, %s split, %d samples per "
		"input.", b->eval_split, b->eval_samples);
	if (failed)
		tprintf(t, " \\textbf{Incomplete: %d of %d cells failed}; "
			"$^\\dagger$ averages only the seeds that finished.",
			failed, b->n_cells);
	tprintf(t, "}\n\\begin{tabular}{ll");
	for (int k = 0; k < N_COLS; k++)
		if (cols[k].tex)
			tprintf(t, "r");
	tprintf(t, "}\n\\toprule\nPDE & Method");
	for (int k = 0; k < N_COLS; k++)
		if (cols[k].tex)
			tprintf(t, " & %s", cols[k].tex);
	tprintf(t, " \\\\\n\\midrule\n");
	for (int p = 0; p < b->n_pdes; p++) {
		if (p)
			tprintf(t, "\\midrule\n");
		for (int m = 0; m < b->n_methods; m++) {
			struct agg a;
			aggregate(b, p, m, &a);
			tex_escape(t, b->pdes[p].label);
			tprintf(t, " & ");
			tex_escape(t, b->methods[m].label);
			if (a.failed)
				tprintf(t, "$^\\dagger$");
			for (int k = 0; k < N_COLS; k++) {
				char s[80];
				if (!cols[k].tex)
					continue;
				cell_text(s, sizeof s, &a, k, " $\\pm$ ");
				tprintf(t, " & %s", s);
			}
			tprintf(t, " \\\\\n");
		}
	}
	tprintf(t, "\\bottomrule\n\\end{tabular}\n\\end{table}\n");
}

int bench_reports(const struct bench *b)
{
	char path[BENCH_PATH];
	int rc = 0;
	json_t *doc = results_json(b);
	char *js = doc ? bench_json_text(doc, JSON_INDENT(1) |
					 JSON_REAL_PRECISION(10)) : NULL;
	json_decref(doc);
	snprintf(path, sizeof path, "%s/results.json", b->out);
	struct text t = {0};
	if (js)
		tprintf(&t, "%s\n", js);
	free(js);
	if (!js || t.oom || bench_write_text(path, t.s)) {
		fprintf(stderr, "pno bench: %s not written\n", path);
		rc = 1;
	}
	void (*writers[])(const struct bench *, struct text *) = {
		results_csv, results_md, results_tex};
	const char *names[] = {"results.csv", "results.md", "results.tex"};
	for (int i = 0; i < 3; i++) {
		free(t.s);
		memset(&t, 0, sizeof t);
		writers[i](b, &t);
		snprintf(path, sizeof path, "%s/%s", b->out, names[i]);
		if (t.oom || bench_write_text(path, t.s)) {
			fprintf(stderr, "pno bench: %s not written\n", path);
			rc = 1;
		}
		if (i == 1 && !t.oom)
			fputs(t.s, stdout);
	}
	free(t.s);
	return rc;
}
