/*
 * deliver.h - THE one delivery path for local recipients. The SMTP server
 * uses it for mail to the company domain, the POP3 fetcher for mail it
 * fetched; the filtering feature plugs into its filter hook.
 *
 *   struct deliver_ctx c = { .db = &users, .domain = "example.com",
 *                            .mail_root = "/data/mail" };
 *   struct deliver_env env = { .from = ..., .rcpts = ..., .nrcpt = n };
 *   int r = deliver_local(&c, fd, &env, NULL, err, sizeof err);
 *
 * Steps: every recipient is resolved with users_resolve (users, aliases,
 * lists; a user reached twice gets one copy); with quota_check, a user
 * whose usage plus the message would exceed their quota fails the whole
 * delivery (DELIVER_ERR_QUOTA, nothing written); the filter hook sees the
 * message once; then maildir_deliver_fd writes one copy per user into
 * <mail_root>/<user>/new/ (a missing Maildir is created first). It returns
 * only when every copy is durable (file and directories fsynced), or fails
 * with none left behind, so the caller may answer 250 (SMTP) or DELE
 * (POP3) exactly when this returns >= 0.
 *
 * The filter hook (deliver_ctx.filter): called with the message descriptor
 * (positioned at 0; the hook may read it, and must leave it readable from
 * 0) and the envelope, before any copy is made. It returns DELIVER_ACCEPT,
 * DELIVER_REJECT (the message is refused: SMTP 554, nothing delivered) or
 * a temporary failure. NULL means no filtering (deliver_filter_none).
 * Quarantine and tagging will be added by the filtering issue as further
 * verdicts handled here, so callers do not change.
 */
#ifndef POSTERN_DELIVER_H
#define POSTERN_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "maildir.h"
#include "users.h"

#define DELIVER_RCPTS_MAX 100              /* envelope recipients per call */
#define DELIVER_USERS_MAX MAILDIR_TARGETS_MAX  /* users they may expand to */
#define DELIVER_PATH_MAX 1024              /* bytes in a Maildir path */

enum deliver_verdict {
	DELIVER_ACCEPT = 0,
	DELIVER_REJECT = 1,     /* refused by the filter */
	DELIVER_TEMPFAIL = 2,   /* the filter could not decide: try later */
};

/* deliver_local results (besides a count >= 0). */
#define DELIVER_ERR_TEMP (-1)      /* nothing delivered: try again later */
#define DELIVER_ERR_REJECTED (-2)  /* the filter refused it */
#define DELIVER_ERR_NOUSER (-3)    /* a recipient resolves to no local user */
#define DELIVER_ERR_QUOTA (-4)     /* a target user is over quota: nothing
				    * delivered to anyone (temporary: SMTP
				    * 452 4.2.2, the fetcher retries) */

struct deliver_env {
	const char *from;               /* reverse-path ("" for the null sender) */
	const char *const *rcpts;       /* local addresses ("bob@example.com", "all") */
	size_t nrcpt;
	const char *queue_id;           /* for logs and the filter, may be NULL */
	const char *user;               /* the authenticated submitter, or NULL */
};

typedef enum deliver_verdict (*deliver_filter_fn)(void *arg, int fd,
						  const struct deliver_env *env,
						  char *why, size_t whylen);

struct deliver_ctx {
	const struct users_db *db;
	const char *domain;             /* mail-domain */
	const char *mail_root;          /* "/data/mail" */
	deliver_filter_fn filter;       /* NULL: deliver_filter_none */
	void *filter_arg;
	int link_source;                /* the message fd is a file nobody changes
					 * afterwards (the SMTP spool): Maildir copies
					 * are hard links of it (maildir_batch_add_link) */
	int quota_check;                /* 1: refuse users over quota (smtpd,
					 * fetchd, imapd); 0: no quota (DSNs,
					 * alerts: small system messages) */
	uint64_t quota;                 /* mailbox-quota in bytes, 0: no limit;
					 * a user's quota= in db overrides it */
};

/* The no-op filter: accepts everything. */
enum deliver_verdict deliver_filter_none(void *arg, int fd, const struct deliver_env *env,
					 char *why, size_t whylen);

/* Runs the context's filter on a message (fd rewound to 0 before and after).
 * For callers that must filter mail that is not delivered locally too. */
enum deliver_verdict deliver_filter(const struct deliver_ctx *c, int fd,
				    const struct deliver_env *env, char *why, size_t whylen);

/*
 * Delivers the message in fd (read from offset 0 to its end) to the local
 * recipients of env. key is NULL, or an exactly-once key (maildir.h; the
 * fetcher's "account\nUIDL"). Returns the number of Maildirs written
 * (0 when all had the key), or DELIVER_ERR_* with a message in err.
 */
int deliver_local(const struct deliver_ctx *c, int fd, const struct deliver_env *env,
		  const char *key, char *err, size_t errlen);

/*
 * The second half of deliver_local, for callers that have local user
 * names already (the fetcher: its deliver-to user, or the multidrop
 * targets; c->db may be NULL): the filter hook, missing Maildirs created,
 * then the copies. b NULL: durable when this returns (as deliver_local).
 * b non-NULL: the copies are added to the batch and durable only after
 * maildir_batch_commit(b) succeeds (group commit: the caller acknowledges
 * nothing of the batch before). Returns the number of copies (0 when all
 * had the key), or DELIVER_ERR_TEMP / DELIVER_ERR_REJECTED / DELIVER_ERR_QUOTA
 * with err.
 */
int deliver_users(const struct deliver_ctx *c, const char *const *users, size_t n, int fd,
		  const struct deliver_env *env, const char *key, struct maildir_batch *b,
		  char *err, size_t errlen);

/* deliver_local into batch b (NULL: as deliver_local): durable only after
 * maildir_batch_commit(b) (the SMTP server's group commit). */
int deliver_local_batch(const struct deliver_ctx *c, int fd, const struct deliver_env *env,
			const char *key, struct maildir_batch *b, char *err, size_t errlen);

/*
 * The quota of user: its quota= in c->db when set there, else c->quota
 * (0: no limit; always 0 when c->quota_check is 0).
 */
uint64_t deliver_quota_of(const struct deliver_ctx *c, const char *user);

/*
 * Would `incoming` more bytes put user over quota? 0: fits (or no limit),
 * 1: over, -1: the usage could not be read (errno). Reads the usage with
 * maildir_usage (every folder listed) only when the user has a limit; a
 * missing Maildir uses nothing. Used by deliver_users and, before it, by
 * SMTP RCPT and IMAP APPEND/COPY/MOVE.
 */
int deliver_quota_check(const struct deliver_ctx *c, const char *user, uint64_t incoming);

/* The Maildir of user under mail_root into out. 0 or -1 (bad name, long). */
int deliver_maildir_path(const char *mail_root, const char *user, char *out, size_t cap);

#endif
