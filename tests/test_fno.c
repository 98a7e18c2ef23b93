/* fno: whole-model gradient check, determinism, zero allocations per step,
 * allocation-failure loop, save/load, checkpoint resume to the bit, and
 * learning the heat operator. */
#include "testutil.h"
#include "pno/fno.h"
#include "pno/pde.h"
#include "pno/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>



static struct pno_fno_arch small_arch(int dims)
{
	struct pno_fno_arch a = {.dims = dims, .in_ch = 1, .out_ch = 1, .width = 6,
				 .modes1 = 3, .modes2 = 3, .layers = 2,
				 .proj_hidden = 8};
	return a;
}

/* Loss L = sum(out * r) in double. */

/* Every parameter tensor's gradient against central differences of the
 * float32 model, h = 1e-2 relative to the tensor's scale. The normalized
 * error ||g_fd - g|| / ||g_fd|| per tensor must be below 2e-2: float32
 * rounding of L (~1e-7 |L| / h) and the O(h^2) curvature of GELU bound what
 * differences can resolve; a wrong backward gives errors of order 1. */
static void grad_check(int dims)
{
	struct pno_fno m;
	struct pno_fno_arch a = small_arch(dims);
	int X = dims == 1 ? 16 : 12, Y = dims == 1 ? 1 : 10, B = 2;
	assert_int_equal(pno_fno_init(&m, &a, X, Y, B, 11), PNO_STATUS_OK);
	m.norm.in_mean[0] = 0.3f, m.norm.in_std[0] = 1.7f;
	m.norm.out_mean[0] = -0.2f, m.norm.out_std[0] = 0.6f;
	size_t P = (size_t)m.P;
	float *x = malloc(B * P * sizeof *x), *r = malloc(B * P * sizeof *r);
	pno_rng_normal(x, B * P, 5, 1, 0);
	pno_rng_normal(r, B * P, 5, 2, 0);
	/* make spectral weights larger so their path matters */
	for (int l = 0; l < a.layers; l++)
		for (size_t i = 0; i < pno_spectral_weight_count(&m.spec); i++)
			m.p.spec_w[l][i] *= 20.0f;
	pno_fno_zero_grad(&m);
	tu_fno_probe(&m, x, r, B);
	pno_fno_backward(&m, r, B);
	int nt = pno_fno_tensor_count(&m);
	for (int t = 0; t < nt; t++) {
		char name[48];
		double err = tu_fno_grad_error(&m, t, x, r, B, 40, name);
		if (!(err < 2e-2))
			fail_msg("%dD tensor %s: normalized gradient error %.3g",
				 dims, name, err);
	}
	free(x);
	free(r);
	pno_fno_free(&m);
}

static void test_grad_1d(void **state) { (void)state; grad_check(1); }
static void test_grad_2d(void **state) { (void)state; grad_check(2); }

static void test_init_errors(void **state)
{
	(void)state;
	struct pno_fno m;
	struct pno_fno_arch a = small_arch(1);
	a.width = 0;
	assert_int_equal(pno_fno_init(&m, &a, 16, 1, 2, 0), PNO_STATUS_INVALID);
	assert_non_null(strstr(pno_last_error(), "width"));
	a = small_arch(1);
	a.modes1 = 20;	/* more than 16/2 + 1 */
	assert_int_equal(pno_fno_init(&m, &a, 16, 1, 2, 0), PNO_STATUS_INVALID);
	a = small_arch(2);
	a.dims = 3;
	assert_int_equal(pno_fno_init(&m, &a, 16, 16, 2, 0), PNO_STATUS_INVALID);
	pno_fno_free(&m); /* safe on the zeroed struct */
}

static void default_opts(struct pno_train_opts *o, int N)
{
	pno_train_opts_default(o);
	o->epochs = 3;
	o->batch = 8;
	o->lr = 3e-3f;
	o->n_train = N - 8;
	o->n_val = 4;
	o->n_test = 4;
	o->seed = 7;
}

struct traj {
	double loss[64];
	int n;
};

static void record_batch(void *ud, int epoch, int batch, int nb, double loss)
{
	struct traj *t = ud;
	(void)epoch, (void)batch, (void)nb;
	if (t->n < 64)
		t->loss[t->n++] = loss;
}

/* Same seed and thread count: the same losses to the bit. */
static void test_determinism(void **state)
{
	(void)state;
	struct pno_dataset d;
	tu_heat_dataset(&d, 1, 40, 32, 2e-3, 3);
	struct traj t[2] = {0};
	float *params[2];
	for (int run = 0; run < 2; run++) {
		struct pno_fno m;
		struct pno_fno_arch a = small_arch(1);
		struct pno_train_opts o;
		struct pno_train_result r;
		default_opts(&o, d.N);
		o.epochs = 8;
		o.on_batch = record_batch;
		o.ud = &t[run];
		assert_int_equal(pno_fno_init(&m, &a, 32, 1, 8, 1), PNO_STATUS_OK);
		assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
		params[run] = malloc(m.n_params * sizeof(float));
		memcpy(params[run], m.params, m.n_params * sizeof(float));
		pno_fno_free(&m);
	}
	assert_true(t[0].n > 5);
	assert_int_equal(t[0].n, t[1].n);
	assert_memory_equal(t[0].loss, t[1].loss, t[0].n * sizeof(double));
	/* and it learns: the last four batches beat the first four */
	double first = 0, last = 0;
	for (int i = 0; i < 4; i++) {
		first += t[0].loss[i];
		last += t[0].loss[t[0].n - 1 - i];
	}
	assert_true(last < first);
	free(params[0]);
	free(params[1]);
	pno_dataset_free(&d);
}

