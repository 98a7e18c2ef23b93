/* pno client (src/cli/client.c), end to end: the real binary (PNO_BIN
 * client) against
 *  - a scripted fake server (a libmicrohttpd daemon in this process) that
 *    answers each request with the next entry of a script: 429 with
 *    Retry-After then 200, 400 (never retried), 503 k times (retries
 *    bounded by --attempts and by the retry budget), 502/504, 500, a
 *    Retry-After too long to wait, a hang past the try's timeout, and a
 *    port where nothing listens;
 *  - the real server (PNO_BIN serve) over a small model, whose answer must
 *    equal, bit for bit, the library's own pno_model_predict with the same
 *    seed and sample count.
 * Every test counts the requests the server saw and checks the exit
 * status and the message the client printed. */
#include "testutil.h"
#include "pno/fno.h"
#include "pno/io.h"
#include "pno/model.h"

#include <jansson.h>
#include <microhttpd.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- the fake server ---- */

struct step {
	int status;
	const char *retry_after;	/* NULL: none */
	const char *body;
	int delay_ms;			/* before answering */
};

#define MAX_SEEN 64
static struct {
	pthread_mutex_t mu;
	const struct step *script;
	int n;
	int seen;			/* requests answered */
	double t[MAX_SEEN];		/* when each arrived */
	char auth[MAX_SEEN][128];	/* its Authorization header */
	char url[MAX_SEEN][256];
	size_t body_len[MAX_SEEN];
} fake = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct MHD_Daemon *daemon_;
static int fake_port;

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c,
				    const char *url, const char *method,
				    const char *version, const char *upload,
				    size_t *upload_size, void **con_cls)
{
	(void)cls, (void)method, (void)version, (void)upload;
	size_t *got = *con_cls;
	if (!got) {
		got = calloc(1, sizeof *got);
		*con_cls = got;
		return got ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		*got += *upload_size;
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&fake.mu);
	int i = fake.seen++;
	const struct step *s = &fake.script[i < fake.n ? i : fake.n - 1];
	if (i < MAX_SEEN) {
		const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							    "Authorization");
		fake.t[i] = now_s();
		snprintf(fake.auth[i], sizeof fake.auth[i], "%s", a ? a : "");
		snprintf(fake.url[i], sizeof fake.url[i], "%s", url);
		fake.body_len[i] = *got;
	}
	pthread_mutex_unlock(&fake.mu);
	if (s->delay_ms)
		usleep((useconds_t)s->delay_ms * 1000);
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(s->body), (void *)s->body, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (s->retry_after)
		MHD_add_response_header(r, "Retry-After", s->retry_after);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)s->status, r);
	MHD_destroy_response(r);
	return ret;
}

static void fake_done(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static void script(const struct step *s, int n)
{
	pthread_mutex_lock(&fake.mu);
	fake.script = s;
	fake.n = n;
	fake.seen = 0;
	memset(fake.auth, 0, sizeof fake.auth);
	pthread_mutex_unlock(&fake.mu);
}

static int seen(void)
{
	pthread_mutex_lock(&fake.mu);
	int n = fake.seen;
	pthread_mutex_unlock(&fake.mu);
	return n;
}

/* ---- running the client ---- */

static char out_path[1024], err_text[8192], out_text[65536];

static void slurp(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "rb");
	size_t n = 0;
	if (f) {
		n = fread(buf, 1, size - 1, f);
		fclose(f);
	}
	buf[n] = 0;
}

/* PNO_BIN with argv (NULL-terminated); its exit status, stderr in
 * err_text and stdout in out_text. run_client: PNO_BIN client args... */
static int run_client_argv(const char *const *argv)
{
	char so[1024], se[1024];
	snprintf(so, sizeof so, "%s", tu_tmp_path("client_stdout"));
	snprintf(se, sizeof se, "%s", tu_tmp_path("client_stderr"));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!freopen(so, "w", stdout) || !freopen(se, "w", stderr))
			_exit(127);
		execv(PNO_BIN, (char *const *)argv);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	slurp(se, err_text, sizeof err_text);
	slurp(so, out_text, sizeof out_text);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int run_client(const char *first, ...)
{
	const char *argv[64] = {PNO_BIN, "client"};
	int n = 2;
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a && n < 63; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return run_client_argv(argv);
}

