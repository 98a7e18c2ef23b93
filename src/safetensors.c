/* safetensors: writer (F32, atomic) and a strict reader (F32, F64, F16,
 * BF16 converted to float). Layout: u64 LE header length, JSON header
 * padded with spaces to 8 bytes, then the tensor bytes back to back. */
#include "internal.h"
#include "io_internal.h"
#include "pno/io.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pno safetensors I/O assumes a little-endian host"
#endif

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* ---- writer ---- */

/* Parse caller metadata: NULL, or an object whose values are strings. */
static enum pno_status parse_metadata(json_t **out, const char *path,
				      const char *metadata_json)
{
	json_error_t err;
	json_t *m;
	const char *key;
	json_t *v;
	*out = NULL;
	if (!metadata_json)
		return PNO_STATUS_OK;
	m = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &err);
	if (!m || pno__json_oom()) {
		/* jansson reports allocation failure as a parse error */
		json_decref(m);
		if (pno__json_oom())
			return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: metadata is not valid JSON (line %d, column %d): %s",
				   path, err.line, err.column, err.text);
	}
	if (!json_is_object(m)) {
		json_decref(m);
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: metadata must be a JSON object", path);
	}
	json_object_foreach(m, key, v) {
		if (!json_is_string(v)) {
			pno__errorf(PNO_STATUS_INVALID,
				    "%s: metadata value \"%s\" is not a string "
				    "(safetensors allows only strings)", path, key);
			json_decref(m);	/* owns key */
			return PNO_STATUS_INVALID;
		}
	}
	*out = m;
	return PNO_STATUS_OK;
}

static enum pno_status check_view(const struct pno_tensor_view *v, int i,
				  const char *path, size_t *bytes)
{
	size_t count = 1;
	if (!v->name || !*v->name)
		return pno__errorf(PNO_STATUS_INVALID, "%s: tensor %d has no name",
				   path, i);
	{
		/* jansson keys must be UTF-8; json_string validates */
		json_t *js = json_string(v->name);
		if (!js)
			return pno__json_oom()
				       ? pno__errorf(PNO_STATUS_NOMEM,
						     "%s: out of memory", path)
				       : pno__errorf(PNO_STATUS_INVALID,
						     "%s: tensor %d: name is not valid "
						     "UTF-8", path, i);
		json_decref(js);
	}
	if (strcmp(v->name, "__metadata__") == 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: \"__metadata__\" is reserved, not a tensor name",
				   path);
	if (v->ndim < 0 || v->ndim > PNO_MAX_DIMS)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: tensor \"%s\" has ndim %d (allowed 0..%d)", path,
				   v->name, v->ndim, PNO_MAX_DIMS);
	for (int d = 0; d < v->ndim; d++) {
		if (v->shape[d] < 0)
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: tensor \"%s\" has negative dimension %lld",
					   path, v->name, (long long)v->shape[d]);
		if (pno__mul_overflow(count, (size_t)v->shape[d], &count))
			goto overflow;
	}
	if (pno__mul_overflow(count, sizeof(float), bytes) ||
	    *bytes > (size_t)INT64_MAX)
		goto overflow;
	if (count > 0 && !v->data)
		return pno__errorf(PNO_STATUS_INVALID, "%s: tensor \"%s\" has no data",
				   path, v->name);
	return PNO_STATUS_OK;
overflow:
	return pno__errorf(PNO_STATUS_INVALID, "%s: tensor \"%s\" is too large",
			   path, v->name);
}

