/*
 * test_alerts.c - the alert rules (alerts_eval), the de-duplication of the
 * alert mails (alerts_merge over a sequence of checks), the state file's
 * bounded parser and the mail text (src/lib/alerts.h); services that keep
 * restarting (the exit lines of status.h, gathered from a fake runit tree).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alerts.h"
#include "check.h"

#define NOW 1764393000LL
#define DAY 86400LL

static void quiet(struct alert_facts *f)
{
	memset(f, 0, sizeof *f);
	f->now = NOW;
	f->disk_pct = 40;
	f->queued = 0;
}

static int has(const struct alert *a, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(a[i].key, key) == 0)
			return 1;
	return 0;
}

static void t_rules(void)
{
	struct alert_facts f;
	struct alert a[ALERT_MAX];
	int n;

	quiet(&f);
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 0);
	f.disk_pct = ALERT_DISK_PCT - 1;
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 0);
	f.disk_pct = ALERT_DISK_PCT;
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK_EQ(n, 1);
	CHECK_STREQ(a[0].key, "disk");
	CHECK_STREQ(a[0].text, "The data disk is 90% full.");

	quiet(&f);
	f.queued = ALERT_QUEUE_MAX;
	f.oldest_queued = NOW - 60;
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK(has(a, n, "queue-growing") && !has(a, n, "queue-stuck"));
	f.queued = 1;
	f.oldest_queued = NOW - ALERT_QUEUE_STUCK_S;
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK(has(a, n, "queue-stuck") && !has(a, n, "queue-growing"));
	f.queued = 0;                               /* an empty queue is never stuck */
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 0);
	f.queued = -1;                              /* unknown: no alert */
	f.disk_pct = -1;
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 0);
}

static void t_rules_fetch_cert_services(void)
{
	struct alert_facts f;
	struct alert a[ALERT_MAX];
	int n;

	quiet(&f);
	f.nfetch = 3;
	strcpy(f.fetch[0].name, "acme");
	f.fetch[0] = (struct alert_fetch){ "acme", 1, STATUS_LOGIN, ALERT_FETCH_FAILURES, 0 };
	f.fetch[1] = (struct alert_fetch){ "beta", 1, STATUS_UNREACHABLE, ALERT_FETCH_FAILURES - 1, 0 };
	f.fetch[2] = (struct alert_fetch){ "gamma", 0, 0, 0, 0 };
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK_EQ(n, 1);
	CHECK_STREQ(a[0].key, "fetch:acme");
	CHECK(strstr(a[0].text, "wrong user name or password") != NULL);
	CHECK(strstr(a[0].text, "3 times") != NULL);

	quiet(&f);
	f.relay = (struct alert_fetch){ "smarthost", 1, STATUS_TLS_PIN, ALERT_RELAY_FAILURES - 1, 0 };
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 0);
	f.relay.failures = ALERT_RELAY_FAILURES;
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK(n == 1 && strcmp(a[0].key, "relay") == 0);
	CHECK(strstr(a[0].text, "certificate does not match the pin") != NULL);

	quiet(&f);
	f.cert_not_after = NOW + ALERT_CERT_DAYS * DAY;
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 0);
	f.cert_not_after = NOW + ALERT_CERT_DAYS * DAY - 1;
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK_EQ(n, 1);
	CHECK_STREQ(a[0].text, "The box's TLS certificate expires in 13 days.");
	f.cert_not_after = NOW - 1;
	CHECK(alerts_eval(&f, a, ALERT_MAX) == 1 && strstr(a[0].text, "expired"));

	quiet(&f);
	f.nsvc = 2;
	f.svc[0] = (struct alert_service){ .name = "smtpd", .up = 1 };
	f.svc[1] = (struct alert_service){ .name = "imapd", .up = 0 };
	n = alerts_eval(&f, a, ALERT_MAX);
	CHECK_EQ(n, 1);
	CHECK_STREQ(a[0].key, "service:imapd");
	f.disk_pct = 99;
	CHECK_EQ(alerts_eval(&f, a, 1), 1);         /* capped at max */
}

static int count_flag(const struct alert_state *st, int flag)
{
	int n = 0;

	for (int i = 0; i < st->n; i++)
		n += st->e[i].flag == flag;
	return n;
}

/* A check as `postern alerts check` makes it: merge, then "send" every
 * pending mail (S -> A, C -> gone); returns the mails sent. */
