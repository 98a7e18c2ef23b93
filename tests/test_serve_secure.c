/* pno serve, hardening wired into the request path, end to end: the real
 * server (PNO_BIN serve) on an ephemeral loopback port driven with
 * libcurl. Authentication (wrong, missing, revoked by a keys-file edit +
 * SIGHUP, expired keys and sessions), the role of every endpoint,
 * sessions, the rate limiter (429 + Retry-After, a second key unaffected),
 * the circuit breaker on a model whose output is not finite, quality
 * gates refusing a version, and the audit log (records, kill -9 under
 * load, an I/O failure refusing the answer). */
#include "testutil.h"
#include "serve_internal.h"
#include "pno/fno.h"
#include "pno/model.h"

#include <curl/curl.h>
#include <jansson.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define X1 32

static char repo[900], keys_path[900], gates_repo[900], gates_path[900];
static const char *serve_repo = repo;	/* the one start_server serves */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- repository and keys ---- */

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

/* a small untrained fno; huge: the output projection's weights and the
 * output std 1e30 and 1e29 (finite: the loader accepts the file), so the output
 * overflows to Inf */
static void write_model_in(const char *root, const char *name, int v,
			   int huge, uint64_t seed)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = 8, .modes1 = 4, .modes2 = 1,
				 .layers = 2, .proj_hidden = 16};
	char dir[1024], path[1100];
	snprintf(dir, sizeof dir, "%s/%s/%d", root, name, v);
	mkdirs(dir);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_status(pno_fno_init(&m, &a, X1, 1, 2, seed), PNO_STATUS_OK);
	if (huge) {
		/* last layer only: no activation function ever sees an
		 * overflowed value (the library's fast exp has undefined
		 * behaviour on a non-finite input) */
		for (int i = 0; i < a.proj_hidden * a.out_ch; i++)
			m.p.proj2_w[i] = 1e30f;
		m.norm.out_std[0] = 1e29f;	/* the loader allows up to 1e30 */
	}
	snprintf(m.method, sizeof m.method, "fno");
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
}

static void write_model(const char *name, int v, int huge, uint64_t seed)
{
	write_model_in(repo, name, v, huge, seed);
}

/* a version of "qual" in the gates repository with a recorded
 * evaluation (rel_l2 < 0: none) */
static void write_judged_in(const char *root, int v, double rel_l2,
			   double crps)
{
	char path[1100], ev[512];
	write_model_in(root, "qual", v, 0, 10 + (uint64_t)v);
	if (rel_l2 < 0)
		return;
	snprintf(path, sizeof path, "%s/qual/%d/model.safetensors", root, v);
	snprintf(ev, sizeof ev, "{\"schema\":\"pno-eval-summary/1\","
		 "\"data_blake2b\":\"abc123\",\"split\":\"test\","
		 "\"samples\":50,\"rel_l2\":%g,\"crps\":%g,"
		 "\"coverage90\":0.9}", rel_l2, crps);
	assert_status(pno_model_file_set_meta(path, "evaluation", ev),
		      PNO_STATUS_OK);
}

static void write_judged(int v, double rel_l2, double crps)
{
	write_judged_in(gates_repo, v, rel_l2, crps);
}

struct key {
	const char *name, *roles, *extra;	/* extra: ,"revoked":true ... */
	char token[AUTH_KEY_LEN + 1];
	char hex[2 * AUTH_HASH_BYTES + 1];
};

enum { K_USER, K_ADMIN, K_BOTH, K_BOB, K_OLD, K_EXP, K_USER2, NKEYS };
static struct key keys[NKEYS] = {
	{"user", "\"infer\"", "", "", ""},
	{"admin", "\"admin\"", "", "", ""},
	{"both", "\"infer\",\"admin\"", "", "", ""},
	{"bob", "\"infer\"", "", "", ""},
	{"old", "\"infer\",\"admin\"", ",\"revoked\":true", "", ""},
	{"exp", "\"infer\",\"admin\"", ",\"expires\":\"2020-01-01T00:00:00Z\"",
	 "", ""},
	{"user2", "\"infer\"", "", "", ""},
};

static void make_keys(void)
{
	for (int i = 0; i < NKEYS; i++) {
		unsigned char h[AUTH_HASH_BYTES];
		auth_key_generate(keys[i].token, h);
		for (int j = 0; j < AUTH_HASH_BYTES; j++)
			snprintf(keys[i].hex + 2 * j, 3, "%02x", h[j]);
	}
}

/* the keys file, bob revoked or not (written atomically) */
static void write_keys(int bob_revoked)
{
	char tmp[1000];
	snprintf(tmp, sizeof tmp, "%s.tmp", keys_path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fprintf(f, "[");
	for (int i = 0; i < NKEYS; i++)
		fprintf(f, "%s{\"name\":\"%s\",\"hash\":\"%s\",\"roles\":[%s]%s%s}",
			i ? ",\n" : "", keys[i].name, keys[i].hex, keys[i].roles,
			keys[i].extra, i == K_BOB && bob_revoked ?
			",\"revoked\":true" : "");
	fprintf(f, "]\n");
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, keys_path), 0);
}

/* ---- the server ---- */

struct srv {
	pid_t pid;
	int port;
	char port_file[1024], log[1024];
};

/* > 0: the server's RLIMIT_FSIZE (bytes per file), SIGXFSZ ignored: a
 * write past it fails with EFBIG (the audit I/O fault) */
static long child_fsize;

