/* The generator driver: samples in parallel, streamed into an atomic HDF5
 * file as they finish, with progress and cancellation. */
#include "internal.h"
#include "pde_internal.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void pno__gen_attr_str(struct pno__gen *g, const char *name, const char *v)
{
	if (g->n_attrs < PNO__GEN_MAX_ATTRS)
		g->attrs[g->n_attrs++] = (struct pno_h5_attr){name, v, 0.0};
}

void pno__gen_attr_num(struct pno__gen *g, const char *name, double v)
{
	if (g->n_attrs < PNO__GEN_MAX_ATTRS)
		g->attrs[g->n_attrs++] = (struct pno_h5_attr){name, NULL, v};
}

float *pno__coords(int n, double step)
{
	float *c = pno_malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
	if (c)
		for (int i = 0; i < n; i++)
			c[i] = (float)(i * step);
	return c;
}

long pno__steps_per_interval(double dt_out, double dt_max)
{
	/* the tolerance keeps dt_out = 10 * dt_max at 10 steps, not 11 */
	double k = ceil(dt_out / dt_max * (1.0 - 1e-12));
	return k < 1 ? 1 : (long)k;
}

/* Shared state of one run; `stop` and the error are written under the
 * 'gen' critical section. */
struct run {
	const struct pno__gen *g;
	struct pno_h5_stream *out;
	long done;
	int stop;
	enum pno_status st;
	char msg[512];
};

/* Record the first failure (message copied: pno_last_error is per
 * thread), naming the sample if it is one's (sample >= 0). */
static void run_fail(struct run *r, enum pno_status st, long sample)
{
	if (r->stop)
		return;
	r->stop = 1;
	r->st = st;
	if (sample >= 0)
		snprintf(r->msg, sizeof r->msg, "%s (sample %ld)",
			 pno_last_error(), sample);
	else
		snprintf(r->msg, sizeof r->msg, "%s", pno_last_error());
}

/* The run the calling thread works for (NULL outside a run). */
static _Thread_local struct run *tl_run;

int pno__gen_cancelled(void)
{
	struct run *r = tl_run;
	int stop;
	if (!r)
		return 0;
#pragma omp atomic read
	stop = r->stop;
	const volatile int *c = r->g->base->cancel;
	return stop || (c && *c);
}

enum pno_status pno__gen_cancel_status(const char *pde)
{
	return pno__errorf(PNO_STATUS_CANCELLED, "%s: cancelled", pde);
}

static void run_samples(struct run *r, const size_t *elems, int threads)
{
	const struct pno__gen *g = r->g;
	long N = g->base->samples;
#pragma omp parallel num_threads(threads)
	{
		void *ws = NULL;
		float *buf[PNO__GEN_MAX_OUT] = {0};
		enum pno_status wst = PNO_STATUS_OK;
		tl_run = r;
		if (g->ws_new)
			wst = g->ws_new(g->ctx, &ws);
		for (int k = 0; k < g->n_out && wst == PNO_STATUS_OK; k++)
			if (!(buf[k] = pno_malloc(elems[k] * sizeof(float))))
				wst = pno__errorf(PNO_STATUS_NOMEM,
						  "%s: out of memory for a "
						  "worker's sample buffer",
						  g->pde);
		if (wst != PNO_STATUS_OK) {
#pragma omp critical(gen)
			run_fail(r, wst, -1);
		}
		int ok = wst == PNO_STATUS_OK;
#pragma omp for schedule(dynamic, 1)
		for (long n = 0; n < N; n++) {
			int stop;
#pragma omp atomic read
			stop = r->stop;
			if (stop || !ok)
				continue;
			enum pno_status st = g->sample(g->ctx, ws, (uint64_t)n, buf);
			const volatile int *c = g->base->cancel;
			if (st == PNO_STATUS_OK && c && *c)
				st = PNO_STATUS_CANCELLED;
#pragma omp critical(gen)
			{
				if (st == PNO_STATUS_CANCELLED && !r->stop) {
					/* the user's flag (a failure elsewhere
					 * already stopped the run otherwise) */
					pno__errorf(st, "%s: cancelled after %ld "
						    "of %ld samples", g->pde,
						    r->done, N);
					run_fail(r, st, -1);
				} else if (st != PNO_STATUS_OK) {
					run_fail(r, st, n);
				}
				for (int k = 0; k < g->n_out && st == PNO_STATUS_OK &&
						!r->stop; k++)
					st = pno_h5_stream_put(r->out, k, n, buf[k]);
				if (st != PNO_STATUS_OK) {
					run_fail(r, st, -1);
				} else if (!r->stop) {
					r->done++;
					if (g->base->progress &&
					    g->base->progress(g->base->progress_ud,
							      r->done, N)) {
						pno__errorf(PNO_STATUS_CANCELLED,
							    "%s: cancelled after %ld of "
							    "%ld samples", g->pde,
							    r->done, N);
						run_fail(r, PNO_STATUS_CANCELLED, -1);
					}
				}
			}
		}
		for (int k = 0; k < g->n_out; k++)
			pno_free(buf[k]);
		if (ws && g->ws_free)
			g->ws_free(g->ctx, ws);
		tl_run = NULL;
	}
}

