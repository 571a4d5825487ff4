/*
 * conn.c - one client connection: moves bytes between the socket (or the
 * TLS engine) and the command assembler, keeps the reply buffer, arms the
 * timeouts, starts TLS (at once on 993, after STARTTLS on 143) and runs
 * IDLE's inotify watch.
 *
 * STARTTLS (RFC 3501 6.2.1, RFC 7817): once the tagged OK is queued no
 * more commands are read; what the client pipelined in clear is dropped
 * (linebuf_discard) before the handshake, never read as if it came
 * through TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "imapd.h"

#define CONN_ROUNDS_MAX 1024   /* I/O rounds per wake-up before yielding */

static void conn_io(struct evloop *l, struct evl_io *io, unsigned events);

/* ---- output ------------------------------------------------------------------ */

/* Drops the sent bytes from the front of the buffer. */
static void out_compact(struct imapd_conn *c)
{
	if (c->outoff == 0)
		return;
	memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
	c->outlen -= c->outoff;
	c->out_base += c->outoff;
	c->outoff = 0;
}

int out_pending(const struct imapd_conn *c)
{
	return c->outlen > c->outoff || c->nstreams > 0;
}

void out_raw(struct imapd_conn *c, const void *data, size_t len)
{
	if (c->outoff > 0 && c->outoff == c->outlen)
		out_compact(c);
	if (c->outlen + len > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 1024;
		char *nb;

		out_compact(c);
		while (cap < c->outlen + len)
			cap *= 2;
		if (cap > c->outcap) {
			if (!(nb = realloc(c->out, cap))) {
				c->state = ST_LOGOUT;   /* cannot answer: end this one only */
				return;
			}
			c->out = nb;
			c->outcap = cap;
		}
	}
	memcpy(c->out + c->outlen, data, len);
	c->outlen += len;
}

