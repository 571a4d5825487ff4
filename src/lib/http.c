/*
 * http.c - bounded HTTP/1.1 request parser and form/cookie decoding
 * (see http.h). A push parser: bytes in, one request out; each state has
 * its handler in a table.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

#define HTTP_CL_DIGITS_MAX 9     /* Content-Length digits we parse */

static int fail(struct http_req *r, int status, const char *reason)
{
	r->state = HTTP_ERROR;
	r->status = status;
	r->reason = reason;
	return -1;
}

void http_req_init(struct http_req *r)
{
	r->state = HTTP_REQLINE;
	r->status = 0;
	r->reason = "";
	r->method[0] = r->target[0] = r->host[0] = r->cookie[0] = '\0';
	r->content_type[0] = '\0';
	r->minor = 1;
	r->content_length = -1;
	r->nfields = 0;
	r->head_bytes = 0;
	r->line_len = 0;
	r->seen_cr = 0;
	r->have_host = 0;
	r->body_len = 0;
	r->body[0] = '\0';
}

/* RFC 9110 section 5.6.2: token characters. */
static int is_tchar(int c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* ---- request line: METHOD SP TARGET SP HTTP/1.x (RFC 9112 section 3) ---- */

static int take_method(struct http_req *r, const char *m, size_t n)
{
	static const char *const allowed[] = { "GET", "HEAD", "POST" };

	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)m[i]))
			return fail(r, 400, "bad method");
	for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
		if (strlen(allowed[i]) == n && memcmp(allowed[i], m, n) == 0) {
			memcpy(r->method, m, n);
			r->method[n] = '\0';
			return 0;
		}
	return fail(r, 501, "method not implemented");
}

static int take_target(struct http_req *r, const char *t, size_t n)
{
	if (n == 0 || t[0] != '/')
		return fail(r, 400, "target is not origin-form");
	if (n > HTTP_TARGET_MAX)
		return fail(r, 414, "target too long");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return fail(r, 400, "bad character in target");
	memcpy(r->target, t, n);
	r->target[n] = '\0';
	return 0;
}

static int on_reqline(struct http_req *r, char *line, size_t len)
{
	char *sp1 = memchr(line, ' ', len), *sp2;

	if (len == 0 && r->head_bytes <= 2)
		return 0;   /* RFC 9112 section 2.2: ignore one leading empty line */
	if (!sp1)
		return fail(r, 400, "malformed request line");
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line));
	if (!sp2)
		return fail(r, 400, "malformed request line");
	if (take_method(r, line, (size_t)(sp1 - line)) < 0 ||
	    take_target(r, sp1 + 1, (size_t)(sp2 - sp1 - 1)) < 0)
		return -1;
	if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
		r->minor = 1;
	else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
		r->minor = 0;
	else
		return fail(r, 505, "unsupported HTTP version");
	r->state = HTTP_HEADERS;
	return 0;
}

/* ---- header fields (RFC 9112 section 5) ---- */

static int copy_value(struct http_req *r, char *dst, size_t cap, const char *v, size_t n)
{
	if (n >= cap)
		return fail(r, 431, "header value too long");
	memcpy(dst, v, n);
	dst[n] = '\0';
	return 0;
}

static int take_length(struct http_req *r, const char *v, size_t n)
{
	long cl = 0;

	if (r->content_length >= 0)
		return fail(r, 400, "duplicate Content-Length");
	if (n == 0 || n > HTTP_CL_DIGITS_MAX)
		return fail(r, n ? 413 : 400, "bad Content-Length");
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)v[i]))
			return fail(r, 400, "bad Content-Length");
		cl = cl * 10 + (v[i] - '0');
	}
	if (cl > HTTP_BODY_MAX)
		return fail(r, 413, "body too large");
	r->content_length = cl;
	return 0;
}

