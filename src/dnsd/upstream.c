/*
 * upstream.c - forwarding to the upstream resolvers, built against
 * spoofing (DESIGN.md "DNS spoofing"):
 *
 * - each try of a question gets a fresh socket on a random source port and
 *   a random ID (getrandom), and its name in random letter case (the
 *   "0x20" trick, draft-vixie-dnsext-dns0x20): a blind spoofer must guess
 *   port, ID and case;
 * - a reply counts only when it comes from the upstream's address and port
 *   and carries our ID and our question exactly (name byte for byte, so
 *   the case too, type, class); anything else is ignored and we keep
 *   listening until the try times out;
 * - one question is asked once at a time: clients asking the same question
 *   meanwhile wait on the same upstream query (no birthday attack);
 * - a truncated reply is asked again over TCP (RFC 7766 5);
 * - only the question's answer and CNAME chain reach the cache
 *   (dns_cache_extract), minus private addresses for public names
 *   (rebinding, zone_rebind_blocked).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "dnsd.h"

#define UP_PORT_MIN 1024	/* random source ports: 1024-65535 */
#define UP_PORT_TRIES 8		/* random ports tried before the kernel picks */
#define UP_RANDOM_POOL 256	/* random bytes fetched at once */
#define UP_QUERY_MAX (DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11)

struct pending {
	struct dnsd *d;
	struct pending *next;		/* in its hash bucket */
	unsigned bucket;
	int slot;			/* index in d->pend */
	struct dns_question key;	/* the question (as its first client wrote it) */
	uint8_t sent[DNS_NAME_MAX];	/* the name as sent: random case */
	uint16_t id;
	int up, tries;
	struct sockaddr_storage peer;	/* the upstream of this try */
	socklen_t peerlen;
	int on_dot, dot_up;		/* holds an ID on DoT connection dot_up */
	int fd, tcp;
	struct evl_io io;
	struct evl_timer timer;
	uint8_t q[2 + UP_QUERY_MAX];	/* the query, after a 2-byte TCP length */
	size_t qlen, tsent;
	uint8_t *tbuf;			/* TCP reply: length + message */
	size_t tlen;
	struct query *w;		/* the waiting clients */
	int nw, wcap;
};

static void send_try(struct pending *p);
static void send_dot(struct pending *p);

/* ---- randomness -------------------------------------------------------------- */

static uint8_t pool[UP_RANDOM_POOL];
static size_t pool_left;

static void random_bytes(void *out, size_t n)
{
	uint8_t *o = out;
	while (n) {
		if (pool_left == 0) {
			ssize_t r = getrandom(pool, sizeof pool, 0);
			if (r != (ssize_t)sizeof pool)
				abort();	/* broken invariant: the kernel has no randomness */
			pool_left = sizeof pool;
		}
		*o++ = pool[--pool_left];
		n--;
	}
}

unsigned upstream_random16(void)
{
	uint8_t b[2];
	random_bytes(b, 2);
	return (unsigned)b[0] << 8 | b[1];
}

/* Randomises the case of the letters of a wire name (0x20). */
static void random_case(uint8_t *name, size_t namelen)
{
	uint8_t bits[DNS_NAME_MAX / 8 + 1];
	random_bytes(bits, sizeof bits);
	for (size_t pos = 0, i = 0; pos < namelen && name[pos]; pos += 1u + name[pos])
		for (size_t k = pos + 1; k <= pos + name[pos]; k++, i++) {
			uint8_t c = name[k] | 0x20;
			if (c >= 'a' && c <= 'z')
				name[k] = (bits[i / 8] >> (i % 8) & 1) ? (uint8_t)(c - 32) : c;
		}
}

/* ---- the pending table -------------------------------------------------------------- */

static void close_socket(struct pending *p)
{
	if (p->on_dot) {
		dot_forget(p->d, p->dot_up, p->id, p);
		p->on_dot = 0;
	}
	if (p->fd < 0)
		return;
	evl_io_del(&p->d->loop, &p->io);
	close(p->fd);
	p->fd = -1;
}

/* The question's bucket: a keyed hash of the lower-cased name, type and
 * class (keyed, so nobody can aim many questions at one chain). */
static unsigned question_bucket(const struct dnsd *d, const struct dns_question *q)
{
	uint64_t h = d->hash_seed ^ ((uint64_t)q->type << 16 | q->qclass);
	for (size_t i = 0; i < q->namelen; i++) {
		uint8_t c = q->name[i];
		h = (h ^ (c >= 'A' && c <= 'Z' ? c | 0x20 : c)) * 0x100000001b3u;
	}
	return (unsigned)((h ^ h >> 29) % DNSD_PEND_BUCKETS);
}

