/* API keys: the keys file parser, the constant-time lookup and the
 * reloadable context (see auth.h). */
#include "auth.h"
#include "../internal.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* domain separation: a stored hash is never a plain BLAKE2b of anything */
static const unsigned char HASH_CONTEXT[16] = "pno-api-key-v1\0";

struct auth_entry {
	char name[AUTH_NAME_MAX + 1];
	unsigned char hash[AUTH_HASH_BYTES];
	unsigned roles;
	int revoked;
	int64_t expires;	/* Unix seconds, 0: never */
};

struct auth_table {
	int n;
	_Atomic long refs;	/* readers + the context's own reference */
	struct auth_entry e[];
};

struct auth_ctx {
	char *path;
	auth_wall_fn wall;
	void *wall_ud;
	pthread_mutex_t mu;	/* guards cur while a reader takes a ref */
	struct auth_table *cur;
};

int64_t serve_clock_monotonic(void *ud)
{
	(void)ud;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *auth_result_str(enum auth_result r)
{
	switch (r) {
	case AUTH_OK: return "ok";
	case AUTH_UNAUTHENTICATED: return "unauthenticated";
	case AUTH_FORBIDDEN: return "forbidden";
	}
	return "unknown";
}

static const struct {
	const char *name;
	unsigned bit;
} roles[] = {
	{"infer", AUTH_ROLE_INFER},
	{"admin", AUTH_ROLE_ADMIN},
};

unsigned auth_role_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
		if (!strcmp(name, roles[i].name))
			return roles[i].bit;
	return 0;
}

void auth_roles_str(char *out, size_t size, unsigned r)
{
	size_t o = 0;
	if (!size)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		if (r & roles[i].bit) {
			int k = snprintf(out + o, size - o, "%s%s", o ? "," : "",
					 roles[i].name);
			if (k < 0 || (size_t)k >= size - o)
				return;
			o += (size_t)k;
		}
}

/* days since 1970-01-01 of a proleptic Gregorian date (Hinnant's
 * days_from_civil) */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int auth_time_parse(const char *s, int64_t *out)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
	int v[20];
	if (!s || strlen(s) != sizeof pat - 1)
		return -1;
	for (int i = 0; pat[i]; i++) {
		if (pat[i] == 'd') {
			if (s[i] < '0' || s[i] > '9')
				return -1;
			v[i] = s[i] - '0';
		} else if (s[i] != pat[i]) {
			return -1;
		}
	}
	int y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
	int mo = v[5] * 10 + v[6], d = v[8] * 10 + v[9];
	int h = v[11] * 10 + v[12], mi = v[14] * 10 + v[15];
	int se = v[17] * 10 + v[18];
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || se > 59)
		return -1;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo == 2 && d == 29 && !leap)
		return -1;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	return 0;
}

void auth_time_format(char out[21], int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void auth_key_hash(unsigned char out[AUTH_HASH_BYTES], const char *token,
		   size_t len)
{
	crypto_generichash(out, AUTH_HASH_BYTES, (const unsigned char *)token,
			   len, HASH_CONTEXT, sizeof HASH_CONTEXT);
}

void auth_key_generate(char token[AUTH_KEY_LEN + 1],
		       unsigned char hash[AUTH_HASH_BYTES])
{
	unsigned char raw[32];
	memcpy(token, AUTH_KEY_PREFIX, 4);
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(token + 4, AUTH_KEY_LEN + 1 - 4, raw, sizeof raw,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	auth_key_hash(hash, token, AUTH_KEY_LEN);
}

void auth_redact(char out[AUTH_REDACT_LEN], const char *token)
{
	if (!token || !*token) {
		snprintf(out, AUTH_REDACT_LEN, "-");
		return;
	}
	size_t pre = 0;
	if (!strncmp(token, "pnos_", 5))
		pre = 5;
	else if (!strncmp(token, AUTH_KEY_PREFIX, 4))
		pre = 4;
	size_t n = strnlen(token + pre, 4);
	snprintf(out, AUTH_REDACT_LEN, "%.*s%.*s...", (int)pre, token, (int)n,
		 token + pre);
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

static int name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > AUTH_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("_.@-", *s)))
			return 0;
	return 1;
}

