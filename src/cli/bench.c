/* pno bench: methods x PDEs x seeds. Generates (or reuses) each PDE's
 * data, trains and evaluates every cell by running this same binary's
 * `train` and `eval` commands as child processes (each cell isolated, its
 * flags checked by the real commands, its output in the cell's log), then
 * writes the reports. Behaviour: docs/bench.md. */
#include "bench.h"
#include "cli.h"
#include "flags.h"

#include "pno/core.h"
#include "pno/dist.h"
#include "pno/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
	signal(sig, SIG_DFL);
}

/* ---- data ---- */

static void gen_hash(const struct bench_pde *p, char hex[65])
{
	json_t *o = json_pack("{s:s, s:O}", "pde", p->name, "generate",
			      p->generate);
	if (!o || bench_hash_json(o, hex))
		hex[0] = '\0';
	json_decref(o);
}

static void data_path(const struct bench *b, struct bench_pde *p)
{
	snprintf(p->data, sizeof p->data, "%s/data/%s.h5", b->out, p->label);
}

/* Reuse DIR/data/<label>.h5 when its record matches the generation
 * arguments, else generate it. Returns 0 (p->data_ok says whether there
 * is data), 130 if interrupted. */
static int bench_data(struct bench *b, struct bench_pde *p)
{
	char rec[BENCH_PATH], log[BENCH_PATH], want[65], tmp[BENCH_PATH];
	data_path(b, p);
	snprintf(rec, sizeof rec, "%s/data/%s.json", b->out, p->label);
	snprintf(log, sizeof log, "%s/data/%s.log", b->out, p->label);
	gen_hash(p, want);
	if (!b->force && access(p->data, R_OK) == 0) {
		json_t *r = json_load_file(rec, 0, NULL);
		const char *gh = json_string_value(json_object_get(r, "generate_hash"));
		const char *dh = json_string_value(json_object_get(r, "data_blake2b"));
		char have[65];
		if (gh && dh && !strcmp(gh, want) && !file_hash(p->data, have) &&
		    !strcmp(have, dh)) {
			snprintf(p->data_hash, sizeof p->data_hash, "%s", dh);
			p->gen_seconds = json_number_value(json_object_get(r, "seconds"));
			p->data_ok = p->data_reused = 1;
			json_decref(r);
			if (!b->quiet)
				fprintf(stderr, "pno bench: data %s: reused %s\n",
					p->label, p->data);
			return 0;
		}
		json_decref(r);
	}
	struct bench_args a = {0};
	bench_args_add(&a, b->exe);
	bench_args_add(&a, "generate");
	bench_args_add(&a, p->name);
	bench_args_flags(&a, p->generate);
	bench_args_add(&a, "--out");
	bench_args_add(&a, p->data);
	bench_args_add(&a, "--force");
	bench_args_add(&a, "--quiet");
	bench_args_add(&a, "--threads");
	bench_args_addf(&a, "%lld", (long long)b->threads * b->jobs);
	if (a.overflow) {
		snprintf(p->data_error, sizeof p->data_error, "the generate "
			 "arguments exceed 256 or 16 KB");
		fprintf(stderr, "pno bench: data %s: %s\n", p->label,
			p->data_error);
		return 0;
	}
	unlink(rec);	/* a stale record must not vouch for new data */
	FILE *fp = fopen(log, "w");
	if (fp)
		fclose(fp);
	if (!b->quiet)
		fprintf(stderr, "pno bench: data %s: generating (%s)\n",
			p->label, log);
	double t0 = cli_now();
	pid_t pid = bench_spawn(b->exe, a.v, log);
	int st = 0;
	if (pid > 0)
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			if (interrupted)
				kill(pid, SIGTERM);
	p->gen_seconds = cli_now() - t0;
	if (interrupted)
		return 130;
	if (pid < 0 || bench_exit_status(st) != 0) {
		bench_log_error(log, p->data_error, sizeof p->data_error);
		fprintf(stderr, "pno bench: data %s: pno generate failed "
			"(exit %d): %s\n", p->label, pid < 0 ? -1 :
			bench_exit_status(st), p->data_error);
		return 0;
	}
	if (file_hash(p->data, p->data_hash)) {
		snprintf(p->data_error, sizeof p->data_error,
			 "the generated file is unreadable");
		fprintf(stderr, "pno bench: %s: %s\n", p->data, p->data_error);
		return 0;
	}
	json_t *r = json_pack("{s:s, s:s, s:s, s:O, s:f}", "schema",
			      "pno-bench-data/1", "generate_hash", want,
			      "data_blake2b", p->data_hash, "generate",
			      p->generate, "seconds", p->gen_seconds);
	snprintf(tmp, sizeof tmp, "%s", rec);
	if (!r || bench_write_json(tmp, r)) {
		json_decref(r);
		return 0;
	}
	json_decref(r);
	p->data_ok = 1;
	if (!b->quiet)
		fprintf(stderr, "pno bench: data %s: %.1f s\n", p->label,
			p->gen_seconds);
	return 0;
}

