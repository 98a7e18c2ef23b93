/* Adam/AdamW, clipping, relative L2 loss, the training loop, checkpoints. */
#include "pno/train.h"
#include "pno/loss.h"
#include "internal.h"
#include "fno_internal.h"
#include "train_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- optimizer ---- */
enum pno_status pno_adam_init(struct pno_adam *o, size_t n, float lr,
			      float weight_decay, int decoupled)
{
	memset(o, 0, sizeof *o);
	o->decoupled = decoupled;
	o->lr = lr;
	o->beta1 = 0.9f;
	o->beta2 = 0.999f;
	o->eps = 1e-8f;
	o->weight_decay = weight_decay;
	o->n = n;
	o->m = pno_calloc(n, sizeof(float));
	o->v = pno_calloc(n, sizeof(float));
	if (!o->m || !o->v) {
		pno_adam_free(o);
		return pno__errorf(PNO_STATUS_NOMEM, "optimizer: out of memory");
	}
	return PNO_STATUS_OK;
}

void pno_adam_free(struct pno_adam *o)
{
	if (!o)
		return;
	pno_free(o->m);
	pno_free(o->v);
	memset(o, 0, sizeof *o);
}

/* The update of torch.optim.Adam / AdamW (amsgrad off). */
void pno_adam_step(struct pno_adam *o, float *params, const float *grads)
{
	o->step++;
	const float b1 = o->beta1, b2 = o->beta2, eps = o->eps, lr = o->lr;
	const float wd = o->weight_decay;
	const float bc1 = 1.0f - powf(b1, (float)o->step);
	const float bc2s = sqrtf(1.0f - powf(b2, (float)o->step));
	const float step_size = lr / bc1;
	const int dec = o->decoupled;
	float *restrict m = o->m, *restrict v = o->v;
	const size_t n = o->n;
#pragma omp parallel for simd schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++) {
		float p = params[i], g = grads[i];
		if (dec)
			p *= 1.0f - lr * wd;
		else
			g += wd * p;
		m[i] = b1 * m[i] + (1.0f - b1) * g;
		v[i] = b2 * v[i] + (1.0f - b2) * g * g;
		params[i] = p - step_size * m[i] / (sqrtf(v[i]) / bc2s + eps);
	}
}

double pno_grad_clip(float *grads, size_t n, float max_norm)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)grads[i] * grads[i];
	double norm = sqrt(s);
	if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
		float scale = (float)(max_norm / (norm + 1e-6));
		for (size_t i = 0; i < n; i++)
			grads[i] *= scale;
	}
	return norm;
}

/* ---- loss ---- */
double pno_loss_rel_l2(float *dpred, const float *pred, const float *y,
		       int B, size_t N)
{
	double total = 0.0;
	for (int b = 0; b < B; b++) {
		const float *pb = pred + (size_t)b * N, *yb = y + (size_t)b * N;
		double nd = 0.0, ny = 0.0;
		for (size_t i = 0; i < N; i++) {
			double d = (double)pb[i] - yb[i];
			nd += d * d;
			ny += (double)yb[i] * yb[i];
		}
		nd = sqrt(nd);
		ny = ny > 0 ? sqrt(ny) : 1.0;
		total += nd / ny;
		if (dpred) {
			float *g = dpred + (size_t)b * N;
			double c = nd > 0 ? 1.0 / (nd * ny * B) : 0.0;
			for (size_t i = 0; i < N; i++)
				g[i] = (float)(((double)pb[i] - yb[i]) * c);
		}
	}
	return total / B;
}

/* ---- data ---- */
void pno_train_opts_default(struct pno_train_opts *o)
{
	memset(o, 0, sizeof *o);
	o->epochs = 100;
	o->batch = 20;
	o->lr = 1e-3f;
	o->weight_decay = 1e-4f;
	o->adamw = 1;
	o->step_size = 0;
	o->gamma = 0.5f;
	o->clip = 0.0f;
	o->seed = 0;
	o->keep_best = 1;
	o->loss = PNO_LOSS_REL_L2;
	o->ens_samples = 3;
	o->kl_beta = 1.0f;
	o->kl_warmup = 5;
	o->rollback_after = 3;
	o->max_rollbacks = 8;
}

