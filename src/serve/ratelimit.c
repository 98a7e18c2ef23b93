/* GCRA per client in a sharded, bounded LRU table (see ratelimit.h). */
#include "ratelimit.h"
#include "../internal.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#define DIGEST 16
#define SHARDS_BIG 16		/* shards of a table of >= 1024 clients */

struct rl_entry {
	unsigned char id[DIGEST];	/* keyed BLAKE2b of (kind, id) */
	int64_t tat;			/* theoretical arrival time, ns */
	int prev, next;			/* LRU list, most recent at head */
	int hnext;			/* bucket chain; free list */
};

struct rl_shard {
	pthread_mutex_t mu;
	int cap, n, head, tail, free_head;
	unsigned nb;
	int *bucket;
	struct rl_entry *e;
	uint64_t evictions;
	char pad[64];			/* keep neighbours' mutexes apart */
};

struct ratelimit {
	int64_t T, tau;			/* ns */
	serve_clock_fn clock;
	void *clock_ud;
	unsigned char hkey[crypto_generichash_KEYBYTES];
	int nshards;
	struct rl_shard *sh;
};

void ratelimit_opts_default(struct ratelimit_opts *o)
{
	memset(o, 0, sizeof *o);
	o->rate = 10;
	o->burst = 20;
	o->max_keys = 65536;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	for (int i = 0; rl->sh && i < rl->nshards; i++) {
		pthread_mutex_destroy(&rl->sh[i].mu);
		pno_free(rl->sh[i].bucket);
		pno_free(rl->sh[i].e);
	}
	pno_free(rl->sh);
	sodium_memzero(rl->hkey, sizeof rl->hkey);
	pno_free(rl);
}

enum pno_status ratelimit_new(struct ratelimit **out,
			      const struct ratelimit_opts *o)
{
	if (!out || !o)
		return pno__errorf(PNO_STATUS_INVALID, "rate limit: NULL argument");
	*out = NULL;
	if (!(o->rate > 0 && o->rate <= 1e9))
		return pno__errorf(PNO_STATUS_INVALID, "rate limit: rate %g out "
				   "of range (0, 1e9] per second", o->rate);
	if (o->burst < 1 || o->burst > 1000000)
		return pno__errorf(PNO_STATUS_INVALID, "rate limit: burst %d out "
				   "of range 1..1000000", o->burst);
	if (o->max_keys < 1 || o->max_keys > 100000000)
		return pno__errorf(PNO_STATUS_INVALID, "rate limit: max_keys %d "
				   "out of range 1..100000000", o->max_keys);
	double T = 1e9 / o->rate;
	if (T * o->burst > 1e18)
		return pno__errorf(PNO_STATUS_INVALID, "rate limit: burst %d at "
				   "rate %g/s spans more than 30 years", o->burst,
				   o->rate);
	if (sodium_init() < 0)
		return pno__errorf(PNO_STATUS_INTERNAL, "libsodium failed to "
				   "initialize");
	struct ratelimit *rl = pno_calloc(1, sizeof *rl);
	if (!rl)
		goto nomem;
	rl->T = (int64_t)llround(T);
	if (rl->T < 1)
		rl->T = 1;
	rl->tau = (int64_t)(o->burst - 1) * rl->T;
	rl->clock = o->clock ? o->clock : serve_clock_monotonic;
	rl->clock_ud = o->clock_ud;
	randombytes_buf(rl->hkey, sizeof rl->hkey);
	/* small tables: one shard, an exact LRU */
	int ns = o->max_keys >= 1024 ? SHARDS_BIG : 1;
	rl->sh = pno_calloc((size_t)ns, sizeof *rl->sh);
	if (!rl->sh)
		goto nomem;
	int per = (o->max_keys + ns - 1) / ns;
	for (int i = 0; i < ns; i++) {
		struct rl_shard *s = &rl->sh[i];
		s->cap = per;
		s->nb = 1;
		while (s->nb < 2u * (unsigned)per)
			s->nb <<= 1;
		s->bucket = pno_malloc(s->nb * sizeof *s->bucket);
		s->e = pno_calloc((size_t)per, sizeof *s->e);
		if (!s->bucket || !s->e) {
			pno_free(s->bucket);
			pno_free(s->e);
			s->bucket = NULL;
			s->e = NULL;
			goto nomem;
		}
		for (unsigned b = 0; b < s->nb; b++)
			s->bucket[b] = -1;
		for (int k = 0; k < per; k++)
			s->e[k].hnext = k + 1 < per ? k + 1 : -1;
		s->head = s->tail = -1;
		pthread_mutex_init(&s->mu, NULL);
		rl->nshards = i + 1;
	}
	*out = rl;
	return PNO_STATUS_OK;
nomem:
	ratelimit_free(rl);
	return pno__errorf(PNO_STATUS_NOMEM, "rate limit: out of memory for %d "
			   "clients", o->max_keys);
}

