/* pno: the command-line tool. Thin: parses flags, calls the library.
 * Exit status: 0 success, 1 runtime error, 2 usage error. */
#include "cli.h"
#include "flags.h"

#include "pno/core.h"
#include "pno/dist.h"
#include "pno/fno.h"
#include "pno/io.h"
#include "pno/pde.h"
#include "pno/train.h"
#include "pno/deeponet.h"
#include "pno/ensemble.h"
#include "pno/vfno.h"

#include "drift.h"

#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


int quiet;

/* Under LeakSanitizer: fontconfig (loaded by PLplot's cairo driver for
 * the figures of eval and bench) keeps its caches until exit by design;
 * not a leak of ours. Ignored by non-sanitized builds. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libfontconfig.so\n";
}

static void log_stderr(void *ud, enum pno_log_level level, const char *msg)
{
	static const char *names[] = {"debug", "info", "warning", "error"};
	(void)ud;
	if (quiet && level < PNO_LOG_LEVEL_WARN)
		return;
	fprintf(stderr, "pno: %s: %s\n", names[level], msg);
}

double cli_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_fmt_duration(char *buf, size_t n, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, n, "?");
	else if (s < 60)
		snprintf(buf, n, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600),
			 (int)fmod(s / 60, 60));
}

int runtime_error(const char *cmd, enum pno_status s)
{
	const char *detail = pno_last_error();
	fprintf(stderr, "pno %s: %s\n", cmd, *detail ? detail : pno_status_str(s));
	return 1;
}

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* Escape `s` as the inside of a JSON string (truncating at `size`). */
void json_escape(char *out, size_t size, const char *s)
{
	size_t o = 0;
	for (; *s && o + 7 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
}

/* The directory that will hold `path` must exist and be writable: checked
 * before any work so a long run never fails at the end. */
int check_out_path(const char *cmd, const char *path, int force)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (exists(path) && !force) {
		fprintf(stderr, "pno %s: %s exists (use --force to overwrite)\n",
			cmd, path);
		return 2;
	}
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	if (access(dir, W_OK | X_OK) != 0) {
		fprintf(stderr, "pno %s: cannot write %s: directory %s is "
			"missing or not writable\n", cmd, path, dir);
		return 2;
	}
	return 0;
}

/* ---- train ---- */
static const char *train_usage =
	"usage: pno train --data FILE.h5 --out MODEL.safetensors [options]\n"
	"\n"
	"Train a neural operator on a dataset (PDEBench layout: Darcy 'nu' ->\n"
	"'tensor', or a time series 'tensor' from step --t-in to --t-out). The\n"
	"samples are split in order: the first --ntrain for training, the next\n"
	"--nval for validation, the last --ntest for the test error. Prints the\n"
	"train/validation loss per epoch and the test relative L2 error.\n"
	"\n"
	"--pairs-step K trains a one-step model for rollouts: every pair of steps\n"
	"(t, t + K) of every trajectory is a sample, and --ntrain/--nval/--ntest\n"
	"then count TRAJECTORIES (default 80/10/10%), so no trajectory is split\n"
	"between training and test. It replaces --t-in/--t-out (giving both is\n"
	"an error).\n";

struct progress {
	int tty;
};

static void on_batch(void *ud, int epoch, int batch, int n_batches, double loss)
{
	struct progress *pr = ud;
	if (!pr->tty || quiet)
		return;
	int width = 30, done = (int)((double)batch / n_batches * width);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < done ? '#' : '.';
	bar[width] = '\0';
	fprintf(stderr, "\r  epoch %d [%s] %d/%d loss %.4e", epoch, bar, batch,
		n_batches, loss);
	if (batch == n_batches)
		fprintf(stderr, "\r%*s\r", 80, "");
}

static void on_epoch(void *ud, const struct pno_epoch_stats *s)
{
	(void)ud;
	if (quiet)
		return;
	printf("epoch %4d/%d  train %.4e  val %.4e%s  lr %.2e  %.2f s%s\n",
	       s->epoch, s->epochs, s->train_loss, s->val_loss,
	       s->best ? "*" : " ", s->lr, s->seconds,
	       s->rolled_back ? "  (after a rollback)" : "");
	fflush(stdout);
}

