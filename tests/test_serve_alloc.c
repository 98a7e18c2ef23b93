/* pno serve's allocations per request in steady state: the server runs in
 * this process (serve_run on a thread), a client in a forked child sends
 * warm-up requests and then N = 200 infer requests on one keep-alive
 * connection (one libcurl easy handle), and every malloc / calloc /
 * realloc / aligned allocation of this process (the server's threads: the
 * main thread only waits on a pipe meanwhile) is counted by interposing
 * the allocator. The per-request count must stay within the documented
 * residual (docs/serve.md, "Memory"): libmicrohttpd's own objects, which
 * the server cannot supply. Then the worker's mixed batches: requests of
 * different sizes, sample counts and levels sharing batches answer the
 * same bytes as one at a time. Skipped under the sanitizers (ASan owns
 * malloc; the server runs in this process). */
#include "testutil.h"
#include "pno/fno.h"
#include "serve/serve.h"
#include "internal.h"

#include <jansson.h>

#include <curl/curl.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the counting allocator (glibc's, counted) ---- */

static atomic_long n_alloc;

/* not under AddressSanitizer: it owns malloc (and the test skips) */
#ifndef __SANITIZE_ADDRESS__

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

void *malloc(size_t n)
{
	atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
	return __libc_realloc(p, n);
}

void free(void *p)
{
	__libc_free(p);
}

int posix_memalign(void **p, size_t align, size_t n)
{
	atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
	*p = __libc_memalign(align, n);
	return *p ? 0 : 12;	/* ENOMEM */
}

void *aligned_alloc(size_t align, size_t n)
{
	atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
	return __libc_memalign(align, n);
}
#endif

/* ---- setup ---- */

enum { X = 64, S = 32, N_REQ = 200, N_WARM = 50 };

/* The residual per request (docs/serve.md "Memory"), all libmicrohttpd's
 * and measured by a backtrace of each allocation: the response object of
 * MHD_create_response_from_buffer (1) and the Content-Type header entry
 * MHD_add_response_header copies (struct, name, value: 3), and the same
 * 3 for the traceparent header every answer carries (docs/serve/
 * operations.md). A binary answer adds Inference-Header-Content-Length
 * (3 more); not sent here. */
#define RESIDUAL_MAX 7

static char repo[900], port_file[1024];
static int pipe_go[2], pipe_back[2];

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

static void write_model(void)
{
	struct pno_fno m;
	struct pno_fno_arch a = {.dims = 1, .in_ch = 1, .out_ch = 1,
				 .width = 16, .modes1 = 8, .modes2 = 1,
				 .layers = 2, .proj_hidden = 16, .heads = 2};
	char dir[1000], path[1100];
	snprintf(repo, sizeof repo, "%s", tu_tmp_path("alloc_repo"));
	snprintf(dir, sizeof dir, "%s/m/1", repo);
	mkdirs(dir);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_status(pno_fno_init(&m, &a, X, 1, 2, 7), PNO_STATUS_OK);
	snprintf(m.method, sizeof m.method, "pno-r");
	assert_status(pno_fno_save(&m, path, NULL), PNO_STATUS_OK);
	pno_fno_free(&m);
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	long *got = ud;
	*got += (long)(sz * n);
	(void)p;
	return sz * n;
}

/* n infer requests on the handle; 0 if every one answered 200 */
static int send_n(CURL *c, int n)
{
	for (int i = 0; i < n; i++) {
		long code = 0, got = 0;
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
		CURLcode e = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (e != CURLE_OK || code != 200 || got < 1000) {
			fprintf(stderr, "request %d: %s, HTTP %ld, %ld bytes\n",
				i, curl_easy_strerror(e), code, got);
			return -1;
		}
	}
	return 0;
}

/* The client (a child process): wait for the port, warm up, tell the
 * parent, wait for its go, send N_REQ, report. Its exit status is 0 when
 * every request succeeded. */
