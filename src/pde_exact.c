/* Generators with exact solutions in Fourier space: the periodic heat
 * equation (1D-3D) and the 2D periodic wave equation. Each frame is the
 * initial GRF with every mode multiplied by its exact evolution factor. */
#include "internal.h"
#include "pde_grf.h"
#include "pde_internal.h"

#include <math.h>
#include <string.h>

/* One exact generator run: a GRF evolved mode by mode to T frames. */
struct exact {
	const char *pde;
	int dims, res, frames;
	double dt_out;		/* frame k is at time k * dt_out */
	const struct pno_grf_opts *grf;
	uint64_t seed;
	double (*mult)(double lam, void *ud);
	double param;		/* kappa (heat) or c (wave) */
};

struct exact_ws {
	struct pno__grf grf;
	double *field;
};

struct mult_arg {
	double param, t;
};

static double heat_mult(double lam, void *ud)
{
	const struct mult_arg *m = ud;
	return exp(-m->param * lam * m->t);
}

static double wave_mult(double lam, void *ud)
{
	const struct mult_arg *m = ud;
	return cos(m->param * sqrt(lam) * m->t);
}

static enum pno_status exact_ws_new(void *ctx, void **out)
{
	const struct exact *e = ctx;
	enum pno_status st;
	struct exact_ws *w = pno_calloc(1, sizeof *w);
	if (!w)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", e->pde);
	if ((st = pno__grf_init(&w->grf, e->dims, e->res, e->res, e->res)) !=
	    PNO_STATUS_OK) {
		pno_free(w);
		return st;
	}
	if (!(w->field = pno_malloc(w->grf.npts * sizeof *w->field))) {
		pno__grf_free(&w->grf);
		pno_free(w);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", e->pde);
	}
	*out = w;
	return PNO_STATUS_OK;
}

static void exact_ws_free(void *ctx, void *ws)
{
	struct exact_ws *w = ws;
	(void)ctx;
	pno__grf_free(&w->grf);
	pno_free(w->field);
	pno_free(w);
}

static enum pno_status exact_sample(void *ctx, void *ws, uint64_t index,
				    float *const *out)
{
	const struct exact *e = ctx;
	struct exact_ws *w = ws;
	size_t P = w->grf.npts;
	pno__grf_draw(&w->grf, e->grf, e->seed, index);
	for (int k = 0; k < e->frames; k++) {
		struct mult_arg m = {e->param, k * e->dt_out};
		pno__grf_synth(&w->grf, k ? e->mult : NULL, &m, w->field);
		float *dst = out[0] + (size_t)k * P;
		for (size_t p = 0; p < P; p++)
			dst[p] = (float)w->field[p];
	}
	return PNO_STATUS_OK;
}

static enum pno_status check_grf(const char *pde, const struct pno_grf_opts *g)
{
	if (!(g->alpha > 0 && g->alpha < 1e3) || !(g->tau >= 0 && g->tau < 1e9) ||
	    !(g->sigma > 0 && g->sigma < 1e12))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: GRF parameters need --alpha in (0, 1000), "
				   "--tau in [0, 1e9), --sigma in (0, 1e12)", pde);
	return PNO_STATUS_OK;
}

/* Frames 0, dt_out, ..., t_final: t_final must be a whole number of
 * dt_out (relative 1e-9). */
static enum pno_status frame_count(const char *pde, double t_final,
				   double dt_out, int *frames)
{
	if (!(t_final > 0) || !isfinite(t_final))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --t-final must be > 0", pde);
	if (!(dt_out > 0) || !isfinite(dt_out))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --dt-out must be > 0", pde);
	double k = t_final / dt_out, kr = round(k);
	if (kr < 1 || fabs(k - kr) > 1e-9 * kr || kr > 100000)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --t-final %g must be a whole multiple "
				   "(1 to 100000) of --dt-out %g", pde, t_final,
				   dt_out);
	*frames = (int)kr + 1;
	return PNO_STATUS_OK;
}

static enum pno_status exact_run(struct exact *e, const struct pno_gen_base *b,
				 const char *solver, struct pno__gen *g,
				 const char *path, int overwrite)
{
	static const char *axes[3] = {"x-coordinate", "y-coordinate",
				      "z-coordinate"};
	enum pno_status st;
	g->pde = e->pde;
	g->base = b;
	g->n_out = 1;
	g->out[0].name = "tensor";
	g->out[0].ndim = 1 + e->dims;
	g->out[0].shape[0] = e->frames;
	for (int d = 0; d < e->dims; d++)
		g->out[0].shape[1 + d] = e->res;
	float *xc = pno__coords(e->res, 1.0 / e->res);
	float *tc = pno__coords(e->frames, e->dt_out);
	if (!xc || !tc) {
		pno_free(xc);
		pno_free(tc);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", e->pde);
	}
	g->fixed[g->n_fixed++] = (struct pno_h5_array){"t-coordinate", 1,
						       {e->frames}, tc};
	for (int d = 0; d < e->dims; d++)
		g->fixed[g->n_fixed++] = (struct pno_h5_array){axes[d], 1,
							       {e->res}, xc};
	pno__gen_attr_str(g, "solver", solver);
	pno__gen_attr_num(g, "dims", e->dims);
	pno__gen_attr_num(g, "dt_out", e->dt_out);
	pno__gen_attr_num(g, "t_final", e->dt_out * (e->frames - 1));
	pno__gen_attr_num(g, "grf_alpha", e->grf->alpha);
	pno__gen_attr_num(g, "grf_tau", e->grf->tau);
	pno__gen_attr_num(g, "grf_sigma", e->grf->sigma);
	pno__gen_attr_str(g, "grid", "periodic, points i/res");
	g->ctx = e;
	g->ws_new = exact_ws_new;
	g->ws_free = exact_ws_free;
	g->sample = exact_sample;
	st = pno__generate(g, path, overwrite);
	pno_free(xc);
	pno_free(tc);
	return st;
}

