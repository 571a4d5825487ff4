/*
 * imap-index.c - stable UIDs for a Maildir directory (see imap-index.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "imap-index.h"

#define INDEX_MAGIC_ANY "postern-uids "
#define INDEX_VERSION 3       /* the version written */
#define INDEX_TRAILER "end "
#define LOC_NEW "new"         /* the flags field of a message in new/ */
#define MODSEQ_MAX ((UINT64_C(1) << 63) - 1)   /* RFC 7162 3: 63 bits */
#define FRAME_MARK '\001'    /* a header/trailer line, once read */
#define JOURNAL_MIN 256       /* records always allowed before a compaction */
#define JOURNAL_PER_MSG 2     /* ... plus one per this many messages */
#define RECORD_MAX (IMAP_INDEX_PATH_MAX + 64)   /* bytes of one record line */
#define WATCH_MAX 64          /* mailboxes watched per process (then LRU) */
#define WATCH_EVENTS_MAX 16384 /* bytes of unchecked events per mailbox */
#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | \
		    IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
#define FILED_KNOWN (UINT64_C(1) << 63)
#define FILED_NEW (UINT64_C(1) << 62)

/* One line of the index file. */
struct entry {
	uint32_t uid;
	uint64_t modseq;       /* 0: a version 1 line (flags unknown) */
	const char *flags;     /* as the file recorded them (into the buffer) */
	const char *base;      /* into the file's buffer */
	int in_new;            /* 1 new/, 0 cur/, -1 unknown (versions 1, 2) */
	int dead;              /* expunged by a record */
	int claimed;           /* a message on disk has it */
	int touched;           /* changed by a transaction: flags_new, newms */
	int gone;              /* expunged by a transaction */
	char flags_new[MAILDIR_FLAGS_MAX + 1];
};

/* What the index file said. */
struct parsed {
	char *buf;
	struct entry *e;
	size_t n, cap;
	int have_v;            /* UIDVALIDITY known (header or trailer) */
	int version;           /* 1, 2 or 3 (0: unknown) */
	uint32_t v, next;
	uint64_t hms;          /* HIGHESTMODSEQ (0: unknown) */
	uint64_t gen;          /* compactions so far (version 3) */
	int missing;           /* no file at all */
	int damage;            /* lines skipped, header/trailer lost */
	int torn;              /* the last line has no newline (a crash) */
	int unsorted;          /* entries not in UID order (damage) */
	size_t nrec;           /* journal records applied */
	uint32_t lost_records; /* unreadable lines among the records */
	size_t size, good;     /* bytes in the file; in its complete lines */
};

/* A growing text buffer; err sticks after a failed allocation. */
struct text {
	char *b;
	size_t len, cap;
	int err;
};

/* The inotify watch of one mailbox's new/ and cur/ (see watch_clean). */
struct watch {
	char *dir;                 /* NULL: a free slot */
	uint64_t ino[2];           /* of new/ and cur/ when watched */
	int wd[2];
	uint64_t dirty, clean;     /* dirty != clean: only a listing can tell */
	struct text ev;            /* events not yet checked */
	uint64_t used;
	uint64_t serial;           /* which use of the slot */
};

