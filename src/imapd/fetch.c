/*
 * fetch.c - FETCH, STORE and SEARCH over the selected mailbox's view.
 *
 * FETCH items that need the structure (ENVELOPE, BODY[STRUCTURE],
 * sections) parse the file in FETCH_CHUNK pieces with mime.h; sections are
 * then read by offset, bare LFs sent as CRLF, large ones streamed from the
 * file by conn.c (out_file).
 *
 * Flags: IMAP system flags map to Maildir info letters (\Seen S,
 * \Answered R, \Flagged F, \Deleted T, \Draft D); STORE renames the file
 * (maildir_set_flags), so other connections see the change at their
 * next update. BODY[] without .PEEK sets \Seen (RFC 3501 6.4.5).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "imapd.h"
#include "maildir.h"

#define FETCH_ATT_MAX 1024     /* bytes of one fetch attribute */
#define FETCH_ATTS_MAX 32      /* attributes in one FETCH */
#define SEARCH_DEPTH_MAX 32    /* nesting of NOT/OR/( ) in SEARCH */
#define FETCH_CHUNK 65536      /* bytes read from a message file at a time */
#define FETCH_HEADER_MAX (8u << 20)   /* bytes of a header filtered in memory */
#define FETCH_HDR_PIECE 4096   /* bytes fed at a time when only the header is wanted */

static const struct { char letter; const char *name; } flag_map[] = {
	{ 'R', "\\Answered" }, { 'F', "\\Flagged" }, { 'T', "\\Deleted" },
	{ 'S', "\\Seen" }, { 'D', "\\Draft" },
};

void flags_imap(const char *letters, const struct kw *k, char *out, size_t cap)
{
	size_t n = 0;

	n += (size_t)snprintf(out, cap, "(");
	for (size_t i = 0; i < sizeof flag_map / sizeof *flag_map; i++)
		if (strchr(letters, flag_map[i].letter) && n < cap)
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n > 1 ? " " : "",
					      flag_map[i].name);
	if (n < cap)
		snprintf(out + n, cap - n, ")");
	if (k)
		kw_imap(k, letters, out, cap);
}

static char flag_letter(const char *name)
{
	for (size_t i = 0; i < sizeof flag_map / sizeof *flag_map; i++)
		if (strcasecmp(flag_map[i].name, name) == 0)
			return flag_map[i].letter;
	return 0;
}

int flags_parse(struct imap_parser *p, const char *dir, struct kw *k, char *letters, size_t cap)
{
	char f[KW_NAME_MAX + 2];
	size_t n = 0;
	int paren = imap_take(p, '('), first = 1, full = 0;

	letters[0] = '\0';
	while (!(paren && imap_take(p, ')'))) {
		char l;

		if (!first && (!paren || imap_sp(p) < 0))
			return paren ? -1 : full ? -2 : 0;
		first = 0;
		if (imap_take(p, '\\')) {
			if (imap_atom(p, f + 1, sizeof f - 1) < 0)
				return -1;
			f[0] = '\\';
			l = flag_letter(f);   /* \Recent and unknown system flags: ignored */
		} else if (imap_atom(p, f, sizeof f) < 0) {
			return -1;
		} else if (!(l = k ? kw_letter(dir, k, f, 1) : 0)) {
			full = k != NULL;     /* RFC 3501 6.4.6: NO when it cannot be kept */
		}
		if (l && !strchr(letters, l) && n + 1 < cap) {
			letters[n++] = l;
			letters[n] = '\0';
		}
	}
	return full ? -2 : 0;
}

int set_select(struct imapd_conn *c, const struct imap_seqset *set, int uid, size_t **pos,
	       size_t *n)
{
	uint32_t star = uid ? (c->ix.n ? c->ix.m[c->ix.n - 1].uid : 0) : (uint32_t)c->ix.n;

	*n = 0;
	*pos = malloc((c->ix.n + 1) * sizeof **pos);
	if (!*pos)
		return -1;
	if (!uid)   /* RFC 3501 9: a sequence number past the end is an error */
		for (size_t i = 0; i < set->n; i++)
			if ((set->r[i].lo != IMAP_SEQ_STAR && set->r[i].lo > c->ix.n) ||
			    (set->r[i].hi != IMAP_SEQ_STAR && set->r[i].hi > c->ix.n)) {
				free(*pos);
				*pos = NULL;
				return -1;
			}
	for (size_t i = 0; i < c->ix.n; i++)
		if (imap_seqset_has(set, uid ? c->ix.m[i].uid : (uint32_t)(i + 1), star))
			(*pos)[(*n)++] = i;
	return 0;
}

int msg_locate(struct imapd_conn *c, size_t i)
{
	char path[IMAPD_PATH_MAX * 2];
	struct stat st;

	if (imap_index_path(&c->ix, i, path, sizeof path) == 0 && lstat(path, &st) == 0)
		return 0;
	return imap_index_relocate(&c->ix, i);
}

struct imap_index_txn *txn_get(struct imapd_conn *c)
{
	char err[256];

