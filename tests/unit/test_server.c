/* test_server.c - the servers' shared plumbing: options, listeners from
 * "ADDR:PORT" specs, readiness. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "server.h"

static void t_opts(void)
{
	static const struct option longopts[] = { SERVER_LONGOPTS, { "mine", 1, NULL, 'm' },
						  { NULL, 0, NULL, 0 } };
	char *argv[] = { "x", "-c", "/c", "--cert", "/crt", "--user", "smtpd", "--ready-fd", "7",
			 "-f", "--mine", "m", NULL };
	struct server_opts o;
	int ch, own = 0;

	server_opts_defaults(&o);
	CHECK_STREQ(o.users, "/data/etc/users");
	CHECK_EQ(o.ready_fd, -1);
	optind = 1;
	while ((ch = getopt_long(12, argv, SERVER_SHORTOPTS, longopts, NULL)) != -1)
		if (!server_opt(&o, ch, optarg))
			own += ch == 'm';
	CHECK_STREQ(o.config, "/c");
	CHECK_STREQ(o.cert, "/crt");
	CHECK_STREQ(o.run_user, "smtpd");
	CHECK_EQ(o.ready_fd, 7);
	CHECK_EQ(o.foreground, 1);
	CHECK_EQ(own, 1);
}

static void t_listen(void)
{
	struct sockaddr_in sa;
	socklen_t l = sizeof sa;
	struct config_addr a;
	char spec[SERVER_SPEC_MAX];
	int fd = server_listen("127.0.0.1:0", SERVER_BACKLOG), c;

	CHECK(fd >= 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &l), 0);
	c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_EQ(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
	close(c);
	close(fd);
	CHECK_EQ(server_listen("127.0.0.1", 8), -1);          /* no port */
	CHECK_EQ(server_listen("[::1:25", 8), -1);            /* no ']' */
	CHECK_EQ(server_listen("host.example:25", 8), -1);    /* numeric only */
	memset(&a, 0, sizeof a);
	a.family = AF_INET6;
	CHECK_EQ(inet_pton(AF_INET6, "fd00::1", a.a), 1);
	CHECK_EQ(server_spec(&a, 587, spec, sizeof spec), 0);
	CHECK_STREQ(spec, "[fd00::1]:587");
}

static void t_ready(void)
{
	int p[2], w;
	char buf[4] = "";

	CHECK_EQ(pipe(p), 0);
	w = p[1];
	server_ready(&w);
	CHECK_EQ(w, -1);
	CHECK_EQ(read(p[0], buf, sizeof buf), 1);
	CHECK_EQ(buf[0], '\n');
	CHECK_EQ(read(p[0], buf, sizeof buf), 0);             /* closed */
	close(p[0]);
	server_ready(&w);                                     /* nothing to do */
}

/* A server without a configuration file (imapd) takes the base set:
 * --config, -c and --hostname are unknown options there. */
static void t_opts_base(void)
{
	static const struct option longopts[] = { SERVER_LONGOPTS_BASE, { NULL, 0, NULL, 0 } };
	char *ok[] = { "x", "-u", "/u", "--throttle", "/t", "--key", "/k", NULL };
	char *bad[][3] = { { "x", "--config", "/c" }, { "x", "-c", "/c" },
			   { "x", "--hostname", "h" } };
	struct server_opts o;
	int ch, unknown = 0;

	server_opts_defaults(&o);
	optind = 1;
	while ((ch = getopt_long(7, ok, SERVER_SHORTOPTS_BASE, longopts, NULL)) != -1)
		unknown += !server_opt(&o, ch, optarg);
	CHECK_EQ(unknown, 0);
	CHECK_STREQ(o.users, "/u");
	CHECK_STREQ(o.throttle, "/t");
	CHECK_STREQ(o.key, "/k");
	CHECK_STREQ(o.config, "/data/etc/postern.conf");
	opterr = 0;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		optind = 1;
		ch = getopt_long(3, bad[i], SERVER_SHORTOPTS_BASE, longopts, NULL);
		CHECK_EQ(ch, '?');
	}
	opterr = 1;
}

