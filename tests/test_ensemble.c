/* Deep ensembles: distinct members, the one-file format (round trip to the
 * bit, refusals of other methods, bad shapes, truncation), the mixture's
 * summaries against brute force, the exact variance decomposition, a short
 * training where the ensemble mean beats the average member (Jensen),
 * resume from per-member checkpoints to the bit, and
 * allocation-failure loops. */
#include "testutil.h"
#include "pno/ensemble.h"
#include "pno/pde.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { X = 32 };



static struct pno_fno_arch arch(int heads)
{
	return (struct pno_fno_arch){.dims = 1, .in_ch = 1, .out_ch = 1,
				     .width = 8, .modes1 = 6, .modes2 = 1,
				     .layers = 2, .proj_hidden = 16,
				     .heads = heads};
}

/* Give the members different, non-trivial normalizations and output
 * biases so the files carry per-member state and sigma is not tiny. */
static void perturb(struct pno_ensemble *e)
{
	for (int k = 0; k < e->K; k++) {
		e->m[k].norm.in_mean[0] = 0.1f * k;
		e->m[k].norm.in_std[0] = 1.0f + 0.25f * k;
		e->m[k].norm.out_mean[0] = -0.05f * k;
		e->m[k].norm.out_std[0] = 0.5f + 0.1f * k;
	}
}

/* Different seeds give different members; the same seed the same ones. */
static void test_members_differ(void **state)
{
	(void)state;
	struct pno_ensemble e, e2;
	struct pno_fno_arch a = arch(1);
	assert_status(pno_ensemble_init(&e, 4, &a, X, 1, 2, 7), PNO_STATUS_OK);
	assert_int_equal(e.K, 4);
	for (int k = 0; k < e.K; k++) {
		assert_string_equal(e.m[k].method, "fno");
		for (int j = 0; j < k; j++) {
			size_t same = 0;
			for (size_t i = 0; i < e.m[k].n_params; i++)
				same += e.m[k].params[i] == e.m[j].params[i];
			/* independent weights: next to none coincide */
			assert_true(same < e.m[k].n_params / 100);
		}
	}
	assert_status(pno_ensemble_init(&e2, 4, &a, X, 1, 2, 7), PNO_STATUS_OK);
	for (int k = 0; k < e.K; k++)
		assert_memory_equal(e.m[k].params, e2.m[k].params,
				    e.m[k].n_params * sizeof(float));
	pno_ensemble_free(&e2);
	assert_status(pno_ensemble_init(&e2, 4, &a, X, 1, 2, 8), PNO_STATUS_OK);
	assert_true(memcmp(e.m[0].params, e2.m[0].params,
			   e.m[0].n_params * sizeof(float)));
	pno_ensemble_free(&e2);
	pno_ensemble_free(&e);
	pno_ensemble_free(&e);	/* safe twice */

	assert_status(pno_ensemble_init(&e, 1, &a, X, 1, 2, 7),
		      PNO_STATUS_INVALID);
	assert_err_has("1 members");
	assert_null(e.m);
	assert_status(pno_ensemble_init(&e, 65, &a, X, 1, 2, 7),
		      PNO_STATUS_INVALID);
	a.width = 0;
	assert_status(pno_ensemble_init(&e, 3, &a, X, 1, 2, 7),
		      PNO_STATUS_INVALID);
	assert_null(e.m);
	a = arch(2);
	assert_status(pno_ensemble_init(&e, 2, &a, X, 1, 2, 7), PNO_STATUS_OK);
	assert_string_equal(e.m[1].method, "pno-r");
	pno_ensemble_free(&e);
}

static void assert_same_prediction(const struct pno_prediction *p,
				   const struct pno_prediction *q)
{
	size_t N = (size_t)p->C * p->P;
	assert_int_equal(p->S, q->S);
	assert_int_equal(p->nq, q->nq);
	assert_memory_equal(p->samples, q->samples, p->S * N * sizeof(float));
	assert_memory_equal(p->mean, q->mean, N * sizeof(float));
	assert_memory_equal(p->std, q->std, N * sizeof(float));
	assert_memory_equal(p->quantiles, q->quantiles,
			    p->nq * N * sizeof(float));
	assert_memory_equal(p->aleatoric, q->aleatoric, N * sizeof(float));
	assert_memory_equal(p->epistemic, q->epistemic, N * sizeof(float));
}

