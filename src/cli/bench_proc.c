/* pno bench: running the steps (argv from the config's flag objects,
 * child processes with their output in a log, the error line of a failed
 * step), hashing, and the small file helpers. */
#include "bench.h"
#include "cli.h"

#include "pno/core.h"
#include "pno/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int bench_dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;
	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n == 0;
}

int bench_mkdir_p(const char *path)
{
	char buf[BENCH_PATH];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

int bench_write_text(const char *path, const char *text)
{
	struct pno_atomic_file f;
	enum pno_status s = pno_atomic_open(&f, path, 1);
	if (s != PNO_STATUS_OK)
		return runtime_error("bench", s);
	if (fputs(text, f.fp) == EOF) {
		pno_atomic_abort(&f);
		fprintf(stderr, "pno bench: %s: write failed\n", path);
		return 1;
	}
	if ((s = pno_atomic_commit(&f)) != PNO_STATUS_OK)
		return runtime_error("bench", s);
	return 0;
}

char *bench_json_text(const json_t *v, size_t flags)
{
	size_t n = json_dumpb(v, NULL, 0, flags | JSON_ENCODE_ANY);
	char *t = n ? malloc(n + 2) : NULL;
	if (!t)
		return NULL;
	if (json_dumpb(v, t, n, flags | JSON_ENCODE_ANY) != n) {
		free(t);
		return NULL;
	}
	t[n] = '\0';
	return t;
}

int bench_write_json(const char *path, json_t *doc)
{
	char *text = bench_json_text(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
	if (!text) {
		fprintf(stderr, "pno bench: %s: out of memory\n", path);
		return 1;
	}
	size_t n = strlen(text);
	char *t = realloc(text, n + 2);
	if (!t) {
		free(text);
		return 1;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	int rc = bench_write_text(path, t);
	free(t);
	return rc;
}

/* BLAKE2b-256 of a byte string / a file, as hex. */
static void hash_bytes(const char *s, size_t n, char hex[65])
{
	unsigned char h[32];
	crypto_generichash(h, sizeof h, (const unsigned char *)s, n, NULL, 0);
	sodium_bin2hex(hex, 65, h, sizeof h);
}


/* Hash of a JSON value in canonical form (sorted keys, compact). */
int bench_hash_json(json_t *v, char hex[65])
{
	char *s = bench_json_text(v, JSON_COMPACT | JSON_SORT_KEYS |
				       JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
	if (!s)
		return -1;
	hash_bytes(s, strlen(s), hex);
	free(s);
	return 0;
}

/* ---- argv from a flag object ---- */

void bench_args_add(struct bench_args *a, const char *s)
{
	size_t len = strlen(s) + 1;
	if (a->n >= BENCH_MAX_ARGS || a->used + len > sizeof a->buf) {
		a->overflow = 1;	/* the step is refused, not cut short */
		return;
	}
	memcpy(a->buf + a->used, s, len);
	a->v[a->n++] = a->buf + a->used;
	a->v[a->n] = NULL;
	a->used += len;
}

void bench_args_addf(struct bench_args *a, const char *fmt, long long v)
{
	char s[32];
	snprintf(s, sizeof s, fmt, v);
	bench_args_add(a, s);
}

/* "--key value" for each entry; true -> "--key", false -> nothing. The
 * object is walked in sorted key order so argv is deterministic. */
void bench_args_flags(struct bench_args *a, json_t *o)
{
	const char *keys[BENCH_MAX_ARGS];
	int n = 0;
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		if (n < BENCH_MAX_ARGS)
			keys[n++] = k;
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		char flag[80], val[64];
		v = json_object_get(o, keys[i]);
		if (json_is_false(v))
			continue;
		snprintf(flag, sizeof flag, "--%s", keys[i]);
		bench_args_add(a, flag);
		if (json_is_true(v))
			continue;
		if (json_is_string(v)) {
			bench_args_add(a, json_string_value(v));
			continue;
		}
		if (json_is_integer(v))
			snprintf(val, sizeof val, "%lld",
				 (long long)json_integer_value(v));
		else	/* the shortest text that reads back as the value */
			for (int prec = 6; prec <= 17; prec++) {
				snprintf(val, sizeof val, "%.*g", prec,
					 json_real_value(v));
				if (strtod(val, NULL) == json_real_value(v))
					break;
			}
		bench_args_add(a, val);
	}
}

char **bench_child_env(void)
{
	static const char *const drop[] = {"OMPI_", "PMIX_", "PMI_", "PRTE_"};
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	char **env = malloc((n + 1) * sizeof *env);
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int keep = 1;
		for (size_t d = 0; d < sizeof drop / sizeof *drop; d++)
			if (!strncmp(environ[i], drop[d], strlen(drop[d])))
				keep = 0;
		if (keep)
			env[k++] = environ[i];
	}
	env[k] = NULL;
	return env;
}

/* Start exe with argv, stdout and stderr appended to log (after a line
 * showing the command). Returns the pid, or -1 (printed). */
pid_t bench_spawn(const char *exe, char **argv, const char *log)
{
	FILE *fp = fopen(log, "a");
	if (!fp) {
		fprintf(stderr, "pno bench: %s: %s\n", log, strerror(errno));
		return -1;
	}
	fputs("$ pno", fp);
	for (int i = 1; argv[i]; i++)
		fprintf(fp, " %s", argv[i]);
	fputc('\n', fp);
	fclose(fp);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log,
					 O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	pid_t pid;
	char **env = bench_child_env();
	int rc = env ? posix_spawn(&pid, exe, &fa, NULL, argv, env) : ENOMEM;
	free(env);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "pno bench: cannot run %s: %s\n", exe,
			strerror(rc));
		return -1;
	}
	return pid;
}

int bench_exit_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 1;
}

/* The error of the log's last command: the first line of its output that
 * starts with "pno" (how every pno command reports a failure), else its
 * last non-empty line. */
void bench_log_error(const char *log, char *out, size_t size)
{
	char line[1024], last[1024] = "", first_pno[1024] = "";
	FILE *fp = fopen(log, "r");
	if (snprintf(out, size, "see %s", log) < 0 || !fp)
		return;
	while (fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '$') {	/* the next command's output */
			last[0] = first_pno[0] = '\0';
			continue;
		}
		if (!*line)
			continue;
		snprintf(last, sizeof last, "%s", line);
		if (!first_pno[0] && !strncmp(line, "pno", 3))
			snprintf(first_pno, sizeof first_pno, "%s", line);
	}
	fclose(fp);
	snprintf(out, size, "%s", *first_pno ? first_pno : last);
}

