/*
 * cmd.c - the command dispatcher: the state enum (imapd.h) and a table of
 * commands with the states each is valid in (RFC 3501 6), and the
 * commands of any state and of the not-authenticated state.
 *
 * No password before TLS (DESIGN.md): on 143 the capability list says
 * LOGINDISABLED and has no AUTH= until STARTTLS completes, and LOGIN /
 * AUTHENTICATE are refused (RFC 3501 6.2.3, 7.2.1). Failed logins are
 * throttled per (user, address) through throttle.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sys/stat.h>
#include <time.h>

#include "imapd.h"
#include "maildir.h"
#include "throttle.h"

#define S_NOAUTH (1u << ST_NOAUTH)
#define S_AUTH (1u << ST_AUTH)
#define S_SEL (1u << ST_SELECTED)
#define S_ANY (S_NOAUTH | S_AUTH | S_SEL)
#define SASL_MAX 2048            /* bytes of a decoded AUTHENTICATE PLAIN response */

struct command {
	const char *name;
	unsigned states;
	int (*run)(struct imap_req *r);
	int uid_ok;                  /* also valid after "UID" */
};

int reply(struct imap_req *r, const char *status, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	out_fmt(r->c, "%s %s %s\r\n", r->tag, status, text);
	return strcmp(status, "BAD") == 0 ? -1 : 0;
}

int bad_args(struct imap_req *r)
{
	return reply(r, "BAD", "Invalid arguments: %s", r->p.err ? r->p.err : "syntax error");
}

static int tls_active(const struct imapd_conn *c)
{
	return c->tls && tls_established(c->tls);
}

void cmd_capability_list(struct imapd_conn *c)
{
	out_fmt(c, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE "
		   "SPECIAL-USE CHILDREN CONDSTORE APPENDLIMIT=%u", IMAP_APPEND_MAX);
	/* c->tls, not tls_active: on 993 the greeting is queued before the
	 * handshake ends, and it only ever leaves through TLS. */
	if (c->state == ST_NOAUTH)
		out_fmt(c, c->tls ? " AUTH=PLAIN" : " STARTTLS LOGINDISABLED");
}

void cmd_greeting(struct imapd_conn *c)
{
	out_fmt(c, "* OK [CAPABILITY ");
	cmd_capability_list(c);
	out_fmt(c, "] Postern IMAP ready\r\n");
}

static int cmd_capability(struct imap_req *r)
{
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	out_fmt(r->c, "* CAPABILITY ");
	cmd_capability_list(r->c);
	out_fmt(r->c, "\r\n");
	return reply(r, "OK", "CAPABILITY completed");
}

static int cmd_noop(struct imap_req *r)
{
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	if (r->c->state == ST_SELECTED && mbox_update(r->c, 1) < 0)
		return reply(r, "NO", "Mailbox unavailable");
	return reply(r, "OK", "NOOP completed");
}

static int cmd_logout(struct imap_req *r)
{
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	out_fmt(r->c, "* BYE Logging out\r\n");
	reply(r, "OK", "LOGOUT completed");
	r->c->state = ST_LOGOUT;
	return 0;
}

static int cmd_starttls(struct imap_req *r)
{
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	if (r->c->tls)
		return reply(r, "BAD", "TLS is already active");
	reply(r, "OK", "Begin TLS negotiation now");
	conn_start_tls(r->c);
	return 0;
}

/* Hands the password check to a worker (auth.c); cmd_login_done answers.
 * Without workers the check runs here, blocking the loop. */
static int login(struct imap_req *r, const char *user, const char *pass)
{
	struct imapd_conn *c = r->c;

	imapd_refresh_users(c->d);
	snprintf(c->job_tag, sizeof c->job_tag, "%s", r->tag);
	snprintf(c->job_user, sizeof c->job_user, "%s", user);
	snprintf(c->job_pass, sizeof c->job_pass, "%s", pass);
	c->job = JOB_AUTH;
	if (pool_submit(c->d, c) == 0)
		return 0;
	auth_job(c);
	cmd_login_done(c);
	return 0;
}

