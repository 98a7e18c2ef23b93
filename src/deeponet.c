/* DeepONet: parameter layout, init, forward/backward (GEMMs), files. */
#include "pno/deeponet.h"
#include "pno/nn.h"
#include "internal.h"
#include "model_io.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_BATCH (1 << 20)
#define MAX_POINTS ((size_t)1 << 28)

static enum pno_status range_err(const char *field, int v, int lo, int hi)
{
	return pno__errorf(PNO_STATUS_INVALID, "%s = %d: must be in [%d, %d]",
			   field, v, lo, hi);
}

enum pno_status pno_deeponet_arch_check(const struct pno_deeponet_arch *a)
{
	if (!a)
		return pno__errorf(PNO_STATUS_INVALID, "architecture is NULL");
	if (a->dims != 1 && a->dims != 2)
		return pno__errorf(PNO_STATUS_INVALID,
				   "dims = %d: must be 1 or 2", a->dims);
	/* X(field, lo, hi) */
#define PNO__DON_RANGES(X)                                                    \
	X(in_ch, 1, PNO_DEEPONET_MAX_CH)                                      \
	X(out_ch, 1, PNO_DEEPONET_MAX_CH)                                     \
	X(sensors, 0, 1 << 24)                                                \
	X(sensor_stride, 0, 1 << 16)                                          \
	X(branch_width, 1, 4096)                                              \
	X(branch_depth, 0, PNO_DEEPONET_MAX_DEPTH)                            \
	X(trunk_width, 1, 4096)                                               \
	X(trunk_depth, 0, PNO_DEEPONET_MAX_DEPTH)                             \
	X(p, 1, 4096)
#define PNO__DON_CHECK(f, lo, hi)                                             \
	if (a->f < (lo) || a->f > (hi))                                       \
		return range_err(#f, a->f, lo, hi);
	PNO__DON_RANGES(PNO__DON_CHECK)
#undef PNO__DON_CHECK
	return PNO_STATUS_OK;
}

/* ---- layout ---- */

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Resolve sensor count and stride for the grid (Y = 1 in 1D). */
static enum pno_status resolve_sensors(struct pno_deeponet_arch *a, int X,
				       int Y, int *SX, int *SY)
{
	int s = a->sensor_stride;
	if (s > 0) {
		long long n = (long long)ceil_div(X, s) * ceil_div(Y, s);
		if (a->sensors > 0 && a->sensors != n)
			return pno__errorf(PNO_STATUS_INVALID,
					   "sensors = %d: sensor_stride %d on "
					   "the %d x %d grid gives %lld sensors",
					   a->sensors, s, X, Y, n);
	} else {
		long long want = a->sensors > 0 ? a->sensors
						: PNO_DEEPONET_DEFAULT_SENSORS;
		for (s = 1; (long long)ceil_div(X, s) * ceil_div(Y, s) > want;
		     s++)
			;
	}
	*SX = ceil_div(X, s);
	*SY = ceil_div(Y, s);
	a->sensor_stride = s;
	a->sensors = *SX * *SY;
	return PNO_STATUS_OK;
}

static int branch_in(const struct pno_deeponet_arch *a, int l)
{
	return l == 0 ? a->in_ch * a->sensors : a->branch_width;
}
static int branch_out(const struct pno_deeponet_arch *a, int l)
{
	return l == a->branch_depth ? a->out_ch * a->p : a->branch_width;
}
static int trunk_in(const struct pno_deeponet_arch *a, int l)
{
	return l == 0 ? a->dims : a->trunk_width;
}
static int trunk_out(const struct pno_deeponet_arch *a, int l)
{
	return l == a->trunk_depth ? a->p : a->trunk_width;
}

enum tensor_kind { T_BRANCH, T_TRUNK, T_OUT_BIAS };

struct tensor_desc {
	enum tensor_kind kind;
	int layer, is_bias;
	int fan_in, fan_out;
	char name[48];
	int ndim;
	int64_t shape[2];
	size_t count;
};

int pno_deeponet_tensor_count(const struct pno_deeponet *m)
{
	return 2 * (m->arch.branch_depth + 1) + 2 * (m->arch.trunk_depth + 1) +
	       1;
}

static void describe(const struct pno_deeponet_arch *a, int i,
		     struct tensor_desc *d)
{
	int nb = 2 * (a->branch_depth + 1), nt = 2 * (a->trunk_depth + 1);
	memset(d, 0, sizeof *d);
	if (i < nb + nt) {
		int trunk = i >= nb, j = trunk ? i - nb : i;
		d->kind = trunk ? T_TRUNK : T_BRANCH;
		d->layer = j / 2;
		d->is_bias = j % 2;
		d->fan_in = trunk ? trunk_in(a, d->layer) : branch_in(a, d->layer);
		d->fan_out = trunk ? trunk_out(a, d->layer)
				   : branch_out(a, d->layer);
		snprintf(d->name, sizeof d->name, "%s.%d.%s",
			 trunk ? "trunk" : "branch", d->layer,
			 d->is_bias ? "bias" : "weight");
		d->ndim = d->is_bias ? 1 : 2;
		d->shape[0] = d->fan_out;
		d->shape[1] = d->fan_in;
	} else {
		d->kind = T_OUT_BIAS;
		d->is_bias = 1;
		snprintf(d->name, sizeof d->name, "output.bias");
		d->ndim = 1;
		d->shape[0] = a->out_ch;
	}
	d->count = (size_t)d->shape[0] * (d->ndim == 2 ? (size_t)d->shape[1] : 1);
}

void pno_deeponet_tensor_info(const struct pno_deeponet *m, int i, char *name,
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
	if (shape) {
		memset(shape, 0, 8 * sizeof shape[0]);
		shape[0] = d.shape[0];
		shape[1] = d.ndim == 2 ? d.shape[1] : 0;
	}
	if (offset)
		*offset = off;
	if (count)
		*count = d.count;
}

static void bind_views(const struct pno_deeponet *m,
		       struct pno_deeponet_params *v, float *block)
{
	int n = pno_deeponet_tensor_count(m);
	size_t off = 0;
	memset(v, 0, sizeof *v);
	for (int i = 0; i < n; i++) {
		struct tensor_desc d;
		float *p = block + off;
		describe(&m->arch, i, &d);
		if (d.kind == T_BRANCH)
			*(d.is_bias ? &v->branch_b[d.layer]
				    : &v->branch_w[d.layer]) = p;
		else if (d.kind == T_TRUNK)
			*(d.is_bias ? &v->trunk_b[d.layer]
				    : &v->trunk_w[d.layer]) = p;
		else
			v->out_b = p;
		off += d.count;
	}
}

/* Glorot uniform weights, zero biases. */
static void init_weights(struct pno_deeponet *m, uint64_t seed)
{
	int n = pno_deeponet_tensor_count(m);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		struct tensor_desc d;
		float *p = m->params + off;
		describe(&m->arch, i, &d);
		if (d.is_bias) {
			memset(p, 0, d.count * sizeof *p);
		} else {
			float bound = sqrtf(6.0f / (float)(d.fan_in + d.fan_out));
			pno_rng_uniform(p, d.count, seed, 0xD0000 + (uint64_t)i, 0);
			for (size_t j = 0; j < d.count; j++)
				p[j] = (2.0f * p[j] - 1.0f) * bound;
		}
		off += d.count;
	}
}