void pno_heat_opts_default(struct pno_heat_opts *o, int dims)
{
	memset(o, 0, sizeof *o);
	o->base.samples = 1000;
	o->base.res = dims == 1 ? 256 : dims == 2 ? 64 : 32;
	o->dims = dims;
	o->kappa = 0.01;
	o->t_final = 0.2;
	o->dt_out = 0.0;
	o->grf = (struct pno_grf_opts){2.0, 5.0, 25.0};
}

enum pno_status pno_generate_heat(const struct pno_heat_opts *o,
				  const char *path, int overwrite)
{
	static const int max_res[4] = {0, 1 << 20, 4096, 256};
	struct exact e = {0};
	struct pno__gen g = {0};
	enum pno_status st;
	if (o->dims < 1 || o->dims > 3)
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: --dim %d must be 1, 2 or 3", o->dims);
	if (o->base.res < 4 || o->base.res > max_res[o->dims])
		return pno__errorf(PNO_STATUS_INVALID,
				   "heat: --res %d must be in [4, %d] in %dD",
				   o->base.res, max_res[o->dims], o->dims);
	if (!(o->kappa > 0) || !isfinite(o->kappa))
		return pno__errorf(PNO_STATUS_INVALID, "heat: --kappa must be > 0");
	if ((st = check_grf("heat", &o->grf)) != PNO_STATUS_OK)
		return st;
	e.pde = o->dims == 1 ? "heat1d" : o->dims == 2 ? "heat2d" : "heat3d";
	e.dims = o->dims;
	e.res = o->base.res;
	e.grf = &o->grf;
	e.seed = o->base.seed;
	e.mult = heat_mult;
	e.param = o->kappa;
	if (o->dt_out == 0) {	/* two frames: 0 and t_final */
		if ((st = frame_count("heat", o->t_final, o->t_final,
				      &e.frames)) != PNO_STATUS_OK)
			return st;
		e.dt_out = o->t_final;
	} else {
		if ((st = frame_count("heat", o->t_final, o->dt_out,
				      &e.frames)) != PNO_STATUS_OK)
			return st;
		e.dt_out = o->dt_out;
	}
	pno__gen_attr_num(&g, "kappa", o->kappa);
	return exact_run(&e, &o->base,
			 "exact Fourier-space solution u_k(t) = u_k(0) "
			 "exp(-kappa 4 pi^2 |k|^2 t)", &g, path, overwrite);
}

void pno_wave_opts_default(struct pno_wave_opts *o)
{
	memset(o, 0, sizeof *o);
	o->base.samples = 1000;
	o->base.res = 64;
	o->c = 1.0;
	o->t_final = 2.0;
	o->dt_out = 0.1;
	o->grf = (struct pno_grf_opts){2.0, 5.0, 25.0};
}

enum pno_status pno_generate_wave(const struct pno_wave_opts *o,
				  const char *path, int overwrite)
{
	struct exact e = {0};
	struct pno__gen g = {0};
	enum pno_status st;
	if (o->base.res < 4 || o->base.res > 4096)
		return pno__errorf(PNO_STATUS_INVALID,
				   "wave: --res %d must be in [4, 4096]",
				   o->base.res);
	if (!(o->c > 0) || !isfinite(o->c))
		return pno__errorf(PNO_STATUS_INVALID, "wave: --c must be > 0");
	if ((st = check_grf("wave", &o->grf)) != PNO_STATUS_OK ||
	    (st = frame_count("wave", o->t_final, o->dt_out, &e.frames)) !=
		    PNO_STATUS_OK)
		return st;
	e.pde = "wave2d";
	e.dims = 2;
	e.res = o->base.res;
	e.dt_out = o->dt_out;
	e.grf = &o->grf;
	e.seed = o->base.seed;
	e.mult = wave_mult;
	e.param = o->c;
	pno__gen_attr_num(&g, "c", o->c);
	pno__gen_attr_str(&g, "initial_velocity", "zero");
	return exact_run(&e, &o->base,
			 "exact per Fourier mode: u_k(t) = u_k(0) cos(c 2 pi "
			 "|k| t)", &g, path, overwrite);
}
