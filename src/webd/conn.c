/*
 * conn.c - one connection (in its own process): TLS handshake, one request
 * through the bounded parser (http.h), then a static asset or the CGI's
 * answer, with fixed security headers; "Connection: close" always.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "fsutil.h"
#include "webd.h"

#define WEBD_PATH_MAX 1024
#define WEBD_REDIRECT_MS 5000
/* Bytes handed to tls_write_fd at a time: less than one TLS record, so each
 * call fits the engine's send buffer (tls_write_fd of more than a record
 * can stall waiting for input once the first record has gone out). */
#define WEBD_WRITE_CHUNK 8192

/* Sent with every answer (docs/web.md, "Headers"). */
static const char security_headers[] =
	"Strict-Transport-Security: max-age=31536000\r\n"
	"X-Content-Type-Options: nosniff\r\n"
	"X-Frame-Options: DENY\r\n"
	"Referrer-Policy: no-referrer\r\n"
	"Content-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self' data:; "
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'\r\n";

int webd_format_head(const struct webd_resp *resp, char *out, size_t cap)
{
	int n = snprintf(out, cap, "HTTP/1.1 %d %s\r\n%s%.*sContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", resp->status, http_reason(resp->status),
			 security_headers, (int)resp->head_len, resp->head, resp->body_len);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

static void add_header(struct webd_resp *resp, const char *line)
{
	size_t n = strlen(line);

	if (resp->head_len + n <= sizeof resp->head) {
		memcpy(resp->head + resp->head_len, line, n);
		resp->head_len += n;
	}
}

static void error_page(struct webd_resp *resp, int status)
{
	static char body[128];

	resp->status = status;
	resp->head_len = 0;
	add_header(resp, "Content-Type: text/plain; charset=utf-8\r\n");
	snprintf(body, sizeof body, "%d %s\n", status, http_reason(status));
	resp->body = body;
	resp->body_len = strlen(body);
}

/* ---- static assets: /static/NAME, one safe component under www ---- */

static const char *content_type(const char *name)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".css", "text/css; charset=utf-8" }, { ".svg", "image/svg+xml" },
		{ ".png", "image/png" }, { ".ico", "image/x-icon" },
		{ ".txt", "text/plain; charset=utf-8" },
	};
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return NULL;
}

static void serve_static(const struct webd_opts *o, const char *name, struct webd_resp *resp,
			 char **mem)
{
	char p[WEBD_PATH_MAX], line[128];
	const char *type = content_type(name);
	ssize_t n;

	*mem = malloc(WEBD_STATIC_MAX + 1);
	if (!fs_name_ok(name) || !type || !*mem ||
	    snprintf(p, sizeof p, "%s/%s", o->www, name) >= (int)sizeof p ||
	    (n = fs_read_file(p, *mem, WEBD_STATIC_MAX)) < 0) {
		error_page(resp, 404);
		return;
	}
	resp->status = 200;
	snprintf(line, sizeof line, "Content-Type: %s\r\n", type);
	add_header(resp, line);
	add_header(resp, "Cache-Control: max-age=3600\r\n");
	resp->body = *mem;
	resp->body_len = (size_t)n;
}

/* ---- one request ---- */

static void respond(const struct webd_opts *o, const struct http_req *req, const char *peer,
		    struct webd_resp *resp, char **mem)
{
	static char path[WEBD_PATH_MAX], query[HTTP_TARGET_MAX + 1];

	if (req->state == HTTP_ERROR) {
		error_page(resp, req->status);
		return;
	}
	if (http_target_split(req->target, path, sizeof path, query, sizeof query) < 0) {
		error_page(resp, 400);
		return;
	}
	if (strncmp(path, "/static/", 8) == 0)
		serve_static(o, path + 8, resp, mem);
	else
		webd_cgi(o, req, path, query, peer, resp, mem);
}

static void log_request(const struct http_req *req, const char *peer, int status)
{
	syslog(status >= 400 ? LOG_NOTICE : LOG_INFO, "peer=%s %s status=%d%s%s", peer,
	       req->state == HTTP_ERROR ? "(bad request)" : req->method, status,
	       req->state == HTTP_ERROR ? " reason=" : "",
	       req->state == HTTP_ERROR ? req->reason : "");
}

static int send_tls(struct tls_conn *tc, int fd, const char *p, size_t n)
{
	int64_t deadline = tls_now_ms() + WEBD_REQUEST_MS;

	while (n > 0) {
		size_t k = n < WEBD_WRITE_CHUNK ? n : WEBD_WRITE_CHUNK;
		if (tls_write_fd(tc, fd, p, k, deadline) < 0)
			return -1;
		p += k, n -= k;
	}
	return 0;
}

