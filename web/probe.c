/*
 * probe.c - "Test connection" for a provider account (POP3) or the smart
 * host (SMTP): connect, STLS / STARTTLS when the mode says so (RFC 2595
 * section 4, RFC 3207 section 4), then the TLS handshake with the same
 * verification the daemons use (CA + host name, or the pin). Runs in the
 * CGI, as the unprivileged web user: no network parser runs as root. The
 * server key's SHA-256 SPKI fingerprint is reported either way, so the
 * administrator can pin it with one confirmed click.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cgi.h"
#include "pem.h"

#define PROBE_TIMEOUT_MS 10000   /* the whole test */
#define PROBE_LINE_MAX 512       /* a greeting or reply line */
#define PROBE_LINES_MAX 50       /* lines of one multi-line SMTP reply */

static int connect_to(const char *host, int port, int64_t deadline)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *a;
	char ps[16];
	int fd = -1;

	snprintf(ps, sizeof ps, "%d", port);
	if (getaddrinfo(host, ps, &hints, &ai) != 0)
		return -1;
	for (a = ai; a && fd < 0; a = a->ai_next) {
		struct pollfd p;
		int err = 0;
		socklen_t el = sizeof err;
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS)
			err = errno;
		p = (struct pollfd){ fd, POLLOUT, 0 };
		if (!err && (poll(&p, 1, (int)(deadline - tls_now_ms())) <= 0 ||
			     getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0))
			err = ETIMEDOUT;
		if (err) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

/* One line (CRLF or LF) in clear text, byte by byte: nothing beyond it is
 * read, so nothing sent before the handshake is ever taken as TLS. */
static int read_line(int fd, char *buf, int64_t deadline)
{
	size_t n = 0;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		char ch;
		int64_t left = deadline - tls_now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0 || read(fd, &ch, 1) != 1)
			return -1;
		if (ch == '\n')
			break;
		if (n < PROBE_LINE_MAX - 1 && ch != '\r')
			buf[n++] = ch;
	}
	buf[n] = '\0';
	return 0;
}

/* An SMTP reply: lines until "NNN " (RFC 5321 section 4.2.1); 0 when its
 * code is want. */
static int smtp_reply(int fd, const char *want, char *line, int64_t deadline)
{
	for (int i = 0; i < PROBE_LINES_MAX; i++) {
		if (read_line(fd, line, deadline) < 0 || strlen(line) < 3)
			return -1;
		if (line[3] != '-')
			return strncmp(line, want, 3) == 0 ? 0 : -1;
	}
	return -1;
}

static int say(int fd, const char *s)
{
	return write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
}

/* The clear-text part before the handshake. */
static int starttls(int fd, int mode, char *err, size_t errlen, int64_t deadline)
{
	char line[PROBE_LINE_MAX];

	if (mode == PROBE_POP3_STLS) {
		if (read_line(fd, line, deadline) < 0 || strncmp(line, "+OK", 3) != 0 ||
		    say(fd, "STLS\r\n") < 0 || read_line(fd, line, deadline) < 0 ||
		    strncmp(line, "+OK", 3) != 0) {
			snprintf(err, errlen, "the server did not accept STLS");
			return -1;
		}
	} else if (mode == PROBE_SMTP_STARTTLS) {
		if (smtp_reply(fd, "220", line, deadline) < 0 || say(fd, "EHLO postern\r\n") < 0 ||
		    smtp_reply(fd, "250", line, deadline) < 0 || say(fd, "STARTTLS\r\n") < 0 ||
		    smtp_reply(fd, "220", line, deadline) < 0) {
			snprintf(err, errlen, "the server did not accept STARTTLS");
			return -1;
		}
	}
	return 0;
}

static int is_address(const char *host)
{
	return strspn(host, "0123456789.") == strlen(host) || strchr(host, ':');
}

int probe_tls(const char *host, int port, int mode, const char *ca_file,
	      const unsigned char *pin, struct probe *out)
{
	static struct tls_conn tc;
	struct tls_client_config cfg = { 0 };
	struct pem_anchors anchors = { 0 };
	int64_t deadline = tls_now_ms() + PROBE_TIMEOUT_MS;
	int fd;

	memset(out, 0, sizeof *out);
	if (pin) {
		cfg.have_pin = 1;
		memcpy(cfg.pin, pin, 32);
	} else if (pem_anchors_load(&anchors, ca_file, out->err, sizeof out->err) < 0) {
		return -1;
	} else {
		cfg.anchors = anchors.ta;
		cfg.anchor_count = anchors.count;
	}
	fd = connect_to(host, port, deadline);
	if (fd < 0)
		snprintf(out->err, sizeof out->err, "cannot connect to %s port %d", host, port);
	else if (starttls(fd, mode, out->err, sizeof out->err, deadline) == 0 &&
		 tls_client_start(&tc, &cfg, pin && is_address(host) ? NULL : host) == 0) {
		out->ok = tls_handshake(&tc, fd, deadline) == 0;
		if (!out->ok)
			snprintf(out->err, sizeof out->err, "%s", tls_error(&tc));
		out->have_pin = tls_peer_pin(&tc, out->pin) == 0;
		if (out->ok)
			tls_close_fd(&tc, fd, deadline);
	}
	if (fd >= 0)
		close(fd);
	if (anchors.ta)
		pem_anchors_free(&anchors);
	return out->ok ? 0 : -1;
}
