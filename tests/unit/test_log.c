/*
 * test_log.c - log lines: field order, sanitization (no forged lines or
 * fields), length bounds, session ids, peer formatting, the stderr switch.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

static struct log_fields sess;

static void fields(void)
{
	struct sockaddr_in in;

	log_fields_init(&sess);
	memcpy(sess.session, "3f2a9c01", 9);
	memset(&in, 0, sizeof in);
	in.sin_family = AF_INET;
	in.sin_port = htons(51234);
	inet_pton(AF_INET, "192.168.77.20", &in.sin_addr);
	CHECK_EQ(log_set_peer(&sess, (struct sockaddr *)&in, sizeof in), 0);
	log_set_user(&sess, "alice");
	log_set_queue(&sess, "1A2B");
}

static void t_fields(void)
{
	char line[LOG_LINE_MAX];

	fields();
	log_format(line, sizeof line, &sess, "accepted from=<%s> size=%zu", "a@b", (size_t)42);
	CHECK_STREQ(line, "session=3f2a9c01 peer=192.168.77.20:51234 user=alice "
		"queue=1A2B: accepted from=<a@b> size=42");
	log_set_user(&sess, NULL);
	log_set_queue(&sess, "");
	log_format(line, sizeof line, &sess, "x");
	CHECK_STREQ(line, "session=3f2a9c01 peer=192.168.77.20:51234: x");
	log_format(line, sizeof line, NULL, "plain %d", 7);
	CHECK_STREQ(line, "plain 7");
}

/* A value from outside cannot start a new line or add a field. */
static void t_forgery(void)
{
	char line[LOG_LINE_MAX];

	fields();
	log_set_user(&sess, "bob queue=FAKE\nsession=1 peer=evil: root login");
	log_format(line, sizeof line, &sess, "rcpt=<%s>", "x\r\nMar 1 postern: fake\x1b[2J\xc2\x85");
	CHECK(strchr(line, '\n') == NULL);
	CHECK(strchr(line, '\r') == NULL);
	CHECK(strchr(line, '\x1b') == NULL);
	CHECK(strstr(line, "user=bob\\x20queue\\x3dFAKE\\x0asession") != NULL);
	CHECK(strstr(line, " queue=FAKE") == NULL);
	CHECK(strstr(line, "rcpt=<x\\x0d\\x0aMar 1 postern: fake\\x1b[2J\\xc2\\x85>") != NULL);
	for (const char *p = line; *p; p++)
		CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
}

static void t_sanitize(void)
{
	char out[16], again[16];
	size_t n;

	n = log_sanitize(out, sizeof out, "abc", 3, 0);
	CHECK_EQ(n, 3);
	CHECK_STREQ(out, "abc");
	n = log_sanitize(out, sizeof out, "a\0b", 3, 0);
	CHECK_STREQ(out, "a\\x00b");
	/* exactly fits: no cut mark */
	log_sanitize(out, sizeof out, "0123456789abcde", 15, 0);
	CHECK_STREQ(out, "0123456789abcde");
	/* one more: cut with the mark, within cap */
	n = log_sanitize(out, sizeof out, "0123456789abcdef", 16, 0);
	CHECK_STREQ(out, "0123456789ab...");
	CHECK_EQ(n, 15);
	/* an escape is never split */
	n = log_sanitize(out, sizeof out, "0123456789\n\n\n", 13, 0);
	CHECK_STREQ(out, "0123456789...");
	/* idempotent */
	log_sanitize(out, sizeof out, "a b=\x01", 5, 1);
	CHECK_STREQ(out, "a\\x20b\\x3d\\x01");
	log_sanitize(out, sizeof out, "a b=\x01\x02", 6, 1);
	CHECK_STREQ(out, "a\\x20b\\x3d...");
	log_sanitize(again, sizeof again, out, strlen(out), 1);
	CHECK_STREQ(again, out);
	CHECK_EQ(log_sanitize(out, 0, "x", 1, 0), 0);
	CHECK_EQ(log_sanitize(out, 2, "xyz", 3, 0), 1);
}

