/* test_server.c - the servers' shared plumbing: options, listeners from
 * "ADDR:PORT" specs, readiness. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdlib.h>
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

int main(void)
{
	RUN(t_opts);
	RUN(t_listen);
	RUN(t_ready);
	return check_done();
}