/* One entry of the array; i for messages. */
static enum pno_status parse_entry(struct auth_entry *e, const json_t *o,
				   int i, const char *src)
{
	if (!json_is_object(o))
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d: expected "
				   "an object, got %s", src, i, json_kind(o));
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		if (strcmp(k, "name") && strcmp(k, "hash") && strcmp(k, "roles") &&
		    strcmp(k, "revoked") && strcmp(k, "created") &&
		    strcmp(k, "expires"))
			return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d: "
					   "unknown field \"%.64s\" (known: name, "
					   "hash, roles, revoked, created, "
					   "expires)", src, i, k);
	}
	json_t *name = json_object_get(o, "name");
	if (!json_is_string(name) || !name_ok(json_string_value(name)))
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d: \"name\" "
				   "must be a string of 1..%d characters from "
				   "[A-Za-z0-9_.@-]", src, i, AUTH_NAME_MAX);
	snprintf(e->name, sizeof e->name, "%s", json_string_value(name));
	const char *nm = e->name;

	json_t *hash = json_object_get(o, "hash");
	const char *hx = json_is_string(hash) ? json_string_value(hash) : NULL;
	size_t bin_len = 0;
	if (!hx || strlen(hx) != 2 * AUTH_HASH_BYTES ||
	    sodium_hex2bin(e->hash, sizeof e->hash, hx, strlen(hx), NULL,
			   &bin_len, NULL) != 0 ||
	    bin_len != AUTH_HASH_BYTES)
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d (\"%s\"): "
				   "\"hash\" must be %d hex digits (BLAKE2b-256 "
				   "of the key), got %s%s%zu characters", src, i,
				   nm, 2 * AUTH_HASH_BYTES, hx ? "" : "no string",
				   hx ? "" : ", ", hx ? strlen(hx) : 0);

	json_t *rl = json_object_get(o, "roles");
	if (!json_is_array(rl) || json_array_size(rl) == 0)
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d (\"%s\"): "
				   "\"roles\" must be a non-empty array of "
				   "\"infer\", \"admin\"", src, i, nm);
	size_t j;
	json_t *r;
	e->roles = 0;
	json_array_foreach(rl, j, r) {
		unsigned bit = json_is_string(r) ? auth_role_parse(json_string_value(r))
						 : 0;
		if (!bit)
			return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d "
					   "(\"%s\"): unknown role %s%.32s%s "
					   "(known: infer, admin)", src, i, nm,
					   json_is_string(r) ? "\"" : "",
					   json_is_string(r) ? json_string_value(r)
							     : json_kind(r),
					   json_is_string(r) ? "\"" : "");
		if (e->roles & bit)
			return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d "
					   "(\"%s\"): role \"%s\" given twice",
					   src, i, nm, json_string_value(r));
		e->roles |= bit;
	}

	json_t *rv = json_object_get(o, "revoked");
	if (rv && !json_is_boolean(rv))
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d (\"%s\"): "
				   "\"revoked\" must be true or false, got %s",
				   src, i, nm, json_kind(rv));
	e->revoked = rv && json_is_true(rv);

	int64_t t;
	json_t *cr = json_object_get(o, "created");
	if (cr && (!json_is_string(cr) ||
		   auth_time_parse(json_string_value(cr), &t) != 0))
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d (\"%s\"): "
				   "\"created\" must be a UTC time "
				   "YYYY-MM-DDTHH:MM:SSZ", src, i, nm);
	json_t *ex = json_object_get(o, "expires");
	e->expires = 0;
	if (ex && (!json_is_string(ex) ||
		   auth_time_parse(json_string_value(ex), &e->expires) != 0))
		return pno__errorf(PNO_STATUS_INVALID, "%s: entry %d (\"%s\"): "
				   "\"expires\" must be a UTC time "
				   "YYYY-MM-DDTHH:MM:SSZ", src, i, nm);
	return PNO_STATUS_OK;
}

