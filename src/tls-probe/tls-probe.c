/*
 * tls-probe - a small TLS test tool on libpostern's tls.c.
 *
 *   tls-probe server --cert C --key K [--addr A] [--port P]
 *       Listens (port 0: any free one; prints "listening PORT" once ready),
 *       serves many connections from one poll() loop, prints each received
 *       line as "recv: LINE" and echoes it back; a line starting "GET "
 *       gets a small HTTP/1.0 answer and the connection is closed.
 *   tls-probe client --host H --port P (--ca FILE [--name N] | --pin SHA256)
 *                    --send TEXT [--wait-ms MS]
 *       Connects, verifies the server (CA bundle + name, and/or SPKI pin),
 *       sends TEXT and a newline, prints what the server sent (up to its
 *       first line, end of stream, or MS of silence) and exits 0. On a
 *       failed verification it sends nothing and exits 100 naming the
 *       failure and the server key's SHA-256 SPKI fingerprint.
 *
 * Exit status: 0 success, 100 permanent failure (usage, verification),
 * 111 temporary failure (network, timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "pem.h"
#include "tls.h"

#define PROBE_CONNS_MAX 16
#define PROBE_LINE_MAX 1024
#define PROBE_HANDSHAKE_MS 10000
#define PROBE_IDLE_MS 30000
#define PROBE_CONNECT_MS 10000
#define PROBE_WAIT_MS 1000
#define EXIT_PERM 100
#define EXIT_TEMP 111

static const char http_body[] = "hello from tls-probe\n";

struct probe_opts {
	const char *cert, *key, *addr, *host, *port, *ca, *name, *pin, *send;
	int wait_ms;
};

struct pconn {
	int fd;
	int events;
	int closing;
	int64_t deadline;
	size_t len;
	char line[PROBE_LINE_MAX];
	struct tls_conn tls;
};

static struct pconn conns[PROBE_CONNS_MAX];

static void usage(void)
{
	fprintf(stderr, "usage: tls-probe server --cert C --key K [--addr A] [--port P]\n"
		"       tls-probe client --host H --port P (--ca FILE [--name N] | --pin SHA256)"
		" --send TEXT [--wait-ms MS]\n");
	exit(EXIT_PERM);
}

static void parse_opts(int argc, char **argv, struct probe_opts *o)
{
	int i;

	memset(o, 0, sizeof *o);
	o->addr = "127.0.0.1";
	o->port = "0";
	o->wait_ms = PROBE_WAIT_MS;
	for (i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--cert")) o->cert = v;
		else if (!strcmp(a, "--key")) o->key = v;
		else if (!strcmp(a, "--addr")) o->addr = v;
		else if (!strcmp(a, "--host")) o->host = v;
		else if (!strcmp(a, "--port")) o->port = v;
		else if (!strcmp(a, "--ca")) o->ca = v;
		else if (!strcmp(a, "--name")) o->name = v;
		else if (!strcmp(a, "--pin")) o->pin = v;
		else if (!strcmp(a, "--send")) o->send = v;
		else if (!strcmp(a, "--wait-ms")) o->wait_ms = atoi(v);
		else usage();
	}
}

/* ---- server ------------------------------------------------------------ */