enum pno_status pno_train_check_data(const struct pno_fno *m,
				     const struct pno_dataset *d,
				     const struct pno_train_opts *o)
{
	const struct pno_fno_arch *a = &m->arch;
	if (d->dims != a->dims)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "data is %dD, the model is %dD", d->dims,
				   a->dims);
	if (d->Cin != a->in_ch || d->Cout != a->out_ch)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "data has %d input / %d output channels, "
				   "the model %d / %d", d->Cin, d->Cout,
				   a->in_ch, a->out_ch);
	if (d->X != m->X || (d->dims == 2 && d->Y != m->Y))
		return pno__errorf(PNO_STATUS_SHAPE,
				   "data grid %d x %d differs from the model's "
				   "workspace grid %d x %d", d->X, d->Y, m->X,
				   m->Y);
	if (o) {
		if (o->n_train < 1 || o->n_val < 0 || o->n_test < 0 ||
		    (long)o->n_train + o->n_val + o->n_test > d->N)
			return pno__errorf(PNO_STATUS_INVALID,
					   "split %d train + %d validation + "
					   "%d test needs more than the %d "
					   "samples in the data", o->n_train,
					   o->n_val, o->n_test, d->N);
	}
	return PNO_STATUS_OK;
}

void pno_fno_fit_normalization(struct pno_fno *m, const struct pno_dataset *d,
			       int n_train)
{
	size_t P = (size_t)d->X * d->Y;
	for (int io = 0; io < 2; io++) {
		int C = io ? d->Cout : d->Cin;
		const float *src = io ? d->out : d->in;
		for (int c = 0; c < C; c++) {
			double s = 0, s2 = 0;
			for (int n = 0; n < n_train; n++) {
				const float *v = src + ((size_t)n * C + c) * P;
				for (size_t p = 0; p < P; p++)
					s += v[p];
			}
			double cnt = (double)n_train * P, mean = s / cnt;
			for (int n = 0; n < n_train; n++) {
				const float *v = src + ((size_t)n * C + c) * P;
				for (size_t p = 0; p < P; p++)
					s2 += (v[p] - mean) * (v[p] - mean);
			}
			double sd = sqrt(s2 / cnt);
			if (!(sd > 1e-12))
				sd = 1.0;
			if (io) {
				m->norm.out_mean[c] = (float)mean;
				m->norm.out_std[c] = (float)sd;
			} else {
				m->norm.in_mean[c] = (float)mean;
				m->norm.in_std[c] = (float)sd;
			}
		}
	}
}

enum pno_status pno_eval_rel_l2(struct pno_fno *m, const struct pno_dataset *d,
				int first, int count, double *out)
{
	size_t P = (size_t)m->P;
	size_t nin = (size_t)d->Cin * P, nout = (size_t)d->Cout * P;
	double s = 0.0;
	if (count <= 0) {
		*out = NAN;
		return PNO_STATUS_OK;
	}
	if (!d->in)
		return pno__errorf(PNO_STATUS_INVALID,
				   "evaluation: the samples are not in memory "
				   "(pno_dataset_open: read them with "
				   "pno_dataset_read)");
	/* the mean prediction: dropout off, the mean head */
	int stochastic = m->stochastic, heads = m->arch.heads == 2 ? 2 : 1;
	m->stochastic = 0;
	for (int i = 0; i < count; i += m->Bmax) {
		int B = PNO__MIN(m->Bmax, count - i);
		const float *x = d->in + (size_t)(first + i) * nin;
		const float *y = d->out + (size_t)(first + i) * nout;
		const float *pred = pno_fno_forward(m, x, B);
		for (int b = 0; b < B; b++)
			s += pno_loss_rel_l2(NULL, pred + (size_t)b * heads * nout,
					     y + (size_t)b * nout, 1, nout);
	}
	m->stochastic = stochastic;
	*out = s / count;
	return PNO_STATUS_OK;
}

