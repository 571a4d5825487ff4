/*
 * uidl.c - per-account record of delivered POP3 UIDLs (see uidl.h).
 */
#include "uidl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "pop3-proto.h"

#define UIDL_HEADER "postern-uidl 1\n"
/* Largest store file read: every entry with its newline, and the header. */
#define UIDL_FILE_MAX ((size_t)UIDL_ENTRIES_MAX * (UIDL_ID_MAX + 1) + 64)
/* Hash table slots at first. */
#define UIDL_SLOTS_MIN 1024

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int uidl_is_guard(const char *id)
{
	if (strncmp(id, "m:", 2) != 0 || strlen(id) != 66)
		return 0;
	for (const char *p = id + 2; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

int uidl_key(const char *account, const char *id, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s\n%s", account, id);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* FNV-1a: the ids come from the server, but a collision only costs time
 * and the table is bounded by UIDL_ENTRIES_MAX. */
static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL & (size_t)-1;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * (size_t)1099511628211ULL;
	return h;
}

static void table_put(struct uidl_store *s, size_t idx)
{
	size_t m = s->nslots - 1, i = hash(s->e[idx].id) & m;
	while (s->slot[i])
		i = (i + 1) & m;
	s->slot[i] = (unsigned)idx + 1;
}

static int table_rebuild(struct uidl_store *s, size_t want)
{
	size_t n = UIDL_SLOTS_MIN;
	while (n < 2 * want + 2)
		n *= 2;
	unsigned *t = calloc(n, sizeof *t);
	if (!t)
		return -1;
	free(s->slot);
	s->slot = t;
	s->nslots = n;
	for (size_t i = 0; i < s->n; i++)
		table_put(s, i);
	return 0;
}

int uidl_has(const struct uidl_store *s, const char *id)
{
	if (!s->slot)
		return 0;
	size_t m = s->nslots - 1, i = hash(id) & m;
	for (; s->slot[i]; i = (i + 1) & m)
		if (strcmp(s->e[s->slot[i] - 1].id, id) == 0)
			return 1;
	return 0;
}

/* Adds id in memory (no duplicate check). */
static int add_mem(struct uidl_store *s, const char *id)
{
	if (s->n >= UIDL_ENTRIES_MAX) {
		errno = ENOSPC;
		return -1;
	}
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 256;
		struct uidl_entry *ne = realloc(s->e, nc * sizeof *ne);
		if (!ne)
			return -1;
		s->e = ne;
		s->cap = nc;
	}
	snprintf(s->e[s->n].id, sizeof s->e[s->n].id, "%s", id);
	s->n++;
	if (2 * s->n + 2 > s->nslots)
		return table_rebuild(s, s->n);
	table_put(s, s->n - 1);
	return 0;
}

static int id_ok(const char *id)
{
	return pop3_uid_valid(id);
}

/* Parses the file text; a torn last line is left out (*good: bytes kept). */
static int parse(struct uidl_store *s, const char *buf, size_t len, size_t *good,
	char *err, size_t errlen)
{
	size_t hl = strlen(UIDL_HEADER);
	*good = 0;
	if (len == 0)
		return 0;
	if (len < hl || memcmp(buf, UIDL_HEADER, hl) != 0) {
		if (len < hl && memcmp(buf, UIDL_HEADER, len) == 0)
			return 0;	/* the header itself was torn */
		seterr(err, errlen, "%s: not a UIDL store (bad header)", s->path);
		return -1;
	}
	size_t pos = hl;
	*good = hl;
	unsigned line = 2;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		if (!nl)
			break;	/* torn by a crash during an append */
		size_t n = (size_t)(nl - (buf + pos));
		char id[UIDL_ID_MAX + 1];
		if (n == 0 || n > UIDL_ID_MAX) {
			seterr(err, errlen, "%s:%u: bad entry", s->path, line);
			return -1;
		}
		memcpy(id, buf + pos, n);
		id[n] = '\0';
		if (!id_ok(id)) {
			seterr(err, errlen, "%s:%u: bad entry", s->path, line);
			return -1;
		}
		if (!uidl_has(s, id) && add_mem(s, id) < 0) {
			seterr(err, errlen, "%s: %s", s->path, strerror(errno));
			return -1;
		}
		pos += n + 1;
		*good = pos;
		line++;
	}
	return 0;
}

