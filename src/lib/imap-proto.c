/*
 * imap-proto.c - IMAP command assembly (lines + literals), tokens,
 * sequence sets and modified UTF-7. See imap-proto.h for the contract.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-proto.h"

#define LITERAL_DIGITS_MAX 10   /* "{4294967295}" at most */

/* ---- 1. assembly ------------------------------------------------------------ */

void imap_cmd_init(struct imap_cmd *c)
{
	memset(c, 0, sizeof *c);
	strcpy(c->tag, "*");
}

void imap_cmd_free(struct imap_cmd *c)
{
	free(c->buf);
	imap_cmd_init(c);
}

void imap_cmd_reset(struct imap_cmd *c)
{
	char *buf = c->buf;
	size_t cap = c->cap;

	if (cap > IMAP_CMD_KEEP) {
		free(buf);
		buf = NULL;
		cap = 0;
	}
	imap_cmd_init(c);
	c->buf = buf;
	c->cap = cap;
}

static int grow(struct imap_cmd *c, size_t need)
{
	size_t cap = c->cap ? c->cap : 256;
	char *nb;

	if (need <= c->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	nb = realloc(c->buf, cap);
	if (!nb)
		return -1;
	c->buf = nb;
	c->cap = cap;
	return 0;
}

static int fail(struct imap_cmd *c, const char *why)
{
	if (!c->failed) {
		c->failed = 1;
		strncpy(c->err, why, sizeof c->err - 1);
	}
	return -1;
}

static int tag_char(int ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("(){%*\"\\+", ch);
}

/* The tag and, for the literal limit, whether this is APPEND. */
static void first_line(struct imap_cmd *c, const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && i < IMAP_TAG_MAX && tag_char((unsigned char)line[i]))
		i++;
	if (i > 0 && (i == len || line[i] == ' ')) {
		memcpy(c->tag, line, i);
		c->tag[i] = '\0';
	}
	c->append = len - i > 7 && line[i] == ' ' && strncasecmp(line + i + 1, "APPEND", 6) == 0 &&
		    line[i + 7] == ' ';
}

/* A literal announcement at the end of the line: its size, or -1. */
static int literal_at_end(const char *line, size_t len, uint64_t *n, int *sync)
{
	size_t i, digits = 0;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	i = len - 1;
	*sync = 1;
	if (line[i - 1] == '+') {   /* RFC 7888: {n+} is non-synchronizing */
		*sync = 0;
		i--;
	}
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9') {
		i--;
		digits++;
	}
	if (digits == 0 || digits > LITERAL_DIGITS_MAX || i == 0 || line[i - 1] != '{')
		return -1;
	*n = strtoull(line + i, NULL, 10);
	return 0;
}

int imap_cmd_line(struct imap_cmd *c, const char *line, size_t len, int toolong)
{
	uint64_t n = 0, limit;
	int sync = 1, lit;

	if (c->len == 0 && !c->failed && !toolong)
		first_line(c, line, len);
	if (toolong) {
		fail(c, "command line too long");
		return IMAP_CMD_FAILED;   /* its literal, if any, is unknown: end here */
	}
	lit = literal_at_end(line, len, &n, &sync) == 0;
	if (!c->failed) {
		if (c->len + len + 2 > IMAP_CMD_MAX)
			fail(c, "command too long");
		else if (grow(c, c->len + len + 2) < 0)
			fail(c, "out of memory");
		else {
			memcpy(c->buf + c->len, line, len);
			memcpy(c->buf + c->len + len, "\r\n", 2);
			c->len += len + 2;
		}
	}
	if (!lit)
		return c->failed ? IMAP_CMD_FAILED : IMAP_CMD_DONE;
	limit = c->append ? IMAP_APPEND_MAX : IMAP_CMD_MAX;
	if (++c->nlits > IMAP_LITERALS_MAX)
		fail(c, "too many literals");
	else if (n > limit || c->len + n > limit + IMAP_CMD_MAX)
		fail(c, c->append ? "message too large (APPENDLIMIT)" : "literal too large");
	else if (!c->failed && grow(c, c->len + (size_t)n) < 0)
		fail(c, "out of memory");
	/* RFC 3501 7.5: a refused synchronizing literal is never sent. */
	if (c->failed && sync)
		return IMAP_CMD_FAILED;
	c->lit_left = n;
	c->lit_sync = sync;
	return IMAP_CMD_LITERAL;
}

int imap_cmd_raw(struct imap_cmd *c, const char *data, size_t len)
{
	if (len > c->lit_left)
		len = (size_t)c->lit_left;
	if (!c->failed) {
		memcpy(c->buf + c->len, data, len);
		c->len += len;
	}
	c->lit_left -= len;
	return IMAP_CMD_MORE;
}