static void client(int batch_items)
{
	char url[128], body[4 * X * 8 + 256], b;
	int port = 0;
	for (int i = 0; i < 600 && !port; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (!port)
			usleep(20000);
	}
	if (!port)
		_exit(2);
	size_t k = (size_t)snprintf(body, sizeof body,
				    "{\"parameters\":{\"num_samples\":%d,"
				    "\"seed\":5},\"inputs\":[{\"name\":"
				    "\"input\",\"datatype\":\"FP32\",\"shape\":"
				    "[%d,1,%d],\"data\":[", S, batch_items, X);
	for (int j = 0; j < batch_items; j++)
		for (int i = 0; i < X; i++)
			k += (size_t)snprintf(body + k, sizeof body - k,
					      "%s%.3f", i || j ? "," : "",
					      0.5 + 0.01 * i);
	snprintf(body + k, sizeof body - k, "]}]}");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/models/m/infer",
		 port);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: "
						 "application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	int rc = send_n(c, N_WARM);
	if (write(pipe_back[1], "w", 1) != 1 || read(pipe_go[0], &b, 1) != 1)
		_exit(3);
	if (!rc)
		rc = send_n(c, N_REQ);
	if (write(pipe_back[1], "d", 1) != 1)
		_exit(3);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	_exit(rc ? 1 : 0);
}

static struct serve_opts opts;

static void *server_thread(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)serve_run(&opts);
}

/* Start serve_run on a thread with these extra settings (max_batch,
 * max_queue_delay_us) after forking the client (child: fn(arg)). */
static pthread_t start(const char *max_batch, const char *delay_us,
		       pid_t *pid, void (*fn)(int), int arg)
{
	snprintf(port_file, sizeof port_file, "%s",
		 tu_tmp_path("alloc_port"));
	unlink(port_file);
	assert_int_equal(pipe(pipe_go), 0);
	assert_int_equal(pipe(pipe_back), 0);
	*pid = fork();
	assert_true(*pid >= 0);
	if (*pid == 0)
		fn(arg);
	serve_config_defaults(&opts.cfg);
	const char *kv[][2] = {
		{"repository", repo}, {"port", "0"}, {"port_file", port_file},
		{"auth", "false"}, {"log_level", "error"},
		{"max_samples", "32"}, {"default_samples", "32"},
		{"threads", "2"}, {"compute_threads", "1"},
		{"max_batch", max_batch}, {"max_queue_delay_us", delay_us}};
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		assert_status(serve_config_set(&opts.cfg, kv[i][0], kv[i][1],
					       "test"), PNO_STATUS_OK);
	assert_status(serve_config_check(&opts.cfg), PNO_STATUS_OK);
	static char log[1024];
	snprintf(log, sizeof log, "%s", tu_tmp_path("alloc_log"));
	opts.log_file = log;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, server_thread, NULL), 0);
	return th;
}

