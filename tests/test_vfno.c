/* vfno: the KL term in the loss and its gradient, whole-ELBO gradient
 * check, the KL pulling q to the prior, predictive decomposition,
 * log-variance units, save/load, zero allocations per step, allocation
 * failure loops. */
#include "testutil.h"
#include "pno/vfno.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct pno_fno_arch small_arch(int dims, int C)
{
	struct pno_fno_arch a = {.dims = dims, .in_ch = 1, .out_ch = C,
				 .width = 6, .modes1 = 3, .modes2 = 3,
				 .layers = 2, .proj_hidden = 8};
	return a;
}

/* KL(N(mu, s^2) || N(0, ps^2)) summed, straight from the formula. */
static double kl_brute(const struct pno_vfno *v)
{
	double ps = v->prior_sigma, kl = 0;
	for (size_t j = 0; j < v->n_var; j++) {
		double s = log1p(exp((double)v->rho[j])), m = v->mu[j];
		kl += log(ps / s) + (s * s + m * m) / (2 * ps * ps) - 0.5;
	}
	return kl;
}

/* inputs and targets of B samples: y = smooth function of x plus noise */
static void make_data(float *x, float *y, int B, int C, size_t P,
		      uint64_t seed)
{
	pno_rng_normal(x, (size_t)B * P, seed, 1, 0);
	pno_rng_normal(y, (size_t)B * C * P, seed, 2, 0);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < C; c++)
			for (size_t p = 0; p < P; p++)
				y[((size_t)b * C + c) * P + p] =
					0.5f * x[(size_t)b * P + p] * (c + 1) +
					0.3f * y[((size_t)b * C + c) * P + p];
}

/* loss(w) - loss(0) at the same draw is w KL, KL as the formula says. */
static void test_kl_enters_loss(void **state)
{
	(void)state;
	struct pno_vfno v;
	struct pno_fno_arch a = small_arch(1, 2);
	struct pno_vfno_opts o;
	pno_vfno_opts_default(&o);
	o.prior_sigma = 0.1f;
	o.sigma_init = 0.3f;
	assert_status(pno_vfno_init(&v, &a, 16, 1, 3, 4, &o), PNO_STATUS_OK);
	float x[3 * 16], y[3 * 2 * 16];
	make_data(x, y, 3, 2, 16, 9);
	double kb = kl_brute(&v);
	double kl = pno_vfno_kl(&v, NULL, NULL, 0);
	print_message("KL %.9g, brute force %.9g (rel %.2e)\n", kl, kb,
		      fabs(kl - kb) / kb);
	tu_assert_close(kl, kb, 1e-12 * kb);
	double w = 0.37;
	v.calls = 5;
	double l0 = pno_vfno_loss(&v, x, y, 3, 0.0, 0);
	double nll0 = v.last_nll;
	v.calls = 5;
	double l1 = pno_vfno_loss(&v, x, y, 3, w, 0);
	/* same eps: the NLL is the same bits, the difference is w KL */
	assert_true(v.last_nll == nll0);
	print_message("loss(w) - loss(0) = %.12g, w KL = %.12g (rel %.2e)\n",
		      l1 - l0, w * kb, fabs(l1 - l0 - w * kb) / (w * kb));
	/* the loss's KL uses float softplus (within 4 ulp) and float logs
	 * summed in double: 1e-6 relative leaves room above the ~5e-8 seen;
	 * a missing or misscaled term is off by O(1) */
	tu_assert_close(l1 - l0, w * kb, 1e-6 * w * kb);
	tu_assert_close(l1 - l0, w * v.last_kl, 1e-12 * fabs(l1));
	/* a fresh draw changes the NLL */
	pno_vfno_loss(&v, x, y, 3, w, 0);
	assert_true(v.last_nll != nll0);
	/* the loss's gradient has w times the reference KL gradient in it */
	size_t nv2 = 2 * v.n_var;
	float *g0 = malloc(nv2 * sizeof *g0), *gref = calloc(nv2, sizeof *gref);
	pno_vfno_zero_grad(&v);
	v.calls = 5;
	pno_vfno_loss(&v, x, y, 3, 0.0, 1);
	memcpy(g0, v.vgrad, nv2 * sizeof *g0);
	pno_vfno_zero_grad(&v);
	v.calls = 5;
	pno_vfno_loss(&v, x, y, 3, w, 1);
	pno_vfno_kl(&v, gref, gref + v.n_var, w);
	double num = 0, den = 0;
	for (size_t j = 0; j < nv2; j++) {
		double d = ((double)v.vgrad[j] - g0[j]) - gref[j];
		num += d * d;
		den += (double)gref[j] * gref[j];
	}
	print_message("loss gradient(w) - gradient(0) vs w grad KL: normalized "
		      "error %.2e\n", sqrt(num / den));
	assert_true(sqrt(num / den) < 1e-5);	/* float sums, float softplus */
	free(g0);
	free(gref);
	/* KL gradients: accumulated, central differences of the double KL */
	float *gm = calloc(v.n_var, sizeof *gm), *gr = calloc(v.n_var, sizeof *gr);
	pno_vfno_kl(&v, gm, gr, 2.0);
	double worst = 0;
	for (size_t j = 0; j < v.n_var; j += 7) {
		for (int r = 0; r < 2; r++) {
			float *p = r ? &v.rho[j] : &v.mu[j], keep = *p;
			float h = r ? 1e-2f : 1e-3f;
			*p = keep + h;
			double kp = kl_brute(&v);
			*p = keep - h;
			double km = kl_brute(&v);
			*p = keep;
			/* the float steps actually taken */
			double fd = 2.0 * (kp - km) / ((double)(keep + h) - (keep - h));
			double g = r ? gr[j] : gm[j];
			worst = fmax(worst, fabs(fd - g) / fmax(fabs(fd), 1.0));
		}
	}
	print_message("KL gradient: worst relative error %.2e\n", worst);
	/* O(h^2) differences of a smooth function, grads stored in float */
	assert_true(worst < 1e-4);
	free(gm);
	free(gr);
	pno_vfno_free(&v);
}

