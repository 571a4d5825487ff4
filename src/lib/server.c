/*
 * server.c - plumbing shared by the network servers (see server.h).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "privdrop.h"
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

void server_parse_args(struct server_opts *o, const struct server_args *a,
		       int argc, char **argv)
{
	int ch;

	server_opts_defaults(o);
	optind = 1;
	while ((ch = getopt_long(argc, argv, a->shortopts, a->longopts, NULL)) != -1)
		if (!server_opt(o, ch, optarg) && !a->own(a->ctx, ch, optarg))
			break;
	if (ch != -1 || optind != argc) {
		fputs(a->usage, stderr);
		exit(SERVER_EXIT_USAGE);
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

int server_listen_io(struct evloop *loop, struct evl_io *io, const char *spec,
		     evl_io_cb cb, void *ctx)
{
	int fd = server_listen(spec, SERVER_BACKLOG);

	if (fd < 0)
		return -1;
	evl_io_init(io, fd, cb, ctx);
	if (evl_io_set(loop, io, EVL_READ) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int server_users_refresh(struct users_db *db, struct timespec *mtime, const char *path)
{
	struct stat st;
	struct users_db fresh;
	char err[256];

	if (stat(path, &st) < 0)
		st.st_mtim = (struct timespec){ 0, 0 };
	if (st.st_mtim.tv_sec == mtime->tv_sec && st.st_mtim.tv_nsec == mtime->tv_nsec)
		return 0;
	if (users_load(&fresh, path, err, sizeof err) < 0) {
		log_msg(LOG_ERR, NULL, "%s: %s (keeping the previous users)", path, err);
		return -1;
	}
	users_free(db);
	*db = fresh;
	*mtime = st.st_mtim;
	return 1;
}

void server_drop_or_die(const char *user, int code)
{
	char err[256];

	if (priv_drop(user, err, sizeof err) < 0)
		log_die(code, "%s", err);
}

struct config *server_config_load(const char *path)
{
	struct config_errors errs;
	struct config *cfg = config_load(path, &errs);

	if (!cfg)
		for (int i = 0; i < errs.count; i++)
			log_msg(LOG_ERR, NULL, "%s", errs.e[i].text);
	return cfg;
}

int server_config_reload(struct config **cfg, const char *path)
{
	struct config *fresh = server_config_load(path);

	if (!fresh) {
		log_msg(LOG_ERR, NULL, "keeping the previous configuration");
		return -1;
	}
	config_free(*cfg);
	*cfg = fresh;
	log_msg(LOG_INFO, NULL, "configuration reloaded");
	return 1;
}

int server_hostname(const struct server_opts *o, const struct config *cfg,
		    char *out, size_t cap)
{
	int n = o->hostname ? snprintf(out, cap, "%s", o->hostname)
			    : snprintf(out, cap, "%s.%s", cfg->global.hostname,
				       cfg->global.internal_domain);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int server_signals(struct evloop *loop, evl_signal_cb cb, void *ctx)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };

	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (evl_signal(loop, sigs[i], cb, ctx) < 0)
			return -1;
	return 0;
}
