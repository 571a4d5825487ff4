/*
 * test_evloop.c - the event loop: timers in order, cancellation, repeats,
 * many timers, idle deadlines on a fake clock (no sleeping), signals via
 * signalfd, descriptor readiness on socketpairs, and an echo server on
 * 127.0.0.1 driving 200 concurrent connections through one loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "evloop.h"
#include "linebuf.h"

#define TIMERS_MANY 5000

static struct evloop loop;
static struct evl_timer *heap[TIMERS_MANY];
static int64_t fake_now;

static int64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

static void loop_fake(size_t cap)
{
	CHECK_EQ(evl_init(&loop, heap, cap), 0);
	fake_now = 1000;
	evl_set_clock(&loop, fake_clock, NULL);
}

/* ---- timers --------------------------------------------------------------- */

static int fired[64], nfired;

static void record(struct evloop *l, struct evl_timer *t)
{
	(void)l;
	if (nfired < 64)
		fired[nfired++] = (int)(intptr_t)t->ctx;
}

static void t_timer_order(void)
{
	struct evl_timer t[5];
	int64_t delays[5] = { 30, 10, 50, 20, 40 };

	loop_fake(16);
	nfired = 0;
	for (int i = 0; i < 5; i++) {
		evl_timer_init(&t[i], record, (void *)(intptr_t)i);
		CHECK_EQ(evl_timer_start(&loop, &t[i], delays[i], 0), 0);
	}
	CHECK_EQ(evl_timer_count(&loop), 5);
	fake_now += 5;
	CHECK_EQ(evl_run_once(&loop, 0), 0);
	fake_now += 30;		/* 35: 10, 20, 30 due */
	CHECK_EQ(evl_run_once(&loop, 0), 3);
	fake_now += 100;
	CHECK_EQ(evl_run_once(&loop, 0), 2);
	CHECK_EQ(nfired, 5);
	int want[5] = { 1, 3, 0, 4, 2 };
	for (int i = 0; i < 5; i++)
		CHECK_EQ(fired[i], want[i]);
	CHECK_EQ(evl_timer_count(&loop), 0);
	CHECK(!evl_timer_armed(&t[0]));
	evl_free(&loop);
}

static struct evl_timer *victim;

static void cancel_other(struct evloop *l, struct evl_timer *t)
{
	record(l, t);
	evl_timer_stop(l, victim);
}

static void t_timer_cancel(void)
{
	struct evl_timer a, b, c;

	loop_fake(16);
	nfired = 0;
	evl_timer_init(&a, cancel_other, (void *)1);
	evl_timer_init(&b, record, (void *)2);
	evl_timer_init(&c, record, (void *)3);
	evl_timer_start(&loop, &a, 10, 0);
	evl_timer_start(&loop, &b, 20, 0);
	evl_timer_start(&loop, &c, 30, 0);
	victim = &b;
	evl_timer_stop(&loop, &c);
	evl_timer_stop(&loop, &c);	/* twice is harmless */
	fake_now += 100;
	evl_run_once(&loop, 0);
	CHECK_EQ(nfired, 1);
	CHECK_EQ(fired[0], 1);
	CHECK_EQ(evl_timer_count(&loop), 0);
	/* re-arming moves the deadline instead of adding a second entry */
	evl_timer_start(&loop, &c, 10, 0);
	evl_timer_start(&loop, &c, 50, 0);
	CHECK_EQ(evl_timer_count(&loop), 1);
	fake_now += 20;
	CHECK_EQ(evl_run_once(&loop, 0), 0);
	fake_now += 40;
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	evl_free(&loop);
}

static void t_timer_repeat(void)
{
	struct evl_timer r;

	loop_fake(4);
	nfired = 0;
	evl_timer_init(&r, record, (void *)7);
	evl_timer_start(&loop, &r, 10, 10);
	fake_now += 10;
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	CHECK(evl_timer_armed(&r));
	CHECK_EQ(r.when, fake_now + 10);
	fake_now += 35;		/* fell behind three periods: one call, no burst */
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	CHECK_EQ(r.when, fake_now + 10);
	evl_timer_stop(&loop, &r);
	fake_now += 100;
	CHECK_EQ(evl_run_once(&loop, 0), 0);
	CHECK_EQ(nfired, 2);
	evl_free(&loop);
}

