/*
 * cmd_alerts.c - `postern alerts show|check` (docs/postern.8.md): the
 * dashboard's alerts (src/lib/alerts.h, the same rules), and the alert
 * mails to the admins.
 *
 *   show     the alerts in force now, one a line ("KEY<TAB>TEXT")
 *   check    the same, and for every alert that started or ended since
 *            the last check one mail to each admin-role user, delivered
 *            into their Maildirs through deliver.h; the state file keeps
 *            what was mailed, so an ongoing condition is mailed once
 *
 * Options: --data DIR (default $POSTERN_DATA or /data: configuration
 * DIR/etc/postern.conf unless $POSTERN_CONF, users DIR/etc/users, mail
 * DIR/mail, queue DIR/queue, certificate DIR/secrets/tls/server.pem),
 * --state FILE (DIR/etc/alerts.state), --services DIR (/run/service);
 * status records from $POSTERN_STATUS_DIR (status.h). Run every few
 * minutes by the runit service alerts. Exit status: 0, 1 usage, 111 a
 * mail or the state could not be written (the next check retries).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alerts.h"
#include "cmds.h"
#include "config.h"
#include "deliver.h"
#include "maildir.h"
#include "users.h"

#define ALERTS_PATH_MAX 1024
#define ALERTS_ADMINS_MAX 32          /* admins mailed */
#define ALERTS_MAIL_MAX 8192          /* bytes of one alert mail */
#define ALERTS_TO_MAX 2048            /* the To: header */
#define ALERTS_DEFAULT_SERVICES "/run/service"

struct alerts_opts {
	char data[ALERTS_PATH_MAX], conf[ALERTS_PATH_MAX], users[ALERTS_PATH_MAX];
	char mail[ALERTS_PATH_MAX], queue[ALERTS_PATH_MAX], cert[ALERTS_PATH_MAX];
	char state[ALERTS_PATH_MAX], services[ALERTS_PATH_MAX];
};

/* Who gets the mails and how they are addressed. */
struct admins {
	int n;
	char name[ALERTS_ADMINS_MAX][USERS_NAME_MAX + 1];
	const char *v[ALERTS_ADMINS_MAX];
	char to[ALERTS_TO_MAX];
	char box[CONFIG_HOST_MAX * 2 + 2];   /* hostname.mail-domain */
	char domain[CONFIG_HOST_MAX + 1];
};

static const char alerts_usage[] =
	"usage: postern alerts show|check [--data DIR] [--state FILE] [--services DIR]\n";

/* out = a followed by b. 0, or -1 when too long. */
static int set_path(char *out, const char *a, const char *b)
{
	return snprintf(out, ALERTS_PATH_MAX, "%s%s", a, b) >= ALERTS_PATH_MAX ? -1 : 0;
}

static int parse_opts(int argc, char **argv, struct alerts_opts *o)
{
	const char *data = getenv("POSTERN_DATA"), *state = NULL, *svc = NULL;
	int bad = 0;

	data = data && *data ? data : "/data";
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			return -1;
		if (strcmp(argv[i], "--data") == 0)
			data = argv[++i];
		else if (strcmp(argv[i], "--state") == 0)
			state = argv[++i];
		else if (strcmp(argv[i], "--services") == 0)
			svc = argv[++i];
		else
			return -1;
	}
	bad |= set_path(o->data, data, "");
	if (getenv("POSTERN_CONF") && *getenv("POSTERN_CONF"))
		bad |= set_path(o->conf, getenv("POSTERN_CONF"), "");
	else
		bad |= set_path(o->conf, data, "/etc/postern.conf");
	bad |= set_path(o->users, data, "/etc/users");
	bad |= set_path(o->mail, data, "/mail");
	bad |= set_path(o->queue, data, "/queue");
	bad |= set_path(o->cert, data, "/secrets/tls/server.pem");
	bad |= state ? set_path(o->state, state, "") : set_path(o->state, data, "/etc/alerts.state");
	bad |= set_path(o->services, svc ? svc : ALERTS_DEFAULT_SERVICES, "");
	return bad ? -1 : 0;
}

static int current(const struct alerts_opts *o, struct alert *out)
{
	struct alert_paths p = { o->data, o->queue, o->conf, status_dir(), o->cert, o->services };
	static struct alert_facts f;

	alerts_gather(&p, (int64_t)time(NULL), &f);
	return alerts_eval(&f, out, ALERT_MAX);
}

/* The admin-role users (enabled ones) and the box's name. 0 or -1. */
static int load_admins(const struct alerts_opts *o, struct admins *ad)
{
	static struct config_errors errs;
	struct config *cfg = config_load(o->conf, &errs);
	struct users_db db;
	char err[256];
	size_t off = 0;

	memset(ad, 0, sizeof *ad);
	snprintf(ad->domain, sizeof ad->domain, "%s", cfg ? cfg->global.mail_domain : "localhost");
	snprintf(ad->box, sizeof ad->box, "%s.%s", cfg && cfg->global.hostname[0] ?
		 cfg->global.hostname : "postern", ad->domain);
	config_free(cfg);
	if (users_load(&db, o->users, err, sizeof err) < 0) {
		fprintf(stderr, "postern alerts: %s\n", err);
		return -1;
	}
	for (size_t i = 0; i < db.n && ad->n < ALERTS_ADMINS_MAX; i++) {
		const struct users_entry *e = &db.e[i];
		if (e->kind != USERS_KIND_USER || e->role != USERS_ROLE_ADMIN || e->hash[0] == '!')
			continue;
		snprintf(ad->name[ad->n], sizeof ad->name[0], "%s", e->name);
		ad->v[ad->n] = ad->name[ad->n];
		off += (size_t)snprintf(ad->to + off, sizeof ad->to - off, "%s%s@%s", ad->n ? ", " : "",
					e->name, ad->domain);
		if (off >= sizeof ad->to)
			off = sizeof ad->to - 1;
		ad->n++;
	}
	users_free(&db);
	return 0;
}

