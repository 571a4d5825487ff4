/*
 * smtp-proto.h - the SMTP protocol core: command parsing, reply formatting,
 * ESMTP parameters and the submission server's state machine, driven from
 * bytes. Nothing here touches a socket or a file: a unit test or a fuzzer
 * feeds bytes in and reads replies out; the daemon (src/smtpd/) moves the
 * bytes between the core and TCP/TLS, and answers the core's questions
 * (authenticate, may this sender send, where does this recipient go, store
 * these message bytes) through struct smtp_hooks.
 *
 * Shape (RFC 5321, 3207, 4954, 6409, 1870, 6152, 2920, 2034):
 *
 *     struct smtp_server s;
 *     smtp_server_init(&s, &params, &hooks, ctx);    // queues the 220 greeting
 *     loop:
 *       size_t room; void *p = smtp_server_space(&s, &room);
 *       n = read(..., p, room);  smtp_server_commit(&s, n);
 *       send smtp_server_output(&s, &len); smtp_server_consumed(&s, len);
 *       if (smtp_server_tls_wanted(&s)) { flush, handshake, smtp_server_tls_started(&s); }
 *       if (smtp_server_closing(&s)) { flush, close; }
 *
 * Input stops being processed while the output buffer lacks room for a
 * reply (a client that pipelines without reading gets TCP back-pressure,
 * never unbounded memory): smtp_server_space() then reports room 0 until
 * the caller drains the output and calls smtp_server_commit(&s, 0).
 *
 * Security rules implemented here (docs: /DESIGN.md "Security rules"):
 * - AUTH is neither offered nor accepted before TLS (530 5.7.0).
 * - After STARTTLS's 220, everything buffered in clear is discarded, and
 *   the session is reset: the client must EHLO again (RFC 3207 4.2).
 * - DATA ends only at CRLF "." CRLF; a bare CR or bare LF anywhere in DATA
 *   makes the message fail (sticky error, answered once after the end) so
 *   no "smuggled" second message can hide behind a different line end.
 *
 * Memory: a struct smtp_server is fixed (about 9 KB, no heap). Recipients
 * are not stored here: the hooks keep the envelope.
 */
#ifndef POSTERN_SMTP_PROTO_H
#define POSTERN_SMTP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "linebuf.h"
#include "users.h"

/* ---- limits (RFC 5321 4.5.3.1) ----------------------------------------- */
#define SMTP_LINE_MAX 998          /* command and text lines, CRLF not counted (1000 with it) */
#define SMTP_PATH_MAX 256          /* a reverse- or forward-path, "<" ">" included (4.5.3.1.3) */
#define SMTP_DOMAIN_MAX 255        /* the EHLO/HELO argument (4.5.3.1.2) */
#define SMTP_RCPTS_MAX 100         /* recipients per message (4.5.3.1.8) */
#define SMTP_ERRORS_MAX 10         /* failed commands before 421 and disconnect */
#define SMTP_AUTH_USER_MAX USERS_NAME_MAX  /* bytes in an AUTH user name */
#define SMTP_AUTH_PASS_MAX 1024    /* bytes in an AUTH password */
#define SMTP_OUT_MAX 4096          /* reply bytes buffered towards the client */
#define SMTP_REPLY_MAX 512         /* longest single reply (the EHLO list included) */
#define SMTP_HOSTNAME_MAX 255      /* the server's own name */
#define SMTP_QUEUE_ID_MAX 32       /* bytes in a queue id given by data_start */
#define SMTP_HEADER_NAME_MAX 64    /* header names compared for Message-ID/Date */
#define SMTP_IN_MAX 4096           /* input buffer: at least SMTP_LINE_MAX + LINEBUF_SLACK */
#define SMTP_EXPAND_MAX 1000       /* users one local recipient may expand to */

/* Timeouts, milliseconds (RFC 5321 4.5.3.2: the server waits 5 minutes for
 * each command, 3 minutes per data block in DATA; TLS handshakes get one). */
