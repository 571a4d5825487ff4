/*
 * imapd.h - the IMAP server's shared declarations (docs/imapd.8.md).
 *
 * One process, one event loop (evloop.h), many connections. Roles by file:
 *   main.c    options, listeners, users, privilege drop, loop: on the
 *             servers' shared plumbing (server.h)
 *   conn.c    one connection: socket/TLS bytes <-> lines and literals
 *             (imap-proto.h), output buffer, timeouts, IDLE's inotify
 *   cmd.c     the state enum and dispatch table; any-state and
 *             not-authenticated commands (CAPABILITY, STARTTLS, LOGIN, ...)
 *   mbox.c    mailbox names -> directories (isolation), LIST, CREATE,
 *             SELECT, STATUS, APPEND, EXPUNGE, COPY/MOVE, view updates
 *   fetch.c   FETCH, SEARCH
 *   store.c   STORE: the renames on a worker
 *   auth.c    the worker threads: password checks (the KDF costs ~0.2 s),
 *             the user's Maildir, APPEND's and STORE's fsyncs
 *   idle.c    IDLE's notifications: one inotify instance per process
 */
#ifndef POSTERN_IMAPD_H
#define POSTERN_IMAPD_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "evloop.h"
#include "imap-index.h"
#include "imap-proto.h"
#include "linebuf.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "maildir.h"
#include "tls.h"
#include "users.h"

#define IMAPD_CONNS_MAX 1024            /* connections per process */
#define IMAPD_CONNS_PER_USER 20         /* logged-in connections per user */
#define IMAPD_CONNS_PER_ADDR 50         /* connections per client address */
#define IMAPD_TIMERS_MAX (2 * IMAPD_CONNS_MAX + 8)
#define IMAPD_IN_MAX (IMAP_LINE_MAX + LINEBUF_SLACK)
#define IMAPD_OUT_HIGH (256u << 10)     /* stop reading commands above this */
#define IMAPD_TIMEOUT_AUTH_MS (60 * 1000)        /* before login */
#define IMAPD_TIMEOUT_IDLE_MS (30 * 60 * 1000)   /* RFC 3501 5.4: at least 30 min */
#define IMAPD_TIMEOUT_TLS_MS (30 * 1000)
#define IMAPD_CLOSE_MS 5000
#define IMAPD_BAD_MAX 20                /* BAD answers in a row before BYE */
#define IMAPD_PATH_MAX 4096
#define IMAPD_WORKERS 2                 /* worker threads (auth.c) */
#define IMAPD_STREAM_MIN (64u << 10)    /* literals from this size are sent from the file */
#define IMAPD_STREAMS_MAX 8             /* such file sections queued per connection */
#define IMAPD_STREAM_CHUNK 16384        /* bytes read from the file at a time */

enum imapd_kind { IMAPD_PLAIN, IMAPD_IMAPS };

#define KW_MAX 26                       /* keywords per mailbox: the letters a-z */
#define KW_NAME_MAX 64                  /* bytes of a keyword */
#define FLAGS_TEXT_MAX (KW_MAX * (KW_NAME_MAX + 1) + 64)   /* "(\\Seen ... kw)" */

/* The keywords of a mailbox (keywords.c): letter 'a' + i is name[i]. */
struct kw {
	char name[KW_MAX][KW_NAME_MAX + 1];
	int n;
};

/* A section of a message file sent without copying it into memory
 * (conn.c out_file): the window [from, from + n) of the file's bytes
 * [off, end) with bare LFs sent as CRLF, inserted at position `at` of the
 * reply stream. */
struct out_stream {
	int fd;
	uint64_t at;                /* absolute position in the reply stream */
	uint64_t off, end;          /* raw bytes still to read */
	uint64_t pos, from, n;      /* converted position and window */
	int prev_cr;
	char *buf;                  /* staging, 2 * IMAPD_STREAM_CHUNK */
	size_t blen, boff;
};

/* RFC 3501 3: the connection's state decides which commands are valid. */
enum imap_state { ST_NOAUTH, ST_AUTH, ST_SELECTED, ST_LOGOUT };

struct imapd_listener {
	int fd;
	enum imapd_kind kind;
	struct evl_io io;
	struct imapd *d;
};

/* Options: the servers' common ones (server.h: --users, --throttle,
 * --cert, --key, --user, --ready-fd, -f), then imapd's own. */
struct imapd_opts {
	struct server_opts srv;
	const char *mail_root;         /* --mail */
	const char *listen[2];         /* --imap, --imaps ("" = off) */
};

/* A watched directory of the process's inotify instance (idle.c). */
struct idle_watch {
	int wd;
	int refs;                   /* idling connections that watch it */
};