static int accepted;

static void on_accept(struct evloop *l, struct evl_io *io, unsigned events)
{
	int c = accept(io->fd, NULL, NULL);

	(void)l;
	(void)events;
	accepted += c >= 0;
	if (c >= 0)
		close(c);
}

static void t_listen_io(void)
{
	static struct evl_timer *heap[4];
	struct evloop loop;
	struct evl_io io;
	struct sockaddr_in sa;
	socklen_t l = sizeof sa;
	int fd, c;

	CHECK_EQ(evl_init(&loop, heap, 4), 0);
	fd = server_listen_io(&loop, &io, "127.0.0.1:0", on_accept, NULL);
	CHECK(fd >= 0);
	CHECK_EQ(io.fd, fd);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &l), 0);
	c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_EQ(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
	for (int i = 0; i < 50 && !accepted; i++)
		evl_run_once(&loop, 100);
	CHECK_EQ(accepted, 1);
	close(c);
	evl_io_del(&loop, &io);
	close(fd);
	CHECK_EQ(server_listen_io(&loop, &io, "127.0.0.1", on_accept, NULL), -1);
	evl_free(&loop);
}

static void write_file(const char *path, const char *text, time_t mtime)
{
	FILE *f = fopen(path, "w");
	struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };

	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
	CHECK_EQ(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void t_users_refresh(void)
{
	char dir[] = "/tmp/test_server.XXXXXX", path[64];
	struct users_db db;
	struct timespec mt = { 0, 0 };

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/users", dir);
	users_init(&db);
	CHECK_EQ(server_users_refresh(&db, &mt, path), 0);    /* missing, time 0: as is */
	CHECK_EQ(db.n, 0);
	write_file(path, "user carol user !\n", 1000);
	CHECK_EQ(server_users_refresh(&db, &mt, path), 1);
	CHECK_EQ(db.n, 1);
	CHECK_EQ(mt.tv_sec, 1000);
	CHECK_EQ(server_users_refresh(&db, &mt, path), 0);    /* unchanged */
	write_file(path, "user carol user !\nbogus line\n", 2000);
	CHECK_EQ(server_users_refresh(&db, &mt, path), -1);   /* invalid: keeps carol */
	CHECK_EQ(db.n, 1);
	CHECK(users_find(&db, "carol") != NULL);
	write_file(path, "user carol user !\nuser dave user !\n", 2000);
	CHECK_EQ(server_users_refresh(&db, &mt, path), 1);    /* the failed load left the time */
	CHECK_EQ(db.n, 2);
	mt = (struct timespec){ 0, 0 };                       /* forced (SIGHUP) */
	CHECK_EQ(server_users_refresh(&db, &mt, path), 1);
	unlink(path);
	CHECK_EQ(server_users_refresh(&db, &mt, path), 1);    /* removed: no users */
	CHECK_EQ(db.n, 0);
	users_free(&db);
	rmdir(dir);
}

/* The configuration a server loads and reloads (SIGHUP), and the name it
 * announces. */
static void t_config(void)
{
	char dir[] = "/tmp/test_server.XXXXXX", path[64];
	struct server_opts o;
	struct config *cfg, *before;
	char name[32];

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/postern.conf", dir);
	CHECK(server_config_load(path) == NULL);              /* missing */
	write_file(path, "hostname mx\ninternal-domain office.lan\nmail-domain example.com\n", 1000);
	cfg = server_config_load(path);
	CHECK(cfg != NULL);
	server_opts_defaults(&o);
	CHECK_EQ(server_hostname(&o, cfg, name, sizeof name), 0);
	CHECK_STREQ(name, "mx.office.lan");
	CHECK_EQ(server_hostname(&o, cfg, name, 8), -1);      /* does not fit */
	o.hostname = "given.example";
	CHECK_EQ(server_hostname(&o, cfg, name, sizeof name), 0);
	CHECK_STREQ(name, "given.example");
	before = cfg;
	write_file(path, "hostname\n[nosuchsection]\n", 2000);
	CHECK_EQ(server_config_reload(&cfg, path), -1);       /* invalid: kept */
	CHECK(cfg == before);
	CHECK_STREQ(cfg->global.hostname, "mx");
	write_file(path, "hostname box\nmail-domain example.com\n", 3000);
	CHECK_EQ(server_config_reload(&cfg, path), 1);
	CHECK_STREQ(cfg->global.hostname, "box");
	config_free(cfg);
	unlink(path);
	rmdir(dir);
}

static int got_signal;

static void on_sig(struct evloop *l, int signo, void *ctx)
{
	(void)l;
	(void)ctx;
	got_signal = signo;
}

/* SIGTERM, SIGINT and SIGHUP all reach the loop's callback. */
static void t_signals(void)
{
	static struct evl_timer *heap[4];
	static const int sigs[] = { SIGHUP, SIGINT, SIGTERM };
	struct evloop loop;

	CHECK_EQ(evl_init(&loop, heap, 4), 0);
	CHECK_EQ(server_signals(&loop, on_sig, NULL), 0);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		got_signal = 0;
		CHECK_EQ(raise(sigs[i]), 0);
		for (int k = 0; k < 50 && !got_signal; k++)
			evl_run_once(&loop, 100);
		CHECK_EQ(got_signal, sigs[i]);
	}
	evl_free(&loop);
}

