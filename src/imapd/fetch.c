/*
 * fetch.c - FETCH, STORE and SEARCH over the selected mailbox's view.
 *
 * Flags: IMAP system flags map to Maildir info letters (\Seen S,
 * \Answered R, \Flagged F, \Deleted T, \Draft D); STORE renames the file
 * (maildir_set_flags), so other connections see the change at their
 * next update. BODY[] without .PEEK sets \Seen (RFC 3501 6.4.5).
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "imapd.h"
#include "maildir.h"

#define FETCH_ATT_MAX 1024     /* bytes of one fetch attribute */
#define FETCH_ATTS_MAX 32      /* attributes in one FETCH */
#define SEARCH_DEPTH_MAX 32    /* nesting of NOT/OR/( ) in SEARCH */

static const struct { char letter; const char *name; } flag_map[] = {
	{ 'R', "\\Answered" }, { 'F', "\\Flagged" }, { 'T', "\\Deleted" },
	{ 'S', "\\Seen" }, { 'D', "\\Draft" },
};

void flags_imap(const char *letters, char *out, size_t cap)
{
	size_t n = 0;

	n += (size_t)snprintf(out, cap, "(");
	for (size_t i = 0; i < sizeof flag_map / sizeof *flag_map; i++)
		if (strchr(letters, flag_map[i].letter) && n < cap)
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n > 1 ? " " : "",
					      flag_map[i].name);
	if (n < cap)
		snprintf(out + n, cap - n, ")");
}

static char flag_letter(const char *name)
{
	for (size_t i = 0; i < sizeof flag_map / sizeof *flag_map; i++)
		if (strcasecmp(flag_map[i].name, name) == 0)
			return flag_map[i].letter;
	return 0;
}

int flags_parse(struct imap_parser *p, char *letters, size_t cap)
{
	char f[64];
	size_t n = 0;
	int paren = imap_take(p, '('), first = 1;

	letters[0] = '\0';
	while (!(paren && imap_take(p, ')'))) {
		char l;

		if (!first && (!paren || imap_sp(p) < 0))
			return paren ? -1 : 0;
		first = 0;
		if (imap_take(p, '\\')) {
			if (imap_atom(p, f + 1, sizeof f - 1) < 0)
				return -1;
			f[0] = '\\';
		} else if (imap_atom(p, f, sizeof f) < 0) {
			return -1;
		}
		/* Keywords are not kept yet (no PERMANENTFLAGS \*): ignored. */
		if ((l = flag_letter(f)) && !strchr(letters, l) && n + 1 < cap) {
			letters[n++] = l;
			letters[n] = '\0';
		}
	}
	return 0;
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
			const char *colon = memchr(ln, ':', ll);
			char name[128];
			size_t nl2 = colon ? (size_t)(colon - ln) : 0;

			keep = 0;
			if (colon && nl2 < sizeof name - 2 && nl2 > 0) {
				snprintf(name, sizeof name, " %.*s ", (int)nl2, ln);
				keep = strcasestr(list, name) != NULL;
			}
			keep = not ? !keep && colon : keep;
		}
		if (keep) {
			memcpy(*out + n, ln, ll);
			n += ll;
		}
		i += ll;
	}
	if (*out) {
		memcpy(*out + n, "\r\n", 2);
		n += 2;
	}
	*outlen = n;
	(void)c;
}

/* BODY[section]<partial>: section is "", HEADER, TEXT, HEADER.FIELDS (..). */
static int body_part(struct imapd_conn *c, const char *att, const struct text *t)
{
	const char *lb = strchr(att, '['), *rb = strrchr(att, ']');
	char sect[FETCH_ATT_MAX], list[FETCH_ATT_MAX], *buf = NULL;
	const char *data;
	size_t len, slen = (size_t)(rb - lb - 1);
	unsigned long start = 0, count = 0;
	int partial = 0;

	memcpy(sect, lb + 1, slen);
	sect[slen] = '\0';
	if (rb[1] == '<') {
		if (sscanf(rb + 2, "%lu.%lu>", &start, &count) != 2 || count == 0)
			return -1;
		partial = 1;
	} else if (rb[1]) {
		return -1;
	}
	if (!sect[0]) {
		data = t->data;
		len = t->len;
	} else if (!strcasecmp(sect, "HEADER")) {
		data = t->data;
		len = t->hdr;
	} else if (!strcasecmp(sect, "TEXT")) {
		data = t->data + t->hdr;
		len = t->len - t->hdr;
	} else if (!strncasecmp(sect, "HEADER.FIELDS", 13)) {
		const char *paren = strchr(sect, '(');
		int not = !strncasecmp(sect, "HEADER.FIELDS.NOT", 17);

		if (!paren || !strchr(paren, ')'))
			return -1;
		snprintf(list, sizeof list, " %.*s ", (int)(strchr(paren, ')') - paren - 1), paren + 1);
		header_fields(c, t, list, not, &buf, &len);
		if (!buf)
			return -1;
		data = buf;
	} else {
		return -1;   /* MIME part numbers: next session */
	}
	if (partial) {
		data += start < len ? start : len;
		len = start < len ? len - start : 0;
		if (len > count)
			len = count;
	}
	out_fmt(c, "BODY[%s]", sect);
	if (partial)
		out_fmt(c, "<%lu>", start);
	out_fmt(c, " {%zu}\r\n", len);
	out_raw(c, data, len);
	free(buf);
	return 0;
}

