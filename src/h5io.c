/* HDF5 datasets in the PDEBench layout: atomic writer (float32, chunked,
 * deflate) and a validating reader producing (input, output) pairs. */
#include "internal.h"
#include "io_internal.h"
#include "pno/io.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H5_CHUNK_MAX_ELEMS ((hsize_t)1 << 20)	/* 4 MB of float32 */
#define H5_CHUNK_GROUP_ELEMS ((hsize_t)1 << 16)	/* 256 KB of float32 */
/* chunk cache of a streamed dataset: room for the partly written chunks
 * of samples that finish out of order */
#define H5_STREAM_CACHE_BYTES ((size_t)64 << 20)

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t h5_err_walk(unsigned n, const H5E_error2_t *e, void *ud)
{
	char *buf = ud;
	if (n == 0 && e->desc)
		snprintf(buf, 200, "%s", e->desc);
	return 0;
}

/* The innermost HDF5 error description, for messages ("" if none). */
static const char *h5_err_text(char buf[200])
{
	buf[0] = '\0';
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5_err_walk, buf);
	H5Eclear2(H5E_DEFAULT);
	return buf;
}

#define H5_CLOSE(fn, id)                                                      \
	do {                                                                  \
		if ((id) >= 0)                                                \
			fn(id);                                               \
		(id) = -1;                                                    \
	} while (0)

/* ---- writer ---- */

static enum pno_status check_array(const struct pno_h5_array *a, int i,
				   const char *path, size_t *count, int stream)
{
	*count = 1;
	if (!a->name || !*a->name)
		return pno__errorf(PNO_STATUS_INVALID, "%s: array %d has no name",
				   path, i);
	if (a->ndim < 0 || a->ndim > PNO_MAX_DIMS)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: dataset '%s' has ndim %d (allowed 0..%d)", path,
				   a->name, a->ndim, PNO_MAX_DIMS);
	for (int d = 0; d < a->ndim; d++)
		if (a->shape[d] < 0 ||
		    pno__mul_overflow(*count, (size_t)a->shape[d], count))
			return pno__errorf(PNO_STATUS_INVALID,
					   "%s: dataset '%s' has an invalid shape", path,
					   a->name);
	if (*count > 0 && !a->data && !stream)
		return pno__errorf(PNO_STATUS_INVALID, "%s: dataset '%s' has no data",
				   path, a->name);
	return PNO_STATUS_OK;
}

/* Chunks of whole samples along the first axis (the whole array in 1D):
 * as many as fit in H5_CHUNK_GROUP_ELEMS (one if a sample is larger),
 * halved along the largest axis until at most H5_CHUNK_MAX_ELEMS. Small
 * samples share a chunk so that each compressed write moves a useful
 * amount of data. */
static hid_t make_dcpl(const struct pno_h5_array *a, size_t count)
{
	hsize_t chunk[PNO_MAX_DIMS], elems = 1;
	unsigned cfg = 0;
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (dcpl < 0 || a->ndim == 0 || count == 0)
		return dcpl;	/* scalar or empty: contiguous */
	for (int d = 0; d < a->ndim; d++) {
		chunk[d] = (hsize_t)a->shape[d];
		if (d == 0 && a->ndim > 1) {
			hsize_t per = count / (hsize_t)a->shape[0];
			hsize_t k = H5_CHUNK_GROUP_ELEMS / (per ? per : 1);
			chunk[d] = k < 1 ? 1 : k < chunk[d] ? k : chunk[d];
		}
		elems *= chunk[d];
	}
	while (elems > H5_CHUNK_MAX_ELEMS) {
		int big = 0;
		for (int d = 1; d < a->ndim; d++)
			if (chunk[d] > chunk[big])
				big = d;
		elems /= chunk[big];
		chunk[big] = (chunk[big] + 1) / 2;
		elems *= chunk[big];
	}
	if (H5Pset_chunk(dcpl, a->ndim, chunk) < 0)
		goto fail;
	if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
	    H5Zget_filter_info(H5Z_FILTER_DEFLATE, &cfg) >= 0 &&
	    (cfg & H5Z_FILTER_CONFIG_ENCODE_ENABLED)) {
		if (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, 4) < 0)
			goto fail;
	}
	return dcpl;
fail:
	H5Pclose(dcpl);
	return -1;
}

/* Create dataset a (and write its data unless keep: then the open dataset
 * is returned in *keep for later per-index writes). */
static enum pno_status write_array(hid_t file, const struct pno_h5_array *a,
				   size_t count, const char *path, hid_t *keep)
{
	enum pno_status s = PNO_STATUS_OK;
	hsize_t dims[PNO_MAX_DIMS];
	hid_t space = -1, dcpl = -1, ds = -1, dapl = -1;
	char eb[200];
	for (int d = 0; d < a->ndim; d++)
		dims[d] = (hsize_t)a->shape[d];
	space = a->ndim ? H5Screate_simple(a->ndim, dims, NULL)
			: H5Screate(H5S_SCALAR);
	if (space < 0 || (dcpl = make_dcpl(a, count)) < 0)
		goto h5fail;
	if (keep) {
		dapl = H5Pcreate(H5P_DATASET_ACCESS);
		if (dapl < 0 || H5Pset_chunk_cache(dapl, 12421,
						   H5_STREAM_CACHE_BYTES, 1.0) < 0)
			goto h5fail;
	}
	ds = H5Dcreate2(file, a->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl,
			keep ? dapl : H5P_DEFAULT);
	if (ds < 0)
		goto h5fail;
	if (keep) {
		*keep = ds;
		ds = -1;
	} else if (count > 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL,
					 H5S_ALL, H5P_DEFAULT, a->data) < 0) {
		goto h5fail;
	}
	goto cleanup;
h5fail:
	s = pno__errorf(PNO_STATUS_IO, "%s: cannot write dataset '%s': %s", path,
			a->name, h5_err_text(eb));
cleanup:
	H5_CLOSE(H5Dclose, ds);
	H5_CLOSE(H5Pclose, dapl);
	H5_CLOSE(H5Pclose, dcpl);
	H5_CLOSE(H5Sclose, space);
	return s;
}

