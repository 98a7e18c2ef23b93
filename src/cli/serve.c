/* pno serve: parse the config (defaults, then --config FILE, then every
 * --key value flag) and run the server. */
#include "cli.h"

#include "serve.h"

#include <stdio.h>
#include <string.h>

static const char *serve_usage =
	"usage: pno serve --repository DIR [--port N] [--config FILE] "
	"[--KEY VALUE ...]\n"
	"\n"
	"Serve every model version under DIR (<DIR>/<model>/<version>/\n"
	"model.safetensors) over HTTP with the Open Inference Protocol v2\n"
	"(KServe / Triton REST): health, metadata, inference with dynamic\n"
	"batching, Prometheus metrics at /metrics. SIGHUP reloads the config\n"
	"and the repository; SIGTERM drains and exits. Values come from the\n"
	"defaults, then the JSON config file, then the flags. See docs/serve.md.\n";

static void help(void)
{
	printf("%s\noptions:\n"
	       "  --config FILE       JSON object of the keys below "
	       "(re-read on SIGHUP)\n"
	       "  --log-file FILE     JSON log lines here instead of stderr "
	       "(reopened on SIGHUP)\n\n", serve_usage);
	serve_config_help(stdout);
}

int cmd_serve(int argc, char **argv)
{
	static struct serve_opts o;	/* holds argv pointers */
	memset(&o, 0, sizeof o);
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			help();
			return 0;
		}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *name, *value = NULL;
		char nb[128];
		if (strncmp(a, "--", 2)) {
			fprintf(stderr, "pno serve: unexpected argument '%s' "
				"(see pno serve --help)\n", a);
			return 2;
		}
		name = a + 2;
		const char *eq = strchr(name, '=');
		if (eq) {
			snprintf(nb, sizeof nb, "%.*s", (int)(eq - name), name);
			name = nb;
			value = eq + 1;
		}
		const struct cfg_key *k = serve_config_key(name);
		int is_bool = k && k->type == CFG_BOOL;
		if (!value) {
			if (i + 1 < argc && (!is_bool ||
					     strncmp(argv[i + 1], "--", 2)))
				value = argv[++i];
			else if (is_bool)
				value = "true";
			else {
				fprintf(stderr, "pno serve: --%s needs a value\n",
					name);
				return 2;
			}
		}
		if (!strcmp(name, "config")) {
			o.config_path = value;
		} else if (!strcmp(name, "log-file") ||
			   !strcmp(name, "log_file")) {
			o.log_file = value;
		} else if (!k) {
			fprintf(stderr, "pno serve: unknown option --%s (see pno "
				"serve --help)\n", name);
			return 2;
		} else if (o.nflags == (int)(sizeof o.flag_name /
					     sizeof o.flag_name[0])) {
			fprintf(stderr, "pno serve: too many flags\n");
			return 2;
		} else {
			o.flag_name[o.nflags] = k->name;
			o.flag_value[o.nflags++] = value;
		}
	}
	serve_config_defaults(&o.cfg);
	if (o.config_path &&
	    serve_config_load_file(&o.cfg, o.config_path) != PNO_STATUS_OK) {
		fprintf(stderr, "pno serve: %s\n", pno_last_error());
		return 2;
	}
	for (int i = 0; i < o.nflags; i++) {
		char src[160];
		snprintf(src, sizeof src, "--%s", o.flag_name[i]);
		if (serve_config_set(&o.cfg, o.flag_name[i], o.flag_value[i],
				     src) != PNO_STATUS_OK) {
			fprintf(stderr, "pno serve: %s\n", pno_last_error());
			return 2;
		}
	}
	if (serve_config_check(&o.cfg) != PNO_STATUS_OK) {
		fprintf(stderr, "pno serve: %s\n", pno_last_error());
		return 2;
	}
	return serve_run(&o);
}