/* Under mpirun (pno/dist.h): every rank's verdict on a check it may see
 * differently from the others (files on its node) becomes every rank's,
 * so none is left waiting for one that gave up. rc: 0 go on, 1 runtime
 * error, 2 usage error (a failing rank has printed its message). */
static int agree_rc(const char *cmd, int rc)
{
	if (pno_dist_size() == 1)
		return rc;
	enum pno_status s = pno_dist_agree(rc == 0   ? PNO_STATUS_OK
					   : rc == 2 ? PNO_STATUS_INVALID
						     : PNO_STATUS_IO,
					   "stopped (see its message)");
	if (s == PNO_STATUS_OK)
		return 0;
	if (rc == 0)
		fprintf(stderr, "pno %s: %s\n", cmd, pno_last_error());
	return s == PNO_STATUS_INVALID ? 2 : 1;
}

/* BLAKE2b-256 of a file as hex (libsodium), for provenance. */
int file_hash(const char *path, char hex[65])
{
	unsigned char buf[1 << 16], h[32];
	crypto_generichash_state st;
	FILE *fp = fopen(path, "rb");
	size_t n;
	if (!fp)
		return -1;
	crypto_generichash_init(&st, NULL, 0, sizeof h);
	while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
		crypto_generichash_update(&st, buf, n);
	int err = ferror(fp);
	fclose(fp);
	if (err)
		return -1;
	crypto_generichash_final(&st, h, sizeof h);
	sodium_bin2hex(hex, 65, h, sizeof h);
	return 0;
}

