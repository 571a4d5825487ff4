/*
 * main.c - fetchd: fetches mail from the provider's POP3 accounts
 * (docs/fetchd.8.md).
 *
 *   fetchd [-d DATADIR] [-c CONF] [-f]            the daemon: polls every
 *                                                 enabled account on its
 *                                                 interval, all at once on
 *                                                 SIGUSR1 or when the control
 *                                                 file DATADIR/fetch/poll-now
 *                                                 appears; SIGHUP reloads
 *   fetchd --once [-d DATADIR] [-c CONF] [ACCOUNT] one poll (of one account,
 *                                                 or of every enabled one),
 *                                                 a summary on stdout: what
 *                                                 `postern fetch` runs
 *
 * Exit status of --once: 0 every account fetched, 111 a temporary failure
 * (connection, server, full disk: try again), 100 a configuration error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetchd.h"
#include "fsutil.h"
#include "privdrop.h"
#include "server.h"

/* The daemon looks at its clock and the control file this often (s). */
#define FETCH_TICK_S 5
/* After a failed poll the account is retried after this long at most (s). */
#define FETCH_RETRY_S 300
#define EXIT_TEMP 111
#define EXIT_PERM 100

static volatile sig_atomic_t got_usr1, got_hup, got_term;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
}

/* The dashboard's record of this poll (status.h: STATUS_DIR/fetch-NAME);
 * a poll skipped because another one held the account leaves it. A
 * record that cannot be written is logged once (no directory: none wanted,
 * e.g. a test), fetching goes on. */
static void publish(const struct config_account *a, int rc, const struct fetch_stats *st)
{
	static int warned;
	int result = rc == 0 ? STATUS_OK : st->result != STATUS_OK ? st->result : STATUS_FAILED;
	const char *detail = rc == 0 ? "" : st->detail;

	if (rc == 0 && st->over_quota) {   /* polled fine, but mail was left behind */
		result = STATUS_DELIVERY;
		detail = st->detail;
	}

	if (rc == 1)
		return;
	if (status_record(status_dir(), "fetch", a->h.name, (int64_t)time(NULL), result,
			  st->fetched, detail) < 0 && !warned && errno != ENOENT) {
		warned = 1;
		log_msg(LOG_WARNING, NULL, "status record in %s: %s", status_dir(), strerror(errno));
	}
}

static int set_paths(struct fetch_paths *p, const char *data, const char *conf)
{
	int bad = 0;
	bad |= snprintf(p->data, sizeof p->data, "%s", data) >= (int)sizeof p->data;
	bad |= snprintf(p->secrets, sizeof p->secrets, "%s/secrets", data) >= (int)sizeof p->secrets;
	bad |= snprintf(p->fetch, sizeof p->fetch, "%s/fetch", data) >= (int)sizeof p->fetch;
	bad |= snprintf(p->mail, sizeof p->mail, "%s/mail", data) >= (int)sizeof p->mail;
	bad |= snprintf(p->users, sizeof p->users, "%s/etc/users", data) >= (int)sizeof p->users;
	if (conf)
		bad |= snprintf(p->conf, sizeof p->conf, "%s", conf) >= (int)sizeof p->conf;
	else
		bad |= snprintf(p->conf, sizeof p->conf, "%s/etc/postern.conf", data) >= (int)sizeof p->conf;
	return bad ? -1 : 0;
}

static void print_stats(const struct config_account *a, int rc, const struct fetch_stats *st)
{
	if (rc == 1) {
		printf("%s: busy (another fetch is running)\n", a->h.name);
		return;
	}
	printf("%s: %s: %u on the server, %u fetched (%llu bytes), %u deleted%s, "
		"%u delivered before, %u too large, %u over quota\n", a->h.name,
		rc == 0 ? "ok" : "FAILED", st->listed, st->fetched, (unsigned long long)st->bytes,
		st->deleted, st->deleted && !st->committed ? " (not committed)" : "", st->already,
		st->skipped_big, st->over_quota);
}

static int once(const struct fetch_paths *p, const char *only)
{
	struct config *cfg = server_config_load(p->conf);
	if (!cfg)
		return EXIT_PERM;
	int status = 0, found = 0;
	for (int i = 0; i < cfg->naccounts; i++) {
		const struct config_account *a = &cfg->account[i];
		if (only ? strcmp(a->h.name, only) != 0 : !a->enabled)
			continue;
		found = 1;
		struct fetch_stats st;
		int rc = fetch_account(p, cfg, a, &st);
		publish(a, rc, &st);
		print_stats(a, rc, &st);
		if (rc < 0)
			status = EXIT_TEMP;
	}
	if (only && !found) {
		fprintf(stderr, "fetchd: no account \"%s\" in %s\n", only, p->conf);
		status = EXIT_PERM;
	}
	config_free(cfg);
	return status;
}

