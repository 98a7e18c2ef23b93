/* The server's side of the audit log (docs/serve/audit.md): open it at
 * start, one record per audited answer or event, close it at shutdown.
 * The record of an inference is written before its answer is sent; the
 * caller refuses the answer when sv_audit_request fails (fail closed). */
#include "serve_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* printable ASCII copy ('?' for anything else): a field the log refused
 * as invalid UTF-8 is written this way rather than lost */
static void ascii(char *out, size_t size, const char *s)
{
	size_t o = 0;
	for (; s && *s && o + 1 < size; s++)
		out[o++] = (unsigned char)*s < 0x20 ||
			   (unsigned char)*s > 0x7e ? '?' : *s;
	out[o] = '\0';
}

static int append(struct server *srv, struct audit_event *ev)
{
	enum pno_status s = audit_append(srv->audit, ev, NULL);
	if (s == PNO_STATUS_INVALID) {
		/* a client-chosen id or message that is not UTF-8 */
		char rid[AUDIT_MAX_NAME + 1], det[AUDIT_MAX_DETAIL + 1];
		ascii(rid, sizeof rid, ev->request_id);
		ascii(det, sizeof det, ev->detail);
		ev->request_id = rid;
		ev->detail = det;
		s = audit_append(srv->audit, ev, NULL);
	}
	if (s == PNO_STATUS_OK) {
		prom_inc(srv->met.audit_records, NULL, 1);
		return 0;
	}
	char esc[2 * SV_ERR_MAX], id[2 * AUDIT_MAX_NAME + 8];
	sv_json_escape(esc, sizeof esc, pno_last_error());
	sv_json_escape(id, sizeof id, ev->request_id ? ev->request_id : "");
	prom_inc(srv->met.audit_fail, NULL, 1);
	sv_log(srv, PNO_LOG_LEVEL_ERROR, "audit_failed",
	       ",\"audit_event\":\"%s\",\"request_id\":\"%s\",\"reason\":"
	       "\"%s\"", audit_event_name(ev->type), id, esc);
	return -1;
}

int sv_audit_request(struct req *r, enum audit_event_type t,
		     const char *client, int status, const char *detail,
		     const void *out, size_t out_len)
{
	struct server *srv = r->srv;
	if (!srv->audit)
		return 0;
	char rid[32], id[AUDIT_MAX_NAME + 1], in_d[AUDIT_DIGEST_HEX + 1];
	char out_d[AUDIT_DIGEST_HEX + 1], det[AUDIT_MAX_DETAIL + 1];
	snprintf(rid, sizeof rid, "r%" PRIu64, r->rid);
	/* the client's id when it gave one (the one it can look up), else
	 * the server's request number; the number is always in the detail */
	snprintf(id, sizeof id, "%s", r->has_id ? r->id : rid);
	struct audit_event ev = {
		.time_ns = realtime_ns(), .type = t,
		.actor = r->principal, .client = client, .request_id = id,
		.model = r->model, .version = r->version, .status = status,
	};
	if (t == AUDIT_EVENT_INFER && r->mv && r->B > 0 && status == 200) {
		/* the input as the model received it: (B, Cin, P) FP32,
		 * little-endian (an FP32 binary input's bytes as sent) */
		size_t n = (size_t)r->B * (size_t)r->mv->model.in_ch *
			   (size_t)r->mv->P;
		audit_digest_hex(in_d, r->x, n * sizeof *r->x);
		audit_digest_hex(out_d, out, out_len);
		ev.input_digest = in_d;
		ev.output_digest = out_d;
		snprintf(det, sizeof det, "request %s; items %d; samples %d; "
			 "output %zu bytes", rid, r->B, r->S, out_len);
	} else {
		snprintf(det, sizeof det, "request %s%s%s", rid,
			 detail && detail[0] ? "; " : "", detail ? detail : "");
	}
	ev.detail = det;
	return append(srv, &ev);
}

int sv_audit_event(struct server *srv, enum audit_event_type t,
		   const char *actor, int status, const char *detail)
{
	if (!srv->audit)
		return 0;
	struct audit_event ev = {
		.time_ns = realtime_ns(), .type = t, .actor = actor,
		.status = status, .detail = detail,
	};
	return append(srv, &ev);
}

int sv_audit_open(struct server *srv)
{
	const struct serve_config *c = &srv->opts.cfg;
	if (!c->audit_dir[0])
		return 0;
	struct audit_opts o;
	audit_opts_default(&o);
	o.fsync = c->audit_fsync;
	if (audit_open(&srv->audit, c->audit_dir, c->audit_key_file, &o) !=
	    PNO_STATUS_OK) {
		char esc[2 * SV_ERR_MAX];
		sv_json_escape(esc, sizeof esc, pno_last_error());
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "start_failed",
		       ",\"reason\":\"audit log %s: %s\"", c->audit_dir, esc);
		fprintf(stderr, "pno serve: cannot open the audit log %s (key "
			"%s): %s\n", c->audit_dir, c->audit_key_file,
			pno_last_error());
		srv->audit = NULL;
		return -1;
	}
	sv_log(srv, PNO_LOG_LEVEL_INFO, "audit_open",
	       ",\"dir\":\"%s\",\"fsync\":%s,\"next_record\":%" PRIu64,
	       c->audit_dir, c->audit_fsync ? "true" : "false",
	       audit_next_seq(srv->audit));
	return 0;
}

void sv_audit_close(struct server *srv)
{
	if (!srv->audit)
		return;
	uint64_t n = audit_next_seq(srv->audit);
	if (audit_close(srv->audit) != PNO_STATUS_OK) {
		char esc[2 * SV_ERR_MAX];
		sv_json_escape(esc, sizeof esc, pno_last_error());
		sv_log(srv, PNO_LOG_LEVEL_ERROR, "audit_close_failed",
		       ",\"reason\":\"%s\"", esc);
	} else {
		sv_log(srv, PNO_LOG_LEVEL_INFO, "audit_closed",
		       ",\"records\":%" PRIu64, n + 1);
	}
	srv->audit = NULL;
}
