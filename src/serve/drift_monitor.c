/* Drift in the request path: each accepted input goes into its version's
 * sliding window (drift.h's monitor, sized at load); every drift_every
 * inputs the window is evaluated, the gauges set, and a change of level
 * (ok / warn / critical) logged and audited. */
#include "serve_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void evaluate(struct mversion *mv)
{
	struct vguard *g = mv->guard;
	struct server *srv = mv->srv;
	struct drift_report rep;
	/* another thread is at it: its result will do */
	if (pthread_mutex_trylock(&g->eval_mu))
		return;
	drift_evaluate(&g->mon, &rep, g->ch, 1);
	if (!rep.ready) {
		pthread_mutex_unlock(&g->eval_mu);
		return;
	}
	const char *lv[2] = {mv->name, mv->vstr};
	prom_set(srv->met.rm.psi, lv, rep.psi_max);
	prom_set(srv->met.rm.ks, lv, rep.ks_max);
	prom_set(srv->met.rm.drift_level, lv, (double)rep.level);
	sv_ops_drift_report(srv, mv->name, mv->vstr, rep.psi_max);
	double shift = g->ch[rep.worst].mean_shift;
	int old = atomic_exchange(&g->level, (int)rep.level);
	pthread_mutex_unlock(&g->eval_mu);
	if (old == (int)rep.level)
		return;
	sv_log(srv, rep.level > (enum drift_level)old ? PNO_LOG_LEVEL_WARN :
	       PNO_LOG_LEVEL_INFO, "drift_level",
	       ",\"model\":\"%s\",\"version\":\"%s\",\"from\":\"%s\","
	       "\"to\":\"%s\",\"psi\":%.4f,\"ks\":%.4f,\"channel\":%d,"
	       "\"mean_shift_std\":%.3f,\"inputs\":%d,\"observed\":%" PRId64,
	       mv->name, mv->vstr, drift_level_name((enum drift_level)old),
	       drift_level_name(rep.level), rep.psi_max, rep.ks_max, rep.worst,
	       shift, rep.inputs, rep.observed);
	char det[256];
	snprintf(det, sizeof det, "model %s version %s: input drift %s -> %s "
		 "(PSI %.4f, KS %.4f, channel %d, window %d inputs)", mv->name,
		 mv->vstr, drift_level_name((enum drift_level)old),
		 drift_level_name(rep.level), rep.psi_max, rep.ks_max, rep.worst,
		 rep.inputs);
	sv_audit_event(srv, AUDIT_EVENT_DRIFT, "pno", 200, det);
}

void sv_drift_observe(struct req *r)
{
	struct mversion *mv = r->mv;
	struct vguard *g = mv->guard;
	if (!g || !g->has_drift)
		return;
	size_t nin = (size_t)mv->model.in_ch * mv->P;
	int due = 0;
	for (int b = 0; b < r->B; b++) {
		if (drift_observe(&g->mon, r->x + b * nin) != PNO_STATUS_OK)
			continue;
		int64_t k = atomic_fetch_add(&g->nobs, 1) + 1;
		due |= k % g->every == 0;
	}
	const char *lv[2] = {mv->name, mv->vstr};
	prom_inc(mv->srv->met.rm.drift_inputs, lv, (double)r->B);
	if (due)
		evaluate(mv);
}

/* the version's monitor from its "drift_reference" metadata; a version
 * without one (or with one that does not fit) is served unmonitored */
enum pno_status sv_drift_open(struct mversion *mv,
			      const struct serve_config *cfg)
{
	struct vguard *g = mv->guard;
	const struct pno_model *m = &mv->model;
	const char *j = pno_model_meta(m, "drift_reference");
	char why[300] = "";
	enum pno_status s;
	if (cfg->drift_window <= 0)
		return PNO_STATUS_OK;
	if (!j) {
		sv_log(mv->srv, PNO_LOG_LEVEL_INFO, "drift_off",
		       ",\"model\":\"%s\",\"version\":\"%s\",\"reason\":\"no "
		       "drift_reference in the model's metadata\"", mv->name,
		       mv->vstr);
		return PNO_STATUS_OK;
	}
	if ((s = drift_ref_from_json(&g->ref, j))) {
		if (s == PNO_STATUS_NOMEM)
			return s;
		snprintf(why, sizeof why, "drift_reference: %s",
			 pno_last_error());
	} else if (g->ref.C != m->in_ch || g->ref.dims != m->dims ||
		   g->ref.X != m->X || (m->dims == 2 && g->ref.Y != m->Y)) {
		snprintf(why, sizeof why, "drift_reference is for %d channels "
			 "on %dx%d, the model takes %d on %dx%d", g->ref.C,
			 g->ref.X, g->ref.Y, m->in_ch, m->X, m->Y);
	}
	if (why[0]) {
		char esc[700];
		sv_json_escape(esc, sizeof esc, why);
		sv_log(mv->srv, PNO_LOG_LEVEL_WARN, "drift_off",
		       ",\"model\":\"%s\",\"version\":\"%s\",\"reason\":\"%s\"",
		       mv->name, mv->vstr, esc);
		drift_ref_free(&g->ref);
		return PNO_STATUS_OK;
	}
	struct drift_config dc = drift_config_default();
	dc.window = cfg->drift_window;
	dc.points = cfg->drift_points;
	dc.psi_warn = cfg->drift_psi_warn;
	dc.psi_crit = cfg->drift_psi_crit;
	dc.seed = 0x64726966ULL ^ (uint64_t)mv->version;	/* "drif" */
	if ((s = drift_monitor_init(&g->mon, &g->ref, &dc)))
		return s;
	if (!(g->ch = pno_calloc((size_t)g->ref.C, sizeof *g->ch)))
		return PNO_STATUS_NOMEM;
	g->every = cfg->drift_every;
	g->has_drift = 1;
	sv_log(mv->srv, PNO_LOG_LEVEL_INFO, "drift_on",
	       ",\"model\":\"%s\",\"version\":\"%s\",\"window\":%d,"
	       "\"points\":%d,\"every\":%d,\"psi_warn\":%g,\"psi_crit\":%g",
	       mv->name, mv->vstr, dc.window, g->mon.P, g->every, dc.psi_warn,
	       dc.psi_crit);
	return PNO_STATUS_OK;
}
