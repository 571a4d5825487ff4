/*
 * main.c - webd: binds 443 and 80, loads the TLS key as root, drops to the
 * web user, then forks one child per connection (webd.h, docs/web.md).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "privdrop.h"
#include "webd.h"

#define WEBD_BACKLOG 64

static const char usage[] =
	"usage: webd [--https ADDR:PORT] [--http ADDR:PORT] [--cert FILE] [--key FILE]\n"
	"            [--user NAME] [--cgi PROGRAM] [--www DIR] [--redirect-port N]\n"
	"            [--ready-fd N]\n";

static volatile sig_atomic_t children;

static void on_child(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		children--;
	errno = saved;
}

static int parse_opts(struct webd_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "https", 1, 0, 's' }, { "http", 1, 0, 'h' }, { "cert", 1, 0, 'c' },
		{ "key", 1, 0, 'k' }, { "user", 1, 0, 'u' }, { "cgi", 1, 0, 'g' },
		{ "www", 1, 0, 'w' }, { "redirect-port", 1, 0, 'p' }, { "ready-fd", 1, 0, 'r' },
		{ 0, 0, 0, 0 },
	};
	int c;

	*o = (struct webd_opts){
		.https = "0.0.0.0:443", .http = "0.0.0.0:80",
		.cert = "/data/secrets/tls/server.pem", .key = "/data/secrets/tls/server.key",
		.cgi = "/usr/libexec/postern/web/admin.cgi", .www = "/usr/share/postern/www",
		.redirect_port = 443, .ready_fd = -1,
	};
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': o->https = optarg; break;
		case 'h': o->http = *optarg ? optarg : NULL; break;
		case 'c': o->cert = optarg; break;
		case 'k': o->key = optarg; break;
		case 'u': o->user = optarg; break;
		case 'g': o->cgi = optarg; break;
		case 'w': o->www = optarg; break;
		case 'p': o->redirect_port = atoi(optarg); break;
		case 'r': o->ready_fd = atoi(optarg); break;
		default: return -1;
		}
	}
	return optind == argc ? 0 : -1;
}

/* Listens on "ADDR:PORT" ("[v6]:PORT" too). Returns the fd or -1. */
static int listen_on(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST },
			*ai;
	int fd, one = 1;
	size_t hl;

	if (!colon || (hl = (size_t)(colon - spec)) >= sizeof host)
		return -1;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, WEBD_BACKLOG) < 0)) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	const void *a = ss->ss_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (!inet_ntop(ss->ss_family, a, out, (socklen_t)cap))
		snprintf(out, cap, "unknown");
	if (strncmp(out, "::ffff:", 7) == 0)
		memmove(out, out + 7, strlen(out + 7) + 1);
}

static void accept_one(const struct webd_opts *o, const struct tls_server_config *cfg,
		       int lfd, int tls, const int *lfds)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char peer[INET6_ADDRSTRLEN];
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	pid_t pid;

	if (fd < 0)
		return;
	if (children >= WEBD_CONNS_MAX) {
		close(fd);   /* the browser retries; nobody can hold all slots long */
		return;
	}
	peer_name(&ss, peer, sizeof peer);
	pid = fork();
	if (pid == 0) {
		close(lfds[0]);
		if (lfds[1] >= 0)
			close(lfds[1]);
		signal(SIGCHLD, SIG_DFL);
		if (tls)
			webd_serve_https(o, cfg, fd, peer);
		else
			webd_serve_redirect(o, fd, peer);
		_exit(0);
	}
	if (pid > 0)
		children++;
	close(fd);
}

static void serve_forever(const struct webd_opts *o, const struct tls_server_config *cfg,
			  const int *lfds)
{
	struct pollfd p[2] = { { lfds[0], POLLIN, 0 }, { lfds[1], POLLIN, 0 } };

	for (;;) {
		if (poll(p, lfds[1] >= 0 ? 2 : 1, -1) < 0)
			continue;   /* EINTR: a child ended */
		if (p[0].revents & POLLIN)
			accept_one(o, cfg, lfds[0], 1, lfds);
		if (lfds[1] >= 0 && (p[1].revents & POLLIN))
			accept_one(o, cfg, lfds[1], 0, lfds);
	}
}

int main(int argc, char **argv)
{
	static struct tls_server_config cfg;
	struct webd_opts o;
	struct sigaction sa = { .sa_handler = on_child, .sa_flags = SA_NOCLDSTOP };
	char err[256];
	int lfds[2] = { -1, -1 };

	if (parse_opts(&o, argc, argv) < 0) {
		fputs(usage, stderr);
		return 100;
	}
	openlog("webd", LOG_PID, LOG_DAEMON);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGCHLD, &sa, NULL);
	if (tls_server_config_load(&cfg, o.cert, o.key, err, sizeof err) < 0) {
		fprintf(stderr, "webd: %s\n", err);
		return 111;
	}
	lfds[0] = listen_on(o.https);
	if (lfds[0] < 0 || (o.http && (lfds[1] = listen_on(o.http)) < 0)) {
		fprintf(stderr, "webd: cannot listen on %s: %s\n",
			lfds[0] < 0 ? o.https : o.http, strerror(errno));
		return 111;
	}
	/* The key is in memory and the ports are bound: leave root now. */
	if (priv_drop(o.user, err, sizeof err) < 0) {
		fprintf(stderr, "webd: %s\n", err);
		return 100;
	}
	if (o.ready_fd >= 0) {
		(void)!write(o.ready_fd, "\n", 1);
		close(o.ready_fd);
	}
	syslog(LOG_INFO, "listening on %s%s%s", o.https, o.http ? " and " : "",
	       o.http ? o.http : "");
	serve_forever(&o, &cfg, lfds);
}
