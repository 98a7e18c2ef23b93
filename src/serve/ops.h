/*
 * Operations of pno serve (docs/serve/operations.md): the monitor thread
 * that runs health checks on a schedule, samples the process's resources,
 * sheds load above the memory limit and evaluates alert rules; and the
 * export of request spans as OTLP/JSON.
 *
 *   monitor.c      the thread, latency/error windows, resources, load
 *                  shedding, alert values and notifications
 *   health.c       the checks, readiness, GET /v2/health/details, the
 *                  drift hook
 *   alert.c        rules and the alert state machine (alert.h)
 *   otlp_export.c  traceparent in and out, spans, the exporter thread
 *   outbound.c     HTTP POST with retries (outbound.h)
 *
 * The request path only calls the sv_ops_request_* hooks, which take a
 * short mutex at most and allocate nothing; everything else runs on the
 * monitor and exporter threads.
 */
#ifndef PNO_SERVE_OPS_H
#define PNO_SERVE_OPS_H

#include "alert.h"
#include "config.h"
#include "outbound.h"
#include "prom.h"
#include "trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct req;

/* a request's trace: its server span, started on arrival */
struct sv_req_trace {
	struct trace_span root;
	int started;			/* root is valid */
	int64_t wall0_ns;		/* unix ns at t_start */
};

#define SV_LAT_RING 4096		/* latencies kept for p99 / p50 */
#define SV_HIST 2048			/* counter snapshots, one per tick */
#define SV_MAX_CHECKS 128
#define SV_MAX_DRIFT 64

enum sv_check_status {
	SV_CHECK_OK, SV_CHECK_WARN, SV_CHECK_FAIL, SV_CHECK_OFF,
	SV_CHECK_UNKNOWN
};
const char *sv_check_status_name(enum sv_check_status s);

struct sv_check {
	char name[160];
	enum sv_check_status status;
	int readiness;			/* a FAIL makes the server not ready */
	char value[160];		/* JSON text: a number or a string */
	char message[200];
	int64_t last_run_ns;		/* unix epoch */
};

/* Latencies of recent answers with their times: a fixed ring, written
 * under a mutex by the HTTP threads, read by the monitor. */
struct sv_latring {
	pthread_mutex_t mu;
	double t[SV_LAT_RING];		/* monotonic seconds */
	float lat[SV_LAT_RING];		/* seconds */
	uint64_t n;			/* written so far */
};
void sv_latring_init(struct sv_latring *r);
void sv_latring_free(struct sv_latring *r);
void sv_latring_add(struct sv_latring *r, double t, double latency);
/* Latencies answered in (t0, t1], at most the last SV_LAT_RING, copied
 * into scratch[SV_LAT_RING] and sorted; returns how many. */
int sv_latring_window(struct sv_latring *r, double t0, double t1,
		      float *scratch);
/* nearest-rank quantile q in (0, 1] of sorted v[0..n) (n > 0) */
double sv_quantile_sorted(const float *v, int n, double q);

struct sv_exporter;

struct sv_ops {
	struct server *srv;
	pthread_mutex_t mu;		/* checks, drift, config copy */
	pthread_cond_t cv;		/* wakes the monitor (stop) */
	_Atomic int stop;
	pthread_t th;
	int th_started;

	/* config, copied at start and on reload (under mu) */
	_Atomic int interval_ms, window_s;	/* read by HTTP threads too */
	_Atomic int64_t mem_limit_bytes;

	/* resources */
	struct prom_process_values res;
	double cpu_prev, t_prev, cpu_cores;
	_Atomic int shedding;
	_Atomic int64_t rss_bytes;

	/* checks and readiness */
	int nchecks;
	struct sv_check checks[SV_MAX_CHECKS];
	_Atomic int ready;
	char not_ready[200];		/* why, under mu */
	double audit_fail_prev;

	/* windows */
	struct sv_latring lat;
	float scratch[SV_LAT_RING];
	_Atomic uint64_t n_total, n_err;
	struct sv_hist { double t, audit_fail; uint64_t total, err; }
		hist[SV_HIST];
	int hist_n, hist_head;
	double anomaly_t0;		/* start of the anomaly window */
	double p99, err_rate;		/* last computed (NAN: none) */

	/* alerts (monitor thread only, except set_rules under mu) */
	struct alert_engine eng;
	struct ob_sender *webhook;
	char webhook_url[CFG_STR];

	/* drift scores reported by the request path's detector */
	int ndrift;
	struct sv_drift { char key[200]; double score; } drift[SV_MAX_DRIFT];

	/* metrics */
	struct prom_family *m_check, *m_ready, *m_shedding, *m_shed,
		*m_mem_limit, *m_firing, *m_alert_tr, *m_hook_sent,
		*m_hook_drop, *m_err_rate, *m_p99, *m_anom_z, *m_runs,
		*m_cpu_cores, *m_span_exp, *m_span_drop;

	struct sv_exporter *exp;	/* NULL: no trace export */
};

/* ---- the server's calls ---- */

/* after the repository is open, before HTTP starts: metrics, the first
 * checks, the monitor and exporter threads. -1 refuses to start (logged). */
int sv_ops_start(struct server *srv);
/* after HTTP has stopped: the threads end (spans flushed); frees */
void sv_ops_stop(struct server *srv);
/* a reload applied srv->opts.cfg: take the reloadable keys (the alert
 * rules file is re-read; a bad one keeps the old rules, logged) */
void sv_ops_reconfigure(struct server *srv);

/* request path */
void sv_ops_request_begin(struct req *r, const char *traceparent);
/* the traceparent to answer with: 1 and out filled, or 0 */
int sv_ops_traceparent(const struct req *r, char out[TRACEPARENT_LEN + 1]);
/* an inference answered (status as sent) */
void sv_ops_request_done(struct req *r, int status);
/* the request is over: an inference's spans go to the exporter */
void sv_ops_request_end(struct req *r, int infer);
/* 1: refuse this inference now (503 overloaded, r->err set) */
int sv_ops_shed(struct req *r);
/* readiness from the last checks: 1 ready, else 0 and why */
int sv_ops_ready(struct server *srv, char *why, size_t size);
/* GET /v2/health/details as a pno_malloc'd JSON text */
int sv_ops_health_details(struct server *srv, char **json, size_t *len);

/* The drift hook: the request path's detector reports a score (PSI) per
 * model version; the drift check and the drift_score alert read the
 * largest. score < 0 forgets the version. */
void sv_ops_drift_report(struct server *srv, const char *model,
			 const char *version, double score);

/* ---- between the ops modules ---- */

void sv_health_run(struct sv_ops *o, double now);	/* monitor thread */
double sv_health_drift_max(struct sv_ops *o, int *have);	/* under mu */
enum pno_status sv_export_start(struct sv_ops *o);
void sv_export_stop(struct sv_ops *o);
int64_t sv_unix_ns(void);

#endif
