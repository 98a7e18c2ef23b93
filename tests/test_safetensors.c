/* safetensors reader/writer and atomic replacement: round trips, hand-made
 * files, every kind of corruption, truncation at every length, header
 * byte flips, allocation- and I/O-failure loops, and a kill test. */
#include "testutil.h"
#include "io_internal.h"
#include "pno/io.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static void write_raw(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	if (n)
		assert_int_equal(fwrite(p, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_raw(const char *path, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *b;
	long len;
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	b = malloc((size_t)len + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)len, fp), (size_t)len);
	fclose(fp);
	*n = (size_t)len;
	return b;
}

/* A file of: u64 LE len(json), json, `dlen` data bytes (0, 1, 2, ...). */
static void write_st(const char *path, const char *json, size_t dlen)
{
	size_t hl = strlen(json), n = 8 + hl + dlen;
	unsigned char *b = malloc(n ? n : 1);
	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, json, hl);
	for (size_t i = 0; i < dlen; i++)
		b[8 + hl + i] = (unsigned char)i;
	write_raw(path, b, n);
	free(b);
}

static void remove_temps(const char *path)
{
	char dir[1024], pre[1024], full[2100];
	const char *slash = strrchr(path, '/');
	DIR *d;
	struct dirent *e;
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	snprintf(pre, sizeof pre, "%s.tmp.", slash + 1);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strncmp(e->d_name, pre, strlen(pre)) == 0) {
			snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
			unlink(full);
		}
	closedir(d);
}

static enum pno_status read_status(const char *path)
{
	struct pno_safetensors st;
	enum pno_status s = pno_safetensors_read(&st, path);
	pno_safetensors_free(&st);
	return s;
}

/* A small model, version v: every value depends on v. */
struct model {
	float a[6], b[1], w[24];
	struct pno_tensor_view t[4];
	char meta[128];
};

static void model_make(struct model *m, int v, size_t n_w, float *w_big)
{
	for (int i = 0; i < 6; i++)
		m->a[i] = (float)(v * 100 + i) + 0.25f;
	m->b[0] = -(float)v;
	for (int i = 0; i < 24; i++)
		m->w[i] = (float)v / (float)(i + 1);
	m->t[0] = (struct pno_tensor_view){"lift.weight", 2, {2, 3}, m->a};
	m->t[1] = (struct pno_tensor_view){"scale", 0, {0}, m->b};
	m->t[2] = (struct pno_tensor_view){"spectral.0.weight", 4, {2, 2, 3, 2},
					   m->w};
	m->t[3] = (struct pno_tensor_view){"empty", 2, {4, 0}, NULL};
	if (w_big) {	/* replace the spectral weight by a large one */
		for (size_t i = 0; i < n_w; i++)
			w_big[i] = (float)v;
		m->t[2].ndim = 1;
		m->t[2].shape[0] = (int64_t)n_w;
		m->t[2].data = w_big;
	}
	snprintf(m->meta, sizeof m->meta,
		 "{\"arch\": \"fno\", \"version\": \"%d\", \"loss\": \"0.5\"}", v);
}

/* Read path and check it is exactly model version v. */
static void model_check(const char *path, int v)
{
	struct model m;
	struct pno_safetensors st;
	char want[64];
	model_make(&m, v, 0, NULL);
	assert_status(pno_safetensors_read(&st, path), PNO_STATUS_OK);
	assert_int_equal(st.n, 4);
	for (int i = 0; i < 4; i++) {
		const struct pno_tensor_view *t = &m.t[i];
		const struct pno_st_entry *e = &st.t[i];
		size_t cnt = 1;
		assert_string_equal(e->name, t->name);	/* order kept */
		assert_int_equal(e->ndim, t->ndim);
		for (int d = 0; d < t->ndim; d++) {
			assert_int_equal(e->shape[d], t->shape[d]);
			cnt *= (size_t)t->shape[d];
		}
		assert_int_equal(e->count, cnt);
		assert_int_equal((uintptr_t)e->data % PNO_ALIGN, 0);
		if (cnt)
			assert_memory_equal(e->data, t->data, cnt * sizeof(float));
	}
	assert_ptr_equal(pno_safetensors_find(&st, "scale"), &st.t[1]);
	assert_null(pno_safetensors_find(&st, "nope"));
	snprintf(want, sizeof want, "\"version\":\"%d\"", v);
	assert_non_null(strstr(st.metadata_json, want));
	assert_non_null(strstr(st.metadata_json, "\"arch\":\"fno\""));
	pno_safetensors_free(&st);
	pno_safetensors_free(&st);	/* safe twice */
}

