/* Reading the audit log: the segment scanner (shared by the verifier and
 * the writer's reopen), audit_verify and audit_show. Everything read is
 * untrusted: every length is bounded before use, every record decrypted
 * and its MAC and chain position checked before anyone sees it. */
#include "audit_internal.h"

#include "../internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SS_STATE crypto_secretstream_xchacha20poly1305_state

static enum pno_status src_read(const struct audit__src *src, void *buf,
				size_t n, uint64_t off)
{
	if (off > src->size || n > src->size - off)
		return pno__errorf(PNO_STATUS_INTERNAL, "audit: read past the end");
	if (src->fd < 0) {
		memcpy(buf, src->mem + off, n);
		return PNO_STATUS_OK;
	}
	size_t done = 0;
	while (done < n) {
		ssize_t got = pread(src->fd, (uint8_t *)buf + done, n - done,
				    (off_t)(off + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return pno__errorf(PNO_STATUS_IO, "audit: reading a segment: %s",
					   got < 0 ? strerror(errno)
						   : "file shrank while reading");
		done += (size_t)got;
	}
	return PNO_STATUS_OK;
}

/* Are the bytes from off to the end all zero? (a tail the file system
 * extended but never filled: a crash, not tampering) */
static enum pno_status src_zero_tail(const struct audit__src *src,
				     uint64_t off, int *zero)
{
	uint8_t buf[4096];
	*zero = 1;
	while (off < src->size) {
		size_t n = (size_t)PNO__MIN((uint64_t)sizeof buf, src->size - off);
		enum pno_status s = src_read(src, buf, n, off);
		if (s != PNO_STATUS_OK)
			return s;
		for (size_t i = 0; i < n; i++)
			if (buf[i]) {
				*zero = 0;
				return PNO_STATUS_OK;
			}
		off += n;
	}
	return PNO_STATUS_OK;
}

static enum pno_status bad(struct audit_result *r, uint32_t seg, uint64_t off,
			   uint64_t seq, const char *fmt, ...) PNO__PRINTF(5, 6);
static enum pno_status bad(struct audit_result *r, uint32_t seg, uint64_t off,
			   uint64_t seq, const char *fmt, ...)
{
	va_list ap;
	r->bad = 1;
	r->bad_segment = seg;
	r->bad_offset = off;
	r->bad_seq = seq;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof r->message, fmt, ap);
	va_end(ap);
	return pno__errorf(PNO_STATUS_FORMAT, "%s", r->message);
}

static void torn(struct audit_result *r, uint32_t seg, uint64_t off,
		 uint64_t size)
{
	r->torn = 1;
	r->torn_segment = seg;
	r->torn_offset = off;
	r->torn_bytes = size - off;
}

/* after a failed header or record check, no more records can follow */
enum pno_status audit__scan(const struct audit__src *src, uint32_t segno,
			    int last, int adopt, uint64_t max_first_seq,
			    const struct audit__keys *keys,
			    struct audit__chain *ch, audit_record_fn fn,
			    void *ud, struct audit_result *r,
			    struct audit__scan_out *out)
{
	uint8_t hdr[AUDIT__SEG_HEADER], pre[AUDIT__PREFIX];
	uint8_t mac[AUDIT__MACBYTES];
	uint8_t *c = NULL, *m = NULL;
	SS_STATE st;
	enum pno_status s = PNO_STATUS_OK;
	uint64_t off = AUDIT__SEG_HEADER, first_seq;
	int fin = 0;

	memset(out, 0, sizeof *out);
	if (src->size < AUDIT__SEG_HEADER) {
		/* segments appear by rename, complete: a short one was cut */
		return bad(r, segno, 0, ch->seq,
			   "seg-%06" PRIu32 ".log: %" PRIu64 " bytes, shorter than "
			   "the %d-byte segment header (truncated, or not an "
			   "audit log)", segno, src->size, AUDIT__SEG_HEADER);
	}
	if ((s = src_read(src, hdr, sizeof hdr, 0)) != PNO_STATUS_OK)
		return s;
	if (memcmp(hdr, AUDIT__MAGIC, 8) != 0)
		return bad(r, segno, 0, ch->seq,
			   "seg-%06" PRIu32 ".log: bad magic: not an audit log "
			   "segment (or a damaged header)", segno);
	if (audit__get32(hdr + 8) != segno || audit__get32(hdr + 12) != 0)
		return bad(r, segno, 8, ch->seq,
			   "seg-%06" PRIu32 ".log: header names segment %" PRIu32
			   " (segments renamed or reordered, or a damaged header)",
			   segno, audit__get32(hdr + 8));
	if (sodium_memcmp(hdr + 56, keys->id, sizeof keys->id) != 0)
		return bad(r, segno, 56, ch->seq,
			   "wrong key or not an audit log: the key id in "
			   "seg-%06" PRIu32 ".log is not the key file's", segno);
	first_seq = audit__get64(hdr + 16);
	if (adopt) {
		if (first_seq > max_first_seq)
			return bad(r, segno, 16, ch->seq,
				   "seg-%06" PRIu32 ".log: first record %" PRIu64
				   " is impossible for the log's size", segno,
				   first_seq);
		ch->seq = first_seq;
		memcpy(ch->prev, hdr + 24, AUDIT__MACBYTES);
		ch->last_type = -1;
	} else if (first_seq != ch->seq ||
		   sodium_memcmp(hdr + 24, ch->prev, AUDIT__MACBYTES) != 0) {
		return bad(r, segno, 16, ch->seq,
			   "seg-%06" PRIu32 ".log starts at record %" PRIu64
			   "%s where record %" PRIu64 " is expected: segments "
			   "deleted, reordered or spliced", segno, first_seq,
			   first_seq == ch->seq ? " after another chain" : "",
			   ch->seq);
	}
	crypto_secretstream_xchacha20poly1305_init_pull(&st, hdr + AUDIT__HDR_PLAIN,
							keys->enc);
	c = pno_malloc(AUDIT__MSG_MAX);
	m = pno_malloc(AUDIT__MSG_MAX);
	if (!c || !m) {
		s = pno__errorf(PNO_STATUS_NOMEM, "audit: no memory for a record buffer");
		goto cleanup;
	}
	while (off < src->size) {
		uint64_t rem = src->size - off;
		unsigned long long mlen = 0;
		unsigned char tag = 0;
		if (fin) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: %" PRIu64 " bytes after the "
				"segment's final record at byte %" PRIu64, segno,
				rem, off);
			goto cleanup;
		}
		if (rem < AUDIT__PREFIX) {
			if (!last)
				goto torn_mid;
			torn(r, segno, off, src->size);
			break;
		}
		if ((s = src_read(src, pre, sizeof pre, off)) != PNO_STATUS_OK)
			goto cleanup;
		uint32_t len = audit__get32(pre);
		if (audit__get32(pre + 4) != ~len) {
			int zero = 0;
			if (last && (s = src_zero_tail(src, off, &zero)) != PNO_STATUS_OK)
				goto cleanup;
			if (zero) {
				torn(r, segno, off, src->size);
				break;
			}
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: damaged length prefix of "
				"record %" PRIu64 " at byte %" PRIu64, segno,
				ch->seq, off);
			goto cleanup;
		}
		if (len < AUDIT__MSG_MIN || len > AUDIT__MSG_MAX) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record %" PRIu64 " at byte "
				"%" PRIu64 " claims %" PRIu32 " bytes (allowed %d..%d)",
				segno, ch->seq, off, len, (int)AUDIT__MSG_MIN,
				(int)AUDIT__MSG_MAX);
			goto cleanup;
		}
		if (rem - AUDIT__PREFIX < len) {
			if (!last)
				goto torn_mid;
			torn(r, segno, off, src->size);
			break;
		}
		if ((s = src_read(src, c, len, off + AUDIT__PREFIX)) != PNO_STATUS_OK)
			goto cleanup;
		if (crypto_secretstream_xchacha20poly1305_pull(
			    &st, m, &mlen, &tag, c, len, hdr, AUDIT__HDR_PLAIN) != 0) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record %" PRIu64 " at byte "
				"%" PRIu64 " fails decryption (altered, moved, or "
				"encrypted under another key)", segno, ch->seq, off);
			goto cleanup;
		}
		if (tag != 0 && tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record %" PRIu64 " has "
				"unexpected stream tag %u", segno, ch->seq, tag);
			goto cleanup;
		}
		if (mlen < AUDIT__REC_FIXED + AUDIT__MACBYTES)
			memset(m, 0xff, AUDIT__REC_FIXED);	/* fails below */
		uint32_t jlen = audit__get32(m + 44);
		uint32_t type = (uint32_t)m[40] | (uint32_t)m[41] << 8;
		if (mlen < AUDIT__REC_FIXED + AUDIT__MACBYTES ||
		    jlen != mlen - AUDIT__REC_FIXED - AUDIT__MACBYTES ||
		    type >= AUDIT_EVENT_COUNT || m[42] || m[43]) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record %" PRIu64 " at byte "
				"%" PRIu64 " is malformed inside", segno, ch->seq,
				off);
			goto cleanup;
		}
		if (adopt && out->records == 0) {
			/* the header is now authenticated (AD of this
			 * record): K_first_seq from K_0 */
			memcpy(ch->k, keys->chain, AUDIT__KEYBYTES);
			for (uint64_t i = 0; i < first_seq; i++)
				audit__ratchet(ch->k);
		}
		uint64_t seq = audit__get64(m);
		if (seq != ch->seq) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record at byte %" PRIu64
				" has sequence number %" PRIu64 " where %" PRIu64
				" is expected (records deleted, duplicated or "
				"reordered)", segno, off, seq, ch->seq);
			goto cleanup;
		}
		if (sodium_memcmp(m + 8, ch->prev, AUDIT__MACBYTES) != 0) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record %" PRIu64 " at byte "
				"%" PRIu64 " does not chain to the record before it",
				segno, seq, off);
			goto cleanup;
		}
		audit__mac(mac, ch->k, m, AUDIT__REC_FIXED + jlen);
		if (sodium_memcmp(mac, m + AUDIT__REC_FIXED + jlen, AUDIT__MACBYTES) != 0) {
			s = bad(r, segno, off, ch->seq,
				"seg-%06" PRIu32 ".log: record %" PRIu64 " at byte "
				"%" PRIu64 ": MAC mismatch (altered, or sealed with "
				"another chain key)", segno, seq, off);
			goto cleanup;
		}
		if (fn) {
			struct audit_record rec = {
				.seq = seq, .segment = segno, .offset = off,
				.type = (enum audit_event_type)type,
				.json = (const char *)m + AUDIT__REC_FIXED,
				.json_len = jlen};
			memcpy(rec.mac, mac, sizeof mac);
			fn(ud, &rec);
		}
		memcpy(ch->prev, mac, sizeof mac);
		audit__ratchet(ch->k);
		ch->seq++;
		ch->last_type = (int)type;
		r->records++;
		memcpy(r->head_mac, mac, sizeof mac);
		out->records++;
		fin = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
		off += AUDIT__PREFIX + len;
	}
	out->end = off;
	out->final = fin;
	goto cleanup;
