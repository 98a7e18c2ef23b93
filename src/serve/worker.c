/* A loaded model version: its bounded queue and the worker thread that
 * owns the pno_model and runs dynamic batches. */
#include "serve_internal.h"

#include <microhttpd.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

double sv_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void deadline_ts(struct timespec *ts, double t)
{
	ts->tv_sec = (time_t)t;
	ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void labels(const struct mversion *mv, const char *lv[2])
{
	lv[0] = mv->name;
	lv[1] = mv->vstr;
}

/* A request's items are all computed (or failed with s): its status,
 * breaker record (its compute: from its first item's start, tr), metrics,
 * and its connection resumed so an HTTP thread writes the answer while
 * the worker goes on. The batch's metrics are recorded before the last
 * resume (a client that has its answer sees them). */
static void req_finish(struct mversion *mv, struct req *r, enum pno_status s,
		       double tr, double t0, int items, int last)
{
	struct server *srv = mv->srv;
	const char *lv[2];
	labels(mv, lv);
	sv_infer_done(mv, r, s);
	double t1 = sv_now();
	int overran = sv_deadline_overran(mv, r, t1);
	if (r->has_permit) {
		/* a model failure: a compute error or a non-finite output
		 * (500), or a deadline overrun; out of memory is not the
		 * model's */
		breaker_record_permit(&mv->brk, serve_clock_monotonic(NULL),
				      &r->permit, (int64_t)((t1 - tr) * 1e9),
				      r->status == 500 || overran);
		r->has_permit = 0;
		sv_breaker_export(mv);
	}
	r->batch_items = items;
	r->compute_s = t1 - t0;	/* the batch so far */
	r->t_done = t1;
	if (r->status == 200)
		prom_inc(srv->met.samples, lv, (double)r->S * r->B);
	if (last)
		prom_observe(srv->met.compute_dur, lv, t1 - t0);
	atomic_store(&r->ready, 1);
	MHD_resume_connection(r->conn);
}

/* Compute requests b[0..n): the inputs of consecutive requests with the
 * same samples and levels go through pno_model_predict_into together, up
 * to bcall inputs per call (what one forward takes, at most the
 * preallocated bcap; a larger request is cut into calls), each answer
 * written straight into its request's output buffer. Where inputs cannot
 * share a forward (bcall 1) the calls take one input each, so each
 * request is answered as soon as its own inputs are done.
 * A request is finished as soon as the call holding its last input
 * returns: live, req_finish (resumed, metrics); else only its status. */
static void compute(struct mversion *mv, struct req **b, int n, double t0,
		    int items, int live)
{
	const size_t nin = (size_t)mv->model.in_ch * mv->P;
	double tr[1024];
	enum pno_status st[1024];
	int np = 0, g0 = 0, done = 0;	/* pending inputs; first unfinished */
	for (int i = 0; i < n; i++)
		st[i] = PNO_STATUS_OK;
	for (int i = 0, j = 0; i <= n;) {
		struct req *r = i < n ? b[i] : NULL;
		if (np > 0 && (!r || np == mv->bcall ||
			       !sv_infer_compatible(b[g0], r))) {
			/* run the pending inputs (of requests g0..i) */
			const struct req *g = b[g0];
			enum pno_status s = PNO_STATUS_OK;
			if (g->S > mv->smax &&	/* max_samples raised */
			    (s = pno_model_predict_init(&mv->model, g->S)) ==
				    PNO_STATUS_OK)
				mv->smax = g->S;
			if (s == PNO_STATUS_OK)
				s = pno_model_predict_into(&mv->model, mv->bx, np,
							   g->S, mv->bseed, g->q,
							   g->nq, mv->bout);
			/* the call held inputs of requests g0 .. i (i only
			 * if some of its inputs were copied) */
			for (int k = g0; k < (j ? i + 1 : i) && s; k++)
				if (st[k] == PNO_STATUS_OK)
					st[k] = s;
			np = 0;
			/* requests before i have all their inputs done */
			for (; done < i; done++) {
				if (b[done]->rs.dropped)
					continue;	/* answered */
				if (live)
					req_finish(mv, b[done], st[done],
						   tr[done], t0, items,
						   done == n - 1);
				else
					sv_infer_done(mv, b[done], st[done]);
			}
			g0 = i;
		}
		if (!r)
			break;
		if (j == 0) {
			tr[i] = sv_now();
			if (live && sv_deadline_passed(r, tr[i])) {
				/* expired while earlier requests computed */
				sv_deadline_drop(mv, &b[i], 1);
				if (np == 0)
					g0 = i + 1;	/* the next call's */
				i++;
				continue;
			}
			r->t_run = tr[i];
		}
		memcpy(mv->bx + np * nin, r->x + j * nin, nin * sizeof(float));
		mv->bseed[np] = r->seed;
		sv_infer_outputs(r, j, &mv->bout[np]);
		np++;
		if (++j == r->B) {
			i++;
			j = 0;
		}
	}
}

static void run_batch(struct mversion *mv, struct req **b, int n, int items)
{
	struct server *srv = mv->srv;
	const char *lv[2];
	double t0 = sv_now();
	labels(mv, lv);
	for (int i = 0; i < n; i++) {
		b[i]->t_exec = t0;
		prom_observe(srv->met.queue_dur, lv, t0 - b[i]->t_enq);
	}
	prom_observe(srv->met.batch, lv, (double)items);
	compute(mv, b, n, t0, items, 1);
}

void sv_infer_run(struct mversion *mv, struct req *r)
{
	compute(mv, &r, 1, sv_now(), r->B, 0);
}

static void version_free(struct mversion *mv);

static void batch_free(struct mversion *mv)
{
	pno_free(mv->bx);
	pno_free(mv->bseed);
	pno_free(mv->bout);
	mv->bx = NULL, mv->bseed = NULL, mv->bout = NULL;
}

static void *worker_main(void *arg)
{
	struct mversion *mv = arg;
	struct req *batch[1024], *expired[64];
	const char *lv[2];
	labels(mv, lv);
	/* OpenMP's thread count is per thread: a new thread starts from
	 * OMP_NUM_THREADS, not from what the main thread set */
	pno_threads_set(mv->threads);
	pthread_mutex_lock(&mv->mu);
	for (;;) {
		while (mv->count == 0 && !mv->stop)
			pthread_cond_wait(&mv->cv, &mv->mu);
		if (mv->count == 0)
			break;
		int maxb = atomic_load(&mv->max_batch), n = 0, items = 0;
		int ne = 0;
		if (maxb > (int)(sizeof batch / sizeof batch[0]))
			maxb = (int)(sizeof batch / sizeof batch[0]);
		double deadline = sv_now() +
				  1e-6 * atomic_load(&mv->delay_us);
		for (;;) {
			if (mv->count > 0) {
				struct req *r = mv->ring[mv->head];
				if (ne < 64 && sv_deadline_passed(r, sv_now())) {
					/* past its deadline: not computed */
					mv->head = (mv->head + 1) % mv->cap;
					mv->count--;
					mv->items -= r->B;
					expired[ne++] = r;
					continue;
				}
				if (n > 0 && items + r->B > maxb)
					break;	/* it starts the next batch */
				mv->head = (mv->head + 1) % mv->cap;
				mv->count--;
				mv->items -= r->B;
				batch[n++] = r;
				items += r->B;
				if (items >= maxb || n == maxb)
					break;
				continue;
			}
			if (mv->stop || sv_now() >= deadline)
				break;
			struct timespec ts;
			deadline_ts(&ts, deadline);
			int rc = pthread_cond_timedwait(&mv->cv, &mv->mu, &ts);
			if (rc == ETIMEDOUT && mv->count == 0)
				break;
		}
		prom_set(mv->srv->met.queue_depth, lv, (double)mv->count);
		pthread_mutex_unlock(&mv->mu);
		sv_deadline_drop(mv, expired, ne);
		if (n > 0)
			run_batch(mv, batch, n, items);
		pthread_mutex_lock(&mv->mu);
	}
	pthread_mutex_unlock(&mv->mu);
	struct server *srv = mv->srv;
	version_free(mv);
	pthread_mutex_lock(&srv->workers_mu);
	srv->workers--;
	pthread_cond_broadcast(&srv->workers_cv);
	pthread_mutex_unlock(&srv->workers_mu);
	return NULL;
}

int sv_version_enqueue(struct mversion *mv, struct req *r)
{
	const char *lv[2];
	labels(mv, lv);
	pthread_mutex_lock(&mv->mu);
	/* max_queue_size counts inputs; a batch larger than it may still
	 * wait alone in an empty queue */
	if (mv->count >= mv->cap || mv->stop ||
	    (mv->count > 0 && mv->items + r->B > mv->cap)) {
		pthread_mutex_unlock(&mv->mu);
		return -1;
	}
	r->t_enq = sv_now();
	mv->ring[(mv->head + mv->count) % mv->cap] = r;
	mv->count++;
	mv->items += r->B;
	prom_set(mv->srv->met.queue_depth, lv, (double)mv->count);
	pthread_cond_signal(&mv->cv);
	pthread_mutex_unlock(&mv->mu);
	return 0;
}

size_t sv_item_floats(const struct mversion *mv, int S, int nq)
{
	size_t f = (size_t)mv->C * mv->P;
	return f * (size_t)(2 + nq + (mv->model.has_variance ? 2 : 0) + S);
}

size_t sv_item_offset(const struct mversion *mv, int S, int nq, enum sv_out o,
		      int k)
{
	size_t f = (size_t)mv->C * mv->P;
	size_t var = mv->model.has_variance ? 2 : 0;
	(void)S;
	switch (o) {
	case SV_OUT_MEAN: return 0;
	case SV_OUT_STD: return f;
	case SV_OUT_QUANTILES: return f * (2 + (size_t)k);
	case SV_OUT_ALEATORIC: return f * (2 + (size_t)nq);
	case SV_OUT_EPISTEMIC: return f * (3 + (size_t)nq);
	default: return f * (2 + (size_t)nq + var);
	}
}

enum pno_status sv_version_open(struct mversion **out, struct server *srv,
				const struct serve_config *cfg,
				const char *name, long version,
				const char *path)
{
	struct mversion *mv = pno_calloc(1, sizeof *mv);
	struct stat sb;
	enum pno_status s;
	*out = NULL;
	if (!mv)
		return PNO_STATUS_NOMEM;
	atomic_init(&mv->refs, 1);
	mv->srv = srv;
	snprintf(mv->name, sizeof mv->name, "%s", name);
	mv->version = version;
	snprintf(mv->vstr, sizeof mv->vstr, "%ld", version);
	snprintf(mv->path, sizeof mv->path, "%s", path);
	if (stat(path, &sb) == 0) {
		mv->dev = sb.st_dev;
		mv->ino = sb.st_ino;
		mv->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 +
			       sb.st_mtim.tv_nsec;
		mv->size = (int64_t)sb.st_size;
	}
	/* Samples per forward: the workspace holds this many copies of the
	 * activations, so aim at ~64k grid points per forward (GEMMs stay
	 * large, a 64x64 model does not hold 32 copies), at most 32 and
	 * max_samples. The grid is known after a load: load with 1 first.
	 * The answers do not depend on it (predict.h). */
	int queue_cap = cfg->max_queue_size;
	double t0 = sv_now();
	if ((s = pno_model_load(&mv->model, path, 0, 0, 1))) {
		pno_free(mv);
		return s;
	}
	long pts = (long)mv->model.X * mv->model.Y;
	int bmax = (int)(65536 / (pts > 0 ? pts : 1));
	bmax = bmax < 1 ? 1 : bmax > 32 ? 32 : bmax;
	if (bmax > cfg->max_samples)
		bmax = cfg->max_samples;
	if (bmax > 1) {
		pno_model_free(&mv->model);
		if ((s = pno_model_load(&mv->model, path, 0, 0, bmax))) {
			pno_free(mv);
			return s;
		}
	}
	mv->load_s = sv_now() - t0;
	mv->threads = cfg->compute_threads;
	mv->C = mv->model.out_ch;
	mv->P = mv->model.X * mv->model.Y;
	/* every buffer a batch needs, now: max_samples samples per input
	 * in the library's workspace, max_batch inputs per call here */
	mv->smax = cfg->max_samples;
	mv->bcap = cfg->max_batch > 0 ? cfg->max_batch : 1;
	size_t nin = (size_t)mv->model.in_ch * mv->P;
	mv->bcall = pno_model_predict_batch(&mv->model);
	mv->bcall = mv->bcall < mv->bcap ? mv->bcall : mv->bcap;
	if ((s = pno_model_predict_init(&mv->model, mv->smax)) ||
	    !(mv->bx = pno_malloc((size_t)mv->bcap * nin * sizeof(float))) ||
	    !(mv->bseed = pno_malloc((size_t)mv->bcap * sizeof *mv->bseed)) ||
	    !(mv->bout = pno_malloc((size_t)mv->bcap * sizeof *mv->bout))) {
		batch_free(mv);
		pno_model_free(&mv->model);
		pno_free(mv);
		return s ? s : PNO_STATUS_NOMEM;
	}
	mv->cap = queue_cap;
	struct breaker_config bc = breaker_config_default();
	bc.window_size = cfg->breaker_window;
	bc.min_calls = cfg->breaker_min_calls;
	bc.failure_rate = cfg->breaker_failure_rate;
	bc.slow_rate = cfg->breaker_slow_rate;
	bc.slow_call_ns = (int64_t)cfg->breaker_slow_call_ms * 1000000;
	bc.wait_open_ns = (int64_t)cfg->breaker_wait_ms * 1000000;
	bc.half_open_calls = cfg->breaker_probes;
	if ((s = breaker_init(&mv->brk, &bc, serve_clock_monotonic(NULL)))) {
		batch_free(mv);
		pno_model_free(&mv->model);
		pno_free(mv);
		return s;
	}
	atomic_init(&mv->max_batch, cfg->max_batch);
	atomic_init(&mv->delay_us, cfg->max_queue_delay_us);
	mv->ring = pno_calloc((size_t)queue_cap, sizeof *mv->ring);
	if (!mv->ring) {
		breaker_free(&mv->brk);
		batch_free(mv);
		pno_model_free(&mv->model);
		pno_free(mv);
		return PNO_STATUS_NOMEM;
	}
	pthread_mutex_init(&mv->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mv->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_t ta;
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&srv->workers_mu);
	srv->workers++;
	pthread_mutex_unlock(&srv->workers_mu);
	mv->th_started = 1;
	if (pthread_create(&mv->th, &ta, worker_main, mv) != 0) {
		pthread_attr_destroy(&ta);
		pthread_mutex_lock(&srv->workers_mu);
		srv->workers--;
		pthread_mutex_unlock(&srv->workers_mu);
		version_free(mv);
		return PNO_STATUS_NOMEM;
	}
	pthread_attr_destroy(&ta);
	sv_breaker_export(mv);
	if ((s = sv_guard_open(mv, cfg))) {
		sv_version_release(mv);	/* the worker frees it */
		return s;
	}
	*out = mv;
	return PNO_STATUS_OK;
}

void sv_version_ref(struct mversion *mv)
{
	atomic_fetch_add(&mv->refs, 1);
}

static void version_free(struct mversion *mv)
{
	pthread_mutex_destroy(&mv->mu);
	pthread_cond_destroy(&mv->cv);
	breaker_free(&mv->brk);
	sv_guard_free(mv);
	batch_free(mv);
	pno_model_free(&mv->model);
	pno_free(mv->ring);
	pno_free(mv);
}

void sv_breaker_export(struct mversion *mv)
{
	const char *lv[2];
	labels(mv, lv);
	prom_set(mv->srv->met.breaker_state, lv,
		 (double)breaker_state_get(&mv->brk));
}

/* The last release may come from an HTTP thread inside libmicrohttpd's
 * completion callback: it must not wait for the worker (which may still be
 * returning from MHD_resume_connection). So it only tells the worker to
 * stop; the worker (detached) frees the version and counts itself out. */
void sv_version_release(struct mversion *mv)
{
	if (!mv || atomic_fetch_sub(&mv->refs, 1) != 1)
		return;
	if (!mv->th_started) {
		version_free(mv);
		return;
	}
	pthread_mutex_lock(&mv->mu);
	mv->stop = 1;
	pthread_cond_broadcast(&mv->cv);
	pthread_mutex_unlock(&mv->mu);
}

void sv_workers_wait(struct server *srv)
{
	pthread_mutex_lock(&srv->workers_mu);
	while (srv->workers > 0)
		pthread_cond_wait(&srv->workers_cv, &srv->workers_mu);
	pthread_mutex_unlock(&srv->workers_mu);
}