/* ---- tests ---- */

static void test_roundtrip(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("rt.safetensors");
	struct model m;
	unsigned char *b;
	size_t n;
	uint64_t hl = 0;
	model_make(&m, 3, 0, NULL);
	assert_status(pno_safetensors_write(path, m.t, 4, m.meta), PNO_STATUS_OK);
	model_check(path, 3);
	/* header length is a multiple of 8, padded with spaces, and the data
	 * section holds exactly the tensors */
	b = read_raw(path, &n);
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)b[i] << (8 * i);
	assert_int_equal(hl % 8, 0);
	assert_int_equal(n, 8 + hl + (6 + 1 + 24) * 4);
	assert_int_equal(b[8], '{');
	for (uint64_t i = hl; i > 0 && b[8 + i - 1] != '}'; i--)
		assert_int_equal(b[8 + i - 1], ' ');
	assert_null(memchr(b + 8, '\n', hl));
	free(b);
	assert_int_equal(tu_temps_left(path), 0);
	/* names needing JSON escapes survive */
	struct pno_tensor_view odd[2] = {{"a \"quoted\"\\name", 1, {2}, m.a},
					 {"\xce\xbd.weight", 1, {3}, m.a + 2}};
	assert_status(pno_safetensors_write(path, odd, 2, NULL), PNO_STATUS_OK);
	struct pno_safetensors st;
	assert_status(pno_safetensors_read(&st, path), PNO_STATUS_OK);
	assert_string_equal(st.t[0].name, odd[0].name);
	assert_string_equal(st.t[1].name, odd[1].name);
	assert_true(st.t[1].data[0] == m.a[2]);
	pno_safetensors_free(&st);
	/* no metadata: "{}" on read */
	assert_status(pno_safetensors_write(path, m.t, 2, NULL), PNO_STATUS_OK);
	assert_status(pno_safetensors_read(&st, path), PNO_STATUS_OK);
	assert_string_equal(st.metadata_json, "{}");
	assert_int_equal(st.n, 2);
	pno_safetensors_free(&st);
	/* zero tensors */
	assert_status(pno_safetensors_write(path, NULL, 0, "{}"), PNO_STATUS_OK);
	assert_status(pno_safetensors_read(&st, path), PNO_STATUS_OK);
	assert_int_equal(st.n, 0);
	pno_safetensors_free(&st);
	unlink(path);
}