/* ---- cells ---- */

static const char *const step_name[] = {"train", "eval", "rollout"};

static void cell_hash(const struct bench *b, struct bench_cell *c)
{
	const struct bench_pde *p = &b->pdes[c->p];
	const struct bench_method *m = &b->methods[c->m];
	json_t *o = json_pack(
		"{s:{s:s, s:O, s:i, s:i, s:i, s:i, s:i}, s:{s:s, s:O}, s:I, "
		"s:{s:i, s:s, s:i}, s:s}",
		"pde", "name", p->name, "generate", p->generate, "ntrain",
		p->ntrain, "nval", p->nval, "ntest", p->ntest, "t_in", p->t_in,
		"t_out", p->t_out, "method", "model", m->model, "train",
		m->train, "seed", (json_int_t)c->seed, "eval", "samples",
		b->eval_samples, "split", b->eval_split, "max_samples",
		b->eval_max, "data_blake2b", p->data_hash);
	if (o && p->rollout)	/* absent when none: old hashes stay valid */
		json_object_set(json_object_get(o, "pde"), "rollout",
				p->rollout);
	if (!o || bench_hash_json(o, c->hash))
		c->hash[0] = '\0';
	json_decref(o);
}

static void cell_path(const struct bench_cell *c, const char *file,
		      char *out, size_t size)
{
	/* paths are bounded: --out is at most 2048 bytes, labels 63 */
	if (snprintf(out, size, "%s/%s", c->dir, file) >= (int)size)
		out[0] = '\0';
}

static void cell_fail(struct bench_cell *c, const char *step, int code,
		      const char *why);

void bench_cell_from_doc(struct bench_cell *c, json_t *r)
{
	const char *st = json_string_value(json_object_get(r, "status"));
	json_t *ev = json_object_get(r, "eval"), *ro = json_object_get(r, "rollout");
	c->train_seconds = json_number_value(json_object_get(r, "train_seconds"));
	c->eval_seconds = json_number_value(json_object_get(r, "eval_seconds"));
	c->train_cpu = json_number_value(json_object_get(r, "train_cpu_seconds"));
	c->eval_cpu = json_number_value(json_object_get(r, "eval_cpu_seconds"));
	if (st && !strcmp(st, "ok") && json_is_object(ev)) {
		c->eval = json_incref(ev);
		c->rollout = json_is_object(ro) ? json_incref(ro) : NULL;
		c->state = BENCH_CELL_OK;
		return;
	}
	const char *step = json_string_value(json_object_get(r, "failed_step"));
	const char *why = json_string_value(json_object_get(r, "error"));
	cell_fail(c, step ? step : "?",
		  (int)json_integer_value(json_object_get(r, "exit_code")),
		  why ? why : "no result");
}

/* A finished cell from an earlier run: its result records status ok and
 * this cell's hash, and its model and eval files are there. */
