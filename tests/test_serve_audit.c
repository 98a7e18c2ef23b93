/* serve/audit: round trip and show; every single-bit flip of a log;
 * record and segment deletion, swapping, duplication, truncation and
 * splicing by an outsider; the same edits re-encrypted by an insider who
 * holds the encryption key and a later chain key (re-sealing); SIGKILL
 * during writes; I/O errors and torn writes; allocation failures; keys;
 * the command line. */
#define _GNU_SOURCE
#include "testutil.h"
#include "audit.h"
#include "audit_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXSEG 64

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* remove a log directory (flat: files only) */
static void rm_rf(const char *dir)
{
	char path[1400];
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d) {
		assert_int_equal(errno, ENOENT);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(d);
	assert_int_equal(rmdir(dir), 0);
}

/* a fresh key file at tu_tmp_path(name), copied to out */
static void make_key(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s", tu_tmp_path(name));
	unlink(out);
	assert_status(audit_keygen(out), PNO_STATUS_OK);
}

static void fresh_dir(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s", tu_tmp_path(name));
	rm_rf(out);
}

static void keys_of(struct audit__keys *k, const char *keyfile)
{
	uint8_t master[32];
	assert_status(audit__key_load(keyfile, master), PNO_STATUS_OK);
	audit__keys_derive(k, master);
}

/* record i of the test logs: an inference with every field */
struct ev_store {
	char rid[64], detail[128], din[65], dout[65];
};
static struct audit_event infer_event(struct ev_store *st, int i, int full)
{
	char in[32], out[32];
	snprintf(st->rid, sizeof st->rid, "req-%d", i);
	snprintf(st->detail, sizeof st->detail, "quote \" slash \\ nl \n é %d", i);
	snprintf(in, sizeof in, "input %d", i);
	snprintf(out, sizeof out, "output %d", i);
	audit_digest_hex(st->din, in, strlen(in));
	audit_digest_hex(st->dout, out, strlen(out));
	struct audit_event e = {.time_ns = 1700000000123456789LL + i,
				.type = AUDIT_EVENT_INFER,
				.request_id = st->rid, .status = 200};
	if (full) {
		e.actor = "alice";
		e.client = "10.0.0.7";
		e.model = "darcy_fno";
		e.version = "3";
		e.input_digest = st->din;
		e.output_digest = st->dout;
		e.detail = st->detail;
	}
	return e;
}

/* open, n inference records, close */
static void write_log(const char *dir, const char *key, int n, int full,
		      uint32_t seg_records, int fsync_each)
{
	struct audit_log *l = NULL;
	struct audit_opts o;
	audit_opts_default(&o);
	o.segment_records = seg_records;
	o.fsync = fsync_each;
	assert_status(audit_open(&l, dir, key, &o), PNO_STATUS_OK);
	for (int i = 0; i < n; i++) {
		struct ev_store st;
		struct audit_event e = infer_event(&st, i, full);
		uint64_t seq = 999;
		assert_status(audit_append(l, &e, &seq), PNO_STATUS_OK);
		assert_int_equal(seq, (uint64_t)i + 1);	/* 0 is audit_open */
	}
	assert_status(audit_close(l), PNO_STATUS_OK);
}

/* ---- segments in memory ---- */
struct segs {
	uint8_t *data[MAXSEG];
	size_t size[MAXSEG];
	uint32_t n;
};

static void segs_read(struct segs *s, const char *dir)
{
	char path[1200];
	memset(s, 0, sizeof *s);
	for (uint32_t k = 1;; k++) {
		snprintf(path, sizeof path, "%s/seg-%06u.log", dir, k);
		FILE *fp = fopen(path, "rb");
		if (!fp)
			break;
		assert_true(k <= MAXSEG);
		fseek(fp, 0, SEEK_END);
		long n = ftell(fp);
		fseek(fp, 0, SEEK_SET);
		s->data[k - 1] = malloc((size_t)n + 1);
		assert_int_equal(fread(s->data[k - 1], 1, (size_t)n, fp), (size_t)n);
		fclose(fp);
		s->size[k - 1] = (size_t)n;
		s->n = k;
	}
}

static void segs_free(struct segs *s)
{
	for (uint32_t k = 0; k < s->n; k++)
		free(s->data[k]);
	memset(s, 0, sizeof *s);
}

/* Replace the log in dir by s (segment files 1..n, nothing else). */
static void segs_write(const struct segs *s, const char *dir)
{
	char path[1200];
	rm_rf(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (uint32_t k = 0; k < s->n; k++) {
		if (!s->data[k])
			continue;	/* a deleted segment */
		snprintf(path, sizeof path, "%s/seg-%06u.log", dir, k + 1);
		FILE *fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(s->data[k], 1, s->size[k], fp), s->size[k]);
		fclose(fp);
	}
}

static enum pno_status verify_segs(const struct segs *s,
				   const struct audit__keys *k,
				   struct audit_result *r)
{
	struct audit__seg v[MAXSEG];
	for (uint32_t i = 0; i < s->n; i++) {
		v[i].data = s->data[i];
		v[i].size = s->size[i];
	}
	return audit__verify_mem(v, s->n, k, NULL, NULL, r);
}

/* record boundaries of a segment from its framing (no key needed: what
 * an outsider sees): offsets of each length prefix, and the end */
static int frames(const uint8_t *d, size_t n, size_t *off, int max)
{
	size_t o = AUDIT__SEG_HEADER;
	int k = 0;
	while (o + 8 <= n && k < max) {
		off[k++] = o;
		o += 8 + audit__get32(d + o);
	}
	assert_true(o == n);
	off[k] = o;
	return k;
}

/* ---- round trip ---- */

struct collect {
	uint64_t n;
	uint64_t seq[512];
	int type[512];
	uint8_t mac[512][32];
	char rid[512][32];
};

static void collect_fn(void *ud, const struct audit_record *r)
{
	struct collect *c = ud;
	if (c->n >= 512)
		return;
	c->seq[c->n] = r->seq;
	c->type[c->n] = (int)r->type;
	memcpy(c->mac[c->n], r->mac, 32);
	c->rid[c->n][0] = '\0';
	const char *p = memmem(r->json, r->json_len, "\"request_id\":\"", 14);
	if (p) {
		p += 14;
		const char *q = memchr(p, '"', r->json_len - (size_t)(p - r->json));
		snprintf(c->rid[c->n], 32, "%.*s", (int)(q - p), p);
	}
	c->n++;
}

