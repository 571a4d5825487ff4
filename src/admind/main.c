/*
 * main.c - admind: the web page's privileged helper (admind.h, docs/web.md).
 * One request per connection, served one after another: changes are
 * serialised, and a slow client is cut off after ADM_TIMEOUT_S.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "admind.h"

static const char usage[] =
	"usage: admind [--socket PATH] [--allow-user NAME | --allow-uid N]\n"
	"       [--conf PATH] [--users PATH] [--secrets DIR] [--tls-dir DIR]\n"
	"       [--setup-code PATH] [--console PATH] [--sv PATH] [--service-dir DIR]\n"
	"       [--log PATH] [--queue DIR] [--users-group NAME] [--mail DIR]\n"
	"       [--network PATH] [--certtool PATH] [--cert-renew PATH] [--ready-fd N]\n";

static void defaults(struct adm_opts *o)
{
	o->socket = "/run/postern/admind.sock";
	o->allow_user = "web";
	o->allow_uid = -1;
	o->conf = "/data/etc/postern.conf";
	o->users = "/data/etc/users";
	o->secrets = "/data/secrets";
	o->tls_dir = "/data/secrets/tls";
	o->setup_code = "/data/etc/setup-code";
	o->console = "/dev/console";
	o->sv = "sv";
	o->service_dir = "/run/service";
	o->log = "/data/log/messages";
	o->queue = "/data/queue";
	o->mail = "/data/mail";
	o->ready_fd = -1;
	o->users_group = "auth";
	o->network = "/usr/libexec/postern/network";
	o->certtool = "postern-certtool";
	o->cert_renew = "/usr/libexec/postern/firstboot-certs";
}

static int parse_opts(struct adm_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", 1, 0, 's' }, { "allow-user", 1, 0, 'u' }, { "allow-uid", 1, 0, 'U' },
		{ "conf", 1, 0, 'c' }, { "users", 1, 0, 'w' }, { "secrets", 1, 0, 'S' },
		{ "tls-dir", 1, 0, 't' }, { "setup-code", 1, 0, 'p' }, { "console", 1, 0, 'C' },
		{ "sv", 1, 0, 'v' }, { "service-dir", 1, 0, 'd' }, { "log", 1, 0, 'l' },
		{ "queue", 1, 0, 'q' }, { "ready-fd", 1, 0, 'r' }, { "users-group", 1, 0, 'g' }, { "mail", 1, 0, 'm' },
		{ "network", 1, 0, 'n' }, { "certtool", 1, 0, 'T' }, { "cert-renew", 1, 0, 'R' },
		{ 0, 0, 0, 0 },
	};
	int c;

	defaults(o);
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': o->socket = optarg; break;
		case 'u': o->allow_user = optarg; break;
		case 'U': o->allow_uid = atol(optarg); break;
		case 'c': o->conf = optarg; break;
		case 'w': o->users = optarg; break;
		case 'S': o->secrets = optarg; break;
		case 't': o->tls_dir = optarg; break;
		case 'p': o->setup_code = optarg; break;
		case 'C': o->console = optarg; break;
		case 'v': o->sv = optarg; break;
		case 'd': o->service_dir = optarg; break;
		case 'l': o->log = optarg; break;
		case 'q': o->queue = optarg; break;
		case 'r': o->ready_fd = atoi(optarg); break;
		case 'g': o->users_group = optarg; break;
		case 'm': o->mail = optarg; break;
		case 'n': o->network = optarg; break;
		case 'T': o->certtool = optarg; break;
		case 'R': o->cert_renew = optarg; break;
		default: return -1;
		}
	}
	return optind == argc ? 0 : -1;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof sa.sun_path)
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	/* anyone may connect; SO_PEERCRED decides who is served */
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, 16) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* 1 when the peer is root or the allowed uid. */
static int peer_allowed(int fd, long allow_uid)
{
	struct ucred cr;
	socklen_t len = sizeof cr;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return 0;
	return cr.uid == 0 || (allow_uid >= 0 && (long)cr.uid == allow_uid);
}

/* Reads the request (until EOF) into buf; returns its length or -1. */
static ssize_t read_request(int fd, char *buf, size_t cap)
{
	struct timeval tv = { .tv_sec = ADM_TIMEOUT_S };
	size_t len = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n > 0 && len + (size_t)n == cap))
			return -1;   /* timeout, error, or too large */
		if (n == 0)
			return (ssize_t)len;
		len += (size_t)n;
	}
}

/* Splits NUL-separated fields in place; returns their count or -1. */
static int split_fields(char *buf, size_t len, char **argv)
{
	int argc = 0;
	size_t start = 0;

	if (len == 0 || buf[len - 1] != '\0')
		return -1;   /* every field, the last included, ends in NUL */
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\0')
			continue;
		if (argc == ADM_ARGS_MAX)
			return -1;
		argv[argc++] = buf + start;
		start = i + 1;
	}
	return argc;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w, n -= (size_t)w;
	}
}

static void serve(const struct adm_opts *o, int fd, char *buf)
{
	char *argv[ADM_ARGS_MAX], *ans = NULL;
	size_t anslen = 0;
	ssize_t len = read_request(fd, buf, ADM_REQUEST_MAX);
	struct adm_req r = { .o = o };

	r.out = open_memstream(&ans, &anslen);
	if (!r.out)
		return;
	if (len < 0 || (r.argc = split_fields(buf, (size_t)len, argv)) < 1)
		adm_error(&r, "-", "malformed request");
	else {
		r.argv = argv;
		adm_dispatch(&r);
	}
	if (!r.failed && ftell(r.out) == 0)
		fputs("ok\n", r.out);
	fclose(r.out);
	write_all(fd, ans, anslen);
	free(ans);
	memset(buf, 0, (size_t)(len > 0 ? len : 0));   /* passwords */
}

static long resolve_uid(const struct adm_opts *o)
{
	struct passwd *pw;

	if (o->allow_uid >= 0)
		return o->allow_uid;
	pw = getpwnam(o->allow_user);
	return pw ? (long)pw->pw_uid : -1;
}

int main(int argc, char **argv)
{
	static char buf[ADM_REQUEST_MAX];
	struct adm_opts o;
	long uid;
	int lfd;

	if (parse_opts(&o, argc, argv) < 0) {
		fputs(usage, stderr);
		return 100;
	}
	openlog("admind", LOG_PID, LOG_DAEMON);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	uid = resolve_uid(&o);
	if (uid < 0)
		fprintf(stderr, "admind: no user %s: only root is served\n", o.allow_user);
	umask(022);
	lfd = listen_unix(o.socket);
	if (lfd < 0) {
		fprintf(stderr, "admind: %s: %s\n", o.socket, strerror(errno));
		return 111;
	}
	adm_setup_code_init(&o);
	fprintf(stderr, "admind: listening on %s\n", o.socket);
	if (o.ready_fd >= 0) {
		(void)!write(o.ready_fd, "\n", 1);
		close(o.ready_fd);
	}
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (peer_allowed(fd, uid))
			serve(&o, fd, buf);
		else
			syslog(LOG_WARNING, "refused a request from a uid other than %ld", uid);
		close(fd);
	}
}
