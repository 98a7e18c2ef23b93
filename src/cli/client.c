/* pno client: call a pno server's infer endpoint, with retries.
 *
 * One request per run: the body is made from a dataset input (--data,
 * --index) or read from a file (--input), POSTed to
 * URL/v2/models/MODEL[/versions/V]/infer, and the answer written to --out
 * (or stdout). Failures are retried with exponential backoff and full
 * jitter under a retry budget (serve/retry.h, the code the server uses
 * for what it sends out): transport errors and 429, 502, 503, 504, never
 * another 4xx or a 500; a Retry-After is honoured (a longer wait than
 * --max-retry-after-s gives up instead). docs/client.md. */
#include "cli.h"
#include "flags.h"

#include "retry.h"

#include "pno/io.h"

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* exit statuses (docs/client.md) */
enum {
	CLIENT_OK = 0,
	CLIENT_LOCAL = 1,	/* input, output, memory, libcurl */
	CLIENT_USAGE = 2,
	CLIENT_REFUSED = 3,	/* an answer a retry cannot change */
	CLIENT_UNAVAILABLE = 4	/* retryable failures outlasted the retries */
};

#define CLIENT_MAX_RESPONSE ((size_t)1 << 31)

static const char *client_usage =
	"usage: pno client --url URL --model NAME [--version V]\n"
	"                  (--data FILE.h5 [--index I] | --input REQUEST.json)\n"
	"                  [--samples S] [--seed SEED] [--key KEY] [--out FILE]\n"
	"\n"
	"Send one inference request to a pno server and write its answer (the\n"
	"v2 JSON response) to --out or stdout. The request is input I of a\n"
	"dataset, or a v2 infer request read from a file (--samples and --seed\n"
	"then override its parameters). The API key comes from --key or the\n"
	"environment variable PNO_API_KEY (preferred: a flag shows in ps).\n"
	"\n"
	"Retries transport errors and 429, 502, 503, 504 with exponential\n"
	"backoff and full jitter, waiting at least the server's Retry-After,\n"
	"within --attempts and the retry budget; never another 4xx or a 500.\n"
	"Exit status: 0 answered; 1 local failure (input, output, memory);\n"
	"2 usage error; 3 the server refused the request (4xx but 429, or 500:\n"
	"a retry would not help); 4 the server stayed unavailable (connection\n"
	"errors or 429/502/503/504 through every allowed retry).\n";

/* one request and the answer to the latest try */
struct call {
	CURL *curl;
	const char *url;
	char *resp;
	size_t resp_len, resp_cap;
	int too_big;
	int64_t retry_after_ns;	/* < 0: none */
	long status;		/* 0: no answer */
	CURLcode cerr;
	char errbuf[CURL_ERROR_SIZE];
	int verbose;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct call *c = ud;
	size_t add = sz * n, need = c->resp_len + add + 1;
	if (need > CLIENT_MAX_RESPONSE) {
		c->too_big = 1;
		return 0;
	}
	if (need > c->resp_cap) {
		size_t cap = c->resp_cap ? c->resp_cap : 65536;
		while (cap < need)
			cap *= 2;
		char *q = pno_malloc(cap);
		if (!q) {
			c->too_big = 1;
			return 0;
		}
		if (c->resp_len)
			memcpy(q, c->resp, c->resp_len);
		pno_free(c->resp);
		c->resp = q;
		c->resp_cap = cap;
	}
	memcpy(c->resp + c->resp_len, p, add);
	c->resp_len += add;
	c->resp[c->resp_len] = 0;
	return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct call *c = ud;
	size_t len = sz * n;
	static const char name[] = "retry-after:";
	if (len > sizeof name - 1 && len < 256 &&
	    !strncasecmp(p, name, sizeof name - 1)) {
		char v[256];
		size_t a = sizeof name - 1, b = len;
		while (a < b && (p[a] == ' ' || p[a] == '\t'))
			a++;
		while (b > a && (p[b - 1] == '\r' || p[b - 1] == '\n' ||
				 p[b - 1] == ' ' || p[b - 1] == '\t'))
			b--;
		memcpy(v, p + a, b - a);
		v[b - a] = 0;
		int64_t ns;
		/* an unparsable value counts as none (RFC 9110: ignore it) */
		if (retry_after_parse(v, (int64_t)time(NULL), &ns) ==
		    PNO_STATUS_OK)
			c->retry_after_ns = ns;
	}
	return len;
}