/* Enters the authenticated state as u (limits, the user's Maildir). */
static void login_enter(struct imapd_conn *c, struct imap_req *r, const struct users_entry *u)
{
	struct imapd *d = c->d;
	int n = 0;

	for (struct imapd_conn *o = d->conns; o; o = o->next)
		n += o != c && o->state != ST_NOAUTH && strcmp(o->user, u->name) == 0;
	if (n >= IMAPD_CONNS_PER_USER) {
		reply(r, "NO", "[LIMIT] Too many connections for this user");
		return;
	}
	snprintf(c->user, sizeof c->user, "%s", u->name);
	if (!c->store_ok) {   /* c->root: see auth_job */
		log_msg(LOG_ERR, &c->lf, "%s: cannot open the Maildir", c->root);
		reply(r, "NO", "[UNAVAILABLE] Mailbox store unavailable");
		return;
	}
	log_set_user(&c->lf, u->name);
	log_msg(LOG_INFO, &c->lf, "login");
	c->state = ST_AUTH;
	out_fmt(c, "%s OK [CAPABILITY ", r->tag);
	cmd_capability_list(c);
	out_fmt(c, "] Logged in\r\n");
}

void cmd_login_done(struct imapd_conn *c)
{
	struct imap_req r = { .c = c };
	const struct users_entry *u;

	memset(c->job_pass, 0, sizeof c->job_pass);
	snprintf(r.tag, sizeof r.tag, "%s", c->job_tag);
	u = users_find(&c->d->users, c->job_user);
	if (c->verdict != AUTH_OK || !u || u->kind != USERS_KIND_USER) {
		reply(&r, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	login_enter(c, &r, u);
}

static int cmd_login(struct imap_req *r)
{
	char user[USERS_NAME_MAX + 1], pass[USERS_PASSWORD_MAX + 1];
	size_t ul, pl;

	if (!tls_active(r->c))   /* RFC 3501 6.2.3, LOGINDISABLED */
		return reply(r, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
	if (imap_sp(&r->p) < 0 || imap_astring(&r->p, user, sizeof user, &ul) < 0 ||
	    imap_sp(&r->p) < 0 || imap_astring(&r->p, pass, sizeof pass, &pl) < 0 ||
	    imap_eol(&r->p) < 0)
		return bad_args(r);
	return login(r, user, pass);
}

static int b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t bits = 0;
	int nbits = 0;
	size_t n = 0, pad = 0;

	for (size_t i = 0; i < len; i++) {
		const char *q;

		if (in[i] == '=') {
			pad++;
			continue;
		}
		if (pad || !in[i] || !(q = strchr(al, in[i])))
			return -1;
		bits = (bits << 6) | (uint32_t)(q - al);
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			if (n >= cap)
				return -1;
			out[n++] = (unsigned char)(bits >> nbits);
			bits &= (1u << nbits) - 1;
		}
	}
	return pad > 2 || (len % 4 && pad) ? -1 : (int)n;
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. */
static int sasl_plain(struct imap_req *r, const char *resp, size_t len)
{
	unsigned char raw[SASL_MAX + 1];
	int n = b64_decode(resp, len, raw, SASL_MAX);
	char *authz, *user, *pass, *end;

	if (n < 0)
		return reply(r, "BAD", "Invalid base64");
	raw[n] = '\0';
	authz = (char *)raw;
	end = (char *)raw + n;
	user = memchr(authz, '\0', (size_t)n);
	if (!user || user + 1 >= end)
		return reply(r, "BAD", "Invalid PLAIN response");
	user++;
	pass = memchr(user, '\0', (size_t)(end - user));
	if (!pass)
		return reply(r, "BAD", "Invalid PLAIN response");
	pass++;
	if (memchr(pass, '\0', (size_t)(end - pass)) || strlen(user) > USERS_NAME_MAX ||
	    (*authz && strcasecmp(authz, user) != 0)) {
		memset(raw, 0, sizeof raw);
		return reply(r, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
	}
	n = login(r, user, pass);
	memset(raw, 0, sizeof raw);
	return n;
}

static int cmd_authenticate(struct imap_req *r)
{
	char mech[32], ir[SASL_MAX * 2];
	size_t n;

	if (!tls_active(r->c))
		return reply(r, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
	if (imap_sp(&r->p) < 0 || imap_atom(&r->p, mech, sizeof mech) < 0)
		return bad_args(r);
	if (strcasecmp(mech, "PLAIN") != 0)
		return reply(r, "NO", "Unsupported authentication mechanism");
	if (imap_take(&r->p, ' ')) {   /* RFC 4959 SASL-IR */
		if (imap_atom(&r->p, ir, sizeof ir) < 0 || imap_eol(&r->p) < 0)
			return bad_args(r);
		n = strlen(ir);
		return sasl_plain(r, ir, strcmp(ir, "=") == 0 ? 0 : n);
	}
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	r->c->auth_wait = 1;
	snprintf(r->c->auth_tag, sizeof r->c->auth_tag, "%s", r->tag);
	out_fmt(r->c, "+ \r\n");
	return 0;
}

static int cmd_idle(struct imap_req *r)
{
	struct imapd_conn *c = r->c;

	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	/* The watch before the update: a change in between is an event, so
	 * DONE needs no update when no event came (conn_idle_pending). */
	if (c->state == ST_SELECTED && conn_idle_start(c) < 0)
		log_msg(LOG_WARNING, &c->lf, "IDLE without inotify: updates at DONE");
	if (c->state == ST_SELECTED && mbox_update(c, 1) < 0) {
		conn_idle_stop(c);
		return reply(r, "NO", "Mailbox unavailable");
	}
	c->idling = 1;
	snprintf(c->idle_tag, sizeof c->idle_tag, "%s", r->tag);
	out_fmt(c, "+ idling\r\n");
	return 0;
}

/* A line that is not a command: IDLE's DONE or an AUTHENTICATE response. */
void cmd_line_while_waiting(struct imapd_conn *c, const char *line, size_t len)
{
	struct imap_req r = { .c = c };

	if (c->idling) {
		int changed = conn_idle_pending(c);

		snprintf(r.tag, sizeof r.tag, "%s", c->idle_tag);
		conn_idle_stop(c);
		if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
			if (c->state == ST_SELECTED && changed)
				mbox_update(c, 1);
			reply(&r, "OK", "IDLE terminated");
		} else {
			reply(&r, "BAD", "Expected DONE");
		}
		return;
	}
	c->auth_wait = 0;
	snprintf(r.tag, sizeof r.tag, "%s", c->auth_tag);
	if (len == 1 && line[0] == '*')   /* RFC 3501 6.2.2: the client cancels */
		reply(&r, "BAD", "Authentication cancelled");
	else
		sasl_plain(&r, line, len);
}

static int cmd_id(struct imap_req *r)
{
	/* RFC 2971: the client's parameters are not needed. */
	out_fmt(r->c, "* ID (\"name\" \"Postern\" \"version\" \"%s\")\r\n", POSTERN_VERSION);
	return reply(r, "OK", "ID completed");
}

/* RFC 5161: ENABLED lists what this ENABLE turned on; CONDSTORE is the
 * only extension we know (RFC 7162 3.1). */
static int cmd_enable(struct imap_req *r)
{
	char cap[IMAP_ATOM_MAX];
	int condstore = 0;

	if (imap_sp(&r->p) < 0)
		return bad_args(r);
	do {
		if (imap_atom(&r->p, cap, sizeof cap) < 0)
			return bad_args(r);
		condstore |= strcasecmp(cap, "CONDSTORE") == 0;
	} while (imap_take(&r->p, ' '));
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	out_fmt(r->c, "* ENABLED%s\r\n", condstore && !r->c->condstore ? " CONDSTORE" : "");
	r->c->condstore |= condstore;
	return reply(r, "OK", "ENABLE completed");
}

static int cmd_namespace(struct imap_req *r)
{
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	out_fmt(r->c, "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");   /* RFC 2342 */
	return reply(r, "OK", "NAMESPACE completed");
}

static int cmd_check(struct imap_req *r)
{
	return cmd_noop(r);
}

static int cmd_unselect(struct imap_req *r)
{
	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	mbox_unselect(r->c);
	return reply(r, "OK", "UNSELECT completed");
}

static const struct command commands[] = {
	{ "CAPABILITY", S_ANY, cmd_capability, 0 },
	{ "NOOP", S_ANY, cmd_noop, 0 },
	{ "LOGOUT", S_ANY, cmd_logout, 0 },
	{ "ID", S_ANY, cmd_id, 0 },
	{ "STARTTLS", S_NOAUTH, cmd_starttls, 0 },
	{ "LOGIN", S_NOAUTH, cmd_login, 0 },
	{ "AUTHENTICATE", S_NOAUTH, cmd_authenticate, 0 },
	{ "ENABLE", S_AUTH | S_SEL, cmd_enable, 0 },
	{ "NAMESPACE", S_AUTH | S_SEL, cmd_namespace, 0 },
	{ "IDLE", S_AUTH | S_SEL, cmd_idle, 0 },
	{ "SELECT", S_AUTH | S_SEL, cmd_select, 0 },
	{ "EXAMINE", S_AUTH | S_SEL, cmd_select, 0 },
	{ "LIST", S_AUTH | S_SEL, cmd_list, 0 },
	{ "LSUB", S_AUTH | S_SEL, cmd_list, 0 },
	{ "CREATE", S_AUTH | S_SEL, cmd_create, 0 },
	{ "DELETE", S_AUTH | S_SEL, cmd_delete, 0 },
	{ "RENAME", S_AUTH | S_SEL, cmd_rename, 0 },
	{ "SUBSCRIBE", S_AUTH | S_SEL, cmd_subscribe, 0 },
	{ "UNSUBSCRIBE", S_AUTH | S_SEL, cmd_subscribe, 0 },
	{ "STATUS", S_AUTH | S_SEL, cmd_status, 0 },
	{ "APPEND", S_AUTH | S_SEL, cmd_append, 0 },
	{ "CHECK", S_SEL, cmd_check, 0 },
	{ "CLOSE", S_SEL, cmd_close, 0 },
	{ "UNSELECT", S_SEL, cmd_unselect, 0 },
	{ "EXPUNGE", S_SEL, cmd_expunge, 1 },
	{ "SEARCH", S_SEL, cmd_search, 1 },
	{ "FETCH", S_SEL, cmd_fetch, 1 },
	{ "STORE", S_SEL, cmd_store, 1 },
	{ "COPY", S_SEL, cmd_copy, 1 },
	{ "MOVE", S_SEL, cmd_copy, 1 },
};

static const struct command *lookup(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
		if (strcasecmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void cmd_run(struct imapd_conn *c, char *text, size_t len)
{
	struct imap_req r = { .c = c };
	char name[32];
	const struct command *cmd;
	int rc;

	imap_parser_init(&r.p, text, len);
	if (imap_tag(&r.p, r.tag, sizeof r.tag) < 0) {
		out_fmt(c, "* BAD Missing or invalid tag\r\n");
		c->bads++;
		return;
	}
	if (imap_sp(&r.p) < 0 || imap_atom(&r.p, name, sizeof name) < 0) {
		rc = reply(&r, "BAD", "Missing command");
	} else if (strcasecmp(name, "UID") == 0 &&
		   (imap_sp(&r.p) < 0 || imap_atom(&r.p, name, sizeof name) < 0 ||
		    !(cmd = lookup(name)) || !cmd->uid_ok)) {
		rc = reply(&r, "BAD", "Unknown UID command");
	} else if (!(cmd = lookup(name))) {
		rc = reply(&r, "BAD", "Unknown command");
	} else if (!(cmd->states & (1u << c->state))) {
		rc = reply(&r, "BAD", "%s is not valid in this state", cmd->name);
	} else {
		r.uid = r.p.s[0] && strncasecmp(r.p.s + strlen(r.tag) + 1, "UID ", 4) == 0;
		rc = cmd->run(&r);
	}
	c->bads = rc < 0 ? c->bads + 1 : 0;
	if (c->bads >= IMAPD_BAD_MAX) {
		out_fmt(c, "* BYE Too many errors\r\n");
		c->state = ST_LOGOUT;
	}
}
