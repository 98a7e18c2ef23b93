/* serve/trace: a valid traceparent keeps its ids; all-zero ids, upper-case
 * hex, version ff, bad lengths and separators start a new trace; future
 * versions parsed leniently; 200000 mutated headers against an
 * independent reference validator; ids random and non-zero; the OTLP JSON
 * read back through jansson with the expected structure and values;
 * allocation-failure loop. */
#include "testutil.h"
#include "trace.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static int parse(const char *s, struct trace_context *c)
{
	return trace_parse(s, strlen(s), c);
}

static void test_valid(void **state)
{
	(void)state;
	struct trace_context c;
	char hex[33];
	assert_true(parse(VALID, &c));
	trace_hex(hex, c.trace_id, 16);
	assert_string_equal(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
	trace_hex(hex, c.parent_id, 8);
	assert_string_equal(hex, "00f067aa0ba902b7");
	assert_int_equal(c.flags, 1);
	assert_int_equal(c.version, 0);
	/* only the sampled bit is kept */
	assert_true(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &c));
	assert_int_equal(c.flags, 1);
	assert_true(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe", &c));
	assert_int_equal(c.flags, 0);

	/* the server span continues the trace with a new span id, and the
	 * header it sends back names that span */
	struct trace_span sp;
	char out[TRACEPARENT_LEN + 1];
	assert_true(parse(VALID, &c));
	assert_status(trace_span_start(&sp, "POST /v2/models/m/infer",
				       TRACE_KIND_SERVER, NULL, &c, 1, 100),
		      PNO_STATUS_OK);
	assert_memory_equal(sp.trace_id, c.trace_id, 16);
	assert_memory_equal(sp.parent_id, c.parent_id, 8);
	assert_true(sp.has_parent);
	assert_memory_not_equal(sp.span_id, c.parent_id, 8);
	trace_span_traceparent(&sp, out);
	assert_int_equal(strlen(out), 55);
	assert_memory_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
	trace_hex(hex, sp.span_id, 8);
	assert_memory_equal(out + 36, hex, 16);
	assert_string_equal(out + 52, "-01");
	struct trace_context back;
	assert_true(parse(out, &back));
	assert_memory_equal(back.parent_id, sp.span_id, 8);
	/* a child span in the process */
	struct trace_span ch;
	assert_status(trace_span_start(&ch, "compute", TRACE_KIND_INTERNAL, &sp,
				       NULL, 0, 120), PNO_STATUS_OK);
	assert_memory_equal(ch.trace_id, sp.trace_id, 16);
	assert_memory_equal(ch.parent_id, sp.span_id, 8);
	assert_int_equal(ch.flags, 1);
}

static void test_future_version(void **state)
{
	(void)state;
	struct trace_context c;
	const char *ok[] = {
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-",
		"fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-x-y",
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		if (!parse(ok[i], &c))
			fail_msg("\"%s\" should parse", ok[i]);
		char hex[33];
		trace_hex(hex, c.trace_id, 16);
		assert_string_equal(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
	}
	assert_int_equal(c.version, 0xfe);
	assert_int_equal(c.flags, 1);
	const char *bad[] = {
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (parse(bad[i], &c))
			fail_msg("\"%s\" should not parse", bad[i]);
}

static void test_invalid(void **state)
{
	(void)state;
	const char *bad[] = {
		"",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
		"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",
		" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct trace_context c;
		memset(&c, 0x77, sizeof c);
		if (parse(bad[i], &c))
			fail_msg("\"%s\" should not parse", bad[i]);
		struct trace_context z = {0};
		assert_memory_equal(&c, &z, sizeof c);
		/* a span for it starts a new trace without a parent */
		struct trace_span sp;
		assert_status(trace_span_start(&sp, "req", TRACE_KIND_SERVER, NULL,
					       &c, 1, 0), PNO_STATUS_OK);
		assert_false(sp.has_parent);
		assert_memory_not_equal(sp.trace_id,
					"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36", 16);
		assert_int_equal(sp.flags, 1);
	}
	struct trace_context c;
	assert_false(trace_parse(NULL, 55, &c));
	/* a valid header but len says fewer bytes: never reads past len */
	assert_false(trace_parse(VALID, 54, &c));
	char *guard = malloc(55);
	memcpy(guard, VALID, 55);	/* no NUL: ASan would see an overread */
	assert_true(trace_parse(guard, 55, &c));
	free(guard);
}

/* ---- an independent validator written from the spec's wording ---- */

static int ref_lchex(char ch)
{
	return ch && strchr("0123456789abcdef", ch) != NULL;
}

static int ref_valid(const char *s, size_t n)
{
	if (n < 55)
		return 0;
	for (size_t i = 0; i < 55; i++) {
		int sep = i == 2 || i == 35 || i == 52;
		if (sep ? s[i] != '-' : !ref_lchex(s[i]))
			return 0;
	}
	if (s[0] == 'f' && s[1] == 'f')
		return 0;
	if (!memcmp(s + 3, "00000000000000000000000000000000", 32))
		return 0;
	if (!memcmp(s + 36, "0000000000000000", 16))
		return 0;
	if (s[0] == '0' && s[1] == '0')
		return n == 55;
	return n == 55 || s[55] == '-';
}

static void test_mutations(void **state)
{
	(void)state;
	const char alphabet[] = "0af9Fg-_ \x00\xff";
	char buf[80];
	int agree_valid = 0;
	for (uint64_t it = 0; it < 200000; it++) {
		uint64_t r = pno_rng_u64(11, 0, it);
		size_t n = 55;
		memcpy(buf, VALID, 55);
		/* a future version half the time */
		if (r & 1) {
			buf[0] = "0cf"[(r >> 1) % 3];
			buf[1] = "01ef"[(r >> 3) % 4];
		}
		/* 0-2 point mutations */
		int m = (int)((r >> 5) % 3);
		for (int k = 0; k < m; k++) {
			uint64_t q = pno_rng_u64(11, 1 + k, it);
			buf[q % 55] = alphabet[(q >> 8) % (sizeof alphabet - 1)];
		}
		/* zero an id sometimes */
		if ((r >> 7) % 16 == 0)
			memset(buf + 3, '0', 32);
		if ((r >> 11) % 16 == 0)
			memset(buf + 36, '0', 16);
		/* change the length: cut or extend */
		int how = (int)((r >> 15) % 8);
		if (how == 0)
			n = (size_t)((r >> 20) % 55);
		else if (how == 1)
			buf[n++] = '-', buf[n++] = 'x';
		else if (how == 2)
			buf[n++] = 'x';
		struct trace_context c;
		int got = trace_parse(buf, n, &c), want = ref_valid(buf, n);
		if (got != want) {
			buf[n] = 0;
			fail_msg("iteration %llu: \"%s\" (len %zu) parsed %d, reference %d",
				 (unsigned long long)it, buf, n, got, want);
		}
		agree_valid += got;
	}
	/* both outcomes were exercised plenty */
	printf("mutations: %d of 200000 valid\n", agree_valid);
	assert_true(agree_valid > 20000 && agree_valid < 180000);
}

static void test_random_ids(void **state)
{
	(void)state;
	enum { N = 2000 };
	static uint8_t ids[N][8];
	int ones = 0;
	for (int i = 0; i < N; i++) {
		assert_status(trace_random_id(ids[i], 8), PNO_STATUS_OK);
		for (int b = 0; b < 64; b++)
			ones += ids[i][b / 8] >> (b % 8) & 1;
		uint8_t z[8] = {0};
		assert_memory_not_equal(ids[i], z, 8);
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			assert_memory_not_equal(ids[i], ids[j], 8);
	/* bits are fair: N*64 = 128000 bits, sd 179, 5 sd */
	assert_true(abs(ones - N * 32) < 5 * 179);
	/* two new traces differ */
	struct trace_span a, b;
	assert_status(trace_span_start(&a, "x", TRACE_KIND_SERVER, NULL, NULL, 0, 0),
		      PNO_STATUS_OK);
	assert_status(trace_span_start(&b, "x", TRACE_KIND_SERVER, NULL, NULL, 0, 0),
		      PNO_STATUS_OK);
	assert_memory_not_equal(a.trace_id, b.trace_id, 16);
	assert_int_equal(a.flags, 0);
}

static void make_spans(struct trace_span sp[3])
{
	struct trace_context c;
	assert_true(parse(VALID, &c));
	assert_status(trace_span_start(&sp[0], "POST /v2/models/darcy/infer",
				       TRACE_KIND_SERVER, NULL, &c, 1,
				       1764327000123456789LL), PNO_STATUS_OK);
	assert_status(trace_span_attr_str(&sp[0], "model", "darcy"), PNO_STATUS_OK);
	assert_status(trace_span_attr_int(&sp[0], "http.status_code", 200),
		      PNO_STATUS_OK);
	assert_status(trace_span_attr_str(&sp[0], "odd", "caf\xc3\xa9\"\n"),
		      PNO_STATUS_OK);
	trace_span_end(&sp[0], 1764327000223456789LL, TRACE_STATUS_OK);
	assert_status(trace_span_start(&sp[1], "queue", TRACE_KIND_INTERNAL, &sp[0],
				       NULL, 0, 1764327000123456790LL), PNO_STATUS_OK);
	assert_status(trace_span_attr_int(&sp[1], "batch.size", -7), PNO_STATUS_OK);
	trace_span_end(&sp[1], 1764327000133456790LL, TRACE_STATUS_UNSET);
	assert_status(trace_span_start(&sp[2], "export", TRACE_KIND_CLIENT, NULL,
				       NULL, 1, 5), PNO_STATUS_OK);
	trace_span_end(&sp[2], 9, TRACE_STATUS_ERROR);
}

static const char *sget(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	if (!s)
		fail_msg("no string \"%s\"", k);
	return s;
}

static void test_otlp_json(void **state)
{
	(void)state;
	struct trace_span sp[3];
	make_spans(sp);
	char *text;
	size_t len;
	assert_status(trace_otlp_json(sp, 3, "pno-test", &text, &len), PNO_STATUS_OK);
	assert_int_equal(strlen(text), len);
	json_error_t err;
	json_t *root = json_loads(text, 0, &err);
	if (!root)
		fail_msg("not JSON: %s: %s", err.text, text);
	json_t *rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
	assert_int_equal(json_array_size(json_object_get(root, "resourceSpans")), 1);
	json_t *ra = json_array_get(json_object_get(json_object_get(rs, "resource"),
						    "attributes"), 0);
	assert_string_equal(sget(ra, "key"), "service.name");
	assert_string_equal(sget(json_object_get(ra, "value"), "stringValue"), "pno-test");
	json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
	assert_string_equal(sget(json_object_get(ss, "scope"), "name"), "pno.serve");
	json_t *spans = json_object_get(ss, "spans");
	assert_int_equal(json_array_size(spans), 3);
	for (int i = 0; i < 3; i++) {
		json_t *s = json_array_get(spans, i);
		char hex[33], num[24];
		trace_hex(hex, sp[i].trace_id, 16);
		assert_string_equal(sget(s, "traceId"), hex);
		trace_hex(hex, sp[i].span_id, 8);
		assert_string_equal(sget(s, "spanId"), hex);
		if (sp[i].has_parent) {
			trace_hex(hex, sp[i].parent_id, 8);
			assert_string_equal(sget(s, "parentSpanId"), hex);
		} else {
			assert_null(json_object_get(s, "parentSpanId"));
		}
		assert_string_equal(sget(s, "name"), sp[i].name);
		assert_int_equal(json_integer_value(json_object_get(s, "kind")),
				 sp[i].kind);
		snprintf(num, sizeof num, "%lld", (long long)sp[i].start_ns);
		assert_string_equal(sget(s, "startTimeUnixNano"), num);
		snprintf(num, sizeof num, "%lld", (long long)sp[i].end_ns);
		assert_string_equal(sget(s, "endTimeUnixNano"), num);
		assert_int_equal(json_integer_value(json_object_get(
					 json_object_get(s, "status"), "code")),
				 sp[i].status);
		assert_int_equal(json_array_size(json_object_get(s, "attributes")),
				 sp[i].n_attrs);
	}
	json_t *s0 = json_array_get(spans, 0);
	assert_string_equal(sget(s0, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(sget(s0, "parentSpanId"), "00f067aa0ba902b7");
	assert_string_equal(sget(s0, "startTimeUnixNano"), "1764327000123456789");
	assert_int_equal(json_integer_value(json_object_get(s0, "kind")), 2);
	json_t *attrs = json_object_get(s0, "attributes");
	assert_string_equal(sget(json_array_get(attrs, 0), "key"), "model");
	assert_string_equal(sget(json_object_get(json_array_get(attrs, 0), "value"),
				 "stringValue"), "darcy");
	assert_string_equal(sget(json_object_get(json_array_get(attrs, 1), "value"),
				 "intValue"), "200");
	/* non-ASCII and control bytes are replaced, quotes escaped and back */
	assert_string_equal(sget(json_object_get(json_array_get(attrs, 2), "value"),
				 "stringValue"), "caf??\"?");
	json_t *a1 = json_array_get(json_object_get(json_array_get(spans, 1),
						    "attributes"), 0);
	assert_string_equal(sget(json_object_get(a1, "value"), "intValue"), "-7");
	/* the child and its parent share the trace */
	assert_string_equal(sget(json_array_get(spans, 1), "traceId"),
			    "4bf92f3577b34da6a3ce929d0e0e4736");
	json_decref(root);
	pno_free(text);

	/* an empty batch is still a valid document */
	assert_status(trace_otlp_json(NULL, 0, "s", &text, NULL), PNO_STATUS_OK);
	root = json_loads(text, 0, &err);
	assert_non_null(root);
	json_decref(root);
	pno_free(text);
	assert_status(trace_otlp_json(NULL, 2, "s", &text, NULL), PNO_STATUS_INVALID);
}

static void test_attrs(void **state)
{
	(void)state;
	struct trace_span sp;
	assert_status(trace_span_start(&sp, "a name that is considerably longer than "
				       "sixty-three bytes so it must be cut short",
				       TRACE_KIND_SERVER, NULL, NULL, 1, 0),
		      PNO_STATUS_OK);
	assert_int_equal(strlen(sp.name), TRACE_NAME_MAX - 1);
	for (int i = 0; i < TRACE_MAX_ATTRS; i++)
		assert_status(trace_span_attr_int(&sp, "k", i), PNO_STATUS_OK);
	assert_status(trace_span_attr_int(&sp, "k", 99), PNO_STATUS_RANGE);
	assert_err_has("attributes");
	sp.n_attrs = 0;
	assert_status(trace_span_attr_str(&sp, "", "v"), PNO_STATUS_INVALID);
	char key[TRACE_KEY_MAX + 1];
	memset(key, 'k', TRACE_KEY_MAX);
	key[TRACE_KEY_MAX] = 0;
	assert_status(trace_span_attr_str(&sp, key, "v"), PNO_STATUS_INVALID);
	char big[400];
	memset(big, 'v', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_status(trace_span_attr_str(&sp, "big", big), PNO_STATUS_OK);
	assert_int_equal(strlen(sp.attrs[0].s), TRACE_VALUE_MAX - 1);
	assert_status(trace_span_start(NULL, "x", TRACE_KIND_SERVER, NULL, NULL, 0, 0),
		      PNO_STATUS_INVALID);
}

static void test_alloc_fail(void **state)
{
	(void)state;
	struct trace_span sp[3];
	make_spans(sp);
	tu_alloc_install();
	long live0 = tu_alloc_live();
	char *text = NULL;
	long k;
	for (k = 1;; k++) {
		tu_alloc_reset(k);
		if (tu_alloc_step(trace_otlp_json(sp, 3, "svc", &text, NULL), live0))
			break;
		assert_null(text);
	}
	printf("otlp: %ld allocation points\n", k - 1);
	assert_true(k > 20);
	pno_free(text);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_future_version),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_random_ids),
		cmocka_unit_test(test_otlp_json),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_alloc_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