static int listen_on(const char *addr, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	sa.sin_port = htons((uint16_t)atoi(port));
	if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1
	    || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
	    || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0
	    || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		fprintf(stderr, "tls-probe: listen on %s:%s: %s\n", addr, port, strerror(errno));
		exit(EXIT_TEMP);
	}
	printf("listening %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

static void conn_drop(struct pconn *c, const char *why)
{
	if (why && *why)
		fprintf(stderr, "tls-probe: connection %d: %s\n", c->fd, why);
	close(c->fd);
	c->fd = -1;
}

static void accept_one(int lfd, const struct tls_server_config *cfg)
{
	int i, fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (i = 0; i < PROBE_CONNS_MAX && conns[i].fd >= 0; i++)
		;
	if (i == PROBE_CONNS_MAX) {
		close(fd);
		return;
	}
	conns[i].fd = fd;
	conns[i].len = 0;
	conns[i].closing = 0;
	conns[i].events = POLLIN;
	conns[i].deadline = tls_now_ms() + PROBE_HANDSHAKE_MS;
	if (tls_server_start(&conns[i].tls, cfg) < 0)
		conn_drop(&conns[i], tls_error(&conns[i].tls));
}

static void answer_line(struct pconn *c)
{
	char resp[256];

	c->line[c->len] = '\0';
	if (c->len > 0 && c->line[c->len - 1] == '\r')
		c->line[--c->len] = '\0';
	printf("recv: %s\n", c->line);
	fflush(stdout);
	if (strncmp(c->line, "GET ", 4) == 0) {
		snprintf(resp, sizeof resp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
			"Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			strlen(http_body), http_body);
		tls_write(&c->tls, resp, strlen(resp));
		tls_close(&c->tls);
		c->closing = 1;
		return;
	}
	c->line[c->len++] = '\n';
	tls_write(&c->tls, c->line, c->len);
}

/* Splits received plaintext into lines. Returns -1 to drop the connection. */
static int take_input(struct pconn *c)
{
	char buf[512];
	ssize_t n = -1, i;

	errno = EAGAIN;
	while (!c->closing && (n = tls_read(&c->tls, buf, sizeof buf)) > 0) {
		for (i = 0; i < n && !c->closing; i++) {
			if (buf[i] == '\n') {
				answer_line(c);
				c->len = 0;
			} else if (c->len < PROBE_LINE_MAX - 2) {
				c->line[c->len++] = buf[i];
			}
		}
		c->deadline = tls_now_ms() + PROBE_IDLE_MS;
	}
	if (c->closing)
		return 0;
	if (n == 0)
		return -1;
	return errno == EAGAIN ? 0 : -1;
}

static void service(struct pconn *c)
{
	int ev = tls_pump(&c->tls, c->fd);

	if (ev >= 0 && tls_established(&c->tls) && take_input(c) < 0) {
		conn_drop(c, tls_error(&c->tls));
		return;
	}
	ev = tls_pump(&c->tls, c->fd);
	if (ev < 0 || (c->closing && !(ev & POLLOUT))) {
		conn_drop(c, tls_error(&c->tls));
		return;
	}
	if (tls_now_ms() > c->deadline) {
		conn_drop(c, tls_established(&c->tls) ? "idle timeout" : "handshake timeout");
		return;
	}
	c->events = ev ? ev : POLLIN;
}

static int run_server(const struct probe_opts *o)
{
	static struct tls_server_config cfg;
	struct pollfd pfd[PROBE_CONNS_MAX + 1];
	char err[256];
	int i, lfd;

	if (!o->cert || !o->key)
		usage();
	if (tls_server_config_load(&cfg, o->cert, o->key, err, sizeof err) < 0) {
		fprintf(stderr, "tls-probe: %s\n", err);
		return EXIT_PERM;
	}
	for (i = 0; i < PROBE_CONNS_MAX; i++)
		conns[i].fd = -1;
	lfd = listen_on(o->addr, o->port);
	for (;;) {
		pfd[0].fd = lfd;
		pfd[0].events = POLLIN;
		for (i = 0; i < PROBE_CONNS_MAX; i++) {
			pfd[i + 1].fd = conns[i].fd;
			pfd[i + 1].events = (short)conns[i].events;
		}
		if (poll(pfd, PROBE_CONNS_MAX + 1, 1000) < 0 && errno != EINTR)
			return EXIT_TEMP;
		if (pfd[0].revents)
			accept_one(lfd, &cfg);
		for (i = 0; i < PROBE_CONNS_MAX; i++) {
			if (conns[i].fd >= 0)
				service(&conns[i]);
		}
	}
}

/* ---- client ------------------------------------------------------------ */

static int connect_to(const char *host, const char *port, int64_t deadline)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, r = getaddrinfo(host, port, &hints, &res);

	if (r != 0) {
		fprintf(stderr, "tls-probe: %s: %s\n", host, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd p = { .events = POLLOUT };
		int soerr = 0;
		socklen_t sl = sizeof soerr;

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		p.fd = fd;
		if ((connect(fd, ai->ai_addr, ai->ai_addrlen) == 0
		     || (errno == EINPROGRESS
			 && poll(&p, 1, (int)(deadline - tls_now_ms())) == 1
			 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)))
			break;
		fprintf(stderr, "tls-probe: connect %s port %s: %s\n", host, port,
			strerror(soerr ? soerr : errno ? errno : ETIMEDOUT));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* Prints what the server sends: up to a line, end of stream or silence. */
static void print_reply(struct tls_conn *c, int fd, int wait_ms)
{
	char buf[1024];
	ssize_t n;

	while ((n = tls_read_fd(c, fd, buf, sizeof buf, tls_now_ms() + wait_ms)) > 0) {
		fwrite(buf, 1, (size_t)n, stdout);
		if (memchr(buf, '\n', (size_t)n))
			break;
	}
	fflush(stdout);
}

static int client_config(const struct probe_opts *o, struct tls_client_config *cfg,
	struct pem_anchors *ca)
{
	char err[256];

	memset(cfg, 0, sizeof *cfg);
	if (o->ca) {
		if (pem_anchors_load(ca, o->ca, err, sizeof err) < 0) {
			fprintf(stderr, "tls-probe: %s\n", err);
			return -1;
		}
		cfg->anchors = ca->ta;
		cfg->anchor_count = ca->count;
	}
	if (o->pin) {
		if (tls_pin_parse(o->pin, cfg->pin) < 0) {
			fprintf(stderr, "tls-probe: bad pin \"%s\" (64 hex digits)\n", o->pin);
			return -1;
		}
		cfg->have_pin = 1;
	}
	return 0;
}

static int run_client(const struct probe_opts *o)
{
	static struct tls_conn c;
	struct tls_client_config cfg;
	struct pem_anchors ca = { 0 };
	const char *name = o->name ? o->name : o->host;
	int fd, rc = EXIT_PERM;

	if (!o->host || !o->send || (!o->ca && !o->pin))
		usage();
	if (client_config(o, &cfg, &ca) < 0)
		return EXIT_PERM;
	fd = connect_to(o->host, o->port, tls_now_ms() + PROBE_CONNECT_MS);
	if (fd < 0) {
		rc = EXIT_TEMP;
		goto out;
	}
	if (tls_client_start(&c, &cfg, name) < 0
	    || tls_handshake(&c, fd, tls_now_ms() + PROBE_HANDSHAKE_MS) < 0) {
		int e = errno;

		fprintf(stderr, "tls-probe: %s\n", tls_error(&c));
		rc = e == ETIMEDOUT ? EXIT_TEMP : EXIT_PERM;
		goto out;
	}
	if (tls_write_fd(&c, fd, o->send, strlen(o->send), tls_now_ms() + PROBE_IDLE_MS) < 0
	    || tls_write_fd(&c, fd, "\n", 1, tls_now_ms() + PROBE_IDLE_MS) < 0) {
		fprintf(stderr, "tls-probe: send: %s\n", tls_error(&c));
		rc = EXIT_TEMP;
		goto out;
	}
	print_reply(&c, fd, o->wait_ms);
	tls_close_fd(&c, fd, tls_now_ms() + PROBE_WAIT_MS);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	pem_anchors_free(&ca);
	return rc;
}

int main(int argc, char **argv)
{
	struct probe_opts o;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		usage();
	parse_opts(argc, argv, &o);
	if (!strcmp(argv[1], "server"))
		return run_server(&o);
	if (!strcmp(argv[1], "client"))
		return run_client(&o);
	usage();
	return EXIT_PERM;
}