/* extra: NULL-terminated flag list after the common ones */
static void start_server(struct srv *s, const char *tag,
			 const char *const *extra)
{
	char pf[64], lg[64];
	snprintf(pf, sizeof pf, "sec_port_%s", tag);
	snprintf(lg, sizeof lg, "sec_log_%s", tag);
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
		if (child_fsize > 0) {
			struct rlimit rl = {(rlim_t)child_fsize,
					    (rlim_t)child_fsize};
			signal(SIGXFSZ, SIG_IGN);
			if (setrlimit(RLIMIT_FSIZE, &rl))
				_exit(127);
		}
		const char *argv[48] = {PNO_BIN, "serve", "--repository",
					serve_repo,
					"--port", "0", "--port-file",
					s->port_file, "--log-file", s->log,
					"--compute-threads", "1", "--threads",
					"2", "--max-queue-delay-us", "0"};
		int n = 16;
		for (int i = 0; extra && extra[i] && n < 46; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		execv(PNO_BIN, (char *const *)argv);
		_exit(127);
	}
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

static void stop_server(struct srv *s)
{
	int st;
	kill(s->pid, SIGTERM);
	double t0 = now_s();
	while (waitpid(s->pid, &st, WNOHANG) != s->pid) {
		if (now_s() - t0 > 20) {
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

static int log_has(const struct srv *s, const char *sub)
{
	FILE *f = fopen(s->log, "r");
	char line[8192];
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, sub) != NULL;
	fclose(f);
	return found;
}

/* the request line is logged once the answer is sent: poll for it */
static int wait_log(const struct srv *s, const char *sub)
{
	double t0 = now_s();
	while (!log_has(s, sub)) {
		if (now_s() - t0 > 5)
			return 0;
		usleep(5000);
	}
	return 1;
}

/* ---- HTTP ---- */

struct resp {
	long code;
	char *body;
	size_t len;
	char hdr[4096];
	size_t hlen;
	double dt;	/* seconds, request to answer */
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
	static char v[256];
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

static void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* authz: the whole Authorization value, or NULL for none */
static void http(const struct srv *s, const char *method, const char *path,
		 const char *body, const char *authz, struct resp *r)
{
	char url[1200], ah[20100];	/* long enough for the 431 case */
	CURL *c = curl_easy_init();
	struct curl_slist *hs = NULL;
	memset(r, 0, sizeof *r);
	assert_non_null(c);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	hs = curl_slist_append(hs, "Expect:");
	if (authz) {
		snprintf(ah, sizeof ah, "Authorization: %s", authz);
		hs = curl_slist_append(hs, ah);
	}
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		hs = curl_slist_append(hs, "Content-Type: application/json");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
	double t0 = now_s();
	CURLcode rc = curl_easy_perform(c);
	r->dt = now_s() - t0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -(long)rc;
	curl_slist_free_all(hs);
	curl_easy_cleanup(c);
	if (!r->body)
		r->body = calloc(1, 1);
}

static const char *bearer(const char *token)
{
	static char b[32][400];
	static int k;
	k = (k + 1) % 32;
	snprintf(b[k], sizeof b[k], "Bearer %s", token);
	return b[k];
}

/* status, and for an error an {"error": ...} body */
static void expect(const struct resp *r, long code)
{
	if (r->code != code)
		fail_msg("status %ld, want %ld: %.400s", r->code, code, r->body);
	if (code >= 400) {
		json_error_t e;
		json_t *j = json_loads(r->body, 0, &e);
		if (!j || !json_is_string(json_object_get(j, "error")))
			fail_msg("no {\"error\": ...} body: %.300s", r->body);
		json_decref(j);
	}
	if (code == 401) {
		const char *w = header(r, "WWW-Authenticate");
		if (!w || strncmp(w, "Bearer", 6))
			fail_msg("401 without WWW-Authenticate: Bearer");
	}
}

/* the method, path and body of a call; expect its code */
static void call(const struct srv *s, const char *method, const char *path,
		 const char *body, const char *authz, long code)
{
	struct resp r;
	http(s, method, path, body, authz, &r);
	expect(&r, code);
	resp_free(&r);
}

static char infer_body[4096];

static void make_infer_body(void)
{
	size_t k = (size_t)snprintf(infer_body, sizeof infer_body,
				    "{\"inputs\":[{\"name\":\"input\","
				    "\"datatype\":\"FP32\",\"shape\":[1,1,%d],"
				    "\"data\":[", X1);
	for (int i = 0; i < X1; i++)
		k += (size_t)snprintf(infer_body + k, sizeof infer_body - k,
				      "%s%.3f", i ? "," : "",
				      sin(0.3 * i) + 0.5);
	snprintf(infer_body + k, sizeof infer_body - k,
		 "]}],\"parameters\":{\"num_samples\":2,\"seed\":1}}");
}

/* the value of a metric line "name{labels} value" (NAN if absent) */
static double metric(const struct srv *s, const char *series)
{
	struct resp r;
	double v = NAN;
	http(s, "GET", "/metrics", NULL, NULL, &r);
	assert_int_equal(r.code, 200);
	size_t n = strlen(series);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n'),
		    p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			break;
		}
	resp_free(&r);
	return v;
}

static int setup(void **state)
{
	(void)state;
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("sec_repo"));
	snprintf(keys_path, sizeof keys_path, "%s", tu_tmp_path("sec_keys.json"));
	snprintf(gates_repo, sizeof gates_repo, "%s",
		 tu_tmp_path("sec_repo_gates"));
	snprintf(gates_path, sizeof gates_path, "%s",
		 tu_tmp_path("sec_gates.json"));
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", repo, gates_repo);
	if (system(cmd) != 0)
		return -1;
	write_model("heat", 1, 0, 1);
	write_model("bad", 1, 1, 2);
	make_keys();
	write_keys(0);
	make_infer_body();
	curl_global_init(CURL_GLOBAL_ALL);
	return 0;
}

/* ---- tests ---- */

static void test_start_needs_keys(void **state)
{
	(void)state;
	char cmd[2048];
	/* auth is on by default: no keys file is a usage error */
	snprintf(cmd, sizeof cmd, "%s serve --repository %s --port 0 "
		 "2>/dev/null", PNO_BIN, repo);
	int st = system(cmd);
	assert_int_equal(WEXITSTATUS(st), 2);
	/* a missing keys file stops the start */
	snprintf(cmd, sizeof cmd, "%s serve --repository %s --port 0 "
		 "--keys-file %s.none 2>/dev/null", PNO_BIN, repo, keys_path);
	st = system(cmd);
	assert_int_equal(WEXITSTATUS(st), 1);
}

static void test_auth_and_roles(void **state)
{
	(void)state;
	struct srv s;
	const char *ex[] = {"--keys-file", keys_path, NULL};
	struct resp r;
	write_keys(0);
	start_server(&s, "auth", ex);
	assert_false(log_has(&s, "auth_disabled"));
	const char *user = bearer(keys[K_USER].token);
	const char *admin = bearer(keys[K_ADMIN].token);
	const char *both = bearer(keys[K_BOTH].token);

	/* open: probes and metrics */
	call(&s, "GET", "/v2/health/live", NULL, NULL, 200);
	call(&s, "GET", "/v2/health/ready", NULL, NULL, 200);
	call(&s, "GET", "/metrics", NULL, NULL, 200);

	/* every other endpoint: missing and wrong credentials */
	static const char *const get_paths[] = {
		"/v2", "/v2/models/heat", "/v2/models/heat/ready",
		"/v2/models/heat/versions/1", "/v2/models/nosuch"};
	char other[AUTH_KEY_LEN + 1];
	unsigned char h[AUTH_HASH_BYTES];
	auth_key_generate(other, h);	/* well formed, in no file */
	char flipped[AUTH_KEY_LEN + 1];
	snprintf(flipped, sizeof flipped, "%s", keys[K_BOTH].token);
	flipped[20] = flipped[20] == 'A' ? 'B' : 'A';
	const char *bad[] = {NULL, bearer(other), bearer(flipped),
			     "Basic dXNlcjpwYXNz", "Bearer",
			     bearer(keys[K_OLD].token),	/* revoked */
			     bearer(keys[K_EXP].token)};	/* expired */
	for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
		for (size_t i = 0; i < sizeof get_paths / sizeof *get_paths; i++)
			call(&s, "GET", get_paths[i], NULL, bad[b], 401);
		call(&s, "POST", "/v2/models/heat/infer", infer_body, bad[b],
		     401);
		call(&s, "POST", "/v2/repository/index", "", bad[b], 401);
		call(&s, "POST", "/v2/repository/models/heat/unload", "",
		     bad[b], 401);
		call(&s, "POST", "/v2/repository/models/heat/load", "", bad[b],
		     401);
		call(&s, "POST", "/v2/sessions", "", bad[b], 401);
	}
	/* the log names why, the client is not told */
	assert_true(wait_log(&s, "\"auth\":\"revoked key\""));
	http(&s, "GET", "/v2", NULL, bearer(keys[K_OLD].token), &r);
	assert_null(strstr(r.body, "revoked"));
	resp_free(&r);

	/* infer role: inference and metadata, not the repository */
	for (size_t i = 0; i < 4; i++)
		call(&s, "GET", get_paths[i], NULL, user, 200);
	call(&s, "GET", "/v2/models/nosuch", NULL, user, 404);
	call(&s, "POST", "/v2/models/heat/infer", infer_body, user, 200);
	call(&s, "POST", "/v2/repository/index", "", user, 403);
	call(&s, "POST", "/v2/repository/models/heat/unload", "", user, 403);
	call(&s, "POST", "/v2/repository/models/heat/load", "", user, 403);
	/* admin role alone: the repository, not inference or metadata */
	call(&s, "POST", "/v2/models/heat/infer", infer_body, admin, 403);
	call(&s, "GET", "/v2/models/heat", NULL, admin, 403);
	call(&s, "POST", "/v2/repository/index", "", admin, 200);
	call(&s, "POST", "/v2/repository/models/heat/unload", "", admin, 200);
	call(&s, "POST", "/v2/models/heat/infer", infer_body, both, 404);
	call(&s, "POST", "/v2/repository/models/heat/load", "", admin, 200);
	call(&s, "POST", "/v2/models/heat/infer", infer_body, both, 200);
	/* a 403 answer names the missing role */
	http(&s, "POST", "/v2/repository/index", "", user, &r);
	assert_non_null(strstr(r.body, "admin role"));
	resp_free(&r);

	/* sessions: a key buys a token, the token acts with the key's roles */
	http(&s, "POST", "/v2/sessions", "", user, &r);
	expect(&r, 200);
	json_t *j = json_loads(r.body, 0, NULL);
	assert_non_null(j);
	char tok[128];
	snprintf(tok, sizeof tok, "%s",
		 json_string_value(json_object_get(j, "token")));
	assert_int_equal(strncmp(tok, "pnos_", 5), 0);
	assert_int_equal(json_integer_value(json_object_get(j, "expires_in_s")),
			 3600);
	assert_int_equal(json_integer_value(json_object_get(j,
							    "idle_timeout_s")),
			 900);
	json_decref(j);
	resp_free(&r);
	assert_false(log_has(&s, tok));	/* never logged */
	call(&s, "POST", "/v2/models/heat/infer", infer_body, bearer(tok), 200);
	call(&s, "GET", "/v2/models/heat", NULL, bearer(tok), 200);
	call(&s, "POST", "/v2/repository/index", "", bearer(tok), 403);
	call(&s, "POST", "/v2/sessions", "", bearer(tok), 403);
	call(&s, "DELETE", "/v2/sessions", NULL, user, 400);
	call(&s, "PUT", "/v2/sessions", NULL, user, 405);
	call(&s, "DELETE", "/v2/sessions", NULL, bearer(tok), 200);
	call(&s, "POST", "/v2/models/heat/infer", infer_body, bearer(tok), 401);
	call(&s, "DELETE", "/v2/sessions", NULL, bearer(tok), 401);

	/* revocation by a keys-file edit and SIGHUP: the key and its
	 * session end */
	const char *bob = bearer(keys[K_BOB].token);
	http(&s, "POST", "/v2/sessions", "", bob, &r);
	expect(&r, 200);
	j = json_loads(r.body, 0, NULL);
	char btok[128];
	snprintf(btok, sizeof btok, "%s",
		 json_string_value(json_object_get(j, "token")));
	json_decref(j);
	resp_free(&r);
	call(&s, "POST", "/v2/models/heat/infer", infer_body, bob, 200);
	call(&s, "GET", "/v2", NULL, bearer(btok), 200);
	write_keys(1);
	kill(s.pid, SIGHUP);
	/* bob's session was the only one left: pruned at the reload */
	assert_true(wait_log(&s, "\"event\":\"keys_reloaded\",\"trigger\":"
			     "\"SIGHUP\",\"sessions_ended\":1"));
	call(&s, "POST", "/v2/models/heat/infer", infer_body, bob, 401);
	call(&s, "GET", "/v2", NULL, bearer(btok), 401);
	call(&s, "GET", "/v2", NULL, user, 200);	/* others unaffected */
	write_keys(0);

	/* counted: every 401 and 403 above (7 credentials x 10 calls, 5
	 * more 401; 8 x 403) */
	assert_true(metric(&s, "pno_auth_failures_total{code=\"401\"}") == 75);
	assert_true(metric(&s, "pno_auth_failures_total{code=\"403\"}") == 8);
	stop_server(&s);
}

static void test_session_expiry(void **state)
{
	(void)state;
	struct srv s;
	const char *ex[] = {"--keys-file", keys_path, "--session-ttl-s", "1",
			    "--session-idle-s", "1", NULL};
	struct resp r;
	write_keys(0);
	start_server(&s, "expiry", ex);
	http(&s, "POST", "/v2/sessions", "", bearer(keys[K_USER].token), &r);
	expect(&r, 200);
	json_t *j = json_loads(r.body, 0, NULL);
	char tok[128];
	snprintf(tok, sizeof tok, "%s",
		 json_string_value(json_object_get(j, "token")));
	assert_int_equal(json_integer_value(json_object_get(j, "expires_in_s")),
			 1);
	json_decref(j);
	resp_free(&r);
	double t0 = now_s();
	http(&s, "GET", "/v2", NULL, bearer(tok), &r);
	/* within its second it works (a stalled machine may miss it) */
	if (now_s() - t0 < 0.9)
		expect(&r, 200);
	resp_free(&r);
	usleep(1300000);
	call(&s, "GET", "/v2", NULL, bearer(tok), 401);
	assert_true(wait_log(&s, "\"auth\":\"session expired"));
	stop_server(&s);
}

static void test_rate_limit(void **state)
{
	(void)state;
	struct srv s;
	/* 1 request/s, burst 3: at most 3 + elapsed seconds admitted */
	const char *ex[] = {"--keys-file", keys_path, "--rate-limit", "1",
			    "--rate-burst", "3", NULL};
	struct resp r;
	write_keys(0);
	start_server(&s, "rate", ex);
	const char *user = bearer(keys[K_USER].token);
	int ok = 0, limited = 0;
	double t0 = now_s();
	for (int i = 0; i < 12; i++) {
		http(&s, "GET", "/v2", NULL, user, &r);
		if (r.code == 200) {
			ok++;
		} else {
			expect(&r, 429);
			limited++;
			const char *ra = header(&r, "Retry-After");
			assert_non_null(ra);
			char *end;
			long v = strtol(ra, &end, 10);
			assert_true(*end == 0 && v >= 1 && v <= 1);
		}
		resp_free(&r);
	}
	double dt = now_s() - t0;
	if (ok < 3 || ok > 3 + (int)ceil(dt))
		fail_msg("%d of 12 admitted in %.3f s (rate 1, burst 3)", ok, dt);
	assert_int_equal(ok + limited, 12);
	/* a second key is unaffected, and the probes are not limited */
	for (int i = 0; i < 3; i++)
		call(&s, "POST", "/v2/models/heat/infer", infer_body,
		     bearer(keys[K_USER2].token), 200);
	for (int i = 0; i < 10; i++)
		call(&s, "GET", "/v2/health/ready", NULL, NULL, 200);
	/* an unauthenticated request is 401, not 429 (auth comes first) */
	call(&s, "GET", "/v2", NULL, NULL, 401);
	assert_true(metric(&s, "pno_rate_limited_total") == limited);
	printf("rate limit: %d of 12 admitted in %.3f s, %d x 429\n", ok, dt,
	       limited);
	stop_server(&s);
}

static void test_breaker(void **state)
{
	(void)state;
	struct srv s;
	const char *ex[] = {"--auth", "false", "--breaker-window", "4",
			    "--breaker-min-calls", "4", "--breaker-wait-ms",
			    "1500", "--breaker-probes", "1", NULL};
	struct resp r;
	start_server(&s, "breaker", ex);
	assert_true(log_has(&s, "\"event\":\"auth_disabled\""));
	const char *bst = "pno_breaker_state{model=\"bad\",version=\"1\"}";
	assert_true(metric(&s, bst) == 0);
	/* 4 model failures (non-finite output): 500, not retryable */
	for (int i = 0; i < 4; i++) {
		http(&s, "POST", "/v2/models/bad/infer", infer_body, NULL, &r);
		expect(&r, 500);
		assert_non_null(strstr(r.body, "non-finite"));
		assert_null(header(&r, "Retry-After"));
		resp_free(&r);
	}
	assert_true(metric(&s, bst) == 1);
	/* open: 503 at once with Retry-After = ceil(wait left) */
	double worst = 0;
	for (int i = 0; i < 20; i++) {
		http(&s, "POST", "/v2/models/bad/infer", infer_body, NULL, &r);
		expect(&r, 503);
		const char *ra = header(&r, "Retry-After");
		assert_non_null(ra);
		assert_true(!strcmp(ra, "1") || !strcmp(ra, "2"));
		assert_non_null(strstr(r.body, "circuit breaker"));
		worst = r.dt > worst ? r.dt : worst;
		resp_free(&r);
	}
	/* the whole round trip through curl on loopback: the breaker
	 * itself answers before parsing's queue, with no compute */
	printf("breaker open: slowest of 20 rejections %.2f ms\n", 1e3 * worst);
	assert_true(worst < 0.1);
	/* another model is unaffected */
	call(&s, "POST", "/v2/models/heat/infer", infer_body, NULL, 200);
	assert_true(metric(&s, "pno_breaker_state{model=\"heat\","
			   "version=\"1\"}") == 0);
	/* after the wait: one probe admitted; it fails, so open again */
	usleep(1600000);
	call(&s, "POST", "/v2/models/bad/infer", infer_body, NULL, 500);
	assert_true(metric(&s, bst) == 1);
	call(&s, "POST", "/v2/models/bad/infer", infer_body, NULL, 503);
	assert_true(metric(&s, "pno_breaker_rejected_total{model=\"bad\","
			   "version=\"1\"}") == 21);
	stop_server(&s);
}

/* the version of an answer (NULL if none) */
static void expect_version(const struct resp *r, const char *v)
{
	json_t *j = json_loads(r->body, 0, NULL);
	const char *got = json_string_value(json_object_get(j, "model_version"));
	if (!got || strcmp(got, v))
		fail_msg("model_version %s, want %s: %.300s", got ? got : "-",
			 v, r->body);
	json_decref(j);
}

static void test_gates(void **state)
{
	(void)state;
	struct srv s;
	struct resp r;
	FILE *f = fopen(gates_path, "w");
	assert_non_null(f);
	fputs("{\"max_rel_l2\": 0.1, \"max_crps_regression\": 0.05}\n", f);
	assert_int_equal(fclose(f), 0);
	write_judged(1, 0.05, 0.20);	/* first: nothing to regress from */
	write_judged(2, 0.50, 0.10);	/* rel_l2 over the bound */
	write_judged(3, 0.06, 0.30);	/* CRPS 0.30 > 1.05 x v1's 0.20 */
	write_judged(4, -1, 0);		/* no evaluation recorded */
	const char *ex[] = {"--auth", "false", "--gates-file", gates_path,
			    NULL};
	serve_repo = gates_repo;
	start_server(&s, "gates", ex);
	serve_repo = repo;
	/* only version 1 is served, and it is the default */
	http(&s, "GET", "/v2/models/qual", NULL, NULL, &r);
	expect(&r, 200);
	json_t *j = json_loads(r.body, 0, NULL);
	json_t *vs = json_object_get(j, "versions");
	assert_int_equal(json_array_size(vs), 1);
	assert_string_equal(json_string_value(json_array_get(vs, 0)), "1");
	json_t *rf = json_object_get(json_object_get(j, "parameters"),
				     "refused_versions");
	assert_int_equal(json_array_size(rf), 3);
	static const char *const want[3][2] = {
		{"2", "rel_l2: relative L2 0.5 > 0.1"},
		{"3", "crps_regression: CRPS 0.3 > 0.21"},
		{"4", "no evaluation recorded"}};
	for (int i = 0; i < 3; i++) {
		json_t *e = json_array_get(rf, (size_t)i);
		assert_string_equal(json_string_value(json_object_get(e,
								      "version")),
				    want[i][0]);
		const char *why = json_string_value(json_object_get(e, "reason"));
		if (!why || !strstr(why, want[i][1]))
			fail_msg("version %s refused for \"%s\", want \"%s\"",
				 want[i][0], why ? why : "-", want[i][1]);
	}
	json_decref(j);
	resp_free(&r);
	http(&s, "POST", "/v2/models/qual/infer", infer_body, NULL, &r);
	expect(&r, 200);
	expect_version(&r, "1");
	resp_free(&r);
	http(&s, "POST", "/v2/models/qual/versions/2/infer", infer_body, NULL,
	     &r);
	expect(&r, 404);
	assert_non_null(strstr(r.body, "refused by the quality gates"));
	resp_free(&r);
	call(&s, "GET", "/v2/models/qual/versions/3/ready", NULL, NULL, 404);
	assert_true(log_has(&s, "\"event\":\"gates_refused\",\"model\":"
			    "\"qual\",\"version\":\"3\",\"baseline\":\"1\""));
	assert_true(log_has(&s, "\"crps_regression\":\"not judged"));
	http(&s, "POST", "/v2/repository/index", "", NULL, &r);
	expect(&r, 200);
	assert_non_null(strstr(r.body, "refused by the quality gates"));
	resp_free(&r);
	/* a better version 5 goes live at the next reload, as the default */
	write_judged(5, 0.04, 0.19);
	kill(s.pid, SIGHUP);
	double t0 = now_s();
	for (;;) {
		http(&s, "POST", "/v2/models/qual/infer", infer_body, NULL, &r);
		expect(&r, 200);
		json_t *jj = json_loads(r.body, 0, NULL);
		const char *v = json_string_value(json_object_get(jj,
							     "model_version"));
		int done = v && !strcmp(v, "5");
		json_decref(jj);
		resp_free(&r);
		if (done)
			break;
		if (now_s() - t0 > 10)
			fail_msg("version 5 not served 10 s after SIGHUP");
		usleep(20000);
	}
	stop_server(&s);
}

/* In process: every allocation of a scan with gates (loads, verdicts,
 * refusals) failed in turn. A thread-safe counting allocator: workers
 * free their versions on their own threads. */
static _Atomic long n_alloc, n_live, fail_at;
static _Atomic int g_failed;

static void *t_alloc(void *ud, size_t size, size_t align)
{
	void *p = NULL;
	(void)ud;
	long n = atomic_fetch_add(&n_alloc, 1) + 1;
	if (atomic_load(&fail_at) == n) {
		atomic_store(&g_failed, 1);
		return NULL;
	}
	if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align,
			   size) != 0)
		return NULL;
	atomic_fetch_add(&n_live, 1);
	return p;
}