/* Reads one request over TLS before the deadline. Returns 0, or -1 when the
 * client went away or was too slow. */
static int read_request(struct tls_conn *tc, int fd, struct http_req *req)
{
	int64_t deadline = tls_now_ms() + WEBD_REQUEST_MS;
	char buf[4096];

	http_req_init(req);
	while (req->state != HTTP_DONE && req->state != HTTP_ERROR) {
		ssize_t n = tls_read_fd(tc, fd, buf, sizeof buf, deadline);
		if (n <= 0)
			return -1;
		http_req_feed(req, buf, (size_t)n);
	}
	return 0;
}

void webd_serve_https(const struct webd_opts *o, const struct tls_server_config *cfg,
		      int fd, const char *peer)
{
	static struct tls_conn tc;
	static struct http_req req;
	static struct webd_resp resp;
	char head[WEBD_CGI_HEAD_MAX + 1024], *mem = NULL;
	int hl;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (tls_server_start(&tc, cfg) < 0 ||
	    tls_handshake(&tc, fd, tls_now_ms() + WEBD_HANDSHAKE_MS) < 0 ||
	    read_request(&tc, fd, &req) < 0)
		return;   /* scanners, aborted handshakes: nothing to answer */
	respond(o, &req, peer, &resp, &mem);
	log_request(&req, peer, resp.status);
	hl = webd_format_head(&resp, head, sizeof head);
	if (hl > 0 && send_tls(&tc, fd, head, (size_t)hl) == 0 &&
	    strcmp(req.method, "HEAD") != 0 && resp.body_len)
		send_tls(&tc, fd, resp.body, resp.body_len);
	tls_close_fd(&tc, fd, tls_now_ms() + WEBD_HANDSHAKE_MS);
	free(mem);
}

/* ---- port 80: redirect only ---- */

/* 1 when h is a plausible host name or address (no header or URL tricks). */
static int host_ok(const char *h)
{
	if (!*h || strlen(h) > 253)
		return 0;
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || strchr(".-:[]", *h)))
			return 0;
	return 1;
}

/* The host part of a Host header (without :port), or the address the
 * client connected to when the header is missing or odd. */
static void redirect_host(int fd, const char *hdr, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	const char *end = hdr[0] == '[' ? strchr(hdr, ']') : strchr(hdr, ':');
	size_t n = end ? (size_t)(end - hdr) + (hdr[0] == '[') : strlen(hdr);

	snprintf(out, cap, "%.*s", (int)n, hdr);
	if (host_ok(out))
		return;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
	else
		snprintf(out, cap, "postern");
}

static int read_plain(int fd, struct http_req *req)
{
	int64_t deadline = tls_now_ms() + WEBD_REDIRECT_MS;
	char buf[2048];

	http_req_init(req);
	while (req->state != HTTP_DONE && req->state != HTTP_ERROR) {
		struct pollfd p = { fd, POLLIN, 0 };
		int64_t left = deadline - tls_now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			return -1;
		http_req_feed(req, buf, (size_t)n);
	}
	return 0;
}

void webd_serve_redirect(const struct webd_opts *o, int fd, const char *peer)
{
	static struct http_req req;
	static struct webd_resp resp;
	char host[256], line[HTTP_TARGET_MAX + 400], head[WEBD_CGI_HEAD_MAX + 1024], port[16] = "";
	int hl;

	if (read_plain(fd, &req) < 0)
		return;
	if (req.state == HTTP_ERROR) {
		error_page(&resp, req.status);
	} else {
		redirect_host(fd, req.host, host, sizeof host);
		if (o->redirect_port != 443)
			snprintf(port, sizeof port, ":%d", o->redirect_port);
		resp.status = 301;
		snprintf(line, sizeof line, "Location: https://%s%s%s\r\n", host, port, req.target);
		add_header(&resp, line);
		add_header(&resp, "Content-Type: text/plain; charset=utf-8\r\n");
		resp.body = "This page is served over HTTPS only.\n";
		resp.body_len = strlen(resp.body);
	}
	log_request(&req, peer, resp.status);
	hl = webd_format_head(&resp, head, sizeof head);
	if (hl > 0)
		(void)!write(fd, head, (size_t)hl);
	if (hl > 0 && strcmp(req.method, "HEAD") != 0)
		(void)!write(fd, resp.body, resp.body_len);
	shutdown(fd, SHUT_WR);
}
