/* The FNO model: parameter layout, init, forward, backward. */
#include "pno/fno.h"
#include "pno/nn.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum pno_status pno_fno_arch_check(const struct pno_fno_arch *a)
{
	if (a->dims != 1 && a->dims != 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "dims = %d: must be 1 or 2", a->dims);
	if (a->in_ch < 1 || a->in_ch > PNO_FNO_MAX_CH)
		return pno__errorf(PNO_STATUS_INVALID,
				   "in_ch = %d: must be in [1, %d]", a->in_ch,
				   PNO_FNO_MAX_CH);
	if (a->out_ch < 1 || a->out_ch > PNO_FNO_MAX_CH)
		return pno__errorf(PNO_STATUS_INVALID,
				   "out_ch = %d: must be in [1, %d]", a->out_ch,
				   PNO_FNO_MAX_CH);
	if (a->width < 1 || a->width > 4096)
		return pno__errorf(PNO_STATUS_INVALID,
				   "width = %d: must be in [1, 4096]", a->width);
	if (a->modes1 < 1 || (a->dims == 2 && a->modes2 < 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "modes = %d x %d: must be >= 1", a->modes1,
				   a->dims == 2 ? a->modes2 : 1);
	if (a->layers < 1 || a->layers > PNO_FNO_MAX_LAYERS)
		return pno__errorf(PNO_STATUS_INVALID,
				   "layers = %d: must be in [1, %d]", a->layers,
				   PNO_FNO_MAX_LAYERS);
	if (a->proj_hidden < 1 || a->proj_hidden > 65536)
		return pno__errorf(PNO_STATUS_INVALID,
				   "proj_hidden = %d: must be in [1, 65536]",
				   a->proj_hidden);
	return PNO_STATUS_OK;
}

/* Parameter tensors in file order. */
enum tensor_kind { T_LIFT_W, T_LIFT_B, T_SPEC_W, T_PW_W, T_PW_B, T_P1_W,
		   T_P1_B, T_P2_W, T_P2_B };

struct tensor_desc {
	enum tensor_kind kind;
	int layer;
	char name[48];
	int ndim;
	int64_t shape[8];
	size_t count;
};

static void describe(const struct pno_fno_arch *a, int i, struct tensor_desc *d)
{
	int W = a->width, L = a->layers, H = a->proj_hidden;
	int cin = a->in_ch + a->dims;
	memset(d, 0, sizeof *d);
	d->layer = -1;
	if (i == 0) {
		*d = (struct tensor_desc){T_LIFT_W, -1, "lift.weight", 2, {W, cin}, 0};
	} else if (i == 1) {
		*d = (struct tensor_desc){T_LIFT_B, -1, "lift.bias", 1, {W}, 0};
	} else if (i < 2 + 3 * L) {
		int l = (i - 2) / 3, k = (i - 2) % 3;
		d->layer = l;
		if (k == 0) {
			d->kind = T_SPEC_W;
			snprintf(d->name, sizeof d->name, "spectral.%d.weight", l);
			if (a->dims == 1) {
				d->ndim = 4;
				d->shape[0] = W, d->shape[1] = W;
				d->shape[2] = a->modes1, d->shape[3] = 2;
			} else {
				d->ndim = 5;
				d->shape[0] = W, d->shape[1] = W;
				d->shape[2] = 2 * a->modes1;
				d->shape[3] = a->modes2, d->shape[4] = 2;
			}
		} else if (k == 1) {
			d->kind = T_PW_W;
			snprintf(d->name, sizeof d->name, "pointwise.%d.weight", l);
			d->ndim = 2, d->shape[0] = W, d->shape[1] = W;
		} else {
			d->kind = T_PW_B;
			snprintf(d->name, sizeof d->name, "pointwise.%d.bias", l);
			d->ndim = 1, d->shape[0] = W;
		}
	} else {
		int k = i - 2 - 3 * L;
		static const char *names[] = {"proj1.weight", "proj1.bias",
					      "proj2.weight", "proj2.bias"};
		d->kind = (enum tensor_kind)(T_P1_W + k);
		snprintf(d->name, sizeof d->name, "%s", names[k]);
		if (k == 0)
			d->ndim = 2, d->shape[0] = H, d->shape[1] = W;
		else if (k == 1)
			d->ndim = 1, d->shape[0] = H;
		else if (k == 2)
			d->ndim = 2, d->shape[0] = a->out_ch, d->shape[1] = H;
		else
			d->ndim = 1, d->shape[0] = a->out_ch;
	}
	d->count = 1;
	for (int j = 0; j < d->ndim; j++)
		d->count *= (size_t)d->shape[j];
}

int pno_fno_tensor_count(const struct pno_fno *m)
{
	return 2 + 3 * m->arch.layers + 4;
}

void pno_fno_tensor_info(const struct pno_fno *m, int i, char *name,
			 size_t name_size, int *ndim, int64_t shape[8],
			 size_t *offset, size_t *count)
{
	struct tensor_desc d;
	size_t off = 0;
	for (int j = 0; j < i; j++) {
		describe(&m->arch, j, &d);
		off += d.count;
	}
	describe(&m->arch, i, &d);
	if (name)
		snprintf(name, name_size, "%s", d.name);
	if (ndim)
		*ndim = d.ndim;
	if (shape)
		memcpy(shape, d.shape, sizeof d.shape);
	if (offset)
		*offset = off;
	if (count)
		*count = d.count;
}

/* Point the named views of `v` into `block`. */
static void bind_views(const struct pno_fno *m, struct pno_fno_params *v,
		       float *block)
{
	size_t off = 0;
	int n = pno_fno_tensor_count(m);
	memset(v, 0, sizeof *v);
	for (int i = 0; i < n; i++) {
		struct tensor_desc d;
		float *p = block + off;
		describe(&m->arch, i, &d);
		switch (d.kind) {
		case T_LIFT_W: v->lift_w = p; break;
		case T_LIFT_B: v->lift_b = p; break;
		case T_SPEC_W: v->spec_w[d.layer] = p; break;
		case T_PW_W: v->pw_w[d.layer] = p; break;
		case T_PW_B: v->pw_b[d.layer] = p; break;
		case T_P1_W: v->proj1_w = p; break;
		case T_P1_B: v->proj1_b = p; break;
		case T_P2_W: v->proj2_w = p; break;
		case T_P2_B: v->proj2_b = p; break;
		}
		off += d.count;
	}
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as torch.nn.Linear; spectral weights
 * (1/(W*W)) * U[0,1) for real and imaginary parts as the reference FNO. */
static void init_weights(struct pno_fno *m, uint64_t seed)
{
	int n = pno_fno_tensor_count(m);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		struct tensor_desc d;
		float *p = m->params + off;
		describe(&m->arch, i, &d);
		pno_rng_uniform(p, d.count, seed, 0x1000 + (uint64_t)i, 0);
		float scale, shift;
		if (d.kind == T_SPEC_W) {
			scale = 1.0f / ((float)m->arch.width * m->arch.width);
			shift = 0.0f;
		} else {
			int fan_in;
			switch (d.kind) {
			case T_LIFT_W: case T_LIFT_B:
				fan_in = m->arch.in_ch + m->arch.dims; break;
			case T_P2_W: case T_P2_B:
				fan_in = m->arch.proj_hidden; break;
			default:
				fan_in = m->arch.width; break;
			}
			float bound = 1.0f / sqrtf((float)fan_in);
			scale = 2.0f * bound;
			shift = -bound;
		}
		for (size_t j = 0; j < d.count; j++)
			p[j] = p[j] * scale + shift;
		off += d.count;
	}
}

void pno_fno_free(struct pno_fno *m)
{
	if (!m)
		return;
	pno_spectral_free(&m->spec);
	pno_free(m->params);
	pno_free(m->grads);
	pno_free(m->acts);
	memset(m, 0, sizeof *m);
}

enum pno_status pno_fno_init(struct pno_fno *m, const struct pno_fno_arch *a,
			     int X, int Y, int Bmax, uint64_t seed)
{
	enum pno_status st;
	memset(m, 0, sizeof *m);
	if ((st = pno_fno_arch_check(a)) != PNO_STATUS_OK)
		return st;
	if (a->dims == 1)
		Y = 1;
	if (X < 2 || Y < 1 || (a->dims == 2 && Y < 2) || Bmax < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "grid %d x %d, batch %d: need a grid of at "
				   "least 2 points per axis and batch >= 1",
				   X, Y, Bmax);
	if ((size_t)X * Y > ((size_t)1 << 28))
		return pno__errorf(PNO_STATUS_INVALID, "grid %d x %d too large",
				   X, Y);
	m->arch = *a;
	if (a->dims == 1)
		m->arch.modes2 = 1;
	m->X = X, m->Y = Y, m->P = X * Y, m->Bmax = Bmax;
	for (int c = 0; c < PNO_FNO_MAX_CH; c++)
		m->norm.in_std[c] = m->norm.out_std[c] = 1.0f;

	st = pno_spectral_init(&m->spec, a->dims, Bmax, a->width, a->width, X,
			       Y, a->modes1, a->dims == 2 ? a->modes2 : 1);
	if (st != PNO_STATUS_OK)
		goto fail;

	int n = pno_fno_tensor_count(m);
	m->n_params = 0;
	for (int i = 0; i < n; i++) {
		struct tensor_desc d;
		describe(a, i, &d);
		m->n_params += d.count;
	}
	m->params = pno_malloc(m->n_params * sizeof(float));
	m->grads = pno_calloc(m->n_params, sizeof(float));
	if (!m->params || !m->grads)
		goto nomem;
	bind_views(m, &m->p, m->params);
	bind_views(m, &m->g, m->grads);
	init_weights(m, seed);

	/* activations: sizes in floats, each rounded to a cache line */
	size_t P = (size_t)m->P, B = (size_t)Bmax, W = (size_t)a->width;
	size_t H = (size_t)a->proj_hidden, L = (size_t)a->layers;
	size_t cin = (size_t)(a->in_ch + a->dims);
	size_t nmodes = pno_spectral_modes_size(&m->spec, a->width, Bmax);
	size_t sizes[] = {
		(size_t)a->dims * P,	/* grid */
		B * cin * P,		/* xin */
		B * W * P * (L + 1),	/* h */
		B * W * P * L,		/* pre */
		nmodes * L,		/* xhat */
		nmodes,			/* modes_scratch */
		B * H * P, B * H * P,	/* q, qa */
		B * (size_t)a->out_ch * P, /* out */
		B * W * P, B * W * P,	/* dh, dh2 */
		B * H * P,		/* dq */
		B * (size_t)a->out_ch * P, /* dout */
	};
	enum { NS = sizeof sizes / sizeof sizes[0] };
	size_t total = 0, offs[NS];
	for (int i = 0; i < NS; i++) {
		offs[i] = total;
		total += (sizes[i] + 15) & ~(size_t)15;
	}
	m->acts = pno_malloc(total * sizeof(float));
	if (!m->acts)
		goto nomem;
	float *base = m->acts;
	m->grid = base + offs[0];
	m->xin = base + offs[1];
	for (size_t l = 0; l <= L; l++)
		m->h[l] = base + offs[2] + l * B * W * P;
	for (size_t l = 0; l < L; l++) {
		m->pre[l] = base + offs[3] + l * B * W * P;
		m->xhat[l] = base + offs[4] + l * nmodes;
	}
	m->modes_scratch = base + offs[5];
	m->q = base + offs[6];
	m->qa = base + offs[7];
	m->out = base + offs[8];
	m->dh = base + offs[9];
	m->dh2 = base + offs[10];
	m->dq = base + offs[11];
	m->dout = base + offs[12];

	/* grid coordinates: linspace(0, 1, N), x then y */
	for (int i = 0; i < X; i++)
		for (int j = 0; j < Y; j++) {
			m->grid[(size_t)i * Y + j] = (float)i / (float)(X - 1);
			if (a->dims == 2)
				m->grid[P + (size_t)i * Y + j] =
					(float)j / (float)(Y - 1);
		}
	return PNO_STATUS_OK;

nomem:
	st = pno__errorf(PNO_STATUS_NOMEM, "FNO init: out of memory");
fail:
	pno_fno_free(m);
	return st;
}

void pno_fno_zero_grad(struct pno_fno *m)
{
	memset(m->grads, 0, m->n_params * sizeof(float));
}

const float *pno_fno_forward(struct pno_fno *m, const float *x, int B)
{
	const struct pno_fno_arch *a = &m->arch;
	int P = m->P, W = a->width, L = a->layers, H = a->proj_hidden;
	int cin = a->in_ch + a->dims;
	m->last_B = B;

	/* z-score the physical channels, append the grid */
	for (int b = 0; b < B; b++) {
		for (int c = 0; c < a->in_ch; c++) {
			const float *src = x + ((size_t)b * a->in_ch + c) * P;
			float *dst = m->xin + ((size_t)b * cin + c) * P;
			float mu = m->norm.in_mean[c];
			float inv = 1.0f / m->norm.in_std[c];
			for (int p = 0; p < P; p++)
				dst[p] = (src[p] - mu) * inv;
		}
		memcpy(m->xin + ((size_t)b * cin + a->in_ch) * P, m->grid,
		       (size_t)a->dims * P * sizeof(float));
	}
	pno_linear_forward(m->h[0], m->xin, m->p.lift_w, m->p.lift_b, B, cin,
			   W, P, 0);
	for (int l = 0; l < L; l++) {
		pno_spectral_forward(&m->spec, m->pre[l], m->xhat[l],
				     m->modes_scratch, m->h[l], m->p.spec_w[l],
				     B);
		pno_linear_forward(m->pre[l], m->h[l], m->p.pw_w[l],
				   m->p.pw_b[l], B, W, W, P, 1);
		size_t n = (size_t)B * W * P;
		if (l < L - 1)
			pno_gelu_forward(m->h[l + 1], m->pre[l], n);
		else
			memcpy(m->h[l + 1], m->pre[l], n * sizeof(float));
	}
	pno_linear_forward(m->q, m->h[L], m->p.proj1_w, m->p.proj1_b, B, W, H,
			   P, 0);
	pno_gelu_forward(m->qa, m->q, (size_t)B * H * P);
	pno_linear_forward(m->out, m->qa, m->p.proj2_w, m->p.proj2_b, B, H,
			   a->out_ch, P, 0);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < a->out_ch; c++) {
			float *o = m->out + ((size_t)b * a->out_ch + c) * P;
			float mu = m->norm.out_mean[c], sd = m->norm.out_std[c];
			for (int p = 0; p < P; p++)
				o[p] = o[p] * sd + mu;
		}
	return m->out;
}

