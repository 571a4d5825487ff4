/* Unit tests for pool.h: every job runs once on a worker and comes back
 * once on the loop thread; groups hold only jobs the group callback
 * accepts, never more than group_max, in queue order; cap is enforced;
 * pool_close runs what is queued and drops what never came back. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "evloop.h"
#include "pool.h"

#define JOBS 200

struct job {
	int id;
	int grouped;                  /* may share a group */
	atomic_int worked;
	int done;
	int dropped;
	pthread_t worker;
};

struct fixture {
	struct evloop loop;
	struct evl_timer *heap[8];
	pthread_t main;
	atomic_int bad_group, max_group, calls;
	int done, off_thread_done;
	struct job jobs[JOBS];
};

static void work(void *ctx, void **jobs, size_t n)
{
	struct fixture *f = ctx;

	f->calls++;
	if ((int)n > f->max_group)
		f->max_group = (int)n;
	for (size_t i = 0; i < n; i++) {
		struct job *j = jobs[i];

		j->worked++;
		j->worker = pthread_self();
		if (n > 1 && (!j->grouped || (i > 0 && j->id <= ((struct job *)jobs[i - 1])->id)))
			f->bad_group++;
	}
	usleep(200);   /* let jobs queue up behind: groups form */
}

static void done(void *ctx, void *job)
{
	struct fixture *f = ctx;
	struct job *j = job;

	j->done++;
	f->done++;
	if (!pthread_equal(pthread_self(), f->main))
		f->off_thread_done++;
	if (f->done == JOBS)
		evl_stop(&f->loop, 0);
}

static int group(void *ctx, const void *first, const void *next)
{
	(void)ctx;
	return ((const struct job *)first)->grouped && ((const struct job *)next)->grouped;
}

static void drop(void *ctx, void *job)
{
	(void)ctx;
	((struct job *)job)->dropped++;
}

static const struct pool_ops grouping = { work, done, group, drop };
static const struct pool_ops single = { work, done, NULL, drop };

static void setup(struct fixture *f)
{
	memset(f, 0, sizeof *f);
	CHECK_EQ(evl_init(&f->loop, f->heap, 8), 0);
	f->main = pthread_self();
	for (int i = 0; i < JOBS; i++) {
		f->jobs[i].id = i;
		f->jobs[i].grouped = i % 7 != 0;
	}
}

static void run_all(const struct pool_ops *ops, int threads, size_t group_max)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct pool p;
	int ok = 1;

	setup(f);
	CHECK_EQ(pool_open(&p, &f->loop, threads, JOBS, group_max, ops, f), 0);
	for (int i = 0; i < JOBS; i++)
		CHECK_EQ(pool_add(&p, &f->jobs[i]), 0);
	CHECK_EQ(evl_run(&f->loop), 0);
	CHECK_EQ(pool_pending(&p), 0);
	for (int i = 0; i < JOBS; i++) {
		ok &= f->jobs[i].worked == 1 && f->jobs[i].done == 1;
		ok &= !pthread_equal(f->jobs[i].worker, f->main);
	}
	CHECK(ok);
	CHECK_EQ(f->off_thread_done, 0);
	CHECK_EQ(f->bad_group, 0);
	CHECK(f->max_group <= (int)group_max);
	if (!ops->group)
		CHECK_EQ(f->max_group, 1);
	else
		CHECK(f->calls < JOBS);   /* one thread, 200 us per call: groups formed */
	pool_close(&p);
	pool_close(&p);   /* twice is harmless */
	evl_free(&f->loop);
	free(f);
}

static void t_every_job_once_single(void)
{
	run_all(&single, 4, POOL_GROUP_MAX);
}

static void t_groups(void)
{
	run_all(&grouping, 1, 5);
}

static void t_groups_many_threads(void)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct pool p;

	setup(f);
	CHECK_EQ(pool_open(&p, &f->loop, 8, JOBS, POOL_GROUP_MAX, &grouping, f), 0);
	for (int i = 0; i < JOBS; i++)
		CHECK_EQ(pool_add(&p, &f->jobs[i]), 0);
	CHECK_EQ(evl_run(&f->loop), 0);
	CHECK_EQ(f->done, JOBS);
	CHECK_EQ(f->bad_group, 0);
	pool_close(&p);
	evl_free(&f->loop);
	free(f);
}

/* cap jobs out at once; a full pool refuses (the caller works inline),
 * and a job that came back frees its slot only once done ran. */
static void t_cap(void)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct pool p;

	setup(f);
	CHECK_EQ(pool_open(&p, &f->loop, 2, 3, 1, &single, f), 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(pool_add(&p, &f->jobs[i]), 0);
	CHECK_EQ(pool_add(&p, &f->jobs[3]), -1);
	CHECK_EQ(pool_pending(&p), 3);
	while (f->done < 3)
		CHECK(evl_run_once(&f->loop, 5000) >= 0);
	CHECK_EQ(pool_pending(&p), 0);
	CHECK_EQ(pool_add(&p, &f->jobs[3]), 0);
	pool_close(&p);
	CHECK_EQ(f->jobs[3].worked, 1);     /* queued work still ran */
	CHECK_EQ(f->jobs[3].dropped, 1);    /* its done never did: dropped */
	CHECK_EQ(f->jobs[3].done, 0);
	CHECK_EQ(pool_add(&p, &f->jobs[4]), -1);   /* closed */
	evl_free(&f->loop);
	free(f);
}

static void t_bad_arguments(void)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct pool p;

	setup(f);
	CHECK_EQ(pool_open(&p, &f->loop, 0, 8, 1, &single, f), -1);
	CHECK_EQ(pool_open(&p, &f->loop, POOL_THREADS_MAX + 1, 8, 1, &single, f), -1);
	CHECK_EQ(pool_open(&p, &f->loop, 1, 0, 1, &single, f), -1);
	CHECK_EQ(pool_open(&p, &f->loop, 1, 8, POOL_GROUP_MAX + 1, &single, f), -1);
	CHECK_EQ(pool_add(&p, &f->jobs[0]), -1);
	pool_close(&p);   /* on a pool that never opened: nothing */
	evl_free(&f->loop);
	free(f);
}

int main(void)
{
	RUN(t_every_job_once_single);
	RUN(t_groups);
	RUN(t_groups_many_threads);
	RUN(t_cap);
	RUN(t_bad_arguments);
	return check_done();
}