/* Save and load: the same predictions bit for bit, per-member state kept,
 * the recorded grid used for X <= 0, the metadata as documented. */
static void test_save_load(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_ensemble e, e2;
	struct pno_prediction p, p2;
	struct pno_fno_arch a = arch(2);
	float q[3] = {0.1f, 0.5f, 0.9f};
	const char *path = tu_tmp_path("ens.safetensors");
	tu_heat_dataset(&d, 1, 2, X, 2e-3, 9);
	assert_status(pno_ensemble_init(&e, 3, &a, X, 1, 4, 3), PNO_STATUS_OK);
	perturb(&e);
	assert_status(pno_ensemble_save(&e, path, "{\"provenance\": \"test\"}"),
		      PNO_STATUS_OK);
	assert_int_equal(tu_temps_left(path), 0);
	assert_status(pno_ensemble_load(&e2, path, 0, 0, 2), PNO_STATUS_OK);
	assert_int_equal(e2.K, 3);
	assert_int_equal(e2.m[0].X, X);
	assert_int_equal(e2.m[2].Bmax, 2);
	for (int k = 0; k < 3; k++) {
		assert_string_equal(e2.m[k].method, "pno-r");
		assert_memory_equal(&e.m[k].norm, &e2.m[k].norm,
				    sizeof e.m[k].norm);
		assert_memory_equal(e.m[k].params, e2.m[k].params,
				    e.m[k].n_params * sizeof(float));
	}
	assert_status(pno_ensemble_predict(&e, d.in, 30, 5, q, 3, &p),
		      PNO_STATUS_OK);
	assert_status(pno_ensemble_predict(&e2, d.in, 30, 5, q, 3, &p2),
		      PNO_STATUS_OK);
	assert_same_prediction(&p, &p2);
	pno_prediction_free(&p);
	pno_prediction_free(&p2);

	/* the metadata as documented */
	struct pno_safetensors sf;
	assert_status(pno_safetensors_read(&sf, path), PNO_STATUS_OK);
	assert_int_equal(sf.n, 3 * pno_fno_tensor_count(&e.m[0]));
	assert_non_null(pno_safetensors_find(&sf, "member.2.proj2.weight"));
	assert_non_null(strstr(sf.metadata_json, "\"method\":\"ensemble\""));
	assert_non_null(strstr(sf.metadata_json, "\"members\":\"3\""));
	assert_non_null(strstr(sf.metadata_json, "\"provenance\":\"test\""));
	assert_non_null(strstr(sf.metadata_json, "\"grid\":\"[32, 1]\""));
	pno_safetensors_free(&sf);

	/* the caller cannot overwrite the model's own keys */
	assert_status(pno_ensemble_save(&e, path, "{\"method\": \"fno\"}"),
		      PNO_STATUS_INVALID);
	assert_err_has("method");
	assert_status(pno_ensemble_save(&e, path, "{\"x\": 1}"),
		      PNO_STATUS_INVALID);
	pno_ensemble_free(&e2);
	pno_ensemble_free(&e);
	pno_dataset_free(&d);
	unlink(path);
}

/* A plain FNO file is not an ensemble and an ensemble file is not an
 * FNO: each loader names the method and points to the other. */