enum pno_status auth_table_parse(struct auth_table **out, const char *text,
				 size_t len, const char *source)
{
	const char *src = source ? source : "keys";
	if (!out || (!text && len))
		return pno__errorf(PNO_STATUS_INVALID, "%s: NULL argument", src);
	*out = NULL;
	if (sodium_init() < 0)
		return pno__errorf(PNO_STATUS_INTERNAL, "libsodium failed to "
				   "initialize");
	enum pno_status s = PNO_STATUS_OK;
	struct auth_table *t = NULL;
	json_error_t err;
	pno__json_init();
	json_t *a = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &err);
	if (pno__json_oom()) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory parsing "
				"JSON", src);
		goto cleanup;
	}
	if (!a) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: %s at line %d column %d",
				src, err.text, err.line, err.column);
		goto cleanup;
	}
	if (!json_is_array(a)) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: expected a JSON array of "
				"keys, got %s", src, json_kind(a));
		goto cleanup;
	}
	size_t n = json_array_size(a);
	if (n > AUTH_MAX_KEYS) {
		s = pno__errorf(PNO_STATUS_INVALID, "%s: %zu keys, at most %d",
				src, n, AUTH_MAX_KEYS);
		goto cleanup;
	}
	t = pno_calloc(1, sizeof *t + n * sizeof t->e[0]);
	if (!t) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory for %zu keys",
				src, n);
		goto cleanup;
	}
	atomic_init(&t->refs, 1);
	for (size_t i = 0; i < n; i++) {
		s = parse_entry(&t->e[i], json_array_get(a, i), (int)i, src);
		if (s != PNO_STATUS_OK)
			goto cleanup;
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(t->e[j].name, t->e[i].name)) {
				s = pno__errorf(PNO_STATUS_INVALID, "%s: entry %zu: "
						"duplicate name \"%s\" (also entry "
						"%zu)", src, i, t->e[i].name, j);
				goto cleanup;
			}
			if (!memcmp(t->e[j].hash, t->e[i].hash, AUTH_HASH_BYTES)) {
				s = pno__errorf(PNO_STATUS_INVALID, "%s: entry %zu "
						"(\"%s\"): same hash as entry %zu "
						"(\"%s\"): one key under two names",
						src, i, t->e[i].name, j, t->e[j].name);
				goto cleanup;
			}
		}
		t->n = (int)i + 1;
	}
cleanup:
	json_decref(a);
	if (s != PNO_STATUS_OK) {
		pno_free(t);
		t = NULL;
	}
	*out = t;
	return s;
}

enum pno_status auth_table_load(struct auth_table **out, const char *path)
{
	if (!out || !path)
		return pno__errorf(PNO_STATUS_INVALID, "keys file: NULL path");
	*out = NULL;
	enum pno_status s = PNO_STATUS_OK;
	char *buf = NULL;
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
						   : PNO_STATUS_IO,
				   "keys file %s: %s", path, strerror(errno));
	/* a keys file of AUTH_MAX_KEYS entries is well under 1 MiB */
	size_t cap = 1u << 20, n;
	long size = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
	if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "keys file %s: cannot seek: %s",
				path, strerror(errno));
		goto cleanup;
	}
	if ((size_t)size > cap) {
		s = pno__errorf(PNO_STATUS_INVALID, "keys file %s: %ld bytes, "
				"at most %zu", path, size, cap);
		goto cleanup;
	}
	buf = pno_malloc((size_t)size + 1);
	if (!buf) {
		s = pno__errorf(PNO_STATUS_NOMEM, "keys file %s: out of memory",
				path);
		goto cleanup;
	}
	n = fread(buf, 1, (size_t)size + 1, fp);
	if (ferror(fp)) {
		s = pno__errorf(PNO_STATUS_IO, "keys file %s: read error", path);
		goto cleanup;
	}
	if (n > (size_t)size) {
		s = pno__errorf(PNO_STATUS_IO, "keys file %s: changed while "
				"being read", path);
		goto cleanup;
	}
	s = auth_table_parse(out, buf, n, path);
