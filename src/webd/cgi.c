/*
 * cgi.c - runs the CGI program (RFC 3875) for one request: a fresh process
 * with a clean environment (the CGI variables plus POSTERN_* settings from
 * webd's own environment), the body on stdin, the answer read from stdout
 * under a deadline and a size cap. The CGI's "Status:" line becomes the
 * HTTP status; its other header lines are passed on when well-formed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "webd.h"

extern char **environ;

#define WEBD_ENV_LEN 4200   /* bytes of one variable (HTTP_COOKIE is the largest) */

static char env_store[WEBD_ENV_MAX][WEBD_ENV_LEN];

static void env_add(char **env, int *n, const char *name, const char *value)
{
	if (*n >= WEBD_ENV_MAX - 1)
		return;
	snprintf(env_store[*n], WEBD_ENV_LEN, "%s=%s", name, value);
	env[*n] = env_store[*n];
	(*n)++;
	env[*n] = NULL;
}

static void build_env(const struct http_req *req, const char *path, const char *query,
		      const char *peer, char **env)
{
	char len[24];
	int n = 0;

	env[0] = NULL;
	snprintf(len, sizeof len, "%zu", req->body_len);
	env_add(env, &n, "GATEWAY_INTERFACE", "CGI/1.1");
	env_add(env, &n, "REQUEST_METHOD", req->method);
	env_add(env, &n, "PATH_INFO", path);
	env_add(env, &n, "QUERY_STRING", query);
	env_add(env, &n, "REMOTE_ADDR", peer);
	env_add(env, &n, "HTTPS", "on");
	env_add(env, &n, "HTTP_HOST", req->host);
	env_add(env, &n, "HTTP_COOKIE", req->cookie);
	env_add(env, &n, "CONTENT_TYPE", req->content_type);
	env_add(env, &n, "CONTENT_LENGTH", len);
	env_add(env, &n, "PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
	for (char **e = environ; *e; e++)   /* test and site overrides */
		if (strncmp(*e, "POSTERN_", 8) == 0 || strncmp(*e, "ASAN_", 5) == 0 ||
		    strncmp(*e, "UBSAN_", 6) == 0) {
			char *eq = strchr(*e, '=');
			char name[64];
			if (eq && eq - *e < (long)sizeof name) {
				snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
				env_add(env, &n, name, eq + 1);
			}
		}
}

static pid_t spawn(const char *prog, char **env, int *in_w, int *out_r)
{
	int in[2], out[2];
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]), close(in[1]);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execle(prog, prog, (char *)NULL, env);
		_exit(127);
	}
	close(in[0]), close(out[1]);
	*in_w = in[1], *out_r = out[0];
	return pid;
}

/* Reads the CGI's output until EOF, the cap or the deadline. */
static ssize_t collect(int fd, char *buf, size_t cap, int64_t deadline)
{
	size_t len = 0;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		int64_t left = deadline - tls_now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n > 0 && len + (size_t)n >= cap))
			return -1;
		if (n == 0)
			return (ssize_t)len;
		len += (size_t)n;
	}
}

/* A CGI header line "Name: value": checked, then kept (or made the status). */
static int take_cgi_header(struct webd_resp *resp, const char *line, size_t n)
{
	const char *colon = memchr(line, ':', n);

	if (!colon || colon == line)
		return -1;
	for (const char *p = line; p < colon; p++)
		if (!(*p == '-' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return -1;
	for (const char *p = colon; p < line + n; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return -1;
	if ((size_t)(colon - line) == 6 && strncasecmp(line, "Status", 6) == 0) {
		resp->status = atoi(colon + 1);
		return resp->status >= 200 && resp->status <= 599 ? 0 : -1;
	}
	if (resp->head_len + n + 2 > sizeof resp->head)
		return -1;
	memcpy(resp->head + resp->head_len, line, n);
	memcpy(resp->head + resp->head_len + n, "\r\n", 2);
	resp->head_len += n + 2;
	return 0;
}

/* Splits the CGI's output into header lines and body. */
static int parse_output(char *out, size_t len, struct webd_resp *resp)
{
	size_t i = 0;

	resp->status = 200;
	resp->head_len = 0;
	while (i < len) {
		char *nl = memchr(out + i, '\n', len - i);
		size_t n;
		if (!nl)
			return -1;
		n = (size_t)(nl - (out + i));
		if (n && out[i + n - 1] == '\r')
			n--;
		if (n == 0) {
			resp->body = nl + 1;
			resp->body_len = len - (size_t)(nl + 1 - out);
			return 0;
		}
		if (take_cgi_header(resp, out + i, n) < 0)
			return -1;
		i = (size_t)(nl + 1 - out);
	}
	return -1;
}

static void fail_resp(struct webd_resp *resp, int status)
{
	resp->status = status;
	resp->head_len = 0;
	resp->body = "The page failed; details are in the box's log.\n";
	resp->body_len = strlen(resp->body);
}

int webd_cgi(const struct webd_opts *o, const struct http_req *req, const char *path,
	     const char *query, const char *peer, struct webd_resp *resp, char **mem)
{
	static char *env[WEBD_ENV_MAX];
	int in_w, out_r, st = 0;
	ssize_t len;
	pid_t pid;

	*mem = malloc(WEBD_CGI_OUT_MAX);
	build_env(req, path, query, peer, env);
	pid = *mem ? spawn(o->cgi, env, &in_w, &out_r) : -1;
	if (pid < 0) {
		fail_resp(resp, 500);
		return -1;
	}
	/* the body fits the pipe (HTTP_BODY_MAX <= 64 KiB): no deadlock */
	(void)!write(in_w, req->body, req->body_len);
	close(in_w);
	len = collect(out_r, *mem, WEBD_CGI_OUT_MAX, tls_now_ms() + WEBD_CGI_MS);
	close(out_r);
	if (len < 0)
		kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	if (len < 0 || parse_output(*mem, (size_t)len, resp) < 0) {
		syslog(LOG_ERR, "CGI %s failed (status %d)", o->cgi, st);
		fail_resp(resp, len < 0 ? 504 : 502);
		return -1;
	}
	return 0;
}
