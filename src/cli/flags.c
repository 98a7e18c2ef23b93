#include "flags.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int set_value(const char *cmd, struct flag *f, const char *v)
{
	char *end = NULL;
	errno = 0;
	switch (f->type) {
	case FLAG_INT: {
		long x = strtol(v, &end, 10);
		if (errno || !*v || *end || x < f->min || x > f->max) {
			fprintf(stderr,
				"pno %s: --%s %s: expected an integer in "
				"[%.0f, %.0f]\n", cmd, f->name, v, f->min, f->max);
			return 2;
		}
		*(int *)f->ptr = (int)x;
		break;
	}
	case FLAG_U64: {
		if (*v == '-') {
			fprintf(stderr, "pno %s: --%s %s: expected a "
				"non-negative integer\n", cmd, f->name, v);
			return 2;
		}
		unsigned long long x = strtoull(v, &end, 10);
		if (errno || !*v || *end) {
			fprintf(stderr, "pno %s: --%s %s: expected a "
				"non-negative integer\n", cmd, f->name, v);
			return 2;
		}
		*(uint64_t *)f->ptr = x;
		break;
	}
	case FLAG_DOUBLE: {
		double x = strtod(v, &end);
		if (errno || !*v || *end || !isfinite(x) || x < f->min ||
		    x > f->max) {
			fprintf(stderr,
				"pno %s: --%s %s: expected a number in "
				"[%g, %g]\n", cmd, f->name, v, f->min, f->max);
			return 2;
		}
		*(double *)f->ptr = x;
		break;
	}
	case FLAG_POSITIVE: {
		double x = strtod(v, &end);
		if (errno || !*v || *end || !isfinite(x) || !(x > 0) ||
		    x > f->max) {
			fprintf(stderr,
				"pno %s: --%s %s: expected a number > 0 and "
				"<= %g\n", cmd, f->name, v, f->max);
			return 2;
		}
		*(double *)f->ptr = x;
		break;
	}
	case FLAG_STRING:
		if (!*v) {
			fprintf(stderr, "pno %s: --%s: empty value\n", cmd,
				f->name);
			return 2;
		}
		*(const char **)f->ptr = v;
		break;
	case FLAG_BOOL:
		*(int *)f->ptr = 1;
		break;
	}
	f->seen = 1;
	return 0;
}

int flags_parse(const char *cmd, struct flag *f, int nf, int argc,
		char **argv, int first, const char **pos, int npos, int *npos_out)
{
	int np = 0;
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			if (np >= npos) {
				fprintf(stderr, "pno %s: unexpected argument "
					"'%s' (see pno %s --help)\n", cmd, a, cmd);
				return 2;
			}
			pos[np++] = a;
			continue;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		struct flag *hit = NULL;
		for (int k = 0; k < nf; k++)
			if (strlen(f[k].name) == len &&
			    strncmp(f[k].name, name, len) == 0)
				hit = &f[k];
		if (!hit) {
			fprintf(stderr, "pno %s: unknown option '--%.*s' (see "
				"pno %s --help)\n", cmd, (int)len, name, cmd);
			return 2;
		}
		const char *val = NULL;
		if (hit->type == FLAG_BOOL) {
			if (eq) {
				fprintf(stderr, "pno %s: --%s takes no value\n",
					cmd, hit->name);
				return 2;
			}
		} else if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "pno %s: --%s needs a value\n", cmd,
				hit->name);
			return 2;
		}
		if (set_value(cmd, hit, val))
			return 2;
	}
	for (int k = 0; k < nf; k++)
		if (f[k].required && !f[k].seen) {
			fprintf(stderr, "pno %s: --%s is required (see pno %s "
				"--help)\n", cmd, f[k].name, cmd);
			return 2;
		}
	if (npos_out)
		*npos_out = np;
	return 0;
}

void flags_help(FILE *out, const struct flag *f, int nf)
{
	for (int k = 0; k < nf; k++) {
		char left[64], def[64] = "";
		const char *arg = f[k].type == FLAG_BOOL     ? ""
				  : f[k].type == FLAG_STRING ? " S"
				  : f[k].type == FLAG_DOUBLE ||
					    f[k].type == FLAG_POSITIVE
				      ? " X"
				      : " N";
		snprintf(left, sizeof left, "--%s%s", f[k].name, arg);
		if (f[k].required)
			snprintf(def, sizeof def, " (required)");
		else if (f[k].type == FLAG_INT)
			snprintf(def, sizeof def, " [%d]", *(int *)f[k].ptr);
		else if (f[k].type == FLAG_U64)
			snprintf(def, sizeof def, " [%llu]",
				 (unsigned long long)*(uint64_t *)f[k].ptr);
		else if (f[k].type == FLAG_DOUBLE || f[k].type == FLAG_POSITIVE)
			snprintf(def, sizeof def, " [%g]", *(double *)f[k].ptr);
		else if (f[k].type == FLAG_STRING && *(const char **)f[k].ptr)
			snprintf(def, sizeof def, " [%s]",
				 *(const char **)f[k].ptr);
		fprintf(out, "  %-22s %s%s\n", left, f[k].help, def);
	}
}
