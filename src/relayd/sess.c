/*
 * sess.c - one SMTP session to the smart host: a non-blocking connect,
 * TLS through tls_pump (implicit from the first byte, or after STARTTLS),
 * bytes between the socket and the smtp-client core, the message text
 * streamed from the queue file, and a timeout on every wait.
 *
 * Nothing reaches the server before TLS is up and verified: the core
 * refuses to send AUTH or the envelope in clear, and tls_write never sends
 * before a verified handshake (tls.h).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "relayd.h"
#include "status.h"

static void sess_io(struct evloop *l, struct evl_io *io, unsigned events);

int sess_count(const struct relayd *d)
{
	int n = 0;

	for (int i = 0; i < d->nsess_max; i++)
		n += d->sess[i].active;
	return n;
}

static void sess_end(struct relay_sess *s, const char *why)
{
	struct relayd *d = s->d;
	int ok = smtpc_state(&s->c) == SMTPC_S_CLOSED || !why;

	if (ok)
		log_msg(LOG_INFO, &s->lf, "session closed: %d message(s)", s->messages);
	else
		sched_session_failed(d, s, why);
	/* The dashboard's smart-host state (status.h; docs/web.md). */
	status_record(status_dir(), "relay", "smarthost", (int64_t)time(NULL),
		      ok ? STATUS_OK : status_classify(why), (unsigned)s->messages, ok ? "" : why);
	evl_timer_stop(&d->loop, &s->timer);
	evl_timer_stop(&d->loop, &s->kick);
	if (s->fd >= 0) {
		evl_io_del(&d->loop, &s->io);
		close(s->fd);
	}
	s->fd = -1;
	if (s->tls) {
		memset(s->tls, 0, sizeof *s->tls);
		free(s->tls);
		s->tls = NULL;
	}
	s->active = 0;
	sched_kick(d);
}

static void arm(struct relay_sess *s)
{
	int64_t ms = smtpc_timeout_ms(&s->c);

	if (s->connecting)
		ms = RELAY_CONNECT_MS;
	else if (s->tls && !tls_established(s->tls))
		ms = RELAY_TLS_MS;
	evl_timer_start(&s->d->loop, &s->timer, ms, 0);
}

static void on_timeout(struct evloop *l, struct evl_timer *t)
{
	struct relay_sess *s = t->ctx;
	char why[128];

	(void)l;
	snprintf(why, sizeof why, "timeout (%s)", s->connecting ? "connect" :
		 s->tls && !tls_established(s->tls) ? "TLS handshake" :
		 smtpc_state_name(smtpc_state(&s->c)));
	smtpc_fail(&s->c, 1, why);
	sess_end(s, why);
}

static void on_kick(struct evloop *l, struct evl_timer *t)
{
	struct relay_sess *s = t->ctx;

	sess_io(l, &s->io, 0);
}

static int start_tls(struct relay_sess *s)
{
	struct relayd *d = s->d;

	s->tls = malloc(sizeof *s->tls);
	if (!s->tls)
		return -1;
	if (tls_client_start(s->tls, &d->tcfg, d->cfg->smarthost.host) < 0) {
		smtpc_fail(&s->c, 1, tls_error(s->tls));
		return -1;
	}
	arm(s);
	return 0;
}

/* The handshake completes inside some tls_pump: tell the core once. */
static int tls_came_up(struct relay_sess *s)
{
	if (!s->tls || s->tls_up || !tls_established(s->tls))
		return 0;
	s->tls_up = 1;
	log_msg(LOG_INFO, &s->lf, "TLS established with %s", s->d->cfg->smarthost.host);
	smtpc_tls_started(&s->c, 1, NULL);
	arm(s);
	return 1;
}

/* Server bytes into the core. 1 progress, 0 none, -1 end of stream. */
static int pull(struct relay_sess *s)
{
	char buf[2048];
	int progress = 0;

	for (;;) {
		int st = smtpc_state(&s->c);
		ssize_t n;

		if (st == SMTPC_S_FAILED || st == SMTPC_S_CLOSED || st == SMTPC_S_TLS_WANTED)
			return progress;
		n = tls_conn_recv(s->tls, s->fd, buf, sizeof buf);
		if (n == 0) {
			smtpc_eof(&s->c);
			return -1;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return progress;
			smtpc_fail(&s->c, 1, s->tls && *tls_error(s->tls) ? tls_error(s->tls)
									 : strerror(errno));
			return -1;
		}
		smtpc_input(&s->c, buf, (size_t)n);
		progress = 1;
		arm(s);
	}
}

