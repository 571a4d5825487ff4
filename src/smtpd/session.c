/*
 * session.c - the protocol core's hooks for submission (smtp-proto.h):
 * AUTH through the shared throttle, the sender and recipient policy of
 * issue 4, and the durable end of DATA: queue file for remote recipients,
 * Maildir copies for local ones, 250 only after every fsync.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "smtpd.h"
#include "throttle.h"

static struct smtpd_conn *conn_of(void *ctx)
{
	return ctx;
}

void session_free_txn(struct smtpd_conn *c)
{
	if (!c->txn)
		return;
	if (c->txn->spooling)
		queue_spool_abort(&c->txn->sp);
	/* Kept for the next MAIL: a transaction is ~90 KB, which musl's
	 * malloc would mmap and munmap (page faults, TLB shootdowns across
	 * the worker threads) once per message. */
	if (c->spare)
		free(c->txn);
	else
		c->spare = c->txn;
	c->txn = NULL;
	log_set_queue(&c->lf, NULL);
}

void session_release(struct smtpd_conn *c)
{
	session_free_txn(c);
	free(c->spare);
	c->spare = NULL;
	if (c->ahead)
		queue_spool_abort(c->ahead);   /* unlinks the unused tmp/ file */
	free(c->ahead);
	c->ahead = NULL;
}

void session_spool_ahead(struct smtpd_conn *c)
{
	if (!c->ahead) {
		c->ahead = malloc(sizeof *c->ahead);
		if (!c->ahead)
			return;
		c->ahead->fd = -1;
	}
	if (c->ahead->fd < 0 && queue_spool_open(&c->d->queue, c->ahead, time(NULL)) < 0)
		c->ahead->fd = -1;
}

/* The spool for this DATA: the one opened ahead, or a new one. A crash
 * leaves an unused one in tmp/ like any unfinished spool (queue_recover). */
static int spool_open(struct smtpd_conn *c, struct queue_spool *sp)
{
	if (c->ahead && c->ahead->fd >= 0) {
		memcpy(sp, c->ahead, offsetof(struct queue_spool, buf));   /* nothing buffered */
		c->ahead->fd = -1;
		return 0;
	}
	return queue_spool_open(&c->d->queue, sp, time(NULL));
}

/* A transaction, from the kept memory when there is some. Only the
 * counters and fixed fields are cleared: the recipient arrays are filled
 * entry by entry up to nrcpt / nlocal. */
static struct smtpd_txn *txn_new(struct smtpd_conn *c)
{
	struct smtpd_txn *t = c->spare ? c->spare : calloc(1, sizeof *t);

	c->spare = NULL;
	if (!t)
		return NULL;
	memset(&t->sp, 0, offsetof(struct queue_spool, buf));
	t->sp.fd = -1;
	t->spooling = 0;
	memset(&t->env, 0, offsetof(struct queue_env, rcpt));
	t->env.notified = 0;
	t->nlocal = 0;
	return t;
}

enum smtp_verdict session_auth(struct smtpd_conn *c)
{
	struct smtpd *d = c->d;
	time_t now = time(NULL);
	long wait = throttle_check(d->o.srv.throttle, c->auth_user, c->addr, now);
	int ok;

	if (wait > 0) {
		log_msg(LOG_NOTICE, &c->lf, "auth throttled user=%.64s wait=%lds", c->auth_user,
			wait);
		return SMTP_AUTH_THROTTLED;
	}
	ok = users_verify_cached(&d->users, &d->cache, c->auth_user, c->auth_pass, now);
	if (!ok) {
		throttle_fail(d->o.srv.throttle, c->auth_user, c->addr, now);
		log_msg(LOG_NOTICE, &c->lf, "auth failed user=%.64s", c->auth_user);
		return SMTP_AUTH_FAILED;
	}
	throttle_success(d->o.srv.throttle, c->auth_user, c->addr, now);
	return SMTP_OK;
}

/* The KDF goes to a worker (a burst of logins must not stall every other
 * session); conn_job_done answers. */
static enum smtp_verdict h_auth(void *ctx, struct smtp_server *s, const char *user,
				const char *password)
{
	struct smtpd_conn *c = conn_of(ctx);
	enum smtp_verdict v;

	(void)s;
	smtpd_refresh_users(c->d);
	snprintf(c->auth_user, sizeof c->auth_user, "%s", user);
	snprintf(c->auth_pass, sizeof c->auth_pass, "%s", password);
	c->job = SMTPD_JOB_AUTH;
	c->busy = 1;
	if (pool_submit(c->d, c) == 0)
		return SMTP_PENDING;
	c->busy = 0;
	v = session_auth(c);
	memset(c->auth_pass, 0, sizeof c->auth_pass);
	if (v == SMTP_OK) {
		log_set_user(&c->lf, user);
		log_msg(LOG_INFO, &c->lf, "authenticated");
	}
	return v;
}