#define SMTP_TIMEOUT_COMMAND_MS (5 * 60 * 1000)   /* 4.5.3.2.7 */
#define SMTP_TIMEOUT_DATA_MS (3 * 60 * 1000)      /* 4.5.3.2.5 */
#define SMTP_TIMEOUT_TLS_MS (60 * 1000)           /* handshake (ours) */

/* The state of a session: what the next input line means. */
enum smtp_state {
	SMTP_S_INIT,        /* greeted: EHLO/HELO expected */
	SMTP_S_READY,       /* after EHLO: MAIL, AUTH, STARTTLS ... */
	SMTP_S_MAIL,        /* after MAIL FROM: RCPT expected */
	SMTP_S_RCPT,        /* at least one RCPT accepted: RCPT or DATA */
	SMTP_S_DATA,        /* reading message text */
	SMTP_S_AUTH_PLAIN,  /* AUTH PLAIN without initial response: waiting for it */
	SMTP_S_AUTH_USER,   /* AUTH LOGIN: waiting for the user name */
	SMTP_S_AUTH_PASS,   /* AUTH LOGIN: waiting for the password */
	SMTP_S_WAIT,        /* waiting for smtp_server_data_done / _auth_done */
	SMTP_S_TLS,         /* STARTTLS answered: waiting for the handshake */
	SMTP_S_CLOSED,      /* QUIT or a fatal error: flush and close */
	SMTP_S_COUNT
};

/*
 * What a hook decides; the core turns each into its reply (one table in
 * smtp-proto.c, so every reply text lives in one place).
 */
enum smtp_verdict {
	SMTP_OK = 0,
	SMTP_AUTH_FAILED,        /* 535 5.7.8 */
	SMTP_AUTH_THROTTLED,     /* 454 4.7.0: too many failures, try later */
	SMTP_SENDER_NOT_OWNED,   /* 553 5.7.1 */
	SMTP_SENDER_BAD,         /* 553 5.1.7 */
	SMTP_RCPT_UNKNOWN,       /* 550 5.1.1 */
	SMTP_RCPT_BAD,           /* 553 5.1.3 */
	SMTP_RCPT_DENIED,        /* 550 5.7.1 (port 25: not an allowed recipient) */
	SMTP_NO_SPACE,           /* 452 4.3.1 */
	SMTP_TEMP_FAIL,          /* 451 4.3.0 */
	SMTP_TOO_BIG,            /* 552 5.3.4 */
	SMTP_REJECTED,           /* 554 5.7.0 (a filter refused the message) */
	SMTP_BARE_EOL,           /* 554 5.6.0 bare CR or LF in DATA */
	SMTP_LONG_LINE,          /* 554 5.6.0 a text line over SMTP_LINE_MAX */
	SMTP_PENDING,            /* data_end only: the answer comes later */
	SMTP_MAILBOX_FULL,       /* 452 4.2.2 (RFC 3463): a recipient over quota */
	SMTP_VERDICT_COUNT
};

/* Fixed settings of a session. */
struct smtp_params {
	const char *hostname;      /* our name in 220/250/Received */
	uint64_t max_size;         /* SIZE: largest message, bytes */
	int tls_available;         /* STARTTLS may be offered */
	int tls_active;            /* implicit TLS (465): already encrypted */
	int auth_required;         /* submission: MAIL needs AUTH (no: port 25) */
	const char *peer_addr;     /* "192.168.10.20": for Received */
};

/* The current transaction as the hooks see it. */
struct smtp_txn {
	char from[SMTP_PATH_MAX + 1];  /* reverse-path without <>, "" for null */
	int nrcpt;                     /* recipients accepted */
	uint64_t size_param;           /* SIZE= given with MAIL, 0 if none */
	int body_8bit;                 /* BODY=8BITMIME */
	char queue_id[SMTP_QUEUE_ID_MAX + 1];  /* from data_start */
};

/*
 * Questions the core asks. Each gets ctx (given to smtp_server_init) and
 * the session. NULL hooks accept (auth: refuses). A hook may block (the
 * daemon does its fsyncs inside data_end), but must not call back into
 * the core.
 */
