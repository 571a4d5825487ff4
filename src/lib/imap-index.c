/*
 * imap-index.c - stable UIDs for a Maildir directory (see imap-index.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "imap-index.h"

#define INDEX_MAGIC "postern-uids 1 "
#define INDEX_TRAILER "end "

/* One line of the index file. */
struct entry {
	uint32_t uid;
	const char *base;      /* into the file's buffer */
	int claimed;           /* a message on disk has it */
};

/* What the index file said. */
struct parsed {
	char *buf;
	struct entry *e;
	size_t n;
	int have_v;            /* UIDVALIDITY known (header or trailer) */
	uint32_t v, next;
	int missing;           /* no file at all */
	int damage;            /* lines skipped, header/trailer lost */
};

/* Messages found in new/ and cur/. */
struct scan {
	struct imap_msg *m;
	size_t n, cap;
	int err;
};

static int seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int imap_index_open(struct imap_index *ix, const char *dir)
{
	memset(ix, 0, sizeof *ix);
	if (strlen(dir) + sizeof "/" IMAP_INDEX_LOCK + 1 > sizeof ix->dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(ix->dir, dir);
	return 0;
}

static void msgs_free(struct imap_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].name);
	free(m);
}

void imap_index_free(struct imap_index *ix)
{
	msgs_free(ix->m, ix->n);
	ix->m = NULL;
	ix->n = ix->cap = 0;
}