void pno_deeponet_free(struct pno_deeponet *m)
{
	if (!m)
		return;
	pno_free(m->params);
	pno_free(m->grads);
	pno_free(m->acts);
	memset(m, 0, sizeof *m);
}

/* Carve the activation block: sizes in floats, each rounded up to 16. */
struct carver {
	size_t total;
	int overflow;
};
static size_t carve(struct carver *c, size_t a, size_t b)
{
	size_t n, off = c->total;
	if (pno__mul_overflow(a, b, &n) || n > SIZE_MAX / 8 - c->total)
		c->overflow = 1;
	else
		c->total += (n + 15) & ~(size_t)15;
	return off;
}

enum pno_status pno_deeponet_init(struct pno_deeponet *m,
				  const struct pno_deeponet_arch *a, int X,
				  int Y, int Bmax, uint64_t seed)
{
	enum pno_status st;
	if (!m)
		return pno__errorf(PNO_STATUS_INVALID, "DeepONet init: model "
				   "is NULL");
	memset(m, 0, sizeof *m);
	if ((st = pno_deeponet_arch_check(a)) != PNO_STATUS_OK)
		return st;
	if (a->dims == 1)
		Y = 1;
	if (X < 2 || (a->dims == 2 && Y < 2) || Bmax < 1 || Bmax > MAX_BATCH)
		return pno__errorf(PNO_STATUS_INVALID,
				   "grid %d x %d, batch %d: need at least 2 "
				   "points per axis and batch in [1, %d]", X, Y,
				   Bmax, MAX_BATCH);
	if ((size_t)X * (size_t)Y > MAX_POINTS)
		return pno__errorf(PNO_STATUS_INVALID, "grid %d x %d too large",
				   X, Y);
	m->arch = *a;
	if ((st = resolve_sensors(&m->arch, X, Y, &m->SX, &m->SY)))
		return st;
	if ((long long)m->arch.in_ch * m->arch.sensors > (1 << 26))
		return pno__errorf(PNO_STATUS_INVALID,
				   "in_ch * sensors = %lld: branch input too "
				   "large (at most 2^26)",
				   (long long)m->arch.in_ch * m->arch.sensors);
	a = &m->arch;
	m->X = X, m->Y = Y, m->P = X * Y, m->Bmax = Bmax;
	for (int c = 0; c < PNO_DEEPONET_MAX_CH; c++)
		m->norm.in_std[c] = m->norm.out_std[c] = 1.0f;

	int n = pno_deeponet_tensor_count(m), nb = 2 * (a->branch_depth + 1);
	for (int i = 0; i < n; i++) {
		struct tensor_desc d;
		describe(a, i, &d);
		if (i == nb)
			m->trunk_off = m->n_params;
		if (d.kind == T_TRUNK)
			m->trunk_count += d.count;
		m->n_params += d.count;
	}
	m->params = pno_malloc(m->n_params * sizeof(float));
	m->grads = pno_calloc(m->n_params, sizeof(float));
	if (!m->params || !m->grads)
		goto nomem;
	bind_views(m, &m->p, m->params);
	bind_views(m, &m->g, m->grads);
	init_weights(m, seed);

	size_t P = (size_t)m->P, B = (size_t)Bmax;
	size_t Lb = (size_t)a->branch_depth, Lt = (size_t)a->trunk_depth;
	size_t Wb = (size_t)a->branch_width, Wt = (size_t)a->trunk_width;
	size_t Cp = (size_t)a->out_ch * a->p, Pb = (size_t)a->p;
	struct carver c = {0};
	size_t o_coords = carve(&c, P, (size_t)a->dims);
	size_t o_ones = carve(&c, PNO__MAX(B, P), 1);
	size_t o_ub = carve(&c, B, (size_t)a->in_ch * a->sensors);
	size_t o_bpre[PNO_DEEPONET_MAX_DEPTH + 1], o_bact[PNO_DEEPONET_MAX_DEPTH];
	size_t o_tpre[PNO_DEEPONET_MAX_DEPTH + 1], o_tact[PNO_DEEPONET_MAX_DEPTH + 1];
	for (size_t l = 0; l <= Lb; l++) {
		o_bpre[l] = carve(&c, B, l == Lb ? Cp : Wb);
		if (l < Lb)
			o_bact[l] = carve(&c, B, Wb);
	}
	for (size_t l = 0; l <= Lt; l++) {
		o_tpre[l] = carve(&c, P, l == Lt ? Pb : Wt);
		o_tact[l] = carve(&c, P, l == Lt ? Pb : Wt);
	}
	size_t o_out = carve(&c, B * a->out_ch, P);
	size_t o_dz = carve(&c, B * a->out_ch, P);
	size_t o_dbr0 = carve(&c, B, PNO__MAX(Wb, Cp));
	size_t o_dbr1 = carve(&c, B, PNO__MAX(Wb, Cp));
	size_t o_dtr0 = carve(&c, P, PNO__MAX(Wt, Pb));
	size_t o_dtr1 = carve(&c, P, PNO__MAX(Wt, Pb));
	size_t o_rowsum = carve(&c, B, (size_t)a->out_ch);
	size_t o_snap = carve(&c, m->trunk_count, 1);
	if (c.overflow) {
		st = pno__errorf(PNO_STATUS_INVALID,
				 "DeepONet init: workspace size overflows "
				 "(grid %d x %d, batch %d)", X, Y, Bmax);
		goto fail;
	}
	m->acts = pno_malloc(c.total * sizeof(float));
	if (!m->acts)
		goto nomem;
	float *base = m->acts;
	m->coords = base + o_coords;
	m->ones = base + o_ones;
	m->ub = base + o_ub;
	for (size_t l = 0; l <= Lb; l++) {
		m->bpre[l] = base + o_bpre[l];
		if (l < Lb)
			m->bact[l] = base + o_bact[l];
	}
	for (size_t l = 0; l <= Lt; l++) {
		m->tpre[l] = base + o_tpre[l];
		m->tact[l] = base + o_tact[l];
	}
	m->out = base + o_out;
	m->dz = base + o_dz;
	m->dbr[0] = base + o_dbr0, m->dbr[1] = base + o_dbr1;
	m->dtr[0] = base + o_dtr0, m->dtr[1] = base + o_dtr1;
	m->rowsum = base + o_rowsum;
	m->trunk_snap = base + o_snap;

	for (size_t i = 0; i < PNO__MAX(B, P); i++)
		m->ones[i] = 1.0f;
	for (int i = 0; i < X; i++)
		for (int j = 0; j < Y; j++) {
			float *cp = m->coords + ((size_t)i * Y + j) * a->dims;
			cp[0] = (float)i / (float)(X - 1);
			if (a->dims == 2)
				cp[1] = (float)j / (float)(Y - 1);
		}
	return PNO_STATUS_OK;

nomem:
	st = pno__errorf(PNO_STATUS_NOMEM, "DeepONet init: out of memory "
			 "(%zu parameters)", m->n_params);
fail:
	pno_deeponet_free(m);
	return st;
}