/* Wait for the client, stop the server (SIGTERM: drain, return). */
static void stop(pthread_t th, pid_t pid)
{
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	kill(getpid(), SIGTERM);
	void *ret;
	pthread_join(th, &ret);
	for (int i = 0; i < 2; i++) {
		close(pipe_go[i]);
		close(pipe_back[i]);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		print_error("client status %d\n", st);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal((int)(intptr_t)ret, 0);
}

/* Allocations per request over N_REQ requests of batch_items inputs. */
static double measure(int batch_items)
{
	char b, mb[16];
	pid_t pid;
	snprintf(mb, sizeof mb, "%d", batch_items > 8 ? batch_items : 8);
	pthread_t th = start(mb, "0", &pid, client, batch_items);
	assert_int_equal(read(pipe_back[0], &b, 1), 1);	/* warmed up */
	long a0 = atomic_load(&n_alloc);
	assert_int_equal(write(pipe_go[1], "g", 1), 1);
	assert_int_equal(read(pipe_back[0], &b, 1), 1);	/* done */
	long a1 = atomic_load(&n_alloc);
	stop(th, pid);
	return (double)(a1 - a0) / N_REQ;
}

/* ---- mixed batches ---- */

/* requests of different shapes, sent at once so they share batches */
enum { NMIX = 6 };
static const struct {
	int B, S;
	const char *q;
	uint64_t seed;
} mix[NMIX] = {
	{1, 8, "0.05,0.95", 1}, {3, 8, "0.05,0.95", 2}, {2, 16, "0.5", 3},
	{1, 8, "0.05,0.95", 4}, {6, 8, "0.05,0.95", 5}, {2, 32, "0.2,0.8", 6},
};

static float mix_x(int k, int b, int i)
{
	return (float)(0.3 * k + 0.1 * b) + 0.01f * (float)i;
}

/* answer files, named before the fork (temporary names hold the pid):
 * [0] sent at once, [1] one at a time */
static char mix_file[2][NMIX][1100];

/* The client: the NMIX requests at once (curl multi), or (seq) one after
 * another; answers to files. */
static void mix_client(int seq)
{
	char url[128], *body[NMIX];
	FILE *f[NMIX];
	int port = 0;
	for (int i = 0; i < 600 && !port; i++) {
		FILE *pf = fopen(port_file, "r");
		if (pf) {
			if (fscanf(pf, "%d", &port) != 1)
				port = 0;
			fclose(pf);
		}
		if (!port)
			usleep(20000);
	}
	if (!port)
		_exit(2);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/models/m/infer",
		 port);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURLM *mh = curl_multi_init();
	CURL *c[NMIX];
	int rc = 0;
	for (int k = 0; k < NMIX; k++) {
		size_t cap = 512 + (size_t)mix[k].B * X * 16, n;
		body[k] = malloc(cap);
		n = (size_t)snprintf(body[k], cap, "{\"parameters\":{"
				     "\"num_samples\":%d,\"seed\":%llu,"
				     "\"quantiles\":[%s]},\"inputs\":[{"
				     "\"name\":\"input\",\"datatype\":"
				     "\"FP32\",\"shape\":[%d,1,%d],"
				     "\"data\":[", mix[k].S,
				     (unsigned long long)mix[k].seed, mix[k].q,
				     mix[k].B, X);
		for (int b = 0; b < mix[k].B; b++)
			for (int i = 0; i < X; i++)
				n += (size_t)snprintf(body[k] + n, cap - n,
						      "%s%.9g", b || i ? "," : "",
						      (double)mix_x(k, b, i));
		snprintf(body[k] + n, cap - n, "]}]}");
		f[k] = fopen(mix_file[seq][k], "w");
		c[k] = curl_easy_init();
		curl_easy_setopt(c[k], CURLOPT_URL, url);
		curl_easy_setopt(c[k], CURLOPT_POSTFIELDS, body[k]);
		curl_easy_setopt(c[k], CURLOPT_WRITEDATA, f[k]);
		if (seq)
			rc |= curl_easy_perform(c[k]) != CURLE_OK;
		else
			curl_multi_add_handle(mh, c[k]);
	}
	int running = !seq;
	while (running) {
		curl_multi_perform(mh, &running);
		curl_multi_poll(mh, NULL, 0, 100, NULL);
	}
	for (int k = 0; k < NMIX; k++) {
		long code = 0;
		curl_easy_getinfo(c[k], CURLINFO_RESPONSE_CODE, &code);
		rc |= code != 200;
		fclose(f[k]);
		if (!seq)
			curl_multi_remove_handle(mh, c[k]);
		curl_easy_cleanup(c[k]);
		free(body[k]);
	}
	curl_multi_cleanup(mh);
	_exit(rc);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *b = calloc(1, 1 << 20);
	size_t n = fread(b, 1, (1 << 20) - 1, f);
	fclose(f);
	assert_true(n > 0 && n < (1 << 20) - 1);
	return b;
}

/* Requests of different batch sizes, sample counts and levels, sent at
 * once to a server with max_batch 4 (the 6-input request is cut into
 * calls) and a 50 ms window, so they share batches, and then one at a
 * time to a server with max_batch 1: the outputs are the same bytes (the
 * answers do not depend on the batch; that they are pno_model_predict's
 * is tests/test_serve.c's check, from another process), and some request
 * ran in a batch larger than its own. */
