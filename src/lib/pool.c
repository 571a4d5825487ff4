/*
 * pool.c - worker threads behind an event loop (pool.h).
 *
 * One mutex guards the todo ring and the done list; workers sleep on a
 * condition variable; the loop learns of finished jobs from an eventfd and
 * runs their done callbacks itself, so callers never lock anything of
 * their own for the hand-back.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pool.h"

/* The next job, and with ops->group every job behind it that may join
 * its group (up to group_max). Called with p->mu held. */
static size_t take_jobs(struct pool *p, void **out)
{
	size_t n = 0;

	do {
		out[n++] = p->todo[p->todo_head];
		p->todo_head = (p->todo_head + 1) % p->cap;
		p->todo_len--;
	} while (p->ops->group && n < p->group_max && p->todo_len > 0 &&
		 p->ops->group(p->ctx, out[0], p->todo[p->todo_head]));
	return n;
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		void *jobs[POOL_GROUP_MAX];
		uint64_t one = 1;
		size_t n;

		while (p->todo_len == 0 && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->todo_len == 0)
			break;   /* stopping, and every queued job has run */
		n = take_jobs(p, jobs);
		pthread_mutex_unlock(&p->mu);
		p->ops->work(p->ctx, jobs, n);
		pthread_mutex_lock(&p->mu);
		memcpy(p->done + p->ndone, jobs, n * sizeof jobs[0]);
		p->ndone += n;
		(void)!write(p->efd, &one, sizeof one);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Moves the finished jobs to p->batch; returns how many. */
static size_t take_done(struct pool *p)
{
	size_t n;

	pthread_mutex_lock(&p->mu);
	n = p->ndone;
	memcpy(p->batch, p->done, n * sizeof p->batch[0]);
	p->ndone = 0;
	pthread_mutex_unlock(&p->mu);
	return n;
}

static void on_done(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct pool *p = io->ctx;
	uint64_t v;
	size_t n;

	(void)l;
	(void)events;
	(void)!read(p->efd, &v, sizeof v);
	n = take_done(p);
	for (size_t i = 0; i < n; i++) {
		p->pending--;
		p->ops->done(p->ctx, p->batch[i]);
	}
}

static int alloc_lists(struct pool *p, size_t cap)
{
	p->todo = calloc(cap, sizeof *p->todo);
	p->done = calloc(cap, sizeof *p->done);
	p->batch = calloc(cap, sizeof *p->batch);
	if (p->todo && p->done && p->batch)
		return 0;
	free(p->todo);
	free(p->done);
	free(p->batch);
	p->todo = p->done = p->batch = NULL;
	errno = ENOMEM;
	return -1;
}

/* Undoes a pool_open that failed before any thread started. */
static int open_failed(struct pool *p)
{
	int e = errno;

	if (p->efd >= 0)
		close(p->efd);
	free(p->todo);
	free(p->done);
	free(p->batch);
	memset(p, 0, sizeof *p);
	p->efd = -1;
	errno = e;
	return -1;
}

int pool_open(struct pool *p, struct evloop *l, int threads, size_t cap, size_t group_max,
	      const struct pool_ops *ops, void *ctx)
{
	memset(p, 0, sizeof *p);
	p->efd = -1;
	if (threads < 1 || threads > POOL_THREADS_MAX || cap == 0 || group_max < 1 ||
	    group_max > POOL_GROUP_MAX || !ops->work || !ops->done) {
		errno = EINVAL;
		return -1;
	}
	if (alloc_lists(p, cap) < 0)
		return open_failed(p);
	p->cap = cap;
	p->group_max = group_max;
	p->ops = ops;
	p->ctx = ctx;
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0)
		return open_failed(p);
	evl_io_init(&p->io, p->efd, on_done, p);
	if (evl_io_set(l, &p->io, EVL_READ) < 0)
		return open_failed(p);
	p->loop = l;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (; p->nthreads < threads; p->nthreads++)
		if (pthread_create(&p->th[p->nthreads], NULL, worker_main, p) != 0)
			break;
	if (p->nthreads > 0)
		return 0;
	pool_close(p);
	errno = EAGAIN;
	return -1;
}

int pool_add(struct pool *p, void *job)
{
	if (p->nthreads == 0 || p->pending == p->cap)
		return -1;
	pthread_mutex_lock(&p->mu);
	p->todo[(p->todo_head + p->todo_len) % p->cap] = job;
	p->todo_len++;
	p->pending++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

size_t pool_pending(const struct pool *p)
{
	return p->pending;
}

void pool_close(struct pool *p)
{
	size_t n;

	if (!p->loop)
		return;   /* never opened, or closed */
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	p->nthreads = 0;
	n = take_done(p);
	for (size_t i = 0; i < n; i++) {
		p->pending--;
		if (p->ops->drop)
			p->ops->drop(p->ctx, p->batch[i]);
	}
	evl_io_del(p->loop, &p->io);
	close(p->efd);
	p->efd = -1;
	p->loop = NULL;
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->todo);
	free(p->done);
	free(p->batch);
	p->todo = p->done = p->batch = NULL;
}
