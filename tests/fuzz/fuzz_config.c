/* libFuzzer harness for the pno serve config file loader (serve/config.c):
 * the bytes are written to a file and loaded over the defaults with
 * serve_config_load_file, the path the server takes at start and on
 * reload. An input starting with "--" is instead one command-line flag,
 * "--name=value" (serve_config_set).
 *
 * Properties checked on every input: the loader answers OK or INVALID
 * (never a crash, leak or sanitizer report); a refused file leaves the
 * config byte for byte as it was; an accepted one holds every key within
 * its table bounds and every string terminated inside its buffer; the
 * diff against the defaults, the formatted values and the cross-key
 * check run on it. Build and run: docs/fuzzing.md. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[96];
static struct serve_config base;

static void cleanup(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* tmpfs when there is one: a file per input on a disk is most of
	 * the run time */
	snprintf(path, sizeof path, "%s/pno_fuzz_config_%ld.json",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
		 (long)getpid());
	atexit(cleanup);
	memset(&base, 0, sizeof base);
	serve_config_defaults(&base);
	return 0;
}

static void count_line(void *ud, const char *line)
{
	if (!line || !*line)
		abort();
	++*(int *)ud;
}

/* every key within its table entry's bounds */
static void check_bounds(const struct serve_config *c)
{
	for (int i = 0; i < serve_config_nkeys; i++) {
		const struct cfg_key *k = &serve_config_keys[i];
		const char *p = (const char *)c + k->offset;
		char text[CFG_STR + 64];
		double v = 0;
		if (k->type == CFG_INT && k->size == sizeof(int64_t)) {
			int64_t x;
			memcpy(&x, p, sizeof x);
			v = (double)x;
		} else if (k->type == CFG_INT || k->type == CFG_BOOL) {
			int x;
			memcpy(&x, p, sizeof x);
			v = x;
			if (k->type == CFG_BOOL && x != 0 && x != 1)
				abort();
		} else if (k->type == CFG_DOUBLE) {
			memcpy(&v, p, sizeof v);
		} else {
			size_t n = strnlen(p, k->size);
			if (n == k->size)
				abort();	/* not terminated */
			v = (double)n;
		}
		if (k->type != CFG_BOOL && (v < k->min || v > k->max))
			abort();
		serve_config_format(k, c, text, sizeof text);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct serve_config c;
	enum pno_status s;
	memcpy(&c, &base, sizeof c);
	if (size > (1u << 20) + 16)
		return 0;
	if (size >= 2 && data[0] == '-' && data[1] == '-') {
		char *flag = malloc(size + 1), *eq;
		if (!flag)
			return 0;
		memcpy(flag, data, size);
		flag[size] = 0;
		eq = strchr(flag, '=');
		if (eq)
			*eq++ = 0;
		s = serve_config_set(&c, flag, eq ? eq : "", "--flag");
		free(flag);
	} else {
		FILE *fp = fopen(path, "wb");
		if (!fp)
			abort();
		if (fwrite(data, 1, size, fp) != size || fclose(fp))
			abort();
		s = serve_config_load_file(&c, path);
	}
	if (s != PNO_STATUS_OK && s != PNO_STATUS_INVALID)
		abort();
	if (s != PNO_STATUS_OK) {
		if (memcmp(&c, &base, sizeof c))
			abort();	/* a refused file changed the config */
		return 0;
	}
	check_bounds(&c);
	const char *nr = NULL;
	int lines = 0;
	int n = serve_config_diff(&base, &c, count_line, &lines, &nr);
	if (n != lines || n < 0 || n > serve_config_nkeys || (nr && !n))
		abort();
	(void)serve_config_check(&c);
	return 0;
}