long imap_index_find(const struct imap_index *ix, uint32_t uid)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ix->m[mid].uid == uid)
			return (long)mid;
		if (ix->m[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int imap_index_path(const struct imap_index *ix, size_t i, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s/%s", ix->dir, ix->m[i].in_new ? "new" : "cur",
			 ix->m[i].name);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* One of new/ and cur/: the file whose base name is message i's. */
static int relocate_in(struct imap_index *ix, size_t i, const char *sub)
{
	struct imap_msg *m = &ix->m[i];
	char path[IMAP_INDEX_PATH_MAX + 8];
	struct maildir_info info;
	struct dirent *de;
	DIR *d;
	int found = 0;

	snprintf(path, sizeof path, "%s/%s", ix->dir, sub);
	if (!(d = opendir(path)))
		return 0;
	while (!found && (de = readdir(d))) {
		char *name;

		if (strncmp(de->d_name, m->name, m->baselen) != 0 ||
		    (de->d_name[m->baselen] && de->d_name[m->baselen] != ':') ||
		    maildir_parse_name(de->d_name, &info) < 0 || !(name = strdup(de->d_name)))
			continue;
		free(m->name);
		m->name = name;
		m->in_new = strcmp(sub, "new") == 0;
		strcpy(m->flags, m->in_new ? "" : info.flags);
		found = 1;
	}
	closedir(d);
	return found;
}

int imap_index_relocate(struct imap_index *ix, size_t i)
{
	if (i >= ix->n)
		return -1;
	return relocate_in(ix, i, "cur") || relocate_in(ix, i, "new") ? 0 : -1;
}

/* ---- reading the file ---------------------------------------------------------- */

static int u32(const char **s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (**s < '0' || **s > '9')
		return -1;
	errno = 0;
	v = strtoull(*s, &end, 10);
	if (errno || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	*s = end;
	return 0;
}

/* "V N" at the end of a header or trailer line. */
static int two_numbers(const char *s, uint32_t *v, uint32_t *next)
{
	if (u32(&s, v) < 0 || *s++ != ' ' || u32(&s, next) < 0 || *s != '\0' || *v == 0 ||
	    *next == 0)
		return -1;
	return 0;
}

static int entry_line(const char *s, struct entry *e)
{
	struct maildir_info info;

	if (u32(&s, &e->uid) < 0 || e->uid == 0 || *s++ != ' ')
		return -1;
	if (maildir_parse_name(s, &info) < 0 || info.baselen != strlen(s))
		return -1;
	e->base = s;
	e->claimed = 0;
	return 0;
}

static char *slurp(const char *path, size_t *len, int *missing)
{
	int fd = fs_open_nofollow(path, O_RDONLY, 0);
	struct stat st;
	char *buf = NULL;
	ssize_t r;

	*missing = 0;
	if (fd < 0) {
		*missing = errno == ENOENT;
		return NULL;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= IMAP_INDEX_FILE_MAX &&
	    (buf = malloc((size_t)st.st_size + 1)) != NULL) {
		size_t got = 0;

		while (got < (size_t)st.st_size &&
		       (r = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
			got += (size_t)r;
		buf[got] = '\0';
		*len = got;
	}
	close(fd);
	return buf;
}

static int parse_file(const char *path, struct parsed *p)
{
	size_t len = 0, cap = 0;
	char *line, *next;
	int trailer = 0;

	memset(p, 0, sizeof *p);
	p->buf = slurp(path, &len, &p->missing);
	if (!p->buf) {
		p->damage = !p->missing;
		return p->missing || errno == EFBIG || errno == EINVAL || errno == ELOOP ? 0 : -1;
	}
	for (line = p->buf; line < p->buf + len; line = next) {
		char *nl = memchr(line, '\n', (size_t)(p->buf + len - line));
		uint32_t v, n;

		next = nl ? nl + 1 : p->buf + len;
		if (!nl) {   /* a last line without its newline: cut short */
			p->damage = 1;
			break;
		}
		*nl = '\0';
		if (line == p->buf && strncmp(line, INDEX_MAGIC, sizeof INDEX_MAGIC - 1) == 0 &&
		    two_numbers(line + sizeof INDEX_MAGIC - 1, &p->v, &p->next) == 0) {
			p->have_v = 1;
		} else if (strncmp(line, INDEX_TRAILER, sizeof INDEX_TRAILER - 1) == 0 &&
			   two_numbers(line + sizeof INDEX_TRAILER - 1, &v, &n) == 0) {
			trailer = 1;
			if (!p->have_v) {
				p->v = v;
				p->next = n;
				p->have_v = 1;
				p->damage = 1;
			} else if (v != p->v) {
				p->damage = 1;
			} else if (n > p->next) {
				p->next = n;
			}
		} else {
			struct entry e;

			if (entry_line(line, &e) < 0 || p->n >= IMAP_INDEX_MSGS_MAX) {
				p->damage = 1;
				continue;
			}
			if (p->n == cap) {
				struct entry *ne = realloc(p->e, (cap = cap ? 2 * cap : 64) * sizeof *ne);

				if (!ne)
					return -1;
				p->e = ne;
			}
			p->e[p->n++] = e;
		}
	}
	if (!trailer)
		p->damage = 1;
	return 0;
}

static int by_base(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->base, y->base);

	return c ? c : (x->uid > y->uid) - (x->uid < y->uid);
}

/* Sorts by base and drops a base seen before (UIDs given twice: merge()). */
static void clean_entries(struct parsed *p)
{
	size_t k = 0;

	if (p->n > 1)
		qsort(p->e, p->n, sizeof *p->e, by_base);
	for (size_t i = 0; i < p->n; i++) {
		if (k > 0 && strcmp(p->e[k - 1].base, p->e[i].base) == 0) {
			p->damage = 1;
			continue;
		}
		p->e[k++] = p->e[i];
	}
	p->n = k;
}

/* ---- listing the directory ----------------------------------------------------- */

static int scan_one(const char *sub, const char *name, void *arg)
{
	struct scan *s = arg;
	struct maildir_info info;
	struct imap_msg *m;

	if (maildir_parse_name(name, &info) < 0)
		return 0;   /* not a message: ignored */
	if (s->n >= IMAP_INDEX_MSGS_MAX) {
		s->err = E2BIG;
		return 1;
	}
	if (s->n == s->cap) {
		struct imap_msg *nm = realloc(s->m, (s->cap = s->cap ? 2 * s->cap : 64) * sizeof *nm);

		if (!nm) {
			s->err = ENOMEM;
			return 1;
		}
		s->m = nm;
	}
	m = &s->m[s->n];
	memset(m, 0, sizeof *m);
	if (!(m->name = strdup(name))) {
		s->err = ENOMEM;
		return 1;
	}
	m->baselen = info.baselen;
	m->in_new = strcmp(sub, "new") == 0;
	m->size = info.has_size ? info.size : 0;
	strcpy(m->flags, m->in_new ? "" : info.flags);
	s->n++;
	return 0;
}

static int cmp_base(const struct imap_msg *a, const struct imap_msg *b)
{
	size_t n = a->baselen < b->baselen ? a->baselen : b->baselen;
	int c = memcmp(a->name, b->name, n);

	return c ? c : (a->baselen > b->baselen) - (a->baselen < b->baselen);
}

static int msg_by_base(const void *a, const void *b)
{
	const struct imap_msg *x = a, *y = b;
	int c = cmp_base(x, y);

	return c ? c : x->in_new - y->in_new;   /* cur/ before new/ */
}

/* Lists new/ and cur/, sorted by base name, one message per base. */
static int scan_dir(const char *dir, struct scan *s)
{
	size_t k = 0;

	memset(s, 0, sizeof *s);
	if (maildir_list(dir, scan_one, s) < 0 || s->err) {
		if (s->err)
			errno = s->err;
		msgs_free(s->m, s->n);
		return -1;
	}
	if (s->n > 1)
		qsort(s->m, s->n, sizeof *s->m, msg_by_base);
	for (size_t i = 0; i < s->n; i++) {
		if (k > 0 && cmp_base(&s->m[k - 1], &s->m[i]) == 0) {
			free(s->m[i].name);   /* caught mid-rename: seen twice */
			continue;
		}
		s->m[k++] = s->m[i];
	}
	s->n = k;
	return 0;
}

/* The entry for message m, or NULL. */
static struct entry *lookup(struct parsed *p, const struct imap_msg *m)
{
	size_t lo = 0, hi = p->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strncmp(p->e[mid].base, m->name, m->baselen);

		if (c == 0 && p->e[mid].base[m->baselen] != '\0')
			c = 1;
		if (c == 0)
			return &p->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Adds the messages of `b` whose base `a` lacks to `a` (a second listing). */
static int scan_union(struct scan *a, struct scan *b)
{
	for (size_t i = 0; i < b->n; i++) {
		int found = 0;

		for (size_t j = 0; j < a->n && !found; j++)
			found = cmp_base(&a->m[j], &b->m[i]) == 0;
		if (found)
			continue;
		if (a->n == a->cap) {
			struct imap_msg *nm = realloc(a->m, (a->cap = a->cap * 2 + 8) * sizeof *nm);

			if (!nm)
				return -1;
			a->m = nm;
		}
		a->m[a->n++] = b->m[i];
		b->m[i].name = NULL;
	}
	if (a->n > 1)
		qsort(a->m, a->n, sizeof *a->m, msg_by_base);
	return 0;
}

/* ---- merging and writing ------------------------------------------------------- */

static int msg_by_uid(const void *a, const void *b)
{
	const struct imap_msg *x = a, *y = b;

	return (x->uid > y->uid) - (x->uid < y->uid);
}

static int msg_by_name(const void *a, const void *b)
{
	const struct imap_msg *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* UIDs for the messages of s; returns how many entries lost their message
 * or were new (*gone: lost), or -1. New messages get UIDs in name
 * (delivery) order. */
static long merge(struct parsed *p, struct scan *s, uint32_t *next, long *gone_out)
{
	struct imap_msg **fresh = calloc(s->n + 1, sizeof *fresh);
	size_t nfresh = 0;
	long gone = 0;

	if (!fresh)
		return -1;
	for (size_t i = 0; i < p->n; i++)
		p->e[i].claimed = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct entry *e = lookup(p, &s->m[i]);

		if (e) {
			e->claimed = 1;
			s->m[i].uid = e->uid;
			if (e->uid >= *next)
				*next = e->uid + 1;   /* the header lied: never reuse */
		} else {
			s->m[i].uid = 0;
		}
	}
	/* A UID given to two names (damage): the later one gets a new UID. */
	if (s->n > 1)
		qsort(s->m, s->n, sizeof *s->m, msg_by_uid);
	for (size_t i = 0; i < s->n; i++) {
		if (s->m[i].uid == 0 || (i > 0 && s->m[i].uid == s->m[i - 1].uid)) {
			if (s->m[i].uid)
				p->damage = 1;
			fresh[nfresh++] = &s->m[i];
		}
	}
	if (nfresh > 1)
		qsort(fresh, nfresh, sizeof *fresh, msg_by_name);
	for (size_t i = 0; i < nfresh; i++) {
		if (*next == UINT32_MAX) {
			free(fresh);
			errno = EOVERFLOW;
			return -1;
		}
		fresh[i]->uid = (*next)++;
	}
	free(fresh);
	if (s->n > 1)
		qsort(s->m, s->n, sizeof *s->m, msg_by_uid);
	for (size_t i = 0; i < p->n; i++)
		gone += !p->e[i].claimed;
	*gone_out = gone;
	return gone + (long)nfresh;
}

static int write_index(const char *path, uint32_t v, uint32_t next, const struct scan *s)
{
	size_t cap = 64, len = 0;
	char *buf;
	int r;

	for (size_t i = 0; i < s->n; i++)
		cap += s->m[i].baselen + 12;
	cap += 64;
	if (!(buf = malloc(cap)))
		return -1;
	len += (size_t)snprintf(buf, cap, INDEX_MAGIC "%u %u\n", v, next);
	for (size_t i = 0; i < s->n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%u %.*s\n", s->m[i].uid,
					(int)s->m[i].baselen, s->m[i].name);
	len += (size_t)snprintf(buf + len, cap - len, INDEX_TRAILER "%u %u\n", v, next);
	r = fs_write_atomic(path, buf, len, FS_MAIL_FILE_MODE);
	free(buf);
	return r;
}

/* A new UIDVALIDITY: the clock, above the one we knew (RFC 3501 2.3.1.1). */
static uint32_t new_validity(uint32_t old)
{
	uint32_t now = (uint32_t)time(NULL);

	return now > old ? now : old + 1;
}

/* Under the lock: read, list, merge, write back. */
static int sync_locked(struct imap_index *ix, const char *path, char *err, size_t errlen)
{
	struct parsed p;
	struct scan s, s2;
	uint32_t next;
	long changes, gone = 0;
	int rc = -1, reset = 0;

	if (parse_file(path, &p) < 0)
		return seterr(err, errlen, "%s: %s", path, strerror(errno));
	if (scan_dir(ix->dir, &s) < 0) {
		seterr(err, errlen, "%s: %s", ix->dir, strerror(errno));
		goto out_p;
	}
	if (!p.have_v) {   /* nothing to keep UIDs against */
		reset = !p.missing || ix->uidvalidity;
		p.v = new_validity(ix->uidvalidity);
		p.next = 1;
		p.n = 0;
	}
	clean_entries(&p);
	next = p.next;
	changes = merge(&p, &s, &next, &gone);
	if (gone > 0 && scan_dir(ix->dir, &s2) == 0) {
		/* Something vanished or appeared: list again, so a message caught
		 * between new/ and cur/ by a rename is not taken for expunged. */
		if (scan_union(&s, &s2) < 0) {
			msgs_free(s2.m, s2.n);
			seterr(err, errlen, "out of memory");
			goto out_s;
		}
		msgs_free(s2.m, s2.n);
		next = p.next;
		changes = merge(&p, &s, &next, &gone);
	}
	if (changes < 0) {
		seterr(err, errlen, "%s: %s", ix->dir, strerror(errno));
		goto out_s;
	}
	if ((changes > 0 || p.damage || p.missing || next != p.next) &&
	    write_index(path, p.v, next, &s) < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto out_s;
	}
	ix->repaired = (p.damage && !p.missing) || reset;
	snprintf(ix->repair, sizeof ix->repair, "%s",
		 reset ? "index unreadable: new UIDVALIDITY" : ix->repaired ? "damaged index repaired" : "");
	imap_index_free(ix);
	ix->m = s.m;
	ix->n = ix->cap = s.n;
	s.m = NULL;
	s.n = 0;
	ix->uidvalidity = p.v;
	ix->uidnext = next;
	rc = 0;
out_s:
	msgs_free(s.m, s.n);
out_p:
	free(p.e);
	free(p.buf);
	return rc;
}

/* Stats new/, cur/ and the index file into st; 1 when they are as old as
 * IMAP_INDEX_SETTLE_S (their mtimes can be trusted), else 0. */
static int take_stamp(const struct imap_index *ix, struct imap_index_stamp *st)
{
	static const char *const names[3] = { "new", "cur", IMAP_INDEX_FILE };
	char path[IMAP_INDEX_PATH_MAX + 32];
	struct stat sb;
	time_t now = time(NULL);
	int settled = 1;

	for (int k = 0; k < 3; k++) {
		snprintf(path, sizeof path, "%s/%s", ix->dir, names[k]);
		if (lstat(path, &sb) < 0)
			return 0;
		st[k].sec = sb.st_mtim.tv_sec;
		st[k].nsec = sb.st_mtim.tv_nsec;
		st[k].ino = sb.st_ino;
		settled &= now - sb.st_mtim.tv_sec >= IMAP_INDEX_SETTLE_S;
	}
	return settled;
}

int imap_index_sync(struct imap_index *ix, char *err, size_t errlen)
{
	char path[IMAP_INDEX_PATH_MAX + 32], lock[IMAP_INDEX_PATH_MAX + 32];
	struct imap_index_stamp st[3];
	int fd, rc, settled = take_stamp(ix, st);

	if (settled && ix->stamped && memcmp(st, ix->stamp, sizeof st) == 0) {
		ix->repaired = 0;
		return 0;   /* nothing moved since the last sync */
	}
	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, ix->dir);
	snprintf(lock, sizeof lock, "%s/" IMAP_INDEX_LOCK, ix->dir);
	fd = fs_open_nofollow(lock, O_RDWR | O_CREAT, FS_MAIL_FILE_MODE);
	if (fd < 0)
		return seterr(err, errlen, "%s: %s", lock, strerror(errno));
	if (flock(fd, LOCK_EX) < 0) {
		close(fd);
		return seterr(err, errlen, "%s: %s", lock, strerror(errno));
	}
	rc = sync_locked(ix, path, err, errlen);
	close(fd);   /* releases the lock */
	/* The stamp from before the listing: a change during it shows next time. */
	ix->stamped = rc == 0 && settled;
	if (ix->stamped)
		memcpy(ix->stamp, st, sizeof st);
	return rc;
}
