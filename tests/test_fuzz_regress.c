/* Regression tests for what the libFuzzer harnesses (tests/fuzz,
 * docs/fuzzing.md) found, each as a unit test that failed before its
 * fix; the input that found it is kept in the harness's corpus too. */
#include "testutil.h"
#include "serve_internal.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* an in-memory 2D 4 x 4 model version, 1 -> 1 channels (no weights: the
 * parser and the answer writer only read its shape) */
static void small_version(struct mversion *mv)
{
	memset(mv, 0, sizeof *mv);
	snprintf(mv->name, sizeof mv->name, "m");
	snprintf(mv->vstr, sizeof mv->vstr, "1");
	mv->model.dims = 2;
	mv->model.X = mv->model.Y = 4;
	mv->model.in_ch = mv->model.out_ch = 1;
	mv->C = 1;
	mv->P = 16;
}

/* The answer echoed an id of control characters cut short: each escapes
 * to 6 bytes ("\u0001"), the escape buffer held 600 and the formatting
 * buffer 1024, so a 255-byte id (the longest accepted) came back as 99
 * characters. fuzz_infer: corpus/infer/regress_id_control_chars. */
static void test_infer_id_echoed_whole(void **state)
{
	(void)state;
	static const char *const fills[] = {"\\u0001", "\\\"", "\\u001f", "a"};
	struct serve_config cfg;
	struct server srv;
	struct mversion mv;
	serve_config_defaults(&cfg);
	memset(&srv, 0, sizeof srv);
	small_version(&mv);
	for (int f = 0; f < 4; f++) {
		char body[4096];
		size_t k = 0;
		k += (size_t)snprintf(body + k, sizeof body - k, "{\"id\":\"");
		for (int i = 0; i < 255; i++)	/* the longest id accepted */
			k += (size_t)snprintf(body + k, sizeof body - k, "%s",
					      fills[f]);
		k += (size_t)snprintf(body + k, sizeof body - k, "\",\"inputs\":"
				      "[{\"name\":\"input\",\"datatype\":"
				      "\"FP32\",\"shape\":[1,1,4,4],\"data\":"
				      "[");
		for (int i = 0; i < 16; i++)
			k += (size_t)snprintf(body + k, sizeof body - k, "%s%d",
					      i ? "," : "", i);
		snprintf(body + k, sizeof body - k, "]}]}");

		struct req r;
		memset(&r, 0, sizeof r);
		r.srv = &srv;
		r.mv = &mv;
		r.body = body;
		r.body_len = strlen(body);
		assert_int_equal(sv_infer_parse(&r, &cfg), 0);
		assert_int_equal(strlen(r.id), 255);
		size_t n = sv_item_floats(&mv, 0, r.nq) * (size_t)r.B;
		for (size_t i = 0; i < n; i++)
			r.y[i] = 0.5f;
		assert_int_equal(sv_infer_respond(&r), 0);

		json_error_t e;
		json_t *a = json_loadb(r.resp, r.json_len, 0, &e);
		if (!a)
			fail_msg("fill %d: the answer is not JSON: %s", f, e.text);
		const char *id = json_string_value(json_object_get(a, "id"));
		assert_non_null(id);
		if (strcmp(id, r.id))
			fail_msg("fill %d: the id came back as %zu bytes of %zu",
				 f, strlen(id), strlen(r.id));
		json_decref(a);
		pno_free(r.x);
		pno_free(r.y);
		pno_free(r.resp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_infer_id_echoed_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
