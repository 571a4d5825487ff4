/*
 * uidl.h - the POP3 fetcher's per-account state: the set of UIDLs already
 * delivered, under <fetch-root>/<account>/ (/data/fetch/<account>/ on the
 * box).
 *
 * Files in the account directory:
 *
 *   lock    flock()ed exclusively while a fetch runs: the daemon and a
 *           manual `postern fetch` never work on one account at once.
 *   uidls   "postern-uidl 1" then one UIDL per line (RFC 1939 section 7:
 *           1..70 characters 0x21-0x7E, so no blank or newline can occur).
 *           New UIDLs are appended and fdatasync()ed one by one; the file is
 *           rewritten atomically (temp file, fsync, rename, fsync of the
 *           directory) only by uidl_prune. A line torn by a crash (no final
 *           newline) is cut off when the store is opened.
 *
 * Exactly-once design (the fetcher follows these steps for every message;
 * a crash between any two of them loses nothing and duplicates nothing):
 *
 *   1. UIDL already in the store?  keep mode: skip it.  delete mode: DELE
 *      it (an earlier session recorded it but its QUIT never committed).
 *   2. RETR into an unlinked spool file on the data partition.
 *   3. Deliver through maildir's exactly-once key uidl_key() =
 *      "ACCOUNT\nUIDL" (maildir.h): a repeated delivery with the same key
 *      is a no-op, so a crash between 3 and 4 does not deliver twice.
 *   4. uidl_record(): append the UIDL and fdatasync it.
 *   5. maildir_key_forget() the marker (now redundant: the store says it).
 *   6. delete mode: DELE. The server removes messages only at QUIT
 *      (RFC 1939 section 6, UPDATE state): QUIT commits. A lost connection
 *      before QUIT leaves every message on the server, and step 1 handles
 *      them next time.
 *
 * Pruning: after a session has the server's full UIDL listing,
 * uidl_prune() drops UIDLs the server no longer has (they can never come
 * back: RFC 1939 section 7 forbids reusing a unique-id), so the file stays
 * as large as the mailbox.
 *
 * Servers without UIDL (delete mode only): the fetcher records a guard
 * "m:" + 64 hex digits (SHA-256 of the Message-ID, or of the whole message
 * when it has none) in the same store; guards are pruned oldest first
 * beyond UIDL_GUARDS_KEEP.
 *
 * Nothing here exits or prints; errors come back as -1 with a message.
 */
#ifndef POSTERN_UIDL_H
#define POSTERN_UIDL_H

#include <stddef.h>

/* Longest entry (a UIDL is at most 70, a guard 66). */
#define UIDL_ID_MAX 70
/* Entries one store holds; more is an error (the account is not fetched). */
#define UIDL_ENTRIES_MAX 500000
/* Guards ("m:..." entries) kept by uidl_prune. */
#define UIDL_GUARDS_KEEP 20000
/* Longest account directory path. */
#define UIDL_PATH_MAX 512
/* A delivery key: account (<= 32), "\n", UIDL, NUL. */
#define UIDL_KEY_MAX (32 + 1 + UIDL_ID_MAX + 1)

struct uidl_entry {
	char id[UIDL_ID_MAX + 1];
};

struct uidl_store {
	char dir[UIDL_PATH_MAX];	/* <root>/<account> */
	char path[UIDL_PATH_MAX];	/* <dir>/uidls */
	int lockfd;
	int fd;				/* uidls, open for appending */
	struct uidl_entry *e;		/* in file order */
	size_t n, cap;
	unsigned *slot;			/* hash table: index + 1, 0 = empty */
	size_t nslots;			/* a power of two, > 2 n */
};

/*
 * Opens (creating as needed, mode 0700) <root>/<account>/, takes its lock
 * without waiting and loads the store. Returns 0; 1 when another process
 * holds the lock (s is then closed); -1 with a message in err.
 */
int uidl_open(struct uidl_store *s, const char *root, const char *account,
	char *err, size_t errlen);

/* Releases everything and the lock (s may be zeroed or closed already). */
void uidl_close(struct uidl_store *s);

/* 1 when id is recorded, else 0. */
int uidl_has(const struct uidl_store *s, const char *id);

/*
 * Records id durably: appended to the file and fdatasync()ed before
 * returning 0. Recording an id that is there already is a no-op. Returns
 * -1 with a message in err (invalid id, store full, I/O error).
 */
int uidl_record(struct uidl_store *s, const char *id, char *err, size_t errlen);

/*
 * uidl_record for n ids at once: one append, one fdatasync (the fetcher
 * records a delivered batch with it). Ids recorded already, or repeated,
 * are written once. 0, or -1 with a message in err (then some may be
 * recorded on disk: only ever ids the caller has delivered).
 */
int uidl_record_many(struct uidl_store *s, const char *const *ids, size_t n,
	char *err, size_t errlen);

/*
 * Rewrites the store atomically keeping the UIDLs for which keep(arg, id)
 * returns 1, and the newest UIDL_GUARDS_KEEP guards. Returns the number
 * dropped, or -1 with a message in err (the store is unchanged then).
 */
int uidl_prune(struct uidl_store *s, int (*keep)(void *arg, const char *id), void *arg,
	char *err, size_t errlen);

/* The maildir exactly-once key "ACCOUNT\nID" into out. 0, or -1 if too long. */
int uidl_key(const char *account, const char *id, char *out, size_t cap);

/* 1 when id is a guard entry ("m:" + 64 hex), else 0. */
int uidl_is_guard(const char *id);

#endif
