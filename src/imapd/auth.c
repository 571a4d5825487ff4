/*
 * auth.c - password checks (and APPEND's fsyncs) off the event loop. The PBKDF2 of one LOGIN
 * costs ~0.2 s (more under ASan): run in the loop it would stall every
 * other connection, IDLE notifications included. So LOGIN/AUTHENTICATE
 * hand the check to a small pool of threads and the connection waits
 * (c->busy: no further command is read); a worker runs auth_check() and
 * posts the connection on the done list, an eventfd wakes the loop, and
 * cmd_login_done() answers.
 *
 * A worker touches only the connection's job fields (job_user, job_pass,
 * verdict), c->lf and c->addr (read-only while busy), the users cache
 * under d->cache_mu, the throttle file (flock'ed) and d->users, which the
 * loop does not replace while d->jobs > 0 (imapd_refresh_users waits).
 * A connection that closes while busy is unlinked but freed only when its
 * job comes back (c->dead).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "imapd.h"
#include "throttle.h"

int auth_check(struct imapd_conn *c)
{
	struct imapd *d = c->d;
	time_t now = time(NULL);
	int ok;

	if (throttle_check(d->o.throttle, c->job_user, c->addr, now) > 0) {
		log_msg(LOG_NOTICE, &c->lf, "login throttled");
		return AUTH_THROTTLED;
	}
	pthread_mutex_lock(&d->cache_mu);
	ok = users_verify_cached(&d->users, &d->cache, c->job_user, c->job_pass, now);
	pthread_mutex_unlock(&d->cache_mu);
	if (!ok) {
		throttle_fail(d->o.throttle, c->job_user, c->addr, now);
		log_msg(LOG_NOTICE, &c->lf, "login failed for %.64s", c->job_user);
		return AUTH_FAILED;
	}
	throttle_success(d->o.throttle, c->job_user, c->addr, now);
	return AUTH_OK;
}

static void *worker_main(void *arg)
{
	struct imapd_pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct imapd_conn *c;
		uint64_t one = 1;

		while (p->todo_len == 0 && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->todo_len == 0)
			break;
		c = p->todo[p->todo_head];
		p->todo_head = (p->todo_head + 1) % IMAPD_CONNS_MAX;
		p->todo_len--;
		pthread_mutex_unlock(&p->mu);
		if (c->job == JOB_APPEND)
			append_work(c->append);
		else
			c->verdict = auth_check(c);
		pthread_mutex_lock(&p->mu);
		p->done[p->ndone++] = c;
		(void)!write(p->efd, &one, sizeof one);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Takes the finished jobs off the done list; *n of them into batch. */
static void take_done(struct imapd_pool *p, struct imapd_conn **batch, size_t *n)
{
	pthread_mutex_lock(&p->mu);
	*n = p->ndone;
	memcpy(batch, p->done, *n * sizeof *batch);
	p->ndone = 0;
	pthread_mutex_unlock(&p->mu);
}

static void finish(struct imapd *d, struct imapd_conn *c)
{
	d->jobs--;
	c->busy = 0;
	if (c->dead) {
		memset(c->job_pass, 0, sizeof c->job_pass);
		free(c->append);
		c->append = NULL;
		conn_release(c);
		return;
	}
	if (c->job == JOB_APPEND)
		append_done(c);
	else
		cmd_login_done(c);
	imap_cmd_reset(&c->cmd);   /* kept while the worker might read it (conn.c) */
	conn_resume(c);
}

static void on_done(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct imapd *d = io->ctx;
	struct imapd_conn *batch[IMAPD_CONNS_MAX];
	size_t n;
	uint64_t v;

	(void)l;
	(void)events;
	(void)!read(d->pool.efd, &v, sizeof v);
	take_done(&d->pool, batch, &n);
	for (size_t i = 0; i < n; i++)
		finish(d, batch[i]);
	if (d->jobs == 0)
		imapd_refresh_users(d);   /* a reload that waited for the workers */
}

int pool_start(struct imapd *d)
{
	struct imapd_pool *p = &d->pool;

	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0)
		return -1;
	evl_io_init(&p->io, p->efd, on_done, d);
	if (evl_io_set(&d->loop, &p->io, EVL_READ) < 0)
		return -1;
	for (p->nthreads = 0; p->nthreads < IMAPD_WORKERS; p->nthreads++)
		if (pthread_create(&p->th[p->nthreads], NULL, worker_main, p) != 0)
			break;
	return p->nthreads > 0 ? 0 : -1;
}

int pool_submit(struct imapd *d, struct imapd_conn *c)
{
	struct imapd_pool *p = &d->pool;

	if (p->nthreads == 0)
		return -1;
	pthread_mutex_lock(&p->mu);
	if (p->todo_len == IMAPD_CONNS_MAX) {   /* cannot happen: one job per connection */
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	p->todo[(p->todo_head + p->todo_len) % IMAPD_CONNS_MAX] = c;
	p->todo_len++;
	d->jobs++;
	c->busy = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void pool_stop(struct imapd *d)
{
	struct imapd_pool *p = &d->pool;
	struct imapd_conn *batch[IMAPD_CONNS_MAX];
	size_t n;

	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	p->nthreads = 0;
	take_done(p, batch, &n);
	for (size_t i = 0; i < n; i++) {   /* every connection is closed by now */
		d->jobs--;
		free(batch[i]->append);
		conn_release(batch[i]);
	}
	if (p->efd >= 0) {
		evl_io_del(&d->loop, &p->io);
		close(p->efd);
		p->efd = -1;
	}
}
