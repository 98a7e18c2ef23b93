/* The method comparison of issue 4 on generated Darcy data: fno, pno-d,
 * pno-r (energy score) and mc-dropout trained with the same architecture
 * size, epochs, batch, learning rate and schedule, then scored on the test
 * split by
 *   rel L2    mean over test inputs of ||mean - y|| / ||y||, mean = the
 *             mean of the S predictive samples (for fno: its output);
 *   det L2    the same for the deterministic forward (dropout off, the mean
 *             head for pno-r): what pno_train_fno reports;
 *   CRPS      mean over test points of the fair ensemble CRPS of the S
 *             samples (pno_loss_crps_ens; for fno all samples are equal,
 *             so it is the mean absolute error);
 *   cov90     share of test points inside the samples' [5%, 95%] type-7
 *             quantile interval;
 *   std       mean over test points of the samples' standard deviation;
 *   train s   wall time of pno_train_fno (pno-d runs ens-samples copies of
 *             every input, so its epochs cost about that many times more).
 * With --seeds K > 1 the training seed runs over 1..K (the data stay the
 * same) and the table shows mean +- sd over the seeds.
 *
 * This is a study, not a test: it prints figures and the two checks of the
 * issue as PASS/FAIL lines and always exits 0 when everything ran.
 *
 *   bench_methods [--samples N] [--epochs E] [--res R] [--seeds K]
 *                 [--threads T] [--data FILE.h5] [options, --help]
 */
#include "bench_util.h"
#include "pno/fno.h"
#include "pno/io.h"
#include "pno/loss.h"
#include "pno/pde.h"
#include "pno/predict.h"
#include "pno/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { M_FNO, M_PNOD, M_PNOR, M_MCD, N_METHODS };
static const char *const method_name[N_METHODS] = {"fno", "pno-d", "pno-r",
						   "mc-dropout"};
#define MAX_SEEDS 64

struct cfg {
	int samples, epochs, res, fine_res, seeds, threads;
	int width, modes, layers, proj, batch, ens, S, step_size;
	double lr, wd, gamma, dropout, fdropout;
	int verbose;
	uint64_t data_seed;
	const char *data;
	int run[N_METHODS];	/* methods to train (--methods) */
};

struct score {
	double rel, det, crps, cov, std, secs, epoch_med;
	int best_epoch;
};

/* per-epoch wall times of one training run (the median is robust to
 * other processes slowing a few epochs down) */
struct epoch_log {
	const char *name;
	int verbose, n;
	double *secs;		/* (epochs) */
};

static void usage(FILE *f, const struct cfg *c)
{
	fprintf(f,
		"usage: bench_methods [options]\n"
		"  --samples N        Darcy samples to generate [%d]\n"
		"  --res R            grid points per axis [%d]\n"
		"  --fine-res F       solver grid, (F-1) %% (R-1) == 0 "
		"[4 (R-1) + 1]\n"
		"  --data FILE        read this Darcy HDF5 instead of generating\n"
		"  --data-seed S      generator seed [%llu]\n"
		"  --epochs E         epochs, every method [%d]\n"
		"  --seeds K          training seeds 1..K [%d]\n"
		"  --threads T        threads [%d]\n"
		"  --width W --modes M --layers L --proj H  [%d %d %d %d]\n"
		"  --batch B --lr X --wd X                  [%d %g %g]\n"
		"  --step-size N --gamma G  lr *= G every N epochs "
		"(0: E/4) [%d %g]\n"
		"  --dropout P        pno-d projection, mc-dropout hidden + "
		"projection [%g]\n"
		"  --fourier-dropout P  pno-d Fourier-mode dropout [%g]\n"
		"  --ens-samples m    samples per input in the energy score "
		"[%d]\n"
		"  --S S              predictive samples per test input [%d]\n"
		"  --methods LIST     comma-separated subset of fno,pno-d,"
		"pno-r,mc-dropout [all]\n"
		"  --verbose          print every epoch\n",
		c->samples, c->res, (unsigned long long)c->data_seed,
		c->epochs, c->seeds, c->threads, c->width, c->modes,
		c->layers, c->proj, c->batch, c->lr, c->wd, c->step_size,
		c->gamma, c->dropout, c->fdropout, c->ens, c->S);
}