static int check_once(struct alert_state *st, const struct alert *cur, int n, int64_t now)
{
	int mails = 0, k = 0;

	alerts_merge(st, cur, n, now);
	for (int i = 0; i < st->n; i++) {
		if (st->e[i].flag == ALERT_STARTED || st->e[i].flag == ALERT_CLEARED)
			mails++;
		if (st->e[i].flag == ALERT_CLEARED)
			continue;
		st->e[i].flag = ALERT_ACTIVE;
		st->e[k++] = st->e[i];
	}
	st->n = k;
	return mails;
}

static void t_dedup(void)
{
	struct alert_state st = { 0 };
	struct alert disk = { "disk", "The data disk is 91% full." };
	struct alert two[2] = { { "disk", "The data disk is 95% full." }, { "cert", "soon" } };

	CHECK_EQ(check_once(&st, NULL, 0, NOW), 0);
	CHECK_EQ(check_once(&st, &disk, 1, NOW), 1);           /* starts: one mail */
	for (int i = 1; i <= 60; i++)                          /* an hour of checks */
		CHECK_EQ(check_once(&st, &disk, 1, NOW + 60 * i), 0);
	CHECK_EQ(check_once(&st, two, 2, NOW + 4000), 1);       /* only the new one */
	CHECK_STREQ(st.e[0].a.text, "The data disk is 95% full.");   /* text refreshed */
	CHECK_EQ(st.e[0].since, NOW);                          /* since kept */
	CHECK_EQ(check_once(&st, &two[1], 1, NOW + 5000), 1);   /* disk cleared */
	CHECK_EQ(check_once(&st, &two[1], 1, NOW + 5060), 0);
	CHECK_EQ(check_once(&st, NULL, 0, NOW + 6000), 1);      /* cert cleared */
	CHECK_EQ(st.n, 0);
	CHECK_EQ(check_once(&st, NULL, 0, NOW + 6060), 0);
}

static void t_merge_pending(void)
{
	struct alert_state st = { 0 };
	struct alert disk = { "disk", "full" };

	alerts_merge(&st, &disk, 1, NOW);                       /* start mail not sent yet */
	CHECK_EQ(count_flag(&st, ALERT_STARTED), 1);
	alerts_merge(&st, &disk, 1, NOW + 60);                  /* still pending, same since */
	CHECK_EQ(count_flag(&st, ALERT_STARTED), 1);
	CHECK_EQ(st.e[0].since, NOW);
	alerts_merge(&st, NULL, 0, NOW + 120);                  /* gone before any mail */
	CHECK_EQ(st.n, 0);
	st.n = 1;
	st.e[0] = (struct alert_entry){ ALERT_ACTIVE, NOW, disk };
	alerts_merge(&st, NULL, 0, NOW + 180);
	CHECK_EQ(count_flag(&st, ALERT_CLEARED), 1);
	alerts_merge(&st, NULL, 0, NOW + 240);                  /* clear mail still due */
	CHECK_EQ(count_flag(&st, ALERT_CLEARED), 1);
	alerts_merge(&st, &disk, 1, NOW + 300);                 /* back before it went */
	CHECK_EQ(count_flag(&st, ALERT_ACTIVE), 1);
	CHECK_EQ(st.n, 1);
}