void pno_fno_backward(struct pno_fno *m, const float *dout, int B)
{
	const struct pno_fno_arch *a = &m->arch;
	int P = m->P, W = a->width, L = a->layers, H = a->proj_hidden;
	int cin = a->in_ch + a->dims;
	size_t nw = (size_t)B * W * P;

	for (int b = 0; b < B; b++)
		for (int c = 0; c < a->out_ch; c++) {
			size_t o = ((size_t)b * a->out_ch + c) * P;
			float sd = m->norm.out_std[c];
			for (int p = 0; p < P; p++)
				m->dout[o + p] = dout[o + p] * sd;
		}
	memset(m->dq, 0, (size_t)B * H * P * sizeof(float));
	pno_linear_backward(m->dq, m->g.proj2_w, m->g.proj2_b, m->dout, m->qa,
			    m->p.proj2_w, B, H, a->out_ch, P);
	pno_gelu_backward_inplace(m->dq, m->q, (size_t)B * H * P);
	memset(m->dh, 0, nw * sizeof(float));
	pno_linear_backward(m->dh, m->g.proj1_w, m->g.proj1_b, m->dq, m->h[L],
			    m->p.proj1_w, B, W, H, P);
	for (int l = L - 1; l >= 0; l--) {
		if (l < L - 1)
			pno_gelu_backward_inplace(m->dh, m->pre[l], nw);
		memset(m->dh2, 0, nw * sizeof(float));
		pno_linear_backward(m->dh2, m->g.pw_w[l],
				    m->g.pw_b[l], m->dh, m->h[l], m->p.pw_w[l],
				    B, W, W, P);
		pno_spectral_backward(&m->spec, m->dh2, m->g.spec_w[l],
				      m->modes_scratch, m->dh, m->xhat[l],
				      m->p.spec_w[l], B);
		float *t = m->dh;
		m->dh = m->dh2;
		m->dh2 = t;
	}
	pno_linear_backward(NULL, m->g.lift_w, m->g.lift_b, m->dh, m->xin,
			    m->p.lift_w, B, cin, W, P);
}
