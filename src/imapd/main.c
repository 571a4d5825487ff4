/*
 * imapd - the IMAP server (docs/imapd.8.md): LAN 143 with STARTTLS and
 * 993 with implicit TLS, over the users' Maildirs. Loads users and the
 * certificate, binds, drops root, then serves every connection from one
 * event loop.
 *
 * Exit status: 0 on SIGTERM/SIGINT, 100 for a permanent problem (usage),
 * 111 for a temporary one (cannot bind, no certificate).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "imapd.h"
#include "privdrop.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111

static const char usage_text[] =
	"usage: imapd [-f] [--users FILE] [--mail DIR] [--throttle FILE] [--cert FILE]\n"
	"             [--key FILE] [--user NAME] [--imap ADDR:PORT] [--imaps ADDR:PORT]\n"
	"             [--ready-fd N]\n";

static void parse_args(struct imapd_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "users", 1, NULL, 'u' }, { "mail", 1, NULL, 'm' },
		{ "throttle", 1, NULL, 't' }, { "cert", 1, NULL, 'C' },
		{ "key", 1, NULL, 'K' }, { "user", 1, NULL, 'U' },
		{ "imap", 1, NULL, '1' }, { "imaps", 1, NULL, '2' },
		{ "ready-fd", 1, NULL, 'r' }, { "foreground", 0, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct imapd_opts){
		.users = "/data/etc/users", .mail_root = "/data/mail",
		.throttle = "/run/postern/throttle", .cert = "/data/secrets/tls/server.crt",
		.key = "/data/secrets/tls/server.key", .ready_fd = -1,
		.listen = { "0.0.0.0:143", "0.0.0.0:993" },
	};
	while ((ch = getopt_long(argc, argv, "fu:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': o->foreground = 1; break;
		case 'u': o->users = optarg; break;
		case 'm': o->mail_root = optarg; break;
		case 't': o->throttle = optarg; break;
		case 'C': o->cert = optarg; break;
		case 'K': o->key = optarg; break;
		case 'U': o->run_user = optarg; break;
		case '1': o->listen[IMAPD_PLAIN] = optarg; break;
		case '2': o->listen[IMAPD_IMAPS] = optarg; break;
		case 'r': o->ready_fd = atoi(optarg); break;
		default:
			fputs(usage_text, stderr);
			exit(EXIT_PERM);
		}
	}
	if (optind != argc) {
		fputs(usage_text, stderr);
		exit(EXIT_PERM);
	}
}

void imapd_refresh_users(struct imapd *d)
{
	struct stat st;
	struct users_db fresh;
	char err[256];

	if (d->jobs > 0)
		return;   /* workers read the users now (auth.c): later */
	if (stat(d->o.users, &st) < 0)
		st.st_mtim = (struct timespec){ 0, 0 };
	if (st.st_mtim.tv_sec == d->users_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == d->users_mtime.tv_nsec)
		return;
	if (users_load(&fresh, d->o.users, err, sizeof err) < 0) {
		log_msg(LOG_ERR, NULL, "%s: %s (keeping the previous users)", d->o.users, err);
		return;
	}
	users_free(&d->users);
	d->users = fresh;
	d->users_mtime = st.st_mtim;
}

static void on_signal(struct evloop *l, int signo, void *ctx)
{
	struct imapd *d = ctx;

	if (signo == SIGHUP) {
		d->users_mtime = (struct timespec){ 0, 0 };
		imapd_refresh_users(d);
		return;
	}
	log_msg(LOG_INFO, NULL, "signal %d: stopping", signo);
	evl_stop(l, 0);
}

/* "ADDR:PORT" or "[V6]:PORT" into a listening non-blocking socket. */
static int listen_on(const char *spec)
{
	char host[128];
	const char *port;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM }, *ai;
	int fd, one = 1;
	const char *colon = spec[0] == '[' ? strstr(spec, "]:") : strrchr(spec, ':');

	if (!colon || (size_t)(colon - spec) >= sizeof host)
		return -1;
	if (spec[0] == '[')
		snprintf(host, sizeof host, "%.*s", (int)(colon - spec - 1), spec + 1);
	else
		snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
	port = colon + (spec[0] == '[' ? 2 : 1);
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
			bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, IMAPD_BACKLOG) < 0)) {
		int e = errno;

		close(fd);
		fd = -1;
		errno = e;
	}
	freeaddrinfo(ai);
	return fd;
}

static void on_listen(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct imapd_listener *lis = io->ctx;

	(void)l;
	(void)events;
	conn_accept(lis->d, lis);
}

static void open_listeners(struct imapd *d)
{
	for (int k = 0; k < 2; k++) {
		const char *spec = d->o.listen[k];

		d->lis[k].fd = -1;
		d->lis[k].kind = (enum imapd_kind)k;
		d->lis[k].d = d;
		if (!spec || !*spec)
			continue;
		if ((d->lis[k].fd = listen_on(spec)) < 0)
			log_die(EXIT_TEMP, "cannot listen on %s: %s", spec, strerror(errno));
		evl_io_init(&d->lis[k].io, d->lis[k].fd, on_listen, &d->lis[k]);
		if (evl_io_set(&d->loop, &d->lis[k].io, EVL_READ) < 0)
			log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
		log_msg(LOG_INFO, NULL, "listening on %s (%s)", spec,
			k == IMAPD_PLAIN ? "imap, STARTTLS" : "imaps, implicit TLS");
	}
}

/* Network parsers never run as root (DESIGN.md): drop after binding. */
static void drop_privileges(const char *name)
{
	char err[256];

	if (priv_drop(name, err, sizeof err) < 0)
		log_die(EXIT_PERM, "%s", err);
}

int main(int argc, char **argv)
{
	static struct imapd d;
	char err[256];
	int code;

	signal(SIGPIPE, SIG_IGN);
	parse_args(&d.o, argc, argv);
	log_open("imapd", LOG_MAIL, d.o.foreground ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	users_init(&d.users);
	imapd_refresh_users(&d);
	users_cache_init(&d.cache);
	if (tls_server_config_load(&d.tls, d.o.cert, d.o.key, err, sizeof err) < 0)
		log_die(EXIT_TEMP, "TLS certificate: %s", err);
	if (evl_init(&d.loop, d.heap, IMAPD_TIMERS_MAX) < 0)
		log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
	open_listeners(&d);
	drop_privileges(d.o.run_user);
	evl_signal(&d.loop, SIGTERM, on_signal, &d);
	evl_signal(&d.loop, SIGINT, on_signal, &d);
	evl_signal(&d.loop, SIGHUP, on_signal, &d);
	/* Threads after evl_signal: they inherit the blocked signals, so
	 * SIGTERM/SIGHUP reach the loop's signalfd, never a worker. */
	if (pool_start(&d) < 0)
		log_msg(LOG_WARNING, NULL, "no worker threads: password checks block the loop");
	if (d.o.ready_fd >= 0) {
		(void)!write(d.o.ready_fd, "\n", 1);
		close(d.o.ready_fd);
	}
	log_msg(LOG_INFO, NULL, "ready");
	code = evl_run(&d.loop);
	conn_close_all(&d);
	pool_stop(&d);
	evl_free(&d.loop);
	tls_server_config_free(&d.tls);
	users_free(&d.users);
	return code < 0 ? EXIT_TEMP : code;
}
