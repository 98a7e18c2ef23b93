/* Shared by the request-path resilience tests (test_serve_deadline,
 * _degrade, _rollback, _overload, _drift_live): a model repository of
 * small FNOs, the real server (PNO_BIN serve) started on an ephemeral
 * loopback port, and libcurl calls with their status, body, headers and
 * time. Every function is static: each test program has its own copy. */
#ifndef PNO_TESTS_SERVE_HARNESS_H
#define PNO_TESTS_SERVE_HARNESS_H

#include "testutil.h"
#include "config.h"
#include "drift.h"
#include "pno/core.h"
#include "pno/fno.h"
#include "pno/model.h"

#include <curl/curl.h>
#include <jansson.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SH static __attribute__((unused))

SH double sh_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

SH void sh_mkdirs(const char *path)
{
	char b[1600];
	snprintf(b, sizeof b, "%s", path);
	for (char *p = b + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(b, 0755);
			*p = '/';
		}
	mkdir(b, 0755);
}

/* a fresh empty directory under the test tmp dir */
SH const char *sh_fresh_dir(const char *tag, char *out, size_t size)
{
	char cmd[2048];
	snprintf(out, size, "%s", tu_tmp_path(tag));
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
	assert_int_equal(system(cmd), 0);
	sh_mkdirs(out);
	return out;
}

struct sh_model {
	int X;			/* 1-D grid */
	int width, layers;
	float dropout;		/* > 0: stochastic (compute grows with S) */
	int huge;		/* output overflows to Inf (a failing model) */
	uint64_t seed;
	const float *ref_x;	/* (ref_n, 1, X): drift reference inputs */
	int ref_n;
};

/* <root>/<name>/<v>/model.safetensors */
SH void sh_write_model(const char *root, const char *name, int v,
		       const struct sh_model *o)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = o->width ? o->width : 8,
				 .modes1 = 4, .modes2 = 1,
				 .layers = o->layers ? o->layers : 2,
				 .proj_hidden = 16, .p_hidden = o->dropout};
	char dir[1400], path[1500];
	snprintf(dir, sizeof dir, "%s/%s/%d", root, name, v);
	sh_mkdirs(dir);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_status(pno_fno_init(&m, &a, o->X, 1, 2, o->seed), PNO_STATUS_OK);
	if (o->huge) {
		/* last layer only: no activation sees an overflowed value */
		for (int i = 0; i < a.proj_hidden * a.out_ch; i++)
			m.p.proj2_w[i] = 1e30f;
		m.norm.out_std[0] = 1e29f;
	}
	snprintf(m.method, sizeof m.method, "fno");
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
	if (o->ref_x) {
		struct drift_ref r = {0};
		char *j = NULL;
		assert_status(drift_ref_compute(&r, o->ref_x, o->ref_n, 1, 1,
						o->X, 1, 1000), PNO_STATUS_OK);
		assert_status(drift_ref_to_json(&r, &j), PNO_STATUS_OK);
		assert_status(pno_model_file_set_meta(path, "drift_reference", j),
			      PNO_STATUS_OK);
		pno_free(j);
		drift_ref_free(&r);
	}
}

/* ---- the server ---- */

struct sh_srv {
	pid_t pid;
	int port;
	char port_file[1024], log[1024];
};

/* extra: NULL-terminated flags after the common ones */
SH void sh_start(struct sh_srv *s, const char *tag, const char *repo,
		 const char *const *extra)
{
	char pf[96], lg[96];
	snprintf(pf, sizeof pf, "%s_port", tag);
	snprintf(lg, sizeof lg, "%s_log", tag);
	snprintf(s->port_file, sizeof s->port_file, "%s", tu_tmp_path(pf));
	snprintf(s->log, sizeof s->log, "%s", tu_tmp_path(lg));
	unlink(s->port_file);
	unlink(s->log);
	fflush(stdout);	/* the child's freopen would print it again */
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		char err[1100];
		snprintf(err, sizeof err, "%s.stderr", s->log);
		if (!freopen(err, "w", stdout) || !freopen(err, "a", stderr))
			_exit(127);
		const char *argv[80] = {PNO_BIN, "serve", "--repository", repo,
					"--port", "0", "--port-file",
					s->port_file, "--log-file", s->log,
					"--compute-threads", "1", "--auth",
					"false"};
		int n = 14;
		for (int i = 0; extra && extra[i] && n < 78; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		execv(PNO_BIN, (char *const *)argv);
		_exit(127);
	}
	double t0 = sh_now();
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
		if (sh_now() - t0 > 30)
			fail_msg("no port file after 30 s");
		usleep(10000);
	}
}

SH void sh_stop(struct sh_srv *s)
{
	int st;
	kill(s->pid, SIGTERM);
	double t0 = sh_now();
	while (waitpid(s->pid, &st, WNOHANG) != s->pid) {
		if (sh_now() - t0 > 30) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			fail_msg("the server did not stop on SIGTERM");
		}
		usleep(5000);
	}
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	s->pid = 0;
}

/* lines of the log holding every one of up to 3 substrings (NULL: any) */
SH int sh_log_count(const struct sh_srv *s, const char *a, const char *b,
		    const char *c)
{
	FILE *f = fopen(s->log, "r");
	char line[16384];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		n += strstr(line, a) && (!b || strstr(line, b)) &&
		     (!c || strstr(line, c));
	fclose(f);
	return n;
}