static void lru_unlink(struct rl_shard *s, int i)
{
	struct rl_entry *e = &s->e[i];
	if (e->prev >= 0)
		s->e[e->prev].next = e->next;
	else
		s->head = e->next;
	if (e->next >= 0)
		s->e[e->next].prev = e->prev;
	else
		s->tail = e->prev;
}

static void lru_push_front(struct rl_shard *s, int i)
{
	struct rl_entry *e = &s->e[i];
	e->prev = -1;
	e->next = s->head;
	if (s->head >= 0)
		s->e[s->head].prev = i;
	s->head = i;
	if (s->tail < 0)
		s->tail = i;
}

static unsigned bucket_of(const struct rl_shard *s, const unsigned char *d)
{
	uint32_t h;
	memcpy(&h, d + 4, sizeof h);
	return h & (s->nb - 1);
}

static void bucket_remove(struct rl_shard *s, int i)
{
	int *pp = &s->bucket[bucket_of(s, s->e[i].id)];
	while (*pp != i)
		pp = &s->e[*pp].hnext;
	*pp = s->e[i].hnext;
}

/* The entry of digest d, created (evicting the least recently seen if
 * the shard is full) with TAT = now if new. */
static int entry_get(struct rl_shard *s, const unsigned char *d, int64_t now)
{
	unsigned b = bucket_of(s, d);
	for (int i = s->bucket[b]; i >= 0; i = s->e[i].hnext)
		if (!memcmp(s->e[i].id, d, DIGEST)) {
			lru_unlink(s, i);
			lru_push_front(s, i);
			return i;
		}
	int i;
	if (s->free_head >= 0 && s->n < s->cap) {
		i = s->free_head;
		s->free_head = s->e[i].hnext;
		s->n++;
	} else {
		i = s->tail;
		lru_unlink(s, i);
		bucket_remove(s, i);
		s->evictions++;
	}
	memcpy(s->e[i].id, d, DIGEST);
	s->e[i].tat = now;
	s->e[i].hnext = s->bucket[b];
	s->bucket[b] = i;
	lru_push_front(s, i);
	return i;
}

int ratelimit_check(struct ratelimit *rl, const char *kind, const char *id,
		    int *retry_after_s)
{
	if (!rl || !kind || !id) {
		if (retry_after_s)
			*retry_after_s = 1;
		return 0;
	}
	unsigned char d[DIGEST];
	crypto_generichash_state st;
	crypto_generichash_init(&st, rl->hkey, sizeof rl->hkey, DIGEST);
	/* the NUL separates kind from id: ("ke", "yx") != ("key", "x") */
	crypto_generichash_update(&st, (const unsigned char *)kind,
				  strlen(kind) + 1);
	crypto_generichash_update(&st, (const unsigned char *)id, strlen(id));
	crypto_generichash_final(&st, d, DIGEST);
	struct rl_shard *s = &rl->sh[d[0] % (unsigned)rl->nshards];

	pthread_mutex_lock(&s->mu);
	int64_t t = rl->clock(rl->clock_ud);
	struct rl_entry *e = &s->e[entry_get(s, d, t)];
	int ok = e->tat - t <= rl->tau;
	int64_t wait = 0;
	if (ok)
		e->tat = (e->tat > t ? e->tat : t) + rl->T;
	else
		wait = e->tat - rl->tau - t;
	pthread_mutex_unlock(&s->mu);
	if (!ok && retry_after_s) {
		int64_t sec = (wait + 999999999) / 1000000000;
		*retry_after_s = sec < 1 ? 1 : sec > INT_MAX ? INT_MAX : (int)sec;
	}
	return ok;
}

int ratelimit_count(struct ratelimit *rl)
{
	int n = 0;
	for (int i = 0; rl && i < rl->nshards; i++) {
		pthread_mutex_lock(&rl->sh[i].mu);
		n += rl->sh[i].n;
		pthread_mutex_unlock(&rl->sh[i].mu);
	}
	return n;
}

uint64_t ratelimit_evictions(struct ratelimit *rl)
{
	uint64_t n = 0;
	for (int i = 0; rl && i < rl->nshards; i++) {
		pthread_mutex_lock(&rl->sh[i].mu);
		n += rl->sh[i].evictions;
		pthread_mutex_unlock(&rl->sh[i].mu);
	}
	return n;
}
