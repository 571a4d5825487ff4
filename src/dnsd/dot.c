/*
 * dot.c - DNS-over-TLS to the upstreams (RFC 7858), for [dns] transport
 * tls: one TLS connection per upstream, opened on the first query and
 * kept (RFC 7858 3.4: reuse, several queries pipelined, answers in any
 * order, matched by ID and question), closed after DOT_IDLE_MS without a
 * query in flight.
 *
 * Fail closed: the server is verified inside the handshake, against the CA
 * bundle and tls-name and/or the tls-pin (tls.h); tls_write sends nothing
 * before that succeeded, so a server that fails verification never sees a
 * query. A failed or lost connection hands its queries back to upstream.c
 * for their next try (another TLS connection, never plain DNS).
 *
 * Each query on a connection gets a random ID whose low bits pick a free
 * slot of the connection's table, so a reply finds its query in one step.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dnsd.h"

#define DOT_SLOTS 1024			/* queries in flight per connection (> DNSD_PENDING_MAX) */
#define DOT_HANDSHAKE_MS 4000		/* connect + TLS handshake */
#define DOT_IDLE_MS 30000		/* an idle connection is closed */
#define DOT_OUT_MAX (DNSD_PENDING_MAX * (2 + 300))	/* queued query bytes */
#define DOT_ID_TRIES 64			/* random IDs tried for a free slot */

enum dot_state { DOT_CLOSED, DOT_CONNECTING, DOT_TLS };

struct dot_conn {
	struct dnsd *d;
	int up;
	enum dot_state state;
	int fd;
	struct tls_conn *tls;
	struct evl_io io;
	struct evl_timer timer;		/* handshake deadline, then idle */
	struct pending *slot[DOT_SLOTS];
	int nq;
	int verified;			/* the handshake completed and was logged */
	uint8_t *out;			/* queries not yet taken by TLS */
	size_t outlen;
	size_t inlen;
	uint8_t in[2 + DNS_MSG_MAX];	/* one framed answer (RFC 1035 4.2.2) */
};

static void dot_event(struct dot_conn *c);

/* Hands every query of c back for its next try and closes c. */
static void conn_fail(struct dot_conn *c, const char *why)
{
	if (why)
		log_msg(LOG_WARNING, NULL, "DNS-over-TLS upstream %d: %s", c->up, why);
	if (c->fd >= 0) {
		evl_io_del(&c->d->loop, &c->io);
		close(c->fd);
		c->fd = -1;
	}
	evl_timer_stop(&c->d->loop, &c->timer);
	c->state = DOT_CLOSED;
	c->outlen = c->inlen = 0;
	for (int i = 0; i < DOT_SLOTS && c->nq; i++)
		if (c->slot[i]) {
			struct pending *p = c->slot[i];
			c->slot[i] = NULL;
			c->nq--;
			upstream_dot_failed(p);
		}
	c->nq = 0;
}

static void on_timer(struct evloop *l, struct evl_timer *t)
{
	struct dot_conn *c = t->ctx;
	(void)l;
	conn_fail(c, c->state == DOT_TLS && tls_established(c->tls) ? NULL
		: "connection or TLS handshake timed out");
}