/* The message text into the core while it has room. */
static void feed_body(struct relay_sess *s)
{
	while (smtpc_state(&s->c) == SMTPC_S_BODY) {
		if (s->chunk_off == s->chunk_len && !s->body_eof) {
			ssize_t n = read(s->msgfd, s->chunk, sizeof s->chunk);

			if (n < 0) {
				smtpc_fail(&s->c, 1, "reading the queued message failed");
				return;
			}
			s->chunk_len = (size_t)n;
			s->chunk_off = 0;
			s->body_eof = n == 0;
		}
		if (s->chunk_off < s->chunk_len) {
			size_t k = smtpc_body(&s->c, s->chunk + s->chunk_off, s->chunk_len - s->chunk_off);

			s->chunk_off += k;
			if (k == 0)
				return;   /* output full */
		} else if (smtpc_body_end(&s->c) < 0) {
			return;
		}
	}
}

/* Core output to the socket. 1 progress, 0 none, -1 error. */
static int push(struct relay_sess *s)
{
	size_t len;
	const char *out;
	ssize_t n;

	feed_body(s);
	out = smtpc_output(&s->c, &len);
	if (len == 0)
		return 0;
	n = tls_conn_send(s->tls, s->fd, out, len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		smtpc_fail(&s->c, 1, s->tls && *tls_error(s->tls) ? tls_error(s->tls) : strerror(errno));
		return -1;
	}
	smtpc_consumed(&s->c, (size_t)n);
	return n > 0;
}

/* What the core's state asks of us (next message, QUIT, TLS). 1 progress. */
static int drive(struct relay_sess *s)
{
	switch (smtpc_state(&s->c)) {
	case SMTPC_S_TLS_WANTED: {
		size_t len;

		smtpc_output(&s->c, &len);
		if (s->tls || len > 0)
			return 0;
		return start_tls(s) < 0 ? -1 : 1;
	}
	case SMTPC_S_MSG_DONE:
		s->messages++;
		sched_done(s->d, s);
		smtpc_next(&s->c);
		return 1;
	case SMTPC_S_IDLE:
		s->reached_idle = 1;
		if (sched_take(s->d, s) <= 0)
			smtpc_quit(&s->c);
		return 1;
	default:
		return 0;
	}
}

static int step(struct relay_sess *s, int *want)
{
	int progress = 0, r;

	if (s->tls && (*want = tls_pump(s->tls, s->fd)) < 0 && !tls_app_pending(s->tls)) {
		if (!tls_established(s->tls) && smtpc_state(&s->c) == SMTPC_S_TLS_WANTED)
			smtpc_tls_started(&s->c, 0, tls_error(s->tls));
		else if (!*tls_error(s->tls))
			smtpc_eof(&s->c);
		else
			smtpc_fail(&s->c, 1, tls_error(s->tls));
		return -1;
	}
	progress |= tls_came_up(s);
	if ((r = pull(s)) < 0)
		return -1;
	progress |= r;
	if ((r = drive(s)) < 0)
		return -1;
	progress |= r;
	if ((r = push(s)) < 0)
		return -1;
	progress |= r;
	if (s->tls && (*want = tls_pump(s->tls, s->fd)) < 0 && !tls_app_pending(s->tls))
		return progress ? 1 : -1;
	return progress | tls_came_up(s);
}

static int connected(struct relay_sess *s)
{
	int e = 0;
	socklen_t l = sizeof e;

	s->connecting = 0;
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0 || e) {
		char why[160];

		snprintf(why, sizeof why, "connect to %.100s port %u: %s", s->d->cfg->smarthost.host,
			 (unsigned)s->d->cfg->smarthost.port, strerror(e ? e : errno));
		smtpc_fail(&s->c, 1, why);
		return -1;
	}
	if (s->d->cfg->smarthost.tls == CONFIG_SMTP_IMPLICIT && start_tls(s) < 0)
		return -1;
	arm(s);
	return 0;
}

