/* pno bench: the figures, in DIR/plots. Per PDE: one test input's fields
 * for each method (input, truth, predictive mean, std, |error|), drawn
 * from the model of the method's first finished seed through the library
 * (pno_model_predict, the same samples and seed as its eval); a
 * reliability diagram and coverage-vs-nominal curves with every method
 * (the eval documents' calibration and coverage, averaged over seeds).
 *
 * Rollouts: for a PDE with a "rollout" entry every cell runs a third
 * step, `pno rollout --json rollout.json`, and plot_rollouts() draws the
 * per-step "rel_l2" and "mean_std" of every method. */
#include "bench.h"
#include "cli.h"

#include "pno/core.h"
#include "pno/io.h"
#include "pno/model.h"
#include "pno/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LEVELS 32
#define PNO_ROLLOUT_PLOT_STEPS 4096

/* The eval documents' (level, observed) pairs of array `key` ("calib_obs"
 * or "coverage") averaged over the method's finished seeds. Returns the
 * number of levels (0: no finished seed). */
static int mean_curve(const struct bench *b, int p, int m, const char *key,
		      double *levels, double *obs)
{
	int n_levels = 0, n = 0;
	double sum[MAX_LEVELS] = {0};
	for (int i = 0; i < b->n_cells; i++) {
		const struct bench_cell *c = &b->cells[i];
		if (c->p != p || c->m != m || c->state != BENCH_CELL_OK)
			continue;
		json_t *arr = json_object_get(json_object_get(c->eval, "metrics"), key);
		size_t k;
		json_t *e;
		int nk = (int)json_array_size(arr);
		if (nk < 1 || nk > MAX_LEVELS || (n_levels && nk != n_levels))
			continue;
		int ok = 1;
		json_array_foreach(arr, k, e)
		{
			json_t *l = json_object_get(e, "level");
			json_t *o = json_object_get(e, "observed");
			if (!json_is_number(l) || !json_is_number(o))
				ok = 0;
		}
		if (!ok)
			continue;
		json_array_foreach(arr, k, e)
		{
			levels[k] = json_number_value(json_object_get(e, "level"));
			sum[k] += json_number_value(json_object_get(e, "observed"));
		}
		n_levels = nk;
		n++;
	}
	for (int k = 0; k < n_levels; k++)
		obs[k] = sum[k] / n;
	return n ? n_levels : 0;
}

static int plot_calibration(const struct bench *b, int p, const char *dir)
{
	const char *names[PNO_PLOT_MAX_SERIES];
	double lv[MAX_LEVELS], obs[PNO_PLOT_MAX_SERIES * MAX_LEVELS];
	const char *keys[2] = {"calib_obs", "coverage"};
	int failed = 0;
	for (int f = 0; f < 2; f++) {
		int n = 0, nl = 0;
		for (int m = 0; m < b->n_methods && n < PNO_PLOT_MAX_SERIES; m++) {
			double l[MAX_LEVELS];
			int k = mean_curve(b, p, m, keys[f], l, obs + n * MAX_LEVELS);
			if (!k || (nl && k != nl))
				continue;
			nl = k;
			memcpy(lv, l, sizeof l);
			names[n++] = b->methods[m].label;
		}
		if (!n)
			continue;
		/* pack rows of MAX_LEVELS into rows of nl */
		for (int i = 1; i < n; i++)
			memmove(obs + i * nl, obs + i * MAX_LEVELS, nl * sizeof *obs);
		char path[BENCH_PATH + 160], title[256];
		snprintf(path, sizeof path, "%s/%s_%s.png", dir,
			 b->pdes[p].label, f ? "coverage" : "reliability");
		snprintf(title, sizeof title, "%s: %s", b->pdes[p].label,
			 f ? "coverage of central intervals" :
			     "quantile calibration");
		enum pno_status s = f ?
			pno_plot_coverage(path, title, n, names, lv, obs, nl, NULL) :
			pno_plot_reliability(path, title, n, names, lv, obs, nl, NULL);
		if (s != PNO_STATUS_OK) {
			fprintf(stderr, "pno bench: %s: %s\n", path, pno_last_error());
			failed++;
		}
	}
	return failed;
}