/* One message's FETCH response. */
static int fetch_one(struct imapd_conn *c, size_t i, char atts[][FETCH_ATT_MAX], int natts,
		     int set_seen)
{
	struct imap_msg *m = &c->ix.m[i];
	struct text t = { 0 };
	char fl[128], date[64];
	int loaded = 0, rc = 0;

	if (set_seen && !c->readonly && !strchr(m->flags, 'S')) {
		char letters[MAILDIR_FLAGS_MAX + 2], nn[300];

		snprintf(letters, sizeof letters, "%sS", m->flags);
		if (maildir_set_flags(c->ix.dir, m->name, letters, nn, sizeof nn) == 0) {
			free(m->name);
			m->name = strdup(nn);
			m->in_new = 0;
			snprintf(m->flags, sizeof m->flags, "%s", strchr(nn, ',') ? strrchr(nn, ',') + 1 : "");
		}
	}
	out_fmt(c, "* %zu FETCH (", i + 1);
	for (int k = 0; k < natts && rc == 0; k++) {
		const char *a = atts[k];

		if (k)
			out_raw(c, " ", 1);
		if (!strcasecmp(a, "UID")) {
			out_fmt(c, "UID %u", m->uid);
		} else if (!strcasecmp(a, "FLAGS")) {
			flags_imap(m->flags, fl, sizeof fl);
			out_fmt(c, "FLAGS %s", fl);
		} else if (!strcasecmp(a, "INTERNALDATE")) {
			time_t when = mtime_of(c, i);
			struct tm tm;

			gmtime_r(&when, &tm);
			strftime(date, sizeof date, "%d-%b-%Y %H:%M:%S +0000", &tm);
			out_fmt(c, "INTERNALDATE \"%s\"", date);
		} else if (!strcasecmp(a, "RFC822.SIZE")) {
			if (!m->size && !loaded)
				loaded = load(c, i, &t) == 0, m->size = t.len;
			out_fmt(c, "RFC822.SIZE %llu", (unsigned long long)m->size);
		} else {
			if (!loaded && !(loaded = load(c, i, &t) == 0)) {
				rc = -1;
				break;
			}
			if (!strcasecmp(a, "RFC822")) {
				out_fmt(c, "RFC822 {%zu}\r\n", t.len);
				out_raw(c, t.data, t.len);
			} else if (!strcasecmp(a, "RFC822.HEADER")) {
				out_fmt(c, "RFC822.HEADER {%zu}\r\n", t.hdr);
				out_raw(c, t.data, t.hdr);
			} else if (!strcasecmp(a, "RFC822.TEXT")) {
				out_fmt(c, "RFC822.TEXT {%zu}\r\n", t.len - t.hdr);
				out_raw(c, t.data + t.hdr, t.len - t.hdr);
			} else {
				rc = body_part(c, a, &t);
			}
		}
	}
	out_fmt(c, ")\r\n");
	free(t.data);
	return rc;
}

static int valid_att(const char *a)
{
	static const char *const simple[] = { "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE",
					      "RFC822", "RFC822.HEADER", "RFC822.TEXT" };

	for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
		if (!strcasecmp(a, simple[i]))
			return 1;
	return (!strncasecmp(a, "BODY[", 5) || !strncasecmp(a, "BODY.PEEK[", 10)) && strchr(a, ']');
}

int cmd_fetch(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	struct imap_seqset set;
	static char atts[FETCH_ATTS_MAX + 1][FETCH_ATT_MAX];
	int natts = 0, paren, seen = 0, rc = 0;
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
	if ((paren && !imap_take(&r->p, ')')) || imap_eol(&r->p) < 0) {
		imap_seqset_free(&set);
		return bad_args(r);
	}
	/* Macros (RFC 3501 6.4.5); ENVELOPE/BODYSTRUCTURE: next session. */
	if (natts == 1 && (!strcasecmp(atts[0], "ALL") || !strcasecmp(atts[0], "FAST") ||
			   !strcasecmp(atts[0], "FULL"))) {
		strcpy(atts[0], "FLAGS");
		strcpy(atts[1], "INTERNALDATE");
		strcpy(atts[2], "RFC822.SIZE");
		natts = 3;
	}
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
		if (fetch_one(c, pos[i], atts, natts, seen) < 0)
			rc = -1;
	free(pos);
	if (rc < 0)
		return reply(r, "NO", "Some messages could not be fetched");
	return reply(r, "OK", "FETCH completed");
}