void pno_deeponet_zero_grad(struct pno_deeponet *m)
{
	if (m && m->grads)
		memset(m->grads, 0, m->n_params * sizeof(float));
}

/* ---- kernels over row-major activations (R rows of features) ---- */

/* y (R, O) = x (R, I) w^T + ones(R) b^T, w (O, I) as torch.nn.Linear. */
static void dense_forward(float *y, const float *x, const float *w,
			  const float *b, const float *ones, int R, int In, int O)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, O, 1, 1.0f,
		    ones, 1, b, O, 0.0f, y, O);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, O, In, 1.0f, x,
		    In, w, In, 1.0f, y, O);
}

/* dw += dy^T x, db += dy^T ones, dx = dy w (overwritten; NULL: skipped). */
static void dense_backward(float *dx, float *dw, float *db, const float *dy,
			   const float *x, const float *w, const float *ones,
			   int R, int In, int O)
{
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, In, R, 1.0f, dy,
		    O, x, In, 1.0f, dw, In);
	cblas_sgemv(CblasRowMajor, CblasTrans, R, O, 1.0f, dy, O, ones, 1, 1.0f,
		    db, 1);
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, In, O,
			    1.0f, dy, O, w, In, 0.0f, dx, In);
}

static int trunk_current(const struct pno_deeponet *m)
{
	return m->trunk_valid &&
	       memcmp(m->trunk_snap, m->params + m->trunk_off,
		      m->trunk_count * sizeof(float)) == 0;
}