static void test_cross_method(void **state)
{
	(void)state;
	struct pno_fno m;
	struct pno_ensemble e;
	struct pno_fno_arch a = arch(1);
	const char *fpath = tu_tmp_path("plain_fno.safetensors");
	const char *epath = tu_tmp_path("ens_cross.safetensors");
	assert_status(pno_fno_init(&m, &a, X, 1, 2, 1), PNO_STATUS_OK);
	assert_status(pno_fno_save(&m, fpath, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
	assert_status(pno_ensemble_load(&e, fpath, 0, 0, 2),
		      PNO_STATUS_UNSUPPORTED);
	assert_err_has("\"fno\"");
	assert_err_has("load it with its own method");
	assert_null(e.m);

	assert_status(pno_ensemble_init(&e, 2, &a, X, 1, 2, 1), PNO_STATUS_OK);
	assert_status(pno_ensemble_save(&e, epath, NULL), PNO_STATUS_OK);
	pno_ensemble_free(&e);
	assert_status(pno_fno_load(&m, epath, 0, 0, 2), PNO_STATUS_UNSUPPORTED);
	assert_err_has("\"ensemble\"");
	assert_err_has("load it with its own method");
	unlink(fpath);
	unlink(epath);
}

/* Rewrite `src` into `dst` by hand with pno_safetensors_write: tensor
 * `bad` replaced by a (2, 3) one (or dropped if drop), or an extra tensor
 * added if bad is NULL; same metadata. */
static void rewrite(const char *src, const char *dst, const char *bad,
		    int drop)
{
	struct pno_safetensors sf;
	static const float junk[6] = {1, 2, 3, 4, 5, 6};
	assert_status(pno_safetensors_read(&sf, src), PNO_STATUS_OK);
	struct pno_tensor_view *v = calloc((size_t)sf.n + 1, sizeof *v);
	int n = 0;
	for (int i = 0; i < sf.n; i++) {
		const struct pno_st_entry *t = &sf.t[i];
		if (bad && !strcmp(t->name, bad)) {
			if (drop)
				continue;
			v[n] = (struct pno_tensor_view){bad, 2, {2, 3}, junk};
		} else {
			v[n].name = t->name;
			v[n].ndim = t->ndim;
			memcpy(v[n].shape, t->shape, sizeof v[n].shape);
			v[n].data = t->data;
		}
		n++;
	}
	if (!bad)
		v[n++] = (struct pno_tensor_view){"member.9.extra", 1, {6}, junk};
	assert_status(pno_safetensors_write(dst, v, n, sf.metadata_json),
		      PNO_STATUS_OK);
	free(v);
	pno_safetensors_free(&sf);
}

/* Damaged files: a member's tensor of the wrong shape is SHAPE naming the
 * member and the tensor; a missing tensor or a stray one FORMAT; a
 * truncated file FORMAT; nothing is left allocated after any failure. */
static void test_bad_files(void **state)
{
	(void)state;
	struct pno_ensemble e;
	struct pno_fno_arch a = arch(1);
	const char *path = tu_tmp_path("ens_good.safetensors");
	const char *bad = tu_tmp_path("ens_bad.safetensors");
	assert_status(pno_ensemble_init(&e, 3, &a, X, 1, 2, 1), PNO_STATUS_OK);
	assert_status(pno_ensemble_save(&e, path, NULL), PNO_STATUS_OK);
	pno_ensemble_free(&e);

	tu_alloc_install();
	long live0 = tu_alloc_live();
	rewrite(path, bad, "member.1.pointwise.0.weight", 0);
	assert_status(pno_ensemble_load(&e, bad, 0, 0, 2), PNO_STATUS_SHAPE);
	assert_err_has("member 1");
	assert_err_has("member.1.pointwise.0.weight");
	assert_err_has("(2,3)");
	assert_err_has("(8,8)");
	assert_null(e.m);
	assert_int_equal(tu_alloc_live(), live0);

	rewrite(path, bad, "member.2.proj1.bias", 1);
	assert_status(pno_ensemble_load(&e, bad, 0, 0, 2), PNO_STATUS_FORMAT);
	assert_err_has("member.2.proj1.bias");
	assert_err_has("missing");
	assert_int_equal(tu_alloc_live(), live0);

	rewrite(path, bad, NULL, 0);
	assert_status(pno_ensemble_load(&e, bad, 0, 0, 2), PNO_STATUS_FORMAT);
	assert_err_has("tensors");
	assert_int_equal(tu_alloc_live(), live0);

	/* truncated: the first half of the file */
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)size);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	long cuts[3] = {size / 2, size - 4, 6};
	for (int c = 0; c < 3; c++) {
		f = fopen(bad, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(buf, 1, (size_t)cuts[c], f),
				 (size_t)cuts[c]);
		fclose(f);
		assert_status(pno_ensemble_load(&e, bad, 0, 0, 2),
			      PNO_STATUS_FORMAT);
		assert_null(e.m);
		assert_int_equal(tu_alloc_live(), live0);
	}
	free(buf);
	assert_status(pno_ensemble_load(&e, tu_tmp_path("no_such.safetensors"),
					0, 0, 2), PNO_STATUS_NOTFOUND);
	tu_alloc_uninstall();
	unlink(path);
	unlink(bad);
}