static int take_cookie(struct http_req *r, const char *v, size_t n)
{
	size_t have = strlen(r->cookie);

	if (have + 2 + n > HTTP_COOKIE_MAX)
		return fail(r, 431, "cookies too long");
	if (have) {   /* RFC 6265 section 5.4: several fields are joined by "; " */
		memcpy(r->cookie + have, "; ", 2);
		have += 2;
	}
	memcpy(r->cookie + have, v, n);
	r->cookie[have + n] = '\0';
	return 0;
}

static int take_field(struct http_req *r, const char *name, const char *v, size_t n)
{
	if (strcasecmp(name, "host") == 0) {
		if (r->have_host++)
			return fail(r, 400, "duplicate Host");   /* RFC 9112 section 3.2 */
		return copy_value(r, r->host, sizeof r->host, v, n);
	}
	if (strcasecmp(name, "content-length") == 0)
		return take_length(r, v, n);
	if (strcasecmp(name, "transfer-encoding") == 0)
		return fail(r, 501, "Transfer-Encoding not supported");
	if (strcasecmp(name, "cookie") == 0)
		return take_cookie(r, v, n);
	if (strcasecmp(name, "content-type") == 0)
		return copy_value(r, r->content_type, sizeof r->content_type, v, n);
	return 0;
}

static int end_of_head(struct http_req *r)
{
	if (r->minor == 1 && !r->have_host)
		return fail(r, 400, "missing Host");
	if (strcmp(r->method, "POST") == 0 && r->content_length < 0)
		return fail(r, 411, "POST without Content-Length");
	if (r->content_length <= 0) {
		r->content_length = r->content_length < 0 ? 0 : r->content_length;
		r->state = HTTP_DONE;
	} else {
		r->state = HTTP_BODY;
	}
	return 0;
}

static int on_header(struct http_req *r, char *line, size_t len)
{
	char *colon;
	size_t nlen, vlen;
	const char *v;

	if (len == 0)
		return end_of_head(r);
	if (line[0] == ' ' || line[0] == '\t')
		return fail(r, 400, "obsolete line folding");
	if (++r->nfields > HTTP_FIELDS_MAX)
		return fail(r, 431, "too many header fields");
	colon = memchr(line, ':', len);
	if (!colon || colon == line)
		return fail(r, 400, "malformed header field");
	nlen = (size_t)(colon - line);
	for (size_t i = 0; i < nlen; i++)   /* no blank before the colon (5.1) */
		if (!is_tchar((unsigned char)line[i]))
			return fail(r, 400, "bad header field name");
	*colon = '\0';
	v = colon + 1;
	vlen = len - nlen - 1;
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	for (size_t i = 0; i < vlen; i++)
		if ((unsigned char)v[i] < 0x20 && v[i] != '\t')
			return fail(r, 400, "control character in header field");
	return take_field(r, line, v, vlen);
}

/* ---- the push parser ---- */

typedef int (*http_line_fn)(struct http_req *r, char *line, size_t len);

static const http_line_fn line_handlers[] = {
	[HTTP_REQLINE] = on_reqline,
	[HTTP_HEADERS] = on_header,
};

/* One byte of the head. Lines end in CRLF; a bare LF is accepted as the
 * terminator (RFC 9112 section 2.2), a bare CR is an error there. */
static int head_byte(struct http_req *r, char c)
{
	if (++r->head_bytes > HTTP_HEAD_MAX)
		return fail(r, r->state == HTTP_REQLINE ? 414 : 431, "request head too large");
	if (r->seen_cr && c != '\n')
		return fail(r, 400, "bare CR");
	if (c == '\r') {
		r->seen_cr = 1;
		return 0;
	}
	if (c == '\n') {
		r->seen_cr = 0;
		r->line[r->line_len] = '\0';
		size_t n = r->line_len;
		r->line_len = 0;
		return line_handlers[r->state](r, r->line, n);
	}
	if (c == '\0')
		return fail(r, 400, "NUL in request head");
	if (r->line_len >= HTTP_LINE_MAX)
		return fail(r, r->state == HTTP_REQLINE ? 414 : 431, "line too long");
	r->line[r->line_len++] = c;
	return 0;
}