static int cell_reuse(const struct bench *b, struct bench_cell *c)
{
	char res[BENCH_PATH], model[BENCH_PATH];
	cell_path(c, "result.json", res, sizeof res);
	cell_path(c, "model.safetensors", model, sizeof model);
	json_t *r = json_load_file(res, 0, NULL);
	const char *st = json_string_value(json_object_get(r, "status"));
	const char *h = json_string_value(json_object_get(r, "hash"));
	json_t *ev = json_object_get(r, "eval");
	int ok = st && h && c->hash[0] && !strcmp(st, "ok") &&
		 !strcmp(h, c->hash) && json_is_object(ev) &&
		 access(model, R_OK) == 0;
	json_t *ro = json_object_get(r, "rollout");
	if (ok && b->pdes[c->p].rollout && !json_is_object(ro))
		ok = 0;
	if (ok) {
		bench_cell_from_doc(c, r);
		c->reused = 1;
	}
	json_decref(r);
	return ok;
}

json_t *bench_cell_doc(const struct bench *b, const struct bench_cell *c)
{
	json_t *r = json_pack(
		"{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:f, s:f, s:f, s:f}", "schema",
		"pno-bench-cell/1", "pde", b->pdes[c->p].label, "method",
		b->methods[c->m].label, "model", b->methods[c->m].model,
		"seed", (json_int_t)c->seed, "hash", c->hash, "status",
		c->state == BENCH_CELL_OK ? "ok" : "failed", "train_seconds",
		c->train_seconds, "eval_seconds", c->eval_seconds,
		"train_cpu_seconds", c->train_cpu, "eval_cpu_seconds",
		c->eval_cpu);
	if (!r)
		return NULL;
	if (c->state == BENCH_CELL_OK) {
		json_object_set(r, "eval", c->eval);
		if (c->rollout)
			json_object_set(r, "rollout", c->rollout);
	} else {
		json_object_set_new(r, "failed_step",
				    json_string(c->failed_step));
		json_object_set_new(r, "exit_code", json_integer(c->exit_code));
		json_object_set_new(r, "error", json_string(c->error));
	}
	return r;
}

static int cell_write_result(const struct bench *b, struct bench_cell *c)
{
	char res[BENCH_PATH];
	cell_path(c, "result.json", res, sizeof res);
	json_t *r = bench_cell_doc(b, c);
	if (!r)
		return 1;
	int rc = bench_write_json(res, r);
	json_decref(r);
	return rc;
}

static void cell_fail(struct bench_cell *c, const char *step, int code,
		      const char *why)
{
	c->state = BENCH_CELL_FAILED;
	snprintf(c->failed_step, sizeof c->failed_step, "%s", step);
	c->exit_code = code;
	snprintf(c->error, sizeof c->error, "%s", why);
}