static void t_free(void *ud, void *p)
{
	(void)ud;
	if (!p)
		return;
	atomic_fetch_sub(&n_live, 1);
	free(p);
}

static void t_reset(long k)
{
	atomic_store(&n_alloc, 0);
	atomic_store(&g_failed, 0);
	atomic_store(&fail_at, k);
}

static void test_gates_alloc_failures(void **state)
{
	(void)state;
	static const struct pno_allocator al = {t_alloc, t_free, NULL};
	struct server *srv = calloc(1, sizeof *srv);
	char err[SV_ERR_MAX];
	assert_non_null(srv);
	serve_config_defaults(&srv->opts.cfg);
	srv->opts.cfg.auth = 0;
	/* two versions: one served, one refused against it as baseline */
	char small[1000];
	snprintf(small, sizeof small, "%s", tu_tmp_path("sec_repo_galloc"));
	write_judged_in(small, 1, 0.05, 0.20);
	write_judged_in(small, 2, 0.06, 0.30);
	snprintf(srv->opts.cfg.repository, sizeof srv->opts.cfg.repository,
		 "%.400s", small);
	snprintf(srv->opts.cfg.gates_file, sizeof srv->opts.cfg.gates_file,
		 "%.400s", gates_path);
	srv->opts.cfg.max_samples = 4;
	srv->opts.cfg.default_samples = 2;
	srv->opts.cfg.max_queue_size = 2;
	srv->opts.cfg.compute_threads = 1;
	pthread_mutex_init(&srv->state_mu, NULL);
	pthread_mutex_init(&srv->reload_mu, NULL);
	pthread_mutex_init(&srv->pool_mu, NULL);
	pthread_mutex_init(&srv->log_mu, NULL);
	pthread_mutex_init(&srv->workers_mu, NULL);
	pthread_cond_init(&srv->workers_cv, NULL);
	srv->log = fopen("/dev/null", "w");
	srv->log_level = PNO_LOG_LEVEL_ERROR + 1;
	pno_allocator_set(&al);
	assert_status(sv_metrics_init(&srv->met), PNO_STATUS_OK);
	/* a clean run: version 1 served, 2 refused */
	assert_int_equal(sv_repo_open(srv, err, sizeof err), 0);
	assert_int_equal(srv->state->nm, 1);
	assert_int_equal(srv->state->m[0].nv, 1);
	assert_int_equal(srv->state->nrefused, 1);
	sv_state_release(srv->state);
	srv->state = NULL;
	sv_workers_wait(srv);
	long live0 = atomic_load(&n_live), k;
	for (k = 1;; k++) {
		t_reset(k);
		err[0] = 0;
		int rc = sv_repo_open(srv, err, sizeof err);
		int failed = atomic_load(&g_failed);
		t_reset(0);
		if (rc == 0) {
			/* version 2 is never served (jansson's parse in
			 * gate_check allocates with malloc, outside these
			 * hooks) */
			assert_true(srv->state->nm == 1 &&
				    srv->state->m[0].nv <= 1 &&
				    !sv_state_version(srv->state, "qual", "2"));
			sv_state_release(srv->state);
			srv->state = NULL;
		} else {
			assert_true(failed);
			assert_true(err[0] != 0);
		}
		sv_workers_wait(srv);
		if (atomic_load(&n_live) != live0)
			fail_msg("allocation %ld failed: %ld blocks left (%s)", k,
				 atomic_load(&n_live) - live0, err);
		if (!failed)
			break;
	}
	printf("scan with gates: %ld allocation points, each failure clean\n",
	       k - 1);
	prom_registry_free(srv->met.reg);
	pno_allocator_set(NULL);
	fclose(srv->log);
	free(srv);
}