/* curl failures a later try may not repeat: the network or the peer */
static int transport_error(CURLcode e)
{
	switch (e) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static void try_once(void *ud, int attempt, struct retry_outcome *o)
{
	struct call *c = ud;
	(void)attempt;
	c->resp_len = 0;
	c->too_big = 0;
	c->retry_after_ns = -1;
	c->status = 0;
	c->errbuf[0] = 0;
	c->cerr = curl_easy_perform(c->curl);
	if (c->cerr == CURLE_OK) {
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
		o->http_status = (int)c->status;
		o->retry_after_ns = c->retry_after_ns;
	} else {
		o->transport_error = transport_error(c->cerr);
	}
}

static int64_t mono_ns(void *ud)
{
	struct timespec ts;
	(void)ud;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* what the latest try got, for messages: "the server answered 503: ..." */
static void describe(const struct call *c, char *out, size_t size)
{
	if (c->cerr != CURLE_OK) {
		snprintf(out, size, "%s: %s", c->url,
			 c->too_big ? "the answer is too large to hold" :
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(c->cerr));
		return;
	}
	json_t *j = c->resp ? json_loadb(c->resp, c->resp_len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (msg)
		snprintf(out, size, "the server answered %ld: %s", c->status,
			 msg);
	else if (c->resp_len)
		snprintf(out, size, "the server answered %ld: %.200s", c->status,
			 c->resp);
	else
		snprintf(out, size, "the server answered %ld", c->status);
	json_decref(j);
}

struct sleeper {
	struct call *c;
	int tries;
};

static void sleep_ns(void *ud, int64_t ns)
{
	struct sleeper *s = ud;
	char what[512];
	s->tries++;
	if (!quiet) {
		describe(s->c, what, sizeof what);
		fprintf(stderr, "pno client: try %d: %s; retrying in %.3f s\n",
			s->tries, what, 1e-9 * (double)ns);
	}
	struct timespec ts = {ns / 1000000000, ns % 1000000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* [A-Za-z0-9_.-]{1,127}: what the server accepts (no path injection) */
static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 127 || !strcmp(s, ".") || !strcmp(s, ".."))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		      ch == '-'))
			return 0;
	}
	return 1;
}

/* the request from input `index` of a dataset; NULL (printed) on failure */
static char *body_from_data(const char *path, int index, int samples,
			    int has_seed, uint64_t seed, int *usage)
{
	struct pno_dataset d = {0};
	struct pno_dataset_opts o = {0, -1, index + 1, 0};
	char *text = NULL;
	enum pno_status s = pno_dataset_read(&d, path, &o);
	if (s != PNO_STATUS_OK) {
		runtime_error("client", s);
		return NULL;
	}
	if (index >= d.N) {
		fprintf(stderr, "pno client: --index %d: %s has %d samples\n",
			index, path, d.N);
		*usage = 1;
		goto done;
	}
	size_t nin = (size_t)d.Cin * d.X * d.Y;
	const float *x = d.in + (size_t)index * nin;
	/* 16 characters a float at most ("%.9g" of a float) plus a comma */
	size_t cap = 512 + 17 * nin, k = 0;
	text = pno_malloc(cap);
	if (!text) {
		fprintf(stderr, "pno client: out of memory for the request\n");
		goto done;
	}
	k += (size_t)snprintf(text + k, cap - k, "{\"inputs\":[{\"name\":"
			      "\"input\",\"datatype\":\"FP32\",\"shape\":"
			      "[1,%d,%d", d.Cin, d.X);
	if (d.dims == 2)
		k += (size_t)snprintf(text + k, cap - k, ",%d", d.Y);
	k += (size_t)snprintf(text + k, cap - k, "],\"data\":[");
	for (size_t i = 0; i < nin; i++)
		k += (size_t)snprintf(text + k, cap - k, "%s%.9g", i ? "," : "",
				      (double)x[i]);
	k += (size_t)snprintf(text + k, cap - k, "]}],\"parameters\":{");
	if (samples > 0)
		k += (size_t)snprintf(text + k, cap - k, "\"num_samples\":%d%s",
				      samples, has_seed ? "," : "");
	if (has_seed)
		k += (size_t)snprintf(text + k, cap - k, "\"seed\":%llu",
				      (unsigned long long)seed);
	snprintf(text + k, cap - k, "}}");
done:
	if (*usage) {
		pno_free(text);
		text = NULL;
	}
	pno_dataset_free(&d);
	return text;
}

