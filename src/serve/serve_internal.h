/*
 * The server's shared pieces (not a public API): the request object that
 * travels from the HTTP thread to a model's worker and back, the loaded
 * model versions with their batching queues, the reference-counted
 * serving state a reload swaps, and the server context.
 *
 * Threads: MHD's pool threads parse requests, enqueue them on a version's
 * queue and suspend the connection; one worker thread per loaded version
 * owns its pno_model (not thread-safe), runs batches and resumes the
 * connections; the main thread waits for signals, reloads and shuts down.
 */
#ifndef PNO_SERVE_INTERNAL_H
#define PNO_SERVE_INTERNAL_H

#include "audit.h"
#include "auth.h"
#include "breaker.h"
#include "config.h"
#include "failure.h"
#include "ops.h"
#include "prom.h"
#include "ratelimit.h"
#include "resil.h"
#include "session.h"
#include "serve.h"

#include "pno/model.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define SV_NAME_MAX 128
#define SV_ARENA_MAX ((size_t)64 << 20)	/* parse arena bound (bytes) */
#define SV_ERR_MAX 512

struct server;
struct mversion;
struct serve_state;

/* outputs a request can ask for, in response order */
#define SV_OUTPUTS(X)                                                         \
	X(MEAN, "mean")                                                       \
	X(STD, "std")                                                         \
	X(QUANTILES, "quantile_")                                             \
	X(ALEATORIC, "aleatoric_variance")                                    \
	X(EPISTEMIC, "epistemic_variance")                                    \
	X(SAMPLES, "samples")
enum sv_out {
#define SV_OUT_ENUM(n, s) SV_OUT_##n,
	SV_OUTPUTS(SV_OUT_ENUM)
#undef SV_OUT_ENUM
	SV_OUT_COUNT
};

/* One HTTP request (pooled: buffers kept for the next request). */
struct req {
	struct req *next;		/* free list / queue link */
	struct server *srv;
	struct MHD_Connection *conn;
	int route;			/* enum in http.c */
	uint64_t rid;			/* server-wide request number */
	double t_start;			/* monotonic seconds */

	/* body */
	char *body;
	size_t body_len, body_cap;
	size_t discarded;		/* bytes dropped after the limit */
	int too_large;
	int body_nomem;			/* no room for the body: 503 */
	int queued;			/* counted in flight */
	size_t header_len;		/* Inference-Header-Content-Length */
	int bad_name;			/* the URL's model name or version is
					 * not [A-Za-z0-9_.-]{1,127} (400) */

	/* target, held until the request completes */
	struct serve_state *st;
	struct mversion *mv;
	char model[SV_NAME_MAX], version[24];

	/* parsed infer request */
	char id[256];			/* client id, echoed ("" none) */
	int has_id;
	int B, S, nq;			/* items, samples, quantile levels */
	uint64_t seed;
	float q[PNO_PREDICT_MAX_QUANTILES];
	unsigned want, binary;		/* bit masks over enum sv_out; bit
					 * SV_OUT_QUANTILES covers all levels */
	float *x;			/* (B, Cin, P) */
	size_t x_cap;
	float *y;			/* B items of sv_item_floats() */
	size_t y_cap;
	char *arena;			/* jansson's nodes while parsing, */
	size_t arena_cap;		/* when the HTTP layer lends one */

	/* who asked (auth), and what the log says about a refusal */
	char principal[AUTH_NAME_MAX + 1];	/* "" unauthenticated */
	const char *auth_reason;		/* static string or NULL */
	int principal_session;			/* came with a session token */
	struct breaker_permit permit;		/* from its version's breaker */
	int has_permit;
	int retry_after;			/* > 0: this Retry-After */
	struct req_resil rs;			/* deadline, degradation */

	/* result (set by the worker or the handler) */
	int status;
	char err[SV_ERR_MAX];
	int batch_items;		/* items in the batch it ran in */
	double t_enq, t_exec, t_done;	/* monotonic seconds */
	double t_run;			/* its own items began computing */
	struct sv_req_trace tr;		/* its server span (ops.h) */
	double compute_s;		/* the whole batch's execution */
	_Atomic int ready;		/* worker finished: respond */

	/* response */
	char *resp;
	size_t resp_len, resp_cap;
	size_t json_len;		/* JSON part when binary outputs follow */
};

/* Floats per item of req->y: mean, std, nq quantiles, aleatoric,
 * epistemic (when the model has them) and S samples, each (C, P). */
size_t sv_item_floats(const struct mversion *mv, int S, int nq);
/* offset of output o (level k for quantiles) within an item */
size_t sv_item_offset(const struct mversion *mv, int S, int nq, enum sv_out o,
		      int k);

