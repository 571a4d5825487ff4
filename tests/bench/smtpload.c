/*
 * smtpload.c - the SMTP submission load generator of tests/bench/bench_smtpd.py
 * (issue 4), and the null server ("sink") that measures its own ceiling.
 *
 * A test tool, not image code: built by the benchmark with the host's
 * gcc -O2 against OpenSSL (libssl), which the host has anyway for curl and
 * Python; the project's BearSSL client (tls.h) insists on verifying the
 * server (CA or pin), which a throw-away benchmark certificate does not
 * need, and OpenSSL's blocking SSL_read/SSL_write keep this file short.
 *
 * Load mode: N sessions, one thread each. Every session connects, EHLO,
 * STARTTLS (or implicit TLS, or none), EHLO again, AUTH PLAIN, then sends
 * M messages of about 10 KB: MAIL, RCPT, DATA in one write when the server
 * offers PIPELINING (RFC 2920 3.1: DATA ends a group), the message and the
 * final dot in one write, and counts the 250s after the final dot.
 *
 *   smtpload --port P [--host 127.0.0.1] [--sessions N] [--per M]
 *            [--tls starttls|implicit|none] --user U --pass PW
 *            --from ADDR --to ADDR
 *   -> "smtpload: accepted=A failed=F seconds=S rate=R t0=EPOCH"
 *
 * Sink mode: a null server (STARTTLS, AUTH accepted, data discarded, one
 * thread per connection, replies batched while pipelined input is
 * waiting). Prints "ready PORT" on stdout once it listens (port 0: any).
 *
 *   smtpload --sink --port P --cert CRT --key KEY
 *
 * Exit status 0 when every message got its 250, 1 otherwise, 2 on usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define LOAD_SESSIONS_MAX 1024     /* --sessions */
#define LOAD_LINE_MAX 1024         /* one reply or command line */
#define LOAD_BUF 65536             /* read and write buffers per session */
#define LOAD_TIMEOUT_S 300         /* any single read or write */
#define LOAD_BODY_LINES 130        /* 130 x 78 bytes: the ~10 KB message */

enum tls_mode { TLS_STARTTLS, TLS_IMPLICIT, TLS_NONE };

struct opts {
	const char *host, *user, *pass, *from, *to, *cert, *key;
	int port, sessions, per, sink;
	enum tls_mode tls;
};

/* A buffered line stream over a socket, through TLS once it is up. */
struct stream {
	int fd;
	SSL *ssl;
	char in[LOAD_BUF];
	size_t in_off, in_len;
	char out[LOAD_BUF];
	size_t out_len;
};

struct session {
	const struct opts *o;
	SSL_CTX *ctx;
	int n;                      /* session number, in the Subject */
	int accepted, failed;
	int pipelining;
	pthread_t th;
	char why[256];              /* the first failure */
};

static struct opts g_opts;

/* ---- the stream --------------------------------------------------------------- */

static long raw_read(struct stream *s, char *buf, size_t len)
{
	if (s->ssl) {
		int r = SSL_read(s->ssl, buf, (int)len);

		return r > 0 ? r : -1;
	}
	return read(s->fd, buf, len);
}