	if (!c->txn && !(c->txn = imap_index_begin(&c->ix, err, sizeof err)))
		log_msg(LOG_ERR, &c->lf, "%s", err);
	return c->txn;
}

void txn_end(struct imapd_conn *c)
{
	char err[256];

	if (c->txn && imap_index_commit(&c->ix, c->txn, err, sizeof err) < 0)
		log_msg(LOG_ERR, &c->lf, "%s", err);
	c->txn = NULL;
}

void out_condstore(struct imapd_conn *c, size_t i)
{
	if (c->condstore)
		out_fmt(c, " MODSEQ (%llu)", (unsigned long long)c->ix.m[i].modseq);
}

/* ---- message text ---------------------------------------------------------------- */

struct text {
	char *data;
	size_t len, hdr;          /* hdr: bytes of the header with its blank line */
	time_t mtime;
};

static int load(struct imapd_conn *c, size_t i, struct text *t)
{
	char path[IMAPD_PATH_MAX * 2];
	struct stat st;
	int fd;
	ssize_t n;

	memset(t, 0, sizeof *t);
	if (imap_index_path(&c->ix, i, path, sizeof path) < 0 ||
	    (fd = fs_open_nofollow(path, O_RDONLY, 0)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > IMAP_APPEND_MAX * 2u ||
	    !(t->data = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -1;
	}
	while (t->len < (size_t)st.st_size &&
	       (n = read(fd, t->data + t->len, (size_t)st.st_size - t->len)) > 0)
		t->len += (size_t)n;
	close(fd);
	t->data[t->len] = '\0';
	t->mtime = st.st_mtime;
	char *e = strstr(t->data, "\r\n\r\n"), *e2 = strstr(t->data, "\n\n");
	if (e && (!e2 || e < e2))
		t->hdr = (size_t)(e - t->data) + 4;
	else
		t->hdr = e2 ? (size_t)(e2 - t->data) + 2 : t->len;
	return 0;
}

static time_t mtime_of(struct imapd_conn *c, size_t i)
{
	char path[IMAPD_PATH_MAX * 2];
	struct stat st;

	if (imap_index_path(&c->ix, i, path, sizeof path) < 0 || lstat(path, &st) < 0)
		return 0;
	return st.st_mtime;
}

/* The header lines whose names are (or, with `not`, are not) in `list`. */
static void header_fields(struct imapd_conn *c, const struct text *t, const char *list, int not,
			  char **out, size_t *outlen)
{
	size_t n = 0, i = 0;
	int keep = 0;

	*out = malloc(t->hdr + 3);
	while (*out && i < t->hdr) {
		const char *ln = t->data + i, *nl = memchr(ln, '\n', t->hdr - i);
		size_t ll = nl ? (size_t)(nl - ln) + 1 : t->hdr - i;

		if (ln[0] != ' ' && ln[0] != '\t') {
			int has = imap_fields_has(list, ln, ll);

			keep = not ? !has && memchr(ln, ':', ll) : has;
		}
		if (keep) {
			memcpy(*out + n, ln, ll);
			n += ll;
		}
		i += ll;
	}
	if (*out) {   /* RFC 3501 6.4.5: the blank line that ends a header */
		memcpy(*out + n, "\r\n", 2);
		n += 2;
	}
	*outlen = n;
	(void)c;
}

/* ---- one message's file, read in pieces ---------------------------------------- */


struct msgfile {
	int fd;                   /* -1: not open */
	uint64_t size;
	struct mime mime;
	int parsed;
	int hdr_only;             /* parsed up to the end of the message's header only */
};

static int mf_open(struct imapd_conn *c, size_t i, struct msgfile *f)
{
	char path[IMAPD_PATH_MAX * 2];
	struct stat st;

	if (f->fd >= 0)
		return 0;
	if (imap_index_path(&c->ix, i, path, sizeof path) < 0)
		return -1;
	/* Another process (a client of this or another server, Dovecot on the
	 * same store) may have renamed it: find it again. */
	if ((f->fd = fs_open_nofollow(path, O_RDONLY, 0)) < 0 &&
	    (errno != ENOENT || imap_index_relocate(&c->ix, i) < 0 ||
	     imap_index_path(&c->ix, i, path, sizeof path) < 0 ||
	     (f->fd = fs_open_nofollow(path, O_RDONLY, 0)) < 0))
		return -1;
	if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(f->fd);
		f->fd = -1;
		return -1;
	}
	f->size = (uint64_t)st.st_size;
	return 0;
}

/* Feeds the file to the MIME parser in pieces of `piece` bytes, up to
 * the end of the message's header (hdr_only) or of the file. 0 or -1. */
static int mf_feed(struct imapd_conn *c, size_t i, struct msgfile *f, size_t piece,
		   int hdr_only)
{
	char buf[FETCH_CHUNK];
	uint64_t off = 0;
	ssize_t n;

	if (mf_open(c, i, f) < 0 || mime_init(&f->mime) < 0)
		return -1;
	while (off < f->size && (n = pread(f->fd, buf, piece, (off_t)off)) > 0) {
		off += (uint64_t)n;
		if (mime_feed(&f->mime, buf, (size_t)n) < 0)
			break;
		if (hdr_only && mime_header_done(&f->mime)) {
			f->parsed = f->hdr_only = 1;
			return 0;
		}
	}
	return 0;
}

/* Only the message's header (ENVELOPE, BODY[HEADER], HEADER.FIELDS): the
 * body is not parsed (it was 5.6 % of the loop's time with the MIME parser
 * going through every line of every message whose headers were fetched). */
static int mf_parse_header(struct imapd_conn *c, size_t i, struct msgfile *f)
{
	if (f->parsed)
		return 0;
	if (mf_feed(c, i, f, FETCH_HDR_PIECE, 1) < 0)
		return -1;
	if (f->parsed)
		return 0;
	if (mime_finish(&f->mime) < 0) {   /* no blank line: the header is all */
		mime_free(&f->mime);
		return -1;
	}
	f->parsed = 1;
	return 0;
}

/* The MIME structure, parsed from the file without holding it whole. */
static int mf_parse(struct imapd_conn *c, size_t i, struct msgfile *f)
{
	if (f->parsed && f->hdr_only) {   /* the same FETCH wants more now */
		mime_free(&f->mime);
		f->parsed = f->hdr_only = 0;
	}
	if (f->parsed)
		return 0;
	if (mf_feed(c, i, f, FETCH_CHUNK, 0) < 0)
		return -1;
	if (mime_finish(&f->mime) < 0) {
		mime_free(&f->mime);
		return -1;
	}
	f->parsed = 1;
	return 0;
}

static void mf_close(struct msgfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->parsed)
		mime_free(&f->mime);
	f->fd = -1;
	f->parsed = f->hdr_only = 0;
}