/* The whole ELBO (NLL of one draw + w KL) against central differences
 * with eps fixed (calls reset before each evaluation), per block: mu, rho
 * and two point-estimate tensors. Normalized error below 2e-2 as in
 * test_fno (float32 model, O(h^2) GELU curvature); a missing term gives
 * errors of order 1. */
struct probe {
	struct pno_vfno *v;
	const float *x, *y;
	int B;
	double w;
};

static double probe_loss(struct probe *pr)
{
	pr->v->calls = 3;
	return pno_vfno_loss(pr->v, pr->x, pr->y, pr->B, pr->w, 0);
}

static double block_error(struct probe *pr, float *p, const float *g,
			  size_t n, const char *what)
{
	double scale = 0;
	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(p[i]));
	float h = (float)(1e-2 * (scale > 0 ? scale : 1));
	double num = 0, den = 0;
	size_t stride = n > 60 ? n / 60 : 1;
	for (size_t i = 0; i < n; i += stride) {
		float keep = p[i];
		p[i] = keep + h;
		double lp = probe_loss(pr);
		p[i] = keep - h;
		double lm = probe_loss(pr);
		p[i] = keep;
		double fd = (lp - lm) / ((double)(keep + h) - (keep - h));
		num += (fd - g[i]) * (fd - g[i]);
		den += fd * fd;
	}
	double err = sqrt(num / den);
	print_message("  %-16s normalized gradient error %.2e (|g| %.2e)\n",
		      what, err, sqrt(den));
	return err;
}

