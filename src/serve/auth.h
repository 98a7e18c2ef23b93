/*
 * API-key authentication for pno serve: a keys file, roles and a
 * constant-time check of "Authorization: Bearer <key>".
 *
 * The keys file is a JSON array of
 *   {"name": "alice", "hash": "<64 hex>", "roles": ["infer", "admin"],
 *    "revoked": false, "created": "2026-11-28T10:57:06Z",
 *    "expires": "2027-11-28T00:00:00Z"}
 * (revoked, created and expires optional; no other field is allowed, so a
 * typo such as "role" is an error rather than a key without roles). Only
 * the hash of a key is stored: BLAKE2b-256 of the key's text, keyed with a
 * fixed domain-separation string. Keys are 32 random bytes (libsodium), so
 * a fast hash is enough: a password hash (Argon2) slows down guessing of
 * low-entropy secrets, and 2^256 guesses cannot be slowed into reach or out
 * of it; a salt defends against precomputed tables that cannot exist for
 * 256-bit inputs. See docs/serve/security.md.
 *
 * A check hashes the presented key once and compares the digest with
 * every stored hash using sodium_memcmp, choosing the match without a
 * branch: the time depends on the number of keys, never on which key
 * matched or how many leading bytes agreed.
 *
 * Roles are independent bits: admin does not imply infer.
 *
 * Reload: a new table is parsed and validated off to the side and swapped
 * in atomically; a check holds a reference to the table it started with,
 * so a reload never frees a table under a reader. A failed reload keeps
 * the old table.
 *
 * The failure reason (missing, malformed, unknown, revoked, expired,
 * role) is for the server's log and audit record; a client gets only
 * 401 or 403.
 */
#ifndef PNO_SERVE_AUTH_H
#define PNO_SERVE_AUTH_H

#include "pno/core.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_NAME_MAX 64	/* key names: [A-Za-z0-9_.@-]{1,64} */
#define AUTH_HASH_BYTES 32
#define AUTH_MAX_KEYS 1024	/* entries in one keys file */
#define AUTH_TOKEN_MAX 256	/* longer bearer tokens are malformed */
#define AUTH_KEY_PREFIX "pno_"
/* "pno_" + unpadded base64url of 32 bytes */
#define AUTH_KEY_LEN (4 + 43)
#define AUTH_REDACT_LEN 16	/* buffer for auth_redact */

/* Monotonic clock of the security modules, in nanoseconds; injected so
 * tests run on a fake clock. NULL in an opts struct: CLOCK_MONOTONIC. */
typedef int64_t (*serve_clock_fn)(void *ud);
int64_t serve_clock_monotonic(void *ud);
/* Wall clock in Unix seconds (key expiry dates); NULL: time(). */
typedef int64_t (*auth_wall_fn)(void *ud);

enum auth_role {
	AUTH_ROLE_INFER = 1u << 0,
	AUTH_ROLE_ADMIN = 1u << 1,
};

enum auth_result {
	AUTH_OK,
	AUTH_UNAUTHENTICATED,	/* 401: missing, malformed, wrong, revoked, expired */
	AUTH_FORBIDDEN,		/* 403: authenticated but lacks the role */
};
const char *auth_result_str(enum auth_result r);

/* Who made a request. Filled on AUTH_OK and AUTH_FORBIDDEN (name known);
 * reason is always set (a static string, "ok" on success). */
struct auth_principal {
	char name[AUTH_NAME_MAX + 1];
	unsigned roles;			/* enum auth_role bits */
	int session;			/* 1: came through a session token */
	const char *reason;
	/* the stored hash of the key (identifies the key version for
	 * sessions; not secret, but never logged) */
	unsigned char key_hash[AUTH_HASH_BYTES];
};

/* ---- keys table ---- */
struct auth_table;

/* Parse and validate a keys file's text (len bytes, need not be
 * NUL-terminated). Errors are INVALID with the source and, for malformed
 * JSON, the line and column; for an entry, its index and name. NOMEM if
 * memory runs out. */
enum pno_status auth_table_parse(struct auth_table **out, const char *text,
				 size_t len, const char *source);
/* Read and parse a file: NOTFOUND if missing, IO if unreadable. */
enum pno_status auth_table_load(struct auth_table **out, const char *path);
void auth_table_free(struct auth_table *t);
int auth_table_count(const struct auth_table *t);
/* Index of the entry whose hash equals digest, or -1, comparing with all
 * entries in constant time (exposed for the timing test). */
int auth_table_match(const struct auth_table *t,
		     const unsigned char digest[AUTH_HASH_BYTES]);

/* ---- the server's context ---- */
struct auth_ctx;

/* Load `path` (the keys file, re-read by auth_ctx_reload). wall may be
 * NULL. */
enum pno_status auth_ctx_new(struct auth_ctx **out, const char *path,
			     auth_wall_fn wall, void *wall_ud);
/* Re-read the keys file; on any error the old table stays in force. */
enum pno_status auth_ctx_reload(struct auth_ctx *c);
/* Install a table (takes ownership; the old one is freed when its last
 * reader is done). */
void auth_ctx_swap(struct auth_ctx *c, struct auth_table *t);
void auth_ctx_free(struct auth_ctx *c);

/* Check an Authorization header value (NULL: header missing) for a key
 * holding every bit of required_role (0: any authenticated key). */
enum auth_result auth_check(struct auth_ctx *c, const char *header,
			    unsigned required_role, struct auth_principal *p);
/* The token of "Bearer <token>" (scheme case-insensitive, one or more
 * spaces, token of RFC 6750 b64token characters, nothing after, at most
 * AUTH_TOKEN_MAX). 0 on success, -1 if malformed. */
int auth_parse_bearer(const char *header, const char **token, size_t *len);
/* auth_check on an already extracted token. */
enum auth_result auth_check_token(struct auth_ctx *c, const char *token,
				  size_t len, unsigned required_role,
				  struct auth_principal *p);
/* Is the key (name, hash) still in the current table, not revoked, not
 * expired? Its current roles through *roles. For sessions. */
int auth_key_valid(struct auth_ctx *c, const char *name,
		   const unsigned char key_hash[AUTH_HASH_BYTES],
		   unsigned *roles);

/* ---- keys ---- */
/* The stored hash of a key's text. */
void auth_key_hash(unsigned char out[AUTH_HASH_BYTES], const char *token,
		   size_t len);
/* A new random key (libsodium randombytes) and its hash. */
void auth_key_generate(char token[AUTH_KEY_LEN + 1],
		       unsigned char hash[AUTH_HASH_BYTES]);
/* A token safe to log: its known prefix ("pno_", "pnos_"), the next 4
 * characters and "..." (at most 24 bits of the secret); "-" for NULL/"". */
void auth_redact(char out[AUTH_REDACT_LEN], const char *token);
/* "infer" -> AUTH_ROLE_INFER ...; 0 if unknown. */
unsigned auth_role_parse(const char *name);
/* Roles as "infer,admin" ("" for none). */
void auth_roles_str(char *out, size_t size, unsigned roles);
/* "YYYY-MM-DDTHH:MM:SSZ" <-> Unix seconds; parse returns -1 if malformed. */
int auth_time_parse(const char *s, int64_t *out);
void auth_time_format(char out[21], int64_t t);

#endif
