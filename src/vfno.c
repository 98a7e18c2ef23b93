/* The Bayesian FNO: mean-field Gaussian posterior over spectral (and
 * optionally pointwise) weights, heteroscedastic head, ELBO loss. */
#include "pno/vfno.h"
#include "pno/io.h"
#include "pno/loss.h"
#include "internal.h"
#include "fno_internal.h"
#include "model_io.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* eps streams live far from the FNO init streams (0x1000 + tensor). */
#define VFNO_STREAM0 0x5646000000000000ull
#define LOG_2PI 1.83787706640934548356
/* fixed work chunks for the element-wise passes (and their KL sums) */
#define VFNO_CHUNK 16384
#define VFNO_PAR_MIN 65536

void pno_vfno_opts_default(struct pno_vfno_opts *o)
{
	o->prior_sigma = 1.0f;
	o->variational_pointwise = 0;
	o->sigma_init = 1e-2f;
}

static int is_variational(const char *name, int vp)
{
	return strncmp(name, "spectral.", 9) == 0 ||
	       (vp && strncmp(name, "pointwise.", 10) == 0);
}

void pno_vfno_free(struct pno_vfno *v)
{
	if (!v)
		return;
	pno_fno_free(&v->net);
	pno_free(v->var);
	pno_free(v->vgrad);
	pno_free(v->eps);
	pno_free(v->sig);
	pno_free(v->dsig);
	pno_free(v->kl_part);
	pno_free(v->dout);
	pno_free(v->acc);
	memset(v, 0, sizeof *v);
}

/* Network, variational views and workspaces for the 2C-output `na`. */
static enum pno_status init_common(struct pno_vfno *v,
				   const struct pno_fno_arch *na, int X, int Y,
				   int Bmax, uint64_t seed, float prior_sigma,
				   int vp)
{
	enum pno_status st;
	memset(v, 0, sizeof *v);
	if ((st = pno_fno_init(&v->net, na, X, Y, Bmax, seed)) != PNO_STATUS_OK)
		return st;
	v->C = na->out_ch / 2;
	v->prior_sigma = prior_sigma;
	v->variational_pointwise = vp;
	v->seed = seed;
	int n = pno_fno_tensor_count(&v->net);
	for (int i = 0; i < n; i++) {
		char name[64];
		size_t off, cnt;
		pno_fno_tensor_info(&v->net, i, name, sizeof name, NULL, NULL,
				    &off, &cnt);
		if (!is_variational(name, vp))
			continue;
		if (v->n_tensors == PNO_VFNO_MAX_VAR) {
			st = pno__errorf(PNO_STATUS_INTERNAL,
					 "vfno: more than %d variational "
					 "tensors", PNO_VFNO_MAX_VAR);
			goto fail;
		}
		struct pno_vfno_tensor *t = &v->t[v->n_tensors++];
		t->fno_index = i;
		t->count = cnt;
		t->w = v->net.params + off;
		t->gw = v->net.grads + off;
		v->n_var += cnt;
	}
	size_t P = (size_t)v->net.P, nb = (size_t)Bmax;
	v->var = pno_calloc(2 * v->n_var, sizeof(float));
	v->vgrad = pno_calloc(2 * v->n_var, sizeof(float));
	v->eps = pno_calloc(v->n_var, sizeof(float));
	v->sig = pno_calloc(v->n_var, sizeof(float));
	v->dsig = pno_calloc(v->n_var, sizeof(float));
	v->kl_part = pno_calloc(v->n_var / VFNO_CHUNK + 1, sizeof(double));
	v->dout = pno_calloc(nb * 2 * v->C * P, sizeof(float));
	v->acc = pno_calloc(4 * nb * v->C * P, sizeof(double));
	if (!v->var || !v->vgrad || !v->eps || !v->sig || !v->dsig ||
	    !v->kl_part || !v->dout || !v->acc) {
		st = pno__errorf(PNO_STATUS_NOMEM, "vfno init: out of memory");
		goto fail;
	}
	v->mu = v->var, v->rho = v->var + v->n_var;
	v->gmu = v->vgrad, v->grho = v->vgrad + v->n_var;
	size_t off = 0;
	for (int k = 0; k < v->n_tensors; k++) {
		struct pno_vfno_tensor *t = &v->t[k];
		t->mu = v->mu + off, t->rho = v->rho + off;
		t->gmu = v->gmu + off, t->grho = v->grho + off;
		t->eps = v->eps + off;
		off += t->count;
	}
	return PNO_STATUS_OK;
fail:
	pno_vfno_free(v);
	return st;
}

