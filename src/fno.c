/* The FNO model: parameter layout, init, forward, backward. */
#include "pno/fno.h"
#include "pno/nn.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pno/loss.h"

static enum pno_status alloc_masks(struct pno_fno *m);

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
	if (a->heads < 0 || a->heads > 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "heads = %d: must be 0, 1 (the field) or 2 "
				   "(mean and scale)", a->heads);
	const float ps[4] = {a->p_lift, a->p_hidden, a->p_proj, a->p_fourier};
	static const char *pn[4] = {"p_lift", "p_hidden", "p_proj",
				    "p_fourier"};
	for (int i = 0; i < 4; i++)
		if (!(ps[i] >= 0.0f && ps[i] < 1.0f))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s = %g: a dropout probability "
					   "must be in [0, 1)", pn[i],
					   (double)ps[i]);
	return PNO_STATUS_OK;
}

int pno_fno_out_channels(const struct pno_fno_arch *a)
{
	return a->heads == 2 ? 2 * a->out_ch : a->out_ch;
}

int pno_fno_has_dropout(const struct pno_fno_arch *a)
{
	return a->p_lift > 0 || a->p_hidden > 0 || a->p_proj > 0 ||
	       a->p_fourier > 0;
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
			d->ndim = 2, d->shape[0] = pno_fno_out_channels(a),
			d->shape[1] = H;
		else
			d->ndim = 1, d->shape[0] = pno_fno_out_channels(a);
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
	pno_free(m->masks);
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
	size_t nout = (size_t)pno_fno_out_channels(a);
	size_t sizes[] = {
		(size_t)a->dims * P,	/* grid */
		B * cin * P,		/* xin */
		B * W * P * (L + 1),	/* h */
		B * W * P * L,		/* pre */
		nmodes * L,		/* xhat */
		nmodes,			/* modes_scratch */
		B * H * P, B * H * P,	/* q, qa */
		B * nout * P,		/* out */
		B * W * P, B * W * P,	/* dh, dh2 */
		B * H * P,		/* dq */
		B * nout * P,		/* dout */
		B * nout * P,		/* raw */
		nmodes,			/* dxhat */
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
	m->raw = base + offs[13];
	m->dxhat = base + offs[14];
	if ((st = alloc_masks(m)) != PNO_STATUS_OK)
		goto fail;

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

/* Keep masks, one byte per element, only for the kinds with p > 0. */
static enum pno_status alloc_masks(struct pno_fno *m)
{
	const struct pno_fno_arch *a = &m->arch;
	size_t B = (size_t)m->Bmax, WP = (size_t)a->width * m->P;
	size_t HP = (size_t)a->proj_hidden * m->P;
	size_t WK = (size_t)a->width * m->spec.K;
	int L = a->layers;
	/* element counter of a sample: 32 bits of Philox blocks of 4 */
	if ((a->p_proj > 0 && HP >= ((size_t)1 << 34)) ||
	    ((a->p_lift > 0 || a->p_hidden > 0) && WP >= ((size_t)1 << 34)))
		return pno__errorf(PNO_STATUS_INVALID,
				   "dropout masks: %zu elements per sample "
				   "exceed 2^34", PNO__MAX(WP, HP));
	size_t n_hidden = a->p_hidden > 0 && L > 1 ? (size_t)(L - 1) : 0;
	size_t sz[4] = {
		a->p_lift > 0 ? B * WP : 0,
		n_hidden * B * WP,
		a->p_proj > 0 ? B * HP : 0,
		a->p_fourier > 0 ? (size_t)L * B * WK : 0,
	};
	size_t total = 0, off[4];
	for (int i = 0; i < 4; i++) {
		off[i] = total;
		total += (sz[i] + 63) & ~(size_t)63;
	}
	if (total == 0)
		return PNO_STATUS_OK;
	m->masks = pno_malloc(total);
	if (!m->masks)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "FNO init: out of memory for dropout masks "
				   "(%zu bytes)", total);
	if (sz[0])
		m->mask_lift = m->masks + off[0];
	for (size_t l = 0; l < n_hidden; l++)
		m->mask_hidden[l] = m->masks + off[1] + l * B * WP;
	if (sz[2])
		m->mask_proj = m->masks + off[2];
	if (sz[3])
		for (int l = 0; l < L; l++)
			m->mask_fourier[l] = m->masks + off[3] + l * B * WK;
	return PNO_STATUS_OK;
}

void pno_fno_zero_grad(struct pno_fno *m)
{
	memset(m->grads, 0, m->n_params * sizeof(float));
}

/* ---- dropout masks ----
 * Element e of sample b of mask `id` in stream k keeps its value iff word
 * e & 3 of Philox(key, c0 = b * 2^32 + e / 4, c1 = 2^62 + k * 64 + id) is
 * >= thr = round(p * 2^32). Ids: lift 0, hidden 1 + l, proj 17, fourier
 * 18 + l. The 2^62 keeps mask counters away from the small stream numbers
 * the weight init and the data generators use with the same keys. */
enum { MASK_LIFT = 0, MASK_HIDDEN = 1, MASK_PROJ = 17, MASK_FOURIER = 18 };
#define MASK_C1_BASE ((uint64_t)1 << 62)
/* forward streams count up from 0; pno_fno_sample uses this one */
#define SAMPLE_STREAM (((uint64_t)1 << 56) - 1)

#define PH_M0 0xD2511F53u
#define PH_M1 0xCD9E8D57u
#define PH_W0 0x9E3779B9u
#define PH_W1 0xBB67AE85u
#define PH_LANES 64
typedef uint64_t pno__v64 __attribute__((vector_size(PH_LANES * 8)));

/* keep[i] for elements e0 + i, i < n, of sample b (e0 a multiple of 4):
 * Philox-4x32-10 on PH_LANES counters at once (the same bits as
 * pno_philox4x32). Each 32-bit word sits in the low half of a 64-bit lane
 * so a round is plain vector multiplies; the high halves carry garbage
 * that only ever reaches the (masked) multiply inputs and the output
 * truncation. 64 independent lanes hide the multiply latency: 0.25-0.5 ns
 * per mask element on one core (AVX-512 VM), ~7x a 16-lane 32-bit
 * version and ~40x pno_rng_uniform plus a threshold. */
static void philox_keep(uint8_t *restrict keep, size_t e0, size_t n,
			uint64_t key, uint64_t b, uint64_t c1, uint32_t thr)
{
	const uint64_t LO = 0xFFFFFFFFu;
	size_t nblk = (n + 3) / 4;
	uint64_t blk0 = (b << 32) + (e0 >> 2);
	pno__v64 lane;
	for (int q = 0; q < PH_LANES; q++)
		lane[q] = (uint64_t)q;
	for (size_t j = 0; j < nblk; j += PH_LANES) {
		pno__v64 ctr = lane + (blk0 + j);
		pno__v64 x0 = ctr, x1 = ctr >> 32;
		pno__v64 x2 = (pno__v64){0} + (c1 & LO);
		pno__v64 x3 = (pno__v64){0} + (c1 >> 32);
		uint64_t ka = (uint32_t)key, kb = (uint32_t)(key >> 32);
		for (int r = 0; r < 10; r++) {
			pno__v64 p0 = (x0 & LO) * (uint64_t)PH_M0;
			pno__v64 p1 = (x2 & LO) * (uint64_t)PH_M1;
			x0 = (p1 >> 32) ^ x1 ^ ka;
			x2 = (p0 >> 32) ^ x3 ^ kb;
			x1 = p1;
			x3 = p0;
			ka = (uint32_t)(ka + PH_W0);
			kb = (uint32_t)(kb + PH_W1);
		}
		uint8_t t[4 * PH_LANES];
		for (int q = 0; q < PH_LANES; q++) {
			t[4 * q] = (uint32_t)x0[q] >= thr;
			t[4 * q + 1] = (uint32_t)x1[q] >= thr;
			t[4 * q + 2] = (uint32_t)x2[q] >= thr;
			t[4 * q + 3] = (uint32_t)x3[q] >= thr;
		}
		size_t e = 4 * j, cnt = PNO__MIN(n - e, (size_t)(4 * PH_LANES));
		memcpy(keep + e, t, cnt);
	}
}

static uint32_t drop_threshold(float p)
{
	double t = nearbyint((double)p * 4294967296.0);
	return t >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)t;
}

