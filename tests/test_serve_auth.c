/* serve/auth and serve/session: key generation and redaction, the Bearer
 * parser, wrong / missing / malformed / revoked / expired credentials and
 * roles, keys-file errors and reload, the timing of the key lookup
 * against a prefix-leaking comparison, session lifetimes on a fake clock
 * (absolute, idle, revocation, key revocation, full table), threads
 * hammering checks during reloads and session creation, the pno keys
 * command, allocation failures. */
#include "testutil.h"
#include "auth.h"
#include "session.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define NS 1000000000LL

static const char *write_file(const char *name, const char *text)
{
	const char *path = tu_tmp_path(name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* One keys-file entry for `token` (its hash computed here). extra: more
 * JSON fields, e.g. ", \"revoked\": true". */
static void entry(char *buf, size_t size, const char *name, const char *token,
		  const char *roles, const char *extra)
{
	unsigned char h[AUTH_HASH_BYTES];
	char hex[2 * AUTH_HASH_BYTES + 1];
	auth_key_hash(h, token, strlen(token));
	sodium_bin2hex(hex, sizeof hex, h, sizeof h);
	size_t o = strlen(buf);
	snprintf(buf + o, size - o, "%s{\"name\": \"%s\", \"hash\": \"%s\", "
		 "\"roles\": [%s]%s}", o > 1 ? ", " : "", name, hex, roles,
		 extra ? extra : "");
}

static int64_t fake_wall_now = 1767225600 - 86400;	/* 2025-12-31 */
static int64_t fake_wall(void *ud)
{
	(void)ud;
	return fake_wall_now;
}

/* a thread-safe fake monotonic clock */
static _Atomic int64_t fake_ns;
static int64_t fake_clock(void *ud)
{
	(void)ud;
	return atomic_load(&fake_ns);
}

struct keys {
	char alice[AUTH_KEY_LEN + 1], bob[AUTH_KEY_LEN + 1];
	char carol[AUTH_KEY_LEN + 1], dave[AUTH_KEY_LEN + 1];
	char eve[AUTH_KEY_LEN + 1], wrong[AUTH_KEY_LEN + 1];
};

/* alice: infer; bob: infer+admin; carol: admin only; dave: revoked;
 * eve: expires 2026-01-01T00:00:00Z; wrong: in no file. */
static const char *keys_file(struct keys *k, const char *fname)
{
	unsigned char h[AUTH_HASH_BYTES];
	static char buf[8192];
	auth_key_generate(k->alice, h);
	auth_key_generate(k->bob, h);
	auth_key_generate(k->carol, h);
	auth_key_generate(k->dave, h);
	auth_key_generate(k->eve, h);
	auth_key_generate(k->wrong, h);
	strcpy(buf, "[");
	entry(buf, sizeof buf, "alice", k->alice, "\"infer\"",
	      ", \"created\": \"2026-11-28T10:57:06Z\"");
	entry(buf, sizeof buf, "bob", k->bob, "\"infer\", \"admin\"", NULL);
	entry(buf, sizeof buf, "carol", k->carol, "\"admin\"", NULL);
	entry(buf, sizeof buf, "dave", k->dave, "\"infer\", \"admin\"",
	      ", \"revoked\": true");
	entry(buf, sizeof buf, "eve", k->eve, "\"infer\"",
	      ", \"expires\": \"2026-01-01T00:00:00Z\"");
	strcat(buf, "]");
	return write_file(fname, buf);
}

static enum auth_result check(struct auth_ctx *c, const char *token,
			      unsigned role, struct auth_principal *p)
{
	char h[512];
	snprintf(h, sizeof h, "Bearer %s", token);
	return auth_check(c, h, role, p);
}

static void test_key_format(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	char a[AUTH_KEY_LEN + 1], b[AUTH_KEY_LEN + 1];
	unsigned char ha[AUTH_HASH_BYTES], hb[AUTH_HASH_BYTES], h[AUTH_HASH_BYTES];
	auth_key_generate(a, ha);
	auth_key_generate(b, hb);
	assert_int_equal(strlen(a), AUTH_KEY_LEN);
	assert_memory_equal(a, "pno_", 4);
	for (int i = 4; i < AUTH_KEY_LEN; i++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
				       "qrstuvwxyz0123456789-_", a[i]));
	/* 43 characters decode back to 32 bytes */
	unsigned char raw[64];
	size_t n = 0;
	assert_int_equal(sodium_base642bin(raw, sizeof raw, a + 4, 43, NULL, &n,
					   NULL,
					   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
			 0);
	assert_int_equal(n, 32);
	assert_string_not_equal(a, b);
	auth_key_hash(h, a, strlen(a));
	assert_memory_equal(h, ha, sizeof h);
	/* the stored hash is domain-separated: not a plain BLAKE2b */
	unsigned char plain[AUTH_HASH_BYTES];
	crypto_generichash(plain, sizeof plain, (const unsigned char *)a,
			   strlen(a), NULL, 0);
	assert_memory_not_equal(plain, ha, sizeof plain);

	char r[AUTH_REDACT_LEN];
	auth_redact(r, a);
	assert_int_equal(strlen(r), 4 + 4 + 3);
	assert_memory_equal(r, a, 8);
	assert_string_equal(r + 8, "...");
	auth_redact(r, "pnos_abcdefgh");
	assert_string_equal(r, "pnos_abcd...");
	auth_redact(r, "xy");
	assert_string_equal(r, "xy...");
	auth_redact(r, NULL);
	assert_string_equal(r, "-");

	int64_t t;
	assert_int_equal(auth_time_parse("1970-01-01T00:00:00Z", &t), 0);
	assert_true(t == 0);
	assert_int_equal(auth_time_parse("2026-01-01T00:00:00Z", &t), 0);
	assert_true(t == 1767225600);	/* date -d 2026-01-01Z +%s */
	assert_int_equal(auth_time_parse("2024-02-29T12:30:15Z", &t), 0);
	assert_true(t == 1709209815);
	char f[21];
	auth_time_format(f, 1709209815);
	assert_string_equal(f, "2024-02-29T12:30:15Z");
	assert_int_equal(auth_time_parse("2025-02-29T00:00:00Z", &t), -1);
	assert_int_equal(auth_time_parse("2025-13-01T00:00:00Z", &t), -1);
	assert_int_equal(auth_time_parse("2025-01-01 00:00:00Z", &t), -1);
	assert_int_equal(auth_time_parse("2025-01-01T00:00:00", &t), -1);
	assert_int_equal(auth_time_parse("2025-01-01T24:00:00Z", &t), -1);
}

static void test_parse_bearer(void **state)
{
	(void)state;
	const char *tok;
	size_t n;
	assert_int_equal(auth_parse_bearer("Bearer abc", &tok, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(tok, "abc", 3);
	assert_int_equal(auth_parse_bearer("bearer   a-b_c.d~e+f/g==", &tok, &n), 0);
	assert_int_equal(n, strlen("a-b_c.d~e+f/g=="));
	assert_int_equal(auth_parse_bearer("BEARER x", &tok, &n), 0);
	const char *bad[] = {
		"", "Bearer", "Bearer ", "Bearer  ", "Bearerabc", "Basic abc",
		"Bearer abc def", "Bearer abc ", "Bearer ab\"c", "Bearer a=b",
		"Bearer abc\n", "Bearer\tabc", " Bearer abc", "Bearer =abc",
		"Bearer ab%c",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (auth_parse_bearer(bad[i], &tok, &n) == 0)
			fail_msg("\"%s\" accepted", bad[i]);
	assert_int_equal(auth_parse_bearer(NULL, &tok, &n), -1);
	char big[AUTH_TOKEN_MAX + 16];
	strcpy(big, "Bearer ");
	memset(big + 7, 'a', AUTH_TOKEN_MAX);
	big[7 + AUTH_TOKEN_MAX] = '\0';
	assert_int_equal(auth_parse_bearer(big, &tok, &n), 0);
	strcat(big, "a");
	assert_int_equal(auth_parse_bearer(big, &tok, &n), -1);
}

static void test_check(void **state)
{
	(void)state;
	struct keys k;
	const char *path = keys_file(&k, "keys_check.json");
	struct auth_ctx *c = NULL;
	fake_wall_now = 1767225600 - 1;	/* 2025-12-31T23:59:59Z */
	assert_status(auth_ctx_new(&c, path, fake_wall, NULL), PNO_STATUS_OK);
	struct auth_principal p;

	/* right key, role held */
	assert_int_equal(check(c, k.alice, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_string_equal(p.name, "alice");
	assert_int_equal(p.roles, AUTH_ROLE_INFER);
	assert_int_equal(p.session, 0);
	assert_string_equal(p.reason, "ok");
	assert_int_equal(check(c, k.alice, 0, &p), AUTH_OK);
	assert_int_equal(check(c, k.bob, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_int_equal(check(c, k.bob, AUTH_ROLE_ADMIN, &p), AUTH_OK);
	assert_string_equal(p.name, "bob");
	assert_int_equal(check(c, k.bob, AUTH_ROLE_ADMIN | AUTH_ROLE_INFER, &p),
			 AUTH_OK);
	assert_int_equal(check(c, k.carol, AUTH_ROLE_ADMIN, &p), AUTH_OK);

	/* roles: admin does not imply infer, infer does not give admin */
	assert_int_equal(check(c, k.alice, AUTH_ROLE_ADMIN, &p), AUTH_FORBIDDEN);
	assert_string_equal(p.name, "alice");
	assert_string_equal(p.reason, "role admin required");
	assert_int_equal(check(c, k.carol, AUTH_ROLE_INFER, &p), AUTH_FORBIDDEN);
	assert_string_equal(p.reason, "role infer required");

	/* wrong: a valid-looking key in no file, and each key with one
	 * character changed */
	assert_int_equal(check(c, k.wrong, AUTH_ROLE_INFER, &p),
			 AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "unknown key");
	assert_string_equal(p.name, "");
	const char *all[] = {k.alice, k.bob, k.carol};
	for (int i = 0; i < 3; i++)
		for (int pos = 0; pos < AUTH_KEY_LEN; pos += 5) {
			char m[AUTH_KEY_LEN + 1];
			strcpy(m, all[i]);
			m[pos] = m[pos] == 'A' ? 'B' : 'A';
			assert_int_equal(check(c, m, 0, &p), AUTH_UNAUTHENTICATED);
		}
	/* truncated and extended */
	char m[AUTH_KEY_LEN + 8];
	snprintf(m, sizeof m, "%.*s", AUTH_KEY_LEN - 1, k.alice);
	assert_int_equal(check(c, m, 0, &p), AUTH_UNAUTHENTICATED);
	snprintf(m, sizeof m, "%sA", k.alice);
	assert_int_equal(check(c, m, 0, &p), AUTH_UNAUTHENTICATED);

	/* missing, malformed */
	assert_int_equal(auth_check(c, NULL, AUTH_ROLE_INFER, &p),
			 AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "missing credentials");
	char h[256];
	snprintf(h, sizeof h, "Basic %s", k.alice);
	assert_int_equal(auth_check(c, h, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "malformed Authorization header");
	snprintf(h, sizeof h, "%s", k.alice);	/* no scheme */
	assert_int_equal(auth_check(c, h, 0, &p), AUTH_UNAUTHENTICATED);
	snprintf(h, sizeof h, "Bearer %s junk", k.alice);
	assert_int_equal(auth_check(c, h, 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(auth_check(c, "Bearer ", 0, &p), AUTH_UNAUTHENTICATED);
	snprintf(h, sizeof h, "bearer  %s", k.alice);	/* case, spaces */
	assert_int_equal(auth_check(c, h, 0, &p), AUTH_OK);

	/* revoked: the right key, refused */
	assert_int_equal(check(c, k.dave, AUTH_ROLE_INFER, &p),
			 AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "revoked key");
	assert_string_equal(p.name, "");

	/* expired: valid one second before its date, refused at it */
	assert_int_equal(check(c, k.eve, AUTH_ROLE_INFER, &p), AUTH_OK);
	fake_wall_now = 1767225600;
	assert_int_equal(check(c, k.eve, AUTH_ROLE_INFER, &p),
			 AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "expired key");
	assert_int_equal(check(c, k.alice, AUTH_ROLE_INFER, &p), AUTH_OK);

	/* the session validity hook */
	unsigned roles = 0;
	unsigned char hash[AUTH_HASH_BYTES];
	auth_key_hash(hash, k.bob, strlen(k.bob));
	assert_true(auth_key_valid(c, "bob", hash, &roles));
	assert_int_equal(roles, AUTH_ROLE_INFER | AUTH_ROLE_ADMIN);
	assert_false(auth_key_valid(c, "alice", hash, &roles));
	auth_key_hash(hash, k.dave, strlen(k.dave));
	assert_false(auth_key_valid(c, "dave", hash, &roles));
	auth_key_hash(hash, k.eve, strlen(k.eve));
	assert_false(auth_key_valid(c, "eve", hash, &roles));
	auth_ctx_free(c);
}

static enum pno_status parse(const char *text)
{
	struct auth_table *t = NULL;
	enum pno_status s = auth_table_parse(&t, text, strlen(text), "k.json");
	if (s == PNO_STATUS_OK)
		assert_non_null(t);
	else
		assert_null(t);
	auth_table_free(t);
	return s;
}

static void test_file_errors(void **state)
{
	(void)state;
	const char *H = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	const char *H2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	char b[2048];

	assert_status(parse("[]"), PNO_STATUS_OK);
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_OK);

	/* malformed JSON, with its position */
	assert_status(parse("[{\"name\": \"a\",\n \"hash\": }]"),
		      PNO_STATUS_INVALID);
	assert_err_has("k.json");
	assert_err_has("line 2 column");
	assert_status(parse(""), PNO_STATUS_INVALID);
	assert_status(parse("[{\"name\": \"a\""), PNO_STATUS_INVALID);
	assert_err_has("line 1");
	assert_status(parse("{\"name\": \"a\"}"), PNO_STATUS_INVALID);
	assert_err_has("expected a JSON array");
	assert_status(parse("[1]"), PNO_STATUS_INVALID);
	assert_err_has("entry 0: expected an object");

	/* duplicate names, duplicate hashes, duplicate JSON keys */
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"]}, {\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"admin\"]}]", H, H2);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("entry 1: duplicate name \"a\" (also entry 0)");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"]}, {\"name\": \"b\", \"hash\": \"%s\", \"roles\": "
		 "[\"admin\"]}]", H, H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("same hash as entry 0");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"name\": \"b\", \"hash\": "
		 "\"%s\", \"roles\": [\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("duplicate");

	/* roles */
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\", \"root\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("entry 0 (\"a\"): unknown role \"root\"");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("non-empty array");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "\"infer\"}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\", \"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("given twice");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[7]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("unknown role an integer");

	/* hash length and digits */
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%.62s\", \"roles\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("must be 64 hex digits");
	assert_err_has("got 62 characters");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s00\", \"roles\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("got 66 characters");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%.63sg\", \"roles\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("hex digits");
	assert_status(parse("[{\"name\": \"a\", \"roles\": [\"infer\"]}]"),
		      PNO_STATUS_INVALID);
	assert_err_has("no string");

	/* names, fields, types, dates */
	snprintf(b, sizeof b, "[{\"name\": \"a b\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("\"name\" must be");
	snprintf(b, sizeof b, "[{\"name\": \"\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"role\": "
		 "[\"infer\"]}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("unknown field \"role\"");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"], \"revoked\": \"no\"}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("\"revoked\" must be true or false, got a string");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"], \"expires\": \"tomorrow\"}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("\"expires\" must be a UTC time");
	snprintf(b, sizeof b, "[{\"name\": \"a\", \"hash\": \"%s\", \"roles\": "
		 "[\"infer\"], \"created\": 5}]", H);
	assert_status(parse(b), PNO_STATUS_INVALID);
	assert_err_has("\"created\"");

	/* the file itself */
	struct auth_table *t = (struct auth_table *)1;
	assert_status(auth_table_load(&t, tu_tmp_path("no_such_keys.json")),
		      PNO_STATUS_NOTFOUND);
	assert_null(t);
	assert_err_has("no_such_keys.json");
	struct auth_ctx *c = NULL;
	assert_status(auth_ctx_new(&c, tu_tmp_path("no_such_keys.json"), NULL,
				   NULL), PNO_STATUS_NOTFOUND);
	assert_null(c);

	/* a table with no keys refuses everything */
	const char *p = write_file("keys_empty.json", "[]");
	assert_status(auth_ctx_new(&c, p, NULL, NULL), PNO_STATUS_OK);
	struct auth_principal pr;
	assert_int_equal(check(c, "pno_whatever", 0, &pr), AUTH_UNAUTHENTICATED);
	auth_ctx_free(c);
}

static void test_reload(void **state)
{
	(void)state;
	struct keys k;
	const char *path = keys_file(&k, "keys_reload.json");
	struct auth_ctx *c = NULL;
	fake_wall_now = 1767225600 - 86400;
	assert_status(auth_ctx_new(&c, path, fake_wall, NULL), PNO_STATUS_OK);
	struct auth_principal p;
	assert_int_equal(check(c, k.alice, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_int_equal(check(c, k.bob, AUTH_ROLE_ADMIN, &p), AUTH_OK);

	/* alice revoked, bob loses admin, frank added */
	char frank[AUTH_KEY_LEN + 1], b[4096] = "[";
	unsigned char h[AUTH_HASH_BYTES];
	auth_key_generate(frank, h);
	entry(b, sizeof b, "alice", k.alice, "\"infer\"", ", \"revoked\": true");
	entry(b, sizeof b, "bob", k.bob, "\"infer\"", NULL);
	entry(b, sizeof b, "frank", frank, "\"admin\"", NULL);
	strcat(b, "]");
	write_file("keys_reload.json", b);
	assert_status(auth_ctx_reload(c), PNO_STATUS_OK);
	assert_int_equal(check(c, k.alice, AUTH_ROLE_INFER, &p),
			 AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "revoked key");
	assert_int_equal(check(c, k.bob, AUTH_ROLE_ADMIN, &p), AUTH_FORBIDDEN);
	assert_int_equal(check(c, k.bob, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_int_equal(check(c, frank, AUTH_ROLE_ADMIN, &p), AUTH_OK);
	assert_int_equal(check(c, k.carol, AUTH_ROLE_ADMIN, &p),
			 AUTH_UNAUTHENTICATED);	/* removed */

	/* a broken file or a missing one: error, the old table stays */
	write_file("keys_reload.json", "[{\"name\": ");
	assert_status(auth_ctx_reload(c), PNO_STATUS_INVALID);
	assert_err_has("old keys kept");
	assert_err_has("keys_reload.json");
	assert_int_equal(check(c, frank, AUTH_ROLE_ADMIN, &p), AUTH_OK);
	remove(path);
	assert_status(auth_ctx_reload(c), PNO_STATUS_NOTFOUND);
	assert_int_equal(check(c, frank, AUTH_ROLE_ADMIN, &p), AUTH_OK);
	auth_ctx_free(c);
}

/* ---- timing of the key lookup ---- */

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

#define TK 64			/* keys in the table */
static unsigned char stored[TK][AUTH_HASH_BYTES];
static volatile int sink;

/* what a careless lookup does: a byte loop that stops at the first
 * difference (volatile so the compiler keeps it a byte loop) */
static int naive_match(const unsigned char *d)
{
	for (int i = 0; i < TK; i++) {
		const volatile unsigned char *s = stored[i];
		int j = 0;
		while (j < AUTH_HASH_BYTES && s[j] == d[j])
			j++;
		if (j == AUTH_HASH_BYTES)
			return i;
	}
	return -1;
}

static int libc_match(const unsigned char *d)
{
	for (int i = 0; i < TK; i++)
		if (memcmp(stored[i], d, AUTH_HASH_BYTES) == 0)
			return i;
	return -1;
}

enum { LOOKUP_OURS, LOOKUP_NAIVE, LOOKUP_LIBC };

/* Median ns per lookup of candidates sharing 0 and 31 leading bytes with
 * every stored hash: R rounds of `inner` lookups each, the two candidates
 * alternating within a round so drift hits both alike. */
static void measure(const struct auth_table *t, int which,
		    const unsigned char c0[AUTH_HASH_BYTES],
		    const unsigned char c31[AUTH_HASH_BYTES], int R,
		    double med[2])
{
	const int inner = 16;
	double *x[2] = {malloc(R * sizeof(double)), malloc(R * sizeof(double))};
	for (int r = 0; r < R; r++)
		for (int q = 0; q < 2; q++) {
			int v = (r & 1) ? 1 - q : q;
			const unsigned char *c = v ? c31 : c0;
			double t0 = now_ns();
			for (int j = 0; j < inner; j++)
				sink += which == LOOKUP_OURS	  ? auth_table_match(t, c)
					: which == LOOKUP_NAIVE ? naive_match(c)
								: libc_match(c);
			x[v][r] = (now_ns() - t0) / inner;
		}
	for (int v = 0; v < 2; v++) {
		qsort(x[v], R, sizeof(double), cmp_double);
		med[v] = x[v][R / 2];
		free(x[v]);
	}
}

/* The lookup's time does not depend on how many leading bytes of a
 * stored hash a candidate matches. 64 stored hashes share their first 31
 * bytes (the last byte 0..63); candidate c31 shares those 31 bytes (last
 * byte 0xff: no match), c0 differs in byte 0. An early-exit comparison
 * does 31x the work per entry for c31; a constant-time one the same. */
static void test_timing(void **state)
{
	(void)state;
	unsigned char prefix[AUTH_HASH_BYTES];
	randombytes_buf(prefix, sizeof prefix);
	static char b[TK * 200];
	strcpy(b, "[");
	for (int i = 0; i < TK; i++) {
		char hex[2 * AUTH_HASH_BYTES + 1];
		memcpy(stored[i], prefix, AUTH_HASH_BYTES);
		stored[i][AUTH_HASH_BYTES - 1] = (unsigned char)i;
		sodium_bin2hex(hex, sizeof hex, stored[i], AUTH_HASH_BYTES);
		size_t o = strlen(b);
		snprintf(b + o, sizeof b - o, "%s{\"name\": \"k%d\", \"hash\": "
			 "\"%s\", \"roles\": [\"infer\"]}", i ? ", " : "", i, hex);
	}
	strcat(b, "]");
	struct auth_table *t = NULL;
	assert_status(auth_table_parse(&t, b, strlen(b), "timing"), PNO_STATUS_OK);
	unsigned char c0[AUTH_HASH_BYTES], c31[AUTH_HASH_BYTES];
	memcpy(c31, prefix, AUTH_HASH_BYTES);
	c31[AUTH_HASH_BYTES - 1] = 0xff;
	memcpy(c0, prefix, AUTH_HASH_BYTES);
	c0[0] ^= 0x80;
	c0[AUTH_HASH_BYTES - 1] = 0xff;
	/* the candidates match nothing; a stored hash matches itself */
	assert_int_equal(auth_table_match(t, c0), -1);
	assert_int_equal(auth_table_match(t, c31), -1);
	assert_int_equal(auth_table_match(t, stored[37]), 37);
	assert_int_equal(naive_match(stored[37]), 37);

	int R = getenv("PNO_SANITIZED") ? 1001 : 4001;
	double ours[2], naive[2], libc[2];
	measure(t, LOOKUP_OURS, c0, c31, R / 4, ours);	/* warm-up */
	measure(t, LOOKUP_OURS, c0, c31, R, ours);
	measure(t, LOOKUP_NAIVE, c0, c31, R, naive);
	measure(t, LOOKUP_LIBC, c0, c31, R, libc);
	double d_ours = fabs(ours[1] - ours[0]) / fmin(ours[0], ours[1]);
	double d_naive = (naive[1] - naive[0]) / naive[0];
	double d_libc = (libc[1] - libc[0]) / libc[0];
	print_message("lookup of %d hashes, median ns (0 vs 31 shared bytes): "
		      "sodium_memcmp %.0f vs %.0f (%+.1f%%), early-exit byte loop "
		      "%.0f vs %.0f (%+.1f%%), glibc memcmp %.0f vs %.0f "
		      "(%+.1f%%)\n", TK, ours[0], ours[1], 100 * (ours[1] - ours[0]) / ours[0],
		      naive[0], naive[1], 100 * d_naive, libc[0], libc[1],
		      100 * d_libc);
	/* bound 10%: medians of thousands of interleaved rounds move by a
	 * few percent on a busy machine; the early-exit loop moves by
	 * several hundred percent, so the measurement can see a leak */
	assert_true(d_ours < 0.10);
	assert_true(d_naive > 1.0);
	auth_table_free(t);
}

/* ---- sessions ---- */

static struct session_table *sessions(int max, int64_t abs_s, int64_t idle_s)
{
	struct session_opts o;
	session_opts_default(&o);
	o.max_sessions = max;
	o.absolute_timeout_s = abs_s;
	o.idle_timeout_s = idle_s;
	o.clock = fake_clock;
	struct session_table *t = NULL;
	assert_status(session_table_new(&t, &o), PNO_STATUS_OK);
	return t;
}

static enum auth_result use(struct auth_ctx *c, struct session_table *st,
			    const char *token, unsigned role,
			    struct auth_principal *p)
{
	char h[256];
	snprintf(h, sizeof h, "Bearer %s", token);
	return serve_authenticate(c, st, h, role, p);
}

static void test_sessions(void **state)
{
	(void)state;
	struct keys k;
	const char *path = keys_file(&k, "keys_sessions.json");
	struct auth_ctx *c = NULL;
	fake_wall_now = 1767225600 - 86400;
	assert_status(auth_ctx_new(&c, path, fake_wall, NULL), PNO_STATUS_OK);
	atomic_store(&fake_ns, 1000 * NS);
	struct session_table *st = sessions(8, 100, 30);
	struct auth_principal pa, pb, p;
	assert_int_equal(check(c, k.alice, AUTH_ROLE_INFER, &pa), AUTH_OK);
	assert_int_equal(check(c, k.bob, AUTH_ROLE_INFER, &pb), AUTH_OK);

	/* a token: prefix, length, random; works as a bearer token */
	char t1[SESSION_TOKEN_LEN + 1], t2[SESSION_TOKEN_LEN + 1];
	int64_t exp = 0;
	assert_status(session_create(st, &pa, t1, &exp), PNO_STATUS_OK);
	assert_true(exp == 100);
	assert_int_equal(strlen(t1), SESSION_TOKEN_LEN);
	assert_memory_equal(t1, "pnos_", 5);
	assert_status(session_create(st, &pa, t2, NULL), PNO_STATUS_OK);
	assert_string_not_equal(t1, t2);
	assert_int_equal(use(c, st, t1, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_string_equal(p.name, "alice");
	assert_int_equal(p.session, 1);
	/* roles follow the key */
	assert_int_equal(use(c, st, t1, AUTH_ROLE_ADMIN, &p), AUTH_FORBIDDEN);
	/* the API key itself still works beside it */
	assert_int_equal(use(c, st, k.alice, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_int_equal(p.session, 0);
	/* a session cannot mint sessions */
	assert_int_equal(use(c, st, t1, 0, &p), AUTH_OK);
	char t3[SESSION_TOKEN_LEN + 1];
	assert_status(session_create(st, &p, t3, NULL), PNO_STATUS_INVALID);
	assert_err_has("session token cannot create sessions");

	/* wrong tokens: altered, unknown, malformed, sessions off */
	char m[SESSION_TOKEN_LEN + 2];
	strcpy(m, t1);
	m[20] = m[20] == 'A' ? 'B' : 'A';
	assert_int_equal(use(c, st, m, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "unknown session");
	snprintf(m, sizeof m, "%sA", t1);
	assert_int_equal(use(c, st, m, 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(use(c, st, "pnos_", 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(use(c, NULL, t1, 0, &p), AUTH_UNAUTHENTICATED);

	/* idle timeout: 30 s after the last successful use */
	atomic_store(&fake_ns, 1029 * NS);
	assert_int_equal(use(c, st, t1, 0, &p), AUTH_OK);	/* idle 29 s */
	atomic_store(&fake_ns, 1058 * NS);
	assert_int_equal(use(c, st, t1, 0, &p), AUTH_OK);	/* idle 29 s */
	/* t2 was last used at 1000: idle 58 s */
	assert_int_equal(use(c, st, t2, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "session expired (idle timeout)");
	assert_int_equal(use(c, st, t2, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "unknown session");	/* removed */
	/* a refused (forbidden) use does not count as activity */
	atomic_store(&fake_ns, 1080 * NS);
	assert_int_equal(use(c, st, t1, AUTH_ROLE_ADMIN, &p), AUTH_FORBIDDEN);
	atomic_store(&fake_ns, 1088 * NS);
	assert_int_equal(use(c, st, t1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "session expired (idle timeout)");

	/* absolute timeout: 100 s after creation however busy */
	assert_status(session_create(st, &pa, t1, NULL), PNO_STATUS_OK);
	for (int s = 20; s < 100; s += 20) {
		atomic_store(&fake_ns, (1088 + s) * NS);
		assert_int_equal(use(c, st, t1, 0, &p), AUTH_OK);
	}
	atomic_store(&fake_ns, (1088 + 99) * NS);
	assert_int_equal(use(c, st, t1, 0, &p), AUTH_OK);
	atomic_store(&fake_ns, (1088 + 100) * NS);
	assert_int_equal(use(c, st, t1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "session expired (absolute timeout)");
	assert_int_equal(session_count(st), 0);

	/* revocation: one token; then all of a key's */
	char a1[SESSION_TOKEN_LEN + 1], a2[SESSION_TOKEN_LEN + 1];
	char b1[SESSION_TOKEN_LEN + 1];
	assert_status(session_create(st, &pa, a1, NULL), PNO_STATUS_OK);
	assert_status(session_create(st, &pa, a2, NULL), PNO_STATUS_OK);
	assert_status(session_create(st, &pb, b1, NULL), PNO_STATUS_OK);
	assert_int_equal(session_revoke(st, a1, strlen(a1)), 1);
	assert_int_equal(session_revoke(st, a1, strlen(a1)), 0);
	assert_int_equal(use(c, st, a1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(use(c, st, a2, 0, &p), AUTH_OK);
	assert_status(session_create(st, &pa, a1, NULL), PNO_STATUS_OK);
	assert_int_equal(session_revoke_key(st, "alice"), 2);
	assert_int_equal(use(c, st, a1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(use(c, st, a2, 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(use(c, st, b1, AUTH_ROLE_ADMIN, &p), AUTH_OK);

	/* revoking the key in the keys file ends its sessions at their next
	 * use; so does replacing the key under the same name */
	assert_status(session_create(st, &pa, a1, NULL), PNO_STATUS_OK);
	char b[4096] = "[", newbob[AUTH_KEY_LEN + 1];
	unsigned char h[AUTH_HASH_BYTES];
	auth_key_generate(newbob, h);
	entry(b, sizeof b, "alice", k.alice, "\"infer\"", ", \"revoked\": true");
	entry(b, sizeof b, "bob", newbob, "\"infer\", \"admin\"", NULL);
	strcat(b, "]");
	write_file("keys_sessions.json", b);
	/* after the reload alice's session ends at its next use (revoked
	 * key); bob's (secret replaced under the same name) and carol's
	 * (removed from the file) are pruned at once */
	struct auth_principal pc;
	char c1[SESSION_TOKEN_LEN + 1];
	assert_int_equal(check(c, k.carol, 0, &pc), AUTH_OK);
	assert_status(session_create(st, &pc, c1, NULL), PNO_STATUS_OK);
	assert_int_equal(session_count(st), 3);
	assert_int_equal(session_prune(st, c), 0);	/* all still valid */
	assert_status(auth_ctx_reload(c), PNO_STATUS_OK);
	assert_int_equal(use(c, st, a1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "session's key revoked, expired or removed");
	assert_int_equal(session_count(st), 2);
	assert_int_equal(session_prune(st, c), 2);
	assert_int_equal(session_count(st), 0);
	assert_int_equal(use(c, st, b1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "unknown session");
	assert_int_equal(use(c, st, c1, 0, &p), AUTH_UNAUTHENTICATED);
	/* pruning by time alone */
	assert_int_equal(check(c, newbob, 0, &pb), AUTH_OK);
	assert_status(session_create(st, &pb, b1, NULL), PNO_STATUS_OK);
	assert_status(session_create(st, &pb, c1, NULL), PNO_STATUS_OK);
	atomic_store(&fake_ns, atomic_load(&fake_ns) + 20 * NS);
	assert_int_equal(use(c, st, c1, 0, &p), AUTH_OK);
	atomic_store(&fake_ns, atomic_load(&fake_ns) + 10 * NS);
	assert_int_equal(session_prune(st, NULL), 1);	/* b1: idle 30 s */
	assert_int_equal(use(c, st, c1, 0, &p), AUTH_OK);
	assert_int_equal(session_count(st), 1);
	session_table_free(st);

	/* a full table: expired sessions go first, then new ones are
	 * refused with a clear error */
	keys_file(&k, "keys_sessions.json");
	assert_status(auth_ctx_reload(c), PNO_STATUS_OK);
	assert_int_equal(check(c, k.alice, AUTH_ROLE_INFER, &pa), AUTH_OK);
	st = sessions(3, 100, 30);
	atomic_store(&fake_ns, 5000 * NS);
	char s1[SESSION_TOKEN_LEN + 1], s2[SESSION_TOKEN_LEN + 1];
	char s3[SESSION_TOKEN_LEN + 1], s4[SESSION_TOKEN_LEN + 1];
	assert_status(session_create(st, &pa, s1, NULL), PNO_STATUS_OK);
	atomic_store(&fake_ns, 5010 * NS);
	assert_status(session_create(st, &pa, s2, NULL), PNO_STATUS_OK);
	assert_status(session_create(st, &pa, s3, NULL), PNO_STATUS_OK);
	assert_status(session_create(st, &pa, s4, NULL), PNO_STATUS_RANGE);
	assert_err_has("table full (3 live sessions");
	assert_int_equal(session_count(st), 3);
	atomic_store(&fake_ns, 5030 * NS);	/* s1 idle 30 s: expired */
	assert_status(session_create(st, &pa, s4, NULL), PNO_STATUS_OK);
	assert_int_equal(use(c, st, s1, 0, &p), AUTH_UNAUTHENTICATED);
	assert_int_equal(use(c, st, s2, 0, &p), AUTH_OK);
	assert_int_equal(use(c, st, s3, 0, &p), AUTH_OK);
	assert_int_equal(use(c, st, s4, 0, &p), AUTH_OK);
	session_table_free(st);

	/* options */
	struct session_opts o;
	session_opts_default(&o);
	o.idle_timeout_s = o.absolute_timeout_s + 1;
	assert_status(session_table_new(&st, &o), PNO_STATUS_INVALID);
	assert_err_has("idle");
	session_opts_default(&o);
	o.max_sessions = 0;
	assert_status(session_table_new(&st, &o), PNO_STATUS_INVALID);
	auth_ctx_free(c);
}

/* ---- concurrency ---- */

struct hammer {
	struct auth_ctx *c;
	struct session_table *st;
	const struct keys *k;
	int n, ok, unauth, forbidden, created, full;
	unsigned char pad[64];
};

static void *auth_thread(void *arg)
{
	struct hammer *h = arg;
	struct auth_principal p;
	for (int i = 0; i < h->n; i++) {
		const char *tok = i % 4 == 0 ? h->k->alice
				  : i % 4 == 1 ? h->k->wrong
				  : i % 4 == 2 ? h->k->bob
					       : h->k->dave;
		enum auth_result r = check(h->c, tok, i % 8 == 2 ? AUTH_ROLE_ADMIN
						      : AUTH_ROLE_INFER, &p);
		h->ok += r == AUTH_OK;
		h->unauth += r == AUTH_UNAUTHENTICATED;
		h->forbidden += r == AUTH_FORBIDDEN;
	}
	return NULL;
}

static void *session_thread(void *arg)
{
	struct hammer *h = arg;
	struct auth_principal p;
	char tok[SESSION_TOKEN_LEN + 1];
	if (check(h->c, h->k->bob, 0, &p) != AUTH_OK)
		return NULL;	/* the counts then fail the test */
	for (int i = 0; i < h->n; i++) {
		enum pno_status s = session_create(h->st, &p, tok, NULL);
		h->created += s == PNO_STATUS_OK;
		h->full += s == PNO_STATUS_RANGE;
		if (s == PNO_STATUS_OK) {
			struct auth_principal q;
			h->ok += session_check(h->st, h->c, tok, strlen(tok), 0,
					       &q) == AUTH_OK;
		}
	}
	return NULL;
}

/* Four threads check keys while the main thread reloads the same keys
 * file 200 times; four threads create sessions into a table of 1000:
 * every count exact. */
static void test_concurrency(void **state)
{
	(void)state;
	struct keys k;
	const char *path = keys_file(&k, "keys_threads.json");
	struct auth_ctx *c = NULL;
	fake_wall_now = 1767225600 - 86400;
	assert_status(auth_ctx_new(&c, path, fake_wall, NULL), PNO_STATUS_OK);
	enum { NT = 4 };
	int n = getenv("PNO_SANITIZED") ? 20000 : 100000;
	struct hammer h[NT];
	pthread_t th[NT];
	for (int i = 0; i < NT; i++) {
		h[i] = (struct hammer){.c = c, .k = &k, .n = n};
		pthread_create(&th[i], NULL, auth_thread, &h[i]);
	}
	for (int r = 0; r < 200; r++)
		assert_status(auth_ctx_reload(c), PNO_STATUS_OK);
	int ok = 0, unauth = 0, forbidden = 0;
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		ok += h[i].ok;
		unauth += h[i].unauth;
		forbidden += h[i].forbidden;
	}
	/* per thread of n (a multiple of 8): alice infer n/4 ok; wrong and
	 * dave n/2 unauthenticated; bob n/4 ok (admin or infer) */
	assert_int_equal(ok, NT * n / 2);
	assert_int_equal(unauth, NT * n / 2);
	assert_int_equal(forbidden, 0);

	atomic_store(&fake_ns, 0);
	struct session_table *st = sessions(1000, 3600, 900);
	for (int i = 0; i < NT; i++) {
		h[i] = (struct hammer){.c = c, .st = st, .k = &k, .n = 400};
		pthread_create(&th[i], NULL, session_thread, &h[i]);
	}
	int created = 0, full = 0;
	ok = 0;
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		created += h[i].created;
		full += h[i].full;
		ok += h[i].ok;
	}
	assert_int_equal(created, 1000);
	assert_int_equal(full, NT * 400 - 1000);
	assert_int_equal(ok, 1000);
	assert_int_equal(session_count(st), 1000);
	session_table_free(st);
	auth_ctx_free(c);
}

/* ---- pno keys ---- */

/* Run a shell command; its stdout (first line) into out, exit status
 * returned. */
static int run(char *out, size_t size, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The CLI's keys authenticate with the server's check; list never shows
 * them; revoke takes effect at the next reload; bad input exits 2. */
static void test_cli_keys(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("cli_keys.json");
	char ka[512], kb[512], out[8192];
	remove(path);
	assert_int_equal(run(ka, sizeof ka, "%s keys add --file %s --name alice "
			     "--roles infer,admin 2>/dev/null", PNO_BIN, path), 0);
	assert_int_equal(run(kb, sizeof kb, "%s keys add --file %s --name bob "
			     "2>/dev/null", PNO_BIN, path), 0);
	ka[strcspn(ka, "\n")] = '\0';
	kb[strcspn(kb, "\n")] = '\0';
	assert_int_equal(strlen(ka), AUTH_KEY_LEN);
	assert_int_equal(strlen(kb), AUTH_KEY_LEN);
	struct auth_ctx *c = NULL;
	struct auth_principal p;
	assert_status(auth_ctx_new(&c, path, NULL, NULL), PNO_STATUS_OK);
	assert_int_equal(check(c, ka, AUTH_ROLE_ADMIN | AUTH_ROLE_INFER, &p),
			 AUTH_OK);
	assert_string_equal(p.name, "alice");
	assert_int_equal(check(c, kb, AUTH_ROLE_INFER, &p), AUTH_OK);
	assert_int_equal(check(c, kb, AUTH_ROLE_ADMIN, &p), AUTH_FORBIDDEN);

	/* the file holds no key; list shows none */
	FILE *fp = fopen(path, "rb");
	size_t n = fread(out, 1, sizeof out - 1, fp);
	out[n] = '\0';
	fclose(fp);
	assert_null(strstr(out, ka + 4));
	assert_null(strstr(out, kb + 4));
	assert_int_equal(run(out, sizeof out, "%s keys list --file %s", PNO_BIN,
			     path), 0);
	assert_non_null(strstr(out, "alice"));
	assert_non_null(strstr(out, "infer,admin"));
	assert_null(strstr(out, ka + 4));

	assert_int_equal(run(out, sizeof out, "%s keys revoke --file %s --name "
			     "alice 2>/dev/null", PNO_BIN, path), 0);
	assert_int_equal(check(c, ka, 0, &p), AUTH_OK);	/* until reload */
	assert_status(auth_ctx_reload(c), PNO_STATUS_OK);
	assert_int_equal(check(c, ka, 0, &p), AUTH_UNAUTHENTICATED);
	assert_string_equal(p.reason, "revoked key");
	assert_int_equal(check(c, kb, 0, &p), AUTH_OK);
	auth_ctx_free(c);

	/* usage errors 2, runtime errors 1, the file untouched */
	assert_int_equal(run(out, sizeof out, "%s keys add --file %s --name bob "
			     "2>/dev/null", PNO_BIN, path), 1);
	assert_int_equal(run(out, sizeof out, "%s keys add --file %s --name "
			     "'a b' 2>/dev/null", PNO_BIN, path), 2);
	assert_int_equal(run(out, sizeof out, "%s keys add --file %s --name c "
			     "--roles root 2>/dev/null", PNO_BIN, path), 2);
	assert_int_equal(run(out, sizeof out, "%s keys add --file %s --name c "
			     "--expires soon 2>/dev/null", PNO_BIN, path), 2);
	assert_int_equal(run(out, sizeof out, "%s keys revoke --file %s --name "
			     "zed 2>/dev/null", PNO_BIN, path), 1);
	assert_int_equal(run(out, sizeof out, "%s keys frob 2>/dev/null",
			     PNO_BIN), 2);
	assert_int_equal(run(out, sizeof out, "%s keys list --file %s.missing "
			     "2>/dev/null", PNO_BIN, path), 1);
	struct auth_table *t = NULL;
	assert_status(auth_table_load(&t, path), PNO_STATUS_OK);
	assert_int_equal(auth_table_count(t), 2);
	auth_table_free(t);
}

/* ---- allocation failures ---- */

static enum pno_status sessions_start(struct session_table **st,
				      const struct auth_principal *p,
				      char tok[SESSION_TOKEN_LEN + 1])
{
	struct session_opts o;
	session_opts_default(&o);
	o.max_sessions = 16;
	o.clock = fake_clock;
	enum pno_status s = session_table_new(st, &o);
	if (s == PNO_STATUS_OK)
		s = session_create(*st, p, tok, NULL);
	if (s != PNO_STATUS_OK) {
		session_table_free(*st);
		*st = NULL;
	}
	return s;
}

static void test_alloc_failure_loop(void **state)
{
	(void)state;
	struct keys k;
	const char *path = keys_file(&k, "keys_alloc.json");
	struct auth_ctx *c = NULL;
	struct auth_principal p;
	tu_alloc_install();
	long live0 = tu_alloc_live(), n1, n2, n3;
	for (n1 = 1;; n1++) {
		tu_alloc_reset(n1);
		if (tu_alloc_step(auth_ctx_new(&c, path, fake_wall, NULL), live0))
			break;
		assert_null(c);
	}
	/* reload: a failure keeps the old table */
	long live1 = tu_alloc_live();
	for (n2 = 1;; n2++) {
		tu_alloc_reset(n2);
		if (tu_alloc_step(auth_ctx_reload(c), live1))
			break;
		assert_int_equal(check(c, k.bob, AUTH_ROLE_ADMIN, &p), AUTH_OK);
	}
	assert_int_equal(check(c, k.bob, AUTH_ROLE_ADMIN, &p), AUTH_OK);
	/* a check allocates nothing */
	tu_alloc_reset(0);
	for (int i = 0; i < 100; i++)
		check(c, i & 1 ? k.alice : k.wrong, AUTH_ROLE_INFER, &p);
	assert_int_equal(tu_alloc_count(), 0);

	struct session_table *st = NULL;
	char tok[SESSION_TOKEN_LEN + 1];
	live1 = tu_alloc_live();
	for (n3 = 1;; n3++) {
		tu_alloc_reset(n3);
		if (tu_alloc_step(sessions_start(&st, &p, tok), live1))
			break;
		assert_null(st);
	}
	/* creating and checking sessions allocates nothing */
	tu_alloc_reset(0);
	for (int i = 0; i < 10; i++)
		assert_status(session_create(st, &p, tok, NULL), PNO_STATUS_OK);
	assert_int_equal(session_check(st, c, tok, strlen(tok), 0, &p), AUTH_OK);
	assert_int_equal(tu_alloc_count(), 0);
	session_table_free(st);
	auth_ctx_free(c);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	print_message("allocation points: load %ld, reload %ld, sessions %ld\n",
		      n1 - 1, n2 - 1, n3 - 1);
	assert_true(n1 > 3 && n2 > 2 && n3 > 2);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_format),
		cmocka_unit_test(test_parse_bearer),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_timing),
		cmocka_unit_test(test_sessions),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_cli_keys),
		cmocka_unit_test(test_alloc_failure_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
