/* pno serve, end to end: the real server (PNO_BIN serve) on an ephemeral
 * loopback port, over a repository of small untrained models written
 * here, driven with libcurl. Every endpoint, every error path, JSON and
 * binary tensors, answers checked bit for bit against the library's own
 * pno_model_predict on the same file, metrics through a strict parser,
 * batching, reload and shutdown under load. */
#include "testutil.h"
#include "pno/fno.h"
#include "pno/model.h"

#include <curl/curl.h>
#include <jansson.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define X1 32
#define MAX_SAMPLES 64

static char repo[900], cfg_path[900];
static int sanitized;

/* ---- the repository ---- */

static void mkdirs(const char *path)
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

static void model_path(char *out, size_t n, const char *name, int v)
{
	snprintf(out, n, "%s/%s/%d/model.safetensors", repo, name, v);
}

/* a small untrained FNO-family model saved as <repo>/<name>/<v> */
static void write_model(const char *name, int v, int dims, int X, int Y,
			int width, int layers, int heads, float p_hidden,
			const char *method, uint64_t seed)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = dims, .in_ch = 1, .out_ch = 1,
				 .width = width, .modes1 = 4, .modes2 = 3,
				 .layers = layers, .proj_hidden = 16,
				 .heads = heads, .p_hidden = p_hidden};
	char dir[1024], path[1100];
	snprintf(dir, sizeof dir, "%s/%s/%d", repo, name, v);
	mkdirs(dir);
	model_path(path, sizeof path, name, v);
	assert_status(pno_fno_init(&m, &a, X, Y, 2, seed), PNO_STATUS_OK);
	m.norm.in_mean[0] = 0.1f, m.norm.in_std[0] = 1.3f;
	m.norm.out_mean[0] = -0.2f, m.norm.out_std[0] = 0.7f;
	snprintf(m.method, sizeof m.method, "%s", method);
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
}

static void write_repo(void)
{
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("serve_repo"));
	snprintf(cfg_path, sizeof cfg_path, "%s",
		 tu_tmp_path("serve_cfg.json"));
	write_model("heat", 1, 1, X1, 1, 8, 2, 0, 0, "fno", 1);
	write_model("heat", 2, 1, X1, 1, 8, 2, 0, 0, "fno", 2);
	write_model("heatr", 1, 1, X1, 1, 8, 2, 2, 0, "pno-r", 3);
	write_model("drop", 1, 1, X1, 1, 8, 2, 0, 0.2f, "mc-dropout", 4);
	write_model("darcy", 1, 2, 8, 6, 8, 2, 0, 0, "fno", 5);
	/* slow enough to be in flight when a signal arrives */
	write_model("slow", 1, 1, 1024, 1, 32, 4, 2, 0, "pno-r", 6);
}

static void write_config(const char *text)
{
	char tmp[1100];
	snprintf(tmp, sizeof tmp, "%s.tmp", cfg_path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, cfg_path), 0);
}

/* ---- the server process ---- */

struct srv {
	pid_t pid;
	int port;
	char port_file[1024], log[1024];
};
static struct srv S;
static pid_t started[16];	/* killed at teardown if a test failed */
static int nstarted;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void start_server(struct srv *s, const char *tag, const char *extra1,
			 const char *extra2)
{
	char pf[64], lg[64];
	snprintf(pf, sizeof pf, "serve_port_%s", tag);
	snprintf(lg, sizeof lg, "serve_log_%s", tag);
	snprintf(s->port_file, sizeof s->port_file, "%s", tu_tmp_path(pf));
	snprintf(s->log, sizeof s->log, "%s", tu_tmp_path(lg));
	unlink(s->port_file);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		char err[1100];
		snprintf(err, sizeof err, "%s.stderr", s->log);
		/* not the test's stdout: a pipe reader would wait for us */
		if (!freopen(err, "w", stdout) || !freopen(err, "a", stderr))
			_exit(127);
		const char *argv[32] = {PNO_BIN, "serve", "--repository", repo,
					"--port", "0", "--port-file",
					s->port_file, "--config", cfg_path,
					"--log-file", s->log,
					"--compute-threads", "1",
					"--threads", "4",
					/* the protocol here; authentication
					 * in test_serve_secure.c */
					"--auth", "false"};
		int n = 18;
		if (extra1)
			argv[n++] = extra1;
		if (extra2)
			argv[n++] = extra2;
		argv[n] = NULL;
		execv(PNO_BIN, (char *const *)argv);
		_exit(127);
	}
	if (nstarted < 16)
		started[nstarted++] = s->pid;
	double t0 = now_s();
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
		if (now_s() - t0 > 30)
			fail_msg("no port file after 30 s");
		usleep(10000);
	}
}

static int stop_server(struct srv *s, int sig, double timeout)
{
	int st = -1;
	if (s->pid <= 0)
		return -1;
	kill(s->pid, sig);
	double t0 = now_s();
	while (waitpid(s->pid, &st, WNOHANG) != s->pid) {
		if (now_s() - t0 > timeout) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->pid = 0;
			return -1;
		}
		usleep(5000);
	}
	s->pid = 0;
	return st;
}

/* ---- HTTP ---- */

struct resp {
	long code;
	char *body;
	size_t len;
	char hdr[4096];
	size_t hlen;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	char *b = realloc(r->body, r->len + sz * n + 1);
	if (!b)
		return 0;
	r->body = b;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = 0;
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t k = sz * n;
	if (r->hlen + k < sizeof r->hdr) {
		memcpy(r->hdr + r->hlen, p, k);
		r->hlen += k;
		r->hdr[r->hlen] = 0;
	}
	return k;
}

static const char *header(const struct resp *r, const char *name)
{
	static __thread char v[256];
	size_t n = strlen(name);
	for (const char *p = r->hdr; *p;) {
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			p += n + 1;
			while (*p == ' ')
				p++;
			size_t k = strcspn(p, "\r\n");
			snprintf(v, sizeof v, "%.*s", (int)k, p);
			return v;
		}
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	return NULL;
}

/* method, path; body (len, -1: strlen) with extra headers; chunked: send
 * the body with Transfer-Encoding: chunked */
static void http_ex(int port, const char *method, const char *path,
		    const void *body, long len, const char *h1, int chunked,
		    struct resp *r)
{
	char url[1200];
	CURL *c = curl_easy_init();
	struct curl_slist *hs = NULL;
	memset(r, 0, sizeof *r);
	assert_non_null(c);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	hs = curl_slist_append(hs, "Expect:");
	if (h1)
		hs = curl_slist_append(hs, h1);
	if (body) {
		if (len < 0)
			len = (long)strlen(body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, len);
		hs = curl_slist_append(hs, "Content-Type: application/json");
		if (chunked) {
			hs = curl_slist_append(hs, "Transfer-Encoding: chunked");
		}
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -(long)rc;
	curl_slist_free_all(hs);
	curl_easy_cleanup(c);
	if (!r->body)
		r->body = calloc(1, 1);
}

static void http(const char *method, const char *path, const char *body,
		 struct resp *r)
{
	http_ex(S.port, method, path, body, -1, NULL, 0, r);
}

static json_t *parse_json(const struct resp *r, size_t len)
{
	json_error_t e;
	json_t *j = json_loadb(r->body, len ? len : r->len, 0, &e);
	if (!j)
		fail_msg("response is not JSON (%s): %.300s", e.text, r->body);
	return j;
}

/* a status and, for errors, an {"error": ...} containing `sub` */
static void expect_error(const struct resp *r, long code, const char *sub)
{
	if (r->code != code)
		fail_msg("status %ld, want %ld: %.400s", r->code, code, r->body);
	json_t *j = parse_json(r, 0);
	const char *e = json_string_value(json_object_get(j, "error"));
	if (!e)
		fail_msg("no \"error\" string in %.300s", r->body);
	if (sub && !strstr(e, sub))
		fail_msg("error \"%s\" lacks \"%s\"", e, sub);
	json_decref(j);
}

/* ---- request bodies ---- */

static void input_field(float *x, int n, uint64_t seed)
{
	pno_rng_normal(x, (size_t)n, seed, 9, 0);
}

/* {"inputs":[... flat data ...]} with optional extra top-level members */
static char *infer_body(const float *x, int B, int C, int X, int Y,
			const char *extra)
{
	size_t n = (size_t)B * C * X * Y, cap = 256 + 20 * n + 2048;
	char *b = malloc(cap), *p = b;
	p += sprintf(p, "{%s%s\"inputs\":[{\"name\":\"input\",\"datatype\":"
		     "\"FP32\",\"shape\":[%d,%d,%d", extra ? extra : "",
		     extra ? "," : "", B, C, X);
	if (Y > 1)
		p += sprintf(p, ",%d", Y);
	p += sprintf(p, "],\"data\":[");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%.9g", i ? "," : "", (double)x[i]);
	sprintf(p, "]}]}");
	return b;
}

/* an output tensor's values from a JSON response (floats) */
static float *output(json_t *j, const char *name, size_t *n, int *rank,
		     int64_t shape[6])
{
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(j, "outputs"), i, o) {
		if (strcmp(json_string_value(json_object_get(o, "name")), name))
			continue;
		json_t *sh = json_object_get(o, "shape"), *d, *v;
		size_t k;
		*rank = (int)json_array_size(sh);
		json_array_foreach(sh, k, v) shape[k] = json_integer_value(v);
		d = json_object_get(o, "data");
		assert_true(json_is_array(d));
		*n = json_array_size(d);
		float *f = malloc(*n * sizeof *f + 1);
		json_array_foreach(d, k, v) f[k] = (float)json_number_value(v);
		return f;
	}
	fail_msg("no output \"%s\"", name);
	return NULL;
}

