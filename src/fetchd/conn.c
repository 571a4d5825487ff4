/*
 * conn.c - the fetcher's connection to the POP3 server: connect with a
 * deadline, reads and writes in clear or through TLS (tls.h's blocking
 * helpers), and the STLS upgrade. Every wait has a deadline, the name
 * lookup's included (it runs on a thread the caller stops waiting for).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fetchd.h"

/* Waits for events on fd until deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - tls_now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = fd, .events = ev };
		int r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 1) {
		int e = 0;
		socklen_t l = sizeof e;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0 && e == 0)
			return fd;
		errno = e ? e : EIO;
	} else if (errno == EINPROGRESS) {
		errno = ETIMEDOUT;
	}
	int save = errno;
	close(fd);
	errno = save;
	return -1;
}

/* A name lookup on its own thread: getaddrinfo has no deadline of its
 * own (a dead resolver can block it for minutes). Whoever finishes last,
 * the caller (on time or not) or the thread, frees it. */
struct resolve {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs, done, rc;
	char host[256], port[8];
	struct addrinfo *res;
};

static void resolve_put(struct resolve *r)
{
	pthread_mutex_lock(&r->mu);
	int last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (!last)
		return;
	if (r->res)
		freeaddrinfo(r->res);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static void *resolve_thread(void *arg)
{
	struct resolve *r = arg;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(r->host, r->port, &hints, &res);
	pthread_mutex_lock(&r->mu);
	r->rc = rc;
	r->res = res;
	r->done = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	resolve_put(r);
	return NULL;
}

static struct resolve *resolve_new(const char *host, uint16_t port)
{
	struct resolve *r = calloc(1, sizeof *r);
	pthread_condattr_t ca;
	if (!r)
		return NULL;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	r->refs = 2;
	snprintf(r->host, sizeof r->host, "%s", host);
	snprintf(r->port, sizeof r->port, "%u", (unsigned)port);
	return r;
}

/* Waits for r until FETCH_RESOLVE_MS; returns its result (taken from r),
 * or sets *late. */
static int resolve_wait(struct resolve *r, struct addrinfo **res, int *late)
{
	struct timespec ts;
	int rc = EAI_AGAIN, e = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += FETCH_RESOLVE_MS / 1000;
	ts.tv_nsec += (FETCH_RESOLVE_MS % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	while (!r->done && e != ETIMEDOUT)
		e = pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	if (r->done) {
		rc = r->rc;
		*res = r->res;
		r->res = NULL;
	}
	*late = !r->done;
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* getaddrinfo with a deadline: 0, or an EAI_ code (*late: timed out). */
static int resolve(const char *host, uint16_t port, struct addrinfo **res, int *late)
{
	struct resolve *r = resolve_new(host, port);
	pthread_attr_t at;
	pthread_t t;
	if (!r)
		return EAI_MEMORY;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, resolve_thread, r) != 0) {
		pthread_attr_destroy(&at);
		r->refs = 1;
		resolve_put(r);
		return EAI_AGAIN;
	}
	pthread_attr_destroy(&at);
	int rc = resolve_wait(r, res, late);
	resolve_put(r);
	return rc;
}

int conn_connect(struct conn *c, const char *host, uint16_t port, const struct log_fields *lf)
{
	memset(c, 0, offsetof(struct conn, rbuf));
	c->fd = -1;
	c->lf = lf;
	struct addrinfo *res = NULL;
	int late = 0, g = resolve(host, port, &res, &late);
	if (g != 0) {
		snprintf(c->err, sizeof c->err, "cannot resolve %s: %s", host,
			late ? "no answer in time" : gai_strerror(g));
		return -1;
	}
	int e = 0;
	for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
		c->fd = connect_one(ai, tls_now_ms() + FETCH_CONNECT_MS);
		if (c->fd < 0)
			e = errno;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		snprintf(c->err, sizeof c->err, "connect to %s port %u: %s", host,
			(unsigned)port, strerror(e));
		return -1;
	}
	return 0;
}

