/*
 * Request-path resilience of the server (docs/serve/resilience.md):
 *
 *   deadline.c        a per-request deadline (config default, the
 *                     Request-Timeout-Ms header or parameters.timeout_ms);
 *                     queued work past it is dropped by the worker and
 *                     answered 504, a compute that overran it is a model
 *                     failure for the breaker
 *   degrade.c         num_samples cut to a floor past a queue high-water
 *                     mark; a request for the default version whose
 *                     breaker is open goes to a lower version
 *   drift_monitor.c   every accepted input feeds its version's drift
 *                     window; PSI/KS gauges and level changes logged and
 *                     audited
 *   rollback.c        count-based windows of each version's outcomes;
 *                     a default version bad for N windows in a row is
 *                     replaced by the previous one through a state swap
 *   resil.c           the per-version guard, metrics, completion hook
 *
 * Everything here is sized when a version loads and adds no allocation
 * per request (a fallback parses the body again; a rollback, on the main
 * thread, builds a new state).
 */
#ifndef PNO_SERVE_RESIL_H
#define PNO_SERVE_RESIL_H

#include "drift.h"
#include "prom.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct req;
struct mversion;
struct server;
struct serve_state;
struct serve_config;
struct smodel;

#define SV_VSTR 24

/* what a request carries (inside struct req) */
struct req_resil {
	double deadline;		/* monotonic seconds; 0: none */
	int timeout_ms;			/* the deadline's, 0 none */
	int param_timeout_ms;		/* parameters.timeout_ms; 0 none */
	int asked_default;		/* no version in the URL */
	int S_asked;			/* num_samples before a cut */
	unsigned degraded;		/* bits RESIL_DEG_* */
	char from_version[SV_VSTR];	/* fallback: the version asked */
	struct mversion *target;	/* the version routing chose (held
					 * by the request's state) */
	int model_failed;		/* counts against target: its breaker
					 * rejected it, or its compute
					 * overran the deadline */
	int dropped;			/* 504 before compute */
};
#define RESIL_DEG_SAMPLES 1u
#define RESIL_DEG_FALLBACK 2u

/* Per version (mversion->guard). */
struct vguard {
	/* drift */
	int has_drift;
	struct drift_ref ref;
	struct drift_monitor mon;
	struct drift_channel *ch;	/* (C) for evaluate */
	pthread_mutex_t eval_mu;	/* one evaluation at a time */
	int every;
	_Atomic int64_t nobs;
	_Atomic int level;		/* enum drift_level, last evaluated */
	/* rollback windows */
	pthread_mutex_t rb_mu;
	int win_n, win_fail, bad_windows;
	int flagged;			/* a rollback was asked for */
};

/* metric families (inside struct sv_metrics) */
struct resil_metrics {
	struct prom_family *deadline, *degraded, *psi, *ks, *drift_level,
		*drift_inputs, *rollbacks;
};

/* rolled-back versions (persist across reloads) and pending requests */
#define RESIL_ROLLED_MAX 64
struct rollback_ctl {
	pthread_mutex_t mu;
	int n;
	struct {
		char model[128];
		char vstr[SV_VSTR];
	} rolled[RESIL_ROLLED_MAX];
	int npend;
	struct {
		char model[128];
		char vstr[SV_VSTR];
		char why[256];
	} pend[8];
};

/* resil.c */
enum pno_status sv_resil_metrics_init(struct resil_metrics *m,
				      struct prom_registry *reg);
/* the version's guard (drift reference from its metadata, if any) */
enum pno_status sv_guard_open(struct mversion *mv,
			      const struct serve_config *cfg);
void sv_guard_free(struct mversion *mv);
void sv_resil_init(struct server *srv);
void sv_resil_free(struct server *srv);
/* the request's answer is done: its outcome for its target's windows */
void sv_resil_complete(struct req *r);
/* extra members of the response's "parameters" (",..." or "") */
void sv_resil_params(const struct req *r, char *out, size_t size);

/* deadline.c */
/* after parsing: the deadline from the config, Request-Timeout-Ms and
 * parameters.timeout_ms (the smaller of the two given); 0 or 400 with
 * r->err set */
int sv_deadline_start(struct req *r, const struct serve_config *cfg);
/* 1 when r has a deadline and now is past it */
int sv_deadline_passed(const struct req *r, double now);
/* answer requests dropped before compute: 504, permit released */
void sv_deadline_drop(struct mversion *mv, struct req **rs, int n);
/* after compute at t: an overrun turns the answer into 504 and returns 1
 * (a model failure for the breaker) */
int sv_deadline_overran(struct mversion *mv, struct req *r, double t);

/* degrade.c */
/* breaker rejected r: try a lower version (fallback "lower", default
 * version asked); admit() takes that version's permit (0 admitted). 0 if
 * r now targets a fallback (parsed, admitted), -1 otherwise (r as
 * before) */
int sv_fallback(struct req *r, int (*admit)(struct req *));
/* 1 when the version's queue holds max_queue_size inputs already: no
 * request of any size would be queued (sv_version_enqueue's rule) */
int sv_queue_full(struct mversion *mv);
/* the queue past its high-water mark: num_samples cut to the floor */
void sv_degrade(struct req *r);

/* drift_monitor.c */
/* the version's monitor from its "drift_reference" metadata (none: the
 * version is served unmonitored, said in the log); NOMEM */
enum pno_status sv_drift_open(struct mversion *mv,
			      const struct serve_config *cfg);
/* r's inputs into its version's window; evaluates every drift_every */
void sv_drift_observe(struct req *r);

/* rollback.c */
/* one counted outcome of version mv (cfg: the request's state's) */
void sv_rollback_outcome(struct mversion *mv, const struct serve_config *cfg,
			 int failed);
/* main thread: carry out the rollbacks asked for (self-pipe 'R') */
void sv_rollback_run(struct server *srv);
/* index of the default version of m: the highest not rolled back */
int sv_rollback_default(struct server *srv, const struct smodel *m);
/* an explicit load of the model clears its rolled-back versions */
void sv_rollback_forget(struct server *srv, const char *model);

#endif
