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

#define INDEX_MAGIC_V1 "postern-uids 1 "
#define INDEX_MAGIC "postern-uids 2 "
#define INDEX_TRAILER "end "
#define MODSEQ_MAX ((UINT64_C(1) << 63) - 1)   /* RFC 7162 3: 63 bits */
#define FRAME_MARK '\001'    /* a header/trailer line, once read */

/* One line of the index file. */
struct entry {
	uint32_t uid;
	uint64_t modseq;       /* 0: a version 1 line (flags unknown) */
	const char *flags;     /* as the file recorded them (into the buffer) */
	const char *base;      /* into the file's buffer */
	int claimed;           /* a message on disk has it */
	int touched;           /* changed by a transaction: flags_new, newms */
	char flags_new[MAILDIR_FLAGS_MAX + 1];
};

/* What the index file said. */
struct parsed {
	char *buf;
	struct entry *e;
	size_t n;
	int have_v;            /* UIDVALIDITY known (header or trailer) */
	int version;           /* 1 or 2 (0: unknown) */
	uint32_t v, next;
	uint64_t hms;          /* HIGHESTMODSEQ (0: unknown) */
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

static int u64(const char **s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (**s < '0' || **s > '9')
		return -1;
	errno = 0;
	v = strtoull(*s, &end, 10);
	if (errno || v > MODSEQ_MAX)
		return -1;
	*out = v;
	*s = end;
	return 0;
}

/* "V N" (version 1) or "V N HMS" (version 2) at the end of a header or
 * trailer line; the version it has, or -1. */
static int numbers(const char *s, uint32_t *v, uint32_t *next, uint64_t *hms)
{
	int version = 1;

	*hms = 0;
	if (u32(&s, v) < 0 || *s++ != ' ' || u32(&s, next) < 0 || *v == 0 || *next == 0)
		return -1;
	if (*s == ' ') {
		s++;
		if (u64(&s, hms) < 0 || *hms == 0)
			return -1;
		version = 2;
	}
	return *s == '\0' ? version : -1;
}

/* Version 2: "UID MODSEQ -FLAGS BASE"; version 1: "UID BASE". */
static int entry_line(char *s, int version, struct entry *e)
{
	struct maildir_info info;
	const char *q = s;

	memset(e, 0, sizeof *e);
	if (u32(&q, &e->uid) < 0 || e->uid == 0 || *q++ != ' ')
		return -1;
	if (version == 2) {
		char *sp;

		if (u64(&q, &e->modseq) < 0 || e->modseq == 0 || *q++ != ' ' || *q != '-' ||
		    !(sp = strchr(q, ' ')) || (size_t)(sp - q) > MAILDIR_FLAGS_MAX + 1)
			return -1;
		*sp = '\0';
		e->flags = q + 1;
		q = sp + 1;
	} else if (strchr(q, ' ')) {
		return -1;   /* a version 2 line: not to be read as version 1 */
	}
	if (maildir_parse_name(q, &info) < 0 || info.baselen != strlen(q))
		return -1;
	for (const char *f = e->flags; f && *f; f++)
		if (!((*f >= 'A' && *f <= 'Z') || (*f >= 'a' && *f <= 'z')))
			return -1;
	e->base = q;
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

/* The header or trailer of the file: 1 header, 2 trailer, 0 neither. */
static int frame_line(const char *line, int first, struct parsed *p)
{
	uint32_t v, n;
	uint64_t hms;
	int ver;

	if (first && (strncmp(line, INDEX_MAGIC, sizeof INDEX_MAGIC - 1) == 0 ||
		      strncmp(line, INDEX_MAGIC_V1, sizeof INDEX_MAGIC_V1 - 1) == 0)) {
		ver = numbers(line + sizeof INDEX_MAGIC - 1, &p->v, &p->next, &p->hms);
		/* the magic names the version: its numbers must agree */
		if (ver < 0 || ver != line[sizeof "postern-uids " - 1] - '0')
			return 0;
		p->version = ver;
		p->have_v = 1;
		return 1;
	}
	if (strncmp(line, INDEX_TRAILER, sizeof INDEX_TRAILER - 1) != 0 ||
	    (ver = numbers(line + sizeof INDEX_TRAILER - 1, &v, &n, &hms)) < 0)
		return 0;
	if (!p->have_v) {
		p->v = v;
		p->next = n;
		p->hms = hms;
		p->version = ver;
		p->have_v = 1;
		p->damage = 1;
	} else if (v != p->v || ver != p->version) {
		p->damage = 1;
	} else {
		p->next = n > p->next ? n : p->next;
		p->hms = hms > p->hms ? hms : p->hms;
	}
	return 2;
}

static int add_entry(struct parsed *p, const struct entry *e, size_t *cap)
{
	if (p->n == *cap) {
		struct entry *ne = realloc(p->e, (*cap = *cap ? 2 * *cap : 64) * sizeof *ne);

		if (!ne)
			return -1;
		p->e = ne;
	}
	p->e[p->n++] = *e;
	return 0;
}

/*
 * Entry lines are read in the version the header (or, when it is lost, the
 * trailer) names; a file whose version is unknown keeps no entries, so a
 * line is never read in the wrong format. A version 1 file (no modseqs) is
 * upgraded: its messages get MODSEQ 1, and the next write is version 2.
 */
static int parse_file(const char *path, struct parsed *p)
{
	size_t len = 0, cap = 0;
	char *line, *next;
	int trailer = 0, kind;

	memset(p, 0, sizeof *p);
	p->buf = slurp(path, &len, &p->missing);
	if (!p->buf) {
		p->damage = !p->missing;
		return p->missing || errno == EFBIG || errno == EINVAL || errno == ELOOP ? 0 : -1;
	}
	/* The frame first, so entries can be read when only the header is
	 * lost; frame lines are then marked FRAME_MARK. */
	for (line = p->buf; line < p->buf + len; line = next) {
		char *nl = memchr(line, '\n', (size_t)(p->buf + len - line));

		if (!nl) {   /* a last line without its newline: cut short */
			p->damage = 1;
			len = (size_t)(line - p->buf);
			break;
		}
		next = nl + 1;
		*nl = '\0';
		if ((kind = frame_line(line, line == p->buf, p)) > 0)
			line[0] = FRAME_MARK;
		trailer |= kind == 2;
	}
	for (line = p->buf; p->version && line < p->buf + len; line = next) {
		struct entry e;

		next = line + strlen(line) + 1;   /* before entry_line cuts the line */
		if (line[0] == FRAME_MARK)
			continue;
		if (entry_line(line, p->version, &e) < 0 || p->n >= IMAP_INDEX_MSGS_MAX) {
			p->damage = 1;
			continue;
		}
		if (add_entry(p, &e, &cap) < 0)
			return -1;
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

/* UIDs and modseqs for the messages of s; returns how many entries lost
 * their message, were new or changed flags (*gone: lost), or -1. New
 * messages get UIDs in name (delivery) order; new and changed ones modseq
 * 0, for the caller to give the sync's new modseq. */
static long merge(struct parsed *p, struct scan *s, uint32_t *next, long *gone_out)
{
	struct imap_msg **fresh = calloc(s->n + 1, sizeof *fresh);
	size_t nfresh = 0;
	long gone = 0, nflags = 0;

	if (!fresh)
		return -1;
	for (size_t i = 0; i < p->n; i++)
		p->e[i].claimed = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct entry *e = lookup(p, &s->m[i]);

		s->m[i].uid = 0;
		s->m[i].modseq = 0;   /* 0: gets the sync's new modseq */
		if (!e)
			continue;
		e->claimed = 1;
		s->m[i].uid = e->uid;
		if (e->uid >= *next)
			*next = e->uid + 1;   /* the header lied: never reuse */
		if (!e->modseq)
			s->m[i].modseq = 1;   /* version 1: no history to keep */
		else if (strcmp(e->flags, s->m[i].flags) == 0)
			s->m[i].modseq = e->modseq;
		else
			nflags++;             /* changed by someone else (RFC 7162 3.1) */
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
	return gone + nflags + (long)nfresh;
}

/* One line of the file to write. */
struct row {
	uint32_t uid;
	uint64_t modseq;
	const char *flags, *base;
	size_t baselen;
};

static int row_by_uid(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return (x->uid > y->uid) - (x->uid < y->uid);
}

/* Writes the index (version 2) from rows sorted by UID. */
static int write_rows(const char *path, uint32_t v, uint32_t next, uint64_t hms,
		      const struct row *r, size_t n, int durable)
{
	size_t cap = 128, len = 0;
	char *buf;
	int rc;

	for (size_t i = 0; i < n; i++)
		cap += r[i].baselen + strlen(r[i].flags) + 36;
	if (!(buf = malloc(cap)))
		return -1;
	len += (size_t)snprintf(buf, cap, INDEX_MAGIC "%u %u %llu\n", v, next,
				(unsigned long long)hms);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%u %llu -%s %.*s\n", r[i].uid,
					(unsigned long long)r[i].modseq, r[i].flags,
					(int)r[i].baselen, r[i].base);
	len += (size_t)snprintf(buf + len, cap - len, INDEX_TRAILER "%u %u %llu\n", v, next,
				(unsigned long long)hms);
	rc = durable ? fs_write_atomic(path, buf, len, FS_MAIL_FILE_MODE)
		     : fs_write_replace(path, buf, len, FS_MAIL_FILE_MODE);
	free(buf);
	return rc;
}

static int write_index(const char *path, uint32_t v, uint32_t next, uint64_t hms,
		       const struct scan *s, int durable)
{
	struct row *r = malloc((s->n + 1) * sizeof *r);
	int rc;

	if (!r)
		return -1;
	for (size_t i = 0; i < s->n; i++)
		r[i] = (struct row){ s->m[i].uid, s->m[i].modseq, s->m[i].flags, s->m[i].name,
				     s->m[i].baselen };
	rc = write_rows(path, v, next, hms, r, s->n, durable);
	free(r);
	return rc;
}

/* The largest modseq the file knows (the header's, or an entry's above it). */
static uint64_t file_hms(const struct parsed *p)
{
	uint64_t hms = p->hms ? p->hms : 1;

	for (size_t i = 0; i < p->n; i++)
		if (p->e[i].modseq > hms)
			hms = p->e[i].modseq;
	return hms;
}

/*
 * The modseq after `hms`: hms + 1, or the clock in microseconds when that
 * is larger. Flag changes are not fsynced (nor are the renames that make
 * them), so a crash may bring back an older index; a modseq taken from
 * the clock is still above every one given before the crash, and a
 * client's CHANGEDSINCE never misses a change (RFC 7162 3.1.2.1: modseqs
 * only grow).
 */
static uint64_t next_modseq(uint64_t hms)
{
	struct timespec ts;
	uint64_t now = 0;

	if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec > 0)
		now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (hms >= MODSEQ_MAX)
		return MODSEQ_MAX;
	return now > hms + 1 && now <= MODSEQ_MAX ? now : hms + 1;
}

/* One new modseq for everything this sync found changed (RFC 7162 3.1:
 * several messages changed at once may share one). */
static uint64_t give_modseqs(struct scan *s, uint64_t hms, long changes)
{
	if (changes <= 0 || hms >= MODSEQ_MAX)
		return hms;
	hms = next_modseq(hms);
	for (size_t i = 0; i < s->n; i++)
		if (!s->m[i].modseq)
			s->m[i].modseq = hms;
	return hms;
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
	uint64_t hms;
	long changes, gone = 0;
	int rc = -1, reset = 0, durable;

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
		p.hms = ix->highestmodseq;   /* a new UIDVALIDITY; modseqs may go on */
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
	hms = give_modseqs(&s, file_hms(&p), changes);
	/* New UIDs (or a repaired file) must survive a crash: fsynced. Flag
	 * changes and expunges alone need not (see next_modseq). */
	durable = next != p.next || p.damage || p.missing || p.version != 2 || reset;
	if ((changes > 0 || durable || hms != p.hms) &&
	    write_index(path, p.v, next, hms, &s, durable) < 0) {
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
	ix->highestmodseq = hms;
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

/* ---- this process's own changes -------------------------------------------------- */

struct imap_index_txn {
	struct parsed p;
	int fd;                     /* the lock */
	int usable;                 /* the file is a sound version 2 index */
	int dirty;
	uint64_t newms;
	char path[IMAP_INDEX_PATH_MAX + 32];
};

struct imap_index_txn *imap_index_begin(struct imap_index *ix, char *err, size_t errlen)
{
	struct imap_index_txn *t = calloc(1, sizeof *t);
	char lock[IMAP_INDEX_PATH_MAX + 32];

	if (!t) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(t->path, sizeof t->path, "%s/" IMAP_INDEX_FILE, ix->dir);
	snprintf(lock, sizeof lock, "%s/" IMAP_INDEX_LOCK, ix->dir);
	t->fd = fs_open_nofollow(lock, O_RDWR | O_CREAT, FS_MAIL_FILE_MODE);
	if (t->fd < 0 || flock(t->fd, LOCK_EX) < 0 || parse_file(t->path, &t->p) < 0) {
		seterr(err, errlen, "%s: %s", lock, strerror(errno));
		if (t->fd >= 0)
			close(t->fd);
		free(t->p.e);
		free(t->p.buf);
		free(t);
		return NULL;
	}
	clean_entries(&t->p);
	t->usable = t->p.version == 2 && !t->p.damage && t->p.have_v &&
		    t->p.v == ix->uidvalidity;
	t->newms = file_hms(&t->p);
	if (ix->highestmodseq > t->newms)
		t->newms = ix->highestmodseq;
	t->newms = next_modseq(t->newms);
	return t;
}

uint64_t imap_index_txn_modseq(struct imap_index_txn *t, const struct imap_index *ix, size_t i)
{
	struct entry *e = t->usable && i < ix->n ? lookup(&t->p, &ix->m[i]) : NULL;

	if (!e)
		return t->newms;          /* unknown: take it as changed */
	if (e->touched)
		return t->newms;
	if (strcmp(e->flags, ix->m[i].flags) != 0)
		return t->newms;          /* renamed by someone the file has not seen yet */
	return e->modseq;
}

void imap_index_txn_touch(struct imap_index_txn *t, struct imap_index *ix, size_t i)
{
	struct entry *e = t->usable && i < ix->n ? lookup(&t->p, &ix->m[i]) : NULL;

	if (i >= ix->n)
		return;
	ix->m[i].modseq = t->newms;
	t->dirty = 1;
	if (e) {
		e->touched = 1;
		snprintf(e->flags_new, sizeof e->flags_new, "%s", ix->m[i].flags);
	}
}

/* The file's entries, the touched ones changed, as rows by UID. */
static int txn_write(struct imap_index_txn *t)
{
	struct row *r = malloc((t->p.n + 1) * sizeof *r);
	int rc;

	if (!r)
		return -1;
	for (size_t i = 0; i < t->p.n; i++) {
		const struct entry *e = &t->p.e[i];

		r[i] = (struct row){ e->uid, e->touched ? t->newms : e->modseq,
				     e->touched ? e->flags_new : e->flags, e->base, strlen(e->base) };
	}
	if (t->p.n > 1)
		qsort(r, t->p.n, sizeof *r, row_by_uid);
	rc = write_rows(t->path, t->p.v, t->p.next, t->newms, r, t->p.n, 0);
	free(r);
	return rc;
}

int imap_index_commit(struct imap_index *ix, struct imap_index_txn *t, char *err, size_t errlen)
{
	int rc = 0;

	if (!t)
		return 0;
	/* A damaged or older file: the next sync sees the renames and gives
	 * them modseqs (higher ones: a client only refetches). */
	if (t->dirty && t->usable && txn_write(t) < 0)
		rc = seterr(err, errlen, "%s: %s", t->path, strerror(errno));
	if (t->dirty && t->newms > ix->highestmodseq)
		ix->highestmodseq = t->newms;
	close(t->fd);
	free(t->p.e);
	free(t->p.buf);
	free(t);
	return rc;
}

/* The file's entries plus one new message, as rows by UID (durable). */
static int add_write(struct parsed *p, const char *path, const struct maildir_info *info,
		     const char *name, uint32_t uid, uint64_t ms)
{
	struct row *r = malloc((p->n + 1) * sizeof *r);
	int rc;

	if (!r)
		return -1;
	for (size_t i = 0; i < p->n; i++)
		r[i] = (struct row){ p->e[i].uid, p->e[i].modseq, p->e[i].flags, p->e[i].base,
				     strlen(p->e[i].base) };
	r[p->n] = (struct row){ uid, ms, info->flags, name, info->baselen };
	qsort(r, p->n + 1, sizeof *r, row_by_uid);
	rc = write_rows(path, p->v, uid + 1, ms, r, p->n + 1, 1);
	free(r);
	return rc;
}

int imap_index_add(const char *dir, const char *name, uint32_t *uid, uint32_t *validity)
{
	char path[IMAP_INDEX_PATH_MAX + 32], lock[IMAP_INDEX_PATH_MAX + 32];
	struct maildir_info info;
	struct parsed p;
	int fd, rc = -1;

	*uid = *validity = 0;
	if (maildir_parse_name(name, &info) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, dir);
	snprintf(lock, sizeof lock, "%s/" IMAP_INDEX_LOCK, dir);
	if ((fd = fs_open_nofollow(lock, O_RDWR | O_CREAT, FS_MAIL_FILE_MODE)) < 0)
		return -1;
	if (flock(fd, LOCK_EX) == 0 && parse_file(path, &p) == 0) {
		/* Only a sound version 2 file is extended; else a full sync. */
		struct imap_msg m = { .name = (char *)name, .baselen = info.baselen };
		struct entry *e;
		uint32_t next = p.next;

		clean_entries(&p);
		for (size_t i = 0; i < p.n; i++)
			if (p.e[i].uid >= next)
				next = p.e[i].uid + 1;   /* the header lied: never reuse */
		if (p.version != 2 || p.damage || !p.have_v || next == UINT32_MAX) {
			rc = -1;
		} else if ((e = lookup(&p, &m)) != NULL) {   /* a sync named it already */
			*uid = e->uid;
			rc = 0;
		} else if (add_write(&p, path, &info, name, next,
				     next_modseq(file_hms(&p))) == 0) {
			*uid = next;
			rc = 0;
		}
		*validity = rc == 0 ? p.v : 0;
		free(p.e);
		free(p.buf);
	}
	close(fd);
	return rc;
}
