/*
 * mime.c - the bounded MIME structure parser (mime.h): bytes in, lines
 * out, each line given to the innermost open entity after the boundary
 * delimiters of every enclosing multipart had their look (RFC 2046 5.1.1:
 * a delimiter of an outer multipart also ends the inner parts, which is how
 * a malformed inner part without its own close-delimiter still ends).
 */
#include "mime.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Header fields kept for BODYSTRUCTURE (every entity) and ENVELOPE
 * (messages). */
static const char *const kept_fields[] = {
	"content-type", "content-transfer-encoding", "content-id", "content-description",
	"content-disposition", "content-language", "content-location", "content-md5",
	"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
	"message-id",
};

/* ---- the tree ------------------------------------------------------------------ */

static int new_part(struct mime *m, int parent, uint64_t off, uint64_t off_n)
{
	struct mime_part *p;

	if (m->nparts >= MIME_PARTS_MAX) {
		m->truncated = 1;
		return -1;
	}
	if (m->nparts == m->cap) {
		int cap = m->cap ? m->cap * 2 : 8;
		struct mime_part *np = realloc(m->parts, (size_t)cap * sizeof *np);

		if (!np) {
			m->oom = 1;
			return -1;
		}
		m->parts = np;
		m->cap = cap;
	}
	p = &m->parts[m->nparts];
	memset(p, 0, sizeof *p);
	p->parent = parent;
	p->first_child = p->last_child = p->next = -1;
	p->hdr_off = p->body_off = p->end_off = off;
	p->hdr_n = p->body_n = p->end_n = off_n;
	p->fields_off = m->keeplen;
	p->in_header = 1;
	if (parent >= 0) {
		struct mime_part *q = &m->parts[parent];

		if (q->last_child >= 0)
			m->parts[q->last_child].next = m->nparts;
		else
			q->first_child = m->nparts;
		q->last_child = m->nparts;
		q->nchildren++;
	}
	return m->nparts++;
}

int mime_init(struct mime *m)
{
	memset(m, 0, sizeof *m);
	if (new_part(m, -1, 0, 0) < 0)
		return -1;
	m->parts[0].is_message = 1;
	m->stack[0] = 0;
	return 0;
}

void mime_free(struct mime *m)
{
	free(m->parts);
	free(m->keep);
	m->parts = NULL;
	m->keep = NULL;
	m->nparts = m->cap = 0;
}

/* ---- header fields ------------------------------------------------------------- */

static int kept_name(const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	size_t n;

	if (!colon)
		return 0;
	n = (size_t)(colon - line);
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;   /* RFC 822 allowed white space before the colon */
	for (size_t i = 0; i < sizeof kept_fields / sizeof *kept_fields; i++)
		if (strlen(kept_fields[i]) == n && strncasecmp(kept_fields[i], line, n) == 0)
			return 1;
	return 0;
}

static void keep_line(struct mime *m, struct mime_part *p, const char *line, size_t len)
{
	if (p->fields_len + len + 1 > MIME_FIELDS_MAX || m->keeplen + len + 1 > MIME_KEEP_MAX) {
		m->truncated = 1;
		p->keeping = 0;
		return;
	}
	if (m->keeplen + len + 1 > m->keepcap) {
		size_t cap = m->keepcap ? m->keepcap : 1024;
		char *nk;

		while (cap < m->keeplen + len + 1)
			cap *= 2;
		if (!(nk = realloc(m->keep, cap))) {
			m->oom = 1;
			return;
		}
		m->keep = nk;
		m->keepcap = cap;
	}
	memcpy(m->keep + m->keeplen, line, len);
	m->keep[m->keeplen + len] = '\n';
	m->keeplen += len + 1;
	p->fields_len += len + 1;
}

/* A header line of entity p (RFC 5322 2.2: a line starting with white
 * space continues the previous field). */
static void header_line(struct mime *m, struct mime_part *p, const char *line, size_t len)
{
	if (len > 0 && (line[0] == ' ' || line[0] == '\t')) {
		if (p->keeping)
			keep_line(m, p, line, len);
		return;
	}
	p->keeping = kept_name(line, len);
	if (p->keeping)
		keep_line(m, p, line, len);
}

