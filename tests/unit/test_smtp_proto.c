/* test_smtp_proto.c - the SMTP protocol core driven from byte arrays:
 * sequencing, STARTTLS injection, AUTH before TLS, smuggling, limits,
 * headers added, parsers, and the submission policy. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smtp-proto.h"

/* ---- a scripted session -------------------------------------------------- */

struct rec {
	char msg[65536];
	size_t msglen;
	int starts, ends, aborts, auths;
	enum smtp_verdict mail_v, end_v;
	int throttled;
	int auth_later;      /* the auth hook answers SMTP_PENDING */
	char out[65536];     /* every reply, accumulated */
	size_t outlen;
};

static enum smtp_verdict h_auth(void *ctx, struct smtp_server *s, const char *u, const char *p)
{
	struct rec *r = ctx;

	(void)s;
	r->auths++;
	if (r->auth_later)
		return SMTP_PENDING;
	if (r->throttled)
		return SMTP_AUTH_THROTTLED;
	return strcmp(u, "alice") == 0 && strcmp(p, "secret") == 0 ? SMTP_OK : SMTP_AUTH_FAILED;
}

static enum smtp_verdict h_mail(void *ctx, struct smtp_server *s)
{
	(void)s;
	return ((struct rec *)ctx)->mail_v;
}

static enum smtp_verdict h_rcpt(void *ctx, struct smtp_server *s, const char *a)
{
	(void)ctx;
	(void)s;
	return strncmp(a, "nobody@", 7) == 0 ? SMTP_RCPT_UNKNOWN : SMTP_OK;
}

static enum smtp_verdict h_start(void *ctx, struct smtp_server *s)
{
	struct rec *r = ctx;

	r->starts++;
	r->msglen = 0;
	strcpy(s->txn.queue_id, "Q1");
	return SMTP_OK;
}

static int h_write(void *ctx, struct smtp_server *s, const char *b, size_t n)
{
	struct rec *r = ctx;

	(void)s;
	if (r->msglen + n > sizeof r->msg)
		return -1;
	memcpy(r->msg + r->msglen, b, n);
	r->msglen += n;
	return 0;
}

static enum smtp_verdict h_end(void *ctx, struct smtp_server *s)
{
	(void)s;
	((struct rec *)ctx)->ends++;
	return ((struct rec *)ctx)->end_v;
}

static void h_abort(void *ctx, struct smtp_server *s)
{
	(void)s;
	((struct rec *)ctx)->aborts++;
}

static time_t h_now(void *ctx)
{
	(void)ctx;
	return 1700000000;
}

static const struct smtp_hooks hooks = {
	h_auth, h_mail, h_rcpt, h_start, h_write, h_end, h_abort, h_now,
};

static struct smtp_server S;
static struct rec R;

static void drain(void)
{
	size_t n;
	const char *o = smtp_server_output(&S, &n);

	if (R.outlen + n < sizeof R.out) {
		memcpy(R.out + R.outlen, o, n);
		R.outlen += n;
		R.out[R.outlen] = '\0';
	}
	smtp_server_consumed(&S, n);
}

static void start(int tls_active)
{
	struct smtp_params p = { "mx.example.com", 10000, 1, tls_active, 1, "192.0.2.9" };

	memset(&R, 0, sizeof R);
	smtp_server_init(&S, &p, &hooks, &R);
	drain();
}

