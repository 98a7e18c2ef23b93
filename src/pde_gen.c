/* The generator driver: samples in parallel, streamed into an atomic HDF5
 * file as they finish, with progress and cancellation. */
#include "internal.h"
#include "pde_internal.h"

#include "pno/dist.h"

#include <limits.h>
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

/* Shared state of one run over samples [lo, hi); `stop` and the error
 * are written under the 'gen' critical section. Finished samples go to
 * the stream `out` (one process), or are packed into `chunk` at
 * (n - lo) * per_sample (a round of a run over several processes). */
struct run {
	const struct pno__gen *g;
	struct pno_h5_stream *out;
	float *chunk;
	const size_t *off;	/* per output: offset in a packed sample */
	size_t per_sample;
	long lo, hi;
	long done, done0;	/* samples finished here; before this round */
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
	if (r->hi - r->lo < threads)
		threads = (int)(r->hi - r->lo > 1 ? r->hi - r->lo : 1);
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
		for (long n = r->lo; n < r->hi; n++) {
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
						    r->done0 + r->done, N);
					run_fail(r, st, -1);
				} else if (st != PNO_STATUS_OK) {
					run_fail(r, st, n);
				}
				for (int k = 0; k < g->n_out && st == PNO_STATUS_OK &&
						!r->stop; k++)
					if (r->chunk)
						memcpy(r->chunk + (size_t)(n - r->lo) *
							       r->per_sample + r->off[k],
						       buf[k], elems[k] * sizeof(float));
					else
						st = pno_h5_stream_put(r->out, k, n,
								       buf[k]);
				if (st != PNO_STATUS_OK) {
					run_fail(r, st, -1);
				} else if (r->chunk) {
					if (!r->stop)
						r->done++;
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

/* ---- one run over several processes (pno/dist.h) ----
 * Rank q computes the contiguous samples [N q / P, N (q + 1) / P) in
 * rounds of at most C samples. After each round every rank learns
 * whether any rank failed (pno_dist_agree: all stop together with the
 * first failing rank's status and message), then rank 0 gathers the
 * round's samples and writes them in index order to the one file it
 * alone opened. Sample n depends only on (seed, n), so the file holds
 * the same values for any P. Every rank calls pno__generate (the
 * generators are collective once pno_dist_init has joined several
 * ranks). Rank 0 holds at most GEN_GATHER_BYTES of samples at a time;
 * about GEN_ROUNDS rounds (fewer when a round must give each thread a
 * sample) move the progress bar and bound how long a rank computes
 * after another has failed. */
#define GEN_GATHER_BYTES ((size_t)256 << 20)

#define GEN_ROUNDS 8

static long rank_lo(long N, int P, int q)
{
	return (long)((int64_t)N * q / P);
}

/* Samples of rank q in round j. */
static void round_range(long N, int P, int q, long C, long j, long *a,
			long *z)
{
	long hi = rank_lo(N, P, q + 1);
	*a = rank_lo(N, P, q) + j * C;
	if (*a > hi)
		*a = hi;
	*z = *a + C < hi ? *a + C : hi;
}

/* Samples of all ranks in round j. */
static long round_total(long N, int P, long C, long j)
{
	long t = 0;
	for (int q = 0; q < P; q++) {
		long a, z;
		round_range(N, P, q, C, j, &a, &z);
		t += z - a;
	}
	return t;
}

/* Round j's samples of every rank to rank 0's `all`, rank after rank
 * (counts: P entries, used on rank 0). */
static enum pno_status gather_round(float *all, size_t *counts,
				    const float *chunk, long C, long j,
				    const struct run *r)
{
	long N = r->g->base->samples;
	int P = pno_dist_size();
	size_t row = r->per_sample * sizeof(float);
	for (int q = 0; q < P; q++) {
		long a, z;
		round_range(N, P, q, C, j, &a, &z);
		counts[q] = (size_t)(z - a) * row;
	}
	return pno_dist_gatherv(all, counts, chunk,
				(size_t)(r->hi - r->lo) * row, 0);
}

/* Rank 0: write the gathered round (rank after rank, in index order) and
 * report progress. */
static enum pno_status round_write(struct run *r, const float *all,
				   long C, long j, long *done)
{
	const struct pno__gen *g = r->g;
	long N = g->base->samples;
	int P = pno_dist_size();
	const float *src = all;
	enum pno_status st = PNO_STATUS_OK;
	for (int q = 0; q < P; q++) {
		long a, z;
		round_range(N, P, q, C, j, &a, &z);
		for (long n = a; n < z; n++, src += r->per_sample)
			for (int k = 0; k < g->n_out; k++)
				if ((st = pno_h5_stream_put(r->out, k, n,
							    src + r->off[k])) !=
				    PNO_STATUS_OK)
					return st;
		*done += z - a;
	}
	if (g->base->progress &&
	    g->base->progress(g->base->progress_ud, *done, N))
		return pno__errorf(PNO_STATUS_CANCELLED, "%s: cancelled after "
				   "%ld of %ld samples", g->pde, *done, N);
	return PNO_STATUS_OK;
}

static enum pno_status generate_dist(const struct pno__gen *g,
				     const char *path, int overwrite,
				     const struct pno_h5_array *arrays, int na,
				     const struct pno_h5_attr *attrs, int nt,
				     const size_t *elems, size_t per_sample,
				     int threads, enum pno_status st)
{
	long N = g->base->samples;
	int P = pno_dist_size(), me = pno_dist_rank();
	size_t off[PNO__GEN_MAX_OUT];
	char msg[512] = "";
	float *chunk = NULL, *all = NULL;
	size_t *counts = NULL;
	struct run r = {.g = g, .off = off, .per_sample = per_sample};

	for (int k = 0; k < g->n_out; k++)
		off[k] = k ? off[k - 1] + elems[k - 1] : 0;
	long span = (N + P - 1) / P, C = (span + GEN_ROUNDS - 1) / GEN_ROUNDS;
	size_t cap = GEN_GATHER_BYTES / ((size_t)P * per_sample * sizeof(float));
	if (C < threads)
		C = threads;
	if ((size_t)C > cap)
		C = cap ? (long)cap : 1;
	if (C > span)
		C = span;
	/* MPI's int counts and displacements bound what rank 0 receives */
	if (st == PNO_STATUS_OK &&
	    (size_t)P * (size_t)C * per_sample > INT_MAX / sizeof(float))
		st = pno__errorf(PNO_STATUS_INVALID, "%s: one sample of %zu "
				 "values is too large to gather from %d "
				 "processes", g->pde, per_sample, P);
	if (st == PNO_STATUS_OK && me == 0)
		st = pno_h5_stream_open(&r.out, path, arrays, na, overwrite);
	if (st == PNO_STATUS_OK &&
	    (!(chunk = pno_malloc((size_t)C * per_sample * sizeof *chunk)) ||
	     !(counts = pno_malloc((size_t)P * sizeof *counts)) ||
	     (me == 0 && !(all = pno_malloc((size_t)P * C * per_sample *
					    sizeof *all)))))
		st = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory for %ld "
				 "samples of %zu values", g->pde,
				 me == 0 ? (long)P * C : C, per_sample);
	if (st != PNO_STATUS_OK)
		snprintf(msg, sizeof msg, "%s", pno_last_error());
	/* `agreed` is the same on every rank, so all leave the loop in the
	 * same round; st may differ (rank 0's writes) until the next agree */
	enum pno_status agreed = st = pno_dist_agree(st, msg);
	r.chunk = chunk;
	long done = 0;
	for (long j = 0; agreed == PNO_STATUS_OK && j * C < span; j++) {
		const volatile int *c = g->base->cancel;
		round_range(N, P, me, C, j, &r.lo, &r.hi);
		r.done0 = done;
		r.done = 0;
		/* st is not OK here only on rank 0 after a failed write: it
		 * computes nothing and tells the others below */
		if (st == PNO_STATUS_OK && c && *c) {
			st = pno__errorf(PNO_STATUS_CANCELLED, "%s: cancelled "
					 "after %ld of %ld samples", g->pde,
					 done, N);
			snprintf(msg, sizeof msg, "%s", pno_last_error());
		} else if (st == PNO_STATUS_OK && r.lo < r.hi) {
			run_samples(&r, elems, threads);
			if (r.stop) {
				st = r.st;
				snprintf(msg, sizeof msg, "%s", r.msg);
			}
		}
		/* a rank done first sleeps rather than busy-polls */
		pno_dist_barrier_idle(1e-3);
		agreed = st = pno_dist_agree(st, msg);
		if (agreed != PNO_STATUS_OK)
			break;
		st = gather_round(all, counts, chunk, C, j, &r);
		if (st == PNO_STATUS_OK && me == 0)
			st = round_write(&r, all, C, j, &done);
		else	/* the others only count */
			done += round_total(N, P, C, j);
		if (st != PNO_STATUS_OK)
			snprintf(msg, sizeof msg, "%s", pno_last_error());
	}
	/* rank 0's last writes, or its commit, may still fail (agreed is
	 * the same everywhere: all ranks agree once more, or none) */
	if (agreed == PNO_STATUS_OK) {
		if (st == PNO_STATUS_OK && me == 0) {
			st = pno_h5_stream_commit(r.out, attrs, nt);
			r.out = NULL;
			if (st != PNO_STATUS_OK)
				snprintf(msg, sizeof msg, "%s", pno_last_error());
		}
		agreed = pno_dist_agree(st, msg);
	}
	if (agreed != PNO_STATUS_OK)	/* the first failing rank's message */
		snprintf(msg, sizeof msg, "%s", pno_last_error());
	pno_h5_stream_abort(r.out);
	pno_free(chunk);
	pno_free(all);
	pno_free(counts);
	if (agreed != PNO_STATUS_OK)
		return pno__errorf(agreed, "%s", msg);
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
	st = plan_threads(g, per_sample, &threads);
	if (pno_dist_size() > 1)	/* every rank calls; they agree on st */
		return generate_dist(g, path, overwrite, arrays, na, attrs, nt,
				     elems, per_sample, threads, st);
	if (st != PNO_STATUS_OK)
		return st;
	struct run r = {.g = g, .st = PNO_STATUS_OK, .lo = 0, .hi = b->samples};
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