/* Strings as variable-length UTF-8 (h5py reads them as str). */
static enum pno_status write_attr(hid_t file, const struct pno_h5_attr *at,
				  const char *path)
{
	enum pno_status s = PNO_STATUS_OK;
	hid_t space = -1, type = -1, attr = -1;
	char eb[200];
	if (!at->name || !*at->name)
		return pno__errorf(PNO_STATUS_INVALID, "%s: attribute without a name",
				   path);
	space = H5Screate(H5S_SCALAR);
	if (space < 0)
		goto h5fail;
	if (at->str) {
		type = H5Tcopy(H5T_C_S1);
		if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
		    H5Tset_cset(type, H5T_CSET_UTF8) < 0)
			goto h5fail;
		attr = H5Acreate2(file, at->name, type, space, H5P_DEFAULT,
				  H5P_DEFAULT);
		if (attr < 0 || H5Awrite(attr, type, &at->str) < 0)
			goto h5fail;
	} else {
		attr = H5Acreate2(file, at->name, H5T_IEEE_F64LE, space,
				  H5P_DEFAULT, H5P_DEFAULT);
		if (attr < 0 || H5Awrite(attr, H5T_NATIVE_DOUBLE, &at->num) < 0)
			goto h5fail;
	}
	goto cleanup;
h5fail:
	s = pno__errorf(PNO_STATUS_IO, "%s: cannot write attribute '%s': %s",
			path, at->name, h5_err_text(eb));
cleanup:
	H5_CLOSE(H5Aclose, attr);
	H5_CLOSE(H5Tclose, type);
	H5_CLOSE(H5Sclose, space);
	return s;
}

struct pno_h5_stream {
	char *path, *tmp;
	hid_t file;
	int n;			/* arrays */
	hid_t *ds;		/* streamed datasets (-1 for arrays written whole) */
	int64_t *rows;		/* first-axis length of each streamed array */
	size_t *row_elems;	/* elements per first-axis index */
	unsigned char **seen;	/* per streamed array, one byte per index */
};

static void stream_free(struct pno_h5_stream *s)
{
	for (int i = 0; i < s->n; i++) {
		if (s->ds)
			H5_CLOSE(H5Dclose, s->ds[i]);
		if (s->seen)
			pno_free(s->seen[i]);
	}
	H5_CLOSE(H5Fclose, s->file);
	if (s->tmp)
		unlink(s->tmp);	/* harmless if the rename already happened */
	pno_free(s->ds);
	pno_free(s->rows);
	pno_free(s->row_elems);
	pno_free(s->seen);
	pno_free(s->tmp);
	pno_free(s->path);
	pno_free(s);
}

void pno_h5_stream_abort(struct pno_h5_stream *s)
{
	if (s)
		stream_free(s);
}

/* Arrays with data == NULL and rank >= 1 are streamed: created now,
 * filled one first-axis index at a time by pno_h5_stream_put. */
static int streamed(const struct pno_h5_array *a)
{
	return !a->data && a->ndim >= 1;
}

