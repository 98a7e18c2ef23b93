/* Predictions into caller buffers (pno_model_predict_into): every method's
 * answers against the reference path (pno_model_predict, one input per
 * call) to the bit, the same bits whatever the batch composition (which
 * inputs share a call, in which order), the size of the
 * difference where the spectral GEMM path rounds by batch shape, no
 * allocation in a call, the allocation-failure loop of the workspace, and
 * bad arguments. Models are small random-weight networks written to files
 * and loaded through the generic interface, as the server does. */
#include "testutil.h"
#include "pno/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { X = 32, BMAX = 4, SMAX = 12, NB = 7 };

static const char *methods[] = {"fno", "pno-d", "pno-r", "mc-dropout",
				"vfno", "ensemble", "deeponet"};
#define NMETHODS ((int)(sizeof methods / sizeof methods[0]))

static const char *model_path(const char *method)
{
	static char p[1100];
	char name[64];
	snprintf(name, sizeof name, "pi_%s.safetensors", method);
	snprintf(p, sizeof p, "%s", tu_tmp_path(name));
	return p;
}

/* Write a random-weight model of `method` (once per run). */
static void write_model(const char *method)
{
	const char *path = model_path(method);
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = 8, .modes1 = 6, .modes2 = 1,
				 .layers = 2, .proj_hidden = 16};
	if (!strcmp(method, "pno-r"))
		a.heads = 2;
	else if (!strcmp(method, "pno-d"))
		a.heads = 2, a.p_proj = 0.2f, a.p_fourier = 0.2f;
	else if (!strcmp(method, "mc-dropout"))
		a.p_proj = 0.2f, a.p_hidden = 0.2f;
	if (!strcmp(method, "vfno")) {
		struct pno_vfno v = {0};
		struct pno_vfno_opts vo;
		pno_vfno_opts_default(&vo);
		vo.sigma_init = 0.3f;
		assert_status(pno_vfno_init(&v, &a, X, 1, 4, 3, &vo),
			      PNO_STATUS_OK);
		assert_status(pno_vfno_save(&v, path, NULL), PNO_STATUS_OK);
		pno_vfno_free(&v);
	} else if (!strcmp(method, "ensemble")) {
		struct pno_ensemble e = {0};
		a.heads = 2;
		assert_status(pno_ensemble_init(&e, 3, &a, X, 1, 4, 3),
			      PNO_STATUS_OK);
		assert_status(pno_ensemble_save(&e, path, NULL), PNO_STATUS_OK);
		pno_ensemble_free(&e);
	} else if (!strcmp(method, "deeponet")) {
		struct pno_deeponet d = {0};
		struct pno_deeponet_arch da = {
			.dims = 1, .in_ch = 1, .out_ch = 1, .branch_width = 16,
			.branch_depth = 1, .trunk_width = 16, .trunk_depth = 1,
			.p = 8};
		assert_status(pno_deeponet_init(&d, &da, X, 1, 4, 3),
			      PNO_STATUS_OK);
		assert_status(pno_deeponet_save(&d, path, NULL), PNO_STATUS_OK);
		pno_deeponet_free(&d);
	} else {
		struct pno_fno f = {0};
		assert_status(pno_fno_init(&f, &a, X, 1, 4, 3), PNO_STATUS_OK);
		snprintf(f.method, sizeof f.method, "%s", method);
		assert_status(pno_fno_save(&f, path, NULL), PNO_STATUS_OK);
		pno_fno_free(&f);
	}
}

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < NMETHODS; i++)
		write_model(methods[i]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NMETHODS; i++)
		unlink(model_path(methods[i]));
	return 0;
}

/* every spectral layer of the model on `path` */
static void set_path(struct pno_model *m, enum pno_spectral_path path)
{
	if (!strcmp(m->method, "deeponet"))
		return;
	if (!strcmp(m->method, "ensemble")) {
		for (int k = 0; k < m->ens.K; k++)
			assert_status(pno_spectral_set_path(&m->ens.m[k].spec,
							    path), PNO_STATUS_OK);
	} else if (!strcmp(m->method, "vfno")) {
		assert_status(pno_spectral_set_path(&m->vfno.net.spec, path),
			      PNO_STATUS_OK);
	} else {
		assert_status(pno_spectral_set_path(&m->fno.spec, path),
			      PNO_STATUS_OK);
	}
}

static void load(struct pno_model *m, const char *method,
		 enum pno_spectral_path path)
{
	assert_status(pno_model_load(m, model_path(method), X, 1, BMAX),
		      PNO_STATUS_OK);
	set_path(m, path);
	assert_status(pno_model_predict_init(m, SMAX), PNO_STATUS_OK);
}

