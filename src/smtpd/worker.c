/*
 * worker.c - the durable end of DATA runs on a small pool of threads, so
 * the fsyncs of many sessions overlap (ext4 commits them together) while
 * the event loop keeps serving everyone else. The protocol core waits in
 * SMTP_S_WAIT meanwhile (smtp-proto.h, SMTP_PENDING).
 *
 * A worker takes every message waiting in the queue at once (up to
 * SMTPD_GROUP_MAX) and commits their Maildir copies together (group
 * commit, maildir.h: one fsync pass for all of them).
 *
 * Logins go the same way (the password KDF costs ~0.1-0.3 s).
 *
 * A worker touches only the connection's job (c->txn or c->auth_*, c->lf
 * for logging), the users cache under d->cache_mu, and read-only shared
 * state (users, configuration, queue
 * descriptors). The main thread does not replace the users or the
 * configuration while jobs run (d->jobs > 0: reloads wait), and a
 * connection that drops meanwhile is only marked dead and freed when its
 * job comes back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <unistd.h>

#include "smtpd.h"

/* Takes the next job, and with a message all the messages queued right
 * behind it (up to SMTPD_GROUP_MAX): they are committed together. Called
 * with p->mu held. */
static size_t take_jobs(struct smtpd_pool *p, struct smtpd_conn **out)
{
	size_t n = 0;

	do {
		out[n++] = p->todo[p->todo_head];
		p->todo_head = (p->todo_head + 1) % SMTPD_CONNS_MAX;
		p->todo_len--;
	} while (out[0]->job == SMTPD_JOB_DATA && n < SMTPD_GROUP_MAX && p->todo_len > 0 &&
		 p->todo[p->todo_head]->job == SMTPD_JOB_DATA);
	return n;
}

static void *worker_main(void *arg)
{
	struct smtpd_pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct smtpd_conn *jobs[SMTPD_GROUP_MAX];
		uint64_t one = 1;
		size_t n;

		while (p->todo_len == 0 && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->todo_len == 0)
			break;   /* stopping, and nothing left to make durable */
		n = take_jobs(p, jobs);
		pthread_mutex_unlock(&p->mu);
		if (jobs[0]->job == SMTPD_JOB_AUTH)
			jobs[0]->verdict = session_auth(jobs[0]);
		else
			session_finish_group(jobs, n);
		pthread_mutex_lock(&p->mu);
		for (size_t i = 0; i < n; i++)
			p->done[p->ndone++] = jobs[i];
		(void)!write(p->efd, &one, sizeof one);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Completed jobs: answer the client, or free a connection that died. */
static void on_done(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct smtpd *d = io->ctx;
	struct smtpd_pool *p = &d->pool;
	struct smtpd_conn *batch[SMTPD_CONNS_MAX];
	size_t n;
	uint64_t v;

	(void)l;
	(void)events;
	(void)!read(p->efd, &v, sizeof v);
	pthread_mutex_lock(&p->mu);
	n = p->ndone;
	memcpy(batch, p->done, n * sizeof batch[0]);
	p->ndone = 0;
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < n; i++) {
		d->jobs--;
		conn_job_done(batch[i]);
	}
	if (d->jobs == 0)
		smtpd_reload_pending(d);
}

int pool_start(struct smtpd *d)
{
	struct smtpd_pool *p = &d->pool;

	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0)
		return -1;
	evl_io_init(&p->io, p->efd, on_done, d);
	if (evl_io_set(&d->loop, &p->io, EVL_READ) < 0)
		return -1;
	for (p->nthreads = 0; p->nthreads < SMTPD_WORKERS; p->nthreads++)
		if (pthread_create(&p->th[p->nthreads], NULL, worker_main, p) != 0)
			break;
	return p->nthreads > 0 ? 0 : -1;
}

int pool_submit(struct smtpd *d, struct smtpd_conn *c)
{
	struct smtpd_pool *p = &d->pool;

	if (p->nthreads == 0)
		return -1;
	pthread_mutex_lock(&p->mu);
	if (p->todo_len == SMTPD_CONNS_MAX) {   /* cannot happen: one job per connection */
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	p->todo[(p->todo_head + p->todo_len) % SMTPD_CONNS_MAX] = c;
	p->todo_len++;
	d->jobs++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void pool_stop(struct smtpd *d)
{
	struct smtpd_pool *p = &d->pool;

	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	p->nthreads = 0;
	if (p->efd >= 0) {
		evl_io_del(&d->loop, &p->io);
		close(p->efd);
		p->efd = -1;
	}
}
