/*
 * main.c - relayd: the outbound queue runner (docs/relayd.8.md).
 *
 *   relayd [-f] [-d DATADIR] [--config FILE] [--users FILE] [--mail DIR]
 *          [--queue DIR] [--secrets DIR] [--user NAME] [--sessions N]
 *          [--time-scale F] [--once] [--ready-fd N]
 *
 * Signals: SIGHUP re-reads the configuration and the users; SIGUSR1 (or
 * the file QUEUE/flush appearing) makes every queued message due now;
 * SIGTERM/SIGINT stop after closing the sessions' sockets (an unfinished
 * transaction is simply not acknowledged: the message stays queued).
 * Exit status: 0, 100 for a configuration error, 111 for a temporary one.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "privdrop.h"
#include "relayd.h"
#include "secret.h"
#include "server.h"
#include "status.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111
#define TIME_SCALE_MAX 1000000.0

struct opts {
	const char *data, *conf, *users, *mail, *queue, *secrets, *user;
	int foreground, sessions, once, ready_fd;
	double scale;
};

static const char usage_text[] =
	"usage: relayd [-f] [-d DATADIR] [--config FILE] [--users FILE] [--mail DIR]\n"
	"              [--queue DIR] [--secrets DIR] [--user NAME] [--sessions N]\n"
	"              [--time-scale F] [--once] [--ready-fd N]\n";

static void usage(void)
{
	fputs(usage_text, stderr);
	exit(EXIT_PERM);
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", 1, NULL, 'c' }, { "users", 1, NULL, 'u' }, { "mail", 1, NULL, 'm' },
		{ "queue", 1, NULL, 'q' }, { "secrets", 1, NULL, 's' }, { "user", 1, NULL, 'U' },
		{ "sessions", 1, NULL, 'n' }, { "time-scale", 1, NULL, 'T' },
		{ "once", 0, NULL, 'o' }, { "ready-fd", 1, NULL, 'r' },
		{ "foreground", 0, NULL, 'f' }, { NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct opts){ .data = "/data", .sessions = RELAY_SESSIONS_DEFAULT, .ready_fd = -1,
			    .scale = 1.0 };
	while ((ch = getopt_long(argc, argv, "fd:c:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': o->foreground = 1; break;
		case 'd': o->data = optarg; break;
		case 'c': o->conf = optarg; break;
		case 'u': o->users = optarg; break;
		case 'm': o->mail = optarg; break;
		case 'q': o->queue = optarg; break;
		case 's': o->secrets = optarg; break;
		case 'U': o->user = optarg; break;
		case 'n': o->sessions = atoi(optarg); break;
		case 'T': o->scale = strtod(optarg, NULL); break;
		case 'o': o->once = 1; break;
		case 'r': o->ready_fd = atoi(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || o->sessions < 1 || o->sessions > RELAY_SESSIONS_MAX ||
	    !(o->scale >= 1.0 && o->scale <= TIME_SCALE_MAX))
		usage();
}

static void set_path(char *dst, const char *given, const char *data, const char *rel)
{
	int n = given ? snprintf(dst, RELAY_PATH_MAX, "%s", given)
		      : snprintf(dst, RELAY_PATH_MAX, "%s/%s", data, rel);

	if (n < 0 || n >= RELAY_PATH_MAX)
		log_die(EXIT_PERM, "path too long: %s", given ? given : data);
}

/* ---- configuration -------------------------------------------------------- */

/* The smart-host password: the secret named by [smarthost] password-file
 * (secret.h: mode 0600, no symlink, one line). Read through the secrets
 * directory's descriptor, opened while still root: the directory (0711)
 * is not readable by relayd, and the password is read again after the
 * privilege drop (a retry, SIGHUP). 0 or -1. */
static int read_password(struct relayd *d, const char *file, char *err, size_t errlen)
{
	int n;

	d->password[0] = '\0';
	if (!file[0])
		return 0;
	if (d->secrets_fd >= 0)
		n = secret_read_at(d->secrets_fd, file, d->password, sizeof d->password, err, errlen);
	else
		n = secret_read(d->p.secrets, file, d->password, sizeof d->password, err, errlen);
	return n < 0 ? -1 : 0;
}

int relay_password_retry(struct relayd *d)
{
	char why[sizeof d->pw_error];

	if (read_password(d, d->cfg->smarthost.password_file, why, sizeof why) < 0) {
		if (strcmp(why, d->pw_error) != 0)   /* each new reason once */
			log_msg(LOG_ERR, NULL, "smart-host password: %s: outbound mail stays queued",
				why);
		memcpy(d->pw_error, why, sizeof why);
		return -1;
	}
	d->pw_error[0] = '\0';
	log_msg(LOG_NOTICE, NULL, "smart-host password readable: relaying");
	return 0;
}

