/*
 * alerts.c - the alert rules, the measurements they use, and the
 * de-duplication state of the alert mails (alerts.h).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "alerts.h"
#include "config.h"
#include "firewall.h"
#include "fsutil.h"
#include "localca.h"
#include "queue.h"

#define ALERT_STAT_MAX 64                /* bytes of a runit supervise/stat */
#define ALERT_PATH_MAX 1024
#define ALERT_DAY 86400

/* ---- measuring ---- */

static void gather_disk(const char *data, struct alert_facts *f)
{
	struct statvfs v;

	if (data && statvfs(data, &v) == 0 && v.f_blocks)
		f->disk_pct = (int)(100 - (100 * (unsigned long long)v.f_bavail) / v.f_blocks);
}

struct queue_scan {
	struct queue *q;
	struct alert_facts *f;
};

static int queue_one(const char *id, void *arg)
{
	static struct queue_env env;
	struct queue_scan *s = arg;

	s->f->queued++;
	if (queue_env_load(s->q, id, &env) == 0 && env.created > 0 &&
	    (!s->f->oldest_queued || env.created < s->f->oldest_queued))
		s->f->oldest_queued = env.created;
	return 0;
}

static void gather_queue(const char *dir, struct alert_facts *f)
{
	static struct queue q;
	struct queue_scan s = { &q, f };
	struct stat st;

	if (!dir || stat(dir, &st) < 0 || queue_open(&q, dir) < 0)
		return;   /* never create the queue from here */
	f->queued = 0;
	if (queue_list(&q, queue_one, &s) < 0)
		f->queued = -1;
	queue_close(&q);
}

static void read_record(const char *dir, const char *kind, const char *name,
			struct alert_fetch *x)
{
	struct status_rec r;

	memset(x, 0, sizeof *x);
	if (status_read(dir, kind, name, &r) == 0) {
		x->have = 1;
		x->result = r.result;
		x->failures = r.failures;
		x->last_ok = r.last_ok;
	}
}

static void gather_fetch(const struct alert_paths *p, struct alert_facts *f)
{
	static struct config_errors errs;
	struct config *cfg = p->conf ? config_load(p->conf, &errs) : NULL;

	if (cfg && cfg->smarthost.host[0] && p->status)
		read_record(p->status, "relay", "smarthost", &f->relay);
	for (int i = 0; cfg && i < cfg->naccounts && f->nfetch < ALERT_FETCH_MAX; i++) {
		const struct config_account *a = &cfg->account[i];
		if (!a->enabled)
			continue;
		if (p->status)
			read_record(p->status, "fetch", a->h.name, &f->fetch[f->nfetch]);
		snprintf(f->fetch[f->nfetch].name, sizeof f->fetch[0].name, "%s", a->h.name);
		f->nfetch++;
	}
	config_free(cfg);
}

/* One enabled service: runit's stat ("run", "down", "finish", maybe with
 * ", want down" and the like) and its recent exits (status_svc_dir()). */
static void gather_service(const char *dir, const char *name, int64_t now,
			   struct alert_service *s)
{
	char path[ALERT_PATH_MAX], st[ALERT_STAT_MAX + 1] = "";

	snprintf(path, sizeof path, "%s/%s/supervise/stat", dir, name);
	if (fs_read_file(path, st, ALERT_STAT_MAX) < 0)
		st[0] = '\0';
	memcpy(s->name, name, strlen(name) + 1);   /* length checked by the caller */
	s->up = strncmp(st, "run", 3) == 0;
	if (status_svc_read(status_svc_dir(), name, now, &s->exits) < 0)
		memset(&s->exits, 0, sizeof s->exits);
	/* stopped on purpose ("down") or never started: not a restart loop */
	s->restarting = st[0] && strncmp(st, "down", 4) != 0 && status_svc_restarting(&s->exits);
}

static void gather_services(const struct alert_paths *p, struct alert_facts *f)
{
	DIR *d = p->service_dir ? opendir(p->service_dir) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d)) && f->nsvc < ALERT_SVC_MAX) {
		if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof f->svc[0].name)
			continue;
		gather_service(p->service_dir, e->d_name, f->now, &f->svc[f->nsvc++]);
	}
	if (d)
		closedir(d);
}

/* `postern firewall apply` records whether the fallback is in force. */
static void gather_firewall(const char *dir, struct alert_facts *f)
{
	struct status_rec r;

	if (dir && status_read(dir, FW_STATUS_KIND, FW_STATUS_NAME, &r) == 0 &&
	    r.result != STATUS_OK)
		snprintf(f->firewall, sizeof f->firewall, "%s", r.detail[0] ? r.detail : "fallback");
}

void alerts_gather(const struct alert_paths *p, int64_t now, struct alert_facts *f)
{
	char err[256];

	memset(f, 0, sizeof *f);
	f->now = now;
	f->disk_pct = f->queued = -1;
	gather_disk(p->data, f);
	gather_queue(p->queue, f);
	gather_fetch(p, f);
	if (p->cert && localca_expires_within(p->cert, now, 0, &f->cert_not_after, err,
					      sizeof err) < 0)
		f->cert_not_after = 0;
	gather_services(p, f);
	gather_firewall(p->status, f);
}