static enum pno_status check_opts(const struct pno_vfno_opts *o)
{
	if (!(o->prior_sigma > 0) || !isfinite(o->prior_sigma))
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno prior_sigma = %g: must be finite and > 0",
				   (double)o->prior_sigma);
	if (!(o->sigma_init > 0) || !isfinite(o->sigma_init))
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno sigma_init = %g: must be finite and > 0",
				   (double)o->sigma_init);
	if (o->variational_pointwise != 0 && o->variational_pointwise != 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno variational_pointwise = %d: must be 0 "
				   "or 1", o->variational_pointwise);
	return PNO_STATUS_OK;
}

/* The architecture of the underlying network: 2C outputs, no extra heads
 * or dropout (the variational weights are the only noise). */
static enum pno_status net_arch(struct pno_fno_arch *na,
				const struct pno_fno_arch *a)
{
	if (a->out_ch < 1 || 2 * a->out_ch > PNO_FNO_MAX_CH)
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno out_ch = %d: must be in [1, %d] (the "
				   "network has 2 out_ch outputs)", a->out_ch,
				   PNO_FNO_MAX_CH / 2);
	if (a->heads > 1 || a->p_lift != 0 || a->p_hidden != 0 ||
	    a->p_proj != 0 || a->p_fourier != 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno: heads and dropout must be 0 (the "
				   "model has its own mean/log-variance head)");
	*na = *a;
	na->out_ch = 2 * a->out_ch;
	na->heads = 0;
	return PNO_STATUS_OK;
}

/* inverse of softplus: log(e^s - 1) */
static float softplus_inv(double s)
{
	return (float)(s > 30 ? s : log(expm1(s)));
}

enum pno_status pno_vfno_init(struct pno_vfno *v, const struct pno_fno_arch *a,
			      int X, int Y, int Bmax, uint64_t seed,
			      const struct pno_vfno_opts *opts)
{
	struct pno_vfno_opts o;
	struct pno_fno_arch na;
	enum pno_status st;
	if (!v)
		return pno__errorf(PNO_STATUS_INVALID, "vfno init: NULL model");
	memset(v, 0, sizeof *v);
	if (!a)
		return pno__errorf(PNO_STATUS_INVALID, "vfno init: NULL arch");
	if (opts)
		o = *opts;
	else
		pno_vfno_opts_default(&o);
	if ((st = check_opts(&o)) || (st = net_arch(&na, a)))
		return st;
	st = init_common(v, &na, X, Y, Bmax, seed, o.prior_sigma,
			 o.variational_pointwise);
	if (st != PNO_STATUS_OK)
		return st;
	for (int k = 0; k < v->n_tensors; k++) {
		struct pno_vfno_tensor *t = &v->t[k];
		double s2 = 0;
		for (size_t j = 0; j < t->count; j++)
			s2 += (double)t->w[j] * t->w[j];
		double rms = sqrt(s2 / (double)t->count);
		float r = softplus_inv(o.sigma_init * (rms > 0 ? rms : 1.0));
		memcpy(t->mu, t->w, t->count * sizeof(float));
		for (size_t j = 0; j < t->count; j++)
			t->rho[j] = r;
	}
	return PNO_STATUS_OK;
}

/* softplus and sigmoid in float from one exp; log1p(e) as
 * log(u) e / (u - 1), u = 1 + e (Goldberg's trick: within 4 ulp over
 * [-40, 20], twice as fast as log1pf) */
static inline void softplus_sigmoid(float r, float *s, float *sg)
{
	if (r > 20.0f) {
		*s = r;
		*sg = 1.0f / (1.0f + expf(-r));
	} else {
		float e = expf(r), u = 1.0f + e;
		*s = u == 1.0f ? e : logf(u) * (e / (u - 1.0f));
		*sg = e / u;
	}
}

/* eps, sigma and sigmoid(rho) per chunk (eps[i] depends on the stream and
 * i only), then w = mu + sigma eps per tensor. */
static void draw(struct pno_vfno *v, uint64_t stream, int zero)
{
	size_t n = v->n_var, nc = (n + VFNO_CHUNK - 1) / VFNO_CHUNK;
#pragma omp parallel for schedule(static) if (n > VFNO_PAR_MIN)
	for (size_t c = 0; c < nc; c++) {
		size_t lo = c * VFNO_CHUNK, hi = PNO__MIN(n, lo + VFNO_CHUNK);
		if (zero)
			memset(v->eps + lo, 0, (hi - lo) * sizeof(float));
		else
			pno_rng_normal(v->eps + lo, hi - lo, v->seed,
				       VFNO_STREAM0 + stream, lo);
		for (size_t j = lo; j < hi; j++)
			softplus_sigmoid(v->rho[j], &v->sig[j], &v->dsig[j]);
	}
	for (int k = 0; k < v->n_tensors; k++) {
		struct pno_vfno_tensor *t = &v->t[k];
		const float *sig = v->sig + (t->mu - v->mu);
		size_t cnt = t->count;
#pragma omp parallel for simd schedule(static) if (cnt > VFNO_PAR_MIN)
		for (size_t j = 0; j < cnt; j++)
			t->w[j] = t->mu[j] + sig[j] * t->eps[j];
	}
}

void pno_vfno_sample(struct pno_vfno *v, uint64_t stream)
{
	draw(v, stream, 0);
}

void pno_vfno_use_mean(struct pno_vfno *v)
{
	draw(v, 0, 1);
}

/* Forward with the current weights; log-variance channels in physical
 * units (normalized with mean 0 / std 1, then + 2 log out_std[c]). */
static void fix_logvar_norm(struct pno_vfno *v)
{
	for (int c = 0; c < v->C; c++) {
		v->net.norm.out_mean[v->C + c] = 0.0f;
		v->net.norm.out_std[v->C + c] = 1.0f;
	}
}

static float *forward_current(struct pno_vfno *v, const float *x, int B)
{
	struct pno_fno *m = &v->net;
	int C = v->C;
	size_t P = (size_t)m->P;
	fix_logvar_norm(v);
	pno_fno_forward(m, x, B);
	float *out = m->out;
	for (int c = 0; c < C; c++) {
		float shift = 2.0f * logf(m->norm.out_std[c]);
		for (int b = 0; b < B; b++) {
			float *o = out + ((size_t)b * 2 * C + C + c) * P;
			for (size_t p = 0; p < P; p++)
				o[p] += shift;
		}
	}
	return out;
}

static enum pno_status check_batch(const struct pno_vfno *v, const void *x,
				   int B, const char *what)
{
	if (!v || !v->var)
		return pno__errorf(PNO_STATUS_INVALID, "%s: model not "
				   "initialized", what);
	if (!x)
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL input", what);
	if (B < 1 || B > v->net.Bmax)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: batch %d outside [1, %d]", what, B,
				   v->net.Bmax);
	return PNO_STATUS_OK;
}