static void test_round_trip(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "rt.key");
	fresh_dir(dir, sizeof dir, "rt.log");
	write_log(dir, key, 100, 1, 32, 1);

	struct audit_result r;
	static struct collect c;
	memset(&c, 0, sizeof c);
	assert_status(audit_verify(dir, key, collect_fn, &c, &r), PNO_STATUS_OK);
	/* audit_open, 100 records, audit_close; 32 per segment */
	assert_int_equal(r.records, 102);
	assert_int_equal(c.n, 102);
	assert_int_equal(r.segments, 4);
	assert_true(r.closed);
	assert_false(r.torn);
	assert_false(r.bad);
	assert_int_equal(c.type[0], AUDIT_EVENT_LOG_OPEN);
	assert_int_equal(c.type[101], AUDIT_EVENT_LOG_CLOSE);
	for (int i = 0; i < 102; i++)
		assert_int_equal(c.seq[i], (uint64_t)i);
	assert_memory_equal(r.head_mac, c.mac[101], 32);

	/* show: one JSON object per line, the fields as given */
	const char *out = tu_tmp_path("rt.jsonl");
	FILE *fp = fopen(out, "w+");
	assert_non_null(fp);
	assert_status(audit_show(dir, key, fp, &r), PNO_STATUS_OK);
	rewind(fp);
	char line[8192];
	int n = 0;
	while (fgets(line, sizeof line, fp)) {
		json_error_t err;
		json_t *j = json_loads(line, 0, &err);
		if (!j)
			fail_msg("line %d is not JSON: %s: %s", n, err.text, line);
		assert_int_equal(json_integer_value(json_object_get(j, "seq")), n);
		char hex[65];
		sodium_bin2hex(hex, sizeof hex, c.mac[n], 32);
		assert_string_equal(json_string_value(json_object_get(j, "mac")), hex);
		const char *ev = json_string_value(json_object_get(j, "event"));
		if (n >= 1 && n <= 100) {
			struct ev_store st;
			struct audit_event e = infer_event(&st, n - 1, 1);
			assert_string_equal(ev, "infer");
			assert_string_equal(json_string_value(json_object_get(j, "request_id")), e.request_id);
			assert_string_equal(json_string_value(json_object_get(j, "actor")), "alice");
			assert_string_equal(json_string_value(json_object_get(j, "client")), "10.0.0.7");
			assert_string_equal(json_string_value(json_object_get(j, "model")), "darcy_fno");
			assert_string_equal(json_string_value(json_object_get(j, "version")), "3");
			assert_string_equal(json_string_value(json_object_get(j, "input_digest")), e.input_digest);
			assert_string_equal(json_string_value(json_object_get(j, "output_digest")), e.output_digest);
			assert_string_equal(json_string_value(json_object_get(j, "detail")), e.detail);
			assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
			assert_true(json_integer_value(json_object_get(j, "time_ns")) == e.time_ns);
			if (n == 1)
				assert_string_equal(json_string_value(json_object_get(j, "time")),
						    "2023-11-14T22:13:20.123456789Z");
		} else {
			assert_string_equal(ev, n == 0 ? "audit_open" : "audit_close");
		}
		json_decref(j);
		n++;
	}
	fclose(fp);
	assert_int_equal(n, 102);

	/* encrypted: no field's text appears in the files */
	struct segs s;
	segs_read(&s, dir);
	assert_int_equal(s.n, 4);
	for (uint32_t k = 0; k < s.n; k++) {
		assert_null(memmem(s.data[k], s.size[k], "req-", 4));
		assert_null(memmem(s.data[k], s.size[k], "alice", 5));
		assert_null(memmem(s.data[k], s.size[k], "darcy", 5));
	}
	segs_free(&s);

	/* reopen after a clean close: the chain continues in segment 5 */
	struct audit_log *l;
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_OK);
	assert_int_equal(audit_next_seq(l), 103);
	assert_status(audit_close(l), PNO_STATUS_OK);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 104);
	assert_int_equal(r.segments, 5);
	assert_true(r.closed);
}

/* Events the log must refuse, leaving nothing written. */
static void test_invalid_events(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "inv.key");
	fresh_dir(dir, sizeof dir, "inv.log");
	struct audit_log *l;
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_OK);
	char longs[AUDIT_MAX_NAME + 2];
	memset(longs, 'a', sizeof longs - 1);
	longs[sizeof longs - 1] = '\0';
	struct audit_event e = {.type = AUDIT_EVENT_AUTH_FAILURE};
	e.actor = "\xc3\x28";	/* invalid UTF-8 */
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	assert_err_has("actor is not valid UTF-8");
	e.actor = "\xed\xa0\x80";	/* a surrogate */
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	e.actor = "\xc0\xaf";	/* overlong '/' */
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	e.actor = NULL;
	e.request_id = longs;
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	assert_err_has("request_id longer than 256");
	longs[AUDIT_MAX_NAME] = '\0';	/* exactly the limit: fine */
	e.input_digest = "ABCDEF";
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	assert_err_has("input_digest");
	e.input_digest = NULL;
	e.type = AUDIT_EVENT_LOG_CLOSE;
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	e.type = (enum audit_event_type)99;
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	e.type = AUDIT_EVENT_RATE_LIMITED;
	e.time_ns = -1;
	assert_status(audit_append(l, &e, NULL), PNO_STATUS_INVALID);
	e.time_ns = 0;
	assert_status(audit_append(NULL, &e, NULL), PNO_STATUS_INVALID);
	assert_status(audit_append(l, NULL, NULL), PNO_STATUS_INVALID);
	assert_int_equal(audit_next_seq(l), 1);
	uint64_t seq;
	assert_status(audit_append(l, &e, &seq), PNO_STATUS_OK);	/* 256 bytes */
	assert_int_equal(seq, 1);
	assert_status(audit_close(l), PNO_STATUS_OK);
	struct audit_result r;
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 3);
	assert_status(audit_close(NULL), PNO_STATUS_OK);
}

/* Reopen: a torn tail is cut and the cut recorded with its place; a
 * header-only last segment and a leftover temporary are removed; a
 * damaged end and a missing segment are refused. */
static void test_reopen(void **state)
{
	(void)state;
	char key[1024], dir[1024], seg[1200], line[4096];
	struct audit_result r;
	struct audit_log *l;
	struct stat sb;
	make_key(key, sizeof key, "ro.key");
	fresh_dir(dir, sizeof dir, "ro.log");
	write_log(dir, key, 10, 1, 100, 0);	/* one segment, 12 records */
	snprintf(seg, sizeof seg, "%s/seg-000001.log", dir);
	assert_int_equal(stat(seg, &sb), 0);
	assert_int_equal(truncate(seg, sb.st_size - 10), 0);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_true(r.torn);
	uint64_t cut_at = r.torn_offset, cut_bytes = r.torn_bytes;
	assert_int_equal(r.records, 11);
	/* a leftover temporary of a segment being created */
	char tmp[1300];
	snprintf(tmp, sizeof tmp, "%s/seg-000002.log.tmp", dir);
	FILE *fp = fopen(tmp, "wb");
	fputs("half a header", fp);
	fclose(fp);
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_OK);
	assert_int_equal(audit_next_seq(l), 12);
	assert_status(audit_close(l), PNO_STATUS_OK);
	assert_int_equal(stat(tmp, &sb), -1);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 13);	/* 11 + recovered + close */
	assert_true(r.closed);
	const char *out = tu_tmp_path("ro.jsonl");
	fp = fopen(out, "w+");
	assert_status(audit_show(dir, key, fp, &r), PNO_STATUS_OK);
	rewind(fp);
	char want[256];
	snprintf(want, sizeof want, "\"seq\":11,");
	int found = 0;
	while (fgets(line, sizeof line, fp))
		if (strstr(line, want)) {
			char note[200];
			snprintf(note, sizeof note, "recovered torn tail: cut %llu "
				 "bytes of an incomplete record at byte %llu of "
				 "seg-000001.log", (unsigned long long)cut_bytes,
				 (unsigned long long)cut_at);
			assert_non_null(strstr(line, "\"event\":\"audit_recovered\""));
			assert_non_null(strstr(line, note));
			found = 1;
		}
	fclose(fp);
	assert_true(found);

	/* a header-only last segment (a crash right after creating it) */
	struct segs s;
	segs_read(&s, dir);
	assert_int_equal(s.n, 2);
	snprintf(seg, sizeof seg, "%s/seg-000003.log", dir);
	fp = fopen(seg, "wb");
	audit__put32(s.data[1] + 8, 3);
	fwrite(s.data[1], 1, AUDIT__SEG_HEADER, fp);
	fclose(fp);
	segs_free(&s);
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_OK);
	assert_int_equal(audit_next_seq(l), 14);
	assert_status(audit_close(l), PNO_STATUS_OK);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 15);
	assert_int_equal(r.segments, 3);

	/* a damaged last segment: open refuses to extend it */
	snprintf(seg, sizeof seg, "%s/seg-000003.log", dir);
	fp = fopen(seg, "r+b");
	fseek(fp, AUDIT__SEG_HEADER + 20, SEEK_SET);
	int c = fgetc(fp);
	fseek(fp, AUDIT__SEG_HEADER + 20, SEEK_SET);
	fputc(c ^ 1, fp);
	fclose(fp);
	l = NULL;
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_FORMAT);
	assert_err_has("does not verify at its end");
	assert_null(l);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_FORMAT);
	assert_int_equal(r.records, 13);
	/* a missing middle segment: refused too */
	snprintf(seg, sizeof seg, "%s/seg-000002.log", dir);
	assert_int_equal(unlink(seg), 0);
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_FORMAT);
	assert_err_has("seg-000002.log is missing");
}

/* ---- every single-bit flip ---- */

/* Flip each bit of a 100-record log (9 segments of 12 records) in memory and verify.
 * Exact shortcut: the segments before the flipped one are untouched, so
 * the scan starts at the flipped segment from the chain state its
 * predecessors leave; only a flip that segment passes (none should)
 * would need the full verify. All bits, also under sanitizers (~25 s
 * there). */
