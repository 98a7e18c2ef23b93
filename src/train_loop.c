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
 * failure goes through pno_dist_agree so all ranks stop together.
 *
 * Samples come through pno_dataset_fetch: from memory, or from the file
 * of a dataset opened with pno_dataset_open, so each rank reads only its
 * rows of each batch, its share of the validation and test splits and,
 * for the normalization, its share of the training split. */
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

/* Samples [first, first + n) of d: pointers into memory, or read into
 * (xb, yb) from the file. */
static enum pno_status rows(const struct pno_dataset *d, int first, int n,
			    float *xb, float *yb, const float **x,
			    const float **y)
{
	size_t P = (size_t)d->X * d->Y;
	if (d->in) {
		*x = d->in + (size_t)first * d->Cin * P;
		*y = d->out + (size_t)first * d->Cout * P;
		return PNO_STATUS_OK;
	}
	*x = xb, *y = yb;
	return pno_dataset_fetch(d, NULL, first, n, xb, yb);
}

/* Sum acc[0..n) over the ranks with this rank's status in acc[n]: an
 * error on any rank becomes every rank's (agreed). */
static enum pno_status sum_agreed(double *acc, int n, enum pno_status s)
{
	enum pno_status c;
	if (pno_dist_size() == 1)
		return s;
	acc[n] = s != PNO_STATUS_OK;
	if ((c = pno_dist_allreduce_sum_f64(acc, (size_t)n + 1)) !=
	    PNO_STATUS_OK)
		return c;
	return acc[n] > 0 ? pno_dist_agree(s, NULL) : PNO_STATUS_OK;
}

enum pno_status pno__train_eval(struct pno__trainee *t,
				const struct pno_dataset *d, int first,
				int count, float *xb, float *yb, double *out)
{
	enum pno_status s = PNO_STATUS_OK;
	double acc[2] = {0.0, 0.0};
	int lo, hi;
	*out = NAN;
	if (count <= 0)
		return PNO_STATUS_OK;
	shard(count, &lo, &hi);
	for (int i = lo; i < hi && s == PNO_STATUS_OK; i += t->Bmax) {
		int B = PNO__MIN(t->Bmax, hi - i);
		const float *x, *y;
		if ((s = rows(d, first + i, B, xb, yb, &x, &y)) == PNO_STATUS_OK)
			acc[0] += t->eval(t, x, y, B);
	}
	if ((s = sum_agreed(acc, 1, s)) == PNO_STATUS_OK)
		*out = acc[0] / count;
	return s;
}

/* The per-channel mean and standard deviation of the training split's
 * inputs and outputs (two passes, double sums in sample then point order,
 * as pno_fno_fit_normalization), each rank summing its share. (xb, yb)
 * hold `cap` samples. */
static enum pno_status train_stats(struct pno__stats *st,
				   const struct pno_dataset *d, int n_train,
				   float *xb, float *yb, int cap)
{
	enum { M = PNO__STATS_MAX_CH };
	size_t P = (size_t)d->X * d->Y;
	double acc[2 * M + 1], cnt = (double)n_train * P;
	enum pno_status s = PNO_STATUS_OK;
	int lo, hi;
	if (d->Cin > M || d->Cout > M)
		return pno__errorf(PNO_STATUS_UNSUPPORTED,
				   "normalization of %d -> %d channels: at most "
				   "%d", d->Cin, d->Cout, M);
	st->cin = d->Cin, st->cout = d->Cout;
	shard(n_train, &lo, &hi);
	for (int pass = 0; pass < 2; pass++) {
		memset(acc, 0, sizeof acc);
		for (int i = lo; i < hi && s == PNO_STATUS_OK; i += cap) {
			int B = PNO__MIN(cap, hi - i);
			const float *x, *y;
			if ((s = rows(d, i, B, xb, yb, &x, &y)) != PNO_STATUS_OK)
				break;
			for (int io = 0; io < 2; io++) {
				int C = io ? d->Cout : d->Cin;
				const float *src = io ? y : x;
				const double *mu = io ? st->out_mean : st->in_mean;
				for (int c = 0; c < C; c++) {
					double a = acc[io * M + c];
					for (int n = 0; n < B; n++) {
						const float *v = src + ((size_t)n * C + c) * P;
						if (pass == 0)
							for (size_t p = 0; p < P; p++)
								a += v[p];
						else
							for (size_t p = 0; p < P; p++)
								a += (v[p] - mu[c]) * (v[p] - mu[c]);
					}
					acc[io * M + c] = a;
				}
			}
		}
		if ((s = sum_agreed(acc, 2 * M, s)) != PNO_STATUS_OK)
			return s;
		for (int c = 0; c < M; c++) {
			if (pass == 0) {
				st->in_mean[c] = acc[c] / cnt;
				st->out_mean[c] = acc[M + c] / cnt;
			} else {
				st->in_sd[c] = sqrt(acc[c] / cnt);
				st->out_sd[c] = sqrt(acc[M + c] / cnt);
			}
		}
	}
	return PNO_STATUS_OK;
}