/* The smart host's trust settings (anchors from ca-file, or the pin) into
 * *a and *t, leaving the ones in use alone: a reload whose ca-file cannot
 * be read keeps relaying with the old settings. 0 or -1. */
static int build_tls(const struct config_smarthost *sh, struct pem_anchors *a, int *have,
		     struct tls_client_config *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof *t);
	*have = 0;
	if (sh->verify == CONFIG_VERIFY_PIN) {
		t->have_pin = 1;
		memcpy(t->pin, sh->pin.sha256, sizeof t->pin);
		return 0;
	}
	if (pem_anchors_load(a, sh->ca_file, err, errlen) < 0)
		return -1;
	*have = 1;
	t->anchors = a->ta;
	t->anchor_count = a->count;
	return 0;
}

static void use_tls(struct relayd *d, const struct pem_anchors *a, int have,
		    const struct tls_client_config *t)
{
	if (d->have_anchors)
		pem_anchors_free(&d->anchors);
	d->anchors = *a;
	d->have_anchors = have;
	d->tcfg = *t;
}

/* An unreadable password (not stored yet, wrong owner or mode) is no reason
 * to stop: mail waits in the queue and relayd tries again at every scan,
 * so `postern secret set` is enough to get it going. */
static void load_password(struct relayd *d)
{
	if (read_password(d, d->cfg->smarthost.password_file, d->pw_error,
			  sizeof d->pw_error) < 0)
		log_msg(LOG_ERR, NULL, "smart-host password: %s: outbound mail stays queued",
			d->pw_error);
	else
		d->pw_error[0] = '\0';
}

/* The users file, when it changed (server_users_refresh: a file that cannot
 * be read keeps the users loaded before, or none at the start). */
static void load_users(struct relayd *d)
{
	static struct timespec mtime;

	server_users_refresh(&d->users, &mtime, d->p.users);
	if (!d->users.n)
		log_msg(LOG_WARNING, NULL, "%s: no users (DSNs cannot be delivered)", d->p.users);
}

/* Loads (or reloads) configuration, users, password and TLS settings; a
 * configuration that is invalid or whose ca-file cannot be read changes
 * nothing. 0 or -1. */
static int load_all(struct relayd *d)
{
	struct config *cfg = server_config_load(d->p.conf);
	struct tls_client_config t = { 0 };
	struct pem_anchors a = { 0 };
	int have = 0;
	char err[512];

	if (!cfg)
		return -1;
	if (cfg->smarthost.host[0] && build_tls(&cfg->smarthost, &a, &have, &t, err, sizeof err) < 0) {
		log_msg(LOG_ERR, NULL, "%s", err);
		config_free(cfg);
		return -1;
	}
	if (cfg->smarthost.host[0])
		use_tls(d, &a, have, &t);
	config_free(d->cfg);
	d->cfg = cfg;
	load_password(d);
	load_users(d);
	snprintf(d->ehlo, sizeof d->ehlo, "%s.%s", cfg->global.hostname, cfg->global.mail_domain);
	if (!cfg->smarthost.host[0])
		log_msg(LOG_NOTICE, NULL, "no [smarthost]: outbound mail stays queued");
	return 0;
}

/* ---- events ------------------------------------------------------------- */

static void on_signal(struct evloop *l, int signo, void *ctx)
{
	struct relayd *d = ctx;

	if (signo == SIGHUP) {
		if (load_all(d) == 0)
			log_msg(LOG_INFO, NULL, "configuration reloaded");
		else
			log_msg(LOG_ERR, NULL, "keeping the previous configuration");
		sched_rescan(d);
	} else if (signo == SIGUSR1) {
		sched_flush(d);
	} else {
		evl_stop(l, 0);
		return;
	}
	sched_kick(d);
}

/* The flush control file: whoever may write the queue asks for a run. */
static int flush_requested(struct relayd *d)
{
	char f[RELAY_PATH_MAX + 16];

	snprintf(f, sizeof f, "%s/%s", d->p.queue, RELAY_FLUSH_FILE);
	return unlink(f) == 0;
}

