/* pno bench, run as the real binary (PNO_BIN): bad configs are refused
 * before any work with the key named; a tiny config (heat 1D, two
 * methods, two seeds) runs end to end; the reports hold every cell and
 * one table row per PDE and method; a rerun reuses every cell; changing
 * one method's flags reruns only that method; a failing cell makes the
 * run exit non-zero and every report say so. */
#include "testutil.h"

#include <jansson.h>

#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char out_text[1 << 16], err_text[1 << 16];

static void slurp(const char *path, char *buf, size_t size)
{
	FILE *fp = fopen(path, "rb");
	size_t n = 0;
	if (fp) {
		n = fread(buf, 1, size - 1, fp);
		fclose(fp);
	}
	buf[n] = '\0';
}

/* Run PNO_BIN with the arguments (NULL-terminated); stdout and stderr
 * kept in out_text / err_text. Returns the exit status. */
static int run(const char *first, ...)
{
	char *argv[32];
	int n = 0;
	va_list ap;
	argv[n++] = PNO_BIN;
	va_start(ap, first);
	for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	char o[1024], e[1024];
	snprintf(o, sizeof o, "%s", tu_tmp_path("bench_stdout"));
	snprintf(e, sizeof e, "%s", tu_tmp_path("bench_stderr"));
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, o, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, PNO_BIN, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	slurp(o, out_text, sizeof out_text);
	slurp(e, err_text, sizeof err_text);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static void rm_rf(const char *path)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

/* the tiny config; %s slots: pno-d's epochs, an extra method entry */
static const char *tiny_fmt =
	"{\"name\": \"tiny\", \"seeds\": [1, 2], \"eval\": {\"samples\": 8},\n"
	" \"pdes\": [{\"name\": \"heat\", \"generate\": {\"samples\": 40, "
	"\"res\": 32, \"seed\": 3},\n"
	"   \"split\": {\"ntrain\": 30, \"nval\": 5, \"ntest\": 5}}],\n"
	" \"methods\": [\n"
	"  {\"label\": \"fno\", \"model\": \"fno\", \"train\": {\"width\": 8, "
	"\"modes\": 4, \"layers\": 2, \"epochs\": 2, \"batch\": 10}},\n"
	"  {\"label\": \"pno-d\", \"model\": \"pno-d\", \"train\": {\"width\": 8, "
	"\"modes\": 4, \"layers\": 2, \"epochs\": %d, \"batch\": 10, "
	"\"ens-samples\": 2}}%s]}\n";

static void tiny_config(const char *path, int pnod_epochs, const char *extra)
{
	char text[4096];
	snprintf(text, sizeof text, tiny_fmt, pnod_epochs, extra);
	write_file(path, text);
}

static void cell_file(char *buf, size_t n, const char *out, const char *method,
		      int seed, const char *file)
{
	snprintf(buf, n, "%s/cells/heat/%s/seed%d/%s", out, method, seed, file);
}

static struct timespec mtime(const char *path)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	return sb.st_mtim;
}