static void bucket_unlink(struct pending *p)
{
	struct pending **pp = &p->d->bucket[p->bucket];
	while (*pp && *pp != p)
		pp = &(*pp)->next;
	if (*pp)
		*pp = p->next;
}

static void pending_free(struct pending *p)
{
	struct dnsd *d = p->d;
	bucket_unlink(p);
	close_socket(p);
	evl_timer_stop(&d->loop, &p->timer);
	d->pend[p->slot] = d->pend[--d->npend];
	d->pend[p->slot]->slot = p->slot;
	for (int i = 0; i < p->nw; i++)
		server_tcp_done_waiting(d, &p->w[i].from);
	free(p->tbuf);
	free(p->w);
	free(p);
}

static void answer_all(struct pending *p, const struct reply *r)
{
	for (int i = 0; i < p->nw; i++)
		server_reply(p->d, &p->w[i], r);
	pending_free(p);
}

static void fail_all(struct pending *p)
{
	struct reply r = { .rcode = DNS_R_SERVFAIL, .ttl = ~0u };
	answer_all(p, &r);
}

static int add_waiter(struct pending *p, const struct query *qr)
{
	if (p->nw == p->wcap) {
		int cap = p->wcap ? 2 * p->wcap : 2;
		struct query *w = cap <= DNSD_WAITERS_MAX ? realloc(p->w, (size_t)cap * sizeof *w) : NULL;
		if (!w)
			return -1;
		p->w = w;
		p->wcap = cap;
	}
	p->w[p->nw++] = *qr;
	if (qr->from.tcp >= 0)
		p->d->tcp[qr->from.tcp].waiting++;
	return 0;
}

static struct pending *find_pending(struct dnsd *d, const struct dns_question *q)
{
	for (struct pending *p = d->bucket[question_bucket(d, q)]; p; p = p->next)
		if (p->key.type == q->type && p->key.qclass == q->qclass &&
		    dns_name_eq(p->key.name, p->key.namelen, q->name, q->namelen))
			return p;
	return NULL;
}

/* ---- replies ----------------------------------------------------------------------- */

static int keep_rr(void *arg, const struct dns_rr *rr, const uint8_t *rdata)
{
	struct pending *p = arg;
	if (!zone_rebind_blocked(&p->d->zone, p->key.name, p->key.namelen, rr, rdata))
		return 1;
	char name[DNS_NAME_TEXT_MAX];
	dns_name_to_text(p->key.name, p->key.namelen, name, sizeof name);
	log_msg(LOG_WARNING, NULL, "rebinding: private address for %.200s dropped", name);
	return 0;
}

/* 1 when msg answers our query exactly: ID, response bit, one question
 * with our name (byte for byte: the 0x20 case), type and class. */
static int reply_matches(const struct pending *p, const uint8_t *msg, size_t len)
{
	struct dns_header h;
	struct dns_question q;
	if (dns_read_header(msg, len, &h) < 0 || h.id != p->id || !(h.flags & DNS_F_QR) ||
	    DNS_OPCODE(h.flags) != 0 || h.qdcount != 1 ||
	    dns_read_question(msg, len, DNS_HEADER_LEN, &q) < 0)
		return 0;
	return q.namelen == p->key.namelen && memcmp(q.name, p->sent, q.namelen) == 0 &&
	       q.type == p->key.type && q.qclass == p->key.qclass;
}

static void finish(struct pending *p, const uint8_t *msg, size_t len)
{
	struct dnsd *d = p->d;
	struct dns_answer *a = &d->ans;
	if (dns_cache_extract(msg, len, &p->key, keep_rr, p, a) < 0) {
		fail_all(p);
		return;
	}
	if (dns_cache_put(d->cache, &p->key, a, evl_now(&d->loop) / 1000) < 0)
		log_msg(LOG_ERR, NULL, "cache: out of memory");
	uint32_t ttl = a->ttl;
	if (ttl > d->cfg->dns.max_ttl)
		ttl = d->cfg->dns.max_ttl;
	if (ttl < d->cfg->dns.min_ttl)
		ttl = d->cfg->dns.min_ttl;
	struct reply r = { .rcode = a->rcode, .ancount = a->ancount, .nscount = a->nscount,
		.ttl = ttl, .rr = a->rr, .len = a->len };
	answer_all(p, &r);
}

static void spoofed(struct pending *p, const char *why)
{
	p->d->spoofed++;
	log_msg(LOG_NOTICE, NULL, "upstream reply ignored: %s", why);
}

