/*
 * imapd.h - the IMAP server's shared declarations (docs/imapd.8.md).
 *
 * One process, one event loop (evloop.h), many connections. Roles by file:
 *   main.c    options, users (re)loading, listeners, privilege drop, loop
 *   conn.c    one connection: socket/TLS bytes <-> lines and literals
 *             (imap-proto.h), output buffer, timeouts, IDLE's inotify
 *   cmd.c     the state enum and dispatch table; any-state and
 *             not-authenticated commands (CAPABILITY, STARTTLS, LOGIN, ...)
 *   mbox.c    mailbox names -> directories (isolation), LIST, CREATE,
 *             SELECT, STATUS, APPEND, EXPUNGE, COPY/MOVE, view updates
 *   fetch.c   FETCH, STORE, SEARCH
 */
#ifndef POSTERN_IMAPD_H
#define POSTERN_IMAPD_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "evloop.h"
#include "imap-index.h"
#include "imap-proto.h"
#include "linebuf.h"
#include "log.h"
#include "tls.h"
#include "users.h"

#define IMAPD_CONNS_MAX 1024            /* connections per process */
#define IMAPD_CONNS_PER_USER 20         /* logged-in connections per user */
#define IMAPD_CONNS_PER_ADDR 50         /* connections per client address */
#define IMAPD_TIMERS_MAX (2 * IMAPD_CONNS_MAX + 8)
#define IMAPD_BACKLOG 64
#define IMAPD_IN_MAX (IMAP_LINE_MAX + LINEBUF_SLACK)
#define IMAPD_OUT_HIGH (256u << 10)     /* stop reading commands above this */
#define IMAPD_TIMEOUT_AUTH_MS (60 * 1000)        /* before login */
#define IMAPD_TIMEOUT_IDLE_MS (30 * 60 * 1000)   /* RFC 3501 5.4: at least 30 min */
#define IMAPD_TIMEOUT_TLS_MS (30 * 1000)
#define IMAPD_CLOSE_MS 5000
#define IMAPD_BAD_MAX 20                /* BAD answers in a row before BYE */
#define IMAPD_PATH_MAX 4096

enum imapd_kind { IMAPD_PLAIN, IMAPD_IMAPS };

/* RFC 3501 3: the connection's state decides which commands are valid. */
enum imap_state { ST_NOAUTH, ST_AUTH, ST_SELECTED, ST_LOGOUT };

struct imapd_listener {
	int fd;
	enum imapd_kind kind;
	struct evl_io io;
	struct imapd *d;
};

struct imapd_opts {
	const char *users, *mail_root, *throttle, *cert, *key, *run_user;
	const char *listen[2];
	int foreground, ready_fd;
};

struct imapd {
	struct imapd_opts o;
	struct evloop loop;
	struct evl_timer *heap[IMAPD_TIMERS_MAX];
	struct users_db users;
	struct timespec users_mtime;
	struct users_cache cache;
	struct tls_server_config tls;
	struct imapd_listener lis[2];
	struct imapd_conn *conns;   /* all connections (for the per-user limits) */
	int nconns;
};

struct imapd_conn {
	struct imapd *d;
	struct imapd_conn *next, *prev;
	int fd;
	enum imapd_kind kind;
	struct evl_io io;
	struct evl_timer timer;
	struct evl_timer kick;
	struct tls_conn *tls;          /* NULL until TLS starts */
	int tls_closing, starttls_pending;
	struct linebuf lb;
	char inbuf[IMAPD_IN_MAX];
	struct imap_cmd cmd;
	char *out;                     /* replies (heap) */
	size_t outoff, outlen, outcap;  /* unsent bytes: out[outoff..outlen) */
	enum imap_state state;
	int bads;
	struct log_fields lf;
	char addr[64];
	char user[USERS_NAME_MAX + 1];
	char root[IMAPD_PATH_MAX];     /* the user's Maildir */
	/* SELECTED */
	struct imap_index ix;
	char mbox[IMAP_ATOM_MAX];      /* mUTF-7 name of the selected mailbox */
	int readonly;
	/* IDLE (RFC 2177) */
	int idling;
	char idle_tag[IMAP_TAG_MAX + 1];
	int ifd;                       /* inotify, while idling */
	struct evl_io iio;
	/* AUTHENTICATE PLAIN waiting for its response line */
	int auth_wait;
	char auth_tag[IMAP_TAG_MAX + 1];
};

/* One command being run. */
struct imap_req {
	struct imapd_conn *c;
	struct imap_parser p;
	char tag[IMAP_TAG_MAX + 1];
	int uid;                       /* UID prefix */
};

/* conn.c */
void conn_accept(struct imapd *d, struct imapd_listener *l);
void conn_close_all(struct imapd *d);
void out_raw(struct imapd_conn *c, const void *data, size_t len);
void out_fmt(struct imapd_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A string as a quoted string, or a literal when quoting cannot carry it. */
void out_string(struct imapd_conn *c, const char *s, size_t len);
void out_nstring(struct imapd_conn *c, const char *s);
int conn_idle_start(struct imapd_conn *c);
void conn_idle_stop(struct imapd_conn *c);
void conn_start_tls(struct imapd_conn *c);

/* cmd.c */
void cmd_run(struct imapd_conn *c, char *text, size_t len);
void cmd_line_while_waiting(struct imapd_conn *c, const char *line, size_t len);
void cmd_greeting(struct imapd_conn *c);
void cmd_capability_list(struct imapd_conn *c);
int reply(struct imap_req *r, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int bad_args(struct imap_req *r);

/* mbox.c */
int mbox_dir(struct imapd_conn *c, const char *name, char *out, size_t cap);
int cmd_select(struct imap_req *r);
int cmd_list(struct imap_req *r);
int cmd_create(struct imap_req *r);
int cmd_delete(struct imap_req *r);
int cmd_rename(struct imap_req *r);
int cmd_subscribe(struct imap_req *r);
int cmd_status(struct imap_req *r);
int cmd_append(struct imap_req *r);
int cmd_expunge(struct imap_req *r);
int cmd_close(struct imap_req *r);
int cmd_copy(struct imap_req *r);
/* Re-reads the selected mailbox and tells the client what changed
 * (EXPUNGE, EXISTS, FETCH FLAGS). expunges: 0 when they may not be sent
 * (RFC 3501 7.4.1: not during FETCH, STORE, SEARCH). 0 or -1. */
int mbox_update(struct imapd_conn *c, int expunges);
void mbox_unselect(struct imapd_conn *c);

/* fetch.c */
int cmd_fetch(struct imap_req *r);
int cmd_store(struct imap_req *r);
int cmd_search(struct imap_req *r);
/* Flags of message i as an IMAP list "(\Seen ...)" into out. */
void flags_imap(const char *maildir_flags, char *out, size_t cap);
/* An IMAP flag list "(\Seen \Flagged)" into maildir letters. 0 or -1. */
int flags_parse(struct imap_parser *p, char *letters, size_t cap);
/* The messages a sequence set names (by sequence number or UID): an array
 * of positions in c->ix (heap), *n of them. */
int set_select(struct imapd_conn *c, const struct imap_seqset *set, int uid,
	       size_t **pos, size_t *n);

/* main.c */
void imapd_refresh_users(struct imapd *d);

#endif
