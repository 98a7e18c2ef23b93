/* pno audit keygen | verify | show: the server's audit log from the
 * command line (docs/serve/audit.md). */
#include "cli.h"
#include "flags.h"

#include "audit.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

static const char *audit_usage =
	"usage: pno audit keygen --out KEYFILE\n"
	"       pno audit verify --log DIR --key KEYFILE [--strict]\n"
	"       pno audit show   --log DIR --key KEYFILE\n"
	"\n"
	"keygen writes a new random master key (mode 0600; never overwrites).\n"
	"verify checks every record of the log: decryption, sequence, the MAC\n"
	"chain and the segment order. Exit 0 when everything verifies, also\n"
	"with a torn tail (an incomplete last record: a crash mid-write), which\n"
	"is reported; --strict also fails on a torn tail or a log without its\n"
	"clean-close record. Exit 1 when anything fails, naming the first bad\n"
	"record. show prints the verified records as JSON lines (stdout).\n";

static void summary(FILE *out, const char *dir, const struct audit_result *r)
{
	char hex[65];
	sodium_bin2hex(hex, sizeof hex, r->head_mac, sizeof r->head_mac);
	fprintf(out, "%s: verified %" PRIu64 " records in %" PRIu32 " segment%s",
		dir, r->records, r->segments, r->segments == 1 ? "" : "s");
	if (r->records)
		fprintf(out, "; head: record %" PRIu64 " mac %s", r->records - 1,
			hex);
	fprintf(out, "\n");
	if (r->torn)
		fprintf(out, "torn tail detected: incomplete record at byte %"
			PRIu64 " of seg-%06" PRIu32 ".log (%" PRIu64 " bytes; a "
			"crash mid-write; the writer cuts it on reopen)\n",
			r->torn_offset, r->torn_segment, r->torn_bytes);
	else if (!r->bad)
		fprintf(out, "%s\n", r->closed
			? "closed cleanly (ends with its audit_close record)"
			: "not closed: the writer is running or stopped without "
			  "closing; records cut from the end since the last "
			  "record cannot be detected without an outside copy "
			  "of the head");
}

static int run(const char *sub, int argc, char **argv)
{
	const char *dir = NULL, *key = NULL;
	int strict = 0;
	struct flag f[] = {
		{"log", FLAG_STRING, &dir, 0, 0, "audit log directory", 1, 0},
		{"key", FLAG_STRING, &key, 0, 0, "master key file", 1, 0},
		{"strict", FLAG_BOOL, &strict, 0, 0, "verify: fail on a torn tail or an unclosed log", 0, 0},
	};
	char cmd[32];
	snprintf(cmd, sizeof cmd, "audit %s", sub);
	if (flags_parse(cmd, f, NF(f), argc, argv, 3, NULL, 0, NULL))
		return 2;
	struct audit_result r;
	enum pno_status s;
	int show = !strcmp(sub, "show");
	if (show)
		s = audit_show(dir, key, stdout, &r);
	else
		s = audit_verify(dir, key, NULL, NULL, &r);
	if (s != PNO_STATUS_OK && !r.bad)
		return runtime_error(cmd, s);
	if (!show || r.bad || r.torn)
		summary(show ? stderr : stdout, dir, &r);
	if (r.bad) {
		fprintf(stderr, "pno %s: FAILED at record %" PRIu64 ": %s\n", cmd,
			r.bad_seq, r.message);
		return 1;
	}
	if (strict && (r.torn || !r.closed)) {
		fprintf(stderr, "pno %s: --strict: %s\n", cmd,
			r.torn ? "torn tail" : "log not closed cleanly");
		return 1;
	}
	return 0;
}

int cmd_audit(int argc, char **argv)
{
	const char *sub = argc > 2 ? argv[2] : "";
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
		printf("%s", audit_usage);
		return 0;
	}
	for (int i = 3; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s", audit_usage);
			return 0;
		}
	if (!strcmp(sub, "keygen")) {
		const char *out = NULL;
		struct flag f[] = {
			{"out", FLAG_STRING, &out, 0, 0, "key file to create", 1, 0},
		};
		if (flags_parse("audit keygen", f, NF(f), argc, argv, 3, NULL, 0, NULL))
			return 2;
		enum pno_status s = audit_keygen(out);
		if (s == PNO_STATUS_EXISTS) {
			fprintf(stderr, "pno audit keygen: %s\n", pno_last_error());
			return 2;
		}
		if (s != PNO_STATUS_OK)
			return runtime_error("audit keygen", s);
		if (!quiet)
			printf("wrote %s (mode 0600): keep it secret; it verifies "
			       "and writes the log\n", out);
		return 0;
	}
	if (!strcmp(sub, "verify") || !strcmp(sub, "show"))
		return run(sub, argc, argv);
	fprintf(stderr, "pno audit: unknown subcommand '%s'\n\n%s", sub,
		audit_usage);
	return 2;
}