/* Sends the window [from, from + n) of a byte stream that is the file's
 * bytes [off, ...) with each bare LF turned into CRLF (RFC 3501 2.2). */
struct crlf {
	struct imapd_conn *c;
	uint64_t pos, from, n;    /* output position, window */
	int prev_cr;
};

static void crlf_put(struct crlf *w, const char *s, size_t len)
{
	uint64_t lo = w->pos, hi = w->pos + len, end = w->from + w->n;

	if (w->c && hi > w->from && lo < end) {   /* no connection: only measuring */
		uint64_t a = lo < w->from ? w->from : lo, b = hi < end ? hi : end;

		out_raw(w->c, s + (a - lo), (size_t)(b - a));
	}
	w->pos = hi;
}

static void crlf_feed(struct crlf *w, const char *buf, size_t len)
{
	size_t start = 0;

	for (size_t k = 0; k < len; k++) {
		if (buf[k] == '\n' && !(k ? buf[k - 1] == '\r' : w->prev_cr)) {
			crlf_put(w, buf + start, k - start);
			crlf_put(w, "\r\n", 2);
			start = k + 1;
		}
	}
	crlf_put(w, buf + start, len - start);
	if (len)
		w->prev_cr = buf[len - 1] == '\r';
}

/* A section of the file as a literal: raw bytes [off, off + len), len_n
 * bytes once sent with CRLF; the window <skip.count> of those. */
static int out_section(struct imapd_conn *c, struct msgfile *f, uint64_t off, uint64_t len,
		       uint64_t len_n, uint64_t skip, uint64_t count)
{
	char buf[FETCH_CHUNK];
	struct crlf w = { .c = c };
	uint64_t end = off + len;

	w.from = skip < len_n ? skip : len_n;
	w.n = len_n - w.from < count ? len_n - w.from : count;
	out_fmt(c, "{%llu}\r\n", (unsigned long long)w.n);
	/* Large: sent from the file as the client takes it (conn.c). */
	if (w.n >= IMAPD_STREAM_MIN && out_file(c, f->fd, off, len, w.from, w.n) == 0)
		return 0;
	if (off > 0 && pread(f->fd, buf, 1, (off_t)off - 1) == 1)
		w.prev_cr = buf[0] == '\r';
	if (len == len_n && w.from > 0)
		off += w.from, w.pos = w.from;   /* nothing to convert: seek */
	while (off < end && w.pos < w.from + w.n) {
		ssize_t r = pread(f->fd, buf, end - off < sizeof buf ? (size_t)(end - off) : sizeof buf,
				  (off_t)off);

		if (r <= 0)
			break;
		crlf_feed(&w, buf, (size_t)r);
		off += (uint64_t)r;
	}
	if (w.pos >= w.from + w.n)
		return 0;
	/* The file shrank under us: keep the protocol in step, fail the command. */
	for (uint64_t k = w.pos > w.from ? w.pos - w.from : 0; k < w.n; k++)
		out_raw(c, " ", 1);
	return -1;
}

static void out_buf(struct imapd_conn *c, struct imap_buf *b)
{
	if (b->oom)
		c->state = ST_LOGOUT;   /* cannot answer correctly: end this one */
	else
		out_raw(c, b->p, b->len);
	imap_buf_free(b);
}

