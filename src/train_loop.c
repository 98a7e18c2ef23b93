/* The training loop every method shares: mini-batches, validation-driven
 * control, the non-finite guard with rollback, checkpoints.
 *
 * Data-parallel under MPI (pno/dist.h, more than one rank): every rank
 * runs this loop on the same state. Each global batch of B samples is cut
 * into contiguous shards, rank r computing rows [B r / R, B (r + 1) / R);
 * its gradient, weighted by its share B_r / B, is summed over the ranks
 * by one allreduce, so every rank applies the gradient of the whole batch
 * (every loss is a mean over the batch's samples plus terms that do not
 * depend on them, which the weights, summing to 1, leave as they are).
 * Random draws are keyed by the sample's row in the global batch, so the
 * run follows the single-process one up to float rounding in the sums.
 * Everything the loop decides from (loss, gradient norm, validation loss)
 * is then the same on every rank; rank 0 alone writes checkpoints; every
 * failure goes through pno_dist_agree so all ranks stop together. */
#include "internal.h"
#include "pno/dist.h"
#include "train_internal.h"

#include <math.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The order of the training samples in `epoch`: a Philox permutation of
 * (seed, epoch). */
static void permutation(int *perm, int n, uint64_t seed, int epoch)
{
	for (int i = 0; i < n; i++)
		perm[i] = i;
	for (int i = n - 1; i > 0; i--) {
		uint64_t r = pno_rng_u64(seed, 0xE9000000ull + (uint64_t)epoch,
					 (uint64_t)i);
		int j = (int)(r % (uint64_t)(i + 1));
		int t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

static float lr_at(const struct pno_train_opts *o, int epoch)
{
	if (o->step_size <= 0)
		return o->lr;
	return o->lr * powf(o->gamma, (float)((epoch - 1) / o->step_size));
}

/* This rank's rows [*lo, *hi) of n (all of them on one rank). */
static void shard(int n, int *lo, int *hi)
{
	int r = pno_dist_rank(), R = pno_dist_size();
	*lo = (int)((long long)n * r / R);
	*hi = (int)((long long)n * (r + 1) / R);
}

double pno__train_eval(struct pno__trainee *t, const struct pno_dataset *d,
		       int first, int count)
{
	size_t P = (size_t)d->X * d->Y;
	size_t nin = (size_t)d->Cin * P, nout = (size_t)d->Cout * P;
	double s = 0.0;
	int lo, hi;
	if (count <= 0)
		return NAN;
	shard(count, &lo, &hi);
	for (int i = lo; i < hi; i += t->Bmax) {
		int B = PNO__MIN(t->Bmax, hi - i);
		s += t->eval(t, d->in + (size_t)(first + i) * nin,
			     d->out + (size_t)(first + i) * nout, B);
	}
	/* a failed sum cannot be told apart from a diverged model */
	if (pno_dist_allreduce_sum_f64(&s, 1) != PNO_STATUS_OK)
		return NAN;
	return s / count;
}

/* The loss and gradient of one global batch of B samples of which this
 * rank holds rows [lo, hi) in (xb, yb). One rank: the method's step. More:
 * the shares' weighted gradients and losses summed in one allreduce of
 * flat = [grads of every block | loss]; a rank whose loss is not finite
 * puts a NaN in, so every rank sees a non-finite step. */
static double dist_step(struct pno__trainee *t, float *flat, const float *xb,
			const float *yb, int B, int lo, int hi, int64_t step,
			int epoch)
{
	size_t off = 0;
	double loss = 0.0;
	if (!flat)
		return t->step(t, xb, yb, B, step, epoch, 0);
	if (hi > lo)
		loss = t->step(t, xb, yb, hi - lo, step, epoch, lo);
	else	/* no row of this batch here: contributes nothing */
		for (int b = 0; b < t->nb; b++)
			memset(t->grads[b], 0, t->n[b] * sizeof(float));
	float w = (float)(hi - lo) / (float)B;
	for (int b = 0; b < t->nb; b++) {
		const float *g = t->grads[b];
		for (size_t i = 0; i < t->n[b]; i++)
			flat[off + i] = w * g[i];
		off += t->n[b];
	}
	flat[off] = isfinite(loss) ? (float)(w * loss) : NAN;
	if (pno_dist_allreduce_sum_f32(flat, off + 1) != PNO_STATUS_OK)
		return NAN;	/* lost the other ranks: stop below */
	off = 0;
	for (int b = 0; b < t->nb; b++) {
		memcpy(t->grads[b], flat + off, t->n[b] * sizeof(float));
		off += t->n[b];
	}
	return flat[off];
}

/* Global gradient norm over the blocks (double: finite iff every
 * gradient is), scaled to at most max_norm if > 0. */
static double clip_blocks(struct pno__trainee *t, float max_norm)
{
	double ss = 0.0;
	for (int b = 0; b < t->nb; b++)
		for (size_t i = 0; i < t->n[b]; i++)
			ss += (double)t->grads[b][i] * t->grads[b][i];
	double norm = sqrt(ss);
	if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
		float sc = (float)(max_norm / norm);
		for (int b = 0; b < t->nb; b++)
			for (size_t i = 0; i < t->n[b]; i++)
				t->grads[b][i] *= sc;
	}
	return norm;
}

/* The state a rollback returns to: parameters and optimizer at the end of
 * the last good epoch. */
struct snapshot {
	float *params[PNO__MAX_BLOCKS], *m[PNO__MAX_BLOCKS], *v[PNO__MAX_BLOCKS];
	int64_t step[PNO__MAX_BLOCKS];
};

static void snapshot_take(struct snapshot *sn, const struct pno__trainee *t,
			  const struct pno_adam *o)
{
	for (int b = 0; b < t->nb; b++) {
		memcpy(sn->params[b], t->params[b], t->n[b] * sizeof(float));
		memcpy(sn->m[b], o[b].m, t->n[b] * sizeof(float));
		memcpy(sn->v[b], o[b].v, t->n[b] * sizeof(float));
		sn->step[b] = o[b].step;
	}
}

static void snapshot_restore(const struct snapshot *sn,
			     struct pno__trainee *t, struct pno_adam *o)
{
	for (int b = 0; b < t->nb; b++) {
		memcpy(t->params[b], sn->params[b], t->n[b] * sizeof(float));
		memcpy(o[b].m, sn->m[b], t->n[b] * sizeof(float));
		memcpy(o[b].v, sn->v[b], t->n[b] * sizeof(float));
		o[b].step = sn->step[b];
	}
}

enum pno_status pno__train_loop(struct pno__trainee *t,
				const struct pno_dataset *d,
				const struct pno_train_opts *o,
				struct pno_train_result *r)
{
	enum pno_status s = PNO_STATUS_OK;
	struct pno_adam opt[PNO__MAX_BLOCKS] = {0};
	struct snapshot sn = {0};
	struct pno__loop_state ls = {0, 1.0f, INFINITY, 0, 0, 0};
	float *best[PNO__MAX_BLOCKS] = {0};
	int *perm = NULL;
	float *xb = NULL, *yb = NULL, *flat = NULL;
	size_t n_flat = 1;
	size_t P = (size_t)d->X * d->Y;
	size_t nin = (size_t)d->Cin * P, nout = (size_t)d->Cout * P;
	int Bt = PNO__MIN(o->batch, t->Bmax);
	int keep_best = o->keep_best && o->n_val > 0;
	double t_start = now_s();

	memset(r, 0, sizeof *r);
	r->best_val_loss = NAN;
	if ((o->checkpoint || o->resume) && (!t->ckpt_write || !t->ckpt_load))
		return pno__errorf(PNO_STATUS_UNSUPPORTED,
				   "%s: checkpoints and resume are not "
				   "implemented for this method yet", t->method);
	for (int b = 0; b < t->nb; b++)
		n_flat += t->n[b];
	perm = pno_malloc((size_t)o->n_train * sizeof *perm);
	xb = pno_malloc((size_t)Bt * nin * sizeof(float));
	yb = pno_malloc((size_t)Bt * nout * sizeof(float));
	if (pno_dist_size() > 1)
		flat = pno_malloc(n_flat * sizeof(float));
	if (!perm || !xb || !yb || (pno_dist_size() > 1 && !flat))
		goto nomem;
	for (int b = 0; b < t->nb; b++) {
		if ((s = pno_adam_init(&opt[b], t->n[b], o->lr,
				       t->weight_decay[b], o->adamw)) !=
		    PNO_STATUS_OK)
			goto out;
		sn.params[b] = pno_malloc(t->n[b] * sizeof(float));
		sn.m[b] = pno_malloc(t->n[b] * sizeof(float));
		sn.v[b] = pno_malloc(t->n[b] * sizeof(float));
		if (keep_best)
			best[b] = pno_malloc(t->n[b] * sizeof(float));
		if (!sn.params[b] || !sn.m[b] || !sn.v[b] ||
		    (keep_best && !best[b]))
			goto nomem;
	}
	/* every rank reads the checkpoint (its content does not depend on
	 * the number of ranks that wrote it) */
	if (o->resume)
		s = t->ckpt_load(t, opt, &ls, keep_best ? best : NULL, o->resume);
	else
		s = t->fit_norm(t, d, o->n_train);
	if ((s = pno_dist_agree(s, NULL)) != PNO_STATUS_OK)
		goto out_agreed;
	if (o->resume && pno_dist_is_root())
		PNO_LOG(PNO_LOG_LEVEL_INFO, "resumed from %s after epoch %d",
			o->resume, ls.epoch);
	/* identical starting weights on every rank: rank 0's */
	for (int b = 0; b < t->nb && pno_dist_size() > 1; b++)
		if ((s = pno_dist_bcast(t->params[b], t->n[b] * sizeof(float),
					0)) != PNO_STATUS_OK)
			goto out;
	for (int b = 0; b < t->nb && keep_best; b++)
		if (ls.best_epoch == 0)
			memcpy(best[b], t->params[b], t->n[b] * sizeof(float));
	snapshot_take(&sn, t, opt);

	int n_batches = (o->n_train + Bt - 1) / Bt;
	int epoch = ls.epoch + 1, rolled = 0, snap_epoch = ls.epoch;
	while (epoch <= o->epochs) {
		struct pno_epoch_stats es = {0};
		double t0 = now_s(), sum = 0.0;
		int counted = 0, bad_run = 0, rollback = 0;
		for (int b = 0; b < t->nb; b++)
			opt[b].lr = lr_at(o, epoch) * ls.lr_scale;
		permutation(perm, o->n_train, o->seed, epoch);
		for (int bi = 0; bi < n_batches && !rollback; bi++) {
			int B = PNO__MIN(Bt, o->n_train - bi * Bt), lo, hi;
			shard(B, &lo, &hi);	/* [0, B) on one rank */
			for (int k = lo; k < hi; k++) {
				int idx = perm[bi * Bt + k];
				memcpy(xb + (size_t)(k - lo) * nin,
				       d->in + (size_t)idx * nin,
				       nin * sizeof(float));
				memcpy(yb + (size_t)(k - lo) * nout,
				       d->out + (size_t)idx * nout,
				       nout * sizeof(float));
			}
			/* after a rollback the same steps draw new masks and
			 * normals: the restored state must not meet exactly
			 * the draws that failed */
			double loss = dist_step(t, flat, xb, yb, B, lo, hi,
						opt[0].step +
							((int64_t)ls.rollbacks
							 << 40),
						epoch);
			double gn = isfinite(loss) ? clip_blocks(t, o->clip) : NAN;
			if (!isfinite(gn)) {
				es.skipped_steps++;
				rollback = ++bad_run >= o->rollback_after;
				continue;
			}
			bad_run = 0;
			for (int b = 0; b < t->nb; b++)
				pno_adam_step(&opt[b], t->params[b], t->grads[b]);
			sum += loss;
			counted++;
			if (o->on_batch)
				o->on_batch(o->ud, epoch, bi + 1, n_batches, loss);
		}
		if (rollback) {
			if (ls.rollbacks >= o->max_rollbacks) {
				s = pno__errorf(PNO_STATUS_NONFINITE,
						"epoch %d: %d consecutive non-finite "
						"steps after %d rollbacks", epoch,
						bad_run, ls.rollbacks);
				goto out;
			}
			snapshot_restore(&sn, t, opt);
			ls.rollbacks++;
			ls.lr_scale *= 0.5f;
			r->rollbacks = ls.rollbacks;
			PNO_LOG(PNO_LOG_LEVEL_WARN,
				"epoch %d: %d consecutive non-finite steps: rolled "
				"back to the end of epoch %d, learning rate halved "
				"to %.3g", epoch, bad_run, snap_epoch,
				lr_at(o, epoch) * ls.lr_scale);
			rolled = 1;
			continue;	/* the same epoch again */
		}
		es.epoch = epoch;
		es.epochs = o->epochs;
		es.rolled_back = rolled;
		rolled = 0;
		es.train_loss = counted ? sum / counted : NAN;
		es.val_loss = pno__train_eval(t, d, o->n_train, o->n_val);
		es.seconds = now_s() - t0;
		es.lr = opt[0].lr;
		if (es.skipped_steps)
			PNO_LOG(PNO_LOG_LEVEL_WARN,
				"epoch %d: skipped %d steps with non-finite "
				"loss or gradients", epoch, es.skipped_steps);
		if (counted == 0) {
			s = pno__errorf(PNO_STATUS_NONFINITE,
					"epoch %d: every step had a non-finite "
					"loss or gradient", epoch);
			goto out;
		}
		if (isfinite(es.val_loss) && es.val_loss < ls.best_val) {
			ls.best_val = es.val_loss;
			ls.best_epoch = epoch;
			ls.since_best = 0;
			es.best = 1;
			for (int b = 0; b < t->nb && keep_best; b++)
				memcpy(best[b], t->params[b],
				       t->n[b] * sizeof(float));
		} else if (o->n_val > 0) {
			ls.since_best++;
			if (o->plateau > 0 && ls.since_best % o->plateau == 0) {
				ls.lr_scale *= o->gamma;
				PNO_LOG(PNO_LOG_LEVEL_INFO,
					"epoch %d: no improvement for %d epochs: "
					"learning rate x %g", epoch,
					ls.since_best, o->gamma);
			}
		}
		ls.epoch = epoch;
		/* the state a rollback returns to: the end of the last clean
		 * epoch (no skipped step, a finite validation loss) */
		if (!es.skipped_steps &&
		    (o->n_val == 0 || isfinite(es.val_loss))) {
			snapshot_take(&sn, t, opt);
			snap_epoch = epoch;
		}
		r->epochs_run++;
		r->train_loss = es.train_loss;
		r->val_loss = es.val_loss;
		if (o->on_epoch)
			o->on_epoch(o->ud, &es);
		if (o->checkpoint) {	/* rank 0 writes; all learn how it went */
			if (pno_dist_is_root())
				s = t->ckpt_write(t, opt, &ls,
						  keep_best ? best : NULL,
						  o->checkpoint,
						  o->provenance_json);
			if ((s = pno_dist_agree(s, NULL)) != PNO_STATUS_OK)
				goto out_agreed;
		}
		if (o->patience > 0 && ls.since_best >= o->patience) {
			r->stopped_early = 1;
			PNO_LOG(PNO_LOG_LEVEL_INFO,
				"early stop after epoch %d: no better validation "
				"loss for %d epochs (best %.4e at epoch %d)", epoch,
				ls.since_best, ls.best_val, ls.best_epoch);
			break;
		}
		epoch++;
	}
	r->rollbacks = ls.rollbacks;
	r->best_epoch = ls.best_epoch;
	r->best_val_loss = ls.best_epoch ? ls.best_val : NAN;
	for (int b = 0; b < t->nb && keep_best && ls.best_epoch > 0; b++)
		memcpy(t->params[b], best[b], t->n[b] * sizeof(float));
	/* the scores of the weights the model ends with */
	r->val_loss = pno__train_eval(t, d, o->n_train, o->n_val);
	r->test_rel_l2 = pno__train_eval(t, d, d->N - o->n_test, o->n_test);
	r->seconds = now_s() - t_start;
	s = PNO_STATUS_OK;
	goto out;
nomem:
	s = pno__errorf(PNO_STATUS_NOMEM, "training: out of memory");
out:
	/* a failure of this rank alone (memory, before the start) reaches
	 * the others at the start's agreement; one that every rank meets
	 * (non-finite training) is agreed by all */
	if (s != PNO_STATUS_OK)
		s = pno_dist_agree(s, NULL);
out_agreed:
	for (int b = 0; b < PNO__MAX_BLOCKS; b++) {
		pno_adam_free(&opt[b]);
		pno_free(sn.params[b]);
		pno_free(sn.m[b]);
		pno_free(sn.v[b]);
		pno_free(best[b]);
	}
	pno_free(perm);
	pno_free(xb);
	pno_free(yb);
	pno_free(flat);
	return s;
}
