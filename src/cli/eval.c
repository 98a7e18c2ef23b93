/* pno eval and pno calibrate: a model's predictive distribution over a
 * split of a dataset, scored (eval) or conformally recalibrated
 * (calibrate). */
#include "cli.h"
#include "flags.h"

#include "pno/conformal.h"
#include "pno/io.h"
#include "pno/metrics.h"
#include "pno/model.h"
#include "pno/plot.h"

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- what both commands share: model, data, split ---- */

struct evalset {
	struct pno_model m;
	struct pno_dataset d;
	int first, count;	/* the split: samples [first, first + count) */
	char split[16];		/* the split actually used */
	char pde[64];		/* the model's training PDE ("" unknown) */
};

/* The model's training provenance (a JSON object stored as a string). */
struct provenance {
	int known;
	int ntrain, nval, ntest, t_in, t_out, pairs_step;
	char hash[65], pde[64];
};

/* The provenance of the model file at path (pv->known = 0 if it records
 * none); the file's other errors are left to the model loader. */
static void read_provenance(const char *path, struct provenance *pv)
{
	struct pno_safetensors st;
	memset(pv, 0, sizeof *pv);
	pv->t_out = -1;
	if (pno_safetensors_read(&st, path) != PNO_STATUS_OK)
		return;
	json_t *md = json_loads(st.metadata_json, 0, NULL);
	pno_safetensors_free(&st);
	const char *text = json_string_value(json_object_get(md, "provenance"));
	json_t *o = text ? json_loads(text, 0, NULL) : NULL;
	json_decref(md);
	if (!json_is_object(o)) {
		json_decref(o);
		return;
	}
	const char *ints[] = {"ntrain", "nval", "ntest", "t_in", "t_out",
			      "pairs_step"};
	int *iv[] = {&pv->ntrain, &pv->nval, &pv->ntest, &pv->t_in, &pv->t_out,
		     &pv->pairs_step};
	pv->known = 1;
	for (int i = 0; i < 6; i++) {
		json_t *v = json_object_get(o, ints[i]);
		if (json_is_integer(v))
			*iv[i] = (int)json_integer_value(v);
		else if (i < 3)
			pv->known = 0;
	}
	const char *h = json_string_value(json_object_get(o, "data_blake2b"));
	const char *p = json_string_value(json_object_get(o, "pde"));
	snprintf(pv->hash, sizeof pv->hash, "%s", h ? h : "");
	snprintf(pv->pde, sizeof pv->pde, "%s", p ? p : "");
	json_decref(o);
}

/* Load model and data, check they belong together and pick the split:
 * "auto" is `dflt` (test or val) when the data file is the one the model
 * was trained on (same BLAKE2b), else every sample of the file. Returns 0,
 * 1 (runtime error) or 2 (usage error), having printed why. */