/* A loaded model version with its queue and worker. */
struct mversion {
	_Atomic int refs;
	struct server *srv;
	char name[SV_NAME_MAX];
	long version;
	char vstr[24];
	char path[4096];
	dev_t dev;			/* file identity: reuse on reload */
	ino_t ino;
	int64_t mtime_ns, size;
	struct pno_model model;
	int C, P;			/* output channels, grid points */
	double load_s;
	int threads;			/* compute_threads */
	struct breaker brk;		/* around compute */
	struct vguard *guard;		/* drift window, rollback windows */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct req **ring;
	int cap, head, count;
	long items;			/* inputs queued (max_queue_size) */
	int stop;			/* drain then exit */
	_Atomic int max_batch, delay_us;
	pthread_t th;
	int th_started;
	/* one batch's inputs, sized at start for max_batch items (the
	 * library's workspace holds max_samples samples per input) */
	int bcap, smax;
	int bcall;			/* inputs per predict call (<= bcap) */
	float *bx;			/* (bcap, Cin, P) */
	uint64_t *bseed;		/* (bcap) */
	struct pno_predict_out *bout;	/* (bcap) */
};

/* Load path's model (grid from the file) and start its worker. */
enum pno_status sv_version_open(struct mversion **out, struct server *srv,
				const struct serve_config *cfg,
				const char *name, long version,
				const char *path);
void sv_version_ref(struct mversion *mv);
/* The last release stops the worker once its queue is empty; the worker
 * frees the version (see sv_workers_wait). */
void sv_version_release(struct mversion *mv);
/* Wait until every worker has exited (after the last state is released). */
void sv_workers_wait(struct server *srv);
/* 0 queued (the worker will resume the connection), -1 queue full. */
int sv_version_enqueue(struct mversion *mv, struct req *r);

struct smodel {
	char name[SV_NAME_MAX];
	int nv;
	struct mversion **v;		/* ascending versions */
	int def;			/* the default: highest not rolled back */
};

/* A version the quality gates kept from going live. */
struct refusal {
	char name[SV_NAME_MAX];
	char vstr[24];
	char reason[SV_ERR_MAX];	/* the failed verdicts */
};

/* What a reload replaces as a whole. */
struct serve_state {
	_Atomic int refs;
	struct serve_config cfg;
	int nm;
	struct smodel *m;		/* a model may have nv 0 (all refused) */
	int nrefused;
	struct refusal *refused;
};

/* the refusal of model name's version vstr ("" any), NULL if none */
const struct refusal *sv_state_refusal(const struct serve_state *st,
				       const char *name, const char *vstr);

void sv_state_release(struct serve_state *st);
/* the first state, from srv->opts.cfg (0, or -1 with the reason in err) */
int sv_repo_open(struct server *srv, char *err, size_t errsz);
struct serve_state *sv_state_get(struct server *srv);	/* +1 ref */
const struct smodel *sv_state_model(const struct serve_state *st,
				    const char *name);
/* Version "" is the default (highest not rolled back). NULL if absent. */
struct mversion *sv_state_version(const struct serve_state *st,
				  const char *name, const char *version);

/* metric families */
struct sv_metrics {
	struct prom_registry *reg;
	struct prom_family *requests, *http_requests, *req_dur, *queue_dur,
		*compute_dur, *batch, *queue_depth, *inflight, *samples,
		*load_s, *reloads, *reload_fail, *models, *auth_fail,
		*rate_limited, *breaker_state, *breaker_rejected,
		*audit_records, *audit_fail;
	struct resil_metrics rm;
};

/* register every family (and the process metrics) in a new registry */
enum pno_status sv_metrics_init(struct sv_metrics *m);
struct server {
	struct serve_opts opts;
	struct sv_metrics met;

	pthread_mutex_t state_mu;
	struct serve_state *state;
	pthread_mutex_t reload_mu;	/* one reload at a time */
	char unloaded[32][SV_NAME_MAX];	/* models unloaded by request */
	int n_unloaded;

	/* security: NULL when off (auth false, rate_limit 0) */
	struct auth_ctx *auth;
	struct session_table *sessions;
	struct ratelimit *rl;
	struct audit_log *audit;	/* NULL when off (no audit_dir) */
	struct sv_ops *ops;		/* monitor, health, alerts, export */

	struct MHD_Daemon *daemon;
	int port;
	_Atomic int draining;		/* SIGTERM seen: not ready */
	/* reloadable values the HTTP threads read without a state */
	_Atomic int64_t max_body;
	_Atomic int retry_after;
	_Atomic int conn_timeout;	/* connection_timeout_s */
	int conn_timeout0;		/* the daemon's, from the start */
	int max_header;			/* max_header_bytes, from the start */
	_Atomic long inflight;		/* infer requests accepted, not done */
	_Atomic uint64_t next_rid;
	uint64_t seed_key;		/* for requests without a seed */

