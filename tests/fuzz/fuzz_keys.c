/* libFuzzer harness for the keys-file parser of pno serve (auth.c) and
 * the Authorization header parser. Built only with clang; the command and
 * the corpus are in docs/serve/security.md. Any input must give OK or
 * INVALID (never a crash, leak or sanitizer report); an accepted table
 * must hold at most AUTH_MAX_KEYS keys and look up consistently. */
#include "auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_table *t = NULL;
	enum pno_status s = auth_table_parse(&t, (const char *)data, size,
					     "fuzz");
	if (s != PNO_STATUS_OK && s != PNO_STATUS_INVALID)
		abort();
	if (s == PNO_STATUS_OK) {
		if (!t || auth_table_count(t) > AUTH_MAX_KEYS)
			abort();
		unsigned char d[AUTH_HASH_BYTES];
		auth_key_hash(d, (const char *)data, size);
		int i = auth_table_match(t, d);
		if (i < -1 || i >= auth_table_count(t))
			abort();
		auth_table_free(t);
	} else if (t) {
		abort();
	}
	/* the same bytes as a header value */
	char *h = malloc(size + 1);
	if (!h)
		return 0;
	memcpy(h, data, size);
	h[size] = '\0';
	const char *tok;
	size_t n;
	if (auth_parse_bearer(h, &tok, &n) == 0 &&
	    (n == 0 || n > AUTH_TOKEN_MAX || tok < h || tok + n > h + size))
		abort();
	free(h);
	return 0;
}
