/* The pieces test_serve_health.c, test_serve_alerts.c and
 * test_serve_otlp.c share: a repository of small models (heat: a working
 * FNO; bad: its output overflows to non-finite, a model failure), the real
 * server (PNO_BIN serve) on an ephemeral loopback port, libcurl requests
 * with their headers, the metrics text, and a collector (a
 * libmicrohttpd daemon in the test) that records the bodies POSTed to it
 * and can answer 503 first. Static functions: each test includes it once. */
#ifndef SERVE_OPS_HARNESS_H
#define SERVE_OPS_HARNESS_H

#include "testutil.h"
#include "pno/fno.h"

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_X 32

static char h_repo[900];

static __attribute__((unused)) double h_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static __attribute__((unused)) void h_mkdirs(const char *path)
{
	char b[1200];
	snprintf(b, sizeof b, "%s", path);
	for (char *p = b + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(b, 0755);
			*p = '/';
		}
	mkdir(b, 0755);
}

static __attribute__((unused)) void h_write_model(const char *root, const char *name, int v,
			  int huge, uint64_t seed)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = 8, .modes1 = 4, .modes2 = 1,
				 .layers = 2, .proj_hidden = 16};
	char dir[1024], path[1100];
	snprintf(dir, sizeof dir, "%s/%s/%d", root, name, v);
	h_mkdirs(dir);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_status(pno_fno_init(&m, &a, H_X, 1, 2, seed), PNO_STATUS_OK);
	if (huge) {
		/* the last layer only, so no activation sees an overflow */
		for (int i = 0; i < a.proj_hidden * a.out_ch; i++)
			m.p.proj2_w[i] = 1e30f;
		m.norm.out_std[0] = 1e29f;
	}
	snprintf(m.method, sizeof m.method, "fno");
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
}

/* <tmp>/<tag>: heat (v1) and, if with_bad, bad (v1) */
static __attribute__((unused)) void h_make_repo(const char *tag, int with_heat, int with_bad)
{
	char cmd[1100];
	snprintf(h_repo, sizeof h_repo, "%s", tu_tmp_path(tag));
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", h_repo);
	assert_int_equal(system(cmd), 0);
	h_mkdirs(h_repo);
	if (with_heat)
		h_write_model(h_repo, "heat", 1, 0, 1);
	if (with_bad)
		h_write_model(h_repo, "bad", 1, 1, 2);
}

static __attribute__((unused)) void h_write_file(const char *path, const char *text)
{
	char tmp[1100];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* ---- the server ---- */

/* 0: leave max_queue_delay_us to the test's config (a flag would win
 * over the file at every reload) */
static int h_delay_flag = 1;

struct h_srv {
	pid_t pid;
	int port;
	char port_file[1024], log[1024];
};

/* extra: NULL-terminated flags after the common ones */
static __attribute__((unused)) void h_start(struct h_srv *s, const char *tag,
		    const char *const *extra)
{
	char pf[64], lg[64];
	snprintf(pf, sizeof pf, "ops_port_%s", tag);
	snprintf(lg, sizeof lg, "ops_log_%s", tag);
	snprintf(s->port_file, sizeof s->port_file, "%s", tu_tmp_path(pf));
	snprintf(s->log, sizeof s->log, "%s", tu_tmp_path(lg));
	unlink(s->port_file);
	unlink(s->log);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		char err[1100];
		snprintf(err, sizeof err, "%s.stderr", s->log);
		if (!freopen(err, "w", stdout) || !freopen(err, "a", stderr))
			_exit(127);
		const char *argv[64] = {PNO_BIN, "serve", "--repository",
					h_repo, "--port", "0", "--port-file",
					s->port_file, "--log-file", s->log,
					"--compute-threads", "1", "--threads",
					"2", "--max-queue-delay-us", "0"};
		int n = h_delay_flag ? 16 : 14;
		for (int i = 0; extra && extra[i] && n < 62; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		execv(PNO_BIN, (char *const *)argv);
		_exit(127);
	}
	double t0 = h_now();
	for (;;) {
		FILE *f = fopen(s->port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", &s->port) == 1;
			fclose(f);
			if (ok)
				break;
		}
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid)
			fail_msg("the server exited at start (status %d); log "
				 "%s", st, s->log);
		if (h_now() - t0 > 30)
			fail_msg("no port file after 30 s");
		usleep(10000);
	}
}