/* ---- the audit log wired in (docs/serve/audit.md) ---- */

static char audit_dir[900], audit_key[1000];

/* run a shell command, its stdout into out (NUL-terminated, truncated);
 * the exit status */
static int run(const char *cmd, char *out, size_t size)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	assert_non_null(p);
	while (out && n + 1 < size) {
		size_t k = fread(out + n, 1, size - 1 - n, p);
		if (!k)
			break;
		n += k;
	}
	if (out)
		out[n] = 0;
	else
		while (fgetc(p) != EOF)
			;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void audit_fresh(const char *tag)
{
	char cmd[4096];
	snprintf(audit_dir, sizeof audit_dir, "%s", tu_tmp_path(tag));
	snprintf(audit_key, sizeof audit_key, "%s.key", audit_dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", audit_dir, audit_key);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s audit keygen --out '%s' >/dev/null",
		 PNO_BIN, audit_key);
	assert_int_equal(system(cmd), 0);
}

/* pno audit verify: exit status, its summary in out */
static int audit_verify_cli(char *out, size_t size)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s audit verify --log '%s' --key '%s' 2>&1",
		 PNO_BIN, audit_dir, audit_key);
	return run(cmd, out, size);
}

static char *show_text;	/* the last audit show output, as printed */

/* pno audit show: the records, parsed (caller frees with json_decref) */
static json_t *audit_records(void)
{
	char cmd[4096];
	size_t cap = 64u << 20;
	char *out = malloc(cap);
	assert_non_null(out);
	snprintf(cmd, sizeof cmd, "%s audit show --log '%s' --key '%s' "
		 "2>/dev/null", PNO_BIN, audit_dir, audit_key);
	int st = run(cmd, out, cap);
	assert_int_equal(st, 0);
	json_t *all = json_array();
	free(show_text);
	show_text = strdup(out);
	assert_non_null(show_text);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		json_error_t e;
		json_t *j = json_loads(line, 0, &e);
		if (!j)
			fail_msg("audit show: not JSON: %.200s", line);
		json_array_append_new(all, j);
	}
	free(out);
	return all;
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