static int same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* ---- bad configs: exit 2, the key named, nothing written ---- */
static void test_bad_configs(void **state)
{
	(void)state;
	static const struct {
		const char *text, *want;
	} cases[] = {
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"plasma\"}], "
		 "\"methods\": [{\"model\": \"fno\"}]}",
		 "pdes[0].name: unknown PDE 'plasma'"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\"}], "
		 "\"methods\": [{\"model\": \"fno\"}, {\"model\": \"gp\"}]}",
		 "methods[1].model: unknown method 'gp'"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\"}], "
		 "\"methods\": [{\"model\": \"fno\"}], \"epochs\": 3}",
		 "epochs: unknown key"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\", \"spilt\": {}}], "
		 "\"methods\": [{\"model\": \"fno\"}]}",
		 "pdes[0].spilt: unknown key"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\"}], "
		 "\"methods\": [{\"model\": \"fno\", \"train\": {\"widht\": 8}}]}",
		 "methods[0].train.widht: unknown flag --widht"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\", \"generate\": "
		 "{\"out\": \"x.h5\"}}], \"methods\": [{\"model\": \"fno\"}]}",
		 "pdes[0].generate.out: set by pno bench"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\", \"generate\": "
		 "{\"kappa\": [1]}}], \"methods\": [{\"model\": \"fno\"}]}",
		 "pdes[0].generate.kappa: expected a number"},
		{"{\"seeds\": [], \"pdes\": [{\"name\": \"heat\"}], "
		 "\"methods\": [{\"model\": \"fno\"}]}",
		 "seeds: expected a non-empty array"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\"}], "
		 "\"methods\": [{\"model\": \"fno\"}, {\"model\": \"fno\"}]}",
		 "methods[1].label: 'fno' used twice"},
		{"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\"}],\n"
		 " \"methods\": [{\"model\": \"fno\",}]}",
		 "malformed JSON at line 2"},
	};
	char cfg[512], out[512], other[512];
	snprintf(cfg, sizeof cfg, "%s", tu_tmp_path("bench_bad.json"));
	snprintf(out, sizeof out, "%s", tu_tmp_path("bench_bad_out"));
	rm_rf(out);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		write_file(cfg, cases[i].text);
		int rc = run("bench", "--config", cfg, "--out", out, NULL);
		if (rc != 2 || !strstr(err_text, cases[i].want) ||
		    !strstr(err_text, cfg))
			fail_msg("case %zu: exit %d, stderr '%s' lacks '%s'", i,
				 rc, err_text, cases[i].want);
		assert_false(exists(out));	/* nothing written */
	}
	assert_int_equal(run("bench", "--config", "/nonexistent.json", "--out",
			     out, NULL), 2);
	assert_non_null(strstr(err_text, "/nonexistent.json"));
	assert_false(exists(out));
	/* a directory that is not a bench's is not touched */
	snprintf(other, sizeof other, "%s", tu_tmp_path("bench_other_dir"));
	char f[1024];
	rm_rf(other);
	assert_int_equal(mkdir(other, 0755), 0);
	snprintf(f, sizeof f, "%s/precious.txt", other);
	write_file(f, "x");
	tiny_config(cfg, 2, "");
	assert_int_equal(run("bench", "--config", cfg, "--out", other, NULL), 2);
	assert_non_null(strstr(err_text, "not a pno bench directory"));
	snprintf(f, sizeof f, "%s/data", other);
	assert_false(exists(f));
	rm_rf(other);
}

/* ---- the tiny benchmark: end to end, reports, resume, partial rerun ---- */

static json_t *load_results(const char *out)
{
	char path[1024];
	json_error_t err;
	snprintf(path, sizeof path, "%s/results.json", out);
	json_t *r = json_load_file(path, 0, &err);
	if (!r)
		fail_msg("%s: %s", path, err.text);
	return r;
}

/* Count table rows "| heat | <method> |" in results.md. */
static int md_rows(const char *out, const char *method)
{
	char path[1024], pat[128];
	static char md[1 << 16];
	snprintf(path, sizeof path, "%s/results.md", out);
	slurp(path, md, sizeof md);
	snprintf(pat, sizeof pat, "\n| heat | %s |", method);
	int n = 0;
	for (const char *s = md; (s = strstr(s, pat)); s++)
		n++;
	return n;
}