/* HEADER.FIELDS (.NOT): the header read into memory, lines filtered. */
static int out_fields(struct imapd_conn *c, struct msgfile *f, const struct imap_section *s,
		      uint64_t start, uint64_t count, int partial)
{
	struct text t = { 0 };
	char *buf;
	size_t len;

	if (s->len > FETCH_HEADER_MAX || !(t.data = malloc((size_t)s->len + 1)))
		return -1;
	if (pread(f->fd, t.data, (size_t)s->len, (off_t)s->off) != (ssize_t)s->len) {
		free(t.data);
		return -1;
	}
	t.len = t.hdr = (size_t)s->len;
	header_fields(c, &t, s->fields, s->what == IMAP_SECT_FIELDS_NOT, &buf, &len);
	/* A header that ends without a blank line: .NOT adds none (Dovecot). */
	if (buf && s->what == IMAP_SECT_FIELDS_NOT && len >= 2 &&
	    !(t.len >= 2 && t.data[t.len - 1] == '\n' &&
	      (t.data[t.len - 2] == '\n' || (t.len >= 4 && !memcmp(t.data + t.len - 4, "\r\n\r\n", 4)))))
		len -= 2;
	free(t.data);
	if (!buf)
		return -1;
	struct crlf w = { .c = NULL };
	uint64_t len_n;

	crlf_feed(&w, buf, len);   /* first only to measure */
	len_n = w.pos;
	if (!partial)
		count = UINT64_MAX;
	w = (struct crlf){ .c = c, .from = partial ? (start < len_n ? start : len_n) : 0 };
	w.n = len_n - w.from < count ? len_n - w.from : count;
	out_fmt(c, "{%llu}\r\n", (unsigned long long)w.n);
	crlf_feed(&w, buf, len);
	free(buf);
	return 0;
}

/* BODY[section]<partial> (RFC 3501 6.4.5). */
static int body_part(struct imapd_conn *c, size_t i, struct msgfile *f, const char *att)
{
	const char *lb = strchr(att, '['), *rb = strrchr(att, ']');
	char sect[FETCH_ATT_MAX];
	struct imap_section s;
	unsigned long long start = 0, count = 0;
	int partial = 0;

	snprintf(sect, sizeof sect, "%.*s", (int)(rb - lb - 1), lb + 1);
	if (rb[1] == '<') {
		if (sscanf(rb + 2, "%llu.%llu>", &start, &count) != 2 || count == 0)
			return -1;
		partial = 1;
	}
	/* The message's own HEADER, HEADER.FIELDS (.NOT): its header suffices. */
	if ((strncasecmp(sect, "HEADER", 6) == 0 ? mf_parse_header(c, i, f)
						: mf_parse(c, i, f)) < 0 ||
	    imap_section_resolve(&f->mime, sect, &s) < 0)
		return -1;
	out_fmt(c, "BODY[%s]", sect);
	if (partial)
		out_fmt(c, "<%llu>", start);
	out_raw(c, " ", 1);
	if (s.part >= 0 && (s.what == IMAP_SECT_FIELDS || s.what == IMAP_SECT_FIELDS_NOT))
		return out_fields(c, f, &s, start, count, partial);
	/* RFC 3501 6.4.5: <o.n> beyond the end is empty */
	return out_section(c, f, s.off, s.len, s.len_n, start, partial ? count : UINT64_MAX);
}

/* BODY[] without .PEEK: \Seen set (one modseq for the command). 1 when
 * the flags changed. */
static int set_seen(struct imapd_conn *c, struct imap_msg *m)
{
	char letters[MAILDIR_FLAGS_MAX + 2], nn[300];
	size_t i = (size_t)(m - c->ix.m);

	if (c->readonly || strchr(m->flags, 'S') || msg_locate(c, i) < 0 || strchr(m->flags, 'S'))
		return 0;
	txn_get(c);   /* before the rename: the index lock orders it with syncs */
	snprintf(letters, sizeof letters, "%sS", m->flags);
	if (maildir_set_flags(c->ix.dir, m->name, letters, nn, sizeof nn) < 0)
		return 0;
	free(m->name);
	m->name = strdup(nn);
	m->in_new = 0;
	snprintf(m->flags, sizeof m->flags, "%s", strchr(nn, ',') ? strrchr(nn, ',') + 1 : "");
	if (c->txn)
		imap_index_txn_touch(c->txn, &c->ix, i);
	return 1;
}

static void out_internaldate(struct imapd_conn *c, size_t i)
{
	char date[64];
	time_t when = mtime_of(c, i);
	struct tm tm;

	gmtime_r(&when, &tm);
	strftime(date, sizeof date, "%d-%b-%Y %H:%M:%S +0000", &tm);
	out_fmt(c, "INTERNALDATE \"%s\"", date);
}