enum pno_status pno_h5_stream_open(struct pno_h5_stream **out,
				   const char *path,
				   const struct pno_h5_array *a, int n_arrays,
				   int overwrite)
{
	enum pno_status st = PNO_STATUS_OK;
	struct pno_h5_stream *s;
	struct stat sb;
	char eb[200];
	size_t len;
	int fd;

	*out = NULL;
	h5_quiet();
	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "h5 write: empty path");
	if (n_arrays < 0 || (n_arrays > 0 && !a))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: invalid array list", path);
	for (int i = 0; i < n_arrays; i++) {
		size_t count;
		if ((st = check_array(&a[i], i, path, &count, streamed(&a[i]))) !=
		    PNO_STATUS_OK)
			return st;
	}
	if (!overwrite) {
		if (lstat(path, &sb) == 0)
			return pno__errorf(PNO_STATUS_EXISTS,
					   "%s: file exists (refusing to overwrite)",
					   path);
		if (errno != ENOENT)
			return pno__errorf(PNO_STATUS_IO, "%s: cannot stat: %s", path,
					   strerror(errno));
	}
	s = pno_calloc(1, sizeof *s);
	if (!s)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
	s->file = -1;
	s->n = n_arrays;
	len = strlen(path);
	s->path = pno_strdup(path);
	s->tmp = pno_malloc(len + sizeof ".tmp.XXXXXX");
	s->ds = pno_malloc((size_t)(n_arrays ? n_arrays : 1) * sizeof *s->ds);
	s->rows = pno_calloc((size_t)(n_arrays ? n_arrays : 1), sizeof *s->rows);
	s->row_elems = pno_calloc((size_t)(n_arrays ? n_arrays : 1),
				  sizeof *s->row_elems);
	s->seen = pno_calloc((size_t)(n_arrays ? n_arrays : 1), sizeof *s->seen);
	if (!s->path || !s->tmp || !s->ds || !s->rows || !s->row_elems ||
	    !s->seen) {
		pno_free(s->tmp);
		s->tmp = NULL;
		stream_free(s);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
	}
	for (int i = 0; i < n_arrays; i++) {
		s->ds[i] = -1;
		if (!streamed(&a[i]))
			continue;
		size_t count;
		check_array(&a[i], i, path, &count, 1);
		s->rows[i] = a[i].shape[0];
		s->row_elems[i] = a[i].shape[0] ? count / (size_t)a[i].shape[0] : 0;
		s->seen[i] = pno_calloc((size_t)(s->rows[i] ? s->rows[i] : 1), 1);
		if (!s->seen[i]) {
			pno_free(s->tmp);
			s->tmp = NULL;
			stream_free(s);
			return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		}
	}
	memcpy(s->tmp, path, len);
	memcpy(s->tmp + len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
	fd = mkstemp(s->tmp);
	if (fd < 0) {
		st = pno__errorf(PNO_STATUS_IO, "%s: cannot create temporary file %s: %s",
				 path, s->tmp, strerror(errno));
		pno_free(s->tmp);
		s->tmp = NULL;
		stream_free(s);
		return st;
	}
	(void)fchmod(fd, 0644);
	close(fd);
	s->file = H5Fcreate(s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (s->file < 0) {
		st = pno__errorf(PNO_STATUS_IO, "%s: cannot create HDF5 file %s: %s",
				 path, s->tmp, h5_err_text(eb));
		stream_free(s);
		return st;
	}
	for (int i = 0; i < n_arrays; i++) {
		size_t count;
		check_array(&a[i], i, path, &count, streamed(&a[i]));
		hid_t *keep = streamed(&a[i]) ? &s->ds[i] : NULL;
		if ((st = write_array(s->file, &a[i], count, path, keep)) !=
		    PNO_STATUS_OK) {
			stream_free(s);
			return st;
		}
	}
	*out = s;
	return PNO_STATUS_OK;
}

enum pno_status pno_h5_stream_put(struct pno_h5_stream *s, int array,
				  int64_t index, const float *data)
{
	enum pno_status st = PNO_STATUS_OK;
	hsize_t start[PNO_MAX_DIMS] = {0}, count[PNO_MAX_DIMS];
	hid_t fspace = -1, mspace = -1;
	char eb[200];
	int rank;
	if (array < 0 || array >= s->n || s->ds[array] < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: array %d is not streamed", s->path, array);
	if (index < 0 || index >= s->rows[array])
		return pno__errorf(PNO_STATUS_RANGE,
				   "%s: index %lld outside [0, %lld)", s->path,
				   (long long)index, (long long)s->rows[array]);
	if (s->row_elems[array] == 0) {
		s->seen[array][index] = 1;
		return PNO_STATUS_OK;
	}
	fspace = H5Dget_space(s->ds[array]);
	if (fspace < 0 || (rank = H5Sget_simple_extent_dims(fspace, count, NULL)) < 1)
		goto h5fail;
	start[0] = (hsize_t)index;
	count[0] = 1;
	mspace = H5Screate_simple(rank, count, NULL);
	if (mspace < 0 ||
	    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count,
				NULL) < 0 ||
	    H5Dwrite(s->ds[array], H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT,
		     data) < 0)
		goto h5fail;
	s->seen[array][index] = 1;
	goto cleanup;
h5fail:
	st = pno__errorf(PNO_STATUS_IO, "%s: cannot write index %lld of array %d: %s",
			 s->path, (long long)index, array, h5_err_text(eb));
cleanup:
	H5_CLOSE(H5Sclose, mspace);
	H5_CLOSE(H5Sclose, fspace);
	return st;
}

enum pno_status pno_h5_stream_commit(struct pno_h5_stream *s,
				     const struct pno_h5_attr *attrs,
				     int n_attrs)
{
	enum pno_status st = PNO_STATUS_OK;
	char eb[200];
	int fd;
	if (n_attrs < 0 || (n_attrs > 0 && !attrs)) {
		st = pno__errorf(PNO_STATUS_INVALID, "%s: invalid attribute list",
				 s->path);
		goto out;
	}
	for (int i = 0; i < s->n; i++)
		for (int64_t r = 0; s->ds[i] >= 0 && r < s->rows[i]; r++)
			if (!s->seen[i][r]) {
				st = pno__errorf(PNO_STATUS_INTERNAL,
						 "%s: index %lld of array %d was never "
						 "written", s->path, (long long)r, i);
				goto out;
			}
	for (int i = 0; i < n_attrs; i++)
		if ((st = write_attr(s->file, &attrs[i], s->path)) != PNO_STATUS_OK)
			goto out;
	for (int i = 0; i < s->n; i++)
		H5_CLOSE(H5Dclose, s->ds[i]);
	{
		/* close even when the flush fails: the id must not leak */
		int bad = H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0;
		bad |= H5Fclose(s->file) < 0;
		s->file = -1;
		if (bad) {
			st = pno__errorf(PNO_STATUS_IO,
					 "%s: cannot flush HDF5 file %s: %s",
					 s->path, s->tmp, h5_err_text(eb));
			goto out;
		}
	}
	/* HDF5 does not fsync: do it before the rename */
	fd = open(s->tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pno__io_fault() || fsync(fd) != 0) {
		st = pno__errorf(PNO_STATUS_IO, "%s: fsync of %s failed: %s",
				 s->path, s->tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	st = pno_atomic_rename(s->tmp, s->path);
out:
	stream_free(s);
	return st;
}

enum pno_status pno_h5_write(const char *path, const struct pno_h5_array *a,
			     int n_arrays, const struct pno_h5_attr *attrs,
			     int n_attrs, int overwrite)
{
	struct pno_h5_stream *s;
	enum pno_status st;
	for (int i = 0; i < n_arrays && a; i++) {
		size_t count;
		if ((st = check_array(&a[i], i, path ? path : "", &count, 0)) !=
		    PNO_STATUS_OK)
			return st;
	}
	if (n_attrs < 0 || (n_attrs > 0 && !attrs))
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: invalid array or attribute list", path);
	if ((st = pno_h5_stream_open(&s, path, a, n_arrays, overwrite)) !=
	    PNO_STATUS_OK)
		return st;
	return pno_h5_stream_commit(s, attrs, n_attrs);
}

/* ---- reader ---- */

/* Open `path` for reading: NOTFOUND if missing, FORMAT if not HDF5. */
static enum pno_status h5_open(hid_t *file, const char *path)
{
	char eb[200];
	htri_t is;
	*file = -1;
	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "h5 read: empty path");
	if (access(path, R_OK) != 0)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
						   : PNO_STATUS_IO,
				   "%s: cannot open: %s", path, strerror(errno));
	is = H5Fis_hdf5(path);
	if (is <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return pno__errorf(PNO_STATUS_FORMAT, "%s: not an HDF5 file", path);
	}
	*file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (*file < 0)
		return pno__errorf(PNO_STATUS_FORMAT, "%s: cannot open HDF5 file: %s",
				   path, h5_err_text(eb));
	return PNO_STATUS_OK;
}

static int h5_has(hid_t file, const char *name)
{
	htri_t r = H5Lexists(file, name, H5P_DEFAULT);
	if (r > 0) {
		H5O_info_t oi;
		if (H5Oget_info_by_name(file, name, &oi, H5P_DEFAULT) >= 0 &&
		    oi.type == H5O_TYPE_DATASET)
			return 1;
	}
	H5Eclear2(H5E_DEFAULT);
	return 0;
}

/* Read a string attribute of `obj` into buf. */
static enum pno_status attr_string(hid_t obj, const char *path,
				   const char *name, char *buf, size_t bufsize)
{
	enum pno_status s = PNO_STATUS_OK;
	hid_t attr = -1, type = -1, mtype = -1, space = -1;
	char *vstr = NULL, *fixed = NULL;
	const char *val;
	size_t sz;
	htri_t ex = H5Aexists(obj, name);
	char eb[200];
	if (ex <= 0) {
		H5Eclear2(H5E_DEFAULT);
		return pno__errorf(PNO_STATUS_NOTFOUND, "%s: no attribute '%s'", path,
				   name);
	}
	if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0 ||
	    (type = H5Aget_type(attr)) < 0 || (space = H5Aget_space(attr)) < 0)
		goto h5fail;
	if (H5Tget_class(type) != H5T_STRING ||
	    H5Sget_simple_extent_npoints(space) != 1) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: attribute '%s' is not a single string", path, name);
		goto cleanup;
	}
	/* HDF5 will not convert between ASCII and UTF-8: read as stored */
	if ((mtype = H5Tcopy(H5T_C_S1)) < 0 ||
	    H5Tset_cset(mtype, H5Tget_cset(type)) < 0)
		goto h5fail;
	if (H5Tis_variable_str(type) > 0) {
		if (H5Tset_size(mtype, H5T_VARIABLE) < 0 ||
		    H5Aread(attr, mtype, &vstr) < 0)
			goto h5fail;
		val = vstr ? vstr : "";
	} else {
		sz = H5Tget_size(type);
		if (sz == 0 || sz > (1u << 20) || H5Tset_size(mtype, sz + 1) < 0)
			goto h5fail;
		if (!(fixed = pno_calloc(1, sz + 1))) {
			s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
			goto cleanup;
		}
		if (H5Aread(attr, mtype, fixed) < 0)
			goto h5fail;
		val = fixed;
	}
	if (strlen(val) >= bufsize) {
		s = pno__errorf(PNO_STATUS_RANGE,
				"%s: attribute '%s' has %zu bytes, buffer holds %zu",
				path, name, strlen(val), bufsize ? bufsize - 1 : 0);
		goto cleanup;
	}
	memcpy(buf, val, strlen(val) + 1);
	goto cleanup;