static float *inputs(int n)
{
	float *x = malloc((size_t)n * X * sizeof *x);
	pno_rng_normal(x, (size_t)n * X, 21, 0, 0);
	return x;
}

/* Outputs of NB inputs in the server's interleaved layout: per input
 * mean, std, nq quantiles, aleatoric, epistemic, S samples. */
struct outs {
	float *buf;
	size_t item;
	struct pno_predict_out o[NB];
};

static void outs_init(struct outs *u, int S, int nq)
{
	const size_t N = X;
	u->item = N * (4 + (size_t)nq + S);
	u->buf = malloc(NB * u->item * sizeof(float));
	for (size_t i = 0; i < NB * u->item; i++)
		u->buf[i] = NAN;	/* unwritten shows */
	for (int b = 0; b < NB; b++) {
		float *y = u->buf + b * u->item;
		u->o[b] = (struct pno_predict_out){
			.mean = y, .std = y + N, .quantiles = y + 2 * N,
			.aleatoric = y + (2 + nq) * N,
			.epistemic = y + (3 + nq) * N,
			.samples = y + (4 + nq) * N};
	}
}

/* max |a - b| / max(1, |b|) over an input's item, and whether every bit
 * agrees (variances compared only where the model has them) */
static double item_diff(const float *a, const float *b, size_t n, int *same)
{
	double d = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(b[i]) && isnan(a[i]))
			continue;
		if (memcmp(&a[i], &b[i], sizeof *a))
			*same = 0;
		d = fmax(d, fabs((double)a[i] - b[i]) / fmax(1, fabs(b[i])));
	}
	return d;
}

/* The reference: pno_model_predict per input, written in the same layout
 * (variances NaN where the model has none, as predict_into leaves them). */
static void reference(struct pno_model *m, const float *x, int S,
		      const uint64_t *seeds, const float *q, int nq,
		      struct outs *u)
{
	const size_t N = X;
	for (int b = 0; b < NB; b++) {
		struct pno_prediction p;
		float *y = u->buf + b * u->item;
		assert_status(pno_model_predict(m, x + b * N, S, seeds[b], q,
						nq, &p), PNO_STATUS_OK);
		memcpy(y, p.mean, N * 4);
		memcpy(y + N, p.std, N * 4);
		memcpy(y + 2 * N, p.quantiles, nq * N * 4);
		if (m->has_variance) {
			memcpy(y + (2 + nq) * N, p.aleatoric, N * 4);
			memcpy(y + (3 + nq) * N, p.epistemic, N * 4);
		}
		memcpy(y + (4 + nq) * N, p.samples, (size_t)S * N * 4);
		pno_prediction_free(&p);
	}
}

/* Every method, both spectral paths: the whole batch at once, then split
 * and reordered ([5 6 0] [3] [1 2 4]), against the reference: every bit
 * (the FFTW path packs inputs into forwards, the GEMM path may not). */