static void test_tiny_run_resume(void **state)
{
	(void)state;
	char cfg[512], out[512];
	snprintf(cfg, sizeof cfg, "%s", tu_tmp_path("bench_tiny.json"));
	snprintf(out, sizeof out, "%s", tu_tmp_path("bench_tiny_out"));
	char path[1024], csv[1 << 14];
	rm_rf(out);
	tiny_config(cfg, 2, "");
	int rc = run("bench", "--config", cfg, "--out", out, "--jobs", "2",
		     NULL);
	if (rc != 0)
		fail_msg("exit %d: %s", rc, err_text);
	/* the table printed and written: one row per PDE and method */
	assert_non_null(strstr(out_text, "| PDE | Method | Rel. L2 | NLL | "
				"CRPS | Coverage 90% |"));
	assert_int_equal(md_rows(out, "fno"), 1);
	assert_int_equal(md_rows(out, "pno-d"), 1);
	assert_null(strstr(out_text, "INCOMPLETE"));
	json_t *r = load_results(out);
	assert_string_equal(json_string_value(json_object_get(r, "schema")),
			    "pno-bench/1");
	assert_true(json_is_true(json_object_get(r, "complete")));
	assert_int_equal(json_integer_value(json_object_get(r, "cells_failed")), 0);
	json_t *cells = json_object_get(r, "cells");
	assert_int_equal(json_array_size(cells), 4);
	int seen[2][2] = {{0}};
	size_t i;
	json_t *c;
	json_array_foreach(cells, i, c)
	{
		const char *m = json_string_value(json_object_get(c, "method"));
		int s = (int)json_integer_value(json_object_get(c, "seed"));
		assert_string_equal(json_string_value(json_object_get(c, "status")), "ok");
		assert_true(s == 1 || s == 2);
		seen[!strcmp(m, "pno-d")][s - 1]++;
		json_t *ev = json_object_get(c, "eval");
		assert_string_equal(json_string_value(json_object_get(ev, "schema")),
				    "pno-eval/1");
		double l2 = json_number_value(json_object_get(
			json_object_get(ev, "metrics"), "rel_l2"));
		assert_true(l2 > 0 && l2 < 10);
		assert_false(json_is_true(json_object_get(c, "reused")));
	}
	for (int a = 0; a < 2; a++)
		for (int s = 0; s < 2; s++)
			assert_int_equal(seen[a][s], 1);
	/* the aggregate is the mean of the two seeds' values */
	json_t *ag = json_array_get(json_object_get(r, "aggregates"), 0);
	double v1 = json_number_value(json_object_get(json_object_get(
		json_object_get(json_array_get(cells, 0), "eval"), "metrics"), "rel_l2"));
	double v2 = json_number_value(json_object_get(json_object_get(
		json_object_get(json_array_get(cells, 1), "eval"), "metrics"), "rel_l2"));
	json_t *am = json_object_get(json_object_get(ag, "metrics"), "rel_l2");
	assert_float_equal(json_number_value(json_object_get(am, "mean")),
			   (v1 + v2) / 2, 1e-9 * (v1 + v2));
	assert_float_equal(json_number_value(json_object_get(am, "std")),
			   fabs(v1 - v2) / sqrt(2.0), 1e-6 * (v1 + v2));
	json_decref(r);
	snprintf(path, sizeof path, "%s/results.csv", out);
	slurp(path, csv, sizeof csv);
	int lines = 0;
	for (char *s = csv; *s; s++)
		lines += *s == '\n';
	assert_int_equal(lines, 5);	/* header + 4 cells */
	snprintf(path, sizeof path, "%s/results.tex", out);
	slurp(path, csv, sizeof csv);
	assert_non_null(strstr(csv, "\\toprule"));
	assert_non_null(strstr(csv, "\\bottomrule"));

	/* rerun: every cell reused, nothing retrained */
	char m_fno[1024], m_pnod[1024], l_fno[1024];
	cell_file(m_fno, sizeof m_fno, out, "fno", 1, "model.safetensors");
	cell_file(m_pnod, sizeof m_pnod, out, "pno-d", 2, "model.safetensors");
	cell_file(l_fno, sizeof l_fno, out, "fno", 1, "log.txt");
	struct timespec t_fno = mtime(m_fno), t_pnod = mtime(m_pnod);
	struct timespec t_log = mtime(l_fno);
	rc = run("bench", "--config", cfg, "--out", out, NULL);
	if (rc != 0)
		fail_msg("rerun exit %d: %s", rc, err_text);
	assert_non_null(strstr(err_text, "4 reused"));
	assert_null(strstr(err_text, "training"));
	assert_non_null(strstr(err_text, "data heat: reused"));
	assert_true(same_time(t_fno, mtime(m_fno)));
	assert_true(same_time(t_pnod, mtime(m_pnod)));
	assert_true(same_time(t_log, mtime(l_fno)));
	r = load_results(out);
	json_array_foreach(json_object_get(r, "cells"), i, c)
		assert_true(json_is_true(json_object_get(c, "reused")));
	json_decref(r);

	/* a cell that lost its result (as if its eval had failed) keeps
	 * its training and is only evaluated again */
	char res[1024];
	cell_file(res, sizeof res, out, "fno", 1, "result.json");
	assert_int_equal(unlink(res), 0);
	rc = run("bench", "--config", cfg, "--out", out, NULL);
	if (rc != 0)
		fail_msg("re-eval exit %d: %s", rc, err_text);
	assert_non_null(strstr(err_text, "3 reused"));
	assert_non_null(strstr(err_text, "fno/seed1: evaluating (trained earlier)"));
	assert_true(same_time(t_fno, mtime(m_fno)));
	assert_true(exists(res));

	/* pno-d's epochs changed: only its two cells rerun */
	tiny_config(cfg, 3, "");
	rc = run("bench", "--config", cfg, "--out", out, NULL);
	if (rc != 0)
		fail_msg("partial rerun exit %d: %s", rc, err_text);
	assert_non_null(strstr(err_text, "2 reused"));
	assert_true(same_time(t_fno, mtime(m_fno)));
	assert_false(same_time(t_pnod, mtime(m_pnod)));
	assert_non_null(strstr(err_text, "pno-d/seed1: training"));
	assert_null(strstr(err_text, "fno/seed1: training"));

	/* a method whose training fails: exit 1, every report says so */
	tiny_config(cfg, 3, ",\n  {\"label\": \"broken\", \"model\": \"fno\", "
		    "\"train\": {\"modes\": 100}}");
	rc = run("bench", "--config", cfg, "--out", out, NULL);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(err_text, "4 reused"));
	assert_non_null(strstr(err_text, "INCOMPLETE: 2 of 6 cells failed"));
	assert_non_null(strstr(out_text, "**INCOMPLETE: 2 of 6 cells failed.**"));
	assert_non_null(strstr(out_text, "--modes 100"));	/* the reason */
	assert_int_equal(md_rows(out, "broken"), 1);
	assert_non_null(strstr(out_text, "| 0/2 FAILED |"));
	r = load_results(out);
	assert_true(json_is_false(json_object_get(r, "complete")));
	assert_int_equal(json_integer_value(json_object_get(r, "cells_failed")), 2);
	json_decref(r);
	snprintf(path, sizeof path, "%s/results.csv", out);
	slurp(path, csv, sizeof csv);
	assert_non_null(strstr(csv, "heat,broken,fno,1,failed,train,"));
	snprintf(path, sizeof path, "%s/results.tex", out);
	slurp(path, csv, sizeof csv);
	assert_non_null(strstr(csv, "Incomplete: 2 of 6 cells failed"));
	/* the failed cells are retried next time, the others reused */
	rc = run("bench", "--config", cfg, "--out", out, NULL);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(err_text, "4 reused"));
	assert_non_null(strstr(err_text, "broken/seed1: training"));
	rm_rf(out);
}

