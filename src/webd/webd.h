/*
 * webd.h - the web page's HTTPS front end (docs/web.md): TLS on the LAN
 * (443), a redirect on plain HTTP (80), static assets, and CGI programs run
 * as the unprivileged web user. One process per connection (forked), so a
 * crash or a slow client touches nobody else; at most WEBD_CONNS_MAX at once.
 */
#ifndef POSTERN_WEBD_H
#define POSTERN_WEBD_H

#include <stddef.h>

#include "http.h"
#include "tls.h"

#define WEBD_CONNS_MAX 32             /* connections served at once */
#define WEBD_HANDSHAKE_MS 10000       /* TLS handshake deadline */
#define WEBD_REQUEST_MS 30000         /* whole request deadline */
#define WEBD_CGI_MS 60000             /* CGI run time */
#define WEBD_CGI_OUT_MAX (4 << 20)    /* bytes a CGI may answer */
#define WEBD_CGI_HEAD_MAX 8192        /* bytes of CGI header lines */
#define WEBD_STATIC_MAX (1 << 20)     /* bytes of one static asset */
#define WEBD_ENV_MAX 64               /* environment entries for a CGI */

struct webd_opts {
	const char *https;                /* ADDR:PORT */
	const char *http;                 /* ADDR:PORT, NULL: none */
	const char *cert, *key;
	const char *user;                 /* run as (after binding, loading the key) */
	const char *cgi;                  /* the CGI program */
	const char *www;                  /* static assets (served as /static/NAME) */
	int redirect_port;                /* the HTTPS port named in redirects */
	int ready_fd;
};

/* A response being built: status, extra header lines, body. */
struct webd_resp {
	int status;
	char head[WEBD_CGI_HEAD_MAX];     /* "Name: value\r\n" lines */
	size_t head_len;
	const char *body;
	size_t body_len;
};

/* conn.c: serves one HTTPS connection on fd (in a forked child). */
void webd_serve_https(const struct webd_opts *o, const struct tls_server_config *cfg,
		      int fd, const char *peer);

/* conn.c: serves one plain HTTP connection: a redirect to HTTPS. */
void webd_serve_redirect(const struct webd_opts *o, int fd, const char *peer);

/* cgi.c: runs the CGI for req; fills resp (body in a malloc'ed buffer kept
 * in *mem, freed by the caller). Returns 0, or -1 (resp holds a 5xx). */
int webd_cgi(const struct webd_opts *o, const struct http_req *req, const char *path,
	     const char *query, const char *peer, struct webd_resp *resp, char **mem);

/* conn.c: formats the status line, fixed security headers, resp's headers
 * and Content-Length into out; returns the length or -1. */
int webd_format_head(const struct webd_resp *resp, char *out, size_t cap);

#endif