/* Lines and values are bounded. */
static void t_bounds(void)
{
	char big[4000], line[LOG_LINE_MAX + 100];
	size_t n;

	memset(big, 'u', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	fields();
	log_set_user(&sess, big);
	CHECK_EQ(strlen(sess.user), LOG_VALUE_MAX - 1);
	CHECK(strstr(sess.user, "...") != NULL);
	n = log_format(line, sizeof line, &sess, "msg %s", big);
	CHECK(n <= LOG_LINE_MAX - 1);
	CHECK_EQ(strlen(line), n);
	CHECK(strcmp(line + n - 3, "...") == 0);
	n = log_format(line, 20, &sess, "m");
	CHECK(n < 20);
}

static void t_session_ids(void)
{
	char a[LOG_SESSION_LEN + 1], b[LOG_SESSION_LEN + 1];
	int differ = 0;

	for (int i = 0; i < 4; i++) {
		log_session_id(a);
		log_session_id(b);
		CHECK_EQ(strlen(a), LOG_SESSION_LEN);
		CHECK(strspn(a, "0123456789abcdef") == LOG_SESSION_LEN);
		differ += strcmp(a, b) != 0;
	}
	CHECK(differ >= 3);
}

static void t_peer(void)
{
	struct sockaddr_in6 in6;
	struct sockaddr sa;

	memset(&in6, 0, sizeof in6);
	in6.sin6_family = AF_INET6;
	in6.sin6_port = htons(993);
	inet_pton(AF_INET6, "fd00::1", &in6.sin6_addr);
	CHECK_EQ(log_set_peer(&sess, (struct sockaddr *)&in6, sizeof in6), 0);
	CHECK_STREQ(sess.peer, "[fd00::1]:993");
	memset(&sa, 0, sizeof sa);
	sa.sa_family = AF_UNIX;
	CHECK_EQ(log_set_peer(&sess, &sa, sizeof sa), 0);
	CHECK_STREQ(sess.peer, "local");
	CHECK_EQ(log_set_peer(&sess, NULL, 0), -1);
	CHECK_STREQ(sess.peer, "?");
}

/* LOG_DEST_STDERR writes "service[pid]: level: line"; levels filter. */
static void t_stderr(void)
{
	char path[] = "/tmp/test_log.XXXXXX", buf[512], want[256];
	int fd = mkstemp(path), saved = dup(2);
	ssize_t n;

	CHECK(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	log_open("postern-test", LOG_MAIL, LOG_DEST_STDERR);
	fields();
	log_msg(LOG_INFO, &sess, "hello %s", "w\norld");
	log_msg(LOG_DEBUG, &sess, "hidden");
	log_set_level(LOG_DEBUG);
	log_msg(LOG_DEBUG, NULL, "shown");
	log_set_level(LOG_INFO);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, buf, sizeof buf - 1, 0);
	CHECK(n > 0);
	buf[n > 0 ? n : 0] = '\0';
	snprintf(want, sizeof want, "postern-test[%ld]: info: session=3f2a9c01 "
		"peer=192.168.77.20:51234 user=alice queue=1A2B: hello w\\x0aorld\n"
		"postern-test[%ld]: debug: shown\n", (long)getpid(), (long)getpid());
	CHECK_STREQ(buf, want);
	close(fd);
	unlink(path);
	/* syslog destination: must not crash without a syslogd */
	log_set_dest(LOG_DEST_SYSLOG);
	log_msg(LOG_INFO, &sess, "to syslog");
	log_close();
}

int main(void)
{
	RUN(t_fields);
	RUN(t_forgery);
	RUN(t_sanitize);
	RUN(t_bounds);
	RUN(t_session_ids);
	RUN(t_peer);
	RUN(t_stderr);
	return check_done();
}