SH int sh_wait_log(const struct sh_srv *s, const char *a, const char *b,
		   double timeout)
{
	double t0 = sh_now();
	while (!sh_log_count(s, a, b, NULL)) {
		if (sh_now() - t0 > timeout)
			return 0;
		usleep(5000);
	}
	return 1;
}

/* ---- HTTP ---- */

struct sh_resp {
	long code;		/* < 0: -CURLcode (a transport error) */
	char *body;
	size_t len;
	char hdr[4096];
	size_t hlen;
	double dt;		/* seconds, request to answer */
};

SH size_t sh_on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct sh_resp *r = ud;
	char *b = realloc(r->body, r->len + sz * n + 1);
	if (!b)
		return 0;
	r->body = b;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = 0;
	return sz * n;
}

SH size_t sh_on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct sh_resp *r = ud;
	size_t k = sz * n;
	if (r->hlen + k < sizeof r->hdr) {
		memcpy(r->hdr + r->hlen, p, k);
		r->hlen += k;
		r->hdr[r->hlen] = 0;
	}
	return k;
}

SH const char *sh_header(const struct sh_resp *r, const char *name,
			 char *v, size_t size)
{
	size_t n = strlen(name);
	for (const char *p = r->hdr; *p;) {
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			p += n + 1;
			while (*p == ' ')
				p++;
			size_t k = strcspn(p, "\r\n");
			snprintf(v, size, "%.*s", (int)k, p);
			return v;
		}
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	return NULL;
}

SH void sh_resp_free(struct sh_resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* a curl handle for one call (hs: extra header lines or NULL) */
SH CURL *sh_easy(const struct sh_srv *s, const char *method, const char *path,
		 const char *body, struct curl_slist **hs, const char *hdr,
		 struct sh_resp *r)
{
	char url[1200];
	CURL *c = curl_easy_init();
	assert_non_null(c);
	memset(r, 0, sizeof *r);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sh_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sh_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	*hs = curl_slist_append(NULL, "Expect:");
	if (hdr)
		*hs = curl_slist_append(*hs, hdr);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		*hs = curl_slist_append(*hs, "Content-Type: application/json");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hs);
	return c;
}

/* one call; hdr: one extra header line ("Name: value") or NULL */
SH void sh_http(const struct sh_srv *s, const char *method, const char *path,
		const char *body, const char *hdr, struct sh_resp *r)
{
	struct curl_slist *hs;
	CURL *c = sh_easy(s, method, path, body, &hs, hdr, r);
	double t0 = sh_now();
	CURLcode rc = curl_easy_perform(c);
	r->dt = sh_now() - t0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -(long)rc;
	curl_slist_free_all(hs);
	curl_easy_cleanup(c);
	if (!r->body)
		r->body = calloc(1, 1);
}

SH void sh_expect(const struct sh_resp *r, long code)
{
	if (r->code != code)
		fail_msg("status %ld, want %ld: %.400s", r->code, code, r->body);
}

/* the value of "name{labels} value" in /metrics; NAN if absent */
SH double sh_metric(const struct sh_srv *s, const char *series)
{
	struct sh_resp r;
	double v = NAN;
	sh_http(s, "GET", "/metrics", NULL, NULL, &r);
	sh_expect(&r, 200);
	size_t n = strlen(series);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n'),
		    p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			break;
		}
	sh_resp_free(&r);
	return v;
}

/* absent counts as 0 (a labelled series appears at its first event) */
SH double sh_metric0(const struct sh_srv *s, const char *series)
{
	double v = sh_metric(s, series);
	return isnan(v) ? 0 : v;
}

/* an infer body for one input x (X values); params: JSON members added to
 * "parameters" ("" none). Caller frees. */
SH char *sh_body(const float *x, int X, const char *params)
{
	size_t cap = 64 + 20 * (size_t)X + strlen(params) + 128, k;
	char *b = malloc(cap);
	assert_non_null(b);
	k = (size_t)snprintf(b, cap, "{\"inputs\":[{\"name\":\"input\","
			     "\"datatype\":\"FP32\",\"shape\":[1,1,%d],"
			     "\"data\":[", X);
	for (int i = 0; i < X; i++)
		k += (size_t)snprintf(b + k, cap - k, "%s%.6g", i ? "," : "",
				      (double)x[i]);
	snprintf(b + k, cap - k, "]}],\"parameters\":{%s}}", params);
	return b;
}

/* the JSON answer's parameters.<key> as a number (NAN if absent) and
 * model_version */
SH double sh_param(const char *body, const char *key)
{
	json_t *j = json_loads(body, 0, NULL);
	json_t *v = json_object_get(json_object_get(j, "parameters"), key);
	double d = json_is_number(v) ? json_number_value(v) :
		   json_is_true(v) ? 1 : json_is_false(v) ? 0 : NAN;
	json_decref(j);
	return d;
}

SH void sh_version(const char *body, char *out, size_t size)
{
	json_t *j = json_loads(body, 0, NULL);
	const char *v = json_string_value(json_object_get(j, "model_version"));
	snprintf(out, size, "%s", v ? v : "");
	json_decref(j);
}

/* resident set of a process in kB (0 if unreadable) */
SH long sh_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = 0;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

#endif