/* Single-head members: sample i is member (i mod K)'s output exactly, the
 * predictive mean is the average of the members' outputs when S is a
 * multiple of K, the spread is the members' disagreement, and the
 * decomposition is (0, variance of the members' outputs). */
static void test_predict_mean(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_ensemble e;
	struct pno_prediction p;
	struct pno_fno_arch a = arch(1);
	const int K = 3;
	tu_heat_dataset(&d, 1, 1, X, 2e-3, 9);
	assert_status(pno_ensemble_init(&e, K, &a, X, 1, 2, 11), PNO_STATUS_OK);
	perturb(&e);
	float out[3][X];
	for (int k = 0; k < K; k++)
		memcpy(out[k], pno_fno_forward(&e.m[k], d.in, 1), sizeof out[k]);
	const int Ss[3] = {3, 12, 30};
	for (int t = 0; t < 3; t++) {
		const int S = Ss[t];
		assert_status(pno_ensemble_predict(&e, d.in, S, 1, NULL, 0, &p),
			      PNO_STATUS_OK);
		for (int i = 0; i < S; i++)
			assert_memory_equal(p.samples + (size_t)i * X,
					    out[i % K], sizeof out[0]);
		double worst = 0;
		for (int j = 0; j < X; j++) {
			double m = 0, v = 0;
			for (int k = 0; k < K; k++)
				m += out[k][j];
			m /= K;
			for (int k = 0; k < K; k++)
				v += (out[k][j] - m) * (out[k][j] - m);
			v /= K;
			/* float summary of S floats: a few ulps of the
			 * members' magnitude */
			double tol = 1e-6 * (1 + fabs(out[0][j]) +
					     fabs(out[1][j]) + fabs(out[2][j]));
			tu_assert_close(p.mean[j], m, tol);
			worst = fmax(worst, fabs(p.mean[j] - m));
			assert_true(p.aleatoric[j] == 0.0f);
			tu_assert_close(p.epistemic[j], v, 1e-6 * (v + 1e-12));
			/* samples: S copies of each member, divisor S - 1 */
			tu_assert_close((double)p.std[j] * p.std[j],
					v * S / (S - 1), 1e-5 * v + 1e-12);
		}
		if (t == 2)
			print_message("K = 3, S = %d: |mean - brute-force "
				      "average| <= %.2e\n", S, worst);
		pno_prediction_free(&p);
	}
	pno_ensemble_free(&e);
	pno_dataset_free(&d);
}

/* Mean-scale members: the decomposition is exact from the members
 * (computed here independently in double), total = aleatoric + epistemic,
 * and many samples of the mixture reproduce its mean and variance. Same
 * seed: same bits; a prefix of the samples does not depend on S. */
