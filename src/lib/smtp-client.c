/*
 * smtp-client.c - the SMTP client protocol core (see smtp-client.h).
 *
 * A complete reply (all its lines) is handed to the handler of the current
 * state (reply_cb[]); handlers move the state and queue commands. The
 * transaction's commands (MAIL, RCPT..., DATA) are emitted by fill() as
 * output room allows: all at once with PIPELINING (RFC 2920), one per reply
 * without it.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp-client.h"
#include "smtp-proto.h"

/* Room kept free for one command line and its CRLF. */
#define CMD_ROOM (SMTPC_PATH_MAX + 64)
/* Worst-case bytes one body byte becomes (a "." doubled, or CR -> CRLF). */
#define BODY_EXPAND 3

static const char *const state_names[SMTPC_S_COUNT] = {
	"greeting", "ehlo", "starttls", "tls-handshake", "auth", "idle", "envelope",
	"body", "dot", "rset", "done", "quit", "closed", "failed",
};

const char *smtpc_state_name(int state)
{
	return state >= 0 && state < SMTPC_S_COUNT ? state_names[state] : "?";
}

/* ---- output ----------------------------------------------------------- */

static int put(struct smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(struct smtpc *c, const char *fmt, ...)
{
	size_t room = sizeof c->out - c->olen;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->out + c->olen, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		return -1;
	c->olen += (size_t)n;
	return 0;
}

void smtpc_fail(struct smtpc *c, int temp, const char *why)
{
	if (c->state == SMTPC_S_FAILED || c->state == SMTPC_S_CLOSED)
		return;
	c->fail_temp = temp;
	snprintf(c->err, sizeof c->err, "%s", why);
	c->state = SMTPC_S_FAILED;
}

/* Fails with the reply just read ("while STEP: 554 text"). */
static void fail_reply(struct smtpc *c, const char *step)
{
	char why[sizeof c->err];

	snprintf(why, sizeof why, "%s: %s", step, c->rtext);
	c->fail_code = c->rcode;
	smtpc_fail(c, c->rcode < 500, why);
}

/* A command line; a full buffer here is a broken invariant of the caller
 * (commands are only queued after replies, when the output is small). */
static void cmd(struct smtpc *c, const char *line, int next_state)
{
	if (put(c, "%s\r\n", line) < 0) {
		smtpc_fail(c, 1, "output buffer full");
		return;
	}
	c->state = next_state;
}

static void send_ehlo(struct smtpc *c)
{
	char line[SMTPC_NAME_MAX + 8];

	c->caps = 0;
	c->size_max = 0;
	c->ehlo_count++;
	snprintf(line, sizeof line, "EHLO %s", c->ehlo_name);
	cmd(c, line, SMTPC_S_EHLO);
}

/* ---- set-up ----------------------------------------------------------- */

static int copy(char *dst, size_t cap, const char *src)
{
	if (!src)
		src = "";
	if (strlen(src) >= cap)
		return -1;
	strcpy(dst, src);
	return 0;
}

/* A value that goes on a command line: no control characters or blanks. */
static int word_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

int smtpc_init(struct smtpc *c, const struct smtpc_params *p)
{
	memset(c, 0, sizeof *c);
	c->state = SMTPC_S_GREETING;
	c->tls = p->tls_active;
	if (copy(c->ehlo_name, sizeof c->ehlo_name, p->ehlo_name) < 0 || !c->ehlo_name[0] ||
	    !word_ok(c->ehlo_name) || copy(c->user, sizeof c->user, p->user) < 0 ||
	    copy(c->pass, sizeof c->pass, p->password) < 0)
		return -1;
	return 0;
}

/* ---- EHLO capabilities (RFC 5321 4.1.1.1, 3207, 4954, 2920, 1870) ----- */

static int keyword(const char *text, const char *kw, const char **rest)
{
	size_t n = strlen(kw);

	if (strncasecmp(text, kw, n) != 0 || (text[n] && text[n] != ' ' && text[n] != '='))
		return 0;
	*rest = text + n;
	return 1;
}

/* "AUTH PLAIN LOGIN CRAM-MD5": the mechanisms we know. */
static void parse_auth(struct smtpc *c, const char *rest)
{
	char mech[32];
	int n;

	while (*rest == ' ' || *rest == '=')
		rest++;
	while (sscanf(rest, "%31s%n", mech, &n) == 1) {
		if (strcasecmp(mech, "PLAIN") == 0)
			c->caps |= SMTPC_CAP_AUTH_PLAIN;
		else if (strcasecmp(mech, "LOGIN") == 0)
			c->caps |= SMTPC_CAP_AUTH_LOGIN;
		rest += n;
	}
}

void smtpc_parse_ehlo_line(struct smtpc *c, const char *text)
{
	const char *rest;

	if (keyword(text, "STARTTLS", &rest))
		c->caps |= SMTPC_CAP_STARTTLS;
	else if (keyword(text, "PIPELINING", &rest))
		c->caps |= SMTPC_CAP_PIPELINING;
	else if (keyword(text, "8BITMIME", &rest))
		c->caps |= SMTPC_CAP_8BITMIME;
	else if (keyword(text, "AUTH", &rest))
		parse_auth(c, rest);
	else if (keyword(text, "SIZE", &rest)) {
		unsigned long long v = 0;

		c->caps |= SMTPC_CAP_SIZE;
		if (*rest && sscanf(rest, " %llu", &v) == 1)
			c->size_max = v;
	}
}

/* ---- reply handlers, one per state -------------------------------------- */

static void after_ehlo_tls(struct smtpc *c);

static void on_greeting(struct smtpc *c)
{
	if (c->rcode != 220) {
		fail_reply(c, "greeting");
		return;
	}
	send_ehlo(c);
}

static void on_ehlo(struct smtpc *c)
{
	if (c->rcode != 250) {
		fail_reply(c, "EHLO");
		return;
	}
	if (c->tls) {
		after_ehlo_tls(c);
		return;
	}
	/* TLS is mandatory: never continue in clear (DESIGN.md). */
	if (!(c->caps & SMTPC_CAP_STARTTLS)) {
		smtpc_fail(c, 1, "the server does not offer STARTTLS: nothing sent");
		return;
	}
	cmd(c, "STARTTLS", SMTPC_S_STARTTLS);
}

static void on_starttls(struct smtpc *c)
{
	if (c->rcode != 220) {
		fail_reply(c, "STARTTLS");
		return;
	}
	c->state = SMTPC_S_TLS_WANTED;
}

static void auth_line(struct smtpc *c, const char *prefix, const char *data, size_t len)
{
	char b64[2 * SMTPC_CRED_MAX + 16 + 8];
	char line[sizeof b64 + 16];

	if (smtp_b64_encode((const unsigned char *)data, len, b64, sizeof b64) < 0) {
		smtpc_fail(c, 0, "credentials too long");
		return;
	}
	snprintf(line, sizeof line, "%s%s", prefix, b64);
	cmd(c, line, SMTPC_S_AUTH);
	memset(b64, 0, sizeof b64);
	memset(line, 0, sizeof line);
}

/* RFC 4954 4: PLAIN with an initial response, else LOGIN in two steps. */
static void start_auth(struct smtpc *c)
{
	char plain[2 * SMTPC_CRED_MAX + 2];
	size_t ul = strlen(c->user), pl = strlen(c->pass);

	if (c->caps & SMTPC_CAP_AUTH_PLAIN) {
		plain[0] = '\0';
		memcpy(plain + 1, c->user, ul);
		plain[1 + ul] = '\0';
		memcpy(plain + 2 + ul, c->pass, pl);
		c->auth_step = 2;
		auth_line(c, "AUTH PLAIN ", plain, 2 + ul + pl);
		memset(plain, 0, sizeof plain);
	} else if (c->caps & SMTPC_CAP_AUTH_LOGIN) {
		c->auth_step = 0;
		cmd(c, "AUTH LOGIN", SMTPC_S_AUTH);
	} else {
		smtpc_fail(c, 1, "the server offers neither AUTH PLAIN nor AUTH LOGIN");
	}
}

static void after_ehlo_tls(struct smtpc *c)
{
	if (c->user[0])
		start_auth(c);
	else
		c->state = SMTPC_S_IDLE;
}

static void on_auth(struct smtpc *c)
{
	if (c->rcode == 235) {
		c->state = SMTPC_S_IDLE;
	} else if (c->rcode == 334 && c->auth_step == 0) {
		c->auth_step = 1;
		auth_line(c, "", c->user, strlen(c->user));
	} else if (c->rcode == 334 && c->auth_step == 1) {
		c->auth_step = 2;
		auth_line(c, "", c->pass, strlen(c->pass));
	} else {
		fail_reply(c, "AUTH");
	}
}

/* Applies code/text to recipient i's result. */
static void set_result(struct smtpc *c, int i, int code, const char *text)
{
	c->res[i].code = code;
	snprintf(c->res[i].text, sizeof c->res[i].text, "%s", text);
}

static void rset(struct smtpc *c)
{
	cmd(c, "RSET", SMTPC_S_RSET);
}

/* Every reply of the envelope is in: a failed MAIL overrides everything. */
static void envelope_failed(struct smtpc *c)
{
	for (int i = 0; i < c->nrcpt; i++)
		if (c->mail_code / 100 != 2 || c->res[i].code / 100 == 2)
			set_result(c, i, c->mail_code / 100 != 2 ? c->mail_code : c->rcode,
				   c->mail_code / 100 != 2 ? c->mail_text : c->rtext);
}

static void on_data_reply(struct smtpc *c)
{
	if (c->rcode == 354 && c->accepted > 0 && c->mail_code / 100 == 2) {
		c->state = SMTPC_S_BODY;
		c->body_bol = 1;
		c->body_cr = 0;
		return;
	}
	if (c->rcode == 354) {
		/* RFC 2920 3.1: DATA was pipelined but no recipient was
		 * accepted; the server still wants text: send an empty one. */
		cmd(c, ".", SMTPC_S_DOT);
		c->dot_code = -1;
		return;
	}
	envelope_failed(c);
	rset(c);
}

static void on_envelope(struct smtpc *c)
{
	int idx = c->answered++;

	if (idx == 0) {
		c->mail_code = c->rcode;
		snprintf(c->mail_text, sizeof c->mail_text, "%s", c->rtext);
	} else if (idx <= c->nrcpt) {
		set_result(c, idx - 1, c->rcode, c->rtext);
		if (c->rcode / 100 == 2)
			c->accepted++;
	} else {
		on_data_reply(c);
		return;
	}
	/* Without pipelining DATA is sent only for an accepted envelope. */
	if (!(c->caps & SMTPC_CAP_PIPELINING) &&
	    ((idx == 0 && c->mail_code / 100 != 2) || (idx == c->nrcpt && c->accepted == 0))) {
		envelope_failed(c);
		rset(c);
	}
}

static void on_dot(struct smtpc *c)
{
	if (c->dot_code == -1) {
		/* The empty text after a fully refused pipelined envelope. */
		envelope_failed(c);
		c->state = SMTPC_S_MSG_DONE;
		return;
	}
	c->dot_code = c->rcode;
	for (int i = 0; i < c->nrcpt; i++)
		if (c->res[i].code / 100 == 2)
			set_result(c, i, c->rcode, c->rtext);
	c->state = SMTPC_S_MSG_DONE;
}

static void on_rset(struct smtpc *c)
{
	if (c->rcode / 100 != 2) {
		fail_reply(c, "RSET");
		return;
	}
	c->state = SMTPC_S_MSG_DONE;
}

static void on_quit(struct smtpc *c)
{
	c->state = SMTPC_S_CLOSED;
}

/* A reply in a state that expects none (IDLE, BODY, ...). */
static void on_unexpected(struct smtpc *c)
{
	fail_reply(c, "unexpected reply");
}

typedef void (*reply_fn)(struct smtpc *c);

static const reply_fn reply_cb[SMTPC_S_COUNT] = {
	[SMTPC_S_GREETING] = on_greeting,
	[SMTPC_S_EHLO] = on_ehlo,
	[SMTPC_S_STARTTLS] = on_starttls,
	[SMTPC_S_TLS_WANTED] = on_unexpected,
	[SMTPC_S_AUTH] = on_auth,
	[SMTPC_S_IDLE] = on_unexpected,
	[SMTPC_S_ENVELOPE] = on_envelope,
	[SMTPC_S_BODY] = on_unexpected,
	[SMTPC_S_DOT] = on_dot,
	[SMTPC_S_RSET] = on_rset,
	[SMTPC_S_MSG_DONE] = on_unexpected,
	[SMTPC_S_QUIT] = on_quit,
	[SMTPC_S_CLOSED] = on_unexpected,
	[SMTPC_S_FAILED] = on_unexpected,
};

/* ---- the transaction's commands ---------------------------------------- */

/* Queues MAIL, RCPT..., DATA as the output has room and the server's
 * PIPELINING allows (RFC 2920 3.1: DATA may end a pipelined group). */
static void fill(struct smtpc *c)
{
	int total = c->nrcpt + 2;

	if (c->state != SMTPC_S_ENVELOPE)
		return;
	while (c->sent_cmds < total && sizeof c->out - c->olen >= CMD_ROOM) {
		int i = c->sent_cmds;

		if (!(c->caps & SMTPC_CAP_PIPELINING) && c->answered < i)
			return;
		if (i == 0)
			put(c, "MAIL FROM:<%s>%s\r\n", c->from,
			    c->caps & SMTPC_CAP_8BITMIME ? " BODY=8BITMIME" : "");
		else if (i <= c->nrcpt)
			put(c, "RCPT TO:<%s>\r\n", c->rcpts[i - 1]);
		else
			put(c, "DATA\r\n");
		c->sent_cmds++;
	}
}

/* ---- input ------------------------------------------------------------ */

/* One reply line (terminator removed). */
static void reply_line(struct smtpc *c, const char *line, size_t len)
{
	int last, code = smtp_parse_reply(line, len, &last);

	if (code < 0 || (c->rlines > 0 && code != c->rcode)) {
		smtpc_fail(c, 1, "malformed reply from the server");
		return;
	}
	if (++c->rlines > SMTPC_REPLY_LINES_MAX) {
		smtpc_fail(c, 1, "reply with too many lines");
		return;
	}
	c->rcode = code;
	if (c->rlines == 1)
		snprintf(c->rtext, sizeof c->rtext, "%.*s", (int)len, line);
	else if (c->state == SMTPC_S_EHLO)
		smtpc_parse_ehlo_line(c, len > 4 ? line + 4 : "");
	if (!last)
		return;
	c->rlines = 0;
	/* RFC 5321 3.8: 421 at any point means the server is closing. */
	if (code == 421 && c->state != SMTPC_S_QUIT) {
		fail_reply(c, "server closing");
		return;
	}
	reply_cb[c->state](c);
	fill(c);
}

static int over(const struct smtpc *c)
{
	return c->state == SMTPC_S_FAILED || c->state == SMTPC_S_CLOSED ||
	       c->state == SMTPC_S_TLS_WANTED;
}

/* Takes complete lines out of in[]; returns 0, or -1 once the session
 * must not read more. */
static int drain_lines(struct smtpc *c)
{
	size_t start = 0;

	for (;;) {
		char *nl = memchr(c->in + start, '\n', c->ilen - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		if (len > 0 && c->in[start + len - 1] == '\r')
			len--;
		c->in[start + len] = '\0';
		reply_line(c, c->in + start, len);
		start = (size_t)(nl - c->in) + 1;
		if (over(c))
			break;
	}
	memmove(c->in, c->in + start, c->ilen - start);
	c->ilen -= start;
	return over(c) ? -1 : 0;
}

/* After the 220 to STARTTLS nothing may follow in clear (RFC 3207 5). */
static void check_injection(struct smtpc *c, size_t left)
{
	if (c->state == SMTPC_S_TLS_WANTED && (left > 0 || c->ilen > 0)) {
		c->ilen = 0;
		smtpc_fail(c, 1, "the server sent data after its STARTTLS reply "
			   "(response injection): session aborted");
	}
}

size_t smtpc_input(struct smtpc *c, const void *data, size_t len)
{
	const char *p = data;
	size_t used = 0;

	if (over(c))
		return 0;
	while (used < len) {
		size_t room = sizeof c->in - c->ilen;
		const char *nl = memchr(p + used, '\n', len - used);
		/* Copy up to and including one LF, so nothing after a reply
		 * that ends the clear-text phase is consumed as clear text. */
		size_t n = nl ? (size_t)(nl - (p + used)) + 1 : len - used;

		if (n > room) {
			smtpc_fail(c, 1, "reply line too long");
			return used;
		}
		memcpy(c->in + c->ilen, p + used, n);
		c->ilen += n;
		used += n;
		if (c->ilen > SMTPC_LINE_MAX + 2 && !memchr(c->in, '\n', c->ilen)) {
			smtpc_fail(c, 1, "reply line too long");
			return used;
		}
		if (drain_lines(c) < 0)
			break;
	}
	check_injection(c, len - used);
	return used;
}

void smtpc_eof(struct smtpc *c)
{
	if (c->state == SMTPC_S_QUIT)
		c->state = SMTPC_S_CLOSED;
	else
		smtpc_fail(c, 1, "connection closed by the server");
}

/* ---- caller's side ---------------------------------------------------- */

const char *smtpc_output(const struct smtpc *c, size_t *len)
{
	*len = c->olen;
	return c->out;
}

void smtpc_consumed(struct smtpc *c, size_t n)
{
	if (n > c->olen)
		n = c->olen;
	memmove(c->out, c->out + n, c->olen - n);
	c->olen -= n;
	fill(c);
}

int smtpc_state(const struct smtpc *c)
{
	return c->state;
}

int64_t smtpc_timeout_ms(const struct smtpc *c)
{
	switch (c->state) {
	case SMTPC_S_GREETING:
		return SMTPC_TIMEOUT_GREETING_MS;
	case SMTPC_S_ENVELOPE:
		return c->sent_cmds == c->nrcpt + 2 ? SMTPC_TIMEOUT_DATA_INIT_MS
						    : SMTPC_TIMEOUT_COMMAND_MS;
	case SMTPC_S_BODY:
		return SMTPC_TIMEOUT_BLOCK_MS;
	case SMTPC_S_DOT:
		return SMTPC_TIMEOUT_DOT_MS;
	default:
		return SMTPC_TIMEOUT_COMMAND_MS;
	}
}

void smtpc_tls_started(struct smtpc *c, int ok, const char *why)
{
	char msg[sizeof c->err];

	if (c->state != SMTPC_S_TLS_WANTED)
		return;
	if (!ok) {
		snprintf(msg, sizeof msg, "TLS failed, nothing sent: %s", why && *why ? why : "handshake failed");
		smtpc_fail(c, 1, msg);
		return;
	}
	/* RFC 3207 4.2: forget everything learnt in clear, EHLO again. */
	c->tls = 1;
	c->ilen = 0;
	c->olen = 0;
	send_ehlo(c);
}

int smtpc_begin(struct smtpc *c, const char *from, const char *const *rcpts, int n)
{
	if (c->state != SMTPC_S_IDLE || !c->tls || n < 1 || n > SMTPC_RCPTS_MAX ||
	    copy(c->from, sizeof c->from, from) < 0 || !word_ok(c->from))
		return -1;
	for (int i = 0; i < n; i++)
		if (!rcpts[i][0] || strlen(rcpts[i]) > SMTPC_PATH_MAX || !word_ok(rcpts[i]))
			return -1;
	c->rcpts = rcpts;
	c->nrcpt = n;
	c->sent_cmds = c->answered = c->accepted = 0;
	c->mail_code = c->dot_code = 0;
	c->mail_text[0] = '\0';
	memset(c->res, 0, sizeof c->res);
	c->state = SMTPC_S_ENVELOPE;
	fill(c);
	return 0;
}

/* Appends one body byte, normalising line ends and dot-stuffing
 * (RFC 5321 4.5.2: a line starting with "." gets another one). */
static void body_byte(struct smtpc *c, char ch)
{
	if (c->body_cr) {
		c->body_cr = 0;
		memcpy(c->out + c->olen, "\r\n", 2);
		c->olen += 2;
		c->body_bol = 1;
		if (ch == '\n')
			return;
	}
	if (ch == '\r') {
		c->body_cr = 1;
		return;
	}
	if (ch == '\n') {
		memcpy(c->out + c->olen, "\r\n", 2);
		c->olen += 2;
		c->body_bol = 1;
		return;
	}
	if (c->body_bol && ch == '.')
		c->out[c->olen++] = '.';
	c->out[c->olen++] = ch;
	c->body_bol = 0;
}

size_t smtpc_body(struct smtpc *c, const void *data, size_t len)
{
	const char *p = data;
	size_t i = 0;

	if (c->state != SMTPC_S_BODY)
		return 0;
	while (i < len && sizeof c->out - c->olen >= BODY_EXPAND + 2)
		body_byte(c, p[i++]);
	return i;
}

int smtpc_body_end(struct smtpc *c)
{
	if (c->state != SMTPC_S_BODY || sizeof c->out - c->olen < 8)
		return -1;
	if (c->body_cr)
		body_byte(c, '\n');
	if (!c->body_bol)
		put(c, "\r\n");
	put(c, ".\r\n");
	c->state = SMTPC_S_DOT;
	return 0;
}

const struct smtpc_rcpt *smtpc_rcpt_result(const struct smtpc *c, int i)
{
	return i >= 0 && i < c->nrcpt ? &c->res[i] : NULL;
}

void smtpc_next(struct smtpc *c)
{
	if (c->state == SMTPC_S_MSG_DONE)
		c->state = SMTPC_S_IDLE;
}

void smtpc_quit(struct smtpc *c)
{
	if (c->state == SMTPC_S_IDLE || c->state == SMTPC_S_MSG_DONE)
		cmd(c, "QUIT", SMTPC_S_QUIT);
}

const char *smtpc_error(const struct smtpc *c)
{
	return c->state == SMTPC_S_FAILED ? c->err : "";
}

int smtpc_error_temp(const struct smtpc *c)
{
	return c->fail_temp;
}
