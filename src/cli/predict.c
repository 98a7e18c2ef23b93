/* pno predict: the predictive distribution of a model at one input. */
#include "cli.h"
#include "flags.h"

#include "pno/io.h"
#include "pno/model.h"

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *predict_usage =
	"usage: pno predict --model M.safetensors --data FILE.h5 --index I "
	"--out PRED.h5\n"
	"                   [--samples S] [--seed SEED] [--quantiles LIST] "
	"[--keep-samples]\n"
	"\n"
	"Draw S samples of the model's predictive distribution at input I of a\n"
	"dataset and write their mean, standard deviation and quantiles (and,\n"
	"for mean-scale models, the aleatoric / epistemic variances; with\n"
	"--keep-samples the samples) to an HDF5 file, with the input and the\n"
	"target for reference. The same seed gives the same samples.\n";

/* "0.05,0.5,0.95" -> q[], at most PNO_PREDICT_MAX_QUANTILES levels. */
static int parse_levels(const char *s, float *q, int *nq)
{
	*nq = 0;
	while (*s) {
		char *end;
		double v = strtod(s, &end);
		if (end == s || !(v > 0 && v < 1) ||
		    *nq >= PNO_PREDICT_MAX_QUANTILES)
			return -1;
		q[(*nq)++] = (float)v;
		s = end;
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return *nq > 0 ? 0 : -1;
}

int cmd_predict(int argc, char **argv)
{
	const char *model = NULL, *data = NULL, *out = NULL;
	const char *levels = "0.05,0.25,0.5,0.75,0.95";
	int index = 0, samples = 100, keep = 0, force = 0, threads = 0;
	int t_in = 0, t_out = -1;
	uint64_t seed = 0;
	struct flag f[] = {
		{"model", FLAG_STRING, &model, 0, 0, "model file (any method)", 1, 0},
		{"data", FLAG_STRING, &data, 0, 0, "dataset (HDF5)", 1, 0},
		{"index", FLAG_INT, &index, 0, 1 << 30, "sample index in the dataset", 0, 0},
		{"samples", FLAG_INT, &samples, 1, PNO_PREDICT_MAX_SAMPLES, "samples to draw", 0, 0},
		{"seed", FLAG_U64, &seed, 0, 0, "random seed", 0, 0},
		{"quantiles", FLAG_STRING, &levels, 0, 0, "quantile levels, comma-separated, each in (0, 1)", 0, 0},
		{"keep-samples", FLAG_BOOL, &keep, 0, 0, "also write the samples", 0, 0},
		{"t-in", FLAG_INT, &t_in, 0, 1 << 20, "time series: input step", 0, 0},
		{"t-out", FLAG_INT, &t_out, -1, 1 << 20, "time series: output step (-1: last)", 0, 0},
		{"out", FLAG_STRING, &out, 0, 0, "output HDF5 file", 1, 0},
		{"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)", 0, 0},
		{"force", FLAG_BOOL, &force, 0, 0, "overwrite an existing --out", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print nothing on success", 0, 0},
	};
	float q[PNO_PREDICT_MAX_QUANTILES];
	int nq = 0;
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\noptions:\n", predict_usage);
			flags_help(stdout, f, NF(f));
			return 0;
		}
	if (flags_parse("predict", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	if (parse_levels(levels, q, &nq)) {
		fprintf(stderr, "pno predict: --quantiles %s: expected up to %d "
			"comma-separated levels in (0, 1)\n", levels,
			PNO_PREDICT_MAX_QUANTILES);
		return 2;
	}
	struct stat sb;
	if (stat(model, &sb) != 0 || stat(data, &sb) != 0) {
		fprintf(stderr, "pno predict: %s: no such file\n",
			stat(model, &sb) != 0 ? model : data);
		return 2;
	}
	if (check_out_path("predict", out, force))
		return 2;
	pno_threads_set(threads);

	struct pno_dataset d = {0};
	struct pno_dataset_opts dopt = {t_in, t_out, index + 1, 0};
	static struct pno_model am;	/* large */
	struct pno_prediction p = {0};
	int rc = 1;
	enum pno_status s = pno_dataset_read(&d, data, &dopt);
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("predict", s);
		goto done;
	}
	if (index >= d.N) {
		fprintf(stderr, "pno predict: --index %d: %s has %d samples\n",
			index, data, d.N);
		rc = 2;
		goto done;
	}
	s = pno_model_load(&am, model, d.X, d.Y, samples < 64 ? samples : 64);
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("predict", s);
		goto done;
	}
	if (am.dims != d.dims || am.in_ch != d.Cin || am.out_ch != d.Cout ||
	    am.X != d.X || am.Y != d.Y) {
		fprintf(stderr, "pno predict: %s is a %dD %d x %d model with %d "
			"-> %d channels; %s is %dD %d x %d with %d -> %d\n", model,
			am.dims, am.X, am.Y, am.in_ch, am.out_ch, data, d.dims,
			d.X, d.Y, d.Cin, d.Cout);
		rc = 2;
		goto done;
	}
	size_t P = (size_t)d.X * d.Y, nin = (size_t)d.Cin * P;
	size_t nout = (size_t)d.Cout * P;
	const float *x = d.in + (size_t)index * nin;
	const float *y = d.out + (size_t)index * nout;
	s = pno_model_predict(&am, x, samples, seed, q, nq, &p);
	if (s == PNO_STATUS_INVALID) {	/* a request too large */
		fprintf(stderr, "pno predict: %s\n", pno_last_error());
		rc = 2;
		goto done;
	}
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("predict", s);
		goto done;
	}

	/* field shapes: (C, X[, Y]) and (K, C, X[, Y]) */
	int fd = 1 + d.dims;
	int64_t fs[PNO_MAX_DIMS] = {d.Cout, d.X, d.Y};
	int64_t is[PNO_MAX_DIMS] = {d.Cin, d.X, d.Y};
	struct pno_h5_array a[10];
	int na = 0;
	a[na++] = (struct pno_h5_array){"mean", fd, {0}, p.mean};
	a[na++] = (struct pno_h5_array){"std", fd, {0}, p.std};
	a[na++] = (struct pno_h5_array){"target", fd, {0}, y};
	a[na++] = (struct pno_h5_array){"input", fd, {0}, x};
	for (int k = 0; k < na; k++)
		memcpy(a[k].shape, k == 3 ? is : fs, sizeof fs);
	if (p.aleatoric) {
		a[na] = (struct pno_h5_array){"aleatoric_variance", fd, {0},
					      p.aleatoric};
		memcpy(a[na++].shape, fs, sizeof fs);
		a[na] = (struct pno_h5_array){"epistemic_variance", fd, {0},
					      p.epistemic};
		memcpy(a[na++].shape, fs, sizeof fs);
	}
	a[na] = (struct pno_h5_array){"quantiles", fd + 1, {nq}, p.quantiles};
	memcpy(a[na++].shape + 1, fs, sizeof fs - sizeof fs[0]);
	a[na++] = (struct pno_h5_array){"quantile_levels", 1, {nq}, p.levels};
	if (keep) {
		a[na] = (struct pno_h5_array){"samples", fd + 1, {samples},
					      p.samples};
		memcpy(a[na++].shape + 1, fs, sizeof fs - sizeof fs[0]);
	}
	char seedbuf[24];
	snprintf(seedbuf, sizeof seedbuf, "%llu", (unsigned long long)seed);
	struct pno_h5_attr at[] = {
		{"model", model, 0}, {"method", am.method[0] ? am.method : "fno", 0},
		{"data", data, 0}, {"seed", seedbuf, 0},
		{"index", NULL, index}, {"samples", NULL, samples},
		{"pno_version", PNO_VERSION_STRING, 0},
	};
	s = pno_h5_write(out, a, na, at, NF(at), force);
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("predict", s);
		goto done;
	}
	if (!quiet) {
		double e2 = 0, y2 = 0, sd = 0;
		for (size_t k = 0; k < nout; k++) {
			e2 += (p.mean[k] - y[k]) * (double)(p.mean[k] - y[k]);
			y2 += (double)y[k] * y[k];
			sd += p.std[k];
		}
		printf("%s sample %d: %d samples (%s), relative L2 of the mean "
		       "%.4e, mean std %.4e\nwrote %s\n", data, index, samples,
		       am.method[0] ? am.method : "fno",
		       sqrt(e2 / (y2 > 0 ? y2 : 1)), sd / (double)nout, out);
	}
	rc = 0;
done:
	pno_prediction_free(&p);
	pno_model_free(&am);
	pno_dataset_free(&d);
	return rc;
}
