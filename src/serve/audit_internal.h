/* Internals of the audit log shared by audit*.c, its tests and its
 * fuzzer: key handling, the record MAC and ratchet, the segment scanner.
 * The byte layout is in docs/serve/audit.md. */
#ifndef PNO_SERVE_AUDIT_INTERNAL_H
#define PNO_SERVE_AUDIT_INTERNAL_H

#include "audit.h"

#include <sodium.h>

#define AUDIT__KEYBYTES 32
#define AUDIT__MACBYTES 32
#define AUDIT__MAGIC "PNOAUDT1"
#define AUDIT__HDR_PLAIN 72	/* segment header authenticated as AD */
#define AUDIT__SEG_HEADER                                                     \
	(AUDIT__HDR_PLAIN + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define AUDIT__REC_FIXED 48	/* record bytes before the JSON */
#define AUDIT__MAX_JSON 32768
#define AUDIT__REC_MAX (AUDIT__REC_FIXED + AUDIT__MAX_JSON + AUDIT__MACBYTES)
#define AUDIT__ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define AUDIT__PREFIX 8		/* u32 length, u32 its complement */
#define AUDIT__MSG_MIN (AUDIT__REC_FIXED + AUDIT__MACBYTES + AUDIT__ABYTES)
#define AUDIT__MSG_MAX (AUDIT__REC_MAX + AUDIT__ABYTES)

struct audit__keys {
	uint8_t enc[AUDIT__KEYBYTES];	/* secretstream key */
	uint8_t id[16];			/* key id stored in segment headers */
	uint8_t chain[AUDIT__KEYBYTES];	/* K_0 */
};

/* 64 hex digits (then optional whitespace) from a file not readable by
 * group or others. */
enum pno_status audit__key_load(const char *path,
				uint8_t master[AUDIT__KEYBYTES]);
void audit__keys_derive(struct audit__keys *k,
			const uint8_t master[AUDIT__KEYBYTES]);
/* K <- K_{i+1} from K_i, in place; the old value is wiped. */
void audit__ratchet(uint8_t k[AUDIT__KEYBYTES]);
/* mac = BLAKE2b-256 keyed by k over rec[0..n) (n = AUDIT__REC_FIXED +
 * json length: the record without its MAC). */
void audit__mac(uint8_t mac[AUDIT__MACBYTES], const uint8_t k[AUDIT__KEYBYTES],
		const uint8_t *rec, size_t n);

static inline void audit__put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void audit__put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t audit__get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}
static inline uint64_t audit__get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* INVALID (with the field's name) unless ev can be written. */
enum pno_status audit__event_check(const struct audit_event *ev);
/* The JSON object of a checked ev at time t_ns into out (cap bytes, at
 * least AUDIT__MAX_JSON); its length. */
size_t audit__event_json(char *out, size_t cap, const struct audit_event *ev,
			 int64_t t_ns);

/* A segment's bytes: a file (fd) or memory. */
struct audit__src {
	int fd;			/* -1: read from mem */
	const uint8_t *mem;
	uint64_t size;
};

/* The verifier's running chain state. */
struct audit__chain {
	uint64_t seq;			/* next expected sequence number */
	uint8_t prev[AUDIT__MACBYTES];	/* MAC of record seq-1 (0s at 0) */
	uint8_t k[AUDIT__KEYBYTES];	/* K_seq */
	int last_type;			/* type of record seq-1, -1 none */
};

/* What a segment scan found besides the result fields. */
struct audit__scan_out {
	uint64_t end;		/* bytes that verified (header + records) */
	uint64_t records;	/* records in this segment */
	int final;		/* the last record carried TAG_FINAL */
};

/* Verify segment `segno` from src against the chain state ch (advanced
 * past each record). adopt: take the chain position from the segment's
 * header instead of checking it against ch (the writer reopening the last
 * segment; K is ratcheted from keys->chain, first_seq at most
 * max_first_seq); last: a torn tail is allowed (reported in r). OK, FORMAT
 * (r->bad set), NOMEM or IO. */
enum pno_status audit__scan(const struct audit__src *src, uint32_t segno,
			    int last, int adopt, uint64_t max_first_seq,
			    const struct audit__keys *keys,
			    struct audit__chain *ch, audit_record_fn fn,
			    void *ud, struct audit_result *r,
			    struct audit__scan_out *out);

/* Segments of `dir`: the highest number (0: none), whether 1..max all
 * exist (else *missing is the first absent one) and their total size. */
enum pno_status audit__list(const char *dir, uint32_t *max, uint32_t *missing,
			    uint64_t *total_bytes);

/* Segment bytes in memory, for the in-memory verifier. */
struct audit__seg {
	const uint8_t *data;
	size_t size;
};
/* audit_verify over segments 1..n held in memory (the fuzzer's and the
 * bit-flip test's entry point). */
enum pno_status audit__verify_mem(const struct audit__seg *segs, uint32_t n,
				  const struct audit__keys *k,
				  audit_record_fn on_record, void *ud,
				  struct audit_result *r);

#endif
