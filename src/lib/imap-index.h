/*
 * imap-index.h - the per-mailbox UID index of the IMAP server: stable UIDs
 * and UIDVALIDITY (RFC 3501 2.3.1.1) for the messages of one Maildir
 * directory, kept across restarts and shared by every connection and
 * process through one file in the mailbox directory (version 3):
 *
 *     postern-uids 3 UIDVALIDITY UIDNEXT HIGHESTMODSEQ GEN
 *     UID MODSEQ -FLAGS BASENAME    a message in cur/, ascending UIDs
 *     UID MODSEQ new BASENAME       a message in new/ (no flags)
 *     ...
 *     end UIDVALIDITY UIDNEXT HIGHESTMODSEQ GEN
 *     + UID MODSEQ -FLAGS BASENAME  journal: a message added (UID >= UIDNEXT)
 *     = UID MODSEQ -FLAGS BASENAME  journal: its flags or place changed
 *     - UID MODSEQ                  journal: expunged
 *
 * BASENAME is the message file name without its ":2,FLAGS" info, so flag
 * changes (renames) keep the UID. FLAGS are the info letters the index
 * last saw, so a sync notices a flag change made by anyone (another
 * connection, Dovecot on the same store) and gives the message a new
 * MODSEQ (RFC 7162 CONDSTORE): every sync that finds messages new,
 * changed or gone raises HIGHESTMODSEQ by one and gives that value to the
 * new and changed ones.
 *
 * Journal: a change appends complete lines with one write(2) (O_APPEND)
 * under an exclusive flock on postern-uids.lock, which every reader and
 * writer takes; records apply in file order to the entries above them.
 * "+" records (new UIDs) are fdatasynced before the lock is released (and
 * before APPEND's OK); "=" and "-" are not (modseqs from the clock stay
 * monotonic after a crash, see next_modseq; a lost "-" only lists the
 * message's absence again). A torn last line (a crash during an append:
 * no newline) is ignored and cut off by the next append, never continued.
 * Compaction: when the journal has more than JOURNAL_MIN + messages/2
 * records, or the file is damaged or of an older version, the whole file
 * is rewritten (temp, fsync, rename, fsync dir) with GEN one up and no
 * journal. A view remembers the inode, GEN and the offset it has read to:
 * its next sync reads only the records after that offset; another inode
 * or GEN (a compaction) means it reads the new file whole, so no record is
 * applied twice or missed (GEN guards against inode reuse).
 *
 * Listing: a sync lists new/ and cur/ (and merges: new messages get the
 * next UIDs in file name order, that is delivery order; entries whose
 * file is gone are dropped, after a second listing so a message caught
 * between new/ and cur/ by a rename is not lost) only when something may
 * have changed them that the file does not record. One inotify instance
 * per process watches new/ and cur/ of the mailboxes it syncs (at most
 * WATCH_MAX, least recently used dropped); an event is explained when the
 * file already says it (that name in that place with those flags exists,
 * or does not; the last event per name counts). Explained: Postern's own
 * changes made under the lock and recorded (STORE and \Seen through a
 * transaction, EXPUNGE through imap_index_txn_expunge, APPEND's record).
 * Not explained, so listed at the next sync: deliver.c (smtpd, fetchd)
 * writing new/, Dovecot or a user renaming or removing a file, imapd
 * unlinking outside a transaction, COPY's links, APPEND's file before its
 * record; also a lost event queue (IN_Q_OVERFLOW), too many unchecked
 * events, a directory replaced (inode changed), a watch that cannot be
 * had, the first sync of a mailbox in a process, a damaged journal.
 *
 * Versions 1 ("UID BASENAME") and 2 ("UID MODSEQ -FLAGS BASENAME", no
 * GEN, no journal) are read as such and upgraded in place at the next
 * sync (a listing): UIDs, UIDVALIDITY and modseqs stay (version 1: every
 * message gets MODSEQ 1). Lines are read only in the version the header or
 * trailer names, never guessed; an unknown version keeps no entries.
 *
 * Damage: unreadable lines are skipped and their messages get new UIDs
 * above every UID ever given (UIDNEXT is the larger of the header's and
 * the highest UID seen, plus one for each unreadable journal line, which
 * may have been a "+"), so no UID is reused and UIDVALIDITY stays; a
 * record that contradicts the entries (= or - for an unknown UID) is
 * damage too. A damaged file is rewritten whole at the next sync. The
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
	/* What the index file says of its flags and place (a bit mask of the
	 * letters, new/ and "known"), for the sync's check of inotify events;
	 * may differ from flags/in_new while a change is not yet recorded. */
	uint64_t filed;
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
	/* Where the view is in the index file (version 3): its inode and
	 * generation, and the offset of the first journal record not yet
	 * applied. jvalid 0: the next sync reads the whole file. */
	uint64_t jino, jgen;
	size_t joff;
	int jvalid;
	int listed;                 /* the last sync listed new/ and cur/ (tests) */
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
/* Stops this process's inotify watch of dir: the next sync of any view of
 * it lists new/ and cur/ (after a mailbox is deleted or renamed, or to
 * check the index against the disk as after a restart). */
void imap_index_forget(const char *dir);
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
/*
 * EXPUNGE or MOVE of message i inside a transaction: its file is unlinked
 * under the index lock and a record says so, so the next sync of every
 * view needs no listing (an unlink outside a transaction costs one). The
 * view keeps the message until its next sync (RFC 3501 7.4.1: the
 * EXPUNGE responses come from that sync). 0, or -1 with errno (the file
 * is still there, or was already gone).
 */
int imap_index_txn_expunge(struct imap_index_txn *t, struct imap_index *ix, size_t i);

#endif
