/* libFuzzer harness for the quality gates (serve/gate.c): the gates
 * config a server reads (gates_file) and the evaluation summaries it
 * judges, which come from model files' metadata.
 *
 * Input layout: up to three parts separated by NUL bytes: the gates
 * config text, the model's evaluation summary (JSON), the baseline's
 * (JSON); a missing part is NULL.
 *
 * Properties checked on every input: parsing answers OK or INVALID and a
 * refused config is zeroed; the check fills 0..GATE_MAX_VERDICTS
 * verdicts with terminated names and details, and returns 1 exactly when
 * every verdict passes. Build and run: docs/fuzzing.md. */
#include "gate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *part[3] = {NULL, NULL, NULL};
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	part[0] = buf;
	for (int k = 1; k < 3; k++) {
		char *end = part[k - 1] + strlen(part[k - 1]);
		if (end >= buf + size)
			break;
		part[k] = end + 1;
	}
	struct gate_config g;
	static const struct gate_config zero;
	enum pno_status s = gate_config_parse(&g, part[0], "fuzz");
	if (s != PNO_STATUS_OK && s != PNO_STATUS_INVALID)
		abort();
	if (s != PNO_STATUS_OK) {
		if (memcmp(&g, &zero, sizeof g))
			abort();
		free(buf);
		return 0;
	}
	struct gate_verdict v[GATE_MAX_VERDICTS];
	int n = -1, all = 1;
	memset(v, 0x55, sizeof v);	/* no terminator unless written */
	int pass = gate_check(&g, part[1], part[2], v, &n);
	if (n < 0 || n > GATE_MAX_VERDICTS || (pass != 0 && pass != 1))
		abort();
	for (int i = 0; i < n; i++) {
		if (!memchr(v[i].name, 0, sizeof v[i].name) ||
		    !memchr(v[i].detail, 0, sizeof v[i].detail))
			abort();
		all &= v[i].pass != 0;
	}
	if (pass != all)
		abort();
	free(buf);
	return 0;
}