	pthread_mutex_t workers_mu;	/* live worker threads */
	pthread_cond_t workers_cv;
	int workers;

	pthread_mutex_t pool_mu;
	struct req *pool;
	int pool_n;

	/* log */
	pthread_mutex_t log_mu;
	FILE *log;
	_Atomic int log_level;		/* enum pno_log_level */
	int self_pipe[2];
	struct rollback_ctl rb;
};

double sv_now(void);			/* monotonic seconds */
/* model names: [A-Za-z0-9_.-]{1,127}, not "." or ".." */
int sv_valid_name(const char *s, size_t n);

/* logging: one JSON object per line; fields is "" or starts with ',' and
 * holds already-escaped JSON members */
void sv_log(struct server *srv, int level, const char *event,
	    const char *fields_fmt, ...) __attribute__((format(printf, 4, 5)));
/* JSON string escape into out (truncates, always terminated). */
void sv_json_escape(char *out, size_t size, const char *s);
int sv_log_open(struct server *srv);	/* (re)open opts.log_file */
/* apply the reloadable values of srv->opts.cfg the threads read */
void sv_apply_runtime(struct server *srv);

/* reload the config file + repository into a new state (serialized;
 * load / unload: a model name to serve again / to stop serving, or NULL);
 * 0 applied, -1 rejected (old state kept, reason in err) */
int sv_reload(struct server *srv, const char *why, const char *load,
	      const char *unload, char *err, size_t errsz);

/* The pre-scan of an infer body before the parser sees it (a hostile body
 * never reaches the parser's recursion): walks the bytes once, outside
 * strings (escapes honoured), counting the nesting of '[' '{' and the
 * elements (array elements + object members: 1 per non-empty container
 * plus 1 per ','). Stops at the first limit passed: SV_SCAN_DEPTH or
 * SV_SCAN_ELEMENTS with *at the byte offset; else SV_SCAN_OK with the
 * deepest nesting and the element count (malformed text is left to the
 * parser). */
enum sv_scan { SV_SCAN_OK, SV_SCAN_DEPTH, SV_SCAN_ELEMENTS };
enum sv_scan sv_json_prescan(const char *s, size_t n, int max_depth,
			     int64_t max_elements, int *depth,
			     int64_t *elements, size_t *at);

/* infer: parse and validate r->body against r->mv; 0 or an HTTP status
 * with r->err set. If r->arena is lent (arena_cap > 0), the JSON nodes
 * come from it (grown after a body that needed more, so a steady stream
 * of like requests allocates nothing); else from the allocator. */
int sv_infer_parse(struct req *r, const struct serve_config *cfg);
/* build r->resp from the results */
int sv_infer_respond(struct req *r);
/* the breaker's state as the pno_breaker_state gauge */
void sv_breaker_export(struct mversion *mv);
/* Requests a and b may share one pno_model_predict_into call (same
 * samples and quantile levels). */
int sv_infer_compatible(const struct req *a, const struct req *b);
/* Where item b of r goes in r->y (the outputs it asked for). */
void sv_infer_outputs(const struct req *r, int b, struct pno_predict_out *o);
/* Run one request's items on the version's model and batch buffers
 * (status as sv_infer_done; not resumed). Only where the worker is idle:
 * the worker itself, or a test. */
void sv_infer_run(struct mversion *mv, struct req *r);
/* After r's items ran (status OK) or failed (s): r->status 200, or 500 /
 * 503 with r->err (a non-finite output is a model failure: 500). */
void sv_infer_done(struct mversion *mv, struct req *r, enum pno_status s);

/* a finite float as JSON text that reads back as the same float (at most
 * 16 characters, not terminated); returns the length */
int sv_fmt_f32(char *out, float v);

/* growable byte buffer helpers on a req's response */
int sv_buf_reserve(char **buf, size_t *cap, size_t need);

/* audit log (serve_audit.c); each 0, or -1 if the record could not be
 * written (counted and logged). No log: 0, nothing written. */
int sv_audit_open(struct server *srv);	/* -1: refuse to start */
void sv_audit_close(struct server *srv);
/* one record about request r and its answer (status; out: the response
 * body, digested for an answered inference); client: remote address */
int sv_audit_request(struct req *r, enum audit_event_type t,
		     const char *client, int status, const char *detail,
		     const void *out, size_t out_len);
/* a record not tied to a request (a reload on SIGHUP) */
int sv_audit_event(struct server *srv, enum audit_event_type t,
		   const char *actor, int status, const char *detail);

/* HTTP */
enum pno_status sv_http_start(struct server *srv);
void sv_http_stop(struct server *srv);

#endif
