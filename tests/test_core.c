/* core: status list, error detail, allocator hooks, Philox. */
#include "testutil.h"
#include "internal.h"

#include <math.h>
#include <string.h>

static void test_status_strings(void **state)
{
	(void)state;
	assert_string_equal(pno_status_str(PNO_STATUS_OK), "success");
	assert_string_equal(pno_status_str(PNO_STATUS_NOMEM), "out of memory");
	assert_string_equal(pno_status_name(PNO_STATUS_SHAPE), "PNO_STATUS_SHAPE");
	assert_string_equal(pno_status_str((enum pno_status)999), "unknown status");
	for (int s = 0; s < PNO_STATUS_COUNT; s++)
		assert_true(strlen(pno_status_str((enum pno_status)s)) > 0);
}

static void test_error_detail(void **state)
{
	(void)state;
	pno_clear_error();
	assert_string_equal(pno_last_error(), "");
	enum pno_status s = pno__errorf(PNO_STATUS_SHAPE, "tensor %s has %d dims", "w", 3);
	assert_int_equal(s, PNO_STATUS_SHAPE);
	pno__error_prefix(s, "model.safetensors");
	assert_string_equal(pno_last_error(), "model.safetensors: tensor w has 3 dims");
}

static void test_alloc_hooks(void **state)
{
	(void)state;
	tu_alloc_install();
	long live0 = tu_alloc_live();
	float *p = pno_malloc(100);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % PNO_ALIGN, 0);
	assert_int_equal(tu_alloc_count(), 1);
	pno_free(p);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_reset(1);
	assert_null(pno_malloc(10));
	assert_true(tu_alloc_failed());
	/* overflow is refused, not wrapped */
	assert_null(pno_calloc(SIZE_MAX / 2, 4));
	tu_alloc_uninstall();
}

/* Known-answer vectors of the Random123 distribution (kat_vectors):
 * philox4x32-10 with counter 0, key 0, and counter/key all ones. */
static void test_philox_kat(void **state)
{
	(void)state;
	uint32_t r[4];
	pno_philox4x32(r, 0, 0, 0);
	assert_int_equal(r[0], 0x6627e8d5u);
	assert_int_equal(r[1], 0xe169c58du);
	assert_int_equal(r[2], 0xbc57ac4cu);
	assert_int_equal(r[3], 0x9b00dbd8u);
	pno_philox4x32(r, UINT64_MAX, UINT64_MAX, UINT64_MAX);
	assert_int_equal(r[0], 0x408f276du);
	assert_int_equal(r[1], 0x41c83b0eu);
	assert_int_equal(r[2], 0xa20bc7c6u);
	assert_int_equal(r[3], 0x6d5451fdu);
}

/* The value at an index does not depend on how the range is split. */
static void test_rng_offsets(void **state)
{
	(void)state;
	enum { N = 1001 };
	static float a[N], b[N];
	pno_rng_normal(a, N, 42, 7, 0);
	pno_rng_normal(b, 13, 42, 7, 0);
	pno_rng_normal(b + 13, N - 13, 42, 7, 13);
	assert_memory_equal(a, b, sizeof a);
	pno_rng_uniform(a, N, 1, 2, 5);
	for (int i = 0; i < N; i++)
		pno_rng_uniform(b + i, 1, 1, 2, 5 + (uint64_t)i);
	assert_memory_equal(a, b, sizeof a);
}

/* Moments of 10^6 normals: mean within 5 sigma of 0 (sigma = 1e-3), variance
 * within 5 sigma (sqrt(2/n) = 1.4e-3), and uniforms in (0, 1). */
static void test_rng_moments(void **state)
{
	(void)state;
	enum { N = 1000000 };
	float *z = pno_malloc(N * sizeof *z);
	assert_non_null(z);
	pno_rng_normal(z, N, 123, 0, 0);
	double m = 0, v = 0, k4 = 0;
	for (int i = 0; i < N; i++)
		m += z[i];
	m /= N;
	for (int i = 0; i < N; i++) {
		v += (z[i] - m) * (z[i] - m);
		k4 += pow(z[i] - m, 4);
	}
	v /= N;
	k4 /= N;
	tu_assert_close(m, 0.0, 5e-3);
	tu_assert_close(v, 1.0, 7e-3);
	tu_assert_close(k4, 3.0, 0.05);
	pno_rng_uniform(z, N, 9, 1, 0);
	double mu = 0;
	for (int i = 0; i < N; i++) {
		assert_true(z[i] > 0.0f && z[i] < 1.0f);
		mu += z[i];
	}
	tu_assert_close(mu / N, 0.5, 5 * 0.29 / 1000.0);
	pno_free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_strings),
		cmocka_unit_test(test_error_detail),
		cmocka_unit_test(test_alloc_hooks),
		cmocka_unit_test(test_philox_kat),
		cmocka_unit_test(test_rng_offsets),
		cmocka_unit_test(test_rng_moments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