/* 452 4.3.1 when the data partition is nearly full (RFC 5321 4.5.3.1.10 /
 * RFC 3463 X.3.1): the queue and the Maildirs live there. */
static int space_left(struct smtpd *d, uint64_t need)
{
	return maildir_fs_check(d->o.queue_dir, need, SMTPD_FS_RESERVE) == 0 &&
	       maildir_fs_check(d->o.mail_root, need, SMTPD_FS_RESERVE) == 0;
}

static enum smtp_verdict h_mail(void *ctx, struct smtp_server *s)
{
	struct smtpd_conn *c = conn_of(ctx);
	enum smtp_verdict v = SMTP_OK;

	smtpd_refresh_users(c->d);
	if (c->kind != SMTPD_PORT25)
		v = smtp_sender_policy(&c->d->users, c->d->cfg->global.mail_domain, s->user,
				       s->txn.from);
	if (v != SMTP_OK) {
		log_msg(LOG_NOTICE, &c->lf, "sender refused from=<%.256s>", s->txn.from);
		return v;
	}
	if (!space_left(c->d, s->txn.size_param)) {
		log_msg(LOG_WARNING, &c->lf, "data partition nearly full: 452");
		return SMTP_NO_SPACE;
	}
	session_free_txn(c);
	c->txn = txn_new(c);
	if (!c->txn)
		return SMTP_TEMP_FAIL;
	snprintf(c->txn->env.from, sizeof c->txn->env.from, "%s", s->txn.from);
	snprintf(c->txn->env.user, sizeof c->txn->env.user, "%s", s->user);
	return SMTP_OK;
}

/* Port 25 (devices that cannot log in): only the configured recipients,
 * or local users when none are configured. */
static int port25_allowed(struct smtpd *d, const char *addr, enum smtp_route r)
{
	const struct config_smtp *sm = &d->cfg->smtp;

	if (sm->nport25_recipients == 0)
		return r == SMTP_ROUTE_LOCAL;
	for (int i = 0; i < sm->nport25_recipients; i++) {
		const char *a = sm->port25_recipients[i];

		if (strcasecmp(a, addr) == 0)
			return 1;
		if (!strchr(a, '@') && r == SMTP_ROUTE_LOCAL) {
			char (*u)[USERS_NAME_MAX + 1] = malloc(SMTP_EXPAND_MAX * sizeof *u);
			int n = u ? users_resolve(&d->users, addr, d->cfg->global.mail_domain, u,
						  SMTP_EXPAND_MAX) : 0;
			int hit = n == 1 && strcmp(u[0], a) == 0;

			free(u);
			if (hit)
				return 1;
		}
	}
	return 0;
}

/* The delivery context of this server: quota enforced (deliver.h). */
static struct deliver_ctx deliver_ctx_of(struct smtpd_conn *c, int link_source)
{
	struct deliver_ctx dc = {
		.db = &c->d->users,
		.domain = c->d->cfg->global.mail_domain,
		.mail_root = c->d->o.mail_root,
		.link_source = link_source,
		.quota_check = 1,
		.quota = c->d->cfg->global.mailbox_quota,
	};
	return dc;
}

/*
 * The cheap early refusal: is a user that local addr reaches already over
 * quota with `incoming` bytes (RFC 1870 SIZE=, else 1: at quota counts as
 * full)? 1 over, 0 fits or cannot tell (delivery checks again after DATA).
 */
static int rcpt_over_quota(struct smtpd_conn *c, const char *addr, uint64_t incoming)
{
	struct deliver_ctx dc = deliver_ctx_of(c, 0);
	char (*u)[USERS_NAME_MAX + 1];
	int n, over = 0;

	u = malloc(SMTP_EXPAND_MAX * sizeof *u);
	n = u ? users_resolve(&c->d->users, addr, dc.domain, u, SMTP_EXPAND_MAX) : 0;
	for (int i = 0; i < n && !over; i++)
		over = deliver_quota_check(&dc, u[i], incoming ? incoming : 1) == 1;
	free(u);
	return over;
}