/* Feeds text, draining output as needed; returns the replies it caused. */
static const char *say(const char *text)
{
	size_t len = strlen(text), done = 0, before = R.outlen;

	while (done < len) {
		size_t n = smtp_server_input(&S, text + done, len - done);

		done += n;
		drain();
		if (n == 0 && (smtp_server_closing(&S) || smtp_server_tls_wanted(&S)))
			break;
	}
	smtp_server_commit(&S, 0);
	drain();
	return R.out + before;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void login(void)
{
	start(1);
	say("EHLO client.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");   /* \0alice\0secret */
	CHECK(strstr(R.out, "235 2.7.0"));
}

/* ---- tests --------------------------------------------------------------- */

static void t_greeting_and_ehlo_before_tls(void)
{
	const char *r;

	start(0);
	CHECK(strncmp(R.out, "220 mx.example.com ESMTP", 24) == 0);
	r = say("EHLO client.example\r\n");
	CHECK(strstr(r, "250-mx.example.com\r\n"));
	CHECK(strstr(r, "250-PIPELINING\r\n"));
	CHECK(strstr(r, "250-SIZE 10000\r\n"));
	CHECK(strstr(r, "250-8BITMIME\r\n"));
	CHECK(strstr(r, "250-STARTTLS\r\n"));
	CHECK(strstr(r, "250 ENHANCEDSTATUSCODES\r\n"));
	CHECK(!strstr(r, "AUTH"));
}

static void t_auth_before_tls(void)
{
	const char *r;

	start(0);
	r = say("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
	CHECK(strstr(r, "530 5.7.0 Must issue a STARTTLS command first"));
	CHECK_EQ(R.auths, 0);
	r = say("AUTH LOGIN\r\n");
	CHECK(strstr(r, "530 5.7.0"));
	r = say("MAIL FROM:<alice@example.com>\r\n");
	CHECK(strstr(r, "530 5.7.0 Authentication required"));
}

static void t_starttls_injection(void)
{
	const char *r;

	start(0);
	say("EHLO c\r\n");
	/* One write: the RSET after STARTTLS must never be answered. */
	r = say("STARTTLS\r\nRSET\r\nMAIL FROM:<alice@example.com>\r\n");
	CHECK(strcmp(r, "220 2.0.0 Ready to start TLS\r\n") == 0);
	CHECK(smtp_server_tls_wanted(&S));
	{
		size_t room;

		smtp_server_space(&S, &room);
		CHECK_EQ(room, 0);   /* nothing more is read in clear */
	}
	smtp_server_tls_started(&S);
	r = say("MAIL FROM:<alice@example.com>\r\n");
	CHECK(strstr(r, "503 5.5.1 Send EHLO first"));   /* state was reset */
	r = say("EHLO c\r\n");
	CHECK(strstr(r, "250-AUTH PLAIN LOGIN\r\n"));
	CHECK(!strstr(r, "STARTTLS"));
	r = say("STARTTLS\r\n");
	CHECK(strstr(r, "503 5.5.1 TLS already active"));
}

static void t_full_transaction(void)
{
	const char *r;

	login();
	r = say("MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME\r\n"
		"RCPT TO:<bob@example.com>\r\n"
		"RCPT TO:<nobody@example.com>\r\n"
		"DATA\r\n");
	CHECK(strstr(r, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user here\r\n354 "));
	r = say("Subject: hi\r\n\r\n..dotted\r\n..\r\nline\r\n.\r\n");
	CHECK(strstr(r, "250 2.0.0 Ok: queued as Q1\r\n"));
	CHECK_EQ(R.ends, 1);
	CHECK_EQ(R.aborts, 0);
	R.msg[R.msglen] = '\0';
	CHECK(strncmp(R.msg, "Received: from client.example (192.0.2.9)\r\n\tby mx.example.com "
		      "(Postern) with ESMTPSA id Q1;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n", 118) == 0);
	CHECK(strstr(R.msg, "Subject: hi\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
			    "Message-ID: <Q1@mx.example.com>\r\n\r\n.dotted\r\n.\r\nline\r\n"));
	CHECK(R.msg[R.msglen - 1] == '\n' && strstr(R.msg, "line\r\n") + 6 == R.msg + R.msglen);
	/* A second transaction in the same session. */
	r = say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
		"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-id: <a@b>\r\n\r\nbody\r\n.\r\n");
	CHECK(strstr(r, "250 2.0.0 Ok: queued"));
	R.msg[R.msglen] = '\0';
	CHECK_EQ(count(R.msg, "Date:"), 1);
	CHECK_EQ(count(R.msg, "Message-ID:"), 0);
	CHECK_EQ(count(R.msg, "MESSAGE-id:"), 1);
}

static void t_headers_only_message(void)
{
	login();
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
	    "Subject: x\r\n.\r\n");
	R.msg[R.msglen] = '\0';
	CHECK(strstr(R.msg, "Subject: x\r\nDate: "));
	CHECK(strstr(R.msg, "Message-ID: <Q1@mx.example.com>\r\n"));
}

static void t_smuggling_bare_lf(void)
{
	const char *r;

	login();
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	/* "\n.\n" must not end the message, nor "\r\n.\n"; the smuggled MAIL is text. */
	r = say("Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<c@x>\r\n"
		"DATA\r\nsmuggled\r\n.\n");
	CHECK_EQ(R.outlen - (size_t)(r - R.out), 0);   /* nothing answered yet */
	r = say("more\r\n.\r\n");
	CHECK(strcmp(r, "554 5.6.0 Bare CR or LF in message text: lines must end with CRLF\r\n") == 0);
	CHECK_EQ(R.ends, 0);
	CHECK_EQ(R.aborts, 1);
	r = say("NOOP\r\n");
	CHECK(strcmp(r, "250 2.0.0 Ok\r\n") == 0);
}

static void t_smuggling_bare_cr(void)
{
	const char *r;

	login();
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	r = say("a\r.\rb\r\n.\r\n");
	CHECK(strstr(r, "554 5.6.0 Bare CR"));
	CHECK_EQ(count(r, "\r\n"), 1);
	CHECK_EQ(R.ends, 0);
}

static void t_auth_login_and_failures(void)
{
	const char *r;

	start(1);
	r = say("EHLO c\r\nAUTH LOGIN\r\n");
	CHECK(strstr(r, "334 VXNlcm5hbWU6\r\n"));
	r = say("YWxpY2U=\r\n");
	CHECK(strstr(r, "334 UGFzc3dvcmQ6\r\n"));
	r = say("d3Jvbmc=\r\n");   /* "wrong" */
	CHECK(strstr(r, "535 5.7.8"));
	r = say("AUTH LOGIN YWxpY2U=\r\n*\r\n");
	CHECK(strstr(r, "334 UGFzc3dvcmQ6\r\n501 5.0.0 Authentication cancelled"));
	r = say("AUTH PLAIN\r\n");
	CHECK(strstr(r, "334 \r\n"));
	r = say("!!!!\r\n");
	CHECK(strstr(r, "501 5.5.2"));
	r = say("AUTH CRAM-MD5\r\n");
	CHECK(strstr(r, "504 5.5.4"));
	R.throttled = 1;
	r = say("AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
	CHECK(strstr(r, "454 4.7.0"));
	R.throttled = 0;
	r = say("AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
	CHECK(strstr(r, "235 2.7.0"));
	CHECK(strcmp(S.user, "alice") == 0);
	r = say("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
	CHECK(strstr(r, "503 5.5.1 Already authenticated"));
	/* authzid other than the user is refused */
	start(1);
	r = say("EHLO c\r\nAUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n");   /* bob\0alice\0secret */
	CHECK(strstr(r, "535 5.7.8"));
	CHECK_EQ(R.auths, 0);
}

static void t_mail_params(void)
{
	const char *r;

	login();
	r = say("MAIL FROM:<alice@example.com> SIZE=20000\r\n");
	CHECK(strstr(r, "552 5.3.4"));
	r = say("MAIL FROM:<alice@example.com> FOO=bar\r\n");
	CHECK(strstr(r, "555 5.5.4"));
	r = say("MAIL FROM:<alice@example.com> BODY=9BIT\r\n");
	CHECK(strstr(r, "501 5.5.4"));
	r = say("MAIL FROM:alice@example.com\r\n");
	CHECK(strstr(r, "501 5.5.4 Syntax"));
	r = say("RCPT TO:<b@example.com>\r\n");
	CHECK(strstr(r, "503 5.5.1 Need MAIL"));
	r = say("DATA\r\n");
	CHECK(strstr(r, "503 5.5.1"));
	R.mail_v = SMTP_SENDER_NOT_OWNED;
	r = say("MAIL FROM:<bob@example.com>\r\n");
	CHECK(strstr(r, "553 5.7.1"));
	R.mail_v = SMTP_NO_SPACE;
	r = say("MAIL FROM:<alice@example.com>\r\n");
	CHECK(strstr(r, "452 4.3.1"));
	R.mail_v = SMTP_OK;
	S.errors = 0;   /* eight failures so far: stay under SMTP_ERRORS_MAX */
	r = say("mail from: <alice@example.com> AUTH=<> body=7bit\r\n");
	CHECK(strstr(r, "250 2.1.0"));
	r = say("MAIL FROM:<alice@example.com>\r\n");
	CHECK(strstr(r, "503 5.5.1 Nested"));
	r = say("DATA\r\n");
	CHECK(strstr(r, "554 5.5.1 No valid recipients"));
	r = say("RCPT TO:<b@example.com> NOTIFY=NEVER\r\n");
	CHECK(strstr(r, "555 5.5.4"));
	r = say("RSET\r\nRCPT TO:<b@example.com>\r\n");
	CHECK(strstr(r, "250 2.0.0 Ok\r\n503 5.5.1"));
	CHECK_EQ(R.aborts, 1);
}

static void t_recipient_limit(void)
{
	const char *r = NULL;
	char line[64];

	login();
	say("MAIL FROM:<alice@example.com>\r\n");
	for (int i = 0; i < SMTP_RCPTS_MAX; i++) {
		snprintf(line, sizeof line, "RCPT TO:<u%d@example.com>\r\n", i);
		r = say(line);
		CHECK(strstr(r, "250 2.1.5"));
	}
	r = say("RCPT TO:<one-too-many@example.com>\r\n");
	CHECK(strstr(r, "452 4.5.3 Too many recipients"));
	CHECK(!smtp_server_closing(&S));
}

static void t_error_limit(void)
{
	const char *r;

	start(0);
	for (int i = 0; i < SMTP_ERRORS_MAX - 1; i++) {
		r = say("BOGUS\r\n");
		CHECK(strstr(r, "500 5.5.2 Command unrecognized"));
	}
	CHECK(!smtp_server_closing(&S));
	r = say("EXPN x\r\n");
	CHECK(strstr(r, "502 5.5.1\r\n") || strstr(r, "502 5.5.1 EXPN"));
	CHECK(strstr(r, "421 4.7.0"));
	CHECK(smtp_server_closing(&S));
	r = say("NOOP\r\n");
	CHECK(*r == '\0');
}

static void t_misc_commands(void)
{
	const char *r;

	start(0);
	r = say("VRFY alice\r\nNOOP hello\r\nHELP\r\nHELO c\r\n");
	CHECK(strstr(r, "252 2.5.0"));
	CHECK(strstr(r, "250 2.0.0 Ok\r\n214 "));
	CHECK(strstr(r, "250 mx.example.com\r\n"));
	r = say("EHLO\r\n");
	CHECK(strstr(r, "501 5.5.4"));
	r = say("noop\n");
	CHECK(strstr(r, "500 5.5.2 Line must end with CRLF"));
	r = say("QUIT\r\n");
	CHECK(strstr(r, "221 2.0.0"));
	CHECK(smtp_server_closing(&S));
}

static void t_long_lines(void)
{
	static char big[3000];
	const char *r;

	start(0);
	memset(big, 'A', 2000);
	memcpy(big + 2000, "\r\nNOOP\r\n", 9);
	r = say(big);
	CHECK(strstr(r, "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"));
	login();
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	memcpy(big + 2000, "\r\n.\r\n", 6);
	r = say(big);
	CHECK(strstr(r, "554 5.6.0 Message line longer"));
	CHECK_EQ(R.ends, 0);
	/* an over-long AUTH LOGIN password line (found by fuzz_smtp) */
	start(1);
	say("EHLO c\r\nAUTH LOGIN YWxpY2U=\r\n");
	memset(big, 'A', 2000);
	memcpy(big + 2000, "\r\nNOOP\r\n", 9);
	r = say(big);
	CHECK(strstr(r, "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"));
	login();
	/* 998 characters are fine */
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	memset(big, 'B', 998);
	memcpy(big + 998, "\r\n.\r\n", 6);
	r = say(big);
	CHECK(strstr(r, "250 2.0.0"));
}

static void t_size_limit_in_data(void)
{
	static char big[12000];
	const char *r;

	login();
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	for (size_t i = 0; i + 100 < sizeof big - 10; i += 100) {
		memset(big + i, 'x', 98);
		big[i + 98] = '\r';
		big[i + 99] = '\n';
	}
	strcpy(big + 11800, ".\r\n");
	r = say(big);
	CHECK(strstr(r, "552 5.3.4"));
	CHECK_EQ(R.ends, 0);
	CHECK_EQ(R.aborts, 1);
}

static void t_end_verdicts(void)
{
	const char *r;

	login();
	R.end_v = SMTP_NO_SPACE;
	r = say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n");
	CHECK(strstr(r, "452 4.3.1"));
	CHECK_EQ(R.aborts, 1);
}

static void t_pending_verdict(void)
{
	const char *r;
	size_t room;

	login();
	R.end_v = SMTP_PENDING;
	r = say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
		"x\r\n.\r\nNOOP\r\nQUIT\r\n");
	CHECK(strstr(r, "354 "));
	CHECK(!strstr(r, "250 2.0.0"));   /* neither the message nor the NOOP yet */
	CHECK(smtp_server_waiting(&S));
	smtp_server_space(&S, &room);
	CHECK_EQ(room, 0);
	CHECK(!smtp_server_closing(&S));
	smtp_server_data_done(&S, SMTP_OK);
	drain();
	CHECK(strstr(r, "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n221 2.0.0"));
	CHECK_EQ(R.aborts, 0);
	CHECK(smtp_server_closing(&S));
	/* a failure verdict */
	login();
	R.end_v = SMTP_PENDING;
	say("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n");
	smtp_server_data_done(&S, SMTP_NO_SPACE);
	drain();
	CHECK(strstr(R.out, "452 4.3.1"));
	CHECK_EQ(R.aborts, 1);
	CHECK(!smtp_server_waiting(&S));
	smtp_server_data_done(&S, SMTP_OK);   /* late or repeated: ignored */
	drain();
	CHECK_EQ(count(R.out, "250 2.0.0 Ok: queued"), 0);
}

static void t_pending_auth(void)
{
	const char *r;

	start(1);
	R.auth_later = 1;
	r = say("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@example.com>\r\n");
	CHECK(!strstr(r, "235") && !strstr(r, "530"));   /* the MAIL waits too */
	CHECK(smtp_server_waiting(&S));
	smtp_server_data_done(&S, SMTP_OK);              /* not a data wait: ignored */
	CHECK(smtp_server_waiting(&S));
	smtp_server_auth_done(&S, SMTP_OK);
	drain();
	CHECK(strstr(r, "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n"));
	CHECK_STREQ(S.user, "alice");
	start(1);
	R.auth_later = 1;
	r = say("EHLO c\r\nAUTH LOGIN YWxpY2U=\r\nd3Jvbmc=\r\nNOOP\r\n");
	smtp_server_auth_done(&S, SMTP_AUTH_THROTTLED);
	drain();
	CHECK(strstr(r, "454 4.7.0 Too many failed logins, try again later\r\n250 2.0.0 Ok\r\n"));
	CHECK_STREQ(S.user, "");
	R.auth_later = 0;
}

static void t_pipelining_backpressure(void)
{
	static char many[20000];
	size_t off = 0, taken = 0, total;
	int rounds = 0;

	start(0);
	for (int i = 0; i < 2000; i++)
		off += (size_t)snprintf(many + off, sizeof many - off, "NOOP\r\n");
	total = off;
	/* Feed without draining: the core stops once its output is full. */
	taken = smtp_server_input(&S, many, total);
	CHECK(taken < total);
	while (taken < total && rounds++ < 10000) {
		drain();
		taken += smtp_server_input(&S, many + taken, total - taken);
	}
	smtp_server_commit(&S, 0);
	drain();
	while (S.stalled && rounds++ < 10000) {
		smtp_server_commit(&S, 0);
		drain();
	}
	CHECK_EQ(count(R.out, "250 2.0.0 Ok\r\n"), 2000);
}

static void t_parsers(void)
{
	char a[SMTP_PATH_MAX + 1], k[32], v[64];
	const char *p;
	unsigned char d[16];
	char e[32];
	int last;

	CHECK_EQ(smtp_parse_path("<@relay.example:user@x.example> SIZE=10", a, sizeof a, &p), 0);
	CHECK_STREQ(a, "user@x.example");
	CHECK_STREQ(p, "SIZE=10");
	CHECK_EQ(smtp_next_param(&p, k, sizeof k, v, sizeof v), 1);
	CHECK_STREQ(k, "SIZE");
	CHECK_STREQ(v, "10");
	CHECK_EQ(smtp_next_param(&p, k, sizeof k, v, sizeof v), 0);
	CHECK_EQ(smtp_parse_path("<>", a, sizeof a, &p), 0);
	CHECK_STREQ(a, "");
	CHECK_EQ(smtp_parse_path("<a b@c>", a, sizeof a, &p), -1);
	CHECK_EQ(smtp_parse_path("<a@b", a, sizeof a, &p), -1);
	CHECK_EQ(smtp_parse_path("<a@b>x", a, sizeof a, &p), -1);
	p = "=x";
	CHECK_EQ(smtp_next_param(&p, k, sizeof k, v, sizeof v), -1);
	CHECK_EQ(smtp_parse_reply("250-PIPELINING", 14, &last), 250);
	CHECK_EQ(last, 0);
	CHECK_EQ(smtp_parse_reply("354 go", 6, &last), 354);
	CHECK_EQ(last, 1);
	CHECK_EQ(smtp_parse_reply("25x ", 4, &last), -1);
	CHECK_EQ(smtp_b64_decode("YWxpY2U=", 8, d, sizeof d), 5);
	CHECK_MEMEQ(d, "alice", 5);
	CHECK_EQ(smtp_b64_decode("YWxpY2U", 7, d, sizeof d), -1);
	CHECK_EQ(smtp_b64_decode("YW=pY2U=", 8, d, sizeof d), -1);
	CHECK_EQ(smtp_b64_encode((const unsigned char *)"alice", 5, e, sizeof e), 8);
	CHECK_STREQ(e, "YWxpY2U=");
	CHECK_STREQ(smtp_date(0, e, sizeof e), "Thu, 01 Jan 1970 00:00:00 +0000");
}

static void t_policy(void)
{
	static const char text[] =
		"user alice user !\nuser bob user !\nalias sales alice\nlist all alice bob\n";
	struct users_db db;
	char err[128];

	CHECK_EQ(users_parse(&db, text, strlen(text), err, sizeof err), 0);
	CHECK_EQ(smtp_route(&db, "example.com", 0, "bob@example.com"), SMTP_ROUTE_LOCAL);
	CHECK_EQ(smtp_route(&db, "example.com", 0, "Sales+x@EXAMPLE.com"), SMTP_ROUTE_LOCAL);
	CHECK_EQ(smtp_route(&db, "example.com", 0, "all@example.com"), SMTP_ROUTE_LOCAL);
	CHECK_EQ(smtp_route(&db, "example.com", 0, "zed@example.com"), SMTP_ROUTE_UNKNOWN);
	CHECK_EQ(smtp_route(&db, "example.com", 1, "zed@example.com"), SMTP_ROUTE_REMOTE);
	CHECK_EQ(smtp_route(&db, "example.com", 0, "zed@other.example"), SMTP_ROUTE_REMOTE);
	CHECK_EQ(smtp_route(&db, "example.com", 0, "bob"), SMTP_ROUTE_LOCAL);
	CHECK_EQ(smtp_sender_policy(&db, "example.com", "alice", "alice@example.com"), SMTP_OK);
	CHECK_EQ(smtp_sender_policy(&db, "example.com", "alice", "sales@example.com"), SMTP_OK);
	CHECK_EQ(smtp_sender_policy(&db, "example.com", "bob", "sales@example.com"),
		 SMTP_SENDER_NOT_OWNED);
	CHECK_EQ(smtp_sender_policy(&db, "example.com", "alice", "all@example.com"),
		 SMTP_SENDER_NOT_OWNED);
	CHECK_EQ(smtp_sender_policy(&db, "example.com", "alice", "alice@evil.example"),
		 SMTP_SENDER_NOT_OWNED);
	CHECK_EQ(smtp_sender_policy(&db, "example.com", "alice", ""), SMTP_SENDER_BAD);
	users_free(&db);
}

int main(void)
{
	RUN(t_greeting_and_ehlo_before_tls);
	RUN(t_auth_before_tls);
	RUN(t_starttls_injection);
	RUN(t_full_transaction);
	RUN(t_headers_only_message);
	RUN(t_smuggling_bare_lf);
	RUN(t_smuggling_bare_cr);
	RUN(t_auth_login_and_failures);
	RUN(t_mail_params);
	RUN(t_recipient_limit);
	RUN(t_error_limit);
	RUN(t_misc_commands);
	RUN(t_long_lines);
	RUN(t_size_limit_in_data);
	RUN(t_end_verdicts);
	RUN(t_pending_verdict);
	RUN(t_pending_auth);
	RUN(t_pipelining_backpressure);
	RUN(t_parsers);
	RUN(t_policy);
	return check_done();
}