/* the record of an event with this request id (NULL if none) */
static const json_t *find_record(const json_t *all, const char *event,
				 const char *rid)
{
	size_t i;
	const json_t *o;
	json_array_foreach(all, i, o)
		if (!strcmp(jstr(o, "event"), event) &&
		    !strcmp(jstr(o, "request_id"), rid))
			return o;
	return NULL;
}

static int count_event(const json_t *all, const char *event)
{
	size_t i;
	const json_t *o;
	int n = 0;
	json_array_foreach(all, i, o)
		n += !strcmp(jstr(o, "event"), event);
	return n;
}

/* infer_body with a client id */
static void id_body(char *out, size_t size, const char *id)
{
	snprintf(out, size, "{\"id\":\"%s\",%s", id, infer_body + 1);
}

static void hex32(char out[65], const unsigned char h[32])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* BLAKE2b-256 of the FP32 tensor infer_body's text parses to */
static void input_digest(char out[65])
{
	float x[X1];
	unsigned char h[32];
	for (int i = 0; i < X1; i++) {
		char t[32];
		snprintf(t, sizeof t, "%.3f", sin(0.3 * i) + 0.5);
		x[i] = (float)strtod(t, NULL);	/* JSON number -> FP32 */
	}
	crypto_generichash(h, 32, (const unsigned char *)x, sizeof x, NULL, 0);
	hex32(out, h);
}