/* ---- checkpoints ---- */

static enum pno_status checkpoint_write(const struct pno_fno *m,
					const struct pno_adam *o,
					const struct pno__loop_state *ls,
					const float *best, const char *path,
					const char *extra_json)
{
	struct pno_tensor_view xt[3] = {
		{"optimizer.exp_avg", 1, {(int64_t)o->n}, o->m},
		{"optimizer.exp_avg_sq", 1, {(int64_t)o->n}, o->v},
		{"train.best_params", 1, {(int64_t)m->n_params}, best},
	};
	char state[512];
	json_t *md = NULL;
	char *meta = NULL;
	enum pno_status st;
	pno__json_init();
	/* %.17g: the best loss round-trips exactly; inf is written as -1 */
	snprintf(state, sizeof state,
		 "{\"epoch\": %d, \"step\": %lld, \"decoupled\": %d, "
		 "\"lr_scale\": %.9g, \"best_val\": %.17g, \"best_epoch\": %d, "
		 "\"since_best\": %d, \"rollbacks\": %d}",
		 ls->epoch, (long long)o->step, o->decoupled, ls->lr_scale,
		 isfinite(ls->best_val) ? ls->best_val : -1.0, ls->best_epoch,
		 ls->since_best, ls->rollbacks);
	if (extra_json) {
		char msg[256] = "not an object";
		md = pno__json_loads(extra_json, &st, msg, sizeof msg);
		if (st == PNO_STATUS_FORMAT || (md && !json_is_object(md))) {
			json_decref(md);
			return pno__errorf(PNO_STATUS_INVALID,
					   "checkpoint metadata is not a JSON "
					   "object: %s", msg);
		}
	} else {
		md = json_object();
	}
	if (!md ||
	    json_object_set_new(md, "checkpoint", json_string(state)) != 0) {
		json_decref(md);
		return pno__errorf(PNO_STATUS_NOMEM,
				   "checkpoint metadata: out of memory");
	}
	meta = pno__json_dumps(md, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(md);
	if (meta && pno__json_oom()) {
		pno_free(meta);
		meta = NULL;
	}
	if (!meta)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "checkpoint metadata: out of memory");
	st = pno__fno_save_ext(m, path, meta, xt, best ? 3 : 2);
	pno_free(meta);
	return st;
}

enum pno_status pno_checkpoint_save(const struct pno_fno *m,
				    const struct pno_adam *o, int epoch,
				    const char *path, const char *extra_json)
{
	struct pno__loop_state ls = {epoch, 1.0f, INFINITY, 0, 0, 0};
	return checkpoint_write(m, o, &ls, NULL, path, extra_json);
}

int pno__json_int(json_t *o, const char *k, int *v)
{
	json_t *j = json_object_get(o, k);
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    json_integer_value(j) > INT32_MAX)
		return 0;
	*v = (int)json_integer_value(j);
	return 1;
}

/* Load model weights, normalization, optimizer and loop state (fields a
 * checkpoint of an older pno lacks keep their defaults); best receives
 * the best parameters if the file has them. */
