/* Outbound HTTP: POSTs through libcurl and a bounded, retrying sender. */
#include "outbound.h"
#include "../internal.h"

#include <sodium.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t ob_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- URLs ---- */

/* part of h into buf (n bytes); "" when absent. 0 ok, -1 too long or
 * out of memory, 1 absent */
static int url_part(CURLU *h, CURLUPart what, unsigned flags, char *buf,
		    size_t n)
{
	char *v = NULL;
	buf[0] = 0;
	CURLUcode rc = curl_url_get(h, what, &v, flags);
	if (rc == CURLUE_OUT_OF_MEMORY)
		return -1;
	if (rc != CURLUE_OK || !v)
		return 1;
	size_t k = strlen(v);
	int ret = k < n ? 0 : -1;
	if (!ret)
		memcpy(buf, v, k + 1);
	curl_free(v);
	return ret;
}

enum pno_status ob_url_parse(const char *url, struct ob_url *out)
{
	if (!url || !out)
		return pno__errorf(PNO_STATUS_INVALID, "url: NULL argument");
	memset(out, 0, sizeof *out);
	CURLU *h = curl_url();
	if (!h)
		return pno__errorf(PNO_STATUS_NOMEM, "url: out of memory");
	enum pno_status st = PNO_STATUS_INVALID;
	char scheme[16], port[8], path[1024], query[1024], user[8];
	const char *why = NULL;
	CURLUcode rc = curl_url_set(h, CURLUPART_URL, url, 0);
	if (rc) {
		why = curl_url_strerror(rc);
		goto done;
	}
	if (url_part(h, CURLUPART_SCHEME, 0, scheme, sizeof scheme) ||
	    (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
		pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": the scheme "
			    "\"%s\" is not supported (http:// or https://)",
			    url, scheme);
		goto out;
	}
	out->tls = !strcmp(scheme, "https");
	int r = url_part(h, CURLUPART_HOST, 0, out->host, sizeof out->host);
	if (r) {
		why = r > 0 ? "no host" : "host too long";
		goto done;
	}
	if (out->host[0] == '[') {	/* IPv6: the address alone */
		size_t k = strlen(out->host);
		memmove(out->host, out->host + 1, k - 2);
		out->host[k - 2] = 0;
	}
	if (url_part(h, CURLUPART_PORT, CURLU_DEFAULT_PORT, port, sizeof port) ||
	    (out->port = atoi(port)) < 1 || out->port > 65535) {
		why = "bad port (1 to 65535)";
		goto done;
	}
	if (url_part(h, CURLUPART_USER, 0, user, sizeof user) != 1 ||
	    url_part(h, CURLUPART_PASSWORD, 0, user, sizeof user) != 1) {
		why = "credentials in the URL are not supported (they would "
		      "be logged)";
		goto done;
	}
	if (url_part(h, CURLUPART_PATH, 0, path, sizeof path) < 0 ||
	    url_part(h, CURLUPART_QUERY, 0, query, sizeof query) < 0 ||
	    snprintf(out->path, sizeof out->path, "%s%s%s", path[0] ? path :
		     "/", query[0] ? "?" : "", query) >=
		    (int)sizeof out->path) {
		why = "path too long";
		goto done;
	}
	for (const char *c = out->path; *c; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
			why = "the path needs percent-encoding";
			goto done;
		}
	/* the fragment is never sent */
	if (curl_url_set(h, CURLUPART_FRAGMENT, NULL, 0) ||
	    url_part(h, CURLUPART_URL, 0, out->url, sizeof out->url)) {
		why = "too long";
		goto done;
	}
	st = PNO_STATUS_OK;
done:
	if (why)
		pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": %s", url, why);
out:
	curl_url_cleanup(h);
	if (st)
		memset(out, 0, sizeof *out);
	return st;
}

/* ---- one POST ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p, (void)ud;
	return size * n;
}

enum pno_status ob_client_init(struct ob_client *c, const char *content_type)
{
	if (!c || !content_type || !content_type[0] ||
	    strlen(content_type) > 200 || strpbrk(content_type, "\r\n"))
		return pno__errorf(PNO_STATUS_INVALID, "http client: bad "
				   "content type");
	memset(c, 0, sizeof *c);
	char ct[256];
	snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
	/* "Expect:" off: no 100-continue round trip before large bodies */
	struct curl_slist *l = curl_slist_append(NULL, ct), *l2 = NULL;
	if (l && !(l2 = curl_slist_append(l, "Expect:")))
		curl_slist_free_all(l);
	c->headers = l2;
	c->h = curl_easy_init();
	if (!c->h || !c->headers) {
		ob_client_free(c);
		return pno__errorf(PNO_STATUS_NOMEM, "http client: libcurl "
				   "out of memory");
	}
	CURL *h = c->h;
	CURLcode rc = CURLE_OK;