static void test_bit_flips(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "flip.key");
	fresh_dir(dir, sizeof dir, "flip.log");
	write_log(dir, key, 100, 0, 12, 0);
	struct audit__keys k;
	keys_of(&k, key);
	struct segs s;
	segs_read(&s, dir);
	assert_int_equal(s.n, 9);
	struct audit_result r;
	assert_status(verify_segs(&s, &k, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 102);

	/* chain state at the start of each segment */
	struct audit__chain start[MAXSEG], ch;
	memset(&ch, 0, sizeof ch);
	memcpy(ch.k, k.chain, 32);
	ch.last_type = -1;
	for (uint32_t i = 0; i < s.n; i++) {
		struct audit__scan_out so;
		struct audit__src src = {-1, s.data[i], s.size[i]};
		start[i] = ch;
		assert_status(audit__scan(&src, i + 1, i + 1 == s.n, 0, 0, &k, &ch,
					  NULL, NULL, &r, &so), PNO_STATUS_OK);
	}
	long flips = 0, total_bits = 0;
	double t0 = now_s();
	for (uint32_t i = 0; i < s.n; i++) {
		total_bits += (long)s.size[i] * 8;
		for (size_t byte = 0; byte < s.size[i]; byte++)
			for (int bit = 0; bit < 8; bit++) {
				s.data[i][byte] ^= (uint8_t)(1u << bit);
				struct audit__chain c = start[i];
				struct audit__scan_out so;
				struct audit__src src = {-1, s.data[i], s.size[i]};
				memset(&r, 0, sizeof r);
				enum pno_status st = audit__scan(&src, i + 1,
					i + 1 == s.n, 0, 0, &k, &c, NULL, NULL, &r, &so);
				if (st == PNO_STATUS_OK)
					st = verify_segs(&s, &k, &r);
				if (st != PNO_STATUS_FORMAT || !r.bad)
					fail_msg("flip of bit %d of byte %zu of segment %u "
						 "not detected (%s, torn %d)", bit, byte,
						 i + 1, pno_status_name(st), r.torn);
				s.data[i][byte] ^= (uint8_t)(1u << bit);
				flips++;
			}
	}
	double dt = now_s() - t0;
	print_message("bit flips: %ld of %ld bits flipped, each detected "
		      "(%.1f s, %.1f us per flip)\n", flips, total_bits, dt,
		      1e6 * dt / (double)flips);
	assert_int_equal(flips, total_bits);
	assert_status(verify_segs(&s, &k, &r), PNO_STATUS_OK);	/* restored */
	segs_free(&s);
}

/* ---- outsider edits: bytes moved without any key ---- */

static uint8_t *splice3(const uint8_t *a, size_t na, const uint8_t *b,
		       size_t nb, const uint8_t *c, size_t nc, size_t *n)
{
	uint8_t *p = malloc(na + nb + nc + 1);
	if (na)
		memcpy(p, a, na);
	if (nb)
		memcpy(p + na, b, nb);
	if (nc)
		memcpy(p + na + nb, c, nc);
	*n = na + nb + nc;
	return p;
}

static void expect_bad(const struct segs *s, const struct audit__keys *k,
		       const char *what, const char *msg_has)
{
	struct audit_result r;
	enum pno_status st = verify_segs(s, k, &r);
	if (st != PNO_STATUS_FORMAT || !r.bad)
		fail_msg("%s: not detected (%s, %llu records, torn %d)", what,
			 pno_status_name(st), (unsigned long long)r.records, r.torn);
	if (msg_has && !strstr(r.message, msg_has))
		fail_msg("%s: message \"%s\" lacks \"%s\"", what, r.message, msg_has);
}

static void test_outsider_edits(void **state)
{
	(void)state;
	char key[1024], dir[1024], dir2[1024];
	make_key(key, sizeof key, "out.key");
	fresh_dir(dir, sizeof dir, "out.log");
	write_log(dir, key, 100, 1, 25, 0);	/* 102 records: 25+25+25+25+2 */
	struct audit__keys k;
	keys_of(&k, key);
	struct segs s, t;
	struct audit_result r;
	segs_read(&s, dir);
	assert_int_equal(s.n, 5);
	size_t off[64];
	int nf = frames(s.data[1], s.size[1], off, 63);
	assert_int_equal(nf, 25);

	/* delete record 5 of segment 2 */
	t = s;
	t.data[1] = splice3(s.data[1], off[5], s.data[1] + off[6],
			   s.size[1] - off[6], NULL, 0, &t.size[1]);
	expect_bad(&t, &k, "delete a record", "fails decryption");
	free(t.data[1]);
	/* swap records 5 and 6 */
	{
		size_t a = off[6] - off[5], b = off[7] - off[6];
		uint8_t *mid = splice3(s.data[1] + off[6], b, s.data[1] + off[5], a,
				      NULL, 0, &(size_t){0});
		t = s;
		t.data[1] = splice3(s.data[1], off[5], mid, a + b,
				   s.data[1] + off[7], s.size[1] - off[7], &t.size[1]);
		free(mid);
		expect_bad(&t, &k, "swap two records", "fails decryption");
		free(t.data[1]);
	}
	/* duplicate record 5 */
	t = s;
	t.data[1] = splice3(s.data[1], off[6], s.data[1] + off[5], off[6] - off[5],
			   s.data[1] + off[6], s.size[1] - off[6], &t.size[1]);
	expect_bad(&t, &k, "duplicate a record", "fails decryption");
	free(t.data[1]);
	/* the last record of a segment moved to the next segment's start */
	t = s;
	t.size[1] = off[24];
	t.data[2] = splice3(s.data[2], AUDIT__SEG_HEADER, s.data[1] + off[24],
			   s.size[1] - off[24], s.data[2] + AUDIT__SEG_HEADER,
			   s.size[2] - AUDIT__SEG_HEADER, &t.size[2]);
	expect_bad(&t, &k, "move a record across segments", NULL);
	free(t.data[2]);
	/* cut a middle segment at a record boundary: the next one's header
	 * no longer follows */
	t = s;
	t.size[1] = off[20];
	expect_bad(&t, &k, "cut a middle segment", "deleted, reordered or spliced");
	/* cut a middle segment inside a record */
	t = s;
	t.size[1] = off[20] + 30;
	expect_bad(&t, &k, "tear a middle segment", "not the last segment");
	/* reorder segments 2 and 3 */
	t = s;
	t.data[1] = s.data[2], t.size[1] = s.size[2];
	t.data[2] = s.data[1], t.size[2] = s.size[1];
	expect_bad(&t, &k, "reorder segments", "header names segment");
	/* ... also with their header numbers rewritten to match */
	{
		uint8_t *a = malloc(s.size[2]), *b = malloc(s.size[1]);
		memcpy(a, s.data[2], s.size[2]);
		memcpy(b, s.data[1], s.size[1]);
		audit__put32(a + 8, 2);
		audit__put32(b + 8, 3);
		t = s;
		t.data[1] = a, t.size[1] = s.size[2];
		t.data[2] = b, t.size[2] = s.size[1];
		expect_bad(&t, &k, "reorder renumbered segments", NULL);
		free(a);
		free(b);
	}
	/* delete a middle segment (files renumbered to hide the gap) */
	t = s;
	for (int i = 2; i < 5; i++)
		t.data[i - 1] = s.data[i], t.size[i - 1] = s.size[i];
	t.n = 4;
	expect_bad(&t, &k, "delete a segment and renumber", NULL);
	/* delete the first segment */
	t = s;
	for (int i = 1; i < 5; i++)
		t.data[i - 1] = s.data[i], t.size[i - 1] = s.size[i];
	t.n = 4;
	expect_bad(&t, &k, "delete the first segment", NULL);

	/* through the files: a missing segment, and one spliced in from
	 * another log under the same key */
	t = s;
	t.data[2] = NULL;
	fresh_dir(dir2, sizeof dir2, "out2.log");
	segs_write(&t, dir2);
	assert_status(audit_verify(dir2, key, NULL, NULL, &r), PNO_STATUS_FORMAT);
	assert_true(r.bad);
	assert_non_null(strstr(r.message, "seg-000003.log is missing"));
	fresh_dir(dir2, sizeof dir2, "out3.log");
	write_log(dir2, key, 100, 1, 25, 0);
	struct segs o;
	segs_read(&o, dir2);
	t = s;
	t.data[2] = o.data[2], t.size[2] = o.size[2];
	expect_bad(&t, &k, "splice a segment of another log", NULL);
	segs_free(&o);

	/* truncation at the end. Inside the last record: a torn tail,
	 * reported, the prefix verifies */
	nf = frames(s.data[4], s.size[4], off, 63);
	assert_int_equal(nf, 2);
	for (size_t cut = off[1] + 1; cut < s.size[4]; cut += 7) {
		t = s;
		t.size[4] = cut;
		memset(&r, 0, sizeof r);
		assert_status(verify_segs(&t, &k, &r), PNO_STATUS_OK);
		assert_true(r.torn);
		assert_false(r.closed);
		assert_int_equal(r.records, 101);
		assert_int_equal(r.torn_segment, 5);
		assert_int_equal(r.torn_offset, off[1]);
		assert_int_equal(r.torn_bytes, cut - off[1]);
	}
	/* a torn tail filled with zeros (the file system extended the file
	 * but the data never arrived) is a torn tail too */
	{
		uint8_t *z = calloc(1, off[1] + 200);
		memcpy(z, s.data[4], off[1]);
		t = s;
		t.data[4] = z, t.size[4] = off[1] + 200;
		assert_status(verify_segs(&t, &k, &r), PNO_STATUS_OK);
		assert_true(r.torn);
		z[off[1] + 150] = 1;	/* ... but not garbage */
		expect_bad(&t, &k, "garbage after the last record", "length prefix");
		free(z);
	}
	/* at a record boundary: the records before verify, but the clean
	 * close marker is gone, and verify says the log is not closed. That
	 * is all a log can prove about its own end (docs/serve/audit.md). */
	t = s;
	t.size[4] = off[1];
	assert_status(verify_segs(&t, &k, &r), PNO_STATUS_OK);
	assert_false(r.closed);
	assert_false(r.torn);
	assert_int_equal(r.records, 101);
	t.n = 4;	/* the whole last segment deleted */
	assert_status(verify_segs(&t, &k, &r), PNO_STATUS_OK);
	assert_false(r.closed);
	assert_int_equal(r.records, 100);
	assert_status(verify_segs(&s, &k, &r), PNO_STATUS_OK);
	assert_true(r.closed);
	/* data after the final record of a segment */
	t = s;
	t.data[0] = splice3(s.data[0], s.size[0], s.data[1] + AUDIT__SEG_HEADER,
			   s.size[1] - AUDIT__SEG_HEADER, NULL, 0, &t.size[0]);
	expect_bad(&t, &k, "append after the final record", "after the segment's final");
	free(t.data[0]);
	segs_free(&s);
}

