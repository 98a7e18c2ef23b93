/* libFuzzer harness for the traceparent parser (serve/trace.c). Build and
 * run (see docs/serve/resilience.md):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -Iinclude \
 *     -Isrc/serve tests/fuzz/fuzz_traceparent.c src/serve/trace.c \
 *     src/core.c src/json.c $(pkg-config --cflags --libs libsodium jansson) \
 *     -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lm \
 *     -o fuzz_traceparent
 *   mkdir -p corpus && printf %s 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 > corpus/valid
 *   ./fuzz_traceparent -max_len=128 -runs=2000000 corpus
 * Properties checked on every input: the parser reads only the given
 * bytes (the input buffer is exactly len long, so ASan catches an
 * overread); a valid header is at least 55 bytes with non-zero ids and a
 * version other than ff; reformatting what was parsed as version 00 gives
 * a header that parses to the same ids and sampled flag. */
#include "trace.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace_context c, d;
	if (!trace_parse((const char *)data, size, &c))
		return 0;
	if (size < TRACEPARENT_LEN || c.version == 0xff || (c.flags & ~1u))
		abort();
	static const uint8_t z[16];
	if (!memcmp(c.trace_id, z, 16) || !memcmp(c.parent_id, z, 8))
		abort();
	char out[TRACEPARENT_LEN + 1];
	trace_format(out, c.trace_id, c.parent_id, c.flags);
	if (!trace_parse(out, TRACEPARENT_LEN, &d) ||
	    memcmp(c.trace_id, d.trace_id, 16) ||
	    memcmp(c.parent_id, d.parent_id, 8) || c.flags != d.flags ||
	    d.version != 0)
		abort();
	/* version 00 must be exactly 55 bytes */
	if (c.version == 0 && size != TRACEPARENT_LEN)
		abort();
	return 0;
}
