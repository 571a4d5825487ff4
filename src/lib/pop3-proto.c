/*
 * pop3-proto.c - the POP3 client protocol core: response reader with
 * dot-unstuffing, status / CAPA / UIDL / LIST parsing, AUTH PLAIN.
 * No I/O here; see pop3-proto.h.
 */
#include "pop3-proto.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Largest message number accepted in a listing. */
#define POP3_MSGNO_MAX 0x7fffffffu
/* Largest message size accepted in a LIST line (1 TiB: beyond any limit). */
#define POP3_SIZE_MAX_LISTED (1ULL << 40)
/* Longest capability word compared. */
#define POP3_CAPA_WORD_MAX 64

void pop3_reader_start(struct pop3_reader *r, int multi, int crlf_to_lf,
	uint64_t body_max, pop3_sink_fn sink, void *arg)
{
	r->multi = multi;
	r->crlf_to_lf = crlf_to_lf;
	r->body_max = body_max;
	r->sink = sink;
	r->arg = arg;
	r->ok = 0;
	r->too_big = 0;
	r->body_len = 0;
	r->wire_len = 0;
	r->status[0] = '\0';
	r->status_len = 0;
	r->st = POP3_R_STATUS;
	r->out_len = 0;
}

static int flush(struct pop3_reader *r)
{
	if (r->out_len == 0)
		return 0;
	size_t n = r->out_len;
	r->out_len = 0;
	if (r->sink && r->sink(r->arg, r->out, n) < 0) {
		r->st = POP3_R_FAILED;
		return -1;
	}
	return 0;
}

/* Queues body bytes for the sink, honouring body_max (sticky). */
static int emit(struct pop3_reader *r, const unsigned char *p, size_t n)
{
	if (r->too_big)
		return 0;
	if (r->body_max && r->body_len + n > r->body_max) {
		/* Pass on exactly the first body_max bytes, however the input
		 * was cut into pieces; the caller discards them anyway. */
		n = (size_t)(r->body_max - r->body_len);
		r->too_big = 1;
	}
	r->body_len += n;
	while (n > 0) {
		size_t room = sizeof r->out - r->out_len;
		size_t k = n < room ? n : room;
		memcpy(r->out + r->out_len, p, k);
		r->out_len += k;
		p += k;
		n -= k;
		if (r->out_len == sizeof r->out && flush(r) < 0)
			return -1;
	}
	return 0;
}

static int emit_newline(struct pop3_reader *r)
{
	static const unsigned char crlf[2] = { '\r', '\n' };
	return r->crlf_to_lf ? emit(r, crlf + 1, 1) : emit(r, crlf, 2);
}

int pop3_status_parse(const char *line, size_t len, const char **text)
{
	static const char *const ind[2] = { "-ERR", "+OK" };
	for (int ok = 1; ok >= 0; ok--) {
		size_t n = strlen(ind[ok]);
		if (len < n || memcmp(line, ind[ok], n) != 0)
			continue;
		if (len > n && line[n] != ' ' && line[n] != '\t')
			return -1;	/* "+OKAY" is not a status indicator */
		*text = len > n ? line + n + 1 : line + n;
		return ok;
	}
	return -1;
}

/* Adds one status byte; returns a pop3_result. */
static int status_byte(struct pop3_reader *r, unsigned char c)
{
	if (c != '\n') {
		if (r->status_len >= POP3_STATUS_MAX)
			return POP3_ETOOLONG;
		r->status[r->status_len++] = (char)c;
		return POP3_NEED;
	}
	/* RFC 1939 section 3: lines end in CRLF; a bare LF is tolerated here. */
	if (r->status_len > 0 && r->status[r->status_len - 1] == '\r')
		r->status_len--;
	r->status[r->status_len] = '\0';
	const char *text;
	int ok = pop3_status_parse(r->status, r->status_len, &text);
	if (ok < 0)
		return POP3_EMALFORMED;
	r->ok = ok;
	/* RFC 1939 section 3: -ERR never has a multi-line body. */
	if (!ok || !r->multi) {
		r->st = POP3_R_DONE;
		return POP3_DONE;
	}
	r->st = POP3_R_BOL;
	return POP3_NEED;
}

