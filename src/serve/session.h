/*
 * Sessions for pno serve: POST /v2/sessions trades a valid API key for a
 * short-lived token "pnos_" + base64url of 32 random bytes (libsodium).
 * Only the token's BLAKE2b-256 is stored.
 *
 * A session ends at the first of: its absolute timeout (from creation),
 * its idle timeout (from its last successful use), its revocation (the one
 * token, or every token of a key), or its key leaving the keys table
 * (revoked, expired, removed or replaced by another secret under the same
 * name: checked at every use against the current table). An ended session
 * authenticates as AUTH_UNAUTHENTICATED. A session's roles are its key's
 * current roles.
 *
 * The table is bounded and allocated whole at creation, so creating and
 * checking sessions allocates nothing. When it is full, expired sessions
 * are evicted first; if none has expired, a new session is refused
 * (PNO_STATUS_RANGE) rather than pushing out a live one.
 *
 * Time comes from an injected monotonic clock. Thread-safe (one mutex;
 * every operation is a hash lookup). Tokens are never logged: use
 * auth_redact().
 */
#ifndef PNO_SERVE_SESSION_H
#define PNO_SERVE_SESSION_H

#include "auth.h"

#define SESSION_TOKEN_PREFIX "pnos_"
#define SESSION_TOKEN_LEN (5 + 43)

struct session_opts {
	int max_sessions;		/* table size; default 10000 */
	int64_t absolute_timeout_s;	/* default 3600 */
	int64_t idle_timeout_s;		/* default 900 */
	serve_clock_fn clock;		/* NULL: serve_clock_monotonic */
	void *clock_ud;
};
void session_opts_default(struct session_opts *o);

struct session_table;

/* INVALID for out-of-range options (max_sessions 1..1e7, timeouts >= 1,
 * idle <= absolute). */
enum pno_status session_table_new(struct session_table **out,
				  const struct session_opts *o);
void session_table_free(struct session_table *t);

/* A new session for a principal authenticated by an API key (p->session
 * must be 0: a session cannot mint sessions: INVALID). The token is
 * written to `token` (shown to the client once); *expires_in_s, if not
 * NULL, gets the absolute lifetime. RANGE if the table is full of live
 * sessions. */
enum pno_status session_create(struct session_table *t,
			       const struct auth_principal *p,
			       char token[SESSION_TOKEN_LEN + 1],
			       int64_t *expires_in_s);

/* Check a session token for required_role. The session's key is looked
 * up in a's current table (a NULL: not checked). Fills *p with
 * session = 1. A successful use resets the idle timer. */
enum auth_result session_check(struct session_table *t, struct auth_ctx *a,
			       const char *token, size_t len,
			       unsigned required_role,
			       struct auth_principal *p);

/* End one session: 1 if it existed, 0 if not. */
int session_revoke(struct session_table *t, const char *token, size_t len);
/* End every session of key `name`; returns how many. */
int session_revoke_key(struct session_table *t, const char *name);
/* Remove every ended session: timed out, or (a not NULL) whose key is no
 * longer valid in a's current table. Returns how many. Call after a keys
 * reload so a revoked key's sessions free their slots at once. */
int session_prune(struct session_table *t, struct auth_ctx *a);
/* Sessions in the table (live or ended but not yet evicted). */
int session_count(struct session_table *t);

/* The server's one call per request: an Authorization header holding
 * either an API key or a session token ("pnos_..."). sessions may be
 * NULL (sessions off: such tokens are unknown). */
enum auth_result serve_authenticate(struct auth_ctx *a,
				    struct session_table *sessions,
				    const char *header, unsigned required_role,
				    struct auth_principal *p);

#endif
