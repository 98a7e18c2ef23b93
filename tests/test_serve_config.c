/* serve/config: the table against the specified defaults and the struct,
 * file loading (valid, unknown key, wrong type, out of range, malformed,
 * duplicate, missing), strict flags, cross checks, reload diffs with
 * secrets and non-reloadable keys, help, the doc table, allocation
 * failures. */
#include "testutil.h"
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *write_file(const char *name, const char *text)
{
	const char *path = tu_tmp_path(name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* The values the server is specified to start with. */
static void test_defaults(void **state)
{
	(void)state;
	struct serve_config c;
	memset(&c, 0x5a, sizeof c);
	serve_config_defaults(&c);
	assert_string_equal(c.repository, "");
	assert_string_equal(c.host, "127.0.0.1");
	assert_int_equal(c.port, 8000);
	assert_int_equal(c.threads, 4);
	assert_int_equal(c.compute_threads, 0);
	assert_int_equal(c.max_connections, 256);
	assert_int_equal(c.connection_timeout_s, 30);
	assert_true(c.max_body_bytes == (int64_t)64 << 20);
	assert_int_equal(c.max_batch, 8);
	assert_int_equal(c.max_queue_delay_us, 2000);
	assert_int_equal(c.max_queue_size, 256);
	assert_int_equal(c.default_samples, 32);
	assert_int_equal(c.max_samples, 1000);
	assert_int_equal(c.max_header_bytes, 16384);
	assert_int_equal(c.max_json_depth, 32);
	assert_int_equal(c.max_json_elements, 16777216);
	assert_int_equal(c.max_total_samples, 4096);
	assert_int_equal(c.exit_timeout_s, 30);
	assert_int_equal(c.retry_after_s, 1);
	assert_string_equal(c.log_level, "info");
	assert_string_equal(c.port_file, "");
	/* authentication is on unless switched off; the breaker's defaults
	 * are the module's */
	assert_int_equal(c.auth, 1);
	assert_string_equal(c.keys_file, "");
	assert_true(c.rate_limit == 0);
	assert_int_equal(c.breaker_window, 20);
	assert_int_equal(c.breaker_min_calls, 10);
	assert_true(c.breaker_failure_rate == 0.5);
	assert_true(c.breaker_slow_rate == 1.0);
	assert_int_equal(c.breaker_slow_call_ms, 10000);
	assert_int_equal(c.breaker_wait_ms, 30000);
	assert_int_equal(c.breaker_probes, 3);
	/* the defaults pass the checks once a repository and a keys file
	 * are given */
	assert_status(serve_config_check(&c), PNO_STATUS_INVALID);
	assert_err_has("repository");
	strcpy(c.repository, "models");
	assert_status(serve_config_check(&c), PNO_STATUS_INVALID);
	assert_err_has("keys_file is not set");
	strcpy(c.keys_file, "keys.json");
	assert_status(serve_config_check(&c), PNO_STATUS_OK);
	c.auth = 0;
	c.keys_file[0] = 0;
	assert_status(serve_config_check(&c), PNO_STATUS_OK);
}

static int by_offset(const void *a, const void *b)
{
	const struct cfg_key *x = a, *y = b;
	return (x->offset > y->offset) - (x->offset < y->offset);
}

/* The table is well formed and covers the struct: sorted by offset, no two
 * fields overlap and every gap is narrower than the alignment of the field
 * after it (so it can only be padding, not a field the table forgot). */
static void test_table(void **state)
{
	(void)state;
	int n = serve_config_nkeys;
	struct cfg_key *k = malloc((size_t)n * sizeof *k);
	memcpy(k, serve_config_keys, (size_t)n * sizeof *k);
	for (int i = 0; i < n; i++) {
		struct serve_config c;
		serve_config_defaults(&c);
		/* each default is itself a valid value */
		assert_status(serve_config_set(&c, k[i].name, k[i].def, "default"),
			      PNO_STATUS_OK);
		assert_true(k[i].min <= k[i].max);
		assert_non_null(k[i].help);
		assert_true(serve_config_key(k[i].name) == &serve_config_keys[i]);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(k[i].name, k[j].name);
		if (k[i].type == CFG_INT)
			assert_true(k[i].size == sizeof(int) ||
				    k[i].size == sizeof(int64_t));
		if (k[i].type == CFG_STRING)
			assert_true(k[i].max == (double)(k[i].size - 1));
	}
	qsort(k, (size_t)n, sizeof *k, by_offset);
	assert_int_equal(k[0].offset, 0);
	for (int i = 1; i < n; i++) {
		size_t end = k[i - 1].offset + k[i - 1].size;
		size_t align = k[i].type == CFG_STRING ? 1 : k[i].size;
		if (k[i].offset < end || k[i].offset - end >= align)
			fail_msg("%s at %zu after %s ending at %zu: overlap or a "
				 "field missing from the table", k[i].name,
				 k[i].offset, k[i - 1].name, end);
	}
	assert_true(sizeof(struct serve_config) -
		    (k[n - 1].offset + k[n - 1].size) < 8);
	assert_null(serve_config_key("nope"));
	assert_true(serve_config_key("--max-batch") == serve_config_key("max_batch"));
	free(k);
}

static void test_file(void **state)
{
	(void)state;
	struct serve_config c, before;
	char want[1024];
	serve_config_defaults(&c);
	const char *p = write_file("cfg_ok.json",
				   "{\"repository\": \"/srv/models\",\n"
				   " \"max_batch\": 16, \"port\": 0,\n"
				   " \"max_body_bytes\": 17179869184,\n"
				   " \"log_level\": \"debug\"}\n");
	assert_status(serve_config_load_file(&c, p), PNO_STATUS_OK);
	assert_string_equal(c.repository, "/srv/models");
	assert_int_equal(c.max_batch, 16);
	assert_int_equal(c.port, 0);
	assert_true(c.max_body_bytes == 17179869184LL);
	assert_string_equal(c.log_level, "debug");
	assert_int_equal(c.threads, 4);		/* untouched keys keep theirs */

	/* every failure leaves the config exactly as it was */
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{"{\"max_bach\": 3}", "unknown key \"max_bach\""},
		{"{\"max_batch\": \"16\"}",
		 "key \"max_batch\": expected an integer, got a string"},
		{"{\"max_batch\": 16.0}",
		 "key \"max_batch\": expected an integer, got a real number"},
		{"{\"host\": 5}", "key \"host\": expected a string, got an integer"},
		{"{\"port\": null}", "expected an integer, got null"},
		{"{\"max_batch\": 0}", "key \"max_batch\": 0 is out of range [1, 4096]"},
		{"{\"port\": 65536}", "65536 is out of range [0, 65535]"},
		{"{\"max_body_bytes\": 17179869185}",
		 "17179869185 is out of range [1024, 17179869184]"},
		{"{\"max_batch\": -1}", "-1 is out of range [1, 4096]"},
		{"{\"log_level\": \"verbose\"}",
		 "\"verbose\" is not one of debug|info|warning|error"},
		{"{\"host\": \"\"}", "key \"host\": the value may not be empty"},
		{"{\"max_batch\": 4, \"max_batch\": 5}", "duplicate object key"},
		{"[1, 2]", "expected a JSON object of keys, got an array"},
		{"{\"repository\": \"x\", \"max_batch\": 99999}", "99999"},
		{"{\"max_batch\": 4,\n \"port\": }", "at line 2 column"},
		{"{\"repository\": \"a\\u0000b\"}", "NUL"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		before = c;
		p = write_file("cfg_bad.json", bad[i].text);
		enum pno_status s = serve_config_load_file(&c, p);
		if (s != PNO_STATUS_INVALID || !strstr(pno_last_error(), bad[i].msg))
			fail_msg("case %zu %s: %s \"%s\", want INVALID with \"%s\"",
				 i, bad[i].text, pno_status_name(s),
				 pno_last_error(), bad[i].msg);
		snprintf(want, sizeof want, "config %s: ", p);
		if (strncmp(pno_last_error(), want, strlen(want)))
			fail_msg("\"%s\" does not start with \"%s\"",
				 pno_last_error(), want);
		assert_memory_equal(&c, &before, sizeof c);
	}
	/* the exact message style */
	p = write_file("cfg_range.json", "{\"max_batch\": 0}");
	assert_status(serve_config_load_file(&c, p), PNO_STATUS_INVALID);
	snprintf(want, sizeof want, "config %s: key \"max_batch\": 0 is out of "
		 "range [1, 4096]", p);
	assert_string_equal(pno_last_error(), want);
	/* a string one byte too long for its buffer, then one that fits */
	char big[700];
	char text[800];
	memset(big, 'h', 512);
	big[512] = 0;
	snprintf(text, sizeof text, "{\"host\": \"%s\"}", big);
	p = write_file("cfg_long.json", text);
	assert_status(serve_config_load_file(&c, p), PNO_STATUS_INVALID);
	assert_err_has("512 characters) is longer than 511");
	big[511] = 0;
	snprintf(text, sizeof text, "{\"host\": \"%s\"}", big);
	p = write_file("cfg_long.json", text);
	assert_status(serve_config_load_file(&c, p), PNO_STATUS_OK);
	assert_int_equal(strlen(c.host), 511);
	/* missing file, directory, empty object */
	assert_status(serve_config_load_file(&c, tu_tmp_path("no_such.json")),
		      PNO_STATUS_NOTFOUND);
	assert_err_has("no_such.json");
	p = write_file("cfg_empty.json", "{}");
	before = c;
	assert_status(serve_config_load_file(&c, p), PNO_STATUS_OK);
	assert_memory_equal(&c, &before, sizeof c);
	assert_status(serve_config_load_file(NULL, p), PNO_STATUS_INVALID);
	assert_status(serve_config_load_file(&c, NULL), PNO_STATUS_INVALID);
}

static void test_flags(void **state)
{
	(void)state;
	struct serve_config c, before;
	serve_config_defaults(&c);
	assert_status(serve_config_set(&c, "max-batch", "16", "--max-batch"),
		      PNO_STATUS_OK);
	assert_int_equal(c.max_batch, 16);
	assert_status(serve_config_set(&c, "--max_queue-delay-us", "0", "--x"),
		      PNO_STATUS_OK);
	assert_int_equal(c.max_queue_delay_us, 0);
	assert_status(serve_config_set(&c, "max-body-bytes", "17179869184",
				       "--max-body-bytes"), PNO_STATUS_OK);
	assert_true(c.max_body_bytes == 17179869184LL);
	assert_status(serve_config_set(&c, "log-level", "warning", "--log-level"),
		      PNO_STATUS_OK);
	assert_string_equal(c.log_level, "warning");
	assert_status(serve_config_set(&c, "port-file", "", "--port-file"),
		      PNO_STATUS_OK);
	static const struct {
		const char *name, *value, *msg;
	} bad[] = {
		{"max-batch", "16x", "\"16x\" is not an integer"},
		{"max-batch", " 16", "is not an integer"},
		{"max-batch", "16 ", "is not an integer"},
		{"max-batch", "+16", "is not an integer"},
		{"max-batch", "", "\"\" is not an integer"},
		{"max-batch", "-", "is not an integer"},
		{"max-batch", "1e3", "is not an integer"},
		{"max-batch", "0x10", "is not an integer"},
		{"max-batch", "16.0", "is not an integer"},
		{"max-batch", "0", "key \"max_batch\": 0 is out of range [1, 4096]"},
		{"max-batch", "4097", "4097 is out of range"},
		{"max-batch", "4294967312", "4294967312 is out of range"},
		{"max-batch", "99999999999999999999",
		 "99999999999999999999 is out of range"},
		{"max-batch", "-9223372036854775809", "is out of range"},
		{"max-body-bytes", "9223372036854775807", "is out of range"},
		{"log-level", "verbose", "is not one of"},
		{"log-level", "inf", "is not one of"},
		{"log-level", "info|", "is not one of"},
		{"max-bach", "3", "unknown key \"max-bach\""},
		{"max--batch", "3", "unknown key"},
		{"", "3", "unknown key"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char src[64];
		snprintf(src, sizeof src, "--%s", bad[i].name);
		before = c;
		enum pno_status s = serve_config_set(&c, bad[i].name, bad[i].value,
						     src);
		if (s != PNO_STATUS_INVALID || !strstr(pno_last_error(), bad[i].msg) ||
		    strncmp(pno_last_error(), src, strlen(src)))
			fail_msg("--%s %s: %s \"%s\", want INVALID \"%s: ...%s\"",
				 bad[i].name, bad[i].value, pno_status_name(s),
				 pno_last_error(), src, bad[i].msg);
		assert_memory_equal(&c, &before, sizeof c);
	}
	assert_status(serve_config_set(&c, "max-batch", "-9223372036854775808",
				       "--max-batch"), PNO_STATUS_INVALID);
	assert_err_has("-9223372036854775808 is out of range");
	char big[600];
	memset(big, 'r', 599);
	big[599] = 0;
	assert_status(serve_config_set(&c, "repository", big, "--repository"),
		      PNO_STATUS_INVALID);
	assert_err_has("(599 characters) is longer than 511");
	assert_status(serve_config_set(&c, NULL, "1", "--x"), PNO_STATUS_INVALID);
	assert_status(serve_config_set(&c, "port", NULL, "--x"),
		      PNO_STATUS_INVALID);
}

static void test_check(void **state)
{
	(void)state;
	struct serve_config c;
	serve_config_defaults(&c);
	strcpy(c.repository, "m");
	strcpy(c.keys_file, "k");
	c.breaker_min_calls = 21;
	assert_status(serve_config_check(&c), PNO_STATUS_INVALID);
	assert_err_has("breaker_min_calls (21) exceeds breaker_window (20)");
	c.breaker_min_calls = 20;
	c.session_idle_s = c.session_ttl_s + 1;
	assert_status(serve_config_check(&c), PNO_STATUS_INVALID);
	assert_err_has("session_idle_s");
	c.session_idle_s = c.session_ttl_s;
	assert_status(serve_config_set(&c, "max-samples", "10", "--max-samples"),
		      PNO_STATUS_OK);
	assert_status(serve_config_check(&c), PNO_STATUS_INVALID);
	assert_string_equal(pno_last_error(), "config: default_samples (32) "
			    "exceeds max_samples (10)");
	c.default_samples = 10;	/* equal is allowed */
	assert_status(serve_config_check(&c), PNO_STATUS_OK);
	assert_status(serve_config_set(&c, "max-total-samples", "9",
				       "--max-total-samples"), PNO_STATUS_OK);
	assert_status(serve_config_check(&c), PNO_STATUS_INVALID);
	assert_string_equal(pno_last_error(), "config: default_samples (10) "
			    "exceeds max_total_samples (9)");
	c.max_total_samples = 10;
	assert_status(serve_config_check(&c), PNO_STATUS_OK);
	assert_status(serve_config_set(&c, "max_json_depth", "7", "--x"),
		      PNO_STATUS_INVALID);
	assert_status(serve_config_set(&c, "max_header_bytes", "1023", "--x"),
		      PNO_STATUS_INVALID);
	assert_status(serve_config_check(NULL), PNO_STATUS_INVALID);
}

struct lines {
	char buf[4096];
	int n;
};

static void collect(void *ud, const char *line)
{
	struct lines *l = ud;
	size_t len = strlen(l->buf);
	snprintf(l->buf + len, sizeof l->buf - len, "%s\n", line);
	l->n++;
}

static void test_diff(void **state)
{
	(void)state;
	struct serve_config a, b;
	struct lines l = {{0}, 0};
	const char *nr = "x";
	serve_config_defaults(&a);
	b = a;
	assert_int_equal(serve_config_diff(&a, &b, collect, &l, &nr), 0);
	assert_null(nr);
	assert_int_equal(l.n, 0);
	assert_status(serve_config_set(&b, "max-batch", "16", "--max-batch"),
		      PNO_STATUS_OK);
	assert_status(serve_config_set(&b, "log-level", "debug", "--log-level"),
		      PNO_STATUS_OK);
	assert_int_equal(serve_config_diff(&a, &b, collect, &l, &nr), 2);
	assert_null(nr);
	assert_string_equal(l.buf, "max_batch: 8 -> 16\n"
			    "log_level: \"info\" -> \"debug\"\n");
	/* non-reloadable: the first one in table order is reported */
	memset(&l, 0, sizeof l);
	assert_status(serve_config_set(&b, "port", "9000", "--port"),
		      PNO_STATUS_OK);
	assert_status(serve_config_set(&b, "repository", "/other", "--r"),
		      PNO_STATUS_OK);
	assert_int_equal(serve_config_diff(&a, &b, collect, &l, &nr), 4);
	assert_non_null(nr);
	assert_string_equal(nr, "repository");
	assert_non_null(strstr(l.buf, "port: 8000 -> 9000 (needs a restart)\n"));
	assert_non_null(strstr(l.buf, "repository: \"\" -> \"/other\" (needs a "
			       "restart)\n"));
	/* without a log callback it still counts */
	assert_int_equal(serve_config_diff(&a, &b, NULL, NULL, &nr), 4);
	assert_int_equal(serve_config_diff(&a, &b, NULL, NULL, NULL), 4);
	/* bytes after a string's NUL do not count as a change */
	b = a;
	a.host[strlen(a.host) + 1] = 'z';
	assert_int_equal(serve_config_diff(&a, &b, NULL, NULL, &nr), 0);
	/* the reloadable set is what docs/serve/config.md says */
	static const char *const reloadable[] = {
		"connection_timeout_s", "max_body_bytes", "max_batch",
		"max_queue_delay_us", "max_queue_size", "default_samples",
		"max_samples", "exit_timeout_s", "retry_after_s", "log_level",
		"gates_file", "max_json_depth", "max_json_elements",
		"max_total_samples", "request_timeout_ms",
		"max_request_timeout_ms", "degrade_queue_high_water",
		"degrade_min_samples", "fallback", "rollback_error_rate",
		"rollback_drift", "rollback_window", "rollback_windows", "health_interval_ms",
		"memory_limit_mb", "alerts_file", "alert_window_s",
		"alert_webhook_url"};
	for (int i = 0; i < serve_config_nkeys; i++) {
		int want = 0;
		for (size_t j = 0; j < sizeof reloadable / sizeof *reloadable; j++)
			want |= !strcmp(reloadable[j], serve_config_keys[i].name);
		if (serve_config_keys[i].reloadable != want)
			fail_msg("%s: reloadable %d, want %d",
				 serve_config_keys[i].name,
				 serve_config_keys[i].reloadable, want);
		assert_int_equal(serve_config_keys[i].secret, 0);
	}
}

/* A test-only table: a secret, a double, a bool, and what the server's
 * table does not have yet. */
struct tcfg {
	double ratio;
	int verbose;
	char token[32];
	int64_t big;
};

static const struct cfg_key tkeys[] = {
	{"ratio", CFG_DOUBLE, offsetof(struct tcfg, ratio), 0, 1, "0.25", 1, 0,
	 "a fraction", sizeof(double), NULL},
	{"verbose", CFG_BOOL, offsetof(struct tcfg, verbose), 0, 1, "false", 1, 0,
	 "chatty", sizeof(int), NULL},
	{"token", CFG_STRING, offsetof(struct tcfg, token), 0, 31, "", 0, 1,
	 "an access token", 32, NULL},
	{"big", CFG_INT, offsetof(struct tcfg, big), -5, 1e15, "7", 1, 0,
	 "a big integer", sizeof(int64_t), NULL},
};

static void test_table_generic(void **state)
{
	(void)state;
	struct tcfg a, b;
	cfg_table_defaults(tkeys, 4, &a);
	assert_true(a.ratio == 0.25);
	assert_int_equal(a.verbose, 0);
	assert_string_equal(a.token, "");
	assert_true(a.big == 7);
	b = a;
	assert_status(cfg_table_set(tkeys, 4, &b, "ratio", "0.5", "--ratio"),
		      PNO_STATUS_OK);
	assert_true(b.ratio == 0.5);
	assert_status(cfg_table_set(tkeys, 4, &b, "ratio", "1.5", "--ratio"),
		      PNO_STATUS_INVALID);
	assert_err_has("1.5 is out of range [0, 1]");
	static const char *const notnum[] = {"nan", "inf", "", " 0.5", "0.5x",
					     "1e999"};
	for (size_t i = 0; i < sizeof notnum / sizeof *notnum; i++) {
		assert_status(cfg_table_set(tkeys, 4, &b, "ratio", notnum[i], "--r"),
			      PNO_STATUS_INVALID);
		assert_err_has("is not a finite number");
	}
	assert_status(cfg_table_set(tkeys, 4, &b, "verbose", "true", "--v"),
		      PNO_STATUS_OK);
	assert_int_equal(b.verbose, 1);
	assert_status(cfg_table_set(tkeys, 4, &b, "verbose", "yes", "--v"),
		      PNO_STATUS_INVALID);
	assert_status(cfg_table_set(tkeys, 4, &b, "big", "-6", "--big"),
		      PNO_STATUS_INVALID);
	assert_err_has("-6 is out of range [-5, 1000000000000000]");
	assert_status(cfg_table_load_json(tkeys, 4, &b, sizeof b,
					  "{\"token\": \"s3cret\", \"ratio\": 1,"
					  " \"verbose\": false, \"big\": -5}", "t"),
		      PNO_STATUS_OK);
	assert_true(b.ratio == 1 && b.verbose == 0 && b.big == -5);
	assert_status(cfg_table_load_json(tkeys, 4, &b, sizeof b,
					  "{\"verbose\": 1}", "t"),
		      PNO_STATUS_INVALID);
	assert_err_has("expected true or false, got an integer");
	struct lines l = {{0}, 0};
	const char *nr;
	strcpy(a.token, "old-secret");
	assert_int_equal(cfg_table_diff(tkeys, 4, &a, &b, collect, &l, &nr), 3);
	assert_string_equal(nr, "token");
	assert_string_equal(l.buf, "ratio: 0.25 -> 1\n"
			    "token: (redacted) -> (redacted) (needs a restart)\n"
			    "big: 7 -> -5\n");
	assert_null(strstr(l.buf, "secret"));
}

static void test_help(void **state)
{
	(void)state;
	char *text = NULL;
	size_t size = 0;
	FILE *fp = open_memstream(&text, &size);
	assert_non_null(fp);
	serve_config_help(fp);
	fclose(fp);
	int col = -1;
	for (int i = 0; i < serve_config_nkeys; i++) {
		const struct cfg_key *k = &serve_config_keys[i];
		char flag[80], *line;
		size_t j = 0;
		for (; k->name[j]; j++)
			flag[j] = k->name[j] == '_' ? '-' : k->name[j];
		snprintf(flag + j, sizeof flag - j, " ");
		char pat[96];
		snprintf(pat, sizeof pat, "  --%s", flag);
		line = strstr(text, pat);
		if (!line)
			fail_msg("help lacks %s:\n%s", pat, text);
		char *eol = strchr(line, '\n');
		*eol = 0;
		/* the type column lines up across keys */
		static const char *const tn[] = {"int", "double", "bool",
						 "string"};
		char *type = strstr(line + strlen(pat), tn[k->type]);
		assert_non_null(type);
		if (col < 0)
			col = (int)(type - line);
		assert_int_equal((int)(type - line), col);
		char def[600];
		snprintf(def, sizeof def, k->type == CFG_STRING ? "default \"%s\""
			 : "default %s", k->def);
		if (!strstr(line, def))
			fail_msg("help line lacks \"%s\": %s", def, line);
		assert_int_equal(strstr(line, "(reloadable)") != NULL, k->reloadable);
		assert_non_null(strstr(line, k->help));
		*eol = '\n';
	}
	assert_non_null(strstr(text, "[1, 4096]"));
	assert_non_null(strstr(text, "debug|info|warning|error"));
	free(text);
	serve_config_help(NULL);
}

/* docs/serve/config.md holds every row the table generates, and no other. */
static void test_doc_table(void **state)
{
	(void)state;
	/* <src>/tests/data -> <src>/docs/... (textually: tests/data may not
	 * exist in a checkout, and then ".." through it does not resolve) */
	char path[4096];
	const char *data = PNO_TEST_DATA_DIR;
	size_t dl = strlen(data), sl = strlen("/tests/data");
	assert_true(dl > sl && !strcmp(data + dl - sl, "/tests/data"));
	snprintf(path, sizeof path, "%.*s/docs/serve/config.md", (int)(dl - sl),
		 data);
	FILE *fp = fopen(path, "r");
	if (!fp)
		fail_msg("cannot open %s", path);
	static char doc[65536];
	size_t n = fread(doc, 1, sizeof doc - 1, fp);
	fclose(fp);
	doc[n] = 0;
	int rows = 0;
	for (const char *p = doc; (p = strstr(p, "\n| `")); p++)
		rows++;
	for (int i = 0; i < serve_config_nkeys; i++) {
		char row[2048], pat[2100];
		serve_config_doc_row(&serve_config_keys[i], row, sizeof row);
		snprintf(pat, sizeof pat, "\n%s\n", row);
		if (!strstr(doc, pat))
			fail_msg("%s lacks the row (or it is stale):\n%s", path, row);
	}
	assert_int_equal(rows, serve_config_nkeys);
}

static void test_alloc_failure_loop(void **state)
{
	(void)state;
	const char *p = write_file("cfg_alloc.json",
				   "{\"repository\": \"/srv/models\", "
				   "\"max_batch\": 16, \"log_level\": \"error\", "
				   "\"host\": \"0.0.0.0\"}");
	struct serve_config c, d;
	serve_config_defaults(&d);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	for (k = 1;; k++) {
		c = d;
		tu_alloc_reset(k);
		if (tu_alloc_step(serve_config_load_file(&c, p), live0))
			break;
		assert_memory_equal(&c, &d, sizeof c);	/* untouched */
	}
	tu_alloc_uninstall();
	print_message("%ld allocation points\n", k - 1);
	assert_true(k > 3);
	assert_int_equal(c.max_batch, 16);
	assert_string_equal(c.host, "0.0.0.0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_table_generic),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_doc_table),
		cmocka_unit_test(test_alloc_failure_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