static enum pno_status checkpoint_load(struct pno_fno *m, struct pno_adam *o,
				       struct pno__loop_state *ls, float *best,
				       const char *path)
{
	struct pno_fno tmp;
	struct pno_safetensors st = {0};
	enum pno_status s;
	json_t *md = NULL, *cp = NULL;

	pno__json_setup();
	if ((s = pno_fno_load(&tmp, path, m->X, m->Y, 1)) != PNO_STATUS_OK)
		return s;
	if (memcmp(&tmp.arch, &m->arch, sizeof m->arch) != 0) {
		pno_fno_free(&tmp);
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: checkpoint architecture differs from "
				   "the requested model", path);
	}
	memcpy(m->params, tmp.params, m->n_params * sizeof(float));
	m->norm = tmp.norm;
	pno_fno_free(&tmp);

	if ((s = pno_safetensors_read(&st, path)) != PNO_STATUS_OK)
		return s;
	const struct pno_st_entry *em = pno_safetensors_find(&st, "optimizer.exp_avg");
	const struct pno_st_entry *ev = pno_safetensors_find(&st, "optimizer.exp_avg_sq");
	const struct pno_st_entry *eb = pno_safetensors_find(&st, "train.best_params");
	if (!em || !ev || em->count != o->n || ev->count != o->n ||
	    (eb && eb->count != m->n_params)) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: no optimizer state of %zu values (not a "
				"training checkpoint?)", path, o->n);
		goto out;
	}
	char msg[256];
	md = pno__json_loads(st.metadata_json, &s, msg, sizeof msg);
	json_t *v = md ? json_object_get(md, "checkpoint") : NULL;
	if (json_is_string(v))
		cp = pno__json_loads(json_string_value(v), &s, msg, sizeof msg);
	if (s == PNO_STATUS_NOMEM) {
		pno__errorf(s, "%s: %s", path, msg);
		goto out;
	}
	json_t *js = cp ? json_object_get(cp, "step") : NULL;
	if (!cp || !pno__json_int(cp, "epoch", &ls->epoch) ||
	    !json_is_integer(js) ||
	    json_integer_value(js) < 0) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: metadata \"checkpoint\" missing or invalid",
				path);
		goto out;
	}
	json_t *jl = json_object_get(cp, "lr_scale");
	json_t *jb = json_object_get(cp, "best_val");
	if (json_is_number(jl) && json_number_value(jl) > 0)
		ls->lr_scale = (float)json_number_value(jl);
	if (json_is_number(jb) && json_number_value(jb) >= 0)
		ls->best_val = json_number_value(jb);
	pno__json_int(cp, "best_epoch", &ls->best_epoch);
	pno__json_int(cp, "since_best", &ls->since_best);
	pno__json_int(cp, "rollbacks", &ls->rollbacks);
	o->step = json_integer_value(js);
	memcpy(o->m, em->data, o->n * sizeof(float));
	memcpy(o->v, ev->data, o->n * sizeof(float));
	if (eb && best) {
		memcpy(best, eb->data, m->n_params * sizeof(float));
	} else if (!eb) {
		/* written with best keeping off: its best weights are unknown,
		 * so the search for the best starts again here */
		ls->best_epoch = 0;
		ls->best_val = INFINITY;
		ls->since_best = 0;
	}
	s = PNO_STATUS_OK;
out:
	json_decref(cp);
	json_decref(md);
	pno_safetensors_free(&st);
	return s;
}

/* ---- the FNO family as a trainee ---- */

enum pno_status pno__train_check_opts(const struct pno_train_opts *o,
				      int Bmax)
{
	if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0) || o->weight_decay < 0 ||
	    o->clip < 0 || ((o->step_size > 0 || o->plateau > 0) && !(o->gamma > 0)))
		return pno__errorf(PNO_STATUS_INVALID,
				   "training options: need epochs >= 1, batch "
				   ">= 1, lr > 0, weight decay >= 0, clip >= 0, "
				   "gamma > 0");
	if (o->patience < 0 || o->plateau < 0 || o->rollback_after < 1 ||
	    o->max_rollbacks < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "training options: patience and plateau must "
				   "be >= 0, rollback-after >= 1");
	if ((o->patience > 0 || o->plateau > 0) && o->n_val < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "early stopping and the plateau schedule need "
				   "a validation split (nval >= 1)");
	if (o->batch > Bmax)
		return pno__errorf(PNO_STATUS_INVALID,
				   "batch %d exceeds the model's batch bound %d",
				   o->batch, Bmax);
	return PNO_STATUS_OK;
}

