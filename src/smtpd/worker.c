/*
 * worker.c - the durable end of DATA runs on a small pool of threads
 * (pool.h), so the fsyncs of many sessions overlap (ext4 commits them
 * together) while the event loop keeps serving everyone else. The protocol
 * core waits in SMTP_S_WAIT meanwhile (smtp-proto.h, SMTP_PENDING).
 *
 * A worker takes every message waiting in the queue at once (up to
 * SMTPD_GROUP_MAX) and commits their Maildir copies together (group
 * commit, maildir.h: one fsync pass for all of them).
 *
 * Logins go the same way (the password KDF costs ~0.1-0.3 s), one at a
 * time.
 *
 * A worker touches only the connection's job (c->txn or c->auth_*, c->lf
 * for logging), the users cache (it locks itself), and read-only shared
 * state (users, configuration, queue descriptors). The main thread does
 * not replace the users or the configuration while jobs run (d->jobs > 0:
 * reloads wait), and a connection that drops meanwhile is only marked dead
 * and freed when its job comes back.
 */
#include "smtpd.h"

static void work(void *ctx, void **jobs, size_t n)
{
	struct smtpd_conn *first = jobs[0];

	(void)ctx;
	if (first->job == SMTPD_JOB_AUTH)
		first->verdict = session_auth(first);
	else
		session_finish_group((struct smtpd_conn **)jobs, n);
	/* After the replies are decided (the 250 waits for nothing more). */
	for (size_t i = 0; i < n; i++)
		if (((struct smtpd_conn *)jobs[i])->verdict == SMTP_OK)
			session_spool_ahead(jobs[i]);
}

/* Messages are committed together; a login goes alone. */
static int group(void *ctx, const void *first, const void *next)
{
	(void)ctx;
	return ((const struct smtpd_conn *)first)->job == SMTPD_JOB_DATA &&
	       ((const struct smtpd_conn *)next)->job == SMTPD_JOB_DATA;
}

/* A job came back: answer the client, or free a connection that died. */
static void done(void *ctx, void *job)
{
	struct smtpd *d = ctx;

	d->jobs--;
	conn_job_done(job);
	if (d->jobs == 0)
		smtpd_reload_pending(d);
}

static const struct pool_ops smtpd_pool_ops = { work, done, group, NULL };

int pool_start(struct smtpd *d)
{
	return pool_open(&d->pool, &d->loop, SMTPD_WORKERS, SMTPD_CONNS_MAX, SMTPD_GROUP_MAX,
			 &smtpd_pool_ops, d);
}

int pool_submit(struct smtpd *d, struct smtpd_conn *c)
{
	if (pool_add(&d->pool, c) < 0)
		return -1;
	d->jobs++;
	return 0;
}

void pool_stop(struct smtpd *d)
{
	pool_close(&d->pool);
}