static void on_inotify(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct relayd *d = io->ctx;
	char buf[RELAY_INOTIFY_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	(void)l;
	(void)events;
	while ((n = read(d->inofd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				sched_rescan(d);
			else if (ev->wd == d->wd_env && ev->len)
				sched_update(d, ev->name);
			p += sizeof *ev + ev->len;
		}
	}
	if (flush_requested(d))
		sched_flush(d);
	sched_kick(d);
}

static void watch_queue(struct relayd *d)
{
	char env[RELAY_PATH_MAX + 8];

	snprintf(env, sizeof env, "%s/env", d->p.queue);
	d->inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->inofd < 0)
		log_die(EXIT_TEMP, "inotify: %s", strerror(errno));
	/* fs_write_atomic renames a finished envelope into env/. */
	d->wd_env = inotify_add_watch(d->inofd, env, IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE);
	d->wd_top = inotify_add_watch(d->inofd, d->p.queue, IN_CREATE | IN_MOVED_TO);
	if (d->wd_env < 0 || d->wd_top < 0)
		log_die(EXIT_TEMP, "inotify on %s: %s", d->p.queue, strerror(errno));
	evl_io_init(&d->inoio, d->inofd, on_inotify, d);
	if (evl_io_set(&d->loop, &d->inoio, EVL_READ) < 0)
		log_die(EXIT_TEMP, "event loop: %s", strerror(errno));
}

static void close_sessions(struct relayd *d)
{
	for (int i = 0; i < d->nsess_max; i++) {
		struct relay_sess *s = &d->sess[i];

		if (!s->active)
			continue;
		if (s->msgfd >= 0)
			close(s->msgfd);   /* not acknowledged: stays queued */
		if (s->fd >= 0)
			close(s->fd);
		free(s->tls);
	}
}

int main(int argc, char **argv)
{
	static struct relayd d;
	struct opts o;
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	parse_args(&o, argc, argv);
	log_open("relayd", LOG_MAIL, o.foreground ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	set_path(d.p.conf, o.conf, o.data, "etc/postern.conf");
	set_path(d.p.users, o.users, o.data, "etc/users");
	set_path(d.p.mail, o.mail, o.data, "mail");
	set_path(d.p.queue, o.queue, o.data, "queue");
	set_path(d.p.secrets, o.secrets, o.data, "secrets");
	users_init(&d.users);
	/* O_PATH: search permission is enough, and it is all relayd keeps. */
	d.secrets_fd = open(d.p.secrets, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (load_all(&d) < 0)
		log_die(EXIT_PERM, "%s: cannot start with this configuration", d.p.conf);
	if (geteuid() == 0)
		status_dir_init(status_dir());   /* the dashboard's records (status.h) */
	/* Nothing here listens, but the smart host's replies are parsed:
	 * never as root (DESIGN.md). */
	if (priv_drop(o.user, err, sizeof err) < 0)
		log_die(EXIT_PERM, "%s", err);
	if (queue_open(&d.q, d.p.queue) < 0)
		log_die(EXIT_TEMP, "queue %s: %s", d.p.queue, strerror(errno));
	d.scale = o.scale;
	d.t0_real = (int64_t)time(NULL);
	d.t0_mono = evl_clock_ms();
	d.once = o.once;
	d.nsess_max = o.sessions;
	d.sess = calloc((size_t)d.nsess_max, sizeof *d.sess);
	if (!d.sess || evl_init(&d.loop, d.heap, RELAY_TIMERS_MAX) < 0)
		log_die(EXIT_TEMP, "out of memory");
	sched_init(&d);
	watch_queue(&d);
	evl_signal(&d.loop, SIGTERM, on_signal, &d);
	evl_signal(&d.loop, SIGINT, on_signal, &d);
	evl_signal(&d.loop, SIGHUP, on_signal, &d);
	evl_signal(&d.loop, SIGUSR1, on_signal, &d);
	flush_requested(&d);
	sched_rescan(&d);
	if (o.ready_fd >= 0) {
		(void)!write(o.ready_fd, "\n", 1);
		close(o.ready_fd);
	}
	log_msg(LOG_INFO, NULL, "ready: %zu message(s) queued, smart host %s port %u", d.nent,
		d.cfg->smarthost.host[0] ? d.cfg->smarthost.host : "(none)",
		(unsigned)d.cfg->smarthost.port);
	sched_kick(&d);
	int code = evl_run(&d.loop);

	sched_commit(&d);
	close_sessions(&d);
	evl_free(&d.loop);
	queue_close(&d.q);
	users_free(&d.users);
	if (d.have_anchors)
		pem_anchors_free(&d.anchors);
	config_free(d.cfg);
	free(d.sess);
	free(d.ent);
	memset(d.password, 0, sizeof d.password);
	return code < 0 ? EXIT_TEMP : code;
}
