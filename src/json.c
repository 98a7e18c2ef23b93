/* jansson set up to allocate through the library's hooks. */
#include "internal.h"

#include <jansson.h>

static void *json_alloc(size_t size) { return pno_malloc(size); }

void pno__json_setup(void) { json_set_alloc_funcs(json_alloc, pno_free); }
