/* Tracing wired into the server: the incoming traceparent (trace.h), the
 * server span of every request and the traceparent answered, and the
 * export of an inference's spans (request, queue_wait, batch, compute) as
 * OTLP/JSON to a collector (POST, retries) and/or a file of JSON lines.
 *
 * The request path copies its finished spans into a fixed ring (a full
 * ring drops them, counted); the exporter thread takes up to
 * trace_batch_spans at a time, when that many are waiting or
 * trace_flush_ms after the last export, encodes and sends them. */
#include "serve_internal.h"
#include "../internal.h"

#include <sodium.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct sv_exporter {
	struct sv_ops *o;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct trace_span *ring;	/* (cap) */
	int cap, head, count;
	struct trace_span *batch;	/* (nbatch) */
	int nbatch, flush_ms;
	_Atomic int stop;
	pthread_t th;
	int started;
	struct ob_url url;
	struct ob_client http;		/* used by the thread only */
	int has_url;
	FILE *file;
	char service[64];
	struct retry_policy policy;
	struct retry_budget budget;
	struct retry_rng rng;
};

/* ---- request path ---- */

void sv_ops_request_begin(struct req *r, const char *traceparent)
{
	struct trace_context in;
	int valid = traceparent &&
		    trace_parse(traceparent, strlen(traceparent), &in);
	r->tr.wall0_ns = sv_unix_ns();
	/* an invalid header is ignored: a new trace, sampled */
	r->tr.started = trace_span_start(&r->tr.root, "request",
					 TRACE_KIND_SERVER, NULL,
					 valid ? &in : NULL, TRACE_FLAG_SAMPLED,
					 r->tr.wall0_ns) == PNO_STATUS_OK;
}

int sv_ops_traceparent(const struct req *r, char out[TRACEPARENT_LEN + 1])
{
	if (!r->tr.started)
		return 0;
	trace_span_traceparent(&r->tr.root, out);
	return 1;
}

static int64_t wall(const struct req *r, double t)
{
	return r->tr.wall0_ns + (int64_t)((t - r->t_start) * 1e9);
}

/* a child of parent over [t0, t1] (monotonic seconds) */
static int child(struct trace_span *sp, const char *name,
		 const struct trace_span *parent, const struct req *r,
		 double t0, double t1)
{
	if (trace_span_start(sp, name, TRACE_KIND_INTERNAL, parent, NULL, 0,
			     wall(r, t0)) != PNO_STATUS_OK)
		return 0;
	trace_span_end(sp, wall(r, t1 > t0 ? t1 : t0), TRACE_STATUS_UNSET);
	return 1;
}

