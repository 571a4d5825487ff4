/*
 * smtpd.h - the submission server's shared declarations (docs/smtpd.8.md).
 *
 * One process, one event loop (evloop.h). Roles by file:
 *   main.c     options, configuration and users (re)loading, listeners,
 *              privilege drop, signals, the loop (on src/lib/server.h)
 *   conn.c     one client connection: socket or TLS bytes <-> the protocol
 *              core (smtp-proto.h), timeouts, closing
 *   session.c  the core's hooks: AUTH (throttled), the submission policy,
 *              spooling, local delivery (deliver.h) and queueing (queue.h)
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "deliver.h"
#include "evloop.h"
#include "log.h"
#include "pool.h"
#include "queue.h"
#include "server.h"
#include "smtp-proto.h"
#include "tls.h"
#include "users.h"

#define SMTPD_CONNS_MAX 256            /* simultaneous client connections */
#define SMTPD_TIMERS_MAX (2 * SMTPD_CONNS_MAX + 8)
#define SMTPD_LISTEN_MAX 3             /* 587, 465, 25 */
#define SMTPD_FS_RESERVE (16ull << 20) /* bytes kept free on /data (452 below) */
#define SMTPD_CLOSE_MS 5000            /* time to flush the last reply */
#define SMTPD_WORKERS 8                /* threads making messages durable */
#define SMTPD_GROUP_MAX 32             /* messages one worker commits at once */
#define SMTPD_CONNS_PER_ADDR 32        /* simultaneous connections per client address */
#define SMTPD_RATE_PER_ADDR 120        /* new connections per address and window */
#define SMTPD_RATE_WINDOW_S 60         /* the rate window (seconds) */
#define SMTPD_ADDRS_MAX (2 * SMTPD_CONNS_MAX)  /* addresses tracked (limits.c) */

enum smtpd_kind { SMTPD_SUBMISSION, SMTPD_SMTPS, SMTPD_PORT25 };

/* What a worker thread does for a connection (worker.c). */
enum smtpd_job { SMTPD_JOB_DATA, SMTPD_JOB_AUTH };

struct smtpd;

struct smtpd_listener {
	struct smtpd *d;
	int fd;
	enum smtpd_kind kind;
	struct evl_io io;
};

struct smtpd_opts {
	struct server_opts srv;                 /* --config, --cert, --user, ... (server.h) */
	const char *mail_root, *queue_dir;
	const char *listen[SMTPD_LISTEN_MAX];   /* "ADDR:PORT" per kind, or NULL */
};

/* Connections of one client address (limits.c). */
struct smtpd_addr {
	char addr[64];                         /* "" = unused */
	int conns;                             /* open now */
	int recent;                            /* opened in the current window */
	time_t window;                         /* its start */
};

struct smtpd {
	struct smtpd_opts o;
	struct evloop loop;
	struct evl_timer *heap[SMTPD_TIMERS_MAX];
	struct config *cfg;
	struct users_db users;
	struct timespec users_mtime;
	struct users_cache cache;
	struct queue queue;
	struct tls_server_config tls;
	int have_tls;
	char hostname[SMTP_HOSTNAME_MAX + 1];
	struct smtpd_listener lis[SMTPD_LISTEN_MAX];
	int nconns;
	struct pool pool;                      /* worker threads (worker.c) */
	int jobs;                              /* in the pool: no reloads now */
	int reload_pending;                    /* SIGHUP came while jobs ran */
	struct smtpd_addr addrs[SMTPD_ADDRS_MAX];
};

/* A transaction's state, allocated at MAIL, freed at its end. */
struct smtpd_txn {
	struct queue_spool sp;
	int spooling;
	struct queue_env env;                  /* remote recipients */
	int nlocal;
	char local[SMTP_RCPTS_MAX][SMTP_PATH_MAX + 1];
};

struct smtpd_conn {
	struct smtpd *d;
	int fd;
	enum smtpd_kind kind;
	struct evl_io io;
	struct evl_timer timer;                /* the RFC 5321 timeouts */
	struct evl_timer kick;                 /* "run again soon" */
	struct tls_conn *tls;                  /* NULL until TLS starts */
	int tls_up;                            /* the handshake completed */
	int tls_closing;
	struct smtp_server smtp;
	struct log_fields lf;
	char addr[64];                         /* peer address without port */
	struct sockaddr_storage sa;
	struct smtpd_txn *txn;
	struct smtpd_txn *spare;               /* the last one's memory, for the next MAIL */
	struct queue_spool *ahead;             /* a spool file a worker opened for the next DATA */
	int busy;                              /* a worker has this connection's job */
	int job;                               /* enum smtpd_job */
	char auth_user[SMTP_AUTH_USER_MAX + 1];
	char auth_pass[SMTP_AUTH_PASS_MAX + 1];   /* wiped when the job is done */
	int dead;                              /* closed while busy: free on return */
	enum smtp_verdict verdict;             /* the worker's answer */
};

/* conn.c */
void conn_accept(struct smtpd *d, struct smtpd_listener *l);
void conn_job_done(struct smtpd_conn *c);

/* session.c */
extern const struct smtp_hooks smtpd_hooks;
/* Ends the open transaction (if any); its memory is kept for the next. */
void session_free_txn(struct smtpd_conn *c);
/* session_free_txn, and frees the kept memory (the connection ends). */
void session_release(struct smtpd_conn *c);
/* On a worker, after a login or a message: opens the spool file of the
 * connection's next DATA ahead (creating a file is the costliest step
 * left on the event loop). Best effort: DATA opens one itself otherwise. */
void session_spool_ahead(struct smtpd_conn *c);
/* The durable end of a message (spool fsync, queue, Maildirs): runs on a
 * worker thread, touching only c->txn and read-only shared state. */
enum smtp_verdict session_finish(struct smtpd_conn *c);
/* session_finish for n connections at once: their Maildir copies are made
 * durable by one commit (group commit); sets each one's verdict. */
void session_finish_group(struct smtpd_conn **cs, size_t n);

/* limits.c: admits a new connection from addr at time now (counted until
 * limits_release), or returns why not (for the 421 reply). */
const char *limits_admit(struct smtpd *d, const char *addr, time_t now);
void limits_release(struct smtpd *d, const char *addr);
/* The password check of AUTH (throttle, KDF): runs on a worker thread. */
enum smtp_verdict session_auth(struct smtpd_conn *c);

/* worker.c */
int pool_start(struct smtpd *d);
int pool_submit(struct smtpd *d, struct smtpd_conn *c);
void pool_stop(struct smtpd *d);

/* main.c */
void smtpd_refresh_users(struct smtpd *d);
void smtpd_reload_pending(struct smtpd *d);

#endif
