/* jansson set up to allocate through the library's hooks. */
#include "internal.h"

#include <jansson.h>
#include <stdio.h>

/* jansson 2.14's json_dumps can swallow an allocation failure and return
 * a corrupt string (a key silently dropped); tests/test_fno.c's
 * allocation-failure loop found it. So every failed allocation is noted
 * here and pno__json_dumps discards output produced under one. */
static _Thread_local int alloc_failed;

static void *json_alloc(size_t size)
{
	void *p = pno_malloc(size);
	if (!p)
		alloc_failed = 1;
	return p;
}

void pno__json_setup(void) { json_set_alloc_funcs(json_alloc, pno_free); }

char *pno__json_dumps(const json_t *j, size_t flags)
{
	pno__json_setup();
	alloc_failed = 0;
	char *s = json_dumps(j, flags);
	if (s && alloc_failed) {
		pno_free(s);
		s = NULL;
	}
	return s;
}

json_t *pno__json_loads(const char *text, enum pno_status *status,
			char *msg, size_t msg_size)
{
	json_error_t err;
	pno__json_setup();
	alloc_failed = 0;
	json_t *j = json_loads(text, 0, &err);
	if (j && alloc_failed) {
		json_decref(j);
		j = NULL;
	}
	if (!j) {
		if (alloc_failed) {
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