long mime_field(const struct mime *m, int i, const char *name, char *out, size_t cap)
{
	const struct mime_part *p = &m->parts[i];
	const char *s, *end;
	size_t nl = strlen(name), n = 0;

	if (p->fields_len == 0)
		return -1;
	s = m->keep + p->fields_off;
	end = s + p->fields_len;

	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		const char *colon = memchr(s, ':', (size_t)(eol - s));
		size_t k = colon ? (size_t)(colon - s) : 0;

		while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
			k--;
		if (colon && k == nl && strncasecmp(s, name, nl) == 0) {
			const char *v = colon + 1;

			for (;;) {   /* the value and its continuation lines, unfolded */
				for (; v < eol; v++)
					if (n + 1 < cap)
						out[n++] = *v;
				s = eol + 1;
				if (s >= end || (*s != ' ' && *s != '\t'))
					break;
				eol = memchr(s, '\n', (size_t)(end - s));
				v = s;
			}
			while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
				n--;
			out[n] = '\0';
			k = strspn(out, " \t");
			memmove(out, out + k, n - k + 1);
			return (long)(n - k);
		}
		s = eol + 1;
	}
	return -1;
}

/* ---- end of a header: the entity's type --------------------------------------- */

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* RFC 2046 5.1.1: 1-70 characters of bchars, not ending in a space. */
static int boundary_ok(const char *b)
{
	static const char bchars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				     "'()+_,-./:=? ";
	size_t n = strlen(b);

	return n >= 1 && n <= MIME_BOUNDARY_MAX && strspn(b, bchars) == n && b[n - 1] != ' ';
}

static void resolve_type(struct mime *m, int i)
{
	struct mime_part *p = &m->parts[i];
	char v[MIME_VALUE_MAX];
	struct mime_param par[MIME_PARAMS_MAX];
	int np = -1, digest = p->parent >= 0 && m->parts[p->parent].kind == MIME_MULTIPART &&
			      strcmp(m->parts[p->parent].subtype, "digest") == 0;

	if (mime_field(m, i, "content-type", v, sizeof v) >= 0)
		np = mime_parse_ctype(v, p->type, sizeof p->type, p->subtype, sizeof p->subtype,
				      par, MIME_PARAMS_MAX);
	if (np < 0 || !p->subtype[0]) {   /* RFC 2045 5.2, RFC 2046 5.1.5 */
		strcpy(p->type, digest ? "message" : "text");
		strcpy(p->subtype, digest ? "rfc822" : "plain");
		np = 0;
	}
	lower(p->type);
	lower(p->subtype);
	if (strcmp(p->type, "multipart") == 0) {
		for (int k = 0; k < np; k++)
			if (strcasecmp(par[k].name, "boundary") == 0 && boundary_ok(par[k].value))
				snprintf(p->boundary, sizeof p->boundary, "%s", par[k].value);
		if (p->boundary[0])
			p->kind = MIME_MULTIPART;
	} else if (strcmp(p->type, "message") == 0 && strcmp(p->subtype, "rfc822") == 0) {
		p->kind = MIME_MESSAGE;
	}
}

static void push(struct mime *m, int i)
{
	if (i < 0)
		return;
	if (m->depth >= MIME_DEPTH_MAX) {
		m->truncated = 1;
		return;
	}
	m->stack[++m->depth] = i;
}

/* The blank line after entity i's header: its body starts at `off`. */
static void header_end(struct mime *m, int i, uint64_t off, uint64_t off_n)
{
	struct mime_part *p = &m->parts[i];

	p->in_header = 0;
	p->body_off = off;
	p->body_n = off_n;
	resolve_type(m, i);
	if (p->kind == MIME_MESSAGE) {
		if (m->depth >= MIME_DEPTH_MAX) {
			m->truncated = 1;
			p->kind = MIME_LEAF;
			return;
		}
		int c = new_part(m, i, off, off_n);

		if (c < 0) {
			m->parts[i].kind = MIME_LEAF;
			return;
		}
		m->parts[c].is_message = 1;
		push(m, c);
	} else if (p->kind == MIME_MULTIPART && m->depth >= MIME_DEPTH_MAX) {
		m->truncated = 1;
		p->kind = MIME_LEAF;
	}
}

