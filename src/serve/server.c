/* The server's life: logging, metrics, signals (handlers only write to a
 * self-pipe), start, the main loop (reload on SIGHUP, drain on SIGTERM /
 * SIGINT, exit at once on a second SIGINT) and shutdown. */
#include "serve_internal.h"

#include <sodium.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- logging: one JSON object per line ---- */

void sv_json_escape(char *out, size_t size, const char *s)
{
	size_t o = 0;
	if (!size)
		return;
	for (; *s && o + 7 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
}

static const char *level_names[] = {"debug", "info", "warning", "error"};

void sv_log(struct server *srv, int level, const char *event,
	    const char *fields_fmt, ...)
{
	if (level < srv->log_level)
		return;
	char fields[4096], ts[48];
	struct timespec now;
	struct tm tm;
	va_list ap;
	va_start(ap, fields_fmt);
	vsnprintf(fields, sizeof fields, fields_fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + k, sizeof ts - k, ".%03ldZ", now.tv_nsec / 1000000);
	pthread_mutex_lock(&srv->log_mu);
	FILE *f = srv->log ? srv->log : stderr;
	fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"%s}\n",
		ts, level_names[level], event, fields);
	fflush(f);
	pthread_mutex_unlock(&srv->log_mu);
}

int sv_log_open(struct server *srv)
{
	if (!srv->opts.log_file)
		return 0;
	FILE *f = fopen(srv->opts.log_file, "a");
	if (!f)
		return -1;
	pthread_mutex_lock(&srv->log_mu);
	FILE *old = srv->log;
	srv->log = f;
	pthread_mutex_unlock(&srv->log_mu);
	if (old)
		fclose(old);
	return 0;
}

static int parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	return !strcmp(s, "warn") ? PNO_LOG_LEVEL_WARN : PNO_LOG_LEVEL_INFO;
}

void sv_apply_runtime(struct server *srv)
{
	const struct serve_config *c = &srv->opts.cfg;
	atomic_store(&srv->max_body, c->max_body_bytes);
	atomic_store(&srv->retry_after, c->retry_after_s);
	atomic_store(&srv->conn_timeout, c->connection_timeout_s);
	srv->log_level = parse_level(c->log_level);
	sv_ops_reconfigure(srv);
}

static void lib_log(void *ud, enum pno_log_level level, const char *msg)
{
	char esc[2048];
	sv_json_escape(esc, sizeof esc, msg);
	sv_log(ud, (int)level, "library", ",\"message\":\"%s\"", esc);
}

/* ---- metrics ---- */