/* One alert mail (entry e: started or cleared) to every admin. 0 or -1. */
static int mail_one(const struct alerts_opts *o, const struct admins *ad,
		    const struct alert_entry *e)
{
	static char msg[ALERTS_MAIL_MAX];
	char key[MAILDIR_KEY_MAX], err[512];
	/* Alerts are small system messages: never refused for quota. */
	struct deliver_ctx dc = { .mail_root = o->mail, .domain = ad->domain, .quota_check = 0 };
	struct deliver_env env = { .from = "", .rcpts = ad->v, .nrcpt = (size_t)ad->n };
	int n = alert_mail_format(e, ad->box, ad->to, (int64_t)time(NULL), msg, sizeof msg);
	int fd = memfd_create("alert", MFD_CLOEXEC), rc = -1;

	alert_mail_key(e, key, sizeof key);
	if (n > 0 && fd >= 0 && write(fd, msg, (size_t)n) == n) {
		rc = deliver_users(&dc, ad->v, (size_t)ad->n, fd, &env, key, NULL, err, sizeof err);
		if (rc < 0)
			fprintf(stderr, "postern alerts: mail about %s: %s\n", e->a.key, err);
	}
	if (fd >= 0)
		close(fd);
	return rc < 0 ? -1 : 0;
}

/* The markers of the mails sent (exactly-once keys) are no longer needed
 * once the state says so. */
static void forget_keys(const struct alerts_opts *o, const struct admins *ad,
			const struct alert_entry *e)
{
	char key[MAILDIR_KEY_MAX], dir[ALERTS_PATH_MAX];

	alert_mail_key(e, key, sizeof key);
	for (int i = 0; i < ad->n; i++)
		if (deliver_maildir_path(o->mail, ad->name[i], dir, sizeof dir) == 0)
			maildir_key_forget(dir, key);
}

/* Sends the pending mails of st; S -> A, C -> gone for those sent. Returns
 * the mails that could not be sent. */
static int send_pending(const struct alerts_opts *o, const struct admins *ad,
			struct alert_state *st, struct alert_entry *sent, int *nsent)
{
	int failed = 0, k = 0;

	for (int i = 0; i < st->n; i++) {
		struct alert_entry *e = &st->e[i];
		int pending = e->flag == ALERT_STARTED || e->flag == ALERT_CLEARED;
		if (pending && ad->n > 0 && mail_one(o, ad, e) < 0) {
			failed++;
		} else if (pending) {
			sent[(*nsent)++] = *e;
			printf("mailed %d admin(s): %s: %s\n", ad->n,
			       e->flag == ALERT_CLEARED ? "resolved" : "alert", e->a.text);
			if (e->flag == ALERT_CLEARED)
				continue;
			e->flag = ALERT_ACTIVE;
		}
		st->e[k++] = *e;
	}
	st->n = k;
	return failed;
}

/* Serialises checks (the service and one by hand): FILE.lock, held until
 * exit. 0 or -1. */
static int lock_state(const struct alerts_opts *o)
{
	char path[ALERTS_PATH_MAX + 8];
	int fd;

	snprintf(path, sizeof path, "%s.lock", o->state);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		fprintf(stderr, "postern alerts: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;   /* fd stays open: the lock ends with the process */
}

static int check(const struct alerts_opts *o, const struct alert *cur, int ncur)
{
	static struct alert_state st;
	static struct alert_entry sent[ALERT_MAX];
	struct admins ad;
	int nsent = 0, failed;

	if (lock_state(o) < 0)
		return 111;

	if (alert_state_load(o->state, &st) < 0) {
		fprintf(stderr, "postern alerts: %s: unreadable, starting afresh\n", o->state);
		memset(&st, 0, sizeof st);
	}
	alerts_merge(&st, cur, ncur, (int64_t)time(NULL));
	/* What is due is on disk before any mail goes (alerts.h). */
	if (alert_state_save(o->state, &st) < 0 || load_admins(o, &ad) < 0) {
		fprintf(stderr, "postern alerts: %s: %s\n", o->state, strerror(errno));
		return 111;
	}
	failed = send_pending(o, &ad, &st, sent, &nsent);
	if (alert_state_save(o->state, &st) < 0) {
		fprintf(stderr, "postern alerts: %s: %s\n", o->state, strerror(errno));
		return 111;
	}
	for (int i = 0; i < nsent; i++)
		forget_keys(o, &ad, &sent[i]);
	return failed ? 111 : 0;
}

int cmd_alerts(int argc, char **argv)
{
	static struct alert cur[ALERT_MAX];
	struct alerts_opts o;
	int n;

	if (argc < 2 || (strcmp(argv[1], "show") && strcmp(argv[1], "check")) ||
	    parse_opts(argc, argv, &o) < 0) {
		fputs(alerts_usage, stderr);
		return 1;
	}
	umask(007);   /* mail files stay the group mail's (fsutil.h FS_MAIL_*) */
	n = current(&o, cur);
	for (int i = 0; i < n; i++)
		printf("%s\t%s\n", cur[i].key, cur[i].text);
	return strcmp(argv[1], "check") == 0 ? check(&o, cur, n) : 0;
}