/* What a listing accounts for: the events of w seen before it. */
struct watch_token {
	struct watch *w;
	uint64_t serial, dirty;
	size_t len;
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
	ix->jvalid = 0;
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

/* "V N" (version 1), "V N HMS" (version 2) or "V N HMS GEN" (version 3)
 * at the end of a header or trailer line; the version it has, or -1. */
static int numbers(const char *s, uint32_t *v, uint32_t *next, uint64_t *hms, uint64_t *gen)
{
	int version = 1;

	*hms = *gen = 0;
	if (u32(&s, v) < 0 || *s++ != ' ' || u32(&s, next) < 0 || *v == 0 || *next == 0)
		return -1;
	if (*s == ' ') {
		s++;
		if (u64(&s, hms) < 0 || *hms == 0)
			return -1;
		version = 2;
	}
	if (*s == ' ') {
		s++;
		if (u64(&s, gen) < 0)
			return -1;
		version = 3;
	}
	return *s == '\0' ? version : -1;
}

/* Version 2: "UID MODSEQ -FLAGS BASE"; version 3 the same, or "UID MODSEQ
 * new BASE" for a message in new/; version 1: "UID BASE". */
static int entry_line(char *s, int version, struct entry *e)
{
	struct maildir_info info;
	const char *q = s;

	memset(e, 0, sizeof *e);
	e->in_new = -1;
	if (u32(&q, &e->uid) < 0 || e->uid == 0 || *q++ != ' ')
		return -1;
	if (version >= 2) {
		char *sp;

		if (u64(&q, &e->modseq) < 0 || e->modseq == 0 || *q++ != ' ' ||
		    !(sp = strchr(q, ' ')) || (size_t)(sp - q) > MAILDIR_FLAGS_MAX + 1)
			return -1;
		*sp = '\0';
		if (version == 3 && strcmp(q, LOC_NEW) == 0) {
			e->flags = "";
			e->in_new = 1;
		} else if (*q == '-') {
			e->flags = q + 1;
			e->in_new = version == 3 ? 0 : -1;
		} else {
			return -1;
		}
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
	uint64_t hms, gen;
	int ver;

	if (first && strncmp(line, INDEX_MAGIC_ANY, sizeof INDEX_MAGIC_ANY - 1) == 0) {
		const char *d = line + sizeof INDEX_MAGIC_ANY - 1;

		/* the magic names the version: its numbers must agree */
		if (*d < '1' || *d > '0' + INDEX_VERSION || d[1] != ' ' ||
		    (ver = numbers(d + 2, &p->v, &p->next, &p->hms, &p->gen)) != *d - '0')
			return 0;
		p->version = ver;
		p->have_v = 1;
		return 1;
	}
	if (strncmp(line, INDEX_TRAILER, sizeof INDEX_TRAILER - 1) != 0 ||
	    (ver = numbers(line + sizeof INDEX_TRAILER - 1, &v, &n, &hms, &gen)) < 0)
		return 0;
	if (!p->have_v) {
		p->v = v;
		p->next = n;
		p->hms = hms;
		p->gen = gen;
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

static int add_entry(struct parsed *p, const struct entry *e)
{
	if (p->n == p->cap) {
		struct entry *ne = realloc(p->e, (p->cap = p->cap ? 2 * p->cap : 64) * sizeof *ne);

		if (!ne)
			return -1;
		p->e = ne;
	}
	if (p->n > 0 && p->e[p->n - 1].uid >= e->uid)
		p->unsorted = 1;
	p->e[p->n++] = *e;
	return 0;
}

/* The live entry with `uid` (binary search while the entries are in UID
 * order, as a sound file keeps them), or NULL. */
static struct entry *by_uid(struct parsed *p, uint32_t uid)
{
	size_t lo = 0, hi = p->n;

	if (p->unsorted) {
		for (size_t i = 0; i < p->n; i++)
			if (p->e[i].uid == uid && !p->e[i].dead)
				return &p->e[i];
		return NULL;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->e[mid].uid == uid)
			return p->e[mid].dead ? NULL : &p->e[mid];
		if (p->e[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * One journal record (version 3, after the trailer): "+ ENTRY" a message
 * added, "= ENTRY" its flags or place changed, "- UID MODSEQ" expunged.
 * Applied in file order to the entries read so far. -1: unreadable, or a
 * record that contradicts them (damage).
 */
static int record_line(char *line, struct parsed *p)
{
	struct entry e, *old;
	const char *q = line + 2;

	if (line[1] != ' ')
		return -1;
	if (line[0] == '-') {
		if (u32(&q, &e.uid) < 0 || *q++ != ' ' || u64(&q, &e.modseq) < 0 || *q ||
		    !(old = by_uid(p, e.uid)))
			return -1;
		old->dead = 1;
	} else if (entry_line(line + 2, 3, &e) < 0) {
		return -1;
	} else if (line[0] == '+') {
		if (e.uid < p->next || add_entry(p, &e) < 0)
			return -1;   /* a UID below UIDNEXT was never given by a record */
	} else if (line[0] == '=' && (old = by_uid(p, e.uid)) != NULL) {
		if (strcmp(old->base, e.base) != 0)
			return -1;
		*old = e;
	} else {
		return -1;
	}
	if (e.uid >= p->next)
		p->next = e.uid + 1;
	if (e.modseq > p->hms)
		p->hms = e.modseq;
	p->nrec++;
	return 0;
}

/* Drops the entries expunged by records. */
static void drop_dead(struct parsed *p)
{
	size_t k = 0;

	for (size_t i = 0; i < p->n; i++)
		if (!p->e[i].dead)
			p->e[k++] = p->e[i];
	p->n = k;
}

/* Finds the frame (header, trailer) and cuts the buffer into lines; frame
 * lines are marked FRAME_MARK. Returns the length of the complete lines. */
static size_t frame_pass(struct parsed *p, size_t len, int *trailer)
{
	char *line, *next;
	int kind;

	for (line = p->buf; line < p->buf + len; line = next) {
		char *nl = memchr(line, '\n', (size_t)(p->buf + len - line));

		if (!nl) {   /* a last line without its newline: cut short */
			p->torn = 1;
			return (size_t)(line - p->buf);
		}
		next = nl + 1;
		*nl = '\0';
		if ((kind = frame_line(line, line == p->buf, p)) > 0)
			line[0] = FRAME_MARK;
		*trailer |= kind == 2;
	}
	return len;
}

/* One line after the header: an entry (only before the first record), or
 * a journal record (version 3). */
static int body_line(char *line, struct parsed *p, int *records)
{
	struct entry e;

	if (p->version == 3 && strchr("+=-", line[0]) && line[0]) {
		*records = 1;
		return record_line(line, p);
	}
	if (*records || entry_line(line, p->version, &e) < 0 || p->n >= IMAP_INDEX_MSGS_MAX)
		return -1;
	return add_entry(p, &e) < 0 ? -2 : 0;
}

/*
 * Entry lines are read in the version the header (or, when it is lost, the
 * trailer) names; a file whose version is unknown keeps no entries, so a
 * line is never read in the wrong format. A version 1 file (no modseqs) is
 * upgraded: its messages get MODSEQ 1, and the next write is version 3.
 * In version 3 the journal records follow, applied in order; a torn last
 * line (a crash during an append) is ignored and is not damage.
 */
static int parse_file(const char *path, struct parsed *p)
{
	size_t len = 0;
	char *line, *next;
	int trailer = 0, records = 0, rc;

	memset(p, 0, sizeof *p);
	p->buf = slurp(path, &len, &p->missing);
	if (!p->buf) {
		p->damage = !p->missing;
		return p->missing || errno == EFBIG || errno == EINVAL || errno == ELOOP ? 0 : -1;
	}
	p->size = len;
	p->good = len = frame_pass(p, len, &trailer);
	if (p->torn && p->version != 3)
		p->damage = 1;   /* versions 1 and 2 were never appended to */
	for (line = p->buf; p->version && line < p->buf + len; line = next) {
		next = line + strlen(line) + 1;   /* before entry_line cuts the line */
		if (line[0] == FRAME_MARK) {
			/* version 3: after the trailer only records (an entry is damage) */
			records |= p->version == 3 && line != p->buf;
			continue;
		}
		if ((rc = body_line(line, p, &records)) == -2)
			return -1;
		if (rc < 0) {
			p->damage = 1;
			/* an unreadable record may have given a UID: never reuse it */
			p->lost_records += records;
		}
	}
	drop_dead(p);
	if (p->lost_records && p->have_v)
		p->next = p->next > UINT32_MAX - p->lost_records ? UINT32_MAX
								 : p->next + p->lost_records;
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

/* ---- what changed new/ and cur/: inotify, per process ------------------------------ */

/*
 * One inotify instance per process watches new/ and cur/ of the mailboxes
 * it synced lately. Every event names a file that appeared or went; it is
 * "explained" when the index file already says so (the file is in that
 * place with those flags, or is not). Postern's own changes under the
 * index lock (STORE, \Seen, APPEND's record) are explained by their
 * records; anything else (deliver.c writing new/, Dovecot or a user
 * renaming or removing a file, imapd's own EXPUNGE/MOVE/COPY, APPEND's file
 * before its record) is not, and the next sync lists the directories. A
 * lost event queue (IN_Q_OVERFLOW), a directory replaced, a watch that
 * cannot be had: listing, as without inotify.
 */
static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static int watch_fd = -1;
static pid_t watch_pid;           /* the process that made watch_fd (fork) */
static struct watch watches[WATCH_MAX];
static uint64_t watch_clock;      /* for least-recently-used eviction */

static uint64_t filed_mask(const char *flags, int in_new)
{
	uint64_t m = FILED_KNOWN | (in_new > 0 ? FILED_NEW : 0);

	for (; *flags; flags++) {
		if (*flags >= 'A' && *flags <= 'Z')
			m |= UINT64_C(1) << (*flags - 'A');
		else if (*flags >= 'a' && *flags <= 'z')
			m |= UINT64_C(1) << (26 + *flags - 'a');
	}
	return m;
}

static void watch_drop(struct watch *w)
{
	for (int k = 0; k < 2; k++) {
		int shared = 0;

		for (size_t j = 0; j < WATCH_MAX; j++)
			shared |= &watches[j] != w && watches[j].dir &&
				  (watches[j].wd[0] == w->wd[k] || watches[j].wd[1] == w->wd[k]);
		if (w->wd[k] >= 0 && !shared)
			inotify_rm_watch(watch_fd, w->wd[k]);
	}
	free(w->dir);
	free(w->ev.b);
	memset(w, 0, sizeof *w);
}

/* The inotify instance of this process (a child after fork makes its own). */
static int watch_init(void)
{
	if (watch_fd >= 0 && watch_pid == getpid())
		return 0;
	if (watch_fd >= 0) {   /* inherited: the parent's events are not ours */
		close(watch_fd);
		for (size_t j = 0; j < WATCH_MAX; j++) {
			free(watches[j].dir);
			free(watches[j].ev.b);
		}
		memset(watches, 0, sizeof watches);
	}
	watch_pid = getpid();
	watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	return watch_fd < 0 ? -1 : 0;
}

/* Room for `need` more bytes in t. */
static int grow(struct text *t, size_t need)
{
	char *nb;

	if (t->cap - t->len >= need)
		return 0;
	if (!(nb = realloc(t->b, t->len + need + 1024)))
		return -1;
	t->b = nb;
	t->cap = t->len + need + 1024;
	return 0;
}

/* One event into its watch's pending list: "<sub><exists><name>\0". */
static void watch_event(const struct inotify_event *ev)
{
	for (size_t j = 0; j < WATCH_MAX; j++) {
		struct watch *w = &watches[j];
		size_t need = ev->len + 3;
		int k = w->wd[0] == ev->wd ? 0 : w->wd[1] == ev->wd ? 1 : -1;

		if (!w->dir || (k < 0 && !(ev->mask & IN_Q_OVERFLOW)))
			continue;
		if (ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
			w->dirty++;
			if (k >= 0 && (ev->mask & IN_IGNORED))
				w->wd[k] = -1;
			continue;
		}
		if (!ev->len)
			continue;
		if (w->ev.len + need > WATCH_EVENTS_MAX || grow(&w->ev, need) < 0) {
			w->dirty++;   /* too many to check one by one: list */
			w->ev.len = 0;
			continue;
		}
		w->ev.b[w->ev.len++] = k ? 'c' : 'n';
		w->ev.b[w->ev.len++] = ev->mask & (IN_CREATE | IN_MOVED_TO) ? '1' : '0';
		memcpy(w->ev.b + w->ev.len, ev->name, strnlen(ev->name, ev->len));
		w->ev.len += strnlen(ev->name, ev->len);
		w->ev.b[w->ev.len++] = '\0';
	}
}

/* Reads every queued event (non-blocking) into the watches. */
static void watch_drain(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t r;

	while ((r = read(watch_fd, buf, sizeof buf)) > 0) {
		for (char *q = buf; q + sizeof(struct inotify_event) <= buf + r;) {
			const struct inotify_event *ev = (const void *)q;

			watch_event(ev);
			q += sizeof *ev + ev->len;
		}
	}
}

static struct watch *watch_find(const char *dir)
{
	for (size_t j = 0; j < WATCH_MAX; j++)
		if (watches[j].dir && strcmp(watches[j].dir, dir) == 0)
			return &watches[j];
	return NULL;
}

/* (Re)watches new/ and cur/ of dir; the inodes its stamp saw. */
static int watch_add(struct watch *w, const char *dir, const struct imap_index_stamp *st)
{
	static const char *const subs[2] = { "new", "cur" };
	char path[IMAP_INDEX_PATH_MAX + 8];

	for (int k = 0; k < 2; k++) {
		snprintf(path, sizeof path, "%s/%s", dir, subs[k]);
		w->wd[k] = inotify_add_watch(watch_fd, path, WATCH_MASK);
		w->ino[k] = st[k].ino;
		if (w->wd[k] < 0 || !st[k].ino)
			return -1;
	}
	w->dirty++;   /* what happened before the watch is known only by a listing */
	return 0;
}

/* The watch of dir, made (evicting the least recently used) when new, or
 * NULL (no inotify). Under watch_mu. */
static struct watch *watch_get(const char *dir, const struct imap_index_stamp *st)
{
	struct watch *w = watch_find(dir), *lru = &watches[0];

	if (watch_init() < 0)
		return NULL;
	watch_drain();
	if (!w) {
		for (size_t j = 0; j < WATCH_MAX && lru->dir; j++)
			if (!watches[j].dir || watches[j].used < lru->used)
				lru = &watches[j];
		if (lru->dir)
			watch_drop(lru);
		w = lru;
		w->wd[0] = w->wd[1] = -1;
		w->serial = ++watch_clock;
		if (!(w->dir = strdup(dir)))
			return NULL;
	}
	w->used = ++watch_clock;
	if ((w->ino[0] != st[0].ino || w->ino[1] != st[1].ino || w->wd[0] < 0 || w->wd[1] < 0) &&
	    watch_add(w, dir, st) < 0) {
		watch_drop(w);
		return NULL;
	}
	return w;
}

/* Before a listing of dir: what it will account for. */
static void watch_before_listing(const char *dir, const struct imap_index_stamp *st,
				 struct watch_token *tok)
{
	struct watch *w;

	memset(tok, 0, sizeof *tok);
	pthread_mutex_lock(&watch_mu);
	if ((w = watch_get(dir, st)) != NULL) {
		tok->w = w;
		tok->serial = w->serial;
		tok->dirty = w->dirty;
		tok->len = w->ev.len;
	}
	pthread_mutex_unlock(&watch_mu);
}

/* After a listing: the events seen before it are accounted for; the watch
 * is clean unless something made it dirty meanwhile. */
static void watch_after_listing(const struct watch_token *tok)
{
	struct watch *w = tok->w;

	pthread_mutex_lock(&watch_mu);
	if (w && w->dir && w->serial == tok->serial && w->dirty == tok->dirty &&
	    w->ev.len >= tok->len) {
		w->clean = tok->dirty;
		if (tok->len)
			memmove(w->ev.b, w->ev.b + tok->len, w->ev.len - tok->len);
		w->ev.len -= tok->len;
	}
	pthread_mutex_unlock(&watch_mu);
}

/* Whether the file (as the caught-up view says it) agrees with event e,
 * the last one for its name: present in that place with those flags, or
 * not. A name that is not a message's is ignored, as by a listing. */
static int event_explained(const struct imap_index *ix, const char *e)
{
	struct maildir_info info;
	const char *name = e + 2;
	int in_new = e[0] == 'n', hit = 0;
	uint64_t mask;

	if (maildir_parse_name(name, &info) < 0)
		return 1;
	mask = filed_mask(in_new ? "" : info.flags, in_new);
	for (size_t i = 0; i < ix->n && !hit; i++)
		hit = ix->m[i].baselen == info.baselen &&
		      memcmp(ix->m[i].name, name, info.baselen) == 0 && ix->m[i].filed == mask;
	return e[1] == '1' ? hit : !hit;
}

/* Every pending event of w explained (only the last per name counts)? */
static int events_explained(const struct watch *w, const struct imap_index *ix)
{
	const char *end;

	if (!w->ev.len)
		return 1;
	end = w->ev.b + w->ev.len;
	for (const char *e = w->ev.b; e < end; e += strlen(e) + 1) {
		int later = 0;

		for (const char *f = e + strlen(e) + 1; f < end && !later; f += strlen(f) + 1)
			later = f[0] == e[0] && strcmp(f + 2, e + 2) == 0;
		if (!later && !event_explained(ix, e))
			return 0;
	}
	return 1;
}

/* The fast path's question: has nothing changed new/ or cur/ since the
 * last listing that the index file (as the caught-up view ix says it) does
 * not record? 1 yes (no listing needed), 0 list. */
static int watch_clean(const struct imap_index *ix, const struct imap_index_stamp *st)
{
	struct watch *w;
	int clean = 0;

	pthread_mutex_lock(&watch_mu);
	if ((w = watch_find(ix->dir)) != NULL && watch_pid == getpid() &&
	    w->ino[0] == st[0].ino && w->ino[1] == st[1].ino) {
		watch_drain();
		w->used = ++watch_clock;
		if (w->dir && w->dirty == w->clean && events_explained(w, ix)) {
			w->ev.len = 0;
			clean = 1;
		} else if (w->dir) {
			w->dirty++;
		}
	}
	pthread_mutex_unlock(&watch_mu);
	return clean;
}

/* ---- catching up with the journal ---------------------------------------------- */

/* Message name from the file's words: BASE in new/, BASE:2,FLAGS in cur/. */
static char *filed_name(const struct entry *e)
{
	size_t n = strlen(e->base) + strlen(e->flags) + 4;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, e->in_new > 0 ? "%s" : "%s:2,%s", e->base, e->in_new > 0 ? "" : e->flags);
	return s;
}

/* Sets message m to what entry e says (its name kept when it already has
 * those flags in that place). */
static int view_set(struct imap_msg *m, const struct entry *e)
{
	struct maildir_info info;
	uint64_t mask = filed_mask(e->flags, e->in_new);

	if (!m->name || filed_mask(m->in_new ? "" : m->flags, m->in_new) != mask) {
		char *name = filed_name(e);

		if (!name || maildir_parse_name(name, &info) < 0) {
			free(name);
			return -1;
		}
		free(m->name);
		m->name = name;
		m->baselen = info.baselen;
		m->in_new = e->in_new > 0;
		m->size = info.has_size ? info.size : 0;
		snprintf(m->flags, sizeof m->flags, "%s", e->flags);
	}
	m->uid = e->uid;
	m->modseq = e->modseq;
	m->filed = mask;
	return 0;
}

static int view_add(struct imap_index *ix, const struct entry *e)
{
	if (e->uid < ix->uidnext || ix->n >= IMAP_INDEX_MSGS_MAX)
		return -1;   /* never a UID below UIDNEXT */
	if (ix->n == ix->cap) {
		struct imap_msg *nm = realloc(ix->m, (ix->cap = ix->cap * 2 + 16) * sizeof *nm);

		if (!nm)
			return -1;
		ix->m = nm;
	}
	memset(&ix->m[ix->n], 0, sizeof ix->m[ix->n]);
	if (view_set(&ix->m[ix->n], e) < 0)
		return -1;
	ix->n++;
	ix->uidnext = e->uid + 1;
	return 0;
}

/* One journal record applied to the view; -1 when it does not fit it. */
static int view_record(struct imap_index *ix, char *line)
{
	struct entry e;
	const char *q = line + 2;
	long k;

	if (line[0] == '\0' || line[1] != ' ')
		return -1;
	if (line[0] == '-') {
		if (u32(&q, &e.uid) < 0 || *q++ != ' ' || u64(&q, &e.modseq) < 0 || *q ||
		    (k = imap_index_find(ix, e.uid)) < 0)
			return -1;
		free(ix->m[k].name);
		memmove(&ix->m[k], &ix->m[k + 1], (ix->n - (size_t)k - 1) * sizeof *ix->m);
		ix->n--;
	} else if (entry_line(line + 2, 3, &e) < 0) {
		return -1;
	} else if (line[0] == '+') {
		if (view_add(ix, &e) < 0)
			return -1;
	} else if (line[0] != '=' || (k = imap_index_find(ix, e.uid)) < 0 ||
		   ix->m[k].baselen != strlen(e.base) ||
		   memcmp(ix->m[k].name, e.base, ix->m[k].baselen) != 0 || view_set(&ix->m[k], &e) < 0) {
		return -1;
	}
	if (e.modseq > ix->highestmodseq)
		ix->highestmodseq = e.modseq;
	return 0;
}

/* The header of the open index file: 0 when it is the version, UIDVALIDITY
 * and generation the view was read from. */
static int same_file(int fd, const struct imap_index *ix)
{
	char head[160], *nl;
	uint32_t v, n;
	uint64_t hms, gen;
	ssize_t r = pread(fd, head, sizeof head - 1, 0);

	if (r <= 0)
		return -1;
	head[r] = '\0';
	if (!(nl = strchr(head, '\n')) ||
	    strncmp(head, INDEX_MAGIC_ANY "3 ", sizeof INDEX_MAGIC_ANY + 1) != 0)
		return -1;
	*nl = '\0';
	if (numbers(head + sizeof INDEX_MAGIC_ANY + 1, &v, &n, &hms, &gen) != 3 ||
	    v != ix->uidvalidity || gen != ix->jgen)
		return -1;
	return 0;
}

/* Applies the complete records after ix->joff; 1 done, 0 a full read is
 * needed (another file, a compaction, a record that does not fit). */
static int catch_up(struct imap_index *ix, const char *path)
{
	int fd = fs_open_nofollow(path, O_RDONLY, 0), ok = 0;
	struct stat st;
	char *buf = NULL, *line, *nl;
	size_t len;

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_ino != ix->jino ||
	    (uint64_t)st.st_size < ix->joff || (uint64_t)st.st_size > IMAP_INDEX_FILE_MAX ||
	    same_file(fd, ix) < 0)
		goto out;
	len = (size_t)st.st_size - ix->joff;
	if (len && (!(buf = malloc(len + 1)) || pread(fd, buf, len, (off_t)ix->joff) != (ssize_t)len))
		goto out;
	for (line = buf; len && (nl = memchr(line, '\n', (size_t)(buf + len - line))); line = nl + 1) {
		*nl = '\0';
		if (strlen(line) != (size_t)(nl - line) || view_record(ix, line) < 0)
			goto out;
		ix->joff += (size_t)(nl - line) + 1;
	}
	ok = 1;
out:
	free(buf);
	close(fd);
	return ok;
}

void imap_index_forget(const char *dir)
{
	struct watch *w;

	pthread_mutex_lock(&watch_mu);
	if ((w = watch_find(dir)) != NULL && watch_pid == getpid())
		watch_drop(w);
	pthread_mutex_unlock(&watch_mu);
}

/* ---- a view from the file alone ------------------------------------------------ */

static uint64_t file_hms(const struct parsed *p);

static int entry_by_uid(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	return (x->uid > y->uid) - (x->uid < y->uid);
}

/* The view as a sound version 3 file says it (names from the words of its
 * entries), standing at the file's end. 0, or -1: a listing must make it. */
static int view_from_file(struct imap_index *ix, const char *path)
{
	struct parsed p;
	struct imap_msg *m = NULL;
	struct stat st;
	size_t n = 0;
	int fd, rc = -1;

	if ((fd = fs_open_nofollow(path, O_RDONLY, 0)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || parse_file(path, &p) < 0) {
		close(fd);
		return -1;
	}
	close(fd);   /* a compaction since the fstat shows as a new generation next time */
	if (p.version != INDEX_VERSION || p.damage || !p.have_v || (ix->uidvalidity &&
	    p.v != ix->uidvalidity) || !(m = calloc(p.n + 1, sizeof *m)))
		goto out;
	if (p.n > 1)
		qsort(p.e, p.n, sizeof *p.e, entry_by_uid);
	for (n = 0; n < p.n; n++) {
		if (p.e[n].in_new < 0 || p.e[n].uid >= p.next || (n && p.e[n].uid == p.e[n - 1].uid) ||
		    view_set(&m[n], &p.e[n]) < 0)
			goto out;
	}
	msgs_free(ix->m, ix->n);
	ix->m = m;
	ix->n = ix->cap = n;
	m = NULL;
	ix->uidvalidity = p.v;
	ix->uidnext = p.next;
	ix->highestmodseq = file_hms(&p);
	ix->jino = (uint64_t)st.st_ino;
	ix->jgen = p.gen;
	ix->joff = p.good;
	ix->jvalid = 1;
	rc = 0;
out:
	msgs_free(m, m ? p.n : 0);   /* calloc: unset names are NULL */
	free(p.e);
	free(p.buf);
	return rc;
}

/* One line of the file to write. */
struct row {
	uint32_t uid;
	uint64_t modseq;
	const char *flags, *base;
	size_t baselen;
	int in_new;
};

static int row_by_uid(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return (x->uid > y->uid) - (x->uid < y->uid);
}

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->err)
		return;
	if (t->cap - t->len < RECORD_MAX) {
		char *nb = realloc(t->b, t->cap = t->cap * 2 + RECORD_MAX * 4);

		if (!nb) {
			t->err = 1;
			return;
		}
		t->b = nb;
	}
	va_start(ap, fmt);
	n = vsnprintf(t->b + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->cap - t->len)
		t->err = 1;
	else
		t->len += (size_t)n;
}

/* "UID MODSEQ -FLAGS BASE" or "UID MODSEQ new BASE" (an entry, or the
 * body of a + or = record). */
static void put_row(struct text *t, const struct row *r)
{
	if (r->in_new > 0)
		put(t, "%u %llu " LOC_NEW " %.*s\n", r->uid, (unsigned long long)r->modseq,
		    (int)r->baselen, r->base);
	else
		put(t, "%u %llu -%s %.*s\n", r->uid, (unsigned long long)r->modseq, r->flags,
		    (int)r->baselen, r->base);
}

/* Compaction: the whole index (version 3, generation gen) from rows sorted
 * by UID, replacing the file atomically and durably (temp, fsync, rename,
 * fsync dir); its journal starts empty. */
static int write_rows(const char *path, uint32_t v, uint32_t next, uint64_t hms, uint64_t gen,
		      const struct row *r, size_t n, size_t *written)
{
	struct text t = { 0 };
	int rc = -1;

	put(&t, INDEX_MAGIC_ANY "%d %u %u %llu %llu\n", INDEX_VERSION, v, next,
	    (unsigned long long)hms, (unsigned long long)gen);
	for (size_t i = 0; i < n; i++)
		put_row(&t, &r[i]);
	put(&t, INDEX_TRAILER "%u %u %llu %llu\n", v, next, (unsigned long long)hms,
	    (unsigned long long)gen);
	if (!t.err)
		rc = fs_write_atomic(path, t.b, t.len, FS_MAIL_FILE_MODE);
	else
		errno = ENOMEM;
	if (written)
		*written = t.len;
	free(t.b);
	return rc;
}

static struct row msg_row(const struct imap_msg *m)
{
	return (struct row){ m->uid, m->modseq, m->flags, m->name, m->baselen, m->in_new };
}

static int write_index(const char *path, uint32_t v, uint32_t next, uint64_t hms, uint64_t gen,
		       const struct scan *s, size_t *written)
{
	struct row *r = malloc((s->n + 1) * sizeof *r);
	int rc;

	if (!r)
		return -1;
	for (size_t i = 0; i < s->n; i++)
		r[i] = msg_row(&s->m[i]);
	rc = write_rows(path, v, next, hms, gen, r, s->n, written);
	free(r);
	return rc;
}

/*
 * Appends records to the journal with one write (O_APPEND, under the
 * lock). A torn last line left by a crash is cut off first, so a record
 * never continues it. With `durable` the records are fdatasynced (new
 * UIDs: RFC 3501 2.3.1.1 forbids giving them again after a crash).
 */
static int journal_append(const char *path, const struct parsed *p, const struct text *t,
			  int durable)
{
	int fd, rc = -1, saved;

	if (t->err) {
		errno = ENOMEM;
		return -1;
	}
	if (t->len == 0)
		return 0;
	if ((fd = fs_open_nofollow(path, O_WRONLY | O_APPEND, 0)) < 0)
		return -1;
	if ((p->size == p->good || ftruncate(fd, (off_t)p->good) == 0) &&
	    write(fd, t->b, t->len) == (ssize_t)t->len && (!durable || fdatasync(fd) == 0))
		rc = 0;
	else if (errno == 0)
		errno = EIO;   /* a short write */
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Whether `more` records would make the journal long enough to compact:
 * reading it would then cost more than rewriting the file. */
static int journal_full(const struct parsed *p, size_t more)
{
	return p->nrec + more > JOURNAL_MIN + p->n / JOURNAL_PER_MSG;
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

/* The records that take the file (p) to the listing (s, after merge and
 * give_modseqs): + for new UIDs, = for a new modseq, flags or place, -
 * for entries whose message is gone. Returns how many. */
static size_t diff_records(struct parsed *p, const struct scan *s, uint64_t hms, struct text *t)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++) {
		const struct imap_msg *m = &s->m[i];
		struct entry *e = lookup(p, m);
		struct row r = msg_row(m);

		if (e && e->uid == m->uid && e->modseq == m->modseq && e->in_new == m->in_new &&
		    strcmp(e->flags, m->flags) == 0)
			continue;
		put(t, "%c ", e && e->uid == m->uid ? '=' : '+');
		put_row(t, &r);
		n++;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (!p->e[i].claimed) {
			put(t, "- %u %llu\n", p->e[i].uid, (unsigned long long)hms);
			n++;
		}
	}
	return n;
}

/* Writes what the sync found: records appended to the journal, or (an old
 * version, damage, a new UIDVALIDITY, a long journal) a compaction. The
 * view then stands at the file's end: ix->jgen, ix->joff, ix->jino. */
static int sync_write(struct imap_index *ix, const char *path, struct parsed *p,
		      const struct scan *s, uint32_t next, uint64_t hms, int reset)
{
	struct text t = { 0 };
	size_t n = diff_records(p, s, hms, &t), len = 0;
	struct stat st;
	int rc;

	ix->jvalid = 0;
	ix->jgen = p->gen;
	ix->joff = p->good + t.len;
	if (p->damage || p->missing || p->version != INDEX_VERSION || reset || journal_full(p, n)) {
		rc = write_index(path, p->v, next, hms, p->gen + 1, s, &len);
		ix->jgen = p->gen + 1;
		ix->joff = len;
	} else {
		rc = journal_append(path, p, &t, next != p->next);
	}
	free(t.b);
	if (rc == 0 && stat(path, &st) == 0) {   /* under the lock: our file */
		ix->jino = (uint64_t)st.st_ino;
		ix->jvalid = 1;
	}
	return rc;
}

/* Under the lock: read, list, merge, write back. */
static int sync_locked(struct imap_index *ix, const char *path, char *err, size_t errlen)
{
	struct parsed p;
	struct scan s, s2;
	uint32_t next;
	uint64_t hms;
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
	if (sync_write(ix, path, &p, &s, next, hms, reset) < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto out_s;
	}
	ix->repaired = (p.damage && !p.missing) || reset;
	snprintf(ix->repair, sizeof ix->repair, "%s",
		 reset ? "index unreadable: new UIDVALIDITY" : ix->repaired ? "damaged index repaired" : "");
	for (size_t i = 0; i < s.n; i++)
		s.m[i].filed = filed_mask(s.m[i].flags, s.m[i].in_new);
	msgs_free(ix->m, ix->n);
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

	memset(st, 0, 3 * sizeof *st);
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
	struct watch_token tok;
	int fd, rc = 0, settled = take_stamp(ix, st);

	ix->listed = 0;
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
	/* The journal's new records, and no listing when inotify saw nothing
	 * the file does not record (watch_clean). */
	if (((ix->jvalid && catch_up(ix, path)) || view_from_file(ix, path) == 0) &&
	    watch_clean(ix, st)) {
		ix->repaired = 0;
	} else {
		watch_before_listing(ix->dir, st, &tok);
		rc = sync_locked(ix, path, err, errlen);
		if (rc == 0)
			watch_after_listing(&tok);
		ix->listed = 1;
	}
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
	int usable;                 /* the file is a sound current-version index */
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
	t->usable = t->p.version == INDEX_VERSION && !t->p.damage && t->p.have_v &&
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

int imap_index_txn_expunge(struct imap_index_txn *t, struct imap_index *ix, size_t i)
{
	char path[IMAP_INDEX_PATH_MAX * 2];
	struct entry *e;

	if (i >= ix->n || imap_index_path(ix, i, path, sizeof path) < 0 || unlink(path) < 0)
		return -1;
	/* An expunge needs no fsync either: a file back after a crash is
	 * listed again and gets a new UID (RFC 3501 2.3.1.1 allows that). */
	if (t->usable && (e = lookup(&t->p, &ix->m[i])) != NULL && e->uid == ix->m[i].uid) {
		e->gone = 1;
		t->dirty = 1;
	}
	return 0;
}

/* Entry i of the file as a row, with the transaction's change. */
static struct row txn_row(const struct imap_index_txn *t, size_t i)
{
	const struct entry *e = &t->p.e[i];

	if (!e->touched)
		return (struct row){ e->uid, e->modseq, e->flags, e->base, strlen(e->base),
				     e->in_new };
	return (struct row){ e->uid, t->newms, e->flags_new, e->base, strlen(e->base), 0 };
}

/* The transaction as = records (not fsynced: see next_modseq), or, when
 * the journal is long, a compaction. */
static int txn_write(struct imap_index_txn *t)
{
	struct text x = { 0 };
	struct row *r;
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < t->p.n; i++) {
		struct row w = txn_row(t, i);

		if (t->p.e[i].gone) {
			put(&x, "- %u %llu\n", w.uid, (unsigned long long)t->newms);
			n++;
		} else if (t->p.e[i].touched) {
			put(&x, "= ");
			put_row(&x, &w);
			n++;
		}
	}
	if (!journal_full(&t->p, n)) {
		rc = journal_append(t->path, &t->p, &x, 0);
		free(x.b);
		return rc;
	}
	free(x.b);
	n = 0;
	if (!(r = malloc((t->p.n + 1) * sizeof *r)))
		return -1;
	for (size_t i = 0; i < t->p.n; i++)
		if (!t->p.e[i].gone)
			r[n++] = txn_row(t, i);
	if (n > 1)
		qsort(r, n, sizeof *r, row_by_uid);
	rc = write_rows(t->path, t->p.v, t->p.next, t->newms > t->p.hms ? t->newms : t->p.hms,
			t->p.gen + 1, r, n, NULL);
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

/* The new message as a + record (fdatasynced), or, when the journal is
 * long, a compaction with it. */
static int add_write(struct parsed *p, const char *path, const struct maildir_info *info,
		     const char *name, uint32_t uid, uint64_t ms)
{
	struct row *r, nr = { uid, ms, info->flags, name, info->baselen, 0 };
	struct text x = { 0 };
	int rc;

	if (!journal_full(p, 1)) {
		put(&x, "+ ");
		put_row(&x, &nr);
		rc = journal_append(path, p, &x, 1);
		free(x.b);
		return rc;
	}
	if (!(r = malloc((p->n + 1) * sizeof *r)))
		return -1;
	for (size_t i = 0; i < p->n; i++)
		r[i] = (struct row){ p->e[i].uid, p->e[i].modseq, p->e[i].flags, p->e[i].base,
				     strlen(p->e[i].base), p->e[i].in_new };
	r[p->n] = nr;
	qsort(r, p->n + 1, sizeof *r, row_by_uid);
	rc = write_rows(path, p->v, uid + 1, ms, p->gen + 1, r, p->n + 1, NULL);
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
		/* Only a sound current-version file is extended; else a full sync. */
		struct imap_msg m = { .name = (char *)name, .baselen = info.baselen };
		struct entry *e;
		uint32_t next = p.next;

		clean_entries(&p);
		for (size_t i = 0; i < p.n; i++)
			if (p.e[i].uid >= next)
				next = p.e[i].uid + 1;   /* the header lied: never reuse */
		if (p.version != INDEX_VERSION || p.damage || !p.have_v || next == UINT32_MAX) {
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
