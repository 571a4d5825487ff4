/*
 * evloop.c - epoll + timer min-heap + signalfd.
 *
 * A turn: compute the wait from the earliest timer, epoll_wait, copy the
 * ready list into l->ready (so evl_io_del can void entries of descriptors
 * freed meanwhile), dispatch it, then fire the due timers.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"

_Static_assert(EVL_READ == POLLIN && EVL_READ == EPOLLIN, "EVL_READ");
_Static_assert(EVL_WRITE == POLLOUT && EVL_WRITE == EPOLLOUT, "EVL_WRITE");
_Static_assert(EVL_ERR == EPOLLERR && EVL_HUP == EPOLLHUP, "EVL_ERR/HUP");

/* signalfd_siginfo records read per read(). */
#define EVL_SIGINFO_BATCH 8

int64_t evl_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t evl_now(const struct evloop *l)
{
	return l->now;
}

int64_t evl_update_now(struct evloop *l)
{
	l->now = l->clock ? l->clock(l->clock_arg) : evl_clock_ms();
	return l->now;
}

void evl_set_clock(struct evloop *l, evl_clock_fn fn, void *arg)
{
	l->clock = fn;
	l->clock_arg = arg;
	evl_update_now(l);
}

int evl_init(struct evloop *l, struct evl_timer **heap, size_t timer_cap)
{
	memset(l, 0, sizeof *l);
	l->sigfd = -1;
	l->heap = heap;
	l->heap_cap = heap ? timer_cap : 0;
	sigemptyset(&l->sigs);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -1;
	evl_update_now(l);
	return 0;
}

/* Reads and drops whatever the signalfd holds. */
static void evl_sig_drain(struct evloop *l)
{
	struct signalfd_siginfo si[EVL_SIGINFO_BATCH];

	while (read(l->sigfd, si, sizeof si) > 0)
		;
}

void evl_free(struct evloop *l)
{
	if (l->sigfd >= 0) {
		evl_sig_drain(l);
		close(l->sigfd);
		l->sigfd = -1;
	}
	if (l->mask_saved)
		sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
	l->mask_saved = 0;
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

void evl_stop(struct evloop *l, int code)
{
	l->stopped = 1;
	l->exit_code = code;
}

int evl_stopped(const struct evloop *l)
{
	return l->stopped;
}

/* ---- descriptors ------------------------------------------------------------ */

void evl_io_init(struct evl_io *io, int fd, evl_io_cb cb, void *ctx)
{
	memset(io, 0, sizeof *io);
	io->fd = fd;
	io->cb = cb;
	io->ctx = ctx;
}

int evl_io_set(struct evloop *l, struct evl_io *io, unsigned interest)
{
	struct epoll_event ev;
	int op;

	interest &= EVL_READ | EVL_WRITE;
	if (io->in_epoll && interest == io->interest)
		return 0;
	if (interest == 0) {
		evl_io_del(l, io);
		return 0;
	}
	memset(&ev, 0, sizeof ev);
	ev.events = interest;
	ev.data.ptr = io;
	op = io->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(l->epfd, op, io->fd, &ev) < 0)
		return -1;
	io->in_epoll = 1;
	io->interest = interest;
	return 0;
}

void evl_io_del(struct evloop *l, struct evl_io *io)
{
	if (io->in_epoll)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->in_epoll = 0;
	io->interest = 0;
	for (int i = 0; i < l->nready; i++)
		if (l->ready[i].io == io)
			l->ready[i].io = NULL;
}

/* ---- timer heap ------------------------------------------------------------- */

void evl_timer_init(struct evl_timer *t, evl_timer_cb cb, void *ctx)
{
	memset(t, 0, sizeof *t);
	t->cb = cb;
	t->ctx = ctx;
}

int evl_timer_armed(const struct evl_timer *t)
{
	return t->slot != 0;
}

size_t evl_timer_count(const struct evloop *l)
{
	return l->heap_len;
}

static void heap_place(struct evloop *l, size_t i, struct evl_timer *t)
{
	l->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(struct evloop *l, size_t i)
{
	struct evl_timer *t = l->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (l->heap[parent]->when <= t->when)
			break;
		heap_place(l, i, l->heap[parent]);
		i = parent;
	}
	heap_place(l, i, t);
}

static void heap_down(struct evloop *l, size_t i)
{
	struct evl_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= l->heap_len)
			break;
		if (c + 1 < l->heap_len && l->heap[c + 1]->when < l->heap[c]->when)
			c++;
		if (t->when <= l->heap[c]->when)
			break;
		heap_place(l, i, l->heap[c]);
		i = c;
	}
	heap_place(l, i, t);
}

/* Removes armed t from the heap. */
static void heap_remove(struct evloop *l, struct evl_timer *t)
{
	size_t i = t->slot - 1;
	struct evl_timer *last = l->heap[--l->heap_len];

	t->slot = 0;
	if (last == t)
		return;
	heap_place(l, i, last);
	heap_up(l, i);
	heap_down(l, last->slot - 1);
}

/* Arms t at t->when (moving it if armed). */
static int evl_timer_arm(struct evloop *l, struct evl_timer *t)
{
	t->armed_turn = l->dispatching ? l->turn : 0;
	if (t->slot) {
		size_t i = t->slot - 1;

		heap_up(l, i);
		heap_down(l, t->slot - 1);
		return 0;
	}
	if (l->heap_len >= l->heap_cap) {
		errno = ENOSPC;
		return -1;
	}
	heap_place(l, l->heap_len++, t);
	heap_up(l, l->heap_len - 1);
	return 0;
}