static void trunk_forward(struct pno_deeponet *m)
{
	const struct pno_deeponet_arch *a = &m->arch;
	for (int l = 0; l <= a->trunk_depth; l++) {
		const float *in = l == 0 ? m->coords : m->tact[l - 1];
		int O = trunk_out(a, l);
		dense_forward(m->tpre[l], in, m->p.trunk_w[l], m->p.trunk_b[l],
			      m->ones, m->P, trunk_in(a, l), O);
		pno_gelu_forward(m->tact[l], m->tpre[l], (size_t)m->P * O);
	}
	memcpy(m->trunk_snap, m->params + m->trunk_off,
	       m->trunk_count * sizeof(float));
	m->trunk_valid = 1;
}

/* ub[b, c*S + i*SY + j] = z-scored x[b, c, (i*s)*Y + j*s]. A gather of
 * B*Cin*S values: small beside the GEMMs that consume it. */
static void gather_sensors(struct pno_deeponet *m, const float *x, int B)
{
	const struct pno_deeponet_arch *a = &m->arch;
	int s = a->sensor_stride, S = a->sensors, Y = m->Y;
	for (int b = 0; b < B; b++)
		for (int c = 0; c < a->in_ch; c++) {
			const float *src = x + ((size_t)b * a->in_ch + c) * m->P;
			float *dst = m->ub + ((size_t)b * a->in_ch + c) * S;
			float mu = m->norm.in_mean[c];
			float inv = 1.0f / m->norm.in_std[c];
			for (int i = 0; i < m->SX; i++) {
				const float *row = src + (size_t)i * s * Y;
				float *d = dst + (size_t)i * m->SY;
				for (int j = 0; j < m->SY; j++)
					d[j] = (row[(size_t)j * s] - mu) * inv;
			}
		}
}