void out_fmt(struct imapd_conn *c, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	out_raw(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void out_string(struct imapd_conn *c, const char *s, size_t len)
{
	int quotable = len < 1024;

	for (size_t i = 0; i < len && quotable; i++)
		quotable = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x80;
	if (!quotable) {
		out_fmt(c, "{%zu}\r\n", len);
		out_raw(c, s, len);
		return;
	}
	out_raw(c, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out_raw(c, "\\", 1);
		out_raw(c, s + i, 1);
	}
	out_raw(c, "\"", 1);
}

int out_file(struct imapd_conn *c, int fd, uint64_t off, uint64_t len, uint64_t skip,
	     uint64_t n)
{
	struct out_stream *s;
	char before;

	if (c->nstreams >= IMAPD_STREAMS_MAX)
		return -1;
	s = &c->streams[c->nstreams];
	memset(s, 0, sizeof *s);
	if ((s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -1;
	if (off > 0 && pread(fd, &before, 1, (off_t)off - 1) == 1)   /* a CR before the first LF? */
		s->prev_cr = before == '\r';
	s->at = c->out_base + c->outlen;
	s->off = off;
	s->end = off + len;
	s->from = skip;
	s->n = n;
	c->nstreams++;
	return 0;
}

/* Staging: the next converted bytes of stream s inside its window; 0 when
 * the window is complete. A file that shrank is padded with spaces, so
 * the literal keeps its announced length. */
static int stream_fill(struct out_stream *s)
{
	char raw[IMAPD_STREAM_CHUNK];
	ssize_t r;

	if (!s->buf && !(s->buf = malloc(2 * IMAPD_STREAM_CHUNK)))
		return -1;
	s->blen = s->boff = 0;
	while (s->blen == 0 && s->pos < s->from + s->n) {
		size_t want = s->end - s->off < sizeof raw ? (size_t)(s->end - s->off) : sizeof raw;

		r = want ? pread(s->fd, raw, want, (off_t)s->off) : 0;
		if (r <= 0) {   /* shrank (or ended early): pad */
			uint64_t left = s->from + s->n - (s->pos > s->from ? s->pos : s->from);
			size_t k = left < IMAPD_STREAM_CHUNK ? (size_t)left : IMAPD_STREAM_CHUNK;

			memset(s->buf, ' ', k);
			s->blen = k;
			s->pos += k;
			s->off = s->end;
			break;
		}
		s->off += (uint64_t)r;
		for (ssize_t k = 0; k < r; k++) {
			int lf = raw[k] == '\n' && !(k ? raw[k - 1] == '\r' : s->prev_cr);

			for (int j = lf ? 0 : 1; j < 2; j++) {   /* "\r\n" for a bare LF */
				if (s->pos >= s->from && s->pos < s->from + s->n)
					s->buf[s->blen++] = j == 0 ? '\r' : raw[k];
				s->pos++;
			}
		}
		s->prev_cr = raw[r - 1] == '\r';
	}
	return (int)(s->blen > 0);
}

static void stream_pop(struct imapd_conn *c)
{
	close(c->streams[0].fd);
	free(c->streams[0].buf);
	memmove(&c->streams[0], &c->streams[1], (size_t)(c->nstreams - 1) * sizeof c->streams[0]);
	c->nstreams--;
}

void out_nstring(struct imapd_conn *c, const char *s)
{
	if (!s)
		out_raw(c, "NIL", 3);
	else
		out_string(c, s, strlen(s));
}

/* ---- closing ----------------------------------------------------------------- */

/* Takes c off the connection list (the per-user and per-address counts). */
static void conn_unlink(struct imapd_conn *c)
{
	struct imapd *d = c->d;

	if (c->prev)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	d->nconns--;
}

void conn_release(struct imapd_conn *c)
{
	while (c->nstreams > 0)
		stream_pop(c);
	imap_index_free(&c->ix);   /* also after LOGOUT left SELECTED */
	imap_cmd_free(&c->cmd);
	free(c->out);
	free(c->tls);
	free(c);
}

static void conn_close(struct imapd_conn *c, const char *why)
{
	struct imapd *d = c->d;

	log_msg(LOG_INFO, &c->lf, "disconnect: %s", why);
	evl_timer_stop(&d->loop, &c->timer);
	evl_timer_stop(&d->loop, &c->kick);
	evl_io_del(&d->loop, &c->io);
	close(c->fd);
	conn_idle_stop(c);
	conn_unlink(c);
	if (c->busy)
		c->dead = 1;   /* a worker still checks its password: auth.c frees it */
	else
		conn_release(c);
}

void conn_close_all(struct imapd *d)
{
	while (d->conns)
		conn_close(d->conns, "shutting down");
}

static void arm(struct imapd_conn *c)
{
	int64_t ms = c->state == ST_NOAUTH ? IMAPD_TIMEOUT_AUTH_MS : IMAPD_TIMEOUT_IDLE_MS;

	if (c->tls && !tls_established(c->tls))
		ms = IMAPD_TIMEOUT_TLS_MS;
	if (c->state == ST_LOGOUT)
		ms = IMAPD_CLOSE_MS;
	c->timer_set = evl_now(&c->d->loop);
	c->timer_ms = ms;
	evl_timer_start(&c->d->loop, &c->timer, ms, 0);
}

static void on_timeout(struct evloop *l, struct evl_timer *t)
{
	struct imapd_conn *c = t->ctx;

	if (c->state == ST_LOGOUT) {
		conn_close(c, "closing timed out");
		return;
	}
	/* RFC 3501 5.4: an autologout timer; BYE first. */
	log_msg(LOG_INFO, &c->lf, "autologout: %lld ms without input (limit %lld ms, %s)",
		(long long)(evl_now(l) - c->timer_set), (long long)c->timer_ms,
		c->tls && !tls_established(c->tls) ? "TLS handshake" :
		c->state == ST_NOAUTH ? "before login" : "logged in");
	out_fmt(c, "* BYE Autologout; idle for too long\r\n");
	c->state = ST_LOGOUT;
	conn_io(l, &c->io, 0);
}

/* Also IDLE's notification (idle.c marked the connection). */
static void on_kick(struct evloop *l, struct evl_timer *t)
{
	struct imapd_conn *c = t->ctx;

	if (c->idling && c->idle_dirty) {
		c->idle_dirty = 0;
		if (mbox_update(c, 1) < 0)
			out_fmt(c, "* BYE Mailbox unavailable\r\n");
	}
	conn_io(l, &c->io, 0);
}

/* ---- input ------------------------------------------------------------------- */

static void one_line(struct imapd_conn *c, struct linebuf_line *ln, int toolong)
{
	int r;

	if (c->idling || c->auth_wait) {
		cmd_line_while_waiting(c, toolong ? "" : ln->data, toolong ? 0 : ln->len);
		return;
	}
	r = imap_cmd_line(&c->cmd, ln->data, ln->len, toolong);
	if (r == IMAP_CMD_LITERAL) {
		linebuf_raw(&c->lb, (size_t)imap_cmd_literal_left(&c->cmd));
		if (imap_cmd_sync(&c->cmd))
			out_fmt(c, "+ Ready for literal data\r\n");   /* RFC 3501 7.5 */
	} else if (r == IMAP_CMD_DONE) {
		size_t len;
		char *text = imap_cmd_text(&c->cmd, &len);

		cmd_run(c, text, len);
		if (!c->busy)   /* else a worker still reads it (APPEND): auth.c resets */
			imap_cmd_reset(&c->cmd);
	} else if (r == IMAP_CMD_FAILED) {
		out_fmt(c, "%s BAD %s\r\n", imap_cmd_tag(&c->cmd), imap_cmd_error(&c->cmd));
		imap_cmd_reset(&c->cmd);
		if (++c->bads >= IMAPD_BAD_MAX) {
			out_fmt(c, "* BYE Too many errors\r\n");
			c->state = ST_LOGOUT;
		}
	}
}

/* Runs what is buffered, as long as replies are being taken. */
static void process(struct imapd_conn *c)
{
	struct linebuf_line ln;
	int r;

	while (c->state != ST_LOGOUT && !c->starttls_pending && !c->busy && !c->nstreams &&
	       c->outlen - c->outoff < IMAPD_OUT_HIGH &&
	       (r = linebuf_next(&c->lb, &ln)) != LINEBUF_NEED) {
		if (r == LINEBUF_RAW)
			imap_cmd_raw(&c->cmd, ln.data, ln.len);
		else
			one_line(c, &ln, r == LINEBUF_TOOLONG);
	}
}

/* Bytes from the client. 1 progress, 0 none, -1 closed. */
static int pull(struct imapd_conn *c)
{
	int progress = 0;

	for (;;) {
		size_t room;
		void *p;
		ssize_t n;

		process(c);
		if (c->state == ST_LOGOUT || c->starttls_pending || c->busy || c->nstreams ||
		    c->outlen - c->outoff >= IMAPD_OUT_HIGH)
			return progress;
		p = linebuf_space(&c->lb, &room);
		if (room == 0)
			return progress;
		n = tls_conn_recv(c->tls, c->fd, p, room);
		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? progress : -1;
		linebuf_commit(&c->lb, (size_t)n);
		progress = 1;
		arm(c);
	}
}

/* Sends len bytes; 1 progress, 0 would block, -1 error. *sent: how many. */
static int send_some(struct imapd_conn *c, const char *p, size_t len, size_t *sent)
{
	ssize_t n = tls_conn_send(c->tls, c->fd, p, len);

	*sent = 0;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	*sent = (size_t)n;
	return n > 0;
}

/* Replies to the client: the buffer up to the next file section, then
 * that section from its staging. 1 progress, 0 none, -1 error. */
static int push(struct imapd_conn *c)
{
	struct out_stream *s = c->nstreams ? &c->streams[0] : NULL;
	size_t memend = c->outlen, sent;
	int r;

	if (s && s->at - c->out_base < memend)
		memend = (size_t)(s->at - c->out_base);
	if (c->outoff < memend) {
		r = send_some(c, c->out + c->outoff, memend - c->outoff, &sent);
		c->outoff += sent;
		if (c->outoff == c->outlen)
			out_compact(c);
		return r;
	}
	if (!s)
		return 0;
	if (s->boff == s->blen && (r = stream_fill(s)) <= 0) {
		if (r < 0)
			return -1;
		stream_pop(c);
		return 1;
	}
	r = send_some(c, s->buf + s->boff, s->blen - s->boff, &sent);
	s->boff += sent;
	return r;
}

void conn_resume(struct imapd_conn *c)
{
	arm(c);
	conn_io(&c->d->loop, &c->io, 0);
}

void conn_start_tls(struct imapd_conn *c)
{
	c->starttls_pending = 1;
}

static int start_tls(struct imapd_conn *c)
{
	c->tls = malloc(TLS_CONN_SIZE(TLS_BUF_MONO));
	if (!c->tls || tls_server_start_buf(c->tls, &c->d->tls,
					    (unsigned char *)c->tls + TLS_CONN_BASE_SIZE,
					    TLS_BUF_MONO) < 0) {
		log_msg(LOG_ERR, &c->lf, "TLS start failed");
		return -1;
	}
	arm(c);
	return 0;
}

/* The handshake just completed (in either pump of step): the greeting of
 * an implicit-TLS connection is waiting, and the TLS deadline gives way to
 * the login one. Returns 1 then (progress: another round pushes the
 * greeting), else 0. */
static int tls_came_up(struct imapd_conn *c, int *was)
{
	if (!c->tls || *was || !tls_established(c->tls))
		return 0;
	*was = 1;
	log_msg(LOG_INFO, &c->lf, "TLS established");
	arm(c);
	return 1;
}

/* One round of moving bytes; -1 to close. */
static int step(struct imapd_conn *c, int *want)
{
	int progress = 0, r, was = c->tls && tls_established(c->tls);

	if (c->tls && (*want = tls_pump(c->tls, c->fd)) < 0)
		return -1;
	progress |= tls_came_up(c, &was);
	if ((r = pull(c)) < 0)
		return -1;
	progress |= r;
	if ((r = push(c)) < 0)
		return -1;
	progress |= r;
	if (c->starttls_pending && !out_pending(c)) {
		/* The OK left in clear: drop what was pipelined after it. */
		size_t dropped = linebuf_discard(&c->lb);

		if (dropped)
			log_msg(LOG_NOTICE, &c->lf, "STARTTLS: dropped %zu bytes sent in clear", dropped);
		c->starttls_pending = 0;
		if (start_tls(c) < 0)
			return -1;
		was = 0;
		progress = 1;
	}
	if (c->tls && (*want = tls_pump(c->tls, c->fd)) < 0)
		return -1;
	/* The client's Finished may be read only here: without this the
	 * greeting waited for the next event, i.e. the TLS timeout. */
	progress |= tls_came_up(c, &was);
	return progress;
}

static int finish_close(struct imapd_conn *c, int want)
{
	if (c->state != ST_LOGOUT || out_pending(c))
		return 0;
	return tls_conn_close_ready(c->tls, c->fd, &c->tls_closing, want);
}

static void conn_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct imapd_conn *c = io->ctx;
	unsigned interest;
	int want = 0, r, rounds = 0;

	(void)l;
	(void)events;
	while ((r = step(c, &want)) >= 0 && ++rounds < CONN_ROUNDS_MAX) {
		if (r > 0)
			continue;
		if (!(c->tls && want == 0 && (r = pull(c)) > 0))
			break;
	}
	if (rounds >= CONN_ROUNDS_MAX)
		evl_timer_start(&c->d->loop, &c->kick, 0, 0);
	if (r < 0) {
		conn_close(c, c->state == ST_LOGOUT ? "closed"
			   : c->tls && tls_error(c->tls)[0] ? tls_error(c->tls) : "connection lost");
		return;
	}
	if (finish_close(c, want)) {
		conn_close(c, "closed");
		return;
	}
	if (c->tls)
		interest = want > 0 ? (unsigned)want : EVL_READ;
	else
		interest = EVL_READ | (out_pending(c) ? EVL_WRITE : 0);
	if (evl_io_set(&c->d->loop, &c->io, interest) < 0)
		conn_close(c, "event loop full");
	else if (c->state == ST_LOGOUT)
		arm(c);
}

/* ---- accepting ----------------------------------------------------------------- */

static void peer_addr(struct imapd_conn *c, const struct sockaddr_storage *sa)
{
	const void *a = sa->ss_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if (!inet_ntop(sa->ss_family, a, c->addr, sizeof c->addr))
		strcpy(c->addr, "unknown");
}

static int addr_count(struct imapd *d, const char *addr)
{
	int n = 0;

	for (struct imapd_conn *o = d->conns; o; o = o->next)
		n += strcmp(o->addr, addr) == 0;
	return n;
}

void conn_accept(struct imapd *d, struct imapd_listener *l)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	int fd = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct imapd_conn *c;

	if (fd < 0)
		return;
	/* Each reply leaves whole (out_* buffers a command's answer): Nagle
	 * would hold a reply's last segment for the client's delayed ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (d->nconns >= IMAPD_CONNS_MAX || !(c = calloc(1, sizeof *c))) {
		close(fd);
		return;
	}
	peer_addr(c, &sa);
	if (addr_count(d, c->addr) >= IMAPD_CONNS_PER_ADDR) {
		static const char busy[] = "* BYE Too many connections from your address\r\n";

		if (l->kind == IMAPD_PLAIN)
			(void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		free(c);
		return;
	}
	d->nconns++;
	c->d = d;
	c->fd = fd;
	c->kind = l->kind;
	c->next = d->conns;
	if (d->conns)
		d->conns->prev = c;
	d->conns = c;
	linebuf_init(&c->lb, c->inbuf, sizeof c->inbuf, IMAP_LINE_MAX);
	imap_cmd_init(&c->cmd);
	log_fields_init(&c->lf);
	log_set_peer(&c->lf, (struct sockaddr *)&sa, salen);
	evl_io_init(&c->io, fd, conn_io, c);
	evl_timer_init(&c->timer, on_timeout, c);
	evl_timer_init(&c->kick, on_kick, c);
	log_msg(LOG_INFO, &c->lf, "connect port=%s", l->kind == IMAPD_IMAPS ? "imaps" : "imap");
	imapd_refresh_users(d);
	/* 993: TLS from the first byte (RFC 8314); the greeting waits until then. */
	if (l->kind == IMAPD_IMAPS && start_tls(c) < 0) {
		conn_close(c, "TLS unavailable");
		return;
	}
	cmd_greeting(c);
	arm(c);
	conn_io(&d->loop, &c->io, 0);
}
