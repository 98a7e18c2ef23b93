/*
 * File formats: safetensors models, HDF5 datasets (PDEBench layout) and
 * atomic file replacement.
 *
 * safetensors: an 8-byte little-endian header length, a JSON header
 * mapping tensor names to {dtype, shape, data_offsets} plus an optional
 * "__metadata__" object whose values are all strings, then the raw
 * little-endian tensor bytes. pno writes F32 tensors only and reads F32
 * (F64 and F16/BF16 are converted to float on read). Every structural
 * fault (short file, header length past the end, bad JSON, offsets out of
 * range or overlapping, shape not matching the byte count, a duplicated
 * name) is PNO_STATUS_FORMAT with a message naming the file and tensor.
 *
 * HDF5 datasets follow PDEBench: Darcy-style files hold `nu` (N, H, W)
 * and `tensor` (N, 1, H, W); time series hold `tensor` (N, T, X) or
 * (N, T, H, W) plus `x-coordinate`, `y-coordinate`, `t-coordinate`. A
 * time series is read as pairs (input = step t_in, output = step t_out).
 *
 * All writes are atomic: data goes to a temporary file in the target's
 * directory, is flushed with fsync, renamed over the target, and the
 * directory is fsynced. A killed writer leaves the old file intact.
 */
#ifndef PNO_IO_H
#define PNO_IO_H

#include "pno/core.h"

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PNO_MAX_DIMS 8

/* ---- atomic replacement ---- */
struct pno_atomic_file {
	FILE *fp;		/* write here */
	char *tmp_path;		/* temporary name (owned) */
	char *path;		/* final name (owned) */
};
/* Open a temporary file beside `path`. Fails with PNO_STATUS_EXISTS if
 * `path` exists and !overwrite, PNO_STATUS_IO if the directory is not
 * writable (message names the path and errno text). */
enum pno_status pno_atomic_open(struct pno_atomic_file *f, const char *path,
				int overwrite);
/* Flush, fsync, rename over the target, fsync the directory. On any
 * failure the temporary is removed and the target left as it was. */
enum pno_status pno_atomic_commit(struct pno_atomic_file *f);
/* Remove the temporary and free; safe after commit or on a zeroed struct. */
void pno_atomic_abort(struct pno_atomic_file *f);
/* Rename an already written and closed temporary over `path` with the same
 * fsync discipline (used for files written by other libraries, HDF5). */
enum pno_status pno_atomic_rename(const char *tmp_path, const char *path);

/* ---- safetensors ---- */
struct pno_tensor_view {
	const char *name;
	int ndim;
	int64_t shape[PNO_MAX_DIMS];
	const float *data;
};

/* metadata_json: NULL or a JSON object whose values are strings. */
enum pno_status pno_safetensors_write(const char *path,
				      const struct pno_tensor_view *t, int n,
				      const char *metadata_json);

struct pno_st_entry {
	char *name;
	int ndim;
	int64_t shape[PNO_MAX_DIMS];
	size_t count;		/* product of shape */
	float *data;		/* PNO_ALIGN-aligned, owned */
};
struct pno_safetensors {
	int n;
	struct pno_st_entry *t;
	char *metadata_json;	/* the "__metadata__" object, "{}" if absent */
};
enum pno_status pno_safetensors_read(struct pno_safetensors *st,
				     const char *path);
/* NULL if absent. */
const struct pno_st_entry *pno_safetensors_find(const struct pno_safetensors *st,
						const char *name);
void pno_safetensors_free(struct pno_safetensors *st);

/* ---- HDF5 ---- */
struct pno_h5_array {
	const char *name;
	int ndim;
	int64_t shape[PNO_MAX_DIMS];
	const float *data;
};
struct pno_h5_attr {
	const char *name;
	const char *str;	/* string attribute if not NULL ... */
	double num;		/* ... else a double */
};
/* Write float32 datasets (chunked, deflate-compressed) and root attributes
 * atomically. Existing `path` is replaced only if overwrite. */
enum pno_status pno_h5_write(const char *path, const struct pno_h5_array *a,
			     int n_arrays, const struct pno_h5_attr *attrs,
			     int n_attrs, int overwrite);

struct pno_dataset_opts {
	int t_in;		/* time index of the input (default 0) */
	int t_out;		/* time index of the output (-1: last) */
	int max_samples;	/* 0: all */
};
#define PNO_DATASET_OPTS_DEFAULT {0, -1, 0}

struct pno_dataset {
	int N;			/* samples */
	int Cin, Cout;		/* channels */
	int dims;		/* spatial dims: 1 or 2 */
	int X, Y;		/* grid; Y = 1 in 1D */
	float *in;		/* (N, Cin, X[, Y]) */
	float *out;		/* (N, Cout, X[, Y]) */
	char pde[64];		/* root attribute "pde" or a guess from the layout */
	char layout[16];	/* "darcy" or "timeseries" */
};
/* Reads and validates (shapes, ranks, finiteness: a NaN or Inf is
 * PNO_STATUS_NONFINITE naming the dataset and the sample index). */
enum pno_status pno_dataset_read(struct pno_dataset *d, const char *path,
				 const struct pno_dataset_opts *opt);
void pno_dataset_free(struct pno_dataset *d);

/* Read a string root attribute into buf (PNO_STATUS_NOTFOUND if absent). */
enum pno_status pno_h5_attr_string(const char *path, const char *name,
				   char *buf, size_t bufsize);

#ifdef __cplusplus
}
#endif
#endif