#define SET(opt, v)                                                           \
	if (rc == CURLE_OK)                                                   \
		rc = curl_easy_setopt(h, opt, v)
	SET(CURLOPT_NOSIGNAL, 1L);	/* no SIGALRM for timeouts in threads */
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_HTTPHEADER, c->headers);
	SET(CURLOPT_USERAGENT, "pno/" PNO_VERSION_STRING);
	SET(CURLOPT_WRITEFUNCTION, discard);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
#undef SET
	if (rc != CURLE_OK) {
		ob_client_free(c);
		return pno__errorf(PNO_STATUS_INTERNAL, "http client: libcurl: "
				   "%s", curl_easy_strerror(rc));
	}
	return PNO_STATUS_OK;
}

void ob_client_free(struct ob_client *c)
{
	if (!c)
		return;
	if (c->h)
		curl_easy_cleanup(c->h);
	curl_slist_free_all(c->headers);
	c->h = NULL;
	c->headers = NULL;
}

void ob_post(struct ob_client *c, const struct ob_url *u, const char *body,
	     size_t len, int timeout_ms, struct retry_outcome *o)
{
	o->http_status = 0;
	o->transport_error = 1;
	o->retry_after_ns = -1;
	CURL *h = c->h;
	long ms = timeout_ms > 0 ? timeout_ms : 1;
	if (curl_easy_setopt(h, CURLOPT_URL, u->url) ||
	    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body) ||
	    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms) ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms) ||
	    curl_easy_perform(h) != CURLE_OK)
		return;
	long st = 0;
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st) != CURLE_OK ||
	    st < 100 || st > 599)
		return;
	o->transport_error = 0;
	o->http_status = (int)st;
	/* the header itself, not CURLINFO_RETRY_AFTER, which reads both
	 * "0" and no header as 0 and anything unparseable as 0 too */
	struct curl_header *ra;
	int64_t ns;
	if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &ra) ==
		    CURLHE_OK &&
	    retry_after_parse(ra->value, (int64_t)time(NULL), &ns) ==
		    PNO_STATUS_OK)
		o->retry_after_ns = ns;
}

/* ---- the retry loop ---- */

struct deliver_env {
	pthread_mutex_t *mu;
	pthread_cond_t *cv;
	const _Atomic int *stop;
	struct ob_client *c;
	const struct ob_url *u;
	const char *body;
	size_t len;
	int timeout_ms;
};

static int64_t env_now(void *ud)
{
	(void)ud;
	return ob_now_ns();
}