static void test_write_invalid(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("inv.safetensors");
	float x[2] = {1, 2};
	struct pno_tensor_view t[2] = {{"x", 1, {2}, x}, {"x", 1, {2}, x}};
	unlink(path);
	assert_status(pno_safetensors_write(path, t, 1, "{\"n\": 3}"),
		      PNO_STATUS_INVALID);
	assert_err_has("\"n\" is not a string");
	assert_status(pno_safetensors_write(path, t, 1, "[1]"), PNO_STATUS_INVALID);
	assert_status(pno_safetensors_write(path, t, 1, "{\"a\": "),
		      PNO_STATUS_INVALID);
	assert_err_has("line 1");
	assert_status(pno_safetensors_write(path, t, 2, NULL), PNO_STATUS_INVALID);
	assert_err_has("given twice");
	t[1].name = "__metadata__";
	assert_status(pno_safetensors_write(path, t, 2, NULL), PNO_STATUS_INVALID);
	t[1].name = "bad\xff";
	assert_status(pno_safetensors_write(path, t, 2, NULL), PNO_STATUS_INVALID);
	assert_err_has("UTF-8");
	t[1].name = "y";
	t[1].shape[0] = -1;
	assert_status(pno_safetensors_write(path, t, 2, NULL), PNO_STATUS_INVALID);
	assert_err_has("\"y\"");
	t[1].shape[0] = 2;
	t[1].ndim = PNO_MAX_DIMS + 1;
	assert_status(pno_safetensors_write(path, t, 2, NULL), PNO_STATUS_INVALID);
	t[1].ndim = 1;
	t[1].data = NULL;
	assert_status(pno_safetensors_write(path, t, 2, NULL), PNO_STATUS_INVALID);
	assert_int_equal(access(path, F_OK), -1);	/* nothing written */
	assert_int_equal(tu_temps_left(path), 0);
}

/* A file written by hand, with every dtype pno converts and no padding. */
static void test_read_handmade(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("hand.safetensors");
	const char *json =
		"{\"__metadata__\":{\"format\":\"pt\"},"
		"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"h\":{\"dtype\":\"F16\",\"shape\":[1,3],\"data_offsets\":[8,14]},"
		"\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[14,22]},"
		"\"bf\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[22,24]}}";
	size_t hl = strlen(json);
	unsigned char b[1024];
	float w[2] = {1.5f, -3.0f};
	uint16_t h[3] = {0x3C00, 0xC000, 0x0001};	/* 1, -2, 2^-24 */
	double dv = 0.125;
	uint16_t bf = 0x3FC0;	/* 1.5 */
	struct pno_safetensors st;
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, json, hl);
	memcpy(b + 8 + hl, w, 8);
	memcpy(b + 8 + hl + 8, h, 6);
	memcpy(b + 8 + hl + 14, &dv, 8);
	memcpy(b + 8 + hl + 22, &bf, 2);
	write_raw(path, b, 8 + hl + 24);
	assert_status(pno_safetensors_read(&st, path), PNO_STATUS_OK);
	assert_int_equal(st.n, 4);
	assert_string_equal(st.metadata_json, "{\"format\":\"pt\"}");
	const struct pno_st_entry *e = pno_safetensors_find(&st, "w");
	assert_memory_equal(e->data, w, 8);
	e = pno_safetensors_find(&st, "h");
	assert_int_equal(e->ndim, 2);
	assert_true(e->data[0] == 1.0f && e->data[1] == -2.0f &&
		    e->data[2] == 0x1p-24f);
	e = pno_safetensors_find(&st, "d");
	assert_true(e->data[0] == 0.125f);
	e = pno_safetensors_find(&st, "bf");
	assert_int_equal(e->ndim, 0);
	assert_int_equal(e->count, 1);
	assert_true(e->data[0] == 1.5f);
	pno_safetensors_free(&st);
	unlink(path);
}

#define T1(name, dt, shape, b, e)                                             \
	"\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape                 \
	",\"data_offsets\":[" #b "," #e "]}"