h5fail:
	s = pno__errorf(PNO_STATUS_FORMAT, "%s: cannot read attribute '%s': %s",
			path, name, h5_err_text(eb));
cleanup:
	if (vstr)
		H5free_memory(vstr);
	pno_free(fixed);
	H5_CLOSE(H5Tclose, mtype);
	H5_CLOSE(H5Sclose, space);
	H5_CLOSE(H5Tclose, type);
	H5_CLOSE(H5Aclose, attr);
	return s;
}

enum pno_status pno_h5_attr_string(const char *path, const char *name,
				   char *buf, size_t bufsize)
{
	enum pno_status s;
	hid_t file;
	h5_quiet();
	if (!name || !buf || bufsize == 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "pno_h5_attr_string: invalid arguments");
	if ((s = h5_open(&file, path)) != PNO_STATUS_OK)
		return s;
	s = attr_string(file, path, name, buf, bufsize);
	H5Fclose(file);
	return s;
}

/* An open dataset and its extent. */
struct h5_ds {
	hid_t id;
	int rank;
	hsize_t dims[PNO_MAX_DIMS];
};

static const char *const layout_help =
	"expected PDEBench layout: 'nu'+'tensor' or 'tensor' (N,T,X[,Y])";

static void shape_str(char *buf, size_t n, const struct h5_ds *d)
{
	size_t o = (size_t)snprintf(buf, n, "(");
	for (int i = 0; i < d->rank && o < n; i++)
		o += (size_t)snprintf(buf + o, n - o, "%s%llu", i ? ", " : "",
				      (unsigned long long)d->dims[i]);
	if (o < n)
		snprintf(buf + o, n - o, ")");
}

static enum pno_status ds_open(struct h5_ds *d, hid_t file, const char *path,
			       const char *name)
{
	hid_t space = -1, type = -1;
	H5T_class_t cls;
	char eb[200];
	d->id = H5Dopen2(file, name, H5P_DEFAULT);
	if (d->id < 0)
		return pno__errorf(PNO_STATUS_FORMAT, "%s: cannot open dataset '%s': %s",
				   path, name, h5_err_text(eb));
	space = H5Dget_space(d->id);
	type = H5Dget_type(d->id);
	d->rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
	cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
	if (d->rank < 0 || d->rank > PNO_MAX_DIMS ||
	    H5Sget_simple_extent_dims(space, d->dims, NULL) < 0) {
		H5_CLOSE(H5Sclose, space);
		H5_CLOSE(H5Tclose, type);
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: dataset '%s' has an unsupported rank %d", path,
				   name, d->rank);
	}
	H5_CLOSE(H5Sclose, space);
	H5_CLOSE(H5Tclose, type);
	if (cls != H5T_FLOAT && cls != H5T_INTEGER)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "%s: dataset '%s' is not numeric", path, name);
	return PNO_STATUS_OK;
}

/* Read block [start, start+count) of d, as float, into dst. */
static enum pno_status ds_read(const struct h5_ds *d, const char *path,
			       const char *name, const hsize_t *start,
			       const hsize_t *count, float *dst)
{
	enum pno_status s = PNO_STATUS_OK;
	hid_t fs = -1, ms = -1;
	char eb[200];
	fs = H5Dget_space(d->id);
	ms = H5Screate_simple(d->rank, count, NULL);
	if (fs < 0 || ms < 0 ||
	    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
	    H5Dread(d->id, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, dst) < 0)
		s = pno__errorf(PNO_STATUS_IO, "%s: cannot read dataset '%s': %s",
				path, name, h5_err_text(eb));
	H5_CLOSE(H5Sclose, ms);
	H5_CLOSE(H5Sclose, fs);
	return s;
}

/* NaN/Inf check of n samples of `per` values each. */
static enum pno_status check_finite(const float *x, size_t n, size_t per,
				    const char *path, const char *name)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < per; j++)
			if (!isfinite(x[i * per + j]))
				return pno__errorf(PNO_STATUS_NONFINITE,
						   "%s: dataset '%s' sample %zu has a "
						   "non-finite value (%g at flat index %zu)",
						   path, name, i, (double)x[i * per + j],
						   j);
	return PNO_STATUS_OK;
}