struct imapd {
	struct imapd_opts o;
	struct evloop loop;
	struct evl_timer *heap[IMAPD_TIMERS_MAX];
	struct users_db users;
	struct timespec users_mtime;
	struct users_cache cache;
	struct pool pool;           /* logins, APPEND, STORE (auth.c) */
	int jobs;                   /* checks in the pool: the users stay loaded */
	struct tls_server_config tls;
	struct imapd_listener lis[2];
	struct imapd_conn *conns;   /* all connections (for the per-user limits) */
	int nconns;
	int ifd;                    /* IDLE's inotify instance, -1 without (idle.c) */
	struct evl_io iio;
	struct idle_watch *watches;
	size_t nwatches, capwatches;
	uint64_t mailbox_quota;     /* the configuration's mailbox-quota, 0: none */
};

struct imapd_conn {
	struct imapd *d;
	struct imapd_conn *next, *prev;
	int fd;
	enum imapd_kind kind;
	struct evl_io io;
	struct evl_timer timer;
	int64_t timer_set;         /* loop time the timer was last armed (for the log) */
	int64_t timer_ms;          /* and its length */
	struct evl_timer kick;
	struct tls_conn *tls;          /* NULL until TLS starts */
	int tls_closing, starttls_pending;
	struct linebuf lb;
	char inbuf[IMAPD_IN_MAX];
	struct imap_cmd cmd;
	char *out;                     /* replies (heap) */
	size_t outoff, outlen, outcap;  /* unsent bytes: out[outoff..outlen) */
	uint64_t out_base;             /* stream position of out[0] */
	struct out_stream streams[IMAPD_STREAMS_MAX];   /* file sections, in order */
	int nstreams;
	enum imap_state state;
	int bads;
	struct log_fields lf;
	char addr[64];
	char user[USERS_NAME_MAX + 1];
	char root[IMAPD_PATH_MAX];     /* the user's Maildir */
	/* SELECTED */
	struct imap_index ix;
	char mbox[IMAP_ATOM_MAX];      /* mUTF-7 name of the selected mailbox */
	struct kw kw;                  /* its keywords */
	int readonly;
	/* RFC 7162: once enabled, untagged FETCHes of flag changes carry
	 * UID and MODSEQ, until the connection ends. */
	int condstore;
	struct imap_index_txn *txn;    /* this command's own flag changes (fetch.c) */
	/* IDLE (RFC 2177) */
	int idling;
	char idle_tag[IMAP_TAG_MAX + 1];
	int wd[2];                     /* watches on new/ and cur/, while idling */
	int nwd;
	int idle_dirty;                /* an event came since the last update */
	/* AUTHENTICATE PLAIN waiting for its response line */
	int auth_wait;
	char auth_tag[IMAP_TAG_MAX + 1];
	/* A password check on a worker (auth.c): no command runs meanwhile. */
	int busy;                      /* a worker holds this connection */
	int dead;                      /* closed while busy: freed when it returns */
	int verdict;                   /* enum auth_verdict, set by the worker */
	int store_ok;                  /* and c->root is the user's Maildir, ready */
	char job_tag[IMAP_TAG_MAX + 1];
	char job_user[USERS_NAME_MAX + 1];
	char job_pass[USERS_PASSWORD_MAX + 1];   /* wiped when the check is done */
	int job;                       /* enum imapd_job */
	struct append_job *append;     /* JOB_APPEND's arguments and result (heap) */
	struct store_job *store;       /* JOB_STORE's (store.c, heap) */
};

/* What a worker does for a connection: a password check, the durable
 * write of an APPEND, or STORE's renames (the fsyncs must not stall the
 * loop). */
enum imapd_job { JOB_AUTH, JOB_APPEND, JOB_STORE };

struct append_job {
	char dir[IMAPD_PATH_MAX];
	const char *data;              /* in c->cmd, kept until the job is done */
	size_t len;
	char flags[MAILDIR_FLAGS_MAX + 1];
	time_t when;
	char file[300];                /* out: the new message's name */
	uint32_t uid, validity;        /* out: 0 when unknown */
	int rc;                        /* out: 0 stored, -1 not */
};

enum auth_verdict { AUTH_OK, AUTH_FAILED, AUTH_THROTTLED };

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
/* Queues the window [skip, skip + n) of the file's bytes [off, off + len)
 * (bare LF sent as CRLF) to follow what is already queued, read from the
 * file only as the client takes it (a dup of fd is kept). 0, or -1 when
 * the connection has IMAPD_STREAMS_MAX queued already (then copy it). */
int out_file(struct imapd_conn *c, int fd, uint64_t off, uint64_t len, uint64_t skip,
	     uint64_t n);
/* 1 while replies wait to be sent. */
int out_pending(const struct imapd_conn *c);
int conn_idle_start(struct imapd_conn *c);
/* 1 when new/ or cur/ may have changed since the last update of an IDLE
 * (inotify events not yet handled, or no watch); drains the events. */