/* ---- a time series with a rollout step: rollout.json per cell, its
 * per-step curves in results.json and two rollout figures ---- */
static void test_rollout_cells(void **state)
{
	(void)state;
	char cfg[512], out[512], path[1024];
	snprintf(cfg, sizeof cfg, "%s", tu_tmp_path("bench_ro.json"));
	snprintf(out, sizeof out, "%s", tu_tmp_path("bench_ro_out"));
	rm_rf(out);
	write_file(cfg,
		"{\"seeds\": [1], \"eval\": {\"samples\": 4},\n"
		" \"pdes\": [{\"name\": \"heat\", \"generate\": {\"samples\": 30, "
		"\"res\": 32, \"t-final\": 0.05, \"dt-out\": 0.01},\n"
		"  \"split\": {\"ntrain\": 20, \"nval\": 5, \"ntest\": 5},\n"
		"  \"rollout\": {\"steps\": 4, \"samples\": 4, \"first\": 25, "
		"\"trajectories\": 5}}],\n"
		" \"methods\": [{\"model\": \"mc-dropout\", \"train\": {\"width\": 8, "
		"\"modes\": 4, \"layers\": 2, \"epochs\": 2, \"pairs-step\": 1}}]}\n");
	int rc = run("bench", "--config", cfg, "--out", out, NULL);
	if (rc != 0)
		fail_msg("exit %d: %s", rc, err_text);
	json_t *r = load_results(out);
	json_t *c = json_array_get(json_object_get(r, "cells"), 0);
	json_t *ps = json_object_get(json_object_get(c, "rollout"), "per_step");
	assert_int_equal(json_array_size(ps), 4);
	for (size_t k = 0; k < 4; k++) {
		json_t *e = json_object_get(json_array_get(ps, k), "rel_l2");
		assert_true(json_is_number(e) && json_number_value(e) > 0);
	}
	json_decref(r);
	snprintf(path, sizeof path, "%s/plots/heat_rollout_error.png", out);
	assert_true(exists(path));
	snprintf(path, sizeof path, "%s/plots/heat_rollout_std.png", out);
	assert_true(exists(path));
	/* a rollout flag pno rollout does not take is refused up front */
	rm_rf(out);
	write_file(cfg,
		"{\"seeds\": [1], \"pdes\": [{\"name\": \"heat\", "
		"\"rollout\": {\"steps\": 4, \"horizon\": 9}}],\n"
		" \"methods\": [{\"model\": \"fno\"}]}\n");
	assert_int_equal(run("bench", "--config", cfg, "--out", out, NULL), 2);
	assert_non_null(strstr(err_text, "pdes[0].rollout.horizon: unknown flag"));
	assert_false(exists(out));
}

int main(void)
{
	/* the figures go through PLplot -> cairo -> fontconfig, whose caches
	 * live until exit: LeakSanitizer in the pno processes is told so (as
	 * test_plot does for itself) */
	char supp[1024], opts[2048];
	snprintf(supp, sizeof supp, "%s", tu_tmp_path("bench_lsan.supp"));
	write_file(supp, "leak:libfontconfig.so\n");
	const char *old = getenv("LSAN_OPTIONS");
	snprintf(opts, sizeof opts, "%s%ssuppressions=%s", old ? old : "",
		 old && *old ? ":" : "", supp);
	setenv("LSAN_OPTIONS", opts, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_tiny_run_resume),
		cmocka_unit_test(test_rollout_cells),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