#define NOMEM_IF(expr)                                                        \
	do {                                                                  \
		if (expr) {                                                   \
			s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory",  \
					path);                                \
			goto cleanup;                                         \
		}                                                             \
	} while (0)

/* json_object_set_new takes the reference even when it fails. */
static int set_steal(json_t *obj, const char *key, json_t **v)
{
	json_t *x = *v;
	*v = NULL;
	return json_object_set_new(obj, key, x);
}

/* Build the header JSON (tensors in the given order, contiguous). */
static enum pno_status build_header(char **out, const char *path,
				    const struct pno_tensor_view *t, int n,
				    json_t *meta)
{
	enum pno_status s = PNO_STATUS_OK;
	json_t *root = json_object(), *e = NULL, *shape = NULL, *offs = NULL;
	uint64_t off = 0;
	*out = NULL;
	NOMEM_IF(!root);
	if (meta)
		NOMEM_IF(json_object_set(root, "__metadata__", meta) != 0);
	for (int i = 0; i < n; i++) {
		size_t bytes = 0;
		if ((s = check_view(&t[i], i, path, &bytes)) != PNO_STATUS_OK)
			goto cleanup;
		if (json_object_get(root, t[i].name)) {
			s = pno__errorf(PNO_STATUS_INVALID,
					"%s: tensor name \"%s\" given twice", path,
					t[i].name);
			goto cleanup;
		}
		NOMEM_IF(!(e = json_object()) || !(shape = json_array()) ||
			 !(offs = json_array()));
		for (int d = 0; d < t[i].ndim; d++)
			NOMEM_IF(json_array_append_new(shape,
						       json_integer(t[i].shape[d])));
		NOMEM_IF(json_array_append_new(offs, json_integer((json_int_t)off)));
		off += bytes;
		NOMEM_IF(json_array_append_new(offs, json_integer((json_int_t)off)));
		NOMEM_IF(json_object_set_new(e, "dtype", json_string("F32")));
		NOMEM_IF(set_steal(e, "shape", &shape));
		NOMEM_IF(set_steal(e, "data_offsets", &offs));
		NOMEM_IF(set_steal(root, t[i].name, &e));
	}
	/* jansson 2.14 can drop a key and still succeed when an allocation
	 * fails inside json_dumps: trust the text only if none failed */
	*out = pno__json_dumps(root, JSON_COMPACT);
	NOMEM_IF(!*out || pno__json_oom());
cleanup:
	json_decref(shape);
	json_decref(offs);
	json_decref(e);
	json_decref(root);
	return s;
}

enum pno_status pno_safetensors_write(const char *path,
				      const struct pno_tensor_view *t, int n,
				      const char *metadata_json)
{
	enum pno_status s;
	struct pno_atomic_file f = {0};
	json_t *meta = NULL;
	char *hdr = NULL;
	size_t hlen, padded;
	unsigned char len8[8];

	pno__json_init();
	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "safetensors write: empty path");
	if (n < 0 || (n > 0 && !t))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: invalid tensor list (n = %d)", path, n);
	if ((s = parse_metadata(&meta, path, metadata_json)) != PNO_STATUS_OK)
		goto cleanup;
	if ((s = build_header(&hdr, path, t, n, meta)) != PNO_STATUS_OK)
		goto cleanup;
	hlen = strlen(hdr);
	padded = (hlen + 7) & ~(size_t)7;
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));

	if ((s = pno_atomic_open(&f, path, 1)) != PNO_STATUS_OK)
		goto cleanup;
	if (pno__fwrite_all(f.fp, len8, 8) != 0 ||
	    pno__fwrite_all(f.fp, hdr, hlen) != 0 ||
	    pno__fwrite_all(f.fp, "       ", padded - hlen) != 0)
		goto write_error;
	for (int i = 0; i < n; i++) {
		size_t count = 1;
		for (int d = 0; d < t[i].ndim; d++)
			count *= (size_t)t[i].shape[d];	/* checked above */
		if (pno__fwrite_all(f.fp, t[i].data, count * sizeof(float)) != 0)
			goto write_error;
	}
	s = pno_atomic_commit(&f);
	goto cleanup;
write_error:
	s = pno__errorf(PNO_STATUS_IO, "%s: write to %s failed: %s", path,
			f.tmp_path, strerror(errno));
cleanup:
	pno_atomic_abort(&f);
	pno_free(hdr);
	json_decref(meta);
	return s;
}

/* ---- reader ---- */

enum st_dtype { DT_F32, DT_F64, DT_F16, DT_BF16 };

static const struct {
	const char *name;
	int size;		/* 0: a valid safetensors dtype pno cannot read */
	enum st_dtype dt;
} st_dtypes[] = {
	{"F32", 4, DT_F32}, {"F64", 8, DT_F64}, {"F16", 2, DT_F16},
	{"BF16", 2, DT_BF16}, {"BOOL", 0, 0}, {"U8", 0, 0}, {"I8", 0, 0},
	{"I16", 0, 0}, {"U16", 0, 0}, {"I32", 0, 0}, {"U32", 0, 0},
	{"I64", 0, 0}, {"U64", 0, 0}, {"F8_E4M3", 0, 0}, {"F8_E5M2", 0, 0},
};

