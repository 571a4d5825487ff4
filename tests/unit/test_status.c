/*
 * test_status.c - status records (src/lib/status.h): format/parse round
 * trip, the parser's bounds, result words, the failure counter, listing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "status.h"

static char dir[64];

static void t_roundtrip(void)
{
	struct status_rec r = { .kind = "fetch", .name = "acme-1", .time = 1764393000,
				.result = STATUS_LOGIN, .fetched = 3, .failures = 2,
				.last_ok = 1764390000, .detail = "login as bob failed:\n-ERR no" };
	struct status_rec q;
	char buf[STATUS_FILE_MAX + 1];
	int n = status_format(&r, buf, sizeof buf);

	CHECK(n > 0);
	CHECK(strstr(buf, "result=login\n") != NULL);
	CHECK(strstr(buf, "detail=login as bob failed: -ERR no\n") != NULL);  /* no line break */
	CHECK_EQ(status_parse(buf, (size_t)n, &q), 0);
	CHECK_STREQ(q.kind, "fetch");
	CHECK_STREQ(q.name, "acme-1");
	CHECK_EQ(q.time, 1764393000);
	CHECK_EQ(q.result, STATUS_LOGIN);
	CHECK_EQ(q.fetched, 3);
	CHECK_EQ(q.failures, 2);
	CHECK_EQ(q.last_ok, 1764390000);
	CHECK_EQ(status_format(&r, buf, 20), -1);   /* does not fit */
}

static int parses(const char *text)
{
	struct status_rec r;

	return status_parse(text, strlen(text), &r) == 0;
}

static void t_parse_bounds(void)
{
	char big[STATUS_FILE_MAX + 64], longline[STATUS_LINE_MAX + 32];

	CHECK(parses("kind=fetch\nname=a\n"));
	CHECK(parses("kind=fetch\nname=a\nfuture-key=whatever\n"));   /* unknown: skipped */
	CHECK(parses("kind=fetch\nname=a"));                          /* no final newline */
	CHECK(!parses("name=a\n"));                                   /* kind missing */
	CHECK(!parses("kind=fetch\n"));                               /* name missing */
	CHECK(!parses("kind=fe-tch\nname=a\n"));                      /* '-' in a kind */
	CHECK(!parses("kind=fetch\nname=../x\n"));
	CHECK(!parses("kind=fetch\nname=.hidden\n"));
	CHECK(!parses("kind=fetch\nname=a b\n"));
	CHECK(!parses("kind=fetch\nname=a\nnoequals\n"));
	CHECK(!parses("kind=fetch\nname=a\n=x\n"));
	CHECK(!parses("kind=fetch\nname=a\ntime=-1\n"));
	CHECK(!parses("kind=fetch\nname=a\ntime=12x\n"));
	CHECK(!parses("kind=fetch\nname=a\ntime=99999999999999\n"));
	CHECK(!parses("kind=fetch\nname=a\nfetched=\n"));
	CHECK(!parses("kind=fetch\nname=a\nresult=bogus\n"));
	CHECK(!parses("kind=fetch\nname=a\ndetail=a\rb\n"));          /* control byte */
	CHECK(!parses("kind=fetch\nname=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"));
	memset(longline, 'x', sizeof longline);
	memcpy(longline, "kind=fetch\nname=a\ndetail=", 25);
	longline[sizeof longline - 1] = '\0';
	CHECK(!parses(longline));
	memset(big, '\n', sizeof big);
	memcpy(big, "kind=fetch\nname=a\n", 18);
	big[sizeof big - 1] = '\0';
	CHECK(!parses(big));                                          /* over STATUS_FILE_MAX */
	{
		struct status_rec r;
		CHECK_EQ(status_parse("kind=fetch\0name=a\n", 18, &r), -1);   /* NUL inside */
	}
}