static void test_read_corrupt(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("bad.safetensors");
	static const struct {
		const char *json;
		size_t dlen;
		enum pno_status want;
		const char *msg;
	} cases[] = {
		{"{\"a\": ", 0, PNO_STATUS_FORMAT, "line 1, column"},
		{"{\n\"a\": {]}", 0, PNO_STATUS_FORMAT, "line 2, column"},
		{"", 0, PNO_STATUS_FORMAT, "invalid JSON"},
		{"[1, 2]", 0, PNO_STATUS_FORMAT, "not a JSON object"},
		{"{" T1("a", "F32", "[2]", 0, 8) "} x", 8, PNO_STATUS_FORMAT,
		 "invalid JSON"},
		{"{" T1("a", "F32", "[2]", 0, 16) "}", 8, PNO_STATUS_FORMAT,
		 "outside the data section"},
		{"{" T1("a", "F32", "[2]", 8, 0) "}", 8, PNO_STATUS_FORMAT,
		 "outside"},
		{"{" T1("a", "F32", "[2]", 0, 8) "," T1("b", "F32", "[2]", 4, 12) "}",
		 12, PNO_STATUS_FORMAT, "overlap"},
		{"{" T1("a", "F32", "[2]", 0, 8) "," T1("b", "F32", "[2]", 0, 8) "}",
		 8, PNO_STATUS_FORMAT, "overlap"},
		{"{" T1("a", "F32", "[2]", 4, 12) "}", 12, PNO_STATUS_FORMAT, "gap"},
		{"{" T1("a", "F32", "[2]", 0, 8) "}", 9, PNO_STATUS_FORMAT,
		 "data section has 9"},
		{"{" T1("a", "F32", "[3]", 0, 8) "}", 8, PNO_STATUS_FORMAT,
		 "3 elements"},
		{"{" T1("a", "F64", "[2]", 0, 8) "}", 8, PNO_STATUS_FORMAT,
		 "\"a\""},
		{"{" T1("a", "F32", "[-2]", 0, 8) "}", 8, PNO_STATUS_FORMAT,
		 "shape[0]"},
		{"{" T1("a", "F32", "[2.0]", 0, 8) "}", 8, PNO_STATUS_FORMAT,
		 "shape[0]"},
		{"{" T1("a", "F32", "\"2\"", 0, 8) "}", 8, PNO_STATUS_FORMAT,
		 "\"shape\""},
		{"{" T1("a", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", 8,
		 PNO_STATUS_FORMAT, "9 dimensions"},
		{"{" T1("a", "F32", "[4294967296,4294967296,4294967296]", 0, 8) "}",
		 8, PNO_STATUS_FORMAT, "overflow"},
		{"{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
		 PNO_STATUS_FORMAT, "\"dtype\""},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
		 PNO_STATUS_FORMAT, "data_offsets"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}",
		 8, PNO_STATUS_FORMAT, "data_offsets[1]"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, PNO_STATUS_FORMAT,
		 "data_offsets"},
		{"{\"a\":[1]}", 0, PNO_STATUS_FORMAT, "not an object"},
		{"{" T1("a", "X99", "[2]", 0, 8) "}", 8, PNO_STATUS_FORMAT,
		 "unknown dtype \"X99\""},
		{"{" T1("a", "I32", "[2]", 0, 8) "}", 8, PNO_STATUS_UNSUPPORTED,
		 "I32"},
		{"{" T1("a", "F32", "[2]", 0, 8) "," T1("a", "F32", "[2]", 8, 16) "}",
		 16, PNO_STATUS_FORMAT, "duplicate"},
		{"{\"__metadata__\":{\"epochs\":10}}", 0, PNO_STATUS_FORMAT,
		 "\"epochs\" is not a string"},
		{"{\"__metadata__\":[\"x\"]}", 0, PNO_STATUS_FORMAT, "__metadata__"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		write_st(path, cases[i].json, cases[i].dlen);
		pno_clear_error();
		enum pno_status s = read_status(path);
		if (s != cases[i].want || !strstr(pno_last_error(), cases[i].msg) ||
		    !strstr(pno_last_error(), path))
			fail_msg("case %zu (%s): %s \"%s\", want %s with \"%s\"", i,
				 cases[i].json, pno_status_name(s), pno_last_error(),
				 pno_status_name(cases[i].want), cases[i].msg);
	}
	/* short files and impossible header lengths */
	write_raw(path, "", 0);
	assert_status(read_status(path), PNO_STATUS_FORMAT);
	assert_err_has("0 bytes");
	write_raw(path, "\x10\0\0\0\0", 5);
	assert_status(read_status(path), PNO_STATUS_FORMAT);
	unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
	write_raw(path, big, 10);
	assert_status(read_status(path), PNO_STATUS_FORMAT);
	assert_err_has("header length 65535");
	memset(big, 0xff, 8);	/* 2^64 - 1 */
	write_raw(path, big, 16);
	assert_status(read_status(path), PNO_STATUS_FORMAT);
	unlink(path);
	assert_status(read_status(path), PNO_STATUS_NOTFOUND);
	assert_err_has(path);
	char dir[1024];
	snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
	assert_status(read_status(dir), PNO_STATUS_IO);	/* a directory */
}