static enum pno_status alloc_pairs(struct pno_dataset *d, const char *path,
				   size_t per_in, size_t per_out)
{
	size_t a, b;
	if (pno__mul_overflow((size_t)d->N, per_in, &a) ||
	    pno__mul_overflow(a, sizeof(float), &a) ||
	    pno__mul_overflow((size_t)d->N, per_out, &b) ||
	    pno__mul_overflow(b, sizeof(float), &b))
		return pno__errorf(PNO_STATUS_SHAPE, "%s: dataset too large", path);
	d->in = pno_malloc(a);
	d->out = pno_malloc(b);
	if (!d->in || !d->out)
		return pno__errorf(PNO_STATUS_NOMEM,
				   "%s: out of memory for %zu + %zu bytes", path, a, b);
	return PNO_STATUS_OK;
}

/* Grid sizes and N fit an int; N is capped by max_samples. */
static enum pno_status set_dims(struct pno_dataset *d, const char *path,
				const char *name, const struct h5_ds *t, int first_grid_axis,
				int max_samples)
{
	hsize_t n = t->dims[0];
	char sh[160];
	shape_str(sh, sizeof sh, t);
	if (n == 0)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: dataset '%s' has no samples, shape %s",
				   path, name, sh);
	for (int i = first_grid_axis; i < t->rank; i++)
		if (t->dims[i] == 0 || t->dims[i] > INT_MAX)
			return pno__errorf(PNO_STATUS_SHAPE,
					   "%s: dataset '%s' has grid axis %d of "
					   "size %llu, shape %s", path, name, i,
					   (unsigned long long)t->dims[i], sh);
	if (max_samples > 0 && n > (hsize_t)max_samples)
		n = (hsize_t)max_samples;
	if (n > INT_MAX)
		n = INT_MAX;
	d->N = (int)n;
	d->X = (int)t->dims[first_grid_axis];
	d->Y = t->rank > first_grid_axis + 1 ? (int)t->dims[first_grid_axis + 1]
					      : 1;
	d->dims = t->rank - first_grid_axis;
	return PNO_STATUS_OK;
}

/* The readers check the layout and fill d's shape; with `lazy` they stop
 * there (pno_dataset_open: the samples stay in the file). */
static enum pno_status read_darcy(struct pno_dataset *d, const char *path,
				  const struct h5_ds *nu, const struct h5_ds *t,
				  int max_samples, int lazy)
{
	enum pno_status s;
	hsize_t start[4] = {0, 0, 0, 0}, count[4];
	char sn[160], st[160];
	int off = t->rank == 4 ? 1 : 0;
	shape_str(sn, sizeof sn, nu);
	shape_str(st, sizeof st, t);
	if (nu->rank != 3)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: dataset 'nu' has shape %s, expected (N, H, W)",
				   path, sn);
	if ((t->rank != 3 && t->rank != 4) || (t->rank == 4 && t->dims[1] != 1))
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: dataset 'tensor' has shape %s, expected "
				   "(N, 1, H, W) or (N, H, W) beside 'nu'", path, st);
	if (nu->dims[0] != t->dims[0])
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: 'nu' has %llu samples but 'tensor' has %llu "
				   "(shapes %s and %s)", path,
				   (unsigned long long)nu->dims[0],
				   (unsigned long long)t->dims[0], sn, st);
	if (nu->dims[1] != t->dims[1 + off] || nu->dims[2] != t->dims[2 + off])
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: grids differ: 'nu' %s, 'tensor' %s", path, sn,
				   st);
	if ((s = set_dims(d, path, "nu", nu, 1, max_samples)) != PNO_STATUS_OK)
		return s;
	d->Cin = d->Cout = 1;
	if (lazy)
		return PNO_STATUS_OK;
	if ((s = alloc_pairs(d, path, (size_t)d->X * d->Y,
			     (size_t)d->X * d->Y)) != PNO_STATUS_OK)
		return s;
	count[0] = (hsize_t)d->N;
	count[1] = nu->dims[1];
	count[2] = nu->dims[2];
	if ((s = ds_read(nu, path, "nu", start, count, d->in)) != PNO_STATUS_OK)
		return s;
	if (off) {
		count[1] = 1;
		count[2] = t->dims[2];
		count[3] = t->dims[3];
	}
	if ((s = ds_read(t, path, "tensor", start, count, d->out)) != PNO_STATUS_OK)
		return s;
	if ((s = check_finite(d->in, (size_t)d->N, (size_t)d->X * d->Y, path,
			      "nu")) != PNO_STATUS_OK)
		return s;
	return check_finite(d->out, (size_t)d->N, (size_t)d->X * d->Y, path,
			    "tensor");
}

static enum pno_status read_series(struct pno_dataset *d, const char *path,
				   const struct h5_ds *t,
				   const struct pno_dataset_opts *o, int lazy)
{
	enum pno_status s;
	hsize_t start[4] = {0, 0, 0, 0}, count[4];
	char st[160];
	long T, t_out;
	size_t per;
	shape_str(st, sizeof st, t);
	if (t->rank != 3 && t->rank != 4)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: dataset 'tensor' has shape %s, expected "
				   "(N, T, X) or (N, T, H, W)", path, st);
	T = t->dims[1] > LONG_MAX ? LONG_MAX : (long)t->dims[1];
	t_out = o->t_out == -1 ? T - 1 : o->t_out;
	if (o->t_in < 0 || o->t_in >= T || t_out < 0 || t_out >= T)
		return pno__errorf(PNO_STATUS_RANGE,
				   "%s: time indices t_in = %d, t_out = %d out of range "
				   "for 'tensor' with T = %ld steps, shape %s", path,
				   o->t_in, o->t_out, T, st);
	if (o->t_in == t_out)
		return pno__errorf(PNO_STATUS_RANGE,
				   "%s: t_in and t_out are both %d", path, o->t_in);
	if ((s = set_dims(d, path, "tensor", t, 2, o->max_samples)) != PNO_STATUS_OK)
		return s;
	d->Cin = d->Cout = 1;
	per = (size_t)d->X * d->Y;
	if (lazy)
		return PNO_STATUS_OK;
	if ((s = alloc_pairs(d, path, per, per)) != PNO_STATUS_OK)
		return s;
	count[0] = (hsize_t)d->N;
	count[1] = 1;
	count[2] = t->dims[2];
	count[3] = t->rank == 4 ? t->dims[3] : 1;
	start[1] = (hsize_t)o->t_in;
	if ((s = ds_read(t, path, "tensor", start, count, d->in)) != PNO_STATUS_OK)
		return s;
	start[1] = (hsize_t)t_out;
	if ((s = ds_read(t, path, "tensor", start, count, d->out)) != PNO_STATUS_OK)
		return s;
	if ((s = check_finite(d->in, (size_t)d->N, per, path, "tensor")) !=
	    PNO_STATUS_OK)
		return pno__error_prefix(s, "input step t=%d", o->t_in);
	if ((s = check_finite(d->out, (size_t)d->N, per, path, "tensor")) !=
	    PNO_STATUS_OK)
		return pno__error_prefix(s, "output step t=%ld", t_out);
	return PNO_STATUS_OK;
}

