/* test_smtp_client.c - the SMTP client core driven from byte arrays:
 * STARTTLS and its injection check, AUTH PLAIN/LOGIN, pipelined and
 * unpipelined transactions, refusals, dot-stuffing, CRLF normalisation. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smtp-client.h"

static struct smtpc c;
static char sent[65536];
static size_t nsent;

/* Takes everything the core wants sent into sent[]. */
static void take(void)
{
	size_t len;
	const char *p = smtpc_output(&c, &len);

	while (len > 0) {
		if (nsent + len < sizeof sent) {
			memcpy(sent + nsent, p, len);
			nsent += len;
		}
		smtpc_consumed(&c, len);
		p = smtpc_output(&c, &len);
	}
	sent[nsent] = '\0';
}

static void in(const char *s)
{
	CHECK_EQ(smtpc_input(&c, s, strlen(s)), strlen(s));
	take();
}

static void reset_sent(void)
{
	nsent = 0;
	sent[0] = '\0';
}

static const char *EHLO_CLEAR = "250-smtp.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
static const char *EHLO_TLS = "250-smtp.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
			      "250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n";

static void start(const char *user, const char *pass)
{
	struct smtpc_params p = { .ehlo_name = "box.example.com", .user = user, .password = pass };

	reset_sent();
	CHECK_EQ(smtpc_init(&c, &p), 0);
	in("220 smtp.test ESMTP\r\n");
	CHECK_STREQ(sent, "EHLO box.example.com\r\n");
	in(EHLO_CLEAR);
	CHECK_STREQ(sent, "EHLO box.example.com\r\nSTARTTLS\r\n");
	in("220 go ahead\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_TLS_WANTED);
	reset_sent();
	smtpc_tls_started(&c, 1, NULL);
	take();
	CHECK_STREQ(sent, "EHLO box.example.com\r\n");
	reset_sent();
	in(EHLO_TLS);
}

static void t_starttls_auth_plain(void)
{
	start("relay", "pw");
	/* base64("\0relay\0pw") */
	CHECK_STREQ(sent, "AUTH PLAIN AHJlbGF5AHB3\r\n");
	CHECK(c.caps & SMTPC_CAP_PIPELINING);
	CHECK_EQ(c.size_max, 1000);
	in("235 ok\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_IDLE);
}

static void t_no_starttls(void)
{
	struct smtpc_params p = { .ehlo_name = "box", .user = "u", .password = "secret" };

	reset_sent();
	smtpc_init(&c, &p);
	in("220 hi\r\n");
	in("250-hi\r\n250 AUTH PLAIN\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	CHECK(strstr(smtpc_error(&c), "STARTTLS"));
	CHECK(!strstr(sent, "AUTH"));
	CHECK(!strstr(sent, "MAIL"));
	/* A transaction cannot be started without TLS. */
	const char *r[] = { "x@y" };
	CHECK_EQ(smtpc_begin(&c, "a@b", r, 1), -1);
}

static void t_injection(void)
{
	struct smtpc_params p = { .ehlo_name = "box", .user = "u", .password = "secret" };
	const char *evil = "220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n";

	reset_sent();
	smtpc_init(&c, &p);
	in("220 hi\r\n");
	in(EHLO_CLEAR);
	smtpc_input(&c, evil, strlen(evil));
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	CHECK(strstr(smtpc_error(&c), "injection"));
	/* A partial line after the 220 is also an injection. */
	smtpc_init(&c, &p);
	in("220 hi\r\n");
	in(EHLO_CLEAR);
	smtpc_input(&c, "220 go\r\n2", 9);
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
}

static void t_tls_failure(void)
{
	struct smtpc_params p = { .ehlo_name = "box", .user = "u", .password = "secret" };

	reset_sent();
	smtpc_init(&c, &p);
	in("220 hi\r\n");
	in(EHLO_CLEAR);
	in("220 go\r\n");
	smtpc_tls_started(&c, 0, "pin mismatch");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	CHECK(strstr(smtpc_error(&c), "pin mismatch"));
	take();
	CHECK(!strstr(sent, "AUTH"));
}

static void t_auth_login(void)
{
	struct smtpc_params p = { .ehlo_name = "box", .tls_active = 1, .user = "relay",
				  .password = "pw" };

	reset_sent();
	smtpc_init(&c, &p);
	in("220 hi\r\n");
	in("250-hi\r\n250 AUTH LOGIN\r\n");
	CHECK(strstr(sent, "AUTH LOGIN\r\n"));
	reset_sent();
	in("334 VXNlcm5hbWU6\r\n");
	CHECK_STREQ(sent, "cmVsYXk=\r\n");
	reset_sent();
	in("334 UGFzc3dvcmQ6\r\n");
	CHECK_STREQ(sent, "cHc=\r\n");
	in("235 ok\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_IDLE);
	reset_sent();
	in("535 no\r\n");   /* unexpected in IDLE */
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
}

static void t_auth_refused(void)
{
	start("relay", "bad");
	in("535 5.7.8 authentication failed\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	CHECK(strstr(smtpc_error(&c), "535"));
}

static void t_pipelined_transaction(void)
{
	const char *r[] = { "a@x.test", "b@x.test", "c@x.test" };
	const char *body = "Subject: t\r\n\r\n.hidden\r\nline\n.\r\nlast";

	start("relay", "pw");
	in("235 ok\r\n");
	reset_sent();
	CHECK_EQ(smtpc_begin(&c, "s@example.com", r, 3), 0);
	take();
	CHECK_STREQ(sent, "MAIL FROM:<s@example.com> BODY=8BITMIME\r\nRCPT TO:<a@x.test>\r\n"
		    "RCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n");
	in("250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n450 try later\r\n354 go\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_BODY);
	reset_sent();
	CHECK_EQ(smtpc_body(&c, body, strlen(body)), strlen(body));
	CHECK_EQ(smtpc_body_end(&c), 0);
	take();
	CHECK_STREQ(sent, "Subject: t\r\n\r\n..hidden\r\nline\r\n..\r\nlast\r\n.\r\n");
	in("250 2.0.0 queued as X\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_MSG_DONE);
	CHECK_EQ(smtpc_rcpt_result(&c, 0)->code, 250);
	CHECK(strstr(smtpc_rcpt_result(&c, 0)->text, "queued as X"));
	CHECK_EQ(smtpc_rcpt_result(&c, 1)->code, 550);
	CHECK_EQ(smtpc_rcpt_result(&c, 2)->code, 450);
	smtpc_next(&c);
	reset_sent();
	smtpc_quit(&c);
	take();
	CHECK_STREQ(sent, "QUIT\r\n");
	in("221 bye\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_CLOSED);
}

static void t_unpipelined_refused(void)
{
	struct smtpc_params p = { .ehlo_name = "box", .tls_active = 1 };
	const char *r[] = { "a@x.test", "b@x.test" };

	reset_sent();
	smtpc_init(&c, &p);
	in("220 hi\r\n250 hi\r\n");  /* greeting and EHLO reply at once */
	CHECK_EQ(smtpc_state(&c), SMTPC_S_IDLE);
	reset_sent();
	smtpc_begin(&c, "", r, 2);
	take();
	CHECK_STREQ(sent, "MAIL FROM:<>\r\n");
	in("250 ok\r\n");
	CHECK_STREQ(sent, "MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n");
	in("550 no\r\n");
	in("551 no\r\n");
	CHECK(strstr(sent, "RSET\r\n"));
	CHECK(!strstr(sent, "DATA"));
	in("250 reset\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_MSG_DONE);
	CHECK_EQ(smtpc_rcpt_result(&c, 0)->code, 550);
	CHECK_EQ(smtpc_rcpt_result(&c, 1)->code, 551);
}

static void t_mail_refused_pipelined(void)
{
	const char *r[] = { "a@x.test" };

	start(NULL, NULL);
	CHECK_EQ(smtpc_state(&c), SMTPC_S_IDLE);
	smtpc_begin(&c, "s@example.com", r, 1);
	take();
	in("553 5.7.1 sender refused\r\n503 no mail\r\n354 go anyway\r\n");
	/* RFC 2920 3.1: no recipient accepted, yet 354: send an empty text. */
	CHECK(strstr(sent, "\r\n.\r\n"));
	in("554 no valid recipients\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_MSG_DONE);
	CHECK_EQ(smtpc_rcpt_result(&c, 0)->code, 553);
}

static void t_421_and_malformed(void)
{
	start(NULL, NULL);
	in("421 4.3.2 shutting down\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	CHECK_EQ(smtpc_error_temp(&c), 1);
	start(NULL, NULL);
	in("2x0 what\r\n");
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	start(NULL, NULL);
	in("250-a\r\n251 b\r\n");   /* codes differ within one reply */
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
}

static void t_long_line(void)
{
	char *big = malloc(5000);

	start(NULL, NULL);
	memset(big, 'x', 4999);
	big[4999] = '\0';
	smtpc_input(&c, big, 4999);
	CHECK_EQ(smtpc_state(&c), SMTPC_S_FAILED);
	free(big);
}

static void t_many_recipients_small_buffer(void)
{
	static char names[SMTPC_RCPTS_MAX][300];
	const char *r[SMTPC_RCPTS_MAX];

	for (int i = 0; i < SMTPC_RCPTS_MAX; i++) {
		memset(names[i], 'a', 200);
		snprintf(names[i] + 200, 100, "%d@x.test", i);
		r[i] = names[i];
	}
	start(NULL, NULL);
	CHECK_EQ(smtpc_begin(&c, "s@e", r, SMTPC_RCPTS_MAX), 0);
	take();   /* drains and refills until every command is out */
	CHECK(strstr(sent, "99@x.test>\r\nDATA\r\n"));
}

static void t_cr_normalised(void)
{
	const char *r[] = { "a@x.test" };
	const char *body = "a\rb\r";

	start(NULL, NULL);
	smtpc_begin(&c, "s@e", r, 1);
	take();
	in("250 ok\r\n250 ok\r\n354 go\r\n");
	reset_sent();
	smtpc_body(&c, body, 2);
	smtpc_body(&c, body + 2, 2);
	smtpc_body_end(&c);
	take();
	CHECK_STREQ(sent, "a\r\nb\r\n.\r\n");
}

int main(void)
{
	RUN(t_starttls_auth_plain);
	RUN(t_no_starttls);
	RUN(t_injection);
	RUN(t_tls_failure);
	RUN(t_auth_login);
	RUN(t_auth_refused);
	RUN(t_pipelined_transaction);
	RUN(t_unpipelined_refused);
	RUN(t_mail_refused_pipelined);
	RUN(t_421_and_malformed);
	RUN(t_long_line);
	RUN(t_many_recipients_small_buffer);
	RUN(t_cr_normalised);
	return check_done();
}
