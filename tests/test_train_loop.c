/* The training loop's control: early stopping with patience, the plateau
 * schedule, best-model keeping, and the non-finite guard that skips steps
 * and rolls back to the last good epoch with a halved learning rate. */
#include "testutil.h"
#include "pno/pde.h"
#include "pno/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 24, X = 16 };



static void init_model(struct pno_fno *m)
{
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1, .width = 8,
				 .modes1 = 4, .modes2 = 1, .layers = 2,
				 .proj_hidden = 16};
	assert_status(pno_fno_init(m, &a, X, 1, 4, 3), PNO_STATUS_OK);
}

static void opts(struct pno_train_opts *o)
{
	pno_train_opts_default(o);
	o->epochs = 8;
	o->batch = 4;
	o->lr = 3e-3f;
	o->n_train = 16;
	o->n_val = 4;
	o->n_test = 4;
	o->seed = 1;
}

struct seen {
	int epochs, best[64];
	float lr[64];
	int rolled[64];
	double val[64];
};

static void on_epoch(void *ud, const struct pno_epoch_stats *s)
{
	struct seen *v = ud;
	v->epochs++;
	v->best[s->epoch] = s->best;
	v->lr[s->epoch] = s->lr;
	v->rolled[s->epoch] = s->rolled_back;
	v->val[s->epoch] = s->val_loss;
}

/* A learning rate far below one ulp of the weights leaves them unchanged:
 * the validation loss repeats exactly, so epoch 1 stays the best and
 * patience p stops the run after epoch 1 + p. The plateau schedule then
 * multiplies the rate by gamma every `plateau` epochs without progress. */
static void test_patience_and_plateau(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_fno m;
	struct pno_train_opts o;
	struct pno_train_result r;
	struct seen v = {0};
	tu_heat_dataset(&d, 1, N, X, 2e-3, 5);
	init_model(&m);
	opts(&o);
	o.lr = 1e-30f;
	o.patience = 3;
	o.plateau = 1;
	o.gamma = 0.5f;
	o.on_epoch = on_epoch;
	o.ud = &v;
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	assert_int_equal(r.stopped_early, 1);
	assert_int_equal(r.epochs_run, 4);
	assert_int_equal(r.best_epoch, 1);
	assert_int_equal(v.best[1], 1);
	for (int e = 2; e <= 4; e++) {
		assert_int_equal(v.best[e], 0);
		assert_true(v.val[e] == v.val[1]);
		/* halved after each epoch without progress: epoch e runs at
		 * lr 0.5^(e-2) */
		tu_assert_close(v.lr[e] / 1e-30, pow(0.5, e - 2), 1e-6);
	}
	/* no validation split: refused */
	o.n_val = 0;
	o.n_train = 20;
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_INVALID);
	assert_err_has("validation");
	pno_fno_free(&m);
	pno_dataset_free(&d);
}

/* keep_best ends with the parameters of the best validation epoch: the
 * final model's validation loss is the best one, and equals that epoch's
 * reported loss exactly. */
static void test_keep_best(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_fno m;
	struct pno_train_opts o;
	struct pno_train_result r;
	struct seen v = {0};
	tu_heat_dataset(&d, 1, N, X, 2e-3, 5);
	init_model(&m);
	opts(&o);
	o.lr = 3e-2f;		/* large: the validation loss is not monotone */
	o.epochs = 12;
	o.on_epoch = on_epoch;
	o.ud = &v;
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	/* the last epoch is not the best (so restoring matters) */
	assert_true(r.best_epoch >= 1 && r.best_epoch < 12);
	assert_true(v.val[12] > r.best_val_loss);
	for (int e = 1; e <= 12; e++)
		assert_true(v.val[e] >= r.best_val_loss);
	assert_true(v.val[r.best_epoch] == r.best_val_loss);
	double val;
	assert_status(pno_eval_rel_l2(&m, &d, o.n_train, o.n_val, &val),
		      PNO_STATUS_OK);
	assert_true(val == r.best_val_loss);
	pno_fno_free(&m);
	pno_dataset_free(&d);
}

/* ---- the non-finite guard ---- */
struct poison {
	struct pno_dataset *d;
	float *saved;		/* clean targets */
	int heal;		/* restore the targets when a rollback is logged */
	int rollback_logs;
};

static void poison_log(void *ud, enum pno_log_level level, const char *msg)
{
	struct poison *p = ud;
	(void)level;
	if (strstr(msg, "rolled back")) {
		p->rollback_logs++;
		assert_non_null(strstr(msg, "learning rate halved"));
		if (p->heal)
			memcpy(p->d->out, p->saved, N * X * sizeof(float));
	}
}

/* After epoch 1 every training target becomes NaN: each step's loss is
 * non-finite, so after rollback_after of them the epoch restarts from the
 * end of epoch 1 with the rate halved. */
static void on_epoch_poison(void *ud, const struct pno_epoch_stats *s)
{
	struct poison *p = ud;
	if (s->epoch == 1)
		for (int i = 0; i < 16 * X; i++)
			p->d->out[i] = NAN;
}

