/* Status codes, error detail, logging, allocator hooks, Philox, threads. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const char *const status_msg[] = {
#define X(name, msg) msg,
	PNO_STATUS_LIST(X)
#undef X
};
static const char *const status_names[] = {
#define X(name, msg) "PNO_STATUS_" #name,
	PNO_STATUS_LIST(X)
#undef X
};

const char *pno_status_str(enum pno_status s)
{
	if ((unsigned)s >= PNO_STATUS_COUNT)
		return "unknown status";
	return status_msg[s];
}

const char *pno_status_name(enum pno_status s)
{
	if ((unsigned)s >= PNO_STATUS_COUNT)
		return "PNO_STATUS_UNKNOWN";
	return status_names[s];
}

/* ---- error detail ---- */
static _Thread_local char err_buf[1024];

const char *pno_last_error(void) { return err_buf; }
void pno_clear_error(void) { err_buf[0] = '\0'; }

enum pno_status pno__errorf(enum pno_status s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof err_buf, fmt, ap);
	va_end(ap);
	return s;
}

enum pno_status pno__error_prefix(enum pno_status s, const char *fmt, ...)
{
	char prefix[512], old[sizeof err_buf];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, err_buf, sizeof old);
	if (old[0])
		snprintf(err_buf, sizeof err_buf, "%.500s: %.500s", prefix, old);
	else
		snprintf(err_buf, sizeof err_buf, "%s: %s", prefix,
			 pno_status_str(s));
	return s;
}

/* ---- logging ---- */
static pno_log_fn log_fn;
static void *log_ud;
static enum pno_log_level log_min = PNO_LOG_LEVEL_INFO;

void pno_log_set(pno_log_fn fn, void *ud, enum pno_log_level min_level)
{
	log_fn = fn;
	log_ud = ud;
	log_min = min_level;
}

int pno__log_enabled(enum pno_log_level level)
{
	return log_fn != NULL && level >= log_min;
}

void pno__logf(enum pno_log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	if (!pno__log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	log_fn(log_ud, level, buf);
}

/* ---- allocator ---- */
static void *default_alloc(void *ud, size_t size, size_t align)
{
	void *p = NULL;
	(void)ud;
	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	return p;
}

static void default_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static struct pno_allocator allocator = {default_alloc, default_free, NULL};

void pno_allocator_set(const struct pno_allocator *a)
{
	if (a && a->alloc && a->free)
		allocator = *a;
	else
		allocator = (struct pno_allocator){default_alloc, default_free,
						   NULL};
}

void *pno_malloc(size_t size)
{
	/* round up so vector loops may read whole cache lines safely */
	size_t sz = size ? size : 1;
	if (sz > SIZE_MAX - PNO_ALIGN)
		return NULL;
	sz = (sz + PNO_ALIGN - 1) & ~(size_t)(PNO_ALIGN - 1);
	return allocator.alloc(allocator.ud, sz, PNO_ALIGN);
}

void *pno_calloc(size_t n, size_t size)
{
	size_t total;
	void *p;
	if (pno__mul_overflow(n, size, &total))
		return NULL;
	p = pno_malloc(total);
	if (p)
		memset(p, 0, total);
	return p;
}

void pno_free(void *p)
{
	if (p)
		allocator.free(allocator.ud, p);
}

char *pno_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = pno_malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

/* ---- Philox-4x32-10 (Salmon et al., SC'11) ---- */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1)
{
	uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
	uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
	uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
	uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
	uint32_t n0 = hi1 ^ c[1] ^ k0;
	uint32_t n2 = hi0 ^ c[3] ^ k1;
	c[0] = n0;
	c[1] = lo1;
	c[2] = n2;
	c[3] = lo0;
}

void pno_philox4x32(uint32_t out[4], uint64_t seed, uint64_t c0, uint64_t c1)
{
	uint32_t c[4] = {(uint32_t)c0, (uint32_t)(c0 >> 32), (uint32_t)c1,
			 (uint32_t)(c1 >> 32)};
	uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
	for (int r = 0; r < 10; r++) {
		philox_round(c, k0, k1);
		k0 += PHILOX_W0;
		k1 += PHILOX_W1;
	}
	memcpy(out, c, sizeof c);
}

/* 24-bit uniform in (0,1): (u + 0.5) / 2^24 is never 0 or 1. */
static inline float u01f(uint32_t u)
{
	return ((float)(u >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

static inline double u01d(uint32_t a, uint32_t b)
{
	uint64_t v = ((uint64_t)a << 21) ^ (uint64_t)(b >> 11);
	v &= ((uint64_t)1 << 53) - 1;
	return ((double)v + 0.5) * (1.0 / 9007199254740992.0);
}

void pno_rng_uniform(float *out, size_t n, uint64_t seed, uint64_t stream,
		     uint64_t offset)
{
	for (size_t i = 0; i < n;) {
		uint64_t idx = offset + i;
		uint64_t block = idx >> 2;
		unsigned lane = (unsigned)(idx & 3);
		uint32_t r[4];
		pno_philox4x32(r, seed, block, stream);
		for (; lane < 4 && i < n; lane++, i++)
			out[i] = u01f(r[lane]);
	}
}

/* Box-Muller over each Philox block: lanes (0,1) and (2,3) give two normals
 * each, so element idx uses block idx/4 only. */
void pno_rng_normal(float *out, size_t n, uint64_t seed, uint64_t stream,
		    uint64_t offset)
{
	for (size_t i = 0; i < n;) {
		uint64_t idx = offset + i;
		uint64_t block = idx >> 2;
		unsigned lane = (unsigned)(idx & 3);
		uint32_t r[4];
		float z[4];
		pno_philox4x32(r, seed, block, stream);
		for (int p = 0; p < 2; p++) {
			float u1 = u01f(r[2 * p]), u2 = u01f(r[2 * p + 1]);
			float rad = sqrtf(-2.0f * logf(u1));
			float th = 6.28318530717958647692f * u2;
			z[2 * p] = rad * cosf(th);
			z[2 * p + 1] = rad * sinf(th);
		}
		for (; lane < 4 && i < n; lane++, i++)
			out[i] = z[lane];
	}
}

void pno_rng_normal_f64(double *out, size_t n, uint64_t seed, uint64_t stream,
			uint64_t offset)
{
	/* one double normal per Philox block: keeps 53-bit uniforms */
	for (size_t i = 0; i < n; i++) {
		uint64_t idx = offset + i;
		uint32_t r[4];
		pno_philox4x32(r, seed, idx, stream ^ 0x5bd1e9955bd1e995ull);
		double u1 = u01d(r[0], r[1]), u2 = u01d(r[2], r[3]);
		out[i] = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
	}
}

uint64_t pno_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
	uint32_t r[4];
	pno_philox4x32(r, seed, index, stream ^ 0x9e3779b97f4a7c15ull);
	return ((uint64_t)r[0] << 32) | r[1];
}

/* ---- threads ---- */
extern void openblas_set_num_threads(int);

void pno_threads_set(int n)
{
#ifdef _OPENMP
	if (n <= 0)
		n = omp_get_num_procs();
	omp_set_num_threads(n);
#endif
	if (n <= 0)
		n = 1;
	openblas_set_num_threads(n);
}

int pno_threads_get(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}