/* ---- the rules ---- */

struct out {
	struct alert *a;
	int n, max;
};

static void add(struct out *o, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add(struct out *o, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (o->n >= o->max)
		return;
	snprintf(o->a[o->n].key, sizeof o->a[o->n].key, "%s", key);
	va_start(ap, fmt);
	vsnprintf(o->a[o->n].text, sizeof o->a[o->n].text, fmt, ap);
	va_end(ap);
	o->n++;
}

static void rule_queue(const struct alert_facts *f, struct out *o)
{
	int64_t age = f->oldest_queued ? f->now - f->oldest_queued : 0;

	if (f->queued >= ALERT_QUEUE_MAX)
		add(o, "queue-growing", "%d messages wait in the outbound queue (alert at %d).",
		    f->queued, ALERT_QUEUE_MAX);
	if (f->queued > 0 && age >= ALERT_QUEUE_STUCK_S)
		add(o, "queue-stuck", "The outbound queue is stuck: a message has waited %" PRId64
		    " hours to go out. See the Queue page for the provider's last answer.",
		    age / 3600);
}

static void rule_fetch(const struct alert_facts *f, struct out *o)
{
	for (int i = 0; i < f->nfetch; i++) {
		const struct alert_fetch *x = &f->fetch[i];
		char key[ALERT_KEY_MAX + 1];
		if (!x->have || x->result == STATUS_OK || x->failures < ALERT_FETCH_FAILURES)
			continue;
		snprintf(key, sizeof key, "fetch:%s", x->name);
		add(o, key, "Fetching mail for the provider account %s failed %u times in a row: %s.",
		    x->name, x->failures, status_result_text(x->result));
	}
}

static void rule_relay(const struct alert_facts *f, struct out *o)
{
	const struct alert_fetch *x = &f->relay;

	if (x->have && x->result != STATUS_OK && x->failures >= ALERT_RELAY_FAILURES)
		add(o, "relay", "Sending mail through the provider's smart host failed %u times in a "
		    "row: %s. Outgoing mail waits in the queue.", x->failures,
		    status_result_text(x->result));
}

static void rule_cert(const struct alert_facts *f, struct out *o)
{
	int64_t left = f->cert_not_after - f->now;

	if (!f->cert_not_after || left >= (int64_t)ALERT_CERT_DAYS * ALERT_DAY)
		return;
	if (left < 0)
		add(o, "cert", "The box's TLS certificate has expired: mail programs will refuse "
		    "to connect.");
	else
		add(o, "cert", "The box's TLS certificate expires in %" PRId64 " days.",
		    left / ALERT_DAY);
}

/* A service down, or one runsv keeps starting again (its stat says "run"
 * most of the time): one key for both, so a crash loop that is caught
 * between two starts does not mail twice. */
static void rule_service(const struct alert_service *s, struct out *o)
{
	char key[ALERT_KEY_MAX + 1], last[64];

	snprintf(key, sizeof key, "service:%s", s->name);
	if (s->restarting) {
		status_svc_exit_text(&s->exits, last, sizeof last);
		add(o, key, "The service %s keeps restarting: it stopped %d times in %d minutes "
		    "(last: %s).", s->name, s->exits.exits, STATUS_SVC_WINDOW_S / 60, last);
	} else if (!s->up) {
		add(o, key, "The service %s is not running.", s->name);
	}
}

int alerts_eval(const struct alert_facts *f, struct alert *out, int max)
{
	struct out o = { out, 0, max };

	if (f->disk_pct >= ALERT_DISK_PCT)
		add(&o, "disk", "The data disk is %d%% full.", f->disk_pct);
	rule_queue(f, &o);
	rule_fetch(f, &o);
	rule_relay(f, &o);
	rule_cert(f, &o);
	if (f->firewall[0])
		add(&o, "firewall", "The firewall could not load its rules and is in fallback: %s. "
		    "Repair the network or firewall settings and apply them again.", f->firewall);
	for (int i = 0; i < f->nsvc; i++)
		rule_service(&f->svc[i], &o);
	return o.n;
}

/* ---- the state file ---- */

static int clean_field(const char *s, size_t n, char *out, size_t cap)
{
	if (n == 0 || n >= cap)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* "FLAG\tSINCE\tKEY\tTEXT" */
static int state_line(const char *p, size_t n, struct alert_entry *e)
{
	const char *t1 = memchr(p, '\t', n), *t2, *t3;
	char num[24];
	char *end;

	if (n < 2 || !t1 || t1 != p + 1 || (p[0] != 'S' && p[0] != 'A' && p[0] != 'C'))
		return -1;
	t2 = memchr(t1 + 1, '\t', (size_t)(p + n - t1 - 1));
	t3 = t2 ? memchr(t2 + 1, '\t', (size_t)(p + n - t2 - 1)) : NULL;
	if (!t3 || clean_field(t1 + 1, (size_t)(t2 - t1 - 1), num, sizeof num) < 0 ||
	    clean_field(t2 + 1, (size_t)(t3 - t2 - 1), e->a.key, sizeof e->a.key) < 0 ||
	    clean_field(t3 + 1, (size_t)(p + n - t3 - 1), e->a.text, sizeof e->a.text) < 0)
		return -1;
	errno = 0;
	e->since = strtoll(num, &end, 10);
	if (*end || errno || e->since < 0 || strchr(e->a.key, '\t'))
		return -1;
	e->flag = p[0];
	return 0;
}

int alert_state_parse(const char *text, size_t len, struct alert_state *st)
{
	memset(st, 0, sizeof *st);
	if (len > ALERT_STATE_MAX)
		return -1;
	for (size_t i = 0; i < len; ) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
		if (n && (st->n >= ALERT_MAX || state_line(text + i, n, &st->e[st->n++]) < 0))
			return -1;
		i += n + 1;
	}
	return 0;
}

int alert_state_format(const struct alert_state *st, char *buf, size_t cap)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < st->n; i++) {
		const struct alert_entry *e = &st->e[i];
		int n = snprintf(buf + off, cap - off, "%c\t%" PRId64 "\t%s\t%s\n", e->flag, e->since,
				 e->a.key, e->a.text);
		if (n < 0 || (size_t)n >= cap - off)
			return -1;
		off += (size_t)n;
	}
	return (int)off;
}