static void grad_check(int dims, int vp)
{
	struct pno_vfno v;
	struct pno_fno_arch a = small_arch(dims, 2);
	struct pno_vfno_opts o;
	int X = dims == 1 ? 16 : 12, Y = dims == 1 ? 1 : 10, B = 2;
	pno_vfno_opts_default(&o);
	o.prior_sigma = 0.05f;
	o.sigma_init = 0.3f;
	o.variational_pointwise = vp;
	assert_status(pno_vfno_init(&v, &a, X, Y, B, 21, &o), PNO_STATUS_OK);
	size_t P = (size_t)v.net.P;
	v.net.norm.in_mean[0] = 0.3f, v.net.norm.in_std[0] = 1.7f;
	v.net.norm.out_mean[0] = -0.2f, v.net.norm.out_std[0] = 0.6f;
	v.net.norm.out_std[1] = 1.8f;
	/* larger spectral means so their path matters */
	for (int k = 0; k < v.n_tensors; k++) {
		char name[48];
		pno_fno_tensor_info(&v.net, v.t[k].fno_index, name, sizeof name,
				    NULL, NULL, NULL, NULL);
		if (strncmp(name, "spectral", 8) == 0)
			for (size_t j = 0; j < v.t[k].count; j++)
				v.t[k].mu[j] *= 20.0f;
	}
	for (int k = 0; k < v.n_tensors; k++) {
		double s2 = 0;
		for (size_t j = 0; j < v.t[k].count; j++)
			s2 += (double)v.t[k].mu[j] * v.t[k].mu[j];
		float sig = (float)(0.3 * sqrt(s2 / v.t[k].count));
		for (size_t j = 0; j < v.t[k].count; j++)
			v.t[k].rho[j] = (float)log(expm1(sig)) +
					0.2f * (float)((int)(j % 5) - 2);
	}
	float *x = malloc(B * P * sizeof *x), *y = malloc(B * 2 * P * sizeof *y);
	make_data(x, y, B, 2, P, 3);
	/* w = 0: the NLL through the reparameterization alone; then a w at
	 * which the KL's share of the (mu, rho) gradient is sizeable */
	double ws[2] = {0.0, 2e-5};
	float *gcopy = malloc(2 * v.n_var * sizeof *gcopy);
	float *gk = malloc(2 * v.n_var * sizeof *gk);
	for (int pass = 0; pass < 2; pass++) {
		struct probe pr = {&v, x, y, B, ws[pass]};
		pno_vfno_zero_grad(&v);
		v.calls = 3;
		pno_vfno_loss(&v, x, y, B, pr.w, 1);
		memset(gk, 0, 2 * v.n_var * sizeof *gk);
		pno_vfno_kl(&v, gk, gk + v.n_var, pr.w);
		double num = 0, den = 0;
		for (size_t j = 0; j < 2 * v.n_var; j++) {
			num += (double)gk[j] * gk[j];
			den += (double)v.vgrad[j] * v.vgrad[j];
		}
		print_message("%dD, variational pointwise %d, kl_weight %g: NLL "
			      "%.4f, w KL %.4f, KL share of the (mu, rho) "
			      "gradient norm %.2f\n", dims, vp, pr.w,
			      v.last_nll, pr.w * v.last_kl, sqrt(num / den));
		if (pass == 1)
			assert_true(sqrt(num / den) > 0.2 && sqrt(num / den) < 0.9);
		/* the variational slots of net.grads are left at zero */
		for (int k = 0; k < v.n_tensors; k++)
			for (size_t j = 0; j < v.t[k].count; j++)
				assert_true(v.t[k].gw[j] == 0.0f);
		memcpy(gcopy, v.vgrad, 2 * v.n_var * sizeof *gcopy);
		assert_true(block_error(&pr, v.mu, gcopy, v.n_var, "mu") < 2e-2);
		assert_true(block_error(&pr, v.rho, gcopy + v.n_var, v.n_var,
					"rho") < 2e-2);
		const char *pt[] = {"lift.weight", "proj2.weight", "proj1.bias"};
		for (int i = 0; i < 3; i++) {
			int nt = pno_fno_tensor_count(&v.net), found = 0;
			for (int t = 0; t < nt; t++) {
				char name[48];
				size_t off, cnt;
				pno_fno_tensor_info(&v.net, t, name, sizeof name,
						    NULL, NULL, &off, &cnt);
				if (strcmp(name, pt[i]) != 0)
					continue;
				found = 1;
				float *g = malloc(cnt * sizeof *g);
				memcpy(g, v.net.grads + off, cnt * sizeof *g);
				assert_true(block_error(&pr, v.net.params + off,
							g, cnt, pt[i]) < 2e-2);
				free(g);
			}
			assert_true(found);
		}
	}
	free(gk);
	free(gcopy);
	free(x);
	free(y);
	pno_vfno_free(&v);
}

static void test_grad_1d(void **state) { (void)state; grad_check(1, 0); }
static void test_grad_2d_pointwise(void **state) { (void)state; grad_check(2, 1); }

/* Fit a tiny dataset with Adam: kl_weight 0 leaves sigma_q near its init,
 * a large kl_weight pulls sigma_q to prior_sigma and mu to 0. */
