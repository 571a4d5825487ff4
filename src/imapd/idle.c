/*
 * idle.c - IDLE's change notification (RFC 2177): one inotify instance
 * for the whole process, watching new/ and cur/ of every mailbox some
 * connection idles in.
 *
 * Why one instance: closing an inotify descriptor waits for an SRCU grace
 * period in the kernel (fsnotify_destroy_group, ~8 ms measured here), and
 * the loop closed one at the end of every IDLE: 1.6 s of every 8 s of the
 * mixed benchmark were spent blocked in close(). inotify_rm_watch does not
 * wait. One instance also keeps the per-user instance limit
 * (fs.inotify.max_user_instances, 128 by default) from capping how many
 * clients can idle at once.
 *
 * The kernel gives the same watch descriptor to every watch on one
 * directory in an instance, so watches are counted here (struct
 * idle_watch) and removed when the last idling connection leaves. An
 * event marks each idling connection on that descriptor (idle_dirty) and
 * kicks it; the kick (conn.c) sends the update from the loop, outside
 * whatever handler read the event.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <syslog.h>
#include <unistd.h>

#include "imapd.h"

#define IDLE_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | \
		   IN_DONT_FOLLOW)
#define IDLE_READ_MAX 8192          /* bytes of events read at a time */
#define IDLE_WDS_MAX 64             /* distinct watches handled per read */

static struct idle_watch *watch_find(struct imapd *d, int wd)
{
	for (size_t i = 0; i < d->nwatches; i++)
		if (d->watches[i].wd == wd)
			return &d->watches[i];
	return NULL;
}

/* One more user of watch wd. 0 or -1 (no memory). */
static int watch_ref(struct imapd *d, int wd)
{
	struct idle_watch *w = watch_find(d, wd);

	if (w) {
		w->refs++;
		return 0;
	}
	if (d->nwatches == d->capwatches) {
		size_t cap = d->capwatches ? 2 * d->capwatches : 16;
		struct idle_watch *nw = realloc(d->watches, cap * sizeof *nw);

		if (!nw)
			return -1;
		d->watches = nw;
		d->capwatches = cap;
	}
	d->watches[d->nwatches++] = (struct idle_watch){ wd, 1 };
	return 0;
}

/* One user fewer; the last one removes the watch (which does not block,
 * unlike closing the instance). A directory that went away has lost its
 * watch already (IN_IGNORED): the removal then fails, harmlessly. */
static void watch_unref(struct imapd *d, int wd)
{
	struct idle_watch *w = watch_find(d, wd);

	if (!w || --w->refs > 0)
		return;
	inotify_rm_watch(d->ifd, wd);
	*w = d->watches[--d->nwatches];
}

/* Marks and kicks every idling connection watching one of wds[0..n). */
static void mark(struct imapd *d, const int *wds, size_t n)
{
	for (struct imapd_conn *c = d->conns; c; c = c->next) {
		int hit = 0;

		for (int k = 0; k < c->nwd && !hit; k++)
			for (size_t i = 0; i < n && !hit; i++)
				hit = c->wd[k] == wds[i];
		if (hit && c->idling && !c->idle_dirty) {
			c->idle_dirty = 1;
			evl_timer_start(&d->loop, &c->kick, 0, 0);
		}
	}
}

/* Reads every queued event and marks the connections they concern. */
static void drain(struct imapd *d)
{
	char buf[IDLE_READ_MAX] __attribute__((aligned(__alignof__(struct inotify_event))));
	int wds[IDLE_WDS_MAX];
	ssize_t r;

	while ((r = read(d->ifd, buf, sizeof buf)) > 0) {
		size_t n = 0;

		for (char *p = buf; p < buf + r;) {
			const struct inotify_event *e = (const struct inotify_event *)p;
			size_t k = 0;

			while (k < n && wds[k] != e->wd)
				k++;
			if (k == n && n < IDLE_WDS_MAX)
				wds[n++] = e->wd;
			p += sizeof *e + e->len;
		}
		mark(d, wds, n);
	}
}

static void on_inotify(struct evloop *l, struct evl_io *io, unsigned events)
{
	(void)l;
	(void)events;
	drain(io->ctx);
}

int idle_init(struct imapd *d)
{
	d->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->ifd < 0)
		return -1;
	evl_io_init(&d->iio, d->ifd, on_inotify, d);
	if (evl_io_set(&d->loop, &d->iio, EVL_READ) < 0) {
		close(d->ifd);
		d->ifd = -1;
		return -1;
	}
	return 0;
}

void idle_fini(struct imapd *d)
{
	if (d->ifd >= 0) {
		evl_io_del(&d->loop, &d->iio);
		close(d->ifd);
		d->ifd = -1;
	}
	free(d->watches);
	d->watches = NULL;
	d->nwatches = d->capwatches = 0;
}

int conn_idle_start(struct imapd_conn *c)
{
	static const char *const subs[] = { "new", "cur" };
	struct imapd *d = c->d;
	char path[IMAPD_PATH_MAX + 8];

	c->idle_dirty = 0;
	if (d->ifd < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		int wd;

		snprintf(path, sizeof path, "%s/%s", c->ix.dir, subs[i]);
		if ((wd = inotify_add_watch(d->ifd, path, IDLE_MASK)) < 0 || watch_ref(d, wd) < 0) {
			if (wd >= 0 && !watch_find(d, wd))
				inotify_rm_watch(d->ifd, wd);
			conn_idle_stop(c);
			return -1;
		}
		c->wd[c->nwd++] = wd;
	}
	return 0;
}

int conn_idle_pending(struct imapd_conn *c)
{
	int dirty;

	if (c->d->ifd < 0 || c->nwd == 0)
		return 1;   /* not watched: anything may have changed */
	drain(c->d);    /* events the loop has not read yet */
	dirty = c->idle_dirty;
	c->idle_dirty = 0;
	return dirty;
}

void conn_idle_stop(struct imapd_conn *c)
{
	while (c->nwd > 0)
		watch_unref(c->d, c->wd[--c->nwd]);
	c->idling = 0;
	c->idle_dirty = 0;
}
