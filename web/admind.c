/*
 * admind.c - the CGI's side of the helper protocol (src/admind/admind.h):
 * NUL-separated fields out, "ok\n..." or "error\nFIELD\tMESSAGE\n..." back.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cgi.h"

static int connect_admind(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 60 };
	int fd;

	if (strlen(path) >= sizeof sa.sun_path)
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w, n -= (size_t)w;
	}
	return 0;
}

static void parse_reply(struct cgi *c, char *text)
{
	struct reply *r = &c->rep;
	char *line, *save = NULL;

	memset(r, 0, sizeof *r);
	if (strncmp(text, "ok\n", 3) == 0) {
		r->ok = 1;
		r->data = text + 3;
		return;
	}
	if (strncmp(text, "error\n", 6) != 0) {
		r->err[r->nerr].field = "-";
		r->err[r->nerr++].msg = "the settings helper (admind) gave no answer";
		return;
	}
	for (line = strtok_r(text + 6, "\n", &save); line && r->nerr < WEB_ERRORS_MAX;
	     line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t');
		if (!tab)
			continue;
		*tab = '\0';
		r->err[r->nerr].field = line;
		r->err[r->nerr++].msg = tab + 1;
	}
}

int admind_call(struct cgi *c, const char *const *argv, int argc)
{
	static char buf[WEB_REPLY_MAX + 1];
	int fd = connect_admind(c->sock);
	size_t len = 0;
	ssize_t n;

	buf[0] = '\0';
	for (int i = 0; fd >= 0 && i < argc; i++)
		if (send_all(fd, argv[i], strlen(argv[i]) + 1) < 0)
			break;
	if (fd >= 0) {
		shutdown(fd, SHUT_WR);
		while (len < WEB_REPLY_MAX && (n = read(fd, buf + len, WEB_REPLY_MAX - len)) > 0)
			len += (size_t)n;
		close(fd);
	}
	buf[len] = '\0';
	parse_reply(c, arena_strdup(buf));
	return c->rep.ok ? 0 : -1;
}

const char *field_error(const struct cgi *c, const char *field)
{
	for (int i = 0; i < c->rep.nerr; i++)
		if (strcmp(c->rep.err[i].field, field) == 0)
			return c->rep.err[i].msg;
	return NULL;
}