static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f,
		 m = h & 0x3ff, bits;
	float f;
	if (e == 0x1f) {
		bits = sign | 0x7f800000u | (m << 13);
	} else if (e == 0) {
		/* zero or subnormal: m * 2^-24 */
		f = (float)m * 0x1p-24f;
		return sign ? -f : f;
	} else {
		bits = sign | ((e + 112) << 23) | (m << 13);
	}
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* Where a tensor's bytes are, while the header is being checked. */
struct st_span {
	uint64_t begin, end;
	int idx;
};

static int span_cmp(const void *a, const void *b)
{
	const struct st_span *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->idx - y->idx;
}

/* Check one header entry and fill e (name allocated) and span. */
static enum pno_status parse_entry(struct pno_st_entry *e, struct st_span *sp,
				   int *dsize, enum st_dtype *dt,
				   const char *path, const char *name,
				   json_t *v, uint64_t data_len)
{
	json_t *jd, *js, *jo;
	const char *dts;
	uint64_t off[2];
	size_t count = 1, bytes;
	size_t k;

	if (!json_is_object(v))
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": header entry is not an object",
				   path, name);
	jd = json_object_get(v, "dtype");
	js = json_object_get(v, "shape");
	jo = json_object_get(v, "data_offsets");
	if (!json_is_string(jd))
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": \"dtype\" missing or not a string",
				   path, name);
	if (!json_is_array(js))
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": \"shape\" missing or not an array",
				   path, name);
	if (!json_is_array(jo) || json_array_size(jo) != 2)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": \"data_offsets\" missing or not "
				   "an array of 2 integers", path, name);
	dts = json_string_value(jd);
	*dsize = -1;
	for (k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
		if (strcmp(dts, st_dtypes[k].name) == 0) {
			*dsize = st_dtypes[k].size;
			*dt = st_dtypes[k].dt;
		}
	if (*dsize < 0)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": unknown dtype \"%.40s\"", path,
				   name, dts);
	if (*dsize == 0)
		return pno__errorf(PNO_STATUS_UNSUPPORTED,
				   "%s: tensor \"%s\": dtype %s is not supported (pno "
				   "reads F32, F64, F16, BF16)", path, name, dts);
	if (json_array_size(js) > PNO_MAX_DIMS)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": %zu dimensions (at most %d)",
				   path, name, json_array_size(js), PNO_MAX_DIMS);
	e->ndim = (int)json_array_size(js);
	for (int d = 0; d < e->ndim; d++) {
		json_t *x = json_array_get(js, (size_t)d);
		json_int_t dim;
		if (!json_is_integer(x) || (dim = json_integer_value(x)) < 0)
			return pno__errorf(PNO_STATUS_FORMAT,
					   "%s: tensor \"%s\": shape[%d] is not a "
					   "non-negative integer", path, name, d);
		e->shape[d] = dim;
		if (pno__mul_overflow(count, (size_t)dim, &count))
			return pno__errorf(PNO_STATUS_FORMAT,
					   "%s: tensor \"%s\": shape overflows", path,
					   name);
	}
	for (int j = 0; j < 2; j++) {
		json_t *x = json_array_get(jo, (size_t)j);
		if (!json_is_integer(x) || json_integer_value(x) < 0)
			return pno__errorf(PNO_STATUS_FORMAT,
					   "%s: tensor \"%s\": data_offsets[%d] is not a "
					   "non-negative integer", path, name, j);
		off[j] = (uint64_t)json_integer_value(x);
	}
	if (off[0] > off[1] || off[1] > data_len)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": data_offsets [%llu, %llu] outside "
				   "the data section of %llu bytes", path, name,
				   (unsigned long long)off[0], (unsigned long long)off[1],
				   (unsigned long long)data_len);
	if (pno__mul_overflow(count, (size_t)*dsize, &bytes) ||
	    bytes != off[1] - off[0])
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensor \"%s\": shape has %zu elements of %s but "
				   "data_offsets span %llu bytes", path, name, count, dts,
				   (unsigned long long)(off[1] - off[0]));
	e->count = count;
	sp->begin = off[0];
	sp->end = off[1];
	e->name = pno_strdup(name);
	if (!e->name)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
	return PNO_STATUS_OK;
}