const float *pno_vfno_forward(struct pno_vfno *v, const float *x, int B)
{
	if (check_batch(v, x, B, "vfno forward") != PNO_STATUS_OK)
		return NULL;
	pno_vfno_sample(v, v->calls++);
	return forward_current(v, x, B);
}

double pno_vfno_kl(const struct pno_vfno *v, float *gmu, float *grho,
		   double scale)
{
	double ps = v->prior_sigma, ips2 = 1.0 / (ps * ps), lps = log(ps);
	double kl = 0.0;
	for (size_t j = 0; j < v->n_var; j++) {
		double mu = v->mu[j], r = v->rho[j];
		double s = pno_softplus(r);
		/* below -30 softplus(r) = e^r: log s = r, sigmoid(r)/s = 1 */
		double ls = r < -30 ? r : log(s);
		kl += lps - ls + 0.5 * (s * s + mu * mu) * ips2 - 0.5;
		if (gmu)
			gmu[j] += (float)(scale * mu * ips2);
		if (grho) {
			double sig = pno_sigmoid(r);
			double sig_over_s = r < -30 ? 1.0 : sig / s;
			grho[j] += (float)(scale * (s * ips2 * sig - sig_over_s));
		}
	}
	return kl;
}

/* The KL of the last draw from its float sigma / sigmoid, in fixed chunks
 * summed in order (same bits at any thread count). */