/* ---- insider edits: the encryption key and a later chain key ---- */

/* a log decrypted into its plaintext records (what an attacker who took
 * the encryption key sees) */
struct plain {
	uint8_t *rec[512];
	size_t len[512];
	int seg_of[512];
	int n, nseg;
};

static void decrypt_all(struct plain *p, const struct segs *s,
			const struct audit__keys *k)
{
	memset(p, 0, sizeof *p);
	p->nseg = (int)s->n;
	for (uint32_t i = 0; i < s->n; i++) {
		crypto_secretstream_xchacha20poly1305_state st;
		assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(
					 &st, s->data[i] + AUDIT__HDR_PLAIN, k->enc), 0);
		size_t o = AUDIT__SEG_HEADER;
		while (o < s->size[i]) {
			uint32_t len = audit__get32(s->data[i] + o);
			unsigned long long mlen;
			unsigned char tag;
			uint8_t *m = malloc(len);
			assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(
				&st, m, &mlen, &tag, s->data[i] + o + 8, len,
				s->data[i], AUDIT__HDR_PLAIN), 0);
			p->rec[p->n] = m;
			p->len[p->n] = (size_t)mlen;
			p->seg_of[p->n] = (int)i;
			p->n++;
			o += 8 + len;
		}
	}
}

static void plain_free(struct plain *p)
{
	for (int i = 0; i < p->n; i++)
		free(p->rec[i]);
}

/* Encrypt records into segments as the writer would (records keep their
 * segment assignment), fresh stream headers, the last record of every
 * segment but the last FINAL, and the last one FINAL if it is a close. */
