/*
 * conn.c - one client connection: moves bytes between the socket (or the
 * TLS engine) and the protocol core, arms the timeouts of RFC 5321
 * 4.5.3.2, starts TLS after STARTTLS (or at once on 465) and closes.
 *
 * STARTTLS: once the core answered 220 it takes no more input, so nothing
 * the client pipelined in clear is read as if it came through TLS; the core
 * has already dropped what it buffered (smtp-proto.c, process()).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "smtpd.h"

static void conn_io(struct evloop *l, struct evl_io *io, unsigned events);
static void arm(struct smtpd_conn *c);

static void conn_free(struct smtpd_conn *c)
{
	struct smtpd *d = c->d;

	smtp_server_end(&c->smtp);   /* aborts an open transaction */
	session_release(c);
	limits_release(d, c->addr);
	free(c->tls);
	free(c);
	d->nconns--;
}

static void conn_close(struct smtpd_conn *c, const char *why)
{
	struct smtpd *d = c->d;

	log_msg(LOG_INFO, &c->lf, "disconnect: %s", why);
	evl_timer_stop(&d->loop, &c->timer);
	evl_timer_stop(&d->loop, &c->kick);
	evl_io_del(&d->loop, &c->io);
	close(c->fd);
	c->fd = -1;
	if (c->busy)
		c->dead = 1;   /* a worker still uses c->txn: freed when it is done */
	else
		conn_free(c);
}

void conn_job_done(struct smtpd_conn *c)
{
	c->busy = 0;
	memset(c->auth_pass, 0, sizeof c->auth_pass);
	if (c->dead) {
		conn_free(c);
		return;
	}
	if (c->job == SMTPD_JOB_AUTH) {
		if (c->verdict == SMTP_OK) {
			log_set_user(&c->lf, c->auth_user);
			log_msg(LOG_INFO, &c->lf, "authenticated");
		}
		smtp_server_auth_done(&c->smtp, c->verdict);
	} else {
		session_free_txn(c);
		smtp_server_data_done(&c->smtp, c->verdict);
	}
	arm(c);
	conn_io(&c->d->loop, &c->io, 0);
}

static void on_timeout(struct evloop *l, struct evl_timer *t)
{
	struct smtpd_conn *c = t->ctx;

	(void)l;
	if (c->busy) {   /* our own fsyncs, not the client, are slow */
		arm(c);
		return;
	}
	if (smtp_server_closing(&c->smtp)) {
		conn_close(c, "closing timed out");
		return;
	}
	log_msg(LOG_NOTICE, &c->lf, "timeout in state %d%s", (int)c->smtp.state,
		c->tls && !tls_established(c->tls) ? " (TLS handshake)" : "");
	/* RFC 5321 4.5.3.2: the server may close after its timeout; 421 first. */
	smtp_server_shutdown(&c->smtp, "timeout");
	conn_io(&c->d->loop, &c->io, 0);
}

static void on_kick(struct evloop *l, struct evl_timer *t)
{
	struct smtpd_conn *c = t->ctx;

	conn_io(l, &c->io, 0);
}

static void arm(struct smtpd_conn *c)
{
	int ms = smtp_server_closing(&c->smtp) ? SMTPD_CLOSE_MS : smtp_server_timeout_ms(&c->smtp);

	if (c->tls && !tls_established(c->tls))
		ms = SMTP_TIMEOUT_TLS_MS;
	evl_timer_start(&c->d->loop, &c->timer, ms, 0);
}

/* Plaintext from the client into the core. 1 progress, 0 none, -1 closed. */
static int pull(struct smtpd_conn *c)
{
	int progress = 0;

	for (;;) {
		size_t room;
		void *p = smtp_server_space(&c->smtp, &room);
		ssize_t n;

		if (room == 0)
			return progress;
		n = tls_conn_recv(c->tls, c->fd, p, room);
		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? progress : -1;
		smtp_server_commit(&c->smtp, (size_t)n);
		progress = 1;
		arm(c);
	}
}