int conn_idle_pending(struct imapd_conn *c);
void conn_idle_stop(struct imapd_conn *c);
void conn_start_tls(struct imapd_conn *c);

/* idle.c */
/* The process's inotify instance on d's loop. 0, or -1 (IDLE then
 * updates only at DONE). */
int idle_init(struct imapd *d);
void idle_fini(struct imapd *d);
/* Runs the connection's I/O again (after a worker finished its job). */
void conn_resume(struct imapd_conn *c);
/* Frees a connection that was closed while a worker held it. */
void conn_release(struct imapd_conn *c);

/* cmd.c */
void cmd_run(struct imapd_conn *c, char *text, size_t len);
void cmd_line_while_waiting(struct imapd_conn *c, const char *line, size_t len);
void cmd_greeting(struct imapd_conn *c);
void cmd_capability_list(struct imapd_conn *c);
int reply(struct imap_req *r, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int bad_args(struct imap_req *r);

/* Finishes LOGIN/AUTHENTICATE once the worker checked the password. */
void cmd_login_done(struct imapd_conn *c);

/* auth.c */
/* Starts the worker threads and their completion eventfd. 0 or -1 (then
 * checks run in the loop, blocking it). */
int pool_start(struct imapd *d);
/* Queues c's password check (c->job_*): 0, or -1 (no workers). */
int pool_submit(struct imapd *d, struct imapd_conn *c);
/* The check itself (on a worker, or in the loop without workers). */
int auth_check(struct imapd_conn *c);
/* The whole login job: the check, then the user's Maildir (c->verdict,
 * c->store_ok, c->root). */
void auth_job(struct imapd_conn *c);
/* Stops the threads; frees connections that died while checked. */
void pool_stop(struct imapd *d);

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
/* The worker's half of APPEND: the file written durably, its UID. */
void append_work(struct append_job *j);
/* The loop's half: the answer. */
void append_done(struct imapd_conn *c);
/* Re-reads the selected mailbox and tells the client what changed
 * (EXPUNGE, EXISTS, FETCH FLAGS). expunges: 0 when they may not be sent
 * (RFC 3501 7.4.1: not during FETCH, STORE, SEARCH). 0 or -1. */
int mbox_update(struct imapd_conn *c, int expunges);
void mbox_unselect(struct imapd_conn *c);

/* fetch.c */
/* The selected mailbox's index transaction for this command's flag
 * changes, begun on first use (NULL when the index cannot be locked);
 * txn_end commits it. No index sync may run in between (the lock). */
struct imap_index_txn *txn_get(struct imapd_conn *c);
void txn_end(struct imapd_conn *c);
/* " MODSEQ (m)" of message i, as RFC 7162 3.2 wants in the untagged
 * FETCHes of flag changes once CONDSTORE is enabled; nothing before
 * (Dovecot's shape: UID only where the command had it). */
void out_condstore(struct imapd_conn *c, size_t i);
int cmd_fetch(struct imap_req *r);
int cmd_search(struct imap_req *r);
/* Finds message i again when another process renamed its file (new/ ->
 * cur/, flags): 0, or -1 when it is gone. */
int msg_locate(struct imapd_conn *c, size_t i);
/* Flags of a message as an IMAP list "(\Seen ... $Keyword)" into out
 * (keywords from k, which may be NULL). */
void flags_imap(const char *maildir_flags, const struct kw *k, char *out, size_t cap);
/* An IMAP flag list "(\Seen \Flagged $Kw)" into maildir letters;
 * keywords get letters through k (mailbox dir), created when new.
 * 0, -1 syntax error, -2 no room for another keyword. */
int flags_parse(struct imap_parser *p, const char *dir, struct kw *k, char *letters, size_t cap);

/* store.c */
int cmd_store(struct imap_req *r);
/* The worker's half: index lock, renames, modseqs (c->store). */
void store_work(struct imapd_conn *c);
/* The loop's half: the untagged FETCHes and the answer; frees c->store. */
void store_done(struct imapd_conn *c);
void store_free(struct store_job *q);

/* keywords.c */
/* Reads dir's keyword names into k. 0 or -1. */
int kw_load(const char *dir, struct kw *k);
/* The letter of keyword `name` in dir ('a'..'z'), given a new one when
 * `create` (saved at once); 0 when it has none (or no room: KW_MAX). */
char kw_letter(const char *dir, struct kw *k, const char *name, int create);
/* Appends the keywords among `letters` to the flag list in out. */
void kw_imap(const struct kw *k, const char *letters, char *out, size_t cap);
/* The messages a sequence set names (by sequence number or UID): an array
 * of positions in c->ix (heap), *n of them. */
int set_select(struct imapd_conn *c, const struct imap_seqset *set, int uid,
	       size_t **pos, size_t *n);

/* main.c */
void imapd_refresh_users(struct imapd *d);

#endif
