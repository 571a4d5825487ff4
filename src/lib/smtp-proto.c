/*
 * smtp-proto.c - the SMTP protocol core (see smtp-proto.h): the server
 * state machine, command and parameter parsing, reply texts, DATA reading
 * with dot-unstuffing and header completion, and the submission policy.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp-proto.h"

/* ---- replies ------------------------------------------------------------- */

/* The reply for each verdict (RFC 3463 enhanced codes, RFC 2034). */
static const struct {
	int code;
	const char *text;
} verdict_reply[SMTP_VERDICT_COUNT] = {
	[SMTP_OK] = { 250, "2.0.0 Ok" },
	[SMTP_AUTH_FAILED] = { 535, "5.7.8 Authentication credentials invalid" },
	[SMTP_AUTH_THROTTLED] = { 454, "4.7.0 Too many failed logins, try again later" },
	[SMTP_SENDER_NOT_OWNED] = { 553, "5.7.1 Sender address not owned by the authenticated user" },
	[SMTP_SENDER_BAD] = { 553, "5.1.7 Bad sender address" },
	[SMTP_RCPT_UNKNOWN] = { 550, "5.1.1 No such user here" },
	[SMTP_RCPT_BAD] = { 553, "5.1.3 Bad recipient address syntax" },
	[SMTP_RCPT_DENIED] = { 550, "5.7.1 Recipient not allowed" },
	[SMTP_NO_SPACE] = { 452, "4.3.1 Insufficient system storage, try again later" },
	[SMTP_TEMP_FAIL] = { 451, "4.3.0 Local error, try again later" },
	[SMTP_TOO_BIG] = { 552, "5.3.4 Message too big" },
	[SMTP_REJECTED] = { 554, "5.7.0 Message refused" },
	[SMTP_BARE_EOL] = { 554, "5.6.0 Bare CR or LF in message text: lines must end with CRLF" },
	[SMTP_LONG_LINE] = { 554, "5.6.0 Message line longer than 998 characters" },
	[SMTP_PENDING] = { 451, "4.3.0 Local error, try again later" },   /* never sent */
	[SMTP_MAILBOX_FULL] = { 452, "4.2.2 Mailbox full" },
};

static void out_raw(struct smtp_server *s, const char *buf, size_t len)
{
	if (len > SMTP_OUT_MAX - s->outlen)
		len = SMTP_OUT_MAX - s->outlen;   /* cannot happen: room is checked */
	memcpy(s->out + s->outlen, buf, len);
	s->outlen += len;
}

/* Queues one reply line "CODE TEXT\r\n" (or "CODE-TEXT" with more). */
static void reply_line(struct smtp_server *s, int code, int more, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_line(struct smtp_server *s, int code, int more, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	int n = snprintf(line, sizeof line, "%03d%c", code, more ? '-' : ' ');
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 3)
		n = (int)sizeof line - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	out_raw(s, line, (size_t)n);
}

/* A failed command: counted; at SMTP_ERRORS_MAX the session ends
 * (RFC 5321 4.3.2 allows 421 at any time). */
static void fail(struct smtp_server *s, int code, const char *text)
{
	reply_line(s, code, 0, "%s", text);
	if (++s->errors >= SMTP_ERRORS_MAX) {
		reply_line(s, 421, 0, "4.7.0 %s Too many errors, closing connection",
			   s->p.hostname);
		s->state = SMTP_S_CLOSED;
	}
}

static void reply_verdict(struct smtp_server *s, enum smtp_verdict v)
{
	if (v <= SMTP_OK || v >= SMTP_VERDICT_COUNT)
		v = SMTP_TEMP_FAIL;
	fail(s, verdict_reply[v].code, verdict_reply[v].text);
}

/* ---- transactions -------------------------------------------------------- */

static void txn_reset(struct smtp_server *s)
{
	if (s->txn_open && s->hooks->txn_abort)
		s->hooks->txn_abort(s->ctx, s);
	s->txn_open = 0;
	memset(&s->txn, 0, sizeof s->txn);
	if (s->state == SMTP_S_MAIL || s->state == SMTP_S_RCPT || s->state == SMTP_S_DATA ||
	    s->state == SMTP_S_WAIT)
		s->state = SMTP_S_READY;
	s->wait_auth = 0;
}

static int in_txn(const struct smtp_server *s)
{
	return s->state == SMTP_S_MAIL || s->state == SMTP_S_RCPT;
}

/* ---- small parsers --------------------------------------------------------- */

int smtp_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0, i, pad = 0;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i++) {
		const char *p;

		if (in[i] == '=') {
			pad++;
			continue;
		}
		if (pad || !in[i] || !(p = strchr(a, in[i])))
			return -1;     /* data after padding, or not base64 */
		acc = (acc << 6) | (unsigned)(p - a);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return pad > 2 ? -1 : (int)o;
}