static void test_rollback(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_fno m;
	struct pno_train_opts o;
	struct pno_train_result r;
	struct poison p = {&d, NULL, 0, 0};
	tu_heat_dataset(&d, 1, N, X, 2e-3, 5);
	p.saved = malloc(N * X * sizeof(float));
	memcpy(p.saved, d.out, N * X * sizeof(float));
	pno_log_set(poison_log, &p, PNO_LOG_LEVEL_DEBUG);

	/* never healed: gives up after max_rollbacks with NONFINITE */
	init_model(&m);
	opts(&o);
	o.epochs = 3;
	o.max_rollbacks = 2;
	o.on_epoch = on_epoch_poison;
	o.ud = &p;
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_NONFINITE);
	assert_err_has("rollbacks");
	assert_int_equal(p.rollback_logs, 2);
	assert_int_equal(r.rollbacks, 2);
	pno_fno_free(&m);

	/* healed at the first rollback: the run completes, epoch 2 ran once
	 * more at half the rate, from the state at the end of epoch 1 */
	memcpy(d.out, p.saved, N * X * sizeof(float));
	p.heal = 1;
	p.rollback_logs = 0;
	init_model(&m);
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	assert_int_equal(p.rollback_logs, 1);
	assert_int_equal(r.rollbacks, 1);
	assert_int_equal(r.epochs_run, 3);
	assert_true(isfinite(r.test_rel_l2));
	/* the same run, poisoned and healed again, gives the same bits: the
	 * rollback restores a state, it does not depend on the bad steps */
	float *w1 = malloc(m.n_params * sizeof(float));
	memcpy(w1, m.params, m.n_params * sizeof(float));
	pno_fno_free(&m);
	memcpy(d.out, p.saved, N * X * sizeof(float));
	init_model(&m);
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	assert_memory_equal(w1, m.params, m.n_params * sizeof(float));
	free(w1);
	pno_log_set(NULL, NULL, PNO_LOG_LEVEL_WARN);
	pno_fno_free(&m);
	free(p.saved);
	pno_dataset_free(&d);
}

/* A run stopped and resumed from its checkpoint ends with the same
 * weights and the same best epoch as the uninterrupted run, with the
 * plateau schedule and keep_best active (their state is in the file). */
static void test_resume_with_schedule(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_fno m;
	struct pno_train_opts o;
	struct pno_train_result r1, r2;
	const char *ck = tu_tmp_path("loop_ck.safetensors");
	tu_heat_dataset(&d, 1, N, X, 2e-3, 5);
	init_model(&m);
	opts(&o);
	o.lr = 3e-2f;
	o.epochs = 6;
	o.plateau = 1;
	o.gamma = 0.7f;
	assert_status(pno_train_fno(&m, &d, &o, &r1), PNO_STATUS_OK);
	float *w1 = malloc(m.n_params * sizeof(float));
	memcpy(w1, m.params, m.n_params * sizeof(float));
	pno_fno_free(&m);

	init_model(&m);
	o.epochs = 3;
	o.checkpoint = ck;
	assert_status(pno_train_fno(&m, &d, &o, &r2), PNO_STATUS_OK);
	pno_fno_free(&m);
	init_model(&m);
	o.epochs = 6;
	o.checkpoint = NULL;
	o.resume = ck;
	assert_status(pno_train_fno(&m, &d, &o, &r2), PNO_STATUS_OK);
	assert_int_equal(r2.best_epoch, r1.best_epoch);
	assert_true(r2.best_val_loss == r1.best_val_loss);
	assert_memory_equal(w1, m.params, m.n_params * sizeof(float));
	free(w1);
	pno_fno_free(&m);
	pno_dataset_free(&d);
	remove(ck);
}

/* A checkpoint written with best keeping off has no best weights: a run
 * resumed from it with best keeping on starts its search for the best
 * afresh instead of restoring weights it never had (it once restored an
 * uninitialized buffer). With no epochs left, the model stays as loaded. */
static void test_resume_without_best(void **state)
{
	(void)state;
	struct pno_dataset d;
	struct pno_fno m;
	struct pno_train_opts o;
	struct pno_train_result r;
	const char *ck = tu_tmp_path("loop_nobest.safetensors");
	tu_heat_dataset(&d, 1, N, X, 2e-3, 5);
	init_model(&m);
	opts(&o);
	o.epochs = 3;
	o.keep_best = 0;
	o.checkpoint = ck;
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	float *w = malloc(m.n_params * sizeof(float));
	memcpy(w, m.params, m.n_params * sizeof(float));
	pno_fno_free(&m);
	init_model(&m);
	o.keep_best = 1;
	o.checkpoint = NULL;
	o.resume = ck;
	assert_status(pno_train_fno(&m, &d, &o, &r), PNO_STATUS_OK);
	assert_int_equal(r.epochs_run, 0);
	assert_memory_equal(w, m.params, m.n_params * sizeof(float));
	double val;
	assert_status(pno_eval_rel_l2(&m, &d, o.n_train, o.n_val, &val),
		      PNO_STATUS_OK);
	assert_true(r.val_loss == val);	/* scores of the final weights */
	free(w);
	pno_fno_free(&m);
	pno_dataset_free(&d);
	remove(ck);
}

int main(void)
{
	pno_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patience_and_plateau),
		cmocka_unit_test(test_keep_best),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_resume_with_schedule),
		cmocka_unit_test(test_resume_without_best),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