/* The control file: whoever may write DATADIR/fetch asks for a poll. */
static int poll_requested(const struct fetch_paths *p)
{
	char f[600];
	snprintf(f, sizeof f, "%s/poll-now", p->fetch);
	return unlink(f) == 0;
}

static void poll_due(const struct fetch_paths *p, const struct config *cfg, time_t *due, int all)
{
	time_t now = time(NULL);
	for (int i = 0; i < cfg->naccounts && !got_term; i++) {
		const struct config_account *a = &cfg->account[i];
		if (!a->enabled || (!all && now < due[i]))
			continue;
		struct fetch_stats st;
		int rc = fetch_account(p, cfg, a, &st);
		publish(a, rc, &st);
		unsigned wait = rc < 0 && a->poll > FETCH_RETRY_S ? FETCH_RETRY_S : a->poll;
		due[i] = time(NULL) + (time_t)wait;
		log_msg(rc < 0 ? LOG_WARNING : LOG_INFO, NULL, "account %s: %s, %u fetched, "
			"%u deleted, next poll in %us", a->h.name, rc < 0 ? "failed" : "done",
			st.fetched, st.deleted, wait);
	}
}

static int daemon_loop(const struct fetch_paths *p)
{
	struct config *cfg = server_config_load(p->conf);
	if (!cfg)
		return EXIT_PERM;
	time_t due[CONFIG_ACCOUNTS_MAX] = { 0 };	/* all due at start */
	log_msg(LOG_INFO, NULL, "started: %d account(s)", cfg->naccounts);
	while (!got_term) {
		if (got_hup) {
			got_hup = 0;
			struct config *fresh = server_config_load(p->conf);
			if (fresh) {
				config_free(cfg);
				cfg = fresh;
				memset(due, 0, sizeof due);
				log_msg(LOG_INFO, NULL, "configuration reloaded");
			} else {
				log_msg(LOG_ERR, NULL, "keeping the previous configuration");
			}
		}
		int all = got_usr1 || poll_requested(p);
		got_usr1 = 0;
		poll_due(p, cfg, due, all);
		if (!got_term && !got_usr1 && !got_hup)
			sleep(FETCH_TICK_S);	/* a signal cuts the sleep short */
	}
	log_msg(LOG_INFO, NULL, "stopping");
	config_free(cfg);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: fetchd [-d DATADIR] [-c CONF] [-u USER] [-f]\n"
		"       fetchd --once [-d DATADIR] [-c CONF] [-u USER] [ACCOUNT]\n");
}

int main(int argc, char **argv)
{
	const char *data = "/data", *conf = getenv("POSTERN_CONF"), *only = NULL;
	const char *user = NULL;
	char err[256];
	int one = 0, fg = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--once") == 0 || strcmp(argv[i], "-1") == 0)
			one = 1;
		else if (strcmp(argv[i], "-f") == 0)
			fg = 1;
		else if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
			*(argv[i][1] == 'd' ? &data : &conf) = argv[i + 1], i++;
		else if (strcmp(argv[i], "-u") == 0 && i + 1 < argc)
			user = argv[++i];   /* drop from root to USER (privdrop.h) */
		else if (argv[i][0] != '-' && one && !only)
			only = argv[i];
		else {
			usage();
			return 1;
		}
	}
	struct fetch_paths p;
	if (set_paths(&p, data, conf) < 0) {
		fprintf(stderr, "fetchd: path too long\n");
		return 1;
	}
	log_open("fetchd", LOG_MAIL, one || fg ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	/* As root, before dropping: the status directory, writable by the
	 * group mail (status.h); a failure only costs the dashboard's view. */
	if (geteuid() == 0 && status_dir_init(status_dir()) < 0 && errno != ENOENT)
		log_msg(LOG_WARNING, NULL, "status directory %s: %s", status_dir(), strerror(errno));
	/* Always: the umask 007 keeps the Maildirs the mail group's
	 * (fsutil.h FS_MAIL_*); as root, -u is required (network parsers
	 * never run as root). */
	if (priv_drop(user, err, sizeof err) < 0) {
		fprintf(stderr, "fetchd: %s (-u USER)\n", err);
		return 100;
	}
	signal(SIGPIPE, SIG_IGN);
	if (one)
		return once(&p, only);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	return daemon_loop(&p);
}