int alert_state_load(const char *path, struct alert_state *st)
{
	static char text[ALERT_STATE_MAX + 1];
	ssize_t n = fs_read_file(path, text, ALERT_STATE_MAX);

	if (n < 0 && errno == ENOENT) {
		memset(st, 0, sizeof *st);
		return 0;
	}
	if (n < 0 || alert_state_parse(text, (size_t)n, st) < 0)
		return -1;
	return 0;
}

int alert_state_save(const char *path, const struct alert_state *st)
{
	static char text[ALERT_STATE_MAX + 1];
	int n = alert_state_format(st, text, sizeof text);

	if (n < 0) {
		errno = EOVERFLOW;
		return -1;
	}
	return fs_write_atomic(path, text, (size_t)n, 0600);
}

static int find_key(const struct alert_state *st, const char *key)
{
	for (int i = 0; i < st->n; i++)
		if (strcmp(st->e[i].a.key, key) == 0)
			return i;
	return -1;
}

static int in_force(const struct alert *cur, int ncur, const char *key)
{
	for (int i = 0; i < ncur; i++)
		if (strcmp(cur[i].key, key) == 0)
			return 1;
	return 0;
}

void alerts_merge(struct alert_state *st, const struct alert *cur, int ncur, int64_t now)
{
	int k = 0;

	for (int i = 0; i < st->n; i++) {          /* what ended */
		struct alert_entry *e = &st->e[i];
		if (!in_force(cur, ncur, e->a.key)) {
			if (e->flag == ALERT_STARTED)
				continue;                  /* never mailed: forget it */
			e->flag = ALERT_CLEARED;
		}
		st->e[k++] = *e;
	}
	st->n = k;
	for (int i = 0; i < ncur; i++) {           /* what is on */
		int j = find_key(st, cur[i].key);
		if (j < 0 && st->n < ALERT_MAX) {
			j = st->n++;
			st->e[j].flag = ALERT_STARTED;
			st->e[j].since = now;
		} else if (j >= 0 && st->e[j].flag == ALERT_CLEARED) {
			st->e[j].flag = ALERT_ACTIVE;      /* back before its clear mail went */
		}
		if (j >= 0)
			st->e[j].a = cur[i];
	}
}

/* ---- the mails ---- */

void alert_mail_key(const struct alert_entry *e, char *out, size_t cap)
{
	snprintf(out, cap, "postern-alert\n%s\n%" PRId64 "\n%s", e->a.key, e->since,
		 e->flag == ALERT_CLEARED ? "cleared" : "started");
}

static void rfc5322_date(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, cap, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

int alert_mail_format(const struct alert_entry *e, const char *box, const char *to,
		      int64_t now, char *buf, size_t cap)
{
	char date[64], since[64];
	int cleared = e->flag == ALERT_CLEARED, n;

	rfc5322_date(now, date, sizeof date);
	rfc5322_date(e->since, since, sizeof since);
	n = snprintf(buf, cap, "From: Postern <postmaster@%s>\r\nTo: %s\r\nDate: %s\r\n"
		     "Subject: [Postern] %s: %s\r\nMessage-ID: <alert.%" PRId64 ".%" PRId64
		     ".%s@%s>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
		     "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n\r\n%s%s.\r\n\r\n"
		     "-- \r\nThe Postern box %s. You get one mail when an alert starts and one "
		     "when it ends; the dashboard shows the alerts in force.\r\n",
		     box, to, date, cleared ? "resolved" : "ALERT", e->a.text, e->since, now,
		     cleared ? "c" : "s", box, e->a.text,
		     cleared ? "This alert has ended. It began on " : "Since ", since, box);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}