static void audit_flags(const char **ex, int *n)
{
	ex[(*n)++] = "--audit-dir";
	ex[(*n)++] = audit_dir;
	ex[(*n)++] = "--audit-key-file";
	ex[(*n)++] = audit_key;
}

/* authenticated inferences, a 401, a 403, a 429, an admin load, a
 * session, rejected requests; SIGTERM; verify and show */
static void test_audit_records(void **state)
{
	(void)state;
	struct srv s;
	struct resp r;
	char body[4200], id[32], in_d[65], out_d[4][65], verify[2048];
	unsigned char h[32];
	const char *ex[16] = {"--keys-file", keys_path, "--rate-limit", "0.5",
			      "--rate-burst", "10", "--max-body-bytes", "2048"};
	int n = 8;
	write_keys(0);
	audit_fresh("aw_log");
	audit_flags(ex, &n);
	/* both keys or neither */
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s serve --repository %s --keys-file %s "
		 "--audit-dir %s 2>/dev/null", PNO_BIN, repo, keys_path,
		 audit_dir);
	assert_int_equal(run(cmd, NULL, 0), 2);
	/* a key file that is not one: refused at start, exit 1 */
	snprintf(cmd, sizeof cmd, "%s serve --repository %s --keys-file %s "
		 "--audit-dir %s --audit-key-file %s 2>&1", PNO_BIN, repo,
		 keys_path, audit_dir, keys_path);
	assert_int_equal(run(cmd, verify, sizeof verify), 1);
	if (!strstr(verify, "cannot open the audit log"))
		fail_msg("no clear message: %s", verify);

	start_server(&s, "audit", ex);
	const char *user = bearer(keys[K_USER].token);
	input_digest(in_d);
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof id, "aw-%d", i);
		id_body(body, sizeof body, id);
		http(&s, "POST", "/v2/models/heat/infer", body, user, &r);
		expect(&r, 200);
		crypto_generichash(h, 32, (unsigned char *)r.body, r.len, NULL,
				   0);
		hex32(out_d[i], h);
		resp_free(&r);
	}
	call(&s, "POST", "/v2/models/heat/infer", infer_body,
	     bearer("pno_wrongwrongwrongwrongwrongwrongwrongwrongwrong"), 401);
	call(&s, "POST", "/v2/repository/models/heat/load", "", user, 403);
	call(&s, "POST", "/v2/repository/models/heat/load", "",
	     bearer(keys[K_ADMIN].token), 200);
	http(&s, "POST", "/v2/sessions", NULL, user, &r);
	expect(&r, 200);
	json_error_t e;
	json_t *sj = json_loads(r.body, 0, &e);
	char token[256];
	snprintf(token, sizeof token, "%s", jstr(sj, "token"));
	json_decref(sj);
	resp_free(&r);
	call(&s, "DELETE", "/v2/sessions", NULL, bearer(token), 200);
	call(&s, "POST", "/v2/models/heat/infer", "{\"inputs\":[", user, 400);
	call(&s, "POST", "/v2/models/he%2Fat/infer", infer_body, user, 404);
	/* input hardening: a path-traversal name, a body nested past
	 * max_json_depth, headers past max_header_bytes */
	call(&s, "POST", "/v2/models/%2e%2e/infer", infer_body, user, 400);
	memset(body, '[', 1000);
	body[1000] = 0;
	call(&s, "POST", "/v2/models/heat/infer", body, user, 400);
	static char big[20100];
	snprintf(big, sizeof big, "%s", user);
	memset(big + strlen(big), 'x', 20000 - strlen(big));
	big[20000] = 0;
	call(&s, "GET", "/v2", NULL, big, 431);
	memset(body, ' ', 3000);	/* JSON whitespace past max_body_bytes */
	body[3000] = 0;
	call(&s, "POST", "/v2/models/heat/infer", body, user, 413);
	/* user2 until the limiter trips (burst 10, 0.5/s) */
	int limited = 0;
	for (int i = 0; i < 16 && !limited; i++) {
		http(&s, "GET", "/v2", NULL, bearer(keys[K_USER2].token), &r);
		limited = r.code == 429;
		resp_free(&r);
	}
	assert_true(limited);
	double recs = metric(&s, "pno_audit_records_total");
	assert_true(metric(&s, "pno_audit_failures_total") == 0);
	/* a reload by signal: its record comes before the SIGTERM's close
	 * (the main thread handles them in order) */
	kill(s.pid, SIGHUP);
	assert_true(wait_log(&s, "\"reloaded\",\"trigger\":\"SIGHUP\""));
	stop_server(&s);

	int vs = audit_verify_cli(verify, sizeof verify);
	if (vs != 0 || !strstr(verify, "closed cleanly"))
		fail_msg("verify %d: %s", vs, verify);
	json_t *all = audit_records();
	/* audit_open + the server's records + the SIGHUP + audit_close */
	assert_int_equal((double)json_array_size(all), recs + 3);
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof id, "aw-%d", i);
		const json_t *o = find_record(all, "infer", id);
		if (!o)
			fail_msg("no infer record for %s", id);
		assert_string_equal(jstr(o, "actor"), "user");
		assert_string_equal(jstr(o, "model"), "heat");
		assert_string_equal(jstr(o, "version"), "1");
		assert_int_equal(json_integer_value(json_object_get(o, "status")),
				 200);
		assert_string_equal(jstr(o, "input_digest"), in_d);
		assert_string_equal(jstr(o, "output_digest"), out_d[i]);
	}
	size_t i;
	const json_t *o;
	int auth401 = 0, auth403 = 0, load = 0, sess = 0, sec = 0, rl = 0;
	int hup = 0;
	json_array_foreach(all, i, o) {
		const char *ev = jstr(o, "event");
		long st = (long)json_integer_value(json_object_get(o, "status"));
		if (!strcmp(ev, "auth_failure") && st == 401) {
			auth401++;
			assert_string_equal(jstr(o, "actor"), "");
		}
		if (!strcmp(ev, "auth_failure") && st == 403) {
			auth403++;
			assert_string_equal(jstr(o, "actor"), "user");
		}
		if (!strcmp(ev, "load")) {
			load++;
			assert_string_equal(jstr(o, "actor"), "admin");
			assert_string_equal(jstr(o, "model"), "heat");
			assert_int_equal(st, 200);
		}
		if (!strcmp(ev, "session")) {
			sess++;
			assert_string_equal(jstr(o, "actor"), "user");
			assert_true(strstr(jstr(o, "detail"), sess == 1 ?
					   "create" : "revoke") != NULL);
		}
		if (!strcmp(ev, "security_event")) {
			sec++;
			const char *d = jstr(o, "detail");
			if (st == 431)
				assert_non_null(strstr(d, "max_header_bytes"));
			if (strstr(d, "nests"))
				assert_non_null(strstr(d, "max_json_depth (32)"));
		}
		if (!strcmp(ev, "reload")) {
			hup++;
			assert_string_equal(jstr(o, "detail"), "SIGHUP: applied");
			assert_int_equal(st, 200);
		}
		if (!strcmp(ev, "rate_limited")) {
			rl++;
			assert_string_equal(jstr(o, "actor"), "user2");
			assert_int_equal(st, 429);
		}
	}
	assert_int_equal(auth401, 1);
	assert_int_equal(auth403, 1);
	assert_int_equal(load, 1);
	assert_int_equal(sess, 2);
	/* the malformed body, the bad name, the body too large, the
	 * traversal name, the deep body, the long headers */
	assert_int_equal(sec, 6);
	assert_int_equal(rl, 1);
	assert_int_equal(hup, 1);
	/* no secret anywhere: keys, the session token */
	for (int k = 0; k < NKEYS; k++)
		assert_null(strstr(show_text, keys[k].token));
	assert_null(strstr(show_text, token));
	assert_true(strlen(token) > 20);
	printf("audit: %zu records (4 infer with digests checked, 401, 403, "
	       "429, load, 2 session, 6 security, SIGHUP reload), verify: closed cleanly\n",
	       json_array_size(all));
	json_decref(all);
}

