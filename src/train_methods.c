/* The variational FNO and DeepONet as trainees of the shared loop. */
#include "internal.h"
#include "pno/deeponet.h"
#include "pno/loss.h"
#include "pno/vfno.h"
#include "train_internal.h"

#include <math.h>
#include <string.h>

static enum pno_status check_split(const struct pno_dataset *d,
				   const struct pno_train_opts *o)
{
	if (o->n_train < 1 || o->n_val < 0 || o->n_test < 0 ||
	    (long)o->n_train + o->n_val + o->n_test > d->N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "split %d train + %d validation + %d test "
				   "needs more than the %d samples in the data",
				   o->n_train, o->n_val, o->n_test, d->N);
	return PNO_STATUS_OK;
}

static enum pno_status check_shape(const char *what, int dims, int cin,
				   int cout, int X, int Y,
				   const struct pno_dataset *d)
{
	if (d->dims != dims || d->Cin != cin || d->Cout != cout ||
	    d->X != X || (dims == 2 && d->Y != Y))
		return pno__errorf(PNO_STATUS_SHAPE,
				   "data is %dD %d x %d with %d -> %d channels; "
				   "the %s model is %dD %d x %d with %d -> %d",
				   d->dims, d->X, d->Y, d->Cin, d->Cout, what,
				   dims, X, Y, cin, cout);
	return PNO_STATUS_OK;
}

/* ---- vfno ---- */
struct vfno_trainee {
	struct pno_vfno *v;
	const struct pno_train_opts *o;
	size_t nout;
};

static enum pno_status vfno_check(struct pno__trainee *t,
				  const struct pno_dataset *d)
{
	struct pno_vfno *v = ((struct vfno_trainee *)t->ctx)->v;
	const struct pno_fno_arch *a = &v->net.arch;
	return check_shape("vfno", a->dims, a->in_ch, v->C, v->net.X, v->net.Y,
			   d);
}

static enum pno_status vfno_fit_norm(struct pno__trainee *t,
				     const struct pno__stats *st)
{
	/* the mean channels; the log-variance channels keep (0, 1) */
	struct pno_fno_norm *n = &((struct vfno_trainee *)t->ctx)->v->net.norm;
	pno__stats_apply(st, n->in_mean, n->in_std, n->out_mean, n->out_std);
	return PNO_STATUS_OK;
}

static double vfno_step(struct pno__trainee *t, const float *xb,
			const float *yb, int B, int64_t step, int epoch, int b0)
{
	struct vfno_trainee *f = t->ctx;
	/* the posterior draw is one per step, shared by every row; masks
	 * (if the network has dropout) follow the global row */
	f->v->net.rng_b0 = (uint64_t)b0;
	double klw = pno_vfno_kl_weight(epoch - 1, f->o->kl_warmup,
					f->o->kl_beta, f->o->n_train);
	pno_vfno_zero_grad(f->v);
	f->v->calls = (uint64_t)step;	/* the step's posterior draw */
	double loss = pno_vfno_loss(f->v, xb, yb, B, klw, 1);
	f->v->net.rng_b0 = 0;
	return loss;
}

static double vfno_eval(struct pno__trainee *t, const float *x,
			const float *y, int B)
{
	struct vfno_trainee *f = t->ctx;
	double s = 0;
	pno_vfno_use_mean(f->v);
	f->v->net.stochastic = 0;
	const float *out = pno_fno_forward(&f->v->net, x, B);
	/* (B, 2C, P): the mean channels first */
	for (int b = 0; b < B; b++)
		s += pno_loss_rel_l2(NULL, out + (size_t)b * 2 * f->nout,
				     y + (size_t)b * f->nout, 1, f->nout);
	return s;
}

