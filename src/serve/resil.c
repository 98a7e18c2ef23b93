/* The per-version guard, the metrics of the request-path resilience, the
 * completion hook that counts a request's outcome, and what an answer
 * says about degradation. */
#include "serve_internal.h"

#include <stdio.h>
#include <string.h>

enum pno_status sv_resil_metrics_init(struct resil_metrics *m,
				      struct prom_registry *reg)
{
	static const char *mv[] = {"model", "version", NULL};
	static const char *mvs[] = {"model", "version", "stage", NULL};
	static const char *mvk[] = {"model", "version", "kind", NULL};
	static const char *mo[] = {"model", NULL};
	enum pno_status s;
#define REG(f, t, n, h, l)                                                    \
	if ((s = prom_register(reg, &m->f, t, n, h, l, NULL, 0, 0)))          \
		return s;
	REG(deadline, PROM_COUNTER, "pno_deadline_exceeded_total",
	    "Requests answered 504 past their deadline, by stage: arrival, "
	    "queue (dropped, not computed), compute (a model failure).", mvs)
	REG(degraded, PROM_COUNTER, "pno_degraded_total",
	    "Requests served degraded: kind samples (num_samples cut at the "
	    "queue high-water mark) or fallback (a lower version answered).",
	    mvk)
	REG(psi, PROM_GAUGE, "pno_drift_psi",
	    "Population stability index of the live input window against "
	    "the training reference (worst channel).", mv)
	REG(ks, PROM_GAUGE, "pno_drift_ks",
	    "Two-sample Kolmogorov-Smirnov distance of the live input window "
	    "against the training reference (worst channel).", mv)
	REG(drift_level, PROM_GAUGE, "pno_drift_level",
	    "Input drift level: 0 ok, 1 warn, 2 critical.", mv)
	REG(drift_inputs, PROM_COUNTER, "pno_drift_inputs_total",
	    "Inputs fed to the drift monitor.", mv)
	REG(rollbacks, PROM_COUNTER, "pno_rollbacks_total",
	    "Automatic rollbacks of a model's default version.", mo)
#undef REG
	return PNO_STATUS_OK;
}

enum pno_status sv_guard_open(struct mversion *mv,
			      const struct serve_config *cfg)
{
	struct vguard *g = pno_calloc(1, sizeof *g);
	if (!g)
		return PNO_STATUS_NOMEM;
	pthread_mutex_init(&g->eval_mu, NULL);
	pthread_mutex_init(&g->rb_mu, NULL);
	atomic_init(&g->nobs, 0);
	atomic_init(&g->level, DRIFT_OK);
	mv->guard = g;
	return sv_drift_open(mv, cfg);
}

void sv_guard_free(struct mversion *mv)
{
	struct vguard *g = mv->guard;
	if (!g)
		return;
	drift_monitor_free(&g->mon);
	drift_ref_free(&g->ref);
	pno_free(g->ch);
	pthread_mutex_destroy(&g->eval_mu);
	pthread_mutex_destroy(&g->rb_mu);
	pno_free(g);
	mv->guard = NULL;
}

void sv_resil_init(struct server *srv)
{
	memset(&srv->rb, 0, sizeof srv->rb);
	pthread_mutex_init(&srv->rb.mu, NULL);
}

void sv_resil_free(struct server *srv)
{
	pthread_mutex_destroy(&srv->rb.mu);
}

/* What counts against a version: a compute error or non-finite output
 * (500 from its worker), a refusal by its open breaker, a compute past
 * the deadline. A 200 counts as a success. Everything else (bad input,
 * a full queue, a deadline that passed in the queue, a client that left)
 * says nothing about the model. */
void sv_resil_complete(struct req *r)
{
	struct mversion *t = r->rs.target;
	int failed;
	if (!t || !r->st)
		return;
	if (r->rs.model_failed)
		failed = 1;
	else if (r->status == 500 && r->mv == t && r->queued)
		failed = 1;
	else if (r->status == 200)
		failed = 0;
	else
		return;
	sv_rollback_outcome(t, &r->st->cfg, failed);
}

void sv_resil_params(const struct req *r, char *out, size_t size)
{
	size_t k = 0;
	out[0] = 0;
	if (!r->rs.degraded)
		return;
	k += (size_t)snprintf(out + k, size - k, ",\"degraded\":true");
	if (r->rs.degraded & RESIL_DEG_SAMPLES && k < size)
		k += (size_t)snprintf(out + k, size - k, ",\"num_samples_used\":"
				      "%d,\"num_samples_requested\":%d", r->S,
				      r->rs.S_asked);
	if (r->rs.degraded & RESIL_DEG_FALLBACK && k < size)
		snprintf(out + k, size - k, ",\"fallback_from_version\":\"%s\"",
			 r->rs.from_version);
}
