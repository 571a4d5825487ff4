/*
 * imap-index.h - the per-mailbox UID index of the IMAP server: stable UIDs
 * and UIDVALIDITY (RFC 3501 2.3.1.1) for the messages of one Maildir
 * directory, kept across restarts and shared by every connection and
 * process through one file in the mailbox directory:
 *
 *     postern-uids 2 UIDVALIDITY UIDNEXT HIGHESTMODSEQ
 *     UID MODSEQ -FLAGS BASENAME    one per message, ascending UIDs
 *     ...
 *     end UIDVALIDITY UIDNEXT HIGHESTMODSEQ
 *
 * BASENAME is the message file name without its ":2,FLAGS" info, so flag
 * changes (renames) keep the UID. FLAGS are the info letters the index
 * last saw, so a sync notices a flag change made by anyone (another
 * connection, Dovecot on the same store) and gives the message a new
 * MODSEQ (RFC 7162 CONDSTORE): every sync that finds messages new,
 * changed or gone raises HIGHESTMODSEQ by one and gives that value to the
 * new and changed ones. Version 1 files ("postern-uids 1 V N", lines
 * "UID BASENAME") are read as such and upgraded at the next write: UIDs
 * and UIDVALIDITY stay, every message gets MODSEQ 1. Entry lines are read
 * only in the version the header or trailer names, never guessed. The file is replaced atomically
 * (fs_write_atomic) under an exclusive flock on postern-uids.lock, which
 * every sync takes: connections of one user, in one process or several,
 * see each other's changes at their next sync.
 *
 * A sync reads the index, lists new/ and cur/, gives each message not yet
 * indexed the next UID (in file name order, that is delivery order), drops
 * entries whose file is gone (expunged; a name missing from the first
 * listing is looked for again, so a message renamed between new/ and cur/
 * meanwhile is not lost), and writes the file back if anything changed.
 *
 * Damage: unreadable lines are skipped and their messages get new UIDs
 * above every UID ever given (UIDNEXT is the larger of the header's and
 * the highest UID seen), so no UID is reused and UIDVALIDITY stays. The
 * header and trailer both carry UIDVALIDITY and UIDNEXT; only when neither
 * can be read (or the file is gone while messages exist) does the mailbox
 * get a new UIDVALIDITY (the clock, above the old one when it is known),
 * and all messages new UIDs (clients then resynchronize).
 */
#ifndef POSTERN_IMAP_INDEX_H
#define POSTERN_IMAP_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "maildir.h"

#define IMAP_INDEX_FILE "postern-uids"
#define IMAP_INDEX_LOCK "postern-uids.lock"
#define IMAP_INDEX_MSGS_MAX 1000000          /* messages per mailbox */
#define IMAP_INDEX_FILE_MAX (256u << 20)     /* bytes of an index file */
#define IMAP_INDEX_PATH_MAX 4096

struct imap_msg {
	uint32_t uid;
	uint64_t modseq;            /* RFC 7162 mod-sequence (>= 1) */
	char *name;                 /* file name in new/ or cur/ (heap) */
	size_t baselen;             /* bytes of the name before ":2," */
	int in_new;                 /* 1: in new/, 0: in cur/ */
	uint64_t size;              /* from ",S=" (0: unknown, stat it) */
	char flags[MAILDIR_FLAGS_MAX + 1];
};

struct imap_index {
	char dir[IMAP_INDEX_PATH_MAX];
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;     /* RFC 7162 HIGHESTMODSEQ */
	struct imap_msg *m;         /* ascending UIDs */
	size_t n, cap;
	int repaired;               /* the last sync repaired a damaged index */
	char repair[128];           /* what it repaired */
	/* What new/, cur/ and the index file looked like before the last full
	 * sync (mtime, inode): unchanged and settled, a sync has nothing to do. */
	struct imap_index_stamp { int64_t sec, nsec; uint64_t ino; } stamp[3];
	int stamped;
};

/* An empty index for the Maildir directory `dir` (nothing read yet). */
int imap_index_open(struct imap_index *ix, const char *dir);
/* Releases the messages. */
void imap_index_free(struct imap_index *ix);
#define IMAP_INDEX_SETTLE_S 2       /* seconds a directory must be unchanged to trust its mtime */

/*
 * Brings ix up to date with the directory and the index file (see above).
 * When new/, cur/ and the index file have the same mtimes and inodes as at
 * the last sync, and those are IMAP_INDEX_SETTLE_S old (mtimes are only as
 * fine as the kernel's clock tick), nothing can have changed: no listing.
 * Returns 0, or -1 with a reason in err (the previous view is kept).
 */
int imap_index_sync(struct imap_index *ix, char *err, size_t errlen);
/* The position of `uid` in ix->m, or -1. */
long imap_index_find(const struct imap_index *ix, uint32_t uid);
/* Finds message i again after another process renamed it (new/ -> cur/,
 * or a flag change in its info part): looks for its base name in new/
 * and cur/ and updates name, in_new and flags. 0, or -1 when it is gone
 * (expunged). The view keeps its positions, so it may run mid-command. */
int imap_index_relocate(struct imap_index *ix, size_t i);
/* Path of message i ("<dir>/cur/<name>") into out. 0 or -1. */
int imap_index_path(const struct imap_index *ix, size_t i, char *out, size_t cap);

/*
 * This process's own flag changes (STORE, FETCH setting \Seen), recorded
 * without listing the directory: imap_index_begin takes the index lock
 * and reads the file; imap_index_txn_modseq gives message i's current
 * modseq (a newer one when the file's flags differ from the view's, i.e.
 * someone renamed it since: RFC 7162 3.1.3 UNCHANGEDSINCE must see it);
 * after renaming the file, imap_index_txn_touch gives message i the
 * transaction's new modseq (one for all, known at begin: untagged FETCH
 * MODSEQ can be sent before the commit); imap_index_commit writes the file
 * and releases the lock (always, also on error). begin returns NULL with
 * a reason in err. The view keeps its positions.
 */
/*
 * A message this process just wrote into dir's cur/ (APPEND), given the
 * next UID and a new modseq without listing the directory: the index is
 * read and written back (durably) under the lock. 0 with *uid and
 * *validity, or -1 when the file is missing, damaged or of an older
 * version (then a full imap_index_sync must name it).
 */
int imap_index_add(const char *dir, const char *name, uint32_t *uid, uint32_t *validity);

struct imap_index_txn;
struct imap_index_txn *imap_index_begin(struct imap_index *ix, char *err, size_t errlen);
uint64_t imap_index_txn_modseq(struct imap_index_txn *t, const struct imap_index *ix, size_t i);
void imap_index_txn_touch(struct imap_index_txn *t, struct imap_index *ix, size_t i);
int imap_index_commit(struct imap_index *ix, struct imap_index_txn *t, char *err, size_t errlen);

#endif