static int evalset_open(struct evalset *es, const char *cmd, const char *model,
			const char *data, const char *split, const char *dflt,
			int max_n, int t_in, int t_out, int Bmax)
{
	struct stat sb;
	struct provenance pv;
	enum pno_status s;
	memset(es, 0, sizeof *es);
	if (stat(model, &sb) != 0 || stat(data, &sb) != 0) {
		fprintf(stderr, "pno %s: %s: no such file\n", cmd,
			stat(model, &sb) != 0 ? model : data);
		return 2;
	}
	if (strcmp(split, "auto") && strcmp(split, "train") &&
	    strcmp(split, "val") && strcmp(split, "test") &&
	    strcmp(split, "all")) {
		fprintf(stderr, "pno %s: --split %s: expected auto, train, val, "
			"test or all\n", cmd, split);
		return 2;
	}
	read_provenance(model, &pv);
	struct pno_dataset_opts dopt = PNO_DATASET_OPTS_DEFAULT;
	dopt.t_in = t_in >= 0 ? t_in : pv.t_in;
	dopt.t_out = t_out >= -1 ? t_out : pv.t_out;
	/* a one-step model (pno train --pairs-step) is scored on every pair
	 * (t, t + k) of the trajectories, as it was trained; its recorded
	 * split sizes count those pairs */
	if (pv.pairs_step > 0 && t_in < 0 && t_out < -1)
		dopt.pairs_step = pv.pairs_step;
	if ((s = pno_dataset_read(&es->d, data, &dopt)) != PNO_STATUS_OK)
		return runtime_error(cmd, s);
	snprintf(es->pde, sizeof es->pde, "%s", pv.pde);
	if (pv.pde[0] && strcmp(es->d.pde, "unknown") &&
	    strcmp(pv.pde, es->d.pde)) {
		fprintf(stderr, "pno %s: %s was trained on %s data; %s holds "
			"%s\n", cmd, model, pv.pde, data, es->d.pde);
		return 2;
	}
	char hash[65] = "";
	int same = pv.known && pv.hash[0] && !file_hash(data, hash) &&
		   !strcmp(hash, pv.hash);
	const char *use = strcmp(split, "auto") ? split : same ? dflt : "all";
	if (strcmp(use, "all") && !same) {
		fprintf(stderr, "pno %s: --split %s needs the file %s was "
			"trained on (%s is another file, or the model does not "
			"record its data): use --split all\n", cmd, use, model,
			data);
		return 2;
	}
	if (!strcmp(use, "all"))
		es->first = 0, es->count = es->d.N;
	else if (!strcmp(use, "train"))
		es->first = 0, es->count = pv.ntrain;
	else if (!strcmp(use, "val"))
		es->first = pv.ntrain, es->count = pv.nval;
	else
		es->first = es->d.N - pv.ntest, es->count = pv.ntest;
	snprintf(es->split, sizeof es->split, "%s", use);
	if (es->first < 0 || es->first + es->count > es->d.N) {
		fprintf(stderr, "pno %s: the %s split recorded in %s (%d + %d) "
			"does not fit %s (%d samples)\n", cmd, use, model,
			es->first, es->count, data, es->d.N);
		return 2;
	}
	if (max_n > 0 && es->count > max_n)
		es->count = max_n;
	if (es->count < 1) {
		fprintf(stderr, "pno %s: the %s split of %s is empty\n", cmd,
			use, data);
		return 2;
	}
	s = pno_model_load(&es->m, model, es->d.X, es->d.Y, Bmax);
	if (s != PNO_STATUS_OK)
		return runtime_error(cmd, s);
	s = pno_model_check_shape(&es->m, es->d.dims, es->d.X, es->d.Y,
				  es->d.Cin, es->d.Cout, data);
	if (s != PNO_STATUS_OK) {
		fprintf(stderr, "pno %s: %s\n", cmd, pno_last_error());
		return 2;
	}
	return 0;
}

static void evalset_close(struct evalset *es)
{
	pno_model_free(&es->m);
	pno_dataset_free(&es->d);
}

static const float *es_in(const struct evalset *es, int i)
{
	size_t n = (size_t)es->d.Cin * es->d.X * es->d.Y;
	return es->d.in + (size_t)(es->first + i) * n;
}

static const float *es_out(const struct evalset *es, int i)
{
	size_t n = (size_t)es->d.Cout * es->d.X * es->d.Y;
	return es->d.out + (size_t)(es->first + i) * n;
}

/* Seed of function i: independent draws per function, reproducible. */
static uint64_t fn_seed(uint64_t seed, int i)
{
	return pno_rng_u64(seed, 0xE7A1000000ull, (uint64_t)i);
}