static double kl_fast(struct pno_vfno *v, int grad, double scale)
{
	size_t n = v->n_var, nc = (n + VFNO_CHUNK - 1) / VFNO_CHUNK;
	double ps = v->prior_sigma, ips2 = 1.0 / (ps * ps), lps = log(ps);
	float gm = (float)(scale * ips2);
#pragma omp parallel for schedule(static) if (n > VFNO_PAR_MIN)
	for (size_t c = 0; c < nc; c++) {
		size_t lo = c * VFNO_CHUNK, hi = PNO__MIN(n, lo + VFNO_CHUNK);
		double acc = 0.0;
		for (size_t j = lo; j < hi; j++) {
			float r = v->rho[j], s = v->sig[j], mu = v->mu[j];
			float ls = r < -20.0f ? r : logf(s);
			acc += (double)(s * s + mu * mu) * (0.5 * ips2) - ls;
			if (grad) {
				/* d/drho = (s / ps^2 - 1/s) sigmoid(rho) */
				float so = r < -20.0f ? 1.0f : v->dsig[j] / s;
				v->gmu[j] += gm * mu;
				v->grho[j] += gm * s * v->dsig[j] -
					      (float)scale * so;
			}
		}
		v->kl_part[c] = acc;
	}
	double kl = 0.0;
	for (size_t c = 0; c < nc; c++)
		kl += v->kl_part[c];
	return kl + (double)n * (lps - 0.5);
}

double pno_vfno_kl_weight(int epoch, int warmup, double beta_max,
			  int n_train)
{
	double f = warmup <= 0 ? 1.0 : (double)epoch / (double)warmup;
	if (f > 1.0)
		f = 1.0;
	if (f < 0.0)
		f = 0.0;
	return beta_max * f / (n_train > 0 ? n_train : 1);
}

void pno_vfno_zero_grad(struct pno_vfno *v)
{
	pno_fno_zero_grad(&v->net);
	memset(v->vgrad, 0, 2 * v->n_var * sizeof(float));
}