static void t_words(void)
{
	CHECK_STREQ(status_result_text(STATUS_LOGIN), "wrong user name or password");
	CHECK_STREQ(status_result_text(STATUS_TLS_PIN), "certificate does not match the pin");
	CHECK_STREQ(status_result_text(STATUS_UNREACHABLE), "server unreachable");
	CHECK_STREQ(status_result_text(99), "failed");
	for (int i = 0; i < STATUS_NRESULTS; i++)
		CHECK_EQ(status_result_parse(status_result_token(i)), i);
	CHECK_EQ(status_result_parse("nope"), -1);
	CHECK_EQ(status_tls_result("server key does not match the pin abc; seen def"), STATUS_TLS_PIN);
	CHECK_EQ(status_tls_result("certificate does not match the server name"), STATUS_TLS_NAME);
	CHECK_EQ(status_tls_result("certificate not trusted (unknown issuer)"), STATUS_TLS_CA);
	CHECK_EQ(status_tls_result("certificate expired or not yet valid"), STATUS_TLS_CA);
	CHECK_EQ(status_tls_result("handshake timed out"), STATUS_TLS);
	CHECK_EQ(status_classify("connect to smtp.example port 465: Connection refused"),
		 STATUS_UNREACHABLE);
	CHECK_EQ(status_classify("timeout (connect)"), STATUS_UNREACHABLE);
	CHECK_EQ(status_classify("cannot resolve smtp.example: Name does not resolve"),
		 STATUS_UNREACHABLE);
	CHECK_EQ(status_classify("the server does not offer STARTTLS: nothing sent"), STATUS_NO_STLS);
	CHECK_EQ(status_classify("TLS: server key does not match the pin ab; nothing sent"),
		 STATUS_TLS_PIN);
	CHECK_EQ(status_classify("TLS: certificate does not match the server name"), STATUS_TLS_NAME);
	CHECK_EQ(status_classify("timeout (TLS handshake)"), STATUS_TLS);
	CHECK_EQ(status_classify("AUTH: 535 5.7.8 authentication failed"), STATUS_LOGIN);
	CHECK_EQ(status_classify("connection closed by the server"), STATUS_PROTOCOL);
	CHECK_EQ(status_classify("event loop full"), STATUS_FAILED);
}

static void t_record(void)
{
	struct status_rec r;

	errno = 0;
	CHECK_EQ(status_read(dir, "fetch", "acme", &r), -1);
	CHECK_EQ(errno, ENOENT);
	CHECK_EQ(status_record(dir, "fetch", "acme", 100, STATUS_UNREACHABLE, 0, "connect: refused"), 0);
	CHECK_EQ(status_record(dir, "fetch", "acme", 200, STATUS_LOGIN, 0, "-ERR"), 0);
	CHECK_EQ(status_read(dir, "fetch", "acme", &r), 0);
	CHECK_EQ(r.failures, 2);
	CHECK_EQ(r.last_ok, 0);
	CHECK_EQ(r.result, STATUS_LOGIN);
	CHECK_EQ(status_record(dir, "fetch", "acme", 300, STATUS_OK, 7, ""), 0);
	CHECK_EQ(status_read(dir, "fetch", "acme", &r), 0);
	CHECK_EQ(r.failures, 0);
	CHECK_EQ(r.last_ok, 300);
	CHECK_EQ(r.fetched, 7);
	CHECK_EQ(status_record(dir, "fetch", "acme", 400, STATUS_PROTOCOL, 0, ""), 0);
	CHECK_EQ(status_read(dir, "fetch", "acme", &r), 0);
	CHECK_EQ(r.failures, 1);
	CHECK_EQ(r.last_ok, 300);                                     /* kept */
	CHECK_EQ(status_record(dir, "fetch", "../evil", 1, STATUS_OK, 0, ""), -1);
	CHECK_EQ(status_record(dir, "fe-tch", "x", 1, STATUS_OK, 0, ""), -1);
}

static void count(const struct status_rec *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
}

static void t_list(void)
{
	char p[128];
	FILE *f;
	int n = 0;

	CHECK_EQ(status_record(dir, "fetch", "beta", 1, STATUS_OK, 0, ""), 0);
	CHECK_EQ(status_record(dir, "relay", "smarthost", 1, STATUS_OK, 0, ""), 0);
	snprintf(p, sizeof p, "%s/fetch-broken", dir);
	f = fopen(p, "w");
	if (f) {
		fputs("garbage\n", f);
		fclose(f);
	}
	CHECK_EQ(status_list(dir, "fetch", 100, count, &n), 2);     /* acme, beta; broken skipped */
	CHECK_EQ(n, 2);
	n = 0;
	CHECK_EQ(status_list(dir, NULL, 100, count, &n), 3);
	CHECK_EQ(status_list(dir, NULL, 1, count, &n), 1);
	CHECK_EQ(status_list("/nonexistent/status", NULL, 10, count, &n), -1);
}