static int want_help(int argc, char **argv)
{
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

/* ---- pno eval ---- */

static const char *eval_usage =
	"usage: pno eval --model M.safetensors --data FILE.h5 [--samples S]\n"
	"                [--split auto|train|val|test|all] [--json OUT.json]\n"
	"\n"
	"Score a model's predictive distribution on a split of a dataset:\n"
	"accuracy (relative L2, RMSE, MAE, max error), proper scores (Gaussian\n"
	"NLL, CRPS, energy score), coverage and width of central intervals,\n"
	"interval scores, calibration error, spread-skill, the error and std\n"
	"spectra, and the uncertainty decomposition where the method has one.\n"
	"A conformally calibrated model (pno calibrate) is scored before and\n"
	"after its calibration. --split auto is the test split when the data\n"
	"is the model's training file, else every sample of the file.\n"
	"Metric definitions: docs/eval/metrics.md.\n";

static void row(const char *name, double a, const double *b)
{
	if (b)
		printf("  %-26s %12.5g %12.5g\n", name, a, *b);
	else
		printf("  %-26s %12.5g\n", name, a);
}

static void print_table(const struct pno_metrics *r,
			const struct pno_metrics *c)
{
	char name[64];
	if (c)
		printf("  %-26s %12s %12s\n", "metric", "model", "calibrated");
#define ROW(label, f) row(label, r->f, c ? &c->f : NULL)
	ROW("relative L2", rel_l2);
	ROW("RMSE", rmse);
	ROW("MAE", mae);
	ROW("max error", max_err);
	ROW("Gaussian NLL", nll);
	ROW("CRPS", crps);
	if (r->has_crps_gauss)
		ROW("CRPS (Gaussian closed form)", crps_gauss);
	ROW("energy score", energy);
	for (int k = 0; k < PNO_METRICS_NCOV; k++) {
		snprintf(name, sizeof name, "coverage %g%%",
			 100 * PNO_METRICS_COVERAGE[k]);
		ROW(name, coverage[k]);
		snprintf(name, sizeof name, "width %g%%",
			 100 * PNO_METRICS_COVERAGE[k]);
		ROW(name, width[k]);
	}
	for (int k = 0; k < PNO_METRICS_NIS; k++) {
		snprintf(name, sizeof name, "interval score a=%g",
			 PNO_METRICS_IS_ALPHA[k]);
		ROW(name, interval_score[k]);
	}
	ROW("sharpness (mean std)", sharpness);
	ROW("calibration error", calib_error);
	ROW("spread-skill ratio", spread_skill);
	ROW("corr(std, |error|)", std_err_corr);
	if (r->has_decomposition) {
		ROW("aleatoric variance", aleatoric);
		ROW("epistemic variance", epistemic);
		ROW("total variance", total);
	}
#undef ROW
}

/* Write text atomically to path. */
static int write_text(const char *cmd, const char *path, const char *text,
		      int force)
{
	struct pno_atomic_file f;
	enum pno_status s = pno_atomic_open(&f, path, force);
	if (s != PNO_STATUS_OK)
		return runtime_error(cmd, s);
	if (fputs(text, f.fp) == EOF || fputc('\n', f.fp) == EOF) {
		pno_atomic_abort(&f);
		fprintf(stderr, "pno %s: %s: write failed\n", cmd, path);
		return 1;
	}
	if ((s = pno_atomic_commit(&f)) != PNO_STATUS_OK)
		return runtime_error(cmd, s);
	return 0;
}

/* The summary `--record` stores in the model ("evaluation"): what the
 * quality gates judge (src/serve/gate.h). NULL on allocation failure. */
/* A finite number as a JSON real, anything else as null (jansson refuses
 * NaN and Inf: a spread-skill ratio of a perfect prediction is 0/0). */
static json_t *num(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static char *eval_summary(const struct evalset *es, const char *hash,
			  int samples, uint64_t seed,
			  const struct pno_metrics *r, const struct pno_metrics *c)
{
	json_t *o = json_pack(
		"{s:s,s:s,s:s%,s:s,s:i,s:i,s:i,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,"
		"s:o,s:o}",
		"schema", "pno-eval-summary/1", "data_blake2b", hash, "pde",
		es->d.pde, strlen(es->d.pde), "split", es->split, "first",
		es->first, "count", es->count, "samples", samples, "seed",
		(json_int_t)seed, "rel_l2", num(r->rel_l2), "rmse",
		num(r->rmse), "nll", num(r->nll), "crps", num(r->crps),
		"energy", num(r->energy), "coverage90", num(r->coverage[2]),
		"width90", num(r->width[2]), "calib_error",
		num(r->calib_error), "spread_skill", num(r->spread_skill));
	if (o && c) {
		json_t *k = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "rel_l2",
				      num(c->rel_l2), "nll", num(c->nll),
				      "crps", num(c->crps), "coverage90",
				      num(c->coverage[2]), "width90",
				      num(c->width[2]), "calib_error",
				      num(c->calib_error));
		if (!k || json_object_set_new(o, "calibrated", k)) {
			json_decref(o);
			o = NULL;
		}
	}
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
				    JSON_REAL_PRECISION(9)) : NULL;
	json_decref(o);
	return text;
}

