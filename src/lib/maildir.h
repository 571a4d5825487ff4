/*
 * maildir.h - the mail store: one Maildir++ per user.
 *
 * Layout of a user's Maildir (docs/USERS.md has the whole picture):
 *
 *   <root>/tmp/ new/ cur/         the INBOX
 *   <root>/.Sent/ .Drafts/ .Trash/ .Junk/ .Archive/
 *                                 folders (Maildir++: "." + name, each with
 *                                 tmp/ new/ cur/ and an empty maildirfolder)
 *   <root>/.Work.Projects/        folder "Work.Projects" ('.' separates levels)
 *   <root>/postern-keys/          exactly-once delivery markers (below)
 *
 * Message file names follow the Maildir specification:
 *   TIME.M<usec>P<pid>Q<counter>R<random>.HOST,S=SIZE        in new/
 *   (with a key, K<hex> takes the place of R<random>)
 *   ...same...:2,FLAGS                                        in cur/
 * FLAGS are ASCII letters kept sorted and unique (D draft, F flagged,
 * P passed, R replied, S seen, T trashed; lower-case letters are keywords).
 * S= is the file's size in bytes, so quota sums need no stat().
 *
 * Delivery (maildir_deliver_fd / _buf, or many messages at once through a
 * maildir_batch): each message is written once into tmp/ of the first
 * Maildir (hard links serve the others on the same file system, a copy
 * the others), and a commit makes it durable: (A) every tmp file and
 * every new intent (below) fsync()ed, (B) linked into new/ of every
 * target and every new/ fsync()ed, (C) intents turned into markers.
 * A file system with more than a few descriptors pending in one phase
 * gets one syncfs() instead of many fsync()s, so a batch of N messages
 * costs three journal commits, not 3N. Success is returned only when
 * every copy is durable; on failure the copies made are removed again, so
 * the caller can answer with a temporary error and the sender retries
 * without creating duplicates.
 *
 * Exactly-once delivery with a key (e.g. "account\nUIDL" from the POP3
 * fetcher): hex = the first 128 bits of SHA-256(key) names the message
 * (its unique part ends in K<hex>) and two files in postern-keys/: the intent
 * <hex>.p, created and synced before any link (phase A), and the marker
 * <hex>, renamed from the intent once the links are durable (phase C).
 * The check is O(1): a marker means delivered; neither file means not
 * delivered; only a leftover intent (a crash between A and C) makes the
 * delivery look for "K<hex>." in new/ and cur/ (then the intent becomes
 * the marker, or the message is delivered). So a crash at any point either
 * leaves the message undelivered (redelivery delivers it once) or
 * delivered (redelivery is a no-op). The marker outlives the message, so
 * a message the user already deleted is not delivered again either;
 * callers drop markers they no longer need with maildir_key_forget() (the
 * fetcher: once the UIDL is recorded).
 *
 * Crash safety: a file left in tmp/ by a crash is never a message (readers
 * look only in new/ and cur/); maildir_clean_tmp() removes old ones.
 *
 * Names from outside (message names, folder names) are validated and every
 * open uses O_NOFOLLOW: symbolic links are never followed.
 */
#ifndef POSTERN_MAILDIR_H
#define POSTERN_MAILDIR_H

#include <stddef.h>
#include <time.h>

#define MAILDIR_NAME_MAX 255         /* bytes in a message file name */
#define MAILDIR_FOLDER_MAX 200       /* bytes in a folder name */
#define MAILDIR_KEY_MAX 1024         /* bytes in a delivery key */
#define MAILDIR_TARGETS_MAX 1000     /* Maildirs one delivery writes to */
#define MAILDIR_FLAGS_MAX 52         /* distinct flag letters */
#define MAILDIR_TMP_MAX_AGE (36 * 3600) /* tmp/ files older than this are junk */
#define MAILDIR_MIN_FREE_INODES 1000 /* fewer free inodes is "nearly full" */

/* The folders maildir_create() makes: Sent, Drafts, Trash, Junk, Archive. */
extern const char *const maildir_default_folders[];

/*
 * Create a user's Maildir at `root` (parents as needed, mode 0700) with the
 * default folders. Existing parts are kept. Returns 0, or -1 with errno.
 */
int maildir_create(const char *root);

/*
 * 1 if `folder` is a valid folder name: 1..MAILDIR_FOLDER_MAX bytes, no '/',
 * '\\' or control characters, '.' only between non-empty levels. Else 0.
 */
int maildir_folder_valid(const char *folder);

/*
 * The directory of `folder` under `root` ("<root>/.<folder>") into `out`.
 * Returns 0, or -1 (invalid folder: EINVAL; too long: ENAMETOOLONG).
 */
int maildir_folder_path(const char *root, const char *folder, char *out, size_t outlen);

/* Create folder `folder` under `root` (tmp/ new/ cur/ maildirfolder). 0 or -1. */
int maildir_create_folder(const char *root, const char *folder);

/*
 * Deliver the message read from `fd` (until end of file) into each of the
 * `n` Maildir directories `dirs` (1..MAILDIR_TARGETS_MAX; each a Maildir or
 * Maildir++ folder directory that already exists). `key` is NULL, or an
 * exactly-once key (see above). Returns the number of copies made (0 when
 * every target already had the key), or -1 with a message in `err` and no
 * copy left behind.
 */
int maildir_deliver_fd(const char *const *dirs, size_t n, int fd, const char *key,
		       char *err, size_t errlen);