static void test_decomposition(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_ensemble e;
	struct pno_prediction p, p2;
	struct pno_fno_arch a = arch(2);
	const int K = 4;
	float q[2] = {0.25f, 0.75f};
	tu_heat_dataset(&d, 1, 1, X, 2e-3, 9);
	assert_status(pno_ensemble_init(&e, K, &a, X, 1, 2, 21), PNO_STATUS_OK);
	perturb(&e);
	float mu[4][X], sg[4][X];
	for (int k = 0; k < K; k++) {
		const float *o = pno_fno_forward(&e.m[k], d.in, 1);
		memcpy(mu[k], o, sizeof mu[k]);
		memcpy(sg[k], o + X, sizeof sg[k]);
	}
	const int S = getenv("PNO_SANITIZED") ? 4000 : 40000;
	assert_status(pno_ensemble_predict(&e, d.in, S, 9, q, 2, &p),
		      PNO_STATUS_OK);
	double worst_mean = 0, worst_var = 0;
	for (int j = 0; j < X; j++) {
		double al = 0, m = 0, ep = 0;
		for (int k = 0; k < K; k++) {
			al += (double)sg[k][j] * sg[k][j] / K;
			m += (double)mu[k][j] / K;
		}
		for (int k = 0; k < K; k++)
			ep += (mu[k][j] - m) * (mu[k][j] - m) / K;
		tu_assert_close(p.aleatoric[j], al, 1e-6 * al);
		tu_assert_close(p.epistemic[j], ep, 1e-6 * ep + 1e-12);
		assert_true(p.aleatoric[j] > 0 && p.epistemic[j] > 0);
		double tot = (double)p.aleatoric[j] + p.epistemic[j];
		/* the mixture's law of total variance vs the samples: the
		 * mean errs by sqrt(tot / S), the variance by about
		 * sqrt(2 / S) relative (kurtosis of a Gaussian mixture
		 * stays near 3 here); allow 5 of each */
		double em = fabs(p.mean[j] - m) / sqrt(tot / S);
		double ev = fabs((double)p.std[j] * p.std[j] - tot) / tot;
		worst_mean = fmax(worst_mean, em);
		worst_var = fmax(worst_var, ev);
		assert_true(em < 5);
		assert_true(ev < 5 * sqrt(2.0 / S) * 1.5);
		/* quartiles bracket the mean */
		assert_true(p.quantiles[j] < p.mean[j] &&
			    p.mean[j] < p.quantiles[X + j]);
	}
	print_message("K = 4 pno-r members, S = %d: mean off by <= %.2f "
		      "standard errors, sample variance vs aleatoric + "
		      "epistemic <= %.2f%%\n", S, worst_mean, 100 * worst_var);

	assert_status(pno_ensemble_predict(&e, d.in, 10, 9, q, 2, &p2),
		      PNO_STATUS_OK);
	assert_memory_equal(p.samples, p2.samples, 10 * X * sizeof(float));
	assert_memory_equal(p.aleatoric, p2.aleatoric, X * sizeof(float));
	pno_prediction_free(&p2);
	assert_status(pno_ensemble_predict(&e, d.in, 10, 10, q, 2, &p2),
		      PNO_STATUS_OK);
	assert_true(memcmp(p.samples, p2.samples, 10 * X * sizeof(float)));
	pno_prediction_free(&p2);
	pno_prediction_free(&p);

	/* bad requests leave *p zeroed */
	assert_status(pno_ensemble_predict(&e, d.in, 0, 1, q, 2, &p),
		      PNO_STATUS_INVALID);
	assert_err_has("--samples");
	assert_null(p.samples);
	q[0] = 1.0f;
	assert_status(pno_ensemble_predict(&e, d.in, 5, 1, q, 2, &p),
		      PNO_STATUS_INVALID);
	assert_status(pno_ensemble_predict(&e, NULL, 5, 1, q, 2, &p),
		      PNO_STATUS_INVALID);
	pno_ensemble_free(&e);
	assert_status(pno_ensemble_predict(&e, d.in, 5, 1, q, 1, &p),
		      PNO_STATUS_INVALID);
	pno_dataset_free(&d);
}

/* K = 3 fno members trained briefly on heat data: each learns, they end
 * different, and the ensemble mean's test relative L2 is at most the
 * average member's (the triangle inequality per sample: Jensen for the
 * norm). The ensemble figure is checked against a brute-force recompute. */
