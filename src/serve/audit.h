/*
 * The server's audit log: tamper-evident, encrypted, forward-secure.
 *
 * Every audited action is one record: a JSON object (time, event, actor,
 * request id, model, digests, status, detail) framed with its sequence
 * number and the MAC of the previous record, and closed by its own MAC,
 * a keyed BLAKE2b under the chain key K_seq. After each record the chain
 * key ratchets one way (K_{i+1} = KDF(K_i)) and K_i is wiped, so a key
 * stolen from the writer's memory at record i cannot forge records < i.
 * Records are encrypted in segment files (seg-000001.log, ...), each a
 * libsodium secretstream (XChaCha20-Poly1305); a segment's header names
 * its first sequence number and the previous record's MAC, so removing,
 * reordering or splicing segments breaks the chain.
 *
 * audit_append writes each record with one write() and, by default,
 * waits for an fdatasync() covering it before it returns: when it returns
 * OK the record is durable, and any I/O failure is returned (the caller
 * must then refuse the request). Concurrent appends share syncs (group
 * commit): one fdatasync covers every record written while it waited. A crash mid-write leaves an incomplete final record (a "torn
 * tail"): verify reports it and accepts the prefix; audit_open truncates
 * it and records the recovery as the next record.
 *
 * Keys: one random 32-byte master key (a hex file, mode 0600) from which
 * the segment encryption key, a key id and K_0 are derived (crypto_kdf).
 * Both the writer and the verifier use the master key (docs/serve/audit.md
 * explains the threat model and the offline-master mode this does not yet
 * implement).
 *
 * Thread safety: audit_append may be called from any number of threads on
 * one log (a mutex serializes records); open/close are not concurrent with
 * anything else on the same log.
 */
#ifndef PNO_SERVE_AUDIT_H
#define PNO_SERVE_AUDIT_H

#include "pno/core.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* X(name, wire name). The order is the on-disk event code (0, 1, ...):
 * append only. LOG_OPEN, LOG_RECOVERED and LOG_CLOSE are written by the
 * log itself; ALERT by the monitor (docs/serve/operations.md). */
#define AUDIT_EVENT_LIST(X)                                                   \
	X(INFER, "infer")                                                     \
	X(LOAD, "load")                                                       \
	X(UNLOAD, "unload")                                                   \
	X(RELOAD, "reload")                                                   \
	X(KEY_USE, "key_use")                                                 \
	X(SESSION, "session")                                                 \
	X(AUTH_FAILURE, "auth_failure")                                       \
	X(RATE_LIMITED, "rate_limited")                                       \
	X(SECURITY_EVENT, "security_event")                                   \
	X(LOG_OPEN, "audit_open")                                             \
	X(LOG_RECOVERED, "audit_recovered")                                   \
	X(LOG_CLOSE, "audit_close")                                           \
	X(ROLLBACK, "rollback")                                               \
	X(DRIFT, "drift")                                                     \
	X(ALERT, "alert")

enum audit_event_type {
#define AUDIT__EV_ENUM(name, wire) AUDIT_EVENT_##name,
	AUDIT_EVENT_LIST(AUDIT__EV_ENUM)
#undef AUDIT__EV_ENUM
	AUDIT_EVENT_COUNT
};

/* "infer", ...; NULL for a value out of range. */
const char *audit_event_name(enum audit_event_type t);

/* Field limits (bytes, without the NUL): a longer field is INVALID. */
#define AUDIT_MAX_NAME 256	/* actor, request_id, model, version, client */
#define AUDIT_MAX_DETAIL 2048
#define AUDIT_DIGEST_HEX 64	/* BLAKE2b-256 as lower-case hex */

/* One record as the caller gives it. Strings are UTF-8 (checked), NULL or
 * "" for absent; never put a secret in any of them (the actor is a key's
 * name, not the key). */
struct audit_event {
	int64_t time_ns;	/* CLOCK_REALTIME ns since the epoch; 0: now */
	enum audit_event_type type;	/* a caller event (not LOG_*) */
	const char *actor;	/* API key name */
	const char *client;	/* remote address */
	const char *request_id;
	const char *model;
	const char *version;
	const char *input_digest;	/* AUDIT_DIGEST_HEX hex digits */
	const char *output_digest;
	int status;		/* HTTP status (0: none) */
	const char *detail;
};

/* BLAKE2b-256 of n bytes as 64 lower-case hex digits + NUL. */
void audit_digest_hex(char out[AUDIT_DIGEST_HEX + 1], const void *data,
		      size_t n);