/* Launch the cell's current step. */
static int cell_launch(const struct bench *b, struct bench_cell *c)
{
	const struct bench_pde *p = &b->pdes[c->p];
	const struct bench_method *m = &b->methods[c->m];
	char model[BENCH_PATH], evj[BENCH_PATH], log[BENCH_PATH];
	struct bench_args a = {0};
	cell_path(c, "model.safetensors", model, sizeof model);
	cell_path(c, "eval.json", evj, sizeof evj);
	cell_path(c, "log.txt", log, sizeof log);
	bench_args_add(&a, b->exe);
	if (c->step == 0) {
		bench_args_add(&a, "train");
		bench_args_add(&a, "--model");
		bench_args_add(&a, m->model);
		bench_args_flags(&a, m->train);
		bench_args_add(&a, "--data");
		bench_args_add(&a, p->data);
		bench_args_add(&a, "--out");
		bench_args_add(&a, model);
		bench_args_add(&a, "--seed");
		bench_args_addf(&a, "%lld", (long long)c->seed);
		if (p->ntrain > 0) {
			bench_args_add(&a, "--ntrain");
			bench_args_addf(&a, "%lld", p->ntrain);
		}
		if (p->nval >= 0) {
			bench_args_add(&a, "--nval");
			bench_args_addf(&a, "%lld", p->nval);
		}
		if (p->ntest > 0) {
			bench_args_add(&a, "--ntest");
			bench_args_addf(&a, "%lld", p->ntest);
		}
		if (p->has_t) {
			bench_args_add(&a, "--t-in");
			bench_args_addf(&a, "%lld", p->t_in);
			bench_args_add(&a, "--t-out");
			bench_args_addf(&a, "%lld", p->t_out);
		}
	} else if (c->step == 2) {
		cell_path(c, "rollout.json", evj, sizeof evj);
		bench_args_add(&a, "rollout");
		bench_args_add(&a, "--model");
		bench_args_add(&a, model);
		bench_args_add(&a, "--data");
		bench_args_add(&a, p->data);
		bench_args_flags(&a, p->rollout);
		bench_args_add(&a, "--seed");
		bench_args_addf(&a, "%lld", (long long)c->seed);
		bench_args_add(&a, "--json");
		bench_args_add(&a, evj);
	} else {
		bench_args_add(&a, "eval");
		bench_args_add(&a, "--model");
		bench_args_add(&a, model);
		bench_args_add(&a, "--data");
		bench_args_add(&a, p->data);
		bench_args_add(&a, "--samples");
		bench_args_addf(&a, "%lld", b->eval_samples);
		bench_args_add(&a, "--split");
		bench_args_add(&a, b->eval_split);
		bench_args_add(&a, "--seed");
		bench_args_addf(&a, "%lld", (long long)c->seed);
		if (b->eval_max > 0) {
			bench_args_add(&a, "--max-samples");
			bench_args_addf(&a, "%lld", b->eval_max);
		}
		bench_args_add(&a, "--json");
		bench_args_add(&a, evj);
	}
	bench_args_add(&a, "--threads");
	bench_args_addf(&a, "%lld", b->threads);
	bench_args_add(&a, "--force");
	c->t_step = cli_now();
	if (a.overflow) {
		c->pid = -1;
		cell_fail(c, step_name[c->step], -1, "the step's arguments "
			  "exceed 256 or 16 KB");
		return -1;
	}
	c->pid = bench_spawn(b->exe, a.v, log);
	if (c->pid < 0) {
		cell_fail(c, step_name[c->step], -1, "cannot start");
		return -1;
	}
	return 0;
}

/* A cell whose training finished in an earlier run (trained.json holds
 * its hash and the model is there) starts at its eval: an eval that
 * failed or was interrupted does not cost the training again. */
static int cell_trained(const struct bench *b, struct bench_cell *c)
{
	char rec[BENCH_PATH], model[BENCH_PATH];
	cell_path(c, "trained.json", rec, sizeof rec);
	cell_path(c, "model.safetensors", model, sizeof model);
	if (b->force || access(model, R_OK) != 0)
		return 0;
	json_t *r = json_load_file(rec, 0, NULL);
	const char *h = json_string_value(json_object_get(r, "hash"));
	int ok = h && c->hash[0] && !strcmp(h, c->hash);
	if (ok) {
		c->train_seconds = json_number_value(json_object_get(r, "train_seconds"));
		c->train_cpu = json_number_value(json_object_get(r, "train_cpu_seconds"));
	}
	json_decref(r);
	return ok;
}

static int cell_start(const struct bench *b, struct bench_cell *c)
{
	char log[BENCH_PATH], res[BENCH_PATH], rec[BENCH_PATH];
	if (bench_mkdir_p(c->dir) != 0) {
		cell_fail(c, "setup", -1, strerror(errno));
		return -1;
	}
	cell_path(c, "log.txt", log, sizeof log);
	cell_path(c, "result.json", res, sizeof res);
	cell_path(c, "trained.json", rec, sizeof rec);
	unlink(res);
	c->state = BENCH_CELL_RUNNING;
	c->t_start = cli_now();
	c->step = cell_trained(b, c);
	FILE *fp = fopen(log, c->step ? "a" : "w");	/* a fresh log per training */
	if (fp) {
		if (c->step)
			fprintf(fp, "# pno bench: training reused (trained.json "
				"matches), evaluating again\n");
		fclose(fp);
	}
	if (!c->step)
		unlink(rec);
	return cell_launch(b, c);
}