static enum smtp_verdict h_rcpt(void *ctx, struct smtp_server *s, const char *addr)
{
	struct smtpd_conn *c = conn_of(ctx);
	struct smtpd_txn *t = c->txn;
	enum smtp_route r;

	if (!t)
		return SMTP_TEMP_FAIL;
	r = smtp_route(&c->d->users, c->d->cfg->global.mail_domain,
		       c->d->cfg->smtp.unknown_recipients == CONFIG_UNKNOWN_RELAY, addr);
	if (r == SMTP_ROUTE_BAD)
		return SMTP_RCPT_BAD;
	if (r == SMTP_ROUTE_UNKNOWN)
		return SMTP_RCPT_UNKNOWN;
	if (c->kind == SMTPD_PORT25 && !port25_allowed(c->d, addr, r))
		return SMTP_RCPT_DENIED;
	if (r == SMTP_ROUTE_LOCAL && rcpt_over_quota(c, addr, s->txn.size_param)) {
		log_msg(LOG_NOTICE, &c->lf, "recipient over quota to=<%.256s>: 452", addr);
		return SMTP_MAILBOX_FULL;   /* RFC 3463 4.2.2, before any DATA */
	}
	if (r == SMTP_ROUTE_LOCAL) {
		snprintf(t->local[t->nlocal++], sizeof t->local[0], "%s", addr);
	} else {
		struct queue_rcpt *q = &t->env.rcpt[t->env.nrcpt++];

		memset(q, 0, sizeof *q);
		snprintf(q->addr, sizeof q->addr, "%s", addr);
		q->state = QUEUE_PENDING;
		q->next_attempt = time(NULL);
	}
	return SMTP_OK;
}

static enum smtp_verdict h_data_start(void *ctx, struct smtp_server *s)
{
	struct smtpd_conn *c = conn_of(ctx);
	struct smtpd_txn *t = c->txn;

	if (!t)
		return SMTP_TEMP_FAIL;
	if (spool_open(c, &t->sp) < 0) {
		log_msg(LOG_ERR, &c->lf, "spool: %s", strerror(errno));
		return errno == ENOSPC || errno == EDQUOT ? SMTP_NO_SPACE : SMTP_TEMP_FAIL;
	}
	t->spooling = 1;
	snprintf(s->txn.queue_id, sizeof s->txn.queue_id, "%s", t->sp.id);
	log_set_queue(&c->lf, t->sp.id);
	return SMTP_OK;
}

static int h_data_write(void *ctx, struct smtp_server *s, const char *buf, size_t len)
{
	struct smtpd_conn *c = conn_of(ctx);

	(void)s;
	return c->txn ? queue_spool_write(&c->txn->sp, buf, len) : -1;
}

static enum smtp_verdict io_verdict(int e)
{
	return e == ENOSPC || e == EDQUOT ? SMTP_NO_SPACE : SMTP_TEMP_FAIL;
}

/* Local copies (after the queue commit, so a failure can undo the queue
 * entry and the client's retry makes no duplicate), into the group's
 * Maildir batch b (NULL: durable now). */
static enum smtp_verdict deliver_locals(struct smtpd_conn *c, struct smtpd_txn *t,
					struct deliver_env *env, struct maildir_batch *b)
{
	/* link_source: each Maildir copy is a hard link of the spool file
	 * (no second write); the commit fsyncs the file and new/. */
	struct deliver_ctx dc = deliver_ctx_of(c, 1);
	const char *rcpts[SMTP_RCPTS_MAX];
	char err[256];
	int r, e;

	/* The filter already ran once in finish(): none here. */
	for (int i = 0; i < t->nlocal; i++)
		rcpts[i] = t->local[i];
	env->rcpts = rcpts;
	env->nrcpt = (size_t)t->nlocal;
	r = deliver_local_batch(&dc, t->sp.fd, env, NULL, b, err, sizeof err);
	e = errno;
	env->rcpts = NULL;
	if (r >= 0)
		return SMTP_OK;
	log_msg(LOG_ERR, &c->lf, "local delivery failed: %s", err);
	if (r == DELIVER_ERR_QUOTA)
		return SMTP_MAILBOX_FULL;   /* over quota since RCPT: 452 4.2.2 */
	return r == DELIVER_ERR_REJECTED ? SMTP_REJECTED : io_verdict(e);
}

/* Everything up to the Maildir commit: spool, filter, queue, local copies
 * staged in b. */