/* ---- lines --------------------------------------------------------------------- */

/* Ends the open entities above stack level k where the current line
 * starts, less the line break before it (RFC 2046 5.1.1: it belongs to the
 * delimiter), which `tl` says (0 at the end of the input). A multipart
 * whose close-delimiter line comes right before keeps that line break
 * (it cannot be shared by two delimiters), as Dovecot does. */
static void close_above(struct mime *m, int k, unsigned tl)
{
	for (; m->depth > k; m->depth--) {
		struct mime_part *p = &m->parts[m->stack[m->depth]];
		int keep = p->kind == MIME_MULTIPART && p->closed && p->closed_next == m->linestart;
		uint64_t end = m->linestart - (keep ? 0 : tl);
		uint64_t end_n = m->linestart_n - (keep || !tl ? 0 : 2);

		if (p->in_header) {
			p->in_header = 0;
			p->body_off = end < p->hdr_off ? p->hdr_off : end;
			p->body_n = end_n < p->hdr_n ? p->hdr_n : end_n;
			resolve_type(m, m->stack[m->depth]);
			if (p->kind == MIME_MESSAGE)
				p->kind = MIME_LEAF;   /* no room for a message inside */
		} else if (tl && !keep && m->linestart > p->body_off && p->lines > 0) {
			p->lines--;   /* the line feed before the delimiter is not the body's */
		}
		p->end_off = end < p->body_off ? p->body_off : end;
		p->end_n = end_n < p->body_n ? p->body_n : end_n;
	}
}

/* "--boundary" (1) or "--boundary--" (2), trailing white space allowed
 * (RFC 2046 5.1.1); 0 otherwise. */
static int delimiter(const struct mime_part *p, const char *line, size_t len)
{
	size_t bl = strlen(p->boundary);

	if (len < bl + 2 || line[0] != '-' || line[1] != '-' || memcmp(line + 2, p->boundary, bl))
		return 0;
	line += bl + 2;
	len -= bl + 2;
	int close = len >= 2 && line[0] == '-' && line[1] == '-';

	for (size_t i = close ? 2 : 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t')
			return 0;
	return close ? 2 : 1;
}

/* The stack level of the multipart whose delimiter this line is, or -1. */
static int find_delimiter(const struct mime *m, const char *line, size_t len, int *kind)
{
	if (len < 3 || line[0] != '-' || line[1] != '-')
		return -1;
	for (int k = m->depth; k >= 0; k--) {
		const struct mime_part *p = &m->parts[m->stack[k]];

		if (p->kind == MIME_MULTIPART && !p->in_header && !p->closed &&
		    (*kind = delimiter(p, line, len)) > 0)
			return k;
	}
	return -1;
}

static void count_line(struct mime *m, int upto)
{
	for (int k = 0; k <= upto; k++)
		if (!m->parts[m->stack[k]].in_header)
			m->parts[m->stack[k]].lines++;
}

static void on_delimiter(struct mime *m, int k, int kind, uint64_t next, uint64_t next_n)
{
	int mp = m->stack[k];

	close_above(m, k, m->prev_tl);
	if (kind == 2) {
		m->parts[mp].closed = 1;   /* the epilogue follows */
		m->parts[mp].closed_next = next;
		return;
	}
	push(m, new_part(m, mp, next, next_n));
}

/* One whole line (terminator of tl bytes, 0 at the end of input). Line
 * feeds are counted for every open entity whose body holds them. */
static void on_line(struct mime *m, unsigned tl)
{
	size_t len = m->linekeep;
	uint64_t next = m->linestart + m->linelen + tl;
	uint64_t next_n = m->linestart_n + m->linelen + (tl ? 2 : 0);
	int kind = 0, k = m->linelen == len ? find_delimiter(m, m->line, len, &kind) : -1;
	struct mime_part *top = &m->parts[m->stack[m->depth]];
	int d = m->depth, upto = d;

	if (k >= 0) {
		on_delimiter(m, k, kind, next, next_n);
		upto = k;
	} else if (top->in_header && m->linelen == 0) {
		header_end(m, m->stack[d], next, next_n);   /* may push a message */
		upto = d - 1;
	} else if (top->in_header) {
		header_line(m, top, m->line, len);
		upto = d - 1;
	}
	if (tl)
		count_line(m, upto);
	m->prev_tl = tl;
	m->linestart = next;
	m->linestart_n = next_n;
	m->linelen = m->linekeep = 0;
}

int mime_feed(struct mime *m, const void *data, size_t len)
{
	const char *s = data;

	if (m->oom)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		m->off++;
		if (ch == '\n') {
			/* CRLF or a bare LF ends the line; the CR is not content. */
			unsigned tl = m->cr ? 2 : 1;

			if (m->cr) {
				m->linelen--;
				if (m->linekeep > m->linelen)
					m->linekeep = (size_t)m->linelen;
			}
			m->cr = 0;
			on_line(m, tl);
			continue;
		}
		m->cr = ch == '\r';
		if (m->linekeep < sizeof m->line)
			m->line[m->linekeep++] = ch;
		m->linelen++;
	}
	return m->oom ? -1 : 0;
}