torn_mid:
	s = bad(r, segno, off, ch->seq,
		"seg-%06" PRIu32 ".log: incomplete record %" PRIu64 " at byte %"
		PRIu64 ", but this is not the last segment (cut, or a later "
		"segment was added)", segno, ch->seq, off);
cleanup:
	sodium_memzero(&st, sizeof st);
	if (m)
		sodium_memzero(m, AUDIT__MSG_MAX);
	pno_free(c);
	pno_free(m);
	return s;
}

/* "seg-" digits ".log" -> number (0: not a segment name) */
static uint32_t seg_number(const char *name)
{
	const char *p = name + 4;
	uint64_t v = 0;
	size_t nd = 0;
	if (strncmp(name, "seg-", 4) != 0)
		return 0;
	for (; *p >= '0' && *p <= '9'; p++, nd++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return 0;
	}
	if (nd < 6 || strcmp(p, ".log") != 0)
		return 0;
	/* the writer's name for v, exactly (no leading-zero aliases) */
	char want[32];
	snprintf(want, sizeof want, "seg-%06" PRIu32 ".log", (uint32_t)v);
	return strcmp(want, name) == 0 ? (uint32_t)v : 0;
}

enum pno_status audit__list(const char *dir, uint32_t *max, uint32_t *missing,
			    uint64_t *total_bytes)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t count = 0;
	*max = 0;
	*missing = 0;
	*total_bytes = 0;
	if (!d)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
						   : PNO_STATUS_IO,
				   "audit log %s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		uint32_t n = seg_number(e->d_name);
		struct stat sb;
		if (!n)
			continue;
		if (fstatat(dirfd(d), e->d_name, &sb, 0) == 0)
			*total_bytes += (uint64_t)sb.st_size;
		count++;
		if (n > *max)
			*max = n;
	}
	closedir(d);
	if (count != *max) {
		/* find the first hole */
		char path[4200];
		struct stat sb;
		for (uint32_t k = 1; k <= *max; k++) {
			snprintf(path, sizeof path, "%s/seg-%06" PRIu32 ".log", dir, k);
			if (stat(path, &sb) != 0) {
				*missing = k;
				break;
			}
		}
	}
	return PNO_STATUS_OK;
}