/* Every pair (t, t + k) of every trajectory: per trajectory two
 * hyperslabs, steps [0, T - k) into in and [k, T) into out, whose
 * (T - k, X[, Y]) layout is already (pairs, C = 1, X[, Y]). */
static enum pno_status read_series_pairs(struct pno_dataset *d,
					 const char *path,
					 const struct h5_ds *t,
					 const struct pno_dataset_opts *o,
					 int lazy)
{
	enum pno_status s;
	hsize_t start[4] = {0, 0, 0, 0}, count[4];
	char st[160];
	const int k = o->pairs_step;
	shape_str(st, sizeof st, t);
	if (t->rank != 3 && t->rank != 4)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: dataset 'tensor' has shape %s, expected "
				   "(N, T, X) or (N, T, H, W)", path, st);
	if ((hsize_t)k >= t->dims[1])
		return pno__errorf(PNO_STATUS_RANGE,
				   "%s: pairs step %d needs more than %d time steps; "
				   "'tensor' has T = %llu, shape %s", path, k, k,
				   (unsigned long long)t->dims[1], st);
	if ((s = set_dims(d, path, "tensor", t, 2, o->max_samples)) != PNO_STATUS_OK)
		return s;
	const long pairs = (long)t->dims[1] - k;
	const int ntraj = d->N;
	if ((double)ntraj * (double)pairs > (double)INT_MAX)
		return pno__errorf(PNO_STATUS_SHAPE,
				   "%s: %d trajectories x %ld pairs exceed %d samples; "
				   "limit the trajectories (max_samples)", path, ntraj,
				   pairs, INT_MAX);
	d->N = (int)(ntraj * pairs);
	d->pairs = (int)pairs;
	d->Cin = d->Cout = 1;
	const size_t per = (size_t)d->X * d->Y;
	if (lazy)
		return PNO_STATUS_OK;
	if ((s = alloc_pairs(d, path, per, per)) != PNO_STATUS_OK)
		return s;
	count[0] = 1;
	count[1] = (hsize_t)pairs;
	count[2] = t->dims[2];
	count[3] = t->rank == 4 ? t->dims[3] : 1;
	for (int n = 0; n < ntraj; n++) {
		size_t off = (size_t)n * (size_t)pairs * per;
		start[0] = (hsize_t)n;
		start[1] = 0;
		if ((s = ds_read(t, path, "tensor", start, count, d->in + off)))
			return s;
		start[1] = (hsize_t)k;
		if ((s = ds_read(t, path, "tensor", start, count, d->out + off)))
			return s;
	}
	/* every step of every trajectory is in `in` or `out` */
	for (int n = 0; n < ntraj; n++) {
		const float *in = d->in + (size_t)n * (size_t)pairs * per;
		const float *out = d->out + (size_t)n * (size_t)pairs * per;
		for (long j = 0; j < pairs; j++)
			for (size_t p = 0; p < per; p++) {
				float a = in[(size_t)j * per + p];
				float b = out[(size_t)j * per + p];
				if (isfinite(a) && isfinite(b))
					continue;
				long step = isfinite(a) ? j + k : j;
				return pno__errorf(PNO_STATUS_NONFINITE,
						   "%s: dataset 'tensor' trajectory %d "
						   "step %ld has a non-finite value "
						   "(%g at flat index %zu)", path, n,
						   step, (double)(isfinite(a) ? b : a),
						   p);
			}
	}
	return PNO_STATUS_OK;
}

/* The samples of a dataset opened with pno_dataset_open: the open file
 * and datasets and how sample i maps to them. */
struct pno__dataset_file {
	char path[1024];
	hid_t file;
	struct h5_ds nu, t;	/* nu.id < 0: a time series */
	int t_in, t_out, k;	/* steps of a series; k > 0: pairs (t, t + k) */
};

static enum pno_status load(struct pno_dataset *d, const char *path,
			    const struct pno_dataset_opts *opt, int lazy);

enum pno_status pno_dataset_read(struct pno_dataset *d, const char *path,
				 const struct pno_dataset_opts *opt)
{
	return load(d, path, opt, 0);
}

enum pno_status pno_dataset_open(struct pno_dataset *d, const char *path,
				 const struct pno_dataset_opts *opt)
{
	return load(d, path, opt, 1);
}