static void t_blocked(void)
{
	static const char log[] =
		"Nov 29 05:10:01 postern kern.warn kernel: [  12.5] postern-fw blocked: IN=br-lan "
		"OUT=eth0 MAC=52:54 SRC=192.168.10.100 DST=203.0.113.5 LEN=60 TOS=0x00 PROTO=TCP "
		"SPT=40000 DPT=110 WINDOW=64240 SYN URGP=0\n"
		"Nov 29 05:10:02 postern smtpd[1]: SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP DPT=25 no prefix\n"
		"Nov 29 05:11:07 postern kern.warn kernel: postern-fw blocked: IN=br-lan OUT=eth0 "
		"SRC=192.168.10.100 DST=203.0.113.5 PROTO=TCP SPT=40001 DPT=110\n"
		"Nov 29 05:12:00 postern kern.warn kernel: postern-fw blocked: IN=br-lan OUT=eth0 "
		"SRC=192.168.10.101 DST=9.9.9.9 PROTO=UDP SPT=5353 DPT=53 LEN=40\n"
		"postern-fw blocked: SRC=192.168.10.7 DST=9.9.9.9 PROTO=TCP DPT=99999\n"   /* bad port */
		"postern-fw blocked: SRC=192.168.10.7 DST=9.9.9.9 PROTO=TCP\n"             /* no DPT */
		"postern-fw blocked: SRC=192.168.10.7 DST=9.9.9.9 PROTO=TCPTCPTCP DPT=1\n" /* too long */
		"postern-fw blocked: XSRC=1 SRC=192.168.10.8 DST=8.8.4.4 PROTO=TCP DPT=853";
	struct status_blocked b[4];
	int n = status_blocked_parse(log, sizeof log - 1, b, 4);

	CHECK_EQ(n, 3);
	CHECK_STREQ(b[0].src, "192.168.10.100");
	CHECK_STREQ(b[0].dst, "203.0.113.5");
	CHECK_STREQ(b[0].proto, "TCP");
	CHECK_EQ(b[0].port, 110);
	CHECK_EQ(b[0].count, 2);
	CHECK_STREQ(b[0].last, "Nov 29 05:11:07");
	CHECK_STREQ(b[1].src, "192.168.10.101");
	CHECK_EQ(b[1].port, 53);
	CHECK_STREQ(b[1].proto, "UDP");
	CHECK_STREQ(b[2].src, "192.168.10.8");     /* no final newline; XSRC= is not SRC= */
	CHECK_EQ(b[2].port, 853);
	CHECK_STREQ(b[2].last, "");
	CHECK_EQ(status_blocked_parse(log, sizeof log - 1, b, 1), 1);   /* capped */
	{
		static const char nul[] = "postern-fw blocked: SRC=1.2.3.4 DST=\0x PROTO=TCP DPT=1\n"
					  "postern-fw blocked: SRC=1.2.3.4 DST=5\t6 PROTO=TCP DPT=1\n";
		CHECK_EQ(status_blocked_parse(nul, sizeof nul - 1, b, 4), 0);   /* fuzz finding */
	}
	CHECK_EQ(b[0].count, 2);
}

static void t_dir_env(void)
{
	setenv("POSTERN_STATUS_DIR", "/tmp/x", 1);
	CHECK_STREQ(status_dir(), "/tmp/x");
	unsetenv("POSTERN_STATUS_DIR");
	CHECK_STREQ(status_dir(), STATUS_DIR_DEFAULT);
}

int main(void)
{
	char cmd[128];

	snprintf(dir, sizeof dir, "/tmp/test_status.%d/st", (int)getpid());
	errno = 0;
	CHECK_EQ(status_dir_init(dir), -1);               /* no parents made */
	CHECK_EQ(errno, ENOENT);
	snprintf(cmd, sizeof cmd, "/tmp/test_status.%d", (int)getpid());
	CHECK_EQ(mkdir(cmd, 0700), 0);
	CHECK_EQ(status_dir_init(dir), 0);
	CHECK_EQ(status_dir_init(dir), 0);                /* exists: left alone */
	RUN(t_roundtrip);
	RUN(t_parse_bounds);
	RUN(t_words);
	RUN(t_record);
	RUN(t_list);
	RUN(t_blocked);
	RUN(t_dir_env);
	snprintf(cmd, sizeof cmd, "rm -rf /tmp/test_status.%d", (int)getpid());
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	return check_done();
}
