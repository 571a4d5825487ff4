/*
 * queue.h - the durable outbound queue (format: docs/QUEUE.md).
 *
 *   <dir>/tmp/ID    a message being received (never a queued message)
 *   <dir>/msg/ID    the message text, CRLF lines, exactly as it will be sent
 *   <dir>/env/ID    its envelope record (text): sender, recipients with
 *                   per-recipient state, attempts and next-attempt time
 *
 * A message is queued exactly when env/ID exists. The SMTP server writes
 * tmp/ID, fsyncs it, renames it to msg/ID, fsyncs msg/, and only then
 * writes env/ID atomically (temp file, fsync, rename, fsync env/): after a
 * crash at any point there is either no envelope (the client got no 250
 * and sends again; queue_recover removes the orphan) or a complete one.
 * The relay updates an envelope with queue_env_save (atomic again) and
 * removes a finished message with queue_remove (envelope first).
 *
 * IDs are 16 lower-case hex digits: 8 of the Unix time then 8 random, so
 * a listing sorts by age. Names are checked before any path is built.
 * Nothing here exits or prints; errors return -1 with errno set.
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "users.h"

#define QUEUE_ID_LEN 16             /* hex digits in an id */
#define QUEUE_ADDR_MAX 256          /* bytes in an address (RFC 5321 path) */
#define QUEUE_RCPTS_MAX 100         /* recipients per message */
#define QUEUE_REPLY_MAX 200         /* bytes of the last reply kept per recipient */
#define QUEUE_ENV_MAX (64 * 1024)   /* bytes in an envelope file */
#define QUEUE_SPOOL_BUF 16384       /* write buffer of a message being received */
#define QUEUE_VERSION 1             /* the envelope format's version */
#define QUEUE_STALE_AGE (24 * 3600) /* seconds before queue_recover drops orphans */
#define QUEUE_DIR_MAX 1024          /* bytes in the queue directory's path */
#define QUEUE_BATCH_MAX 64          /* removals made durable together */

enum queue_rcpt_state {
	QUEUE_PENDING,   /* to be sent */
	QUEUE_SENT,      /* accepted by the smart host */
	QUEUE_FAILED,    /* permanently refused or given up (a bounce is due) */
	QUEUE_BOUNCED,   /* failed, and the DSN is in the sender's Maildir */
	QUEUE_STATES
};

struct queue_rcpt {
	char addr[QUEUE_ADDR_MAX + 1];
	int state;                        /* enum queue_rcpt_state */
	unsigned attempts;
	int64_t next_attempt;             /* Unix time */
	char reply[QUEUE_REPLY_MAX + 1];  /* last reply from the smart host, "" */
};

struct queue_env {
	char id[QUEUE_ID_LEN + 1];
	int64_t created;                  /* Unix time */
	char user[USERS_NAME_MAX + 1];    /* who submitted it ("" if unknown) */
	char from[QUEUE_ADDR_MAX + 1];    /* reverse-path, "" for the null sender */
	uint64_t size;                    /* bytes in msg/ID */
	int nrcpt;
	struct queue_rcpt rcpt[QUEUE_RCPTS_MAX];
	int notified;                     /* the delay notice was sent */
};

struct queue {
	char dir[QUEUE_DIR_MAX];
	int tmpfd, msgfd, envfd;          /* the three directories */
};

/* A message being received into tmp/. */
struct queue_spool {
	struct queue *q;
	int fd;
	char id[QUEUE_ID_LEN + 1];
	uint64_t size;
	size_t buflen;
	int err;                          /* sticky errno of a failed write */
	int committed;                    /* now msg/ID: abort only closes */
	char buf[QUEUE_SPOOL_BUF];
};

/* Opens (creating as needed, mode 0700) the queue at dir. 0 or -1. */
int queue_open(struct queue *q, const char *dir);

/* Closes the directory descriptors. */
void queue_close(struct queue *q);

/* 1 when id is 16 lower-case hex digits. */
int queue_id_valid(const char *id);

/* A new id (time + getrandom). 0 or -1. */
int queue_new_id(char id[QUEUE_ID_LEN + 1], time_t now);