static int same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

/* ---- TCP after truncation -------------------------------------------------------------- */

static void tcp_event(struct pending *p, unsigned events)
{
	if (p->tsent < p->qlen + 2) {
		if (!(events & (EVL_WRITE | EVL_ERR | EVL_HUP)))
			return;
		ssize_t n = send(p->fd, p->q + p->tsent, p->qlen + 2 - p->tsent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINPROGRESS)
				evl_timer_start(&p->d->loop, &p->timer, 0, 0);	/* next try */
			return;
		}
		p->tsent += (size_t)n;
		if (p->tsent == p->qlen + 2)
			evl_io_set(&p->d->loop, &p->io, EVL_READ);
		return;
	}
	size_t need = p->tlen < 2 ? 2 : 2 + ((size_t)p->tbuf[0] << 8 | p->tbuf[1]);
	ssize_t n = recv(p->fd, p->tbuf + p->tlen, need - p->tlen, 0);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			evl_timer_start(&p->d->loop, &p->timer, 0, 0);
		return;
	}
	p->tlen += (size_t)n;
	if (p->tlen < 2 || p->tlen < 2 + ((size_t)p->tbuf[0] << 8 | p->tbuf[1]))
		return;
	if (!reply_matches(p, p->tbuf + 2, p->tlen - 2)) {
		spoofed(p, "TCP reply does not match the question");
		evl_timer_start(&p->d->loop, &p->timer, 0, 0);
		return;
	}
	finish(p, p->tbuf + 2, p->tlen - 2);
}

static void start_tcp(struct pending *p)
{
	struct dnsd *d = p->d;
	close_socket(p);
	if (!p->tbuf && !(p->tbuf = malloc(2 + DNS_MSG_MAX))) {
		fail_all(p);
		return;
	}
	p->tcp = 1;
	p->tlen = p->tsent = 0;
	p->fd = socket(p->peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0 || (connect(p->fd, (struct sockaddr *)&p->peer, p->peerlen) < 0 &&
			  errno != EINPROGRESS)) {
		evl_timer_start(&d->loop, &p->timer, 0, 0);
		return;
	}
	evl_io_set(&d->loop, &p->io, EVL_WRITE);
	evl_timer_start(&d->loop, &p->timer, DNSD_UPSTREAM_TIMEOUT_MS, 0);
}

/* ---- UDP ------------------------------------------------------------------------------ */