int mime_finish(struct mime *m)
{
	if (m->oom)
		return -1;
	if (m->finished)
		return 0;
	m->finished = 1;
	m->cr = 0;
	if (m->linelen > 0)
		on_line(m, 0);
	m->prev_tl = 0;
	close_above(m, -1, 0);
	m->depth = 0;
	return m->oom ? -1 : 0;
}

int mime_parse(struct mime *m, const void *data, size_t len)
{
	if (mime_init(m) < 0)
		return -1;
	if (mime_feed(m, data, len) < 0 || mime_finish(m) < 0) {
		mime_free(m);
		return -1;
	}
	return 0;
}

/* ---- Content-Type and friends (RFC 2045 5.1) ----------------------------------- */

static const char *skip_cfws(const char *s)
{
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
			s++;
		if (*s != '(')
			return s;
		for (int depth = 0; *s; s++) {   /* RFC 5322 3.2.2: comments nest */
			if (*s == '\\' && s[1])
				s++;
			else if (*s == '(')
				depth++;
			else if (*s == ')' && --depth == 0) {
				s++;
				break;
			}
		}
	}
}

static int tspecial(char c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL || c == ' ' || c == '\t' ||
	       (unsigned char)c < 0x20 || c == 0x7f;
}

/* A token into out (truncated); the position after it. */
static const char *token(const char *s, char *out, size_t cap)
{
	size_t n = 0;

	for (; *s && !tspecial(*s); s++)
		if (n + 1 < cap)
			out[n++] = *s;
	out[n] = '\0';
	return s;
}

/* A quoted string's content into out (truncated). */
static const char *quoted(const char *s, char *out, size_t cap)
{
	size_t n = 0;

	for (s++; *s && *s != '"'; s++) {
		if (*s == '\\' && s[1])
			s++;
		if (n + 1 < cap)
			out[n++] = *s;
	}
	out[n] = '\0';
	return *s ? s + 1 : s;
}

int mime_parse_ctype(const char *v, char *type, size_t tcap, char *subtype, size_t scap,
		     struct mime_param *params, int max)
{
	int np = 0;

	v = token(skip_cfws(v), type, tcap);
	if (!type[0])
		return -1;
	if (subtype) {
		subtype[0] = '\0';
		v = skip_cfws(v);
		if (*v != '/')
			return -1;
		v = token(skip_cfws(v + 1), subtype, scap);
		if (!subtype[0])
			return -1;
	}
	while (*(v = skip_cfws(v)) == ';') {
		struct mime_param tmp, *p = np < max ? &params[np] : &tmp;

		v = token(skip_cfws(v + 1), p->name, sizeof p->name);
		v = skip_cfws(v);
		if (!p->name[0] || *v != '=')
			break;
		v = skip_cfws(v + 1);
		v = *v == '"' ? quoted(v, p->value, sizeof p->value)
			      : token(v, p->value, sizeof p->value);
		if (np < max)
			np++;
	}
	return np;
}