/* One body byte in state st; returns 1 at the terminator, 0, or -1. */
static int body_byte(struct pop3_reader *r, unsigned char c)
{
	static const unsigned char cr = '\r';
	switch (r->st) {
	case POP3_R_BOL:
		if (c == '.') {
			r->st = POP3_R_DOT;
			return 0;
		}
		r->st = POP3_R_MID;
		return body_byte(r, c);
	case POP3_R_DOT:
		if (c == '\r') {
			r->st = POP3_R_DOTCR;
			return 0;
		}
		/* A line starting with "." had one "." prepended: drop it. */
		r->st = POP3_R_MID;
		return body_byte(r, c);
	case POP3_R_DOTCR:
		if (c == '\n')
			return 1;	/* ".CRLF": end of the response */
		/* ".\rX": the "." was stuffing, the CR is data. */
		r->st = POP3_R_CR;
		return body_byte(r, c);
	case POP3_R_MID:
		if (c == '\r') {
			r->st = POP3_R_CR;
			return 0;
		}
		return emit(r, &c, 1);
	case POP3_R_CR:
		if (c == '\n') {
			r->st = POP3_R_BOL;
			return emit_newline(r);
		}
		/* A bare CR is data; a CR followed by CR keeps one pending. */
		if (emit(r, &cr, 1) < 0)
			return -1;
		if (c == '\r')
			return 0;
		r->st = POP3_R_MID;
		return emit(r, &c, 1);
	default:
		return -1;
	}
}

/* Fast path in the middle of a line: copies up to the next CR at once. */
static size_t mid_run(struct pop3_reader *r, const unsigned char *p, size_t n)
{
	const unsigned char *cr = memchr(p, '\r', n);
	size_t k = cr ? (size_t)(cr - p) : n;
	if (k > 0 && emit(r, p, k) < 0)
		return (size_t)-1;
	return k;
}

int pop3_reader_feed(struct pop3_reader *r, const void *data, size_t len, size_t *used)
{
	const unsigned char *p = data;
	size_t i = 0;
	*used = 0;
	if (r->st == POP3_R_DONE || r->st == POP3_R_FAILED)
		return POP3_ESINK;
	while (i < len) {
		if (r->st == POP3_R_STATUS) {
			int rc = status_byte(r, p[i++]);
			if (rc != POP3_NEED) {
				*used = i;
				return rc;
			}
			continue;
		}
		if (r->st == POP3_R_MID) {
			size_t k = mid_run(r, p + i, len - i);
			if (k == (size_t)-1)
				return POP3_ESINK;
			r->wire_len += k;
			i += k;
			if (i == len)
				break;
		}
		r->wire_len++;
		int rc = body_byte(r, p[i++]);
		if (rc < 0)
			return POP3_ESINK;
		if (rc == 1) {
			*used = i;
			r->st = POP3_R_DONE;
			return flush(r) < 0 ? POP3_ESINK : POP3_DONE;
		}
	}
	*used = len;
	/* Hand what we have to the sink at the end of each feed. */
	return flush(r) < 0 ? POP3_ESINK : POP3_NEED;
}

int pop3_resp_code(const char *text, char *out, size_t cap)
{
	if (text[0] != '[' || cap == 0)
		return 0;
	const char *end = strchr(text, ']');
	if (!end)
		return 0;
	size_t n = (size_t)(end - text - 1);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, text + 1, n);
	out[n] = '\0';
	return 1;
}

/* The next blank-separated word of [*p, end) into w; 0 when none left. */
static int next_word(const char **p, const char *end, char *w, size_t cap)
{
	const char *s = *p;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	const char *b = s;
	while (s < end && *s != ' ' && *s != '\t')
		s++;
	*p = s;
	if (s == b)
		return 0;
	size_t n = (size_t)(s - b);
	if (n >= cap)
		n = cap - 1;	/* a longer word matches nothing we look for */
	memcpy(w, b, n);
	w[n] = '\0';
	return 1;
}

static void capa_line(const char *line, const char *end, struct pop3_capa *c)
{
	char w[POP3_CAPA_WORD_MAX];
	const char *p = line;
	if (!next_word(&p, end, w, sizeof w))
		return;
	if (strcasecmp(w, "STLS") == 0)
		c->stls = 1;
	else if (strcasecmp(w, "UIDL") == 0)
		c->uidl = 1;
	else if (strcasecmp(w, "TOP") == 0)
		c->top = 1;
	else if (strcasecmp(w, "USER") == 0)
		c->user = 1;
	else if (strcasecmp(w, "PIPELINING") == 0)
		c->pipelining = 1;
	else if (strcasecmp(w, "RESP-CODES") == 0)
		c->resp_codes = 1;
	else if (strcasecmp(w, "SASL") == 0)
		while (next_word(&p, end, w, sizeof w))
			if (strcasecmp(w, "PLAIN") == 0)
				c->sasl_plain = 1;
}