/* A step of c exited with status st: go on, or finish the cell. */
static void cell_step_done(const struct bench *b, struct bench_cell *c,
			   int st, const struct rusage *ru)
{
	char log[BENCH_PATH], evj[BENCH_PATH];
	cell_path(c, "log.txt", log, sizeof log);
	cell_path(c, "eval.json", evj, sizeof evj);
	double dt = cli_now() - c->t_step;
	int code = bench_exit_status(st);
	c->pid = 0;
	double cpu = (double)ru->ru_utime.tv_sec + 1e-6 * ru->ru_utime.tv_usec +
		     (double)ru->ru_stime.tv_sec + 1e-6 * ru->ru_stime.tv_usec;
	if (c->step == 0) {
		c->train_seconds = dt;
		c->train_cpu = cpu;
	} else if (c->step == 1) {
		c->eval_seconds = dt;
		c->eval_cpu = cpu;
	} else {	/* the rollout counts as evaluation */
		c->eval_seconds += dt;
		c->eval_cpu += cpu;
	}
	if (code != 0) {
		char why[512];
		bench_log_error(log, why, sizeof why);
		cell_fail(c, step_name[c->step], code, why);
		return;
	}
	if (c->step == 0) {
		char rec[BENCH_PATH];
		cell_path(c, "trained.json", rec, sizeof rec);
		json_t *r = json_pack("{s:s, s:s, s:f, s:f}", "schema",
				      "pno-bench-trained/1", "hash", c->hash,
				      "train_seconds", c->train_seconds,
				      "train_cpu_seconds", c->train_cpu);
		if (r)
			bench_write_json(rec, r);
		json_decref(r);
		c->step = 1;
		cell_launch(b, c);
		return;
	}
	json_error_t err;
	if (c->step == 2) {
		char rj[BENCH_PATH];
		cell_path(c, "rollout.json", rj, sizeof rj);
		c->rollout = json_load_file(rj, 0, &err);
		if (!json_is_array(json_object_get(c->rollout, "per_step"))) {
			json_decref(c->rollout);
			c->rollout = NULL;
			cell_fail(c, "rollout", 0, "rollout.json has no per_step");
			return;
		}
		c->state = BENCH_CELL_OK;
		return;
	}
	c->eval = json_load_file(evj, 0, &err);
	if (!json_is_object(json_object_get(c->eval, "metrics"))) {
		char why[512];
		if (snprintf(why, sizeof why, "%s: not an eval document (%s)",
			     evj, c->eval ? "no \"metrics\"" : err.text) < 0)
			why[0] = '\0';
		json_decref(c->eval);
		c->eval = NULL;
		cell_fail(c, "eval", 0, why);
		return;
	}
	if (b->pdes[c->p].rollout) {
		c->step = 2;
		cell_launch(b, c);
		return;
	}
	c->state = BENCH_CELL_OK;
}

static const char *cell_name(const struct bench *b, const struct bench_cell *c,
			     char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s/seed%llu", b->pdes[c->p].label,
		 b->methods[c->m].label, (unsigned long long)c->seed);
	return buf;
}

