/*
 * The server's configuration: one declarative table of keys (name, type,
 * bounds, default, whether a reload may change it, whether it is a
 * secret), filled from defaults, then a JSON config file, then
 * command-line flags (--key value, with '_' or '-' in the name).
 *
 * Every value is validated against the table: an unknown key, a value of
 * the wrong type or out of range is PNO_STATUS_INVALID with a message
 * naming the key, the source (file and line/column for JSON, or the flag)
 * and the allowed range. A config is a plain struct; reload builds a new
 * one and diffs it against the old.
 *
 * Integers are parsed strictly (optional '-', digits, nothing after, no
 * overflow); in JSON an integer key takes a JSON integer only (16.0 is the
 * wrong type). A JSON object giving a key twice is rejected. Strings longer
 * than their buffer are INVALID, never truncated. A missing file is
 * NOTFOUND, an unreadable one IO; every content error is INVALID.
 */
#ifndef PNO_SERVE_CONFIG_H
#define PNO_SERVE_CONFIG_H

#include "pno/core.h"

#include <stdio.h>

enum cfg_type { CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_STRING };

/* Strings are fixed buffers so a config copies by assignment. */
#define CFG_STR 512

struct serve_config {
	char repository[CFG_STR];	/* model repository directory */
	char host[CFG_STR];		/* listen address; default 127.0.0.1 */
	int port;			/* 0: ephemeral (printed at start) */
	int threads;			/* HTTP thread pool size */
	int compute_threads;		/* OpenMP threads for inference */
	int max_connections;
	int connection_timeout_s;
	int64_t max_body_bytes;
	int max_batch;			/* dynamic batching: items per batch */
	int max_queue_delay_us;
	int max_queue_size;
	int default_samples;		/* num_samples when not given */
	int max_samples;
	/* input hardening (docs/serve.md "Limits") */
	int max_header_bytes;		/* request line + headers */
	int max_json_depth;		/* nesting of [ and { */
	int max_json_elements;		/* array elements + object members */
	int max_total_samples;		/* items x num_samples */
	int exit_timeout_s;		/* graceful shutdown bound */
	int retry_after_s;		/* Retry-After on 503 */
	char log_level[16];		/* debug | info | warning | error */
	char port_file[CFG_STR];	/* write the bound port here ("" none) */
	/* security (docs/serve/security.md) */
	int auth;			/* off only by this key (warned) */
	char keys_file[CFG_STR];	/* required when auth is on */
	int session_max;
	int session_ttl_s, session_idle_s;
	double rate_limit;		/* requests/s per client; 0 off */
	int rate_burst, rate_max_clients;
	/* circuit breaker per model version (docs/serve/resilience.md) */
	int breaker_window, breaker_min_calls;
	double breaker_failure_rate, breaker_slow_rate;
	int breaker_slow_call_ms, breaker_wait_ms, breaker_probes;
	/* quality gates on load (docs/serve/gates.md) */
	char gates_file[CFG_STR];	/* "" none */
	/* audit log (docs/serve/audit.md): both or neither */
	char audit_dir[CFG_STR];	/* "" none */
	char audit_key_file[CFG_STR];
	int audit_fsync;		/* sync every record before the answer */
	/* request-path resilience (docs/serve/resilience.md) */
	int request_timeout_ms;		/* default deadline; 0 none */
	int max_request_timeout_ms;	/* largest a request may ask (400) */
	double degrade_queue_high_water;	/* < 1: fraction of the queue;
						 * >= 1: items; 0 off */
	int degrade_min_samples;	/* num_samples floor when degraded */
	char fallback[8];		/* none | lower */
	int drift_window, drift_points, drift_every;	/* window 0: off */
	double drift_psi_warn, drift_psi_crit;
	double rollback_error_rate;	/* 0: no error-rate rollback */
	char rollback_drift[12];	/* off | warn | critical */
	int rollback_window, rollback_windows;
	/* operations (docs/serve/operations.md) */
	int health_interval_ms;		/* monitor period */
	int memory_limit_mb;		/* shed load above (0 off) */
	char alerts_file[CFG_STR];	/* alert rules ("" none) */
	int alert_window_s;
	char alert_webhook_url[CFG_STR];
	char trace_otlp_url[CFG_STR], trace_file[CFG_STR];
	int trace_queue_spans, trace_batch_spans, trace_flush_ms;
	char trace_service_name[64];
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t offset;			/* in struct serve_config */
	double min, max;		/* ints/doubles; string min/max length */
	const char *def;		/* default as text */
	int reloadable;
	int secret;			/* redacted in logs and diffs */
	const char *help;
	size_t size;			/* of the field: int or int64_t; buffer */
	const char *choices;		/* strings: "a|b|c" allowed values, or NULL */
};

extern const struct cfg_key serve_config_keys[];
extern const int serve_config_nkeys;

/* The table entry for a name ('-' or '_', a leading "--" ignored), NULL if
 * unknown. */
const struct cfg_key *serve_config_key(const char *name);

/* Defaults for every key. */
void serve_config_defaults(struct serve_config *c);
/* Apply a JSON object file (keys as in the table). */
enum pno_status serve_config_load_file(struct serve_config *c,
				       const char *path);
/* Apply one key=value from text (a flag); name may use '-' for '_'. */
enum pno_status serve_config_set(struct serve_config *c, const char *name,
				 const char *value, const char *source);
/* Cross-key checks (e.g. default_samples <= max_samples, repository set). */
enum pno_status serve_config_check(const struct serve_config *c);

/* Reload: keys whose values differ. Writes one line per changed key
 * through log(ud, line) (log may be NULL): "max_batch: 8 -> 16", strings
 * quoted ("log_level: \"info\" -> \"debug\""), secrets as
 * "token: (redacted) -> (redacted)", and " (needs a restart)" appended for
 * a key that is not reloadable. Returns the count of changed keys, and
 * sets *non_reloadable (may be NULL) to the name of the first changed key,
 * in table order, that a reload may not change (NULL if none). */
int serve_config_diff(const struct serve_config *old,
		      const struct serve_config *new_,
		      void (*log)(void *ud, const char *line), void *ud,
		      const char **non_reloadable);

/* `pno serve --help`: every key, one aligned line each: --flag-name, type,
 * range, default, "(reloadable)" if so, description. */
void serve_config_help(FILE *out);

/* A key's current value as text (strings unquoted; secrets too: callers
 * that log must check key->secret). */
void serve_config_format(const struct cfg_key *k, const void *base,
			 char *out, size_t size);
/* The key's row of the table in docs/serve/config.md (no newline). */
void serve_config_doc_row(const struct cfg_key *k, char *out, size_t size);

/* The same operations over any table and struct (base points at the struct
 * the offsets refer to); the serve_config_* functions above are these over
 * serve_config_keys. source prefixes messages ("config FILE", "--flag"). */
void cfg_table_defaults(const struct cfg_key *keys, int nkeys, void *base);
enum pno_status cfg_table_set(const struct cfg_key *keys, int nkeys,
			      void *base, const char *name, const char *value,
			      const char *source);
/* Apply a JSON object given as text; *base unchanged on failure. */
enum pno_status cfg_table_load_json(const struct cfg_key *keys, int nkeys,
				    void *base, size_t base_size,
				    const char *text, const char *source);
int cfg_table_diff(const struct cfg_key *keys, int nkeys, const void *old,
		   const void *new_, void (*log)(void *ud, const char *line),
		   void *ud, const char **non_reloadable);

#endif