const float *pno_deeponet_forward(struct pno_deeponet *m, const float *x,
				  int B)
{
	if (!m || !m->params || !x) {
		pno__errorf(PNO_STATUS_INVALID, "DeepONet forward: %s is NULL",
			    !x && m && m->params ? "input" : "model");
		return NULL;
	}
	if (B < 1 || B > m->Bmax) {
		pno__errorf(PNO_STATUS_INVALID,
			    "DeepONet forward: batch %d not in [1, %d]", B,
			    m->Bmax);
		return NULL;
	}
	const struct pno_deeponet_arch *a = &m->arch;
	int Lb = a->branch_depth, P = m->P, Cout = a->out_ch, np = a->p;
	if (!trunk_current(m))
		trunk_forward(m);
	gather_sensors(m, x, B);
	for (int l = 0; l <= Lb; l++) {
		const float *in = l == 0 ? m->ub : m->bact[l - 1];
		int O = branch_out(a, l);
		dense_forward(m->bpre[l], in, m->p.branch_w[l],
			      m->p.branch_b[l], m->ones, B, branch_in(a, l), O);
		if (l < Lb)
			pno_gelu_forward(m->bact[l], m->bpre[l], (size_t)B * O);
	}
	/* z (B*Cout, P) = beta (B*Cout, p) T^T, T (P, p) the trunk basis */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B * Cout, P, np,
		    1.0f, m->bpre[Lb], np, m->tact[a->trunk_depth], np, 0.0f,
		    m->out, P);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < Cout; c++) {
			float *o = m->out + ((size_t)b * Cout + c) * P;
			float bias = m->p.out_b[c];
			float sd = m->norm.out_std[c], mu = m->norm.out_mean[c];
			for (int i = 0; i < P; i++)
				o[i] = (o[i] + bias) * sd + mu;
		}
	m->last_B = B;
	return m->out;
}