static size_t body_bytes(struct http_req *r, const char *data, size_t len)
{
	size_t want = (size_t)r->content_length - r->body_len;
	size_t n = len < want ? len : want;

	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	if (r->body_len == (size_t)r->content_length)
		r->state = HTTP_DONE;
	return n;
}

size_t http_req_feed(struct http_req *r, const char *data, size_t len)
{
	size_t i = 0;

	while (i < len && (r->state == HTTP_REQLINE || r->state == HTTP_HEADERS)) {
		if (head_byte(r, data[i++]) < 0)
			return i;
	}
	if (i < len && r->state == HTTP_BODY)
		i += body_bytes(r, data + i, len - i);
	return i;
}

/* ---- decoding ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http_url_decode(const char *in, size_t len, char *out, size_t cap, int plus_space)
{
	size_t o = 0;

	if (cap == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)in[i];

		if (c == '%') {
			if (i + 2 >= len)
				return -1;
			int hi = hexval((unsigned char)in[i + 1]);
			int lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			c = hi * 16 + lo;
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		} else if (c == '\0') {
			return -1;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

int http_form_get(const char *form, size_t len, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), i = 0;

	while (i < len) {
		const char *f = form + i, *amp = memchr(f, '&', len - i);
		size_t flen = amp ? (size_t)(amp - f) : len - i;

		if (flen > nlen && memcmp(f, name, nlen) == 0 && f[nlen] == '=') {
			int n = http_url_decode(f + nlen + 1, flen - nlen - 1, out, cap, 1);
			return n < 0 ? -2 : n;
		}
		if (flen == nlen && memcmp(f, name, nlen) == 0) {
			if (cap == 0)
				return -2;
			out[0] = '\0';
			return 0;
		}
		i += flen + 1;
	}
	return -1;
}

int http_cookie_get(const char *header, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);
	const char *p = header;

	while (*p) {
		while (*p == ' ' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t flen = end ? (size_t)(end - p) : strlen(p);

		if (flen > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
			size_t vlen = flen - nlen - 1;
			if (vlen >= cap)
				return -2;
			memcpy(out, p + nlen + 1, vlen);
			out[vlen] = '\0';
			return (int)vlen;
		}
		p += flen;
	}
	return -1;
}

/* A path segment ".." (or "."), after decoding: refused, never resolved. */
static int has_dot_segment(const char *path)
{
	for (const char *s = path; s; s = strchr(s + 1, '/')) {
		const char *seg = s + 1, *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg);

		if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 1;
	}
	return 0;
}

int http_target_split(const char *target, char *path, size_t pathcap,
		      char *query, size_t querycap)
{
	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : strlen(target);
	size_t qlen = q ? strlen(q + 1) : 0;

	if (plen == 0 || target[0] != '/' || qlen >= querycap)
		return -1;
	if (http_url_decode(target, plen, path, pathcap, 0) < 0 || has_dot_segment(path))
		return -1;
	memcpy(query, q ? q + 1 : "", qlen);
	query[qlen] = '\0';
	return 0;
}

const char *http_reason(int status)
{
	static const struct { int code; const char *text; } reasons[] = {
		{ 200, "OK" }, { 301, "Moved Permanently" }, { 302, "Found" },
		{ 303, "See Other" }, { 304, "Not Modified" }, { 400, "Bad Request" },
		{ 401, "Unauthorized" }, { 403, "Forbidden" }, { 404, "Not Found" },
		{ 405, "Method Not Allowed" }, { 408, "Request Timeout" },
		{ 411, "Length Required" }, { 413, "Content Too Large" },
		{ 414, "URI Too Long" }, { 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" },
		{ 500, "Internal Server Error" }, { 501, "Not Implemented" },
		{ 502, "Bad Gateway" }, { 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" }, { 505, "HTTP Version Not Supported" },
	};

	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (reasons[i].code == status)
			return reasons[i].text;
	return "";
}