enum pno_status pno_train_vfno(struct pno_vfno *v, const struct pno_dataset *d,
			       const struct pno_train_opts *o,
			       struct pno_train_result *r)
{
	enum pno_status s;
	struct vfno_trainee f = {v, o, (size_t)d->Cout * d->X * d->Y};
	struct pno__trainee t = {
		.method = "vfno",
		.nb = 2,
		.params = {v->net.params, v->var},
		.grads = {v->net.grads, v->vgrad},
		.n = {v->net.n_params, 2 * v->n_var},
		.weight_decay = {o->weight_decay, 0.0f},
		.Bmax = v->net.Bmax,
		.ctx = &f,
		.check = vfno_check,
		.fit_norm = vfno_fit_norm,
		.step = vfno_step,
		.eval = vfno_eval,
		.norm = (float *)&v->net.norm,
		.n_norm = sizeof v->net.norm / sizeof(float),
		.ckpt_write = pno__ckpt_write,
		.ckpt_load = pno__ckpt_load,
	};
	memset(r, 0, sizeof *r);
	r->best_val_loss = NAN;
	if ((s = pno__train_check_opts(o, v->net.Bmax)) != PNO_STATUS_OK ||
	    (s = vfno_check(&t, d)) != PNO_STATUS_OK ||
	    (s = check_split(d, o)) != PNO_STATUS_OK)
		return s;
	if (!(o->kl_beta >= 0) || o->kl_warmup < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno: --kl-beta must be >= 0 and --kl-warmup "
				   ">= 0");
	s = pno__train_loop(&t, d, o, r);
	pno_vfno_use_mean(v);
	return s;
}

/* ---- deeponet ---- */
struct don_trainee {
	struct pno_deeponet *m;
	float *dout;
	size_t nout;
};

static enum pno_status don_check(struct pno__trainee *t,
				 const struct pno_dataset *d)
{
	struct pno_deeponet *m = ((struct don_trainee *)t->ctx)->m;
	return check_shape("deeponet", m->arch.dims, m->arch.in_ch,
			   m->arch.out_ch, m->X, m->Y, d);
}

static enum pno_status don_fit_norm(struct pno__trainee *t,
				    const struct pno__stats *st)
{
	struct pno_deeponet_norm *n = &((struct don_trainee *)t->ctx)->m->norm;
	pno__stats_apply(st, n->in_mean, n->in_std, n->out_mean, n->out_std);
	return PNO_STATUS_OK;
}

static double don_step(struct pno__trainee *t, const float *xb,
		       const float *yb, int B, int64_t step, int epoch, int b0)
{
	struct don_trainee *f = t->ctx;
	(void)step, (void)epoch, (void)b0;	/* deterministic */
	pno_deeponet_zero_grad(f->m);
	const float *pred = pno_deeponet_forward(f->m, xb, B);
	if (!pred)
		return NAN;
	double loss = pno_loss_rel_l2(f->dout, pred, yb, B, f->nout);
	if (isfinite(loss) &&
	    pno_deeponet_backward(f->m, f->dout, B) != PNO_STATUS_OK)
		return NAN;
	return loss;
}

static double don_eval(struct pno__trainee *t, const float *x,
		       const float *y, int B)
{
	struct don_trainee *f = t->ctx;
	const float *pred = pno_deeponet_forward(f->m, x, B);
	return pred ? pno_loss_rel_l2(NULL, pred, y, B, f->nout) * B : NAN;
}

enum pno_status pno_train_deeponet(struct pno_deeponet *m,
				   const struct pno_dataset *d,
				   const struct pno_train_opts *o,
				   struct pno_train_result *r)
{
	enum pno_status s;
	struct don_trainee f = {m, NULL, (size_t)d->Cout * d->X * d->Y};
	struct pno__trainee t = {
		.method = "deeponet",
		.nb = 1,
		.params = {m->params},
		.grads = {m->grads},
		.n = {m->n_params},
		.weight_decay = {o->weight_decay},
		.Bmax = m->Bmax,
		.ctx = &f,
		.check = don_check,
		.fit_norm = don_fit_norm,
		.step = don_step,
		.eval = don_eval,
		.norm = (float *)&m->norm,
		.n_norm = sizeof m->norm / sizeof(float),
		.ckpt_write = pno__ckpt_write,
		.ckpt_load = pno__ckpt_load,
	};
	memset(r, 0, sizeof *r);
	r->best_val_loss = NAN;
	if ((s = pno__train_check_opts(o, m->Bmax)) != PNO_STATUS_OK ||
	    (s = don_check(&t, d)) != PNO_STATUS_OK ||
	    (s = check_split(d, o)) != PNO_STATUS_OK)
		return s;
	f.dout = pno_malloc((size_t)m->Bmax * f.nout * sizeof(float));
	if (!f.dout)
		return pno__errorf(PNO_STATUS_NOMEM, "training: out of memory");
	s = pno__train_loop(&t, d, o, r);
	pno_free(f.dout);
	return s;
}