/* Threads for a run: each holds one sample's output in float (and a
 * solver workspace of similar size), so their number is bounded by half
 * the physical memory; one sample that alone exceeds it is refused. */
static enum pno_status plan_threads(const struct pno__gen *g,
				    size_t per_sample, int *threads)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	double mem = pages > 0 && psize > 0 ? (double)pages * psize : 0;
	/* output floats, plus at least as much again for the solver */
	double need = 2.0 * 4.0 * (double)per_sample;
	int t = omp_get_max_threads();
	if (mem > 0 && need > 0.5 * mem)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: one sample needs about %.1f GB, more than "
				   "half of this machine's %.1f GB: lower --res, "
				   "--t-final or raise --dt-out", g->pde,
				   need / 1e9, mem / 1e9);
	if (mem > 0 && need * t > 0.5 * mem) {
		int fit = (int)(0.5 * mem / need);
		PNO_LOG(PNO_LOG_LEVEL_WARN,
			"%s: %.1f GB per sample: using %d of %d threads to stay "
			"within memory", g->pde, need / 1e9, fit, t);
		t = fit;
	}
	*threads = t < 1 ? 1 : t;
	return PNO_STATUS_OK;
}

enum pno_status pno__generate(const struct pno__gen *g, const char *path,
			      int overwrite)
{
	const struct pno_gen_base *b = g->base;
	struct pno_h5_array arrays[PNO__GEN_MAX_OUT + PNO__GEN_MAX_FIXED];
	struct pno_h5_attr attrs[PNO__GEN_MAX_ATTRS + 5];
	size_t elems[PNO__GEN_MAX_OUT], per_sample = 0, total;
	enum pno_status st;
	int na = 0, nt = 0;

	if (b->samples < 1 || b->samples > 10000000)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: --samples %d must be in [1, 10000000]",
				   g->pde, b->samples);
	if (g->n_out < 1 || g->n_out > PNO__GEN_MAX_OUT ||
	    g->n_fixed < 0 || g->n_fixed > PNO__GEN_MAX_FIXED || !g->sample)
		return pno__errorf(PNO_STATUS_INTERNAL, "%s: bad generator",
				   g->pde);
	for (int k = 0; k < g->n_out; k++) {
		const struct pno__gen_out *o = &g->out[k];
		if (o->ndim < 1 || o->ndim > PNO_MAX_DIMS - 1)
			return pno__errorf(PNO_STATUS_INTERNAL,
					   "%s: bad output rank", g->pde);
		elems[k] = 1;
		for (int d = 0; d < o->ndim; d++)
			if (o->shape[d] < 1 ||
			    pno__mul_overflow(elems[k], (size_t)o->shape[d],
					      &elems[k]))
				return pno__errorf(PNO_STATUS_INVALID,
						   "%s: output too large", g->pde);
		per_sample += elems[k];
		struct pno_h5_array *a = &arrays[na++];
		memset(a, 0, sizeof *a);
		a->name = o->name;
		a->ndim = o->ndim + 1;
		a->shape[0] = b->samples;
		memcpy(a->shape + 1, o->shape, (size_t)o->ndim * sizeof *o->shape);
	}
	/* 2^40 floats (4 TiB uncompressed) is beyond any sensible run and
	 * far below overflow */
	if (pno__mul_overflow(per_sample, (size_t)b->samples, &total) ||
	    total > ((size_t)1 << 40))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: %d samples of %zu values are too large",
				   g->pde, b->samples, per_sample);
	for (int k = 0; k < g->n_fixed; k++)
		arrays[na++] = g->fixed[k];

	attrs[nt++] = (struct pno_h5_attr){"pde", g->pde, 0};
	attrs[nt++] = (struct pno_h5_attr){"pno_version", PNO_VERSION_STRING, 0};
	/* the seed as decimal text: a double would round seeds above 2^53 */
	char seed[24];
	snprintf(seed, sizeof seed, "%llu", (unsigned long long)b->seed);
	attrs[nt++] = (struct pno_h5_attr){"seed", seed, 0};
	attrs[nt++] = (struct pno_h5_attr){"samples", NULL, (double)b->samples};
	attrs[nt++] = (struct pno_h5_attr){"resolution", NULL, (double)b->res};
	for (int i = 0; i < g->n_attrs; i++)
		attrs[nt++] = g->attrs[i];

	int threads = 1;
	if ((st = plan_threads(g, per_sample, &threads)) != PNO_STATUS_OK)
		return st;
	struct run r = {.g = g, .st = PNO_STATUS_OK};
	if ((st = pno_h5_stream_open(&r.out, path, arrays, na, overwrite)) !=
	    PNO_STATUS_OK)
		return st;
	run_samples(&r, elems, threads);
	if (r.stop) {
		pno_h5_stream_abort(r.out);
		return pno__errorf(r.st, "%s", r.msg);
	}
	return pno_h5_stream_commit(r.out, attrs, nt);
}
