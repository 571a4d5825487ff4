/*
 * ops.c - admind's operations: one table entry per request type. Every
 * change is validated by the core library (the same calls as the `postern`
 * command line), saved atomically under the file's lock, then applied.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "admind.h"
#include "config.h"
#include "fsutil.h"
#include "queue.h"
#include "secret.h"
#include "settings.h"
#include "status.h"
#include "users.h"

#define ADM_LOG_LINES_MAX 500     /* lines a log request may ask for */
#define ADM_CA_MAX (64 * 1024)    /* bytes of ca.pem */
#define ADM_MAIL_DAYS_MAX 60      /* days a mail-days request may ask for */
#define ADM_MAIL_SCAN_MAX 200000  /* message files looked at for mail-days */
#define ADM_STAT_MAX 31           /* bytes of a runit supervise/stat read */
/* Daemons told to re-read their configuration after a change. */
static const char *const apply_services[] = {
	"smtpd", "imapd", "fetchd", "dnsd", "relayd", "firewall",
};

/* ---- answers ---- */

/* Writes s with tabs and line breaks made blanks (one message per line). */
static void put_clean(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc(*s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s, f);
}

void adm_error(struct adm_req *r, const char *field, const char *msg)
{
	if (!r->failed) {
		fseek(r->out, 0, SEEK_SET);   /* drop any partial data */
		fputs("error\n", r->out);
		r->failed = 1;
	}
	put_clean(r->out, field);
	fputc('\t', r->out);
	put_clean(r->out, msg);
	fputc('\n', r->out);
}

static void ok(struct adm_req *r)
{
	if (!r->failed && ftell(r->out) == 0)
		fputs("ok\n", r->out);
}

/* ---- applying: sv hup for every enabled daemon ---- */