static enum smtp_verdict finish_stage(struct smtpd_conn *c, struct maildir_batch *b)
{
	struct smtpd_txn *t = c->txn;
	struct deliver_env env = { t->env.from, NULL, 0, t->sp.id, t->env.user };
	struct deliver_ctx dc = deliver_ctx_of(c, 0);
	char why[256];
	/* Only a queued message needs its spool fsynced here; a local-only
	 * one becomes durable as the Maildir links of the spool file, which
	 * the commit fsyncs (maildir.h). */
	int r = t->env.nrcpt > 0 ? queue_spool_finish(&t->sp) : queue_spool_flush(&t->sp);

	if (r < 0) {
		log_msg(LOG_ERR, &c->lf, "spool fsync: %s", strerror(errno));
		return io_verdict(errno);
	}
	if (deliver_filter(&dc, t->sp.fd, &env, why, sizeof why) != DELIVER_ACCEPT) {
		log_msg(LOG_NOTICE, &c->lf, "refused by the filter: %s", why);
		return SMTP_REJECTED;
	}
	t->env.created = time(NULL);
	if (t->env.nrcpt > 0 && queue_spool_commit(&t->sp, &t->env) < 0) {
		t->spooling = 0;   /* the spool is gone */
		log_msg(LOG_ERR, &c->lf, "queue: %s", strerror(errno));
		return io_verdict(errno);
	}
	if (t->nlocal > 0) {
		enum smtp_verdict v = deliver_locals(c, t, &env, b);

		if (v != SMTP_OK) {
			if (t->env.nrcpt > 0)
				queue_remove(&c->d->queue, t->sp.id);
			return v;
		}
	}
	return SMTP_OK;
}

static void log_accepted(struct smtpd_conn *c)
{
	struct smtpd_txn *t = c->txn;

	log_msg(LOG_INFO, &c->lf, "accepted from=<%.256s> size=%llu local=%d queued=%d",
		t->env.from, (unsigned long long)t->sp.size, t->nlocal, t->env.nrcpt);
}

enum smtp_verdict session_finish(struct smtpd_conn *c)
{
	enum smtp_verdict v = finish_stage(c, NULL);

	if (v == SMTP_OK)
		log_accepted(c);
	return v;
}

void session_finish_group(struct smtpd_conn **cs, size_t n)
{
	struct maildir_batch *b = maildir_batch_new();
	char err[256];

	if (!b || n == 1) {
		for (size_t i = 0; i < n; i++)
			cs[i]->verdict = session_finish(cs[i]);
		maildir_batch_free(b);
		return;
	}
	for (size_t i = 0; i < n; i++)
		cs[i]->verdict = finish_stage(cs[i], b);
	/* One commit makes every staged copy durable (group commit); only
	 * then does any of these sessions get its 250. */
	if (maildir_batch_commit(b, err, sizeof err) < 0) {
		int e = errno;

		for (size_t i = 0; i < n; i++) {
			struct smtpd_txn *t = cs[i]->txn;

			if (cs[i]->verdict != SMTP_OK || t->nlocal == 0)
				continue;
			log_msg(LOG_ERR, &cs[i]->lf, "local delivery failed: %s", err);
			if (t->env.nrcpt > 0)
				queue_remove(&cs[i]->d->queue, t->sp.id);
			cs[i]->verdict = io_verdict(e);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (cs[i]->verdict == SMTP_OK)
			log_accepted(cs[i]);
	maildir_batch_free(b);
}

/* The fsyncs go to a worker (worker.c); conn_job_done answers. Without
 * workers the work is done here, blocking the loop. */
static enum smtp_verdict h_data_end(void *ctx, struct smtp_server *s)
{
	struct smtpd_conn *c = conn_of(ctx);
	enum smtp_verdict v;

	(void)s;
	if (!c->txn)
		return SMTP_TEMP_FAIL;
	c->job = SMTPD_JOB_DATA;
	c->busy = 1;
	if (pool_submit(c->d, c) == 0)
		return SMTP_PENDING;
	c->busy = 0;
	v = session_finish(c);
	session_free_txn(c);
	return v;
}

static void h_abort(void *ctx, struct smtp_server *s)
{
	(void)s;
	session_free_txn(conn_of(ctx));
}

const struct smtp_hooks smtpd_hooks = {
	.auth = h_auth,
	.mail = h_mail,
	.rcpt = h_rcpt,
	.data_start = h_data_start,
	.data_write = h_data_write,
	.data_end = h_data_end,
	.txn_abort = h_abort,
};