static void encrypt_all(struct segs *out, const struct plain *p,
			const struct audit__keys *k)
{
	memset(out, 0, sizeof *out);
	out->n = (uint32_t)p->nseg;
	for (int sg = 0; sg < p->nseg; sg++) {
		uint8_t *d = malloc(AUDIT__SEG_HEADER + 70000);
		size_t n = AUDIT__SEG_HEADER;
		int first = -1, last = -1;
		for (int i = 0; i < p->n; i++)
			if (p->seg_of[i] == sg) {
				if (first < 0)
					first = i;
				last = i;
			}
		memcpy(d, AUDIT__MAGIC, 8);
		audit__put32(d + 8, (uint32_t)sg + 1);
		audit__put32(d + 12, 0);
		audit__put64(d + 16, audit__get64(p->rec[first]));
		memcpy(d + 24, p->rec[first] + 8, 32);
		memcpy(d + 56, k->id, 16);
		crypto_secretstream_xchacha20poly1305_state st;
		crypto_secretstream_xchacha20poly1305_init_push(&st, d + AUDIT__HDR_PLAIN,
								k->enc);
		for (int i = first; i <= last; i++) {
			if (p->seg_of[i] != sg)
				continue;
			int fin = i == last && (sg + 1 < p->nseg ||
						p->rec[i][40] == AUDIT_EVENT_LOG_CLOSE);
			unsigned long long clen;
			crypto_secretstream_xchacha20poly1305_push(&st, d + n + 8, &clen,
				p->rec[i], p->len[i], d, AUDIT__HDR_PLAIN,
				fin ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
			audit__put32(d + n, (uint32_t)clen);
			audit__put32(d + n + 4, ~(uint32_t)clen);
			n += 8 + clen;
		}
		out->data[sg] = d;
		out->size[sg] = n;
	}
}

/* K_j from the master: what an attacker who read the writer's memory
 * at record j holds */
static void chain_key(uint8_t kj[32], const struct audit__keys *k, uint64_t j)
{
	memcpy(kj, k->chain, 32);
	for (uint64_t i = 0; i < j; i++)
		audit__ratchet(kj);
}

/* rewrite record i's detail bytes and re-seal it under K_j */
static void reseal(struct plain *p, int i, const uint8_t kj[32])
{
	uint8_t *m = p->rec[i];
	uint32_t jlen = audit__get32(m + 44);
	uint8_t *hit = memmem(m + AUDIT__REC_FIXED, jlen, "req-", 4);
	assert_non_null(hit);
	hit[0] = 'R';	/* "req-17" -> "Req-17": a falsified request id */
	audit__mac(m + AUDIT__REC_FIXED + jlen, kj, m, AUDIT__REC_FIXED + jlen);
}

static void test_insider_edits(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "in.key");
	fresh_dir(dir, sizeof dir, "in.log");
	write_log(dir, key, 100, 1, 25, 0);
	struct audit__keys k;
	keys_of(&k, key);
	struct segs s, t;
	struct plain p;
	struct audit_result r;
	segs_read(&s, dir);
	decrypt_all(&p, &s, &k);
	assert_int_equal(p.n, 102);

	/* control: re-encrypting the unchanged records verifies, so every
	 * failure below is the edit's */
	encrypt_all(&t, &p, &k);
	assert_status(verify_segs(&t, &k, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 102);
	assert_true(r.closed);
	segs_free(&t);

	/* re-seal record 17 with K_j, j > 17 (the attacker's stolen key),
	 * for several j: fails at record 17 */
	uint64_t js[] = {18, 19, 50, 101, 102};
	uint8_t kj[32], *saved = malloc(p.len[17]);
	memcpy(saved, p.rec[17], p.len[17]);
	for (size_t q = 0; q < sizeof js / sizeof js[0]; q++) {
		chain_key(kj, &k, js[q]);
		reseal(&p, 17, kj);
		encrypt_all(&t, &p, &k);
		expect_bad(&t, &k, "re-seal with a later key", "MAC mismatch");
		verify_segs(&t, &k, &r);
		assert_int_equal(r.bad_seq, 17);
		assert_int_equal(r.records, 17);
		segs_free(&t);
		memcpy(p.rec[17], saved, p.len[17]);
	}
	/* control: the same edit sealed with the right key K_17 (only the
	 * master key gives it) verifies; the next record then breaks the
	 * chain because its prev MAC is the old one */
	chain_key(kj, &k, 17);
	reseal(&p, 17, kj);
	encrypt_all(&t, &p, &k);
	verify_segs(&t, &k, &r);
	assert_true(r.bad);
	assert_int_equal(r.bad_seq, 18);
	assert_non_null(strstr(r.message, "does not chain"));
	segs_free(&t);
	memcpy(p.rec[17], saved, p.len[17]);
	free(saved);

	/* record-level edits, re-encrypted so decryption passes */
	struct plain q;
	uint8_t *tmp;
	/* delete record 30 */
	q = p;
	memmove(&q.rec[30], &q.rec[31], (size_t)(q.n - 31) * sizeof q.rec[0]);
	memmove(&q.len[30], &q.len[31], (size_t)(q.n - 31) * sizeof q.len[0]);
	memmove(&q.seg_of[30], &q.seg_of[31], (size_t)(q.n - 31) * sizeof q.seg_of[0]);
	q.n--;
	encrypt_all(&t, &q, &k);
	expect_bad(&t, &k, "insider deletes a record", "sequence number 31");
	segs_free(&t);
	/* swap records 30 and 31 */
	q = p;
	tmp = q.rec[30], q.rec[30] = q.rec[31], q.rec[31] = tmp;
	size_t tl = q.len[30];
	q.len[30] = q.len[31], q.len[31] = tl;
	encrypt_all(&t, &q, &k);
	expect_bad(&t, &k, "insider swaps records", "sequence number 31");
	segs_free(&t);
	/* duplicate record 30 */
	q = p;
	memmove(&q.rec[31], &q.rec[30], (size_t)(q.n - 30) * sizeof q.rec[0]);
	memmove(&q.len[31], &q.len[30], (size_t)(q.n - 30) * sizeof q.len[0]);
	memmove(&q.seg_of[31], &q.seg_of[30], (size_t)(q.n - 30) * sizeof q.seg_of[0]);
	q.n++;
	encrypt_all(&t, &q, &k);
	expect_bad(&t, &k, "insider duplicates a record", "sequence number 30");
	segs_free(&t);
	/* delete record 30 and renumber every later record, re-MACing them
	 * all under the stolen key K_30 and its successors: the MAC of
	 * record 30 (the first changed) is under K_30, which the attacker
	 * has. The chain then verifies only from the attacker's key on:
	 * this is the limit of forward security (the past before the theft
	 * is protected, not the records after it); a delete of a record
	 * before the theft point must fail: */
	q = p;
	memmove(&q.rec[20], &q.rec[21], (size_t)(q.n - 21) * sizeof q.rec[0]);
	memmove(&q.len[20], &q.len[21], (size_t)(q.n - 21) * sizeof q.len[0]);
	memmove(&q.seg_of[20], &q.seg_of[21], (size_t)(q.n - 21) * sizeof q.seg_of[0]);
	q.n--;
	uint8_t *copies[512];
	chain_key(kj, &k, 30);	/* stolen at record 30 */
	uint8_t prev[32];
	memcpy(prev, q.rec[19] + AUDIT__REC_FIXED + audit__get32(q.rec[19] + 44), 32);
	for (int i = 20; i < q.n; i++) {
		copies[i] = malloc(q.len[i]);
		memcpy(copies[i], q.rec[i], q.len[i]);
		q.rec[i] = copies[i];
		uint32_t jl = audit__get32(q.rec[i] + 44);
		audit__put64(q.rec[i], (uint64_t)i);
		memcpy(q.rec[i] + 8, prev, 32);
		/* the best the attacker can do for i < 30: K_30 */
		uint8_t ki[32];
		if ((uint64_t)i >= 30)
			chain_key(ki, &k, (uint64_t)i);
		else
			memcpy(ki, kj, 32);
		audit__mac(q.rec[i] + AUDIT__REC_FIXED + jl, ki, q.rec[i],
			   AUDIT__REC_FIXED + jl);
		memcpy(prev, q.rec[i] + AUDIT__REC_FIXED + jl, 32);
	}
	encrypt_all(&t, &q, &k);
	expect_bad(&t, &k, "insider deletes a past record and re-chains", "MAC mismatch");
	verify_segs(&t, &k, &r);
	assert_int_equal(r.bad_seq, 20);
	segs_free(&t);
	for (int i = 20; i < q.n; i++)
		free(copies[i]);

	plain_free(&p);
	segs_free(&s);
}

/* ---- kill -9 during writes ---- */

/* a write hook that writes a prefix of a record and then kills the
 * process: the torn write a crash leaves */
static long tear_at, tear_count;
static ssize_t tearing_write(void *ud, int fd, const void *buf, size_t n)
{
	(void)ud;
	if (++tear_count == tear_at) {
		ssize_t w = write(fd, buf, n / 2);
		(void)w;
		kill(getpid(), SIGKILL);
	}
	return write(fd, buf, n);
}

static void child_loop(const char *dir, const char *key, int wfd, int run,
		       int tear)
{
	struct audit_log *l;
	struct audit_opts o;
	struct audit_io io = {tearing_write, NULL, NULL};
	audit_opts_default(&o);
	o.segment_records = 7;	/* many rotations, crashes at all points */
	if (tear) {
		tear_count = 0;
		tear_at = tear;
		o.io = &io;
	}
	if (audit_open(&l, dir, key, &o) != PNO_STATUS_OK) {
		fprintf(stderr, "child: open: %s\n", pno_last_error());
		_exit(3);
	}
	for (int i = 0;; i++) {
		char rid[48];
		uint64_t seq;
		snprintf(rid, sizeof rid, "c%d-%d", run, i);
		struct audit_event e = {.type = AUDIT_EVENT_INFER,
					.request_id = rid, .status = 200};
		if (audit_append(l, &e, &seq) != PNO_STATUS_OK)
			_exit(4);
		/* the "client saw success" only now */
		uint64_t msg[2] = {seq, ((uint64_t)run << 32) | (uint64_t)i};
		if (write(wfd, msg, sizeof msg) != sizeof msg)
			_exit(5);
	}
}

struct acked {
	uint64_t seq, tag;
};

static struct acked acks[200000];
static long nacks;
static uint64_t rec_tag[400000];
static uint8_t rec_has[400000];

static void tag_fn(void *ud, const struct audit_record *r)
{
	(void)ud;
	int run, i;
	const char *p = memmem(r->json, r->json_len, "\"request_id\":\"c", 15);
	if (r->seq >= 400000 || !p)
		return;
	if (sscanf(p + 15, "%d-%d", &run, &i) == 2) {
		rec_tag[r->seq] = ((uint64_t)run << 32) | (uint64_t)i;
		rec_has[r->seq] = 1;
	}
}

static void test_crash(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "crash.key");
	fresh_dir(dir, sizeof dir, "crash.log");
	int runs = 50, torn_runs = 0, recovered = 0;
	/* the tearing hook counts writes: a child writes its new segment's
	 * header (write 1), its open record (2), then records, a header
	 * again every 8th write (7 records per segment): a tear at write w
	 * with (w - 1) % 8 != 0 tears a record; at w = 2 the open record */
	int n_hook_tears = 0, n_open_torn = 0;
	nacks = 0;
	double t0 = now_s();
	for (int run = 0; run < runs; run++) {
		int pfd[2];
		assert_int_equal(pipe(pfd), 0);
		/* every 5th run tears its write itself at a random record */
		int tear = run % 5 == 4 ? 2 + (int)(pno_rng_u64(7, 1, (uint64_t)run) % 40)
					: 0;
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(pfd[0]);
			child_loop(dir, key, pfd[1], run, tear);
			_exit(0);
		}
		close(pfd[1]);
		if (tear) {
			n_hook_tears += (tear - 1) % 8 != 0;
			n_open_torn += tear == 2;
		} else {
			/* after its first acknowledged record (so its open
			 * record is durable), kill at a random moment 2..60
			 * ms later */
			struct acked a0;
			assert_int_equal(read(pfd[0], &a0, sizeof a0), sizeof a0);
			acks[nacks++] = a0;
			uint64_t us = 2000 + pno_rng_u64(7, 2, (uint64_t)run) % 58000;
			struct timespec ts = {0, (long)us * 1000};
			nanosleep(&ts, NULL);
			kill(pid, SIGKILL);
		}
		int wst;
		assert_int_equal(waitpid(pid, &wst, 0), pid);
		if (!WIFSIGNALED(wst) || WTERMSIG(wst) != SIGKILL)
			fail_msg("run %d: child did not die by SIGKILL (status %d)",
				 run, wst);
		struct acked a;
		ssize_t got;
		while ((got = read(pfd[0], &a, sizeof a)) == sizeof a)
			if (nacks < 200000)
				acks[nacks++] = a;
		close(pfd[0]);
		struct audit_result r;
		enum pno_status vs = audit_verify(dir, key, NULL, NULL, &r);
		if (vs == PNO_STATUS_NOTFOUND && nacks == 0)
			continue;	/* killed before its first segment */
		assert_status(vs, PNO_STATUS_OK);
		torn_runs += r.torn;
	}
	/* reopen once more (cuts any tail, records the recovery) and close */
	struct audit_log *l;
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_OK);
	assert_status(audit_close(l), PNO_STATUS_OK);
	memset(rec_has, 0, sizeof rec_has);
	struct audit_result r;
	static struct collect c;
	assert_status(audit_verify(dir, key, tag_fn, NULL, &r), PNO_STATUS_OK);
	assert_true(r.closed);
	assert_false(r.torn);
	/* every acknowledged record is in the log with its request id */
	for (long i = 0; i < nacks; i++) {
		if (acks[i].seq >= 400000 || !rec_has[acks[i].seq] ||
		    rec_tag[acks[i].seq] != acks[i].tag)
			fail_msg("acknowledged record %llu (run %llu, item %llu) "
				 "missing from the log", (unsigned long long)acks[i].seq,
				 (unsigned long long)(acks[i].tag >> 32),
				 (unsigned long long)(acks[i].tag & 0xffffffff));
	}
	/* the recoveries are recorded: count audit_recovered records */
	memset(&c, 0, sizeof c);
	(void)c;
	const char *out = tu_tmp_path("crash.jsonl");
	FILE *fp = fopen(out, "w+");
	assert_status(audit_show(dir, key, fp, &r), PNO_STATUS_OK);
	rewind(fp);
	char line[4096];
	int opens = 0;
	while (fgets(line, sizeof line, fp)) {
		recovered += strstr(line, "\"audit_recovered\"") != NULL;
		opens += strstr(line, "\"audit_open\"") != NULL;
	}
	fclose(fp);
	print_message("crash: %d SIGKILLs (%d mid-write by the tearing hook, "
		      "%d of them tearing a record), %ld acknowledged records "
		      "all present of %llu; %d torn tails seen by verify, %d "
		      "recoveries recorded; %.1f s\n", runs, runs / 5,
		      n_hook_tears, nacks, (unsigned long long)r.records,
		      torn_runs, recovered, now_s() - t0);
	/* one open record per run (plus the final open), but none from a
	 * child whose tear hit its own open record */
	assert_int_equal(opens + recovered, runs + 1 - n_open_torn);
	/* each tear of a record left a torn tail, seen by verify and cut
	 * and recorded by the next open (a SIGKILL by the parent may have
	 * torn more) */
	assert_true(torn_runs >= n_hook_tears);
	assert_true(recovered >= n_hook_tears);
	assert_true(n_hook_tears >= 5);
	assert_true(nacks > 100);
}