cleanup:
	fclose(fp);
	pno_free(buf);
	return s;
}

void auth_table_free(struct auth_table *t)
{
	if (t)
		sodium_memzero(t->e, (size_t)t->n * sizeof t->e[0]);
	pno_free(t);
}

int auth_table_count(const struct auth_table *t) { return t ? t->n : 0; }

int auth_table_match(const struct auth_table *t,
		     const unsigned char digest[AUTH_HASH_BYTES])
{
	/* every entry compared, the match selected by masks, no branch on
	 * secret data */
	unsigned match = ~0u;
	for (int i = 0; t && i < t->n; i++) {
		unsigned eq = (unsigned)(1 + sodium_memcmp(digest, t->e[i].hash,
							   AUTH_HASH_BYTES));
		unsigned mask = 0u - (eq & 1u);
		match = (match & ~mask) | ((unsigned)i & mask);
	}
	return match == ~0u ? -1 : (int)match;
}

static void table_unref(struct auth_table *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		auth_table_free(t);
}

static struct auth_table *table_ref(struct auth_ctx *c)
{
	pthread_mutex_lock(&c->mu);
	struct auth_table *t = c->cur;
	if (t)
		atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&c->mu);
	return t;
}

enum pno_status auth_ctx_new(struct auth_ctx **out, const char *path,
			     auth_wall_fn wall, void *wall_ud)
{
	if (!out || !path)
		return pno__errorf(PNO_STATUS_INVALID, "auth: NULL argument");
	*out = NULL;
	struct auth_table *t = NULL;
	enum pno_status s = auth_table_load(&t, path);
	if (s != PNO_STATUS_OK)
		return s;
	struct auth_ctx *c = pno_calloc(1, sizeof *c);
	char *p = pno_strdup(path);
	if (!c || !p) {
		pno_free(c);
		pno_free(p);
		auth_table_free(t);
		return pno__errorf(PNO_STATUS_NOMEM, "auth: out of memory");
	}
	c->path = p;
	c->wall = wall;
	c->wall_ud = wall_ud;
	c->cur = t;
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return PNO_STATUS_OK;
}

void auth_ctx_swap(struct auth_ctx *c, struct auth_table *t)
{
	if (!c) {
		table_unref(t);
		return;
	}
	pthread_mutex_lock(&c->mu);
	struct auth_table *old = c->cur;
	c->cur = t;
	pthread_mutex_unlock(&c->mu);
	table_unref(old);
}

enum pno_status auth_ctx_reload(struct auth_ctx *c)
{
	if (!c)
		return pno__errorf(PNO_STATUS_INVALID, "auth: NULL context");
	struct auth_table *t = NULL;
	enum pno_status s = auth_table_load(&t, c->path);
	if (s != PNO_STATUS_OK)
		return pno__error_prefix(s, "keys reload failed, old keys kept");
	auth_ctx_swap(c, t);
	return PNO_STATUS_OK;
}

void auth_ctx_free(struct auth_ctx *c)
{
	if (!c)
		return;
	table_unref(c->cur);
	pthread_mutex_destroy(&c->mu);
	pno_free(c->path);
	pno_free(c);
}

static int64_t wall_now(const struct auth_ctx *c)
{
	return c->wall ? c->wall(c->wall_ud) : (int64_t)time(NULL);
}

static int is_b64token_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
	       ch == '~' || ch == '+' || ch == '/';
}

