/* Atomic file replacement: temp file beside the target, fsync, rename,
 * fsync of the directory. Also the I/O fault hook used by the tests. */
#include "internal.h"
#include "io_internal.h"
#include "pno/io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fault injection ---- */
static long io_count, io_fail_at;

void pno__io_fault_reset(long fail_at)
{
	io_count = 0;
	io_fail_at = fail_at;
}

long pno__io_fault_count(void) { return io_count; }

int pno__io_fault(void)
{
	io_count++;
	if (io_fail_at > 0 && io_count == io_fail_at) {
		errno = EIO;
		return 1;
	}
	return 0;
}

int pno__fwrite_all(FILE *fp, const void *p, size_t n)
{
	if (pno__io_fault())
		return -1;
	if (n == 0)
		return 0;
	errno = 0;
	if (fwrite(p, 1, n, fp) != n) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}



/* ---- atomic files ---- */

/* Directory part of `path` ("." if none), through the allocator. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;
	if (!slash)
		return pno_strdup(".");
	if (slash == path)
		return pno_strdup("/");
	d = pno_malloc((size_t)(slash - path) + 1);
	if (d) {
		memcpy(d, path, (size_t)(slash - path));
		d[slash - path] = '\0';
	}
	return d;
}

/* fsync directory `dir` so a rename of `path` inside it is durable. */
static enum pno_status fsync_dir(const char *dir, const char *path)
{
	enum pno_status s = PNO_STATUS_OK;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return pno__errorf(PNO_STATUS_IO,
				   "%s: renamed, but cannot open directory %s to fsync: %s",
				   path, dir, strerror(errno));
	/* some filesystems cannot fsync a directory; nothing more to do */
	if ((pno__io_fault() || fsync(fd) != 0) && errno != EINVAL &&
	    errno != ENOTSUP)
		s = pno__errorf(PNO_STATUS_IO,
				"%s: renamed, but fsync of directory %s failed: %s",
				path, dir, strerror(errno));
	close(fd);
	return s;
}

static enum pno_status check_absent(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == 0)
		return pno__errorf(PNO_STATUS_EXISTS,
				   "%s: file exists (refusing to overwrite)", path);
	if (errno != ENOENT)
		return pno__errorf(PNO_STATUS_IO, "%s: cannot stat: %s", path,
				   strerror(errno));
	return PNO_STATUS_OK;
}

/* mkstemp creates 0600; give the file the target's mode, or 0644. */
static void set_mode(int fd, const char *path)
{
	struct stat st;
	mode_t mode = 0644;
	if (stat(path, &st) == 0)
		mode = st.st_mode & 07777;
	(void)fchmod(fd, mode);
}

enum pno_status pno_atomic_open(struct pno_atomic_file *f, const char *path,
				int overwrite)
{
	enum pno_status s;
	size_t len;
	int fd;
	if (!f)
		return pno__errorf(PNO_STATUS_INVALID, "pno_atomic_open: NULL file");
	memset(f, 0, sizeof *f);
	if (!path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "pno_atomic_open: empty path");
	if (!overwrite && (s = check_absent(path)) != PNO_STATUS_OK)
		return s;
	len = strlen(path);
	f->path = pno_strdup(path);
	f->tmp_path = pno_malloc(len + sizeof ".tmp.XXXXXX");
	if (!f->path || !f->tmp_path) {
		s = pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
		goto fail;
	}
	memcpy(f->tmp_path, path, len);
	memcpy(f->tmp_path + len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
	fd = mkstemp(f->tmp_path);
	if (fd < 0) {
		s = pno__errorf(PNO_STATUS_IO, "%s: cannot create temporary file %s: %s",
				path, f->tmp_path, strerror(errno));
		pno_free(f->tmp_path);
		f->tmp_path = NULL;
		goto fail;
	}
	set_mode(fd, path);
	f->fp = fdopen(fd, "wb");
	if (!f->fp) {
		s = pno__errorf(PNO_STATUS_IO, "%s: fdopen of %s failed: %s", path,
				f->tmp_path, strerror(errno));
		close(fd);
		goto fail;
	}
	return PNO_STATUS_OK;
fail:
	pno_atomic_abort(f);
	return s;
}

enum pno_status pno_atomic_commit(struct pno_atomic_file *f)
{
	enum pno_status s;
	FILE *fp;
	if (!f || !f->fp || !f->tmp_path || !f->path)
		return pno__errorf(PNO_STATUS_INVALID,
				   "pno_atomic_commit: file not open");
	fp = f->fp;
	if (pno__io_fault() || fflush(fp) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "%s: write to %s failed: %s", f->path,
				f->tmp_path, strerror(errno));
		goto fail;
	}
	if (pno__io_fault() || fsync(fileno(fp)) != 0) {
		s = pno__errorf(PNO_STATUS_IO, "%s: fsync of %s failed: %s", f->path,
				f->tmp_path, strerror(errno));
		goto fail;
	}
	f->fp = NULL;
	if (fclose(fp) != 0 || pno__io_fault()) {
		s = pno__errorf(PNO_STATUS_IO, "%s: close of %s failed: %s", f->path,
				f->tmp_path, strerror(errno));
		goto fail;
	}
	s = pno_atomic_rename(f->tmp_path, f->path);
	if (s == PNO_STATUS_OK || access(f->tmp_path, F_OK) != 0) {
		/* renamed (maybe only the directory fsync failed): the name
		 * is gone, never unlink it */
		pno_free(f->tmp_path);
		f->tmp_path = NULL;
	}
	pno_atomic_abort(f);
	return s;
fail:
	pno_atomic_abort(f);
	return s;
}

void pno_atomic_abort(struct pno_atomic_file *f)
{
	if (!f)
		return;
	if (f->fp)
		fclose(f->fp);
	if (f->tmp_path)
		unlink(f->tmp_path);
	pno_free(f->tmp_path);
	pno_free(f->path);
	memset(f, 0, sizeof *f);
}

enum pno_status pno_atomic_rename(const char *tmp_path, const char *path)
{
	enum pno_status s;
	char *dir;
	if (!tmp_path || !path || !*path)
		return pno__errorf(PNO_STATUS_INVALID, "pno_atomic_rename: empty path");
	/* allocate before the rename: after it, failing is too late */
	dir = dir_of(path);
	if (!dir)
		return pno__errorf(PNO_STATUS_NOMEM, "%s: out of memory", path);
	if (pno__io_fault() || rename(tmp_path, path) != 0)
		s = pno__errorf(PNO_STATUS_IO, "%s: cannot rename %s over it: %s",
				path, tmp_path, strerror(errno));
	else
		s = fsync_dir(dir, path);
	pno_free(dir);
	return s;
}