static int bits_equal(const float *a, const float *b, size_t n)
{
	return !memcmp(a, b, n * sizeof *a);
}

/* the library's answer at one input: an independent path to the same
 * numbers (same file, same seed, same thread count) */
static void reference(const char *name, int v, const float *x, int S,
		      uint64_t seed, const float *q, int nq,
		      struct pno_prediction *p, struct pno_model *m)
{
	char path[1100];
	model_path(path, sizeof path, name, v);
	assert_status(pno_model_load(m, path, 0, 0, 8), PNO_STATUS_OK);
	assert_status(pno_model_predict(m, x, S, seed, q, nq, p),
		      PNO_STATUS_OK);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	(void)state;
	sanitized = getenv("PNO_SANITIZED") != NULL;
	curl_global_init(CURL_GLOBAL_ALL);
	pno_threads_set(1);
	write_repo();
	write_config("{\"max_samples\": 64, \"default_samples\": 8, "
		     "\"max_batch\": 16, \"max_queue_delay_us\": 20000, "
		     "\"max_body_bytes\": 200000, \"max_queue_size\": 64, "
		     "\"max_json_elements\": 50000}\n");
	start_server(&S, "main", NULL, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (S.pid > 0)
		stop_server(&S, SIGTERM, 30);
	for (int i = 0; i < nstarted; i++)
		if (kill(started[i], 0) == 0 &&
		    waitpid(started[i], NULL, WNOHANG) == 0) {
			kill(started[i], SIGKILL);
			waitpid(started[i], NULL, 0);
		}
	curl_global_cleanup();
	return 0;
}

/* ---- endpoints ---- */

static void test_health_and_metadata(void **state)
{
	struct resp r;
	(void)state;
	http("GET", "/v2/health/live", NULL, &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	http("GET", "/v2/health/ready", NULL, &r);
	assert_int_equal(r.code, 200);
	free(r.body);

	http("GET", "/v2", NULL, &r);
	assert_int_equal(r.code, 200);
	json_t *j = parse_json(&r, 0);
	assert_string_equal(json_string_value(json_object_get(j, "name")),
			    "pno");
	json_t *ext = json_object_get(j, "extensions"), *e;
	size_t i;
	int bin = 0;
	json_array_foreach(ext, i, e) bin |= !strcmp(json_string_value(e),
						     "binary_tensor_data");
	assert_true(bin);
	json_decref(j);
	free(r.body);

	http("GET", "/v2/models/heat", NULL, &r);
	assert_int_equal(r.code, 200);
	j = parse_json(&r, 0);
	json_t *vs = json_object_get(j, "versions");
	assert_int_equal(json_array_size(vs), 2);
	assert_string_equal(json_string_value(json_array_get(vs, 0)), "1");
	assert_string_equal(json_string_value(json_array_get(vs, 1)), "2");
	assert_string_equal(json_string_value(json_object_get(j, "platform")),
			    "pno");
	json_t *in = json_array_get(json_object_get(j, "inputs"), 0);
	assert_string_equal(json_string_value(json_object_get(in, "name")),
			    "input");
	assert_string_equal(json_string_value(json_object_get(in, "datatype")),
			    "FP32");
	json_t *sh = json_object_get(in, "shape");
	assert_int_equal(json_array_size(sh), 3);
	assert_int_equal(json_integer_value(json_array_get(sh, 0)), -1);
	assert_int_equal(json_integer_value(json_array_get(sh, 1)), 1);
	assert_int_equal(json_integer_value(json_array_get(sh, 2)), X1);
	json_t *pm = json_object_get(j, "parameters");
	assert_string_equal(json_string_value(json_object_get(pm, "method")),
			    "fno");
	assert_true(json_is_false(json_object_get(pm, "stochastic")));
	assert_string_equal(json_string_value(json_object_get(pm, "version")),
			    "2");
	json_decref(j);
	free(r.body);

	http("GET", "/v2/models/heatr/versions/1", NULL, &r);
	assert_int_equal(r.code, 200);
	j = parse_json(&r, 0);
	pm = json_object_get(j, "parameters");
	assert_string_equal(json_string_value(json_object_get(pm, "method")),
			    "pno-r");
	assert_true(json_is_true(json_object_get(pm, "stochastic")));
	assert_true(json_is_true(json_object_get(pm, "decomposition")));
	json_decref(j);
	free(r.body);

	http("GET", "/v2/models/darcy", NULL, &r);
	j = parse_json(&r, 0);
	sh = json_object_get(json_array_get(json_object_get(j, "inputs"), 0),
			     "shape");
	assert_int_equal(json_array_size(sh), 4);
	assert_int_equal(json_integer_value(json_array_get(sh, 2)), 8);
	assert_int_equal(json_integer_value(json_array_get(sh, 3)), 6);
	json_decref(j);
	free(r.body);

	const char *ready[] = {"/v2/models/heat/ready",
			       "/v2/models/heat/versions/1/ready"};
	for (int k = 0; k < 2; k++) {
		http("GET", ready[k], NULL, &r);
		assert_int_equal(r.code, 200);
		free(r.body);
	}
}

static void test_routing_errors(void **state)
{
	struct resp r;
	(void)state;
	http("GET", "/v2/models/nosuch", NULL, &r);
	expect_error(&r, 404, "nosuch");
	free(r.body);
	http("GET", "/v2/models/heat/versions/7", NULL, &r);
	expect_error(&r, 404, "version 7");
	free(r.body);
	http("GET", "/v2/models/heat/versions/7/ready", NULL, &r);
	expect_error(&r, 404, NULL);
	free(r.body);
	http("POST", "/v2/models/nosuch/infer", "{}", &r);
	expect_error(&r, 404, "nosuch");
	free(r.body);
	http("GET", "/v2/nothing/here", NULL, &r);
	expect_error(&r, 404, NULL);
	free(r.body);
	http("GET", "/v2/models/../../etc/infer", NULL, &r);
	assert_int_equal(r.code, 404);
	free(r.body);
	http("POST", "/v2/health/live", "{}", &r);
	expect_error(&r, 405, NULL);
	assert_string_equal(header(&r, "Allow"), "GET");
	free(r.body);
	http("GET", "/v2/models/heat/infer", NULL, &r);
	expect_error(&r, 405, NULL);
	assert_string_equal(header(&r, "Allow"), "POST");
	free(r.body);
	http("DELETE", "/v2/models/heat", NULL, &r);
	expect_error(&r, 405, NULL);
	free(r.body);
}

/* ---- inference ---- */

static void test_infer_json(void **state)
{
	(void)state;
	float x[X1], q[2] = {0.1f, 0.9f};
	struct resp r;
	input_field(x, X1, 1);
	char *body = infer_body(x, 1, 1, X1, 1, "\"id\":\"req-\\\"42\\\"\","
				"\"parameters\":{\"num_samples\":5,\"seed\":11,"
				"\"quantiles\":[0.1,0.9]}");
	http("POST", "/v2/models/heatr/infer", body, &r);
	if (r.code != 200)
		fail_msg("%ld %s", r.code, r.body);
	assert_string_equal(header(&r, "Content-Type"), "application/json");
	json_t *j = parse_json(&r, 0);
	assert_string_equal(json_string_value(json_object_get(j, "id")),
			    "req-\"42\"");
	assert_string_equal(json_string_value(json_object_get(j, "model_name")),
			    "heatr");
	assert_string_equal(json_string_value(json_object_get(j,
					      "model_version")), "1");
	struct pno_prediction p = {0};
	struct pno_model m;
	reference("heatr", 1, x, 5, 11, q, 2, &p, &m);
	const char *names[] = {"mean", "std", "quantile_0.1", "quantile_0.9",
			       "aleatoric_variance", "epistemic_variance"};
	const float *want[] = {p.mean, p.std, p.quantiles, p.quantiles + X1,
			       p.aleatoric, p.epistemic};
	for (int k = 0; k < 6; k++) {
		size_t n;
		int rank;
		int64_t sh[6];
		float *f = output(j, names[k], &n, &rank, sh);
		assert_int_equal(n, X1);
		assert_int_equal(rank, 3);
		assert_int_equal(sh[0], 1);
		assert_int_equal(sh[2], X1);
		if (!bits_equal(f, want[k], X1))
			fail_msg("%s differs from pno_model_predict (max |d| "
				 "%g)", names[k],
				 tu_max_abs_diff(f, want[k], X1));
		free(f);
	}
	/* quantiles in order, std > 0 for the stochastic model */
	size_t n;
	int rank;
	int64_t sh[6];
	float *lo = output(j, "quantile_0.1", &n, &rank, sh);
	float *hi = output(j, "quantile_0.9", &n, &rank, sh);
	for (int i = 0; i < X1; i++)
		assert_true(lo[i] <= hi[i]);
	free(lo);
	free(hi);
	json_t *pr = json_object_get(j, "parameters");
	assert_int_equal(json_integer_value(json_object_get(pr, "num_samples")),
			 5);
	assert_int_equal(json_integer_value(json_object_get(pr, "seed")), 11);
	json_decref(j);
	free(r.body);
	free(body);

	/* the same input as nested data gives the same bytes of outputs */
	char nested[8192], *pn = nested;
	pn += sprintf(pn, "{\"parameters\":{\"num_samples\":5,\"seed\":11,"
		      "\"quantiles\":[0.1,0.9]},\"inputs\":[{\"name\":"
		      "\"input\",\"datatype\":\"FP64\",\"shape\":[1,1,%d],"
		      "\"data\":[[[", X1);
	for (int i = 0; i < X1; i++)
		pn += sprintf(pn, "%s%.9g", i ? "," : "", (double)x[i]);
	sprintf(pn, "]]]}],\"outputs\":[{\"name\":\"mean\"},{\"name\":"
		"\"samples\"}]}");
	http("POST", "/v2/models/heatr/versions/1/infer", nested, &r);
	assert_int_equal(r.code, 200);
	j = parse_json(&r, 0);
	assert_int_equal(json_array_size(json_object_get(j, "outputs")), 2);
	float *f = output(j, "mean", &n, &rank, sh);
	assert_true(bits_equal(f, p.mean, X1));
	free(f);
	f = output(j, "samples", &n, &rank, sh);
	assert_int_equal(rank, 4);
	assert_int_equal(sh[1], 5);
	assert_int_equal(n, 5 * X1);
	assert_true(bits_equal(f, p.samples, 5 * X1));
	free(f);
	assert_null(json_object_get(j, "id"));
	json_decref(j);
	free(r.body);
	pno_prediction_free(&p);
	pno_model_free(&m);

	/* the default version is the highest: version 2's weights */
	body = infer_body(x, 1, 1, X1, 1, NULL);
	http("POST", "/v2/models/heat/infer", body, &r);
	assert_int_equal(r.code, 200);
	j = parse_json(&r, 0);
	assert_string_equal(json_string_value(json_object_get(j,
					      "model_version")), "2");
	f = output(j, "mean", &n, &rank, sh);
	reference("heat", 2, x, 8, 0, NULL, 0, &p, &m);
	assert_true(bits_equal(f, p.mean, X1));
	/* a deterministic model: std 0, default samples 8 */
	float *sd = output(j, "std", &n, &rank, sh);
	for (int i = 0; i < X1; i++)
		assert_true(sd[i] == 0.0f);
	pr = json_object_get(j, "parameters");
	assert_int_equal(json_integer_value(json_object_get(pr, "num_samples")),
			 8);
	/* default quantiles 0.05 and 0.95 */
	free(output(j, "quantile_0.05", &n, &rank, sh));
	free(output(j, "quantile_0.95", &n, &rank, sh));
	free(sd);
	free(f);
	json_decref(j);
	free(r.body);
	free(body);
	pno_prediction_free(&p);
	pno_model_free(&m);
}

static void test_infer_2d_and_batch(void **state)
{
	(void)state;
	enum { B = 3, P2 = 8 * 6 };
	float x[B * P2];
	struct resp r;
	input_field(x, B * P2, 2);
	char *body = infer_body(x, B, 1, 8, 6, "\"parameters\":{\"seed\":3,"
				"\"num_samples\":2,\"quantiles\":[]}");
	http("POST", "/v2/models/darcy/infer", body, &r);
	if (r.code != 200)
		fail_msg("%ld %s", r.code, r.body);
	json_t *j = parse_json(&r, 0);
	size_t n;
	int rank;
	int64_t sh[6];
	float *f = output(j, "mean", &n, &rank, sh);
	assert_int_equal(rank, 4);
	assert_int_equal(sh[0], B);
	assert_int_equal(sh[2], 8);
	assert_int_equal(sh[3], 6);
	assert_int_equal(n, B * P2);
	assert_int_equal(json_array_size(json_object_get(j, "outputs")), 2);
	/* every item answered as if alone */
	for (int b = 0; b < B; b++) {
		struct pno_prediction p = {0};
		struct pno_model m;
		reference("darcy", 1, x + b * P2, 2, 3, NULL, 0, &p, &m);
		if (!bits_equal(f + b * P2, p.mean, P2))
			fail_msg("item %d differs from pno_model_predict (max "
				 "|d| %g)", b, tu_max_abs_diff(f + b * P2,
							      p.mean, P2));
		pno_prediction_free(&p);
		pno_model_free(&m);
	}
	assert_true(json_integer_value(json_object_get(json_object_get(j,
		"parameters"), "batch_size")) >= B);
	free(f);
	json_decref(j);
	free(r.body);
	free(body);
}

/* outputs of a stochastic model by seed, as raw binary bytes */
static void samples_for_seed(long seed, struct resp *r)
{
	float x[X1];
	char extra[256];
	input_field(x, X1, 4);
	if (seed >= 0)
		snprintf(extra, sizeof extra, "\"parameters\":{\"seed\":%ld,"
			 "\"num_samples\":6,\"return_samples\":true,"
			 "\"binary_data_output\":true}", seed);
	else
		snprintf(extra, sizeof extra, "\"parameters\":{"
			 "\"num_samples\":6,\"return_samples\":true,"
			 "\"binary_data_output\":true}");
	char *body = infer_body(x, 1, 1, X1, 1, extra);
	http("POST", "/v2/models/drop/infer", body, r);
	assert_int_equal(r->code, 200);
	free(body);
}

static void test_seeds(void **state)
{
	(void)state;
	struct resp a, b, c, d;
	samples_for_seed(7, &a);
	samples_for_seed(7, &b);
	samples_for_seed(8, &c);
	samples_for_seed(-1, &d);
	size_t ha = strtoul(header(&a, "Inference-Header-Content-Length"),
			    NULL, 10);
	size_t hc = strtoul(header(&c, "Inference-Header-Content-Length"),
			    NULL, 10);
	/* mean, std, 2 quantiles, samples: (4 + 6) * X1 floats */
	assert_int_equal(a.len - ha, (4 + 6) * X1 * sizeof(float));
	assert_int_equal(a.len - ha, b.len -
			 strtoul(header(&b, "Inference-Header-Content-Length"),
				 NULL, 10));
	/* same seed: the same bytes; another seed: other samples */
	assert_memory_equal(a.body + ha, b.body + (b.len - (a.len - ha)),
			    a.len - ha);
	assert_memory_not_equal(a.body + ha, c.body + hc, a.len - ha);
	/* and the samples of a dropout model differ from each other */
	const float *s = (const float *)(a.body + ha) + 4 * X1;
	assert_memory_not_equal(s, s + X1, X1 * sizeof(float));
	free(a.body);
	free(b.body);
	free(c.body);
	free(d.body);
}

static void test_binary(void **state)
{
	(void)state;
	float x[2 * X1];
	input_field(x, 2 * X1, 5);
	char head[512];
	int hl = snprintf(head, sizeof head, "{\"id\":\"bin\",\"parameters\":"
			  "{\"seed\":5,\"num_samples\":3},\"inputs\":[{\"name\":"
			  "\"input\",\"datatype\":\"FP32\",\"shape\":[2,1,%d],"
			  "\"parameters\":{\"binary_data_size\":%zu}}],"
			  "\"outputs\":[{\"name\":\"mean\",\"parameters\":"
			  "{\"binary_data\":true}},{\"name\":\"std\"}]}", X1,
			  sizeof x);
	char *body = malloc(hl + sizeof x), hdr[96];
	memcpy(body, head, hl);
	memcpy(body + hl, x, sizeof x);
	snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %d", hl);
	struct resp r;
	http_ex(S.port, "POST", "/v2/models/heatr/infer", body, hl + sizeof x,
		hdr, 0, &r);
	if (r.code != 200)
		fail_msg("%ld %s", r.code, r.body);
	const char *h = header(&r, "Inference-Header-Content-Length");
	assert_non_null(h);
	size_t jl = strtoul(h, NULL, 10);
	assert_int_equal(r.len - jl, 2 * X1 * sizeof(float));
	assert_string_equal(header(&r, "Content-Type"),
			    "application/octet-stream");
	json_t *j = parse_json(&r, jl);
	json_t *o0 = json_array_get(json_object_get(j, "outputs"), 0);
	assert_string_equal(json_string_value(json_object_get(o0, "name")),
			    "mean");
	assert_null(json_object_get(o0, "data"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
		o0, "parameters"), "binary_data_size")), 2 * X1 * 4);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "bin");
	for (int b = 0; b < 2; b++) {
		struct pno_prediction p = {0};
		struct pno_model m;
		reference("heatr", 1, x + b * X1, 3, 5, NULL, 0, &p, &m);
		assert_memory_equal(r.body + jl + b * X1 * 4, p.mean, X1 * 4);
		size_t n;
		int rank;
		int64_t sh[6];
		float *sd = output(j, "std", &n, &rank, sh);
		assert_true(bits_equal(sd + b * X1, p.std, X1));
		free(sd);
		pno_prediction_free(&p);
		pno_model_free(&m);
	}
	json_decref(j);

	/* FP64 binary input: the same values give the same answer */
	{
		double xd[2 * X1];
		char h2[512], hdr2[96];
		for (int i = 0; i < 2 * X1; i++)
			xd[i] = x[i];
		int l2 = snprintf(h2, sizeof h2, "{\"parameters\":{\"seed\":5,"
				  "\"num_samples\":3,\"binary_data_output\":"
				  "true},\"inputs\":[{\"name\":\"input\","
				  "\"datatype\":\"FP64\",\"shape\":[2,1,%d],"
				  "\"parameters\":{\"binary_data_size\":%zu}}],"
				  "\"outputs\":[{\"name\":\"mean\"}]}", X1,
				  sizeof xd);
		char *b2 = malloc(l2 + sizeof xd);
		memcpy(b2, h2, l2);
		memcpy(b2 + l2, xd, sizeof xd);
		snprintf(hdr2, sizeof hdr2, "Inference-Header-Content-Length: "
			 "%d", l2);
		struct resp r2;
		http_ex(S.port, "POST", "/v2/models/heatr/infer", b2,
			l2 + sizeof xd, hdr2, 0, &r2);
		assert_int_equal(r2.code, 200);
		size_t j2 = strtoul(header(&r2, "Inference-Header-Content-"
					   "Length"), NULL, 10);
		assert_int_equal(r2.len - j2, 2 * X1 * 4);
		assert_memory_equal(r2.body + j2, r.body + jl, 2 * X1 * 4);
		free(r2.body);
		free(b2);
	}
	free(r.body);

	/* a NaN in binary data, and a size that does not match the shape */
	float bad = NAN;
	memcpy(body + hl + 7 * 4, &bad, 4);
	http_ex(S.port, "POST", "/v2/models/heatr/infer", body, hl + sizeof x,
		hdr, 0, &r);
	expect_error(&r, 400, "data[7]");
	free(r.body);
	http_ex(S.port, "POST", "/v2/models/heatr/infer", body,
		hl + sizeof x - 4, hdr, 0, &r);
	expect_error(&r, 400, "binary");
	free(r.body);
	free(body);
}

