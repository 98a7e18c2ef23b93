/* Session tokens: a fixed table of slots chained from hash buckets of the
 * token digest (see session.h). A bucket is chosen by the digest of a
 * secret, which tells an observer of timing nothing about the secret; the
 * digest itself is compared with sodium_memcmp. */
#include "session.h"
#include "../internal.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#define NS 1000000000LL

struct slot {
	int used;
	int next;			/* chain, -1 at the end; free list */
	unsigned char digest[AUTH_HASH_BYTES];
	char name[AUTH_NAME_MAX + 1];
	unsigned char key_hash[AUTH_HASH_BYTES];
	unsigned roles;
	int64_t created, last_used;	/* clock ns */
};

struct session_table {
	struct session_opts o;
	pthread_mutex_t mu;
	int n_used, free_head;
	unsigned nb;			/* buckets, a power of two */
	int *bucket;
	struct slot *s;
};

void session_opts_default(struct session_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_sessions = 10000;
	o->absolute_timeout_s = 3600;
	o->idle_timeout_s = 900;
}

enum pno_status session_table_new(struct session_table **out,
				  const struct session_opts *o)
{
	if (!out || !o)
		return pno__errorf(PNO_STATUS_INVALID, "sessions: NULL argument");
	*out = NULL;
	if (o->max_sessions < 1 || o->max_sessions > 10000000)
		return pno__errorf(PNO_STATUS_INVALID, "sessions: max_sessions "
				   "%d out of range 1..10000000", o->max_sessions);
	if (o->absolute_timeout_s < 1 || o->idle_timeout_s < 1 ||
	    o->absolute_timeout_s > 100LL * 365 * 86400 ||
	    o->idle_timeout_s > o->absolute_timeout_s)
		return pno__errorf(PNO_STATUS_INVALID, "sessions: timeouts "
				   "absolute %lld s, idle %lld s: need 1 <= idle "
				   "<= absolute <= 100 years",
				   (long long)o->absolute_timeout_s,
				   (long long)o->idle_timeout_s);
	if (sodium_init() < 0)
		return pno__errorf(PNO_STATUS_INTERNAL, "libsodium failed to "
				   "initialize");
	struct session_table *t = pno_calloc(1, sizeof *t);
	if (!t)
		goto nomem;
	t->o = *o;
	if (!t->o.clock)
		t->o.clock = serve_clock_monotonic;
	t->nb = 1;
	while (t->nb < 2u * (unsigned)o->max_sessions)
		t->nb <<= 1;
	t->bucket = pno_malloc(t->nb * sizeof *t->bucket);
	t->s = pno_calloc((size_t)o->max_sessions, sizeof *t->s);
	if (!t->bucket || !t->s)
		goto nomem;
	for (unsigned b = 0; b < t->nb; b++)
		t->bucket[b] = -1;
	for (int i = 0; i < o->max_sessions; i++)
		t->s[i].next = i + 1 < o->max_sessions ? i + 1 : -1;
	t->free_head = 0;
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return PNO_STATUS_OK;
nomem:
	if (t) {
		pno_free(t->bucket);
		pno_free(t->s);
	}
	pno_free(t);
	return pno__errorf(PNO_STATUS_NOMEM, "sessions: out of memory for %d "
			   "sessions", o->max_sessions);
}

void session_table_free(struct session_table *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->mu);
	if (t->s)
		sodium_memzero(t->s, (size_t)t->o.max_sessions * sizeof *t->s);
	pno_free(t->s);
	pno_free(t->bucket);
	pno_free(t);
}

static unsigned bucket_of(const struct session_table *t,
			  const unsigned char d[AUTH_HASH_BYTES])
{
	uint64_t h;
	memcpy(&h, d, sizeof h);
	return (unsigned)(h & (t->nb - 1));
}

static void token_digest(unsigned char d[AUTH_HASH_BYTES], const char *tok,
			 size_t len)
{
	crypto_generichash(d, AUTH_HASH_BYTES, (const unsigned char *)tok, len,
			   NULL, 0);
}