static int take_lock(struct uidl_store *s, char *err, size_t errlen)
{
	char p[UIDL_PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/lock", s->dir);
	s->lockfd = fs_open_nofollow(p, O_RDWR | O_CREAT, 0600);
	if (s->lockfd < 0) {
		seterr(err, errlen, "%s: %s", p, strerror(errno));
		return -1;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return 1;
		seterr(err, errlen, "%s: flock: %s", p, strerror(errno));
		return -1;
	}
	return 0;
}

/* Reads the store, cuts a torn last line and opens it for appending. */
static int load(struct uidl_store *s, char *err, size_t errlen)
{
	s->fd = fs_open_nofollow(s->path, O_RDWR | O_CREAT | O_APPEND, 0600);
	if (s->fd < 0) {
		seterr(err, errlen, "%s: %s", s->path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > UIDL_FILE_MAX) {
		seterr(err, errlen, "%s: not a regular file or too large", s->path);
		return -1;
	}
	size_t len = (size_t)st.st_size;
	char *buf = malloc(len + 1);
	if (!buf) {
		seterr(err, errlen, "%s: out of memory", s->path);
		return -1;
	}
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(s->fd, buf + got, len - got, (off_t)got);
		if (r <= 0) {
			free(buf);
			seterr(err, errlen, "%s: read: %s", s->path, r < 0 ? strerror(errno) : "short");
			return -1;
		}
		got += (size_t)r;
	}
	size_t good;
	int rc = parse(s, buf, len, &good, err, errlen);
	free(buf);
	if (rc < 0)
		return -1;
	if (good < strlen(UIDL_HEADER)) {
		/* New (or torn while new): write the header. */
		if (ftruncate(s->fd, 0) < 0 ||
		    write(s->fd, UIDL_HEADER, strlen(UIDL_HEADER)) != (ssize_t)strlen(UIDL_HEADER) ||
		    fsync(s->fd) < 0 || fs_fsync_dir(s->dir) < 0) {
			seterr(err, errlen, "%s: %s", s->path, strerror(errno));
			return -1;
		}
	} else if (good < len && (ftruncate(s->fd, (off_t)good) < 0 || fsync(s->fd) < 0)) {
		seterr(err, errlen, "%s: truncate: %s", s->path, strerror(errno));
		return -1;
	}
	return 0;
}

int uidl_open(struct uidl_store *s, const char *root, const char *account,
	char *err, size_t errlen)
{
	memset(s, 0, sizeof *s);
	s->lockfd = s->fd = -1;
	if (!fs_name_ok(account)) {
		seterr(err, errlen, "bad account name");
		return -1;
	}
	int n = snprintf(s->dir, sizeof s->dir, "%s/%s", root, account);
	int m = snprintf(s->path, sizeof s->path, "%s/uidls", s->dir);
	if (n < 0 || (size_t)n >= sizeof s->dir || m < 0 || (size_t)m >= sizeof s->path) {
		seterr(err, errlen, "%s: path too long", root);
		return -1;
	}
	if (fs_mkdir_p(s->dir, 0700) < 0) {
		seterr(err, errlen, "%s: %s", s->dir, strerror(errno));
		return -1;
	}
	int rc = take_lock(s, err, errlen);
	if (rc == 0 && table_rebuild(s, 0) < 0) {
		seterr(err, errlen, "out of memory");
		rc = -1;
	}
	if (rc == 0 && load(s, err, errlen) < 0)
		rc = -1;
	if (rc != 0)
		uidl_close(s);
	return rc;
}

void uidl_close(struct uidl_store *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->lockfd >= 0)
		close(s->lockfd);	/* releases the flock */
	free(s->e);
	free(s->slot);
	s->e = NULL;
	s->slot = NULL;
	s->n = s->cap = s->nslots = 0;
	s->fd = s->lockfd = -1;
}