enum pno_status pno_deeponet_backward(struct pno_deeponet *m,
				      const float *dout, int B)
{
	if (!m || !m->params || !dout)
		return pno__errorf(PNO_STATUS_INVALID,
				   "DeepONet backward: %s is NULL",
				   m && m->params ? "dout" : "model");
	if (B != m->last_B || B < 1)
		return pno__errorf(PNO_STATUS_INVALID,
				   "DeepONet backward: batch %d, the last "
				   "forward had %d", B, m->last_B);
	if (!trunk_current(m))
		return pno__errorf(PNO_STATUS_INVALID,
				   "DeepONet backward: trunk weights changed "
				   "since the last forward");
	const struct pno_deeponet_arch *a = &m->arch;
	int Lb = a->branch_depth, Lt = a->trunk_depth;
	int P = m->P, Cout = a->out_ch, np = a->p, BC = B * Cout;

	for (int b = 0; b < B; b++)
		for (int c = 0; c < Cout; c++) {
			size_t o = ((size_t)b * Cout + c) * P;
			float sd = m->norm.out_std[c];
			for (int i = 0; i < P; i++)
				m->dz[o + i] = dout[o + i] * sd;
		}
	cblas_sgemv(CblasRowMajor, CblasNoTrans, BC, P, 1.0f, m->dz, P,
		    m->ones, 1, 0.0f, m->rowsum, 1);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < Cout; c++)
			m->g.out_b[c] += m->rowsum[b * Cout + c];
	/* d beta (B*Cout, p) = dz T;  d T (P, p) = dz^T beta */
	const float *T = m->tact[Lt], *beta = m->bpre[Lb];
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BC, np, P, 1.0f,
		    m->dz, P, T, np, 0.0f, m->dbr[0], np);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, np, BC, 1.0f,
		    m->dz, P, beta, np, 0.0f, m->dtr[0], np);

	float *d = m->dtr[0], *dn = m->dtr[1];
	for (int l = Lt; l >= 0; l--) {
		int O = trunk_out(a, l), In = trunk_in(a, l);
		pno_gelu_backward_inplace(d, m->tpre[l], (size_t)P * O);
		dense_backward(l > 0 ? dn : NULL, m->g.trunk_w[l],
			       m->g.trunk_b[l], d,
			       l == 0 ? m->coords : m->tact[l - 1],
			       m->p.trunk_w[l], m->ones, P, In, O);
		float *t = d;
		d = dn, dn = t;
	}
	d = m->dbr[0], dn = m->dbr[1];
	for (int l = Lb; l >= 0; l--) {
		int O = branch_out(a, l), In = branch_in(a, l);
		if (l < Lb)
			pno_gelu_backward_inplace(d, m->bpre[l], (size_t)B * O);
		dense_backward(l > 0 ? dn : NULL, m->g.branch_w[l],
			       m->g.branch_b[l], d,
			       l == 0 ? m->ub : m->bact[l - 1],
			       m->p.branch_w[l], m->ones, B, In, O);
		float *t = d;
		d = dn, dn = t;
	}
	return PNO_STATUS_OK;
}