/* The same for a message in memory. */
int maildir_deliver_buf(const char *const *dirs, size_t n, const void *buf, size_t len,
			const char *key, char *err, size_t errlen);

/*
 * A batch of deliveries made durable together (group commit): add
 * messages, then one maildir_batch_commit. Nothing added is visible in
 * new/ before the commit. Not thread-safe: one batch per thread.
 */
struct maildir_batch;

/* A new empty batch, or NULL (out of memory). */
struct maildir_batch *maildir_batch_new(void);

/*
 * Adds the message read from `fd` (until end of file) for `n` Maildirs,
 * as maildir_deliver_fd, but only into tmp/: returns the number of copies
 * the commit will make (0 when every target already has the key, also
 * from earlier in this batch), or -1 with a message in err (this message
 * left nothing behind; the batch is still usable).
 */
int maildir_batch_add_fd(struct maildir_batch *b, const char *const *dirs, size_t n, int fd,
			 const char *key, char *err, size_t errlen);

/*
 * maildir_batch_add_fd, but the file open at `fd` (a regular file, read
 * from 0 to its end, that nobody changes afterwards: the SMTP spool) is
 * itself hard-linked into new/ of every target on its file system (via
 * /proc/self/fd), and the commit fsyncs it: no copy is written. Targets on
 * other file systems, or without /proc, get copies as usual.
 */
int maildir_batch_add_link(struct maildir_batch *b, const char *const *dirs, size_t n, int fd,
			   const char *key, char *err, size_t errlen);

/* The same for a message in memory. */
int maildir_batch_add_buf(struct maildir_batch *b, const char *const *dirs, size_t n,
			  const void *buf, size_t len, const char *key, char *err, size_t errlen);

/* Messages added since the last commit (those with at least one copy). */
size_t maildir_batch_messages(const struct maildir_batch *b);

/*
 * Makes every message added durable (see above) and empties the batch.
 * Returns 0, or -1 with a message in err: then none of the batch's
 * copies is left in new/ (all are to be retried).
 */
int maildir_batch_commit(struct maildir_batch *b, char *err, size_t errlen);

/* Frees the batch; messages not committed are removed. NULL is fine. */
void maildir_batch_free(struct maildir_batch *b);

/*
 * Forget the exactly-once marker (and intent) of `key` in Maildir `dir`.
 * Not synced: a marker that comes back after a crash only repeats what
 * the caller's own record says. 0 (also when there was none) or -1.
 */
int maildir_key_forget(const char *dir, const char *key);

/* A message file name taken apart. */
struct maildir_info {
	size_t baselen;              /* bytes before ":2," (or the whole name) */
	unsigned long long size;     /* from ",S=", if has_size */
	int has_size;
	char flags[MAILDIR_FLAGS_MAX + 1];
};

/*
 * Parse a message file name (no '/', not starting with '.', at most
 * MAILDIR_NAME_MAX bytes). Returns 0, or -1 if it is not a message name.
 */
int maildir_parse_name(const char *name, struct maildir_info *info);

/*
 * `name` with its info suffix replaced by ":2," and `flags` sorted with
 * duplicates removed, into `out`. Returns 0, or -1 (bad name, a flag that
 * is not an ASCII letter, small buffer).
 */
int maildir_name_with_flags(const char *name, const char *flags, char *out, size_t outlen);

/*
 * Set the flags of message `name` (in new/ or cur/ of Maildir `dir`): it is
 * renamed to cur/ with the new info suffix, whose full name goes to
 * `newname`. Returns 0, or -1 (no such message, bad name or flags).
 */
int maildir_set_flags(const char *dir, const char *name, const char *flags,
		      char *newname, size_t cap);

/* Move message `name` from new/ to cur/ (with an empty ":2," suffix). */
int maildir_move_to_cur(const char *dir, const char *name, char *newname, size_t cap);

/*
 * Call `cb(sub, name, arg)` for each message of Maildir `dir`, `sub` being
 * "new" or "cur" (tmp/ is never listed). A non-zero return from `cb` stops
 * the walk and is returned. Returns 0 after the walk, or -1 with errno.
 */
int maildir_list(const char *dir, int (*cb)(const char *sub, const char *name, void *arg),
		 void *arg);

/*
 * Sum of message sizes and count over the INBOX and every folder of the
 * Maildir at `root` (sizes from S=, else from stat). Returns 0 or -1.
 */
int maildir_usage(const char *root, unsigned long long *bytes, unsigned long *count);

/*
 * Quota check before delivering `incoming` bytes into `root`: 0 if it fits
 * under `limit` bytes (0 = no limit), 1 if over quota, -1 on error.
 */
int maildir_quota_check(const char *root, unsigned long long limit,
			unsigned long long incoming);

/*
 * Free-space check on the file system holding `path` (statvfs): 0 if
 * `need` bytes fit and `reserve` bytes (and MAILDIR_MIN_FREE_INODES inodes)
 * stay free afterwards, 1 if the file system is nearly full (SMTP: 452),
 * -1 on error.
 */
int maildir_fs_check(const char *path, unsigned long long need,
		     unsigned long long reserve);

/*
 * Remove files in tmp/ of Maildir `dir` last changed before
 * now - MAILDIR_TMP_MAX_AGE (left by a crash). Returns how many, or -1.
 */
int maildir_clean_tmp(const char *dir, time_t now);

#endif
