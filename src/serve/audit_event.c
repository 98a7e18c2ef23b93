/* Audit records as JSON: field validation (lengths, UTF-8, digests) and
 * the encoder, which writes into the caller's buffer and allocates
 * nothing. */
#include "audit_internal.h"

#include "../internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>


/* Valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF)? */
static int utf8_ok(const unsigned char *s)
{
	while (*s) {
		unsigned c = *s, n, cp;
		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		for (unsigned i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		s += n + 1;
	}
	return 1;
}

struct jbuf {
	char *p;
	size_t n, cap;
};

static void jraw(struct jbuf *b, const char *s, size_t n)
{
	/* capacity is sized from the field limits: this cannot overflow,
	 * but stay safe if it ever did */
	if (n > b->cap - b->n)
		n = b->cap - b->n;
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void jstr(struct jbuf *b, const char *key, const char *v)
{
	char esc[8];
	if (!v || !*v)
		return;
	jraw(b, ",\"", 2);
	jraw(b, key, strlen(key));
	jraw(b, "\":\"", 3);
	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*s;
			jraw(b, esc, 2);
		} else if (*s < 0x20 || *s == 0x7f) {
			snprintf(esc, sizeof esc, "\\u%04x", *s);
			jraw(b, esc, 6);
		} else {
			jraw(b, (const char *)s, 1);
		}
	}
	jraw(b, "\"", 1);
}

static enum pno_status check_str(const char *name, const char *v, size_t max)
{
	if (!v)
		return PNO_STATUS_OK;
	size_t n = strnlen(v, max + 1);
	if (n > max)
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit record: %s longer than %zu bytes", name, max);
	if (!utf8_ok((const unsigned char *)v))
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit record: %s is not valid UTF-8", name);
	return PNO_STATUS_OK;
}

static enum pno_status check_digest(const char *name, const char *v)
{
	if (!v || !*v)
		return PNO_STATUS_OK;
	size_t n = strnlen(v, AUDIT_DIGEST_HEX + 1);
	int ok = n == AUDIT_DIGEST_HEX;
	for (size_t i = 0; ok && i < n; i++)
		ok = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
	if (!ok)
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit record: %s must be %d lower-case hex "
				   "digits (BLAKE2b-256)", name, AUDIT_DIGEST_HEX);
	return PNO_STATUS_OK;
}

enum pno_status audit__event_check(const struct audit_event *ev)
{
	enum pno_status s;
	if ((int)ev->type < 0 || ev->type >= AUDIT_EVENT_COUNT)
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit record: unknown event type %d", (int)ev->type);
	if (ev->time_ns < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit record: negative time %" PRId64, ev->time_ns);
	if (ev->status < 0 || ev->status > 999)
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit record: status %d out of range 0..999",
				   ev->status);
	if ((s = check_str("actor", ev->actor, AUDIT_MAX_NAME)) ||
	    (s = check_str("client", ev->client, AUDIT_MAX_NAME)) ||
	    (s = check_str("request_id", ev->request_id, AUDIT_MAX_NAME)) ||
	    (s = check_str("model", ev->model, AUDIT_MAX_NAME)) ||
	    (s = check_str("version", ev->version, AUDIT_MAX_NAME)) ||
	    (s = check_str("detail", ev->detail, AUDIT_MAX_DETAIL)) ||
	    (s = check_digest("input_digest", ev->input_digest)) ||
	    (s = check_digest("output_digest", ev->output_digest)))
		return s;
	return PNO_STATUS_OK;
}

size_t audit__event_json(char *out, size_t cap, const struct audit_event *ev,
			 int64_t t)
{
	struct jbuf b = {out, 0, cap};
	char num[96];
	struct tm tm;
	time_t sec = (time_t)(t / 1000000000);
	gmtime_r(&sec, &tm);
	snprintf(num, sizeof num,
		 "{\"time_ns\":%" PRId64 ",\"time\":\"%04d-%02d-%02dT%02d:%02d:"
		 "%02d.%09" PRId64 "Z\"", t, tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, t % 1000000000);
	jraw(&b, num, strlen(num));
	jstr(&b, "event", audit_event_name(ev->type));
	jstr(&b, "actor", ev->actor);
	jstr(&b, "client", ev->client);
	jstr(&b, "request_id", ev->request_id);
	jstr(&b, "model", ev->model);
	jstr(&b, "version", ev->version);
	jstr(&b, "input_digest", ev->input_digest);
	jstr(&b, "output_digest", ev->output_digest);
	if (ev->status) {
		snprintf(num, sizeof num, ",\"status\":%d", ev->status);
		jraw(&b, num, strlen(num));
	}
	jstr(&b, "detail", ev->detail);
	jraw(&b, "}", 1);
	return b.n;
}