double pno_vfno_loss(struct pno_vfno *v, const float *x, const float *y,
		     int B, double kl_weight, int backward)
{
	if (check_batch(v, x, B, "vfno loss") != PNO_STATUS_OK)
		return NAN;
	if (!y) {
		pno__errorf(PNO_STATUS_INVALID, "vfno loss: NULL target");
		return NAN;
	}
	if (!(kl_weight >= 0) || !isfinite(kl_weight)) {
		pno__errorf(PNO_STATUS_INVALID,
			    "vfno loss: kl_weight = %g: must be finite and >= 0",
			    kl_weight);
		return NAN;
	}
	int C = v->C;
	size_t P = (size_t)v->net.P;
	const float *out = pno_vfno_forward(v, x, B);
	double n_pts = (double)B * C * P, inv_n = 1.0 / n_pts, nll = 0.0;
	for (int b = 0; b < B; b++)
		for (int c = 0; c < C; c++) {
			size_t om = ((size_t)b * 2 * C + c) * P;
			size_t ol = om + (size_t)C * P;
			const float *yy = y + ((size_t)b * C + c) * P;
			for (size_t p = 0; p < P; p++) {
				double mu = out[om + p], lv = out[ol + p];
				double d = yy[p] - mu, iv = exp(-lv);
				nll += 0.5 * (LOG_2PI + lv + d * d * iv);
				if (backward) {
					v->dout[om + p] = (float)(-d * iv * inv_n);
					v->dout[ol + p] =
						(float)(0.5 * (1.0 - d * d * iv) * inv_n);
				}
			}
		}
	nll *= inv_n;
	double kl = kl_fast(v, backward, kl_weight);
	if (backward) {
		pno_fno_backward(&v->net, v->dout, B);
		/* chain rule through w = mu + softplus(rho) eps; the network
		 * slots go back to zero for the next accumulation */
		for (int k = 0; k < v->n_tensors; k++) {
			struct pno_vfno_tensor *t = &v->t[k];
			const float *dsig = v->dsig + (t->mu - v->mu);
			size_t cnt = t->count;
#pragma omp parallel for simd schedule(static) if (cnt > VFNO_PAR_MIN)
			for (size_t j = 0; j < cnt; j++) {
				float g = t->gw[j];
				t->gmu[j] += g;
				t->grho[j] += g * t->eps[j] * dsig[j];
				t->gw[j] = 0.0f;
			}
		}
	}
	v->last_nll = nll;
	v->last_kl = kl;
	return nll + kl_weight * kl;
}

/* Runs draw s (stream base + s) on every chunk of Bmax inputs and hands
 * each output to `visit`. */
typedef void (*visit_fn)(struct pno_vfno *v, const float *out, int s, int b0,
			 int nb, void *ud);

static enum pno_status run_draws(struct pno_vfno *v, const float *x, int B,
				 int S, const char *what, visit_fn visit,
				 void *ud)
{
	if (!v || !v->var)
		return pno__errorf(PNO_STATUS_INVALID, "%s: model not "
				   "initialized", what);
	if (!x || B < 1)
		return pno__errorf(PNO_STATUS_INVALID, "%s: need an input and "
				   "B >= 1 (B = %d)", what, B);
	if (S < 1)
		return pno__errorf(PNO_STATUS_INVALID, "%s: S = %d draws: must "
				   "be >= 1", what, S);
	int Bm = v->net.Bmax;
	size_t nin = (size_t)v->net.arch.in_ch * v->net.P;
	uint64_t base = v->calls;
	for (int b0 = 0; b0 < B; b0 += Bm) {
		int nb = PNO__MIN(Bm, B - b0);
		for (int s = 0; s < S; s++) {
			pno_vfno_sample(v, base + (uint64_t)s);
			const float *out =
				forward_current(v, x + (size_t)b0 * nin, nb);
			visit(v, out, s, b0, nb, ud);
		}
	}
	v->calls = base + (uint64_t)S;
	return PNO_STATUS_OK;
}

struct draws_out {
	int B;
	float *mean, *var;
};

static void visit_store(struct pno_vfno *v, const float *out, int s, int b0,
			int nb, void *ud)
{
	struct draws_out *d = ud;
	int C = v->C;
	size_t P = (size_t)v->net.P, cp = (size_t)C * P;
	for (int b = 0; b < nb; b++) {
		size_t dst = ((size_t)s * d->B + b0 + b) * cp;
		const float *om = out + (size_t)b * 2 * cp;
		if (d->mean)
			memcpy(d->mean + dst, om, cp * sizeof(float));
		if (d->var)
			for (size_t i = 0; i < cp; i++)
				d->var[dst + i] = expf(om[cp + i]);
	}
}

enum pno_status pno_vfno_predict(struct pno_vfno *v, const float *x, int B,
				 int S, float *mean, float *var)
{
	struct draws_out d = {B, mean, var};
	return run_draws(v, x, B, S, "vfno predict", visit_store, &d);
}

/* acc: K (the first draw's mean, a shift that keeps the variance of equal
 * draws exactly 0), sum (mu - K), sum (mu - K)^2, sum var. */