int auth_parse_bearer(const char *h, const char **token, size_t *len)
{
	if (!h || strncasecmp(h, "Bearer", 6) || h[6] != ' ')
		return -1;
	const char *p = h + 6;
	while (*p == ' ')
		p++;
	size_t n = 0;
	while (is_b64token_char(p[n]))
		n++;
	while (p[n] == '=')
		n++;
	if (n == 0 || p[n] != '\0' || n > AUTH_TOKEN_MAX)
		return -1;
	*token = p;
	*len = n;
	return 0;
}

static enum auth_result fail(struct auth_principal *p, enum auth_result r,
			     const char *why)
{
	p->reason = why;
	return r;
}

enum auth_result auth_check_token(struct auth_ctx *c, const char *token,
				  size_t len, unsigned role,
				  struct auth_principal *p)
{
	struct auth_principal dummy;
	if (!p)
		p = &dummy;
	memset(p, 0, sizeof *p);
	if (!c || !token || len == 0 || len > AUTH_TOKEN_MAX)
		return fail(p, AUTH_UNAUTHENTICATED, "malformed credentials");
	unsigned char d[AUTH_HASH_BYTES];
	auth_key_hash(d, token, len);
	struct auth_table *t = table_ref(c);
	enum auth_result r;
	int i = auth_table_match(t, d);
	if (i < 0) {
		r = fail(p, AUTH_UNAUTHENTICATED, "unknown key");
		goto out;
	}
	const struct auth_entry *e = &t->e[i];
	if (e->revoked) {
		r = fail(p, AUTH_UNAUTHENTICATED, "revoked key");
		goto out;
	}
	if (e->expires && wall_now(c) >= e->expires) {
		r = fail(p, AUTH_UNAUTHENTICATED, "expired key");
		goto out;
	}
	memcpy(p->name, e->name, sizeof p->name);
	memcpy(p->key_hash, e->hash, AUTH_HASH_BYTES);
	p->roles = e->roles;
	if ((e->roles & role) != role) {
		r = fail(p, AUTH_FORBIDDEN, (role & AUTH_ROLE_ADMIN) &&
					 !(e->roles & AUTH_ROLE_ADMIN)
					    ? "role admin required"
					    : "role infer required");
		goto out;
	}
	r = fail(p, AUTH_OK, "ok");
out:
	table_unref(t);
	sodium_memzero(d, sizeof d);
	return r;
}

enum auth_result auth_check(struct auth_ctx *c, const char *header,
			    unsigned role, struct auth_principal *p)
{
	struct auth_principal dummy;
	if (!p)
		p = &dummy;
	const char *tok;
	size_t n;
	if (!header) {
		memset(p, 0, sizeof *p);
		return fail(p, AUTH_UNAUTHENTICATED, "missing credentials");
	}
	if (auth_parse_bearer(header, &tok, &n) != 0) {
		memset(p, 0, sizeof *p);
		return fail(p, AUTH_UNAUTHENTICATED, "malformed Authorization "
			    "header");
	}
	return auth_check_token(c, tok, n, role, p);
}

int auth_key_valid(struct auth_ctx *c, const char *name,
		   const unsigned char key_hash[AUTH_HASH_BYTES],
		   unsigned *roles_out)
{
	if (!c || !name || !key_hash)
		return 0;
	struct auth_table *t = table_ref(c);
	int ok = 0;
	for (int i = 0; t && i < t->n && !ok; i++) {
		const struct auth_entry *e = &t->e[i];
		/* names are not secret; the hash is compared in constant time */
		if (strcmp(e->name, name) ||
		    sodium_memcmp(e->hash, key_hash, AUTH_HASH_BYTES) != 0)
			continue;
		if (e->revoked || (e->expires && wall_now(c) >= e->expires))
			break;
		ok = 1;
		if (roles_out)
			*roles_out = e->roles;
	}
	table_unref(t);
	return ok;
}