/* Cut a valid file at every length: always FORMAT, never a crash, no leak. */
static void test_truncation(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("full.safetensors");
	const char *cut = tu_tmp_path("cut.safetensors");
	struct model m;
	unsigned char *b;
	size_t n;
	model_make(&m, 1, 0, NULL);
	assert_status(pno_safetensors_write(path, m.t, 4, m.meta), PNO_STATUS_OK);
	b = read_raw(path, &n);
	tu_alloc_install();
	long live0 = tu_alloc_live();
	for (size_t len = 0; len < n; len++) {
		write_raw(cut, b, len);
		enum pno_status s = read_status(cut);
		if (s != PNO_STATUS_FORMAT)
			fail_msg("cut at %zu of %zu: %s (%s)", len, n,
				 pno_status_name(s), pno_last_error());
	}
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	free(b);
	unlink(path);
	unlink(cut);
}

/* Random byte changes in the header: FORMAT/UNSUPPORTED or a valid read. */
static void test_header_flips(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("flip0.safetensors");
	const char *fl = tu_tmp_path("flip.safetensors");
	struct model m;
	unsigned char *b;
	size_t n, hl;
	int ok = 0;
	model_make(&m, 2, 0, NULL);
	assert_status(pno_safetensors_write(path, m.t, 4, m.meta), PNO_STATUS_OK);
	b = read_raw(path, &n);
	hl = b[0] | (size_t)b[1] << 8;
	for (uint64_t it = 0; it < 3000; it++) {
		unsigned char *c = malloc(n);
		int nflip = 1 + (int)(pno_rng_u64(7, 0, it) % 3);
		memcpy(c, b, n);
		for (int k = 0; k < nflip; k++) {
			uint64_t r = pno_rng_u64(7, 1 + (uint64_t)k, it);
			/* mostly the JSON, sometimes the length bytes */
			size_t pos = (r & 15) == 0 ? (r >> 8) % 8 : 8 + (r >> 8) % hl;
			c[pos] = (r & 16) ? (unsigned char)(r >> 40)
					  : (unsigned char)(c[pos] ^ (1u << ((r >> 32) & 7)));
		}
		write_raw(fl, c, n);
		struct pno_safetensors st;
		enum pno_status s = pno_safetensors_read(&st, fl);
		if (s == PNO_STATUS_OK) {
			ok++;
			for (int i = 0; i < st.n; i++)
				assert_true(st.t[i].count == 0 || st.t[i].data);
		} else if (s != PNO_STATUS_FORMAT && s != PNO_STATUS_UNSUPPORTED) {
			fail_msg("iteration %llu: %s (%s)", (unsigned long long)it,
				 pno_status_name(s), pno_last_error());
		}
		pno_safetensors_free(&st);
		free(c);
	}
	assert_true(ok > 0);	/* flips inside names or metadata still read */
	free(b);
	unlink(path);
	unlink(fl);
}

/* Allocation failure at every point of write and read: NOMEM, nothing
 * leaked, the old file intact. */