/* Read `bytes` at absolute `pos` of fp into dst. */
static enum pno_status read_at(FILE *fp, const char *path, const char *what,
			       uint64_t pos, void *dst, size_t bytes)
{
	if (bytes == 0)
		return PNO_STATUS_OK;
	if (pos > (uint64_t)INT64_MAX || fseeko(fp, (off_t)pos, SEEK_SET) != 0)
		return pno__errorf(PNO_STATUS_IO, "%s: seek to %s failed: %s", path,
				   what, strerror(errno));
	if (fread(dst, 1, bytes, fp) != bytes)
		return pno__errorf(ferror(fp) ? PNO_STATUS_IO : PNO_STATUS_FORMAT,
				   "%s: short read of %s (file changed or I/O error)",
				   path, what);
	return PNO_STATUS_OK;
}

/* Read one tensor's bytes and convert to float. */
static enum pno_status load_tensor(struct pno_st_entry *e, FILE *fp,
				   const char *path, uint64_t pos, int dsize,
				   enum st_dtype dt)
{
	enum pno_status s;
	size_t bytes = e->count * (size_t)dsize;	/* checked in parse_entry */
	void *raw;
	e->data = pno_malloc(e->count * sizeof(float));
	if (!e->data)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory for \"%s\"",
				   path, e->name);
	if (dt == DT_F32)
		return read_at(fp, path, e->name, pos, e->data, bytes);
	raw = pno_malloc(bytes);
	if (!raw)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory for \"%s\"",
				   path, e->name);
	s = read_at(fp, path, e->name, pos, raw, bytes);
	for (size_t i = 0; s == PNO_STATUS_OK && i < e->count; i++) {
		if (dt == DT_F64) {
			double x;
			memcpy(&x, (char *)raw + 8 * i, 8);
			e->data[i] = (float)x;
		} else {
			uint16_t h;
			memcpy(&h, (char *)raw + 2 * i, 2);
			if (dt == DT_F16) {
				e->data[i] = f16_to_f32(h);
			} else {
				uint32_t b = (uint32_t)h << 16;
				memcpy(&e->data[i], &b, 4);
			}
		}
	}
	pno_free(raw);
	return s;
}

/* Tensors must tile the data section exactly: no overlap, no gap. */
static enum pno_status check_spans(struct st_span *sp, int n,
				   const struct pno_st_entry *t, const char *path,
				   uint64_t data_len)
{
	uint64_t end = 0;
	qsort(sp, (size_t)n, sizeof *sp, span_cmp);
	for (int i = 0; i < n; i++) {
		if (sp[i].begin < end)
			return pno__errorf(PNO_STATUS_FORMAT,
					   "%s: tensors \"%s\" and \"%s\" overlap "
					   "(data_offsets [%llu, %llu] and [%llu, %llu])",
					   path, t[sp[i - 1].idx].name, t[sp[i].idx].name,
					   (unsigned long long)sp[i - 1].begin,
					   (unsigned long long)sp[i - 1].end,
					   (unsigned long long)sp[i].begin,
					   (unsigned long long)sp[i].end);
		if (sp[i].begin > end)
			return pno__errorf(PNO_STATUS_FORMAT,
					   "%s: gap of %llu unused bytes before tensor "
					   "\"%s\" in the data section", path,
					   (unsigned long long)(sp[i].begin - end),
					   t[sp[i].idx].name);
		end = sp[i].end;
	}
	if (end != data_len)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: tensors cover %llu bytes but the data section "
				   "has %llu", path, (unsigned long long)end,
				   (unsigned long long)data_len);
	return PNO_STATUS_OK;
}