static enum pno_status load(struct pno_dataset *d, const char *path,
			    const struct pno_dataset_opts *opt, int lazy)
{
	enum pno_status s;
	struct pno_dataset_opts o = PNO_DATASET_OPTS_DEFAULT;
	struct h5_ds nu = {-1, 0, {0}}, t = {-1, 0, {0}};
	hid_t file = -1;
	int has_nu, has_t;

	h5_quiet();
	if (!d)
		return pno__errorf(PNO_STATUS_INVALID, "pno_dataset_read: NULL output");
	memset(d, 0, sizeof *d);
	if (opt)
		o = *opt;
	if (o.max_samples < 0 || o.t_out < -1 || o.pairs_step < 0)
		return pno__errorf(PNO_STATUS_INVALID,
				   "%s: invalid options (t_out %d, max_samples %d, "
				   "pairs_step %d)", path ? path : "", o.t_out,
				   o.max_samples, o.pairs_step);
	if ((s = h5_open(&file, path)) != PNO_STATUS_OK)
		return s;
	has_nu = h5_has(file, "nu");
	has_t = h5_has(file, "tensor");
	if (!has_t) {
		s = pno__errorf(PNO_STATUS_FORMAT, "%s: no dataset 'tensor' (%s)",
				path, layout_help);
		goto cleanup;
	}
	if ((s = ds_open(&t, file, path, "tensor")) != PNO_STATUS_OK)
		goto cleanup;
	if (has_nu && o.pairs_step > 0) {
		s = pno__errorf(PNO_STATUS_INVALID,
				"%s: pairs step %d needs a time series; this file is "
				"Darcy-style ('nu' + 'tensor')", path, o.pairs_step);
		goto cleanup;
	}
	if (has_nu) {
		if ((s = ds_open(&nu, file, path, "nu")) != PNO_STATUS_OK)
			goto cleanup;
		s = read_darcy(d, path, &nu, &t, o.max_samples, lazy);
		snprintf(d->layout, sizeof d->layout, "darcy");
	} else {
		s = o.pairs_step > 0 ? read_series_pairs(d, path, &t, &o, lazy)
				     : read_series(d, path, &t, &o, lazy);
		snprintf(d->layout, sizeof d->layout, "timeseries");
	}
	if (s != PNO_STATUS_OK)
		goto cleanup;
	s = attr_string(file, path, "pde", d->pde, sizeof d->pde);
	if (s == PNO_STATUS_NOMEM)
		goto cleanup;
	if (s != PNO_STATUS_OK) {
		s = PNO_STATUS_OK;
		pno_clear_error();
		snprintf(d->pde, sizeof d->pde, "%s", has_nu ? "darcy" : "unknown");
	}
	if (lazy) {	/* the file and datasets move to the handle */
		struct pno__dataset_file *f = pno_calloc(1, sizeof *f);
		if (!f) {
			s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory",
					path);
			goto cleanup;
		}
		snprintf(f->path, sizeof f->path, "%s", path);
		f->file = file, f->nu = nu, f->t = t;
		f->t_in = o.t_in;
		f->t_out = o.t_out == -1 ? (int)t.dims[1] - 1 : o.t_out;
		f->k = o.pairs_step;
		file = nu.id = t.id = -1;
		d->file = f;
	}
cleanup:
	H5_CLOSE(H5Dclose, nu.id);
	H5_CLOSE(H5Dclose, t.id);
	H5_CLOSE(H5Fclose, file);
	if (s != PNO_STATUS_OK)
		pno_dataset_free(d);
	return s;
}

/* Sample i of an opened dataset: a hyperslab of each array. */
static enum pno_status fetch_one(const struct pno_dataset *d, int i,
				 float *in, float *out)
{
	const struct pno__dataset_file *f = d->file;
	hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, 1, 1, 1};
	size_t per = (size_t)d->X * d->Y;
	enum pno_status s;
	const struct h5_ds *t = &f->t;
	if (f->nu.id >= 0) {	/* darcy: nu (N, H, W) -> tensor (N[, 1], H, W) */
		int off = t->rank == 4;
		count[1] = f->nu.dims[1], count[2] = f->nu.dims[2];
		if (in && (s = ds_read(&f->nu, f->path, "nu", start, count, in)))
			return s;
		if (off)
			count[1] = 1, count[2] = t->dims[2], count[3] = t->dims[3];
		if (out && (s = ds_read(t, f->path, "tensor", start, count, out)))
			return s;
	} else {	/* a series: (N, T, X[, Y]) at two steps */
		int n = f->k ? i / d->pairs : i;
		int t0 = f->k ? i % d->pairs : f->t_in;
		int t1 = f->k ? t0 + f->k : f->t_out;
		start[0] = (hsize_t)n;
		count[2] = t->dims[2];
		count[3] = t->rank == 4 ? t->dims[3] : 1;
		start[1] = (hsize_t)t0;
		if (in && (s = ds_read(t, f->path, "tensor", start, count, in)))
			return s;
		start[1] = (hsize_t)t1;
		if (out && (s = ds_read(t, f->path, "tensor", start, count, out)))
			return s;
	}
	for (size_t p = 0; p < per; p++)
		if ((in && !isfinite(in[p])) || (out && !isfinite(out[p])))
			return pno__errorf(PNO_STATUS_NONFINITE,
					   "%s: sample %d has a non-finite value "
					   "(flat index %zu)", f->path, i, p);
	return PNO_STATUS_OK;
}

enum pno_status pno_dataset_fetch(const struct pno_dataset *d, const int *idx,
				  int first, int n, float *in, float *out)
{
	enum pno_status s;
	if (!d || n < 0 || (!d->file && !d->in))
		return pno__errorf(PNO_STATUS_INVALID,
				   "dataset fetch: NULL or empty dataset");
	size_t nin = (size_t)d->Cin * d->X * d->Y;
	size_t nout = (size_t)d->Cout * d->X * d->Y;
	h5_quiet();
	for (int k = 0; k < n; k++) {
		int i = idx ? idx[k] : first + k;
		if (i < 0 || i >= d->N)
			return pno__errorf(PNO_STATUS_RANGE,
					   "dataset fetch: sample %d of %d", i,
					   d->N);
		float *xi = in ? in + (size_t)k * nin : NULL;
		float *yi = out ? out + (size_t)k * nout : NULL;
		if (!d->file) {
			if (xi)
				memcpy(xi, d->in + (size_t)i * nin,
				       nin * sizeof(float));
			if (yi)
				memcpy(yi, d->out + (size_t)i * nout,
				       nout * sizeof(float));
		} else if ((s = fetch_one(d, i, xi, yi)) != PNO_STATUS_OK) {
			return s;
		}
	}
	return PNO_STATUS_OK;
}

void pno_dataset_free(struct pno_dataset *d)
{
	if (!d)
		return;
	pno_free(d->in);
	pno_free(d->out);
	if (d->file) {
		H5_CLOSE(H5Dclose, d->file->nu.id);
		H5_CLOSE(H5Dclose, d->file->t.id);
		H5_CLOSE(H5Fclose, d->file->file);
		pno_free(d->file);
	}
	memset(d, 0, sizeof *d);
}

/* *out = 't-coordinate' if it is a rank-1 array of T values, else NULL;
 * only running out of memory is an error (the times are optional). */