static int raw_write(struct stream *s, const char *buf, size_t len)
{
	while (len > 0) {
		long w = s->ssl ? SSL_write(s->ssl, buf, (int)len) : write(s->fd, buf, len);

		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

static int flush_out(struct stream *s)
{
	int r = raw_write(s, s->out, s->out_len);

	s->out_len = 0;
	return r;
}

/* Queues bytes; large ones go straight out after what is queued. */
static int put(struct stream *s, const char *buf, size_t len)
{
	if (s->out_len + len > sizeof s->out) {
		if (flush_out(s) < 0)
			return -1;
		if (len > sizeof s->out)
			return raw_write(s, buf, len);
	}
	memcpy(s->out + s->out_len, buf, len);
	s->out_len += len;
	return 0;
}

__attribute__((format(printf, 2, 3)))
static int putf(struct stream *s, const char *fmt, ...)
{
	char line[LOAD_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line)
		return -1;
	return put(s, line, (size_t)n);
}

/* One line without its CRLF (truncated at LOAD_LINE_MAX); -1 at EOF. */
static int get_line(struct stream *s, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		if (s->in_off == s->in_len) {
			long r = raw_read(s, s->in, sizeof s->in);

			if (r <= 0)
				return -1;
			s->in_off = 0;
			s->in_len = (size_t)r;
		}
		char c = s->in[s->in_off++];

		if (c == '\n')
			break;
		if (n + 1 < cap)
			line[n++] = c;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return (int)n;
}

static int input_waiting(const struct stream *s)
{
	return s->in_off < s->in_len || (s->ssl && SSL_pending(s->ssl) > 0);
}

static void set_timeouts(int fd)
{
	struct timeval tv = { LOAD_TIMEOUT_S, 0 };
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- the client: one session ------------------------------------------------ */

__attribute__((format(printf, 2, 3)))
static int fail(struct session *se, const char *fmt, ...)
{
	va_list ap;

	if (se->why[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(se->why, sizeof se->why, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Reads one (multi-line) reply; returns its code, remembers PIPELINING. */
static int reply(struct session *se, struct stream *s)
{
	char line[LOAD_LINE_MAX];

	for (;;) {
		int n = get_line(s, line, sizeof line);

		if (n < 0)
			return fail(se, "connection closed or timed out");
		if (n < 3)
			return fail(se, "malformed reply '%s'", line);
		if (n >= 14 && strncasecmp(line + 4, "PIPELINING", 10) == 0)
			se->pipelining = 1;
		if (n == 3 || line[3] == ' ')
			return atoi(line);
	}
}

static int expect(struct session *se, struct stream *s, int code, const char *what)
{
	int r = reply(se, s);

	if (r == code)
		return 0;
	return r < 0 ? -1 : fail(se, "%s: got %d, wanted %d", what, r, code);
}

static int connect_to(const struct opts *o)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || inet_pton(AF_INET, o->host, &sa.sin_addr) != 1)
		return -1;
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int start_tls(struct session *se, struct stream *s)
{
	s->ssl = SSL_new(se->ctx);
	if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1 || SSL_connect(s->ssl) != 1)
		return fail(se, "TLS handshake failed");
	s->in_off = s->in_len = 0;   /* nothing read in clear survives (RFC 3207 4.2) */
	return 0;
}

static int ehlo(struct session *se, struct stream *s)
{
	se->pipelining = 0;
	if (putf(s, "EHLO load.example.com\r\n") < 0 || flush_out(s) < 0)
		return fail(se, "write failed");
	return expect(se, s, 250, "EHLO");
}

static void b64(const unsigned char *in, size_t len, char *out)
{
	static const char t[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < len; i += 3, out += 4) {
		out[0] = t[in[i] >> 2];
		out[1] = t[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		out[2] = t[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		out[3] = t[in[i + 2] & 63];
	}
	if (i < len) {
		out[0] = t[in[i] >> 2];
		out[1] = t[((in[i] & 3) << 4) | (i + 1 < len ? in[i + 1] >> 4 : 0)];
		out[2] = i + 1 < len ? t[(in[i + 1] & 15) << 2] : '=';
		out[3] = '=';
		out += 4;
	}
	*out = '\0';
}

static int auth_plain(struct session *se, struct stream *s)
{
	unsigned char raw[512];
	char enc[700];
	size_t ul = strlen(se->o->user), pl = strlen(se->o->pass);

	if (ul + pl + 2 > sizeof raw)
		return fail(se, "user or password too long");
	raw[0] = '\0';
	memcpy(raw + 1, se->o->user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, se->o->pass, pl);
	b64(raw, ul + pl + 2, enc);
	if (putf(s, "AUTH PLAIN %s\r\n", enc) < 0 || flush_out(s) < 0)
		return fail(se, "write failed");
	return expect(se, s, 235, "AUTH");
}

/* Connection, TLS and login: everything before the first MAIL. */
static int open_session(struct session *se, struct stream *s)
{
	const struct opts *o = se->o;

	s->fd = connect_to(o);
	if (s->fd < 0)
		return fail(se, "connect: %s", strerror(errno));
	if (o->tls == TLS_IMPLICIT && start_tls(se, s) < 0)
		return -1;
	if (expect(se, s, 220, "greeting") < 0 || ehlo(se, s) < 0)
		return -1;
	if (o->tls == TLS_STARTTLS) {
		if (putf(s, "STARTTLS\r\n") < 0 || flush_out(s) < 0)
			return fail(se, "write failed");
		if (expect(se, s, 220, "STARTTLS") < 0 || start_tls(se, s) < 0 ||
		    ehlo(se, s) < 0)
			return -1;
	}
	return auth_plain(se, s);
}

/* The message: the same headers and body as bench_smtpd.py's message(). */
static int put_message(struct stream *s, int n, int i)
{
	static const char line[] =
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";

	if (putf(s, "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: bench %d-%d\r\n"
		    "Message-ID: <%d.%d@bench>\r\nDate: Sun, 29 Nov 2026 00:00:00 +0000\r\n\r\n",
		 n, i, n, i) < 0)
		return -1;
	for (int k = 0; k < LOAD_BODY_LINES; k++)
		if (put(s, line, sizeof line - 1) < 0)
			return -1;
	return put(s, ".\r\n", 3);
}

/* One transaction; 0 when it got its 250, -1 when the session is broken,
 * 1 when the server refused it (the session goes on). */
static int send_one(struct session *se, struct stream *s, int i)
{
	const struct opts *o = se->o;
	int r;

	if (putf(s, "MAIL FROM:<%s>\r\n", o->from) < 0)
		return fail(se, "write failed");
	if (!se->pipelining && (flush_out(s) < 0 || expect(se, s, 250, "MAIL") < 0))
		return -1;
	if (putf(s, "RCPT TO:<%s>\r\n", o->to) < 0)
		return fail(se, "write failed");
	if (!se->pipelining && (flush_out(s) < 0 || expect(se, s, 250, "RCPT") < 0))
		return -1;
	if (putf(s, "DATA\r\n") < 0 || flush_out(s) < 0)
		return fail(se, "write failed");
	if (se->pipelining && (expect(se, s, 250, "MAIL") < 0 || expect(se, s, 250, "RCPT") < 0))
		return -1;
	if (expect(se, s, 354, "DATA") < 0)
		return -1;
	if (put_message(s, se->n, i) < 0 || flush_out(s) < 0)
		return fail(se, "write failed");
	r = reply(se, s);
	if (r < 0)
		return -1;
	return r == 250 ? 0 : (fail(se, "end of data: got %d", r), 1);
}

static void *session_main(void *arg)
{
	struct session *se = arg;
	struct stream *s = calloc(1, sizeof *s);
	int i = 0;

	if (s)
		s->fd = -1;
	if (s && open_session(se, s) == 0) {
		for (; s && i < se->o->per; i++) {
			int r = send_one(se, s, i);

			if (r < 0)
				break;
			if (r == 0)
				se->accepted++;
		}
		if (s && i == se->o->per && putf(s, "QUIT\r\n") == 0 && flush_out(s) == 0)
			(void)reply(se, s);
	}
	se->failed = se->o->per - se->accepted;
	if (s) {
		if (s->ssl)
			SSL_free(s->ssl);
		if (s->fd >= 0)
			close(s->fd);
		free(s);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_load(const struct opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	struct session *se = calloc((size_t)o->sessions, sizeof *se);
	int accepted = 0, failed = 0, started = 0;
	double t0 = now_s(), dt;

	if (!ctx || !se)
		return 1;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* a throw-away bench certificate */
	for (; started < o->sessions; started++) {
		se[started] = (struct session){ .o = o, .ctx = ctx, .n = started };
		if (pthread_create(&se[started].th, NULL, session_main, &se[started]) != 0)
			break;
	}
	for (int k = 0; k < started; k++) {
		pthread_join(se[k].th, NULL);
		accepted += se[k].accepted;
		failed += se[k].failed;
		if (se[k].why[0])
			fprintf(stderr, "smtpload: session %d: %s\n", k, se[k].why);
	}
	failed += (o->sessions - started) * o->per;
	dt = now_s() - t0;
	printf("smtpload: accepted=%d failed=%d seconds=%.3f rate=%.1f t0=%.6f\n", accepted,
	       failed, dt, accepted / (dt > 0 ? dt : 1e-9), t0);
	free(se);
	SSL_CTX_free(ctx);
	return failed == 0 ? 0 : 1;
}

/* ---- the sink: a null SMTP server -------------------------------------------- */

struct sink_conn {
	SSL_CTX *ctx;
	struct stream s;
};

/* Replies wait in the buffer while more pipelined input is there. */
static int sink_reply(struct stream *s, const char *text)
{
	if (put(s, text, strlen(text)) < 0)
		return -1;
	return input_waiting(s) ? 0 : flush_out(s);
}

static int sink_data(struct stream *s)
{
	char line[LOAD_LINE_MAX];

	for (;;) {
		int n = get_line(s, line, sizeof line);

		if (n < 0)
			return -1;
		if (n == 1 && line[0] == '.')
			return sink_reply(s, "250 2.0.0 Ok: discarded\r\n");
	}
}

/* One command; 1 after QUIT, -1 on a broken connection. */
static int sink_command(struct sink_conn *c, const char *line)
{
	struct stream *s = &c->s;

	if (strncasecmp(line, "EHLO", 4) == 0)
		return sink_reply(s, "250-null.example.com\r\n250-PIPELINING\r\n250-STARTTLS\r\n"
				     "250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n");
	if (strncasecmp(line, "STARTTLS", 8) == 0) {
		if (sink_reply(s, "220 2.0.0 Ready to start TLS\r\n") < 0 || flush_out(s) < 0)
			return -1;
		s->ssl = SSL_new(c->ctx);
		s->in_off = s->in_len = 0;
		if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1 || SSL_accept(s->ssl) != 1)
			return -1;
		return 0;
	}
	if (strncasecmp(line, "AUTH", 4) == 0)
		return sink_reply(s, "235 2.7.0 Authentication successful\r\n");
	if (strncasecmp(line, "DATA", 4) == 0) {
		if (sink_reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n") < 0 || flush_out(s) < 0)
			return -1;
		return sink_data(s);
	}
	if (strncasecmp(line, "QUIT", 4) == 0)
		return sink_reply(s, "221 2.0.0 Bye\r\n") < 0 ? -1 : 1;
	return sink_reply(s, "250 2.0.0 Ok\r\n");
}

static void *sink_main(void *arg)
{
	struct sink_conn *c = arg;
	char line[LOAD_LINE_MAX];

	if (sink_reply(&c->s, "220 null.example.com ESMTP sink\r\n") == 0)
		while (get_line(&c->s, line, sizeof line) >= 0)
			if (sink_command(c, line) != 0)
				break;
	flush_out(&c->s);
	if (c->s.ssl)
		SSL_free(c->s.ssl);
	close(c->s.fd);
	free(c);
	return NULL;
}

static int sink_listen(const struct opts *o)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || inet_pton(AF_INET, o->host, &sa.sin_addr) != 1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 512) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	printf("ready %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

static int run_sink(const struct opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int lfd;

	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 2;
	}
	lfd = sink_listen(o);
	if (lfd < 0) {
		perror("smtpload: listen");
		return 1;
	}
	for (;;) {
		struct sink_conn *c = calloc(1, sizeof *c);
		pthread_t th;

		if (!c)
			return 1;
		c->ctx = ctx;
		c->s.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c->s.fd < 0) {
			free(c);
			continue;
		}
		set_timeouts(c->s.fd);
		if (pthread_create(&th, NULL, sink_main, c) != 0) {
			close(c->s.fd);
			free(c);
			continue;
		}
		pthread_detach(th);
	}
}

/* ---- options ------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr, "usage: smtpload --port P [--host A] [--sessions N] [--per M]\n"
			"                [--tls starttls|implicit|none] --user U --pass PW\n"
			"                --from ADDR --to ADDR\n"
			"       smtpload --sink --port P --cert CRT --key KEY\n");
	return 2;
}

static int set_opt(struct opts *o, const char *name, const char *v)
{
	const char **str[] = { &o->host, &o->user, &o->pass, &o->from, &o->to, &o->cert, &o->key };
	static const char *const strn[] = { "--host", "--user", "--pass", "--from",
					    "--to", "--cert", "--key" };

	static const char *const tls[] = { "starttls", "implicit", "none" };   /* enum tls_mode */

	for (size_t k = 0; k < sizeof strn / sizeof strn[0]; k++) {
		if (strcmp(name, strn[k]) == 0) {
			*str[k] = v;
			return 0;
		}
	}
	if (strcmp(name, "--port") == 0)
		return (o->port = atoi(v)) >= 0 && o->port < 65536 ? 0 : -1;
	if (strcmp(name, "--sessions") == 0)
		return (o->sessions = atoi(v)) > 0 && o->sessions <= LOAD_SESSIONS_MAX ? 0 : -1;
	if (strcmp(name, "--per") == 0)
		return (o->per = atoi(v)) > 0 ? 0 : -1;
	for (int k = 0; strcmp(name, "--tls") == 0 && k < 3; k++) {
		if (strcmp(v, tls[k]) == 0) {
			o->tls = (enum tls_mode)k;
			return 0;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct opts *o = &g_opts;

	*o = (struct opts){ .host = "127.0.0.1", .sessions = 20, .per = 100,
			    .from = "alice@example.com", .to = "bob@example.com" };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sink") == 0)
			o->sink = 1;
		else if (i + 1 >= argc || set_opt(o, argv[i], argv[i + 1]) < 0)
			return usage();
		else
			i++;
	}
	signal(SIGPIPE, SIG_IGN);   /* a peer that closes early is counted, not fatal */
	if (o->sink)
		return o->cert && o->key ? run_sink(o) : usage();
	if (!o->port || !o->user || !o->pass)
		return usage();
	return run_load(o);
}
