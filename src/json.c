/* jansson set up to allocate through the library's hooks, with a record of
 * failed allocations.
 *
 * jansson 2.14 is not safe under allocation failure: json_dumps can
 * swallow one and return a corrupt string (a key silently dropped), and
 * json_loads can hit assert(0) in its string lexer (both found by the
 * allocation-failure loops of the tests). So jansson never sees a failure:
 * when the hook refuses, the allocation is served by libc instead, the
 * failure is recorded for this thread, and the wrappers below turn any
 * result produced under a failure into PNO_STATUS_NOMEM. Each block has a
 * 16-byte header saying which allocator owns it.
 *
 * A thread may lend jansson an arena (pno__json_arena_begin): blocks are
 * then carved from it and freeing them does nothing; the arena is reused
 * as a whole after pno__json_arena_end. The server parses each request so,
 * without an allocation per JSON node. */
#include "internal.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local int alloc_failed;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Thread_local struct {
	unsigned char *base;
	size_t cap, used, spilled;
} arena;

enum { OWNER_HOOK = 1, OWNER_LIBC = 2, OWNER_ARENA = 3, HDR = 16 };

static void *json_alloc(size_t size)
{
	size_t owner = OWNER_HOOK;
	unsigned char *p;
	if (size > SIZE_MAX - HDR - 15)
		return NULL;
	if (arena.base) {
		size_t need = (size + HDR + 15) & ~(size_t)15;
		if (need <= arena.cap - arena.used) {
			p = arena.base + arena.used;
			arena.used += need;
			owner = OWNER_ARENA;
			memcpy(p, &owner, sizeof owner);
			return p + HDR;
		}
		arena.spilled += need;
	}
	p = pno_malloc(size + HDR);
	if (!p) {
		alloc_failed = 1;
		owner = OWNER_LIBC;
		p = malloc(size + HDR);
		if (!p)
			return NULL;
	}
	memcpy(p, &owner, sizeof owner);
	return p + HDR;
}

static void json_free(void *q)
{
	size_t owner;
	unsigned char *p;
	if (!q)
		return;
	p = (unsigned char *)q - HDR;
	memcpy(&owner, p, sizeof owner);
	if (owner == OWNER_HOOK)
		pno_free(p);
	else if (owner == OWNER_LIBC)
		free(p);
	/* OWNER_ARENA: released with the arena */
}

void pno__json_arena_begin(void *buf, size_t size)
{
	/* 16-byte aligned blocks, as malloc's */
	uintptr_t a = (uintptr_t)buf, b = (a + 15) & ~(uintptr_t)15;
	arena.base = buf && size > b - a ? (unsigned char *)b : NULL;
	arena.cap = arena.base ? size - (b - a) : 0;
	arena.used = arena.spilled = 0;
}

size_t pno__json_arena_end(void)
{
	size_t spilled = arena.spilled;
	arena.base = NULL;
	arena.cap = arena.used = arena.spilled = 0;
	return spilled;
}

static void set_funcs(void) { json_set_alloc_funcs(json_alloc, json_free); }

void pno__json_setup(void) { pthread_once(&once, set_funcs); }

void pno__json_init(void)
{
	pno__json_setup();
	alloc_failed = 0;
}

int pno__json_oom(void) { return alloc_failed; }

char *pno__json_dumps(const json_t *j, size_t flags)
{
	int before = alloc_failed;
	pno__json_setup();
	alloc_failed = 0;
	char *s = json_dumps(j, flags), *copy = NULL;
	if (s && !alloc_failed)
		copy = pno_strdup(s);
	json_free(s);
	alloc_failed |= before;
	return copy;
}

json_t *pno__json_loads(const char *text, enum pno_status *status,
			char *msg, size_t msg_size)
{
	json_error_t err;
	int before = alloc_failed;
	pno__json_setup();
	alloc_failed = 0;
	json_t *j = json_loads(text, 0, &err);
	int failed_here = alloc_failed;
	alloc_failed |= before;
	if (j && failed_here) {
		json_decref(j);
		j = NULL;
	}
	if (!j) {
		if (failed_here) {
			*status = PNO_STATUS_NOMEM;
			snprintf(msg, msg_size, "out of memory parsing JSON");
		} else {
			*status = PNO_STATUS_FORMAT;
			snprintf(msg, msg_size, "%s at line %d column %d",
				 err.text, err.line, err.column);
		}
	} else {
		*status = PNO_STATUS_OK;
	}
	return j;
}

void pno_json_init(void)
{
	pno__json_setup();
}
