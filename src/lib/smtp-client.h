/*
 * smtp-client.h - the SMTP client protocol core (the relay's side of RFC
 * 5321): reply parsing, EHLO capabilities, STARTTLS, AUTH, and the
 * sequencing of transactions with or without PIPELINING. Nothing here
 * touches a socket or a file: bytes from the server go in, commands and
 * message text come out; a unit test or a fuzzer drives it from arrays.
 *
 *     struct smtpc c;
 *     smtpc_init(&c, &params);            // waits for the 220 greeting
 *     loop:
 *       smtpc_input(&c, bytes, n);        // server bytes (plaintext)
 *       p = smtpc_output(&c, &len); send; smtpc_consumed(&c, sent);
 *       switch (smtpc_state(&c)):
 *         SMTPC_S_TLS_WANTED: handshake, then smtpc_tls_started(&c)
 *         SMTPC_S_IDLE:       smtpc_begin(&c, from, rcpts, n) or smtpc_quit
 *         SMTPC_S_BODY:       smtpc_body(&c, chunk, len) ...; smtpc_body_end
 *         SMTPC_S_MSG_DONE:   read smtpc_rcpt_code(); smtpc_next(&c)
 *         SMTPC_S_FAILED:     smtpc_error(&c); close
 *         SMTPC_S_CLOSED:     QUIT answered; close
 *
 * Security rules (DESIGN.md):
 * - TLS is mandatory: the core never sends AUTH, MAIL, RCPT or DATA before
 *   smtpc_tls_started (or with params.tls_active for implicit TLS). A
 *   server without STARTTLS fails the session.
 * - STARTTLS injection (RFC 3207 section 5, CVE-2011-0411 class): bytes
 *   that follow the server's 220 to STARTTLS in clear abort the session;
 *   after the handshake the capabilities are forgotten and EHLO is sent
 *   again (RFC 3207 4.2).
 * - Output lines end in CRLF only; message text is normalised to CRLF and
 *   dot-stuffed (RFC 5321 4.5.2).
 *
 * Memory: fixed (about 12 KB), no heap.
 */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* ---- limits ------------------------------------------------------------- */
#define SMTPC_LINE_MAX 998          /* reply line without CRLF (RFC 5321 4.5.3.1.5 says 512: be liberal) */
#define SMTPC_IN_MAX (SMTPC_LINE_MAX + 2 + 1024)  /* input buffer */
#define SMTPC_OUT_MAX 4096          /* output buffer (commands and body chunks) */
#define SMTPC_REPLY_LINES_MAX 64    /* lines in one multi-line reply */
#define SMTPC_TEXT_MAX 200          /* reply text kept (first line, code included) */
#define SMTPC_RCPTS_MAX 100         /* recipients per transaction */
#define SMTPC_PATH_MAX 256          /* an address without <> */
#define SMTPC_NAME_MAX 255          /* our EHLO name */
#define SMTPC_CRED_MAX 1024         /* bytes in a user name or a password (SECRET_MAX) */

/* Timeouts in milliseconds (RFC 5321 4.5.3.2) for the current wait. */
#define SMTPC_TIMEOUT_GREETING_MS (5 * 60 * 1000)  /* 4.5.3.2.1 */
#define SMTPC_TIMEOUT_COMMAND_MS (5 * 60 * 1000)   /* 4.5.3.2.2-3 */
#define SMTPC_TIMEOUT_DATA_INIT_MS (2 * 60 * 1000) /* 4.5.3.2.4 */
#define SMTPC_TIMEOUT_BLOCK_MS (3 * 60 * 1000)     /* 4.5.3.2.5 */
#define SMTPC_TIMEOUT_DOT_MS (10 * 60 * 1000)      /* 4.5.3.2.6 */

enum smtpc_state {
	SMTPC_S_GREETING,    /* waiting for 220 */
	SMTPC_S_EHLO,        /* EHLO sent */
	SMTPC_S_STARTTLS,    /* STARTTLS sent, waiting for 220 */
	SMTPC_S_TLS_WANTED,  /* caller: run the handshake, then smtpc_tls_started */
	SMTPC_S_AUTH,        /* AUTH exchange running */
	SMTPC_S_IDLE,        /* ready for a transaction (smtpc_begin) or smtpc_quit */
	SMTPC_S_ENVELOPE,    /* MAIL / RCPT / DATA replies pending */
	SMTPC_S_BODY,        /* 354 received: caller streams the text */
	SMTPC_S_DOT,         /* final "." sent, waiting for its reply */
	SMTPC_S_RSET,        /* RSET after a failed transaction */
	SMTPC_S_MSG_DONE,    /* a transaction is over: results available */
	SMTPC_S_QUIT,        /* QUIT sent */
	SMTPC_S_CLOSED,      /* the session ended normally */
	SMTPC_S_FAILED,      /* the session failed: smtpc_error */
	SMTPC_S_COUNT
};

/* Capabilities from EHLO (bits). */
#define SMTPC_CAP_STARTTLS   0x01u
#define SMTPC_CAP_PIPELINING 0x02u
#define SMTPC_CAP_AUTH_PLAIN 0x04u
#define SMTPC_CAP_AUTH_LOGIN 0x08u
#define SMTPC_CAP_8BITMIME   0x10u
#define SMTPC_CAP_SIZE       0x20u

