/* The audit log writer: open (find the chain's end, cut a torn tail),
 * append (encode, MAC, ratchet, encrypt, one write + fdatasync), close
 * (the end marker). */
#include "audit_internal.h"

#include "../internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SS_STATE crypto_secretstream_xchacha20poly1305_state
#define PATH_CAP 4096

/* the secrets, in one block so they can be locked in memory together */
struct audit_secret {
	uint8_t enc[AUDIT__KEYBYTES];	/* segment encryption key */
	uint8_t id[16];
	uint8_t k[AUDIT__KEYBYTES];	/* the current chain key K_seq */
	uint8_t k_dur[AUDIT__KEYBYTES];	/* K at the last durable record + 1 */
	uint8_t k_snap[AUDIT__KEYBYTES];	/* K where a running sync ends */
	SS_STATE st;			/* the current segment's stream */
	SS_STATE next;			/* scratch: the stream after a push */
	int locked;
};

/* a writer waiting for its record to be synced (on its stack) */
struct audit_waiter {
	uint64_t seq;
	int state;		/* 0 pending, 1 durable, -1 rolled back */
	struct audit_waiter *next;
};

struct audit_log {
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* sync done, exclusivity released, rollback */
	int mu_ok, cv_ok;
	int syncing;		/* a group sync runs outside the lock */
	int excl;		/* a final record or a cut holds the segment */
	uint64_t epoch;		/* rollbacks so far */
	int fail_errno;		/* of the last failed sync */
	uint64_t dur_seq;	/* records < dur_seq are on disk */
	uint64_t dur_off;	/* ... ending at this offset of the segment */
	uint8_t dur_prev[AUDIT__MACBYTES];
	struct audit_waiter *waiters;
	struct audit_opts opts;
	struct audit_io io;
	char dir[PATH_CAP];
	int fd;			/* current segment, -1: none open */
	uint32_t seg;		/* its number (or the last one's) */
	uint64_t seg_off;	/* bytes in it */
	uint32_t seg_records;
	int broken;		/* a failed write could not be cleaned up */
	uint64_t seq;		/* next sequence number */
	uint8_t prev[AUDIT__MACBYTES];
	uint8_t hdr[AUDIT__HDR_PLAIN];	/* current segment's header (the AD) */
	struct audit_secret *sec;
	uint8_t *rec;		/* AUDIT__REC_MAX: plaintext record */
	uint8_t *msg;		/* AUDIT__PREFIX + AUDIT__MSG_MAX */
};

void audit_opts_default(struct audit_opts *o)
{
	memset(o, 0, sizeof *o);
	o->fsync = 1;
	o->segment_records = 100000;
	o->segment_bytes = (uint64_t)64 << 20;
}

/* ---- I/O through the hooks ---- */

static ssize_t io_write(struct audit_log *l, int fd, const void *p, size_t n)
{
	if (l->io.write)
		return l->io.write(l->io.ud, fd, p, n);
	return write(fd, p, n);
}

static int io_sync(struct audit_log *l, int fd)
{
	if (l->io.sync)
		return l->io.sync(l->io.ud, fd);
	return fdatasync(fd);
}