int conn_starttls(struct conn *c, const struct tls_client_config *cfg, const char *name)
{
	/* RFC 2595 section 4 / DESIGN.md: whatever arrived in clear before the
	 * handshake must never be read as if it came through TLS. */
	c->rpos = c->rlen = 0;
	c->tls = malloc(sizeof *c->tls);
	if (!c->tls) {
		snprintf(c->err, sizeof c->err, "out of memory");
		return -1;
	}
	if (tls_client_start(c->tls, cfg, name) < 0 ||
	    tls_handshake(c->tls, c->fd, tls_now_ms() + FETCH_TLS_MS) < 0) {
		snprintf(c->err, sizeof c->err, "TLS: %s", *tls_error(c->tls) ? tls_error(c->tls) :
			errno == ETIMEDOUT ? "handshake timed out" : "handshake failed");
		return -1;
	}
	return 0;
}

int conn_write(struct conn *c, const void *buf, size_t len, int64_t deadline)
{
	if (c->tls) {
		if (tls_write_fd(c->tls, c->fd, buf, len, deadline) < 0) {
			snprintf(c->err, sizeof c->err, "write: %s", *tls_error(c->tls) ?
				tls_error(c->tls) : strerror(errno));
			return -1;
		}
		return 0;
	}
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(c->err, sizeof c->err, "write: %s", strerror(errno));
			return -1;
		}
		if (n < 0 && errno == EAGAIN && wait_fd(c->fd, POLLOUT, deadline) != 1) {
			snprintf(c->err, sizeof c->err, "write: timed out");
			return -1;
		}
	}
	return 0;
}

/* Refills rbuf; returns the count, 0 at end of stream, -1 on error. */
static ssize_t fill(struct conn *c, int64_t deadline)
{
	ssize_t n;
	if (c->tls) {
		n = tls_read_fd(c->tls, c->fd, c->rbuf, sizeof c->rbuf, deadline);
		if (n < 0)
			snprintf(c->err, sizeof c->err, "read: %s", errno == ETIMEDOUT ?
				"timed out" : *tls_error(c->tls) ? tls_error(c->tls) : strerror(errno));
	} else {
		for (;;) {
			n = recv(c->fd, c->rbuf, sizeof c->rbuf, 0);
			if (n >= 0 || (errno != EAGAIN && errno != EINTR))
				break;
			int w = wait_fd(c->fd, POLLIN, deadline);
			if (w != 1) {
				errno = w == 0 ? ETIMEDOUT : errno;
				break;
			}
		}
		if (n < 0)
			snprintf(c->err, sizeof c->err, "read: %s", errno == ETIMEDOUT ?
				"timed out" : strerror(errno));
	}
	if (n == 0)
		snprintf(c->err, sizeof c->err, "connection closed by the server");
	c->rpos = 0;
	c->rlen = n > 0 ? (size_t)n : 0;
	return n;
}

int conn_response(struct conn *c, struct pop3_reader *r, int64_t idle_ms)
{
	for (;;) {
		if (c->rpos == c->rlen && fill(c, tls_now_ms() + idle_ms) <= 0)
			return -1;
		size_t used;
		int rc = pop3_reader_feed(r, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
		c->rpos += used;
		/* A server that keeps sending past the size limit (the reader
		 * drops the excess but must see the end) is cut off. */
		if (r->body_max && r->wire_len > 2 * r->body_max + FETCH_RBUF) {
			snprintf(c->err, sizeof c->err, "the server sends far more than the size limit");
			return -1;
		}
		if (rc == POP3_DONE)
			return 0;
		if (rc != POP3_NEED) {
			snprintf(c->err, sizeof c->err, "%s",
				rc == POP3_EMALFORMED ? "malformed response" :
				rc == POP3_ETOOLONG ? "response line too long" :
				"could not store the data");
			return -1;
		}
	}
}

void conn_close(struct conn *c)
{
	if (c->tls) {
		if (c->fd >= 0 && tls_established(c->tls))
			tls_close_fd(c->tls, c->fd, tls_now_ms() + 2000);
		memset(c->tls, 0, sizeof *c->tls);
		free(c->tls);
		c->tls = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
