/*
 * pno serve: an Open Inference Protocol v2 (KServe / Triton REST v2)
 * server for pno model repositories. The CLI fills serve_opts (config
 * from defaults, a JSON file and flags) and calls serve_run, which owns
 * the process until shutdown: signals, HTTP, workers, reloads.
 */
#ifndef PNO_SERVE_H
#define PNO_SERVE_H

#include "config.h"

struct serve_opts {
	struct serve_config cfg;	/* validated start config */
	const char *config_path;	/* NULL: none (reload re-reads it) */
	/* flags given on the command line, re-applied over the file on
	 * every reload so they keep precedence */
	int nflags;
	const char *flag_name[64], *flag_value[64];
	const char *log_file;		/* NULL: stderr */
};

/* Run the server; returns the process exit status (0 clean shutdown, 1
 * start failure or requests abandoned at the exit timeout). */
int serve_run(const struct serve_opts *o);

#endif