static void kl_fit(double w, double *sig_ratio, double *mu_ratio,
		   double *sig_over_init)
{
	struct pno_vfno v;
	struct pno_vfno_adam opt;
	struct pno_fno_arch a = small_arch(1, 1);
	struct pno_vfno_opts o;
	int B = 4;
	pno_vfno_opts_default(&o);
	o.prior_sigma = 0.01f;
	assert_status(pno_vfno_init(&v, &a, 16, 1, B, 5, &o), PNO_STATUS_OK);
	assert_status(pno_vfno_adam_init(&opt, &v, 0.03f, 0, 0), PNO_STATUS_OK);
	float x[4 * 16], y[4 * 16];
	make_data(x, y, B, 1, 16, 4);
	double mu0 = 0, sig0 = 0;
	for (size_t j = 0; j < v.n_var; j++) {
		mu0 += (double)v.mu[j] * v.mu[j];
		sig0 += log1p(exp((double)v.rho[j]));
	}
	for (int it = 0; it < 300; it++) {
		pno_vfno_zero_grad(&v);
		double l = pno_vfno_loss(&v, x, y, B, w, 1);
		assert_true(isfinite(l));
		pno_vfno_adam_step(&opt, &v);
	}
	double mu1 = 0, sig1 = 0;
	for (size_t j = 0; j < v.n_var; j++) {
		mu1 += (double)v.mu[j] * v.mu[j];
		sig1 += log1p(exp((double)v.rho[j]));
	}
	*sig_ratio = sig1 / v.n_var / o.prior_sigma;
	*sig_over_init = sig1 / sig0;
	*mu_ratio = sqrt(mu1 / mu0);
	pno_vfno_adam_free(&opt);
	pno_vfno_free(&v);
}

static void test_kl_pulls_to_prior(void **state)
{
	(void)state;
	double sr, mr, si;
	kl_fit(0.0, &sr, &mr, &si);
	print_message("kl_weight 0:  mean sigma_q / prior %.3f, sigma_q / init "
		      "%.3f, rms mu / init %.3f\n", sr, si, mr);
	assert_true(si > 0.3 && si < 3.0);
	assert_true(sr < 0.1);
	kl_fit(10.0, &sr, &mr, &si);
	print_message("kl_weight 10: mean sigma_q / prior %.3f, sigma_q / init "
		      "%.3f, rms mu / init %.3f\n", sr, si, mr);
	assert_true(fabs(sr - 1.0) < 0.1);
	assert_true(mr < 0.2);
}

/* predict_moments against the per-draw outputs of pno_vfno_predict (same
 * streams), total = aleatoric + epistemic, and the epistemic part vanishing
 * with sigma_q. */