enum pno_status pno_deeponet_fit_normalization(struct pno_deeponet *m,
					       const struct pno_dataset *d,
					       int n_train)
{
	if (!m || !m->params || !d)
		return pno__errorf(PNO_STATUS_INVALID,
				   "DeepONet normalization: NULL argument");
	if (d->Cin != m->arch.in_ch || d->Cout != m->arch.out_ch ||
	    d->dims != m->arch.dims || d->X != m->X ||
	    (d->dims == 2 && d->Y != m->Y))
		return pno__errorf(PNO_STATUS_SHAPE,
				   "data %dD %d x %d, %d -> %d channels; model "
				   "%dD %d x %d, %d -> %d", d->dims, d->X, d->Y,
				   d->Cin, d->Cout, m->arch.dims, m->X, m->Y,
				   m->arch.in_ch, m->arch.out_ch);
	if (n_train < 1 || n_train > d->N)
		return pno__errorf(PNO_STATUS_INVALID,
				   "n_train = %d: must be in [1, %d]", n_train,
				   d->N);
	size_t P = (size_t)m->P;
	for (int io = 0; io < 2; io++) {
		int C = io ? d->Cout : d->Cin;
		const float *src = io ? d->out : d->in;
		for (int c = 0; c < C; c++) {
			double s = 0, s2 = 0, cnt = (double)n_train * P;
			for (int n = 0; n < n_train; n++) {
				const float *v = src + ((size_t)n * C + c) * P;
				for (size_t i = 0; i < P; i++)
					s += v[i];
			}
			double mean = s / cnt;
			for (int n = 0; n < n_train; n++) {
				const float *v = src + ((size_t)n * C + c) * P;
				for (size_t i = 0; i < P; i++)
					s2 += (v[i] - mean) * (v[i] - mean);
			}
			double sd = sqrt(s2 / cnt);
			if (!(sd > 1e-12) || !isfinite(sd))
				sd = 1.0;
			if (!isfinite(mean))
				return pno__errorf(PNO_STATUS_NONFINITE,
						   "%s channel %d: non-finite "
						   "mean", io ? "output" : "input",
						   c);
			(io ? m->norm.out_mean : m->norm.in_mean)[c] = (float)mean;
			(io ? m->norm.out_std : m->norm.in_std)[c] = (float)sd;
		}
	}
	return PNO_STATUS_OK;
}

/* ---- files ---- */

/* X(json key, field): the architecture's integer fields. */
#define PNO__DON_KEYS(X)                                                      \
	X("dims", dims)                                                       \
	X("in_channels", in_ch)                                               \
	X("out_channels", out_ch)                                             \
	X("sensors", sensors)                                                 \
	X("sensor_stride", sensor_stride)                                     \
	X("branch_width", branch_width)                                       \
	X("branch_depth", branch_depth)                                       \
	X("trunk_width", trunk_width)                                         \
	X("trunk_depth", trunk_depth)                                         \
	X("p", p)

char *pno_deeponet_arch_json(const struct pno_deeponet_arch *a)
{
	pno__json_setup();
	if (!a)
		return NULL;
	json_t *o = json_object();
	int bad = !o;
#define PNO__DON_SET(key, f)                                                  \
	bad = bad || json_object_set_new(o, key, json_integer(a->f)) != 0;
	PNO__DON_KEYS(PNO__DON_SET)
#undef PNO__DON_SET
	bad = bad || json_object_set_new(o, "activation",
					 json_string("gelu")) != 0;
	char *s = bad ? NULL : pno__json_text(o);
	json_decref(o);
	return s;
}

enum pno_status pno_deeponet_arch_parse(struct pno_deeponet_arch *a,
					const char *text)
{
	enum pno_status st;
	char msg[256];
	if (!a || !text)
		return pno__errorf(PNO_STATUS_INVALID,
				   "architecture parse: NULL argument");
	memset(a, 0, sizeof *a);
	json_t *o = pno__json_loads(text, &st, msg, sizeof msg);
	if (!o)
		return pno__errorf(st, "architecture JSON: %s", msg);
	const char *missing = NULL;
#define PNO__DON_GET(key, f)                                                  \
	if (!missing) {                                                       \
		json_t *v = json_object_get(o, key);                          \
		json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0; \
		if (!json_is_integer(v) || x < -1000000000 || x > 1000000000)  \
			missing = key;                                        \
		else                                                          \
			a->f = (int)x;                                        \
	}
	PNO__DON_KEYS(PNO__DON_GET)
#undef PNO__DON_GET
	json_t *act = json_object_get(o, "activation");
	int act_ok = !act || (json_is_string(act) &&
			      strcmp(json_string_value(act), "gelu") == 0);
	json_decref(o);
	if (missing)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "architecture: missing or non-integer \"%s\"",
				   missing);
	if (!act_ok)
		return pno__errorf(PNO_STATUS_UNSUPPORTED,
				   "architecture: activation must be \"gelu\"");
	return pno_deeponet_arch_check(a);
}