struct smtpc_params {
	const char *ehlo_name;     /* our name in EHLO */
	int tls_active;            /* implicit TLS: the connection is already TLS */
	const char *user;          /* AUTH login, NULL or "": no AUTH */
	const char *password;
};

/* One recipient's outcome in a transaction. */
struct smtpc_rcpt {
	int code;                  /* final code for it: 250 sent; 0 none yet */
	char text[SMTPC_TEXT_MAX + 1];
};

struct smtpc {
	int state;                 /* enum smtpc_state */
	unsigned caps;
	uint64_t size_max;         /* SIZE parameter, 0 unknown */
	int tls;                   /* TLS is up */
	int ehlo_count;
	char ehlo_name[SMTPC_NAME_MAX + 1];
	char user[SMTPC_CRED_MAX + 1];
	char pass[SMTPC_CRED_MAX + 1];
	int auth_step;             /* AUTH LOGIN: 0 user, 1 password, 2 done */
	/* reply being read */
	int rcode;
	int rlines;
	char rtext[SMTPC_TEXT_MAX + 1];
	/* a transaction */
	char from[SMTPC_PATH_MAX + 1];
	const char *const *rcpts;  /* the caller's, valid until MSG_DONE */
	int nrcpt;
	int sent_cmds;             /* MAIL=0, RCPT i = 1+i, DATA = 1+nrcpt */
	int answered;              /* replies received for those */
	int accepted;              /* recipients with 250/251 */
	int mail_code;
	char mail_text[SMTPC_TEXT_MAX + 1];
	int dot_code;
	int body_bol;              /* body: at the start of a line */
	int body_cr;               /* body: a CR waits for its LF */
	struct smtpc_rcpt res[SMTPC_RCPTS_MAX];
	/* result of the session */
	int fail_code;             /* reply code of the failure, 0 local */
	int fail_temp;             /* 1: temporary (retry), 0: permanent */
	char err[SMTPC_TEXT_MAX + 64];
	/* buffers */
	size_t ilen;               /* bytes in in[] of a partial line */
	int ioverlong;
	size_t olen;
	char in[SMTPC_IN_MAX];
	char out[SMTPC_OUT_MAX];
};

/* Sets c up; nothing to send until the greeting arrives. -1 when a
 * parameter is too long. */
int smtpc_init(struct smtpc *c, const struct smtpc_params *p);

/* Bytes from the server. Returns how many were used: all of them, except
 * that no byte is taken after the 220 to STARTTLS (those are an injection
 * and fail the session) or once the session is over. 0 or more. */
size_t smtpc_input(struct smtpc *c, const void *data, size_t len);

/* The server closed the connection (or a read failed): fails the session
 * unless it was over. */
void smtpc_eof(struct smtpc *c);

/* Bytes waiting to be sent (*len may be 0). */
const char *smtpc_output(const struct smtpc *c, size_t *len);

/* n bytes of the output were sent. */
void smtpc_consumed(struct smtpc *c, size_t n);

/* The current state (enum smtpc_state). */
int smtpc_state(const struct smtpc *c);

/* The timeout (ms) for what the session now waits for. */
int64_t smtpc_timeout_ms(const struct smtpc *c);

/* The TLS handshake after STARTTLS completed (or failed: pass ok 0 with a
 * reason). Sends EHLO again on success. */
void smtpc_tls_started(struct smtpc *c, int ok, const char *why);

/* In IDLE: starts a transaction MAIL FROM:<from> with n recipients (the
 * array and strings must stay valid until MSG_DONE). -1 if not IDLE or a
 * bad argument. */
int smtpc_begin(struct smtpc *c, const char *from, const char *const *rcpts, int n);

/* In BODY: message text (CRLF, LF or CR line ends; normalised to CRLF and
 * dot-stuffed). Returns the bytes taken (less than len when the output
 * buffer is full: send, then call again). */
size_t smtpc_body(struct smtpc *c, const void *data, size_t len);

/* In BODY: the text is complete; sends CRLF "." CRLF. -1 if there is no
 * room yet (send output first) or not in BODY. */
int smtpc_body_end(struct smtpc *c);

/* In MSG_DONE: recipient i's result (code 0: none). */
const struct smtpc_rcpt *smtpc_rcpt_result(const struct smtpc *c, int i);

/* In MSG_DONE: back to IDLE for the next message. */
void smtpc_next(struct smtpc *c);

/* In IDLE or MSG_DONE: sends QUIT. */
void smtpc_quit(struct smtpc *c);

/* The reason the session failed ("" otherwise). */
const char *smtpc_error(const struct smtpc *c);

/* 1 when the failure is temporary (4xx, network, TLS), 0 permanent. */
int smtpc_error_temp(const struct smtpc *c);

/* Makes the session fail locally (timeouts, I/O errors) with why. */
void smtpc_fail(struct smtpc *c, int temp, const char *why);

/* Reads one EHLO keyword line (without the code) into the caps bits. */
void smtpc_parse_ehlo_line(struct smtpc *c, const char *text);

/* The name of a state, for logs. */
const char *smtpc_state_name(int state);

#endif