/* A zero-delay timer re-armed from its own callback runs once per turn. */
static int again_count;

static void again(struct evloop *l, struct evl_timer *t)
{
	again_count++;
	evl_timer_start(l, t, 0, 0);
}

static void t_timer_zero_delay(void)
{
	struct evl_timer t;

	loop_fake(4);
	again_count = 0;
	evl_timer_init(&t, again, NULL);
	evl_timer_start(&loop, &t, 0, 0);
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	CHECK_EQ(again_count, 2);
	evl_free(&loop);
}

static struct evl_timer many[TIMERS_MANY];
static int64_t last_when;
static int order_ok, many_fired;

static void check_order(struct evloop *l, struct evl_timer *t)
{
	(void)l;
	if (t->when < last_when)
		order_ok = 0;
	last_when = t->when;
	many_fired++;
}

static void t_timer_many(void)
{
	struct evl_timer extra;

	loop_fake(TIMERS_MANY);
	srand(7);
	order_ok = 1;
	many_fired = 0;
	last_when = 0;
	for (int i = 0; i < TIMERS_MANY; i++) {
		evl_timer_init(&many[i], check_order, NULL);
		CHECK_EQ(evl_timer_start(&loop, &many[i], rand() % 100000, 0), 0);
	}
	evl_timer_init(&extra, check_order, NULL);
	CHECK_EQ(evl_timer_start(&loop, &extra, 1, 0), -1);
	CHECK_EQ(errno, ENOSPC);
	/* every connection's idle deadline moved, a tenth cancelled */
	for (int i = 0; i < TIMERS_MANY; i++)
		evl_timer_start(&loop, &many[i], rand() % 100000, 0);
	for (int i = 0; i < TIMERS_MANY; i += 10)
		evl_timer_stop(&loop, &many[i]);
	CHECK_EQ(evl_timer_count(&loop), TIMERS_MANY - TIMERS_MANY / 10);
	for (int step = 0; step < 100; step++) {
		fake_now += 1000;
		evl_run_once(&loop, 0);
	}
	CHECK(order_ok);
	CHECK_EQ(many_fired, TIMERS_MANY - TIMERS_MANY / 10);
	CHECK_EQ(evl_timer_count(&loop), 0);
	evl_free(&loop);
}

/* The real clock: a 20 ms timer stops evl_run. */
static void stop_loop(struct evloop *l, struct evl_timer *t)
{
	evl_stop(l, (int)(intptr_t)t->ctx);
}

static void t_real_clock(void)
{
	struct evl_timer t;
	int64_t start;

	CHECK_EQ(evl_init(&loop, heap, 4), 0);
	evl_timer_init(&t, stop_loop, (void *)42);
	start = evl_clock_ms();
	evl_timer_start(&loop, &t, 20, 0);
	CHECK_EQ(evl_run(&loop), 42);
	CHECK(evl_clock_ms() - start >= 20);
	CHECK(evl_stopped(&loop));
	evl_free(&loop);
}

/* ---- signals --------------------------------------------------------------- */

static int got_hup, got_term;

static void on_signal(struct evloop *l, int signo, void *ctx)
{
	CHECK(ctx == &got_hup);
	if (signo == SIGHUP)
		got_hup++;
	if (signo == SIGTERM) {
		got_term++;
		evl_stop(l, 3);
	}
}

static void t_signals(void)
{
	sigset_t cur;

	CHECK_EQ(evl_init(&loop, heap, 4), 0);
	CHECK_EQ(evl_signal(&loop, SIGHUP, on_signal, &got_hup), 0);
	CHECK_EQ(evl_signal(&loop, SIGTERM, on_signal, &got_hup), 0);
	CHECK_EQ(evl_signal(&loop, SIGKILL, on_signal, NULL), -1);
	CHECK_EQ(evl_signal(&loop, 0, on_signal, NULL), -1);
	raise(SIGHUP);
	CHECK_EQ(evl_run_once(&loop, 1000), 1);
	CHECK_EQ(got_hup, 1);
	raise(SIGHUP);
	raise(SIGTERM);
	CHECK_EQ(evl_run(&loop), 3);
	CHECK_EQ(got_hup, 2);
	CHECK_EQ(got_term, 1);
	/* routing off: the signal is swallowed, not fatal */
	CHECK_EQ(evl_signal(&loop, SIGHUP, NULL, NULL), 0);
	raise(SIGHUP);
	evl_run_once(&loop, 0);
	CHECK_EQ(got_hup, 2);
	evl_free(&loop);
	sigprocmask(SIG_BLOCK, NULL, &cur);
	CHECK(!sigismember(&cur, SIGHUP));
	CHECK(!sigismember(&cur, SIGTERM));
}