/* After the first step, a training step allocates nothing. */
static long allocs_at_batch[64];
static void count_batch(void *ud, int epoch, int batch, int nb, double loss)
{
	int *k = ud;
	(void)epoch, (void)batch, (void)nb, (void)loss;
	if (*k < 64)
		allocs_at_batch[(*k)++] = tu_alloc_count();
}

static void test_zero_alloc_step(void **state)
{
	(void)state;
	struct pno_dataset d;
	tu_heat_dataset(&d, 2, 24, 16, 2e-3, 4);
	struct pno_fno m;
	struct pno_fno_arch a = small_arch(2);
	struct pno_train_opts o;
	struct pno_train_result r;
	int k = 0;
	default_opts(&o, d.N);
	o.epochs = 1;
	o.batch = 4;
	o.n_val = 0;
	o.on_batch = count_batch;
	o.ud = &k;
	assert_int_equal(pno_fno_init(&m, &a, 16, 16, 4, 1), PNO_STATUS_OK);
	tu_alloc_install();
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	tu_alloc_uninstall();
	assert_true(k >= 3);
	for (int i = 1; i < k; i++)
		assert_int_equal(allocs_at_batch[i], allocs_at_batch[0]);
	pno_fno_free(&m);
	pno_dataset_free(&d);
}

/* Fail the Nth allocation of init + one training epoch + save, for every N
 * until it succeeds: each failure is a clean NOMEM, nothing leaks, and the
 * target file is never left half-written. */
static void test_alloc_failure_loop(void **state)
{
	(void)state;
	struct pno_dataset d;
	tu_heat_dataset(&d, 1, 12, 16, 2e-3, 5);
	const char *path = tu_tmp_path("allocloop.safetensors");
	unlink(path);
	tu_alloc_install();
	long base = tu_alloc_live();
	int succeeded = 0;
	for (long n = 1; n < 5000 && !succeeded; n++) {
		struct pno_fno m;
		struct pno_fno_arch a = small_arch(1);
		struct pno_train_opts o;
		struct pno_train_result r;
		enum pno_status s;
		default_opts(&o, d.N);
		o.epochs = 1;
		o.batch = 4;
		tu_alloc_reset(n);
		s = pno_fno_init(&m, &a, 16, 1, 4, 1);
		if (s == PNO_STATUS_OK)
			s = pno_train_fno(&m, &d, &o, &r);
		if (s == PNO_STATUS_OK)
			s = pno_fno_save(&m, path, NULL);
		pno_fno_free(&m);
		if (s == PNO_STATUS_OK) {
			if (tu_alloc_failed())
				fail_msg("allocation %ld failed but the run succeeded", n);
			succeeded = 1;
		} else {
			if (s != PNO_STATUS_NOMEM || !tu_alloc_failed())
				fail_msg("allocation %ld: status %s (%s)", n,
					 pno_status_name(s), pno_last_error());
			assert_true(tu_alloc_failed());
			assert_int_equal(access(path, F_OK), -1);
		}
		assert_int_equal(tu_alloc_live(), base);
	}
	tu_alloc_uninstall();
	assert_true(succeeded);
	unlink(path);
	pno_dataset_free(&d);
}

/* Save, load: same outputs bit for bit; info survives; bad files refused. */
static void test_save_load(void **state)
{
	(void)state;
	struct pno_fno m, m2;
	struct pno_fno_arch a = small_arch(2);
	const char *path = tu_tmp_path("model.safetensors");
	unlink(path);
	assert_int_equal(pno_fno_init(&m, &a, 12, 10, 2, 9), PNO_STATUS_OK);
	m.norm.in_mean[0] = 1.5f, m.norm.out_std[0] = 2.5f;
	assert_int_equal(pno_fno_save(&m, path, "{\"provenance\": \"{}\"}"), PNO_STATUS_OK);
	assert_int_equal(pno_fno_load(&m2, path, 0, 0, 2), PNO_STATUS_OK);
	assert_int_equal(m2.X, 12);
	assert_int_equal(m2.Y, 10);
	assert_memory_equal(&m.arch, &m2.arch, sizeof m.arch);
	assert_memory_equal(m.params, m2.params, m.n_params * sizeof(float));
	float x[2 * 120];
	pno_rng_normal(x, 240, 1, 1, 0);
	const float *o1 = pno_fno_forward(&m, x, 2);
	float keep[240];
	memcpy(keep, o1, sizeof keep);
	const float *o2 = pno_fno_forward(&m2, x, 2);
	assert_memory_equal(keep, o2, sizeof keep);
	pno_fno_free(&m2);
	/* another grid: resolution-independent weights load */
	assert_int_equal(pno_fno_load(&m2, path, 24, 20, 1), PNO_STATUS_OK);
	pno_fno_free(&m2);
	/* a grid too small for the modes is refused */
	assert_int_equal(pno_fno_load(&m2, path, 4, 4, 1), PNO_STATUS_INVALID);
	pno_fno_free(&m);
	/* missing file */
	assert_int_not_equal(pno_fno_load(&m2, tu_tmp_path("nope.safetensors"), 0, 0, 1),
			     PNO_STATUS_OK);
	unlink(path);
}

