/* test_dsn.c - RFC 3464 reports: status codes, the three parts, CRLF only,
 * header text cleaned, the original header capped. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dsn.h"

static void t_status(void)
{
	char st[DSN_STATUS_MAX];

	dsn_status("550 5.1.1 no such user", DSN_FAILED, st);
	CHECK_STREQ(st, "5.1.1");
	dsn_status("550 no such user", DSN_FAILED, st);
	CHECK_STREQ(st, "5.0.0");
	dsn_status("451 4.3.0 try later", DSN_FAILED, st);
	CHECK_STREQ(st, "5.4.7");
	dsn_status("451 4.3.0 try later", DSN_DELAYED, st);
	CHECK_STREQ(st, "4.3.0");
	dsn_status("550 4.1.1 mixed", DSN_FAILED, st);   /* class differs: ignored */
	CHECK_STREQ(st, "5.0.0");
	dsn_status("", DSN_DELAYED, st);
	CHECK_STREQ(st, "4.0.0");
	dsn_status(NULL, DSN_FAILED, st);
	CHECK_STREQ(st, "5.4.7");
}

static const struct dsn_info info = {
	.reporting_mta = "box.example.com", .domain = "example.com", .to = "alice@example.com",
	.queue_id = "6b0b6ce6ddb61fde", .remote_mta = "smtp.provider.test",
	.arrival = 1700000000, .now = 1700003600, .retry_until = 1700345600,
};

static void t_failed_report(void)
{
	struct dsn_rcpt r[2] = {
		{ "gone@other.test", DSN_FAILED, "550 5.1.1 <gone@other.test>: no\x01 such user", 1700003000 },
		{ "slow@other.test", DSN_FAILED, "gave up after 4 days: 451 4.3.0 later", 0 },
	};
	const char *hdr = "Subject: hello\nFrom: alice@example.com\n\nbody";
	static char out[65536];
	int n = dsn_format(&info, r, 2, hdr, dsn_header_len(hdr, strlen(hdr)), out, sizeof out);

	CHECK(n > 0);
	CHECK(strstr(out, "Content-Type: multipart/report; report-type=delivery-status;"));
	CHECK(strstr(out, "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; box.example.com\r\n"));
	CHECK(strstr(out, "Final-Recipient: rfc822; gone@other.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
	CHECK(strstr(out, "Diagnostic-Code: smtp; 550 5.1.1 <gone@other.test>: no? such user\r\n"));
	CHECK(strstr(out, "Final-Recipient: rfc822; slow@other.test\r\nAction: failed\r\nStatus: 5.4.7\r\n"));
	CHECK(strstr(out, "Diagnostic-Code: x-postern; gave up"));
	CHECK(strstr(out, "Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nFrom: alice@example.com\r\n\r\n"));
	CHECK(!strstr(out, "body"));
	CHECK(strstr(out, "Subject: Undelivered Mail Returned to Sender\r\n"));
	CHECK(strstr(out, "Auto-Submitted: auto-replied\r\n"));
	for (int i = 0; i < n; i++)
		if (out[i] == '\n')
			CHECK(i > 0 && out[i - 1] == '\r');
	CHECK_EQ((int)strlen(out), n);
}

static void t_delayed_report(void)
{
	struct dsn_rcpt r = { "slow@other.test", DSN_DELAYED, "451 4.4.1 no answer", 1700003000 };
	static char out[65536];

	CHECK(dsn_format(&info, &r, 1, NULL, 0, out, sizeof out) > 0);
	CHECK(strstr(out, "Subject: Delayed Mail (still being retried)\r\n"));
	CHECK(strstr(out, "Action: delayed\r\nStatus: 4.4.1\r\n"));
	CHECK(strstr(out, "Will-Retry-Until: "));
	CHECK(!strstr(out, "rfc822-headers"));
}

static void t_caps(void)
{
	struct dsn_rcpt r = { "x@y.test", DSN_FAILED, "550 no", 0 };
	char small[DSN_BUF_MIN];
	char *big = malloc(DSN_HEADERS_MAX * 2), *out = malloc(DSN_HEADERS_MAX * 4);

	memset(big, 'h', DSN_HEADERS_MAX * 2);
	CHECK_EQ(dsn_format(&info, &r, 1, NULL, 0, small, 100), -1);
	CHECK(dsn_format(&info, &r, 1, NULL, 0, small, sizeof small) > 0);
	CHECK(dsn_format(&info, &r, 1, big, DSN_HEADERS_MAX * 2, out, DSN_HEADERS_MAX * 4) > 0);
	CHECK(strlen(out) < DSN_HEADERS_MAX + 3000);
	CHECK_EQ(dsn_format(&info, &r, 1, big, DSN_HEADERS_MAX * 2, small, sizeof small), -1);
	free(big);
	free(out);
}

int main(void)
{
	RUN(t_status);
	RUN(t_failed_report);
	RUN(t_delayed_report);
	RUN(t_caps);
	return check_done();
}