/* ---- validation ---- */

static void post_expect(const char *model, const char *body, long code,
			const char *sub)
{
	struct resp r;
	char path[256];
	snprintf(path, sizeof path, "/v2/models/%s/infer", model);
	http("POST", path, body, &r);
	expect_error(&r, code, sub);
	free(r.body);
}

static void test_validation(void **state)
{
	(void)state;
	float x[X1];
	input_field(x, X1, 6);
	post_expect("heat", "{\"inputs\": [", 400, "line 1");
	post_expect("heat", "{\"inputs\":\n [1,,2]}", 400, "line 2, column");
	post_expect("heat", "[1,2]", 400, "JSON object");
	post_expect("heat", "{}", 400, "inputs");
	post_expect("heat", "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
		    "\"INT32\",\"shape\":[1,1,32],\"data\":[]}]}", 400, "INT32");
	post_expect("heat", "{\"inputs\":[{\"name\":\"x\",\"datatype\":"
		    "\"FP32\",\"shape\":[1,1,32],\"data\":[]}]}", 400,
		    "\"input\"");
	post_expect("heat", "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
		    "\"FP32\",\"shape\":[1,2,32],\"data\":[]}]}", 400,
		    "expected [-1, 1, 32]");
	post_expect("heat", "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
		    "\"FP32\",\"shape\":[1,1,32,1],\"data\":[]}]}", 400,
		    "expected [-1, 1, 32]");
	post_expect("heat", "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
		    "\"FP32\",\"shape\":[1,1,32],\"data\":[1,2,3]}]}", 400,
		    "data has 3 values; shape [1, 1, 32] needs 32");
	post_expect("heat", "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
		    "\"FP32\",\"shape\":[1,1,32],\"data\":[1,\"a\"]}]}", 400,
		    "data[1] is not a number");

	char *b;
	/* 1e39 is a finite double but not a finite FP32 */
	x[3] = 1.0f;
	b = infer_body(x, 1, 1, X1, 1, NULL);
	char *p = strstr(b, "\"data\":[");
	p = strchr(p, ',') + 1;
	p = strchr(p, ',') + 1;
	p = strchr(p, ',') + 1;	/* element 3 */
	char *end = strchr(p, ',');
	char *rest = strdup(end);
	sprintf(p, "1e39%s", rest);
	free(rest);
	post_expect("heat", b, 400, "data[3] = 1e+39 is not a finite FP32");
	free(b);

	const char *bad_params[][2] = {
		{"\"parameters\":{\"num_samples\":0}", "num_samples"},
		{"\"parameters\":{\"num_samples\":65}", "[1, 64]"},
		{"\"parameters\":{\"num_samples\":2.5}", "num_samples"},
		{"\"parameters\":{\"seed\":-1}", "seed"},
		{"\"parameters\":{\"quantiles\":[0.5,1.0]}", "(0, 1)"},
		{"\"parameters\":{\"quantiles\":0.5}", "quantiles"},
		{"\"outputs\":[{\"name\":\"variance\"}]", "unknown output"},
		{"\"outputs\":[{\"name\":\"quantile_1.5\"}]", "(0, 1)"},
		{"\"id\":5", "id"},
	};
	for (size_t k = 0; k < sizeof bad_params / sizeof bad_params[0]; k++) {
		b = infer_body(x, 1, 1, X1, 1, bad_params[k][0]);
		post_expect("heat", b, 400, bad_params[k][1]);
		free(b);
	}

	/* 413: Content-Length over max_body_bytes (200000), refused before
	 * the body is read; and a chunked body that grows past it */
	size_t big = 300000;
	char *huge = malloc(big);
	memset(huge, ' ', big);
	huge[0] = '{';
	huge[big - 1] = '}';
	struct resp r;
	http_ex(S.port, "POST", "/v2/models/heat/infer", huge, (long)big, NULL,
		0, &r);
	expect_error(&r, 413, "max_body_bytes");
	free(r.body);
	http_ex(S.port, "POST", "/v2/models/heat/infer", huge, (long)big, NULL,
		1, &r);
	expect_error(&r, 413, "max_body_bytes");
	free(r.body);
	free(huge);
	/* the server still answers */
	b = infer_body(x, 1, 1, X1, 1, NULL);
	http("POST", "/v2/models/heat/infer", b, &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	free(b);
}

/* ---- input hardening (docs/serve.md "Limits") ---- */

/* a raw request (no client normalizes the path): the status code, the
 * body in out */
static long raw_http(const char *req, size_t len, char *out, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)S.port)};
	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	size_t sent = 0;
	while (sent < len) {
		ssize_t k = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
		if (k <= 0)
			break;	/* the server may answer and close early */
		sent += (size_t)k;
	}
	size_t got = 0;
	for (;;) {
		ssize_t k = recv(fd, out + got, size - 1 - got, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
		if (got + 1 >= size)
			break;
	}
	out[got] = 0;
	close(fd);
	long code = -1;
	if (sscanf(out, "HTTP/1.%*d %ld", &code) != 1)
		code = -1;
	return code;
}