static void visit_moments(struct pno_vfno *v, const float *out, int s, int b0,
			  int nb, void *ud)
{
	(void)b0, (void)ud;
	int C = v->C;
	size_t P = (size_t)v->net.P, cp = (size_t)C * P;
	size_t n = (size_t)v->net.Bmax * cp;
	double *K = v->acc, *s1 = K + n, *s2 = s1 + n, *sv = s2 + n;
	for (int b = 0; b < nb; b++) {
		const float *om = out + (size_t)b * 2 * cp;
		size_t o = (size_t)b * cp;
		for (size_t i = 0; i < cp; i++) {
			double mu = om[i], var = exp((double)om[cp + i]);
			if (s == 0) {
				K[o + i] = mu;
				s1[o + i] = s2[o + i] = sv[o + i] = 0.0;
			}
			double d = mu - K[o + i];
			s1[o + i] += d;
			s2[o + i] += d * d;
			sv[o + i] += var;
		}
	}
}

struct moments_out {
	int S, B;
	float *mean, *alea, *epi, *total;
};

/* moments are reduced per chunk right after its last draw */
static void visit_moments_last(struct pno_vfno *v, const float *out, int s,
			       int b0, int nb, void *ud)
{
	struct moments_out *mo = ud;
	visit_moments(v, out, s, b0, nb, NULL);
	if (s != mo->S - 1)
		return;
	size_t cp = (size_t)v->C * v->net.P;
	size_t n = (size_t)v->net.Bmax * cp;
	const double *K = v->acc, *s1 = K + n, *s2 = s1 + n, *sv = s2 + n;
	double iS = 1.0 / mo->S;
	for (size_t i = 0; i < (size_t)nb * cp; i++) {
		size_t dst = (size_t)b0 * cp + i;
		double m1 = s1[i] * iS;
		double epi = s2[i] * iS - m1 * m1, alea = sv[i] * iS;
		if (epi < 0)
			epi = 0;
		if (mo->mean)
			mo->mean[dst] = (float)(K[i] + m1);
		if (mo->alea)
			mo->alea[dst] = (float)alea;
		if (mo->epi)
			mo->epi[dst] = (float)epi;
		if (mo->total)
			mo->total[dst] = (float)(alea + epi);
	}
}

enum pno_status pno_vfno_predict_moments(struct pno_vfno *v, const float *x,
					 int B, int S, float *mean,
					 float *aleatoric, float *epistemic,
					 float *total)
{
	struct moments_out mo = {S, B, mean, aleatoric, epistemic, total};
	return run_draws(v, x, B, S, "vfno predict_moments",
			 visit_moments_last, &mo);
}

enum pno_status pno_vfno_adam_init(struct pno_vfno_adam *o,
				   const struct pno_vfno *v, float lr,
				   float weight_decay, int decoupled)
{
	enum pno_status st;
	memset(o, 0, sizeof *o);
	if (!v || !v->var)
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno adam: model not initialized");
	st = pno_adam_init(&o->net, v->net.n_params, lr, weight_decay,
			   decoupled);
	if (st == PNO_STATUS_OK)
		st = pno_adam_init(&o->var, 2 * v->n_var, lr, 0.0f, decoupled);
	if (st != PNO_STATUS_OK)
		pno_vfno_adam_free(o);
	return st;
}

void pno_vfno_adam_step(struct pno_vfno_adam *o, struct pno_vfno *v)
{
	o->var.lr = o->net.lr;
	pno_adam_step(&o->net, v->net.params, v->net.grads);
	pno_adam_step(&o->var, v->var, v->vgrad);
}

void pno_vfno_adam_free(struct pno_vfno_adam *o)
{
	if (!o)
		return;
	pno_adam_free(&o->net);
	pno_adam_free(&o->var);
	memset(o, 0, sizeof *o);
}

/* ---- files ---- */

static char *vfno_meta_json(const struct pno_vfno *v)
{
	char seed[32], calls[32];
	snprintf(seed, sizeof seed, "%llu", (unsigned long long)v->seed);
	snprintf(calls, sizeof calls, "%llu", (unsigned long long)v->calls);
	json_t *o = json_pack("{s:f, s:i, s:i, s:s, s:s}", "prior_sigma",
			      (double)v->prior_sigma, "variational_pointwise",
			      v->variational_pointwise, "channels", v->C,
			      "seed", seed, "calls", calls);
	if (!o)
		return NULL;
	char *s = pno__json_text(o);
	json_decref(o);
	return s;
}