/* all n bytes or -1 with errno */
static int write_all(struct audit_log *l, int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = io_write(l, fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int sync_dir(struct audit_log *l)
{
	int fd = open(l->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, e;
	if (fd < 0)
		return -1;
	rc = io_sync(l, fd);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

static void seg_path(char *out, const struct audit_log *l, uint32_t n,
		     const char *suffix)
{
	snprintf(out, PATH_CAP + 64, "%s/seg-%06" PRIu32 ".log%s", l->dir, n,
		 suffix);
}

/* ---- segments ---- */

static void close_segment(struct audit_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	sodium_memzero(&l->sec->st, sizeof l->sec->st);
}

/* Start segment seg+1 at the chain's current position: header written
 * to a temporary, synced, then linked into place (never replacing a
 * file) so a segment exists only with its whole header. */
static enum pno_status new_segment(struct audit_log *l)
{
	char tmp[PATH_CAP + 64], path[PATH_CAP + 64];
	uint8_t hdr[AUDIT__SEG_HEADER];
	uint32_t n = l->seg + 1;
	enum pno_status s = PNO_STATUS_OK;
	int fd, e;

	if (n == 0)
		return pno__errorf(PNO_STATUS_RANGE, "audit log %s: segment numbers "
				   "exhausted", l->dir);
	seg_path(tmp, l, n, ".tmp");
	seg_path(path, l, n, "");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return pno__errorf(PNO_STATUS_IO, "audit log: cannot create %s: %s",
				   tmp, strerror(errno));
	memcpy(hdr, AUDIT__MAGIC, 8);
	audit__put32(hdr + 8, n);
	audit__put32(hdr + 12, 0);
	audit__put64(hdr + 16, l->seq);
	memcpy(hdr + 24, l->prev, AUDIT__MACBYTES);
	memcpy(hdr + 56, l->sec->id, sizeof l->sec->id);
	crypto_secretstream_xchacha20poly1305_init_push(
		&l->sec->next, hdr + AUDIT__HDR_PLAIN, l->sec->enc);
	if (write_all(l, fd, hdr, sizeof hdr) != 0 || io_sync(l, fd) != 0) {
		e = errno;
		s = pno__errorf(PNO_STATUS_IO, "audit log: writing the header of %s: %s",
				tmp, strerror(e));
		goto fail;
	}
	if (link(tmp, path) != 0) {
		e = errno;
		s = pno__errorf(PNO_STATUS_IO, "audit log: cannot create %s: %s",
				path, strerror(e));
		goto fail;
	}
	unlink(tmp);
	if (sync_dir(l) != 0) {
		/* the segment may or may not survive a crash: either way
		 * the chain is intact, but say so and start again */
		e = errno;
		s = pno__errorf(PNO_STATUS_IO, "audit log: syncing %s after creating "
				"%s: %s", l->dir, path, strerror(e));
		unlink(path);
		goto fail;
	}
	close_segment(l);
	l->fd = fd;
	l->seg = n;
	l->seg_off = sizeof hdr;
	l->seg_records = 0;
	memcpy(l->hdr, hdr, sizeof l->hdr);
	l->sec->st = l->sec->next;
	sodium_memzero(&l->sec->next, sizeof l->sec->next);
	return PNO_STATUS_OK;
fail:
	close(fd);
	unlink(tmp);
	sodium_memzero(&l->sec->next, sizeof l->sec->next);
	return s;
}

/* After a failed write or sync: cut the segment back to its last good
 * record and abandon it (the next record starts a new segment, so no
 * stream nonce is ever used for two different records). If the cut fails
 * the log stops taking records. */
static void undo_write(struct audit_log *l)
{
	int e = errno;
	if (ftruncate(l->fd, (off_t)l->seg_off) != 0 || io_sync(l, l->fd) != 0)
		l->broken = 1;
	close_segment(l);
	errno = e;
}

/* Tell the waiters whose records are now durable (all of them, and that
 * they were lost, after a rollback), and drop them from the list. A
 * waiter decides by this verdict only: sequence numbers are reused after
 * a rollback, so comparing numbers later would be wrong. */
static void settle(struct audit_log *l, int rolled_back)
{
	struct audit_waiter **pw = &l->waiters;
	while (*pw) {
		struct audit_waiter *w = *pw;
		if (rolled_back || w->seq < l->dur_seq) {
			w->state = rolled_back ? -1 : 1;
			*pw = w->next;
		} else {
			pw = &w->next;
		}
	}
	pthread_cond_broadcast(&l->cv);
}

/* The current chain position is on disk (synced). */
static void mark_durable(struct audit_log *l)
{
	l->dur_seq = l->seq;
	l->dur_off = l->seg_off;
	memcpy(l->dur_prev, l->prev, sizeof l->prev);
	memcpy(l->sec->k_dur, l->sec->k, sizeof l->sec->k_dur);
	settle(l, 0);
}

/* A sync failed: the records after the durable point may not be on disk.
 * Cut them, put the chain back to the durable point, abandon the segment
 * and wake their writers, who return IO. If the cut fails the log stops
 * taking records. */
static void rollback(struct audit_log *l, int err)
{
	if (l->fd >= 0 && (ftruncate(l->fd, (off_t)l->dur_off) != 0 ||
			   io_sync(l, l->fd) != 0))
		l->broken = 1;
	close_segment(l);
	l->seq = l->dur_seq;
	memcpy(l->prev, l->dur_prev, sizeof l->prev);
	memcpy(l->sec->k, l->sec->k_dur, sizeof l->sec->k);
	l->fail_errno = err;
	l->epoch++;
	settle(l, 1);	/* every waiter left is after the durable point */
}

static void excl_end(struct audit_log *l)
{
	l->excl = 0;
	pthread_cond_broadcast(&l->cv);
}

/* One record, under the lock.
 *
 * With opts.fsync, records are group-committed: each writer appends its
 * record under the lock, then waits until a sync covers it; whichever
 * waiter finds no sync running starts one (outside the lock) for every
 * record written so far. A failed sync rolls the chain back to the last
 * durable record and every writer after it gets IO. Operations that
 * close or cut the segment (a final record, a failed write) take it
 * exclusively: no new writes, no sync in flight. */
static enum pno_status append_locked(struct audit_log *l,
				     const struct audit_event *ev,
				     uint64_t *seq_out)
{
	uint8_t *rec = l->rec, *msg = l->msg;
	uint8_t mac[AUDIT__MACBYTES];
	unsigned long long clen = 0;
	enum pno_status s;
	int64_t t = ev->time_ns;
	size_t jlen, n;
	int fin, group = l->opts.fsync;
	uint64_t my, ep;

	if (t == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	}
	jlen = audit__event_json((char *)rec + AUDIT__REC_FIXED, AUDIT__MAX_JSON, ev, t);
	n = AUDIT__REC_FIXED + jlen + AUDIT__MACBYTES;
retry:
	while (l->excl)
		pthread_cond_wait(&l->cv, &l->mu);
	if (l->broken)
		return pno__errorf(PNO_STATUS_IO,
				   "audit log %s: unusable since a failed write "
				   "could not be undone; reopen it", l->dir);
	if (l->fd < 0) {
		if ((s = new_segment(l)) != PNO_STATUS_OK)
			return s;
		mark_durable(l);	/* a segment closes only once synced */
	}
	/* the record that fills the segment closes it */
	fin = l->seg_records + 1 >= l->opts.segment_records ||
	      l->seg_off + AUDIT__PREFIX + n + AUDIT__ABYTES >=
		      l->opts.segment_bytes ||
	      ev->type == AUDIT_EVENT_LOG_CLOSE;
	if (fin && group) {
		l->excl = 1;
		while (l->syncing)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->fd < 0 || l->broken) {	/* rolled back meanwhile */
			excl_end(l);
			goto retry;
		}
	}
	/* the chain position is stable from here to the write */
	audit__put64(rec, l->seq);
	memcpy(rec + 8, l->prev, AUDIT__MACBYTES);
	rec[40] = (uint8_t)ev->type;
	rec[41] = (uint8_t)((unsigned)ev->type >> 8);
	rec[42] = rec[43] = 0;
	audit__put32(rec + 44, (uint32_t)jlen);
	audit__mac(mac, l->sec->k, rec, AUDIT__REC_FIXED + jlen);
	memcpy(rec + AUDIT__REC_FIXED + jlen, mac, sizeof mac);
	/* push on a copy: the stream advances only once the record is
	 * written; after a failure the segment is abandoned, never reused,
	 * so no nonce ever encrypts two different records */
	l->sec->next = l->sec->st;
	crypto_secretstream_xchacha20poly1305_push(
		&l->sec->next, msg + AUDIT__PREFIX, &clen, rec, n, l->hdr,
		sizeof l->hdr,
		fin ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
		    : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	audit__put32(msg, (uint32_t)clen);
	audit__put32(msg + 4, ~(uint32_t)clen);
	sodium_memzero(rec, n);
	if (write_all(l, l->fd, msg, AUDIT__PREFIX + (size_t)clen) != 0 ||
	    (!group && fin && io_sync(l, l->fd) != 0)) {
		int e = errno;
		s = pno__errorf(PNO_STATUS_IO,
				"audit log %s: writing record %" PRIu64 " to "
				"seg-%06" PRIu32 ".log: %s", l->dir, l->seq, l->seg,
				strerror(e));
		sodium_memzero(&l->sec->next, sizeof l->sec->next);
		if (!group) {
			undo_write(l);
			return s;
		}
		if (!fin) {
			ep = l->epoch;
			l->excl = 1;
			while (l->syncing)
				pthread_cond_wait(&l->cv, &l->mu);
			if (l->epoch != ep) {	/* rolled back: bytes gone */
				excl_end(l);
				return s;
			}
		}
		/* cut this record's bytes; the records before it stay if
		 * they can be synced */
		if (ftruncate(l->fd, (off_t)l->seg_off) == 0 &&
		    io_sync(l, l->fd) == 0) {
			mark_durable(l);
			close_segment(l);
		} else {
			rollback(l, errno);
		}
		excl_end(l);
		return s;
	}
	l->sec->st = l->sec->next;
	sodium_memzero(&l->sec->next, sizeof l->sec->next);
	memcpy(l->prev, mac, sizeof mac);
	audit__ratchet(l->sec->k);
	my = l->seq++;
	l->seg_off += AUDIT__PREFIX + clen;
	l->seg_records++;
	if (!group) {
		if (fin)
			close_segment(l);
		if (seq_out)
			*seq_out = my;
		return PNO_STATUS_OK;
	}
	if (fin) {
		/* exclusive: sync here, then close */
		if (io_sync(l, l->fd) != 0) {
			int e = errno;
			s = pno__errorf(PNO_STATUS_IO, "audit log %s: syncing record "
					"%" PRIu64 ": %s", l->dir, my, strerror(e));
			rollback(l, e);
			excl_end(l);
			return s;
		}
		mark_durable(l);
		close_segment(l);
		excl_end(l);
		if (seq_out)
			*seq_out = my;
		return PNO_STATUS_OK;
	}
	struct audit_waiter w = {my, 0, l->waiters};
	l->waiters = &w;
	for (;;) {
		if (w.state > 0)
			break;
		if (w.state < 0)
			return pno__errorf(PNO_STATUS_IO,
					   "audit log %s: record %" PRIu64 " was "
					   "written but the sync failed (%s): not "
					   "recorded", l->dir, my,
					   strerror(l->fail_errno));
		if (!l->syncing && !l->excl) {
			uint64_t snap_seq = l->seq, snap_off = l->seg_off;
			uint8_t snap_prev[AUDIT__MACBYTES];
			int fd = l->fd, rc, e;
			memcpy(snap_prev, l->prev, sizeof snap_prev);
			memcpy(l->sec->k_snap, l->sec->k, sizeof l->sec->k_snap);
			l->syncing = 1;
			pthread_mutex_unlock(&l->mu);
			rc = io_sync(l, fd);
			e = errno;
			pthread_mutex_lock(&l->mu);
			l->syncing = 0;
			if (rc == 0) {
				l->dur_seq = snap_seq;
				l->dur_off = snap_off;
				memcpy(l->dur_prev, snap_prev, sizeof snap_prev);
				memcpy(l->sec->k_dur, l->sec->k_snap,
				       sizeof l->sec->k_dur);
				settle(l, 0);
			} else {
				rollback(l, e);
			}
			continue;
		}
		pthread_cond_wait(&l->cv, &l->mu);
	}
	if (seq_out)
		*seq_out = my;
	return PNO_STATUS_OK;
}

enum pno_status audit_append(struct audit_log *log,
			     const struct audit_event *ev, uint64_t *seq_out)
{
	enum pno_status s;
	if (!log || !ev)
		return pno__errorf(PNO_STATUS_INVALID, "audit append: %s is NULL",
				   !log ? "log" : "event");
	if ((s = audit__event_check(ev)) != PNO_STATUS_OK)
		return s;
	if (ev->type >= AUDIT_EVENT_LOG_OPEN &&
	    ev->type <= AUDIT_EVENT_LOG_CLOSE)
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit append: event %s is written by the log "
				   "itself", audit_event_name(ev->type));
	pthread_mutex_lock(&log->mu);
	s = append_locked(log, ev, seq_out);
	pthread_mutex_unlock(&log->mu);
	return s;
}

uint64_t audit_next_seq(struct audit_log *log)
{
	uint64_t v;
	if (!log)
		return 0;
	pthread_mutex_lock(&log->mu);
	v = log->seq;
	pthread_mutex_unlock(&log->mu);
	return v;
}

static void log_free(struct audit_log *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	if (l->sec) {
		int locked = l->sec->locked;
		if (locked)
			sodium_munlock(l->sec, sizeof *l->sec);	/* wipes */
		else
			sodium_memzero(l->sec, sizeof *l->sec);
		pno_free(l->sec);
	}
	pno_free(l->rec);
	pno_free(l->msg);
	if (l->mu_ok)
		pthread_mutex_destroy(&l->mu);
	if (l->cv_ok)
		pthread_cond_destroy(&l->cv);
	pno_free(l);
}

enum pno_status audit_close(struct audit_log *log)
{
	enum pno_status s;
	if (!log)
		return PNO_STATUS_OK;
	struct audit_event ev = {.type = AUDIT_EVENT_LOG_CLOSE,
				 .detail = "clean shutdown"};
	pthread_mutex_lock(&log->mu);
	s = append_locked(log, &ev, NULL);
	pthread_mutex_unlock(&log->mu);
	log_free(log);
	return s;
}

/* ---- open: find the end of the chain ---- */

/* Remove temporaries of segments whose creation a crash interrupted (or
 * whose removal after the link was not yet durable). */
static void remove_temps(struct audit_log *l)
{
	char tmp[PATH_CAP + 300];
	DIR *d = opendir(l->dir);
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (strncmp(e->d_name, "seg-", 4) != 0 || n < 8 ||
		    strcmp(e->d_name + n - 8, ".log.tmp") != 0)
			continue;
		snprintf(tmp, sizeof tmp, "%s/%s", l->dir, e->d_name);
		unlink(tmp);
	}
	closedir(d);
}

/* Scan the last segment (adopting its header's chain position) and make
 * it the end of the log: cut a torn tail, drop it if no record is left
 * and go to the one before. Sets l->seq, l->prev, l->sec->k, l->seg. */
static enum pno_status find_end(struct audit_log *l,
				const struct audit__keys *keys, char *note,
				size_t note_size, enum audit_event_type *type)
{
	char path[PATH_CAP + 64];
	uint32_t max, missing;
	uint64_t total;
	enum pno_status s;
	struct audit__chain ch;
	int fd = -1;

	*type = AUDIT_EVENT_LOG_OPEN;
	snprintf(note, note_size, "opened a new log");
	if ((s = audit__list(l->dir, &max, &missing, &total)) != PNO_STATUS_OK)
		return s;
	if (missing)
		return pno__errorf(PNO_STATUS_FORMAT,
				   "audit log %s: seg-%06" PRIu32 ".log is missing "
				   "(segments 1..%" PRIu32 " expected): refusing to "
				   "append; run pno audit verify", l->dir, missing,
				   max);
	remove_temps(l);
	memset(&ch, 0, sizeof ch);
	ch.last_type = -1;
	memcpy(ch.k, keys->chain, sizeof ch.k);
	while (max > 0) {
		struct audit_result r;
		struct audit__scan_out so;
		struct stat sb;
		memset(&r, 0, sizeof r);
		seg_path(path, l, max, "");
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &sb) != 0) {
			s = pno__errorf(PNO_STATUS_IO, "audit log: %s: %s", path,
					strerror(errno));
			goto cleanup;
		}
		struct audit__src src = {fd, NULL, (uint64_t)sb.st_size};
		uint64_t bound = total / (AUDIT__PREFIX + AUDIT__MSG_MIN) + 1;
		s = audit__scan(&src, max, 1, 1, bound, keys, &ch, NULL, NULL, &r,
				&so);
		if (s != PNO_STATUS_OK) {
			if (s == PNO_STATUS_FORMAT)
				s = pno__errorf(PNO_STATUS_FORMAT,
						"audit log %s does not verify at its "
						"end (%s): refusing to append; run "
						"pno audit verify", l->dir, r.message);
			goto cleanup;
		}
		if (r.torn) {
			if (ftruncate(fd, (off_t)r.torn_offset) != 0 ||
			    fdatasync(fd) != 0) {
				s = pno__errorf(PNO_STATUS_IO, "audit log: cutting "
						"the torn tail of %s: %s", path,
						strerror(errno));
				goto cleanup;
			}
			*type = AUDIT_EVENT_LOG_RECOVERED;
			snprintf(note, note_size, "recovered torn tail: cut %"
				 PRIu64 " bytes of an incomplete record at byte %"
				 PRIu64 " of seg-%06" PRIu32 ".log", r.torn_bytes,
				 r.torn_offset, max);
		}
		/* records a killed writer wrote but never synced are in the
		 * page cache only: sync them before building on them */
		if (so.records > 0 && fdatasync(fd) != 0) {
			s = pno__errorf(PNO_STATUS_IO, "audit log: syncing %s: %s",
					path, strerror(errno));
			goto cleanup;
		}
		close(fd);
		fd = -1;
		if (so.records > 0)
			break;
		/* a header and nothing else (a crash right after creating
		 * it, or a write failure on its first record): it holds no
		 * record, so drop it and continue from the one before */
		if (unlink(path) != 0 || sync_dir(l) != 0) {
			s = pno__errorf(PNO_STATUS_IO, "audit log: removing the "
					"empty segment %s: %s", path,
					strerror(errno));
			goto cleanup;
		}
		max--;
	}
	if (max > 0) {
		l->seq = ch.seq;
		memcpy(l->prev, ch.prev, sizeof l->prev);
		memcpy(l->sec->k, ch.k, sizeof ch.k);
		if (*type == AUDIT_EVENT_LOG_OPEN)
			snprintf(note, note_size, "%s",
				 ch.last_type == AUDIT_EVENT_LOG_CLOSE
					 ? "reopened after a clean shutdown"
					 : "reopened after an unclean shutdown "
					   "(no close record)");
	} else {
		l->seq = 0;
		memset(l->prev, 0, sizeof l->prev);
		memcpy(l->sec->k, keys->chain, sizeof ch.k);
	}
	l->seg = max;
cleanup:
	if (fd >= 0)
		close(fd);
	sodium_memzero(&ch, sizeof ch);
	return s;
}

