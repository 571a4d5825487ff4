/*
 * smtpd - the submission server (docs/smtpd.8.md): LAN 587 with STARTTLS,
 * 465 with implicit TLS, optionally 25 for configured devices. Loads the
 * configuration, users and certificate, binds, drops root, then serves
 * every connection from one event loop.
 *
 * Exit status: 0 on SIGTERM/SIGINT, 100 for a permanent problem (usage,
 * configuration), 111 for a temporary one (cannot bind, no certificate).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "smtpd.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111

static const char usage_text[] =
	"usage: smtpd [-f] [--config FILE] [--users FILE] [--mail DIR] [--queue DIR]\n"
	"             [--throttle FILE] [--cert FILE] [--key FILE] [--user NAME]\n"
	"             [--hostname NAME] [--submission ADDR:PORT] [--smtps ADDR:PORT]\n"
	"             [--smtp ADDR:PORT] [--ready-fd N]\n";

/* smtpd's own options (server_args.own). */
static int own_opt(void *ctx, int ch, const char *arg)
{
	struct smtpd_opts *o = ctx;

	switch (ch) {
	case 'm': o->mail_root = arg; return 1;
	case 'q': o->queue_dir = arg; return 1;
	case '1': o->listen[SMTPD_SUBMISSION] = arg; return 1;
	case '2': o->listen[SMTPD_SMTPS] = arg; return 1;
	case '3': o->listen[SMTPD_PORT25] = arg; return 1;
	default: return 0;
	}
}

static void parse_args(struct smtpd_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		SERVER_LONGOPTS,
		{ "mail", 1, NULL, 'm' }, { "queue", 1, NULL, 'q' },
		{ "submission", 1, NULL, '1' }, { "smtps", 1, NULL, '2' },
		{ "smtp", 1, NULL, '3' }, { NULL, 0, NULL, 0 },
	};
	const struct server_args args = { SERVER_SHORTOPTS, longopts, usage_text, own_opt, o };

	*o = (struct smtpd_opts){ .mail_root = "/data/mail", .queue_dir = "/data/queue" };
	server_parse_args(&o->srv, &args, argc, argv);
}

/* ---- configuration and users --------------------------------------------- */

void smtpd_refresh_users(struct smtpd *d)
{
	if (d->jobs > 0)
		return;   /* workers read the users now (worker.c) */
	server_users_refresh(&d->users, &d->users_mtime, d->o.srv.users);
}

static void reload(struct smtpd *d)
{
	d->reload_pending = 0;
	server_config_reload(&d->cfg, d->o.srv.config);
	d->users_mtime = (struct timespec){ 0, 0 };
	smtpd_refresh_users(d);
}

void smtpd_reload_pending(struct smtpd *d)
{
	if (d->reload_pending && d->jobs == 0)
		reload(d);
}

static void on_signal(struct evloop *l, int signo, void *ctx)
{
	struct smtpd *d = ctx;

	if (signo != SIGHUP) {
		log_msg(LOG_INFO, NULL, "signal %d: stopping", signo);
		evl_stop(l, 0);
		return;
	}
	d->reload_pending = 1;   /* now, or when the workers are idle */
	smtpd_reload_pending(d);
}

/* ---- listeners ------------------------------------------------------------- */

static void on_listen(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct smtpd_listener *lis = io->ctx;

	(void)l;
	(void)events;
	conn_accept(lis->d, lis);
}

static const char *const kind_text[SMTPD_LISTEN_MAX] = {
	"submission, STARTTLS", "submissions, implicit TLS", "smtp, port-25 devices",
};

/* The listener of kind k: --submission/--smtps/--smtp, else the LAN
 * address on 587/465 (25 only with [smtp] port25). */
static void open_listener(struct smtpd *d, int k)
{
	static const int ports[SMTPD_LISTEN_MAX] = { 587, 465, 25 };
	char def[SERVER_SPEC_MAX];
	const char *spec = d->o.listen[k];

	d->lis[k].fd = -1;
	d->lis[k].kind = (enum smtpd_kind)k;
	d->lis[k].d = d;
	if (!spec && k == SMTPD_PORT25 && !d->cfg->smtp.port25)
		return;
	if (!spec && server_spec(&d->cfg->lan.address.addr, ports[k], def, sizeof def) < 0)
		log_die(EXIT_PERM, "LAN address too long");
	if (!spec)
		spec = def;
	d->lis[k].fd = server_listen_io(&d->loop, &d->lis[k].io, spec, on_listen, &d->lis[k]);
	if (d->lis[k].fd < 0)
		log_die(EXIT_TEMP, "cannot listen on %s: %s", spec, strerror(errno));
	log_msg(LOG_INFO, NULL, "listening on %s (%s)", spec, kind_text[k]);
}

int main(int argc, char **argv)
{
	static struct smtpd d;
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	parse_args(&d.o, argc, argv);
	log_open("smtpd", LOG_MAIL, d.o.srv.foreground ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	d.cfg = server_config_load(d.o.srv.config);
	if (!d.cfg)
		log_die(EXIT_PERM, "%s: invalid configuration", d.o.srv.config);
	if (server_hostname(&d.o.srv, d.cfg, d.hostname, sizeof d.hostname) < 0)
		log_die(EXIT_PERM, "host name too long");
	users_init(&d.users);
	smtpd_refresh_users(&d);
	users_cache_init(&d.cache);
	if (tls_server_config_load(&d.tls, d.o.srv.cert, d.o.srv.key, err, sizeof err) < 0)
		log_die(EXIT_TEMP, "TLS certificate: %s", err);
	d.have_tls = 1;
	if (evl_init(&d.loop, d.heap, SMTPD_TIMERS_MAX) < 0)
		log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
	for (int k = 0; k < SMTPD_LISTEN_MAX; k++)
		open_listener(&d, k);
	server_drop_or_die(d.o.srv.run_user, EXIT_PERM);
	/* As the unprivileged user: it owns what it creates in the queue. */
	if (queue_open(&d.queue, d.o.queue_dir) < 0)
		log_die(EXIT_TEMP, "queue %s: %s", d.o.queue_dir, strerror(errno));
	if (queue_recover(&d.queue, time(NULL), QUEUE_STALE_AGE) > 0)
		log_msg(LOG_NOTICE, NULL, "queue: removed leftovers of a crash");
	/* Before the threads: they inherit the blocked signals, so
	 * SIGTERM/SIGHUP reach the loop's signalfd, never a worker. */
	if (server_signals(&d.loop, on_signal, &d) < 0)
		log_die(EXIT_TEMP, "signals: %s", strerror(errno));
	if (pool_start(&d) < 0)
		log_msg(LOG_WARNING, NULL, "no worker threads: delivering in the event loop");
	server_ready(&d.o.srv.ready_fd);
	log_msg(LOG_INFO, NULL, "ready as %s", d.hostname);
	int code = evl_run(&d.loop);

	pool_stop(&d);
	evl_free(&d.loop);
	queue_close(&d.queue);
	tls_server_config_free(&d.tls);
	users_free(&d.users);
	config_free(d.cfg);
	return code < 0 ? EXIT_TEMP : code;
}