/* SIGTERM; the exit status must be 0 */
static __attribute__((unused)) void h_stop(struct h_srv *s)
{
	int st;
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	double t0 = h_now();
	while (waitpid(s->pid, &st, WNOHANG) != s->pid) {
		if (h_now() - t0 > 20) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			fail_msg("the server did not stop on SIGTERM");
		}
		usleep(5000);
	}
	s->pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* lines of the log holding every one of sub1 and sub2 (sub2 may be NULL) */
static __attribute__((unused)) int h_log_count(const struct h_srv *s, const char *sub1,
		       const char *sub2)
{
	FILE *f = fopen(s->log, "r");
	char line[8192];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		n += strstr(line, sub1) && (!sub2 || strstr(line, sub2));
	fclose(f);
	return n;
}

/* ---- HTTP ---- */

struct h_resp {
	long code;
	char *body;
	size_t len;
	char hdr[4096];
	size_t hlen;
	double seconds;
};

static size_t h_on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct h_resp *r = ud;
	char *b = realloc(r->body, r->len + sz * n + 1);
	if (!b)
		return 0;
	r->body = b;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = 0;
	return sz * n;
}

static size_t h_on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct h_resp *r = ud;
	size_t k = sz * n;
	if (r->hlen + k < sizeof r->hdr) {
		memcpy(r->hdr + r->hlen, p, k);
		r->hlen += k;
		r->hdr[r->hlen] = 0;
	}
	return k;
}

/* a response header's value ("" if absent), case-insensitive name */
static __attribute__((unused)) const char *h_header(const struct h_resp *r, const char *name)
{
	static __thread char v[256];
	size_t n = strlen(name);
	v[0] = 0;
	for (const char *p = r->hdr; p && *p;) {
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			p += n + 1;
			while (*p == ' ')
				p++;
			size_t k = strcspn(p, "\r\n");
			snprintf(v, sizeof v, "%.*s", (int)k, p);
			return v;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return v;
}

/* method path [body] with up to two extra headers */
static __attribute__((unused)) void h_http(int port, const char *method, const char *path,
		   const char *body, const char *h1, const char *h2,
		   struct h_resp *r)
{
	char url[1200];
	CURL *c = curl_easy_init();
	struct curl_slist *hs = NULL;
	memset(r, 0, sizeof *r);
	assert_non_null(c);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	hs = curl_slist_append(hs, "Expect:");
	if (h1)
		hs = curl_slist_append(hs, h1);
	if (h2)
		hs = curl_slist_append(hs, h2);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		hs = curl_slist_append(hs, "Content-Type: application/json");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
	double t0 = h_now();
	CURLcode rc = curl_easy_perform(c);
	r->seconds = h_now() - t0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -(long)rc;
	curl_slist_free_all(hs);
	curl_easy_cleanup(c);
	if (!r->body)
		r->body = calloc(1, 1);
}

static __attribute__((unused)) void h_free(struct h_resp *r)
{
	free(r->body);
	r->body = NULL;
}

static __attribute__((unused)) json_t *h_json(const struct h_resp *r)
{
	json_error_t e;
	json_t *j = json_loadb(r->body, r->len, 0, &e);
	if (!j)
		fail_msg("not JSON (%s): %.300s", e.text, r->body);
	return j;
}

/* an inference body for heat/bad: one input of H_X points */
static __attribute__((unused)) const char *h_infer_body(void)
{
	static char b[2048];
	char *p = b;
	p += sprintf(p, "{\"parameters\":{\"num_samples\":2,\"seed\":7},"
		     "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
		     "\"shape\":[1,1,%d],\"data\":[", H_X);
	for (int i = 0; i < H_X; i++)
		p += sprintf(p, "%s%.3f", i ? "," : "", 0.1 * i - 1.0);
	sprintf(p, "]}]}");
	return b;
}

static __attribute__((unused)) long h_infer(int port, const char *model, const char *h1,
		    struct h_resp *r)
{
	char path[256];
	snprintf(path, sizeof path, "/v2/models/%s/infer", model);
	h_http(port, "POST", path, h_infer_body(), h1, NULL, r);
	return r->code;
}

/* the value of the metric line "series value" (NAN if absent) */
static __attribute__((unused)) double h_metric(int port, const char *series)
{
	struct h_resp r;
	double v = NAN;
	size_t n = strlen(series);
	h_http(port, "GET", "/metrics", NULL, NULL, NULL, &r);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n'),
	     p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			break;
		}
	h_free(&r);
	return v;
}