enum pno_status pno_deeponet_save(const struct pno_deeponet *m,
				  const char *path, const char *extra_json)
{
	if (!m || !m->params || !path)
		return pno__errorf(PNO_STATUS_INVALID,
				   "DeepONet save: NULL argument");
	int n = pno_deeponet_tensor_count(m);
	pno__json_init();
	char (*names)[48] = pno_calloc((size_t)n, sizeof *names);
	struct pno_tensor_view *views = pno_calloc((size_t)n, sizeof *views);
	const float *nv[4] = PNO__NORM_ARRAYS(&m->norm);
	struct pno__model_meta mm = {
		"deeponet", NULL, pno_deeponet_arch_json(&m->arch),
		pno__norm_text(nv, m->arch.in_ch, m->arch.out_ch), m->X, m->Y};
	for (int i = 0; names && views && i < n; i++) {
		size_t off;
		pno_deeponet_tensor_info(m, i, names[i], sizeof names[i],
					 &views[i].ndim, views[i].shape, &off,
					 NULL);
		views[i].name = names[i];
		views[i].data = m->params + off;
	}
	enum pno_status st =
		pno__model_write(path, names ? views : NULL, n, &mm, extra_json);
	pno_free(names);
	pno_free(views);
	return st;
}

/* Copy every tensor of st into m after checking name, shape, values. */
static enum pno_status load_tensors(struct pno_deeponet *m,
				    const struct pno_safetensors *st,
				    const char *path)
{
	enum pno_status s = PNO_STATUS_OK;
	int n = pno_deeponet_tensor_count(m);
	if (st->n != n)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: %d tensors, the architecture has %d",
				   path, st->n, n);
	for (int i = 0; i < n && s == PNO_STATUS_OK; i++) {
		char name[48];
		int ndim;
		int64_t shape[8];
		size_t off, count;
		pno_deeponet_tensor_info(m, i, name, sizeof name, &ndim, shape,
					 &off, &count);
		s = pno__model_take(m->params + off, st, path, "", name, ndim,
				    shape, count);
	}
	return s;
}

enum pno_status pno_deeponet_load(struct pno_deeponet *m, const char *path,
				  int Bmax)
{
	struct pno_safetensors st = {0};
	struct pno_deeponet_arch arch;
	struct pno_deeponet_norm norm;
	float *nv[4] = PNO__NORM_ARRAYS(&norm);
	json_t *md = NULL;
	enum pno_status s;
	const char *v;
	int X = 0, Y = 0;

	if (!m || !path)
		return pno__errorf(PNO_STATUS_INVALID,
				   "DeepONet load: NULL argument");
	memset(m, 0, sizeof *m);
	if ((s = pno__model_open(&st, &md, path, "deeponet")) ||
	    (s = pno__meta_require(&v, md, "architecture", path)))
		goto out;
	if ((s = pno_deeponet_arch_parse(&arch, v)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	memset(&norm, 0, sizeof norm);
	if ((s = pno__meta_require(&v, md, "normalization", path)) ||
	    (s = pno__norm_parse(nv, v, arch.in_ch, arch.out_ch, path)) ||
	    (s = pno__meta_grid(&X, &Y, md, path)))
		goto out;
	/* both sensors and stride are recorded: init checks they agree */
	if ((s = pno_deeponet_init(m, &arch, X, Y, Bmax, 0)) != PNO_STATUS_OK) {
		pno__error_prefix(s, "%s", path);
		goto out;
	}
	for (int c = arch.in_ch; c < PNO_DEEPONET_MAX_CH; c++)
		norm.in_std[c] = 1.0f;
	for (int c = arch.out_ch; c < PNO_DEEPONET_MAX_CH; c++)
		norm.out_std[c] = 1.0f;
	m->norm = norm;
	s = load_tensors(m, &st, path);
out:
	if (s != PNO_STATUS_OK)
		pno_deeponet_free(m);
	json_decref(md);
	pno_safetensors_free(&st);
	return s;
}
