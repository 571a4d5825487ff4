/*
 * relayd.h - the outbound relay (docs/relayd.8.md): the queue runner that
 * hands queued messages to the provider's smart host.
 *
 *   main.c   options, configuration, privileges, the event loop, inotify
 *   sched.c  which message is due, results, backoff, give-up, DSNs
 *   sess.c   one SMTP client session: connect, TLS, the smtp-client core,
 *            streaming the message text
 */
#ifndef POSTERN_RELAYD_H
#define POSTERN_RELAYD_H

#include <stdint.h>

#include "config.h"
#include "evloop.h"
#include "log.h"
#include "pem.h"
#include "queue.h"
#include "smtp-client.h"
#include "tls.h"
#include "users.h"

#define RELAY_SESSIONS_MAX 8          /* parallel sessions to the smart host */
#define RELAY_SESSIONS_DEFAULT 2
#define RELAY_TIMERS_MAX (4 * RELAY_SESSIONS_MAX + 8)
#define RELAY_RESCAN_MS (60 * 1000)   /* full queue rescan, real time */
#define RELAY_PASSWORD_RETRY_MS 5000  /* mail waits for an unreadable password */
#define RELAY_CONNECT_MS (30 * 1000)  /* TCP connect */
#define RELAY_TLS_MS (60 * 1000)      /* TLS handshake */
#define RELAY_CHUNK 16384             /* message text read per step */
#define RELAY_SECRET_MAX 1024         /* bytes in the smart-host password (SECRET_MAX) */
#define RELAY_PATH_MAX 512
#define RELAY_DSN_MAX (64 * 1024)     /* a DSN's bytes */
#define RELAY_INOTIFY_BUF 8192
#define RELAY_FLUSH_FILE "flush"      /* <queue>/flush: retry everything now */
#define RELAY_COMMIT_MS 20            /* finished messages' removals made durable together */

/* One queued message the scheduler knows of. */
struct relay_entry {
	char id[QUEUE_ID_LEN + 1];
	int64_t due;                  /* queue time of the next attempt */
	int busy;                     /* a session has it */
	int seen;                     /* found by the rescan running now */
};

struct relay_sess {
	struct relayd *d;
	int active;
	int fd;
	struct evl_io io;
	struct evl_timer timer, kick;
	struct tls_conn *tls;
	int tls_up, connecting, closing, reached_idle;
	int messages;                 /* transactions on this connection */
	struct smtpc c;
	struct log_fields lf;
	/* the message in flight (have_msg) */
	int have_msg;
	int msgfd;                    /* locked (queue_lock) */
	struct queue_env env;
	int idx[QUEUE_RCPTS_MAX];     /* env rcpt index of each transaction rcpt */
	const char *rcpts[QUEUE_RCPTS_MAX];
	int n;
	char from[QUEUE_ADDR_MAX + 1];
	int body_eof;
	size_t chunk_len, chunk_off;
	char chunk[RELAY_CHUNK];
};

struct relay_paths {
	char conf[RELAY_PATH_MAX], users[RELAY_PATH_MAX], mail[RELAY_PATH_MAX];
	char queue[RELAY_PATH_MAX], secrets[RELAY_PATH_MAX];
};

struct relayd {
	struct evloop loop;
	struct evl_timer *heap[RELAY_TIMERS_MAX];
	struct relay_paths p;
	struct config *cfg;
	struct queue q;
	struct users_db users;
	double scale;                 /* queue time runs this much faster */
	int64_t t0_real, t0_mono;     /* s, ms */
	char ehlo[CONFIG_HOST_MAX * 2 + 2];
	char password[RELAY_SECRET_MAX + 1];
	int secrets_fd;               /* the secrets directory (O_PATH, opened as root) */
	char pw_error[256];           /* why the password cannot be read; "": fine */
	struct pem_anchors anchors;
	int have_anchors;
	struct tls_client_config tcfg;
	int nsess_max;
	struct relay_sess *sess;      /* nsess_max of them */
	struct relay_entry *ent;
	size_t nent, capent;
	struct evl_timer tick;
	int64_t last_rescan;          /* evl_clock_ms of the last full rescan */
	struct queue_batch done;      /* removed, not yet durable (queue_batch_commit) */
	struct evl_timer commit;
	int inofd, wd_env, wd_top;
	struct evl_io inoio;
	int once;                     /* exit when nothing is due */
	int exit_code;
};

/* ---- sched.c ---- */

/* Queue time now: Unix seconds, sped up by the time scale. */
int64_t relay_now(const struct relayd *d);

/* Seconds to wait after the n-th failed attempt (5m, 15m, 30m, 1h, 2h, 4h...). */
int64_t relay_backoff(unsigned attempts);

/* Reads every envelope again into the table. */
void sched_rescan(struct relayd *d);

/* (Re)loads one message's entry after a change seen by inotify. */
void sched_update(struct relayd *d, const char *id);

/* Makes the removals of finished messages durable (also on exit). */
void sched_commit(struct relayd *d);

/* Makes every pending recipient due now (postern queue flush). */
void sched_flush(struct relayd *d);

/* Sets up the scheduler's timer. */
void sched_init(struct relayd *d);

/* Starts sessions for due messages and arms the next wake-up. */
void sched_kick(struct relayd *d);

/* For a session in IDLE: takes the next due message into s (locked, env
 * loaded, recipients chosen). 1 taken, 0 nothing due. */
int sched_take(struct relayd *d, struct relay_sess *s);

/* The transaction of s is over: applies its results and releases it. */
void sched_done(struct relayd *d, struct relay_sess *s);

/* The session failed: defers the message in flight with why; when the
 * session never became ready, every due message is deferred too. */
void sched_session_failed(struct relayd *d, struct relay_sess *s, const char *why);

/* Envelope sender after [smarthost] masquerade. */
void relay_masquerade(const struct config *cfg, const char *from, char *out, size_t cap);

/* ---- sess.c ---- */

/* Opens a new session to the smart host in a free slot. 0 or -1. */
int sess_start(struct relayd *d);
/* After a failed password read: tries again (main.c). 0 when readable now. */
int relay_password_retry(struct relayd *d);

/* Active sessions. */
int sess_count(const struct relayd *d);

#endif