/* I/O replacements for fault injection (tests). NULL members: the real
 * write(2) / fdatasync(2). Same contracts as the calls they replace. */
struct audit_io {
	ssize_t (*write)(void *ud, int fd, const void *buf, size_t n);
	int (*sync)(void *ud, int fd);
	void *ud;
};

struct audit_opts {
	int fsync;		/* 1: every record synced before its append
				 * returns (group commit; default); 0: only
				 * a segment's final record is synced */
	uint32_t segment_records;	/* rotate after this many (default 100000) */
	uint64_t segment_bytes;	/* or this many bytes (default 64 MiB) */
	const struct audit_io *io;	/* NULL: real I/O */
};
void audit_opts_default(struct audit_opts *o);

/* Write a new random master key to `path` (64 hex digits and a newline,
 * mode 0600, atomically). EXISTS if the path exists: never overwrites. */
enum pno_status audit_keygen(const char *path);

struct audit_log;

/* Open (creating `dir`, mode 0700, if missing) the log in `dir` with the
 * master key in `keyfile` (must not be readable by group or others).
 * Finds the end of the chain in the last segment, verifying its records;
 * truncates a torn tail; refuses (FORMAT) a last segment that fails
 * verification or belongs to another key, and a gap in the segment
 * numbers (earlier segments are not re-read: that is audit_verify's
 * job). Appends an "audit_open" record
 * (or "audit_recovered" naming what was cut) before returning. New
 * records go to a new segment. opts NULL: defaults. */
enum pno_status audit_open(struct audit_log **out, const char *dir,
			   const char *keyfile, const struct audit_opts *opts);

/* Append one record; its sequence number to *seq_out (may be NULL). OK
 * only once the record is written (and synced if opts.fsync). IO on a
 * failed write or sync: the record is not in the log (cut away, with
 * every other not yet synced record if a sync failed: their appends
 * return IO too) and the next append starts a new segment; if even that
 * cut fails, every later append fails (IO) until the log is reopened.
 * INVALID for a bad event (nothing written). */
enum pno_status audit_append(struct audit_log *log,
			     const struct audit_event *ev, uint64_t *seq_out);

/* Records appended so far by this log (the next sequence number). */
uint64_t audit_next_seq(struct audit_log *log);

/* Append the "audit_close" end marker (a clean shutdown), close and wipe
 * the keys. Frees the log even when writing the marker fails (then
 * returns the error). NULL is a no-op. */
enum pno_status audit_close(struct audit_log *log);

/* One verified record, for a verify callback. json is not NUL-terminated. */
struct audit_record {
	uint64_t seq;
	uint32_t segment;
	uint64_t offset;	/* of its length prefix in the segment */
	enum audit_event_type type;
	const char *json;
	size_t json_len;
	uint8_t mac[32];
};
typedef void (*audit_record_fn)(void *ud, const struct audit_record *r);

struct audit_result {
	uint64_t records;	/* verified records (seq 0 .. records-1) */
	uint32_t segments;
	uint8_t head_mac[32];	/* MAC of the last verified record */
	int closed;		/* the last record is the clean-close marker */
	int torn;		/* incomplete final record (a crash) */
	uint32_t torn_segment;
	uint64_t torn_offset;	/* where the incomplete record begins */
	uint64_t torn_bytes;	/* bytes from there to the end */
	int bad;		/* a complete record or header failed */
	uint32_t bad_segment;
	uint64_t bad_offset;
	uint64_t bad_seq;	/* sequence number expected there */
	char message[320];	/* what failed ("" if nothing) */
};

/* Verify every segment in `dir` with the master key. OK if everything up
 * to the end (or to a torn tail of the last segment) verifies; FORMAT if
 * anything fails (r->bad, r->message, also in pno_last_error: the first
 * bad record or header), including a wrong key ("wrong key or not an
 * audit log"); NOTFOUND for a missing dir or no segments; IO for a read
 * error. on_record (may be NULL) sees each record after it verified. */
enum pno_status audit_verify(const char *dir, const char *keyfile,
			     audit_record_fn on_record, void *ud,
			     struct audit_result *r);

/* Decrypt and print the verified records as JSON lines (each record's
 * object with "seq" and "mac" added). Same status as audit_verify: the
 * lines printed before a failure are the records that verified. */
enum pno_status audit_show(const char *dir, const char *keyfile, FILE *out,
			   struct audit_result *r);

#endif