uint64_t imap_cmd_literal_left(const struct imap_cmd *c) { return c->lit_left; }
int imap_cmd_sync(const struct imap_cmd *c) { return c->lit_sync; }
const char *imap_cmd_error(const struct imap_cmd *c) { return c->err; }
const char *imap_cmd_tag(const struct imap_cmd *c) { return c->tag; }

char *imap_cmd_text(struct imap_cmd *c, size_t *len)
{
	*len = c->len;
	return c->buf;
}

/* ---- 2. tokens -------------------------------------------------------------- */

void imap_parser_init(struct imap_parser *p, char *s, size_t len)
{
	p->s = s;
	p->len = len;
	p->pos = 0;
	p->err = NULL;
}

static int perr(struct imap_parser *p, const char *why)
{
	p->err = why;
	return -1;
}

int imap_peek(const struct imap_parser *p)
{
	if (p->pos >= p->len || p->s[p->pos] == '\r' || p->s[p->pos] == '\n')
		return -1;
	return (unsigned char)p->s[p->pos];
}

int imap_take(struct imap_parser *p, int ch)
{
	if (imap_peek(p) != ch)
		return 0;
	p->pos++;
	return 1;
}

int imap_sp(struct imap_parser *p)
{
	return imap_take(p, ' ') ? 0 : perr(p, "expected a space");
}

int imap_eol(struct imap_parser *p)
{
	if (p->pos == p->len ||
	    (p->len - p->pos == 2 && p->s[p->pos] == '\r' && p->s[p->pos + 1] == '\n'))
		return 0;
	return perr(p, "unexpected text at the end of the command");
}

/* RFC 3501 9: ATOM-CHAR is any CHAR except atom-specials. */
static int atom_char(int ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("(){%*\"\\]", ch);
}

static int astring_char(int ch)
{
	return atom_char(ch) || ch == ']';
}

static int chars(struct imap_parser *p, int (*ok)(int), char *out, size_t cap, const char *what)
{
	size_t n = 0;
	int ch;

	while ((ch = imap_peek(p)) >= 0 && ok(ch)) {
		if (n + 1 >= cap)
			return perr(p, "token too long");
		out[n++] = (char)ch;
		p->pos++;
	}
	out[n] = '\0';
	return n ? 0 : perr(p, what);
}

int imap_tag(struct imap_parser *p, char *out, size_t cap)
{
	return chars(p, tag_char, out, cap < IMAP_TAG_MAX + 1 ? cap : IMAP_TAG_MAX + 1,
		     "missing or invalid tag");
}

int imap_atom(struct imap_parser *p, char *out, size_t cap)
{
	return chars(p, atom_char, out, cap, "expected an atom");
}

int imap_fetch_token(struct imap_parser *p, char *out, size_t cap)
{
	size_t n = 0;
	int ch, depth = 0;

	while ((ch = imap_peek(p)) >= 0) {
		if (depth == 0 && (ch == ' ' || ch == ')' || ch == '('))
			break;
		if (ch == '[')
			depth++;
		else if (ch == ']' && --depth < 0)
			return perr(p, "unbalanced ']'");
		if (ch < 0x20 || ch == 0x7f || n + 1 >= cap)
			return perr(p, "invalid fetch attribute");
		out[n++] = (char)ch;
		p->pos++;
	}
	out[n] = '\0';
	if (depth)
		return perr(p, "missing ']'");
	return n ? 0 : perr(p, "expected a fetch attribute");
}

int imap_number(struct imap_parser *p, uint32_t *out)
{
	uint64_t v = 0;
	size_t start = p->pos;
	int ch;

	while ((ch = imap_peek(p)) >= '0' && ch <= '9') {
		v = v * 10 + (uint64_t)(ch - '0');
		if (v > UINT32_MAX)
			return perr(p, "number too large");
		p->pos++;
	}
	if (p->pos == start)
		return perr(p, "expected a number");
	*out = (uint32_t)v;
	return 0;
}

int imap_nznumber(struct imap_parser *p, uint32_t *out)
{
	if (imap_number(p, out) < 0)
		return -1;
	return *out ? 0 : perr(p, "expected a non-zero number");
}

int imap_modseq(struct imap_parser *p, uint64_t *out)
{
	uint64_t v = 0;
	size_t start = p->pos;
	int ch;

	while ((ch = imap_peek(p)) >= '0' && ch <= '9') {
		v = v * 10 + (uint64_t)(ch - '0');
		if (v > IMAP_MODSEQ_MAX)
			return perr(p, "mod-sequence too large");
		p->pos++;
	}
	if (p->pos == start)
		return perr(p, "expected a mod-sequence");
	*out = v;
	return 0;
}

