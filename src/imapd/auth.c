/*
 * auth.c - password checks (and APPEND's fsyncs) off the event loop. The PBKDF2 of one LOGIN
 * costs ~0.2 s (more under ASan): run in the loop it would stall every
 * other connection, IDLE notifications included. So LOGIN/AUTHENTICATE
 * hand the check to a small pool of threads and the connection waits
 * (c->busy: no further command is read); a worker runs auth_check() and
 * posts the connection on the done list, an eventfd wakes the loop, and
 * cmd_login_done() answers. The worker also makes sure the user's Maildir
 * exists (creating it fsyncs). The threads, the queue and the hand-back are
 * src/lib/pool (shared with smtpd).
 *
 * A worker touches only the connection's job fields (job_user, job_pass,
 * verdict), c->lf and c->addr (read-only while busy), the users cache
 * (it locks itself, never during the KDF), the throttle file (flock'ed) and d->users, which the
 * loop does not replace while d->jobs > 0 (imapd_refresh_users waits).
 * A connection that closes while busy is unlinked but freed only when its
 * job comes back (c->dead).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

#include "imapd.h"
#include "throttle.h"

int auth_check(struct imapd_conn *c)
{
	struct imapd *d = c->d;
	time_t now = time(NULL);
	int ok;

	if (throttle_check(d->o.srv.throttle, c->job_user, c->addr, now) > 0) {
		log_msg(LOG_NOTICE, &c->lf, "login throttled");
		return AUTH_THROTTLED;
	}
	ok = users_verify_cached(&d->users, &d->cache, c->job_user, c->job_pass, now);
	if (!ok) {
		throttle_fail(d->o.srv.throttle, c->job_user, c->addr, now);
		log_msg(LOG_NOTICE, &c->lf, "login failed for %.64s", c->job_user);
		return AUTH_FAILED;
	}
	throttle_success(d->o.srv.throttle, c->job_user, c->addr, now);
	return AUTH_OK;
}

/* 1 when dir/sub is a directory (not a link). */
static int is_dir(const char *dir, const char *sub)
{
	char path[IMAPD_PATH_MAX + MAILDIR_FOLDER_MAX + 16];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", dir, sub);
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* 1 when the Maildir and its special-use folders are all there. */
static int store_complete(const char *root)
{
	char sub[MAILDIR_FOLDER_MAX + 8];

	if (!is_dir(root, "cur") || !is_dir(root, "new") || !is_dir(root, "tmp"))
		return 0;
	for (size_t i = 0; maildir_default_folders[i]; i++) {
		snprintf(sub, sizeof sub, ".%s/cur", maildir_default_folders[i]);
		if (!is_dir(root, sub))
			return 0;
	}
	return 1;
}

/* The user's Maildir, created (durably: about ten fsyncs) only when
 * something is missing: a login must not pay for them every time. */
static int store_ready(struct imapd_conn *c)
{
	/* the entry's spelling: names match case-insensitively */
	const struct users_entry *u = users_find(&c->d->users, c->job_user);

	if (!u || u->kind != USERS_KIND_USER ||
	    snprintf(c->root, sizeof c->root, "%s/%s", c->d->o.mail_root, u->name) >=
	    (int)sizeof c->root)
		return -1;
	return store_complete(c->root) || maildir_create(c->root) == 0 ? 0 : -1;
}

void auth_job(struct imapd_conn *c)
{
	c->verdict = auth_check(c);
	c->store_ok = c->verdict == AUTH_OK && store_ready(c) == 0;
}

/* On a worker thread: one job at a time (no grouping). */
static void work(void *ctx, void **jobs, size_t n)
{
	struct imapd_conn *c = jobs[0];

	(void)ctx;
	(void)n;
	if (c->job == JOB_APPEND)
		append_work(c->append);
	else if (c->job == JOB_STORE)
		store_work(c);
	else
		auth_job(c);
}

static void finish(struct imapd *d, struct imapd_conn *c)
{
	d->jobs--;
	c->busy = 0;
	if (c->dead) {
		memset(c->job_pass, 0, sizeof c->job_pass);
		free(c->append);
		c->append = NULL;
		store_free(c->store);
		c->store = NULL;
		conn_release(c);
		return;
	}
	if (c->job == JOB_APPEND)
		append_done(c);
	else if (c->job == JOB_STORE)
		store_done(c);
	else
		cmd_login_done(c);
	imap_cmd_reset(&c->cmd);   /* kept while the worker might read it (conn.c) */
	conn_resume(c);
}

/* On the loop thread, per finished job. */
static void done(void *ctx, void *job)
{
	struct imapd *d = ctx;

	finish(d, job);
	if (d->jobs == 0)
		imapd_refresh_users(d);   /* a reload that waited for the workers */
}

/* pool_close: a job that finished after the last turn of the loop; every
 * connection is closed by then. */
static void drop(void *ctx, void *job)
{
	struct imapd *d = ctx;
	struct imapd_conn *c = job;

	d->jobs--;
	free(c->append);
	store_free(c->store);
	conn_release(c);
}

static const struct pool_ops imapd_pool_ops = { work, done, NULL, drop };

int pool_start(struct imapd *d)
{
	return pool_open(&d->pool, &d->loop, IMAPD_WORKERS, IMAPD_CONNS_MAX, 1,
			 &imapd_pool_ops, d);
}

int pool_submit(struct imapd *d, struct imapd_conn *c)
{
	if (pool_add(&d->pool, c) < 0)
		return -1;
	d->jobs++;
	c->busy = 1;
	return 0;
}

void pool_stop(struct imapd *d)
{
	pool_close(&d->pool);
}