/* poll until the metric reaches at least want (or timeout): its value */
static __attribute__((unused)) double h_metric_wait(int port, const char *series, double want,
			    double timeout)
{
	double t0 = h_now(), v;
	while (!((v = h_metric(port, series)) >= want) &&
	       h_now() - t0 < timeout)
		usleep(20000);
	return v;
}

/* ---- a collector: records POST bodies ---- */

#define H_MAX_POSTS 256

struct h_collector {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t mu;
	char *body[H_MAX_POSTS];
	char path[H_MAX_POSTS][128];
	int n;				/* POSTs answered (any status) */
	int fail_first;			/* answer these many 503 first */
	int delay_ms;			/* before each answer */
	const char *retry_after;	/* on a 503 (NULL: "0"; "": none) */
	int conns;			/* TCP connections accepted */
};

struct h_upload {
	char *b;
	size_t n;
};

static enum MHD_Result h_coll_req(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *data,
				  size_t *size, void **ptr)
{
	struct h_collector *k = cls;
	struct h_upload *u = *ptr;
	(void)version;
	if (!u) {
		u = calloc(1, sizeof *u);
		*ptr = u;
		return MHD_YES;
	}
	if (*size) {
		u->b = realloc(u->b, u->n + *size + 1);
		memcpy(u->b + u->n, data, *size);
		u->n += *size;
		u->b[u->n] = 0;
		*size = 0;
		return MHD_YES;
	}
	if (k->delay_ms)
		usleep((useconds_t)k->delay_ms * 1000);
	int status = 200;
	pthread_mutex_lock(&k->mu);
	if (strcmp(method, "POST"))
		status = 405;
	else if (k->n < k->fail_first)
		status = 503;
	if (k->n < H_MAX_POSTS) {
		k->body[k->n] = u->b ? u->b : strdup("");
		snprintf(k->path[k->n], sizeof k->path[0], "%s%s", url,
			 status == 503 ? " 503" : "");
		u->b = NULL;
	}
	k->n++;
	const char *ra = k->retry_after ? k->retry_after : "0";
	pthread_mutex_unlock(&k->mu);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
	if (status == 503 && ra[0])
		MHD_add_response_header(resp, "Retry-After", ra);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static __attribute__((unused)) void h_coll_done(void *cls, struct MHD_Connection *c, void **ptr,
			enum MHD_RequestTerminationCode toe)
{
	struct h_upload *u = *ptr;
	(void)cls, (void)c, (void)toe;
	if (u) {
		free(u->b);
		free(u);
	}
	*ptr = NULL;
}

static void h_coll_conn(void *cls, struct MHD_Connection *c, void **ptr,
			enum MHD_ConnectionNotificationCode toe)
{
	struct h_collector *k = cls;
	(void)c, (void)ptr;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		pthread_mutex_lock(&k->mu);
		k->conns++;
		pthread_mutex_unlock(&k->mu);
	}
}

static __attribute__((unused)) void h_coll_start(struct h_collector *k, int fail_first,
			 int delay_ms)
{
	memset(k, 0, sizeof *k);
	pthread_mutex_init(&k->mu, NULL);
	k->fail_first = fail_first;
	k->delay_ms = delay_ms;
	k->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
				h_coll_req, k, MHD_OPTION_NOTIFY_COMPLETED,
				h_coll_done, k, MHD_OPTION_NOTIFY_CONNECTION,
				h_coll_conn, k, MHD_OPTION_END);
	assert_non_null(k->d);
	const union MHD_DaemonInfo *di =
		MHD_get_daemon_info(k->d, MHD_DAEMON_INFO_BIND_PORT);
	assert_non_null(di);
	k->port = di->port;
}

static __attribute__((unused)) void h_coll_stop(struct h_collector *k)
{
	if (k->d)
		MHD_stop_daemon(k->d);
	k->d = NULL;
	for (int i = 0; i < k->n && i < H_MAX_POSTS; i++)
		free(k->body[i]);
	k->n = 0;
	pthread_mutex_destroy(&k->mu);
}

/* wait until the collector has answered at least n POSTs */
static __attribute__((unused)) int h_coll_wait(struct h_collector *k, int n, double timeout)
{
	double t0 = h_now();
	int have;
	for (;;) {
		pthread_mutex_lock(&k->mu);
		have = k->n;
		pthread_mutex_unlock(&k->mu);
		if (have >= n || h_now() - t0 > timeout)
			return have;
		usleep(10000);
	}
}

#endif