/* Replies from the core to the client. 1 progress, 0 none, -1 error. */
static int push(struct smtpd_conn *c)
{
	size_t len;
	const char *out = smtp_server_output(&c->smtp, &len);
	ssize_t n;

	if (len == 0)
		return 0;
	n = tls_conn_send(c->tls, c->fd, out, len);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	smtp_server_consumed(&c->smtp, (size_t)n);
	if (c->smtp.stalled)
		smtp_server_commit(&c->smtp, 0);   /* room again: resume the lines */
	return n > 0;
}

static int start_tls(struct smtpd_conn *c)
{
	c->tls = malloc(sizeof *c->tls);
	if (!c->tls || tls_server_start(c->tls, &c->d->tls) < 0) {
		log_msg(LOG_ERR, &c->lf, "TLS start: %s", c->tls ? tls_error(c->tls) : "no memory");
		return -1;
	}
	arm(c);
	return 0;
}

/* The handshake may complete inside any tls_pump: notice it once. */
static int tls_came_up(struct smtpd_conn *c)
{
	if (!c->tls || c->tls_up || !tls_established(c->tls))
		return 0;
	c->tls_up = 1;
	if (smtp_server_tls_wanted(&c->smtp))
		smtp_server_tls_started(&c->smtp);   /* STARTTLS: EHLO again */
	log_msg(LOG_INFO, &c->lf, "TLS established");
	arm(c);
	return 1;
}

/* One round of moving bytes; returns -1 to close. */
static int step(struct smtpd_conn *c, int *want)
{
	int progress = 0, r;

	if (c->tls && (*want = tls_pump(c->tls, c->fd)) < 0)
		return -1;
	progress |= tls_came_up(c);
	if ((r = pull(c)) < 0)
		return -1;
	progress |= r;
	if ((r = push(c)) < 0)
		return -1;
	progress |= r;
	/* STARTTLS: the 220 left in clear; from here on the engine reads. */
	if (!c->tls && smtp_server_tls_wanted(&c->smtp) && c->smtp.outlen == 0) {
		if (start_tls(c) < 0)
			return -1;
		progress = 1;
	}
	if (c->tls && (*want = tls_pump(c->tls, c->fd)) < 0)
		return -1;
	return progress | tls_came_up(c);
}

static int finish_close(struct smtpd_conn *c, int want)
{
	if (!smtp_server_closing(&c->smtp) || c->smtp.outlen > 0)
		return 0;
	return tls_conn_close_ready(c->tls, c->fd, &c->tls_closing, want);
}

static void conn_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct smtpd_conn *c = io->ctx;
	unsigned interest = 0;
	int want = 0, r, rounds = 0;

	(void)l;
	(void)events;
	/* Until nothing moves. tls_pump() returning 0 means the engine holds
	 * decrypted bytes (it read a record in the last pump): no socket event
	 * will announce them, so take them now. */
	while ((r = step(c, &want)) >= 0 && ++rounds < 1024) {
		if (r > 0)
			continue;
		if (!(c->tls && want == 0 && (r = pull(c)) > 0))
			break;
	}
	if (rounds >= 1024)
		evl_timer_start(&c->d->loop, &c->kick, 0, 0);   /* fairness: later */
	if (r < 0) {
		if (smtp_server_closing(&c->smtp))
			conn_close(c, "closed");
		else
			conn_close(c, c->tls && tls_error(c->tls)[0] ? tls_error(c->tls)
								     : "connection lost");
		return;
	}
	if (finish_close(c, want)) {
		conn_close(c, "closed");
		return;
	}
	if (c->tls) {
		interest = want > 0 ? (unsigned)want : EVL_READ;
	} else {
		size_t room;

		smtp_server_space(&c->smtp, &room);
		interest = (room ? EVL_READ : 0) | (c->smtp.outlen ? EVL_WRITE : 0);
		if (!interest)
			interest = EVL_READ;   /* notice a hang-up */
	}
	if (evl_io_set(&c->d->loop, &c->io, interest) < 0)
		conn_close(c, "event loop full");
	else if (smtp_server_closing(&c->smtp))
		arm(c);
}