enum pno_status audit_open(struct audit_log **out, const char *dir,
			   const char *keyfile, const struct audit_opts *opts)
{
	struct audit_log *l = NULL;
	struct audit__keys keys;
	uint8_t master[AUDIT__KEYBYTES];
	enum pno_status s;
	char note[320];
	enum audit_event_type type;

	if (!out)
		return pno__errorf(PNO_STATUS_INVALID, "audit open: out is NULL");
	*out = NULL;
	if (sodium_init() < 0)
		return pno__errorf(PNO_STATUS_INTERNAL, "audit open: libsodium "
				   "failed to initialize");
	if (!dir || !*dir)
		return pno__errorf(PNO_STATUS_INVALID, "audit open: no log directory");
	if (strlen(dir) >= PATH_CAP - 64)
		return pno__errorf(PNO_STATUS_INVALID, "audit open: path too long");
	if (opts && (opts->segment_records < 1 ||
		     opts->segment_bytes < AUDIT__SEG_HEADER + 1))
		return pno__errorf(PNO_STATUS_INVALID,
				   "audit open: segment_records must be >= 1 and "
				   "segment_bytes > %d", AUDIT__SEG_HEADER);
	memset(&keys, 0, sizeof keys);
	if ((s = audit__key_load(keyfile, master)) != PNO_STATUS_OK)
		return s;
	audit__keys_derive(&keys, master);
	sodium_memzero(master, sizeof master);

	l = pno_calloc(1, sizeof *l);
	if (!l) {
		s = pno__errorf(PNO_STATUS_NOMEM, "audit open: out of memory");
		goto cleanup;
	}
	l->fd = -1;
	l->sec = pno_calloc(1, sizeof *l->sec);
	l->rec = pno_malloc(AUDIT__REC_MAX);
	l->msg = pno_malloc(AUDIT__PREFIX + AUDIT__MSG_MAX);
	if (!l->sec || !l->rec || !l->msg) {
		s = pno__errorf(PNO_STATUS_NOMEM, "audit open: out of memory");
		goto cleanup;
	}
	/* best effort: keep the keys out of swap (RLIMIT_MEMLOCK may say no) */
	l->sec->locked = sodium_mlock(l->sec, sizeof *l->sec) == 0;
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		s = pno__errorf(PNO_STATUS_NOMEM, "audit open: cannot create a mutex");
		goto cleanup;
	}
	l->mu_ok = 1;
	if (pthread_cond_init(&l->cv, NULL) != 0) {
		s = pno__errorf(PNO_STATUS_NOMEM, "audit open: cannot create a "
				"condition variable");
		goto cleanup;
	}
	l->cv_ok = 1;
	if (opts)
		l->opts = *opts;
	else
		audit_opts_default(&l->opts);
	if (l->opts.io)
		l->io = *l->opts.io;
	l->opts.io = NULL;
	snprintf(l->dir, sizeof l->dir, "%s", dir);
	memcpy(l->sec->enc, keys.enc, sizeof keys.enc);
	memcpy(l->sec->id, keys.id, sizeof keys.id);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		s = pno__errorf(PNO_STATUS_IO, "audit open: cannot create %s: %s",
				dir, strerror(errno));
		goto cleanup;
	}
	if ((s = find_end(l, &keys, note, sizeof note, &type)) != PNO_STATUS_OK)
		goto cleanup;
	/* K_0 is not needed any more: the writer keeps only K_seq */
	sodium_memzero(&keys, sizeof keys);
	struct audit_event ev = {.type = type, .detail = note};
	pthread_mutex_lock(&l->mu);
	s = append_locked(l, &ev, NULL);
	pthread_mutex_unlock(&l->mu);
	if (s != PNO_STATUS_OK)
		goto cleanup;
	*out = l;
	l = NULL;
cleanup:
	sodium_memzero(&keys, sizeof keys);
	log_free(l);
	return s;
}
