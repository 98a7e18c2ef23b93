/*
 * pno core: status codes, error detail, logging, allocator hooks, the
 * counter-based random generator and thread control.
 *
 * Every fallible library function returns an `enum pno_status`. When it
 * fails it also leaves a human-readable message saying what is wrong and
 * where (file, dataset, tensor name, flag) in a thread-local buffer that
 * `pno_last_error()` returns. The library never prints and never exits: it
 * reports through the logging callback set with `pno_log_set()`.
 *
 * All memory the library allocates goes through the allocator hooks, so an
 * embedding program (or a test) can count allocations and inject failures.
 * Every pointer the default allocator returns is aligned to PNO_ALIGN bytes.
 *
 * Random numbers come from Philox-4x32-10, a counter-based generator: the
 * value drawn for (seed, stream, index) depends on nothing else, so results
 * are the same whatever the thread count or the order of the draws.
 */
#ifndef PNO_CORE_H
#define PNO_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_VERSION_STRING "0.1.0"
#define PNO_ALIGN 64

/* X(name, message): the one list of status codes. */
#define PNO_STATUS_LIST(X)                                                    \
	X(OK, "success")                                                      \
	X(NOMEM, "out of memory")                                             \
	X(INVALID, "invalid argument")                                        \
	X(IO, "input/output error")                                           \
	X(FORMAT, "malformed or unsupported file")                            \
	X(SHAPE, "shape mismatch")                                            \
	X(NOTFOUND, "not found")                                              \
	X(NONFINITE, "non-finite value")                                      \
	X(EXISTS, "already exists")                                           \
	X(RANGE, "value out of range")                                        \
	X(UNSUPPORTED, "not supported")                                       \
	X(INTERNAL, "internal error")                                         \
	X(CANCELLED, "cancelled")

enum pno_status {
#define PNO__STATUS_ENUM(name, msg) PNO_STATUS_##name,
	PNO_STATUS_LIST(PNO__STATUS_ENUM)
#undef PNO__STATUS_ENUM
	PNO_STATUS_COUNT
};

/* Short description of a status ("out of memory"). Never NULL. */
const char *pno_status_str(enum pno_status s);
/* Symbolic name of a status ("PNO_STATUS_NOMEM"). Never NULL. */
const char *pno_status_name(enum pno_status s);

/* Detail of the last failure on this thread ("" if none). */
const char *pno_last_error(void);
void pno_clear_error(void);

/* ---- logging ---- */
enum pno_log_level {
	PNO_LOG_LEVEL_DEBUG,
	PNO_LOG_LEVEL_INFO,
	PNO_LOG_LEVEL_WARN,
	PNO_LOG_LEVEL_ERROR
};
typedef void (*pno_log_fn)(void *ud, enum pno_log_level level, const char *msg);
/* Set the log sink (NULL: discard) and the lowest level passed to it. */
void pno_log_set(pno_log_fn fn, void *ud, enum pno_log_level min_level);

/* Route jansson's allocations through pno's allocator hooks now. The
 * library does this itself before its first JSON use; a program that also
 * uses jansson directly must call this first, before creating any JSON
 * value of its own (a value allocated before the switch would be freed by
 * the other allocator). Idempotent. */
void pno_json_init(void);

/* ---- allocator hooks ---- */
struct pno_allocator {
	/* Returns memory aligned to `align` (a power of two >= sizeof(void*))
	 * or NULL. Never called with size 0. */
	void *(*alloc)(void *ud, size_t size, size_t align);
	void (*free)(void *ud, void *p);
	void *ud;
};
/* Install hooks (NULL restores the default). Not thread-safe: call it
 * before any other library call. */
void pno_allocator_set(const struct pno_allocator *a);

/* Allocation through the hooks, aligned to PNO_ALIGN; size 0 gives a
 * valid unique pointer. pno_calloc checks n*size for overflow. */
void *pno_malloc(size_t size);
void *pno_calloc(size_t n, size_t size);
void pno_free(void *p);
/* Duplicate a string through the hooks. */
char *pno_strdup(const char *s);

/* ---- random numbers: Philox-4x32-10 ---- */
/* Four 32-bit words for counter (c0, c1) under key `seed`. */
void pno_philox4x32(uint32_t out[4], uint64_t seed, uint64_t c0, uint64_t c1);
/* Fill out[0..n) with U(0,1) (never exactly 0 or 1) or N(0,1) numbers. The
 * value at out[i] is a function of (seed, stream, offset + i) only. */
void pno_rng_uniform(float *out, size_t n, uint64_t seed, uint64_t stream,
		     uint64_t offset);
void pno_rng_normal(float *out, size_t n, uint64_t seed, uint64_t stream,
		    uint64_t offset);
void pno_rng_normal_f64(double *out, size_t n, uint64_t seed, uint64_t stream,
			uint64_t offset);
/* One uniform 64-bit integer for (seed, stream, index). */
uint64_t pno_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);

/* ---- threads ---- */
/* Number of threads used by OpenMP regions and BLAS (<= 0: all cores). */
void pno_threads_set(int n);
int pno_threads_get(void);

#ifdef __cplusplus
}
#endif
#endif