int pop3_capa_parse(const char *body, size_t len, struct pop3_capa *capa)
{
	memset(capa, 0, sizeof *capa);
	const char *p = body, *end = body + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (le > p && le[-1] == '\r')
			le--;
		capa_line(p, le, capa);
		p = nl ? nl + 1 : end;
	}
	return 0;
}

/* Parses a decimal number at [*p, end) into *v (at most max). */
static int parse_num(const char **p, const char *end, uint64_t max, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;
	if (s >= end || !isdigit((unsigned char)*s))
		return -1;
	for (; s < end && isdigit((unsigned char)*s); s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > max)
			return -1;
	}
	*p = s;
	*v = n;
	return 0;
}

static const char *trim_end(const char *line, const char *end)
{
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	return end;
}

int pop3_uid_valid(const char *uid)
{
	size_t n = strlen(uid);
	if (n < 1 || n > POP3_UIDL_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)uid[i] < 0x21 || (unsigned char)uid[i] > 0x7e)
			return 0;
	return 1;
}

int pop3_uidl_line(const char *line, size_t len, unsigned *msgno,
	char uid[POP3_UIDL_MAX + 1])
{
	const char *p = line, *end = trim_end(line, line + len);
	uint64_t v;
	if (parse_num(&p, end, POP3_MSGNO_MAX, &v) < 0 || v == 0)
		return -1;
	if (p >= end || *p != ' ')
		return -1;
	p++;
	size_t n = (size_t)(end - p);
	if (n < 1 || n > POP3_UIDL_MAX)
		return -1;
	memcpy(uid, p, n);
	uid[n] = '\0';
	if (!pop3_uid_valid(uid))
		return -1;
	*msgno = (unsigned)v;
	return 0;
}

int pop3_list_line(const char *line, size_t len, unsigned *msgno, uint64_t *size)
{
	const char *p = line, *end = trim_end(line, line + len);
	uint64_t v, s;
	if (parse_num(&p, end, POP3_MSGNO_MAX, &v) < 0 || v == 0)
		return -1;
	if (p >= end || *p != ' ')
		return -1;
	p++;
	if (parse_num(&p, end, POP3_SIZE_MAX_LISTED, &s) < 0)
		return -1;
	if (p < end && *p != ' ')
		return -1;
	*msgno = (unsigned)v;
	*size = s;
	return 0;
}

static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
	static const char al[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = al[(v >> 18) & 63];
		out[o++] = al[(v >> 12) & 63];
		out[o++] = i + 1 < n ? al[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? al[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

int pop3_auth_plain(const char *user, const char *pass, char *out, size_t cap)
{
	/* RFC 4616: [authzid] NUL authcid NUL passwd; no authzid here. */
	unsigned char raw[2 * POP3_STATUS_MAX];
	size_t ul = strlen(user), pl = strlen(pass);
	if (ul + pl + 2 > sizeof raw)
		return -1;
	size_t n = 0;
	raw[n++] = 0;
	memcpy(raw + n, user, ul);
	n += ul;
	raw[n++] = 0;
	memcpy(raw + n, pass, pl);
	n += pl;
	if ((n + 2) / 3 * 4 + 1 > cap) {
		memset(raw, 0, sizeof raw);
		return -1;
	}
	size_t o = b64_encode(raw, n, out);
	memset(raw, 0, sizeof raw);
	return (int)o;
}

void pop3_lines_init(struct pop3_lines *l, int (*fn)(void *, const char *, size_t), void *arg)
{
	l->fn = fn;
	l->arg = arg;
	l->len = 0;
}

int pop3_lines_sink(void *arg, const void *data, size_t len)
{
	struct pop3_lines *l = arg;
	const char *p = data, *end = p + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l->len + n > POP3_LISTLINE_MAX)
			return -1;
		memcpy(l->buf + l->len, p, n);
		l->len += n;
		if (!nl)
			break;
		size_t ll = l->len;
		if (ll > 0 && l->buf[ll - 1] == '\r')
			ll--;
		l->buf[ll] = '\0';
		l->len = 0;
		if (l->fn(l->arg, l->buf, ll) < 0)
			return -1;
		p = nl + 1;
	}
	return 0;
}

int pop3_lines_end(struct pop3_lines *l)
{
	if (l->len == 0)
		return 0;
	size_t ll = l->len;
	l->buf[ll] = '\0';
	l->len = 0;
	return l->fn(l->arg, l->buf, ll);
}