int cmd_store(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	struct imap_seqset set;
	char item[32], letters[MAILDIR_FLAGS_MAX + 1], fl[128], nn[300];
	size_t *pos, n;
	int mode, silent, rc;

	if (imap_sp(&r->p) < 0 || imap_seqset(&r->p, &set) < 0)
		return bad_args(r);
	if (imap_sp(&r->p) < 0 || imap_atom(&r->p, item, sizeof item) < 0 || imap_sp(&r->p) < 0 ||
	    flags_parse(&r->p, letters, sizeof letters) < 0 || imap_eol(&r->p) < 0) {
		imap_seqset_free(&set);
		return bad_args(r);
	}
	mode = item[0] == '+' ? 1 : item[0] == '-' ? -1 : 0;
	silent = strcasestr(item, ".SILENT") != NULL;
	if (strncasecmp(item + (mode != 0), "FLAGS", 5) != 0) {
		imap_seqset_free(&set);
		return reply(r, "BAD", "Expected FLAGS, +FLAGS or -FLAGS");
	}
	if (c->readonly) {
		imap_seqset_free(&set);
		return reply(r, "NO", "[READ-ONLY] Mailbox is read-only");
	}
	rc = set_select(c, &set, r->uid, &pos, &n);
	imap_seqset_free(&set);
	if (rc < 0)
		return reply(r, "BAD", "Invalid message numbers");
	for (size_t i = 0; i < n; i++) {
		struct imap_msg *m = &c->ix.m[pos[i]];
		char want[MAILDIR_FLAGS_MAX + 1];
		size_t k = 0;

		for (const char *f = "DFPRSTabcdefghijklmnopqrstuvwxyz"; *f; f++) {
			int has = strchr(m->flags, *f) != NULL, in = strchr(letters, *f) != NULL;

			if (mode == 0 ? (in || (has && !strchr("DFRST", *f))) :
			    mode > 0 ? (has || in) : (has && !in))
				want[k++] = *f;
		}
		want[k] = '\0';
		if (strcmp(want, m->flags) != 0 &&
		    maildir_set_flags(c->ix.dir, m->name, want, nn, sizeof nn) == 0) {
			free(m->name);
			m->name = strdup(nn);
			m->in_new = 0;
			strcpy(m->flags, want);
		}
		if (!silent) {
			flags_imap(m->flags, fl, sizeof fl);
			if (r->uid)
				out_fmt(c, "* %zu FETCH (FLAGS %s UID %u)\r\n", pos[i] + 1, fl, m->uid);
			else
				out_fmt(c, "* %zu FETCH (FLAGS %s)\r\n", pos[i] + 1, fl);
		}
	}
	free(pos);
	return reply(r, "OK", "STORE completed");
}

/* ---- SEARCH (RFC 3501 6.4.4, a subset) -------------------------------------------- */

struct search {
	struct imapd_conn *c;
	size_t i;                 /* the message */
	struct text t;
	int loaded;
};

static int has_text(struct search *s, const char *hay, size_t len, const char *needle)
{
	size_t nl = strlen(needle);

	for (size_t k = 0; k + nl <= len; k++)
		if (strncasecmp(hay + k, needle, nl) == 0)
			return 1;
	return nl == 0;
	(void)s;
}

static int header_has(struct search *s, const char *field, const char *needle)
{
	char list[160], *buf;
	size_t len;
	int r;

	snprintf(list, sizeof list, " %s ", field);
	header_fields(s->c, &s->t, list, 0, &buf, &len);
	r = buf && has_text(s, buf + strlen(field) + 1 < buf + len ? buf : buf, len, needle);
	free(buf);
	return r;
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
	if (!strcasecmp(k, "SINCE") || !strcasecmp(k, "BEFORE") || !strcasecmp(k, "ON")) {
		struct tm tm = { 0 };
		time_t when;

		if (!strptime(arg, "%d-%b-%Y", &tm))
			return -1;
		when = timegm(&tm);
		time_t mt = mtime_of(c, s->i);
		return k[0] == 'S' || k[0] == 's' ? mt >= when :
		       k[0] == 'B' || k[0] == 'b' ? mt < when : mt >= when && mt < when + 86400;
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
		int all = 1, k;

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
	}
	out_fmt(c, "\r\n");
	return reply(r, "OK", "SEARCH completed");
}