enum pno_status pno_vfno_save(struct pno_vfno *v, const char *path,
			      const char *extra_json)
{
	enum pno_status st = PNO_STATUS_NOMEM;
	char (*names)[80] = NULL;
	struct pno_tensor_view *views = NULL;
	char *vj = NULL;

	if (!v || !v->var || !path)
		return pno__errorf(PNO_STATUS_INVALID,
				   "vfno save: model not initialized or NULL "
				   "path");
	pno__json_init();
	int nt = v->n_tensors;
	names = pno_calloc((size_t)(2 * nt + 1), sizeof *names);
	views = pno_calloc((size_t)(2 * nt + 1), sizeof *views);
	vj = vfno_meta_json(v);
	if (!names || !views || !vj)
		goto nomem;
	for (int k = 0; k < nt; k++) {
		char name[64];
		int ndim;
		int64_t shape[8];
		pno_fno_tensor_info(&v->net, v->t[k].fno_index, name,
				    sizeof name, &ndim, shape, NULL, NULL);
		for (int r = 0; r < 2; r++) {
			struct pno_tensor_view *tv = &views[2 * k + r];
			snprintf(names[2 * k + r], sizeof names[0], "vfno.%s.%s",
				 r ? "rho" : "mu", name);
			tv->name = names[2 * k + r];
			tv->ndim = ndim;
			memcpy(tv->shape, shape, sizeof(int64_t) * (size_t)ndim);
			tv->data = r ? v->t[k].rho : v->t[k].mu;
		}
	}
	/* the file's FNO tensors are the posterior mean */
	pno_vfno_use_mean(v);
	fix_logvar_norm(v);
	const char *const own[] = {"vfno", vj, NULL};
	st = pno__fno_write(&v->net, path, "vfno", own, extra_json, views,
			    2 * nt);
	goto out;
nomem:
	st = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory saving model",
			 path);
out:
	pno_free(vj);
	pno_free(names);
	pno_free(views);
	return st;
}

/* The "vfno" metadata object. */
static enum pno_status parse_vfno_meta(const char *text, const char *path,
				       float *ps, int *vp, int *C,
				       uint64_t *seed, uint64_t *calls)
{
	enum pno_status st;
	char msg[256];
	json_t *o = text ? pno__json_loads(text, &st, msg, sizeof msg) : NULL;
	if (!o)
		return text ? pno__errorf(st, "%s: \"vfno\" metadata: %s", path,
					  msg)
			    : pno__errorf(PNO_STATUS_FORMAT,
					  "%s: metadata has no \"vfno\"", path);
	json_t *a = json_object_get(o, "prior_sigma");
	json_t *b = json_object_get(o, "variational_pointwise");
	json_t *c = json_object_get(o, "channels");
	const char *s1 = pno__meta_string(o, "seed"), *s2 = pno__meta_string(o, "calls");
	char *e1 = NULL, *e2 = NULL;
	st = PNO_STATUS_OK;
	if (!json_is_number(a) || !(json_number_value(a) > 0) ||
	    !isfinite(json_number_value(a)) || json_number_value(a) > 1e30)
		st = pno__errorf(PNO_STATUS_FORMAT, "%s: vfno \"prior_sigma\" "
				 "missing or not > 0", path);
	else if (!json_is_integer(b) || (json_integer_value(b) != 0 &&
					 json_integer_value(b) != 1))
		st = pno__errorf(PNO_STATUS_FORMAT, "%s: vfno "
				 "\"variational_pointwise\" must be 0 or 1",
				 path);
	else if (!json_is_integer(c) || json_integer_value(c) < 1 ||
		 json_integer_value(c) > PNO_FNO_MAX_CH / 2)
		st = pno__errorf(PNO_STATUS_FORMAT, "%s: vfno \"channels\" "
				 "missing or out of range", path);
	else if (!s1 || !s2 || (*seed = strtoull(s1, &e1, 10), *e1) ||
		 (*calls = strtoull(s2, &e2, 10), *e2) || !*s1 || !*s2)
		st = pno__errorf(PNO_STATUS_FORMAT, "%s: vfno \"seed\"/\"calls\" "
				 "missing or not decimal strings", path);
	if (st == PNO_STATUS_OK) {
		*ps = (float)json_number_value(a);
		*vp = (int)json_integer_value(b);
		*C = (int)json_integer_value(c);
	}
	json_decref(o);
	return st;
}