/* Free text from jansson (its allocator is the library's). */
static void json_text_free(char *text)
{
	json_malloc_t jm;
	json_free_t jf;
	if (!text)
		return;
	json_get_alloc_funcs(&jm, &jf);
	jf(text);
}

/* The figures of --plots DIR: the first input's fields, the reliability
 * diagram, coverage against nominal, and the error / std spectra. */
static int eval_plots(const char *dir, const struct evalset *es,
		      const float *mean0, const float *std0,
		      const struct pno_metrics *r, const struct pno_metrics *c)
{
	char path[4096], title[256];
	enum pno_status s;
	const char *names[2] = {es->m.method, "calibrated"};
	int nm = c ? 2 : 1;
	double obs[2 * PNO_METRICS_NCAL], cov[2 * PNO_METRICS_NCOV];
	for (int j = 0; j < PNO_METRICS_NCAL; j++) {
		obs[j] = r->calib_obs[j];
		if (c)
			obs[PNO_METRICS_NCAL + j] = c->calib_obs[j];
	}
	for (int k = 0; k < PNO_METRICS_NCOV; k++) {
		cov[k] = r->coverage[k];
		if (c)
			cov[PNO_METRICS_NCOV + k] = c->coverage[k];
	}
	struct pno_plot_uq uq = {es_in(es, 0), es_out(es, 0), mean0, std0};
	snprintf(path, sizeof path, "%s/fields.png", dir);
	snprintf(title, sizeof title, "%s: %s input %d (channel 0)",
		 es->m.method, es->d.pde, es->first);
	s = pno_plot_uq(path, title, es->d.dims, es->d.X, es->d.Y, &uq, NULL);
	if (s == PNO_STATUS_OK) {
		snprintf(path, sizeof path, "%s/reliability.png", dir);
		s = pno_plot_reliability(path, "reliability", nm, names,
					 PNO_METRICS_CAL, obs, PNO_METRICS_NCAL,
					 NULL);
	}
	if (s == PNO_STATUS_OK) {
		snprintf(path, sizeof path, "%s/coverage.png", dir);
		s = pno_plot_coverage(path, "central interval coverage", nm,
				      names, PNO_METRICS_COVERAGE, cov,
				      PNO_METRICS_NCOV, NULL);
	}
	if (s == PNO_STATUS_OK && r->n_shells > 1) {
		int n = r->n_shells;
		double *x = malloc((size_t)n * sizeof *x);
		double *y = malloc(2 * (size_t)n * sizeof *y);
		int pos = 1;
		if (!x || !y) {
			free(x), free(y);
			fprintf(stderr, "pno eval: out of memory\n");
			return 1;
		}
		for (int k = 0; k < n; k++) {
			x[k] = k;
			y[k] = r->err_spectrum[k];
			y[n + k] = r->std_spectrum[k];
			pos &= y[k] > 0 && y[n + k] > 0;
		}
		const char *sn[2] = {"error", "std"};
		snprintf(path, sizeof path, "%s/spectrum.png", dir);
		s = pno_plot_curves(path, "energy by wavenumber shell",
				    "shell |k|", pos ? "energy (log)" : "energy",
				    2, sn, x, y, n, pos, NULL);
		free(x), free(y);
	}
	if (s != PNO_STATUS_OK)
		return runtime_error("eval", s);
	return 0;
}