/* Run every pending cell, up to b->jobs at a time. */
static int run_cells(struct bench *b)
{
	int running = 0, done = 0, todo = 0, ran = 0, forwarded = 0;
	/* under mpirun: this rank's cells only, counted on their own */
	int me = pno_dist_rank(), ranks = pno_dist_size();
	int total = ranks > 1 ? 0 : b->n_cells;
	char who[32] = "pno bench";
	double spent = 0;
	for (int i = 0; i < b->n_cells; i++)
		if (b->cells[i].state == BENCH_CELL_PENDING &&
		    b->cells[i].rank == me)
			todo++;
		else if (ranks == 1)
			done++;
	if (ranks > 1) {
		total = todo;
		snprintf(who, sizeof who, "pno bench: rank %d", me);
	}
	int next = 0;
	for (;;) {
		while (!interrupted && running < b->jobs && next < b->n_cells) {
			struct bench_cell *c = &b->cells[next++];
			char nm[256];
			if (c->state != BENCH_CELL_PENDING || c->rank != me)
				continue;
			int ok = cell_start(b, c) == 0;
			if (!b->quiet)
				fprintf(stderr, "%s: [%d/%d] %s: %s\n",
					who, done + 1, total,
					cell_name(b, c, nm, sizeof nm),
					c->step ? "evaluating (trained "
						  "earlier)" : "training");
			if (ok)
				running++;
			else {
				cell_write_result(b, c);
				done++;
			}
		}
		if (running == 0)
			break;
		if (interrupted && !forwarded) {
			/* a SIGTERM sent to pno bench alone reaches the
			 * children too (Ctrl-C reaches the group anyway) */
			for (int i = 0; i < b->n_cells; i++)
				if (b->cells[i].state == BENCH_CELL_RUNNING &&
				    b->cells[i].pid > 0)
					kill(b->cells[i].pid, SIGTERM);
			forwarded = 1;
		}
		int st;
		struct rusage ru;
		pid_t pid = wait4(-1, &st, 0, &ru);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		struct bench_cell *c = NULL;
		for (int i = 0; i < b->n_cells; i++)
			if (b->cells[i].state == BENCH_CELL_RUNNING &&
			    b->cells[i].pid == pid)
				c = &b->cells[i];
		if (!c)
			continue;
		int step = c->step;
		if (interrupted) {	/* the child got the signal too */
			c->pid = 0;
			c->state = BENCH_CELL_PENDING;
			running--;
			continue;
		}
		cell_step_done(b, c, st, &ru);
		if (c->state == BENCH_CELL_RUNNING) {
			if (c->pid > 0) {
				if (!b->quiet && step == 0) {
					char nm[256];
					fprintf(stderr, "%s: [%d/%d] "
						"%s: trained in %.1f s, "
						"evaluating\n", who, done + 1,
						total,
						cell_name(b, c, nm, sizeof nm),
						c->train_seconds);
				}
				continue;
			}
		}
		running--;
		done++;
		ran++;
		spent += cli_now() - c->t_start;
		cell_write_result(b, c);
		if (!b->quiet) {
			char nm[256], eta[32];
			int left = todo - ran;
			cli_fmt_duration(eta, sizeof eta,
				     spent / ran * left / b->jobs);
			cell_name(b, c, nm, sizeof nm);
			if (c->state == BENCH_CELL_OK)
				fprintf(stderr, "%s: [%d/%d] %s: done "
					"in %.1f s, rel L2 %.4g, CRPS %.4g; "
					"%d to go, ETA %s\n", who, done,
					total, nm,
					cli_now() - c->t_start,
					bench_metric(c, "rel_l2"),
					bench_metric(c, "crps"), left, eta);
			else
				fprintf(stderr, "%s: [%d/%d] %s: "
					"FAILED in %s (exit %d): %s; %d to "
					"go, ETA %s\n", who, done, total, nm,
					c->failed_step, c->exit_code,
					c->error, left, eta);
		}
	}
	return interrupted ? 130 : 0;
}

/* ---- the command ---- */

static const char *bench_usage =
	"usage: pno bench --config CONFIG.json --out DIR [--jobs J]\n"
	"                 [--threads T] [--force] [--no-plots] [--data-only]\n"
	"                 [--quiet]\n"
	"\n"
	"Run methods x PDEs x seeds from a config: generate (or reuse) each\n"
	"PDE's dataset, train and evaluate every cell (each step a child\n"
	"process of this binary, its output in DIR/cells/.../log.txt), then\n"
	"write DIR/results.{json,csv,md,tex} (mean +/- std over seeds) and\n"
	"PNG figures in DIR/plots. Rerunning with the same DIR reuses every\n"
	"cell whose config slice and data are unchanged. Exit status 0 when\n"
	"every cell finished, 1 when some failed (the reports say which), 2\n"
	"for a bad config or flag, 130 when interrupted (finished cells are\n"
	"kept). Config format and outputs: docs/bench.md.\n";

/* DIR: new, empty, or an earlier bench's (it has config.json); creates
 * DIR/data and writes DIR/config.json. 0, or 1 or 2 having printed why. */