static void on_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct dot_conn *c = io->ctx;
	(void)l;
	if (c->state == DOT_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		if (!(events & (EVL_WRITE | EVL_ERR | EVL_HUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			conn_fail(c, strerror(err));
			return;
		}
		c->state = DOT_TLS;
	}
	dot_event(c);
}

static int conn_open(struct dot_conn *c)
{
	struct dnsd *d = c->d;
	if (!c->tls && !(c->tls = malloc(sizeof *c->tls)))
		return -1;
	if (!c->out && !(c->out = malloc(DOT_OUT_MAX)))
		return -1;
	const char *name = d->cfg->dns.tls_name[0] ? d->cfg->dns.tls_name : NULL;
	if (tls_client_start(c->tls, &d->tls_cfg, name) < 0) {
		log_msg(LOG_ERR, NULL, "DNS-over-TLS: %s", tls_error(c->tls));
		return -1;
	}
	c->fd = socket(d->up[c->up].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	if (connect(c->fd, (struct sockaddr *)&d->up[c->up], d->uplen[c->up]) < 0 &&
	    errno != EINPROGRESS) {
		conn_fail(c, strerror(errno));
		return -1;
	}
	c->state = DOT_CONNECTING;
	c->verified = 0;
	c->inlen = c->outlen = 0;
	evl_io_init(&c->io, c->fd, on_io, c);
	evl_timer_init(&c->timer, on_timer, c);
	if (evl_io_set(&d->loop, &c->io, EVL_WRITE) < 0)
		return -1;
	return evl_timer_start(&d->loop, &c->timer, DOT_HANDSHAKE_MS, 0);
}

/* ---- answers ------------------------------------------------------------------ */

/* Passes one framed answer to the query with its ID. */
static void take_answer(struct dot_conn *c, const uint8_t *msg, size_t len)
{
	struct dns_header h;
	if (dns_read_header(msg, len, &h) < 0)
		return;
	struct pending *p = c->slot[h.id % DOT_SLOTS];
	if (!p || upstream_pending_id(p) != h.id) {
		c->d->spoofed++;
		log_msg(LOG_NOTICE, NULL, "upstream reply ignored: DoT answer to no query of ours");
		return;
	}
	upstream_dot_reply(p, msg, len);	/* calls dot_forget when it takes it */
}

/* Consumes every whole answer in c->in. */
static void take_answers(struct dot_conn *c)
{
	while (c->inlen >= 2) {
		size_t n = (size_t)c->in[0] << 8 | c->in[1];
		if (c->inlen < 2 + n)
			return;
		take_answer(c, c->in + 2, n);
		if (c->state == DOT_CLOSED)
			return;
		memmove(c->in, c->in + 2 + n, c->inlen - 2 - n);
		c->inlen -= 2 + n;
	}
}

/* Reads what TLS decrypted. Returns 0, or -1 when the stream ended. */
static int read_plain(struct dot_conn *c)
{
	for (;;) {
		if (c->inlen == sizeof c->in)
			return -1;	/* cannot happen: a frame fits */
		ssize_t n = tls_read(c->tls, c->in + c->inlen, sizeof c->in - c->inlen);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		c->inlen += (size_t)n;
		take_answers(c);
		if (c->state == DOT_CLOSED)
			return 0;
	}
}

/* Gives queued queries to TLS. Returns 1 when some were taken. */
static int write_plain(struct dot_conn *c)
{
	if (!c->outlen || !tls_established(c->tls))
		return 0;
	ssize_t n = tls_write(c->tls, c->out, c->outlen);
	if (n <= 0)
		return 0;
	memmove(c->out, c->out + n, c->outlen - (size_t)n);
	c->outlen -= (size_t)n;
	return 1;
}

static void arm_idle(struct dot_conn *c)
{
	if (c->nq == 0 && tls_established(c->tls) && !evl_timer_armed(&c->timer))
		evl_timer_start(&c->d->loop, &c->timer, DOT_IDLE_MS, 0);
	else if (c->nq && tls_established(c->tls))
		evl_timer_stop(&c->d->loop, &c->timer);
}

/* The tls.h event-loop contract: pump, read everything, write, again. */
static void dot_event(struct dot_conn *c)
{
	for (;;) {
		int want = tls_pump(c->tls, c->fd);
		if (read_plain(c) < 0 || want < 0) {
			const char *e = tls_error(c->tls);
			if (c->state != DOT_CLOSED)
				conn_fail(c, *e ? e : c->nq ? "connection closed by the server" : NULL);
			return;
		}
		if (c->state == DOT_CLOSED)
			return;
		if (!c->verified && tls_established(c->tls)) {
			c->verified = 1;
			log_msg(LOG_INFO, NULL, "DNS-over-TLS upstream %d: connected, server verified",
				c->up);
		}
		if (write_plain(c))
			continue;
		evl_io_set(&c->d->loop, &c->io, (want & POLLIN ? EVL_READ : 0) |
			(want & POLLOUT ? EVL_WRITE : 0) | EVL_READ);
		arm_idle(c);
		return;
	}
}

/* ---- the interface for upstream.c ----------------------------------------------- */

static struct dot_conn *conn_of(struct dnsd *d, int up)
{
	if (!d->dot[up]) {
		struct dot_conn *c = calloc(1, sizeof *c);
		if (!c)
			return NULL;
		c->d = d;
		c->up = up;
		c->fd = -1;
		d->dot[up] = c;
	}
	return d->dot[up];
}

int dot_claim(struct dnsd *d, int up, struct pending *p, uint16_t *id)
{
	struct dot_conn *c = conn_of(d, up);
	if (!c || c->nq >= DOT_SLOTS / 2)
		return -1;
	for (int i = 0; i < DOT_ID_TRIES; i++) {
		uint16_t r = upstream_random16();
		if (!c->slot[r % DOT_SLOTS]) {
			c->slot[r % DOT_SLOTS] = p;
			c->nq++;
			*id = r;
			return 0;
		}
	}
	return -1;
}

void dot_forget(struct dnsd *d, int up, uint16_t id, const struct pending *p)
{
	struct dot_conn *c = d->dot[up];
	if (c && c->slot[id % DOT_SLOTS] == p) {
		c->slot[id % DOT_SLOTS] = NULL;
		c->nq--;
		if (c->state != DOT_CLOSED)
			arm_idle(c);
	}
}

int dot_send(struct dnsd *d, int up, const uint8_t *q, size_t len)
{
	struct dot_conn *c = d->dot[up];
	if (c->outlen + len > DOT_OUT_MAX)
		return -1;
	if (c->state == DOT_CLOSED && conn_open(c) < 0)
		return -1;
	memcpy(c->out + c->outlen, q, len);
	c->outlen += len;
	if (c->state == DOT_TLS)
		dot_event(c);
	return 0;
}

void dot_close_all(struct dnsd *d)
{
	for (int i = 0; i < CONFIG_ADDRS_MAX; i++)
		if (d->dot[i]) {
			conn_fail(d->dot[i], NULL);
			free(d->dot[i]->tls);
			free(d->dot[i]->out);
			free(d->dot[i]);
			d->dot[i] = NULL;
		}
}

int dot_configure(struct dnsd *d, const struct config *cfg, const char *ca_path)
{
	char err[256];
	struct pem_anchors ca = { 0 };
	dot_close_all(d);	/* connections point at the old settings */
	if (cfg->dns.transport == CONFIG_DNS_TLS && cfg->dns.tls_name[0] &&
	    pem_anchors_load(&ca, ca_path, err, sizeof err) < 0) {
		log_msg(LOG_ERR, NULL, "DNS-over-TLS CA bundle %s: %s", ca_path, err);
		return -1;
	}
	pem_anchors_free(&d->tls_ca);
	d->tls_ca = ca;
	memset(&d->tls_cfg, 0, sizeof d->tls_cfg);
	d->tls_cfg.anchors = ca.count ? ca.ta : NULL;
	d->tls_cfg.anchor_count = ca.count;
	static const unsigned char unset[32];
	d->tls_cfg.have_pin = memcmp(cfg->dns.tls_pin.sha256, unset, 32) != 0;
	memcpy(d->tls_cfg.pin, cfg->dns.tls_pin.sha256, 32);
	return 0;
}