static void t_state_file(void)
{
	struct alert_state st = { 0 }, back;
	char buf[ALERT_STATE_MAX + 1], path[64];
	int n;

	st.n = 2;
	st.e[0] = (struct alert_entry){ ALERT_ACTIVE, NOW, { "fetch:acme", "Fetching failed: x." } };
	st.e[1] = (struct alert_entry){ ALERT_CLEARED, NOW + 1, { "disk", "The disk is 90% full." } };
	n = alert_state_format(&st, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_EQ(alert_state_parse(buf, (size_t)n, &back), 0);
	CHECK_EQ(back.n, 2);
	CHECK_EQ(back.e[1].flag, ALERT_CLEARED);
	CHECK_EQ(back.e[1].since, NOW + 1);
	CHECK_STREQ(back.e[0].a.key, "fetch:acme");
	CHECK_STREQ(back.e[1].a.text, "The disk is 90% full.");
	CHECK_EQ(alert_state_format(&st, buf, 10), -1);

#define BAD(s) CHECK_EQ(alert_state_parse(s, strlen(s), &back), -1)
	BAD("X\t1\tk\tt\n");
	BAD("A\t1\tk\n");
	BAD("A\t-1\tk\tt\n");
	BAD("A\tx\tk\tt\n");
	BAD("A\t1\t\tt\n");
	BAD("A\t1\tk\t\n");
	BAD("A\t1\tk\tt\rt\n");
	BAD("AA\t1\tk\tt\n");
#undef BAD
	CHECK_EQ(alert_state_parse("\n\nA\t1\tk\tt", 9, &back), 0);
	CHECK_EQ(back.n, 1);
	{
		static char many[ALERT_STATE_MAX];
		size_t off = 0;
		for (int i = 0; i <= ALERT_MAX; i++)
			off += (size_t)snprintf(many + off, sizeof many - off, "A\t1\tk%d\tt\n", i);
		CHECK_EQ(alert_state_parse(many, off, &back), -1);   /* over ALERT_MAX */
	}
	snprintf(path, sizeof path, "/tmp/test_alerts.%d", (int)getpid());
	unlink(path);
	CHECK_EQ(alert_state_load(path, &back), 0);             /* missing: empty */
	CHECK_EQ(back.n, 0);
	CHECK_EQ(alert_state_save(path, &st), 0);
	CHECK_EQ(alert_state_load(path, &back), 0);
	CHECK_EQ(back.n, 2);
	unlink(path);
}

static void t_mail(void)
{
	struct alert_entry e = { ALERT_STARTED, NOW, { "disk", "The data disk is 91% full." } };
	char buf[4096], k1[256], k2[256];
	int n = alert_mail_format(&e, "postern.example.com", "admin@example.com", NOW + 10, buf,
				  sizeof buf);

	CHECK(n > 0);
	CHECK(strstr(buf, "Subject: [Postern] ALERT: The data disk is 91% full.\r\n") != NULL);
	CHECK(strstr(buf, "Auto-Submitted: auto-generated\r\n") != NULL);
	CHECK(strstr(buf, "\r\n\r\nThe data disk") != NULL);
	for (int i = 0; i < n; i++)                             /* CRLF only */
		if (buf[i] == '\n')
			CHECK(i > 0 && buf[i - 1] == '\r');
	alert_mail_key(&e, k1, sizeof k1);
	e.flag = ALERT_CLEARED;
	alert_mail_key(&e, k2, sizeof k2);
	CHECK(strcmp(k1, k2) != 0);                             /* start and clear differ */
	n = alert_mail_format(&e, "postern.example.com", "admin@example.com", NOW + 10, buf,
			      sizeof buf);
	CHECK(strstr(buf, "Subject: [Postern] resolved: ") != NULL);
	CHECK_EQ(alert_mail_format(&e, "b", "a", NOW, buf, 100), -1);
}

/* The exit lines svc-finish writes: the window, the threshold, the last
 * exit, and what a hostile or broken file cannot do. */
static void t_svc_exits(void)
{
	struct status_svc x;
	char text[512], words[64];
	int n = 0;

	status_svc_parse("", 0, NOW, &x);
	CHECK(x.exits == 0 && x.last_time == 0 && !status_svc_restarting(&x));
	status_svc_exit_text(&x, words, sizeof words);
	CHECK_STREQ(words, "");
	/* one exit just outside the window, then STATUS_SVC_RESTARTS inside */
	n += snprintf(text + n, sizeof text - (size_t)n, "%lld 1 0\n", NOW - STATUS_SVC_WINDOW_S);
	for (int i = STATUS_SVC_RESTARTS; i > 0; i--)
		n += snprintf(text + n, sizeof text - (size_t)n, "%lld 3 0\n", NOW - i * 10);
	status_svc_parse(text, (size_t)n, NOW, &x);
	CHECK_EQ(x.exits, STATUS_SVC_RESTARTS);
	CHECK(!status_svc_restarting(&x));                 /* "more than": not yet */
	n += snprintf(text + n, sizeof text - (size_t)n, "%lld -1 11", NOW);   /* no newline */
	status_svc_parse(text, (size_t)n, NOW, &x);
	CHECK_EQ(x.exits, STATUS_SVC_RESTARTS + 1);
	CHECK(status_svc_restarting(&x));
	CHECK(x.last_time == NOW && x.last_code == -1 && x.last_signal == 11);
	status_svc_exit_text(&x, words, sizeof words);
	CHECK_STREQ(words, "killed by signal 11");
	/* later, the same exits age out of the window */
	status_svc_parse(text, (size_t)n, NOW + STATUS_SVC_WINDOW_S + 60, &x);
	CHECK(x.exits == 0 && !status_svc_restarting(&x) && x.last_time == NOW);
	/* malformed, out-of-range, future and overlong lines are skipped */
	snprintf(text, sizeof text, "x 1 0\n%lld 1\n%lld 999 0\n%lld 1 0 junk\n%lld 1 0\n"
		 "%lld 7 0\n%080d\n", NOW, NOW, NOW, NOW + 5, NOW - 1, 0);
	status_svc_parse(text, strlen(text), NOW, &x);
	CHECK(x.exits == 1 && x.last_code == 7);
	status_svc_exit_text(&x, words, sizeof words);
	CHECK_STREQ(words, "exit code 7");
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* A fake runit tree and status dir: a crash loop under "run" is restarting,
 * the same exits under "down" are a stopped service; a big exits file is
 * read from its end; a symlink is refused. */
static void t_svc_gather(void)
{
	const char *tmp = getenv("TMPDIR");
	char root[256], path[400], big[STATUS_FILE_MAX * 2];
	struct alert_paths p = { 0 };
	struct alert_facts f;
	struct alert a[ALERT_MAX];
	struct status_svc x;
	int n = 0;

	snprintf(root, sizeof root, "%s/alerts-XXXXXX", tmp ? tmp : "/tmp");
	CHECK(mkdtemp(root) != NULL);
	snprintf(path, sizeof path, "%s/status", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/service", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/service/imapd", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/service/imapd/supervise", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/service/imapd/supervise/stat", root);
	write_file(path, "run\n");
	/* a big file whose first STATUS_FILE_MAX bytes are old exits */
	while (n < (int)sizeof big - 64)
		n += snprintf(big + n, sizeof big - (size_t)n, "%lld 0 15\n", NOW - DAY);
	for (int i = 0; i <= STATUS_SVC_RESTARTS; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "%lld 2 0\n", NOW - 5 + i);
	snprintf(path, sizeof path, "%s/status/exits-imapd", root);
	write_file(path, big);
	CHECK_EQ(status_svc_read(path, "../x", NOW, &x), -1);        /* not a name */
	snprintf(path, sizeof path, "%s/status", root);
	CHECK(status_svc_read(path, "imapd", NOW, &x) == 0 && x.exits == STATUS_SVC_RESTARTS + 1);
	CHECK(status_svc_read(path, "smtpd", NOW, &x) == 0 && x.exits == 0);   /* none yet */

	snprintf(path, sizeof path, "%s/service", root);
	p.service_dir = path;
	snprintf(big, sizeof big, "%s/status", root);
	setenv("POSTERN_SVC_DIR", big, 1);
	alerts_gather(&p, NOW, &f);
	CHECK(f.nsvc == 1 && f.svc[0].up && f.svc[0].restarting);
	CHECK_EQ(alerts_eval(&f, a, ALERT_MAX), 1);
	CHECK_STREQ(a[0].key, "service:imapd");
	CHECK_STREQ(a[0].text, "The service imapd keeps restarting: it stopped 4 times in 10 "
		    "minutes (last: exit code 2).");
	f.svc[0].up = 0;                                  /* caught in "finish": same alert */
	CHECK(alerts_eval(&f, a, ALERT_MAX) == 1 && strstr(a[0].text, "keeps restarting"));

	snprintf(path, sizeof path, "%s/service/imapd/supervise/stat", root);
	write_file(path, "down\n");                       /* stopped by the admin */
	snprintf(path, sizeof path, "%s/service", root);
	alerts_gather(&p, NOW, &f);
	CHECK(f.nsvc == 1 && !f.svc[0].up && !f.svc[0].restarting);
	CHECK(alerts_eval(&f, a, ALERT_MAX) == 1 &&
	      strcmp(a[0].text, "The service imapd is not running.") == 0);

	snprintf(path, sizeof path, "%s/status/exits-smtpd", root);
	CHECK_EQ(symlink("exits-imapd", path), 0);
	snprintf(path, sizeof path, "%s/status", root);
	CHECK_EQ(status_svc_read(path, "smtpd", NOW, &x), -1);       /* no symlinks */
	CHECK_EQ(x.exits, 0);
}

int main(void)
{
	RUN(t_rules);
	RUN(t_rules_fetch_cert_services);
	RUN(t_dedup);
	RUN(t_merge_pending);
	RUN(t_state_file);
	RUN(t_mail);
	RUN(t_svc_exits);
	RUN(t_svc_gather);
	return check_done();
}
