/* Graceful degradation: fewer samples past the queue's high-water mark,
 * and a lower version when the default's breaker is open. Both say so in
 * the answer (sv_resil_params). */
#include "serve_internal.h"

#include <stdio.h>
#include <string.h>

int sv_fallback(struct req *r, int (*admit)(struct req *))
{
	const struct serve_config *cfg = &r->st->cfg;
	struct mversion *mv0 = r->mv;
	int ra0 = r->retry_after;
	r->rs.model_failed = 1;	/* its breaker refused it */
	/* a request naming its version wants that one */
	if (strcmp(cfg->fallback, "lower") || !r->rs.asked_default)
		return -1;
	const struct smodel *sm = sv_state_model(r->st, mv0->name);
	for (int j = sm ? sm->nv - 1 : -1; j >= 0; j--) {
		struct mversion *c = sm->v[j];
		if (c->version >= mv0->version)
			continue;
		/* its shapes and outputs may differ: validate again */
		r->mv = c;
		if (sv_infer_parse(r, cfg) || sv_deadline_start(r, cfg))
			continue;
		r->retry_after = 0;
		if (admit(r))
			continue;
		r->rs.degraded |= RESIL_DEG_FALLBACK;
		snprintf(r->rs.from_version, sizeof r->rs.from_version, "%s",
			 mv0->vstr);
		snprintf(r->version, sizeof r->version, "%s", c->vstr);
		const char *lv[3] = {mv0->name, mv0->vstr, "fallback"};
		prom_inc(r->srv->met.rm.degraded, lv, 1);
		return 0;
	}
	r->mv = mv0;
	r->retry_after = ra0;
	return -1;
}

void sv_degrade(struct req *r)
{
	const struct serve_config *cfg = &r->st->cfg;
	struct mversion *mv = r->mv;
	double hw = cfg->degrade_queue_high_water;
	if (hw <= 0 || r->S <= cfg->degrade_min_samples)
		return;
	double lim = hw < 1 ? hw * mv->cap : hw;
	pthread_mutex_lock(&mv->mu);
	long items = mv->items;
	pthread_mutex_unlock(&mv->mu);
	if ((double)items < lim)
		return;
	/* fewer samples fit the buffers sized for more */
	r->rs.S_asked = r->S;
	r->S = cfg->degrade_min_samples;
	r->rs.degraded |= RESIL_DEG_SAMPLES;
	const char *lv[3] = {mv->name, mv->vstr, "samples"};
	prom_inc(r->srv->met.rm.degraded, lv, 1);
}

int sv_queue_full(struct mversion *mv)
{
	pthread_mutex_lock(&mv->mu);
	int full = mv->count >= mv->cap || mv->items >= mv->cap;
	pthread_mutex_unlock(&mv->mu);
	return full;
}
