/*
 * server.c - dnsd's clients: queries over UDP and TCP (RFC 1035 4.2,
 * RFC 7766), the per-client rate limit, the dispatch (internal zone,
 * cache, upstream) and the replies, truncated when UDP cannot carry them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dnsd.h"

#define SERVER_BACKLOG 64
#define SERVER_TCP_OUT_MAX (4 * (DNS_MSG_MAX + 2))	/* queued reply bytes per TCP client */
#define SERVER_PIPELINE_MAX 16	/* answers a TCP client may be owed at once */

static void tcp_close(struct dnsd *d, struct tcp_client *c);

/* ---- replies ---------------------------------------------------------------- */

static size_t write_reply(uint8_t *out, size_t cap, const struct query *qr,
	const struct reply *r, int truncate)
{
	struct dns_wbuf w;
	unsigned flags = DNS_F_QR | DNS_F_RA | (qr->flags & (DNS_F_RD | DNS_F_CD | DNS_OPCODE_MASK)) |
		(r->aa ? DNS_F_AA : 0) | (truncate ? DNS_F_TC : 0) | (unsigned)r->rcode;
	struct dns_header h = { qr->id, (uint16_t)flags, 1,
		(uint16_t)(truncate ? 0 : r->ancount), (uint16_t)(truncate ? 0 : r->nscount),
		(uint16_t)(qr->edns ? 1 : 0) };
	dns_wbuf_init(&w, out, cap);
	dns_put_header(&w, &h);
	dns_put_question(&w, &qr->q);
	if (!truncate && r->ancount + r->nscount) {
		if (r->ttl == ~0u)
			dns_put_bytes(&w, r->rr, r->len);
		else if (dns_rrs_put(&w, r->rr, r->len, r->ancount + r->nscount, r->ttl) < 0)
			return 0;
	}
	if (qr->edns)
		dns_put_opt(&w, DNS_EDNS_UDP);
	return w.overflow ? 0 : w.len;
}

static void tcp_queue(struct dnsd *d, struct tcp_client *c, const uint8_t *msg, size_t len)
{
	if (c->outlen + 2 + len > SERVER_TCP_OUT_MAX) {
		tcp_close(d, c);
		return;
	}
	if (c->outlen + 2 + len > c->outcap) {
		size_t cap = c->outlen + 2 + len + 512;
		uint8_t *p = realloc(c->out, cap);
		if (!p) {
			tcp_close(d, c);
			return;
		}
		c->out = p;
		c->outcap = cap;
	}
	c->out[c->outlen] = (uint8_t)(len >> 8);
	c->out[c->outlen + 1] = (uint8_t)len;
	memcpy(c->out + c->outlen + 2, msg, len);
	c->outlen += 2 + len;
	evl_io_set(&d->loop, &c->io, EVL_READ | EVL_WRITE);
}

/* Sends the queued UDP replies, in order, with as few sendmmsg calls as
 * the kernel allows. A reply the kernel refuses (an unreachable client) is
 * dropped as a failed sendto would be, and the rest still go. */