static void test_decomposition(void **state)
{
	(void)state;
	struct pno_vfno v;
	struct pno_fno_arch a = small_arch(1, 2);
	struct pno_vfno_opts o;
	int B = 5, S = 7, C = 2, X = 16;	/* B > Bmax: chunks share draws */
	size_t P = (size_t)X, n = (size_t)B * C * P;
	pno_vfno_opts_default(&o);
	o.sigma_init = 2.0f;
	o.variational_pointwise = 1;
	assert_status(pno_vfno_init(&v, &a, X, 1, 2, 8, &o), PNO_STATUS_OK);
	v.net.norm.out_std[0] = 2.0f, v.net.norm.out_mean[1] = 1.0f;
	float *x = malloc(B * P * sizeof *x);
	float *ms = malloc(S * n * sizeof *ms), *vs = malloc(S * n * sizeof *vs);
	float *mean = malloc(n * sizeof *mean), *al = malloc(n * sizeof *al);
	float *ep = malloc(n * sizeof *ep), *tot = malloc(n * sizeof *tot);
	pno_rng_normal(x, B * P, 2, 0, 0);
	v.calls = 100;
	assert_status(pno_vfno_predict(&v, x, B, S, ms, vs), PNO_STATUS_OK);
	assert_true(v.calls == 100 + (uint64_t)S);
	v.calls = 100;
	assert_status(pno_vfno_predict_moments(&v, x, B, S, mean, al, ep, tot),
		      PNO_STATUS_OK);
	double e_mean = 0, e_al = 0, e_ep = 0, e_tot = 0, e_sum = 0, ep_avg = 0;
	for (size_t i = 0; i < n; i++) {
		double m = 0, va = 0, m2 = 0, mix = 0;
		for (int s = 0; s < S; s++)
			m += ms[s * n + i], va += vs[s * n + i];
		m /= S, va /= S;
		for (int s = 0; s < S; s++)
			m2 += (ms[s * n + i] - m) * (ms[s * n + i] - m);
		m2 /= S;
		/* the mixture's variance straight from its definition */
		for (int s = 0; s < S; s++)
			mix += vs[s * n + i] + (double)ms[s * n + i] * ms[s * n + i];
		mix = mix / S - m * m;
		e_mean = fmax(e_mean, fabs(mean[i] - m) / (fabs(m) + 1));
		e_al = fmax(e_al, fabs(al[i] - va) / va);
		e_ep = fmax(e_ep, fabs(ep[i] - m2) / (m2 + 1e-3 * va));
		e_tot = fmax(e_tot, fabs(tot[i] - mix) / mix);
		e_sum = fmax(e_sum, fabs(tot[i] - (al[i] + ep[i])) / tot[i]);
		ep_avg += ep[i] / tot[i] / n;
	}
	print_message("moments vs brute force: mean %.1e, aleatoric %.1e, "
		      "epistemic %.1e, total (mixture) %.1e, total - (a + e) "
		      "%.1e; epistemic share %.3e\n", e_mean, e_al, e_ep,
		      e_tot, e_sum, ep_avg);
	/* float outputs of double sums: a few float ulps; the brute-force
	 * mixture variance cancels E[mu^2] - m^2 in double */
	assert_true(e_mean < 1e-6 && e_al < 1e-6 && e_ep < 1e-5);
	assert_true(e_tot < 1e-5 && e_sum < 1e-6);
	assert_true(ep_avg > 1e-3);
	/* epistemic ~ sigma_q^2 and exactly 0 when sigma_q underflows */
	double prev = 1e300;
	for (int k = 0; k < 4; k++) {
		float shift = k < 3 ? -2.3f * (k + 1) : -60.0f;
		float *rho0 = malloc(v.n_var * sizeof *rho0);
		memcpy(rho0, v.rho, v.n_var * sizeof *rho0);
		for (size_t j = 0; j < v.n_var; j++)
			v.rho[j] = k < 3 ? (float)log(expm1(log1p(exp(v.rho[j])) *
							   exp(shift)))
					 : shift;
		assert_status(pno_vfno_predict_moments(&v, x, B, S, mean, al,
						       ep, NULL),
			      PNO_STATUS_OK);
		double ee = 0, aa = 0;
		for (size_t i = 0; i < n; i++)
			ee += ep[i], aa += al[i];
		if (k < 3)
			print_message("  sigma_q x %.0e: mean epistemic / "
				      "aleatoric %.3e\n", exp(shift), ee / aa);
		else
			print_message("  rho = -60: mean epistemic / aleatoric "
				      "%.3e\n", ee / aa);
		if (k < 3)
			assert_true(ee < prev * 0.05);	/* ~ x 1e-2 per step */
		else
			assert_true(ee == 0.0);
		prev = ee;
		memcpy(v.rho, rho0, v.n_var * sizeof *rho0);
		free(rho0);
	}
	free(x), free(ms), free(vs), free(mean), free(al), free(ep), free(tot);
	pno_vfno_free(&v);
}

/* Log-variance in physical units: with out_std = 3 (and a mean shift) the
 * predicted log-variance grows by 2 log 3, and the NLL of data scaled
 * to match is the unit-scale NLL + log 3, exactly. */