/* The attributes that need the MIME structure of the message. */
static int structured(struct imapd_conn *c, size_t i, struct msgfile *f, const char *a)
{
	struct imap_buf b = { 0 };
	int env = !strcasecmp(a, "ENVELOPE");

	if ((env ? mf_parse_header(c, i, f) : mf_parse(c, i, f)) < 0)
		return -1;
	if (env) {
		imap_buf_puts(&b, "ENVELOPE ");
		imap_envelope(&b, &f->mime, 0);
	} else {
		int ext = !strcasecmp(a, "BODYSTRUCTURE");

		imap_buf_puts(&b, ext ? "BODYSTRUCTURE " : "BODY ");
		imap_bodystructure(&b, &f->mime, 0, ext);
	}
	out_buf(c, &b);
	return 0;
}

/* One attribute of message i. */
static int fetch_att(struct imapd_conn *c, size_t i, struct msgfile *f, const char *a)
{
	struct imap_msg *m = &c->ix.m[i];
	char fl[FLAGS_TEXT_MAX];

	if (!strcasecmp(a, "UID")) {
		out_fmt(c, "UID %u", m->uid);
	} else if (!strcasecmp(a, "FLAGS")) {
		flags_imap(m->flags, &c->kw, fl, sizeof fl);
		out_fmt(c, "FLAGS %s", fl);
	} else if (!strcasecmp(a, "INTERNALDATE")) {
		out_internaldate(c, i);
	} else if (!strcasecmp(a, "MODSEQ")) {   /* RFC 7162 3.1.4.1 */
		out_fmt(c, "MODSEQ (%llu)", (unsigned long long)m->modseq);
	} else if (!strcasecmp(a, "ENVELOPE") || !strcasecmp(a, "BODYSTRUCTURE") ||
		   !strcasecmp(a, "BODY")) {
		return structured(c, i, f, a);
	} else if (!strncasecmp(a, "RFC822", 6)) {   /* sizes and bytes as sent, CRLF */
		const struct mime_part *p;

		if (mf_parse(c, i, f) < 0)
			return -1;
		p = &f->mime.parts[0];
		if (!strcasecmp(a, "RFC822.SIZE")) {
			out_fmt(c, "RFC822.SIZE %llu", (unsigned long long)p->end_n);
			return 0;
		}
		out_fmt(c, "%s ", a[6] ? (a[7] == 'H' || a[7] == 'h' ? "RFC822.HEADER" : "RFC822.TEXT")
				       : "RFC822");
		if (!strcasecmp(a, "RFC822.HEADER"))
			return out_section(c, f, 0, p->body_off, p->body_n, 0, UINT64_MAX);
		if (!strcasecmp(a, "RFC822.TEXT"))
			return out_section(c, f, p->body_off, p->end_off - p->body_off,
					   p->end_n - p->body_n, 0, UINT64_MAX);
		return out_section(c, f, 0, p->end_off, p->end_n, 0, UINT64_MAX);
	} else {
		return body_part(c, i, f, a);
	}
	return 0;
}

static int has_att(char atts[][FETCH_ATT_MAX], int natts, const char *name)
{
	for (int k = 0; k < natts; k++)
		if (!strcasecmp(atts[k], name))
			return 1;
	return 0;
}

/* The FETCH set \Seen: the new FLAGS (RFC 3501 6.4.5), and with CONDSTORE
 * the MODSEQ (RFC 7162 3.2), unless asked for already. */
static void seen_changed(struct imapd_conn *c, size_t i, char atts[][FETCH_ATT_MAX], int natts)
{
	char fl[FLAGS_TEXT_MAX];

	if (!has_att(atts, natts, "FLAGS")) {
		flags_imap(c->ix.m[i].flags, &c->kw, fl, sizeof fl);
		out_fmt(c, " FLAGS %s", fl);
	}
	if (!has_att(atts, natts, "MODSEQ"))
		out_condstore(c, i);
}

/* One message's FETCH response. */
static int fetch_one(struct imapd_conn *c, size_t i, char atts[][FETCH_ATT_MAX], int natts,
		     int seen)
{
	struct msgfile f = { .fd = -1 };
	int rc = 0, changed = seen && set_seen(c, &c->ix.m[i]);

	out_fmt(c, "* %zu FETCH (", i + 1);
	for (int k = 0; k < natts && rc == 0; k++) {
		if (k)
			out_raw(c, " ", 1);
		rc = fetch_att(c, i, &f, atts[k]);
	}
	if (rc < 0)   /* RFC 3501 7.4.2 has no error item: end the response, fail the command */
		out_fmt(c, "UID %u", c->ix.m[i].uid);
	else if (changed)
		seen_changed(c, i, atts, natts);
	out_fmt(c, ")\r\n");
	mf_close(&f);
	return rc;
}

static int valid_att(const char *a)
{
	static const char *const simple[] = { "UID", "FLAGS", "MODSEQ", "INTERNALDATE", "RFC822.SIZE",
		"RFC822", "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE", "BODYSTRUCTURE", "BODY" };
	const char *lb = strchr(a, '['), *rb = strrchr(a, ']');
	char sect[FETCH_ATT_MAX];
	unsigned long long o, n;
	char tail;

	for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
		if (!strcasecmp(a, simple[i]))
			return 1;
	if (!lb || !rb || rb < lb || (strncasecmp(a, "BODY[", 5) && strncasecmp(a, "BODY.PEEK[", 10)))
		return 0;
	if (rb[1] && (sscanf(rb + 1, "<%llu.%llu%c", &o, &n, &tail) != 3 || tail != '>' ||
		      strchr(rb, '>')[1]))
		return 0;
	snprintf(sect, sizeof sect, "%.*s", (int)(rb - lb - 1), lb + 1);
	return imap_section_check(sect) == 0;
}