#define expect_err(sub)                                                       \
	do {                                                                  \
		if (!strstr(err_text, sub))                                   \
			fail_msg("stderr lacks \"%s\":\n%s", sub, err_text);  \
	} while (0)

static char url[64], req_path[1024];

static const char ok_body[] = "{\"model_name\":\"m\",\"outputs\":[]}";

/* ---- fake-server tests ---- */

static void test_retry_after_then_ok(void **state)
{
	(void)state;
	static const struct step s[] = {
		{429, "1", "{\"error\":\"rate limited\"}", 0},
		{200, NULL, ok_body, 0},
	};
	script(s, 2);
	int rc = run_client("--url", url, "--model", "m", "--input", req_path,
			    "--backoff-ms", "1", NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(seen(), 2);
	/* the backoff alone is at most 1 ms: the wait is Retry-After's */
	double gap = fake.t[1] - fake.t[0];
	if (gap < 1.0 || gap > 3.0)
		fail_msg("retry came %.3f s after a Retry-After of 1 s", gap);
	expect_err("answered 429: rate limited");
	expect_err("retrying in 1.000 s");
	assert_string_equal(out_text, ok_body);	/* the answer on stdout */
	assert_string_equal(fake.url[0], "/v2/models/m/infer");
}

static void test_400_not_retried(void **state)
{
	(void)state;
	static const struct step s[] = {
		{400, NULL, "{\"error\":\"inputs[0].shape: [1, 2] does not "
			    "match\"}", 0},
		{200, NULL, ok_body, 0},
	};
	script(s, 2);
	int rc = run_client("--url", url, "--model", "m", "--input", req_path,
			    "--backoff-ms", "1", "--attempts", "5", NULL);
	assert_int_equal(rc, 3);
	assert_int_equal(seen(), 1);
	expect_err("the server answered 400: inputs[0].shape: [1, 2] does "
		   "not match");
	assert_string_equal(out_text, "");
	/* nor 404, 401 or 500 */
	static const struct step s2[] = {{404, NULL, "{\"error\":\"no model "
						      "\\\"m\\\"\"}", 0}};
	static const struct step s3[] = {{500, NULL, "{\"error\":\"the model "
						      "produced a non-finite "
						      "output\"}", 0}};
	static const struct step s4[] = {{401, NULL, "not json", 0}};
	script(s2, 1);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--backoff-ms", "1", NULL), 3);
	assert_int_equal(seen(), 1);
	expect_err("answered 404: no model \"m\"");
	script(s3, 1);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--backoff-ms", "1", NULL), 3);
	assert_int_equal(seen(), 1);
	expect_err("answered 500: the model produced");
	script(s4, 1);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--backoff-ms", "1", NULL), 3);
	assert_int_equal(seen(), 1);
	expect_err("answered 401: not json");
}

static void test_503_bounded(void **state)
{
	(void)state;
	static const struct step s[] = {
		{503, "0", "{\"error\":\"overloaded\"}", 0},
	};
	/* by the attempts: exactly 5 tries */
	script(s, 1);
	int rc = run_client("--url", url, "--model", "m", "--input", req_path,
			    "--backoff-ms", "1", "--attempts", "5", NULL);
	assert_int_equal(rc, 4);
	assert_int_equal(seen(), 5);
	expect_err("gave up after 5 tries (attempts exhausted): the server "
		   "answered 503: overloaded");
	/* by the budget: 2 retries per 10 s + 0.2 per request allows
	 * retries + 1 <= 2.2, so 2 retries: 3 tries of the 20 allowed */
	script(s, 1);
	rc = run_client("--url", url, "--model", "m", "--input", req_path,
			"--backoff-ms", "1", "--attempts", "20",
			"--retry-budget", "2", NULL);
	assert_int_equal(rc, 4);
	assert_int_equal(seen(), 3);
	expect_err("gave up after 3 tries (retry budget exhausted)");
	/* a budget of 0 leaves 0.2 retries: none */
	script(s, 1);
	rc = run_client("--url", url, "--model", "m", "--input", req_path,
			"--backoff-ms", "1", "--retry-budget", "0", NULL);
	assert_int_equal(rc, 4);
	assert_int_equal(seen(), 1);
	/* 503 twice, then an answer */
	static const struct step s2[] = {
		{503, NULL, "{\"error\":\"overloaded\"}", 0},
		{503, NULL, "{\"error\":\"overloaded\"}", 0},
		{200, NULL, ok_body, 0},
	};
	script(s2, 3);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--backoff-ms", "1", NULL), 0);
	assert_int_equal(seen(), 3);
}

static void test_502_504_retried(void **state)
{
	(void)state;
	static const struct step s[] = {
		{502, NULL, "bad gateway", 0},
		{504, NULL, "{\"error\":\"deadline\"}", 0},
		{200, NULL, ok_body, 0},
	};
	script(s, 3);
	char out[1100];
	snprintf(out, sizeof out, "%s", tu_tmp_path("client_answer.json"));
	unlink(out);
	int rc = run_client("--url", url, "--model", "m", "--version", "7",
			    "--input", req_path, "--backoff-ms", "1", "--out",
			    out, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(seen(), 3);
	assert_string_equal(fake.url[2], "/v2/models/m/versions/7/infer");
	slurp(out, out_text, sizeof out_text);
	assert_string_equal(out_text, ok_body);
	/* --out exists now: refused without --force, before any request */
	script(s, 3);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--out", out, NULL), 2);
	assert_int_equal(seen(), 0);
	expect_err("exists");
}

static void test_backoff_grows(void **state)
{
	(void)state;
	/* full jitter: the wait before retry a is uniform in [0, base 2^a];
	 * base 100 ms, 4 retries: each gap below its bound (+ slack for the
	 * request itself), the sum below 0.1 + 0.2 + 0.4 + 0.8 s */
	static const struct step s[] = {{503, NULL, "{}", 0}};
	script(s, 1);
	int rc = run_client("--url", url, "--model", "m", "--input", req_path,
			    "--backoff-ms", "100", "--attempts", "5", NULL);
	assert_int_equal(rc, 4);
	assert_int_equal(seen(), 5);
	for (int a = 0; a < 4; a++) {
		double gap = fake.t[a + 1] - fake.t[a];
		if (gap > 0.1 * (1 << a) + 0.25)
			fail_msg("retry %d came after %.3f s; bound %.1f s", a,
				 gap, 0.1 * (1 << a));
	}
}

static void test_retry_after_too_long(void **state)
{
	(void)state;
	static const struct step s[] = {
		{503, "120", "{\"error\":\"draining\"}", 0},
		{200, NULL, ok_body, 0},
	};
	script(s, 2);
	double t0 = now_s();
	int rc = run_client("--url", url, "--model", "m", "--input", req_path,
			    NULL);
	assert_int_equal(rc, 4);
	assert_int_equal(seen(), 1);
	assert_true(now_s() - t0 < 5);
	expect_err("Retry-After beyond --max-retry-after-s");
	expect_err("draining");
	/* an HTTP date in the past counts as 0 */
	static const struct step s2[] = {
		{429, "Sun, 06 Nov 1994 08:49:37 GMT", "{}", 0},
		{200, NULL, ok_body, 0},
	};
	script(s2, 2);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--backoff-ms", "1", NULL), 0);
	assert_int_equal(seen(), 2);
}

static void test_timeout_and_refused(void **state)
{
	(void)state;
	/* a try that hangs past --timeout-ms is a transport error: retried */
	static const struct step s[] = {
		{200, NULL, ok_body, 1500},
		{200, NULL, ok_body, 0},
	};
	script(s, 2);
	int rc = run_client("--url", url, "--model", "m", "--input", req_path,
			    "--backoff-ms", "1", "--timeout-ms", "300", NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(seen(), 2);
	expect_err("try 1:");
	expect_err("timed out");
	/* nothing listening: connection errors, retried, then exit 4 */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);	/* bound, never listened: connect is refused */
	char dead[64];
	snprintf(dead, sizeof dead, "http://127.0.0.1:%d", ntohs(a.sin_port));
	rc = run_client("--url", dead, "--model", "m", "--input", req_path,
			"--backoff-ms", "1", "--attempts", "3", NULL);
	assert_int_equal(rc, 4);
	expect_err("gave up after 3 tries (attempts exhausted)");
	expect_err(dead);
}

static void test_key_and_usage(void **state)
{
	(void)state;
	static const struct step s[] = {{200, NULL, ok_body, 0}};
	script(s, 1);
	setenv("PNO_API_KEY", "pno_envkey", 1);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, NULL), 0);
	assert_string_equal(fake.auth[0], "Bearer pno_envkey");
	script(s, 1);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--key", "pno_flagkey", NULL), 0);
	assert_string_equal(fake.auth[0], "Bearer pno_flagkey");
	unsetenv("PNO_API_KEY");
	script(s, 1);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, NULL), 0);
	assert_string_equal(fake.auth[0], "");

	/* usage errors: exit 2, no request sent */
	script(s, 1);
	assert_int_equal(run_client("--url", url, "--model", "m", NULL), 2);
	expect_err("one of --data or --input");
	assert_int_equal(run_client("--url", "ftp://x", "--model", "m",
				    "--input", req_path, NULL), 2);
	assert_int_equal(run_client("--url", url, "--model", "../etc",
				    "--input", req_path, NULL), 2);
	expect_err("--model ../etc");
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    "/nonexistent.json", NULL), 2);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    req_path, "--attempts", "0", NULL), 2);
	char bad[1100];
	snprintf(bad, sizeof bad, "%s", tu_tmp_path("client_bad.json"));
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fputs("{\"inputs\": [", f);
	fclose(f);
	assert_int_equal(run_client("--url", url, "--model", "m", "--input",
				    bad, NULL), 2);
	expect_err("line 1");
	assert_int_equal(seen(), 0);
	assert_int_equal(run_client("--help", NULL), 0);
	if (!strstr(out_text, "Exit status"))
		fail_msg("--help lacks the exit statuses:\n%s", out_text);
}