static void test_mixed_batches(void **state)
{
	(void)state;
	if (getenv("PNO_SANITIZED"))
		skip();	/* the server runs in this process */
	for (int seq = 0; seq < 2; seq++)
		for (int k = 0; k < NMIX; k++) {
			char name[48];
			snprintf(name, sizeof name, "alloc_mix_%d_%d.json",
				 seq, k);
			snprintf(mix_file[seq][k], sizeof mix_file[seq][k],
				 "%s", tu_tmp_path(name));
		}
	for (int seq = 0; seq < 2; seq++) {
		pid_t pid;
		pthread_t th = start(seq ? "1" : "4", seq ? "0" : "50000",
				     &pid, mix_client, seq);
		stop(th, pid);
	}
	int shared = 0;
	for (int k = 0; k < NMIX; k++) {
		char *a = slurp(mix_file[0][k]), *b = slurp(mix_file[1][k]);
		const char *bs = strstr(a, "\"batch_size\":");
		assert_non_null(bs);
		shared |= atoi(bs + 13) > mix[k].B;
		const char *oa = strstr(a, "\"outputs\""), *ob = strstr(b,
									"\"outputs\"");
		assert_non_null(oa);
		assert_non_null(ob);
		assert_true(strlen(oa) > (size_t)mix[k].B * X * 4);
		assert_string_equal(oa, ob);
		free(a);
		free(b);
		unlink(mix_file[0][k]);
		unlink(mix_file[1][k]);
	}
	print_message("mixed batches: %d requests, the same bytes as one at a "
		      "time; some shared a batch: %s\n", NMIX,
		      shared ? "yes" : "no");
	assert_true(shared);
}

static void test_steady_state(void **state)
{
	(void)state;
	if (getenv("PNO_SANITIZED"))
		skip();	/* interposes malloc, which ASan owns */
	double one = measure(1);
	print_message("allocations per request, 1 input x %d samples: %.2f\n",
		      S, one);
	double four = measure(4);
	print_message("allocations per request, 4 inputs x %d samples: %.2f\n",
		      S, four);
	assert_true(one <= RESIDUAL_MAX);
	assert_true(four <= RESIDUAL_MAX);
}

/* The parse arena (src/json.c): nodes carved from a lent buffer, frees
 * of them no-ops; what does not fit spills to the allocator and is
 * reported, so the server can grow the arena; values either way intact;
 * a document of arena and allocator blocks released cleanly (ASan checks
 * the mix); no arena after the end. Runs under the sanitizers too. */
static void test_json_arena(void **state)
{
	(void)state;
	char text[8192], *p = text;
	p += sprintf(p, "{\"a\":[");
	for (int i = 0; i < 300; i++)
		p += sprintf(p, "%s%d.25", i ? "," : "", i);
	sprintf(p, "],\"s\":\"%s\"}", "a string long enough to matter");
	pno_json_init();
	for (int big = 0; big < 2; big++) {
		size_t cap = big ? 1 << 20 : 2048;
		char *arena = malloc(cap + 1);
		/* an odd start: blocks must still come 16-byte aligned */
		pno__json_arena_begin(arena + 1, cap);
		json_error_t e;
		tu_alloc_install();
		tu_alloc_reset(0);
		json_t *j = json_loads(text, 0, &e);
		long n = tu_alloc_count();
		tu_alloc_uninstall();
		assert_non_null(j);
		/* through pno's allocator: nothing when it all fits */
		assert_true(big ? n == 0 : n > 100);
		json_t *a = json_object_get(j, "a");
		assert_int_equal(json_array_size(a), 300);
		for (int i = 0; i < 300; i++) {
			json_t *v = json_array_get(a, (size_t)i);
			assert_true(((uintptr_t)v & 15) == 0);
			assert_true(json_real_value(v) == i + 0.25);
		}
		assert_string_equal(json_string_value(json_object_get(j, "s")),
				    "a string long enough to matter");
		json_decref(j);
		size_t spilled = pno__json_arena_end();
		print_message("arena of %zu bytes: %zu bytes spilled\n", cap,
			      spilled);
		if (big)
			assert_int_equal(spilled, 0);
		else
			assert_true(spilled > 8 * 300);	/* most nodes */
		free(arena);
	}
	/* ended: jansson allocates (and frees) normally again */
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	json_decref(j);
}

static int setup(void **state)
{
	(void)state;
	write_model();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady_state),
		cmocka_unit_test(test_mixed_batches),
		cmocka_unit_test(test_json_arena),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