/* ---- kill -9 under load: every answered request has its record ---- */

#define KILL_THREADS 4
#define KILL_MAX_OK 4096

struct load {
	const struct srv *s;
	int round, thread;
	_Atomic int *stop;
	pthread_mutex_t *mu;
	char (*ok)[32];		/* ids answered 200 */
	int *nok;
};

static void *load_thread(void *arg)
{
	struct load *l = arg;
	char body[4200], id[32];
	const char *user = bearer(keys[K_USER].token);
	for (int i = 0; !atomic_load(l->stop); i++) {
		struct resp r;
		snprintf(id, sizeof id, "k%d-%d-%d", l->round, l->thread, i);
		id_body(body, sizeof body, id);
		http(l->s, "POST", "/v2/models/heat/infer", body, user, &r);
		if (r.code == 200) {
			pthread_mutex_lock(l->mu);
			if (*l->nok < KILL_MAX_OK)
				snprintf(l->ok[(*l->nok)++], 32, "%s", id);
			pthread_mutex_unlock(l->mu);
		}
		resp_free(&r);
		if (r.code != 200)
			break;	/* the server is gone */
	}
	return NULL;
}

static void test_audit_kill9(void **state)
{
	(void)state;
	struct srv s;
	char verify[2048];
	static char ok[KILL_MAX_OK][32];
	int nok = 0, torn = 0, rounds = 4;
	const char *ex[8] = {"--keys-file", keys_path};
	int n = 2;
	write_keys(0);
	audit_fresh("aw_kill");
	audit_flags(ex, &n);
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	for (int round = 0; round < rounds; round++) {
		_Atomic int stop = 0;
		pthread_t th[KILL_THREADS];
		struct load l[KILL_THREADS];
		int nok0 = nok;
		start_server(&s, "kill", ex);
		for (int t = 0; t < KILL_THREADS; t++) {
			l[t] = (struct load){&s, round, t, &stop, &mu, ok, &nok};
			assert_int_equal(pthread_create(&th[t], NULL, load_thread,
							&l[t]), 0);
		}
		/* kill at a point that varies from round to round, once
		 * answers flow */
		double t0 = now_s();
		while (now_s() - t0 < 5) {
			pthread_mutex_lock(&mu);
			int got = nok - nok0;
			pthread_mutex_unlock(&mu);
			if (got >= 20 + 17 * round)
				break;
			usleep(1000);
		}
		kill(s.pid, SIGKILL);
		int st;
		waitpid(s.pid, &st, 0);
		atomic_store(&stop, 1);
		for (int t = 0; t < KILL_THREADS; t++)
			pthread_join(th[t], NULL);
		assert_true(nok - nok0 >= 20);
		int vs = audit_verify_cli(verify, sizeof verify);
		if (vs != 0)
			fail_msg("round %d: verify %d: %s", round, vs, verify);
		torn += strstr(verify, "torn tail") != NULL;
		json_t *all = audit_records();
		for (int k = 0; k < nok; k++) {
			const json_t *o = find_record(all, "infer", ok[k]);
			if (!o)
				fail_msg("round %d: %s was answered 200 and has no "
					 "record", round, ok[k]);
			assert_int_equal(json_integer_value(
				json_object_get(o, "status")), 200);
		}
		json_decref(all);
	}
	/* a clean run after the crashes: every cut tail recorded */
	start_server(&s, "kill", ex);
	stop_server(&s);
	int vs = audit_verify_cli(verify, sizeof verify);
	if (vs != 0 || !strstr(verify, "closed cleanly"))
		fail_msg("verify %d: %s", vs, verify);
	json_t *all = audit_records();
	assert_int_equal(count_event(all, "audit_recovered"), torn);
	assert_int_equal(count_event(all, "audit_open") +
			 count_event(all, "audit_recovered"), rounds + 1);
	for (int k = 0; k < nok; k++)
		assert_non_null(find_record(all, "infer", ok[k]));
	printf("kill -9 x %d under %d clients: %d answered requests, each "
	       "recorded; %d torn tails detected and cut; %zu records verify\n",
	       rounds, KILL_THREADS, nok, torn, json_array_size(all));
	json_decref(all);
}