static void test_against_reference(void **state)
{
	(void)state;
	const int S = 9, nq = 3;
	const float q[3] = {0.05f, 0.5f, 0.95f};
	const uint64_t seeds[NB] = {11, 12, 13, 11, 99, 7, 1ull << 40};
	float *x = inputs(NB);
	for (int pi = 0; pi < 2; pi++) {
		enum pno_spectral_path path = pi ? PNO_SPECTRAL_PATH_GEMM
						 : PNO_SPECTRAL_PATH_FFTW;
		for (int mi = 0; mi < NMETHODS; mi++) {
			struct pno_model m;
			struct outs ref, all, parts;
			load(&m, methods[mi], path);
			outs_init(&ref, S, nq);
			outs_init(&all, S, nq);
			outs_init(&parts, S, nq);
			reference(&m, x, S, seeds, q, nq, &ref);
			if (!m.has_variance)	/* never written */
				for (int b = 0; b < NB; b++)
					for (int i = 0; i < 2 * X; i++)
						ref.buf[b * ref.item +
							(2 + nq) * X + i] = NAN;
			assert_status(pno_model_predict_into(&m, x, NB, S, seeds,
							     q, nq, all.o),
				      PNO_STATUS_OK);
			/* the FFTW path packs 4 inputs a forward (7 = 4 + 3:
			 * the last forward had 3), the GEMM path one */
			const struct pno_fno *net =
				!strcmp(m.method, "ensemble") ? &m.ens.m[0] :
				&m.fno;
			if (!strcmp(m.method, "fno") ||
			    !strcmp(m.method, "pno-r") ||
			    !strcmp(m.method, "ensemble")) {
				assert_int_equal(net->last_B, pi ? 1 : 3);
				assert_int_equal(pno_model_predict_batch(&m),
						 pi ? 1 : BMAX);
			} else {
				assert_int_equal(pno_model_predict_batch(&m), 1);
			}
			/* reordered groups through a permuted copy */
			const int order[NB] = {5, 6, 0, 3, 1, 2, 4};
			const int cuts[4] = {0, 3, 4, NB};
			float *xp = malloc(NB * X * sizeof *xp);
			uint64_t sp[NB];
			struct outs perm;
			outs_init(&perm, S, nq);
			for (int j = 0; j < NB; j++) {
				memcpy(xp + j * X, x + order[j] * X, X * 4);
				sp[j] = seeds[order[j]];
			}
			for (int g = 0; g < 3; g++) {
				assert_status(pno_model_predict_into(
						      &m, xp + cuts[g] * X,
						      cuts[g + 1] - cuts[g], S,
						      sp + cuts[g], q, nq,
						      perm.o + cuts[g]),
					      PNO_STATUS_OK);
			}
			for (int j = 0; j < NB; j++)
				memcpy(parts.buf + order[j] * parts.item,
				       perm.buf + j * perm.item,
				       perm.item * sizeof(float));
			int same = 1;
			double d = 0;
			for (int b = 0; b < NB; b++) {
				const float *r = ref.buf + b * ref.item;
				d = fmax(d, item_diff(all.buf + b * all.item, r,
						      ref.item, &same));
				d = fmax(d, item_diff(parts.buf + b * parts.item,
						      r, ref.item, &same));
			}
			print_message("%-10s %s: max rel diff %.2e (%s)\n",
				      methods[mi], pi ? "gemm" : "fftw", d,
				      same ? "bit-identical" : "rounding");
			assert_true(same);
			/* the samples really differ between inputs and
			 * seeds for a stochastic model */
			if (m.stochastic)
				assert_true(memcmp(all.buf + (4 + nq) * X,
						   all.buf + all.item +
							   (4 + nq) * X,
						   X * 4));
			free(xp);
			free(perm.buf);
			free(ref.buf);
			free(all.buf);
			free(parts.buf);
			pno_model_free(&m);
		}
	}
	free(x);
}

/* Packed outputs, no samples or variances kept, a conformal
 * scale: the same mean / std / quantiles as the reference, to the bit. */
static void test_packed_conformal(void **state)
{
	(void)state;
	const int S = 12, nq = 2;
	const float q[2] = {0.1f, 0.9f};
	const uint64_t seeds[NB] = {1, 2, 3, 4, 5, 6, 7};
	float *x = inputs(NB);
	for (int mi = 0; mi < NMETHODS; mi++) {
		struct pno_model m;
		load(&m, methods[mi], PNO_SPECTRAL_PATH_FFTW);
		m.conformal.present = 1;
		m.conformal.scale = 1.7;
		float *mean = malloc(NB * X * 4), *sd = malloc(NB * X * 4);
		float *qs = malloc(NB * nq * X * 4);
		struct pno_predict_out o[NB];
		for (int b = 0; b < NB; b++)
			o[b] = (struct pno_predict_out){
				.mean = mean + b * X, .std = sd + b * X,
				.quantiles = qs + b * nq * X};
		assert_status(pno_model_predict_into(&m, x, NB, S, seeds, q, nq,
						     o), PNO_STATUS_OK);
		int same = 1;
		double d = 0;
		for (int b = 0; b < NB; b++) {
			struct pno_prediction p;
			assert_status(pno_model_predict(&m, x + b * X, S,
							seeds[b], q, nq, &p),
				      PNO_STATUS_OK);
			d = fmax(d, item_diff(mean + b * X, p.mean, X, &same));
			d = fmax(d, item_diff(sd + b * X, p.std, X, &same));
			d = fmax(d, item_diff(qs + b * nq * X, p.quantiles,
					      nq * X, &same));
			if (m.stochastic)	/* the scale did act */
				assert_true(p.std[0] > 0);
			pno_prediction_free(&p);
		}
		print_message("%-10s packed, conformal 1.7: max rel diff "
			      "%.2e\n", methods[mi], d);
		assert_true(same);
		free(mean);
		free(sd);
		free(qs);
		pno_model_free(&m);
	}
	free(x);
}