/* argv parsing: "--name value" pairs and --verbose; 0 on success */
static int parse(struct cfg *c, int argc, char **argv)
{
	struct {
		const char *name;
		int *i;
		double *d;
	} t[] = {
		{"--samples", &c->samples, NULL}, {"--epochs", &c->epochs, NULL},
		{"--res", &c->res, NULL}, {"--fine-res", &c->fine_res, NULL},
		{"--seeds", &c->seeds, NULL}, {"--threads", &c->threads, NULL},
		{"--width", &c->width, NULL}, {"--modes", &c->modes, NULL},
		{"--layers", &c->layers, NULL}, {"--proj", &c->proj, NULL},
		{"--batch", &c->batch, NULL}, {"--ens-samples", &c->ens, NULL},
		{"--S", &c->S, NULL}, {"--step-size", &c->step_size, NULL},
		{"--lr", NULL, &c->lr}, {"--wd", NULL, &c->wd},
		{"--gamma", NULL, &c->gamma}, {"--dropout", NULL, &c->dropout},
		{"--fourier-dropout", NULL, &c->fdropout},
	};
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
			usage(stdout, c);
			exit(0);
		}
		if (!strcmp(argv[a], "--verbose")) {
			c->verbose = 1;
			continue;
		}
		if (a + 1 >= argc) {
			fprintf(stderr, "bench_methods: %s needs a value\n",
				argv[a]);
			return 1;
		}
		if (!strcmp(argv[a], "--data")) {
			c->data = argv[++a];
			continue;
		}
		if (!strcmp(argv[a], "--methods")) {
			const char *v = argv[++a];
			memset(c->run, 0, sizeof c->run);
			while (*v) {
				size_t n = strcspn(v, ",");
				int k = 0;
				for (; k < N_METHODS; k++)
					if (strlen(method_name[k]) == n &&
					    !strncmp(v, method_name[k], n))
						break;
				if (k == N_METHODS) {
					fprintf(stderr, "bench_methods: "
						"--methods: unknown '%.*s'\n",
						(int)n, v);
					return 1;
				}
				c->run[k] = 1;
				v += n + (v[n] == ',');
			}
			continue;
		}
		if (!strcmp(argv[a], "--data-seed")) {
			c->data_seed = strtoull(argv[++a], NULL, 10);
			continue;
		}
		size_t k = 0;
		for (; k < sizeof t / sizeof t[0]; k++)
			if (!strcmp(argv[a], t[k].name))
				break;
		if (k == sizeof t / sizeof t[0]) {
			fprintf(stderr, "bench_methods: unknown option %s\n",
				argv[a]);
			return 1;
		}
		char *end;
		const char *v = argv[++a];
		if (t[k].i) {
			long x = strtol(v, &end, 10);
			if (*end || x < 0 || x > 1000000000) {
				fprintf(stderr, "bench_methods: %s %s: not a "
					"count\n", t[k].name, v);
				return 1;
			}
			*t[k].i = (int)x;
		} else {
			*t[k].d = strtod(v, &end);
			if (*end || !(*t[k].d >= 0)) {
				fprintf(stderr, "bench_methods: %s %s: not a "
					"number >= 0\n", t[k].name, v);
				return 1;
			}
		}
	}
	if (c->fine_res == 0)
		c->fine_res = 4 * (c->res - 1) + 1;
	if (c->samples < 10 || c->epochs < 1 || c->res < 3 || c->seeds < 1 ||
	    c->seeds > MAX_SEEDS || c->threads < 1 || c->width < 1 ||
	    c->modes < 1 || c->layers < 1 || c->proj < 1 || c->batch < 1 ||
	    c->ens < 2 || c->ens > 64 || c->S < 2 || c->S > 1024 ||
	    !(c->lr > 0) || c->dropout >= 1 || c->fdropout >= 1 ||
	    (c->fine_res - 1) % (c->res - 1) != 0) {
		fprintf(stderr, "bench_methods: bad configuration (samples >= "
			"10, seeds <= %d, 2 <= ens-samples <= 64, 2 <= S <= "
			"1024, dropout < 1, (fine-res - 1) %% (res - 1) == 0)\n",
			MAX_SEEDS);
		return 1;
	}
	return 0;
}

static void on_epoch(void *ud, const struct pno_epoch_stats *s)
{
	struct epoch_log *lg = ud;
	if (lg->n < s->epochs)
		lg->secs[lg->n++] = s->seconds;
	if (lg->verbose)
		fprintf(stderr, "  %-10s epoch %3d/%d  train %.4e  val %.4e%s  "
			"lr %.2e  %.2f s\n", lg->name, s->epoch, s->epochs,
			s->train_loss, s->val_loss, s->best ? "*" : " ",
			(double)s->lr, s->seconds);
}