static void test_alloc_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("alloc.safetensors");
	struct model a, b;
	model_make(&a, 1, 0, NULL);
	model_make(&b, 2, 0, NULL);
	assert_status(pno_safetensors_write(path, a.t, 4, a.meta), PNO_STATUS_OK);
	tu_alloc_install();
	long live0 = tu_alloc_live(), n;
	for (n = 1;; n++) {
		tu_alloc_reset(n);
		if (tu_alloc_step(pno_safetensors_write(path, b.t, 4, b.meta),
				  live0))
			break;
		tu_alloc_reset(0);
		model_check(path, 1);
		assert_int_equal(tu_temps_left(path), 0);
	}
	assert_true(n > 5);
	tu_alloc_reset(0);
	model_check(path, 2);
	for (n = 1;; n++) {
		struct pno_safetensors st;
		tu_alloc_reset(n);
		if (tu_alloc_step(pno_safetensors_read(&st, path), live0)) {
			pno_safetensors_free(&st);
			break;
		}
		assert_int_equal(st.n, 0);
		assert_null(st.t);
	}
	assert_true(n > 5);
	assert_int_equal(tu_alloc_live(), live0);
	tu_alloc_uninstall();
	unlink(path);
}

/* I/O failure at every write/flush/fsync/close/rename point. */
static void test_io_failures(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("iofail.safetensors");
	struct model a, b;
	long n;
	model_make(&a, 1, 0, NULL);
	model_make(&b, 2, 0, NULL);
	assert_status(pno_safetensors_write(path, a.t, 4, a.meta), PNO_STATUS_OK);
	for (n = 1;; n++) {
		pno__io_fault_reset(n);
		enum pno_status s = pno_safetensors_write(path, b.t, 4, b.meta);
		long points = pno__io_fault_count();
		pno__io_fault_reset(0);
		if (points < n) {
			assert_status(s, PNO_STATUS_OK);
			break;
		}
		assert_status(s, PNO_STATUS_IO);
		assert_err_has(path);
		assert_err_has("Input/output error");
		/* the last point is the directory fsync, after the rename */
		if (strstr(pno_last_error(), "renamed"))
			model_check(path, 2);
		else
			model_check(path, 1);
		assert_int_equal(tu_temps_left(path), 0);
		assert_status(pno_safetensors_write(path, a.t, 4, a.meta),
			      PNO_STATUS_OK);
	}
	assert_true(n >= 8);
	model_check(path, 2);
	unlink(path);
}

static void test_atomic_api(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("atomic.txt");
	struct pno_atomic_file f = {0};
	unsigned char *b;
	size_t n;
	struct stat sb;
	unlink(path);
	assert_status(pno_atomic_open(&f, path, 0), PNO_STATUS_OK);
	assert_non_null(strstr(f.tmp_path, ".tmp."));
	fputs("first", f.fp);
	assert_int_equal(access(path, F_OK), -1);	/* not visible yet */
	assert_status(pno_atomic_commit(&f), PNO_STATUS_OK);
	assert_null(f.fp);
	pno_atomic_abort(&f);	/* safe after commit */
	b = read_raw(path, &n);
	assert_int_equal(n, 5);
	assert_memory_equal(b, "first", 5);
	free(b);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);
	/* existing target without overwrite: EXISTS, nothing touched */
	assert_status(pno_atomic_open(&f, path, 0), PNO_STATUS_EXISTS);
	assert_err_has(path);
	assert_null(f.fp);
	/* abort leaves the old file and no temp */
	assert_status(pno_atomic_open(&f, path, 1), PNO_STATUS_OK);
	fputs("second", f.fp);
	pno_atomic_abort(&f);
	b = read_raw(path, &n);
	assert_memory_equal(b, "first", 5);
	free(b);
	assert_int_equal(tu_temps_left(path), 0);
	/* unwritable places: IO naming the path */
	assert_status(pno_atomic_open(&f, "/nonexistent-pno-dir/m.safetensors", 1),
		      PNO_STATUS_IO);
	assert_err_has("/nonexistent-pno-dir/m.safetensors");
	assert_err_has("No such file or directory");
	char under_file[1100];
	snprintf(under_file, sizeof under_file, "%s/m.safetensors", path);
	struct model m;
	model_make(&m, 1, 0, NULL);
	assert_status(pno_safetensors_write(under_file, m.t, 4, NULL),
		      PNO_STATUS_IO);
	assert_err_has(under_file);
	assert_err_has("Not a directory");
	pno_atomic_abort(NULL);
	unlink(path);
}

