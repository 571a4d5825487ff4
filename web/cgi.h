/*
 * cgi.h - the admin page's CGI (admin.cgi), run by webd for every request
 * as the unprivileged web user (docs/web.md). It reads the configuration,
 * the users file and the throttle file; every change goes to admind.
 *
 * Output is HTML through html_out() (html.h), which escapes every string
 * unless the format says %R.
 */
#ifndef POSTERN_WEB_CGI_H
#define POSTERN_WEB_CGI_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "tls.h"
#include "users.h"

#define WEB_SESSION_IDLE 900          /* seconds of inactivity before a session ends */
#define WEB_SESSION_MAX_AGE 43200     /* seconds a session lives at most */
#define WEB_TOKEN_BYTES 32            /* session ids and CSRF tokens: 256 bits */
#define WEB_TOKEN_HEX (2 * WEB_TOKEN_BYTES)
#define WEB_ERRORS_MAX 32             /* field errors shown on one page */
#define WEB_MSG_MAX 512
#define WEB_ARENA (512 * 1024)        /* per-request memory for decoded fields */
#define WEB_REPLY_MAX (256 * 1024)    /* bytes of an admind answer */
#define WEB_COOKIE_SID "__Host-sid"   /* __Host-: Secure, Path=/, no Domain */
#define WEB_COOKIE_PRE "__Host-pre"   /* the login and setup forms' token */

struct session {
	char id[WEB_TOKEN_HEX + 1];
	char user[USERS_NAME_MAX + 1];
	int admin;
	char csrf[WEB_TOKEN_HEX + 1];
	time_t created, last;
};

/* The answer of admind: ok, data lines, or field errors. */
struct reply {
	int ok;
	char *data;                        /* after "ok\n" */
	int nerr;
	struct { const char *field, *msg; } err[WEB_ERRORS_MAX];
};

struct cgi {
	const char *method, *path, *query, *remote, *cookie;
	char *body;
	size_t body_len;
	int post;
	struct session s;
	int logged_in;
	struct reply rep;                  /* errors of the last change */
	char set_cookie[3][256];
	int ncookies;
	const char *conf, *users, *throttle, *state, *sock, *data;
	time_t now;
};

/* ---- main.c ---- */
/* A form field of the POST body (or "" when absent), decoded into the arena. */
const char *form(struct cgi *c, const char *name);
/* A query-string parameter, or "". */
const char *param(struct cgi *c, const char *name);
/* Arena copy of s. */
char *arena_strdup(const char *s);
/* Sends a 303 redirect to location (a path of ours). */
void redirect(struct cgi *c, const char *location);

/* ---- session.c ---- */
/* Loads the session named by the cookie; 1 when valid (and refreshed). */
int session_load(struct cgi *c);
/* Starts a fresh session for user (new id: no fixation), sets the cookie. */
int session_start(struct cgi *c, const char *user, int admin);
/* Ends the session: file removed, cookie cleared. */
void session_end(struct cgi *c);
/* 1 when the POST's csrf field matches the session's token. */
int csrf_ok(struct cgi *c);
/* The pre-login token (cookie WEB_COOKIE_PRE), made when missing. */
const char *pre_token(struct cgi *c);
/* 1 when the POST's csrf field matches the pre-login cookie. */
int pre_ok(struct cgi *c);
/* n random bytes as hex into out (2n+1). Returns 0 or -1. */
int random_hex(char *out, size_t n);
/* Constant-time string comparison: 1 when equal. */
int token_eq(const char *a, const char *b);

/* ---- admind.c ---- */
/* Sends a request (argv fields) to admind; fills c->rep. Returns 0 when ok. */
int admind_call(struct cgi *c, const char *const *argv, int argc);
/* Adds an error of our own (before or instead of asking admind). */
void add_error(struct cgi *c, const char *field, const char *msg);
/* The error message for field, or NULL. */
const char *field_error(const struct cgi *c, const char *field);

/* ---- page.c ---- */
void page_begin(struct cgi *c, int status, const char *title);
void page_end(struct cgi *c);
/* Errors that belong to no shown field, as a list at the top. */
void page_errors(struct cgi *c, const char *const *shown, int nshown);
void page_notice(struct cgi *c);
/* A labelled input; value shown escaped; its error below it. */
void field_input(struct cgi *c, const char *name, const char *label, const char *type,
		 const char *value, const char *help);
void field_select(struct cgi *c, const char *name, const char *label, const char *value,
		  const char *const *options, const char *help);
void field_textarea(struct cgi *c, const char *name, const char *label, const char *value,
		    const char *help);
/* <form method=post action=...> with the CSRF token; form_close ends it. */
void form_open(struct cgi *c, const char *action);
void form_close(const char *button);
/* A one-button form (delete, ...) posting name=value pairs. */
void button_form(struct cgi *c, const char *action, const char *label, const char *name,
		 const char *value, const char *op);
void page_forbidden(struct cgi *c, const char *why);
void page_not_found(struct cgi *c);
/* After a save that moved the LAN address (admind's reply names it): a page
 * that sends the admin to https://NEW-ADDRESS + next; 1 if shown, else 0. */
int lan_moved(struct cgi *c, const char *title, const char *next);

/* ---- pages ---- */
void pg_login(struct cgi *c);
void pg_logout(struct cgi *c);
void pg_setup(struct cgi *c);
void pg_dashboard(struct cgi *c);
void pg_password(struct cgi *c);
void pg_users(struct cgi *c);
void pg_accounts(struct cgi *c);
void pg_settings(struct cgi *c);   /* smarthost, network, dns, firewall: table-driven */
void pg_certs(struct cgi *c);
void pg_cert_install(struct cgi *c);   /* cert.c: /certs/install */
void pg_queue(struct cgi *c);
void pg_logs(struct cgi *c);

/* ---- probe.c ---- */
enum probe_mode { PROBE_IMPLICIT, PROBE_POP3_STLS, PROBE_SMTP_STARTTLS };

struct probe {
	int ok;                           /* handshake done and verified */
	char err[400];                    /* why not */
	int have_pin;
	char pin[65];                     /* the server key's SHA-256 SPKI, hex */
};

/* Connects to host:port, STLS/STARTTLS as mode says, handshakes verifying
 * against ca_file (CA + host name) or pin (32 bytes, or NULL). 0 when
 * verified; -1 with out->err. out->pin is set whenever a key was seen. */
int probe_tls(const char *host, int port, int mode, const char *ca_file,
	      const unsigned char *pin, struct probe *out);

/* /probe: POST (kind=account|smarthost, name) starts the connection test in
 * the background and redirects to GET /probe?id=JOB, which refreshes itself
 * until the result is shown (docs/web.md "Long operations"). */
void pg_probe(struct cgi *c);

/* ---- config access (settings.c) ---- */
/* The current text value of a setting ("" on error). */
const char *conf_value(struct cgi *c, const char *key);
/* The number of provider accounts configured. */
int conf_accounts(struct cgi *c);
/* 1 when setup is still open (the users file has no admin). */
int setup_needed(struct cgi *c);

#endif
