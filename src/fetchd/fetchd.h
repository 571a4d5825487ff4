/*
 * fetchd.h - the POP3 fetcher (docs/fetchd.8.md): shared declarations of
 * its parts.
 *
 *   main.c     options, the polling loop (interval, SIGUSR1, control file,
 *              SIGHUP reload) and the one-shot mode behind `postern fetch`
 *   session.c  one fetch of one account: the POP3 dialogue and the
 *              exactly-once steps of uidl.h, a batch at a time (pipelined
 *              RETR, one group commit, pipelined DELE)
 *   conn.c     the connection: connect with a deadline, plain or TLS
 *              reads and writes with deadlines, the STLS upgrade
 *   store.c    the spool file (delivery: src/lib/deliver.h)
 *   multidrop.c  recipients of a message from a domain-wide mailbox
 */
#ifndef POSTERN_FETCHD_H
#define POSTERN_FETCHD_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "pop3-proto.h"
#include "status.h"
#include "tls.h"
#include "users.h"

/* ---- timeouts (milliseconds) -------------------------------------------- */
#define FETCH_RESOLVE_MS   10000	/* the server's name lookup */
#define FETCH_CONNECT_MS   30000	/* TCP connect, per address */
#define FETCH_TLS_MS       30000	/* the TLS handshake */
#define FETCH_REPLY_MS     60000	/* a one-line reply, or a listing */
#define FETCH_IDLE_MS      120000	/* no byte at all during RETR */
/* Reading buffer of a connection. */
#define FETCH_RBUF         16384
/* Free space kept on the data partition: below it, fetching stops. */
#define FETCH_FS_RESERVE   (64ULL * 1024 * 1024)
/* Longest password read from its file. */
#define FETCH_PASS_MAX     1024
/* Messages in one mailbox listing. */
#define FETCH_MSGS_MAX     200000

/* Where things are: all under the data directory (/data on the box). */
struct fetch_paths {
	char data[256];			/* /data */
	char conf[512];			/* /data/etc/postern.conf */
	char secrets[512];		/* /data/secrets */
	char fetch[512];		/* /data/fetch */
	char mail[512];			/* /data/mail */
	char users[512];		/* /data/etc/users */
};

/* What one session did. */
struct fetch_stats {
	unsigned listed;		/* messages on the server */
	unsigned fetched;		/* delivered in this session */
	unsigned deleted;		/* DELE accepted (commits at QUIT) */
	unsigned skipped_big;		/* over max-size, left on the server */
	unsigned already;		/* delivered before (by UIDL) */
	uint64_t bytes;
	int committed;			/* QUIT answered +OK */
	/* Why a session failed, for the dashboard's status record (status.h):
	 * the first cause noted wins; STATUS_OK while none was. */
	int result;
	char detail[STATUS_DETAIL_MAX + 1];
	unsigned over_quota;		/* left on the server: a user over quota
					 * (detail names the user) */
};

/* A connection to the server. */
struct conn {
	int fd;
	struct tls_conn *tls;		/* NULL while in clear */
	size_t rpos, rlen;
	unsigned char rbuf[FETCH_RBUF];
	const struct log_fields *lf;
	char err[TLS_ERR_MAX + 64];
};

/* conn.c */
int conn_connect(struct conn *c, const char *host, uint16_t port, const struct log_fields *lf);
int conn_starttls(struct conn *c, const struct tls_client_config *cfg, const char *name);
int conn_write(struct conn *c, const void *buf, size_t len, int64_t deadline);
int conn_response(struct conn *c, struct pop3_reader *r, int64_t idle_ms);
void conn_close(struct conn *c);

/* session.c: fetches account a. Returns 0, 1 when the account was busy
 * (another fetch holds its lock), or -1 (logged; nothing was lost). */
int fetch_account(const struct fetch_paths *p, const struct config *cfg,
	const struct config_account *a, struct fetch_stats *st);

/* store.c */
int spool_open(const char *dir);
int spool_reset(int fd);
int spool_sink(void *arg, const void *data, size_t len);

/* multidrop.c: the local users a message (its header, head[0..n)) goes
 * to: from the envelope headers, else To/Cc, resolved in db for domain;
 * catch_all when none. *loop set when the loop guard fired (catch-all
 * only). Returns the count (at least 1 when max > 0). */
int multidrop_targets(const char *head, size_t n, const struct users_db *db,
	const char *domain, const char *catch_all, char out[][USERS_NAME_MAX + 1],
	size_t max, int *loop);

#endif