int cmd_fetch(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	struct imap_seqset set;
	static char atts[FETCH_ATTS_MAX + 3][FETCH_ATT_MAX];
	int natts = 0, paren, seen = 0, rc = 0;
	uint64_t since = 0;
	size_t *pos, n;

	if (imap_sp(&r->p) < 0 || imap_seqset(&r->p, &set) < 0)
		return bad_args(r);
	if (imap_sp(&r->p) < 0) {
		imap_seqset_free(&set);
		return bad_args(r);
	}
	paren = imap_take(&r->p, '(');
	do {
		if (natts >= FETCH_ATTS_MAX || imap_fetch_token(&r->p, atts[natts], FETCH_ATT_MAX) < 0) {
			imap_seqset_free(&set);
			return bad_args(r);
		}
		natts++;
	} while (paren && imap_take(&r->p, ' '));
	if ((paren && !imap_take(&r->p, ')')) ||
	    (imap_take(&r->p, ' ') && (imap_modifier(&r->p, "CHANGEDSINCE", &since) < 0 || !since)) ||
	    imap_eol(&r->p) < 0) {
		imap_seqset_free(&set);
		return bad_args(r);
	}
	/* RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ; both enable CONDSTORE */
	if (since && !has_att(atts, natts, "MODSEQ"))
		strcpy(atts[natts++], "MODSEQ");
	/* Macros (RFC 3501 6.4.5). */
	if (natts == 1 && (!strcasecmp(atts[0], "ALL") || !strcasecmp(atts[0], "FAST") ||
			   !strcasecmp(atts[0], "FULL"))) {
		int all = !strcasecmp(atts[0], "ALL"), full = !strcasecmp(atts[0], "FULL");

		strcpy(atts[0], "FLAGS");
		strcpy(atts[1], "INTERNALDATE");
		strcpy(atts[2], "RFC822.SIZE");
		natts = 3;
		if (all || full)
			strcpy(atts[natts++], "ENVELOPE");
		if (full)
			strcpy(atts[natts++], "BODY");
	}
	c->condstore |= has_att(atts, natts, "MODSEQ");
	for (int k = 0; k < natts; k++) {
		if (!valid_att(atts[k])) {
			imap_seqset_free(&set);
			return reply(r, "BAD", "Unsupported fetch attribute");
		}
		seen |= !strncasecmp(atts[k], "BODY[", 5) || !strcasecmp(atts[k], "RFC822") ||
			!strcasecmp(atts[k], "RFC822.TEXT");
	}
	if (r->uid) {   /* RFC 3501 6.4.8: UID FETCH always includes UID */
		int has = 0;

		for (int k = 0; k < natts; k++)
			has |= !strcasecmp(atts[k], "UID");
		if (!has)
			strcpy(atts[natts++], "UID");
		mbox_update(c, 1);
	}
	rc = set_select(c, &set, r->uid, &pos, &n);
	imap_seqset_free(&set);
	if (rc < 0)
		return reply(r, "BAD", "Invalid message numbers");
	for (size_t i = 0; i < n; i++)
		if ((!since || c->ix.m[pos[i]].modseq > since) &&
		    fetch_one(c, pos[i], atts, natts, seen) < 0)
			rc = -1;
	txn_end(c);
	free(pos);
	if (rc < 0)
		return reply(r, "NO", "Some messages could not be fetched");
	return reply(r, "OK", "FETCH completed");
}

/* ---- SEARCH (RFC 3501 6.4.4, a subset) -------------------------------------------- */

struct search {
	struct imapd_conn *c;
	size_t i;                 /* the message */
	struct text t;
	int loaded;
	int modseq;               /* a MODSEQ key was used (RFC 7162 3.1.5) */
};

/* MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162
 * 3.1.5): messages whose modseq is at least the value. Flags have no
 * modseqs of their own here: the entry names the message's. */
static int search_modseq(struct imap_parser *p, struct search *s)
{
	char entry[128], type[16];
	size_t el;
	uint64_t v;

	if (imap_peek(p) == '"') {
		if (imap_string(p, entry, sizeof entry, &el) < 0 || imap_sp(p) < 0 ||
		    imap_atom(p, type, sizeof type) < 0 || imap_sp(p) < 0 ||
		    (strcasecmp(type, "priv") && strcasecmp(type, "shared") && strcasecmp(type, "all")))
			return -1;
	}
	if (imap_modseq(p, &v) < 0)
		return -1;
	s->modseq = 1;
	return s->c->ix.m[s->i].modseq >= v;
}

static int has_text(struct search *s, const char *hay, size_t len, const char *needle)
{
	size_t nl = strlen(needle);

	for (size_t k = 0; k + nl <= len; k++)
		if (strncasecmp(hay + k, needle, nl) == 0)
			return 1;
	return nl == 0;
	(void)s;
}