static enum pno_status check_opts(const struct pno_fno *m,
				  const struct pno_train_opts *o)
{
	enum pno_status st = pno__train_check_opts(o, m->Bmax);
	if (st != PNO_STATUS_OK)
		return st;
	int heads = m->arch.heads == 2 ? 2 : 1;
	switch (o->loss) {
	case PNO_LOSS_REL_L2:
		if (heads == 2)
			return pno__errorf(PNO_STATUS_INVALID,
					   "a mean-scale model (pno-r) trains with "
					   "the energy score or the CRPS, not the "
					   "relative L2");
		break;
	case PNO_LOSS_ENERGY:
		if (o->ens_samples < 2 || o->ens_samples > 64)
			return pno__errorf(PNO_STATUS_INVALID,
					   "energy score: --ens-samples %d must be "
					   "in [2, 64]", o->ens_samples);
		if (heads == 1 && !pno_fno_has_dropout(&m->arch))
			return pno__errorf(PNO_STATUS_INVALID,
					   "energy score: the model has no dropout "
					   "and one head, so its samples would all "
					   "be equal");
		if (heads == 1 && (long)o->batch * o->ens_samples > m->Bmax)
			return pno__errorf(PNO_STATUS_INVALID,
					   "energy score: batch %d x %d samples "
					   "exceeds the model's batch bound %d",
					   o->batch, o->ens_samples, m->Bmax);
		break;
	case PNO_LOSS_CRPS:
		if (heads != 2)
			return pno__errorf(PNO_STATUS_INVALID,
					   "the closed-form CRPS needs a "
					   "mean-scale model (heads = 2)");
		break;
	default:
		return pno__errorf(PNO_STATUS_INVALID, "unknown loss %d",
				   (int)o->loss);
	}
	return PNO_STATUS_OK;
}

/* Buffers of the probabilistic losses, sized at the start of training. */
struct step_ws {
	float *xr;	/* (batch * m, Cin, P): replicated inputs (pno-d) */
	float *X;	/* (batch, m, N) samples (pno-r) */
	float *z;	/* (batch, m, N) normals (pno-r) */
	float *dX;	/* (batch * m, N) d loss / d samples */
	float *dout;	/* (batch, heads * N) */
};

static void step_ws_free(struct step_ws *w)
{
	pno_free(w->xr);
	pno_free(w->X);
	pno_free(w->z);
	pno_free(w->dX);
	pno_free(w->dout);
	memset(w, 0, sizeof *w);
}

static enum pno_status step_ws_init(struct step_ws *w, const struct pno_fno *m,
				    const struct pno_train_opts *o, int Bt,
				    size_t nin, size_t nout)
{
	size_t mm = o->loss == PNO_LOSS_ENERGY ? (size_t)o->ens_samples : 1;
	int heads = m->arch.heads == 2 ? 2 : 1;
	memset(w, 0, sizeof *w);
	w->dX = pno_malloc((size_t)Bt * mm * nout * sizeof(float));
	w->dout = pno_malloc((size_t)Bt * heads * nout * sizeof(float));
	if (o->loss == PNO_LOSS_ENERGY && heads == 1)
		w->xr = pno_malloc((size_t)Bt * mm * nin * sizeof(float));
	if (o->loss == PNO_LOSS_ENERGY && heads == 2) {
		w->X = pno_malloc((size_t)Bt * mm * nout * sizeof(float));
		w->z = pno_malloc((size_t)Bt * mm * nout * sizeof(float));
	}
	if (!w->dX || !w->dout ||
	    (o->loss == PNO_LOSS_ENERGY && heads == 1 && !w->xr) ||
	    (o->loss == PNO_LOSS_ENERGY && heads == 2 && (!w->X || !w->z))) {
		step_ws_free(w);
		return pno__errorf(PNO_STATUS_NOMEM, "training: out of memory");
	}
	return PNO_STATUS_OK;
}

