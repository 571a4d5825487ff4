/*
 * test_http.c - the HTTP request parser (limits, smuggling refusals, split
 * input), form/cookie decoding and HTML escaping.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "html.h"
#include "http.h"

static struct http_req req;

static void feed_all(const char *s)
{
	http_req_init(&req);
	http_req_feed(&req, s, strlen(s));
}

static void t_get(void)
{
	feed_all("GET /users?x=1 HTTP/1.1\r\nHost: box\r\nCookie: a=1\r\ncookie: sid=ab\r\n\r\n");
	CHECK_EQ(req.state, HTTP_DONE);
	CHECK_STREQ(req.method, "GET");
	CHECK_STREQ(req.target, "/users?x=1");
	CHECK_STREQ(req.host, "box");
	CHECK_STREQ(req.cookie, "a=1; sid=ab");
	CHECK_EQ(req.content_length, 0);
}

static void t_post_split(void)
{
	const char *s = "POST /login HTTP/1.1\r\nHost: b\r\nContent-Length: 7\r\n"
		"Content-Type: application/x-www-form-urlencoded\r\n\r\nu=a&p=bEXTRA";
	size_t off = 0, len = strlen(s);

	http_req_init(&req);
	while (off < len && req.state != HTTP_DONE)
		off += http_req_feed(&req, s + off, 1);
	CHECK_EQ(req.state, HTTP_DONE);
	CHECK_STREQ(req.body, "u=a&p=b");
	CHECK_EQ(off, len - 5);   /* "EXTRA" belongs to the next request */
}

static void expect_error(const char *s, int status)
{
	feed_all(s);
	CHECK_EQ(req.state, HTTP_ERROR);
	CHECK_EQ(req.status, status);
}

static void t_errors(void)
{
	expect_error("DELETE / HTTP/1.1\r\n\r\n", 501);
	expect_error("GET / HTTP/2.0\r\n\r\n", 505);
	expect_error("GET http://x/ HTTP/1.1\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\r\n\r\n", 400);                /* no Host */
	expect_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	expect_error("POST / HTTP/1.1\r\nHost: a\r\n\r\n", 411);
	expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400);
	expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413);
	expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);
	expect_error("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
}

static void t_limits(void)
{
	char *big = malloc(HTTP_HEAD_MAX + 100);

	memset(big, 'a', HTTP_HEAD_MAX + 99);
	memcpy(big, "GET /", 5);
	big[HTTP_HEAD_MAX + 99] = '\0';
	expect_error(big, 414);
	strcpy(big, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP_FIELDS_MAX + 1; i++)
		strcat(big, "X-A: b\r\n");
	strcat(big, "\r\n");
	expect_error(big, 431);
	free(big);
}

static void t_form(void)
{
	char out[32];
	const char *f = "a=1&name=%3Cscript%3E+x&empty=&flag&bad=%zz&nul=%00";

	CHECK_EQ(http_form_get(f, strlen(f), "name", out, sizeof out), 10);
	CHECK_STREQ(out, "<script> x");
	CHECK_EQ(http_form_get(f, strlen(f), "empty", out, sizeof out), 0);
	CHECK_EQ(http_form_get(f, strlen(f), "flag", out, sizeof out), 0);
	CHECK_EQ(http_form_get(f, strlen(f), "nam", out, sizeof out), -1);
	CHECK_EQ(http_form_get(f, strlen(f), "bad", out, sizeof out), -2);
	CHECK_EQ(http_form_get(f, strlen(f), "nul", out, sizeof out), -2);
	CHECK_EQ(http_form_get(f, strlen(f), "name", out, 5), -2);
	CHECK_EQ(http_form_get("x=%4", 4, "x", out, sizeof out), -2);
}

static void t_cookie(void)
{
	char out[8];

	CHECK_EQ(http_cookie_get("a=1; sid=abc;x=2", "sid", out, sizeof out), 3);
	CHECK_STREQ(out, "abc");
	CHECK_EQ(http_cookie_get("a=1;x=2", "x", out, sizeof out), 1);
	CHECK_EQ(http_cookie_get("xsid=1", "sid", out, sizeof out), -1);
	CHECK_EQ(http_cookie_get("sid=123456789", "sid", out, sizeof out), -2);
}

static void t_target(void)
{
	char p[64], q[64];

	CHECK_EQ(http_target_split("/a%20b?x=1", p, sizeof p, q, sizeof q), 0);
	CHECK_STREQ(p, "/a b");
	CHECK_STREQ(q, "x=1");
	CHECK_EQ(http_target_split("/static/../etc", p, sizeof p, q, sizeof q), -1);
	CHECK_EQ(http_target_split("/static/%2e%2e/x", p, sizeof p, q, sizeof q), -1);
	CHECK_EQ(http_target_split("/x%00", p, sizeof p, q, sizeof q), -1);
}

static void t_html(void)
{
	char buf[256];
	FILE *f = fmemopen(buf, sizeof buf, "w");

	html_out(f, "<p title=\"%s\">%s %R %d %u 100%%</p>", "\"q'", "<script>", "<b>", 7, "a b&c");
	fclose(f);
	CHECK_STREQ(buf, "<p title=\"&quot;q&#39;\">&lt;script&gt; <b> 7 a%20b%26c 100%</p>");
	CHECK_EQ(html_escape_buf("<", buf, 4), -1);
	CHECK_EQ(html_escape_buf("<", buf, 5), 4);
}

int main(void)
{
	RUN(t_get);
	RUN(t_post_split);
	RUN(t_errors);
	RUN(t_limits);
	RUN(t_form);
	RUN(t_cookie);
	RUN(t_target);
	RUN(t_html);
	return check_done();
}