/* One test input's fields for every method with a finished seed. */
static int plot_fields(const struct bench *b, int p, const char *dir)
{
	const struct bench_pde *pd = &b->pdes[p];
	struct pno_dataset d = {0};
	struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
	int failed = 0;
	o.t_in = pd->t_in;
	o.t_out = pd->t_out;
	enum pno_status s = pno_dataset_read(&d, pd->data, &o);
	if (s != PNO_STATUS_OK) {
		fprintf(stderr, "pno bench: plots of %s: %s\n", pd->label,
			pno_last_error());
		return 1;
	}
	size_t P = (size_t)d.X * d.Y;
	for (int m = 0; m < b->n_methods; m++) {
		const struct bench_cell *c = NULL;
		for (int i = 0; i < b->n_cells && !c; i++)
			if (b->cells[i].p == p && b->cells[i].m == m &&
			    b->cells[i].state == BENCH_CELL_OK)
				c = &b->cells[i];
		if (!c)
			continue;
		int first = (int)json_integer_value(json_object_get(c->eval, "first"));
		int count = (int)json_integer_value(json_object_get(c->eval, "count"));
		int idx = first + (pd->plot_index < count ? pd->plot_index : 0);
		if (idx < 0 || idx >= d.N) {	/* a --pairs-step model */
			if (!b->quiet)
				fprintf(stderr, "pno bench: no field figure "
					"for %s/%s: its test split (input %d) "
					"counts step pairs, not the file's %d "
					"samples\n", pd->label,
					b->methods[m].label, idx, d.N);
			continue;
		}
		char model[BENCH_PATH + 32], path[BENCH_PATH + 160], title[256];
		snprintf(model, sizeof model, "%s/model.safetensors", c->dir);
		snprintf(path, sizeof path, "%s/%s_%s_fields.png", dir,
			 pd->label, b->methods[m].label);
		snprintf(title, sizeof title, "%s, %s (seed %llu): test input %d",
			 pd->label, b->methods[m].label,
			 (unsigned long long)c->seed, idx);
		struct pno_model md;
		struct pno_prediction pr = {0};
		int S = b->eval_samples;
		s = pno_model_load(&md, model, d.X, d.Y, S < 64 ? S : 64);
		int stochastic = 0;
		if (s == PNO_STATUS_OK) {
			stochastic = md.stochastic;
			s = pno_model_predict(&md, d.in + (size_t)idx * d.Cin * P,
					      S, c->seed, NULL, 0, &pr);
			pno_model_free(&md);
		}
		if (s == PNO_STATUS_OK) {
			/* channel 0 of input and output; a deterministic
			 * method has no std panel */
			struct pno_plot_uq f = {
				d.in + (size_t)idx * d.Cin * P,
				d.out + (size_t)idx * d.Cout * P, pr.mean,
				stochastic ? pr.std : NULL};
			s = pno_plot_uq(path, title, d.dims, d.X, d.Y, &f, NULL);
		}
		pno_prediction_free(&pr);
		if (s != PNO_STATUS_OK) {
			fprintf(stderr, "pno bench: %s: %s\n", path,
				pno_last_error());
			failed++;
		}
	}
	pno_dataset_free(&d);
	return failed;
}

/* Rollout error and std growth: per method, the per-step "rel_l2" and
 * "mean_std" of its first finished seed's rollout.json, one figure each. */
static int plot_rollouts(const struct bench *b, int p, const char *dir)
{
	static const char *const keys[2] = {"rel_l2", "mean_std"};
	static const char *const ylab[2] = {"relative L2 of the mean",
					    "mean predictive std"};
	const char *names[PNO_PLOT_MAX_SERIES];
	static double x[PNO_ROLLOUT_PLOT_STEPS], y[PNO_PLOT_MAX_SERIES * PNO_ROLLOUT_PLOT_STEPS];
	int failed = 0;
	if (!b->pdes[p].rollout)
		return 0;
	for (int f = 0; f < 2; f++) {
		int n = 0, K = 0, pos = 1;
		for (int m = 0; m < b->n_methods && n < PNO_PLOT_MAX_SERIES; m++) {
			const struct bench_cell *c = NULL;
			for (int i = 0; i < b->n_cells && !c; i++)
				if (b->cells[i].p == p && b->cells[i].m == m &&
				    b->cells[i].state == BENCH_CELL_OK &&
				    b->cells[i].rollout)
					c = &b->cells[i];
			json_t *ps = c ? json_object_get(c->rollout, "per_step") : NULL;
			int k = (int)json_array_size(ps);
			if (k < 1 || k > PNO_ROLLOUT_PLOT_STEPS || (K && k != K))
				continue;
			int ok = 1;
			for (int i = 0; i < k; i++) {
				json_t *v = json_object_get(json_array_get(ps, (size_t)i), keys[f]);
				if (!json_is_number(v)) {
					ok = 0;
					break;
				}
				y[n * k + i] = json_number_value(v);
				x[i] = i + 1;
				pos &= y[n * k + i] > 0;
			}
			if (!ok)
				continue;
			K = k;
			names[n++] = b->methods[m].label;
		}
		if (!n)
			continue;
		char path[BENCH_PATH + 160], title[256];
		snprintf(path, sizeof path, "%s/%s_rollout_%s.png", dir,
			 b->pdes[p].label, f ? "std" : "error");
		snprintf(title, sizeof title, "%s: rollout, %s", b->pdes[p].label,
			 ylab[f]);
		enum pno_status s = pno_plot_curves(path, title, "step", ylab[f],
						    n, names, x, y, K, pos, NULL);
		if (s != PNO_STATUS_OK) {
			fprintf(stderr, "pno bench: %s: %s\n", path, pno_last_error());
			failed++;
		}
	}
	return failed;
}

int bench_plots(const struct bench *b)
{
	char dir[BENCH_PATH + 16];
	int failed = 0;
	snprintf(dir, sizeof dir, "%s/plots", b->out);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "pno bench: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	pno_threads_set(b->threads);
	for (int p = 0; p < b->n_pdes; p++) {
		if (!b->pdes[p].data_ok)
			continue;
		failed += plot_fields(b, p, dir);
		failed += plot_calibration(b, p, dir);
		failed += plot_rollouts(b, p, dir);
	}
	if (!b->quiet)
		fprintf(stderr, "pno bench: figures in %s%s\n", dir,
			failed ? " (some failed, see above)" : "");
	return failed;
}