void sv_ops_request_end(struct req *r, int infer)
{
	struct sv_ops *o = r->srv->ops;
	struct sv_exporter *e = o ? o->exp : NULL;
	if (!e || !infer || !r->tr.started ||
	    !(r->tr.root.flags & TRACE_FLAG_SAMPLED))
		return;
	struct trace_span sp[4];
	int n = 1, status = r->status ? r->status : 499;
	double now = sv_now();
	sp[0] = r->tr.root;
	snprintf(sp[0].name, sizeof sp[0].name, "POST /v2/models/{model}/infer");
	trace_span_end(&sp[0], wall(r, now), status >= 500 ?
		       TRACE_STATUS_ERROR : TRACE_STATUS_UNSET);
	trace_span_attr_str(&sp[0], "http.request.method", "POST");
	trace_span_attr_str(&sp[0], "http.route", "/v2/models/{model}/infer");
	trace_span_attr_int(&sp[0], "http.response.status_code", status);
	trace_span_attr_str(&sp[0], "pno.model", r->model);
	trace_span_attr_str(&sp[0], "pno.version", r->version);
	trace_span_attr_int(&sp[0], "pno.request", (int64_t)r->rid);
	trace_span_attr_int(&sp[0], "pno.items", r->B);
	trace_span_attr_int(&sp[0], "pno.samples", r->S);
	if (r->t_enq > 0 && r->t_exec > 0) {
		n += child(&sp[n], "queue_wait", &sp[0], r, r->t_enq, r->t_exec);
		if (child(&sp[n], "batch", &sp[0], r, r->t_exec, r->t_done)) {
			trace_span_attr_int(&sp[n], "pno.batch_items",
					    r->batch_items);
			n++;
			if (r->t_run > 0 &&
			    child(&sp[n], "compute", &sp[n - 1], r, r->t_run,
				  r->t_done)) {
				trace_span_attr_int(&sp[n], "pno.items", r->B);
				if (status >= 500)
					sp[n].status = TRACE_STATUS_ERROR;
				n++;
			}
		}
	}
	pthread_mutex_lock(&e->mu);
	int room = e->cap - e->count;
	if (room >= n) {
		for (int i = 0; i < n; i++)
			e->ring[(e->head + e->count + i) % e->cap] = sp[i];
		e->count += n;
		if (e->count >= e->nbatch)
			pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
	if (room < n) {
		const char *l[1] = {"queue_full"};
		prom_inc(o->m_span_drop, l, n);
	}
}

/* ---- the exporter ---- */

static void export_batch(struct sv_exporter *e, int n)
{
	struct sv_ops *o = e->o;
	char *json = NULL;
	size_t len = 0;
	const char *failed[1] = {"failed"};
	if (trace_otlp_json(e->batch, n, e->service, &json, &len)) {
		prom_inc(o->m_span_drop, failed, n);
		return;
	}
	int ok = 1;
	if (e->file) {
		ok = fwrite(json, 1, len, e->file) == len &&
		     fputc('\n', e->file) != EOF && fflush(e->file) == 0;
		if (!ok)
			sv_log(o->srv, PNO_LOG_LEVEL_ERROR, "trace_file_failed",
			       ",\"file\":\"%s\",\"spans\":%d",
			       o->srv->opts.cfg.trace_file, n);
	}
	if (e->has_url) {
		int retries = 0;
		int sent = ob_deliver(&e->http, &e->url, json, len,
				      5000, &e->policy, &e->budget, &e->rng,
				      &e->mu, &e->cv, &e->stop, &retries);
		if (!sent)
			sv_log(o->srv, PNO_LOG_LEVEL_WARN, "trace_export_failed",
			       ",\"url\":\"%s\",\"spans\":%d,\"tries\":%d",
			       o->srv->opts.cfg.trace_otlp_url, n, retries + 1);
		ok = ok && sent;
	}
	prom_inc(ok ? o->m_span_exp : o->m_span_drop, ok ? NULL : failed, n);
	pno_free(json);
}

static void *exporter_main(void *arg)
{
	struct sv_exporter *e = arg;
	pthread_mutex_lock(&e->mu);
	for (;;) {
		int stop = atomic_load(&e->stop);
		if (!stop && e->count < e->nbatch) {
			/* wait for a full batch, or flush what is there */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			int64_t t = (int64_t)ts.tv_sec * 1000000000 +
				    ts.tv_nsec + (int64_t)e->flush_ms * 1000000;
			ts.tv_sec = (time_t)(t / 1000000000);
			ts.tv_nsec = (long)(t % 1000000000);
			int rc = 0;
			while (!atomic_load(&e->stop) &&
			       e->count < e->nbatch && rc != ETIMEDOUT)
				rc = pthread_cond_timedwait(&e->cv, &e->mu, &ts);
		}
		if (e->count == 0) {
			if (atomic_load(&e->stop))
				break;
			continue;
		}
		int n = e->count < e->nbatch ? e->count : e->nbatch;
		for (int i = 0; i < n; i++)
			e->batch[i] = e->ring[(e->head + i) % e->cap];
		e->head = (e->head + n) % e->cap;
		e->count -= n;
		pthread_mutex_unlock(&e->mu);
		export_batch(e, n);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

static void exporter_free(struct sv_exporter *e)
{
	if (!e)
		return;
	if (e->file)
		fclose(e->file);
	retry_budget_free(&e->budget);
	ob_client_free(&e->http);
	pno_free(e->ring);
	pno_free(e->batch);
	pno_free(e);
}

enum pno_status sv_export_start(struct sv_ops *o)
{
	const struct serve_config *c = &o->srv->opts.cfg;
	enum pno_status s;
	if (!c->trace_otlp_url[0] && !c->trace_file[0])
		return PNO_STATUS_OK;
	struct sv_exporter *e = pno_calloc(1, sizeof *e);
	if (!e)
		return pno__errorf(PNO_STATUS_NOMEM, "trace export: out of "
				   "memory");
	e->o = o;
	e->cap = c->trace_queue_spans;
	e->nbatch = c->trace_batch_spans < e->cap ? c->trace_batch_spans
						   : e->cap;
	e->flush_ms = c->trace_flush_ms;
	snprintf(e->service, sizeof e->service, "%s", c->trace_service_name);
	e->policy = retry_policy_default();
	e->rng.seed = (uint64_t)randombytes_random() << 32 |
		      randombytes_random();
	struct retry_budget_config bc = retry_budget_config_default();
	if ((s = retry_budget_init(&e->budget, &bc, ob_now_ns())))
		goto fail;
	if (c->trace_otlp_url[0]) {
		if ((s = ob_url_parse(c->trace_otlp_url, &e->url)) ||
		    (s = ob_client_init(&e->http, "application/json")))
			goto fail;
		e->has_url = 1;
	}
	if (c->trace_file[0] && !(e->file = fopen(c->trace_file, "a"))) {
		s = pno__errorf(PNO_STATUS_IO, "trace_file %s: %s",
				c->trace_file, strerror(errno));
		goto fail;
	}
	e->ring = pno_malloc((size_t)e->cap * sizeof *e->ring);
	e->batch = pno_malloc((size_t)e->nbatch * sizeof *e->batch);
	if (!e->ring || !e->batch) {
		s = pno__errorf(PNO_STATUS_NOMEM, "trace export: out of memory "
				"for %d spans", e->cap);
		goto fail;
	}
	pthread_mutex_init(&e->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&e->th, NULL, exporter_main, e)) {
		pthread_mutex_destroy(&e->mu);
		pthread_cond_destroy(&e->cv);
		s = pno__errorf(PNO_STATUS_INTERNAL, "trace export: cannot "
				"start a thread");
		goto fail;
	}
	e->started = 1;
	o->exp = e;
	return PNO_STATUS_OK;
fail:
	exporter_free(e);
	return s;
}

void sv_export_stop(struct sv_ops *o)
{
	struct sv_exporter *e = o->exp;
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	atomic_store(&e->stop, 1);
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->th, NULL);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	o->exp = NULL;
	exporter_free(e);
}