/* ---- descriptors ------------------------------------------------------------ */

static unsigned last_events;
static int io_calls;

static void on_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	char buf[16];

	(void)l;
	last_events = events;
	io_calls++;
	if ((events & EVL_READ) && io->ctx)
		(void)!read(io->fd, buf, sizeof buf);
}

static void t_io_socketpair(void)
{
	struct evl_io io;
	int sv[2];

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	CHECK_EQ(evl_init(&loop, heap, 4), 0);
	evl_io_init(&io, sv[0], on_io, &io);
	CHECK_EQ(evl_io_set(&loop, &io, EVL_READ), 0);
	io_calls = 0;
	CHECK_EQ(evl_run_once(&loop, 0), 0);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	CHECK_EQ(evl_run_once(&loop, 1000), 1);
	CHECK_EQ(last_events, EVL_READ);
	CHECK_EQ(evl_run_once(&loop, 0), 0);	/* the byte was read */
	CHECK_EQ(evl_io_set(&loop, &io, EVL_READ | EVL_WRITE), 0);
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	CHECK_EQ(last_events, EVL_WRITE);
	CHECK_EQ(evl_io_set(&loop, &io, 0), 0);	/* out of epoll */
	CHECK(!io.in_epoll);
	CHECK_EQ(write(sv[1], "y", 1), 1);
	CHECK_EQ(evl_run_once(&loop, 0), 0);
	CHECK_EQ(evl_io_set(&loop, &io, EVL_READ), 0);
	close(sv[1]);
	CHECK_EQ(evl_run_once(&loop, 0), 1);
	CHECK(last_events & EVL_READ);
	CHECK_EQ(io_calls, 3);
	evl_io_del(&loop, &io);
	evl_io_del(&loop, &io);
	close(sv[0]);
	evl_free(&loop);
}

/* A callback that deletes another ready descriptor: no stale call. */
static struct evl_io pair_io[2];

static void on_io_delete_other(struct evloop *l, struct evl_io *io, unsigned events)
{
	(void)events;
	io_calls++;
	evl_io_del(l, &pair_io[io == &pair_io[0] ? 1 : 0]);
}

static void t_io_delete_in_batch(void)
{
	int a[2], b[2];

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	CHECK_EQ(evl_init(&loop, heap, 4), 0);
	evl_io_init(&pair_io[0], a[0], on_io_delete_other, NULL);
	evl_io_init(&pair_io[1], b[0], on_io_delete_other, NULL);
	evl_io_set(&loop, &pair_io[0], EVL_READ);
	evl_io_set(&loop, &pair_io[1], EVL_READ);
	CHECK_EQ(write(a[1], "x", 1), 1);
	CHECK_EQ(write(b[1], "x", 1), 1);
	io_calls = 0;
	CHECK_EQ(evl_run_once(&loop, 1000), 1);
	CHECK_EQ(io_calls, 1);
	for (int i = 0; i < 2; i++)
		evl_io_del(&loop, &pair_io[i]);
	close(a[0]); close(a[1]); close(b[0]); close(b[1]);
	evl_free(&loop);
}

/* An idle deadline per connection, re-armed on each read, on a fake clock. */
#define IDLE_MS 1000
struct idle_conn {
	struct evl_io io;
	struct evl_timer idle;
	int closed;
};

static void idle_read(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct idle_conn *c = io->ctx;
	char buf[64];

	(void)events;
	(void)!read(io->fd, buf, sizeof buf);
	evl_timer_start(l, &c->idle, IDLE_MS, 0);
}

static void idle_expired(struct evloop *l, struct evl_timer *t)
{
	struct idle_conn *c = t->ctx;

	evl_io_del(l, &c->io);
	close(c->io.fd);
	c->closed = 1;
}