enum pno_status pno_vfno_load(struct pno_vfno *v, const char *path, int X,
			      int Y, int Bmax)
{
	struct pno_safetensors sf = {0};
	struct pno_fno_arch arch;
	struct pno_fno_norm norm;
	float *nv[4] = PNO__NORM_ARRAYS(&norm);
	json_t *md = NULL;
	enum pno_status s;
	const char *str;
	float ps = 1;
	int vp = 0, C = 0;
	uint64_t seed = 0, calls = 0;

	if (!v || !path)
		return pno__errorf(PNO_STATUS_INVALID, "vfno load: NULL "
				   "argument");
	memset(v, 0, sizeof *v);
	if ((s = pno__model_open(&sf, &md, path, "vfno")) ||
	    (s = pno__meta_require(&str, md, "architecture", path)))
		goto out;
	if ((s = pno_fno_arch_parse(&arch, str)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	s = parse_vfno_meta(pno__meta_string(md, "vfno"), path, &ps, &vp, &C,
			    &seed, &calls);
	if (s != PNO_STATUS_OK)
		goto out;
	if (arch.out_ch != 2 * C) {
		s = pno__errorf(PNO_STATUS_FORMAT, "%s: %d network outputs for "
				"%d channels (want 2 per channel)", path,
				arch.out_ch, C);
		goto out;
	}
	memset(&norm, 0, sizeof norm);
	for (int c = 0; c < PNO_FNO_MAX_CH; c++)
		norm.in_std[c] = norm.out_std[c] = 1.0f;
	if ((s = pno__meta_require(&str, md, "normalization", path)) ||
	    (s = pno__norm_parse(nv, str, arch.in_ch, arch.out_ch, path)) ||
	    (X <= 0 && (s = pno__meta_grid(&X, &Y, md, path))))
		goto out;
	if ((s = init_common(v, &arch, X, Y, Bmax, seed, ps, vp))) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	v->net.norm = norm;
	v->calls = calls;
	int nt = pno_fno_tensor_count(&v->net);
	for (int i = 0; i < nt && s == PNO_STATUS_OK; i++) {
		char name[64];
		int ndim;
		int64_t shape[8];
		size_t off, cnt;
		pno_fno_tensor_info(&v->net, i, name, sizeof name, &ndim, shape,
				    &off, &cnt);
		s = pno__model_take(v->net.params + off, &sf, path, "", name,
				    ndim, shape, cnt);
	}
	for (int k = 0; k < v->n_tensors && s == PNO_STATUS_OK; k++) {
		char name[64], full[80];
		int ndim;
		int64_t shape[8];
		struct pno_vfno_tensor *t = &v->t[k];
		pno_fno_tensor_info(&v->net, t->fno_index, name, sizeof name,
				    &ndim, shape, NULL, NULL);
		for (int r = 0; r < 2 && s == PNO_STATUS_OK; r++) {
			snprintf(full, sizeof full, "vfno.%s.%s",
				 r ? "rho" : "mu", name);
			s = pno__model_take(r ? t->rho : t->mu, &sf, path, "",
					    full, ndim, shape, t->count);
		}
	}
	if (s == PNO_STATUS_OK)
		pno_vfno_use_mean(v);
out:
	if (s != PNO_STATUS_OK)
		pno_vfno_free(v);
	json_decref(md);
	pno_safetensors_free(&sf);
	return s;
}