enum pno_status pno_safetensors_read(struct pno_safetensors *st,
				     const char *path)
{
	enum pno_status s = PNO_STATUS_OK;
	FILE *fp = NULL;
	struct stat sb;
	unsigned char len8[8];
	uint64_t hlen = 0, fsize, data_len;
	char *hdr = NULL;
	json_t *root = NULL, *meta = NULL, *v;
	json_error_t err;
	const char *key;
	struct st_span *spans = NULL;
	int *dsizes = NULL;
	enum st_dtype *dts = NULL;
	size_t n = 0;
	int i;

	pno__json_init();
	if (!st)
		return pno__errorf(PNO_STATUS_INVALID, "safetensors read: NULL output");
	memset(st, 0, sizeof *st);
	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "safetensors read: empty path");
	fp = fopen(path, "rb");
	if (!fp)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
						   : PNO_STATUS_IO,
				   "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		s = pno__errorf(PNO_STATUS_IO, "%s: not a regular file", path);
		goto cleanup;
	}
	fsize = (uint64_t)sb.st_size;
	if (fsize < 8) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: file has %llu bytes, too short for a safetensors "
				"header (8-byte length)", path, (unsigned long long)fsize);
		goto cleanup;
	}
	if ((s = read_at(fp, path, "header length", 0, len8, 8)) != PNO_STATUS_OK)
		goto cleanup;
	for (i = 0; i < 8; i++)
		hlen |= (uint64_t)len8[i] << (8 * i);
	if (hlen > ST_MAX_HEADER || hlen > fsize - 8) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: header length %llu is impossible (file has %llu "
				"bytes, limit %llu)", path, (unsigned long long)hlen,
				(unsigned long long)fsize,
				(unsigned long long)ST_MAX_HEADER);
		goto cleanup;
	}
	data_len = fsize - 8 - hlen;
	hdr = pno_malloc((size_t)hlen + 1);
	if (!hdr) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		goto cleanup;
	}
	if ((s = read_at(fp, path, "header", 8, hdr, (size_t)hlen)) != PNO_STATUS_OK)
		goto cleanup;
	hdr[hlen] = '\0';
	root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
	if (!root || pno__json_oom()) {
		if (pno__json_oom())
			s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		else
			s = pno__errorf(PNO_STATUS_FORMAT,
					"%s: invalid JSON header at line %d, column %d: %s",
					path, err.line, err.column, err.text);
		goto cleanup;
	}
	if (!json_is_object(root)) {
		s = pno__errorf(PNO_STATUS_FORMAT, "%s: header is not a JSON object",
				path);
		goto cleanup;
	}
	meta = json_object_get(root, "__metadata__");
	if (meta) {
		if (!json_is_object(meta)) {
			s = pno__errorf(PNO_STATUS_FORMAT,
					"%s: \"__metadata__\" is not an object", path);
			goto cleanup;
		}
		json_object_foreach(meta, key, v) {
			if (!json_is_string(v)) {
				s = pno__errorf(PNO_STATUS_FORMAT,
						"%s: metadata value \"%s\" is not a string",
						path, key);
				goto cleanup;
			}
		}
		st->metadata_json = pno__json_dumps(meta, JSON_COMPACT);
	} else {
		st->metadata_json = pno_strdup("{}");
	}
	n = json_object_size(root) - (meta ? 1 : 0);
	if (n > INT_MAX / 2) {
		s = pno__errorf(PNO_STATUS_FORMAT, "%s: too many tensors", path);
		goto cleanup;
	}
	st->t = pno_calloc(n ? n : 1, sizeof *st->t);
	spans = pno_calloc(n ? n : 1, sizeof *spans);
	dsizes = pno_calloc(n ? n : 1, sizeof *dsizes);
	dts = pno_calloc(n ? n : 1, sizeof *dts);
	if (!st->metadata_json || !st->t || !spans || !dsizes || !dts ||
	    pno__json_oom()) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		goto cleanup;
	}
	i = 0;
	json_object_foreach(root, key, v) {
		if (v == meta)
			continue;
		spans[i].idx = i;
		st->n = i + 1;
		s = parse_entry(&st->t[i], &spans[i], &dsizes[i], &dts[i], path,
				key, v, data_len);
		if (s != PNO_STATUS_OK)
			goto cleanup;
		i++;
	}
	if ((s = check_spans(spans, st->n, st->t, path, data_len)) != PNO_STATUS_OK)
		goto cleanup;
	for (i = 0; i < st->n; i++) {
		int k = spans[i].idx;
		s = load_tensor(&st->t[k], fp, path, 8 + hlen + spans[i].begin,
				dsizes[k], dts[k]);
		if (s != PNO_STATUS_OK)
			goto cleanup;
	}
cleanup:
	if (fp)
		fclose(fp);
	json_decref(root);
	pno_free(hdr);
	pno_free(spans);
	pno_free(dsizes);
	pno_free(dts);
	if (s != PNO_STATUS_OK)
		pno_safetensors_free(st);
	return s;
}

const struct pno_st_entry *pno_safetensors_find(const struct pno_safetensors *st,
						const char *name)
{
	if (!st || !name)
		return NULL;
	for (int i = 0; i < st->n; i++)
		if (st->t[i].name && strcmp(st->t[i].name, name) == 0)
			return &st->t[i];
	return NULL;
}

void pno_safetensors_free(struct pno_safetensors *st)
{
	if (!st)
		return;
	for (int i = 0; st->t && i < st->n; i++) {
		pno_free(st->t[i].name);
		pno_free(st->t[i].data);
	}
	pno_free(st->t);
	pno_free(st->metadata_json);
	memset(st, 0, sizeof *st);
}
