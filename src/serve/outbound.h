/*
 * What the server sends out (alert webhooks, OTLP trace export): POSTs
 * through libcurl and a sender, a bounded queue of fixed-size messages
 * drained by one thread that posts each with retries.
 *
 * URLs are http:// or https:// (libcurl does TLS, verifying the peer
 * against the system's CA store), parsed and checked when configured with
 * libcurl's URL API, so a bad one is refused at start or reload with the
 * reason. Each sending thread owns one ob_client, a libcurl easy handle
 * kept across posts so the connection to the collector is reused
 * (keep-alive). A post has one timeout for the whole exchange (connect,
 * TLS, send, answer); the answer is its status and Retry-After, the body
 * is discarded. curl_global_init must have run before the first
 * ob_client_init (serve_run does it before any thread starts).
 *
 * The sender never blocks its callers: ob_sender_push copies the message
 * into a free slot or drops it (counted) when the queue is full. Its thread
 * posts messages in order with retry_run (exponential backoff, full jitter,
 * a retry budget; retry.h); a message still failing after its tries is
 * dropped and counted. At ob_sender_free the queue is sent once more
 * without retries, then the thread ends.
 */
#ifndef PNO_SERVE_OUTBOUND_H
#define PNO_SERVE_OUTBOUND_H

#include "retry.h"

#include <curl/curl.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct ob_url {
	char url[1024];			/* normalized, no fragment: for libcurl */
	char host[256];			/* an IPv6 address without its [] */
	int port;			/* the scheme's default if not given */
	int tls;			/* https */
	char path[1024];		/* with the query, "/" at least */
};

/* http[s]://host[:port][/path][?query][#fragment]; host a name, IPv4 or
 * [IPv6]. INVALID with the reason: not a URL, another scheme, no host,
 * port 0, credentials in the URL (they would reach the logs), a path that
 * is not percent-encoded ASCII, longer than the fields. */
enum pno_status ob_url_parse(const char *url, struct ob_url *out);

/* One thread's HTTP client: a libcurl easy handle set up for POSTs of
 * content_type, reused across posts. */
struct ob_client {
	CURL *h;
	struct curl_slist *headers;
};
/* INVALID (arguments), NOMEM (libcurl could not make a handle). */
enum pno_status ob_client_init(struct ob_client *c, const char *content_type);
void ob_client_free(struct ob_client *c);	/* safe on zeroed */

/* One POST; the outcome as retry.h wants it: transport_error for a
 * failed connect/TLS/send/receive, a timeout or a garbled answer, else
 * http_status and retry_after_ns (-1 none or unreadable). */
void ob_post(struct ob_client *c, const struct ob_url *u, const char *body,
	     size_t len, int timeout_ms, struct retry_outcome *o);

struct ob_counters {
	_Atomic uint64_t sent;		/* messages delivered (2xx/3xx) */
	_Atomic uint64_t dropped_full;	/* refused by a full queue */
	_Atomic uint64_t dropped_failed;	/* failed after their tries */
	_Atomic uint64_t retries;	/* extra tries */
};

struct ob_sender;

/* slots messages of up to slot_bytes each; url may be changed later.
 * INVALID (url, sizes), NOMEM. */
enum pno_status ob_sender_new(struct ob_sender **out, const char *url,
			      const char *content_type, int slots,
			      size_t slot_bytes, int timeout_ms,
			      const struct retry_policy *policy);
void ob_sender_free(struct ob_sender *s);	/* NULL safe */
/* 0 queued; -1 dropped (queue full or message larger than a slot) */
int ob_sender_push(struct ob_sender *s, const char *msg, size_t len);
/* a new destination for the messages still to send (INVALID: kept) */
enum pno_status ob_sender_set_url(struct ob_sender *s, const char *url);
const struct ob_counters *ob_sender_counters(const struct ob_sender *s);

/* The retry loop for one payload, shared with the trace exporter: posts
 * through c until success or retry_decide says stop; sleeps end early
 * when *stop becomes nonzero (signalled on cv under mu; cv must time its
 * waits on CLOCK_MONOTONIC). 1 delivered, 0 not; *retries (may be NULL)
 * gets the extra tries. */
int ob_deliver(struct ob_client *c, const struct ob_url *u,
	       const char *body, size_t len, int timeout_ms,
	       const struct retry_policy *p, struct retry_budget *b,
	       struct retry_rng *rng, pthread_mutex_t *mu, pthread_cond_t *cv,
	       const _Atomic int *stop, int *retries);

int64_t ob_now_ns(void);	/* CLOCK_MONOTONIC nanoseconds */

#endif