int imap_modifier(struct imap_parser *p, const char *name, uint64_t *out)
{
	char atom[32];

	if (!imap_take(p, '(') || imap_atom(p, atom, sizeof atom) < 0 ||
	    strcasecmp(atom, name) != 0 || imap_sp(p) < 0 || imap_modseq(p, out) < 0 ||
	    !imap_take(p, ')'))
		return perr(p, "invalid modifier");
	return 0;
}

/* "{n}" / "{n+}" CRLF: the literal's place and size. */
static int literal_head(struct imap_parser *p, size_t *start, size_t *n)
{
	uint32_t v;

	if (!imap_take(p, '{') || imap_number(p, &v) < 0)
		return perr(p, "invalid literal");
	imap_take(p, '+');
	if (!imap_take(p, '}') || p->len - p->pos < 2 || p->s[p->pos] != '\r' ||
	    p->s[p->pos + 1] != '\n')
		return perr(p, "invalid literal");
	p->pos += 2;
	if (v > p->len - p->pos)
		return perr(p, "literal shorter than announced");
	*start = p->pos;
	*n = v;
	p->pos += v;
	return 0;
}

int imap_literal_ref(struct imap_parser *p, const char **data, size_t *len)
{
	size_t start;

	if (imap_peek(p) != '{')
		return perr(p, "expected a literal");
	if (literal_head(p, &start, len) < 0)
		return -1;
	*data = p->s + start;
	return 0;
}

static int quoted(struct imap_parser *p, char *out, size_t cap, size_t *out_len)
{
	size_t n = 0;

	p->pos++;   /* the opening quote */
	for (;;) {
		int ch = p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;

		if (ch < 0 || ch == '\r' || ch == '\n' || ch == 0)
			return perr(p, "unterminated quoted string");
		p->pos++;
		if (ch == '"')
			break;
		if (ch == '\\') {
			ch = p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
			if (ch != '"' && ch != '\\')
				return perr(p, "invalid escape in quoted string");
			p->pos++;
		}
		if (n + 1 >= cap)
			return perr(p, "string too long");
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	*out_len = n;
	return 0;
}

int imap_string(struct imap_parser *p, char *out, size_t cap, size_t *out_len)
{
	size_t start, n;

	if (imap_peek(p) == '"')
		return quoted(p, out, cap, out_len);
	if (imap_peek(p) != '{')
		return perr(p, "expected a string");
	if (literal_head(p, &start, &n) < 0)
		return -1;
	if (n + 1 > cap)
		return perr(p, "string too long");
	if (memchr(p->s + start, '\0', n))
		return perr(p, "NUL in a string");
	memcpy(out, p->s + start, n);
	out[n] = '\0';
	*out_len = n;
	return 0;
}

int imap_astring(struct imap_parser *p, char *out, size_t cap, size_t *out_len)
{
	int ch = imap_peek(p);

	if (ch == '"' || ch == '{')
		return imap_string(p, out, cap, out_len);
	if (chars(p, astring_char, out, cap, "expected a string") < 0)
		return -1;
	*out_len = strlen(out);
	return 0;
}

/* RFC 3501 9: list-mailbox also takes the wildcards '%' and '*'. */
static int list_char(int ch)
{
	return astring_char(ch) || ch == '%' || ch == '*';
}

int imap_list_mailbox(struct imap_parser *p, char *out, size_t cap, size_t *out_len)
{
	int ch = imap_peek(p);

	if (ch == '"' || ch == '{')
		return imap_string(p, out, cap, out_len);
	if (chars(p, list_char, out, cap, "expected a mailbox pattern") < 0)
		return -1;
	*out_len = strlen(out);
	return 0;
}

/* ---- 3. sequence sets ------------------------------------------------------- */

static int seq_number(const char **s, uint32_t *out)
{
	uint64_t v = 0;
	const char *q = *s;

	if (*q == '*') {
		*out = IMAP_SEQ_STAR;
		*s = q + 1;
		return 0;
	}
	if (*q < '1' || *q > '9')
		return -1;
	while (*q >= '0' && *q <= '9') {
		v = v * 10 + (uint64_t)(*q++ - '0');
		if (v >= UINT32_MAX)
			return -1;
	}
	*out = (uint32_t)v;
	*s = q;
	return 0;
}

int imap_seqset_parse(const char *s, struct imap_seqset *set)
{
	size_t cap = 0;

	set->r = NULL;
	set->n = 0;
	for (;;) {
		struct imap_range r;

		if (seq_number(&s, &r.lo) < 0)
			goto bad;
		r.hi = r.lo;
		if (*s == ':' && (s++, seq_number(&s, &r.hi) < 0))
			goto bad;
		if (set->n == cap) {
			struct imap_range *nr;

			if (cap >= IMAP_SEQSET_MAX)
				goto bad;
			cap = cap ? cap * 2 : 8;
			nr = realloc(set->r, cap * sizeof *nr);
			if (!nr)
				goto bad;
			set->r = nr;
		}
		set->r[set->n++] = r;
		if (*s == '\0')
			return 0;
		if (*s++ != ',')
			goto bad;
	}
bad:
	imap_seqset_free(set);
	return -1;
}

static int seqset_char(int ch)
{
	return (ch >= '0' && ch <= '9') || ch == ':' || ch == ',' || ch == '*';
}

int imap_seqset(struct imap_parser *p, struct imap_seqset *set)
{
	size_t start = p->pos, n;
	char *tmp;
	int r;

	while (seqset_char(imap_peek(p)))
		p->pos++;
	n = p->pos - start;
	if (n == 0)
		return perr(p, "expected a sequence set");
	tmp = malloc(n + 1);
	if (!tmp)
		return perr(p, "out of memory");
	memcpy(tmp, p->s + start, n);
	tmp[n] = '\0';
	r = imap_seqset_parse(tmp, set);
	free(tmp);
	return r < 0 ? perr(p, "invalid sequence set") : 0;
}

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->r);
	set->r = NULL;
	set->n = 0;
}