/* Port 25 is only for the configured LAN devices. */
static int port25_host_ok(struct smtpd *d, const struct sockaddr_storage *sa)
{
	const struct config_smtp *sm = &d->cfg->smtp;

	for (int i = 0; i < sm->nport25_hosts; i++) {
		const struct config_prefix *p = &sm->port25_hosts[i];
		const unsigned char *a;
		int bits = p->len, alen;

		if (sa->ss_family == AF_INET && p->addr.family == AF_INET) {
			a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
			alen = 32;
		} else if (sa->ss_family == AF_INET6 && p->addr.family == AF_INET6) {
			a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
			alen = 128;
		} else {
			continue;
		}
		if (bits > alen)
			bits = alen;
		if (memcmp(a, p->addr.a, (size_t)bits / 8) == 0 &&
		    (bits % 8 == 0 || ((a[bits / 8] ^ p->addr.a[bits / 8]) &
				       (0xff00 >> (bits % 8)) & 0xff) == 0))
			return 1;
	}
	return 0;
}

static void peer_addr(struct smtpd_conn *c)
{
	const void *a = c->sa.ss_family == AF_INET6
		? (const void *)&((struct sockaddr_in6 *)&c->sa)->sin6_addr
		: (const void *)&((struct sockaddr_in *)&c->sa)->sin_addr;

	if (!inet_ntop(c->sa.ss_family, a, c->addr, sizeof c->addr))
		strcpy(c->addr, "unknown");
}

/* A connection refused before its greeting: 421 (RFC 5321 3.1) and close. */
static void refuse(int fd, const char *why)
{
	char line[160];
	int n = snprintf(line, sizeof line, "421 4.7.0 %s\r\n", why);

	(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

void conn_accept(struct smtpd *d, struct smtpd_listener *l)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	int fd = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct smtpd_conn *c;
	struct smtp_params p;
	const char *why;

	if (fd < 0)
		return;
	if (d->nconns >= SMTPD_CONNS_MAX || (l->kind == SMTPD_PORT25 && !port25_host_ok(d, &sa)) ||
	    !(c = calloc(1, sizeof *c))) {
		refuse(fd, "Service not available");
		return;
	}
	c->sa = sa;
	peer_addr(c);
	if ((why = limits_admit(d, c->addr, time(NULL))) != NULL) {
		struct log_fields lf;

		log_fields_init(&lf);
		log_set_peer(&lf, (struct sockaddr *)&sa, salen);
		log_msg(LOG_NOTICE, &lf, "refused: %s", why);
		refuse(fd, why);
		free(c);
		return;
	}
	d->nconns++;
	c->d = d;
	c->fd = fd;
	c->kind = l->kind;
	log_fields_init(&c->lf);
	log_set_peer(&c->lf, (struct sockaddr *)&sa, salen);
	smtpd_refresh_users(d);
	memset(&p, 0, sizeof p);
	p.hostname = d->hostname;
	p.max_size = d->cfg->smtp.max_message_size;
	p.tls_available = d->have_tls && l->kind != SMTPD_SMTPS;
	p.tls_active = l->kind == SMTPD_SMTPS;
	p.auth_required = l->kind != SMTPD_PORT25;
	p.peer_addr = c->addr;
	smtp_server_init(&c->smtp, &p, &smtpd_hooks, c);
	evl_io_init(&c->io, fd, conn_io, c);
	evl_timer_init(&c->timer, on_timeout, c);
	evl_timer_init(&c->kick, on_kick, c);
	log_msg(LOG_INFO, &c->lf, "connect port=%s",
		l->kind == SMTPD_SMTPS ? "smtps" : l->kind == SMTPD_PORT25 ? "smtp" : "submission");
	/* 465: TLS from the first byte (RFC 8314 3.3); the greeting waits in
	 * the core's output until the handshake is done. */
	if (l->kind == SMTPD_SMTPS) {
		if (start_tls(c) < 0) {
			conn_close(c, "TLS unavailable");
			return;
		}
	}
	arm(c);
	conn_io(&d->loop, &c->io, 0);
}