/* A run interrupted after epoch 2 and resumed gives the same weights, to
 * the bit, as the uninterrupted 4-epoch run. */
static void test_resume_bitwise(void **state)
{
	(void)state;
	struct pno_dataset d;
	tu_heat_dataset(&d, 1, 30, 32, 2e-3, 6);
	const char *ck = tu_tmp_path("ck.safetensors");
	float *full;
	struct pno_fno m;
	struct pno_fno_arch a = small_arch(1);
	struct pno_train_opts o;
	struct pno_train_result r;
	default_opts(&o, d.N);
	o.epochs = 4;
	o.step_size = 2;
	assert_int_equal(pno_fno_init(&m, &a, 32, 1, 8, 2), PNO_STATUS_OK);
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	full = malloc(m.n_params * sizeof(float));
	memcpy(full, m.params, m.n_params * sizeof(float));
	pno_fno_free(&m);

	unlink(ck);
	o.epochs = 2;
	o.checkpoint = ck;
	assert_int_equal(pno_fno_init(&m, &a, 32, 1, 8, 2), PNO_STATUS_OK);
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	pno_fno_free(&m);
	o.epochs = 4;
	o.checkpoint = NULL;
	o.resume = ck;
	/* a different init seed: everything must come from the checkpoint */
	assert_int_equal(pno_fno_init(&m, &a, 32, 1, 8, 99), PNO_STATUS_OK);
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	assert_int_equal(r.epochs_run, 2);
	assert_memory_equal(full, m.params, m.n_params * sizeof(float));
	pno_fno_free(&m);
	/* a checkpoint of another architecture is refused */
	a.width = 5;
	assert_int_equal(pno_fno_init(&m, &a, 32, 1, 8, 2), PNO_STATUS_OK);
	assert_int_not_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	pno_fno_free(&m);
	free(full);
	unlink(ck);
	pno_dataset_free(&d);
}

/* Data that does not fit the model is refused with a message. */
static void test_data_mismatch(void **state)
{
	(void)state;
	struct pno_dataset d;
	tu_heat_dataset(&d, 1, 20, 32, 2e-3, 8);
	struct pno_fno m;
	struct pno_fno_arch a = small_arch(2);
	struct pno_train_opts o;
	struct pno_train_result r;
	default_opts(&o, d.N);
	assert_int_equal(pno_fno_init(&m, &a, 32, 32, 8, 1), PNO_STATUS_OK);
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_SHAPE);
	assert_non_null(strstr(pno_last_error(), "1D"));
	pno_fno_free(&m);
	a = small_arch(1);
	assert_int_equal(pno_fno_init(&m, &a, 32, 1, 8, 1), PNO_STATUS_OK);
	o.n_train = 100;
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_INVALID);
	pno_fno_free(&m);
	pno_dataset_free(&d);
}

/* The FNO learns the 1D heat operator: a short run (about 10 s on 2 cores)
 * reaches a test relative L2 below 2e-2; the demo's longer budget reaches
 * below 1e-2 (docs/performance.md). */
static void test_learns_heat_1d(void **state)
{
	(void)state;
	if (getenv("PNO_SANITIZED")) {
		skip();
		return;
	}
	struct pno_dataset d;
	tu_heat_dataset(&d, 1, 400, 64, 2e-3, 10);
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1, .width = 16,
				 .modes1 = 12, .modes2 = 1, .layers = 2,
				 .proj_hidden = 64};
	struct pno_train_opts o;
	struct pno_train_result r;
	pno_train_opts_default(&o);
	o.epochs = 60;
	o.batch = 20;
	o.lr = 3e-3f;
	o.step_size = 20;
	o.gamma = 0.5f;
	o.n_train = 360, o.n_val = 20, o.n_test = 20;
	assert_int_equal(pno_fno_init(&m, &a, 64, 1, 20, 1), PNO_STATUS_OK);
	assert_int_equal(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	print_message("heat 1D: test relative L2 %.4e after %d epochs (%.1f s)\n",
		      r.test_rel_l2, r.epochs_run, r.seconds);
	assert_true(r.test_rel_l2 < 2e-2);
	pno_fno_free(&m);
	pno_dataset_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grad_1d),
		cmocka_unit_test(test_grad_2d),
		cmocka_unit_test(test_init_errors),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_zero_alloc_step),
		cmocka_unit_test(test_alloc_failure_loop),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_resume_bitwise),
		cmocka_unit_test(test_data_mismatch),
		cmocka_unit_test(test_learns_heat_1d),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
