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
 * As in the reference implementation the tensors must tile the data
 * section exactly (no gap, no trailing bytes). A dtype that is valid
 * safetensors but not convertible (I32, U8, BOOL, F8_*, ...) is
 * PNO_STATUS_UNSUPPORTED naming the dtype; an unknown dtype string is
 * PNO_STATUS_FORMAT. The header is capped at 100 MB.
 *
 * HDF5 datasets follow PDEBench: Darcy-style files hold `nu` (N, H, W)
 * and `tensor` (N, 1, H, W); time series hold `tensor` (N, T, X) or
 * (N, T, H, W) plus `x-coordinate`, `y-coordinate`, `t-coordinate`. A
 * time series is read as pairs (input = step t_in, output = step t_out).
 * float64 and integer datasets are converted to float on read. HDF5 (the
 * serial build) is not thread-safe: call the HDF5 functions from one
 * thread at a time. The library silences HDF5's own error printing.
 *
 * All writes are atomic: data goes to a temporary file in the target's
 * directory, is flushed with fsync, renamed over the target, and the
 * directory is fsynced. A killed writer leaves the old file intact; it
 * may leave its temporary "<path>.tmp.XXXXXX" behind (partial, or complete
 * if killed between fsync and rename). Such files are never read in place
 * of the target and may be deleted.
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
/* Open a temporary file beside `path` (mode: the target's if it exists,
 * else 0644). Fails with PNO_STATUS_EXISTS if `path` exists and
 * !overwrite (checked here, before anything is written; a file created
 * by someone else between open and commit is replaced), PNO_STATUS_IO if
 * the directory is not writable (message names the path and errno text).
 * On failure *f is zeroed. */
enum pno_status pno_atomic_open(struct pno_atomic_file *f, const char *path,
				int overwrite);
/* Flush, fsync, close, rename over the target, fsync the directory. On
 * any failure before the rename the temporary is removed and the target
 * left as it was; if only the directory fsync fails the message says
 * "renamed" (the new file is in place but may not survive a power cut).
 * *f is released either way. */
enum pno_status pno_atomic_commit(struct pno_atomic_file *f);
/* Remove the temporary and free; safe after commit or on a zeroed struct. */
void pno_atomic_abort(struct pno_atomic_file *f);
/* Rename an already written, closed and fsynced temporary over `path`,
 * then fsync the directory (used for files written by other libraries,
 * HDF5). The caller removes the temporary if this fails. */
enum pno_status pno_atomic_rename(const char *tmp_path, const char *path);

/* ---- safetensors ---- */
struct pno_tensor_view {
	const char *name;
	int ndim;
	int64_t shape[PNO_MAX_DIMS];
	const float *data;
};

/* Write F32 tensors in the given order (names unique, valid UTF-8, not
 * "__metadata__"), atomically, replacing `path` if it exists.
 * metadata_json: NULL or a JSON object whose values are strings (anything
 * else is PNO_STATUS_INVALID). The header is compact JSON, "__metadata__"
 * first, padded with spaces to a multiple of 8 bytes. */
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
	char *metadata_json;	/* the "__metadata__" object as compact JSON,
				 * "{}" if absent */
};
/* Tensors come in header order. On failure *st is zeroed (nothing to
 * free). Missing file: PNO_STATUS_NOTFOUND. */
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
/* Write float32 datasets and root attributes atomically. Existing `path`
 * is replaced only if overwrite (else PNO_STATUS_EXISTS). Datasets of
 * rank >= 2 are chunked one sample (first-axis index) at a time, rank 1
 * whole, chunks capped at 2^20 elements; shuffle + deflate level 4 when
 * the deflate filter is available. Scalars and empty arrays are stored
 * contiguous. String attributes are scalar variable-length UTF-8 strings
 * (h5py reads them as str), numbers scalar float64. */
enum pno_status pno_h5_write(const char *path, const struct pno_h5_array *a,
			     int n_arrays, const struct pno_h5_attr *attrs,
			     int n_attrs, int overwrite);

/* Streaming form of pno_h5_write, for data made piece by piece. Arrays
 * with data == NULL (rank >= 1) are created empty and filled one first-axis
 * index at a time with pno_h5_stream_put (data: one index's elements);
 * the others are written at open. Commit checks every index of every
 * streamed array was written (else PNO_STATUS_INTERNAL), writes the
 * attributes, fsyncs and renames over `path`; commit and abort free the
 * stream, and abort (or a failed commit) removes the temporary file. Not
 * thread-safe: serialize calls on one stream. */
struct pno_h5_stream;
enum pno_status pno_h5_stream_open(struct pno_h5_stream **s, const char *path,
				   const struct pno_h5_array *a, int n_arrays,
				   int overwrite);
enum pno_status pno_h5_stream_put(struct pno_h5_stream *s, int array,
				  int64_t index, const float *data);
enum pno_status pno_h5_stream_commit(struct pno_h5_stream *s,
				     const struct pno_h5_attr *attrs,
				     int n_attrs);
void pno_h5_stream_abort(struct pno_h5_stream *s);

struct pno_dataset_opts {
	int t_in;		/* time index of the input (default 0) */
	int t_out;		/* time index of the output (-1: last) */
	int max_samples;	/* 0: all; with pairs_step: trajectories */
	int pairs_step;		/* 0: off (one pair t_in -> t_out); k >= 1:
				 * every pair (t, t + k) of every trajectory */
};
#define PNO_DATASET_OPTS_DEFAULT {0, -1, 0, 0}