/* ---- I/O failure: the answer is refused, never sent unrecorded ---- */

/* The server runs with RLIMIT_FSIZE at 3000 bytes: a segment holds a few
 * records, then a record's write fails (EFBIG), the log cuts it and the
 * next record starts a new segment. Each failed record is an inference
 * answered 503 "audit log unavailable"; the server stays live. */
static void test_audit_io_failure(void **state)
{
	(void)state;
	struct srv s;
	char body[4200], id[32], verify[2048];
	static char ok[64][32];
	const char *ex[10] = {"--keys-file", keys_path, "--log-level",
			      "error"};
	int n = 4, nok = 0, refused = 0;
	write_keys(0);
	audit_fresh("aw_io");
	audit_flags(ex, &n);
	child_fsize = 3000;
	start_server(&s, "io", ex);
	child_fsize = 0;
	const char *user = bearer(keys[K_USER].token);
	for (int i = 0; i < 24; i++) {
		struct resp r;
		snprintf(id, sizeof id, "io-%d", i);
		id_body(body, sizeof body, id);
		http(&s, "POST", "/v2/models/heat/infer", body, user, &r);
		if (r.code == 200) {
			snprintf(ok[nok++], 32, "%s", id);
		} else {
			expect(&r, 503);
			assert_string_equal(r.body,
					    "{\"error\":\"audit log unavailable\"}");
			assert_non_null(header(&r, "Retry-After"));
			refused++;
		}
		resp_free(&r);
		call(&s, "GET", "/v2/health/live", NULL, NULL, 200);
	}
	assert_true(refused >= 3 && nok >= 10);
	assert_true(metric(&s, "pno_audit_failures_total") == refused);
	assert_true(metric(&s, "pno_requests_total{model=\"heat\",version=\"1\","
			   "code=\"503\"}") == refused);
	stop_server(&s);
	int vs = audit_verify_cli(verify, sizeof verify);
	if (vs != 0)
		fail_msg("verify %d: %s", vs, verify);
	json_t *all = audit_records();
	for (int k = 0; k < nok; k++)
		if (!find_record(all, "infer", ok[k]))
			fail_msg("%s answered 200 without a record", ok[k]);
	/* and no refused request was recorded as answered */
	assert_int_equal(count_event(all, "infer"), nok);
	printf("audit I/O failure (EFBIG): %d of 24 inferences refused 503, "
	       "%d answered and recorded, the server live, the log verifies "
	       "(%zu records)\n", refused, nok, json_array_size(all));
	json_decref(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_needs_keys),
		cmocka_unit_test(test_auth_and_roles),
		cmocka_unit_test(test_session_expiry),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_breaker),
		cmocka_unit_test(test_gates),
		cmocka_unit_test(test_gates_alloc_failures),
		cmocka_unit_test(test_audit_records),
		cmocka_unit_test(test_audit_kill9),
		cmocka_unit_test(test_audit_io_failure),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