static long raw_get(const char *method, const char *path, char *out,
		    size_t size)
{
	char req[1024];
	int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\n"
			 "Connection: close\r\nContent-Length: 2\r\n\r\n{}",
			 method, path);
	return raw_http(req, (size_t)n, out, size);
}

static void test_hardening(void **state)
{
	(void)state;
	static char out[1 << 16];
	/* a valid model just outside the repository: a name that escaped it
	 * would find this one */
	char outside[1024], saved[900];
	snprintf(saved, sizeof saved, "%s", repo);
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("serve_outside"));
	write_model("m", 1, 1, X1, 1, 8, 2, 0, 0, "fno", 9);
	snprintf(repo, sizeof repo, "%s", saved);
	const char *ob = strrchr(tu_tmp_path("serve_outside"), '/') + 1;
	snprintf(outside, sizeof outside, "%s/../%s/m/1", repo, ob);
	struct stat sb;
	assert_int_equal(stat(outside, &sb), 0);
	static const struct {
		const char *method, *path;
		long code;	/* 0: 400 or 404 */
	} bad[] = {
		{"POST", "/v2/models/%2e%2e/infer", 400},
		{"POST", "/v2/models/../infer", 400},
		{"POST", "/v2/models/./infer", 400},
		{"GET", "/v2/models/%2E%2e", 400},
		{"GET", "/v2/models/..", 400},
		{"POST", "/v2/models/a/b/infer", 404},
		{"GET", "/v2/models/a%2fb", 0},
		{"GET", "/v2/models/x%00", 0},
		{"GET", "/v2/models/x%00y/ready", 0},
		{"GET", "/v2/models/h%20eat", 400},
		{"GET", "/v2/models/heat/versions/1%2e", 400},
		{"GET", "/v2/models/heat/versions/..", 400},
		{"POST", "/v2/models/..%2fOUT%2fm/infer", 0},
		{"POST", "/v2/models/%2e%2e%2fOUT/infer", 0},
		{"POST", "/v2/repository/models/..%2fOUT/load", 0},
		{"POST", "/v2/repository/models/%2e%2e/load", 400},
		{"POST", "/v2/repository/models/m%5c..%5c/load", 400},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char path[256];
		const char *o = strstr(bad[i].path, "OUT");
		if (o)	/* the directory beside the repository */
			snprintf(path, sizeof path, "%.*s%s%s",
				 (int)(o - bad[i].path), bad[i].path, ob, o + 3);
		else
			snprintf(path, sizeof path, "%s", bad[i].path);
		long code = raw_get(bad[i].method, path, out, sizeof out);
		if (bad[i].code ? code != bad[i].code : code != 400 &&
		    code != 404)
			fail_msg("%s %s: %ld: %.300s", bad[i].method, path,
				 code, out);
		if (!strstr(out, "{\"error\":"))
			fail_msg("%s: no JSON error: %.300s", bad[i].path, out);
	}
	char longname[300] = "/v2/models/";
	memset(longname + 11, 'a', 128);
	longname[139] = 0;
	assert_int_equal(raw_get("GET", longname, out, sizeof out), 400);
	longname[138] = 0;	/* 127 characters: valid, not there */
	assert_int_equal(raw_get("GET", longname, out, sizeof out), 404);
	/* nothing outside was loaded: no model "m" is served */
	struct resp r;
	http("GET", "/v2/models/m", NULL, &r);
	expect_error(&r, 404, "\"m\" not found");
	free(r.body);

	/* headers: past max_header_bytes (16384) our 431; far past the
	 * daemon's connection memory (2 x 16384 + 32768) its own answer */
	static char big[300000];
	int n = sprintf(big, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"
			"Connection: close\r\nX-Pad: ");
	memset(big + n, 'a', 17000);
	n += 17000;
	n += sprintf(big + n, "\r\n\r\n");
	long code = raw_http(big, (size_t)n, out, sizeof out);
	if (code != 431 || !strstr(out, "exceed max_header_bytes (16384)"))
		fail_msg("17000-byte header: %ld %.300s", code, out);
	n = sprintf(big, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"
		    "Connection: close\r\n");
	for (int i = 0; i < 200; i++)	/* many headers: the sum counts */
		n += sprintf(big + n, "X-H%d: %0100d\r\n", i, i);
	n += sprintf(big + n, "\r\n");
	assert_int_equal(raw_http(big, (size_t)n, out, sizeof out), 431);
	n = sprintf(big, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"
		    "Connection: close\r\nX-Pad: ");
	memset(big + n, 'a', 200000);
	n += 200000;
	n += sprintf(big + n, "\r\n\r\n");
	code = raw_http(big, (size_t)n, out, sizeof out);
	print_message("200000-byte header: the daemon answers %ld\n", code);
	assert_true(code == 431 || code == 413);
	/* the server is still there */
	http("GET", "/v2/health/live", NULL, &r);
	assert_int_equal(r.code, 200);
	free(r.body);

	/* 100000 '[': refused by the pre-scan, fast */
	char *deep = malloc(100001);
	memset(deep, '[', 100000);
	deep[100000] = 0;
	double t0 = now_s();
	http("POST", "/v2/models/heat/infer", deep, &r);
	double dt = now_s() - t0;
	expect_error(&r, 400, "max_json_depth (32) at byte 32");
	free(r.body);
	free(deep);
	print_message("100000 '[' over HTTP: 400 in %.2f ms\n", 1e3 * dt);
	assert_true(dt < 2.0);
	/* elements: 60000 zeros past max_json_elements 50000 */
	char *many = malloc(200000), *p = many;
	p += sprintf(p, "{\"inputs\":[{\"data\":[");
	for (int i = 0; i < 60000; i++)
		p += sprintf(p, "%s0", i ? "," : "");
	sprintf(p, "]}]}");
	http("POST", "/v2/models/heat/infer", many, &r);
	expect_error(&r, 400, "max_json_elements (50000)");
	free(r.body);
	free(many);
	/* total samples: 65 items x 64 samples = 4160 > 4096; 64 x 64 is
	 * served */
	float *x = malloc(sizeof(float) * 65 * X1);
	input_field(x, 65 * X1, 4);
	char *body = infer_body(x, 65, 1, X1, 1, "\"parameters\":{"
				"\"num_samples\":64,\"quantiles\":[]}");
	http("POST", "/v2/models/heat/infer", body, &r);
	expect_error(&r, 400, "65 items x 64 samples = 4160 exceeds "
		     "max_total_samples (4096)");
	free(r.body);
	free(body);
	body = infer_body(x, 64, 1, X1, 1, "\"parameters\":{"
			  "\"num_samples\":64,\"quantiles\":[]}");
	http("POST", "/v2/models/heat/infer", body, &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	free(body);
	free(x);
}

