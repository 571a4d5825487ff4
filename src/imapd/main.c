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
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "imapd.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111

static const char usage_text[] =
	"usage: imapd [-f] [-c FILE] [--users FILE] [--mail DIR] [--throttle FILE] [--cert FILE]\n"
	"             [--key FILE] [--user NAME] [--imap ADDR:PORT] [--imaps ADDR:PORT]\n"
	"             [--ready-fd N]\n";

/* imapd's own options (server_args.own). */
static int own_opt(void *ctx, int ch, const char *arg)
{
	struct imapd_opts *o = ctx;

	switch (ch) {
	case 'm': o->mail_root = arg; return 1;
	case '1': o->listen[IMAPD_PLAIN] = arg; return 1;
	case '2': o->listen[IMAPD_IMAPS] = arg; return 1;
	default: return 0;
	}
}

static void parse_args(struct imapd_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		SERVER_LONGOPTS,
		{ "mail", 1, NULL, 'm' }, { "imap", 1, NULL, '1' }, { "imaps", 1, NULL, '2' },
		{ NULL, 0, NULL, 0 },
	};
	const struct server_args args = { SERVER_SHORTOPTS, longopts, usage_text,
					  own_opt, o };

	*o = (struct imapd_opts){ .mail_root = "/data/mail",
				  .listen = { "0.0.0.0:143", "0.0.0.0:993" } };
	server_parse_args(&o->srv, &args, argc, argv);
}

void imapd_refresh_users(struct imapd *d)
{
	if (d->jobs > 0)
		return;   /* workers read the users now (auth.c): later */
	server_users_refresh(&d->users, &d->users_mtime, d->o.srv.users);
}

/*
 * The one setting imapd takes from the configuration: mailbox-quota (APPEND
 * and COPY refused over it). No file: no quota. A file that does not parse
 * keeps the previous value (0 at start), logged.
 */
static void load_quota(struct imapd *d)
{
	struct config *cfg;

	if (access(d->o.srv.config, F_OK) < 0 && errno == ENOENT) {
		d->mailbox_quota = 0;
		return;
	}
	cfg = server_config_load(d->o.srv.config);
	if (!cfg) {
		log_msg(LOG_ERR, NULL, "%s: keeping mailbox-quota %llu", d->o.srv.config,
			(unsigned long long)d->mailbox_quota);
		return;
	}
	d->mailbox_quota = cfg->global.mailbox_quota;
	config_free(cfg);
}

static void on_signal(struct evloop *l, int signo, void *ctx)
{
	struct imapd *d = ctx;

	if (signo == SIGHUP) {
		d->users_mtime = (struct timespec){ 0, 0 };
		imapd_refresh_users(d);
		load_quota(d);
		return;
	}
	log_msg(LOG_INFO, NULL, "signal %d: stopping", signo);
	evl_stop(l, 0);
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
		d->lis[k].fd = server_listen_io(&d->loop, &d->lis[k].io, spec, on_listen, &d->lis[k]);
		if (d->lis[k].fd < 0)
			log_die(EXIT_TEMP, "cannot listen on %s: %s", spec, strerror(errno));
		log_msg(LOG_INFO, NULL, "listening on %s (%s)", spec,
			k == IMAPD_PLAIN ? "imap, STARTTLS" : "imaps, implicit TLS");
	}
}

int main(int argc, char **argv)
{
	static struct imapd d;
	char err[256];
	int code;

	signal(SIGPIPE, SIG_IGN);
	parse_args(&d.o, argc, argv);
	log_open("imapd", LOG_MAIL, d.o.srv.foreground ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	users_init(&d.users);
	imapd_refresh_users(&d);
	load_quota(&d);
	users_cache_init(&d.cache);
	if (tls_server_config_load(&d.tls, d.o.srv.cert, d.o.srv.key, err, sizeof err) < 0)
		log_die(EXIT_TEMP, "TLS certificate: %s", err);
	if (evl_init(&d.loop, d.heap, IMAPD_TIMERS_MAX) < 0)
		log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
	open_listeners(&d);
	server_drop_or_die(d.o.srv.run_user, EXIT_PERM);
	/* Before the threads: they inherit the blocked signals, so
	 * SIGTERM/SIGHUP reach the loop's signalfd, never a worker. */
	if (server_signals(&d.loop, on_signal, &d) < 0)
		log_die(EXIT_TEMP, "signals: %s", strerror(errno));
	if (idle_init(&d) < 0)
		log_msg(LOG_WARNING, NULL, "no inotify: IDLE updates only at DONE");
	if (pool_start(&d) < 0)
		log_msg(LOG_WARNING, NULL, "no worker threads: password checks block the loop");
	server_ready(&d.o.srv.ready_fd);
	log_msg(LOG_INFO, NULL, "ready");
	code = evl_run(&d.loop);
	conn_close_all(&d);
	pool_stop(&d);
	idle_fini(&d);
	evl_free(&d.loop);
	tls_server_config_free(&d.tls);
	users_free(&d.users);
	return code < 0 ? EXIT_TEMP : code;
}