/* `sv hup DIR/NAME`: a full path, so sv needs no SVDIR. */
static void run_sv(const struct adm_opts *o, const char *dir)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0), dup2(null, 1), dup2(null, 2);
		}
		execlp(o->sv, o->sv, "hup", dir, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

void adm_apply(const struct adm_opts *o)
{
	char p[ADM_PATH_MAX];

	for (size_t i = 0; i < sizeof apply_services / sizeof apply_services[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", o->service_dir, apply_services[i]);
		if (access(p, F_OK) == 0)
			run_sv(o, p);
	}
}

/* ---- configuration (the transaction is settings.h's, as `postern config`) ---- */

/* The field a validation message is about: the submitted key whose last
 * part the message names ("...: port: 70000 is not..."), else "-". */
static const char *field_of(const char *msg, char **kv, int n)
{
	for (int i = 0; i < n; i += 2) {
		const char *dot = strrchr(kv[i], '.');
		char pat[CONFIG_NAME_MAX + 8];

		snprintf(pat, sizeof pat, ": %s:", dot ? dot + 1 : kv[i]);
		if (strstr(msg, pat))
			return kv[i];
	}
	return "-";
}

static void config_errors_out(struct adm_req *r, const struct config_errors *e,
			      char **kv, int n)
{
	for (int i = 0; i < e->count; i++)
		adm_error(r, field_of(e->e[i].text, kv, n), e->e[i].text);
}

/* One configuration change: KEY VALUE pairs (unset: KEYs), an optional
 * extra step on the validated model, the network applied when touched. */
struct cfg_txn {
	struct adm_req *r;
	char **kv;
	int n, unset;
	int (*extra)(struct adm_req *, struct config *);
	int network;                         /* run the network script */
	char old_lan[CONFIG_NAME_MAX + 64];  /* lan.address before the change */
};

/* change: each pair through config_set/config_unset, errors by key. */
static int txn_change(struct config *cfg, void *arg, struct config_errors *unused)
{
	static struct config_errors errs;
	struct cfg_txn *t = arg;
	int bad = 0;

	(void)unused;
	if (config_get(cfg, "lan.address", t->old_lan, sizeof t->old_lan) < 0)
		t->old_lan[0] = '\0';
	for (int i = 0; i < t->n; i += t->unset ? 1 : 2) {
		memset(&errs, 0, sizeof errs);
		int rc = t->unset ? config_unset(cfg, t->kv[i], &errs)
				  : config_set(cfg, t->kv[i], t->kv[i + 1], &errs);
		for (int k = 0; rc != 0 && k < errs.count; k++)
			adm_error(t->r, t->kv[i], errs.e[k].text);
		bad |= rc != 0;
	}
	return bad ? -1 : 0;
}

/* check: the caller's extra step, then the rule set the network needs. */
static int txn_check(struct config *cfg, void *arg, struct config_errors *errs)
{
	struct cfg_txn *t = arg;

	(void)errs;
	if (t->extra && t->extra(t->r, cfg) != 0)
		return -1;
	return t->network ? adm_network_check(t->r, cfg) : 0;
}

/* after: the saved change reaches the interfaces; the page is told the new
 * LAN address when it moved ("lan-address ADDR"). */
static int txn_after(struct config *cfg, void *arg, struct config_errors *errs)
{
	struct cfg_txn *t = arg;
	char lan[sizeof t->old_lan];

	(void)errs;
	if (!t->network)
		return 0;
	if (adm_network_apply(t->r) != 0)
		return -1;
	if (config_get(cfg, "lan.address", lan, sizeof lan) >= 0 && strcmp(lan, t->old_lan) != 0)
		fprintf(t->r->out, "ok\nlan-address %.*s\n", (int)strcspn(lan, "/"), lan);
	return 0;
}

/* The transaction: lock, load, change, validate, extra, save, apply the
 * network (settings_config_edit). Returns 0, or -1 with errors reported. */
static int config_txn(struct adm_req *r, char **kv, int n, int unset,
		      int (*extra)(struct adm_req *, struct config *))
{
	static const struct settings_config_ops ops = { txn_change, txn_check, txn_after };
	static struct config_errors errs;
	struct cfg_txn t = { .r = r, .kv = kv, .n = n, .unset = unset, .extra = extra };
	int rc;

	t.network = adm_network_keys(kv, n, unset ? 1 : 2) && adm_network_present(r->o);
	rc = settings_config_edit(r->o->conf, &ops, &t, &errs);
	if (rc == SETTINGS_OK)
		return 0;
	config_errors_out(r, &errs, kv, unset ? 0 : n);
	if (!r->failed || rc == SETTINGS_EAFTER)
		adm_error(r, "-", rc == SETTINGS_ELOCK ? "the configuration cannot be locked"
			  : settings_strerror(rc));
	return -1;
}

static void op_config(struct adm_req *r)
{
	if ((r->argc - 1) % 2 != 0) {
		adm_error(r, "-", "config needs KEY VALUE pairs");
		return;
	}
	if (config_txn(r, r->argv + 1, r->argc - 1, 0, NULL) == 0) {
		syslog(LOG_NOTICE, "configuration changed from the web page");
		adm_apply(r->o);
		ok(r);
	}
}

static void op_config_unset(struct adm_req *r)
{
	if (config_txn(r, r->argv + 1, r->argc - 1, 1, NULL) == 0) {
		adm_apply(r->o);
		ok(r);
	}
}

/* ---- secrets ---- */

static int store_secret(struct adm_req *r, const struct config *cfg, const char *name,
			const char *value, const char *field)
{
	char err[ADM_ERR_MAX];
	const char *owner = secret_owner(cfg, name, err, sizeof err);

	if (!owner) {
		adm_error(r, field, err);
		return -1;
	}
	if (value[0] == '\0') {
		adm_error(r, field, "the password must not be empty");
		return -1;
	}
	if (secret_write(r->o->secrets, name, value, strlen(value), owner, err, sizeof err) < 0) {
		adm_error(r, field, err);
		return -1;
	}
	return 0;
}

/* secret NAME VALUE: owner from the configuration as `postern secret set`. */
static void op_secret(struct adm_req *r)
{
	static struct config_errors errs;
	struct config *cfg;

	if (r->argc != 3) {
		adm_error(r, "-", "secret needs NAME VALUE");
		return;
	}
	cfg = config_load(r->o->conf, &errs);
	if (!cfg) {
		adm_error(r, "-", "the configuration is invalid");
		return;
	}
	if (store_secret(r, cfg, r->argv[1], r->argv[2], r->argv[1]) == 0) {
		adm_apply(r->o);
		ok(r);
	}
	config_free(cfg);
}

/* ---- users (the transaction is settings.h's, as `postern user`) ---- */

typedef int (*users_change_fn)(struct adm_req *r, struct users_db *db, char *err, size_t n);

struct users_txn {
	struct adm_req *r;
	users_change_fn change;
};

static int users_trampoline(struct users_db *db, void *arg, char *err, size_t n)
{
	struct users_txn *t = arg;

	return t->change(t->r, db, err, n);
}

/* The group that reads the users file (auth), when admind can give it. */
static long users_gid(const struct adm_opts *o)
{
	struct group *g = getuid() == 0 ? getgrnam(o->users_group) : NULL;

	return g ? (long)g->gr_gid : -1;
}

/* Lock, load, change, save (settings_users_edit), then apply. */
static int users_txn(struct adm_req *r, users_change_fn change, const char *field)
{
	struct users_txn t = { r, change };
	char err[ADM_ERR_MAX];
	int rc = settings_users_edit(r->o->users, users_trampoline, &t, users_gid(r->o),
				     err, sizeof err);

	if (rc != SETTINGS_OK) {
		adm_error(r, rc == SETTINGS_ECHANGE ? field : "-", err[0] ? err : "refused");
		return -1;
	}
	syslog(LOG_NOTICE, "users changed from the web page (%s)", r->argv[0]);
	adm_apply(r->o);
	ok(r);
	return 0;
}

static int parse_role(const char *s, enum users_role *role)
{
	if (strcmp(s, "admin") == 0)
		*role = USERS_ROLE_ADMIN;
	else if (strcmp(s, "user") == 0)
		*role = USERS_ROLE_USER;
	else
		return -1;
	return 0;
}

static int hash_of(const char *pw, char *hash, char *err, size_t n)
{
	if (pw[0] == '\0') {
		snprintf(err, n, "the password must not be empty");
		return -1;
	}
	if (strlen(pw) > USERS_PASSWORD_MAX) {
		snprintf(err, n, "the password is longer than %d bytes", USERS_PASSWORD_MAX);
		return -1;
	}
	if (users_hash_password(pw, hash, USERS_HASH_MAX + 1) < 0) {
		snprintf(err, n, "cannot hash the password");
		return -1;
	}
	return 0;
}

static int ch_user_add(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	char hash[USERS_HASH_MAX + 1];
	enum users_role role;

	if (!users_name_valid(r->argv[1])) {
		snprintf(err, n, "a name is lower-case letters, digits, '.', '-', '_'");
		return -1;
	}
	if (parse_role(r->argv[2], &role) < 0) {
		snprintf(err, n, "the role is user or admin");
		return -1;
	}
	if (hash_of(r->argv[3], hash, err, n) < 0)
		return -1;
	return users_add(db, r->argv[1], role, hash, err, n);
}

static int ch_user_passwd(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	char hash[USERS_HASH_MAX + 1];

	if (hash_of(r->argv[2], hash, err, n) < 0)
		return -1;
	return users_set_hash(db, r->argv[1], hash, err, n);
}

static int ch_user_del(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	return users_del(db, r->argv[1], err, n);
}

static int ch_user_role(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	enum users_role role;

	if (parse_role(r->argv[2], &role) < 0) {
		snprintf(err, n, "the role is user or admin");
		return -1;
	}
	return users_set_role(db, r->argv[1], role, err, n);
}

static int ch_alias_add(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	return users_alias_add(db, r->argv[1], r->argv[2], err, n);
}

static int ch_remove(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	return users_remove(db, r->argv[1], err, n);
}

static int ch_list_set(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	return users_list_set(db, r->argv[1], r->argv[2], err, n);
}

/* ---- the setup wizard: code, admin, settings, secrets in one go ---- */

/* After the configuration validated, before it is saved: the secrets
 * ("secret:NAME" VALUE pairs among the settings). */
static int setup_secrets(struct adm_req *r, struct config *cfg)
{
	int bad = 0;

	for (int i = 4; i + 1 < r->argc; i += 2)
		if (strncmp(r->argv[i], "secret:", 7) == 0 &&
		    store_secret(r, cfg, r->argv[i] + 7, r->argv[i + 1], r->argv[i]) < 0)
			bad = 1;
	return bad ? -1 : 0;
}

/* Inside the users transaction: the admin (in memory), then the whole
 * configuration change; the users file is saved only when that succeeded,
 * so until then the wizard stays open and a failed attempt can simply be
 * repeated. */
static int ch_setup(struct adm_req *r, struct users_db *db, char *err, size_t n)
{
	char *kv[ADM_ARGS_MAX], hash[USERS_HASH_MAX + 1];
	int nkv = 0;

	if (hash_of(r->argv[3], hash, err, n) < 0 ||
	    users_add(db, r->argv[2], USERS_ROLE_ADMIN, hash, err, n) < 0) {
		adm_error(r, "admin", err);
		return -1;
	}
	for (int i = 4; i + 1 < r->argc; i += 2)
		if (strncmp(r->argv[i], "secret:", 7) != 0) {
			kv[nkv++] = r->argv[i];
			kv[nkv++] = r->argv[i + 1];
		}
	return config_txn(r, kv, nkv, 0, setup_secrets);
}

/* setup CODE ADMIN PASSWORD [KEY VALUE | secret:NAME VALUE]... */
static void op_setup(struct adm_req *r)
{
	struct users_txn t = { r, ch_setup };
	char err[ADM_ERR_MAX];
	int rc;

	if (r->argc < 4 || (r->argc - 4) % 2 != 0) {
		adm_error(r, "-", "setup needs CODE ADMIN PASSWORD [KEY VALUE]...");
		return;
	}
	if (!adm_setup_needed(r->o)) {
		adm_error(r, "-", "this box is already set up: sign in as an administrator");
		return;
	}
	if (!adm_setup_code_ok(r->o, r->argv[1])) {
		adm_error(r, "code", "wrong setup code (it is shown on the box's console)");
		return;
	}
	if (!users_name_valid(r->argv[2])) {
		adm_error(r, "admin", "a name is lower-case letters, digits, '.', '-', '_'");
		return;
	}
	rc = settings_users_edit(r->o->users, users_trampoline, &t, users_gid(r->o), err,
				 sizeof err);
	if (rc != SETTINGS_OK) {
		if (!r->failed)
			adm_error(r, "-", err[0] ? err : settings_strerror(rc));
		return;
	}
	unlink(r->o->setup_code);
	syslog(LOG_NOTICE, "setup wizard completed; administrator %s", r->argv[2]);
	adm_apply(r->o);
	ok(r);
}

/* ---- read-only views the web user cannot read itself ---- */

static void op_setup_needed(struct adm_req *r)
{
	fprintf(r->out, "ok\n%s\n", adm_setup_needed(r->o) ? "yes" : "no");
}

static void op_ca(struct adm_req *r)
{
	static char pem[ADM_CA_MAX + 1];
	char p[ADM_PATH_MAX];
	ssize_t n;

	snprintf(p, sizeof p, "%s/ca.pem", r->o->tls_dir);
	n = fs_read_file(p, pem, ADM_CA_MAX);
	if (n <= 0) {
		adm_error(r, "-", "the box has no CA certificate yet");
		return;
	}
	fputs("ok\n", r->out);
	fwrite(pem, 1, (size_t)n, r->out);
}

/* A service runsv keeps starting again (status.h: more than
 * STATUS_SVC_RESTARTS exits in STATUS_SVC_WINDOW_S) shows as "restarting
 * (...)" instead of its stat, which says "run" between two crashes. */
static void service_state(const char *name, char *st, size_t cap)
{
	struct status_svc x;
	char last[64];

	if (strncmp(st, "down", 4) == 0 || strcmp(st, "unknown") == 0 ||
	    status_svc_read(status_svc_dir(), name, (int64_t)time(NULL), &x) < 0 ||
	    !status_svc_restarting(&x))
		return;
	status_svc_exit_text(&x, last, sizeof last);
	snprintf(st, cap, "restarting (%d times in %d minutes, last: %s)", x.exits,
		 STATUS_SVC_WINDOW_S / 60, last);
}

/* status: one line per enabled service, "NAME STATE": runit's stat ("run",
 * "down", "finish", ...), or "restarting (...)" (service_state). */
static void op_status(struct adm_req *r)
{
	DIR *d = opendir(r->o->service_dir);
	struct dirent *e;

	fputs("ok\n", r->out);
	while (d && (e = readdir(d))) {
		char p[ADM_PATH_MAX], st[128] = "unknown";
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s/supervise/stat", r->o->service_dir, e->d_name);
		if (fs_read_file(p, st, ADM_STAT_MAX) > 0)
			st[strcspn(st, "\n")] = '\0';
		service_state(e->d_name, st, sizeof st);
		fprintf(r->out, "%s %s\n", e->d_name, st);
	}
	if (d)
		closedir(d);
}

/* queue: one line per queued message, "ID CREATED SIZE FROM PENDING
 * ATTEMPTS NEXT REPLY" (FROM "-" for the null sender; REPLY may hold
 * blanks: it is last). */
static int queue_line(const char *id, void *arg)
{
	struct adm_req *r = arg;
	static struct queue_env env;
	int pending = 0;
	unsigned attempts = 0;
	int64_t next = 0;
	const char *reply = "";

	if (queue_env_load(r->q, id, &env) < 0)
		return 0;
	for (int i = 0; i < env.nrcpt; i++) {
		const struct queue_rcpt *rc = &env.rcpt[i];
		if (rc->state != QUEUE_PENDING)
			continue;
		pending++;
		if (rc->attempts > attempts)
			attempts = rc->attempts;
		if (!next || rc->next_attempt < next)
			next = rc->next_attempt;
		if (rc->reply[0])
			reply = rc->reply;
	}
	fprintf(r->out, "%s %lld %llu %s %d %u %lld ", id, (long long)env.created,
		(unsigned long long)env.size, env.from[0] ? env.from : "-", pending, attempts,
		(long long)next);
	put_clean(r->out, reply);
	fputc('\n', r->out);
	return 0;
}

static int open_queue(struct adm_req *r, struct queue *q)
{
	if (queue_open(q, r->o->queue) < 0) {
		adm_error(r, "-", "the queue cannot be opened");
		return -1;
	}
	r->q = q;
	return 0;
}

static void op_queue(struct adm_req *r)
{
	static struct queue q;

	if (open_queue(r, &q) < 0)
		return;
	fputs("ok\n", r->out);
	queue_list(&q, queue_line, r);
	queue_close(&q);
}

/* queue-del ID / queue-retry ID: under the relay's lock on the message. */
static void op_queue_change(struct adm_req *r)
{
	static struct queue q;
	static struct queue_env env;
	const char *id = r->argv[1];
	int lfd;

	if (!queue_id_valid(id)) {
		adm_error(r, "id", "not a queue ID");
		return;
	}
	if (open_queue(r, &q) < 0)
		return;
	lfd = queue_lock(&q, id);
	if (lfd < 0) {
		adm_error(r, "id", errno == EWOULDBLOCK ? "the relay is sending this message "
			  "right now; try again in a moment" : "no such message in the queue");
	} else if (strcmp(r->argv[0], "queue-del") == 0) {
		if (queue_remove(&q, id) < 0)
			adm_error(r, "id", strerror(errno));
	} else if (queue_env_load(&q, id, &env) == 0) {
		for (int i = 0; i < env.nrcpt; i++)
			if (env.rcpt[i].state == QUEUE_PENDING)
				env.rcpt[i].next_attempt = 0;   /* due now */
		if (queue_env_save(&q, &env) < 0)
			adm_error(r, "id", strerror(errno));
	}
	if (lfd >= 0)
		close(lfd);
	queue_close(&q);
	if (!r->failed) {
		syslog(LOG_NOTICE, "queue %s: %s from the web page", id, r->argv[0]);
		adm_apply(r->o);
		ok(r);
	}
}

size_t adm_read_log_tail(const char *path, char *text)
{
	int fd = fs_open_nofollow(path, O_RDONLY, 0);
	ssize_t n = 0;
	off_t size;

	if (fd >= 0) {
		size = lseek(fd, 0, SEEK_END);
		lseek(fd, size > ADM_LOG_READ_MAX ? size - ADM_LOG_READ_MAX : 0, SEEK_SET);
		n = read(fd, text, ADM_LOG_READ_MAX);
		close(fd);
	}
	text[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

/* log N [FILTER]: the last N lines of the log holding FILTER, oldest first. */
static void op_log(struct adm_req *r)
{
	static char text[ADM_LOG_READ_MAX + 1];
	static char *ring[ADM_LOG_LINES_MAX];
	int want = r->argc > 1 ? atoi(r->argv[1]) : 100;
	const char *filter = r->argc > 2 ? r->argv[2] : "";
	size_t len, kept = 0;

	if (want < 1 || want > ADM_LOG_LINES_MAX)
		want = 100;
	len = adm_read_log_tail(r->o->log, text);
	for (char *p = text; p < text + len; ) {
		char *nl = memchr(p, '\n', (size_t)(text + len - p));
		if (nl)
			*nl = '\0';
		if (*p && strstr(p, filter))
			ring[kept++ % (size_t)want] = p;
		p = nl ? nl + 1 : text + len;
	}
	fputs("ok\n", r->out);
	for (size_t i = kept > (size_t)want ? kept - (size_t)want : 0; i < kept; i++)
		fprintf(r->out, "%s\n", ring[i % (size_t)want]);
}

/* mail-days N: messages that arrived in each of the last N days (local
 * time), from the mtimes in every INBOX (new/ and cur/), oldest first:
 * "YYYY-MM-DD COUNT" lines. At most ADM_MAIL_SCAN_MAX files are looked at. */
static void count_dir(int dfd, const char *sub, time_t since, int days, long *count,
		      long *scanned)
{
	int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	struct stat st;

	while (d && (e = readdir(d)) && *scanned < ADM_MAIL_SCAN_MAX) {
		if (e->d_name[0] == '.' || fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		(*scanned)++;
		if (st.st_mtime >= since) {
			long day = (long)((st.st_mtime - since) / 86400);
			if (day < days)
				count[day]++;
		}
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
}

static void op_mail_days(struct adm_req *r)
{
	long count[ADM_MAIL_DAYS_MAX] = { 0 }, scanned = 0;
	int days = r->argc > 1 ? atoi(r->argv[1]) : 14;
	DIR *d = opendir(r->o->mail);
	struct dirent *e;
	struct tm tm;
	time_t now = time(NULL), since;
	char day[16];

	if (days < 1 || days > ADM_MAIL_DAYS_MAX)
		days = 14;
	localtime_r(&now, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_mday -= days - 1;
	tm.tm_isdst = -1;
	since = mktime(&tm);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int ufd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (ufd < 0)
			continue;
		count_dir(ufd, "new", since, days, count, &scanned);
		count_dir(ufd, "cur", since, days, count, &scanned);
		close(ufd);
	}
	if (d)
		closedir(d);
	fputs("ok\n", r->out);
	for (int i = 0; i < days; i++) {
		time_t t = since + (time_t)i * 86400 + 43200;   /* noon: safe across DST */
		localtime_r(&t, &tm);
		strftime(day, sizeof day, "%Y-%m-%d", &tm);
		fprintf(r->out, "%s %ld\n", day, count[i]);
	}
}

/* ---- the table ---- */

struct adm_op {
	const char *name;
	int argc_min, argc_max;              /* including the operation */
	void (*run)(struct adm_req *r);
	users_change_fn change;              /* users operations */
	const char *field;                   /* the field their error is about */
};

static void op_users(struct adm_req *r);

static const struct adm_op ops[] = {
	{ "ping", 1, 1, ok, NULL, NULL },
	{ "setup-needed", 1, 1, op_setup_needed, NULL, NULL },
	{ "setup", 4, ADM_ARGS_MAX, op_setup, NULL, NULL },
	{ "config", 1, ADM_ARGS_MAX, op_config, NULL, NULL },
	{ "config-unset", 2, ADM_ARGS_MAX, op_config_unset, NULL, NULL },
	{ "secret", 3, 3, op_secret, NULL, NULL },
	{ "user-add", 4, 4, op_users, ch_user_add, "name" },
	{ "user-passwd", 3, 3, op_users, ch_user_passwd, "password" },
	{ "user-del", 2, 2, op_users, ch_user_del, "name" },
	{ "user-role", 3, 3, op_users, ch_user_role, "role" },
	{ "alias-add", 3, 3, op_users, ch_alias_add, "alias" },
	{ "alias-del", 2, 2, op_users, ch_remove, "alias" },
	{ "list-set", 3, 3, op_users, ch_list_set, "list" },
	{ "list-del", 2, 2, op_users, ch_remove, "list" },
	{ "ca", 1, 1, op_ca, NULL, NULL },
	{ "status", 1, 1, op_status, NULL, NULL },
	{ "queue", 1, 1, op_queue, NULL, NULL },
	{ "queue-del", 2, 2, op_queue_change, NULL, NULL },
	{ "queue-retry", 2, 2, op_queue_change, NULL, NULL },
	{ "log", 1, 3, op_log, NULL, NULL },
	{ "mail-days", 1, 2, op_mail_days, NULL, NULL },
	{ "cert-install", 3, 3, adm_op_cert_install, NULL, NULL },
	{ "cert-revert", 1, 1, adm_op_cert_revert, NULL, NULL },
	{ "cert-info", 1, 1, adm_op_cert_info, NULL, NULL },
	{ "blocked", 1, 1, adm_op_blocked, NULL, NULL },      /* ops-status.c */
	{ "alerts", 1, 1, adm_op_alerts, NULL, NULL },        /* ops-status.c */
};

static const struct adm_op *find_op(const char *name)
{
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

static void op_users(struct adm_req *r)
{
	const struct adm_op *op = find_op(r->argv[0]);

	users_txn(r, op->change, op->field);
}

void adm_dispatch(struct adm_req *r)
{
	const struct adm_op *op = find_op(r->argv[0]);

	if (!op)
		adm_error(r, "-", "unknown operation");
	else if (r->argc < op->argc_min || r->argc > op->argc_max)
		adm_error(r, "-", "wrong number of arguments");
	else
		op->run(r);
}