static void udp_event(struct pending *p)
{
	uint8_t msg[DNS_EDNS_UDP + 1];
	for (int i = 0; i < DNSD_UDP_BATCH && p->fd >= 0 && !p->tcp; i++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof from;
		ssize_t n = recvfrom(p->fd, msg, sizeof msg, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		if (!same_peer(&from, &p->peer)) {
			spoofed(p, "from another address or port");
			continue;
		}
		if ((size_t)n > DNS_EDNS_UDP || !reply_matches(p, msg, (size_t)n)) {
			spoofed(p, "does not match ID and question");
			continue;
		}
		struct dns_header h;
		dns_read_header(msg, (size_t)n, &h);
		if (h.flags & DNS_F_TC) {
			start_tcp(p);
			return;
		}
		finish(p, msg, (size_t)n);
		return;
	}
}

static void on_io(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct pending *p = io->ctx;
	(void)l;
	if (p->tcp)
		tcp_event(p, events);
	else
		udp_event(p);
}

static void on_timeout(struct evloop *l, struct evl_timer *t)
{
	struct pending *p = t->ctx;
	(void)l;
	/* the upstreams may have changed meanwhile (SIGHUP, wan-dns) */
	if (++p->tries >= DNSD_TRIES_MAX || p->d->nup == 0) {
		fail_all(p);
		return;
	}
	p->up = (p->up + 1) % p->d->nup;
	send_try(p);
}

/* Binds fd to a random port of the upstream's family. */
static void bind_random(int fd, int family)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_family = (sa_family_t)family;
	for (int i = 0; i < UP_PORT_TRIES; i++) {
		unsigned r = upstream_random16();
		uint16_t port = htons((uint16_t)(UP_PORT_MIN + r % (65536 - UP_PORT_MIN)));
		if (family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = port;
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = port;
		if (bind(fd, (struct sockaddr *)&ss, family == AF_INET ?
			 sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == 0)
			return;
	}
	/* every port tried was taken: the kernel's choice is random too */
}

static size_t build_query(struct pending *p)
{
	struct dns_wbuf w;
	struct dns_question q = p->key;
	memcpy(q.name, p->sent, q.namelen);
	struct dns_header h = { p->id, DNS_F_RD, 1, 0, 0, 1 };
	dns_wbuf_init(&w, p->q + 2, UP_QUERY_MAX);
	dns_put_header(&w, &h);
	dns_put_question(&w, &q);
	dns_put_opt(&w, DNS_EDNS_UDP);
	p->q[0] = (uint8_t)(w.len >> 8);
	p->q[1] = (uint8_t)w.len;
	return w.len;
}

static void send_try(struct pending *p)
{
	struct dnsd *d = p->d;
	if (d->cfg->dns.transport == CONFIG_DNS_TLS) {
		send_dot(p);	/* fail closed: never plain DNS */
		return;
	}
	const struct sockaddr_storage *up = &p->peer;
	close_socket(p);
	if (p->up >= d->nup)
		p->up = 0;
	p->peer = d->up[p->up];
	p->peerlen = d->uplen[p->up];
	p->tcp = 0;
	p->id = (uint16_t)upstream_random16();
	memcpy(p->sent, p->key.name, p->key.namelen);
	random_case(p->sent, p->key.namelen);
	p->qlen = build_query(p);
	evl_timer_start(&d->loop, &p->timer, DNSD_UPSTREAM_TIMEOUT_MS, 0);
	p->fd = socket(up->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		return;
	bind_random(p->fd, up->ss_family);
	evl_io_init(&p->io, p->fd, on_io, p);
	/* connect: the kernel already drops datagrams from other peers */
	if (connect(p->fd, (const struct sockaddr *)up, p->peerlen) < 0 ||
	    send(p->fd, p->q + 2, p->qlen, 0) < 0 || evl_io_set(&d->loop, &p->io, EVL_READ) < 0)
		log_msg(LOG_WARNING, NULL, "upstream %d: %s", p->up, strerror(errno));
}

/* ---- DNS-over-TLS (dot.c carries the bytes) -------------------------------------- */

static void send_dot(struct pending *p)
{
	struct dnsd *d = p->d;
	uint16_t id;
	close_socket(p);
	if (p->up >= d->nup)
		p->up = 0;
	if (dot_claim(d, p->up, p, &id) < 0) {
		evl_timer_start(&d->loop, &p->timer, 0, 0);	/* next try */
		return;
	}
	p->on_dot = 1;
	p->dot_up = p->up;
	p->id = id;
	memcpy(p->sent, p->key.name, p->key.namelen);
	random_case(p->sent, p->key.namelen);
	p->qlen = build_query(p);
	evl_timer_start(&d->loop, &p->timer, DNSD_DOT_TIMEOUT_MS, 0);
	if (dot_send(d, p->up, p->q, p->qlen + 2) < 0) {
		close_socket(p);
		evl_timer_start(&d->loop, &p->timer, 0, 0);
	}
}

uint16_t upstream_pending_id(const struct pending *p)
{
	return p->id;
}

void upstream_dot_reply(struct pending *p, const uint8_t *msg, size_t len)
{
	if (!reply_matches(p, msg, len)) {
		spoofed(p, "DoT answer does not match ID and question");
		return;
	}
	close_socket(p);
	finish(p, msg, len);	/* RFC 7858: no truncation over TLS, TC ignored */
}

void upstream_dot_failed(struct pending *p)
{
	p->on_dot = 0;
	evl_timer_start(&p->d->loop, &p->timer, 0, 0);
}

void upstream_resolve(struct dnsd *d, const struct query *qr)
{
	struct pending *p = find_pending(d, &qr->q);
	struct reply fail = { .rcode = DNS_R_SERVFAIL, .ttl = ~0u };
	if (p) {
		if (add_waiter(p, qr) < 0)
			server_reply(d, qr, &fail);
		return;
	}
	if (d->nup == 0 || d->npend >= DNSD_PENDING_MAX || !(p = calloc(1, sizeof *p))) {
		server_reply(d, qr, &fail);
		return;
	}
	p->d = d;
	p->fd = -1;
	p->key = qr->q;
	p->slot = d->npend;
	d->pend[d->npend++] = p;
	p->bucket = question_bucket(d, &p->key);
	p->next = d->bucket[p->bucket];
	d->bucket[p->bucket] = p;
	evl_timer_init(&p->timer, on_timeout, p);
	if (add_waiter(p, qr) < 0) {
		fail_all(p);
		return;
	}
	send_try(p);
}

void upstream_close_all(struct dnsd *d)
{
	while (d->npend)
		fail_all(d->pend[d->npend - 1]);
}
