/* Retries: full-jitter backoff, the retry budget, Retry-After. */
#include "retry.h"
#include "../internal.h"

#include <math.h>
#include <string.h>

struct retry_policy retry_policy_default(void)
{
	struct retry_policy p = {
		.max_attempts = 4,
		.base_ns = 100 * (int64_t)1000000,
		.cap_ns = 10 * (int64_t)1000000000,
		.max_retry_after_ns = 60 * (int64_t)1000000000,
	};
	return p;
}

enum pno_status retry_policy_check(const struct retry_policy *p)
{
	if (!p)
		return pno__errorf(PNO_STATUS_INVALID, "retry: NULL policy");
	if (p->max_attempts < 1 || p->max_attempts > 100)
		return pno__errorf(PNO_STATUS_INVALID,
				   "retry: max_attempts %d not in [1, 100]",
				   p->max_attempts);
	if (p->base_ns <= 0 || p->cap_ns < p->base_ns)
		return pno__errorf(PNO_STATUS_INVALID,
				   "retry: need 0 < base_ns (%lld) <= cap_ns (%lld)",
				   (long long)p->base_ns, (long long)p->cap_ns);
	if (p->max_retry_after_ns < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "retry: max_retry_after_ns %lld < 0",
				   (long long)p->max_retry_after_ns);
	return PNO_STATUS_OK;
}

uint64_t retry_rng_next(struct retry_rng *r)
{
	return pno_rng_u64(r->seed, r->stream, r->counter++);
}

int64_t retry_backoff_ns(const struct retry_policy *p, int attempt, uint64_t r)
{
	int64_t bound = p->cap_ns;
	if (attempt < 0)
		attempt = 0;
	/* base * 2^attempt without overflow: stop doubling at the cap */
	if (attempt < 62 && p->base_ns <= (p->cap_ns >> attempt))
		bound = p->base_ns << attempt;
	/* floor(r / 2^64 * (bound + 1)) in 128 bits: exact and in [0, bound] */
	unsigned __int128 x = (unsigned __int128)r * (uint64_t)(bound + 1);
	return (int64_t)(x >> 64);
}

int retry_retryable(int http_status, int transport_error)
{
	if (transport_error)
		return 1;
	return http_status == 429 || http_status == 502 ||
	       http_status == 503 || http_status == 504;
}

/* ---- Retry-After ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 1;
}

enum pno_status retry_after_parse(const char *v, int64_t now_unix_s,
				  int64_t *ns)
{
	static const char *const wk[7] = {"Mon", "Tue", "Wed", "Thu", "Fri",
					  "Sat", "Sun"};
	static const char *const mon[12] = {"Jan", "Feb", "Mar", "Apr", "May",
					    "Jun", "Jul", "Aug", "Sep", "Oct",
					    "Nov", "Dec"};
	if (!v || !ns)
		return pno__errorf(PNO_STATUS_INVALID, "Retry-After: NULL argument");
	size_t n = strlen(v);
	if (n > 0 && n <= 10 && strspn(v, "0123456789") == n) {
		int64_t s = 0;
		for (size_t i = 0; i < n; i++)
			s = s * 10 + (v[i] - '0');
		if (s > 1000000000)
			goto bad;
		*ns = s * 1000000000;
		return PNO_STATUS_OK;
	}
	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", 29 characters */
	int d, y, hh, mm, ss, m = -1, w = -1;
	if (n != 29 || v[3] != ',' || v[4] != ' ' || v[7] != ' ' ||
	    v[11] != ' ' || v[16] != ' ' || v[19] != ':' || v[22] != ':' ||
	    strcmp(v + 25, " GMT"))
		goto bad;
	for (int i = 0; i < 7; i++)
		if (!strncmp(v, wk[i], 3))
			w = i;
	for (int i = 0; i < 12; i++)
		if (!strncmp(v + 8, mon[i], 3))
			m = i + 1;
	if (w < 0 || m < 0 || !digits(v + 5, 2, &d) || !digits(v + 12, 4, &y) ||
	    !digits(v + 17, 2, &hh) || !digits(v + 20, 2, &mm) ||
	    !digits(v + 23, 2, &ss) || d < 1 || d > 31 || hh > 23 || mm > 59 ||
	    ss > 60)
		goto bad;
	int64_t t = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
	*ns = t > now_unix_s ? (t - now_unix_s) * 1000000000 : 0;
	return PNO_STATUS_OK;
bad:
	return pno__errorf(PNO_STATUS_INVALID,
			   "Retry-After \"%.40s\" is neither delta-seconds nor an IMF-fixdate",
			   v);
}

/* ---- budget ---- */

struct retry_budget_config retry_budget_config_default(void)
{
	struct retry_budget_config c = {
		.ttl_ns = 10 * (int64_t)1000000000,
		.ratio = 0.2,
		.min_per_sec = 10,
	};
	return c;
}

