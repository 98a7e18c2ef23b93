/* pno keys add|list|revoke: manage the API keys file of pno serve. A new
 * key is printed once and only its hash is stored. The file is rewritten
 * whole (temporary file, fsync, rename; mode 0600) under an exclusive
 * lock on FILE.lock, and the new contents are validated by the server's
 * own parser before they replace the old. */
#include "cli.h"
#include "flags.h"

#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *keys_usage =
	"usage: pno keys add --file KEYS.json --name NAME [--roles infer,admin] "
	"[--expires YYYY-MM-DDTHH:MM:SSZ]\n"
	"       pno keys list --file KEYS.json\n"
	"       pno keys revoke --file KEYS.json --name NAME\n"
	"\n"
	"Manage the API keys of pno serve. 'add' creates a random key, prints\n"
	"it once on stdout and stores only its hash (the file is created if\n"
	"missing); 'list' shows names, roles and state, never keys; 'revoke'\n"
	"marks a key revoked (the server refuses it after its next keys reload,\n"
	"with every session opened with it).\n";

/* Read the keys file as JSON (validated with the server's parser first);
 * a missing file is an empty array when `create`. 0 or an exit status. */
static int read_keys(const char *cmd, const char *path, int create,
		     json_t **out)
{
	struct auth_table *t = NULL;
	enum pno_status s = auth_table_load(&t, path);
	auth_table_free(t);
	if (s == PNO_STATUS_NOTFOUND && create) {
		*out = json_array();
		return *out ? 0 : runtime_error(cmd, PNO_STATUS_NOMEM);
	}
	if (s != PNO_STATUS_OK)
		return runtime_error(cmd, s);
	json_error_t err;
	*out = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!*out) {
		fprintf(stderr, "pno %s: %s: %s\n", cmd, path, err.text);
		return 1;
	}
	return 0;
}