/* ---- metrics: a strict text-format 0.0.4 parser ---- */

struct fam {
	char name[128], type[16];
};

/* Checks the whole exposition; returns the value of the sample whose
 * name is `want` and whose labels contain every "k=\"v\"" in `labels`
 * (NULL-terminated), NAN if absent. */
static double metrics_check(const char *text, const char *want,
			    const char *const *labels)
{
	struct fam fams[128];
	int nf = 0;
	double found = NAN;
	/* histogram state of the series being read */
	char series[512] = "";
	double last_le = -INFINITY, last_cnt = 0, inf_cnt = -1;
	const char *line = text;
	while (*line) {
		const char *nl = strchr(line, '\n');
		assert_non_null(nl);	/* every line ends in \n */
		char l[1024];
		snprintf(l, sizeof l, "%.*s", (int)(nl - line), line);
		line = nl + 1;
		if (!strncmp(l, "# HELP ", 7))
			continue;
		if (!strncmp(l, "# TYPE ", 7)) {
			struct fam *f = &fams[nf];
			assert_int_equal(sscanf(l + 7, "%127s %15s", f->name,
						f->type), 2);
			for (int i = 0; i < nf; i++)
				if (!strcmp(fams[i].name, f->name))
					fail_msg("two TYPE lines for %s",
						 f->name);
			assert_true(!strcmp(f->type, "counter") ||
				    !strcmp(f->type, "gauge") ||
				    !strcmp(f->type, "histogram"));
			if (!strcmp(f->type, "counter"))
				assert_non_null(strstr(f->name, "_total"));
			nf++;
			continue;
		}
		assert_true(l[0] != '#' && l[0]);
		/* name{labels} value */
		char name[256], lab[512] = "";
		size_t k = strcspn(l, "{ ");
		snprintf(name, sizeof name, "%.*s", (int)k, l);
		const char *v = l + k;
		if (*v == '{') {
			const char *close = strchr(v, '}');
			assert_non_null(close);
			snprintf(lab, sizeof lab, "%.*s", (int)(close - v - 1),
				 v + 1);
			v = close + 1;
		}
		assert_true(*v == ' ');
		char *endp;
		double val = strtod(v + 1, &endp);
		assert_true(endp != v + 1);
		assert_true(nf > 0);
		struct fam *f = &fams[nf - 1];
		size_t fl = strlen(f->name);
		assert_true(!strncmp(name, f->name, fl));
		const char *suf = name + fl;
		if (!strcmp(f->type, "histogram")) {
			assert_true(!strcmp(suf, "_bucket") ||
				    !strcmp(suf, "_sum") ||
				    !strcmp(suf, "_count"));
			if (!strcmp(suf, "_bucket")) {
				const char *le = strstr(lab, "le=\"");
				assert_non_null(le);
				char base[512];	/* family + other labels */
				snprintf(base, sizeof base, "%s{%.*s", name,
					 (int)(le - lab), lab);
				if (strcmp(base, series)) {
					snprintf(series, sizeof series, "%s",
						 base);
					last_le = -INFINITY;
					last_cnt = 0;
					inf_cnt = -1;
				}
				double b = !strncmp(le + 4, "+Inf", 4)
						   ? INFINITY
						   : strtod(le + 4, NULL);
				if (!(b > last_le))
					fail_msg("buckets out of order: %s", l);
				if (val < last_cnt)
					fail_msg("buckets not cumulative: %s",
						 l);
				last_le = b;
				last_cnt = val;
				if (isinf(b))
					inf_cnt = val;
			} else if (!strcmp(suf, "_count")) {
				if (inf_cnt != val)
					fail_msg("+Inf bucket %g != _count %g "
						 "(%s)", inf_cnt, val, l);
			}
		} else {
			assert_true(*suf == 0);
		}
		if (!strcmp(name, want)) {
			int ok = 1;
			for (int i = 0; labels && labels[i]; i++)
				ok &= strstr(lab, labels[i]) != NULL;
			if (ok)
				found = isnan(found) ? val : found + val;
		}
	}
	return found;
}