enum pno_status retry_budget_init(struct retry_budget *b,
				  const struct retry_budget_config *c,
				  int64_t now_ns)
{
	if (!b || !c)
		return pno__errorf(PNO_STATUS_INVALID, "retry budget: NULL argument");
	memset(b, 0, sizeof *b);
	if (c->ttl_ns < RETRY_BUDGET_SLOTS)
		return pno__errorf(PNO_STATUS_INVALID,
				   "retry budget: ttl_ns %lld < %d",
				   (long long)c->ttl_ns, RETRY_BUDGET_SLOTS);
	if (!(c->ratio >= 0 && c->ratio <= 10))
		return pno__errorf(PNO_STATUS_INVALID,
				   "retry budget: ratio %g not in [0, 10]", c->ratio);
	if (!(c->min_per_sec >= 0 && c->min_per_sec <= 1e6))
		return pno__errorf(PNO_STATUS_INVALID,
				   "retry budget: min_per_sec %g not in [0, 1e6]",
				   c->min_per_sec);
	if (pthread_mutex_init(&b->mu, NULL))
		return pno__errorf(PNO_STATUS_INTERNAL, "retry budget: mutex init");
	b->cfg = *c;
	b->slot_ns = c->ttl_ns / RETRY_BUDGET_SLOTS;
	b->cur = now_ns / b->slot_ns;
	b->init = 1;
	return PNO_STATUS_OK;
}

void retry_budget_free(struct retry_budget *b)
{
	if (b && b->init)
		pthread_mutex_destroy(&b->mu);
	if (b)
		memset(b, 0, sizeof *b);
}

/* slide the window to now: clear the slots that have aged out */
static void advance(struct retry_budget *b, int64_t now)
{
	int64_t s = now / b->slot_ns;
	if (s <= b->cur)
		return;		/* same slot, or a clock that went back */
	int64_t n = s - b->cur;
	if (n > RETRY_BUDGET_SLOTS)
		n = RETRY_BUDGET_SLOTS;
	for (int64_t i = 1; i <= n; i++) {
		int k = (int)((b->cur + i) % RETRY_BUDGET_SLOTS);
		b->req[k] = b->ret[k] = 0;
	}
	b->cur = s;
}

static void sums(const struct retry_budget *b, int64_t *req, int64_t *ret)
{
	int64_t a = 0, r = 0;
	for (int i = 0; i < RETRY_BUDGET_SLOTS; i++) {
		a += b->req[i];
		r += b->ret[i];
	}
	*req = a;
	*ret = r;
}

void retry_budget_deposit(struct retry_budget *b, int64_t now_ns)
{
	pthread_mutex_lock(&b->mu);
	advance(b, now_ns);
	b->req[b->cur % RETRY_BUDGET_SLOTS]++;
	pthread_mutex_unlock(&b->mu);
}

int retry_budget_withdraw(struct retry_budget *b, int64_t now_ns)
{
	int64_t req, ret;
	pthread_mutex_lock(&b->mu);
	advance(b, now_ns);
	sums(b, &req, &ret);
	double allowed = b->cfg.min_per_sec * ((double)b->cfg.ttl_ns * 1e-9) +
			 b->cfg.ratio * (double)req;
	int ok = (double)(ret + 1) <= allowed + 1e-9;
	if (ok)
		b->ret[b->cur % RETRY_BUDGET_SLOTS]++;
	else
		b->refused++;
	pthread_mutex_unlock(&b->mu);
	return ok;
}

void retry_budget_counts(struct retry_budget *b, int64_t now_ns,
			 int64_t *requests, int64_t *retries)
{
	pthread_mutex_lock(&b->mu);
	advance(b, now_ns);
	sums(b, requests, retries);
	pthread_mutex_unlock(&b->mu);
}

/* ---- decisions ---- */

const char *retry_verdict_str(enum retry_verdict v)
{
	switch (v) {
#define RETRY__STR(n, s) case RETRY_##n: return s;
	RETRY_VERDICT_LIST(RETRY__STR)
#undef RETRY__STR
	}
	return "unknown";
}

enum retry_verdict retry_decide(const struct retry_policy *p,
				struct retry_budget *b, struct retry_rng *rng,
				int attempt, const struct retry_outcome *o,
				int64_t now_ns, int64_t deadline_ns,
				int64_t *delay_ns)
{
	*delay_ns = 0;
	if (!o->transport_error && o->http_status >= 100 && o->http_status < 400)
		return RETRY_SUCCEEDED;
	if (!retry_retryable(o->http_status, o->transport_error))
		return RETRY_NOT_RETRYABLE;
	if (attempt + 1 >= p->max_attempts)
		return RETRY_ATTEMPTS;
	if (o->retry_after_ns >= 0 && p->max_retry_after_ns > 0 &&
	    o->retry_after_ns > p->max_retry_after_ns)
		return RETRY_DEADLINE;
	int64_t d = retry_backoff_ns(p, attempt, retry_rng_next(rng));
	if (o->retry_after_ns > d)
		d = o->retry_after_ns;
	if (deadline_ns > 0 && now_ns + d >= deadline_ns)
		return RETRY_DEADLINE;
	if (b && !retry_budget_withdraw(b, now_ns))
		return RETRY_BUDGET;
	*delay_ns = d;
	return RETRY_AGAIN;
}

enum retry_verdict retry_run(const struct retry_policy *p,
			     struct retry_budget *b, struct retry_rng *rng,
			     const struct retry_env *env, int64_t deadline_ns,
			     retry_call_fn call, void *call_ud, int *attempts,
			     struct retry_outcome *last)
{
	struct retry_outcome o;
	enum retry_verdict v;
	int a = 0;
	if (b)
		retry_budget_deposit(b, env->now(env->ud));
	for (;; a++) {
		o.http_status = 0;
		o.transport_error = 0;
		o.retry_after_ns = -1;
		call(call_ud, a, &o);
		int64_t delay;
		v = retry_decide(p, b, rng, a, &o, env->now(env->ud), deadline_ns,
				 &delay);
		if (v != RETRY_AGAIN)
			break;
		env->sleep(env->ud, delay);
	}
	if (attempts)
		*attempts = a + 1;
	if (last)
		*last = o;
	return v;
}
