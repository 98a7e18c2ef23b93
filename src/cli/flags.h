/* Declarative command-line flags for the pno tool. */
#ifndef PNO_CLI_FLAGS_H
#define PNO_CLI_FLAGS_H

#include <stdint.h>
#include <stdio.h>

/* FLAG_POSITIVE: a double > 0 and <= max (min unused). */
enum flag_type { FLAG_INT, FLAG_U64, FLAG_DOUBLE, FLAG_POSITIVE, FLAG_STRING,
		 FLAG_BOOL };

struct flag {
	const char *name;	/* without the leading "--" */
	enum flag_type type;
	void *ptr;
	double min, max;	/* bounds for numbers (inclusive) */
	const char *help;
	int required;
	int seen;
};

/* Parses argv[first..argc). Positional arguments are stored in pos (at
 * most npos). Returns 0 on success; on error prints "pno CMD: ..." to
 * stderr and returns 2 (usage error). */
int flags_parse(const char *cmd, struct flag *f, int nf, int argc,
		char **argv, int first, const char **pos, int npos, int *npos_out);
void flags_help(FILE *out, const struct flag *f, int nf);

#endif
