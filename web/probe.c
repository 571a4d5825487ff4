/*
 * probe.c - "Test connection" for a provider account (POP3) or the smart
 * host (SMTP): connect, STLS / STARTTLS when the mode says so (RFC 2595
 * section 4, RFC 3207 section 4), then the TLS handshake with the same
 * verification the daemons use (CA + host name, or the pin). Runs in the
 * CGI, as the unprivileged web user: no network parser runs as root. The
 * server key's SHA-256 SPKI fingerprint is reported either way, so the
 * administrator can pin it with one confirmed click.
 *
 * Progress (docs/web.md "Long operations"): POST /probe starts the test in
 * a detached process and redirects to GET /probe?id=JOB, a page that
 * refreshes itself (Refresh header and meta refresh, no JavaScript; the
 * state in an aria-live region) until the result is there. The job is a
 * file "probe-JOB" in the session directory, readable only by the user who
 * started it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgi.h"
#include "config.h"
#include "fsutil.h"
#include "html.h"
#include "pem.h"

#define PROBE_TIMEOUT_MS 10000   /* the whole test */
#define PROBE_LINE_MAX 512       /* a greeting or reply line */
#define PROBE_LINES_MAX 50       /* lines of one multi-line SMTP reply */
#define PROBE_JOB_BYTES 16       /* random bytes of a job id (hex: twice) */
#define PROBE_JOB_MAX 2048       /* bytes of a job file */
#define PROBE_JOB_KEEP_S 3600    /* finished or stale jobs removed after */
#define PROBE_JOB_SCAN_MAX 1000  /* entries looked at when cleaning up */
#define PROBE_REFRESH_S 1        /* the progress page reloads this often */

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

/* ---- progress: the test as a background job ---- */

struct probe_job {
	char user[USERS_NAME_MAX + 1];
	char kind[16];                    /* "account" or "smarthost" */
	char name[CONFIG_NAME_MAX + 1];   /* the account ("" for the smart host) */
	char target[CONFIG_HOST_MAX + 16];
	long long started;
	int done;
	struct probe r;
};

static int job_path(const struct cgi *c, const char *id, char *out, size_t cap)
{
	if (strlen(id) != 2 * PROBE_JOB_BYTES || strspn(id, "0123456789abcdef") != strlen(id))
		return -1;
	return snprintf(out, cap, "%s/probe-%s", c->state, id) >= (int)cap ? -1 : 0;
}

static int job_save(const char *path, const struct probe_job *j)
{
	char buf[PROBE_JOB_MAX];
	int n = snprintf(buf, sizeof buf, "user=%s\nkind=%s\nname=%s\ntarget=%s\nstarted=%lld\n"
			 "done=%d\nok=%d\npin=%s\nerr=%s\n", j->user, j->kind, j->name, j->target,
			 j->started, j->done, j->r.ok, j->r.have_pin ? j->r.pin : "", j->r.err);

	for (char *p = strstr(buf, "err="); p && *p; p++)   /* one line, whatever it says */
		if (*p == '\n' && p[1] != '\0')
			*p = ' ';
	if (n < 0 || (size_t)n >= sizeof buf)
		return -1;
	return fs_write_atomic(path, buf, (size_t)n, 0600);
}

static void job_field(struct probe_job *j, const char *k, const char *v)
{
#define S(field) snprintf(field, sizeof field, "%s", v)
	if (!strcmp(k, "user")) S(j->user);
	else if (!strcmp(k, "kind")) S(j->kind);
	else if (!strcmp(k, "name")) S(j->name);
	else if (!strcmp(k, "target")) S(j->target);
	else if (!strcmp(k, "err")) S(j->r.err);
	else if (!strcmp(k, "pin")) j->r.have_pin = S(j->r.pin) == 64;
	else if (!strcmp(k, "started")) j->started = atoll(v);
	else if (!strcmp(k, "done")) j->done = atoi(v) == 1;
	else if (!strcmp(k, "ok")) j->r.ok = atoi(v) == 1;
#undef S
}

