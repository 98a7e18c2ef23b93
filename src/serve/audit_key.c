/* Audit log keys: the master key file, the keys derived from it, the
 * chain ratchet and the record MAC. */
#include "audit_internal.h"

#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const event_names[] = {
#define AUDIT__EV_NAME(name, wire) wire,
	AUDIT_EVENT_LIST(AUDIT__EV_NAME)
#undef AUDIT__EV_NAME
};

const char *audit_event_name(enum audit_event_type t)
{
	if ((int)t < 0 || t >= AUDIT_EVENT_COUNT)
		return NULL;
	return event_names[t];
}

void audit_digest_hex(char out[AUDIT_DIGEST_HEX + 1], const void *data,
		      size_t n)
{
	uint8_t h[32];
	crypto_generichash(h, sizeof h, data, n, NULL, 0);
	sodium_bin2hex(out, AUDIT_DIGEST_HEX + 1, h, sizeof h);
}

/* kdf contexts: 8 bytes each */
static const char ctx_master[crypto_kdf_CONTEXTBYTES] = {'p', 'n', 'o', 'a',
							  'u', 'd', 'i', 't'};
static const char ctx_ratchet[crypto_kdf_CONTEXTBYTES] = {'p', 'n', 'o', 'r',
							   'a', 't', 'c', 'h'};

void audit__keys_derive(struct audit__keys *k,
			const uint8_t master[AUDIT__KEYBYTES])
{
	crypto_kdf_derive_from_key(k->enc, sizeof k->enc, 1, ctx_master, master);
	crypto_kdf_derive_from_key(k->chain, sizeof k->chain, 2, ctx_master,
				   master);
	crypto_kdf_derive_from_key(k->id, sizeof k->id, 3, ctx_master, master);
}

void audit__ratchet(uint8_t k[AUDIT__KEYBYTES])
{
	uint8_t next[AUDIT__KEYBYTES];
	crypto_kdf_derive_from_key(next, sizeof next, 0, ctx_ratchet, k);
	memcpy(k, next, sizeof next);
	sodium_memzero(next, sizeof next);
}

void audit__mac(uint8_t mac[AUDIT__MACBYTES], const uint8_t k[AUDIT__KEYBYTES],
		const uint8_t *rec, size_t n)
{
	crypto_generichash(mac, AUDIT__MACBYTES, rec, n, k, AUDIT__KEYBYTES);
}

enum pno_status audit__key_load(const char *path,
				uint8_t master[AUDIT__KEYBYTES])
{
	char text[160];
	struct stat sb;
	ssize_t got;
	size_t bin_len = 0;
	const char *end = NULL;
	enum pno_status s = PNO_STATUS_OK;
	int fd;

	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "audit key: no key file given");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pno__errorf(errno == ENOENT ? PNO_STATUS_NOTFOUND
						   : PNO_STATUS_IO,
				   "audit key %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "audit key %s: %s", path,
				strerror(errno));
		goto cleanup;
	}
	if (!S_ISREG(sb.st_mode)) {
		s = pno__errorf(PNO_STATUS_INVALID,
				"audit key %s: not a regular file", path);
		goto cleanup;
	}
	if (sb.st_mode & 077) {
		s = pno__errorf(PNO_STATUS_INVALID,
				"audit key %s: readable or writable by group or "
				"others (mode %04o): chmod 600 it", path,
				(unsigned)(sb.st_mode & 07777));
		goto cleanup;
	}
	got = read(fd, text, sizeof text - 1);
	if (got < 0) {
		s = pno__errorf(PNO_STATUS_IO, "audit key %s: %s", path,
				strerror(errno));
		goto cleanup;
	}
	text[got] = '\0';
	if (sodium_hex2bin(master, AUDIT__KEYBYTES, text, (size_t)got, NULL,
			   &bin_len, &end) != 0 ||
	    bin_len != AUDIT__KEYBYTES || end != text + 2 * AUDIT__KEYBYTES ||
	    strspn(end, " \t\r\n") != strlen(end) || (size_t)got != strlen(text)) {
		s = pno__errorf(PNO_STATUS_FORMAT,
				"audit key %s: not an audit key file (want 64 "
				"hex digits, as written by pno audit keygen)",
				path);
		goto cleanup;
	}
cleanup:
	sodium_memzero(text, sizeof text);
	close(fd);
	if (s != PNO_STATUS_OK)
		sodium_memzero(master, AUDIT__KEYBYTES);
	return s;
}

/* fsync the directory holding path so a link/rename in it is durable */
static int sync_parent(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int fd, rc;
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

enum pno_status audit_keygen(const char *path)
{
	uint8_t key[AUDIT__KEYBYTES];
	char hex[2 * AUDIT__KEYBYTES + 2], tmp[4200];
	enum pno_status s = PNO_STATUS_OK;
	struct stat sb;
	int fd = -1, linked = 0;

	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "audit keygen: no output path");
	if (strlen(path) > 4000)
		return pno__errorf(PNO_STATUS_INVALID, "audit keygen: path too long");
	if (sodium_init() < 0)
		return pno__errorf(PNO_STATUS_INTERNAL, "audit keygen: libsodium "
				   "failed to initialize");
	if (lstat(path, &sb) == 0)
		return pno__errorf(PNO_STATUS_EXISTS,
				   "audit keygen: %s exists (a key is never "
				   "overwritten: move it away first)", path);
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return pno__errorf(PNO_STATUS_IO, "audit keygen: cannot create %s: %s",
				   tmp, strerror(errno));
	randombytes_buf(key, sizeof key);
	sodium_bin2hex(hex, sizeof hex, key, sizeof key);
	hex[2 * AUDIT__KEYBYTES] = '\n';
	/* fchmod: the umask may have removed bits but never adds any; be
	 * explicit anyway */
	if (fchmod(fd, 0600) != 0 ||
	    write(fd, hex, 2 * AUDIT__KEYBYTES + 1) != 2 * AUDIT__KEYBYTES + 1 ||
	    fsync(fd) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "audit keygen: writing %s: %s", tmp,
				strerror(errno));
		goto cleanup;
	}
	/* link, unlike rename, fails if the target appeared meanwhile */
	if (link(tmp, path) != 0) {
		s = errno == EEXIST
			    ? pno__errorf(PNO_STATUS_EXISTS,
					  "audit keygen: %s exists (a key is "
					  "never overwritten)", path)
			    : pno__errorf(PNO_STATUS_IO, "audit keygen: %s: %s",
					  path, strerror(errno));
		goto cleanup;
	}
	linked = 1;
	if (sync_parent(path) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "audit keygen: syncing the directory "
				"of %s: %s", path, strerror(errno));
		goto cleanup;
	}
cleanup:
	sodium_memzero(key, sizeof key);
	sodium_memzero(hex, sizeof hex);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	if (s != PNO_STATUS_OK && linked)
		unlink(path);
	return s;
}