static void test_train(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_ensemble e;
	struct pno_train_opts o;
	struct pno_ensemble_result *r = malloc(sizeof *r);
	struct pno_fno_arch a = arch(1);
	const int N = 200, ntest = 40;
	tu_heat_dataset(&d, 1, N, X, 2e-3, 9);
	assert_status(pno_ensemble_init(&e, 3, &a, X, 1, 20, 4), PNO_STATUS_OK);
	pno_train_opts_default(&o);
	o.epochs = 25;
	o.batch = 10;
	o.lr = 3e-3f;
	o.step_size = 10;
	o.n_train = N - ntest - 10;
	o.n_val = 10;
	o.n_test = ntest;
	o.seed = 5;
	double before;
	assert_status(pno_ensemble_eval_rel_l2(&e, &d, N - ntest, ntest,
					       &before), PNO_STATUS_OK);
	assert_status(pno_ensemble_train(&e, &d, &o, r), PNO_STATUS_OK);
	assert_int_equal(r->K, 3);
	for (int k = 0; k < 3; k++) {
		print_message("member %d: test rel L2 %.4e (%d epochs, %.2f s)\n",
			      k, r->member[k].test_rel_l2,
			      r->member[k].epochs_run, r->member[k].seconds);
		assert_true(r->member[k].test_rel_l2 < 0.5 * before);
	}
	print_message("untrained ensemble %.4e; trained: ensemble mean %.4e, "
		      "members' mean %.4e (ratio %.3f), %.2f s\n", before,
		      r->test_rel_l2, r->mean_member_test_rel_l2,
		      r->test_rel_l2 / r->mean_member_test_rel_l2, r->seconds);
	assert_true(r->test_rel_l2 <= r->mean_member_test_rel_l2);
	assert_true(memcmp(e.m[0].params, e.m[1].params,
			   e.m[0].n_params * sizeof(float)));

	/* brute force: average the members' forwards, score each sample */
	double sum = 0;
	for (int n = N - ntest; n < N; n++) {
		double avg[X] = {0}, e2 = 0, y2 = 0;
		for (int k = 0; k < 3; k++) {
			const float *out =
				pno_fno_forward(&e.m[k], d.in + (size_t)n * X, 1);
			for (int i = 0; i < X; i++)
				avg[i] += out[i] / 3.0;
		}
		for (int i = 0; i < X; i++) {
			double y = d.out[(size_t)n * X + i];
			e2 += (avg[i] - y) * (avg[i] - y);
			y2 += y * y;
		}
		sum += sqrt(e2 / y2);
	}
	/* float vs double averaging of the members: relative 1e-5 */
	tu_assert_close(r->test_rel_l2, sum / ntest, 1e-5 * r->test_rel_l2);

	/* pno-r members train by CRPS; the ensemble figure scores the
	 * average of the mean heads */
	pno_ensemble_free(&e);
	a = arch(2);
	assert_status(pno_ensemble_init(&e, 2, &a, X, 1, 20, 4), PNO_STATUS_OK);
	o.loss = PNO_LOSS_CRPS;
	o.epochs = 5;
	assert_status(pno_ensemble_train(&e, &d, &o, r), PNO_STATUS_OK);
	print_message("pno-r K = 2, 5 epochs CRPS: members %.4e %.4e, "
		      "ensemble mean %.4e\n", r->member[0].test_rel_l2,
		      r->member[1].test_rel_l2, r->test_rel_l2);
	assert_true(r->test_rel_l2 < 0.5 * before);
	assert_true(r->test_rel_l2 <= r->mean_member_test_rel_l2);
	/* the wrong loss for the members is refused by the trainer, naming
	 * the member */
	o.loss = PNO_LOSS_REL_L2;
	assert_true(pno_ensemble_train(&e, &d, &o, r) != PNO_STATUS_OK);
	assert_err_has("ensemble member 0");

	/* checkpoints: one file per member. 4 epochs straight equal 2
	 * epochs with checkpoints, then a resume to 4 in which member 0
	 * continues from its file and member 1 (whose file is removed, as if
	 * the run had stopped before reaching it) starts afresh: bit for bit */
	struct pno_ensemble e2;
	char ck[4096], ck1[4096 + 16];
	snprintf(ck, sizeof ck, "%s", tu_tmp_path("ens_ck"));
	snprintf(ck1, sizeof ck1, "%s.member1", ck);
	a = arch(1);
	o.loss = PNO_LOSS_REL_L2;
	o.epochs = 4;
	o.checkpoint = o.resume = NULL;
	pno_ensemble_free(&e);
	assert_status(pno_ensemble_init(&e, 2, &a, X, 1, 20, 4), PNO_STATUS_OK);
	assert_status(pno_ensemble_train(&e, &d, &o, r), PNO_STATUS_OK);
	assert_status(pno_ensemble_init(&e2, 2, &a, X, 1, 20, 4), PNO_STATUS_OK);
	o.epochs = 2;
	o.checkpoint = ck;
	assert_status(pno_ensemble_train(&e2, &d, &o, r), PNO_STATUS_OK);
	assert_int_equal(remove(ck1), 0);
	pno_ensemble_free(&e2);
	assert_status(pno_ensemble_init(&e2, 2, &a, X, 1, 20, 4), PNO_STATUS_OK);
	o.epochs = 4;
	o.checkpoint = NULL;
	o.resume = ck;
	assert_status(pno_ensemble_train(&e2, &d, &o, r), PNO_STATUS_OK);
	for (int k = 0; k < 2; k++)
		assert_memory_equal(e.m[k].params, e2.m[k].params,
				    e.m[k].n_params * sizeof(float));
	/* a resume path without member 0's file is refused, not a fresh
	 * start */
	o.resume = tu_tmp_path("ens_no_such_ck");
	assert_status(pno_ensemble_train(&e2, &d, &o, r), PNO_STATUS_NOTFOUND);
	assert_err_has(".member0");
	snprintf(ck1, sizeof ck1, "%s.member0", ck);
	remove(ck1);
	pno_ensemble_free(&e2);
	free(r);
	pno_ensemble_free(&e);
	pno_dataset_free(&d);
}

