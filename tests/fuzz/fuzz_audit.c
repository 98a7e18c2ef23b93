/* libFuzzer harness for the audit log reader/verifier: arbitrary bytes
 * as 1..4 segments verified with a fixed key. Build and run (see
 * docs/serve/audit.md):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc/serve \
 *     -I/usr/include/x86_64-linux-gnu/openblas-openmp \
 *     tests/fuzz/fuzz_audit.c src/serve/audit.c src/serve/audit_event.c \
 *     src/serve/audit_read.c src/serve/audit_key.c src/core.c \
 *     -o fuzz_audit -lsodium -lm -fopenmp \
 *     -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas \
 *     -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp
 *   mkdir -p corpus && AUDIT_FUZZ_SEED=corpus/seed ./fuzz_audit
 *   ./fuzz_audit -max_total_time=60 corpus
 *
 * Input layout: byte 0 picks the segment count (1 + b % 4); then every
 * segment but the last is a 2-byte little-endian length and that many
 * bytes; the last segment is the rest. AUDIT_FUZZ_SEED=FILE makes the
 * program write a valid two-segment log (under the fixed key) in that
 * layout to FILE and exit: a seed that gets past the header checks. */
#include "audit.h"
#include "audit_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct audit__keys keys;

static void record_nothing(void *ud, const struct audit_record *r)
{
	/* touch every byte a verified record exposes */
	volatile unsigned x = 0;
	(void)ud;
	for (size_t i = 0; i < r->json_len; i++)
		x += (unsigned char)r->json[i];
	(void)x;
}

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *p;
	long len;
	if (!fp)
		return NULL;
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	p = malloc((size_t)len + 1);
	if (fread(p, 1, (size_t)len, fp) != (size_t)len)
		len = 0;
	fclose(fp);
	*n = (size_t)len;
	return p;
}

/* a real log under the fixed key, framed as a fuzz input */
static void make_seed(const char *out)
{
	char dir[] = "/tmp/fuzz_audit_XXXXXX", key[256], seg[300];
	struct audit_log *l;
	struct audit_opts o;
	FILE *fp;
	if (!mkdtemp(dir))
		exit(1);
	snprintf(key, sizeof key, "%s.key", dir);
	fp = fopen(key, "w");
	fprintf(fp, "%064d\n", 42);
	fclose(fp);
	chmod(key, 0600);
	audit_opts_default(&o);
	o.fsync = 0;
	o.segment_records = 3;
	if (audit_open(&l, dir, key, &o) != PNO_STATUS_OK)
		exit(1);
	for (int i = 0; i < 3; i++) {
		struct audit_event e = {.type = AUDIT_EVENT_INFER, .actor = "fuzz",
					.request_id = "r", .status = 200};
		audit_append(l, &e, NULL);
	}
	audit_close(l);
	fp = fopen(out, "wb");
	fputc(1, fp);	/* two segments */
	for (int k = 1; k <= 2; k++) {
		size_t n = 0;
		snprintf(seg, sizeof seg, "%s/seg-%06d.log", dir, k);
		uint8_t *p = slurp(seg, &n);
		if (k == 1) {
			fputc((int)(n & 0xff), fp);
			fputc((int)(n >> 8), fp);
		}
		fwrite(p, 1, n, fp);
		free(p);
		unlink(seg);
	}
	fclose(fp);
	unlink(key);
	rmdir(dir);
	exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t master[32] = {0};
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	master[31] = 0x42;	/* the key "000...0042" of make_seed */
	audit__keys_derive(&keys, master);
	if (getenv("AUDIT_FUZZ_SEED"))
		make_seed(getenv("AUDIT_FUZZ_SEED"));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit__seg segs[4];
	struct audit_result r;
	uint32_t n;
	if (size < 1)
		return 0;
	n = 1 + data[0] % 4;
	data++, size--;
	for (uint32_t i = 0; i + 1 < n; i++) {
		size_t len;
		if (size < 2)
			return 0;
		len = (size_t)data[0] | (size_t)data[1] << 8;
		data += 2, size -= 2;
		if (len > size)
			return 0;
		segs[i].data = data;
		segs[i].size = len;
		data += len, size -= len;
	}
	segs[n - 1].data = data;
	segs[n - 1].size = size;
	audit__verify_mem(segs, n, &keys, record_nothing, NULL, &r);
	/* the result must be self-consistent whatever the bytes */
	if (r.bad && r.torn)
		abort();
	if (r.closed && (r.bad || r.torn))
		abort();
	return 0;
}