struct smtp_server;
struct smtp_hooks {
	/* user/password from AUTH PLAIN or LOGIN: SMTP_OK, _AUTH_FAILED or
	 * _AUTH_THROTTLED; or SMTP_PENDING (copy what you need: the strings
	 * are wiped) and answer later with smtp_server_auth_done. */
	enum smtp_verdict (*auth)(void *ctx, struct smtp_server *s, const char *user,
				  const char *password);
	/* MAIL FROM accepted by syntax (s->txn.from, size_param). */
	enum smtp_verdict (*mail)(void *ctx, struct smtp_server *s);
	/* RCPT TO: addr without <> (a bare "postmaster" is allowed). */
	enum smtp_verdict (*rcpt)(void *ctx, struct smtp_server *s, const char *addr);
	/* DATA about to start: open the spool, write s->txn.queue_id. */
	enum smtp_verdict (*data_start)(void *ctx, struct smtp_server *s);
	/* Message bytes, with CRLF line ends, unstuffed, headers added. 0 or -1. */
	int (*data_write)(void *ctx, struct smtp_server *s, const char *buf, size_t len);
	/* End of data, no error so far: make it durable (reply 250 only on
	 * SMTP_OK). SMTP_PENDING: the work continues elsewhere (a worker
	 * thread doing the fsyncs); the session reads no input until the
	 * caller gives the verdict with smtp_server_data_done. */
	enum smtp_verdict (*data_end)(void *ctx, struct smtp_server *s);
	/* The transaction ends without a 250 (RSET, error, disconnect): drop it. */
	void (*txn_abort)(void *ctx, struct smtp_server *s);
	/* The clock for Date:/Received: (NULL: time()). */
	time_t (*now)(void *ctx);
};

struct smtp_server {
	enum smtp_state state;
	struct smtp_params p;
	const struct smtp_hooks *hooks;
	void *ctx;
	int tls;                   /* the session is encrypted */
	int esmtp;                 /* EHLO (not HELO) was used */
	int txn_open;              /* MAIL accepted, not yet finished */
	int errors;                /* failed commands so far */
	int wait_auth;             /* SMTP_S_WAIT is for an AUTH verdict */
	char helo[SMTP_DOMAIN_MAX + 1];
	char user[SMTP_AUTH_USER_MAX + 1];  /* authenticated user, "" if none */
	char login_user[SMTP_AUTH_USER_MAX + 1];   /* AUTH LOGIN in progress */
	struct smtp_txn txn;
	/* DATA reading */
	int data_err;              /* sticky: the verdict/reply to give at the end */
	int prev_crlf;             /* the previous line ended with CRLF */
	int in_headers;            /* still in the header section */
	int seen_msgid, seen_date;
	uint64_t data_size;        /* message bytes stored so far */
	/* buffers */
	struct linebuf lb;
	int stalled;               /* lines wait for room in out[] */
	char inbuf[SMTP_IN_MAX];
	char out[SMTP_OUT_MAX];
	size_t outlen;
};

/* Starts a session: copies params (the strings must outlive it) and queues
 * the 220 greeting. */
void smtp_server_init(struct smtp_server *s, const struct smtp_params *p,
		      const struct smtp_hooks *hooks, void *ctx);

/* Ends a session: aborts an open transaction through the hooks. */
void smtp_server_end(struct smtp_server *s);

/* Where the caller may put received bytes (room 0: drain the output first,
 * or the session is closing or waiting for TLS). */
void *smtp_server_space(struct smtp_server *s, size_t *room);

/* n bytes were put at smtp_server_space: process every complete line the
 * output has room for. n may be 0 (resume after draining the output). */
void smtp_server_commit(struct smtp_server *s, size_t n);

/* Copies up to len bytes in and processes them; returns the count taken
 * (less than len while the output is full). For tests and fuzzers. */
size_t smtp_server_input(struct smtp_server *s, const void *data, size_t len);

/* Reply bytes waiting to be sent. */
const char *smtp_server_output(const struct smtp_server *s, size_t *len);

/* The first n output bytes were sent. */
void smtp_server_consumed(struct smtp_server *s, size_t n);