/* Fail every allocation of init, save, load and predict in turn: a clean
 * NOMEM, nothing leaked, *e zeroed, no file left half-written. */
static void test_alloc_failure(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_fno_arch a = arch(2);
	const char *path = tu_tmp_path("ens_alloc.safetensors");
	const char *path2 = tu_tmp_path("ens_alloc2.safetensors");
	struct pno_ensemble e, e2;
	struct pno_prediction p;
	float q[1] = {0.5f};
	long k, n_init, n_load;
	tu_heat_dataset(&d, 1, 1, X, 2e-3, 9);
	unlink(path2);
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_ensemble_init(&e, 3, &a, X, 1, 2, 1),
				  live0))
			break;
		assert_null(e.m);
		assert_int_equal(e.K, 0);
	}
	n_init = k;
	tu_alloc_reset(0);
	assert_status(pno_ensemble_save(&e, path, NULL), PNO_STATUS_OK);
	long live1 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_ensemble_save(&e, path2, NULL), live1))
			break;
		assert_int_equal(access(path2, F_OK), -1);
		assert_int_equal(tu_temps_left(path2), 0);
	}
	tu_alloc_reset(0);
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_ensemble_load(&e2, path, 0, 0, 2), live1))
			break;
		assert_null(e2.m);
	}
	n_load = k;
	tu_alloc_reset(0);
	pno_ensemble_free(&e2);
	assert_int_equal(tu_alloc_live(), live1);
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_ensemble_predict(&e, d.in, 7, 1, q, 1, &p),
				  live1))
			break;
		assert_null(p.samples);
	}
	tu_alloc_reset(0);
	pno_prediction_free(&p);
	pno_ensemble_free(&e);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	print_message("allocation points: init %ld, load %ld\n", n_init - 1,
		      n_load - 1);
	pno_dataset_free(&d);
	unlink(path);
	unlink(path2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_members_differ),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_cross_method),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_predict_mean),
		cmocka_unit_test(test_decomposition),
		cmocka_unit_test(test_train),
		cmocka_unit_test(test_alloc_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
