/* pno gate: judge a model's recorded evaluation against quality gates. */
#include "cli.h"
#include "flags.h"

#include "gate.h"
#include "pno/io.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *gate_usage =
	"usage: pno gate --model M.safetensors --config GATES.json\n"
	"                [--baseline LIVE.safetensors]\n"
	"\n"
	"Judge the evaluation recorded in a model (pno eval --record) against\n"
	"quality gates: relative L2 at most, 90% coverage within a band,\n"
	"calibration error at most, CRPS no worse than the baseline (the live\n"
	"version) by more than a tolerance. Prints each verdict with its\n"
	"figures. Exit 0 when every gate passes, 1 when one fails (a gate that\n"
	"cannot be judged fails), 2 for a usage error. The server applies the\n"
	"same check before a model version goes live. Gates: docs/serve/gates.md.\n";

/* The string metadata entry key of a model file: 0 found, 1 absent, -1
 * error (printed). */
static int file_meta(const char *path, const char *key, char **out)
{
	struct pno_safetensors st;
	enum pno_status s = pno_safetensors_read(&st, path);
	*out = NULL;
	if (s != PNO_STATUS_OK) {
		runtime_error("gate", s);
		return -1;
	}
	json_t *md = json_loads(st.metadata_json, 0, NULL);
	pno_safetensors_free(&st);
	const char *v = json_string_value(json_object_get(md, key));
	if (v && !(*out = strdup(v))) {
		json_decref(md);
		fprintf(stderr, "pno gate: out of memory\n");
		return -1;
	}
	json_decref(md);
	return v ? 0 : 1;
}

int cmd_gate(int argc, char **argv)
{
	const char *model = NULL, *config = NULL, *baseline = NULL;
	struct flag f[] = {
		{"model", FLAG_STRING, &model, 0, 0, "model file to judge", 1, 0},
		{"config", FLAG_STRING, &config, 0, 0, "gates (JSON)", 1, 0},
		{"baseline", FLAG_STRING, &baseline, 0, 0, "the live version, for the CRPS regression gate", 0, 0},
		{"quiet", FLAG_BOOL, &quiet, 0, 0, "print only the verdict line", 0, 0},
	};
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\noptions:\n", gate_usage);
			flags_help(stdout, f, NF(f));
			return 0;
		}
	if (flags_parse("gate", f, NF(f), argc, argv, 2, NULL, 0, NULL))
		return 2;
	struct stat sb;
	const char *paths[3] = {model, config, baseline};
	for (int i = 0; i < 3; i++)
		if (paths[i] && stat(paths[i], &sb) != 0) {
			fprintf(stderr, "pno gate: %s: no such file\n",
				paths[i]);
			return 2;
		}
	struct gate_config g;
	enum pno_status s = gate_config_load(&g, config);
	if (s != PNO_STATUS_OK) {
		fprintf(stderr, "pno gate: %s\n", pno_last_error());
		return 2;
	}
	char *ev = NULL, *bev = NULL;
	if (file_meta(model, "evaluation", &ev) < 0 ||
	    (baseline && file_meta(baseline, "evaluation", &bev) < 0)) {
		free(ev);
		return 1;
	}
	struct gate_verdict v[GATE_MAX_VERDICTS];
	int n = 0;
	int pass = gate_check(&g, ev, baseline ? (bev ? bev : "null") : NULL,
			      v, &n);
	free(ev);
	free(bev);
	if (!quiet)
		for (int i = 0; i < n; i++)
			printf("%s  %-16s %s\n", v[i].pass ? "PASS" : "FAIL",
			       v[i].name, v[i].detail);
	if (n == 0)
		printf("%s: no gates configured in %s: nothing to judge\n",
		       model, config);
	else
		printf("%s: %s\n", model, pass ? "passes every gate"
					       : "fails a gate");
	return pass ? 0 : 1;
}