enum pno_status sv_metrics_init(struct sv_metrics *m)
{
	static const char *mv[] = {"model", "version", NULL};
	static const char *mvc[] = {"model", "version", "code", NULL};
	static const char *ec[] = {"endpoint", "code", NULL};
	static const char *codes[] = {"code", NULL};
	double lat[18], bat[11];
	enum pno_status s;
	prom_exp_buckets(lat, 0.0001, 2, 18);	/* 0.1 ms .. 13 s */
	prom_exp_buckets(bat, 1, 2, 11);	/* 1 .. 1024 items */
	if ((s = prom_registry_new(&m->reg)))
		return s;
#define REG(f, t, n, h, l, b, nb)                                             \
	if ((s = prom_register(m->reg, &m->f, t, n, h, l, b, nb, 0)))         \
		return s;
	REG(requests, PROM_COUNTER, "pno_requests_total",
	    "Inference requests by model, version and HTTP status code.", mvc,
	    NULL, 0)
	REG(http_requests, PROM_COUNTER, "pno_http_requests_total",
	    "HTTP requests by endpoint kind and status code.", ec, NULL, 0)
	REG(req_dur, PROM_HISTOGRAM, "pno_request_duration_seconds",
	    "Inference request latency, arrival to response.", mv, lat, 18)
	REG(queue_dur, PROM_HISTOGRAM, "pno_queue_duration_seconds",
	    "Time a request waited in its model's queue.", mv, lat, 18)
	REG(compute_dur, PROM_HISTOGRAM, "pno_compute_duration_seconds",
	    "Execution time of one batch.", mv, lat, 18)
	REG(batch, PROM_HISTOGRAM, "pno_batch_size",
	    "Items (inputs) per executed batch.", mv, bat, 11)
	REG(queue_depth, PROM_GAUGE, "pno_queue_depth",
	    "Requests waiting in a model version's queue.", mv, NULL, 0)
	REG(inflight, PROM_GAUGE, "pno_inflight_requests",
	    "Inference requests accepted and not yet answered.", NULL, NULL, 0)
	REG(samples, PROM_COUNTER, "pno_samples_total",
	    "Predictive samples drawn.", mv, NULL, 0)
	REG(load_s, PROM_GAUGE, "pno_model_load_seconds",
	    "Time taken to load a model version.", mv, NULL, 0)
	REG(models, PROM_GAUGE, "pno_model_versions_loaded",
	    "Model versions being served.", NULL, NULL, 0)
	REG(reloads, PROM_COUNTER, "pno_config_reloads_total",
	    "Successful reloads of the config and repository.", NULL, NULL, 0)
	REG(reload_fail, PROM_COUNTER, "pno_config_reload_failures_total",
	    "Reloads rejected (the previous state kept serving).", NULL, NULL,
	    0)
	REG(auth_fail, PROM_COUNTER, "pno_auth_failures_total",
	    "Requests refused by authentication (401) or authorization "
	    "(403).", codes, NULL, 0)
	REG(rate_limited, PROM_COUNTER, "pno_rate_limited_total",
	    "Requests refused by the rate limiter (429).", NULL, NULL, 0)
	REG(breaker_state, PROM_GAUGE, "pno_breaker_state",
	    "Circuit breaker of a model version: 0 closed, 1 open, 2 "
	    "half-open.", mv, NULL, 0)
	REG(breaker_rejected, PROM_COUNTER, "pno_breaker_rejected_total",
	    "Inference requests refused by an open circuit breaker (503).",
	    mv, NULL, 0)
	REG(audit_records, PROM_COUNTER, "pno_audit_records_total",
	    "Records appended to the audit log by requests and reloads.", NULL,
	    NULL, 0)
	REG(audit_fail, PROM_COUNTER, "pno_audit_failures_total",
	    "Audit records that could not be written (an inference among "
	    "them was refused with 503).", NULL, NULL, 0)
#undef REG
	prom_inc(m->audit_records, NULL, 0);
	prom_inc(m->audit_fail, NULL, 0);
	prom_inc(m->rate_limited, NULL, 0);
	prom_inc(m->reloads, NULL, 0);
	prom_inc(m->reload_fail, NULL, 0);
	prom_set(m->inflight, NULL, 0);
	if ((s = sv_resil_metrics_init(&m->rm, m->reg)))
		return s;
	return prom_register_process(m->reg);
}

/* ---- signals ---- */

static int sig_fd = -1;

static void on_signal(int sig)
{
	int saved = errno;
	char c = sig == SIGHUP ? 'H' : sig == SIGINT ? 'I' : 'T';
	if (sig_fd >= 0 && write(sig_fd, &c, 1) < 0) {
		/* nothing safe to do in a handler */
	}
	errno = saved;
}

