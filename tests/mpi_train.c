/* Data-parallel collectives and training under mpirun (run by
 * tests/mpi_train.sh with 2 ranks). A failed check is counted, not fatal,
 * so the ranks keep meeting in the same collectives; at the end the ranks
 * agree on the verdict and all exit non-zero if any check failed. */
#include "internal.h"
#include "testutil.h"
#include "pno/deeponet.h"
#include "pno/dist.h"
#include "pno/train.h"
#include "pno/vfno.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			failures++;                                           \
			fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", \
				pno_dist_rank(), __FILE__, __LINE__, #cond);  \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
		}                                                             \
	} while (0)

/* The collectives against what each rank can compute alone. */
static void test_collectives(void)
{
	int R = pno_dist_size(), me = pno_dist_rank();
	CHECK(R >= 2, "run under mpirun -np 2 or more (size %d)", R);

	char word[32] = "";
	if (me == R - 1)
		snprintf(word, sizeof word, "from %d", R - 1);
	CHECK(pno_dist_bcast(word, sizeof word, R - 1) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	char want[32];
	snprintf(want, sizeof want, "from %d", R - 1);
	CHECK(!strcmp(word, want), "bcast gave '%s'", word);

	/* sums: rank r contributes r + 1 + i; exact in float and double */
	float f[5];
	double d[5];
	for (int i = 0; i < 5; i++)
		f[i] = (float)(me + 1 + i), d[i] = 0.5 * (me + 1 + i);
	CHECK(pno_dist_allreduce_sum_f32(f, 5) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	CHECK(pno_dist_allreduce_sum_f64(d, 5) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	for (int i = 0; i < 5; i++) {
		double s = R * (R + 1) / 2.0 + (double)R * i;
		CHECK(f[i] == (float)s && d[i] == 0.5 * s,
		      "sum %d: %g %g, want %g", i, f[i], d[i], s);
	}

	/* gather: rank r's int lands at r; gatherv: rank r sends r + 1 ints */
	int mine = 100 + me, all[64] = {0}, v[64], got[64 * 65 / 2] = {0};
	size_t counts[64], total = 0;
	CHECK(pno_dist_gather(all, &mine, sizeof mine, 0) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	for (int r = 0; me == 0 && r < R && r < 64; r++)
		CHECK(all[r] == 100 + r, "gather[%d] = %d", r, all[r]);
	for (int i = 0; i <= me; i++)
		v[i] = me * 1000 + i;
	for (int r = 0; r < R && r < 64; r++)
		counts[r] = (size_t)(r + 1) * sizeof(int), total += r + 1;
	CHECK(pno_dist_gatherv(got, counts, v, (size_t)(me + 1) * sizeof(int),
			       0) == PNO_STATUS_OK, "%s", pno_last_error());
	for (int r = 0, k = 0; me == 0 && r < R && r < 64; r++)
		for (int i = 0; i <= r; i++, k++)
			CHECK(got[k] == r * 1000 + i, "gatherv[%d] = %d", k,
			      got[k]);

	/* agreement: all OK is OK; failures on the last two ranks give every
	 * rank the lower one's status and message */
	CHECK(pno_dist_agree(PNO_STATUS_OK, NULL) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	enum pno_status s = PNO_STATUS_OK;
	if (me == R - 1)
		s = pno__errorf(PNO_STATUS_FORMAT, "late.h5: not HDF5");
	if (me == R - 2)
		s = pno__errorf(PNO_STATUS_SHAPE, "early.h5: bad grid");
	s = pno_dist_agree(s, NULL);
	snprintf(want, sizeof want, "rank %d: ", R - 2);
	CHECK(s == PNO_STATUS_SHAPE, "agreed status %d", (int)s);
	CHECK(!strncmp(pno_last_error(), want, strlen(want)) &&
		      strstr(pno_last_error(), "early.h5: bad grid"),
	      "agreed message '%s'", pno_last_error());
	CHECK(pno_dist_bytes() > 0, "no bytes counted");
}


/* ---- training: the same run on one rank and on several ----
 * `ref FILE` (one process, no mpirun) writes, per method, the gradient of
 * one global batch and the 20 losses and final weights of a short run;
 * `check FILE` (under mpirun) repeats both and compares. Batches of 5 on
 * 2 ranks split 2 + 3 rows; the last batch of each epoch has 1 row, so
 * rank 0 has none there. */
enum { NS = 32, RES = 16, BATCH = 5, NTRAIN = 21, STEPS = 20 };

static const char *const methods[] = {"fno",	  "mc-dropout", "pno-d",
				      "pno-r",	  "pno-r-crps", "vfno",
				      "deeponet"};
#define NMETH ((int)(sizeof methods / sizeof methods[0]))

struct run {
	struct pno_fno m;
	struct pno_vfno v;
	struct pno_deeponet dn;
	float *params, *grads;	/* the first block */
	size_t n;
	double loss[64];
	int nloss;
};

static void on_batch(void *ud, int epoch, int batch, int n_batches,
		     double loss)
{
	struct run *r = ud;
	(void)epoch, (void)batch, (void)n_batches;
	if (r->nloss < 64)
		r->loss[r->nloss++] = loss;
}

static void run_free(struct run *r)
{
	pno_fno_free(&r->m);
	pno_vfno_free(&r->v);
	pno_deeponet_free(&r->dn);
}

/* Train `meth` for `epochs` epochs on n_train samples (a checkpoint or a
 * resume if not NULL). */
static enum pno_status train(struct run *r, const char *meth,
			     const struct pno_dataset *d, int n_train,
			     int epochs, const char *ckpt, const char *resume)
{
	struct pno_fno_arch a = {.dims = 2, .in_ch = 1, .out_ch = 1, .width = 8,
				 .modes1 = 4, .modes2 = 4, .layers = 2,
				 .proj_hidden = 16};
	struct pno_train_opts o;
	struct pno_train_result res;
	enum pno_status s;
	int bmax = BATCH;
	memset(r, 0, sizeof *r);
	pno_train_opts_default(&o);
	o.epochs = epochs;
	o.batch = BATCH;
	o.lr = 3e-3f;
	o.seed = 11;
	o.n_train = n_train;
	o.n_val = 5;
	o.n_test = 5;
	o.checkpoint = ckpt;
	o.resume = resume;
	o.on_batch = on_batch;
	o.ud = r;
	if (!strcmp(meth, "mc-dropout"))
		a.p_hidden = a.p_proj = 0.2f;
	if (!strcmp(meth, "pno-d")) {
		a.p_proj = a.p_fourier = 0.2f;
		o.loss = PNO_LOSS_ENERGY;
		bmax = BATCH * o.ens_samples;
	}
	if (!strncmp(meth, "pno-r", 5)) {
		a.heads = 2;
		o.loss = strcmp(meth, "pno-r") ? PNO_LOSS_CRPS : PNO_LOSS_ENERGY;
	}
	if (!strcmp(meth, "vfno")) {
		struct pno_vfno_opts vo;
		pno_vfno_opts_default(&vo);
		if ((s = pno_vfno_init(&r->v, &a, RES, RES, BATCH, 7, &vo)))
			return s;
		r->params = r->v.var, r->grads = r->v.vgrad, r->n = 2 * r->v.n_var;
		return pno_train_vfno(&r->v, d, &o, &res);
	}
	if (!strcmp(meth, "deeponet")) {
		struct pno_deeponet_arch da = {
			.dims = 2, .in_ch = 1, .out_ch = 1, .branch_width = 16,
			.branch_depth = 2, .trunk_width = 16, .trunk_depth = 2,
			.p = 8};
		if ((s = pno_deeponet_init(&r->dn, &da, RES, RES, BATCH, 7)))
			return s;
		r->params = r->dn.params, r->grads = r->dn.grads;
		r->n = r->dn.n_params;
		return pno_train_deeponet(&r->dn, d, &o, &res);
	}
	if ((s = pno_fno_init(&r->m, &a, RES, RES, bmax, 7)))
		return s;
	snprintf(r->m.method, sizeof r->m.method, "%s", meth);
	r->params = r->m.params, r->grads = r->m.grads, r->n = r->m.n_params;
	return pno_train_fno(&r->m, d, &o, &res);
}

/* ||a - b|| / ||b|| */
static double rel_err(const float *a, const float *b, size_t n)
{
	double e = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		s += (double)b[i] * b[i];
	}
	return sqrt(e / (s > 0 ? s : 1));
}

/* One record: n, then n floats. */
static void put(FILE *fp, const float *x, size_t n)
{
	uint64_t k = n;
	fwrite(&k, sizeof k, 1, fp);
	fwrite(x, sizeof *x, n, fp);
}

static float *get(FILE *fp, size_t n)
{
	uint64_t k = 0;
	float *x = NULL;
	if (fread(&k, sizeof k, 1, fp) != 1 || k != n ||
	    !(x = pno_malloc(n * sizeof *x)) || fread(x, sizeof *x, n, fp) != n) {
		CHECK(0, "reference record of %zu values missing or of %llu",
		      n, (unsigned long long)k);
		pno_free(x);
		return NULL;
	}
	return x;
}

/* Tolerances, float32 throughout: the shards' partial sums are added in
 * another order than one process's (weight gradients sum B P terms), and
 * each shard's weight B_r / B is rounded once: about 1e-7 relative per
 * operation, grown by the sqrt of the terms summed -> 1e-5 for one
 * gradient. Over 20 Adam steps that rounding moves the weights by far
 * less than lr; the losses are asked to agree to 1e-4 relative. */
#define GRAD_TOL 1e-5
#define LOSS_TOL 1e-4

/* `ref` also writes the data as FILE.h5 (Darcy layout); `check FILE
 * file` trains from it opened with pno_dataset_open (each rank reads its
 * rows), `check FILE memory` from the same data in memory. */
static void test_training(const char *mode, const char *file,
			  const char *source)
{
	struct pno_dataset d;
	int ref = !strcmp(mode, "ref");
	char h5[1024];
	FILE *fp = fopen(file, ref ? "wb" : "rb");
	CHECK(fp != NULL, "cannot open %s", file);
	if (!fp)
		return;
	CHECK(ref == (pno_dist_size() == 1), "ref runs alone, check under "
	      "mpirun (%d ranks)", pno_dist_size());
	snprintf(h5, sizeof h5, "%s.h5", file);
	tu_heat_dataset(&d, 2, NS, RES, 2e-3, 5);
	if (ref) {
		struct pno_h5_array a[2] = {
			{"nu", 3, {NS, RES, RES}, d.in},
			{"tensor", 4, {NS, 1, RES, RES}, d.out},
		};
		CHECK(pno_h5_write(h5, a, 2, NULL, 0, 1) == PNO_STATUS_OK, "%s",
		      pno_last_error());
		/* and a copy with a NaN in training sample 3's output */
		char bad[1100];
		snprintf(bad, sizeof bad, "%s.nan.h5", file);
		d.out[3 * RES * RES + 17] = NAN;
		CHECK(pno_h5_write(bad, a, 2, NULL, 0, 1) == PNO_STATUS_OK, "%s",
		      pno_last_error());
		d.out[3 * RES * RES + 17] = 0.0f;	/* unused below */
		pno_dataset_free(&d);
		tu_heat_dataset(&d, 2, NS, RES, 2e-3, 5);
	} else if (source && !strcmp(source, "file")) {
		pno_dataset_free(&d);
		CHECK(pno_dataset_open(&d, h5, NULL) == PNO_STATUS_OK, "%s",
		      pno_last_error());
		if (!d.file)
			return;
	}
	for (int k = 0; k < NMETH; k++) {
		struct run r;
		float loss[STEPS];
		/* one step: the gradient the optimizer was given */
		enum pno_status s = train(&r, methods[k], &d, BATCH, 1, NULL,
					  NULL);
		CHECK(s == PNO_STATUS_OK, "%s: %s", methods[k], pno_last_error());
		if (s != PNO_STATUS_OK) {
			run_free(&r);
			break;
		}
		if (ref) {
			put(fp, r.grads, r.n);
		} else {
			float *g = get(fp, r.n);
			double e = g ? rel_err(r.grads, g, r.n) : 1;
			CHECK(e <= GRAD_TOL, "%s: gradient error %.3g", methods[k], e);
			if (pno_dist_is_root())
				printf("  %-10s gradient of one batch: relative "
				       "error %.2e (data from %s)\n", methods[k], e,
				       source);
			pno_free(g);
		}
		run_free(&r);
		/* 20 steps: 4 epochs of batches 5 5 5 5 1 */
		s = train(&r, methods[k], &d, NTRAIN, 4, NULL, NULL);
		CHECK(s == PNO_STATUS_OK && r.nloss == STEPS, "%s: %d steps: %s",
		      methods[k], r.nloss, pno_last_error());
		for (int i = 0; i < STEPS; i++)
			loss[i] = (float)r.loss[i];
		if (ref) {
			put(fp, loss, STEPS);
			put(fp, r.params, r.n);
		} else {
			float *l = get(fp, STEPS), *w = get(fp, r.n);
			double el = 0, ew = w ? rel_err(r.params, w, r.n) : 1;
			for (int i = 0; l && i < STEPS; i++)
				el = fmax(el, fabs(loss[i] - l[i]) / fabs(l[i]));
			CHECK(l && el <= LOSS_TOL, "%s: loss error %.3g",
			      methods[k], el);
			if (pno_dist_is_root())
				printf("  %-10s 20 steps: max loss error %.2e, "
				       "weights %.2e\n", methods[k], el, ew);
			pno_free(l);
			pno_free(w);
		}
		run_free(&r);
	}
	fclose(fp);
	pno_dataset_free(&d);
}

/* A run stopped by one rank: both resume, rank 1 from a file that is not
 * a checkpoint, rank 0 from a good one. Both must return rank 1's status
 * and message (and not wait for each other). */
static void test_fail_one(const char *bad, const char *good)
{
	struct pno_dataset d;
	struct run r;
	char mine[1000], root[1000];
	tu_heat_dataset(&d, 2, NS, RES, 2e-3, 5);
	enum pno_status s = train(&r, "fno", &d, NTRAIN, 2, NULL,
				  pno_dist_rank() == 1 ? bad : good);
	snprintf(mine, sizeof mine, "%s", pno_last_error());
	snprintf(root, sizeof root, "%s", mine);
	CHECK(pno_dist_bcast(root, sizeof root, 0) == PNO_STATUS_OK, "%s",
	      pno_last_error());
	CHECK(s == PNO_STATUS_FORMAT || s == PNO_STATUS_NOTFOUND,
	      "status %s: %s", pno_status_name(s), mine);
	CHECK(!strncmp(mine, "rank 1: ", 8) && strstr(mine, bad),
	      "message '%s'", mine);
	CHECK(!strcmp(mine, root), "rank 0 says '%s', this rank '%s'", root,
	      mine);
	if (pno_dist_is_root())
		printf("  both ranks: %s: %s\n", pno_status_name(s), mine);
	run_free(&r);
	pno_dataset_free(&d);
}

/* A NaN that only one rank reads (training sample 3 of the file, opened
 * with pno_dataset_open): found while computing the normalization of a
 * fresh run, and inside a training step of a resumed run (the resume
 * skips the normalization); either way every rank returns NONFINITE with
 * the same message naming the sample. */
static void test_fail_data(const char *bad, const char *ck)
{
	for (int resume = 0; resume < 2; resume++) {
		struct pno_dataset d;
		struct run r;
		char mine[1000], root[1000];
		CHECK(pno_dataset_open(&d, bad, NULL) == PNO_STATUS_OK, "%s",
		      pno_last_error());
		enum pno_status s = train(&r, "fno", &d, NTRAIN, 4, NULL,
					  resume ? ck : NULL);
		snprintf(mine, sizeof mine, "%s", pno_last_error());
		snprintf(root, sizeof root, "%s", mine);
		CHECK(pno_dist_bcast(root, sizeof root, 0) == PNO_STATUS_OK,
		      "%s", pno_last_error());
		CHECK(s == PNO_STATUS_NONFINITE && strstr(mine, "sample 3 ") &&
			      !strncmp(mine, "rank ", 5),
		      "%s: %s: %s", resume ? "resumed" : "fresh",
		      pno_status_name(s), mine);
		CHECK(!strcmp(mine, root), "rank 0 says '%s', this rank '%s'",
		      root, mine);
		if (pno_dist_is_root())
			printf("  %s run, both ranks: %s: %s\n",
			       resume ? "resumed" : "fresh", pno_status_name(s),
			       mine);
		run_free(&r);
		pno_dataset_free(&d);
	}
}

/* Checkpoints do not depend on the number of ranks: `ckpt` writes one
 * after 2 of the 4 epochs of the reference run; `resume` (another number
 * of ranks) finishes the run and must meet the reference's last 10 losses
 * and final fno weights. */
static void test_resume(const char *mode, const char *file, const char *ck)
{
	struct pno_dataset d;
	struct run r;
	int resume = !strcmp(mode, "resume");
	tu_heat_dataset(&d, 2, NS, RES, 2e-3, 5);
	enum pno_status s = train(&r, "fno", &d, NTRAIN, resume ? 4 : 2,
				  resume ? NULL : ck, resume ? ck : NULL);
	CHECK(s == PNO_STATUS_OK, "%s: %s", mode, pno_last_error());
	if (resume && s == PNO_STATUS_OK) {
		FILE *fp = fopen(file, "rb");
		CHECK(fp != NULL, "cannot open %s", file);
		float *g = fp ? get(fp, r.n) : NULL;	/* fno's gradient */
		float *l = fp ? get(fp, STEPS) : NULL;
		float *w = fp ? get(fp, r.n) : NULL;
		double el = 0, ew = w ? rel_err(r.params, w, r.n) : 1;
		CHECK(r.nloss == STEPS / 2, "%d steps after resuming", r.nloss);
		for (int i = 0; l && i < r.nloss && i < STEPS / 2; i++)
			el = fmax(el, fabs(r.loss[i] - l[STEPS / 2 + i]) /
					      fabs(l[STEPS / 2 + i]));
		CHECK(l && el <= LOSS_TOL && ew <= GRAD_TOL * 10,
		      "resumed: loss error %.3g, weights %.3g", el, ew);
		if (pno_dist_is_root())
			printf("  resumed on %d rank(s): max loss error %.2e, "
			       "weights %.2e\n", pno_dist_size(), el, ew);
		pno_free(g);
		pno_free(l);
		pno_free(w);
		fclose(fp);
	}
	run_free(&r);
	pno_dataset_free(&d);
}

int main(int argc, char **argv)
{
	if (pno_dist_init(&argc, &argv) != PNO_STATUS_OK) {
		fprintf(stderr, "mpi_train: %s\n", pno_last_error());
		return 1;
	}
	const char *what = argc > 1 ? argv[1] : "collectives";
	if (!strcmp(what, "collectives"))
		test_collectives();
	else if ((!strcmp(what, "ref") || !strcmp(what, "check")) && argc > 2)
		test_training(what, argv[2], argc > 3 ? argv[3] : "memory");
	else if (!strcmp(what, "fail_one") && argc > 3)
		test_fail_one(argv[2], argv[3]);
	else if (!strcmp(what, "fail_data") && argc > 3)
		test_fail_data(argv[2], argv[3]);
	else if ((!strcmp(what, "ckpt") || !strcmp(what, "resume")) &&
		 argc > 3)
		test_resume(what, argv[2], argv[3]);
	else
		CHECK(0, "unknown test '%s'", what);
	enum pno_status s = pno_dist_agree(
		failures ? pno__errorf(PNO_STATUS_INTERNAL, "%d checks failed",
				       failures)
			 : PNO_STATUS_OK, NULL);
	if (pno_dist_is_root())
		printf("mpi_train %s: %d ranks: %s\n", what, pno_dist_size(),
		       s == PNO_STATUS_OK ? "ok" : pno_last_error());
	pno_dist_finalize();
	return s == PNO_STATUS_OK ? 0 : 1;
}