static float keep_scale(float p)
{
	return (float)(1.0 / (1.0 - (double)p));
}

/* Draw keep (B, n) for samples b0 .. b0+B-1 and, if x is not NULL, apply
 * it: x *= keep / (1 - p). Work split in chunks over samples and elements:
 * the bits do not depend on the thread count. */
static void draw_apply(uint8_t *keep, float *x, size_t n, int B, uint64_t key,
		       uint64_t c1, uint64_t b0, float p)
{
	const size_t CH = 16384;	/* multiple of 4 * PH_LANES */
	uint32_t thr = drop_threshold(p);
	float scale = keep_scale(p);
	size_t nch = (n + CH - 1) / CH;
	long total = (long)(B * nch);
#pragma omp parallel for schedule(static) if (total * (long)CH > 32768)
	for (long t = 0; t < total; t++) {
		size_t b = (size_t)t / nch, e0 = ((size_t)t % nch) * CH;
		size_t cnt = PNO__MIN(CH, n - e0);
		uint8_t *kb = keep + b * n + e0;
		philox_keep(kb, e0, cnt, key, b0 + b, c1, thr);
		if (x) {
			float *xb = x + b * n + e0;
			for (size_t i = 0; i < cnt; i++)
				xb[i] *= kb[i] ? scale : 0.0f;
		}
	}
}