static int signals_install(struct server *srv)
{
	if (pipe(srv->self_pipe))
		return -1;
	for (int i = 0; i < 2; i++)
		fcntl(srv->self_pipe[i], F_SETFD, FD_CLOEXEC);
	fcntl(srv->self_pipe[1], F_SETFL, O_NONBLOCK);
	sig_fd = srv->self_pipe[1];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int write_port_file(const char *path, int port)
{
	char tmp[CFG_STR + 16];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

/* ---- security: keys, sessions, rate limiter (docs/serve/security.md) ---- */

static int security_open(struct server *srv)
{
	const struct serve_config *c = &srv->opts.cfg;
	char esc[2 * SV_ERR_MAX];
	if (c->auth) {
		struct session_opts so;
		enum pno_status s = auth_ctx_new(&srv->auth, c->keys_file, NULL,
						 NULL);
		if (s == PNO_STATUS_OK) {
			session_opts_default(&so);
			so.max_sessions = c->session_max;
			so.absolute_timeout_s = c->session_ttl_s;
			so.idle_timeout_s = c->session_idle_s;
			s = session_table_new(&srv->sessions, &so);
		}
		if (s != PNO_STATUS_OK) {
			sv_json_escape(esc, sizeof esc, pno_last_error());
			sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
			       ",\"reason\":\"keys file %s: %s\"", c->keys_file,
			       esc);
			if (srv->opts.log_file)
				fprintf(stderr, "pno serve: keys file %s: %s\n",
					c->keys_file, pno_last_error());
			return -1;
		}
	} else {
		sv_log(srv, PNO_LOG_LEVEL_WARN, "auth_disabled",
		       ",\"message\":\"authentication is off (auth false): "
		       "every endpoint is open to anyone who can connect\"");
	}
	if (c->rate_limit > 0) {
		struct ratelimit_opts ro;
		ratelimit_opts_default(&ro);
		ro.rate = c->rate_limit;
		ro.burst = c->rate_burst;
		ro.max_keys = c->rate_max_clients;
		if (ratelimit_new(&srv->rl, &ro) != PNO_STATUS_OK) {
			sv_json_escape(esc, sizeof esc, pno_last_error());
			sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
			       ",\"reason\":\"rate limiter: %s\"", esc);
			return -1;
		}
	}
	return 0;
}

/* ---- the main loop ---- */

static void reload_on_hup(struct server *srv)
{
	char err[SV_ERR_MAX];
	if (sv_log_open(srv))
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "log_reopen_failed",
		       ",\"file\":\"%s\"", srv->opts.log_file);
	int rc = sv_reload(srv, "SIGHUP", NULL, NULL, err, sizeof err);
	char det[SV_ERR_MAX + 32];
	snprintf(det, sizeof det, "SIGHUP: %s", rc ? err : "applied");
	sv_audit_event(srv, AUDIT_EVENT_RELOAD, "", rc ? 400 : 200, det);
}

/* Wait for signals; returns the exit status. */
static int main_loop(struct server *srv)
{
	int ints = 0;
	double deadline = 0;
	for (;;) {
		int draining = atomic_load(&srv->draining);
		struct pollfd p = {srv->self_pipe[0], POLLIN, 0};
		int rc = poll(&p, 1, draining ? 10 : -1);
		if (rc > 0) {
			char c;
			if (read(srv->self_pipe[0], &c, 1) != 1)
				continue;
			if (c == 'H') {
				reload_on_hup(srv);
				continue;
			}
			if (c == 'R') {	/* a rollback was asked for */
				sv_rollback_run(srv);
				continue;
			}
			/* a SIGINT while draining (after SIGINT or SIGTERM) */
			if (c == 'I' && (++ints >= 2 || draining)) {
				sv_log(srv, PNO_LOG_LEVEL_WARN, "exit_now",
				       ",\"message\":\"second SIGINT: exiting "
				       "without draining\",\"inflight\":%ld",
				       atomic_load(&srv->inflight));
				_exit(130);
			}
			if (!draining) {
				atomic_store(&srv->draining, 1);
				deadline = sv_now() + srv->opts.cfg.exit_timeout_s;
				sv_log(srv, PNO_LOG_LEVEL_INFO, "draining",
				       ",\"signal\":\"%s\",\"inflight\":%ld,"
				       "\"exit_timeout_s\":%d",
				       c == 'I' ? "SIGINT" : "SIGTERM",
				       atomic_load(&srv->inflight),
				       srv->opts.cfg.exit_timeout_s);
			}
			continue;
		}
		if (!draining)
			continue;
		long n = atomic_load(&srv->inflight);
		if (n == 0)
			return 0;
		if (sv_now() >= deadline) {
			sv_log(srv, PNO_LOG_LEVEL_ERROR, "exit_timeout",
			       ",\"abandoned\":%ld", n);
			return 1;
		}
	}
}

