/* Shared pieces of the pno tool's commands. */
#ifndef PNO_CLI_H
#define PNO_CLI_H

#include "pno/core.h"

#define NF(f) ((int)(sizeof(f) / sizeof((f)[0])))

extern int quiet;	/* --quiet: no progress or info output */

/* Print "pno CMD: <detail>" for a runtime failure; returns exit status 1. */
int runtime_error(const char *cmd, enum pno_status s);
/* Refuse an existing `path` without force, and a missing or unwritable
 * directory: prints why and returns 2, else 0. */
int check_out_path(const char *cmd, const char *path, int force);

/* Monotonic seconds. */
double cli_now(void);
/* "42s", "3m05s", "1h02m" ("?" for a negative or non-finite time). */
void cli_fmt_duration(char *buf, size_t n, double s);
/* BLAKE2b-256 of a file's bytes as 64 hex digits; 0 on success. */
int file_hash(const char *path, char hex[65]);
/* Escape `s` as the inside of a JSON string (truncating at `size`). */
void json_escape(char *out, size_t size, const char *s);

int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_rollout(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_gate(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_client(int argc, char **argv);

#endif