static void env_sleep(void *ud, int64_t ns)
{
	struct deliver_env *e = ud;
	struct timespec ts;
	int64_t t = ob_now_ns() + ns;
	ts.tv_sec = (time_t)(t / 1000000000);
	ts.tv_nsec = (long)(t % 1000000000);
	pthread_mutex_lock(e->mu);
	while (!atomic_load(e->stop) && ob_now_ns() < t)
		if (pthread_cond_timedwait(e->cv, e->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(e->mu);
}

static void env_call(void *ud, int attempt, struct retry_outcome *o)
{
	struct deliver_env *e = ud;
	if (attempt > 0 && atomic_load(e->stop)) {
		/* stopping: no more tries (0 is not retryable) */
		o->http_status = 0;
		o->transport_error = 0;
		return;
	}
	ob_post(e->c, e->u, e->body, e->len, e->timeout_ms, o);
}

int ob_deliver(struct ob_client *c, const struct ob_url *u,
	       const char *body, size_t len, int timeout_ms,
	       const struct retry_policy *p, struct retry_budget *b,
	       struct retry_rng *rng, pthread_mutex_t *mu, pthread_cond_t *cv,
	       const _Atomic int *stop, int *retries)
{
	struct deliver_env e = {mu, cv, stop, c, u, body, len, timeout_ms};
	struct retry_env env = {env_now, env_sleep, &e};
	struct retry_policy one = *p;
	int attempts = 0;
	if (atomic_load(stop))
		one.max_attempts = 1;
	enum retry_verdict v = retry_run(&one, b, rng, &env, 0, env_call, &e,
					 &attempts, NULL);
	if (retries)
		*retries = attempts - 1;
	return v == RETRY_SUCCEEDED;
}

/* ---- the sender ---- */

struct ob_sender {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *slots;			/* (cap, slot_bytes) */
	size_t *lens;
	size_t slot_bytes;
	int cap, head, count;
	_Atomic int stop;
	struct ob_url url;
	struct ob_client http;		/* used by the thread only */
	int timeout_ms;
	struct retry_policy policy;
	struct retry_budget budget;
	struct retry_rng rng;
	struct ob_counters c;
	pthread_t th;
	int started;
	char *work;			/* (slot_bytes) the message being sent */
};

static void *sender_main(void *arg)
{
	struct ob_sender *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (s->count == 0 && !atomic_load(&s->stop))
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->count == 0)
			break;
		size_t len = s->lens[s->head];
		memcpy(s->work, s->slots + (size_t)s->head * s->slot_bytes, len);
		s->head = (s->head + 1) % s->cap;
		s->count--;
		struct ob_url u = s->url;
		pthread_mutex_unlock(&s->mu);
		int retries = 0;
		int ok = ob_deliver(&s->http, &u, s->work, len, s->timeout_ms,
				    &s->policy, &s->budget, &s->rng, &s->mu,
				    &s->cv, &s->stop, &retries);
		atomic_fetch_add(&s->c.retries, (uint64_t)retries);
		atomic_fetch_add(ok ? &s->c.sent : &s->c.dropped_failed, 1);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

enum pno_status ob_sender_new(struct ob_sender **out, const char *url,
			      const char *content_type, int slots,
			      size_t slot_bytes, int timeout_ms,
			      const struct retry_policy *policy)
{
	if (!out || !content_type || slots < 1 || slots > 1000000 ||
	    slot_bytes < 1 || slot_bytes > (64u << 20) || timeout_ms < 1 ||
	    !policy)
		return pno__errorf(PNO_STATUS_INVALID, "sender: bad arguments");
	*out = NULL;
	enum pno_status st;
	struct ob_url u;
	if ((st = ob_url_parse(url, &u)) || (st = retry_policy_check(policy)))
		return st;
	struct ob_sender *s = pno_calloc(1, sizeof *s);
	if (!s)
		return pno__errorf(PNO_STATUS_NOMEM, "sender: out of memory");
	s->url = u;
	s->cap = slots;
	s->slot_bytes = slot_bytes;
	s->timeout_ms = timeout_ms;
	s->policy = *policy;
	struct retry_budget_config bc = retry_budget_config_default();
	s->rng.seed = (uint64_t)randombytes_random() << 32 | randombytes_random();
	s->slots = pno_malloc((size_t)slots * slot_bytes);
	s->lens = pno_calloc((size_t)slots, sizeof *s->lens);
	s->work = pno_malloc(slot_bytes);
	if (!s->slots || !s->lens || !s->work) {
		st = pno__errorf(PNO_STATUS_NOMEM, "sender: out of memory for %d "
				 "slots of %zu bytes", slots, slot_bytes);
		goto fail;
	}
	if ((st = ob_client_init(&s->http, content_type)) ||
	    (st = retry_budget_init(&s->budget, &bc, ob_now_ns())))
		goto fail;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&s->th, NULL, sender_main, s)) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		retry_budget_free(&s->budget);
		st = pno__errorf(PNO_STATUS_INTERNAL, "sender: cannot start a "
				 "thread");
		goto fail;
	}
	s->started = 1;
	*out = s;
	return PNO_STATUS_OK;
fail:
	ob_client_free(&s->http);
	pno_free(s->slots);
	pno_free(s->lens);
	pno_free(s->work);
	pno_free(s);
	return st;
}

void ob_sender_free(struct ob_sender *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->mu);
		atomic_store(&s->stop, 1);
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->th, NULL);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		retry_budget_free(&s->budget);
	}
	ob_client_free(&s->http);
	pno_free(s->slots);
	pno_free(s->lens);
	pno_free(s->work);
	pno_free(s);
}

int ob_sender_push(struct ob_sender *s, const char *msg, size_t len)
{
	if (len > s->slot_bytes) {
		atomic_fetch_add(&s->c.dropped_full, 1);
		return -1;
	}
	pthread_mutex_lock(&s->mu);
	if (s->count == s->cap || atomic_load(&s->stop)) {
		pthread_mutex_unlock(&s->mu);
		atomic_fetch_add(&s->c.dropped_full, 1);
		return -1;
	}
	int k = (s->head + s->count) % s->cap;
	memcpy(s->slots + (size_t)k * s->slot_bytes, msg, len);
	s->lens[k] = len;
	s->count++;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

enum pno_status ob_sender_set_url(struct ob_sender *s, const char *url)
{
	struct ob_url u;
	enum pno_status st = ob_url_parse(url, &u);
	if (st)
		return st;
	pthread_mutex_lock(&s->mu);
	s->url = u;
	pthread_mutex_unlock(&s->mu);
	return PNO_STATUS_OK;
}

const struct ob_counters *ob_sender_counters(const struct ob_sender *s)
{
	return &s->c;
}