static void sess_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct relay_sess *s = io->ctx;
	int want = 0, r, rounds = 0;
	int st;

	(void)l;
	if (s->connecting) {
		if (!(events & (EVL_WRITE | EVL_ERR | EVL_HUP)))
			return;
		if (connected(s) < 0) {
			sess_end(s, smtpc_error(&s->c));
			return;
		}
	}
	while ((r = step(s, &want)) > 0 && ++rounds < 1024)
		;
	if (rounds >= 1024)
		evl_timer_start(&s->d->loop, &s->kick, 0, 0);
	st = smtpc_state(&s->c);
	if (r < 0 || st == SMTPC_S_FAILED || st == SMTPC_S_CLOSED) {
		if (st != SMTPC_S_FAILED && st != SMTPC_S_CLOSED)
			smtpc_fail(&s->c, 1, "connection lost");
		sess_end(s, smtpc_error(&s->c));
		return;
	}
	if (s->tls && want == 0 && tls_app_pending(s->tls)) {
		evl_timer_start(&s->d->loop, &s->kick, 0, 0);
		want = EVL_READ;
	}
	if (!s->tls) {
		size_t len;

		smtpc_output(&s->c, &len);
		want = (int)(EVL_READ | (len ? EVL_WRITE : 0));
	} else if (want == 0) {
		want = EVL_READ;
	}
	if (evl_io_set(&s->d->loop, &s->io, (unsigned)want) < 0)
		sess_end(s, "event loop full");
}

/* Resolves and starts a non-blocking connect; -1 with the reason in the core. */
static int open_socket(struct relay_sess *s)
{
	const struct config_smarthost *sh = &s->d->cfg->smarthost;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res;
	char port[8], why[200];
	int g;

	snprintf(port, sizeof port, "%u", (unsigned)sh->port);
	g = getaddrinfo(sh->host, port, &hints, &res);
	if (g != 0) {
		snprintf(why, sizeof why, "cannot resolve %.100s: %s", sh->host, gai_strerror(g));
		smtpc_fail(&s->c, 1, why);
		return -1;
	}
	s->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* The core already batches what it sends (pipelined commands, body
	 * chunks): without NODELAY the short final record (".") waits behind
	 * Nagle for the server's delayed ACK, 40 ms per message. */
	if (s->fd >= 0)
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (s->fd >= 0 && connect(s->fd, res->ai_addr, res->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		snprintf(why, sizeof why, "connect to %.100s port %s: %s", sh->host, port, strerror(errno));
		close(s->fd);
		s->fd = -1;
		smtpc_fail(&s->c, 1, why);
	} else if (s->fd >= 0) {
		log_set_peer(&s->lf, res->ai_addr, res->ai_addrlen);
	}
	freeaddrinfo(res);
	return s->fd < 0 ? -1 : 0;
}

int sess_start(struct relayd *d)
{
	struct relay_sess *s = NULL;
	struct smtpc_params p = { .ehlo_name = d->ehlo, .user = d->cfg->smarthost.user,
				  .password = d->password };

	for (int i = 0; i < d->nsess_max && !s; i++)
		if (!d->sess[i].active)
			s = &d->sess[i];
	if (!s)
		return -1;
	memset(s, 0, offsetof(struct relay_sess, env));
	s->d = d;
	s->fd = -1;
	s->msgfd = -1;
	s->active = 1;
	log_fields_init(&s->lf);
	p.tls_active = d->cfg->smarthost.tls == CONFIG_SMTP_IMPLICIT;
	evl_timer_init(&s->timer, on_timeout, s);
	evl_timer_init(&s->kick, on_kick, s);
	if (smtpc_init(&s->c, &p) < 0) {
		smtpc_fail(&s->c, 0, "smart-host settings too long");
		sess_end(s, smtpc_error(&s->c));
		return -1;
	}
	if (open_socket(s) < 0) {
		sess_end(s, smtpc_error(&s->c));
		return -1;
	}
	s->connecting = 1;
	evl_io_init(&s->io, s->fd, sess_io, s);
	arm(s);
	if (evl_io_set(&d->loop, &s->io, EVL_WRITE) < 0) {
		sess_end(s, "event loop full");
		return -1;
	}
	return 0;
}