static enum pno_status verify_open(const char *keyfile, struct audit__keys *k)
{
	uint8_t master[AUDIT__KEYBYTES];
	enum pno_status s = audit__key_load(keyfile, master);
	if (s != PNO_STATUS_OK)
		return s;
	audit__keys_derive(k, master);
	sodium_memzero(master, sizeof master);
	return PNO_STATUS_OK;
}

static void chain_start(struct audit__chain *ch, const struct audit__keys *k)
{
	ch->seq = 0;
	memset(ch->prev, 0, sizeof ch->prev);
	memcpy(ch->k, k->chain, sizeof ch->k);
	ch->last_type = -1;
}

static void finish(struct audit_result *r, const struct audit__chain *ch)
{
	r->closed = !r->bad && !r->torn && ch->last_type == AUDIT_EVENT_LOG_CLOSE;
}

enum pno_status audit_verify(const char *dir, const char *keyfile,
			     audit_record_fn on_record, void *ud,
			     struct audit_result *r)
{
	struct audit__keys k;
	struct audit__chain ch;
	struct audit__scan_out so;
	uint32_t max = 0, missing = 0;
	uint64_t total = 0;
	enum pno_status s;
	char path[4200];

	if (!r)
		return pno__errorf(PNO_STATUS_INVALID, "audit verify: no result");
	memset(r, 0, sizeof *r);
	if (!dir || !*dir)
		return pno__errorf(PNO_STATUS_INVALID, "audit verify: no log directory");
	if (strlen(dir) > 4000)
		return pno__errorf(PNO_STATUS_INVALID, "audit verify: path too long");
	if (sodium_init() < 0)
		return pno__errorf(PNO_STATUS_INTERNAL, "audit verify: libsodium "
				   "failed to initialize");
	if ((s = verify_open(keyfile, &k)) != PNO_STATUS_OK)
		return s;
	chain_start(&ch, &k);
	if ((s = audit__list(dir, &max, &missing, &total)) != PNO_STATUS_OK)
		goto cleanup;
	if (max == 0) {
		s = pno__errorf(PNO_STATUS_NOTFOUND,
				"audit log %s: no segments (seg-000001.log ...)", dir);
		goto cleanup;
	}
	for (uint32_t n = 1; n <= max; n++) {
		struct stat sb;
		snprintf(path, sizeof path, "%s/seg-%06" PRIu32 ".log", dir, n);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT) {
			s = bad(r, n, 0, ch.seq,
				"seg-%06" PRIu32 ".log is missing (segments 1..%"
				PRIu32 " expected): records %" PRIu64 " on "
				"cannot be checked", n, max, ch.seq);
			goto cleanup;
		}
		if (fd < 0 || fstat(fd, &sb) != 0) {
			s = pno__errorf(PNO_STATUS_IO, "audit verify %s: %s", path,
					strerror(errno));
			if (fd >= 0)
				close(fd);
			goto cleanup;
		}
		struct audit__src src = {fd, NULL, (uint64_t)sb.st_size};
		s = audit__scan(&src, n, n == max, 0, 0, &k, &ch, on_record, ud,
				r, &so);
		close(fd);
		r->segments = n;
		if (s != PNO_STATUS_OK)
			goto cleanup;
	}
	finish(r, &ch);