static void t_idle_timeout(void)
{
	struct idle_conn c;
	int sv[2];

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	loop_fake(4);
	memset(&c, 0, sizeof c);
	evl_io_init(&c.io, sv[0], idle_read, &c);
	evl_timer_init(&c.idle, idle_expired, &c);
	evl_io_set(&loop, &c.io, EVL_READ);
	evl_timer_start(&loop, &c.idle, IDLE_MS, 0);
	fake_now += 900;
	CHECK_EQ(write(sv[1], "a", 1), 1);
	evl_run_once(&loop, 1000);	/* read: deadline now 1900 from start */
	fake_now += 600;
	evl_run_once(&loop, 0);
	CHECK(!c.closed);
	fake_now += 400;
	evl_run_once(&loop, 0);
	CHECK(c.closed);
	close(sv[1]);
	evl_free(&loop);
}

/* ---- echo server: 200 concurrent connections on 127.0.0.1 ---------------- */

#define ECHO_CONNS 200
#define ECHO_LINES 20
#define ECHO_LINE_MAX 64
#define ECHO_IN (ECHO_LINE_MAX + LINEBUF_SLACK)
#define ECHO_OUT 512
#define ECHO_IDLE_MS 5000
#define ECHO_DEADLINE_MS 20000

/* Fixed memory per connection: both sides use the same struct. */
struct echo_conn {
	struct evl_io io;
	struct evl_timer idle;
	struct linebuf lb;
	char in[ECHO_IN];
	char out[ECHO_OUT];
	size_t out_len, out_off;
	int id, used, lines;	/* client: lines echoed back so far */
};

static struct echo_conn servers[ECHO_CONNS], clients[ECHO_CONNS];
static int srv_open, cli_done, echo_errors;

static void echo_close(struct evloop *l, struct echo_conn *c)
{
	evl_io_del(l, &c->io);
	evl_timer_stop(l, &c->idle);
	close(c->io.fd);
	c->used = 0;
}

/* Sends what is queued; 0, or -1 when the peer is gone. */
static int echo_flush(struct echo_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off,
			MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Reads into the linebuf; 1 got bytes, 0 would block, -1 EOF or error. */
static int echo_fill(struct echo_conn *c)
{
	size_t room;
	void *p = linebuf_space(&c->lb, &room);
	ssize_t n = recv(c->io.fd, p, room, 0);

	if (n > 0) {
		linebuf_commit(&c->lb, (size_t)n);
		return 1;
	}
	return n < 0 && errno == EAGAIN ? 0 : -1;
}

/* Server: echo each line back with CRLF, as long as the output has room. */
static void echo_lines(struct echo_conn *c)
{
	struct linebuf_line ln;

	while (ECHO_OUT - c->out_len >= ECHO_LINE_MAX + 2 &&
	    linebuf_next(&c->lb, &ln) == LINEBUF_LINE) {
		memcpy(c->out + c->out_len, ln.data, ln.len);
		memcpy(c->out + c->out_len + ln.len, "\r\n", 2);
		c->out_len += ln.len + 2;
	}
}

static void server_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct echo_conn *c = io->ctx;
	int r = 0;

	if (events & (EVL_READ | EVL_HUP | EVL_ERR))
		r = echo_fill(c);
	echo_lines(c);
	if (r < 0 || echo_flush(c) < 0) {
		echo_close(l, c);
		srv_open--;
		return;
	}
	evl_timer_start(l, &c->idle, ECHO_IDLE_MS, 0);
	evl_io_set(l, io, c->out_len ? EVL_WRITE : EVL_READ);
}

static void server_idle(struct evloop *l, struct evl_timer *t)
{
	echo_errors++;
	echo_close(l, t->ctx);
	srv_open--;
}

static void listener_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	int fd;

	(void)events;
	while ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct echo_conn *c = NULL;

		for (int i = 0; i < ECHO_CONNS && !c; i++)
			if (!servers[i].used)
				c = &servers[i];
		if (!c) {
			close(fd);
			echo_errors++;
			continue;
		}
		memset(c, 0, offsetof(struct echo_conn, in));
		c->used = 1;
		evl_io_init(&c->io, fd, server_io, c);
		evl_timer_init(&c->idle, server_idle, c);
		linebuf_init(&c->lb, c->in, sizeof c->in, ECHO_LINE_MAX);
		evl_io_set(l, &c->io, EVL_READ);
		evl_timer_start(l, &c->idle, ECHO_IDLE_MS, 0);
		srv_open++;
	}
}

