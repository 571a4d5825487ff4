/*
 * pool.h - a few worker threads behind an event loop, for the blocking
 * work a daemon must not do on its loop: password KDFs, fsyncs.
 *
 * The loop hands a job (any pointer, e.g. a connection) to pool_add; a
 * worker takes it, runs ops->work on it, and posts it back; an eventfd
 * wakes the loop, which calls ops->done for it on the loop thread. While
 * a job is out, the caller must not touch what the worker uses (the usual
 * pattern: the connection waits, reading nothing, until done).
 *
 * Group commit: with ops->group set, a worker that takes a job also takes
 * every job queued right behind it that ops->group accepts (up to
 * group_max), and ops->work gets them all at once, so one fsync pass can
 * make a whole group durable.
 *
 * Used by smtpd (logins, the durable end of DATA) and imapd (logins,
 * APPEND). Not async-signal-safe; one loop per pool.
 */
#ifndef POSTERN_POOL_H
#define POSTERN_POOL_H

#include <pthread.h>
#include <stddef.h>

#include "evloop.h"

#define POOL_THREADS_MAX 32       /* worker threads per pool */
#define POOL_GROUP_MAX 64         /* jobs one worker takes at once */

struct pool_ops {
	/* On a worker thread: jobs[0..n) (n > 1 only with group). */
	void (*work)(void *ctx, void **jobs, size_t n);
	/* On the loop thread, once per finished job. */
	void (*done)(void *ctx, void *job);
	/* May next run in one group with first (both queued)? NULL: never. */
	int (*group)(void *ctx, const void *first, const void *next);
	/* pool_close: a job that finished but whose done never ran. NULL: none. */
	void (*drop)(void *ctx, void *job);
};

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	void **todo;                  /* a ring of cap */
	size_t todo_head, todo_len;
	void **done;                  /* finished, for the loop */
	size_t ndone;
	void **batch;                 /* the loop's copy of done */
	size_t cap, pending, group_max;
	int efd;                      /* eventfd: jobs came back */
	struct evl_io io;
	struct evloop *loop;
	pthread_t th[POOL_THREADS_MAX];
	int nthreads;
	int stopping;
	const struct pool_ops *ops;
	void *ctx;
};

/* Starts threads workers (1..POOL_THREADS_MAX) for at most cap jobs out
 * at once, grouping up to group_max (1..POOL_GROUP_MAX), and registers the
 * completion eventfd with loop l. 0, or -1 with errno (nothing started). */
int pool_open(struct pool *p, struct evloop *l, int threads, size_t cap, size_t group_max,
	      const struct pool_ops *ops, void *ctx);

/* Queues job. 0, or -1 when cap jobs are out or the pool is not running
 * (the caller then does the work itself). */
int pool_add(struct pool *p, void *job);

/* Jobs added whose done has not run yet (loop thread). */
size_t pool_pending(const struct pool *p);

/* Lets the workers finish every queued job, joins them, passes finished
 * jobs whose done did not run to ops->drop, and unregisters the eventfd.
 * Safe on a pool that never opened (zeroed) or is already closed. */
void pool_close(struct pool *p);

#endif