/* a v2 request from a file, --samples/--seed set over its parameters */
static char *body_from_file(const char *path, int samples, int has_seed,
			    uint64_t seed, int *usage)
{
	json_error_t e;
	json_t *r = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
	char *text = NULL, *dumped;
	if (!r) {
		fprintf(stderr, "pno client: --input %s: line %d, column %d: "
			"%s\n", path, e.line, e.column, e.text);
		*usage = 1;
		return NULL;
	}
	if (!json_is_object(r)) {
		fprintf(stderr, "pno client: --input %s: expected a JSON object "
			"(a v2 infer request)\n", path);
		*usage = 1;
		goto done;
	}
	if (samples > 0 || has_seed) {
		json_t *p = json_object_get(r, "parameters");
		if (!p) {
			p = json_object();
			json_object_set_new(r, "parameters", p);
		}
		if (!json_is_object(p)) {
			fprintf(stderr, "pno client: --input %s: \"parameters\" "
				"is not an object\n", path);
			*usage = 1;
			goto done;
		}
		if (samples > 0)
			json_object_set_new(p, "num_samples",
					    json_integer(samples));
		if (has_seed)
			json_object_set_new(p, "seed",
					    json_integer((json_int_t)seed));
	}
	dumped = json_dumps(r, JSON_COMPACT);
	if (dumped) {
		json_free_t jfree;
		json_malloc_t jmalloc;
		size_t n = strlen(dumped);
		if ((text = pno_malloc(n + 1)))
			memcpy(text, dumped, n + 1);
		/* jansson's own allocator made it (pno's, after
		 * pno_json_init) */
		json_get_alloc_funcs(&jmalloc, &jfree);
		jfree(dumped);
	}
	if (!text)
		fprintf(stderr, "pno client: out of memory for the request\n");
done:
	json_decref(r);
	return text;
}

/* the answer to out (atomically: a temporary renamed over it) */
static int write_out(const char *out, const char *p, size_t n)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
	FILE *fp = fopen(tmp, "wb");
	if (!fp || fwrite(p, 1, n, fp) != n || fflush(fp) ||
	    fsync(fileno(fp))) {
		fprintf(stderr, "pno client: cannot write %s: %s\n", out,
			strerror(errno));
		if (fp)
			fclose(fp);
		unlink(tmp);
		return CLIENT_LOCAL;
	}
	if (fclose(fp) || rename(tmp, out)) {
		fprintf(stderr, "pno client: cannot write %s: %s\n", out,
			strerror(errno));
		unlink(tmp);
		return CLIENT_LOCAL;
	}
	return CLIENT_OK;
}