/* One training step's loss on (xb, yb) and, if it is finite, its
 * gradient accumulated into m->grads. The B rows are rows b0.. of the
 * step's global batch: masks and normals are drawn for those rows. */
static double step_loss(struct pno_fno *m, const struct pno_train_opts *o,
			struct step_ws *w, const float *xb, const float *yb,
			int B, size_t nin, size_t nout, int64_t step, int b0)
{
	const int ms = o->ens_samples;
	double loss;
	m->stochastic = pno_fno_has_dropout(&m->arch);
	if (m->stochastic)
		pno_fno_set_rng(m, pno_rng_u64(o->seed, 0xD8000000ull,
					       (uint64_t)step));
	/* pno-d's batch holds ms copies of each row */
	m->rng_b0 = (uint64_t)b0 *
		    (o->loss == PNO_LOSS_ENERGY && m->arch.heads != 2 ? ms : 1);
	if (o->loss == PNO_LOSS_REL_L2) {
		const float *pred = pno_fno_forward(m, xb, B);
		loss = pno_loss_rel_l2(w->dX, pred, yb, B, nout);
		if (isfinite(loss))
			pno_fno_backward(m, w->dX, B);
		return loss;
	}
	if (o->loss == PNO_LOSS_ENERGY && m->arch.heads != 2) {
		/* pno-d: the masks of the ms copies of an input differ */
		for (int b = 0; b < B; b++)
			for (int j = 0; j < ms; j++)
				memcpy(w->xr + ((size_t)b * ms + j) * nin,
				       xb + (size_t)b * nin, nin * sizeof(float));
		const float *X = pno_fno_forward(m, w->xr, B * ms);
		loss = pno_loss_energy(w->dX, X, yb, B, ms, nout);
		if (isfinite(loss))
			pno_fno_backward(m, w->dX, B * ms);
		return loss;
	}
	/* mean-scale heads: out (B, 2N) = [mu | sigma] per sample */
	const float *out = pno_fno_forward(m, xb, B);
	if (o->loss == PNO_LOSS_CRPS) {
		loss = 0.0;
		for (int b = 0; b < B; b++) {
			const float *mu = out + (size_t)b * 2 * nout;
			float *d = w->dout + (size_t)b * 2 * nout;
			loss += pno_loss_crps_gauss(d, d + nout, mu, mu + nout,
						    yb + (size_t)b * nout, 1,
						    nout);
		}
		loss /= B;
		for (size_t i = 0; i < (size_t)B * 2 * nout; i++)
			w->dout[i] /= (float)B;
	} else {
		size_t nz = (size_t)B * ms * nout;
		pno_rng_normal(w->z, nz, o->seed, 0xD9000000ull + (uint64_t)step,
			       (uint64_t)b0 * ms * nout);
		for (int b = 0; b < B; b++) {
			const float *mu = out + (size_t)b * 2 * nout;
			const float *sg = mu + nout;
			for (int j = 0; j < ms; j++) {
				size_t r = ((size_t)b * ms + j) * nout;
				for (size_t i = 0; i < nout; i++)
					w->X[r + i] = mu[i] + sg[i] * w->z[r + i];
			}
		}
		loss = pno_loss_energy(w->dX, w->X, yb, B, ms, nout);
		for (int b = 0; b < B; b++) {
			float *dmu = w->dout + (size_t)b * 2 * nout;
			float *dsg = dmu + nout;
			memset(dmu, 0, 2 * nout * sizeof(float));
			for (int j = 0; j < ms; j++) {
				size_t r = ((size_t)b * ms + j) * nout;
				for (size_t i = 0; i < nout; i++) {
					dmu[i] += w->dX[r + i];
					dsg[i] += w->dX[r + i] * w->z[r + i];
				}
			}
		}
	}
	if (isfinite(loss))
		pno_fno_backward(m, w->dout, B);
	return loss;
}

struct fno_trainee {
	struct pno_fno *m;
	const struct pno_train_opts *o;
	struct step_ws sw;
	size_t nin, nout;
};