static void test_logvar_units(void **state)
{
	(void)state;
	struct pno_vfno v;
	struct pno_fno_arch a = small_arch(2, 1);
	int B = 2, X = 10, Y = 8;
	size_t P = (size_t)X * Y;
	assert_status(pno_vfno_init(&v, &a, X, Y, B, 12, NULL), PNO_STATUS_OK);
	float *x = malloc(B * P * sizeof *x), *y = malloc(B * P * sizeof *y);
	float *y3 = malloc(B * P * sizeof *y3), *o1 = malloc(2 * B * P * sizeof *o1);
	make_data(x, y, B, 1, P, 6);
	for (size_t i = 0; i < B * P; i++)
		y3[i] = 3.0f * y[i] + 2.0f;
	v.calls = 0;
	memcpy(o1, pno_vfno_forward(&v, x, B), 2 * B * P * sizeof *o1);
	v.calls = 0;
	double l1 = pno_vfno_loss(&v, x, y, B, 0, 0);
	/* brute-force NLL of the forward's output */
	double ref = 0;
	for (int b = 0; b < B; b++)
		for (size_t p = 0; p < P; p++) {
			double m = o1[(size_t)b * 2 * P + p];
			double lv = o1[(size_t)b * 2 * P + P + p];
			double d = y[(size_t)b * P + p] - m;
			ref += 0.5 * (log(2 * M_PI) + lv + d * d / exp(lv));
		}
	ref /= B * P;
	tu_assert_close(l1, ref, 1e-12 * fabs(ref));
	/* the user's normalization of the log-variance channel is ignored */
	v.net.norm.out_std[0] = 3.0f, v.net.norm.out_mean[0] = 2.0f;
	v.net.norm.out_std[1] = 5.0f, v.net.norm.out_mean[1] = 7.0f;
	v.calls = 0;
	const float *o3 = pno_vfno_forward(&v, x, B);
	double em = 0, el = 0;
	for (int b = 0; b < B; b++)
		for (size_t p = 0; p < P; p++) {
			size_t im = (size_t)b * 2 * P + p, il = im + P;
			em = fmax(em, fabs(o3[im] - (3.0 * o1[im] + 2.0)));
			el = fmax(el, fabs(o3[il] - (o1[il] + 2.0 * log(3.0))));
		}
	v.calls = 0;
	double l3 = pno_vfno_loss(&v, x, y3, B, 0, 0);
	print_message("out_std 3: mean error %.1e, log-variance shift error "
		      "%.1e; NLL %.9f - %.9f = %.9f (log 3 = %.9f)\n", em, el,
		      l3, l1, l3 - l1, log(3.0));
	assert_true(v.net.norm.out_mean[1] == 0.0f && v.net.norm.out_std[1] == 1.0f);
	assert_true(em < 1e-5 && el < 1e-5);	/* float rounding of O(1) values */
	tu_assert_close(l3 - l1, log(3.0), 1e-5);
	free(x), free(y), free(y3), free(o1);
	pno_vfno_free(&v);
}

/* The warm-up schedule. */
static void test_kl_weight_schedule(void **state)
{
	(void)state;
	assert_true(pno_vfno_kl_weight(0, 10, 1.0, 100) == 0.0);
	tu_assert_close(pno_vfno_kl_weight(5, 10, 2.0, 100), 0.01, 1e-15);
	tu_assert_close(pno_vfno_kl_weight(10, 10, 2.0, 100), 0.02, 1e-15);
	tu_assert_close(pno_vfno_kl_weight(50, 10, 2.0, 100), 0.02, 1e-15);
	tu_assert_close(pno_vfno_kl_weight(0, 0, 2.0, 100), 0.02, 1e-15);
}

/* Save then load: the same parameters and, for the same draws, the same
 * predictions to the bit; files of the other kind refused both ways. */