static int cmd_train(int argc, char **argv)
{
	const char *data = NULL, *out = NULL, *model = "fno", *resume = NULL;
	const char *checkpoint = NULL;
	int width = 32, modes = 12, modes2 = 0, layers = 4, epochs = 50;
	int batch = 20, threads = 0, ntrain = 0, nval = -1, ntest = -1;
	int step_size = 0, t_in = 0, t_out = -1, force = 0, adam = 0;
	int patience = 0, plateau = 0, last = 0, rollback_after = 3;
	int proj = 128, ens_samples = 3, pairs_step = 0;
	double lr = 1e-3, wd = 1e-4, gamma = 0.5, clip = 0;
	double dropout = 0.1, fourier_dropout = 0.1;
	const char *loss = NULL;
	double prior_sigma = 1.0, kl_beta = 1.0;
	int kl_warmup = 5, basis = 64, members = 5;
	uint64_t seed = 0;
	struct flag f[] = {
		{"data", FLAG_STRING, &data, 0, 0, "training data (HDF5)", 1, 0},
		{"out", FLAG_STRING, &out, 0, 0, "output model (safetensors)", 1, 0},
		{"model", FLAG_STRING, &model, 0, 0, "method: fno, pno-d, pno-r, mc-dropout, vfno, deeponet, ensemble", 0, 0},
		{"prior-sigma", FLAG_POSITIVE, &prior_sigma, 0, 1e6, "vfno: prior standard deviation of the weights", 0, 0},
		{"kl-beta", FLAG_DOUBLE, &kl_beta, 0, 1e6, "vfno: weight of the KL term", 0, 0},
		{"kl-warmup", FLAG_INT, &kl_warmup, 0, 1000000, "vfno: epochs over which the KL weight ramps up", 0, 0},
		{"members", FLAG_INT, &members, 2, PNO_ENSEMBLE_MAX_K, "ensemble: independently seeded FNO members", 0, 0},
		{"basis", FLAG_INT, &basis, 1, 4096, "deeponet: basis functions p (branch/trunk widths are 4 x --width, depths 2)", 0, 0},
		{"dropout", FLAG_DOUBLE, &dropout, 0, 0.99, "dropout of the projection hidden layer (pno-d, mc-dropout) and of the block outputs (mc-dropout)", 0, 0},
		{"fourier-dropout", FLAG_DOUBLE, &fourier_dropout, 0, 0.99, "dropout over the retained Fourier coefficients (pno-d)", 0, 0},
		{"loss", FLAG_STRING, &loss, 0, 0, "pno-r: energy (default) or crps", 0, 0},
		{"ens-samples", FLAG_INT, &ens_samples, 2, 64, "samples per input for the energy score (pno-d, pno-r)", 0, 0},
		{"width", FLAG_INT, &width, 1, 4096, "channels in the Fourier layers", 0, 0},
		{"modes", FLAG_INT, &modes, 1, 1 << 20, "retained Fourier modes (first axis)", 0, 0},
		{"modes2", FLAG_INT, &modes2, 0, 1 << 20, "modes on the second axis (0: same as --modes)", 0, 0},
		{"layers", FLAG_INT, &layers, 1, PNO_FNO_MAX_LAYERS, "Fourier layers", 0, 0},
		{"proj-hidden", FLAG_INT, &proj, 1, 65536, "projection hidden width", 0, 0},
		{"epochs", FLAG_INT, &epochs, 1, 1000000, "training epochs", 0, 0},
		{"batch", FLAG_INT, &batch, 1, 65536, "mini-batch size", 0, 0},
		{"lr", FLAG_DOUBLE, &lr, 1e-12, 10, "learning rate", 0, 0},
		{"weight-decay", FLAG_DOUBLE, &wd, 0, 10, "weight decay", 0, 0},
		{"adam", FLAG_BOOL, &adam, 0, 0, "Adam with L2 penalty instead of AdamW", 0, 0},
		{"step-size", FLAG_INT, &step_size, 0, 1000000, "epochs between lr decays (0: constant lr)", 0, 0},
		{"gamma", FLAG_DOUBLE, &gamma, 1e-6, 1, "lr decay factor", 0, 0},
		{"clip", FLAG_DOUBLE, &clip, 0, 1e9, "max gradient norm (0: off)", 0, 0},
		{"patience", FLAG_INT, &patience, 0, 1000000, "stop after N epochs without a better validation loss (0: off)", 0, 0},
		{"plateau", FLAG_INT, &plateau, 0, 1000000, "lr *= gamma after N epochs without a better validation loss (0: off)", 0, 0},
		{"last", FLAG_BOOL, &last, 0, 0, "keep the last epoch's weights (default: the best validation epoch's)", 0, 0},
		{"rollback-after", FLAG_INT, &rollback_after, 1, 1000000, "consecutive non-finite steps before rolling back with a halved lr", 0, 0},
		{"seed", FLAG_U64, &seed, 0, 0, "random seed", 0, 0},
		{"ntrain", FLAG_INT, &ntrain, 0, 1 << 30, "training samples (0: 80%)", 0, 0},
		{"nval", FLAG_INT, &nval, -1, 1 << 30, "validation samples (-1: 10%)", 0, 0},
		{"ntest", FLAG_INT, &ntest, -1, 1 << 30, "test samples (-1: 10%)", 0, 0},
		{"t-in", FLAG_INT, &t_in, 0, 1 << 20, "time series: input step", 0, 0},
		{"t-out", FLAG_INT, &t_out, -1, 1 << 20, "time series: output step (-1: last)", 0, 0},
		{"pairs-step", FLAG_INT, &pairs_step, 1, 1 << 20, "time series: every pair (t, t + K) of every trajectory is a sample (one-step model); splits count trajectories", 0, 0},
		{"checkpoint", FLAG_STRING, &checkpoint, 0, 0, "checkpoint written after every epoch", 0, 0},
		{"resume", FLAG_STRING, &resume, 0, 0, "continue from a checkpoint", 0, 0},
		{"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)", 0, 0},
		{"force", FLAG_BOOL, &force, 0, 0, "overwrite an existing --out", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only the result", 0, 0},
	};
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\noptions:\n", train_usage);
			flags_help(stdout, f, NF(f));
			return 0;
		}
	if (flags_parse("train", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	if (!pno_dist_is_root()) {	/* rank 0 speaks for all */
		quiet = 1;
		pno_log_set(log_stderr, NULL, PNO_LOG_LEVEL_ERROR);
	}
	/* method-specific flags given to another method are a mistake */
	static const struct {
		const char *flag, *methods;
	} only[] = {
		{"dropout", "pno-d mc-dropout"},
		{"fourier-dropout", "pno-d"},
		{"ens-samples", "pno-d pno-r"},
		{"loss", "pno-r"},
		{"prior-sigma", "vfno"},
		{"kl-beta", "vfno"},
		{"kl-warmup", "vfno"},
		{"basis", "deeponet"},
		{"members", "ensemble"},
	};
	for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
		for (int k = 0; k < NF(f); k++) {
			char pad[64];
			snprintf(pad, sizeof pad, " %s ", only[i].methods);
			char want[40];
			snprintf(want, sizeof want, " %s ", model);
			if (strcmp(f[k].name, only[i].flag) || !f[k].seen ||
			    strstr(pad, want))
				continue;
			fprintf(stderr, "pno train: --%s applies to --model %s "
				"only (not %s)\n", only[i].flag, only[i].methods,
				model);
			return 2;
		}
	enum pno_loss_kind lk = PNO_LOSS_REL_L2;
	int is_vfno = !strcmp(model, "vfno"), is_don = !strcmp(model, "deeponet");
	int is_ens = !strcmp(model, "ensemble");
	if (!pno_fno_method_known(model) && !is_vfno && !is_don && !is_ens) {
		fprintf(stderr, "pno train: unknown --model '%s' (known: %s, "
			"vfno, deeponet, ensemble)\n", model, PNO_FNO_METHODS);
		return 2;
	}
	if (!strcmp(model, "pno-d"))
		lk = PNO_LOSS_ENERGY;
	if (!strcmp(model, "pno-r"))
		lk = loss && !strcmp(loss, "crps") ? PNO_LOSS_CRPS : PNO_LOSS_ENERGY;
	if (loss && (strcmp(model, "pno-r") ||
		     (strcmp(loss, "energy") && strcmp(loss, "crps")))) {
		fprintf(stderr, "pno train: --loss %s: only pno-r takes --loss "
			"(energy or crps)\n", loss);
		return 2;
	}
	for (int k = 0; pairs_step && k < NF(f); k++)
		if ((!strcmp(f[k].name, "t-in") || !strcmp(f[k].name, "t-out")) &&
		    f[k].seen) {
			fprintf(stderr, "pno train: --%s and --pairs-step exclude "
				"each other (--pairs-step uses every pair (t, t "
				"+ K))\n", f[k].name);
			return 2;
		}
	int bad = check_out_path("train", out, force);
	if (!bad && !exists(data)) {
		fprintf(stderr, "pno train: --data %s: no such file\n", data);
		bad = 2;
	}
	char member0[4096];
	snprintf(member0, sizeof member0, "%s.member0", resume ? resume : "");
	if (!bad && resume && !exists(is_ens ? member0 : resume)) {
		fprintf(stderr, "pno train: --resume %s: no such file%s\n",
			resume, is_ens ? " (an ensemble's checkpoint is one "
			"file per member: PATH.member0 ...)" : "");
		bad = 2;
	}
	if ((bad = agree_rc("train", bad)) != 0)
		return bad;
	/* ranks on one machine share its cores (Open MPI says how many) */
	const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
	if (threads == 0 && pno_dist_size() > 1 && local && atoi(local) > 1) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN) / atoi(local);
		threads = nc > 1 ? (int)nc : 1;
	}
	pno_threads_set(threads);

	struct pno_dataset d = {0};
	struct pno_dataset_opts dopt = PNO_DATASET_OPTS_DEFAULT;
	dopt.t_in = t_in;
	dopt.t_out = t_out;
	dopt.pairs_step = pairs_step;
	/* on several ranks the samples stay in the file and each rank reads
	 * the rows it trains on (the ensemble's own scoring needs them all) */
	enum pno_status s = pno_dist_size() > 1 && !is_ens
				    ? pno_dataset_open(&d, data, &dopt)
				    : pno_dataset_read(&d, data, &dopt);
	s = pno_dist_agree(s, NULL);	/* a rank that cannot read stops all */
	if (s == PNO_STATUS_RANGE || s == PNO_STATUS_INVALID) {
		fprintf(stderr, "pno train: %s\n", pno_last_error());
		return 2;	/* an option that does not fit the file */
	}
	if (s != PNO_STATUS_OK)
		return runtime_error("train", s);
	int rc = 1;
	struct pno_fno m = {0};
	struct pno_vfno v = {0};
	struct pno_deeponet dn = {0};
	struct pno_ensemble en = {0};
	char *prov = NULL, *extra = NULL, *dj = NULL;

	/* with pairs the split counts trajectories; it is turned into
	 * sample counts (multiples of d.pairs) below */
	int nunit = d.pairs ? d.N / d.pairs : d.N;
	if (nval < 0)
		nval = nunit / 10;
	if (ntest < 0)
		ntest = nunit / 10;
	if (ntrain == 0)
		ntrain = nunit - nval - ntest;
	if (ntrain < 1 || (long)ntrain + nval + ntest > nunit) {
		fprintf(stderr, "pno train: split %d train + %d validation + %d "
			"test does not fit the %d %s of %s\n", ntrain, nval,
			ntest, nunit, d.pairs ? "trajectories" : "samples", data);
		rc = 2;
		goto out;
	}
	if (d.pairs) {
		if (!quiet)
			printf("pairs (t, t + %d): %d per trajectory; split in "
			       "trajectories %d / %d / %d\n", pairs_step, d.pairs,
			       ntrain, nval, ntest);
		ntrain *= d.pairs, nval *= d.pairs, ntest *= d.pairs;
	}
	if (ntrain < 1 || (long)ntrain + nval + ntest > d.N) {
		fprintf(stderr, "pno train: split %d train + %d validation + %d "
			"test does not fit the %d samples of %s\n", ntrain, nval,
			ntest, d.N, data);
		rc = 2;
		goto out;
	}
	struct pno_fno_arch a = {
		.dims = d.dims, .in_ch = d.Cin, .out_ch = d.Cout, .width = width,
		.modes1 = modes, .modes2 = d.dims == 2 ? (modes2 ? modes2 : modes) : 1,
		.layers = layers, .proj_hidden = proj};
	if (!strcmp(model, "pno-d")) {
		a.p_proj = (float)dropout;
		a.p_fourier = (float)fourier_dropout;
	} else if (!strcmp(model, "mc-dropout")) {
		a.p_hidden = (float)dropout;
		a.p_proj = (float)dropout;
	} else if (!strcmp(model, "pno-r")) {
		a.heads = 2;
	}
	int maxm1 = d.dims == 1 ? d.X / 2 + 1 : d.X / 2;
	if (modes > maxm1 || (d.dims == 2 && a.modes2 > d.Y / 2 + 1)) {
		fprintf(stderr, "pno train: --modes %d x %d too large for the %d x "
			"%d grid of %s (at most %d x %d)\n", a.modes1, a.modes2,
			d.X, d.Y, data, maxm1, d.dims == 2 ? d.Y / 2 + 1 : 1);
		rc = 2;
		goto out;
	}
	if (batch > ntrain)
		batch = ntrain;
	/* pno-d puts ens-samples copies of each input in one batch */
	int bmax = lk == PNO_LOSS_ENERGY && a.heads != 2 ? batch * ens_samples
							 : batch;
	size_t n_params;
	if (is_vfno) {
		struct pno_vfno_opts vo;
		pno_vfno_opts_default(&vo);
		vo.prior_sigma = (float)prior_sigma;
		s = pno_vfno_init(&v, &a, d.X, d.Y, batch, seed, &vo);
		n_params = v.net.n_params + 2 * v.n_var;
	} else if (is_ens) {
		s = pno_ensemble_init(&en, members, &a, d.X, d.Y, batch, seed);
		n_params = members * (en.m ? en.m[0].n_params : 0);
	} else if (is_don) {
		struct pno_deeponet_arch da = {
			.dims = d.dims, .in_ch = d.Cin, .out_ch = d.Cout,
			.branch_width = 4 * width, .branch_depth = 2,
			.trunk_width = 4 * width, .trunk_depth = 2, .p = basis};
		s = pno_deeponet_init(&dn, &da, d.X, d.Y, batch, seed);
		n_params = dn.n_params;
	} else {
		s = pno_fno_init(&m, &a, d.X, d.Y, bmax, seed);
		snprintf(m.method, sizeof m.method, "%s", model);
		n_params = m.n_params;
	}
	if ((s = pno_dist_agree(s, NULL)) != PNO_STATUS_OK) {
		rc = runtime_error("train", s);
		goto out;
	}
	char hash[65] = "unavailable";
	if (pno_dist_is_root() && file_hash(data, hash) != 0)
		snprintf(hash, sizeof hash, "unreadable");
	/* provenance as a JSON object, nested as a string value in the
	 * metadata (safetensors metadata values are strings) */
	char pbuf[8192], ebuf[8192], dq[4096], pq[160];
	json_escape(dq, sizeof dq, data);
	json_escape(pq, sizeof pq, d.pde);
	snprintf(pbuf, sizeof pbuf,
		 "{\"data\":\"%s\",\"data_blake2b\":\"%s\",\"pde\":\"%s\","
		 "\"t_in\":%d,\"t_out\":%d,\"seed\":%llu,"
		 "\"epochs\":%d,\"batch\":%d,\"lr\":%g,\"weight_decay\":%g,"
		 "\"ntrain\":%d,\"nval\":%d,\"ntest\":%d,\"pairs_step\":%d,"
		 "\"pno_version\":\"%s\"}",
		 dq, hash, pq, t_in, t_out, (unsigned long long)seed, epochs,
		 batch, lr, wd,
		 ntrain, nval, ntest, pairs_step, PNO_VERSION_STRING);
	json_escape(ebuf, sizeof ebuf, pbuf);
	prov = malloc(strlen(ebuf) + 32);
	if (agree_rc("train", prov ? 0 : 1)) {
		if (!prov)
			fprintf(stderr, "pno train: out of memory\n");
		goto out;
	}
	sprintf(prov, "{\"provenance\":\"%s\"}", ebuf);

	struct progress pr = {isatty(2)};
	struct pno_train_opts o;
	pno_train_opts_default(&o);
	o.epochs = epochs;
	o.batch = batch;
	o.lr = (float)lr;
	o.weight_decay = (float)wd;
	o.adamw = !adam;
	o.step_size = step_size;
	o.gamma = (float)gamma;
	o.clip = (float)clip;
	o.loss = lk;
	o.ens_samples = ens_samples;
	o.kl_beta = (float)kl_beta;
	o.kl_warmup = kl_warmup;
	o.patience = patience;
	o.plateau = plateau;
	o.keep_best = !last;
	o.rollback_after = rollback_after;
	o.seed = seed;
	o.n_train = ntrain;
	o.n_val = nval;
	o.n_test = ntest;
	o.checkpoint = checkpoint;
	o.resume = resume;
	o.provenance_json = prov;
	o.on_epoch = on_epoch;
	o.on_batch = on_batch;
	o.ud = &pr;
	if (!quiet) {
		char grid[32], modestr[32];
		if (d.dims == 2) {
			snprintf(grid, sizeof grid, "%dx%d", d.X, d.Y);
			snprintf(modestr, sizeof modestr, "%dx%d", a.modes1, a.modes2);
		} else {
			snprintf(grid, sizeof grid, "%d", d.X);
			snprintf(modestr, sizeof modestr, "%d", a.modes1);
		}
		printf("data %s: %s (%s layout), %d samples, %dD grid %s, "
		       "%d -> %d channels\n", data, d.pde, d.layout, d.N, d.dims,
		       grid, d.Cin, d.Cout);
		printf("model %s: width %d, modes %s, layers %d, %zu "
		       "parameters; %d threads\n", model, width, modestr, layers,
		       n_params, pno_threads_get());
		printf("split: %d train, %d validation, %d test\n", ntrain, nval, ntest);
	}
	/* the training inputs' statistics, for the server's drift monitor:
	 * computed before training so a failure here costs no training run */
	struct drift_ref dref = {0};
	s = PNO_STATUS_OK;
	if (pno_dist_is_root()) {	/* only rank 0 saves the model */
		float *tin = d.in;	/* the training inputs, for a moment */
		if (!tin) {
			tin = malloc((size_t)ntrain * d.Cin * d.X * d.Y *
				     sizeof *tin);
			s = tin ? pno_dataset_fetch(&d, NULL, 0, ntrain, tin,
						    NULL)
				: PNO_STATUS_NOMEM;
		}
		if (s == PNO_STATUS_OK)
			s = drift_ref_compute(&dref, tin, ntrain, d.Cin, d.dims,
					      d.X, d.Y, 1000);
		if (tin != d.in)
			free(tin);
		if (s == PNO_STATUS_OK)
			s = drift_ref_to_json(&dref, &dj);
		drift_ref_free(&dref);
	}
	if ((s = pno_dist_agree(s, NULL)) != PNO_STATUS_OK) {
		rc = runtime_error("train", s);
		goto out;
	}
	struct pno_train_result r;
	if (is_ens) {
		static struct pno_ensemble_result er;
		s = pno_ensemble_train(&en, &d, &o, &er);
		memset(&r, 0, sizeof r);
		r.test_rel_l2 = er.test_rel_l2;
		r.seconds = er.seconds;
		/* no one loss of the ensemble: unknown (null), not 0 */
		r.best_val_loss = r.val_loss = r.train_loss = NAN;
		for (int k = 0; k < er.K; k++)
			if (er.member[k].epochs_run > r.epochs_run)
				r.epochs_run = er.member[k].epochs_run;
		if (s == PNO_STATUS_OK && !quiet)
			printf("members' mean test relative L2 %.4e; the "
			       "ensemble mean's below\n",
			       er.mean_member_test_rel_l2);
	} else {
		s = is_vfno  ? pno_train_vfno(&v, &d, &o, &r)
		    : is_don ? pno_train_deeponet(&dn, &d, &o, &r)
			     : pno_train_fno(&m, &d, &o, &r);
	}
	if (s == PNO_STATUS_INVALID) {	/* a combination of options */
		fprintf(stderr, "pno train: %s\n", pno_last_error());
		rc = 2;
		goto out;
	}
	if (s != PNO_STATUS_OK) {
		rc = runtime_error("train", s);
		goto out;
	}
	/* a loss that is not defined (no validation split: NaN) is null:
	 * printf's "nan" is not JSON */
	char metrics[256], fig[3][32];
	const double fv[3] = {r.test_rel_l2, r.val_loss, r.train_loss};
	for (int k = 0; k < 3; k++)
		snprintf(fig[k], sizeof fig[k], isfinite(fv[k]) ? "%.6g" : "null",
			 fv[k]);
	snprintf(metrics, sizeof metrics,
		 "{\"test_rel_l2\": %s, \"val_rel_l2\": %s, "
		 "\"train_loss\": %s, \"epochs\": %d, \"best_epoch\": %d, "
		 "\"seconds\": %.3f}",
		 fig[0], fig[1], fig[2], r.epochs_run, r.best_epoch, r.seconds);
	json_t *xo = json_pack("{s:s,s:s,s:s}", "provenance", pbuf,
			       "metrics", metrics, "drift_reference",
			       dj ? dj : "");	/* "": not rank 0 */
	extra = xo ? json_dumps(xo, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(xo);
	s = extra ? PNO_STATUS_OK : PNO_STATUS_NOMEM;
	if (s == PNO_STATUS_OK && pno_dist_is_root())
		s = is_vfno  ? pno_vfno_save(&v, out, extra)
		    : is_don ? pno_deeponet_save(&dn, out, extra)
		    : is_ens ? pno_ensemble_save(&en, out, extra)
			     : pno_fno_save(&m, out, extra);
	if ((s = pno_dist_agree(s, extra ? NULL : "out of memory")) !=
	    PNO_STATUS_OK) {
		rc = runtime_error("train", s);
		goto out;
	}
	if (!quiet && r.best_epoch > 0)
		printf("best validation %.4e at epoch %d%s%s\n", r.best_val_loss,
		       r.best_epoch, o.keep_best ? " (weights kept)" : "",
		       r.stopped_early ? "; stopped early" : "");
	if (pno_dist_is_root())
		printf("test relative L2: %.4e (%d samples)\n", r.test_rel_l2,
		       ntest);
	if (!quiet)
		printf("saved %s (%.1f s)\n", out, r.seconds);
	rc = 0;
out:
	free(prov);
	pno_free(dj);
	if (extra) {	/* jansson's text: its own deallocator */
		json_malloc_t jm;
		json_free_t jf;
		json_get_alloc_funcs(&jm, &jf);
		jf(extra);
	}
	pno_fno_free(&m);
	pno_vfno_free(&v);
	pno_deeponet_free(&dn);
	pno_ensemble_free(&en);
	pno_dataset_free(&d);
	return rc;
}

/* ---- info ---- */
static int cmd_info(int argc, char **argv)
{
	if (argc != 3 || !strcmp(argv[2], "--help")) {
		fprintf(argc == 3 ? stdout : stderr,
			"usage: pno info MODEL.safetensors\n\nPrint a model's "
			"architecture and metadata.\n");
		return argc == 3 ? 0 : 2;
	}
	const char *path = argv[2];
	struct pno_safetensors st = {0};
	enum pno_status s = pno_safetensors_read(&st, path);
	if (s != PNO_STATUS_OK)
		return runtime_error("info", s);
	json_t *md = json_loads(st.metadata_json, 0, NULL);
	json_t *fmt = md ? json_object_get(md, "format") : NULL;
	if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "pno")) {
		fprintf(stderr, "pno info: %s: not a pno model (metadata "
			"\"format\" is not \"pno\")\n", path);
		json_decref(md);
		pno_safetensors_free(&st);
		return 1;
	}
	size_t n_params = 0;
	for (int i = 0; i < st.n; i++)
		n_params += st.t[i].count;
	json_t *meth = json_object_get(md, "method");
	printf("model      %s\n", path);
	printf("method     %s\n", json_is_string(meth) ? json_string_value(meth)
						      : "(missing)");
	printf("tensors    %d (%zu values)\n", st.n, n_params);
	const char *k;
	json_t *v;
	json_object_foreach(md, k, v)
	{
		if (!strcmp(k, "method") || !strcmp(k, "format") ||
		    !json_is_string(v))
			continue;
		if (!strcmp(k, "drift_reference"))	/* long: summarize */
			printf("%-12s (training input statistics for drift "
			       "monitoring, %zu bytes)\n", k,
			       strlen(json_string_value(v)));
		else
			printf("%-12s %s\n", k, json_string_value(v));
	}
	json_decref(md);
	pno_safetensors_free(&st);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"pno %s: probabilistic neural operators\n\n"
		"usage: pno <command> [options]\n\n"
		"commands:\n"
		"  generate   make a PDE dataset (HDF5, PDEBench layout)\n"
		"  train      train a model on a dataset\n"
		"  predict    sample a model's predictive distribution at an input\n"
		"  rollout    autoregressive rollout with uncertainty over time series\n"
		"  eval       score a model's predictive distribution on data\n"
		"  calibrate  fit a conformal scale for a model's intervals\n"
		"  gate       judge a model's recorded evaluation against quality gates\n"
		"  info       print a model's architecture and metadata\n"
		"  serve      serve a model repository over HTTP (Open Inference Protocol v2)\n"
		"  keys       manage the API keys of pno serve (add, list, revoke)\n"
		"  bench      run methods x PDEs x seeds from a config; tables, plots\n"
		"  audit      keygen, verify or show the server's audit log\n"
		"  version    print the version\n\n"
		"'pno <command> --help' lists a command's options.\n",
		PNO_VERSION_STRING);
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "pno: libsodium failed to initialize\n");
		return 1;
	}
	pno_log_set(log_stderr, NULL, PNO_LOG_LEVEL_INFO);
	pno_json_init();	/* before any command makes JSON of its own */
	const char *cmd = argv[1];
	/* under mpirun these commands run data-parallel (pno/dist.h); the
	 * others, and every command started without a launcher, stay one
	 * process and never start MPI */
	if (!strcmp(cmd, "train") || !strcmp(cmd, "generate") ||
	    !strcmp(cmd, "bench")) {
		if (pno_dist_init(&argc, &argv) != PNO_STATUS_OK) {
			fprintf(stderr, "pno %s: %s\n", cmd, pno_last_error());
			return 1;
		}
		int rc = run(argc, argv);
		pno_dist_finalize();
		return rc;
	}
	return run(argc, argv);
}

static int run(int argc, char **argv)
{
	const char *cmd = argv[1];
	if (!strcmp(cmd, "bench"))
		return cmd_bench(argc, argv);
	if (!strcmp(cmd, "generate"))
		return cmd_generate(argc, argv);
	if (!strcmp(cmd, "train"))
		return cmd_train(argc, argv);
	if (!strcmp(cmd, "predict"))
		return cmd_predict(argc, argv);
	if (!strcmp(cmd, "rollout"))
		return cmd_rollout(argc, argv);
	if (!strcmp(cmd, "info"))
		return cmd_info(argc, argv);
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc, argv);
	if (!strcmp(cmd, "eval"))
		return cmd_eval(argc, argv);
	if (!strcmp(cmd, "calibrate"))
		return cmd_calibrate(argc, argv);
	if (!strcmp(cmd, "gate"))
		return cmd_gate(argc, argv);
	if (!strcmp(cmd, "keys"))
		return cmd_keys(argc, argv);
	if (!strcmp(cmd, "audit"))
		return cmd_audit(argc, argv);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("pno %s\n", PNO_VERSION_STRING);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "pno: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