/* RFC 3501 6.4.4: the needle in the value of a field (not its name). */
static int header_has(struct search *s, const char *field, const char *needle)
{
	char list[160], *buf;
	size_t len, i = 0;
	int r = 0;

	snprintf(list, sizeof list, " %s ", field);
	header_fields(s->c, &s->t, list, 0, &buf, &len);
	while (buf && i < len && !r) {
		char *nl = memchr(buf + i, '\n', len - i), *colon;
		size_t ll = nl ? (size_t)(nl - (buf + i)) + 1 : len - i;

		colon = buf[i] != ' ' && buf[i] != '\t' ? memchr(buf + i, ':', ll) : NULL;
		if (colon)
			r = has_text(s, colon + 1, ll - (size_t)(colon + 1 - (buf + i)), needle);
		else
			r = has_text(s, buf + i, ll, needle);
		i += ll;
	}
	r |= buf && !needle[0] && len > 2;   /* HEADER x "": the field exists */
	free(buf);
	return r;
}

/* The day of the Date field ("Mon, 7 Feb 1994 21:52:25 -0800"), its time
 * and zone disregarded (RFC 3501 6.4.4 SENT*); -1 if unreadable. */
static time_t sent_day(struct search *s)
{
	static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char list[] = " Date ", *buf, m[4];
	size_t len;
	struct tm tm = { 0 };
	const char *v, *q;

	header_fields(s->c, &s->t, list, 0, &buf, &len);
	if (!buf || len < 8) {
		free(buf);
		return -1;
	}
	buf[len - 1] = '\0';
	v = strchr(buf, ':') + 1;
	if (strchr(v, ','))
		v = strchr(v, ',') + 1;
	if (sscanf(v, "%d %3s %d", &tm.tm_mday, m, &tm.tm_year) != 3 ||
	    !(q = strcasestr(mon, m)) || (q - mon) % 3) {
		free(buf);
		return -1;
	}
	free(buf);
	tm.tm_mon = (int)(q - mon) / 3;
	tm.tm_year -= tm.tm_year < 50 ? -100 : tm.tm_year < 1000 ? 0 : 1900;   /* RFC 5322 4.3 */
	return timegm(&tm);
}

/* BEFORE/ON/SINCE (and SENT...) of day `when` against day `day`. */
static int date_cmp(const char *k, time_t day, time_t when)
{
	if (!strcasecmp(k, "SINCE"))
		return day >= when;
	if (!strcasecmp(k, "BEFORE"))
		return day < when;
	return day >= when && day < when + 86400;
}