/* A call allocates nothing through pno's allocator, for every method. */
static void test_no_allocation(void **state)
{
	(void)state;
	const int S = SMAX, nq = 3;
	const float q[3] = {0.05f, 0.5f, 0.95f};
	const uint64_t seeds[NB] = {1, 2, 3, 4, 5, 6, 7};
	float *x = inputs(NB);
	tu_alloc_install();
	for (int mi = 0; mi < NMETHODS; mi++) {
		struct pno_model m;
		struct outs u;
		load(&m, methods[mi], PNO_SPECTRAL_PATH_AUTO);
		outs_init(&u, S, nq);
		/* twice: the first call may not warm anything up either */
		for (int rep = 0; rep < 2; rep++) {
			tu_alloc_reset(0);
			assert_status(pno_model_predict_into(&m, x, NB, S, seeds,
							     q, nq, u.o),
				      PNO_STATUS_OK);
			print_message("%-10s allocations in a call: %ld\n",
				      methods[mi], tu_alloc_count());
			assert_int_equal(tu_alloc_count(), 0);
		}
		free(u.buf);
		pno_model_free(&m);
	}
	tu_alloc_uninstall();
	free(x);
}

static enum pno_status load_and_reserve(const char *method)
{
	struct pno_model m;
	enum pno_status s = pno_model_load(&m, model_path(method), X, 1, BMAX);
	if (s == PNO_STATUS_OK)
		s = pno_model_predict_init(&m, SMAX);
	pno_model_free(&m);
	return s;
}

/* Allocation failures at load and workspace: NOMEM, nothing leaked; a
 * failed resize keeps the old workspace. */
static void test_alloc_failures(void **state)
{
	(void)state;
	tu_alloc_install();
	for (int mi = 0; mi < NMETHODS; mi++) {
		long live0 = tu_alloc_live(), k;
		for (k = 1;; k++) {
			tu_alloc_reset(k);
			if (tu_alloc_step(load_and_reserve(methods[mi]), live0))
				break;
		}
		print_message("%-10s load + workspace: %ld allocation points\n",
			      methods[mi], k - 1);
		assert_true(k > 5);
	}
	struct pno_model m;
	tu_alloc_reset(0);
	load(&m, "pno-d", PNO_SPECTRAL_PATH_AUTO);
	struct pno__model_ws *w = m.ws;
	tu_alloc_reset(2);
	assert_status(pno_model_predict_init(&m, 2 * SMAX), PNO_STATUS_NOMEM);
	assert_ptr_equal(m.ws, w);
	tu_alloc_reset(0);
	assert_status(pno_model_predict_init(&m, 2 * SMAX), PNO_STATUS_OK);
	pno_model_free(&m);
	tu_alloc_uninstall();
}

static void test_bad_arguments(void **state)
{
	(void)state;
	struct pno_model m;
	const float q[1] = {0.5f}, badq[1] = {1.5f};
	const uint64_t seeds[NB] = {0};
	float *x = inputs(NB), mean[X], sd[X], qs[X];
	struct pno_predict_out o = {.mean = mean, .std = sd, .quantiles = qs};
	assert_status(pno_model_load(&m, model_path("pno-r"), X, 1, BMAX),
		      PNO_STATUS_OK);
	assert_status(pno_model_predict_into(&m, x, 1, 4, seeds, q, 1, &o),
		      PNO_STATUS_INVALID);
	assert_err_has("workspace");
	assert_status(pno_model_predict_init(&m, 0), PNO_STATUS_INVALID);
	assert_status(pno_model_predict_init(&m, SMAX), PNO_STATUS_OK);
	assert_status(pno_model_predict_into(&m, x, 1, SMAX + 1, seeds, q, 1,
					     &o), PNO_STATUS_INVALID);
	assert_err_has("exceed");
	assert_status(pno_model_predict_into(&m, x, 0, 4, seeds, q, 1, &o),
		      PNO_STATUS_INVALID);
	assert_status(pno_model_predict_into(&m, x, 1, 4, NULL, q, 1, &o),
		      PNO_STATUS_INVALID);
	assert_status(pno_model_predict_into(&m, x, 1, 4, seeds, badq, 1, &o),
		      PNO_STATUS_INVALID);
	assert_err_has("quantile");
	o.quantiles = NULL;
	assert_status(pno_model_predict_into(&m, x, 1, 4, seeds, q, 1, &o),
		      PNO_STATUS_INVALID);
	assert_err_has("quantile buffer");
	assert_status(pno_model_predict_into(&m, x, 1, 4, seeds, q, 0, &o),
		      PNO_STATUS_OK);
	o.mean = NULL;
	assert_status(pno_model_predict_into(&m, x, 1, 4, seeds, q, 0, &o),
		      PNO_STATUS_INVALID);
	assert_err_has("mean");
	pno_model_free(&m);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_reference),
		cmocka_unit_test(test_packed_conformal),
		cmocka_unit_test(test_no_allocation),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
