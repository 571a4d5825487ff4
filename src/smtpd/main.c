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
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "privdrop.h"
#include "smtpd.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111

static const char usage_text[] =
	"usage: smtpd [-f] [--config FILE] [--users FILE] [--mail DIR] [--queue DIR]\n"
	"             [--throttle FILE] [--cert FILE] [--key FILE] [--user NAME]\n"
	"             [--hostname NAME] [--submission ADDR:PORT] [--smtps ADDR:PORT]\n"
	"             [--smtp ADDR:PORT] [--ready-fd N]\n";

static void parse_args(struct smtpd_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		SERVER_LONGOPTS,
		{ "mail", 1, NULL, 'm' }, { "queue", 1, NULL, 'q' },
		{ "submission", 1, NULL, '1' }, { "smtps", 1, NULL, '2' },
		{ "smtp", 1, NULL, '3' }, { NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct smtpd_opts){ .mail_root = "/data/mail", .queue_dir = "/data/queue" };
	server_opts_defaults(&o->srv);
	while ((ch = getopt_long(argc, argv, SERVER_SHORTOPTS, longopts, NULL)) != -1) {
		if (server_opt(&o->srv, ch, optarg))
			continue;
		switch (ch) {
		case 'm': o->mail_root = optarg; break;
		case 'q': o->queue_dir = optarg; break;
		case '1': o->listen[SMTPD_SUBMISSION] = optarg; break;
		case '2': o->listen[SMTPD_SMTPS] = optarg; break;
		case '3': o->listen[SMTPD_PORT25] = optarg; break;
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

/* ---- configuration and users --------------------------------------------- */

static struct config *load_config(const char *path)
{
	struct config_errors errs;
	struct config *cfg = config_load(path, &errs);

	if (!cfg)
		for (int i = 0; i < errs.count; i++)
			log_msg(LOG_ERR, NULL, "%s", errs.e[i].text);
	return cfg;
}

void smtpd_refresh_users(struct smtpd *d)
{
	struct stat st;
	struct users_db fresh;
	char err[256];

	if (d->jobs > 0)
		return;   /* workers read the users now (worker.c) */
	if (stat(d->o.srv.users, &st) < 0)
		st.st_mtim = (struct timespec){ 0, 0 };
	if (st.st_mtim.tv_sec == d->users_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == d->users_mtime.tv_nsec)
		return;
	if (users_load(&fresh, d->o.srv.users, err, sizeof err) < 0) {
		log_msg(LOG_ERR, NULL, "%s: %s (keeping the previous users)", d->o.srv.users, err);
		return;
	}
	users_free(&d->users);
	d->users = fresh;
	d->users_mtime = st.st_mtim;
}

static void reload(struct smtpd *d)
{
	struct config *fresh = load_config(d->o.srv.config);

	d->reload_pending = 0;
	if (fresh) {
		config_free(d->cfg);
		d->cfg = fresh;
		log_msg(LOG_INFO, NULL, "configuration reloaded");
	} else {
		log_msg(LOG_ERR, NULL, "keeping the previous configuration");
	}
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
	struct smtpd *d = (struct smtpd *)((char *)(lis - lis->kind) - offsetof(struct smtpd, lis));

	(void)l;
	(void)events;
	conn_accept(d, lis);
}

static void open_listeners(struct smtpd *d)
{
	char def[SERVER_SPEC_MAX];
	static const int ports[3] = { 587, 465, 25 };

	for (int k = 0; k < SMTPD_LISTEN_MAX; k++) {
		const char *spec = d->o.listen[k];

		d->lis[k].fd = -1;
		d->lis[k].kind = (enum smtpd_kind)k;
		if (!spec && k == SMTPD_PORT25 && !d->cfg->smtp.port25)
			continue;
		if (!spec && server_spec(&d->cfg->lan.address.addr, ports[k], def, sizeof def) < 0)
			log_die(EXIT_PERM, "LAN address too long");
		if (!spec)
			spec = def;
		d->lis[k].fd = server_listen(spec, SERVER_BACKLOG);
		if (d->lis[k].fd < 0)
			log_die(EXIT_TEMP, "cannot listen on %s: %s", spec, strerror(errno));
		evl_io_init(&d->lis[k].io, d->lis[k].fd, on_listen, &d->lis[k]);
		if (evl_io_set(&d->loop, &d->lis[k].io, EVL_READ) < 0)
			log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
		log_msg(LOG_INFO, NULL, "listening on %s (%s)", spec,
			k == SMTPD_SUBMISSION ? "submission, STARTTLS" :
			k == SMTPD_SMTPS ? "submissions, implicit TLS" : "smtp, port-25 devices");
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
	static struct smtpd d;
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	parse_args(&d.o, argc, argv);
	log_open("smtpd", LOG_MAIL, d.o.srv.foreground ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	d.cfg = load_config(d.o.srv.config);
	if (!d.cfg)
		log_die(EXIT_PERM, "%s: invalid configuration", d.o.srv.config);
	if (d.o.srv.hostname)
		snprintf(d.hostname, sizeof d.hostname, "%s", d.o.srv.hostname);
	else if (snprintf(d.hostname, sizeof d.hostname, "%s.%s", d.cfg->global.hostname,
			  d.cfg->global.internal_domain) >= (int)sizeof d.hostname)
		log_die(EXIT_PERM, "host name too long");
	users_init(&d.users);
	smtpd_refresh_users(&d);
	users_cache_init(&d.cache);
	if (tls_server_config_load(&d.tls, d.o.srv.cert, d.o.srv.key, err, sizeof err) < 0)
		log_die(EXIT_TEMP, "TLS certificate: %s", err);
	d.have_tls = 1;
	if (evl_init(&d.loop, d.heap, SMTPD_TIMERS_MAX) < 0)
		log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
	open_listeners(&d);
	drop_privileges(d.o.srv.run_user);
	/* As the unprivileged user: it owns what it creates in the queue. */
	if (queue_open(&d.queue, d.o.queue_dir) < 0)
		log_die(EXIT_TEMP, "queue %s: %s", d.o.queue_dir, strerror(errno));
	if (queue_recover(&d.queue, time(NULL), QUEUE_STALE_AGE) > 0)
		log_msg(LOG_NOTICE, NULL, "queue: removed leftovers of a crash");
	evl_signal(&d.loop, SIGTERM, on_signal, &d);
	evl_signal(&d.loop, SIGINT, on_signal, &d);
	evl_signal(&d.loop, SIGHUP, on_signal, &d);
	/* After evl_signal: the threads inherit the blocked signals, so
	 * SIGTERM/SIGHUP reach the loop's signalfd, never a worker. */
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