/* The verdict of a data_end that returned SMTP_PENDING: queues the reply
 * and resumes reading the lines the client pipelined meanwhile. */
void smtp_server_data_done(struct smtp_server *s, enum smtp_verdict v);

/* The verdict of an auth hook that returned SMTP_PENDING (SMTP_OK,
 * SMTP_AUTH_FAILED or SMTP_AUTH_THROTTLED): queues 235 / 535 / 454 and
 * resumes reading. */
void smtp_server_auth_done(struct smtp_server *s, enum smtp_verdict v);

/* 1 while a data_end or auth verdict is pending. */
int smtp_server_waiting(const struct smtp_server *s);

/* 1 when STARTTLS was accepted: send the output, then run the handshake
 * and call smtp_server_tls_started (nothing more is read in clear). */
int smtp_server_tls_wanted(const struct smtp_server *s);

/* The TLS handshake completed: the session restarts (EHLO expected). */
void smtp_server_tls_started(struct smtp_server *s);

/* 1 when the session is over: send the output, then close. */
int smtp_server_closing(const struct smtp_server *s);

/* Milliseconds the caller waits for input in the current state. */
int smtp_server_timeout_ms(const struct smtp_server *s);

/* Queues "421 4.4.2 <host> timeout" (or text) and closes the session. */
void smtp_server_shutdown(struct smtp_server *s, const char *why);

/* ---- pieces shared with the SMTP client (the relay) -------------------- */

/*
 * Parses "<path> PARAMS" after "MAIL FROM:" / "RCPT TO:" (RFC 5321 4.1.2;
 * a blank after the colon is tolerated). The address without <> (and
 * without a source route) goes to addr; *params points at the parameters
 * ("" when none). Returns 0, or -1 for a syntax error.
 */
int smtp_parse_path(const char *arg, char *addr, size_t cap, const char **params);

/*
 * Takes the next "KEYWORD[=VALUE]" from *params (blank separated,
 * RFC 5321 4.1.2 esmtp-param). Returns 1 with key/value filled (value ""
 * when absent), 0 at the end, -1 on a syntax error.
 */
int smtp_next_param(const char **params, char *key, size_t keycap, char *val,
		    size_t valcap);

/*
 * Parses a reply line "250-text" / "250 text". Returns the code (200..599)
 * with *last = 1 for the final line of a reply, or -1.
 */
int smtp_parse_reply(const char *line, size_t len, int *last);

/* Base64 (RFC 4648) decode of len chars into out (cap bytes). Returns the
 * decoded length, or -1 for bad input or a small buffer. */
int smtp_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/* Base64 encode; returns the length written (NUL-terminated) or -1. */
int smtp_b64_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* RFC 5322 date "Sat, 28 Nov 2026 23:52:01 +0000" (UTC). Returns out. */
const char *smtp_date(time_t t, char *out, size_t cap);

/* ---- the submission policy (issue 4), used by smtpd's hooks ------------- */

/* Where a recipient goes. */
enum smtp_route {
	SMTP_ROUTE_LOCAL,      /* a user, alias or list in mail-domain */
	SMTP_ROUTE_REMOTE,     /* elsewhere: the queue */
	SMTP_ROUTE_UNKNOWN,    /* in mail-domain, no such name (550) */
	SMTP_ROUTE_BAD         /* not an address */
};

/*
 * Routes addr: local when users_resolve finds users in domain; unknown
 * names in domain are UNKNOWN, or REMOTE when relay_unknown is set (an
 * office migrating mailboxes to the box); other domains are REMOTE.
 */
enum smtp_route smtp_route(const struct users_db *db, const char *domain,
			   int relay_unknown, const char *addr);

/*
 * May authenticated user send with reverse-path from? Only the user's own
 * address or an alias it owns, in domain (docs/USERS.md); the null path
 * is refused (submission carries no bounces). SMTP_OK,
 * SMTP_SENDER_NOT_OWNED or SMTP_SENDER_BAD.
 */
enum smtp_verdict smtp_sender_policy(const struct users_db *db, const char *domain,
				     const char *user, const char *from);

#endif
