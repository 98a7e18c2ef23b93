/* pno bench: reading and validating the config, all of it before any
 * work. Every error names the config file and the key. */
#include "bench.h"
#include "cli.h"

#include "pno/core.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


static const char *const known_pdes[] = {
	"darcy", "burgers", "navier-stokes", "ns", "kuramoto-sivashinsky",
	"ks", "heat", "wave"};
static const char *const known_methods[] = {
	"fno", "pno-d", "pno-r", "mc-dropout", "vfno", "deeponet", "ensemble"};
/* flags pno bench sets itself: the config may not */
static const char *const gen_reserved[] = {"out", "force", "quiet", "help",
					   "threads"};
static const char *const rollout_reserved[] = {
	"model", "data", "seed", "json", "threads", "force", "help"};
static const char *const train_reserved[] = {
	"data", "out", "model", "force", "quiet", "help", "seed", "ntrain",
	"nval", "ntest", "t-in", "t-out", "threads", "checkpoint", "resume"};

#define NA(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int cfg_error(const struct bench *b, const char *key, const char *fmt,
		     ...)
{
	va_list ap;
	fprintf(stderr, "pno bench: %s: %s: ", b->config_path, key);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

static int in_list(const char *s, const char *const *list, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return 1;
	return 0;
}

/* Labels become directory names and table cells. */
static int label_ok(const char *s)
{
	if (!*s || strlen(s) >= BENCH_LABEL || *s == '.')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-+", *s))
			return 0;
	return 1;
}

/* Every key of object o must be in `allowed`. */
static int check_keys(const struct bench *b, const char *where, json_t *o,
		      const char *const *allowed, int n)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		if (in_list(k, allowed, n))
			continue;
		char key[256], known[512] = "";
		for (int i = 0; i < n; i++)
			snprintf(known + strlen(known),
				 sizeof known - strlen(known), "%s%s",
				 i ? ", " : "", allowed[i]);
		snprintf(key, sizeof key, "%s%s%s", where, *where ? "." : "",
			 k);
		return cfg_error(b, key, "unknown key (known here: %s)",
				 known);
	}
	return 0;
}

static int get_int(const struct bench *b, const char *where, json_t *o,
		   const char *name, int lo, int hi, int *out)
{
	json_t *v = json_object_get(o, name);
	char key[256];
	snprintf(key, sizeof key, "%s.%s", where, name);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return cfg_error(b, key, "expected an integer in [%d, %d]", lo,
				 hi);
	*out = (int)json_integer_value(v);
	return 0;
}

/* Run `exe <args> --help` and keep its stdout: the flags a command
 * takes, so a mistyped flag is caught before hours of work. */