cleanup:
	sodium_memzero(&k, sizeof k);
	sodium_memzero(&ch, sizeof ch);
	return s;
}

enum pno_status audit__verify_mem(const struct audit__seg *segs, uint32_t n,
				  const struct audit__keys *k,
				  audit_record_fn on_record, void *ud,
				  struct audit_result *r)
{
	struct audit__chain ch;
	struct audit__scan_out so;
	enum pno_status s = PNO_STATUS_OK;
	memset(r, 0, sizeof *r);
	if (n == 0)
		return pno__errorf(PNO_STATUS_NOTFOUND, "audit log: no segments");
	chain_start(&ch, k);
	for (uint32_t i = 0; i < n && s == PNO_STATUS_OK; i++) {
		struct audit__src src = {-1, segs[i].data, segs[i].size};
		s = audit__scan(&src, i + 1, i + 1 == n, 0, 0, k, &ch, on_record,
				ud, r, &so);
		r->segments = i + 1;
	}
	if (s == PNO_STATUS_OK)
		finish(r, &ch);
	sodium_memzero(&ch, sizeof ch);
	return s;
}

struct show_ctx {
	FILE *out;
	int failed;
};

static void show_record(void *ud, const struct audit_record *rec)
{
	struct show_ctx *c = ud;
	char hex[2 * AUDIT__MACBYTES + 1];
	sodium_bin2hex(hex, sizeof hex, rec->mac, sizeof rec->mac);
	/* the writer's JSON is an object with at least "time_ns": splice
	 * the chain fields in front of its members */
	if (rec->json_len < 2 || rec->json[0] != '{') {
		c->failed = 1;
		return;
	}
	if (fprintf(c->out, "{\"seq\":%" PRIu64 ",\"mac\":\"%s\",", rec->seq,
		    hex) < 0 ||
	    fwrite(rec->json + 1, 1, rec->json_len - 1, c->out) !=
		    rec->json_len - 1 ||
	    fputc('\n', c->out) == EOF)
		c->failed = 1;
}

enum pno_status audit_show(const char *dir, const char *keyfile, FILE *out,
			   struct audit_result *r)
{
	struct show_ctx c = {out, 0};
	struct audit_result local;
	enum pno_status s;
	if (!out)
		return pno__errorf(PNO_STATUS_INVALID, "audit show: no output stream");
	s = audit_verify(dir, keyfile, show_record, &c, r ? r : &local);
	if (s == PNO_STATUS_OK && (c.failed || fflush(out) != 0))
		return pno__errorf(PNO_STATUS_IO, "audit show: writing the output failed");
	return s;
}