/* Client: checks each echoed line, closes after the last. */
static void client_check(struct evloop *l, struct echo_conn *c)
{
	struct linebuf_line ln;
	char want[ECHO_LINE_MAX];

	while (linebuf_next(&c->lb, &ln) == LINEBUF_LINE) {
		snprintf(want, sizeof want, "client %d line %d", c->id, c->lines);
		if (strcmp(ln.data, want) != 0 || ln.term != LINEBUF_TERM_CRLF)
			echo_errors++;
		c->lines++;
	}
	if (c->lines == ECHO_LINES) {
		echo_close(l, c);
		cli_done++;
	}
}

static void client_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct echo_conn *c = io->ctx;

	if ((events & EVL_WRITE) && echo_flush(c) < 0)
		echo_errors++;
	if (events & (EVL_READ | EVL_HUP | EVL_ERR)) {
		if (echo_fill(c) < 0) {
			echo_errors++;
			echo_close(l, c);
			cli_done++;
			return;
		}
		client_check(l, c);
		if (!c->used)
			return;
	}
	evl_io_set(l, io, EVL_READ | (c->out_len ? EVL_WRITE : 0));
}

static void check_finished(struct evloop *l, struct evl_timer *t)
{
	(void)t;
	if (cli_done == ECHO_CONNS && srv_open == 0)
		evl_stop(l, 0);
}

static int echo_listen(struct sockaddr_in *sa)
{
	socklen_t len = sizeof *sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(fd >= 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)sa, sizeof *sa), 0);
	CHECK_EQ(listen(fd, 2 * ECHO_CONNS), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)sa, &len), 0);
	return fd;
}

static void client_start(struct evloop *l, struct echo_conn *c, int id,
	const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);

	CHECK(r == 0 || errno == EINPROGRESS);
	memset(c, 0, offsetof(struct echo_conn, in));
	c->used = 1;
	c->id = id;
	evl_io_init(&c->io, fd, client_io, c);
	evl_timer_init(&c->idle, NULL, c);
	linebuf_init(&c->lb, c->in, sizeof c->in, ECHO_LINE_MAX);
	for (int j = 0; j < ECHO_LINES; j++) {
		/* the first half with bare LF: the server answers CRLF anyway */
		int n = snprintf(c->out + c->out_len, ECHO_OUT - c->out_len,
			"client %d line %d%s", id, j, j < ECHO_LINES / 2 ? "\n" : "\r\n");
		c->out_len += (size_t)n;
	}
	CHECK(c->out_len < ECHO_OUT);
	CHECK_EQ(evl_io_set(l, &c->io, EVL_READ | EVL_WRITE), 0);
}

static void t_echo_200(void)
{
	struct evl_io lio;
	struct evl_timer deadline, poll_done;
	struct sockaddr_in sa;
	int lfd = echo_listen(&sa);

	CHECK_EQ(evl_init(&loop, heap, 2 * ECHO_CONNS + 4), 0);
	evl_io_init(&lio, lfd, listener_io, NULL);
	CHECK_EQ(evl_io_set(&loop, &lio, EVL_READ), 0);
	evl_timer_init(&deadline, stop_loop, (void *)1);
	evl_timer_start(&loop, &deadline, ECHO_DEADLINE_MS, 0);
	evl_timer_init(&poll_done, check_finished, NULL);
	evl_timer_start(&loop, &poll_done, 5, 5);
	for (int i = 0; i < ECHO_CONNS; i++)
		client_start(&loop, &clients[i], i, &sa);
	CHECK_EQ(evl_run(&loop), 0);
	CHECK_EQ(cli_done, ECHO_CONNS);
	CHECK_EQ(srv_open, 0);
	CHECK_EQ(echo_errors, 0);
	for (int i = 0; i < ECHO_CONNS; i++)
		CHECK_EQ(clients[i].lines, ECHO_LINES);
	evl_io_del(&loop, &lio);
	close(lfd);
	evl_free(&loop);
}

int main(void)
{
	RUN(t_timer_order);
	RUN(t_timer_cancel);
	RUN(t_timer_repeat);
	RUN(t_timer_zero_delay);
	RUN(t_timer_many);
	RUN(t_real_clock);
	RUN(t_signals);
	RUN(t_io_socketpair);
	RUN(t_io_delete_in_batch);
	RUN(t_idle_timeout);
	RUN(t_echo_200);
	return check_done();
}
