/* libFuzzer harness for the safetensors reader (src/safetensors.c) and the
 * model loader over it (pno_model_load, as pno serve loads a repository
 * file: grid from the file, batch bound 1). The bytes are written to a
 * file, since the reader takes a path (it seeks and reads tensor by
 * tensor, and that is the code under test).
 *
 * Properties checked on every input: the reader answers OK, FORMAT,
 * UNSUPPORTED or NOMEM (never a crash, leak or sanitizer report) and on
 * failure leaves the struct zeroed; an accepted file's tensors have
 * element counts equal to their shape's product, distinct names that
 * pno_safetensors_find returns, every float readable (ASan checks the
 * bounds), and metadata that is a JSON object of strings. The model loader answers OK or an error with a
 * message, never a crash. Build and run: docs/fuzzing.md. */
#include "pno/core.h"
#include "pno/io.h"
#include "pno/model.h"

#include <jansson.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[96];

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
	snprintf(path, sizeof path, "%s/pno_fuzz_st_%ld.safetensors",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
		 (long)getpid());
	atexit(cleanup);
	return 0;
}

static void check_read(void)
{
	struct pno_safetensors st;
	static const struct pno_safetensors zero;
	enum pno_status s = pno_safetensors_read(&st, path);
	if (s != PNO_STATUS_OK) {
		if (s != PNO_STATUS_FORMAT && s != PNO_STATUS_UNSUPPORTED &&
		    s != PNO_STATUS_NOMEM)
			abort();
		if (memcmp(&st, &zero, sizeof st) || !*pno_last_error())
			abort();
		return;
	}
	for (int i = 0; i < st.n; i++) {
		const struct pno_st_entry *e = &st.t[i];
		size_t count = 1;
		volatile float sink = 0;
		if (!e->name || e->ndim < 0 || e->ndim > PNO_MAX_DIMS)
			abort();
		for (int d = 0; d < e->ndim; d++)
			count *= (size_t)e->shape[d];
		if (count != e->count || pno_safetensors_find(&st, e->name) != e)
			abort();
		for (size_t k = 0; k < e->count; k++)
			sink += e->data[k];
		(void)sink;
	}
	json_error_t je;
	json_t *m = json_loads(st.metadata_json, 0, &je), *v;
	const char *key;
	if (!json_is_object(m))
		abort();
	json_object_foreach(m, key, v)
		if (!json_is_string(v))
			abort();
	json_decref(m);
	pno_safetensors_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *fp = fopen(path, "wb");
	if (!fp)
		abort();
	if (fwrite(data, 1, size, fp) != size || fclose(fp))
		abort();
	check_read();

	struct pno_model m;
	enum pno_status s = pno_model_load(&m, path, 0, 0, 1);
	if (s == PNO_STATUS_OK)
		pno_model_free(&m);
	else if (!*pno_last_error())
		abort();
	return 0;
}