static int help_text(const char *exe, const char *cmd, const char *pde,
		     char *buf, size_t size)
{
	int fd[2];
	pid_t pid;
	posix_spawn_file_actions_t fa;
	char *argv[5] = {(char *)exe, (char *)cmd, (char *)pde, "--help", NULL};
	if (!pde)
		argv[2] = "--help", argv[3] = NULL;
	if (pipe(fd) != 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_addclose(&fa, fd[0]);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	char **env = bench_child_env();
	int rc = env ? posix_spawn(&pid, exe, &fa, NULL, argv, env) : ENOMEM;
	free(env);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	size_t n = 0;
	if (rc == 0) {
		ssize_t r;
		while ((r = read(fd[0], buf + n, size - 1 - n)) > 0 ||
		       (r < 0 && errno == EINTR))
			if (r > 0)
				n += (size_t)r;
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	close(fd[0]);
	buf[n] = '\0';
	return rc == 0 && n > 0 ? 0 : -1;
}

/* A flag object: keys are flag names the command lists in its --help and
 * pno bench does not set itself; values numbers, strings or booleans. */
static int check_flags(const struct bench *b, const char *where, json_t *o,
		       const char *const *reserved, int nres,
		       const char *help, const char *cmd)
{
	const char *k;
	json_t *v;
	if (!json_is_object(o))
		return cfg_error(b, where, "expected an object of flag -> "
				 "value (flag names without '--')");
	json_object_foreach(o, k, v)
	{
		char key[256], pat[80];
		snprintf(key, sizeof key, "%s.%s", where, k);
		if (in_list(k, reserved, nres))
			return cfg_error(b, key, "set by pno bench itself; "
					 "remove it (see docs/bench.md)");
		if (!json_is_number(v) && !json_is_string(v) &&
		    !json_is_boolean(v))
			return cfg_error(b, key, "expected a number, string "
					 "or boolean");
		snprintf(pat, sizeof pat, "\n  --%s ", k);
		if (strlen(k) > 60 || !strstr(help, pat))
			return cfg_error(b, key, "unknown flag --%s (see "
					 "pno %s --help)", k, cmd);
	}
	return 0;
}

static int load_pde(struct bench *b, int i, json_t *o)
{
	static const char *const keys[] = {"name", "label", "generate",
					   "split", "t_in", "t_out",
					   "plot_index", "rollout"};
	static const char *const split_keys[] = {"ntrain", "nval", "ntest"};
	struct bench_pde *p = &b->pdes[i];
	char where[64], key[128], help[32768];
	int rc;
	snprintf(where, sizeof where, "pdes[%d]", i);
	if (!json_is_object(o))
		return cfg_error(b, where, "expected an object");
	if ((rc = check_keys(b, where, o, keys, NA(keys))))
		return rc;
	const char *name = json_string_value(json_object_get(o, "name"));
	snprintf(key, sizeof key, "%s.name", where);
	if (!name)
		return cfg_error(b, key, "required: the PDE to generate "
				 "(darcy, burgers, navier-stokes, "
				 "kuramoto-sivashinsky, heat, wave)");
	if (!in_list(name, known_pdes, NA(known_pdes)))
		return cfg_error(b, key, "unknown PDE '%s' (known: darcy, "
				 "burgers, navier-stokes (ns), "
				 "kuramoto-sivashinsky (ks), heat, wave)",
				 name);
	snprintf(p->name, sizeof p->name, "%s", name);
	const char *label = json_string_value(json_object_get(o, "label"));
	snprintf(key, sizeof key, "%s.label", where);
	if (json_object_get(o, "label") && (!label || !label_ok(label)))
		return cfg_error(b, key, "expected a name of letters, digits "
				 "and ._-+ (at most %d characters)",
				 BENCH_LABEL - 1);
	snprintf(p->label, sizeof p->label, "%s", label ? label : name);
	for (int j = 0; j < i; j++)
		if (!strcmp(b->pdes[j].label, p->label))
			return cfg_error(b, key, "'%s' used twice (give each "
					 "PDE entry its own label)",
					 p->label);
	json_t *gen = json_object_get(o, "generate");
	snprintf(key, sizeof key, "%s.generate", where);
	if (!gen)
		gen = json_object();	/* the generator's defaults */
	else
		json_incref(gen);
	p->generate = gen;
	if (help_text(b->exe, "generate", name, help, sizeof help))
		return cfg_error(b, key, "cannot run %s generate %s --help",
				 b->exe, name);
	char cmd[96];
	snprintf(cmd, sizeof cmd, "generate %s", name);
	if ((rc = check_flags(b, key, gen, gen_reserved, NA(gen_reserved),
			      help, cmd)))
		return rc;
	json_t *ro = json_object_get(o, "rollout");
	if (ro) {
		snprintf(key, sizeof key, "%s.rollout", where);
		if (help_text(b->exe, "rollout", NULL, help, sizeof help))
			return cfg_error(b, key, "cannot run %s rollout --help",
					 b->exe);
		if ((rc = check_flags(b, key, ro, rollout_reserved,
				      NA(rollout_reserved), help, "rollout")))
			return rc;
		if (!json_is_integer(json_object_get(ro, "steps")))
			return cfg_error(b, key, "\"steps\" (an integer) is "
					 "required");
		p->rollout = json_incref(ro);
	}
	p->ntrain = p->nval = p->ntest = -1;
	json_t *split = json_object_get(o, "split");
	snprintf(key, sizeof key, "%s.split", where);
	if (split) {
		if (!json_is_object(split))
			return cfg_error(b, key, "expected an object {ntrain, "
					 "nval, ntest}");
		if ((rc = check_keys(b, key, split, split_keys,
				     NA(split_keys))) ||
		    (rc = get_int(b, key, split, "ntrain", 1, 1 << 30,
				  &p->ntrain)) ||
		    (rc = get_int(b, key, split, "nval", 0, 1 << 30,
				  &p->nval)) ||
		    (rc = get_int(b, key, split, "ntest", 1, 1 << 30,
				  &p->ntest)))
			return rc;
	}
	p->t_in = 0;
	p->t_out = -1;
	p->has_t = json_object_get(o, "t_in") || json_object_get(o, "t_out");
	p->plot_index = 0;
	if ((rc = get_int(b, where, o, "t_in", 0, 1 << 20, &p->t_in)) ||
	    (rc = get_int(b, where, o, "t_out", -1, 1 << 20, &p->t_out)) ||
	    (rc = get_int(b, where, o, "plot_index", 0, 1 << 30,
			  &p->plot_index)))
		return rc;
	return 0;
}

static int load_method(struct bench *b, int i, json_t *o, const char *help)
{
	static const char *const keys[] = {"label", "model", "train"};
	struct bench_method *m = &b->methods[i];
	char where[64], key[128];
	int rc;
	snprintf(where, sizeof where, "methods[%d]", i);
	if (!json_is_object(o))
		return cfg_error(b, where, "expected an object");
	if ((rc = check_keys(b, where, o, keys, NA(keys))))
		return rc;
	const char *model = json_string_value(json_object_get(o, "model"));
	snprintf(key, sizeof key, "%s.model", where);
	if (!model)
		return cfg_error(b, key, "required: the pno train --model");
	if (!in_list(model, known_methods, NA(known_methods)))
		return cfg_error(b, key, "unknown method '%s' (known: fno, "
				 "pno-d, pno-r, mc-dropout, vfno, deeponet, "
				 "ensemble)", model);
	snprintf(m->model, sizeof m->model, "%s", model);
	const char *label = json_string_value(json_object_get(o, "label"));
	snprintf(key, sizeof key, "%s.label", where);
	if (json_object_get(o, "label") && (!label || !label_ok(label)))
		return cfg_error(b, key, "expected a name of letters, digits "
				 "and ._-+ (at most %d characters)",
				 BENCH_LABEL - 1);
	snprintf(m->label, sizeof m->label, "%s", label ? label : model);
	for (int j = 0; j < i; j++)
		if (!strcmp(b->methods[j].label, m->label))
			return cfg_error(b, key, "'%s' used twice (give each "
					 "method entry its own label)",
					 m->label);
	json_t *train = json_object_get(o, "train");
	snprintf(key, sizeof key, "%s.train", where);
	if (!train)
		train = json_object();
	else
		json_incref(train);
	m->train = train;
	return check_flags(b, key, train, train_reserved, NA(train_reserved),
			   help, "train");
}

int bench_config_load(struct bench *b, const char *path)
{
	static const char *const keys[] = {"name", "description", "seeds",
					   "eval", "pdes", "methods"};
	static const char *const eval_keys[] = {"samples", "split",
						"max_samples"};
	json_error_t err;
	int rc;
	b->config_path = path;
	b->cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!b->cfg) {
		if (access(path, R_OK) != 0) {
			fprintf(stderr, "pno bench: --config %s: %s\n", path,
				strerror(errno));
			return 2;
		}
		fprintf(stderr, "pno bench: %s: malformed JSON at line %d, "
			"column %d: %s\n", path, err.line, err.column,
			err.text);
		return 2;
	}
	if (!json_is_object(b->cfg))
		return cfg_error(b, "(top level)", "expected an object");
	if ((rc = check_keys(b, "", b->cfg, keys, NA(keys))))
		return rc;
	b->name = json_string_value(json_object_get(b->cfg, "name"));
	if (!b->name)
		b->name = "bench";

	json_t *seeds = json_object_get(b->cfg, "seeds");
	if (!seeds)
		return cfg_error(b, "seeds", "required: an array of training "
				 "seeds, e.g. [1, 2, 3]");
	if (!json_is_array(seeds) || json_array_size(seeds) < 1 ||
	    json_array_size(seeds) > 1000)
		return cfg_error(b, "seeds", "expected a non-empty array of "
				 "integers >= 0");
	b->n_seeds = (int)json_array_size(seeds);
	b->seeds = pno_calloc((size_t)b->n_seeds, sizeof *b->seeds);
	if (!b->seeds)
		return cfg_error(b, "seeds", "out of memory");
	for (int i = 0; i < b->n_seeds; i++) {
		json_t *v = json_array_get(seeds, (size_t)i);
		char key[64];
		snprintf(key, sizeof key, "seeds[%d]", i);
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return cfg_error(b, key, "expected an integer >= 0");
		b->seeds[i] = (uint64_t)json_integer_value(v);
		for (int j = 0; j < i; j++)
			if (b->seeds[j] == b->seeds[i])
				return cfg_error(b, key, "seed %llu repeated",
						 (unsigned long long)b->seeds[i]);
	}

	b->eval_samples = 100;
	b->eval_max = 0;
	snprintf(b->eval_split, sizeof b->eval_split, "test");
	json_t *ev = json_object_get(b->cfg, "eval");
	if (ev) {
		if (!json_is_object(ev))
			return cfg_error(b, "eval", "expected an object");
		if ((rc = check_keys(b, "eval", ev, eval_keys,
				     NA(eval_keys))) ||
		    (rc = get_int(b, "eval", ev, "samples", 2, 10000,
				  &b->eval_samples)) ||
		    (rc = get_int(b, "eval", ev, "max_samples", 0, 1 << 30,
				  &b->eval_max)))
			return rc;
		json_t *sp = json_object_get(ev, "split");
		if (sp) {
			const char *s = json_string_value(sp);
			if (!s || (strcmp(s, "test") && strcmp(s, "val")))
				return cfg_error(b, "eval.split", "expected "
						 "\"test\" or \"val\"");
			snprintf(b->eval_split, sizeof b->eval_split, "%s", s);
		}
	}

	json_t *pdes = json_object_get(b->cfg, "pdes");
	json_t *methods = json_object_get(b->cfg, "methods");
	if (!json_is_array(pdes) || json_array_size(pdes) < 1 ||
	    json_array_size(pdes) > 256)
		return cfg_error(b, "pdes", "expected a non-empty array of "
				 "PDE entries");
	if (!json_is_array(methods) || json_array_size(methods) < 1 ||
	    json_array_size(methods) > 256)
		return cfg_error(b, "methods", "expected a non-empty array of "
				 "method entries");
	b->n_pdes = (int)json_array_size(pdes);
	b->n_methods = (int)json_array_size(methods);
	b->pdes = pno_calloc((size_t)b->n_pdes, sizeof *b->pdes);
	b->methods = pno_calloc((size_t)b->n_methods, sizeof *b->methods);
	if (!b->pdes || !b->methods)
		return cfg_error(b, "pdes", "out of memory");
	for (int i = 0; i < b->n_pdes; i++)
		if ((rc = load_pde(b, i, json_array_get(pdes, (size_t)i))))
			return rc;
	static char help[32768];
	if (help_text(b->exe, "train", NULL, help, sizeof help))
		return cfg_error(b, "methods", "cannot run %s train --help",
				 b->exe);
	for (int i = 0; i < b->n_methods; i++)
		if ((rc = load_method(b, i, json_array_get(methods, (size_t)i),
				      help)))
			return rc;
	return 0;
}

void bench_free(struct bench *b)
{
	for (int i = 0; b->pdes && i < b->n_pdes; i++) {
		json_decref(b->pdes[i].generate);
		json_decref(b->pdes[i].rollout);
	}
	for (int i = 0; b->methods && i < b->n_methods; i++)
		json_decref(b->methods[i].train);
	for (int i = 0; b->cells && i < b->n_cells; i++) {
		json_decref(b->cells[i].eval);
		json_decref(b->cells[i].rollout);
	}
	pno_free(b->pdes);
	pno_free(b->methods);
	pno_free(b->seeds);
	pno_free(b->cells);
	json_decref(b->cfg);
	memset(b, 0, sizeof *b);
}