static char *get_metrics(int port)
{
	struct resp r;
	http_ex(port, "GET", "/metrics", NULL, 0, NULL, 0, &r);
	assert_int_equal(r.code, 200);
	assert_non_null(strstr(header(&r, "Content-Type"), "0.0.4"));
	return r.body;
}

static void test_metrics(void **state)
{
	(void)state;
	char *t = get_metrics(S.port);
	const char *heat2[] = {"model=\"heat\"", "version=\"2\"",
			       "code=\"200\"", NULL};
	const char *c400[] = {"model=\"heat\"", "code=\"400\"", NULL};
	const char *hv[] = {"model=\"heat\"", "version=\"2\"", NULL};
	const char *names[] = {"pno_request_duration_seconds_count",
			       "pno_queue_duration_seconds_count",
			       "pno_compute_duration_seconds_count",
			       "pno_batch_size_count"};
	/* at least the successful requests sent so far */
	double ok2 = metrics_check(t, "pno_requests_total", heat2);
	if (!(ok2 >= 2))
		fail_msg("pno_requests_total heat 2 200 = %g in\n%s", ok2, t);
	assert_true(metrics_check(t, "pno_requests_total", c400) >= 15);
	for (int k = 0; k < 4; k++)
		assert_true(metrics_check(t, names[k], hv) >= 2);
	assert_true(metrics_check(t, "pno_samples_total", hv) >= 8);
	assert_false(isnan(metrics_check(t, "pno_queue_depth", hv)));
	/* in flight until the answer is sent and the connection's request
	 * completed: the last one may still be finishing */
	for (double t0 = now_s();
	     metrics_check(t, "pno_inflight_requests", NULL) != 0;) {
		if (now_s() - t0 > 5)
			fail_msg("pno_inflight_requests stays %g",
				 metrics_check(t, "pno_inflight_requests",
					       NULL));
		usleep(10000);
		free(t);
		t = get_metrics(S.port);
	}
	assert_true(metrics_check(t, "pno_model_load_seconds", hv) > 0);
	assert_false(isnan(metrics_check(t, "pno_config_reloads_total", NULL)));
	assert_false(isnan(metrics_check(t, "pno_config_reload_failures_total", NULL)));
	assert_true(metrics_check(t, "process_resident_memory_bytes", NULL) > 0);
	free(t);
}

/* ---- load ---- */

struct client {
	int port, n_ok, n_fail, stop_after;
	const char *model;
	_Atomic int *stop;
	double max_queue_us, max_compute_us;
	double queue_us[64];		/* per request, the first 64 */
	int nq;
	long last_fail;
	char fail_body[256];
	double t_end;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	float x[X1];
	input_field(x, X1, 8);
	char *body = infer_body(x, 1, 1, X1, 1, "\"parameters\":{"
				"\"num_samples\":4,\"quantiles\":[]}");
	char path[128];
	snprintf(path, sizeof path, "/v2/models/%s/infer", c->model);
	for (int i = 0; !atomic_load(c->stop) &&
			(c->stop_after <= 0 || i < c->stop_after); i++) {
		struct resp r;
		http_ex(c->port, "POST", path, body, -1, NULL, 0, &r);
		if (r.code == 200) {
			c->n_ok++;
			json_t *j = json_loadb(r.body, r.len, 0, NULL);
			json_t *p = json_object_get(j, "parameters");
			double qu = json_number_value(json_object_get(p,
							"queue_time_us"));
			double cu = json_number_value(json_object_get(p,
							"compute_time_us"));
			if (c->nq < 64)
				c->queue_us[c->nq++] = qu;
			if (qu > c->max_queue_us)
				c->max_queue_us = qu;
			if (cu > c->max_compute_us)
				c->max_compute_us = cu;
			json_decref(j);
		} else {
			c->n_fail++;
			c->last_fail = r.code;
			snprintf(c->fail_body, sizeof c->fail_body, "%s",
				 r.body);
		}
		free(r.body);
	}
	c->t_end = now_s();
	free(body);
	return NULL;
}

static void run_clients(struct client *c, pthread_t *th, int n, int port,
			const char *model, _Atomic int *stop, int per)
{
	for (int i = 0; i < n; i++) {
		memset(&c[i], 0, sizeof c[i]);
		c[i].port = port;
		c[i].model = model;
		c[i].stop = stop;
		c[i].stop_after = per;
		assert_int_equal(pthread_create(&th[i], NULL, client_main,
						&c[i]), 0);
	}
}

