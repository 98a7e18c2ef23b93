/* Automatic rollback: each version's counted outcomes in windows of
 * rollback_window requests; a window is bad when its model-failure rate
 * is over rollback_error_rate or the drift level is at rollback_drift.
 * After rollback_windows bad windows in a row the version asks the main
 * thread (self-pipe 'R') to make the previous version the default: a new
 * serving state sharing every loaded version, swapped in as a reload
 * does, so requests in flight finish on the state they hold. */
#include "serve_internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int drift_threshold(const struct serve_config *cfg)
{
	return !strcmp(cfg->rollback_drift, "warn") ? DRIFT_WARN :
	       !strcmp(cfg->rollback_drift, "critical") ? DRIFT_CRITICAL : 0;
}

static void ask(struct server *srv, const struct mversion *mv,
		const char *why)
{
	struct rollback_ctl *c = &srv->rb;
	pthread_mutex_lock(&c->mu);
	int n = c->npend;
	if (n < (int)(sizeof c->pend / sizeof c->pend[0])) {
		snprintf(c->pend[n].model, sizeof c->pend[n].model, "%s",
			 mv->name);
		snprintf(c->pend[n].vstr, sizeof c->pend[n].vstr, "%s",
			 mv->vstr);
		snprintf(c->pend[n].why, sizeof c->pend[n].why, "%s", why);
		c->npend++;
	}
	pthread_mutex_unlock(&c->mu);
	if (srv->self_pipe[1] >= 0 && write(srv->self_pipe[1], "R", 1) < 0) {
		/* full pipe: a wake-up is already pending */
	}
}

void sv_rollback_outcome(struct mversion *mv, const struct serve_config *cfg,
			 int failed)
{
	struct vguard *g = mv->guard;
	int dt = drift_threshold(cfg);
	if (!g || (cfg->rollback_error_rate <= 0 && !dt))
		return;
	char why[256];
	int go = 0;
	pthread_mutex_lock(&g->rb_mu);
	g->win_n++;
	g->win_fail += !!failed;
	if (g->win_n >= cfg->rollback_window) {
		double rate = (double)g->win_fail / g->win_n;
		int lvl = atomic_load(&g->level);
		int bad_err = cfg->rollback_error_rate > 0 &&
			      rate > cfg->rollback_error_rate;
		int bad_drift = dt && lvl >= dt;
		g->bad_windows = bad_err || bad_drift ? g->bad_windows + 1 : 0;
		if (g->bad_windows >= cfg->rollback_windows && !g->flagged) {
			g->flagged = 1;
			go = 1;
			snprintf(why, sizeof why, "%d consecutive bad windows of "
				 "%d requests; last: model failures %.1f%% "
				 "(threshold %.1f%%), drift %s", g->bad_windows,
				 g->win_n, 100 * rate,
				 100 * cfg->rollback_error_rate,
				 drift_level_name((enum drift_level)lvl));
		}
		g->win_n = g->win_fail = 0;
	}
	pthread_mutex_unlock(&g->rb_mu);
	if (go)
		ask(mv->srv, mv, why);
}

static int rolled_locked(const struct rollback_ctl *c, const char *model,
			 const char *vstr)
{
	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->rolled[i].model, model) &&
		    !strcmp(c->rolled[i].vstr, vstr))
			return 1;
	return 0;
}

int sv_rollback_default(struct server *srv, const struct smodel *m)
{
	struct rollback_ctl *c = &srv->rb;
	int def = m->nv > 0 ? m->nv - 1 : 0;
	pthread_mutex_lock(&c->mu);
	for (int j = m->nv - 1; j >= 0; j--)
		if (!rolled_locked(c, m->name, m->v[j]->vstr)) {
			def = j;
			break;
		}
	pthread_mutex_unlock(&c->mu);
	return def;
}

static void unroll(struct rollback_ctl *c, const char *model, const char *vstr)
{
	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < c->n;) {
		if (!strcmp(c->rolled[i].model, model) &&
		    (!vstr || !strcmp(c->rolled[i].vstr, vstr))) {
			memmove(&c->rolled[i], &c->rolled[i + 1],
				sizeof c->rolled[0] * (size_t)(c->n - i - 1));
			c->n--;
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&c->mu);
}

/* a version may ask again (its windows start afresh) */
static void rearm(struct mversion *mv)
{
	struct vguard *g = mv->guard;
	if (!g)
		return;
	pthread_mutex_lock(&g->rb_mu);
	g->flagged = 0;
	g->bad_windows = g->win_n = g->win_fail = 0;
	pthread_mutex_unlock(&g->rb_mu);
}

void sv_rollback_forget(struct server *srv, const char *model)
{
	unroll(&srv->rb, model, NULL);
	struct serve_state *st = sv_state_get(srv);
	const struct smodel *sm = sv_state_model(st, model);
	for (int j = 0; sm && j < sm->nv; j++)
		rearm(sm->v[j]);
	sv_state_release(st);
}