static void udp_flush(struct dnsd *d)
{
	struct mmsghdr mm[DNSD_UDP_VEC];
	struct iovec iov[DNSD_UDP_VEC];
	unsigned done = 0;

	for (unsigned i = 0; i < d->txn; i++) {
		iov[i] = (struct iovec){ .iov_base = d->tx[i].msg, .iov_len = d->tx[i].len };
		mm[i] = (struct mmsghdr){ .msg_hdr = {
			.msg_name = &d->tx[i].addr, .msg_namelen = d->tx[i].alen,
			.msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	while (done < d->txn) {
		int k = sendmmsg(d->udp_fd, mm + done, d->txn - done, MSG_DONTWAIT);
		done += k > 0 ? (unsigned)k : 1;
	}
	d->txn = 0;
}

/* A UDP reply of at most cap bytes, queued for udp_flush. */
static void udp_queue(struct dnsd *d, const struct query *qr, const struct reply *r, size_t cap)
{
	struct udp_tx *tx;

	if (d->txn == DNSD_UDP_VEC)
		udp_flush(d);
	tx = &d->tx[d->txn];
	tx->len = write_reply(tx->msg, cap, qr, r, 0);
	if (tx->len == 0)
		tx->len = write_reply(tx->msg, cap, qr, r, 1);
	if (tx->len == 0)
		return;
	memcpy(&tx->addr, &qr->from.addr, qr->from.alen);
	tx->alen = qr->from.alen;
	d->txn++;
}

void server_reply(struct dnsd *d, const struct query *qr, const struct reply *r)
{
	if (qr->from.tcp >= 0) {
		if (!server_client_alive(d, &qr->from))
			return;
		size_t n = write_reply(d->buf, DNS_MSG_MAX, qr, r, 0);
		if (n == 0)	/* too big even for TCP: say so rather than lie */
			n = write_reply(d->buf, DNS_MSG_MAX, qr, &(struct reply){ .rcode = DNS_R_SERVFAIL }, 0);
		tcp_queue(d, &d->tcp[qr->from.tcp], d->buf, n);
		return;
	}
	/* RFC 6891 6.2.5: the smaller of the client's size and ours; 512
	 * without EDNS. RFC 2181 9: what does not fit is dropped whole and TC
	 * set, and the client retries over TCP. */
	size_t cap = qr->edns ? (qr->udp_size < DNS_EDNS_UDP ? qr->udp_size : DNS_EDNS_UDP)
		: DNS_UDP_PLAIN;
	if (d->tx_batching) {
		udp_queue(d, qr, r, cap);
		return;
	}
	size_t n = write_reply(d->buf, cap, qr, r, 0);
	if (n == 0)
		n = write_reply(d->buf, cap, qr, r, 1);
	if (n)
		(void)sendto(d->udp_fd, d->buf, n, MSG_DONTWAIT,
			(const struct sockaddr *)&qr->from.addr, qr->from.alen);
}

static void reply_rcode(struct dnsd *d, const struct query *qr, int rcode)
{
	struct reply r = { .rcode = rcode, .ttl = ~0u };
	server_reply(d, qr, &r);
}

/* ---- rate limit ------------------------------------------------------------- */

static const uint8_t *addr_bytes(const struct sockaddr_storage *ss, size_t *n)
{
	if (ss->ss_family == AF_INET6) {
		*n = 16;
		return ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
	}
	*n = 4;
	return (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
}

/* A token bucket per client address, rate-limit tokens a second, a burst
 * of one second's worth. Slots are hashed (keyed); a client that lands on
 * another's slot takes it over with a full bucket. */
static int rate_ok(struct dnsd *d, const struct sockaddr_storage *ss)
{
	if (d->rate_limit_opt == 0)
		return 1;
	size_t n;
	const uint8_t *a = addr_bytes(ss, &n);
	uint8_t key[16] = { 0 };
	memcpy(key, a, n);
	uint64_t h = d->rate_seed;
	for (size_t i = 0; i < 16; i++)
		h = (h ^ key[i]) * 0x100000001b3u;
	struct rate_slot *s = &d->rate[(h ^ h >> 32) % DNSD_RATE_SLOTS];
	double rate = d->rate_limit_opt >= 0 ? d->rate_limit_opt : d->cfg->dns.rate_limit;
	int64_t now = evl_now(&d->loop);
	if (memcmp(s->addr, key, 16) != 0 || s->last_ms == 0) {
		memcpy(s->addr, key, 16);
		s->tokens = rate;
		s->last_ms = now;
	}
	s->tokens += (double)(now - s->last_ms) * rate / 1000.0;
	if (s->tokens > rate)
		s->tokens = rate;
	s->last_ms = now;
	if (s->tokens < 1.0)
		return 0;
	s->tokens -= 1.0;
	return 1;
}

/* ---- queries ------------------------------------------------------------------ */

/* Parses a client's query. Returns 0, or an rcode to answer with (the
 * header and question were readable), or -1 (drop it: a response, or
 * bytes we cannot echo a question from). */
static int parse_query(const uint8_t *msg, size_t len, struct query *qr)
{
	struct dns_header h;
	size_t sec[4];
	if (dns_read_header(msg, len, &h) < 0 || (h.flags & DNS_F_QR))
		return -1;		/* never answer a response: no loops */
	qr->id = h.id;
	qr->flags = h.flags;
	qr->edns = 0;
	qr->udp_size = DNS_UDP_PLAIN;
	if (h.qdcount != 1 || dns_read_question(msg, len, DNS_HEADER_LEN, &qr->q) < 0)
		return -1;
	if (DNS_OPCODE(h.flags) != 0)
		return DNS_R_NOTIMP;
	if (h.ancount || h.nscount || dns_parse(msg, len, &h, sec) < 0)
		return DNS_R_FORMERR;
	int opt = dns_find_opt(msg, len, sec[3], h.arcount, &qr->udp_size);
	qr->edns = opt == 1;
	if (opt < 0)
		return DNS_R_FORMERR;
	if (qr->q.qclass != DNS_C_IN)
		return DNS_R_REFUSED;
	return 0;
}

static void serve_query(struct dnsd *d, const uint8_t *msg, size_t len, const struct client *from)
{
	struct query qr;
	struct reply r;
	struct dns_cache_hit hit;
	qr.from = *from;
	int rc = parse_query(msg, len, &qr);
	if (rc < 0)
		return;
	if (rc > 0) {
		reply_rcode(d, &qr, rc);
		return;
	}
	if (zone_answer(&d->zone, &qr.q, &r, d->ans.rr, sizeof d->ans.rr)) {
		server_reply(d, &qr, &r);
		return;
	}
	int64_t now_s = evl_now(&d->loop) / 1000;
	if (dns_cache_get(d->cache, &qr.q, now_s, &hit)) {
		r = (struct reply){ .rcode = hit.rcode, .ancount = hit.ancount,
			.nscount = hit.nscount, .ttl = hit.ttl_left, .rr = hit.rr, .len = hit.len };
		server_reply(d, &qr, &r);
		return;
	}
	upstream_resolve(d, &qr);
}

/* ---- UDP ------------------------------------------------------------------------ */

/* Reads up to DNSD_UDP_VEC queries with one recvmmsg and serves them.
 * Returns how many were read (0: none waiting). A truncated datagram
 * (larger than any query we take) is dropped. */
static int udp_read_some(struct dnsd *d)
{
	static uint8_t msg[DNSD_UDP_VEC][DNSD_QUERY_MAX];
	struct client c[DNSD_UDP_VEC];
	struct mmsghdr mm[DNSD_UDP_VEC];
	struct iovec iov[DNSD_UDP_VEC];
	int n;

	for (int i = 0; i < DNSD_UDP_VEC; i++) {
		c[i] = (struct client){ .tcp = -1, .alen = sizeof c[i].addr };
		iov[i] = (struct iovec){ .iov_base = msg[i], .iov_len = sizeof msg[i] };
		mm[i] = (struct mmsghdr){ .msg_hdr = {
			.msg_name = &c[i].addr, .msg_namelen = sizeof c[i].addr,
			.msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	n = recvmmsg(d->udp_fd, mm, DNSD_UDP_VEC, MSG_DONTWAIT, NULL);
	for (int i = 0; i < n; i++) {
		c[i].alen = mm[i].msg_hdr.msg_namelen;
		if ((mm[i].msg_hdr.msg_flags & MSG_TRUNC) || !rate_ok(d, &c[i].addr))
			continue;
		serve_query(d, msg[i], mm[i].msg_len, &c[i]);
	}
	return n < 0 ? 0 : n;
}

static void on_udp(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct dnsd *d = io->ctx;
	(void)l;
	(void)events;
	d->tx_batching = 1;
	for (int got = 0; got < DNSD_UDP_BATCH;) {
		int n = udp_read_some(d);
		if (n <= 0)
			break;
		got += n;
	}
	udp_flush(d);
	d->tx_batching = 0;
}

/* ---- TCP ------------------------------------------------------------------------ */

int server_client_alive(const struct dnsd *d, const struct client *c)
{
	return c->tcp < 0 || (d->tcp[c->tcp].fd >= 0 && d->tcp[c->tcp].gen == c->gen);
}

void server_tcp_done_waiting(struct dnsd *d, const struct client *c)
{
	if (c->tcp >= 0 && server_client_alive(d, c) && d->tcp[c->tcp].waiting > 0)
		d->tcp[c->tcp].waiting--;
}

static void tcp_close(struct dnsd *d, struct tcp_client *c)
{
	evl_io_del(&d->loop, &c->io);
	evl_timer_stop(&d->loop, &c->idle);
	close(c->fd);
	c->fd = -1;
	c->gen++;
	free(c->out);
	c->out = NULL;
	c->outlen = c->outcap = 0;
	c->inlen = 0;
	c->waiting = 0;
}

/* Serves every whole query in the input buffer. */
static void tcp_queries(struct dnsd *d, struct tcp_client *c)
{
	while (c->fd >= 0 && c->inlen >= 2 && c->waiting < SERVER_PIPELINE_MAX) {
		size_t n = (size_t)c->in[0] << 8 | c->in[1];
		if (n + 2 > sizeof c->in) {
			tcp_close(d, c);
			return;
		}
		if (c->inlen < n + 2)
			return;
		struct client from = { .tcp = (int)(c - d->tcp), .gen = c->gen, .alen = c->alen };
		memcpy(&from.addr, &c->addr, sizeof c->addr);
		uint32_t gen = c->gen;
		if (rate_ok(d, &c->addr))
			serve_query(d, c->in + 2, n, &from);
		if (c->gen != gen)
			return;
		memmove(c->in, c->in + 2 + n, c->inlen - 2 - n);
		c->inlen -= 2 + n;
	}
}

static int tcp_flush(struct tcp_client *c)
{
	while (c->outlen) {
		ssize_t n = send(c->fd, c->out, c->outlen, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		memmove(c->out, c->out + n, c->outlen - (size_t)n);
		c->outlen -= (size_t)n;
	}
	return 0;
}

static void tcp_event(struct dnsd *d, struct tcp_client *c, unsigned events)
{
	if ((events & EVL_WRITE) && tcp_flush(c) < 0) {
		tcp_close(d, c);
		return;
	}
	if (events & (EVL_READ | EVL_HUP | EVL_ERR)) {
		ssize_t n = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			tcp_close(d, c);
			return;
		}
		if (n > 0) {
			c->inlen += (size_t)n;
			evl_timer_start(&d->loop, &c->idle, DNSD_TCP_IDLE_MS, 0);
			tcp_queries(d, c);
		}
	}
	if (c->fd >= 0 && tcp_flush(c) < 0) {
		tcp_close(d, c);
		return;
	}
	if (c->fd >= 0)
		evl_io_set(&d->loop, &c->io, EVL_READ | (c->outlen ? EVL_WRITE : 0));
}

static void on_tcp_client(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct tcp_client *c = io->ctx;
	(void)l;
	tcp_event(c->d, c, events);
	/* input held back by the pipeline limit is served once answers left */
	if (c->fd >= 0 && c->inlen >= 2 && c->waiting < SERVER_PIPELINE_MAX)
		tcp_queries(c->d, c);
}

static void on_tcp_idle(struct evloop *l, struct evl_timer *t)
{
	struct tcp_client *c = t->ctx;
	(void)l;
	tcp_close(c->d, c);
}

static void on_accept(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct dnsd *d = io->ctx;
	(void)l;
	(void)events;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t alen = sizeof ss;
		int fd = accept4(d->tcp_fd, (struct sockaddr *)&ss, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct tcp_client *c = NULL;
		for (int i = 0; i < DNSD_TCP_MAX && !c; i++)
			if (d->tcp[i].fd < 0)
				c = &d->tcp[i];
		if (!c) {	/* full: the client retries or uses UDP */
			close(fd);
			continue;
		}
		c->fd = fd;
		c->addr = ss;
		c->alen = alen;
		evl_io_init(&c->io, fd, on_tcp_client, c);
		evl_timer_init(&c->idle, on_tcp_idle, c);
		if (evl_io_set(&d->loop, &c->io, EVL_READ) < 0 ||
		    evl_timer_start(&d->loop, &c->idle, DNSD_TCP_IDLE_MS, 0) < 0)
			tcp_close(d, c);
	}
}

/* ---- sockets ----------------------------------------------------------------------- */

static int open_socket(struct dnsd *d, int type)
{
	int one = 1;
	int fd = socket(d->listen.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&d->listen, d->listen_len) < 0 ||
	    (type == SOCK_STREAM && listen(fd, SERVER_BACKLOG) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int server_open(struct dnsd *d)
{
	if (getrandom(&d->rate_seed, sizeof d->rate_seed, GRND_NONBLOCK) != sizeof d->rate_seed)
		d->rate_seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15u;
	if (getrandom(&d->hash_seed, sizeof d->hash_seed, GRND_NONBLOCK) != sizeof d->hash_seed)
		d->hash_seed = d->rate_seed * 0xc2b2ae3d27d4eb4fu;
	for (int i = 0; i < DNSD_TCP_MAX; i++) {
		d->tcp[i].fd = -1;
		d->tcp[i].d = d;
	}
	d->udp_fd = open_socket(d, SOCK_DGRAM);
	if (d->udp_fd < 0)
		return -1;
	d->tcp_fd = open_socket(d, SOCK_STREAM);
	if (d->tcp_fd < 0)
		return -1;
	evl_io_init(&d->udp_io, d->udp_fd, on_udp, d);
	evl_io_init(&d->tcp_io, d->tcp_fd, on_accept, d);
	if (evl_io_set(&d->loop, &d->udp_io, EVL_READ) < 0 ||
	    evl_io_set(&d->loop, &d->tcp_io, EVL_READ) < 0)
		return -1;
	return 0;
}

void server_close(struct dnsd *d)
{
	for (int i = 0; i < DNSD_TCP_MAX; i++)
		if (d->tcp[i].fd >= 0)
			tcp_close(d, &d->tcp[i]);
	if (d->udp_fd >= 0) {
		evl_io_del(&d->loop, &d->udp_io);
		close(d->udp_fd);
	}
	if (d->tcp_fd >= 0) {
		evl_io_del(&d->loop, &d->tcp_io);
		close(d->tcp_fd);
	}
}