/* ---- I/O errors ---- */

struct fault {
	long count, fail_at, fail_len;	/* fail_len: consecutive failures */
	int partial;			/* a failing write writes half first */
};
static ssize_t fault_write(void *ud, int fd, const void *buf, size_t n)
{
	struct fault *f = ud;
	f->count++;
	if (f->fail_at > 0 && f->count >= f->fail_at &&
	    f->count < f->fail_at + f->fail_len) {
		if (f->partial) {
			ssize_t w = write(fd, buf, n / 2);
			(void)w;
		}
		errno = EIO;
		return -1;
	}
	return write(fd, buf, n);
}
static int fault_sync(void *ud, int fd)
{
	struct fault *f = ud;
	f->count++;
	if (f->fail_at > 0 && f->count >= f->fail_at &&
	    f->count < f->fail_at + f->fail_len) {
		errno = EIO;
		return -1;
	}
	return 0;	/* durability is not what this test is about: fast */
}

/* Fail the Nth I/O call (write or sync) for every N of open + 20
 * appends + close; partial and whole failures; one failure and two in a
 * row (the second hits the clean-up: the log then refuses records until
 * reopened). Each failure is returned, each success is in the log, the
 * log verifies after a reopen. */
static void test_io_errors(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "io.key");
	int cases = 0, failures_seen = 0, broken_seen = 0;
	for (int partial = 0; partial < 2; partial++)
		for (long len = 1; len <= 2; len++)
			for (long n = 1;; n++) {
				struct fault f = {0, n, len, partial};
				struct audit_io io = {fault_write, fault_sync, &f};
				struct audit_opts o;
				struct audit_log *l = NULL;
				int ok[20] = {0}, any_fail = 0;
				audit_opts_default(&o);
				o.segment_records = 8;
				o.io = &io;
				fresh_dir(dir, sizeof dir, "io.log");
				enum pno_status s = audit_open(&l, dir, key, &o);
				if (s != PNO_STATUS_OK) {
					assert_status(s, PNO_STATUS_IO);
					any_fail = 1;
					/* open again without faults */
					long at = f.fail_at;
					f.fail_at = 0;
					assert_status(audit_open(&l, dir, key, &o), PNO_STATUS_OK);
					f.fail_at = at;
				}
				for (int i = 0; i < 20; i++) {
					char rid[32];
					snprintf(rid, sizeof rid, "io-%d", i);
					struct audit_event e = {.type = AUDIT_EVENT_KEY_USE,
								.request_id = rid};
					s = audit_append(l, &e, NULL);
					if (s == PNO_STATUS_OK)
						ok[i] = 1;
					else {
						assert_status(s, PNO_STATUS_IO);
						any_fail = 1;
					}
				}
				s = audit_close(l);
				if (s != PNO_STATUS_OK) {
					assert_status(s, PNO_STATUS_IO);
					any_fail = 1;
				}
				/* after a failed clean-up the log was unusable:
				 * later appends failed; count such cases */
				int later_fail = 0;
				for (int i = 1; i < 20; i++)
					later_fail += !ok[i] && !ok[i - 1];
				broken_seen += later_fail > 0;
				/* reopen (recovers whatever was left) and close */
				f.fail_at = 0;
				assert_status(audit_open(&l, dir, key, &o), PNO_STATUS_OK);
				assert_status(audit_close(l), PNO_STATUS_OK);
				static struct collect c;
				struct audit_result r;
				memset(&c, 0, sizeof c);
				assert_status(audit_verify(dir, key, collect_fn, &c, &r),
					      PNO_STATUS_OK);
				assert_true(r.closed);
				/* exactly the successful appends are present */
				for (int i = 0; i < 20; i++) {
					char rid[32];
					int found = 0;
					snprintf(rid, sizeof rid, "io-%d", i);
					for (uint64_t j = 0; j < c.n; j++)
						found += !strcmp(c.rid[j], rid);
					if (found != ok[i])
						fail_msg("fault at I/O %ld (len %ld, partial %d): "
							 "record io-%d %s", n, len, partial, i,
							 ok[i] ? "acknowledged but missing"
							       : "refused but present");
				}
				cases++;
				failures_seen += any_fail;
				if (!any_fail)
					break;	/* past the last I/O call */
			}
	print_message("io errors: %d cases (each I/O call failed in turn), %d "
		      "with a failure returned, %d left the log refusing "
		      "records until reopened\n", cases, failures_seen, broken_seen);
	assert_true(failures_seen > 100);
	assert_true(broken_seen > 0);
}

/* ---- allocation failures ---- */