/* ---- the real server ---- */

#define X1 32

static char repo[900], model_file[1100], data_file[1100];

static void write_model(void)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = 8, .modes1 = 4, .modes2 = 3,
				 .layers = 2, .proj_hidden = 16, .heads = 2};
	char dir[1000];
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("client_repo"));
	snprintf(dir, sizeof dir, "%s/heat", repo);
	mkdir(repo, 0755);
	mkdir(dir, 0755);
	snprintf(dir, sizeof dir, "%s/heat/1", repo);
	mkdir(dir, 0755);
	snprintf(model_file, sizeof model_file, "%s/model.safetensors", dir);
	assert_status(pno_fno_init(&m, &a, X1, 1, 2, 11), PNO_STATUS_OK);
	snprintf(m.method, sizeof m.method, "pno-r");
	assert_status(pno_fno_save(&m, model_file, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
}

/* run PNO_BIN with args (NULL-terminated) and wait; its exit status */
static int run_pno(const char *const *argv)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(PNO_BIN, (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static pid_t serve_pid;

/* pno serve over repo; keys: NULL for --auth false, else the keys file */
static int start_serve(const char *keys)
{
	char pf[1100], lg[1100];
	snprintf(pf, sizeof pf, "%s", tu_tmp_path("client_serve_port"));
	snprintf(lg, sizeof lg, "%s", tu_tmp_path("client_serve_log"));
	unlink(pf);
	serve_pid = fork();
	assert_true(serve_pid >= 0);
	if (serve_pid == 0) {
		if (!freopen(lg, "w", stdout) || !freopen(lg, "a", stderr))
			_exit(127);
		if (keys)
			execl(PNO_BIN, PNO_BIN, "serve", "--repository", repo,
			      "--port", "0", "--port-file", pf,
			      "--compute-threads", "1", "--keys-file", keys,
			      (char *)NULL);
		else
			execl(PNO_BIN, PNO_BIN, "serve", "--repository", repo,
			      "--port", "0", "--port-file", pf,
			      "--compute-threads", "1", "--auth", "false",
			      (char *)NULL);
		_exit(127);
	}
	double t0 = now_s();
	for (;;) {
		int port = 0;
		FILE *f = fopen(pf, "r");
		if (f) {
			int ok = fscanf(f, "%d", &port) == 1;
			fclose(f);
			if (ok)
				return port;
		}
		int st;
		if (waitpid(serve_pid, &st, WNOHANG) == serve_pid)
			fail_msg("pno serve exited at start; log %s", lg);
		if (now_s() - t0 > 30)
			fail_msg("no port file after 30 s");
		usleep(10000);
	}
}

static void stop_serve(void)
{
	if (serve_pid > 0) {
		kill(serve_pid, SIGTERM);
		waitpid(serve_pid, NULL, 0);
		serve_pid = 0;
	}
}

/* the "mean" output of an answer as floats (n values) */
static float *answer_mean(const char *text, size_t *n)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e), *o;
	size_t i;
	float *v = NULL;
	if (!j)
		fail_msg("answer is not JSON (%s): %.300s", e.text, text);
	json_array_foreach(json_object_get(j, "outputs"), i, o) {
		if (strcmp(json_string_value(json_object_get(o, "name")),
			   "mean"))
			continue;
		json_t *d = json_object_get(o, "data"), *x;
		size_t k;
		*n = json_array_size(d);
		v = malloc(*n * sizeof *v);
		json_array_foreach(d, k, x)
			v[k] = (float)json_number_value(x);
	}
	json_decref(j);
	assert_non_null(v);
	return v;
}

static void test_real_server(void **state)
{
	(void)state;
	write_model();
	snprintf(data_file, sizeof data_file, "%s",
		 tu_tmp_path("client_heat.h5"));
	unlink(data_file);
	const char *gen[] = {PNO_BIN, "generate", "heat", "--samples", "3",
			     "--res", "32", "--seed", "5", "--out", data_file,
			     "--quiet", NULL};
	assert_int_equal(run_pno(gen), 0);
	int port = start_serve(NULL);
	char surl[64];
	snprintf(surl, sizeof surl, "http://127.0.0.1:%d", port);

	/* --data: input 2 of the dataset, 8 samples, seed 42 */
	int rc = run_client("--url", surl, "--model", "heat", "--data",
			    data_file, "--index", "2", "--samples", "8",
			    "--seed", "42", NULL);
	if (rc != 0)
		fail_msg("client exited %d: %s", rc, err_text);
	size_t n = 0;
	float *got = answer_mean(out_text, &n);

	/* the library's answer for the same file, input, seed, samples */
	struct pno_dataset d = {0};
	struct pno_dataset_opts o = {0, -1, 3, 0};
	static struct pno_model m;
	struct pno_prediction p = {0};
	assert_status(pno_dataset_read(&d, data_file, &o), PNO_STATUS_OK);
	assert_status(pno_model_load(&m, model_file, X1, 1, 8), PNO_STATUS_OK);
	assert_status(pno_model_predict(&m, d.in + 2 * X1, 8, 42, NULL, 0, &p),
		      PNO_STATUS_OK);
	assert_int_equal(n, X1);
	for (size_t i = 0; i < n; i++)
		if (memcmp(&got[i], &p.mean[i], sizeof(float)))
			fail_msg("mean[%zu]: client %.9g, library %.9g", i,
				 (double)got[i], (double)p.mean[i]);
	free(got);

	/* --input: the same request from a file, --seed/--samples over it */
	char req[1100], body[8192];
	size_t k = 0;
	snprintf(req, sizeof req, "%s", tu_tmp_path("client_real_req.json"));
	k += (size_t)snprintf(body + k, sizeof body - k, "{\"inputs\":[{"
			      "\"name\":\"input\",\"datatype\":\"FP32\","
			      "\"shape\":[1,1,%d],\"data\":[", X1);
	for (int i = 0; i < X1; i++)
		k += (size_t)snprintf(body + k, sizeof body - k, "%s%.9g",
				      i ? "," : "", (double)d.in[2 * X1 + i]);
	snprintf(body + k, sizeof body - k, "]}],\"parameters\":{\"seed\":1,"
		 "\"num_samples\":2}}");
	FILE *f = fopen(req, "w");
	assert_non_null(f);
	fputs(body, f);
	fclose(f);
	rc = run_client("--url", surl, "--model", "heat", "--version", "1",
			"--input", req, "--samples", "8", "--seed", "42", NULL);
	assert_int_equal(rc, 0);
	got = answer_mean(out_text, &n);
	assert_int_equal(n, X1);
	assert_memory_equal(got, p.mean, X1 * sizeof(float));
	free(got);

	/* the server's refusals, word for word, and no retry */
	rc = run_client("--url", surl, "--model", "nosuch", "--input", req,
			NULL);
	assert_int_equal(rc, 3);
	expect_err("the server answered 404");
	expect_err("nosuch");
	rc = run_client("--url", surl, "--model", "heat", "--input", req,
			"--samples", "1000000", NULL);
	assert_int_equal(rc, 3);
	expect_err("the server answered 400: parameters.num_samples");

	pno_prediction_free(&p);
	pno_model_free(&m);
	pno_dataset_free(&d);
	stop_serve();

	/* with authentication: a key made by `pno keys add`, from the
	 * environment; none, or a wrong one, is a 401 and not retried */
	char keys[1100], key[256];
	snprintf(keys, sizeof keys, "%s", tu_tmp_path("client_keys.json"));
	unlink(keys);
	rc = run_client_argv((const char *const[]){PNO_BIN, "keys", "add",
						    "--file", keys, "--name",
						    "c", "--roles", "infer",
						    NULL});
	assert_int_equal(rc, 0);
	assert_int_equal(sscanf(out_text, "%255s", key), 1);
	port = start_serve(keys);
	snprintf(surl, sizeof surl, "http://127.0.0.1:%d", port);
	rc = run_client("--url", surl, "--model", "heat", "--input", req,
			NULL);
	assert_int_equal(rc, 3);
	expect_err("the server answered 401");
	rc = run_client("--url", surl, "--model", "heat", "--input", req,
			"--key", "pno_not_a_key", NULL);
	assert_int_equal(rc, 3);
	expect_err("the server answered 401");
	setenv("PNO_API_KEY", key, 1);
	rc = run_client("--url", surl, "--model", "heat", "--input", req,
			"--samples", "8", "--seed", "42", NULL);
	unsetenv("PNO_API_KEY");
	if (rc != 0)
		fail_msg("client with the key exited %d: %s", rc, err_text);
	got = answer_mean(out_text, &n);
	assert_int_equal(n, X1);
	free(got);
	stop_serve();
}

static int setup(void **state)
{
	(void)state;
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				   MHD_USE_THREAD_PER_CONNECTION,
				   0, NULL, NULL, fake_handler, NULL,
				   MHD_OPTION_NOTIFY_COMPLETED, fake_done, NULL,
				   MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
	assert_non_null(daemon_);
	const union MHD_DaemonInfo *i =
		MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
	fake_port = i->port;
	snprintf(url, sizeof url, "http://127.0.0.1:%d", fake_port);
	snprintf(req_path, sizeof req_path, "%s",
		 tu_tmp_path("client_req.json"));
	FILE *f = fopen(req_path, "w");
	assert_non_null(f);
	fputs("{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
	      "\"shape\":[1,1,2],\"data\":[1,2]}]}", f);
	fclose(f);
	(void)out_path;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stop_serve();
	MHD_stop_daemon(daemon_);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_after_then_ok),
		cmocka_unit_test(test_400_not_retried),
		cmocka_unit_test(test_503_bounded),
		cmocka_unit_test(test_502_504_retried),
		cmocka_unit_test(test_backoff_grows),
		cmocka_unit_test(test_retry_after_too_long),
		cmocka_unit_test(test_timeout_and_refused),
		cmocka_unit_test(test_key_and_usage),
		cmocka_unit_test(test_real_server),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