static void test_save_load(void **state)
{
	(void)state;
	struct pno_vfno v, w;
	struct pno_fno_arch a = small_arch(2, 2);
	struct pno_vfno_opts o;
	const char *path = tu_tmp_path("vfno.safetensors");
	const char *fpath = tu_tmp_path("vfno_plain.safetensors");
	int B = 2, X = 12, Y = 10, S = 3;
	size_t n = (size_t)S * B * 2 * X * Y;
	pno_vfno_opts_default(&o);
	o.prior_sigma = 0.123456789f;
	o.variational_pointwise = 1;
	o.sigma_init = 0.2f;
	assert_status(pno_vfno_init(&v, &a, X, Y, B, 0xfedcba9876543210ull, &o),
		      PNO_STATUS_OK);
	v.net.norm.in_mean[0] = 1.5f, v.net.norm.out_std[0] = 2.5f;
	v.net.norm.out_mean[1] = -0.75f;
	v.calls = 41;
	for (size_t j = 0; j < v.n_var; j++)
		v.rho[j] += 0.01f * (float)(j % 13);
	unlink(path);
	assert_status(pno_vfno_save(&v, path, "{\"provenance\": \"{}\"}"),
		      PNO_STATUS_OK);
	assert_status(pno_vfno_load(&w, path, 0, 0, B), PNO_STATUS_OK);
	assert_int_equal(w.C, 2);
	assert_int_equal(w.variational_pointwise, 1);
	assert_true(w.prior_sigma == o.prior_sigma);
	assert_true(w.seed == v.seed && w.calls == 41);
	assert_int_equal(w.n_var, v.n_var);
	assert_memory_equal(v.var, w.var, 2 * v.n_var * sizeof(float));
	assert_memory_equal(&v.net.norm, &w.net.norm, sizeof v.net.norm);
	float *x = malloc(B * X * Y * sizeof *x);
	float *m1 = malloc(n * sizeof *m1), *v1 = malloc(n * sizeof *v1);
	float *m2 = malloc(n * sizeof *m2), *v2 = malloc(n * sizeof *v2);
	pno_rng_normal(x, (size_t)B * X * Y, 3, 3, 0);
	assert_status(pno_vfno_predict(&v, x, B, S, m1, v1), PNO_STATUS_OK);
	assert_status(pno_vfno_predict(&w, x, B, S, m2, v2), PNO_STATUS_OK);
	assert_memory_equal(m1, m2, n * sizeof *m1);
	assert_memory_equal(v1, v2, n * sizeof *v1);
	pno_vfno_free(&w);
	/* a plain FNO loader refuses it, and this loader a plain FNO */
	struct pno_fno f;
	assert_status(pno_fno_load(&f, path, 0, 0, 1), PNO_STATUS_UNSUPPORTED);
	assert_status(pno_fno_save(&v.net, fpath, NULL), PNO_STATUS_OK);
	assert_status(pno_vfno_load(&w, fpath, 0, 0, 1), PNO_STATUS_UNSUPPORTED);
	assert_err_has("vfno");
	/* another grid loads; a grid too small for the modes does not */
	assert_status(pno_vfno_load(&w, path, 24, 20, 1), PNO_STATUS_OK);
	pno_vfno_free(&w);
	assert_status(pno_vfno_load(&w, path, 4, 4, 1), PNO_STATUS_INVALID);
	assert_status(pno_vfno_load(&w, tu_tmp_path("nope.safetensors"), 0, 0, 1),
		      PNO_STATUS_NOTFOUND);
	/* bad extra metadata */
	assert_status(pno_vfno_save(&v, path, "[1]"), PNO_STATUS_INVALID);
	free(x), free(m1), free(v1), free(m2), free(v2);
	pno_vfno_free(&v);
	unlink(path);
	unlink(fpath);
}

/* Argument checks name what is wrong. */
static void test_invalid(void **state)
{
	(void)state;
	struct pno_vfno v;
	struct pno_fno_arch a = small_arch(1, 9);
	struct pno_vfno_opts o;
	assert_status(pno_vfno_init(&v, &a, 16, 1, 2, 0, NULL), PNO_STATUS_INVALID);
	assert_err_has("out_ch");
	a = small_arch(1, 1);
	a.p_hidden = 0.1f;
	assert_status(pno_vfno_init(&v, &a, 16, 1, 2, 0, NULL), PNO_STATUS_INVALID);
	assert_err_has("dropout");
	a = small_arch(1, 1);
	pno_vfno_opts_default(&o);
	o.prior_sigma = 0;
	assert_status(pno_vfno_init(&v, &a, 16, 1, 2, 0, &o), PNO_STATUS_INVALID);
	assert_err_has("prior_sigma");
	pno_vfno_free(&v);	/* safe on the zeroed struct */
	assert_status(pno_vfno_init(&v, &a, 16, 1, 2, 0, NULL), PNO_STATUS_OK);
	float x[3 * 16] = {0}, y[3 * 16] = {0};
	assert_true(isnan(pno_vfno_loss(&v, x, y, 3, 0, 0)));
	assert_err_has("batch 3");
	assert_true(isnan(pno_vfno_loss(&v, x, y, 2, -1, 0)));
	assert_err_has("kl_weight");
	assert_null(pno_vfno_forward(&v, x, 0));
	assert_status(pno_vfno_predict(&v, x, 3, 0, x, y), PNO_STATUS_INVALID);
	pno_vfno_free(&v);
	pno_vfno_free(&v);
}

/* The draw and the KL are the same bits at 1 and 2 threads (fixed chunks
 * of the element-wise passes; the model is big enough to go parallel). */
