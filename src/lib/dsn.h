/*
 * dsn.h - delivery status notifications (RFC 3464): the multipart/report
 * message the relay delivers to a local sender when recipients failed
 * (action "failed") or are still being retried after the delay-notice time
 * (action "delayed"). Pure formatting: text out, nothing touches a file.
 *
 * The report has three parts (RFC 3462 multipart/report):
 *   1. text/plain for the person,
 *   2. message/delivery-status: per-message fields, then one block per
 *      recipient (Final-Recipient, Action, Status, Remote-MTA,
 *      Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until),
 *   3. text/rfc822-headers: the original message's header (capped).
 * Lines end in CRLF. It is sent with the null reverse-path (RFC 5321 4.5.5,
 * RFC 3464 2), so it can never cause another bounce.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stddef.h>
#include <stdint.h>

#define DSN_HEADERS_MAX (16 * 1024)  /* bytes of the original header included */
#define DSN_TEXT_MAX 400             /* bytes of a diagnostic kept */
#define DSN_STATUS_MAX 16            /* "5.1.1" with room */
#define DSN_BUF_MIN (4 * 1024)       /* smallest output buffer dsn_format accepts */

enum dsn_action { DSN_FAILED, DSN_DELAYED };

struct dsn_rcpt {
	const char *addr;        /* the recipient (without <>) */
	int action;              /* enum dsn_action */
	const char *reply;       /* the smart host's (or our) last reply, may be "" */
	int64_t last_attempt;    /* Unix time, 0: none */
};

struct dsn_info {
	const char *reporting_mta;   /* our host name */
	const char *domain;          /* mail-domain: MAILER-DAEMON@domain */
	const char *to;              /* the sender being told */
	const char *queue_id;
	const char *remote_mta;      /* the smart host, may be "" */
	int64_t arrival;             /* when the message was queued */
	int64_t now;
	int64_t retry_until;         /* delayed: when we give up */
};

/* The RFC 3463 status for a recipient: delayed "4.x.y" (the reply's
 * enhanced code, else 4.0.0); failed after a 5xx "5.x.y" (else 5.0.0);
 * failed after 4xx or no reply (gave up) 5.4.7. */
void dsn_status(const char *reply, int action, char out[DSN_STATUS_MAX]);

/* Writes the report into out (cap bytes, at least DSN_BUF_MIN). headers is
 * the original message's header (up to the blank line; NULL: none), of
 * which at most DSN_HEADERS_MAX bytes are kept. Returns the length, or -1
 * when it does not fit. */
int dsn_format(const struct dsn_info *info, const struct dsn_rcpt *rcpts, int n,
	       const char *headers, size_t hlen, char *out, size_t cap);

/* The length of the header of msg (through its blank line, or all of it). */
size_t dsn_header_len(const char *msg, size_t len);

#endif