/* Starts a message in tmp/ (new id, O_EXCL, mode 0600). 0 or -1. */
int queue_spool_open(struct queue *q, struct queue_spool *sp, time_t now);

/* Appends bytes (buffered). 0, or -1 with the error kept sticky. */
int queue_spool_write(struct queue_spool *sp, const void *data, size_t len);

/* Flushes and fsyncs tmp/ID; sp->fd is then positioned at 0, ready to be
 * read (local delivery). 0 or -1 (ENOSPC: the partition is full). */
int queue_spool_finish(struct queue_spool *sp);

/* queue_spool_finish without the fsync, for a message that is not queued
 * but made durable elsewhere (smtpd: hard-linked into Maildirs, which
 * fsync it, maildir.h). 0 or -1. */
int queue_spool_flush(struct queue_spool *sp);

/* Queues the finished message: tmp/ID -> msg/ID, fsync msg/, then the
 * envelope (env->id, size are filled in here) atomically. When this returns
 * 0 the message is durable in the queue; sp->fd stays open (positioned at
 * 0) for local delivery: close it with queue_spool_abort, which then
 * removes nothing. On failure nothing is queued and the spool is dropped. */
int queue_spool_commit(struct queue_spool *sp, struct queue_env *env);

/* Closes the spool and, unless it was committed, removes tmp/ID; safe to
 * call twice. */
void queue_spool_abort(struct queue_spool *sp);

/* Envelope text (docs/QUEUE.md) into buf; returns the length or -1. */
int queue_env_format(const struct queue_env *env, char *buf, size_t cap);

/* Parses envelope text; 0, or -1 (EINVAL) for anything malformed. */
int queue_env_parse(struct queue_env *env, const char *buf, size_t len);

/* Reads env/ID. 0 or -1 (ENOENT: not queued). */
int queue_env_load(struct queue *q, const char *id, struct queue_env *env);

/* Rewrites env/ID atomically (the relay's updates). 0 or -1. */
int queue_env_save(struct queue *q, const struct queue_env *env);

/* Opens msg/ID read-only. The descriptor, or -1. */
int queue_msg_open(struct queue *q, const char *id);

/* Removes a message: env/ID first (it is no longer queued), then msg/ID,
 * each directory fsynced. 0 or -1. */
int queue_remove(struct queue *q, const char *id);

/* Removals made durable together (the relay's fast path: two directory
 * fsyncs per batch instead of two per message). */
struct queue_batch {
	int n;
	char id[QUEUE_BATCH_MAX][QUEUE_ID_LEN + 1];
};

/* Removes a finished message in two steps: env/ID is unlinked now (from
 * here on the message is not queued: queue_lock, queue_list and
 * queue_env_load no longer find it) and the id is kept in b; a full batch
 * is committed first. Until queue_batch_commit the removal may be undone
 * by a crash (power loss): the envelope comes back and the message is
 * sent again, never lost. Only call it after the smart host's 250 (or a
 * delivered bounce). 0, or -1 (nothing changed for this id). */
int queue_batch_remove(struct queue *q, struct queue_batch *b, const char *id);

/* Makes b's removals durable: one fsync of env/, then each msg/ID
 * unlinked and one fsync of msg/ (a crash in between leaves only msg/
 * files without an envelope, which queue_recover removes). b is empty
 * afterwards, even on failure. 0 or -1 (a directory fsync failed). */
int queue_batch_commit(struct queue *q, struct queue_batch *b);

/* Takes the relay's lock on a queued message (flock on msg/ID, not
 * waiting): whoever holds it may update or remove the message. Returns the
 * locked descriptor (read-only, positioned at 0; close it to unlock), or -1
 * (EWOULDBLOCK: someone else holds it; ENOENT: not queued). */
int queue_lock(struct queue *q, const char *id);

/* Calls cb(id, arg) for every queued message (sorted by id: by age); a
 * non-zero return stops and is returned. 0 or -1. */
int queue_list(struct queue *q, int (*cb)(const char *id, void *arg), void *arg);

/* After a crash: removes tmp/ files, msg/ files without an envelope and
 * envelope temp files, each only when older than min_age seconds (0: all;
 * only safe while nothing else writes the queue). Returns the count or -1. */
int queue_recover(struct queue *q, time_t now, time_t min_age);

#endif