int imap_seqset_has(const struct imap_seqset *set, uint32_t n, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo == IMAP_SEQ_STAR ? star : set->r[i].lo;
		uint32_t hi = set->r[i].hi == IMAP_SEQ_STAR ? star : set->r[i].hi;

		if (lo > hi) {   /* RFC 3501 9: "4:2" is "2:4" */
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (n >= lo && n <= hi)
			return 1;
	}
	return 0;
}

/* ---- 4. modified UTF-7 (RFC 3501 5.1.3) ------------------------------------- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_val(int ch)
{
	const char *q = ch ? strchr(b64, ch) : NULL;

	return q ? (int)(q - b64) : -1;
}

static int put_utf8(char *out, size_t cap, size_t *n, uint32_t cp)
{
	unsigned char b[4];
	size_t k;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (*n + k + 1 > cap)
		return -1;
	memcpy(out + *n, b, k);
	*n += k;
	return 0;
}

/* One base64 run after '&' up to and including its '-'. */
static int decode_run(const char **in, char *out, size_t cap, size_t *n)
{
	const char *s = *in;
	uint32_t bits = 0, hi = 0;
	int nbits = 0, v, chars = 0;

	for (; *s != '-'; s++, chars++) {
		if ((v = b64_val((unsigned char)*s)) < 0)
			return -1;   /* also the NUL of an unterminated run */
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = (bits >> nbits) & 0xffff;

		bits &= (1u << nbits) - 1;
		if (hi) {   /* a high surrogate wants a low one */
			if (u < 0xdc00 || u > 0xdfff)
				return -1;
			u = 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00);
			hi = 0;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			hi = u;
			continue;
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			return -1;
		} else if (u < 0x20 || (u >= 0x20 && u <= 0x7e) || u == 0x7f) {
			return -1;   /* printable ASCII must not be encoded; no controls */
		}
		if (put_utf8(out, cap, n, u) < 0)
			return -1;
	}
	/* "&-" is handled by the caller; leftover bits must be padding zeros. */
	if (chars == 0 || hi || nbits >= 6 || bits != 0)
		return -1;
	*in = s + 1;
	return 0;
}

long imap_mutf7_decode(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return -1;
	while (*in) {
		unsigned char ch = (unsigned char)*in;

		if (ch < 0x20 || ch > 0x7e)
			return -1;
		if (ch != '&') {
			if (n + 2 > cap)
				return -1;
			out[n++] = (char)ch;
			in++;
		} else if (in[1] == '-') {
			if (n + 2 > cap)
				return -1;
			out[n++] = '&';
			in += 2;
		} else {
			in++;
			if (decode_run(&in, out, cap, &n) < 0)
				return -1;
		}
	}
	out[n] = '\0';
	return (long)n;
}

int imap_mutf7_valid(const char *in)
{
	char tmp[1024];

	return strlen(in) < sizeof tmp / 2 && imap_mutf7_decode(in, tmp, sizeof tmp) >= 0;
}