static int prepare_out(struct bench *b, const char *config)
{
	const char *out = b->out;
	char path[BENCH_PATH];
	struct stat sb;
	snprintf(path, sizeof path, "%s/config.json", out);
	if (stat(out, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode)) {
			fprintf(stderr, "pno bench: --out %s: not a "
				"directory\n", out);
			return 2;
		}
		if (access(path, F_OK) != 0 && !bench_dir_empty(out)) {
			fprintf(stderr, "pno bench: --out %s: exists and is "
				"not a pno bench directory (no config.json); "
				"choose a new directory\n", out);
			return 2;
		}
	}
	char dirs[BENCH_PATH];
	snprintf(dirs, sizeof dirs, "%s/data", out);
	if (bench_mkdir_p(dirs) != 0) {
		fprintf(stderr, "pno bench: --out %s: cannot create: %s\n",
			out, strerror(errno));
		return 2;
	}
	json_t *cfg_copy = json_deep_copy(b->cfg);
	json_object_set_new(cfg_copy, "config_path", json_string(config));
	if (!cfg_copy || bench_write_json(path, cfg_copy)) {
		json_decref(cfg_copy);
		return 1;
	}
	json_decref(cfg_copy);
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	const char *config = NULL, *out = NULL;
	static struct bench b;
	int jobs = 1, threads = 1, force = 0, no_plots = 0, data_only = 0;
	int rc = 2;
	struct flag f[] = {
		{"config", FLAG_STRING, &config, 0, 0, "benchmark config (JSON)", 1, 0},
		{"out", FLAG_STRING, &out, 0, 0, "output directory (created; reused when rerun)", 1, 0},
		{"jobs", FLAG_INT, &jobs, 1, 64, "cells run at the same time", 0, 0},
		{"threads", FLAG_INT, &threads, 1, 1024, "threads of each train/eval process (results are bitwise reproducible at a fixed value)", 0, 0},
		{"force", FLAG_BOOL, &force, 0, 0, "regenerate the data and rerun every cell", 0, 0},
		{"no-plots", FLAG_BOOL, &no_plots, 0, 0, "skip the figures", 0, 0},
		{"data-only", FLAG_BOOL, &data_only, 0, 0, "generate (or check) the datasets and stop", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only the table and errors", 0, 0},
	};
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\noptions:\n", bench_usage);
			flags_help(stdout, f, NF(f));
			return 0;
		}
	if (flags_parse("bench", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	/* jansson's allocator is process-wide and the library switches it
	 * to its own hooks the first time it parses JSON (loading a model
	 * for the figures); a value allocated before the switch cannot be
	 * freed after it, so switch before the first config value exists */
	pno_json_init();
	if (strlen(out) > 2048) {
		fprintf(stderr, "pno bench: --out: path longer than 2048 "
			"bytes\n");
		return 2;
	}
	memset(&b, 0, sizeof b);
	b.out = out;
	b.jobs = jobs;
	b.threads = threads;
	b.force = force;
	b.quiet = quiet;
	b.no_plots = no_plots;
	ssize_t n = readlink("/proc/self/exe", b.exe, sizeof b.exe - 1);
	if (n <= 0 || (size_t)n >= sizeof b.exe - 1)
		snprintf(b.exe, sizeof b.exe, "%s", argv[0]);
	else
		b.exe[n] = '\0';
	/* under mpirun (bench.h): rank 0 prepares DIR; every step that may
	 * fail on one rank ends in an agreement, so all ranks stop together */
	int me = pno_dist_rank(), ranks = pno_dist_size();
	rc = bench_config_load(&b, config);
	if ((rc = bench_agree(rc, "loading the config")))
		goto done;
	if ((rc = bench_agree(me == 0 ? prepare_out(&b, config) : 0,
			      "preparing --out")))
		goto done;

	struct sigaction sa, old_int, old_term;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	double t0 = cli_now();

	for (int i = 0; i < b.n_pdes && !interrupted; i++) {
		data_path(&b, &b.pdes[i]);	/* rank i % ranks makes it */
		if (i % ranks == me && bench_data(&b, &b.pdes[i]) == 130)
			interrupted = 1;
	}
	pno_dist_barrier_idle(0.1);	/* a rank done early sleeps */
	if (bench_agree(interrupted ? 130 : 0, "generating data") == 130)
		interrupted = 1;
	if (interrupted) {
		fprintf(stderr, "pno bench: interrupted while generating "
			"data; rerun to resume\n");
		rc = 130;
		goto restore;
	}
	if ((rc = bench_agree(bench_share_data(&b), "sharing the data")))
		goto restore;
	if (data_only) {
		rc = 0;
		for (int i = 0; i < b.n_pdes; i++)
			if (!b.pdes[i].data_ok)
				rc = 1;
		goto restore;
	}
	b.n_cells = b.n_pdes * b.n_methods * b.n_seeds;
	b.cells = pno_calloc((size_t)b.n_cells, sizeof *b.cells);
	if (!b.cells)
		fprintf(stderr, "pno bench: out of memory\n");
	if ((rc = bench_agree(b.cells ? 0 : 1, "allocating the cells")))
		goto restore;
	int reused = 0;
	for (int p = 0, k = 0; p < b.n_pdes; p++)
		for (int m = 0; m < b.n_methods; m++)
			for (int s = 0; s < b.n_seeds; s++, k++) {
				struct bench_cell *c = &b.cells[k];
				c->p = p;
				c->m = m;
				c->seed = b.seeds[s];
				snprintf(c->dir, sizeof c->dir,
					 "%s/cells/%s/%s/seed%llu", out,
					 b.pdes[p].label, b.methods[m].label,
					 (unsigned long long)c->seed);
				if (!b.pdes[p].data_ok) {
					cell_fail(c, "generate", 1,
						  b.pdes[p].data_error);
					continue;
				}
				cell_hash(&b, c);
				/* rank 0 judges, and tells the others */
				if (!force && me == 0 && cell_reuse(&b, c))
					reused++;
			}
	if ((rc = bench_deal_cells(&b)))
		goto restore;
	if (!b.quiet && me == 0) {
		char over[48] = "";
		if (ranks > 1)
			snprintf(over, sizeof over, " in each of %d processes",
				 ranks);
		fprintf(stderr, "pno bench: %d cells (%d PDEs x %d methods x "
			"%d seeds), %d reused from an earlier run, %d job%s "
			"x %d thread%s%s\n", b.n_cells, b.n_pdes, b.n_methods,
			b.n_seeds, reused, b.jobs, b.jobs > 1 ? "s" : "",
			b.threads, b.threads > 1 ? "s" : "", over);
	}
	if (!interrupted && run_cells(&b) == 130)
		interrupted = 1;
	pno_dist_barrier_idle(0.1);
	if (bench_agree(interrupted ? 130 : 0, "running the cells") == 130)
		interrupted = 1;
	if (interrupted) {
		if (me == 0)
			fprintf(stderr, "pno bench: interrupted; finished cells "
				"are kept in %s and reused when rerun\n", out);
		rc = 130;
		goto restore;
	}
	if ((rc = bench_collect(&b)))
		goto restore;
	b.wall_seconds = cli_now() - t0;
	if (me == 0) {
		int failed = 0;
		for (int i = 0; i < b.n_cells; i++)
			failed += b.cells[i].state != BENCH_CELL_OK;
		rc = bench_reports(&b);
		if (!no_plots && bench_plots(&b) > 0 && rc == 0)
			rc = 1;
		if (failed) {
			fprintf(stderr, "pno bench: INCOMPLETE: %d of %d cells "
				"failed (see %s/results.md and the cells' "
				"log.txt)\n", failed, b.n_cells, out);
			rc = 1;
		} else if (!b.quiet) {
			char w[32];
			cli_fmt_duration(w, sizeof w, b.wall_seconds);
			fprintf(stderr, "pno bench: all %d cells finished in "
				"%s; reports in %s\n", b.n_cells, w, out);
		}
	}
	/* rank 0's verdict is every rank's exit status */
	if (pno_dist_bcast(&rc, sizeof rc, 0) != PNO_STATUS_OK) {
		fprintf(stderr, "pno bench: %s\n", pno_last_error());
		rc = 1;
	}
restore:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
done:
	bench_free(&b);
	return rc;
}