static int slot_ended(const struct session_table *t, const struct slot *s,
		      int64_t now)
{
	return now - s->created >= t->o.absolute_timeout_s * NS ||
	       now - s->last_used >= t->o.idle_timeout_s * NS;
}

/* Unlink slot i from its bucket and put it on the free list. */
static void slot_remove(struct session_table *t, int i)
{
	struct slot *s = &t->s[i];
	int *pp = &t->bucket[bucket_of(t, s->digest)];
	while (*pp != i)
		pp = &t->s[*pp].next;
	*pp = s->next;
	sodium_memzero(s, sizeof *s);
	s->next = t->free_head;
	t->free_head = i;
	t->n_used--;
}

/* The slot holding digest d, or -1. */
static int slot_find(struct session_table *t,
		     const unsigned char d[AUTH_HASH_BYTES])
{
	for (int i = t->bucket[bucket_of(t, d)]; i >= 0; i = t->s[i].next)
		if (sodium_memcmp(t->s[i].digest, d, AUTH_HASH_BYTES) == 0)
			return i;
	return -1;
}

enum pno_status session_create(struct session_table *t,
			       const struct auth_principal *p,
			       char token[SESSION_TOKEN_LEN + 1],
			       int64_t *expires_in_s)
{
	if (!t || !p || !token)
		return pno__errorf(PNO_STATUS_INVALID, "sessions: NULL argument");
	if (p->session)
		return pno__errorf(PNO_STATUS_INVALID, "sessions: a session "
				   "token cannot create sessions (use an API "
				   "key)");
	if (!p->name[0])
		return pno__errorf(PNO_STATUS_INVALID, "sessions: principal "
				   "without a key name");
	enum pno_status st = PNO_STATUS_OK;
	unsigned char raw[32], d[AUTH_HASH_BYTES];
	pthread_mutex_lock(&t->mu);
	int64_t now = t->o.clock(t->o.clock_ud);
	if (t->free_head < 0) {
		for (int i = 0; i < t->o.max_sessions; i++)
			if (t->s[i].used && slot_ended(t, &t->s[i], now))
				slot_remove(t, i);
	}
	if (t->free_head < 0) {
		st = pno__errorf(PNO_STATUS_RANGE, "sessions: table full (%d "
				 "live sessions, none expired); retry later or "
				 "raise max_sessions", t->o.max_sessions);
		goto out;
	}
	/* a collision of 256-bit random tokens does not happen; the loop
	 * only keeps the table's invariant obviously true */
	do {
		randombytes_buf(raw, sizeof raw);
		memcpy(token, SESSION_TOKEN_PREFIX, 5);
		sodium_bin2base64(token + 5, SESSION_TOKEN_LEN + 1 - 5, raw,
				  sizeof raw,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		token_digest(d, token, SESSION_TOKEN_LEN);
	} while (slot_find(t, d) >= 0);
	int i = t->free_head;
	struct slot *s = &t->s[i];
	t->free_head = s->next;
	memcpy(s->digest, d, sizeof d);
	memcpy(s->name, p->name, sizeof s->name);
	memcpy(s->key_hash, p->key_hash, sizeof s->key_hash);
	s->roles = p->roles;
	s->created = s->last_used = now;
	s->used = 1;
	unsigned b = bucket_of(t, d);
	s->next = t->bucket[b];
	t->bucket[b] = i;
	t->n_used++;
	if (expires_in_s)
		*expires_in_s = t->o.absolute_timeout_s;
out:
	pthread_mutex_unlock(&t->mu);
	sodium_memzero(raw, sizeof raw);
	return st;
}

static enum auth_result fail(struct auth_principal *p, const char *why)
{
	p->reason = why;
	return AUTH_UNAUTHENTICATED;
}

enum auth_result session_check(struct session_table *t, struct auth_ctx *a,
			       const char *token, size_t len, unsigned role,
			       struct auth_principal *p)
{
	struct auth_principal dummy;
	if (!p)
		p = &dummy;
	memset(p, 0, sizeof *p);
	p->session = 1;
	if (!t || !token || len != SESSION_TOKEN_LEN ||
	    strncmp(token, SESSION_TOKEN_PREFIX, 5))
		return fail(p, "unknown session");
	unsigned char d[AUTH_HASH_BYTES];
	token_digest(d, token, len);
	enum auth_result r = AUTH_OK;
	pthread_mutex_lock(&t->mu);
	int64_t now = t->o.clock(t->o.clock_ud);
	int i = slot_find(t, d);
	if (i < 0) {
		r = fail(p, "unknown session");
		goto out;
	}
	struct slot *s = &t->s[i];
	if (now - s->created >= t->o.absolute_timeout_s * NS) {
		slot_remove(t, i);
		r = fail(p, "session expired (absolute timeout)");
		goto out;
	}
	if (now - s->last_used >= t->o.idle_timeout_s * NS) {
		slot_remove(t, i);
		r = fail(p, "session expired (idle timeout)");
		goto out;
	}
	unsigned roles = s->roles;
	if (a && !auth_key_valid(a, s->name, s->key_hash, &roles)) {
		slot_remove(t, i);
		r = fail(p, "session's key revoked, expired or removed");
		goto out;
	}
	s->roles = roles;
	memcpy(p->name, s->name, sizeof p->name);
	memcpy(p->key_hash, s->key_hash, sizeof p->key_hash);
	p->roles = roles;
	if ((roles & role) != role) {
		p->reason = (role & AUTH_ROLE_ADMIN) && !(roles & AUTH_ROLE_ADMIN)
				    ? "role admin required"
				    : "role infer required";
		r = AUTH_FORBIDDEN;
		goto out;
	}
	s->last_used = now;
	p->reason = "ok";
out:
	pthread_mutex_unlock(&t->mu);
	sodium_memzero(d, sizeof d);
	return r;
}

int session_revoke(struct session_table *t, const char *token, size_t len)
{
	if (!t || !token || len != SESSION_TOKEN_LEN)
		return 0;
	unsigned char d[AUTH_HASH_BYTES];
	token_digest(d, token, len);
	pthread_mutex_lock(&t->mu);
	int i = slot_find(t, d);
	if (i >= 0)
		slot_remove(t, i);
	pthread_mutex_unlock(&t->mu);
	return i >= 0;
}

int session_revoke_key(struct session_table *t, const char *name)
{
	int n = 0;
	if (!t || !name)
		return 0;
	pthread_mutex_lock(&t->mu);
	for (int i = 0; i < t->o.max_sessions; i++)
		if (t->s[i].used && !strcmp(t->s[i].name, name)) {
			slot_remove(t, i);
			n++;
		}
	pthread_mutex_unlock(&t->mu);
	return n;
}

int session_prune(struct session_table *t, struct auth_ctx *a)
{
	int n = 0;
	if (!t)
		return 0;
	pthread_mutex_lock(&t->mu);
	int64_t now = t->o.clock(t->o.clock_ud);
	for (int i = 0; i < t->o.max_sessions; i++) {
		struct slot *s = &t->s[i];
		if (s->used && (slot_ended(t, s, now) ||
				(a && !auth_key_valid(a, s->name, s->key_hash,
						      NULL)))) {
			slot_remove(t, i);
			n++;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return n;
}

int session_count(struct session_table *t)
{
	if (!t)
		return 0;
	pthread_mutex_lock(&t->mu);
	int n = t->n_used;
	pthread_mutex_unlock(&t->mu);
	return n;
}

enum auth_result serve_authenticate(struct auth_ctx *a,
				    struct session_table *sessions,
				    const char *header, unsigned role,
				    struct auth_principal *p)
{
	struct auth_principal dummy;
	const char *tok;
	size_t n;
	if (!p)
		p = &dummy;
	if (header && auth_parse_bearer(header, &tok, &n) == 0 &&
	    n >= 5 && !strncmp(tok, SESSION_TOKEN_PREFIX, 5))
		return session_check(sessions, a, tok, n, role, p);
	return auth_check(a, header, role, p);
}
