/*
 * http.h - a bounded HTTP/1.1 request parser (RFC 9112) and the decoders the
 * web page needs: percent-decoding, application/x-www-form-urlencoded fields
 * and Cookie headers.
 *
 * The parser never touches a socket: push bytes with http_req_feed() until
 * the state is HTTP_DONE or HTTP_ERROR (tests and the fuzzer drive it from
 * byte arrays). Everything lives in the caller's struct http_req (about
 * 80 KB, no heap). Limits are the HTTP_* constants below; a request beyond
 * one of them ends in HTTP_ERROR with the status to answer (400, 411, 413,
 * 414, 431, 501, 505) in status.
 *
 * Accepted: GET, HEAD and POST; origin-form targets ("/path?query");
 * Content-Length bodies. Refused: Transfer-Encoding (501: a small admin
 * page needs no chunked uploads, and refusing it avoids CL/TE smuggling),
 * obsolete line folding (400, RFC 9112 section 5.2), a bare CR, duplicate
 * Content-Length or Host, anything but HTTP/1.0 and HTTP/1.1.
 */
#ifndef POSTERN_HTTP_H
#define POSTERN_HTTP_H

#include <stddef.h>

#define HTTP_HEAD_MAX 8192       /* request line + header fields, bytes */
#define HTTP_LINE_MAX 4096       /* one line of the head, bytes */
#define HTTP_TARGET_MAX 2048     /* request target ("/path?query") */
#define HTTP_FIELDS_MAX 50       /* header fields */
#define HTTP_BODY_MAX 65536      /* request body (forms) */
#define HTTP_HOST_MAX 255        /* Host header */
#define HTTP_COOKIE_MAX 4096     /* Cookie header(s), joined by "; " */
#define HTTP_CTYPE_MAX 127       /* Content-Type header */

enum http_state {
	HTTP_REQLINE,   /* waiting for the request line */
	HTTP_HEADERS,   /* reading header fields */
	HTTP_BODY,      /* reading content_length bytes of body */
	HTTP_DONE,      /* a complete request */
	HTTP_ERROR,     /* a bad request: answer status and close */
};

struct http_req {
	enum http_state state;
	int status;                          /* HTTP_ERROR: the status to send */
	const char *reason;                  /* HTTP_ERROR: why, for the log */
	char method[8];                      /* "GET", "HEAD", "POST" */
	int minor;                           /* HTTP/1.minor */
	char target[HTTP_TARGET_MAX + 1];    /* path and query as sent */
	char host[HTTP_HOST_MAX + 1];
	char cookie[HTTP_COOKIE_MAX + 1];
	char content_type[HTTP_CTYPE_MAX + 1];
	long content_length;                 /* -1: none given */
	int nfields;
	size_t head_bytes;                   /* bytes of head consumed */
	char line[HTTP_LINE_MAX + 2];        /* the line being assembled */
	size_t line_len;
	int seen_cr;                         /* the previous byte was CR */
	int have_host;
	char body[HTTP_BODY_MAX + 1];        /* NUL-terminated */
	size_t body_len;
};

/* Resets r for a new request. */
void http_req_init(struct http_req *r);

/*
 * Pushes len bytes received from the client. Returns how many were taken:
 * fewer than len only once the state is HTTP_DONE (the rest belongs to a
 * next request) or HTTP_ERROR.
 */
size_t http_req_feed(struct http_req *r, const char *data, size_t len);

/*
 * Splits r->target into the path (percent-decoded, must start with "/",
 * no NUL, no ".." segment) and the raw query (after "?", "" when none).
 * Returns 0, or -1 when the path is invalid or does not fit.
 */
int http_target_split(const char *target, char *path, size_t pathcap,
		      char *query, size_t querycap);

/*
 * Percent-decodes len bytes of in into out (cap bytes, NUL-terminated);
 * with plus_space, '+' becomes a space (form encoding). Refuses %00 and
 * malformed escapes. Returns the decoded length, or -1.
 */
int http_url_decode(const char *in, size_t len, char *out, size_t cap, int plus_space);

/*
 * The value of the first field called name in form data ("a=1&b=x%20y",
 * a query string or an x-www-form-urlencoded body of len bytes), decoded
 * into out (cap bytes, NUL-terminated). Returns its length, -1 when the
 * field is absent, -2 when it is malformed or longer than cap - 1.
 */
int http_form_get(const char *form, size_t len, const char *name, char *out, size_t cap);

/*
 * The value of cookie name in a Cookie header ("a=1; sid=abc"), copied into
 * out (cap bytes, NUL-terminated). Returns its length, -1 when absent, -2
 * when too long.
 */
int http_cookie_get(const char *header, const char *name, char *out, size_t cap);

/* The reason phrase of a status code ("Not Found"), "" when unknown. */
const char *http_reason(int status);

#endif
