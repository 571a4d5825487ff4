/*
 * dsn.c - RFC 3464 delivery status notifications (see dsn.h).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dsn.h"
#include "strbuf.h"

/* RFC 5322 3.3 date-time in UTC. */
static void date822(int64_t t, char out[64])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 64, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* Text that goes into a header field: printable ASCII only, bounded. */
static void clean(const char *in, char *out, size_t cap)
{
	size_t i;

	for (i = 0; in && in[i] && i + 1 < cap; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
	out[i] = '\0';
}

/* The enhanced code after "DDD " when its class is the reply's: 1 with
 * subject and detail. */
static int enhanced(const char *reply, int *sub, int *det)
{
	int cls, n = 0;

	if (!reply || strlen(reply) < 9 || reply[3] != ' ' || reply[4] != reply[0])
		return 0;
	if (sscanf(reply + 4, "%1d.%3d.%3d%n", &cls, sub, det, &n) != 3)
		return 0;
	return reply[4 + n] == ' ' || reply[4 + n] == '\0';
}

void dsn_status(const char *reply, int action, char out[DSN_STATUS_MAX])
{
	int sub, det, has = enhanced(reply, &sub, &det);
	int perm = reply && reply[0] == '5';

	if (action == DSN_DELAYED)
		snprintf(out, DSN_STATUS_MAX, has ? "4.%d.%d" : "4.0.0", has ? sub : 0, has ? det : 0);
	else if (perm)
		snprintf(out, DSN_STATUS_MAX, has ? "5.%d.%d" : "5.0.0", has ? sub : 0, has ? det : 0);
	else
		snprintf(out, DSN_STATUS_MAX, "5.4.7");   /* RFC 3463: delivery time expired */
}

size_t dsn_header_len(const char *msg, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (msg[i] == '\n' && msg[i + 1] == '\n')
			return i + 2;
		if (msg[i] == '\n' && msg[i + 1] == '\r' && i + 2 < len && msg[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

static int all_delayed(const struct dsn_rcpt *r, int n)
{
	for (int i = 0; i < n; i++)
		if (r[i].action != DSN_DELAYED)
			return 0;
	return 1;
}

static void head(struct strbuf *o, const struct dsn_info *in, const char *boundary, int delayed)
{
	char date[64];

	date822(in->now, date);
	strbuf_put(o, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", in->domain);
	strbuf_put(o, "To: <%s>\r\n", in->to);
	strbuf_put(o, "Subject: %s\r\n", delayed ? "Delayed Mail (still being retried)"
					   : "Undelivered Mail Returned to Sender");
	strbuf_put(o, "Date: %s\r\n", date);
	strbuf_put(o, "Message-ID: <%s.%" PRId64 ".dsn@%s>\r\n", in->queue_id, in->now, in->reporting_mta);
	strbuf_put(o, "Auto-Submitted: auto-replied\r\n");   /* RFC 3834 5 */
	strbuf_put(o, "MIME-Version: 1.0\r\n");
	strbuf_put(o, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	       "\tboundary=\"%s\"\r\n\r\n", boundary);
	strbuf_put(o, "This is a MIME-encapsulated message.\r\n\r\n");
}

static void human(struct strbuf *o, const struct dsn_info *in, const struct dsn_rcpt *r, int n,
		  const char *boundary, int delayed)
{
	char text[DSN_TEXT_MAX + 1], date[64];

	strbuf_put(o, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	if (delayed) {
		date822(in->retry_until, date);
		strbuf_put(o, "Your message could not be delivered yet. It is still in the queue\r\n"
		       "and will be tried again until %s.\r\n\r\n", date);
	} else {
		strbuf_put(o, "Your message could not be delivered to one or more recipients.\r\n"
		       "It has been removed from the queue for them.\r\n\r\n");
	}
	for (int i = 0; i < n; i++) {
		clean(r[i].reply, text, sizeof text);
		strbuf_put(o, "<%s>: %s\r\n", r[i].addr, text[0] ? text : "no reply");
	}
	strbuf_put(o, "\r\n");
}

static void status_part(struct strbuf *o, const struct dsn_info *in, const struct dsn_rcpt *r,
			int n, const char *boundary)
{
	char date[64], text[DSN_TEXT_MAX + 1], st[DSN_STATUS_MAX];

	strbuf_put(o, "--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary);
	date822(in->arrival, date);
	strbuf_put(o, "Reporting-MTA: dns; %s\r\nX-Postern-Queue-ID: %s\r\nArrival-Date: %s\r\n",
	    in->reporting_mta, in->queue_id, date);
	for (int i = 0; i < n; i++) {
		clean(r[i].reply, text, sizeof text);
		dsn_status(r[i].reply, r[i].action, st);
		strbuf_put(o, "\r\nFinal-Recipient: rfc822; %s\r\nAction: %s\r\nStatus: %s\r\n", r[i].addr,
		    r[i].action == DSN_DELAYED ? "delayed" : "failed", st);
		if (in->remote_mta && in->remote_mta[0])
			strbuf_put(o, "Remote-MTA: dns; %s\r\n", in->remote_mta);
		if (text[0] >= '2' && text[0] <= '5' && isdigit((unsigned char)text[1]))
			strbuf_put(o, "Diagnostic-Code: smtp; %s\r\n", text);
		else if (text[0])
			strbuf_put(o, "Diagnostic-Code: x-postern; %s\r\n", text);
		if (r[i].last_attempt) {
			date822(r[i].last_attempt, date);
			strbuf_put(o, "Last-Attempt-Date: %s\r\n", date);
		}
		if (r[i].action == DSN_DELAYED) {
			date822(in->retry_until, date);
			strbuf_put(o, "Will-Retry-Until: %s\r\n", date);
		}
	}
	strbuf_put(o, "\r\n");
}

/* The original header, lines normalised to CRLF. */
static void headers_part(struct strbuf *o, const char *h, size_t hlen, const char *boundary)
{
	strbuf_put(o, "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
	if (hlen > DSN_HEADERS_MAX)
		hlen = DSN_HEADERS_MAX;
	for (size_t i = 0; i < hlen && !o->full; i++) {
		if (h[i] == '\r')
			continue;
		if (h[i] == '\n')
			strbuf_put(o, "\r\n");
		else
			strbuf_put(o, "%c", h[i]);
	}
	if (o->len >= 2 && memcmp(o->buf + o->len - 2, "\r\n", 2) != 0)
		strbuf_put(o, "\r\n");
	strbuf_put(o, "\r\n");
}

int dsn_format(const struct dsn_info *in, const struct dsn_rcpt *rcpts, int n,
	       const char *headers, size_t hlen, char *out, size_t cap)
{
	struct strbuf o;
	char boundary[96];
	int delayed = all_delayed(rcpts, n);

	if (cap < DSN_BUF_MIN || n < 1)
		return -1;
	strbuf_init(&o, out, cap);
	snprintf(boundary, sizeof boundary, "%s.%" PRId64 "/%s", in->queue_id, in->now,
		 in->reporting_mta);
	head(&o, in, boundary, delayed);
	human(&o, in, rcpts, n, boundary, delayed);
	status_part(&o, in, rcpts, n, boundary);
	if (headers && hlen)
		headers_part(&o, headers, hlen, boundary);
	strbuf_put(&o, "--%s--\r\n", boundary);
	return strbuf_result(&o);
}