int cmd_client(int argc, char **argv)
{
	const char *url = NULL, *model = NULL, *version = NULL, *data = NULL;
	const char *input = NULL, *out = NULL, *key = NULL;
	int index = 0, samples = 0, attempts = 4, timeout_ms = 30000;
	int deadline_ms = 0, backoff_ms = 100, backoff_cap_ms = 10000;
	int max_ra_s = 60, force = 0;
	double budget = 100;
	uint64_t seed = 0;
	struct flag f[] = {
		{"url", FLAG_STRING, &url, 0, 0, "server base URL (http://host:port)", 1, 0},
		{"model", FLAG_STRING, &model, 0, 0, "model name", 1, 0},
		{"version", FLAG_STRING, &version, 0, 0, "model version (default: the server's default)", 0, 0},
		{"data", FLAG_STRING, &data, 0, 0, "dataset (HDF5): send input --index", 0, 0},
		{"index", FLAG_INT, &index, 0, 1 << 30, "sample index in --data", 0, 0},
		{"input", FLAG_STRING, &input, 0, 0, "a v2 infer request (JSON) to send", 0, 0},
		{"samples", FLAG_INT, &samples, 1, 1000000, "num_samples (default: the server's)", 0, 0},
		{"seed", FLAG_U64, &seed, 0, 0, "random seed (default: the server picks one)", 0, 0},
		{"key", FLAG_STRING, &key, 0, 0, "API key (default: $PNO_API_KEY)", 0, 0},
		{"timeout-ms", FLAG_INT, &timeout_ms, 1, 86400000, "timeout of one try", 0, 0},
		{"deadline-ms", FLAG_INT, &deadline_ms, 0, 86400000, "no retry would start after this (0: none)", 0, 0},
		{"attempts", FLAG_INT, &attempts, 1, 100, "tries at most, the first included", 0, 0},
		{"backoff-ms", FLAG_INT, &backoff_ms, 1, 3600000, "backoff base: retry a waits up to base * 2^a", 0, 0},
		{"backoff-cap-ms", FLAG_INT, &backoff_cap_ms, 1, 3600000, "backoff bound", 0, 0},
		{"max-retry-after-s", FLAG_INT, &max_ra_s, 0, 86400, "give up on a longer Retry-After (0: wait any)", 0, 0},
		{"retry-budget", FLAG_DOUBLE, &budget, 0, 1e6, "retries per 10 s beyond 20% of requests", 0, 0},
		{"out", FLAG_STRING, &out, 0, 0, "write the answer here (default: stdout)", 0, 0},
		{"force", FLAG_BOOL, &force, 0, 0, "overwrite an existing --out", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only errors", 0, 0},
	};
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\noptions:\n", client_usage);
			flags_help(stdout, f, NF(f));
			return CLIENT_OK;
		}
	if (flags_parse("client", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return CLIENT_USAGE;
	int has_seed = 0;
	for (int i = 0; i < NF(f); i++)
		if (!strcmp(f[i].name, "seed"))
			has_seed = f[i].seen;
	if (!data == !input) {
		fprintf(stderr, "pno client: give one of --data or --input\n");
		return CLIENT_USAGE;
	}
	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
		fprintf(stderr, "pno client: --url %s: expected http://HOST:PORT "
			"or https://...\n", url);
		return CLIENT_USAGE;
	}
	if (!valid_name(model) || (version && !valid_name(version))) {
		fprintf(stderr, "pno client: --%s %s: expected "
			"[A-Za-z0-9_.-]{1,127}\n", valid_name(model) ? "version" :
			"model", valid_name(model) ? version : model);
		return CLIENT_USAGE;
	}
	struct stat sb;
	const char *in = data ? data : input;
	if (stat(in, &sb) != 0) {
		fprintf(stderr, "pno client: %s: no such file\n", in);
		return CLIENT_USAGE;
	}
	if (out && check_out_path("client", out, force))
		return CLIENT_USAGE;
	if (!key || !*key)
		key = getenv("PNO_API_KEY");

	struct retry_policy pol = retry_policy_default();
	pol.max_attempts = attempts;
	pol.base_ns = (int64_t)backoff_ms * 1000000;
	pol.cap_ns = (int64_t)backoff_cap_ms * 1000000;
	pol.max_retry_after_ns = (int64_t)max_ra_s * 1000000000;
	if (pol.cap_ns < pol.base_ns) {
		fprintf(stderr, "pno client: --backoff-cap-ms %d is below "
			"--backoff-ms %d\n", backoff_cap_ms, backoff_ms);
		return CLIENT_USAGE;
	}

	int rc = CLIENT_LOCAL, usage = 0;
	char *body = data ? body_from_data(data, index, samples, has_seed,
					   seed, &usage)
			  : body_from_file(input, samples, has_seed, seed,
					   &usage);
	char full[4096], auth[1100], what[512];
	struct curl_slist *hdrs = NULL;
	struct call c = {0};
	struct retry_budget bud = {0};
	if (!body)
		return usage ? CLIENT_USAGE : CLIENT_LOCAL;
	size_t ul = strlen(url);
	while (ul > 0 && url[ul - 1] == '/')
		ul--;
	if (version)
		snprintf(full, sizeof full, "%.*s/v2/models/%s/versions/%s/infer",
			 (int)ul, url, model, version);
	else
		snprintf(full, sizeof full, "%.*s/v2/models/%s/infer", (int)ul,
			 url, model);
	c.url = full;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    !(c.curl = curl_easy_init())) {
		fprintf(stderr, "pno client: libcurl failed to initialize\n");
		goto done;
	}
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (key && *key) {
		if (strlen(key) > 1024 || strpbrk(key, "\r\n")) {
			fprintf(stderr, "pno client: the API key is longer than "
				"1024 bytes or holds a line break\n");
			rc = CLIENT_USAGE;
			goto done;
		}
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		hdrs = curl_slist_append(hdrs, auth);
	}
	if (!hdrs) {
		fprintf(stderr, "pno client: out of memory\n");
		goto done;
	}
	curl_easy_setopt(c.curl, CURLOPT_URL, full);
	curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c.curl, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)strlen(body));
	curl_easy_setopt(c.curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c.curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(c.curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c.curl, CURLOPT_HEADERDATA, &c);
	curl_easy_setopt(c.curl, CURLOPT_ERRORBUFFER, c.errbuf);
	curl_easy_setopt(c.curl, CURLOPT_USERAGENT, "pno-client/"
			 PNO_VERSION_STRING);

	struct retry_budget_config bc = retry_budget_config_default();
	bc.min_per_sec = budget / (1e-9 * (double)bc.ttl_ns);
	int64_t t0 = mono_ns(NULL);
	if (retry_budget_init(&bud, &bc, t0) != PNO_STATUS_OK) {
		runtime_error("client", PNO_STATUS_INVALID);
		goto done;
	}
	struct retry_rng rng = {0, 0, 0};
	randombytes_buf(&rng.seed, sizeof rng.seed);
	struct sleeper sl = {&c, 0};
	struct retry_env env = {mono_ns, sleep_ns, &sl};
	struct retry_outcome last;
	int tries = 0;
	enum retry_verdict v = retry_run(&pol, &bud, &rng, &env,
					 deadline_ms ? t0 + (int64_t)deadline_ms *
					 1000000 : 0, try_once, &c, &tries,
					 &last);
	describe(&c, what, sizeof what);
	if (v == RETRY_SUCCEEDED && c.status == 200) {
		rc = out ? write_out(out, c.resp, c.resp_len) : CLIENT_OK;
		if (!out && fwrite(c.resp, 1, c.resp_len, stdout) != c.resp_len)
			rc = CLIENT_LOCAL;
		if (rc == CLIENT_OK && !quiet)
			fprintf(stderr, "pno client: %s answered in %.1f ms "
				"(%d %s)%s%s\n", model,
				1e-6 * (double)(mono_ns(NULL) - t0), tries,
				tries == 1 ? "try" : "tries", out ? "; wrote " :
				"", out ? out : "");
	} else if (v == RETRY_SUCCEEDED) {
		/* 1xx-3xx but not 200: nothing an infer call should get */
		fprintf(stderr, "pno client: %s\n", what);
		rc = CLIENT_REFUSED;
	} else if (v == RETRY_NOT_RETRYABLE && last.http_status) {
		fprintf(stderr, "pno client: %s\n", what);
		rc = CLIENT_REFUSED;
	} else if (v == RETRY_NOT_RETRYABLE) {
		/* a local libcurl failure: a bad URL, out of memory, ... */
		fprintf(stderr, "pno client: %s\n", what);
		rc = c.cerr == CURLE_URL_MALFORMAT ||
		     c.cerr == CURLE_UNSUPPORTED_PROTOCOL ? CLIENT_USAGE
							  : CLIENT_LOCAL;
	} else {
		fprintf(stderr, "pno client: gave up after %d %s (%s): %s\n",
			tries, tries == 1 ? "try" : "tries",
			v == RETRY_DEADLINE && pol.max_retry_after_ns > 0 &&
			last.retry_after_ns > pol.max_retry_after_ns ? "Retry-After beyond "
			"--max-retry-after-s" : retry_verdict_str(v), what);
		rc = CLIENT_UNAVAILABLE;
	}
done:
	retry_budget_free(&bud);
	curl_slist_free_all(hdrs);
	if (c.curl)
		curl_easy_cleanup(c.curl);
	curl_global_cleanup();
	pno_free(c.resp);
	pno_free(body);
	return rc;
}