int evl_timer_start(struct evloop *l, struct evl_timer *t, int64_t delay_ms,
	int64_t interval_ms)
{
	if (delay_ms < 0)
		delay_ms = 0;
	t->when = l->now + delay_ms;
	t->interval = interval_ms > 0 ? interval_ms : 0;
	return evl_timer_arm(l, t);
}

int evl_timer_at(struct evloop *l, struct evl_timer *t, int64_t when_ms)
{
	t->when = when_ms;
	t->interval = 0;
	return evl_timer_arm(l, t);
}

void evl_timer_stop(struct evloop *l, struct evl_timer *t)
{
	if (t->slot)
		heap_remove(l, t);
}

/* Fires due timers in deadline order; returns how many. */
static int evl_fire_timers(struct evloop *l)
{
	int fired = 0;

	l->turn++;
	l->dispatching = 1;
	while (l->heap_len && l->heap[0]->when <= l->now) {
		struct evl_timer *t = l->heap[0];

		if (t->armed_turn == l->turn)
			break;		/* armed during this dispatch: next turn */
		heap_remove(l, t);
		if (t->interval) {
			t->when += t->interval;
			if (t->when <= l->now)
				t->when = l->now + t->interval;	/* fell behind: no burst */
			evl_timer_arm(l, t);	/* cannot fail: its slot was just freed */
			t->armed_turn = 0;
		}
		t->cb(l, t);
		fired++;
	}
	l->dispatching = 0;
	return fired;
}

/* ---- signals ---------------------------------------------------------------- */

static void evl_sig_read(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct signalfd_siginfo si[EVL_SIGINFO_BATCH];
	ssize_t n;

	(void)io;
	(void)events;
	while ((n = read(l->sigfd, si, sizeof si)) > 0) {
		size_t count = (size_t)n / sizeof si[0];

		for (size_t i = 0; i < count; i++) {
			unsigned signo = si[i].ssi_signo;

			if (signo <= EVL_SIG_MAX && l->sig[signo].cb)
				l->sig[signo].cb(l, (int)signo, l->sig[signo].ctx);
		}
	}
}

/* Creates or updates the signalfd for l->sigs and watches it. */
static int evl_sig_fd(struct evloop *l)
{
	int fd = signalfd(l->sigfd, &l->sigs, SFD_NONBLOCK | SFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (l->sigfd < 0) {
		l->sigfd = fd;
		evl_io_init(&l->sigio, fd, evl_sig_read, NULL);
		return evl_io_set(l, &l->sigio, EVL_READ);
	}
	return 0;
}

int evl_signal(struct evloop *l, int signo, evl_signal_cb cb, void *ctx)
{
	sigset_t one;

	if (signo <= 0 || signo > EVL_SIG_MAX || signo == SIGKILL || signo == SIGSTOP) {
		errno = EINVAL;
		return -1;
	}
	sigemptyset(&one);
	sigaddset(&one, signo);
	if (sigprocmask(SIG_BLOCK, &one, l->mask_saved ? NULL : &l->oldmask) < 0)
		return -1;
	l->mask_saved = 1;
	sigaddset(&l->sigs, signo);
	l->sig[signo].cb = cb;
	l->sig[signo].ctx = ctx;
	return evl_sig_fd(l);
}

int evl_child_signals(const struct evloop *l)
{
	if (!l->mask_saved)
		return 0;
	return sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
}

/* ---- running ---------------------------------------------------------------- */

/* How long epoll_wait may sleep: until the earliest timer, at most. */
static int evl_wait_ms(const struct evloop *l, int max_wait_ms)
{
	int64_t wait = EVL_WAIT_MAX_MS;

	if (l->heap_len) {
		int64_t d = l->heap[0]->when - l->now;

		wait = d < 0 ? 0 : d < wait ? d : wait;
	}
	if (max_wait_ms >= 0 && max_wait_ms < wait)
		wait = max_wait_ms;
	return (int)wait;
}

/* Runs the callbacks of the ready list; returns how many ran. */
static int evl_dispatch_io(struct evloop *l)
{
	int ran = 0;

	for (int i = 0; i < l->nready; i++) {
		struct evl_io *io = l->ready[i].io;

		if (!io)
			continue;
		l->ready[i].io = NULL;
		io->cb(l, io, l->ready[i].events);
		ran++;
	}
	l->nready = 0;
	return ran;
}

int evl_run_once(struct evloop *l, int max_wait_ms)
{
	struct epoll_event evs[EVL_BATCH];
	int n;

	evl_update_now(l);
	n = epoll_wait(l->epfd, evs, EVL_BATCH, evl_wait_ms(l, max_wait_ms));
	if (n < 0 && errno != EINTR)
		return -1;
	evl_update_now(l);
	l->nready = n < 0 ? 0 : n;
	for (int i = 0; i < l->nready; i++) {
		unsigned e = evs[i].events;

		if (e & EPOLLRDHUP)
			e |= EVL_READ;
		l->ready[i].io = evs[i].data.ptr;
		l->ready[i].events = e & (EVL_READ | EVL_WRITE | EVL_ERR | EVL_HUP);
	}
	n = evl_dispatch_io(l);
	return n + evl_fire_timers(l);
}

int evl_run(struct evloop *l)
{
	l->stopped = 0;
	while (!l->stopped)
		if (evl_run_once(l, -1) < 0)
			return -1;
	return l->exit_code;
}