void pno__stats_apply(const struct pno__stats *st, float *in_mean,
		      float *in_std, float *out_mean, float *out_std)
{
	for (int io = 0; io < 2; io++)
		for (int c = 0; c < (io ? st->cout : st->cin); c++) {
			double mu = io ? st->out_mean[c] : st->in_mean[c];
			double sd = io ? st->out_sd[c] : st->in_sd[c];
			if (!(sd > 1e-12) || !isfinite(sd))
				sd = 1.0;
			(io ? out_mean : in_mean)[c] = (float)mu;
			(io ? out_std : in_std)[c] = (float)sd;
		}
}

/* The loss and gradient of one global batch of B samples of which this
 * rank holds rows [lo, hi) in (xb, yb), `fetched` the status of reading
 * them. One rank: the method's step. More: the shares' weighted gradients
 * and losses summed in one allreduce of flat = [grads of every block |
 * loss | ranks that could not read their rows]; a rank whose loss is not
 * finite puts a NaN in, so every rank sees a non-finite step. */
static enum pno_status dist_step(struct pno__trainee *t, float *flat,
				 const float *xb, const float *yb, int B,
				 int lo, int hi, int64_t step, int epoch,
				 enum pno_status fetched, double *out)
{
	size_t off = 0;
	double loss = 0.0;
	if (!flat) {
		if (fetched == PNO_STATUS_OK)
			*out = t->step(t, xb, yb, B, step, epoch, 0);
		return fetched;
	}
	if (hi > lo && fetched == PNO_STATUS_OK)
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
	flat[off + 1] = fetched != PNO_STATUS_OK;
	enum pno_status s = pno_dist_allreduce_sum_f32(flat, off + 2);
	if (s != PNO_STATUS_OK)
		return s;
	if (flat[off + 1] > 0)
		return pno_dist_agree(fetched, NULL);
	off = 0;
	for (int b = 0; b < t->nb; b++) {
		memcpy(t->grads[b], flat + off, t->n[b] * sizeof(float));
		off += t->n[b];
	}
	*out = flat[off];
	return PNO_STATUS_OK;
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
	size_t n_flat = 2;
	struct pno__stats st;
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
	/* Bmax >= Bt rows: batches, and evaluation chunks from a file */
	xb = pno_malloc((size_t)t->Bmax * nin * sizeof(float));
	yb = pno_malloc((size_t)t->Bmax * nout * sizeof(float));
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
	/* memory is each rank's own: meet before the first collective that
	 * moves data (a rank that failed is at the agreement below out) */
	if ((s = pno_dist_agree(PNO_STATUS_OK, NULL)) != PNO_STATUS_OK)
		goto out_agreed;
	/* every rank reads the checkpoint (its content does not depend on
	 * the number of ranks that wrote it); the ranks must agree on the
	 * options, o->resume included: the two branches are different
	 * collectives */
	if (o->resume) {
		s = t->ckpt_load(t, opt, &ls, keep_best ? best : NULL, o->resume);
	} else {	/* collective: every rank gets here */
		if ((s = train_stats(&st, d, o->n_train, xb, yb, t->Bmax)) !=
		    PNO_STATUS_OK)
			goto out_agreed;
		s = t->fit_norm(t, &st);
	}
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
			double loss = NAN;
			shard(B, &lo, &hi);	/* [0, B) on one rank */
			s = pno_dataset_fetch(d, perm + bi * Bt + lo, 0, hi - lo,
					      xb, yb);
			/* after a rollback the same steps draw new masks and
			 * normals: the restored state must not meet exactly
			 * the draws that failed */
			s = dist_step(t, flat, xb, yb, B, lo, hi,
				      opt[0].step + ((int64_t)ls.rollbacks << 40),
				      epoch, s, &loss);
			if (s != PNO_STATUS_OK)
				goto out_agreed;
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
		if ((s = pno__train_eval(t, d, o->n_train, o->n_val, xb, yb,
					 &es.val_loss)) != PNO_STATUS_OK)
			goto out_agreed;
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
	if ((s = pno__train_eval(t, d, o->n_train, o->n_val, xb, yb,
				 &r->val_loss)) != PNO_STATUS_OK ||
	    (s = pno__train_eval(t, d, d->N - o->n_test, o->n_test, xb, yb,
				 &r->test_rel_l2)) != PNO_STATUS_OK)
		goto out_agreed;
	r->seconds = now_s() - t_start;
	s = PNO_STATUS_OK;
	goto out;
nomem:
	s = pno__errorf(PNO_STATUS_NOMEM, "training: out of memory");
out:
	/* a failure of this rank alone (memory) meets the others' agreement
	 * after the allocations; one that every rank meets (non-finite
	 * training) is agreed by all */
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