/* The exit status of a child calling server_drop_or_die(user, 42). */
static int drop_status(const char *user)
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		server_drop_or_die(user, 42);
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* As root no user, or an unknown one, ends the process: never serve as
 * root. Not root: nothing to drop. */
static void t_drop(void)
{
	int want = geteuid() == 0 ? 42 : 0;

	CHECK_EQ(drop_status(NULL), want);
	CHECK_EQ(drop_status("no-such-user-here"), want);
	if (geteuid() == 0)
		CHECK_EQ(drop_status("nobody"), 0);
}

static int own_m(void *ctx, int ch, const char *arg)
{
	if (ch != 'm')
		return 0;
	*(const char **)ctx = arg;
	return 1;
}

static const struct option parse_longopts[] = { SERVER_LONGOPTS_BASE, { "mine", 1, NULL, 'm' },
						{ NULL, 0, NULL, 0 } };

/* The exit status of a child parsing argv (0: parsed). */
static int parse_status(int argc, char **argv)
{
	const char *mine = NULL;
	const struct server_args a = { SERVER_SHORTOPTS_BASE, parse_longopts, "", own_m, &mine };
	struct server_opts o;
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		opterr = 0;
		server_parse_args(&o, &a, argc, argv);
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Common options, the server's own, and usage errors (exit 100). */
static void t_parse_args(void)
{
	char *good[] = { "x", "--mine", "m", "-u", "/u", "--user", "imapd", NULL };
	char *unknown[] = { "x", "--config", "/c", NULL };
	char *operand[] = { "x", "-f", "extra", NULL };
	char *missing[] = { "x", "--mine", NULL };
	const char *mine = NULL;
	const struct server_args a = { SERVER_SHORTOPTS_BASE, parse_longopts, "", own_m, &mine };
	struct server_opts o;

	server_parse_args(&o, &a, 7, good);
	CHECK_STREQ(mine, "m");
	CHECK_STREQ(o.users, "/u");
	CHECK_STREQ(o.run_user, "imapd");
	CHECK_STREQ(o.cert, "/data/secrets/tls/server.crt");     /* defaults filled */
	CHECK_EQ(parse_status(7, good), 0);
	CHECK_EQ(parse_status(3, unknown), SERVER_EXIT_USAGE);
	CHECK_EQ(parse_status(3, operand), SERVER_EXIT_USAGE);
	CHECK_EQ(parse_status(2, missing), SERVER_EXIT_USAGE);
}

int main(void)
{
	RUN(t_opts);
	RUN(t_listen);
	RUN(t_ready);
	RUN(t_opts_base);
	RUN(t_listen_io);
	RUN(t_users_refresh);
	RUN(t_config);
	RUN(t_signals);
	RUN(t_drop);
	RUN(t_parse_args);
	return check_done();
}