struct pno__dataset_file;	/* the open file of pno_dataset_open */
struct pno_dataset {
	int N;			/* samples */
	int Cin, Cout;		/* channels */
	int dims;		/* spatial dims: 1 or 2 */
	int X, Y;		/* grid; Y = 1 in 1D */
	float *in;		/* (N, Cin, X[, Y]) */
	float *out;		/* (N, Cout, X[, Y]) */
	char pde[64];		/* root attribute "pde" or a guess from the layout */
	char layout[16];	/* "darcy" or "timeseries" */
	int pairs;		/* pairs_step: pairs per trajectory (T - k),
				 * sample n (T - k) + t is (t -> t + k) of
				 * trajectory n; 0 otherwise */
	struct pno__dataset_file *file; /* pno_dataset_open: the samples
				 * stay in the file (in, out NULL) */
};
/* Reads and validates. Layout: 'nu' + 'tensor' is Darcy (nu (N, H, W) is
 * the input; tensor (N, 1, H, W) or (N, H, W) the output); 'tensor' alone
 * is a time series (N, T, X) -> dims 1 or (N, T, H, W) -> dims 2, read as
 * steps t_in -> t_out (t_out -1: last; both in [0, T), different, else
 * PNO_STATUS_RANGE).
 * With pairs_step = k >= 1 (time series only; t_in and t_out are then
 * ignored) every pair (t, t + k), t = 0..T-k-1, of every trajectory is a
 * sample: N (T - k) samples ordered by trajectory, then t, so a split by
 * sample index at a multiple of d->pairs splits whole trajectories.
 * max_samples then limits TRAJECTORIES (whole ones are read, so training
 * and test pairs never share a trajectory by accident). Each trajectory
 * is read as two hyperslabs straight into in and out (no staging
 * buffer). k >= T is RANGE, k < 0 or a Darcy file INVALID, more than
 * INT_MAX pairs SHAPE. Errors: missing file NOTFOUND; not HDF5 or no
 * 'tensor' FORMAT; wrong rank, N or grid mismatch SHAPE (message shows the
 * actual shape); a NaN or Inf is PNO_STATUS_NONFINITE naming the dataset
 * and the sample index. Only the first max_samples samples are read and
 * checked. pde: the root attribute "pde", else "darcy" or "unknown". On
 * failure *d is zeroed. */
enum pno_status pno_dataset_read(struct pno_dataset *d, const char *path,
				 const struct pno_dataset_opts *opt);
/* As pno_dataset_read (same checks, errors and fields) but reads no
 * sample: in and out stay NULL and the file stays open (read-only) until
 * pno_dataset_free. Samples are then read with pno_dataset_fetch, each a
 * hyperslab of the file, so a process (a data-parallel rank) holds only
 * the rows it works on. NaN/Inf are found as samples are fetched. */
enum pno_status pno_dataset_open(struct pno_dataset *d, const char *path,
				 const struct pno_dataset_opts *opt);
/* Samples idx[0..n) (idx NULL: first .. first + n - 1) of d into in
 * (n, Cin, X[, Y]) and out (n, Cout, X[, Y]) (either may be NULL: not
 * read): copied from memory after
 * pno_dataset_read, read from the file after pno_dataset_open. Errors: an
 * index outside [0, N) RANGE; a failed read IO; a NaN or Inf NONFINITE
 * naming the file and sample. Not thread-safe (HDF5). */
enum pno_status pno_dataset_fetch(const struct pno_dataset *d, const int *idx,
				  int first, int n, float *in, float *out);
void pno_dataset_free(struct pno_dataset *d);

/* Whole trajectories of a time series, for autoregressive rollouts. */
struct pno_trajectories {
	int N, T;		/* trajectories read, time steps */
	int C;			/* channels (1: 'tensor' is one field) */
	int dims, X, Y;		/* grid; Y = 1 in 1D */
	int first;		/* file index of trajectory 0 */
	float *u;		/* (N, T, C, X[, Y]) */
	double *t;		/* (T) 't-coordinate', NULL if absent or not of
				 * length T */
	char pde[64];		/* as in pno_dataset */
};
/* Trajectories first .. first + max - 1 (max 0: to the end; fewer if the
 * file ends first) of the time series 'tensor' (N, T, X) or (N, T, H, W).
 * Errors: missing file NOTFOUND; no 'tensor' or a Darcy-style file ('nu'
 * present) FORMAT ("not a time series"); rank other than 3 or 4 or T < 2
 * SHAPE; first outside [0, N) or max < 0 RANGE; NaN/Inf NONFINITE naming
 * the trajectory and step. Memory: N T X Y floats. On failure *tr is
 * zeroed. */
enum pno_status pno_trajectories_read(struct pno_trajectories *tr,
				      const char *path, int first, int max);
void pno_trajectories_free(struct pno_trajectories *tr);

/* Read a string root attribute (fixed or variable length) into buf.
 * PNO_STATUS_NOTFOUND if absent, PNO_STATUS_FORMAT if not a string,
 * PNO_STATUS_RANGE if it does not fit in bufsize - 1 bytes. */
enum pno_status pno_h5_attr_string(const char *path, const char *name,
				   char *buf, size_t bufsize);

#ifdef __cplusplus
}
#endif
#endif
