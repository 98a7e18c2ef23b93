/* pno bench: the pieces its files share (config, cells, reports, plots).
 * The run itself is src/cli/bench.c; docs/bench.md describes the
 * behaviour. */
#ifndef PNO_CLI_BENCH_H
#define PNO_CLI_BENCH_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_PATH 4096
#define BENCH_LABEL 64

struct bench_pde {
	char name[BENCH_LABEL];		/* pno generate's PDE name */
	char label[BENCH_LABEL];	/* directory and table name */
	json_t *generate;		/* flag -> value (borrowed from cfg) */
	int ntrain, nval, ntest;	/* -1: pno train's default */
	int t_in, t_out;		/* time series steps; t_out -1: last */
	int has_t;			/* t_in / t_out given */
	int plot_index;			/* test input drawn in the field plot */
	json_t *rollout;		/* pno rollout flags, NULL: no rollout */
	char data[BENCH_PATH];		/* DIR/data/<label>.h5 */
	char data_hash[65];		/* BLAKE2b of the file, "" if none */
	int data_ok;
	int data_reused;
	double gen_seconds;
	char data_error[256];
};

struct bench_method {
	char label[BENCH_LABEL];
	char model[32];			/* pno train --model */
	json_t *train;			/* flag -> value (borrowed) */
};

enum bench_cell_state {
	BENCH_CELL_PENDING,
	BENCH_CELL_RUNNING,
	BENCH_CELL_OK,
	BENCH_CELL_FAILED,
};

struct bench_cell {
	int p, m;			/* indices into pdes, methods */
	int rank;			/* the process that runs it (mpirun) */
	uint64_t seed;
	char dir[BENCH_PATH];		/* DIR/cells/<pde>/<method>/seed<k> */
	char hash[65];			/* of the config slice + data hash */
	enum bench_cell_state state;
	int reused;			/* finished by an earlier run */
	int step;			/* 0 train, 1 eval, 2 rollout */
	pid_t pid;
	double t_start, t_step;
	double train_seconds, eval_seconds;	/* wall time of the steps */
	double train_cpu, eval_cpu;	/* their CPU time (user + system) */
	char failed_step[16];
	int exit_code;
	char error[512];		/* last line of the failing step's log */
	json_t *eval;			/* the eval JSON document (owned) */
	json_t *rollout;		/* the rollout document (owned) or NULL */
};

struct bench {
	const char *config_path, *out;
	json_t *cfg;			/* the parsed config (owned) */
	const char *name;
	int n_pdes, n_methods, n_seeds, n_cells;
	struct bench_pde *pdes;
	struct bench_method *methods;
	uint64_t *seeds;
	int eval_samples, eval_max;
	char eval_split[16];
	struct bench_cell *cells;	/* (pde, method, seed) row-major */
	int jobs, threads, force, quiet, no_plots;
	char exe[BENCH_PATH];
	double wall_seconds;
};

/* Parse and validate the whole config; on error prints
 * "pno bench: CONFIG: key: why" and returns 2. */
int bench_config_load(struct bench *b, const char *path);
void bench_free(struct bench *b);

/* Metric `key` of a cell's eval document ("metrics" object), NaN if
 * absent; coverage / width of the central interval at `level`. */
double bench_metric(const struct bench_cell *c, const char *key);
double bench_coverage(const struct bench_cell *c, double level, int width);

/* results.json, .csv, .md, .tex in b->out, atomically. Returns 0 or 1
 * (having printed why). The Markdown table is also printed to stdout
 * unless quiet. */
int bench_reports(const struct bench *b);

/* Field, reliability and coverage figures in b->out/plots. Returns the
 * number of figures that failed (each printed). */
int bench_plots(const struct bench *b);

/* A cell's result.json document (NULL: out of memory), and a cell
 * filled from one: times, and the eval (and rollout) of an ok cell or
 * the failure of a failed one. */
json_t *bench_cell_doc(const struct bench *b, const struct bench_cell *c);
void bench_cell_from_doc(struct bench_cell *c, json_t *doc);

/* ---- bench_dist.c: one bench over several processes (mpirun) ----
 * Every rank runs cmd_bench with the same argv over a shared --out.
 * Rank 0 prepares DIR, decides which cells an earlier run finished and
 * writes the reports; PDE i's data is made by rank i % P; the pending
 * cells are dealt round-robin (the k-th to rank k % P); each rank runs
 * its cells as child processes (without the launcher's environment) and
 * sends rank 0 their result documents. Single process: all no-ops. */

/* Every rank passes its exit status so far (0, or 1, 2, 130 having
 * printed why; `what` names the step); returns the first failing rank's
 * status on every rank, and a rank that did not fail prints which did. */
int bench_agree(int rc, const char *what);
/* PDE i's data outcome from rank i % P to all. */
int bench_share_data(struct bench *b);
/* Rank 0's cell states (reused, failed for want of data) to all, and
 * each pending cell's rank. */
int bench_deal_cells(struct bench *b);
/* The result documents of the cells each rank ran, to rank 0. */
int bench_collect(struct bench *b);

/* ---- bench_proc.c: steps, hashes, files ---- */

/* Write text / a JSON document (indented) to path atomically (temp +
 * rename); 0 or 1 (printed). */
int bench_write_text(const char *path, const char *text);
int bench_write_json(const char *path, json_t *doc);
/* A JSON value as text in libc memory (free() it; json_dumps' result
 * belongs to the library's allocator once it has installed its hooks). */
char *bench_json_text(const json_t *v, size_t flags);
int bench_mkdir_p(const char *path);
int bench_dir_empty(const char *path);
/* BLAKE2b-256 as hex of a JSON value in canonical form (sorted keys,
 * compact); 0 on success. (Files: file_hash in cli.h.) */
int bench_hash_json(json_t *v, char hex[65]);

/* An argv being built (NULL-terminated in v). */
#define BENCH_MAX_ARGS 256
struct bench_args {
	int n;
	char *v[BENCH_MAX_ARGS + 1];
	char buf[16384];
	size_t used;
	int overflow;			/* an argument did not fit */
};
void bench_args_add(struct bench_args *a, const char *s);
void bench_args_addf(struct bench_args *a, const char *fmt, long long v);
/* "--key value" per entry of a flag object in sorted key order; true ->
 * "--key", false -> nothing. */
void bench_args_flags(struct bench_args *a, json_t *o);
/* The environment for a child: environ without the MPI launcher's
 * variables (Open MPI's OMPI_*, PMIx's PMIX_*, the PMI_* of MPICH and
 * Slurm, PRRTE's PRTE_*). A step is one process even when pno bench runs
 * under mpirun; a child that saw them would take itself for a rank
 * (pno_dist_init) and break the job. The strings are environ's: free()
 * the array only. NULL if out of memory. */
char **bench_child_env(void);
/* Start exe with argv, stdin /dev/null, stdout and stderr appended to
 * log after a line "$ pno <args>". The pid, or -1 (printed). */
pid_t bench_spawn(const char *exe, char **argv, const char *log);
/* The exit status of a waitpid status (128 + signal if killed). */
int bench_exit_status(int st);
/* The error line of the log's last command: the first line of its
 * output starting with "pno", else its last non-empty line. */
void bench_log_error(const char *log, char *out, size_t size);

#endif