static void test_batching(void **state)
{
	(void)state;
	enum { N = 16 };
	struct client c[N];
	pthread_t th[N];
	_Atomic int stop = 0;
	const char *lv[] = {"model=\"drop\"", NULL};
	char *t = get_metrics(S.port);
	double s0 = metrics_check(t, "pno_batch_size_sum", lv);
	double n0 = metrics_check(t, "pno_batch_size_count", lv);
	free(t);
	if (isnan(s0))
		s0 = n0 = 0;
	int per = sanitized ? 3 : 20;
	run_clients(c, th, N, S.port, "drop", &stop, per);
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	double maxq = 0, maxc = 0;
	for (int i = 0; i < N; i++) {
		if (c[i].n_fail)
			fail_msg("client %d: %d failed (%ld %s)", i,
				 c[i].n_fail, c[i].last_fail, c[i].fail_body);
		assert_int_equal(c[i].n_ok, per);
		maxq = fmax(maxq, c[i].max_queue_us);
		maxc = fmax(maxc, c[i].max_compute_us);
	}
	t = get_metrics(S.port);
	double s1 = metrics_check(t, "pno_batch_size_sum", lv);
	double n1 = metrics_check(t, "pno_batch_size_count", lv);
	free(t);
	double avg = (s1 - s0) / (n1 - n0);
	print_message("batching: %d requests in %.0f batches, average batch "
		      "%.2f; longest queue wait %.1f ms, longest batch %.1f ms\n",
		      N * per, n1 - n0, avg, maxq / 1e3, maxc / 1e3);
	assert_true(s1 - s0 == N * per);	/* every item counted once */
	if (!sanitized)
		assert_true(avg > 4);
	/* no request waits longer than the queue delay (20 ms) plus one
	 * batch's execution: the worker guarantees it, the OS scheduler of a
	 * shared, loaded two-core machine does not (a descheduled worker or
	 * HTTP thread adds tens of ms; load averages of 10 were seen while
	 * other builds ran). So the bound (+10 ms) must hold for 90% of the
	 * requests; the count past it and the longest wait are printed. A
	 * batcher that waited a second window or per request fails it. */
	double bound = 20000 + maxc + 10000;
	int late = 0, nqs = 0;
	for (int i = 0; i < N; i++)
		for (int k = 0; k < c[i].nq; k++) {
			nqs++;
			late += c[i].queue_us[k] > bound;
		}
	print_message("batching: %d of %d requests waited longer than the "
		      "delay + one batch + 10 ms\n", late, nqs);
	if (!sanitized)
		assert_true(late * 10 <= nqs);
}

static void test_repository(void **state)
{
	(void)state;
	struct resp r;
	http("POST", "/v2/repository/index", "{}", &r);
	assert_int_equal(r.code, 200);
	json_t *j = parse_json(&r, 0);
	assert_int_equal(json_array_size(j), 6);	/* versions */
	json_decref(j);
	free(r.body);
	http("POST", "/v2/repository/models/darcy/unload", "{}", &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	http("GET", "/v2/models/darcy", NULL, &r);
	assert_int_equal(r.code, 404);
	free(r.body);
	http("POST", "/v2/repository/index", "{}", &r);
	assert_non_null(strstr(r.body, "UNAVAILABLE"));
	free(r.body);
	http("POST", "/v2/repository/models/darcy/load", "{}", &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	http("GET", "/v2/models/darcy/ready", NULL, &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	http("POST", "/v2/repository/models/nosuch/load", "{}", &r);
	expect_error(&r, 404, "nosuch");
	free(r.body);
	http("POST", "/v2/repository/models/nosuch/unload", "{}", &r);
	expect_error(&r, 404, "nosuch");
	free(r.body);
	http("GET", "/v2/repository/index", NULL, &r);
	assert_int_equal(r.code, 405);
	free(r.body);
}

static double reload_count(const char *which)
{
	char *t = get_metrics(S.port);
	double v = metrics_check(t, which, NULL);
	free(t);
	return v;
}

static void default_version_is(const char *model, const char *v)
{
	struct resp r;
	char path[128];
	snprintf(path, sizeof path, "/v2/models/%s", model);
	http("GET", path, NULL, &r);
	assert_int_equal(r.code, 200);
	json_t *j = parse_json(&r, 0);
	const char *got = json_string_value(json_object_get(json_object_get(
		j, "parameters"), "version"));
	if (strcmp(got, v))
		fail_msg("%s default version %s, want %s", model, got, v);
	json_decref(j);
	free(r.body);
}

static void wait_reloads(const char *which, double want)
{
	double t0 = now_s();
	while (reload_count(which) < want) {
		if (now_s() - t0 > 20)
			fail_msg("%s did not reach %g", which, want);
		usleep(20000);
	}
}

static void test_reload_under_load(void **state)
{
	(void)state;
	enum { N = 4 };
	struct client c[N];
	pthread_t th[N];
	_Atomic int stop = 0;
	run_clients(c, th, N, S.port, "heat", &stop, 0);
	usleep(100000);

	/* a new version and a changed config: applied, no request fails */
	double ok0 = reload_count("pno_config_reloads_total");
	double bad0 = reload_count("pno_config_reload_failures_total");
	write_model("heat", 3, 1, X1, 1, 8, 2, 0, 0, "fno", 7);
	write_config("{\"max_samples\": 64, \"default_samples\": 6, "
		     "\"max_batch\": 16, \"max_queue_delay_us\": 20000, "
		     "\"max_body_bytes\": 200000, \"max_queue_size\": 64}\n");
	kill(S.pid, SIGHUP);
	wait_reloads("pno_config_reloads_total", ok0 + 1);
	default_version_is("heat", "3");
	usleep(200000);

	/* SIGHUP reopened the log file (logrotate): the rotated file keeps
	 * the old lines, a new file gets the next ones */
	char rotated[1100];
	snprintf(rotated, sizeof rotated, "%s.1", S.log);
	assert_int_equal(rename(S.log, rotated), 0);
	double ok1 = reload_count("pno_config_reloads_total");
	kill(S.pid, SIGHUP);
	wait_reloads("pno_config_reloads_total", ok1 + 1);
	struct stat sb;
	assert_int_equal(stat(S.log, &sb), 0);
	assert_true(sb.st_size > 0);

	/* an invalid config: nothing changes, a failure is counted */
	write_config("{\"max_samples\": 64, \"no_such_key\": 1}\n");
	kill(S.pid, SIGHUP);
	wait_reloads("pno_config_reload_failures_total", bad0 + 1);
	/* the log says why */
	FILE *lf = fopen(S.log, "r");
	char line[2048];
	int why = 0;
	assert_non_null(lf);
	while (fgets(line, sizeof line, lf))
		why |= strstr(line, "reload_failed") &&
		       strstr(line, "no_such_key");
	fclose(lf);
	assert_true(why);
	/* a model that fails to load: the same */
	write_config("{\"max_samples\": 64, \"default_samples\": 6, "
		     "\"max_batch\": 16, \"max_queue_delay_us\": 20000, "
		     "\"max_body_bytes\": 200000, \"max_queue_size\": 64}\n");
	char dir[1100], path[1200];
	snprintf(dir, sizeof dir, "%s/heat/4", repo);
	mkdirs(dir);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	FILE *f = fopen(path, "w");
	fputs("not a model", f);
	fclose(f);
	kill(S.pid, SIGHUP);
	wait_reloads("pno_config_reload_failures_total", bad0 + 2);
	default_version_is("heat", "3");
	usleep(100000);
	atomic_store(&stop, 1);
	int total = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		if (c[i].n_fail)
			fail_msg("client %d: %d requests failed during reloads "
				 "(%ld %s)", i, c[i].n_fail, c[i].last_fail,
				 c[i].fail_body);
		total += c[i].n_ok;
	}
	print_message("reload under load: %d requests, 0 failed, 4 reloads "
		      "(2 applied, 2 rejected)\n", total);
	assert_true(total > 0);
	unlink(path);
	rmdir(dir);
	assert_true(reload_count("pno_config_reloads_total") == ok0 + 2);

	/* the new default_samples (6) is in force */
	float x[X1];
	input_field(x, X1, 1);
	char *body = infer_body(x, 1, 1, X1, 1, NULL);
	struct resp r;
	http("POST", "/v2/models/heat/infer", body, &r);
	assert_int_equal(r.code, 200);
	json_t *j = parse_json(&r, 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
		j, "parameters"), "num_samples")), 6);
	json_decref(j);
	free(r.body);
	free(body);
}