int cmd_eval(int argc, char **argv)
{
	const char *model = NULL, *data = NULL, *json = NULL, *plots = NULL;
	const char *split = "auto";
	int samples = 100, threads = 0, max_n = 0, force = 0, record = 0;
	int t_in = -1, t_out = -2;
	uint64_t seed = 0;
	struct flag f[] = {
		{"model", FLAG_STRING, &model, 0, 0, "model file (any method)", 1, 0},
		{"data", FLAG_STRING, &data, 0, 0, "dataset (HDF5)", 1, 0},
		{"samples", FLAG_INT, &samples, 1, 10000, "samples per input", 0, 0},
		{"seed", FLAG_U64, &seed, 0, 0, "random seed", 0, 0},
		{"split", FLAG_STRING, &split, 0, 0, "auto, train, val, test or all", 0, 0},
		{"max-samples", FLAG_INT, &max_n, 0, 1 << 30, "score at most this many inputs of the split (0: all)", 0, 0},
		{"t-in", FLAG_INT, &t_in, 0, 1 << 20, "time series: input step (default: the model's)", 0, 0},
		{"t-out", FLAG_INT, &t_out, -1, 1 << 20, "time series: output step (default: the model's)", 0, 0},
		{"json", FLAG_STRING, &json, 0, 0, "write every metric to this JSON file", 0, 0},
		{"plots", FLAG_STRING, &plots, 0, 0, "write PNG figures into this directory", 0, 0},
		{"record", FLAG_BOOL, &record, 0, 0, "store the summary in the model file (for quality gates)", 0, 0},
		{"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)", 0, 0},
		{"force", FLAG_BOOL, &force, 0, 0, "overwrite an existing --json", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only the summary line", 0, 0},
	};
	if (want_help(argc, argv)) {
		printf("%s\noptions:\n", eval_usage);
		flags_help(stdout, f, NF(f));
		return 0;
	}
	if (flags_parse("eval", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	if (json && check_out_path("eval", json, force))
		return 2;
	struct stat sb;
	if (plots && (stat(plots, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
		      access(plots, W_OK) != 0)) {
		fprintf(stderr, "pno eval: --plots %s: not a writable "
			"directory\n", plots);
		return 2;
	}
	pno_threads_set(threads);

	static struct evalset es;
	struct pno_metrics_acc *acc = NULL, *acc_cal = NULL;
	struct pno_prediction p = {0};
	static struct pno_metrics r, rc_;
	char *mj = NULL, *cj = NULL, *conf = NULL, *doc = NULL;
	float *mean0 = NULL, *std0 = NULL;
	enum pno_status s;
	int rc = evalset_open(&es, "eval", model, data, split, "test", max_n,
			      t_in, t_out, samples < 64 ? samples : 64);
	if (rc)
		goto done;
	rc = 1;
	int cal = es.m.conformal.present;
	s = pno_metrics_new(&acc, es.d.Cout, es.d.dims, es.d.X, es.d.Y,
			    samples);
	if (s == PNO_STATUS_OK && cal)
		s = pno_metrics_new(&acc_cal, es.d.Cout, es.d.dims, es.d.X,
				    es.d.Y, samples);
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("eval", s);
		goto done;
	}
	es.m.use_conformal = 0;
	double t_pred = 0;
	for (int i = 0; i < es.count; i++) {
		double t0 = cli_now();
		s = pno_model_predict(&es.m, es_in(&es, i), samples,
				      fn_seed(seed, i), NULL, 0, &p);
		t_pred += cli_now() - t0;
		struct pno_metrics_pred mp = {
			p.S, p.samples, p.mean, p.std, p.gauss_mu,
			p.gauss_sigma, p.aleatoric, p.epistemic};
		if (s == PNO_STATUS_OK)
			s = pno_metrics_add(acc, es_out(&es, i), &mp);
		if (s == PNO_STATUS_OK && i == 0 && plots) {
			size_t n = (size_t)p.C * p.P * sizeof(float);
			mean0 = malloc(n), std0 = malloc(n);
			if (!mean0 || !std0)
				s = PNO_STATUS_NOMEM;
			else
				memcpy(mean0, p.mean, n), memcpy(std0, p.std, n);
		}
		if (s == PNO_STATUS_OK && cal) {
			pno_conformal_apply(&es.m.conformal, &p);
			s = pno_metrics_add(acc_cal, es_out(&es, i), &mp);
		}
		pno_prediction_free(&p);
		if (s != PNO_STATUS_OK) {
			fprintf(stderr, "pno eval: input %d: %s\n",
				es.first + i, pno_last_error());
			goto done;
		}
		if (!quiet && isatty(2) && (i % 8 == 7 || i + 1 == es.count))
			fprintf(stderr, "\rpno eval: %d/%d inputs", i + 1,
				es.count);
	}
	if (!quiet && isatty(2))
		fputc('\n', stderr);
	if ((s = pno_metrics_finish(acc, &r)) != PNO_STATUS_OK ||
	    (cal && (s = pno_metrics_finish(acc_cal, &rc_)) != PNO_STATUS_OK)) {
		rc = runtime_error("eval", s);
		goto done;
	}
	double per_sample = t_pred / ((double)es.count * samples);
	if (!quiet) {
		printf("%s (%s) on %s: %s split, %d inputs, %d samples each\n",
		       model, es.m.method, data, es.split, es.count, samples);
		print_table(&r, cal ? &rc_ : NULL);
		printf("  %-26s %12.5g\n", "predict s/sample", per_sample);
	}
	printf("relative L2 %.4e  CRPS %.4e  coverage 90%% %.3f\n", r.rel_l2,
	       r.crps, r.coverage[2]);
	if (cal) {
		/* the coverage at the calibrated level when it is one of the
		 * levels scored, else at 90% */
		int k = 2;
		for (int j = 0; j < PNO_METRICS_NCOV; j++)
			if (fabs(PNO_METRICS_COVERAGE[j] -
				 (1 - es.m.conformal.alpha)) < 1e-9)
				k = j;
		printf("calibrated (%s, alpha %g): coverage %g%% %.3f "
		       "(before %.3f)\n",
		       es.m.conformal.mode == PNO_CONFORMAL_MARGINAL ?
		       "marginal" : "function-wise", es.m.conformal.alpha,
		       100 * PNO_METRICS_COVERAGE[k], rc_.coverage[k],
		       r.coverage[k]);
	}
	if (json) {
		char mq[4096], dq[4096], pq[160];
		mj = pno_metrics_to_json(&r);
		cj = cal ? pno_metrics_to_json(&rc_) : NULL;
		conf = cal ? pno_conformal_to_json(&es.m.conformal) : NULL;
		if (!mj || (cal && (!cj || !conf))) {
			fprintf(stderr, "pno eval: out of memory\n");
			goto done;
		}
		json_escape(mq, sizeof mq, model);
		json_escape(dq, sizeof dq, data);
		json_escape(pq, sizeof pq, es.d.pde);	/* the file's text */
		size_t n = strlen(mj) + (cj ? strlen(cj) : 0) +
			   (conf ? strlen(conf) : 0) + 16384;
		doc = malloc(n);
		if (!doc) {
			fprintf(stderr, "pno eval: out of memory\n");
			goto done;
		}
		snprintf(doc, n,
			 "{\"schema\": \"pno-eval/1\", \"model\": \"%s\", "
			 "\"method\": \"%s\", \"data\": \"%s\", \"pde\": \"%s\", "
			 "\"split\": \"%s\", \"first\": %d, \"count\": %d, "
			 "\"samples\": %d, \"seed\": %llu, "
			 "\"predict_seconds_per_sample\": %.6g, "
			 "\"metrics\": %s, \"conformal\": %s, "
			 "\"metrics_calibrated\": %s}",
			 mq, es.m.method, dq, pq, es.split, es.first,
			 es.count, samples, (unsigned long long)seed,
			 per_sample, mj, conf ? conf : "null",
			 cj ? cj : "null");
		if ((rc = write_text("eval", json, doc, force)))
			goto done;
	}
	if (plots && (rc = eval_plots(plots, &es, mean0, std0, &r,
				      cal ? &rc_ : NULL)))
		goto done;
	if (record) {
		char hash[65];
		if (file_hash(data, hash)) {
			fprintf(stderr, "pno eval: %s: cannot read\n", data);
			rc = 1;
			goto done;
		}
		char *sum = eval_summary(&es, hash, samples, seed, &r,
					 cal ? &rc_ : NULL);
		s = sum ? pno_model_file_set_meta(model, "evaluation", sum)
			: PNO_STATUS_NOMEM;
		json_text_free(sum);
		if (s != PNO_STATUS_OK) {
			rc = runtime_error("eval", s);
			goto done;
		}
		if (!quiet)
			printf("recorded the evaluation in %s\n", model);
	}
	rc = 0;
done:
	free(mean0);
	free(std0);
	pno_prediction_free(&p);
	pno_metrics_free(acc);
	pno_metrics_free(acc_cal);
	pno_free(mj);
	pno_free(cj);
	pno_free(conf);
	free(doc);
	evalset_close(&es);
	return rc;
}

/* ---- pno calibrate ---- */

static const char *calibrate_usage =
	"usage: pno calibrate --model M.safetensors --data CAL.h5 --alpha A\n"
	"                     [--delta D] [--samples S] [--split ...]\n"
	"\n"
	"Fit a split-conformal scale for the model's central (1 - A) intervals\n"
	"on calibration data and store it in the model file (atomically), so\n"
	"its predictions are stretched about their mean by it from then on.\n"
	"Without --delta: marginal mode, the expected fraction of a test\n"
	"function's points inside the interval is at least 1 - A. With\n"
	"--delta D: function-wise mode, a test function has at least 1 - A of\n"
	"its points covered with probability at least 1 - D. Both hold for\n"
	"test data exchangeable with the calibration data (docs/eval/\n"
	"conformal.md). --split auto is the validation split when the data is\n"
	"the model's training file, else every sample of the file; --remove\n"
	"takes a calibration out again.\n";

int cmd_calibrate(int argc, char **argv)
{
	const char *model = NULL, *data = NULL, *split = "auto";
	double alpha = 0.1, delta = 0.05;
	int samples = 100, threads = 0, max_n = 0, remove_ = 0;
	int t_in = -1, t_out = -2;
	uint64_t seed = 0;
	struct flag f[] = {
		{"model", FLAG_STRING, &model, 0, 0, "model file (any method); updated in place", 1, 0},
		{"data", FLAG_STRING, &data, 0, 0, "calibration data (HDF5)", 0, 0},
		{"alpha", FLAG_DOUBLE, &alpha, 1e-6, 1 - 1e-6, "miscoverage level, in (0, 1)", 0, 0},
		{"delta", FLAG_DOUBLE, &delta, 1e-6, 1 - 1e-6, "function-wise mode: failure probability, in (0, 1)", 0, 0},
		{"samples", FLAG_INT, &samples, 2, 10000, "samples per input", 0, 0},
		{"seed", FLAG_U64, &seed, 0, 0, "random seed", 0, 0},
		{"split", FLAG_STRING, &split, 0, 0, "auto, train, val, test or all", 0, 0},
		{"max-samples", FLAG_INT, &max_n, 0, 1 << 30, "use at most this many inputs (0: all)", 0, 0},
		{"t-in", FLAG_INT, &t_in, 0, 1 << 20, "time series: input step (default: the model's)", 0, 0},
		{"t-out", FLAG_INT, &t_out, -1, 1 << 20, "time series: output step (default: the model's)", 0, 0},
		{"remove", FLAG_BOOL, &remove_, 0, 0, "remove the model's calibration", 0, 0},
		{"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only the summary line", 0, 0},
	};
	if (want_help(argc, argv)) {
		printf("%s\noptions:\n", calibrate_usage);
		flags_help(stdout, f, NF(f));
		return 0;
	}
	if (flags_parse("calibrate", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	int functionwise = f[3].seen;
	if (remove_) {
		for (int k = 0; k < NF(f); k++)
			if (f[k].seen && strcmp(f[k].name, "model") &&
			    strcmp(f[k].name, "remove") &&
			    strcmp(f[k].name, "quiet")) {
				fprintf(stderr, "pno calibrate: --remove takes "
					"only --model (not --%s)\n", f[k].name);
				return 2;
			}
		struct stat sb;
		if (stat(model, &sb) != 0) {
			fprintf(stderr, "pno calibrate: %s: no such file\n",
				model);
			return 2;
		}
		struct pno_safetensors st;
		int had = 0;
		enum pno_status s = pno_safetensors_read(&st, model);
		if (s == PNO_STATUS_OK) {
			json_t *md = json_loads(st.metadata_json, 0, NULL);
			had = json_object_get(md, "conformal") != NULL;
			json_decref(md);
			pno_safetensors_free(&st);
		}
		s = pno_model_file_set_conformal(model, NULL);
		if (s != PNO_STATUS_OK)
			return runtime_error("calibrate", s);
		printf(had ? "removed the calibration of %s\n"
			   : "%s had no calibration: unchanged but for a "
			     "recorded evaluation, if any, which is dropped\n",
		       model);
		return 0;
	}
	if (!data) {
		fprintf(stderr, "pno calibrate: --data is required\n");
		return 2;
	}
	pno_threads_set(threads);

	static struct evalset es;
	struct pno_prediction p = {0};
	struct pno_conformal c;
	float *scores = NULL;
	enum pno_status s;
	int rc = evalset_open(&es, "calibrate", model, data, split, "val",
			      max_n, t_in, t_out, samples < 64 ? samples : 64);
	if (rc)
		goto done;
	rc = 1;
	if (!es.m.stochastic) {
		fprintf(stderr, "pno calibrate: %s (%s) is deterministic: it "
			"has no predictive spread to scale\n", model,
			es.m.method);
		rc = 2;
		goto done;
	}
	const size_t P = (size_t)es.d.Cout * es.d.X * es.d.Y;
	scores = pno_malloc((size_t)es.count * P * sizeof *scores);
	if (!scores) {
		fprintf(stderr, "pno calibrate: out of memory\n");
		goto done;
	}
	const float lv[2] = {(float)(alpha / 2), (float)(1 - alpha / 2)};
	es.m.use_conformal = 0;
	for (int i = 0; i < es.count; i++) {
		s = pno_model_predict(&es.m, es_in(&es, i), samples,
				      fn_seed(seed, i), lv, 2, &p);
		if (s == PNO_STATUS_OK)
			s = pno_conformal_scores(es_out(&es, i), p.mean,
						 p.quantiles,
						 p.quantiles + P, P,
						 scores + (size_t)i * P);
		pno_prediction_free(&p);
		if (s != PNO_STATUS_OK) {
			fprintf(stderr, "pno calibrate: input %d: %s\n",
				es.first + i, pno_last_error());
			goto done;
		}
	}
	s = pno_conformal_fit(&c, scores, es.count, P,
			      functionwise ? PNO_CONFORMAL_FUNCTIONWISE
					   : PNO_CONFORMAL_MARGINAL,
			      alpha, delta);
	if (s == PNO_STATUS_RANGE || s == PNO_STATUS_INVALID) {
		fprintf(stderr, "pno calibrate: %s\n", pno_last_error());
		rc = 2;
		goto done;
	}
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("calibrate", s);
		goto done;
	}
	char method[sizeof es.m.method];
	snprintf(method, sizeof method, "%s", es.m.method);
	pno_model_free(&es.m);	/* the file is rewritten below */
	if ((s = pno_model_file_set_conformal(model, &c)) != PNO_STATUS_OK) {
		rc = runtime_error("calibrate", s);
		goto done;
	}
	if (!quiet) {
		printf("%s (%s): %s split of %s, %d functions x %zu points, "
		       "%d samples\n", model, method,
		       es.split, data, es.count, P, samples);
		printf("  calibration coverage of the %g%% interval: %.4f -> "
		       "%.4f\n", 100 * (1 - alpha), c.cov_before, c.cov_after);
		printf("  functions with >= %g%% of points covered: %.4f -> "
		       "%.4f\n", 100 * (1 - alpha), c.fw_before, c.fw_after);
	}
	if (functionwise)
		printf("conformal scale %.6g (function-wise, alpha %g, delta "
		       "%g) stored in %s\n", c.scale, alpha, delta, model);
	else
		printf("conformal scale %.6g (marginal, alpha %g) stored in "
		       "%s\n", c.scale, alpha, model);
	rc = 0;
done:
	pno_prediction_free(&p);
	pno_free(scores);
	evalset_close(&es);
	return rc;
}