static enum pno_status read_times(double **out, hid_t file, const char *path,
				  long T)
{
	struct h5_ds c = {-1, 0, {0}};
	enum pno_status s = PNO_STATUS_OK;
	double *t = NULL;
	float *f = NULL;
	hsize_t start[1] = {0}, count[1] = {(hsize_t)T};
	*out = NULL;
	if (!h5_has(file, "t-coordinate") ||
	    ds_open(&c, file, path, "t-coordinate") != PNO_STATUS_OK ||
	    c.rank != 1 || c.dims[0] != (hsize_t)T)
		goto out;
	f = pno_malloc((size_t)T * sizeof(float));
	t = pno_malloc((size_t)T * sizeof(double));
	if (!f || !t) {
		pno_free(t);
		pno_free(f);
		H5_CLOSE(H5Dclose, c.id);
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
	}
	if (ds_read(&c, path, "t-coordinate", start, count, f)) {
		pno_free(t);
		t = NULL;
		goto out;
	}
	for (long i = 0; i < T; i++)
		t[i] = f[i];
	*out = t;
out:
	pno_clear_error();
	pno_free(f);
	H5_CLOSE(H5Dclose, c.id);
	return s;
}

enum pno_status pno_trajectories_read(struct pno_trajectories *tr,
				      const char *path, int first, int max)
{
	enum pno_status s;
	struct h5_ds t = {-1, 0, {0}};
	hid_t file = -1;
	hsize_t start[4] = {0, 0, 0, 0}, count[4];
	char sh[160];

	h5_quiet();
	if (!tr)
		return pno__errorf(PNO_STATUS_INVALID,
				   "pno_trajectories_read: NULL output");
	memset(tr, 0, sizeof *tr);
	if (first < 0 || max < 0)
		return pno__errorf(PNO_STATUS_RANGE,
				   "%s: trajectories from %d, at most %d: must be "
				   ">= 0", path ? path : "", first, max);
	if ((s = h5_open(&file, path)) != PNO_STATUS_OK)
		return s;
	if (!h5_has(file, "tensor") || h5_has(file, "nu")) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"%s: not a time series (%s; a rollout needs "
				"'tensor' (N, T, X[, Y]) without 'nu')", path,
				h5_has(file, "nu") ? "Darcy-style 'nu' + 'tensor'"
						   : "no dataset 'tensor'");
		goto cleanup;
	}
	if ((s = ds_open(&t, file, path, "tensor")) != PNO_STATUS_OK)
		goto cleanup;
	shape_str(sh, sizeof sh, &t);
	if (t.rank != 3 && t.rank != 4) {
		s = pno__errorf(PNO_STATUS_SHAPE,
				"%s: dataset 'tensor' has shape %s, expected "
				"(N, T, X) or (N, T, H, W)", path, sh);
		goto cleanup;
	}
	if (t.dims[1] < 2 || t.dims[1] > INT_MAX) {
		s = pno__errorf(PNO_STATUS_SHAPE,
				"%s: dataset 'tensor' has %llu time steps (shape "
				"%s); a trajectory needs at least 2", path,
				(unsigned long long)t.dims[1], sh);
		goto cleanup;
	}
	if (t.dims[0] == 0 || (hsize_t)first >= t.dims[0]) {
		s = pno__errorf(PNO_STATUS_RANGE,
				"%s: trajectory %d does not exist ('tensor' has %llu, "
				"shape %s)", path, first,
				(unsigned long long)t.dims[0], sh);
		goto cleanup;
	}
	{
		struct pno_dataset g = {0};	/* grid checks as the reader's */
		hsize_t left = t.dims[0] - (hsize_t)first;
		int cap = max > 0 && (hsize_t)max < left ? max : 0;
		struct h5_ds tail = t;
		tail.dims[0] = left;
		if ((s = set_dims(&g, path, "tensor", &tail, 2, cap)))
			goto cleanup;
		tr->N = g.N, tr->dims = g.dims, tr->X = g.X, tr->Y = g.Y;
	}
	tr->T = (int)t.dims[1];
	tr->C = 1;
	tr->first = first;
	const size_t per = (size_t)tr->T * tr->X * tr->Y;
	size_t bytes;
	if (pno__mul_overflow((size_t)tr->N, per, &bytes) ||
	    pno__mul_overflow(bytes, sizeof(float), &bytes)) {
		s = pno__errorf(PNO_STATUS_SHAPE, "%s: %d trajectories too large",
				path, tr->N);
		goto cleanup;
	}
	if (!(tr->u = pno_malloc(bytes))) {
		s = pno__errorf(PNO_STATUS_NOMEM,
				"%s: out of memory for %zu bytes of trajectories",
				path, bytes);
		goto cleanup;
	}
	start[0] = (hsize_t)first;
	count[0] = (hsize_t)tr->N;
	count[1] = t.dims[1];
	count[2] = t.dims[2];
	count[3] = t.rank == 4 ? t.dims[3] : 1;
	if ((s = ds_read(&t, path, "tensor", start, count, tr->u)))
		goto cleanup;
	for (size_t i = 0; i < (size_t)tr->N * per; i++)
		if (!isfinite(tr->u[i])) {
			size_t P = (size_t)tr->X * tr->Y;
			s = pno__errorf(PNO_STATUS_NONFINITE,
					"%s: dataset 'tensor' trajectory %zu step "
					"%zu has a non-finite value (%g)", path,
					(size_t)first + i / per, i % per / P,
					(double)tr->u[i]);
			goto cleanup;
		}
	if ((s = read_times(&tr->t, file, path, tr->T)) != PNO_STATUS_OK)
		goto cleanup;
	s = attr_string(file, path, "pde", tr->pde, sizeof tr->pde);
	if (s == PNO_STATUS_NOMEM)
		goto cleanup;
	if (s != PNO_STATUS_OK) {
		s = PNO_STATUS_OK;
		pno_clear_error();
		snprintf(tr->pde, sizeof tr->pde, "unknown");
	}
cleanup:
	H5_CLOSE(H5Dclose, t.id);
	H5_CLOSE(H5Fclose, file);
	if (s != PNO_STATUS_OK)
		pno_trajectories_free(tr);
	return s;
}

void pno_trajectories_free(struct pno_trajectories *tr)
{
	if (!tr)
		return;
	pno_free(tr->u);
	pno_free(tr->t);
	memset(tr, 0, sizeof *tr);
}