int smtp_b64_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	if ((len + 2) / 3 * 4 + 1 > cap)
		return -1;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;

		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < len ? a[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? a[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

const char *smtp_date(time_t t, char *out, size_t cap)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || strftime(out, cap, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
		snprintf(out, cap, "Thu, 01 Jan 1970 00:00:00 +0000");
	return out;
}

/* A printable ASCII character other than the blank (RFC 5321 paths). */
static int graphic(int c)
{
	return c > 0x20 && c < 0x7f;
}

int smtp_parse_path(const char *arg, char *addr, size_t cap, const char **params)
{
	const char *p = arg, *start, *end;
	size_t n;

	if (*p == ' ')
		p++;   /* "MAIL FROM: <a@b>": common, tolerated */
	if (*p++ != '<')
		return -1;
	start = p;
	while (*p && *p != '>') {
		if (!graphic((unsigned char)*p) || *p == '<')
			return -1;
		p++;
	}
	if (*p != '>' || (size_t)(p - arg) + 1 > SMTP_PATH_MAX + 1)
		return -1;
	end = p++;
	/* A source route "@a,@b:user@c" is accepted and ignored (4.1.1.3). */
	if (*start == '@') {
		const char *colon = memchr(start, ':', (size_t)(end - start));

		if (!colon)
			return -1;
		start = colon + 1;
	}
	n = (size_t)(end - start);
	if (n + 1 > cap)
		return -1;
	memcpy(addr, start, n);
	addr[n] = '\0';
	if (*p && *p != ' ')
		return -1;
	while (*p == ' ')
		p++;
	*params = p;
	return 0;
}

int smtp_next_param(const char **params, char *key, size_t keycap, char *val,
		    size_t valcap)
{
	const char *p = *params;
	size_t k = 0, v = 0;

	while (*p == ' ')
		p++;
	if (!*p)
		return 0;
	if (!isalnum((unsigned char)*p))
		return -1;
	while (isalnum((unsigned char)*p) || *p == '-') {
		if (k + 1 >= keycap)
			return -1;
		key[k++] = *p++;
	}
	key[k] = '\0';
	if (*p == '=') {
		p++;
		while (graphic((unsigned char)*p) && *p != '=') {
			if (v + 1 >= valcap)
				return -1;
			val[v++] = *p++;
		}
		if (v == 0)
			return -1;
	}
	val[v] = '\0';
	if (*p && *p != ' ')
		return -1;
	*params = p;
	return 1;
}

int smtp_parse_reply(const char *line, size_t len, int *last)
{
	int code;

	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 200 || code > 599)
		return -1;
	if (len == 3 || line[3] == ' ')
		*last = 1;
	else if (line[3] == '-')
		*last = 0;
	else
		return -1;
	return code;
}

/* ---- commands ------------------------------------------------------------ */

typedef void (*cmd_fn)(struct smtp_server *s, const char *arg);

/* 1 if arg starts with word (case-insensitive); *rest after it. */
static int has_prefix(const char *arg, const char *word, const char **rest)
{
	size_t n = strlen(word);

	if (strncasecmp(arg, word, n) != 0)
		return 0;
	*rest = arg + n;
	return 1;
}

/* The EHLO/HELO argument: a domain or address literal, printable, no blanks. */
static int helo_valid(const char *arg)
{
	size_t n = strlen(arg);

	if (n == 0 || n > SMTP_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!graphic((unsigned char)arg[i]))
			return 0;
	return 1;
}

static void greet(struct smtp_server *s, const char *arg, int esmtp)
{
	if (!helo_valid(arg)) {
		fail(s, 501, esmtp ? "5.5.4 Syntax: EHLO hostname" : "5.5.4 Syntax: HELO hostname");
		return;
	}
	/* EHLO in a transaction resets it (RFC 5321 4.1.4). */
	txn_reset(s);
	snprintf(s->helo, sizeof s->helo, "%s", arg);
	s->esmtp = esmtp;
	s->state = SMTP_S_READY;
	if (!esmtp) {
		reply_line(s, 250, 0, "%s", s->p.hostname);
		return;
	}
	reply_line(s, 250, 1, "%s", s->p.hostname);
	reply_line(s, 250, 1, "PIPELINING");
	reply_line(s, 250, 1, "SIZE %llu", (unsigned long long)s->p.max_size);
	reply_line(s, 250, 1, "8BITMIME");
	if (s->p.tls_available && !s->tls)
		reply_line(s, 250, 1, "STARTTLS");
	/* RFC 4954 4 / DESIGN.md: no AUTH offered before TLS. */
	if (s->tls && !s->user[0])
		reply_line(s, 250, 1, "AUTH PLAIN LOGIN");
	reply_line(s, 250, 0, "ENHANCEDSTATUSCODES");
}

static void cmd_ehlo(struct smtp_server *s, const char *arg) { greet(s, arg, 1); }
static void cmd_helo(struct smtp_server *s, const char *arg) { greet(s, arg, 0); }

static void cmd_starttls(struct smtp_server *s, const char *arg)
{
	if (*arg)
		fail(s, 501, "5.5.4 Syntax: STARTTLS");
	else if (!s->p.tls_available)
		fail(s, 502, "5.5.1 STARTTLS not available");
	else if (s->tls)
		fail(s, 503, "5.5.1 TLS already active");
	else if (in_txn(s))
		fail(s, 503, "5.5.1 STARTTLS not allowed in a mail transaction");
	else {
		reply_line(s, 220, 0, "2.0.0 Ready to start TLS");
		s->state = SMTP_S_TLS;   /* the caller discards what follows */
	}
}

/* 235, or 535 / 454 (RFC 4954 6); the user name is forgotten either way. */
static void auth_result(struct smtp_server *s, enum smtp_verdict v)
{
	if (v == SMTP_OK) {
		snprintf(s->user, sizeof s->user, "%s", s->login_user);
		reply_line(s, 235, 0, "2.7.0 Authentication successful");
	} else {
		reply_verdict(s, v == SMTP_AUTH_THROTTLED ? v : SMTP_AUTH_FAILED);
	}
	memset(s->login_user, 0, sizeof s->login_user);
}

/* Asks the auth hook; SMTP_PENDING parks the session until auth_done. */
static void auth_check(struct smtp_server *s, const char *user, const char *password)
{
	enum smtp_verdict v;

	snprintf(s->login_user, sizeof s->login_user, "%s", user);
	v = s->hooks->auth ? s->hooks->auth(s->ctx, s, user, password) : SMTP_AUTH_FAILED;
	if (v == SMTP_PENDING) {
		s->state = SMTP_S_WAIT;
		s->wait_auth = 1;
		return;
	}
	auth_result(s, v);
}

/* Checks an AUTH PLAIN response (RFC 4616: authzid NUL authcid NUL passwd). */
static void auth_plain(struct smtp_server *s, const char *b64)
{
	unsigned char buf[SMTP_AUTH_USER_MAX * 2 + SMTP_AUTH_PASS_MAX + 3];
	int n = strcmp(b64, "=") == 0 ? 0 : smtp_b64_decode(b64, strlen(b64), buf, sizeof buf - 1);
	char *authz, *user, *pass;
	size_t zl, ul;

	s->state = SMTP_S_READY;
	if (n < 0) {
		fail(s, 501, "5.5.2 Cannot decode the response");
		return;
	}
	buf[n] = '\0';
	authz = (char *)buf;
	zl = strnlen(authz, (size_t)n);
	if (zl + 1 >= (size_t)n) {
		fail(s, 501, "5.5.2 Malformed PLAIN response");
		return;
	}
	user = authz + zl + 1;
	ul = strnlen(user, (size_t)n - zl - 1);
	if (zl + ul + 2 > (size_t)n) {
		fail(s, 501, "5.5.2 Malformed PLAIN response");
		return;
	}
	pass = user + ul + 1;   /* NUL-terminated by buf[n] */
	if ((zl && strcmp(authz, user) != 0) || ul == 0 || ul > SMTP_AUTH_USER_MAX ||
	    strlen(pass) != (size_t)n - zl - ul - 2) {
		fail(s, 535, "5.7.8 Authentication credentials invalid");
		memset(buf, 0, sizeof buf);
		return;
	}
	auth_check(s, user, pass);
	memset(buf, 0, sizeof buf);
}

/* AUTH LOGIN: the user name arrived (base64); ask for the password. */
static void auth_login_user(struct smtp_server *s, const char *b64)
{
	unsigned char buf[SMTP_AUTH_USER_MAX + 1];
	int n = smtp_b64_decode(b64, strlen(b64), buf, sizeof buf - 1);

	if (n <= 0 || memchr(buf, 0, (size_t)n)) {
		s->state = SMTP_S_READY;
		fail(s, 501, "5.5.2 Cannot decode the user name");
		return;
	}
	memcpy(s->login_user, buf, (size_t)n);
	s->login_user[n] = '\0';
	s->state = SMTP_S_AUTH_PASS;
	reply_line(s, 334, 0, "UGFzc3dvcmQ6");   /* "Password:" */
}

static void auth_login_pass(struct smtp_server *s, const char *b64)
{
	unsigned char buf[SMTP_AUTH_PASS_MAX + 1];
	int n = smtp_b64_decode(b64, strlen(b64), buf, sizeof buf - 1);

	s->state = SMTP_S_READY;
	if (n < 0 || memchr(buf, 0, (size_t)n)) {
		fail(s, 501, "5.5.2 Cannot decode the password");
		return;
	}
	buf[n] = '\0';
	{
		char user[SMTP_AUTH_USER_MAX + 1];

		memcpy(user, s->login_user, sizeof user);
		auth_check(s, user, (char *)buf);
	}
	memset(buf, 0, sizeof buf);
}

static void cmd_auth(struct smtp_server *s, const char *arg)
{
	const char *rest;

	if (!s->tls)   /* RFC 4954 4 + DESIGN.md: no password before TLS */
		fail(s, 530, "5.7.0 Must issue a STARTTLS command first");
	else if (s->state == SMTP_S_INIT)
		fail(s, 503, "5.5.1 Send EHLO first");
	else if (s->user[0])
		fail(s, 503, "5.5.1 Already authenticated");
	else if (in_txn(s))
		fail(s, 503, "5.5.1 AUTH not allowed in a mail transaction");
	else if (has_prefix(arg, "PLAIN", &rest) && (!*rest || *rest == ' ')) {
		if (*rest) {
			auth_plain(s, rest + 1);
		} else {
			s->state = SMTP_S_AUTH_PLAIN;
			reply_line(s, 334, 0, "%s", "");   /* empty challenge: "334 " */
		}
	} else if (has_prefix(arg, "LOGIN", &rest) && (!*rest || *rest == ' ')) {
		if (*rest) {
			auth_login_user(s, rest + 1);
		} else {
			s->state = SMTP_S_AUTH_USER;
			reply_line(s, 334, 0, "VXNlcm5hbWU6");   /* "Username:" */
		}
	} else {
		fail(s, 504, "5.5.4 Unrecognized authentication mechanism");
	}
}

/* MAIL parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 4954 5 AUTH). */
static int mail_params(struct smtp_server *s, const char *params)
{
	char key[32], val[SMTP_PATH_MAX + 1];
	int r;

	while ((r = smtp_next_param(&params, key, sizeof key, val, sizeof val)) == 1) {
		if (strcasecmp(key, "SIZE") == 0) {
			char *end;
			unsigned long long n = strtoull(val, &end, 10);

			if (!*val || *end || strlen(val) > 20 || !isdigit((unsigned char)*val)) {
				fail(s, 501, "5.5.4 Bad SIZE parameter");
				return -1;
			}
			s->txn.size_param = n;
			if (n > s->p.max_size) {
				reply_verdict(s, SMTP_TOO_BIG);
				return -1;
			}
		} else if (strcasecmp(key, "BODY") == 0) {
			if (strcasecmp(val, "8BITMIME") == 0)
				s->txn.body_8bit = 1;
			else if (strcasecmp(val, "7BIT") != 0) {
				fail(s, 501, "5.5.4 Bad BODY parameter");
				return -1;
			}
		} else if (strcasecmp(key, "AUTH") != 0) {
			fail(s, 555, "5.5.4 Unsupported MAIL parameter");
			return -1;
		}
	}
	if (r < 0) {
		fail(s, 501, "5.5.4 Bad MAIL parameter syntax");
		return -1;
	}
	return 0;
}

static void cmd_mail(struct smtp_server *s, const char *arg)
{
	const char *rest, *params;
	enum smtp_verdict v;

	if (s->state == SMTP_S_INIT) {
		fail(s, 503, "5.5.1 Send EHLO first");
		return;
	}
	if (in_txn(s)) {
		fail(s, 503, "5.5.1 Nested MAIL command");
		return;
	}
	if (s->p.auth_required && !s->user[0]) {
		fail(s, 530, "5.7.0 Authentication required");
		return;
	}
	if (!has_prefix(arg, "FROM:", &rest) ||
	    smtp_parse_path(rest, s->txn.from, sizeof s->txn.from, &params) < 0) {
		memset(&s->txn, 0, sizeof s->txn);
		fail(s, 501, "5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (mail_params(s, params) < 0) {
		memset(&s->txn, 0, sizeof s->txn);
		return;
	}
	v = s->hooks->mail ? s->hooks->mail(s->ctx, s) : SMTP_OK;
	if (v != SMTP_OK) {
		memset(&s->txn, 0, sizeof s->txn);
		reply_verdict(s, v);
		return;
	}
	s->txn_open = 1;
	s->state = SMTP_S_MAIL;
	reply_line(s, 250, 0, "2.1.0 Ok");
}

static void cmd_rcpt(struct smtp_server *s, const char *arg)
{
	char addr[SMTP_PATH_MAX + 1];
	const char *rest, *params;
	enum smtp_verdict v;

	if (!in_txn(s)) {
		fail(s, 503, "5.5.1 Need MAIL command first");
		return;
	}
	if (!has_prefix(arg, "TO:", &rest) ||
	    smtp_parse_path(rest, addr, sizeof addr, &params) < 0) {
		fail(s, 501, "5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (*params) {
		fail(s, 555, "5.5.4 Unsupported RCPT parameter");
		return;
	}
	if (!addr[0]) {
		reply_verdict(s, SMTP_RCPT_BAD);
		return;
	}
	/* RFC 5321 4.5.3.1.10: 452 for "too many recipients". Not counted as
	 * an error: the client is expected to send the rest later. */
	if (s->txn.nrcpt >= SMTP_RCPTS_MAX) {
		reply_line(s, 452, 0, "4.5.3 Too many recipients");
		return;
	}
	v = s->hooks->rcpt ? s->hooks->rcpt(s->ctx, s, addr) : SMTP_OK;
	if (v != SMTP_OK) {
		reply_verdict(s, v);
		return;
	}
	s->txn.nrcpt++;
	s->state = SMTP_S_RCPT;
	reply_line(s, 250, 0, "2.1.5 Ok");
}

static int data_emit(struct smtp_server *s, const char *buf, size_t len);

/* Received: first (RFC 5321 4.4), with the protocol keyword of RFC 3848. */
static void add_received(struct smtp_server *s)
{
	static const char *const proto[2][2][2] = {
		{ { "SMTP", "ESMTP" }, { "SMTP", "ESMTPA" } },
		{ { "SMTP", "ESMTPS" }, { "SMTP", "ESMTPSA" } },
	};
	char hdr[SMTP_REPLY_MAX + SMTP_DOMAIN_MAX], date[64];
	int n;

	smtp_date(s->hooks->now ? s->hooks->now(s->ctx) : time(NULL), date, sizeof date);
	n = snprintf(hdr, sizeof hdr,
		     "Received: from %s (%s)\r\n\tby %s (Postern) with %s id %s;\r\n\t%s\r\n",
		     s->helo, s->p.peer_addr ? s->p.peer_addr : "unknown", s->p.hostname,
		     proto[!!s->tls][!!s->user[0]][!!s->esmtp], s->txn.queue_id, date);
	if (n > 0 && (size_t)n < sizeof hdr)
		data_emit(s, hdr, (size_t)n);
}

static void cmd_data(struct smtp_server *s, const char *arg)
{
	enum smtp_verdict v;

	if (*arg) {
		fail(s, 501, "5.5.4 Syntax: DATA");
		return;
	}
	if (s->state == SMTP_S_MAIL) {   /* RFC 2920 3.1: every RCPT failed */
		fail(s, 554, "5.5.1 No valid recipients");
		return;
	}
	if (s->state != SMTP_S_RCPT) {
		fail(s, 503, "5.5.1 Need RCPT command first");
		return;
	}
	v = s->hooks->data_start ? s->hooks->data_start(s->ctx, s) : SMTP_OK;
	if (v != SMTP_OK) {
		reply_verdict(s, v);
		return;
	}
	s->state = SMTP_S_DATA;
	s->data_err = SMTP_OK;
	s->prev_crlf = 1;   /* the DATA line itself ended with CRLF */
	s->in_headers = 1;
	s->seen_msgid = s->seen_date = 0;
	s->data_size = 0;
	reply_line(s, 354, 0, "End data with <CR><LF>.<CR><LF>");
	add_received(s);
}

static void cmd_rset(struct smtp_server *s, const char *arg)
{
	if (*arg) {
		fail(s, 501, "5.5.4 Syntax: RSET");
		return;
	}
	txn_reset(s);
	reply_line(s, 250, 0, "2.0.0 Ok");
}

static void cmd_noop(struct smtp_server *s, const char *arg)
{
	(void)arg;   /* RFC 5321 4.1.1.9: a parameter is allowed and ignored */
	reply_line(s, 250, 0, "2.0.0 Ok");
}

static void cmd_quit(struct smtp_server *s, const char *arg)
{
	(void)arg;
	txn_reset(s);
	reply_line(s, 221, 0, "2.0.0 %s closing connection", s->p.hostname);
	s->state = SMTP_S_CLOSED;
}

/* RFC 5321 3.5.3: 252 when VRFY is disabled, so addresses are not probed. */
static void cmd_vrfy(struct smtp_server *s, const char *arg)
{
	(void)arg;
	reply_line(s, 252, 0, "2.5.0 Cannot VRFY user, but will accept message");
}

static void cmd_expn(struct smtp_server *s, const char *arg)
{
	(void)arg;
	fail(s, 502, "5.5.1 EXPN not available");
}

static void cmd_help(struct smtp_server *s, const char *arg)
{
	(void)arg;
	reply_line(s, 214, 0, "2.0.0 See RFC 5321");
}

static const struct {
	const char *name;
	cmd_fn fn;
} commands[] = {
	{ "EHLO", cmd_ehlo }, { "HELO", cmd_helo }, { "STARTTLS", cmd_starttls },
	{ "AUTH", cmd_auth }, { "MAIL", cmd_mail }, { "RCPT", cmd_rcpt },
	{ "DATA", cmd_data }, { "RSET", cmd_rset }, { "NOOP", cmd_noop },
	{ "QUIT", cmd_quit }, { "VRFY", cmd_vrfy }, { "EXPN", cmd_expn },
	{ "HELP", cmd_help },
};

/* ---- line handlers per state --------------------------------------------- */

/* A command or AUTH line must be one clean CRLF-terminated line. */
static int line_ok(struct smtp_server *s, int r, const struct linebuf_line *ln)
{
	if (r == LINEBUF_TOOLONG) {
		fail(s, 500, "5.5.2 Line too long");
		return 0;
	}
	if (ln->term != LINEBUF_TERM_CRLF) {
		fail(s, 500, "5.5.2 Line must end with CRLF");
		return 0;
	}
	if (memchr(ln->data, '\0', ln->len)) {
		fail(s, 500, "5.5.2 NUL byte in command");
		return 0;
	}
	return 1;
}

static void on_command(struct smtp_server *s, int r, struct linebuf_line *ln)
{
	size_t n = 0;

	if (!line_ok(s, r, ln))
		return;
	while (n < ln->len && ln->data[n] != ' ')
		n++;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strlen(commands[i].name) == n &&
		    strncasecmp(commands[i].name, ln->data, n) == 0) {
			commands[i].fn(s, ln->data + n + (n < ln->len));
			return;
		}
	fail(s, 500, "5.5.2 Command unrecognized");
}

/* RFC 4954 4: "*" cancels an AUTH exchange with 501. */
static int auth_cancelled(struct smtp_server *s, int r, struct linebuf_line *ln)
{
	if (!line_ok(s, r, ln)) {
		s->state = SMTP_S_READY;
		return 1;
	}
	if (strcmp(ln->data, "*") == 0) {
		s->state = SMTP_S_READY;
		fail(s, 501, "5.0.0 Authentication cancelled");
		return 1;
	}
	return 0;
}

static void on_auth_plain(struct smtp_server *s, int r, struct linebuf_line *ln)
{
	if (!auth_cancelled(s, r, ln))
		auth_plain(s, ln->data);
}

static void on_auth_user(struct smtp_server *s, int r, struct linebuf_line *ln)
{
	if (!auth_cancelled(s, r, ln))
		auth_login_user(s, ln->data);
}

static void on_auth_pass(struct smtp_server *s, int r, struct linebuf_line *ln)
{
	if (!auth_cancelled(s, r, ln))
		auth_login_pass(s, ln->data);
	if (r == LINEBUF_LINE && ln->data)   /* an over-long line has no data */
		memset(ln->data, 0, ln->len);   /* the password leaves the buffer */
}

/* Message bytes to the hook, unless the message already failed. */
static int data_emit(struct smtp_server *s, const char *buf, size_t len)
{
	if (s->data_err != SMTP_OK)
		return -1;
	if (s->data_size + len > s->p.max_size) {
		s->data_err = SMTP_TOO_BIG;
		return -1;
	}
	s->data_size += len;
	if (s->hooks->data_write && s->hooks->data_write(s->ctx, s, buf, len) < 0) {
		s->data_err = SMTP_TEMP_FAIL;
		return -1;
	}
	return 0;
}

/* Message-ID and Date when the client left them out (RFC 6409 8.2, 8.3). */
static void add_missing_headers(struct smtp_server *s)
{
	char hdr[SMTP_REPLY_MAX];
	int n;

	if (!s->seen_date) {
		char date[64];

		smtp_date(s->hooks->now ? s->hooks->now(s->ctx) : time(NULL), date, sizeof date);
		n = snprintf(hdr, sizeof hdr, "Date: %s\r\n", date);
		data_emit(s, hdr, (size_t)n);
	}
	if (!s->seen_msgid) {
		n = snprintf(hdr, sizeof hdr, "Message-ID: <%s@%s>\r\n", s->txn.queue_id,
			     s->p.hostname);
		if (n > 0 && (size_t)n < sizeof hdr)
			data_emit(s, hdr, (size_t)n);
	}
	s->in_headers = 0;
}

/* A header line: note Date and Message-ID (names are case-insensitive). */
static void header_line(struct smtp_server *s, const char *line, size_t len)
{
	if (len == 0) {   /* the blank line ending the header section */
		add_missing_headers(s);
		return;
	}
	if (line[0] == ' ' || line[0] == '\t')
		return;   /* a folded continuation */
	if (len > 5 && strncasecmp(line, "Date:", 5) == 0)
		s->seen_date = 1;
	else if (len > 11 && strncasecmp(line, "Message-ID:", 11) == 0)
		s->seen_msgid = 1;
	else if (!memchr(line, ':', len))
		add_missing_headers(s);   /* not a header: the body started */
}

/* The one reply to a message, after its end (RFC 5321 4.1.1.4). */
static void data_finish(struct smtp_server *s, enum smtp_verdict v)
{
	if (v == SMTP_OK) {
		reply_line(s, 250, 0, "2.0.0 Ok: queued as %s", s->txn.queue_id);
		s->txn_open = 0;   /* done: nothing to abort */
	} else {
		if (v < 0 || v >= SMTP_VERDICT_COUNT)
			v = SMTP_TEMP_FAIL;
		reply_line(s, verdict_reply[v].code, 0, "%s", verdict_reply[v].text);
	}
	txn_reset(s);
}

static void data_end(struct smtp_server *s)
{
	enum smtp_verdict v;

	if (s->data_err == SMTP_OK && s->in_headers)
		add_missing_headers(s);
	v = s->data_err;
	if (v == SMTP_OK)
		v = s->hooks->data_end ? s->hooks->data_end(s->ctx, s) : SMTP_OK;
	if (v == SMTP_PENDING) {
		s->state = SMTP_S_WAIT;   /* lines after the "." stay buffered */
		return;
	}
	data_finish(s, v);
}

/*
 * One line of message text. RFC 5321 4.1.1.4: the data ends with
 * CRLF "." CRLF, and nothing else ends it: a "." line after a bare LF or
 * CR does not (SMTP smuggling); such line ends make the message fail once
 * it has ended. 4.5.2: a leading "." is removed (dot-stuffing).
 */
static void on_data_line(struct smtp_server *s, int r, struct linebuf_line *ln)
{
	int crlf = ln->term == LINEBUF_TERM_CRLF;
	const char *p = ln->data;
	size_t n = ln->len;

	if (r == LINEBUF_TOOLONG) {
		if (s->data_err == SMTP_OK)
			s->data_err = SMTP_LONG_LINE;
		s->prev_crlf = crlf;
		return;
	}
	if (crlf && s->prev_crlf && n == 1 && p[0] == '.') {
		data_end(s);
		return;
	}
	if (!crlf && s->data_err == SMTP_OK)
		s->data_err = SMTP_BARE_EOL;
	s->prev_crlf = crlf;
	if (n > 0 && p[0] == '.') {
		p++;
		n--;
	}
	if (s->in_headers)
		header_line(s, p, n);
	/* Stored with CRLF whatever came in (the message failed otherwise). */
	if (data_emit(s, p, n) == 0)
		data_emit(s, "\r\n", 2);
}

typedef void (*line_fn)(struct smtp_server *s, int r, struct linebuf_line *ln);

static const line_fn line_handler[SMTP_S_COUNT] = {
	[SMTP_S_INIT] = on_command,
	[SMTP_S_READY] = on_command,
	[SMTP_S_MAIL] = on_command,
	[SMTP_S_RCPT] = on_command,
	[SMTP_S_DATA] = on_data_line,
	[SMTP_S_AUTH_PLAIN] = on_auth_plain,
	[SMTP_S_AUTH_USER] = on_auth_user,
	[SMTP_S_AUTH_PASS] = on_auth_pass,
	[SMTP_S_WAIT] = NULL,     /* nothing is read until the verdict */
	[SMTP_S_TLS] = NULL,      /* nothing is read until the handshake */
	[SMTP_S_CLOSED] = NULL,
};

/* ---- the session ------------------------------------------------------------ */

void smtp_server_init(struct smtp_server *s, const struct smtp_params *p,
		      const struct smtp_hooks *hooks, void *ctx)
{
	static const struct smtp_hooks none;

	memset(s, 0, sizeof *s);
	s->p = *p;
	if (!s->p.hostname)
		s->p.hostname = "localhost";
	s->hooks = hooks ? hooks : &none;
	s->ctx = ctx;
	s->tls = p->tls_active;
	s->state = SMTP_S_INIT;
	linebuf_init(&s->lb, s->inbuf, sizeof s->inbuf, SMTP_LINE_MAX);
	reply_line(s, 220, 0, "%s ESMTP Postern", s->p.hostname);
}

void smtp_server_end(struct smtp_server *s)
{
	txn_reset(s);
	s->state = SMTP_S_CLOSED;
}

static void process(struct smtp_server *s)
{
	struct linebuf_line ln;
	int r;

	s->stalled = 0;
	while (line_handler[s->state]) {
		if (SMTP_OUT_MAX - s->outlen < 2 * SMTP_REPLY_MAX) {
			s->stalled = 1;   /* resume after the output drains */
			return;
		}
		r = linebuf_next(&s->lb, &ln);
		if (r == LINEBUF_NEED)
			return;
		line_handler[s->state](s, r, &ln);
	}
	/* STARTTLS or closed: whatever was pipelined after it is dropped
	 * (RFC 3207 4.2 / STARTTLS command injection, CVE-2011-0411). */
	if (s->state != SMTP_S_WAIT)
		linebuf_discard(&s->lb);
}

void smtp_server_auth_done(struct smtp_server *s, enum smtp_verdict v)
{
	if (s->state != SMTP_S_WAIT || !s->wait_auth)
		return;
	s->wait_auth = 0;
	s->state = SMTP_S_READY;
	auth_result(s, v);
	process(s);
}

void smtp_server_data_done(struct smtp_server *s, enum smtp_verdict v)
{
	if (s->state != SMTP_S_WAIT || s->wait_auth)
		return;
	data_finish(s, v == SMTP_PENDING ? SMTP_TEMP_FAIL : v);
	process(s);
}

int smtp_server_waiting(const struct smtp_server *s)
{
	return s->state == SMTP_S_WAIT;
}

void *smtp_server_space(struct smtp_server *s, size_t *room)
{
	if (s->stalled || !line_handler[s->state]) {
		*room = 0;
		return s->inbuf;
	}
	return linebuf_space(&s->lb, room);
}

void smtp_server_commit(struct smtp_server *s, size_t n)
{
	if (!line_handler[s->state])
		return;
	if (n)
		linebuf_commit(&s->lb, n);
	process(s);
}

size_t smtp_server_input(struct smtp_server *s, const void *data, size_t len)
{
	size_t done = 0;

	smtp_server_commit(s, 0);
	while (done < len) {
		size_t room;
		void *p = smtp_server_space(s, &room);

		if (room == 0)
			break;
		if (room > len - done)
			room = len - done;
		memcpy(p, (const char *)data + done, room);
		done += room;
		smtp_server_commit(s, room);
	}
	return done;
}

const char *smtp_server_output(const struct smtp_server *s, size_t *len)
{
	*len = s->outlen;
	return s->out;
}

void smtp_server_consumed(struct smtp_server *s, size_t n)
{
	if (n >= s->outlen) {
		s->outlen = 0;
		return;
	}
	memmove(s->out, s->out + n, s->outlen - n);
	s->outlen -= n;
}

int smtp_server_tls_wanted(const struct smtp_server *s)
{
	return s->state == SMTP_S_TLS;
}

void smtp_server_tls_started(struct smtp_server *s)
{
	/* RFC 3207 4.2: forget everything learnt in clear, EHLO again. */
	linebuf_discard(&s->lb);
	s->tls = 1;
	s->esmtp = 0;
	s->helo[0] = '\0';
	s->state = SMTP_S_INIT;
}

int smtp_server_closing(const struct smtp_server *s)
{
	return s->state == SMTP_S_CLOSED;
}

int smtp_server_timeout_ms(const struct smtp_server *s)
{
	if (s->state == SMTP_S_DATA)
		return SMTP_TIMEOUT_DATA_MS;
	if (s->state == SMTP_S_TLS)
		return SMTP_TIMEOUT_TLS_MS;
	return SMTP_TIMEOUT_COMMAND_MS;
}

void smtp_server_shutdown(struct smtp_server *s, const char *why)
{
	if (s->state == SMTP_S_CLOSED)
		return;
	txn_reset(s);
	if (SMTP_OUT_MAX - s->outlen >= SMTP_REPLY_MAX)
		reply_line(s, 421, 0, "4.4.2 %s %s", s->p.hostname, why ? why : "closing connection");
	s->state = SMTP_S_CLOSED;
}

/* ---- the submission policy ------------------------------------------------- */

enum smtp_route smtp_route(const struct users_db *db, const char *domain,
			   int relay_unknown, const char *addr)
{
	char (*out)[USERS_NAME_MAX + 1];
	int n;

	if (!addr[0] || strlen(addr) > USERS_ADDR_MAX)
		return SMTP_ROUTE_BAD;
	if (!users_is_local(addr, domain))
		return strchr(addr, '@') ? SMTP_ROUTE_REMOTE : SMTP_ROUTE_BAD;
	out = malloc(SMTP_EXPAND_MAX * sizeof *out);
	if (!out)
		return SMTP_ROUTE_BAD;
	n = users_resolve(db, addr, domain, out, SMTP_EXPAND_MAX);
	free(out);
	if (n > 0)
		return SMTP_ROUTE_LOCAL;
	if (n < 0)
		return SMTP_ROUTE_BAD;
	return relay_unknown && strchr(addr, '@') ? SMTP_ROUTE_REMOTE : SMTP_ROUTE_UNKNOWN;
}

enum smtp_verdict smtp_sender_policy(const struct users_db *db, const char *domain,
				     const char *user, const char *from)
{
	if (!from[0] || !strchr(from, '@'))
		return SMTP_SENDER_BAD;
	return users_owns(db, user, from, domain) ? SMTP_OK : SMTP_SENDER_NOT_OWNED;
}