/* one request to a server, its status kept */
struct sreq {
	int port;
	const char *body;
	long code;
	int retry_after;		/* a Retry-After header came back */
	char err[256];
};

static void *sreq_main(void *arg)
{
	struct sreq *q = arg;
	struct resp rr;
	http_ex(q->port, "POST", "/v2/models/slow/infer", q->body, -1, NULL, 0,
		&rr);
	q->code = rr.code;
	q->retry_after = header(&rr, "Retry-After") != NULL;
	snprintf(q->err, sizeof q->err, "%s", rr.body);
	free(rr.body);
	return NULL;
}

/* shutdown under load: a server of its own */
static void test_shutdown_under_load(void **state)
{
	(void)state;
	struct srv s2;
	enum { N = 6 };
	pthread_t th[N];
	if (sanitized) {
		print_message("skipped under the sanitizers (load)\n");
		return;
	}
	start_server(&s2, "shutdown", NULL, NULL);
	/* long requests: 64 samples of a 1024-point model, run in turn */
	float x[1024];
	input_field(x, 1024, 3);
	char *body = infer_body(x, 1, 1, 1024, 1, "\"parameters\":{"
				"\"num_samples\":64}");
	struct resp r;
	double t0 = now_s();
	http_ex(s2.port, "POST", "/v2/models/slow/infer", body, -1, NULL, 0,
		&r);
	double one = now_s() - t0;
	assert_int_equal(r.code, 200);
	free(r.body);
	struct sreq sr[N];
	for (int i = 0; i < N; i++) {
		sr[i] = (struct sreq){s2.port, body, 0, 0, ""};
		pthread_create(&th[i], NULL, sreq_main, &sr[i]);
	}
	/* wait until they are in flight */
	double tw = now_s();
	for (;;) {
		char *t = get_metrics(s2.port);
		double inflight = metrics_check(t, "pno_inflight_requests", NULL);
		free(t);
		if (inflight >= N)
			break;
		if (now_s() - tw > 10)
			fail_msg("requests never in flight (%g)", inflight);
		usleep(2000);
	}
	double ts = now_s();
	kill(s2.pid, SIGTERM);
	/* readiness turns 503 within 100 ms; liveness stays 200 */
	double t503 = -1;
	while (now_s() - ts < 1) {
		http_ex(s2.port, "GET", "/v2/health/ready", NULL, 0, NULL, 0, &r);
		long code = r.code;
		free(r.body);
		if (code == 503) {
			t503 = now_s() - ts;
			break;
		}
		usleep(1000);
	}
	assert_true(t503 >= 0);
	http_ex(s2.port, "GET", "/v2/health/live", NULL, 0, NULL, 0, &r);
	assert_int_equal(r.code, 200);
	free(r.body);
	/* new inference: 503 with Retry-After */
	http_ex(s2.port, "POST", "/v2/models/slow/infer", body, -1, NULL, 0,
		&r);
	expect_error(&r, 503, "shutting down");
	assert_non_null(header(&r, "Retry-After"));
	free(r.body);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(sr[i].code, 200);
	}
	int st = -1;
	double tx = now_s();
	while (waitpid(s2.pid, &st, WNOHANG) != s2.pid) {
		if (now_s() - tx > 30)
			fail_msg("the server did not exit");
		usleep(5000);
	}
	print_message("shutdown: one request %.0f ms; readiness 503 after "
		      "%.1f ms; %d in-flight requests answered 200; exit %d "
		      "%.0f ms after SIGTERM\n", 1e3 * one, 1e3 * t503, N,
		      WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		      1e3 * (now_s() - ts));
	assert_true(t503 < 0.1);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	free(body);
}

/* a full queue answers 503 with Retry-After; the accepted ones 200 */
static void test_queue_full(void **state)
{
	(void)state;
	struct srv s4;
	enum { N = 6 };
	pthread_t th[N];
	struct sreq sr[N];
	start_server(&s4, "queue", "--max-queue-size=1", "--max-batch=1");
	float x[1024];
	input_field(x, 1024, 3);
	char *body = infer_body(x, 1, 1, 1024, 1, "\"parameters\":{"
				"\"num_samples\":64}");
	for (int i = 0; i < N; i++) {
		sr[i] = (struct sreq){s4.port, body, 0, 0, ""};
		pthread_create(&th[i], NULL, sreq_main, &sr[i]);
	}
	int ok = 0, full = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		if (sr[i].code == 200) {
			ok++;
		} else {
			assert_int_equal(sr[i].code, 503);
			assert_true(sr[i].retry_after);
			assert_non_null(strstr(sr[i].err, "queue"));
			full++;
		}
	}
	print_message("queue of 1: %d answered, %d refused with 503\n", ok,
		      full);
	assert_true(ok >= 1 && full >= 1);
	assert_int_equal(WEXITSTATUS(stop_server(&s4, SIGTERM, 30)), 0);
	free(body);
}

/* past exit_timeout_s the requests still queued are abandoned: exit 1 */
static void test_exit_timeout(void **state)
{
	(void)state;
	struct srv s5;
	enum { N = 4 };
	pthread_t th[N];
	struct sreq sr[N];
	start_server(&s5, "exit", "--exit-timeout-s=0", "--max-batch=1");
	float x[1024];
	input_field(x, 1024, 3);
	char *body = infer_body(x, 1, 1, 1024, 1, "\"parameters\":{"
				"\"num_samples\":64}");
	for (int i = 0; i < N; i++) {
		sr[i] = (struct sreq){s5.port, body, 0, 0, ""};
		pthread_create(&th[i], NULL, sreq_main, &sr[i]);
	}
	double tw = now_s();
	for (;;) {
		char *t = get_metrics(s5.port);
		double inflight = metrics_check(t, "pno_inflight_requests",
						NULL);
		free(t);
		if (inflight >= N)
			break;
		if (now_s() - tw > 10)
			fail_msg("requests never in flight (%g)", inflight);
		usleep(2000);
	}
	int st = stop_server(&s5, SIGTERM, 30);
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	int lost = 0;
	for (int i = 0; i < N; i++)
		lost += sr[i].code != 200;
	print_message("exit timeout 0: exit 1, %d of %d queued requests "
		      "abandoned\n", lost, N);
	/* (ThreadSanitizer's _exit finalizes for a while, the workers
	 * running meanwhile) */
	if (!sanitized)
		assert_true(lost >= 1);
	free(body);
}

/* a second SIGINT ends the process at once */
static void test_double_sigint(void **state)
{
	(void)state;
	struct srv s3;
	start_server(&s3, "sigint", NULL, NULL);
	kill(s3.pid, SIGINT);
	usleep(1000);
	int st = stop_server(&s3, SIGINT, 5);
	assert_true(WIFEXITED(st));
	/* 0 if the first SIGINT's drain finished first, else 130 */
	assert_true(WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 130);
}

static void test_bad_start(void **state)
{
	(void)state;
	char cmd[2048];
	/* an unknown flag and an out-of-range value: usage errors (2) */
	snprintf(cmd, sizeof cmd, "%s serve --repository %s --no-such 1 "
		 "2>/dev/null", PNO_BIN, repo);
	int st = system(cmd);
	assert_int_equal(WEXITSTATUS(st), 2);
	snprintf(cmd, sizeof cmd, "%s serve --repository %s --port 70000 "
		 "2>/dev/null", PNO_BIN, repo);
	st = system(cmd);
	assert_int_equal(WEXITSTATUS(st), 2);
	snprintf(cmd, sizeof cmd, "%s serve --help >/dev/null", PNO_BIN);
	st = system(cmd);
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_and_metadata),
		cmocka_unit_test(test_routing_errors),
		cmocka_unit_test(test_infer_json),
		cmocka_unit_test(test_infer_2d_and_batch),
		cmocka_unit_test(test_seeds),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_hardening),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_batching),
		cmocka_unit_test(test_repository),
		cmocka_unit_test(test_reload_under_load),
		cmocka_unit_test(test_shutdown_under_load),
		cmocka_unit_test(test_queue_full),
		cmocka_unit_test(test_exit_timeout),
		cmocka_unit_test(test_double_sigint),
		cmocka_unit_test(test_bad_start),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