static enum pno_status open_append_close(const char *dir, const char *key)
{
	struct audit_log *l;
	enum pno_status s = audit_open(&l, dir, key, NULL);
	if (s != PNO_STATUS_OK)
		return s;
	struct audit_event e = {.type = AUDIT_EVENT_LOAD, .model = "m"};
	s = audit_append(l, &e, NULL);
	enum pno_status s2 = audit_close(l);
	return s != PNO_STATUS_OK ? s : s2;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "alloc.key");
	fresh_dir(dir, sizeof dir, "alloc.log");
	write_log(dir, key, 10, 1, 4, 0);
	tu_alloc_install();
	long live0 = tu_alloc_live(), k;
	struct audit_result r;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(open_append_close(dir, key), live0))
			break;
		tu_alloc_reset(0);
		assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	}
	long kopen = k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(audit_verify(dir, key, NULL, NULL, &r), live0))
			break;
	}
	tu_alloc_reset(0);
	tu_alloc_uninstall();
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_true(r.closed);
	print_message("alloc failures: open+append+close %ld points, verify %ld\n",
		      kopen - 1, k - 1);
	assert_true(kopen > 3);
}

/* ---- keys ---- */

static void test_keys(void **state)
{
	(void)state;
	char key[1024], key2[1024], dir[1024];
	struct stat sb;
	make_key(key, sizeof key, "k1.key");
	assert_int_equal(stat(key, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, 65);
	/* never overwritten */
	FILE *fp = fopen(key, "rb");
	char before[80] = {0}, after[80] = {0};
	assert_int_equal(fread(before, 1, 65, fp), 65);
	fclose(fp);
	assert_status(audit_keygen(key), PNO_STATUS_EXISTS);
	fp = fopen(key, "rb");
	assert_int_equal(fread(after, 1, 65, fp), 65);
	fclose(fp);
	assert_string_equal(before, after);
	assert_int_equal(tu_temps_left(key), 0);
	/* two keys differ */
	make_key(key2, sizeof key2, "k2.key");
	uint8_t m1[32], m2[32];
	assert_status(audit__key_load(key, m1), PNO_STATUS_OK);
	assert_status(audit__key_load(key2, m2), PNO_STATUS_OK);
	assert_true(memcmp(m1, m2, 32) != 0);

	/* a log under key 1; key 2 cannot read or extend it */
	fresh_dir(dir, sizeof dir, "keys.log");
	write_log(dir, key, 3, 1, 100, 0);
	struct audit_result r;
	assert_status(audit_verify(dir, key2, NULL, NULL, &r), PNO_STATUS_FORMAT);
	assert_err_has("wrong key or not an audit log");
	assert_true(r.bad);
	assert_int_equal(r.records, 0);
	struct audit_log *l = NULL;
	assert_status(audit_open(&l, dir, key2, NULL), PNO_STATUS_FORMAT);
	assert_err_has("wrong key");
	assert_null(l);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 5);

	/* key files that are not keys */
	const char *bad = tu_tmp_path("bad.key");
	static const char *texts[] = {"", "abc\n", "zz00000000000000000000000000000000000000000000000000000000000000\n",
				      "000000000000000000000000000000000000000000000000000000000000000000\n",
				      "00000000000000000000000000000000000000000000000000000000000000 \n"};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		unlink(bad);
		int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(write(fd, texts[i], strlen(texts[i])) == (ssize_t)strlen(texts[i]));
		close(fd);
		assert_status(audit_verify(dir, bad, NULL, NULL, &r), PNO_STATUS_FORMAT);
		assert_err_has("not an audit key file");
	}
	/* a key readable by others is refused */
	assert_int_equal(chmod(key, 0640), 0);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_INVALID);
	assert_err_has("chmod 600");
	assert_int_equal(chmod(key, 0600), 0);
	assert_status(audit_verify(dir, tu_tmp_path("nokey"), NULL, NULL, &r),
		      PNO_STATUS_NOTFOUND);
	assert_status(audit_verify(tu_tmp_path("nolog"), key, NULL, NULL, &r),
		      PNO_STATUS_NOTFOUND);
	/* a directory holding something else is not a log */
	fresh_dir(dir, sizeof dir, "notalog");
	mkdir(dir, 0700);
	char path[1200];
	snprintf(path, sizeof path, "%s/seg-000001.log", dir);
	fp = fopen(path, "wb");
	for (int i = 0; i < 300; i++)
		fputc(i, fp);
	fclose(fp);
	assert_status(audit_verify(dir, key, NULL, NULL, &r), PNO_STATUS_FORMAT);
	assert_err_has("not an audit log");
}

/* ---- threads ---- */

struct thr {
	struct audit_log *l;
	int id;
	uint64_t seqs[50];
};
static void *thr_main(void *arg)
{
	struct thr *t = arg;
	for (int i = 0; i < 50; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "t%d-%d", t->id, i);
		struct audit_event e = {.type = AUDIT_EVENT_INFER, .request_id = rid};
		if (audit_append(t->l, &e, &t->seqs[i]) != PNO_STATUS_OK)
			t->seqs[i] = UINT64_MAX;
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "thr.key");
	fresh_dir(dir, sizeof dir, "thr.log");
	struct audit_log *l;
	struct audit_opts o;
	audit_opts_default(&o);
	o.fsync = 0;
	o.segment_records = 16;
	assert_status(audit_open(&l, dir, key, &o), PNO_STATUS_OK);
	struct thr t[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		t[i].l = l;
		t[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_status(audit_close(l), PNO_STATUS_OK);
	uint8_t seen[256] = {0};
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 50; j++) {
			assert_true(t[i].seqs[j] >= 1 && t[i].seqs[j] <= 200);
			assert_false(seen[t[i].seqs[j]]);
			seen[t[i].seqs[j]] = 1;
		}
	static struct collect c;
	struct audit_result r;
	memset(&c, 0, sizeof c);
	assert_status(audit_verify(dir, key, collect_fn, &c, &r), PNO_STATUS_OK);
	assert_int_equal(r.records, 202);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 50; j++) {
			char rid[32];
			snprintf(rid, sizeof rid, "t%d-%d", i, j);
			assert_string_equal(c.rid[t[i].seqs[j]], rid);
		}
}

/* ---- group commit ---- */

struct gc_io {
	pthread_mutex_t mu;
	long syncs, fail_every, failed;
	int sleep_us;
};
static int gc_sync(void *ud, int fd)
{
	struct gc_io *g = ud;
	pthread_mutex_lock(&g->mu);
	long k = ++g->syncs;
	int fail = g->fail_every > 0 && k % g->fail_every == 0;
	g->failed += fail;
	pthread_mutex_unlock(&g->mu);
	if (g->sleep_us) {
		struct timespec ts = {0, g->sleep_us * 1000L};
		nanosleep(&ts, NULL);
	} else if (fdatasync(fd) != 0) {
		return -1;
	}
	if (fail) {
		errno = EIO;
		return -1;
	}
	return 0;
}

struct gc_thr {
	struct audit_log *l;
	int id, n;
	uint64_t seqs[64];
	int ok[64];
};
static void *gc_main(void *arg)
{
	struct gc_thr *t = arg;
	for (int i = 0; i < t->n; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "g%d-%d", t->id, i);
		struct audit_event e = {.type = AUDIT_EVENT_INFER, .request_id = rid};
		t->ok[i] = audit_append(t->l, &e, &t->seqs[i]) == PNO_STATUS_OK;
	}
	return NULL;
}

/* run T threads x n appends on a log with the given sync hook; returns
 * seconds; checks the records acknowledged are exactly those present */