/* Score model m on samples [first, first + count) of d. */
static enum pno_status evaluate(struct pno_fno *m, const struct pno_dataset *d,
				int first, int count, int S, uint64_t seed,
				struct score *sc)
{
	const size_t N = (size_t)d->Cout * d->X * d->Y;
	const size_t Nin = (size_t)d->Cin * d->X * d->Y;
	const float q[2] = {0.05f, 0.95f};
	double rel = 0, crps = 0, cov = 0, sd = 0;
	for (int i = first; i < first + count; i++) {
		const float *x = d->in + (size_t)i * Nin;
		const float *y = d->out + (size_t)i * N;
		struct pno_prediction p;
		enum pno_status st = pno_fno_predict(m, x, S, seed + (uint64_t)i,
						     q, 2, &p);
		if (st != PNO_STATUS_OK)
			return st;
		double e2 = 0, y2 = 0, c = 0, s = 0;
		for (size_t k = 0; k < N; k++) {
			double e = (double)p.mean[k] - y[k];
			e2 += e * e;
			y2 += (double)y[k] * y[k];
			c += y[k] >= p.quantiles[k] && y[k] <= p.quantiles[N + k];
			s += p.std[k];
		}
		rel += sqrt(e2) / (y2 > 0 ? sqrt(y2) : 1.0);
		cov += c / (double)N;
		sd += s / (double)N;
		double cr = pno_loss_crps_ens(NULL, p.samples, y, 1, S, N);
		pno_prediction_free(&p);
		if (!isfinite(cr)) {
			fprintf(stderr, "crps: %s\n", pno_last_error());
			return PNO_STATUS_NONFINITE;
		}
		crps += cr;
	}
	sc->rel = rel / count;
	sc->crps = crps / count;
	sc->cov = cov / count;
	sc->std = sd / count;
	return pno_eval_rel_l2(m, d, first, count, &sc->det);
}

static enum pno_status run_method(int method, const struct cfg *c,
				  const struct pno_dataset *d, int ntrain,
				  int nval, int ntest, uint64_t seed,
				  struct score *sc)
{
	struct pno_fno_arch a = {.dims = 2, .in_ch = d->Cin,
				 .out_ch = d->Cout, .width = c->width,
				 .modes1 = c->modes, .modes2 = c->modes,
				 .layers = c->layers, .proj_hidden = c->proj};
	struct pno_train_opts o;
	pno_train_opts_default(&o);
	o.epochs = c->epochs;
	o.batch = c->batch;
	o.lr = (float)c->lr;
	o.weight_decay = (float)c->wd;
	o.step_size = c->step_size ? c->step_size
				   : (c->epochs >= 4 ? c->epochs / 4 : 0);
	o.gamma = (float)c->gamma;
	o.seed = seed;
	o.n_train = ntrain, o.n_val = nval, o.n_test = ntest;
	o.ens_samples = c->ens;
	struct epoch_log lg = {method_name[method], c->verbose, 0,
			       pno_malloc((size_t)c->epochs * sizeof(double))};
	if (!lg.secs)
		return PNO_STATUS_NOMEM;
	o.on_epoch = on_epoch;
	o.ud = &lg;
	int bmax = c->batch;
	switch (method) {
	case M_PNOD:
		a.p_proj = (float)c->dropout;
		a.p_fourier = (float)c->fdropout;
		o.loss = PNO_LOSS_ENERGY;
		bmax = c->batch * c->ens;
		break;
	case M_PNOR:
		a.heads = 2;
		o.loss = PNO_LOSS_ENERGY;
		break;
	case M_MCD:
		a.p_hidden = (float)c->dropout;
		a.p_proj = (float)c->dropout;
		break;
	default:
		break;
	}
	struct pno_fno m;
	enum pno_status st = pno_fno_init(&m, &a, d->X, d->Y, bmax, seed);
	if (st != PNO_STATUS_OK) {
		pno_free(lg.secs);
		return st;
	}
	snprintf(m.method, sizeof m.method, "%s", method_name[method]);
	struct pno_train_result r;
	double t0 = bench_now();
	st = pno_train_fno(&m, d, &o, &r);
	sc->secs = bench_now() - t0;
	sc->best_epoch = r.best_epoch;
	sc->epoch_med = lg.n ? bench_median(lg.secs, lg.n) : NAN;
	pno_free(lg.secs);
	if (st == PNO_STATUS_OK)
		st = evaluate(&m, d, ntrain + nval, ntest, c->S,
			      0x5eed0000ull + seed, sc);
	pno_fno_free(&m);
	return st;
}

