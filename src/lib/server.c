/*
 * server.c - plumbing shared by the network servers (see server.h).
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

void server_opts_defaults(struct server_opts *o)
{
	*o = (struct server_opts){
		.config = "/data/etc/postern.conf", .users = "/data/etc/users",
		.throttle = "/run/postern/throttle", .cert = "/data/secrets/tls/server.crt",
		.key = "/data/secrets/tls/server.key", .ready_fd = -1,
	};
}

int server_opt(struct server_opts *o, int ch, const char *arg)
{
	switch (ch) {
	case 'f': o->foreground = 1; return 1;
	case 'c': o->config = arg; return 1;
	case 'u': o->users = arg; return 1;
	case SERVER_OPT_THROTTLE: o->throttle = arg; return 1;
	case SERVER_OPT_CERT: o->cert = arg; return 1;
	case SERVER_OPT_KEY: o->key = arg; return 1;
	case SERVER_OPT_USER: o->run_user = arg; return 1;
	case SERVER_OPT_HOSTNAME: o->hostname = arg; return 1;
	case SERVER_OPT_READY_FD: o->ready_fd = atoi(arg); return 1;
	default: return 0;
	}
}

/* Splits "ADDR:PORT" / "[V6]:PORT" into host and port. 0 or -1. */
static int split_spec(const char *spec, char *host, size_t cap, const char **port)
{
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (!end || end[1] != ':' || (size_t)(end - spec) > cap)
			return -1;
		snprintf(host, cap, "%.*s", (int)(end - spec - 1), spec + 1);
		*port = end + 2;
		return 0;
	}
	const char *colon = strrchr(spec, ':');

	if (!colon || (size_t)(colon - spec) >= cap)
		return -1;
	snprintf(host, cap, "%.*s", (int)(colon - spec), spec);
	*port = colon + 1;
	return 0;
}

int server_listen(const char *spec, int backlog)
{
	char host[SERVER_SPEC_MAX];
	const char *port;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM }, *ai;
	int fd, one = 1;

	if (split_spec(spec, host, sizeof host, &port) < 0 ||
	    getaddrinfo(host, port, &hints, &ai) != 0) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
			bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0)) {
		int e = errno;

		close(fd);
		fd = -1;
		errno = e;
	}
	freeaddrinfo(ai);
	return fd;
}

int server_spec(const struct config_addr *addr, int port, char *out, size_t cap)
{
	char a[64];
	int n;

	config_addr_str(addr, a, sizeof a);
	n = snprintf(out, cap, strchr(a, ':') ? "[%s]:%d" : "%s:%d", a, port);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

void server_ready(int *fd)
{
	if (*fd < 0)
		return;
	(void)!write(*fd, "\n", 1);
	close(*fd);
	*fd = -1;
}