/* Reads a job file (bounded: PROBE_JOB_MAX bytes, unknown keys skipped). */
static int job_load(const char *path, struct probe_job *j)
{
	char buf[PROBE_JOB_MAX + 1];
	ssize_t n = fs_read_file(path, buf, PROBE_JOB_MAX);

	memset(j, 0, sizeof *j);
	if (n < 0)
		return -1;
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		char *eq = strchr(l, '=');
		if (eq) {
			*eq = '\0';
			job_field(j, l, eq + 1);
		}
	}
	return j->user[0] ? 0 : -1;
}

/* Removes jobs older than PROBE_JOB_KEEP_S (a finished test is looked at
 * once; a killed one never finishes). */
static void job_cleanup(const struct cgi *c)
{
	DIR *d = opendir(c->state);
	struct dirent *e;
	int seen = 0;

	while (d && (e = readdir(d)) && seen++ < PROBE_JOB_SCAN_MAX) {
		struct stat st;
		if (strncmp(e->d_name, "probe-", 6) == 0 &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_mtime + PROBE_JOB_KEEP_S < c->now)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	if (d)
		closedir(d);
}

/* What the job tests, from the saved configuration; -1 with j->r.err. */
struct probe_target {
	const char *host, *ca_file;
	int port, mode;
	const unsigned char *pin;
};

static int job_target(struct cgi *c, struct probe_job *j, struct config *cfg,
		      struct probe_target *t)
{
	if (!strcmp(j->kind, "smarthost")) {
		const struct config_smarthost *sh = &cfg->smarthost;
		*t = (struct probe_target){ sh->host, sh->ca_file, sh->port,
			sh->tls == CONFIG_SMTP_IMPLICIT ? PROBE_IMPLICIT : PROBE_SMTP_STARTTLS,
			sh->verify == CONFIG_VERIFY_PIN ? sh->pin.sha256 : NULL };
	} else {
		const struct config_account *a = config_account(cfg, j->name);
		if (!a) {
			snprintf(j->r.err, sizeof j->r.err, "save the account first");
			return -1;
		}
		*t = (struct probe_target){ a->server, a->ca_file, a->port,
			a->tls == CONFIG_POP_IMPLICIT ? PROBE_IMPLICIT : PROBE_POP3_STLS,
			a->verify == CONFIG_VERIFY_PIN ? a->pin.sha256 : NULL };
	}
	(void)c;
	if (!t->host[0]) {
		snprintf(j->r.err, sizeof j->r.err, "no smart host is saved yet");
		return -1;
	}
	snprintf(j->target, sizeof j->target, "%s port %d", t->host, t->port);
	return 0;
}

/* The detached worker: tests, saves the result, exits. */
static void job_run(const char *path, struct probe_job *j, const struct probe_target *t)
{
	int null = open("/dev/null", O_RDWR);

	if (null >= 0) {
		dup2(null, 0), dup2(null, 1), dup2(null, 2);   /* webd waits for EOF */
		close(null);
	}
	setsid();
	probe_tls(t->host, t->port, t->mode, t->ca_file, t->pin, &j->r);
	j->done = 1;
	job_save(path, j);
	_exit(0);
}

/* Starts the job (double fork: nothing waits for the test). 0 or -1. */
static int job_start(struct cgi *c, const char *path, struct probe_job *j)
{
	static struct config_errors errs;
	struct config *cfg = config_load(c->conf, &errs);
	struct probe_target t;
	pid_t pid;
	int bad = !cfg || job_target(c, j, cfg, &t) < 0;

	j->done = bad;
	if (!cfg)
		snprintf(j->r.err, sizeof j->r.err, "the configuration cannot be read");
	if (job_save(path, j) < 0 || bad) {
		config_free(cfg);
		return bad ? 0 : -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (fork() == 0)
			job_run(path, j, &t);
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	config_free(cfg);
	return pid < 0 ? -1 : 0;
}

static void probe_post(struct cgi *c)
{
	static struct probe_job j;
	char id[2 * PROBE_JOB_BYTES + 1], path[1024], loc[96];
	const char *kind = form(c, "kind");

	memset(&j, 0, sizeof j);
	snprintf(j.user, sizeof j.user, "%s", c->s.user);
	snprintf(j.kind, sizeof j.kind, "%s", strcmp(kind, "smarthost") ? "account" : "smarthost");
	snprintf(j.name, sizeof j.name, "%s", form(c, "name"));
	j.started = (long long)c->now;
	job_cleanup(c);
	if (random_hex(id, PROBE_JOB_BYTES) < 0 || job_path(c, id, path, sizeof path) < 0 ||
	    job_start(c, path, &j) < 0) {
		page_begin(c, 500, "Connection test");
		html_out(stdout, "<p class=\"error\" role=\"alert\">The test could not be started.</p>");
		page_end(c);
		return;
	}
	snprintf(loc, sizeof loc, "/probe?id=%s", id);
	redirect(c, loc);
}

static void probe_result_html(struct cgi *c, const struct probe_job *j)
{
	const char *back = strcmp(j->kind, "smarthost") ? "/accounts" : "/smarthost";

	if (j->r.ok)
		html_out(stdout, "<p class=\"notice\">Connected to %s over TLS; the server's "
			 "certificate passed the check.</p>", j->target);
	else
		html_out(stdout, "<p class=\"error\">Failed: %s</p>", j->r.err);
	if (j->r.have_pin)
		html_out(stdout, "<p>Server key SHA-256 (SPKI): <code>%s</code></p><form method=\"post\" "
			 "action=\"%s\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" "
			 "value=\"%s\"><input type=\"hidden\" name=\"op\" value=\"pin\"><input "
			 "type=\"hidden\" name=\"name\" value=\"%s\"><input type=\"hidden\" "
			 "name=\"pin\" value=\"%s\"><button type=\"submit\">Pin this key</button></form> "
			 "<small>Only if this is the fingerprint your provider publishes: from then on "
			 "only this key is accepted.</small>", j->r.pin, back, c->s.csrf, j->name, j->r.pin);
	html_out(stdout, "<p><a href=\"%s%R%u\">Back to the settings</a></p>", back,
		 j->name[0] ? "?name=" : "", j->name);
}

static void probe_get(struct cgi *c)
{
	static struct probe_job j;
	char path[1024];
	const char *id = param(c, "id");

	if (job_path(c, id, path, sizeof path) < 0 || job_load(path, &j) < 0 ||
	    strcmp(j.user, c->s.user) != 0) {
		page_not_found(c);
		return;
	}
	if (!j.done)
		printf("Refresh: %d\r\n", PROBE_REFRESH_S);   /* before page_begin's headers */
	page_begin(c, 200, "Connection test");
	html_out(stdout, "<section role=\"status\" aria-live=\"polite\" aria-busy=\"%R\" "
		 "class=\"progress\">", j.done ? "false" : "true");
	if (!j.done) {
		html_out(stdout, "<meta http-equiv=\"refresh\" content=\"%d\"><p><progress "
			 "aria-label=\"Testing\"></progress> Testing the connection to %s... "
			 "(%d s; at most %d s)</p><p><small>This page updates by itself. "
			 "<a href=\"/probe?id=%u\">Update now</a></small></p>", PROBE_REFRESH_S,
			 j.target, (int)(c->now - j.started), PROBE_TIMEOUT_MS / 1000, id);
	} else {
		probe_result_html(c, &j);
	}
	html_out(stdout, "</section>\n");
	page_end(c);
}

void pg_probe(struct cgi *c)
{
	if (c->post)
		probe_post(c);
	else
		probe_get(c);
}