static void mean_sd(const double *v, int n, double *mean, double *sd)
{
	double s = 0, s2 = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	*mean = s / n;
	for (int i = 0; i < n; i++)
		s2 += (v[i] - *mean) * (v[i] - *mean);
	*sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

static void cell(char *buf, size_t n, const double *v, int k, const char *fmt)
{
	double m, s;
	mean_sd(v, k, &m, &s);
	int w = snprintf(buf, n, fmt, m);
	if (k > 1 && w > 0 && (size_t)w < n) {
		buf[w] = 0;
		snprintf(buf + w, n - (size_t)w, " ± ");
		w = (int)strlen(buf);
		snprintf(buf + w, n - (size_t)w, fmt, s);
	}
}

int main(int argc, char **argv)
{
	struct cfg c = {.samples = 400, .epochs = 50, .res = 33,
			.fine_res = 0, .seeds = 1, .threads = 2, .width = 24,
			.modes = 10, .layers = 4, .proj = 64, .batch = 20,
			.ens = 3, .S = 50, .step_size = 0, .lr = 2e-3,
			.wd = 1e-4, .gamma = 0.5, .dropout = 0.1,
			.fdropout = 0.1, .data_seed = 0,
			.run = {1, 1, 1, 1}};
	if (parse(&c, argc, argv))
		return 2;
	pno_threads_set(c.threads);
	double t_start = bench_now();

	char tmp[512] = "";
	const char *path = c.data;
	double t_gen = 0;
	if (!path) {
		const char *dir = getenv("TMPDIR");
		snprintf(tmp, sizeof tmp, "%s/bench_methods_%ld.h5",
			 dir && *dir ? dir : "/tmp", (long)getpid());
		struct pno_darcy_opts g;
		pno_darcy_opts_default(&g);
		g.base.samples = c.samples;
		g.base.res = c.res;
		g.base.seed = c.data_seed;
		g.fine_res = c.fine_res;
		double t0 = bench_now();
		if (pno_generate_darcy(&g, tmp, 1) != PNO_STATUS_OK) {
			fprintf(stderr, "bench_methods: generate: %s\n",
				pno_last_error());
			return 1;
		}
		t_gen = bench_now() - t0;
		path = tmp;
	}
	struct pno_dataset d;
	struct pno_dataset_opts dopt = PNO_DATASET_OPTS_DEFAULT;
	dopt.max_samples = c.data ? c.samples : 0;
	enum pno_status st = pno_dataset_read(&d, path, &dopt);
	if (tmp[0])
		remove(tmp);
	if (st != PNO_STATUS_OK) {
		fprintf(stderr, "bench_methods: read: %s\n", pno_last_error());
		return 1;
	}
	if (d.dims != 2 || strcmp(d.layout, "darcy")) {
		fprintf(stderr, "bench_methods: %s is not a 2D Darcy dataset\n",
			path);
		pno_dataset_free(&d);
		return 1;
	}
	int ntest = d.N / 8, nval = d.N / 8, ntrain = d.N - nval - ntest;
	if (c.batch > ntrain)
		c.batch = ntrain;
	if (c.modes > d.X / 2 || c.modes > d.Y / 2 + 1) {
		fprintf(stderr, "bench_methods: --modes %d too large for %dx%d\n",
			c.modes, d.X, d.Y);
		pno_dataset_free(&d);
		return 2;
	}

	printf("bench_methods: Darcy %dx%d (%s%s), %d samples: %d train, %d "
	       "validation, %d test\n", d.X, d.Y, c.data ? "read from " : "generated",
	       c.data ? c.data : "", d.N, ntrain, nval, ntest);
	if (!c.data)
		printf("generated in %.1f s (fine grid %d, seed %llu)\n", t_gen,
		       c.fine_res, (unsigned long long)c.data_seed);
	printf("every method: width %d, modes %dx%d, %d layers, proj_hidden "
	       "%d, %d epochs, batch %d, AdamW lr %g wd %g, lr x %g every %d "
	       "epochs, weights of the best validation epoch\n", c.width,
	       c.modes, c.modes, c.layers, c.proj, c.epochs, c.batch, c.lr, c.wd,
	       c.gamma, c.step_size ? c.step_size
				    : (c.epochs >= 4 ? c.epochs / 4 : 0));
	printf("fno: rel L2; pno-d: p_proj %g, p_fourier %g, energy score of "
	       "%d samples; pno-r: heads 2, energy score of %d samples; "
	       "mc-dropout: p_hidden = p_proj = %g, rel L2\n", c.dropout,
	       c.fdropout, c.ens, c.ens, c.dropout);
	printf("test scores from S = %d samples per input; %d seed%s; %d "
	       "threads\n\n", c.S, c.seeds, c.seeds > 1 ? "s" : "",
	       pno_threads_get());
	fflush(stdout);

	static struct score sc[N_METHODS][MAX_SEEDS];
	for (int k = 0; k < c.seeds; k++)
		for (int mth = 0; mth < N_METHODS; mth++) {
			if (!c.run[mth])
				continue;
			st = run_method(mth, &c, &d, ntrain, nval, ntest,
					(uint64_t)k + 1, &sc[mth][k]);
			if (st != PNO_STATUS_OK) {
				fprintf(stderr, "bench_methods: %s seed %d: "
					"%s\n", method_name[mth], k + 1,
					pno_last_error());
				pno_dataset_free(&d);
				return 1;
			}
			const struct score *s = &sc[mth][k];
			fprintf(stderr, "seed %d %-10s rel L2 %.4f  det %.4f  "
				"CRPS %.4e  cov90 %.3f  std %.3e  best epoch "
				"%d  %.1f s (median epoch %.2f s)\n", k + 1,
				method_name[mth], s->rel, s->det, s->crps,
				s->cov, s->std, s->best_epoch, s->secs,
				s->epoch_med);
		}

	double v[N_METHODS][7][MAX_SEEDS];
	for (int mth = 0; mth < N_METHODS; mth++)
		for (int k = 0; k < c.seeds; k++) {
			const struct score *s = &sc[mth][k];
			v[mth][0][k] = s->rel, v[mth][1][k] = s->det;
			v[mth][2][k] = s->crps, v[mth][3][k] = s->cov;
			v[mth][4][k] = s->std, v[mth][5][k] = s->secs;
			v[mth][6][k] = s->epoch_med;
		}
	static const char *const fmt[7] = {"%.4f", "%.4f", "%.3e", "%.3f",
					   "%.3e", "%.1f", "%.2f"};
	printf("| method | rel L2 (mean) | rel L2 (det) | CRPS | cov90 | "
	       "mean std | train s | epoch s (median) |\n"
	       "|---|---|---|---|---|---|---|---|\n");
	for (int mth = 0; mth < N_METHODS; mth++) {
		if (!c.run[mth])
			continue;
		printf("| %s |", method_name[mth]);
		for (int j = 0; j < 7; j++) {
			char buf[64];
			cell(buf, sizeof buf, v[mth][j], c.seeds, fmt[j]);
			printf(" %s |", buf);
		}
		printf("\n");
	}

	double crps_d, crps_mc, sd;
	if (c.run[M_PNOD] && c.run[M_MCD]) {
		mean_sd(v[M_PNOD][2], c.seeds, &crps_d, &sd);
		mean_sd(v[M_MCD][2], c.seeds, &crps_mc, &sd);
		int wins = 0;
		for (int k = 0; k < c.seeds; k++)
			wins += v[M_PNOD][2][k] < v[M_MCD][2][k];
		printf("\n%s  pno-d CRPS %.3e < mc-dropout CRPS %.3e (ratio "
		       "%.3f; lower in %d of %d seeds)\n",
		       crps_d < crps_mc ? "PASS" : "FAIL", crps_d, crps_mc,
		       crps_d / crps_mc, wins, c.seeds);
	}
	if (c.run[M_FNO]) {
		double rel_fno;
		mean_sd(v[M_FNO][0], c.seeds, &rel_fno, &sd);
		int all = 1;
		char line[512] = "";
		int w = 0;
		for (int mth = 1; mth < N_METHODS; mth++) {
			if (!c.run[mth])
				continue;
			double r;
			mean_sd(v[mth][0], c.seeds, &r, &sd);
			all &= r <= 1.25 * rel_fno;
			w += snprintf(line + w, sizeof line - (size_t)w,
				      "%s%s %.3f", w ? ", " : "",
				      method_name[mth], r / rel_fno);
		}
		printf("%s  every rel L2 (mean prediction) <= 1.25 x fno's "
		       "%.4f: ratios %s\n", all ? "PASS" : "FAIL", rel_fno,
		       line);
	}
	printf("\ntotal wall time %.1f s\n", bench_now() - t_start);
	pno_dataset_free(&d);
	return 0;
}