/* d *= keep / (1 - p): the mask's own adjoint, for backward. */
static void apply_keep(float *d, const uint8_t *keep, size_t n, float p)
{
	float scale = keep_scale(p);
#pragma omp parallel for simd schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		d[i] *= keep[i] ? scale : 0.0f;
}

void pno_fno_set_rng(struct pno_fno *m, uint64_t seed)
{
	m->rng_seed = seed;
	m->rng_calls = 0;
}

/* ---- forward / backward ---- */

/* One forward. x is (B, Cin, P), or (1, Cin, P) used for every batch
 * element if bcast. With stoch, masks come from Philox key `key`, stream
 * `stream`, samples numbered from b0. */
static const float *forward_impl(struct pno_fno *m, const float *x, int B,
				 int bcast, int stoch, uint64_t key,
				 uint64_t stream, uint64_t b0)
{
	const struct pno_fno_arch *a = &m->arch;
	int P = m->P, W = a->width, L = a->layers, H = a->proj_hidden;
	int cin = a->in_ch + a->dims, nout = pno_fno_out_channels(a);
	size_t nw = (size_t)B * W * P;
	uint64_t c1 = MASK_C1_BASE + stream * 64;
	m->last_B = B;
	m->masked = stoch;

	/* z-score the physical channels, append the grid */
	for (int b = 0; b < B; b++) {
		for (int c = 0; c < a->in_ch; c++) {
			const float *src =
				x + ((size_t)(bcast ? 0 : b) * a->in_ch + c) * P;
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
	if (stoch && m->mask_lift)
		draw_apply(m->mask_lift, m->h[0], (size_t)W * P, B, key,
			   c1 + MASK_LIFT, b0, a->p_lift);
	for (int l = 0; l < L; l++) {
		uint8_t *fm = stoch ? m->mask_fourier[l] : NULL;
		if (fm) {
			pno_spectral_analyze(&m->spec, m->xhat[l], m->h[l], B);
			pno_spectral_mix(&m->spec, m->modes_scratch, m->xhat[l],
					 m->p.spec_w[l], B);
			draw_apply(fm, NULL, (size_t)W * m->spec.K, B, key,
				   c1 + MASK_FOURIER + (uint64_t)l, b0,
				   a->p_fourier);
			pno_spectral_modes_mask(&m->spec, m->modes_scratch, fm,
						keep_scale(a->p_fourier), W, B);
			pno_spectral_synthesize(&m->spec, m->pre[l],
						m->modes_scratch, B);
		} else {
			pno_spectral_forward(&m->spec, m->pre[l], m->xhat[l],
					     m->modes_scratch, m->h[l],
					     m->p.spec_w[l], B);
		}
		pno_linear_forward(m->pre[l], m->h[l], m->p.pw_w[l],
				   m->p.pw_b[l], B, W, W, P, 1);
		if (l < L - 1) {
			pno_gelu_forward(m->h[l + 1], m->pre[l], nw);
			if (stoch && m->mask_hidden[l])
				draw_apply(m->mask_hidden[l], m->h[l + 1],
					   (size_t)W * P, B, key,
					   c1 + MASK_HIDDEN + (uint64_t)l, b0,
					   a->p_hidden);
		} else {
			memcpy(m->h[l + 1], m->pre[l], nw * sizeof(float));
		}
	}
	pno_linear_forward(m->q, m->h[L], m->p.proj1_w, m->p.proj1_b, B, W, H,
			   P, 0);
	pno_gelu_forward(m->qa, m->q, (size_t)B * H * P);
	if (stoch && m->mask_proj)
		draw_apply(m->mask_proj, m->qa, (size_t)H * P, B, key,
			   c1 + MASK_PROJ, b0, a->p_proj);
	pno_linear_forward(m->raw, m->qa, m->p.proj2_w, m->p.proj2_b, B, H,
			   nout, P, 0);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < nout; c++) {
			size_t off = ((size_t)b * nout + c) * P;
			const float *r = m->raw + off;
			float *o = m->out + off;
			if (c < a->out_ch) {
				float mu = m->norm.out_mean[c];
				float sd = m->norm.out_std[c];
				for (int p = 0; p < P; p++)
					o[p] = r[p] * sd + mu;
			} else {
				double sd = m->norm.out_std[c - a->out_ch];
				for (int p = 0; p < P; p++)
					o[p] = (float)((pno_softplus(r[p]) +
							1e-6) * sd);
			}
		}
	return m->out;
}

const float *pno_fno_forward(struct pno_fno *m, const float *x, int B)
{
	int stoch = 0;
	uint64_t stream = 0;
	if (m->stochastic) {
		stream = m->rng_calls++;
		stoch = m->masks != NULL;
	}
	return forward_impl(m, x, B, 0, stoch, m->rng_seed, stream, m->rng_b0);
}

enum pno_status pno_fno_sample(struct pno_fno *m, float *out, const float *x,
			       int S, uint64_t seed)
{
	if (!m || !out || !x || !m->params)
		return pno__errorf(PNO_STATUS_INVALID,
				   "FNO sample: NULL model, input or output");
	if (S < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "FNO sample: S = %d samples, must be >= 1", S);
	size_t per = (size_t)pno_fno_out_channels(&m->arch) * m->P;
	for (int s0 = 0; s0 < S; s0 += m->Bmax) {
		int nb = PNO__MIN(m->Bmax, S - s0);
		const float *o = forward_impl(m, x, nb, 1, m->masks != NULL,
					      seed, SAMPLE_STREAM,
					      (uint64_t)s0);
		memcpy(out + (size_t)s0 * per, o, (size_t)nb * per * sizeof(float));
	}
	return PNO_STATUS_OK;
}

void pno_fno_backward(struct pno_fno *m, const float *dout, int B)
{
	const struct pno_fno_arch *a = &m->arch;
	int P = m->P, W = a->width, L = a->layers, H = a->proj_hidden;
	int cin = a->in_ch + a->dims, nout = pno_fno_out_channels(a);
	size_t nw = (size_t)B * W * P;
	int stoch = m->masked;

	for (int b = 0; b < B; b++)
		for (int c = 0; c < nout; c++) {
			size_t o = ((size_t)b * nout + c) * P;
			if (c < a->out_ch) {
				float sd = m->norm.out_std[c];
				for (int p = 0; p < P; p++)
					m->dout[o + p] = dout[o + p] * sd;
			} else {
				double sd = m->norm.out_std[c - a->out_ch];
				for (int p = 0; p < P; p++)
					m->dout[o + p] = (float)(
						dout[o + p] * sd *
						pno_sigmoid(m->raw[o + p]));
			}
		}
	memset(m->dq, 0, (size_t)B * H * P * sizeof(float));
	pno_linear_backward(m->dq, m->g.proj2_w, m->g.proj2_b, m->dout, m->qa,
			    m->p.proj2_w, B, H, nout, P);
	if (stoch && m->mask_proj)
		apply_keep(m->dq, m->mask_proj, (size_t)B * H * P, a->p_proj);
	pno_gelu_backward_inplace(m->dq, m->q, (size_t)B * H * P);
	memset(m->dh, 0, nw * sizeof(float));
	pno_linear_backward(m->dh, m->g.proj1_w, m->g.proj1_b, m->dq, m->h[L],
			    m->p.proj1_w, B, W, H, P);
	for (int l = L - 1; l >= 0; l--) {
		if (l < L - 1) {
			if (stoch && m->mask_hidden[l])
				apply_keep(m->dh, m->mask_hidden[l], nw,
					   a->p_hidden);
			pno_gelu_backward_inplace(m->dh, m->pre[l], nw);
		}
		memset(m->dh2, 0, nw * sizeof(float));
		pno_linear_backward(m->dh2, m->g.pw_w[l],
				    m->g.pw_b[l], m->dh, m->h[l], m->p.pw_w[l],
				    B, W, W, P);
		const uint8_t *fm = stoch ? m->mask_fourier[l] : NULL;
		if (fm) {
			pno_spectral_synthesize_backward(&m->spec,
							 m->modes_scratch,
							 m->dh, B);
			pno_spectral_modes_mask(&m->spec, m->modes_scratch, fm,
						keep_scale(a->p_fourier), W, B);
			memset(m->dxhat, 0,
			       pno_spectral_modes_size(&m->spec, W, B) *
				       sizeof(float));
			pno_spectral_mix_backward(&m->spec, m->dxhat,
						  m->g.spec_w[l],
						  m->modes_scratch, m->xhat[l],
						  m->p.spec_w[l], B);
			pno_spectral_analyze_backward(&m->spec, m->dh2,
						      m->dxhat, B);
		} else {
			pno_spectral_backward(&m->spec, m->dh2,
					      m->g.spec_w[l], m->modes_scratch,
					      m->dh, m->xhat[l],
					      m->p.spec_w[l], B);
		}
		float *t = m->dh;
		m->dh = m->dh2;
		m->dh2 = t;
	}
	if (stoch && m->mask_lift)
		apply_keep(m->dh, m->mask_lift, nw, a->p_lift);
	pno_linear_backward(NULL, m->g.lift_w, m->g.lift_b, m->dh, m->xin,
			    m->p.lift_w, B, cin, W, P);
}