static enum pno_status fno_check(struct pno__trainee *t,
				 const struct pno_dataset *d)
{
	struct fno_trainee *f = t->ctx;
	return pno_train_check_data(f->m, d, NULL);
}

static enum pno_status fno_fit_norm(struct pno__trainee *t,
				    const struct pno__stats *st)
{
	struct pno_fno_norm *n = &((struct fno_trainee *)t->ctx)->m->norm;
	pno__stats_apply(st, n->in_mean, n->in_std, n->out_mean, n->out_std);
	return PNO_STATUS_OK;
}

static double fno_step(struct pno__trainee *t, const float *xb,
		       const float *yb, int B, int64_t step, int epoch, int b0)
{
	struct fno_trainee *f = t->ctx;
	double loss;
	(void)epoch;
	pno_fno_zero_grad(f->m);
	loss = step_loss(f->m, f->o, &f->sw, xb, yb, B, f->nin, f->nout, step,
			 b0);
	f->m->rng_b0 = 0;	/* sampling after training numbers from 0 */
	return loss;
}

static double fno_eval(struct pno__trainee *t, const float *x,
		       const float *y, int B)
{
	struct fno_trainee *f = t->ctx;
	struct pno_fno *m = f->m;
	int stochastic = m->stochastic, heads = m->arch.heads == 2 ? 2 : 1;
	double s = 0;
	m->stochastic = 0;	/* the mean prediction: dropout off */
	const float *pred = pno_fno_forward(m, x, B);
	for (int b = 0; b < B; b++)
		s += pno_loss_rel_l2(NULL, pred + (size_t)b * heads * f->nout,
				     y + (size_t)b * f->nout, 1, f->nout);
	m->stochastic = stochastic;
	return s;
}

static enum pno_status fno_ckpt_write(struct pno__trainee *t,
				      const struct pno_adam *opt,
				      const struct pno__loop_state *ls,
				      float *const *best, const char *path,
				      const char *extra_json)
{
	struct fno_trainee *f = t->ctx;
	return checkpoint_write(f->m, &opt[0], ls, best ? best[0] : NULL, path,
				extra_json);
}

static enum pno_status fno_ckpt_load(struct pno__trainee *t,
				     struct pno_adam *opt,
				     struct pno__loop_state *ls, float **best,
				     const char *path)
{
	struct fno_trainee *f = t->ctx;
	return checkpoint_load(f->m, &opt[0], ls, best ? best[0] : NULL, path);
}

enum pno_status pno_train_fno(struct pno_fno *m, const struct pno_dataset *d,
			      const struct pno_train_opts *o,
			      struct pno_train_result *r)
{
	enum pno_status s;
	size_t P = (size_t)m->P;
	struct fno_trainee f = {m, o, {0}, (size_t)d->Cin * P,
				(size_t)d->Cout * P};
	struct pno__trainee t = {
		.method = m->method[0] ? m->method : "fno",
		.nb = 1,
		.params = {m->params},
		.grads = {m->grads},
		.n = {m->n_params},
		.weight_decay = {o->weight_decay},
		.Bmax = m->Bmax,
		.ctx = &f,
		.check = fno_check,
		.fit_norm = fno_fit_norm,
		.step = fno_step,
		.eval = fno_eval,
		.ckpt_write = fno_ckpt_write,
		.ckpt_load = fno_ckpt_load,
	};
	memset(r, 0, sizeof *r);
	r->best_val_loss = NAN;
	if ((s = check_opts(m, o)) != PNO_STATUS_OK ||
	    (s = pno_train_check_data(m, d, o)) != PNO_STATUS_OK)
		return s;
	int Bt = PNO__MIN(o->batch, m->Bmax);
	if ((s = step_ws_init(&f.sw, m, o, Bt, f.nin, f.nout)) != PNO_STATUS_OK)
		return s;
	s = pno__train_loop(&t, d, o, r);
	step_ws_free(&f.sw);
	return s;
}