/* Validate `a` as a keys file and replace `path` with it atomically. */
static int write_keys(const char *cmd, const char *path, const json_t *a)
{
	void *(*jmalloc)(size_t);
	void (*jfree)(void *);
	json_get_alloc_funcs(&jmalloc, &jfree);
	char *text = json_dumps(a, JSON_INDENT(2));
	if (!text)
		return runtime_error(cmd, PNO_STATUS_NOMEM);
	struct auth_table *t = NULL;
	enum pno_status s = auth_table_parse(&t, text, strlen(text), path);
	auth_table_free(t);
	if (s != PNO_STATUS_OK) {
		jfree(text);
		return runtime_error(cmd, s);
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	int rc = 1;
	if (fd < 0) {
		fprintf(stderr, "pno %s: cannot create %s: %s\n", cmd, tmp,
			strerror(errno));
		jfree(text);
		return 1;
	}
	size_t n = strlen(text), off = 0;
	while (off < n) {
		ssize_t w = write(fd, text + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	if (off < n || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
		fprintf(stderr, "pno %s: writing %s: %s\n", cmd, tmp,
			strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "pno %s: replacing %s: %s\n", cmd, path,
			strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* make the rename durable */
	char dir[4200];
	const char *slash = strrchr(path, '/');
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1,
		 slash ? (slash == path ? "/" : path) : ".");
	int dfd = open(dir, O_RDONLY);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	jfree(text);
	return rc;
}

/* An exclusive lock on PATH.lock, held until exit (-1 on failure). */
static int lock_keys(const char *cmd, const char *path)
{
	char lk[4200];
	snprintf(lk, sizeof lk, "%s.lock", path);
	int fd = open(lk, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) != 0) {
		fprintf(stderr, "pno %s: cannot lock %s: %s\n", cmd, lk,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int find(const json_t *a, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e) {
		json_t *n = json_object_get(e, "name");
		if (json_is_string(n) && !strcmp(json_string_value(n), name))
			return (int)i;
	}
	return -1;
}

static int keys_add(int argc, char **argv)
{
	const char *file = NULL, *name = NULL, *roles_s = "infer";
	const char *expires = NULL;
	struct flag f[] = {
		{"file", FLAG_STRING, &file, 0, 0, "keys file (JSON)", 1, 0},
		{"name", FLAG_STRING, &name, 0, 0, "key name ([A-Za-z0-9_.@-], 1..64)", 1, 0},
		{"roles", FLAG_STRING, &roles_s, 0, 0, "comma-separated roles: infer, admin", 0, 0},
		{"expires", FLAG_STRING, &expires, 0, 0, "expiry, UTC YYYY-MM-DDTHH:MM:SSZ (default: never)", 0, 0},
	};
	if (flags_parse("keys add", f, NF(f), argc, argv, 3, NULL, 0, NULL))
		return 2;
	size_t nl = strlen(name);
	if (nl < 1 || nl > AUTH_NAME_MAX ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789_.@-") != nl) {
		fprintf(stderr, "pno keys add: --name \"%s\": expected 1..%d "
			"characters from [A-Za-z0-9_.@-]\n", name, AUTH_NAME_MAX);
		return 2;
	}
	unsigned roles = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", roles_s);
	for (char *save = NULL, *r = strtok_r(buf, ",", &save); r;
	     r = strtok_r(NULL, ",", &save)) {
		unsigned bit = auth_role_parse(r);
		if (!bit) {
			fprintf(stderr, "pno keys add: --roles: unknown role "
				"\"%s\" (known: infer, admin)\n", r);
			return 2;
		}
		roles |= bit;
	}
	if (!roles) {
		fprintf(stderr, "pno keys add: --roles: give at least one role\n");
		return 2;
	}
	int64_t exp_t;
	if (expires && auth_time_parse(expires, &exp_t) != 0) {
		fprintf(stderr, "pno keys add: --expires %s: expected a UTC time "
			"YYYY-MM-DDTHH:MM:SSZ\n", expires);
		return 2;
	}
	int lock = lock_keys("keys add", file);
	if (lock < 0)
		return 1;
	json_t *a = NULL;
	int rc = read_keys("keys add", file, 1, &a);
	if (rc)
		goto out;
	if (find(a, name) >= 0) {
		fprintf(stderr, "pno keys add: %s: a key named \"%s\" exists "
			"(revoke it and choose another name)\n", file, name);
		rc = 1;
		goto out;
	}
	char token[AUTH_KEY_LEN + 1], hex[2 * AUTH_HASH_BYTES + 1], now[21];
	char rs[32];
	unsigned char hash[AUTH_HASH_BYTES];
	auth_key_generate(token, hash);
	sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
	auth_time_format(now, (int64_t)time(NULL));
	json_t *rl = json_array();
	if (roles & AUTH_ROLE_INFER)
		json_array_append_new(rl, json_string("infer"));
	if (roles & AUTH_ROLE_ADMIN)
		json_array_append_new(rl, json_string("admin"));
	json_t *e = json_pack("{s:s, s:s, s:o, s:b, s:s}", "name", name, "hash",
			      hex, "roles", rl, "revoked", 0, "created", now);
	if (e && expires)
		json_object_set_new(e, "expires", json_string(expires));
	if (!e || json_array_append_new(a, e) != 0) {
		rc = runtime_error("keys add", PNO_STATUS_NOMEM);
		goto out;
	}
	rc = write_keys("keys add", file, a);
	if (rc == 0) {
		auth_roles_str(rs, sizeof rs, roles);
		/* the key alone on stdout, for scripts; the rest on stderr */
		printf("%s\n", token);
		fflush(stdout);
		if (!quiet)
			fprintf(stderr, "pno keys add: key \"%s\" (%s) added to "
				"%s; the key above is shown only now (only its "
				"hash is stored); the server uses it after its "
				"next keys reload\n", name, rs, file);
	}
	sodium_memzero(token, sizeof token);
out:
	json_decref(a);
	close(lock);
	return rc;
}

static int keys_list(int argc, char **argv)
{
	const char *file = NULL;
	struct flag f[] = {
		{"file", FLAG_STRING, &file, 0, 0, "keys file (JSON)", 1, 0},
	};
	if (flags_parse("keys list", f, NF(f), argc, argv, 3, NULL, 0, NULL))
		return 2;
	json_t *a = NULL;
	int rc = read_keys("keys list", file, 0, &a);
	if (rc)
		return rc;
	int64_t now = (int64_t)time(NULL);
	printf("%-24s %-12s %-8s %-20s %-20s %s\n", "NAME", "ROLES", "STATE",
	       "CREATED", "EXPIRES", "HASH");
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e) {
		char rs[32] = "";
		size_t j;
		json_t *r;
		json_array_foreach(json_object_get(e, "roles"), j, r)
			snprintf(rs + strlen(rs), sizeof rs - strlen(rs), "%s%s",
				 j ? "," : "", json_string_value(r));
		const char *ex = json_string_value(json_object_get(e, "expires"));
		const char *cr = json_string_value(json_object_get(e, "created"));
		int64_t t = 0;
		const char *state =
			json_is_true(json_object_get(e, "revoked")) ? "revoked"
			: ex && auth_time_parse(ex, &t) == 0 && now >= t ? "expired"
									   : "active";
		printf("%-24s %-12s %-8s %-20s %-20s %.12s...\n",
		       json_string_value(json_object_get(e, "name")), rs, state,
		       cr ? cr : "-", ex ? ex : "never",
		       json_string_value(json_object_get(e, "hash")));
	}
	json_decref(a);
	return 0;
}

static int keys_revoke(int argc, char **argv)
{
	const char *file = NULL, *name = NULL;
	struct flag f[] = {
		{"file", FLAG_STRING, &file, 0, 0, "keys file (JSON)", 1, 0},
		{"name", FLAG_STRING, &name, 0, 0, "key to revoke", 1, 0},
	};
	if (flags_parse("keys revoke", f, NF(f), argc, argv, 3, NULL, 0, NULL))
		return 2;
	int lock = lock_keys("keys revoke", file);
	if (lock < 0)
		return 1;
	json_t *a = NULL;
	int rc = read_keys("keys revoke", file, 0, &a);
	if (rc)
		goto out;
	int i = find(a, name);
	if (i < 0) {
		fprintf(stderr, "pno keys revoke: %s: no key named \"%s\"\n",
			file, name);
		rc = 1;
		goto out;
	}
	json_t *e = json_array_get(a, (size_t)i);
	if (json_is_true(json_object_get(e, "revoked"))) {
		if (!quiet)
			fprintf(stderr, "pno keys revoke: \"%s\" was already "
				"revoked\n", name);
		goto out;
	}
	json_object_set_new(e, "revoked", json_true());
	rc = write_keys("keys revoke", file, a);
	if (rc == 0 && !quiet)
		fprintf(stderr, "pno keys revoke: \"%s\" revoked in %s (the "
			"server refuses it after its next keys reload)\n", name,
			file);
out:
	json_decref(a);
	close(lock);
	return rc;
}

int cmd_keys(int argc, char **argv)
{
	const char *sub = argc > 2 ? argv[2] : NULL;
	/* jansson's allocator is the library's from here on: set it before
	 * this file makes its first JSON value */
	pno_json_init();
	if (sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h") ||
		    !strcmp(sub, "help"))) {
		printf("%s", keys_usage);
		return 0;
	}
	for (int i = 3; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s", keys_usage);
			return 0;
		}
	if (sub && !strcmp(sub, "add"))
		return keys_add(argc, argv);
	if (sub && !strcmp(sub, "list"))
		return keys_list(argc, argv);
	if (sub && !strcmp(sub, "revoke"))
		return keys_revoke(argc, argv);
	if (sub)
		fprintf(stderr, "pno keys: unknown subcommand '%s'\n", sub);
	fprintf(stderr, "%s", keys_usage);
	return 2;
}