/* A writer SIGKILLed at random moments never leaves a broken target: it
 * always reads back as one complete version. A kill can leave the writer's
 * "<name>.tmp.XXXXXX" file behind (partial, or complete if the kill fell
 * between fsync and rename); that is accepted and documented in io.h:
 * such files are never read as the target and can be deleted. */
static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_kill(void **state)
{
	(void)state;
	const char *path = tu_tmp_path("kill.safetensors");
	enum { NW = 2 * 1024 * 1024 };	/* 8 MB of float32 */
	float *big = malloc(NW * sizeof(float));
	struct model m;
	int max_v = 0, temps = 0;
	assert_non_null(big);
	model_make(&m, 0, NW, big);
	double t0 = now_ms();
	assert_status(pno_safetensors_write(path, m.t, 4, m.meta), PNO_STATUS_OK);
	double write_ms = now_ms() - t0;
	for (uint64_t round = 0; round < 8; round++) {
		int pfd[2];
		assert_int_equal(pipe(pfd), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* report each completed version through the pipe */
			close(pfd[0]);
			for (int v = 1;; v++) {
				model_make(&m, v, NW, big);
				if (pno_safetensors_write(path, m.t, 4, m.meta))
					_exit(1);
				if (write(pfd[1], "x", 1) != 1)
					_exit(1);
			}
		}
		close(pfd[1]);
		/* let 0..2 versions complete, then kill at a random moment
		 * within about one write (5..50 ms when writes are fast) */
		int done = (int)(round % 3);
		char c;
		for (int k = 0; k < done; k++)
			assert_int_equal(read(pfd[0], &c, 1), 1);
		double span = write_ms * 1.5 > 45 ? write_ms * 1.5 : 45;
		long us = 5000 + (long)(pno_rng_u64(11, 0, round) % (uint64_t)(span * 1000));
		struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int wst;
		assert_int_equal(waitpid(pid, &wst, 0), pid);
		assert_true(WIFSIGNALED(wst));
		close(pfd[0]);
		/* the target is one complete version, at least the last one
		 * reported done */
		struct pno_safetensors st;
		assert_status(pno_safetensors_read(&st, path), PNO_STATUS_OK);
		assert_int_equal(st.n, 4);
		const struct pno_st_entry *w = pno_safetensors_find(&st, "spectral.0.weight");
		const struct pno_st_entry *s = pno_safetensors_find(&st, "scale");
		assert_non_null(w);
		assert_int_equal(w->count, NW);
		int v = (int)-s->data[0];
		assert_true(v >= done);
		char want[32];
		snprintf(want, sizeof want, "\"version\":\"%d\"", v);
		assert_non_null(strstr(st.metadata_json, want));
		for (size_t i = 0; i < NW; i++)
			if (w->data[i] != (float)v)
				fail_msg("round %llu: version %d torn at %zu",
					 (unsigned long long)round, v, i);
		pno_safetensors_free(&st);
		if (v > max_v)
			max_v = v;
		temps += tu_temps_left(path);
		remove_temps(path);
	}
	print_message("kill test: one write %.1f ms, newest version seen %d, "
		      "%d temp file(s) left by kills\n", write_ms, max_v, temps);
	free(big);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_write_invalid),
		cmocka_unit_test(test_read_handmade),
		cmocka_unit_test(test_read_corrupt),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_header_flips),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_io_failures),
		cmocka_unit_test(test_atomic_api),
		cmocka_unit_test(test_kill),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