int uidl_record(struct uidl_store *s, const char *id, char *err, size_t errlen)
{
	if (!id_ok(id)) {
		seterr(err, errlen, "invalid UIDL");
		return -1;
	}
	if (uidl_has(s, id))
		return 0;
	char line[UIDL_ID_MAX + 2];
	int n = snprintf(line, sizeof line, "%s\n", id);
	/* One write with O_APPEND, then fdatasync: the UIDL is on disk before
	 * the caller sends DELE. */
	if (write(s->fd, line, (size_t)n) != n || fdatasync(s->fd) < 0) {
		seterr(err, errlen, "%s: write: %s", s->path, strerror(errno));
		return -1;
	}
	if (add_mem(s, id) < 0) {
		seterr(err, errlen, "%s: %s", s->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* 1 when ids[i] is recorded or appears in ids[0..i). */
static int seen_before(const struct uidl_store *s, const char *const *ids, size_t i)
{
	if (uidl_has(s, ids[i]))
		return 1;
	for (size_t j = 0; j < i; j++)
		if (strcmp(ids[j], ids[i]) == 0)
			return 1;
	return 0;
}

int uidl_record_many(struct uidl_store *s, const char *const *ids, size_t n,
	char *err, size_t errlen)
{
	char *buf = malloc(n * (UIDL_ID_MAX + 1) + 1);
	size_t len = 0;
	int rc = -1;
	if (!buf) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!id_ok(ids[i])) {
			seterr(err, errlen, "invalid UIDL");
			goto out;
		}
		if (!seen_before(s, ids, i))
			len += (size_t)sprintf(buf + len, "%s\n", ids[i]);
	}
	/* One append, one fdatasync for the whole batch (a torn tail line
	 * is cut off at the next open; whole lines written are delivered). */
	if (len && (write(s->fd, buf, len) != (ssize_t)len || fdatasync(s->fd) < 0)) {
		seterr(err, errlen, "%s: write: %s", s->path, strerror(errno));
		goto out;
	}
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (!uidl_has(s, ids[i]) && add_mem(s, ids[i]) < 0) {
			seterr(err, errlen, "%s: %s", s->path, strerror(errno));
			rc = -1;
		}
out:
	free(buf);
	return rc;
}

/* Marks which entries survive a prune; returns how many do. */
static size_t prune_mark(struct uidl_store *s, int (*keep)(void *, const char *),
	void *arg, char *keepv)
{
	size_t guards = 0, kept = 0;
	for (size_t i = s->n; i-- > 0;) {
		if (uidl_is_guard(s->e[i].id))
			keepv[i] = ++guards <= UIDL_GUARDS_KEEP;	/* newest first */
		else
			keepv[i] = keep(arg, s->e[i].id) == 1;
		kept += (size_t)keepv[i];
	}
	return kept;
}

/* Writes the kept entries atomically and reopens the append descriptor. */
static int prune_write(struct uidl_store *s, const char *keepv, char *err, size_t errlen)
{
	size_t cap = strlen(UIDL_HEADER) + s->n * (UIDL_ID_MAX + 1) + 1, len = 0;
	char *buf = malloc(cap);
	if (!buf) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	len += (size_t)snprintf(buf, cap, "%s", UIDL_HEADER);
	for (size_t i = 0; i < s->n; i++)
		if (keepv[i])
			len += (size_t)snprintf(buf + len, cap - len, "%s\n", s->e[i].id);
	int rc = fs_write_atomic(s->path, buf, len, 0600);
	free(buf);
	if (rc < 0) {
		seterr(err, errlen, "%s: %s", s->path, strerror(errno));
		return -1;
	}
	int fd = fs_open_nofollow(s->path, O_WRONLY | O_APPEND, 0600);
	if (fd < 0) {
		seterr(err, errlen, "%s: %s", s->path, strerror(errno));
		return -1;
	}
	close(s->fd);
	s->fd = fd;
	return 0;
}

int uidl_prune(struct uidl_store *s, int (*keep)(void *arg, const char *id), void *arg,
	char *err, size_t errlen)
{
	if (s->n == 0)
		return 0;
	char *keepv = malloc(s->n);
	if (!keepv) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	size_t kept = prune_mark(s, keep, arg, keepv);
	if (kept == s->n) {
		free(keepv);
		return 0;
	}
	if (prune_write(s, keepv, err, errlen) < 0) {
		free(keepv);
		return -1;
	}
	size_t j = 0, before = s->n;
	for (size_t i = 0; i < s->n; i++)
		if (keepv[i])
			s->e[j++] = s->e[i];
	s->n = j;
	free(keepv);
	if (table_rebuild(s, s->n) < 0) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	return (int)(before - s->n);
}
