/* Outbound HTTP: a minimal POST client and a bounded, retrying sender. */
#include "outbound.h"
#include "../internal.h"

#include <sodium.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t ob_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

enum pno_status ob_url_parse(const char *url, struct ob_url *out)
{
	if (!url || !out)
		return pno__errorf(PNO_STATUS_INVALID, "url: NULL argument");
	memset(out, 0, sizeof *out);
	if (!strncasecmp(url, "https://", 8))
		return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": https is "
				   "not supported (send to a local collector "
				   "or relay over http://)", url);
	if (strncasecmp(url, "http://", 7))
		return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": not an "
				   "http:// URL", url);
	const char *h = url + 7, *he, *p;
	if (*h == '[') {
		he = strchr(h, ']');
		if (!he)
			return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": "
					   "unclosed [", url);
		h++;
		p = he + 1;
	} else {
		he = h + strcspn(h, ":/?#");
		p = he;
	}
	size_t hl = (size_t)(he - h);
	if (hl == 0 || hl >= sizeof out->host)
		return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": bad host",
				   url);
	memcpy(out->host, h, hl);
	for (size_t i = 0; i < hl; i++)
		if ((unsigned char)h[i] <= 0x20 || h[i] == '@')
			return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": "
					   "bad host", url);
	out->port = 80;
	if (*p == ':') {
		char *end;
		errno = 0;
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || errno || v < 1 || v > 65535 ||
		    (*end && *end != '/' && *end != '?'))
			return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": "
					   "bad port", url);
		out->port = (int)v;
		p = end;
	}
	if (*p && *p != '/' && *p != '?')
		return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": bad "
				   "path", url);
	size_t pl = strcspn(p, "#");
	if (pl + 2 > sizeof out->path)
		return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": path too "
				   "long", url);
	for (size_t i = 0; i < pl; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return pno__errorf(PNO_STATUS_INVALID, "url \"%.200s\": "
					   "the path needs percent-encoding", url);
	snprintf(out->path, sizeof out->path, "%s%.*s", *p == '/' ? "" : "/",
		 (int)pl, p);
	return PNO_STATUS_OK;
}

/* ---- one POST ---- */

static int remaining_ms(int64_t deadline)
{
	int64_t ms = (deadline - ob_now_ns()) / 1000000;
	return ms < 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
}

static int connect_to(const struct ob_url *u, int64_t deadline)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof port, "%d", u->port);
	if (getaddrinfo(u->host, port, &hints, &res) != 0)
		return -1;
	int fd = -1;
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC |
			    SOCK_NONBLOCK, a->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			struct pollfd p = {fd, POLLOUT, 0};
			int err = 0;
			socklen_t el = sizeof err;
			if (poll(&p, 1, remaining_ms(deadline)) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
			    err == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		struct pollfd pf = {fd, POLLOUT, 0};
		if (poll(&pf, 1, remaining_ms(deadline)) != 1)
			return -1;
	}
	return 0;
}

/* the head of the answer: status and Retry-After */
static void read_head(int fd, int64_t deadline, struct retry_outcome *o)
{
	char buf[8192];
	size_t n = 0;
	for (;;) {
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, remaining_ms(deadline)) != 1)
			break;
		ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		buf[n] = 0;
		if (strstr(buf, "\r\n\r\n") || n == sizeof buf - 1)
			break;
	}
	buf[n] = 0;
	int st;
	if (n < 12 || strncmp(buf, "HTTP/1.", 7) ||
	    sscanf(buf + 9, "%3d", &st) != 1 || st < 100 || st > 599) {
		o->transport_error = 1;
		return;
	}
	o->http_status = st;
	for (char *l = strstr(buf, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, "Retry-After:", 12))
			continue;
		char v[64];
		const char *s = l + 14;
		while (*s == ' ' || *s == '\t')
			s++;
		size_t k = strcspn(s, "\r\n");
		snprintf(v, sizeof v, "%.*s", (int)(k < 63 ? k : 63), s);
		while (k && (v[k - 1] == ' ' || v[k - 1] == '\t'))
			v[--k] = 0;
		int64_t ns;
		if (retry_after_parse(v, (int64_t)time(NULL), &ns) ==
		    PNO_STATUS_OK)
			o->retry_after_ns = ns;
		break;
	}
}

void ob_post(const struct ob_url *u, const char *content_type,
	     const char *body, size_t len, int timeout_ms,
	     struct retry_outcome *o)
{
	o->http_status = 0;
	o->transport_error = 0;
	o->retry_after_ns = -1;
	int64_t deadline = ob_now_ns() + (int64_t)timeout_ms * 1000000;
	int fd = connect_to(u, deadline);
	if (fd < 0) {
		o->transport_error = 1;
		return;
	}
	char head[1600];
	int hn = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s%s%s:"
			  "%d\r\nUser-Agent: pno/" PNO_VERSION_STRING "\r\n"
			  "Content-Type: %s\r\nContent-Length: %zu\r\n"
			  "Connection: close\r\n\r\n", u->path,
			  strchr(u->host, ':') ? "[" : "", u->host,
			  strchr(u->host, ':') ? "]" : "", u->port,
			  content_type, len);
	if (hn < 0 || (size_t)hn >= sizeof head ||
	    send_all(fd, head, (size_t)hn, deadline) ||
	    send_all(fd, body, len, deadline))
		o->transport_error = 1;
	else
		read_head(fd, deadline, o);
	close(fd);
}

/* ---- the retry loop ---- */

struct deliver_env {
	pthread_mutex_t *mu;
	pthread_cond_t *cv;
	const _Atomic int *stop;
	const struct ob_url *u;
	const char *ctype, *body;
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
	ob_post(e->u, e->ctype, e->body, e->len, e->timeout_ms, o);
}

int ob_deliver(const struct ob_url *u, const char *content_type,
	       const char *body, size_t len, int timeout_ms,
	       const struct retry_policy *p, struct retry_budget *b,
	       struct retry_rng *rng, pthread_mutex_t *mu, pthread_cond_t *cv,
	       const _Atomic int *stop, int *retries)
{
	struct deliver_env e = {mu, cv, stop, u, content_type, body, len,
				timeout_ms};
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
	char ctype[64];
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
		int ok = ob_deliver(&u, s->ctype, s->work, len, s->timeout_ms,
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
	snprintf(s->ctype, sizeof s->ctype, "%s", content_type);
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
	if ((st = retry_budget_init(&s->budget, &bc, ob_now_ns())))
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