/* old with model mi's default moved to def; NULL when out of memory */
static struct serve_state *copy_state(const struct serve_state *old, int mi,
				      int def)
{
	struct serve_state *st = pno_calloc(1, sizeof *st);
	if (!st)
		return NULL;
	atomic_init(&st->refs, 1);
	st->cfg = old->cfg;
	if (!(st->m = pno_calloc((size_t)(old->nm ? old->nm : 1),
				 sizeof *st->m)))
		goto fail;
	for (int i = 0; i < old->nm; i++) {
		const struct smodel *a = &old->m[i];
		struct smodel *b = &st->m[i];
		snprintf(b->name, sizeof b->name, "%s", a->name);
		b->def = i == mi ? def : a->def;
		st->nm = i + 1;
		if (!a->nv)
			continue;
		if (!(b->v = pno_calloc((size_t)a->nv, sizeof *b->v)))
			goto fail;
		for (int j = 0; j < a->nv; j++) {
			sv_version_ref(a->v[j]);
			b->v[b->nv++] = a->v[j];
		}
	}
	if (old->nrefused) {
		st->refused = pno_calloc((size_t)old->nrefused,
					 sizeof *st->refused);
		if (!st->refused)
			goto fail;
		memcpy(st->refused, old->refused,
		       sizeof *st->refused * (size_t)old->nrefused);
		st->nrefused = old->nrefused;
	}
	return st;
fail:
	sv_state_release(st);
	return NULL;
}

static void roll_one(struct server *srv, const char *model, const char *vstr,
		     const char *why)
{
	struct serve_state *old = sv_state_get(srv);
	const struct smodel *sm = sv_state_model(old, model);
	struct mversion *cur = sv_state_version(old, model, "");
	char det[600], esc[600];
	sv_json_escape(esc, sizeof esc, why);
	if (!cur || strcmp(cur->vstr, vstr)) {
		sv_log(srv, PNO_LOG_LEVEL_INFO, "rollback_skipped",
		       ",\"model\":\"%s\",\"version\":\"%s\",\"reason\":\"not "
		       "the default version any more\"", model, vstr);
		struct mversion *mv = sv_state_version(old, model, vstr);
		if (mv)
			rearm(mv);
		sv_state_release(old);
		return;
	}
	struct rollback_ctl *c = &srv->rb;
	pthread_mutex_lock(&c->mu);
	if (c->n == RESIL_ROLLED_MAX) {	/* forget the oldest */
		memmove(&c->rolled[0], &c->rolled[1],
			sizeof c->rolled[0] * (size_t)(c->n - 1));
		c->n--;
	}
	snprintf(c->rolled[c->n].model, sizeof c->rolled[c->n].model, "%s",
		 model);
	snprintf(c->rolled[c->n].vstr, sizeof c->rolled[c->n].vstr, "%s",
		 vstr);
	c->n++;
	pthread_mutex_unlock(&c->mu);
	int def = sv_rollback_default(srv, sm);
	struct serve_state *st = NULL;
	if (sm->v[def] == cur || sm->v[def]->version > cur->version) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "rollback_impossible",
		       ",\"model\":\"%s\",\"version\":\"%s\",\"reason\":\"%s\","
		       "\"message\":\"no earlier version to make the default; "
		       "it stays\"", model, vstr, esc);
		snprintf(det, sizeof det, "model %s: version %s should be rolled "
			 "back (%s) but no earlier version is loaded", model,
			 vstr, why);
		sv_audit_event(srv, AUDIT_EVENT_ROLLBACK, "pno", 409, det);
		unroll(c, model, vstr);
		sv_state_release(old);
		return;
	}
	if (!(st = copy_state(old, (int)(sm - old->m), def))) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "rollback_failed",
		       ",\"model\":\"%s\",\"version\":\"%s\",\"reason\":\"out "
		       "of memory\"", model, vstr);
		unroll(c, model, vstr);
		rearm(cur);
		sv_state_release(old);
		return;
	}
	const char *to = sm->v[def]->vstr;
	pthread_mutex_lock(&srv->state_mu);
	struct serve_state *prev = srv->state;
	srv->state = st;
	pthread_mutex_unlock(&srv->state_mu);
	const char *lv[1] = {model};
	prom_inc(srv->met.rm.rollbacks, lv, 1);
	sv_log(srv, PNO_LOG_LEVEL_WARN, "rollback",
	       ",\"model\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"reason\":"
	       "\"%s\"", model, vstr, to, esc);
	snprintf(det, sizeof det, "model %s: default version %s -> %s: %s",
		 model, vstr, to, why);
	sv_audit_event(srv, AUDIT_EVENT_ROLLBACK, "pno", 200, det);
	sv_state_release(prev);
	sv_state_release(old);
}

void sv_rollback_run(struct server *srv)
{
	struct rollback_ctl *c = &srv->rb;
	for (;;) {
		char model[128], vstr[SV_VSTR], why[256];
		pthread_mutex_lock(&c->mu);
		if (!c->npend) {
			pthread_mutex_unlock(&c->mu);
			return;
		}
		snprintf(model, sizeof model, "%s", c->pend[0].model);
		snprintf(vstr, sizeof vstr, "%s", c->pend[0].vstr);
		snprintf(why, sizeof why, "%s", c->pend[0].why);
		memmove(&c->pend[0], &c->pend[1],
			sizeof c->pend[0] * (size_t)(c->npend - 1));
		c->npend--;
		pthread_mutex_unlock(&c->mu);
		/* serialized with reloads: both replace the state */
		pthread_mutex_lock(&srv->reload_mu);
		roll_one(srv, model, vstr, why);
		pthread_mutex_unlock(&srv->reload_mu);
	}
}