static double gc_run(const char *dir, const char *key, struct gc_io *g, int T,
		     int n, uint32_t seg_records, int *acked)
{
	struct audit_log *l;
	struct audit_opts o;
	struct audit_io io = {NULL, gc_sync, g};
	static struct gc_thr t[8];
	pthread_t th[8];
	audit_opts_default(&o);
	o.segment_records = seg_records;
	o.io = &io;
	rm_rf(dir);
	long f = g->fail_every;
	g->fail_every = 0;	/* open cleanly */
	assert_status(audit_open(&l, dir, key, &o), PNO_STATUS_OK);
	g->fail_every = f;
	g->syncs = 0;
	double t0 = now_s();
	for (int i = 0; i < T; i++) {
		t[i].l = l;
		t[i].id = i;
		t[i].n = n;
		assert_int_equal(pthread_create(&th[i], NULL, gc_main, &t[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	double dt = now_s() - t0;
	g->fail_every = 0;
	assert_status(audit_close(l), PNO_STATUS_OK);
	assert_status(audit_open(&l, dir, key, NULL), PNO_STATUS_OK);
	assert_status(audit_close(l), PNO_STATUS_OK);
	static struct collect c;
	struct audit_result r;
	memset(&c, 0, sizeof c);
	assert_status(audit_verify(dir, key, collect_fn, &c, &r), PNO_STATUS_OK);
	*acked = 0;
	for (int i = 0; i < T; i++)
		for (int j = 0; j < n; j++) {
			char rid[32];
			int found = 0;
			snprintf(rid, sizeof rid, "g%d-%d", i, j);
			for (uint64_t q = 0; q < c.n; q++)
				if (!strcmp(c.rid[q], rid)) {
					found++;
					if (t[i].ok[j] && q != t[i].seqs[j])
						fail_msg("%s at seq %llu, was told %llu", rid,
							 (unsigned long long)q,
							 (unsigned long long)t[i].seqs[j]);
				}
			if (found != t[i].ok[j])
				fail_msg("record %s: %s", rid, t[i].ok[j]
					 ? "acknowledged but missing"
					 : "refused but present");
			*acked += t[i].ok[j];
		}
	return dt;
}

/* Several threads share syncs (fewer syncs than records, every record
 * durable before its append returns), and a failing sync fails exactly
 * the records it was to cover: the log holds exactly the acknowledged
 * ones. */
static void test_group_commit(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "gc.key");
	fresh_dir(dir, sizeof dir, "gc.log");
	struct gc_io g = {.mu = PTHREAD_MUTEX_INITIALIZER};
	int acked;
	/* real fdatasync: 1 thread, then 4 */
	double t1 = gc_run(dir, key, &g, 1, 40, 100000, &acked);
	long s1 = g.syncs;
	assert_int_equal(acked, 40);
	double t4 = gc_run(dir, key, &g, 4, 40, 100000, &acked);
	long s4 = g.syncs;
	assert_int_equal(acked, 160);
	print_message("group commit, fdatasync: 1 thread 40 records %ld syncs "
		      "%.0f records/s; 4 threads 160 records %ld syncs %.0f "
		      "records/s\n", s1, 40 / t1, s4, 160 / t4);
	assert_true(s1 >= 40);	/* alone, every record waits for its own */
	/* batching, independent of the disk's speed: a 2 ms sync (sleep) */
	g.sleep_us = 2000;
	double ts = gc_run(dir, key, &g, 4, 40, 100000, &acked);
	assert_int_equal(acked, 160);
	print_message("group commit, 2 ms simulated sync: 4 threads 160 records "
		      "%ld syncs %.0f records/s\n", g.syncs, 160 / ts);
	/* without sharing: 160; alternating batches of 1 and 3 give 80 */
	assert_true(g.syncs < 160 * 6 / 10);
	/* failing syncs (every 5th; 300 us each), rotation every 16 */
	g.sleep_us = 300;
	g.fail_every = 5;
	g.failed = 0;
	double tf = gc_run(dir, key, &g, 4, 50, 16, &acked);
	print_message("group commit, every 5th sync failing: %ld syncs, %ld "
		      "failed, %d of 200 records acknowledged, all present, "
		      "the others absent (%.2f s)\n", g.syncs, g.failed, acked, tf);
	assert_true(g.failed > 0);
	assert_true(acked > 0 && acked < 200);
}

/* ---- cost of an append ---- */

static void test_append_cost(void **state)
{
	(void)state;
	char key[1024], dir[1024];
	make_key(key, sizeof key, "cost.key");
	int n = getenv("PNO_SANITIZED") ? 50 : 300;
	for (int sync = 1; sync >= 0; sync--) {
		fresh_dir(dir, sizeof dir, "cost.log");
		struct audit_log *l;
		struct audit_opts o;
		audit_opts_default(&o);
		o.fsync = sync;
		assert_status(audit_open(&l, dir, key, &o), PNO_STATUS_OK);
		double t0 = now_s();
		for (int i = 0; i < n; i++) {
			struct ev_store st;
			struct audit_event e = infer_event(&st, i, 1);
			assert_status(audit_append(l, &e, NULL), PNO_STATUS_OK);
		}
		double dt = now_s() - t0;
		assert_status(audit_close(l), PNO_STATUS_OK);
		print_message("append cost (%s): %.1f us per record (%d records, "
			      "~330-byte JSON) on %s\n",
			      sync ? "fdatasync each" : "no sync", 1e6 * dt / n, n,
			      dir);
	}
}

/* ---- the command line ---- */

static int run_cli(const char *args, const char *out)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s %s >%s 2>&1", PNO_BIN, args, out);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int file_has(const char *path, const char *sub)
{
	static char buf[1 << 16];
	FILE *fp = fopen(path, "rb");
	size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
	if (fp)
		fclose(fp);
	buf[n] = '\0';
	return strstr(buf, sub) != NULL;
}

static void test_cli(void **state)
{
	(void)state;
	char key[1024], dir[1024], args[3000], out[1024];
	snprintf(key, sizeof key, "%s", tu_tmp_path("cli.key"));
	snprintf(out, sizeof out, "%s", tu_tmp_path("cli.out"));
	unlink(key);
	fresh_dir(dir, sizeof dir, "cli.log");
	snprintf(args, sizeof args, "audit keygen --out %s", key);
	assert_int_equal(run_cli(args, out), 0);
	assert_int_equal(run_cli(args, out), 2);	/* refuses to overwrite */
	assert_true(file_has(out, "exists"));
	write_log(dir, key, 20, 1, 8, 0);
	snprintf(args, sizeof args, "audit verify --log %s --key %s", dir, key);
	assert_int_equal(run_cli(args, out), 0);
	assert_true(file_has(out, "verified 22 records in 3 segments"));
	assert_true(file_has(out, "closed cleanly"));
	snprintf(args, sizeof args, "audit show --log %s --key %s", dir, key);
	assert_int_equal(run_cli(args, out), 0);
	assert_true(file_has(out, "\"seq\":21,"));
	assert_true(file_has(out, "\"request_id\":\"req-19\""));
	/* torn tail: exit 0 with the note; --strict: exit 1 */
	char seg[1200];
	snprintf(seg, sizeof seg, "%s/seg-000003.log", dir);
	struct stat sb;
	assert_int_equal(stat(seg, &sb), 0);
	assert_int_equal(truncate(seg, sb.st_size - 5), 0);
	snprintf(args, sizeof args, "audit verify --log %s --key %s", dir, key);
	assert_int_equal(run_cli(args, out), 0);
	assert_true(file_has(out, "torn tail detected: incomplete record at byte"));
	assert_true(file_has(out, "of seg-000003.log"));
	snprintf(args, sizeof args, "audit verify --strict --log %s --key %s", dir, key);
	assert_int_equal(run_cli(args, out), 1);
	/* a flipped byte in segment 2: exit 1 naming the record */
	snprintf(seg, sizeof seg, "%s/seg-000002.log", dir);
	FILE *fp = fopen(seg, "r+b");
	fseek(fp, 300, SEEK_SET);
	int ch = fgetc(fp);
	fseek(fp, 300, SEEK_SET);
	fputc(ch ^ 4, fp);
	fclose(fp);
	snprintf(args, sizeof args, "audit verify --log %s --key %s", dir, key);
	assert_int_equal(run_cli(args, out), 1);
	assert_true(file_has(out, "FAILED at record"));
	assert_true(file_has(out, "seg-000002.log"));
	/* wrong key */
	char key2[1024];
	make_key(key2, sizeof key2, "cli2.key");
	snprintf(args, sizeof args, "audit verify --log %s --key %s", dir, key2);
	assert_int_equal(run_cli(args, out), 1);
	assert_true(file_has(out, "wrong key or not an audit log"));
	/* usage */
	assert_int_equal(run_cli("audit verify", out), 2);
	assert_int_equal(run_cli("audit frobnicate", out), 2);
	assert_int_equal(run_cli("audit --help", out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_invalid_events),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_outsider_edits),
		cmocka_unit_test(test_insider_edits),
		cmocka_unit_test(test_crash),
		cmocka_unit_test(test_io_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_group_commit),
		cmocka_unit_test(test_append_cost),
		cmocka_unit_test(test_cli),
	};
	if (sodium_init() < 0)
		return 1;
	if (getenv("AUDIT_TEST_FILTER"))	/* one test by name, by hand */
		cmocka_set_test_filter(getenv("AUDIT_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