static void test_thread_invariance(void **state)
{
	(void)state;
	struct pno_vfno v;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1, .width = 32,
				 .modes1 = 16, .layers = 4, .proj_hidden = 16};
	assert_status(pno_vfno_init(&v, &a, 32, 1, 1, 2, NULL), PNO_STATUS_OK);
	assert_true(v.n_var > 65536);
	float x[32], y[32];
	make_data(x, y, 1, 1, 32, 2);
	double kl[2];
	float *w[2];
	int keep = pno_threads_get();
	for (int t = 0; t < 2; t++) {
		pno_threads_set(t + 1);
		v.calls = 9;
		pno_vfno_loss(&v, x, y, 1, 1e-3, 0);
		kl[t] = v.last_kl;
		w[t] = malloc(v.t[0].count * sizeof(float));
		memcpy(w[t], v.t[0].w, v.t[0].count * sizeof(float));
	}
	pno_threads_set(keep);
	assert_true(kl[0] == kl[1]);
	assert_memory_equal(w[0], w[1], v.t[0].count * sizeof(float));
	free(w[0]);
	free(w[1]);
	pno_vfno_free(&v);
}

/* A training step (loss + backward + both Adams) allocates nothing, and
 * the same seed gives the same losses to the bit. */
static void test_zero_alloc_determinism(void **state)
{
	(void)state;
	double loss[2][6];
	for (int run = 0; run < 2; run++) {
		struct pno_vfno v;
		struct pno_vfno_adam opt;
		struct pno_fno_arch a = small_arch(2, 1);
		assert_status(pno_vfno_init(&v, &a, 12, 10, 2, 3, NULL), PNO_STATUS_OK);
		assert_status(pno_vfno_adam_init(&opt, &v, 1e-3f, 1e-4f, 1),
			      PNO_STATUS_OK);
		float x[2 * 120], y[2 * 120];
		make_data(x, y, 2, 1, 120, 1);
		tu_alloc_install();
		tu_alloc_reset(0);
		for (int it = 0; it < 6; it++) {
			pno_vfno_zero_grad(&v);
			loss[run][it] = pno_vfno_loss(&v, x, y, 2, 1e-3, 1);
			pno_vfno_adam_step(&opt, &v);
		}
		long allocs = tu_alloc_count();
		tu_alloc_uninstall();
		assert_int_equal(allocs, 0);
		pno_vfno_adam_free(&opt);
		pno_vfno_free(&v);
	}
	assert_memory_equal(loss[0], loss[1], sizeof loss[0]);
}

/* Fail each allocation of init, of save and of load in turn: NOMEM,
 * nothing leaked, no file left. */
static void test_alloc_failure_loops(void **state)
{
	(void)state;
	struct pno_vfno v, w;
	struct pno_fno_arch a = small_arch(1, 2);
	struct pno_vfno_opts o;
	const char *path = tu_tmp_path("vfno_alloc.safetensors");
	long k, live0;
	pno_vfno_opts_default(&o);
	o.variational_pointwise = 1;
	unlink(path);
	tu_alloc_install();
	live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_vfno_init(&v, &a, 16, 1, 2, 1, &o), live0))
			break;
	}
	print_message("init: %ld allocation points\n", k - 1);
	live0 = tu_alloc_live();
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_vfno_save(&v, path, "{\"a\": \"b\"}"), live0))
			break;
		assert_int_equal(access(path, F_OK), -1);
		assert_int_equal(tu_temps_left(path), 0);
	}
	print_message("save: %ld allocation points\n", k - 1);
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(pno_vfno_load(&w, path, 0, 0, 2), live0))
			break;
	}
	print_message("load: %ld allocation points\n", k - 1);
	tu_alloc_uninstall();
	assert_memory_equal(v.var, w.var, 2 * v.n_var * sizeof(float));
	pno_vfno_free(&w);
	pno_vfno_free(&v);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kl_enters_loss),
		cmocka_unit_test(test_grad_1d),
		cmocka_unit_test(test_grad_2d_pointwise),
		cmocka_unit_test(test_kl_pulls_to_prior),
		cmocka_unit_test(test_decomposition),
		cmocka_unit_test(test_logvar_units),
		cmocka_unit_test(test_kl_weight_schedule),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_thread_invariance),
		cmocka_unit_test(test_zero_alloc_determinism),
		cmocka_unit_test(test_alloc_failure_loops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