/* ---- addresses (RFC 5322 3.4) -------------------------------------------------- */

/* Copies s[from..to) without its comments and surrounding white space
 * into place at `dst`; quoted strings are kept, quotes removed. */
static char *clean(char *dst, const char *from, const char *to)
{
	char *start = dst;

	while (from < to) {
		if (*from == '(') {
			const char *e = skip_cfws(from);

			from = e > to ? to : e;
			*dst++ = ' ';
		} else if (*from == '"') {
			for (from++; from < to && *from != '"'; from++) {
				if (*from == '\\' && from + 1 < to)
					from++;
				*dst++ = *from;
			}
			from += from < to;
		} else {
			*dst++ = *from++;
		}
	}
	*dst = '\0';
	while (*start == ' ' || *start == '\t')
		memmove(start, start + 1, strlen(start));
	for (size_t n = strlen(start); n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t');)
		start[--n] = '\0';
	return start;
}

/* The end of the next item at this level: stops at one of `stops` outside
 * quotes, comments and angle brackets. */
static char *item_end(char *s, const char *stops)
{
	int angle = 0;

	while (*s) {
		if (*s == '"') {
			for (s++; *s && *s != '"'; s++)
				if (*s == '\\' && s[1])
					s++;
			s += *s != 0;
			continue;
		}
		if (*s == '(') {
			s = (char *)skip_cfws(s);
			continue;
		}
		if (*s == '<')
			angle = 1;
		else if (*s == '>')
			angle = 0;
		else if (!angle && strchr(stops, *s))
			return s;
		s++;
	}
	return s;
}

/* addr-spec "local@domain" in place into a->mailbox / a->host. */
static void addr_spec(struct mime_addr *a, char *spec)
{
	char *at = strrchr(spec, '@');

	if (at) {
		*at = '\0';
		a->host = clean(at + 1, at + 1, at + 1 + strlen(at + 1));
	}
	a->mailbox = clean(spec, spec, spec + strlen(spec));
	if (!a->host)
		a->host = "";   /* RFC 3501 7.4.2 would say NIL only for groups */
}

/* One mailbox "Name <route:local@domain>" or "local@domain (comment)". */
static void mailbox(struct mime_addr *a, char *s, char *e)
{
	char *lt = memchr(s, '<', (size_t)(e - s));

	memset(a, 0, sizeof *a);
	if (lt) {
		char *gt = memchr(lt, '>', (size_t)(e - lt)), *spec = lt + 1, *colon;

		if (!gt)
			gt = e;
		*gt = '\0';
		*lt = '\0';
		if (spec[0] == '@' && (colon = strchr(spec, ':'))) {   /* obs-route */
			*colon = '\0';
			a->route = spec;
			spec = colon + 1;
		}
		a->name = clean(s, s, lt);
		if (!a->name[0])
			a->name = NULL;
		addr_spec(a, spec);
		return;
	}
	*e = '\0';
	addr_spec(a, s);
}

int mime_parse_addresses(char *s, struct mime_addr *out, int max)
{
	int n = 0;

	while (*s && n < max) {
		char *e = item_end(s, ",:;"), *p, end = *e;

		if (end == ':' && n + 1 < max) {   /* group "name: a, b;" (RFC 5322 3.4) */
			*e = '\0';
			memset(&out[n], 0, sizeof out[n]);
			out[n++].mailbox = clean(s, s, e);
			s = e + 1;
			continue;
		}
		p = s;
		while (*p == ' ' || *p == '\t')
			p++;
		if (p < e)
			mailbox(&out[n++], p, e);   /* may write a NUL at e */
		if (end == ';' && n < max)       /* the end of a group */
			memset(&out[n++], 0, sizeof out[0]);
		s = end ? e + 1 : e;
	}
	return n;
}

int mime_header_done(const struct mime *m)
{
	return m->nparts > 0 && !m->parts[0].in_header;
}