int serve_run(const struct serve_opts *o)
{
	struct server *srv = pno_calloc(1, sizeof *srv);
	char err[SV_ERR_MAX];
	int rc = 1, curl_up = 0;
	if (!srv) {
		fprintf(stderr, "pno serve: out of memory\n");
		return 1;
	}
	srv->opts = *o;
	srv->self_pipe[0] = srv->self_pipe[1] = -1;
	pthread_mutex_init(&srv->state_mu, NULL);
	pthread_mutex_init(&srv->reload_mu, NULL);
	pthread_mutex_init(&srv->pool_mu, NULL);
	pthread_mutex_init(&srv->log_mu, NULL);
	pthread_mutex_init(&srv->workers_mu, NULL);
	pthread_cond_init(&srv->workers_cv, NULL);
	sv_resil_init(srv);
	sv_apply_runtime(srv);
	srv->conn_timeout0 = o->cfg.connection_timeout_s;
	if (sv_log_open(srv)) {
		fprintf(stderr, "pno serve: cannot open the log file %s: %s\n",
			o->log_file, strerror(errno));
		goto out;
	}
	pno_log_set(lib_log, srv, PNO_LOG_LEVEL_DEBUG);
	pno_threads_set(o->cfg.compute_threads);
	if (sodium_init() < 0) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"libsodium init\"");
		goto out;
	}
	srv->seed_key = (uint64_t)randombytes_random() << 32 |
			randombytes_random();
	/* before any thread: older libcurl's global init is not thread-safe
	 * (the webhook sender and the trace exporter make easy handles) */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"libcurl init\"");
		goto out;
	}
	curl_up = 1;
	if (sv_metrics_init(&srv->met)) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"metrics: out of memory\"");
		goto out;
	}
	if (signals_install(srv))
		goto out;
	if (security_open(srv))
		goto out;
	if (sv_audit_open(srv))
		goto out;
	if (sv_repo_open(srv, err, sizeof err)) {
		char esc[2 * SV_ERR_MAX];
		sv_json_escape(esc, sizeof esc, err);
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"%s\"", esc);
		if (o->log_file)
			fprintf(stderr, "pno serve: %s\n", err);
		goto out;
	}
	if (sv_ops_start(srv))
		goto out;
	if (sv_http_start(srv)) {
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"cannot listen on %s port %d\"",
		       o->cfg.host, o->cfg.port);
		if (o->log_file)
			fprintf(stderr, "pno serve: cannot listen on %s port "
				"%d\n", o->cfg.host, o->cfg.port);
		goto out;
	}
	if (o->cfg.port_file[0] &&
	    write_port_file(o->cfg.port_file, srv->port)) {
		fprintf(stderr, "pno serve: cannot write %s\n",
			o->cfg.port_file);
		goto out;
	}
	sv_log(srv, PNO_LOG_LEVEL_INFO, "listening",
	       ",\"host\":\"%s\",\"port\":%d,\"models\":%d,\"threads\":%d",
	       o->cfg.host, srv->port, srv->state->nm, o->cfg.threads);
	rc = main_loop(srv);
	if (rc != 0) {
		/* requests still suspended: MHD cannot stop cleanly */
		_exit(rc);
	}
	sv_log(srv, PNO_LOG_LEVEL_INFO, "stopped", "%s", "");
out:
	sv_http_stop(srv);
	sv_ops_stop(srv);	/* reads the state; flushes the last spans */
	if (curl_up)
		curl_global_cleanup();	/* every easy handle is gone */
	sv_state_release(srv->state);
	sv_workers_wait(srv);
	sv_audit_close(srv);	/* after every request has its record */
	session_table_free(srv->sessions);
	auth_ctx_free(srv->auth);
	ratelimit_free(srv->rl);
	prom_registry_free(srv->met.reg);
	if (o->cfg.port_file[0])
		unlink(o->cfg.port_file);
	pno_log_set(NULL, NULL, PNO_LOG_LEVEL_ERROR);
	sig_fd = -1;
	for (int i = 0; i < 2; i++)
		if (srv->self_pipe[i] >= 0)
			close(srv->self_pipe[i]);
	if (srv->log)
		fclose(srv->log);
	sv_resil_free(srv);
	pno_free(srv);
	return rc;
}