/* The next code point of strict UTF-8, or -1. */
static long next_utf8(const unsigned char **s)
{
	const unsigned char *q = *s;
	uint32_t cp;
	int k;

	if (q[0] < 0x80) {
		*s = q + 1;
		return q[0];
	}
	if (q[0] >= 0xc2 && q[0] <= 0xdf) {
		cp = q[0] & 0x1f;
		k = 1;
	} else if (q[0] >= 0xe0 && q[0] <= 0xef) {
		cp = q[0] & 0x0f;
		k = 2;
	} else if (q[0] >= 0xf0 && q[0] <= 0xf4) {
		cp = q[0] & 0x07;
		k = 3;
	} else {
		return -1;
	}
	for (int i = 1; i <= k; i++) {
		if ((q[i] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (q[i] & 0x3f);
	}
	if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return -1;   /* overlong, out of range, or a surrogate */
	*s = q + k + 1;
	return (long)cp;
}

struct b64w {
	char *out;
	size_t cap, n;
	uint32_t bits;
	int nbits;
};

static int b64_put(struct b64w *w, uint32_t unit)
{
	w->bits = (w->bits << 16) | unit;
	w->nbits += 16;
	while (w->nbits >= 6) {
		w->nbits -= 6;
		if (w->n + 2 > w->cap)
			return -1;
		w->out[w->n++] = b64[(w->bits >> w->nbits) & 0x3f];
	}
	w->bits &= (1u << w->nbits) - 1;
	return 0;
}

static int b64_end(struct b64w *w)
{
	if (w->n + 3 > w->cap)
		return -1;
	if (w->nbits)
		w->out[w->n++] = b64[(w->bits << (6 - w->nbits)) & 0x3f];
	w->out[w->n++] = '-';
	w->bits = 0;
	w->nbits = 0;
	return 0;
}

long imap_mutf7_encode(const char *in, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)in;
	struct b64w w = { out, cap, 0, 0, 0 };
	int in_run = 0;

	while (*s) {
		long cp = next_utf8(&s);

		if (cp < 0x20 || cp == 0x7f)
			return -1;
		if (cp <= 0x7e) {
			if (in_run && b64_end(&w) < 0)
				return -1;
			in_run = 0;
			if (w.n + (cp == '&' ? 3 : 2) > cap)
				return -1;
			w.out[w.n++] = (char)cp;
			if (cp == '&')
				w.out[w.n++] = '-';
			continue;
		}
		if (!in_run) {
			if (w.n + 2 > cap)
				return -1;
			w.out[w.n++] = '&';
			in_run = 1;
		}
		if (cp >= 0x10000) {
			if (b64_put(&w, 0xd800 + (((uint32_t)cp - 0x10000) >> 10)) < 0 ||
			    b64_put(&w, 0xdc00 + (((uint32_t)cp - 0x10000) & 0x3ff)) < 0)
				return -1;
		} else if (b64_put(&w, (uint32_t)cp) < 0) {
			return -1;
		}
	}
	if (in_run && b64_end(&w) < 0)
		return -1;
	if (w.n + 1 > cap)
		return -1;
	out[w.n] = '\0';
	return (long)w.n;
}

/* ---- 5. FETCH renderings ------------------------------------------------------ */

void imap_buf_add(struct imap_buf *b, const void *data, size_t len)
{
	if (b->oom)
		return;
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *np;

		while (cap < b->len + len + 1)
			cap *= 2;
		if (!(np = realloc(b->p, cap))) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
}

void imap_buf_puts(struct imap_buf *b, const char *s)
{
	imap_buf_add(b, s, strlen(s));
}

void imap_buf_string(struct imap_buf *b, const char *s, size_t len)
{
	int quotable = len <= IMAP_QUOTED_MAX;
	char head[32];

	for (size_t i = 0; i < len && quotable; i++)
		quotable = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f;
	if (!quotable) {   /* RFC 3501 4.3: 8-bit and CR/LF need a literal */
		snprintf(head, sizeof head, "{%zu}\r\n", len);
		imap_buf_puts(b, head);
		imap_buf_add(b, s, len);
		return;
	}
	imap_buf_add(b, "\"", 1);
	for (size_t i = 0, start = 0; i <= len; i++) {
		if (i == len || s[i] == '"' || s[i] == '\\') {
			imap_buf_add(b, s + start, i - start);
			if (i < len)
				imap_buf_add(b, "\\", 1);
			start = i;
		}
	}
	imap_buf_add(b, "\"", 1);
}

void imap_buf_nstring(struct imap_buf *b, const char *s)
{
	if (!s)
		imap_buf_puts(b, "NIL");
	else
		imap_buf_string(b, s, strlen(s));
}

void imap_buf_free(struct imap_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* A field as an nstring: NIL when absent (or empty, as Dovecot does). */
static void field_nstring(struct imap_buf *b, const struct mime *m, int i, const char *name)
{
	char v[MIME_VALUE_MAX];

	imap_buf_nstring(b, mime_field(m, i, name, v, sizeof v) > 0 ? v : NULL);
}

static void address_list(struct imap_buf *b, const struct mime *m, int i, const char *name)
{
	static struct mime_addr a[MIME_ADDRS_MAX];   /* the loop is single-threaded */
	char v[MIME_VALUE_MAX];
	int n = mime_field(m, i, name, v, sizeof v) > 0 ? mime_parse_addresses(v, a, MIME_ADDRS_MAX) : 0;

	if (n == 0) {
		imap_buf_puts(b, "NIL");
		return;
	}
	imap_buf_puts(b, "(");
	for (int k = 0; k < n; k++) {
		imap_buf_puts(b, "(");
		imap_buf_nstring(b, a[k].name);
		imap_buf_puts(b, " ");
		imap_buf_nstring(b, a[k].route);
		imap_buf_puts(b, " ");
		imap_buf_nstring(b, a[k].mailbox);
		imap_buf_puts(b, " ");
		imap_buf_nstring(b, a[k].host);
		imap_buf_puts(b, ")");
	}
	imap_buf_puts(b, ")");
}

void imap_envelope(struct imap_buf *b, const struct mime *m, int i)
{
	char v[16];
	const char *from = "from";

	imap_buf_puts(b, "(");
	field_nstring(b, m, i, "date");
	imap_buf_puts(b, " ");
	field_nstring(b, m, i, "subject");
	imap_buf_puts(b, " ");
	address_list(b, m, i, from);
	imap_buf_puts(b, " ");
	address_list(b, m, i, mime_field(m, i, "sender", v, sizeof v) > 0 ? "sender" : from);
	imap_buf_puts(b, " ");
	address_list(b, m, i, mime_field(m, i, "reply-to", v, sizeof v) > 0 ? "reply-to" : from);
	for (const char *const *f = (const char *const[]){ "to", "cc", "bcc", NULL }; *f; f++) {
		imap_buf_puts(b, " ");
		address_list(b, m, i, *f);
	}
	imap_buf_puts(b, " ");
	field_nstring(b, m, i, "in-reply-to");
	imap_buf_puts(b, " ");
	field_nstring(b, m, i, "message-id");
	imap_buf_puts(b, ")");
}

/* ("name" "value" ...) or NIL. */
static void param_list(struct imap_buf *b, const struct mime_param *p, int n)
{
	if (n <= 0) {
		imap_buf_puts(b, "NIL");
		return;
	}
	imap_buf_puts(b, "(");
	for (int k = 0; k < n; k++) {
		if (k)
			imap_buf_puts(b, " ");
		imap_buf_string(b, p[k].name, strlen(p[k].name));
		imap_buf_puts(b, " ");
		imap_buf_string(b, p[k].value, strlen(p[k].value));
	}
	imap_buf_puts(b, ")");
}

/* The Content-Type parameters of entity i (text gets charset us-ascii
 * when it has no parameters, RFC 2045 5.2). */
static void type_params(struct imap_buf *b, const struct mime *m, int i)
{
	static struct mime_param par[MIME_PARAMS_MAX];
	char v[MIME_VALUE_MAX], t[MIME_TYPE_MAX], st[MIME_TYPE_MAX];
	int n = 0;

	if (mime_field(m, i, "content-type", v, sizeof v) >= 0)
		n = mime_parse_ctype(v, t, sizeof t, st, sizeof st, par, MIME_PARAMS_MAX);
	if (n <= 0 && strcmp(m->parts[i].type, "text") == 0) {
		imap_buf_puts(b, "(\"charset\" \"us-ascii\")");
		return;
	}
	param_list(b, par, n);
}

/* body-fld-dsp: ("attachment" ("filename" "x")) or NIL. */
static void disposition(struct imap_buf *b, const struct mime *m, int i)
{
	static struct mime_param par[MIME_PARAMS_MAX];
	char v[MIME_VALUE_MAX], t[MIME_TYPE_MAX];
	int n;

	if (mime_field(m, i, "content-disposition", v, sizeof v) <= 0 ||
	    (n = mime_parse_ctype(v, t, sizeof t, NULL, 0, par, MIME_PARAMS_MAX)) < 0) {
		imap_buf_puts(b, "NIL");
		return;
	}
	imap_buf_puts(b, "(");
	imap_buf_string(b, t, strlen(t));
	imap_buf_puts(b, " ");
	param_list(b, par, n);
	imap_buf_puts(b, ")");
}

/* body-fld-lang: NIL, "en" or ("en" "de"). */
static void language(struct imap_buf *b, const struct mime *m, int i)
{
	char v[MIME_VALUE_MAX], *save, *tok;
	int n = 0;
	struct imap_buf l = { 0 };

	if (mime_field(m, i, "content-language", v, sizeof v) <= 0) {
		imap_buf_puts(b, "NIL");
		return;
	}
	for (tok = strtok_r(v, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save), n++) {
		if (n)
			imap_buf_puts(&l, " ");
		imap_buf_string(&l, tok, strlen(tok));
	}
	if (n > 1)
		imap_buf_puts(b, "(");
	imap_buf_add(b, l.p ? l.p : "NIL", l.p ? l.len : 3);
	if (n > 1)
		imap_buf_puts(b, ")");
	imap_buf_free(&l);
}

/* The extension data common to both kinds: dsp, lang, loc. */
static void ext_tail(struct imap_buf *b, const struct mime *m, int i)
{
	imap_buf_puts(b, " ");
	disposition(b, m, i);
	imap_buf_puts(b, " ");
	language(b, m, i);
	imap_buf_puts(b, " ");
	field_nstring(b, m, i, "content-location");
}

static void multipart(struct imap_buf *b, const struct mime *m, int i, int ext)
{
	const struct mime_part *p = &m->parts[i];

	imap_buf_puts(b, "(");
	for (int c = p->first_child; c >= 0; c = m->parts[c].next)
		imap_bodystructure(b, m, c, ext);
	if (p->first_child < 0)   /* RFC 3501 needs one part: an empty one */
		imap_buf_puts(b, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
	imap_buf_puts(b, " ");
	imap_buf_string(b, p->subtype, strlen(p->subtype));
	if (ext) {
		imap_buf_puts(b, " ");
		type_params(b, m, i);
		ext_tail(b, m, i);
	}
	imap_buf_puts(b, ")");
}

static void leaf(struct imap_buf *b, const struct mime *m, int i, int ext)
{
	const struct mime_part *p = &m->parts[i];
	char v[MIME_VALUE_MAX], num[64];

	imap_buf_puts(b, "(");
	imap_buf_string(b, p->type, strlen(p->type));
	imap_buf_puts(b, " ");
	imap_buf_string(b, p->subtype, strlen(p->subtype));
	imap_buf_puts(b, " ");
	type_params(b, m, i);
	imap_buf_puts(b, " ");
	field_nstring(b, m, i, "content-id");
	imap_buf_puts(b, " ");
	field_nstring(b, m, i, "content-description");
	imap_buf_puts(b, " ");
	if (mime_field(m, i, "content-transfer-encoding", v, sizeof v) <= 0)
		strcpy(v, "7bit");
	imap_buf_string(b, v, strlen(v));
	snprintf(num, sizeof num, " %llu", (unsigned long long)(p->end_n - p->body_n));
	imap_buf_puts(b, num);
	if (p->kind == MIME_MESSAGE && p->first_child >= 0) {   /* RFC 3501 7.4.2 body-type-msg */
		imap_buf_puts(b, " ");
		imap_envelope(b, m, p->first_child);
		imap_buf_puts(b, " ");
		imap_bodystructure(b, m, p->first_child, ext);
	}
	if (p->kind == MIME_MESSAGE || strcmp(p->type, "text") == 0) {
		snprintf(num, sizeof num, " %llu", (unsigned long long)p->lines);
		imap_buf_puts(b, num);
	}
	if (ext) {
		imap_buf_puts(b, " ");
		field_nstring(b, m, i, "content-md5");
		ext_tail(b, m, i);
	}
	imap_buf_puts(b, ")");
}

void imap_bodystructure(struct imap_buf *b, const struct mime *m, int i, int ext)
{
	if (m->parts[i].kind == MIME_MULTIPART)
		multipart(b, m, i, ext);
	else
		leaf(b, m, i, ext);
}

/* ---- sections (RFC 3501 6.4.5) ---- */

/* One step of a section path (RFC 3501 6.4.5): from entity *i, seen as a
 * message (*as_msg: its part 1 is its body when it is not multipart) or
 * as a body part (a message/rfc822 part's numbers are those of the
 * message inside), to its part n. 0, or -1 when there is no such part. */
static int sub_part(const struct mime *m, int *i, int *as_msg, uint32_t n)
{
	const struct mime_part *p = &m->parts[*i];

	if (!*as_msg && p->kind == MIME_MESSAGE && p->first_child >= 0) {
		*i = p->first_child;
		*as_msg = 1;
		p = &m->parts[*i];
	}
	if (p->kind == MIME_MULTIPART) {
		int c = p->first_child;

		while (c >= 0 && --n > 0)
			c = m->parts[c].next;
		*i = c;
		*as_msg = 0;
		return c >= 0 ? 0 : -1;
	}
	if (n != 1)
		return -1;
	if (*as_msg) {
		*as_msg = 0;   /* the body of a message that is not multipart */
		return 0;
	}
	/* A leaf body part's part 1 is itself, as Dovecot answers. */
	return p->parent >= 0 && m->parts[p->parent].kind == MIME_MULTIPART ? 0 : -1;
}

/* Parses "1.2.3." at the start of spec into the entity (*part -1 if it
 * does not exist; *depth numbers read). Returns the rest of the spec. */
static const char *section_numbers(const struct mime *m, const char *spec, int *part, int *depth)
{
	int as_msg = 1;

	*part = 0;
	*depth = 0;
	while (*spec >= '1' && *spec <= '9') {
		char *end;
		unsigned long n = strtoul(spec, &end, 10);

		if (n > UINT32_MAX || ++*depth > IMAP_SECTION_PARTS_MAX)
			return NULL;
		if (m && *part >= 0 && sub_part(m, part, &as_msg, (uint32_t)n) < 0)
			*part = -1;
		spec = end;
		if (*spec != '.')
			break;
		spec++;
		if (!(*spec >= '1' && *spec <= '9'))
			break;
	}
	return spec;
}

static int section_text(const char *rest, int depth, enum imap_sect *what, const char **fields)
{
	*fields = NULL;
	if (depth > 0 && rest[-1] == '.' && !*rest)
		return -1;   /* "1." */
	if (!*rest)
		*what = IMAP_SECT_ALL;
	else if (!strcasecmp(rest, "HEADER"))
		*what = IMAP_SECT_HEADER;
	else if (!strcasecmp(rest, "TEXT"))
		*what = IMAP_SECT_TEXT;
	else if (!strcasecmp(rest, "MIME") && depth > 0)
		*what = IMAP_SECT_MIME;
	else if (!strncasecmp(rest, "HEADER.FIELDS.NOT ", 18) && rest[18] == '(')
		*what = IMAP_SECT_FIELDS_NOT, *fields = rest + 18;
	else if (!strncasecmp(rest, "HEADER.FIELDS ", 14) && rest[14] == '(')
		*what = IMAP_SECT_FIELDS, *fields = rest + 14;
	else
		return -1;
	if (*fields && (strlen(*fields) < 3 || (*fields)[strlen(*fields) - 1] != ')'))
		return -1;
	if (depth > 0 && *rest && rest[-1] != '.')
		return -1;
	return 0;
}

int imap_section_check(const char *spec)
{
	int part, depth;
	enum imap_sect what;
	const char *fields, *rest = section_numbers(NULL, spec, &part, &depth);

	return rest ? section_text(rest, depth, &what, &fields) : -1;
}

static void range(struct imap_section *out, uint64_t from, uint64_t to, uint64_t from_n,
		  uint64_t to_n)
{
	out->off = from;
	out->len = to - from;
	out->len_n = to_n - from_n;
}

int imap_section_resolve(const struct mime *m, const char *spec, struct imap_section *out)
{
	int part, depth;
	const char *rest = section_numbers(m, spec, &part, &depth);
	const struct mime_part *p;

	memset(out, 0, sizeof *out);
	if (!rest || section_text(rest, depth, &out->what, &out->fields) < 0)
		return -1;
	out->part = part;
	if (part < 0)
		return 0;   /* no such part: empty */
	p = &m->parts[part];
	if (out->what == IMAP_SECT_MIME) {
		range(out, p->hdr_off, p->body_off, p->hdr_n, p->body_n);
		return 0;
	}
	if (out->what == IMAP_SECT_ALL) {
		if (depth)
			range(out, p->body_off, p->end_off, p->body_n, p->end_n);
		else
			range(out, 0, m->parts[0].end_off, 0, m->parts[0].end_n);
		return 0;
	}
	/* HEADER, TEXT, FIELDS: of the message, or of a message/rfc822 part. */
	if (depth) {
		if (p->kind != MIME_MESSAGE || p->first_child < 0) {
			out->part = -1;
			return 0;
		}
		p = &m->parts[p->first_child];
	}
	if (out->what == IMAP_SECT_TEXT)
		range(out, p->body_off, p->end_off, p->body_n, p->end_n);
	else
		range(out, p->hdr_off, p->body_off, p->hdr_n, p->body_n);
	return 0;
}

int imap_fields_has(const char *list, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	size_t nl;

	if (!colon || colon == line)
		return 0;
	nl = (size_t)(colon - line);
	while (nl > 0 && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))
		nl--;
	for (const char *s = list; *s;) {
		size_t k;

		while (*s == '(' || *s == ' ' || *s == ')' || *s == '"')
			s++;
		k = strcspn(s, " )\"");
		if (k == nl && k > 0 && strncasecmp(s, line, nl) == 0)
			return 1;
		s += k;
	}
	return 0;
}