/* One search key for message s->i: 1 match, 0 not, -1 syntax error. */
static int key(struct imap_parser *p, struct search *s, int depth)
{
	struct imapd_conn *c = s->c;
	struct imap_msg *m = &c->ix.m[s->i];
	char k[64], arg[1024];
	size_t al;
	uint32_t num;
	struct imap_seqset set;
	static const char *const fl[][2] = { { "SEEN", "S" }, { "FLAGGED", "F" }, { "DELETED", "T" },
		{ "ANSWERED", "R" }, { "DRAFT", "D" } };

	if (depth > SEARCH_DEPTH_MAX)
		return -1;
	if (imap_take(p, '(')) {
		int all = 1, r;

		do {
			if ((r = key(p, s, depth + 1)) < 0)
				return -1;
			all &= r;
		} while (imap_take(p, ' '));
		return imap_take(p, ')') ? all : -1;
	}
	if (imap_peek(p) == '*' || (imap_peek(p) >= '0' && imap_peek(p) <= '9')) {
		if (imap_seqset(p, &set) < 0)
			return -1;
		int r = imap_seqset_has(&set, (uint32_t)s->i + 1, (uint32_t)c->ix.n);

		imap_seqset_free(&set);
		return r;
	}
	if (imap_atom(p, k, sizeof k) < 0)
		return -1;
	if (!strcasecmp(k, "ALL"))
		return 1;
	for (size_t f = 0; f < sizeof fl / sizeof *fl; f++) {
		if (!strcasecmp(k, fl[f][0]))
			return strchr(m->flags, fl[f][1][0]) != NULL;
		if (!strncasecmp(k, "UN", 2) && !strcasecmp(k + 2, fl[f][0]))
			return strchr(m->flags, fl[f][1][0]) == NULL;
	}
	if (!strcasecmp(k, "NEW") || !strcasecmp(k, "RECENT"))
		return 0;
	if (!strcasecmp(k, "OLD"))
		return 1;
	if (!strcasecmp(k, "NOT")) {
		int r = imap_sp(p) < 0 ? -1 : key(p, s, depth + 1);

		return r < 0 ? -1 : !r;
	}
	if (!strcasecmp(k, "OR")) {
		int a = imap_sp(p) < 0 ? -1 : key(p, s, depth + 1);
		int b = a < 0 || imap_sp(p) < 0 ? -1 : key(p, s, depth + 1);

		return a < 0 || b < 0 ? -1 : a || b;
	}
	if (imap_sp(p) < 0)
		return -1;
	if (!strcasecmp(k, "MODSEQ"))
		return search_modseq(p, s);
	if (!strcasecmp(k, "UID")) {
		if (imap_seqset(p, &set) < 0)
			return -1;
		int r = imap_seqset_has(&set, m->uid, c->ix.n ? c->ix.m[c->ix.n - 1].uid : 0);

		imap_seqset_free(&set);
		return r;
	}
	if (!strcasecmp(k, "LARGER") || !strcasecmp(k, "SMALLER")) {
		if (imap_number(p, &num) < 0)
			return -1;
		if (!m->size && !s->loaded && load(c, s->i, &s->t) == 0)
			s->loaded = 1, m->size = s->t.len;
		return k[0] == 'L' || k[0] == 'l' ? m->size > num : m->size < num;
	}
	if (!strcasecmp(k, "HEADER")) {
		char field[128];

		if (imap_astring(p, field, sizeof field, &al) < 0 || imap_sp(p) < 0)
			return -1;
		if (imap_astring(p, arg, sizeof arg, &al) < 0)
			return -1;
		if (!s->loaded && !(s->loaded = load(c, s->i, &s->t) == 0))
			return 0;
		return header_has(s, field, arg);
	}
	if (imap_astring(p, arg, sizeof arg, &al) < 0)
		return -1;
	if (!strcasecmp(k, "KEYWORD") || !strcasecmp(k, "UNKEYWORD")) {
		char l = kw_letter(c->ix.dir, &c->kw, arg, 0);
		int has = l && strchr(m->flags, l);

		return k[0] == 'K' || k[0] == 'k' ? has : !has;
	}
	if (!strcasecmp(k, "SINCE") || !strcasecmp(k, "BEFORE") || !strcasecmp(k, "ON") ||
	    !strcasecmp(k, "SENTSINCE") || !strcasecmp(k, "SENTBEFORE") || !strcasecmp(k, "SENTON")) {
		struct tm tm = { 0 };
		time_t when, day;
		int sent = !strncasecmp(k, "SENT", 4);

		if (!strptime(arg, "%d-%b-%Y", &tm))
			return -1;
		when = timegm(&tm);
		if (!sent) {   /* the internal date, in UTC (as INTERNALDATE says) */
			day = mtime_of(c, s->i);
			return date_cmp(k, day - day % 86400, when);
		}
		if (!s->loaded && !(s->loaded = load(c, s->i, &s->t) == 0))
			return 0;
		day = sent_day(s);
		return day >= 0 && date_cmp(k + 4, day, when);
	}
	if (!s->loaded && !(s->loaded = load(c, s->i, &s->t) == 0))
		return 0;
	if (!strcasecmp(k, "BODY"))
		return has_text(s, s->t.data + s->t.hdr, s->t.len - s->t.hdr, arg);
	if (!strcasecmp(k, "TEXT"))
		return has_text(s, s->t.data, s->t.len, arg);
	if (!strcasecmp(k, "FROM") || !strcasecmp(k, "TO") || !strcasecmp(k, "CC") ||
	    !strcasecmp(k, "BCC") || !strcasecmp(k, "SUBJECT"))
		return header_has(s, k, arg);
	return -1;
}

int cmd_search(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	size_t start;
	char cs[32];
	uint64_t maxms = 0;
	int used = 0;

	if (imap_sp(&r->p) < 0)
		return bad_args(r);
	if (r->uid)
		mbox_update(c, 1);
	start = r->p.pos;
	if (strncasecmp(r->p.s + start, "CHARSET ", 8) == 0) {
		r->p.pos += 8;
		if (imap_atom(&r->p, cs, sizeof cs) < 0 || imap_sp(&r->p) < 0)
			return bad_args(r);
		if (strcasecmp(cs, "UTF-8") && strcasecmp(cs, "US-ASCII"))
			return reply(r, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		start = r->p.pos;
	}
	out_fmt(c, "* SEARCH");
	for (size_t i = 0; i < c->ix.n; i++) {
		struct search s = { .c = c, .i = i };
		int all = 1, k = 0;

		r->p.pos = start;
		do {
			if ((k = key(&r->p, &s, 0)) < 0)
				break;
			all &= k;
		} while (imap_take(&r->p, ' '));
		free(s.t.data);
		if (k < 0 || imap_eol(&r->p) < 0) {
			out_fmt(c, "\r\n");
			return reply(r, "BAD", "Invalid search criteria");
		}
		if (all)
			out_fmt(c, " %u", r->uid ? c->ix.m[i].uid : (uint32_t)(i + 1));
		if (all && c->ix.m[i].modseq > maxms)
			maxms = c->ix.m[i].modseq;
		used |= s.modseq;
	}
	/* RFC 7162 3.1.5: the highest modseq of the messages found */
	if (used && maxms)
		out_fmt(c, " (MODSEQ %llu)", (unsigned long long)maxms);
	c->condstore |= used;
	out_fmt(c, "\r\n");
	return reply(r, "OK", "SEARCH completed");
}
